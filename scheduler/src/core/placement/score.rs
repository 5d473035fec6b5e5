//! Node-scoring policies: every eligible node that fits is scored, the best score wins.
//!
//! These are the single-task policies of the FGD paper's evaluation (Weng et al., USENIX
//! ATC'23) plus sovra's own [`SharePolicy::FragPack`]. The paper's policies follow its
//! simulator (`hkust-adsl/kubernetes-scheduler-simulator`, a patched Kubernetes 1.20
//! scheduler), operation for operation:
//! - **filter**: the node is up and fits the task's CPU and memory; a GPU task needs a node
//!   with GPUs of an allowed model, a share some GPU with enough free milli, `k` whole GPUs
//!   `k` fully free GPUs (sovra's feasibility check, [`member::slot_on`]);
//! - **score**: one integer per node, higher is better (Kubernetes' 0..=100 plugin scores);
//! - **select**: the highest score; ties go to the seeded node order `tie(seed, node)`, lowest
//!   first. The paper's scheduler breaks ties by a per-run random node order, which is what a
//!   fixed seed gives (`sovra-sim openb` lays the cluster out so that the two orders agree);
//! - **GPU choice** inside the node: FGD picks the GPU whose share leaves the least
//!   fragmentation; the others take the tightest GPU that fits a share and the lowest-index
//!   free GPUs for whole GPUs (Random: a random fitting GPU for a share).
//!
//! The BestFit baseline also min-max normalises its scores; normalising never changes which
//! node scores highest, so it is left out. Replayed on the paper's traces, these policies give
//! the paper's published numbers (`docs/sim.md`).
//!
//! FragPack, sovra's own, keeps FGD's measure, quantisation and GPU choice and adds two costs
//! FGD cannot see in one step: GPU a node strands for lack of CPU, and capacity taken from
//! tasks restricted to a model. See [`frag_pack`].
//!
//! Cost: one pass over the eligible nodes; FGD and FragPack evaluate the fragmentation measure
//! (`O(shapes × GPUs)`) once per node and once per distinct free value of its fitting GPUs.
//!
//! [`member::slot_on`]: super::member

use std::ops::Range;

use sovra_fabric::topology::GPUS_PER_NODE_MAX;
use sovra_fabric::{GpuTake, NodeId, Take};

use super::fgd::{quantised_score, FragModel};
use super::member::{allowed_gpus, count_removal, slot_on_effective, Effective, Overlay};
use super::{Ctx, MemberSlot, SharePolicy};
use crate::core::job::GpuRequest;
use crate::core::rng::{mix, tie};

/// The largest node the paper's scores normalise by: 128 CPUs and 8 GPUs.
const CPU_MILLI_SPEC_MAX: f64 = 128_000.0;
const GPU_MILLI_SPEC_MAX: i64 = 8_000;
/// Kubernetes' highest plugin score.
const SCORE_MAX: i64 = 100;

/// A node's score: compared lexicographically, higher is better.
type Score = (i64, i64);

/// The task being placed, as the scores see it.
struct Task {
    cpu_milli: u64,
    /// Milli-GPU per GPU: 1..=999 for a share, 1000 for whole GPUs, 0 for CPU only.
    gpu_milli: u32,
    /// GPUs: 1 for a share, `k` for whole GPUs, 0 for CPU only.
    gpu_count: u32,
}

impl Task {
    fn new(cpu_milli: u64, gpus: &GpuRequest) -> Task {
        let (gpu_milli, gpu_count) = match *gpus {
            GpuRequest::None | GpuRequest::Mig(_) => (0, 0),
            GpuRequest::Whole(k) => (1_000, k),
            GpuRequest::Milli(m) => (m, 1),
        };
        Task {
            cpu_milli,
            gpu_milli,
            gpu_count,
        }
    }

    fn total_milli(&self) -> i64 {
        self.gpu_milli as i64 * self.gpu_count as i64
    }

    fn is_share(&self) -> bool {
        self.gpu_count == 1 && self.gpu_milli < 1_000
    }
}

/// One node as the scores see it: its free resources net of the overlay.
struct NodeView<'e> {
    eff: &'e Effective,
    /// Free milli of each of the node's GPUs (MIG GPUs count as 0).
    free: &'e [u16],
    model: Option<sovra_fabric::ModelId>,
    /// The node's GPUs whose model the task allows, by local index.
    allowed: u32,
    node: NodeId,
}

