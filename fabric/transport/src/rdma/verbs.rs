//! RC queue pairs with `ibverbs`: connection setup over a TCP side channel, and a reliable
//! ordered pipe of `SEND`s into registered receive buffers that the client operations and the
//! server session run over (see the parent module for the protocol and its limits).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ibverbs::{ibv_qp_type, ibv_wc, CompletionQueue, MemoryRegion, QueuePair, QueuePairEndpoint};
use sha2::{Digest, Sha256};

use crate::client::{
    check_ack, echo_mismatch, finish, layout_frames, pattern, stamp, stamp_frames, unexpected,
    Batching, FileSent, PingConfig, PingReport, StreamConfig, StreamReport, FILE_CHUNK_BYTES,
};
use crate::error::TransportError;
use crate::frame::{
    self, encode_hello, Decoder, Event, Header, Kind, Mode, StreamAck, TransferHeader,
    TransferReply, TransferStatus, HEADER_BYTES,
};
use crate::server::{FileSink, ServeConfig};
use crate::session::{ServerSession, Step};
use crate::{socket, Config};

/// `IBV_GID_TYPE_ROCE_V2` from `verbs.h` (the crate re-exports the type, not its values).
const IBV_GID_TYPE_ROCE_V2: ibverbs::ibv_gid_type = 2;

/// Bytes per `SEND`, and per receive buffer.
pub const SLOT_BYTES: usize = 1 << 20;
/// Receive buffers posted, and send buffers in flight at most.
const SLOTS: usize = 16;
/// Completion queue entries: every send and receive slot at once.
const CQ_ENTRIES: i32 = 2 * SLOTS as i32;
/// Bit set in a receive's work request id.
const WR_RECV: u64 = 1 << 32;
/// A client operation fails after this long with nothing completing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest endpoint line on the side channel.
const ENDPOINT_LINE_MAX: usize = 4096;

const _: () = assert!(CQ_ENTRIES as usize >= 2 * SLOTS);

fn rdma_err(what: &str) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
    move |e| TransportError::io(format!("rdma {what}"), e)
}

/// A connected queue pair and its registered buffers: an ordered pipe of byte chunks.
struct Pipe<'a> {
    qp: QueuePair<'a>,
    cq: &'a CompletionQueue<'a>,
    send_mr: MemoryRegion<u8>,
    recv_mr: MemoryRegion<u8>,
    send_free: Vec<usize>,
    /// Received chunks (slot, length) not yet handed out.
    received: VecDeque<(usize, usize)>,
    stop: Option<Arc<AtomicBool>>,
    /// The side channel: its end of stream is how a peer's departure shows.
    side_fd: RawFd,
    peer: String,
}

