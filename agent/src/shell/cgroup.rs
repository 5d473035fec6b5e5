//! cgroup v2: the agent's subtree, one cgroup per task, limits, kill and OOM counts.
//!
//! ```text
//! <root>/                    default /sys/fs/cgroup/sovra.slice; subtree_control +cpu +memory
//! <root>/supervisors/        every task's supervisor (outside the tasks' limits and kills)
//! <root>/job-<job>-<rank>/   one task's processes: cpu.max, memory.max, memory.swap.max = 0,
//!                            memory.oom.group = 1; cgroup.kill on cancel and time limit
//! ```
//!
//! The supervisors live outside the task cgroups so that killing a task (`cgroup.kill`) or its
//! OOM kill never takes the supervisor that records the exit, and outside the agent's own
//! cgroup so that stopping the agent's service does not take them either.
//!
//! [`open_root`] checks, once, that the root is on a cgroup v2 filesystem, is writable, and has
//! the `cpu` and `memory` controllers, and fails with one line saying what is missing.
//! [`Enforce::BestEffort`] accepts a root without them (a hybrid v1/v2 host): tasks are still
//! tracked and killed through their cgroup, but limits are not enforced and OOM is not seen.

use std::ffi::CString;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::core::TaskId;

/// `statfs` magic of a cgroup v2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `cpu.max` period: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Controllers the agent enables for task cgroups.
const CONTROLLERS: [&str; 2] = ["cpu", "memory"];
/// Most rounds of reading `cgroup.procs` and killing when `cgroup.kill` is missing
/// (kernels before 5.14).
const KILL_ROUNDS_MAX: usize = 64;

/// Whether missing controllers are an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforce {
    /// CPU and memory limits must be enforceable; otherwise [`open_root`] fails.
    Required,
    /// Run without the controllers that are missing: track and kill through cgroups only.
    BestEffort,
}

/// Why the cgroup root cannot be used. Messages are one line and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup v2 filesystem there.
    #[error(
        "{}: not on a cgroup v2 filesystem{hint}; the agent needs the unified hierarchy \
         (or --isolation session)",
        path.display()
    )]
    NotCgroup2 {
        /// The directory checked.
        path: PathBuf,
        /// Where cgroup v2 is mounted instead, if anywhere.
        hint: String,
    },
    /// The root cannot be created or written.
    #[error(
        "cgroup v2 root {} is not writable: {source} (run as root, delegate the subtree, \
         or use --isolation session)",
        path.display()
    )]
    NotWritable {
        /// The root.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The `cpu` or `memory` controller is not available.
    #[error(
        "cgroup v2 at {} lacks the {missing} controller{plural}{hint}; limits cannot be \
         enforced (use --isolation cgroup-best-effort to run without them)",
        path.display(),
        plural = if missing.contains(" and ") { "s" } else { "" }
    )]
    MissingControllers {
        /// The parent whose controllers were read.
        path: PathBuf,
        /// The missing controllers, joined with "and".
        missing: String,
        /// Why, when known.
        hint: String,
    },
    /// Any other IO error on a cgroup file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A task's cgroup still holds processes from before.
    #[error("cgroup {} already holds processes", path.display())]
    Busy {
        /// The cgroup.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The agent's cgroup subtree, checked and set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupRoot {
    /// The root directory.
    pub path: PathBuf,
    /// Whether task cgroups get the `cpu` controller (`cpu.max`).
    pub cpu: bool,
    /// Whether task cgroups get the `memory` controller (`memory.max`, OOM counts).
    pub memory: bool,
}

/// A task's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU in milli-CPU; 0 is unlimited.
    pub cpu_milli: u64,
    /// Memory in MiB; 0 is unlimited.
    pub memory_mib: u64,
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo_cgroup2(&text)
}

/// The first cgroup2 mount point in a mountinfo text.
pub fn mountinfo_cgroup2(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(mount_point)))
    })
}

/// Whether a cgroup v1 hierarchy holds `controller` (a hybrid host).
fn v1_holds(controller: &str) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines().any(|line| {
        let Some((_, right)) = line.split_once(" - ") else {
            return false;
        };
        let mut fields = right.split_whitespace();
        fields.next() == Some("cgroup")
            && fields
                .nth(1)
                .is_some_and(|opts| opts.split(',').any(|o| o == controller))
    })
}

fn unescape_mount(text: &str) -> String {
    text.replace("\\040", " ").replace("\\011", "\t")
}

