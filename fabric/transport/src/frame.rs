//! The wire format, the same on every backend: length-prefixed frames.
//!
//! A frame is an 8-byte header (`kind: u8`, three zero bytes, `len: u32` little-endian) and
//! `len` payload bytes. `Data` frames carry up to [`DATA_BYTES_MAX`] bytes; every other kind is
//! a small control frame of at most [`CONTROL_BYTES_MAX`] bytes with a fixed little-endian
//! layout. A connection starts with `Hello` (magic, version, mode) from the client, which picks
//! what the server does with the rest: echo `Data` back, sink it (and answer `End` with a
//! `StreamAck`), or receive files (`TransferHeader`, `Data`..., `TransferEnd`, each transfer
//! answered by `TransferReply`).
//!
//! This module is pure: encoders write bytes, and [`Decoder`] turns a byte stream, cut at any
//! points, into frame events without ever holding more than one control payload. Data payloads
//! are handed out as slices of the input, so a backend can hash, echo or write them where they
//! were received. Malformed input is a [`ProtocolError`], never a panic.

use sovra_fabric::Jurisdiction;

/// Bytes in a frame header.
pub const HEADER_BYTES: usize = 8;
/// Largest payload of a `Data` frame: the largest message a transport moves in one frame.
pub const DATA_BYTES_MAX: usize = 16 << 20;
/// Largest payload of any other frame.
pub const CONTROL_BYTES_MAX: usize = 4096;
/// Largest frame, header included.
pub const FRAME_BYTES_MAX: usize = HEADER_BYTES + DATA_BYTES_MAX;
/// First bytes of a `Hello` payload.
pub const MAGIC: [u8; 8] = *b"sovra-tx";
/// Protocol version carried in `Hello`.
pub const VERSION: u16 = 1;
/// Longest dataset id or file name in a transfer header.
pub const NAME_BYTES_MAX: usize = 255;
/// Longest message in a `TransferReply` or `Error` frame.
pub const MESSAGE_BYTES_MAX: usize = 1024;
/// Most allowed jurisdictions a transfer header carries (a topology interns at most 64).
pub const ALLOWED_MAX: usize = 64;

const _: () = assert!(DATA_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(CONTROL_BYTES_MAX >= 8 + 8 + 2 + 2 * NAME_BYTES_MAX + 1 + ALLOWED_MAX * 9);
const _: () = assert!(CONTROL_BYTES_MAX > MESSAGE_BYTES_MAX);

/// A frame's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first: magic, version, mode.
    Hello = 1,
    /// A message (echo, sink) or a piece of a file.
    Data = 2,
    /// Client → sink: no more data; answer with `StreamAck`.
    End = 3,
    /// Sink → client: what arrived.
    StreamAck = 4,
    /// Client → receiver: a file is coming.
    TransferHeader = 5,
    /// Receiver → client: ready, stored, refused or failed.
    TransferReply = 6,
    /// Client → receiver: the file's SHA-256; the transfer's data is complete.
    TransferEnd = 7,
    /// Either way: a fatal error; the sender closes the connection.
    Error = 8,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Data,
            3 => Kind::End,
            4 => Kind::StreamAck,
            5 => Kind::TransferHeader,
            6 => Kind::TransferReply,
            7 => Kind::TransferEnd,
            8 => Kind::Error,
            _ => return None,
        })
    }

    /// The largest payload this kind may carry.
    pub fn payload_bytes_max(self) -> usize {
        match self {
            Kind::Data => DATA_BYTES_MAX,
            _ => CONTROL_BYTES_MAX,
        }
    }
}

/// A malformed frame or payload, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

fn bad(text: impl Into<String>) -> ProtocolError {
    ProtocolError(text.into())
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The kind.
    pub kind: Kind,
    /// Payload bytes that follow.
    pub len: u32,
}

impl Header {
    /// A header; `len` over the kind's bound is a bug in the caller.
    pub fn new(kind: Kind, len: usize) -> Header {
        assert!(
            len <= kind.payload_bytes_max(),
            "{kind:?} payload of {len} bytes"
        );
        Header {
            kind,
            len: len as u32,
        }
    }

    /// The 8 header bytes.
    pub fn encode(self) -> [u8; HEADER_BYTES] {
        let len = self.len.to_le_bytes();
        [self.kind as u8, 0, 0, 0, len[0], len[1], len[2], len[3]]
    }

