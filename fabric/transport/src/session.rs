//! The server side of one connection, as a sans-IO state machine every backend drives.
//!
//! A backend's server reads bytes from its socket and hands them to
//! [`ServerSession::handle_input`], which returns [`Step`]s: frames to send, file effects to
//! perform (create, write, store, discard) and when to close. The backend reports the outcome
//! of each file effect back (`handle_created`, `handle_write_failed`, `handle_stored`). In echo
//! mode the session only validates (`handle_echo`) and the backend sends the same bytes back,
//! from where they were received. The session does no IO, reads no clock and never panics on
//! what a peer sends: a protocol error becomes an `Error` frame and a close.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};
use sovra_fabric::Jurisdiction;

use crate::frame::{
    self, decode_hello, decode_transfer_end, Decoder, Event, Kind, Mode, ProtocolError, StreamAck,
    TransferHeader, TransferReply, TransferStatus,
};
use crate::receive::{accept, Accepted, Incoming};

/// Most steps a session queues between two calls (a discard, a reply, a close).
const PENDING_MAX: usize = 4;

/// What the backend does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'i> {
    /// Send this whole frame.
    Send(Vec<u8>),
    /// Create the temporary file `partial_name` in the receive directory (replacing any old
    /// one), then call [`ServerSession::handle_created`].
    Create { partial_name: String },
    /// Append these bytes to the temporary file; on failure call
    /// [`ServerSession::handle_write_failed`].
    Write(&'i [u8]),
    /// fsync the temporary file, rename it to `final_name`, fsync the directory, then call
    /// [`ServerSession::handle_stored`].
    Store {
        partial_name: String,
        final_name: String,
    },
    /// Close and remove the temporary file, if it exists.
    Discard { partial_name: String },
    /// Close the connection once everything before has been sent.
    Close,
}

/// A step that owns its data, waiting in the session's queue.
#[derive(Debug)]
enum Pending {
    Send(Vec<u8>),
    Discard { partial_name: String },
    Close,
}

impl Pending {
    fn into_step<'i>(self) -> Step<'i> {
        match self {
            Pending::Send(bytes) => Step::Send(bytes),
            Pending::Discard { partial_name } => Step::Discard { partial_name },
            Pending::Close => Step::Close,
        }
    }
}

/// A file transfer on this connection.
struct Transfer {
    accepted: Accepted,
    incoming: Incoming,
    /// The temporary file exists (so a failure must discard it).
    created: bool,
    /// `Store` was handed out; waiting for `handle_stored`.
    storing: bool,
}

/// The server's end of one connection.
pub(crate) struct ServerSession {
    decoder: Decoder,
    mode: Option<Mode>,
    /// This node's jurisdiction when it receives files; `None`: it does not.
    receives_in: Option<Jurisdiction>,
    connection_id: u64,
    messages: u64,
    bytes: u64,
    hasher: Option<Sha256>,
    transfer: Option<Transfer>,
    pending: VecDeque<Pending>,
    closed: bool,
}

impl ServerSession {
    /// A session for connection `connection_id`; it accepts files when `receives_in` names
    /// this node's jurisdiction.
    pub(crate) fn new(receives_in: Option<Jurisdiction>, connection_id: u64) -> ServerSession {
        ServerSession {
            decoder: Decoder::default(),
            mode: None,
            receives_in,
            connection_id,
            messages: 0,
            bytes: 0,
            hasher: None,
            transfer: None,
            pending: VecDeque::with_capacity(PENDING_MAX),
            closed: false,
        }
    }

