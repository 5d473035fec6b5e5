//! The replicated state machine: `apply(entry)` is a deterministic function of
//! `(state, entry)`.
//!
//! Every replica applies the same committed entries in the same order and reaches the same
//! state, byte for byte ([`StateMachine::state_hash`]). Scheduling is split in two, as in
//! Nomad: the leader calls [`StateMachine::plan_pass`] against its committed state, which
//! returns one [`Command::SchedulePass`] holding every plan and deferral of the pass; that
//! command goes through the log, and `apply` re-checks each plan against the state at apply
//! time, rejecting stale plans (the job stays pending with reason `StalePlan`).
//!
//! Pending jobs wait in a priority queue (priority, then submit order). A pending job is
//! retried only when capacity may have grown since its last attempt (the capacity epoch moved:
//! a job ended, a node came up, an RTT changed), so an idle cluster does no work.
//!
//! Sovereignty: a state machine governs one scope of jurisdictions. It holds only the sites of
//! that scope and the jobs allowed there, and no command needs another scope's data to apply.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use sovra_fabric::{Jurisdiction, JurisdictionMask, Ledger, NodeId, Topology};

use crate::core::job::{DepKind, JobId, JobSpec};
use crate::core::placement::{
    self, ClusterView, Explanation, Outcome, PendingReason, Plan, PolicyConfig, Unschedulable,
};
use crate::core::rng::placement_seed;

/// Most jobs one state machine holds (pending, running and finished-but-retained).
pub const JOBS_MAX: usize = 1_000_000;
/// Most plans in one scheduling pass.
pub const PASS_PLANS_MAX: usize = 4_096;
/// Most tenant networks (the VLAN id space, 1..=4094).
pub const TENANT_NETS_MAX: u32 = 4094;
/// Times a job is requeued after node failures before it fails with `NodeFail`.
pub const REQUEUE_MAX: u32 = 3;

/// Lifecycle of a job (Slurm's states where they mean the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
    /// Waiting for resources (reason kept in the record).
    Pending,
    /// Resources allocated; the agent has not reported it running.
    Placed,
    /// Running.
    Running,
    /// Exited 0.
    Completed,
    /// Exited non-zero or failed to launch.
    Failed,
    /// Cancelled by a user or an operator.
    Cancelled,
    /// Hit its time limit.
    Timeout,
    /// Lost to node failures more than [`REQUEUE_MAX`] times.
    NodeFail,
    /// Killed by the memory limit.
    OutOfMemory,
}

impl JobState {
    /// Slurm's compact state code (`squeue %t`).
    pub fn code(self) -> &'static str {
        match self {
            JobState::Pending => "PD",
            JobState::Placed => "CF",
            JobState::Running => "R",
            JobState::Completed => "CD",
            JobState::Failed => "F",
            JobState::Cancelled => "CA",
            JobState::Timeout => "TO",
            JobState::NodeFail => "NF",
            JobState::OutOfMemory => "OOM",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobState::Pending | JobState::Placed | JobState::Running
        )
    }

    /// Whether the job holds resources.
    pub fn holds_resources(self) -> bool {
        matches!(self, JobState::Placed | JobState::Running)
    }
}

/// How a running job ended, as reported by its agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// Exit code 0.
    Completed,
    /// Non-zero exit code (or signal as 128+n).
    Failed(i32),
    /// Killed by the cgroup memory limit.
    OutOfMemory,
}

/// Operational state of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Declared but its agent has not registered yet.
    Unknown,
    /// Up and schedulable.
    Up,
    /// Up; running jobs continue, nothing new is placed.
    Drained,
    /// Down: its jobs were requeued or failed.
    Down,
}

/// A state-machine command. Each is carried in one log entry.
// `Submit` is much larger than the rest (a whole job spec); boxing it would add an allocation
// to every submission to save bytes on commands that are short-lived anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// An agent registered: the node is up.
    RegisterNode {
        /// Node name.
        node: String,
    },
    /// A new job.
    Submit {
        /// The job.
        spec: JobSpec,
        /// The client's request id: a retried submission with the same id gets the job the
        /// first one created, never a second job (exactly-once submission).
        request: Option<RequestId>,
    },
    /// The leader's scheduling pass.
    SchedulePass {
        /// Capacity epoch the pass was planned at.
        epoch: u64,
        /// Plans, in queue order.
        plans: Vec<Plan>,
        /// Jobs that could not be placed, with why.
        deferred: Vec<(JobId, Unschedulable)>,
    },
    /// The agent started the job.
    Start {
        /// Job.
        job: JobId,
    },
    /// The job ended.
    Finish {
        /// Job.
        job: JobId,
        /// How.
        status: ExitStatus,
    },
    /// Cancel a job in any live state.
    Cancel {
        /// Job.
        job: JobId,
    },
    /// Stop placing on a node.
    Drain {
        /// Node.
        node: String,
    },
    /// Undo a drain.
    Resume {
        /// Node.
        node: String,
    },
    /// The node is lost: requeue (or fail) its jobs.
    FailNode {
        /// Node.
        node: String,
    },
    /// Hold a pending job: it is not placed until released.
    Hold {
        /// Job.
        job: JobId,
    },
    /// Release a held job.
    Release {
        /// Job.
        job: JobId,
    },
    /// Put a placed or running job back in the queue (its processes are killed).
    Requeue {
        /// Job.
        job: JobId,
    },
    /// Change a live job's time limit (`None`: unlimited).
    SetTimeLimit {
        /// Job.
        job: JobId,
        /// The new limit.
        time_limit_ms: Option<u64>,
    },
    /// A measured inter-site RTT.
    SetSiteRtt {
        /// Site.
        a: String,
        /// Site.
        b: String,
        /// RTT.
        rtt_ns: u64,
    },
    /// Enforce time limits at the entry's time.
    Tick,
}

/// A client's id for one request, unique per client: the client's id and a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// The client (chosen at random by the client when it starts).
    pub client: u64,
    /// The client's request counter.
    pub seq: u64,
}

