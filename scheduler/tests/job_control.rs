//! Slurm-style job control in the state machine: holds, dependencies (with Slurm's meanings of
//! after, afterany, afterok, afternotok and singleton), begin times, job arrays with throttles,
//! requeue and time-limit changes. Every entry goes through [`common::Driver`], which checks
//! the full invariants after each apply.

mod common;

use common::*;
use sovra_scheduler::core::job::{ArraySpec, JobId, JobSpec};
use sovra_scheduler::core::placement::PendingReason;
use sovra_scheduler::core::state::{Applied, Command, ExitStatus, JobState, StateMachine};
use sovra_scheduler::jobfile::{parse_array, parse_dependency};

fn reason(d: &Driver, job: JobId) -> PendingReason {
    d.job(job).reason.as_ref().expect("a reason").reason
}

fn end(d: &mut Driver, job: JobId, status: ExitStatus) {
    assert_eq!(d.apply(Command::Start { job }), Applied::Ok);
    assert_eq!(d.apply(Command::Finish { job, status }), Applied::Ok);
}

fn after(spec: JobSpec, dep: &str) -> JobSpec {
    let mut spec = spec;
    spec.control.dependency = Some(parse_dependency(dep).unwrap());
    spec
}

#[test]
fn hold_and_release() {
    let mut d = Driver::new(small_au());
    let mut spec = batch_whole(1).named("held");
    spec.control.hold = true;
    let held = d.submit(spec);
    let other = d.submit(batch_whole(1).named("other"));
    d.pass();
    assert_eq!(d.job(held).state, JobState::Pending);
    assert_eq!(reason(&d, held), PendingReason::Held);
    assert_eq!(PendingReason::Held.code(), "JobHeldUser");
    assert_eq!(d.job(other).state, JobState::Placed);
    assert_eq!(d.apply(Command::Release { job: held }), Applied::Ok);
    d.pass();
    assert_eq!(d.job(held).state, JobState::Placed);
    // Only a pending job can be held.
    assert!(matches!(
        d.apply(Command::Hold { job: held }),
        Applied::Rejected(_)
    ));
    let late = d.submit(batch_whole(1).named("late"));
    assert_eq!(d.apply(Command::Hold { job: late }), Applied::Ok);
    d.pass();
    assert_eq!(reason(&d, late), PendingReason::Held);
}

