//! The runner against real processes: exit codes and output, the environment, cancel, time
//! limits, OOM, and agent restarts, under session isolation (everywhere) and cgroup v2
//! isolation (where this process may write a cgroup v2 subtree; skipped with a printed reason
//! otherwise).
//!
//! Every wait is bounded, and every fixture kills what its tasks left behind when dropped, so a
//! failing test cleans up too.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sovra_agent::core::inventory::{parse_fake_gpus, Inventory};
use sovra_agent::core::local::place_locally;
use sovra_agent::core::{
    Assignment, Command, Config, Exit, Finished, Outcome, Phase, Report, Status, TaskId,
};
use sovra_agent::shell::cgroup::{self, Enforce};
use sovra_agent::shell::proc::{self, is_alive, ProcRef};
use sovra_agent::shell::runner::{Isolation, Runner, RunnerConfig};
use sovra_agent::shell::state::{self, StartedFile, SupervisorFile};
use sovra_scheduler::core::job::{GangSpec, GpuRequest, JobId, JobSpec, TopologyRule, Workload};
use sovra_scheduler::jobfile::parse_job;

/// Longest any single wait in these tests may take.
const WAIT_MAX: Duration = Duration::from_secs(20);

static FIXTURES: AtomicUsize = AtomicUsize::new(0);

/// A state directory and, for cgroup tests, a private cgroup root; both cleaned up on drop.
struct Fixture {
    dir: tempfile::TempDir,
    isolation: Isolation,
    cgroup_root: Option<cgroup::CgroupRoot>,
    kill_grace_ms: u64,
}

impl Fixture {
    fn session() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
            isolation: Isolation::Session,
            cgroup_root: None,
            kill_grace_ms: 300,
        }
    }

    /// A fixture on a private cgroup v2 root, or `None` (with the reason printed) when this
    /// process cannot have one. `limits` also requires the cpu and memory controllers.
    fn cgroup(test: &str, limits: bool) -> Option<Fixture> {
        let Some(mount) = cgroup::cgroup2_mount() else {
            println!("skipped {test}: no cgroup v2 mount");
            return None;
        };
        let n = FIXTURES.fetch_add(1, Ordering::Relaxed);
        let root = mount.join(format!("sovra-test-{}-{n}", std::process::id()));
        let enforce = if limits {
            Enforce::Required
        } else {
            Enforce::BestEffort
        };
        let opened = match cgroup::open_root(&root, enforce) {
            Ok(opened) => opened,
            Err(e) => {
                println!("skipped {test}: {e}");
                let _ = fs::remove_dir(root.join("supervisors"));
                let _ = fs::remove_dir(&root);
                for controller in ["memory", "cpu"] {
                    if let Some(mount) = cgroup::v1_mount(controller) {
                        let _ = fs::remove_dir(mount.join(root.file_name().unwrap()));
                    }
                }
                return None;
            }
        };
        Some(Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
            isolation: Isolation::Cgroup {
                root: root.clone(),
                enforce,
            },
            cgroup_root: Some(opened),
            kill_grace_ms: 300,
        })
    }

    fn config(&self) -> RunnerConfig {
        let mut config = RunnerConfig::new(self.dir.path().join("state"));
        config.isolation = self.isolation.clone();
        config.supervisor_exe = PathBuf::from(env!("CARGO_BIN_EXE_sovra-agent"));
        config.lifecycle = Config {
            kill_grace_ms: self.kill_grace_ms,
            kill_retry_ms: 200,
            start_timeout_ms: 10_000,
        };
        config
    }

    fn runner(&self) -> Runner {
        Runner::open(self.config(), inventory()).expect("runner opens")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn task_dir(&self, task: TaskId) -> PathBuf {
        self.dir.path().join("state/tasks").join(task.to_string())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Kill whatever a failed test left running: supervisors and task process groups.
        if let Ok(entries) = fs::read_dir(self.dir.path().join("state/tasks")) {
            for entry in entries.flatten() {
                let dir = entry.path();
                let started: Option<StartedFile> =
                    state::read(&dir.join("started.json")).ok().flatten();
                let spawned: Option<SupervisorFile> =
                    state::read(&dir.join("supervisor.json")).ok().flatten();
                let supervisors = [started.as_ref().map(|s| &s.supervisor), spawned.as_ref()];
                for s in supervisors.into_iter().flatten() {
                    kill_if_alive(s.pid, s.start_ticks, false);
                }
                if let Some(s) = &started {
                    kill_if_alive(s.pid, s.start_ticks, true);
                }
            }
        }
        if let Some(root) = &self.cgroup_root {
            if let Ok(entries) = fs::read_dir(&root.path) {
                for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                    let _ = cgroup::kill_and_wait(&entry.path(), Duration::from_secs(5));
                }
            }
            if let Err(e) = cgroup::remove_root(root) {
                eprintln!("{}: not removed: {e}", root.path.display());
            }
        }
    }
}

