//! Processes and files at the OS edge: `/proc` identities, signals, reaping, the wall clock,
//! and durable writes.
//!
//! A pid alone does not name a process across an agent restart (pids are reused), so the agent
//! records a [`ProcRef`]: the pid plus its start time in clock ticks since boot (field 22 of
//! `/proc/<pid>/stat`), together with the boot id. A process is the same one only if all three
//! match.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::Millis;

/// A process identity that survives pid reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcRef {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// State letter (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a `/proc/<pid>/stat` line. The command name may hold spaces and parentheses, so
/// fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); start time is field 22.
    let state = fields.first()?.chars().next()?;
    let start_ticks = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

/// The identity of a live process, right now.
pub fn proc_ref(pid: i32) -> Option<ProcRef> {
    stat(pid).map(|s| ProcRef {
        pid,
        start_ticks: s.start_ticks,
    })
}

/// Whether `p` still runs: same pid and start time, and not a zombie.
pub fn is_alive(p: ProcRef) -> bool {
    reap(p.pid);
    match stat(p.pid) {
        Some(s) => s.start_ticks == p.start_ticks && s.state != 'Z' && s.state != 'X',
        None => false,
    }
}

/// Reaps `pid` if it is an exited child of this process; returns whether it did. Harmless
/// for any other pid.
pub fn reap(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on one pid only writes `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    r == pid
}

/// Sends `signal` to `pid`. A process that is already gone is not an error.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    assert!(pid > 0, "kill of pid {pid} would signal a group");
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid, signal) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(e)
}

/// Sends `signal` to the process group `pgid`. A group that is already gone is not an error.
pub fn kill_group(pgid: i32, signal: i32) -> io::Result<()> {
    assert!(pgid > 1, "kill of process group {pgid}");
    // SAFETY: killpg has no memory effects.
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(e)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Writes `bytes` to `path` so that after a crash the file holds either its old content or
/// all of `bytes`: write a temporary file, fsync it, rename it over `path`, fsync the
/// directory.
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "durable write to a path without a parent",
        )
    })?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "durable write to a path without a name",
        )
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 \
                    1 0 987654 1000 100";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_ticks: 987654
            })
        );
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = proc_ref(std::process::id() as i32).unwrap();
        assert!(is_alive(me));
        let reused = ProcRef {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(
            !is_alive(reused),
            "a different start time is a different process"
        );
        assert!(!is_alive(ProcRef {
            pid: i32::MAX,
            start_ticks: 0
        }));
    }

    #[test]
    fn durable_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_durable(&path, b"one").unwrap();
        write_durable(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert!(!dir.path().join("f.json.tmp").exists());
    }
}
