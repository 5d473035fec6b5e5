//! The sovrad wire protocol, version 1: hand-encoded frames, separate from the core types.
//!
//! Every frame is
//!
//! ```text
//! u32 length | u16 version (= 1) | u8 kind | payload
//! ```
//!
//! all little-endian, where `length` counts the bytes after itself (3 + payload) and is at most
//! [`FRAME_BYTES_MAX`]. Inside payloads, `str` and `bytes` are `u32 length | bytes` (strings
//! are UTF-8), `bool` is one byte 0 or 1, and `option<T>` is one byte 0 (none) or 1 followed
//! by `T`. A payload must be consumed exactly: trailing bytes are an error.
//!
//! | kind   | frame        | payload                                                    |
//! |--------|--------------|------------------------------------------------------------|
//! | `0x01` | `PeerHello`  | `str cluster, u64 group, u64 from`                         |
//! | `0x02` | `Raft`       | `u64 group, bytes message` (protobuf raft message, opaque) |
//! | `0x03` | `RaftPart`   | `u64 group, u64 total, bytes part`                         |
//! | `0x10` | `Request`    | `u64 client, u64 seq, u64 group, u8 op, op fields`         |
//! | `0x11` | `Response`   | `u64 client, u64 seq, u8 result, result fields`            |
//!
//! | op     | [`ClientOp`]   | fields                           |
//! |--------|----------------|----------------------------------|
//! | `0x01` | `Submit`       | `str job_toml, bool wait_placed` |
//! | `0x02` | `Cancel`       | `u64 job`                        |
//! | `0x03` | `Status`       | `u64 job`                        |
//! | `0x04` | `Jobs`         |                                  |
//! | `0x05` | `Drain`        | `str node`                       |
//! | `0x06` | `Resume`       | `str node`                       |
//! | `0x07` | `FailNode`     | `str node`                       |
//! | `0x08` | `RegisterNode` | `str node`                       |
//! | `0x09` | `AddNode`      | `u64 id, str addr`               |
//! | `0x0a` | `RemoveNode`   | `u64 id`                         |
//! | `0x0b` | `Leader`       |                                  |
//! | `0x0c` | `AgentSync`    | `str node, u64 known, u32 wait_ms` |
//! | `0x0d` | `JobStarted`   | `str node, u64 job, u32 attempt` |
//! | `0x0e` | `JobEnded`     | `str node, u64 job, u32 attempt, u8 how [, i32 code]` |
//! | `0x0f` | `JobList`      | `bool all`                       |
//! | `0x10` | `JobInfo`      | `u64 job`                        |
//! | `0x11` | `NodeList`     |                                  |
//! | `0x12` | `Logs`         | `u64 job, u32 rank, bool stderr, u64 offset, u32 max` |
//! | `0x14` | `AgentRegister`| `str node, u32 n, n × str gpu, u32 m, m × (str nic, u32 gbit)` |
//! | `0x15` | `AgentHealth`  | `str node, u32 n, n × str problem` |
//! | `0x13` | `LogData`      | `str node, u64 token, u64 offset, bytes data, bool eof, …` |
//! | `0x16` | `JobControl`   | `u64 job, u8 action [, option<u64> time_limit_ms]` |
//! | `0x17` | `AgentProbe`   | `str node, str listen, u32 n, n × (str site, u64 rtt_ns)` |
//! | `0x18` | `SiteRtts`     |                                  |
//!
//! | result | [`ClientResult`] | fields                                  |
//! |--------|------------------|-----------------------------------------|
//! | `0x01` | `Submitted`      | `u64 job, option<str> placed`           |
//! | `0x02` | `Ok`             |                                         |
//! | `0x03` | `Job`            | `str text`                              |
//! | `0x04` | `Jobs`           | `str text`                              |
//! | `0x05` | `NotLeader`      | `option<(u64 id, str addr)> leader`     |
//! | `0x06` | `Error`          | `u16 code, str message`                 |
//! | `0x07` | `Leader`         | `u64 id, str addr`                      |
//! | `0x08` | `Assignments`    | `u64 version, bool in_service, …` (below) |
//! | `0x09` | `JobList`        | `u32 n, n × job info`                   |
//! | `0x0a` | `NodeList`       | `u32 n, n × node info`                  |
//! | `0x0b` | `LogChunk`       | `u64 offset, bytes data, bool eof`      |
//! | `0x0c` | `ProbePeers`     | `u32 n, n × (str site, str addr)`       |
//! | `0x0d` | `SiteRtts`       | `u32 n, n × (str a, str b, u64 ns, bool measured)` |
//!
//! An assignment is `u64 job, str name, str tenant, bool running, u32 attempt, u64 cpu_milli,
//! u64 memory_mib, option<u64> time_limit_ms, u32 n, n × str argv, u32 n, n × (str, str) env,
//! str workdir, u32 n, n × (str node, gpu take), u32 tenant_net` (members in rank order); a
//! gpu take is a tag byte: `0` none, `1 u32 mask` whole GPUs, `2 u8 local, u16 milli` a
//! share, `3 u8 local, u8 compute, u8 memory` a MIG instance. `how` in `JobEnded` is `0`
//! exited (followed by the `i32` code), or `1` out of memory (nothing follows).
//!
//! `LogData` ends with `option<str> error`. `Assignments` is `u64 version, bool in_service,
//! u32 n, n × assignment, u32 n, n × log request`.
//!
//! A log request is `u64 token, u64 job, u32 rank, bool stderr, u64 offset, u32 max`: the
//! leader asks the agent for a task's output through its poll, and the agent answers with
//! `LogData` under the same token (output never goes through Raft).
//!
//! A job info is `u64 id, str name, str tenant, str state, u32 priority, u32 n, n × str
//! jurisdiction, str request, option<u64> time_limit_ms, u64 submit_ms, option<u64> start_ms,
//! option<u64> end_ms, option<u32> exit_code (two's complement), u32 restarts, u32 n, n ×
//! (str node, str site, str jurisdiction, gpu take), option<str> reason`. A node info is `str
//! name, str site, str jurisdiction, str state, bool agent, str model, u32 gpus, u32
//! gpus_whole_free, u64 cpu_free_milli, u64 memory_free_mib`.
//!
//! A Raft message too large for one frame (a snapshot of a big state) travels as `RaftPart`
//! frames on the peer stream, each at most [`RAFT_PART_BYTES`], every one carrying the whole
//! message's length `total` (at most [`RAFT_MESSAGE_BYTES_MAX`]); the receiver joins them in
//! order and hands the message on once it has `total` bytes. Nothing else may come between
//! the parts of one message.
//!
//! Extending: a new frame kind, op or result gets the next unused byte, and old peers reject
//! it with a typed error. Changing the fields of an existing one needs a new protocol
//! version. Decoding never panics and never allocates more than the input holds.

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest accepted value of a frame's length field.
pub const FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// The largest Raft message the transport carries (split into [`Frame::RaftPart`]s above
/// one frame): room for a snapshot of a full state (`JOBS_MAX` jobs).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 1 << 30;
/// The payload of one [`Frame::RaftPart`].
pub const RAFT_PART_BYTES: usize = 4 << 20;
/// Bytes of the length field.
const LENGTH_BYTES: usize = 4;
/// Bytes of version and kind, counted by the length field.
const HEAD_BYTES: usize = 3;
/// [`read_frame`] reads at most this much at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

const _: () = assert!(FRAME_BYTES_MAX as u64 + (LENGTH_BYTES as u64) <= usize::MAX as u64);
const _: () = assert!(FRAME_BYTES_MAX as usize > HEAD_BYTES);

const KIND_PEER_HELLO: u8 = 0x01;
const KIND_RAFT: u8 = 0x02;
const KIND_RAFT_PART: u8 = 0x03;
const KIND_REQUEST: u8 = 0x10;
const KIND_RESPONSE: u8 = 0x11;

/// `code`s of [`ClientResult::Error`] that the transport itself produces. The event loop's
/// own codes start at 100.
pub mod error_code {
    /// The request frame could not be decoded, or was not a request.
    pub const MALFORMED: u16 = 1;
    /// The server dropped the request without a reply (e.g. it is shutting down).
    pub const DROPPED: u16 = 2;
    /// The server did not reply in time.
    pub const TIMEOUT: u16 = 3;
}

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame of a peer stream: who is sending, for which Raft group.
    PeerHello {
        /// The cluster name; must match the receiver's.
        cluster: String,
        /// The Raft group of the stream's messages.
        group: u64,
        /// The sender's node id; must match its certificate.
        from: u64,
    },
    /// A Raft message; the transport never looks inside.
    Raft {
        /// The Raft group.
        group: u64,
        /// The protobuf-encoded raft message.
        message: Vec<u8>,
    },
    /// A piece of a Raft message too large for one frame; see the module docs.
    RaftPart {
        /// The Raft group.
        group: u64,
        /// The whole message's length in bytes.
        total: u64,
        /// The next bytes of the message.
        part: Vec<u8>,
    },
    /// A client request, alone on its own bidirectional stream.
    Request(Request),
    /// The answer to a [`Request`], on the same stream.
    Response(Response),
}

impl Frame {
    /// The frame's name, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::PeerHello { .. } => "peer hello",
            Frame::Raft { .. } => "raft",
            Frame::RaftPart { .. } => "raft part",
            Frame::Request(_) => "request",
            Frame::Response(_) => "response",
        }
    }
}

/// Identifies a request for exactly-once execution: a client id and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestId {
    /// The client's id, chosen by the client.
    pub client: u64,
    /// Increases with each new request of the client; retries reuse it.
    pub seq: u64,
}

