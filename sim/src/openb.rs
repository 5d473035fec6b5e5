//! The OpenB evaluation of the FGD paper (Weng et al., USENIX ATC'23), replayed exactly.
//!
//! The protocol is the paper's simulator's (`hkust-adsl/kubernetes-scheduler-simulator`), as
//! `docs/sim.md` and `shared/docs/openb-protocol.md` describe it:
//! 1. the cluster is the node list; the *target workload* (FGD's typical pods) is built from
//!    the original pods before anything else: shapes `(cpu, gpu milli, gpu count, models)`,
//!    most common first, until they cover 95% of the pods;
//! 2. a Go `math/rand` source is seeded with the run's seed and one `Int()` is drawn (the
//!    reference draws it inside a debug log argument);
//! 3. the pods are sorted by name and shuffled;
//! 4. the workload is tuned to 1.3 × the cluster's GPU capacity: below it, pods drawn
//!    uniformly from the original (name-sorted) list are appended, stopping at the first draw
//!    whose per-GPU milli would overshoot; above it, random pods are removed;
//! 5. the scheduler starts ([`INFORMER_DRAWS`] draws), then the nodes, sorted by name, get a
//!    random priority from `Perm(n)`: it breaks every score tie (the reference names node `i`
//!    `"%04d-" + name` and picks the smallest name);
//! 6. every pod arrives once, in order; a pod that fits nowhere fails and is dropped. There is
//!    no time, no departure and no retry;
//! 7. after every pod, arrived and allocated GPU milli are sampled; a run's curve maps each
//!    arrived-% bucket (0..=130) to the mean allocated %, and its headline number is
//!    `100 − allocated %` at arrived = 100%.
//!
//! Placement is sovra's: [`place`] over a [`Ledger`], the same code `sovrad` runs, with the
//! policy's [`SharePolicy`]. Each run uses one placement seed, so ties follow one node order,
//! and the cluster is laid out so that this order (`tie(seed, node id)`) *is* the reference's
//! random priority. Together with the Go generator ([`GoRand`]) this replays the reference's
//! runs seed for seed. Nothing here does IO.

use std::collections::HashMap;

use sovra_fabric::topology::{GpuDesc, GpuModelDesc, NodeDesc, SiteDesc, SiteFabric};
use sovra_fabric::{Jurisdiction, Ledger, NodeId, Topology, TopologyDesc};
use sovra_scheduler::core::job::{GpuRequest, JobId, JobSpec, Workload};
use sovra_scheduler::core::placement::fgd::{FragModel, TargetWorkload, WorkloadShape};
use sovra_scheduler::core::placement::{place, ClusterView, Outcome, PolicyConfig, SharePolicy};
use sovra_scheduler::core::rng::{mix, tie};

use crate::gorand::GoRand;
use crate::loader::{NodeRow, PodRow};
use crate::stats::{pairwise_sum, round_decimals};

/// Requested GPU as a multiple of capacity after tuning.
pub const TUNE_RATIO: f64 = 1.3;
/// Share of pods (percent) the typical shapes cover.
pub const TYPICAL_POPULARITY_PCT: f64 = 95.0;
/// Arrived-% buckets of a curve: 0..=130.
pub const BUCKETS: usize = 131;
/// The bucket of the headline number.
pub const HEADLINE_BUCKET: usize = 100;
/// The single site's name and jurisdiction (OpenB is one cluster in one country).
pub const SITE: &str = "openb";
/// Jurisdiction of the OpenB site.
pub const JURISDICTION: &str = "CN";
/// Draws from the reference's global generator between the tuning and the node
/// permutation: when the scheduler starts, each of its informers' reflectors draws one
/// `Float64` for its watch timeout (client-go `reflector.go`), 10 in all. Not in the published
/// description; found by matching the shipped per-seed curves, which it then reproduces
/// bucket for bucket.
pub const INFORMER_DRAWS: usize = 10;
/// Most pods one run offers: tuning appends pods until the requested GPU reaches
/// [`TUNE_RATIO`] × capacity, so a trace of tiny requests on a large cluster is refused up front.
pub const ARRIVALS_MAX: usize = 10_000_000;
/// Nodes per leaf in the built topology (the trace has no network layout; it does not matter
/// to the policies evaluated here).
const LEAF_NODES: usize = 32;

