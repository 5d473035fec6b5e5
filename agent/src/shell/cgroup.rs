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
//!
//! **Hybrid hosts** (systemd's "hybrid" layout, still common on RHEL 8 and older Ubuntu LTS)
//! mount cgroup v2 without controllers and bind `cpu` and `memory` to cgroup v1 hierarchies.
//! There the agent keeps the v2 cgroup for tracking and killing (`cgroup.events`,
//! `cgroup.kill`) and puts each task, in the same fork, into a same-named cgroup of each v1
//! hierarchy that holds a missing controller (the approach of Slurm's `cgroup/v1` plugin):
//!
//! ```text
//! <memory v1 mount>/<root name>/job-<job>-<rank>/   memory.limit_in_bytes,
//!                                                  memory.memsw.limit_in_bytes (no swap),
//!                                                  OOM kills from memory.oom_control
//! <cpu v1 mount>/<root name>/job-<job>-<rank>/      cpu.cfs_quota_us / cpu.cfs_period_us
//! ```
//!
//! [`Enforce::BestEffort`] accepts a root where a controller is in neither hierarchy: tasks
//! are still tracked and killed through their cgroup, but that limit is not enforced.

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
        "cgroup at {} lacks the {missing} controller{plural}{hint}; limits cannot be \
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
    /// On a hybrid host: the root's twin in the cgroup v1 `memory` hierarchy.
    pub v1_memory: Option<PathBuf>,
    /// On a hybrid host: the root's twin in the cgroup v1 `cpu` hierarchy.
    pub v1_cpu: Option<PathBuf>,
}

/// The cgroups of one task: its v2 cgroup and, on a hybrid host, its v1 twins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCgroups {
    /// The v2 cgroup (tracking, kill, and limits where v2 has the controllers).
    pub path: PathBuf,
    /// Its v1 twins (memory and/or cpu), joined in the same fork.
    pub v1: Vec<PathBuf>,
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

/// Where the cgroup v1 hierarchy holding `controller` is mounted (a hybrid host).
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo_v1(&text, controller)
}

/// The mount point of the cgroup v1 hierarchy holding `controller` in a mountinfo text.
pub fn mountinfo_v1(text: &str, controller: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = right.split_whitespace();
        let fstype = fields.next()?;
        let opts = fields.nth(1)?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup" && opts.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(unescape_mount(mount_point)))
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
    // The nearest existing ancestor decides the filesystem; missing ones are created below.
    let probe = path
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
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

    ensure_ancestors(parent)?;

    // Which controllers the parent can hand down, and that it does.
    let available_path = parent.join("cgroup.controllers");
    let available = read_words(&available_path).map_err(io_err(&available_path))?;
    let missing_v2: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.iter().any(|a| a == c))
        .collect();
    // A hybrid host: controllers v2 lacks come from their v1 hierarchies.
    let name = path.file_name().ok_or_else(|| CgroupError::NotCgroup2 {
        path: path.to_path_buf(),
        hint: String::new(),
    })?;
    let mut v1 = [None, None];
    let mut v1_errors = Vec::new();
    for (slot, controller) in v1.iter_mut().zip(CONTROLLERS) {
        if !missing_v2.contains(&controller) {
            continue;
        }
        let Some(mount) = v1_mount(controller) else {
            continue;
        };
        // The same place in the v1 hierarchy as in v2.
        let relative = cgroup2_mount()
            .and_then(|m| path.strip_prefix(m).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(name));
        let twin = mount.join(relative);
        match open_v1_root(&twin, controller) {
            Ok(()) => *slot = Some(twin),
            Err(e) => v1_errors.push(e),
        }
    }
    let [v1_cpu, v1_memory] = v1;
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .zip([&v1_cpu, &v1_memory])
        .filter(|(c, twin)| missing_v2.contains(c) && twin.is_none())
        .map(|(c, _)| c)
        .collect();
    if !missing.is_empty() && enforce == Enforce::Required {
        if let Some(e) = v1_errors.into_iter().next() {
            return Err(e);
        }
        return Err(CgroupError::MissingControllers {
            path: parent.to_path_buf(),
            missing: missing.join(" and "),
            hint: " (enable them in the parent's cgroup.subtree_control)".to_string(),
        });
    }
    let missing = missing_v2;
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
        v1_memory,
        v1_cpu,
    })
}

