//! What a node runs and how it ended: tasks, assignments, exits and outcomes.
//!
//! A *task* is one member (rank, replica) of a job placed on this node, named by [`TaskId`]
//! (job id and member rank). The scheduler hands the agent an [`Assignment`]: the job spec, every
//! member's node and resources in rank order (so the environment can name the whole gang), and
//! the command to run. When the task ends the agent reports a [`Finished`] whose [`Outcome`]
//! follows Slurm's job states.

use std::fmt;

use sovra_fabric::{NodeId, Take, Topology};
use sovra_scheduler::core::job::{JobId, JobSpec};
use sovra_scheduler::core::placement::Plan;

/// Wall-clock time in milliseconds since the Unix epoch. The shell reads the clock; the core
/// only compares and adds.
pub type Millis = u64;

/// One member of a job on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// The job.
    pub job: JobId,
    /// The member's rank (gang rank or replica index), 0-based.
    pub rank: u32,
    /// The job's attempt (its requeue count): a requeued job's member is a new task, even on
    /// the same node, so an old attempt's end never ends the new one.
    pub attempt: u32,
}

impl TaskId {
    /// Builds the task id of a job's first attempt.
    pub fn new(job: u64, rank: u32) -> TaskId {
        TaskId {
            job: JobId(job),
            rank,
            attempt: 0,
        }
    }

    /// This task in another attempt of its job.
    pub fn with_attempt(self, attempt: u32) -> TaskId {
        TaskId { attempt, ..self }
    }

    /// Parses the `<job>-<rank>[.<attempt>]` form that [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Option<TaskId> {
        let (job, rest) = text.split_once('-')?;
        let (rank, attempt) = match rest.split_once('.') {
            Some((rank, attempt)) => (rank, Some(attempt)),
            None => (rest, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(job) || !digits(rank) || attempt.is_some_and(|a| !digits(a)) {
            return None;
        }
        let attempt = match attempt {
            None => 0,
            // The first attempt is written without a suffix: one form per id.
            Some(a) => a.parse().ok().filter(|&a| a > 0)?,
        };
        Some(TaskId::new(job.parse().ok()?, rank.parse().ok()?).with_attempt(attempt))
    }
}

/// `<job>-<rank>`, e.g. `42-0`, with `.<attempt>` after a requeue (`42-0.1`); used in paths
/// and cgroup names.
impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.job.0, self.rank)?;
        if self.attempt > 0 {
            write!(f, ".{}", self.attempt)?;
        }
        Ok(())
    }
}

/// The process a task runs (the job's `run` section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`. Empty:
    /// nothing runs, the task holds its resources until cancelled or out of time (the agent
    /// runs [`HOLD_ARGV`]).
    pub argv: Vec<String>,
    /// The submitter's variables, applied after sovra's own so they may override them, except
    /// the device visibility variables ([`crate::core::env::PROTECTED_VARS`]).
    pub env: Vec<(String, String)>,
    /// Working directory; `None` is a directory the agent makes for the task.
    pub cwd: Option<String>,
}

/// What a task with an empty command runs: it only holds its resources.
pub const HOLD_ARGV: [&str; 2] = ["sleep", "infinity"];

impl Command {
    /// The program and arguments to execute: `argv`, or [`HOLD_ARGV`] when it is empty.
    pub fn effective_argv(&self) -> Vec<String> {
        if self.argv.is_empty() {
            HOLD_ARGV.iter().map(|s| s.to_string()).collect()
        } else {
            self.argv.clone()
        }
    }
}

/// One member of the job as this node sees it: its node and what it holds there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's name.
    pub node: String,
    /// Resources held on that node.
    pub take: Take,
    /// Position in the topology as `site.spine.leaf.node` (Slurm's `SLURM_TOPOLOGY_ADDR`),
    /// when known.
    pub topology_addr: Option<String>,
}

/// Everything the agent needs to run one task: what the scheduler's assignment message
/// carries, for one member on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Which member runs here.
    pub task: TaskId,
    /// The job's name.
    pub name: String,
    /// The job's tenant.
    pub tenant: String,
    /// Wall-clock limit from the start; `None` is unlimited.
    pub time_limit_ms: Option<u64>,
    /// Every member in rank order, with its CPU, memory and GPUs; `members[task.rank]` is the
    /// one on this node.
    pub members: Vec<Member>,
    /// What to run.
    pub command: Command,
    /// The tenant network its processes are isolated in (committed by the scheduler with the
    /// allocation); `None` for no network isolation.
    pub tenant_net: Option<u32>,
}

