//! The leader's desk for node agents: which live jobs each node holds, agents' long polls
//! for their assignments, and their heartbeats.
//!
//! Everything here is leader-local soft state derived from the applied state machine (the
//! job index) or from agents' requests (heartbeats, parked polls): a new leader rebuilds the
//! index from its state and gives every agent a grace period before it counts a heartbeat as
//! missed, so a scheduler failover never marks nodes down. Sans-IO: time comes in as
//! `now_ms`.

use std::collections::{BTreeMap, BTreeSet};

use sovra_fabric::NodeId;
use sovra_scheduler::core::job::JobId;
use sovra_scheduler::core::state::{JobRecord, JobState, StateMachine};

use crate::wire::{Assignment, LogRequest};

/// How long the leader waits for an agent to send requested output.
const LOG_WAIT_MS: u64 = 10_000;

/// A client's [`crate::wire::ClientOp::Logs`], waiting for the node's agent.
#[derive(Clone, Debug)]
struct LogWait {
    node: NodeId,
    request: LogRequest,
    delivered: bool,
    deadline_ms: u64,
}

/// A parked [`crate::wire::ClientOp::AgentSync`].
#[derive(Clone, Debug)]
struct Parked {
    token: u64,
    node: NodeId,
    known: u64,
    deadline_ms: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Agents {
    /// Whether the index reflects the applied state (only while leading).
    built: bool,
    /// Placed and running jobs by node.
    by_node: BTreeMap<NodeId, BTreeSet<JobId>>,
    /// The nodes each indexed job is on.
    job_nodes: BTreeMap<JobId, Vec<NodeId>>,
    /// Nodes whose assignments may have changed since parked polls were last checked.
    dirty: BTreeSet<NodeId>,
    parked: Vec<Parked>,
    /// Last heartbeat per node (leader clock).
    last_seen: BTreeMap<NodeId, u64>,
    /// No node counts as silent before this (a new leader's grace period).
    grace_until_ms: u64,
    /// Output requests waiting for agents; `request.token` is the client's token.
    logs: Vec<LogWait>,
}

/// Whether a job holds its node's resources and belongs on its agent.
fn live(r: &JobRecord) -> bool {
    matches!(r.state, JobState::Placed | JobState::Running)
}

impl Agents {
    /// Starts leading: index the applied state; every node's lease starts now.
    pub(crate) fn start(&mut self, sm: &StateMachine, now_ms: u64, lease_ms: u64) {
        *self = Agents::default();
        for r in sm.jobs() {
            self.index(sm, r.id);
        }
        self.built = true;
        self.grace_until_ms = now_ms + lease_ms;
    }

    /// Stops leading: forget everything; returns the parked tokens (to answer "not leader").
    pub(crate) fn stop(&mut self) -> Vec<u64> {
        let tokens = self
            .parked
            .iter()
            .map(|p| p.token)
            .chain(self.logs.iter().map(|l| l.request.token))
            .collect();
        *self = Agents::default();
        tokens
    }

    pub(crate) fn is_built(&self) -> bool {
        self.built
    }

    /// A job's state or placement may have changed: re-index it.
    pub(crate) fn job_changed(&mut self, sm: &StateMachine, job: JobId) {
        if self.built {
            self.index(sm, job);
        }
    }