/// A client request to a Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request id; echoed in the response.
    pub id: RequestId,
    /// The Raft group the request is for.
    pub group: u64,
    /// What to do.
    pub op: ClientOp,
}

/// The operations a client can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Submit a job given as TOML; optionally wait until it is placed.
    Submit {
        /// The job specification.
        job_toml: String,
        /// Reply only once the job is placed (or cannot be).
        wait_placed: bool,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        job: u64,
    },
    /// An agent's latency probe: announces where it answers probes (`listen`, empty for
    /// nowhere) and reports the RTT it measured to each peer site (0: no answer); the answer
    /// is [`ClientResult::ProbePeers`], whom to probe next.
    AgentProbe {
        /// The agent's node.
        node: String,
        /// Its probe responder's address.
        listen: String,
        /// Measured (peer site, median RTT in ns).
        rtts: Vec<(String, u64)>,
    },
    /// The committed RTT between every pair of sites (linearizable read).
    SiteRtts,
    /// Hold, release, requeue a job or change its time limit (`scontrol`).
    JobControl {
        /// The job id.
        job: u64,
        /// What to do.
        action: JobAction,
    },
    /// A job's status (linearizable read).
    Status {
        /// The job id.
        job: u64,
    },
    /// List jobs (linearizable read).
    Jobs,
    /// Stop placing work on a node.
    Drain {
        /// The node name.
        node: String,
    },
    /// Undo a drain.
    Resume {
        /// The node name.
        node: String,
    },
    /// Mark a node failed.
    FailNode {
        /// The node name.
        node: String,
    },
    /// Register a (GPU) node with the scheduler.
    RegisterNode {
        /// The node name.
        node: String,
    },
    /// Add a replica to the Raft group.
    AddNode {
        /// The replica's Raft node id.
        id: u64,
        /// The replica's address.
        addr: String,
    },
    /// Remove a replica from the Raft group.
    RemoveNode {
        /// The replica's Raft node id.
        id: u64,
    },
    /// Who leads the group.
    Leader,
    /// An agent's heartbeat, answered with its node's assignments ([`ClientResult::Assignments`]):
    /// at once when their version differs from `known`, else when they change or after
    /// `wait_ms` (a long poll).
    AgentSync {
        /// The agent's node.
        node: String,
        /// The assignments version the agent holds (0: none).
        known: u64,
        /// How long to hold the request while nothing changes, at most [`AGENT_WAIT_MS_MAX`].
        wait_ms: u32,
    },
    /// The agent started its part of a job.
    JobStarted {
        /// The agent's node.
        node: String,
        /// The job.
        job: u64,
        /// Which attempt (the job's requeue count when assigned): reports of an earlier
        /// attempt are stale and change nothing.
        attempt: u32,
    },
    /// Jobs, structured (linearizable read): those pending, placed or running, as squeue
    /// shows them, or with `all` the ended ones too.
    JobList {
        /// Include ended jobs.
        all: bool,
    },
    /// One job, structured (linearizable read).
    JobInfo {
        /// The job id.
        job: u64,
    },
    /// Every GPU node with its state and free capacity (linearizable read).
    NodeList,
    /// Read a task's output from its node's agent, relayed by the leader.
    Logs {
        /// The job.
        job: u64,
        /// The member (rank).
        rank: u32,
        /// Standard error instead of standard output.
        stderr: bool,
        /// Byte offset to read from.
        offset: u64,
        /// Most bytes to return (at most [`LOG_CHUNK_MAX`]).
        max: u32,
    },
    /// An agent registers its node with the GPUs it found (NVML names, or simulated ones):
    /// refused when they do not match the node's GPUs in the inventory.
    AgentRegister {
        /// The agent's node.
        node: String,
        /// Model name of each GPU, in index order.
        gpus: Vec<String>,
        /// The network interfaces it found for GPU traffic: (name, Gbit/s). Differences from
        /// the inventory are reported (`sovra nodes`), not refused.
        nics: Vec<(String, u32)>,
    },
    /// An agent reports its node unhealthy (a GPU's critical XID, ...): the leader drains it,
    /// so running jobs finish but nothing new lands there until an operator resumes it.
    AgentHealth {
        /// The agent's node.
        node: String,
        /// What is wrong, one line each.
        problems: Vec<String>,
    },
    /// An agent's answer to a log request.
    LogData {
        /// The agent's node.
        node: String,
        /// The request's token.
        token: u64,
        /// The offset the data starts at.
        offset: u64,
        /// The bytes read.
        data: Vec<u8>,
        /// Whether the file ends after `data`.
        eof: bool,
        /// Why nothing could be read.
        error: Option<String>,
    },
    /// A job's process on the agent's node ended by itself.
    JobEnded {
        /// The agent's node.
        node: String,
        /// The job.
        job: u64,
        /// Which attempt.
        attempt: u32,
        /// How it ended.
        how: JobEnd,
    },
}

/// One job, for `sovra jobs`, `status` and `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Slurm's compact state code (`PD`, `CF`, `R`, `CD`, ...).
    pub state: String,
    /// Priority.
    pub priority: u32,
    /// Allowed jurisdictions.
    pub jurisdictions: Vec<String>,
    /// What one member asks for, as text (`2 GPUs`, `gang 4 x 8 GPUs in one leaf`, ...).
    pub request: String,
    /// Wall-clock limit.
    pub time_limit_ms: Option<u64>,
    /// Submit time (leader clock, ms since the Unix epoch).
    pub submit_ms: u64,
    /// Start time.
    pub start_ms: Option<u64>,
    /// End time.
    pub end_ms: Option<u64>,
    /// Exit code, when the job ended by itself.
    pub exit_code: Option<i32>,
    /// Requeues after node failures.
    pub restarts: u32,
    /// Members in rank order: node, its site and jurisdiction, GPUs; where the job runs, or
    /// where it last ran (ended or requeued jobs).
    pub members: Vec<(String, String, String, sovra_fabric::GpuTake)>,
    /// Why it waits, when it waits.
    pub reason: Option<String>,
    /// Job control and resources, for the Slurm shim.
    pub control: JobControlInfo,
}

/// A job's control fields and per-member resources, as the Slurm shim shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobControlInfo {
    /// The submitting user, as given.
    pub user: String,
    /// Its queue (partition).
    pub queue: String,
    /// Held.
    pub held: bool,
    /// Its array's job id and its index, for an array task.
    pub array: Option<(u64, u32)>,
    /// Its dependency in Slurm's syntax, empty for none.
    pub dependency: String,
    /// Members (tasks, gang members, replicas).
    pub members: u32,
    /// CPU per member.
    pub cpu_milli: u64,
    /// Memory per member.
    pub memory_mib: u64,
    /// GPU per member, milli-GPU.
    pub gpu_milli: u64,
    /// Working directory, empty for the agent's default.
    pub workdir: String,
    /// The command, arguments joined by spaces.
    pub command: String,
}

/// One GPU node, for `sovra nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Site.
    pub site: String,
    /// The site's jurisdiction.
    pub jurisdiction: String,
    /// `unknown`, `up`, `drained` or `down`.
    pub state: String,
    /// Whether an agent registered it (it is then held to a heartbeat lease).
    pub agent: bool,
    /// GPU model (empty without GPUs).
    pub model: String,
    /// GPUs.
    pub gpus: u32,
    /// GPUs with nothing allocated.
    pub gpus_whole_free: u32,
    /// Free CPU.
    pub cpu_free_milli: u64,
    /// Free memory.
    pub memory_free_mib: u64,
    /// What its agent found that differs from the inventory (NICs), one line each.
    pub conflicts: Vec<String>,
    /// CPU in all.
    pub cpu_milli: u64,
    /// Memory in all.
    pub memory_mib: u64,
}

/// The most bytes one [`ClientOp::Logs`] returns.
pub const LOG_CHUNK_MAX: u32 = 1 << 20;

/// A request for a task's output, handed to its agent in [`ClientResult::Assignments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    /// Names the request in the agent's [`ClientOp::LogData`] answer.
    pub token: u64,
    /// The job.
    pub job: u64,
    /// The member (rank).
    pub rank: u32,
    /// Standard error instead of standard output.
    pub stderr: bool,
    /// Byte offset.
    pub offset: u64,
    /// Most bytes.
    pub max: u32,
}

/// The longest [`ClientOp::AgentSync`] long poll.
pub const AGENT_WAIT_MS_MAX: u32 = 30_000;

/// How a job's process ended, as its agent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// It exited with this code (128 + n for a signal).
    Exited(i32),
    /// The cgroup's memory limit killed it.
    OutOfMemory,
}

/// One job placed on (or running on) the asking agent's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The job id.
    pub job: u64,
    /// The job's name.
    pub name: String,
    /// The job's tenant.
    pub tenant: String,
    /// Whether the job was reported started.
    pub running: bool,
    /// How many times the job was requeued: a new attempt is a new run, even of a task the
    /// agent has finished before.
    pub attempt: u32,
    /// CPU per member.
    pub cpu_milli: u64,
    /// Memory per member.
    pub memory_mib: u64,
    /// The wall-clock limit.
    pub time_limit_ms: Option<u64>,
    /// The program and its arguments; empty: nothing to run (the job only holds resources).
    pub argv: Vec<String>,
    /// Extra environment, in order.
    pub env: Vec<(String, String)>,
    /// Working directory; empty: the agent's default.
    pub workdir: String,
    /// Every member, in rank order: its node and its GPUs there.
    pub members: Vec<(String, sovra_fabric::GpuTake)>,
    /// The tenant network the job's processes are isolated in (committed with the
    /// allocation; 0 for none).
    pub tenant_net: u32,
}

