//! The `sovrad` process: one event loop around one [`Replica`], a redb store and the QUIC
//! transport.
//!
//! The loop runs on the main thread (inside `block_on`); the transport's tasks run on the
//! runtime's workers and hand the loop peer messages and client requests through one bounded
//! channel. Each turn the loop takes one input (or a tick), drains whatever else is queued
//! (so a burst of submissions shares one Ready cycle, one fsync and one append per peer),
//! then runs [`Replica::ready`] and sends what it produced. The loop is the only writer of
//! the store and the only owner of the replica: no locks.
//!
//! Leader forwarding: a client request that reaches a follower which knows the leader is
//! passed on to the leader (once) and the answer relayed; otherwise the client gets
//! `NotLeader` and retries.
//!
//! Shutdown (SIGINT/SIGTERM): a leader first hands leadership to its most up-to-date voter
//! (so failover takes one round trip, not an election timeout), then the loop stops and the
//! transport closes its connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use protobuf::Message as _;
use raft::eraftpb::Message;
use sovra_scheduler::core::job::JobId;
use sovra_scheduler::core::placement::PolicyConfig;
use sovra_scheduler::core::state::{Command, RequestId, StateMachine};
use tokio::sync::{mpsc, oneshot};

use crate::replica::{Op, Replica, ReplicaConfig, Reply};
use crate::storage::redb_store::{RedbDb, RedbStore};
use crate::storage::{GroupId, LogStore};
use crate::tls::{self, Role};
use crate::transport::{Client, Inbound, Transport, TransportConfig};
use crate::wire::{ClientOp, ClientResult, JobAction, Request};

/// The Raft group this process hosts (one per process for now; the id is in every key and
/// message so a process can host one group per jurisdiction later).
pub const GROUP: GroupId = GroupId(1);

/// Exit code: bad arguments or configuration.
pub const EXIT_USAGE: i32 = 2;
/// Wire error code: the request was refused by the state machine or is invalid.
pub const ERROR_REJECTED: u16 = 100;
/// Wire error code: the request is invalid (bad job file, unknown operation).
pub const ERROR_INVALID: u16 = 101;
/// Error code: the caller's certificate does not allow this operation.
pub const ERROR_FORBIDDEN: u16 = 102;

/// What a caller may do, by the role its certificate proves. Replicas are trusted (they only
/// forward what they authorized themselves); an agent speaks for its own node only.
fn authorize(peer: &Role, op: &ClientOp) -> Result<(), String> {
    let own = match peer {
        Role::Node { .. } => return Ok(()),
        Role::Client { user } => {
            return match op {
                ClientOp::AgentSync { .. }
                | ClientOp::AgentProbe { .. }
                | ClientOp::AgentHealth { .. }
                | ClientOp::JobStarted { .. }
                | ClientOp::JobEnded { .. }
                | ClientOp::LogData { .. } => Err(format!(
                    "client {user} may not {}: only the node's agent may",
                    op.describe()
                )),
                _ => Ok(()),
            };
        }
        Role::Agent { node } => node,
    };
    match op {
        ClientOp::Leader => Ok(()),
        ClientOp::RegisterNode { node }
        | ClientOp::AgentRegister { node, .. }
        | ClientOp::AgentHealth { node, .. }
        | ClientOp::AgentProbe { node, .. }
        | ClientOp::AgentSync { node, .. }
        | ClientOp::JobStarted { node, .. }
        | ClientOp::JobEnded { node, .. }
        | ClientOp::LogData { node, .. }
            if node == own =>
        {
            Ok(())
        }
        other => Err(format!(
            "the agent of node {own} may not {}",
            other.describe()
        )),
    }
}

/// How a `sovrad run` is configured.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// This replica's id.
    pub id: u64,
    /// Where to listen (peers and clients).
    pub listen: SocketAddr,
    /// Data directory (the redb file lives here).
    pub data: PathBuf,
    /// Certificates directory (`ca.pem`, `node-<id>.pem`, `node-<id>.key`).
    pub certs: PathBuf,
    /// Cluster name (must match the CA).
    pub cluster: String,
    /// Raft tick.
    pub tick: Duration,
    /// Ticks before an election.
    pub election_ticks: usize,
    /// Heartbeat lease of agent-managed nodes.
    pub agent_lease_ms: u64,
    /// The inventory, needed only by a replica joining with an empty store.
    pub inventory: Option<PathBuf>,
}

/// The redb file in a data directory.
pub fn store_path(data: &Path) -> PathBuf {
    data.join("raft.redb")
}

