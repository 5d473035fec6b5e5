//! The deterministic discrete-event core, and the cluster simulation it drives.
//!
//! [`EventQueue`] is a binary heap of events keyed by `(time, seq)`: `seq` is the order the
//! events were scheduled in, so events at the same millisecond run first-scheduled first and
//! a run never depends on heap internals. [`ClusterSim`] drives sovra's replicated state
//! machine ([`StateMachine`], the code `sovrad` applies its log with) on one thread: job
//! arrivals become `Submit` entries, completions `Finish`, nodes going down (failures, site
//! outages, GPUs removed) `FailNode` and coming back (repairs, GPUs added) `RegisterNode`,
//! drains `Drain` and `Resume`; after the events of each millisecond the leader's scheduling
//! pass (`plan_pass`, which calls `placement::place`) runs and its plans are applied and
//! started. An [`Observer`] sees every placement decision and the run's progress.
//! There is no clock, no IO and no randomness but the seeds in the input, so the same input
//! gives the same [`Report`], bit for bit.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use sovra_fabric::{GpuTake, NodeId, Topology};
use sovra_scheduler::core::job::{GpuRequest, JobId, JobSpec, Workload};
use sovra_scheduler::core::placement::{Explanation, Outcome, PendingReason, PolicyConfig};
use sovra_scheduler::core::rng::{mix, placement_seed};
use sovra_scheduler::core::state::{
    Applied, Command, Entry, ExitStatus, StateMachine, PASS_PLANS_MAX,
};

/// Most events pending at once.
pub const EVENTS_MAX: usize = 1 << 24;

/// An event and when it happens.
struct Scheduled<E> {
    time_ms: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time_ms, self.seq) == (other.time_ms, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    /// Reversed: the heap's maximum is the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_ms, other.seq).cmp(&(self.time_ms, self.seq))
    }
}

/// Pending events, earliest first; ties in scheduling order.
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `time_ms`.
    pub fn push(&mut self, time_ms: u64, event: E) {
        assert!(self.heap.len() < EVENTS_MAX, "event queue full");
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Scheduled {
            time_ms,
            seq,
            event,
        });
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|s| (s.time_ms, s.event))
    }

    /// When the earliest event happens.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|s| s.time_ms)
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A job of the input: what it asks for, when it arrives, how long it runs once started.
#[derive(Clone, Debug, PartialEq)]
pub struct JobArrival {
    /// The job.
    pub spec: JobSpec,
    /// Arrival time.
    pub at_ms: u64,
    /// Run time once started.
    pub duration_ms: u64,
}

/// A node failure of the input, and its repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The node.
    pub node: NodeId,
    /// When it fails.
    pub at_ms: u64,
    /// How long until it is back (`None`: never).
    pub repair_after_ms: Option<u64>,
}

impl Fault {
    /// The failure and its repair as node events.
    pub fn events(&self) -> impl Iterator<Item = NodeEvent> {
        let down = NodeEvent {
            at_ms: self.at_ms,
            node: self.node,
            change: NodeChange::Down,
        };
        let up = self.repair_after_ms.map(|after| NodeEvent {
            at_ms: self.at_ms.saturating_add(after),
            node: self.node,
            change: NodeChange::Up,
        });
        std::iter::once(down).chain(up)
    }
}

/// What happens to a node.
///
/// Downs and drains nest: a node is down while more `Down`s than `Up`s have happened to it
/// (a site outage over a node that has also failed brings it back only when both are over),
/// and drained while more `Drain`s than `Resume`s have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeChange {
    /// The node is lost (a failure, a site outage, a removal): its jobs are requeued.
    Down,
    /// The node is back (a repair, the end of an outage, a node added).
    Up,
    /// Nothing new is placed on the node; its jobs run on.
    Drain,
    /// The drain is over.
    Resume,
}

impl NodeChange {
    /// Every change.
    pub const ALL: [NodeChange; 4] = [
        NodeChange::Down,
        NodeChange::Up,
        NodeChange::Drain,
        NodeChange::Resume,
    ];

