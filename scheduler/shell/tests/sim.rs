//! Deterministic fault simulation of sovrad replicas (house style: deterministic simulation
//! tests).
//!
//! N replicas of the real [`Replica`] (real raft-rs `RawNode`, real scheduler state machine)
//! run on one thread over a simulated network that drops, delays, duplicates and reorders
//! messages and partitions the group, and over [`SimStore`], whose crashes lose unsynced
//! writes (and, with a torn write, keep only part of the last batch). Clients submit jobs
//! with request ids and retry on timeouts and leader changes; agents start and finish placed
//! jobs. Every choice comes from one seed.
//!
//! Checkers:
//! - no GPU is double-allocated: every replica's ledger equals a recount of its jobs'
//!   allocations (`check_invariants`), checked as they apply;
//! - committed prefixes agree: every replica that applies the state machine's entry `i` has
//!   the same state hash after it, and committed raft logs agree where they overlap;
//! - exactly once: a request id always names the same job, and no request makes two jobs;
//! - after healing (all nodes up, no faults), every replica converges to the same state hash
//!   and every client request is answered.
//!
//! A failure prints `SOVRA_SEED=<n>`, which reproduces it:
//! `SOVRA_SEED=<n> cargo test -p sovrad --test sim -- --nocapture`.
//! `SOVRA_SIM_SEEDS=<count>` runs more seeds (a soak); CI runs 1,000.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::Message;
use sovra_fabric::Jurisdiction;
use sovra_scheduler::core::job::{GpuRequest, JobId, JobSpec, Workload};
use sovra_scheduler::core::placement::PolicyConfig;
use sovra_scheduler::core::state::{Command, ExitStatus, JobState, RequestId, StateMachine};
use sovrad::replica::{Op, Replica, ReplicaConfig, Reply};
use sovrad::storage::sim_store::SimStore;
use sovrad::storage::GroupId;

const INVENTORY: &str = include_str!("../../../examples/inventory/small.toml");
/// Virtual milliseconds per raft tick.
const TICK_MS: u64 = 10;
/// Steps (1 virtual ms each) with faults, then steps to heal.
const FAULT_STEPS: u64 = 3_000;
const HEAL_STEPS: u64 = 6_000;
/// A client gives up on a request after this long and retries elsewhere.
const CLIENT_TIMEOUT_MS: u64 = 400;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Fault rates for one run, drawn from the seed.
#[derive(Debug)]
struct Faults {
    drop: u64,
    duplicate: u64,
    max_delay_ms: u64,
    crash: u64,
    partition: u64,
    torn: bool,
}

struct InFlight {
    at: u64,
    seq: u64,
    msg: Message,
}

#[derive(Debug)]
struct ClientReq {
    id: RequestId,
    op: Op,
    target: u64,
    sent_ms: u64,
    token: u64,
}

struct Node {
    replica: Option<Replica<SimStore>>,
    /// The store of a crashed node, until it restarts.
    down: Option<SimStore>,
    cfg: ReplicaConfig,
}

struct Sim {
    /// A replica outside the group at the start, added by a client at `add_at`.
    spare: Option<u64>,
    add_at: u64,
    seed: u64,
    rng: Rng,
    now: u64,
    faults: Faults,
    nodes: Vec<Node>,
    net: Vec<InFlight>,
    seq: u64,
    /// Nodes cut off from the rest (one side of a partition).
    minority: BTreeSet<u64>,
    clients: Vec<Option<ClientReq>>,
    next_seq: Vec<u64>,
    next_token: u64,
    /// Token -> client index.
    tokens: BTreeMap<u64, usize>,
    /// Request -> job, from every Submitted reply seen.
    jobs_by_request: BTreeMap<RequestId, JobId>,
    /// Submissions in flight: request id -> whether answered.
    answered: BTreeMap<RequestId, bool>,
    /// Hash of the state after the state machine applied entry `i`.
    hashes: BTreeMap<u64, [u8; 32]>,
    /// Last state machine index checked per node.
    checked: Vec<u64>,
    placed: u64,
}

