//! Round trips over loopback for every backend this machine has, and across backends.
//!
//! Sizes 0, 1, 64, 64 KiB + 1 and 16 MiB, echoed (every byte compared) and streamed (the
//! sink's SHA-256 checked against the sender's); raw-socket clients that cut frames into
//! pieces and break the protocol; file transfers with checksums and refusals. Random file
//! contents come from `SOVRA_SEED` (printed when a test fails). Every loop is bounded in count
//! and time, and only loopback addresses are used.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use sovra_fabric::Jurisdiction;
use sovra_transport::frame::{self, encode_hello, Header, Kind, Mode, StreamAck};
use sovra_transport::{
    probe, Client, Config, DataMover, DatasetPolicy, Destination, MoveError, PingConfig,
    ReceiveConfig, ServeConfig, Server, StreamConfig, TransportKind,
};

const SIZES: [usize; 5] = [0, 1, 64, (64 << 10) + 1, 16 << 20];
const LOOPBACK: &str = "127.0.0.1:0";

/// The backends that run here (rdma only when built and a device exists).
fn kinds() -> Vec<TransportKind> {
    TransportKind::ALL
        .into_iter()
        .filter(|&k| match probe(k) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipping {k}: {e}");
                assert_eq!(k, TransportKind::Rdma, "only rdma may be missing: {e}");
                false
            }
        })
        .collect()
}

/// The seed for random data: `SOVRA_SEED`, or a fixed one; printed if the test fails.
struct Seed(u64);

impl Seed {
    fn get() -> Seed {
        let seed = match std::env::var("SOVRA_SEED") {
            Ok(text) => text.trim().parse().expect("SOVRA_SEED is a u64"),
            Err(_) => 20261125,
        };
        Seed(seed)
    }

    fn bytes(&self, len: usize, stream: u64) -> Vec<u8> {
        let mut state = self.0 ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed with SOVRA_SEED={}", self.0);
        }
    }
}

fn server(kind: TransportKind, serve: ServeConfig) -> Server {
    Server::start(kind, LOOPBACK.parse().unwrap(), &Config::default(), serve).unwrap()
}

#[test]
fn echo_and_stream_every_size_on_every_backend() {
    let kinds = kinds();
    for &server_kind in &kinds {
        let server = server(server_kind, ServeConfig::default());
        for &client_kind in &kinds {
            let mut client = Client::new(client_kind, &Config::default()).unwrap();
            for size in SIZES {
                let what = format!("{client_kind} -> {server_kind}, {size} bytes");
                let ping = PingConfig {
                    message_bytes: size,
                    round_trips_max: if size > 1 << 20 { 2 } else { 20 },
                    duration_max: Duration::from_secs(20),
                    verify: true,
                };
                let report = client.ping(server.local_addr(), &ping).expect(&what);
                assert_eq!(report.rtts_ns.len() as u64, ping.round_trips_max, "{what}");
                let stream = StreamConfig {
                    message_bytes: size,
                    messages_max: if size > 1 << 20 { 3 } else { 200 },
                    duration_max: Duration::from_secs(20),
                    digest: true,
                };
                let report = client.stream(server.local_addr(), &stream).expect(&what);
                assert_eq!(report.messages, stream.messages_max, "{what}");
                assert_eq!(report.payload_bytes, stream.messages_max * size as u64);
            }
            assert!(client.notes().is_empty(), "{:?}", client.notes());
        }
        server.stop();
    }
}

#[test]
fn streams_stop_at_their_time_bound() {
    for kind in kinds() {
        let server = server(kind, ServeConfig::default());
        let mut client = Client::new(kind, &Config::default()).unwrap();
        let stream = StreamConfig {
            message_bytes: 64 << 10,
            messages_max: u64::MAX,
            duration_max: Duration::from_millis(50),
            digest: false,
        };
        let report = client.stream(server.local_addr(), &stream).unwrap();
        assert!(report.messages > 0);
        assert!(
            report.elapsed < Duration::from_secs(5),
            "{kind}: {report:?}"
        );
    }
}

