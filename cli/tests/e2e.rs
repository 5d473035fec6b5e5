//! End to end: real `sovrad` replicas and real agents (this package's `sovra` binary with its
//! hidden `demo-replica` and `demo-agent` subcommands) on loopback, with simulated GPU
//! inventories, running real processes.
//!
//! Covered: `sovra demo --json`; submit → run → complete with the right environment; cancel
//! kills the task; a time limit ends it as TIMEOUT; a killed agent's node is failed and its job
//! requeued and run elsewhere; a leader killed mid-run loses nothing and records the job once.
//! A job over its memory limit ends as OOM, where this process may create cgroups with the
//! memory controller (root; cgroup v2, or v1 on a hybrid host); elsewhere that test prints why
//! it is skipped.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use common::*;
use sovrad::wire::{ClientOp, ClientResult};
#[test]
fn demo_runs_and_summarises_in_one_json_line() {
    let out = Command::new(SOVRA)
        .args(["demo", "--json"])
        .output()
        .expect("sovra demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last = stdout.lines().last().expect("a summary line");
    assert!(last.starts_with("{\"demo\":\"ok\""), "{last}");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["jobs_submitted"], 3);
    assert_eq!(v["jobs_completed"], 3);
    assert_eq!(v["stopped_cleanly"], true);
    let placements = v["placements"].as_array().unwrap();
    let jp = placements
        .iter()
        .find(|p| p["name"] == "jp-finetune")
        .unwrap();
    assert_eq!(jp["jurisdiction"], "JP", "{last}");
    for node in jp["nodes"].as_array().unwrap() {
        assert!(node.as_str().unwrap().starts_with("tyo1-"), "{last}");
    }
}

