//! `sbatch`, `srun` and `salloc` option parsing: the command line, `#SBATCH` lines of the
//! script, `SBATCH_*` (`SLURM_*`, `SALLOC_*`) variables, with Slurm 22.05's precedence, texts
//! and exit codes.
//!
//! Where the semantics come from (Slurm 22.05 sources):
//! - the option table, `getopt_long` behaviour (long options, unambiguous prefixes, bundled
//!   short options, `+` = stop at the first non-option) and per-option setters:
//!   `src/common/slurm_opt.c`; an option error ends the command with `exit(-1)`, i.e. 255
//!   (`slurm_process_option_or_exit`);
//! - the two passes, script reading and checks, `--wrap`: `src/sbatch/sbatch.c`
//!   (`_get_script_buffer`, `_script_wrap`) and `src/sbatch/opt.c`
//!   (`process_options_first_pass`, `_opt_batch_script`, `_get_argument`, `env_vars[]`);
//!   their errors exit with `error_exit`, 1;
//! - numbers, memory and node counts: `src/common/proc_args.c` (`parse_int`,
//!   `str_to_mbytes`, `verify_node_count`, `get_signal_opts`, `parse_mail_type`);
//! - job arrays and dependencies are checked by slurmctld (`_valid_array_inx`,
//!   `_parse_array_tok` in `job_mgr.c`, `update_job_dependency` in `job_scheduler.c`); we
//!   check them here and answer with the server's texts (`Batch job submission failed: ...`);
//! - output file patterns: `src/slurmd/slurmstepd/fname.c` (`fname_create`).
//!
//! Precedence is Slurm's order of application, each later source overriding: `#SBATCH`
//! lines, then environment variables, then the command line (`process_options_second_pass`).
//! As in Slurm, an invalid value in an earlier source is still an error even when a later
//! source overrides it.
//!
//! Everything here is pure: the environment comes in as a map, files (the script, `-w`/`-x`
//! host files) through a reader closure (`None` = standard input), and "now" for `--begin`
//! as a [`Clock`].

use std::collections::BTreeMap;
use std::path::Path;

use sovra_fabric::slurm::hostlist;

use super::model::Output;
use super::time;

/// Exit code of an option error: Slurm calls `exit(-1)`.
pub const EXIT_OPTION: u8 = 255;
/// Exit code of other client errors (`error_exit` in sbatch) and of a rejected submission.
pub const EXIT_ERROR: u8 = 1;
/// slurmctld's `MaxArraySize` default: array indices must be below it.
pub const MAX_ARRAY_SIZE: u32 = 1001;
/// The server's text for an unknown partition (`ESLURM_INVALID_PARTITION_NAME`).
pub const INVALID_PARTITION: &str = "Invalid partition name specified";
/// The server's text for a bad `--array` (`ESLURM_INVALID_ARRAY`).
pub const INVALID_ARRAY: &str = "Invalid job array specification";
/// The server's text for a bad or unsatisfiable `--dependency` (`ESLURM_DEPENDENCY`).
pub const DEPENDENCY_PROBLEM: &str = "Job dependency problem";
/// The server's text for a bad `--gres`/`--gpus*` (`ESLURM_INVALID_GRES`).
pub const INVALID_GRES: &str = "Invalid generic resource (gres) specification";
/// The server's text for an unknown node in `-w`/`-x` (`ESLURM_INVALID_NODE_NAME`).
pub const INVALID_NODE_NAME: &str = "Invalid node name specified";
/// What `--version` claims: the Slurm release whose behaviour the shim copies.
pub const SLURM_VERSION: &str = "22.05.11";
/// Slurm's `NO_VAL`, which `%a` prints for a job that is not an array task (fname.c).
const NO_VAL: u32 = 0xffff_fffe;

/// Which command is parsing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cmd {
    /// `sbatch`: a script, `#SBATCH` lines, `SBATCH_*` variables.
    #[default]
    Sbatch,
    /// `srun`: a command, `SLURM_*` input variables.
    Srun,
    /// `salloc`: an optional command, `SALLOC_*` variables.
    Salloc,
}

impl Cmd {
    /// The program name Slurm prints in messages.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Sbatch => "sbatch",
            Cmd::Srun => "srun",
            Cmd::Salloc => "salloc",
        }
    }

    fn mask(self) -> u8 {
        match self {
            Cmd::Sbatch => SB,
            Cmd::Srun => SR,
            Cmd::Salloc => SA,
        }
    }
}

/// A failure: the full stderr text (one or more lines, each ending in `\n`) and exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmError {
    /// Everything to write to stderr.
    pub text: String,
    /// The process exit code.
    pub code: u8,
}

impl SlurmError {
    fn error(cmd: Cmd, msg: &str, code: u8) -> SlurmError {
        SlurmError {
            text: format!("{}: error: {msg}\n", cmd.name()),
            code,
        }
    }

    fn fatal(cmd: Cmd, msg: &str) -> SlurmError {
        SlurmError {
            text: format!("{}: fatal: {msg}\n", cmd.name()),
            code: EXIT_ERROR,
        }
    }
}

/// The error slurmctld's rejection produces on the client, exit 1: `sbatch: error: Batch job
/// submission failed: <reason>`, `srun: error: Unable to allocate resources: <reason>`,
/// `salloc: error: Job submit/allocate failed: <reason>` (sbatch.c, srun's allocate.c,
/// salloc.c). The glue uses it with [`INVALID_PARTITION`] and the like.
pub fn submission_failed(cmd: Cmd, reason: &str) -> SlurmError {
    let lead = match cmd {
        Cmd::Sbatch => "Batch job submission failed",
        Cmd::Srun => "Unable to allocate resources",
        Cmd::Salloc => "Job submit/allocate failed",
    };
    SlurmError::error(cmd, &format!("{lead}: {reason}"), EXIT_ERROR)
}

/// "Now" for `--begin`: Unix seconds and the local offset from UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds.
    pub now: i64,
    /// Local time minus UTC, in seconds.
    pub utc_offset_secs: i32,
}

/// `-N/--nodes=min[-max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeCount {
    /// Minimum node count.
    pub min: u32,
    /// Maximum node count; `None` when not given (Slurm's 0).
    pub max: Option<u32>,
}

/// A GPU count with an optional type: `-G/--gpus`, `--gpus-per-node`, `--gpus-per-task`
/// (`[type:]count`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuSpec {
    /// GPU type, e.g. `a100`.
    pub kind: Option<String>,
    /// How many.
    pub count: u32,
}

/// One `--gres` item: `name[:type][:count]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GresSpec {
    /// Resource name, e.g. `gpu`.
    pub name: String,
    /// Type, e.g. `a100`.
    pub kind: Option<String>,
    /// Count per node (default 1).
    pub count: u64,
}

/// The memory request; Slurm allows one of the three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// `--mem`, MiB per node; 0 asks for all of each node's memory.
    Node(u64),
    /// `--mem-per-cpu`, MiB.
    Cpu(u64),
    /// `--mem-per-gpu`, MiB.
    Gpu(u64),
}

/// `--exclusive[=user|mcs]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusive {
    /// Whole nodes, shared with no other job.
    Node,
    /// Nodes shared only with the user's own jobs.
    User,
    /// Nodes shared only with jobs of the same MCS label.
    Mcs,
}

/// `--time`: a limit or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLimit {
    /// `UNLIMITED`, `INFINITE`, `-1` or `0`.
    Unlimited,
    /// A limit in minutes.
    Minutes(u64),
}

/// `-a/--array`: validated as slurmctld does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArraySpec {
    /// The text as given (`0-15:4%2`).
    pub text: String,
    /// The indices, ascending and unique, each below [`MAX_ARRAY_SIZE`].
    pub indices: Vec<u32>,
    /// `%N`: at most this many tasks run at once.
    pub throttle: Option<u32>,
}

/// A dependency type (`-d type:job...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependencyKind {
    /// `after`: the job started (or was cancelled), plus `delay_min`.
    After,
    /// `afterany`: the job ended.
    AfterAny,
    /// `afterok`: the job ended with exit code 0.
    AfterOk,
    /// `afternotok`: the job failed.
    AfterNotOk,
    /// `aftercorr`: the same-index task of the array ended successfully.
    AfterCorr,
    /// `afterburstbuffer`: the job ended and its burst-buffer stage-out is done.
    AfterBurstBuffer,
}

/// One `type:job[_task][+minutes]` term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The condition.
    pub kind: DependencyKind,
    /// The job (for an array, its array job id).
    pub job: u64,
    /// One array task (`N_M`); `None` for the whole job or array (`N`, `N_*`).
    pub task: Option<u32>,
    /// `+time` after `after:`, in minutes.
    pub delay_min: u32,
}

/// `-d/--dependency`: terms joined by `,` (all must hold) or `?` (any may).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyExpr {
    /// The text as given (shown by `scontrol show job`).
    pub text: String,
    /// `true` for `,` (all), `false` for `?` (any).
    pub all: bool,
    /// The job terms.
    pub deps: Vec<Dependency>,
    /// `singleton`: no other job of this name and user runs.
    pub singleton: bool,
}

/// The base of `--export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportBase {
    /// `ALL`: the whole submission environment.
    All,
    /// `NONE`, or a variable list without `ALL`: only `SLURM_*` and the listed variables.
    None,
    /// `NIL`: nothing, not even the user's login environment.
    Nil,
}

/// `--export`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// What is propagated besides `vars`.
    pub base: ExportBase,
    /// `VAR` (take its value from the environment) or `VAR=value`.
    pub vars: Vec<(String, Option<String>)>,
}

/// `--priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// `TOP`.
    Top,
    /// A number.
    Value(u32),
}

/// `--open-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// `append`.
    Append,
    /// `truncate`.
    Truncate,
}

/// `--signal=[{R|B}:]sig[@secs]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalSpec {
    /// Signal number.
    pub signal: u16,
    /// Seconds before the time limit (default 60).
    pub secs: u16,
    /// `B:`: signal only the batch shell.
    pub batch_only: bool,
    /// `R:`: also when a reservation ends.
    pub reservation: bool,
}

/// A parsed `sbatch`/`srun`/`salloc` request. `None` means "not given"; the glue applies
/// sovra's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchRequest {
    /// Which command made it.
    pub cmd: Cmd,
    /// sbatch: the script text (`--wrap`'s generated one included); `None` for srun/salloc.
    pub script: Option<String>,
    /// sbatch: the script's path as given; `None` when read from stdin or made by `--wrap`.
    pub script_path: Option<String>,
    /// sbatch: the script's arguments; srun/salloc: the command and its arguments.
    pub args: Vec<String>,
    /// `--wrap` command.
    pub wrap: Option<String>,
    /// `-N/--nodes`.
    pub nodes: Option<NodeCount>,
    /// `-n/--ntasks`.
    pub ntasks: Option<u32>,
    /// `-c/--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--ntasks-per-node`.
    pub ntasks_per_node: Option<u32>,
    /// `-G/--gpus` (for the whole job).
    pub gpus: Option<GpuSpec>,
    /// `--gpus-per-node`.
    pub gpus_per_node: Option<GpuSpec>,
    /// `--gpus-per-task`.
    pub gpus_per_task: Option<GpuSpec>,
    /// `--gres` items (empty for none or `--gres=none`).
    pub gres: Vec<GresSpec>,
    /// `-t/--time`.
    pub time_limit: Option<TimeLimit>,
    /// `-p/--partition`: one or more, in order of preference.
    pub partitions: Vec<String>,
    /// `-A/--account`.
    pub account: Option<String>,
    /// `-q/--qos`.
    pub qos: Option<String>,
    /// `-C/--constraint` as given.
    pub constraint: Option<String>,
    /// `-w/--nodelist`, expanded (from a file when the value contains `/`).
    pub nodelist: Vec<String>,
    /// `-x/--exclude`, expanded likewise.
    pub exclude: Vec<String>,
    /// `--mem`, `--mem-per-cpu` or `--mem-per-gpu`.
    pub memory: Option<Memory>,
    /// `--exclusive`.
    pub exclusive: Option<Exclusive>,
    /// `-a/--array`.
    pub array: Option<ArraySpec>,
    /// `-d/--dependency`.
    pub dependency: Option<DependencyExpr>,
    /// `-J/--job-name`.
    pub job_name: Option<String>,
    /// `-o/--output` pattern (`none` becomes `/dev/null`).
    pub output: Option<String>,
    /// `-e/--error` pattern.
    pub error: Option<String>,
    /// `-i/--input` pattern.
    pub input: Option<String>,
    /// `--export`.
    pub export: Option<ExportSpec>,
    /// `--test-only`.
    pub test_only: bool,
    /// `-H/--hold`.
    pub hold: bool,
    /// `-D/--chdir` as given.
    pub chdir: Option<String>,
    /// `-b/--begin`, Unix seconds.
    pub begin: Option<i64>,
    /// `--nice` (100 when given without a value).
    pub nice: Option<i32>,
    /// `--priority`.
    pub priority: Option<Priority>,
    /// `--comment`.
    pub comment: Option<String>,
    /// `--requeue` (`Some(true)`) or `--no-requeue` (`Some(false)`).
    pub requeue: Option<bool>,
    /// `--parsable`: print `jobid[;cluster]` only.
    pub parsable: bool,
    /// `-Q/--quiet`.
    pub quiet: bool,
    /// `-v/--verbose`, counted.
    pub verbose: u8,
    /// `--mail-type` values, upper case (`BEGIN`, `END`, ...).
    pub mail_type: Vec<String>,
    /// `--mail-user`.
    pub mail_user: Option<String>,
    /// `--signal`.
    pub signal: Option<SignalSpec>,
    /// `--open-mode`.
    pub open_mode: Option<OpenMode>,
    /// sbatch `-W/--wait`: wait for the job to end; srun `-W/--wait=<secs>` is in `other`.
    pub wait: bool,
    /// Slurm options sovra accepts but does not model, by long name, in order given
    /// (e.g. `reservation`, `mpi`, `label`); the glue may warn about them.
    pub other: Vec<(String, Option<String>)>,
}

impl BatchRequest {
    /// The default output pattern when `-o` is not given: `slurm-%A_%a.out` for an array,
    /// else `slurm-%j.out` (sbatch man page, "filename pattern").
    pub fn default_output(&self) -> &'static str {
        if self.array.is_some() {
            "slurm-%A_%a.out"
        } else {
            "slurm-%j.out"
        }
    }
}

