//! The deterministic discrete-event core, and the cluster simulation it drives.
//!
//! [`EventQueue`] is a binary heap of events keyed by `(time, seq)`: `seq` is the order the
//! events were scheduled in, so events at the same millisecond run first-scheduled first and
//! a run never depends on heap internals. [`ClusterSim`] drives sovra's replicated state
//! machine ([`StateMachine`], the code `sovrad` applies its log with) on one thread: job
//! arrivals become `Submit` entries, completions `Finish`, node failures `FailNode` and
//! repairs `RegisterNode`; after the events of each millisecond the leader's scheduling pass
//! (`plan_pass`, which calls `placement::place`) runs and its plans are applied and started.
//! There is no clock, no IO and no randomness but the seeds in the input, so the same input
//! gives the same [`Report`], bit for bit.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use sovra_fabric::{GpuTake, NodeId, Topology};
use sovra_scheduler::core::job::{GpuRequest, JobId, JobSpec, Workload};
use sovra_scheduler::core::placement::PolicyConfig;
use sovra_scheduler::core::rng::mix;
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
    /// A node fails.
    NodeFail(NodeId),
    /// A node is repaired.
    NodeRepair(NodeId),
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

/// A job the simulation has submitted.
struct Live {
    input: usize,
    run: u32,
    started: bool,
    milli: u64,
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
        let mut queue = EventQueue::default();
        for (i, j) in jobs.iter().enumerate() {
            queue.push(j.at_ms, Event::Arrive(i));
        }
        for f in faults {
            queue.push(f.at_ms, Event::NodeFail(f.node));
            if let Some(after) = f.repair_after_ms {
                queue.push(f.at_ms.saturating_add(after), Event::NodeRepair(f.node));
            }
        }
        ClusterSim {
            sm: StateMachine::with_all_nodes_up(topology, policy),
            queue,
            jobs,
            live: BTreeMap::new(),
            index: 0,
            now_ms: 0,
            used_milli: 0,
            report: Report {
                trace_hash: mix(0x51A),
                ..Report::default()
            },
        }
    }

    /// The state machine (for checks).
    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    /// Runs until no event is left.
    pub fn run(mut self) -> Report {
        while let Some(t) = self.queue.peek_time() {
            self.advance(t);
            while self.queue.peek_time() == Some(t) {
                let (_, event) = self.queue.pop().expect("peeked");
                self.handle(event);
            }
            self.schedule();
        }
        self.report.unfinished = self.live.len() as u64;
        self.report.end_ms = self.now_ms;
        self.report.wait_ms.sort_unstable();
        self.report.state_hash = self.sm.state_hash();
        self.sm.check_invariants();
        self.report
    }

    fn advance(&mut self, t: u64) {
        assert!(
            t >= self.now_ms,
            "time went back from {} to {t}",
            self.now_ms
        );
        self.report.gpu_milli_ms += self.used_milli as u128 * (t - self.now_ms) as u128;
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

    fn handle(&mut self, event: Event) {
        self.report.events += 1;
        match event {
            Event::Arrive(i) => {
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
                        };
                        self.live.insert(job, live);
                    }
                    _ => {
                        self.report.rejected += 1;
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
                self.used_milli -= l.milli;
                self.report.completed += 1;
                self.note(3, job.0);
            }
            Event::NodeFail(node) => {
                let name = self.sm.topology().node(node).name.clone();
                if let Applied::Ended(jobs) = self.apply(Command::FailNode { node: name }) {
                    for job in jobs {
                        let l = self.live.get_mut(&job).expect("ended jobs are live");
                        self.used_milli -= l.milli;
                        l.milli = 0;
                        l.started = false;
                        if self.sm.job(job).is_some_and(|r| r.state.is_terminal()) {
                            self.live.remove(&job);
                        } else {
                            self.report.requeued += 1;
                        }
                        self.note(4, job.0);
                    }
                }
                self.note(5, node.0 as u64);
            }
            Event::NodeRepair(node) => {
                let name = self.sm.topology().node(node).name.clone();
                self.apply(Command::RegisterNode { node: name });
                self.note(6, node.0 as u64);
            }
        }
    }

    /// The leader's pass, applied; placed jobs start at once.
    fn schedule(&mut self) {
        let Some((pass, _)) = self.sm.plan_pass(PASS_PLANS_MAX) else {
            return;
        };
        let Applied::Scheduled { placed, .. } = self.apply(pass) else {
            panic!("a pass planned on the committed state applies");
        };
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
                name: format!("synth-{i}"),
                tenant: ["a", "b", "c"][draw(3) as usize].into(),
                priority: 0,
                jurisdictions: vec![jurisdiction],
                gpu_models: Vec::new(),
                cpu_milli: 1_000 * (1 + draw(16)),
                memory_mib: 1_024 * (1 + draw(32)),
                time_limit_ms: None,
                workload: Workload::Batch { gpus },
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
