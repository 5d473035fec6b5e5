//! Single-member placement: finding one node slot for one task or replica.
//!
//! Candidates come from the ledger's bucket bitsets in best-fit order, scanned from a seeded
//! rotation of the eligible ranges. Each bucket yields at most `candidate_limit` feasible
//! nodes; the best-scored one wins, and the first bucket with any feasible node ends the
//! search (its nodes are the tightest fit). [`Overlay`] accounts for slots already chosen
//! earlier in the same plan.

use std::ops::Range;

use sovra_fabric::ledger::PARTIAL_BUCKETS;
use sovra_fabric::topology::{Level, GPUS_PER_NODE_MAX, MIG_COMPUTE_SLICES, MIG_MEMORY_SLICES};
use sovra_fabric::{GpuId, GpuTake, NodeId, Take};

use super::{ClusterView, Ctx, MemberSlot, SharePolicy, Unschedulable};
use crate::core::job::GpuRequest;
use crate::core::rng::tie;

/// Resources chosen earlier in the same plan, not yet in the ledger.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    entries: Vec<(NodeId, Take)>,
}

/// A node's free resources net of the overlay.
pub(crate) struct Effective {
    pub schedulable: bool,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub whole_mask: u32,
    /// Free milli per local GPU (non-MIG GPUs; 0 for MIG GPUs).
    pub free_milli: [u16; GPUS_PER_NODE_MAX],
    /// Free (compute, memory) MIG slices per local GPU (MIG GPUs only).
    pub free_mig: [(u8, u8); GPUS_PER_NODE_MAX],
}

impl Overlay {
    pub fn add(&mut self, node: NodeId, take: &Take) {
        self.entries.push((node, *take));
    }

    pub fn uses(&self, node: NodeId) -> bool {
        self.entries.iter().any(|(n, _)| *n == node)
    }

    pub fn effective(&self, view: ClusterView<'_>, node: NodeId) -> Effective {
        let free = view.ledger.node(node);
        let spec = view.topology.node(node);
        let mut eff = Effective {
            schedulable: free.schedulable,
            cpu_milli: free.cpu_milli,
            memory_mib: free.memory_mib,
            whole_mask: free.whole_mask,
            free_milli: [0; GPUS_PER_NODE_MAX],
            free_mig: [(0, 0); GPUS_PER_NODE_MAX],
        };
        for (local, g) in spec.gpus.clone().enumerate() {
            let gpu = GpuId(g);
            let used = view.ledger.gpu(gpu);
            if view.topology.gpu(gpu).mig {
                eff.free_mig[local] = (
                    MIG_COMPUTE_SLICES - used.mig_compute_used,
                    MIG_MEMORY_SLICES - used.mig_memory_used,
                );
            } else {
                eff.free_milli[local] = 1000 - used.used_milli;
            }
        }
        for (n, take) in &self.entries {
            if *n != node {
                continue;
            }
            eff.cpu_milli -= take.cpu_milli;
            eff.memory_mib -= take.memory_mib;
            match take.gpus {
                GpuTake::None => {}
                GpuTake::Whole { mask } => {
                    eff.whole_mask &= !mask;
                    for local in 0..GPUS_PER_NODE_MAX {
                        if mask & (1 << local) != 0 {
                            eff.free_milli[local] = 0;
                        }
                    }
                }
                GpuTake::Milli { local, milli } => {
                    eff.whole_mask &= !(1 << local);
                    eff.free_milli[local as usize] -= milli;
                }
                GpuTake::Mig {
                    local,
                    compute,
                    memory,
                } => {
                    let f = &mut eff.free_mig[local as usize];
                    f.0 -= compute;
                    f.1 -= memory;
                }
            }
        }
        eff
    }

    pub fn fits(&self, view: ClusterView<'_>, node: NodeId, take: &Take) -> bool {
        let eff = self.effective(view, node);
        if !eff.schedulable || eff.cpu_milli < take.cpu_milli || eff.memory_mib < take.memory_mib {
            return false;
        }
        match take.gpus {
            GpuTake::None => true,
            GpuTake::Whole { mask } => mask != 0 && mask & !eff.whole_mask == 0,
            GpuTake::Milli { local, milli } => {
                (local as usize) < GPUS_PER_NODE_MAX && eff.free_milli[local as usize] >= milli
            }
            GpuTake::Mig {
                local,
                compute,
                memory,
            } => {
                let f = eff.free_mig[local as usize];
                (local as usize) < GPUS_PER_NODE_MAX && f.0 >= compute && f.1 >= memory
            }
        }
    }
}

/// Which filter removed a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    Unschedulable,
    Model,
    Cpu,
    Memory,
    Gpu,
}

