//! The placement pipeline: `(ClusterView, job, seed) -> Plan | Unschedulable` plus an
//! [`Explanation`].
//!
//! Stages, in order:
//! 1. **eligibility**: the jurisdiction filter runs first and is fail-closed; then the latency
//!    SLO of inference services. Both are site-level, so they cost O(sites), and yield the
//!    eligible node ranges (subtrees are contiguous id ranges, see `sovra_fabric::topology`).
//! 2. **feasibility**: candidates come from the ledger's bucket indexes in best-fit order
//!    (nodes with exactly the GPUs asked for first), each checked for model, CPU, memory and
//!    GPU fit. Scans start at a seeded rotation so equal nodes share load. Node-scoring
//!    policies ([`SharePolicy::scores_nodes`]) check every eligible node instead.
//! 3. **scoring**: best-fit packing (tightest GPU, then fullest leaf), topology locality for
//!    gangs, spread and SLO latency for services; or, for single tasks and replicas under a
//!    node-scoring policy, that policy's node score ([`score`]: FGD, the FGD paper's
//!    baselines, sovra's FragPack).
//! 4. **selection**: the best score wins; ties go to a seeded hash of the node id.
//!
//! Determinism: the result depends only on the view, the job and the seed. No clock, no IO,
//! no global randomness, no hash-map iteration order.
//!
//! When a job cannot be placed, a full diagnostic scan counts exactly how many nodes each
//! filter removed, so `sovra explain` can say why a job is pending.

mod diagnose;
pub mod fgd;
mod gang;
mod inference;
mod member;
pub mod score;

use std::fmt;
use std::ops::Range;

use sovra_fabric::{Jurisdiction, Ledger, NodeId, SiteId, Take, Topology};

use crate::core::job::{JobId, JobSpec, Workload};

pub use fgd::TargetWorkload;

/// How a single task or replica chooses its node and GPUs.
///
/// [`SharePolicy::BestFit`] is sovra's bucketed best fit: candidates come from the ledger's
/// best-fit indexes and the first bucket that fits ends the search. Every other policy is a
/// *node-scoring* policy: every eligible node that fits is scored, the highest score wins and
/// ties go to the seeded node order (`rng::tie(seed, node)`, lowest first). Six of them are
/// the policies of the FGD paper's evaluation (Weng et al., USENIX ATC'23), implemented as its
/// simulator defines them so that sovra reproduces the published numbers; see
/// `docs/sim.md`. Gangs always use sovra's topology-aware gang placement; MIG requests
/// always use best fit.
#[derive(Clone, Debug, PartialEq)]
pub enum SharePolicy {
    /// Tightest-fitting GPU first (best fit), then the fullest leaf.
    BestFit,
    /// Fragmentation gradient descent (Weng et al., ATC'23) against a target workload: pick
    /// the node and GPU whose expected fragmentation grows least, scored as the paper's
    /// simulator scores it (an integer 0..=100, see [`fgd`]).
    Fgd(TargetWorkload),
    /// A uniformly random node that fits (seeded by the job), a random fitting GPU.
    Random,
    /// Tetris's dot product of the node's free and the task's requested (CPU, GPU), each
    /// normalised by the largest node: the smallest product wins.
    DotProduct,
    /// GPU clustering: prefer nodes that already run only tasks of the same GPU shape
    /// (share, or `k` whole GPUs), then fuller nodes.
    GpuClustering,
    /// GPU packing: prefer partly used GPUs, then free GPUs on partly used nodes, then idle
    /// nodes with few GPUs.
    GpuPacking,
    /// The FGD paper's best-fit baseline: the node with the least CPU and GPU left after
    /// placing, each normalised by the largest node (half weight each).
    NodeBestFit,
    /// sovra's packing for fractional-GPU workloads: FGD's fragmentation gradient plus the
    /// GPU a node strands for lack of CPU and the capacity it takes from model-restricted
    /// tasks, quantised as FGD's (see [`score`]).
    FragPack(TargetWorkload),
}

impl SharePolicy {
    /// Whether the policy scores every eligible node (all but [`SharePolicy::BestFit`]).
    pub fn scores_nodes(&self) -> bool {
        !matches!(self, SharePolicy::BestFit)
    }