#[test]
fn afterok_waits_then_runs_or_never_runs() {
    let mut d = Driver::new(small_au());
    let a = d.submit(batch_whole(1).named("a"));
    let b = d.submit(batch_whole(1).named("b"));
    let ok = d.submit(after(
        batch_whole(1).named("ok"),
        &format!("afterok:{}", a.0),
    ));
    let notok = d.submit(after(
        batch_whole(1).named("notok"),
        &format!("afternotok:{}", a.0),
    ));
    let any = d.submit(after(
        batch_whole(1).named("any"),
        &format!("afterany:{}", b.0),
    ));
    let started = d.submit(after(
        batch_whole(1).named("started"),
        &format!("after:{}", b.0),
    ));
    d.pass();
    for j in [ok, notok, any, started] {
        assert_eq!(reason(&d, j), PendingReason::Dependency);
    }
    assert_eq!(d.apply(Command::Start { job: b }), Applied::Ok);
    d.pass();
    assert_eq!(d.job(started).state, JobState::Placed, "after: b started");
    assert_eq!(d.job(any).state, JobState::Pending);
    end(&mut d, a, ExitStatus::Completed);
    d.pass();
    assert_eq!(d.job(ok).state, JobState::Placed);
    assert_eq!(reason(&d, notok), PendingReason::DependencyNeverSatisfied);
    assert_eq!(
        d.apply(Command::Finish {
            job: b,
            status: ExitStatus::Failed(3)
        }),
        Applied::Ok
    );
    d.pass();
    assert_eq!(d.job(any).state, JobState::Placed);
    // A dependency on an unknown job is refused at submit.
    match d.apply(Command::Submit {
        spec: after(batch_whole(1), "afterok:999"),
        request: None,
    }) {
        Applied::Rejected(e) => assert!(e.contains("dependency"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn any_of_dependencies() {
    let mut d = Driver::new(small_au());
    let a = d.submit(batch_whole(1).named("a"));
    let b = d.submit(batch_whole(1).named("b"));
    let either = d.submit(after(
        batch_whole(1).named("either"),
        &format!("afterok:{}?afterok:{}", a.0, b.0),
    ));
    d.pass();
    end(&mut d, a, ExitStatus::Failed(1));
    d.pass();
    assert_eq!(
        reason(&d, either),
        PendingReason::Dependency,
        "b may still succeed"
    );
    end(&mut d, b, ExitStatus::Completed);
    d.pass();
    assert_eq!(d.job(either).state, JobState::Placed);
}

#[test]
fn arrays_expand_run_within_their_throttle_and_satisfy_dependencies_whole() {
    let mut d = Driver::new(small_au());
    let mut spec = batch_whole(1).named("sweep");
    spec.control.array = Some(parse_array("0-9:3%2").unwrap());
    assert_eq!(
        spec.control.array,
        Some(ArraySpec {
            indices: vec![0, 3, 6, 9],
            throttle: 2
        })
    );
    let first = d.submit(spec);
    let tasks: Vec<JobId> = (0..4).map(|k| JobId(first.0 + k)).collect();
    for (k, &t) in tasks.iter().enumerate() {
        let a = d.job(t).array.expect("an array task");
        assert_eq!((a.job, a.index), (first, [0, 3, 6, 9][k]));
    }
    let whole = d.submit(after(
        batch_whole(1).named("after-all"),
        &format!("afterok:{}", first.0),
    ));
    let one = d.submit(after(
        batch_whole(1).named("after-one"),
        &format!("afterok:{}_3", first.0),
    ));
    d.pass();
    let placed = |d: &Driver| {
        tasks
            .iter()
            .filter(|&&t| d.job(t).state.holds_resources())
            .count()
    };
    assert_eq!(placed(&d), 2, "throttle %2");
    assert_eq!(reason(&d, tasks[2]), PendingReason::ArrayTaskLimit);
    assert_eq!(PendingReason::ArrayTaskLimit.code(), "JobArrayTaskLimit");
    end(&mut d, tasks[0], ExitStatus::Completed);
    end(&mut d, tasks[1], ExitStatus::Completed);
    d.pass();
    assert_eq!(d.job(one).state, JobState::Placed, "task _3 completed");
    assert_eq!(d.job(whole).state, JobState::Pending);
    assert_eq!(placed(&d), 2);
    end(&mut d, tasks[2], ExitStatus::Completed);
    end(&mut d, tasks[3], ExitStatus::Completed);
    d.pass();
    assert_eq!(d.job(whole).state, JobState::Placed);
}

#[test]
fn singleton_runs_one_job_per_name_and_user() {
    let mut d = Driver::new(small_au());
    let mk = |user: &str| {
        let mut s = after(batch_whole(1).named("nightly"), "singleton");
        s.control.user = user.into();
        s
    };
    let a = d.submit(mk("alice"));
    let b = d.submit(mk("alice"));
    let c = d.submit(mk("bob"));
    d.pass();
    assert_eq!(d.job(a).state, JobState::Placed);
    assert_eq!(reason(&d, b), PendingReason::Dependency);
    assert_eq!(d.job(c).state, JobState::Placed, "another user's job");
    end(&mut d, a, ExitStatus::Completed);
    d.pass();
    assert_eq!(d.job(b).state, JobState::Placed);
}

#[test]
fn begin_time_waits_for_the_clock() {
    let mut d = Driver::new(small_au());
    let mut spec = batch_whole(1).named("later");
    spec.control.begin_ms = Some(60_000);
    let later = d.submit(spec);
    d.pass();
    assert_eq!(reason(&d, later), PendingReason::BeginTime);
    d.now_ms = 60_000;
    d.apply(Command::Tick);
    d.pass();
    assert_eq!(d.job(later).state, JobState::Placed);
}

#[test]
fn requeue_and_time_limits() {
    let mut d = Driver::new(small_au());
    let job = d.submit(batch_whole(1).limit_ms(60_000));
    d.pass();
    assert_eq!(d.apply(Command::Start { job }), Applied::Ok);
    // A running job's limit may shrink, not grow.
    assert!(matches!(
        d.apply(Command::SetTimeLimit {
            job,
            time_limit_ms: Some(120_000)
        }),
        Applied::Rejected(_)
    ));
    assert_eq!(
        d.apply(Command::SetTimeLimit {
            job,
            time_limit_ms: Some(30_000)
        }),
        Applied::Ok
    );
    assert_eq!(d.apply(Command::Requeue { job }), Applied::Ended(vec![job]));
    assert_eq!(d.job(job).state, JobState::Pending);
    assert_eq!(d.job(job).restarts, 1);
    // Pending: any limit.
    assert_eq!(
        d.apply(Command::SetTimeLimit {
            job,
            time_limit_ms: None
        }),
        Applied::Ok
    );
    d.pass();
    assert_eq!(d.job(job).state, JobState::Placed);
    assert!(matches!(
        d.apply(Command::Requeue { job: JobId(99) }),
        Applied::Rejected(_)
    ));
}

#[test]
fn job_file_syntax_errors_are_one_line() {
    for (text, want) in [
        ("afterok", "names no job"),
        ("afterok:x", "not a job id"),
        ("afterok:1,afterany:2?afterok:3", "not both"),
        ("before:1", "unknown type"),
        ("afterok:1+5", "not supported"),
    ] {
        let e = parse_dependency(text).unwrap_err();
        assert!(e.contains(want) && !e.contains('\n'), "{text}: {e}");
    }
    for (text, want) in [
        ("5-1", "backwards"),
        ("0-1001", "0..=1000"),
        ("0-9%x", "throttle"),
        ("0-9:0", "step"),
    ] {
        let e = parse_array(text).unwrap_err();
        assert!(e.contains(want) && !e.contains('\n'), "{text}: {e}");
    }
    let dep = parse_dependency("afterok:12:13_2?singleton").unwrap();
    assert_eq!(dep.to_string(), "afterok:12?afterok:13_2?singleton");
}

#[test]
fn queues_bind_jurisdictions() {
    let mut d = Driver::new(au_jp());
    let queued = |queue: &str, juris: &[&str]| {
        let mut s = batch_whole(1).named(queue);
        s.jurisdictions = juris.iter().map(|j| jur(j)).collect();
        s.control.queue = queue.into();
        s
    };
    let jp = d.submit(queued("jp", &[]));
    assert_eq!(d.job(jp).spec.jurisdictions, [jur("JP")]);
    let all = d.submit(queued("all", &[]));
    assert_eq!(d.job(all).spec.jurisdictions, [jur("AU"), jur("JP")]);
    let both = d.submit(queued("all", &["AU"]));
    assert_eq!(d.job(both).spec.jurisdictions, [jur("AU")]);
    for (queue, juris, want) in [
        ("gpu", &[][..], "invalid partition name specified: gpu"),
        ("JP", &[][..], "invalid partition name specified: JP"),
        ("jp", &["AU"][..], "outside the job's allowed jurisdictions"),
    ] {
        match d.apply(Command::Submit {
            spec: queued(queue, juris),
            request: None,
        }) {
            Applied::Rejected(e) => assert!(e.contains(want), "{queue}: {e}"),
            other => panic!("{queue}: {other:?}"),
        }
    }
    d.pass();
    assert_eq!(d.job(jp).state, JobState::Placed);
}

/// The isolation intent is committed with the allocation (the same SchedulePass entry):
/// every placed job carries its tenant's network, tenants get distinct ones, in order.
#[test]
fn isolation_intents_come_with_allocations() {
    let mut d = Driver::new(small_au());
    let tenant = |t: &str| {
        let mut s = batch_whole(1);
        s.tenant = t.into();
        s
    };
    let a1 = d.submit(tenant("acme"));
    let b1 = d.submit(tenant("blue"));
    let a2 = d.submit(tenant("acme"));
    assert_eq!(d.job(a1).isolation, None, "nothing before placement");
    d.pass();
    let net = |d: &Driver, j| d.job(j).isolation.expect("placed with an intent").net;
    assert_eq!((net(&d, a1), net(&d, b1), net(&d, a2)), (1, 2, 1));
    let intent = d.job(b1).isolation.unwrap();
    assert_eq!((intent.vlan(), intent.ib_pkey()), (2, 0x8002));
    assert_eq!(d.sm.tenant_net("blue"), Some(intent));
    // A snapshot carries the table: a restored state machine assigns the same way.
    let restored = StateMachine::restore(&d.sm.snapshot()).expect("restores");
    assert_eq!(restored.tenant_net("acme").map(|i| i.net), Some(1));
    assert_eq!(restored.state_hash(), d.sm.state_hash());
}
