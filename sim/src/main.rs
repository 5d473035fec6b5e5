//! `sovra-sim`: sovra's simulator (see `docs/sim.md`).
//!
//! - `sovra-sim openb --nodes FILE --pods FILE --policy P --seeds 42-51 [--json] [--curve]`
//!   replays the FGD paper's OpenB evaluation: for each policy, one line with the mean and
//!   standard deviation over the seeds of the unallocated GPU % at arrived = 100%, and with
//!   `--curve` the whole curve.
//! - `sovra-sim trace --trace FILE (--nodes FILE | --inventory FILE)` replays a trace (OpenB
//!   by its creation and deletion times, SWF, JSONL) by its own clock: waits, utilisation.
//! - `sovra-sim plan SCENARIO.toml` runs a capacity-planning scenario against its baseline.
//! - `sovra-sim replay LOG [--policy P]` re-runs a decision log (`--decisions FILE` of
//!   `trace` and `plan`) and reports every decision that differs.
//!
//! With `--json`, stdout carries one JSON object per line and nothing else. Exit codes: 0
//! success, 1 runtime error (printed on one line as `sovra-sim: <msg>`), 2 bad usage (clap),
//! 3 `replay` found decisions that differ. This is the only file of the crate that reads or
//! writes files, draws the progress bar or reads a clock.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use sovra_sim::decisions::{self, DecisionKey};
use sovra_sim::engine::{Decision, Observer, SimConfig};
use sovra_sim::loader::{parse_nodes, parse_pods};
use sovra_sim::openb::{target_workload, Experiment, Policy, SeedRun, BUCKETS, HEADLINE_BUCKET};
use sovra_sim::plot;
use sovra_sim::policy::SimPolicy;
use sovra_sim::run::{self, RunInput, RunSummary};
use sovra_sim::scenario::{self, ClusterFile, ClusterSource, SEED_MAX};
use sovra_sim::stats::mean_sd;
use sovra_sim::swf::{SwfMapping, SwfTenant};
use sovra_sim::trace::{self, Format};

/// Exit code of `replay` when some decision differs.
const EXIT_DIFFER: u8 = 3;

/// `print!` that ends the process quietly when stdout is closed (`sovra-sim … | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = write!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("sovra-sim: cannot write the output: {e}");
            std::process::exit(1);
        }
    }};
}

/// `println!`, as [`out!`].
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => {{ out!($($arg)*); out!("\n"); }};
}

/// sovra's deterministic simulator.
#[derive(Debug, Parser)]
#[command(name = "sovra-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The FGD paper's OpenB evaluation: arrivals only, workload tuned to 1.3x GPU capacity.
    Openb(OpenbArgs),
    /// Replay a trace by its own clock (OpenB creation/deletion times, SWF, JSONL): waits and
    /// utilisation. A different experiment from `openb`'s arrivals-only protocol.
    Trace(TraceArgs),
    /// Run a capacity-planning scenario (TOML) and its baseline on the same seed.
    Plan(PlanArgs),
    /// Re-run a decision log and report every decision that differs (exit 3 if any).
    Replay(ReplayArgs),
}