    /// The policy's name, as `sovra-sim --policy` and explanations spell it.
    pub fn name(&self) -> &'static str {
        match self {
            SharePolicy::BestFit => "best-fit",
            SharePolicy::Fgd(_) => "fgd",
            SharePolicy::Random => "random",
            SharePolicy::DotProduct => "dot-product",
            SharePolicy::GpuClustering => "gpu-clustering",
            SharePolicy::GpuPacking => "gpu-packing",
            SharePolicy::NodeBestFit => "node-best-fit",
            SharePolicy::FragPack(_) => "frag-pack",
        }
    }
}

/// Placement policy knobs. Passed in, never stored in the view.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Node and GPU choice for single tasks and replicas.
    pub share: SharePolicy,
    /// Feasible candidates scored per best-fit bucket before choosing (Nomad's "limit").
    pub candidate_limit: usize,
    /// Candidate subtrees tried per topology level for gangs. The default (`usize::MAX`) is
    /// exhaustive: candidates are ranked by a GPU-count bound that ignores models, CPU and
    /// memory, so a lower limit trades completeness for latency (a gang may then wait although
    /// some untried subtree holds it).
    pub subtree_limit: usize,
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            share: SharePolicy::BestFit,
            candidate_limit: 16,
            subtree_limit: usize::MAX,
        }
    }
}

impl PolicyConfig {
    /// The policy's name in explanations.
    pub fn name(&self) -> &'static str {
        self.share.name()
    }
}

/// The immutable state placement reads.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    /// Structure.
    pub topology: &'a Topology,
    /// Free capacity.
    pub ledger: &'a Ledger,
}

/// One member's slot: a node and what it takes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberSlot {
    /// Node.
    pub node: NodeId,
    /// Resources taken.
    pub take: Take,
}

/// A placement decision for every member of a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The job.
    pub job: JobId,
    /// The seed the plan was made with.
    pub seed: u64,
    /// One slot per member, in member (rank) order.
    pub members: Vec<MemberSlot>,
}

/// Why a job is pending, in Slurm's reason-code style.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PendingReason {
    /// Not enough free resources now.
    Resources,
    /// Higher-priority jobs are waiting ahead of it.
    Priority,
    /// No schedulable site in the job's allowed jurisdictions (or none allowed at all).
    JurisdictionUnavailable,
    /// No site meets the latency objective.
    LatencyUnavailable,
    /// The job can never fit this cluster as it is built (too large, unknown model, …).
    BadConstraints,
    /// A plan was rejected at apply because the state moved on; it will be retried.
    StalePlan,
    /// Held by a user (`scontrol hold`, `sbatch -H`) until released.
    Held,
    /// Waiting for the jobs it depends on.
    Dependency,
    /// A job it depends on ended in a way that can never satisfy the dependency.
    DependencyNeverSatisfied,
    /// Its begin time has not come.
    BeginTime,
    /// Its array's throttle (`%N`) is reached.
    ArrayTaskLimit,
}

impl PendingReason {
    /// The reason code as `squeue` would show it.
    pub fn code(self) -> &'static str {
        match self {
            PendingReason::Resources => "Resources",
            PendingReason::Priority => "Priority",
            PendingReason::JurisdictionUnavailable => "JurisdictionUnavailable",
            PendingReason::LatencyUnavailable => "LatencyUnavailable",
            PendingReason::BadConstraints => "BadConstraints",
            PendingReason::StalePlan => "StalePlan",
            PendingReason::Held => "JobHeldUser",
            PendingReason::Dependency => "Dependency",
            PendingReason::DependencyNeverSatisfied => "DependencyNeverSatisfied",
            PendingReason::BeginTime => "BeginTime",
            PendingReason::ArrayTaskLimit => "JobArrayTaskLimit",
        }
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A job that cannot be placed now, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unschedulable {
    /// Reason code.
    pub reason: PendingReason,
    /// One line for humans.
    pub message: String,
}

/// Nodes removed by each filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterCounts {
    /// Outside the allowed jurisdictions.
    pub jurisdiction: u32,
    /// In sites that miss the latency objective.
    pub latency: u32,
    /// Down or drained.
    pub unschedulable: u32,
    /// No GPU of an allowed model.
    pub model: u32,
    /// Not enough CPU.
    pub cpu: u32,
    /// Not enough memory.
    pub memory: u32,
    /// Not enough GPU.
    pub gpu: u32,
}