    /// Parses and checks 8 header bytes.
    pub fn decode(bytes: [u8; HEADER_BYTES]) -> Result<Header, ProtocolError> {
        let kind = Kind::from_u8(bytes[0])
            .ok_or_else(|| bad(format!("unknown frame kind {}", bytes[0])))?;
        if bytes[1..4] != [0, 0, 0] {
            return Err(bad(format!("{kind:?} frame with nonzero reserved bytes")));
        }
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len as usize > kind.payload_bytes_max() {
            return Err(bad(format!(
                "{kind:?} frame of {len} bytes, more than the {} allowed",
                kind.payload_bytes_max()
            )));
        }
        Ok(Header { kind, len })
    }
}

/// Appends a whole frame (header and payload) to `out`.
pub fn encode_frame(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&Header::new(kind, payload.len()).encode());
    out.extend_from_slice(payload);
}

/// A whole frame as a new vector.
pub fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    encode_frame(kind, payload, &mut out);
    out
}

/// What the server does with a connection, chosen by the client's `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send every `Data` frame back unchanged.
    Echo,
    /// Count `Data` frames (and hash their payloads when `digest`), answer `End`.
    Sink {
        /// Hash every payload byte with SHA-256, in order.
        digest: bool,
    },
    /// Receive files.
    File,
}

/// `Hello` payload.
pub fn encode_hello(mode: Mode) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    let (mode, flags) = match mode {
        Mode::Echo => (1u8, 0u8),
        Mode::Sink { digest } => (2, u8::from(digest)),
        Mode::File => (3, 0),
    };
    out.push(mode);
    out.push(flags);
    out
}

/// Parses a `Hello` payload.
pub fn decode_hello(payload: &[u8]) -> Result<Mode, ProtocolError> {
    let mut r = Reader::new(payload);
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(bad("not a sovra transport peer (bad magic)"));
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(bad(format!(
            "protocol version {version}, this side speaks {VERSION}"
        )));
    }
    let mode = r.u8()?;
    let flags = r.u8()?;
    r.finish("Hello")?;
    match (mode, flags) {
        (1, 0) => Ok(Mode::Echo),
        (2, 0 | 1) => Ok(Mode::Sink { digest: flags == 1 }),
        (3, 0) => Ok(Mode::File),
        _ => Err(bad(format!("unknown mode {mode} with flags {flags}"))),
    }
}

/// `StreamAck`: what a sink received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamAck {
    /// `Data` frames received.
    pub messages: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// SHA-256 of every payload byte in order, when the client asked for it.
    pub digest: Option<[u8; 32]>,
}

impl StreamAck {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49);
        out.extend_from_slice(&self.messages.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        match self.digest {
            Some(digest) => {
                out.push(1);
                out.extend_from_slice(&digest);
            }
            None => out.push(0),
        }
        out
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<StreamAck, ProtocolError> {
        let mut r = Reader::new(payload);
        let messages = r.u64()?;
        let bytes = r.u64()?;
        let digest = match r.u8()? {
            0 => None,
            1 => Some(r.digest()?),
            other => return Err(bad(format!("StreamAck digest flag {other}"))),
        };
        r.finish("StreamAck")?;
        Ok(StreamAck {
            messages,
            bytes,
            digest,
        })
    }
}

/// `TransferHeader`: a file about to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferHeader {
    /// Chosen by the sender; names the transfer in logs and temporary files.
    pub transfer_id: u64,
    /// The file's length.
    pub size_bytes: u64,
    /// The dataset the file belongs to.
    pub dataset: String,
    /// The file name to store it under: one path component.
    pub name: String,
    /// The dataset's allowed jurisdictions, for the receiver's own check.
    pub allowed: Vec<Jurisdiction>,
}

