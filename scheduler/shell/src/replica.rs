//! One Raft group's replica, sans-IO: `raft::RawNode` driving the scheduler state machine.
//!
//! The shell (the real event loop in [`crate::node`], or the deterministic simulation in
//! `tests/`) feeds inputs — [`Replica::tick`], [`Replica::step`] (a peer's message),
//! [`Replica::request`] (a client's operation) — and then calls [`Replica::ready`] once per
//! loop turn. `ready` runs raft's Ready cycle: persist entries and hard state through the
//! [`LogStore`] with one sync (group commit: every proposal since the last turn shares one
//! fsync), apply committed entries to the [`StateMachine`], answer clients, and return the
//! messages to send. It never does IO itself except through the store it was given.
//!
//! On the leader, scheduling is part of the cycle: whenever the committed state needs a pass
//! and none is in flight, the leader plans one against the committed state and proposes it;
//! the state machine re-checks every plan when the pass is applied (stale plans are refused).
//!
//! Exactly-once: a `Submit` carries the client's request id into the log; the state machine
//! answers a repeated id with the job the first one created. Replies are sent only after the
//! entry is applied; if leadership is lost first, the client gets `NotLeader` and retries.
//!
//! Reads (`Status`, `Jobs`) are linearizable: they go through raft's ReadIndex and are
//! answered once the replica has applied up to the read index.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{GetEntriesContext, RawNode, StateRole};
use sovra_fabric::{NodeId, SiteId};
use sovra_scheduler::core::job::{JobId, JobSpec};
use sovra_scheduler::core::placement::{Plan, Unschedulable};
use sovra_scheduler::core::probe::RttFilter;
use sovra_scheduler::core::snapshot::{from_blob, to_blob, Decoder, Encoder};
use sovra_scheduler::core::state::{
    Applied, Command, Entry as SmEntry, ExitStatus, JobRecord, JobState, RequestId, StateMachine,
    PASS_PLANS_MAX,
};

use crate::agents::Agents;
use crate::storage::{GroupId, LogStore, StoreError};
use crate::wire::{Assignment, JobControlInfo, JobEnd, JobInfo, LogRequest, NodeInfo};

/// Version byte of log records and snapshot envelopes.
const RECORD_VERSION: u8 = 1;
/// Context tag of a client proposal: `[tag, proposer u64, token u64]`.
const CTX_CLIENT: u8 = 1;
/// Context tag of a scheduling pass proposal.
const CTX_PASS: u8 = 2;
/// Context tag of a conf change proposal.
const CTX_CONF: u8 = 3;

/// Replica settings.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This replica's id in the group (non-zero).
    pub id: u64,
    /// The group.
    pub group: GroupId,
    /// Ticks without a leader before campaigning (randomized in `[election, 2 * election)`).
    pub election_tick: usize,
    /// Ticks between heartbeats.
    pub heartbeat_tick: usize,
    /// Take a snapshot (and compact the log) after this many applied entries.
    pub snapshot_every: u64,
    /// Most plans in one scheduling pass.
    pub max_plans: usize,
    /// Deterministic mode for the simulation: election timeouts come from this seed instead
    /// of raft's thread RNG.
    pub deterministic_seed: Option<u64>,
    /// An agent-managed node whose agent is silent this long is failed by the leader (which
    /// first grants every agent this long after it takes over).
    pub agent_lease_ms: u64,
}

impl ReplicaConfig {
    /// Defaults for a replica: with a 50 ms tick, elections start after 0.5 to 1 s.
    pub fn new(id: u64, group: GroupId) -> ReplicaConfig {
        ReplicaConfig {
            id,
            group,
            election_tick: 10,
            heartbeat_tick: 2,
            snapshot_every: 20_000,
            max_plans: PASS_PLANS_MAX,
            deterministic_seed: None,
            agent_lease_ms: 10_000,
        }
    }
}

/// A client operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Submit a job. With `wait_placed`, the reply comes after the job's first scheduling
    /// pass (placed, or pending with a reason).
    Submit {
        /// The job.
        spec: JobSpec,
        /// The client's request id (exactly-once).
        request: RequestId,
        /// Wait for the first pass.
        wait_placed: bool,
    },
    /// Any other state-machine command (cancel, drain, resume, fail node, register node...).
    Command(Command),
    /// One job's record (linearizable).
    Status {
        /// Job.
        job: JobId,
    },
    /// All jobs (linearizable).
    Jobs,
    /// Add a replica: first as a learner (it catches up, by snapshot if the log was
    /// compacted), then promoted to voter by the leader.
    AddNode {
        /// Its id.
        id: u64,
        /// Its peer address.
        addr: String,
    },
    /// Remove a replica.
    RemoveNode {
        /// Its id.
        id: u64,
    },
    /// Who leads.
    Leader,
    /// Jobs, structured (linearizable): live ones, or all with `all`.
    JobList {
        /// Include ended jobs.
        all: bool,
    },
    /// One job, structured (linearizable).
    JobInfo {
        /// Job.
        job: JobId,
    },
    /// Every node, structured (linearizable).
    NodeList,
    /// An agent's probe address and measured RTTs; answered with whom to probe.
    AgentProbe {
        /// The node.
        node: String,
        /// Its probe responder's address (empty: none).
        listen: String,
        /// (peer site, median RTT ns; 0 = no answer).
        rtts: Vec<(String, u64)>,
    },
    /// Site-pair RTTs (linearizable).
    SiteRtts,
    /// A task's output, from its node's agent.
    Logs {
        /// Job.
        job: JobId,
        /// Member.
        rank: u32,
        /// Standard error instead of standard output.
        stderr: bool,
        /// Byte offset.
        offset: u64,
        /// Most bytes.
        max: u32,
    },
    /// An agent reports its node unhealthy: drain it.
    AgentHealth {
        /// The node.
        node: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// An agent registers its node with the GPU models it found.
    AgentRegister {
        /// The node.
        node: String,
        /// Model name of each GPU found, in index order.
        gpus: Vec<String>,
        /// NICs found: (name, Gbit/s).
        nics: Vec<(String, u32)>,
    },
    /// An agent's answer to a log request.
    LogData {
        /// The agent's node.
        node: String,
        /// The request's token.
        token: u64,
        /// Where `data` starts.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// Whether the file ends there.
        eof: bool,
        /// Why nothing could be read.
        error: Option<String>,
    },
    /// An agent's heartbeat and long poll for its node's assignments.
    AgentSync {
        /// The node.
        node: String,
        /// The assignments version the agent holds.
        known: u64,
        /// How long to wait for a change.
        wait_ms: u32,
    },
    /// An agent started its part of a job (idempotent).
    JobStarted {
        /// The node.
        node: String,
        /// The job.
        job: JobId,
        /// The attempt the agent ran (the job's requeue count).
        attempt: u32,
    },
    /// A job's process ended on an agent's node (idempotent).
    JobEnded {
        /// The node.
        node: String,
        /// The job.
        job: JobId,
        /// The attempt the agent ran.
        attempt: u32,
        /// How.
        how: JobEnd,
    },
}

