//! The runner: the lifecycle core driven against real processes, cgroups and state files.
//!
//! A [`Runner`] owns the [`Lifecycle`] of this node's tasks. Its callers (the agent's network
//! loop, or `sovra-agent run-local`) hand it assignments, cancels and report acknowledgements,
//! call [`Runner::poll`] every [`POLL_INTERVAL`] (or sooner, at [`Runner::poll_timeout`]), and
//! drain [`Runner::poll_report`]. Everything it does is synchronous and short: file writes,
//! `fork`/`exec` of a supervisor, signals.
//!
//! [`Runner::open`] is also the restart path: it scans the state directory, observes what is
//! still alive, and lets [`Lifecycle::reconcile`] decide. Dropping a runner leaves every task
//! running; nothing here kills a task except a cancel, a time limit, or a start that never
//! completed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cgroup::{self, CgroupError, CgroupRoot, Enforce, Limits};
use super::ibpart;
use super::netns::{self, TaskNet};
use super::proc::{self, boot_id, is_alive, unix_ms, ProcRef};
use super::state::{
    self, ExitFile, KillFile, NetFile, StartedFile, StateError, SupervisorFile, TaskFile,
    EXIT_FILE, KILL_FILE, NCCL_FILE, STARTED_FILE, STATE_VERSION, SUPERVISOR_FILE, SUPERVISOR_LOG,
    TASK_FILE,
};
use super::supervisor;
use crate::core::devices::resolve;
use crate::core::env::{default_master_port, job_env, task_env, EnvInput};
use crate::core::inventory::Inventory;
use crate::core::lifecycle::TASKS_MAX;
use crate::core::nccl::topo_xml;
use crate::core::{
    Action, Assigned, Assignment, Config, Finished, Lifecycle, Millis, Phase, Recovered, Report,
    Signal, Started, Status, TaskId,
};

/// How often callers should call [`Runner::poll`] to notice starts and exits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The `PATH` tasks get unless the submitter sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Most reports queued for the caller; beyond it the oldest `Running` reports are dropped
/// (final reports stay available through [`Runner::unacked_reports`]).
const REPORTS_MAX: usize = 4 * TASKS_MAX;

/// How tasks are isolated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// One cgroup v2 per task under `root`.
    Cgroup {
        /// The agent's cgroup root.
        root: PathBuf,
        /// Whether CPU and memory limits must be enforceable.
        enforce: Enforce,
    },
    /// No cgroup: each task is a session and process group. Limits are not enforced, OOM is
    /// not detected, and a process that starts its own session escapes a kill. For
    /// unprivileged demos and tests.
    Session,
}

/// The runner's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Where task state lives (`<state_dir>/tasks/<job>-<rank>/`).
    pub state_dir: PathBuf,
    /// Where task output goes (`job-<job>-<rank>.out` and `.err`).
    pub log_dir: PathBuf,
    /// Isolation of tasks.
    pub isolation: Isolation,
    /// The `sovra-agent` binary to run supervisors with.
    pub supervisor_exe: PathBuf,
    /// Lifecycle timings.
    pub lifecycle: Config,
    /// Variables every task starts with, below the submitter's and sovra's (`PATH`, and
    /// `HOME`, `LANG`, `TZ`, `USER`, `LOGNAME` copied from the agent's environment).
    pub base_env: Vec<(String, String)>,
    /// Run tasks that carry a tenant network in their own network namespace on it
    /// ([`netns`]); a task that cannot get its network does not start.
    pub net_isolation: bool,
}

impl RunnerConfig {
    /// Defaults around `state_dir`: logs in `<state_dir>/logs`, cgroup isolation at the default
    /// root with limits required, this executable as the supervisor.
    pub fn new(state_dir: PathBuf) -> RunnerConfig {
        RunnerConfig {
            log_dir: state_dir.join("logs"),
            state_dir,
            isolation: Isolation::Cgroup {
                root: cgroup::default_root(),
                enforce: Enforce::Required,
            },
            supervisor_exe: std::env::current_exe().unwrap_or_else(|_| "sovra-agent".into()),
            lifecycle: Config::default(),
            base_env: base_env(),
            net_isolation: false,
        }
    }
}

