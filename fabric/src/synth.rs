//! Synthetic inventories and occupancy, for benchmarks and the simulator.
//!
//! [`generate`] turns a [`SynthConfig`] (a regular site → spine → leaf → node shape) into a
//! [`TopologyDesc`]; [`SynthConfig::four_sites`] is the standard benchmark inventory: four
//! sovereign sites in four jurisdictions. [`fill`] then brings an empty [`Ledger`] to a target
//! GPU occupancy the way a long-running cluster looks: skewed across spines and leaves the way
//! a packing, topology-aware scheduler leaves it (most subtrees fuller than the average, a few
//! mostly free), with whole-node jobs, small jobs scattered over shared nodes, fractional GPU
//! shares, and CPU or memory sometimes running out before the GPUs do.
//!
//! Everything here is deterministic: names and shapes depend only on the config, and all
//! randomness comes from a [`SplitMix64`] seeded by the caller.

use std::ops::Range;

use crate::ids::{GpuId, NodeId};
use crate::ledger::{GpuTake, GpuUse, Ledger, Take};
use crate::topology::{
    standard_mig_profiles, GpuDesc, GpuModelDesc, Level, NicDesc, NodeDesc, SiteDesc, SiteFabric,
    SiteLinkDesc, Topology, TopologyDesc, GPUS_PER_NODE_MAX, MIG_COMPUTE_SLICES, MILLI_PER_GPU,
};

// ---------------------------------------------------------------------------------------------
// Randomness.

/// The crate's deterministic RNG: splitmix64 (Steele, Lea and Flood, 2014).
///
/// Small, fast, and good enough for synthetic data; every stream is a pure function of its seed,
/// on every platform. It is not for cryptography. (The scheduler core owns its own RNG.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is determined by `seed` alone.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..n`, without modulo bias (Lemire's multiply-shift with rejection).
    /// `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no values");
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        if (product as u64) < n {
            // 2^64 mod n: the low words below it belong to an incomplete last stripe.
            let threshold = n.wrapping_neg() % n;
            while (product as u64) < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (product >> 64) as u64
    }

    /// True with probability `p_num / p_den` (exactly, for any `p_den > 0`).
    pub fn chance(&mut self, p_num: u64, p_den: u64) -> bool {
        assert!(p_den > 0, "chance with a zero denominator");
        assert!(p_num <= p_den, "chance {p_num}/{p_den} is above 1");
        self.below(p_den) < p_num
    }

    /// A uniform value in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "between({lo}, {hi}) is empty");
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A uniform value in `[0, 1)`, on the 2^-53 grid.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `items` uniformly (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inventories.

/// One site of a synthetic inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthSite {
    /// Site name, also the node-name prefix (`syd1`).
    pub name: String,
    /// Jurisdiction code (`AU`).
    pub jurisdiction: String,
    /// Region label (`ap-southeast-2`).
    pub region: String,
}

/// The shape of a synthetic inventory: every site has the same regular tree of spines, leaves
/// and identical nodes. See [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Sites, in order.
    pub sites: Vec<SynthSite>,
    /// Inter-site RTT and bandwidth; every pair of sites needs an entry.
    pub site_links: Vec<SiteLinkDesc>,
    /// Intra-site latencies, the same at every site.
    pub site_fabric: SiteFabric,
    /// Spines per site.
    pub spines_per_site: usize,
    /// Leaves per spine.
    pub leaves_per_spine: usize,
    /// Nodes per leaf.
    pub nodes_per_leaf: usize,
    /// GPUs per node (at most [`GPUS_PER_NODE_MAX`]).
    pub gpus_per_node: usize,
    /// The one GPU model every node has.
    pub gpu_model: GpuModelDesc,
    /// CPU per node.
    pub cpu_milli_per_node: u64,
    /// Memory per node.
    pub memory_mib_per_node: u64,
    /// Line rate of each NIC.
    pub nic_gbit_per_s: u32,
    /// NICs per node (`mlx5_0`, `mlx5_1`, …).
    pub nics_per_node: usize,
    /// Fraction of each site's leaves whose GPUs are all in MIG mode, spread evenly over the
    /// site (0 by default). Needs a MIG-capable model.
    pub mig_leaf_fraction: f64,
    /// When at least 2: the first leaf of every site groups its nodes into multi-node NVLink
    /// domains of this many nodes (NVL72-style: 9 nodes of 8 GPUs), and nodes left over at the
    /// end of that leaf stay single-node domains. 0 (the default) leaves every node its own
    /// domain.
    pub nvl_domain_nodes: usize,
}

/// Sites in [`SynthConfig::four_sites`].
const FOUR_SITES_SITES: usize = 4;
/// Spines per site in [`SynthConfig::four_sites`].
const FOUR_SITES_SPINES_PER_SITE: usize = 2;
/// Nodes per leaf (one rack) in [`SynthConfig::four_sites`] at 256 nodes or more.
const FOUR_SITES_NODES_PER_LEAF: usize = 32;
/// Nodes in one leaf at every spine of every site: `four_sites` grows in steps of this.
const FOUR_SITES_LEAF_ROUND: usize =
    FOUR_SITES_SITES * FOUR_SITES_SPINES_PER_SITE * FOUR_SITES_NODES_PER_LEAF;
/// Below one leaf round, `four_sites` gives every spine this many (smaller) leaves.
const FOUR_SITES_SMALL_LEAVES_PER_SPINE: usize = 2;
const FOUR_SITES_SMALL_ROUND: usize =
    FOUR_SITES_SITES * FOUR_SITES_SPINES_PER_SITE * FOUR_SITES_SMALL_LEAVES_PER_SPINE;
const _: () = assert!(FOUR_SITES_LEAF_ROUND == 256);
const _: () = assert!(FOUR_SITES_LEAF_ROUND % FOUR_SITES_SMALL_ROUND == 0);

