//! `sovra-sim`: sovra's simulator.
//!
//! `sovra-sim openb --nodes FILE --pods FILE --policy P --seeds 42-51 [--json] [--curve]`
//! replays the FGD paper's OpenB evaluation (see `docs/sim.md`): for each policy, one line
//! with the mean and standard deviation over the seeds of the unallocated GPU % at arrived =
//! 100%, and with `--curve` the whole curve.
//!
//! With `--json`, stdout carries one JSON object per policy and nothing else. Exit codes: 0
//! success, 1 runtime error (printed on one line as `sovra-sim: <msg>`), 2 bad usage (clap).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use sovra_sim::loader::{parse_nodes, parse_pods};
use sovra_sim::openb::{Experiment, Policy, SeedRun, BUCKETS, HEADLINE_BUCKET};
use sovra_sim::stats::mean_sd;

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
        Command::Openb(args) => openb(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
            println!("{line}");
        } else {
            print_table(&line);
        }
    }
    if !args.json {
        println!("total wall {:.2} s", started.elapsed().as_secs_f64());
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
    println!(
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
                println!(
                    "  arrived {:>3}%  unallocated {:>6.2}%",
                    p["arrived_pct"], u
                );
            }
        }
    }
}