impl NodeView<'_> {
    fn free_total(&self) -> i64 {
        self.free.iter().map(|&f| f as i64).sum()
    }

    fn fully_free(&self) -> u32 {
        self.free.iter().filter(|&&f| f == 1_000).count() as u32
    }
}

/// Finds the best-scoring slot for one member within `ranges`, skipping nodes for which
/// `skip` holds. Every node in the ranges is examined.
pub(crate) fn find_scored_slot(
    ctx: &mut Ctx<'_>,
    overlay: &Overlay,
    ranges: &[Range<usize>],
    gpus: &GpuRequest,
    skip: &dyn Fn(NodeId) -> bool,
) -> Option<MemberSlot> {
    let view = ctx.view;
    let task = Task::new(ctx.job.cpu_milli, gpus);
    let frag = match &ctx.policy.share {
        SharePolicy::Fgd(w) | SharePolicy::FragPack(w) => Some(FragModel::new(w)),
        _ => None,
    };
    let pack = match (&ctx.policy.share, &frag) {
        (SharePolicy::FragPack(_), Some(f)) => Some(PackModel::new(f, view.topology)),
        _ => None,
    };
    // Random draws per job: the seed alone would give every job the same "random" node.
    let job_seed = mix(ctx.seed ^ mix(ctx.job_id.0));
    let mut best: Option<(Score, u64, MemberSlot)> = None;
    for range in ranges {
        for idx in range.clone() {
            let node = NodeId::from_idx(idx);
            if skip(node) {
                continue;
            }
            ctx.explanation.nodes_evaluated += 1;
            let eff = overlay.effective(view, node);
            let take = match slot_on_effective(ctx, &eff, node, gpus) {
                Err(removal) => {
                    count_removal(ctx, removal);
                    continue;
                }
                Ok((take, _)) => take,
            };
            let spec = view.topology.node(node);
            let n = (spec.gpu_count() as usize).min(GPUS_PER_NODE_MAX);
            let nv = NodeView {
                eff: &eff,
                free: &eff.free_milli[..n],
                model: spec.model,
                allowed: if task.gpu_count == 0 {
                    0
                } else {
                    allowed_gpus(ctx, node)
                },
                node,
            };
            let single = |s: i64| (s, 0);
            let (score, take) = match &ctx.policy.share {
                SharePolicy::BestFit => unreachable!("best fit does not score nodes"),
                SharePolicy::Random => ((0, 0), random_gpu(&nv, take, job_seed)),
                SharePolicy::DotProduct => (single(dot_product(&nv, &task)), take),
                SharePolicy::GpuClustering => (single(clustering(ctx, &nv, &task)), take),
                SharePolicy::GpuPacking => (single(packing(&nv, &task)), take),
                SharePolicy::NodeBestFit => (single(node_best_fit(&nv, &task)), take),
                SharePolicy::Fgd(_) => {
                    let (s, take) = fgd(frag.as_ref().expect("built above"), &nv, &task, take);
                    (single(s), take)
                }
                SharePolicy::FragPack(_) => {
                    let frag = frag.as_ref().expect("built above");
                    frag_pack(frag, pack.as_ref().expect("built above"), &nv, &task, take)
                }
            };
            let tie_key = match ctx.policy.share {
                SharePolicy::Random => tie(job_seed, node.0 as u64),
                _ => tie(ctx.seed, node.0 as u64),
            };
            let better = best
                .as_ref()
                .is_none_or(|(s, t, _)| score > *s || (score == *s && tie_key < *t));
            if better {
                best = Some((score, tie_key, MemberSlot { node, take }));
            }
        }
    }
    best.map(|b| b.2)
}

/// Random: a share goes to a random fitting GPU; whole GPUs keep the lowest free indices.
fn random_gpu(nv: &NodeView<'_>, take: Take, job_seed: u64) -> Take {
    let GpuTake::Milli { milli, .. } = take.gpus else {
        return take;
    };
    let local = (0..nv.free.len())
        .filter(|&i| nv.allowed & (1 << i) != 0 && nv.free[i] >= milli)
        .min_by_key(|&i| tie(job_seed, (nv.node.0 as u64) << 8 | i as u64))
        .expect("the feasibility check found a fitting gpu");
    Take {
        gpus: GpuTake::Milli {
            local: local as u8,
            milli,
        },
        ..take
    }
}