impl SynthConfig {
    /// The standard benchmark inventory: `syd1` (AU), `tok1` (JP), `sin1` (SG) and `kul1` (MY),
    /// 2 spines per site, DGX-H100-class nodes (8 × H100 80 GB with NVLink and MIG, 224 CPUs,
    /// 2 TiB, 8 × 400 Gbit/s NICs), and measured-looking RTTs between the sites at 100 Gbit/s.
    ///
    /// `nodes_total` is split evenly over the 4 sites × 2 spines. From 256 nodes up it must be a
    /// multiple of 256, and each spine gets `nodes_total / 256` leaves of 32 nodes:
    /// `four_sites(4096)` is 4 × 1,024 nodes, 32,768 GPUs, 8 spines and 128 leaves. Below 256 it
    /// must be a multiple of 16, and each spine gets 2 leaves of `nodes_total / 16` nodes.
    /// Any other size is a bug in the caller and panics.
    pub fn four_sites(nodes_total: usize) -> SynthConfig {
        let (leaves_per_spine, nodes_per_leaf) = if nodes_total >= FOUR_SITES_LEAF_ROUND {
            assert!(
                nodes_total % FOUR_SITES_LEAF_ROUND == 0,
                "four_sites({nodes_total}): from 256 nodes up, use a multiple of 256"
            );
            (
                nodes_total / FOUR_SITES_LEAF_ROUND,
                FOUR_SITES_NODES_PER_LEAF,
            )
        } else {
            assert!(
                nodes_total > 0 && nodes_total % FOUR_SITES_SMALL_ROUND == 0,
                "four_sites({nodes_total}): below 256 nodes, use a positive multiple of 16"
            );
            (
                FOUR_SITES_SMALL_LEAVES_PER_SPINE,
                nodes_total / FOUR_SITES_SMALL_ROUND,
            )
        };
        let site = |name: &str, jurisdiction: &str, region: &str| SynthSite {
            name: name.to_string(),
            jurisdiction: jurisdiction.to_string(),
            region: region.to_string(),
        };
        let link = |a: &str, b: &str, rtt_ms: u64| SiteLinkDesc {
            a: a.to_string(),
            b: b.to_string(),
            rtt_ns: rtt_ms * 1_000_000,
            gbit_per_s: 100,
        };
        let config = SynthConfig {
            sites: vec![
                site("syd1", "AU", "ap-southeast-2"),
                site("tok1", "JP", "ap-northeast-1"),
                site("sin1", "SG", "ap-southeast-1"),
                site("kul1", "MY", "ap-southeast-5"),
            ],
            site_links: vec![
                link("syd1", "tok1", 110),
                link("syd1", "sin1", 92),
                link("syd1", "kul1", 95),
                link("tok1", "sin1", 70),
                link("tok1", "kul1", 75),
                link("sin1", "kul1", 8),
            ],
            site_fabric: SiteFabric::default(),
            spines_per_site: FOUR_SITES_SPINES_PER_SITE,
            leaves_per_spine,
            nodes_per_leaf,
            gpus_per_node: 8,
            gpu_model: GpuModelDesc {
                name: "H100".to_string(),
                memory_mib: 80 * 1024,
                nvlink_gbit_per_s: 7_200,
                mig_profiles: standard_mig_profiles(80),
            },
            cpu_milli_per_node: 224_000,
            memory_mib_per_node: 2 * 1024 * 1024,
            nic_gbit_per_s: 400,
            nics_per_node: 8,
            mig_leaf_fraction: 0.0,
            nvl_domain_nodes: 0,
        };
        assert_eq!(config.nodes_total(), nodes_total);
        config
    }

    /// Nodes the inventory will have.
    pub fn nodes_total(&self) -> usize {
        self.sites.len() * self.spines_per_site * self.leaves_per_spine * self.nodes_per_leaf
    }

    /// GPUs the inventory will have.
    pub fn gpus_total(&self) -> usize {
        self.nodes_total() * self.gpus_per_node
    }
}

impl Default for SynthConfig {
    /// [`SynthConfig::four_sites`] at its benchmark size, 4,096 nodes.
    fn default() -> SynthConfig {
        SynthConfig::four_sites(4096)
    }
}

/// Builds the description of a synthetic inventory, in tree order (so the node at position `i`
/// becomes `NodeId(i)`).
///
/// Names are stable and zero-padded: spine `s0`, leaf `s0-l03` (leaves numbered within their
/// spine), node `syd1-s0-l03-n017` (nodes numbered within their leaf), multi-node NVLink domain
/// `s0-l00-nvl0`. A config that cannot describe a valid topology (no sites, a zero-sized level,
/// too many GPUs per node, MIG leaves on a model without MIG) is a bug and panics; the result of
/// a sane config always passes [`Topology::build`] when `site_links` covers every pair.
pub fn generate(cfg: &SynthConfig) -> TopologyDesc {
    assert!(!cfg.sites.is_empty(), "synthetic inventory without sites");
    assert!(cfg.spines_per_site > 0, "spines_per_site is 0");
    assert!(cfg.leaves_per_spine > 0, "leaves_per_spine is 0");
    assert!(cfg.nodes_per_leaf > 0, "nodes_per_leaf is 0");
    assert!(
        cfg.gpus_per_node <= GPUS_PER_NODE_MAX,
        "gpus_per_node above {GPUS_PER_NODE_MAX}"
    );
    assert!(
        (0.0..=1.0).contains(&cfg.mig_leaf_fraction),
        "mig_leaf_fraction outside 0..=1"
    );
    let leaves_per_site = cfg.spines_per_site * cfg.leaves_per_spine;
    let mig_leaves = (cfg.mig_leaf_fraction * leaves_per_site as f64).round() as usize;
    assert!(
        mig_leaves == 0 || cfg.gpus_per_node == 0 || !cfg.gpu_model.mig_profiles.is_empty(),
        "mig leaves on gpu model {:?} without mig profiles",
        cfg.gpu_model.name
    );

    let spine_width = decimal_digits(cfg.spines_per_site - 1).max(1);
    let leaf_width = decimal_digits(cfg.leaves_per_spine - 1).max(2);
    let node_width = decimal_digits(cfg.nodes_per_leaf - 1).max(3);
    let domain_nodes = cfg.nvl_domain_nodes;
    let nics: Vec<NicDesc> = (0..cfg.nics_per_node)
        .map(|i| NicDesc {
            name: format!("mlx5_{i}"),
            gbit_per_s: cfg.nic_gbit_per_s,
        })
        .collect();

    let mut nodes = Vec::with_capacity(cfg.nodes_total());
    for site in &cfg.sites {
        for spine in 0..cfg.spines_per_site {
            let spine_name = format!("s{spine:0spine_width$}");
            for leaf in 0..cfg.leaves_per_spine {
                let leaf_in_site = spine * cfg.leaves_per_spine + leaf;
                let leaf_name = format!("{spine_name}-l{leaf:0leaf_width$}");
                let mig = spread_pick(leaf_in_site, mig_leaves, leaves_per_site);
                let gpus = vec![
                    GpuDesc {
                        model: cfg.gpu_model.name.clone(),
                        mig
                    };
                    cfg.gpus_per_node
                ];
                let multi_node = domain_nodes >= 2 && leaf_in_site == 0;
                for node in 0..cfg.nodes_per_leaf {
                    let domain = node / domain_nodes.max(1);
                    let nvlink_domain = (multi_node
                        && (domain + 1) * domain_nodes <= cfg.nodes_per_leaf)
                        .then(|| format!("{leaf_name}-nvl{domain}"));
                    nodes.push(NodeDesc {
                        name: format!("{}-{leaf_name}-n{node:0node_width$}", site.name),
                        site: site.name.clone(),
                        spine: spine_name.clone(),
                        leaf: leaf_name.clone(),
                        nvlink_domain,
                        cpu_milli: cfg.cpu_milli_per_node,
                        memory_mib: cfg.memory_mib_per_node,
                        gpus: gpus.clone(),
                        nics: nics.clone(),
                    });
                }
            }
        }
    }
    assert_eq!(nodes.len(), cfg.nodes_total());
    TopologyDesc {
        models: vec![cfg.gpu_model.clone()],
        sites: cfg
            .sites
            .iter()
            .map(|s| SiteDesc {
                name: s.name.clone(),
                jurisdiction: s.jurisdiction.clone(),
                region: s.region.clone(),
                fabric: cfg.site_fabric,
            })
            .collect(),
        nodes,
        site_links: cfg.site_links.clone(),
    }
}

/// Digits of `n` in decimal.
fn decimal_digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Whether item `i` of `total` is one of `picked` items spread evenly over them.
fn spread_pick(i: usize, picked: usize, total: usize) -> bool {
    assert!(i < total);
    assert!(picked <= total);
    (i + 1) * picked / total > i * picked / total
}

// ---------------------------------------------------------------------------------------------
// Occupancy.