    /// The change's name in decision logs.
    pub fn name(self) -> &'static str {
        match self {
            NodeChange::Down => "down",
            NodeChange::Up => "up",
            NodeChange::Drain => "drain",
            NodeChange::Resume => "resume",
        }
    }

    /// Parses a [`NodeChange::name`].
    pub fn parse(name: &str) -> Option<NodeChange> {
        NodeChange::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A change to a node at a time: how failures, repairs, site outages, drains and GPUs added
/// or removed reach the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    /// When.
    pub at_ms: u64,
    /// The node.
    pub node: NodeId,
    /// What happens.
    pub change: NodeChange,
}

/// How a run is set up, apart from its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The log index before the run's first entry. Every placement seed derives from (job id,
    /// log index), so this is the run's seed: another value breaks ties another way.
    pub first_index: u64,
    /// Width of the utilisation series' buckets at the start; they double (merging pairs)
    /// whenever the run outgrows [`SERIES_BUCKETS_MAX`] buckets.
    pub bucket_ms: u64,
    /// Nodes down from the start (GPUs not installed yet: an `Up` event adds them).
    pub initially_down: Vec<NodeId>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            first_index: 0,
            bucket_ms: 3_600_000,
            initially_down: Vec::new(),
        }
    }
}

/// Most buckets in a utilisation series.
pub const SERIES_BUCKETS_MAX: usize = 1_024;
/// Most scheduling passes at one instant (a pass places at most [`PASS_PLANS_MAX`] jobs).
const PASSES_PER_INSTANT_MAX: usize = 1_024;

/// What happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Input job `i` arrives.
    Arrive(usize),
    /// A job's run ends; `run` tells a requeued job's runs apart.
    Complete {
        /// The job.
        job: JobId,
        /// Which start this completion belongs to.
        run: u32,
    },
    /// A node goes down.
    NodeFail(NodeId),
    /// A node comes back.
    NodeRepair(NodeId),
    /// A node is drained.
    NodeDrain(NodeId),
    /// A node's drain ends.
    NodeResume(NodeId),
}

impl From<NodeEvent> for Event {
    fn from(e: NodeEvent) -> Event {
        match e.change {
            NodeChange::Down => Event::NodeFail(e.node),
            NodeChange::Up => Event::NodeRepair(e.node),
            NodeChange::Drain => Event::NodeDrain(e.node),
            NodeChange::Resume => Event::NodeResume(e.node),
        }
    }
}

/// How an input job ended up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fate {
    /// Still waiting when the run ended (never placed, or requeued and not placed again).
    #[default]
    Pending,
    /// Ran to completion.
    Completed,
    /// The state machine refused it at submit (e.g. no allowed jurisdiction in the cluster).
    Rejected,
    /// Lost to node failures more often than the state machine requeues a job.
    Failed,
}

/// What happened to one input job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOutcome {
    /// The id the state machine gave it (`None`: rejected).
    pub job: Option<JobId>,
    /// How it ended up.
    pub fate: Fate,
    /// First start.
    pub start_ms: Option<u64>,
    /// End (completion or failure).
    pub end_ms: Option<u64>,
    /// Times node failures put it back in the queue.
    pub requeues: u32,
    /// Why it was still waiting when the run ended (pending jobs only).
    pub pending_reason: Option<PendingReason>,
}

/// One bucket of a utilisation series: GPU milli integrated over the bucket's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Allocated GPU (milli · ms).
    pub used_milli_ms: u128,
    /// GPU on nodes that are not down (milli · ms).
    pub online_milli_ms: u128,
    /// Allocated GPU while some job waited for capacity (milli · ms).
    pub waiting_used_milli_ms: u128,
    /// Online GPU while some job waited for capacity (milli · ms).
    pub waiting_online_milli_ms: u128,
}

impl Bucket {
    fn add(&mut self, other: &Bucket) {
        self.used_milli_ms += other.used_milli_ms;
        self.online_milli_ms += other.online_milli_ms;
        self.waiting_used_milli_ms += other.waiting_used_milli_ms;
        self.waiting_online_milli_ms += other.waiting_online_milli_ms;
    }

    /// Allocated share of the online GPUs, in percent (`None`: no GPU was online).
    pub fn utilisation_pct(&self) -> Option<f64> {
        (self.online_milli_ms > 0)
            .then(|| 100.0 * self.used_milli_ms as f64 / self.online_milli_ms as f64)
    }

