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

// ---------------------------------------------------------------------------------------------
// Node events: site outages, drains, nesting, GPUs added later.

mod events {
    use sovra_fabric::{Jurisdiction, NodeId, Topology};
    use sovra_scheduler::core::job::{GpuRequest, JobSpec, Workload};
    use sovra_scheduler::core::placement::{Outcome, PolicyConfig};
    use sovra_sim::engine::{
        ClusterSim, Decision, Fate, JobArrival, NodeChange, NodeEvent, Observer, Report, SimConfig,
    };
    use sovra_sim::scenario::{base_cluster, parse_scenario};

    const H: u64 = 3_600_000;

    /// `east` (JP): 2 nodes of 4 GPUs; `west` (SG): 1 node of 4 GPUs.
    fn cluster() -> Topology {
        let text = r#"
            [cluster]
            [[cluster.sites]]
            name = "east"
            jurisdiction = "JP"
            nodes = [{ count = 2, gpus = 4, model = "H100" }]
            [[cluster.sites]]
            name = "west"
            jurisdiction = "SG"
            nodes = [{ count = 1, gpus = 4, model = "H100" }]
            [workload]
            trace = "unused.jsonl"
        "#;
        let scenario = parse_scenario("cluster.toml", text).unwrap();
        Topology::build(base_cluster(&scenario, None).unwrap()).unwrap()
    }

    fn job(name: &str, jurisdiction: &str, gpus: u32, at_ms: u64, duration_ms: u64) -> JobArrival {
        JobArrival {
            spec: JobSpec {
                run: Default::default(),
                name: name.into(),
                tenant: "t".into(),
                priority: 0,
                jurisdictions: vec![Jurisdiction::parse(jurisdiction).unwrap()],
                gpu_models: Vec::new(),
                cpu_milli: 1_000,
                memory_mib: 1_024,
                time_limit_ms: None,
                workload: Workload::Batch {
                    gpus: GpuRequest::Whole(gpus),
                },
                control: Default::default(),
            },
            at_ms,
            duration_ms,
        }
    }

    fn node(topology: &Topology, name: &str) -> NodeId {
        topology.node_by_name(name).unwrap()
    }

    fn events(nodes: &[NodeId], at_ms: u64, change: NodeChange) -> Vec<NodeEvent> {
        nodes
            .iter()
            .map(|&node| NodeEvent {
                at_ms,
                node,
                change,
            })
            .collect()
    }

    /// Placements, as (time, job input, node names).
    #[derive(Default)]
    struct Placements(Vec<(u64, usize, Vec<String>)>, Vec<Decision>);

    impl Observer for Placements {
        fn wants_decisions(&self) -> bool {
            true
        }
        fn on_decision(&mut self, d: Decision) {
            self.1.push(d);
        }
    }

    fn run(
        jobs: Vec<JobArrival>,
        node_events: &[NodeEvent],
        initially_down: Vec<NodeId>,
    ) -> (Report, Vec<(u64, usize, Vec<String>)>) {
        let topology = cluster();
        let config = SimConfig {
            initially_down,
            ..SimConfig::default()
        };
        let mut watch = Placements::default();
        let sim = ClusterSim::with_events(
            topology.clone(),
            PolicyConfig::default(),
            jobs,
            node_events,
            config,
        );
        let report = sim.run_observed(&mut watch);
        for d in &watch.1 {
            if let Outcome::Placed(plan) = &d.outcome {
                let nodes = plan
                    .members
                    .iter()
                    .map(|m| topology.node(m.node).name.clone())
                    .collect();
                watch.0.push((d.time_ms, d.input, nodes));
            }
        }
        (report, watch.0)
    }

    #[test]
    fn site_outage_requeues_and_holds_jobs_until_it_ends() {
        let topology = cluster();
        let west = vec![node(&topology, "west-n0001")];
        let jobs = vec![
            job("running", "SG", 2, 0, 10 * H),
            job("during", "SG", 2, 2 * H, H),
            job("elsewhere", "JP", 4, 2 * H, H),
        ];
        let mut ev = events(&west, H, NodeChange::Down);
        ev.extend(events(&west, 3 * H, NodeChange::Up));
        let (r, placed) = run(jobs, &ev, Vec::new());
        assert_eq!(
            placed,
            [
                (0, 0, vec!["west-n0001".to_string()]),
                (2 * H, 2, vec!["east-n0001".to_string()]),
                (3 * H, 0, vec!["west-n0001".to_string()]),
                (3 * H, 1, vec!["west-n0001".to_string()]),
            ],
            "nothing lands on west during [1h, 3h); the running job is requeued"
        );
        let o = &r.outcomes;
        assert_eq!(
            (o[0].start_ms, o[0].requeues, o[0].end_ms),
            (Some(0), 1, Some(13 * H))
        );
        assert_eq!((o[1].start_ms, o[1].end_ms), (Some(3 * H), Some(4 * H)));
        assert_eq!(o[2].start_ms, Some(2 * H));
        assert!(o.iter().all(|o| o.fate == Fate::Completed));
        assert_eq!((r.requeued, r.starts, r.completed), (1, 4, 3));
        // 12 GPUs, 4 of them down for 2 hours; 13 hours in all.
        let total = r.series.total();
        assert_eq!(
            total.online_milli_ms,
            (12 * 13 - 4 * 2) as u128 * 1_000 * H as u128
        );
    }