/// Builds the initial state machine from an inventory file.
pub fn initial_state(inventory: &Path, assume_nodes_up: bool) -> anyhow::Result<StateMachine> {
    let text = std::fs::read_to_string(inventory)
        .with_context(|| format!("cannot read inventory {}", inventory.display()))?;
    let topology = sovra_fabric::inventory::load_inventory(&text)
        .map_err(|e| anyhow!("{}: {e}", inventory.display()))?;
    if assume_nodes_up {
        return Ok(StateMachine::with_all_nodes_up(
            topology,
            PolicyConfig::default(),
        ));
    }
    let scope = topology.jurisdictions().to_vec();
    StateMachine::new(topology, &scope, PolicyConfig::default()).map_err(|e| anyhow!("{e}"))
}

/// `sovrad init`: writes the founding configuration into an empty data directory.
pub fn init(data: &Path, peers: &BTreeMap<u64, String>, sm: &StateMachine) -> anyhow::Result<()> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let db = RedbDb::open(&store_path(data))?;
    let mut store = db.group(GROUP)?;
    if store.latest_snapshot().get_metadata().get_index() > 0
        || raft::Storage::last_index(&store).unwrap_or(0) > 0
    {
        bail!(
            "{} already holds a replica's state; refusing to overwrite it",
            data.display()
        );
    }
    Replica::bootstrap(&mut store, peers, sm)?;
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Converts a wire operation into a replica operation.
fn to_op(request: &crate::wire::Request) -> Result<Op, String> {
    let id = RequestId {
        client: request.id.client,
        seq: request.id.seq,
    };
    Ok(match &request.op {
        ClientOp::Submit {
            job_toml,
            wait_placed,
        } => Op::Submit {
            spec: sovra_scheduler::jobfile::parse_job(job_toml)?,
            request: id,
            wait_placed: *wait_placed,
        },
        ClientOp::Cancel { job } => Op::Command(Command::Cancel { job: JobId(*job) }),
        ClientOp::JobControl { job, action } => {
            let job = JobId(*job);
            Op::Command(match *action {
                JobAction::Hold => Command::Hold { job },
                JobAction::Release => Command::Release { job },
                JobAction::Requeue => Command::Requeue { job },
                JobAction::SetTimeLimit(time_limit_ms) => {
                    Command::SetTimeLimit { job, time_limit_ms }
                }
            })
        }
        ClientOp::Status { job } => Op::Status { job: JobId(*job) },
        ClientOp::Jobs => Op::Jobs,
        ClientOp::Drain { node } => Op::Command(Command::Drain { node: node.clone() }),
        ClientOp::Resume { node } => Op::Command(Command::Resume { node: node.clone() }),
        ClientOp::FailNode { node } => Op::Command(Command::FailNode { node: node.clone() }),
        ClientOp::RegisterNode { node } => {
            Op::Command(Command::RegisterNode { node: node.clone() })
        }
        ClientOp::AddNode { id, addr } => {
            addr.parse::<SocketAddr>()
                .map_err(|_| format!("invalid replica address {addr:?}"))?;
            Op::AddNode {
                id: *id,
                addr: addr.clone(),
            }
        }
        ClientOp::RemoveNode { id } => Op::RemoveNode { id: *id },
        ClientOp::Leader => Op::Leader,
        ClientOp::JobList { all } => Op::JobList { all: *all },
        ClientOp::JobInfo { job } => Op::JobInfo { job: JobId(*job) },
        ClientOp::NodeList => Op::NodeList,
        ClientOp::SiteRtts => Op::SiteRtts,
        ClientOp::AgentProbe { node, listen, rtts } => Op::AgentProbe {
            node: node.clone(),
            listen: listen.clone(),
            rtts: rtts.clone(),
        },
        ClientOp::Logs {
            job,
            rank,
            stderr,
            offset,
            max,
        } => Op::Logs {
            job: JobId(*job),
            rank: *rank,
            stderr: *stderr,
            offset: *offset,
            max: *max,
        },
        ClientOp::AgentHealth { node, problems } => Op::AgentHealth {
            node: node.clone(),
            problems: problems.clone(),
        },
        ClientOp::AgentRegister { node, gpus, nics } => Op::AgentRegister {
            nics: nics.clone(),
            node: node.clone(),
            gpus: gpus.clone(),
        },
        ClientOp::LogData {
            node,
            token,
            offset,
            data,
            eof,
            error,
        } => Op::LogData {
            node: node.clone(),
            token: *token,
            offset: *offset,
            data: data.clone(),
            eof: *eof,
            error: error.clone(),
        },
        ClientOp::AgentSync {
            node,
            known,
            wait_ms,
        } => Op::AgentSync {
            node: node.clone(),
            known: *known,
            wait_ms: *wait_ms,
        },
        ClientOp::JobStarted { node, job, attempt } => Op::JobStarted {
            node: node.clone(),
            job: JobId(*job),
            attempt: *attempt,
        },
        ClientOp::JobEnded {
            node,
            job,
            attempt,
            how,
        } => Op::JobEnded {
            node: node.clone(),
            job: JobId(*job),
            attempt: *attempt,
            how: *how,
        },
    })
}