/// DotProd (Tetris): `100 · (1 − (c/C·cpu/C + g/G·req/G) / 2)`, truncated, where `c` and `g`
/// are the node's free CPU and GPU milli and `C`, `G` the largest node's.
fn dot_product(nv: &NodeView<'_>, task: &Task) -> i64 {
    let gpu_max = GPU_MILLI_SPEC_MAX as f64;
    let node = [
        nv.eff.cpu_milli as f64 / CPU_MILLI_SPEC_MAX,
        nv.free_total() as f64 / gpu_max,
    ];
    let pod = [
        task.cpu_milli as f64 / CPU_MILLI_SPEC_MAX,
        task.total_milli() as f64 / gpu_max,
    ];
    let mut dot = 0.0;
    dot += node[0] * pod[0];
    dot += node[1] * pod[1];
    let score = 1.0 - dot / 2.0;
    (SCORE_MAX as f64 * score) as i64
}

/// The paper's BestFit: `100 · (1 − (½·(c − cpu)/C + ½·(g − req)/G))`, truncated.
fn node_best_fit(nv: &NodeView<'_>, task: &Task) -> i64 {
    let free = [nv.eff.cpu_milli as f64, nv.free_total() as f64];
    let req = [task.cpu_milli as f64, task.total_milli() as f64];
    let max = [CPU_MILLI_SPEC_MAX, GPU_MILLI_SPEC_MAX as f64];
    let mut s = 0.0;
    for i in 0..2 {
        s += (free[i] - req[i]) / max[i] * 0.5;
    }
    ((1.0 - s) * SCORE_MAX as f64) as i64
}

/// GpuPacking, from best to worst: a share that fits on partly used GPUs (the fuller the
/// better, 50..=100); free GPUs on a partly used node (fewer is better, 33..=50); an idle
/// node (fewer GPUs is better, 0..=33). CPU-only tasks score 0 everywhere.
fn packing(nv: &NodeView<'_>, task: &Task) -> i64 {
    if task.gpu_milli == 0 {
        return 0;
    }
    let fully_free = nv.fully_free() as i64;
    if fully_free == nv.free.len() as i64 {
        return (SCORE_MAX / 3 - fully_free).max(fully_free);
    }
    let mut order: Vec<usize> = (0..nv.free.len()).collect();
    order.sort_by_key(|&i| nv.free[i]); // stable: ascending free, then index
    let mut left = task.gpu_count;
    let mut fully_free_used = 0i64;
    let mut partial_free_pct = 0i64;
    for i in order {
        if left == 0 {
            break;
        }
        let f = nv.free[i] as u32;
        if task.gpu_milli <= f {
            left -= 1;
            if f == 1_000 {
                fully_free_used += 1;
            }
            partial_free_pct += f as i64 * 100 / 1_000;
        }
    }
    assert_eq!(left, 0, "the feasibility check found fitting gpus");
    if fully_free_used > 0 {
        return (SCORE_MAX / 2 - fully_free_used).max(SCORE_MAX / 3);
    }
    (SCORE_MAX - partial_free_pct / 10).max(SCORE_MAX / 2)
}

/// GpuClustering: `25 · (8000 − g) / 8000` (integer), plus 75 when the node runs only tasks of
/// this task's GPU shape, 50 when it runs that shape among others, 25 when it runs no GPU task,
/// 0 when only other shapes. CPU-only tasks score 0 everywhere.
fn clustering(ctx: &Ctx<'_>, nv: &NodeView<'_>, task: &Task) -> i64 {
    if task.gpu_milli == 0 {
        return 0;
    }
    let shapes = ctx.view.ledger.shapes(nv.node);
    let same = if task.is_share() {
        shapes.share
    } else {
        shapes.whole[task.gpu_count as usize - 1] as u16
    };
    let base = SCORE_MAX / 4 * (GPU_MILLI_SPEC_MAX - nv.free_total()) / GPU_MILLI_SPEC_MAX;
    let distinct = shapes.distinct();
    base + match (same > 0, distinct) {
        (true, 1) => SCORE_MAX * 3 / 4,
        (true, _) => SCORE_MAX / 2,
        (false, 0) => SCORE_MAX / 4,
        (false, _) => 0,
    }
}

