//! Free capacity, kept incrementally per node, per GPU and per subtree.
//!
//! The [`Ledger`] accounts resources, not jobs: it knows how much CPU, memory, whole GPUs,
//! milli-GPU and MIG slices are free, never who holds them. Every change goes through
//! [`Ledger::take`] / [`Ledger::give`], which update, in O(levels) time:
//! - per subtree (NVLink domain, leaf, spine, site) a histogram of schedulable nodes by their
//!   count of fully free GPUs, so "how many gang members of G GPUs could this leaf hold" is an
//!   O(GPUS_PER_NODE_MAX) question, and the free GPU and milli-GPU totals;
//! - bitsets of schedulable nodes by free-whole-GPU count and by partly-used-GPU free milli
//!   bucket, so best-fit candidates are found by scanning a few words, not every node.
//!
//! Invariant: the derived indexes always equal what a full recount gives
//! ([`Ledger::check_invariants`], used by tests).

use crate::bitset::Bitset;
use crate::ids::{GpuId, NodeId};
use crate::topology::{
    Level, Topology, GPUS_PER_NODE_MAX, MIG_COMPUTE_SLICES, MIG_MEMORY_SLICES, MILLI_PER_GPU,
};

/// Number of free-milli buckets for partly used GPUs (100 milli each).
pub const PARTIAL_BUCKETS: usize = 10;
const HIST_LEN: usize = GPUS_PER_NODE_MAX + 1;
const TREE_LEVELS: [Level; 4] = [Level::NvlDomain, Level::Leaf, Level::Spine, Level::Site];

/// Free resources of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFree {
    /// Free CPU.
    pub cpu_milli: u64,
    /// Free memory.
    pub memory_mib: u64,
    /// Bitmask (by local index) of non-MIG GPUs with nothing allocated.
    pub whole_mask: u32,
    /// Whether new work may be placed here (up and not drained).
    pub schedulable: bool,
}

impl NodeFree {
    /// Number of fully free non-MIG GPUs.
    #[inline]
    pub fn whole_free(&self) -> u32 {
        self.whole_mask.count_ones()
    }
}

/// Allocated state of one GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuUse {
    /// Milli-GPU allocated (non-MIG GPUs), 0..=1000.
    pub used_milli: u16,
    /// MIG compute slices allocated (MIG GPUs).
    pub mig_compute_used: u8,
    /// MIG memory slices allocated (MIG GPUs).
    pub mig_memory_used: u8,
}

/// The GPU part of a [`Take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuTake {
    /// No GPU.
    None,
    /// Whole GPUs, by local index bitmask.
    Whole {
        /// Bitmask of local GPU indices.
        mask: u32,
    },
    /// A share of one GPU.
    Milli {
        /// Local GPU index.
        local: u8,
        /// Milli-GPU, 1..1000.
        milli: u16,
    },
    /// A MIG instance on one MIG-mode GPU.
    Mig {
        /// Local GPU index.
        local: u8,
        /// Compute slices.
        compute: u8,
        /// Memory slices.
        memory: u8,
    },
}

/// The notation users see (`sovra place`, `sovra submit --wait`, `sovra jobs`): `none`,
/// whole GPUs as local indices `0,1`, a share as `0@300m`, a MIG instance as `0:mig(1c,1m)`.
impl std::fmt::Display for GpuTake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            GpuTake::None => f.write_str("none"),
            GpuTake::Whole { mask } => {
                let mut first = true;
                for i in (0..32).filter(|i| mask & (1u32 << i) != 0) {
                    if !first {
                        f.write_str(",")?;
                    }
                    first = false;
                    write!(f, "{i}")?;
                }
                Ok(())
            }
            GpuTake::Milli { local, milli } => write!(f, "{local}@{milli}m"),
            GpuTake::Mig {
                local,
                compute,
                memory,
            } => write!(f, "{local}:mig({compute}c,{memory}m)"),
        }
    }
}

