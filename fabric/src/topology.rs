//! The topology model: sites → spines → leaves → NVLink domains → nodes → GPUs.
//!
//! A [`Topology`] is immutable structure, built once from a [`TopologyDesc`] by
//! [`Topology::build`], which validates everything and reports the first problem as a
//! [`TopologyError`]. The only mutable part is the inter-site RTT/bandwidth matrix, which the
//! fabric controller updates from measurements.
//!
//! Nodes are numbered in tree order (site, spine, leaf, NVLink domain, then declaration order),
//! so every subtree at every [`Level`] is a contiguous range of [`NodeId`]s and the GPUs of a
//! subtree are a contiguous range of [`GpuId`]s. Placement and capacity accounting rely on this:
//! restricting a search to a jurisdiction or a leaf is a range operation, never a scan.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::ids::{DomainId, GpuId, LeafId, ModelId, NodeId, SiteId, SpineId};
use crate::jurisdiction::{Jurisdiction, JurisdictionMask, JURISDICTIONS_MAX};

/// Most GPUs one node may have (GPU sets on a node are `u32` bitmasks).
pub const GPUS_PER_NODE_MAX: usize = 32;
/// The RTT of a site link that probes found unreachable: larger than any latency bound, so
/// placement avoids it, and small enough that nothing overflows.
pub const SITE_LINK_DOWN_NS: u64 = 1 << 60;
/// A whole GPU in milli-GPU.
pub const MILLI_PER_GPU: u32 = 1000;
/// MIG compute slices on a MIG-capable GPU.
pub const MIG_COMPUTE_SLICES: u8 = 7;
/// MIG memory slices on a MIG-capable GPU.
pub const MIG_MEMORY_SLICES: u8 = 8;

/// A level of the topology tree, from the smallest failure/locality domain to the largest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// One node.
    Node,
    /// One NVLink domain (a node, or a multi-node domain such as NVL72).
    NvlDomain,
    /// One leaf switch (rack or Slurm block).
    Leaf,
    /// One spine.
    Spine,
    /// One site.
    Site,
}

impl Level {
    /// All levels, smallest first.
    pub const ALL: [Level; 5] = [
        Level::Node,
        Level::NvlDomain,
        Level::Leaf,
        Level::Spine,
        Level::Site,
    ];

    /// The name used in inventories, job files and explanations.
    pub fn name(self) -> &'static str {
        match self {
            Level::Node => "node",
            Level::NvlDomain => "nvlink",
            Level::Leaf => "leaf",
            Level::Spine => "spine",
            Level::Site => "site",
        }
    }

    /// Parses a level name (`node`, `nvlink`, `leaf`, `spine`, `site`; `block`, `rack`,
    /// `switch` are accepted as the Slurm/Kubernetes words for a leaf).
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_lowercase().as_str() {
            "node" | "host" => Level::Node,
            "nvlink" | "nvl" | "nvlink-domain" | "clique" => Level::NvlDomain,
            "leaf" | "rack" | "block" | "switch" => Level::Leaf,
            "spine" => Level::Spine,
            "site" | "datacenter" => Level::Site,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Description (input to the builder). Plain data, no serde: the inventory formats convert to it.

/// A MIG profile a GPU model supports, e.g. `1g.10gb` = 1 compute slice, 1 memory slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigProfile {
    /// Profile name as NVIDIA writes it (`1g.10gb`, `3g.40gb`).
    pub name: String,
    /// Compute slices used (of [`MIG_COMPUTE_SLICES`]).
    pub compute_slices: u8,
    /// Memory slices used (of [`MIG_MEMORY_SLICES`]).
    pub memory_slices: u8,
}

/// The standard 7-compute/8-memory-slice MIG profile family for a GPU of `memory_gb`.
pub fn standard_mig_profiles(memory_gb: u64) -> Vec<MigProfile> {
    let slice_gb = (memory_gb + 4) / 8;
    let shapes: [(u8, u8); 6] = [(1, 1), (1, 2), (2, 2), (3, 4), (4, 4), (7, 8)];
    shapes
        .iter()
        .map(|&(c, m)| MigProfile {
            name: format!("{c}g.{}gb", slice_gb * m as u64),
            compute_slices: c,
            memory_slices: m,
        })
        .collect()
}

/// A GPU model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuModelDesc {
    /// Model name as jobs name it (`H100`, `A100-80GB`, `G2`).
    pub name: String,
    /// Device memory.
    pub memory_mib: u64,
    /// NVLink bandwidth per GPU; 0 when the model has no NVLink (PCIe only).
    pub nvlink_gbit_per_s: u32,
    /// MIG profiles; empty when the model is not MIG-capable.
    pub mig_profiles: Vec<MigProfile>,
}