/// How a placement was reached (Nomad's `AllocMetric`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Explanation {
    /// Policy name.
    pub policy: &'static str,
    /// Nodes in the cluster.
    pub nodes_total: u32,
    /// Nodes left after the jurisdiction and latency filters.
    pub nodes_eligible: u32,
    /// Allowed jurisdictions that exist in this cluster.
    pub jurisdictions: Vec<Jurisdiction>,
    /// Nodes examined by the feasibility stage.
    pub nodes_evaluated: u32,
    /// Removals by filter. Exact over the whole cluster when unschedulable; over the examined
    /// nodes otherwise.
    pub removed: FilterCounts,
    /// Subtrees tried for gangs / spread domains for services.
    pub subtrees_evaluated: u32,
    /// The decisive steps, one line each ("leaf syd1/l03 holds all 8 members", …).
    pub steps: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.removed;
        let juris: Vec<&str> = self.jurisdictions.iter().map(|j| j.as_str()).collect();
        writeln!(
            f,
            "policy={} nodes={} eligible={} jurisdictions=[{}] evaluated={} subtrees={}",
            self.policy,
            self.nodes_total,
            self.nodes_eligible,
            juris.join(","),
            self.nodes_evaluated,
            self.subtrees_evaluated
        )?;
        writeln!(
            f,
            "removed: jurisdiction={} latency={} unavailable={} model={} cpu={} memory={} gpu={}",
            r.jurisdiction, r.latency, r.unschedulable, r.model, r.cpu, r.memory, r.gpu
        )?;
        for step in &self.steps {
            writeln!(f, "- {step}")?;
        }
        Ok(())
    }
}

/// The outcome of placement: a domain value, never an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every member has a slot.
    Placed(Plan),
    /// The job waits.
    Unschedulable(Unschedulable),
}

/// A placement and its explanation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// Plan or reason.
    pub outcome: Outcome,
    /// How it was reached.
    pub explanation: Explanation,
}

/// Places `job` on `view`. Pure: same inputs, same result, bit for bit.
pub fn place(
    view: ClusterView<'_>,
    policy: &PolicyConfig,
    job_id: JobId,
    job: &JobSpec,
    seed: u64,
) -> Placement {
    let mut ctx = Ctx::new(view, policy, job_id, job, seed);
    let result = ctx.eligibility().and_then(|()| match &job.workload {
        Workload::Batch { gpus } => member::place_batch(&mut ctx, gpus),
        Workload::Gang(spec) => gang::place_gang(&mut ctx, spec),
        Workload::Inference(spec) => inference::place_inference(&mut ctx, spec),
    });
    let outcome = match result {
        Ok(members) => {
            assert_eq!(members.len(), job.member_count() as usize);
            let plan = Plan {
                job: job_id,
                seed,
                members,
            };
            debug_check_plan(view, &plan);
            Outcome::Placed(plan)
        }
        Err(unschedulable) => Outcome::Unschedulable(unschedulable),
    };
    Placement {
        outcome,
        explanation: ctx.explanation,
    }
}

/// Paired check, plan side: the plan's takes, applied in order, all fit the view.
fn debug_check_plan(view: ClusterView<'_>, plan: &Plan) {
    let mut overlay = member::Overlay::default();
    for slot in &plan.members {
        assert!(
            overlay.fits(view, slot.node, &slot.take),
            "placement produced an oversubscribing plan for job {}: {:?}",
            plan.job,
            slot
        );
        overlay.add(slot.node, &slot.take);
    }
}

/// Per-placement working state.
pub(crate) struct Ctx<'a> {
    pub view: ClusterView<'a>,
    pub policy: &'a PolicyConfig,
    pub job_id: JobId,
    pub job: &'a JobSpec,
    pub seed: u64,
    /// Sites that passed jurisdiction (and, for services, latency) filtering.
    pub sites: Vec<SiteId>,
    /// Node ranges of `sites`, ascending and merged.
    pub ranges: Vec<Range<usize>>,
    /// Allowed models as a bitmask over `ModelId` (all ones when any model is allowed).
    pub model_mask: u64,
    pub explanation: Explanation,
}