    /// The mode the client chose, once its `Hello` arrived.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// Whether the session ended (after its last steps).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed && self.pending.is_empty()
    }

    /// The next step, consuming bytes from the front of `input`; `None` when the input is
    /// used up (or the session is closed) and nothing is queued. In echo mode it stops right
    /// after the `Hello`: the rest goes to [`handle_echo`](Self::handle_echo).
    pub(crate) fn handle_input<'i>(&mut self, input: &mut &'i [u8]) -> Option<Step<'i>> {
        loop {
            if let Some(pending) = self.pending.pop_front() {
                return Some(pending.into_step());
            }
            if self.closed || self.mode == Some(Mode::Echo) {
                return None;
            }
            let event = match self.decoder.next(input) {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(err) => {
                    self.fail(err);
                    continue;
                }
            };
            match self.handle_event(event) {
                Ok(Some(step)) => return Some(step),
                Ok(None) => {}
                Err(err) => self.fail(err),
            }
        }
    }

    /// Validates bytes received in echo mode: they must be whole or partial `Data` frames.
    /// `Ok`: send them back unchanged. `Err`: send the frame returned, then close.
    pub(crate) fn handle_echo(&mut self, mut input: &[u8]) -> Result<(), Vec<u8>> {
        assert_eq!(self.mode, Some(Mode::Echo));
        loop {
            match self.decoder.next(&mut input) {
                Ok(None) => return Ok(()),
                Ok(Some(Event::DataStart(_) | Event::DataBytes(_) | Event::DataEnd)) => {}
                Ok(Some(Event::Control(kind))) => {
                    self.closed = true;
                    return Err(error_frame(&format!("{kind:?} frame in echo mode")));
                }
                Err(err) => {
                    self.closed = true;
                    return Err(error_frame(&err.0));
                }
            }
        }
    }

    /// The peer closed its side. Returns the steps to finish with (discarding a partial
    /// transfer), through [`handle_input`](Self::handle_input) with empty input.
    pub(crate) fn handle_eof(&mut self) {
        if let Some(transfer) = self.transfer.take() {
            if transfer.created {
                self.push(Pending::Discard {
                    partial_name: transfer.accepted.partial_name,
                });
            }
        }
        self.closed = true;
    }

    /// The temporary file was created (`Ok`) or could not be (`Err`, why).
    pub(crate) fn handle_created(&mut self, result: Result<(), String>) {
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        assert!(!transfer.created);
        match result {
            Ok(()) => {
                transfer.created = true;
                self.push(reply(TransferStatus::Ready, ""));
            }
            Err(why) => {
                self.transfer = None;
                self.push(reply(TransferStatus::Failed, &why));
            }
        }
    }

    /// Writing to the temporary file failed: the connection ends with an `Error` frame.
    pub(crate) fn handle_write_failed(&mut self, why: &str) {
        self.fail(ProtocolError(format!("receiver: {why}")));
    }

    /// The file was stored (`Ok`) or could not be (`Err`, why).
    pub(crate) fn handle_stored(&mut self, result: Result<(), String>) {
        let Some(transfer) = self.transfer.take() else {
            return;
        };
        assert!(transfer.storing);
        match result {
            Ok(()) => self.push(reply(TransferStatus::Stored, "")),
            Err(why) => {
                self.push(Pending::Discard {
                    partial_name: transfer.accepted.partial_name,
                });
                self.push(reply(TransferStatus::Failed, &why));
            }
        }
    }

    fn push(&mut self, pending: Pending) {
        assert!(self.pending.len() < PENDING_MAX, "session queue full");
        self.pending.push_back(pending);
    }

    /// A protocol error: discard any partial file, say why, close.
    fn fail(&mut self, err: ProtocolError) {
        if self.closed {
            return;
        }
        if let Some(transfer) = self.transfer.take() {
            if transfer.created {
                self.push(Pending::Discard {
                    partial_name: transfer.accepted.partial_name,
                });
            }
        }
        self.push(Pending::Send(error_frame(&err.0)));
        self.push(Pending::Close);
        self.closed = true;
    }

    fn handle_event<'i>(&mut self, event: Event<'i>) -> Result<Option<Step<'i>>, ProtocolError> {
        let Some(mode) = self.mode else {
            return self.handle_first(event).map(|()| None);
        };
        match (mode, event) {
            (Mode::Echo, _) => unreachable!("echo input goes through handle_echo"),
            (Mode::Sink { .. }, Event::DataStart(_)) => {
                self.messages += 1;
                Ok(None)
            }
            (Mode::Sink { .. }, Event::DataBytes(bytes)) => {
                self.bytes += bytes.len() as u64;
                if let Some(hasher) = self.hasher.as_mut() {
                    hasher.update(bytes);
                }
                Ok(None)
            }
            (Mode::Sink { .. }, Event::DataEnd) => Ok(None),
            (Mode::Sink { .. }, Event::Control(Kind::End)) => {
                if !self.decoder.control().is_empty() {
                    return Err(ProtocolError("End frame with a payload".into()));
                }
                let ack = StreamAck {
                    messages: self.messages,
                    bytes: self.bytes,
                    digest: self.hasher.take().map(|h| h.finalize().into()),
                };
                self.messages = 0;
                self.bytes = 0;
                Ok(Some(Step::Send(frame::frame(
                    Kind::StreamAck,
                    &ack.encode(),
                ))))
            }
            (Mode::File, event) => self.handle_file_event(event),
            (_, Event::Control(kind)) => Err(ProtocolError(format!(
                "{kind:?} frame in {} mode",
                mode_name(mode)
            ))),
        }
    }

    fn handle_first(&mut self, event: Event<'_>) -> Result<(), ProtocolError> {
        let Event::Control(Kind::Hello) = event else {
            return Err(ProtocolError("the first frame must be Hello".into()));
        };
        let mode = decode_hello(self.decoder.control())?;
        if mode == Mode::File && self.receives_in.is_none() {
            return Err(ProtocolError("this server does not receive files".into()));
        }
        if let Mode::Sink { digest: true } = mode {
            self.hasher = Some(Sha256::new());
        }
        self.mode = Some(mode);
        Ok(())
    }

    fn handle_file_event<'i>(
        &mut self,
        event: Event<'i>,
    ) -> Result<Option<Step<'i>>, ProtocolError> {
        let here = self.receives_in.expect("file mode needs a jurisdiction");
        match event {
            Event::Control(Kind::TransferHeader) => {
                if self.transfer.is_some() {
                    return Err(ProtocolError("TransferHeader during a transfer".into()));
                }
                let header = TransferHeader::decode(self.decoder.control())?;
                match accept(&header, here, self.connection_id) {
                    Ok(accepted) => {
                        let partial_name = accepted.partial_name.clone();
                        self.transfer = Some(Transfer {
                            accepted,
                            incoming: Incoming::new(header.size_bytes),
                            created: false,
                            storing: false,
                        });
                        Ok(Some(Step::Create { partial_name }))
                    }
                    Err(why) => Ok(Some(reply(TransferStatus::Refused, &why).into_step())),
                }
            }
            Event::DataStart(_) | Event::DataEnd => {
                self.ready_transfer()?;
                Ok(None)
            }
            Event::DataBytes(bytes) => {
                let transfer = self.ready_transfer()?;
                transfer
                    .incoming
                    .handle_data(bytes)
                    .map_err(ProtocolError)?;
                Ok(Some(Step::Write(bytes)))
            }
            Event::Control(Kind::TransferEnd) => {
                let digest = decode_transfer_end(self.decoder.control())?;
                let transfer = self.ready_transfer()?;
                let incoming = std::mem::replace(&mut transfer.incoming, Incoming::new(0));
                match incoming.handle_end(digest) {
                    Ok(()) => {
                        transfer.storing = true;
                        Ok(Some(Step::Store {
                            partial_name: transfer.accepted.partial_name.clone(),
                            final_name: transfer.accepted.final_name.clone(),
                        }))
                    }
                    Err(why) => {
                        let transfer = self.transfer.take().expect("ready");
                        self.push(reply(TransferStatus::Failed, &why));
                        Ok(Some(Step::Discard {
                            partial_name: transfer.accepted.partial_name,
                        }))
                    }
                }
            }
            Event::Control(kind) => Err(ProtocolError(format!("{kind:?} frame in file mode"))),
        }
    }

    /// The current transfer, which must have its file created and not be storing yet.
    fn ready_transfer(&mut self) -> Result<&mut Transfer, ProtocolError> {
        match self.transfer.as_mut() {
            Some(t) if t.created && !t.storing => Ok(t),
            _ => Err(ProtocolError(
                "transfer data before the receiver was ready".into(),
            )),
        }
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Echo => "echo",
        Mode::Sink { .. } => "sink",
        Mode::File => "file",
    }
}