/// `PATH`, plus a few variables of the agent's own environment that programs expect.
fn base_env() -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_string(), DEFAULT_PATH.to_string())];
    for name in ["HOME", "LANG", "TZ", "USER", "LOGNAME"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    env
}

/// Why a runner cannot open.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The cgroup root is unusable.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A state directory problem.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// More tasks on disk than the bound.
    #[error("{} holds {count} tasks, more than {TASKS_MAX}", path.display())]
    TooManyTasks {
        /// The tasks directory.
        path: PathBuf,
        /// How many.
        count: usize,
    },
}

/// One task as the runner shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task.
    pub task: TaskId,
    /// Its phase.
    pub phase: Phase,
    /// Its main process.
    pub pid: Option<u32>,
    /// When it started.
    pub started_ms: Option<Millis>,
    /// Its end, when finished.
    pub finished: Option<Finished>,
    /// Its cgroup.
    pub cgroup: Option<PathBuf>,
    /// Its cgroup v1 twins on a hybrid host (memory first, then cpu).
    pub v1_cgroups: Vec<PathBuf>,
    /// Its address on its tenant network, when isolated.
    pub net_addr: Option<String>,
    /// Its standard output file.
    pub stdout: PathBuf,
    /// Its standard error file.
    pub stderr: PathBuf,
}

/// The IO side of one task.
#[derive(Clone, Debug)]
struct TaskIo {
    dir: PathBuf,
    cgroup: Option<PathBuf>,
    v1_cgroups: Vec<PathBuf>,
    net: Option<TaskNet>,
    supervisor: Option<ProcRef>,
    job: Option<ProcRef>,
    devices: Vec<String>,
    oom_seen: u64,
    released: bool,
    orphan_warned: bool,
}

/// Runs this node's tasks. See the module docs.
pub struct Runner {
    config: RunnerConfig,
    cgroup: Option<CgroupRoot>,
    inventory: Inventory,
    boot_id: String,
    lifecycle: Lifecycle,
    io: BTreeMap<TaskId, TaskIo>,
    reports: VecDeque<Report>,
}

