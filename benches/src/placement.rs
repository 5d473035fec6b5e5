//! The placement benchmark: the latency of one `place()` call on a filled cluster.
//!
//! Each [`Case`] is a job shape. A run draws `samples` jobs of that shape, each with its own
//! job id and seed (`rng::mix(seed + i)`, which also varies the job's parameters), and times
//! `place()` alone around the call with `std::time::Instant`. Jobs are built before the clock
//! starts and the result is dropped after it stops. Placement is pure and the plan is never
//! applied, so every sample sees the same cluster state.
//!
//! A sample counts as placed when it produced a plan. A case that mostly fails measures the
//! unschedulable path (a full diagnostic scan) instead of the placement path, so callers must
//! look at [`Measurement::placed`] before reading the timings. `gang_1024` exists to measure
//! that path on purpose: on the benchmark fill at 0.9 occupancy no spine has room for it.

use std::hint::black_box;
use std::time::Instant;

use sovra_fabric::{Jurisdiction, Ledger, Level, Topology};
use sovra_scheduler::core::job::{
    Affinity, GangSpec, GpuRequest, InferenceSpec, JobId, JobSpec, LatencySlo, TopologyRule,
    Workload,
};
use sovra_scheduler::core::placement::{place, ClusterView, Outcome, PolicyConfig};
use sovra_scheduler::core::rng;

use crate::stats::{summarize, Summary};

const MIB_PER_GIB: u64 = 1024;
const MILLI_PER_CPU: u64 = 1000;
const NS_PER_MS: u64 = 1_000_000;

/// Share of a fractional GPU asked for by `fractional_gpu`, in milli-GPU, inclusive.
const FRACTIONAL_MILLI: (u64, u64) = (250, 750);
/// Ingress site of the `inference_8` latency objective.
const INFERENCE_INGRESS_SITE: &str = "sin1";
/// Largest RTT from the ingress site to a replica, for `inference_8`: SIN and KUL qualify.
const INFERENCE_RTT_MS_MAX: u64 = 20;

/// Salt for drawing a job's parameters from its sample seed, apart from placement's own use.
const PARAMETER_SALT: u64 = 0xB0B5_1ED5;

/// A job shape to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// A batch job of one whole GPU in one random jurisdiction.
    #[value(name = "single_gpu")]
    SingleGpu,
    /// A batch job of 250..=750 milli-GPU in one random jurisdiction.
    #[value(name = "fractional_gpu")]
    FractionalGpu,
    /// A gang of 8 × 8 GPUs that must share a leaf, in one random jurisdiction.
    #[value(name = "gang_64")]
    Gang64,
    /// A gang of 64 × 8 GPUs that must share a spine, in any of the four jurisdictions.
    #[value(name = "gang_512")]
    Gang512,
    /// A gang of 128 × 8 GPUs that must share a spine, in any of the four jurisdictions: the
    /// unschedulable path at 0.9 occupancy, where no spine has 128 free nodes.
    #[value(name = "gang_1024")]
    Gang1024,
    /// An inference service of 8 × 1 GPU spread over leaves within 20 ms of `sin1`.
    #[value(name = "inference_8")]
    Inference8,
}

impl Case {
    /// Every case, in report order.
    pub const ALL: [Case; 6] = [
        Case::SingleGpu,
        Case::FractionalGpu,
        Case::Gang64,
        Case::Gang512,
        Case::Gang1024,
        Case::Inference8,
    ];

    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Case::SingleGpu => "single_gpu",
            Case::FractionalGpu => "fractional_gpu",
            Case::Gang64 => "gang_64",
            Case::Gang512 => "gang_512",
            Case::Gang1024 => "gang_1024",
            Case::Inference8 => "inference_8",
        }
    }
}

/// How to run one case. Passed in, never stored.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Timed placements.
    pub samples: usize,
    /// Untimed placements before the timed ones (caches, branch predictors, allocator).
    pub warmup: usize,
    /// Base seed: sample `i` uses `rng::mix(seed + i)`.
    pub seed: u64,
}

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The case.
    pub case: Case,
    /// Timed placements.
    pub samples: usize,
    /// Timed placements that produced a plan.
    pub placed: usize,
    /// Latency of `place()`, all samples.
    pub summary: Summary,
    /// Latency of the samples that were placed, and of those that were not, when the case
    /// has both (the two paths cost very differently).
    pub split: Option<(Summary, Summary)>,
    /// Mean of the explanation's `nodes_evaluated` (nodes the feasibility stage examined).
    pub nodes_evaluated_mean: f64,
    /// The message of the first sample that was not placed, if any.
    pub unschedulable_first: Option<String>,
}