impl Pipe<'_> {
    /// Sends `bytes` as one or more `SEND`s, in order.
    fn send(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        for chunk in bytes.chunks(SLOT_BYTES) {
            while self.send_free.is_empty() {
                self.poll(false)?;
            }
            let slot = self.send_free.pop().expect("a free slot");
            let start = slot * SLOT_BYTES;
            self.send_mr[start..start + chunk.len()].copy_from_slice(chunk);
            // SAFETY: the slot stays untouched until its completion returns it to `send_free`.
            unsafe {
                self.qp
                    .post_send(&mut self.send_mr, start..start + chunk.len(), slot as u64)
            }
            .map_err(rdma_err("post send"))?;
        }
        Ok(())
    }

    /// The next received chunk: (slot, length). Give the slot back with [`repost`].
    fn recv(&mut self, timeout: bool) -> Result<(usize, usize), TransportError> {
        loop {
            if let Some(chunk) = self.received.pop_front() {
                return Ok(chunk);
            }
            self.poll(timeout)?;
        }
    }

    fn chunk(&self, slot: usize, len: usize) -> &[u8] {
        &self.recv_mr[slot * SLOT_BYTES..slot * SLOT_BYTES + len]
    }

    fn repost(&mut self, slot: usize) -> Result<(), TransportError> {
        let start = slot * SLOT_BYTES;
        // SAFETY: the slot's bytes are no longer used by us until its next completion.
        unsafe {
            self.qp.post_receive(
                &mut self.recv_mr,
                start..start + SLOT_BYTES,
                WR_RECV | slot as u64,
            )
        }
        .map_err(rdma_err("post receive"))
    }

    /// Waits for at least one completion; spins briefly, then sleeps in growing steps.
    fn poll(&mut self, timeout: bool) -> Result<(), TransportError> {
        let mut completions = [ibv_wc::default(); CQ_ENTRIES as usize];
        let start = Instant::now();
        let mut nap = Duration::from_micros(1);
        loop {
            let done = self
                .cq
                .poll(&mut completions)
                .map_err(rdma_err("poll completions"))?;
            if !done.is_empty() {
                for wc in done.iter() {
                    if let Some((status, vendor)) = wc.error() {
                        let id = wc.wr_id();
                        return Err(TransportError::Protocol(format!(
                            "rdma work request {id} with {} failed (status {status}, vendor \
                             {vendor})",
                            self.peer,
                        )));
                    }
                    let id = wc.wr_id();
                    if id & WR_RECV != 0 {
                        let slot = (id & !WR_RECV) as usize;
                        if slot >= SLOTS {
                            return Err(TransportError::Protocol("rdma: bad receive id".into()));
                        }
                        self.received.push_back((slot, wc.len()));
                    } else {
                        self.send_free.push(id as usize);
                    }
                }
                return Ok(());
            }
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                return Err(TransportError::Protocol("server stopping".into()));
            }
            let waited = start.elapsed();
            if timeout && waited > IDLE_TIMEOUT {
                return Err(TransportError::TimedOut(format!("rdma {}", self.peer)));
            }
            if waited > Duration::from_micros(50) {
                if side_closed(self.side_fd) {
                    return Err(TransportError::Protocol(format!(
                        "rdma {} closed",
                        self.peer
                    )));
                }
                thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(1));
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Waits until every send completed.
    fn flush(&mut self) -> Result<(), TransportError> {
        while self.send_free.len() < SLOTS {
            self.poll(true)?;
        }
        Ok(())
    }
}

