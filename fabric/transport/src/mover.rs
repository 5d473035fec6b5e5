//! The data mover: the API the agent stages inputs and checkpoints with.
//!
//! A [`DataMover`] owns one thread and a [`Client`](crate::Client) on it (for io_uring, the
//! thread owns the ring); [`DataMover::send_file`] hands it a request over a bounded channel
//! and waits for the answer, so a caller on a tokio runtime should call it from
//! `spawn_blocking`. Before anything is queued, let alone sent, the dataset's policy is checked
//! against the destination node's jurisdiction: a refusal is [`MoveError::Refused`] and no
//! connection is made. The receiving [`Server`](crate::Server) checks again with its own
//! jurisdiction, so a sender with stale facts is still refused, before any data moves.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sovra_fabric::Jurisdiction;

use crate::error::TransportError;
use crate::frame::{TransferHeader, TransferStatus};
use crate::policy::{DatasetPolicy, Refusal};
use crate::receive::check_file_name;
use crate::{Client, Config, TransportKind};

/// Requests queued for the mover's thread at most.
const REQUESTS_MAX: usize = 64;

/// Where a file goes: a node's data-mover address and the jurisdiction the node is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The receiving server.
    pub addr: SocketAddr,
    /// The node's jurisdiction, from the topology.
    pub jurisdiction: Jurisdiction,
}

/// A file stored by the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The transfer's id (in the receiver's temporary file names and logs).
    pub transfer_id: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// SHA-256 of the file, which the receiver checked before storing it.
    pub sha256: [u8; 32],
    /// From the request to the receiver's confirmation that the file is durable.
    pub elapsed: Duration,
}

/// Why a file was not moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The dataset may not go to the destination's jurisdiction; nothing was sent.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The receiver refused the transfer before any data moved.
    #[error("receiver refused: {0}")]
    RefusedByReceiver(String),
    /// The receiver got the data but did not store it (checksum, size, disk).
    #[error("receiver failed: {0}")]
    ReceiverFailed(String),
    /// The file to send cannot be used.
    #[error("{}: {source}", path.display())]
    Source {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The mover's thread is gone.
    #[error("data mover stopped")]
    Stopped,
}

/// One file to send, with where to put the answer.
struct Request {
    path: PathBuf,
    name: String,
    to: SocketAddr,
    dataset: DatasetPolicy,
    transfer_id: u64,
    reply: SyncSender<Result<Moved, MoveError>>,
}

/// Sends files from a dedicated thread; see the module docs.
pub struct DataMover {
    kind: TransportKind,
    requests: Option<SyncSender<Request>>,
    thread: Option<JoinHandle<()>>,
    next_id: AtomicU64,
}

impl DataMover {
    /// Starts the mover's thread with the given backend.
    pub fn start(kind: TransportKind, config: &Config) -> Result<DataMover, TransportError> {
        let (requests, inbox) = mpsc::sync_channel::<Request>(REQUESTS_MAX);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let config = *config;
        let thread = std::thread::Builder::new()
            .name("sovra-data-mover".into())
            .spawn(move || {
                // The client (and for io_uring its ring) is made on, and stays on, this thread.
                match Client::new(kind, &config) {
                    Ok(client) => {
                        let _ = ready_tx.send(Ok(()));
                        mover_loop(client, &inbox);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| TransportError::io("start the data mover thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(DataMover {
                kind,
                requests: Some(requests),
                thread: Some(thread),
                next_id: AtomicU64::new(1),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(TransportError::Protocol(
                    "the data mover thread died".into(),
                ))
            }
        }
    }

    /// The backend.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Sends the file at `path` to `to`, stored there under its file name, if `dataset` allows
    /// the destination's jurisdiction; blocks until the receiver has stored it durably.
    pub fn send_file(
        &self,
        path: &Path,
        to: &Destination,
        dataset: &DatasetPolicy,
    ) -> Result<Moved, MoveError> {
        // First, before anything else: may this dataset go there at all?
        dataset
            .check_destination(to.jurisdiction)
            .map_err(MoveError::Refused)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| MoveError::Source {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "no UTF-8 file name"),
            })?;
        check_file_name(name).map_err(|why| MoveError::Source {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, why),
        })?;
        let counter = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = mpsc::sync_channel(1);
        let request = Request {
            path: path.to_path_buf(),
            name: name.to_string(),
            to: to.addr,
            dataset: dataset.clone(),
            transfer_id: (u64::from(std::process::id()) << 32) | (counter & 0xffff_ffff),
            reply,
        };
        let requests = self.requests.as_ref().ok_or(MoveError::Stopped)?;
        requests.send(request).map_err(|_| MoveError::Stopped)?;
        answer.recv().map_err(|_| MoveError::Stopped)?
    }
}

impl Drop for DataMover {
    fn drop(&mut self) {
        self.requests = None; // Closing the channel ends the loop.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The mover thread's loop: one request at a time, until the channel closes.
fn mover_loop(mut client: Client, inbox: &Receiver<Request>) {
    while let Ok(request) = inbox.recv() {
        let result = move_one(&mut client, &request);
        let _ = request.reply.send(result);
    }
}

fn move_one(client: &mut Client, request: &Request) -> Result<Moved, MoveError> {
    let start = Instant::now();
    let source = |source: io::Error| MoveError::Source {
        path: request.path.clone(),
        source,
    };
    let mut file = File::open(&request.path).map_err(source)?;
    let meta = file.metadata().map_err(source)?;
    if !meta.is_file() {
        return Err(source(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let header = TransferHeader {
        transfer_id: request.transfer_id,
        size_bytes: meta.len(),
        dataset: request.dataset.dataset().to_string(),
        name: request.name.clone(),
        allowed: request.dataset.allowed().to_vec(),
    };
    let sent = client.send_file(request.to, &header, &mut file)?;
    match sent.reply.status {
        TransferStatus::Stored => Ok(Moved {
            transfer_id: header.transfer_id,
            bytes: header.size_bytes,
            sha256: sent.digest,
            elapsed: start.elapsed(),
        }),
        TransferStatus::Refused => Err(MoveError::RefusedByReceiver(sent.reply.message)),
        TransferStatus::Failed => Err(MoveError::ReceiverFailed(sent.reply.message)),
        TransferStatus::Ready => Err(MoveError::Transport(TransportError::Protocol(
            "receiver answered Ready at the end of a transfer".into(),
        ))),
    }
}
