//! One time-driven run, its inputs and its summary: what `sovra-sim trace` and `plan` print.
//!
//! A [`RunInput`] is everything a run needs (and everything a decision log records): the
//! topology, the policy, the jobs, the node events and the [`SimConfig`]. [`summarize`]
//! turns the engine's [`Report`] into a [`RunSummary`]: job counts, wait-time quantiles
//! (nearest rank) overall and per tenant, utilisation, and the unallocated share while jobs
//! waited. [`RunSummary::to_json`] is the `--json` line; [`plan_table`] and [`trace_table`]
//! are the human tables. Everything is a pure function of the report: the same seed gives
//! the same JSON, byte for byte (no wall-clock time in it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};
use sovra_fabric::Topology;
use sovra_scheduler::core::placement::PolicyConfig;

use crate::engine::{ClusterSim, Fate, JobArrival, NodeEvent, Observer, Report, SimConfig};

/// Buckets a utilisation series aims at over the arrivals' span.
pub const SERIES_BUCKETS_TARGET: u64 = 256;

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunInput {
    /// What the run is (`baseline`, `scenario`, `trace`).
    pub label: String,
    /// The policy's name.
    pub policy_name: String,
    /// The cluster.
    pub topology: Topology,
    /// The policy.
    pub policy: PolicyConfig,
    /// The jobs, by input index.
    pub jobs: Vec<JobArrival>,
    /// Node events.
    pub events: Vec<NodeEvent>,
    /// Seed, series width, nodes down at the start.
    pub config: SimConfig,
}

impl RunInput {
    /// Runs it.
    pub fn run(&self, observer: &mut dyn Observer) -> Report {
        ClusterSim::with_events(
            self.topology.clone(),
            self.policy.clone(),
            self.jobs.clone(),
            &self.events,
            self.config.clone(),
        )
        .run_observed(observer)
    }

    /// GPUs installed at the start: the topology's, less those of nodes added later.
    pub fn gpus(&self) -> u64 {
        let later: u64 = self
            .config
            .initially_down
            .iter()
            .map(|&n| self.topology.node(n).gpu_count() as u64)
            .sum();
        self.topology.gpus().len() as u64 - later
    }
}

/// A bucket width giving about [`SERIES_BUCKETS_TARGET`] buckets over the arrivals: whole
/// minutes, at least one.
pub fn bucket_ms_for(jobs: &[JobArrival]) -> u64 {
    let first = jobs.iter().map(|j| j.at_ms).min().unwrap_or(0);
    let last = jobs.iter().map(|j| j.at_ms).max().unwrap_or(0);
    let width = (last - first).div_ceil(SERIES_BUCKETS_TARGET);
    width.div_ceil(60_000).max(1) * 60_000
}

/// Wait-time quantiles of the jobs that started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaitStats {
    /// Median.
    pub p50_ms: u64,
    /// 95th percentile.
    pub p95_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Longest.
    pub max_ms: u64,
    /// Mean.
    pub mean_ms: f64,
}

impl WaitStats {
    /// Quantiles of `sorted` (ascending); `None` when empty.
    pub fn of(sorted: &[u64]) -> Option<WaitStats> {
        if sorted.is_empty() {
            return None;
        }
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "waits sorted");
        let sum: u128 = sorted.iter().map(|&w| w as u128).sum();
        Some(WaitStats {
            p50_ms: quantile(sorted, 0.50),
            p95_ms: quantile(sorted, 0.95),
            p99_ms: quantile(sorted, 0.99),
            max_ms: *sorted.last().expect("not empty"),
            mean_ms: sum as f64 / sorted.len() as f64,
        })
    }

    fn to_json(self) -> Value {
        json!({
            "p50": seconds(self.p50_ms),
            "p95": seconds(self.p95_ms),
            "p99": seconds(self.p99_ms),
            "max": seconds(self.max_ms),
            "mean": round(self.mean_ms / 1_000.0, 3),
        })
    }
}

/// The `q`-quantile by nearest rank: the smallest value with at least `q·n` values at or
/// below it.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    assert!(!sorted.is_empty());
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Counts and waits of one tenant (or of every job).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantSummary {
    /// Tenant (`*` for every job).
    pub tenant: String,
    /// Jobs in the input.
    pub jobs: u64,
    /// Jobs that started at least once.
    pub started: u64,
    /// Jobs that ran to completion.
    pub completed: u64,
    /// Jobs the state machine refused at submit.
    pub rejected: u64,
    /// Jobs accepted but never started.
    pub never_started: u64,
    /// Jobs lost to repeated node failures.
    pub failed: u64,
    /// Requeues after node failures.
    pub requeues: u64,
    /// Waits from submit to first start, ascending.
    pub waits_ms: Vec<u64>,
    /// Jobs still waiting at the end, by the reason they waited for last.
    pub pending_reasons: BTreeMap<String, u64>,
}