fn kill_if_alive(pid: i32, start_ticks: u64, group: bool) {
    if pid > 1 && is_alive(ProcRef { pid, start_ticks }) {
        let _ = if group {
            proc::kill_group(pid, libc::SIGKILL)
        } else {
            proc::kill(pid, libc::SIGKILL)
        };
        proc::reap(pid);
    }
}

fn inventory() -> Inventory {
    parse_fake_gpus("4xH100", Some("2x400"), "test-node").expect("fake inventory")
}

fn spec(workload: Workload) -> JobSpec {
    // Through the job file parser, so that new `JobSpec` fields take their defaults.
    let mut spec = parse_job("name = \"test\"\ntenant = \"tests\"\njurisdictions = [\"AU\"]\n")
        .expect("a valid job file");
    spec.cpu_milli = 500;
    spec.memory_mib = 256;
    spec.workload = workload;
    spec
}

fn batch() -> JobSpec {
    spec(Workload::Batch {
        gpus: GpuRequest::None,
    })
}

fn command(script: &str) -> Command {
    Command {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![],
        cwd: None,
    }
}

/// The assignments of `spec` running `script` on the fake node.
fn assignments(job: u64, spec: &JobSpec, script: &str) -> Vec<Assignment> {
    place_locally(spec, &inventory(), JobId(job), &command(script)).expect("fits the node")
}

fn one(job: u64, spec: &JobSpec, script: &str) -> Assignment {
    assignments(job, spec, script).remove(0)
}