fn to_result(reply: Reply) -> ClientResult {
    match reply {
        Reply::Submitted {
            job,
            placed,
            pending,
        } => ClientResult::Submitted {
            job: job.0,
            placed: placed.or(pending.map(|p| format!("pending ({p})"))),
        },
        Reply::Ok => ClientResult::Ok,
        Reply::Rejected(message) => ClientResult::Error {
            code: ERROR_REJECTED,
            message,
        },
        Reply::Job(text) => ClientResult::Job { text },
        Reply::Jobs(text) => ClientResult::Jobs { text },
        Reply::NotLeader { leader } => ClientResult::NotLeader { leader },
        Reply::Leader { id, addr } => ClientResult::Leader { id, addr },
        Reply::JobList(jobs) => ClientResult::JobList { jobs },
        Reply::NodeList(nodes) => ClientResult::NodeList { nodes },
        Reply::ProbePeers(peers) => ClientResult::ProbePeers { peers },
        Reply::SiteRtts(rtts) => ClientResult::SiteRtts { rtts },
        Reply::Assignments {
            version,
            in_service,
            jobs,
            log_requests,
        } => ClientResult::Assignments {
            version,
            in_service,
            jobs,
            log_requests,
        },
        Reply::LogChunk { offset, data, eof } => ClientResult::LogChunk { offset, data, eof },
    }
}

/// Forwards client requests that reached a follower to the leader, over a cached client
/// connection (replica certificates may act as clients), and relays the answer.
#[derive(Clone)]
struct Forwarder {
    identity: tls::Identity,
    ca: tls::ClusterCa,
    clients: Arc<Mutex<BTreeMap<SocketAddr, Arc<Client>>>>,
}

impl Forwarder {
    fn forward(&self, leader: SocketAddr, request: Request, tx: oneshot::Sender<ClientResult>) {
        let this = self.clone();
        tokio::spawn(async move {
            let cached = this
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&leader)
                .cloned();
            let client = match cached {
                Some(c) => c,
                None => match Client::connect(leader, &this.identity, &this.ca).await {
                    Ok(c) => {
                        let c = Arc::new(c);
                        this.clients
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(leader, c.clone());
                        c
                    }
                    Err(_) => {
                        // The client retries elsewhere.
                        let _ = tx.send(ClientResult::NotLeader { leader: None });
                        return;
                    }
                },
            };
            match client.call(&request).await {
                Ok(response) => {
                    let _ = tx.send(response.result);
                }
                Err(_) => {
                    this.clients
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&leader);
                    let _ = tx.send(ClientResult::NotLeader { leader: None });
                }
            }
        });
    }
}

/// A client request waiting for the replica's reply.
struct Pending {
    request: Request,
    tx: oneshot::Sender<ClientResult>,
    /// Whether it came from a client (and so may be forwarded once) or was itself forwarded.
    forwardable: bool,
}

/// The event loop's state.
struct Loop {
    replica: Replica<RedbStore>,
    transport: Transport,
    replies: BTreeMap<u64, Pending>,
    next_token: u64,
    forwarder: Forwarder,
}

impl Loop {
    fn handle(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Raft { from, group, bytes } => {
                if group != GROUP.0 {
                    return;
                }
                let Ok(msg) = Message::parse_from_bytes(&bytes) else {
                    return;
                };
                // The certificate proves the sender: a peer cannot speak for another.
                if msg.get_from() != from {
                    return;
                }
                self.replica.step(msg);
            }
            Inbound::Request {
                peer,
                request,
                reply,
            } => {
                if request.group != GROUP.0 {
                    let _ = reply.send(ClientResult::Error {
                        code: ERROR_INVALID,
                        message: format!("no raft group {} here", request.group),
                    });
                    return;
                }
                if let Err(message) = authorize(&peer, &request.op) {
                    let _ = reply.send(ClientResult::Error {
                        code: ERROR_FORBIDDEN,
                        message,
                    });
                    return;
                }
                match to_op(&request) {
                    Ok(op) => {
                        let token = self.next_token;
                        self.next_token += 1;
                        // Requests from other replicas were forwarded already: never again.
                        let forwardable = !matches!(peer, Role::Node { .. });
                        self.replies.insert(
                            token,
                            Pending {
                                request: request.clone(),
                                tx: reply,
                                forwardable,
                            },
                        );
                        self.replica.request(token, op, now_ms());
                    }
                    Err(message) => {
                        let _ = reply.send(ClientResult::Error {
                            code: ERROR_INVALID,
                            message,
                        });
                    }
                }
            }
        }
    }

    fn turn(&mut self) -> anyhow::Result<()> {
        let peers = self.replica.peers().clone();
        let transport = &self.transport;
        let mut send = |msg: Message| {
            let to = msg.get_to();
            let Some(addr) = peers.get(&to).and_then(|a| a.parse::<SocketAddr>().ok()) else {
                return;
            };
            if let Ok(bytes) = msg.write_to_bytes() {
                let _ = transport.send_raft(to, addr, GROUP.0, bytes);
            }
        };
        // A leader's appends leave while it fsyncs its own copy.
        let out = self.replica.ready_with(now_ms(), &mut send)?;
        for msg in out.messages {
            send(msg);
        }
        for (token, reply) in out.replies {
            let Some(pending) = self.replies.remove(&token) else {
                continue;
            };
            // Leader forwarding: a follower that knows the leader passes the request on.
            if let Reply::NotLeader {
                leader: Some((id, addr)),
            } = &reply
            {
                let leader = addr.parse::<SocketAddr>().ok();
                if let (true, true, Some(leader)) =
                    (pending.forwardable, *id != self.replica.id(), leader)
                {
                    self.forwarder.forward(leader, pending.request, pending.tx);
                    continue;
                }
            }
            let _ = pending.tx.send(to_result(reply));
        }
        // Clients that went away: drop their tokens.
        self.replies.retain(|_, p| !p.tx.is_closed());
        Ok(())
    }
}

