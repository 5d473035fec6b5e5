//! The shim's view of a cluster, in Slurm's terms: jobs, nodes and partitions as `squeue`,
//! `sinfo`, `sacct` and `scontrol show` print them. The glue in [`super`] fills it from
//! sovra's API; the formatters are pure functions of it (and of `now`), so the conformance
//! tests run without a cluster.

/// A job's state, as Slurm names it (`squeue %T` long, `%t` short).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
    /// `PENDING` / `PD`.
    #[default]
    Pending,
    /// `RUNNING` / `R`.
    Running,
    /// `SUSPENDED` / `S`.
    Suspended,
    /// `COMPLETING` / `CG`.
    Completing,
    /// `COMPLETED` / `CD`.
    Completed,
    /// `CONFIGURING` / `CF`.
    Configuring,
    /// `CANCELLED` / `CA`.
    Cancelled,
    /// `FAILED` / `F`.
    Failed,
    /// `TIMEOUT` / `TO`.
    Timeout,
    /// `PREEMPTED` / `PR`.
    Preempted,
    /// `NODE_FAIL` / `NF`.
    NodeFail,
    /// `BOOT_FAIL` / `BF`.
    BootFail,
    /// `DEADLINE` / `DL`.
    Deadline,
    /// `OUT_OF_MEMORY` / `OOM`.
    OutOfMemory,
    /// `REQUEUED` / `RQ`.
    Requeued,
}

impl JobState {
    /// The long name (`squeue %T`, `sacct State`).
    pub fn long(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Suspended => "SUSPENDED",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Configuring => "CONFIGURING",
            JobState::Cancelled => "CANCELLED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::Preempted => "PREEMPTED",
            JobState::NodeFail => "NODE_FAIL",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Requeued => "REQUEUED",
        }
    }

    /// The compact code (`squeue %t`).
    pub fn short(self) -> &'static str {
        match self {
            JobState::Pending => "PD",
            JobState::Running => "R",
            JobState::Suspended => "S",
            JobState::Completing => "CG",
            JobState::Completed => "CD",
            JobState::Configuring => "CF",
            JobState::Cancelled => "CA",
            JobState::Failed => "F",
            JobState::Timeout => "TO",
            JobState::Preempted => "PR",
            JobState::NodeFail => "NF",
            JobState::BootFail => "BF",
            JobState::Deadline => "DL",
            JobState::OutOfMemory => "OOM",
            JobState::Requeued => "RQ",
        }
    }

    /// Every state, in `job_state_num`'s order.
    pub const ALL: [JobState; 15] = [
        JobState::Pending,
        JobState::Running,
        JobState::Suspended,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Failed,
        JobState::Timeout,
        JobState::NodeFail,
        JobState::Preempted,
        JobState::BootFail,
        JobState::Deadline,
        JobState::OutOfMemory,
        JobState::Completing,
        JobState::Configuring,
        JobState::Requeued,
    ];

    /// The state a long or compact name means (`RUNNING`, `r`), case-insensitive.
    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|s| name.eq_ignore_ascii_case(s.long()) || name.eq_ignore_ascii_case(s.short()))
    }

    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            JobState::Pending
                | JobState::Running
                | JobState::Suspended
                | JobState::Completing
                | JobState::Configuring
        )
    }
}

/// One job (one array task is one job, as in Slurm).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Job {
    /// `JobId`.
    pub job_id: u64,
    /// For an array task: the array's job id (`ArrayJobId`, `%F`, `%A`).
    pub array_job_id: Option<u64>,
    /// For an array task: its index (`ArrayTaskId`, `%K`, `%a`).
    pub array_task_id: Option<u32>,
    /// `JobName`.
    pub name: String,
    /// Submitting user (`UserId` name part).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group name.
    pub group: String,
    /// Its gid.
    pub gid: u32,
    /// `Account` (sovra: the tenant).
    pub account: String,
    /// `Partition`.
    pub partition: String,
    /// `QOS`.
    pub qos: String,
    /// `JobState`.
    pub state: JobState,
    /// `Reason`: `None` when running; `Resources`, `Priority`, `Dependency`, `JobHeldUser`,
    /// `BeginTime`, `JobArrayTaskLimit`, ... while pending.
    pub reason: String,
    /// `Priority`.
    pub priority: u32,
    /// `Nice`.
    pub nice: i32,
    /// `SubmitTime`, Unix seconds.
    pub submit_time: i64,
    /// `EligibleTime`, Unix seconds.
    pub eligible_time: Option<i64>,
    /// `StartTime` (expected start while pending, when known), Unix seconds.
    pub start_time: Option<i64>,
    /// `EndTime`, Unix seconds.
    pub end_time: Option<i64>,
    /// `TimeLimit` in minutes; `None` is `UNLIMITED`.
    pub time_limit_min: Option<u64>,
    /// Allocated nodes (`NodeList`), in allocation order; empty while pending.
    pub nodes: Vec<String>,
    /// `ReqNodeList` (`-w`).
    pub req_nodes: Vec<String>,
    /// `ExcNodeList` (`-x`).
    pub exc_nodes: Vec<String>,
    /// `NumNodes` (requested while pending, allocated after).
    pub num_nodes: u32,
    /// `NumCPUs`.
    pub num_cpus: u32,
    /// `NumTasks`.
    pub num_tasks: u32,
    /// `CPUs/Task`.
    pub cpus_per_task: u32,
    /// Memory per node in MiB (`MinMemoryNode`, `mem=` in TRES).
    pub mem_per_node_mb: u64,
    /// GPUs in all (`gres/gpu=` in TRES).
    pub gpus: u32,
    /// `TresPerNode`, e.g. `gres:gpu:8` (empty for none).
    pub tres_per_node: String,
    /// `Features` (`-C`).
    pub features: String,
    /// `Dependency` as given (`afterok:12:13`), empty for none.
    pub dependency: String,
    /// `WorkDir`.
    pub work_dir: String,
    /// `Command` (the batch script path, or `(null)`).
    pub command: String,
    /// `StdOut` path, patterns expanded.
    pub stdout: String,
    /// `StdErr` path, patterns expanded.
    pub stderr: String,
    /// `ExitCode` code part.
    pub exit_code: i32,
    /// `ExitCode` signal part.
    pub exit_signal: i32,
    /// `BatchHost`: the first allocated node.
    pub batch_host: Option<String>,
    /// `Restarts`.
    pub restarts: u32,
    /// `Requeue` allowed.
    pub requeue: bool,
    /// `Comment`.
    pub comment: String,
    /// sovra: the jurisdictions the job may run in (shown by `scontrol show job`).
    pub jurisdictions: Vec<String>,
}

