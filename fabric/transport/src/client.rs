//! The client side: operations a [`Client`] runs against a [`Server`](crate::Server).
//!
//! - [`Client::stream`]: `Data` frames one way as fast as the transport goes, then `End`;
//!   the sink's `StreamAck` must account for every message (and match the SHA-256 of every
//!   payload byte when asked).
//! - [`Client::ping`]: one message out, the same message back, timed per round trip.
//! - a file transfer (used by [`DataMover`](crate::DataMover)).
//!
//! Every loop is bounded in count and in time. Messages carry a deterministic pattern with
//! their index stamped in the first 8 bytes, so reordering or loss shows up in checksums.
//! Streaming writes small messages in batches of up to `Config::batch_bytes` bytes and larger
//! ones one per write, the same way on every backend.

use std::fs::File;
use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::TransportError;
use crate::frame::{self, Header, Kind, StreamAck, TransferHeader, TransferReply, HEADER_BYTES};
use crate::{tokio_tcp, uring, Config, TransportKind};

/// Most round trips one [`Client::ping`] records.
pub const ROUND_TRIPS_MAX: u64 = 1_000_000;
/// Longest time bound of one operation.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Bytes of a file sent per `Data` frame.
pub const FILE_CHUNK_BYTES: usize = 1 << 20;
/// Bytes a server or client asks for per receive.
pub const RECV_CHUNK_BYTES: usize = 1 << 20;
/// Seed of the message pattern.
const PATTERN_SEED: u64 = 0x5eed_0f50_72a5;

/// A one-way stream of equal messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Payload bytes per message, at most [`frame::DATA_BYTES_MAX`].
    pub message_bytes: usize,
    /// Stop after this many messages (at least 1).
    pub messages_max: u64,
    /// Or after this long, whichever comes first (checked between writes).
    pub duration_max: Duration,
    /// Have the sink hash every payload byte and check it against the sender's hash.
    pub digest: bool,
}

/// What a stream achieved. `elapsed` runs from the first write to the sink's answer, so every
/// counted byte was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamReport {
    /// Messages sent and received.
    pub messages: u64,
    /// Payload bytes sent and received (frame headers not counted).
    pub payload_bytes: u64,
    /// From the first write until the sink's `StreamAck` arrived.
    pub elapsed: Duration,
}

impl StreamReport {
    /// Payload throughput in gigabits per second.
    pub fn gbit_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        self.payload_bytes as f64 * 8.0 / secs / 1e9
    }
}

/// Round trips of one message size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingConfig {
    /// Payload bytes per message.
    pub message_bytes: usize,
    /// Stop after this many round trips (1 to [`ROUND_TRIPS_MAX`]).
    pub round_trips_max: u64,
    /// Or after this long, whichever comes first.
    pub duration_max: Duration,
    /// Stamp each message differently and compare every echo with what was sent.
    pub verify: bool,
}

/// Round-trip times, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingReport {
    /// One entry per round trip, in nanoseconds.
    pub rtts_ns: Vec<u64>,
}

/// The receiver's last answer to a file transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileSent {
    /// `Stored`, `Refused` or `Failed`, with why.
    pub(crate) reply: TransferReply,
    /// SHA-256 of the file as sent (all zeros when refused before sending).
    pub(crate) digest: [u8; 32],
}

/// Runs operations against servers, on the thread that owns it.
pub struct Client {
    inner: Inner,
}

enum Inner {
    IoUring(Box<uring::Client>),
    Tokio(tokio_tcp::Client),
    #[cfg(feature = "rdma")]
    Rdma(crate::rdma::Client),
}

impl Client {
    /// A client of the given backend; fails when the backend cannot run here.
    pub fn new(kind: TransportKind, config: &Config) -> Result<Client, TransportError> {
        let inner = match kind {
            TransportKind::IoUring => Inner::IoUring(Box::new(uring::Client::new(config)?)),
            TransportKind::Tokio => Inner::Tokio(tokio_tcp::Client::new(config)?),
            TransportKind::Rdma => {
                #[cfg(feature = "rdma")]
                {
                    Inner::Rdma(crate::rdma::Client::new(config)?)
                }
                #[cfg(not(feature = "rdma"))]
                {
                    return Err(crate::rdma::probe().expect_err("rdma is not built"));
                }
            }
        };
        Ok(Client { inner })
    }