/// A committed log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Log index; strictly increasing.
    pub index: u64,
    /// Leader's clock when proposed (ms since the Unix epoch). Only used as data.
    pub time_ms: u64,
    /// The command.
    pub command: Command,
}

/// What applying an entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing more to say.
    Ok,
    /// A job was accepted.
    Submitted(JobId),
    /// A scheduling pass: placed jobs, and plans rejected as stale.
    Scheduled {
        /// Jobs now placed.
        placed: Vec<JobId>,
        /// Jobs whose plans no longer fit.
        stale: Vec<JobId>,
    },
    /// Jobs ended by the command (time limits, node failure), for the shell to kill.
    Ended(Vec<JobId>),
    /// The command was refused; the state is unchanged.
    Rejected(String),
}

/// A job and everything known about it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobRecord {
    /// Id.
    pub id: JobId,
    /// As submitted.
    pub spec: JobSpec,
    /// Lifecycle state.
    pub state: JobState,
    /// Log index of the submit.
    pub submit_index: u64,
    /// Submit time.
    pub submit_ms: u64,
    /// Start time (running).
    pub start_ms: Option<u64>,
    /// End time.
    pub end_ms: Option<u64>,
    /// Current allocation.
    pub plan: Option<Plan>,
    /// Why pending, when pending.
    pub reason: Option<Unschedulable>,
    /// Capacity epoch of the last placement attempt.
    pub tried_epoch: Option<u64>,
    /// Requeues after node failures.
    pub restarts: u32,
    /// Exit code when ended by the job itself.
    pub exit_code: Option<i32>,
    /// The request that submitted the job, if the client gave one.
    pub request: Option<RequestId>,
    /// The last allocation the job held, kept after it ended or was requeued: where it ran,
    /// for accounting and for proving it stayed inside its jurisdictions.
    pub ran_on: Option<Plan>,
    /// Held: not placed until released.
    pub held: bool,
    /// Its dependency, resolved to job ids at submit.
    pub deps: Option<Deps>,
    /// Its place in a job array.
    pub array: Option<ArrayTask>,
    /// Its network isolation, set with its allocation (and kept after, for audit).
    pub isolation: Option<IsolationIntent>,
}

/// A dependency resolved at submit: an array's job id became one term per task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Deps {
    /// Any one term suffices (otherwise all).
    pub any: bool,
    /// Conditions on jobs (`Singleton` terms name the job itself).
    pub terms: Vec<(DepKind, JobId)>,
}

/// A job's place in its array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArrayTask {
    /// The array's job id (its first task's id).
    pub job: JobId,
    /// This task's index.
    pub index: u32,
    /// Most tasks of the array placed or running at once; 0 is no limit.
    pub throttle: u32,
}

/// How a job's traffic is kept apart from other tenants', committed with its allocation (in
/// the same log entry) so an agent applies both or neither. Every job of a tenant shares its
/// tenant's network; the backends derive their identifiers from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IsolationIntent {
    /// The tenant's network, 1..=[`TENANT_NETS_MAX`].
    pub net: u32,
}

impl IsolationIntent {
    /// The 802.1Q VLAN id (and Linux VRF table) of the network.
    pub fn vlan(self) -> u16 {
        self.net as u16
    }

    /// The InfiniBand partition key: full membership (top bit) of partition `net`.
    pub fn ib_pkey(self) -> u16 {
        0x8000 | self.net as u16
    }
}

/// Whether a dependency holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DepStatus {
    Satisfied,
    Waiting,
    Never,
}

/// Bounded priority queue of pending jobs: priority (high first), then submit order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PendingQueue {
    set: BTreeSet<(Reverse<u32>, u64, JobId)>,
}

impl PendingQueue {
    pub(crate) fn insert(&mut self, priority: u32, seq: u64, job: JobId) {
        assert!(self.set.len() < JOBS_MAX);
        assert!(
            self.set.insert((Reverse(priority), seq, job)),
            "job {job} queued twice"
        );
    }

    fn remove(&mut self, priority: u32, seq: u64, job: JobId) {
        assert!(
            self.set.remove(&(Reverse(priority), seq, job)),
            "job {job} not queued"
        );
    }

    /// Jobs in scheduling order.
    pub fn iter(&self) -> impl Iterator<Item = JobId> + '_ {
        self.set.iter().map(|&(_, _, j)| j)
    }

    /// Number of pending jobs.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// The replicated scheduler state. See the module docs.
#[derive(Clone, Debug)]
pub struct StateMachine {
    pub(crate) topology: Topology,
    pub(crate) ledger: Ledger,
    pub(crate) scope: Vec<Jurisdiction>,
    pub(crate) nodes: Vec<NodeState>,
    /// Per node: an agent has registered it, so the leader holds it to a heartbeat lease
    /// (nodes declared up without an agent, for demos and benchmarks, are not).
    pub(crate) agent_managed: Vec<bool>,
    pub(crate) jobs: BTreeMap<JobId, JobRecord>,
    /// Submissions by request id (derived from `jobs`): the exactly-once table.
    pub(crate) requests: BTreeMap<RequestId, JobId>,
    pub(crate) queue: PendingQueue,
    pub(crate) next_job: u64,
    pub(crate) applied_index: u64,
    pub(crate) epoch: u64,
    pub(crate) policy: PolicyConfig,
    /// The time of the last applied entry (leader clock): begin times are judged against it.
    pub(crate) clock_ms: u64,
    /// Each tenant's network, assigned in order when its first job is placed.
    pub(crate) tenant_nets: BTreeMap<String, u32>,
}

