//! The job model: who asks, where they may run, and what they need.
//!
//! A [`JobSpec`] is what a user submits. Its allowed jurisdictions are a hard, fail-closed
//! constraint: an empty set, or a set of codes no site belongs to, places nothing.
//! [`JobSpec::validate`] rejects malformed specs with a one-line message before they reach the
//! state machine.

use std::fmt;

use sovra_fabric::{Jurisdiction, Level};

/// Most members of one gang (or replicas of one service).
pub const MEMBERS_MAX: u32 = 16_384;
/// Longest job name.
pub const NAME_LEN_MAX: usize = 256;

/// A job's id, assigned by the state machine at submit, dense and increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// GPUs one member (task, gang member or replica) needs on one node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GpuRequest {
    /// CPU only.
    None,
    /// Whole GPUs, all on one node.
    Whole(u32),
    /// A share of one GPU in milli-GPU, 1..=999.
    Milli(u32),
    /// One MIG instance of the named profile (`1g.10gb`).
    Mig(String),
}

impl GpuRequest {
    /// GPU demand in milli-GPU (MIG counts as 0: it uses dedicated MIG-mode GPUs).
    pub fn milli(&self) -> u64 {
        match self {
            GpuRequest::None | GpuRequest::Mig(_) => 0,
            GpuRequest::Whole(n) => *n as u64 * 1000,
            GpuRequest::Milli(m) => *m as u64,
        }
    }
}

/// Whether a topology rule must hold or is only a preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Affinity {
    /// Never violated: the job waits instead.
    Required,
    /// Tried first; the placement widens level by level when it cannot hold.
    Preferred,
}

/// Where a gang's members must (or should) be, relative to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopologyRule {
    /// The level all members share; `None` is "any": no requirement, locality still preferred,
    /// and the gang may span sites.
    pub level: Option<Level>,
    /// Required or preferred.
    pub affinity: Affinity,
}

impl Default for TopologyRule {
    fn default() -> TopologyRule {
        TopologyRule {
            level: Some(Level::Leaf),
            affinity: Affinity::Preferred,
        }
    }
}

/// A training gang: `members × gpus_per_member` whole GPUs, all or nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GangSpec {
    /// Members (ranks), each on one node.
    pub members: u32,
    /// Whole GPUs per member.
    pub gpus_per_member: u32,
    /// Topology requirement.
    pub topology: TopologyRule,
    /// Largest RTT allowed between any two members; required for a preferred gang to span
    /// sites, and a bound on any gang that sets it.
    pub max_rtt_ns: Option<u64>,
}

/// A latency objective to a named ingress site.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LatencySlo {
    /// The site clients arrive at.
    pub ingress_site: String,
    /// Largest RTT from the ingress site to a replica.
    pub max_rtt_ns: u64,
}

/// An inference service: `replicas × gpus`, spread across failure domains.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InferenceSpec {
    /// Replicas.
    pub replicas: u32,
    /// GPUs per replica.
    pub gpus: GpuRequest,
    /// Latency objective.
    pub slo: Option<LatencySlo>,
    /// Failure-domain level to spread across (replicas also prefer distinct nodes).
    pub spread: Level,
}

/// What a job runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// One task on one node (a Slurm batch step, an OpenB pod).
    Batch {
        /// GPUs of the task.
        gpus: GpuRequest,
    },
    /// A training gang.
    Gang(GangSpec),
    /// An inference service.
    Inference(InferenceSpec),
}

/// A job as submitted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobSpec {
    /// Human name.
    pub name: String,
    /// Owning tenant.
    pub tenant: String,
    /// Higher runs first.
    pub priority: u32,
    /// Jurisdictions the job, its data and its metadata may be in. Empty places nothing.
    pub jurisdictions: Vec<Jurisdiction>,
    /// Allowed GPU models (case-insensitive); empty allows any.
    pub gpu_models: Vec<String>,
    /// CPU per member.
    pub cpu_milli: u64,
    /// Memory per member.
    pub memory_mib: u64,
    /// Wall-clock limit; `None` is unlimited.
    pub time_limit_ms: Option<u64>,
    /// The workload.
    pub workload: Workload,
    /// What each member runs (placement ignores it; agents execute it).
    pub run: RunSpec,
    /// Who submitted it, its queue, holds, dependencies, start time and array (Slurm's job
    /// control; all empty for a plain job).
    pub control: JobControl,
}

/// Most tasks of one job array (Slurm's default `MaxArraySize` is 1001: indices 0..=1000).
pub const ARRAY_TASKS_MAX: usize = 1001;
/// Largest array index.
pub const ARRAY_INDEX_MAX: u32 = 1000;
/// Most terms of one dependency expression.
pub const DEPENDENCY_TERMS_MAX: usize = 1024;

