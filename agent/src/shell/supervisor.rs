//! The per-task supervisor: a small process that outlives agent restarts.
//!
//! The agent re-executes its own binary as `sovra-agent supervise <task-dir>`, detached in a new
//! session and placed in the `supervisors` cgroup. The supervisor reads `task.json`, starts the
//! task's process in its own session and cgroup with its environment and output files, records
//! `started.json`, waits for it, kills whatever the process left behind in its cgroup (or
//! process group), reads the cgroup's OOM count, records `exit.json` durably, and exits. It
//! never talks to the agent: the agent reads the files, before or after a restart.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{self, Stdio};
use std::time::Duration;

use super::cgroup;
use super::proc::{self, boot_id, proc_ref, unix_ms, ProcRef};
use super::state::{
    self, ExitFile, StartedFile, StateError, SupervisorFile, TaskFile, EXIT_FILE, STARTED_FILE,
    SUPERVISOR_LOG, TASK_FILE,
};
use crate::core::{Ended, Exit, ExitRecord};

/// The hidden subcommand that runs a supervisor.
pub const SUPERVISE_SUBCOMMAND: &str = "supervise";
/// How long the supervisor waits for a task's leftover processes to die.
const LEFTOVER_KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals the supervisor ignores (and resets to default for the task).
const IGNORED_SIGNALS: [i32; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

/// Why a supervisor could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// A state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// `task.json` is missing.
    #[error("{}: no task file", .0.display())]
    NoTask(std::path::PathBuf),
    /// Waiting for the process.
    #[error("waiting for the task: {0}")]
    Wait(io::Error),
}

/// Spawns a detached supervisor for the task in `dir`: a new session, stdin and stdout on
/// `/dev/null`, stderr to `supervisor.log`, and, when given, moved into `cgroup_procs`
/// (a `cgroup.procs` file) before it runs. The agent does not wait for it; [`proc::reap`]
/// collects it once it exits.
pub fn spawn(exe: &Path, dir: &Path, cgroup_procs: Option<&Path>) -> io::Result<ProcRef> {
    let log = File::create(dir.join(SUPERVISOR_LOG))?;
    let procs = match cgroup_procs {
        Some(p) => Some(OpenOptions::new().write(true).open(p)?),
        None => None,
    };
    let procs_fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut command = process::Command::new(exe);
    command
        .arg(SUPERVISE_SUBCOMMAND)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (setsid, write) on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            detach_into(&procs_fds)?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    let pid = child.id() as i32;
    // Not waited for here: the agent reaps it with waitpid when it sees it gone.
    drop(child);
    proc_ref(pid).ok_or_else(|| {
        io::Error::other(format!(
            "supervisor {pid} exited at once; see {}",
            dir.join(SUPERVISOR_LOG).display()
        ))
    })
}

/// In a forked child: start a new session and join the cgroups whose `cgroup.procs` files are
/// open on `procs_fds` (a v2 cgroup and, on a hybrid host, its v1 twins). Async-signal-safe.
fn detach_into(procs_fds: &[i32]) -> io::Result<()> {
    // SAFETY: setsid and write are async-signal-safe and touch no Rust state.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        for &fd in procs_fds {
            let zero = b"0";
            if libc::write(fd, zero.as_ptr().cast(), zero.len()) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Runs the supervisor for the task in `dir` (the `supervise` subcommand). Returns once
/// `exit.json` is written.
pub fn supervise(dir: &Path) -> Result<(), SuperviseError> {
    for signal in IGNORED_SIGNALS {
        // SAFETY: setting a disposition to SIG_IGN installs no handler.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let task: TaskFile =
        state::read(&dir.join(TASK_FILE))?.ok_or_else(|| SuperviseError::NoTask(dir.into()))?;
    let me = proc_ref(process::id() as i32).expect("own /proc entry");
    let boot = boot_id().unwrap_or_default();

    let record = match start(&task) {
        Err(why) => ExitRecord {
            ended: Ended::LaunchError(why),
            oom_kills: 0,
            finished_ms: unix_ms(),
        },
        Ok(mut child) => {
            let pid = child.id() as i32;
            let started = StartedFile {
                pid,
                start_ticks: proc_ref(pid).map_or(0, |p| p.start_ticks),
                supervisor: SupervisorFile {
                    pid: me.pid,
                    start_ticks: me.start_ticks,
                    boot_id: boot.clone(),
                },
                started_ms: unix_ms(),
            };
            if let Err(e) = state::write(&dir.join(STARTED_FILE), &started) {
                // The exit record still follows; the agent adopts through the cgroup.
                eprintln!("sovra-agent supervise: {e}");
            }
            let status = loop {
                match child.wait() {
                    Ok(status) => break status,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(SuperviseError::Wait(e)),
                }
            };
            let exit = match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Code(-1),
            };
            let finished_ms = unix_ms();
            kill_leftovers(&task, pid);
            let oom_kills =
                cgroup::task_oom_kills(task.cgroup.as_deref(), &task.v1_cgroups).unwrap_or(0);
            ExitRecord {
                ended: Ended::Exit(exit),
                oom_kills,
                finished_ms,
            }
        }
    };
    state::write(&dir.join(EXIT_FILE), &ExitFile::from_record(&record))?;
    Ok(())
}

/// Starts the task's process; the error is one line.
fn start(task: &TaskFile) -> Result<process::Child, String> {
    let program = task.argv.first().ok_or("empty command")?;
    let output = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let stdout = output(&task.stdout)?;
    let stderr = output(&task.stderr)?;
    let mut procs = Vec::new();
    for dir in task.cgroup.iter().chain(&task.v1_cgroups) {
        let path = dir.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        procs.push(file);
    }
    let procs_fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    // The tenant network's namespace, entered in the fork.
    let netns = match &task.net {
        Some(net) => {
            let path = Path::new(super::netns::NETNS_DIR).join(&net.netns);
            Some(File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?)
        }
        None => None,
    };
    let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
    let mut command = process::Command::new(program);
    command
        .args(&task.argv[1..])
        .env_clear()
        .envs(task.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&task.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (signal, setns, setsid, write) on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            for signal in IGNORED_SIGNALS {
                libc::signal(signal, libc::SIG_DFL);
            }
            if let Some(fd) = netns_fd {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            detach_into(&procs_fds)
        });
    }
    command
        .spawn()
        .map_err(|e| format!("cannot start {program:?} in {}: {e}", task.cwd))
}

/// After the main process exits: nothing of the task may outlive it (Slurm does the same).
fn kill_leftovers(task: &TaskFile, pid: i32) {
    match &task.cgroup {
        Some(dir) => match cgroup::kill_and_wait(dir, LEFTOVER_KILL_TIMEOUT) {
            Ok(true) => {}
            Ok(false) => eprintln!(
                "sovra-agent supervise: {} still holds processes after SIGKILL",
                dir.display()
            ),
            Err(e) => eprintln!("sovra-agent supervise: {}: {e}", dir.display()),
        },
        None => {
            if let Err(e) = proc::kill_group(pid, libc::SIGKILL) {
                eprintln!("sovra-agent supervise: process group {pid}: {e}");
            }
        }
    }
}
