//! Property tests of placement and the replicated state machine, over random topologies
//! (1 to 4 sites in random jurisdictions, random spines, leaves and nodes, MIG GPUs, mixed
//! models, multi-node NVLink domains) and random command sequences.
//!
//! Properties:
//! - placement is a pure function: same view, job and seed give the same `Placement`;
//! - a plan never oversubscribes a GPU, a milli-GPU share, a MIG slice, CPU or memory, never
//!   leaves the job's allowed jurisdictions, and honours its model, required topology level,
//!   site-crossing rule, gang max RTT and inference latency SLO;
//! - a batch job that is not placed truly fits nowhere eligible, and a whole-GPU batch job
//!   lands on a node with the fewest free GPUs among those it fits (best fit);
//! - after every applied entry: the ledger equals a recount of the allocations, gangs are all
//!   or nothing, every allocation satisfies its job's constraints, and two replicas fed the
//!   same entries reach the same state hash; a snapshot restores to the same hash, and the
//!   restored replica keeps up with the original.
//!
//! Seeds: `SOVRA_SEED=<u64>` seeds the proptest RNG (a fixed seed otherwise, so CI is stable);
//! a failure prints the seed and the command that reproduces it. Try new seeds with
//! `SOVRA_SEED=$RANDOM cargo test -p sovra-scheduler --test properties`.
//!
//! Inter-site RTTs are drawn from 1 to 120 ms, always above intra-site RTTs (a few us);
//! `gang_max_rtt_across_sites_counts_intra_site_rtt` in `placement.rs` covers the other case.

mod common;

use std::fmt::Debug;

use common::*;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{
    Config, RngAlgorithm, TestCaseError, TestCaseResult, TestRng, TestRunner,
};
use sovra_fabric::topology::{
    GpuDesc, NicDesc, NodeDesc, MIG_COMPUTE_SLICES, MIG_MEMORY_SLICES, MILLI_PER_GPU,
};
use sovra_fabric::{GpuId, GpuTake, Ledger, Level, NodeId, SiteId, Take, Topology, TopologyDesc};
use sovra_scheduler::core::job::{
    Affinity, GangSpec, GpuRequest, InferenceSpec, JobId, JobSpec, LatencySlo, TopologyRule,
    Workload,
};
use sovra_scheduler::core::placement::fgd::WorkloadShape;
use sovra_scheduler::core::placement::{
    place, ClusterView, Outcome, PendingReason, PolicyConfig, SharePolicy, TargetWorkload,
};
use sovra_scheduler::core::snapshot::{from_blob, to_blob};
use sovra_scheduler::core::state::{
    Applied, Command, Entry, ExitStatus, JobState, NodeState, RequestId, StateMachine,
    PASS_PLANS_MAX,
};

const DEFAULT_SEED: u64 = 0x50F7_A5EE_D000_0001;
const JURISDICTIONS: [&str; 4] = ["AU", "JP", "SG", "MY"];
/// Jurisdictions jobs may ask for: the topology's, plus one no site is in.
const JOB_JURISDICTIONS: [&str; 5] = ["AU", "JP", "SG", "MY", "XX"];

// ---------------------------------------------------------------------------------------------
// Runner: seeded from SOVRA_SEED, failures name the seed.

fn seed() -> u64 {
    match std::env::var("SOVRA_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SOVRA_SEED={text:?}: not a u64")),
        Err(_) => DEFAULT_SEED,
    }
}

/// 32 ChaCha seed bytes from a u64 (SplitMix64).
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut x = seed;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn run_property<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let seed = seed();
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        max_global_rejects: cases,
        max_shrink_iters: 2_048,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
    let mut runner = TestRunner::new_with_rng(config, rng);
    if let Err(e) = runner.run(&strategy, test) {
        panic!(
            "property {name} failed with SOVRA_SEED={seed}\n\
             reproduce: SOVRA_SEED={seed} cargo test -p sovra-scheduler --test properties {name}\n\
             {e}"
        );
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(message()))
    }
}

// ---------------------------------------------------------------------------------------------
// Random topologies.

#[derive(Clone, Debug)]
enum NodeKind {
    H100(u32),
    /// A100s, the first `mig` of them in MIG mode.
    A100 {
        gpus: u32,
        mig: u32,
    },
    Gb200(u32),
    /// H100s followed by L40Ss on one node.
    Mixed {
        h100: u32,
        l40s: u32,
    },
    Cpu,
}

#[derive(Clone, Debug)]
struct NodeShape {
    kind: NodeKind,
    cpu_milli: u64,
    memory_mib: u64,
}

#[derive(Clone, Debug)]
struct LeafShape {
    nodes: Vec<NodeShape>,
    /// Nodes per multi-node NVLink domain; below 2, every node is its own domain.
    nvl_domain_nodes: usize,
}

#[derive(Clone, Debug)]
struct SiteShape {
    jurisdiction: usize,
    spines: Vec<Vec<LeafShape>>,
}

#[derive(Clone, Debug)]
struct TopologyShape {
    sites: Vec<SiteShape>,
    /// RTT in ms for each pair (i < j) of up to 4 sites, in order (0,1) (0,2) (0,3) (1,2) ...
    rtt_ms: Vec<u64>,
}