/// How [`fill`] occupies a cluster.
///
/// Every site gets the target occupancy. Within a site the spines, and within a spine the
/// leaves, get skewed occupancies: the children of a parent are ranked in random order, and
/// the child at rank quantile `q` (in `0..1`, fullest first) gets the offset
/// `skew × (1 − (t + 1) × q^t)` from its parent's occupancy, where `t` is [`skew_tail`]. The
/// offsets average 0 and run from `+skew` for the fullest child down to `−t × skew` for the
/// emptiest; they are then shifted together, and clamped to 0..=1 (no spine above 0.98 unless
/// its site needs it), so that the children hold exactly the parent's share. With `t = 1` the
/// spread is uniform within `± skew`; with the default `t = 3` most children sit a little above
/// the mean and a few far below it. That is what best-fit, topology-aware placement (Slurm's
/// `topology/tree`, sovra's rankers) leaves behind on a busy cluster: jobs pile onto the
/// fullest subtree that takes them, so at 0.9 occupancy many leaves are full, the others are
/// fragmented, and every site still has a spine with a few mostly free leaves, where large
/// gangs fit.
///
/// [`skew_tail`]: FillConfig::skew_tail
#[derive(Clone, Debug, PartialEq)]
pub struct FillConfig {
    /// Target fraction of all GPUs that are allocated (anything taken on them: whole, a
    /// fractional share, or a MIG instance), 0..=1. [`fill`] hits it to the GPU (rounded) unless
    /// nodes are unschedulable.
    pub occupancy: f64,
    /// How far above its site's occupancy the fullest spine of the site is drawn, 0..=1.
    pub spine_skew: f64,
    /// How far above its spine's occupancy the fullest leaf of the spine is drawn, 0..=1.
    pub leaf_skew: f64,
    /// The exponent `t` of the skew's shape, 1..=[`SKEW_TAIL_MAX`]: the emptiest child of a
    /// parent is drawn `t` times as far below the parent's occupancy as the fullest is above
    /// it. 1 is a uniform spread.
    pub skew_tail: u32,
    /// Fraction of a leaf's allocated GPUs that go to whole-node jobs.
    pub whole_node_share: f64,
    /// Fraction of a leaf's allocated GPUs that are only partly used (one or two fractional
    /// shares of 100..=900 milli-GPU in all).
    pub fractional_share: f64,
}

impl Default for FillConfig {
    fn default() -> FillConfig {
        FillConfig {
            occupancy: 0.5,
            spine_skew: 0.2,
            leaf_skew: 0.4,
            skew_tail: 3,
            whole_node_share: 0.5,
            fractional_share: 0.1,
        }
    }
}

/// What [`fill`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct FillReport {
    /// GPUs in the topology.
    pub gpus_total: u64,
    /// GPUs taken whole (whole-node jobs and 1-, 2- and 4-GPU jobs).
    pub gpus_allocated_whole: u64,
    /// GPUs partly used: by fractional shares, or by MIG instances on MIG-mode GPUs.
    pub gpus_allocated_partly: u64,
    /// Milli-GPU taken by fractional shares (whole GPUs not included).
    pub milli_allocated: u64,
    /// `(gpus_allocated_whole + gpus_allocated_partly) / gpus_total` (0 without GPUs).
    pub occupancy_achieved: f64,
    /// Every take, in the order taken; giving them all back empties the ledger again.
    pub takes: Vec<(NodeId, Take)>,
}

/// Shared nodes (those running small jobs) are opened until they would be this full, GPU-wise,
/// in permille, drawn per leaf; more open when jobs stop fitting.
const POOL_FILL_PERMILLE: (u64, u64) = (650, 950);
/// CPU a small job asks for per GPU, in permille of the node's CPU per GPU. Above 1000 often
/// enough that CPU, not GPUs, fills some shared nodes.
const CPU_PER_GPU_PERMILLE: (u64, u64) = (500, 1750);
/// Memory a small job asks for per GPU, in permille of the node's memory per GPU.
const MEMORY_PER_GPU_PERMILLE: (u64, u64) = (250, 1500);
/// CPU of a whole-node job, in permille of the node's.
const WHOLE_NODE_CPU_PERMILLE: (u64, u64) = (500, 1000);
/// Memory of a whole-node job, in permille of the node's.
const WHOLE_NODE_MEMORY_PERMILLE: (u64, u64) = (300, 1000);
/// The request of a one-GPU job or a share when no node fits its noisy request.
const CPU_MILLI_MIN: u64 = 100;
/// See [`CPU_MILLI_MIN`].
const MEMORY_MIB_MIN: u64 = 256;
/// Bounds of the fractional shares on one GPU, in milli-GPU, together.
const SHARE_MILLI: (u64, u64) = (100, 900);
const _: () = assert!(
    SHARE_MILLI.1 < MILLI_PER_GPU as u64,
    "a shared GPU stays partly used"
);
/// One in this many shared GPUs gets a second share.
const SECOND_SHARE_ONE_IN: u64 = 4;
/// Most MIG instances [`fill`] puts on one MIG GPU.
const MIG_INSTANCES_MAX: usize = 3;
/// Largest [`FillConfig::skew_tail`].
pub const SKEW_TAIL_MAX: u32 = 16;
/// No spine is drawn fuller than this, unless its site's share needs it: jobs end at random
/// times, so even the busiest spine has some free GPUs scattered over it. (A leaf may be full.)
const SPINE_OCCUPANCY_MAX: f64 = 0.98;
/// Bisection steps when shifting drawn occupancies to hit a total.
const BISECTION_STEPS: usize = 100;