impl Assignment {
    /// Builds the assignment of member `rank` of `plan`, naming nodes from `topology`.
    pub fn from_plan(
        topology: &Topology,
        spec: &JobSpec,
        plan: &Plan,
        rank: u32,
        command: Command,
    ) -> Assignment {
        assert!(
            (rank as usize) < plan.members.len(),
            "rank outside the plan"
        );
        let members = plan
            .members
            .iter()
            .map(|slot| Member {
                node: topology.node(slot.node).name.clone(),
                take: slot.take,
                topology_addr: Some(topology_addr(topology, slot.node)),
            })
            .collect();
        Assignment {
            task: TaskId {
                job: plan.job,
                rank,
                attempt: 0,
            },
            name: spec.name.clone(),
            tenant: spec.tenant.clone(),
            time_limit_ms: spec.time_limit_ms,
            members,
            command,
            tenant_net: None,
        }
    }

    /// The member that runs on this node.
    pub fn member(&self) -> &Member {
        &self.members[self.task.rank as usize]
    }

    /// Checks the assignment is well-formed. The error is one line, lower case.
    pub fn validate(&self) -> Result<(), String> {
        if self.members.is_empty() {
            return Err(format!("task {}: assignment has no members", self.task));
        }
        if self.task.rank as usize >= self.members.len() {
            return Err(format!(
                "task {}: rank {} outside the job's {} members",
                self.task,
                self.task.rank,
                self.members.len()
            ));
        }
        if self.command.argv.first().is_some_and(|p| p.is_empty()) {
            return Err(format!(
                "task {}: the command names an empty program",
                self.task
            ));
        }
        for (name, _) in &self.command.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("task {}: bad environment name {name:?}", self.task));
            }
        }
        let nul = |s: &String| s.contains('\0');
        if self.command.argv.iter().any(nul) || self.command.env.iter().any(|(_, v)| nul(v)) {
            return Err(format!("task {}: command contains a nul byte", self.task));
        }
        Ok(())
    }
}

/// `site.spine.leaf.node`, the node's address in the switch tree.
pub fn topology_addr(topology: &Topology, node: NodeId) -> String {
    let n = topology.node(node);
    let site = &topology.site(n.site).name;
    let spine = &topology.spines()[n.spine.idx()].name;
    let leaf = &topology.leaves()[n.leaf.idx()].name;
    format!("{site}.{spine}.{leaf}.{}", n.name)
}

/// How a process ended, as `wait` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The shell's `$?` convention: the code, or 128 + the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for Exit {
    /// Slurm's `ExitCode` notation, `code:signal`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "{c}:0"),
            Exit::Signal(s) => write!(f, "0:{s}"),
        }
    }
}

/// How a task's process ended, as its supervisor recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ended {
    /// The process ran and exited.
    Exit(Exit),
    /// The process could not be started (no such program, bad working directory, …).
    LaunchError(String),
}

/// The supervisor's durable record of a task's end.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExitRecord {
    /// How it ended.
    pub ended: Ended,
    /// OOM kills counted in the task's cgroup (`memory.events` `oom_kill`); 0 without a memory
    /// controller.
    pub oom_kills: u64,
    /// When the supervisor saw it end.
    pub finished_ms: Millis,
}

/// Why the agent is killing a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillReason {
    /// The scheduler (or user) cancelled it.
    Cancel,
    /// It ran past its time limit.
    TimeLimit,
    /// Its supervisor did not confirm the start in time.
    StartTimeout,
}

impl KillReason {
    /// Stable lower-case name, used in state files.
    pub fn name(self) -> &'static str {
        match self {
            KillReason::Cancel => "cancel",
            KillReason::TimeLimit => "time_limit",
            KillReason::StartTimeout => "start_timeout",
        }
    }

    /// Inverse of [`KillReason::name`].
    pub fn parse(text: &str) -> Option<KillReason> {
        [
            KillReason::Cancel,
            KillReason::TimeLimit,
            KillReason::StartTimeout,
        ]
        .into_iter()
        .find(|r| r.name() == text)
    }
}