fn node_shape() -> impl Strategy<Value = NodeShape> {
    let kind = prop_oneof![
        4 => prop_oneof![Just(8u32), 1u32..=8].prop_map(NodeKind::H100),
        2 => (1u32..=4, 0u32..=4)
            .prop_map(|(gpus, mig)| NodeKind::A100 { gpus, mig: mig.min(gpus) }),
        2 => (1u32..=4).prop_map(NodeKind::Gb200),
        1 => (1u32..=4, 1u32..=4).prop_map(|(h100, l40s)| NodeKind::Mixed { h100, l40s }),
        1 => Just(NodeKind::Cpu),
    ];
    let cpu = select(vec![16_000u64, 64_000, 128_000, 128_000]);
    let memory = select(vec![65_536u64, 262_144, 1_048_576]);
    (kind, cpu, memory).prop_map(|(kind, cpu_milli, memory_mib)| NodeShape {
        kind,
        cpu_milli,
        memory_mib,
    })
}

fn leaf_shape() -> impl Strategy<Value = LeafShape> {
    (
        prop::collection::vec(node_shape(), 1..=4),
        select(vec![0usize, 0, 2, 3]),
    )
        .prop_map(|(nodes, nvl_domain_nodes)| LeafShape {
            nodes,
            nvl_domain_nodes,
        })
}

fn site_shape() -> impl Strategy<Value = SiteShape> {
    let spines = prop::collection::vec(prop::collection::vec(leaf_shape(), 1..=2), 1..=2);
    (0usize..JURISDICTIONS.len(), spines).prop_map(|(jurisdiction, spines)| SiteShape {
        jurisdiction,
        spines,
    })
}

fn topology_shape() -> impl Strategy<Value = TopologyShape> {
    (
        prop::collection::vec(site_shape(), 1..=4),
        prop::collection::vec(1u64..=120, 6),
    )
        .prop_map(|(sites, rtt_ms)| TopologyShape { sites, rtt_ms })
}

fn site_name(i: usize) -> String {
    format!("s{i}")
}

fn build_topology(shape: &TopologyShape) -> Topology {
    let mut desc = TopologyDesc {
        models: models(),
        ..TopologyDesc::default()
    };
    for (i, s) in shape.sites.iter().enumerate() {
        desc.sites
            .push(site(&site_name(i), JURISDICTIONS[s.jurisdiction]));
        for (p, leaves) in s.spines.iter().enumerate() {
            for (l, leaf) in leaves.iter().enumerate() {
                for (k, n) in leaf.nodes.iter().enumerate() {
                    let gpu = |model: &str, mig: bool| GpuDesc {
                        model: model.to_string(),
                        mig,
                    };
                    let gpus: Vec<GpuDesc> = match n.kind {
                        NodeKind::H100(g) => (0..g).map(|_| gpu("H100", false)).collect(),
                        NodeKind::A100 { gpus, mig } => {
                            (0..gpus).map(|g| gpu("A100", g < mig)).collect()
                        }
                        NodeKind::Gb200(g) => (0..g).map(|_| gpu("GB200", false)).collect(),
                        NodeKind::Mixed { h100, l40s } => (0..h100)
                            .map(|_| gpu("H100", false))
                            .chain((0..l40s).map(|_| gpu("L40S", false)))
                            .collect(),
                        NodeKind::Cpu => Vec::new(),
                    };
                    let nvlink_domain = (leaf.nvl_domain_nodes >= 2)
                        .then(|| format!("p{p}-l{l}-d{}", k / leaf.nvl_domain_nodes));
                    desc.nodes.push(NodeDesc {
                        name: format!("s{i}-p{p}-l{l}-n{k}"),
                        site: site_name(i),
                        spine: format!("p{p}"),
                        leaf: format!("p{p}-l{l}"),
                        nvlink_domain,
                        cpu_milli: n.cpu_milli,
                        memory_mib: n.memory_mib,
                        gpus,
                        nics: vec![NicDesc {
                            name: "mlx5_0".to_string(),
                            gbit_per_s: 400,
                        }],
                    });
                }
            }
        }
    }
    let mut pair = 0;
    for a in 0..shape.sites.len().min(4) {
        for b in a + 1..4 {
            if b < shape.sites.len() {
                desc.site_links
                    .push(link(&site_name(a), &site_name(b), shape.rtt_ms[pair]));
            }
            pair += 1;
        }
    }
    Topology::build(desc).expect("generated topology is valid")
}

// ---------------------------------------------------------------------------------------------
// Random jobs.