/// A raw client: sends `bytes` cut into `cut`-byte writes, then reads `reply_len` bytes.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], cut: usize, reply_len: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for piece in bytes.chunks(cut) {
        stream.write_all(piece).unwrap();
    }
    let mut reply = vec![0u8; reply_len];
    stream.read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn servers_take_frames_cut_anywhere() {
    let seed = Seed::get();
    for kind in kinds() {
        let server = server(kind, ServeConfig::default());
        let addr = server.local_addr();
        // A sink gets three messages, one byte per write or in odd pieces.
        let mut input = frame::frame(Kind::Hello, &encode_hello(Mode::Sink { digest: true }));
        let mut all = Vec::new();
        for (i, len) in [0usize, 1, 70_001].into_iter().enumerate() {
            let payload = seed.bytes(len, i as u64);
            all.extend_from_slice(&payload);
            frame::encode_frame(Kind::Data, &payload, &mut input);
        }
        frame::encode_frame(Kind::End, &[], &mut input);
        for cut in [1, 7, 4096] {
            let reply = raw_exchange(addr, &input, cut, 8 + 49);
            let ack = StreamAck::decode(&reply[8..]).unwrap();
            assert_eq!(
                (ack.messages, ack.bytes),
                (3, all.len() as u64),
                "{kind} cut {cut}"
            );
            use sha2::Digest;
            let digest: [u8; 32] = sha2::Sha256::digest(&all).into();
            assert_eq!(ack.digest, Some(digest), "{kind} cut {cut}");
        }
        // An echo comes back byte for byte, whatever the cuts.
        let payload = seed.bytes(100_003, 9);
        let mut input = frame::frame(Kind::Hello, &encode_hello(Mode::Echo));
        let echo = frame::frame(Kind::Data, &payload);
        input.extend_from_slice(&echo);
        for cut in [1, 13, 65536] {
            assert_eq!(
                raw_exchange(addr, &input, cut, echo.len()),
                echo,
                "{kind} {cut}"
            );
        }
    }
}

#[test]
fn protocol_errors_are_answered_and_closed() {
    for kind in kinds() {
        let server = server(kind, ServeConfig::default());
        let addr = server.local_addr();
        let check = |input: Vec<u8>, expect: &str| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(&input).unwrap();
            let mut reply = Vec::new();
            // The server answers with an Error frame and closes: read to the end.
            stream.read_to_end(&mut reply).unwrap();
            let header = Header::decode(reply[..8].try_into().unwrap()).unwrap();
            assert_eq!(header.kind, Kind::Error, "{kind}");
            let message = frame::decode_error(&reply[8..]).unwrap();
            assert_eq!(message, expect, "{kind}");
        };
        check(
            frame::frame(Kind::Data, b"x"),
            "the first frame must be Hello",
        );
        check(vec![0xff; 8], "unknown frame kind 255");
        let mut bad = frame::frame(Kind::Hello, &encode_hello(Mode::Echo));
        bad[8] = b'X';
        check(bad, "not a sovra transport peer (bad magic)");
        check(
            frame::frame(Kind::Hello, &encode_hello(Mode::File)),
            "this server does not receive files",
        );
        let mut oversized = frame::frame(Kind::Hello, &encode_hello(Mode::Echo));
        oversized.extend_from_slice(&Header::new(Kind::Data, 0).encode()[..4]);
        oversized.extend_from_slice(&u32::MAX.to_le_bytes());
        check(
            oversized,
            "Data frame of 4294967295 bytes, more than the 16777216 allowed",
        );
        // Still serving after all that.
        let mut client = Client::new(kind, &Config::default()).unwrap();
        let ping = PingConfig {
            message_bytes: 64,
            round_trips_max: 3,
            duration_max: Duration::from_secs(5),
            verify: true,
        };
        client.ping(addr, &ping).unwrap();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sovra-transport-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn j(code: &str) -> Jurisdiction {
    Jurisdiction::parse(code).unwrap()
}

#[test]
fn files_move_whole_and_checked() {
    let seed = Seed::get();
    let kinds = kinds();
    let source = temp_dir("files-src");
    let sizes = [0usize, 1, (1 << 20) + 7, 5 << 20];
    let mut files = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let path = source.join(format!("part-{i}.bin"));
        fs::write(&path, seed.bytes(size, 100 + i as u64)).unwrap();
        files.push(path);
    }
    let policy = DatasetPolicy::new("imagenet-au", [j("AU"), j("SG")]).unwrap();
    for &receiver_kind in &kinds {
        let dir = temp_dir(&format!("files-dst-{receiver_kind}"));
        let serve = ServeConfig {
            receive: Some(ReceiveConfig {
                dir: dir.clone(),
                jurisdiction: j("AU"),
            }),
            ..ServeConfig::default()
        };
        let server = server(receiver_kind, serve);
        let to = Destination {
            addr: server.local_addr(),
            jurisdiction: j("AU"),
        };
        for &sender_kind in &kinds {
            let mover = DataMover::start(sender_kind, &Config::default()).unwrap();
            for path in &files {
                let moved = mover.send_file(path, &to, &policy).unwrap();
                let sent = fs::read(path).unwrap();
                let got = fs::read(dir.join(path.file_name().unwrap())).unwrap();
                assert!(
                    sent == got,
                    "{sender_kind} -> {receiver_kind}: {path:?} differs"
                );
                assert_eq!(moved.bytes, sent.len() as u64);
                use sha2::Digest;
                let digest: [u8; 32] = sha2::Sha256::digest(&sent).into();
                assert_eq!(moved.sha256, digest);
            }
        }
        // Nothing but the stored files: no temporary leftovers.
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["part-0.bin", "part-1.bin", "part-2.bin", "part-3.bin"]
        );
        server.stop();
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::remove_dir_all(&source).unwrap();
}

