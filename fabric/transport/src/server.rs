//! The server: a listener and its connections, on threads of its own, for any backend.
//!
//! Every connection is a [`ServerSession`](crate::session::ServerSession) driven by the
//! backend; the client's `Hello` picks echo, sink or file mode. File mode needs a
//! [`ReceiveConfig`]: the directory files land in and this node's jurisdiction, which every
//! transfer's dataset must allow. Connections are bounded ([`ServeConfig::connections_max`]);
//! dropping or [`stop`](Server::stop)ping the server closes them all and joins its threads.

use std::fs::{self, File};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sovra_fabric::Jurisdiction;

use crate::error::TransportError;
use crate::{socket, tokio_tcp, uring, Config, TransportKind};

/// Most connections one server may be asked to hold at once.
pub const CONNECTIONS_MAX: usize = 1024;

/// Where received files go, and the jurisdiction this node is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveConfig {
    /// An existing directory; files are written to temporary names in it, then renamed.
    pub dir: PathBuf,
    /// This node's jurisdiction: transfers of datasets that do not allow it are refused.
    pub jurisdiction: Jurisdiction,
}

/// What a server offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Receive files (`None`: echo and sink only).
    pub receive: Option<ReceiveConfig>,
    /// Connections held at once (1 to [`CONNECTIONS_MAX`]); more are closed at once.
    pub connections_max: usize,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            receive: None,
            connections_max: 64,
        }
    }
}

/// A running server.
pub struct Server {
    kind: TransportKind,
    local_addr: SocketAddr,
    handle: Option<Handle>,
}

enum Handle {
    IoUring(uring::ServerHandle),
    Tokio(tokio_tcp::ServerHandle),
    #[cfg(feature = "rdma")]
    Rdma(crate::rdma::ServerHandle),
}

impl Server {
    /// Listens on `addr` (port 0 picks one; see [`local_addr`](Self::local_addr)) and serves
    /// with the given backend.
    pub fn start(
        kind: TransportKind,
        addr: SocketAddr,
        config: &Config,
        serve: ServeConfig,
    ) -> Result<Server, TransportError> {
        if !(1..=CONNECTIONS_MAX).contains(&serve.connections_max) {
            return Err(TransportError::Invalid(format!(
                "{} connections, use 1 to {CONNECTIONS_MAX}",
                serve.connections_max
            )));
        }
        if let Some(receive) = &serve.receive {
            if !receive.dir.is_dir() {
                return Err(TransportError::Invalid(format!(
                    "receive directory {} does not exist",
                    receive.dir.display()
                )));
            }
        }
        crate::probe(kind)?;
        let listener = socket::listen(addr, config)
            .map_err(|e| TransportError::io(format!("{kind} listen on {addr}"), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| TransportError::io(format!("{kind} listen on {addr}"), e))?;
        let handle = match kind {
            TransportKind::IoUring => Handle::IoUring(uring::serve(listener, config, serve)?),
            TransportKind::Tokio => Handle::Tokio(tokio_tcp::serve(listener, serve)?),
            TransportKind::Rdma => {
                #[cfg(feature = "rdma")]
                {
                    Handle::Rdma(crate::rdma::serve(listener, config, serve)?)
                }
                #[cfg(not(feature = "rdma"))]
                {
                    unreachable!("probe refuses rdma without the feature")
                }
            }
        };
        Ok(Server {
            kind,
            local_addr,
            handle: Some(handle),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The backend.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Stops listening, closes every connection and joins the server's threads.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        match self.handle.take() {
            Some(Handle::IoUring(h)) => h.stop(),
            Some(Handle::Tokio(h)) => h.stop(),
            #[cfg(feature = "rdma")]
            Some(Handle::Rdma(h)) => h.stop(),
            None => {}
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A received file's IO with plain blocking calls: the temporary file, fsync, rename.
pub(crate) struct FileSink {
    dir: PathBuf,
    file: Option<File>,
}

impl FileSink {
    pub(crate) fn new(dir: &Path) -> FileSink {
        FileSink {
            dir: dir.to_path_buf(),
            file: None,
        }
    }

    /// The open temporary file.
    pub(crate) fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    pub(crate) fn create(&mut self, partial_name: &str) -> Result<(), String> {
        assert!(self.file.is_none(), "one transfer at a time");
        let path = self.dir.join(partial_name);
        let file = File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        self.file = Some(file);
        Ok(())
    }

    /// Appends to the file (the io_uring receiver writes through its ring instead).
    #[cfg_attr(not(feature = "rdma"), allow(dead_code))]
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let file = self.file.as_mut().expect("write after create");
        file.write_all(bytes).map_err(|e| format!("write: {e}"))
    }

    /// fsync the file, rename it to its final name, fsync the directory.
    pub(crate) fn store(&mut self, partial_name: &str, final_name: &str) -> Result<(), String> {
        let file = self.file.take().expect("store after create");
        file.sync_all().map_err(|e| format!("fsync: {e}"))?;
        drop(file);
        let from = self.dir.join(partial_name);
        let to = self.dir.join(final_name);
        fs::rename(&from, &to).map_err(|e| format!("rename to {}: {e}", to.display()))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("fsync {}: {e}", self.dir.display()))
    }

    pub(crate) fn discard(&mut self, partial_name: &str) {
        self.file = None;
        let _ = fs::remove_file(self.dir.join(partial_name));
    }
}
