//! Operating errors at the transport's IO edge, each printed on one line.
//!
//! Expected outcomes (a refused transfer, a checksum mismatch the receiver reports) are values
//! elsewhere; these are the failures of the machinery itself: a backend missing on this
//! machine, a socket or ring error, or a peer that broke the protocol.

use std::io;

use crate::TransportKind;

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The backend cannot run here (`rdma: no RDMA device (...)`).
    #[error("{kind}: {reason}")]
    Unavailable {
        /// The backend.
        kind: TransportKind,
        /// Why, in one line.
        reason: String,
    },
    /// A system call or a completion failed. (The OS error is part of the message rather than
    /// a `source()`, so that `{:#}` chains do not print it twice.)
    #[error("{context}: {error}")]
    Io {
        /// What was being done, e.g. `io_uring recv from 127.0.0.1:4100`.
        context: String,
        /// The OS error.
        error: io::Error,
    },
    /// The peer sent something the protocol does not allow, or closed early.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The peer reported an error frame.
    #[error("peer: {0}")]
    Peer(String),
    /// An operation ran past its time bound.
    #[error("{0}: timed out")]
    TimedOut(String),
    /// The caller asked for something out of bounds (a message too large, a zero count).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl TransportError {
    /// An [`TransportError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> TransportError {
        TransportError::Io {
            context: context.into(),
            error: source,
        }
    }

    /// An [`TransportError::Io`] from a negative completion result (`-errno`).
    pub(crate) fn errno(context: impl Into<String>, res: i32) -> TransportError {
        assert!(res < 0, "not an error result: {res}");
        TransportError::io(context, io::Error::from_raw_os_error(-res))
    }
}

impl From<crate::frame::ProtocolError> for TransportError {
    fn from(err: crate::frame::ProtocolError) -> TransportError {
        TransportError::Protocol(err.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let err = TransportError::errno("io_uring recv from 127.0.0.1:9", -libc::ECONNRESET);
        let text = err.to_string();
        assert!(
            text.starts_with("io_uring recv from 127.0.0.1:9: "),
            "{text}"
        );
        assert!(!text.contains('\n'));
        let err = TransportError::Unavailable {
            kind: TransportKind::Rdma,
            reason: "no RDMA device".into(),
        };
        assert_eq!(err.to_string(), "rdma: no RDMA device");
    }
}