/// Submit → run → complete, with the environment a task expects; then cancel, and a time limit.
#[test]
fn jobs_run_with_their_environment_and_end_by_cancel_or_time_limit() {
    let mut c = Cluster::start(&["tyo1-n1"]);
    let out = c.dir.path().join("env.txt");
    let extra = format!(
        "command = [\"sh\", \"-c\", \"env > {}\"]\n[env]\nMY_VAR = \"mine\"",
        out.display()
    );
    let (id, placed) = c.submit(&job("envjob", "\"JP\"", 2, &extra));
    assert_eq!(placed, "tyo1-n1{0,1}");
    c.wait_state(id, "CD");
    let env: BTreeMap<String, String> = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let gpus = &env["CUDA_VISIBLE_DEVICES"];
    assert_eq!(gpus.split(',').count(), 2, "{env:?}");
    assert!(gpus.starts_with("GPU-"), "{env:?}");
    assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], *gpus);
    assert_eq!(env["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");
    assert_eq!(env["SOVRA_RANK"], "0");
    assert_eq!(env["SOVRA_WORLD_SIZE"], "1");
    assert_eq!(env["SLURM_JOB_ID"], id.to_string());
    assert_eq!(env["MY_VAR"], "mine");
    // The task's NCCL topology (removed with the task's state once it is reported).
    assert!(env["NCCL_TOPO_FILE"].ends_with(".xml"), "{env:?}");
    assert_eq!(env["SLURM_JOB_NODELIST"], "tyo1-n1");
    assert_eq!(env["SOVRA_SIMULATED_GPUS"], "1");

    // The read commands, as a user runs them.
    let servers: Vec<String> = c.addrs.iter().map(|a| a.to_string()).collect();
    let certs = c.dir.path().join("certs");
    let cli = |args: &[&str]| {
        let out = Command::new(SOVRA)
            .args(args)
            .env("SOVRA_SERVER", servers.join(","))
            .env("SOVRA_CERTS", &certs)
            .output()
            .expect("sovra runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Like squeue, the default list holds only live jobs.
    assert_eq!(cli(&["jobs", "--json"]), "");
    let listed: serde_json::Value =
        serde_json::from_str(cli(&["jobs", "--all", "--json"]).trim()).expect("one JSON job");
    assert_eq!(listed["job"], id);
    assert_eq!(listed["state"], "CD");
    assert_eq!(listed["exit_code"], 0);
    // Where it ran is kept after it ends.
    assert_eq!(listed["members"][0]["node"], "tyo1-n1");
    assert_eq!(listed["members"][0]["jurisdiction"], "JP");
    // Its output, read from the agent through the leader; stderr separately.
    let (id2, _) = c.submit(&job(
        "talker",
        "\"JP\"",
        1,
        "command = [\"sh\", \"-c\", \"echo hello from rank $SOVRA_RANK; echo oops >&2\"]",
    ));
    c.wait_state(id2, "CD");
    assert_eq!(cli(&["logs", &id2.to_string()]), "hello from rank 0\n");
    assert_eq!(cli(&["logs", &id2.to_string(), "--stderr"]), "oops\n");
    // A job's only rank is 0.
    let servers_ = servers.join(",");
    let bad = Command::new(SOVRA)
        .args(["logs", &id2.to_string(), "--rank", "3"])
        .env("SOVRA_SERVER", &servers_)
        .env("SOVRA_CERTS", &certs)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("has 1 ranks"),
        "{bad:?}"
    );

    // A job from flags and a command, as `srun`-style users type it.
    let flagged = cli(&[
        "submit",
        "--tenant",
        "t",
        "--jurisdiction",
        "JP",
        "--gpus",
        "1",
        "--wait",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    assert!(flagged.contains(": tyo1-n1{"), "{flagged}");
    let nodes: Vec<serde_json::Value> = cli(&["nodes", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(nodes.len(), 4);
    let n1 = nodes.iter().find(|n| n["node"] == "tyo1-n1").unwrap();
    assert_eq!(
        (n1["state"].as_str(), n1["agent"].as_bool()),
        (Some("up"), Some(true))
    );
    assert_eq!(n1["gpus"], 8);

    // Cancel: the task (and its process tree) is killed.
    let pidfile = c.dir.path().join("pid");
    let extra = format!(
        "command = [\"sh\", \"-c\", \"echo $$ > {}; exec sleep 60\"]",
        pidfile.display()
    );
    let (id, _) = c.submit(&job("cancelme", "\"JP\"", 1, &extra));
    c.wait_state(id, "R");
    let explained = cli(&["explain", &id.to_string()]);
    assert!(
        explained.contains("rank 0: tyo1-n1") && explained.contains("allowed jurisdictions: yes"),
        "{explained}"
    );
    c.wait(|_| pidfile.exists() && !fs::read_to_string(&pidfile).unwrap().is_empty());
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(pid));
    assert_eq!(c.call(ClientOp::Cancel { job: id }), Ok(ClientResult::Ok));
    c.wait(|_| !pid_alive(pid));
    assert_eq!(c.jobs()[&id].state, "CA");

    // Time limit: ends as TIMEOUT, and the process is gone.
    let extra = format!(
        "time_limit = \"0:02\"\ncommand = [\"sh\", \"-c\", \"echo $$ > {}; exec sleep 60\"]",
        pidfile.display()
    );
    fs::remove_file(&pidfile).unwrap();
    let (id, _) = c.submit(&job("slow", "\"JP\"", 1, &extra));
    c.wait_state(id, "TO");
    c.wait(|_| pidfile.exists() && !fs::read_to_string(&pidfile).unwrap().is_empty());
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    c.wait(|_| !pid_alive(pid));
}

/// Whether agents here can enforce memory limits; the reason when not.
fn memory_limits_enforceable() -> Result<(), String> {
    use sovra_agent::shell::cgroup::{self, Enforce};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    let mount = cgroup::cgroup2_mount().ok_or("no cgroup v2 mount")?;
    let probe = mount.join(format!("sovra-e2e-probe-{}", std::process::id()));
    let opened = cgroup::open_root(&probe, Enforce::Required).map_err(|e| e.to_string());
    if let Ok(root) = &opened {
        let _ = cgroup::remove_root(root);
    }
    opened.map(|_| ())
}

/// A job that allocates past its memory limit is OOM-killed and ends as OOM
/// (`OUT_OF_MEMORY`), with its exit recorded; its node stays up.
#[test]
fn memory_limit_ends_the_job_out_of_memory() {
    if let Err(why) = memory_limits_enforceable() {
        println!("skipped memory_limit_ends_the_job_out_of_memory: {why}");
        return;
    }
    let mut c = Cluster::start_isolated(&["tyo1-n1"], "cgroup");
    // `tail` keeps its whole newline-free input in memory: 3 GiB against a 256 MiB limit.
    let spec = "name = \"hungry\"\ntenant = \"t\"\njurisdictions = [\"JP\"]\ncpus = 1\n\
                memory_mib = 256\n\
                command = [\"sh\", \"-c\", \"head -c 3G /dev/zero | tail > /dev/null\"]\n\
                [batch]\ngpus = 1\n";
    let (id, placed) = c.submit(spec);
    assert_eq!(placed, "tyo1-n1{0}");
    // Where it ran is kept with the OOM end.
    assert_eq!(c.wait_state(id, "OOM").detail, "tyo1-n1{0}");
    // A job within its limit still runs on the same node.
    let (ok, _) = c.submit(&job("fits", "\"JP\"", 1, "command = [\"true\"]"));
    c.wait_state(ok, "CD");
}

/// An agent killed with SIGKILL: its node is failed after the lease, its job requeued and run
/// to completion on the other node. A leader killed mid-run: the job still completes and is
/// recorded once.
#[test]
fn killed_agents_and_leaders_lose_no_job() {
    let mut c = Cluster::start(&["syd1-n1", "syd1-n2"]);
    let (id, placed) = c.submit(&job("survivor", "\"AU\"", 8, "command = \"sleep 3\""));
    let first = placed.split('{').next().unwrap().to_string();
    c.wait_state(id, "R");
    c.kill9(&format!("agent-{first}"));
    // The node fails after the lease; the job is requeued onto the other node and runs there.
    let done = c.wait_state(id, "CD");
    assert_eq!(done.name, "survivor");
    let restarts_elsewhere = c.jobs()[&id].clone();
    assert_eq!(restarts_elsewhere.state, "CD");

    // Leader killed while a job runs.
    let leader = match c.call(ClientOp::Leader) {
        Ok(ClientResult::Leader { id, .. }) => id,
        other => panic!("leader: {other:?}"),
    };
    let (id, _) = c.submit(&job(
        "through-failover",
        "\"AU\"",
        1,
        "command = \"sleep 2\"",
    ));
    c.wait_state(id, "R");
    c.kill9(&format!("replica-{leader}"));
    c.wait_state(id, "CD");
    let named: Vec<u64> = c
        .jobs()
        .iter()
        .filter(|(_, l)| l.name == "through-failover")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(named, [id], "recorded once");
}

/// Agents in two sites probe each other; the leader commits the measured RTT (loopback: well
/// under a millisecond) in place of the inventory's 105 ms, and `sovra topology show` says so.
/// When one site's agent dies, the link is marked down (placement avoids it).
#[test]
fn measured_site_latency_replaces_the_inventorys() {
    let mut c = Cluster::start(&["syd1-n1", "tyo1-n1"]);
    let servers: Vec<String> = c.addrs.iter().map(|a| a.to_string()).collect();
    let certs = c.dir.path().join("certs");
    let show = || {
        let out = Command::new(SOVRA)
            .args(["topology", "show", "--json"])
            .env("SOVRA_SERVER", servers.join(","))
            .env("SOVRA_CERTS", &certs)
            .output()
            .expect("sovra runs");
        assert!(out.status.success(), "{out:?}");
        let line: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        line
    };
    assert_eq!(
        show()["rtt_ns"],
        105_000_000u64,
        "the inventory's to begin with"
    );
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let line = show();
        if line["source"] == "measured" {
            assert!(line["rtt_ns"].as_u64().unwrap() < 10_000_000, "{line}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never measured: {line}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // tyo1's agent dies: syd1's probes go unanswered, and the link is marked down.
    c.kill9("agent-tyo1-n1");
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let line = show();
        if line["source"] == "down: probes lost" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never marked down: {line}\n{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
