//! Tests of the replicated state machine, driven entry by entry: the job lifecycle, capacity
//! epochs and retries, priority order and pending reasons, stale plans, cancel, time limits,
//! node failure, drain and resume, scope and validation.
//!
//! Every entry goes through [`common::Driver`], which runs the full
//! `StateMachine::check_invariants` (ledger equals a recount of the allocations; the queue
//! holds exactly the pending jobs) after each apply.

mod common;

use common::*;
use expect_test::expect;
use sovra_fabric::Level;
use sovra_scheduler::core::job::{Affinity, GpuRequest, JobId, Workload};
use sovra_scheduler::core::placement::PendingReason;
use sovra_scheduler::core::state::{
    Applied, Command, ExitStatus, JobState, NodeState, RequestId, StateMachine, REQUEUE_MAX,
};

fn start(d: &mut Driver, job: JobId) {
    assert_eq!(d.apply(Command::Start { job }), Applied::Ok);
}

fn finish(d: &mut Driver, job: JobId) {
    assert_eq!(
        d.apply(Command::Finish {
            job,
            status: ExitStatus::Completed
        }),
        Applied::Ok
    );
}

fn reason(d: &Driver, job: JobId) -> PendingReason {
    d.job(job)
        .reason
        .as_ref()
        .expect("pending with a reason")
        .reason
}

