//! `sovra-bench`: sovra's benchmark harness.
//!
//! `sovra-bench placement --json` times the placement pipeline on the synthetic four-site
//! inventory; `sovra-bench raft --json` runs three real `sovrad` replicas on loopback and
//! measures committed placements per second and leader failover (see `benches/README.md`);
//! `sovra-bench sim --json` times the simulator: its event core, and one OpenB evaluation run.
//! `sovra-bench transfer --json` compares the data mover's transports on loopback (throughput
//! and round-trip times per message size, side by side in one run).
//! With `--json`, stdout carries one JSON object per result and nothing else; progress and
//! warnings go to stderr. Without it, stdout is a table (`raft`: one field per line).
//!
//! Exit codes: 0 success, 1 runtime error (printed on one line as `sovra-bench: <msg>`),
//! 2 bad usage (from clap).

mod cluster;
mod e2e;
mod machine;
mod placement;
mod raft;
mod sim;
mod slurm;
mod stats;
mod transfer;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::placement::{Case, Measurement};
use crate::raft::RaftCase;

/// Below this share of placed samples, a case mostly measures the unschedulable path.
const PLACED_PCT_WARN: f64 = 95.0;

/// sovra benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "sovra-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time `place()` on the synthetic four-site inventory at given occupancies.
    Placement(PlacementArgs),
    /// Three real `sovrad` replicas on loopback: committed placements per second, failover.
    Raft(RaftArgs),
    /// The simulator: event-core throughput, one OpenB evaluation run (fgd and default).
    Sim(SimArgs),
    /// The demo cluster (3 replicas, 4 agents, real processes): submit-to-running latency.
    E2e(E2eArgs),
    /// Sustained `sbatch` submissions (real processes of the Slurm shim) to 3 replicas.
    Slurm(SlurmArgs),
    /// The data mover's transports on loopback: throughput and round trips per message size.
    Transfer(TransferArgs),
}