/// A policy of the evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Uniformly random node.
    Random,
    /// Tetris dot product.
    DotProd,
    /// GPU clustering.
    Clustering,
    /// GPU packing.
    Packing,
    /// The paper's best fit.
    BestFit,
    /// Fragmentation gradient descent.
    Fgd,
    /// sovra's default for fractional-GPU clusters: [`SharePolicy::FragPack`].
    Default,
}

impl Policy {
    /// Every policy, in the paper's table order, then sovra's.
    pub const ALL: [Policy; 7] = [
        Policy::Random,
        Policy::DotProd,
        Policy::Clustering,
        Policy::Packing,
        Policy::BestFit,
        Policy::Fgd,
        Policy::Default,
    ];

    /// The name `--policy` takes.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Random => "random",
            Policy::DotProd => "dotprod",
            Policy::Clustering => "clustering",
            Policy::Packing => "packing",
            Policy::BestFit => "bestfit",
            Policy::Fgd => "fgd",
            Policy::Default => "default",
        }
    }

    /// Parses a `--policy` name.
    pub fn parse(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The scheduler-core policy.
    pub fn share(self, target: &TargetWorkload) -> SharePolicy {
        match self {
            Policy::Random => SharePolicy::Random,
            Policy::DotProd => SharePolicy::DotProduct,
            Policy::Clustering => SharePolicy::GpuClustering,
            Policy::Packing => SharePolicy::GpuPacking,
            Policy::BestFit => SharePolicy::NodeBestFit,
            Policy::Fgd => SharePolicy::Fgd(target.clone()),
            Policy::Default => SharePolicy::FragPack(target.clone()),
        }
    }
}

/// A typical pod shape: the key the reference counts pods by (memory is not part of it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ShapeKey {
    cpu_milli: u64,
    gpu_milli: u32,
    gpu_count: u32,
    spec: String,
}

/// The cluster, the trace, and everything about them that does not depend on the seed.
pub struct Experiment {
    nodes: Vec<NodeRow>,
    pods: Vec<PodRow>,
    /// GPU models in order of first appearance in the node list: the topology's `ModelId`s.
    models: Vec<String>,
    /// The target workload `M`, model masks over `models`.
    target: TargetWorkload,
    /// One job per pod.
    specs: Vec<JobSpec>,
    /// Pods sorted by name (indices into `pods`).
    pods_by_name: Vec<usize>,
    /// Nodes sorted by name (indices into `nodes`).
    nodes_by_name: Vec<usize>,
    /// Cluster GPU capacity in milli-GPU.
    capacity_milli: u64,
}

/// One run's result.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRun {
    /// The seed.
    pub seed: i64,
    /// Pods offered (after tuning).
    pub pods: usize,
    /// Pods placed.
    pub placed: usize,
    /// Requested GPU milli of all offered pods.
    pub arrived_milli: u64,
    /// Allocated GPU milli at the end.
    pub used_milli: u64,
    /// Allocated GPU % per arrived-% bucket (`None`: no sample near the bucket).
    pub alloc_pct: Vec<Option<f64>>,
    /// Fragmented GPU (FGD's measure against the target workload) as % of capacity, per bucket.
    pub frag_pct: Vec<Option<f64>>,
    /// `100 − allocated %` at arrived = 100%.
    pub unallocated_pct_at_100: f64,
    /// Hash of every placement decision (pod, node, GPUs), in order.
    pub decisions_hash: u64,
}

