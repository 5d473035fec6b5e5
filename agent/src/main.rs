//! `sovra-agent`: the node agent binary.
//!
//! Subcommands: `inventory` (print this node's GPUs), `run-local` (run a job on this node by
//! hand, under the same runner the networked agent uses), `resume` (reopen a state directory
//! after the agent was killed: adopt what still runs, report what ended) and the hidden
//! `supervise` (the per-task supervisor the runner starts).
//!
//! Exit codes: 0 success; 1 runtime error; 2 bad usage; 3 (`run-local`, `resume`) a task
//! ended other than `COMPLETED`. Errors are one line: `sovra-agent: …`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use sovra_agent::core::inventory::Inventory;
use sovra_agent::core::local::place_locally;
use sovra_agent::core::{Command, Config, Finished, Report, Status, TaskId};
use sovra_agent::shell::cgroup::{self, Enforce};
use sovra_agent::shell::inventory::{self, InventorySource};
use sovra_agent::shell::proc::unix_ms;
use sovra_agent::shell::runner::{Isolation, Runner, RunnerConfig};
use sovra_agent::shell::supervisor;
use sovra_scheduler::core::job::{GpuRequest, JobId, JobSpec, Workload};
use sovra_scheduler::jobfile::{parse_job, parse_slurm_time};

const EXIT_RUNTIME: u8 = 1;
const EXIT_TASK_FAILED: u8 = 3;

#[derive(Parser)]
#[command(name = "sovra-agent", version, about = "sovra's node agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Join the cluster and run the tasks it assigns to this node, until SIGINT or SIGTERM
    /// (tasks keep running when the agent stops; the next agent adopts them).
    Run {
        /// Replica addresses, comma-separated (any of them; the leader is found).
        #[arg(long, value_delimiter = ',', required = true)]
        server: Vec<std::net::SocketAddr>,
        /// Certificates directory (`ca.pem`, `agent-<node>.pem`, `agent-<node>.key`).
        #[arg(long)]
        certs: PathBuf,
        /// Longest wait of one poll for new assignments, in milliseconds.
        #[arg(
            long,
            default_value_t = 2000,
            value_parser = clap::value_parser!(u64).range(100..=10_000)
        )]
        poll_ms: u64,
        /// Answer and send latency probes on this UDP address (e.g. the node's data-network
        /// address, port 7471); the leader turns the RTTs measured between sites into the
        /// placement's site latencies. Without it the agent does not probe.
        #[arg(long)]
        probe_listen: Option<std::net::SocketAddr>,
        /// Seconds between probe rounds.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        probe_interval_s: u64,
        #[command(flatten)]
        runner: RunnerArgs,
        #[command(flatten)]
        devices: DeviceArgs,
    },
    /// Print this node's GPU inventory (NVML, or a declared simulation).
    Inventory {
        #[command(flatten)]
        devices: DeviceArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a job on this node, every member here, and wait for it.
    RunLocal(RunLocalArgs),
    /// Reopen a state directory: adopt running tasks, report ended ones, wait for all.
    Resume {
        #[command(flatten)]
        runner: RunnerArgs,
        #[command(flatten)]
        devices: DeviceArgs,
        /// Print one JSON line at the end.
        #[arg(long)]
        json: bool,
    },
    /// Supervise one task (started by the runner).
    #[command(hide = true)]
    Supervise {
        /// The task's state directory.
        dir: PathBuf,
    },
    /// Check reachability from inside a task's network: `listen PORT SECONDS` accepts TCP
    /// connections for a while; `connect ADDR:PORT MS` exits 0 if a connection is made
    /// within MS milliseconds, 1 if not (to verify tenant isolation).
    #[command(hide = true)]
    NetProbe {
        /// `listen` or `connect`.
        mode: String,
        /// Port (listen) or address:port (connect).
        target: String,
        /// Seconds to listen, or milliseconds to try connecting.
        time: u64,
    },
}