    /// Unallocated share of the online GPUs while jobs waited for capacity, in percent
    /// (`None`: no job waited).
    pub fn unallocated_waiting_pct(&self) -> Option<f64> {
        let idle = self.waiting_online_milli_ms - self.waiting_used_milli_ms;
        (self.waiting_online_milli_ms > 0)
            .then(|| 100.0 * idle as f64 / self.waiting_online_milli_ms as f64)
    }
}

/// GPU utilisation over time: bucket `i` covers `[start + i·width, start + (i+1)·width)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series {
    /// Start of the first bucket: the first arrival.
    pub start_ms: u64,
    /// Bucket width.
    pub bucket_ms: u64,
    /// The buckets, up to the end of the run.
    pub buckets: Vec<Bucket>,
}

impl Series {
    /// Every bucket together.
    pub fn total(&self) -> Bucket {
        let mut total = Bucket::default();
        for b in &self.buckets {
            total.add(b);
        }
        total
    }

    /// Adds `[from, to)` at the given levels.
    fn add(&mut self, from: u64, to: u64, used_milli: u64, online_milli: u64, waiting: bool) {
        let from = from.max(self.start_ms);
        if to <= from {
            return;
        }
        let span = (to - self.start_ms) as u128;
        while span > self.bucket_ms as u128 * SERIES_BUCKETS_MAX as u128 {
            self.coarsen();
        }
        let width = self.bucket_ms;
        let mut a = from;
        while a < to {
            let idx = ((a - self.start_ms) / width) as usize;
            let bucket_end = self
                .start_ms
                .saturating_add((idx as u64 + 1).saturating_mul(width));
            let b = bucket_end.min(to);
            let dt = (b - a) as u128;
            if self.buckets.len() <= idx {
                self.buckets.resize(idx + 1, Bucket::default());
            }
            let bucket = &mut self.buckets[idx];
            bucket.used_milli_ms += used_milli as u128 * dt;
            bucket.online_milli_ms += online_milli as u128 * dt;
            if waiting {
                bucket.waiting_used_milli_ms += used_milli as u128 * dt;
                bucket.waiting_online_milli_ms += online_milli as u128 * dt;
            }
            a = b;
        }
    }

    /// Doubles the bucket width, merging pairs.
    fn coarsen(&mut self) {
        let merged = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut b = pair[0];
                if let Some(second) = pair.get(1) {
                    b.add(second);
                }
                b
            })
            .collect();
        self.buckets = merged;
        self.bucket_ms = self.bucket_ms.saturating_mul(2);
    }
}

/// What a simulation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Events processed.
    pub events: u64,
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs the state machine refused.
    pub rejected: u64,
    /// Starts (a requeued job starts again).
    pub starts: u64,
    /// Jobs that ran to completion.
    pub completed: u64,
    /// Jobs put back in the queue by node failures.
    pub requeued: u64,
    /// Jobs still pending or running at the end.
    pub unfinished: u64,
    /// Wait from arrival to first start, per started job, ascending.
    pub wait_ms: Vec<u64>,
    /// Allocated GPU milli integrated over time (milli · ms).
    pub gpu_milli_ms: u128,
    /// When the last event happened.
    pub end_ms: u64,
    /// The state machine's state hash at the end.
    pub state_hash: [u8; 32],
    /// Hash of every event and decision, in order.
    pub trace_hash: u64,
    /// What happened to each input job, by input index.
    pub outcomes: Vec<JobOutcome>,
    /// GPU utilisation over time.
    pub series: Series,
}

impl Report {
    /// Mean allocated share of the cluster's GPUs over `[0, end]`, in percent.
    pub fn utilisation_pct(&self, capacity_milli: u64) -> f64 {
        if self.end_ms == 0 || capacity_milli == 0 {
            return 0.0;
        }
        100.0 * self.gpu_milli_ms as f64 / (capacity_milli as f64 * self.end_ms as f64)
    }

    /// The `q`-quantile (0..=1) of the waits, nearest rank.
    pub fn wait_quantile_ms(&self, q: f64) -> Option<u64> {
        if self.wait_ms.is_empty() {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.wait_ms.len() - 1) as f64).round() as usize;
        Some(self.wait_ms[rank])
    }
}