impl TenantSummary {
    /// Wait quantiles.
    pub fn wait(&self) -> Option<WaitStats> {
        WaitStats::of(&self.waits_ms)
    }

    fn to_json(&self) -> Value {
        json!({
            "tenant": self.tenant,
            "jobs": self.jobs,
            "started": self.started,
            "completed": self.completed,
            "rejected": self.rejected,
            "never_started": self.never_started,
            "failed": self.failed,
            "requeues": self.requeues,
            "pending_reasons": self.pending_reasons,
            "wait_s": self.wait().map(WaitStats::to_json),
        })
    }
}

/// What one run did, in the terms `plan` and `trace` report.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// `baseline`, `scenario`, `trace`.
    pub label: String,
    /// Policy name.
    pub policy: String,
    /// Seed (the first log index).
    pub seed: u64,
    /// Every job.
    pub all: TenantSummary,
    /// Per tenant, by name.
    pub tenants: Vec<TenantSummary>,
    /// Allocated share of the online GPUs over the run, in percent.
    pub utilisation_pct: Option<f64>,
    /// Unallocated share of the online GPUs while some job waited for capacity, in percent.
    pub unallocated_pct: Option<f64>,
    /// Mean online GPUs over the run.
    pub gpus_online_mean: f64,
    /// GPUs installed at the start.
    pub gpus: u64,
    /// Last event.
    pub end_ms: u64,
    /// Series start.
    pub series_start_ms: u64,
    /// Series bucket width.
    pub series_bucket_ms: u64,
    /// Utilisation per bucket, in percent (`None`: no GPU online).
    pub series_pct: Vec<Option<f64>>,
    /// The engine's hash of every event and decision.
    pub trace_hash: u64,
}

/// Summarizes a run.
pub fn summarize(input: &RunInput, report: &Report) -> RunSummary {
    assert_eq!(report.outcomes.len(), input.jobs.len());
    let mut tenants: BTreeMap<&str, TenantSummary> = BTreeMap::new();
    let mut all = TenantSummary {
        tenant: "*".into(),
        ..TenantSummary::default()
    };
    for (job, outcome) in input.jobs.iter().zip(&report.outcomes) {
        let t = tenants
            .entry(&job.spec.tenant)
            .or_insert_with(|| TenantSummary {
                tenant: job.spec.tenant.clone(),
                ..TenantSummary::default()
            });
        for s in [&mut all, t] {
            s.jobs += 1;
            s.requeues += outcome.requeues as u64;
            match outcome.fate {
                Fate::Rejected => s.rejected += 1,
                Fate::Completed => s.completed += 1,
                Fate::Failed => s.failed += 1,
                Fate::Pending => {
                    let reason = outcome.pending_reason.map_or("NotTried", |r| r.code());
                    *s.pending_reasons.entry(reason.to_string()).or_default() += 1;
                }
            }
            match outcome.start_ms {
                Some(start) => {
                    s.started += 1;
                    s.waits_ms.push(start - job.at_ms);
                }
                None if outcome.fate != Fate::Rejected => s.never_started += 1,
                None => {}
            }
        }
    }
    let mut tenants: Vec<TenantSummary> = tenants.into_values().collect();
    for s in tenants.iter_mut().chain(std::iter::once(&mut all)) {
        s.waits_ms.sort_unstable();
    }
    let total = report.series.total();
    let span = report.end_ms.saturating_sub(report.series.start_ms);
    RunSummary {
        label: input.label.clone(),
        policy: input.policy_name.clone(),
        seed: input.config.first_index,
        all,
        tenants,
        utilisation_pct: total.utilisation_pct(),
        unallocated_pct: total.unallocated_waiting_pct(),
        gpus_online_mean: if span == 0 {
            0.0
        } else {
            total.online_milli_ms as f64 / 1_000.0 / span as f64
        },
        gpus: input.gpus(),
        end_ms: report.end_ms,
        series_start_ms: report.series.start_ms,
        series_bucket_ms: report.series.bucket_ms,
        series_pct: report
            .series
            .buckets
            .iter()
            .map(|b| b.utilisation_pct())
            .collect(),
        trace_hash: report.trace_hash,
    }
}

