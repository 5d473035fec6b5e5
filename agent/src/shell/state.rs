//! The task state directory: one directory per task, a few small JSON files, each written
//! durably (write, fsync, rename, fsync the directory).
//!
//! ```text
//! <state-dir>/tasks/<job>-<rank>/
//!   task.json        the agent, before starting: command, environment, paths, cgroup, limits
//!   supervisor.json  the agent, after spawning the supervisor: its pid and start time
//!   started.json     the supervisor, after the process started: pids, start time, boot id
//!   kill.json        the agent, before the first signal: why it is killing the task
//!   exit.json        the supervisor, after the process ended: exit code or signal, OOM kills
//!   nccl-topo.xml    the task's NCCL topology
//!   supervisor.log   the supervisor's own errors
//! ```
//!
//! This is a boundary module: the serde types here are separate from the core's types, and
//! carry a format version.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::proc::write_durable;
use crate::core::{Ended, Exit, ExitRecord, KillReason, Millis};

/// Version of the files' format.
pub const STATE_VERSION: u32 = 1;
/// The task's command and setup.
pub const TASK_FILE: &str = "task.json";
/// The supervisor's identity, as the agent spawned it.
pub const SUPERVISOR_FILE: &str = "supervisor.json";
/// The supervisor's start record.
pub const STARTED_FILE: &str = "started.json";
/// The agent's kill record.
pub const KILL_FILE: &str = "kill.json";
/// The supervisor's exit record.
pub const EXIT_FILE: &str = "exit.json";
/// The NCCL topology file.
pub const NCCL_FILE: &str = "nccl-topo.xml";
/// The supervisor's stderr.
pub const SUPERVISOR_LOG: &str = "supervisor.log";

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not what this version writes.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `task.json`: everything the supervisor needs, and what the agent needs after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Job id.
    pub job: u64,
    /// Member rank.
    pub rank: u32,
    /// Time limit.
    pub time_limit_ms: Option<u64>,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The complete environment of the process.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
    /// Standard output file.
    pub stdout: PathBuf,
    /// Standard error file.
    pub stderr: PathBuf,
    /// The task's cgroup, or `None` under session isolation.
    pub cgroup: Option<PathBuf>,
    /// Its cgroup v1 twins on a hybrid host (memory, cpu), joined with `cgroup`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v1_cgroups: Vec<PathBuf>,
    /// Its tenant network, when isolated: the supervisor starts it in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetFile>,
    /// Device UUIDs the task holds.
    pub devices: Vec<String>,
    /// When the agent accepted it.
    pub assigned_ms: Millis,
}

/// A task's tenant network (see `netns::TaskNet`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetFile {
    /// Namespace name under `/run/netns`.
    pub netns: String,
    /// The task's address with its prefix.
    pub addr: String,
    /// Host side of its veth pair.
    pub veth: String,
    /// Its tenant's bridge.
    pub bridge: String,
}

/// `supervisor.json` and the supervisor half of `started.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorFile {
    /// Supervisor pid.
    pub pid: i32,
    /// Its start time in ticks since boot.
    pub start_ticks: u64,
    /// The boot it runs in.
    pub boot_id: String,
}

/// `started.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartedFile {
    /// The task's main process (also its session and process group id).
    pub pid: i32,
    /// Its start time in ticks since boot.
    pub start_ticks: u64,
    /// The supervisor.
    pub supervisor: SupervisorFile,
    /// Wall-clock start.
    pub started_ms: Millis,
}

/// `kill.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillFile {
    /// `cancel`, `time_limit` or `start_timeout`.
    pub reason: String,
    /// When the agent decided.
    pub requested_ms: Millis,
}

/// `exit.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitFile {
    /// Exit code, when the process exited.
    pub code: Option<i32>,
    /// Signal, when a signal killed it.
    pub signal: Option<i32>,
    /// Why it could not be started.
    pub launch_error: Option<String>,
    /// OOM kills in its cgroup.
    pub oom_kills: u64,
    /// When the supervisor saw the end.
    pub finished_ms: Millis,
}

impl ExitFile {
    /// The file form of a record.
    pub fn from_record(record: &ExitRecord) -> ExitFile {
        let (code, signal, launch_error) = match &record.ended {
            Ended::Exit(Exit::Code(c)) => (Some(*c), None, None),
            Ended::Exit(Exit::Signal(s)) => (None, Some(*s), None),
            Ended::LaunchError(why) => (None, None, Some(why.clone())),
        };
        ExitFile {
            code,
            signal,
            launch_error,
            oom_kills: record.oom_kills,
            finished_ms: record.finished_ms,
        }
    }

    /// The record; `None` when the file states no end.
    pub fn to_record(&self) -> Option<ExitRecord> {
        let ended = match (&self.launch_error, self.code, self.signal) {
            (Some(why), _, _) => Ended::LaunchError(why.clone()),
            (None, Some(code), _) => Ended::Exit(Exit::Code(code)),
            (None, None, Some(signal)) => Ended::Exit(Exit::Signal(signal)),
            (None, None, None) => return None,
        };
        Some(ExitRecord {
            ended,
            oom_kills: self.oom_kills,
            finished_ms: self.finished_ms,
        })
    }
}

impl KillFile {
    /// The reason, if the file names a known one.
    pub fn reason(&self) -> Option<KillReason> {
        KillReason::parse(&self.reason)
    }
}

/// Reads a JSON state file; `Ok(None)` when it does not exist.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Writes a JSON state file durably.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("state files serialize");
    bytes.push(b'\n');
    write_durable(path, &bytes).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_file_round_trip() {
        let records = [
            Ended::Exit(Exit::Code(3)),
            Ended::Exit(Exit::Signal(9)),
            Ended::LaunchError("no such file".into()),
        ];
        for ended in records {
            let record = ExitRecord {
                ended,
                oom_kills: 2,
                finished_ms: 77,
            };
            assert_eq!(ExitFile::from_record(&record).to_record(), Some(record));
        }
    }

    #[test]
    fn read_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KILL_FILE);
        assert!(read::<KillFile>(&path).unwrap().is_none());
        fs::write(&path, b"{\"reason\":").unwrap();
        let err = read::<KillFile>(&path).unwrap_err().to_string();
        assert!(err.contains("kill.json: EOF while parsing"), "{err}");
        let kill = KillFile {
            reason: "cancel".into(),
            requested_ms: 5,
        };
        write(&path, &kill).unwrap();
        assert_eq!(read::<KillFile>(&path).unwrap(), Some(kill));
    }
}