/// A share's score depends on its GPU only through the GPU's free milli: GPUs with equal free
/// milli score the same, so each value is scored once.
#[derive(Default)]
struct Seen {
    values: [(u16, Score); GPUS_PER_NODE_MAX],
    len: usize,
}

impl Seen {
    fn get_or(&mut self, free: u16, score: impl FnOnce() -> Score) -> Score {
        if let Some(&(_, s)) = self.values[..self.len].iter().find(|(v, _)| *v == free) {
            return s;
        }
        let s = score();
        self.values[self.len] = (free, s);
        self.len += 1;
        s
    }
}

/// FGD: the node's score is FGD's quantised fragmentation gradient; a share tries every GPU
/// that fits and keeps the first with the best score, whole GPUs take the lowest free indices.
fn fgd(frag: &FragModel, nv: &NodeView<'_>, task: &Task, take: Take) -> (i64, Take) {
    let before = frag.node_frag(nv.free, nv.eff.cpu_milli, nv.model);
    let cpu_after = nv.eff.cpu_milli - task.cpu_milli;
    let mut after = [0u16; GPUS_PER_NODE_MAX];
    let after = &mut after[..nv.free.len()];
    after.copy_from_slice(nv.free);
    match take.gpus {
        GpuTake::Milli { milli, .. } => {
            let mut seen = Seen::default();
            let mut best: Option<(i64, usize)> = None;
            for i in 0..nv.free.len() {
                let f = nv.free[i];
                if f < milli || nv.allowed & (1 << i) == 0 {
                    continue;
                }
                let score = seen
                    .get_or(f, || {
                        after[i] = f - milli;
                        let s = quantised_score(before, frag.node_frag(after, cpu_after, nv.model));
                        after[i] = f;
                        (s, 0)
                    })
                    .0;
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, i));
                }
            }
            let (score, local) = best.expect("the feasibility check found a fitting gpu");
            let gpus = GpuTake::Milli {
                local: local as u8,
                milli,
            };
            (score, Take { gpus, ..take })
        }
        GpuTake::Whole { mask } => {
            for (i, f) in after.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *f = 0;
                }
            }
            let s = quantised_score(before, frag.node_frag(after, cpu_after, nv.model));
            (s, take)
        }
        GpuTake::None | GpuTake::Mig { .. } => {
            let s = quantised_score(before, frag.node_frag(after, cpu_after, nv.model));
            (s, take)
        }
    }
}

/// Maps an `f64` to an `i64` with the same order (no NaN).
fn ordered(x: f64) -> i64 {
    assert!(!x.is_nan(), "nan score");
    let b = x.to_bits() as i64;
    if b < 0 {
        b ^ i64::MAX
    } else {
        b
    }
}

/// The workload's CPU per GPU, as a share of the cluster's, where FragPack starts counting
/// CPU-only tasks' CPU against GPU nodes ...
const CPU_BOUND_FROM: f64 = 0.95;
/// ... and the span over which it moves to counting all of it.
const CPU_BOUND_SPAN: f64 = 0.1;

/// What FragPack knows about the workload beyond FGD's fragmentation measure.
struct PackModel {
    /// CPU the workload's GPU tasks bring per milli-GPU (`ρ`).
    cpu_per_gpu_milli: f64,
    /// Per model, the pressure of model-restricted demand on it (`π_k`).
    pressure: Vec<f64>,
}

impl PackModel {
    fn new(frag: &FragModel, topology: &sovra_fabric::Topology) -> PackModel {
        let mut capacity = vec![0u64; topology.models().len()];
        let (mut cpu_total, mut gpu_total) = (0u64, 0u64);
        for n in topology.nodes() {
            cpu_total += n.cpu_milli;
            if let Some(m) = n.model {
                capacity[m.idx()] += 1_000 * n.gpu_count() as u64;
                gpu_total += 1_000 * n.gpu_count() as u64;
            }
        }
        // CPU that GPU tasks bring, unless the workload as a whole (CPU-only tasks included)
        // asks for about as much CPU per GPU as the cluster has: CPU then binds everywhere
        // and CPU-only tasks take CPU on GPU nodes too. Blended over ±5% of the cluster's
        // ratio.
        let (gpu_tasks, all_tasks) = (frag.cpu_per_gpu_milli(false), frag.cpu_per_gpu_milli(true));
        let cluster = if gpu_total == 0 {
            f64::INFINITY
        } else {
            cpu_total as f64 / gpu_total as f64
        };
        let w = ((all_tasks / cluster - CPU_BOUND_FROM) / CPU_BOUND_SPAN).clamp(0.0, 1.0);
        PackModel {
            cpu_per_gpu_milli: gpu_tasks + w * (all_tasks - gpu_tasks),
            pressure: frag.model_pressure(&capacity),
        }
    }