/// Resources taken on one node by one allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Take {
    /// CPU.
    pub cpu_milli: u64,
    /// Memory.
    pub memory_mib: u64,
    /// GPUs.
    pub gpus: GpuTake,
}

/// Which resource is short when a [`Take`] does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shortfall {
    /// The node is down or drained.
    Unschedulable,
    /// Not enough CPU.
    Cpu,
    /// Not enough memory.
    Memory,
    /// The GPUs asked for are not free (or do not exist, or are in the wrong mode).
    Gpu,
}

impl Shortfall {
    /// Lower-case name for explanations.
    pub fn name(self) -> &'static str {
        match self {
            Shortfall::Unschedulable => "node unavailable",
            Shortfall::Cpu => "cpu",
            Shortfall::Memory => "memory",
            Shortfall::Gpu => "gpu",
        }
    }
}

/// Free capacity of a whole topology. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    nodes: Vec<NodeFree>,
    gpus: Vec<GpuUse>,
    /// `hist[level][subtree][k]`: schedulable nodes in the subtree with `k` whole free GPUs.
    hist: [Vec<[u32; HIST_LEN]>; 4],
    /// `free_milli[level][subtree]`: free milli-GPU on non-MIG GPUs of schedulable nodes.
    free_milli: [Vec<u64>; 4],
    /// `whole_buckets[k]`: schedulable nodes with exactly `k` whole free GPUs.
    whole_buckets: Vec<Bitset>,
    /// `partial_buckets[b]`: schedulable nodes having a partly used GPU whose free milli is in
    /// bucket `b` (`free / 100`).
    partial_buckets: Vec<Bitset>,
    /// Per node, how many of its partly used GPUs fall in each bucket.
    partial_counts: Vec<[u8; PARTIAL_BUCKETS]>,
    /// Schedulable nodes with a MIG GPU that has a free compute and memory slice.
    mig_nodes: Bitset,
    /// Per node, live allocations by GPU shape (see [`AllocShapes`]).
    shapes: Vec<AllocShapes>,
}

/// Live allocations on one node by GPU shape: how many shares of one GPU, and how many
/// allocations of `k` whole GPUs for each `k`. Counted by [`Ledger::take`] and
/// [`Ledger::give`]; placement policies that group jobs by shape (GPU clustering) read it.
/// Not derivable from free capacity, so a recount copies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocShapes {
    /// Allocations of a share (milli-GPU) of one GPU.
    pub share: u16,
    /// `whole[k - 1]`: allocations of exactly `k` whole GPUs. At most one per GPU, so a `u8`
    /// holds it.
    pub whole: [u8; GPUS_PER_NODE_MAX],
}

impl AllocShapes {
    /// Number of distinct GPU shapes present (CPU-only and MIG allocations do not count).
    pub fn distinct(&self) -> u32 {
        (self.share > 0) as u32 + self.whole.iter().filter(|&&c| c > 0).count() as u32
    }

    fn count(&mut self, gpus: &GpuTake, add: bool) {
        match *gpus {
            GpuTake::None | GpuTake::Mig { .. } => {}
            GpuTake::Milli { .. } => {
                assert!(
                    add || self.share > 0,
                    "give of a gpu share that was never taken"
                );
                self.share = if add { self.share + 1 } else { self.share - 1 };
            }
            GpuTake::Whole { mask } => {
                let c = &mut self.whole[mask.count_ones() as usize - 1];
                assert!(
                    add || *c > 0,
                    "give of a whole-gpu shape that was never taken"
                );
                *c = if add { *c + 1 } else { *c - 1 };
            }
        }
    }
}

fn level_slot(level: Level) -> usize {
    match level {
        Level::NvlDomain => 0,
        Level::Leaf => 1,
        Level::Spine => 2,
        Level::Site => 3,
        Level::Node => unreachable!("no per-node histogram"),
    }
}