#[test]
fn a_dataset_never_leaves_its_jurisdictions() {
    let source = temp_dir("refuse-src");
    let path = source.join("ckpt.bin");
    fs::write(&path, b"weights").unwrap();
    let policy = DatasetPolicy::new("patients-au", [j("AU")]).unwrap();
    for kind in kinds() {
        // Sender's check: the destination is in JP. No connection is even attempted: the
        // listener never sees one.
        let listener = std::net::TcpListener::bind(LOOPBACK).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mover = DataMover::start(kind, &Config::default()).unwrap();
        let to = Destination {
            addr: listener.local_addr().unwrap(),
            jurisdiction: j("JP"),
        };
        match mover.send_file(&path, &to, &policy) {
            Err(MoveError::Refused(refusal)) => {
                assert_eq!(refusal.destination, j("JP"));
                assert_eq!(refusal.allowed, [j("AU")]);
                assert_eq!(
                    MoveError::Refused(refusal).to_string(),
                    "refused: dataset patients-au may not move to a node in JP: it allows only AU"
                );
            }
            other => panic!("{kind}: expected a refusal, got {other:?}"),
        }
        let accepted = listener.accept();
        assert_eq!(
            accepted.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "{kind}: a refused transfer connected"
        );
        // An empty policy allows nothing.
        let nowhere = DatasetPolicy::new("sealed", []).unwrap();
        let to_au = Destination {
            jurisdiction: j("AU"),
            ..to
        };
        assert!(matches!(
            mover.send_file(&path, &to_au, &nowhere),
            Err(MoveError::Refused(_))
        ));

        // Receiver's check: the sender believes the node is in AU, but it is in JP. The
        // receiver refuses before any data moves and writes nothing.
        let dir = temp_dir(&format!("refuse-dst-{kind}"));
        let serve = ServeConfig {
            receive: Some(ReceiveConfig {
                dir: dir.clone(),
                jurisdiction: j("JP"),
            }),
            ..ServeConfig::default()
        };
        let server = server(kind, serve);
        let stale = Destination {
            addr: server.local_addr(),
            jurisdiction: j("AU"),
        };
        match mover.send_file(&path, &stale, &policy) {
            Err(MoveError::RefusedByReceiver(why)) => {
                assert_eq!(
                    why,
                    "this node is in JP; dataset patients-au allows only [AU]"
                )
            }
            other => panic!("{kind}: expected the receiver to refuse, got {other:?}"),
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "{kind}");
        server.stop();
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::remove_dir_all(&source).unwrap();
}

#[test]
fn bad_sources_are_errors_not_panics() {
    let mover = DataMover::start(TransportKind::Tokio, &Config::default()).unwrap();
    let policy = DatasetPolicy::new("ds", [j("AU")]).unwrap();
    let to = Destination {
        addr: "127.0.0.1:9".parse().unwrap(),
        jurisdiction: j("AU"),
    };
    let missing = std::env::temp_dir().join("sovra-transport-no-such-file.bin");
    let err = mover.send_file(&missing, &to, &policy).unwrap_err();
    assert!(matches!(err, MoveError::Source { .. }), "{err}");
    let err = mover
        .send_file(std::path::Path::new("/"), &to, &policy)
        .unwrap_err();
    assert!(matches!(err, MoveError::Source { .. }), "{err}");
    let dir = temp_dir("bad-src");
    let hidden = dir.join(".hidden");
    fs::write(&hidden, b"x").unwrap();
    let err = mover.send_file(&hidden, &to, &policy).unwrap_err();
    assert!(err.to_string().contains("file name"), "{err}");
    // Nobody listens on the port: a transport error on one line.
    let file = dir.join("data.bin");
    fs::write(&file, b"x").unwrap();
    let closed = std::net::TcpListener::bind(LOOPBACK).unwrap();
    let to = Destination {
        addr: closed.local_addr().unwrap(),
        ..to
    };
    drop(closed);
    let err = mover.send_file(&file, &to, &policy).unwrap_err();
    assert!(matches!(err, MoveError::Transport(_)), "{err}");
    assert!(!err.to_string().contains('\n'));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_copy_sends_arrive_intact() {
    // Forced on loopback (where the kernel copies anyway), so the SendZc path, its
    // notifications and its fixed buffers are exercised; the data must arrive unchanged.
    let config = Config {
        zero_copy: sovra_transport::ZeroCopy::Always { bytes_min: 4096 },
        ..Config::default()
    };
    let server = Server::start(
        TransportKind::IoUring,
        LOOPBACK.parse().unwrap(),
        &config,
        ServeConfig::default(),
    )
    .unwrap();
    let mut client = Client::new(TransportKind::IoUring, &config).unwrap();
    for size in [4096, (64 << 10) + 1, 16 << 20] {
        let stream = StreamConfig {
            message_bytes: size,
            messages_max: 8,
            duration_max: Duration::from_secs(20),
            digest: true,
        };
        client.stream(server.local_addr(), &stream).unwrap();
        let ping = PingConfig {
            message_bytes: size,
            round_trips_max: 3,
            duration_max: Duration::from_secs(20),
            verify: true,
        };
        client.ping(server.local_addr(), &ping).unwrap();
    }
    let notes = client.notes();
    // Either the kernel took SendZc (and reported copying on loopback) or refused it, and
    // either way the client says so.
    assert!(
        notes
            .iter()
            .any(|n| n.contains("zero-copy") || n.contains("SendZc")),
        "{notes:?}"
    );
}

#[test]
fn tiny_socket_buffers_force_short_writes_and_stay_in_order() {
    // With 4 KiB socket buffers every write comes up short: io_uring resubmits the rest, and
    // a chain of linked writes comes back cancelled after the short one and is requeued in
    // order. The sink's SHA-256 must still match, on every backend, spinning or not.
    let seed = Seed::get();
    for busy_poll_ns in [0, 200_000] {
        let config = Config {
            socket_buffer_bytes: 4096,
            busy_poll_ns,
            ..Config::default()
        };
        for kind in kinds() {
            let server = Server::start(
                kind,
                LOOPBACK.parse().unwrap(),
                &config,
                ServeConfig::default(),
            )
            .unwrap();
            let mut client = Client::new(kind, &config).unwrap();
            for size in [1000 + (seed.0 % 100) as usize, 64 << 10, 1 << 20] {
                let stream = StreamConfig {
                    message_bytes: size,
                    messages_max: 40,
                    duration_max: Duration::from_secs(20),
                    digest: true,
                };
                let report = client.stream(server.local_addr(), &stream).unwrap();
                assert_eq!(report.messages, 40, "{kind} {size}");
                let ping = PingConfig {
                    message_bytes: size,
                    round_trips_max: 5,
                    duration_max: Duration::from_secs(20),
                    verify: true,
                };
                client.ping(server.local_addr(), &ping).unwrap();
            }
        }
    }
}