    /// GPU milli a node state strands for lack of CPU, at the workload's CPU per GPU.
    fn stranded(&self, gpu_free: i64, cpu_free: u64) -> f64 {
        if self.cpu_per_gpu_milli <= 0.0 {
            return 0.0;
        }
        (gpu_free as f64 - cpu_free as f64 / self.cpu_per_gpu_milli).max(0.0)
    }
}

/// sovra's FragPack (see [`SharePolicy::FragPack`]): FGD's gradient with two more costs, in
/// the same unit (milli-GPU lost to the workload), quantised as FGD quantises:
/// - **stranding**: GPU that the node's CPU could no longer feed at the workload's CPU per
///   GPU, `S = max(0, g − c/ρ)`; the score adds `S' − S`. CPU is what most often leaves GPUs
///   idle in OpenB (most GPUs sit on CPU-poor nodes), and one-step fragmentation only sees it
///   once a typical task no longer fits;
/// - **model pressure**: GPU taken on a model that model-restricted tasks need, weighted by
///   how much of that model the restricted demand claims (`π_k`); the score adds
///   `used · π_k`. Without restricted tasks it is 0.
///
/// Ties on the quantised score go to the smaller stranding increase, then to the seeded
/// node order. A share takes the GPU with the best key, the tightest of equals.
fn frag_pack(
    frag: &FragModel,
    pack: &PackModel,
    nv: &NodeView<'_>,
    task: &Task,
    take: Take,
) -> (Score, Take) {
    let before = frag.node_frag(nv.free, nv.eff.cpu_milli, nv.model);
    let cpu_after = nv.eff.cpu_milli - task.cpu_milli;
    let free_total = nv.free_total();
    let stranded_before = pack.stranded(free_total, nv.eff.cpu_milli);
    let pressure = nv.model.map_or(0.0, |m| pack.pressure[m.idx()]);
    let key = |frag_after: f64, gpu_left: i64| -> Score {
        let stranding = pack.stranded(gpu_left, cpu_after) - stranded_before;
        let used = (free_total - gpu_left) as f64;
        let delta = frag_after - before + stranding + used * pressure;
        (quantised_score(0.0, delta), ordered(-stranding))
    };
    let mut after = [0u16; GPUS_PER_NODE_MAX];
    let after = &mut after[..nv.free.len()];
    after.copy_from_slice(nv.free);
    match take.gpus {
        GpuTake::Milli { milli, .. } => {
            let mut seen = Seen::default();
            let mut best: Option<(Score, u16, usize)> = None;
            for i in 0..nv.free.len() {
                let f = nv.free[i];
                if f < milli || nv.allowed & (1 << i) == 0 {
                    continue;
                }
                let k = seen.get_or(f, || {
                    after[i] = f - milli;
                    let frag_after = frag.node_frag(after, cpu_after, nv.model);
                    after[i] = f;
                    key(frag_after, free_total - milli as i64)
                });
                if best.is_none_or(|(bk, bf, _)| k > bk || (k == bk && f < bf)) {
                    best = Some((k, f, i));
                }
            }
            let (k, _, local) = best.expect("the feasibility check found a fitting gpu");
            let gpus = GpuTake::Milli {
                local: local as u8,
                milli,
            };
            (k, Take { gpus, ..take })
        }
        GpuTake::Whole { mask } => {
            for (i, f) in after.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *f = 0;
                }
            }
            let used = 1_000 * mask.count_ones() as i64;
            let frag_after = frag.node_frag(after, cpu_after, nv.model);
            (key(frag_after, free_total - used), take)
        }
        GpuTake::None | GpuTake::Mig { .. } => {
            let frag_after = frag.node_frag(after, cpu_after, nv.model);
            (key(frag_after, free_total), take)
        }
    }
}