/// Creates the missing cgroups down to `dir`, each handing down the controllers its parent
/// has (so `<mount>/sovra.slice/demo-n1` works on a fresh host).
fn ensure_ancestors(dir: &Path) -> Result<(), CgroupError> {
    if dir.exists() {
        return Ok(());
    }
    let parent = dir.parent().ok_or_else(|| CgroupError::NotCgroup2 {
        path: dir.to_path_buf(),
        hint: String::new(),
    })?;
    ensure_ancestors(parent)?;
    let available_path = parent.join("cgroup.controllers");
    let available = read_words(&available_path).map_err(io_err(&available_path))?;
    let wanted: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| available.iter().any(|a| a == c))
        .collect();
    enable_controllers(parent, &wanted, Enforce::BestEffort)?;
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::NotWritable {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes an agent's cgroup root once nothing runs in it: its empty task cgroups, the
/// supervisors' cgroup, the root, and its v1 twins. Fails with `EBUSY` while a process is
/// left (nothing is killed).
pub fn remove_root(root: &CgroupRoot) -> io::Result<()> {
    for dir in
        std::iter::once(&root.path).chain([&root.v1_memory, &root.v1_cpu].into_iter().flatten())
    {
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&entry.path())?;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        remove(dir)?;
    }
    Ok(())
}

/// Creates (or reuses) the root's twin in a v1 hierarchy and checks the files the agent
/// writes there.
fn open_v1_root(twin: &Path, controller: &str) -> Result<(), CgroupError> {
    match fs::create_dir_all(twin) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(CgroupError::NotWritable {
                path: twin.to_path_buf(),
                source,
            })
        }
    }
    let needed = match controller {
        "memory" => "memory.limit_in_bytes",
        _ => "cpu.cfs_quota_us",
    };
    if !twin.join(needed).exists() {
        return Err(CgroupError::MissingControllers {
            path: twin.to_path_buf(),
            missing: controller.to_string(),
            hint: format!(" ({needed} is absent from its cgroup v1 hierarchy)"),
        });
    }
    if controller == "memory" {
        // Children account into the root (the default on kernels since 5.x; set it on older
        // ones so the root's own limits, if any, hold).
        let hierarchy = twin.join("memory.use_hierarchy");
        if fs::read_to_string(&hierarchy).is_ok_and(|v| v.trim() == "0") {
            let _ = fs::write(&hierarchy, "1");
        }
    }
    Ok(())
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

    /// The task's cgroups in the v1 hierarchies, on a hybrid host (memory first).
    pub fn task_v1_paths(&self, task: TaskId) -> Vec<PathBuf> {
        [&self.v1_memory, &self.v1_cpu]
            .into_iter()
            .flatten()
            .map(|twin| twin.join(format!("job-{task}")))
            .collect()
    }

    /// Whether memory limits are enforced (v2 or v1).
    pub fn memory_enforced(&self) -> bool {
        self.memory || self.v1_memory.is_some()
    }

    /// Whether CPU limits are enforced (v2 or v1).
    pub fn cpu_enforced(&self) -> bool {
        self.cpu || self.v1_cpu.is_some()
    }

    /// Creates a task's cgroups with its limits. A leftover empty cgroup of the same name is
    /// replaced (its counters would mislead); one holding processes is an error.
    pub fn create_task(&self, task: TaskId, limits: Limits) -> Result<TaskCgroups, CgroupError> {
        let path = self.task_path(task);
        let v1 = self.task_v1_paths(task);
        for dir in std::iter::once(&path).chain(&v1) {
            if dir.exists() {
                let busy = if dir == &path {
                    populated(dir).map_err(io_err(dir))?
                } else {
                    !procs(dir).map_err(io_err(dir))?.is_empty()
                };
                if busy {
                    return Err(CgroupError::Busy { path: dir.clone() });
                }
                remove(dir).map_err(io_err(dir))?;
            }
            fs::create_dir(dir).map_err(io_err(dir))?;
        }
        write_limits(&path, limits, self.cpu, self.memory)?;
        if let Some(twin) = &self.v1_memory {
            write_v1_memory(&twin.join(format!("job-{task}")), limits.memory_mib)?;
        }
        if let Some(twin) = &self.v1_cpu {
            write_v1_cpu(&twin.join(format!("job-{task}")), limits.cpu_milli)?;
        }
        Ok(TaskCgroups { path, v1 })
    }
}