impl TransferHeader {
    /// The payload; fields over their bounds are a bug in the caller.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.dataset.len() <= NAME_BYTES_MAX);
        assert!(self.name.len() <= NAME_BYTES_MAX);
        assert!(self.allowed.len() <= ALLOWED_MAX);
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.transfer_id.to_le_bytes());
        out.extend_from_slice(&self.size_bytes.to_le_bytes());
        out.push(self.dataset.len() as u8);
        out.extend_from_slice(self.dataset.as_bytes());
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.allowed.len() as u8);
        for code in &self.allowed {
            out.push(code.as_str().len() as u8);
            out.extend_from_slice(code.as_str().as_bytes());
        }
        out
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<TransferHeader, ProtocolError> {
        let mut r = Reader::new(payload);
        let transfer_id = r.u64()?;
        let size_bytes = r.u64()?;
        let dataset = r.str8("dataset")?;
        let name = r.str8("name")?;
        let count = r.u8()? as usize;
        if count > ALLOWED_MAX {
            return Err(bad(format!(
                "{count} allowed jurisdictions, at most {ALLOWED_MAX}"
            )));
        }
        let mut allowed = Vec::with_capacity(count);
        for _ in 0..count {
            let code = r.str8("jurisdiction")?;
            allowed.push(Jurisdiction::parse(&code).map_err(bad)?);
        }
        r.finish("TransferHeader")?;
        Ok(TransferHeader {
            transfer_id,
            size_bytes,
            dataset,
            name,
            allowed,
        })
    }
}

/// A receiver's answer to a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferStatus {
    /// The header is accepted; send the data.
    Ready,
    /// The file is stored durably under its name.
    Stored,
    /// The receiver will not take this dataset (its jurisdiction, a bad name): no data sent.
    Refused,
    /// The data arrived wrong (size, checksum) or could not be written.
    Failed,
}

/// `TransferReply` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferReply {
    /// The answer.
    pub status: TransferStatus,
    /// Why, for `Refused` and `Failed`; empty otherwise.
    pub message: String,
}

impl TransferReply {
    /// The payload; the message is cut to [`MESSAGE_BYTES_MAX`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let status = match self.status {
            TransferStatus::Ready => 0u8,
            TransferStatus::Stored => 1,
            TransferStatus::Refused => 2,
            TransferStatus::Failed => 3,
        };
        let mut out = vec![status];
        out.extend_from_slice(truncate(&self.message, MESSAGE_BYTES_MAX).as_bytes());
        out
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<TransferReply, ProtocolError> {
        let (&status, message) = payload
            .split_first()
            .ok_or_else(|| bad("empty TransferReply"))?;
        let status = match status {
            0 => TransferStatus::Ready,
            1 => TransferStatus::Stored,
            2 => TransferStatus::Refused,
            3 => TransferStatus::Failed,
            other => return Err(bad(format!("TransferReply status {other}"))),
        };
        Ok(TransferReply {
            status,
            message: utf8(message, "TransferReply message")?,
        })
    }
}

/// `Error` payload: a message, cut to [`MESSAGE_BYTES_MAX`] bytes.
pub fn encode_error(message: &str) -> Vec<u8> {
    truncate(message, MESSAGE_BYTES_MAX).as_bytes().to_vec()
}

/// Parses an `Error` payload.
pub fn decode_error(payload: &[u8]) -> Result<String, ProtocolError> {
    utf8(payload, "Error message")
}

/// `TransferEnd` payload: the SHA-256 of the whole file.
pub fn decode_transfer_end(payload: &[u8]) -> Result<[u8; 32], ProtocolError> {
    let mut r = Reader::new(payload);
    let digest = r.digest()?;
    r.finish("TransferEnd")?;
    Ok(digest)
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn truncate(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, ProtocolError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
}

/// A bounds-checked little-endian cursor over a control payload.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.bytes.len() < n {
            return Err(bad("control frame too short"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(out))
    }

    fn digest(&mut self) -> Result<[u8; 32], ProtocolError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.bytes(32)?);
        Ok(out)
    }

    fn str8(&mut self, what: &str) -> Result<String, ProtocolError> {
        let len = self.u8()? as usize;
        utf8(self.bytes(len)?, what)
    }

    fn finish(&self, what: &str) -> Result<(), ProtocolError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(bad(format!(
                "{} trailing bytes after {what}",
                self.bytes.len()
            )))
        }
    }
}

/// One step of decoding a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'i> {
    /// A whole control frame; its payload is [`Decoder::control`] until the next call.
    Control(Kind),
    /// A `Data` frame of `len` bytes starts.
    DataStart(u32),
    /// Some of the current `Data` frame's payload, a slice of the input.
    DataBytes(&'i [u8]),
    /// The current `Data` frame is complete.
    DataEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Control { kind: Kind, len: usize },
    Data { remaining: u32 },
}