/// The answer to an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The job exists (new, or the one an earlier try of the same request created).
    Submitted {
        /// Job id.
        job: JobId,
        /// Where it runs, when placed.
        placed: Option<String>,
        /// Why it waits, when it waits.
        pending: Option<String>,
    },
    /// Done.
    Ok,
    /// The state machine refused the command (state unchanged).
    Rejected(String),
    /// One job, rendered.
    Job(String),
    /// Every job, rendered.
    Jobs(String),
    /// Ask the leader instead.
    NotLeader {
        /// The leader, if known: id and address.
        leader: Option<(u64, String)>,
    },
    /// The leader.
    Leader {
        /// Id.
        id: u64,
        /// Address.
        addr: String,
    },
    /// Jobs, structured.
    JobList(Vec<JobInfo>),
    /// Nodes, structured.
    NodeList(Vec<NodeInfo>),
    /// Whom to probe.
    ProbePeers(Vec<(String, String)>),
    /// Site-pair RTTs.
    SiteRtts(Vec<crate::wire::SiteRtt>),
    /// Part of a task's output.
    LogChunk {
        /// Where `data` starts.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// Whether the file ends there.
        eof: bool,
    },
    /// A node's assignments.
    Assignments {
        /// Their version.
        version: u64,
        /// Whether the node is up or drained.
        in_service: bool,
        /// Output requests for the agent.
        log_requests: Vec<LogRequest>,
        /// The jobs placed or running on the node.
        jobs: Vec<Assignment>,
    },
}

/// What one [`Replica::ready`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Raft messages to send (each names its destination in `to`).
    pub messages: Vec<Message>,
    /// Replies to clients, by the shell's token.
    pub replies: Vec<(u64, Reply)>,
    /// Jobs that were placed by applied passes.
    pub placed: Vec<JobId>,
    /// Jobs ended by applied commands (time limits, node failures), for agents to kill.
    pub ended: Vec<JobId>,
    /// Raft log entries applied.
    pub applied_entries: u64,
}

/// Why a replica stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The store failed; the replica must stop (raft state may be inconsistent otherwise).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raft refused the configuration or the stored state.
    #[error("raft: {0}")]
    Raft(String),
    /// A committed entry or snapshot could not be decoded: corruption or a version mismatch.
    #[error("committed {what} at index {index} is unreadable: {detail}")]
    Undecodable {
        /// "entry" or "snapshot".
        what: &'static str,
        /// Log index.
        index: u64,
        /// Decoder message.
        detail: String,
    },
}

/// Something a client waits for.
#[derive(Clone, Debug)]
enum Waiting {
    /// Applied result of a proposal.
    Proposal { wait_placed: bool },
    /// A read, once applied reaches the read index.
    Read(ReadOp),
}

#[derive(Clone, Debug)]
enum ReadOp {
    Status(JobId),
    Jobs,
    JobList { all: bool },
    JobInfo(JobId),
    NodeList,
    SiteRtts,
}

/// One Raft group's replica. See the module docs.
pub struct Replica<S: LogStore> {
    cfg: ReplicaConfig,
    node: RawNode<S>,
    sm: StateMachine,
    /// Peer addresses by id (replicated: carried by conf changes and snapshots).
    peers: BTreeMap<u64, String>,
    conf_state: ConfState,
    /// Client tokens waiting for an applied proposal or a read.
    waiting: BTreeMap<u64, Waiting>,
    /// Submissions waiting for their job's first pass: job -> tokens.
    wait_placed: BTreeMap<JobId, Vec<u64>>,
    /// Reads whose index is known, waiting for apply: (read index, token).
    reads: VecDeque<(u64, u64)>,
    /// Leader only, once its view is current: the committed state with every entry this
    /// leader has proposed but not yet applied applied on top, in log order. Passes are
    /// planned against it, so a burst of submissions and the pass that places them go out in
    /// one append (one Raft round, one fsync) instead of two. Plans are still re-checked when
    /// the pass is applied, so a wrong `spec` can only defer jobs, never double-book a GPU.
    spec: Option<StateMachine>,
    /// The applied index `spec` was last checked at (each state is checked once).
    spec_checked: u64,
    /// Leader only: agents' heartbeats and polls, and the live jobs per node.
    agents: Agents,
    /// Leader only: what each node's agent found that differs from the inventory.
    conflicts: BTreeMap<NodeId, Vec<String>>,
    /// Leader only: each agent's probe address, and the RTT filter of each site pair.
    probes: BTreeMap<NodeId, String>,
    rtt_filters: BTreeMap<(SiteId, SiteId), RttFilter>,
    /// Site pairs whose RTT a measurement set (while this replica leads).
    rtt_measured: BTreeSet<(SiteId, SiteId)>,
    conf_inflight: bool,
    last_snapshot_index: u64,
    rng: Option<u64>,
    observed: (u64, StateRole, u64),
    last_tick_command_ms: u64,
    output: Output,
}

/// Log record: what a normal entry's data holds.
fn encode_record(time_ms: u64, command: &Command) -> Vec<u8> {
    let mut e = Encoder::default();
    e.put_u8(RECORD_VERSION);
    e.put_u64(time_ms);
    e.put_bytes(&to_blob(command));
    e.into_bytes()
}

fn decode_record(data: &[u8]) -> Result<(u64, Command), String> {
    let mut d = Decoder::new(data);
    let version = d.get_u8().map_err(|e| e.to_string())?;
    if version != RECORD_VERSION {
        return Err(format!(
            "record version {version}, expected {RECORD_VERSION}"
        ));
    }
    let time_ms = d.get_u64().map_err(|e| e.to_string())?;
    let blob = d.get_bytes().map_err(|e| e.to_string())?;
    d.finish().map_err(|e| e.to_string())?;
    let command: Command = from_blob(blob).map_err(|e| e.to_string())?;
    Ok((time_ms, command))
}

/// Snapshot data: the peer address book and the state machine snapshot.
pub fn encode_snapshot_data(peers: &BTreeMap<u64, String>, sm: &StateMachine) -> Vec<u8> {
    let mut e = Encoder::default();
    e.put_u8(RECORD_VERSION);
    e.put_count(peers.len());
    for (id, addr) in peers {
        e.put_u64(*id);
        e.put_str(addr);
    }
    e.put_bytes(&sm.snapshot());
    e.into_bytes()
}

/// Decodes [`encode_snapshot_data`].
pub fn decode_snapshot_data(data: &[u8]) -> Result<(BTreeMap<u64, String>, StateMachine), String> {
    let mut d = Decoder::new(data);
    let version = d.get_u8().map_err(|e| e.to_string())?;
    if version != RECORD_VERSION {
        return Err(format!(
            "snapshot version {version}, expected {RECORD_VERSION}"
        ));
    }
    let n = d.get_count(4096, "peers").map_err(|e| e.to_string())?;
    let mut peers = BTreeMap::new();
    for _ in 0..n {
        let id = d.get_u64().map_err(|e| e.to_string())?;
        let addr = d.get_str().map_err(|e| e.to_string())?;
        peers.insert(id, addr);
    }
    let blob = d.get_bytes().map_err(|e| e.to_string())?;
    d.finish().map_err(|e| e.to_string())?;
    let sm = StateMachine::restore(blob).map_err(|e| e.to_string())?;
    Ok((peers, sm))
}

fn client_context(tag: u8, proposer: u64, token: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(tag);
    v.extend_from_slice(&proposer.to_le_bytes());
    v.extend_from_slice(&token.to_le_bytes());
    v
}