impl ClientOp {
    /// What the operation does, for messages ("may not <describe>").
    pub fn describe(&self) -> String {
        match self {
            ClientOp::Submit { .. } => "submit jobs".into(),
            ClientOp::Cancel { job } => format!("cancel job {job}"),
            ClientOp::JobControl { job, .. } => format!("control job {job}"),
            ClientOp::AgentProbe { node, .. } => format!("report latency as the agent of {node}"),
            ClientOp::SiteRtts => "read site latencies".into(),
            ClientOp::Status { job } => format!("read job {job}"),
            ClientOp::Jobs => "list jobs".into(),
            ClientOp::Drain { node } => format!("drain node {node}"),
            ClientOp::Resume { node } => format!("resume node {node}"),
            ClientOp::FailNode { node } => format!("fail node {node}"),
            ClientOp::RegisterNode { node } => format!("register node {node}"),
            ClientOp::AddNode { id, .. } => format!("add replica {id}"),
            ClientOp::RemoveNode { id } => format!("remove replica {id}"),
            ClientOp::Leader => "ask for the leader".into(),
            ClientOp::AgentSync { node, .. } => format!("sync as the agent of node {node}"),
            ClientOp::JobStarted { node, job, .. } => {
                format!("report job {job} started on node {node}")
            }
            ClientOp::JobEnded { node, job, .. } => {
                format!("report job {job} ended on node {node}")
            }
            ClientOp::JobList { .. } => "list jobs".into(),
            ClientOp::JobInfo { job } => format!("read job {job}"),
            ClientOp::NodeList => "list nodes".into(),
            ClientOp::Logs { job, .. } => format!("read the output of job {job}"),
            ClientOp::LogData { node, .. } => format!("send output as the agent of node {node}"),
            ClientOp::AgentRegister { node, .. } => format!("register node {node}"),
            ClientOp::AgentHealth { node, .. } => format!("report the health of node {node}"),
        }
    }
}

/// A site pair's committed RTT, for `sovra topology`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRtt {
    /// One site.
    pub a: String,
    /// The other.
    pub b: String,
    /// Committed RTT.
    pub rtt_ns: u64,
    /// Whether agents' measurements set it (otherwise it is the inventory's).
    pub measured: bool,
}

/// What [`ClientOp::JobControl`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Keep a pending job from being placed.
    Hold,
    /// Undo a hold.
    Release,
    /// Put a placed or running job back in the queue (its processes are killed).
    Requeue,
    /// Set the time limit (`None`: unlimited); a running job's may only shrink.
    SetTimeLimit(Option<u64>),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The id of the request answered.
    pub id: RequestId,
    /// The outcome.
    pub result: ClientResult,
}

/// Outcomes of client requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResult {
    /// Jobs, structured.
    JobList {
        /// The jobs, by id.
        jobs: Vec<JobInfo>,
    },
    /// Nodes, structured.
    NodeList {
        /// The nodes, in inventory order.
        nodes: Vec<NodeInfo>,
    },
    /// A node's assignments (the answer to [`ClientOp::AgentSync`]).
    Assignments {
        /// Changes whenever the list changes (0 is never used).
        version: u64,
        /// Whether the node is in service (up or drained); when not, its agent registers it
        /// again.
        in_service: bool,
        /// The jobs placed or running on the node, by job id.
        jobs: Vec<Assignment>,
        /// Output the leader wants read (answer each with [`ClientOp::LogData`]).
        log_requests: Vec<LogRequest>,
    },
    /// Whom an agent probes: (site, probe address), one agent per other site.
    ProbePeers {
        /// The peers.
        peers: Vec<(String, String)>,
    },
    /// Committed RTTs between sites.
    SiteRtts {
        /// One per site pair.
        rtts: Vec<SiteRtt>,
    },
    /// Part of a task's output.
    LogChunk {
        /// Where `data` starts.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// Whether the file ends after `data` (for now: more may come while the task runs).
        eof: bool,
    },
    /// A job was accepted.
    Submitted {
        /// The job id.
        job: u64,
        /// The placement, as text, when the request waited for it.
        placed: Option<String>,
    },
    /// Done.
    Ok,
    /// One job, as text.
    Job {
        /// The rendering.
        text: String,
    },
    /// The job list, as text.
    Jobs {
        /// The rendering.
        text: String,
    },
    /// This replica does not lead; try the leader if known.
    NotLeader {
        /// The leader's node id and address, if known.
        leader: Option<(u64, String)>,
    },
    /// The request failed.
    Error {
        /// See [`error_code`] for the transport's codes.
        code: u16,
        /// Why, lower case.
        message: String,
    },
    /// The current leader.
    Leader {
        /// Its node id.
        id: u64,
        /// Its address.
        addr: String,
    },
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length field is over [`FRAME_BYTES_MAX`].
    #[error("frame length {len} exceeds the limit of {FRAME_BYTES_MAX} bytes")]
    Oversize {
        /// The length field.
        len: u32,
    },
    /// The length field is too small to hold version and kind.
    #[error("frame length {len} is shorter than the 3-byte version and kind")]
    Undersize {
        /// The length field.
        len: u32,
    },
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {version} (this build speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version field.
        version: u16,
    },
    /// An unknown frame kind.
    #[error("unknown frame kind {kind:#04x}")]
    Kind {
        /// The kind byte.
        kind: u8,
    },
    /// An unknown op or result tag.
    #[error("unknown {what} tag {tag:#04x}")]
    Tag {
        /// "op" or "result".
        what: &'static str,
        /// The tag byte.
        tag: u8,
    },
    /// The payload ends inside a field.
    #[error("truncated {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A string field that is not UTF-8.
    #[error("{what} is not valid utf-8")]
    Utf8 {
        /// The field.
        what: &'static str,
    },
    /// A bool or option byte other than 0 or 1.
    #[error("invalid {what} byte {byte:#04x}")]
    Flag {
        /// The field.
        what: &'static str,
        /// The byte.
        byte: u8,
    },
    /// Bytes left over after the payload's last field.
    #[error("trailing bytes after the {kind} payload: {count}")]
    Trailing {
        /// The frame's kind name.
        kind: &'static str,
        /// How many bytes.
        count: usize,
    },
}

/// Failures of [`read_frame`] and [`write_frame`].
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes read are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({read} of {expected} bytes)")]
    Incomplete {
        /// Bytes of the frame read.
        read: usize,
        /// Bytes the frame needed.
        expected: usize,
    },
    /// Reading failed (stream reset, connection lost).
    #[error("reading frame: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing failed (stream stopped, connection lost).
    #[error("writing frame: {0}")]
    Write(#[from] quinn::WriteError),
    /// The frame to write is over [`FRAME_BYTES_MAX`]; nothing was written.
    #[error("{kind} frame of {len} bytes exceeds the limit of {FRAME_BYTES_MAX} bytes")]
    TooLarge {
        /// The frame's kind name.
        kind: &'static str,
        /// Its encoded length, without the length field.
        len: usize,
    },
}

/// Encodes a frame. A frame whose length exceeds [`FRAME_BYTES_MAX`] gets a length field
/// that every decoder rejects; [`write_frame`] refuses to send one.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; LENGTH_BYTES]);
    put_u16(&mut out, PROTOCOL_VERSION);
    match frame {
        Frame::PeerHello {
            cluster,
            group,
            from,
        } => {
            put_u8(&mut out, KIND_PEER_HELLO);
            put_str(&mut out, cluster);
            put_u64(&mut out, *group);
            put_u64(&mut out, *from);
        }
        Frame::Raft { group, message } => {
            put_u8(&mut out, KIND_RAFT);
            put_u64(&mut out, *group);
            put_bytes(&mut out, message);
        }
        Frame::RaftPart { group, total, part } => {
            put_u8(&mut out, KIND_RAFT_PART);
            put_u64(&mut out, *group);
            put_u64(&mut out, *total);
            put_bytes(&mut out, part);
        }
        Frame::Request(request) => {
            put_u8(&mut out, KIND_REQUEST);
            put_request_id(&mut out, request.id);
            put_u64(&mut out, request.group);
            put_op(&mut out, &request.op);
        }
        Frame::Response(response) => {
            put_u8(&mut out, KIND_RESPONSE);
            put_request_id(&mut out, response.id);
            put_result(&mut out, &response.result);
        }
    }
    let len = u32::try_from(out.len() - LENGTH_BYTES).unwrap_or(u32::MAX);
    out[..LENGTH_BYTES].copy_from_slice(&len.to_le_bytes());
    out
}

/// Decodes the first frame in `buf`: `Ok(None)` while `buf` holds only a prefix of a frame,
/// `Ok(Some((frame, n)))` with the `n` bytes it used, or an error as soon as the bytes seen
/// cannot start a valid frame (an oversize length is rejected before its payload arrives).
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(len_bytes) = buf.first_chunk::<LENGTH_BYTES>() else {
        return Ok(None);
    };
    let len = check_len(u32::from_le_bytes(*len_bytes))?;
    let head = &buf[LENGTH_BYTES..];
    if let Some(version) = head.first_chunk::<2>() {
        check_version(u16::from_le_bytes(*version))?;
    }
    if let Some(&kind) = head.get(2) {
        check_kind(kind)?;
    }
    let Some(body) = head.get(..len) else {
        return Ok(None);
    };
    let frame = decode_body(body)?;
    Ok(Some((frame, LENGTH_BYTES + len)))
}