/// How a task ended, in Slurm's terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Exited with code 0.
    Completed,
    /// Exited non-zero, or died of a signal the agent did not send.
    Failed(Exit),
    /// Killed because it was cancelled.
    Cancelled,
    /// Killed at its time limit.
    TimeLimit,
    /// The kernel's OOM killer acted in its cgroup (memory limit reached).
    OutOfMemory,
    /// The task was lost: its processes are gone and no exit was recorded (node reboot,
    /// supervisor killed).
    NodeFail(String),
    /// The task never started.
    LaunchFailed(String),
}

impl Outcome {
    /// The Slurm job state this outcome maps to (`COMPLETED`, `FAILED`, …).
    pub fn slurm_state(&self) -> &'static str {
        match self {
            Outcome::Completed => "COMPLETED",
            Outcome::Failed(_) | Outcome::LaunchFailed(_) => "FAILED",
            Outcome::Cancelled => "CANCELLED",
            Outcome::TimeLimit => "TIMEOUT",
            Outcome::OutOfMemory => "OUT_OF_MEMORY",
            Outcome::NodeFail(_) => "NODE_FAIL",
        }
    }

    /// Whether the task did what it was asked to.
    pub fn is_success(&self) -> bool {
        *self == Outcome::Completed
    }
}

/// `COMPLETED`, `FAILED (exit 1:0)`, `NODE_FAIL (reason)`, …
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slurm_state())?;
        match self {
            Outcome::Failed(exit) => write!(f, " (exit {exit})"),
            Outcome::NodeFail(why) | Outcome::LaunchFailed(why) => write!(f, " ({why})"),
            _ => Ok(()),
        }
    }
}

/// A finished task, as reported to the scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// The process's exit, when one was recorded.
    pub exit: Option<Exit>,
    /// When the process started, if it did.
    pub started_ms: Option<Millis>,
    /// When the agent (or supervisor) saw the end.
    pub finished_ms: Millis,
    /// OOM kills counted in its cgroup.
    pub oom_kills: u64,
}

/// Classifies a recorded end. Precedence: the agent's own kill reason (cancel, time limit),
/// then a launch error, then OOM kills, then the exit code. A task killed for a cancel that
/// exits 0 before the signal lands is still `Cancelled`, as in Slurm.
pub fn classify(kill: Option<KillReason>, record: &ExitRecord) -> Outcome {
    match (kill, &record.ended) {
        (Some(KillReason::Cancel), _) => Outcome::Cancelled,
        (Some(KillReason::TimeLimit), _) => Outcome::TimeLimit,
        (_, Ended::LaunchError(why)) => Outcome::LaunchFailed(why.clone()),
        (Some(KillReason::StartTimeout), _) => {
            Outcome::LaunchFailed("the supervisor did not confirm the start in time".into())
        }
        (None, Ended::Exit(_)) if record.oom_kills > 0 => Outcome::OutOfMemory,
        (None, Ended::Exit(Exit::Code(0))) => Outcome::Completed,
        (None, Ended::Exit(exit)) => Outcome::Failed(*exit),
    }
}

/// What the agent tells the scheduler about a task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The process is running (sent once, when it starts or is adopted).
    Running {
        /// When it started.
        started_ms: Millis,
    },
    /// The task ended; sent until acknowledged.
    Finished(Finished),
}

/// A status report for one task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Report {
    /// The task.
    pub task: TaskId,
    /// Its status.
    pub status: Status,
}

