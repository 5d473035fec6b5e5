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

/// sbatch (script, `#SBATCH`, `--wrap`, arrays with a throttle, dependencies, holds,
/// partitions), then squeue, sacct, sinfo and scontrol show, as a user runs them.
#[test]
fn sbatch_then_squeue_sacct_sinfo_and_show() {
    let mut c = Cluster::start(&["tyo1-n1", "syd1-n1"]);
    let dir = c.dir.path().to_path_buf();
    let submitted = |out: &(i32, String, String)| -> u64 {
        assert_eq!(out.0, 0, "{out:?}");
        out.1
            .strip_prefix("Submitted batch job ")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{out:?}"))
    };
    let script = dir.join("hello.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#SBATCH -J hello\n#SBATCH -p jp\n#SBATCH --gpus=1\n\
         echo \"hello $SLURM_JOB_ID on $SLURM_JOB_NODELIST in $SLURM_JOB_PARTITION\"\n",
    )
    .unwrap();
    let hello = submitted(&c.shim("sbatch", &[script.to_str().unwrap()], &[]));
    c.wait_state(hello, "CD");
    let out = std::fs::read_to_string(dir.join(format!("slurm-{hello}.out"))).unwrap();
    assert_eq!(out, format!("hello {hello} on tyo1-n1 in jp\n"));

    // An array of 4 with at most 2 at once, each writing its own file.
    let first = submitted(&c.shim(
        "sbatch",
        &[
            "-a",
            "0-3%2",
            "-o",
            "arr-%A_%a.out",
            "--wrap",
            "echo $SLURM_ARRAY_TASK_ID",
        ],
        &[],
    ));
    // A job that waits for the whole array, and one held.
    let (code, out, _) = c.shim(
        "sbatch",
        &[
            "-d",
            &format!("afterok:{first}"),
            "--parsable",
            "--wrap",
            "true",
        ],
        &[],
    );
    // --parsable prints the bare id.
    assert_eq!(code, 0);
    let after: u64 = out.trim().parse().unwrap();
    let held = submitted(&c.shim("sbatch", &["-H", "-J", "held", "--wrap", "true"], &[]));
    let (code, out, _) = c.shim(
        "squeue",
        &["-h", "-o", "%i %j %t %r", "-j", &held.to_string()],
        &[],
    );
    assert_eq!((code, out), (0, format!("{held} held PD JobHeldUser\n")));
    for k in 0..4 {
        c.wait_state(first + k, "CD");
        let out = std::fs::read_to_string(dir.join(format!("arr-{first}_{k}.out"))).unwrap();
        assert_eq!(out, format!("{k}\n"));
    }

    c.wait_state(after, "CD");

    // Slurm's refusal of an unknown partition.
    let (code, _, err) = c.shim("sbatch", &["-p", "nope", "--wrap", "true"], &[]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
        )
    );

    // sacct: one line per job, parsable.
    let (code, out, err) = c.shim(
        "sacct",
        &[
            "-X",
            "-n",
            "-P",
            "-o",
            "JobID,JobName,State,ExitCode",
            "-j",
            &hello.to_string(),
        ],
        &[],
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, &*format!("{hello}|hello|COMPLETED|0:0\n"), "")
    );
    // scontrol show job: Slurm's key=value record.
    let (code, out, _) = c.shim("scontrol", &["show", "job", &hello.to_string()], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("JobId={hello} JobName=hello\n")),
        "{out}"
    );
    assert!(out.contains("JobState=COMPLETED"), "{out}");
    // sinfo: the default partition and one per jurisdiction.
    let (code, out, _) = c.shim("sinfo", &["-h", "-o", "%P %D"], &[]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["all* 4", "au 2", "jp 2"], "{out}");
}
