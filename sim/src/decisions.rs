//! Decision logs (`--decisions FILE`) and their replay (`sovra-sim replay`).
//!
//! A log is JSONL. Its first line names the format; then each run of the simulation writes
//! its inputs, exactly, and then its decisions as they are made:
//!
//! ```text
//! {"kind":"log","format":"sovra-sim decisions","version":1}
//! {"kind":"run","run":0,"label":"baseline","policy":"best-fit","seed":7,...}
//! {"kind":"job","run":0,"input":0,"name":"j0","tenant":"acme","at_ms":0,...}
//! {"kind":"event","run":0,"at_ms":3600000,"node":"sin1-n0001","change":"down"}
//! {"kind":"decision","run":0,"t_ms":0,"input":0,"job":1,"seed":"…","outcome":"placed",...}
//! ```
//!
//! The inputs are the scheduler core's canonical encodings (`core::snapshot`, versioned; hex
//! in the `*_blob` fields: the topology, the policy, every job), next to readable fields, so a
//! log replays without the files it came from. A decision is the job, the placement seed, the
//! plan (node, CPU, memory, GPUs per member) or why the job waits, and the explanation. As
//! [`crate::engine::Observer`] says, a waiting job is logged when it first waits and when the
//! reason changes; every placement is logged.
//!
//! [`parse_log`] reads a log back; [`diff`] compares its decisions with a replay's, matching
//! the `k`-th decision about each input job, and reports every one that differs (time, seed,
//! outcome, plan or reason). Everything here is pure: the binary reads and writes the files.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Map, Value};
use sovra_fabric::{GpuTake, NodeId, Take, Topology, TopologyDesc};
use sovra_scheduler::core::job::JobSpec;
use sovra_scheduler::core::placement::{Explanation, Outcome, PolicyConfig};
use sovra_scheduler::core::snapshot::{from_blob, to_blob, Codec};

use crate::engine::{Decision, JobArrival, NodeChange, NodeEvent, SimConfig};
use crate::loader::LoadError;
use crate::run::RunInput;

/// The log format's name, in its first line.
pub const LOG_FORMAT: &str = "sovra-sim decisions";
/// The log format's version.
pub const LOG_VERSION: u64 = 1;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn blob<T: Codec>(value: &T) -> String {
    hex(&to_blob(value))
}

/// The log's first line.
pub fn log_header() -> String {
    json!({"kind": "log", "format": LOG_FORMAT, "version": LOG_VERSION}).to_string()
}

/// The lines that record run `run`'s inputs.
pub fn input_lines(run: usize, input: &RunInput) -> Vec<String> {
    let topology = &input.topology;
    let down: Vec<&str> = input
        .config
        .initially_down
        .iter()
        .map(|&n| topology.node(n).name.as_str())
        .collect();
    let mut lines = vec![json!({
        "kind": "run",
        "run": run,
        "label": input.label,
        "policy": input.policy_name,
        "seed": input.config.first_index,
        "bucket_ms": input.config.bucket_ms,
        "initially_down": down,
        "jobs": input.jobs.len(),
        "events": input.events.len(),
        "policy_blob": blob(&input.policy),
        "topology_blob": blob(topology.desc()),
    })
    .to_string()];
    for (i, j) in input.jobs.iter().enumerate() {
        lines.push(
            json!({
                "kind": "job",
                "run": run,
                "input": i,
                "name": j.spec.name,
                "tenant": j.spec.tenant,
                "at_ms": j.at_ms,
                "duration_ms": j.duration_ms,
                "spec_blob": blob(&j.spec),
            })
            .to_string(),
        );
    }
    for e in &input.events {
        lines.push(
            json!({
                "kind": "event",
                "run": run,
                "at_ms": e.at_ms,
                "node": topology.node(e.node).name,
                "change": e.change.name(),
            })
            .to_string(),
        );
    }
    lines
}