/// Brings an empty `ledger` to `cfg.occupancy` of all GPUs allocated, deterministically for
/// `seed`, using only [`Ledger::check`] and [`Ledger::take`].
///
/// The shape aims at what benchmarks of placement need (see [`FillConfig`] for the skew):
/// sites are equally full, spines within a site differ, leaves within a spine differ more,
/// and within a leaf there are nodes running one whole-node job, shared nodes fragmented by
/// randomly placed 4-, 2- and 1-GPU jobs and fractional shares (some short of CPU or memory
/// before their GPUs run out), and free nodes. With the default skew on
/// [`SynthConfig::four_sites`] at 0.9 occupancy, every site has one spine 98% full and one with
/// about 70 to 85 fully free nodes (of 512), most of them in three or four mostly free leaves:
/// a gang of 64 whole nodes fits in every site, one of 128 nowhere. MIG-mode GPUs get one to
/// three MIG instances each. A leaf that cannot hold its share passes the rest on to the next
/// leaf.
///
/// Jobs ask for CPU and memory in proportion to their GPUs, with noise, but always leave a
/// minimal request (100 milli-CPU, 256 MiB) for each GPU of the node nothing uses yet; when a
/// leaf runs out of room, the last GPUs go to jobs with that minimal request. So the target is
/// met to the GPU whenever the nodes are schedulable.
///
/// The ledger must be empty (as [`Ledger::new`] makes it); unschedulable nodes get nothing.
pub fn fill(topology: &Topology, ledger: &mut Ledger, cfg: &FillConfig, seed: u64) -> FillReport {
    let fractions = [
        ("occupancy", cfg.occupancy),
        ("spine_skew", cfg.spine_skew),
        ("leaf_skew", cfg.leaf_skew),
        ("whole_node_share", cfg.whole_node_share),
        ("fractional_share", cfg.fractional_share),
        (
            "whole_node_share + fractional_share",
            cfg.whole_node_share + cfg.fractional_share,
        ),
    ];
    for (name, value) in fractions {
        assert!(
            (0.0..=1.0).contains(&value),
            "fill: {name} is {value}, outside 0..=1"
        );
    }
    assert!(
        (1..=SKEW_TAIL_MAX).contains(&cfg.skew_tail),
        "fill: skew_tail is {}, outside 1..={SKEW_TAIL_MAX}",
        cfg.skew_tail
    );
    for (i, spec) in topology.nodes().iter().enumerate() {
        let free = ledger.node(NodeId::from_idx(i));
        let empty = free.cpu_milli == spec.cpu_milli && free.memory_mib == spec.memory_mib;
        assert!(empty, "fill needs an empty ledger: {} is in use", spec.name);
    }
    assert_eq!(
        allocated_gpus(topology, ledger),
        0,
        "fill needs an empty ledger"
    );

    let gpus_total = topology.gpu_count() as u64;
    let target = ((cfg.occupancy * gpus_total as f64).round() as u64).min(gpus_total);
    let leaf_gpus = |leaf: usize| -> u64 {
        topology
            .subtree_nodes(Level::Leaf, leaf)
            .map(|n| topology.nodes()[n].gpu_count() as u64)
            .sum()
    };
    let spine_gpus: Vec<u64> = topology
        .spines()
        .iter()
        .map(|s| s.leaves.clone().map(|l| leaf_gpus(l as usize)).sum())
        .collect();
    let site_gpus: Vec<u64> = topology
        .sites()
        .iter()
        .map(|s| s.spines.clone().map(|sp| spine_gpus[sp as usize]).sum())
        .collect();

    let mut filler = Filler {
        topology,
        ledger,
        cfg,
        rng: SplitMix64::new(seed),
        takes: Vec::new(),
        fits: Vec::new(),
        gpus_allocated_whole: 0,
        gpus_allocated_partly: 0,
        milli_allocated: 0,
    };
    let rng = &mut filler.rng;
    // Sites in proportion, spines skewed within their site, leaves within their spine.
    let flat = Skew {
        skew: 0.0,
        tail: 1,
        ceiling: 1.0,
    };
    let spine_skew = Skew {
        skew: cfg.spine_skew,
        tail: cfg.skew_tail,
        ceiling: SPINE_OCCUPANCY_MAX,
    };
    let leaf_skew = Skew {
        skew: cfg.leaf_skew,
        tail: cfg.skew_tail,
        ceiling: 1.0,
    };
    let mut leaf_targets: Vec<u64> = Vec::with_capacity(topology.leaves().len());
    for (site, site_target) in apportion(&site_gpus, flat, target, rng)
        .into_iter()
        .enumerate()
    {
        let spines = topology.sites()[site].spines.clone();
        let capacities: Vec<u64> = spines.clone().map(|s| spine_gpus[s as usize]).collect();
        let spine_targets = apportion(&capacities, spine_skew, site_target, rng);
        for (spine, spine_target) in spines.zip(spine_targets) {
            let leaves = topology.spines()[spine as usize].leaves.clone();
            assert_eq!(
                leaves.start as usize,
                leaf_targets.len(),
                "leaves in tree order"
            );
            let capacities: Vec<u64> = leaves.map(|l| leaf_gpus(l as usize)).collect();
            leaf_targets.extend(apportion(&capacities, leaf_skew, spine_target, rng));
        }
    }
    assert_eq!(leaf_targets.len(), topology.leaves().len());
    assert_eq!(leaf_targets.iter().sum::<u64>(), target);
    let mut carry = 0u64;
    for (leaf, leaf_target) in leaf_targets.into_iter().enumerate() {
        let got = filler.fill_leaf(leaf, leaf_target + carry);
        carry = leaf_target + carry - got;
    }
    // What leaves could not hold (on unschedulable nodes) is offered to every leaf again.
    for leaf in 0..topology.leaves().len() {
        if carry == 0 {
            break;
        }
        carry -= filler.fill_leaf(leaf, carry);
    }

    let Filler {
        takes,
        gpus_allocated_whole,
        gpus_allocated_partly,
        milli_allocated,
        ..
    } = filler;
    let allocated = gpus_allocated_whole + gpus_allocated_partly;
    assert_eq!(allocated + carry, target);
    assert_eq!(
        allocated_gpus(topology, ledger),
        allocated,
        "fill counted what it took"
    );
    FillReport {
        gpus_total,
        gpus_allocated_whole,
        gpus_allocated_partly,
        milli_allocated,
        occupancy_achieved: if gpus_total == 0 {
            0.0
        } else {
            allocated as f64 / gpus_total as f64
        },
        takes,
    }
}

/// GPUs with anything allocated.
fn allocated_gpus(topology: &Topology, ledger: &Ledger) -> u64 {
    (0..topology.gpu_count())
        .filter(|&g| ledger.gpu(GpuId(g as u32)) != GpuUse::default())
        .count() as u64
}

/// The spread [`apportion`] gives children around their parent's occupancy (see
/// [`FillConfig`]).
#[derive(Clone, Copy, Debug)]
struct Skew {
    /// How far above the mean the fullest child is drawn.
    skew: f64,
    /// The emptiest child is drawn `tail` times as far below the mean.
    tail: u32,
    /// The fullest any child may be, unless the parent's total needs more.
    ceiling: f64,
}

impl Skew {
    /// The offset of the child at rank quantile `q` in `0..1`: from `+skew` at 0 down to
    /// `−tail × skew` at 1, averaging 0 over `q`. Integer powers by multiplication, so the
    /// result is the same on every platform.
    fn offset(self, q: f64) -> f64 {
        let q_pow = (0..self.tail).fold(1.0, |acc, _| acc * q);
        self.skew * (1.0 - (f64::from(self.tail) + 1.0) * q_pow)
    }
}

/// Splits `total` over items of `capacities` so that item `i` gets about `capacities[i] ×
/// x_i`, where the `x_i` are skewed ([`Skew::offset`]): the items take the rank quantiles
/// `(k + 1/4 + u/2) / n`, `k` in a random order and `u` uniform in `[0, 1)` (the middle half of
/// each stratum, so the spread is always used and neighbours never swap), then their offsets
/// are shifted together, and clamped to `0..=ceiling`, until they add up to `total`. The
/// result adds up to `total` exactly and respects the capacities.
fn apportion(capacities: &[u64], skew: Skew, total: u64, rng: &mut SplitMix64) -> Vec<u64> {
    let capacity: u64 = capacities.iter().sum();
    assert!(total <= capacity, "apportion {total} over {capacity}");
    let n = capacities.len();
    let mut strata: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut strata);
    let base: Vec<f64> = strata
        .iter()
        .map(|&k| skew.offset((k as f64 + 0.25 + 0.5 * rng.unit_f64()) / n as f64))
        .collect();
    assert!(skew.ceiling > 0.0 && skew.ceiling <= 1.0);
    let ceiling = if capacity == 0 {
        1.0
    } else {
        skew.ceiling.max(total as f64 / capacity as f64)
    };
    let mass = |shift: f64| -> f64 {
        capacities
            .iter()
            .zip(&base)
            .map(|(&c, &b)| c as f64 * (b + shift).clamp(0.0, ceiling))
            .sum()
    };
    // Offsets lie in -tail × skew..=skew, so mass(lo) = 0 and mass(hi) = capacity × ceiling,
    // which is at least `total`.
    let (mut lo, mut hi) = (-1.0 - skew.skew, 1.0 + f64::from(skew.tail) * skew.skew);
    for _ in 0..BISECTION_STEPS {
        let mid = (lo + hi) / 2.0;
        if mass(mid) < total as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let ideal: Vec<f64> = capacities
        .iter()
        .zip(&base)
        .map(|(&c, &b)| c as f64 * (b + hi).clamp(0.0, ceiling))
        .collect();
    let mut counts: Vec<u64> = ideal
        .iter()
        .zip(capacities)
        .map(|(&x, &c)| (x.floor() as u64).min(c))
        .collect();
    // Largest remainders first, then by position: deterministic.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (ideal[a] - counts[a] as f64, ideal[b] - counts[b] as f64);
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut sum: u64 = counts.iter().sum();
    while sum < total {
        for &i in &order {
            if sum < total && counts[i] < capacities[i] {
                counts[i] += 1;
                sum += 1;
            }
        }
    }
    while sum > total {
        for &i in order.iter().rev() {
            if sum > total && counts[i] > 0 {
                counts[i] -= 1;
                sum -= 1;
            }
        }
    }
    counts
}

