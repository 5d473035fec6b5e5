//! The node-scoring policies (`core::placement::score`): what each picks on a small cluster,
//! hand-checked scores of the FGD paper's baselines, seeded tie-breaking, and FragPack's two
//! extra costs (CPU stranding and model pressure).

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use common::*;
use expect_test::{expect, Expect};
use sovra_fabric::{Ledger, NodeId, Topology, TopologyDesc};
use sovra_scheduler::core::job::{GpuRequest, JobId, JobSpec};
use sovra_scheduler::core::placement::fgd::{TargetWorkload, WorkloadShape};
use sovra_scheduler::core::placement::{place, ClusterView, Outcome, PolicyConfig, SharePolicy};
use sovra_scheduler::core::rng::tie;

/// Three nodes in one AU site, each its own shape:
/// - `big`: 8 × H100, 96 CPUs (CPU-poor); GPU 0 has 400 milli free, GPU 1 is taken whole,
///   20 CPUs are used;
/// - `fat`: 2 × H100, 104 CPUs (CPU-rich), idle;
/// - `small`: 2 × L40S, 16 CPUs; GPU 0 has 500 milli free, 8 CPUs are used.
fn cluster() -> (Topology, Ledger) {
    let at = ("syd1", "sp1", "lf1");
    let mut nodes = vec![
        node("big", at, "H100", 8, false),
        node("fat", at, "H100", 2, false),
        node("small", at, "L40S", 2, false),
    ];
    for (n, cpu) in nodes.iter_mut().zip([96_000, 104_000, 16_000]) {
        n.cpu_milli = cpu;
    }
    let topology = build(TopologyDesc {
        models: models(),
        sites: vec![site("syd1", "AU")],
        nodes,
        site_links: Vec::new(),
    });
    let mut ledger = Ledger::new(&topology);
    use_milli(&topology, &mut ledger, "big", 0, 600);
    use_gpus(&topology, &mut ledger, "big", 1);
    use_host(&topology, &mut ledger, "big", 20_000, 0);
    use_milli(&topology, &mut ledger, "small", 0, 500);
    use_host(&topology, &mut ledger, "small", 8_000, 0);
    (topology, ledger)
}

/// A target workload: half-GPU tasks with 4 CPUs, whole-GPU tasks with 12, CPU-only tasks.
fn workload() -> TargetWorkload {
    let shape = |cpu_milli, gpu_milli, gpu_count, weight| WorkloadShape {
        cpu_milli,
        gpu_milli,
        gpu_count,
        model_mask: u64::MAX,
        weight,
    };
    TargetWorkload {
        shapes: vec![
            shape(4_000, 500, 1, 50),
            shape(12_000, 1_000, 1, 30),
            shape(8_000, 0, 0, 20),
        ],
        population: 110,
    }
}

fn policies() -> Vec<SharePolicy> {
    vec![
        SharePolicy::Random,
        SharePolicy::DotProduct,
        SharePolicy::GpuClustering,
        SharePolicy::GpuPacking,
        SharePolicy::NodeBestFit,
        SharePolicy::Fgd(workload()),
        SharePolicy::FragPack(workload()),
    ]
}

fn choose(
    topology: &Topology,
    ledger: &Ledger,
    share: &SharePolicy,
    job: &JobSpec,
    seed: u64,
) -> String {
    let policy = PolicyConfig {
        share: share.clone(),
        ..PolicyConfig::default()
    };
    let view = ClusterView { topology, ledger };
    let placed = place(view, &policy, JobId(7), job, seed);
    match placed.outcome {
        Outcome::Placed(plan) => render_slot(topology, &plan.members[0]),
        Outcome::Unschedulable(u) => format!("unschedulable: {}", u.message),
    }
}

fn check(jobs: &[(&str, JobSpec)], expect: Expect) {
    let (topology, ledger) = cluster();
    let mut out = String::new();
    for (name, job) in jobs {
        writeln!(out, "{name}:").unwrap();
        for share in policies() {
            let slot = choose(&topology, &ledger, &share, job, 1);
            writeln!(out, "  {:<15} {slot}", share.name()).unwrap();
        }
    }
    expect.assert_eq(&out);
}