    /// The backend.
    pub fn kind(&self) -> TransportKind {
        match self.inner {
            Inner::IoUring(_) => TransportKind::IoUring,
            Inner::Tokio(_) => TransportKind::Tokio,
            #[cfg(feature = "rdma")]
            Inner::Rdma(_) => TransportKind::Rdma,
        }
    }

    /// What the backend had to work around so far, one line each (e.g. the kernel refused
    /// zero-copy sends, or copied them anyway); empty when nothing.
    pub fn notes(&self) -> Vec<String> {
        match &self.inner {
            Inner::IoUring(c) => c.notes(),
            _ => Vec::new(),
        }
    }

    /// Streams messages to the sink at `to` (see the module docs).
    pub fn stream(
        &mut self,
        to: SocketAddr,
        config: &StreamConfig,
    ) -> Result<StreamReport, TransportError> {
        check_stream(config)?;
        let report = match &mut self.inner {
            Inner::IoUring(c) => c.stream(to, config)?,
            Inner::Tokio(c) => c.stream(to, config)?,
            #[cfg(feature = "rdma")]
            Inner::Rdma(c) => c.stream(to, config)?,
        };
        assert!(report.messages >= 1);
        assert!(report.messages <= config.messages_max);
        Ok(report)
    }

    /// Round trips to the echo server at `to` (see the module docs).
    pub fn ping(
        &mut self,
        to: SocketAddr,
        config: &PingConfig,
    ) -> Result<PingReport, TransportError> {
        check_ping(config)?;
        let report = match &mut self.inner {
            Inner::IoUring(c) => c.ping(to, config)?,
            Inner::Tokio(c) => c.ping(to, config)?,
            #[cfg(feature = "rdma")]
            Inner::Rdma(c) => c.ping(to, config)?,
        };
        assert!(!report.rtts_ns.is_empty());
        assert!(report.rtts_ns.len() as u64 <= config.round_trips_max);
        Ok(report)
    }

    /// Sends `file` (of `header.size_bytes` bytes) to the receiver at `to`.
    pub(crate) fn send_file(
        &mut self,
        to: SocketAddr,
        header: &TransferHeader,
        file: &mut File,
    ) -> Result<FileSent, TransportError> {
        match &mut self.inner {
            Inner::IoUring(c) => c.send_file(to, header, file),
            Inner::Tokio(c) => c.send_file(to, header, file),
            #[cfg(feature = "rdma")]
            Inner::Rdma(c) => c.send_file(to, header, file),
        }
    }
}

fn check_stream(config: &StreamConfig) -> Result<(), TransportError> {
    if config.message_bytes > frame::DATA_BYTES_MAX {
        return Err(TransportError::Invalid(format!(
            "messages of {} bytes, at most {}",
            config.message_bytes,
            frame::DATA_BYTES_MAX
        )));
    }
    if config.messages_max == 0 {
        return Err(TransportError::Invalid("a stream of 0 messages".into()));
    }
    check_duration(config.duration_max)
}

fn check_ping(config: &PingConfig) -> Result<(), TransportError> {
    if config.message_bytes > frame::DATA_BYTES_MAX {
        return Err(TransportError::Invalid(format!(
            "messages of {} bytes, at most {}",
            config.message_bytes,
            frame::DATA_BYTES_MAX
        )));
    }
    if !(1..=ROUND_TRIPS_MAX).contains(&config.round_trips_max) {
        return Err(TransportError::Invalid(format!(
            "{} round trips, use 1 to {ROUND_TRIPS_MAX}",
            config.round_trips_max
        )));
    }
    check_duration(config.duration_max)
}

