//! The `sovra-agent` binary: subcommands, JSON output, exit codes and one-line errors.
//!
//! Runs use session isolation so they pass without root; the runner tests cover cgroups.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sovra-agent");
const RUN_MAX: Duration = Duration::from_secs(30);

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`, killing it after [`RUN_MAX`].
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sovra-agent");
    let deadline = Instant::now() + RUN_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sovra-agent {args:?} ran longer than {RUN_MAX:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Output {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

fn run_local(state: &Path, extra: &[&str], command: &[&str]) -> Output {
    let state = state.to_str().unwrap();
    let mut args = vec![
        "run-local",
        "--isolation",
        "session",
        "--state-dir",
        state,
        "--kill-grace-ms",
        "100",
        "--json",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(command);
    run(&args)
}

fn json(out: &Output) -> Value {
    let last = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {}", out.stderr));
    serde_json::from_str(last).expect("one JSON line")
}

#[test]
fn inventory_simulated_json() {
    let out = run(&[
        "inventory",
        "--fake-gpus",
        "2xH100",
        "--node-name",
        "n7",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["node"], "n7");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["gpus"].as_array().unwrap().len(), 2);
    let uuid = v["gpus"][0]["uuid"].as_str().unwrap();
    assert!(uuid.starts_with("GPU-fake-"), "{uuid}");
    // Stable across runs.
    let again = json(&run(&[
        "inventory",
        "--fake-gpus",
        "2xH100",
        "--node-name",
        "n7",
        "--json",
    ]));
    assert_eq!(again["gpus"][0]["uuid"], uuid);
}

#[test]
fn inventory_text_says_simulated() {
    let out = run(&["inventory", "--fake-gpus", "1xL40S"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("SIMULATED"), "{}", out.stdout);
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    let bad_model = run(&["inventory", "--fake-gpus", "8xFOO"]);
    assert_eq!(bad_model.code, 1);
    assert_eq!(bad_model.stderr.lines().count(), 1, "{}", bad_model.stderr);
    assert!(bad_model
        .stderr
        .starts_with("sovra-agent: fake gpus \"8xFOO\": unknown model"));

    let usage = run(&["run-local"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);

    let nvml = run(&["inventory"]);
    if nvml.code != 0 {
        assert_eq!(nvml.code, 1);
        assert_eq!(nvml.stderr.lines().count(), 1, "{}", nvml.stderr);
        assert!(nvml.stderr.contains("--fake-gpus"), "{}", nvml.stderr);
    }

    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "tenant = \"t\"\njurisdictions = [\"AU\"]\n[batch]\ngpus = \"x\"\n",
    )
    .unwrap();
    let out = run_local(
        dir.path(),
        &["--no-gpus", "--job", job.to_str().unwrap()],
        &["true"],
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("job.toml"), "{}", out.stderr);
}

#[test]
fn run_local_outcomes_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run_local(dir.path(), &["--no-gpus"], &["sh", "-c", "echo hi"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let v = json(&ok);
    assert_eq!(v["ok"], true);
    assert_eq!(v["tasks"][0]["outcome"], "COMPLETED");
    let stdout = v["tasks"][0]["stdout"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(stdout).unwrap(), "hi\n");

    let failed = run_local(dir.path(), &["--no-gpus"], &["sh", "-c", "exit 3"]);
    assert_eq!(failed.code, 3, "{}", failed.stderr);
    assert_eq!(json(&failed)["tasks"][0]["exit"], "3:0");

    let timeout = run_local(
        dir.path(),
        &["--no-gpus", "--time-limit", "0:01"],
        &["sleep", "30"],
    );
    assert_eq!(timeout.code, 3, "{}", timeout.stderr);
    assert_eq!(json(&timeout)["tasks"][0]["outcome"], "TIMEOUT");
}

#[test]
fn run_local_gang_on_fake_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("gang.toml");
    std::fs::write(
        &job,
        "name = \"pair\"\ntenant = \"t\"\njurisdictions = [\"AU\"]\n\
         [gang]\nmembers = 2\ngpus_per_member = 2\n",
    )
    .unwrap();
    let out = run_local(
        dir.path(),
        &["--fake-gpus", "4xH100", "--job", job.to_str().unwrap()],
        &[
            "sh",
            "-c",
            "echo $SOVRA_RANK/$SOVRA_WORLD_SIZE $SLURM_JOB_GPUS",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["simulated"], true);
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let mut lines: Vec<String> = tasks
        .iter()
        .map(|t| std::fs::read_to_string(t["stdout"].as_str().unwrap()).unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, ["0/2 0,1\n", "1/2 2,3\n"]);
}
