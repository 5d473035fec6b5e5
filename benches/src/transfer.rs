//! `sovra-bench transfer`: the data mover's transports side by side on loopback.
//!
//! Each round visits every message size, and at each size runs every transport in turn (the
//! order alternates, so neither always goes first after the other warmed the caches or the
//! machine got busier, and a burst of other work is spread over all sizes): a one-way stream
//! (throughput, bounded in bytes and time) and a ping-pong (round-trip times into an HDR
//! histogram). A transport's throughput is all its bytes over all its time at that size; its
//! RTT percentiles come from all its round trips.
//! Every transport has one server (on its own threads) and one client (on this thread) for the
//! whole run. The RDMA transport runs only when built in and a device exists; otherwise one
//! line says why it was skipped.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::Value;
use sovra_transport::{
    Client, Config, PingConfig, ServeConfig, Server, StreamConfig, TransportKind,
};

/// The message sizes of issue 8: 64 B to 16 MiB.
pub const SIZES: [usize; 8] = [
    64,
    1 << 10,
    4 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];

/// How long and how much.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Rounds per size (each runs every transport once).
    pub rounds: u32,
    /// Time bound of one stream or one ping-pong phase.
    pub phase: Duration,
    /// Most bytes one stream phase sends.
    pub stream_bytes_max: u64,
    /// Most round trips one ping-pong phase makes.
    pub round_trips_max: u64,
    /// Transports to compare (rdma is skipped with a line when unavailable).
    pub transports: Vec<TransportKind>,
    /// Transport settings, the same for all.
    pub config: Config,
}

impl Settings {
    /// The full run: 10 rounds of 100 ms phases per size and transport (about 40 s).
    pub fn full() -> Settings {
        Settings {
            sizes: SIZES.to_vec(),
            rounds: 10,
            phase: Duration::from_millis(100),
            stream_bytes_max: 4 << 30,
            round_trips_max: 100_000,
            transports: TransportKind::ALL.to_vec(),
            config: Config::default(),
        }
    }

    /// A smoke run of a second or two.
    pub fn quick() -> Settings {
        Settings {
            rounds: 1,
            phase: Duration::from_millis(10),
            stream_bytes_max: 32 << 20,
            round_trips_max: 200,
            ..Settings::full()
        }
    }
}

/// One transport at one size, summed over the rounds.
#[derive(Debug)]
pub struct Row {
    /// The transport.
    pub kind: TransportKind,
    /// Payload bytes per message.
    pub size_bytes: usize,
    /// Payload bytes streamed.
    pub bytes: u64,
    /// Time they took, first write to the sink's acknowledgement.
    pub elapsed: Duration,
    /// Round-trip times, nanoseconds.
    pub rtt_ns: Histogram<u64>,
}

impl Row {
    /// Payload throughput.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }

    /// A percentile of the round trips, in microseconds.
    pub fn rtt_us(&self, quantile: f64) -> f64 {
        self.rtt_ns.value_at_quantile(quantile) as f64 / 1e3
    }