impl Ledger {
    /// A ledger with everything free and every node schedulable.
    pub fn new(topology: &Topology) -> Ledger {
        let n = topology.nodes().len();
        let mut ledger = Ledger {
            nodes: Vec::with_capacity(n),
            gpus: vec![GpuUse::default(); topology.gpu_count()],
            hist: TREE_LEVELS.map(|l| vec![[0u32; HIST_LEN]; topology.subtree_count(l)]),
            free_milli: TREE_LEVELS.map(|l| vec![0u64; topology.subtree_count(l)]),
            whole_buckets: (0..HIST_LEN).map(|_| Bitset::new(n)).collect(),
            partial_buckets: (0..PARTIAL_BUCKETS).map(|_| Bitset::new(n)).collect(),
            partial_counts: vec![[0u8; PARTIAL_BUCKETS]; n],
            mig_nodes: Bitset::new(n),
            shapes: vec![AllocShapes::default(); n],
        };
        for (i, node) in topology.nodes().iter().enumerate() {
            let mut whole_mask = 0u32;
            for g in node.gpus.clone() {
                let gpu = topology.gpu(GpuId(g));
                if !gpu.mig {
                    whole_mask |= 1 << gpu.local;
                }
            }
            ledger.nodes.push(NodeFree {
                cpu_milli: node.cpu_milli,
                memory_mib: node.memory_mib,
                whole_mask,
                schedulable: false,
            });
            ledger.set_schedulable(topology, NodeId::from_idx(i), true);
        }
        ledger
    }

    /// Free state of a node.
    #[inline]
    pub fn node(&self, node: NodeId) -> &NodeFree {
        &self.nodes[node.idx()]
    }

    /// Live allocations on a node by GPU shape.
    #[inline]
    pub fn shapes(&self, node: NodeId) -> &AllocShapes {
        &self.shapes[node.idx()]
    }

    /// Allocated state of a GPU.
    #[inline]
    pub fn gpu(&self, gpu: GpuId) -> GpuUse {
        self.gpus[gpu.idx()]
    }

    /// Free milli-GPU of a non-MIG GPU (0 for MIG GPUs).
    #[inline]
    pub fn gpu_free_milli(&self, topology: &Topology, gpu: GpuId) -> u32 {
        if topology.gpu(gpu).mig {
            0
        } else {
            MILLI_PER_GPU - self.gpus[gpu.idx()].used_milli as u32
        }
    }