/// Polls until `until` picks a report, collecting the others; panics after [`WAIT_MAX`].
fn wait_for<T>(runner: &mut Runner, what: &str, mut until: impl FnMut(&Report) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        runner.poll();
        while let Some(report) = runner.poll_report() {
            if let Some(found) = until(&report) {
                return found;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_running(runner: &mut Runner, task: TaskId) {
    wait_for(runner, &format!("{task} running"), |r| {
        (r.task == task && matches!(r.status, Status::Running { .. })).then_some(())
    });
}

fn wait_finished(runner: &mut Runner, task: TaskId) -> Finished {
    wait_for(runner, &format!("{task} finished"), |r| match &r.status {
        Status::Finished(f) if r.task == task => Some(f.clone()),
        _ => None,
    })
}

/// Waits until `path` holds at least `lines` lines.
fn wait_lines(path: &Path, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_string).collect();
        if got.len() >= lines {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn dead(pid: i32) -> bool {
    proc::reap(pid);
    proc::stat(pid).is_none_or(|s| s.state == 'Z' || s.state == 'X')
}

fn wait_dead(pids: &[i32]) {
    let deadline = Instant::now() + WAIT_MAX;
    while !pids.iter().all(|&p| dead(p)) {
        assert!(Instant::now() < deadline, "processes {pids:?} survived");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios, each run under every isolation that supports it.

fn exit_code_and_output(fx: &Fixture) {
    let mut runner = fx.runner();
    let a = one(1, &batch(), "echo out; echo err >&2; exit 3");
    let task = a.task;
    runner.assign(a);
    let f = wait_finished(&mut runner, task);
    assert_eq!(f.outcome, Outcome::Failed(Exit::Code(3)));
    assert_eq!(f.exit, Some(Exit::Code(3)));
    assert!(f.started_ms.is_some());
    let (stdout, stderr) = runner.log_paths(task);
    assert_eq!(fs::read_to_string(stdout).unwrap(), "out\n");
    assert_eq!(fs::read_to_string(stderr).unwrap(), "err\n");

    let ok = one(2, &batch(), "exit 0");
    let ok_task = ok.task;
    runner.assign(ok);
    assert_eq!(
        wait_finished(&mut runner, ok_task).outcome,
        Outcome::Completed
    );

    // Acknowledged: the state goes, the output stays, the cgroup is gone.
    let cgroup = runner
        .tasks()
        .iter()
        .find(|t| t.task == task)
        .unwrap()
        .cgroup
        .clone();
    assert!(runner.report_acked(task));
    assert!(!fx.task_dir(task).exists());
    assert!(runner.log_paths(task).0.exists());
    if let Some(cgroup) = cgroup {
        assert!(!cgroup.exists(), "{} not removed", cgroup.display());
    }
}

fn environment(fx: &Fixture) {
    let mut runner = fx.runner();
    let gang = spec(Workload::Gang(GangSpec {
        members: 2,
        gpus_per_member: 2,
        topology: TopologyRule::default(),
        max_rtt_ns: None,
    }));
    let mut tasks = Vec::new();
    let script = "env; test -s \"$NCCL_TOPO_FILE\" && echo topo-ok; echo cwd=$(pwd)";
    for mut a in assignments(10, &gang, script) {
        a.command.env = vec![
            ("FROM_SUBMITTER".into(), "yes".into()),
            ("SLURM_JOB_NAME".into(), "renamed".into()),
            ("CUDA_VISIBLE_DEVICES".into(), "all".into()),
        ];
        tasks.push(a.task);
        runner.assign(a);
    }
    let inv = inventory();
    for (rank, task) in tasks.iter().enumerate() {
        assert_eq!(
            wait_finished(&mut runner, *task).outcome,
            Outcome::Completed
        );
        let out = fs::read_to_string(runner.log_paths(*task).0).unwrap();
        let has = |line: &str| out.lines().any(|l| l == line);
        let uuids = format!(
            "{},{}",
            inv.gpus[2 * rank].uuid,
            inv.gpus[2 * rank + 1].uuid
        );
        assert!(has(&format!("CUDA_VISIBLE_DEVICES={uuids}")), "{out}");
        assert!(has(&format!("NVIDIA_VISIBLE_DEVICES={uuids}")), "{out}");
        assert!(has("CUDA_DEVICE_ORDER=PCI_BUS_ID"), "{out}");
        assert!(has(&format!("SLURM_PROCID={rank}")), "{out}");
        assert!(
            has("SLURM_JOB_NAME=renamed"),
            "the submitter overrides: {out}"
        );
        assert!(has(&format!("SOVRA_RANK={rank}")), "{out}");
        assert!(has("SOVRA_WORLD_SIZE=2") && has("SLURM_NTASKS=2"), "{out}");
        assert!(has("SOVRA_JOB_ID=10") && has("SLURM_JOB_ID=10"), "{out}");
        assert!(
            has(&format!("SLURM_LOCALID={rank}")),
            "both ranks share the node: {out}"
        );
        assert!(has("SLURM_JOB_NODELIST=test-node"), "{out}");
        assert!(has("SOVRA_MASTER_ADDR=test-node"), "{out}");
        assert!(has("SOVRA_SIMULATED_GPUS=1"), "{out}");
        assert!(has("FROM_SUBMITTER=yes"), "{out}");
        assert!(has("topo-ok"), "{out}");
        let work = runner.work_dir(*task);
        assert!(has(&format!("cwd={}", work.display())), "{out}");
    }
}

fn empty_command_holds_until_cancelled(fx: &Fixture) {
    let mut runner = fx.runner();
    let mut a = one(22, &batch(), "");
    a.command.argv.clear();
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        runner.tasks()[0].phase,
        Phase::Running,
        "holds its resources"
    );
    runner.cancel(task);
    assert_eq!(wait_finished(&mut runner, task).outcome, Outcome::Cancelled);
}

fn cancel_kills_the_tree(fx: &Fixture) {
    let mut runner = fx.runner();
    let pids = fx.path("pids");
    let script = format!(
        "sleep 300 & echo $! >> {p}; sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait",
        p = pids.display()
    );
    let a = one(20, &batch(), &script);
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    let pids: Vec<i32> = wait_lines(&pids, 3)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(runner.cancel(task));
    let f = wait_finished(&mut runner, task);
    assert_eq!(f.outcome, Outcome::Cancelled);
    wait_dead(&pids);
}

fn cancel_lets_the_task_clean_up(fx: &Fixture) {
    let mut runner = fx.runner();
    let marker = fx.path("bye");
    let ready = fx.path("ready");
    let script = format!(
        "trap 'echo bye > {m}; exit 0' TERM; echo up > {r}; while :; do sleep 0.05; done",
        m = marker.display(),
        r = ready.display()
    );
    let a = one(21, &batch(), &script);
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    wait_lines(&ready, 1);
    runner.cancel(task);
    let f = wait_finished(&mut runner, task);
    assert_eq!(
        f.outcome,
        Outcome::Cancelled,
        "exited 0 on SIGTERM, still cancelled"
    );
    assert_eq!(fs::read_to_string(&marker).unwrap(), "bye\n");
}

fn time_limit(fx: &Fixture) {
    let mut runner = fx.runner();
    let mut limited = batch();
    limited.time_limit_ms = Some(1_000);
    let a = one(30, &limited, "sleep 300");
    let task = a.task;
    let begun = Instant::now();
    runner.assign(a);
    let f = wait_finished(&mut runner, task);
    assert_eq!(f.outcome, Outcome::TimeLimit);
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_millis(1_000),
        "killed early: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "killed late: {took:?}");
}

fn launch_failure(fx: &Fixture) {
    let mut runner = fx.runner();
    let mut a = one(40, &batch(), "");
    a.command.argv = vec!["/nonexistent/program".into()];
    let task = a.task;
    runner.assign(a);
    let f = wait_finished(&mut runner, task);
    match &f.outcome {
        Outcome::LaunchFailed(why) => {
            assert!(
                why.contains("cannot start \"/nonexistent/program\""),
                "{why}"
            )
        }
        other => panic!("expected a launch failure, got {other}"),
    }
}

fn restart_adopts_a_running_task(fx: &Fixture) {
    let mut runner = fx.runner();
    let gate = fx.path("gate");
    let script = format!(
        "while [ ! -e {g} ]; do sleep 0.05; done; exit 7",
        g = gate.display()
    );
    let a = one(50, &batch(), &script);
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    let pid = runner.tasks()[0].pid.expect("pid") as i32;
    drop(runner);

    // A new agent over the same state: the task is adopted, not killed.
    let mut runner = fx.runner();
    let view = runner.tasks();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].phase, Phase::Running);
    assert!(!dead(pid), "the restart killed the task");
    wait_running(&mut runner, task);
    fs::write(&gate, "").unwrap();
    let f = wait_finished(&mut runner, task);
    assert_eq!(
        f.outcome,
        Outcome::Failed(Exit::Code(7)),
        "its real exit code"
    );
}

fn restart_reports_an_exit_that_happened_while_down(fx: &Fixture) {
    let mut runner = fx.runner();
    let a = one(51, &batch(), "exit 5");
    let task = a.task;
    runner.assign(a);
    drop(runner);
    let exit_file = fx.task_dir(task).join("exit.json");
    let deadline = Instant::now() + WAIT_MAX;
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the supervisor wrote no exit record"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let mut runner = fx.runner();
    let f = wait_finished(&mut runner, task);
    assert_eq!(f.outcome, Outcome::Failed(Exit::Code(5)));
    assert!(f.started_ms.is_some());
}

fn restart_reports_a_lost_task(fx: &Fixture) {
    let mut runner = fx.runner();
    let a = one(52, &batch(), "sleep 300");
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    drop(runner);
    // Something kills the supervisor and the task behind the agent's back.
    let started: StartedFile = state::read(&fx.task_dir(task).join("started.json"))
        .unwrap()
        .unwrap();
    proc::kill(started.supervisor.pid, libc::SIGKILL).unwrap();
    proc::kill_group(started.pid, libc::SIGKILL).unwrap();
    if let Isolation::Cgroup { root, .. } = &fx.isolation {
        cgroup::kill_all(&root.join(format!("job-{task}"))).unwrap();
    }
    wait_dead(&[started.supervisor.pid, started.pid]);
    let mut runner = fx.runner();
    let f = wait_finished(&mut runner, task);
    assert!(matches!(f.outcome, Outcome::NodeFail(_)), "{}", f.outcome);
}

macro_rules! session_and_cgroup {
    ($($name:ident),* $(,)?) => {
        mod session {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Fixture::session());
                }
            )*
        }
        mod cgroup_v2 {
            $(
                #[test]
                fn $name() {
                    if let Some(fx) = super::Fixture::cgroup(stringify!($name), false) {
                        super::$name(&fx);
                    }
                }
            )*
        }
    };
}

