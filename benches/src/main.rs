//! `sovra-bench`: sovra's benchmark harness.
//!
//! `sovra-bench placement --json` times the placement pipeline on the synthetic four-site
//! inventory (see `benches/README.md`). With `--json`, stdout carries one JSON object per
//! result and nothing else; progress and warnings go to stderr. Without it, stdout is a table.
//!
//! Exit codes: 0 success, 1 runtime error (printed on one line as `sovra-bench: <msg>`),
//! 2 bad usage (from clap).

mod cluster;
mod machine;
mod placement;
mod stats;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::placement::{Case, Measurement};

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
        let bad = [
            vec!["sovra-bench", "placement", "--nodes", "1000"],
            vec!["sovra-bench", "placement", "--occupancy", "0.5,1.5"],
            vec!["sovra-bench", "placement", "--samples", "0"],
            vec!["sovra-bench", "placement", "--cases", "gang_65"],
        ];
        for args in bad {
            // Exit code 2 is bad usage.
            assert_eq!(parse(&args), Err(2), "{args:?}");
        }
    }

    #[test]
    fn cli_defaults() {
        let Cli {
            command: Command::Placement(args),
        } = Cli::try_parse_from(["sovra-bench", "placement"]).unwrap();
        assert_eq!(args.occupancy, vec![0.5, 0.9]);
        assert_eq!(args.cases, Case::ALL.to_vec());
        assert_eq!((args.samples, args.nodes), (2000, 4096));
    }
}
