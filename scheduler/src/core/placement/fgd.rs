//! Fragmentation-aware packing of shared GPUs (FGD, Weng et al., USENIX ATC'23).
//!
//! A node's fragmentation against a target workload `M` is the GPU capacity that the
//! workload's typical tasks could not use, weighted by how common each task shape is:
//! `F_n(M) = Σ_m p_m · F_n(m)` where, for one shape `m`:
//! - a CPU-only shape counts all free GPU milli as fragment;
//! - a shape whose model list excludes the node counts all free GPU milli;
//! - if enough GPUs have `free ≥ milli_m` and the CPU fits, only GPUs too small for `m` count;
//! - otherwise all free GPU milli counts.
//!
//! FGD places a task where `F_n'(M) − F_n(M)` is smallest. Weights are integers (parts per
//! million) so scores are exact and platform-independent.

use sovra_fabric::topology::GPUS_PER_NODE_MAX;
use sovra_fabric::{GpuId, GpuTake, NodeId, Take};

use super::ClusterView;

/// One typical task shape and its weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadShape {
    /// CPU the task asks for.
    pub cpu_milli: u64,
    /// Milli-GPU per GPU (0 for CPU-only).
    pub gpu_milli: u32,
    /// GPUs (0 for CPU-only).
    pub gpu_count: u32,
    /// Allowed models as a bitmask over the topology's `ModelId`s; `u64::MAX` for any.
    pub model_mask: u64,
    /// Weight in parts per million.
    pub weight_ppm: u32,
}

/// The target workload `M`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetWorkload {
    /// Shapes and weights; weights need not sum to exactly one million.
    pub shapes: Vec<WorkloadShape>,
}

/// Fragmentation of a node state against `workload`, in milli-GPU × ppm.
pub fn node_frag(
    workload: &TargetWorkload,
    free_milli: &[u16],
    cpu_free: u64,
    model: Option<sovra_fabric::ModelId>,
) -> i64 {
    let total: u64 = free_milli.iter().map(|&f| f as u64).sum();
    let mut frag: i64 = 0;
    for shape in &workload.shapes {
        let excluded = model.is_some_and(|m| shape.model_mask & (1u64 << m.idx()) == 0);
        let f = if shape.gpu_milli == 0 || excluded {
            total
        } else {
            let fitting = free_milli
                .iter()
                .filter(|&&f| f as u32 >= shape.gpu_milli)
                .count();
            if fitting as u32 >= shape.gpu_count && cpu_free >= shape.cpu_milli {
                free_milli
                    .iter()
                    .filter(|&&f| (f as u32) < shape.gpu_milli)
                    .map(|&f| f as u64)
                    .sum()
            } else {
                total
            }
        };
        frag += f as i64 * shape.weight_ppm as i64;
    }
    frag
}

/// FGD score of taking `take` on `node`: the growth in fragmentation (lower is better).
pub fn score(view: ClusterView<'_>, workload: &TargetWorkload, node: NodeId, take: &Take) -> i64 {
    let topology = view.topology;
    let spec = topology.node(node);
    let mut free = [0u16; GPUS_PER_NODE_MAX];
    let n = spec.gpu_count() as usize;
    for (local, g) in spec.gpus.clone().enumerate() {
        if !topology.gpu(GpuId(g)).mig {
            free[local] = 1000 - view.ledger.gpu(GpuId(g)).used_milli;
        }
    }
    let cpu = view.ledger.node(node).cpu_milli;
    let before = node_frag(workload, &free[..n], cpu, spec.model);
    match take.gpus {
        GpuTake::None | GpuTake::Mig { .. } => {}
        GpuTake::Whole { mask } => {
            for (local, f) in free.iter_mut().enumerate().take(n) {
                if mask & (1 << local) != 0 {
                    *f = 0;
                }
            }
        }
        GpuTake::Milli { local, milli } => free[local as usize] -= milli,
    }
    let after = node_frag(
        workload,
        &free[..n],
        cpu - take.cpu_milli.min(cpu),
        spec.model,
    );
    after - before
}