impl RunSummary {
    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let a = &self.all;
        json!({
            "run": self.label,
            "policy": self.policy,
            "seed": self.seed,
            "jobs": a.jobs,
            "started": a.started,
            "completed": a.completed,
            "rejected": a.rejected,
            "never_started": a.never_started,
            "failed": a.failed,
            "requeues": a.requeues,
            "pending_reasons": a.pending_reasons,
            "wait_s": a.wait().map(WaitStats::to_json),
            "utilisation_pct": self.utilisation_pct.map(|u| round(u, 4)),
            "unallocated_pct": self.unallocated_pct.map(|u| round(u, 4)),
            "gpus": self.gpus,
            "gpus_online_mean": round(self.gpus_online_mean, 3),
            "end_s": seconds(self.end_ms),
            "tenants": self.tenants.iter().map(TenantSummary::to_json).collect::<Vec<_>>(),
            "utilisation_series": {
                "start_s": seconds(self.series_start_ms),
                "bucket_s": seconds(self.series_bucket_ms),
                "pct": self.series_pct.iter().map(|p| p.map(|p| round(p, 2)))
                    .collect::<Vec<_>>(),
            },
            "trace_hash": format!("{:016x}", self.trace_hash),
        })
    }
}

/// `x` rounded to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1_000.0
}

/// A duration for people: `0 s`, `45 s`, `12 min`, `3.4 h`, `2.1 d`.
pub fn human_duration(ms: u64) -> String {
    let s = ms as f64 / 1_000.0;
    if s < 1.0 && ms > 0 {
        format!("{ms} ms")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7_200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3_600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p:.2} %"))
}

fn waits(w: Option<WaitStats>) -> [String; 3] {
    match w {
        None => ["-".into(), "-".into(), "-".into()],
        Some(w) => [
            human_duration(w.p50_ms),
            human_duration(w.p95_ms),
            human_duration(w.p99_ms),
        ],
    }
}

fn delta_pp(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2} pp", b - a),
        _ => String::new(),
    }
}

fn delta_count(a: u64, b: u64) -> String {
    format!("{:+}", b as i64 - a as i64)
}

/// The human table of one policy's baseline and scenario, side by side, then per tenant.
pub fn plan_table(title: &str, baseline: &RunSummary, scenario: &RunSummary) -> String {
    let mut out = String::new();
    let (b, s) = (&baseline.all, &scenario.all);
    let policies = if baseline.policy == scenario.policy {
        baseline.policy.clone()
    } else {
        format!("{} -> {}", baseline.policy, scenario.policy)
    };
    writeln!(
        out,
        "{title}: policy {policies}, seed {}, {} jobs, {} gpus at the start",
        baseline.seed, b.jobs, baseline.gpus
    )
    .unwrap();
    let row = |out: &mut String, name: &str, x: String, y: String, d: String| {
        let line = format!("  {name:<28} {x:>12} {y:>12} {d:>12}");
        writeln!(out, "{}", line.trim_end()).unwrap();
    };
    row(
        &mut out,
        "",
        "baseline".into(),
        "scenario".into(),
        "change".into(),
    );
    let (bw, sw) = (waits(b.wait()), waits(s.wait()));
    let rows: [(&str, String, String, String); 11] = [
        (
            "gpu utilisation",
            pct(baseline.utilisation_pct),
            pct(scenario.utilisation_pct),
            delta_pp(baseline.utilisation_pct, scenario.utilisation_pct),
        ),
        (
            "unallocated while jobs wait",
            pct(baseline.unallocated_pct),
            pct(scenario.unallocated_pct),
            delta_pp(baseline.unallocated_pct, scenario.unallocated_pct),
        ),
        (
            "gpus online (mean)",
            format!("{:.1}", baseline.gpus_online_mean),
            format!("{:.1}", scenario.gpus_online_mean),
            format!(
                "{:+.1}",
                scenario.gpus_online_mean - baseline.gpus_online_mean
            ),
        ),
        ("wait p50", bw[0].clone(), sw[0].clone(), String::new()),
        ("wait p95", bw[1].clone(), sw[1].clone(), String::new()),
        ("wait p99", bw[2].clone(), sw[2].clone(), String::new()),
        (
            "rejected",
            b.rejected.to_string(),
            s.rejected.to_string(),
            delta_count(b.rejected, s.rejected),
        ),
        (
            "never started",
            b.never_started.to_string(),
            s.never_started.to_string(),
            delta_count(b.never_started, s.never_started),
        ),
        (
            "failed (node failures)",
            b.failed.to_string(),
            s.failed.to_string(),
            delta_count(b.failed, s.failed),
        ),
        (
            "requeued",
            b.requeues.to_string(),
            s.requeues.to_string(),
            delta_count(b.requeues, s.requeues),
        ),
        (
            "end",
            human_duration(baseline.end_ms),
            human_duration(scenario.end_ms),
            String::new(),
        ),
    ];
    for (name, x, y, d) in rows {
        row(&mut out, name, x, y, d);
    }
    for run in [baseline, scenario] {
        if !run.all.pending_reasons.is_empty() {
            writeln!(
                out,
                "  {} waiting at the end: {}",
                run.label,
                reasons(&run.all)
            )
            .unwrap();
        }
    }
    writeln!(out).unwrap();
    tenant_rows(&mut out, &[baseline, scenario]);
    out
}