fn take_json(topology: &Topology, node: NodeId, take: &Take) -> Value {
    let mut slot = Map::new();
    slot.insert("node".into(), json!(topology.node(node).name));
    slot.insert("cpu_milli".into(), json!(take.cpu_milli));
    slot.insert("memory_mib".into(), json!(take.memory_mib));
    match take.gpus {
        GpuTake::None => {}
        GpuTake::Whole { mask } => {
            let gpus: Vec<u32> = (0..32).filter(|i| mask >> i & 1 == 1).collect();
            slot.insert("gpus".into(), json!(gpus));
        }
        GpuTake::Milli { local, milli } => {
            slot.insert("gpu".into(), json!(local));
            slot.insert("milli".into(), json!(milli));
        }
        GpuTake::Mig {
            local,
            compute,
            memory,
        } => {
            slot.insert("gpu".into(), json!(local));
            slot.insert("mig".into(), json!([compute, memory]));
        }
    }
    Value::Object(slot)
}

fn explanation_json(e: &Explanation) -> Value {
    let r = &e.removed;
    json!({
        "policy": e.policy,
        "nodes_total": e.nodes_total,
        "nodes_eligible": e.nodes_eligible,
        "jurisdictions": e.jurisdictions.iter().map(|j| j.as_str()).collect::<Vec<_>>(),
        "nodes_evaluated": e.nodes_evaluated,
        "subtrees_evaluated": e.subtrees_evaluated,
        "removed": {
            "jurisdiction": r.jurisdiction,
            "latency": r.latency,
            "unschedulable": r.unschedulable,
            "model": r.model,
            "cpu": r.cpu,
            "memory": r.memory,
            "gpu": r.gpu,
        },
        "steps": e.steps,
    })
}

/// The line of one decision of run `run`.
pub fn decision_line(run: usize, d: &Decision, input: &RunInput) -> String {
    let mut line = json!({
        "kind": "decision",
        "run": run,
        "t_ms": d.time_ms,
        "input": d.input,
        "job": d.job.0,
        "name": input.jobs[d.input].spec.name,
        "seed": format!("{:016x}", d.seed),
    });
    match &d.outcome {
        Outcome::Placed(plan) => {
            line["outcome"] = json!("placed");
            line["plan"] = plan
                .members
                .iter()
                .map(|m| take_json(&input.topology, m.node, &m.take))
                .collect();
        }
        Outcome::Unschedulable(why) => {
            line["outcome"] = json!("deferred");
            line["reason"] = json!(why.reason.code());
            line["message"] = json!(why.message);
        }
    }
    line["explanation"] = explanation_json(&d.explanation);
    line.to_string()
}

/// What two decisions are compared on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionKey {
    /// When.
    pub time_ms: u64,
    /// The placement seed.
    pub seed: u64,
    /// The plan's slots, by node name (`None`: the job waits).
    pub plan: Option<Vec<(String, Take)>>,
    /// Why it waits.
    pub reason: Option<String>,
}

impl DecisionKey {
    /// The key of a decision the engine made.
    pub fn of(d: &Decision, topology: &Topology) -> DecisionKey {
        match &d.outcome {
            Outcome::Placed(plan) => DecisionKey {
                time_ms: d.time_ms,
                seed: d.seed,
                plan: Some(
                    plan.members
                        .iter()
                        .map(|m| (topology.node(m.node).name.clone(), m.take))
                        .collect(),
                ),
                reason: None,
            },
            Outcome::Unschedulable(why) => DecisionKey {
                time_ms: d.time_ms,
                seed: d.seed,
                plan: None,
                reason: Some(why.reason.code().to_string()),
            },
        }
    }

    /// As JSON, for diffs.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"t_ms": self.time_ms, "seed": format!("{:016x}", self.seed)});
        match &self.plan {
            Some(slots) => {
                v["outcome"] = json!("placed");
                v["plan"] = slots
                    .iter()
                    .map(|(node, take)| {
                        let mut s = json!({"node": node, "cpu_milli": take.cpu_milli,
                            "memory_mib": take.memory_mib});
                        match take.gpus {
                            GpuTake::None => {}
                            GpuTake::Whole { mask } => {
                                let g: Vec<u32> = (0..32).filter(|i| mask >> i & 1 == 1).collect();
                                s["gpus"] = json!(g);
                            }
                            GpuTake::Milli { local, milli } => {
                                s["gpu"] = json!(local);
                                s["milli"] = json!(milli);
                            }
                            GpuTake::Mig {
                                local,
                                compute,
                                memory,
                            } => {
                                s["gpu"] = json!(local);
                                s["mig"] = json!([compute, memory]);
                            }
                        }
                        s
                    })
                    .collect();
            }
            None => {
                v["outcome"] = json!("deferred");
                v["reason"] = json!(self.reason);
            }
        }
        v
    }
}