#[test]
fn what_each_policy_picks() {
    check(
        &[
            (
                "share 400 / 4 cpus",
                batch(GpuRequest::Milli(400)).host(4_000, 1_024),
            ),
            (
                "share 500 / 4 cpus",
                batch(GpuRequest::Milli(500)).host(4_000, 1_024),
            ),
            ("1 gpu / 12 cpus", batch_whole(1).host(12_000, 1_024)),
            ("2 gpus / 8 cpus", batch_whole(2).host(8_000, 1_024)),
            (
                "cpu only / 8 cpus",
                batch(GpuRequest::None).host(8_000, 1_024),
            ),
            (
                "share 300 on l40s",
                batch(GpuRequest::Milli(300))
                    .host(2_000, 1_024)
                    .models(&["L40S"]),
            ),
        ],
        expect![[r#"
            share 400 / 4 cpus:
              random          fat{g1:400m}
              dot-product     small{g0:400m}
              gpu-clustering  small{g0:400m}
              gpu-packing     big{g0:400m}
              node-best-fit   small{g0:400m}
              fgd             big{g0:400m}
              frag-pack       big{g0:400m}
            share 500 / 4 cpus:
              random          fat{g1:500m}
              dot-product     small{g0:500m}
              gpu-clustering  small{g0:500m}
              gpu-packing     small{g0:500m}
              node-best-fit   small{g0:500m}
              fgd             small{g0:500m}
              frag-pack       small{g0:500m}
            1 gpu / 12 cpus:
              random          fat{0}
              dot-product     fat{0}
              gpu-clustering  big{2}
              gpu-packing     big{2}
              node-best-fit   fat{0}
              fgd             big{2}
              frag-pack       big{2}
            2 gpus / 8 cpus:
              random          fat{0-1}
              dot-product     fat{0-1}
              gpu-clustering  fat{0-1}
              gpu-packing     big{2-3}
              node-best-fit   fat{0-1}
              fgd             big{2-3}
              frag-pack       big{2-3}
            cpu only / 8 cpus:
              random          fat{}
              dot-product     small{}
              gpu-clustering  big{}
              gpu-packing     big{}
              node-best-fit   small{}
              fgd             big{}
              frag-pack       big{}
            share 300 on l40s:
              random          small{g1:300m}
              dot-product     small{g0:300m}
              gpu-clustering  small{g0:300m}
              gpu-packing     small{g0:300m}
              node-best-fit   small{g0:300m}
              fgd             small{g1:300m}
              frag-pack       small{g1:300m}
        "#]],
    );
}

/// The baselines' scores, worked by hand from the FGD paper's formulas.
#[test]
fn baseline_scores_by_hand() {
    let (topology, ledger) = cluster();
    let share = batch(GpuRequest::Milli(500)).host(4_000, 1_024);
    // BestFit `100·(1 − ½(c − cpu)/128000 − ½(g − req)/8000)`: big 35, fat 51, small 92.
    assert_eq!(
        choose(&topology, &ledger, &SharePolicy::NodeBestFit, &share, 1),
        "small{g0:500m}"
    );
    // Packing, a 400-milli share: big's 400-milli GPU scores 100 − 40/10 = 96, small's
    // 500-milli GPU 95, fat (idle, 2 GPUs) max(33 − 2, 2) = 31.
    let share_400 = batch(GpuRequest::Milli(400)).host(4_000, 1_024);
    assert_eq!(
        choose(&topology, &ledger, &SharePolicy::GpuPacking, &share_400, 1),
        "big{g0:400m}"
    );
    // Clustering, a share: small runs only shares (75 + 25·6500/8000 = 95), big runs shares
    // and a 1-GPU task (50 + 5), fat nothing (25 + 18).
    assert_eq!(
        choose(&topology, &ledger, &SharePolicy::GpuClustering, &share, 1),
        "small{g0:500m}"
    );
}

/// Equal scores go to the lowest `tie(seed, node)`: a per-seed random but fixed node order.
#[test]
fn ties_follow_the_seeded_node_order() {
    let at = ("syd1", "sp1", "lf1");
    let topology = build(TopologyDesc {
        models: models(),
        sites: vec![site("syd1", "AU")],
        nodes: (0..4)
            .map(|i| node(&format!("n{i}"), at, "H100", 8, false))
            .collect(),
        site_links: Vec::new(),
    });
    let ledger = Ledger::new(&topology);
    let job = batch_whole(1).host(4_000, 1_024);
    let mut winners = BTreeSet::new();
    for seed in 0..32u64 {
        let expected = (0..4u32)
            .min_by_key(|&i| tie(seed, i as u64))
            .map(|i| topology.node(NodeId(i)).name.clone())
            .unwrap();
        for share in policies().into_iter().filter(|s| *s != SharePolicy::Random) {
            let chosen = choose(&topology, &ledger, &share, &job, seed);
            assert_eq!(
                chosen,
                format!("{expected}{{0}}"),
                "{} seed {seed}",
                share.name()
            );
        }
        winners.insert(expected);
    }
    assert_eq!(winners.len(), 4, "every node wins some seed");
}

/// Random draws per job: one seed spreads jobs over every node that fits.
#[test]
fn random_spreads_jobs() {
    let (topology, ledger) = cluster();
    let policy = PolicyConfig {
        share: SharePolicy::Random,
        ..PolicyConfig::default()
    };
    let job = batch(GpuRequest::Milli(300)).host(1_000, 1_024);
    let mut nodes = BTreeSet::new();
    for j in 0..64 {
        let view = ClusterView {
            topology: &topology,
            ledger: &ledger,
        };
        let a = place(view, &policy, JobId(j), &job, 5);
        let b = place(view, &policy, JobId(j), &job, 5);
        assert_eq!(a, b, "same job and seed, same placement");
        if let Outcome::Placed(plan) = a.outcome {
            nodes.insert(plan.members[0].node);
        }
    }
    assert_eq!(nodes.len(), 3);
}

/// FragPack keeps a CPU-heavy task off the CPU-poor node, where its CPU would strand GPUs;
/// FGD, which sees the node's fragmentation unchanged, does not.
#[test]
fn frag_pack_avoids_stranding_gpus() {
    let at = ("syd1", "sp1", "lf1");
    let mut nodes = vec![
        node("poor", at, "H100", 8, false),
        node("rich", at, "H100", 8, false),
    ];
    nodes[0].cpu_milli = 64_000;
    nodes[1].cpu_milli = 256_000;
    let topology = build(TopologyDesc {
        models: models(),
        sites: vec![site("syd1", "AU")],
        nodes,
        site_links: Vec::new(),
    });
    let ledger = Ledger::new(&topology);
    let hungry = batch_whole(1).host(24_000, 1_024);
    for seed in 0..8 {
        assert_eq!(
            choose(
                &topology,
                &ledger,
                &SharePolicy::FragPack(workload()),
                &hungry,
                seed
            ),
            "rich{0}",
            "seed {seed}"
        );
    }
    let fgd: BTreeSet<String> = (0..8)
        .map(|seed| {
            choose(
                &topology,
                &ledger,
                &SharePolicy::Fgd(workload()),
                &hungry,
                seed,
            )
        })
        .collect();
    assert_eq!(fgd.len(), 2, "fgd ties the two nodes: {fgd:?}");
}

/// FragPack keeps unrestricted tasks off a model that restricted tasks need.
#[test]
fn frag_pack_leaves_room_for_restricted_tasks() {
    let at = ("syd1", "sp1", "lf1");
    let topology = build(TopologyDesc {
        models: models(),
        sites: vec![site("syd1", "AU")],
        nodes: vec![
            node("h100", at, "H100", 8, false),
            node("l40s", at, "L40S", 8, false),
        ],
        site_links: Vec::new(),
    });
    let ledger = Ledger::new(&topology);
    let l40s = topology.model_by_name("L40S").unwrap().idx();
    let mut w = workload();
    // Half the whole-GPU demand may only run on L40S.
    w.shapes.push(WorkloadShape {
        model_mask: 1 << l40s,
        ..w.shapes[1].clone()
    });
    let any = batch_whole(1).host(4_000, 1_024);
    for seed in 0..8 {
        assert_eq!(
            choose(
                &topology,
                &ledger,
                &SharePolicy::FragPack(w.clone()),
                &any,
                seed
            ),
            "h100{0}",
            "seed {seed}"
        );
    }
}