#[derive(Debug, clap::Args)]
struct SlurmArgs {
    /// One JSON object per result on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Concurrent submitting clients (each runs sbatch processes one after another).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    clients: u32,
    /// Most sbatch processes per case.
    #[arg(long, default_value_t = 4000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    jobs: u64,
    /// Longest time per case, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// The `sovra` binary [default: next to this one].
    #[arg(long)]
    sovra: Option<PathBuf>,
    /// Keep each case's directory (in the temp dir) and say where.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, clap::Args)]
struct TransferArgs {
    /// One JSON object per transport and size on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// A smoke run of a second or two (1 round, 10 ms phases).
    #[arg(long)]
    quick: bool,
    /// Rounds per size; each runs every transport once, in alternating order.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: Option<u32>,
    /// Milliseconds of one stream or ping-pong phase.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    phase_ms: Option<u64>,
    /// Message sizes in bytes, comma-separated [default: 64 B to 16 MiB].
    #[arg(long, value_delimiter = ',', value_parser = parse_message_bytes)]
    sizes: Vec<usize>,
    /// Transports, comma-separated [default: tokio,io_uring,rdma].
    #[arg(long, value_delimiter = ',', value_parser = parse_transport)]
    transports: Vec<sovra_transport::TransportKind>,
    /// io_uring: send frames of at least this many bytes with SendZc, loopback included
    /// [default: only to remote peers, from 64 KiB].
    #[arg(long)]
    zero_copy_min: Option<usize>,
    /// SO_SNDBUF/SO_RCVBUF of every socket, 0 for the kernel's autotuning.
    #[arg(long)]
    socket_buffer: Option<usize>,
    /// Streaming coalesces smaller messages into writes of this many bytes.
    #[arg(long, value_parser = clap::value_parser!(usize))]
    batch: Option<usize>,
    /// io_uring: spin on the completion queue this long for small pings.
    #[arg(long)]
    busy_poll_ns: Option<u64>,
}

fn parse_message_bytes(text: &str) -> Result<usize, String> {
    let bytes: usize = text.parse().map_err(|e| format!("{e}"))?;
    if bytes > sovra_transport::frame::DATA_BYTES_MAX {
        return Err(format!(
            "{bytes} bytes: at most {}",
            sovra_transport::frame::DATA_BYTES_MAX
        ));
    }
    Ok(bytes)
}

fn parse_transport(text: &str) -> Result<sovra_transport::TransportKind, String> {
    text.parse()
}

#[derive(Debug, clap::Args)]
struct E2eArgs {
    /// One JSON object per result on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Jobs to time (one after another).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    jobs: u32,
    /// The `sovra` binary [default: next to this one].
    #[arg(long)]
    sovra: Option<PathBuf>,
    /// Where the cluster's files go [default: a new temp dir, removed afterwards].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the directory.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// One JSON object per result on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Directory of the OpenB CSVs; the OpenB cases are skipped when they are absent.
    #[arg(long, default_value = "../shared/traces/openb")]
    trace_dir: PathBuf,
    /// `event_core`: events to process per round (best of 3 rounds).
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
}

#[derive(Debug, clap::Args)]
struct RaftArgs {
    /// One JSON object per result on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Cases to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = RaftCase::ALL)]
    cases: Vec<RaftCase>,
    /// `submit`: concurrent clients, one request in flight each.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,
    /// `submit`: seconds of measured submissions.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    duration_s: f64,
    /// `submit`: seconds of untimed submissions first.
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    warmup_s: f64,
    /// `submit`: most jobs in the measured phase.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    jobs_max: u32,
    /// `submit`: clients send to a follower, which forwards each request to the leader
    /// (default: clients send to the leader).
    #[arg(long)]
    via_follower: bool,
    /// `failover`: trials.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    trials: u32,
    /// `failover`: clients submitting in the background through every trial.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=256))]
    background_clients: u32,
    /// Nodes of the synthetic inventory, 8 GPUs each: a multiple of 512.
    #[arg(long, default_value_t = 8192, value_parser = parse_raft_nodes)]
    nodes: usize,
    /// Directory for the clusters (must not exist; default: a new one in the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the clusters' stores and logs after the run.
    #[arg(long)]
    keep: bool,
    /// The `sovrad` binary (default: the one next to this executable).
    #[arg(long)]
    sovrad: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let s: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(s > 0.0 && s <= 3600.0) {
        return Err(format!("{s} is outside (0, 3600] seconds"));
    }
    Ok(s)
}

fn parse_raft_nodes(text: &str) -> Result<usize, String> {
    let nodes: usize = text.parse().map_err(|e| format!("{e}"))?;
    if nodes == 0 || nodes % raft::NODES_ROUND != 0 || nodes > 65_536 {
        return Err(format!(
            "{nodes} nodes: use a positive multiple of {} up to 65536",
            raft::NODES_ROUND
        ));
    }
    Ok(nodes)
}

#[derive(Debug, clap::Args)]
struct PlacementArgs {
    /// One JSON object per result on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Timed placements per case and occupancy.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// Untimed placements before each case.
    #[arg(long, default_value_t = 100)]
    warmup: u32,
    /// Nodes in the inventory (8 GPUs each): a multiple of 256, or of 16 below 256.
    #[arg(long, default_value_t = 4096, value_parser = parse_nodes)]
    nodes: usize,
    /// GPU occupancies to fill the cluster to, comma-separated, each in 0..=1.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [0.5, 0.9],
        value_parser = parse_occupancy
    )]
    occupancy: Vec<f64>,
    /// Cases to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Case::ALL)]
    cases: Vec<Case>,
    /// Seed of the cluster fill and base seed of the samples.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_nodes(text: &str) -> Result<usize, String> {
    let nodes: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !cluster::nodes_supported(nodes) {
        return Err(format!(
            "{nodes} nodes: use a multiple of 256 (or a positive multiple of 16 below 256)"
        ));
    }
    Ok(nodes)
}

