//! `sovra-bench sim`: the simulator's speed.
//!
//! - `event_core`: the discrete-event core alone (`sovra_sim::engine::EventQueue`), in the
//!   classic "hold" model: a fixed population of pending events, each pop schedules one
//!   event a pseudo-random delay later. Reports events per second.
//! - `openb_fgd_1seed`: one run of the FGD paper's OpenB evaluation with `fgd` on the
//!   `default` trace, seed 42, end to end (parsing the CSVs, building the target workload,
//!   10,866 placements with metrics after each). Reports wall seconds. Needs the traces in
//!   `--trace-dir`; skipped with a message when they are absent.
//! - `openb_default_1seed`: the same with sovra's `default` policy.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use sovra_scheduler::core::rng::mix;
use sovra_sim::engine::EventQueue;
use sovra_sim::loader::{parse_nodes, parse_pods};
use sovra_sim::openb::{Experiment, Policy};

/// The OpenB files the openb cases need.
pub const NODES_FILE: &str = "openb_node_list_gpu_node.csv";
/// The trace of the openb cases.
pub const PODS_FILE: &str = "openb_pod_list_default.csv";
/// Pending events in the hold model.
const HOLD_PENDING: u64 = 10_000;

/// Pops per second of the event core over `events` events (best of `rounds`).
pub fn event_core(events: u64, rounds: u32) -> Value {
    let mut best = 0.0f64;
    let mut checksum = 0u64;
    for round in 0..rounds.max(1) {
        let mut queue: EventQueue<u64> = EventQueue::default();
        for i in 0..HOLD_PENDING {
            queue.push(mix(i ^ round as u64) % 1_000_000, i);
        }
        let start = Instant::now();
        for _ in 0..events {
            let (t, e) = queue.pop().expect("the hold model keeps events pending");
            let next = mix(e ^ t);
            queue.push(t + next % 1_000_000, next);
            checksum = checksum.wrapping_add(t);
        }
        let rate = events as f64 / start.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    json!({
        "bench": "sim",
        "case": "event_core",
        "events": events,
        "pending": HOLD_PENDING,
        "events_per_s": best.round(),
        "checksum": format!("{checksum:016x}"),
    })
}

/// One OpenB run on the default trace, end to end; `None` when the trace is absent.
pub fn openb_1seed(trace_dir: &Path, policy: Policy) -> anyhow::Result<Option<Value>> {
    let (nodes_path, pods_path) = (trace_dir.join(NODES_FILE), trace_dir.join(PODS_FILE));
    if !nodes_path.is_file() || !pods_path.is_file() {
        return Ok(None);
    }
    let start = Instant::now();
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let nodes = parse_nodes(&nodes_path.display().to_string(), &read(&nodes_path)?)?;
    let pods = parse_pods(&pods_path.display().to_string(), &read(&pods_path)?)?;
    let experiment = Experiment::new(nodes, pods).map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = experiment.run(policy, 42);
    let wall_s = start.elapsed().as_secs_f64();
    Ok(Some(json!({
        "bench": "sim",
        "case": format!("openb_{}_1seed", policy.name()),
        "trace": "default",
        "seed": 42,
        "pods": run.pods,
        "placed": run.placed,
        "unallocated_pct_at_100": (run.unallocated_pct_at_100 * 100.0).round() / 100.0,
        "wall_s": (wall_s * 1_000.0).round() / 1_000.0,
    })))
}