/// `sovrad run`: serves until SIGINT or SIGTERM.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(opts))
}

async fn serve(opts: RunOptions) -> anyhow::Result<()> {
    let name = format!("node-{}", opts.id);
    let identity = tls::Identity::load(&opts.certs, &name)?;
    match identity.role()? {
        Role::Node { id } if id == opts.id => {}
        other => bail!(
            "{}/{name}.pem is a certificate for {other:?}, not replica {}",
            opts.certs.display(),
            opts.id
        ),
    }
    let ca = tls::load_ca(&opts.certs)?;
    let db = RedbDb::open(&store_path(&opts.data))?;
    let store = db.group(GROUP)?;
    // A replica with no snapshot yet (joining a cluster) starts from the inventory; the
    // leader's snapshot then replaces that state.
    let empty = if store.latest_snapshot().get_metadata().get_index() > 0 {
        None
    } else {
        let Some(path) = &opts.inventory else {
            bail!(
                "{} holds no state: run `sovrad init` first, or pass --inventory to join an \
                 existing cluster",
                opts.data.display()
            );
        };
        Some(initial_state(path, false)?)
    };
    let mut cfg = ReplicaConfig::new(opts.id, GROUP);
    cfg.election_tick = opts.election_ticks;
    cfg.agent_lease_ms = opts.agent_lease_ms;
    let replica = Replica::open(cfg, store, || {
        empty.expect("open asks for an empty state only when the store has no snapshot")
    })?;
    let (transport, mut inbound) = Transport::bind(
        opts.listen,
        &identity,
        &ca,
        opts.cluster.clone(),
        opts.id,
        TransportConfig::default(),
    )
    .await?;
    eprintln!(
        "sovrad {}: replica {} of cluster {:?} listening on {}",
        env!("CARGO_PKG_VERSION"),
        opts.id,
        opts.cluster,
        transport.local_addr()
    );
    let mut lp = Loop {
        replica,
        transport,
        replies: BTreeMap::new(),
        next_token: 1,
        forwarder: Forwarder {
            identity: identity.clone(),
            ca: ca.clone(),
            clients: Arc::new(Mutex::new(BTreeMap::new())),
        },
    };
    let mut interval = tokio::time::interval(opts.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut stopping: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = sigterm.recv(), if stopping.is_none() => stopping = Some(Instant::now()),
            _ = tokio::signal::ctrl_c(), if stopping.is_none() => stopping = Some(Instant::now()),
            msg = inbound.recv() => {
                let Some(msg) = msg else { break };
                lp.handle(msg);
                for _ in 0..4096 {
                    match inbound.try_recv() {
                        Ok(msg) => lp.handle(msg),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                    }
                }
            }
            _ = interval.tick() => lp.replica.tick(),
        }
        lp.turn()?;
        if let Some(since) = stopping {
            // Hand over leadership first (up to a second), then stop.
            if lp.replica.is_leader() && since.elapsed() < Duration::from_secs(1) {
                lp.replica.transfer_leadership();
                lp.turn()?;
                continue;
            }
            break;
        }
    }
    // Answer what is left: those clients retry elsewhere.
    for (_, p) in std::mem::take(&mut lp.replies) {
        let _ = p.tx.send(ClientResult::NotLeader { leader: None });
    }
    let Loop { transport, .. } = lp;
    transport.shutdown().await;
    eprintln!("sovrad: replica {} stopped", opts.id);
    Ok(())
}