impl Experiment {
    /// Prepares the experiment: validates the cluster, builds the target workload.
    pub fn new(nodes: Vec<NodeRow>, pods: Vec<PodRow>) -> Result<Experiment, String> {
        let mut models: Vec<String> = Vec::new();
        for n in &nodes {
            if n.gpus > 0 && !models.contains(&n.model) {
                models.push(n.model.clone());
            }
        }
        if models.len() > 64 {
            return Err(format!("{} gpu models, at most 64", models.len()));
        }
        let capacity_milli: u64 = nodes.iter().map(|n| n.gpus as u64 * 1_000).sum();
        if capacity_milli == 0 {
            return Err("the cluster has no gpu".into());
        }
        let requested: u64 = pods.iter().map(|p| p.total_milli()).sum();
        if requested == 0 {
            return Err("the trace has no gpu pod to tune the workload by".into());
        }
        let needed = TUNE_RATIO * capacity_milli as f64 / (requested as f64 / pods.len() as f64);
        if needed > ARRIVALS_MAX as f64 {
            return Err(format!(
                "the pods ask for {:.3} milli-gpu each on average: reaching {TUNE_RATIO} x the \
                 cluster's {capacity_milli} milli-gpu would take about {needed:.0} pods, more \
                 than {ARRIVALS_MAX}",
                requested as f64 / pods.len() as f64
            ));
        }
        let mut pods_by_name: Vec<usize> = (0..pods.len()).collect();
        pods_by_name.sort_by(|&a, &b| pods[a].name.cmp(&pods[b].name));
        let mut nodes_by_name: Vec<usize> = (0..nodes.len()).collect();
        nodes_by_name.sort_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name));
        let jurisdiction = Jurisdiction::parse(JURISDICTION).expect("valid code");
        let specs = pods
            .iter()
            .map(|p| JobSpec {
                run: Default::default(),
                name: p.name.clone(),
                tenant: "openb".into(),
                priority: 0,
                jurisdictions: vec![jurisdiction],
                gpu_models: p.models(),
                cpu_milli: p.cpu_milli,
                memory_mib: p.memory_mib,
                time_limit_ms: None,
                workload: Workload::Batch {
                    gpus: gpu_request(p),
                },
                control: Default::default(),
            })
            .collect();
        let target = typical_workload(&pods, &models);
        Ok(Experiment {
            nodes,
            pods,
            models,
            target,
            specs,
            pods_by_name,
            nodes_by_name,
            capacity_milli,
        })
    }

    /// The node list.
    pub fn nodes(&self) -> &[NodeRow] {
        &self.nodes
    }

    /// The target workload `M` (FGD's typical pods).
    pub fn target(&self) -> &TargetWorkload {
        &self.target
    }

    /// Cluster GPU capacity in milli-GPU.
    pub fn capacity_milli(&self) -> u64 {
        self.capacity_milli
    }

    /// The arrival sequence and node priorities of a seed (steps 2 to 5 of the protocol):
    /// pod indices in arrival order, and each node's priority (0 is first), by node index.
    pub fn workload(&self, seed: i64) -> (Vec<usize>, Vec<usize>) {
        let mut rng = GoRand::new(seed);
        rng.int();
        let mut arrivals = self.pods_by_name.clone();
        rng.shuffle(&mut arrivals);
        let target = TUNE_RATIO * self.capacity_milli as f64;
        let mut total: u64 = arrivals.iter().map(|&p| self.pods[p].total_milli()).sum();
        if (total as f64) < target {
            loop {
                let p = self.pods_by_name[rng.intn(self.pods_by_name.len())];
                // The reference tests the pod's per-GPU milli but adds its total.
                if (total + self.pods[p].gpu_milli as u64) as f64 > target {
                    break;
                }
                total += self.pods[p].total_milli();
                arrivals.push(p);
            }
        } else {
            while total as f64 > target {
                let p = arrivals.remove(rng.intn(arrivals.len()));
                total -= self.pods[p].total_milli();
            }
        }
        for _ in 0..INFORMER_DRAWS {
            rng.float64();
        }
        let perm = rng.perm(self.nodes.len());
        let mut priority = vec![0usize; self.nodes.len()];
        for (i, &n) in self.nodes_by_name.iter().enumerate() {
            priority[n] = perm[i];
        }
        (arrivals, priority)
    }

    /// Builds the cluster for a run: node `n` gets the id whose tie key under `seed` ranks
    /// `priority[n]`, so that sovra's tie order is the reference's node priority. Returns the
    /// topology and, per node id, the node's index in the node list.
    pub fn topology(&self, priority: &[usize], seed: u64) -> (Topology, Vec<usize>) {
        let n = self.nodes.len();
        let mut by_tie: Vec<usize> = (0..n).collect();
        by_tie.sort_by_key(|&id| (tie(seed, id as u64), id));
        let mut row_of_id = vec![usize::MAX; n];
        for (row, &rank) in priority.iter().enumerate() {
            row_of_id[by_tie[rank]] = row;
        }
        let desc = topology_desc(&self.nodes, &self.models, &row_of_id);
        let topology = Topology::build(desc).expect("a validated node list builds");
        for (id, &row) in row_of_id.iter().enumerate() {
            assert_eq!(
                topology.node_by_name(&self.nodes[row].name),
                Some(NodeId::from_idx(id)),
                "node ids follow the description order"
            );
        }
        (topology, row_of_id)
    }

    /// Runs one seed of the protocol with `policy`.
    pub fn run(&self, policy: Policy, seed: i64) -> SeedRun {
        let (arrivals, priority) = self.workload(seed);
        let place_seed = mix(seed as u64);
        let (topology, _) = self.topology(&priority, place_seed);
        let config = PolicyConfig {
            share: policy.share(&self.target),
            ..PolicyConfig::default()
        };
        let frag = FragModel::new(&self.target);
        let mut ledger = Ledger::new(&topology);
        let mut frag_of: Vec<f64> = (0..topology.nodes().len())
            .map(|i| node_frag(&frag, &topology, &ledger, NodeId::from_idx(i)))
            .collect();
        let mut frag_total: f64 = frag_of.iter().sum();
        let mut samples: Vec<Sample> = Vec::with_capacity(arrivals.len());
        let (mut arrived, mut used, mut placed) = (0u64, 0u64, 0usize);
        let mut hash = mix(seed as u64);
        for (i, &p) in arrivals.iter().enumerate() {
            arrived += self.pods[p].total_milli();
            let view = ClusterView {
                topology: &topology,
                ledger: &ledger,
            };
            let outcome = place(view, &config, JobId(i as u64), &self.specs[p], place_seed);
            if let Outcome::Placed(plan) = outcome.outcome {
                let slot = plan.members[0];
                ledger.take(&topology, slot.node, &slot.take);
                used += self.pods[p].total_milli();
                placed += 1;
                let f = node_frag(&frag, &topology, &ledger, slot.node);
                frag_total += f - frag_of[slot.node.idx()];
                frag_of[slot.node.idx()] = f;
                hash = mix(hash ^ mix(i as u64) ^ mix(slot.node.0 as u64 + 1) ^ take_bits(&slot));
            } else {
                hash = mix(hash ^ mix(i as u64));
            }
            samples.push(Sample {
                arrived_milli: arrived,
                used_milli: used,
                frag_milli: frag_total,
            });
        }
        let gpus = (self.capacity_milli / 1_000) as f64;
        let alloc_pct = bucket_curve(&samples, gpus, |s| s.used_milli as f64);
        let frag_pct = bucket_curve(&samples, gpus, |s| s.frag_milli);
        let unallocated_pct_at_100 = 100.0 - alloc_pct[HEADLINE_BUCKET].unwrap_or(f64::NAN);
        SeedRun {
            seed,
            pods: arrivals.len(),
            placed,
            arrived_milli: arrived,
            used_milli: used,
            alloc_pct,
            frag_pct,
            unallocated_pct_at_100,
            decisions_hash: hash,
        }
    }
}