fn state_machine() -> StateMachine {
    let topology = sovra_fabric::inventory::load_inventory(INVENTORY).expect("inventory");
    StateMachine::with_all_nodes_up(topology, PolicyConfig::default())
}

fn job(rng: &mut Rng, k: u64) -> JobSpec {
    let gpus = match rng.below(4) {
        0 => GpuRequest::Whole(1 + rng.below(8) as u32),
        1 => GpuRequest::Milli(100 * (1 + rng.below(9) as u32)),
        2 => GpuRequest::Whole(8),
        _ => GpuRequest::Whole(2),
    };
    JobSpec {
        run: Default::default(),
        name: format!("j{k}"),
        tenant: "sim".into(),
        priority: rng.below(3) as u32,
        jurisdictions: vec![Jurisdiction::parse("AU").expect("AU")],
        gpu_models: Vec::new(),
        cpu_milli: 1000,
        memory_mib: 1024,
        time_limit_ms: None,
        workload: Workload::Batch { gpus },
        control: Default::default(),
    }
}

impl Sim {
    fn new(seed: u64, n: u64) -> Sim {
        let mut rng = Rng(seed);
        let faults = Faults {
            drop: rng.below(150),
            duplicate: rng.below(50),
            max_delay_ms: 1 + rng.below(40),
            crash: rng.below(3),
            partition: rng.below(3),
            torn: rng.chance(500),
        };
        let sm = state_machine();
        let voters: BTreeMap<u64, String> = (1..=n).map(|id| (id, format!("sim-{id}"))).collect();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut store = SimStore::new();
            Replica::bootstrap(&mut store, &voters, &sm).expect("bootstrap");
            let mut cfg = ReplicaConfig::new(id, GroupId(1));
            cfg.snapshot_every = 40 + rng.below(100);
            cfg.max_plans = 1 + rng.below(64) as usize;
            cfg.deterministic_seed = Some(rng.next());
            let replica = Replica::open(cfg.clone(), store, state_machine).expect("open");
            nodes.push(Node {
                replica: Some(replica),
                down: None,
                cfg,
            });
        }
        // Half the runs have a spare replica with an empty store; a client adds it to the group
        // during the faults (learner, catch-up by snapshot, promotion to voter).
        let spare = rng.chance(500).then_some(n + 1);
        let add_at = rng.below(FAULT_STEPS);
        if let Some(id) = spare {
            let mut cfg = ReplicaConfig::new(id, GroupId(1));
            cfg.snapshot_every = 40 + rng.below(100);
            cfg.deterministic_seed = Some(rng.next());
            let replica =
                Replica::open(cfg.clone(), SimStore::new(), state_machine).expect("open spare");
            nodes.push(Node {
                replica: Some(replica),
                down: None,
                cfg,
            });
        }
        Sim {
            spare,
            add_at,
            seed,
            rng,
            now: 0,
            faults,
            nodes,
            net: Vec::new(),
            seq: 0,
            minority: BTreeSet::new(),
            clients: (0..4).map(|_| None).collect(),
            next_seq: vec![1; 4],
            next_token: 1,
            tokens: BTreeMap::new(),
            jobs_by_request: BTreeMap::new(),
            answered: BTreeMap::new(),
            hashes: BTreeMap::new(),
            checked: vec![0; n as usize + 1],
            placed: 0,
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "simulation failed at {} ms: {what}\nfaults: {:?}\nreproduce: SOVRA_SEED={} cargo \
             test -p sovrad --test sim -- --nocapture",
            self.now, self.faults, self.seed
        );
    }

    fn cut(&self, a: u64, b: u64) -> bool {
        self.minority.contains(&a) != self.minority.contains(&b)
    }

    fn live(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].replica.is_some()
    }

    fn send(&mut self, msgs: Vec<Message>, faults: bool) {
        for msg in msgs {
            if faults && self.rng.chance(self.faults.drop) {
                continue;
            }
            let copies = if faults && self.rng.chance(self.faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = if faults {
                    1 + self.rng.below(self.faults.max_delay_ms)
                } else {
                    1
                };
                self.seq += 1;
                self.net.push(InFlight {
                    at: self.now + delay,
                    seq: self.seq,
                    msg: msg.clone(),
                });
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| (m.at, m.seq));
        for m in due {
            let (from, to) = (m.msg.get_from(), m.msg.get_to());
            if self.cut(from, to) {
                continue;
            }
            if let Some(r) = self.nodes[(to - 1) as usize].replica.as_mut() {
                r.step(m.msg);
            }
        }
    }

    fn run_ready(&mut self, faults: bool) {
        for i in 0..self.nodes.len() {
            let Some(replica) = self.nodes[i].replica.as_mut() else {
                continue;
            };
            let out = match replica.ready(self.now) {
                Ok(out) => out,
                Err(e) => self.fail(format!("node {} stopped: {e}", i + 1)),
            };
            self.placed += out.placed.len() as u64;
            self.check_applied(i);
            self.send(out.messages, faults);
            for (token, reply) in out.replies {
                self.on_reply(token, reply);
            }
        }
    }

    /// Committed prefixes agree: the state after state-machine entry `i` is the same on
    /// every replica; and the ledger is a recount of the allocations (no double booking).
    fn check_applied(&mut self, i: usize) {
        let Some(replica) = self.nodes[i].replica.as_ref() else {
            return;
        };
        let sm = replica.state_machine();
        let index = sm.applied_index();
        if index == self.checked[i] {
            return;
        }
        self.checked[i] = index;
        let hash = sm.state_hash();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sm.check_invariants())).is_err()
        {
            self.fail(format!(
                "node {} broke the ledger invariants at {index}",
                i + 1
            ));
        }
        match self.hashes.get(&index) {
            Some(h) if *h != hash => self.fail(format!(
                "node {} has a different state after entry {index}",
                i + 1
            )),
            Some(_) => {}
            None => {
                self.hashes.insert(index, hash);
            }
        }
    }

    fn on_reply(&mut self, token: u64, reply: Reply) {
        let Some(c) = self.tokens.remove(&token) else {
            return; // An answer to a request the client already gave up on.
        };
        let Some(req) = self.clients[c].take() else {
            return;
        };
        match reply {
            Reply::NotLeader { leader } => {
                // Retry at once at the hinted leader, or later elsewhere.
                let n = self.nodes.len() as u64;
                let target = leader.map(|(id, _)| id).unwrap_or(req.target % n + 1);
                self.clients[c] = Some(ClientReq {
                    target,
                    sent_ms: 0,
                    ..req
                });
            }
            Reply::Submitted { job, .. } => {
                if let Some(prev) = self.jobs_by_request.insert(req.id, job) {
                    if prev != job {
                        self.fail(format!(
                            "request {:?} got job {prev} and later job {job}",
                            req.id
                        ));
                    }
                }
                self.answered.insert(req.id, true);
            }
            _ => {
                self.answered.insert(req.id, true);
            }
        }
    }

    fn clients_step(&mut self, new_requests: bool) {
        for c in 0..self.clients.len() {
            if self.clients[c].is_none() {
                if !new_requests || !self.rng.chance(20) {
                    continue;
                }
                let seq = self.next_seq[c];
                self.next_seq[c] += 1;
                let id = RequestId {
                    client: c as u64 + 1,
                    seq,
                };
                let op = match self.spare {
                    Some(spare) if c == 0 && self.now >= self.add_at && !self.added() => {
                        Op::AddNode {
                            id: spare,
                            addr: format!("sim-{spare}"),
                        }
                    }
                    _ => self.agent_or_submit(id),
                };
                if let Op::Submit { .. } = op {
                    self.answered.insert(id, false);
                }
                let target = 1 + self.rng.below(self.nodes.len() as u64);
                self.clients[c] = Some(ClientReq {
                    id,
                    op,
                    target,
                    sent_ms: 0,
                    token: 0,
                });
            }
            let now = self.now;
            let n = self.nodes.len() as u64;
            let Some(req) = self.clients[c].as_mut() else {
                continue;
            };
            if req.sent_ms != 0 && now < req.sent_ms + CLIENT_TIMEOUT_MS {
                continue;
            }
            if req.sent_ms != 0 {
                // Timed out: forget the old token, try another node.
                self.tokens.remove(&req.token);
                req.target = req.target % n + 1;
            }
            let token = self.next_token;
            self.next_token += 1;
            req.token = token;
            req.sent_ms = now.max(1);
            let (target, op) = (req.target, req.op.clone());
            self.tokens.insert(token, c);
            if let Some(r) = self.nodes[(target - 1) as usize].replica.as_mut() {
                r.request(token, op, now);
            }
        }
    }

    /// Mostly submissions; sometimes an agent starting or finishing a placed job, or a
    /// cancel (from any live replica's view, as a real agent would see its own node).
    fn agent_or_submit(&mut self, id: RequestId) -> Op {
        let roll = self.rng.below(10);
        if roll < 4 {
            let view = self.nodes.iter().find_map(|n| n.replica.as_ref());
            if let Some(sm) = view.map(|r| r.state_machine()) {
                let live: Vec<(JobId, JobState)> = sm
                    .jobs()
                    .filter(|r| !r.state.is_terminal())
                    .map(|r| (r.id, r.state))
                    .collect();
                if !live.is_empty() {
                    let (job, state) = live[self.rng.below(live.len() as u64) as usize];
                    let command = match (state, roll) {
                        (_, 0) => Command::Cancel { job },
                        (JobState::Placed, _) => Command::Start { job },
                        _ => Command::Finish {
                            job,
                            status: ExitStatus::Completed,
                        },
                    };
                    return Op::Command(command);
                }
            }
        }
        Op::Submit {
            spec: job(&mut self.rng, id.seq),
            request: id,
            wait_placed: self.rng.chance(300),
        }
    }

    fn faults_step(&mut self) {
        let n = self.nodes.len() as u64;
        if self.rng.chance(self.faults.crash) {
            let id = 1 + self.rng.below(n);
            let node = &mut self.nodes[(id - 1) as usize];
            if let Some(replica) = node.replica.take() {
                let torn = self.faults.torn.then(|| self.rng.next());
                let mut store = replica.into_store();
                match store.crash(torn) {
                    Ok(s) => node.down = Some(s),
                    Err(e) => self.fail(format!("node {id} store failed at crash: {e}")),
                }
                self.net.retain(|m| m.msg.get_to() != id);
            }
        }
        if self.rng.chance(20) {
            let down: Vec<u64> = (1..=n).filter(|&id| !self.live(id)).collect();
            if let Some(&id) = down.get(self.rng.below(down.len() as u64 + 1) as usize) {
                self.restart(id);
            }
        }
        if self.rng.chance(self.faults.partition) {
            self.minority.clear();
            let k = 1 + self.rng.below(n / 2);
            while (self.minority.len() as u64) < k {
                self.minority.insert(1 + self.rng.below(n));
            }
        }
        if !self.minority.is_empty() && self.rng.chance(5) {
            self.minority.clear();
        }
    }

    fn restart(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        let Some(store) = node.down.take() else {
            return;
        };
        match Replica::open(node.cfg.clone(), store, state_machine) {
            Ok(r) => {
                node.replica = Some(r);
                self.checked[(id - 1) as usize] = 0;
            }
            Err(e) => self.fail(format!("node {id} failed to restart: {e}")),
        }
    }

    fn step(&mut self, faults: bool) {
        self.now += 1;
        if faults {
            self.faults_step();
        }
        if self.now % TICK_MS == 0 {
            for node in self.nodes.iter_mut() {
                if let Some(r) = node.replica.as_mut() {
                    r.tick();
                }
            }
        }
        self.deliver();
        self.clients_step(faults);
        self.run_ready(faults);
    }

    fn run(&mut self) {
        for _ in 0..FAULT_STEPS {
            self.step(true);
        }
        // Heal: everything up, no partition, no faults; finish outstanding requests.
        self.minority.clear();
        for id in 1..=self.nodes.len() as u64 {
            self.restart(id);
        }
        for _ in 0..HEAL_STEPS {
            self.step(false);
            if self.converged() {
                break;
            }
        }
        if !self.converged() {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|n| {
                    let r = n.replica.as_ref().expect("all up");
                    format!(
                        "node {} term {} leader {} commit {} sm index {}",
                        r.id(),
                        r.term(),
                        r.leader_id(),
                        r.commit_index(),
                        r.state_machine().applied_index()
                    )
                })
                .collect();
            let open = self.clients.iter().flatten().count();
            self.fail(format!(
                "no convergence after healing ({open} requests open): {states:?}"
            ));
        }
        if let Some((id, _)) = self.answered.iter().find(|(_, done)| !**done) {
            self.fail(format!("submission {id:?} never answered"));
        }
        self.check_jobs_unique();
    }

    fn converged(&self) -> bool {
        if self.clients.iter().any(|c| c.is_some()) {
            return false;
        }
        let spare_in = self.added();
        let members = self
            .nodes
            .iter()
            .filter(|n| spare_in || Some(n.cfg.id) != self.spare);
        let mut hashes = members.map(|n| {
            n.replica
                .as_ref()
                .map(|r| (r.commit_index(), r.state_machine().state_hash()))
        });
        let Some(Some(first)) = hashes.next() else {
            return false;
        };
        hashes.all(|h| h == Some(first))
            && self
                .nodes
                .iter()
                .any(|n| n.replica.as_ref().is_some_and(|r| r.is_leader()))
    }

    /// Whether the spare is a member (voter or learner) in some up replica's view.
    fn added(&self) -> bool {
        let Some(spare) = self.spare else {
            return false;
        };
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .any(|r| {
                let cs = r.conf_state();
                cs.voters.contains(&spare) || cs.learners.contains(&spare)
            })
    }

    /// Exactly once, from the state: every request id names one job, and each job seen by a
    /// client is the one the state holds for its request.
    fn check_jobs_unique(&self) {
        let sm = self.nodes[0].replica.as_ref().expect("up").state_machine();
        let mut seen: BTreeMap<RequestId, JobId> = BTreeMap::new();
        for r in sm.jobs() {
            if let Some(req) = r.request {
                if let Some(other) = seen.insert(req, r.id) {
                    self.fail(format!("request {req:?} created jobs {other} and {}", r.id));
                }
            }
        }
        for (req, job) in &self.jobs_by_request {
            if seen.get(req) != Some(job) {
                self.fail(format!(
                    "client saw job {job} for {req:?}, state has {:?}",
                    seen.get(req)
                ));
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SOVRA_SEED") {
        let seed = s.trim().parse().expect("SOVRA_SEED must be a u64");
        return vec![seed];
    }
    let count: u64 = std::env::var("SOVRA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    (0..count).map(|i| 0x51A_0000 + i).collect()
}

#[test]
fn replicas_survive_faults_and_converge() {
    let mut placed = 0;
    for seed in seeds() {
        let n = if seed % 4 == 3 { 5 } else { 3 };
        let mut sim = Sim::new(seed, n);
        sim.run();
        if std::env::var_os("SOVRA_SIM_VERBOSE").is_some() {
            let r = sim.nodes[0].replica.as_ref().expect("up");
            eprintln!(
                "seed {seed}: {n} replicas, {} ms, term {}, commit {}, {} jobs, {} placements, \
                 {} requests answered, spare {:?} added {}, faults {:?}",
                sim.now,
                r.term(),
                r.commit_index(),
                r.state_machine().jobs().count(),
                sim.placed,
                sim.answered.len(),
                sim.spare,
                sim.added(),
                sim.faults
            );
        }
        placed += sim.placed;
    }
    assert!(
        placed > 0,
        "the simulation placed nothing: it tests nothing"
    );
}

#[test]
fn same_seed_same_history() {
    let run = |seed| {
        let mut sim = Sim::new(seed, 3);
        sim.run();
        let r = sim.nodes[0].replica.as_ref().expect("up");
        (
            sim.now,
            r.commit_index(),
            r.state_machine().state_hash(),
            sim.placed,
        )
    };
    for seed in [1, 2, 3] {
        assert_eq!(run(seed), run(seed), "SOVRA_SEED={seed}");
    }
}