/// What parsing produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A request to submit.
    Request(Box<BatchRequest>),
    /// Informational output and nothing to submit (`--help`, `--usage`, `--version`,
    /// `--gres=help`).
    Info(Output),
}

/// Reads a file the request names; `None` is standard input.
pub type Reader<'a> = &'a dyn Fn(Option<&Path>) -> std::io::Result<Vec<u8>>;

// ---------------------------------------------------------------------------------------
// The option table (`common_options[]` in slurm_opt.c, restricted per command).

const SB: u8 = 1;
const SR: u8 = 2;
const SA: u8 = 4;
const ALL: u8 = SB | SR | SA;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

#[derive(Debug)]
struct OptDef {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    cmds: u8,
}

const fn o(long: &'static str, short: Option<char>, arg: Arg, cmds: u8) -> OptDef {
    OptDef {
        long,
        short,
        arg,
        cmds,
    }
}

use Arg::{No as N, Optional as Op, Required as R};

/// Slurm 22.05's long options for the three commands (slurm_opt.c), so that prefixes are
/// ambiguous exactly where they are in Slurm.
const OPTS: &[OptDef] = &[
    o("accel-bind", None, R, SR),
    o("account", Some('A'), R, ALL),
    o("acctg-freq", None, R, ALL),
    o("array", Some('a'), R, SB),
    o("batch", None, R, SB),
    o("bb", None, R, ALL),
    o("bbf", None, R, ALL),
    o("bcast", None, Op, SR),
    o("begin", Some('b'), R, ALL),
    o("bell", None, N, SA),
    o("chdir", Some('D'), R, ALL),
    o("cluster", None, R, ALL),
    o("cluster-constraint", None, R, ALL),
    o("clusters", Some('M'), R, ALL),
    o("comment", None, R, ALL),
    o("compress", None, Op, SR),
    o("constraint", Some('C'), R, ALL),
    o("container", None, R, ALL),
    o("contiguous", None, N, ALL),
    o("core-spec", Some('S'), R, ALL),
    o("cores-per-socket", None, R, ALL),
    o("cpu-bind", None, R, SR),
    o("cpu-freq", None, R, ALL),
    o("cpu_bind", None, R, SR),
    o("cpus-per-gpu", None, R, ALL),
    o("cpus-per-task", Some('c'), R, ALL),
    o("deadline", None, R, ALL),
    o("debugger-test", None, N, SR),
    o("delay-boot", None, R, ALL),
    o("dependency", Some('d'), R, ALL),
    o("disable-status", Some('X'), N, SR),
    o("distribution", Some('m'), R, ALL),
    o("epilog", None, R, SR),
    o("error", Some('e'), R, SB | SR),
    o("exact", None, N, SR),
    o("exclude", Some('x'), R, ALL),
    o("exclusive", None, Op, ALL),
    o("export", None, R, SB | SR),
    o("export-file", None, R, SB),
    o("extra-node-info", Some('B'), R, ALL),
    o("get-user-env", None, Op, SB | SA),
    o("gid", None, R, ALL),
    o("gpu-bind", None, R, ALL),
    o("gpu-freq", None, R, ALL),
    o("gpus", Some('G'), R, ALL),
    o("gpus-per-node", None, R, ALL),
    o("gpus-per-socket", None, R, ALL),
    o("gpus-per-task", None, R, ALL),
    o("gres", None, R, ALL),
    o("gres-flags", None, R, ALL),
    o("help", Some('h'), N, ALL),
    o("het-group", None, R, SR),
    o("hint", None, R, ALL),
    o("hold", Some('H'), N, ALL),
    o("ignore-pbs", None, N, SB),
    o("immediate", Some('I'), Op, SR | SA),
    o("input", Some('i'), R, SB | SR),
    o("jobid", None, R, SR),
    o("job-name", Some('J'), R, ALL),
    o("kill-command", Some('K'), Op, SA),
    o("kill-on-bad-exit", Some('K'), Op, SR),
    o("kill-on-invalid-dep", None, R, SB),
    o("label", Some('l'), N, SR),
    o("licenses", Some('L'), R, ALL),
    o("mail-type", None, R, ALL),
    o("mail-user", None, R, ALL),
    o("mcs-label", None, R, ALL),
    o("mem", None, R, ALL),
    o("mem-bind", None, R, ALL),
    o("mem-per-cpu", None, R, ALL),
    o("mem-per-gpu", None, R, ALL),
    o("mincpus", None, R, ALL),
    o("mpi", None, R, SR),
    o("multi-prog", None, N, SR),
    o("network", None, R, ALL),
    o("nice", None, Op, ALL),
    o("no-allocate", Some('Z'), N, SR),
    o("no-bell", None, N, SA),
    o("no-kill", Some('k'), Op, ALL),
    o("no-requeue", None, N, SB),
    o("no-shell", None, N, SA),
    o("nodefile", Some('F'), R, ALL),
    o("nodelist", Some('w'), R, ALL),
    o("nodes", Some('N'), R, ALL),
    o("ntasks", Some('n'), R, ALL),
    o("ntasks-per-core", None, R, ALL),
    o("ntasks-per-gpu", None, R, ALL),
    o("ntasks-per-node", None, R, ALL),
    o("ntasks-per-socket", None, R, ALL),
    o("open-mode", None, R, SB | SR),
    o("output", Some('o'), R, SB | SR),
    o("overcommit", Some('O'), N, ALL),
    o("overlap", None, N, SR),
    o("oversubscribe", Some('s'), N, ALL),
    o("parsable", None, N, SB),
    o("partition", Some('p'), R, ALL),
    o("power", None, R, ALL),
    o("prefer", None, R, ALL),
    o("preserve-env", Some('E'), N, SR),
    o("priority", None, R, ALL),
    o("profile", None, R, ALL),
    o("prolog", None, R, SR),
    o("propagate", None, Op, SB | SR),
    o("pty", None, N, SR),
    o("qos", Some('q'), R, ALL),
    o("quiet", Some('Q'), N, ALL),
    o("quit-on-interrupt", None, N, SR),
    o("reboot", None, N, ALL),
    o("relative", Some('r'), R, SR),
    o("requeue", None, N, SB),
    o("reservation", None, R, ALL),
    o("resv-ports", None, Op, SR),
    o("send-libs", None, Op, SR),
    o("signal", None, R, ALL),
    o("slurmd-debug", None, R, SR),
    o("sockets-per-node", None, R, ALL),
    o("spread-job", None, N, ALL),
    o("switches", None, R, ALL),
    o("task-epilog", None, R, SR),
    o("task-prolog", None, R, SR),
    o("test-only", None, N, SB | SR),
    o("thread-spec", None, R, ALL),
    o("threads", Some('T'), R, SR),
    o("threads-per-core", None, R, ALL),
    o("time", Some('t'), R, ALL),
    o("time-min", None, R, ALL),
    o("tmp", None, R, ALL),
    o("uid", None, R, ALL),
    o("unbuffered", Some('u'), N, SR),
    o("usage", Some('u'), N, SB | SA),
    o("use-min-nodes", None, N, ALL),
    o("verbose", Some('v'), N, ALL),
    o("version", Some('V'), N, ALL),
    o("wait", Some('W'), N, SB),
    o("wait", Some('W'), R, SR),
    o("wait-all-nodes", None, R, SB | SA),
    o("wckey", None, R, ALL),
    o("wrap", None, R, SB),
    o("x11", None, Op, SR | SA),
];

/// `SBATCH_*` input variables (`env_vars[]` in sbatch/opt.c), in Slurm's order.
const SBATCH_ENV: &[(&str, &str)] = &[
    ("SBATCH_ACCOUNT", "account"),
    ("SBATCH_ACCTG_FREQ", "acctg-freq"),
    ("SBATCH_ARRAY_INX", "array"),
    ("SBATCH_BATCH", "batch"),
    ("SBATCH_CLUSTERS", "clusters"),
    ("SLURM_CLUSTERS", "clusters"),
    ("SBATCH_CLUSTER_CONSTRAINT", "cluster-constraint"),
    ("SBATCH_CONSTRAINT", "constraint"),
    ("SBATCH_CONTAINER", "container"),
    ("SBATCH_CORE_SPEC", "core-spec"),
    ("SBATCH_CPUS_PER_GPU", "cpus-per-gpu"),
    ("SBATCH_DEBUG", "verbose"),
    ("SBATCH_DELAY_BOOT", "delay-boot"),
    ("SBATCH_DISTRIBUTION", "distribution"),
    ("SBATCH_ERROR", "error"),
    ("SBATCH_EXCLUSIVE", "exclusive"),
    ("SBATCH_EXPORT", "export"),
    ("SBATCH_GET_USER_ENV", "get-user-env"),
    ("SBATCH_GPU_BIND", "gpu-bind"),
    ("SBATCH_GPU_FREQ", "gpu-freq"),
    ("SBATCH_GPUS", "gpus"),
    ("SBATCH_GPUS_PER_NODE", "gpus-per-node"),
    ("SBATCH_GPUS_PER_SOCKET", "gpus-per-socket"),
    ("SBATCH_GPUS_PER_TASK", "gpus-per-task"),
    ("SBATCH_GRES", "gres"),
    ("SBATCH_GRES_FLAGS", "gres-flags"),
    ("SLURM_HINT", "hint"),
    ("SBATCH_HINT", "hint"),
    ("SBATCH_IGNORE_PBS", "ignore-pbs"),
    ("SBATCH_INPUT", "input"),
    ("SBATCH_JOB_NAME", "job-name"),
    ("SBATCH_MEM_BIND", "mem-bind"),
    ("SBATCH_MEM_PER_CPU", "mem-per-cpu"),
    ("SBATCH_MEM_PER_GPU", "mem-per-gpu"),
    ("SBATCH_MEM_PER_NODE", "mem"),
    ("SBATCH_NETWORK", "network"),
    ("SBATCH_NO_KILL", "no-kill"),
    ("SBATCH_NO_REQUEUE", "no-requeue"),
    ("SBATCH_OPEN_MODE", "open-mode"),
    ("SBATCH_OUTPUT", "output"),
    ("SBATCH_OVERCOMMIT", "overcommit"),
    ("SBATCH_PARTITION", "partition"),
    ("SBATCH_POWER", "power"),
    ("SBATCH_PROFILE", "profile"),
    ("SBATCH_QOS", "qos"),
    ("SBATCH_REQ_SWITCH", "switches"),
    ("SBATCH_REQUEUE", "requeue"),
    ("SBATCH_RESERVATION", "reservation"),
    ("SBATCH_SIGNAL", "signal"),
    ("SBATCH_SPREAD_JOB", "spread-job"),
    ("SBATCH_THREAD_SPEC", "thread-spec"),
    ("SBATCH_THREADS_PER_CORE", "threads-per-core"),
    ("SBATCH_TIMELIMIT", "time"),
    ("SBATCH_USE_MIN_NODES", "use-min-nodes"),
    ("SBATCH_WAIT", "wait"),
    ("SBATCH_WAIT_ALL_NODES", "wait-all-nodes"),
    ("SBATCH_WCKEY", "wckey"),
];

/// srun's `SLURM_*` input variables (`env_vars[]` in srun/libsrun/opt.c), the common ones.
const SRUN_ENV: &[(&str, &str)] = &[
    ("SLURM_ACCOUNT", "account"),
    ("SLURM_ACCTG_FREQ", "acctg-freq"),
    ("SLURM_CLUSTERS", "clusters"),
    ("SLURM_CONSTRAINT", "constraint"),
    ("SLURM_CORE_SPEC", "core-spec"),
    ("SLURM_CPUS_PER_GPU", "cpus-per-gpu"),
    ("SLURM_CPUS_PER_TASK", "cpus-per-task"),
    ("SLURM_CPU_BIND", "cpu-bind"),
    ("SLURM_DEBUG", "verbose"),
    ("SLURM_DEPENDENCY", "dependency"),
    ("SLURM_DISTRIBUTION", "distribution"),
    ("SLURM_EXACT", "exact"),
    ("SLURM_EXCLUSIVE", "exclusive"),
    ("SLURM_EXPORT_ENV", "export"),
    ("SLURM_GPU_BIND", "gpu-bind"),
    ("SLURM_GPUS", "gpus"),
    ("SLURM_GPUS_PER_NODE", "gpus-per-node"),
    ("SLURM_GPUS_PER_TASK", "gpus-per-task"),
    ("SLURM_GRES", "gres"),
    ("SLURM_GRES_FLAGS", "gres-flags"),
    ("SLURM_HINT", "hint"),
    ("SLURM_JOB_ID", "jobid"),
    ("SLURM_JOB_NAME", "job-name"),
    ("SLURM_KILL_BAD_EXIT", "kill-on-bad-exit"),
    ("SLURM_LABELIO", "label"),
    ("SLURM_MEM_BIND", "mem-bind"),
    ("SLURM_MEM_PER_CPU", "mem-per-cpu"),
    ("SLURM_MEM_PER_GPU", "mem-per-gpu"),
    ("SLURM_MEM_PER_NODE", "mem"),
    ("SLURM_MPI_TYPE", "mpi"),
    ("SLURM_NETWORK", "network"),
    ("SLURM_NNODES", "nodes"),
    ("SLURM_NO_KILL", "no-kill"),
    ("SLURM_NPROCS", "ntasks"),
    ("SLURM_NTASKS", "ntasks"),
    ("SLURM_NTASKS_PER_NODE", "ntasks-per-node"),
    ("SLURM_OPEN_MODE", "open-mode"),
    ("SLURM_OVERCOMMIT", "overcommit"),
    ("SLURM_OVERLAP", "overlap"),
    ("SLURM_PARTITION", "partition"),
    ("SLURM_QOS", "qos"),
    ("SLURM_RESERVATION", "reservation"),
    ("SLURM_SIGNAL", "signal"),
    ("SLURM_STDERRMODE", "error"),
    ("SLURM_STDINMODE", "input"),
    ("SLURM_STDOUTMODE", "output"),
    ("SLURM_THREADS", "threads"),
    ("SLURM_TIMELIMIT", "time"),
    ("SLURM_UNBUFFEREDIO", "unbuffered"),
    ("SLURM_WAIT", "wait"),
    ("SLURM_WCKEY", "wckey"),
    ("SLURM_WORKING_DIR", "chdir"),
];