/// Reads one frame; `Ok(None)` when the stream finishes cleanly between frames.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Frame>, StreamError> {
    let mut len_bytes = [0; LENGTH_BYTES];
    match recv.read_exact(&mut len_bytes).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(read)) => {
            return Err(StreamError::Incomplete {
                read,
                expected: LENGTH_BYTES,
            });
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let len = check_len(u32::from_le_bytes(len_bytes))?;
    // Grow with the data that actually arrives, not with what the length field claims.
    let mut body = Vec::with_capacity(len.min(READ_CHUNK_BYTES));
    while body.len() < len {
        let want = (len - body.len()).min(READ_CHUNK_BYTES);
        match recv.read_chunk(want, true).await? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                let read = LENGTH_BYTES + body.len();
                return Err(StreamError::Incomplete {
                    read,
                    expected: LENGTH_BYTES + len,
                });
            }
        }
    }
    Ok(Some(decode_body(&body)?))
}

/// Writes one frame.
pub async fn write_frame(send: &mut quinn::SendStream, frame: &Frame) -> Result<(), StreamError> {
    let bytes = encode(frame);
    let len = bytes.len() - LENGTH_BYTES;
    if len > FRAME_BYTES_MAX as usize {
        return Err(StreamError::TooLarge {
            kind: frame.kind_name(),
            len,
        });
    }
    send.write_all(&bytes).await?;
    Ok(())
}

/// The frames that carry one Raft message: one [`Frame::Raft`] when it fits, else
/// [`Frame::RaftPart`]s of [`RAFT_PART_BYTES`]. The caller bounds the message by
/// [`RAFT_MESSAGE_BYTES_MAX`].
pub fn raft_frames(group: u64, message: Vec<u8>) -> Vec<Frame> {
    if raft_frame_bytes(message.len()) <= FRAME_BYTES_MAX as usize {
        return vec![Frame::Raft { group, message }];
    }
    let total = message.len() as u64;
    message
        .chunks(RAFT_PART_BYTES)
        .map(|part| Frame::RaftPart {
            group,
            total,
            part: part.to_vec(),
        })
        .collect()
}

/// Joins the [`Frame::RaftPart`]s of one peer stream back into messages.
#[derive(Debug, Default)]
pub struct RaftJoiner {
    /// The message being joined: its total length, and the bytes so far.
    partial: Option<(u64, Vec<u8>)>,
}

impl RaftJoiner {
    /// Takes the stream's next part: the whole message once complete, `None` while more
    /// parts are due, or why the parts are malformed (the stream is then broken).
    pub fn push(&mut self, total: u64, part: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        if total > RAFT_MESSAGE_BYTES_MAX as u64 {
            return Err(format!(
                "raft message of {total} bytes exceeds the limit of {RAFT_MESSAGE_BYTES_MAX}"
            ));
        }
        if part.is_empty() {
            return Err("empty raft part".into());
        }
        let (expected, bytes) = self.partial.get_or_insert_with(|| {
            // Grow with the parts that arrive, not with what `total` claims.
            (total, Vec::with_capacity(part.len()))
        });
        if *expected != total {
            return Err(format!(
                "raft part says the message has {total} bytes, earlier parts said {expected}"
            ));
        }
        if bytes.len() as u64 + part.len() as u64 > total {
            return Err(format!("raft parts overrun the message's {total} bytes"));
        }
        bytes.extend_from_slice(&part);
        if bytes.len() as u64 == total {
            return Ok(self.partial.take().map(|(_, bytes)| bytes));
        }
        Ok(None)
    }

    /// Whether a message is half joined (a whole `Raft` frame may not come now).
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }
}

/// The encoded size of a raft frame carrying `message_bytes`, without the length field.
pub fn raft_frame_bytes(message_bytes: usize) -> usize {
    HEAD_BYTES + 8 + 4 + message_bytes
}

fn check_len(len: u32) -> Result<usize, DecodeError> {
    if len > FRAME_BYTES_MAX {
        return Err(DecodeError::Oversize { len });
    }
    if (len as usize) < HEAD_BYTES {
        return Err(DecodeError::Undersize { len });
    }
    Ok(len as usize)
}

fn check_version(version: u16) -> Result<(), DecodeError> {
    match version {
        PROTOCOL_VERSION => Ok(()),
        _ => Err(DecodeError::Version { version }),
    }
}

fn check_kind(kind: u8) -> Result<(), DecodeError> {
    match kind {
        KIND_PEER_HELLO | KIND_RAFT | KIND_RAFT_PART | KIND_REQUEST | KIND_RESPONSE => Ok(()),
        _ => Err(DecodeError::Kind { kind }),
    }
}

/// Decodes `version | kind | payload`, all of which must be used.
fn decode_body(body: &[u8]) -> Result<Frame, DecodeError> {
    let mut reader = Reader { buf: body };
    check_version(reader.u16("version")?)?;
    let kind = reader.u8("kind")?;
    let frame = match kind {
        KIND_PEER_HELLO => Frame::PeerHello {
            cluster: reader.string("cluster")?,
            group: reader.u64("group")?,
            from: reader.u64("from")?,
        },
        KIND_RAFT => Frame::Raft {
            group: reader.u64("group")?,
            message: reader.bytes("message")?,
        },
        KIND_RAFT_PART => Frame::RaftPart {
            group: reader.u64("group")?,
            total: reader.u64("total")?,
            part: reader.bytes("part")?,
        },
        KIND_REQUEST => Frame::Request(Request {
            id: reader.request_id()?,
            group: reader.u64("group")?,
            op: reader.op()?,
        }),
        KIND_RESPONSE => Frame::Response(Response {
            id: reader.request_id()?,
            result: reader.result()?,
        }),
        _ => return Err(DecodeError::Kind { kind }),
    };
    if !reader.buf.is_empty() {
        return Err(DecodeError::Trailing {
            kind: frame.kind_name(),
            count: reader.buf.len(),
        });
    }
    Ok(frame)
}

fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    // Over-long fields only occur in frames far beyond FRAME_BYTES_MAX, which `encode` marks
    // as oversize; saturating keeps the bytes unambiguous up to that point.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_bytes(out, value.as_bytes());
}

fn put_request_id(out: &mut Vec<u8>, id: RequestId) {
    put_u64(out, id.client);
    put_u64(out, id.seq);
}