/// The default root: `sovra.slice` under the cgroup v2 mount (`/sys/fs/cgroup`).
pub fn default_root() -> PathBuf {
    cgroup2_mount()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
        .join("sovra.slice")
}

fn is_cgroup2(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains a nul byte"))?;
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(buf.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Checks and prepares the agent's cgroup root. See the module docs.
pub fn open_root(path: &Path, enforce: Enforce) -> Result<CgroupRoot, CgroupError> {
    let parent = path.parent().ok_or_else(|| CgroupError::NotCgroup2 {
        path: path.to_path_buf(),
        hint: String::new(),
    })?;
    let probe = if path.exists() { path } else { parent };
    if !is_cgroup2(probe).map_err(io_err(probe))? {
        let hint = match cgroup2_mount() {
            Some(m) => format!(" (cgroup v2 is mounted at {})", m.display()),
            None => " (no cgroup v2 mount found)".to_string(),
        };
        return Err(CgroupError::NotCgroup2 {
            path: probe.to_path_buf(),
            hint,
        });
    }

    // Which controllers the parent can hand down, and that it does.
    let available_path = parent.join("cgroup.controllers");
    let available = read_words(&available_path).map_err(io_err(&available_path))?;
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.iter().any(|a| a == c))
        .collect();
    if !missing.is_empty() && enforce == Enforce::Required {
        let hint = if missing.iter().any(|c| v1_holds(c)) {
            " (bound to cgroup v1 on this hybrid host: boot with \
             systemd.unified_cgroup_hierarchy=1)"
        } else {
            " (enable them in the parent's cgroup.subtree_control)"
        };
        return Err(CgroupError::MissingControllers {
            path: parent.to_path_buf(),
            missing: missing.join(" and "),
            hint: hint.to_string(),
        });
    }
    let wanted: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !missing.contains(c))
        .collect();
    enable_controllers(parent, &wanted, enforce)?;

    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(CgroupError::NotWritable {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let enabled = enable_controllers(path, &wanted, enforce)?;
    let supervisors = path.join("supervisors");
    match fs::create_dir(&supervisors) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(CgroupError::NotWritable {
                path: supervisors,
                source,
            })
        }
    }
    Ok(CgroupRoot {
        path: path.to_path_buf(),
        cpu: enabled.contains(&"cpu"),
        memory: enabled.contains(&"memory"),
    })
}

/// Enables `wanted` controllers for the children of `dir`; returns those enabled.
fn enable_controllers<'a>(
    dir: &Path,
    wanted: &[&'a str],
    enforce: Enforce,
) -> Result<Vec<&'a str>, CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let current = read_words(&control).map_err(io_err(&control))?;
    let mut enabled = Vec::new();
    for &c in wanted {
        if current.iter().any(|w| w == c) {
            enabled.push(c);
            continue;
        }
        match fs::write(&control, format!("+{c}")) {
            Ok(()) => enabled.push(c),
            Err(source) if enforce == Enforce::Required => {
                return Err(CgroupError::NotWritable {
                    path: control,
                    source,
                })
            }
            Err(e) => {
                tracing::warn!(
                    controller = c,
                    "cannot enable in {}: {e}",
                    control.display()
                );
            }
        }
    }
    Ok(enabled)
}

impl CgroupRoot {
    /// The cgroup of a task.
    pub fn task_path(&self, task: TaskId) -> PathBuf {
        self.path.join(format!("job-{task}"))
    }

    /// The cgroup every supervisor runs in.
    pub fn supervisors_path(&self) -> PathBuf {
        self.path.join("supervisors")
    }

    /// Creates a task's cgroup with its limits. A leftover empty cgroup of the same name is
    /// replaced (its counters would mislead); one holding processes is an error.
    pub fn create_task(&self, task: TaskId, limits: Limits) -> Result<PathBuf, CgroupError> {
        let path = self.task_path(task);
        if path.exists() {
            if populated(&path).map_err(io_err(&path))? {
                return Err(CgroupError::Busy { path });
            }
            remove(&path).map_err(io_err(&path))?;
        }
        fs::create_dir(&path).map_err(io_err(&path))?;
        write_limits(&path, limits, self.cpu, self.memory)?;
        Ok(path)
    }
}