/// salloc's `SALLOC_*` input variables (`env_vars[]` in salloc/opt.c), the common ones.
const SALLOC_ENV: &[(&str, &str)] = &[
    ("SALLOC_ACCOUNT", "account"),
    ("SALLOC_ACCTG_FREQ", "acctg-freq"),
    ("SALLOC_BELL", "bell"),
    ("SALLOC_CLUSTERS", "clusters"),
    ("SLURM_CLUSTERS", "clusters"),
    ("SALLOC_CONSTRAINT", "constraint"),
    ("SALLOC_CORE_SPEC", "core-spec"),
    ("SALLOC_CPUS_PER_GPU", "cpus-per-gpu"),
    ("SALLOC_DEBUG", "verbose"),
    ("SALLOC_EXCLUSIVE", "exclusive"),
    ("SALLOC_GPU_BIND", "gpu-bind"),
    ("SALLOC_GPUS", "gpus"),
    ("SALLOC_GPUS_PER_NODE", "gpus-per-node"),
    ("SALLOC_GPUS_PER_TASK", "gpus-per-task"),
    ("SALLOC_GRES", "gres"),
    ("SALLOC_GRES_FLAGS", "gres-flags"),
    ("SALLOC_HINT", "hint"),
    ("SLURM_HINT", "hint"),
    ("SALLOC_IMMEDIATE", "immediate"),
    ("SALLOC_KILL_CMD", "kill-command"),
    ("SALLOC_MEM_BIND", "mem-bind"),
    ("SALLOC_MEM_PER_CPU", "mem-per-cpu"),
    ("SALLOC_MEM_PER_GPU", "mem-per-gpu"),
    ("SALLOC_MEM_PER_NODE", "mem"),
    ("SALLOC_NETWORK", "network"),
    ("SALLOC_NO_BELL", "no-bell"),
    ("SALLOC_NO_KILL", "no-kill"),
    ("SALLOC_OVERCOMMIT", "overcommit"),
    ("SALLOC_PARTITION", "partition"),
    ("SALLOC_QOS", "qos"),
    ("SALLOC_RESERVATION", "reservation"),
    ("SALLOC_SIGNAL", "signal"),
    ("SALLOC_TIMELIMIT", "time"),
    ("SALLOC_WAIT_ALL_NODES", "wait-all-nodes"),
    ("SALLOC_WCKEY", "wckey"),
];

fn env_table(cmd: Cmd) -> &'static [(&'static str, &'static str)] {
    match cmd {
        Cmd::Sbatch => SBATCH_ENV,
        Cmd::Srun => SRUN_ENV,
        Cmd::Salloc => SALLOC_ENV,
    }
}

fn opts_for(cmd: Cmd) -> impl Iterator<Item = &'static OptDef> {
    OPTS.iter().filter(move |d| d.cmds & cmd.mask() != 0)
}

fn def_by_long(cmd: Cmd, long: &str) -> Option<&'static OptDef> {
    opts_for(cmd).find(|d| d.long == long)
}

// ---------------------------------------------------------------------------------------
// getopt_long (glibc), with Slurm's "+" (stop at the first non-option).

/// One option occurrence: its definition and value.
#[derive(Debug)]
struct Token {
    def: &'static OptDef,
    value: Option<String>,
}

/// The getopt failure: glibc's message, then Slurm's hint, exit 255 (`arg_set__unknown_*`).
fn getopt_error(cmd: Cmd, msg: String) -> SlurmError {
    SlurmError {
        text: format!(
            "{}: {msg}\nTry \"{} --help\" for more information\n",
            cmd.name(),
            cmd.name()
        ),
        code: EXIT_OPTION,
    }
}

/// Splits `args` into option tokens and the index of the first operand.
fn getopt(cmd: Cmd, args: &[String]) -> Result<(Vec<Token>, usize), SlurmError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            return Ok((tokens, i + 1));
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let def = match_long(cmd, name, arg)?;
            let value = match def.arg {
                Arg::No => {
                    if inline.is_some() {
                        let msg = format!("option '--{}' doesn't allow an argument", def.long);
                        return Err(getopt_error(cmd, msg));
                    }
                    None
                }
                Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => Some(v.clone()),
                            None => {
                                let msg = format!("option '--{}' requires an argument", def.long);
                                return Err(getopt_error(cmd, msg));
                            }
                        }
                    }
                },
            };
            tokens.push(Token { def, value });
            i += 1;
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            let chars: Vec<char> = arg.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                let Some(def) = opts_for(cmd).find(|d| d.short == Some(c)) else {
                    return Err(getopt_error(cmd, format!("invalid option -- '{c}'")));
                };
                let rest: String = chars[k + 1..].iter().collect();
                match def.arg {
                    Arg::No => {
                        tokens.push(Token { def, value: None });
                        k += 1;
                        continue;
                    }
                    Arg::Optional => {
                        let value = (!rest.is_empty()).then_some(rest);
                        tokens.push(Token { def, value });
                    }
                    Arg::Required => {
                        let value = if !rest.is_empty() {
                            rest
                        } else {
                            i += 1;
                            match args.get(i) {
                                Some(v) => v.clone(),
                                None => {
                                    let msg = format!("option requires an argument -- '{c}'");
                                    return Err(getopt_error(cmd, msg));
                                }
                            }
                        };
                        tokens.push(Token {
                            def,
                            value: Some(value),
                        });
                    }
                }
                break;
            }
            i += 1;
            continue;
        }
        // "+": the first operand ends the options.
        return Ok((tokens, i));
    }
    Ok((tokens, args.len()))
}

/// glibc's long-option lookup: an exact name, else a unique prefix (several prefixes of
/// the same option, such as `cpu-bind`/`cpu_bind`, count as one).
fn match_long(cmd: Cmd, name: &str, arg: &str) -> Result<&'static OptDef, SlurmError> {
    if let Some(d) = opts_for(cmd).find(|d| d.long == name) {
        return Ok(d);
    }
    let cands: Vec<&OptDef> = if name.is_empty() {
        Vec::new()
    } else {
        opts_for(cmd).filter(|d| d.long.starts_with(name)).collect()
    };
    match cands.as_slice() {
        [] => Err(getopt_error(cmd, format!("unrecognized option '{arg}'"))),
        [one] => Ok(one),
        [first, rest @ ..] if rest.iter().all(|d| same_option(d, first)) => Ok(first),
        many => {
            let mut msg = format!("option '{arg}' is ambiguous; possibilities:");
            for d in many {
                msg.push_str(&format!(" '--{}'", d.long));
            }
            Err(getopt_error(cmd, msg))
        }
    }
}

fn same_option(a: &OptDef, b: &OptDef) -> bool {
    a.arg == b.arg && a.long.replace('_', "-") == b.long.replace('_', "-")
}

// ---------------------------------------------------------------------------------------
// The batch script.

/// `_get_script_buffer`'s checks (sbatch.c), in Slurm's order; exit 1.
fn check_script(bytes: &[u8]) -> Result<(), SlurmError> {
    let e = |m: &str| SlurmError::error(Cmd::Sbatch, m, EXIT_ERROR);
    let lines = |ls: &[&str]| SlurmError {
        text: ls.iter().map(|l| format!("sbatch: error: {l}\n")).collect(),
        code: EXIT_ERROR,
    };
    if bytes.is_empty() {
        return Err(e("Batch script is empty!"));
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(e("Batch script contains only whitespace!"));
    }
    if !bytes.starts_with(b"#!") {
        return Err(lines(&[
            "This does not look like a batch script.  The first",
            "line must start with #! followed by the path to an interpreter.",
            "For instance: #!/bin/sh",
        ]));
    }
    if bytes.contains(&0) {
        return Err(lines(&[
            "The Slurm controller does not allow scripts that",
            "contain a NULL character '\\0'.",
        ]));
    }
    if bytes.windows(2).any(|w| w == b"\r\n") {
        return Err(lines(&[
            "Batch script contains DOS line breaks (\\r\\n)",
            "instead of expected UNIX line breaks (\\n).",
        ]));
    }
    Ok(())
}

/// `_script_wrap` (sbatch.c).
pub fn wrap_script(command: &str) -> String {
    format!("#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{command}\n")
}

/// The `#SBATCH` words of a script (`_opt_batch_script` and `_get_argument` in sbatch/opt.c):
/// only lines starting exactly with `#SBATCH`, until the first line that is neither blank
/// nor a comment. Words split at blanks; quotes group, a backslash escapes the next
/// character, an unquoted `#` ends the line; no variable expansion.
fn script_directives(script: &str, file: &str) -> Result<Vec<String>, SlurmError> {
    let mut words = Vec::new();
    for (idx, line) in script.split('\n').enumerate() {
        let Some(rest) = line.strip_prefix("#SBATCH") else {
            match line.trim_start().chars().next() {
                None | Some('#') => continue,
                Some(_) => break,
            }
        };
        let chars: Vec<char> = rest.chars().collect();
        let mut k = 0;
        'line: loop {
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if k >= chars.len() {
                break;
            }
            let mut word = String::new();
            let mut quote: Option<char> = None;
            let mut escape = false;
            while k < chars.len() && (quote.is_some() || !chars[k].is_whitespace()) {
                let c = chars[k];
                k += 1;
                if escape {
                    escape = false;
                } else if c == '\\' {
                    escape = true;
                    continue;
                } else if let Some(q) = quote {
                    if c == q {
                        quote = None;
                        continue;
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                    continue;
                } else if c == '#' {
                    if !word.is_empty() {
                        words.push(word);
                    }
                    break 'line;
                }
                word.push(c);
            }
            if let Some(q) = quote {
                let msg = format!("{file}: line {}: Unmatched `{q}` in [{line}]", idx + 1);
                return Err(SlurmError::error(Cmd::Sbatch, &msg, EXIT_ERROR));
            }
            words.push(word);
        }
    }
    Ok(words)
}

// ---------------------------------------------------------------------------------------
// Values (proc_args.c, slurm_opt.c).

/// `parse_int` (proc_args.c): a whole number, positive where asked; exit 1 otherwise.
fn parse_int(cmd: Cmd, name: &str, v: &str, positive: bool) -> Result<u32, SlurmError> {
    let t = v.trim_start();
    let n: Option<i64> = t.strip_prefix('+').unwrap_or(t).parse().ok();
    match n {
        Some(n) if n >= 0 && !(positive && n == 0) && n <= i64::from(i32::MAX) => Ok(n as u32),
        _ => Err(SlurmError::error(
            cmd,
            &format!("Invalid numeric value \"{v}\" for {name}."),
            EXIT_ERROR,
        )),
    }
}

/// `str_to_mbytes` (proc_args.c): a number with an optional K/M/G/T suffix (only the
/// first character after the number is looked at), in MiB; K rounds up.
pub fn parse_mbytes(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    match s[digits..].chars().next() {
        None | Some('M' | 'm') => Some(n),
        Some('K' | 'k') => Some(n.div_ceil(1024)),
        Some('G' | 'g') => n.checked_mul(1024),
        Some('T' | 't') => n.checked_mul(1024 * 1024),
        _ => None,
    }
}

/// `_str_to_nodes` (proc_args.c): a count with an optional k/m suffix.
fn str_to_nodes(s: &str) -> Option<u32> {
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        // strtol read nothing: 0 if nothing else follows.
        return s.trim().is_empty().then_some(0);
    }
    let n: u64 = s[..digits].parse().ok()?;
    let mult = match s[digits..].trim_end() {
        "" => 1,
        "k" | "K" => 1024,
        "m" | "M" => 1024 * 1024,
        _ => return None,
    };
    u32::try_from(n.checked_mul(mult)?).ok()
}

/// `verify_node_count` (proc_args.c); errors exit 255 through `arg_set_nodes`.
fn parse_nodes(cmd: Cmd, v: &str) -> Result<NodeCount, SlurmError> {
    let bad = |s: &str| {
        SlurmError::error(
            cmd,
            &format!("\"{s}\" is not a valid node count"),
            EXIT_OPTION,
        )
    };
    let (min, max) = match v.split_once('-') {
        Some((lo, hi)) => {
            let min = str_to_nodes(lo).ok_or_else(|| bad(lo))?;
            (min, str_to_nodes(hi).ok_or_else(|| bad(hi))?)
        }
        None => {
            let n = str_to_nodes(v).ok_or_else(|| bad(v))?;
            (n, n)
        }
    };
    if max != 0 && max < min {
        let msg = format!("Maximum node count {max} is less than minimum node count {min}");
        return Err(SlurmError::error(cmd, &msg, EXIT_OPTION));
    }
    Ok(NodeCount {
        min,
        max: (max != 0 && v.contains('-')).then_some(max),
    })
}