/// A node's state as `sinfo` shows it (`%t` short, `%T` long).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeState {
    /// `idle`.
    Idle,
    /// `mixed` / `mix`: some but not all CPUs or GPUs allocated.
    Mixed,
    /// `allocated` / `alloc`.
    Allocated,
    /// `draining` / `drng`: drained with jobs still running.
    Draining,
    /// `drained` / `drain`.
    Drained,
    /// `down`.
    Down,
    /// `unknown` / `unk`: declared, agent not yet registered.
    Unknown,
}

impl NodeState {
    /// `sinfo %T`.
    pub fn long(self) -> &'static str {
        match self {
            NodeState::Idle => "idle",
            NodeState::Mixed => "mixed",
            NodeState::Allocated => "allocated",
            NodeState::Draining => "draining",
            NodeState::Drained => "drained",
            NodeState::Down => "down",
            NodeState::Unknown => "unknown",
        }
    }

    /// `sinfo %t`.
    pub fn short(self) -> &'static str {
        match self {
            NodeState::Idle => "idle",
            NodeState::Mixed => "mix",
            NodeState::Allocated => "alloc",
            NodeState::Draining => "drng",
            NodeState::Drained => "drain",
            NodeState::Down => "down",
            NodeState::Unknown => "unk",
        }
    }
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `NodeName`.
    pub name: String,
    /// `State`.
    pub state: NodeState,
    /// `*` suffix in sinfo: the agent is not responding.
    pub not_responding: bool,
    /// Partitions holding it.
    pub partitions: Vec<String>,
    /// `CPUTot`.
    pub cpus: u32,
    /// `CPUAlloc`.
    pub cpus_alloc: u32,
    /// `RealMemory` in MiB.
    pub real_memory_mb: u64,
    /// `AllocMem` in MiB.
    pub alloc_memory_mb: u64,
    /// `Gres`, e.g. `gpu:h100:8` (empty for none).
    pub gres: String,
    /// GPUs allocated (`GresUsed` count).
    pub gpus_alloc: u32,
    /// `AvailableFeatures` / `ActiveFeatures` (comma separated).
    pub features: String,
    /// `Reason` (drain or down), empty for none.
    pub reason: String,
    /// Who set the reason.
    pub reason_user: String,
    /// When, Unix seconds.
    pub reason_time: Option<i64>,
    /// sovra: the node's site.
    pub site: String,
    /// sovra: the site's jurisdiction.
    pub jurisdiction: String,
}

/// One partition (a sovra queue bound to sites and jurisdictions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// `PartitionName`.
    pub name: String,
    /// `Default=YES`.
    pub default: bool,
    /// `State=UP` (else `DOWN`).
    pub up: bool,
    /// `MaxTime` in minutes; `None` is `UNLIMITED`.
    pub max_time_min: Option<u64>,
    /// `DefaultTime` in minutes; `None` is `NONE`.
    pub default_time_min: Option<u64>,
    /// Its nodes, in inventory order.
    pub nodes: Vec<String>,
    /// sovra: the jurisdictions its sites are in.
    pub jurisdictions: Vec<String>,
    /// sovra: its sites.
    pub sites: Vec<String>,
}

/// Everything a read command looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `ClusterName`.
    pub cluster: String,
    /// Now, Unix seconds (elapsed times are computed against it).
    pub now: i64,
    /// Jobs, by id.
    pub jobs: Vec<Job>,
    /// Nodes, in inventory order.
    pub nodes: Vec<Node>,
    /// Partitions, in configuration order.
    pub partitions: Vec<Partition>,
}

/// What a Slurm command prints and returns: (exit code, stdout, stderr).
pub type Output = (u8, String, String);