#[derive(Args, Clone)]
struct DeviceArgs {
    /// Declare a simulated inventory instead of asking NVML, e.g. `8xH100` or
    /// `4xA100-80GB:mig,4xA100-80GB`.
    #[arg(long, value_name = "SPEC")]
    fake_gpus: Option<String>,
    /// NICs of the simulated inventory, e.g. `8x400` (count x Gbit/s).
    #[arg(long, value_name = "SPEC", requires = "fake_gpus")]
    fake_nics: Option<String>,
    /// Declare a node without GPUs (no NVML needed).
    #[arg(long, conflicts_with = "fake_gpus")]
    no_gpus: bool,
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IsolationArg {
    /// One cgroup v2 per task with CPU and memory limits; fails if that is not possible.
    Cgroup,
    /// One cgroup v2 per task; limits only where the controllers exist.
    CgroupBestEffort,
    /// No cgroup: a session per task, no limits (unprivileged use).
    Session,
}

#[derive(Args, Clone)]
struct RunnerArgs {
    /// Task state directory [default: /var/lib/sovra-agent as root, else
    /// /tmp/sovra-agent-<uid>].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Task output directory [default: <state-dir>/logs].
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// How tasks are isolated.
    #[arg(long, value_enum, default_value = "cgroup")]
    isolation: IsolationArg,
    /// The agent's cgroup v2 root [default: <cgroup2 mount>/sovra.slice].
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    /// Milliseconds between SIGTERM and SIGKILL on cancel and time limit.
    #[arg(long, default_value_t = 10_000)]
    kill_grace_ms: u64,
    /// Run each task in a network namespace on its tenant's network (root and iproute2).
    #[arg(long)]
    net_isolation: bool,
}

#[derive(Args)]
struct RunLocalArgs {
    /// A job file (TOML, see docs/jobs.md); without one, a CPU-only batch task.
    #[arg(long)]
    job: Option<PathBuf>,
    /// Job name (default: the job file's, or the program's).
    #[arg(long)]
    name: Option<String>,
    /// Job id (default: the current time in milliseconds).
    #[arg(long)]
    job_id: Option<u64>,
    /// CPUs per member (overrides the job file).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory per member in MiB (overrides the job file).
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Whole GPUs of a batch task (overrides the job file's workload).
    #[arg(long)]
    gpus: Option<u32>,
    /// Time limit in Slurm's syntax: minutes, M:S, H:M:S, D-H[:M[:S]] (overrides the job
    /// file).
    #[arg(long)]
    time_limit: Option<String>,
    #[command(flatten)]
    runner: RunnerArgs,
    #[command(flatten)]
    devices: DeviceArgs,
    /// Print one JSON line at the end instead of text.
    #[arg(long)]
    json: bool,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Inventory { devices, json } => inventory_cmd(&devices, json),
        Cmd::Run {
            server,
            certs,
            poll_ms,
            probe_listen,
            probe_interval_s,
            runner,
            devices,
        } => {
            let probe = probe_listen.map(|a| (a, std::time::Duration::from_secs(probe_interval_s)));
            run_joined(server, certs, poll_ms, probe, &runner, &devices)
        }
        Cmd::RunLocal(args) => run_local(args),
        Cmd::Resume {
            runner,
            devices,
            json,
        } => resume(&runner, &devices, json),
        Cmd::Supervise { dir } => match supervisor::supervise(&dir) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(anyhow::Error::new(e).context("supervise")),
        },
        Cmd::NetProbe { mode, target, time } => net_probe(&mode, &target, time),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sovra-agent: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn run_joined(
    servers: Vec<std::net::SocketAddr>,
    certs: PathBuf,
    poll_ms: u64,
    probe: Option<(std::net::SocketAddr, std::time::Duration)>,
    runner_args: &RunnerArgs,
    devices: &DeviceArgs,
) -> anyhow::Result<ExitCode> {
    let inventory = load_inventory(devices)?;
    let node = inventory.node.clone();
    let runner = Runner::open(runner_config(runner_args), inventory)?;
    let cfg = sovra_agent::shell::join::JoinConfig {
        servers,
        certs,
        node,
        wait: std::time::Duration::from_millis(poll_ms),
        probe_listen: probe.map(|p| p.0),
        probe_interval: probe.map_or(std::time::Duration::from_secs(5), |p| p.1),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        sovra_agent::shell::join::serve(cfg, runner, stop).await
    })?;
    eprintln!("sovra-agent: stopped; tasks keep running");
    Ok(ExitCode::SUCCESS)
}

fn node_name(devices: &DeviceArgs) -> String {
    devices
        .node_name
        .clone()
        .unwrap_or_else(inventory::hostname)
}

fn load_inventory(devices: &DeviceArgs) -> anyhow::Result<Inventory> {
    let source = match &devices.fake_gpus {
        Some(gpus) => InventorySource::Fake {
            gpus: gpus.clone(),
            nics: devices.fake_nics.clone(),
        },
        None if devices.no_gpus => InventorySource::NoGpus,
        None => InventorySource::Nvml,
    };
    Ok(inventory::detect(&source, &node_name(devices))?)
}

fn inventory_cmd(devices: &DeviceArgs, json: bool) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(devices)?;
    if json {
        println!("{}", inventory::to_json(&inv));
    } else {
        print!("{}", inventory::to_text(&inv));
    }
    Ok(ExitCode::SUCCESS)
}