/// Why a state machine cannot be made for a topology and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl std::error::Error for ScopeError {}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StateMachine {
    /// A state machine for `topology`, governing the jurisdictions in `scope` (every site of
    /// the topology must be in scope: a group never holds a foreign site). Nodes start
    /// [`NodeState::Unknown`] until their agents register.
    pub fn new(
        topology: Topology,
        scope: &[Jurisdiction],
        policy: PolicyConfig,
    ) -> Result<StateMachine, ScopeError> {
        let mask = topology.jurisdiction_mask(scope);
        for site in topology.sites() {
            if !mask.contains(site.jurisdiction) {
                return Err(ScopeError(format!(
                    "site {} is in jurisdiction {}, outside this group's scope",
                    site.name,
                    topology.jurisdictions()[site.jurisdiction as usize]
                )));
            }
        }
        let mut ledger = Ledger::new(&topology);
        for i in 0..topology.nodes().len() {
            ledger.set_schedulable(&topology, NodeId::from_idx(i), false);
        }
        let mut scope: Vec<Jurisdiction> = scope.to_vec();
        scope.sort_unstable();
        scope.dedup();
        Ok(StateMachine {
            nodes: vec![NodeState::Unknown; topology.nodes().len()],
            agent_managed: vec![false; topology.nodes().len()],
            topology,
            ledger,
            scope,
            jobs: BTreeMap::new(),
            requests: BTreeMap::new(),
            queue: PendingQueue::default(),
            next_job: 1,
            applied_index: 0,
            epoch: 0,
            policy,
            clock_ms: 0,
            tenant_nets: BTreeMap::new(),
        })
    }

    /// A state machine whose scope is every jurisdiction of the topology and whose nodes are
    /// all up: for the simulator, benchmarks and tests.
    pub fn with_all_nodes_up(topology: Topology, policy: PolicyConfig) -> StateMachine {
        let scope = topology.jurisdictions().to_vec();
        let mut sm = StateMachine::new(topology, &scope, policy).expect("full scope");
        for i in 0..sm.nodes.len() {
            sm.set_node_state(NodeId::from_idx(i), NodeState::Up);
        }
        sm.epoch = 1;
        sm
    }

    /// Whether an agent registered `node` (the leader then holds it to a heartbeat lease).
    pub fn agent_managed(&self, node: NodeId) -> bool {
        self.agent_managed[node.idx()]
    }

    /// Whether `node` is up (placing on it or not): its jobs run there.
    pub fn node_in_service(&self, node: NodeId) -> bool {
        matches!(self.nodes[node.idx()], NodeState::Up | NodeState::Drained)
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Free capacity.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The placement view of the committed state.
    pub fn view(&self) -> ClusterView<'_> {
        ClusterView {
            topology: &self.topology,
            ledger: &self.ledger,
        }
    }

    /// Policy in force.
    pub fn policy(&self) -> &PolicyConfig {
        &self.policy
    }

    /// Jurisdictions this state machine governs.
    pub fn scope(&self) -> &[Jurisdiction] {
        &self.scope
    }

    /// A job.
    pub fn job(&self, id: JobId) -> Option<&JobRecord> {
        self.jobs.get(&id)
    }

    /// All jobs, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    /// Pending jobs in scheduling order.
    pub fn pending(&self) -> &PendingQueue {
        &self.queue
    }

    /// A node's state.
    pub fn node_state(&self, node: NodeId) -> NodeState {
        self.nodes[node.idx()]
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Capacity epoch: bumps whenever capacity may have grown.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn set_node_state(&mut self, node: NodeId, state: NodeState) {
        self.nodes[node.idx()] = state;
        self.ledger
            .set_schedulable(&self.topology, node, state == NodeState::Up);
    }

    fn node_named(&self, name: &str) -> Result<NodeId, String> {
        self.topology
            .node_by_name(name)
            .ok_or_else(|| format!("unknown node {name:?}"))
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) -> Applied {
        assert!(
            entry.index > self.applied_index,
            "entry {} applied after {}",
            entry.index,
            self.applied_index
        );
        self.applied_index = entry.index;
        let now = entry.time_ms;
        self.clock_ms = self.clock_ms.max(now);
        let applied = match &entry.command {
            Command::RegisterNode { node } => match self.node_named(node) {
                Err(e) => Applied::Rejected(e),
                Ok(id) => {
                    self.agent_managed[id.idx()] = true;
                    if self.nodes[id.idx()] != NodeState::Up {
                        if self.nodes[id.idx()] != NodeState::Drained {
                            self.set_node_state(id, NodeState::Up);
                        }
                        self.epoch += 1;
                    }
                    Applied::Ok
                }
            },
            Command::Submit { spec, request } => self.apply_submit(entry, spec, *request),
            Command::SchedulePass {
                epoch,
                plans,
                deferred,
            } => self.apply_pass(*epoch, plans, deferred),
            Command::Start { job } => match self.jobs.get_mut(job) {
                Some(r) if r.state == JobState::Placed => {
                    r.state = JobState::Running;
                    r.start_ms = Some(now);
                    // Jobs waiting for this one to start (`after`) may now run.
                    let waiting = self.has_dependents(*job);
                    if waiting {
                        self.epoch += 1;
                    }
                    Applied::Ok
                }
                Some(r) => Applied::Rejected(format!("job {job} is {:?}, not placed", r.state)),
                None => Applied::Rejected(format!("unknown job {job}")),
            },
            Command::Finish { job, status } => {
                let state = match status {
                    ExitStatus::Completed => JobState::Completed,
                    ExitStatus::Failed(_) => JobState::Failed,
                    ExitStatus::OutOfMemory => JobState::OutOfMemory,
                };
                match self.jobs.get(job).map(|r| r.state) {
                    Some(JobState::Running | JobState::Placed) => {
                        self.end_job(*job, state, now);
                        let r = self.jobs.get_mut(job).expect("present");
                        r.exit_code = match status {
                            ExitStatus::Completed => Some(0),
                            ExitStatus::Failed(code) => Some(*code),
                            ExitStatus::OutOfMemory => None,
                        };
                        Applied::Ok
                    }
                    Some(s) => Applied::Rejected(format!("job {job} is {s:?}, not running")),
                    None => Applied::Rejected(format!("unknown job {job}")),
                }
            }
            Command::Cancel { job } => match self.jobs.get(job).map(|r| r.state) {
                Some(s) if !s.is_terminal() => {
                    self.end_job(*job, JobState::Cancelled, now);
                    Applied::Ok
                }
                Some(s) => Applied::Rejected(format!("job {job} already ended ({s:?})")),
                None => Applied::Rejected(format!("unknown job {job}")),
            },
            Command::Drain { node } => match self.node_named(node) {
                Err(e) => Applied::Rejected(e),
                Ok(id) => {
                    match self.nodes[id.idx()] {
                        NodeState::Down => {
                            return Applied::Rejected(format!("node {node} is down"));
                        }
                        NodeState::Unknown => {
                            return Applied::Rejected(format!(
                                "node {node} has not registered yet"
                            ));
                        }
                        NodeState::Up | NodeState::Drained => {}
                    }
                    self.set_node_state(id, NodeState::Drained);
                    Applied::Ok
                }
            },
            Command::Resume { node } => match self.node_named(node) {
                Err(e) => Applied::Rejected(e),
                Ok(id) => {
                    if self.nodes[id.idx()] != NodeState::Drained {
                        return Applied::Rejected(format!("node {node} is not drained"));
                    }
                    self.set_node_state(id, NodeState::Up);
                    self.epoch += 1;
                    Applied::Ok
                }
            },
            Command::FailNode { node } => match self.node_named(node) {
                Err(e) => Applied::Rejected(e),
                Ok(id) => Applied::Ended(self.fail_node(id, now)),
            },
            Command::Hold { job } => match self.jobs.get_mut(job) {
                Some(r) if r.state == JobState::Pending => {
                    r.held = true;
                    r.tried_epoch = None;
                    Applied::Ok
                }
                Some(_) => Applied::Rejected(format!("job {job} is no longer pending")),
                None => Applied::Rejected(format!("unknown job {job}")),
            },
            Command::Release { job } => match self.jobs.get_mut(job) {
                Some(r) if r.state == JobState::Pending => {
                    r.held = false;
                    r.tried_epoch = None;
                    Applied::Ok
                }
                Some(_) => Applied::Rejected(format!("job {job} is no longer pending")),
                None => Applied::Rejected(format!("unknown job {job}")),
            },
            Command::Requeue { job } => match self.jobs.get(job).map(|r| r.state) {
                Some(JobState::Placed | JobState::Running) => {
                    self.requeue(*job);
                    Applied::Ended(vec![*job])
                }
                Some(s) => Applied::Rejected(format!("job {job} is {s:?}, not placed or running")),
                None => Applied::Rejected(format!("unknown job {job}")),
            },
            Command::SetTimeLimit { job, time_limit_ms } => match self.jobs.get_mut(job) {
                Some(r) if !r.state.is_terminal() => {
                    if *time_limit_ms == Some(0) {
                        return Applied::Rejected("time limit must be positive".into());
                    }
                    // Its agent enforces the limit it was given: a placed job's may only shrink
                    // (the leader's tick ends it at the new one).
                    let longer = match (time_limit_ms, r.spec.time_limit_ms) {
                        (_, None) => false,
                        (None, Some(_)) => true,
                        (Some(new), Some(old)) => new > &old,
                    };
                    if r.state != JobState::Pending && longer {
                        return Applied::Rejected(format!(
                            "job {job} is {:?}: its time limit may only be reduced",
                            r.state
                        ));
                    }
                    r.spec.time_limit_ms = *time_limit_ms;
                    Applied::Ok
                }
                Some(r) => Applied::Rejected(format!("job {job} already ended ({:?})", r.state)),
                None => Applied::Rejected(format!("unknown job {job}")),
            },
            Command::SetSiteRtt { a, b, rtt_ns } => {
                match (self.topology.site_by_name(a), self.topology.site_by_name(b)) {
                    (Some(sa), Some(sb)) if sa != sb => {
                        self.topology.set_site_rtt_ns(sa, sb, *rtt_ns);
                        self.epoch += 1;
                        Applied::Ok
                    }
                    (Some(_), Some(_)) => Applied::Rejected("rtt of a site to itself".into()),
                    _ => Applied::Rejected(format!("unknown site in {a:?}-{b:?}")),
                }
            }
            Command::Tick => {
                let expired: Vec<JobId> = self
                    .jobs
                    .values()
                    .filter(|r| r.state == JobState::Running)
                    .filter(|r| match (r.start_ms, r.spec.time_limit_ms) {
                        (Some(start), Some(limit)) => now >= start.saturating_add(limit),
                        _ => false,
                    })
                    .map(|r| r.id)
                    .collect();
                for &job in &expired {
                    self.end_job(job, JobState::Timeout, now);
                }
                // A begin time that has come: retry the job.
                let due = self.queue.iter().any(|j| {
                    let r = &self.jobs[&j];
                    r.spec.control.begin_ms.is_some_and(|b| b <= now)
                        && r.reason
                            .as_ref()
                            .is_some_and(|w| w.reason == PendingReason::BeginTime)
                });
                if due {
                    self.epoch += 1;
                }
                Applied::Ended(expired)
            }
        };
        self.check_invariants_cheap();
        applied
    }

    fn apply_submit(
        &mut self,
        entry: &Entry,
        spec: &JobSpec,
        request: Option<RequestId>,
    ) -> Applied {
        if let Some(job) = request.and_then(|r| self.requests.get(&r)) {
            return Applied::Submitted(*job);
        }
        let queued;
        let spec = if spec.control.queue.is_empty() {
            spec
        } else {
            match self.resolve_queue(spec) {
                Ok(s) => {
                    queued = s;
                    &queued
                }
                Err(e) => return Applied::Rejected(e),
            }
        };
        if let Err(e) = spec.validate() {
            return Applied::Rejected(e);
        }
        // Fail closed on jurisdiction: a job must be allowed somewhere in this group's scope.
        if !spec.jurisdictions.iter().any(|j| self.scope.contains(j)) {
            let asked: Vec<&str> = spec.jurisdictions.iter().map(|j| j.as_str()).collect();
            return Applied::Rejected(format!(
                "job allows jurisdictions [{}], none governed here",
                asked.join(",")
            ));
        }
        let tasks: Vec<Option<u32>> = match &spec.control.array {
            None => vec![None],
            Some(a) => a.indices.iter().map(|&i| Some(i)).collect(),
        };
        if self.jobs.len() + tasks.len() > JOBS_MAX {
            return Applied::Rejected(format!("job table full ({JOBS_MAX} jobs)"));
        }
        let first = JobId(self.next_job);
        let deps = match self.resolve_deps(spec, first) {
            Ok(deps) => deps,
            Err(e) => return Applied::Rejected(e),
        };
        for (k, task) in tasks.into_iter().enumerate() {
            let id = JobId(self.next_job);
            self.next_job += 1;
            let array = task.map(|index| ArrayTask {
                job: first,
                index,
                throttle: spec.control.array.as_ref().map_or(0, |a| a.throttle),
            });
            // A singleton term names each task itself.
            let deps = deps.clone().map(|mut d| {
                for t in &mut d.terms {
                    if t.0 == DepKind::Singleton {
                        t.1 = id;
                    }
                }
                d
            });
            self.jobs.insert(
                id,
                JobRecord {
                    id,
                    spec: spec.clone(),
                    state: JobState::Pending,
                    submit_index: entry.index,
                    submit_ms: entry.time_ms,
                    start_ms: None,
                    end_ms: None,
                    plan: None,
                    reason: None,
                    tried_epoch: None,
                    restarts: 0,
                    exit_code: None,
                    request: if k == 0 { request } else { None },
                    ran_on: None,
                    held: spec.control.hold,
                    deps,
                    array,
                    isolation: None,
                },
            );
            self.queue.insert(spec.priority, entry.index, id);
        }
        if let Some(r) = request {
            self.requests.insert(r, first);
        }
        Applied::Submitted(first)
    }

    /// A queue (Slurm partition) is bound to jurisdictions: `all` to every jurisdiction this
    /// group governs, a jurisdiction's code in lower case (`au`) to that one. A job in a queue
    /// may run only there (and only where it allows, if it names jurisdictions itself).
    fn resolve_queue(&self, spec: &JobSpec) -> Result<JobSpec, String> {
        let queue = &spec.control.queue;
        let bound: Vec<Jurisdiction> = if queue == "all" {
            self.scope.clone()
        } else {
            let code = queue.to_ascii_uppercase();
            match self.scope.iter().find(|j| j.as_str() == code) {
                Some(&j) if queue.chars().all(|c| c.is_ascii_lowercase()) => vec![j],
                _ => return Err(format!("invalid partition name specified: {queue}")),
            }
        };
        let mut out = spec.clone();
        out.jurisdictions = if spec.jurisdictions.is_empty() {
            bound
        } else {
            let both: Vec<Jurisdiction> = spec
                .jurisdictions
                .iter()
                .copied()
                .filter(|j| bound.contains(j))
                .collect();
            if both.is_empty() {
                return Err(format!(
                    "partition {queue} is outside the job's allowed jurisdictions"
                ));
            }
            both
        };
        Ok(out)
    }

    /// Resolves a spec's dependency to job ids: an array's job id stands for all its tasks,
    /// `N_M` for one task. An unknown job is an error (Slurm: "Job dependency problem").
    fn resolve_deps(&self, spec: &JobSpec, first: JobId) -> Result<Option<Deps>, String> {
        let Some(dep) = &spec.control.dependency else {
            return Ok(None);
        };
        let mut terms = Vec::new();
        for t in &dep.terms {
            if t.kind == DepKind::Singleton {
                terms.push((DepKind::Singleton, first));
                continue;
            }
            let id = JobId(t.job);
            let Some(r) = self.jobs.get(&id) else {
                return Err(format!("job dependency problem: unknown job {}", t.job));
            };
            // The tasks of the array whose job id this is (just this job when not an array).
            let array_job = r.array.map(|a| a.job).filter(|&a| a == id);
            match (t.task, array_job) {
                (Some(task), _) => {
                    let found = self
                        .jobs
                        .range(id..)
                        .map(|(_, r)| r)
                        .find(|r| r.array.is_some_and(|a| a.job == id && a.index == task));
                    match found {
                        Some(r) => terms.push((t.kind, r.id)),
                        None => {
                            return Err(format!(
                                "job dependency problem: unknown job {}_{task}",
                                t.job
                            ))
                        }
                    }
                }
                (None, Some(array)) => {
                    let members = self
                        .jobs
                        .range(array..)
                        .map(|(_, r)| r)
                        .take_while(|r| r.array.is_some_and(|a| a.job == array));
                    terms.extend(members.map(|r| (t.kind, r.id)));
                }
                (None, None) => terms.push((t.kind, id)),
            }
        }
        if terms.len() > crate::core::job::DEPENDENCY_TERMS_MAX * 4 {
            return Err("dependency names too many jobs".into());
        }
        Ok(Some(Deps {
            any: dep.any,
            terms,
        }))
    }

    /// Whether a job's dependency holds.
    fn dep_status(&self, record: &JobRecord) -> DepStatus {
        let Some(deps) = &record.deps else {
            return DepStatus::Satisfied;
        };
        let term = |&(kind, job): &(DepKind, JobId)| -> DepStatus {
            if kind == DepKind::Singleton {
                let busy = self.jobs.values().any(|o| {
                    o.id != job
                        && o.state.holds_resources()
                        && o.spec.name == record.spec.name
                        && o.spec.control.user == record.spec.control.user
                });
                return if busy {
                    DepStatus::Waiting
                } else {
                    DepStatus::Satisfied
                };
            }
            let Some(other) = self.jobs.get(&job) else {
                return DepStatus::Never;
            };
            let s = other.state;
            match kind {
                DepKind::After if s == JobState::Running || s.is_terminal() => DepStatus::Satisfied,
                DepKind::AfterAny if s.is_terminal() => DepStatus::Satisfied,
                DepKind::AfterOk if s == JobState::Completed => DepStatus::Satisfied,
                DepKind::AfterOk if s.is_terminal() => DepStatus::Never,
                DepKind::AfterNotOk if s == JobState::Completed => DepStatus::Never,
                DepKind::AfterNotOk if s.is_terminal() => DepStatus::Satisfied,
                _ => DepStatus::Waiting,
            }
        };
        let statuses = deps.terms.iter().map(term);
        if deps.any {
            let mut all_never = true;
            for st in statuses {
                match st {
                    DepStatus::Satisfied => return DepStatus::Satisfied,
                    DepStatus::Waiting => all_never = false,
                    DepStatus::Never => {}
                }
            }
            if all_never {
                DepStatus::Never
            } else {
                DepStatus::Waiting
            }
        } else {
            let mut waiting = false;
            for st in statuses {
                match st {
                    DepStatus::Never => return DepStatus::Never,
                    DepStatus::Waiting => waiting = true,
                    DepStatus::Satisfied => {}
                }
            }
            if waiting {
                DepStatus::Waiting
            } else {
                DepStatus::Satisfied
            }
        }
    }

    /// Tasks of an array that hold resources.
    fn array_active(&self, array: JobId) -> u32 {
        self.jobs
            .range(array..)
            .map(|(_, r)| r)
            .take_while(|r| r.array.is_some_and(|a| a.job == array))
            .filter(|r| r.state.holds_resources())
            .count() as u32
    }

    /// Why a pending job may not be placed now regardless of capacity, if it may not:
    /// held, not yet begun, waiting on its dependency, or its array's throttle is reached
    /// (`extra_active` counts tasks of its array planned earlier in the same pass).
    fn ineligible(&self, record: &JobRecord, extra_active: u32) -> Option<Unschedulable> {
        let why = |reason, message: String| Some(Unschedulable { reason, message });
        if record.held {
            return why(
                PendingReason::Held,
                "held; release it to schedule it".into(),
            );
        }
        if let Some(begin) = record.spec.control.begin_ms {
            if begin > self.clock_ms {
                return why(
                    PendingReason::BeginTime,
                    format!("not before {begin} ms since the epoch"),
                );
            }
        }
        match self.dep_status(record) {
            DepStatus::Satisfied => {}
            DepStatus::Waiting => {
                return why(
                    PendingReason::Dependency,
                    "waiting for the jobs it depends on".into(),
                )
            }
            DepStatus::Never => {
                return why(
                    PendingReason::DependencyNeverSatisfied,
                    "a job it depends on ended in a way that cannot satisfy it".into(),
                )
            }
        }
        if let Some(a) = record.array {
            if a.throttle > 0 && self.array_active(a.job) + extra_active >= a.throttle {
                return why(
                    PendingReason::ArrayTaskLimit,
                    format!("its array runs at most {} tasks at once", a.throttle),
                );
            }
        }
        None
    }

    /// Back to the queue: allocation released, `restarts` counted.
    fn requeue(&mut self, job: JobId) {
        self.release(job);
        let r = self.jobs.get_mut(&job).expect("job exists");
        r.state = JobState::Pending;
        r.restarts += 1;
        r.start_ms = None;
        r.tried_epoch = None;
        let (p, s, id) = (r.spec.priority, r.submit_index, r.id);
        self.queue.insert(p, s, id);
    }

    fn apply_pass(
        &mut self,
        epoch: u64,
        plans: &[Plan],
        deferred: &[(JobId, Unschedulable)],
    ) -> Applied {
        if plans.len() > PASS_PLANS_MAX {
            return Applied::Rejected(format!("pass with {} plans", plans.len()));
        }
        let mut placed = Vec::new();
        let mut stale = Vec::new();
        for plan in plans {
            match self.check_plan(plan) {
                Ok(()) => {
                    self.commit_plan(plan);
                    placed.push(plan.job);
                }
                Err(why) => {
                    if let Some(r) = self.jobs.get_mut(&plan.job) {
                        if r.state == JobState::Pending {
                            r.reason = Some(Unschedulable {
                                reason: PendingReason::StalePlan,
                                message: why,
                            });
                            r.tried_epoch = None;
                        }
                    }
                    stale.push(plan.job);
                }
            }
        }
        // Deferred jobs were planned against a ledger that already held the pass's plans. If
        // one of those was stale, the capacity it would have taken is still free, so the
        // deferrals do not count as attempts at this epoch: they are retried next pass.
        let tried = stale.is_empty().then_some(epoch);
        for (job, why) in deferred {
            if let Some(r) = self.jobs.get_mut(job) {
                if r.state == JobState::Pending {
                    r.reason = Some(why.clone());
                    r.tried_epoch = tried;
                }
            }
        }
        Applied::Scheduled { placed, stale }
    }

    /// Paired check, apply side: the plan is for a pending job, has the job's shape, and every
    /// take fits the committed ledger (taking earlier members into account).
    fn check_plan(&self, plan: &Plan) -> Result<(), String> {
        let Some(record) = self.jobs.get(&plan.job) else {
            return Err(format!("unknown job {}", plan.job));
        };
        if record.state != JobState::Pending {
            return Err(format!("job {} is {:?}", plan.job, record.state));
        }
        if let Some(why) = self.ineligible(record, 0) {
            return Err(why.message);
        }
        if !self.tenant_nets.contains_key(&record.spec.tenant)
            && self.tenant_nets.len() as u32 >= TENANT_NETS_MAX
        {
            return Err(format!("all {TENANT_NETS_MAX} tenant networks are taken"));
        }
        if plan.members.len() != record.spec.member_count() as usize {
            return Err("plan has the wrong number of members".into());
        }
        let mut scratch: Vec<(NodeId, sovra_fabric::Take)> = Vec::new();
        let mut ledger_copy: Option<Ledger> = None;
        for slot in &plan.members {
            if slot.node.idx() >= self.topology.nodes().len() {
                return Err("plan names an unknown node".into());
            }
            if !self.slot_matches_spec(record, slot) {
                return Err("plan does not match the job's request".into());
            }
            // Members sharing a node must be checked against each other: use a scratch ledger
            // only when a node repeats (rare), keeping the common path allocation-free.
            let repeats = scratch.iter().any(|(n, _)| *n == slot.node);
            let ledger = if repeats {
                let l = ledger_copy.get_or_insert_with(|| {
                    let mut l = self.ledger.clone();
                    for (n, t) in &scratch {
                        l.take(&self.topology, *n, t);
                    }
                    l
                });
                &*l
            } else {
                ledger_copy.as_ref().unwrap_or(&self.ledger)
            };
            if let Err(short) = ledger.check(&self.topology, slot.node, &slot.take) {
                let name = &self.topology.node(slot.node).name;
                return Err(match short {
                    sovra_fabric::ledger::Shortfall::Unschedulable => {
                        format!("node {name} is no longer available")
                    }
                    _ => format!(
                        "node {name} no longer has the {} the plan needs",
                        short.name()
                    ),
                });
            }
            if let Some(l) = ledger_copy.as_mut() {
                l.take(&self.topology, slot.node, &slot.take);
            }
            scratch.push((slot.node, slot.take));
        }
        // Jurisdiction is re-checked at apply: a plan never lands outside the allowed set.
        let mask: JurisdictionMask = self.topology.jurisdiction_mask(&record.spec.jurisdictions);
        for slot in &plan.members {
            let site = self.topology.node(slot.node).site;
            if !mask.contains(self.topology.site(site).jurisdiction) {
                return Err("plan leaves the job's allowed jurisdictions".into());
            }
        }
        Ok(())
    }

    fn slot_matches_spec(&self, record: &JobRecord, slot: &placement::MemberSlot) -> bool {
        use crate::core::job::GpuRequest;
        use sovra_fabric::GpuTake;
        let spec = &record.spec;
        if slot.take.cpu_milli != spec.cpu_milli || slot.take.memory_mib != spec.memory_mib {
            return false;
        }
        match (spec.member_gpus(), slot.take.gpus) {
            (GpuRequest::None, GpuTake::None) => true,
            (GpuRequest::Whole(n), GpuTake::Whole { mask }) => mask.count_ones() == n,
            (GpuRequest::Milli(m), GpuTake::Milli { milli, .. }) => milli as u32 == m,
            (
                GpuRequest::Mig(profile),
                GpuTake::Mig {
                    local,
                    compute,
                    memory,
                },
            ) => {
                let node = self.topology.node(slot.node);
                if local as u32 >= node.gpu_count() {
                    return false;
                }
                let gpu = self.topology.gpu(self.topology.node_gpu(slot.node, local));
                self.topology.model(gpu.model).mig_profiles.iter().any(|p| {
                    p.name == profile && p.compute_slices == compute && p.memory_slices == memory
                })
            }
            _ => false,
        }
    }

    fn commit_plan(&mut self, plan: &Plan) {
        for slot in &plan.members {
            self.ledger.take(&self.topology, slot.node, &slot.take);
        }
        let tenant = &self.jobs[&plan.job].spec.tenant;
        let net = match self.tenant_nets.get(tenant) {
            Some(&net) => net,
            None => {
                let net = self.tenant_nets.len() as u32 + 1;
                assert!(net <= TENANT_NETS_MAX, "checked by check_plan");
                self.tenant_nets.insert(tenant.clone(), net);
                net
            }
        };
        let r = self.jobs.get_mut(&plan.job).expect("checked");
        self.queue.remove(r.spec.priority, r.submit_index, r.id);
        r.state = JobState::Placed;
        r.plan = Some(plan.clone());
        r.reason = None;
        r.isolation = Some(IsolationIntent { net });
    }

    /// A tenant's network, if its first job was placed.
    pub fn tenant_net(&self, tenant: &str) -> Option<IsolationIntent> {
        self.tenant_nets
            .get(tenant)
            .map(|&net| IsolationIntent { net })
    }

    fn release(&mut self, job: JobId) {
        let r = self.jobs.get_mut(&job).expect("job exists");
        if let Some(plan) = r.plan.take() {
            for slot in &plan.members {
                self.ledger.give(&self.topology, slot.node, &slot.take);
            }
            self.epoch += 1;
            r.ran_on = Some(plan);
        }
    }

    fn end_job(&mut self, job: JobId, state: JobState, now: u64) {
        assert!(state.is_terminal());
        let prev = self.jobs[&job].state;
        assert!(!prev.is_terminal());
        if prev == JobState::Pending {
            let r = &self.jobs[&job];
            let (p, s, id) = (r.spec.priority, r.submit_index, r.id);
            self.queue.remove(p, s, id);
        } else {
            self.release(job);
        }
        let r = self.jobs.get_mut(&job).expect("job exists");
        r.state = state;
        r.end_ms = Some(now);
        r.reason = None;
        // Releasing an allocation bumped the epoch already; a job that ends while pending
        // changes no capacity, but jobs depending on it may now run (or never will).
        if prev == JobState::Pending && self.has_dependents(job) {
            self.epoch += 1;
        }
    }

    /// Whether a pending job depends on `job`. O(pending jobs).
    fn has_dependents(&self, job: JobId) -> bool {
        self.queue.iter().any(|p| {
            self.jobs[&p]
                .deps
                .as_ref()
                .is_some_and(|d| d.terms.iter().any(|&(_, j)| j == job))
        })
    }

    fn fail_node(&mut self, node: NodeId, now: u64) -> Vec<JobId> {
        self.set_node_state(node, NodeState::Down);
        let hit: Vec<JobId> = self
            .jobs
            .values()
            .filter(|r| r.state.holds_resources())
            .filter(|r| {
                r.plan
                    .as_ref()
                    .is_some_and(|p| p.members.iter().any(|m| m.node == node))
            })
            .map(|r| r.id)
            .collect();
        let mut ended = Vec::new();
        for &job in &hit {
            if self.jobs[&job].restarts >= REQUEUE_MAX {
                self.end_job(job, JobState::NodeFail, now);
                ended.push(job);
                continue;
            }
            self.requeue(job);
            ended.push(job);
        }
        ended
    }

    /// Whether a scheduling pass could place anything new: some pending job has not been
    /// tried since capacity last changed.
    pub fn needs_pass(&self) -> bool {
        self.queue
            .iter()
            .any(|j| self.jobs[&j].tried_epoch != Some(self.epoch))
    }

    /// The leader's scheduling pass over the committed state: plans for pending jobs in queue
    /// order (each planned against the capacity left by the plans before it), and deferrals
    /// with reasons. `None` when nothing changed since the last pass. Pure.
    pub fn plan_pass(&self, max_plans: usize) -> Option<(Command, Vec<(JobId, Explanation)>)> {
        if !self.needs_pass() {
            return None;
        }
        let max_plans = max_plans.clamp(1, PASS_PLANS_MAX);
        let mut ledger: Option<Ledger> = None;
        let mut plans = Vec::new();
        let mut deferred = Vec::new();
        let mut explanations = Vec::new();
        let mut blocked_ahead = false;
        // Tasks of each array, and singleton (name, user) pairs, planned in this pass.
        let mut array_planned: BTreeMap<JobId, u32> = BTreeMap::new();
        let mut singletons: BTreeSet<(&str, &str)> = BTreeSet::new();
        for job in self.queue.iter() {
            if plans.len() >= max_plans {
                break;
            }
            let record = &self.jobs[&job];
            if record.tried_epoch == Some(self.epoch) {
                blocked_ahead |= record.reason.as_ref().is_some_and(|r| {
                    matches!(r.reason, PendingReason::Resources | PendingReason::Priority)
                });
                continue;
            }
            let extra = record
                .array
                .map_or(0, |a| array_planned.get(&a.job).copied().unwrap_or(0));
            let singleton = record
                .deps
                .as_ref()
                .is_some_and(|d| d.terms.iter().any(|t| t.0 == DepKind::Singleton));
            let key = (record.spec.name.as_str(), record.spec.control.user.as_str());
            let mut why = self.ineligible(record, extra);
            if why.is_none() && singleton && singletons.contains(&key) {
                why = Some(Unschedulable {
                    reason: PendingReason::Dependency,
                    message: "another job of its name and user runs first".into(),
                });
            }
            if let Some(why) = why {
                // Not a capacity matter: it blocks nobody behind it.
                explanations.push((job, Explanation::default()));
                deferred.push((job, why));
                continue;
            }
            let view = ClusterView {
                topology: &self.topology,
                ledger: ledger.as_ref().unwrap_or(&self.ledger),
            };
            let seed = placement_seed(job.0, self.applied_index);
            let placed = placement::place(view, &self.policy, job, &record.spec, seed);
            match placed.outcome {
                Outcome::Placed(plan) => {
                    let l = ledger.get_or_insert_with(|| self.ledger.clone());
                    for slot in &plan.members {
                        l.take(&self.topology, slot.node, &slot.take);
                    }
                    if let Some(a) = record.array {
                        *array_planned.entry(a.job).or_default() += 1;
                    }
                    if singleton {
                        singletons.insert(key);
                    }
                    plans.push(plan);
                }
                Outcome::Unschedulable(mut why) => {
                    if why.reason == PendingReason::Resources && blocked_ahead {
                        why.reason = PendingReason::Priority;
                    }
                    blocked_ahead |= why.reason == PendingReason::Resources;
                    deferred.push((job, why));
                }
            }
            explanations.push((job, placed.explanation));
        }
        Some((
            Command::SchedulePass {
                epoch: self.epoch,
                plans,
                deferred,
            },
            explanations,
        ))
    }

    /// Cheap invariants checked after every apply.
    fn check_invariants_cheap(&self) {
        assert!(self.queue.len() <= self.jobs.len());
        assert!(self.next_job as usize > self.jobs.len());
    }

    /// Full invariants: the ledger equals a recount from the jobs' plans, and the queue holds
    /// exactly the pending jobs. O(cluster + jobs); for tests.
    pub fn check_invariants(&self) {
        self.ledger.check_invariants(&self.topology);
        let mut fresh = Ledger::new(&self.topology);
        for (i, &s) in self.nodes.iter().enumerate() {
            fresh.set_schedulable(&self.topology, NodeId::from_idx(i), s == NodeState::Up);
        }
        for r in self.jobs.values() {
            assert_eq!(r.plan.is_some(), r.state.holds_resources(), "job {}", r.id);
            if let Some(plan) = &r.plan {
                for slot in &plan.members {
                    fresh.take(&self.topology, slot.node, &slot.take);
                }
            }
        }
        assert!(
            fresh == self.ledger,
            "ledger differs from a recount of the allocations"
        );
        // Tenant networks are dense and distinct, and every job's is its tenant's.
        let mut nets: Vec<u32> = self.tenant_nets.values().copied().collect();
        nets.sort_unstable();
        assert!(nets.iter().enumerate().all(|(i, &n)| n == i as u32 + 1));
        for r in self.jobs.values() {
            if let Some(i) = r.isolation {
                assert_eq!(
                    self.tenant_nets.get(&r.spec.tenant),
                    Some(&i.net),
                    "job {}",
                    r.id
                );
            }
            assert!(
                !(r.state.holds_resources() && r.isolation.is_none()),
                "job {}",
                r.id
            );
        }
        let pending: Vec<JobId> = self
            .jobs
            .values()
            .filter(|r| r.state == JobState::Pending)
            .map(|r| r.id)
            .collect();
        let mut queued: Vec<JobId> = self.queue.iter().collect();
        queued.sort_unstable();
        assert_eq!(pending, queued);
    }
}