/// `cpu.max` for `cpu_milli`: quota and period in microseconds, `max` when unlimited.
pub fn cpu_max(cpu_milli: u64) -> String {
    if cpu_milli == 0 {
        return format!("max {CPU_PERIOD_US}");
    }
    // At least 1 ms of quota per period, the kernel's minimum.
    let quota = (cpu_milli * CPU_PERIOD_US / 1000).max(1000);
    format!("{quota} {CPU_PERIOD_US}")
}

/// Writes a task's limit files. Files the kernel does not offer (no swap accounting,
/// `memory.oom.group` before 4.19) are skipped.
pub fn write_limits(
    dir: &Path,
    limits: Limits,
    cpu: bool,
    memory: bool,
) -> Result<(), CgroupError> {
    let mut files: Vec<(&str, String, bool)> = Vec::new();
    if cpu {
        files.push(("cpu.max", cpu_max(limits.cpu_milli), true));
    }
    if memory {
        let max = match limits.memory_mib {
            0 => "max".to_string(),
            mib => (mib * 1024 * 1024).to_string(),
        };
        files.push(("memory.max", max, true));
        files.push(("memory.swap.max", "0".into(), false));
        files.push(("memory.oom.group", "1".into(), false));
    }
    for (name, value, required) in files {
        let path = dir.join(name);
        if !required && !path.exists() {
            continue;
        }
        fs::write(&path, &value).map_err(|source| CgroupError::Io { path, source })?;
    }
    Ok(())
}

/// Process ids in a cgroup.
pub fn procs(dir: &Path) -> io::Result<Vec<i32>> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Whether a cgroup (or a descendant) holds a process; a missing cgroup holds none.
pub fn populated(dir: &Path) -> io::Result<bool> {
    match fs::read_to_string(dir.join("cgroup.events")) {
        Ok(text) => Ok(text.lines().any(|l| l.trim() == "populated 1")),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// SIGKILLs every process in a cgroup: `cgroup.kill` where the kernel has it, otherwise
/// rounds of reading `cgroup.procs` and killing.
pub fn kill_all(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let kill = dir.join("cgroup.kill");
    if kill.exists() {
        return match fs::write(kill, "1") {
            // Removed meanwhile: nothing left to kill.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        };
    }
    for _ in 0..KILL_ROUNDS_MAX {
        let pids = procs(dir)?;
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            super::proc::kill(pid, libc::SIGKILL)?;
        }
    }
    Ok(())
}

/// Sends `signal` to every process in a cgroup (one pass).
pub fn signal_all(dir: &Path, signal: i32) -> io::Result<()> {
    for pid in procs(dir)? {
        super::proc::kill(pid, signal)?;
    }
    Ok(())
}

/// Kills everything in a cgroup and waits, at most `timeout`, until it is empty. Returns
/// whether it emptied.
pub fn kill_and_wait(dir: &Path, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if !populated(dir)? {
            return Ok(true);
        }
        kill_all(dir)?;
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `oom_kill` count of `memory.events`; `None` without the memory controller.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join("memory.events")).ok()?;
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Removes an empty cgroup; a missing one is fine. Fails with `EBUSY` while it holds
/// processes.
pub fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_values() {
        assert_eq!(cpu_max(0), "max 100000");
        assert_eq!(cpu_max(1000), "100000 100000");
        assert_eq!(cpu_max(2500), "250000 100000");
        assert_eq!(cpu_max(1), "1000 100000");
    }

    #[test]
    fn limits_files() {
        // A plain directory stands in for a cgroup: the files are written as the kernel
        // would receive them.
        let dir = tempfile::tempdir().unwrap();
        for name in ["cpu.max", "memory.max", "memory.swap.max"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let limits = Limits {
            cpu_milli: 1500,
            memory_mib: 64,
        };
        write_limits(dir.path(), limits, true, true).unwrap();
        let read = |n: &str| fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "0");
        // Optional files the kernel does not offer are skipped.
        assert!(!dir.path().join("memory.oom.group").exists());
    }

    #[test]
    fn mountinfo() {
        let text = "25 1 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw\n\
                    30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            mountinfo_cgroup2(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mountinfo_cgroup2("1 2 3:4 / / rw - ext4 /dev/x rw\n"), None);
    }

    #[test]
    fn events_parsing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(oom_kills(dir.path()), None);
        fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\noom_group_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), Some(2));
        assert!(!populated(dir.path()).unwrap());
        fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(populated(dir.path()).unwrap());
        assert!(!populated(&dir.path().join("missing")).unwrap());
    }
}