fn gpu_request() -> impl Strategy<Value = GpuRequest> {
    let profiles = vec![
        "1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb",
    ];
    prop_oneof![
        1 => Just(GpuRequest::None),
        4 => prop_oneof![3 => 1u32..=2, 1 => 1u32..=8].prop_map(GpuRequest::Whole),
        2 => prop_oneof![1u32..=999, select(vec![100u32, 250, 500, 900])]
            .prop_map(GpuRequest::Milli),
        1 => select(profiles).prop_map(|p| GpuRequest::Mig(p.to_string())),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    select(Level::ALL.to_vec())
}

fn workload() -> impl Strategy<Value = Workload> {
    let affinity = prop_oneof![Just(Affinity::Required), Just(Affinity::Preferred)];
    let max_rtt = prop::option::of(select(vec![
        3_000u64,
        6_000,
        10_000,
        20_000_000,
        100_000_000,
    ]));
    let gang = (
        1u32..=6,
        1u32..=8,
        prop::option::of(level()),
        affinity,
        max_rtt,
    )
        .prop_map(|(members, gpus_per_member, level, affinity, max_rtt_ns)| {
            Workload::Gang(GangSpec {
                members,
                gpus_per_member,
                topology: TopologyRule { level, affinity },
                max_rtt_ns,
            })
        });
    // Ingress site 8 names no site of any topology (see `JobGen::resolve`).
    let slo = prop::option::of((0usize..=8, 0u64..=120));
    let service =
        (1u32..=4, gpu_request(), slo, level()).prop_map(|(replicas, gpus, slo, spread)| {
            Workload::Inference(InferenceSpec {
                replicas,
                gpus,
                slo: slo.map(|(site, ms)| LatencySlo {
                    ingress_site: site_name(site),
                    max_rtt_ns: ms * 1_000_000,
                }),
                spread,
            })
        });
    prop_oneof![
        3 => gpu_request().prop_map(|gpus| Workload::Batch { gpus }),
        2 => gang,
        2 => service,
    ]
}

/// One allowed jurisdiction of a random job, resolved against the topology it runs on.
#[derive(Clone, Copy, Debug)]
enum JurisdictionPick {
    /// The jurisdiction of site `k % sites`.
    OfSite(usize),
    /// `JOB_JURISDICTIONS[k]`, which may be in no site (or be the unknown `XX`).
    Code(usize),
}

/// A random job before it meets a topology: jurisdictions and the SLO's ingress site are
/// picked relative to the sites there are.
#[derive(Clone, Debug)]
struct JobGen {
    spec: JobSpec,
    jurisdictions: Vec<JurisdictionPick>,
}

impl JobGen {
    fn resolve(&self, topology: &Topology) -> JobSpec {
        let n_sites = topology.sites().len();
        let mut spec = self.spec.clone();
        spec.jurisdictions = self
            .jurisdictions
            .iter()
            .map(|&pick| match pick {
                JurisdictionPick::OfSite(k) => {
                    topology.site_jurisdiction(SiteId::from_idx(k % n_sites))
                }
                JurisdictionPick::Code(k) => jur(JOB_JURISDICTIONS[k]),
            })
            .collect();
        spec.jurisdictions.sort_unstable();
        spec.jurisdictions.dedup();
        if let Workload::Inference(InferenceSpec { slo: Some(slo), .. }) = &mut spec.workload {
            // Ingress "s8" names no site; the others are taken modulo the sites there are.
            let k: usize = slo.ingress_site[1..].parse().expect("generated name");
            slo.ingress_site = if k < 8 {
                site_name(k % n_sites)
            } else {
                "nowhere".into()
            };
        }
        spec
    }
}

fn job_gen() -> impl Strategy<Value = JobGen> {
    let pick = prop_oneof![
        8 => (0usize..4).prop_map(JurisdictionPick::OfSite),
        2 => (0usize..JOB_JURISDICTIONS.len()).prop_map(JurisdictionPick::Code),
    ];
    let jurisdictions = prop_oneof![
        // Rarely none at all: an invalid spec.
        1 => Just(Vec::new()),
        30 => prop::collection::vec(pick, 1..=2),
    ];
    let models = prop_oneof![
        12 => Just(vec![]),
        2 => Just(vec!["H100"]),
        2 => Just(vec!["gb200", "A100"]),
        1 => Just(vec!["L40S"]),
        1 => Just(vec!["B300"]),
    ];
    let cpu = select(vec![0u64, 1_000, 1_000, 4_000, 40_000]);
    let memory = select(vec![0u64, 4_096, 4_096, 100_000]);
    let limit = prop::option::of(select(vec![1u64, 5_000, 60_000]));
    (
        workload(),
        jurisdictions,
        models,
        cpu,
        memory,
        0u32..3,
        limit,
    )
        .prop_map(
            |(workload, jurisdictions, models, cpu_milli, memory_mib, priority, time_limit_ms)| {
                JobGen {
                    spec: JobSpec {
                        run: Default::default(),
                        name: "prop".to_string(),
                        tenant: "acme".to_string(),
                        priority,
                        jurisdictions: Vec::new(),
                        gpu_models: models.iter().map(|m| m.to_string()).collect(),
                        cpu_milli,
                        memory_mib,
                        time_limit_ms,
                        workload,
                        control: Default::default(),
                    },
                    jurisdictions,
                }
            },
        )
}

fn policy() -> impl Strategy<Value = PolicyConfig> {
    let fgd = SharePolicy::Fgd(TargetWorkload {
        shapes: vec![
            WorkloadShape {
                cpu_milli: 4_000,
                gpu_milli: 500,
                gpu_count: 1,
                model_mask: u64::MAX,
                weight: 600_000,
            },
            WorkloadShape {
                cpu_milli: 8_000,
                gpu_milli: 1_000,
                gpu_count: 2,
                model_mask: u64::MAX,
                weight: 300_000,
            },
            WorkloadShape {
                cpu_milli: 1_000,
                gpu_milli: 0,
                gpu_count: 0,
                model_mask: u64::MAX,
                weight: 100_000,
            },
        ],
        population: 0,
    });
    let share = prop_oneof![3 => Just(SharePolicy::BestFit), 1 => Just(fgd)];
    (
        share,
        select(vec![1usize, 3, 16]),
        select(vec![1usize, 8, 64, usize::MAX]),
    )
        .prop_map(|(share, candidate_limit, subtree_limit)| PolicyConfig {
            share,
            candidate_limit,
            subtree_limit,
        })
}

// ---------------------------------------------------------------------------------------------
// Property: placement on a random ledger.

/// Something already using a node, applied to the ledger when it fits.
#[derive(Clone, Debug)]
enum Use {
    Whole(usize, u32),
    Milli(usize, u8, u16),
    Mig(usize, u8, u8),
    Host(usize, u64, u64),
    Unschedulable(usize),
}

fn usage() -> impl Strategy<Value = Use> {
    prop_oneof![
        4 => (any::<usize>(), 1u32..=8).prop_map(|(n, k)| Use::Whole(n, k)),
        2 => (any::<usize>(), 0u8..8, 1u16..=999).prop_map(|(n, g, m)| Use::Milli(n, g, m)),
        1 => (any::<usize>(), 0u8..4, 1u8..=7).prop_map(|(n, g, s)| Use::Mig(n, g, s)),
        1 => (any::<usize>(), 0u64..=128_000, 0u64..=1_048_576)
            .prop_map(|(n, c, m)| Use::Host(n, c, m)),
        1 => any::<usize>().prop_map(Use::Unschedulable),
    ]
}

fn prepare(topology: &Topology, uses: &[Use]) -> Ledger {
    let mut ledger = Ledger::new(topology);
    let n_nodes = topology.nodes().len();
    for u in uses {
        let (node, take) = match *u {
            Use::Whole(n, k) => {
                let node = NodeId::from_idx(n % n_nodes);
                let mut mask = 0u32;
                let mut rest = ledger.node(node).whole_mask;
                for _ in 0..k.min(rest.count_ones()) {
                    let bit = rest & rest.wrapping_neg();
                    mask |= bit;
                    rest &= !bit;
                }
                (node, GpuTake::Whole { mask })
            }
            Use::Milli(n, local, milli) => (
                NodeId::from_idx(n % n_nodes),
                GpuTake::Milli { local, milli },
            ),
            Use::Mig(n, local, slices) => {
                let memory = (slices + 1).min(MIG_MEMORY_SLICES);
                (
                    NodeId::from_idx(n % n_nodes),
                    GpuTake::Mig {
                        local,
                        compute: slices,
                        memory,
                    },
                )
            }
            Use::Host(n, cpu, memory) => {
                let node = NodeId::from_idx(n % n_nodes);
                let take = Take {
                    cpu_milli: cpu,
                    memory_mib: memory,
                    gpus: GpuTake::None,
                };
                if ledger.check(topology, node, &take).is_ok() {
                    ledger.take(topology, node, &take);
                }
                continue;
            }
            Use::Unschedulable(n) => {
                ledger.set_schedulable(topology, NodeId::from_idx(n % n_nodes), false);
                continue;
            }
        };
        let take = Take {
            cpu_milli: 0,
            memory_mib: 0,
            gpus: take,
        };
        let local_ok = match take.gpus {
            GpuTake::Milli { local, .. } | GpuTake::Mig { local, .. } => {
                (local as u32) < topology.node(node).gpu_count()
            }
            _ => true,
        };
        if local_ok && ledger.check(topology, node, &take).is_ok() {
            ledger.take(topology, node, &take);
        }
    }
    ledger.check_invariants(topology);
    ledger
}

/// Whether one member (task, gang member or replica) of `spec` fits `node` now, by brute force
/// over the node's GPUs (no ledger indexes, no jurisdiction).
fn member_fits(topology: &Topology, ledger: &Ledger, spec: &JobSpec, node: NodeId) -> bool {
    let free = ledger.node(node);
    if !free.schedulable || free.cpu_milli < spec.cpu_milli || free.memory_mib < spec.memory_mib {
        return false;
    }
    let gpus = topology.node(node).gpus.clone();
    let allowed = |g: u32| {
        let model = &topology.model(topology.gpu(GpuId(g)).model).name;
        spec.gpu_models.is_empty()
            || spec
                .gpu_models
                .iter()
                .any(|m| m.eq_ignore_ascii_case(model))
    };
    match spec.member_gpus() {
        GpuRequest::None => true,
        GpuRequest::Whole(n) => {
            let usable = gpus
                .filter(|&g| allowed(g) && !topology.gpu(GpuId(g)).mig)
                .filter(|&g| ledger.gpu(GpuId(g)).used_milli == 0)
                .count();
            usable as u32 >= n
        }
        GpuRequest::Milli(m) => gpus.filter(|&g| allowed(g)).any(|g| {
            !topology.gpu(GpuId(g)).mig
                && MILLI_PER_GPU - ledger.gpu(GpuId(g)).used_milli as u32 >= m
        }),
        GpuRequest::Mig(profile) => gpus.filter(|&g| allowed(g)).any(|g| {
            let gpu = topology.gpu(GpuId(g));
            let used = ledger.gpu(GpuId(g));
            gpu.mig
                && topology.model(gpu.model).mig_profiles.iter().any(|p| {
                    p.name == profile
                        && used.mig_compute_used + p.compute_slices <= MIG_COMPUTE_SLICES
                        && used.mig_memory_used + p.memory_slices <= MIG_MEMORY_SLICES
                })
        }),
    }
}

/// What the diagnostic scan should count over the eligible nodes, filter by filter in the
/// pipeline's order: `[unschedulable, model, cpu, memory, gpu, fit]`.
fn expected_removals(topology: &Topology, ledger: &Ledger, spec: &JobSpec) -> [u32; 6] {
    let mut counts = [0u32; 6];
    let wants_gpu = spec.member_gpus() != GpuRequest::None;
    for n in eligible_nodes(topology, spec) {
        let free = ledger.node(n);
        let gpus = topology.node(n).gpus.clone();
        let allowed = gpus.filter(|&g| {
            let model = &topology.model(topology.gpu(GpuId(g)).model).name;
            spec.gpu_models.is_empty()
                || spec
                    .gpu_models
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(model))
        });
        let slot = if !free.schedulable {
            0
        } else if wants_gpu && allowed.count() == 0 {
            let has_gpus = topology.node(n).gpu_count() > 0;
            if has_gpus && !spec.gpu_models.is_empty() {
                1
            } else {
                4
            }
        } else if free.cpu_milli < spec.cpu_milli {
            2
        } else if free.memory_mib < spec.memory_mib {
            3
        } else if !member_fits(topology, ledger, spec, n) {
            4
        } else {
            5
        };
        counts[slot] += 1;
    }
    counts
}

