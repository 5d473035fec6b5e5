//! The tokio TCP baseline.
//!
//! Tuned as a careful tokio user would: `TCP_NODELAY`, the same socket buffer sizes as the
//! other backends, small messages coalesced into writes of `Config::batch_bytes`, a large
//! message written with one vectored write (header and payload), receives of
//! [`RECV_CHUNK_BYTES`], and a current-thread runtime on the thread that runs the operation (so
//! no cross-thread wake-ups). The server runs one current-thread runtime on its own thread, with
//! one event loop over a closed set of events.

use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::client::{
    check_ack, echo_mismatch, finish, layout_frames, pattern, stamp, stamp_frames, unexpected,
    Batching, FileSent, PingConfig, PingReport, StreamConfig, StreamReport, FILE_CHUNK_BYTES,
    RECV_CHUNK_BYTES,
};
use crate::error::TransportError;
use crate::frame::{
    self, encode_hello, Header, Kind, Mode, StreamAck, TransferHeader, TransferReply,
    TransferStatus, HEADER_BYTES,
};
use crate::server::{ReceiveConfig, ServeConfig};
use crate::session::{error_frame, ServerSession, Step};
use crate::Config;

/// A tokio client: a current-thread runtime owned by the calling thread.
pub(crate) struct Client {
    runtime: tokio::runtime::Runtime,
    config: Config,
}

impl Client {
    pub(crate) fn new(config: &Config) -> Result<Client, TransportError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TransportError::io("tokio: cannot start a runtime", e))?;
        Ok(Client {
            runtime,
            config: *config,
        })
    }

    pub(crate) fn stream(
        &mut self,
        to: SocketAddr,
        config: &StreamConfig,
    ) -> Result<StreamReport, TransportError> {
        self.runtime.block_on(stream(to, config, &self.config))
    }

    pub(crate) fn ping(
        &mut self,
        to: SocketAddr,
        config: &PingConfig,
    ) -> Result<PingReport, TransportError> {
        self.runtime.block_on(ping(to, config, &self.config))
    }

    pub(crate) fn send_file(
        &mut self,
        to: SocketAddr,
        header: &TransferHeader,
        file: &mut File,
    ) -> Result<FileSent, TransportError> {
        self.runtime
            .block_on(send_file(to, header, file, &self.config))
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TransportError {
    let what = what.into();
    move |e| TransportError::io(what, e)
}

async fn connect(to: SocketAddr, config: &Config) -> Result<TcpStream, TransportError> {
    let context = format!("tokio connect to {to}");
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io_err(&context))?;
    if config.socket_buffer_bytes > 0 {
        let bytes = u32::try_from(config.socket_buffer_bytes).unwrap_or(u32::MAX);
        socket
            .set_send_buffer_size(bytes)
            .map_err(io_err(&context))?;
        socket
            .set_recv_buffer_size(bytes)
            .map_err(io_err(&context))?;
    }
    let stream = socket.connect(to).await.map_err(io_err(&context))?;
    stream.set_nodelay(true).map_err(io_err(&context))?;
    Ok(stream)
}