/// A placement decision of the leader's pass: a plan, or why the job waits.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// When.
    pub time_ms: u64,
    /// The job's input index.
    pub input: usize,
    /// The job's id.
    pub job: JobId,
    /// The placement seed (from the job id and the log index).
    pub seed: u64,
    /// The plan, or why not.
    pub outcome: Outcome,
    /// How placement got there.
    pub explanation: Explanation,
}

/// Watches a run: the decisions it makes and how far it has got.
///
/// A job that waits is reported when it is first deferred and again only when the reason
/// changes (a pending job is retried after every change of capacity; logging every retry
/// would make logs grow with pending jobs × events). Every placement is reported.
pub trait Observer {
    /// Whether [`Observer::on_decision`] wants the decisions (they cost a clone of the pass).
    fn wants_decisions(&self) -> bool {
        false
    }

    /// A decision, in the order the pass made them.
    fn on_decision(&mut self, _decision: Decision) {}

    /// After each instant: jobs arrived so far, of `jobs`.
    fn on_progress(&mut self, _arrived: usize, _jobs: usize) {}
}

/// Watches nothing.
impl Observer for () {}

/// A job the simulation has submitted.
struct Live {
    input: usize,
    run: u32,
    started: bool,
    milli: u64,
    /// Deferred for want of capacity in the last pass that tried it.
    blocked: bool,
    /// The reason last reported, while it waits.
    last_reason: Option<PendingReason>,
}

/// A cluster simulation over sovra's state machine. See the module docs.
pub struct ClusterSim {
    sm: StateMachine,
    queue: EventQueue<Event>,
    jobs: Vec<JobArrival>,
    live: BTreeMap<JobId, Live>,
    index: u64,
    now_ms: u64,
    used_milli: u64,
    /// Per node: GPU milli; downs and drains in force.
    node_milli: Vec<u64>,
    down: Vec<u32>,
    drained: Vec<u32>,
    online_milli: u64,
    /// Live jobs with `blocked` set.
    waiting: usize,
    arrived: usize,
    report: Report,
}

impl ClusterSim {
    /// A simulation of `jobs` and `faults` on `topology`, every node up at time 0.
    pub fn new(
        topology: Topology,
        policy: PolicyConfig,
        jobs: Vec<JobArrival>,
        faults: &[Fault],
    ) -> ClusterSim {
        let events: Vec<NodeEvent> = faults.iter().flat_map(Fault::events).collect();
        ClusterSim::with_events(topology, policy, jobs, &events, SimConfig::default())
    }

    /// A simulation of `jobs` and node `events` on `topology`. Every node is up at time 0
    /// but those `config` says are not installed yet. Same-time events happen arrivals
    /// first, then node events, each in input order.
    pub fn with_events(
        topology: Topology,
        policy: PolicyConfig,
        jobs: Vec<JobArrival>,
        events: &[NodeEvent],
        config: SimConfig,
    ) -> ClusterSim {
        assert!(config.bucket_ms > 0, "a series needs a bucket width");
        let mut queue = EventQueue::default();
        for (i, j) in jobs.iter().enumerate() {
            queue.push(j.at_ms, Event::Arrive(i));
        }
        for e in events {
            assert!(
                e.node.idx() < topology.nodes().len(),
                "event on unknown node"
            );
            queue.push(e.at_ms, Event::from(*e));
        }
        let node_milli: Vec<u64> = topology
            .nodes()
            .iter()
            .map(|n| 1_000 * n.gpu_count() as u64)
            .collect();
        let nodes = node_milli.len();
        let online_milli = node_milli.iter().sum();
        let start_ms = jobs.iter().map(|j| j.at_ms).min().unwrap_or(0);
        let outcomes = vec![JobOutcome::default(); jobs.len()];
        let mut sim = ClusterSim {
            sm: StateMachine::with_all_nodes_up(topology, policy),
            queue,
            jobs,
            live: BTreeMap::new(),
            index: config.first_index,
            now_ms: 0,
            used_milli: 0,
            node_milli,
            down: vec![0; nodes],
            drained: vec![0; nodes],
            online_milli,
            waiting: 0,
            arrived: 0,
            report: Report {
                trace_hash: mix(0x51A),
                outcomes,
                series: Series {
                    start_ms,
                    bucket_ms: config.bucket_ms,
                    buckets: Vec::new(),
                },
                ..Report::default()
            },
        };
        for &node in &config.initially_down {
            assert!(node.idx() < nodes, "unknown node down at the start");
            if sim.down[node.idx()] == 0 {
                sim.down[node.idx()] = 1;
                sim.online_milli -= sim.node_milli[node.idx()];
                let name = sim.sm.topology().node(node).name.clone();
                let applied = sim.apply(Command::FailNode { node: name });
                assert_eq!(applied, Applied::Ended(Vec::new()), "no job runs yet");
            }
        }
        sim
    }