/// Nodes where `spec` may run: allowed jurisdictions, and for services the latency SLO (none
/// when the SLO's ingress site does not exist).
fn eligible_nodes(topology: &Topology, spec: &JobSpec) -> Vec<NodeId> {
    let mask = topology.jurisdiction_mask(&spec.jurisdictions);
    let slo = match &spec.workload {
        Workload::Inference(InferenceSpec { slo: Some(slo), .. }) => {
            match topology.site_by_name(&slo.ingress_site) {
                Some(ingress) => Some((ingress, slo.max_rtt_ns)),
                None => return Vec::new(),
            }
        }
        _ => None,
    };
    (0..topology.nodes().len())
        .map(NodeId::from_idx)
        .filter(|&n| {
            let site = topology.node(n).site;
            mask.contains(topology.site(site).jurisdiction)
                && slo.is_none_or(|(ingress, max)| topology.site_rtt_ns(ingress, site) <= max)
        })
        .collect()
}

/// Spread of an inference plan made on `ledger`: replicas share a spread domain only when no
/// unused domain has a node that fits one, and share a node only when no unused node fits one.
fn spread_violation(
    topology: &Topology,
    ledger: &Ledger,
    spec: &JobSpec,
    plan: &sovra_scheduler::core::placement::Plan,
) -> Option<String> {
    let Workload::Inference(service) = &spec.workload else {
        return None;
    };
    let nodes: Vec<NodeId> = plan.members.iter().map(|m| m.node).collect();
    let domains: Vec<usize> = nodes
        .iter()
        .map(|&n| topology.subtree_of(service.spread, n))
        .collect();
    let repeats = |items: &[usize]| (1..items.len()).any(|i| items[..i].contains(&items[i]));
    let node_idx: Vec<usize> = nodes.iter().map(|n| n.idx()).collect();
    let candidates = eligible_nodes(topology, spec);
    let fits = |n: NodeId| member_fits(topology, ledger, spec, n);
    if repeats(&domains) {
        let spare = candidates
            .iter()
            .find(|&&n| !domains.contains(&topology.subtree_of(service.spread, n)) && fits(n));
        if let Some(&n) = spare {
            return Some(format!(
                "replicas share a {} domain while {} (unused domain) fits one",
                service.spread.name(),
                topology.node(n).name
            ));
        }
    }
    if repeats(&node_idx) {
        if let Some(&n) = candidates.iter().find(|&&n| !nodes.contains(&n) && fits(n)) {
            return Some(format!(
                "replicas share a node while {} (unused) fits one",
                topology.node(n).name
            ));
        }
    }
    None
}