fn check_duration(duration: Duration) -> Result<(), TransportError> {
    if duration.is_zero() || duration > DURATION_MAX {
        return Err(TransportError::Invalid(format!(
            "a time bound of {duration:?}, use (0, {DURATION_MAX:?}]"
        )));
    }
    Ok(())
}

/// The message pattern: deterministic bytes (xorshift from a fixed seed).
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    let mut state = PATTERN_SEED;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes message `index` into the first (up to) 8 bytes of `payload`.
pub(crate) fn stamp(payload: &mut [u8], index: u64) {
    let n = payload.len().min(8);
    payload[..n].copy_from_slice(&index.to_le_bytes()[..n]);
}

/// How a stream lays out its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batching {
    /// Header plus payload.
    pub(crate) frame_bytes: usize,
    /// Frames per write: several small ones, or one large one.
    pub(crate) frames_per_write: usize,
}

impl Batching {
    pub(crate) fn new(message_bytes: usize, batch_bytes: usize) -> Batching {
        let frame_bytes = HEADER_BYTES + message_bytes;
        let frames_per_write = (batch_bytes / frame_bytes).max(1);
        Batching {
            frame_bytes,
            frames_per_write,
        }
    }

    /// Bytes of the largest write.
    pub(crate) fn write_bytes_max(&self) -> usize {
        self.frame_bytes * self.frames_per_write
    }
}

/// Lays out `count` frames of `pattern` back to back in `out` (headers and payloads), once:
/// afterwards each write only re-stamps them with [`stamp_frames`]. Returns the bytes used.
pub(crate) fn layout_frames(out: &mut [u8], pattern: &[u8], count: usize) -> usize {
    let frame_bytes = HEADER_BYTES + pattern.len();
    assert!(out.len() >= frame_bytes * count);
    let header = Header::new(Kind::Data, pattern.len()).encode();
    for frame_out in out[..frame_bytes * count].chunks_exact_mut(frame_bytes) {
        frame_out[..HEADER_BYTES].copy_from_slice(&header);
        frame_out[HEADER_BYTES..].copy_from_slice(pattern);
    }
    frame_bytes * count
}

/// Stamps the first `count` frames laid out in `out` (payloads of `payload_bytes`) with
/// message indices `first`, `first + 1`, ..., hashing the payloads into `hasher` when given.
/// Returns the bytes to write.
pub(crate) fn stamp_frames(
    out: &mut [u8],
    payload_bytes: usize,
    first: u64,
    count: usize,
    mut hasher: Option<&mut Sha256>,
) -> usize {
    let frame_bytes = HEADER_BYTES + payload_bytes;
    assert!(out.len() >= frame_bytes * count);
    for (i, frame_out) in out[..frame_bytes * count]
        .chunks_exact_mut(frame_bytes)
        .enumerate()
    {
        let payload = &mut frame_out[HEADER_BYTES..];
        stamp(payload, first + i as u64);
        if let Some(hasher) = hasher.as_deref_mut() {
            hasher.update(&*payload);
        }
    }
    frame_bytes * count
}

/// Checks a sink's answer against what was sent.
pub(crate) fn check_ack(
    ack: &StreamAck,
    messages: u64,
    payload_bytes: u64,
    digest: Option<[u8; 32]>,
) -> Result<(), TransportError> {
    if ack.messages != messages || ack.bytes != payload_bytes {
        return Err(TransportError::Protocol(format!(
            "sink received {} messages and {} bytes of {messages} and {payload_bytes} sent",
            ack.messages, ack.bytes
        )));
    }
    if digest.is_some() && ack.digest != digest {
        return Err(TransportError::Protocol(
            "sink's sha256 differs from the sender's".into(),
        ));
    }
    Ok(())
}

/// The error for an echo that differs from what was sent: the peer's `Error` frame if that is
/// what came back, else a mismatch.
pub(crate) fn echo_mismatch(sent: &[u8], got: &[u8]) -> TransportError {
    if let Some(err) = peer_error(got) {
        return err;
    }
    let at = sent.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
    TransportError::Protocol(format!(
        "echo of {} bytes differs from what was sent at byte {at}",
        sent.len()
    ))
}