/// `6 BadConstraints, 1 Resources`.
fn reasons(t: &TenantSummary) -> String {
    let parts: Vec<String> = t
        .pending_reasons
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.join(", ")
}

/// Per-tenant rows of several runs.
fn tenant_rows(out: &mut String, runs: &[&RunSummary]) {
    writeln!(
        out,
        "  {:<14} {:<9} {:>7} {:>8} {:>9} {:>6} {:>9} {:>9} {:>9}",
        "tenant", "run", "jobs", "started", "rejected", "never", "wait p50", "wait p95", "wait p99"
    )
    .unwrap();
    for t in &runs[0].tenants {
        for (k, run) in runs.iter().enumerate() {
            let Some(r) = run.tenants.iter().find(|r| r.tenant == t.tenant) else {
                continue;
            };
            let w = waits(r.wait());
            let name = if k == 0 { t.tenant.as_str() } else { "" };
            writeln!(
                out,
                "  {:<14} {:<9} {:>7} {:>8} {:>9} {:>6} {:>9} {:>9} {:>9}",
                name, run.label, r.jobs, r.started, r.rejected, r.never_started, w[0], w[1], w[2]
            )
            .unwrap();
        }
    }
}

/// The human table of a time-driven trace replay: one row per policy.
pub fn trace_table(title: &str, runs: &[RunSummary]) -> String {
    let mut out = String::new();
    writeln!(out, "{title}").unwrap();
    writeln!(
        out,
        "  {:<15} {:>7} {:>8} {:>9} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "policy",
        "jobs",
        "started",
        "rejected",
        "never",
        "wait p50",
        "wait p95",
        "wait p99",
        "util",
        "unalloc"
    )
    .unwrap();
    for r in runs {
        let a = &r.all;
        let w = waits(a.wait());
        writeln!(
            out,
            "  {:<15} {:>7} {:>8} {:>9} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10}",
            r.policy,
            a.jobs,
            a.started,
            a.rejected,
            a.never_started,
            w[0],
            w[1],
            w[2],
            pct(r.utilisation_pct),
            pct(r.unallocated_pct)
        )
        .unwrap();
        if !a.pending_reasons.is_empty() {
            writeln!(out, "  {:<15} waiting at the end: {}", "", reasons(a)).unwrap();
        }
    }
    if !runs.is_empty() {
        writeln!(out).unwrap();
        let labelled: Vec<RunSummary> = runs
            .iter()
            .map(|r| RunSummary {
                label: r.policy.chars().take(9).collect(),
                ..r.clone()
            })
            .collect();
        let refs: Vec<&RunSummary> = labelled.iter().collect();
        tenant_rows(&mut out, &refs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.95), 95);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[1, 2], 0.5), 1);
        assert_eq!(quantile(&[1, 2], 0.51), 2);
        let w = WaitStats::of(&[0, 0, 10, 1_000]).unwrap();
        assert_eq!((w.p50_ms, w.p95_ms, w.max_ms), (0, 1_000, 1_000));
        assert_eq!(w.mean_ms, 252.5);
        assert_eq!(WaitStats::of(&[]), None);
    }

    #[test]
    fn durations_for_people() {
        let got: Vec<String> = [0, 250, 45_000, 720_000, 12_240_000, 181_440_000]
            .into_iter()
            .map(human_duration)
            .collect();
        assert_eq!(got, ["0 s", "250 ms", "45 s", "12 min", "3.4 h", "2.1 d"]);
    }
}