    /// The state machine (for checks).
    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    /// Runs until no event is left.
    pub fn run(self) -> Report {
        self.run_observed(&mut ())
    }

    /// Runs until no event is left, telling `observer` what happens.
    pub fn run_observed(mut self, observer: &mut dyn Observer) -> Report {
        let total = self.jobs.len();
        while let Some(t) = self.queue.peek_time() {
            self.advance(t);
            while self.queue.peek_time() == Some(t) {
                let (_, event) = self.queue.pop().expect("peeked");
                self.handle(event);
            }
            for _ in 0..PASSES_PER_INSTANT_MAX {
                if self.schedule(observer) < PASS_PLANS_MAX {
                    break;
                }
            }
            observer.on_progress(self.arrived, total);
        }
        self.report.unfinished = self.live.len() as u64;
        for l in self.live.values() {
            self.report.outcomes[l.input].pending_reason = l.last_reason;
        }
        self.report.end_ms = self.now_ms;
        self.report.wait_ms.sort_unstable();
        self.report.state_hash = self.sm.state_hash();
        self.sm.check_invariants();
        assert_eq!(
            self.used_milli,
            self.live.values().map(|l| l.milli).sum::<u64>(),
            "gpu accounting"
        );
        self.report
    }

    fn advance(&mut self, t: u64) {
        assert!(
            t >= self.now_ms,
            "time went back from {} to {t}",
            self.now_ms
        );
        self.report.gpu_milli_ms += self.used_milli as u128 * (t - self.now_ms) as u128;
        self.report.series.add(
            self.now_ms,
            t,
            self.used_milli,
            self.online_milli,
            self.waiting > 0,
        );
        self.now_ms = t;
    }

    fn note(&mut self, kind: u64, what: u64) {
        let h = self.report.trace_hash ^ mix(self.now_ms) ^ mix(kind << 56 | what);
        self.report.trace_hash = mix(h);
    }

    fn apply(&mut self, command: Command) -> Applied {
        self.index += 1;
        self.sm.apply(&Entry {
            index: self.index,
            time_ms: self.now_ms,
            command,
        })
    }

    fn set_blocked(&mut self, job: JobId, blocked: bool) {
        let l = self.live.get_mut(&job).expect("live");
        if l.blocked != blocked {
            l.blocked = blocked;
            if blocked {
                self.waiting += 1;
            } else {
                self.waiting -= 1;
            }
        }
    }

    fn node_name(&self, node: NodeId) -> String {
        self.sm.topology().node(node).name.clone()
    }