/// The peer's `Error` frame at the start of `bytes`, if that is what they hold.
pub(crate) fn peer_error(bytes: &[u8]) -> Option<TransportError> {
    let header: [u8; HEADER_BYTES] = bytes.get(..HEADER_BYTES)?.try_into().ok()?;
    let header = Header::decode(header).ok()?;
    if header.kind != Kind::Error {
        return None;
    }
    let payload = bytes.get(HEADER_BYTES..HEADER_BYTES + header.len as usize)?;
    Some(TransportError::Peer(frame::decode_error(payload).ok()?))
}

/// The error for a control frame the client did not expect.
pub(crate) fn unexpected(kind: Kind, payload: &[u8], waiting_for: &str) -> TransportError {
    if kind == Kind::Error {
        return match frame::decode_error(payload) {
            Ok(message) => TransportError::Peer(message),
            Err(err) => err.into(),
        };
    }
    TransportError::Protocol(format!("{kind:?} frame while waiting for {waiting_for}"))
}

/// SHA-256 as an array.
pub(crate) fn finish(hasher: Sha256) -> [u8; 32] {
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching() {
        assert_eq!(
            Batching::new(64, 256 << 10),
            Batching {
                frame_bytes: 72,
                frames_per_write: 3640
            }
        );
        assert_eq!(Batching::new(64 << 10, 256 << 10).frames_per_write, 3);
        assert_eq!(Batching::new(64 << 10, 1 << 20).frames_per_write, 15);
        assert_eq!(Batching::new(1 << 20, 256 << 10).frames_per_write, 1);
        assert_eq!(Batching::new(0, 16).frames_per_write, 2);
    }

    #[test]
    fn frames_are_stamped() {
        let pattern = pattern(10);
        let mut out = vec![0u8; 3 * 18];
        assert_eq!(layout_frames(&mut out, &pattern, 3), 54);
        let mut hasher = Sha256::new();
        assert_eq!(stamp_frames(&mut out, 10, 5, 2, Some(&mut hasher)), 36);
        for i in 0..3 {
            let f = &out[i * 18..(i + 1) * 18];
            assert_eq!(Header::decode(f[..8].try_into().unwrap()).unwrap().len, 10);
            if i < 2 {
                assert_eq!(f[8..16], (5 + i as u64).to_le_bytes());
            } else {
                assert_eq!(f[8..16], pattern[..8], "not stamped");
            }
            assert_eq!(f[16..], pattern[8..]);
        }
        let mut expect = Sha256::new();
        expect.update(&out[8..18]);
        expect.update(&out[26..36]);
        assert_eq!(finish(hasher), finish(expect));
        let mut short = [0u8; 3];
        stamp(&mut short, 0x030201);
        assert_eq!(short, [1, 2, 3]);
    }

    #[test]
    fn bad_requests_are_refused() {
        let stream = StreamConfig {
            message_bytes: frame::DATA_BYTES_MAX + 1,
            messages_max: 1,
            duration_max: Duration::from_secs(1),
            digest: false,
        };
        assert!(check_stream(&stream).is_err());
        assert!(check_stream(&StreamConfig {
            message_bytes: 1,
            messages_max: 0,
            ..stream
        })
        .is_err());
        let ping = PingConfig {
            message_bytes: 1,
            round_trips_max: ROUND_TRIPS_MAX + 1,
            duration_max: Duration::from_secs(1),
            verify: false,
        };
        assert!(check_ping(&ping).is_err());
        assert!(check_ping(&PingConfig {
            round_trips_max: 1,
            duration_max: Duration::ZERO,
            ..ping
        })
        .is_err());
    }

    #[test]
    fn echo_mismatch_prefers_the_peer_error() {
        let err = echo_mismatch(b"abcdefghij", &frame::frame(Kind::Error, b"nope"));
        assert_eq!(err.to_string(), "peer: nope");
        let err = echo_mismatch(b"abc", b"abd");
        assert_eq!(
            err.to_string(),
            "protocol: echo of 3 bytes differs from what was sent at byte 2"
        );
    }
}