fn parse_occupancy(text: &str) -> Result<f64, String> {
    let occupancy: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=1.0).contains(&occupancy) {
        return Err(format!("{occupancy} is outside 0..=1"));
    }
    Ok(occupancy)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Placement(args) => run_placement(&args),
        Command::Raft(args) => run_raft(&args),
        Command::Sim(args) => run_sim(&args),
        Command::E2e(args) => run_e2e(&args),
        Command::Slurm(args) => run_slurm(&args),
        Command::Transfer(args) => run_transfer(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sovra-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is stdout closing early (`| head`), which is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn run_sim(args: &SimArgs) -> anyhow::Result<()> {
    let mut results = vec![sim::event_core(args.events, 3)];
    for policy in [
        sovra_sim::openb::Policy::Fgd,
        sovra_sim::openb::Policy::Default,
    ] {
        match sim::openb_1seed(&args.trace_dir, policy)? {
            Some(r) => results.push(r),
            None => eprintln!(
                "sovra-bench: sim: no {} and {} in {}: skipping openb_{}_1seed",
                sim::NODES_FILE,
                sim::PODS_FILE,
                args.trace_dir.display(),
                policy.name()
            ),
        }
    }
    let mut stdout = io::stdout().lock();
    for r in results {
        if args.json {
            writeln!(stdout, "{r}")?;
        } else {
            let what = match (r["events_per_s"].as_f64(), r["wall_s"].as_f64()) {
                (Some(e), _) => format!("{e:.0} events/s"),
                (_, Some(w)) => format!("{w:.2} s wall"),
                _ => String::new(),
            };
            writeln!(stdout, "{:<22} {what}", r["case"].as_str().unwrap_or(""))?;
        }
    }
    Ok(())
}

fn run_transfer(args: &TransferArgs) -> anyhow::Result<()> {
    let mut settings = if args.quick {
        transfer::Settings::quick()
    } else {
        transfer::Settings::full()
    };
    if let Some(rounds) = args.rounds {
        settings.rounds = rounds;
    }
    if let Some(ms) = args.phase_ms {
        settings.phase = Duration::from_millis(ms);
    }
    if !args.sizes.is_empty() {
        settings.sizes = args.sizes.clone();
    }
    if !args.transports.is_empty() {
        settings.transports = args.transports.clone();
    }
    if let Some(bytes_min) = args.zero_copy_min {
        settings.config.zero_copy = sovra_transport::ZeroCopy::Always { bytes_min };
    }
    if let Some(bytes) = args.socket_buffer {
        settings.config.socket_buffer_bytes = bytes;
    }
    if let Some(bytes) = args.batch {
        anyhow::ensure!(bytes > 0, "--batch must be positive");
        settings.config.batch_bytes = bytes;
    }
    if let Some(ns) = args.busy_poll_ns {
        settings.config.busy_poll_ns = ns;
    }
    eprintln!(
        "sovra-bench: transfer on {}: {} rounds of {:?} phases, {:?}",
        machine::describe(),
        settings.rounds,
        settings.phase,
        settings.config
    );
    let mut stdout = io::stdout().lock();
    transfer::run(&settings, args.json, &mut stdout)?;
    Ok(())
}

fn run_placement(args: &PlacementArgs) -> anyhow::Result<()> {
    let machine = machine::describe();
    let config = placement::Config {
        samples: args.samples as usize,
        warmup: args.warmup as usize,
        seed: args.seed,
    };
    let mut stdout = io::stdout().lock();
    if !args.json {
        writeln!(stdout, "placement latency, machine: {machine}")?;
        writeln!(
            stdout,
            "{:<15} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "case", "nodes", "occ", "p50 us", "p99 us", "max us", "mean us", "placed%", "samples"
        )?;
    }
    for &occupancy in &args.occupancy {
        let start = Instant::now();
        eprintln!(
            "sovra-bench: building {} nodes at occupancy {occupancy} (seed {})",
            args.nodes, args.seed
        );
        let (topology, ledger) = cluster::cluster(args.nodes, occupancy, args.seed)
            .with_context(|| format!("building the cluster at occupancy {occupancy}"))?;
        eprintln!(
            "sovra-bench: cluster ready in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        let gpus = topology.gpu_count();
        for &case in &args.cases {
            let m = placement::measure(&topology, &ledger, case, &config);
            eprintln!(
                "sovra-bench: {} at {occupancy}: placed {:.1}%, {:.1} nodes evaluated per \
                 placement",
                case.name(),
                m.placed_pct(),
                m.nodes_evaluated_mean
            );
            if m.placed_pct() < PLACED_PCT_WARN {
                eprintln!(
                    "sovra-bench: warning: {} at occupancy {occupancy} placed only {:.1}% of \
                     samples; the rest time the unschedulable path",
                    case.name(),
                    m.placed_pct()
                );
            }
            if let Some((placed, unplaced)) = &m.split {
                eprintln!(
                    "sovra-bench: {} at {occupancy}: placed samples p50 {:.1} us p99 {:.1} us; \
                     unplaced samples p50 {:.1} us p99 {:.1} us",
                    case.name(),
                    us(placed.p50_ns as f64),
                    us(placed.p99_ns as f64),
                    us(unplaced.p50_ns as f64),
                    us(unplaced.p99_ns as f64)
                );
            }
            if let Some(message) = &m.unschedulable_first {
                eprintln!(
                    "sovra-bench: {} at {occupancy}: first unplaced sample: {message}",
                    case.name()
                );
            }
            let row = Row {
                nodes: args.nodes,
                gpus,
                occupancy,
                seed: args.seed,
                m: &m,
            };
            if args.json {
                writeln!(stdout, "{}", row.json(&machine))?;
            } else {
                writeln!(stdout, "{}", row.table())?;
            }
            stdout.flush()?;
        }
    }
    Ok(())
}

/// The `sovrad` binary next to this executable (`cargo build --release -p sovrad -p
/// sovra-bench` puts both in `target/release`).
fn sovrad_next_to_me() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    let sovrad = dir.join(format!("sovrad{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        sovrad.is_file(),
        "no sovrad next to {}: build both with `cargo build --release -p sovrad -p \
         sovra-bench`, or pass --sovrad",
        me.display()
    );
    Ok(sovrad)
}

fn sovra_next_to_me(given: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().context("cannot find this executable")?;
    let sovra = me.with_file_name(format!("sovra{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        sovra.is_file(),
        "no sovra next to {}: build both with `cargo build --release -p sovra-cli -p \
         sovra-bench`, or pass --sovra",
        me.display()
    );
    Ok(sovra)
}

fn run_slurm(args: &SlurmArgs) -> anyhow::Result<()> {
    let sovra = sovra_next_to_me(&args.sovra)?;
    // Plain sbatch, then arrays of 1000.
    for (case, array, jobs) in [("sbatch", 1u32, args.jobs), ("array", 1000, 20)] {
        let dir =
            std::env::temp_dir().join(format!("sovra-bench-slurm-{case}-{}", std::process::id()));
        let cfg = slurm::Config {
            sovra: sovra.clone(),
            inventory: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/inventory/demo.toml"),
            dir: dir.clone(),
            clients: args.clients as usize,
            jobs,
            seconds: args.seconds,
            array,
        };
        let result = slurm::run(&cfg);
        if args.keep {
            eprintln!("sovra-bench: files and logs kept in {}", dir.display());
        } else if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut r = result?;
        let s = stats::summarize(&mut r.samples_ns);
        let ms = |ns: u64| (ns as f64 / 10_000.0).round() / 100.0;
        let secs = r.wall.as_secs_f64();
        let line = json_object(&[
            ("bench", "slurm".into()),
            ("case", case.into()),
            ("clients", u64::from(args.clients).into()),
            ("processes", r.processes.into()),
            ("jobs", r.jobs.into()),
            ("failures", r.failures.into()),
            ("seconds", ((secs * 100.0).round() / 100.0).into()),
            ("jobs_per_s", ((r.jobs as f64 / secs).round()).into()),
            (
                "processes_per_s",
                ((r.processes as f64 / secs).round()).into(),
            ),
            ("p50_ms", ms(s.p50_ns).into()),
            ("p99_ms", ms(s.p99_ns).into()),
            ("replicas", 3u64.into()),
            ("fsync", true.into()),
            ("machine", machine::describe().into()),
        ]);
        println!("{line}");
        if !args.json {
            eprintln!(
                "sovra-bench: {case}: {:.0} jobs/s ({} processes in {secs:.1} s), p50 {:.1} ms",
                r.jobs as f64 / secs,
                r.processes,
                s.p50_ns as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn run_e2e(args: &E2eArgs) -> anyhow::Result<()> {
    let sovra = match &args.sovra {
        Some(path) => path.clone(),
        None => {
            let me = std::env::current_exe().context("cannot find this executable")?;
            let sovra = me.with_file_name(format!("sovra{}", std::env::consts::EXE_SUFFIX));
            anyhow::ensure!(
                sovra.is_file(),
                "no sovra next to {}: build both with `cargo build --release -p sovra-cli -p \
                 sovra-bench`, or pass --sovra",
                me.display()
            );
            sovra
        }
    };
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sovra-bench-e2e-{}", std::process::id()))
    });
    anyhow::ensure!(
        !dir.exists(),
        "{} exists; pass a --dir that does not",
        dir.display()
    );
    let cfg = e2e::Config {
        sovra,
        inventory: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/inventory/demo.toml"),
        dir: dir.clone(),
        jobs: args.jobs as usize,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(e2e::run(&cfg));
    if args.keep {
        eprintln!("sovra-bench: files and logs kept in {}", dir.display());
    } else if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut r = result?;
    let s = stats::summarize(&mut r.samples_ns);
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    let line = json_object(&[
        ("bench", "e2e".into()),
        ("case", "submit_to_running".into()),
        ("replicas", 3u64.into()),
        ("agents", 4u64.into()),
        ("jobs", (r.samples_ns.len() as u64).into()),
        ("p50_us", us(s.p50_ns).into()),
        ("p99_us", us(s.p99_ns).into()),
        ("max_us", us(s.max_ns).into()),
        ("mean_us", ((s.mean_ns / 100.0).round() / 10.0).into()),
        ("isolation", "session".into()),
        ("machine", machine::describe().into()),
    ]);
    println!("{line}");
    if !args.json {
        eprintln!(
            "sovra-bench: submit to running over {} jobs: p50 {:.1} ms, p99 {:.1} ms",
            r.samples_ns.len(),
            s.p50_ns as f64 / 1e6,
            s.p99_ns as f64 / 1e6
        );
    }
    Ok(())
}

fn run_raft(args: &RaftArgs) -> anyhow::Result<()> {
    let sovrad = match &args.sovrad {
        Some(path) => path.clone(),
        None => sovrad_next_to_me()?,
    };
    let sovrad_text = sovrad.display().to_string();
    if sovrad_text.contains("/debug/") {
        eprintln!("sovra-bench: warning: {sovrad_text} looks like a debug build");
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sovra-bench-raft-{}", std::process::id()))
    });
    // The directory is removed at the end, so it must be one this run creates.
    anyhow::ensure!(
        !dir.exists(),
        "{} exists; pass a --dir that does not",
        dir.display()
    );
    let cfg = raft::Config {
        sovrad,
        dir: dir.clone(),
        nodes: args.nodes,
        clients: args.clients as usize,
        duration: Duration::from_secs_f64(args.duration_s),
        warmup: Duration::from_secs_f64(args.warmup_s),
        jobs_max: args.jobs_max as usize,
        via_follower: args.via_follower,
        trials: args.trials as usize,
        background_clients: args.background_clients as usize,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let machine = machine::describe();
    // SIGINT or SIGTERM drops the running case, and with it the guard that kills the
    // replicas.
    let result = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?;
        tokio::select! {
            result = raft_cases(&cfg, args, &machine) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            _ = terminate.recv() => Err(anyhow!("terminated")),
        }
    });
    if args.keep {
        eprintln!("sovra-bench: stores and logs kept in {}", dir.display());
    } else if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    result
}

async fn raft_cases(cfg: &raft::Config, args: &RaftArgs, machine: &str) -> anyhow::Result<()> {
    let gpus = cfg.nodes * raft::GPUS_PER_NODE;
    for &case in &args.cases {
        eprintln!("sovra-bench: raft {} on {} nodes", case.name(), cfg.nodes);
        let line = match case {
            RaftCase::Submit => {
                let r = raft::submit(cfg).await?;
                if r.unplaced + r.errors > 0 {
                    eprintln!(
                        "sovra-bench: warning: {} submissions unplaced, {} failed (first: {})",
                        r.unplaced,
                        r.errors,
                        r.first_error.as_deref().unwrap_or("none")
                    );
                }
                let l = r
                    .latency
                    .ok_or_else(|| anyhow!("no submission was placed"))?;
                json_object(&[
                    ("bench", "raft".into()),
                    ("case", case.name().into()),
                    ("replicas", raft::REPLICAS.into()),
                    ("fsync", true.into()),
                    ("clients", cfg.clients.into()),
                    (
                        "via",
                        if cfg.via_follower {
                            "follower"
                        } else {
                            "leader"
                        }
                        .into(),
                    ),
                    ("commits_per_s", round_to(r.commits_per_s(), 10.0).into()),
                    ("p50_us", us(l.p50_ns as f64).into()),
                    ("p99_us", us(l.p99_ns as f64).into()),
                    ("max_us", us(l.max_ns as f64).into()),
                    ("mean_us", us(l.mean_ns).into()),
                    ("jobs", r.placed.into()),
                    ("unplaced", r.unplaced.into()),
                    ("errors", r.errors.into()),
                    (
                        "duration_s",
                        round_to(r.elapsed.as_secs_f64(), 1000.0).into(),
                    ),
                    ("nodes", cfg.nodes.into()),
                    ("gpus", gpus.into()),
                    ("machine", machine.into()),
                ])
            }
            RaftCase::Failover => {
                let r = raft::failover(cfg).await?;
                let ms = |ns: u64| round_to(ns as f64 / 1e6, 10.0);
                json_object(&[
                    ("bench", "raft".into()),
                    ("case", case.name().into()),
                    ("replicas", raft::REPLICAS.into()),
                    ("fsync", true.into()),
                    ("trials", cfg.trials.into()),
                    ("p50_ms", ms(r.failover.p50_ns).into()),
                    ("p99_ms", ms(r.failover.p99_ns).into()),
                    ("max_ms", ms(r.failover.max_ns).into()),
                    ("election_p50_ms", ms(r.election.p50_ns).into()),
                    ("election_p99_ms", ms(r.election.p99_ns).into()),
                    ("rejoin_p50_ms", ms(r.rejoin.p50_ns).into()),
                    ("rejoin_max_ms", ms(r.rejoin.max_ns).into()),
                    ("lost", r.lost.into()),
                    ("duplicated", r.duplicated.into()),
                    ("acked", r.acked.into()),
                    ("retried_at_end", r.retried_at_end.into()),
                    ("listed", r.listed.into()),
                    ("background_clients", cfg.background_clients.into()),
                    ("nodes", cfg.nodes.into()),
                    ("machine", machine.into()),
                ])
            }
        };
        let mut stdout = io::stdout().lock();
        if args.json {
            writeln!(stdout, "{line}")?;
        } else {
            // The same fields, one per line: the raft cases have too many for a table.
            let value: Value = serde_json::from_str(&line).context("own JSON")?;
            if let Value::Object(map) = value {
                for (key, value) in map {
                    writeln!(stdout, "{key:>20}  {value}")?;
                }
            }
            writeln!(stdout)?;
        }
        stdout.flush()?;
    }
    Ok(())
}

/// One result, ready to print.
struct Row<'a> {
    nodes: usize,
    gpus: usize,
    occupancy: f64,
    seed: u64,
    m: &'a Measurement,
}

impl Row<'_> {
    fn json(&self, machine: &str) -> String {
        let s = &self.m.summary;
        json_object(&[
            ("bench", "placement".into()),
            ("case", self.m.case.name().into()),
            ("nodes", self.nodes.into()),
            ("gpus", self.gpus.into()),
            ("occupancy", self.occupancy.into()),
            ("p50_us", us(s.p50_ns as f64).into()),
            ("p99_us", us(s.p99_ns as f64).into()),
            ("max_us", us(s.max_ns as f64).into()),
            ("mean_us", us(s.mean_ns).into()),
            ("samples", self.m.samples.into()),
            ("placed_pct", round_to(self.m.placed_pct(), 100.0).into()),
            ("seed", self.seed.into()),
            ("machine", machine.into()),
        ])
    }

    fn table(&self) -> String {
        let s = &self.m.summary;
        format!(
            "{:<15} {:>7} {:>6.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8}",
            self.m.case.name(),
            self.nodes,
            self.occupancy,
            us(s.p50_ns as f64),
            us(s.p99_ns as f64),
            us(s.max_ns as f64),
            us(s.mean_ns),
            self.m.placed_pct(),
            self.m.samples
        )
    }
}

/// Nanoseconds to microseconds, to the nanosecond.
fn us(ns: f64) -> f64 {
    ns.round() / 1000.0
}

fn round_to(x: f64, per_unit: f64) -> f64 {
    (x * per_unit).round() / per_unit
}

/// A compact JSON object with its keys in the given order (`serde_json::Map` would sort them).
fn json_object(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::from(*key)))
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_keeps_order_and_escapes() {
        let line = json_object(&[("b", 1.5.into()), ("a", "x\"y".into()), ("c", 2u64.into())]);
        assert_eq!(line, r#"{"b":1.5,"a":"x\"y","c":2}"#);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["a"], "x\"y");
    }

    #[test]
    fn cli_rejects_bad_usage() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(args)
                .map(|_| ())
                .map_err(|e| e.exit_code())
        };
        assert!(parse(&["sovra-bench", "placement", "--json"]).is_ok());
        assert!(parse(&["sovra-bench", "raft", "--json", "--cases", "failover"]).is_ok());
        assert!(parse(&["sovra-bench", "transfer", "--json", "--quick"]).is_ok());
        assert!(parse(&["sovra-bench", "transfer", "--transports", "io_uring,tokio"]).is_ok());
        let bad = [
            vec!["sovra-bench", "placement", "--nodes", "1000"],
            vec!["sovra-bench", "placement", "--occupancy", "0.5,1.5"],
            vec!["sovra-bench", "placement", "--samples", "0"],
            vec!["sovra-bench", "placement", "--cases", "gang_65"],
            vec!["sovra-bench", "raft", "--nodes", "1000"],
            vec!["sovra-bench", "raft", "--duration-s", "0"],
            vec!["sovra-bench", "raft", "--clients", "0"],
            vec!["sovra-bench", "raft", "--cases", "submit,elect"],
            vec!["sovra-bench", "transfer", "--transports", "ucx"],
            vec!["sovra-bench", "transfer", "--sizes", "16777217"],
            vec!["sovra-bench", "transfer", "--rounds", "0"],
        ];
        for args in bad {
            // Exit code 2 is bad usage.
            assert_eq!(parse(&args), Err(2), "{args:?}");
        }
    }

    #[test]
    fn cli_defaults() {
        let Command::Placement(args) = Cli::try_parse_from(["sovra-bench", "placement"])
            .unwrap()
            .command
        else {
            panic!("not the placement command");
        };
        assert_eq!(args.occupancy, vec![0.5, 0.9]);
        assert_eq!(args.cases, Case::ALL.to_vec());
        assert_eq!((args.samples, args.nodes), (2000, 4096));
    }
}