/// Writes a v1 memory cgroup's limit: `memory.limit_in_bytes` and, where swap is accounted,
/// the same `memory.memsw.limit_in_bytes` (memory plus swap: no swap). OOM kills the task
/// rather than freezing it (`memory.oom_control` 0).
pub fn write_v1_memory(dir: &Path, memory_mib: u64) -> Result<(), CgroupError> {
    let value = match memory_mib {
        0 => "-1".to_string(),
        mib => (mib * 1024 * 1024).to_string(),
    };
    let write = |name: &str, value: &str| {
        let path = dir.join(name);
        fs::write(&path, value).map_err(|source| CgroupError::Io { path, source })
    };
    // memsw must stay at or above limit_in_bytes: raise the limit first.
    write("memory.limit_in_bytes", &value)?;
    if dir.join("memory.memsw.limit_in_bytes").exists() {
        write("memory.memsw.limit_in_bytes", &value)?;
    }
    if dir.join("memory.oom_control").exists() {
        write("memory.oom_control", "0")?;
    }
    Ok(())
}

/// Writes a v1 cpu cgroup's CFS quota (the same values as [`cpu_max`]; -1 is unlimited).
pub fn write_v1_cpu(dir: &Path, cpu_milli: u64) -> Result<(), CgroupError> {
    let quota = match cpu_milli {
        0 => "-1".to_string(),
        m => (m * CPU_PERIOD_US / 1000).max(1000).to_string(),
    };
    for (name, value) in [
        ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
        ("cpu.cfs_quota_us", quota),
    ] {
        let path = dir.join(name);
        fs::write(&path, value).map_err(|source| CgroupError::Io { path, source })?;
    }
    Ok(())
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

/// The `oom_kill` count of a cgroup: `memory.events` in v2, `memory.oom_control` in v1;
/// `None` without the memory controller.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join("memory.events"))
        .or_else(|_| fs::read_to_string(dir.join("memory.oom_control")))
        .ok()?;
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// The OOM kills of a task: its v2 cgroup and its v1 twins together; `None` when none of
/// them has the memory controller.
pub fn task_oom_kills(path: Option<&Path>, v1: &[PathBuf]) -> Option<u64> {
    path.into_iter()
        .chain(v1.iter().map(PathBuf::as_path))
        .filter_map(oom_kills)
        .reduce(|a, b| a + b)
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
    fn hybrid_mounts_and_v1_files() {
        let text = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            mountinfo_v1(text, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            mountinfo_v1(text, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(mountinfo_v1(text, "pids"), None);

        let dir = tempfile::tempdir().unwrap();
        for name in [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        write_v1_memory(dir.path(), 64).unwrap();
        write_v1_cpu(dir.path(), 1500).unwrap();
        let read = |n: &str| fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu.cfs_period_us"), "100000");
        write_v1_memory(dir.path(), 0).unwrap();
        write_v1_cpu(dir.path(), 0).unwrap();
        assert_eq!(read("memory.limit_in_bytes"), "-1");
        assert_eq!(read("cpu.cfs_quota_us"), "-1");

        // v1 OOM kills come from memory.oom_control; a task sums its cgroups.
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), Some(3));
        let none = dir.path().join("none");
        assert_eq!(task_oom_kills(Some(&none), &[dir.path().into()]), Some(3));
        assert_eq!(task_oom_kills(Some(&none), &[]), None);
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