impl Measurement {
    /// Share of samples placed, in percent.
    pub fn placed_pct(&self) -> f64 {
        100.0 * self.placed as f64 / self.samples as f64
    }
}

/// The job of sample `seed` for `case` on `topology`.
pub fn job(case: Case, topology: &Topology, seed: u64) -> JobSpec {
    let parameter = rng::tie(seed, PARAMETER_SALT);
    let all_jurisdictions = topology.jurisdictions().to_vec();
    assert!(
        !all_jurisdictions.is_empty(),
        "topology without jurisdictions"
    );
    let one_jurisdiction = vec![all_jurisdictions[parameter as usize % all_jurisdictions.len()]];
    let (jurisdictions, cpu_milli, memory_mib, workload): (Vec<Jurisdiction>, u64, u64, Workload) =
        match case {
            Case::SingleGpu => (
                one_jurisdiction,
                8 * MILLI_PER_CPU,
                64 * MIB_PER_GIB,
                Workload::Batch {
                    gpus: GpuRequest::Whole(1),
                },
            ),
            Case::FractionalGpu => {
                let (lo, hi) = FRACTIONAL_MILLI;
                let milli = lo + (parameter >> 8) % (hi - lo + 1);
                let milli = u32::try_from(milli).expect("fractional share fits u32");
                (
                    one_jurisdiction,
                    4 * MILLI_PER_CPU,
                    16 * MIB_PER_GIB,
                    Workload::Batch {
                        gpus: GpuRequest::Milli(milli),
                    },
                )
            }
            Case::Gang64 => (
                one_jurisdiction,
                8 * MILLI_PER_CPU,
                64 * MIB_PER_GIB,
                gang(8, Level::Leaf),
            ),
            Case::Gang512 => (
                all_jurisdictions,
                8 * MILLI_PER_CPU,
                64 * MIB_PER_GIB,
                gang(64, Level::Spine),
            ),
            Case::Gang1024 => (
                all_jurisdictions,
                8 * MILLI_PER_CPU,
                64 * MIB_PER_GIB,
                gang(128, Level::Spine),
            ),
            Case::Inference8 => (
                all_jurisdictions,
                8 * MILLI_PER_CPU,
                64 * MIB_PER_GIB,
                Workload::Inference(InferenceSpec {
                    replicas: 8,
                    gpus: GpuRequest::Whole(1),
                    slo: Some(LatencySlo {
                        ingress_site: INFERENCE_INGRESS_SITE.to_string(),
                        max_rtt_ns: INFERENCE_RTT_MS_MAX * NS_PER_MS,
                    }),
                    spread: Level::Leaf,
                }),
            ),
        };
    let spec = JobSpec {
        run: Default::default(),
        name: format!("bench-{}-{seed:016x}", case.name()),
        tenant: "bench".to_string(),
        priority: 0,
        jurisdictions,
        gpu_models: Vec::new(),
        cpu_milli,
        memory_mib,
        time_limit_ms: None,
        workload,
        control: Default::default(),
    };
    if let Err(message) = spec.validate() {
        panic!("benchmark job for {} is malformed: {message}", case.name());
    }
    spec
}

/// A gang of `members` × 8 GPUs that must share one subtree at `level`.
fn gang(members: u32, level: Level) -> Workload {
    Workload::Gang(GangSpec {
        members,
        gpus_per_member: 8,
        topology: TopologyRule {
            level: Some(level),
            affinity: Affinity::Required,
        },
        max_rtt_ns: None,
    })
}