fn runner_config(args: &RunnerArgs) -> RunnerConfig {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let mut config = RunnerConfig::new(state_dir);
    if let Some(log_dir) = &args.log_dir {
        config.log_dir = log_dir.clone();
    }
    let root = args
        .cgroup_root
        .clone()
        .unwrap_or_else(cgroup::default_root);
    config.isolation = match args.isolation {
        IsolationArg::Cgroup => Isolation::Cgroup {
            root,
            enforce: Enforce::Required,
        },
        IsolationArg::CgroupBestEffort => Isolation::Cgroup {
            root,
            enforce: Enforce::BestEffort,
        },
        IsolationArg::Session => Isolation::Session,
    };
    config.lifecycle = Config {
        kill_grace_ms: args.kill_grace_ms,
        ..Config::default()
    };
    config.net_isolation = args.net_isolation;
    config
}

/// `sovra-agent net-probe`: see [`Cmd::NetProbe`].
fn net_probe(mode: &str, target: &str, time: u64) -> anyhow::Result<ExitCode> {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};
    let time = time.min(600_000);
    match mode {
        "listen" => {
            let port: u16 = target.parse().context("port")?;
            let listener = TcpListener::bind(("0.0.0.0", port))?;
            listener.set_nonblocking(true)?;
            let end = Instant::now() + Duration::from_secs(time);
            while Instant::now() < end {
                match listener.accept() {
                    Ok((_stream, peer)) => println!("accepted {peer}"),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "connect" => {
            let addr: SocketAddr = target.parse().context("address")?;
            match TcpStream::connect_timeout(&addr, Duration::from_millis(time.max(1))) {
                Ok(_) => {
                    println!("connected to {addr}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("cannot connect to {addr}: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        other => anyhow::bail!("net-probe: unknown mode {other:?} (listen or connect)"),
    }
}

fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/var/lib/sovra-agent")
    } else {
        PathBuf::from(format!("/tmp/sovra-agent-{uid}"))
    }
}

fn job_spec(args: &RunLocalArgs) -> anyhow::Result<JobSpec> {
    let mut spec = match &args.job {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_job(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| path.display().to_string())?
        }
        None => {
            // The job file parser gives every field its default.
            let mut spec = parse_job("tenant = \"local\"\njurisdictions = [\"LOCAL\"]\n")
                .map_err(anyhow::Error::msg)?;
            spec.name = program_name(&args.command[0]);
            spec
        }
    };
    if let Some(name) = &args.name {
        spec.name = name.clone();
    }
    if let Some(cpus) = args.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            bail!("--cpus must be positive");
        }
        spec.cpu_milli = (cpus * 1000.0).round() as u64;
    }
    if let Some(mib) = args.memory_mib {
        spec.memory_mib = mib;
    }
    if let Some(n) = args.gpus {
        spec.workload = Workload::Batch {
            gpus: if n == 0 {
                GpuRequest::None
            } else {
                GpuRequest::Whole(n)
            },
        };
    }
    if let Some(limit) = &args.time_limit {
        spec.time_limit_ms = parse_slurm_time(limit).map_err(anyhow::Error::msg)?;
    }
    Ok(spec)
}

fn program_name(program: &str) -> String {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("job")
        .to_string()
}

fn run_local(args: RunLocalArgs) -> anyhow::Result<ExitCode> {
    let spec = job_spec(&args)?;
    let inv = load_inventory(&args.devices)?;
    let job = JobId(args.job_id.unwrap_or_else(unix_ms));
    let cwd = std::env::current_dir().context("current directory")?;
    let command = Command {
        argv: args.command.clone(),
        env: vec![],
        cwd: Some(cwd.to_string_lossy().into_owned()),
    };
    let assignments = place_locally(&spec, &inv, job, &command).map_err(anyhow::Error::msg)?;
    let mut runner = Runner::open(runner_config(&args.runner), inv)?;
    if !args.json {
        eprintln!("isolation: {}", runner.isolation_summary());
        if runner.inventory().simulated {
            eprintln!("gpus: SIMULATED ({})", runner.inventory().source);
        }
    }
    for a in assignments {
        let id = a.task;
        let answer = runner.assign(a);
        if answer != sovra_agent::core::Assigned::Accepted {
            bail!("task {id}: {answer:?}");
        }
    }
    wait_all(&mut runner, args.json, job)
}

fn resume(args: &RunnerArgs, devices: &DeviceArgs, json: bool) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(devices)?;
    let mut runner = Runner::open(runner_config(args), inv)?;
    if !json {
        eprintln!("isolation: {}", runner.isolation_summary());
        if runner.is_idle() {
            eprintln!("no tasks in the state directory");
        }
    }
    wait_all(&mut runner, json, JobId(0))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Drives the runner until every task has finished and been acknowledged; the first SIGINT
/// or SIGTERM cancels every task.
fn wait_all(runner: &mut Runner, json: bool, job: JobId) -> anyhow::Result<ExitCode> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_interrupt as *const () as libc::sighandler_t) };
    }
    let mut finished: Vec<(TaskId, Finished)> = Vec::new();
    let mut cancelled = false;
    loop {
        runner.poll();
        while let Some(report) = runner.poll_report() {
            show_report(runner, &report, json);
            if let Status::Finished(f) = report.status {
                finished.push((report.task, f));
                runner.report_acked(report.task);
            }
        }
        if runner.is_idle() {
            break;
        }
        if INTERRUPTED.load(Ordering::Relaxed) && !cancelled {
            cancelled = true;
            if !json {
                eprintln!("interrupted: cancelling every task");
            }
            for t in runner.tasks() {
                runner.cancel(t.task);
            }
        }
        thread::sleep(runner.poll_delay());
    }
    let ok = finished.iter().all(|(_, f)| f.outcome.is_success());
    if json {
        let tasks: Vec<_> = finished
            .iter()
            .map(|(task, f)| {
                let (stdout, stderr) = runner.log_paths(*task);
                json!({
                    "task": task.to_string(),
                    "outcome": f.outcome.slurm_state(),
                    "detail": f.outcome.to_string(),
                    "exit": f.exit.map(|e| e.to_string()),
                    "oom_kills": f.oom_kills,
                    "started_ms": f.started_ms,
                    "finished_ms": f.finished_ms,
                    "stdout": stdout,
                    "stderr": stderr,
                })
            })
            .collect();
        let line = json!({
            "job": job.0,
            "ok": ok,
            "isolation": runner.isolation_summary(),
            "simulated": runner.inventory().simulated,
            "tasks": tasks,
        });
        println!("{line}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TASK_FAILED)
    })
}

fn show_report(runner: &Runner, report: &Report, json: bool) {
    if json {
        return;
    }
    let (stdout, _) = runner.log_paths(report.task);
    match &report.status {
        Status::Running { started_ms } => {
            let age = unix_ms().saturating_sub(*started_ms);
            let pid = runner
                .tasks()
                .into_iter()
                .find(|t| t.task == report.task)
                .and_then(|t| t.pid)
                .map_or("?".to_string(), |p| p.to_string());
            eprintln!(
                "task {}: running (pid {pid}, started {age} ms ago), output in {}",
                report.task,
                stdout.display()
            );
        }
        Status::Finished(f) => {
            let took = f
                .started_ms
                .map(|s| format!(" after {} ms", f.finished_ms.saturating_sub(s)))
                .unwrap_or_default();
            eprintln!("task {}: {}{took}", report.task, f.outcome);
        }
    }
}
