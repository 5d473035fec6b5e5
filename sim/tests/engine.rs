//! The discrete-event core and the cluster simulation over the state machine: event order,
//! determinism (same input, same report, bit for bit), and node failures.

use std::fmt::Write as _;

use expect_test::expect;
use sovra_fabric::{Jurisdiction, NodeId};
use sovra_scheduler::core::placement::PolicyConfig;
use sovra_scheduler::core::rng::mix;
use sovra_sim::engine::{synthetic, ClusterSim, EventQueue, Fault, Report};
use sovra_sim::loader::parse_nodes;
use sovra_sim::openb::{topology_of, JURISDICTION};

fn topology() -> sovra_fabric::Topology {
    let path = format!(
        "{}/tests/fixtures/openb/openb_node_list_gpu_node_40.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    topology_of(&parse_nodes(&path, &text).unwrap()).unwrap()
}

fn simulate(seed: u64, jobs: usize, extra_faults: &[Fault]) -> Report {
    let topology = topology();
    let jurisdiction = Jurisdiction::parse(JURISDICTION).unwrap();
    let (arrivals, mut faults) = synthetic(&topology, jurisdiction, seed, jobs);
    faults.extend_from_slice(extra_faults);
    ClusterSim::new(topology, PolicyConfig::default(), arrivals, &faults).run()
}

#[test]
fn events_pop_in_time_then_schedule_order() {
    let mut q = EventQueue::default();
    for i in 0..1_000u64 {
        q.push(mix(i) % 50, i);
    }
    let mut last = (0, 0);
    let mut n = 0;
    while let Some((t, i)) = q.pop() {
        assert!((t, i) >= last, "{:?} after {last:?}", (t, i));
        last = (t, i);
        n += 1;
    }
    assert_eq!(n, 1_000);
    assert!(q.is_empty() && q.peek_time().is_none());
}

#[test]
fn same_seed_same_report() {
    let a = simulate(7, 400, &[]);
    let b = simulate(7, 400, &[]);
    assert_eq!(a, b);
    let c = simulate(8, 400, &[]);
    assert_ne!(a.trace_hash, c.trace_hash);
    assert_ne!(a.state_hash, c.state_hash);
}

#[test]
fn report_of_a_run() {
    let topology = topology();
    let capacity: u64 = topology
        .nodes()
        .iter()
        .map(|n| 1_000 * n.gpu_count() as u64)
        .sum();
    // Fail the three nodes that the first placements use, while they are busy.
    let faults: Vec<Fault> = (0..3)
        .map(|i| Fault {
            node: NodeId::from_idx(i),
            at_ms: 3_000_000,
            repair_after_ms: Some(1_800_000),
        })
        .collect();
    let r = simulate(7, 400, &faults);
    assert_eq!(r.submitted, 400);
    assert_eq!(r.completed + r.unfinished, 400, "nothing is lost");
    let mut out = String::new();
    writeln!(
        out,
        "events {} submitted {} starts {} completed {} requeued {} unfinished {}",
        r.events, r.submitted, r.starts, r.completed, r.requeued, r.unfinished
    )
    .unwrap();
    writeln!(
        out,
        "wait p50 {:?} ms, p95 {:?} ms; gpu utilisation {:.2}%; end {} ms",
        r.wait_quantile_ms(0.5),
        r.wait_quantile_ms(0.95),
        r.utilisation_pct(capacity),
        r.end_ms
    )
    .unwrap();
    writeln!(out, "trace {:016x}", r.trace_hash).unwrap();
    expect![[r#"
        events 834 submitted 400 starts 426 completed 400 requeued 26 unfinished 0
        wait p50 Some(0) ms, p95 Some(1321697) ms; gpu utilisation 49.24%; end 12178212 ms
        trace e8514635eef5aabe
    "#]]
    .assert_eq(&out);
}