    /// A node's state changed (failed, drained, resumed): re-index the jobs it held.
    pub(crate) fn node_changed(&mut self, sm: &StateMachine, node: NodeId) {
        if !self.built {
            return;
        }
        self.dirty.insert(node);
        let jobs: Vec<JobId> = self
            .by_node
            .get(&node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for job in jobs {
            self.index(sm, job);
        }
    }

    fn index(&mut self, sm: &StateMachine, job: JobId) {
        if let Some(nodes) = self.job_nodes.remove(&job) {
            for node in nodes {
                self.dirty.insert(node);
                if let Some(set) = self.by_node.get_mut(&node) {
                    set.remove(&job);
                    if set.is_empty() {
                        self.by_node.remove(&node);
                    }
                }
            }
        }
        let Some(r) = sm.job(job).filter(|r| live(r)) else {
            return;
        };
        let Some(plan) = &r.plan else { return };
        let mut nodes: Vec<NodeId> = plan.members.iter().map(|m| m.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        for &node in &nodes {
            self.by_node.entry(node).or_default().insert(job);
            self.dirty.insert(node);
        }
        self.job_nodes.insert(job, nodes);
    }

    /// The node's assignments and their version (never 0).
    pub(crate) fn assignments(&self, sm: &StateMachine, node: NodeId) -> (u64, Vec<Assignment>) {
        let topology = sm.topology();
        let mut version: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |x: u64| {
            version = (version ^ x).wrapping_mul(0x0000_0100_0000_01b3);
        };
        let mut out = Vec::new();
        for &job in self.by_node.get(&node).into_iter().flatten() {
            let Some(r) = sm.job(job) else { continue };
            let Some(plan) = &r.plan else { continue };
            let running = r.state == JobState::Running;
            mix(job.0);
            mix(u64::from(running));
            mix(u64::from(r.restarts));
            let run = &r.spec.run;
            out.push(Assignment {
                job: job.0,
                name: r.spec.name.clone(),
                tenant: r.spec.tenant.clone(),
                running,
                attempt: r.restarts,
                cpu_milli: r.spec.cpu_milli,
                memory_mib: r.spec.memory_mib,
                time_limit_ms: r.spec.time_limit_ms,
                argv: run.argv.clone(),
                env: slurm_env(r),
                workdir: run.workdir.clone(),
                members: plan
                    .members
                    .iter()
                    .map(|m| (topology.node(m.node).name.clone(), m.take.gpus))
                    .collect(),
                tenant_net: r.isolation.map_or(0, |i| i.net),
            });
        }
        (version.max(1), out)
    }

    /// A client wants a task's output from `node`'s agent; it is handed over with the
    /// agent's next poll, and answered by [`Agents::log_data`].
    pub(crate) fn log_request(&mut self, node: NodeId, request: LogRequest, now_ms: u64) {
        self.logs.push(LogWait {
            node,
            request,
            delivered: false,
            deadline_ms: now_ms + LOG_WAIT_MS,
        });
        self.dirty.insert(node);
    }

    fn has_log_requests(&self, node: NodeId) -> bool {
        self.logs.iter().any(|l| l.node == node && !l.delivered)
    }

    /// The output requests to hand to `node`'s agent now (each once).
    pub(crate) fn take_log_requests(&mut self, node: NodeId) -> Vec<LogRequest> {
        let mut out = Vec::new();
        for l in self
            .logs
            .iter_mut()
            .filter(|l| l.node == node && !l.delivered)
        {
            l.delivered = true;
            out.push(l.request.clone());
        }
        out
    }

    /// An agent's answer: the waiting client's token, if the request is still waiting and
    /// was for this node.
    pub(crate) fn log_data(&mut self, node: NodeId, token: u64) -> Option<u64> {
        let i = self
            .logs
            .iter()
            .position(|l| l.node == node && l.request.token == token)?;
        Some(self.logs.remove(i).request.token)
    }

    /// Output requests whose agent did not answer in time: (client token, node).
    pub(crate) fn expired_logs(&mut self, now_ms: u64) -> Vec<(u64, NodeId)> {
        let (expired, keep): (Vec<LogWait>, Vec<LogWait>) = std::mem::take(&mut self.logs)
            .into_iter()
            .partition(|l| now_ms >= l.deadline_ms);
        self.logs = keep;
        expired
            .into_iter()
            .map(|l| (l.request.token, l.node))
            .collect()
    }

    /// An agent's poll: answered now (`Some`) when its view is stale or it will not wait,
    /// else parked until its assignments change or `wait_ms` passes. Counts as a heartbeat.
    pub(crate) fn sync(
        &mut self,
        sm: &StateMachine,
        token: u64,
        node: NodeId,
        known: u64,
        wait_ms: u32,
        now_ms: u64,
    ) -> Option<(u64, Vec<Assignment>)> {
        self.last_seen.insert(node, now_ms);
        let (version, jobs) = self.assignments(sm, node);
        if version != known || wait_ms == 0 || self.has_log_requests(node) {
            return Some((version, jobs));
        }
        self.parked.push(Parked {
            token,
            node,
            known,
            deadline_ms: now_ms + u64::from(wait_ms),
        });
        None
    }

    /// Parked polls to answer now: their node's assignments changed, or their wait is over.
    pub(crate) fn due(
        &mut self,
        sm: &StateMachine,
        now_ms: u64,
    ) -> Vec<(u64, NodeId, u64, Vec<Assignment>)> {
        let dirty = std::mem::take(&mut self.dirty);
        if self.parked.is_empty() {
            return Vec::new();
        }
        let mut answers = Vec::new();
        let mut keep = Vec::new();
        for p in std::mem::take(&mut self.parked) {
            if dirty.contains(&p.node) || now_ms >= p.deadline_ms {
                let (version, jobs) = self.assignments(sm, p.node);
                let logs = self.has_log_requests(p.node);
                if version != p.known || now_ms >= p.deadline_ms || logs {
                    answers.push((p.token, p.node, version, jobs));
                    continue;
                }
            }
            keep.push(p);
        }
        self.parked = keep;
        answers
    }

    /// Agent-managed nodes in service whose agent has been silent for `lease_ms` (after the
    /// grace period): the leader fails them.
    pub(crate) fn silent(&self, sm: &StateMachine, now_ms: u64, lease_ms: u64) -> Vec<NodeId> {
        if now_ms < self.grace_until_ms {
            return Vec::new();
        }
        let topology = sm.topology();
        (0..topology.nodes().len())
            .map(NodeId::from_idx)
            .filter(|&n| sm.agent_managed(n) && sm.node_in_service(n))
            // An agent waiting in a long poll is alive.
            .filter(|n| !self.parked.iter().any(|p| p.node == *n))
            .filter(|n| {
                self.last_seen
                    .get(n)
                    .is_none_or(|&seen| now_ms >= seen + lease_ms)
            })
            .collect()
    }
}

/// A job's environment: Slurm's variables that come from the scheduler's record (array task,
/// partition, user), then the job's own, which may override them.
fn slurm_env(r: &sovra_scheduler::core::state::JobRecord) -> Vec<(String, String)> {
    let control = &r.spec.control;
    let mut env = Vec::with_capacity(r.spec.run.env.len() + 8);
    if let (Some(task), Some(array)) = (r.array, &control.array) {
        let indices = &array.indices;
        let first = indices.first().copied().unwrap_or(0);
        let last = indices.last().copied().unwrap_or(0);
        // The step when the indices are evenly spaced, as Slurm reports it; 1 otherwise.
        let step = match indices.windows(2).next() {
            Some(w) if indices.windows(2).all(|v| v[1] - v[0] == w[1] - w[0]) => w[1] - w[0],
            _ => 1,
        };
        for (name, value) in [
            ("SLURM_ARRAY_JOB_ID", task.job.0.to_string()),
            ("SLURM_ARRAY_TASK_ID", task.index.to_string()),
            ("SLURM_ARRAY_TASK_COUNT", indices.len().to_string()),
            ("SLURM_ARRAY_TASK_MIN", first.to_string()),
            ("SLURM_ARRAY_TASK_MAX", last.to_string()),
            ("SLURM_ARRAY_TASK_STEP", step.to_string()),
        ] {
            env.push((name.to_string(), value));
        }
    }
    if !control.queue.is_empty() {
        env.push(("SLURM_JOB_PARTITION".into(), control.queue.clone()));
    }
    if !control.user.is_empty() {
        env.push(("SLURM_JOB_USER".into(), control.user.clone()));
    }
    env.extend(r.spec.run.env.iter().cloned());
    env
}