#[test]
fn placement_is_pure_sound_and_best_fit() {
    let strategy = (
        topology_shape(),
        prop::collection::vec(usage(), 0..24),
        job_gen(),
        policy(),
        any::<u64>(),
    );
    run_property(
        "placement_is_pure_sound_and_best_fit",
        4_096,
        strategy,
        |args| {
            let (shape, uses, job, policy, seed) = args;
            let topology = build_topology(&shape);
            let spec = job.resolve(&topology);
            prop_assume!(spec.validate().is_ok());
            let ledger = prepare(&topology, &uses);
            let view = ClusterView {
                topology: &topology,
                ledger: &ledger,
            };
            let placement = place(view, &policy, JobId(7), &spec, seed);
            let again = place(view, &policy, JobId(7), &spec, seed);
            check(placement == again, || {
                format!("not deterministic:\n{placement:?}\n{again:?}")
            })?;

            let e = &placement.explanation;
            let mask = topology.jurisdiction_mask(&spec.jurisdictions);
            let outside: u32 = topology
                .sites()
                .iter()
                .filter(|s| !mask.contains(s.jurisdiction))
                .map(|s| s.nodes.end - s.nodes.start)
                .sum();
            check(e.removed.jurisdiction == outside, || {
                format!(
                    "jurisdiction filter removed {} of {outside} foreign nodes",
                    e.removed.jurisdiction
                )
            })?;
            check(e.nodes_total == topology.nodes().len() as u32, || {
                "nodes_total".into()
            })?;
            if e.nodes_eligible > 0 {
                check(
                    e.nodes_eligible + e.removed.jurisdiction + e.removed.latency == e.nodes_total,
                    || format!("eligible + jurisdiction + latency != total: {e:?}"),
                )?;
            }
            let eligible_sites: Vec<_> = topology
                .sites()
                .iter()
                .enumerate()
                .filter(|(_, s)| mask.contains(s.jurisdiction))
                .collect();
            // A one-member job is placed exactly when its member fits an eligible node.
            // Gangs only when every candidate subtree is tried (`subtree_limit` at least the
            // node count): gang.rs ranks subtrees by a bound that ignores models, CPU and
            // memory, so a small limit may miss the one subtree that holds the gang.
            let exhaustive = match &spec.workload {
                Workload::Gang(_) => policy.subtree_limit >= topology.nodes().len(),
                _ => true,
            };
            if spec.member_count() == 1 && exhaustive {
                let fits = eligible_nodes(&topology, &spec)
                    .into_iter()
                    .find(|&n| member_fits(&topology, &ledger, &spec, n));
                let placed = matches!(placement.outcome, Outcome::Placed(_));
                check(placed == fits.is_some(), || {
                    format!(
                        "one-member job placed={placed} but fits {:?}: {}",
                        fits.map(|n| &topology.node(n).name),
                        render_placement(&topology, &placement)
                    )
                })?;
            }
            match &placement.outcome {
                Outcome::Placed(plan) => {
                    let violations = plan_violations(&topology, &ledger, &spec, plan);
                    check(violations.is_empty(), || {
                        format!("unsound plan {plan:?}: {violations:?}")
                    })?;
                    check(plan.seed == seed && plan.job == JobId(7), || {
                        "plan identity".into()
                    })?;
                    if let Some(why) = spread_violation(&topology, &ledger, &spec, plan) {
                        return Err(TestCaseError::fail(format!("{why}: {plan:?}")));
                    }
                    let best_fit = policy.share == SharePolicy::BestFit;
                    if let (
                        Workload::Batch {
                            gpus: GpuRequest::Whole(_),
                        },
                        true,
                    ) = (&spec.workload, best_fit)
                    {
                        let chosen = ledger.node(plan.members[0].node).whole_free();
                        let tightest = (0..topology.nodes().len())
                            .map(NodeId::from_idx)
                            .filter(|&n| {
                                mask.contains(topology.site(topology.node(n).site).jurisdiction)
                            })
                            .filter(|&n| member_fits(&topology, &ledger, &spec, n))
                            .map(|n| ledger.node(n).whole_free())
                            .min();
                        check(Some(chosen) == tightest, || {
                            format!(
                                "best fit chose a node with {chosen} free, tightest {tightest:?}"
                            )
                        })?;
                    }
                }
                Outcome::Unschedulable(why) => {
                    if eligible_sites.is_empty() {
                        check(why.reason == PendingReason::JurisdictionUnavailable, || {
                            format!("no allowed site but reason {why:?}")
                        })?;
                    }
                    if e.nodes_eligible > 0 {
                        // The diagnostic scan ran: its counts are exact.
                        let expected = expected_removals(&topology, &ledger, &spec);
                        let got = [
                            e.removed.unschedulable,
                            e.removed.model,
                            e.removed.cpu,
                            e.removed.memory,
                            e.removed.gpu,
                        ];
                        check(
                            got == expected[..5]
                                && expected.iter().sum::<u32>() == e.nodes_eligible,
                            || format!("removed {got:?}, expected {expected:?} (last: fit): {e:?}"),
                        )?;
                    }
                    if why.reason == PendingReason::BadConstraints {
                        // "Never fits" must hold on an empty cluster too.
                        let empty = Ledger::new(&topology);
                        let view = ClusterView {
                            topology: &topology,
                            ledger: &empty,
                        };
                        let fresh = place(view, &policy, JobId(7), &spec, seed);
                        check(matches!(fresh.outcome, Outcome::Unschedulable(_)), || {
                            format!("BadConstraints ({why:?}) yet placed on an empty cluster")
                        })?;
                    }
                    if let Workload::Batch { .. } = spec.workload {
                        let fits = (0..topology.nodes().len())
                            .map(NodeId::from_idx)
                            .filter(|&n| {
                                mask.contains(topology.site(topology.node(n).site).jurisdiction)
                            })
                            .find(|&n| member_fits(&topology, &ledger, &spec, n));
                        check(fits.is_none(), || {
                            format!(
                                "batch job unplaced ({why:?}) but fits {:?}",
                                fits.map(|n| &topology.node(n).name)
                            )
                        })?;
                    }
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Property: the state machine under random commands.

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // test input; size does not matter
enum Op {
    Submit(JobGen),
    /// Retry an earlier submission with the same request id (exactly-once).
    Resubmit(usize),
    Pass,
    /// Plan a pass, apply `race` first, then the pass (exercises stale plans).
    RacingPass(Box<Op>),
    Start(usize),
    Finish(usize, u8),
    Cancel(usize),
    Drain(usize),
    Resume(usize),
    Fail(usize),
    Register(usize),
    Tick(u64),
    SetRtt(usize, usize, u64),
}

fn node_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<usize>().prop_map(Op::Drain),
        any::<usize>().prop_map(Op::Resume),
        any::<usize>().prop_map(Op::Fail),
        any::<usize>().prop_map(Op::Register),
        any::<usize>().prop_map(Op::Cancel),
        (any::<usize>(), 0u8..3).prop_map(|(j, s)| Op::Finish(j, s)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => job_gen().prop_map(Op::Submit),
        1 => any::<usize>().prop_map(Op::Resubmit),
        6 => Just(Op::Pass),
        2 => node_op().prop_map(|race| Op::RacingPass(Box::new(race))),
        2 => any::<usize>().prop_map(Op::Start),
        2 => (any::<usize>(), 0u8..3).prop_map(|(j, s)| Op::Finish(j, s)),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Drain),
        1 => any::<usize>().prop_map(Op::Resume),
        1 => any::<usize>().prop_map(Op::Fail),
        2 => any::<usize>().prop_map(Op::Register),
        1 => (0u64..20_000).prop_map(Op::Tick),
        1 => (0usize..=4, 0usize..4, 1u64..=120).prop_map(|(a, b, ms)| Op::SetRtt(a, b, ms)),
    ]
}

/// Two replicas fed the same entries, checked after every entry.
struct Replicas {
    primary: StateMachine,
    replica: StateMachine,
    index: u64,
    now_ms: u64,
    entries: Vec<Entry>,
    /// Submissions so far and what applying them gave (for retries).
    submits: Vec<(Command, Applied)>,
}

impl Replicas {
    fn apply(&mut self, command: Command) -> Result<Applied, TestCaseError> {
        self.index += 1;
        let entry = Entry {
            index: self.index,
            time_ms: self.now_ms,
            command,
        };
        let blob = to_blob(&entry);
        let decoded: Entry = from_blob(&blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(decoded == entry, || {
            format!("entry codec round trip changed {entry:?}")
        })?;
        let applied = self.primary.apply(&entry);
        let applied_replica = self.replica.apply(&decoded);
        check(applied == applied_replica, || {
            format!("replicas disagree on {entry:?}: {applied:?} vs {applied_replica:?}")
        })?;
        check_state(&self.primary, &entry, &applied)?;
        self.check_liveness(&entry)?;
        check(
            self.primary.state_hash() == self.replica.state_hash(),
            || format!("state hashes differ after {entry:?}"),
        )?;
        self.entries.push(entry);
        Ok(applied)
    }

    /// When no pass is needed, no pending batch job fits anywhere it may run. (Batch placement
    /// is exhaustive, so this is exact for batch jobs.)
    fn check_liveness(&self, entry: &Entry) -> Result<(), TestCaseError> {
        let sm = &self.primary;
        if sm.needs_pass() {
            return Ok(());
        }
        for id in sm.pending().iter() {
            let r = sm.job(id).expect("queued job exists");
            if !matches!(r.spec.workload, Workload::Batch { .. }) {
                continue;
            }
            let fits = eligible_nodes(sm.topology(), &r.spec)
                .into_iter()
                .find(|&n| member_fits(sm.topology(), sm.ledger(), &r.spec, n));
            check(fits.is_none(), || {
                format!(
                    "after {entry:?} no pass is needed, but pending job {id} ({:?}) fits {}",
                    r.reason,
                    sm.topology().node(fits.unwrap()).name
                )
            })?;
        }
        Ok(())
    }

    fn plan(&self) -> Result<Option<Command>, TestCaseError> {
        let first = self.primary.plan_pass(PASS_PLANS_MAX);
        let second = self.primary.plan_pass(PASS_PLANS_MAX);
        check(first == second, || "plan_pass is not pure".into())?;
        let on_replica = self.replica.plan_pass(PASS_PLANS_MAX);
        check(first == on_replica, || "replicas plan differently".into())?;
        if let Some((Command::SchedulePass { plans, .. }, _)) = &first {
            // Plans are made one after another against the capacity left by earlier ones.
            let topology = self.primary.topology();
            let mut ledger = self.primary.ledger().clone();
            for plan in plans {
                let spec = &self.primary.job(plan.job).expect("planned job exists").spec;
                let violations = plan_violations(topology, &ledger, spec, plan);
                check(violations.is_empty(), || {
                    format!("unsound plan {plan:?}: {violations:?}")
                })?;
                if let Some(why) = spread_violation(topology, &ledger, spec, plan) {
                    return Err(TestCaseError::fail(format!("{why}: {plan:?}")));
                }
                for slot in &plan.members {
                    ledger.take(topology, slot.node, &slot.take);
                }
            }
        }
        Ok(first.map(|(command, _)| command))
    }

    fn job_id(&self, k: usize, wanted: &[JobState]) -> JobId {
        // A job in a wanted state; failing that any job (refused); failing that an unknown id.
        let wanted: Vec<JobId> = self
            .primary
            .jobs()
            .filter(|r| wanted.contains(&r.state))
            .map(|r| r.id)
            .collect();
        let all: Vec<JobId> = self.primary.jobs().map(|r| r.id).collect();
        match (wanted.is_empty(), all.is_empty()) {
            (false, _) => wanted[k % wanted.len()],
            (true, false) => all[k % all.len()],
            (true, true) => JobId(1),
        }
    }

    /// A node in one of the `wanted` states if any, else any node.
    fn node_name(&self, k: usize, wanted: &[NodeState]) -> String {
        let nodes = self.primary.topology().nodes();
        let matching: Vec<usize> = (0..nodes.len())
            .filter(|&i| wanted.contains(&self.primary.node_state(NodeId::from_idx(i))))
            .collect();
        let i = if matching.is_empty() {
            k % nodes.len()
        } else {
            matching[k % matching.len()]
        };
        nodes[i].name.clone()
    }

    fn command(&self, op: &Op) -> Option<Command> {
        Some(match op {
            Op::Submit(job) => Command::Submit {
                spec: job.resolve(self.primary.topology()),
                request: Some(RequestId {
                    client: 7,
                    seq: self.index + 1,
                }),
            },
            Op::Pass | Op::RacingPass(_) | Op::Resubmit(_) => return None,
            Op::Start(k) => Command::Start {
                job: self.job_id(*k, &[JobState::Placed]),
            },
            Op::Finish(k, s) => Command::Finish {
                job: self.job_id(*k, &[JobState::Running, JobState::Placed]),
                status: match s {
                    0 => ExitStatus::Completed,
                    1 => ExitStatus::Failed(2),
                    _ => ExitStatus::OutOfMemory,
                },
            },
            Op::Cancel(k) => Command::Cancel {
                job: self.job_id(
                    *k,
                    &[JobState::Pending, JobState::Placed, JobState::Running],
                ),
            },
            Op::Drain(k) => Command::Drain {
                node: self.node_name(*k, &[]),
            },
            Op::Resume(k) => Command::Resume {
                node: self.node_name(*k, &[NodeState::Drained]),
            },
            Op::Fail(k) => Command::FailNode {
                node: self.node_name(*k, &[]),
            },
            Op::Register(k) => Command::RegisterNode {
                node: self.node_name(*k, &[NodeState::Unknown, NodeState::Down]),
            },
            Op::Tick(_) => Command::Tick,
            Op::SetRtt(a, b, ms) => {
                // Site 4 names no site; the others are taken modulo the sites there are.
                let n_sites = self.primary.topology().sites().len();
                let name = |k: usize| {
                    if k < 4 {
                        site_name(k % n_sites)
                    } else {
                        "nowhere".into()
                    }
                };
                Command::SetSiteRtt {
                    a: name(*a),
                    b: name(*b),
                    rtt_ns: ms * 1_000_000,
                }
            }
        })
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if let Op::Tick(advance) = op {
            self.now_ms += advance;
        }
        match op {
            Op::Pass => {
                if let Some(pass) = self.plan()? {
                    self.apply(pass)?;
                }
            }
            Op::RacingPass(race) => {
                if let Some(pass) = self.plan()? {
                    let race = self.command(race).expect("races are plain commands");
                    self.apply(race)?;
                    self.apply(pass)?;
                }
            }
            Op::Resubmit(k) => {
                if self.submits.is_empty() {
                    return Ok(());
                }
                let (command, first) = self.submits[k % self.submits.len()].clone();
                let jobs = self.primary.jobs().count();
                let again = self.apply(command)?;
                if let Applied::Submitted(id) = first {
                    check(again == Applied::Submitted(id), || {
                        format!("retried submission of job {id} gave {again:?}")
                    })?;
                    check(self.primary.jobs().count() == jobs, || {
                        "a retried submission created a job".to_string()
                    })?;
                }
            }
            other => {
                let command = self.command(other).expect("plain command");
                let applied = self.apply(command.clone())?;
                if matches!(other, Op::Submit(_)) {
                    self.submits.push((command, applied));
                }
            }
        }
        Ok(())
    }
}

/// Invariants after every entry.
fn check_state(sm: &StateMachine, entry: &Entry, applied: &Applied) -> Result<(), TestCaseError> {
    sm.check_invariants();
    let topology = sm.topology();
    let placed_now: &[JobId] = match applied {
        Applied::Scheduled { placed, .. } => placed,
        _ => &[],
    };
    for r in sm.jobs() {
        match &r.plan {
            Some(plan) => {
                check(r.state.holds_resources(), || {
                    format!("job {} {:?} has a plan", r.id, r.state)
                })?;
                check(plan.job == r.id, || {
                    format!("job {} holds plan of {}", r.id, plan.job)
                })?;
                // RTTs may have changed since older placements: check latency only for new ones.
                let latency = placed_now.contains(&r.id);
                let violations = constraint_violations(topology, &r.spec, plan, latency);
                check(violations.is_empty(), || {
                    format!(
                        "job {} violates its constraints after {entry:?}: {violations:?}",
                        r.id
                    )
                })?;
            }
            None => check(!r.state.holds_resources(), || {
                format!("job {} is {:?} without a plan", r.id, r.state)
            })?,
        }
        if r.state == JobState::Pending {
            check(r.reason.is_some() || r.tried_epoch.is_none(), || {
                format!("job {} was tried but has no reason", r.id)
            })?;
        }
    }
    let order: Vec<(u32, u64)> = sm
        .pending()
        .iter()
        .map(|id| sm.job(id).expect("queued job exists"))
        .map(|r| (r.spec.priority, r.submit_index))
        .collect();
    check(
        order
            .windows(2)
            .all(|w| w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)),
        || format!("queue out of order: {order:?}"),
    )?;
    Ok(())
}

#[test]
fn state_machine_keeps_invariants_and_replicas_converge() {
    let strategy = (
        topology_shape(),
        policy(),
        any::<bool>(),
        prop::collection::vec(op(), 1..80),
        any::<prop::sample::Index>(),
    );
    run_property(
        "state_machine_keeps_invariants_and_replicas_converge",
        1_024,
        strategy,
        |args| {
            let (shape, policy, all_up, ops, restore_at) = args;
            let topology = build_topology(&shape);
            let primary = if all_up {
                StateMachine::with_all_nodes_up(topology, policy)
            } else {
                let scope = topology.jurisdictions().to_vec();
                StateMachine::new(topology, &scope, policy).expect("full scope")
            };
            primary.check_invariants();
            let replica = primary.clone();
            let mut r = Replicas {
                primary,
                replica,
                index: 0,
                now_ms: 1_000,
                entries: Vec::new(),
                submits: Vec::new(),
            };
            let restore_at = restore_at.index(ops.len());
            let mut restored: Option<(StateMachine, usize)> = None;
            for (i, op) in ops.iter().enumerate() {
                if i == restore_at {
                    let bytes = r.primary.snapshot();
                    let sm = StateMachine::restore(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("restore failed: {e}")))?;
                    sm.check_invariants();
                    check(sm.state_hash() == r.primary.state_hash(), || {
                        "restore changed the hash".into()
                    })?;
                    check(sm.snapshot() == bytes, || {
                        "snapshot bytes not canonical".into()
                    })?;
                    restored = Some((sm, r.entries.len()));
                }
                r.run(op)?;
            }
            // The replica restored mid-way catches up on the entries after its snapshot.
            let (mut sm, from) = restored.expect("restore point inside the run");
            for entry in &r.entries[from..] {
                sm.apply(entry);
            }
            check(sm.state_hash() == r.primary.state_hash(), || {
                "restored replica diverged".into()
            })?;
            let jobs_a: Vec<_> = r.primary.jobs().collect();
            let jobs_b: Vec<_> = r.replica.jobs().collect();
            check(
                jobs_a == jobs_b && r.primary.ledger() == r.replica.ledger(),
                || "replicas differ".into(),
            )?;
            Ok(())
        },
    );
}