/// `[type:]count`; `None` when malformed.
fn parse_gpu_spec(v: &str) -> Option<GpuSpec> {
    let (kind, count) = match v.rsplit_once(':') {
        Some((k, c)) => (Some(k), c),
        None => (None, v),
    };
    let kind = match kind {
        Some(k) if k.is_empty() || k.contains(':') || k.contains(',') => return None,
        Some(k) => Some(k.strip_prefix("gpu:").unwrap_or(k).to_string()),
        None => None,
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(GpuSpec {
        kind,
        count: count.parse().ok()?,
    })
}

/// `--gres=name[:type][:count][,...]`; `none` is empty.
fn parse_gres(v: &str) -> Option<Vec<GresSpec>> {
    if v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for item in v.split(',') {
        let item = item.strip_prefix("gres/").unwrap_or(item);
        let parts: Vec<&str> = item.split(':').collect();
        let is_count = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (name, kind, count) = match parts.as_slice() {
            [n] => (*n, None, "1"),
            [n, c] if is_count(c) => (*n, None, *c),
            [n, t] => (*n, Some(*t), "1"),
            [n, t, c] if is_count(c) => (*n, Some(*t), *c),
            _ => return None,
        };
        let valid = |s: &str| !s.is_empty() && !s.contains(['=', ' ', '/']);
        if !valid(name) || kind.is_some_and(|k| !valid(k)) {
            return None;
        }
        out.push(GresSpec {
            name: name.to_string(),
            kind: kind.map(str::to_string),
            count: count.parse().ok()?,
        });
    }
    Some(out)
}

/// `_valid_array_inx` / `_parse_array_tok` (slurmctld/job_mgr.c): comma-separated `N`,
/// `N-M`, `N-M:S`, optional `[...]`, then `%T`; every index below [`MAX_ARRAY_SIZE`].
pub fn parse_array(v: &str) -> Option<ArraySpec> {
    let (body, throttle) = match v.split_once('%') {
        Some((b, t)) => {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            (b, Some(t.parse().ok()?))
        }
        None => (v, None),
    };
    let mut set = std::collections::BTreeSet::new();
    let num = |s: &str| -> Option<u32> {
        let s = s.trim_start_matches('[').trim_end_matches(']');
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    for tok in body.split(',') {
        let (range, step) = match tok.split_once(':') {
            Some((r, s)) => (r, num(s)?),
            None => (tok, 1),
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None if tok.contains(':') => return None,
            None => (num(range)?, num(range)?),
        };
        if step == 0 || last < first || last >= MAX_ARRAY_SIZE {
            return None;
        }
        set.extend((first..=last).step_by(step as usize));
    }
    Some(ArraySpec {
        text: v.to_string(),
        indices: set.into_iter().collect(),
        throttle,
    })
}

/// `update_job_dependency` (slurmctld/job_scheduler.c): `type:job[:job...]` terms joined by
/// `,` or `?` (not both), `singleton`, and the old form of bare job ids (`afterany`).
/// Job ids are `N`, `N_M` or `N_*`; `+minutes` is allowed after `after:` ids only.
pub fn parse_dependency(v: &str) -> Option<DependencyExpr> {
    if v.is_empty() || (v.contains(',') && v.contains('?')) {
        return None;
    }
    let all = !v.contains('?');
    let mut expr = DependencyExpr {
        text: v.to_string(),
        all,
        deps: Vec::new(),
        singleton: false,
    };
    for term in v.split([',', '?']) {
        if term.eq_ignore_ascii_case("singleton") {
            expr.singleton = true;
            continue;
        }
        let (kind, ids) = match term.split_once(':') {
            Some((k, ids)) => {
                let kind = match k.to_ascii_lowercase().as_str() {
                    "after" => DependencyKind::After,
                    "afterany" => DependencyKind::AfterAny,
                    "afterok" => DependencyKind::AfterOk,
                    "afternotok" => DependencyKind::AfterNotOk,
                    "aftercorr" => DependencyKind::AfterCorr,
                    "afterburstbuffer" => DependencyKind::AfterBurstBuffer,
                    _ => return None,
                };
                (kind, ids)
            }
            None => (DependencyKind::AfterAny, term),
        };
        for id in ids.split(':') {
            let (id, delay) = match id.split_once('+') {
                Some((i, d)) if kind == DependencyKind::After => {
                    let d: u32 = d
                        .parse()
                        .ok()
                        .filter(|_| d.bytes().all(|c| c.is_ascii_digit()))?;
                    (i, d)
                }
                Some(_) => return None,
                None => (id, 0),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
            let (job, task) = match id.split_once('_') {
                Some((j, "*")) => (j, None),
                Some((j, t)) if digits(t) => (j, Some(t.parse().ok()?)),
                Some(_) => return None,
                None => (id, None),
            };
            if !digits(job) {
                return None;
            }
            let job: u64 = job.parse().ok().filter(|j| *j > 0)?;
            expr.deps.push(Dependency {
                kind,
                job,
                task,
                delay_min: delay,
            });
        }
    }
    Some(expr)
}

/// `--export` (sbatch man page): `ALL`, `NONE`, `NIL`, `VAR`, `VAR=value`, comma separated.
pub fn parse_export(v: &str) -> ExportSpec {
    let mut base = None;
    let mut vars = Vec::new();
    for item in v.split(',').filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("ALL") {
            base = Some(ExportBase::All);
        } else if item.eq_ignore_ascii_case("NONE") {
            base = Some(ExportBase::None);
        } else if item.eq_ignore_ascii_case("NIL") {
            base = Some(ExportBase::Nil);
        } else {
            match item.split_once('=') {
                Some((k, val)) => vars.push((k.to_string(), Some(val.to_string()))),
                None => vars.push((item.to_string(), None)),
            }
        }
    }
    ExportSpec {
        base: base.unwrap_or(ExportBase::None),
        vars,
    }
}

/// `parse_mail_type` (proc_args.c).
fn parse_mail_type(v: &str) -> Option<Vec<String>> {
    const TYPES: [&str; 13] = [
        "NONE",
        "BEGIN",
        "END",
        "FAIL",
        "REQUEUE",
        "ALL",
        "INVALID_DEPEND",
        "STAGE_OUT",
        "TIME_LIMIT",
        "TIME_LIMIT_90",
        "TIME_LIMIT_80",
        "TIME_LIMIT_50",
        "ARRAY_TASKS",
    ];
    let mut out = Vec::new();
    for t in v.split(',') {
        let up = t.to_ascii_uppercase();
        if !TYPES.contains(&up.as_str()) {
            return None;
        }
        out.push(up);
    }
    Some(out)
}

/// `sig_name2num` (proc_args.c): a number, or a name with or without `SIG`.
fn signal_number(s: &str) -> Option<u16> {
    const NAMES: [(&str, u16); 18] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ABRT", 6),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
    ];
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().filter(|n| *n >= 1);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// `get_signal_opts` (proc_args.c).
fn parse_signal(v: &str) -> Option<SignalSpec> {
    let (flags, rest) = match v.get(..3).map(str::to_ascii_uppercase).as_deref() {
        Some("RB:" | "BR:") => ((true, true), &v[3..]),
        _ => match v.get(..2).map(str::to_ascii_uppercase).as_deref() {
            Some("B:") => ((true, false), &v[2..]),
            Some("R:") => ((false, true), &v[2..]),
            _ => ((false, false), v),
        },
    };
    let (sig, secs) = match rest.split_once('@') {
        Some((s, t)) => {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (s, t.parse().ok()?)
        }
        None => (rest, 60),
    };
    Some(SignalSpec {
        signal: signal_number(sig)?,
        secs,
        batch_only: flags.0,
        reservation: flags.1,
    })
}

// ---------------------------------------------------------------------------------------
// Applying options.

/// Where the memory options came from: `slurm_option_set_by_cli` vs `_by_env`.
#[derive(Default)]
struct MemState {
    /// (value, set by environment) for `mem`, `mem-per-cpu`, `mem-per-gpu`.
    slots: [Option<(u64, bool)>; 3],
}

/// Options whose value is checked only when the request is complete (by slurmctld in Slurm).
#[derive(Default)]
struct Deferred {
    array: Option<String>,
    dependency: Option<String>,
    nodelist: Option<String>,
    exclude: Option<String>,
    gpus: [Option<String>; 3],
    gres: Option<String>,
}

struct Builder<'a> {
    cmd: Cmd,
    req: BatchRequest,
    mem: MemState,
    deferred: Deferred,
    clock: Clock,
    read: Reader<'a>,
}

impl Builder<'_> {
    fn opt_err(&self, msg: &str) -> SlurmError {
        SlurmError::error(self.cmd, msg, EXIT_OPTION)
    }

    fn apply(&mut self, def: &OptDef, value: Option<&str>, by_env: bool) -> Result<(), SlurmError> {
        let cmd = self.cmd;
        let v = value.unwrap_or("");
        let owned = || value.map(str::to_string);
        let req = &mut self.req;
        match def.long {
            "account" => req.account = owned(),
            "array" => self.deferred.array = owned(),
            "begin" => match time::parse_begin(v, self.clock.now, self.clock.utc_offset_secs) {
                Ok(t) => req.begin = Some(t),
                Err(e) => {
                    return Err(SlurmError {
                        text: format!(
                            "Invalid time specification (pos={}): {v}\n{}: error: Invalid \
                             --begin specification\n",
                            e.pos,
                            cmd.name()
                        ),
                        code: EXIT_OPTION,
                    })
                }
            },
            "chdir" => req.chdir = owned(),
            "comment" => req.comment = owned(),
            "constraint" => req.constraint = owned(),
            "cpus-per-task" => {
                req.cpus_per_task = Some(parse_int(cmd, "--cpus-per-task", v, true)?)
            }
            "dependency" => self.deferred.dependency = owned(),
            "error" | "input" | "output" => {
                let path = if v.eq_ignore_ascii_case("none") {
                    "/dev/null".to_string()
                } else {
                    v.to_string()
                };
                match def.long {
                    "error" => req.error = Some(path),
                    "input" => req.input = Some(path),
                    _ => req.output = Some(path),
                }
            }
            "exclude" => self.deferred.exclude = owned(),
            "exclusive" => {
                req.exclusive = Some(match value {
                    None => Exclusive::Node,
                    Some(x) if x.eq_ignore_ascii_case("exclusive") => Exclusive::Node,
                    Some(x) if x.eq_ignore_ascii_case("user") => Exclusive::User,
                    Some(x) if x.eq_ignore_ascii_case("mcs") => Exclusive::Mcs,
                    Some(_) => return Err(self.opt_err("Invalid --exclusive specification")),
                })
            }
            "export" => req.export = Some(parse_export(v)),
            "gpus" => self.deferred.gpus[0] = owned(),
            "gpus-per-node" => self.deferred.gpus[1] = owned(),
            "gpus-per-task" => self.deferred.gpus[2] = owned(),
            "gres" => self.deferred.gres = owned(),
            "gid" => return Err(self.opt_err("--gid only permitted by root user")),
            "hold" => req.hold = true,
            "job-name" => req.job_name = owned(),
            "mail-type" => match parse_mail_type(v) {
                Some(t) => req.mail_type.extend(t),
                None => return Err(self.opt_err("Invalid --mail-type specification")),
            },
            "mail-user" => req.mail_user = owned(),
            "mem" | "mem-per-cpu" | "mem-per-gpu" => {
                let Some(mb) = parse_mbytes(v) else {
                    return Err(self.opt_err(&format!("Invalid --{} specification", def.long)));
                };
                let slot = ["mem", "mem-per-cpu", "mem-per-gpu"]
                    .iter()
                    .position(|n| *n == def.long)
                    .unwrap_or(0);
                self.mem.slots[slot] = Some((mb, by_env));
            }
            "nice" => {
                let n: i64 = match value {
                    None => 100,
                    Some(x) => strtoll(x),
                };
                if n.abs() > 2_147_483_645 {
                    return Err(
                        self.opt_err("Nice value out of range (+/- 2147483645). Value ignored")
                    );
                }
                req.nice = Some(n as i32);
            }
            "nodelist" => self.deferred.nodelist = owned(),
            "nodes" => req.nodes = Some(parse_nodes(cmd, v)?),
            "no-requeue" => req.requeue = Some(false),
            "ntasks" => req.ntasks = Some(parse_int(cmd, "--ntasks", v, true)?),
            "ntasks-per-node" => {
                req.ntasks_per_node = Some(parse_int(cmd, "--ntasks-per-node", v, true)?)
            }
            "open-mode" => {
                req.open_mode = Some(match v.chars().next() {
                    Some('a' | 'A') => OpenMode::Append,
                    Some('t' | 'T') => OpenMode::Truncate,
                    _ => {
                        let msg = format!("Invalid --open-mode argument: {v}. Ignored");
                        return Err(self.opt_err(&msg));
                    }
                })
            }
            "parsable" => req.parsable = true,
            "partition" => {
                req.partitions = v
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "priority" => {
                req.priority = Some(if v.eq_ignore_ascii_case("TOP") {
                    Priority::Top
                } else {
                    let p = strtoll(v);
                    if p < 0 {
                        return Err(self.opt_err("Priority must be >= 0"));
                    }
                    if p >= i64::from(NO_VAL) {
                        return Err(self.opt_err(&format!("Priority must be < {NO_VAL}")));
                    }
                    Priority::Value(p as u32)
                })
            }
            "qos" => req.qos = owned(),
            "quiet" => req.quiet = true,
            "requeue" => req.requeue = Some(true),
            "signal" => match parse_signal(v) {
                Some(s) => req.signal = Some(s),
                None => return Err(self.opt_err("Invalid --signal specification")),
            },
            "test-only" => req.test_only = true,
            "time" => match time::parse_time_limit(v) {
                Err(()) => return Err(self.opt_err("Invalid --time specification")),
                Ok(None) | Ok(Some(0)) => req.time_limit = Some(TimeLimit::Unlimited),
                Ok(Some(m)) => req.time_limit = Some(TimeLimit::Minutes(m)),
            },
            "uid" => return Err(self.opt_err("--uid only permitted by root user")),
            "verbose" => req.verbose = req.verbose.saturating_add(1),
            "wait" if cmd == Cmd::Sbatch => req.wait = true,
            "wrap" => req.wrap = owned(),
            // Handled before the script is read (the early pass).
            "help" | "usage" | "version" => {}
            other => {
                // Bounded by the number of arguments, script lines and variables.
                req.other.push((other.to_string(), owned()));
            }
        }
        Ok(())
    }

    /// Reads a `-w`/`-x` value: a hostlist, or a host file when it contains `/`.
    fn hosts(&self, v: &str) -> Result<Vec<String>, SlurmError> {
        let cmd = self.cmd;
        let list = if v.contains('/') {
            let bytes = (self.read)(Some(Path::new(v))).map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "No such file or directory".to_string(),
                    std::io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
                    _ => e.to_string(),
                };
                let msg = format!("slurm_read_hostfile: open({v}): {why}");
                SlurmError::error(cmd, &msg, EXIT_ERROR)
            })?;
            let text = String::from_utf8_lossy(&bytes);
            let items: Vec<&str> = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .collect();
            items.join(",")
        } else {
            v.to_string()
        };
        hostlist::expand(&list).map_err(|_| submission_failed(cmd, INVALID_NODE_NAME))
    }

    /// `_opt_verify` and the server's checks, once every source is applied.
    fn finish(mut self) -> Result<BatchRequest, SlurmError> {
        let cmd = self.cmd;
        // `_validate_memory_options` (slurm_opt.c).
        let slots = self.mem.slots;
        let by_cli = slots
            .iter()
            .filter(|s| matches!(s, Some((_, false))))
            .count();
        let by_env = slots
            .iter()
            .filter(|s| matches!(s, Some((_, true))))
            .count();
        let chosen = if by_cli > 1 {
            return Err(SlurmError::fatal(
                cmd,
                "--mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.",
            ));
        } else if by_cli == 1 {
            slots.iter().position(|s| matches!(s, Some((_, false))))
        } else if by_env > 1 {
            return Err(SlurmError::fatal(
                cmd,
                "SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and SLURM_MEM_PER_NODE are mutually \
                 exclusive.",
            ));
        } else {
            slots.iter().position(Option::is_some)
        };
        self.req.memory = chosen.and_then(|i| {
            let (mb, _) = slots[i]?;
            Some(match i {
                0 => Memory::Node(mb),
                1 => Memory::Cpu(mb),
                _ => Memory::Gpu(mb),
            })
        });
        if let Some(v) = self.deferred.nodelist.take() {
            self.req.nodelist = self.hosts(&v)?;
        }
        if let Some(v) = self.deferred.exclude.take() {
            self.req.exclude = self.hosts(&v)?;
        }
        let gres_err = || submission_failed(cmd, INVALID_GRES);
        let [g0, g1, g2] = std::mem::take(&mut self.deferred.gpus);
        let gpu = |s: Option<String>| match s {
            None => Ok(None),
            Some(s) => parse_gpu_spec(&s).map(Some).ok_or_else(gres_err),
        };
        self.req.gpus = gpu(g0)?;
        self.req.gpus_per_node = gpu(g1)?;
        self.req.gpus_per_task = gpu(g2)?;
        if let Some(g) = self.deferred.gres.take() {
            self.req.gres = parse_gres(&g).ok_or_else(gres_err)?;
        }
        if let Some(a) = self.deferred.array.take() {
            let spec = parse_array(&a).ok_or_else(|| submission_failed(cmd, INVALID_ARRAY))?;
            self.req.array = Some(spec);
        }
        if let Some(d) = self.deferred.dependency.take() {
            let dep =
                parse_dependency(&d).ok_or_else(|| submission_failed(cmd, DEPENDENCY_PROBLEM))?;
            self.req.dependency = Some(dep);
        }
        Ok(self.req)
    }
}