/// The cluster of a node list, nodes in file order, in one site of jurisdiction
/// [`JURISDICTION`]: every node its own NVLink domain, leaves of 32 nodes under one spine.
pub fn topology_of(nodes: &[NodeRow]) -> Result<Topology, String> {
    let mut models: Vec<String> = Vec::new();
    for n in nodes.iter().filter(|n| n.gpus > 0) {
        if !models.contains(&n.model) {
            models.push(n.model.clone());
        }
    }
    let order: Vec<usize> = (0..nodes.len()).collect();
    Topology::build(topology_desc(nodes, &models, &order)).map_err(|e| e.to_string())
}

/// The description of `nodes` in the order `order` (node ids follow it).
fn topology_desc(nodes: &[NodeRow], models: &[String], order: &[usize]) -> TopologyDesc {
    TopologyDesc {
        models: models
            .iter()
            .map(|m| GpuModelDesc {
                name: m.clone(),
                memory_mib: 0,
                nvlink_gbit_per_s: 0,
                mig_profiles: Vec::new(),
            })
            .collect(),
        sites: vec![SiteDesc {
            name: SITE.into(),
            jurisdiction: JURISDICTION.into(),
            region: "cn".into(),
            fabric: SiteFabric::default(),
        }],
        nodes: order
            .iter()
            .enumerate()
            .map(|(id, &row)| {
                let r = &nodes[row];
                NodeDesc {
                    name: r.name.clone(),
                    site: SITE.into(),
                    spine: "spine-0".into(),
                    leaf: format!("leaf-{}", id / LEAF_NODES),
                    nvlink_domain: None,
                    cpu_milli: r.cpu_milli,
                    memory_mib: r.memory_mib,
                    gpus: (0..r.gpus)
                        .map(|_| GpuDesc {
                            model: r.model.clone(),
                            mig: false,
                        })
                        .collect(),
                    nics: Vec::new(),
                }
            })
            .collect(),
        site_links: Vec::new(),
    }
}