session_and_cgroup!(
    exit_code_and_output,
    environment,
    cancel_kills_the_tree,
    cancel_lets_the_task_clean_up,
    empty_command_holds_until_cancelled,
    time_limit,
    launch_failure,
    restart_adopts_a_running_task,
    restart_reports_an_exit_that_happened_while_down,
    restart_reports_a_lost_task,
);

// ---------------------------------------------------------------------------------------------
// cgroup-only behaviour.

#[test]
fn cgroup_cancel_kills_a_process_that_left_the_session() {
    let Some(fx) = Fixture::cgroup("cgroup_cancel_kills_a_process_that_left_the_session", false)
    else {
        return;
    };
    let mut runner = fx.runner();
    let pids = fx.path("pids");
    let script = format!("setsid sleep 300 & echo $! > {p}; wait", p = pids.display());
    let a = one(60, &batch(), &script);
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    let escaped: i32 = wait_lines(&pids, 1)[0].parse().unwrap();
    runner.cancel(task);
    assert_eq!(wait_finished(&mut runner, task).outcome, Outcome::Cancelled);
    wait_dead(&[escaped]);
}

#[test]
fn cgroup_limits_are_written() {
    let Some(fx) = Fixture::cgroup("cgroup_limits_are_written", true) else {
        return;
    };
    let mut runner = fx.runner();
    let mut s = batch();
    s.cpu_milli = 1500;
    s.memory_mib = 64;
    let a = one(70, &s, "sleep 300");
    let task = a.task;
    runner.assign(a);
    wait_running(&mut runner, task);
    let info = &runner.tasks()[0];
    let dir = info.cgroup.clone().expect("a cgroup");
    let root = fx.cgroup_root.as_ref().expect("a cgroup root");
    let read = |path: PathBuf| fs::read_to_string(&path).unwrap().trim().to_string();
    if root.cpu {
        assert_eq!(read(dir.join("cpu.max")), "150000 100000");
    } else {
        // A hybrid host: the cgroup v1 twin holds the CFS quota.
        let twin = info.v1_cgroups.last().expect("a v1 cpu cgroup");
        assert_eq!(read(twin.join("cpu.cfs_quota_us")), "150000");
        assert_eq!(read(twin.join("cpu.cfs_period_us")), "100000");
    }
    if root.memory {
        assert_eq!(read(dir.join("memory.max")), "67108864");
        if dir.join("memory.swap.max").exists() {
            assert_eq!(read(dir.join("memory.swap.max")), "0");
        }
    } else {
        let twin = &info.v1_cgroups[0];
        assert_eq!(read(twin.join("memory.limit_in_bytes")), "67108864");
        if twin.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(twin.join("memory.memsw.limit_in_bytes")), "67108864");
        }
    }
    runner.cancel(task);
    assert_eq!(wait_finished(&mut runner, task).outcome, Outcome::Cancelled);
}