fn parse_context(ctx: &[u8]) -> Option<(u8, u64, u64)> {
    if ctx.len() != 17 {
        return None;
    }
    let proposer = u64::from_le_bytes(ctx[1..9].try_into().ok()?);
    let token = u64::from_le_bytes(ctx[9..17].try_into().ok()?);
    Some((ctx[0], proposer, token))
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Renders a job as one line: id, name, tenant, state, placement or reason.
pub fn render_job(sm: &StateMachine, r: &JobRecord) -> String {
    let detail = match (&r.plan, &r.reason) {
        (Some(plan), _) => render_plan(sm, plan),
        (None, Some(why)) => render_reason(why),
        (None, None) => String::new(),
    };
    format!(
        "{} {} {} {} {}",
        r.id,
        r.spec.name,
        r.spec.tenant,
        r.state.code(),
        detail
    )
    .trim_end()
    .to_string()
}

/// What one member of a job asks for, in words.
fn render_request(spec: &JobSpec) -> String {
    use sovra_scheduler::core::job::{GpuRequest, Workload};
    let gpus = |g: &GpuRequest| match g {
        GpuRequest::None => "no GPU".to_string(),
        GpuRequest::Whole(1) => "1 GPU".to_string(),
        GpuRequest::Whole(n) => format!("{n} GPUs"),
        GpuRequest::Milli(m) => format!("{m}m of a GPU"),
        GpuRequest::Mig(p) => format!("MIG {p}"),
    };
    match &spec.workload {
        Workload::Batch { gpus: g } => format!("batch, {}", gpus(g)),
        Workload::Gang(g) => {
            let level = g
                .topology
                .level
                .map_or("anywhere".to_string(), |l| format!("in one {}", l.name()));
            format!(
                "gang of {} x {} GPUs {level} ({:?})",
                g.members, g.gpus_per_member, g.topology.affinity
            )
        }
        Workload::Inference(s) => format!("service of {} x {}", s.replicas, gpus(&s.gpus)),
    }
}

/// A job, structured.
pub fn job_info(sm: &StateMachine, r: &JobRecord) -> JobInfo {
    let topology = sm.topology();
    // Where it runs, or where it last ran.
    let members = r
        .plan
        .as_ref()
        .or(r.ran_on.as_ref())
        .map(|plan| {
            plan.members
                .iter()
                .map(|m| {
                    let node = topology.node(m.node);
                    let site = topology.site(node.site);
                    (
                        node.name.clone(),
                        site.name.clone(),
                        topology.site_jurisdiction(node.site).to_string(),
                        m.take.gpus,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    JobInfo {
        id: r.id.0,
        name: r.spec.name.clone(),
        tenant: r.spec.tenant.clone(),
        state: r.state.code().to_string(),
        priority: r.spec.priority,
        jurisdictions: r.spec.jurisdictions.iter().map(|j| j.to_string()).collect(),
        request: render_request(&r.spec),
        time_limit_ms: r.spec.time_limit_ms,
        submit_ms: r.submit_ms,
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        exit_code: r.exit_code,
        restarts: r.restarts,
        members,
        reason: r.reason.as_ref().map(render_reason),
        control: JobControlInfo {
            user: r.spec.control.user.clone(),
            queue: r.spec.control.queue.clone(),
            held: r.held,
            array: r.array.map(|a| (a.job.0, a.index)),
            dependency: r
                .spec
                .control
                .dependency
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            members: r.spec.member_count(),
            cpu_milli: r.spec.cpu_milli,
            memory_mib: r.spec.memory_mib,
            gpu_milli: r.spec.member_gpus().milli(),
            workdir: r.spec.run.workdir.clone(),
            command: r.spec.run.argv.join(" "),
        },
    }
}

/// How the NICs an agent found differ from the inventory's, one line each: count, and each
/// declared NIC's rate against the found one of the same name (or, when names differ, at the
/// same position). Found NICs with rate 0 (unknown) are not compared.
pub fn nic_conflicts(declared: &[(String, u32)], found: &[(String, u32)]) -> Vec<String> {
    let mut out = Vec::new();
    if declared.len() != found.len() {
        out.push(format!(
            "the inventory declares {} NICs, the agent found {}",
            declared.len(),
            found.len()
        ));
    }
    for (i, (name, gbit)) in declared.iter().enumerate() {
        let seen = found
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| found.get(i));
        if let Some((seen_name, seen_gbit)) = seen {
            if *seen_gbit != 0 && seen_gbit != gbit {
                out.push(format!(
                    "NIC {name}: the inventory declares {gbit} Gbit/s, the agent found \
                     {seen_gbit} Gbit/s ({seen_name})"
                ));
            }
        }
    }
    out
}

/// Every node, structured, in inventory order.
pub fn node_infos(sm: &StateMachine) -> Vec<NodeInfo> {
    use sovra_scheduler::core::state::NodeState;
    let topology = sm.topology();
    (0..topology.nodes().len())
        .map(|i| {
            let id = NodeId::from_idx(i);
            let node = topology.node(id);
            let free = sm.ledger().node(id);
            NodeInfo {
                name: node.name.clone(),
                site: topology.site(node.site).name.clone(),
                jurisdiction: topology.site_jurisdiction(node.site).to_string(),
                state: match sm.node_state(id) {
                    NodeState::Unknown => "unknown",
                    NodeState::Up => "up",
                    NodeState::Drained => "drained",
                    NodeState::Down => "down",
                }
                .to_string(),
                agent: sm.agent_managed(id),
                model: node
                    .model
                    .map(|m| topology.model(m).name.clone())
                    .unwrap_or_default(),
                gpus: node.gpus.len() as u32,
                gpus_whole_free: free.whole_free(),
                cpu_free_milli: free.cpu_milli,
                memory_free_mib: free.memory_mib,
                cpu_milli: node.cpu_milli,
                memory_mib: node.memory_mib,
                conflicts: Vec::new(),
            }
        })
        .collect()
}

fn render_reason(why: &Unschedulable) -> String {
    format!("{}: {}", why.reason.code(), why.message)
}

/// Members as `node{gpus}` in the notation of [`sovra_fabric::GpuTake`]'s `Display`.
fn render_plan(sm: &StateMachine, plan: &Plan) -> String {
    let topology = sm.topology();
    let parts: Vec<String> = plan
        .members
        .iter()
        .map(|m| {
            let name = &topology.node(m.node).name;
            match m.take.gpus {
                sovra_fabric::GpuTake::None => name.clone(),
                gpus => format!("{name}{{{gpus}}}"),
            }
        })
        .collect();
    parts.join(" ")
}

impl<S: LogStore> Replica<S> {
    /// Writes the founding configuration into an empty store: a snapshot at index 1, term 1,
    /// with `voters` and the initial state. Every founding replica must be bootstrapped with
    /// the same voters and state, so they start from the same snapshot.
    pub fn bootstrap(
        store: &mut S,
        voters: &BTreeMap<u64, String>,
        sm: &StateMachine,
    ) -> Result<(), ReplicaError> {
        let mut snapshot = Snapshot::default();
        snapshot.set_data(encode_snapshot_data(voters, sm).into());
        let meta = snapshot.mut_metadata();
        meta.set_index(1);
        meta.set_term(1);
        meta.mut_conf_state()
            .set_voters(voters.keys().copied().collect());
        store.apply_snapshot(&snapshot)?;
        store.sync()?;
        Ok(())
    }

    /// Opens a replica over `store`. The state machine comes from the store's latest
    /// snapshot; with none (a replica that will join an existing group), from `empty()`.
    /// Committed entries after the snapshot are re-applied by the first [`Replica::ready`]
    /// calls.
    pub fn open(
        cfg: ReplicaConfig,
        store: S,
        empty: impl FnOnce() -> StateMachine,
    ) -> Result<Replica<S>, ReplicaError> {
        let snapshot = store.latest_snapshot();
        let index = snapshot.get_metadata().get_index();
        let (peers, sm) = if index > 0 {
            decode_snapshot_data(snapshot.get_data()).map_err(|detail| {
                ReplicaError::Undecodable {
                    what: "snapshot",
                    index,
                    detail,
                }
            })?
        } else {
            (BTreeMap::new(), empty())
        };
        let conf_state = store.conf_state();
        let mut raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied: index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        if cfg.deterministic_seed.is_some() {
            raft_cfg.min_election_tick = cfg.election_tick;
            raft_cfg.max_election_tick = 2 * cfg.election_tick;
        }
        raft_cfg
            .validate()
            .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_cfg, store, &logger)
            .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        let mut replica = Replica {
            rng: cfg
                .deterministic_seed
                .map(|s| s ^ cfg.id.wrapping_mul(0x9E37)),
            cfg,
            node,
            sm,
            peers,
            conf_state,
            waiting: BTreeMap::new(),
            wait_placed: BTreeMap::new(),
            reads: VecDeque::new(),
            spec: None,
            spec_checked: 0,
            agents: Agents::default(),
            probes: BTreeMap::new(),
            conflicts: BTreeMap::new(),
            rtt_filters: BTreeMap::new(),
            rtt_measured: BTreeSet::new(),
            conf_inflight: false,
            last_snapshot_index: index,
            observed: (0, StateRole::Follower, 0),
            last_tick_command_ms: 0,
            output: Output::default(),
        };
        replica.after_input();
        Ok(replica)
    }

    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.cfg.group
    }

    /// The applied state machine.
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// Peer addresses (the replicated address book).
    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of (0 if none).
    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Commit index.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// Voters and learners.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The store (for inspection).
    pub fn store(&self) -> &S {
        self.node.store()
    }

    /// Consumes the replica, returning its store (the simulation crashes it). The raft
    /// node keeps an empty default store, dropped with it.
    pub fn into_store(mut self) -> S
    where
        S: Default,
    {
        std::mem::take(self.node.mut_store())
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.node.tick();
        self.after_input();
    }

    /// Delivers a peer's message. Messages for another group or this node are dropped.
    pub fn step(&mut self, msg: Message) {
        if msg.get_to() != self.cfg.id {
            return;
        }
        // Errors here are messages from unknown peers or stale terms: raft ignores them.
        let _ = self.node.step(msg);
        self.after_input();
    }

    /// Hands leadership to the voter whose log is most up to date (graceful shutdown): it
    /// campaigns at once instead of waiting for an election timeout.
    pub fn transfer_leadership(&mut self) {
        if !self.is_leader() || self.node.raft.lead_transferee.is_some() {
            return;
        }
        let me = self.cfg.id;
        let best = self
            .conf_state
            .voters
            .iter()
            .copied()
            .filter(|&id| id != me)
            .filter_map(|id| self.node.raft.prs().get(id).map(|p| (p.matched, id)))
            .max();
        if let Some((_, id)) = best {
            self.node.transfer_leader(id);
            self.after_input();
        }
    }

    /// Makes this replica campaign at once (tests, leadership transfer).
    pub fn campaign(&mut self) {
        let _ = self.node.campaign();
        self.after_input();
    }

    /// Starts a client operation; its reply comes from a later [`Replica::ready`] under
    /// `token` (unique per outstanding request, chosen by the shell).
    pub fn request(&mut self, token: u64, op: Op, now_ms: u64) {
        if let Op::Leader = op {
            let reply = match self.leader_hint() {
                Some((id, addr)) => Reply::Leader { id, addr },
                None => Reply::NotLeader { leader: None },
            };
            self.output.replies.push((token, reply));
            return;
        }
        if !self.is_leader() {
            let leader = self.leader_hint();
            self.output
                .replies
                .push((token, Reply::NotLeader { leader }));
            return;
        }
        let result = match op {
            Op::Submit {
                spec,
                request,
                wait_placed,
            } => {
                let command = Command::Submit {
                    spec,
                    request: Some(request),
                };
                self.propose_command(token, &command, wait_placed, now_ms)
            }
            Op::Command(command) => self.propose_command(token, &command, false, now_ms),
            Op::Status { job } => {
                self.read(token, ReadOp::Status(job));
                Ok(())
            }
            Op::Jobs => {
                self.read(token, ReadOp::Jobs);
                Ok(())
            }
            Op::JobList { all } => {
                self.read(token, ReadOp::JobList { all });
                Ok(())
            }
            Op::JobInfo { job } => {
                self.read(token, ReadOp::JobInfo(job));
                Ok(())
            }
            Op::NodeList => {
                self.read(token, ReadOp::NodeList);
                Ok(())
            }
            Op::SiteRtts => {
                self.read(token, ReadOp::SiteRtts);
                Ok(())
            }
            Op::AgentProbe { node, listen, rtts } => {
                let reply = self.agent_probe(&node, listen, &rtts, now_ms);
                self.output.replies.push((token, reply));
                return;
            }
            Op::AddNode { id, addr } => {
                if self.conf_busy(token) {
                    return;
                }
                if id == 0 || self.conf_state.voters.contains(&id) {
                    self.reject(token, format!("node {id} is already a voter"));
                    return;
                }
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.set_node_id(id);
                cc.set_context(addr.into_bytes().into());
                self.propose_conf(token, cc)
            }
            Op::RemoveNode { id } => {
                if self.conf_busy(token) {
                    return;
                }
                if !self.conf_state.voters.contains(&id) && !self.conf_state.learners.contains(&id)
                {
                    self.reject(token, format!("node {id} is not a member"));
                    return;
                }
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.set_node_id(id);
                self.propose_conf(token, cc)
            }
            Op::Leader => unreachable!("answered above"),
            Op::AgentSync {
                node,
                known,
                wait_ms,
            } => {
                let Some(id) = self.sm.topology().node_by_name(&node) else {
                    self.reject(token, format!("unknown node {node:?}"));
                    return;
                };
                self.agents_ready(now_ms);
                let wait_ms = wait_ms.min(crate::wire::AGENT_WAIT_MS_MAX);
                if let Some((version, jobs)) = self
                    .agents
                    .sync(&self.sm, token, id, known, wait_ms, now_ms)
                {
                    self.answer_sync(token, id, version, jobs);
                }
                Ok(())
            }
            Op::Logs {
                job,
                rank,
                stderr,
                offset,
                max,
            } => {
                let Some(r) = self.sm.job(job) else {
                    self.reject(token, format!("unknown job {job}"));
                    return;
                };
                let Some(plan) = r.plan.as_ref().or(r.ran_on.as_ref()) else {
                    self.reject(token, format!("job {job} has not run"));
                    return;
                };
                let Some(member) = plan.members.get(rank as usize) else {
                    self.reject(
                        token,
                        format!(
                            "job {job} has {} ranks, not {}",
                            plan.members.len(),
                            rank + 1
                        ),
                    );
                    return;
                };
                let node = member.node;
                self.agents_ready(now_ms);
                let request = LogRequest {
                    token,
                    job: job.0,
                    rank,
                    stderr,
                    offset,
                    max: max.min(crate::wire::LOG_CHUNK_MAX),
                };
                self.agents.log_request(node, request, now_ms);
                Ok(())
            }
            Op::AgentHealth { node, problems } => {
                let Some(id) = self.sm.topology().node_by_name(&node) else {
                    self.reject(token, format!("unknown node {node:?}"));
                    return;
                };
                // Drain once: an already drained (or down) node stays as it is.
                let up = self.sm.node_state(id) == sovra_scheduler::core::state::NodeState::Up;
                if problems.is_empty() || !up {
                    self.output.replies.push((token, Reply::Ok));
                    return;
                }
                tracing::warn!(
                    node,
                    ?problems,
                    "agent reports the node unhealthy; draining"
                );
                self.propose_command(token, &Command::Drain { node }, false, now_ms)
            }
            Op::AgentRegister { node, gpus, nics } => {
                if let Err(why) = self.check_inventory(&node, &gpus) {
                    self.reject(token, why);
                    return;
                }
                // NICs that differ from the inventory are reported, not refused: placement
                // still works from the inventory, and an operator fixes one or the other.
                if let Some(id) = self.sm.topology().node_by_name(&node) {
                    let declared: Vec<(String, u32)> = self
                        .sm
                        .topology()
                        .node(id)
                        .nics
                        .iter()
                        .map(|n| (n.name.clone(), n.gbit_per_s))
                        .collect();
                    let conflicts = nic_conflicts(&declared, &nics);
                    for c in &conflicts {
                        tracing::warn!(%node, "discovery: {c}");
                    }
                    if conflicts.is_empty() {
                        self.conflicts.remove(&id);
                    } else {
                        self.conflicts.insert(id, conflicts);
                    }
                }
                self.propose_command(token, &Command::RegisterNode { node }, false, now_ms)
            }
            Op::LogData {
                node,
                token: request,
                offset,
                data,
                eof,
                error,
            } => {
                let Some(id) = self.sm.topology().node_by_name(&node) else {
                    self.reject(token, format!("unknown node {node:?}"));
                    return;
                };
                if let Some(client) = self.agents.log_data(id, request) {
                    let reply = match error {
                        Some(why) => Reply::Rejected(why),
                        None => Reply::LogChunk { offset, data, eof },
                    };
                    self.output.replies.push((client, reply));
                }
                self.output.replies.push((token, Reply::Ok));
                return;
            }
            Op::JobStarted { node, job, attempt } => match self.agent_job(&node, job) {
                Err(why) => {
                    self.reject(token, why);
                    return;
                }
                // Another member's agent reported it first, it is over, or the report is of
                // an attempt before a requeue: nothing to do.
                Ok((state, _)) if state != JobState::Placed || !self.current(job, attempt) => {
                    self.output.replies.push((token, Reply::Ok));
                    return;
                }
                Ok(_) => self.propose_command(token, &Command::Start { job }, false, now_ms),
            },
            Op::JobEnded {
                node,
                job,
                attempt,
                how,
            } => match self.agent_job(&node, job) {
                Err(why) => {
                    self.reject(token, why);
                    return;
                }
                Ok((state, rank0)) => {
                    let status = match how {
                        JobEnd::Exited(0) => ExitStatus::Completed,
                        JobEnd::Exited(code) => ExitStatus::Failed(code),
                        JobEnd::OutOfMemory => ExitStatus::OutOfMemory,
                    };
                    // The job ends when its first member (rank 0) ends, or when any member
                    // fails; other members' clean exits change nothing.
                    let ends = rank0 || status != ExitStatus::Completed;
                    if state.is_terminal() || !ends || !self.current(job, attempt) {
                        self.output.replies.push((token, Reply::Ok));
                        return;
                    }
                    self.propose_command(token, &Command::Finish { job, status }, false, now_ms)
                }
            },
        };
        if result.is_err() {
            // Dropped (leadership is changing, or a conf change is pending).
            self.waiting.remove(&token);
            let leader = self.leader_hint();
            self.output
                .replies
                .push((token, Reply::NotLeader { leader }));
        }
        self.after_input();
    }

    /// Leading: make sure the agents' desk is built (on first need, or at term start).
    fn agents_ready(&mut self, now_ms: u64) {
        if !self.agents.is_built() {
            self.agents.start(&self.sm, now_ms, self.cfg.agent_lease_ms);
        }
    }

    /// Answers an agent's poll: its node's assignments and state, and any output requests.
    fn answer_sync(&mut self, token: u64, node: NodeId, version: u64, jobs: Vec<Assignment>) {
        let in_service = self.sm.node_in_service(node);
        let log_requests = self.agents.take_log_requests(node);
        self.output.replies.push((
            token,
            Reply::Assignments {
                version,
                in_service,
                jobs,
                log_requests,
            },
        ));
    }

    /// Checks the GPUs an agent found against the node's GPUs in the inventory: the same
    /// count, and each found name naming the inventory's model (NVML says `NVIDIA H100 80GB
    /// HBM3` for an inventory's `H100`).
    fn check_inventory(&self, node: &str, found: &[String]) -> Result<(), String> {
        let topology = self.sm.topology();
        let id = topology
            .node_by_name(node)
            .ok_or_else(|| format!("unknown node {node:?}"))?;
        let n = topology.node(id);
        let want = n.gpus.len();
        let model = n
            .model
            .map(|m| topology.model(m).name.clone())
            .unwrap_or_default();
        if found.len() != want {
            return Err(format!(
                "node {node}: the inventory declares {want} {model} GPUs, the agent found {}",
                found.len()
            ));
        }
        let norm = |s: &str| s.to_ascii_lowercase().replace(['-', ' ', '_'], "");
        let key = norm(&model);
        if let Some(bad) = found.iter().find(|g| !norm(g).contains(&key)) {
            return Err(format!(
                "node {node}: the inventory declares {model} GPUs, the agent found {bad:?}"
            ));
        }
        Ok(())
    }

    /// Checks that `job` has a member on `node`: its state, and whether that node holds the
    /// job's first member (rank 0).
    fn agent_job(&self, node: &str, job: JobId) -> Result<(JobState, bool), String> {
        let topology = self.sm.topology();
        let id = topology
            .node_by_name(node)
            .ok_or_else(|| format!("unknown node {node:?}"))?;
        let r = self
            .sm
            .job(job)
            .ok_or_else(|| format!("unknown job {job}"))?;
        if r.state.is_terminal() {
            return Ok((r.state, false));
        }
        let plan = r
            .plan
            .as_ref()
            .filter(|p| p.members.iter().any(|m| m.node == id))
            .ok_or_else(|| format!("job {job} has no member on node {node}"))?;
        Ok((r.state, plan.members.first().is_some_and(|m| m.node == id)))
    }

    /// An agent's probe report (on the leader): remembers where it answers probes, feeds its
    /// RTTs through each site pair's filter (proposing `SetSiteRtt` when a change is
    /// confirmed), and names one probe address per other site.
    fn agent_probe(
        &mut self,
        node: &str,
        listen: String,
        rtts: &[(String, u64)],
        now: u64,
    ) -> Reply {
        let topology = self.sm.topology();
        let Some(id) = topology.node_by_name(node) else {
            return Reply::Rejected(format!("unknown node {node:?}"));
        };
        // `request` answers NotLeader on followers before this is reached.
        let site = topology.node(id).site;
        if listen.is_empty() {
            self.probes.remove(&id);
        } else {
            self.probes.insert(id, listen);
        }
        let mut proposals = Vec::new();
        for (peer, rtt) in rtts {
            let Some(other) = topology.site_by_name(peer) else {
                continue;
            };
            if other == site {
                continue;
            }
            let pair = (site.min(other), site.max(other));
            let committed = topology.site_rtt_ns(pair.0, pair.1);
            let filter = self.rtt_filters.entry(pair).or_default();
            // No answer at all: after a few rounds the link is marked down.
            let change = match *rtt {
                0 => filter.observe_lost(committed),
                rtt => filter.observe(rtt, committed),
            };
            if let Some(v) = change {
                let names = (
                    topology.site(pair.0).name.clone(),
                    topology.site(pair.1).name.clone(),
                );
                proposals.push((pair, names, v));
            }
        }
        for (pair, (a, b), rtt_ns) in proposals {
            tracing::info!(%a, %b, rtt_ns, "measured RTT confirmed");
            let ctx = client_context(CTX_PASS, self.cfg.id, 3);
            if self
                .propose_entry(ctx, &Command::SetSiteRtt { a, b, rtt_ns }, now)
                .is_ok()
            {
                self.rtt_measured.insert(pair);
            }
        }
        // One peer per other site: its lowest node with a probe address.
        let topology = self.sm.topology();
        let mut peers: BTreeMap<SiteId, String> = BTreeMap::new();
        for (&n, addr) in &self.probes {
            let s = topology.node(n).site;
            if s != site {
                peers.entry(s).or_insert_with(|| addr.clone());
            }
        }
        Reply::ProbePeers(
            peers
                .into_iter()
                .map(|(s, addr)| (topology.site(s).name.clone(), addr))
                .collect(),
        )
    }

    /// Every site pair's committed RTT.
    fn site_rtts(&self) -> Vec<crate::wire::SiteRtt> {
        let topology = self.sm.topology();
        let n = topology.sites().len();
        let mut out = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let (sa, sb) = (SiteId::from_idx(a), SiteId::from_idx(b));
                out.push(crate::wire::SiteRtt {
                    a: topology.site(sa).name.clone(),
                    b: topology.site(sb).name.clone(),
                    rtt_ns: topology.site_rtt_ns(sa, sb),
                    measured: self.rtt_measured.contains(&(sa, sb)),
                });
            }
        }
        out
    }

    /// Whether an agent's report is of the job's current attempt (not one before a requeue).
    fn current(&self, job: JobId, attempt: u32) -> bool {
        self.sm.job(job).is_some_and(|r| r.restarts == attempt)
    }

    fn reject(&mut self, token: u64, why: String) {
        self.output.replies.push((token, Reply::Rejected(why)));
    }

    /// Proposes a client's state-machine command; the reply comes when it is applied.
    fn propose_command(
        &mut self,
        token: u64,
        command: &Command,
        wait_placed: bool,
        now_ms: u64,
    ) -> raft::Result<()> {
        self.waiting
            .insert(token, Waiting::Proposal { wait_placed });
        self.propose_entry(
            client_context(CTX_CLIENT, self.cfg.id, token),
            command,
            now_ms,
        )
    }

    /// Proposes a state-machine command, and applies it to the speculative state when there
    /// is one. The only way normal entries enter the log, so `spec` stays exactly the
    /// committed state plus the proposed suffix.
    fn propose_entry(&mut self, ctx: Vec<u8>, command: &Command, now_ms: u64) -> raft::Result<()> {
        let before = self.node.raft.raft_log.last_index();
        self.node.propose(ctx, encode_record(now_ms, command))?;
        if let Some(spec) = self.spec.as_mut() {
            let index = self.node.raft.raft_log.last_index();
            assert_eq!(index, before + 1, "a leader appends its proposal at once");
            spec.apply(&SmEntry {
                index,
                time_ms: now_ms,
                command: command.clone(),
            });
        }
        Ok(())
    }

    /// Starts a linearizable read: answered once applied reaches the read index.
    fn read(&mut self, token: u64, op: ReadOp) {
        self.waiting.insert(token, Waiting::Read(op));
        self.node.read_index(token.to_le_bytes().to_vec());
    }

    /// Membership changes go one at a time: refuses (and answers) while one is in flight.
    fn conf_busy(&mut self, token: u64) -> bool {
        if self.conf_inflight {
            self.reject(token, "another membership change is in progress".into());
        }
        self.conf_inflight
    }

    /// Proposes a client's membership change.
    fn propose_conf(&mut self, token: u64, cc: ConfChange) -> raft::Result<()> {
        self.waiting
            .insert(token, Waiting::Proposal { wait_placed: false });
        self.conf_inflight = true;
        self.node
            .propose_conf_change(client_context(CTX_CONF, self.cfg.id, token), cc)
    }

    fn leader_hint(&self) -> Option<(u64, String)> {
        let id = self.node.raft.leader_id;
        (id != 0).then(|| (id, self.peers.get(&id).cloned().unwrap_or_default()))
    }

    /// Deterministic mode: re-draw the election timeout from the seed whenever raft may have
    /// drawn one from its thread RNG (a term, role or leader change).
    fn after_input(&mut self) {
        let now = (
            self.node.raft.term,
            self.node.raft.state,
            self.node.raft.leader_id,
        );
        if now != self.observed {
            let role_changed = now.1 != self.observed.1 || now.0 != self.observed.0;
            self.observed = now;
            if let Some(rng) = self.rng.as_mut() {
                let min = self.cfg.election_tick;
                let t = min + (splitmix(rng) % min as u64) as usize;
                self.node.raft.set_randomized_election_timeout(t);
            }
            if role_changed && self.node.raft.state != StateRole::Leader {
                self.lost_leadership();
            }
        }
    }

    /// Fails every waiting client: they retry on the new leader (request ids make retried
    /// submissions safe).
    fn lost_leadership(&mut self) {
        self.spec = None;
        self.conf_inflight = false;
        let leader = self.leader_hint();
        for token in self.agents.stop() {
            self.output.replies.push((
                token,
                Reply::NotLeader {
                    leader: leader.clone(),
                },
            ));
        }
        for (token, _) in std::mem::take(&mut self.waiting) {
            self.output.replies.push((
                token,
                Reply::NotLeader {
                    leader: leader.clone(),
                },
            ));
        }
        for (_, tokens) in std::mem::take(&mut self.wait_placed) {
            for token in tokens {
                self.output.replies.push((
                    token,
                    Reply::NotLeader {
                        leader: leader.clone(),
                    },
                ));
            }
        }
        self.reads.clear();
    }

    /// Runs raft's Ready cycle until nothing is ready, proposing scheduling passes on the
    /// leader. Returns everything to send and every reply.
    pub fn ready(&mut self, now_ms: u64) -> Result<Output, ReplicaError> {
        let mut early = Vec::new();
        let mut out = self.ready_with(now_ms, &mut |m| early.push(m))?;
        early.append(&mut out.messages);
        out.messages = early;
        Ok(out)
    }

    /// Like [`Replica::ready`], but hands messages that may leave before this replica's own
    /// fsync (a leader's appends: raft counts the leader's vote only once its log is durable,
    /// so followers can persist in parallel) to `send_now` as soon as they exist, which takes
    /// one fsync off the commit path. The rest are returned in [`Output::messages`].
    pub fn ready_with(
        &mut self,
        now_ms: u64,
        send_now: &mut dyn FnMut(Message),
    ) -> Result<Output, ReplicaError> {
        for _ in 0..16 {
            self.maybe_propose(now_ms);
            if !self.node.has_ready() {
                break;
            }
            self.handle_ready(send_now)?;
            self.after_input();
        }
        self.check_spec();
        if self.agents.is_built() {
            for (token, node, version, jobs) in self.agents.due(&self.sm, now_ms) {
                self.answer_sync(token, node, version, jobs);
            }
            for (token, node) in self.agents.expired_logs(now_ms) {
                let name = self.sm.topology().node(node).name.clone();
                self.reject(
                    token,
                    format!("the agent of node {name} did not send the output in time"),
                );
            }
        }
        self.maybe_snapshot()?;
        Ok(std::mem::take(&mut self.output))
    }

    fn maybe_propose(&mut self, now_ms: u64) {
        if !self.is_leader() {
            return;
        }
        // The leader's first entry of its term must commit before its view is current.
        let term_start_committed = self
            .node
            .raft
            .raft_log
            .term(self.node.raft.raft_log.committed)
            .is_ok_and(|t| t == self.node.raft.term);
        if !term_start_committed {
            return;
        }
        if self.spec.is_none() {
            self.spec = self.build_spec();
        }
        self.agents_ready(now_ms);
        if let Some(spec) = &self.spec {
            if let Some((pass, _)) = spec.plan_pass(self.cfg.max_plans) {
                let ctx = client_context(CTX_PASS, self.cfg.id, 0);
                let _ = self.propose_entry(ctx, &pass, now_ms);
            }
        }
        // Time limits: a Tick entry once a second while a running job has one. The check
        // itself runs at most once a second too: it scans every job, and this runs on every
        // ready cycle (per-cycle scans cost the leader ~20% of a 2-core machine at 50k jobs).
        if now_ms >= self.last_tick_command_ms + 1000 {
            self.last_tick_command_ms = now_ms;
            // Agents that missed their lease: fail their nodes (judged on the speculative
            // state, so a failure already proposed is not proposed again).
            let silent: Vec<String> = match &self.spec {
                Some(spec) => self
                    .agents
                    .silent(spec, now_ms, self.cfg.agent_lease_ms)
                    .into_iter()
                    .map(|node| spec.topology().node(node).name.clone())
                    .collect(),
                None => Vec::new(),
            };
            for node in silent {
                let ctx = client_context(CTX_PASS, self.cfg.id, 2);
                let _ = self.propose_entry(ctx, &Command::FailNode { node }, now_ms);
            }
            // Ticks end jobs at their time limits and start those whose begin time came.
            let limited = self.sm.jobs().any(|r| {
                (r.state == JobState::Running && r.spec.time_limit_ms.is_some())
                    || (r.state == JobState::Pending
                        && r.spec.control.begin_ms.is_some_and(|b| b <= now_ms))
            });
            if limited {
                let ctx = client_context(CTX_PASS, self.cfg.id, 1);
                let _ = self.propose_entry(ctx, &Command::Tick, now_ms);
            }
        }
        // Promote learners that have caught up.
        if !self.conf_inflight {
            let commit = self.commit_index();
            let ready: Option<u64> = self.conf_state.learners.iter().copied().find(|id| {
                self.node
                    .raft
                    .prs()
                    .get(*id)
                    .is_some_and(|p| p.matched >= commit)
            });
            if let Some(id) = ready {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddNode);
                cc.set_node_id(id);
                let ctx = client_context(CTX_CONF, self.cfg.id, 0);
                if self.node.propose_conf_change(ctx, cc).is_ok() {
                    self.conf_inflight = true;
                }
            }
        }
    }

    /// The speculative state: the applied state plus the log's unapplied entries.
    fn build_spec(&self) -> Option<StateMachine> {
        let mut spec = self.sm.clone();
        let log = &self.node.raft.raft_log;
        if log.applied < log.last_index() {
            let entries = log
                .entries(log.applied + 1, None, GetEntriesContext::empty(false))
                .ok()?;
            for entry in entries {
                if entry.get_entry_type() != EntryType::EntryNormal || entry.get_data().is_empty() {
                    continue;
                }
                // An undecodable entry fails loudly when it is applied; until then, no spec.
                let (time_ms, command) = decode_record(entry.get_data()).ok()?;
                spec.apply(&SmEntry {
                    index: entry.get_index(),
                    time_ms,
                    command,
                });
            }
        }
        Some(spec)
    }

    /// Checks the speculative state against the applied state whenever nothing is in flight:
    /// they must be equal. Cheap checks always, the full state hash in debug builds on small
    /// states (the simulation tests). A mismatch is a bug: it is logged and `spec` rebuilt
    /// (safe either way, since plans are re-checked at apply).
    fn check_spec(&mut self) {
        let Some(spec) = &self.spec else { return };
        let log = &self.node.raft.raft_log;
        if log.applied != log.last_index() || self.spec_checked == self.sm.applied_index() {
            return;
        }
        self.spec_checked = self.sm.applied_index();
        let cheap =
            spec.applied_index() == self.sm.applied_index() && spec.epoch() == self.sm.epoch();
        debug_assert!(cheap, "speculative state diverged");
        #[cfg(debug_assertions)]
        if self.sm.applied_index() < 5_000 {
            assert_eq!(
                spec.state_hash(),
                self.sm.state_hash(),
                "speculative state diverged at index {}",
                self.sm.applied_index()
            );
        }
        if !cheap {
            eprintln!(
                "sovrad: replica {}: speculative state diverged at index {}; rebuilt",
                self.cfg.id,
                self.sm.applied_index()
            );
            self.spec = Some(self.sm.clone());
        }
    }

    /// Queues messages to send. A snapshot message is reported as sent at once: if it is
    /// lost, the follower rejects the next append and the leader sends a snapshot again.
    fn emit(&mut self, messages: Vec<Message>) {
        self.report_snapshots(&messages);
        self.output.messages.extend(messages);
    }

    fn report_snapshots(&mut self, messages: &[Message]) {
        for m in messages {
            if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                self.node
                    .report_snapshot(m.get_to(), raft::SnapshotStatus::Finish);
            }
        }
    }

    fn handle_ready(&mut self, send_now: &mut dyn FnMut(Message)) -> Result<(), ReplicaError> {
        let mut ready = self.node.ready();
        let early = ready.take_messages();
        self.report_snapshots(&early);
        for m in early {
            send_now(m);
        }
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let index = snapshot.get_metadata().get_index();
            let (peers, sm) = decode_snapshot_data(snapshot.get_data()).map_err(|detail| {
                ReplicaError::Undecodable {
                    what: "snapshot",
                    index,
                    detail,
                }
            })?;
            self.node.mut_store().apply_snapshot(&snapshot)?;
            self.sm = sm;
            self.peers = peers;
            self.conf_state = snapshot.get_metadata().get_conf_state().clone();
            self.last_snapshot_index = index;
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;
        if !ready.entries().is_empty() {
            self.node.mut_store().append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            self.node.mut_store().set_hard_state(hs)?;
        }
        self.node.mut_store().sync()?;
        self.emit(ready.take_persisted_messages());
        let read_states = ready.take_read_states();
        for rs in read_states {
            if let Ok(bytes) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                self.reads.push_back((rs.index, u64::from_le_bytes(bytes)));
            }
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.emit(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        self.node.advance_apply();
        self.answer_reads();
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), ReplicaError> {
        for entry in entries {
            self.output.applied_entries += 1;
            let ctx = parse_context(entry.get_context());
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if entry.get_data().is_empty() {
                        continue; // A new leader's empty entry.
                    }
                    self.apply_normal(&entry, ctx)?;
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(entry.get_data()).map_err(|e| {
                        ReplicaError::Undecodable {
                            what: "conf change",
                            index: entry.get_index(),
                            detail: e.to_string(),
                        }
                    })?;
                    self.apply_conf_change(&cc, ctx)?;
                }
                EntryType::EntryConfChangeV2 => {
                    return Err(ReplicaError::Undecodable {
                        what: "conf change v2",
                        index: entry.get_index(),
                        detail: "not used by sovrad".into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn apply_conf_change(
        &mut self,
        cc: &ConfChange,
        ctx: Option<(u8, u64, u64)>,
    ) -> Result<(), ReplicaError> {
        let id = cc.get_node_id();
        match cc.get_change_type() {
            ConfChangeType::AddLearnerNode | ConfChangeType::AddNode => {
                if !cc.get_context().is_empty() {
                    let addr = String::from_utf8_lossy(cc.get_context()).into_owned();
                    self.peers.insert(id, addr);
                }
            }
            ConfChangeType::RemoveNode => {
                self.peers.remove(&id);
            }
        }
        let cs = self
            .node
            .apply_conf_change(cc)
            .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        self.conf_state = cs;
        if let Some((CTX_CONF, proposer, token)) = ctx {
            if proposer == self.cfg.id {
                self.conf_inflight = false;
                if token != 0 && self.waiting.remove(&token).is_some() {
                    self.output.replies.push((token, Reply::Ok));
                }
            }
        }
        Ok(())
    }

    fn apply_normal(
        &mut self,
        entry: &Entry,
        ctx: Option<(u8, u64, u64)>,
    ) -> Result<(), ReplicaError> {
        let index = entry.get_index();
        let (time_ms, command) =
            decode_record(entry.get_data()).map_err(|detail| ReplicaError::Undecodable {
                what: "entry",
                index,
                detail,
            })?;
        let touched_job = match &command {
            Command::Start { job }
            | Command::Finish { job, .. }
            | Command::Cancel { job }
            | Command::Requeue { job } => Some(*job),
            _ => None,
        };
        let touched_node = match &command {
            Command::FailNode { node } | Command::Drain { node } | Command::Resume { node } => {
                self.sm.topology().node_by_name(node)
            }
            _ => None,
        };
        let applied = self.sm.apply(&SmEntry {
            index,
            time_ms,
            command,
        });
        if self.agents.is_built() {
            if let Some(job) = touched_job {
                self.agents.job_changed(&self.sm, job);
            }
            if let Some(node) = touched_node {
                self.agents.node_changed(&self.sm, node);
            }
            match &applied {
                Applied::Scheduled { placed, .. } => {
                    for &job in placed {
                        self.agents.job_changed(&self.sm, job);
                    }
                }
                Applied::Ended(jobs) => {
                    for &job in jobs {
                        self.agents.job_changed(&self.sm, job);
                    }
                }
                _ => {}
            }
        }
        let mine = ctx.filter(|&(_, proposer, _)| proposer == self.cfg.id);
        match &applied {
            Applied::Scheduled { placed, .. } => {
                self.output.placed.extend(placed.iter().copied());
                self.answer_wait_placed();
            }
            Applied::Ended(jobs) => self.output.ended.extend(jobs.iter().copied()),
            _ => {}
        }
        if let Some((CTX_CLIENT, _, token)) = mine {
            if let Some(Waiting::Proposal { wait_placed }) = self.waiting.remove(&token) {
                let reply = match applied {
                    Applied::Submitted(job) => {
                        if wait_placed && self.job_undecided(job) {
                            self.wait_placed.entry(job).or_default().push(token);
                            return Ok(());
                        }
                        self.submitted_reply(job)
                    }
                    Applied::Rejected(why) => Reply::Rejected(why),
                    _ => Reply::Ok,
                };
                self.output.replies.push((token, reply));
            }
        }
        Ok(())
    }

    /// Whether a job has had no scheduling outcome yet (pending and never tried).
    fn job_undecided(&self, job: JobId) -> bool {
        self.sm
            .job(job)
            .is_some_and(|r| r.state == JobState::Pending && r.reason.is_none())
    }

    fn submitted_reply(&self, job: JobId) -> Reply {
        let Some(r) = self.sm.job(job) else {
            return Reply::Submitted {
                job,
                placed: None,
                pending: None,
            };
        };
        Reply::Submitted {
            job,
            placed: r.plan.as_ref().map(|p| render_plan(&self.sm, p)),
            pending: r.reason.as_ref().map(render_reason),
        }
    }

    fn answer_wait_placed(&mut self) {
        let decided: Vec<JobId> = self
            .wait_placed
            .keys()
            .copied()
            .filter(|&j| !self.job_undecided(j))
            .collect();
        for job in decided {
            let reply = self.submitted_reply(job);
            for token in self.wait_placed.remove(&job).unwrap_or_default() {
                self.output.replies.push((token, reply.clone()));
            }
        }
    }

    fn answer_reads(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        while let Some(&(index, token)) = self.reads.front() {
            if index > applied {
                break;
            }
            self.reads.pop_front();
            let Some(Waiting::Read(op)) = self.waiting.remove(&token) else {
                continue;
            };
            let reply = match op {
                ReadOp::Status(job) => match self.sm.job(job) {
                    Some(r) => Reply::Job(render_job(&self.sm, r)),
                    None => Reply::Rejected(format!("unknown job {job}")),
                },
                ReadOp::Jobs => {
                    let lines: Vec<String> =
                        self.sm.jobs().map(|r| render_job(&self.sm, r)).collect();
                    Reply::Jobs(lines.join("\n"))
                }
                ReadOp::JobList { all } => Reply::JobList(
                    self.sm
                        .jobs()
                        .filter(|r| all || !r.state.is_terminal())
                        .map(|r| job_info(&self.sm, r))
                        .collect(),
                ),
                ReadOp::JobInfo(job) => match self.sm.job(job) {
                    Some(r) => Reply::JobList(vec![job_info(&self.sm, r)]),
                    None => Reply::Rejected(format!("unknown job {job}")),
                },
                ReadOp::NodeList => {
                    let mut nodes = node_infos(&self.sm);
                    for (id, c) in &self.conflicts {
                        if let Some(n) = nodes.get_mut(id.idx()) {
                            n.conflicts = c.clone();
                        }
                    }
                    Reply::NodeList(nodes)
                }
                ReadOp::SiteRtts => Reply::SiteRtts(self.site_rtts()),
            };
            self.output.replies.push((token, reply));
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), ReplicaError> {
        let applied = self.node.raft.raft_log.applied;
        let wanted = self.node.mut_store().take_snapshot_wanted();
        let due = applied >= self.last_snapshot_index + self.cfg.snapshot_every;
        if !(due || wanted && applied >= self.last_snapshot_index) {
            return Ok(());
        }
        let data = encode_snapshot_data(&self.peers, &self.sm);
        let cs = self.conf_state.clone();
        let store = self.node.mut_store();
        store.create_snapshot(applied, &cs, data)?;
        store.sync()?;
        self.last_snapshot_index = applied;
        Ok(())
    }
}

#[cfg(test)]
mod discovery_tests {
    use super::nic_conflicts;

    #[test]
    fn nic_differences_are_reported_one_line_each() {
        let d = |v: &[(&str, u32)]| -> Vec<(String, u32)> {
            v.iter().map(|(n, g)| (n.to_string(), *g)).collect()
        };
        let declared = d(&[("mlx5_0", 400), ("mlx5_1", 400)]);
        assert!(nic_conflicts(&declared, &declared).is_empty());
        // Unknown rates (0) are not compared; names may differ at the same position.
        assert!(nic_conflicts(&declared, &d(&[("ib0", 0), ("ib1", 400)])).is_empty());
        let found = d(&[("mlx5_0", 200)]);
        assert_eq!(
            nic_conflicts(&declared, &found),
            [
                "the inventory declares 2 NICs, the agent found 1",
                "NIC mlx5_0: the inventory declares 400 Gbit/s, the agent found 200 Gbit/s \
                 (mlx5_0)"
            ]
        );
    }
}