/// Intra-site round-trip latencies by the lowest common level of two GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteFabric {
    /// Two GPUs in one NVLink domain.
    pub nvlink_rtt_ns: u64,
    /// Two nodes under one leaf.
    pub leaf_rtt_ns: u64,
    /// Two leaves under one spine.
    pub spine_rtt_ns: u64,
    /// Two spines in one site.
    pub core_rtt_ns: u64,
    /// PCIe bandwidth between GPUs of one node without NVLink.
    pub pcie_gbit_per_s: u32,
}

impl Default for SiteFabric {
    fn default() -> SiteFabric {
        SiteFabric {
            nvlink_rtt_ns: 2_000,
            leaf_rtt_ns: 5_000,
            spine_rtt_ns: 9_000,
            core_rtt_ns: 14_000,
            pcie_gbit_per_s: 256,
        }
    }
}

/// A site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteDesc {
    /// Unique site name (`syd1`).
    pub name: String,
    /// Jurisdiction code (`AU`).
    pub jurisdiction: String,
    /// Region label (`ap-southeast-2`); informative.
    pub region: String,
    /// Intra-site latencies.
    pub fabric: SiteFabric,
}

/// A network interface of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicDesc {
    /// Interface name (`mlx5_0`, `eth0`).
    pub name: String,
    /// Line rate.
    pub gbit_per_s: u32,
}

/// A GPU of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuDesc {
    /// Model name; must be declared in [`TopologyDesc::models`].
    pub model: String,
    /// Whether the GPU is in MIG mode (then it serves only MIG requests).
    pub mig: bool,
}

/// A node and its position in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDesc {
    /// Unique node name.
    pub name: String,
    /// Site name.
    pub site: String,
    /// Spine name, unique within the site.
    pub spine: String,
    /// Leaf name, unique within the site.
    pub leaf: String,
    /// NVLink domain name, unique within the site; `None` means the node is its own domain.
    pub nvlink_domain: Option<String>,
    /// CPU in milli-CPU.
    pub cpu_milli: u64,
    /// Memory.
    pub memory_mib: u64,
    /// GPUs in local index order.
    pub gpus: Vec<GpuDesc>,
    /// Network interfaces.
    pub nics: Vec<NicDesc>,
}

/// One entry of the inter-site matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteLinkDesc {
    /// One site.
    pub a: String,
    /// The other site.
    pub b: String,
    /// Round-trip time.
    pub rtt_ns: u64,
    /// Bandwidth available between the sites.
    pub gbit_per_s: u32,
}

/// Everything needed to build a [`Topology`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyDesc {
    /// GPU models.
    pub models: Vec<GpuModelDesc>,
    /// Sites.
    pub sites: Vec<SiteDesc>,
    /// Nodes.
    pub nodes: Vec<NodeDesc>,
    /// Inter-site RTT/bandwidth entries; `a→b` and `b→a` may both be given and must agree.
    pub site_links: Vec<SiteLinkDesc>,
}

/// Why a description is not a valid topology. Messages are one line, lower case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// No site declared.
    #[error("inventory declares no sites")]
    NoSites,
    /// A site name appears twice.
    #[error("duplicate site {0:?}")]
    DuplicateSite(String),
    /// A jurisdiction code is malformed.
    #[error("site {site:?}: {message}")]
    BadJurisdiction {
        /// Site.
        site: String,
        /// What is wrong.
        message: String,
    },
    /// More than [`JURISDICTIONS_MAX`] jurisdictions.
    #[error("too many jurisdictions: at most {JURISDICTIONS_MAX} are supported")]
    TooManyJurisdictions,
    /// A GPU model appears twice.
    #[error("duplicate gpu model {0:?}")]
    DuplicateModel(String),
    /// A node references an undeclared GPU model.
    #[error("node {node:?}: unknown gpu model {model:?}")]
    UnknownModel {
        /// Node.
        node: String,
        /// Model.
        model: String,
    },
    /// A node references an undeclared site.
    #[error("node {node:?}: unknown site {site:?}")]
    UnknownSite {
        /// Node.
        node: String,
        /// Site.
        site: String,
    },
    /// A node name appears twice.
    #[error("duplicate node {0:?}")]
    DuplicateNode(String),
    /// A node has no usable name.
    #[error("a node has an empty name")]
    EmptyNodeName,
    /// Too many GPUs on one node.
    #[error("node {node:?}: {count} gpus, at most {GPUS_PER_NODE_MAX} are supported per node")]
    TooManyGpus {
        /// Node.
        node: String,
        /// Declared count.
        count: usize,
    },
    /// A MIG-mode GPU on a model without MIG profiles.
    #[error("node {node:?}: gpu model {model:?} is not mig-capable")]
    NotMigCapable {
        /// Node.
        node: String,
        /// Model.
        model: String,
    },
    /// A leaf declared under two spines.
    #[error("site {site:?}: leaf {leaf:?} is under spine {first:?} and spine {second:?}")]
    LeafTwoSpines {
        /// Site.
        site: String,
        /// Leaf.
        leaf: String,
        /// First spine seen.
        first: String,
        /// Conflicting spine.
        second: String,
    },
    /// An NVLink domain spanning leaves.
    #[error("site {site:?}: nvlink domain {domain:?} spans leaves {first:?} and {second:?}")]
    DomainTwoLeaves {
        /// Site.
        site: String,
        /// Domain.
        domain: String,
        /// First leaf.
        first: String,
        /// Second leaf.
        second: String,
    },
    /// A link names an undeclared site.
    #[error("site link {a:?}-{b:?}: unknown site {unknown:?}")]
    LinkUnknownSite {
        /// Side a.
        a: String,
        /// Side b.
        b: String,
        /// The unknown one.
        unknown: String,
    },
    /// A link from a site to itself with nonzero RTT.
    #[error("site link {0:?}-{0:?}: rtt to itself must be 0")]
    SelfLink(String),
    /// The RTT matrix is not symmetric.
    #[error("rtt matrix not symmetric: {a}->{b} is {ab_ns} ns but {b}->{a} is {ba_ns} ns")]
    AsymmetricRtt {
        /// Side a.
        a: String,
        /// Side b.
        b: String,
        /// RTT a→b.
        ab_ns: u64,
        /// RTT b→a.
        ba_ns: u64,
    },
    /// Bandwidth differs by direction.
    #[error("bandwidth matrix not symmetric between {a} and {b}")]
    AsymmetricBandwidth {
        /// Side a.
        a: String,
        /// Side b.
        b: String,
    },
    /// Two sites without an RTT entry.
    #[error("no rtt given between sites {a:?} and {b:?}")]
    MissingRtt {
        /// Side a.
        a: String,
        /// Side b.
        b: String,
    },
    /// A numeric field is out of range.
    #[error("{0}")]
    OutOfRange(String),
}