/// Bitmask of the node's GPUs whose model the job allows.
pub(crate) fn allowed_gpus(ctx: &Ctx<'_>, node: NodeId) -> u32 {
    let topology = ctx.view.topology;
    let spec = topology.node(node);
    let all = if spec.gpu_count() == 32 {
        u32::MAX
    } else {
        (1u32 << spec.gpu_count()) - 1
    };
    if ctx.model_mask == u64::MAX {
        return all;
    }
    if let Some(m) = spec.model {
        return if ctx.model_mask & (1 << m.idx()) != 0 {
            all
        } else {
            0
        };
    }
    let mut mask = 0;
    for g in spec.gpus.clone() {
        let gpu = topology.gpu(GpuId(g));
        if ctx.model_mask & (1 << gpu.model.idx()) != 0 {
            mask |= 1 << gpu.local;
        }
    }
    mask
}

/// The best slot for one member on `node` given the overlay, with its GPU-level score
/// (lower is better), or the filter that removes the node.
pub(crate) fn slot_on(
    ctx: &Ctx<'_>,
    overlay: &Overlay,
    node: NodeId,
    gpus: &GpuRequest,
) -> Result<(Take, u64), Removal> {
    slot_on_effective(ctx, &overlay.effective(ctx.view, node), node, gpus)
}

/// [`slot_on`] for a node whose free resources net of the overlay are `eff`.
pub(crate) fn slot_on_effective(
    ctx: &Ctx<'_>,
    eff: &Effective,
    node: NodeId,
    gpus: &GpuRequest,
) -> Result<(Take, u64), Removal> {
    if !eff.schedulable {
        return Err(Removal::Unschedulable);
    }
    let allowed = if *gpus == GpuRequest::None {
        0
    } else {
        allowed_gpus(ctx, node)
    };
    if *gpus != GpuRequest::None && allowed == 0 {
        let has_gpus = ctx.view.topology.node(node).gpu_count() > 0;
        return Err(if has_gpus && ctx.model_mask != u64::MAX {
            Removal::Model
        } else {
            Removal::Gpu
        });
    }
    let job = ctx.job;
    if eff.cpu_milli < job.cpu_milli {
        return Err(Removal::Cpu);
    }
    if eff.memory_mib < job.memory_mib {
        return Err(Removal::Memory);
    }
    let take = |gpus| Take {
        cpu_milli: job.cpu_milli,
        memory_mib: job.memory_mib,
        gpus,
    };
    match gpus {
        GpuRequest::None => Ok((take(GpuTake::None), 0)),
        GpuRequest::Whole(n) => {
            let usable = eff.whole_mask & allowed;
            if usable.count_ones() < *n {
                return Err(Removal::Gpu);
            }
            Ok((
                take(GpuTake::Whole {
                    mask: lowest_bits(usable, *n),
                }),
                0,
            ))
        }
        GpuRequest::Milli(m) => {
            // Tightest GPU that fits; partly used GPUs are always tighter than free ones.
            let mut best: Option<(u16, u8)> = None;
            for local in 0..ctx.view.topology.node(node).gpu_count() as u8 {
                if allowed & (1 << local) == 0 {
                    continue;
                }
                let free = eff.free_milli[local as usize];
                if free as u32 >= *m && best.is_none_or(|(f, _)| free < f) {
                    best = Some((free, local));
                }
            }
            let Some((free, local)) = best else {
                return Err(Removal::Gpu);
            };
            let milli = *m as u16;
            Ok((take(GpuTake::Milli { local, milli }), (free - milli) as u64))
        }
        GpuRequest::Mig(profile) => {
            let topology = ctx.view.topology;
            let mut best: Option<(u8, u8, u8, u8)> = None;
            for (local, g) in topology.node(node).gpus.clone().enumerate() {
                let gpu = topology.gpu(GpuId(g));
                if !gpu.mig || allowed & (1 << local) == 0 {
                    continue;
                }
                let model = topology.model(gpu.model);
                let Some(p) = model.mig_profiles.iter().find(|p| p.name == *profile) else {
                    continue;
                };
                let (fc, fm) = eff.free_mig[local];
                if fc >= p.compute_slices
                    && fm >= p.memory_slices
                    && best.is_none_or(|(c, _, _, _)| fc - p.compute_slices < c)
                {
                    best = Some((
                        fc - p.compute_slices,
                        local as u8,
                        p.compute_slices,
                        p.memory_slices,
                    ));
                }
            }
            let Some((left, local, compute, memory)) = best else {
                return Err(Removal::Gpu);
            };
            Ok((
                take(GpuTake::Mig {
                    local,
                    compute,
                    memory,
                }),
                left as u64,
            ))
        }
    }
}

fn lowest_bits(mask: u32, n: u32) -> u32 {
    let mut out = 0;
    let mut rest = mask;
    for _ in 0..n {
        let bit = rest & rest.wrapping_neg();
        out |= bit;
        rest &= !bit;
    }
    assert_eq!(out.count_ones(), n);
    out
}

/// A ledger index to draw candidates from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bucket {
    Whole(usize),
    Partial(usize),
    Mig,
}

/// Buckets in best-fit order for a request.
pub(crate) fn bucket_order(gpus: &GpuRequest) -> Vec<Bucket> {
    match gpus {
        GpuRequest::None => (0..=GPUS_PER_NODE_MAX).map(Bucket::Whole).collect(),
        GpuRequest::Whole(n) => (*n as usize..=GPUS_PER_NODE_MAX)
            .map(Bucket::Whole)
            .collect(),
        GpuRequest::Milli(m) => (*m as usize / 100..PARTIAL_BUCKETS)
            .map(Bucket::Partial)
            .chain((1..=GPUS_PER_NODE_MAX).map(Bucket::Whole))
            .collect(),
        GpuRequest::Mig(_) => vec![Bucket::Mig],
    }
}

