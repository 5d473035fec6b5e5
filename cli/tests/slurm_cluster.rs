//! The Slurm shim against a real cluster (three `sovrad` replicas and an agent on loopback):
//! `scancel` and `scontrol hold|release|requeue|update|suspend` as users run them, with
//! Slurm 22.05's messages and exit codes.

mod common;

use common::*;

#[test]
fn scancel_and_scontrol_control_jobs() {
    let mut c = Cluster::start(&["tyo1-n1"]);
    // A running job and one that waits for all of tyo1-n1's GPUs behind it.
    let (running, _) = c.submit(&job("run", "\"JP\"", 4, "command = [\"sleep\", \"300\"]"));
    c.wait_state(running, "R");
    let waiting = c.submit_pending(&job("wait", "\"JP\"", 8, "command = [\"true\"]"));
    c.wait_state(waiting, "PD");
    let id = |j: u64| j.to_string();

    // hold / release a pending job.
    assert_eq!(
        c.shim("scontrol", &["hold", &id(waiting)], &[]),
        (0, "".into(), "".into())
    );
    let line = c.wait_state(waiting, "PD");
    assert!(line.detail.starts_with("JobHeldUser"), "{line:?}");
    let (code, _, err) = c.shim("scontrol", &["hold", &id(running)], &[]);
    assert_eq!(
        (code, err),
        (
            1,
            format!("Job is no longer pending execution for job {running}\n")
        )
    );
    assert_eq!(c.shim("scontrol", &["release", &id(waiting)], &[]).0, 0);

    // update: a running job's limit may shrink; bad values and fields say so.
    assert_eq!(
        c.shim(
            "scontrol",
            &["update", &format!("JobId={running}"), "TimeLimit=10"],
            &[]
        )
        .0,
        0
    );
    let (code, _, err) = c.shim("scontrol", &["update", "JobId=1", "TimeLimit=x"], &[]);
    assert_eq!(
        (code, err.as_str()),
        (1, "scontrol: error: Invalid TimeLimit value\n")
    );
    let (code, _, err) = c.shim("scontrol", &["update", "JobId=1", "Colour=red"], &[]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Update of this parameter is not supported: Colour=red\nRequest aborted\n"
        )
    );
    let (code, _, err) = c.shim("scontrol", &["suspend", &id(running)], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("Requested operation is presently disabled for job {running}\n")
    );

    // requeue puts it back; it runs again.
    assert_eq!(c.shim("scontrol", &["requeue", &id(running)], &[]).0, 0);
    c.wait_state(running, "R");

    // scancel: silent on success, Slurm's message for an unknown job.
    assert_eq!(
        c.shim("scancel", &[&id(running)], &[]),
        (0, "".into(), "".into())
    );
    c.wait_state(running, "CA");
    let (code, _, err) = c.shim("scancel", &["99999"], &[]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "scancel: error: Kill job error on job id 99999: Invalid job id specified\n"
        )
    );
    let (code, _, err) = c.shim("scancel", &[], &[]);
    assert_eq!(
        (code, err.as_str()),
        (1, "scancel: error: No job identification provided\n")
    );
    c.wait_state(waiting, "CD");
}