/// Turns a byte stream, cut anywhere, into frame [`Event`]s.
#[derive(Debug)]
pub struct Decoder {
    header: [u8; HEADER_BYTES],
    header_have: usize,
    state: State,
    control: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            header: [0; HEADER_BYTES],
            header_have: 0,
            state: State::Header,
            control: Vec::with_capacity(CONTROL_BYTES_MAX),
        }
    }
}

impl Decoder {
    /// Whether the stream is at a frame boundary (so the peer may close here).
    pub fn is_idle(&self) -> bool {
        self.state == State::Header && self.header_have == 0
    }

    /// The payload of the last [`Event::Control`].
    pub fn control(&self) -> &[u8] {
        &self.control
    }

    /// The next event, consuming from the front of `input`; `None` when `input` is used up
    /// without completing one.
    pub fn next<'i>(&mut self, input: &mut &'i [u8]) -> Result<Option<Event<'i>>, ProtocolError> {
        loop {
            match self.state {
                State::Header => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (HEADER_BYTES - self.header_have).min(input.len());
                    self.header[self.header_have..self.header_have + take]
                        .copy_from_slice(&input[..take]);
                    self.header_have += take;
                    *input = &input[take..];
                    if self.header_have < HEADER_BYTES {
                        return Ok(None);
                    }
                    self.header_have = 0;
                    let header = Header::decode(self.header)?;
                    if header.kind == Kind::Data {
                        self.state = State::Data {
                            remaining: header.len,
                        };
                        return Ok(Some(Event::DataStart(header.len)));
                    }
                    self.control.clear();
                    self.state = State::Control {
                        kind: header.kind,
                        len: header.len as usize,
                    };
                }
                State::Control { kind, len } => {
                    let take = (len - self.control.len()).min(input.len());
                    self.control.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    if self.control.len() < len {
                        return Ok(None);
                    }
                    self.state = State::Header;
                    return Ok(Some(Event::Control(kind)));
                }
                State::Data { remaining: 0 } => {
                    self.state = State::Header;
                    return Ok(Some(Event::DataEnd));
                }
                State::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (remaining as usize).min(input.len());
                    let (bytes, rest) = input.split_at(take);
                    *input = rest;
                    self.state = State::Data {
                        remaining: remaining - take as u32,
                    };
                    return Ok(Some(Event::DataBytes(bytes)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A readable trace of decoding `stream` cut into pieces of `cut` bytes.
    fn decode_all(stream: &[u8], cut: usize) -> Result<Vec<String>, ProtocolError> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        let mut data = Vec::new();
        for piece in stream.chunks(cut.max(1)) {
            let mut input = piece;
            while let Some(event) = decoder.next(&mut input)? {
                match event {
                    Event::Control(kind) => out.push(format!("{kind:?} {:?}", decoder.control())),
                    Event::DataStart(len) => {
                        data.clear();
                        out.push(format!("data {len}"));
                    }
                    Event::DataBytes(bytes) => data.extend_from_slice(bytes),
                    Event::DataEnd => out.push(format!("end {:?}", data)),
                }
            }
            assert!(input.is_empty());
        }
        out.push(format!("idle {}", decoder.is_idle()));
        Ok(out)
    }

    #[test]
    fn decodes_the_same_at_every_cut() {
        let mut stream = frame(Kind::Hello, &encode_hello(Mode::Sink { digest: true }));
        stream.extend(frame(Kind::Data, b"abc"));
        stream.extend(frame(Kind::Data, b""));
        stream.extend(frame(Kind::End, b""));
        let whole = decode_all(&stream, stream.len()).unwrap();
        expect_test::expect![[r#"
            [
                "Hello [115, 111, 118, 114, 97, 45, 116, 120, 1, 0, 2, 1]",
                "data 3",
                "end [97, 98, 99]",
                "data 0",
                "end []",
                "End []",
                "idle true",
            ]
        "#]]
        .assert_debug_eq(&whole);
        for cut in 1..stream.len() {
            assert_eq!(decode_all(&stream, cut).unwrap(), whole, "cut {cut}");
        }
        // A stream that stops inside a frame is not idle.
        let partial = decode_all(&stream[..stream.len() - 3], 5).unwrap();
        assert_eq!(partial.last().unwrap(), "idle false");
    }

    #[test]
    fn rejects_malformed_headers() {
        let check = |bytes: [u8; 8], expect: &str| {
            assert_eq!(Header::decode(bytes).unwrap_err().0, expect);
        };
        check([0, 0, 0, 0, 0, 0, 0, 0], "unknown frame kind 0");
        check([9, 0, 0, 0, 0, 0, 0, 0], "unknown frame kind 9");
        check(
            [2, 1, 0, 0, 0, 0, 0, 0],
            "Data frame with nonzero reserved bytes",
        );
        check(
            [2, 0, 0, 0, 1, 0, 0, 1],
            "Data frame of 16777217 bytes, more than the 16777216 allowed",
        );
        check(
            [1, 0, 0, 0, 1, 16, 0, 0],
            "Hello frame of 4097 bytes, more than the 4096 allowed",
        );
        let ok = Header::decode(Header::new(Kind::Data, DATA_BYTES_MAX).encode()).unwrap();
        assert_eq!(ok.len as usize, DATA_BYTES_MAX);
    }

    #[test]
    fn control_payloads_round_trip() {
        for mode in [
            Mode::Echo,
            Mode::Sink { digest: false },
            Mode::Sink { digest: true },
            Mode::File,
        ] {
            assert_eq!(decode_hello(&encode_hello(mode)), Ok(mode));
        }
        let ack = StreamAck {
            messages: 3,
            bytes: 1 << 40,
            digest: Some([7; 32]),
        };
        assert_eq!(StreamAck::decode(&ack.encode()), Ok(ack));
        let header = TransferHeader {
            transfer_id: 42,
            size_bytes: 5,
            dataset: "imagenet-au".into(),
            name: "shard-0001.tar".into(),
            allowed: vec![
                Jurisdiction::parse("AU").unwrap(),
                Jurisdiction::parse("EU").unwrap(),
            ],
        };
        assert_eq!(TransferHeader::decode(&header.encode()), Ok(header));
        let reply = TransferReply {
            status: TransferStatus::Refused,
            message: "node is in JP".into(),
        };
        assert_eq!(TransferReply::decode(&reply.encode()), Ok(reply));
    }

    #[test]
    fn rejects_malformed_payloads() {
        let mut hello = encode_hello(Mode::Echo);
        hello[0] = b'X';
        expect_test::expect!["not a sovra transport peer (bad magic)"]
            .assert_eq(&decode_hello(&hello).unwrap_err().0);
        let mut hello = encode_hello(Mode::Echo);
        hello[8] = 9;
        expect_test::expect!["protocol version 9, this side speaks 1"]
            .assert_eq(&decode_hello(&hello).unwrap_err().0);
        let mut long = encode_hello(Mode::Echo);
        long.push(0);
        expect_test::expect!["1 trailing bytes after Hello"]
            .assert_eq(&decode_hello(&long).unwrap_err().0);
        expect_test::expect!["control frame too short"]
            .assert_eq(&TransferHeader::decode(&[1, 2, 3]).unwrap_err().0);
        let mut header = TransferHeader {
            transfer_id: 1,
            size_bytes: 0,
            dataset: "d".into(),
            name: "n".into(),
            allowed: vec![Jurisdiction::parse("AU").unwrap()],
        }
        .encode();
        let last = header.len() - 1;
        header[last] = b'!';
        let err = TransferHeader::decode(&header).unwrap_err().0;
        assert!(err.starts_with("invalid jurisdiction"), "{err}");
        expect_test::expect!["TransferReply status 9"]
            .assert_eq(&TransferReply::decode(&[9]).unwrap_err().0);
    }

    #[test]
    fn decoder_stops_at_the_first_bad_header() {
        let mut stream = frame(Kind::Data, b"x");
        stream.extend_from_slice(&[77, 0, 0, 0, 0, 0, 0, 0]);
        let err = decode_all(&stream, 3).unwrap_err();
        assert_eq!(err.0, "unknown frame kind 77");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let text = "é".repeat(MESSAGE_BYTES_MAX);
        let payload = encode_error(&text);
        assert!(payload.len() <= MESSAGE_BYTES_MAX);
        assert!(decode_error(&payload).is_ok());
    }
}