impl fmt::Display for DecisionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plan {
            Some(slots) => {
                let nodes: Vec<String> = slots
                    .iter()
                    .map(|(node, take)| match take.gpus {
                        GpuTake::None => node.clone(),
                        GpuTake::Whole { mask } => format!("{node} gpus {}", gpu_list(mask)),
                        GpuTake::Milli { local, milli } => format!("{node} gpu {local} {milli}m"),
                        GpuTake::Mig { local, .. } => format!("{node} gpu {local} mig"),
                    })
                    .collect();
                write!(f, "placed on {} at {} ms", nodes.join(", "), self.time_ms)
            }
            None => write!(
                f,
                "deferred ({}) at {} ms",
                self.reason.as_deref().unwrap_or("?"),
                self.time_ms
            ),
        }
    }
}

/// Local GPU indices as ranges: `0-3,6`.
fn gpu_list(mask: u32) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < 32 {
        if mask >> i & 1 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < 32 && mask >> i & 1 == 1 {
            i += 1;
        }
        parts.push(if i - 1 == start {
            start.to_string()
        } else {
            format!("{start}-{}", i - 1)
        });
    }
    parts.join(",")
}

/// A decision as a log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedDecision {
    /// The job's input index.
    pub input: usize,
    /// What it decided.
    pub key: DecisionKey,
    /// Its line in the log.
    pub line: usize,
}

/// One run of a log: its inputs and its decisions.
#[derive(Clone, Debug)]
pub struct LoggedRun {
    /// The inputs, ready to run again.
    pub input: RunInput,
    /// The decisions, in log order.
    pub decisions: Vec<LoggedDecision>,
}

struct Fields<'a> {
    file: &'a str,
    line: usize,
    object: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn error(&self, field: &str, why: impl fmt::Display) -> LoadError {
        LoadError {
            file: self.file.to_string(),
            line: self.line,
            message: format!("{field}: {why}"),
        }
    }

    fn value(&self, field: &str) -> Result<&Value, LoadError> {
        self.object
            .get(field)
            .ok_or_else(|| self.error(field, "missing"))
    }

    fn uint(&self, field: &str) -> Result<u64, LoadError> {
        let v = self.value(field)?;
        v.as_u64()
            .ok_or_else(|| self.error(field, format!("expected a non-negative integer, got {v}")))
    }

    fn str(&self, field: &str) -> Result<&str, LoadError> {
        let v = self.value(field)?;
        v.as_str()
            .ok_or_else(|| self.error(field, format!("expected a string, got {v}")))
    }

    fn blob<T: Codec>(&self, field: &str) -> Result<T, LoadError> {
        let bytes = unhex(self.str(field)?).ok_or_else(|| self.error(field, "not hex"))?;
        from_blob(&bytes).map_err(|e| self.error(field, e))
    }

    fn node(&self, field: &str, topology: &Topology, name: &str) -> Result<NodeId, LoadError> {
        topology
            .node_by_name(name)
            .ok_or_else(|| self.error(field, format!("unknown node {name:?}")))
    }
}

fn parse_take(f: &Fields<'_>, slot: &Value) -> Result<(String, Take), LoadError> {
    let bad = |why: &str| f.error("plan", why);
    let o = slot.as_object().ok_or_else(|| bad("expected objects"))?;
    let inner = Fields {
        file: f.file,
        line: f.line,
        object: o,
    };
    let node = inner.str("node")?.to_string();
    let gpus = if let Some(list) = o.get("gpus") {
        let mut mask = 0u32;
        for g in list
            .as_array()
            .ok_or_else(|| bad("gpus: expected a list"))?
        {
            match g.as_u64() {
                Some(i) if i < 32 => mask |= 1 << i,
                _ => return Err(bad("gpus: expected gpu indices")),
            }
        }
        GpuTake::Whole { mask }
    } else if let Some(m) = o.get("milli") {
        GpuTake::Milli {
            local: inner
                .uint("gpu")?
                .try_into()
                .map_err(|_| bad("gpu: too large"))?,
            milli: m
                .as_u64()
                .and_then(|m| m.try_into().ok())
                .ok_or_else(|| bad("milli: expected milli-gpu"))?,
        }
    } else if let Some(mig) = o.get("mig") {
        let pair: Vec<u8> = mig
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().and_then(|x| x.try_into().ok()))
                    .collect()
            })
            .unwrap_or_default();
        let [compute, memory] = pair[..] else {
            return Err(bad("mig: expected [compute, memory]"));
        };
        GpuTake::Mig {
            local: inner
                .uint("gpu")?
                .try_into()
                .map_err(|_| bad("gpu: too large"))?,
            compute,
            memory,
        }
    } else {
        GpuTake::None
    };
    Ok((
        node,
        Take {
            cpu_milli: inner.uint("cpu_milli")?,
            memory_mib: inner.uint("memory_mib")?,
            gpus,
        },
    ))
}