// ---------------------------------------------------------------------------------------------
// The built model.

/// A GPU model.
#[derive(Clone, Debug)]
pub struct GpuModel {
    /// Name.
    pub name: String,
    /// Device memory.
    pub memory_mib: u64,
    /// NVLink bandwidth; 0 without NVLink.
    pub nvlink_gbit_per_s: u32,
    /// MIG profiles (empty: not MIG-capable).
    pub mig_profiles: Vec<MigProfile>,
}

/// A site.
#[derive(Clone, Debug)]
pub struct Site {
    /// Name.
    pub name: String,
    /// Index into [`Topology::jurisdictions`].
    pub jurisdiction: u8,
    /// Region label.
    pub region: String,
    /// Intra-site latencies.
    pub fabric: SiteFabric,
    /// Spines of the site.
    pub spines: Range<u32>,
    /// Leaves of the site.
    pub leaves: Range<u32>,
    /// NVLink domains of the site.
    pub domains: Range<u32>,
    /// Nodes of the site.
    pub nodes: Range<u32>,
}

/// A spine.
#[derive(Clone, Debug)]
pub struct Spine {
    /// Name (unique within its site).
    pub name: String,
    /// Site.
    pub site: SiteId,
    /// Leaves.
    pub leaves: Range<u32>,
    /// Nodes.
    pub nodes: Range<u32>,
}

/// A leaf.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Name (unique within its site).
    pub name: String,
    /// Site.
    pub site: SiteId,
    /// Spine.
    pub spine: SpineId,
    /// NVLink domains.
    pub domains: Range<u32>,
    /// Nodes.
    pub nodes: Range<u32>,
}

/// An NVLink domain.
#[derive(Clone, Debug)]
pub struct NvlDomain {
    /// Name (the node's name for single-node domains).
    pub name: String,
    /// Site.
    pub site: SiteId,
    /// Leaf.
    pub leaf: LeafId,
    /// Nodes.
    pub nodes: Range<u32>,
}

/// A network interface.
#[derive(Clone, Debug)]
pub struct Nic {
    /// Interface name.
    pub name: String,
    /// Line rate.
    pub gbit_per_s: u32,
}

/// A node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Site.
    pub site: SiteId,
    /// Spine.
    pub spine: SpineId,
    /// Leaf.
    pub leaf: LeafId,
    /// NVLink domain.
    pub domain: DomainId,
    /// GPUs (global ids, contiguous).
    pub gpus: Range<u32>,
    /// CPU.
    pub cpu_milli: u64,
    /// Memory.
    pub memory_mib: u64,
    /// NICs.
    pub nics: Vec<Nic>,
    /// Sum of NIC line rates.
    pub nic_gbit_per_s: u32,
    /// GPU model when all GPUs share one; `None` for GPU-less or mixed nodes.
    pub model: Option<ModelId>,
}

impl Node {
    /// Number of GPUs.
    pub fn gpu_count(&self) -> u32 {
        self.gpus.end - self.gpus.start
    }
}

/// A GPU.
#[derive(Clone, Debug)]
pub struct Gpu {
    /// Node.
    pub node: NodeId,
    /// Index on the node (0-based, NVML order).
    pub local: u8,
    /// Model.
    pub model: ModelId,
    /// MIG mode.
    pub mig: bool,
}