fn reply(status: TransferStatus, message: &str) -> Pending {
    let reply = TransferReply {
        status,
        message: message.to_string(),
    };
    Pending::Send(frame::frame(Kind::TransferReply, &reply.encode()))
}

/// A whole `Error` frame.
pub(crate) fn error_frame(message: &str) -> Vec<u8> {
    frame::frame(Kind::Error, &frame::encode_error(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_hello, frame};

    /// Drives a session over `input` cut into `cut`-byte pieces, answering file effects with
    /// `created` and `stored`, and describes every step.
    fn drive(input: &[u8], cut: usize, created: bool, stored: bool) -> Vec<String> {
        let mut session = ServerSession::new(Some(Jurisdiction::parse("AU").unwrap()), 1);
        let mut out = Vec::new();
        let mut written = Vec::new();
        for piece in input.chunks(cut) {
            let mut rest = piece;
            if session.mode() == Some(Mode::Echo) {
                match session.handle_echo(rest) {
                    Ok(()) => out.push(format!("echo {}", rest.len())),
                    Err(frame) => out.push(format!("echo refused {frame:?}")),
                }
                continue;
            }
            while let Some(step) = session.handle_input(&mut rest) {
                match step {
                    Step::Write(bytes) => written.extend_from_slice(bytes),
                    Step::Create { partial_name } => {
                        out.push(format!("create {partial_name}"));
                        session.handle_created(if created { Ok(()) } else { Err("ro".into()) });
                    }
                    Step::Store {
                        partial_name,
                        final_name,
                    } => {
                        out.push(format!("store {partial_name} -> {final_name} {written:?}"));
                        session.handle_stored(if stored { Ok(()) } else { Err("full".into()) });
                    }
                    Step::Send(bytes) => out.push(describe(&bytes)),
                    other => out.push(format!("{other:?}")),
                }
            }
            if session.mode() == Some(Mode::Echo) && !rest.is_empty() {
                match session.handle_echo(rest) {
                    Ok(()) => out.push(format!("echo {}", rest.len())),
                    Err(frame) => out.push(format!("echo refused {frame:?}")),
                }
            }
        }
        session.handle_eof();
        while let Some(step) = session.handle_input(&mut &[][..]) {
            out.push(format!("{step:?}"));
        }
        out
    }

    fn describe(frame_bytes: &[u8]) -> String {
        let header = frame::Header::decode(frame_bytes[..8].try_into().unwrap()).unwrap();
        let payload = &frame_bytes[8..];
        match header.kind {
            Kind::StreamAck => format!("{:?}", StreamAck::decode(payload).unwrap()),
            Kind::TransferReply => format!("{:?}", TransferReply::decode(payload).unwrap()),
            Kind::Error => format!("Error {:?}", frame::decode_error(payload).unwrap()),
            kind => format!("{kind:?}"),
        }
    }

    fn transfer(name: &str, allowed: &str, data: &[u8], digest_of: &[u8]) -> Vec<u8> {
        let header = TransferHeader {
            transfer_id: 9,
            size_bytes: data.len() as u64,
            dataset: "ds".into(),
            name: name.into(),
            allowed: vec![Jurisdiction::parse(allowed).unwrap()],
        };
        let mut out = frame(Kind::TransferHeader, &header.encode());
        out.extend(frame(Kind::Data, data));
        let digest: [u8; 32] = Sha256::digest(digest_of).into();
        out.extend(frame(Kind::TransferEnd, &digest));
        out
    }

    fn file_session(rest: &[u8]) -> Vec<u8> {
        let mut out = frame(Kind::Hello, &encode_hello(Mode::File));
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn sink_counts_and_hashes() {
        let mut input = frame(Kind::Hello, &encode_hello(Mode::Sink { digest: false }));
        input.extend(frame(Kind::Data, b"abc"));
        input.extend(frame(Kind::Data, b""));
        input.extend(frame(Kind::End, b""));
        expect_test::expect![[r#"
            [
                "StreamAck { messages: 2, bytes: 3, digest: None }",
            ]
        "#]]
        .assert_debug_eq(&drive(&input, 5, true, true));
    }

    #[test]
    fn echo_validates_and_mirrors() {
        let mut input = frame(Kind::Hello, &encode_hello(Mode::Echo));
        input.extend(frame(Kind::Data, b"0123456789"));
        expect_test::expect![[r#"
            [
                "echo 12",
                "echo 6",
            ]
        "#]]
        .assert_debug_eq(&drive(&input, 16, true, true));
        input.extend(frame(Kind::End, b""));
        let out = drive(&input, 64, true, true);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("echo refused"), "{out:?}");
    }

    #[test]
    fn file_is_created_written_and_stored() {
        let input = file_session(&transfer("a.bin", "AU", b"hello", b"hello"));
        let whole = drive(&input, input.len(), true, true);
        expect_test::expect![[r#"
            [
                "create .sovra-partial-0000000000000009-1",
                "TransferReply { status: Ready, message: \"\" }",
                "store .sovra-partial-0000000000000009-1 -> a.bin [104, 101, 108, 108, 111]",
                "TransferReply { status: Stored, message: \"\" }",
            ]
        "#]]
        .assert_debug_eq(&whole);
        for cut in 1..input.len() {
            assert_eq!(drive(&input, cut, true, true), whole, "cut {cut}");
        }
    }

    #[test]
    fn file_failures() {
        // The jurisdiction is not allowed: refused before any data.
        let refused = file_session(&transfer("a.bin", "JP", b"", b""));
        expect_test::expect![[r#"
            [
                "TransferReply { status: Refused, message: \"this node is in AU; dataset ds allows only [JP]\" }",
                "Error \"transfer data before the receiver was ready\"",
                "Close",
            ]
        "#]]
        .assert_debug_eq(&drive(&refused, 1000, true, true));
        // A checksum mismatch: the partial file is discarded.
        let corrupt = file_session(&transfer("a.bin", "AU", b"hello", b"hellO"));
        let out = drive(&corrupt, 1000, true, true);
        assert_eq!(
            out[2],
            "Discard { partial_name: \".sovra-partial-0000000000000009-1\" }"
        );
        assert!(
            out[3].contains("Failed") && out[3].contains("sha256 mismatch"),
            "{out:?}"
        );
        // The file cannot be created or stored.
        let input = file_session(&transfer("a.bin", "AU", b"x", b"x"));
        let out = drive(&input, 1000, false, true);
        assert!(
            out[1].contains("Failed") && out[1].contains("ro"),
            "{out:?}"
        );
        let out = drive(&input, 1000, true, false);
        assert!(out[3].starts_with("Discard"), "{out:?}");
        assert!(
            out[4].contains("Failed") && out[4].contains("full"),
            "{out:?}"
        );
        // The peer goes away mid-transfer: the partial file is discarded.
        let cut_short = &input[..input.len() - 40];
        let out = drive(cut_short, 1000, true, true);
        assert_eq!(
            out.last().unwrap(),
            &format!(
                "{:?}",
                Step::Discard {
                    partial_name: ".sovra-partial-0000000000000009-1".into()
                }
            )
        );
    }

    #[test]
    fn protocol_errors_close() {
        let out = drive(&frame(Kind::Data, b"x"), 100, true, true);
        expect_test::expect![[r#"
            [
                "Error \"the first frame must be Hello\"",
                "Close",
            ]
        "#]]
        .assert_debug_eq(&out);
        let mut session = ServerSession::new(None, 1);
        let hello = frame(Kind::Hello, &encode_hello(Mode::File));
        let mut input = &hello[..];
        let step = session.handle_input(&mut input).unwrap();
        assert_eq!(
            step,
            Step::Send(error_frame("this server does not receive files"))
        );
        assert_eq!(session.handle_input(&mut input), Some(Step::Close));
        assert!(session.is_closed());
    }
}