/// The GPUs of a slot as bits, for the decision hash.
fn take_bits(slot: &sovra_scheduler::core::placement::MemberSlot) -> u64 {
    use sovra_fabric::GpuTake;
    match slot.take.gpus {
        GpuTake::None => 0,
        GpuTake::Whole { mask } => 1 << 40 | mask as u64,
        GpuTake::Milli { local, milli } => 2 << 40 | (local as u64) << 16 | milli as u64,
        GpuTake::Mig { local, .. } => 3 << 40 | local as u64,
    }
}

/// One sample, taken after a pod.
struct Sample {
    arrived_milli: u64,
    used_milli: u64,
    frag_milli: f64,
}

/// The reference's post-processing (`merge_alloc_discrete.py`): each sample's arrived % is
/// rounded to an integer (half to even), its value % to two decimals; bucket `k` is the mean
/// of the samples whose arrived % is `k`, or, when there are none, of those within `k ± 1`,
/// rounded to two decimals. Means are summed pairwise, as numpy sums.
fn bucket_curve(samples: &[Sample], gpus: f64, value: impl Fn(&Sample) -> f64) -> Vec<Option<f64>> {
    let mut by_bucket: Vec<Vec<f64>> = vec![Vec::new(); BUCKETS + 1];
    let mut bucket_of = Vec::with_capacity(samples.len());
    for s in samples {
        let arrive = (s.arrived_milli as f64 / gpus / 10.0).round_ties_even();
        let pct = round_decimals(value(s) / gpus / 10.0, 2);
        bucket_of.push((arrive, pct));
        if arrive >= 0.0 && (arrive as usize) <= BUCKETS {
            by_bucket[arrive as usize].push(pct);
        }
    }
    (0..BUCKETS)
        .map(|k| {
            let exact = &by_bucket[k];
            let values: Vec<f64> = if exact.is_empty() {
                let (lo, hi) = (k as f64 - 1.0, k as f64 + 1.0);
                bucket_of
                    .iter()
                    .filter(|(a, _)| *a >= lo && *a <= hi)
                    .map(|&(_, v)| v)
                    .collect()
            } else {
                exact.clone()
            };
            if values.is_empty() {
                None
            } else {
                Some(round_decimals(
                    pairwise_sum(&values) / values.len() as f64,
                    2,
                ))
            }
        })
        .collect()
}