/// Job control, as Slurm users know it. None of it affects where a job is placed, only when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct JobControl {
    /// The submitting user's name, as the client gave it (shown by `squeue`; identities are
    /// authenticated by the client certificate, not by this field).
    pub user: String,
    /// The queue (Slurm partition) it was submitted to; empty for none.
    pub queue: String,
    /// Submitted held: it stays pending (`JobHeldUser`) until released.
    pub hold: bool,
    /// Jobs it waits for.
    pub dependency: Option<Dependency>,
    /// Not before this time (ms since the Unix epoch, leader clock).
    pub begin_ms: Option<u64>,
    /// A job array: one job per index, consecutive ids from the first.
    pub array: Option<ArraySpec>,
}

/// How a job depends on others (`sbatch -d`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// `?`-separated: any one term suffices; otherwise all must hold.
    pub any: bool,
    /// The terms.
    pub terms: Vec<DepTerm>,
}

/// One term of a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DepTerm {
    /// The condition.
    pub kind: DepKind,
    /// The job (an array's job id names every task; ignored for `singleton`).
    pub job: u64,
    /// One task of an array (`12_3`).
    pub task: Option<u32>,
}

/// Dependency conditions, with Slurm's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepKind {
    /// `after`: the other job started (or ended without starting).
    After,
    /// `afterany`: the other job ended, however.
    AfterAny,
    /// `afterok`: the other job completed with exit code 0.
    AfterOk,
    /// `afternotok`: the other job ended in any other way (failed, timed out, node failure,
    /// out of memory, cancelled).
    AfterNotOk,
    /// `singleton`: no other job of the same name and user is placed or running.
    Singleton,
}

impl DepKind {
    /// Slurm's name.
    pub fn name(self) -> &'static str {
        match self {
            DepKind::After => "after",
            DepKind::AfterAny => "afterany",
            DepKind::AfterOk => "afterok",
            DepKind::AfterNotOk => "afternotok",
            DepKind::Singleton => "singleton",
        }
    }
}

impl fmt::Display for Dependency {
    /// Slurm's form: `afterok:12,afterany:13_2`, `?` between terms for any-of.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(if self.any { "?" } else { "," })?;
            }
            match (t.kind, t.task) {
                (DepKind::Singleton, _) => f.write_str("singleton")?,
                (k, None) => write!(f, "{}:{}", k.name(), t.job)?,
                (k, Some(task)) => write!(f, "{}:{}_{}", k.name(), t.job, task)?,
            }
        }
        Ok(())
    }
}

/// A job array (`sbatch --array=0-15%4`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArraySpec {
    /// Task indices, ascending and distinct, each at most [`ARRAY_INDEX_MAX`].
    pub indices: Vec<u32>,
    /// Most tasks placed or running at once; 0 is no limit.
    pub throttle: u32,
}

/// Most arguments, or environment variables, of a job.
pub const RUN_ITEMS_MAX: usize = 4096;
/// Most bytes of one argument, variable or working directory.
pub const RUN_ITEM_LEN_MAX: usize = 64 * 1024;

/// What a job's members run, as its agent executes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunSpec {
    /// The program and its arguments. Empty: nothing runs; the job only holds its resources
    /// until it is cancelled or hits its time limit.
    pub argv: Vec<String>,
    /// Variables added to the job's environment, in this order (after sovra's own, so a job
    /// may override them).
    pub env: Vec<(String, String)>,
    /// The working directory. Empty: the agent's directory for the job.
    pub workdir: String,
}

impl RunSpec {
    /// Checks limits and forms: no NUL bytes, a non-empty program, variable names without `=`.
    pub fn validate(&self) -> Result<(), String> {
        if self.argv.len() > RUN_ITEMS_MAX || self.env.len() > RUN_ITEMS_MAX {
            return Err(format!(
                "command and env take at most {RUN_ITEMS_MAX} items each"
            ));
        }
        let items = self
            .argv
            .iter()
            .chain(self.env.iter().flat_map(|(k, v)| [k, v]))
            .chain(std::iter::once(&self.workdir));
        for item in items {
            if item.len() > RUN_ITEM_LEN_MAX {
                return Err(format!(
                    "a command argument, env value or workdir is longer than {RUN_ITEM_LEN_MAX} \
                     bytes"
                ));
            }
            if item.contains('\0') {
                return Err("command, env and workdir may not contain NUL bytes".into());
            }
        }
        if self.argv.first().is_some_and(|p| p.is_empty()) {
            return Err("command names an empty program".into());
        }
        for (name, _) in &self.env {
            if name.is_empty() || name.contains('=') {
                return Err(format!("invalid environment variable name {name:?}"));
            }
        }
        Ok(())
    }
}

impl JobSpec {
    /// Number of members (tasks, gang members or replicas).
    pub fn member_count(&self) -> u32 {
        match &self.workload {
            Workload::Batch { .. } => 1,
            Workload::Gang(g) => g.members,
            Workload::Inference(s) => s.replicas,
        }
    }

    /// GPUs one member needs.
    pub fn member_gpus(&self) -> GpuRequest {
        match &self.workload {
            Workload::Batch { gpus } => gpus.clone(),
            Workload::Gang(g) => GpuRequest::Whole(g.gpus_per_member),
            Workload::Inference(s) => s.gpus.clone(),
        }
    }