/// The validated, indexed topology. See the module docs for the numbering invariant.
#[derive(Clone, Debug)]
pub struct Topology {
    jurisdictions: Vec<Jurisdiction>,
    models: Vec<GpuModel>,
    sites: Vec<Site>,
    spines: Vec<Spine>,
    leaves: Vec<Leaf>,
    domains: Vec<NvlDomain>,
    nodes: Vec<Node>,
    gpus: Vec<Gpu>,
    /// Row-major `sites × sites`.
    site_rtt_ns: Vec<u64>,
    /// Row-major `sites × sites`.
    site_gbit_per_s: Vec<u32>,
    node_by_name: BTreeMap<String, NodeId>,
    desc: TopologyDesc,
}

impl Topology {
    /// Validates `desc` and builds the indexed topology.
    pub fn build(desc: TopologyDesc) -> Result<Topology, TopologyError> {
        build(desc)
    }

    /// The description this topology was built from (with measured RTTs folded in).
    pub fn desc(&self) -> &TopologyDesc {
        &self.desc
    }

    /// Interned jurisdictions, in first-seen site order.
    pub fn jurisdictions(&self) -> &[Jurisdiction] {
        &self.jurisdictions
    }

    /// The index of a jurisdiction, if any site is in it.
    pub fn jurisdiction_idx(&self, j: Jurisdiction) -> Option<u8> {
        self.jurisdictions
            .iter()
            .position(|&x| x == j)
            .map(|i| i as u8)
    }

    /// The mask of the given codes. Codes no site belongs to are dropped (fail closed).
    pub fn jurisdiction_mask(&self, codes: &[Jurisdiction]) -> JurisdictionMask {
        let mut mask = JurisdictionMask::EMPTY;
        for &code in codes {
            if let Some(idx) = self.jurisdiction_idx(code) {
                mask.insert(idx);
            }
        }
        mask
    }

    /// The jurisdiction of a site.
    pub fn site_jurisdiction(&self, site: SiteId) -> Jurisdiction {
        self.jurisdictions[self.sites[site.idx()].jurisdiction as usize]
    }

    /// GPU models.
    pub fn models(&self) -> &[GpuModel] {
        &self.models
    }

    /// A model by name (case-insensitive).
    pub fn model_by_name(&self, name: &str) -> Option<ModelId> {
        self.models
            .iter()
            .position(|m| m.name.eq_ignore_ascii_case(name))
            .map(ModelId::from_idx)
    }

    /// A model.
    pub fn model(&self, id: ModelId) -> &GpuModel {
        &self.models[id.idx()]
    }

    /// Sites.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// A site.
    pub fn site(&self, id: SiteId) -> &Site {
        &self.sites[id.idx()]
    }

    /// A site by name.
    pub fn site_by_name(&self, name: &str) -> Option<SiteId> {
        self.sites
            .iter()
            .position(|s| s.name == name)
            .map(SiteId::from_idx)
    }

    /// Spines.
    pub fn spines(&self) -> &[Spine] {
        &self.spines
    }

    /// Leaves.
    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    /// NVLink domains.
    pub fn domains(&self) -> &[NvlDomain] {
        &self.domains
    }

