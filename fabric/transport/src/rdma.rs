//! The RDMA backend (cargo feature `rdma`): RC queue pairs over registered memory.
//!
//! Built only with the `rdma` feature, because the `ibverbs` crate needs `cmake`,
//! `libclang-dev` and `libibverbs-dev` to build. Without the feature, [`probe`] says so; with
//! it, [`probe`] says whether a device exists (`ibverbs::devices()` fails with `ENOSYS` on a
//! kernel without InfiniBand support).
//!
//! A connection starts on TCP: the client connects to the server's address (a side channel),
//! both sides create a reliable-connected queue pair, exchange its endpoint (QP number, LID,
//! GID) as one JSON line, move it to ready-to-send, post their receives and confirm with one
//! byte. From then on the same frames as on TCP travel as RC `SEND`s of at most
//! 1 MiB into receive buffers the peer posted in registered memory, in order, with
//! hardware retries when the peer has not reposted yet (`rnr_retry` 7). The server side is the
//! same [`ServerSession`](crate::session::ServerSession) as on TCP.
//!
//! Two limits of `ibverbs` 0.9.2 shape this: its safe API posts only `IBV_WR_SEND` (no RDMA
//! WRITE or READ: neither the local key of a memory region nor the raw queue pair is exposed),
//! and it has no completion channels, so completions are polled (spinning briefly, then
//! sleeping in short steps). One-sided WRITE needs `ibverbs-sys` or a newer `ibverbs`.
//! This path builds in CI and has never run here: the development machine has no RDMA device.

use crate::error::TransportError;
use crate::TransportKind;

/// Whether this build has the RDMA backend.
pub const BUILT: bool = cfg!(feature = "rdma");

/// Where the kernel lists RDMA devices.
pub const SYSFS_DIR: &str = "/sys/class/infiniband";

/// The first RDMA device's name, or why there is none (on one line).
pub fn probe() -> Result<String, TransportError> {
    #[cfg(feature = "rdma")]
    {
        let listed = ibverbs::devices().map(|list| {
            list.iter()
                .next()
                .and_then(|d| d.name().map(|n| n.to_string_lossy().into_owned()))
        });
        let sysfs = std::path::Path::new(SYSFS_DIR).exists();
        match listed {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Err(absent(sysfs, "ibverbs lists no device")),
            Err(e) => Err(absent(sysfs, &format!("ibverbs: {e}"))),
        }
    }
    #[cfg(not(feature = "rdma"))]
    {
        Err(TransportError::Unavailable {
            kind: TransportKind::Rdma,
            reason: "built without the `rdma` feature (rebuild with --features rdma)".into(),
        })
    }
}

/// The error for a machine without a usable device.
pub fn absent(sysfs_exists: bool, why: &str) -> TransportError {
    let state = if sysfs_exists { "present" } else { "absent" };
    TransportError::Unavailable {
        kind: TransportKind::Rdma,
        reason: format!("no RDMA device ({SYSFS_DIR} {state}: {why})"),
    }
}

#[cfg(feature = "rdma")]
mod verbs;

#[cfg(feature = "rdma")]
pub(crate) use verbs::{serve, Client, ServerHandle};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_is_reported_clearly() {
        let err = probe().expect_err("no RDMA device on the machines that run these tests");
        let text = err.to_string();
        if BUILT {
            if !std::path::Path::new(SYSFS_DIR).exists() {
                assert!(
                    text.starts_with("rdma: no RDMA device (/sys/class/infiniband absent: "),
                    "{text}"
                );
            }
        } else {
            assert_eq!(
                text,
                "rdma: built without the `rdma` feature (rebuild with --features rdma)"
            );
        }
        let text = absent(false, "ibverbs: Function not implemented (os error 38)").to_string();
        assert_eq!(
            text,
            "rdma: no RDMA device (/sys/class/infiniband absent: ibverbs: Function not \
             implemented (os error 38))"
        );
    }

    #[test]
    fn selecting_rdma_fails_with_the_reason() {
        let config = crate::Config::default();
        let err = crate::Client::new(TransportKind::Rdma, &config)
            .err()
            .expect("no RDMA here");
        assert!(err.to_string().starts_with("rdma: "), "{err}");
        let server = crate::Server::start(
            TransportKind::Rdma,
            "127.0.0.1:0".parse().unwrap(),
            &config,
            crate::ServeConfig::default(),
        );
        assert!(server.is_err());
        let resolved = crate::resolve(crate::Selection::Only(TransportKind::Rdma));
        assert_eq!(resolved.unwrap_err().to_string(), err.to_string());
    }
}