/// Options every time-driven command shares.
#[derive(Debug, clap::Args)]
struct Output {
    /// One JSON object per line on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Write SVG plots (utilisation.svg, wait-cdf.svg, comparison.svg) into this directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
    /// Write every placement decision, and the inputs to replay them, to this JSONL file.
    #[arg(long, value_name = "FILE")]
    decisions: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct TraceArgs {
    /// The trace: an OpenB pod list (.csv), an SWF log (.swf) or sovra JSONL jobs (.jsonl).
    #[arg(long)]
    trace: PathBuf,
    /// The trace's format: openb, swf or jsonl (default: from the file's extension).
    #[arg(long, value_parser = parse_format)]
    format: Option<Format>,
    /// The cluster: an OpenB node list CSV (one site, jurisdiction CN).
    #[arg(
        long,
        conflicts_with = "inventory",
        required_unless_present = "inventory"
    )]
    nodes: Option<PathBuf>,
    /// The cluster: a sovra inventory (TOML).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Policies, comma-separated (default: best-fit, what sovrad runs).
    #[arg(long, value_delimiter = ',', default_value = "best-fit", value_parser = parse_policy)]
    policy: Vec<SimPolicy>,
    /// Seed: the log index the run starts at; every placement seed derives from it.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=SEED_MAX))]
    seed: u64,
    /// Multiply submit times by this (durations stay): below 1 compresses the arrivals and
    /// raises the load.
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    arrival_scale: f64,
    /// SWF: processors per GPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    procs_per_gpu: u32,
    /// SWF: most GPUs of one task; larger jobs become gangs of members this size.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=32))]
    gpus_per_node: u32,
    /// SWF: the field tenants come from: user, group, queue or partition.
    #[arg(long, default_value = "user", value_parser = parse_tenant_from)]
    tenant_from: SwfTenant,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The scenario file (TOML; see docs/sim.md and sim/examples/).
    scenario: PathBuf,
    /// Policies, comma-separated: baseline and scenario run once per policy (default: the
    /// scenario's `policy`, else best-fit).
    #[arg(long, value_delimiter = ',', value_parser = parse_policy)]
    policy: Vec<SimPolicy>,
    /// Seed (default: the scenario's `seed`, else 0).
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=SEED_MAX))]
    seed: Option<u64>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A decision log written by `--decisions`.
    log: PathBuf,
    /// Re-run with this policy instead of the logged one: a counterfactual what-if.
    #[arg(long, value_parser = parse_policy)]
    policy: Option<SimPolicy>,
    /// One JSON object per line on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct OpenbArgs {
    /// Node list CSV (`openb_node_list_gpu_node.csv`).
    #[arg(long)]
    nodes: PathBuf,
    /// Pod list CSV (`openb_pod_list_<trace>.csv`).
    #[arg(long)]
    pods: PathBuf,
    /// Policies, comma-separated: random, dotprod, clustering, packing, bestfit, fgd, default.
    #[arg(long, value_delimiter = ',', required = true)]
    policy: Vec<String>,
    /// Seeds: `42-51`, `42,43` or `42`.
    #[arg(long, default_value = "42-51")]
    seeds: String,
    /// One JSON object per policy on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Include the full curves (every arrived-% bucket, 0..=130).
    #[arg(long)]
    curve: bool,
    /// Runs at once (seeds run in parallel; results do not depend on it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// Trace label in the output (default: from the pod file name).
    #[arg(long)]
    trace: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Openb(args) => openb(&args).map(|()| ExitCode::SUCCESS),
        Command::Trace(args) => trace_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => plan(&args).map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => replay(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sovra-sim: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn parse_seeds(text: &str) -> anyhow::Result<Vec<i64>> {
    let bad = || anyhow!("invalid --seeds {text:?}: expected e.g. 42-51, 42,43 or 42");
    let mut seeds = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-').filter(|(a, _)| !a.is_empty()) {
            let (a, b): (i64, i64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a || b - a >= 10_000 {
                return Err(bad());
            }
            seeds.extend(a..=b);
        } else {
            seeds.push(part.parse().map_err(|_| bad())?);
        }
    }
    if seeds.is_empty() {
        return Err(bad());
    }
    Ok(seeds)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `openb_pod_list_default.csv` → `default`.
fn trace_name(pods: &Path) -> String {
    let stem = pods.file_stem().and_then(|s| s.to_str()).unwrap_or("trace");
    stem.strip_prefix("openb_pod_list_")
        .unwrap_or(stem)
        .to_string()
}

fn openb(args: &OpenbArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let policies = args
        .policy
        .iter()
        .map(|p| {
            Policy::parse(p).ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                anyhow!("unknown policy {p:?}: expected one of {}", names.join(", "))
            })
        })
        .collect::<anyhow::Result<Vec<Policy>>>()?;
    let seeds = parse_seeds(&args.seeds)?;
    let nodes = parse_nodes(&args.nodes.display().to_string(), &read(&args.nodes)?)?;
    let pods = parse_pods(&args.pods.display().to_string(), &read(&args.pods)?)?;
    let experiment = Experiment::new(nodes, pods).map_err(|e| anyhow!("{e}"))?;
    let trace = args.trace.clone().unwrap_or_else(|| trace_name(&args.pods));
    for policy in policies {
        let policy_started = Instant::now();
        let runs = run_seeds(&experiment, policy, &seeds, args.jobs as usize)?;
        let wall_s = policy_started.elapsed().as_secs_f64();
        let line = summary(&trace, policy, &runs, wall_s, args.curve);
        if args.json {
            outln!("{line}");
        } else {
            print_table(&line);
        }
    }
    if !args.json {
        outln!("total wall {:.2} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn run_seeds(
    experiment: &Experiment,
    policy: Policy,
    seeds: &[i64],
    jobs: usize,
) -> anyhow::Result<Vec<SeedRun>> {
    let mut runs: Vec<Option<SeedRun>> = vec![None; seeds.len()];
    let chunk = seeds.len().div_ceil(jobs.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&s| experiment.run(policy, s))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut i = 0;
        for h in handles {
            let part = h.join().map_err(|_| anyhow!("a run panicked"))?;
            for r in part {
                runs[i] = Some(r);
                i += 1;
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let runs: Vec<SeedRun> = runs
        .into_iter()
        .map(|r| r.expect("every seed ran"))
        .collect();
    if let Some(r) = runs.iter().find(|r| r.unallocated_pct_at_100.is_nan()) {
        bail!(
            "seed {}: no sample near arrived = {HEADLINE_BUCKET}% (the workload offers {:.0}%)",
            r.seed,
            100.0 * r.arrived_milli as f64 / experiment.capacity_milli() as f64
        );
    }
    Ok(runs)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn summary(trace: &str, policy: Policy, runs: &[SeedRun], wall_s: f64, curve: bool) -> Value {
    let unalloc: Vec<f64> = runs.iter().map(|r| r.unallocated_pct_at_100).collect();
    let (mean, sd) = mean_sd(&unalloc);
    let mut line = json!({
        "trace": trace,
        "policy": policy.name(),
        "seeds": runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "unallocated_pct_at_100": round(mean, 4),
        "unallocated_pct_sd": round(sd, 4),
        "unallocated_pct_per_seed": unalloc.iter().map(|&u| round(u, 2)).collect::<Vec<_>>(),
        "pods": runs.iter().map(|r| r.pods).collect::<Vec<_>>(),
        "placed": runs.iter().map(|r| r.placed).collect::<Vec<_>>(),
        "decisions_hash": runs.iter().map(|r| format!("{:016x}", r.decisions_hash))
            .collect::<Vec<_>>(),
        "wall_s": round(wall_s, 3),
    });
    if curve {
        let points: Vec<Value> = (0..BUCKETS)
            .map(|k| {
                let alloc: Vec<f64> = runs.iter().filter_map(|r| r.alloc_pct[k]).collect();
                let frag: Vec<f64> = runs.iter().filter_map(|r| r.frag_pct[k]).collect();
                let unalloc: Vec<f64> = alloc.iter().map(|a| 100.0 - a).collect();
                json!({
                    "arrived_pct": k,
                    "unallocated_pct_mean": mean_of(&unalloc),
                    "unallocated_pct_median": median(&unalloc).map(|m| round(m, 4)),
                    "frag_pct_mean": mean_of(&frag),
                })
            })
            .collect();
        line["curve"] = Value::Array(points);
    }
    line
}

fn mean_of(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| round(mean_sd(values).0, 4))
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn print_table(line: &Value) {
    outln!(
        "{:<12} {:<10} unallocated@100 {:>6.2} ± {:<5.2} ({} seeds, {:.2} s)",
        line["trace"].as_str().unwrap_or(""),
        line["policy"].as_str().unwrap_or(""),
        line["unallocated_pct_at_100"].as_f64().unwrap_or(f64::NAN),
        line["unallocated_pct_sd"].as_f64().unwrap_or(f64::NAN),
        line["seeds"].as_array().map_or(0, |s| s.len()),
        line["wall_s"].as_f64().unwrap_or(f64::NAN),
    );
    if let Some(points) = line["curve"].as_array() {
        for p in points {
            if let Some(u) = p["unallocated_pct_mean"].as_f64() {
                outln!(
                    "  arrived {:>3}%  unallocated {:>6.2}%",
                    p["arrived_pct"],
                    u
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The time-driven commands.

/// A progress bar on stderr, hidden with `--quiet` or when stderr is not a terminal.
fn progress_bar(quiet: bool, jobs: u64) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(jobs);
    let style = ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} jobs ({eta})")
        .expect("a valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// A decision log being written.
struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    runs: usize,
}

impl LogWriter {
    fn create(path: &Path) -> anyhow::Result<LogWriter> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut log = LogWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            runs: 0,
        };
        log.line(&decisions::log_header())?;
        Ok(log)
    }

    fn line(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.out, "{line}")
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Watches a run: the progress bar, and the decision log.
struct Watch<'a> {
    bar: &'a ProgressBar,
    done: u64,
    arrived: usize,
    log: Option<(&'a mut LogWriter, usize, &'a RunInput)>,
    keys: Option<(&'a sovra_fabric::Topology, Vec<(usize, DecisionKey)>)>,
    error: Option<anyhow::Error>,
}

impl Observer for Watch<'_> {
    fn wants_decisions(&self) -> bool {
        self.log.is_some() || self.keys.is_some()
    }

    fn on_decision(&mut self, decision: Decision) {
        if let Some((topology, keys)) = &mut self.keys {
            keys.push((decision.input, DecisionKey::of(&decision, topology)));
        }
        if let Some((log, run, input)) = &mut self.log {
            if self.error.is_none() {
                let line = decisions::decision_line(*run, &decision, input);
                if let Err(e) = log.line(&line) {
                    self.error = Some(e);
                }
            }
        }
    }

    fn on_progress(&mut self, arrived: usize, _jobs: usize) {
        if arrived != self.arrived {
            self.arrived = arrived;
            self.bar.set_position(self.done + arrived as u64);
        }
    }
}

/// Runs `inputs` in order, logging decisions to `log`; returns their summaries.
fn run_all(
    inputs: &[RunInput],
    quiet: bool,
    mut log: Option<&mut LogWriter>,
) -> anyhow::Result<Vec<RunSummary>> {
    let total: u64 = inputs.iter().map(|i| i.jobs.len() as u64).sum();
    let bar = progress_bar(quiet, total);
    let mut done = 0u64;
    let mut summaries = Vec::new();
    for input in inputs {
        bar.set_message(format!("{} ({})", input.label, input.policy_name));
        let run = match log.as_deref_mut() {
            None => None,
            Some(log) => {
                let run = log.runs;
                log.runs += 1;
                for line in decisions::input_lines(run, input) {
                    log.line(&line)?;
                }
                Some((log, run))
            }
        };
        let mut watch = Watch {
            bar: &bar,
            done,
            arrived: 0,
            log: run.map(|(log, run)| (log, run, input)),
            keys: None,
            error: None,
        };
        let report = input.run(&mut watch);
        if let Some(e) = watch.error {
            return Err(e);
        }
        done += input.jobs.len() as u64;
        summaries.push(run::summarize(input, &report));
    }
    bar.finish_and_clear();
    Ok(summaries)
}

fn write_svgs(dir: &Path, title: &str, runs: &[&RunSummary]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let plots = [
        (
            "utilisation.svg",
            plot::utilisation_svg(&format!("{title}: GPU utilisation"), runs),
        ),
        (
            "wait-cdf.svg",
            plot::wait_cdf_svg(&format!("{title}: wait from submit to start"), runs),
        ),
        ("comparison.svg", plot::comparison_svg(title, runs)),
    ];
    let mut written = Vec::new();
    for (name, svg) in plots {
        let svg = svg.map_err(|e| anyhow!("{name}: {e}"))?;
        let path = dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn parse_policy(name: &str) -> Result<SimPolicy, String> {
    SimPolicy::parse(name.trim()).ok_or_else(|| {
        format!(
            "unknown policy {name:?}: expected one of {}",
            SimPolicy::names()
        )
    })
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1e6 => Ok(x),
        _ => Err(format!(
            "{text:?} is not a positive factor (at most 1000000)"
        )),
    }
}

fn parse_format(name: &str) -> Result<Format, String> {
    Format::parse(name)
        .ok_or_else(|| format!("unknown format {name:?}: expected openb, swf or jsonl"))
}

fn parse_tenant_from(name: &str) -> Result<SwfTenant, String> {
    SwfTenant::parse(name)
        .ok_or_else(|| format!("unknown field {name:?}: expected user, group, queue or partition"))
}

fn format_of(path: &Path, given: Option<Format>) -> anyhow::Result<Format> {
    match given {
        Some(f) => Ok(f),
        None => Format::of_file(&path.display().to_string()).ok_or_else(|| {
            anyhow!(
                "{}: cannot tell the format from the extension: give --format openb, swf or jsonl",
                path.display()
            )
        }),
    }
}

fn trace_command(args: &TraceArgs) -> anyhow::Result<()> {
    let policies = &args.policy;
    let seed = args.seed;
    let format = format_of(&args.trace, args.format)?;
    let swf = SwfMapping {
        procs_per_gpu: args.procs_per_gpu,
        gpus_per_node: args.gpus_per_node,
        tenant: args.tenant_from,
    };
    let topology = match (&args.nodes, &args.inventory) {
        (Some(nodes), _) => {
            let rows = parse_nodes(&nodes.display().to_string(), &read(nodes)?)?;
            sovra_sim::openb::topology_of(&rows).map_err(|e| anyhow!("{}: {e}", nodes.display()))?
        }
        (None, Some(inventory)) => sovra_fabric::inventory::load_inventory(&read(inventory)?)
            .map_err(|e| anyhow!("{}: {e}", inventory.display()))?,
        (None, None) => bail!("give the cluster: --nodes FILE or --inventory FILE"),
    };
    let trace_file = args.trace.display().to_string();
    let mut trace = trace::parse_trace(format, &trace_file, &read(&args.trace)?, &swf)?;
    if args.arrival_scale != 1.0 {
        trace.scale_arrivals(args.arrival_scale);
    }
    let jurisdictions = topology.jurisdictions().to_vec();
    let jobs: Vec<_> = trace
        .jobs
        .iter()
        .map(|j| {
            let allowed = match &j.jurisdictions {
                Some(own) => own.clone(),
                None => jurisdictions.clone(),
            };
            sovra_sim::engine::JobArrival {
                spec: j.spec(allowed),
                at_ms: j.submit_ms,
                duration_ms: j.duration_ms,
            }
        })
        .collect();
    let models: Vec<String> = topology.models().iter().map(|m| m.name.clone()).collect();
    let specs: Vec<_> = jobs.iter().map(|j| j.spec.clone()).collect();
    let target = target_workload(&specs, &models);
    let config = SimConfig {
        first_index: seed,
        bucket_ms: run::bucket_ms_for(&jobs),
        initially_down: Vec::new(),
    };
    let inputs: Vec<RunInput> = policies
        .iter()
        .map(|p| RunInput {
            label: "trace".into(),
            policy_name: p.name().into(),
            topology: topology.clone(),
            policy: p.config(&target),
            jobs: jobs.clone(),
            events: Vec::new(),
            config: config.clone(),
        })
        .collect();
    let mut log = args
        .output
        .decisions
        .as_deref()
        .map(LogWriter::create)
        .transpose()?;
    let summaries = run_all(&inputs, args.output.quiet, log.as_mut())?;
    if let Some(log) = log {
        log.finish()?;
    }
    let name = trace_name(&args.trace);
    let experiment = match format {
        Format::Openb => "openb-time",
        Format::Swf | Format::Jsonl => "trace-time",
    };
    for s in &summaries {
        let mut line = s.to_json();
        line["experiment"] = json!(experiment);
        line["trace"] = json!(name);
        line["format"] = json!(format.name());
        line["skipped"] = json!(trace.skipped);
        if args.output.json {
            outln!("{line}");
        }
    }
    let title = format!(
        "{name}: time-driven replay of a {} trace{}, seed {seed}, {} gpus",
        format.name(),
        if format == Format::Openb {
            " by its creation/deletion times (not the FGD paper's arrivals-only protocol)"
        } else {
            ""
        },
        topology.gpus().len()
    );
    if !args.output.json {
        out!("{}", run::trace_table(&title, &summaries));
        if trace.skipped > 0 {
            outln!("  ({} rows not runnable, left out)", trace.skipped);
        }
    }
    if let Some(dir) = &args.output.svg {
        let refs: Vec<&RunSummary> = summaries.iter().collect();
        let written = write_svgs(dir, &name, &refs)?;
        if !args.output.json {
            for p in written {
                outln!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}

/// A path in a scenario, relative to the scenario's directory.
fn beside(scenario: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    scenario
        .parent()
        .map_or_else(|| p.to_path_buf(), |d| d.join(p))
}

fn plan(args: &PlanArgs) -> anyhow::Result<()> {
    let file = args.scenario.display().to_string();
    let mut sc = scenario::parse_scenario(&file, &read(&args.scenario)?)?;
    if let Some(seed) = args.seed {
        sc.seed = seed;
    }
    let policies = if args.policy.is_empty() {
        vec![sc.policy.unwrap_or(SimPolicy::BestFit)]
    } else {
        args.policy.clone()
    };
    let cluster_file = match &sc.cluster {
        ClusterSource::Sites(_) => None,
        ClusterSource::OpenbNodes { path, .. } | ClusterSource::Inventory { path } => {
            let p = beside(&args.scenario, path);
            Some(ClusterFile {
                file: p.display().to_string(),
                text: read(&p)?,
            })
        }
    };
    let base = scenario::base_cluster(&sc, cluster_file.as_ref())?;
    let trace_path = beside(&args.scenario, &sc.trace);
    let format = match sc.format {
        Some(f) => f,
        None => format_of(&trace_path, None)?,
    };
    let trace_file = trace_path.display().to_string();
    let mut trace = trace::parse_trace(format, &trace_file, &read(&trace_path)?, &sc.swf)?;
    if sc.arrival_scale != 1.0 {
        trace.scale_arrivals(sc.arrival_scale);
    }
    let prepared = scenario::prepare(&sc, base, &trace)?;
    let config = SimConfig {
        first_index: sc.seed,
        bucket_ms: run::bucket_ms_for(&prepared.baseline_jobs),
        initially_down: prepared.initially_down.clone(),
    };
    let mut inputs = Vec::new();
    for p in &policies {
        let scenario_policy = prepared.scenario_policy.unwrap_or(*p);
        inputs.push(RunInput {
            label: "baseline".into(),
            policy_name: p.name().into(),
            topology: prepared.topology.clone(),
            policy: p.config(&prepared.target),
            jobs: prepared.baseline_jobs.clone(),
            events: Vec::new(),
            config: config.clone(),
        });
        inputs.push(RunInput {
            label: "scenario".into(),
            policy_name: scenario_policy.name().into(),
            topology: prepared.topology.clone(),
            policy: scenario_policy.config(&prepared.target),
            jobs: prepared.scenario_jobs.clone(),
            events: prepared.events.clone(),
            config: config.clone(),
        });
    }
    let mut log = args
        .output
        .decisions
        .as_deref()
        .map(LogWriter::create)
        .transpose()?;
    let summaries = run_all(&inputs, args.output.quiet, log.as_mut())?;
    if let Some(log) = log {
        log.finish()?;
    }
    for pair in summaries.chunks(2) {
        if args.output.json {
            for s in pair {
                let mut line = s.to_json();
                line["experiment"] = json!("plan");
                line["scenario"] = json!(sc.name);
                outln!("{line}");
            }
        } else {
            out!("{}", run::plan_table(&sc.name, &pair[0], &pair[1]));
            outln!();
        }
    }
    if let Some(dir) = &args.output.svg {
        let refs: Vec<&RunSummary> = summaries.iter().collect();
        let written = write_svgs(dir, &sc.name, &refs)?;
        if !args.output.json {
            for p in written {
                outln!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let file = args.log.display().to_string();
    let runs = decisions::parse_log(&file, &read(&args.log)?)?;
    let policy = args.policy;
    let total: u64 = runs.iter().map(|r| r.input.jobs.len() as u64).sum();
    let bar = progress_bar(args.quiet, total);
    let mut done = 0u64;
    let mut differ = 0usize;
    for (i, logged) in runs.iter().enumerate() {
        let mut input = logged.input.clone();
        if let Some(p) = policy {
            let models: Vec<String> = input
                .topology
                .models()
                .iter()
                .map(|m| m.name.clone())
                .collect();
            let specs: Vec<_> = input.jobs.iter().map(|j| j.spec.clone()).collect();
            input.policy = p.config(&target_workload(&specs, &models));
            input.policy_name = p.name().into();
        }
        bar.set_message(format!("{} ({})", input.label, input.policy_name));
        let mut watch = Watch {
            bar: &bar,
            done,
            arrived: 0,
            log: None,
            keys: Some((&input.topology, Vec::new())),
            error: None,
        };
        input.run(&mut watch);
        done += input.jobs.len() as u64;
        let replayed = watch.keys.take().expect("collected").1;
        let diffs = decisions::diff(&logged.decisions, &replayed);
        differ += diffs.len();
        let name = |input_idx: usize| input.jobs[input_idx].spec.name.clone();
        for d in &diffs {
            if args.json {
                let line = json!({
                    "kind": "diff",
                    "run": i,
                    "label": input.label,
                    "input": d.input,
                    "name": name(d.input),
                    "decision": d.nth,
                    "log_line": d.line,
                    "logged": d.logged.as_ref().map(DecisionKey::to_json),
                    "replayed": d.replayed.as_ref().map(DecisionKey::to_json),
                });
                bar.suspend(|| outln!("{line}"));
            } else {
                let show = |k: &Option<DecisionKey>| {
                    k.as_ref()
                        .map_or_else(|| "no decision".to_string(), |k| k.to_string())
                };
                bar.suspend(|| {
                    outln!(
                        "run {i} ({}): job {} (input {}) decision {}{}: logged {}; replayed {}",
                        input.label,
                        name(d.input),
                        d.input,
                        d.nth,
                        d.line
                            .map_or_else(String::new, |l| format!(" (log line {l})")),
                        show(&d.logged),
                        show(&d.replayed),
                    )
                });
            }
        }
        let policies = if input.policy_name == logged.input.policy_name {
            input.policy_name.clone()
        } else {
            format!("{} -> {}", logged.input.policy_name, input.policy_name)
        };
        if args.json {
            let line = json!({
                "kind": "summary",
                "run": i,
                "label": input.label,
                "policy": policies,
                "logged": logged.decisions.len(),
                "replayed": replayed.len(),
                "differ": diffs.len(),
            });
            bar.suspend(|| outln!("{line}"));
        } else {
            bar.suspend(|| {
                outln!(
                    "run {i} ({}, {policies}): {} decisions logged, {} replayed, {} differ",
                    input.label,
                    logged.decisions.len(),
                    replayed.len(),
                    diffs.len()
                )
            });
        }
    }
    bar.finish_and_clear();
    Ok(if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DIFFER)
    })
}