    /// Nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A node.
    #[inline]
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.idx()]
    }

    /// A node by name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.node_by_name.get(name).copied()
    }

    /// All GPUs.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// A GPU.
    #[inline]
    pub fn gpu(&self, id: GpuId) -> &Gpu {
        &self.gpus[id.idx()]
    }

    /// The GPU with local index `local` on `node`.
    pub fn node_gpu(&self, node: NodeId, local: u8) -> GpuId {
        let range = &self.nodes[node.idx()].gpus;
        assert!((local as u32) < range.end - range.start);
        GpuId(range.start + local as u32)
    }

    /// Number of subtrees at `level`.
    pub fn subtree_count(&self, level: Level) -> usize {
        match level {
            Level::Node => self.nodes.len(),
            Level::NvlDomain => self.domains.len(),
            Level::Leaf => self.leaves.len(),
            Level::Spine => self.spines.len(),
            Level::Site => self.sites.len(),
        }
    }

    /// The index of the subtree at `level` that contains `node`.
    #[inline]
    pub fn subtree_of(&self, level: Level, node: NodeId) -> usize {
        let n = &self.nodes[node.idx()];
        match level {
            Level::Node => node.idx(),
            Level::NvlDomain => n.domain.idx(),
            Level::Leaf => n.leaf.idx(),
            Level::Spine => n.spine.idx(),
            Level::Site => n.site.idx(),
        }
    }

    /// The nodes of subtree `idx` at `level`, as an id range.
    #[inline]
    pub fn subtree_nodes(&self, level: Level, idx: usize) -> Range<usize> {
        let r = match level {
            Level::Node => idx as u32..idx as u32 + 1,
            Level::NvlDomain => self.domains[idx].nodes.clone(),
            Level::Leaf => self.leaves[idx].nodes.clone(),
            Level::Spine => self.spines[idx].nodes.clone(),
            Level::Site => self.sites[idx].nodes.clone(),
        };
        r.start as usize..r.end as usize
    }

    /// The site of subtree `idx` at `level`.
    pub fn subtree_site(&self, level: Level, idx: usize) -> SiteId {
        let first = self.subtree_nodes(level, idx).start;
        self.nodes[first].site
    }

    /// The display name of subtree `idx` at `level` (`site/spine/leaf` style).
    pub fn subtree_name(&self, level: Level, idx: usize) -> String {
        match level {
            Level::Node => self.nodes[idx].name.clone(),
            Level::NvlDomain => {
                let d = &self.domains[idx];
                format!("{}/{}", self.sites[d.site.idx()].name, d.name)
            }
            Level::Leaf => {
                let l = &self.leaves[idx];
                format!("{}/{}", self.sites[l.site.idx()].name, l.name)
            }
            Level::Spine => {
                let s = &self.spines[idx];
                format!("{}/{}", self.sites[s.site.idx()].name, s.name)
            }
            Level::Site => self.sites[idx].name.clone(),
        }
    }

    /// The sites whose jurisdiction is in `mask`.
    pub fn sites_in(&self, mask: JurisdictionMask) -> impl Iterator<Item = SiteId> + '_ {
        self.sites
            .iter()
            .enumerate()
            .filter(move |(_, s)| mask.contains(s.jurisdiction))
            .map(|(i, _)| SiteId::from_idx(i))
    }

    /// The lowest level at which two nodes share a subtree; `None` when in different sites.
    pub fn common_level(&self, a: NodeId, b: NodeId) -> Option<Level> {
        let (na, nb) = (&self.nodes[a.idx()], &self.nodes[b.idx()]);
        if a == b {
            Some(Level::Node)
        } else if na.domain == nb.domain {
            Some(Level::NvlDomain)
        } else if na.leaf == nb.leaf {
            Some(Level::Leaf)
        } else if na.spine == nb.spine {
            Some(Level::Spine)
        } else if na.site == nb.site {
            Some(Level::Site)
        } else {
            None
        }
    }

    /// Round-trip time between two sites.
    #[inline]
    pub fn site_rtt_ns(&self, a: SiteId, b: SiteId) -> u64 {
        self.site_rtt_ns[a.idx() * self.sites.len() + b.idx()]
    }

    /// Bandwidth between two sites.
    pub fn site_gbit_per_s(&self, a: SiteId, b: SiteId) -> u32 {
        self.site_gbit_per_s[a.idx() * self.sites.len() + b.idx()]
    }

    /// Round-trip time between two nodes (0 for the same node).
    pub fn node_rtt_ns(&self, a: NodeId, b: NodeId) -> u64 {
        let site = self.nodes[a.idx()].site;
        let fabric = &self.sites[site.idx()].fabric;
        match self.common_level(a, b) {
            Some(Level::Node) => 0,
            Some(Level::NvlDomain) => fabric.nvlink_rtt_ns,
            Some(Level::Leaf) => fabric.leaf_rtt_ns,
            Some(Level::Spine) => fabric.spine_rtt_ns,
            Some(Level::Site) => fabric.core_rtt_ns,
            None => self.site_rtt_ns(site, self.nodes[b.idx()].site),
        }
    }

    /// Round-trip time between two GPUs.
    pub fn gpu_rtt_ns(&self, a: GpuId, b: GpuId) -> u64 {
        if a == b {
            return 0;
        }
        let (na, nb) = (self.gpus[a.idx()].node, self.gpus[b.idx()].node);
        if na == nb {
            return self.sites[self.nodes[na.idx()].site.idx()]
                .fabric
                .nvlink_rtt_ns;
        }
        self.node_rtt_ns(na, nb)
    }

    /// Bandwidth between two GPUs: NVLink (or PCIe) inside an NVLink domain, otherwise the
    /// slower of the two nodes' NICs, capped by the inter-site link across sites.
    pub fn gpu_gbit_per_s(&self, a: GpuId, b: GpuId) -> u32 {
        let (ga, gb) = (&self.gpus[a.idx()], &self.gpus[b.idx()]);
        let (na, nb) = (&self.nodes[ga.node.idx()], &self.nodes[gb.node.idx()]);
        if na.domain == nb.domain {
            let nvlink = self.models[ga.model.idx()]
                .nvlink_gbit_per_s
                .min(self.models[gb.model.idx()].nvlink_gbit_per_s);
            if nvlink > 0 {
                return nvlink;
            }
            if ga.node == gb.node {
                return self.sites[na.site.idx()].fabric.pcie_gbit_per_s;
            }
        }
        let nic = na.nic_gbit_per_s.min(nb.nic_gbit_per_s);
        if na.site == nb.site {
            nic
        } else {
            nic.min(self.site_gbit_per_s(na.site, nb.site))
        }
    }

    /// Records a measured RTT between two sites (both directions).
    pub fn set_site_rtt_ns(&mut self, a: SiteId, b: SiteId, rtt_ns: u64) {
        assert!(a != b || rtt_ns == 0);
        let n = self.sites.len();
        self.site_rtt_ns[a.idx() * n + b.idx()] = rtt_ns;
        self.site_rtt_ns[b.idx() * n + a.idx()] = rtt_ns;
        let (name_a, name_b) = (&self.sites[a.idx()].name, &self.sites[b.idx()].name);
        let existing = self
            .desc
            .site_links
            .iter_mut()
            .find(|l| (&l.a == name_a && &l.b == name_b) || (&l.a == name_b && &l.b == name_a));
        match existing {
            Some(link) => link.rtt_ns = rtt_ns,
            None => self.desc.site_links.push(SiteLinkDesc {
                a: name_a.clone(),
                b: name_b.clone(),
                rtt_ns,
                gbit_per_s: self.site_gbit_per_s(a, b),
            }),
        }
        // Keep exactly one entry per pair so the description stays symmetric.
        let (name_a, name_b) = (name_a.clone(), name_b.clone());
        let mut seen = false;
        self.desc.site_links.retain(|l| {
            let pair = (l.a == name_a && l.b == name_b) || (l.a == name_b && l.b == name_a);
            if !pair {
                return true;
            }
            let keep = !seen;
            seen = true;
            keep
        });
    }

    /// Total GPUs.
    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Builder.