/// FGD's fragmentation of one node now.
fn node_frag(frag: &FragModel, topology: &Topology, ledger: &Ledger, node: NodeId) -> f64 {
    let spec = topology.node(node);
    let free: Vec<u16> = spec
        .gpus
        .clone()
        .map(|g| 1_000 - ledger.gpu(sovra_fabric::GpuId(g)).used_milli)
        .collect();
    frag.node_frag(&free, ledger.node(node).cpu_milli, spec.model)
}

/// A pod's GPU request as a sovra job's.
pub(crate) fn gpu_request(p: &PodRow) -> GpuRequest {
    match (p.num_gpu, p.gpu_milli) {
        (0, _) | (_, 0) => GpuRequest::None,
        (1, m) if m < 1_000 => GpuRequest::Milli(m),
        (k, _) => GpuRequest::Whole(k),
    }
}

/// FGD's typical pods (`GetTypicalPods` with `isInvolvedCpuPods`, popularity 95%, step 1):
/// shapes counted over the original pods, most common first (ties: the larger shape first),
/// taken until they cover 95% of the pods. Weights are the counts; the population is the pod
/// count, so that [`FragModel`] renormalises exactly as the reference does.
fn typical_workload(pods: &[PodRow], models: &[String]) -> TargetWorkload {
    let keys = pods.iter().map(|p| ShapeKey {
        // Kubernetes' "non-zero" request: a pod without a CPU request counts as 100m.
        cpu_milli: if p.cpu_milli == 0 { 100 } else { p.cpu_milli },
        gpu_milli: p.gpu_milli,
        gpu_count: p.num_gpu,
        spec: p.gpu_spec.clone(),
    });
    typical_shapes(keys, models)
}

/// The target workload of any job list, built as FGD builds it from OpenB pods (see
/// [`typical_workload`]): a job's shape is one member's CPU, GPU share (1000 for whole GPUs)
/// and GPU count, and its allowed models. `models` are the topology's, in `ModelId` order.
/// The time-driven replays and `sovra-sim plan` give FGD and FragPack this target.
pub fn target_workload(specs: &[JobSpec], models: &[String]) -> TargetWorkload {
    let keys = specs.iter().map(|s| {
        let (gpu_milli, gpu_count) = match s.member_gpus() {
            GpuRequest::None | GpuRequest::Mig(_) => (0, 0),
            GpuRequest::Milli(m) => (m, 1),
            GpuRequest::Whole(k) => (1_000, k),
        };
        ShapeKey {
            cpu_milli: if s.cpu_milli == 0 { 100 } else { s.cpu_milli },
            gpu_milli,
            gpu_count,
            spec: s.gpu_models.join("|"),
        }
    });
    typical_shapes(keys, models)
}

fn typical_shapes(keys: impl Iterator<Item = ShapeKey>, models: &[String]) -> TargetWorkload {
    let mut counts: HashMap<ShapeKey, u64> = HashMap::new();
    let mut population = 0u64;
    for key in keys {
        *counts.entry(key).or_default() += 1;
        population += 1;
    }
    let mut shapes: Vec<(ShapeKey, u64)> = counts.into_iter().collect();
    shapes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let total = population as f64;
    let expected = TYPICAL_POPULARITY_PCT * total / 100.0;
    let mut covered = 0.0;
    let mut kept = 0;
    while covered < expected && kept < shapes.len() {
        covered += shapes[kept].1 as f64;
        kept += 1;
    }
    shapes.truncate(kept);
    TargetWorkload {
        shapes: shapes
            .into_iter()
            .map(|(key, count)| WorkloadShape {
                cpu_milli: key.cpu_milli,
                gpu_milli: key.gpu_milli,
                gpu_count: key.gpu_count,
                model_mask: model_mask(&key.spec, models),
                weight: count as u32,
            })
            .collect(),
        population,
    }
}

/// Allowed models as a mask over `models`; any model when the spec lists none.
fn model_mask(spec: &str, models: &[String]) -> u64 {
    let mut mask = 0u64;
    let mut listed = false;
    for m in spec.split('|').filter(|m| !m.is_empty()) {
        listed = true;
        if let Some(i) = models.iter().position(|x| x == m) {
            mask |= 1 << i;
        }
    }
    if listed {
        mask
    } else {
        u64::MAX
    }
}