/// Whether the peer closed the side channel (peeked without blocking).
fn side_closed(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

/// Sets up the queue pair over the side channel and runs `f` on the pipe.
fn with_pipe<R>(
    side: &mut TcpStream,
    peer: &str,
    stop: Option<Arc<AtomicBool>>,
    f: impl FnOnce(&mut Pipe<'_>) -> Result<R, TransportError>,
) -> Result<R, TransportError> {
    let list = ibverbs::devices().map_err(rdma_err("list devices"))?;
    let device = list.get(0).ok_or_else(|| {
        super::absent(
            std::path::Path::new(super::SYSFS_DIR).exists(),
            "device list is empty",
        )
    })?;
    let ctx = device.open().map_err(rdma_err("open device"))?;
    let cq = ctx
        .create_cq(CQ_ENTRIES, 0)
        .map_err(rdma_err("create cq"))?;
    let pd = ctx.alloc_pd().map_err(rdma_err("alloc pd"))?;
    let gid_index = ctx
        .gid_table()
        .iter()
        .find(|g| g.gid_type == IBV_GID_TYPE_ROCE_V2)
        .or_else(|| ctx.gid_table().first())
        .map(|g| g.gid_index);
    let mut builder = pd.create_qp(&cq, &cq, ibv_qp_type::IBV_QPT_RC);
    builder
        .set_max_send_wr(SLOTS as u32)
        .set_max_recv_wr(SLOTS as u32)
        .set_rnr_retry(7);
    if let Some(index) = gid_index {
        builder.set_gid_index(index);
    }
    let prepared = builder.build().map_err(rdma_err("create queue pair"))?;
    let remote = exchange(side, &prepared.endpoint())?;
    let qp = prepared
        .handshake(remote)
        .map_err(rdma_err("connect queue pair"))?;
    let send_mr = pd
        .allocate::<u8>(SLOTS * SLOT_BYTES)
        .map_err(rdma_err("register memory"))?;
    let recv_mr = pd
        .allocate::<u8>(SLOTS * SLOT_BYTES)
        .map_err(rdma_err("register memory"))?;
    let mut pipe = Pipe {
        qp,
        cq: &cq,
        send_mr,
        recv_mr,
        send_free: (0..SLOTS).collect(),
        received: VecDeque::with_capacity(SLOTS),
        stop,
        side_fd: side.as_raw_fd(),
        peer: peer.to_string(),
    };
    for slot in 0..SLOTS {
        pipe.repost(slot)?;
    }
    // Both sides have posted their receives before either sends.
    side.write_all(b"R").map_err(rdma_err("side channel"))?;
    let mut ready = [0u8; 1];
    side.read_exact(&mut ready)
        .map_err(rdma_err("side channel"))?;
    if ready != *b"R" {
        return Err(TransportError::Protocol(
            "rdma side channel: bad ready byte".into(),
        ));
    }
    let result = f(&mut pipe);
    let flushed = pipe.flush();
    result.and_then(|r| flushed.map(|()| r))
}

/// Sends our endpoint and reads the peer's, one JSON line each.
fn exchange(
    side: &mut TcpStream,
    local: &QueuePairEndpoint,
) -> Result<QueuePairEndpoint, TransportError> {
    let mut line = serde_json::to_vec(local)
        .map_err(|e| TransportError::Protocol(format!("rdma endpoint: {e}")))?;
    line.push(b'\n');
    side.write_all(&line).map_err(rdma_err("side channel"))?;
    let mut reader = BufReader::new((&*side).take(ENDPOINT_LINE_MAX as u64));
    let mut text = String::new();
    reader
        .read_line(&mut text)
        .map_err(rdma_err("side channel"))?;
    serde_json::from_str(text.trim_end())
        .map_err(|e| TransportError::Protocol(format!("rdma peer endpoint: {e}")))
}

/// An RDMA client.
pub(crate) struct Client {
    config: Config,
}

impl Client {
    pub(crate) fn new(config: &Config) -> Result<Client, TransportError> {
        super::probe()?;
        Ok(Client { config: *config })
    }

    fn side(&self, to: SocketAddr) -> Result<TcpStream, TransportError> {
        socket::connect(to, &self.config)
            .map_err(|e| TransportError::io(format!("rdma side channel to {to}"), e))
    }

    pub(crate) fn stream(
        &mut self,
        to: SocketAddr,
        config: &StreamConfig,
    ) -> Result<StreamReport, TransportError> {
        let mut side = self.side(to)?;
        let batching = Batching::new(config.message_bytes, self.config.batch_bytes);
        with_pipe(&mut side, &to.to_string(), None, |pipe| {
            let hello = encode_hello(Mode::Sink {
                digest: config.digest,
            });
            pipe.send(&frame::frame(Kind::Hello, &hello))?;
            let pattern = pattern(config.message_bytes);
            let mut hasher = config.digest.then(Sha256::new);
            let mut batch = vec![0u8; batching.write_bytes_max()];
            layout_frames(&mut batch, &pattern, batching.frames_per_write);
            let start = Instant::now();
            let deadline = start + config.duration_max;
            let mut sent = 0u64;
            while sent < config.messages_max {
                let count = (config.messages_max - sent).min(batching.frames_per_write as u64);
                let n = stamp_frames(
                    &mut batch,
                    config.message_bytes,
                    sent,
                    count as usize,
                    hasher.as_mut(),
                );
                pipe.send(&batch[..n])?;
                sent += count;
                if Instant::now() >= deadline {
                    break;
                }
            }
            pipe.send(&frame::frame(Kind::End, &[]))?;
            let (kind, payload) = read_control(pipe, "StreamAck")?;
            let elapsed = start.elapsed();
            if kind != Kind::StreamAck {
                return Err(unexpected(kind, &payload, "StreamAck"));
            }
            let payload_bytes = sent * config.message_bytes as u64;
            let ack = StreamAck::decode(&payload)?;
            check_ack(&ack, sent, payload_bytes, hasher.map(finish))?;
            Ok(StreamReport {
                messages: sent,
                payload_bytes,
                elapsed,
            })
        })
    }

    pub(crate) fn ping(
        &mut self,
        to: SocketAddr,
        config: &PingConfig,
    ) -> Result<PingReport, TransportError> {
        let mut side = self.side(to)?;
        with_pipe(&mut side, &to.to_string(), None, |pipe| {
            pipe.send(&frame::frame(Kind::Hello, &encode_hello(Mode::Echo)))?;
            let mut out = frame::frame(Kind::Data, &pattern(config.message_bytes));
            let mut back = Vec::with_capacity(out.len());
            let mut rtts_ns = Vec::with_capacity(config.round_trips_max.min(1 << 20) as usize);
            let deadline = Instant::now() + config.duration_max;
            for i in 0..config.round_trips_max {
                if config.verify {
                    stamp(&mut out[HEADER_BYTES..], i);
                }
                let start = Instant::now();
                pipe.send(&out)?;
                back.clear();
                while back.len() < out.len() {
                    let (slot, len) = pipe.recv(true)?;
                    back.extend_from_slice(pipe.chunk(slot, len));
                    pipe.repost(slot)?;
                }
                let end = Instant::now();
                let same = if config.verify {
                    back == out
                } else {
                    back[..HEADER_BYTES] == out[..HEADER_BYTES] && back.len() == out.len()
                };
                if !same {
                    return Err(echo_mismatch(&out, &back));
                }
                rtts_ns.push((end - start).as_nanos() as u64);
                if end >= deadline {
                    break;
                }
            }
            Ok(PingReport { rtts_ns })
        })
    }

    pub(crate) fn send_file(
        &mut self,
        to: SocketAddr,
        header: &TransferHeader,
        file: &mut File,
    ) -> Result<FileSent, TransportError> {
        let mut side = self.side(to)?;
        with_pipe(&mut side, &to.to_string(), None, |pipe| {
            let mut opening = frame::frame(Kind::Hello, &encode_hello(Mode::File));
            frame::encode_frame(Kind::TransferHeader, &header.encode(), &mut opening);
            pipe.send(&opening)?;
            let reply = read_reply(pipe)?;
            if reply.status != TransferStatus::Ready {
                return Ok(FileSent {
                    reply,
                    digest: [0; 32],
                });
            }
            let mut hasher = Sha256::new();
            let mut chunk = vec![0u8; HEADER_BYTES + FILE_CHUNK_BYTES];
            let mut remaining = header.size_bytes;
            while remaining > 0 {
                let n = remaining.min(FILE_CHUNK_BYTES as u64) as usize;
                file.read_exact(&mut chunk[HEADER_BYTES..HEADER_BYTES + n])
                    .map_err(rdma_err("read the file being sent"))?;
                chunk[..HEADER_BYTES].copy_from_slice(&Header::new(Kind::Data, n).encode());
                hasher.update(&chunk[HEADER_BYTES..HEADER_BYTES + n]);
                pipe.send(&chunk[..HEADER_BYTES + n])?;
                remaining -= n as u64;
            }
            let digest = finish(hasher);
            pipe.send(&frame::frame(Kind::TransferEnd, &digest))?;
            let reply = read_reply(pipe)?;
            Ok(FileSent { reply, digest })
        })
    }
}

fn read_reply(pipe: &mut Pipe<'_>) -> Result<TransferReply, TransportError> {
    let (kind, payload) = read_control(pipe, "TransferReply")?;
    if kind != Kind::TransferReply {
        return Err(unexpected(kind, &payload, "TransferReply"));
    }
    Ok(TransferReply::decode(&payload)?)
}

/// Reads one control frame (the peer sends nothing after it until we answer).
fn read_control(pipe: &mut Pipe<'_>, waiting_for: &str) -> Result<(Kind, Vec<u8>), TransportError> {
    let mut decoder = Decoder::default();
    loop {
        let (slot, len) = pipe.recv(true)?;
        let bytes = pipe.chunk(slot, len).to_vec();
        pipe.repost(slot)?;
        let mut input = &bytes[..];
        match decoder.next(&mut input)? {
            None => {}
            Some(Event::Control(kind)) => return Ok((kind, decoder.control().to_vec())),
            Some(_) => {
                return Err(TransportError::Protocol(format!(
                    "Data frame while waiting for {waiting_for}"
                )))
            }
        }
    }
}

/// A running RDMA server.
pub(crate) struct ServerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

pub(crate) fn serve(
    listener: TcpListener,
    _config: &Config,
    serve: ServeConfig,
) -> Result<ServerHandle, TransportError> {
    listener
        .set_nonblocking(true)
        .map_err(rdma_err("listener"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_loop = stop.clone();
    let thread = thread::Builder::new()
        .name("sovra-rdma-listen".into())
        .spawn(move || listen_loop(&listener, &stop_loop, &serve))
        .map_err(rdma_err("start the listener thread"))?;
    Ok(ServerHandle {
        stop,
        thread: Some(thread),
    })
}

fn listen_loop(listener: &TcpListener, stop: &Arc<AtomicBool>, serve: &ServeConfig) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((side, peer)) => {
                threads.retain(|t| !t.is_finished());
                if threads.len() >= serve.connections_max {
                    continue; // Dropping the side channel refuses the connection.
                }
                next_id += 1;
                let (stop, serve, id) = (stop.clone(), serve.clone(), next_id);
                let spawned =
                    thread::Builder::new()
                        .name("sovra-rdma-conn".into())
                        .spawn(move || {
                            if let Err(e) = connection(side, peer, id, stop, &serve) {
                                tracing::debug!("rdma connection {id} from {peer}: {e}");
                            }
                        });
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => tracing::warn!("rdma server: no thread for a connection: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!("rdma accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

fn connection(
    mut side: TcpStream,
    peer: SocketAddr,
    id: u64,
    stop: Arc<AtomicBool>,
    serve: &ServeConfig,
) -> Result<(), TransportError> {
    side.set_nonblocking(false)
        .map_err(rdma_err("side channel"))?;
    side.set_nodelay(true).map_err(rdma_err("side channel"))?;
    side.set_read_timeout(Some(IDLE_TIMEOUT))
        .map_err(rdma_err("side channel"))?;
    let receive = serve.receive.as_ref();
    with_pipe(&mut side, &peer.to_string(), Some(stop), |pipe| {
        let mut session = ServerSession::new(receive.map(|r| r.jurisdiction), id);
        let mut files = receive.map(|r| FileSink::new(&r.dir));
        while !session.is_closed() {
            // A server waits for its client without a time limit (until stopped).
            let (slot, len) = match pipe.recv(false) {
                Ok(chunk) => chunk,
                Err(_) => {
                    session.handle_eof();
                    (0, 0)
                }
            };
            let bytes = pipe.chunk(slot, len).to_vec();
            if len > 0 {
                pipe.repost(slot)?;
            }
            let mut input = &bytes[..];
            while let Some(step) = session.handle_input(&mut input) {
                match step {
                    Step::Send(frame) => pipe.send(&frame)?,
                    Step::Close => {}
                    Step::Create { partial_name } => {
                        let sink = files.as_mut().expect("file mode has a directory");
                        session.handle_created(sink.create(&partial_name));
                    }
                    Step::Write(data) => {
                        let sink = files.as_mut().expect("file mode has a directory");
                        if let Err(why) = sink.write(data) {
                            session.handle_write_failed(&why);
                        }
                    }
                    Step::Store {
                        partial_name,
                        final_name,
                    } => {
                        let sink = files.as_mut().expect("file mode has a directory");
                        session.handle_stored(sink.store(&partial_name, &final_name));
                    }
                    Step::Discard { partial_name } => {
                        if let Some(sink) = files.as_mut() {
                            sink.discard(&partial_name);
                        }
                    }
                }
            }
            if !input.is_empty() && !session.is_closed() {
                match session.handle_echo(input) {
                    Ok(()) => pipe.send(input)?,
                    Err(frame) => pipe.send(&frame)?,
                }
            }
        }
        Ok(())
    })
}