fn first_node(d: &Driver, job: JobId) -> String {
    let plan = d.job(job).plan.as_ref().expect("job has a plan");
    d.sm.topology().node(plan.members[0].node).name.clone()
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and epochs.

#[test]
fn lifecycle_submit_place_start_finish_releases_capacity() {
    let mut d = Driver::new(small_au());
    let epoch = d.sm.epoch();
    assert!(!d.sm.needs_pass());
    let job = d.submit(batch_whole(8).named("train"));
    assert!(d.sm.needs_pass());
    expect![[r#"
        #1 train PD
    "#]]
    .assert_eq(&d.render_jobs());

    let applied = d.pass().expect("a pass is needed");
    assert_eq!(
        applied,
        Applied::Scheduled {
            placed: vec![job],
            stale: vec![]
        }
    );
    assert_eq!(d.free_gpus(), 16);
    assert_eq!(d.sm.epoch(), epoch, "placing does not grow capacity");
    assert!(d.pass().is_none(), "nothing left to plan");

    start(&mut d, job);
    assert_eq!(d.job(job).start_ms, Some(d.now_ms));
    expect![[r#"
        #1 train R au-3{0-7}
    "#]]
    .assert_eq(&d.render_jobs());

    d.now_ms += 5_000;
    finish(&mut d, job);
    let r = d.job(job);
    assert_eq!(
        (r.state, r.exit_code, r.end_ms),
        (JobState::Completed, Some(0), Some(d.now_ms))
    );
    assert!(r.plan.is_none());
    assert_eq!(d.free_gpus(), 24);
    assert_eq!(d.sm.epoch(), epoch + 1, "a finish frees capacity");
}

#[test]
fn pending_job_is_retried_only_when_the_epoch_moves() {
    let mut d = Driver::new(small_au());
    let jobs: Vec<JobId> = (0..3)
        .map(|i| d.submit(batch_whole(8).named(&format!("j{i}"))))
        .collect();
    d.pass();
    let waiting = d.submit(batch_whole(8).named("waiting"));
    let epoch = d.sm.epoch();
    let applied = d.pass().expect("new job needs a pass");
    assert_eq!(
        applied,
        Applied::Scheduled {
            placed: vec![],
            stale: vec![]
        }
    );
    assert_eq!(reason(&d, waiting), PendingReason::Resources);
    assert_eq!(d.sm.epoch(), epoch);
    assert!(
        !d.sm.needs_pass(),
        "a pass that placed nothing leaves nothing to retry"
    );
    assert!(d.plan().is_none());

    // Starting a job does not change capacity; finishing one does.
    start(&mut d, jobs[0]);
    assert!(!d.sm.needs_pass());
    finish(&mut d, jobs[1]);
    assert_eq!(d.sm.epoch(), epoch + 1);
    assert!(d.sm.needs_pass());
    d.pass();
    expect![[r#"
        #1 j0 R au-3{0-7}
        #2 j1 CD
        #3 j2 CF au-2{0-7}
        #4 waiting CF au-1{0-7}
    "#]]
    .assert_eq(&d.render_jobs());
}

#[test]
fn register_resume_and_rtt_bump_the_epoch_but_drain_and_fail_do_not() {
    let mut d = Driver::new(four_sites());
    let step = |d: &mut Driver, command: Command, applied: Applied, grows: bool| {
        let epoch = d.sm.epoch();
        assert_eq!(d.apply(command.clone()), applied, "{command:?}");
        assert_eq!(d.sm.epoch(), epoch + grows as u64, "{command:?}");
    };
    step(
        &mut d,
        Command::Drain {
            node: "syd-a1".into(),
        },
        Applied::Ok,
        false,
    );
    step(
        &mut d,
        Command::Resume {
            node: "syd-a1".into(),
        },
        Applied::Ok,
        true,
    );
    step(
        &mut d,
        Command::RegisterNode {
            node: "syd-a1".into(),
        },
        Applied::Ok,
        false,
    );
    let rtt = Command::SetSiteRtt {
        a: "syd1".into(),
        b: "sin1".into(),
        rtt_ns: 1,
    };
    step(&mut d, rtt, Applied::Ok, true);
    let fail = Command::FailNode {
        node: "syd-a2".into(),
    };
    step(&mut d, fail, Applied::Ended(vec![]), false);
    step(
        &mut d,
        Command::RegisterNode {
            node: "syd-a2".into(),
        },
        Applied::Ok,
        true,
    );
}

#[test]
fn max_plans_bounds_a_pass_and_leaves_the_rest_untried() {
    let mut d = Driver::new(small_au());
    let a = d.submit(batch_whole(1).named("a"));
    let b = d.submit(batch_whole(1).named("b"));
    let (command, explanations) = d.sm.plan_pass(1).expect("pass needed");
    assert_eq!(explanations.len(), 1);
    d.apply(command);
    assert_eq!(d.job(a).state, JobState::Placed);
    assert_eq!(d.job(b).state, JobState::Pending);
    assert!(d.sm.needs_pass(), "b was never tried");
    d.pass();
    assert_eq!(d.job(b).state, JobState::Placed);
}

// ---------------------------------------------------------------------------------------------
// Queue order and pending reasons.

#[test]
fn higher_priority_first_then_submit_order() {
    let mut d = Driver::new(small_au());
    d.apply(Command::Drain {
        node: "au-3".into(),
    });
    d.submit(batch_whole(8).named("low").prio(1));
    d.submit(batch_whole(8).named("high-1").prio(5));
    d.submit(batch_whole(8).named("high-2").prio(5));
    d.submit(batch_whole(8).named("high-3").prio(5));
    let order: Vec<JobId> = d.sm.pending().iter().collect();
    assert_eq!(order, vec![JobId(2), JobId(3), JobId(4), JobId(1)]);
    d.pass();
    expect![[r#"
        #1 low PD Priority: 0 of 3 eligible nodes fit one member (short of: cpu 0,
          memory 0, gpu 2, model 0, unavailable 1)
        #2 high-1 CF au-1{0-7}
        #3 high-2 CF au-2{0-7}
        #4 high-3 PD Resources: 0 of 3 eligible nodes fit one member (short of: cpu 0,
          memory 0, gpu 2, model 0, unavailable 1)
    "#]]
    .assert_eq(&d.render_jobs());
}

#[test]
fn priority_reason_only_behind_a_job_waiting_for_resources() {
    let mut d = Driver::new(small_au());
    // Two nodes busy, one (8 GPUs) free.
    d.submit(batch_whole(8).named("busy-1"));
    d.submit(batch_whole(8).named("busy-2"));
    d.pass();
    // Never fits (no leaf holds 3 nodes): does not hold anyone back.
    d.submit(
        gang(3, 8, Some(Level::Leaf), Affinity::Required)
            .named("never")
            .prio(10),
    );
    // Waits for resources: holds back lower-priority jobs that also wait.
    d.submit(
        gang(2, 8, Some(Level::Leaf), Affinity::Required)
            .named("big")
            .prio(9),
    );
    // Fits now: placed (backfill).
    d.submit(batch_whole(8).named("fits").prio(1));
    // Would need what is left after "fits": reason Priority, not Resources.
    d.submit(batch_whole(4).named("behind").prio(1));
    d.pass();
    expect![[r#"
        #1 busy-1 CF au-3{0-7}
        #2 busy-2 CF au-2{0-7}
        #3 never PD BadConstraints: no leaf can ever hold 3 members of 8 gpus: at most 2
        #4 big PD Resources: no leaf can hold 2 members of 8 gpus
        #5 fits CF au-1{0-7}
        #6 behind PD Priority: 0 of 3 eligible nodes fit one member (short of: cpu 0,
          memory 0, gpu 3, model 0, unavailable 0)
    "#]]
    .assert_eq(&d.render_jobs());
}

#[test]
fn plan_pass_explains_every_job_it_tried() {
    let mut d = Driver::new(small_au());
    d.submit(batch_whole(8).named("fits"));
    d.submit(batch_whole(9).named("never"));
    let (_, explanations) = d.sm.plan_pass(16).expect("pass needed");
    let mut out = String::new();
    for (job, e) in &explanations {
        out.push_str(&format!("#{job}\n{}", render_explanation(e)));
    }
    expect![[r#"
        #1
        nodes=3 eligible=3 evaluated=3 subtrees=0 jurisdictions=[AU]
        removed: jurisdiction=0 latency=0 unavailable=0 model=0 cpu=0 memory=0 gpu=0
        - best fit on node au-3
        #2
        nodes=3 eligible=3 evaluated=3 subtrees=0 jurisdictions=[AU]
        removed: jurisdiction=0 latency=0 unavailable=0 model=0 cpu=0 memory=0 gpu=3
        - no eligible node can ever hold one member (1000 cpu milli, 4096 MiB, Whole(9))
    "#]]
    .assert_eq(&out);
}

#[test]
fn gang_waits_all_or_nothing() {
    let mut d = Driver::new(small_au());
    d.submit(batch_whole(1).named("small"));
    d.pass();
    let g = d.submit(gang(3, 8, Some(Level::Site), Affinity::Required).named("gang"));
    let free = d.free_gpus();
    d.pass();
    assert_eq!(d.job(g).state, JobState::Pending);
    assert!(d.job(g).plan.is_none());
    assert_eq!(
        d.free_gpus(),
        free,
        "no member of a waiting gang holds anything"
    );
    expect![[r#"
        #1 small CF au-3{0}
        #2 gang PD Resources: no site can hold 3 members of 8 gpus
    "#]]
    .assert_eq(&d.render_jobs());
}

// ---------------------------------------------------------------------------------------------
// Stale plans.

#[test]
fn stale_plan_is_rejected_at_apply_without_leaking_capacity() {
    let mut d = Driver::new(small_au());
    let job = d.submit(batch_whole(8).named("j"));
    let pass = d.plan().expect("pass needed");
    let Command::SchedulePass { plans, .. } = &pass else {
        unreachable!()
    };
    let target = d.sm.topology().node(plans[0].members[0].node).name.clone();
    assert_eq!(
        d.apply(Command::FailNode {
            node: target.clone()
        }),
        Applied::Ended(vec![])
    );
    let applied = d.apply(pass);
    assert_eq!(
        applied,
        Applied::Scheduled {
            placed: vec![],
            stale: vec![job]
        }
    );
    assert_eq!(d.job(job).state, JobState::Pending);
    assert_eq!(d.free_gpus(), 24, "a rejected plan takes nothing");
    expect![[r#"
        #1 j PD StalePlan: node au-3 is no longer available
    "#]]
    .assert_eq(&d.render_jobs());
    assert!(d.sm.needs_pass(), "a stale job is retried at once");
    d.pass();
    assert_eq!(d.job(job).state, JobState::Placed);
    assert_ne!(first_node(&d, job), target);
}

#[test]
fn plan_for_a_job_cancelled_meanwhile_is_stale() {
    let mut d = Driver::new(small_au());
    let job = d.submit(batch_whole(8));
    let pass = d.plan().expect("pass needed");
    assert_eq!(d.apply(Command::Cancel { job }), Applied::Ok);
    assert_eq!(
        d.apply(pass),
        Applied::Scheduled {
            placed: vec![],
            stale: vec![job]
        }
    );
    assert_eq!(d.job(job).state, JobState::Cancelled);
    assert_eq!(d.free_gpus(), 24);
}

#[test]
fn job_deferred_behind_a_stale_plan_is_retried() {
    // au-3 is busy. "gang" is planned on au-1 + au-2, so "batch" is deferred for Resources in
    // the same pass. au-1 fails before the pass applies: the gang's plan is stale, au-2 is
    // free, and "batch" must be retried at once (the stale plan's capacity was never taken).
    let mut d = Driver::new(small_au());
    let busy = d.submit(batch_whole(8).named("busy"));
    d.pass();
    assert_eq!(first_node(&d, busy), "au-3");
    let g = d.submit(
        gang(2, 8, Some(Level::Leaf), Affinity::Required)
            .named("gang")
            .prio(9),
    );
    let b = d.submit(batch_whole(8).named("batch").prio(1));
    let pass = d.plan().expect("pass needed");
    d.apply(Command::FailNode {
        node: "au-1".into(),
    });
    assert_eq!(
        d.apply(pass),
        Applied::Scheduled {
            placed: vec![],
            stale: vec![g]
        }
    );
    assert!(
        d.sm.needs_pass(),
        "jobs deferred behind a stale plan are retried"
    );
    d.pass();
    assert_eq!(reason(&d, g), PendingReason::Resources);
    assert_eq!(d.job(b).state, JobState::Placed);
    assert_eq!(first_node(&d, b), "au-2");
    assert!(!d.sm.needs_pass());
}

// ---------------------------------------------------------------------------------------------
// Cancel, finish, time limits.

#[test]
fn cancel_in_each_state() {
    let mut d = Driver::new(small_au());
    let running = d.submit(batch_whole(8).named("running"));
    let placed = d.submit(batch_whole(8).named("placed"));
    d.pass();
    start(&mut d, running);
    let done = d.submit(batch_whole(1).named("done"));
    let pending = d.submit(batch_whole(9).named("pending"));
    d.pass();
    start(&mut d, done);
    finish(&mut d, done);
    assert_eq!(d.free_gpus(), 8);

    let epoch = d.sm.epoch();
    assert_eq!(d.apply(Command::Cancel { job: pending }), Applied::Ok);
    assert_eq!(
        d.sm.epoch(),
        epoch,
        "cancelling a pending job frees nothing"
    );
    assert!(d.sm.pending().is_empty());
    assert_eq!(d.apply(Command::Cancel { job: placed }), Applied::Ok);
    assert_eq!(d.sm.epoch(), epoch + 1);
    assert_eq!(d.apply(Command::Cancel { job: running }), Applied::Ok);
    assert_eq!(d.sm.epoch(), epoch + 2);
    assert_eq!(d.free_gpus(), 24);
    let refused: Vec<String> = [done, running, JobId(99)]
        .into_iter()
        .map(|job| match d.apply(Command::Cancel { job }) {
            Applied::Rejected(e) => e,
            other => panic!("cancel of {job} accepted: {other:?}"),
        })
        .collect();
    expect![[r#"
        job 3 already ended (Completed)
        job 1 already ended (Cancelled)
        unknown job 99
        #1 running CA
        #2 placed CA
        #3 done CD
        #4 pending CA
    "#]]
    .assert_eq(&format!("{}\n{}", refused.join("\n"), d.render_jobs()));
}

#[test]
fn start_and_finish_need_the_right_state() {
    let mut d = Driver::new(small_au());
    let pending = d.submit(batch_whole(9).named("pending"));
    let failed = d.submit(batch_whole(1).named("failed"));
    let oom = d.submit(batch_whole(1).named("oom"));
    let never_started = d.submit(batch_whole(1).named("never-started"));
    d.pass();
    start(&mut d, failed);
    start(&mut d, oom);
    let mut out = Vec::new();
    for command in [
        Command::Start { job: pending },
        Command::Finish {
            job: pending,
            status: ExitStatus::Completed,
        },
        Command::Start { job: failed },
        Command::Start { job: JobId(42) },
        Command::Finish {
            job: failed,
            status: ExitStatus::Failed(137),
        },
        Command::Finish {
            job: oom,
            status: ExitStatus::OutOfMemory,
        },
        Command::Finish {
            job: never_started,
            status: ExitStatus::Completed,
        },
        Command::Finish {
            job: oom,
            status: ExitStatus::Completed,
        },
    ] {
        out.push(wrap(&format!(
            "{command:?} -> {:?}",
            d.apply(command.clone())
        )));
    }
    let codes: Vec<String> =
        d.sm.jobs()
            .map(|r| format!("#{} {:?}", r.id, r.exit_code))
            .collect();
    expect![[r#"
        Start { job: JobId(1) } -> Rejected("job 1 is Pending, not placed")
        Finish { job: JobId(1), status: Completed } -> Rejected("job 1 is Pending, not
          running")
        Start { job: JobId(2) } -> Rejected("job 2 is Running, not placed")
        Start { job: JobId(42) } -> Rejected("unknown job 42")
        Finish { job: JobId(2), status: Failed(137) } -> Ok
        Finish { job: JobId(3), status: OutOfMemory } -> Ok
        Finish { job: JobId(4), status: Completed } -> Ok
        Finish { job: JobId(3), status: Completed } -> Rejected("job 3 is OutOfMemory,
          not running")
        #1 None #2 Some(137) #3 None #4 Some(0)
        #1 pending PD BadConstraints: no eligible node can ever hold one member (1000
          cpu milli, 4096 MiB, Whole(9))
        #2 failed F
        #3 oom OOM
        #4 never-started CD
    "#]]
    .assert_eq(&format!(
        "{}\n{}\n{}",
        out.join("\n"),
        codes.join(" "),
        d.render_jobs()
    ));
}

#[test]
fn tick_times_out_running_jobs_at_their_limit() {
    let mut d = Driver::new(small_au());
    let limited = d.submit(batch_whole(8).named("limited").limit_ms(10_000));
    let unlimited = d.submit(batch_whole(8).named("unlimited"));
    let not_started = d.submit(batch_whole(8).named("not-started").limit_ms(1));
    d.pass();
    d.now_ms = 2_000;
    start(&mut d, limited);
    start(&mut d, unlimited);
    d.now_ms = 11_999;
    assert_eq!(d.apply(Command::Tick), Applied::Ended(vec![]));
    d.now_ms = 12_000;
    let epoch = d.sm.epoch();
    assert_eq!(d.apply(Command::Tick), Applied::Ended(vec![limited]));
    assert_eq!(d.sm.epoch(), epoch + 1);
    d.now_ms = u64::MAX;
    assert_eq!(
        d.apply(Command::Tick),
        Applied::Ended(vec![]),
        "placed jobs have not started"
    );
    let r = d.job(limited);
    assert_eq!((r.state, r.end_ms), (JobState::Timeout, Some(12_000)));
    assert_eq!(d.job(not_started).state, JobState::Placed);
    assert_eq!(d.free_gpus(), 8);
    expect![[r#"
        #1 limited TO
        #2 unlimited R au-1{0-7}
        #3 not-started CF au-2{0-7}
    "#]]
    .assert_eq(&d.render_jobs());
}

// ---------------------------------------------------------------------------------------------
// Node failure, drain, resume.

#[test]
fn failed_node_requeues_up_to_the_limit_then_node_fail() {
    let mut d = Driver::new(au_jp());
    let job = d.submit(batch_whole(8).named("j"));
    let mut log = Vec::new();
    for round in 0..=REQUEUE_MAX {
        d.pass();
        assert_eq!(first_node(&d, job), "au-1", "never placed outside AU");
        start(&mut d, job);
        let ended = d.apply(Command::FailNode {
            node: "au-1".into(),
        });
        assert_eq!(ended, Applied::Ended(vec![job]));
        assert_eq!(
            d.free_gpus(),
            16,
            "round {round}: failed job released its gpus"
        );
        let r = d.job(job);
        log.push(format!(
            "round {round}: {} restarts={}",
            r.state.code(),
            r.restarts
        ));
        // While au-1 is down the job cannot go anywhere: AU has no other node.
        if r.state == JobState::Pending {
            d.pass();
            assert_eq!(reason(&d, job), PendingReason::JurisdictionUnavailable);
        }
        assert_eq!(
            d.apply(Command::RegisterNode {
                node: "au-1".into()
            }),
            Applied::Ok
        );
    }
    expect![[r#"
        round 0: PD restarts=1
        round 1: PD restarts=2
        round 2: PD restarts=3
        round 3: NF restarts=3"#]]
    .assert_eq(&log.join("\n"));
    assert_eq!(d.job(job).state, JobState::NodeFail);
    assert!(d.pass().is_none());
}

#[test]
fn failed_node_requeues_every_job_on_it_and_only_those() {
    let mut d = Driver::new(small_au());
    let g = d.submit(gang(2, 4, Some(Level::Node), Affinity::Required).named("gang"));
    let other = d.submit(batch_whole(8).named("other"));
    d.pass();
    let gang_node = first_node(&d, g);
    let other_node = first_node(&d, other);
    assert_ne!(gang_node, other_node);
    assert_eq!(
        d.apply(Command::FailNode {
            node: gang_node.clone()
        }),
        Applied::Ended(vec![g])
    );
    assert_eq!(
        d.sm.node_state(node_id(d.sm.topology(), &gang_node)),
        NodeState::Down
    );
    assert_eq!(d.job(other).state, JobState::Placed);
    d.pass();
    assert_eq!(d.job(g).state, JobState::Placed);
    assert_ne!(first_node(&d, g), gang_node);
}

#[test]
fn drain_keeps_running_jobs_and_blocks_new_ones() {
    let mut d = Driver::new(au_jp());
    let running = d.submit(batch_whole(4).named("running"));
    d.pass();
    start(&mut d, running);
    assert_eq!(
        d.apply(Command::Drain {
            node: "au-1".into()
        }),
        Applied::Ok
    );
    assert_eq!(d.job(running).state, JobState::Running);
    let new = d.submit(batch_whole(1).named("new"));
    d.pass();
    assert_eq!(reason(&d, new), PendingReason::JurisdictionUnavailable);
    finish(&mut d, running);
    d.pass();
    assert_eq!(
        d.job(new).state,
        JobState::Pending,
        "a drained node stays drained"
    );
    // Registering a drained node (agent restart) does not undo the drain.
    d.apply(Command::RegisterNode {
        node: "au-1".into(),
    });
    assert_eq!(
        d.sm.node_state(node_id(d.sm.topology(), "au-1")),
        NodeState::Drained
    );
    d.pass();
    assert_eq!(d.job(new).state, JobState::Pending);
    assert_eq!(
        d.apply(Command::Resume {
            node: "au-1".into()
        }),
        Applied::Ok
    );
    d.pass();
    assert_eq!(first_node(&d, new), "au-1");
    expect![[r#"
        #1 running CD
        #2 new CF au-1{0}
    "#]]
    .assert_eq(&d.render_jobs());
}

#[test]
fn node_commands_refused_in_the_wrong_state() {
    let mut d = Driver::new(small_au());
    d.apply(Command::FailNode {
        node: "au-1".into(),
    });
    let mut out = Vec::new();
    for command in [
        Command::Drain {
            node: "au-1".into(),
        },
        Command::Resume {
            node: "au-2".into(),
        },
        Command::Drain {
            node: "nowhere".into(),
        },
        Command::RegisterNode {
            node: "nowhere".into(),
        },
        Command::FailNode {
            node: "nowhere".into(),
        },
        Command::SetSiteRtt {
            a: "syd1".into(),
            b: "syd1".into(),
            rtt_ns: 0,
        },
        Command::SetSiteRtt {
            a: "syd1".into(),
            b: "mars".into(),
            rtt_ns: 5,
        },
    ] {
        out.push(wrap(&format!(
            "{command:?} -> {:?}",
            d.apply(command.clone())
        )));
    }
    expect![[r#"
        Drain { node: "au-1" } -> Rejected("node au-1 is down")
        Resume { node: "au-2" } -> Rejected("node au-2 is not drained")
        Drain { node: "nowhere" } -> Rejected("unknown node \"nowhere\"")
        RegisterNode { node: "nowhere" } -> Rejected("unknown node \"nowhere\"")
        FailNode { node: "nowhere" } -> Rejected("unknown node \"nowhere\"")
        SetSiteRtt { a: "syd1", b: "syd1", rtt_ns: 0 } -> Rejected("rtt of a site to
          itself")
        SetSiteRtt { a: "syd1", b: "mars", rtt_ns: 5 } -> Rejected("unknown site in
          \"syd1\"-\"mars\"")"#]]
    .assert_eq(&out.join("\n"));
}

#[test]
fn rtt_change_unblocks_a_latency_bound_service() {
    let mut d = Driver::new(four_sites());
    let svc = d
        .submit(inference(1, GpuRequest::Whole(1), Some(("syd1", 50)), Level::Leaf).juris(&["SG"]));
    d.pass();
    assert_eq!(reason(&d, svc), PendingReason::LatencyUnavailable);
    assert!(!d.sm.needs_pass());
    let rtt_ns = 40_000_000;
    let command = Command::SetSiteRtt {
        a: "sin1".into(),
        b: "syd1".into(),
        rtt_ns,
    };
    assert_eq!(d.apply(command), Applied::Ok);
    d.pass();
    assert_eq!(d.job(svc).state, JobState::Placed);
    expect![[r#"
        #1 svc CF sin-l1{0}
    "#]]
    .assert_eq(&d.render_jobs());
}

// ---------------------------------------------------------------------------------------------
// Scope and validation.

#[test]
fn state_machine_refuses_a_topology_outside_its_scope() {
    let err = StateMachine::new(au_jp(), &[jur("AU")], Default::default()).unwrap_err();
    expect!["site tyo1 is in jurisdiction JP, outside this group's scope"]
        .assert_eq(&err.to_string());
}

#[test]
fn submit_outside_scope_is_rejected_and_nodes_start_unknown() {
    let sm = StateMachine::new(small_au(), &[jur("AU"), jur("SG")], Default::default())
        .expect("every site in scope");
    let mut d = Driver::with(sm);
    assert_eq!(
        d.sm.node_state(node_id(d.sm.topology(), "au-1")),
        NodeState::Unknown
    );
    let refused = d.apply(Command::Submit {
        spec: batch_whole(1).juris(&["JP", "MY"]),
        request: None,
    });
    expect![[r#"Rejected("job allows jurisdictions [JP,MY], none governed here")"#]]
        .assert_eq(&format!("{refused:?}"));
    assert_eq!(d.sm.jobs().count(), 0);

    // In scope but with no site (SG), and in scope with every node still unknown (AU).
    let sg = d.submit(batch_whole(1).juris(&["SG"]).named("sg"));
    let au = d.submit(batch_whole(1).juris(&["JP", "AU"]).named("au"));
    d.pass();
    assert_eq!(reason(&d, sg), PendingReason::JurisdictionUnavailable);
    assert_eq!(reason(&d, au), PendingReason::JurisdictionUnavailable);
    let epoch = d.sm.epoch();
    assert_eq!(
        d.apply(Command::RegisterNode {
            node: "au-2".into()
        }),
        Applied::Ok
    );
    assert_eq!(d.sm.epoch(), epoch + 1);
    d.pass();
    expect![[r#"
        #1 sg PD JurisdictionUnavailable: no site in allowed jurisdictions [SG] (cluster
          has [AU])
        #2 au CF au-2{0}
    "#]]
    .assert_eq(&d.render_jobs());
}

#[test]
fn invalid_specs_are_rejected_with_one_line_messages() {
    let mut d = Driver::new(four_sites());
    let mut no_tenant = batch_whole(1);
    no_tenant.tenant.clear();
    let mut zero_members = gang(1, 8, None, Affinity::Preferred);
    if let Workload::Gang(g) = &mut zero_members.workload {
        g.members = 0;
    }
    let cases = vec![
        no_tenant,
        batch_whole(1).named(&"x".repeat(257)),
        batch_whole(1).named("tab\there"),
        batch_whole(1).juris(&[]),
        batch_whole(0),
        batch(GpuRequest::Milli(0)),
        batch(GpuRequest::Mig("1g".into())),
        zero_members,
        gang(2, 8, None, Affinity::Preferred).max_rtt_ns(0),
        inference(0, GpuRequest::Whole(1), None, Level::Node),
        inference(1, GpuRequest::Whole(1), Some(("", 5)), Level::Node),
    ];
    let mut out = String::new();
    for spec in cases {
        match d.apply(Command::Submit {
            spec,
            request: None,
        }) {
            Applied::Rejected(e) => {
                assert!(!e.contains('\n'), "multi-line error: {e:?}");
                assert!(!e.ends_with('.'), "error ends with a full stop: {e:?}");
                assert!(
                    !e.starts_with(char::is_uppercase),
                    "error not lower case: {e:?}"
                );
                out.push_str(&e);
                out.push('\n');
            }
            other => panic!("invalid spec accepted: {other:?}"),
        }
    }
    assert_eq!(d.sm.jobs().count(), 0);
    expect![[r#"
        job has no tenant
        job name longer than 256 bytes
        job name contains control characters
        job allows no jurisdiction: set at least one (e.g. "AU")
        whole gpus per member must be 1..=32
        gpu share must be 1..=999 milli-gpu, got 0 (use whole gpus for 1000)
        invalid mig profile "1g": expected e.g. "1g.10gb"
        gang members must be 1..=16384
        gang max rtt must be positive
        inference replicas must be 1..=16384
        latency slo names no ingress site
    "#]]
    .assert_eq(&out);
}

#[test]
fn retried_submission_gets_the_same_job_and_survives_snapshots() {
    // A client retries after a timeout or a leader change: same request id, one job.
    let mut d = Driver::new(small_au());
    let request = Some(RequestId { client: 42, seq: 1 });
    let submit = Command::Submit {
        spec: batch_whole(8).named("once"),
        request,
    };
    let Applied::Submitted(first) = d.apply(submit.clone()) else {
        panic!("not submitted")
    };
    d.pass();
    assert_eq!(d.apply(submit.clone()), Applied::Submitted(first));
    assert_eq!(d.sm.jobs().count(), 1);
    assert_eq!(
        d.job(first).state,
        JobState::Placed,
        "the retry placed nothing new"
    );
    // Another sequence number is another request.
    let other = Command::Submit {
        spec: batch_whole(8).named("twice"),
        request: Some(RequestId { client: 42, seq: 2 }),
    };
    assert_ne!(d.apply(other), Applied::Submitted(first));
    // The table survives a snapshot.
    let restored = StateMachine::restore(&d.sm.snapshot()).expect("restores");
    assert_eq!(restored.state_hash(), d.sm.state_hash());
    let mut r = Driver::with(restored);
    r.index = d.index;
    assert_eq!(r.apply(submit), Applied::Submitted(first));
    assert_eq!(r.sm.jobs().count(), 2);
}

#[test]
fn drain_of_a_never_registered_node_is_refused() {
    // A node whose agent never registered cannot be drained and then resumed into service:
    // nothing runs there.
    let sm = StateMachine::new(small_au(), &[jur("AU")], Default::default()).expect("scope");
    let mut d = Driver::with(sm);
    let j = d.submit(batch_whole(1).named("j"));
    assert_eq!(
        d.apply(Command::Drain {
            node: "au-1".into()
        }),
        Applied::Rejected("node au-1 has not registered yet".into())
    );
    assert_eq!(
        d.apply(Command::Resume {
            node: "au-1".into()
        }),
        Applied::Rejected("node au-1 is not drained".into())
    );
    assert_eq!(
        d.sm.node_state(node_id(d.sm.topology(), "au-1")),
        NodeState::Unknown
    );
    d.pass();
    assert_eq!(d.job(j).state, JobState::Pending);
}

#[test]
fn snapshot_restore_keeps_the_hash_and_the_behaviour() {
    let mut d = Driver::new(four_sites());
    let running = d.submit(gang(2, 8, Some(Level::Leaf), Affinity::Required).named("gang"));
    d.submit(inference(2, GpuRequest::Milli(300), Some(("sin1", 10)), Level::Node).juris(&["SG"]));
    d.submit(
        batch(GpuRequest::Mig("1g.5gb".into()))
            .named("mig")
            .limit_ms(500),
    );
    d.submit(batch_whole(8).named("never").juris(&["MY"]).prio(3));
    d.submit(batch_whole(8).named("waits").juris(&["MY"]).prio(2));
    d.pass();
    start(&mut d, running);
    d.apply(Command::Drain {
        node: "syd-b1".into(),
    });
    d.apply(Command::FailNode {
        node: "tyo-h1".into(),
    });
    let bytes = d.sm.snapshot();
    let restored = StateMachine::restore(&bytes).expect("own snapshot restores");
    restored.check_invariants();
    assert_eq!(restored.state_hash(), d.sm.state_hash());
    assert_eq!(restored.snapshot(), bytes, "snapshot bytes are canonical");

    // Both continue identically.
    let mut twin = Driver::with(restored);
    twin.index = d.index;
    twin.now_ms = d.now_ms;
    for driver in [&mut d, &mut twin] {
        driver.now_ms += 1_000;
        driver.apply(Command::Tick);
        driver.apply(Command::Finish {
            job: running,
            status: ExitStatus::Failed(1),
        });
        driver.pass();
    }
    assert_eq!(twin.sm.state_hash(), d.sm.state_hash());
    assert_eq!(twin.render_jobs(), d.render_jobs());
}