/// Times `config.samples` placements of `case` on `(topology, ledger)`.
pub fn measure(topology: &Topology, ledger: &Ledger, case: Case, config: &Config) -> Measurement {
    assert!(config.samples > 0, "a measurement needs samples");
    let view = ClusterView { topology, ledger };
    let policy = PolicyConfig::default();
    let sample = |i: usize| -> (JobId, JobSpec, u64) {
        let seed = rng::mix(config.seed.wrapping_add(i as u64));
        (JobId(i as u64 + 1), job(case, topology, seed), seed)
    };
    // Warm-up samples come after the timed ones, so they never repeat a timed job.
    for i in config.samples..config.samples + config.warmup {
        let (job_id, spec, seed) = sample(i);
        black_box(place(view, &policy, job_id, &spec, seed));
    }
    let mut durations_ns = Vec::with_capacity(config.samples);
    let mut placed_ns = Vec::with_capacity(config.samples);
    let mut unplaced_ns = Vec::new();
    let mut placed = 0usize;
    let mut nodes_evaluated = 0u64;
    let mut unschedulable_first = None;
    for i in 0..config.samples {
        let (job_id, spec, seed) = sample(i);
        let (job_id, spec) = (black_box(job_id), black_box(spec));
        let start = Instant::now();
        let placement = place(view, &policy, job_id, &spec, seed);
        let elapsed = start.elapsed();
        let placement = black_box(placement);
        let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        durations_ns.push(elapsed_ns);
        match &placement.outcome {
            Outcome::Placed(_) => {
                placed += 1;
                placed_ns.push(elapsed_ns);
            }
            Outcome::Unschedulable(u) => {
                unplaced_ns.push(elapsed_ns);
                unschedulable_first.get_or_insert_with(|| format!("{}: {}", u.reason, u.message));
            }
        }
        nodes_evaluated += u64::from(placement.explanation.nodes_evaluated);
    }
    assert_eq!(durations_ns.len(), config.samples);
    assert_eq!(placed_ns.len(), placed);
    let split = (!placed_ns.is_empty() && !unplaced_ns.is_empty())
        .then(|| (summarize(&mut placed_ns), summarize(&mut unplaced_ns)));
    Measurement {
        case,
        samples: config.samples,
        placed,
        summary: summarize(&mut durations_ns),
        split,
        nodes_evaluated_mean: nodes_evaluated as f64 / config.samples as f64,
        unschedulable_first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::cluster;

    #[test]
    fn every_case_places_on_a_half_full_small_cluster() {
        let (topology, ledger) = cluster(512, 0.5, 1).unwrap();
        let config = Config {
            samples: 20,
            warmup: 2,
            seed: 1,
        };
        let placed: Vec<(&str, usize)> = Case::ALL
            .iter()
            .map(|&case| {
                (
                    case.name(),
                    measure(&topology, &ledger, case, &config).placed,
                )
            })
            .collect();
        // gang_512 needs 64 free nodes under one spine; 512 nodes have 64 per spine.
        assert_eq!(
            placed,
            vec![
                ("single_gpu", 20),
                ("fractional_gpu", 20),
                ("gang_64", 20),
                ("gang_512", 0),
                ("gang_1024", 0),
                ("inference_8", 20),
            ]
        );
    }

    /// On the benchmark cluster, the gang cases time the path they are meant to: at 0.5 and
    /// 0.9 every gang of 64 and 512 GPUs places (in every jurisdiction `gang_64` draws), and
    /// `gang_1024` places at 0.5 but never at 0.9. Every sample sees the filled cluster: the
    /// ledger is not changed by measuring.
    #[test]
    fn gang_cases_take_the_intended_path_on_the_benchmark_cluster() {
        let config = Config {
            samples: 16,
            warmup: 0,
            seed: 1,
        };
        let mut out = Vec::new();
        for occupancy in [0.5, 0.9] {
            let (topology, ledger) = cluster(4096, occupancy, 1).unwrap();
            let before = ledger.clone();
            for case in [Case::Gang64, Case::Gang512, Case::Gang1024] {
                let m = measure(&topology, &ledger, case, &config);
                out.push((occupancy.to_string(), case.name(), m.placed));
            }
            assert!(ledger == before, "measuring leaves the ledger as filled");
        }
        let expected = [
            ("0.5", "gang_64", 16),
            ("0.5", "gang_512", 16),
            ("0.5", "gang_1024", 16),
            ("0.9", "gang_64", 16),
            ("0.9", "gang_512", 16),
            ("0.9", "gang_1024", 0),
        ];
        let expected: Vec<(String, &str, usize)> = expected
            .iter()
            .map(|&(o, c, n)| (o.to_string(), c, n))
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn jobs_vary_across_samples() {
        let (topology, _) = cluster(256, 0.0, 1).unwrap();
        let jurisdictions: std::collections::BTreeSet<String> = (0..64)
            .map(|i| job(Case::SingleGpu, &topology, rng::mix(i)).jurisdictions[0].to_string())
            .collect();
        assert_eq!(jurisdictions.len(), 4);
        let shares: std::collections::BTreeSet<u32> = (0..64)
            .map(
                |i| match job(Case::FractionalGpu, &topology, rng::mix(i)).workload {
                    Workload::Batch {
                        gpus: GpuRequest::Milli(m),
                    } => m,
                    other => panic!("unexpected workload {other:?}"),
                },
            )
            .collect();
        assert!(shares.len() > 32);
        assert!(shares.iter().all(|m| (250..=750).contains(m)));
    }
}