/// Writes `a` then `b` with vectored writes, handling short writes.
async fn write_two(stream: &mut TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let total = a.len() + b.len();
    let mut done = 0;
    while done < total {
        let n = if done < a.len() {
            stream
                .write_vectored(&[IoSlice::new(&a[done..]), IoSlice::new(b)])
                .await?
        } else {
            stream.write(&b[done - a.len()..]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// Reads one control frame; a `Data` frame or an early close is a protocol error.
async fn read_control(
    stream: &mut (impl AsyncRead + Unpin),
    waiting_for: &str,
) -> Result<(Kind, Vec<u8>), TransportError> {
    let mut header = [0u8; HEADER_BYTES];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| closed_or_io(e, waiting_for))?;
    let header = Header::decode(header)?;
    if header.kind == Kind::Data {
        return Err(TransportError::Protocol(format!(
            "Data frame while waiting for {waiting_for}"
        )));
    }
    let mut payload = vec![0u8; header.len as usize];
    stream
        .read_exact(&mut payload)
        .await
        .map_err(|e| closed_or_io(e, waiting_for))?;
    Ok((header.kind, payload))
}

fn closed_or_io(e: io::Error, waiting_for: &str) -> TransportError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        TransportError::Protocol(format!("peer closed while we waited for {waiting_for}"))
    } else {
        TransportError::io(format!("tokio read ({waiting_for})"), e)
    }
}

async fn stream(
    to: SocketAddr,
    config: &StreamConfig,
    transport: &Config,
) -> Result<StreamReport, TransportError> {
    let mut stream = connect(to, transport).await?;
    let context = format!("tokio send to {to}");
    let hello = frame::frame(
        Kind::Hello,
        &encode_hello(Mode::Sink {
            digest: config.digest,
        }),
    );
    stream.write_all(&hello).await.map_err(io_err(&context))?;
    let batching = Batching::new(config.message_bytes, transport.batch_bytes);
    let pattern = pattern(config.message_bytes);
    let mut hasher = config.digest.then(Sha256::new);
    let start = Instant::now();
    let deadline = start + config.duration_max;
    let mut sent = 0u64;
    if batching.frames_per_write > 1 {
        // Small messages: coalesced, as a `BufWriter` would, but laid out once and re-stamped.
        let mut batch = vec![0u8; batching.write_bytes_max()];
        layout_frames(&mut batch, &pattern, batching.frames_per_write);
        while sent < config.messages_max {
            let count = (config.messages_max - sent).min(batching.frames_per_write as u64);
            let n = stamp_frames(
                &mut batch,
                config.message_bytes,
                sent,
                count as usize,
                hasher.as_mut(),
            );
            stream
                .write_all(&batch[..n])
                .await
                .map_err(io_err(&context))?;
            sent += count;
            if Instant::now() >= deadline {
                break;
            }
        }
    } else {
        // A large message: header and payload in one vectored write, no copy.
        let header = Header::new(Kind::Data, config.message_bytes).encode();
        let mut payload = pattern;
        while sent < config.messages_max {
            stamp(&mut payload, sent);
            if let Some(h) = hasher.as_mut() {
                h.update(&payload);
            }
            write_two(&mut stream, &header, &payload)
                .await
                .map_err(io_err(&context))?;
            sent += 1;
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    stream
        .write_all(&frame::frame(Kind::End, &[]))
        .await
        .map_err(io_err(&context))?;
    let (kind, payload) = read_control(&mut stream, "StreamAck").await?;
    let elapsed = start.elapsed();
    if kind != Kind::StreamAck {
        return Err(unexpected(kind, &payload, "StreamAck"));
    }
    let ack = StreamAck::decode(&payload)?;
    let payload_bytes = sent * config.message_bytes as u64;
    check_ack(&ack, sent, payload_bytes, hasher.map(finish))?;
    Ok(StreamReport {
        messages: sent,
        payload_bytes,
        elapsed,
    })
}

async fn ping(
    to: SocketAddr,
    config: &PingConfig,
    transport: &Config,
) -> Result<PingReport, TransportError> {
    let mut stream = connect(to, transport).await?;
    let context = format!("tokio ping {to}");
    let hello = frame::frame(Kind::Hello, &encode_hello(Mode::Echo));
    stream.write_all(&hello).await.map_err(io_err(&context))?;
    let mut out = frame::frame(Kind::Data, &pattern(config.message_bytes));
    let mut back = vec![0u8; out.len()];
    let mut rtts_ns = Vec::with_capacity(config.round_trips_max.min(1 << 20) as usize);
    let (mut reader, mut writer) = stream.split();
    let deadline = Instant::now() + config.duration_max;
    for i in 0..config.round_trips_max {
        if config.verify {
            stamp(&mut out[HEADER_BYTES..], i);
        }
        let start = Instant::now();
        // Read while writing: a large echo comes back before the whole message is sent.
        let (wrote, read) = tokio::join!(writer.write_all(&out), reader.read_exact(&mut back));
        let end = Instant::now();
        wrote.map_err(io_err(&context))?;
        read.map_err(|e| closed_or_io(e, "an echo"))?;
        let same = if config.verify {
            back == out
        } else {
            back[..HEADER_BYTES] == out[..HEADER_BYTES]
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
}

async fn send_file(
    to: SocketAddr,
    header: &TransferHeader,
    file: &mut File,
    transport: &Config,
) -> Result<FileSent, TransportError> {
    let mut stream = connect(to, transport).await?;
    let context = format!("tokio send file to {to}");
    let mut opening = frame::frame(Kind::Hello, &encode_hello(Mode::File));
    frame::encode_frame(Kind::TransferHeader, &header.encode(), &mut opening);
    stream.write_all(&opening).await.map_err(io_err(&context))?;
    let reply = read_reply(&mut stream).await?;
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
        // The file is local: a plain read on this client's own thread.
        file.read_exact(&mut chunk[HEADER_BYTES..HEADER_BYTES + n])
            .map_err(io_err("read the file being sent"))?;
        chunk[..HEADER_BYTES].copy_from_slice(&Header::new(Kind::Data, n).encode());
        hasher.update(&chunk[HEADER_BYTES..HEADER_BYTES + n]);
        stream
            .write_all(&chunk[..HEADER_BYTES + n])
            .await
            .map_err(io_err(&context))?;
        remaining -= n as u64;
    }
    let digest = finish(hasher);
    stream
        .write_all(&frame::frame(Kind::TransferEnd, &digest))
        .await
        .map_err(io_err(&context))?;
    let reply = read_reply(&mut stream).await?;
    Ok(FileSent { reply, digest })
}

async fn read_reply(stream: &mut TcpStream) -> Result<TransferReply, TransportError> {
    let (kind, payload) = read_control(stream, "TransferReply").await?;
    if kind != Kind::TransferReply {
        return Err(unexpected(kind, &payload, "TransferReply"));
    }
    Ok(TransferReply::decode(&payload)?)
}

/// A running tokio server.
pub(crate) struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
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
    listener: std::net::TcpListener,
    serve: ServeConfig,
) -> Result<ServerHandle, TransportError> {
    listener
        .set_nonblocking(true)
        .map_err(io_err("tokio listener"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("tokio: cannot start a runtime"))?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("sovra-tokio-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => server_loop(listener, serve, stop_rx).await,
                    Err(e) => eprintln!("sovra-transport: tokio listener: {e}"),
                }
            })
        })
        .map_err(io_err("tokio: cannot start the server thread"))?;
    Ok(ServerHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Everything the server loop reacts to.
enum Event {
    Stop,
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Finished,
}

async fn server_loop(listener: TcpListener, serve: ServeConfig, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        let event = tokio::select! {
            _ = &mut stop => Event::Stop,
            accepted = listener.accept() => Event::Accepted(accepted),
            Some(_) = connections.join_next() => Event::Finished,
        };
        match event {
            Event::Stop => break,
            Event::Finished => {}
            Event::Accepted(Err(e)) => {
                // EMFILE and friends: keep serving the connections we have.
                eprintln!("sovra-transport: tokio accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Event::Accepted(Ok((stream, _peer))) => {
                if connections.len() >= serve.connections_max {
                    let _ = stream.try_write(&error_frame("too many connections"));
                    continue;
                }
                next_id += 1;
                let receive = serve.receive.clone();
                connections.spawn(connection(stream, receive, next_id));
            }
        }
    }
    connections.shutdown().await;
}

/// One connection: read, run the session's steps, echo in echo mode.
async fn connection(mut stream: TcpStream, receive: Option<ReceiveConfig>, id: u64) {
    if let Err(e) = stream.set_nodelay(true) {
        eprintln!("sovra-transport: tokio connection {id}: {e}");
        return;
    }
    let mut session = ServerSession::new(receive.as_ref().map(|r| r.jurisdiction), id);
    let mut files = AsyncFileSink {
        dir: receive.map(|r| r.dir),
        file: None,
    };
    let mut buf = vec![0u8; RECV_CHUNK_BYTES];
    loop {
        // A reset reads as the end of the stream: the session cleans up the same way.
        let n: usize = stream.read(&mut buf).await.unwrap_or_default();
        let mut input = &buf[..n];
        if n == 0 {
            session.handle_eof();
        }
        while let Some(step) = session.handle_input(&mut input) {
            if run_step(step, &mut session, &mut stream, &mut files)
                .await
                .is_err()
            {
                session.handle_eof();
            }
        }
        if session.is_closed() {
            break;
        }
        if !input.is_empty() {
            let reply = match session.handle_echo(input) {
                Ok(()) => stream.write_all(input).await,
                Err(frame) => stream.write_all(&frame).await,
            };
            if reply.is_err() {
                session.handle_eof();
            }
        }
        if session.is_closed() {
            break;
        }
    }
    // Whatever happened, no partial file stays open; the session discarded it by name.
    drop(files);
}

/// Runs one step; `Err` means the socket failed and the connection is over.
async fn run_step(
    step: Step<'_>,
    session: &mut ServerSession,
    stream: &mut TcpStream,
    files: &mut AsyncFileSink,
) -> io::Result<()> {
    match step {
        Step::Send(bytes) => stream.write_all(&bytes).await?,
        Step::Create { partial_name } => {
            let result = files.create(&partial_name).await;
            session.handle_created(result);
        }
        Step::Write(bytes) => {
            if let Err(why) = files.write(bytes).await {
                session.handle_write_failed(&why);
            }
        }
        Step::Store {
            partial_name,
            final_name,
        } => {
            let result = files.store(&partial_name, &final_name).await;
            session.handle_stored(result);
        }
        Step::Discard { partial_name } => files.discard(&partial_name).await,
        Step::Close => {
            let _ = stream.shutdown().await;
        }
    }
    Ok(())
}

/// The receiver's file IO through `tokio::fs`, so one slow disk write does not stall the other
/// connections of the server's runtime.
struct AsyncFileSink {
    dir: Option<std::path::PathBuf>,
    file: Option<tokio::fs::File>,
}

impl AsyncFileSink {
    fn dir(&self) -> &std::path::Path {
        self.dir.as_deref().expect("file mode has a directory")
    }

    async fn create(&mut self, partial_name: &str) -> Result<(), String> {
        let path = self.dir().join(partial_name);
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        self.file = Some(file);
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let file = self.file.as_mut().expect("write after create");
        file.write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    async fn store(&mut self, partial_name: &str, final_name: &str) -> Result<(), String> {
        let mut file = self.file.take().expect("store after create");
        file.flush().await.map_err(|e| format!("write: {e}"))?;
        file.sync_all().await.map_err(|e| format!("fsync: {e}"))?;
        drop(file);
        let dir = self.dir().to_path_buf();
        let to = dir.join(final_name);
        tokio::fs::rename(dir.join(partial_name), &to)
            .await
            .map_err(|e| format!("rename to {}: {e}", to.display()))?;
        let synced = match tokio::fs::File::open(&dir).await {
            Ok(d) => d.sync_all().await,
            Err(e) => Err(e),
        };
        synced.map_err(|e| format!("fsync {}: {e}", dir.display()))
    }

    async fn discard(&mut self, partial_name: &str) {
        self.file = None;
        let path = self.dir().join(partial_name);
        let _ = tokio::fs::remove_file(path).await;
    }
}