#[test]
fn cgroup_memory_limit_reports_out_of_memory() {
    let Some(fx) = Fixture::cgroup("cgroup_memory_limit_reports_out_of_memory", true) else {
        return;
    };
    let mut runner = fx.runner();
    let mut s = batch();
    s.memory_mib = 32;
    // `tail` keeps the whole newline-free input in memory: 200 MiB against a 32 MiB limit.
    let a = one(80, &s, "head -c 200M /dev/zero | tail > /dev/null");
    let task = a.task;
    runner.assign(a);
    let f = wait_finished(&mut runner, task);
    assert_eq!(f.outcome, Outcome::OutOfMemory, "{f:?}");
    assert!(f.oom_kills >= 1);
}

// ---------------------------------------------------------------------------------------------
// Tenant network isolation (root and iproute2; skipped with the reason otherwise).

/// Two tenants' tasks on one node: a task reaches its own tenant's task, another tenant's
/// task cannot reach it (nor the node's loopback services); the namespaces go with the tasks.
#[test]
fn tenant_networks_keep_tenants_apart() {
    use sovra_agent::shell::netns;
    if let Err(why) = netns::available() {
        println!("skipped tenant_networks_keep_tenants_apart: {why}");
        return;
    }
    let fx = Fixture::session();
    let mut config = fx.config();
    config.net_isolation = true;
    let mut runner = Runner::open(config, inventory()).expect("runner opens");
    let probe = env!("CARGO_BIN_EXE_sovra-agent");
    let tenant_task = |job: u64, net: u32, script: &str| {
        let mut a = one(job, &batch(), script);
        a.tenant_net = Some(net);
        a
    };
    // Tenant 1's server, listening on its tenant address.
    let server = tenant_task(90, 1, &format!("exec {probe} net-probe listen 7000 20"));
    let server_id = server.task;
    runner.assign(server);
    wait_running(&mut runner, server_id);
    let addr = runner
        .tasks()
        .iter()
        .find(|t| t.task == server_id)
        .and_then(|t| t.net_addr.clone())
        .expect("an address on the tenant network");
    assert!(addr.starts_with("10.64.1."), "{addr}");
    // Give the listener a moment to bind.
    std::thread::sleep(Duration::from_millis(200));
    let target = format!("{addr}:7000");
    let probe_task = |job: u64, net: u32| {
        tenant_task(
            job,
            net,
            &format!("exec {probe} net-probe connect {target} 1000"),
        )
    };
    let same = probe_task(91, 1);
    let other = probe_task(92, 2);
    let (same_id, other_id) = (same.task, other.task);
    runner.assign(same);
    runner.assign(other);
    let same_end = wait_finished(&mut runner, same_id);
    let other_end = wait_finished(&mut runner, other_id);
    assert_eq!(
        same_end.outcome,
        Outcome::Completed,
        "same tenant connects: {same_end:?}"
    );
    assert!(
        matches!(other_end.outcome, Outcome::Failed(_)),
        "another tenant must not connect: {other_end:?}"
    );
    runner.cancel(server_id);
    wait_finished(&mut runner, server_id);
    for t in [server_id, same_id, other_id] {
        runner.report_acked(t);
    }
    // Everything is removed once the tasks are gone.
    let deadline = Instant::now() + WAIT_MAX;
    while Path::new("/run/netns/sovra-90-0").exists() && Instant::now() < deadline {
        runner.poll();
        std::thread::sleep(Duration::from_millis(20));
    }
    for name in ["sovra-90-0", "sovra-91-0", "sovra-92-0"] {
        assert!(
            !Path::new("/run/netns").join(name).exists(),
            "{name} left behind"
        );
    }
}