/// Reads a decision log; `file` names it in errors.
pub fn parse_log(file: &str, text: &str) -> Result<Vec<LoggedRun>, LoadError> {
    let mut runs: Vec<LoggedRun> = Vec::new();
    let mut header_seen = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw).map_err(|e| LoadError {
            file: file.to_string(),
            line: n,
            message: format!("json: {e}"),
        })?;
        let object = value.as_object().ok_or_else(|| LoadError {
            file: file.to_string(),
            line: n,
            message: "json: expected one object per line".into(),
        })?;
        let f = Fields {
            file,
            line: n,
            object,
        };
        let kind = f.str("kind")?;
        if !header_seen {
            if kind != "log" || f.str("format")? != LOG_FORMAT {
                return Err(f.error(
                    "kind",
                    format!(
                        "not a decision log: expected a first line \
                    {{\"kind\":\"log\",\"format\":\"{LOG_FORMAT}\",...}}"
                    ),
                ));
            }
            let version = f.uint("version")?;
            if version != LOG_VERSION {
                return Err(f.error(
                    "version",
                    format!("version {version}, this sovra-sim reads version {LOG_VERSION}"),
                ));
            }
            header_seen = true;
            continue;
        }
        let run = f.uint("run")? as usize;
        if kind == "run" {
            if run != runs.len() {
                return Err(f.error("run", format!("expected run {}", runs.len())));
            }
            let desc: TopologyDesc = f.blob("topology_blob")?;
            let topology = Topology::build(desc).map_err(|e| f.error("topology_blob", e))?;
            let policy: PolicyConfig = f.blob("policy_blob")?;
            let mut initially_down = Vec::new();
            let down = f.value("initially_down")?;
            for name in down
                .as_array()
                .ok_or_else(|| f.error("initially_down", "expected a list"))?
            {
                let name = name
                    .as_str()
                    .ok_or_else(|| f.error("initially_down", "expected node names"))?;
                initially_down.push(f.node("initially_down", &topology, name)?);
            }
            let seed = f.uint("seed")?;
            if seed > crate::scenario::SEED_MAX {
                return Err(f.error(
                    "seed",
                    format!("{seed} is above the maximum {}", crate::scenario::SEED_MAX),
                ));
            }
            let bucket_ms = f.uint("bucket_ms")?;
            if bucket_ms == 0 {
                return Err(f.error("bucket_ms", "must be positive"));
            }
            runs.push(LoggedRun {
                input: RunInput {
                    label: f.str("label")?.to_string(),
                    policy_name: f.str("policy")?.to_string(),
                    topology,
                    policy,
                    jobs: Vec::with_capacity(f.uint("jobs")?.min(1 << 20) as usize),
                    events: Vec::new(),
                    config: SimConfig {
                        first_index: seed,
                        bucket_ms,
                        initially_down,
                    },
                },
                decisions: Vec::new(),
            });
            continue;
        }
        if run + 1 != runs.len() {
            return Err(f.error("run", format!("run {run} has no header before this line")));
        }
        let current = runs.last_mut().expect("checked");
        match kind {
            "job" => {
                let input = f.uint("input")? as usize;
                if input != current.input.jobs.len() || !current.decisions.is_empty() {
                    return Err(f.error("input", "jobs come in order, before the decisions"));
                }
                let spec: JobSpec = f.blob("spec_blob")?;
                current.input.jobs.push(JobArrival {
                    spec,
                    at_ms: f.uint("at_ms")?,
                    duration_ms: f.uint("duration_ms")?,
                });
            }
            "event" => {
                let change = f.str("change")?;
                let change = NodeChange::parse(change)
                    .ok_or_else(|| f.error("change", format!("unknown change {change:?}")))?;
                let node = f.node("node", &current.input.topology, f.str("node")?)?;
                current.input.events.push(NodeEvent {
                    at_ms: f.uint("at_ms")?,
                    node,
                    change,
                });
            }
            "decision" => {
                let input = f.uint("input")? as usize;
                if input >= current.input.jobs.len() {
                    return Err(f.error("input", format!("no job {input} in run {run}")));
                }
                let seed = u64::from_str_radix(f.str("seed")?, 16)
                    .map_err(|_| f.error("seed", "expected 16 hex digits"))?;
                let time_ms = f.uint("t_ms")?;
                let key = match f.str("outcome")? {
                    "placed" => {
                        let plan = f.value("plan")?;
                        let slots = plan
                            .as_array()
                            .ok_or_else(|| f.error("plan", "expected a list"))?
                            .iter()
                            .map(|s| parse_take(&f, s))
                            .collect::<Result<Vec<_>, _>>()?;
                        DecisionKey {
                            time_ms,
                            seed,
                            plan: Some(slots),
                            reason: None,
                        }
                    }
                    "deferred" => DecisionKey {
                        time_ms,
                        seed,
                        plan: None,
                        reason: Some(f.str("reason")?.to_string()),
                    },
                    other => return Err(f.error("outcome", format!("unknown outcome {other:?}"))),
                };
                current.decisions.push(LoggedDecision {
                    input,
                    key,
                    line: n,
                });
            }
            other => return Err(f.error("kind", format!("unknown line kind {other:?}"))),
        }
    }
    if !header_seen {
        return Err(LoadError {
            file: file.to_string(),
            line: 1,
            message: "log: empty: expected a decision log".into(),
        });
    }
    Ok(runs)
}

