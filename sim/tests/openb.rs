//! The OpenB evaluation on the repository's fixtures (`tests/fixtures/openb`, a 40-node
//! subset of the cluster and small subsets of two traces): every policy for two seeds, the
//! workload construction, the target workload, the cluster layout, and determinism.

use std::fmt::Write as _;

use expect_test::{expect, Expect};
use sovra_scheduler::core::rng::{mix, tie};
use sovra_sim::loader::{parse_nodes, parse_pods};
use sovra_sim::openb::{Experiment, Policy, HEADLINE_BUCKET, TUNE_RATIO};

const NODES: &str = "openb_node_list_gpu_node_40.csv";
const DEFAULT: &str = "openb_pod_list_default_300.csv";
const GPUSPEC: &str = "openb_pod_list_gpuspec25_204.csv";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/openb/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn experiment(pods: &str) -> Experiment {
    let nodes = parse_nodes(NODES, &fixture(NODES)).unwrap();
    let pods = parse_pods(pods, &fixture(pods)).unwrap();
    Experiment::new(nodes, pods).unwrap()
}

fn check_runs(pods: &str, expect: Expect) {
    let e = experiment(pods);
    let mut out = String::new();
    for policy in Policy::ALL {
        write!(out, "{:<10}", policy.name()).unwrap();
        for seed in [42, 43] {
            let r = e.run(policy, seed);
            write!(
                out,
                " | {seed}: {:.2}% unalloc, {}/{} placed",
                r.unallocated_pct_at_100, r.placed, r.pods
            )
            .unwrap();
        }
        out.push('\n');
    }
    expect.assert_eq(&out);
}