/// A unit of small work in a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// A job of this many whole GPUs on one node.
    Gpus(u32),
    /// Fractional shares on one GPU.
    Share,
}

impl Item {
    fn gpus(self) -> u64 {
        match self {
            Item::Gpus(n) => n as u64,
            Item::Share => 1,
        }
    }
}

/// What a small job asks for besides GPUs.
#[derive(Clone, Copy, Debug)]
enum Request {
    /// Proportional to its GPUs, scaled by these permilles.
    Noisy {
        cpu_permille: u64,
        memory_permille: u64,
    },
    /// [`CPU_MILLI_MIN`] and [`MEMORY_MIB_MIN`].
    Minimal,
}

/// The state of one [`fill`] run.
struct Filler<'a> {
    topology: &'a Topology,
    ledger: &'a mut Ledger,
    cfg: &'a FillConfig,
    rng: SplitMix64,
    takes: Vec<(NodeId, Take)>,
    /// Scratch: the candidates of one placement.
    fits: Vec<(NodeId, Take)>,
    gpus_allocated_whole: u64,
    gpus_allocated_partly: u64,
    milli_allocated: u64,
}

impl Filler<'_> {
    fn take(&mut self, node: NodeId, take: Take) {
        self.ledger.take(self.topology, node, &take);
        self.takes.push((node, take));
        match take.gpus {
            GpuTake::None => {}
            GpuTake::Whole { mask } => self.gpus_allocated_whole += mask.count_ones() as u64,
            GpuTake::Milli { milli, .. } => self.milli_allocated += milli as u64,
            GpuTake::Mig { .. } => {}
        }
    }

    fn fits(&self, node: NodeId, take: &Take) -> bool {
        self.ledger.check(self.topology, node, take).is_ok()
    }

    fn draw(&mut self, range: (u64, u64)) -> u64 {
        self.rng.between(range.0, range.1)
    }

    /// Allocates up to `want` more GPUs of `leaf`; returns how many it did.
    fn fill_leaf(&mut self, leaf: usize, want: u64) -> u64 {
        if want == 0 {
            return 0;
        }
        let topology = self.topology;
        let nodes = topology.subtree_nodes(Level::Leaf, leaf);
        let standard_free = self.ledger.free_whole_gpus(Level::Leaf, leaf);
        let mig_free = self.free_mig_gpus(nodes.clone()).len() as u64;
        let free = standard_free + mig_free;
        if free == 0 {
            return 0;
        }
        let want = want.min(free);
        // MIG and standard GPUs in proportion to what is free of each.
        let want_mig = ((want * mig_free + free / 2) / free).min(mig_free);
        let want_standard = (want - want_mig).min(standard_free);
        let want_mig = want - want_standard;
        assert!(want_mig <= mig_free);
        self.fill_standard(nodes.clone(), want_standard) + self.fill_mig(nodes, want_mig)
    }

    /// MIG-mode GPUs of `nodes` with nothing allocated.
    fn free_mig_gpus(&self, nodes: Range<usize>) -> Vec<GpuId> {
        let topology = self.topology;
        nodes
            .flat_map(|n| topology.nodes()[n].gpus.clone())
            .map(GpuId)
            .filter(|&g| topology.gpu(g).mig && self.ledger.gpu(g) == GpuUse::default())
            .collect()
    }

    /// Whole-node jobs on free nodes, then small jobs and shares over a pool of shared nodes.
    fn fill_standard(&mut self, nodes: Range<usize>, want: u64) -> u64 {
        if want == 0 {
            return 0;
        }
        let topology = self.topology;
        let mut order: Vec<NodeId> = nodes
            .map(NodeId::from_idx)
            .filter(|&n| self.ledger.node(n).schedulable && self.ledger.node(n).whole_free() > 0)
            .collect();
        self.rng.shuffle(&mut order);

        let whole_goal = (self.cfg.whole_node_share * want as f64).round() as u64;
        let mut got = 0u64;
        let mut spare: Vec<NodeId> = Vec::with_capacity(order.len());
        for node in order {
            let spec = topology.node(node);
            let free = self.ledger.node(node).clone();
            let n_gpus = spec.gpu_count() as u64;
            // All GPUs free implies none is in MIG mode.
            if free.whole_free() as u64 == n_gpus && got + n_gpus <= whole_goal {
                let cpu_permille = self.draw(WHOLE_NODE_CPU_PERMILLE);
                let memory_permille = self.draw(WHOLE_NODE_MEMORY_PERMILLE);
                let take = Take {
                    cpu_milli: scale(spec.cpu_milli, cpu_permille, 1000).min(free.cpu_milli),
                    memory_mib: scale(spec.memory_mib, memory_permille, 1000).min(free.memory_mib),
                    gpus: GpuTake::Whole {
                        mask: free.whole_mask,
                    },
                };
                if self.fits(node, &take) {
                    self.take(node, take);
                    got += n_gpus;
                    continue;
                }
            }
            spare.push(node);
        }

        let remaining = want - got;
        let shares = ((self.cfg.fractional_share * want as f64).round() as u64).min(remaining);
        let mut items: Vec<Item> = Vec::new();
        let mut left = remaining - shares;
        while left > 0 {
            let mut size = match self.rng.below(10) {
                0..=2 => 4,
                3..=5 => 2,
                _ => 1,
            };
            while size > left {
                size /= 2;
            }
            items.push(Item::Gpus(size as u32));
            left -= size;
        }
        items.extend((0..shares).map(|_| Item::Share));
        self.rng.shuffle(&mut items);

        // Open shared nodes until they would be POOL_FILL_PERMILLE full; `spare` is shuffled.
        let fill_permille = self.draw(POOL_FILL_PERMILLE);
        let pool_goal = (remaining * 1000).div_ceil(fill_permille);
        let mut pool: Vec<NodeId> = Vec::new();
        let mut pool_gpus = 0u64;
        while pool_gpus < pool_goal {
            let Some(node) = spare.pop() else { break };
            pool_gpus += self.ledger.node(node).whole_free() as u64;
            pool.push(node);
        }
        while let Some(item) = items.pop() {
            let request = Request::Noisy {
                cpu_permille: self.draw(CPU_PER_GPU_PERMILLE),
                memory_permille: self.draw(MEMORY_PER_GPU_PERMILLE),
            };
            if self.place(&pool, item, request) {
                got += item.gpus();
                continue;
            }
            if let Some(node) = spare.pop() {
                pool.push(node);
                items.push(item);
                continue;
            }
            match item {
                Item::Gpus(n) if n > 1 => {
                    items.push(Item::Gpus(n / 2));
                    items.push(Item::Gpus(n - n / 2));
                }
                _ => {
                    if self.place(&pool, item, Request::Minimal) {
                        got += item.gpus();
                    }
                }
            }
        }
        got
    }

    /// Places `item` on a random node of `pool` where it fits; false when none fits.
    fn place(&mut self, pool: &[NodeId], item: Item, request: Request) -> bool {
        let milli = match item {
            Item::Gpus(_) => 0,
            Item::Share => self.draw(SHARE_MILLI),
        };
        let mut fits = std::mem::take(&mut self.fits);
        fits.clear();
        for &node in pool {
            let Some(take) = self.item_take(node, item, milli, request) else {
                continue;
            };
            let minimal = matches!(request, Request::Minimal);
            if self.fits(node, &take) && (minimal || self.keeps_reserve(node, &take, item.gpus())) {
                fits.push((node, take));
            }
        }
        let chosen = (!fits.is_empty()).then(|| fits[self.rng.below(fits.len() as u64) as usize]);
        self.fits = fits;
        let Some((node, take)) = chosen else {
            return false;
        };
        self.take(node, take);
        if item == Item::Share {
            self.gpus_allocated_partly += 1;
            let room = SHARE_MILLI.1 - milli;
            if room >= SHARE_MILLI.0 && self.rng.chance(1, SECOND_SHARE_ONE_IN) {
                let second = self.draw((SHARE_MILLI.0, room));
                let GpuTake::Milli {
                    local,
                    milli: first,
                } = take.gpus
                else {
                    unreachable!("a share takes milli-GPU")
                };
                // Proportional to the first share's request.
                let take = Take {
                    cpu_milli: scale(take.cpu_milli, second, first as u64),
                    memory_mib: scale(take.memory_mib, second, first as u64),
                    gpus: GpuTake::Milli {
                        local,
                        milli: second as u16,
                    },
                };
                if self.fits(node, &take) && self.keeps_reserve(node, &take, 0) {
                    self.take(node, take);
                }
            }
        }
        true
    }

    /// GPUs of `node` with nothing allocated.
    fn untouched_gpus(&self, node: NodeId) -> u64 {
        let topology = self.topology;
        let gpus = topology.node(node).gpus.clone().map(GpuId);
        gpus.filter(|&g| self.ledger.gpu(g) == GpuUse::default())
            .count() as u64
    }

    /// Whether `take`, which fits on `node` and touches `touched` of its untouched GPUs, leaves
    /// a minimal request's CPU and memory for each GPU still untouched. Noisy requests keep this
    /// reserve, so minimal ones can always use every GPU and any target stays reachable; CPU and
    /// memory still bind the noisy requests.
    fn keeps_reserve(&self, node: NodeId, take: &Take, touched: u64) -> bool {
        let free = self.ledger.node(node);
        let untouched = self.untouched_gpus(node);
        assert!(touched <= untouched);
        free.cpu_milli - take.cpu_milli >= CPU_MILLI_MIN * (untouched - touched)
            && free.memory_mib - take.memory_mib >= MEMORY_MIB_MIN * (untouched - touched)
    }

    /// The take for `item` on `node`, on its lowest free GPUs; `None` when the GPUs are short.
    fn item_take(&self, node: NodeId, item: Item, milli: u64, request: Request) -> Option<Take> {
        let spec = self.topology.node(node);
        let free = self.ledger.node(node);
        let (gpus, gpu_milli) = match item {
            Item::Gpus(k) => {
                if free.whole_free() < k {
                    return None;
                }
                let mut rest = free.whole_mask;
                let mut mask = 0u32;
                for _ in 0..k {
                    let lowest = rest & rest.wrapping_neg();
                    mask |= lowest;
                    rest &= !lowest;
                }
                (GpuTake::Whole { mask }, k as u64 * MILLI_PER_GPU as u64)
            }
            Item::Share => {
                if free.whole_mask == 0 {
                    return None;
                }
                let local = free.whole_mask.trailing_zeros() as u8;
                (
                    GpuTake::Milli {
                        local,
                        milli: milli as u16,
                    },
                    milli,
                )
            }
        };
        let (cpu_milli, memory_mib) = match request {
            Request::Noisy {
                cpu_permille,
                memory_permille,
            } => {
                let node_milli = spec.gpu_count() as u64 * MILLI_PER_GPU as u64;
                (
                    noisy_part(spec.cpu_milli, gpu_milli, node_milli, cpu_permille),
                    noisy_part(spec.memory_mib, gpu_milli, node_milli, memory_permille),
                )
            }
            Request::Minimal => (CPU_MILLI_MIN, MEMORY_MIB_MIN),
        };
        Some(Take {
            cpu_milli,
            memory_mib,
            gpus,
        })
    }

    /// One to [`MIG_INSTANCES_MAX`] MIG instances on each of `want` free MIG GPUs of `nodes`.
    fn fill_mig(&mut self, nodes: Range<usize>, want: u64) -> u64 {
        if want == 0 {
            return 0;
        }
        let topology = self.topology;
        let mut gpus = self.free_mig_gpus(nodes);
        self.rng.shuffle(&mut gpus);
        let mut got = 0u64;
        for gpu in gpus {
            if got == want {
                break;
            }
            let g = topology.gpu(gpu);
            let spec = topology.node(g.node);
            let profiles = &topology.model(g.model).mig_profiles;
            assert!(
                !profiles.is_empty(),
                "mig gpu of a model without mig profiles"
            );
            let mut placed = false;
            for instance in 0..MIG_INSTANCES_MAX {
                if instance > 0 && !self.rng.chance(1, 2) {
                    break;
                }
                let profile = &profiles[self.rng.below(profiles.len() as u64) as usize];
                let gpus = GpuTake::Mig {
                    local: g.local,
                    compute: profile.compute_slices,
                    memory: profile.memory_slices,
                };
                let slices = profile.compute_slices as u64;
                let node_slices = spec.gpu_count() as u64 * MIG_COMPUTE_SLICES as u64;
                let cpu_permille = self.draw(CPU_PER_GPU_PERMILLE);
                let memory_permille = self.draw(MEMORY_PER_GPU_PERMILLE);
                let noisy = Take {
                    cpu_milli: noisy_part(spec.cpu_milli, slices, node_slices, cpu_permille),
                    memory_mib: noisy_part(spec.memory_mib, slices, node_slices, memory_permille),
                    gpus,
                };
                let minimal = Take {
                    cpu_milli: CPU_MILLI_MIN,
                    memory_mib: MEMORY_MIB_MIN,
                    gpus,
                };
                let touched = if placed { 0 } else { 1 };
                if self.fits(g.node, &noisy) && self.keeps_reserve(g.node, &noisy, touched) {
                    self.take(g.node, noisy);
                } else if !placed && self.fits(g.node, &minimal) {
                    self.take(g.node, minimal);
                } else {
                    break;
                }
                placed = true;
            }
            if placed {
                got += 1;
                self.gpus_allocated_partly += 1;
            }
        }
        got
    }
}