/// A decision that differs between a log and its replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionDiff {
    /// The job's input index.
    pub input: usize,
    /// Which decision about the job (0 is the first).
    pub nth: usize,
    /// The log's (`None`: the replay made one more).
    pub logged: Option<DecisionKey>,
    /// The replay's (`None`: the replay made one fewer).
    pub replayed: Option<DecisionKey>,
    /// The logged decision's line.
    pub line: Option<usize>,
}

/// Every decision that differs, by input job, then decision order.
pub fn diff(logged: &[LoggedDecision], replayed: &[(usize, DecisionKey)]) -> Vec<DecisionDiff> {
    let mut by_input: BTreeMap<usize, (Vec<&LoggedDecision>, Vec<&DecisionKey>)> = BTreeMap::new();
    for d in logged {
        by_input.entry(d.input).or_default().0.push(d);
    }
    for (input, key) in replayed {
        by_input.entry(*input).or_default().1.push(key);
    }
    let mut diffs = Vec::new();
    for (input, (old, new)) in by_input {
        for nth in 0..old.len().max(new.len()) {
            let a = old.get(nth);
            let b = new.get(nth);
            if a.map(|d| &d.key) != b.copied() {
                diffs.push(DecisionDiff {
                    input,
                    nth,
                    logged: a.map(|d| d.key.clone()),
                    replayed: b.map(|&k| k.clone()),
                    line: a.map(|d| d.line),
                });
            }
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lists() {
        assert_eq!(gpu_list(0xff), "0-7");
        assert_eq!(gpu_list(0b1011_0001), "0,4-5,7");
        assert_eq!(gpu_list(1 << 31), "31");
        assert_eq!(gpu_list(0), "");
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn not_a_log() {
        let err = |text: &str| parse_log("d.jsonl", text).unwrap_err().to_string();
        assert_eq!(err(""), "d.jsonl:1: log: empty: expected a decision log");
        assert!(err("{\"kind\":\"job\"}\n").starts_with("d.jsonl:1: kind: not a decision log"));
        assert_eq!(
            err("{\"kind\":\"log\",\"format\":\"sovra-sim decisions\",\"version\":9}"),
            "d.jsonl:1: version: version 9, this sovra-sim reads version 1"
        );
        let head = log_header();
        assert_eq!(
            err(&format!("{head}\n{{\"kind\":\"job\",\"run\":0}}\n")),
            "d.jsonl:2: run: run 0 has no header before this line"
        );
        assert_eq!(
            err(&format!("{head}\nnot json\n")),
            "d.jsonl:2: json: expected ident at line 1 column 2"
        );
    }
}