/// A minimal job spec for tests: a CPU-only batch task named `j` of tenant `t` in `AU`. Built
/// through the job file parser so that new `JobSpec` fields take their defaults.
#[cfg(test)]
pub(crate) fn test_spec() -> JobSpec {
    sovra_scheduler::jobfile::parse_job("name = \"j\"\ntenant = \"t\"\njurisdictions = [\"AU\"]\n")
        .expect("a valid job file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ended: Ended, oom_kills: u64) -> ExitRecord {
        ExitRecord {
            ended,
            oom_kills,
            finished_ms: 0,
        }
    }

    #[test]
    fn classify_table() {
        let code = |c| Ended::Exit(Exit::Code(c));
        let sig = |s| Ended::Exit(Exit::Signal(s));
        let launch = Ended::LaunchError("no such file".into());
        let cases = [
            (None, record(code(0), 0), "COMPLETED"),
            (None, record(code(3), 0), "FAILED (exit 3:0)"),
            (None, record(sig(9), 0), "FAILED (exit 0:9)"),
            (None, record(sig(9), 1), "OUT_OF_MEMORY"),
            (None, record(code(0), 2), "OUT_OF_MEMORY"),
            (Some(KillReason::Cancel), record(sig(9), 0), "CANCELLED"),
            (Some(KillReason::Cancel), record(code(0), 0), "CANCELLED"),
            (Some(KillReason::Cancel), record(sig(9), 1), "CANCELLED"),
            (Some(KillReason::TimeLimit), record(sig(15), 0), "TIMEOUT"),
            (None, record(launch.clone(), 0), "FAILED (no such file)"),
            (Some(KillReason::Cancel), record(launch, 0), "CANCELLED"),
            (
                Some(KillReason::StartTimeout),
                record(sig(9), 0),
                "FAILED (the supervisor did not confirm the start in time)",
            ),
        ];
        for (kill, rec, want) in cases {
            assert_eq!(classify(kill, &rec).to_string(), want, "{kill:?} {rec:?}");
        }
    }

    #[test]
    fn assignment_from_plan_names_nodes() {
        use sovra_fabric::inventory::load_inventory;
        use sovra_fabric::GpuTake;
        use sovra_scheduler::core::job::{GpuRequest, Workload};
        use sovra_scheduler::core::placement::MemberSlot;

        let topology = load_inventory(
            "[[site]]\nname = \"syd1\"\njurisdiction = \"AU\"\nregion = \"r\"\n\
             [[site.nodes]]\nnames = \"syd1-n[1-2]\"\nspine = \"s0\"\nleaf = \"l0\"\n\
             cpus = 8\nmemory_gb = 64\ngpus = \"2xH100\"\n",
        )
        .unwrap();
        let take = |mask| Take {
            cpu_milli: 1000,
            memory_mib: 1024,
            gpus: GpuTake::Whole { mask },
        };
        let plan = Plan {
            job: JobId(5),
            seed: 0,
            members: vec![
                MemberSlot {
                    node: NodeId(1),
                    take: take(0b01),
                },
                MemberSlot {
                    node: NodeId(0),
                    take: take(0b10),
                },
            ],
        };
        let mut spec = test_spec();
        spec.workload = Workload::Batch {
            gpus: GpuRequest::Whole(1),
        };
        let command = Command {
            argv: vec!["true".into()],
            env: vec![],
            cwd: None,
        };
        let a = Assignment::from_plan(&topology, &spec, &plan, 1, command);
        assert_eq!(a.task, TaskId::new(5, 1));
        assert_eq!(a.members[0].node, "syd1-n2");
        assert_eq!(a.member().node, "syd1-n1");
        assert_eq!(
            a.member().topology_addr.as_deref(),
            Some("syd1.s0.l0.syd1-n1")
        );
        assert_eq!(a.member().take, take(0b10));
        assert_eq!(a.validate(), Ok(()));
        let mut bad = a.clone();
        bad.command.argv = vec![String::new()];
        let why = "task 5-1: the command names an empty program";
        assert_eq!(bad.validate(), Err(why.into()));
        let mut hold = a.clone();
        hold.command.argv.clear();
        assert_eq!(hold.validate(), Ok(()));
        assert_eq!(hold.command.effective_argv(), ["sleep", "infinity"]);
    }

    #[test]
    fn task_id_round_trip() {
        let id = TaskId::new(42, 3);
        assert_eq!(id.to_string(), "42-3");
        assert_eq!(TaskId::parse("42-3"), Some(id));
        for bad in ["", "42", "42-", "-3", "a-3", "42-3-1", "42--3", "+4-3"] {
            assert_eq!(TaskId::parse(bad), None, "{bad}");
        }
        for reason in [
            KillReason::Cancel,
            KillReason::TimeLimit,
            KillReason::StartTimeout,
        ] {
            assert_eq!(KillReason::parse(reason.name()), Some(reason));
        }
    }
}