    #[test]
    fn drain_keeps_jobs_running_and_places_nothing_new() {
        let topology = cluster();
        let east = vec![node(&topology, "east-n0001"), node(&topology, "east-n0002")];
        let jobs = vec![
            job("running", "JP", 2, 0, 10 * H),
            job("waits", "JP", 1, 2 * H, H),
        ];
        let mut ev = events(&east, H, NodeChange::Drain);
        ev.extend(events(&east, 4 * H, NodeChange::Resume));
        let (r, placed) = run(jobs, &ev, Vec::new());
        assert_eq!(placed.len(), 2);
        assert_eq!(
            (placed[0].0, placed[1].0),
            (0, 4 * H),
            "placed when the drain ends"
        );
        let o = &r.outcomes;
        assert_eq!(
            (o[0].requeues, o[0].end_ms),
            (0, Some(10 * H)),
            "runs on, drained"
        );
        assert_eq!(o[1].start_ms, Some(4 * H));
        assert_eq!(r.requeued, 0);
    }

    #[test]
    fn downs_and_drains_nest() {
        let topology = cluster();
        let west = vec![node(&topology, "west-n0001")];
        let jobs = vec![
            job("a", "SG", 1, 150 * H / 100, H),
            job("b", "SG", 1, 7 * H, H),
        ];
        // Outage [1h, 3h), a failure of the same node [2h, 4h), a drain [30 min, 6h).
        let mut ev = events(&west, H, NodeChange::Down);
        ev.extend(events(&west, 2 * H, NodeChange::Down));
        ev.extend(events(&west, 3 * H, NodeChange::Up));
        ev.extend(events(&west, 4 * H, NodeChange::Up));
        ev.extend(events(&west, H / 2, NodeChange::Drain));
        ev.extend(events(&west, 6 * H, NodeChange::Resume));
        let (r, _) = run(jobs.clone(), &ev, Vec::new());
        assert_eq!(
            r.outcomes[0].start_ms,
            Some(6 * H),
            "back at 4h (both downs over), still drained until 6h"
        );
        assert_eq!(r.outcomes[1].start_ms, Some(7 * H));
        // Without the drain: up when the later of the two downs ends.
        let (r, _) = run(jobs, &ev[..4], Vec::new());
        assert_eq!(r.outcomes[0].start_ms, Some(4 * H));
        // A repair of a node that is up changes nothing.
        let stray = events(&west, H, NodeChange::Up);
        let (r, _) = run(vec![job("c", "SG", 4, 0, H)], &stray, Vec::new());
        assert_eq!(r.outcomes[0].start_ms, Some(0));
    }

    #[test]
    fn gpus_added_later_are_down_until_then() {
        let topology = cluster();
        let west = vec![node(&topology, "west-n0001")];
        let jobs = vec![job("sg", "SG", 4, 0, H), job("jp", "JP", 4, 0, H)];
        let (r, placed) = run(jobs, &events(&west, 2 * H, NodeChange::Up), west.clone());
        assert_eq!(r.outcomes[0].start_ms, Some(2 * H));
        assert_eq!(r.outcomes[1].start_ms, Some(0));
        assert_eq!(placed[1], (2 * H, 0, vec!["west-n0001".to_string()]));
        let first = r.series.buckets[0];
        assert_eq!(
            first.online_milli_ms,
            8 * 1_000 * H as u128,
            "west is not online yet"
        );
    }

    #[test]
    fn long_runs_coarsen_the_series_and_keep_its_totals() {
        let jobs = vec![
            job("long", "JP", 4, 0, 3_000 * H),
            job("short", "SG", 2, H, H),
        ];
        let (r, _) = run(jobs, &[], Vec::new());
        let s = &r.series;
        assert_eq!(
            s.bucket_ms,
            4 * H,
            "1 h doubled twice to fit 3,000 h in 1,024 buckets"
        );
        assert_eq!(s.buckets.len(), 750);
        let total = s.total();
        assert_eq!(total.online_milli_ms, 12 * 1_000 * 3_000 * H as u128);
        assert_eq!(
            total.used_milli_ms,
            (4 * 3_000 + 2) as u128 * 1_000 * H as u128
        );
        assert_eq!(
            s.buckets[0].utilisation_pct(),
            Some(100.0 * (4.0 * 4.0 + 2.0) / 48.0)
        );
        assert_eq!(total.unallocated_waiting_pct(), None, "no job ever waited");
    }
}