    fn handle(&mut self, event: Event) {
        self.report.events += 1;
        match event {
            Event::Arrive(i) => {
                self.arrived += 1;
                let spec = self.jobs[i].spec.clone();
                match self.apply(Command::Submit {
                    spec,
                    request: None,
                }) {
                    Applied::Submitted(job) => {
                        self.report.submitted += 1;
                        self.note(1, job.0);
                        let live = Live {
                            input: i,
                            run: 0,
                            started: false,
                            milli: 0,
                            blocked: false,
                            last_reason: None,
                        };
                        self.live.insert(job, live);
                        self.report.outcomes[i].job = Some(job);
                    }
                    _ => {
                        self.report.rejected += 1;
                        self.report.outcomes[i].fate = Fate::Rejected;
                        self.note(2, i as u64);
                    }
                }
            }
            Event::Complete { job, run } => {
                let current = self
                    .live
                    .get(&job)
                    .is_some_and(|l| l.started && l.run == run);
                if !current {
                    return; // the run it belonged to was cut short by a node failure
                }
                let applied = self.apply(Command::Finish {
                    job,
                    status: ExitStatus::Completed,
                });
                assert_eq!(applied, Applied::Ok, "finish of running job {job}");
                let l = self.live.remove(&job).expect("live");
                assert!(!l.blocked, "a running job waits for nothing");
                self.used_milli -= l.milli;
                self.report.completed += 1;
                let outcome = &mut self.report.outcomes[l.input];
                outcome.fate = Fate::Completed;
                outcome.end_ms = Some(self.now_ms);
                self.note(3, job.0);
            }
            Event::NodeFail(node) => {
                self.down[node.idx()] += 1;
                if self.down[node.idx()] == 1 {
                    self.online_milli -= self.node_milli[node.idx()];
                    let name = self.node_name(node);
                    if let Applied::Ended(jobs) = self.apply(Command::FailNode { node: name }) {
                        for job in jobs {
                            self.requeue_or_fail(job);
                        }
                    }
                }
                self.note(5, node.0 as u64);
            }
            Event::NodeRepair(node) => {
                if self.down[node.idx()] > 0 {
                    self.down[node.idx()] -= 1;
                    if self.down[node.idx()] == 0 {
                        self.online_milli += self.node_milli[node.idx()];
                        let name = self.node_name(node);
                        self.apply(Command::RegisterNode { node: name.clone() });
                        if self.drained[node.idx()] > 0 {
                            let applied = self.apply(Command::Drain { node: name });
                            assert_eq!(applied, Applied::Ok, "drain of a node just up");
                        }
                    }
                }
                self.note(6, node.0 as u64);
            }
            Event::NodeDrain(node) => {
                self.drained[node.idx()] += 1;
                if self.drained[node.idx()] == 1 && self.down[node.idx()] == 0 {
                    let name = self.node_name(node);
                    let applied = self.apply(Command::Drain { node: name });
                    assert_eq!(applied, Applied::Ok, "drain of an up node");
                }
                self.note(8, node.0 as u64);
            }
            Event::NodeResume(node) => {
                if self.drained[node.idx()] > 0 {
                    self.drained[node.idx()] -= 1;
                    if self.drained[node.idx()] == 0 && self.down[node.idx()] == 0 {
                        let name = self.node_name(node);
                        let applied = self.apply(Command::Resume { node: name });
                        assert_eq!(applied, Applied::Ok, "resume of a drained node");
                    }
                }
                self.note(9, node.0 as u64);
            }
        }
    }

    /// A job a node failure ended: back in the queue, or failed for good.
    fn requeue_or_fail(&mut self, job: JobId) {
        let l = self.live.get_mut(&job).expect("ended jobs are live");
        self.used_milli -= l.milli;
        l.milli = 0;
        l.started = false;
        l.last_reason = None;
        let input = l.input;
        if self.sm.job(job).is_some_and(|r| r.state.is_terminal()) {
            let l = self.live.remove(&job).expect("live");
            assert!(!l.blocked, "a running job waits for nothing");
            let outcome = &mut self.report.outcomes[input];
            outcome.fate = Fate::Failed;
            outcome.end_ms = Some(self.now_ms);
        } else {
            self.report.requeued += 1;
            self.report.outcomes[input].requeues += 1;
        }
        self.note(4, job.0);
    }