    /// Total GPU demand in milli-GPU.
    pub fn total_milli(&self) -> u64 {
        self.member_gpus().milli() * self.member_count() as u64
    }

    /// Checks the spec is well-formed. The error is one line, lower case.
    pub fn validate(&self) -> Result<(), String> {
        if self.tenant.is_empty() {
            return Err("job has no tenant".into());
        }
        if self.name.len() > NAME_LEN_MAX {
            return Err(format!("job name longer than {NAME_LEN_MAX} bytes"));
        }
        if self.name.chars().any(|c| c.is_control()) {
            return Err("job name contains control characters".into());
        }
        // A job submitted to a queue gets its jurisdictions from it at submit.
        if self.jurisdictions.is_empty() && self.control.queue.is_empty() {
            return Err("job allows no jurisdiction: set at least one (e.g. \"AU\")".into());
        }
        validate_gpus(&self.member_gpus())?;
        self.run.validate()?;
        self.control.validate()?;
        match &self.workload {
            Workload::Batch { .. } => {}
            Workload::Gang(g) => {
                if g.members == 0 || g.members > MEMBERS_MAX {
                    return Err(format!("gang members must be 1..={MEMBERS_MAX}"));
                }
                if g.max_rtt_ns == Some(0) {
                    return Err("gang max rtt must be positive".into());
                }
            }
            Workload::Inference(s) => {
                if s.replicas == 0 || s.replicas > MEMBERS_MAX {
                    return Err(format!("inference replicas must be 1..={MEMBERS_MAX}"));
                }
                if let Some(slo) = &s.slo {
                    if slo.ingress_site.is_empty() {
                        return Err("latency slo names no ingress site".into());
                    }
                }
            }
        }
        Ok(())
    }
}

impl JobControl {
    /// Checks bounds and forms. The error is one line.
    pub fn validate(&self) -> Result<(), String> {
        for (what, text) in [("user", &self.user), ("queue", &self.queue)] {
            if text.len() > NAME_LEN_MAX || text.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "{what} must be at most {NAME_LEN_MAX} bytes without control characters"
                ));
            }
        }
        if let Some(dep) = &self.dependency {
            if dep.terms.is_empty() || dep.terms.len() > DEPENDENCY_TERMS_MAX {
                return Err(format!("a dependency has 1..={DEPENDENCY_TERMS_MAX} terms"));
            }
        }
        if let Some(array) = &self.array {
            if array.indices.is_empty() || array.indices.len() > ARRAY_TASKS_MAX {
                return Err(format!("a job array has 1..={ARRAY_TASKS_MAX} tasks"));
            }
            if array.indices.windows(2).any(|w| w[0] >= w[1]) {
                return Err("array indices must be ascending and distinct".into());
            }
            if array.indices.last().is_some_and(|&i| i > ARRAY_INDEX_MAX) {
                return Err(format!("array indices must be at most {ARRAY_INDEX_MAX}"));
            }
        }
        Ok(())
    }
}

fn validate_gpus(gpus: &GpuRequest) -> Result<(), String> {
    match gpus {
        GpuRequest::None => Ok(()),
        GpuRequest::Whole(n) => {
            if *n == 0 || *n as usize > sovra_fabric::topology::GPUS_PER_NODE_MAX {
                return Err(format!(
                    "whole gpus per member must be 1..={}",
                    sovra_fabric::topology::GPUS_PER_NODE_MAX
                ));
            }
            Ok(())
        }
        GpuRequest::Milli(m) => {
            if *m == 0 || *m >= 1000 {
                return Err(format!(
                    "gpu share must be 1..=999 milli-gpu, got {m} (use whole gpus for 1000)"
                ));
            }
            Ok(())
        }
        GpuRequest::Mig(profile) => parse_mig_profile(profile).map(|_| ()),
    }
}

/// Parses `Ng.Mgb` or `Cc.Ng.Mgb` into (gpu-instance slices, memory GB).
pub fn parse_mig_profile(profile: &str) -> Result<(u8, u32), String> {
    let bad = || format!("invalid mig profile {profile:?}: expected e.g. \"1g.10gb\"");
    let mut parts: Vec<&str> = profile.split('.').collect();
    if parts.len() == 3 {
        let c = parts.remove(0);
        if !c.ends_with('c') || c[..c.len() - 1].parse::<u8>().is_err() {
            return Err(bad());
        }
    }
    if parts.len() != 2 {
        return Err(bad());
    }
    let g = parts[0]
        .strip_suffix('g')
        .and_then(|x| x.parse::<u8>().ok())
        .ok_or_else(bad)?;
    let m = parts[1]
        .strip_suffix("gb")
        .and_then(|x| x.parse::<u32>().ok())
        .ok_or_else(bad)?;
    if g == 0 || g > 7 || m == 0 {
        return Err(bad());
    }
    Ok((g, m))
}