impl Runner {
    /// Opens the runner: checks isolation, then adopts, reports or gives up every task found
    /// in the state directory (see [`Lifecycle::reconcile`]).
    pub fn open(config: RunnerConfig, inventory: Inventory) -> Result<Runner, RunnerError> {
        let cgroup = match &config.isolation {
            Isolation::Cgroup { root, enforce } => Some(cgroup::open_root(root, *enforce)?),
            Isolation::Session => None,
        };
        let tasks_dir = config.state_dir.join("tasks");
        for dir in [&tasks_dir, &config.log_dir] {
            fs::create_dir_all(dir).map_err(|source| RunnerError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        // Task records hold each task's full environment: keep them private.
        fs::set_permissions(&tasks_dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            RunnerError::Io {
                path: tasks_dir.clone(),
                source,
            }
        })?;
        let boot_id = boot_id().map_err(|source| RunnerError::Io {
            path: "/proc/sys/kernel/random/boot_id".into(),
            source,
        })?;
        let now = unix_ms();
        let (io, recovered) = scan(&tasks_dir, &boot_id)?;
        let lifecycle = Lifecycle::reconcile(now, config.lifecycle, recovered);
        let mut runner = Runner {
            config,
            cgroup,
            inventory,
            boot_id,
            lifecycle,
            io,
            reports: VecDeque::new(),
        };
        runner.drain(now);
        Ok(runner)
    }

    /// A new assignment. Idempotent for a known task.
    pub fn assign(&mut self, assignment: Assignment) -> Assigned {
        let now = unix_ms();
        let answer = self.lifecycle.handle_assign(now, assignment);
        self.drain(now);
        answer
    }

    /// Cancels a task; returns whether it is known here.
    pub fn cancel(&mut self, task: TaskId) -> bool {
        let now = unix_ms();
        let known = self.lifecycle.handle_cancel(now, task);
        self.drain(now);
        known
    }

    /// The scheduler has the final report of `task`: its state is deleted (its output files
    /// stay). Returns whether a finished task was forgotten.
    pub fn report_acked(&mut self, task: TaskId) -> bool {
        let now = unix_ms();
        let forgotten = self.lifecycle.handle_report_acked(task);
        self.drain(now);
        forgotten
    }

    /// Observes every live task (start and exit records, OOM counts, vanished supervisors),
    /// runs the lifecycle's timers, and retries cgroup removals.
    pub fn poll(&mut self) {
        let now = unix_ms();
        let live: Vec<TaskId> = self
            .lifecycle
            .tasks()
            .filter(|t| t.phase != Phase::Finished)
            .map(|t| t.task)
            .collect();
        for id in live {
            self.observe(now, id);
            self.drain(now);
        }
        self.lifecycle.handle_tick(now);
        self.drain(now);
        let unreleased: Vec<TaskId> = self
            .io
            .iter()
            .filter(|(id, io)| {
                !io.released
                    && self
                        .lifecycle
                        .task(**id)
                        .is_some_and(|t| t.phase == Phase::Finished)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unreleased {
            self.release(id);
        }
    }

    /// The next report for the scheduler.
    pub fn poll_report(&mut self) -> Option<Report> {
        self.reports.pop_front()
    }

    /// When the lifecycle next has a deadline (time limit, kill escalation, start timeout).
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.lifecycle.poll_timeout()
    }

    /// How long the caller may wait before the next [`Runner::poll`].
    pub fn poll_delay(&self) -> Duration {
        let now = unix_ms();
        match self.poll_timeout() {
            Some(at) => POLL_INTERVAL.min(Duration::from_millis(at.saturating_sub(now))),
            None => POLL_INTERVAL,
        }
    }

    /// Final reports not yet acknowledged, to send again after a reconnect or a scheduler
    /// failover.
    pub fn unacked_reports(&self) -> Vec<Report> {
        self.lifecycle
            .tasks()
            .filter_map(|t| {
                t.finished.map(|f| Report {
                    task: t.task,
                    status: Status::Finished(f.clone()),
                })
            })
            .collect()
    }

    /// Every task, in id order.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.lifecycle
            .tasks()
            .map(|t| {
                let io = self.io.get(&t.task);
                let (stdout, stderr) = self.log_paths(t.task);
                TaskInfo {
                    task: t.task,
                    phase: t.phase,
                    pid: t.pid,
                    started_ms: t.started_ms,
                    finished: t.finished.cloned(),
                    cgroup: io.and_then(|io| io.cgroup.clone()),
                    v1_cgroups: io.map(|io| io.v1_cgroups.clone()).unwrap_or_default(),
                    net_addr: io
                        .and_then(|io| io.net.as_ref())
                        .map(|n| n.ip().to_string()),
                    stdout,
                    stderr,
                }
            })
            .collect()
    }

    /// Whether no task is tracked.
    pub fn is_idle(&self) -> bool {
        self.lifecycle.is_empty()
    }

    /// The standard output and error files of a task.
    pub fn log_paths(&self, task: TaskId) -> (PathBuf, PathBuf) {
        (
            self.config.log_dir.join(format!("job-{task}.out")),
            self.config.log_dir.join(format!("job-{task}.err")),
        )
    }

    /// The inventory tasks are placed against.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// One line on how tasks are isolated, for logs and `--json` output.
    pub fn isolation_summary(&self) -> String {
        match &self.cgroup {
            None => "session (no cgroup: limits not enforced, OOM not detected)".to_string(),
            Some(root) => {
                let mut missing = Vec::new();
                if !root.cpu_enforced() {
                    missing.push("cpu");
                }
                if !root.memory_enforced() {
                    missing.push("memory");
                }
                let v1: Vec<String> = [&root.v1_memory, &root.v1_cpu]
                    .into_iter()
                    .flatten()
                    .map(|p| p.display().to_string())
                    .collect();
                let hybrid = if v1.is_empty() {
                    String::new()
                } else {
                    format!("; hybrid host, limits in cgroup v1 at {}", v1.join(" and "))
                };
                if missing.is_empty() {
                    format!(
                        "cgroup v2 at {} (cpu and memory limits{hybrid})",
                        root.path.display()
                    )
                } else {
                    format!(
                        "cgroup v2 at {} without {} (not enforced{hybrid})",
                        root.path.display(),
                        missing.join(" and ")
                    )
                }
            }
        }
    }

    /// The cgroup root, when isolating with cgroups.
    pub fn cgroup_root(&self) -> Option<&CgroupRoot> {
        self.cgroup.as_ref()
    }

    /// The working directory of a task without one: `<state_dir>/work/<job>-<rank>`, kept
    /// after the task is forgotten, like its output.
    pub fn work_dir(&self, task: TaskId) -> PathBuf {
        self.config.state_dir.join("work").join(task.to_string())
    }

    fn task_dir(&self, task: TaskId) -> PathBuf {
        self.config.state_dir.join("tasks").join(task.to_string())
    }

    fn drain(&mut self, now: Millis) {
        while let Some(action) = self.lifecycle.poll_action() {
            self.execute(now, action);
        }
        self.lifecycle.check_invariants();
    }

    fn execute(&mut self, now: Millis, action: Action) {
        match action {
            Action::Start(assignment) => {
                let id = assignment.task;
                if let Err(why) = self.start(now, &assignment) {
                    tracing::warn!(task = %id, "launch failed: {why}");
                    self.lifecycle.handle_launch_failed(now, id, why);
                }
            }
            Action::Kill {
                task,
                reason,
                signal,
            } => self.kill(now, task, reason, signal),
            Action::Report(report) => {
                if self.reports.len() >= REPORTS_MAX {
                    let running = self
                        .reports
                        .iter()
                        .position(|r| matches!(r.status, Status::Running { .. }));
                    self.reports.remove(running.unwrap_or(0));
                }
                self.reports.push_back(report);
            }
            Action::Release(task) => self.release(task),
            Action::Forget(task) => {
                self.release(task);
                let dir = self.task_dir(task);
                if let Err(e) = fs::remove_dir_all(&dir) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(task = %task, "cannot remove {}: {e}", dir.display());
                    }
                }
                self.io.remove(&task);
            }
        }
    }

    /// The lowest host number no task of tenant network `net` on this node holds.
    fn free_host(&self, net: u32) -> Result<u8, String> {
        let bridge = format!("svbr{net}");
        let used: std::collections::BTreeSet<String> = self
            .io
            .values()
            .filter_map(|io| io.net.as_ref())
            .filter(|n| n.bridge == bridge)
            .map(|n| n.ip().to_string())
            .collect();
        (2..=254u8)
            .find(|&h| !used.contains(netns::plan(TaskId::new(0, 0), net, h).ip()))
            .ok_or_else(|| format!("tenant network {net} has no free address on this node"))
    }

    /// Prepares and launches a task: devices, environment, NCCL file, state, cgroup,
    /// supervisor. The error is one line.
    fn start(&mut self, now: Millis, a: &Assignment) -> Result<(), String> {
        let id = a.task;
        let dir = self.task_dir(id);
        if dir.exists() {
            // A leftover of a forgotten task with the same id: it is not ours any more.
            fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        self.io.insert(
            id,
            TaskIo {
                dir: dir.clone(),
                cgroup: None,
                v1_cgroups: Vec::new(),
                net: None,
                supervisor: None,
                job: None,
                devices: Vec::new(),
                oom_seen: 0,
                released: false,
                orphan_warned: false,
            },
        );

        let mig_in_use: BTreeSet<String> = self
            .io
            .iter()
            .filter(|(other, _)| **other != id)
            .filter(|(other, _)| {
                self.lifecycle
                    .task(**other)
                    .is_some_and(|t| t.phase != Phase::Finished)
            })
            .flat_map(|(_, io)| io.devices.iter().filter(|d| d.starts_with("MIG-")).cloned())
            .collect();
        let member = a.member();
        let devices = resolve(&self.inventory, &member.take.gpus, &mig_in_use)?;
        let nccl_path = dir.join(NCCL_FILE);
        let nccl_file = match topo_xml(&self.inventory, &devices) {
            Some(xml) => {
                fs::write(&nccl_path, xml).map_err(|e| format!("{}: {e}", nccl_path.display()))?;
                Some(nccl_path.to_string_lossy().into_owned())
            }
            None => None,
        };
        let sovra_env = job_env(&EnvInput {
            assignment: a,
            devices: &devices,
            simulated: self.inventory.simulated,
            master_addr: None,
            master_port: default_master_port(id.job),
            nccl_topo_file: nccl_file.as_deref(),
        });
        let mut env = task_env(&self.config.base_env, sovra_env, &a.command.env);
        // The tenant network: set up before anything starts, or the task does not start.
        let net = match (self.config.net_isolation, a.tenant_net) {
            (true, Some(tenant_net)) => {
                // InfiniBand: the tenant's partition key must be on every active port.
                let pkey =
                    sovra_scheduler::core::state::IsolationIntent { net: tenant_net }.ib_pkey();
                match ibpart::plan(Path::new(ibpart::SYSFS_IB), pkey)? {
                    ibpart::PkeyPlan::Index(i) => {
                        env.insert("NCCL_IB_PKEY".into(), i.to_string());
                    }
                    ibpart::PkeyPlan::NoDevice => {}
                }
                let host = self.free_host(tenant_net)?;
                let net = netns::plan(id, tenant_net, host);
                netns::setup(&net)?;
                env.insert("SOVRA_NET_ADDR".into(), net.ip().to_string());
                Some(net)
            }
            _ => None,
        };
        self.io.get_mut(&id).expect("inserted above").net = net.clone();
        let cwd = match &a.command.cwd {
            Some(cwd) => cwd.clone(),
            None => {
                let work = self.work_dir(id);
                fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
                work.to_string_lossy().into_owned()
            }
        };

        let limits = Limits {
            cpu_milli: member.take.cpu_milli,
            memory_mib: member.take.memory_mib,
        };
        let (cgroup, v1_cgroups) = match &self.cgroup {
            Some(root) => {
                let made = root.create_task(id, limits).map_err(|e| e.to_string())?;
                (Some(made.path), made.v1)
            }
            None => (None, Vec::new()),
        };
        let (stdout, stderr) = self.log_paths(id);
        let io = self.io.get_mut(&id).expect("inserted above");
        io.cgroup = cgroup.clone();
        io.v1_cgroups = v1_cgroups.clone();
        io.devices = devices.iter().map(|d| d.uuid.clone()).collect();
        let task_file = TaskFile {
            version: STATE_VERSION,
            job: id.job.0,
            rank: id.rank,
            time_limit_ms: a.time_limit_ms,
            argv: a.command.effective_argv(),
            env: env.into_iter().collect(),
            cwd,
            stdout,
            stderr,
            cgroup,
            v1_cgroups,
            net: net.map(|n| NetFile {
                netns: n.netns,
                addr: n.addr,
                veth: n.veth,
                bridge: n.bridge,
            }),
            devices: io.devices.clone(),
            assigned_ms: now,
        };
        state::write(&dir.join(TASK_FILE), &task_file).map_err(|e| e.to_string())?;

        let supervisors_procs = self
            .cgroup
            .as_ref()
            .map(|root| root.supervisors_path().join("cgroup.procs"));
        let exe = &self.config.supervisor_exe;
        let supervisor = supervisor::spawn(exe, &dir, supervisors_procs.as_deref())
            .map_err(|e| format!("cannot start supervisor {}: {e}", exe.display()))?;
        self.io.get_mut(&id).expect("inserted above").supervisor = Some(supervisor);
        let record = SupervisorFile {
            pid: supervisor.pid,
            start_ticks: supervisor.start_ticks,
            boot_id: self.boot_id.clone(),
        };
        if let Err(e) = state::write(&dir.join(SUPERVISOR_FILE), &record) {
            // Not fatal: the supervisor's own start record names it too.
            tracing::warn!(task = %id, "{e}");
        }
        tracing::debug!(task = %id, pid = supervisor.pid, "supervisor started");
        Ok(())
    }

    fn kill(&mut self, now: Millis, id: TaskId, reason: crate::core::KillReason, signal: Signal) {
        let Some(io) = self.io.get(&id) else {
            return;
        };
        let kill_path = io.dir.join(KILL_FILE);
        if !kill_path.exists() {
            let record = KillFile {
                reason: reason.name().to_string(),
                requested_ms: now,
            };
            if let Err(e) = state::write(&kill_path, &record) {
                tracing::warn!(task = %id, "{e}");
            }
        }
        let sig = match signal {
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        let result = match (&io.cgroup, io.job) {
            (Some(dir), _) if sig == libc::SIGKILL => cgroup::kill_all(dir),
            (Some(dir), _) => cgroup::signal_all(dir, sig),
            (None, Some(job)) if is_alive(job) => proc::kill_group(job.pid, sig),
            (None, _) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(task = %id, "kill: {e}");
        }
        if reason == crate::core::KillReason::StartTimeout && sig == libc::SIGKILL {
            // A supervisor that cannot start a task in time is stuck; it goes too.
            if let Some(s) = io.supervisor.filter(|s| is_alive(*s)) {
                let _ = proc::kill(s.pid, libc::SIGKILL);
            }
        }
    }

    fn release(&mut self, id: TaskId) {
        let Some(io) = self.io.get_mut(&id) else {
            return;
        };
        if io.released {
            return;
        }
        if let Some(s) = io.supervisor {
            proc::reap(s.pid);
        }
        match &io.cgroup {
            None => io.released = true,
            Some(dir) => {
                let _ = cgroup::kill_all(dir);
                match cgroup::remove(dir) {
                    Ok(()) => io.released = true,
                    Err(e) => tracing::debug!(task = %id, "cgroup not removed yet: {e}"),
                }
            }
        }
        if io.released {
            if let Some(net) = io.net.take() {
                netns::teardown(&net);
            }
        }
        if io.released {
            // The v1 twins empty with the v2 cgroup; one that does not is retried next time.
            for dir in &io.v1_cgroups {
                if let Err(e) = cgroup::remove(dir) {
                    tracing::debug!(task = %id, "{} not removed yet: {e}", dir.display());
                    io.released = false;
                }
            }
        }
    }

    /// Reads what the supervisor recorded and what is alive, and tells the lifecycle.
    fn observe(&mut self, now: Millis, id: TaskId) {
        let Some(io) = self.io.get(&id).cloned() else {
            // Tracked by the lifecycle but never prepared: nothing can be alive.
            self.lifecycle
                .handle_vanished(now, id, "the task has no state directory".into());
            return;
        };
        if let Some(s) = io.supervisor {
            proc::reap(s.pid);
        }
        let view = self.lifecycle.task(id).expect("observed task exists");
        if view.started_ms.is_none() {
            match state::read::<StartedFile>(&io.dir.join(STARTED_FILE)) {
                Ok(Some(s)) => {
                    let io = self.io.get_mut(&id).expect("present");
                    io.job = Some(ProcRef {
                        pid: s.pid,
                        start_ticks: s.start_ticks,
                    });
                    let started = Started {
                        pid: s.pid.max(0) as u32,
                        started_ms: s.started_ms,
                    };
                    self.lifecycle.handle_started(now, id, started);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(task = %id, "{e}"),
            }
        }
        if self.observe_exit(now, id, &io.dir) {
            return;
        }
        let io = self.io.get(&id).cloned().expect("present");
        if let Some(kills) = cgroup::task_oom_kills(io.cgroup.as_deref(), &io.v1_cgroups) {
            if kills > io.oom_seen {
                self.io.get_mut(&id).expect("present").oom_seen = kills;
                self.lifecycle.handle_oom(now, id, kills);
            }
        }
        let supervisor_alive = io.supervisor.is_some_and(is_alive);
        if supervisor_alive {
            return;
        }
        // The supervisor writes its exit record just before it exits: read again.
        if self.observe_exit(now, id, &io.dir) {
            return;
        }
        if job_alive(&io) {
            if !io.orphan_warned {
                tracing::warn!(task = %id, "supervisor gone while the task runs: exit unknown");
                self.io.get_mut(&id).expect("present").orphan_warned = true;
            }
            return;
        }
        let why = match last_line(&io.dir.join(SUPERVISOR_LOG)) {
            Some(line) => format!("the supervisor exited without an exit record: {line}"),
            None => "the supervisor exited without an exit record".to_string(),
        };
        self.lifecycle.handle_vanished(now, id, why);
    }

    fn observe_exit(&mut self, now: Millis, id: TaskId, dir: &Path) -> bool {
        match state::read::<ExitFile>(&dir.join(EXIT_FILE)) {
            Ok(Some(file)) => match file.to_record() {
                Some(record) => {
                    self.lifecycle.handle_exited(now, id, record);
                    true
                }
                None => false,
            },
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(task = %id, "{e}");
                false
            }
        }
    }
}

/// Whether any process of the task lives.
fn job_alive(io: &TaskIo) -> bool {
    match (&io.cgroup, io.job) {
        (Some(dir), _) => cgroup::populated(dir).unwrap_or(false),
        (None, Some(job)) => is_alive(job),
        (None, None) => false,
    }
}

/// The last non-empty line of a small file.
fn last_line(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.trim().chars().take(300).collect())
}