    /// The leader's pass, applied; placed jobs start at once. Returns how many it placed.
    fn schedule(&mut self, observer: &mut dyn Observer) -> usize {
        let Some((pass, explanations)) = self.sm.plan_pass(PASS_PLANS_MAX) else {
            return 0;
        };
        let seed_index = self.sm.applied_index();
        let Command::SchedulePass {
            plans, deferred, ..
        } = &pass
        else {
            panic!("a pass is a SchedulePass");
        };
        let wanted = observer.wants_decisions();
        let mut outcomes: BTreeMap<JobId, Outcome> = BTreeMap::new();
        for (job, why) in deferred {
            let blocked = matches!(
                why.reason,
                PendingReason::Resources | PendingReason::Priority | PendingReason::StalePlan
            );
            self.set_blocked(*job, blocked);
            let l = self.live.get_mut(job).expect("pending jobs are live");
            if l.last_reason != Some(why.reason) {
                l.last_reason = Some(why.reason);
                if wanted {
                    outcomes.insert(*job, Outcome::Unschedulable(why.clone()));
                }
            }
        }
        for plan in plans {
            self.set_blocked(plan.job, false);
            self.live.get_mut(&plan.job).expect("live").last_reason = None;
            if wanted {
                outcomes.insert(plan.job, Outcome::Placed(plan.clone()));
            }
        }
        if wanted {
            for (job, explanation) in explanations {
                if let Some(outcome) = outcomes.remove(&job) {
                    observer.on_decision(Decision {
                        time_ms: self.now_ms,
                        input: self.live[&job].input,
                        job,
                        seed: placement_seed(job.0, seed_index),
                        outcome,
                        explanation,
                    });
                }
            }
        }
        let Applied::Scheduled { placed, .. } = self.apply(pass) else {
            panic!("a pass planned on the committed state applies");
        };
        let n_placed = placed.len();
        for job in placed {
            let applied = self.apply(Command::Start { job });
            assert_eq!(applied, Applied::Ok, "start of placed job {job}");
            let plan = self
                .sm
                .job(job)
                .and_then(|r| r.plan.as_ref())
                .expect("placed");
            let milli: u64 = plan.members.iter().map(|m| take_milli(&m.take.gpus)).sum();
            let mut nodes = 0u64;
            for m in &plan.members {
                nodes = mix(nodes ^ m.node.0 as u64);
            }
            let l = self.live.get_mut(&job).expect("placed jobs are live");
            let input = l.input;
            if l.run == 0 {
                self.report
                    .wait_ms
                    .push(self.now_ms - self.jobs[input].at_ms);
                self.report.outcomes[input].start_ms = Some(self.now_ms);
            }
            l.run += 1;
            l.started = true;
            l.milli = milli;
            let run = l.run;
            self.used_milli += milli;
            self.report.starts += 1;
            self.note(7, job.0 ^ nodes);
            let end = self.now_ms.saturating_add(self.jobs[input].duration_ms);
            self.queue.push(end, Event::Complete { job, run });
        }
        n_placed
    }
}

fn take_milli(gpus: &GpuTake) -> u64 {
    match *gpus {
        GpuTake::None | GpuTake::Mig { .. } => 0,
        GpuTake::Whole { mask } => mask.count_ones() as u64 * 1_000,
        GpuTake::Milli { milli, .. } => milli as u64,
    }
}

/// A seeded synthetic workload on `topology`: `jobs` batch jobs (shares, whole GPUs and
/// CPU-only tasks in OpenB-like proportions) arriving over time, and a few node failures with
/// repairs. For tests and the benchmark; the same seed gives the same workload.
pub fn synthetic(
    topology: &Topology,
    jurisdiction: sovra_fabric::Jurisdiction,
    seed: u64,
    jobs: usize,
) -> (Vec<JobArrival>, Vec<Fault>) {
    let mut state = mix(seed);
    let mut draw = move |n: u64| {
        state = mix(state.wrapping_add(0x9E37_79B9_7F4A_7C15));
        state % n.max(1)
    };
    let mut at_ms = 0u64;
    let mut arrivals = Vec::with_capacity(jobs);
    for i in 0..jobs {
        at_ms += draw(20_000);
        let gpus = match draw(100) {
            0..=12 => GpuRequest::None,
            13..=50 => GpuRequest::Milli([100, 250, 460, 500, 750][draw(5) as usize] as u32),
            51..=95 => GpuRequest::Whole(1),
            96..=97 => GpuRequest::Whole(2),
            _ => GpuRequest::Whole([4, 8][draw(2) as usize]),
        };
        arrivals.push(JobArrival {
            spec: JobSpec {
                run: Default::default(),
                name: format!("synth-{i}"),
                tenant: ["a", "b", "c"][draw(3) as usize].into(),
                priority: 0,
                jurisdictions: vec![jurisdiction],
                gpu_models: Vec::new(),
                cpu_milli: 1_000 * (1 + draw(16)),
                memory_mib: 1_024 * (1 + draw(32)),
                time_limit_ms: None,
                workload: Workload::Batch { gpus },
                control: Default::default(),
            },
            at_ms,
            duration_ms: 60_000 + draw(7_200_000),
        });
    }
    let nodes = topology.nodes().len() as u64;
    let faults = (0..(nodes / 50).max(1))
        .map(|_| Fault {
            node: NodeId::from_idx(draw(nodes) as usize),
            at_ms: draw(at_ms.max(1)),
            repair_after_ms: Some(600_000 + draw(3_000_000)),
        })
        .collect();
    (arrivals, faults)
}