#[test]
fn every_policy_two_seeds_default() {
    check_runs(
        DEFAULT,
        expect![[r#"
            random     | 42: 9.13% unalloc, 232/275 placed | 43: 15.65% unalloc, 222/274 placed
            dotprod    | 42: 6.31% unalloc, 220/275 placed | 43: 6.80% unalloc, 203/274 placed
            clustering | 42: 7.51% unalloc, 217/275 placed | 43: 9.11% unalloc, 203/274 placed
            packing    | 42: 7.40% unalloc, 217/275 placed | 43: 7.59% unalloc, 200/274 placed
            bestfit    | 42: 6.42% unalloc, 219/275 placed | 43: 5.84% unalloc, 203/274 placed
            fgd        | 42: 5.47% unalloc, 220/275 placed | 43: 4.35% unalloc, 209/274 placed
            default    | 42: 4.50% unalloc, 222/275 placed | 43: 3.82% unalloc, 209/274 placed
        "#]],
    );
}

#[test]
fn every_policy_two_seeds_gpuspec() {
    check_runs(
        GPUSPEC,
        expect![[r#"
            random     | 42: 21.08% unalloc, 245/324 placed | 43: 21.35% unalloc, 239/322 placed
            dotprod    | 42: 17.60% unalloc, 229/324 placed | 43: 19.23% unalloc, 226/322 placed
            clustering | 42: 16.44% unalloc, 230/324 placed | 43: 16.15% unalloc, 229/322 placed
            packing    | 42: 17.15% unalloc, 233/324 placed | 43: 15.61% unalloc, 237/322 placed
            bestfit    | 42: 17.60% unalloc, 242/324 placed | 43: 18.70% unalloc, 239/322 placed
            fgd        | 42: 6.94% unalloc, 243/324 placed | 43: 8.30% unalloc, 245/322 placed
            default    | 42: 4.31% unalloc, 249/324 placed | 43: 5.15% unalloc, 251/322 placed
        "#]],
    );
}

#[test]
fn same_seed_same_run() {
    let e = experiment(DEFAULT);
    for policy in [Policy::Fgd, Policy::Default, Policy::Random] {
        let a = e.run(policy, 42);
        let b = e.run(policy, 42);
        assert_eq!(a, b, "{}: a rerun is bit-identical", policy.name());
        let c = e.run(policy, 43);
        assert_ne!(a.decisions_hash, c.decisions_hash, "{}", policy.name());
    }
}

#[test]
fn workload_construction() {
    let mut out = String::new();
    for pods in [DEFAULT, GPUSPEC] {
        let e = experiment(pods);
        let target = TUNE_RATIO * e.capacity_milli() as f64;
        for seed in [42, 43] {
            let (arrivals, priority) = e.workload(seed);
            let mut p = priority.clone();
            p.sort_unstable();
            assert!(p.iter().enumerate().all(|(i, &v)| i == v), "a permutation");
            let name = &pods["openb_pod_list_".len()..pods.len() - ".csv".len()];
            writeln!(
                out,
                "{name} seed {seed}: {} arrivals, first {:?}; node priorities {:?}",
                arrivals.len(),
                &arrivals[..3],
                &priority[..3]
            )
            .unwrap();
        }
        let (arrivals, _) = e.workload(42);
        assert!(!arrivals.is_empty() && target > 0.0);
    }
    expect![[r#"
        default_300 seed 42: 275 arrivals, first [282, 30, 150]; node priorities [7, 39, 6]
        default_300 seed 43: 274 arrivals, first [159, 7, 102]; node priorities [31, 28, 34]
        gpuspec25_204 seed 42: 324 arrivals, first [90, 78, 86]; node priorities [7, 39, 6]
        gpuspec25_204 seed 43: 322 arrivals, first [130, 188, 168]; node priorities [32, 6, 8]
    "#]]
    .assert_eq(&out);
}

#[test]
fn target_workload() {
    let e = experiment(GPUSPEC);
    let t = e.target();
    let covered: u64 = t.shapes.iter().map(|s| s.weight as u64).sum();
    let mut out = format!(
        "{} shapes cover {covered} of {} pods; the most common:\n",
        t.shapes.len(),
        t.population
    );
    for s in t.shapes.iter().take(8) {
        writeln!(
            out,
            "cpu {:>6} gpu {}x{:<4} models {:016x} weight {}",
            s.cpu_milli, s.gpu_count, s.gpu_milli, s.model_mask, s.weight
        )
        .unwrap();
    }
    expect![[r#"
        55 shapes cover 194 of 204 pods; the most common:
        cpu  11300 gpu 1x1000 models ffffffffffffffff weight 21
        cpu   3152 gpu 1x810  models ffffffffffffffff weight 14
        cpu  11400 gpu 1x1000 models ffffffffffffffff weight 13
        cpu  12500 gpu 0x0    models ffffffffffffffff weight 9
        cpu   8000 gpu 1x470  models ffffffffffffffff weight 9
        cpu  32000 gpu 0x0    models ffffffffffffffff weight 8
        cpu   4000 gpu 1x320  models ffffffffffffffff weight 7
        cpu   3152 gpu 1x1000 models ffffffffffffffff weight 7
    "#]]
    .assert_eq(&out);
}

/// The layout puts the node of priority `r` where `tie(seed, id)` ranks `r`: sovra's tie
/// order is the reference's node priority.
#[test]
fn layout_follows_the_priority() {
    let e = experiment(DEFAULT);
    let (_, priority) = e.workload(42);
    let seed = mix(42);
    let (topology, row_of_id) = e.topology(&priority, seed);
    let mut by_tie: Vec<usize> = (0..row_of_id.len()).collect();
    by_tie.sort_by_key(|&id| tie(seed, id as u64));
    for (rank, &id) in by_tie.iter().enumerate() {
        assert_eq!(priority[row_of_id[id]], rank);
        let name = &topology.node(sovra_fabric::NodeId::from_idx(id)).name;
        assert_eq!(*name, e.nodes()[row_of_id[id]].name);
    }
}

#[test]
fn headline_is_the_100_bucket() {
    let r = experiment(DEFAULT).run(Policy::Fgd, 42);
    let at_100 = r.alloc_pct[HEADLINE_BUCKET].unwrap();
    assert_eq!(r.unallocated_pct_at_100, 100.0 - at_100);
    // Before anything fails, everything that arrived is allocated.
    let at_10 = r.alloc_pct[10].unwrap();
    assert!((at_10 - 10.0).abs() < 1.0, "{at_10}");
}

#[test]
fn experiments_refuse_traces_that_cannot_be_tuned() {
    let nodes = || parse_nodes(NODES, &fixture(NODES)).unwrap();
    let pods = |gpu_pods: usize, cpu_pods: usize| {
        let mut text = String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n");
        for i in 0..gpu_pods {
            text.push_str(&format!("g{i},1000,1024,1,1\n"));
        }
        for i in 0..cpu_pods {
            text.push_str(&format!("c{i},1000,1024,0,0\n"));
        }
        parse_pods("pods.csv", &text).unwrap()
    };
    let err = |gpu_pods, cpu_pods| Experiment::new(nodes(), pods(gpu_pods, cpu_pods)).err();
    assert_eq!(
        err(0, 3).as_deref(),
        Some("the trace has no gpu pod to tune the workload by")
    );
    let too_small = err(1, 100).unwrap();
    assert!(
        too_small.starts_with("the pods ask for 0.010 milli-gpu each on average: reaching 1.3 x"),
        "{too_small}"
    );
    assert!(
        too_small.ends_with("about 24421800 pods, more than 10000000"),
        "{too_small}"
    );
    assert!(err(1, 0).is_none());
}