fn put_op(out: &mut Vec<u8>, op: &ClientOp) {
    match op {
        ClientOp::Submit {
            job_toml,
            wait_placed,
        } => {
            put_u8(out, 0x01);
            put_str(out, job_toml);
            put_bool(out, *wait_placed);
        }
        ClientOp::Cancel { job } => {
            put_u8(out, 0x02);
            put_u64(out, *job);
        }
        ClientOp::Status { job } => {
            put_u8(out, 0x03);
            put_u64(out, *job);
        }
        ClientOp::AgentProbe { node, listen, rtts } => {
            put_u8(out, 0x17);
            put_str(out, node);
            put_str(out, listen);
            put_count(out, rtts.len());
            for (site, rtt) in rtts {
                put_str(out, site);
                put_u64(out, *rtt);
            }
        }
        ClientOp::SiteRtts => put_u8(out, 0x18),
        ClientOp::JobControl { job, action } => {
            put_u8(out, 0x16);
            put_u64(out, *job);
            match action {
                JobAction::Hold => put_u8(out, 0),
                JobAction::Release => put_u8(out, 1),
                JobAction::Requeue => put_u8(out, 2),
                JobAction::SetTimeLimit(limit) => {
                    put_u8(out, 3);
                    put_opt_u64(out, *limit);
                }
            }
        }
        ClientOp::Jobs => put_u8(out, 0x04),
        ClientOp::Drain { node } => {
            put_u8(out, 0x05);
            put_str(out, node);
        }
        ClientOp::Resume { node } => {
            put_u8(out, 0x06);
            put_str(out, node);
        }
        ClientOp::FailNode { node } => {
            put_u8(out, 0x07);
            put_str(out, node);
        }
        ClientOp::RegisterNode { node } => {
            put_u8(out, 0x08);
            put_str(out, node);
        }
        ClientOp::AddNode { id, addr } => {
            put_u8(out, 0x09);
            put_u64(out, *id);
            put_str(out, addr);
        }
        ClientOp::RemoveNode { id } => {
            put_u8(out, 0x0a);
            put_u64(out, *id);
        }
        ClientOp::Leader => put_u8(out, 0x0b),
        ClientOp::AgentSync {
            node,
            known,
            wait_ms,
        } => {
            put_u8(out, 0x0c);
            put_str(out, node);
            put_u64(out, *known);
            put_u32(out, *wait_ms);
        }
        ClientOp::JobStarted { node, job, attempt } => {
            put_u8(out, 0x0d);
            put_str(out, node);
            put_u64(out, *job);
            put_u32(out, *attempt);
        }
        ClientOp::JobList { all } => {
            put_u8(out, 0x0f);
            put_bool(out, *all);
        }
        ClientOp::JobInfo { job } => {
            put_u8(out, 0x10);
            put_u64(out, *job);
        }
        ClientOp::NodeList => put_u8(out, 0x11),
        ClientOp::Logs {
            job,
            rank,
            stderr,
            offset,
            max,
        } => {
            put_u8(out, 0x12);
            put_u64(out, *job);
            put_u32(out, *rank);
            put_bool(out, *stderr);
            put_u64(out, *offset);
            put_u32(out, *max);
        }
        ClientOp::AgentHealth { node, problems } => {
            put_u8(out, 0x15);
            put_str(out, node);
            put_count(out, problems.len());
            for p in problems {
                put_str(out, p);
            }
        }
        ClientOp::AgentRegister { node, gpus, nics } => {
            put_u8(out, 0x14);
            put_str(out, node);
            put_count(out, gpus.len());
            for g in gpus {
                put_str(out, g);
            }
            put_count(out, nics.len());
            for (name, gbit) in nics {
                put_str(out, name);
                put_u32(out, *gbit);
            }
        }
        ClientOp::LogData {
            node,
            token,
            offset,
            data,
            eof,
            error,
        } => {
            put_u8(out, 0x13);
            put_str(out, node);
            put_u64(out, *token);
            put_u64(out, *offset);
            put_bytes(out, data);
            put_bool(out, *eof);
            put_opt_str(out, error.as_deref());
        }
        ClientOp::JobEnded {
            node,
            job,
            attempt,
            how,
        } => {
            put_u8(out, 0x0e);
            put_str(out, node);
            put_u64(out, *job);
            put_u32(out, *attempt);
            match how {
                JobEnd::Exited(code) => {
                    put_u8(out, 0);
                    put_u32(out, *code as u32);
                }
                JobEnd::OutOfMemory => put_u8(out, 1),
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_gpu_take(out: &mut Vec<u8>, take: &sovra_fabric::GpuTake) {
    use sovra_fabric::GpuTake;
    match *take {
        GpuTake::None => put_u8(out, 0),
        GpuTake::Whole { mask } => {
            put_u8(out, 1);
            put_u32(out, mask);
        }
        GpuTake::Milli { local, milli } => {
            put_u8(out, 2);
            put_u8(out, local);
            put_u16(out, milli);
        }
        GpuTake::Mig {
            local,
            compute,
            memory,
        } => {
            put_u8(out, 3);
            put_u8(out, local);
            put_u8(out, compute);
            put_u8(out, memory);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => put_u8(out, 0),
        Some(v) => {
            put_u8(out, 1);
            put_u64(out, v);
        }
    }
}

fn put_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => put_u8(out, 0),
        Some(v) => {
            put_u8(out, 1);
            put_str(out, v);
        }
    }
}

fn put_job_info(out: &mut Vec<u8>, j: &JobInfo) {
    put_u64(out, j.id);
    put_str(out, &j.name);
    put_str(out, &j.tenant);
    put_str(out, &j.state);
    put_u32(out, j.priority);
    put_count(out, j.jurisdictions.len());
    for code in &j.jurisdictions {
        put_str(out, code);
    }
    put_str(out, &j.request);
    put_opt_u64(out, j.time_limit_ms);
    put_u64(out, j.submit_ms);
    put_opt_u64(out, j.start_ms);
    put_opt_u64(out, j.end_ms);
    match j.exit_code {
        None => put_u8(out, 0),
        Some(code) => {
            put_u8(out, 1);
            put_u32(out, code as u32);
        }
    }
    put_u32(out, j.restarts);
    put_count(out, j.members.len());
    for (node, site, jurisdiction, take) in &j.members {
        put_str(out, node);
        put_str(out, site);
        put_str(out, jurisdiction);
        put_gpu_take(out, take);
    }
    put_opt_str(out, j.reason.as_deref());
    let c = &j.control;
    put_str(out, &c.user);
    put_str(out, &c.queue);
    put_bool(out, c.held);
    match c.array {
        None => put_u8(out, 0),
        Some((job, index)) => {
            put_u8(out, 1);
            put_u64(out, job);
            put_u32(out, index);
        }
    }
    put_str(out, &c.dependency);
    put_u32(out, c.members);
    put_u64(out, c.cpu_milli);
    put_u64(out, c.memory_mib);
    put_u64(out, c.gpu_milli);
    put_str(out, &c.workdir);
    put_str(out, &c.command);
}

fn put_node_info(out: &mut Vec<u8>, n: &NodeInfo) {
    put_str(out, &n.name);
    put_str(out, &n.site);
    put_str(out, &n.jurisdiction);
    put_str(out, &n.state);
    put_bool(out, n.agent);
    put_str(out, &n.model);
    put_u32(out, n.gpus);
    put_u32(out, n.gpus_whole_free);
    put_u64(out, n.cpu_free_milli);
    put_u64(out, n.memory_free_mib);
    put_u64(out, n.cpu_milli);
    put_u64(out, n.memory_mib);
    put_count(out, n.conflicts.len());
    for c in &n.conflicts {
        put_str(out, c);
    }
}

fn put_assignment(out: &mut Vec<u8>, a: &Assignment) {
    put_u64(out, a.job);
    put_str(out, &a.name);
    put_str(out, &a.tenant);
    put_bool(out, a.running);
    put_u32(out, a.attempt);
    put_u64(out, a.cpu_milli);
    put_u64(out, a.memory_mib);
    put_opt_u64(out, a.time_limit_ms);
    put_count(out, a.argv.len());
    for arg in &a.argv {
        put_str(out, arg);
    }
    put_count(out, a.env.len());
    for (k, v) in &a.env {
        put_str(out, k);
        put_str(out, v);
    }
    put_str(out, &a.workdir);
    put_count(out, a.members.len());
    for (node, take) in &a.members {
        put_str(out, node);
        put_gpu_take(out, take);
    }
    put_u32(out, a.tenant_net);
}

fn put_result(out: &mut Vec<u8>, result: &ClientResult) {
    match result {
        ClientResult::Submitted { job, placed } => {
            put_u8(out, 0x01);
            put_u64(out, *job);
            put_opt_str(out, placed.as_deref());
        }
        ClientResult::Ok => put_u8(out, 0x02),
        ClientResult::Job { text } => {
            put_u8(out, 0x03);
            put_str(out, text);
        }
        ClientResult::Jobs { text } => {
            put_u8(out, 0x04);
            put_str(out, text);
        }
        ClientResult::NotLeader { leader } => {
            put_u8(out, 0x05);
            match leader {
                None => put_u8(out, 0),
                Some((id, addr)) => {
                    put_u8(out, 1);
                    put_u64(out, *id);
                    put_str(out, addr);
                }
            }
        }
        ClientResult::Error { code, message } => {
            put_u8(out, 0x06);
            put_u16(out, *code);
            put_str(out, message);
        }
        ClientResult::Leader { id, addr } => {
            put_u8(out, 0x07);
            put_u64(out, *id);
            put_str(out, addr);
        }
        ClientResult::JobList { jobs } => {
            put_u8(out, 0x09);
            put_count(out, jobs.len());
            for j in jobs {
                put_job_info(out, j);
            }
        }
        ClientResult::NodeList { nodes } => {
            put_u8(out, 0x0a);
            put_count(out, nodes.len());
            for n in nodes {
                put_node_info(out, n);
            }
        }
        ClientResult::Assignments {
            version,
            in_service,
            jobs,
            log_requests,
        } => {
            put_u8(out, 0x08);
            put_u64(out, *version);
            put_bool(out, *in_service);
            put_count(out, jobs.len());
            for a in jobs {
                put_assignment(out, a);
            }
            put_count(out, log_requests.len());
            for r in log_requests {
                put_u64(out, r.token);
                put_u64(out, r.job);
                put_u32(out, r.rank);
                put_bool(out, r.stderr);
                put_u64(out, r.offset);
                put_u32(out, r.max);
            }
        }
        ClientResult::ProbePeers { peers } => {
            put_u8(out, 0x0c);
            put_count(out, peers.len());
            for (site, addr) in peers {
                put_str(out, site);
                put_str(out, addr);
            }
        }
        ClientResult::SiteRtts { rtts } => {
            put_u8(out, 0x0d);
            put_count(out, rtts.len());
            for r in rtts {
                put_str(out, &r.a);
                put_str(out, &r.b);
                put_u64(out, r.rtt_ns);
                put_bool(out, r.measured);
            }
        }
        ClientResult::LogChunk { offset, data, eof } => {
            put_u8(out, 0x0b);
            put_u64(out, *offset);
            put_bytes(out, data);
            put_bool(out, *eof);
        }
    }
}

/// Reads fields from the front of a payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated { what })?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(DecodeError::Flag { what, byte }),
        }
    }

    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(what)?;
        // Checked against the input before allocating.
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated { what })?;
        self.take(len, what).map(<[u8]>::to_vec)
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| DecodeError::Utf8 { what })
    }

    /// A sequence count; each item is at least one byte, so a count beyond the bytes left is
    /// refused before anything is allocated.
    fn count(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n > self.buf.len() {
            return Err(DecodeError::Truncated { what });
        }
        Ok(n)
    }

    fn gpu_take(&mut self) -> Result<sovra_fabric::GpuTake, DecodeError> {
        use sovra_fabric::GpuTake;
        Ok(match self.u8("gpu take")? {
            0 => GpuTake::None,
            1 => GpuTake::Whole {
                mask: self.u32("gpu mask")?,
            },
            2 => GpuTake::Milli {
                local: self.u8("gpu index")?,
                milli: self.u16("gpu milli")?,
            },
            3 => GpuTake::Mig {
                local: self.u8("gpu index")?,
                compute: self.u8("mig compute")?,
                memory: self.u8("mig memory")?,
            },
            tag => {
                return Err(DecodeError::Tag {
                    what: "gpu take",
                    tag,
                })
            }
        })
    }

    fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        Ok(match self.flag(what)? {
            false => None,
            true => Some(self.u64(what)?),
        })
    }

    fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        Ok(match self.flag(what)? {
            false => None,
            true => Some(self.string(what)?),
        })
    }

    fn job_info(&mut self) -> Result<JobInfo, DecodeError> {
        let id = self.u64("job")?;
        let name = self.string("name")?;
        let tenant = self.string("tenant")?;
        let state = self.string("state")?;
        let priority = self.u32("priority")?;
        let mut jurisdictions = Vec::new();
        for _ in 0..self.count("jurisdictions")? {
            jurisdictions.push(self.string("jurisdiction")?);
        }
        let request = self.string("request")?;
        let time_limit_ms = self.opt_u64("time_limit_ms")?;
        let submit_ms = self.u64("submit_ms")?;
        let start_ms = self.opt_u64("start_ms")?;
        let end_ms = self.opt_u64("end_ms")?;
        let exit_code = match self.flag("exit code option")? {
            false => None,
            true => Some(self.u32("exit_code")? as i32),
        };
        let restarts = self.u32("restarts")?;
        let mut members = Vec::new();
        for _ in 0..self.count("members")? {
            members.push((
                self.string("member node")?,
                self.string("member site")?,
                self.string("member jurisdiction")?,
                self.gpu_take()?,
            ));
        }
        let reason = self.opt_string("reason")?;
        let control = JobControlInfo {
            user: self.string("user")?,
            queue: self.string("queue")?,
            held: self.flag("held")?,
            array: match self.flag("array option")? {
                false => None,
                true => Some((self.u64("array job")?, self.u32("array index")?)),
            },
            dependency: self.string("dependency")?,
            members: self.u32("members")?,
            cpu_milli: self.u64("cpu_milli")?,
            memory_mib: self.u64("memory_mib")?,
            gpu_milli: self.u64("gpu_milli")?,
            workdir: self.string("workdir")?,
            command: self.string("command")?,
        };
        Ok(JobInfo {
            id,
            name,
            tenant,
            state,
            priority,
            jurisdictions,
            request,
            time_limit_ms,
            submit_ms,
            start_ms,
            end_ms,
            exit_code,
            restarts,
            members,
            reason,
            control,
        })
    }

    fn assignment(&mut self) -> Result<Assignment, DecodeError> {
        let job = self.u64("job")?;
        let name = self.string("name")?;
        let tenant = self.string("tenant")?;
        let running = self.flag("running")?;
        let attempt = self.u32("attempt")?;
        let cpu_milli = self.u64("cpu_milli")?;
        let memory_mib = self.u64("memory_mib")?;
        let time_limit_ms = self.opt_u64("time_limit_ms")?;
        let mut argv = Vec::new();
        for _ in 0..self.count("argv")? {
            argv.push(self.string("arg")?);
        }
        let mut env = Vec::new();
        for _ in 0..self.count("env")? {
            env.push((self.string("env name")?, self.string("env value")?));
        }
        let workdir = self.string("workdir")?;
        let mut members = Vec::new();
        for _ in 0..self.count("members")? {
            members.push((self.string("member node")?, self.gpu_take()?));
        }
        let tenant_net = self.u32("tenant_net")?;
        Ok(Assignment {
            job,
            name,
            tenant,
            running,
            attempt,
            cpu_milli,
            memory_mib,
            time_limit_ms,
            argv,
            env,
            workdir,
            members,
            tenant_net,
        })
    }

    fn request_id(&mut self) -> Result<RequestId, DecodeError> {
        Ok(RequestId {
            client: self.u64("client")?,
            seq: self.u64("seq")?,
        })
    }

    fn op(&mut self) -> Result<ClientOp, DecodeError> {
        let op = match self.u8("op")? {
            0x01 => ClientOp::Submit {
                job_toml: self.string("job_toml")?,
                wait_placed: self.flag("wait_placed")?,
            },
            0x02 => ClientOp::Cancel {
                job: self.u64("job")?,
            },
            0x03 => ClientOp::Status {
                job: self.u64("job")?,
            },
            0x17 => {
                let node = self.string("node")?;
                let listen = self.string("listen")?;
                let mut rtts = Vec::new();
                for _ in 0..self.count("rtts")? {
                    rtts.push((self.string("site")?, self.u64("rtt")?));
                }
                ClientOp::AgentProbe { node, listen, rtts }
            }
            0x18 => ClientOp::SiteRtts,
            0x16 => ClientOp::JobControl {
                job: self.u64("job")?,
                action: match self.u8("action")? {
                    0 => JobAction::Hold,
                    1 => JobAction::Release,
                    2 => JobAction::Requeue,
                    3 => JobAction::SetTimeLimit(self.opt_u64("time_limit_ms")?),
                    tag => {
                        return Err(DecodeError::Tag {
                            what: "action",
                            tag,
                        })
                    }
                },
            },
            0x04 => ClientOp::Jobs,
            0x05 => ClientOp::Drain {
                node: self.string("node")?,
            },
            0x06 => ClientOp::Resume {
                node: self.string("node")?,
            },
            0x07 => ClientOp::FailNode {
                node: self.string("node")?,
            },
            0x08 => ClientOp::RegisterNode {
                node: self.string("node")?,
            },
            0x09 => ClientOp::AddNode {
                id: self.u64("id")?,
                addr: self.string("addr")?,
            },
            0x0a => ClientOp::RemoveNode {
                id: self.u64("id")?,
            },
            0x0b => ClientOp::Leader,
            0x0c => ClientOp::AgentSync {
                node: self.string("node")?,
                known: self.u64("known")?,
                wait_ms: self.u32("wait_ms")?,
            },
            0x0d => ClientOp::JobStarted {
                node: self.string("node")?,
                job: self.u64("job")?,
                attempt: self.u32("attempt")?,
            },
            0x0f => ClientOp::JobList {
                all: self.flag("all")?,
            },
            0x10 => ClientOp::JobInfo {
                job: self.u64("job")?,
            },
            0x11 => ClientOp::NodeList,
            0x12 => ClientOp::Logs {
                job: self.u64("job")?,
                rank: self.u32("rank")?,
                stderr: self.flag("stderr")?,
                offset: self.u64("offset")?,
                max: self.u32("max")?,
            },
            0x14 => {
                let node = self.string("node")?;
                let mut gpus = Vec::new();
                for _ in 0..self.count("gpus")? {
                    gpus.push(self.string("gpu model")?);
                }
                let mut nics = Vec::new();
                for _ in 0..self.count("nics")? {
                    nics.push((self.string("nic")?, self.u32("gbit")?));
                }
                ClientOp::AgentRegister { node, gpus, nics }
            }
            0x15 => {
                let node = self.string("node")?;
                let mut problems = Vec::new();
                for _ in 0..self.count("problems")? {
                    problems.push(self.string("problem")?);
                }
                ClientOp::AgentHealth { node, problems }
            }
            0x13 => ClientOp::LogData {
                node: self.string("node")?,
                token: self.u64("token")?,
                offset: self.u64("offset")?,
                data: self.bytes("data")?,
                eof: self.flag("eof")?,
                error: self.opt_string("error")?,
            },
            0x0e => ClientOp::JobEnded {
                node: self.string("node")?,
                job: self.u64("job")?,
                attempt: self.u32("attempt")?,
                how: match self.u8("how")? {
                    0 => JobEnd::Exited(self.u32("code")? as i32),
                    1 => JobEnd::OutOfMemory,
                    tag => return Err(DecodeError::Tag { what: "how", tag }),
                },
            },
            tag => return Err(DecodeError::Tag { what: "op", tag }),
        };
        Ok(op)
    }

    fn result(&mut self) -> Result<ClientResult, DecodeError> {
        let result = match self.u8("result")? {
            0x01 => ClientResult::Submitted {
                job: self.u64("job")?,
                placed: self.opt_string("placed")?,
            },
            0x02 => ClientResult::Ok,
            0x03 => ClientResult::Job {
                text: self.string("text")?,
            },
            0x04 => ClientResult::Jobs {
                text: self.string("text")?,
            },
            0x05 => ClientResult::NotLeader {
                leader: match self.flag("leader option")? {
                    false => None,
                    true => Some((self.u64("leader id")?, self.string("leader addr")?)),
                },
            },
            0x06 => ClientResult::Error {
                code: self.u16("code")?,
                message: self.string("message")?,
            },
            0x07 => ClientResult::Leader {
                id: self.u64("id")?,
                addr: self.string("addr")?,
            },
            0x09 => {
                let mut jobs = Vec::new();
                for _ in 0..self.count("jobs")? {
                    jobs.push(self.job_info()?);
                }
                ClientResult::JobList { jobs }
            }
            0x0a => {
                let mut nodes = Vec::new();
                for _ in 0..self.count("nodes")? {
                    nodes.push(NodeInfo {
                        name: self.string("node name")?,
                        site: self.string("site")?,
                        jurisdiction: self.string("jurisdiction")?,
                        state: self.string("node state")?,
                        agent: self.flag("agent")?,
                        model: self.string("model")?,
                        gpus: self.u32("gpus")?,
                        gpus_whole_free: self.u32("gpus_whole_free")?,
                        cpu_free_milli: self.u64("cpu_free_milli")?,
                        memory_free_mib: self.u64("memory_free_mib")?,
                        cpu_milli: self.u64("cpu_milli")?,
                        memory_mib: self.u64("memory_mib")?,
                        conflicts: {
                            let mut v = Vec::new();
                            for _ in 0..self.count("conflicts")? {
                                v.push(self.string("conflict")?);
                            }
                            v
                        },
                    });
                }
                ClientResult::NodeList { nodes }
            }
            0x08 => {
                let version = self.u64("version")?;
                let in_service = self.flag("in_service")?;
                let n = self.count("assignments")?;
                let mut jobs = Vec::new();
                for _ in 0..n {
                    jobs.push(self.assignment()?);
                }
                let mut log_requests = Vec::new();
                for _ in 0..self.count("log requests")? {
                    log_requests.push(LogRequest {
                        token: self.u64("token")?,
                        job: self.u64("job")?,
                        rank: self.u32("rank")?,
                        stderr: self.flag("stderr")?,
                        offset: self.u64("offset")?,
                        max: self.u32("max")?,
                    });
                }
                ClientResult::Assignments {
                    version,
                    in_service,
                    jobs,
                    log_requests,
                }
            }
            0x0b => ClientResult::LogChunk {
                offset: self.u64("offset")?,
                data: self.bytes("data")?,
                eof: self.flag("eof")?,
            },
            0x0c => {
                let mut peers = Vec::new();
                for _ in 0..self.count("peers")? {
                    peers.push((self.string("site")?, self.string("addr")?));
                }
                ClientResult::ProbePeers { peers }
            }
            0x0d => {
                let mut rtts = Vec::new();
                for _ in 0..self.count("rtts")? {
                    rtts.push(SiteRtt {
                        a: self.string("site a")?,
                        b: self.string("site b")?,
                        rtt_ns: self.u64("rtt")?,
                        measured: self.flag("measured")?,
                    });
                }
                ClientResult::SiteRtts { rtts }
            }
            tag => {
                return Err(DecodeError::Tag {
                    what: "result",
                    tag,
                })
            }
        };
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Sixteen bytes a line.
    fn hex(bytes: &[u8]) -> String {
        let line = |chunk: &[u8]| chunk.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>();
        bytes
            .chunks(16)
            .map(|chunk| line(chunk).join(" ") + "\n")
            .collect()
    }

    /// Pins the encoding of `frame` (the wire format must not drift) and checks it decodes.
    fn check(frame: Frame, expect: Expect) {
        let bytes = encode(&frame);
        expect.assert_eq(&hex(&bytes));
        assert_eq!(decode(&bytes), Ok(Some((frame, bytes.len()))));
    }

    #[test]
    fn encodings_are_pinned() {
        check(
            Frame::PeerHello {
                cluster: "c1".into(),
                group: 1,
                from: 2,
            },
            expect![[r#"
                19 00 00 00 01 00 01 02 00 00 00 63 31 01 00 00
                00 00 00 00 00 02 00 00 00 00 00 00 00
            "#]],
        );
        check(
            Frame::Raft {
                group: 1,
                message: vec![0xaa, 0xbb],
            },
            expect![[r#"
                11 00 00 00 01 00 02 01 00 00 00 00 00 00 00 02
                00 00 00 aa bb
            "#]],
        );
        check(
            Frame::RaftPart {
                group: 1,
                total: 5,
                part: vec![0xaa, 0xbb],
            },
            expect![[r#"
                19 00 00 00 01 00 03 01 00 00 00 00 00 00 00 05
                00 00 00 00 00 00 00 02 00 00 00 aa bb
            "#]],
        );
        check(
            Frame::Request(Request {
                id: RequestId { client: 3, seq: 4 },
                group: 1,
                op: ClientOp::Submit {
                    job_toml: "x".into(),
                    wait_placed: true,
                },
            }),
            expect![[r#"
                22 00 00 00 01 00 10 03 00 00 00 00 00 00 00 04
                00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01
                01 00 00 00 78 01
            "#]],
        );
        check(
            Frame::Response(Response {
                id: RequestId { client: 3, seq: 4 },
                result: ClientResult::NotLeader {
                    leader: Some((2, "h".into())),
                },
            }),
            expect![[r#"
                22 00 00 00 01 00 11 03 00 00 00 00 00 00 00 04
                00 00 00 00 00 00 00 05 01 02 00 00 00 00 00 00
                00 01 00 00 00 68
            "#]],
        );
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let check_err = |bytes: &[u8], expect: Expect| {
            let got = match decode(bytes) {
                Ok(got) => format!("ok {got:?}"),
                Err(e) => e.to_string(),
            };
            expect.assert_eq(&got);
        };
        check_err(&[], expect!["ok None"]);
        check_err(&[3, 0, 0], expect!["ok None"]);
        check_err(
            &[0, 0, 0, 2],
            expect!["frame length 33554432 exceeds the limit of 16777216 bytes"],
        );
        check_err(
            &[2, 0, 0, 0, 1, 0],
            expect!["frame length 2 is shorter than the 3-byte version and kind"],
        );
        check_err(
            &[3, 0, 0, 0, 2, 0],
            expect!["unsupported protocol version 2 (this build speaks 1)"],
        );
        check_err(
            &[3, 0, 0, 0, 1, 0, 0x7f],
            expect!["unknown frame kind 0x7f"],
        );
        check_err(&[3, 0, 0, 0, 1, 0, 0x02], expect!["truncated group"]);
        check_err(
            &[8, 0, 0, 0, 1, 0, 0x01, 9, 0, 0, 0, b'a'],
            expect!["truncated cluster"],
        );
        check_err(
            &[12, 0, 0, 0, 1, 0, 0x01, 1, 0, 0, 0, 0xff, 0, 0, 0, 0],
            expect!["cluster is not valid utf-8"],
        );
        let mut request = encode(&Frame::Request(Request {
            id: RequestId::default(),
            group: 0,
            op: ClientOp::Jobs,
        }));
        *request.last_mut().unwrap() = 0x42;
        check_err(&request, expect!["unknown op tag 0x42"]);
        let mut hello = encode(&Frame::PeerHello {
            cluster: String::new(),
            group: 0,
            from: 0,
        });
        hello[0] += 1;
        hello.push(0);
        check_err(
            &hello,
            expect!["trailing bytes after the peer hello payload: 1"],
        );
        let mut submit = encode(&Frame::Request(Request {
            id: RequestId::default(),
            group: 0,
            op: ClientOp::Submit {
                job_toml: String::new(),
                wait_placed: false,
            },
        }));
        *submit.last_mut().unwrap() = 2;
        check_err(&submit, expect!["invalid wait_placed byte 0x02"]);
    }

    #[test]
    fn oversize_frames_encode_to_a_rejected_length() {
        let len = FRAME_BYTES_MAX as usize;
        let frame = Frame::Raft {
            group: 0,
            message: vec![0; len],
        };
        assert_eq!(raft_frame_bytes(len), len + 15);
        let bytes = encode(&frame);
        assert_eq!(bytes.len(), LENGTH_BYTES + raft_frame_bytes(len));
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Oversize {
                len: FRAME_BYTES_MAX + 15
            })
        );
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9 ]{0,12}", any::<String>()]
    }

    fn op() -> impl Strategy<Value = ClientOp> {
        prop_oneof![
            (text(), any::<bool>()).prop_map(|(job_toml, wait_placed)| ClientOp::Submit {
                job_toml,
                wait_placed
            }),
            any::<u64>().prop_map(|job| ClientOp::Cancel { job }),
            (text(), text(), vec((text(), any::<u64>()), 0..3))
                .prop_map(|(node, listen, rtts)| ClientOp::AgentProbe { node, listen, rtts }),
            Just(ClientOp::SiteRtts),
            (any::<u64>(), 0u8..4, any::<Option<u64>>()).prop_map(|(job, a, t)| {
                let action = match a {
                    0 => JobAction::Hold,
                    1 => JobAction::Release,
                    2 => JobAction::Requeue,
                    _ => JobAction::SetTimeLimit(t),
                };
                ClientOp::JobControl { job, action }
            }),
            any::<u64>().prop_map(|job| ClientOp::Status { job }),
            Just(ClientOp::Jobs),
            text().prop_map(|node| ClientOp::Drain { node }),
            text().prop_map(|node| ClientOp::Resume { node }),
            text().prop_map(|node| ClientOp::FailNode { node }),
            text().prop_map(|node| ClientOp::RegisterNode { node }),
            (any::<u64>(), text()).prop_map(|(id, addr)| ClientOp::AddNode { id, addr }),
            any::<u64>().prop_map(|id| ClientOp::RemoveNode { id }),
            Just(ClientOp::Leader),
            (text(), any::<u64>(), any::<u32>()).prop_map(|(node, known, wait_ms)| {
                ClientOp::AgentSync {
                    node,
                    known,
                    wait_ms,
                }
            }),
            (text(), any::<u64>(), any::<u32>())
                .prop_map(|(node, job, attempt)| { ClientOp::JobStarted { node, job, attempt } }),
            any::<bool>().prop_map(|all| ClientOp::JobList { all }),
            any::<u64>().prop_map(|job| ClientOp::JobInfo { job }),
            Just(ClientOp::NodeList),
            (text(), vec(text(), 0..3), vec((text(), any::<u32>()), 0..3))
                .prop_map(|(node, gpus, nics)| ClientOp::AgentRegister { node, gpus, nics }),
            (text(), vec(text(), 0..3))
                .prop_map(|(node, problems)| ClientOp::AgentHealth { node, problems }),
            (
                any::<u64>(),
                any::<u32>(),
                any::<bool>(),
                any::<u64>(),
                any::<u32>()
            )
                .prop_map(|(job, rank, stderr, offset, max)| ClientOp::Logs {
                    job,
                    rank,
                    stderr,
                    offset,
                    max
                }),
            (
                text(),
                any::<u64>(),
                any::<u64>(),
                vec(any::<u8>(), 0..8),
                any::<bool>(),
                proptest::option::of(text())
            )
                .prop_map(|(node, token, offset, data, eof, error)| {
                    ClientOp::LogData {
                        node,
                        token,
                        offset,
                        data,
                        eof,
                        error,
                    }
                }),
            (text(), any::<u64>(), proptest::option::of(any::<i32>())).prop_map(
                |(node, job, code)| ClientOp::JobEnded {
                    node,
                    job,
                    attempt: (job % 7) as u32,
                    how: code.map_or(JobEnd::OutOfMemory, JobEnd::Exited),
                }
            ),
        ]
    }

    fn gpu_take() -> impl Strategy<Value = sovra_fabric::GpuTake> {
        use sovra_fabric::GpuTake;
        prop_oneof![
            Just(GpuTake::None),
            any::<u32>().prop_map(|mask| GpuTake::Whole { mask }),
            (any::<u8>(), any::<u16>()).prop_map(|(local, milli)| GpuTake::Milli { local, milli }),
            (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(local, compute, memory)| {
                GpuTake::Mig {
                    local,
                    compute,
                    memory,
                }
            }),
        ]
    }

    fn job_info() -> impl Strategy<Value = JobInfo> {
        (
            (any::<u64>(), text(), text(), text(), any::<u32>()),
            (
                vec(text(), 0..3),
                text(),
                proptest::option::of(any::<u64>()),
            ),
            (
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<i32>()),
                any::<u32>(),
            ),
            (
                vec((text(), text(), text(), gpu_take()), 0..3),
                proptest::option::of(text()),
            ),
        )
            .prop_map(
                |(
                    (id, name, tenant, state, priority),
                    (jurisdictions, request, time_limit_ms),
                    (submit_ms, start_ms, end_ms, exit_code, restarts),
                    (members, reason),
                )| JobInfo {
                    id,
                    name,
                    tenant,
                    state,
                    priority,
                    jurisdictions,
                    request,
                    time_limit_ms,
                    submit_ms,
                    start_ms,
                    end_ms,
                    exit_code,
                    restarts,
                    members,
                    reason,
                    control: JobControlInfo {
                        user: "u".into(),
                        array: Some((id, priority)),
                        dependency: "afterok:1".into(),
                        ..JobControlInfo::default()
                    },
                },
            )
    }

    fn node_info() -> impl Strategy<Value = NodeInfo> {
        (
            (text(), text(), text(), text(), any::<bool>()),
            (
                text(),
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
            ),
        )
            .prop_map(
                |(
                    (name, site, jurisdiction, state, agent),
                    (model, gpus, gpus_whole_free, cpu_free_milli, memory_free_mib),
                )| NodeInfo {
                    name,
                    site,
                    jurisdiction,
                    state,
                    agent,
                    model,
                    gpus,
                    gpus_whole_free,
                    cpu_free_milli,
                    memory_free_mib,
                    cpu_milli: cpu_free_milli / 2,
                    memory_mib: memory_free_mib / 3,
                    conflicts: vec![format!("{gpus} gpus")],
                },
            )
    }

    fn assignment() -> impl Strategy<Value = Assignment> {
        (
            (any::<u64>(), text(), text(), any::<bool>(), any::<u32>()),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(any::<u64>()),
            ),
            (vec(text(), 0..3), vec((text(), text()), 0..3), text()),
            vec((text(), gpu_take()), 0..3),
        )
            .prop_map(
                |(
                    (job, name, tenant, running, attempt),
                    (cpu_milli, memory_mib, time_limit_ms),
                    (argv, env, workdir),
                    members,
                )| Assignment {
                    job,
                    name,
                    tenant,
                    running,
                    attempt,
                    cpu_milli,
                    memory_mib,
                    time_limit_ms,
                    argv,
                    env,
                    workdir,
                    tenant_net: attempt % 5,
                    members,
                },
            )
    }

    fn result() -> impl Strategy<Value = ClientResult> {
        prop_oneof![
            (any::<u64>(), proptest::option::of(text()))
                .prop_map(|(job, placed)| ClientResult::Submitted { job, placed }),
            Just(ClientResult::Ok),
            vec((text(), text()), 0..3).prop_map(|peers| ClientResult::ProbePeers { peers }),
            vec((text(), text(), any::<u64>(), any::<bool>()), 0..3).prop_map(|v| {
                ClientResult::SiteRtts {
                    rtts: v
                        .into_iter()
                        .map(|(a, b, rtt_ns, measured)| SiteRtt {
                            a,
                            b,
                            rtt_ns,
                            measured,
                        })
                        .collect(),
                }
            }),
            text().prop_map(|text| ClientResult::Job { text }),
            text().prop_map(|text| ClientResult::Jobs { text }),
            proptest::option::of((any::<u64>(), text()))
                .prop_map(|leader| ClientResult::NotLeader { leader }),
            (any::<u16>(), text())
                .prop_map(|(code, message)| ClientResult::Error { code, message }),
            (any::<u64>(), text()).prop_map(|(id, addr)| ClientResult::Leader { id, addr }),
            vec(job_info(), 0..3).prop_map(|jobs| ClientResult::JobList { jobs }),
            vec(node_info(), 0..3).prop_map(|nodes| ClientResult::NodeList { nodes }),
            (
                any::<u64>(),
                any::<bool>(),
                vec(assignment(), 0..3),
                vec(
                    (
                        any::<u64>(),
                        any::<u64>(),
                        any::<u32>(),
                        any::<bool>(),
                        any::<u64>(),
                        any::<u32>()
                    ),
                    0..3
                )
            )
                .prop_map(|(version, in_service, jobs, reqs)| {
                    ClientResult::Assignments {
                        version,
                        in_service,
                        jobs,
                        log_requests: reqs
                            .into_iter()
                            .map(|(token, job, rank, stderr, offset, max)| LogRequest {
                                token,
                                job,
                                rank,
                                stderr,
                                offset,
                                max,
                            })
                            .collect(),
                    }
                }),
            (any::<u64>(), vec(any::<u8>(), 0..8), any::<bool>())
                .prop_map(|(offset, data, eof)| ClientResult::LogChunk { offset, data, eof }),
        ]
    }

    fn request_id() -> impl Strategy<Value = RequestId> {
        (any::<u64>(), any::<u64>()).prop_map(|(client, seq)| RequestId { client, seq })
    }

    #[test]
    fn big_raft_messages_split_and_join() {
        let message: Vec<u8> = (0..FRAME_BYTES_MAX as usize + RAFT_PART_BYTES + 7)
            .map(|i| (i % 253) as u8)
            .collect();
        let frames = raft_frames(3, message.clone());
        assert_eq!(frames.len(), (message.len()).div_ceil(RAFT_PART_BYTES));
        let mut joiner = RaftJoiner::default();
        let mut joined = None;
        for (i, frame) in frames.into_iter().enumerate() {
            let Frame::RaftPart { group, total, part } = frame else {
                panic!("frame {i} is not a part");
            };
            assert_eq!((group, total), (3, message.len() as u64));
            assert!(
                encode(&Frame::RaftPart {
                    group,
                    total,
                    part: part.clone()
                })
                .len()
                    - LENGTH_BYTES
                    <= FRAME_BYTES_MAX as usize
            );
            assert!(joined.is_none(), "joined before the last part");
            joined = joiner.push(total, part).unwrap();
        }
        assert!(joined == Some(message));
        assert!(!joiner.in_progress());
        // Small messages stay one frame.
        assert_eq!(
            raft_frames(3, vec![1, 2]),
            vec![Frame::Raft {
                group: 3,
                message: vec![1, 2]
            }]
        );
    }

    #[test]
    fn malformed_raft_parts_are_refused() {
        let mut j = RaftJoiner::default();
        assert!(j.push(RAFT_MESSAGE_BYTES_MAX as u64 + 1, vec![1]).is_err());
        let mut j = RaftJoiner::default();
        assert!(j.push(4, vec![]).is_err());
        let mut j = RaftJoiner::default();
        assert_eq!(j.push(4, vec![1, 2]), Ok(None));
        assert!(j
            .push(5, vec![3])
            .unwrap_err()
            .contains("earlier parts said 4"));
        let mut j = RaftJoiner::default();
        assert_eq!(j.push(4, vec![1, 2, 3]), Ok(None));
        assert!(j.push(4, vec![4, 5]).unwrap_err().contains("overrun"));
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (text(), any::<u64>(), any::<u64>()).prop_map(|(cluster, group, from)| {
                Frame::PeerHello {
                    cluster,
                    group,
                    from,
                }
            }),
            (any::<u64>(), vec(any::<u8>(), 0..64))
                .prop_map(|(group, message)| Frame::Raft { group, message }),
            (any::<u64>(), any::<u64>(), vec(any::<u8>(), 0..64))
                .prop_map(|(group, total, part)| Frame::RaftPart { group, total, part }),
            (request_id(), any::<u64>(), op())
                .prop_map(|(id, group, op)| Frame::Request(Request { id, group, op })),
            (request_id(), result())
                .prop_map(|(id, result)| Frame::Response(Response { id, result })),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(frame in frame(), tail in vec(any::<u8>(), 0..8)) {
            let mut bytes = encode(&frame);
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode(&bytes), Ok(Some((frame, len))));
        }

        #[test]
        fn prefixes_need_more_bytes(frame in frame(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&frame);
            let cut = cut.index(bytes.len());
            prop_assert_eq!(decode(&bytes[..cut]), Ok(None));
        }

        #[test]
        fn shortened_payloads_are_errors(frame in frame(), cut in any::<prop::sample::Index>()) {
            let mut bytes = encode(&frame);
            let body = bytes.len() - LENGTH_BYTES;
            let cut = 1 + cut.index(body);
            bytes.truncate(bytes.len() - cut);
            let len = u32::try_from(body - cut).unwrap();
            bytes[..LENGTH_BYTES].copy_from_slice(&len.to_le_bytes());
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..96)) {
            // Whatever decodes must re-encode to exactly the bytes used: one encoding per frame.
            if let Ok(Some((frame, used))) = decode(&bytes) {
                prop_assert_eq!(&encode(&frame)[..], &bytes[..used]);
            }
        }

        #[test]
        fn mutated_frames_never_panic(
            frame in frame(),
            flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode(&frame);
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Ok(Some((frame, used))) = decode(&bytes) {
                prop_assert_eq!(&encode(&frame)[..], &bytes[..used]);
            }
        }
    }
}
