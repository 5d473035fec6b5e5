//! sovra's data mover: bulk and small-message transfers between nodes.
//!
//! One framed protocol ([`frame`]) runs over three backends, chosen at run time
//! ([`TransportKind`], [`resolve`]):
//! - `io_uring`: a ring per thread with registered buffers, registered (fixed) sockets and
//!   files, batched and linked submission, multishot accept, busy polling of completions, and
//!   zero-copy send above a threshold to remote peers;
//! - `tokio`: a plain tokio TCP baseline, tuned the same way (`TCP_NODELAY`, the same socket
//!   buffer sizes and batching of small messages);
//! - `rdma`: RC queue pairs over registered memory with the `ibverbs` crate, behind the `rdma`
//!   cargo feature, connected through a TCP side channel.
//!
//! A [`Client`] runs operations (a stream one way, a ping-pong, a file transfer) on the thread
//! that owns it; a [`Server`] answers them (echo, sink, file receiver) on its own threads.
//! [`DataMover`] is the API the agent uses: it sends files from a dedicated thread and refuses,
//! before any byte moves, to send a dataset to a node outside the dataset's allowed
//! jurisdictions ([`DatasetPolicy`]); the receiving [`Server`] checks again.
//!
//! The protocol codec ([`frame`]) and the receiver's decisions ([`receive`], [`policy`]) are
//! pure; the backends are shells around them. See `docs/transport.md`.
//!
//! Architecture invariant: this crate never moves a dataset's bytes to a node whose
//! jurisdiction the dataset does not allow; both ends check, and the sender checks first.

#![warn(missing_docs)]

mod client;
mod error;
pub mod frame;
mod mover;
pub mod policy;
pub mod rdma;
pub mod receive;
mod server;
mod session;
mod socket;
mod tokio_tcp;
mod uring;

use std::fmt;
use std::str::FromStr;

pub use client::{Client, PingConfig, PingReport, StreamConfig, StreamReport};
pub use error::TransportError;
pub use mover::{DataMover, Destination, MoveError, Moved};
pub use policy::{DatasetPolicy, Refusal};
pub use server::{ReceiveConfig, ServeConfig, Server};

/// A transport backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// `io_uring` on a ring owned by one thread.
    IoUring,
    /// tokio TCP, the baseline.
    Tokio,
    /// RDMA RC queue pairs (`ibverbs`), built with the `rdma` feature.
    Rdma,
}

impl TransportKind {
    /// Every backend, in the order benchmarks list them.
    pub const ALL: [TransportKind; 3] = [
        TransportKind::Tokio,
        TransportKind::IoUring,
        TransportKind::Rdma,
    ];

    /// The name used on the command line and in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::IoUring => "io_uring",
            TransportKind::Tokio => "tokio",
            TransportKind::Rdma => "rdma",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TransportKind {
    type Err = String;

    fn from_str(text: &str) -> Result<TransportKind, String> {
        match text {
            "io_uring" | "io-uring" | "uring" => Ok(TransportKind::IoUring),
            "tokio" => Ok(TransportKind::Tokio),
            "rdma" => Ok(TransportKind::Rdma),
            other => Err(format!(
                "unknown transport {other:?}: use io_uring, tokio or rdma"
            )),
        }
    }
}

/// Which backend to use: one by name, or the best one this machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// rdma when built in and a device exists, else io_uring, else tokio.
    Auto,
    /// Exactly this backend; fails if it is unavailable here.
    Only(TransportKind),
}

impl FromStr for Selection {
    type Err = String;

    fn from_str(text: &str) -> Result<Selection, String> {
        if text == "auto" {
            return Ok(Selection::Auto);
        }
        text.parse().map(Selection::Only)
    }
}

/// The outcome of [`resolve`]: a backend, and why it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The chosen backend.
    pub kind: TransportKind,
    /// One line: why (for `auto`, why each better backend was passed over).
    pub why: String,
}

/// Whether `kind` can run on this machine: `Ok` or the reason it cannot, on one line
/// (e.g. `rdma: no RDMA device (/sys/class/infiniband absent: ...)`).
pub fn probe(kind: TransportKind) -> Result<(), TransportError> {
    match kind {
        TransportKind::IoUring => uring::probe(),
        TransportKind::Tokio => Ok(()),
        TransportKind::Rdma => rdma::probe().map(|_device| ()),
    }
}