/// Reads every task directory: the IO side, and what the lifecycle needs to reconcile.
fn scan(
    tasks_dir: &Path,
    boot_id: &str,
) -> Result<(BTreeMap<TaskId, TaskIo>, Vec<Recovered>), RunnerError> {
    let io_error = |source| RunnerError::Io {
        path: tasks_dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<(TaskId, PathBuf)> = Vec::new();
    for entry in fs::read_dir(tasks_dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name();
        match name.to_str().and_then(TaskId::parse) {
            Some(id) if entry.path().is_dir() => entries.push((id, entry.path())),
            _ => tracing::warn!("ignoring {} in the tasks directory", entry.path().display()),
        }
    }
    if entries.len() > TASKS_MAX {
        return Err(RunnerError::TooManyTasks {
            path: tasks_dir.to_path_buf(),
            count: entries.len(),
        });
    }
    entries.sort();
    let mut io = BTreeMap::new();
    let mut recovered = Vec::new();
    for (id, dir) in entries {
        let (task_io, r) = recover(id, dir, boot_id);
        io.insert(id, task_io);
        recovered.push(r);
    }
    Ok((io, recovered))
}

fn read_or_warn<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    match state::read(path) {
        Ok(v) => v,
        Err(e @ StateError::Corrupt { .. }) | Err(e @ StateError::Io { .. }) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// What one task directory says, and what of it lives.
fn recover(id: TaskId, dir: PathBuf, boot_id: &str) -> (TaskIo, Recovered) {
    let task: Option<TaskFile> = read_or_warn(&dir.join(TASK_FILE));
    let spawned: Option<SupervisorFile> = read_or_warn(&dir.join(SUPERVISOR_FILE));
    let started: Option<StartedFile> = read_or_warn(&dir.join(STARTED_FILE));
    let kill: Option<KillFile> = read_or_warn(&dir.join(KILL_FILE));
    let exit: Option<ExitFile> = read_or_warn(&dir.join(EXIT_FILE));

    let same_boot = |b: &str| b == boot_id;
    let supervisor = started
        .as_ref()
        .map(|s| &s.supervisor)
        .or(spawned.as_ref())
        .filter(|s| same_boot(&s.boot_id))
        .map(|s| ProcRef {
            pid: s.pid,
            start_ticks: s.start_ticks,
        });
    let job = started
        .as_ref()
        .filter(|s| same_boot(&s.supervisor.boot_id))
        .map(|s| ProcRef {
            pid: s.pid,
            start_ticks: s.start_ticks,
        });
    let cgroup = task.as_ref().and_then(|t| t.cgroup.clone());
    let task_io = TaskIo {
        dir,
        cgroup,
        v1_cgroups: task
            .as_ref()
            .map(|t| t.v1_cgroups.clone())
            .unwrap_or_default(),
        net: task.as_ref().and_then(|t| t.net.as_ref()).map(|n| TaskNet {
            netns: n.netns.clone(),
            addr: n.addr.clone(),
            veth: n.veth.clone(),
            bridge: n.bridge.clone(),
        }),
        supervisor,
        job,
        devices: task.as_ref().map(|t| t.devices.clone()).unwrap_or_default(),
        oom_seen: 0,
        released: false,
        orphan_warned: false,
    };
    let supervisor_alive = supervisor.is_some_and(is_alive);
    let job_alive = job_alive(&task_io);
    let recovered = Recovered {
        task: id,
        time_limit_ms: task.as_ref().and_then(|t| t.time_limit_ms),
        started: started.as_ref().map(|s| Started {
            pid: s.pid.max(0) as u32,
            started_ms: s.started_ms,
        }),
        kill: kill.as_ref().and_then(KillFile::reason),
        exit: exit.as_ref().and_then(ExitFile::to_record),
        job_alive,
        supervisor_alive,
    };
    tracing::debug!(
        task = %id,
        job_alive,
        supervisor_alive,
        exited = recovered.exit.is_some(),
        "recovered"
    );
    (task_io, recovered)
}