/// `strtoll(s, NULL, 10)`: leading blanks, a sign, digits; 0 when none; saturating.
fn strtoll(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in t.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

// ---------------------------------------------------------------------------------------
// Help, usage, version.

fn version_text() -> String {
    format!(
        "slurm {SLURM_VERSION} (sovra {})\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn usage_text(cmd: Cmd) -> String {
    let name = cmd.name();
    let what = match cmd {
        Cmd::Sbatch => "script [args...]",
        Cmd::Srun => "executable [args...]",
        Cmd::Salloc => "[command [args...]]",
    };
    format!(
        "Usage: {name} [-N nnodes] [-n ntasks] [-c ncpus] [-p partition] [-t minutes]\n\
         {pad} [-A account] [-q qos] [-C constraint] [-w hosts] [-x hosts]\n\
         {pad} [-G [type:]n] [--gpus-per-node=[type:]n] [--gres=list] [--mem=MB]\n\
         {pad} [--exclusive] [-a array] [-d dependency] [-J jobname] [-o out] [-e err]\n\
         {pad} {what}\n",
        pad = " ".repeat(name.len() + 7),
    )
}

fn help_text(cmd: Cmd) -> String {
    let name = cmd.name();
    let mut s = format!("Usage: {name} [OPTIONS...] ");
    s.push_str(match cmd {
        Cmd::Sbatch => "script [args...]\n",
        Cmd::Srun => "executable [args...]\n",
        Cmd::Salloc => "[command [args...]]\n",
    });
    s.push_str(
        "\n(sovra's Slurm 22.05-compatible shim; see the Slurm man page for details)\n\n\
         Parallel run options:\n\
         \x20 -a, --array=indexes         job array index values (sbatch)\n\
         \x20 -A, --account=name          charge job to specified account\n\
         \x20 -b, --begin=time            defer job until HH:MM MM/DD/YY\n\
         \x20 -c, --cpus-per-task=ncpus   number of cpus required per task\n\
         \x20     --comment=name          arbitrary comment\n\
         \x20 -d, --dependency=type:jobid[:time] defer job until condition on jobid is \
         satisfied\n\
         \x20 -D, --chdir=directory       set working directory for batch script\n\
         \x20 -e, --error=err             file for batch script's standard error\n\
         \x20     --export[=names]        specify environment variables to export\n\
         \x20 -H, --hold                  submit job in held state\n\
         \x20 -i, --input=in              file for batch script's standard input\n\
         \x20 -J, --job-name=jobname      name of job\n\
         \x20     --mail-type=type        notify on state change: BEGIN, END, FAIL or ALL\n\
         \x20     --mail-user=user        who to send email notification for job state \
         changes\n\
         \x20 -n, --ntasks=ntasks         number of tasks to run\n\
         \x20     --nice[=value]          decrease scheduling priority by value\n\
         \x20     --ntasks-per-node=n     number of tasks to invoke on each node\n\
         \x20 -N, --nodes=N               number of nodes on which to run (N = min[-max])\n\
         \x20 -o, --output=out            file for batch script's standard output\n\
         \x20 -p, --partition=partition   partition requested\n\
         \x20     --parsable              outputs only the jobid and cluster name (if \
         present),\n\
         \x20                             separated by semicolon, only on successful \
         submission.\n\
         \x20     --priority=value        set the priority of the job to value\n\
         \x20 -q, --qos=qos               quality of service\n\
         \x20 -Q, --quiet                 quiet mode (suppress informational messages)\n\
         \x20     --requeue               if set, permit the job to be requeued\n\
         \x20     --signal=[R:]num[@time] send signal when time limit within time seconds\n\
         \x20 -t, --time=minutes          time limit\n\
         \x20     --test-only             validate the job, do not submit it\n\
         \x20 -v, --verbose               verbose mode (multiple -v's increase verbosity)\n\
         \x20 -W, --wait                  wait for completion of submitted job\n\
         \x20     --wrap[=command string] wrap command string in a sh script and submit\n\
         \n\
         Constraint options:\n\
         \x20 -C, --constraint=list       specify a list of constraints\n\
         \x20     --mem=MB                minimum amount of real memory\n\
         \x20     --mem-per-cpu=MB        maximum amount of real memory per allocated cpu\n\
         \x20 -w, --nodelist=hosts...     request a specific list of hosts\n\
         \x20 -x, --exclude=hosts...      exclude a specific list of hosts\n\
         \n\
         Consumable resources related options:\n\
         \x20     --exclusive[=user|mcs]  allocate nodes in exclusive mode\n\
         \n\
         GPU scheduling options:\n\
         \x20 -G, --gpus=n                count of GPUs required for the job\n\
         \x20     --gpus-per-node=n       number of GPUs required per allocated node\n\
         \x20     --gpus-per-task=n       number of GPUs required per spawned task\n\
         \x20     --gres=list             required generic resources\n\
         \x20     --mem-per-gpu=n         real memory required per allocated GPU\n\
         \n\
         Help options:\n\
         \x20 -h, --help                  show this help message\n\
         \x20     --usage                 display brief usage message\n\
         \n\
         Other options:\n\
         \x20 -V, --version               output version information and exit\n",
    );
    s
}

// ---------------------------------------------------------------------------------------
// The entry point.

/// Parses a `sbatch`/`srun`/`salloc` invocation (`args` without argv[0]).
///
/// sbatch reads its script through `read`: `Some(path)` for a named script (and `-w`/`-x`
/// host files), `None` for standard input when no script is named. With `--wrap` nothing is
/// read. srun and salloc read only host files.
pub fn parse(
    cmd: Cmd,
    args: &[String],
    env: &BTreeMap<String, String>,
    clock: Clock,
    read: Reader<'_>,
) -> Result<Parsed, SlurmError> {
    // First pass: getopt over the command line; help, usage and version act at once.
    let (cli, first_operand) = getopt(cmd, args)?;
    for t in &cli {
        match t.def.long {
            "help" => return Ok(Parsed::Info((0, help_text(cmd), String::new()))),
            "usage" => return Ok(Parsed::Info((0, usage_text(cmd), String::new()))),
            "version" => return Ok(Parsed::Info((0, version_text(), String::new()))),
            "gres" if t.value.as_deref().is_some_and(is_gres_help) => {
                return Ok(Parsed::Info((0, gres_help(), String::new())))
            }
            _ => {}
        }
    }
    let operands = &args[first_operand..];
    if operands.first().is_some_and(|a| a == ":") {
        let msg = "heterogeneous jobs are not supported by sovra";
        return Err(SlurmError::error(cmd, msg, EXIT_ERROR));
    }
    let mut b = Builder {
        cmd,
        req: BatchRequest {
            cmd,
            ..BatchRequest::default()
        },
        mem: MemState::default(),
        deferred: Deferred::default(),
        clock,
        read,
    };
    let wrap = cli
        .iter()
        .rev()
        .find(|t| t.def.long == "wrap")
        .and_then(|t| t.value.clone());
    match cmd {
        Cmd::Sbatch => {
            if wrap.is_some() && !operands.is_empty() {
                let msg = "Script arguments not permitted with --wrap option";
                return Err(SlurmError::error(cmd, msg, EXIT_ERROR));
            }
            let script = match &wrap {
                Some(w) => wrap_script(w),
                None => {
                    let path = operands.first();
                    let bytes = read(path.map(Path::new)).map_err(|_| {
                        let f = path.map(String::as_str).unwrap_or("-");
                        SlurmError::error(cmd, &format!("Unable to open file {f}"), EXIT_ERROR)
                    })?;
                    check_script(&bytes)?;
                    b.req.script_path = path.cloned();
                    b.req.args = operands.iter().skip(1).cloned().collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            };
            // Directives: the generated --wrap script is not scanned (its size is 0 there).
            if wrap.is_none() {
                let file = match operands.first() {
                    Some(p) => Path::new(p)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_else(|| p.clone()),
                    None => "stdin".to_string(),
                };
                let words = script_directives(&script, &file)?;
                if words.iter().any(|w| w == "hetjob" || w == "packjob") {
                    let msg = "heterogeneous jobs are not supported by sovra";
                    return Err(SlurmError::error(cmd, msg, EXIT_ERROR));
                }
                let (tokens, first) = getopt(cmd, &words)?;
                if let Some(w) = words.get(first) {
                    let msg = format!("Invalid directive found in batch script: {w}");
                    return Err(SlurmError::error(cmd, &msg, EXIT_ERROR));
                }
                for t in &tokens {
                    b.apply(t.def, t.value.as_deref(), false)?;
                }
            }
            b.req.script = Some(script);
        }
        Cmd::Srun => {
            if operands.is_empty() {
                return Err(SlurmError::fatal(cmd, "No command given to execute."));
            }
            b.req.args = operands.to_vec();
        }
        Cmd::Salloc => b.req.args = operands.to_vec(),
    }
    for (var, long) in env_table(cmd) {
        let (Some(value), Some(def)) = (env.get(*var), def_by_long(cmd, long)) else {
            continue;
        };
        let value = (def.arg != Arg::No).then_some(value.as_str());
        b.apply(def, value, true)?;
    }
    for t in &cli {
        b.apply(t.def, t.value.as_deref(), false)?;
    }
    b.finish().map(|r| Parsed::Request(Box::new(r)))
}

fn is_gres_help(v: &str) -> bool {
    v.eq_ignore_ascii_case("help") || v.eq_ignore_ascii_case("list")
}

/// `print_gres_help` with sovra's one GRES plugin.
fn gres_help() -> String {
    "Valid gres options are:\ngpu[[:type]:count]\n".to_string()
}

// ---------------------------------------------------------------------------------------
// Output file patterns.

/// What `%` patterns in `-o`/`-e`/`-i` expand to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatternCtx {
    /// `%j`: the job id (of this array task).
    pub job_id: u64,
    /// `%A`: the array's job id; `None` when not an array (then `%A` is the job id).
    pub array_job_id: Option<u64>,
    /// `%a`: the array task id; `None` when not an array (Slurm prints `NO_VAL`).
    pub array_task_id: Option<u32>,
    /// `%s`: the step; `None` is the batch step (`batch`, and `%J` is just the job id).
    pub step_id: Option<u32>,
    /// `%N`: the (first) node's short name.
    pub node: String,
    /// `%n`: node id relative to the job.
    pub node_id: u32,
    /// `%t`: task id (rank).
    pub task_id: u32,
    /// `%u`: user name.
    pub user: String,
    /// `%x`: job name.
    pub job_name: String,
}

/// `fname_create` (slurmstepd/fname.c): expands `%%`, `%A`, `%a`, `%b`, `%J`, `%j`, `%N`,
/// `%n`, `%s`, `%t`, `%u`, `%x`, with a zero-padding width (`%4a`, at most 10). Unknown
/// patterns stay as written. A pattern with a backslash is not expanded; its backslashes
/// are removed.
pub fn expand_pattern(pattern: &str, ctx: &PatternCtx) -> String {
    if pattern.contains('\\') {
        return pattern.replace('\\', "");
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut width: usize = 0;
        while i < chars.len() && chars[i].is_ascii_digit() {
            width = (width * 10 + chars[i].to_digit(10).unwrap_or(0) as usize).min(1000);
            i += 1;
        }
        let width = width.min(10);
        let num = |n: u64| format!("{n:0width$}");
        let Some(&c) = chars.get(i) else {
            out.extend(&chars[start..]);
            break;
        };
        i += 1;
        match c {
            '%' => out.push('%'),
            'A' => out.push_str(&num(ctx.array_job_id.unwrap_or(ctx.job_id))),
            'a' => out.push_str(&num(u64::from(ctx.array_task_id.unwrap_or(NO_VAL)))),
            'b' => out.push_str(&num(u64::from(ctx.array_task_id.unwrap_or(NO_VAL) % 10))),
            'j' => out.push_str(&num(ctx.job_id)),
            'J' => {
                out.push_str(&num(ctx.job_id));
                if let Some(s) = ctx.step_id {
                    out.push_str(&format!(".{s}"));
                }
            }
            'N' => out.push_str(&ctx.node),
            'n' => out.push_str(&num(u64::from(ctx.node_id))),
            's' => match ctx.step_id {
                Some(s) => out.push_str(&num(u64::from(s))),
                None => out.push_str("batch"),
            },
            't' => out.push_str(&num(u64::from(ctx.task_id))),
            'u' => out.push_str(&ctx.user),
            'x' => out.push_str(&ctx.job_name),
            _ => out.extend(&chars[start..i]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed "now": 2026-11-25T10:00:00Z, local time UTC+0.
    const CLOCK: Clock = Clock {
        now: 1_795_600_800,
        utc_offset_secs: 0,
    };

    const SCRIPT: &str = "#!/bin/bash\necho hi\n";

    /// Runs `cmd args` with `env` and `files` (`-` is standard input).
    fn run(
        cmd: Cmd,
        args: &[&str],
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<Parsed, SlurmError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let read = move |p: Option<&Path>| -> std::io::Result<Vec<u8>> {
            let key = p.map(|p| p.display().to_string()).unwrap_or("-".into());
            files
                .get(&key)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        parse(cmd, &args, &env, CLOCK, &read)
    }

    /// The fields a request sets, one `name=value` each, for data-driven expectations.
    fn summary(r: &BatchRequest) -> Vec<String> {
        let mut v = Vec::new();
        let mut opt = |name: &str, val: Option<String>| {
            if let Some(val) = val {
                v.push(format!("{name}={val}"));
            }
        };
        let d = |x: &dyn std::fmt::Debug| format!("{x:?}");
        opt("script_path", r.script_path.clone());
        opt("args", (!r.args.is_empty()).then(|| r.args.join(" ")));
        opt("wrap", r.wrap.clone());
        opt("nodes", r.nodes.map(|n| d(&(n.min, n.max))));
        opt("ntasks", r.ntasks.map(|x| x.to_string()));
        opt("cpus_per_task", r.cpus_per_task.map(|x| x.to_string()));
        opt("ntasks_per_node", r.ntasks_per_node.map(|x| x.to_string()));
        let gpu = |g: &Option<GpuSpec>| g.as_ref().map(|g| d(&(g.kind.as_deref(), g.count)));
        opt("gpus", gpu(&r.gpus));
        opt("gpus_per_node", gpu(&r.gpus_per_node));
        opt("gpus_per_task", gpu(&r.gpus_per_task));
        opt(
            "gres",
            (!r.gres.is_empty()).then(|| {
                let items: Vec<String> = r
                    .gres
                    .iter()
                    .map(|g| {
                        format!(
                            "{}:{}:{}",
                            g.name,
                            g.kind.as_deref().unwrap_or("-"),
                            g.count
                        )
                    })
                    .collect();
                items.join(",")
            }),
        );
        opt("time", r.time_limit.map(|t| d(&t)));
        opt(
            "partitions",
            (!r.partitions.is_empty()).then(|| r.partitions.join(",")),
        );
        opt("account", r.account.clone());
        opt("qos", r.qos.clone());
        opt("constraint", r.constraint.clone());
        opt(
            "nodelist",
            (!r.nodelist.is_empty()).then(|| r.nodelist.join(",")),
        );
        opt(
            "exclude",
            (!r.exclude.is_empty()).then(|| r.exclude.join(",")),
        );
        opt("memory", r.memory.map(|m| d(&m)));
        opt("exclusive", r.exclusive.map(|m| d(&m)));
        opt(
            "array",
            r.array
                .as_ref()
                .map(|a| format!("{:?}%{:?}", a.indices, a.throttle)),
        );
        opt(
            "dependency",
            r.dependency.as_ref().map(|x| {
                let deps: Vec<String> = x
                    .deps
                    .iter()
                    .map(|t| format!("{:?}:{}:{:?}+{}", t.kind, t.job, t.task, t.delay_min))
                    .collect();
                format!(
                    "all={} singleton={} [{}]",
                    x.all,
                    x.singleton,
                    deps.join(" ")
                )
            }),
        );
        opt("job_name", r.job_name.clone());
        opt("output", r.output.clone());
        opt("error", r.error.clone());
        opt("input", r.input.clone());
        opt("export", r.export.as_ref().map(|e| d(e)));
        opt("test_only", r.test_only.then(|| "true".into()));
        opt("hold", r.hold.then(|| "true".into()));
        opt("chdir", r.chdir.clone());
        opt("begin", r.begin.map(|t| time::format_timestamp(t, 0)));
        opt("nice", r.nice.map(|x| x.to_string()));
        opt("priority", r.priority.map(|p| d(&p)));
        opt("comment", r.comment.clone());
        opt("requeue", r.requeue.map(|x| x.to_string()));
        opt("parsable", r.parsable.then(|| "true".into()));
        opt("quiet", r.quiet.then(|| "true".into()));
        opt("verbose", (r.verbose > 0).then(|| r.verbose.to_string()));
        opt(
            "mail_type",
            (!r.mail_type.is_empty()).then(|| r.mail_type.join(",")),
        );
        opt("mail_user", r.mail_user.clone());
        opt("signal", r.signal.map(|s| d(&s)));
        opt("open_mode", r.open_mode.map(|s| d(&s)));
        opt("wait", r.wait.then(|| "true".into()));
        opt("other", (!r.other.is_empty()).then(|| d(&r.other)));
        v
    }

    enum Expect {
        /// These `name=value` lines, and nothing else, are set.
        Fields(&'static [&'static str]),
        /// These `name=value` lines are among those set.
        Has(&'static [&'static str]),
        /// Exactly this stderr and exit code.
        Fails(&'static str, u8),
        /// Informational output: exit code and a prefix of stdout.
        Info(u8, &'static str),
    }
    use Expect::*;

    struct Case {
        /// Where the expectation comes from.
        why: &'static str,
        cmd: Cmd,
        args: &'static [&'static str],
        env: &'static [(&'static str, &'static str)],
        /// (path, contents); `-` is standard input.
        files: &'static [(&'static str, &'static str)],
        expect: Expect,
    }

    const NO_ENV: &[(&str, &str)] = &[];
    const JOB: &[(&str, &str)] = &[("job.sh", SCRIPT)];

    fn sb(why: &'static str, args: &'static [&'static str], expect: Expect) -> Case {
        Case {
            why,
            cmd: Cmd::Sbatch,
            args,
            env: NO_ENV,
            files: JOB,
            expect,
        }
    }

    fn check(case: &Case) {
        let got = run(case.cmd, case.args, case.env, case.files);
        let ctx = format!("{} ({:?})", case.why, case.args);
        match (&case.expect, got) {
            (Fields(want), Ok(Parsed::Request(r))) => {
                let mut got = summary(&r);
                got.retain(|l| !l.starts_with("script_path=") || want.iter().any(|w| w == l));
                let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
                assert_eq!(got, want, "{ctx}");
            }
            (Has(want), Ok(Parsed::Request(r))) => {
                let got = summary(&r);
                for w in *want {
                    assert!(got.iter().any(|l| l == w), "{ctx}: want {w}, got {got:#?}");
                }
            }
            (Fails(text, code), Err(e)) => {
                assert_eq!((e.text.as_str(), e.code), (*text, *code), "{ctx}");
            }
            (Info(code, prefix), Ok(Parsed::Info((c, out, err)))) => {
                assert_eq!(c, *code, "{ctx}");
                assert!(out.starts_with(prefix), "{ctx}: {out}");
                assert_eq!(err, "", "{ctx}");
            }
            (_, got) => panic!("{ctx}: unexpected {got:?}"),
        }
    }

    /// The conformance table, from the 22.05 man pages (sbatch.1, srun.1, salloc.1) and
    /// sources named in the module docs.
    fn cases() -> Vec<Case> {
        let mut c = vec![
            // --- Command line forms (getopt_long, slurm_opt.c) ---
            // sbatch.1 SYNOPSIS: options, then the script and its arguments
            sb(
                "script and args",
                &["job.sh", "a", "-b"],
                Fields(&["args=a -b"]),
            ),
            // getopt_long: --opt=value
            sb("long =", &["--ntasks=4", "job.sh"], Fields(&["ntasks=4"])),
            // getopt_long: --opt value
            sb(
                "long space",
                &["--ntasks", "4", "job.sh"],
                Fields(&["ntasks=4"]),
            ),
            // getopt: short with attached value
            sb(
                "short attached",
                &["-N2", "job.sh"],
                Fields(&["nodes=(2, None)"]),
            ),
            // getopt: short with separate value
            sb(
                "short separate",
                &["-n", "4", "job.sh"],
                Fields(&["ntasks=4"]),
            ),
            // getopt: bundled flags
            sb(
                "bundled",
                &["-HQ", "job.sh"],
                Fields(&["hold=true", "quiet=true"]),
            ),
            // getopt: bundled flags then a value
            sb(
                "bundled value",
                &["-Hn3", "job.sh"],
                Fields(&["ntasks=3", "hold=true"]),
            ),
            // getopt_long: unambiguous prefix
            sb(
                "prefix",
                &["--ntasks-per-n=2", "job.sh"],
                Fields(&["ntasks_per_node=2"]),
            ),
            // getopt_long: exact name beats longer names
            sb(
                "exact",
                &["--mem=4G", "job.sh"],
                Fields(&["memory=Node(4096)"]),
            ),
            // getopt_long: ambiguous prefix (glibc text), Try hint, exit(-1)
            sb(
                "ambiguous",
                &["--exc", "job.sh"],
                Fails(
                    "sbatch: option '--exc' is ambiguous; possibilities: '--exclude' \
                     '--exclusive'\nTry \"sbatch --help\" for more information\n",
                    255,
                ),
            ),
            // glibc: unrecognized long option; slurm_opt.c arg_set__unknown_sbatch
            sb(
                "unknown long",
                &["--foo", "job.sh"],
                Fails(
                    "sbatch: unrecognized option '--foo'\nTry \"sbatch --help\" for more \
                     information\n",
                    255,
                ),
            ),
            // glibc prints the whole argument
            sb(
                "unknown long =",
                &["--foo=1", "job.sh"],
                Fails(
                    "sbatch: unrecognized option '--foo=1'\nTry \"sbatch --help\" for more \
                     information\n",
                    255,
                ),
            ),
            // glibc: invalid short option
            sb(
                "unknown short",
                &["-z", "job.sh"],
                Fails(
                    "sbatch: invalid option -- 'z'\nTry \"sbatch --help\" for more \
                     information\n",
                    255,
                ),
            ),
            // glibc: missing argument, long
            sb(
                "missing long arg",
                &["--time"],
                Fails(
                    "sbatch: option '--time' requires an argument\nTry \"sbatch --help\" for \
                     more information\n",
                    255,
                ),
            ),
            // glibc: missing argument, short
            sb("missing short arg", &["job.sh", "-t"], Fields(&["args=-t"])),
            sb(
                "missing short arg before script",
                &["-t"],
                Fails(
                    "sbatch: option requires an argument -- 't'\nTry \"sbatch --help\" for \
                     more information\n",
                    255,
                ),
            ),
            // glibc: argument to a flag
            sb(
                "flag with value",
                &["--hold=yes", "job.sh"],
                Fails(
                    "sbatch: option '--hold' doesn't allow an argument\nTry \"sbatch --help\" \
                     for more information\n",
                    255,
                ),
            ),
            // "+" in sbatch's optstring: options after the script belong to the script
            sb(
                "stop at script",
                &["job.sh", "-N", "2"],
                Fields(&["args=-N 2"]),
            ),
            // getopt: "--" ends the options
            sb(
                "double dash",
                &["-n1", "--", "job.sh", "-x"],
                Fields(&["args=-x", "ntasks=1"]),
            ),
            // --- Informational ---
            // slurm_opt.c arg_set_help: exit 0
            sb("help", &["--help"], Info(0, "Usage: sbatch")),
            sb("help short", &["-h", "job.sh"], Info(0, "Usage: sbatch")),
            // --usage
            sb("usage", &["--usage"], Info(0, "Usage: sbatch [-N nnodes]")),
            // -V: print_slurm_version "slurm <version>"
            sb("version", &["-V"], Info(0, "slurm 22.05.11 (sovra ")),
            // --gres=help: print_gres_help
            sb(
                "gres help",
                &["--gres=help"],
                Info(0, "Valid gres options are:"),
            ),
            // --- Resources ---
            // verify_node_count: min-max
            sb(
                "nodes range",
                &["-N", "2-4", "job.sh"],
                Fields(&["nodes=(2, Some(4))"]),
            ),
            // _str_to_nodes: k suffix
            sb(
                "nodes k",
                &["-N", "1k", "job.sh"],
                Fields(&["nodes=(1024, None)"]),
            ),
            // verify_node_count: garbage
            sb(
                "nodes garbage",
                &["-N", "two", "job.sh"],
                Fails("sbatch: error: \"two\" is not a valid node count\n", 255),
            ),
            // verify_node_count: max < min
            sb(
                "nodes reversed",
                &["-N", "4-2", "job.sh"],
                Fails(
                    "sbatch: error: Maximum node count 2 is less than minimum node count 4\n",
                    255,
                ),
            ),
            // parse_int: positive
            sb(
                "ntasks zero",
                &["-n", "0", "job.sh"],
                Fails(
                    "sbatch: error: Invalid numeric value \"0\" for --ntasks.\n",
                    1,
                ),
            ),
            sb(
                "ntasks garbage",
                &["-n", "4x", "job.sh"],
                Fails(
                    "sbatch: error: Invalid numeric value \"4x\" for --ntasks.\n",
                    1,
                ),
            ),
            sb(
                "cpus per task",
                &["-c", "8", "job.sh"],
                Fields(&["cpus_per_task=8"]),
            ),
            sb(
                "cpus per task negative",
                &["-c", "-1", "job.sh"],
                Fails(
                    "sbatch: error: Invalid numeric value \"-1\" for --cpus-per-task.\n",
                    1,
                ),
            ),
            // -G [type:]n
            sb("gpus", &["-G", "4", "job.sh"], Fields(&["gpus=(None, 4)"])),
            sb(
                "gpus typed",
                &["--gpus=a100:8", "job.sh"],
                Fields(&["gpus=(Some(\"a100\"), 8)"]),
            ),
            sb(
                "gpus per node",
                &["--gpus-per-node=h100:8", "job.sh"],
                Fields(&["gpus_per_node=(Some(\"h100\"), 8)"]),
            ),
            sb(
                "gpus per task",
                &["--gpus-per-task=1", "job.sh"],
                Fields(&["gpus_per_task=(None, 1)"]),
            ),
            // slurmctld: ESLURM_INVALID_GRES
            sb(
                "gpus garbage",
                &["-G", "lots", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Invalid generic resource \
                     (gres) specification\n",
                    1,
                ),
            ),
            // --gres name[:type][:count], comma list
            sb(
                "gres",
                &["--gres=gpu:a100:4", "job.sh"],
                Fields(&["gres=gpu:a100:4"]),
            ),
            sb(
                "gres list",
                &["--gres=gpu:2,shard:8", "job.sh"],
                Fields(&["gres=gpu:-:2,shard:-:8"]),
            ),
            sb(
                "gres count default",
                &["--gres=gpu", "job.sh"],
                Fields(&["gres=gpu:-:1"]),
            ),
            sb("gres none", &["--gres=none", "job.sh"], Fields(&[])),
            // --- Time ---
            sb(
                "time minutes",
                &["-t", "90", "job.sh"],
                Fields(&["time=Minutes(90)"]),
            ),
            sb(
                "time d-h",
                &["--time=1-12", "job.sh"],
                Fields(&["time=Minutes(2160)"]),
            ),
            // arg_set_time_limit: 0 is INFINITE
            sb(
                "time zero",
                &["-t", "0", "job.sh"],
                Fields(&["time=Unlimited"]),
            ),
            sb(
                "time unlimited",
                &["-t", "UNLIMITED", "job.sh"],
                Fields(&["time=Unlimited"]),
            ),
            // arg_set_time_limit: exit(-1)
            sb(
                "time garbage",
                &["-t", "1h", "job.sh"],
                Fails("sbatch: error: Invalid --time specification\n", 255),
            ),
            // --begin: parse_time
            sb(
                "begin",
                &["--begin=now+1hour", "job.sh"],
                Fields(&["begin=2026-11-25T11:00:00"]),
            ),
            sb(
                "begin date",
                &["-b", "2027-01-02T03:04", "job.sh"],
                Fields(&["begin=2027-01-02T03:04:00"]),
            ),
            // parse_time's message, then arg_set_begin's
            sb(
                "begin garbage",
                &["--begin=soon", "job.sh"],
                Fails(
                    "Invalid time specification (pos=0): soon\nsbatch: error: Invalid --begin \
                     specification\n",
                    255,
                ),
            ),
            // --- Placement ---
            sb(
                "partition list",
                &["-p", "gpu,cpu", "job.sh"],
                Fields(&["partitions=gpu,cpu"]),
            ),
            sb(
                "account",
                &["-A", "physics", "job.sh"],
                Fields(&["account=physics"]),
            ),
            sb("qos", &["-q", "high", "job.sh"], Fields(&["qos=high"])),
            sb(
                "constraint",
                &["-C", "a100&ib", "job.sh"],
                Fields(&["constraint=a100&ib"]),
            ),
            // -w hostlist expression
            sb(
                "nodelist",
                &["-w", "gpu[01-03]", "job.sh"],
                Fields(&["nodelist=gpu01,gpu02,gpu03"]),
            ),
            sb(
                "exclude",
                &["-x", "n[1,3]", "job.sh"],
                Fields(&["exclude=n1,n3"]),
            ),
            // ESLURM_INVALID_NODE_NAME from slurmctld
            sb(
                "nodelist garbage",
                &["-w", "n[1-", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Invalid node name specified\n",
                    1,
                ),
            ),
            // --- Memory (str_to_mbytes, _validate_memory_options) ---
            sb(
                "mem default MB",
                &["--mem=500", "job.sh"],
                Fields(&["memory=Node(500)"]),
            ),
            sb(
                "mem K rounds up",
                &["--mem=1025K", "job.sh"],
                Fields(&["memory=Node(2)"]),
            ),
            sb(
                "mem T",
                &["--mem=1T", "job.sh"],
                Fields(&["memory=Node(1048576)"]),
            ),
            // str_to_mbytes only looks at the first suffix character
            sb(
                "mem GB",
                &["--mem=16GB", "job.sh"],
                Fields(&["memory=Node(16384)"]),
            ),
            sb(
                "mem zero is all",
                &["--mem=0", "job.sh"],
                Fields(&["memory=Node(0)"]),
            ),
            sb(
                "mem per cpu",
                &["--mem-per-cpu=2G", "job.sh"],
                Fields(&["memory=Cpu(2048)"]),
            ),
            sb(
                "mem per gpu",
                &["--mem-per-gpu=80G", "job.sh"],
                Fields(&["memory=Gpu(81920)"]),
            ),
            sb(
                "mem garbage",
                &["--mem=lots", "job.sh"],
                Fails("sbatch: error: Invalid --mem specification\n", 255),
            ),
            sb(
                "mem per cpu garbage",
                &["--mem-per-cpu=1X", "job.sh"],
                Fails("sbatch: error: Invalid --mem-per-cpu specification\n", 255),
            ),
            sb(
                "mem exclusive",
                &["--mem=1G", "--mem-per-cpu=1G", "job.sh"],
                Fails(
                    "sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually \
                     exclusive.\n",
                    1,
                ),
            ),
            // --- Flags ---
            sb(
                "exclusive",
                &["--exclusive", "job.sh"],
                Fields(&["exclusive=Node"]),
            ),
            sb(
                "exclusive user",
                &["--exclusive=user", "job.sh"],
                Fields(&["exclusive=User"]),
            ),
            sb(
                "exclusive garbage",
                &["--exclusive=yes", "job.sh"],
                Fails("sbatch: error: Invalid --exclusive specification\n", 255),
            ),
            sb(
                "test only",
                &["--test-only", "job.sh"],
                Fields(&["test_only=true"]),
            ),
            sb("hold", &["-H", "job.sh"], Fields(&["hold=true"])),
            sb(
                "parsable",
                &["--parsable", "job.sh"],
                Fields(&["parsable=true"]),
            ),
            sb("verbose", &["-vv", "job.sh"], Fields(&["verbose=2"])),
            sb(
                "requeue",
                &["--requeue", "job.sh"],
                Fields(&["requeue=true"]),
            ),
            sb(
                "no requeue",
                &["--no-requeue", "job.sh"],
                Fields(&["requeue=false"]),
            ),
            sb("wait", &["-W", "job.sh"], Fields(&["wait=true"])),
            sb(
                "chdir",
                &["-D", "/scratch", "job.sh"],
                Fields(&["chdir=/scratch"]),
            ),
            sb(
                "comment",
                &["--comment", "hi there", "job.sh"],
                Fields(&["comment=hi there"]),
            ),
            sb("nice default", &["--nice", "job.sh"], Fields(&["nice=100"])),
            sb("nice value", &["--nice=-5", "job.sh"], Fields(&["nice=-5"])),
            sb(
                "priority",
                &["--priority=10", "job.sh"],
                Fields(&["priority=Value(10)"]),
            ),
            sb(
                "priority top",
                &["--priority=top", "job.sh"],
                Fields(&["priority=Top"]),
            ),
            sb(
                "priority negative",
                &["--priority=-1", "job.sh"],
                Fails("sbatch: error: Priority must be >= 0\n", 255),
            ),
            sb(
                "mail",
                &["--mail-type=begin,END", "--mail-user=a@b", "job.sh"],
                Fields(&["mail_type=BEGIN,END", "mail_user=a@b"]),
            ),
            sb(
                "mail garbage",
                &["--mail-type=sometimes", "job.sh"],
                Fails("sbatch: error: Invalid --mail-type specification\n", 255),
            ),
            sb(
                "signal",
                &["--signal=B:USR1@120", "job.sh"],
                Fields(&[
                    "signal=SignalSpec { signal: 10, secs: 120, batch_only: true, \
                     reservation: false }",
                ]),
            ),
            sb(
                "signal default time",
                &["--signal=15", "job.sh"],
                Fields(&[
                    "signal=SignalSpec { signal: 15, secs: 60, batch_only: false, \
                     reservation: false }",
                ]),
            ),
            sb(
                "signal garbage",
                &["--signal=NOPE", "job.sh"],
                Fails("sbatch: error: Invalid --signal specification\n", 255),
            ),
            sb(
                "open mode",
                &["--open-mode=append", "job.sh"],
                Fields(&["open_mode=Append"]),
            ),
            sb(
                "open mode garbage",
                &["--open-mode=x", "job.sh"],
                Fails(
                    "sbatch: error: Invalid --open-mode argument: x. Ignored\n",
                    255,
                ),
            ),
            // arg_set_uid: only root
            sb(
                "uid",
                &["--uid=0", "job.sh"],
                Fails("sbatch: error: --uid only permitted by root user\n", 255),
            ),
            // accepted, not modelled
            sb(
                "reservation",
                &["--reservation=maint", "job.sh"],
                Fields(&["other=[(\"reservation\", Some(\"maint\"))]"]),
            ),
            // --- Files ---
            sb(
                "output",
                &["-o", "out-%j.txt", "job.sh"],
                Fields(&["output=out-%j.txt"]),
            ),
            sb(
                "error none",
                &["-e", "none", "job.sh"],
                Fields(&["error=/dev/null"]),
            ),
            sb(
                "input",
                &["-i", "in.txt", "job.sh"],
                Fields(&["input=in.txt"]),
            ),
            sb(
                "job name",
                &["-J", "train", "job.sh"],
                Fields(&["job_name=train"]),
            ),
            // --- Export ---
            sb(
                "export none",
                &["--export=NONE", "job.sh"],
                Fields(&["export=ExportSpec { base: None, vars: [] }"]),
            ),
            sb(
                "export list",
                &["--export=ALL,A=1,B", "job.sh"],
                Fields(&[
                    "export=ExportSpec { base: All, vars: [(\"A\", Some(\"1\")), (\"B\", None)] }",
                ]),
            ),
            // --- Arrays (_valid_array_inx) ---
            sb(
                "array range",
                &["-a", "0-3", "job.sh"],
                Fields(&["array=[0, 1, 2, 3]%None"]),
            ),
            sb(
                "array list",
                &["--array=1,3,5", "job.sh"],
                Fields(&["array=[1, 3, 5]%None"]),
            ),
            sb(
                "array step",
                &["--array=0-15:4", "job.sh"],
                Fields(&["array=[0, 4, 8, 12]%None"]),
            ),
            sb(
                "array throttle",
                &["--array=0-2%1", "job.sh"],
                Fields(&["array=[0, 1, 2]%Some(1)"]),
            ),
            sb(
                "array max",
                &["--array=1000", "job.sh"],
                Fields(&["array=[1000]%None"]),
            ),
            sb(
                "array too big",
                &["--array=1001-1002", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Invalid job array \
                     specification\n",
                    1,
                ),
            ),
            sb(
                "array reversed",
                &["--array=5-1", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Invalid job array \
                     specification\n",
                    1,
                ),
            ),
            sb(
                "array zero step",
                &["--array=1-5:0", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Invalid job array \
                     specification\n",
                    1,
                ),
            ),
            // --- Dependencies (update_job_dependency) ---
            sb(
                "dependency afterok",
                &["-d", "afterok:12:13", "job.sh"],
                Fields(&[
                    "dependency=all=true singleton=false [AfterOk:12:None+0 AfterOk:13:None+0]",
                ]),
            ),
            sb(
                "dependency any",
                &["-d", "afterany:5?afternotok:6_2", "job.sh"],
                Fields(&["dependency=all=false singleton=false [AfterAny:5:None+0 \
                     AfterNotOk:6:Some(2)+0]"]),
            ),
            sb(
                "dependency after time",
                &["-d", "after:7+30,singleton", "job.sh"],
                Fields(&["dependency=all=true singleton=true [After:7:None+30]"]),
            ),
            sb(
                "dependency corr array",
                &["-d", "aftercorr:9_*", "job.sh"],
                Fields(&["dependency=all=true singleton=false [AfterCorr:9:None+0]"]),
            ),
            // old format: bare job ids are afterany
            sb(
                "dependency bare",
                &["-d", "44", "job.sh"],
                Fields(&["dependency=all=true singleton=false [AfterAny:44:None+0]"]),
            ),
            sb(
                "dependency mixed separators",
                &["-d", "afterok:1,afterok:2?afterok:3", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Job dependency problem\n",
                    1,
                ),
            ),
            sb(
                "dependency unknown type",
                &["-d", "before:1", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Job dependency problem\n",
                    1,
                ),
            ),
            sb(
                "dependency time on afterok",
                &["-d", "afterok:1+5", "job.sh"],
                Fails(
                    "sbatch: error: Batch job submission failed: Job dependency problem\n",
                    1,
                ),
            ),
            // --- Script (sbatch.c _get_script_buffer, _script_wrap) ---
            sb(
                "missing script",
                &["nope.sh"],
                Fails("sbatch: error: Unable to open file nope.sh\n", 1),
            ),
            sb(
                "wrap with args",
                &["--wrap=hostname", "job.sh"],
                Fails(
                    "sbatch: error: Script arguments not permitted with --wrap option\n",
                    1,
                ),
            ),
            sb(
                "wrap",
                &["--wrap", "hostname", "-N1"],
                Fields(&["wrap=hostname", "nodes=(1, None)"]),
            ),
        ];
        let script = |why, body: &'static str, expect| Case {
            why,
            cmd: Cmd::Sbatch,
            args: &["s.sh"],
            env: NO_ENV,
            files: Box::leak(Box::new([("s.sh", body)])),
            expect,
        };
        c.extend([
            // DESCRIPTION: #SBATCH before the first command; shebang skipped
            script(
                "directives",
                "#!/bin/sh\n#SBATCH -N 2\n#SBATCH --time=10 -J x\nsrun hostname\n",
                Fields(&["nodes=(2, None)", "time=Minutes(10)", "job_name=x"]),
            ),
            // parsing stops at the first command
            script(
                "directives stop",
                "#!/bin/sh\n#SBATCH -N 2\nhostname\n#SBATCH -n 5\n",
                Fields(&["nodes=(2, None)"]),
            ),
            // blank lines and other comments do not stop it
            script(
                "directives comments",
                "#!/bin/sh\n\n# note\n   # indented\n#SBATCH -n 3\n",
                Fields(&["ntasks=3"]),
            ),
            // an indented #SBATCH is a comment, not a directive
            script(
                "indented directive",
                "#!/bin/sh\n  #SBATCH -n 3\n",
                Fields(&[]),
            ),
            // _get_argument: quotes group, no $VAR expansion
            script(
                "directive quotes",
                "#!/bin/sh\n#SBATCH --comment=\"a b $HOME\" -J 'x y'\n",
                Fields(&["job_name=x y", "comment=a b $HOME"]),
            ),
            // _get_argument: an unquoted # starts a comment
            script(
                "directive comment",
                "#!/bin/sh\n#SBATCH -n 2 # two tasks\n",
                Fields(&["ntasks=2"]),
            ),
            // _get_argument: unmatched quote
            script(
                "directive unmatched",
                "#!/bin/sh\n#SBATCH -J 'x\n",
                Fails(
                    "sbatch: error: s.sh: line 2: Unmatched `'` in [#SBATCH -J 'x]\n",
                    1,
                ),
            ),
            script(
                "directive operand",
                "#!/bin/sh\n#SBATCH -n 2 referencing\n",
                Fails(
                    "sbatch: error: Invalid directive found in batch script: referencing\n",
                    1,
                ),
            ),
            // an invalid directive is an error even when the command line overrides it
            script(
                "directive invalid",
                "#!/bin/sh\n#SBATCH --time=${T}\n",
                Fails("sbatch: error: Invalid --time specification\n", 255),
            ),
            script(
                "empty",
                "",
                Fails("sbatch: error: Batch script is empty!\n", 1),
            ),
            script(
                "whitespace",
                " \n\t\n",
                Fails("sbatch: error: Batch script contains only whitespace!\n", 1),
            ),
            script(
                "no shebang",
                "echo hi\n",
                Fails(
                    "sbatch: error: This does not look like a batch script.  The first\n\
                     sbatch: error: line must start with #! followed by the path to an \
                     interpreter.\nsbatch: error: For instance: #!/bin/sh\n",
                    1,
                ),
            ),
            script(
                "nul",
                "#!/bin/sh\n\0\n",
                Fails(
                    "sbatch: error: The Slurm controller does not allow scripts that\n\
                     sbatch: error: contain a NULL character '\\0'.\n",
                    1,
                ),
            ),
            script(
                "dos",
                "#!/bin/sh\r\necho\r\n",
                Fails(
                    "sbatch: error: Batch script contains DOS line breaks (\\r\\n)\n\
                     sbatch: error: instead of expected UNIX line breaks (\\n).\n",
                    1,
                ),
            ),
            script(
                "hetjob",
                "#!/bin/sh\n#SBATCH -n1\n#SBATCH hetjob\n#SBATCH -n2\n",
                Fails(
                    "sbatch: error: heterogeneous jobs are not supported by sovra\n",
                    1,
                ),
            ),
            // script from standard input
            Case {
                why: "stdin",
                cmd: Cmd::Sbatch,
                args: &["-n", "2"],
                env: NO_ENV,
                files: &[("-", "#!/bin/sh\n#SBATCH -J piped\n")],
                expect: Fields(&["ntasks=2", "job_name=piped"]),
            },
            Case {
                why: "stdin unreadable",
                cmd: Cmd::Sbatch,
                args: &[],
                env: NO_ENV,
                files: &[],
                expect: Fails("sbatch: error: Unable to open file -\n", 1),
            },
            // --- Precedence: command line > environment > script ---
            Case {
                why: "env over script",
                cmd: Cmd::Sbatch,
                args: &["s.sh"],
                env: &[("SBATCH_PARTITION", "env"), ("SBATCH_TIMELIMIT", "5")],
                files: &[("s.sh", "#!/bin/sh\n#SBATCH -p script -t 9 -A acct\n")],
                expect: Fields(&["time=Minutes(5)", "partitions=env", "account=acct"]),
            },
            Case {
                why: "cli over env",
                cmd: Cmd::Sbatch,
                args: &["-p", "cli", "s.sh"],
                env: &[("SBATCH_PARTITION", "env")],
                files: &[("s.sh", "#!/bin/sh\n#SBATCH -p script\n")],
                expect: Fields(&["partitions=cli"]),
            },
            Case {
                why: "env vars",
                cmd: Cmd::Sbatch,
                args: &["job.sh"],
                env: &[
                    ("SBATCH_ACCOUNT", "a"),
                    ("SBATCH_JOB_NAME", "n"),
                    ("SBATCH_GPUS", "2"),
                    ("SBATCH_EXCLUSIVE", "user"),
                    ("SBATCH_QOS", "q"),
                    ("SBATCH_ARRAY_INX", "1-2"),
                    ("SBATCH_OUTPUT", "o"),
                    ("SBATCH_ERROR", "e"),
                    ("SBATCH_EXPORT", "NIL"),
                    ("SBATCH_CONSTRAINT", "c"),
                    ("SBATCH_MEM_PER_GPU", "1G"),
                    ("SBATCH_GPUS_PER_NODE", "4"),
                    ("SBATCH_GRES", "gpu:1"),
                    ("SBATCH_WAIT", "1"),
                    ("SBATCH_REQUEUE", "1"),
                    ("UNRELATED", "x"),
                ],
                files: JOB,
                expect: Fields(&[
                    "gpus=(None, 2)",
                    "gpus_per_node=(None, 4)",
                    "gres=gpu:-:1",
                    "account=a",
                    "qos=q",
                    "constraint=c",
                    "memory=Gpu(1024)",
                    "exclusive=User",
                    "array=[1, 2]%None",
                    "job_name=n",
                    "output=o",
                    "error=e",
                    "export=ExportSpec { base: Nil, vars: [] }",
                    "requeue=true",
                    "wait=true",
                ]),
            },
            // _validate_memory_options: the command line clears the environment's
            Case {
                why: "mem cli over env",
                cmd: Cmd::Sbatch,
                args: &["--mem=1G", "job.sh"],
                env: &[("SBATCH_MEM_PER_CPU", "2G")],
                files: JOB,
                expect: Fields(&["memory=Node(1024)"]),
            },
            Case {
                why: "mem env exclusive",
                cmd: Cmd::Sbatch,
                args: &["job.sh"],
                env: &[("SBATCH_MEM_PER_CPU", "2G"), ("SBATCH_MEM_PER_NODE", "2G")],
                files: JOB,
                expect: Fails(
                    "sbatch: fatal: SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and \
                     SLURM_MEM_PER_NODE are mutually exclusive.\n",
                    1,
                ),
            },
            // script and command line both count as "cli"
            Case {
                why: "mem script and cli",
                cmd: Cmd::Sbatch,
                args: &["--mem=1G", "s.sh"],
                env: NO_ENV,
                files: &[("s.sh", "#!/bin/sh\n#SBATCH --mem-per-cpu=1G\n")],
                expect: Fails(
                    "sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually \
                     exclusive.\n",
                    1,
                ),
            },
            Case {
                why: "env invalid",
                cmd: Cmd::Sbatch,
                args: &["job.sh"],
                env: &[("SBATCH_TIMELIMIT", "soon")],
                files: JOB,
                expect: Fails("sbatch: error: Invalid --time specification\n", 255),
            },
            // -w file: contains '/'
            Case {
                why: "nodelist file",
                cmd: Cmd::Sbatch,
                args: &["-w", "./hosts", "job.sh"],
                env: NO_ENV,
                files: &[("job.sh", SCRIPT), ("./hosts", "n1\nn[2-3] # rack\n\n")],
                expect: Fields(&["nodelist=n1,n2,n3"]),
            },
            Case {
                why: "nodelist file missing",
                cmd: Cmd::Sbatch,
                args: &["-w", "/no/hosts", "job.sh"],
                env: NO_ENV,
                files: JOB,
                expect: Fails(
                    "sbatch: error: slurm_read_hostfile: open(/no/hosts): No such file or \
                     directory\n",
                    1,
                ),
            },
            // --- srun / salloc ---
            Case {
                why: "srun command",
                cmd: Cmd::Srun,
                args: &["-N2", "-l", "hostname", "-f"],
                env: NO_ENV,
                files: &[],
                expect: Fields(&[
                    "args=hostname -f",
                    "nodes=(2, None)",
                    "other=[(\"label\", None)]",
                ]),
            },
            Case {
                why: "srun no command",
                cmd: Cmd::Srun,
                args: &["-n1"],
                env: NO_ENV,
                files: &[],
                expect: Fails("srun: fatal: No command given to execute.\n", 1),
            },
            Case {
                why: "srun env",
                cmd: Cmd::Srun,
                args: &["-n", "2", "true"],
                env: &[
                    ("SLURM_NTASKS", "8"),
                    ("SLURM_PARTITION", "p"),
                    ("SBATCH_QOS", "no"),
                ],
                files: &[],
                expect: Has(&["args=true", "ntasks=2", "partitions=p"]),
            },
            Case {
                why: "srun no array option",
                cmd: Cmd::Srun,
                args: &["--array=1-2", "true"],
                env: NO_ENV,
                files: &[],
                expect: Fails(
                    "srun: unrecognized option '--array=1-2'\nTry \"srun --help\" for more \
                     information\n",
                    255,
                ),
            },
            Case {
                why: "srun -u is unbuffered",
                cmd: Cmd::Srun,
                args: &["-u", "true"],
                env: NO_ENV,
                files: &[],
                expect: Fields(&["args=true", "other=[(\"unbuffered\", None)]"]),
            },
            Case {
                why: "salloc",
                cmd: Cmd::Salloc,
                args: &["-G", "1", "--time=5"],
                env: &[("SALLOC_ACCOUNT", "x")],
                files: &[],
                expect: Fields(&["gpus=(None, 1)", "time=Minutes(5)", "account=x"]),
            },
            Case {
                why: "salloc version",
                cmd: Cmd::Salloc,
                args: &["--vers"],
                env: NO_ENV,
                files: &[],
                expect: Info(0, "slurm 22.05.11"),
            },
            Case {
                why: "srun unknown",
                cmd: Cmd::Srun,
                args: &["--bogus", "true"],
                env: NO_ENV,
                files: &[],
                expect: Fails(
                    "srun: unrecognized option '--bogus'\nTry \"srun --help\" for more \
                     information\n",
                    255,
                ),
            },
        ]);
        c
    }

    #[test]
    fn conformance_table() {
        let cases = cases();
        assert!(cases.len() >= 80, "only {} cases", cases.len());
        for case in &cases {
            check(case);
        }
    }

    #[test]
    fn wrap_script_text() {
        let Ok(Parsed::Request(r)) = run(Cmd::Sbatch, &["--wrap=echo #SBATCH -N 9"], &[], &[])
        else {
            panic!("wrap failed");
        };
        assert_eq!(
            r.script.as_deref(),
            Some("#!/bin/sh\n# This script was created by sbatch --wrap.\n\necho #SBATCH -N 9\n")
        );
        assert_eq!(r.nodes, None);
        assert_eq!(r.script_path, None);
    }

    #[test]
    fn script_text_is_kept() {
        let Ok(Parsed::Request(r)) = run(Cmd::Sbatch, &["job.sh"], &[], JOB) else {
            panic!("parse failed");
        };
        assert_eq!(r.script.as_deref(), Some(SCRIPT));
        assert_eq!(r.script_path.as_deref(), Some("job.sh"));
        assert_eq!(r.default_output(), "slurm-%j.out");
        let Ok(Parsed::Request(r)) = run(Cmd::Sbatch, &["-a", "1-3", "job.sh"], &[], JOB) else {
            panic!("parse failed");
        };
        assert_eq!(r.default_output(), "slurm-%A_%a.out");
        assert_eq!(r.array.as_ref().unwrap().indices, vec![1, 2, 3]);
    }

    #[test]
    fn server_rejections_for_the_glue() {
        assert_eq!(
            submission_failed(Cmd::Sbatch, INVALID_PARTITION),
            SlurmError {
                text: "sbatch: error: Batch job submission failed: Invalid partition name \
                       specified\n"
                    .into(),
                code: 1,
            }
        );
        assert_eq!(
            submission_failed(Cmd::Srun, INVALID_PARTITION).text,
            "srun: error: Unable to allocate resources: Invalid partition name specified\n"
        );
        assert_eq!(
            submission_failed(Cmd::Salloc, INVALID_PARTITION).text,
            "salloc: error: Job submit/allocate failed: Invalid partition name specified\n"
        );
    }

    #[test]
    fn output_patterns_as_fname_create() {
        let ctx = PatternCtx {
            job_id: 1234,
            array_job_id: Some(1200),
            array_task_id: Some(7),
            step_id: None,
            node: "gpu01".into(),
            node_id: 0,
            task_id: 3,
            user: "ana".into(),
            job_name: "train".into(),
        };
        let cases = [
            ("slurm-%j.out", "slurm-1234.out"),
            ("slurm-%A_%a.out", "slurm-1200_7.out"),
            ("%4a|%3j|%010j|%12j", "0007|1234|0000001234|0000001234"),
            (
                "%J %s %N %n %t %u %x %b",
                "1234 batch gpu01 0 3 ana train 7",
            ),
            ("100%%", "100%"),
            ("%q%", "%q%"),
            ("a\\%j", "a%j"),
        ];
        for (p, want) in cases {
            assert_eq!(expand_pattern(p, &ctx), want, "{p}");
        }
        let plain = PatternCtx {
            job_id: 5,
            step_id: Some(2),
            ..PatternCtx::default()
        };
        assert_eq!(expand_pattern("%A_%a %J %s", &plain), "5_4294967294 5.2 2");
    }

    #[test]
    fn random_arguments_never_panic() {
        use proptest::prelude::*;
        let words = prop::sample::select(vec![
            "-N",
            "-n",
            "-c",
            "-G",
            "-t",
            "-p",
            "-w",
            "-x",
            "-a",
            "-d",
            "-o",
            "--mem",
            "--mem=",
            "--gres=",
            "--gpus-per-node",
            "--array=",
            "--dependency=",
            "--begin=",
            "--signal=",
            "--nice",
            "--export=",
            "--time=",
            "--wrap",
            "-",
            "--",
            ":",
            "job.sh",
            "x",
            "1-",
            "%",
            "0",
            "-1",
            "99999999999999999999",
            "a100:4",
            "gpu:x:y:z",
            "[",
            "n[1-",
            "afterok:1?2,3",
            "1-5:0%",
            "now+",
            "\u{e9}",
            "-HQv",
            "--exc",
            "--e",
            "--uid",
            "--mem-per-cpu=1",
            "--mem-per-gpu=1",
        ]);
        let runner_cfg = ProptestConfig {
            cases: 2000,
            ..ProptestConfig::default()
        };
        let mut runner = proptest::test_runner::TestRunner::new(runner_cfg);
        runner
            .run(
                &(
                    prop::collection::vec(words, 0..8),
                    prop::collection::vec(any::<char>(), 0..40),
                    0..3u8,
                ),
                |(args, chars, cmd)| {
                    let cmd = [Cmd::Sbatch, Cmd::Srun, Cmd::Salloc][cmd as usize];
                    let script: String = chars.into_iter().collect();
                    let body = format!("#!/bin/sh\n#SBATCH {script}\n");
                    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                    let read = |_: Option<&Path>| Ok(body.clone().into_bytes());
                    let _ = parse(cmd, &args, &BTreeMap::new(), CLOCK, &read);
                    let _ = expand_pattern(&script, &PatternCtx::default());
                    let _ = time::parse_begin(&script, CLOCK.now, 0);
                    let _ = time::parse_time_limit(&script);
                    Ok(())
                },
            )
            .unwrap();
    }
}