/// Resolves a selection to a backend that runs here. `Auto` prefers rdma (a device exists and
/// the `rdma` feature is built), then io_uring (the kernel allows rings), then tokio.
pub fn resolve(selection: Selection) -> Result<Resolved, TransportError> {
    match selection {
        Selection::Only(kind) => {
            probe(kind)?;
            Ok(Resolved {
                kind,
                why: format!("{kind} requested"),
            })
        }
        Selection::Auto => {
            let rdma = match rdma::probe() {
                Ok(device) => {
                    return Ok(Resolved {
                        kind: TransportKind::Rdma,
                        why: format!("auto: rdma device {device}"),
                    })
                }
                Err(err) => err,
            };
            match uring::probe() {
                Ok(()) => Ok(Resolved {
                    kind: TransportKind::IoUring,
                    why: format!("auto: {rdma}, therefore io_uring"),
                }),
                Err(uring) => Ok(Resolved {
                    kind: TransportKind::Tokio,
                    why: format!("auto: {rdma}; {uring}; therefore tokio"),
                }),
            }
        }
    }
}

/// When the io_uring backend sends with `SendZc` instead of copying into the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Never.
    Off,
    /// Frames of at least `bytes_min` bytes to peers off this host. To a loopback address the
    /// kernel copies zero-copy sends anyway, later and at extra cost (measured at about half
    /// the throughput of a plain send here), so loopback peers get plain sends.
    Remote {
        /// Smallest frame sent with zero copy.
        bytes_min: usize,
    },
    /// Frames of at least `bytes_min` bytes to any peer, loopback included (for tests and
    /// measurements).
    Always {
        /// Smallest frame sent with zero copy.
        bytes_min: usize,
    },
}

impl ZeroCopy {
    /// The smallest frame sent with zero copy to `peer`, if any.
    pub fn bytes_min_for(self, peer: std::net::IpAddr) -> Option<usize> {
        match self {
            ZeroCopy::Off => None,
            ZeroCopy::Remote { .. } if peer.is_loopback() => None,
            ZeroCopy::Remote { bytes_min } | ZeroCopy::Always { bytes_min } => Some(bytes_min),
        }
    }
}

/// Settings shared by every backend, so that they are compared on equal terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `SO_SNDBUF` and `SO_RCVBUF` of every socket (the kernel may double or clamp them).
    pub socket_buffer_bytes: usize,
    /// Small messages are coalesced into writes of up to this many bytes when streaming; a
    /// message at least this large is written on its own.
    pub batch_bytes: usize,
    /// io_uring: when to send with `SendZc` (zero copy).
    pub zero_copy: ZeroCopy,
    /// io_uring: wait for completions by polling the rings (no system call until the kernel
    /// has completion work queued, no interrupt, no wake-up; yielding the CPU to any other
    /// runnable thread) for up to this long before sleeping in the kernel. 0: always sleep.
    pub busy_poll_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            socket_buffer_bytes: 4 << 20,
            batch_bytes: 1 << 20,
            zero_copy: ZeroCopy::Remote {
                bytes_min: 64 << 10,
            },
            busy_poll_ns: 200_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for kind in TransportKind::ALL {
            assert_eq!(kind.name().parse::<TransportKind>(), Ok(kind));
            assert_eq!(kind.name().parse::<Selection>(), Ok(Selection::Only(kind)));
        }
        assert_eq!("auto".parse::<Selection>(), Ok(Selection::Auto));
        assert!("ucx".parse::<TransportKind>().is_err());
    }

    #[test]
    fn auto_resolves_to_something_that_runs() {
        let resolved = resolve(Selection::Auto).unwrap();
        assert!(probe(resolved.kind).is_ok(), "{resolved:?}");
        if !rdma::BUILT {
            assert_ne!(resolved.kind, TransportKind::Rdma);
            assert!(resolved.why.contains("feature"), "{}", resolved.why);
        }
    }

    #[test]
    fn tokio_always_resolves() {
        let resolved = resolve(Selection::Only(TransportKind::Tokio)).unwrap();
        assert_eq!(resolved.kind, TransportKind::Tokio);
    }
}