impl<'a> Ctx<'a> {
    fn new(
        view: ClusterView<'a>,
        policy: &'a PolicyConfig,
        job_id: JobId,
        job: &'a JobSpec,
        seed: u64,
    ) -> Ctx<'a> {
        let explanation = Explanation {
            policy: policy.name(),
            nodes_total: view.topology.nodes().len() as u32,
            ..Explanation::default()
        };
        Ctx {
            view,
            policy,
            job_id,
            job,
            seed,
            sites: Vec::new(),
            ranges: Vec::new(),
            model_mask: u64::MAX,
            explanation,
        }
    }

    /// Stage 1: jurisdiction (fail-closed), models, and the latency objective.
    fn eligibility(&mut self) -> Result<(), Unschedulable> {
        let topology = self.view.topology;
        let mask = topology.jurisdiction_mask(&self.job.jurisdictions);
        self.explanation.jurisdictions = topology
            .jurisdictions()
            .iter()
            .enumerate()
            .filter(|(i, _)| mask.contains(*i as u8))
            .map(|(_, &j)| j)
            .collect();
        let allowed: Vec<SiteId> = topology.sites_in(mask).collect();
        let nodes_allowed: u32 = allowed
            .iter()
            .map(|&s| range_len(&topology.site(s).nodes))
            .sum();
        self.explanation.removed.jurisdiction = self.explanation.nodes_total - nodes_allowed;
        if allowed.is_empty() {
            let asked: Vec<&str> = self.job.jurisdictions.iter().map(|j| j.as_str()).collect();
            self.explanation.steps.push(format!(
                "no site is in an allowed jurisdiction [{}]",
                asked.join(",")
            ));
            return Err(Unschedulable {
                reason: PendingReason::JurisdictionUnavailable,
                message: format!(
                    "no site in allowed jurisdictions [{}] (cluster has [{}])",
                    asked.join(","),
                    topology
                        .jurisdictions()
                        .iter()
                        .map(|j| j.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            });
        }
        if !self.job.gpu_models.is_empty()
            && self.job.member_gpus() != crate::core::job::GpuRequest::None
        {
            let mut model_mask = 0u64;
            for name in &self.job.gpu_models {
                if let Some(m) = topology.model_by_name(name) {
                    assert!(m.idx() < 64, "at most 64 gpu models");
                    model_mask |= 1 << m.idx();
                }
            }
            if model_mask == 0 {
                return Err(Unschedulable {
                    reason: PendingReason::BadConstraints,
                    message: format!(
                        "no gpu of model [{}] exists in this cluster",
                        self.job.gpu_models.join(",")
                    ),
                });
            }
            self.model_mask = model_mask;
        }
        let mut sites = allowed;
        if let Workload::Inference(spec) = &self.job.workload {
            if let Some(slo) = &spec.slo {
                let Some(ingress) = topology.site_by_name(&slo.ingress_site) else {
                    return Err(Unschedulable {
                        reason: PendingReason::BadConstraints,
                        message: format!("unknown ingress site {:?}", slo.ingress_site),
                    });
                };
                let before = sites.len();
                let mut removed_nodes = 0;
                sites.retain(|&s| {
                    let ok = topology.site_rtt_ns(ingress, s) <= slo.max_rtt_ns;
                    if !ok {
                        removed_nodes += range_len(&topology.site(s).nodes);
                    }
                    ok
                });
                self.explanation.removed.latency = removed_nodes;
                if sites.len() < before {
                    self.explanation.steps.push(format!(
                        "{} allowed site(s) beyond {} of ingress {}",
                        before - sites.len(),
                        fmt_rtt(slo.max_rtt_ns),
                        slo.ingress_site
                    ));
                }
                if sites.is_empty() {
                    return Err(Unschedulable {
                        reason: PendingReason::LatencyUnavailable,
                        message: format!(
                            "no allowed site within {} of ingress site {}",
                            fmt_rtt(slo.max_rtt_ns),
                            slo.ingress_site
                        ),
                    });
                }
            }
        }
        self.ranges = sites
            .iter()
            .map(|&s| {
                let r = &topology.site(s).nodes;
                r.start as usize..r.end as usize
            })
            .collect();
        self.explanation.nodes_eligible = self.ranges.iter().map(|r| r.len() as u32).sum();
        self.sites = sites;
        Ok(())
    }

    /// Builds the "cannot place" outcome with exact per-filter counts.
    pub(crate) fn unschedulable(&mut self, topology_message: Option<String>) -> Unschedulable {
        diagnose::diagnose(self, topology_message)
    }
}

fn range_len(r: &Range<u32>) -> u32 {
    r.end - r.start
}

/// An RTT for messages: whole milliseconds or microseconds when exact, else nanoseconds.
pub(crate) fn fmt_rtt(ns: u64) -> String {
    if ns >= sovra_fabric::topology::SITE_LINK_DOWN_NS {
        "unreachable (link down: probes lost)".into()
    } else if ns >= 1_000_000 && ns % 1_000_000 == 0 {
        format!("{} ms", ns / 1_000_000)
    } else if ns >= 1_000 && ns % 1_000 == 0 {
        format!("{} us", ns / 1_000)
    } else {
        format!("{ns} ns")
    }
}