    /// Schedulable nodes with exactly `k` whole free GPUs, within `nodes`.
    pub fn nodes_with_whole_free(
        &self,
        k: usize,
        nodes: std::ops::Range<usize>,
    ) -> impl Iterator<Item = NodeId> + '_ {
        self.whole_buckets[k]
            .iter_range(nodes.start, nodes.end)
            .map(NodeId::from_idx)
    }

    /// Schedulable nodes with a partly used GPU whose free milli is in `bucket`, within `nodes`.
    pub fn nodes_with_partial(
        &self,
        bucket: usize,
        nodes: std::ops::Range<usize>,
    ) -> impl Iterator<Item = NodeId> + '_ {
        self.partial_buckets[bucket]
            .iter_range(nodes.start, nodes.end)
            .map(NodeId::from_idx)
    }

    /// Schedulable nodes with MIG capacity left, within `nodes`.
    pub fn nodes_with_mig(
        &self,
        nodes: std::ops::Range<usize>,
    ) -> impl Iterator<Item = NodeId> + '_ {
        self.mig_nodes
            .iter_range(nodes.start, nodes.end)
            .map(NodeId::from_idx)
    }

    /// Histogram of schedulable nodes by whole free GPUs in subtree `idx` at `level`.
    #[inline]
    pub fn histogram(&self, level: Level, idx: usize) -> &[u32; HIST_LEN] {
        &self.hist[level_slot(level)][idx]
    }

    /// Upper bound on how many members of `gpus_per_member` whole GPUs the subtree can hold
    /// (CPU and memory not considered).
    pub fn members_fit(&self, level: Level, idx: usize, gpus_per_member: u32) -> u64 {
        assert!(gpus_per_member >= 1);
        let h = self.histogram(level, idx);
        let g = gpus_per_member as usize;
        (g..HIST_LEN).map(|k| h[k] as u64 * (k / g) as u64).sum()
    }

    /// Whole free GPUs on schedulable nodes of the subtree.
    pub fn free_whole_gpus(&self, level: Level, idx: usize) -> u64 {
        self.histogram(level, idx)
            .iter()
            .enumerate()
            .map(|(k, &c)| k as u64 * c as u64)
            .sum()
    }

    /// Free milli-GPU on non-MIG GPUs of schedulable nodes of the subtree.
    pub fn free_milli(&self, level: Level, idx: usize) -> u64 {
        self.free_milli[level_slot(level)][idx]
    }

    /// Whether `take` fits on `node` now.
    pub fn check(&self, topology: &Topology, node: NodeId, take: &Take) -> Result<(), Shortfall> {
        let free = &self.nodes[node.idx()];
        if !free.schedulable {
            return Err(Shortfall::Unschedulable);
        }
        self.check_resources(topology, node, take)
    }

    fn check_resources(
        &self,
        topology: &Topology,
        node: NodeId,
        take: &Take,
    ) -> Result<(), Shortfall> {
        let free = &self.nodes[node.idx()];
        if free.cpu_milli < take.cpu_milli {
            return Err(Shortfall::Cpu);
        }
        if free.memory_mib < take.memory_mib {
            return Err(Shortfall::Memory);
        }
        let n_gpus = topology.node(node).gpu_count();
        match take.gpus {
            GpuTake::None => Ok(()),
            GpuTake::Whole { mask } => {
                let all = if n_gpus == 32 {
                    u32::MAX
                } else {
                    (1u32 << n_gpus) - 1
                };
                if mask == 0 || mask & !all != 0 || mask & !free.whole_mask != 0 {
                    return Err(Shortfall::Gpu);
                }
                Ok(())
            }
            GpuTake::Milli { local, milli } => {
                if local as u32 >= n_gpus || milli == 0 || milli as u32 >= MILLI_PER_GPU {
                    return Err(Shortfall::Gpu);
                }
                let gpu = topology.node_gpu(node, local);
                if topology.gpu(gpu).mig {
                    return Err(Shortfall::Gpu);
                }
                let used = self.gpus[gpu.idx()].used_milli;
                if used as u32 + milli as u32 > MILLI_PER_GPU {
                    return Err(Shortfall::Gpu);
                }
                Ok(())
            }
            GpuTake::Mig {
                local,
                compute,
                memory,
            } => {
                if local as u32 >= n_gpus || compute == 0 || memory == 0 {
                    return Err(Shortfall::Gpu);
                }
                let gpu = topology.node_gpu(node, local);
                if !topology.gpu(gpu).mig {
                    return Err(Shortfall::Gpu);
                }
                let used = self.gpus[gpu.idx()];
                if used.mig_compute_used + compute > MIG_COMPUTE_SLICES
                    || used.mig_memory_used + memory > MIG_MEMORY_SLICES
                {
                    return Err(Shortfall::Gpu);
                }
                Ok(())
            }
        }
    }

    /// Takes resources. Panics (a bug) when they do not fit: callers [`Ledger::check`] first.
    /// Schedulability is the caller's concern (allocations on a drained node are recounted).
    pub fn take(&mut self, topology: &Topology, node: NodeId, take: &Take) {
        let fits = self.check_resources(topology, node, take);
        assert_eq!(fits, Ok(()), "take on {node:?}: {take:?}");
        let before = self.snapshot_node(topology, node);
        let free = &mut self.nodes[node.idx()];
        free.cpu_milli -= take.cpu_milli;
        free.memory_mib -= take.memory_mib;
        match take.gpus {
            GpuTake::None => {}
            GpuTake::Whole { mask } => {
                free.whole_mask &= !mask;
                for local in 0..GPUS_PER_NODE_MAX as u8 {
                    if mask & (1 << local) != 0 {
                        let gpu = topology.node_gpu(node, local);
                        self.gpus[gpu.idx()].used_milli = MILLI_PER_GPU as u16;
                    }
                }
            }
            GpuTake::Milli { local, milli } => {
                let gpu = topology.node_gpu(node, local);
                let used = &mut self.gpus[gpu.idx()].used_milli;
                *used += milli;
                free.whole_mask &= !(1 << local);
            }
            GpuTake::Mig {
                local,
                compute,
                memory,
            } => {
                let gpu = topology.node_gpu(node, local);
                let used = &mut self.gpus[gpu.idx()];
                used.mig_compute_used += compute;
                used.mig_memory_used += memory;
            }
        }
        self.shapes[node.idx()].count(&take.gpus, true);
        self.reindex_node(topology, node, before);
    }

    /// Returns resources taken earlier. Works on unschedulable nodes too.
    pub fn give(&mut self, topology: &Topology, node: NodeId, take: &Take) {
        let before = self.snapshot_node(topology, node);
        let spec = topology.node(node);
        let free = &mut self.nodes[node.idx()];
        free.cpu_milli += take.cpu_milli;
        free.memory_mib += take.memory_mib;
        assert!(
            free.cpu_milli <= spec.cpu_milli,
            "give on {node:?}: cpu over capacity"
        );
        assert!(
            free.memory_mib <= spec.memory_mib,
            "give on {node:?}: memory over capacity"
        );
        match take.gpus {
            GpuTake::None => {}
            GpuTake::Whole { mask } => {
                assert_eq!(
                    free.whole_mask & mask,
                    0,
                    "give on {node:?}: gpus already free"
                );
                for local in 0..GPUS_PER_NODE_MAX as u8 {
                    if mask & (1 << local) != 0 {
                        let gpu = topology.node_gpu(node, local);
                        assert!(!topology.gpu(gpu).mig);
                        assert_eq!(self.gpus[gpu.idx()].used_milli, MILLI_PER_GPU as u16);
                        self.gpus[gpu.idx()].used_milli = 0;
                    }
                }
                free.whole_mask |= mask;
            }
            GpuTake::Milli { local, milli } => {
                let gpu = topology.node_gpu(node, local);
                let used = &mut self.gpus[gpu.idx()].used_milli;
                assert!(*used >= milli, "give on {node:?}: milli underflow");
                *used -= milli;
                if *used == 0 {
                    free.whole_mask |= 1 << local;
                }
            }
            GpuTake::Mig {
                local,
                compute,
                memory,
            } => {
                let gpu = topology.node_gpu(node, local);
                let used = &mut self.gpus[gpu.idx()];
                assert!(used.mig_compute_used >= compute && used.mig_memory_used >= memory);
                used.mig_compute_used -= compute;
                used.mig_memory_used -= memory;
            }
        }
        self.shapes[node.idx()].count(&take.gpus, false);
        self.reindex_node(topology, node, before);
    }

    /// Marks a node schedulable (up, not drained) or not. Allocations on it are kept.
    pub fn set_schedulable(&mut self, topology: &Topology, node: NodeId, schedulable: bool) {
        let before = self.snapshot_node(topology, node);
        self.nodes[node.idx()].schedulable = schedulable;
        self.reindex_node(topology, node, before);
    }

    /// The index-relevant facts of a node, as counted into the derived indexes.
    fn snapshot_node(&self, topology: &Topology, node: NodeId) -> IndexFacts {
        let free = &self.nodes[node.idx()];
        let mut facts = IndexFacts {
            schedulable: free.schedulable,
            whole: free.whole_free() as usize,
            free_milli: 0,
            partial: [0; PARTIAL_BUCKETS],
            mig: false,
        };
        for g in topology.node(node).gpus.clone() {
            let gpu = GpuId(g);
            let used = self.gpus[g as usize];
            if topology.gpu(gpu).mig {
                if used.mig_compute_used < MIG_COMPUTE_SLICES
                    && used.mig_memory_used < MIG_MEMORY_SLICES
                {
                    facts.mig = true;
                }
            } else {
                let free_milli = MILLI_PER_GPU - used.used_milli as u32;
                facts.free_milli += free_milli as u64;
                if used.used_milli > 0 && free_milli > 0 {
                    facts.partial[(free_milli / 100) as usize] += 1;
                }
            }
        }
        facts
    }

    fn reindex_node(&mut self, topology: &Topology, node: NodeId, before: IndexFacts) {
        let after = self.snapshot_node(topology, node);
        let i = node.idx();
        if before.schedulable {
            self.whole_buckets[before.whole].set(i, false);
            for (b, &c) in before.partial.iter().enumerate() {
                if c > 0 {
                    self.partial_buckets[b].set(i, false);
                }
            }
            self.mig_nodes.set(i, false);
        }
        if after.schedulable {
            self.whole_buckets[after.whole].set(i, true);
            for (b, &c) in after.partial.iter().enumerate() {
                if c > 0 {
                    self.partial_buckets[b].set(i, true);
                }
            }
            self.mig_nodes.set(i, after.mig);
        }
        self.partial_counts[i] = after.partial;
        for level in TREE_LEVELS {
            let slot = level_slot(level);
            let subtree = topology.subtree_of(level, node);
            if before.schedulable {
                self.hist[slot][subtree][before.whole] -= 1;
                self.free_milli[slot][subtree] -= before.free_milli;
            }
            if after.schedulable {
                self.hist[slot][subtree][after.whole] += 1;
                self.free_milli[slot][subtree] += after.free_milli;
            }
        }
    }

    /// Recounts every derived index from scratch and asserts it matches. O(cluster); for tests
    /// and debug checks only.
    pub fn check_invariants(&self, topology: &Topology) {
        let mut fresh = Ledger::new(topology);
        for (i, free) in self.nodes.iter().enumerate() {
            fresh.nodes[i] = free.clone();
        }
        fresh.gpus = self.gpus.clone();
        fresh.shapes = self.shapes.clone();
        for level in TREE_LEVELS {
            let slot = level_slot(level);
            for h in &mut fresh.hist[slot] {
                *h = [0; HIST_LEN];
            }
            for m in &mut fresh.free_milli[slot] {
                *m = 0;
            }
        }
        for b in fresh
            .whole_buckets
            .iter_mut()
            .chain(fresh.partial_buckets.iter_mut())
        {
            *b = Bitset::new(topology.nodes().len());
        }
        fresh.mig_nodes = Bitset::new(topology.nodes().len());
        let empty = IndexFacts {
            schedulable: false,
            whole: 0,
            free_milli: 0,
            partial: [0; PARTIAL_BUCKETS],
            mig: false,
        };
        for i in 0..topology.nodes().len() {
            fresh.reindex_node(topology, NodeId::from_idx(i), empty.clone());
        }
        for (i, n) in topology.nodes().iter().enumerate() {
            let free = &self.nodes[i];
            assert!(free.cpu_milli <= n.cpu_milli);
            assert!(free.memory_mib <= n.memory_mib);
            for g in n.gpus.clone() {
                let used = self.gpus[g as usize];
                assert!(used.used_milli as u32 <= MILLI_PER_GPU);
                let local = topology.gpu(GpuId(g)).local;
                let whole = free.whole_mask & (1 << local) != 0;
                assert_eq!(whole, !topology.gpu(GpuId(g)).mig && used.used_milli == 0);
            }
        }
        assert!(fresh == *self, "ledger indexes drifted from a full recount");
    }
}

#[derive(Clone)]
struct IndexFacts {
    schedulable: bool,
    whole: usize,
    free_milli: u64,
    partial: [u8; PARTIAL_BUCKETS],
    mig: bool,
}