fn build(desc: TopologyDesc) -> Result<Topology, TopologyError> {
    if desc.sites.is_empty() {
        return Err(TopologyError::NoSites);
    }
    // Models.
    let mut models: Vec<GpuModel> = Vec::with_capacity(desc.models.len());
    for m in &desc.models {
        if models.iter().any(|x| x.name.eq_ignore_ascii_case(&m.name)) {
            return Err(TopologyError::DuplicateModel(m.name.clone()));
        }
        for p in &m.mig_profiles {
            if p.compute_slices == 0
                || p.compute_slices > MIG_COMPUTE_SLICES
                || p.memory_slices == 0
                || p.memory_slices > MIG_MEMORY_SLICES
            {
                return Err(TopologyError::OutOfRange(format!(
                    "gpu model {:?}: mig profile {:?} uses {} compute and {} memory slices, \
                     at most {MIG_COMPUTE_SLICES} and {MIG_MEMORY_SLICES}",
                    m.name, p.name, p.compute_slices, p.memory_slices
                )));
            }
        }
        models.push(GpuModel {
            name: m.name.clone(),
            memory_mib: m.memory_mib,
            nvlink_gbit_per_s: m.nvlink_gbit_per_s,
            mig_profiles: m.mig_profiles.clone(),
        });
    }
    // Sites and jurisdictions.
    let mut jurisdictions: Vec<Jurisdiction> = Vec::new();
    let mut site_jurisdiction: Vec<u8> = Vec::with_capacity(desc.sites.len());
    for (i, s) in desc.sites.iter().enumerate() {
        if desc.sites[..i].iter().any(|x| x.name == s.name) {
            return Err(TopologyError::DuplicateSite(s.name.clone()));
        }
        let j = Jurisdiction::parse(&s.jurisdiction).map_err(|message| {
            TopologyError::BadJurisdiction {
                site: s.name.clone(),
                message,
            }
        })?;
        let idx = match jurisdictions.iter().position(|&x| x == j) {
            Some(idx) => idx,
            None => {
                if jurisdictions.len() == JURISDICTIONS_MAX {
                    return Err(TopologyError::TooManyJurisdictions);
                }
                jurisdictions.push(j);
                jurisdictions.len() - 1
            }
        };
        site_jurisdiction.push(idx as u8);
    }
    let site_idx = |name: &str| desc.sites.iter().position(|s| s.name == name);

    // Nodes: validate and compute the tree-order sort key.
    let mut node_names: BTreeMap<&str, usize> = BTreeMap::new();
    // Per site: spine order, leaf order (and leaf→spine), domain order (and domain→leaf).
    let n_sites = desc.sites.len();
    let mut spine_order: Vec<Vec<&str>> = vec![Vec::new(); n_sites];
    let mut leaf_order: Vec<Vec<(&str, &str)>> = vec![Vec::new(); n_sites];
    let mut domain_order: Vec<Vec<(&str, &str)>> = vec![Vec::new(); n_sites];
    let mut keys: Vec<(usize, usize, usize, usize, usize)> = Vec::with_capacity(desc.nodes.len());
    for (pos, n) in desc.nodes.iter().enumerate() {
        if n.name.is_empty() {
            return Err(TopologyError::EmptyNodeName);
        }
        if node_names.insert(&n.name, pos).is_some() {
            return Err(TopologyError::DuplicateNode(n.name.clone()));
        }
        let site = site_idx(&n.site).ok_or_else(|| TopologyError::UnknownSite {
            node: n.name.clone(),
            site: n.site.clone(),
        })?;
        if n.gpus.len() > GPUS_PER_NODE_MAX {
            return Err(TopologyError::TooManyGpus {
                node: n.name.clone(),
                count: n.gpus.len(),
            });
        }
        for g in &n.gpus {
            let Some(m) = models
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(&g.model))
            else {
                return Err(TopologyError::UnknownModel {
                    node: n.name.clone(),
                    model: g.model.clone(),
                });
            };
            if g.mig && m.mig_profiles.is_empty() {
                return Err(TopologyError::NotMigCapable {
                    node: n.name.clone(),
                    model: g.model.clone(),
                });
            }
        }
        let spine_pos = match spine_order[site].iter().position(|&s| s == n.spine) {
            Some(p) => p,
            None => {
                spine_order[site].push(&n.spine);
                spine_order[site].len() - 1
            }
        };
        let leaf_pos = match leaf_order[site].iter().position(|&(l, _)| l == n.leaf) {
            Some(p) => {
                let first = leaf_order[site][p].1;
                if first != n.spine {
                    return Err(TopologyError::LeafTwoSpines {
                        site: n.site.clone(),
                        leaf: n.leaf.clone(),
                        first: first.to_string(),
                        second: n.spine.clone(),
                    });
                }
                p
            }
            None => {
                leaf_order[site].push((&n.leaf, &n.spine));
                leaf_order[site].len() - 1
            }
        };
        let domain_name: &str = n.nvlink_domain.as_deref().unwrap_or(&n.name);
        let domain_pos = match domain_order[site]
            .iter()
            .position(|&(d, _)| d == domain_name)
        {
            Some(p) => {
                let first = domain_order[site][p].1;
                if first != n.leaf {
                    return Err(TopologyError::DomainTwoLeaves {
                        site: n.site.clone(),
                        domain: domain_name.to_string(),
                        first: first.to_string(),
                        second: n.leaf.clone(),
                    });
                }
                p
            }
            None => {
                domain_order[site].push((domain_name, &n.leaf));
                domain_order[site].len() - 1
            }
        };
        keys.push((site, spine_pos, leaf_pos, domain_pos, pos));
    }
    keys.sort_unstable();

    // Site matrix.
    let mut rtt: Vec<Option<u64>> = vec![None; n_sites * n_sites];
    let mut gbit: Vec<Option<u32>> = vec![None; n_sites * n_sites];
    for i in 0..n_sites {
        rtt[i * n_sites + i] = Some(0);
        gbit[i * n_sites + i] = Some(u32::MAX);
    }
    for link in &desc.site_links {
        let a = site_idx(&link.a).ok_or_else(|| TopologyError::LinkUnknownSite {
            a: link.a.clone(),
            b: link.b.clone(),
            unknown: link.a.clone(),
        })?;
        let b = site_idx(&link.b).ok_or_else(|| TopologyError::LinkUnknownSite {
            a: link.a.clone(),
            b: link.b.clone(),
            unknown: link.b.clone(),
        })?;
        if a == b {
            if link.rtt_ns != 0 {
                return Err(TopologyError::SelfLink(link.a.clone()));
            }
            continue;
        }
        // Symmetry: an entry in either direction fixes both.
        for (x, y) in [(a, b), (b, a)] {
            match rtt[x * n_sites + y] {
                Some(existing) if existing != link.rtt_ns => {
                    return Err(TopologyError::AsymmetricRtt {
                        a: desc.sites[y].name.clone(),
                        b: desc.sites[x].name.clone(),
                        ab_ns: existing,
                        ba_ns: link.rtt_ns,
                    });
                }
                _ => rtt[x * n_sites + y] = Some(link.rtt_ns),
            }
            match gbit[x * n_sites + y] {
                Some(existing) if existing != link.gbit_per_s => {
                    return Err(TopologyError::AsymmetricBandwidth {
                        a: desc.sites[x].name.clone(),
                        b: desc.sites[y].name.clone(),
                    });
                }
                _ => gbit[x * n_sites + y] = Some(link.gbit_per_s),
            }
        }
    }
    let mut site_rtt_ns = Vec::with_capacity(n_sites * n_sites);
    let mut site_gbit_per_s = Vec::with_capacity(n_sites * n_sites);
    for a in 0..n_sites {
        for b in 0..n_sites {
            match rtt[a * n_sites + b] {
                Some(v) => site_rtt_ns.push(v),
                None => {
                    return Err(TopologyError::MissingRtt {
                        a: desc.sites[a].name.clone(),
                        b: desc.sites[b].name.clone(),
                    })
                }
            }
            site_gbit_per_s.push(gbit[a * n_sites + b].unwrap_or(0));
        }
    }

    // Arenas in tree order.
    let mut sites: Vec<Site> = Vec::with_capacity(n_sites);
    let mut spines: Vec<Spine> = Vec::new();
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut domains: Vec<NvlDomain> = Vec::new();
    let mut nodes: Vec<Node> = Vec::with_capacity(desc.nodes.len());
    let mut gpus: Vec<Gpu> = Vec::new();
    for (i, s) in desc.sites.iter().enumerate() {
        sites.push(Site {
            name: s.name.clone(),
            jurisdiction: site_jurisdiction[i],
            region: s.region.clone(),
            fabric: s.fabric,
            spines: 0..0,
            leaves: 0..0,
            domains: 0..0,
            nodes: 0..0,
        });
    }
    let mut cursor = 0usize;
    for site in 0..n_sites {
        let site_start = (spines.len(), leaves.len(), domains.len(), nodes.len());
        while cursor < keys.len() && keys[cursor].0 == site {
            let spine_pos = keys[cursor].1;
            let spine_start = (leaves.len(), nodes.len());
            let spine_id = SpineId::from_idx(spines.len());
            while cursor < keys.len() && keys[cursor].0 == site && keys[cursor].1 == spine_pos {
                let leaf_pos = keys[cursor].2;
                let leaf_start = (domains.len(), nodes.len());
                let leaf_id = LeafId::from_idx(leaves.len());
                while cursor < keys.len()
                    && keys[cursor].0 == site
                    && keys[cursor].1 == spine_pos
                    && keys[cursor].2 == leaf_pos
                {
                    let domain_pos = keys[cursor].3;
                    let domain_start = nodes.len();
                    let domain_id = DomainId::from_idx(domains.len());
                    while cursor < keys.len()
                        && keys[cursor].0 == site
                        && keys[cursor].1 == spine_pos
                        && keys[cursor].2 == leaf_pos
                        && keys[cursor].3 == domain_pos
                    {
                        let nd = &desc.nodes[keys[cursor].4];
                        let node_id = NodeId::from_idx(nodes.len());
                        let gpu_start = gpus.len() as u32;
                        let mut model: Option<ModelId> = None;
                        let mut mixed = false;
                        for (local, g) in nd.gpus.iter().enumerate() {
                            let m = models
                                .iter()
                                .position(|m| m.name.eq_ignore_ascii_case(&g.model))
                                .map(ModelId::from_idx)
                                .expect("validated above");
                            match model {
                                None if !mixed => model = Some(m),
                                Some(x) if x != m => {
                                    model = None;
                                    mixed = true;
                                }
                                _ => {}
                            }
                            gpus.push(Gpu {
                                node: node_id,
                                local: local as u8,
                                model: m,
                                mig: g.mig,
                            });
                        }
                        let nics: Vec<Nic> = nd
                            .nics
                            .iter()
                            .map(|n| Nic {
                                name: n.name.clone(),
                                gbit_per_s: n.gbit_per_s,
                            })
                            .collect();
                        let nic_gbit_per_s = nics
                            .iter()
                            .map(|n| n.gbit_per_s)
                            .fold(0u32, u32::saturating_add);
                        nodes.push(Node {
                            name: nd.name.clone(),
                            site: SiteId::from_idx(site),
                            spine: spine_id,
                            leaf: leaf_id,
                            domain: domain_id,
                            gpus: gpu_start..gpus.len() as u32,
                            cpu_milli: nd.cpu_milli,
                            memory_mib: nd.memory_mib,
                            nics,
                            nic_gbit_per_s,
                            model,
                        });
                        cursor += 1;
                    }
                    domains.push(NvlDomain {
                        name: domain_order[site][domain_pos].0.to_string(),
                        site: SiteId::from_idx(site),
                        leaf: leaf_id,
                        nodes: domain_start as u32..nodes.len() as u32,
                    });
                }
                leaves.push(Leaf {
                    name: leaf_order[site][leaf_pos].0.to_string(),
                    site: SiteId::from_idx(site),
                    spine: spine_id,
                    domains: leaf_start.0 as u32..domains.len() as u32,
                    nodes: leaf_start.1 as u32..nodes.len() as u32,
                });
            }
            spines.push(Spine {
                name: spine_order[site][spine_pos].to_string(),
                site: SiteId::from_idx(site),
                leaves: spine_start.0 as u32..leaves.len() as u32,
                nodes: spine_start.1 as u32..nodes.len() as u32,
            });
        }
        let s = &mut sites[site];
        s.spines = site_start.0 as u32..spines.len() as u32;
        s.leaves = site_start.1 as u32..leaves.len() as u32;
        s.domains = site_start.2 as u32..domains.len() as u32;
        s.nodes = site_start.3 as u32..nodes.len() as u32;
    }
    assert_eq!(cursor, keys.len());
    assert_eq!(nodes.len(), desc.nodes.len());
    let node_by_name = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), NodeId::from_idx(i)))
        .collect();
    Ok(Topology {
        jurisdictions,
        models,
        sites,
        spines,
        leaves,
        domains,
        nodes,
        gpus,
        site_rtt_ns,
        site_gbit_per_s,
        node_by_name,
        desc,
    })
}