/// `capacity × part / whole`, scaled by `permille`, rounded down.
fn noisy_part(capacity: u64, part: u64, whole: u64, permille: u64) -> u64 {
    assert!(part <= whole);
    scale(scale(capacity, part, whole), permille, 1000)
}

/// `value × num / den`, rounded down, without overflow.
fn scale(value: u64, num: u64, den: u64) -> u64 {
    assert!(den > 0);
    u64::try_from(u128::from(value) * u128::from(num) / u128::from(den)).expect("scale overflow")
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn build(cfg: &SynthConfig) -> Topology {
        Topology::build(generate(cfg)).expect("synthetic inventory builds")
    }

    fn filled(topology: &Topology, occupancy: f64, seed: u64) -> (Ledger, FillReport) {
        let mut ledger = Ledger::new(topology);
        let cfg = FillConfig {
            occupancy,
            ..FillConfig::default()
        };
        let report = fill(topology, &mut ledger, &cfg, seed);
        ledger.check_invariants(topology);
        (ledger, report)
    }

    /// Per spine: whole free GPUs, fully free nodes, leaves with 8 or more fully free nodes,
    /// partly used GPUs.
    fn spine_summary(topology: &Topology, ledger: &Ledger) -> String {
        let mut out = String::new();
        for spine in 0..topology.spines().len() {
            let partly = topology
                .subtree_nodes(Level::Spine, spine)
                .flat_map(|n| topology.nodes()[n].gpus.clone())
                .filter(|&g| {
                    let used = ledger.gpu(GpuId(g)).used_milli as u32;
                    used > 0 && used < MILLI_PER_GPU
                })
                .count();
            out += &format!(
                "{:<8} free_gpus={:>4} free_nodes={:>3} free_leaves={:>2} partly_used_gpus={:>3}\n",
                topology.subtree_name(Level::Spine, spine),
                ledger.free_whole_gpus(Level::Spine, spine),
                ledger.histogram(Level::Spine, spine)[8],
                free_leaves(topology, ledger, Level::Spine, spine),
                partly,
            );
        }
        out
    }

    /// Leaves under a subtree with room for a gang of 8 whole nodes (8 fully free nodes).
    fn free_leaves(topology: &Topology, ledger: &Ledger, level: Level, idx: usize) -> usize {
        let leaves = match level {
            Level::Site => topology.sites()[idx].leaves.clone(),
            Level::Spine => topology.spines()[idx].leaves.clone(),
            _ => unreachable!("free_leaves of a site or a spine"),
        };
        leaves
            .filter(|&l| ledger.histogram(Level::Leaf, l as usize)[8] >= 8)
            .count()
    }

    fn assert_near(report: &FillReport, occupancy: f64) {
        let error = (report.occupancy_achieved - occupancy).abs();
        assert!(
            error <= 0.005,
            "achieved {} for {occupancy}",
            report.occupancy_achieved
        );
    }

    #[test]
    fn splitmix64_reference_stream() {
        // The reference outputs for seed 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        let first: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn splitmix64_bounded_draws() {
        let mut rng = SplitMix64::new(7);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[rng.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(1), 0);
        assert!((0..100).all(|_| !rng.chance(0, 3)));
        assert!((0..100).all(|_| rng.chance(3, 3)));
        assert!((0..100)
            .map(|_| rng.between(5, 7))
            .all(|x| (5..=7).contains(&x)));
        let _ = rng.between(0, u64::MAX);
        assert!((0..100)
            .map(|_| rng.unit_f64())
            .all(|x| (0.0..1.0).contains(&x)));
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<u32>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<u32>>());
    }

    #[test]
    fn four_sites_benchmark_shape() {
        let cfg = SynthConfig::default();
        assert_eq!(cfg, SynthConfig::four_sites(4096));
        let topology = build(&cfg);
        assert_eq!(topology.sites().len(), 4);
        assert_eq!(topology.jurisdictions().len(), 4);
        assert_eq!(topology.nodes().len(), 4096);
        assert_eq!(topology.gpu_count(), 32_768);
        assert_eq!(topology.spines().len(), 8);
        assert_eq!(topology.leaves().len(), 128);
        assert_eq!(topology.domains().len(), 4096);
        assert_eq!(topology.nodes()[0].name, "syd1-s0-l00-n000");
        assert_eq!(topology.nodes()[4095].name, "kul1-s1-l15-n031");
        let node = topology
            .node_by_name("syd1-s0-l03-n017")
            .expect("named node");
        assert_eq!(node.idx(), 3 * 32 + 17);
        assert_eq!(topology.subtree_name(Level::Leaf, 3), "syd1/s0-l03");
        let site = |name| topology.site_by_name(name).unwrap();
        assert_eq!(
            topology.site_rtt_ns(site("syd1"), site("tok1")),
            110_000_000
        );
        assert_eq!(topology.site_rtt_ns(site("kul1"), site("sin1")), 8_000_000);
        assert_eq!(topology.site_gbit_per_s(site("tok1"), site("kul1")), 100);
        assert_eq!(topology.site_jurisdiction(site("kul1")).as_str(), "MY");
        assert!(topology.gpus().iter().all(|g| !g.mig));
        let spec = &topology.nodes()[0];
        assert_eq!(spec.nic_gbit_per_s, 3_200);
        assert_eq!(topology.model(spec.model.unwrap()).mig_profiles.len(), 6);
    }

    #[test]
    fn four_sites_sizes() {
        let shape = |nodes_total| {
            let cfg = SynthConfig::four_sites(nodes_total);
            let topology = build(&cfg);
            assert_eq!(topology.nodes().len(), nodes_total);
            format!(
                "{nodes_total}: {} leaves of {} nodes, {} gpus",
                topology.leaves().len(),
                cfg.nodes_per_leaf,
                topology.gpu_count()
            )
        };
        let shapes: Vec<String> = [16, 64, 240, 256, 512, 8192]
            .into_iter()
            .map(shape)
            .collect();
        expect![[r#"
            [
                "16: 16 leaves of 1 nodes, 128 gpus",
                "64: 16 leaves of 4 nodes, 512 gpus",
                "240: 16 leaves of 15 nodes, 1920 gpus",
                "256: 8 leaves of 32 nodes, 2048 gpus",
                "512: 16 leaves of 32 nodes, 4096 gpus",
                "8192: 256 leaves of 32 nodes, 65536 gpus",
            ]
        "#]]
        .assert_debug_eq(&shapes);
    }

    #[test]
    fn mig_leaves_and_multi_node_domains() {
        let cfg = SynthConfig {
            mig_leaf_fraction: 0.25,
            nvl_domain_nodes: 9,
            ..SynthConfig::four_sites(512)
        };
        let topology = build(&cfg);
        let mig_gpus = topology.gpus().iter().filter(|g| g.mig).count();
        assert_eq!(mig_gpus, topology.gpu_count() / 4);
        // Per site: leaf 0 has 3 domains of 9 nodes and 5 single nodes; 3 other leaves of 32.
        assert_eq!(topology.domains().len(), 4 * (3 + 5 + 3 * 32));
        let domain = &topology.domains()[0];
        assert_eq!(domain.name, "s0-l00-nvl0");
        assert_eq!(domain.nodes.len(), 9);
        let mig_leaves: Vec<String> = (0..4)
            .filter(|&l| {
                topology
                    .gpu(GpuId(topology.leaves()[l].nodes.start * 8))
                    .mig
            })
            .map(|l| topology.subtree_name(Level::Leaf, l))
            .collect();
        assert_eq!(mig_leaves, ["syd1/s1-l01"]);

        for occupancy in [0.5, 0.9] {
            let (ledger, report) = filled(&topology, occupancy, 3);
            assert_near(&report, occupancy);
            let mig_used = topology
                .gpus()
                .iter()
                .enumerate()
                .filter(|(i, g)| g.mig && ledger.gpu(GpuId(*i as u32)).mig_compute_used > 0)
                .count();
            assert!(mig_used > 0);
        }
    }

    #[test]
    fn fill_four_sites() {
        let topology = build(&SynthConfig::four_sites(4096));
        let check = |occupancy: f64, expect: Expect| {
            let (ledger, report) = filled(&topology, occupancy, 1);
            assert_near(&report, occupancy);
            assert_eq!(report.gpus_total, 32_768);
            // Shares land on about `fractional_share` of the allocated GPUs.
            let allocated = report.gpus_allocated_whole + report.gpus_allocated_partly;
            let partly = report.gpus_allocated_partly as f64 / allocated as f64;
            assert!(
                (0.09..=0.11).contains(&partly),
                "partly used share {partly}"
            );
            let (again, _) = filled(&topology, occupancy, 1);
            assert!(again == ledger, "same seed, same ledger");
            let (other, _) = filled(&topology, occupancy, 2);
            assert!(other != ledger, "another seed, another ledger");
            // CPU binds on some nodes: GPUs free, but less than a GPU's worth of CPU left.
            let cpu_bound = (0..topology.nodes().len())
                .map(NodeId::from_idx)
                .filter(|&n| {
                    let free = ledger.node(n);
                    free.whole_free() > 0 && free.cpu_milli < 224_000 / 8
                })
                .count();
            assert!(cpu_bound > 0);
            // Giving everything back empties the ledger.
            let mut emptied = ledger.clone();
            for (node, take) in report.takes.iter().rev() {
                emptied.give(&topology, *node, take);
            }
            assert!(emptied == Ledger::new(&topology));
            let summary = format!(
                "achieved={:.4} whole={} partly={} milli={} takes={} cpu_bound={}\n{}",
                report.occupancy_achieved,
                report.gpus_allocated_whole,
                report.gpus_allocated_partly,
                report.milli_allocated,
                report.takes.len(),
                cpu_bound,
                spine_summary(&topology, &ledger),
            );
            expect.assert_eq(&summary);
            ledger
        };
        check(
            0.5,
            expect![[r#"
                achieved=0.5000 whole=14734 partly=1650 milli=894638 takes=6307 cpu_bound=280
                syd1/s0  free_gpus=1145 free_nodes=120 free_leaves= 5 partly_used_gpus=298
                syd1/s1  free_gpus=2951 free_nodes=335 free_leaves=16 partly_used_gpus=116
                tok1/s0  free_gpus=1354 free_nodes=146 free_leaves= 6 partly_used_gpus=275
                tok1/s1  free_gpus=2742 free_nodes=311 free_leaves=16 partly_used_gpus=137
                sin1/s0  free_gpus=2472 free_nodes=266 free_leaves=11 partly_used_gpus=163
                sin1/s1  free_gpus=1624 free_nodes=164 free_leaves= 7 partly_used_gpus=248
                kul1/s0  free_gpus=2862 free_nodes=325 free_leaves=16 partly_used_gpus=124
                kul1/s1  free_gpus=1234 free_nodes=135 free_leaves= 6 partly_used_gpus=289
            "#]],
        );
        let ledger = check(
            0.9,
            expect![[r#"
                achieved=0.9000 whole=26502 partly=2989 milli=1639044 takes=11798 cpu_bound=101
                syd1/s0  free_gpus=  82 free_nodes=  5 free_leaves= 0 partly_used_gpus=407
                syd1/s1  free_gpus= 737 free_nodes= 79 free_leaves= 4 partly_used_gpus=340
                tok1/s0  free_gpus=  82 free_nodes=  7 free_leaves= 0 partly_used_gpus=407
                tok1/s1  free_gpus= 737 free_nodes= 78 free_leaves= 4 partly_used_gpus=340
                sin1/s0  free_gpus= 737 free_nodes= 76 free_leaves= 3 partly_used_gpus=341
                sin1/s1  free_gpus=  82 free_nodes=  6 free_leaves= 0 partly_used_gpus=407
                kul1/s0  free_gpus= 738 free_nodes= 80 free_leaves= 4 partly_used_gpus=340
                kul1/s1  free_gpus=  82 free_nodes=  4 free_leaves= 0 partly_used_gpus=407
            "#]],
        );
        assert_gang_room(&topology, &ledger);
    }

    /// At 0.9, the default skew leaves room for large gangs in every site, but not much:
    /// one spine with at least 64 fully free nodes (a 64 × 8-GPU gang), at least 3 leaves with
    /// 8 (a 8 × 8-GPU gang), and no spine with 128 (so a 128 × 8-GPU gang must wait).
    fn assert_gang_room(topology: &Topology, ledger: &Ledger) {
        for (site, s) in topology.sites().iter().enumerate() {
            let free_nodes = |spine: u32| ledger.histogram(Level::Spine, spine as usize)[8];
            let best = s.spines.clone().map(free_nodes).max().unwrap();
            assert!(best >= 64, "{}: best spine has {best} free nodes", s.name);
            assert!(best < 128, "{}: a spine has {best} free nodes", s.name);
            let leaves = free_leaves(topology, ledger, Level::Site, site);
            assert!(leaves >= 3, "{}: {leaves} leaves with 8 free nodes", s.name);
        }
    }

    #[test]
    fn fill_keeps_gang_room_at_0_9_over_seeds() {
        // The bench's gang cases rely on this for every seed, not just the snapshot's.
        let topology = build(&SynthConfig::four_sites(4096));
        for seed in 10..18 {
            let (ledger, report) = filled(&topology, 0.9, seed);
            assert_near(&report, 0.9);
            assert_gang_room(&topology, &ledger);
            let (again, _) = filled(&topology, 0.9, seed);
            assert!(again == ledger, "same seed, same ledger");
        }
    }

    #[test]
    fn skew_shape() {
        // Offsets from +skew down to -tail × skew, mean 0 over the quantiles.
        let mean = |skew: Skew| {
            (0..1000)
                .map(|i| skew.offset((i as f64 + 0.5) / 1000.0))
                .sum::<f64>()
                / 1000.0
        };
        for tail in [1, 2, 3, 16] {
            let skew = Skew {
                skew: 0.2,
                tail,
                ceiling: 1.0,
            };
            assert_eq!(skew.offset(0.0), 0.2);
            assert!((skew.offset(1.0) + 0.2 * f64::from(tail)).abs() < 1e-12);
            assert!(mean(skew).abs() < 1e-3, "tail {tail}: mean {}", mean(skew));
        }
        // apportion hits the total exactly, within the capacities and the ceiling unless the
        // total needs more; at 0.9 a few leaves of a spine stay mostly free, the rest are full.
        let mut rng = SplitMix64::new(9);
        let capacities = [256u64; 16];
        let leaf = Skew {
            skew: 0.3,
            tail: 3,
            ceiling: 1.0,
        };
        let spine = Skew {
            ceiling: 0.98,
            ..leaf
        };
        for total in [0, 1, 1000, 2048, 3686, 4095, 4096] {
            let counts = apportion(&capacities, leaf, total, &mut rng);
            assert_eq!(counts.iter().sum::<u64>(), total);
            assert!(counts.iter().all(|&c| c <= 256));
            let counts = apportion(&capacities, spine, total, &mut rng);
            assert_eq!(counts.iter().sum::<u64>(), total);
            let most = if total <= 4014 { 251 } else { 256 };
            assert!(counts.iter().all(|&c| c <= most), "{total}: {counts:?}");
        }
        let counts = apportion(&capacities, leaf, 3686, &mut rng);
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        expect![[r#"
            [
                89,
                124,
                183,
                223,
                251,
                256,
                256,
                256,
                256,
                256,
                256,
                256,
                256,
                256,
                256,
                256,
            ]
        "#]]
        .assert_debug_eq(&sorted);
    }

    #[test]
    fn fill_small_cluster() {
        let topology = build(&SynthConfig::four_sites(64));
        for occupancy in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let (_, report) = filled(&topology, occupancy, 5);
            assert_near(&report, occupancy);
            let allocated = report.gpus_allocated_whole + report.gpus_allocated_partly;
            assert_eq!(allocated, (occupancy * 512.0_f64).round() as u64);
        }
        let (ledger, _) = filled(&topology, 0.0, 5);
        assert!(ledger == Ledger::new(&topology));
    }
}