/// `ranges` rotated to start at a seeded offset, so equal candidates share load.
pub(crate) fn rotate(ranges: &[Range<usize>], seed: u64) -> Vec<Range<usize>> {
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    if total == 0 {
        return Vec::new();
    }
    let offset = (tie(seed, 0x5EED) % total as u64) as usize;
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut pos = 0;
    for r in ranges {
        if pos + r.len() <= offset {
            before.push(r.clone());
        } else if pos >= offset {
            after.push(r.clone());
        } else {
            let split = r.start + (offset - pos);
            after.push(split..r.end);
            before.push(r.start..split);
        }
        pos += r.len();
    }
    after.extend(before);
    debug_assert_eq!(after.iter().map(|r| r.len()).sum::<usize>(), total);
    after
}

fn bucket_nodes<'v>(
    view: ClusterView<'v>,
    bucket: Bucket,
    range: Range<usize>,
) -> Box<dyn Iterator<Item = NodeId> + 'v> {
    match bucket {
        Bucket::Whole(k) => Box::new(view.ledger.nodes_with_whole_free(k, range)),
        Bucket::Partial(b) => Box::new(view.ledger.nodes_with_partial(b, range)),
        Bucket::Mig => Box::new(view.ledger.nodes_with_mig(range)),
    }
}

/// Records a removal in the explanation.
pub(crate) fn count_removal(ctx: &mut Ctx<'_>, removal: Removal) {
    let r = &mut ctx.explanation.removed;
    match removal {
        Removal::Unschedulable => r.unschedulable += 1,
        Removal::Model => r.model += 1,
        Removal::Cpu => r.cpu += 1,
        Removal::Memory => r.memory += 1,
        Removal::Gpu => r.gpu += 1,
    }
}

/// Finds the best node slot for one member within `ranges` (already rotated), skipping nodes
/// for which `skip` holds.
pub(crate) fn find_slot(
    ctx: &mut Ctx<'_>,
    overlay: &Overlay,
    ranges: &[Range<usize>],
    gpus: &GpuRequest,
    skip: &dyn Fn(NodeId) -> bool,
) -> Option<MemberSlot> {
    if ctx.policy.share.scores_nodes() && !matches!(gpus, GpuRequest::Mig(_)) {
        return super::score::find_scored_slot(ctx, overlay, ranges, gpus, skip);
    }
    let view = ctx.view;
    let limit = ctx.policy.candidate_limit.max(1);
    // (score, secondary, tie, slot)
    let mut best: Option<(i64, u64, u64, MemberSlot)> = None;
    for bucket in bucket_order(gpus) {
        let mut found = 0usize;
        'ranges: for range in ranges {
            for node in bucket_nodes(view, bucket, range.clone()) {
                if skip(node) {
                    continue;
                }
                ctx.explanation.nodes_evaluated += 1;
                match slot_on(ctx, overlay, node, gpus) {
                    Err(removal) => count_removal(ctx, removal),
                    Ok((take, gpu_score)) => {
                        found += 1;
                        let (score, secondary) = (gpu_score as i64, leaf_free(ctx, node));
                        let key = (score, secondary, tie(ctx.seed, node.0 as u64));
                        if best.as_ref().is_none_or(|b| key < (b.0, b.1, b.2)) {
                            best = Some((key.0, key.1, key.2, MemberSlot { node, take }));
                        }
                        if found >= limit {
                            break 'ranges;
                        }
                    }
                }
            }
        }
        if best.is_some() {
            break;
        }
    }
    best.map(|b| b.3)
}

/// Free whole GPUs in the node's leaf: lower packs into fuller leaves and keeps empty leaves
/// whole for gangs.
fn leaf_free(ctx: &Ctx<'_>, node: NodeId) -> u64 {
    let leaf = ctx.view.topology.subtree_of(Level::Leaf, node);
    ctx.view.ledger.free_whole_gpus(Level::Leaf, leaf)
}

/// A batch job: one member, anywhere eligible.
pub(crate) fn place_batch(
    ctx: &mut Ctx<'_>,
    gpus: &GpuRequest,
) -> Result<Vec<MemberSlot>, Unschedulable> {
    let ranges = rotate(&ctx.ranges, ctx.seed);
    let overlay = Overlay::default();
    match find_slot(ctx, &overlay, &ranges, gpus, &|_| false) {
        Some(slot) => {
            let name = &ctx.view.topology.node(slot.node).name;
            let step = match &ctx.policy.share {
                SharePolicy::BestFit => format!("best fit on node {name}"),
                share => format!("{} chose node {name}", share.name()),
            };
            ctx.explanation.steps.push(step);
            Ok(vec![slot])
        }
        None => Err(ctx.unschedulable(None)),
    }
}