    /// The result line.
    pub fn json(&self) -> String {
        crate::json_object(&[
            ("bench", "transfer".into()),
            ("transport", self.kind.name().into()),
            ("size_bytes", (self.size_bytes as u64).into()),
            ("gbit_per_s", round3(self.gbit_per_s()).into()),
            ("rtt_p50_us", round3(self.rtt_us(0.50)).into()),
            ("rtt_p99_us", round3(self.rtt_us(0.99)).into()),
        ])
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The line for a transport that cannot run here.
pub fn skipped_json(kind: TransportKind, reason: &str) -> String {
    crate::json_object(&[
        ("bench", "transfer".into()),
        ("transport", kind.name().into()),
        ("skipped", Value::from(reason)),
    ])
}

/// A transport under test: its server and this thread's client.
struct Contender {
    kind: TransportKind,
    server: Server,
    client: Client,
}

impl Contender {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// Runs the benchmark; the result lines go to `out` at the end (JSON, or a table), progress
/// and notes to stderr.
pub fn run(settings: &Settings, json: bool, out: &mut impl Write) -> anyhow::Result<Vec<Row>> {
    anyhow::ensure!(settings.rounds >= 1, "at least one round");
    let mut contenders = Vec::new();
    for &kind in &settings.transports {
        if let Err(e) = sovra_transport::probe(kind) {
            let reason = e.to_string();
            if json {
                writeln!(out, "{}", skipped_json(kind, &reason))?;
            } else {
                writeln!(out, "{:<9} skipped: {reason}", kind.name())?;
            }
            continue;
        }
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("loopback");
        let server = Server::start(kind, loopback, &settings.config, ServeConfig::default())
            .with_context(|| format!("{kind} server"))?;
        let client =
            Client::new(kind, &settings.config).with_context(|| format!("{kind} client"))?;
        contenders.push(Contender {
            kind,
            server,
            client,
        });
    }
    anyhow::ensure!(!contenders.is_empty(), "no transport can run here");
    if !json {
        writeln!(
            out,
            "{:<9} {:>10} {:>11} {:>11} {:>11}",
            "transport", "size", "Gbit/s", "p50 us", "p99 us"
        )?;
    }
    // Rows by size, then by contender.
    let mut rows: Vec<Row> = Vec::with_capacity(settings.sizes.len() * contenders.len());
    for &size in &settings.sizes {
        for c in &contenders {
            rows.push(Row {
                kind: c.kind,
                size_bytes: size,
                bytes: 0,
                elapsed: Duration::ZERO,
                rtt_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
            });
        }
    }
    // Every round visits every size, and at each size every transport, back to back in an
    // order that alternates: a burst of other work on the machine lands on both transports of
    // a size alike, and is spread over all sizes instead of spoiling the last few.
    for round in 0..settings.rounds {
        for (size_idx, _) in settings.sizes.iter().enumerate() {
            let mut order: Vec<usize> = (0..contenders.len()).collect();
            if (round as usize + size_idx) % 2 == 1 {
                order.reverse();
            }
            for idx in order {
                let row = &mut rows[size_idx * contenders.len() + idx];
                measure(&mut contenders[idx], row, settings)?;
            }
        }
        progress_round(round + 1, settings.rounds);
    }
    for row in &rows {
        if json {
            writeln!(out, "{}", row.json())?;
        } else {
            writeln!(
                out,
                "{:<9} {:>10} {:>11.3} {:>11.3} {:>11.3}",
                row.kind.name(),
                row.size_bytes,
                row.gbit_per_s(),
                row.rtt_us(0.5),
                row.rtt_us(0.99)
            )?;
        }
    }
    out.flush()?;
    for c in &contenders {
        for note in c.client.notes() {
            eprintln!("sovra-bench: transfer: {note}");
        }
    }
    eprint!("{}", ratios(&rows));
    Ok(rows)
}

/// One round of one transport at one size: a stream, then a ping-pong.
fn measure(c: &mut Contender, row: &mut Row, settings: &Settings) -> anyhow::Result<()> {
    let size = row.size_bytes;
    let stream = StreamConfig {
        message_bytes: size,
        messages_max: (settings.stream_bytes_max / size.max(1) as u64).max(1),
        duration_max: settings.phase,
        digest: false,
    };
    let addr = c.addr();
    let report = c
        .client
        .stream(addr, &stream)
        .with_context(|| format!("{} stream of {size}-byte messages", c.kind))?;
    row.bytes += report.payload_bytes;
    row.elapsed += report.elapsed;
    if std::env::var_os("SOVRA_BENCH_VERBOSE").is_some() {
        eprintln!(
            "sovra-bench: transfer: {} {size} B stream {:.2} Gbit/s",
            c.kind,
            report.gbit_per_s()
        );
    }
    let ping = PingConfig {
        message_bytes: size,
        round_trips_max: settings.round_trips_max,
        duration_max: settings.phase,
        verify: false,
    };
    let start = Instant::now();
    let report = c
        .client
        .ping(addr, &ping)
        .with_context(|| format!("{} ping of {size}-byte messages", c.kind))?;
    for &rtt in &report.rtts_ns {
        row.rtt_ns
            .record(rtt.max(1))
            .context("round trip out of the histogram's range")?;
    }
    progress(c.kind, size, start.elapsed());
    Ok(())
}

/// Progress on stderr (the harness has no log subscriber), with `SOVRA_BENCH_VERBOSE` set.
fn progress(kind: TransportKind, size: usize, took: Duration) {
    if std::env::var_os("SOVRA_BENCH_VERBOSE").is_some() {
        eprintln!("sovra-bench: transfer: {kind} {size} B ping phase {took:?}");
    }
}

/// Rounds done, on stderr.
fn progress_round(done: u32, of: u32) {
    eprintln!("sovra-bench: transfer: round {done} of {of} done");
}

/// io_uring against tokio, per size: the throughput ratio and the p99 RTT ratio.
pub fn ratios(rows: &[Row]) -> String {
    let mut text = String::new();
    let find = |kind, size| rows.iter().find(|r| r.kind == kind && r.size_bytes == size);
    for size in rows
        .iter()
        .map(|r| r.size_bytes)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (Some(uring), Some(tokio)) = (
            find(TransportKind::IoUring, size),
            find(TransportKind::Tokio, size),
        ) else {
            continue;
        };
        text.push_str(&format!(
            "sovra-bench: transfer: {size:>8} B: io_uring/tokio throughput {:.2}x, \
             p50 RTT {:.2}x, p99 RTT {:.2}x\n",
            uring.gbit_per_s() / tokio.gbit_per_s().max(1e-12),
            uring.rtt_us(0.5) / tokio.rtt_us(0.5).max(1e-12),
            uring.rtt_us(0.99) / tokio.rtt_us(0.99).max(1e-12),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_run_prints_one_line_per_transport_and_size() {
        let mut settings = Settings::quick();
        settings.phase = Duration::from_millis(5);
        let mut out = Vec::new();
        let rows = run(&settings, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let measured: Vec<&Value> = lines
            .iter()
            .filter(|v| v.get("skipped").is_none())
            .collect();
        assert_eq!(measured.len(), rows.len());
        // tokio and io_uring always run here; rdma runs or says why not.
        assert_eq!(rows.len() % SIZES.len(), 0);
        assert!(rows.len() >= 2 * SIZES.len());
        for v in &measured {
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            let mut expect = [
                "bench",
                "transport",
                "size_bytes",
                "gbit_per_s",
                "rtt_p50_us",
                "rtt_p99_us",
            ];
            let mut keys_sorted = keys.clone();
            keys_sorted.sort_unstable();
            expect.sort_unstable();
            assert_eq!(keys_sorted, expect);
            assert_eq!(v["bench"], "transfer");
            assert!(v["gbit_per_s"].as_f64().unwrap() > 0.0, "{v}");
            assert!(v["rtt_p50_us"].as_f64().unwrap() > 0.0, "{v}");
        }
        if !rows.iter().any(|r| r.kind == TransportKind::Rdma) {
            let skipped = lines.iter().find(|v| v["transport"] == "rdma").unwrap();
            assert!(skipped["skipped"].as_str().unwrap().starts_with("rdma: "));
        }
        // Key order is as documented.
        assert!(text.lines().any(|l| l.starts_with(
            r#"{"bench":"transfer","transport":"tokio","size_bytes":64,"gbit_per_s":"#
        )));
    }
}
