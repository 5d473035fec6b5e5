//! `squeue`: options, filters, sorting and the `-o`/`-O` format engines over
//! [`super::model::View`], byte for byte as Slurm 22.05 prints them.
//!
//! Sources (SchedMD/slurm, 22.05): `src/squeue/opts.c` (options, environment variables,
//! default formats, `parse_format`/`_parse_token`, `parse_long_format`/`_parse_long_token`,
//! state and job lists), `src/squeue/print.c` (`_print_str` padding and truncation, each
//! field's header and value, `_combine_pending_array_tasks`, `_filter_job`),
//! `src/squeue/sort.c` (default sort `P,t,-p`), `src/common/parse_time.c`
//! (`secs2time_str`, `mins2time_str`, `slurm_make_time_str`).
//!
//! Also home of the small helpers the other formatters share (`fmt_field`, the time
//! formats, `convert_num_unit`, a `getopt_long` work-alike), until `time.rs` takes the time
//! ones over.
//!
//! Choices where sovra has no equivalent:
//! - `-i/--iterate` prints once, with the date line Slurm prints before each iteration.
//! - `--json`/`--yaml` are refused (exit 1) with a message naming the sovra CLI instead.
//! - `-V` prints `slurm 22.05.11`, the last 22.05 release, which the shim imitates.
//! - Times are printed in UTC (`tz_offset_s` is 0); the helpers take an offset.
//! - A user name that no job has is not an error (`Invalid user`), since the view does
//!   not hold the password database; it simply matches nothing.
//! - Ties left by the sort keys keep job id order (Slurm keeps the controller's order).

use std::collections::BTreeMap;

use sovra_fabric::slurm::hostlist;

use super::model::{Job, JobState, Output, View};

/// The Slurm release the shim answers as (`-V`).
pub(super) const SLURM_VERSION: &str = "slurm 22.05.11";

/// Widths above this are clamped: a user's format string must not make us allocate
/// gigabytes (Slurm would overflow an `int`).
const WIDTH_MAX: usize = 4096;

// ---------------------------------------------------------------------------------------
// Shared helpers.

/// Slurm's `_print_str` (`squeue/print.c`, `sinfo/print.c`): `width` 0 prints `text` as is;
/// left-justified text is cut to `width` (`%.Ns`) and padded; right-justified text is
/// padded on the left (`%Ns`) and, when `cut`, cut to its first `width` characters.
pub(super) fn fmt_field(text: &str, width: usize, right: bool, cut: bool) -> String {
    if width == 0 {
        return text.to_string();
    }
    let n = text.chars().count();
    let mut out = String::with_capacity(width.max(n));
    if right {
        for _ in n..width {
            out.push(' ');
        }
        out.push_str(text);
        if cut && n > width {
            out = out.chars().take(width).collect();
        }
    } else {
        out.extend(text.chars().take(width));
        for _ in n..width {
            out.push(' ');
        }
    }
    out
}

/// `_print_secs` of `squeue/print.c` and `sinfo/print.c`: `M:SS`, `H:MM:SS`,
/// `D-HH:MM:SS`; negative or over a year is `INVALID`.
pub(super) fn print_secs(secs: i64) -> String {
    super::time::format_duration(secs)
}

/// `secs2time_str` (`common/parse_time.c`): `HH:MM:SS` or `D-HH:MM:SS`.
pub(super) fn secs2time_str(secs: i64) -> String {
    super::time::format_secs_long(Some(secs))
}

/// `mins2time_str` (`common/parse_time.c`); `None` is `UNLIMITED`.
pub(super) fn mins2time_str(mins: Option<u64>) -> String {
    super::time::format_mins(mins)
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour, minute, second, weekday 0=Sunday) of `t` shifted by
/// `tz_offset_s`.
fn broken_down(t: i64, tz_offset_s: i32) -> (i64, u32, u32, i64, i64, i64, i64) {
    let t = t.saturating_add(i64::from(tz_offset_s));
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, mo, d) = civil_from_days(days);
    let wday = (days + 4).rem_euclid(7);
    (y, mo, d, secs / 3600, secs / 60 % 60, secs % 60, wday)
}

/// `slurm_make_time_str` with Slurm's default `%FT%T` format; 0 is `Unknown`.
pub(super) fn make_time_str(t: i64, tz_offset_s: i32) -> String {
    super::time::format_timestamp(t, tz_offset_s)
}

/// `ctime(3)` without the newline: `Thu Jan  1 00:00:00 1970` (the date line of
/// `squeue -i` and `sinfo -l`).
pub(super) fn ctime_str(t: i64, tz_offset_s: i32) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = broken_down(t, tz_offset_s);
    format!(
        "{} {} {d:2} {h:02}:{mi:02}:{s:02} {y}",
        DAYS[wd as usize],
        MONTHS[(mo as usize).saturating_sub(1).min(11)]
    )
}

/// Unix seconds of a civil date and time (UTC), the inverse of [`civil_from_days`].
pub(super) fn unix_time(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((mo + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
}

/// `convert_num_unit` with `CONVERT_NUM_UNIT_EXACT`: divides by 1024 while it stays exact.
/// `unit` is the unit of `value`: 0 none, 1 K, 2 M (memory in MiB), ...
pub(super) fn convert_num_unit(value: u64, unit: usize) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let (mut v, mut u) = (value, unit.min(UNITS.len() - 1));
    while v >= 1024 && v % 1024 == 0 && u + 1 < UNITS.len() {
        v /= 1024;
        u += 1;
    }
    format!("{v}{}", UNITS[u])
}

/// A job's node list as slurmctld prints it: ranged, sorted, each node once.
pub(super) fn nodelist(nodes: &[String]) -> String {
    hostlist::compress_unique(nodes)
}

/// What a `getopt_long` option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArgKind {
    /// No argument.
    None,
    /// A required argument (`-o X`, `-oX`, `--format=X`, `--format X`).
    Required,
    /// An optional argument (`-jX`, `--jobs=X` only).
    Optional,
}

/// One option: its short letter, long names, argument, and the id the caller matches on.
pub(super) struct OptSpec {
    pub short: Option<char>,
    pub long: &'static [&'static str],
    pub arg: ArgKind,
    pub id: &'static str,
}

/// A parsed command line element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    /// An option (by id) and its argument.
    Opt(&'static str, Option<String>),
    /// A non-option argument (GNU getopt permutes them to the end).
    Positional(String),
}

/// GNU `getopt_long`: clustered short options, long options by unique prefix, `--`.
/// An error is glibc's message (`prog: invalid option -- 'Z'`).
pub(super) fn getopt(
    prog: &str,
    args: &[String],
    specs: &[OptSpec],
) -> Result<Vec<Parsed>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.extend(args[i..].iter().cloned().map(Parsed::Positional));
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let exact = specs.iter().find(|s| s.long.contains(&name));
            let spec = match exact {
                Some(s) => s,
                None => {
                    let matches: Vec<(&str, &OptSpec)> = specs
                        .iter()
                        .flat_map(|s| s.long.iter().map(move |l| (*l, s)))
                        .filter(|(l, _)| l.starts_with(name))
                        .collect();
                    let Some(&(_, first)) = matches.first() else {
                        return Err(format!("{prog}: unrecognized option '--{name}'\n"));
                    };
                    if matches.iter().any(|(_, s)| s.id != first.id) {
                        let mut msg =
                            format!("{prog}: option '--{name}' is ambiguous; possibilities:");
                        for (l, _) in &matches {
                            msg.push_str(&format!(" '--{l}'"));
                        }
                        msg.push('\n');
                        return Err(msg);
                    }
                    first
                }
            };
            let long = spec
                .long
                .iter()
                .find(|l| l.starts_with(name))
                .unwrap_or(&name);
            match spec.arg {
                ArgKind::None if value.is_some() => {
                    return Err(format!(
                        "{prog}: option '--{long}' doesn't allow an argument\n"
                    ))
                }
                ArgKind::None | ArgKind::Optional => out.push(Parsed::Opt(spec.id, value)),
                ArgKind::Required => {
                    let v = match value {
                        Some(v) => v,
                        None if i < args.len() => {
                            i += 1;
                            args[i - 1].clone()
                        }
                        None => {
                            return Err(format!("{prog}: option '--{long}' requires an argument\n"))
                        }
                    };
                    out.push(Parsed::Opt(spec.id, Some(v)));
                }
            }
            continue;
        }
        if a.len() < 2 || !a.starts_with('-') {
            out.push(Parsed::Positional(a.clone()));
            continue;
        }
        let chars: Vec<char> = a.chars().skip(1).collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            let Some(spec) = specs.iter().find(|s| s.short == Some(c)) else {
                return Err(format!("{prog}: invalid option -- '{c}'\n"));
            };
            let rest: String = chars[k..].iter().collect();
            match spec.arg {
                ArgKind::None => out.push(Parsed::Opt(spec.id, None)),
                ArgKind::Optional => {
                    out.push(Parsed::Opt(spec.id, (!rest.is_empty()).then_some(rest)));
                    break;
                }
                ArgKind::Required => {
                    let v = if !rest.is_empty() {
                        rest
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(format!("{prog}: option requires an argument -- '{c}'\n"));
                    };
                    out.push(Parsed::Opt(spec.id, Some(v)));
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Splits like `strtok_r(s, ",")`: empty items are dropped.
pub(super) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Job states.

/// `job_state_num` (`common/slurm_protocol_defs.c`): the names `-t` accepts, long and
/// compact, case-insensitive. States the model has are `Some`; the others are accepted
/// and match no job.
fn job_state_num(name: &str) -> Option<Option<JobState>> {
    const OTHER: [(&str, &str); 11] = [
        ("RESIZING", "RS"),
        ("REVOKED", "RV"),
        ("SPECIAL_EXIT", "SE"),
        ("REQUEUE_FED", "RF"),
        ("REQUEUE_HOLD", "RH"),
        ("RESV_DEL_HOLD", "RD"),
        ("SIGNALING", "SI"),
        ("STAGE_OUT", "SO"),
        ("STOPPED", "ST"),
        ("POWER_UP_NODE", "PU"),
        ("UPDATE_DB", "UD"),
    ];
    if let Some(s) = JobState::from_name(name) {
        return Some(Some(s));
    }
    OTHER
        .iter()
        .any(|(l, s)| name.eq_ignore_ascii_case(l) || name.eq_ignore_ascii_case(s))
        .then_some(None)
}

/// `_parse_state`'s second message (`squeue/opts.c`).
const VALID_JOB_STATES: &str = "PENDING,RUNNING,SUSPENDED,COMPLETED,CANCELLED,FAILED,TIMEOUT,\
NODE_FAIL,PREEMPTED,BOOT_FAIL,DEADLINE,OUT_OF_MEMORY,COMPLETING,CONFIGURING,RESIZING,REVOKED,\
SPECIAL_EXIT";

/// The states a `-t` list names: `None` for `all`.
fn parse_states(prog: &str, list: &str) -> Result<Option<Vec<JobState>>, String> {
    if list.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let mut states = Vec::new();
    for name in split_list(list) {
        match job_state_num(&name) {
            Some(s) => states.extend(s),
            None => {
                return Err(format!(
                    "{prog}: error: Invalid job state specified: {name}\n\
                     {prog}: error: Valid job states include: {VALID_JOB_STATES}\n\n"
                ))
            }
        }
    }
    Ok(Some(states))
}

// ---------------------------------------------------------------------------------------
// squeue.

/// One line of output: a job, or pending tasks of an array folded into one record.
struct Row<'a> {
    job: &'a Job,
    /// `array_task_str` of a folded record (`3-15`, `1,4`).
    array_tasks: Option<String>,
}

/// A field of a `-o`/`-O` format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// A `%` letter of `-o` (`%i`) or the letter a `-O` name stands for.
    Letter(char),
    /// `-O` names without a letter.
    Cluster,
    StdOut,
    StdErr,
    StdIn,
    ExitCode,
    CpusPerTask,
    EligibleTime,
    Requeue,
    RestartCnt,
    BatchFlag,
    PendingTime,
    TresAlloc,
    TresPerJob,
    NumTasks,
    AccrueTime,
    /// Literal text: a prefix, or an invalid specification printed back (`%$`).
    Literal,
}

/// One element of a parsed format.
struct Spec {
    field: Field,
    width: usize,
    right: bool,
    suffix: String,
}

/// `-O` names (`parse_long_format`, case-insensitive) and what they print.
const LONG_FIELDS: &[(&str, Field)] = &[
    ("account", Field::Letter('a')),
    ("jobid", Field::Letter('A')),
    ("gres", Field::Letter('b')),
    ("tres-per-node", Field::Letter('b')),
    ("batchhost", Field::Letter('B')),
    ("mincpus", Field::Letter('c')),
    ("numcpus", Field::Letter('C')),
    ("mintmpdisk", Field::Letter('d')),
    ("numnodes", Field::Letter('D')),
    ("endtime", Field::Letter('e')),
    ("dependency", Field::Letter('E')),
    ("feature", Field::Letter('f')),
    ("arrayjobid", Field::Letter('F')),
    ("groupname", Field::Letter('g')),
    ("groupid", Field::Letter('G')),
    ("oversubscribe", Field::Letter('h')),
    ("shared", Field::Letter('h')),
    ("sockets", Field::Letter('H')),
    ("jobarrayid", Field::Letter('i')),
    ("cores", Field::Letter('I')),
    ("name", Field::Letter('j')),
    ("threads", Field::Letter('J')),
    ("comment", Field::Letter('k')),
    ("arraytaskid", Field::Letter('K')),
    ("timelimit", Field::Letter('l')),
    ("timeleft", Field::Letter('L')),
    ("minmemory", Field::Letter('m')),
    ("timeused", Field::Letter('M')),
    ("reqnodes", Field::Letter('n')),
    ("nodelist", Field::Letter('N')),
    ("command", Field::Letter('o')),
    ("contiguous", Field::Letter('O')),
    ("priority", Field::Letter('p')),
    ("partition", Field::Letter('P')),
    ("qos", Field::Letter('q')),
    ("prioritylong", Field::Letter('Q')),
    ("reason", Field::Letter('r')),
    ("reasonlist", Field::Letter('R')),
    ("selectjobinfo", Field::Letter('s')),
    ("starttime", Field::Letter('S')),
    ("statecompact", Field::Letter('t')),
    ("state", Field::Letter('T')),
    ("username", Field::Letter('u')),
    ("userid", Field::Letter('U')),
    ("reservation", Field::Letter('v')),
    ("submittime", Field::Letter('V')),
    ("wckey", Field::Letter('w')),
    ("licenses", Field::Letter('W')),
    ("excnodes", Field::Letter('x')),
    ("corespec", Field::Letter('X')),
    ("nice", Field::Letter('y')),
    ("schednodes", Field::Letter('Y')),
    ("sct", Field::Letter('z')),
    ("workdir", Field::Letter('Z')),
    ("cluster", Field::Cluster),
    ("stdout", Field::StdOut),
    ("stderr", Field::StdErr),
    ("stdin", Field::StdIn),
    ("exit_code", Field::ExitCode),
    ("cpus-per-task", Field::CpusPerTask),
    ("cpuspertask", Field::CpusPerTask),
    ("eligibletime", Field::EligibleTime),
    ("requeue", Field::Requeue),
    ("restartcnt", Field::RestartCnt),
    ("batchflag", Field::BatchFlag),
    ("pendingtime", Field::PendingTime),
    ("tres", Field::TresAlloc),
    ("tres-alloc", Field::TresAlloc),
    ("tres-per-job", Field::TresPerJob),
    ("accruetime", Field::AccrueTime),
];

/// `parse_format` (`squeue/opts.c`): text before the first `%` is a prefix; the rest is
/// split on `%` (empty pieces dropped, so `%%` prints nothing); each piece is
/// `[.][width]letter suffix`. An unknown letter prints `%piece` back and is reported.
fn parse_format(format: &str, err: &mut String) -> Vec<Spec> {
    let mut specs = Vec::new();
    let expanded;
    let format = if format.eq_ignore_ascii_case("%all") {
        let mut s = String::from("%a");
        for c in ('b'..='z').chain('A'..='Z') {
            s.push_str(&format!("|%{c}"));
        }
        expanded = s;
        expanded.as_str()
    } else {
        format
    };
    let (prefix, rest) = match format.find('%') {
        Some(p) => (&format[..p], &format[p..]),
        None => (format, ""),
    };
    if !prefix.is_empty() {
        specs.push(Spec {
            field: Field::Literal,
            width: 0,
            right: false,
            suffix: prefix.into(),
        });
    }
    for token in rest.split('%').filter(|t| !t.is_empty()) {
        let mut chars = token.char_indices().peekable();
        let right = matches!(chars.peek(), Some((_, '.')));
        if right {
            chars.next();
        }
        let mut width: usize = 0;
        while let Some((_, c)) = chars.peek().copied() {
            let Some(d) = c.to_digit(10) else { break };
            width = (width * 10 + d as usize).min(WIDTH_MAX);
            chars.next();
        }
        let letter = chars.next();
        let suffix = match chars.peek() {
            Some((p, _)) => token[*p..].to_string(),
            None => String::new(),
        };
        match letter {
            Some((_, c)) if c.is_ascii_alphabetic() => specs.push(Spec {
                field: Field::Letter(c),
                width,
                right,
                suffix,
            }),
            other => {
                let c = other.map(|(_, c)| c.to_string()).unwrap_or_default();
                err.push_str(&format!(
                    "squeue: error: Invalid job format specification: {c}\n"
                ));
                specs.push(Spec {
                    field: Field::Literal,
                    width: 0,
                    right: false,
                    suffix: format!("%{token}"),
                });
            }
        }
    }
    specs
}

/// `parse_long_format` (`squeue/opts.c`): comma-separated `name[:[.][width]][suffix]`; a
/// name without `:` is 20 wide, left-justified.
fn parse_long_format(format: &str, err: &mut String) -> Vec<Spec> {
    let mut specs = Vec::new();
    for token in format.split(',').filter(|t| !t.is_empty()) {
        let (name, width, right, suffix) = match token.split_once(':') {
            None => (token, 20, false, String::new()),
            Some((name, rest)) => {
                let (right, rest) = match rest.strip_prefix('.') {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                let digits =
                    rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let width = rest[..digits].bytes().fold(0usize, |w, b| {
                    (w * 10 + usize::from(b - b'0')).min(WIDTH_MAX)
                });
                (name, width, right, rest[digits..].to_string())
            }
        };
        let lower = name.to_ascii_lowercase();
        let field = LONG_FIELDS
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, f)| *f);
        let field = match field {
            Some(f) => f,
            // `numtasks` is matched on its first 7 letters.
            None if lower.get(..7).is_some_and(|p| "numtasks".starts_with(p)) => Field::NumTasks,
            None => {
                err.push_str(&format!(
                    "squeue: error: Invalid job format specification: {name}\n"
                ));
                Field::Literal
            }
        };
        specs.push(Spec {
            field,
            width,
            right,
            suffix,
        });
    }
    specs
}

/// A field's header (`print.c`) and whether its value may be cut to the width.
fn header(field: Field) -> &'static str {
    match field {
        Field::Letter(c) => match c {
            'a' => "ACCOUNT",
            'A' => "JOBID",
            'b' => "TRES_PER_NODE",
            'B' => "EXEC_HOST",
            'c' => "MIN_CPUS",
            'C' => "CPUS",
            'd' => "MIN_TMP_DISK",
            'D' => "NODES",
            'e' => "END_TIME",
            'E' => "DEPENDENCY",
            'f' => "FEATURES",
            'F' => "ARRAY_JOB_ID",
            'g' => "GROUP",
            'G' => "GROUP",
            'h' => "OVER_SUBSCRIBE",
            'H' => "SOCKETS_PER_NODE",
            'i' => "JOBID",
            'I' => "CORES_PER_SOCKET",
            'j' => "NAME",
            'J' => "THREADS_PER_CORE",
            'k' => "COMMENT",
            'K' => "ARRAY_TASK_ID",
            'l' => "TIME_LIMIT",
            'L' => "TIME_LEFT",
            'm' => "MIN_MEMORY",
            'M' => "TIME",
            'n' => "REQ_NODES",
            'N' => "NODELIST",
            'o' => "COMMAND",
            'O' => "CONTIGUOUS",
            'p' | 'Q' => "PRIORITY",
            'P' => "PARTITION",
            'q' => "QOS",
            'r' => "REASON",
            'R' => "NODELIST(REASON)",
            's' => "SELECT_JOBINFO",
            'S' => "START_TIME",
            't' => "ST",
            'T' => "STATE",
            'u' => "USER",
            'U' => "UID",
            'v' => "RESERVATION",
            'V' => "SUBMIT_TIME",
            'w' => "WCKEY",
            'W' => "LICENSES",
            'x' => "EXC_NODES",
            'X' => "CORE_SPEC",
            'y' => "NICE",
            'Y' => "SCHEDNODES",
            'z' => "S:C:T",
            'Z' => "WORK_DIR",
            _ => "",
        },
        Field::Cluster => "CLUSTER",
        Field::StdOut => "STDOUT",
        Field::StdErr => "STDERR",
        Field::StdIn => "STDIN",
        Field::ExitCode => "EXIT_CODE",
        Field::CpusPerTask => "CPUS_PER_TASK",
        Field::EligibleTime => "ELIGIBLE_TIME",
        Field::Requeue => "REQUEUE",
        Field::RestartCnt => "RESTARTCNT",
        Field::BatchFlag => "BATCHFLAG",
        Field::PendingTime => "PENDING_TIME",
        Field::TresAlloc => "TRES_ALLOC",
        Field::TresPerJob => "TRES_PER_JOB",
        Field::NumTasks => "TASKS",
        Field::AccrueTime => "ACCRUE_TIME",
        Field::Literal => "",
    }
}

/// Seconds the job has run (`_print_job_time_used`): 0 while pending, to `now` while
/// running, to its end after.
pub(super) fn time_used(job: &Job, now: i64) -> i64 {
    let Some(start) = job.start_time else {
        return 0;
    };
    if job.state == JobState::Pending {
        return 0;
    }
    let end = if job.state.is_finished() || job.state == JobState::Completing {
        job.end_time.unwrap_or(now)
    } else {
        now
    };
    (end - start).max(0)
}

/// `job_reason_string`, with `None` for no reason.
pub(super) fn reason(job: &Job) -> &str {
    if job.reason.is_empty() {
        "None"
    } else {
        &job.reason
    }
}

/// Whether a job has a batch script (`BatchFlag=1`).
pub(super) fn is_batch(job: &Job) -> bool {
    !job.command.is_empty() && job.command != "(null)"
}

/// `TRES=` of a job in TRES id order (`cpu,mem,node,billing,gres/gpu`), as scontrol and
/// squeue print it; `sorted` gives sacct's alphabetical order.
pub(super) fn job_tres(job: &Job, sorted: bool) -> String {
    let mem = job
        .mem_per_node_mb
        .saturating_mul(u64::from(job.num_nodes.max(1)));
    let mut items = vec![
        ("cpu", job.num_cpus.to_string()),
        ("mem", convert_num_unit(mem, 2)),
        ("node", job.num_nodes.to_string()),
        ("billing", job.num_cpus.to_string()),
    ];
    if mem == 0 {
        items.retain(|(k, _)| *k != "mem");
    }
    if job.gpus > 0 {
        items.push(("gres/gpu", job.gpus.to_string()));
    }
    if sorted {
        items.sort_by(|a, b| a.0.cmp(b.0));
    }
    let parts: Vec<String> = items.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

fn or_null(s: &str) -> &str {
    if s.is_empty() {
        "(null)"
    } else {
        s
    }
}

fn time_or_na(t: Option<i64>) -> String {
    match t {
        Some(t) if t != 0 => make_time_str(t, 0),
        _ => "N/A".into(),
    }
}

/// A field's value for a row, and whether Slurm may cut it (`cut_output`); node lists are
/// never cut.
fn value(field: Field, row: &Row, view: &View) -> (String, bool) {
    let job = row.job;
    let now = view.now;
    let s = match field {
        Field::Letter(c) => match c {
            'a' => job.account.clone(),
            'A' => job.job_id.to_string(),
            'b' => {
                if job.tres_per_node.is_empty() {
                    "N/A".into()
                } else {
                    job.tres_per_node.clone()
                }
            }
            'B' => job.batch_host.clone().unwrap_or_else(|| "n/a".into()),
            'c' => job.cpus_per_task.to_string(),
            'C' => convert_num_unit(u64::from(job.num_cpus), 0),
            'd' => "0".into(),
            'D' => convert_num_unit(u64::from(job.num_nodes), 0),
            'e' => match (job.end_time, job.start_time, job.time_limit_min) {
                (Some(e), _, _) => make_time_str(e, 0),
                (None, Some(_), None) if !job.state.is_finished() => "NONE".into(),
                (None, Some(s), Some(l)) => make_time_str(s + l as i64 * 60, 0),
                _ => "N/A".into(),
            },
            'E' => or_null(&job.dependency).into(),
            'f' => or_null(&job.features).into(),
            'F' => job.array_job_id.unwrap_or(job.job_id).to_string(),
            'g' => job.group.clone(),
            'G' => job.gid.to_string(),
            'h' => "OK".into(),
            'H' | 'I' | 'J' => "*".into(),
            'i' => match (job.array_job_id, &row.array_tasks, job.array_task_id) {
                (Some(a), Some(tasks), _) => format!("{a}_[{tasks}]"),
                (Some(a), None, Some(t)) => format!("{a}_{t}"),
                _ => job.job_id.to_string(),
            },
            'j' => job.name.clone(),
            'k' => or_null(&job.comment).into(),
            'K' => match (&row.array_tasks, job.array_task_id) {
                (Some(tasks), _) => tasks.clone(),
                (None, Some(t)) => t.to_string(),
                _ => "N/A".into(),
            },
            // Times are printed whole (`_print_secs(.., false)`), wider than their column.
            'l' => {
                let s = match job.time_limit_min {
                    None => "UNLIMITED".into(),
                    Some(m) => print_secs(m.min(1 << 40) as i64 * 60),
                };
                return (s, false);
            }
            'L' => {
                let s = match job.time_limit_min {
                    None => "UNLIMITED".into(),
                    Some(m) => print_secs(m.min(1 << 40) as i64 * 60 - time_used(job, now)),
                };
                return (s, false);
            }
            'm' => convert_num_unit(job.mem_per_node_mb, 2),
            'M' => return (print_secs(time_used(job, now)), false),
            'n' => return (hostlist::compress(&job.req_nodes), false),
            'N' => return (nodelist(&job.nodes), false),
            'o' => job.command.clone(),
            'O' => "0".into(),
            'p' => format!("{:16.14}", f64::from(job.priority) / f64::from(u32::MAX)),
            'P' => job.partition.clone(),
            'q' => job.qos.clone(),
            'Q' => job.priority.to_string(),
            'r' => reason(job).into(),
            'R' => {
                if job.state != JobState::Completing
                    && matches!(
                        job.state,
                        JobState::Pending | JobState::Timeout | JobState::Failed
                    )
                {
                    format!("({})", reason(job))
                } else {
                    return (nodelist(&job.nodes), false);
                }
            }
            's' => "N/A".into(),
            'S' => time_or_na(job.start_time),
            't' => job.state.short().into(),
            'T' => job.state.long().into(),
            'u' => job.user.clone(),
            'U' => job.uid.to_string(),
            'v' | 'w' | 'W' | 'Y' => "(null)".into(),
            'V' => time_or_na(Some(job.submit_time)),
            'x' => return (hostlist::compress(&job.exc_nodes), false),
            'X' => "N/A".into(),
            'y' => job.nice.to_string(),
            'z' => "*:*:*".into(),
            'Z' => job.work_dir.clone(),
            _ => String::new(),
        },
        Field::Cluster => view.cluster.clone(),
        Field::StdOut => job.stdout.clone(),
        Field::StdErr => job.stderr.clone(),
        Field::StdIn => "/dev/null".into(),
        Field::ExitCode => format!("{}:{}", job.exit_code, job.exit_signal),
        Field::CpusPerTask => job.cpus_per_task.to_string(),
        Field::EligibleTime => time_or_na(job.eligible_time),
        Field::Requeue => u8::from(job.requeue).to_string(),
        Field::RestartCnt => job.restarts.to_string(),
        Field::BatchFlag => u8::from(is_batch(job)).to_string(),
        Field::PendingTime => {
            let since = job.eligible_time.unwrap_or(job.submit_time);
            let until = if job.state == JobState::Pending {
                now
            } else {
                job.start_time.unwrap_or(now)
            };
            (until - since).max(0).to_string()
        }
        Field::TresAlloc => job_tres(job, false),
        Field::TresPerJob => "N/A".into(),
        Field::NumTasks => job.num_tasks.to_string(),
        Field::AccrueTime => time_or_na(job.eligible_time),
        Field::Literal => String::new(),
    };
    (s, true)
}

/// Prints the header (`row` None) or one row.
fn render_line(specs: &[Spec], row: Option<&Row>, view: &View, out: &mut String) {
    for spec in specs {
        if spec.field != Field::Literal {
            let (text, cut) = match row {
                None => (header(spec.field).to_string(), true),
                Some(r) => value(spec.field, r, view),
            };
            out.push_str(&fmt_field(&text, spec.width, spec.right, cut));
        }
        out.push_str(&spec.suffix);
    }
    out.push('\n');
}

/// `_combine_pending_array_tasks` (`squeue/print.c`): pending tasks of one array with the
/// same name and partition fold into the first one, whose `%i` becomes `12_[3-15]`.
fn fold_arrays<'a>(jobs: Vec<&'a Job>) -> Vec<Row<'a>> {
    let mut rows: Vec<Row> = Vec::new();
    let mut tasks: Vec<Vec<u32>> = Vec::new();
    for job in jobs {
        let folded = match (job.state, job.array_job_id, job.array_task_id) {
            (JobState::Pending, Some(a), Some(t)) => rows
                .iter()
                .position(|r| {
                    r.job.state == JobState::Pending
                        && r.job.array_job_id == Some(a)
                        && r.job.array_task_id.is_some()
                        && r.job.name == job.name
                        && r.job.partition == job.partition
                })
                .map(|i| (i, t)),
            _ => None,
        };
        match folded {
            Some((i, t)) => tasks[i].push(t),
            None => {
                tasks.push(job.array_task_id.into_iter().collect());
                rows.push(Row {
                    job,
                    array_tasks: None,
                });
            }
        }
    }
    for (row, mut ids) in rows.iter_mut().zip(tasks) {
        if ids.len() > 1 {
            ids.sort_unstable();
            ids.dedup();
            row.array_tasks = Some(bit_fmt(&ids));
        }
    }
    rows
}

/// `bit_fmt`: sorted ids as `1,3-5`.
fn bit_fmt(ids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if i == j {
            out.push_str(&ids[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", ids[i], ids[j]));
        }
        i = j + 1;
    }
    out
}

/// `sort_job_list` (`squeue/sort.c`): keys applied from last to first with a stable sort;
/// `-` reverses. An unknown key is reported and skipped.
fn sort_rows(rows: &mut [Row], keys: &str, now: i64, err: &mut String) {
    let chars: Vec<char> = keys.chars().collect();
    let mut i = chars.len();
    while i > 0 {
        i -= 1;
        let c = chars[i];
        if matches!(c, ',' | '+' | '-') {
            continue;
        }
        let reverse = i > 0 && chars[i - 1] == '-';
        let key = |r: &Row| -> SortKey {
            let j = r.job;
            match c {
                'a' => SortKey::Str(j.account.clone()),
                'A' | 'i' => SortKey::Num(j.job_id as i64),
                'F' => SortKey::Num(j.array_job_id.unwrap_or(j.job_id) as i64),
                'K' => SortKey::Num(j.array_task_id.map_or(-1, i64::from)),
                'C' => SortKey::Num(i64::from(j.num_cpus)),
                'c' => SortKey::Num(i64::from(j.cpus_per_task)),
                'D' => SortKey::Num(i64::from(j.num_nodes)),
                'e' => SortKey::Num(j.end_time.unwrap_or(0)),
                'g' => SortKey::Str(j.group.clone()),
                'G' => SortKey::Num(i64::from(j.gid)),
                'j' => SortKey::Str(j.name.clone()),
                'l' => SortKey::Num(j.time_limit_min.map_or(i64::MAX, |m| m as i64)),
                'L' => SortKey::Num(
                    j.time_limit_min
                        .map_or(i64::MAX, |m| m as i64 * 60 - time_used(j, now)),
                ),
                'm' => SortKey::Num(j.mem_per_node_mb as i64),
                'M' => SortKey::Num(time_used(j, now)),
                'N' => SortKey::Str(nodelist(&j.nodes)),
                'p' | 'Q' => SortKey::Num(i64::from(j.priority)),
                'P' => SortKey::Str(j.partition.clone()),
                'q' => SortKey::Str(j.qos.clone()),
                'r' | 'R' => SortKey::Str(j.reason.clone()),
                'S' => SortKey::Num(j.start_time.unwrap_or(0)),
                't' => SortKey::Str(j.state.short().into()),
                'T' => SortKey::Str(j.state.long().into()),
                'u' => SortKey::Str(j.user.clone()),
                'U' => SortKey::Num(i64::from(j.uid)),
                'V' => SortKey::Num(j.submit_time),
                'y' => SortKey::Num(i64::from(j.nice)),
                _ => SortKey::Num(0),
            }
        };
        if !"aAiFKCcDegGjlLmMNpQPqrRStTuUVy".contains(c) {
            err.push_str(&format!("squeue: error: Invalid sort specification: {c}\n"));
            continue;
        }
        rows.sort_by(|a, b| {
            let o = key(a).cmp(&key(b));
            if reverse {
                o.reverse()
            } else {
                o
            }
        });
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Num(i64),
    Str(String),
}

const SQUEUE_OPTIONS: &[OptSpec] = &[
    OptSpec {
        short: Some('A'),
        long: &["accounts", "account"],
        arg: ArgKind::Required,
        id: "A",
    },
    OptSpec {
        short: Some('a'),
        long: &["all"],
        arg: ArgKind::None,
        id: "a",
    },
    OptSpec {
        short: Some('r'),
        long: &["array"],
        arg: ArgKind::None,
        id: "r",
    },
    OptSpec {
        short: None,
        long: &["array-unique"],
        arg: ArgKind::None,
        id: "array-unique",
    },
    OptSpec {
        short: Some('O'),
        long: &["Format"],
        arg: ArgKind::Required,
        id: "O",
    },
    OptSpec {
        short: Some('o'),
        long: &["format"],
        arg: ArgKind::Required,
        id: "o",
    },
    OptSpec {
        short: None,
        long: &["federation"],
        arg: ArgKind::None,
        id: "federation",
    },
    OptSpec {
        short: None,
        long: &["help"],
        arg: ArgKind::None,
        id: "help",
    },
    OptSpec {
        short: None,
        long: &["hide"],
        arg: ArgKind::None,
        id: "hide",
    },
    OptSpec {
        short: Some('i'),
        long: &["iterate"],
        arg: ArgKind::Required,
        id: "i",
    },
    OptSpec {
        short: Some('j'),
        long: &["jobs", "job"],
        arg: ArgKind::Optional,
        id: "j",
    },
    OptSpec {
        short: None,
        long: &["json"],
        arg: ArgKind::Optional,
        id: "json",
    },
    OptSpec {
        short: None,
        long: &["local"],
        arg: ArgKind::None,
        id: "local",
    },
    OptSpec {
        short: Some('l'),
        long: &["long"],
        arg: ArgKind::None,
        id: "l",
    },
    OptSpec {
        short: Some('L'),
        long: &["licenses"],
        arg: ArgKind::Required,
        id: "L",
    },
    OptSpec {
        short: Some('M'),
        long: &["cluster", "clusters"],
        arg: ArgKind::Required,
        id: "M",
    },
    OptSpec {
        short: None,
        long: &["me"],
        arg: ArgKind::None,
        id: "me",
    },
    OptSpec {
        short: Some('n'),
        long: &["name"],
        arg: ArgKind::Required,
        id: "n",
    },
    OptSpec {
        short: None,
        long: &["noconvert"],
        arg: ArgKind::None,
        id: "noconvert",
    },
    OptSpec {
        short: Some('w'),
        long: &["node", "nodes", "nodelist"],
        arg: ArgKind::Required,
        id: "w",
    },
    OptSpec {
        short: Some('h'),
        long: &["noheader"],
        arg: ArgKind::None,
        id: "h",
    },
    OptSpec {
        short: Some('p'),
        long: &["partitions", "partition"],
        arg: ArgKind::Required,
        id: "p",
    },
    OptSpec {
        short: Some('P'),
        long: &["priority"],
        arg: ArgKind::None,
        id: "P",
    },
    OptSpec {
        short: Some('q'),
        long: &["qos"],
        arg: ArgKind::Required,
        id: "q",
    },
    OptSpec {
        short: Some('R'),
        long: &["reservation"],
        arg: ArgKind::Required,
        id: "R",
    },
    OptSpec {
        short: None,
        long: &["sib", "sibling"],
        arg: ArgKind::None,
        id: "sibling",
    },
    OptSpec {
        short: Some('S'),
        long: &["sort"],
        arg: ArgKind::Required,
        id: "S",
    },
    OptSpec {
        short: None,
        long: &["start"],
        arg: ArgKind::None,
        id: "start",
    },
    OptSpec {
        short: Some('s'),
        long: &["steps"],
        arg: ArgKind::Optional,
        id: "s",
    },
    OptSpec {
        short: Some('t'),
        long: &["states"],
        arg: ArgKind::Required,
        id: "t",
    },
    OptSpec {
        short: None,
        long: &["usage"],
        arg: ArgKind::None,
        id: "usage",
    },
    OptSpec {
        short: Some('u'),
        long: &["user", "users"],
        arg: ArgKind::Required,
        id: "u",
    },
    OptSpec {
        short: Some('U'),
        long: &[],
        arg: ArgKind::Required,
        id: "A",
    },
    OptSpec {
        short: Some('v'),
        long: &["verbose"],
        arg: ArgKind::None,
        id: "v",
    },
    OptSpec {
        short: Some('V'),
        long: &["version"],
        arg: ArgKind::None,
        id: "V",
    },
    OptSpec {
        short: None,
        long: &["yaml"],
        arg: ArgKind::Optional,
        id: "yaml",
    },
];

/// `squeue --usage` (`squeue/opts.c` `_usage`).
const SQUEUE_USAGE: &str = "\
Usage: squeue [-A account] [--clusters names] [-i seconds] [--job jobid]
              [-n name] [-o format] [-p partitions] [--qos qos]
              [--reservation reservation] [--sort fields] [--start]
              [--step step_id] [-t states] [-u user_name] [--usage]
              [-L licenses] [-w nodes] [--federation] [--local] [--sibling]
              [--json=data_parser] [--yaml=data_parser]
\t      [-ahjlrsv]
";

/// `squeue --help` (`squeue/opts.c` `_help`).
const SQUEUE_HELP: &str = "\
Usage: squeue [OPTIONS]
  -A, --account=account(s)        comma separated list of accounts
\t\t\t\t  to view, default is all accounts
  -a, --all                       display jobs in hidden partitions
      --array-unique              display one unique pending job array
                                  element per line
      --federation                Report federated information if a member
                                  of one
  -h, --noheader                  no headers on output
      --hide                      do not display jobs in hidden partitions
  -i, --iterate=seconds           specify an interation period
  -j, --job=job(s)                comma separated list of jobs IDs
                                  to view, default is all
      --json[=data_parser]        Produce JSON output
      --local                     Report information only about jobs on the
                                  local cluster. Overrides --federation.
  -l, --long                      long report
  -L, --licenses=(license names)  comma separated list of license names to view
  -M, --clusters=cluster_name     cluster to issue commands to.  Default is
                                  current cluster.  cluster with no name will
                                  reset to default. Implies --local.
      --me                        Equivalent to --user=<uid>
  -n, --name=job_name(s)          comma separated list of job names to view
      --noconvert                 don't convert units from their original type
                                  (e.g. 2048M won't be converted to 2G).
  -o, --format=format             format specification
  -O, --Format=format             format specification
  -p, --partition=partition(s)    comma separated list of partitions
\t\t\t\t  to view, default is all partitions
  -q, --qos=qos(s)                comma separated list of qos's
\t\t\t\t  to view, default is all qos's
  -R, --reservation=name          reservation to view, default is all
  -r, --array                     display one job array element per line
      --sibling                   Report information about all sibling jobs
                                  on a federated cluster. Implies --federation.
  -s, --step=step(s)              comma separated list of job steps
\t\t\t\t  to view, default is all
  -S, --sort=fields               comma separated list of fields to sort on
      --start                     print expected start times of pending jobs
  -t, --states=states             comma separated list of states to view,
\t\t\t\t  default is pending and running,
\t\t\t\t  '--states=all' reports all states
  -u, --user=user_name(s)         comma separated list of users to view
      --name=job_name(s)          comma separated list of job names to view
  -v, --verbose                   verbosity level
  -V, --version                   output version information and exit
  -w, --nodelist=hostlist         list of nodes to view, default is
\t\t\t\t  all nodes
      --yaml[=data_parser]        Produce YAML output

Help options:
  --help                          show this help message
  --usage                         display a brief summary of squeue options
";

/// A `-j` entry: a job id, or an array task (`12_3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JobSel {
    job_id: u64,
    task: Option<u32>,
}

/// `_build_job_list` (`squeue/opts.c`): `strtol` semantics, `12_3` for array tasks.
fn parse_job_list(list: &str) -> Result<Vec<JobSel>, String> {
    let mut out = Vec::new();
    for item in split_list(list) {
        let digits = item.len() - item.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let job_id: u64 = item[..digits].parse().unwrap_or(0);
        if job_id == 0 || job_id > u64::from(u32::MAX) {
            return Err(format!("squeue: error: Invalid job id: {item}\n"));
        }
        let rest = &item[digits..];
        let task = rest.strip_prefix('_').map(|t| {
            let d = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            t[..d].parse().unwrap_or(0)
        });
        out.push(JobSel { job_id, task });
    }
    Ok(out)
}

/// `squeue`: (exit code, stdout, stderr).
pub fn squeue(args: &[String], view: &View, me: &str, env: &BTreeMap<String, String>) -> Output {
    match run_squeue(args, view, me, env) {
        Ok(out) => out,
        Err(err) => (1, String::new(), err),
    }
}

#[derive(Default)]
struct Params {
    format: Option<String>,
    format_long: Option<String>,
    long_list: bool,
    no_header: bool,
    array: bool,
    start: bool,
    iterate: bool,
    verbose: u32,
    job_flag: bool,
    jobs: Option<String>,
    job_list: Option<Vec<JobSel>>,
    states: Option<String>,
    state_list: Option<Option<Vec<JobState>>>,
    users: Option<String>,
    accounts: Option<Vec<String>>,
    partitions: Option<String>,
    qos: Option<Vec<String>>,
    names: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    sort: Option<String>,
}

fn run_squeue(
    args: &[String],
    view: &View,
    me: &str,
    env: &BTreeMap<String, String>,
) -> Result<Output, String> {
    const TRY: &str = "Try \"squeue --help\" for more information\n";
    let parsed = getopt("squeue", args, SQUEUE_OPTIONS).map_err(|e| format!("{e}{TRY}"))?;
    let mut p = Params {
        array: env.contains_key("SQUEUE_ARRAY"),
        sort: env.get("SQUEUE_SORT").cloned(),
        ..Params::default()
    };
    let mut override_format_env = false;
    let mut positional = Vec::new();
    let mut err = String::new();
    for item in parsed {
        let (id, arg) = match item {
            Parsed::Positional(a) => {
                positional.push(a);
                continue;
            }
            Parsed::Opt(id, arg) => (id, arg.unwrap_or_default()),
        };
        match id {
            "A" => p.accounts = Some(split_list(&arg)),
            "h" => p.no_header = true,
            "i" => {
                if arg.trim().parse::<i64>().map_or(true, |n| n <= 0) {
                    return Err(format!("squeue: error: --iterate={arg}\n\n"));
                }
                p.iterate = true;
            }
            "j" => {
                if !arg.is_empty() {
                    p.job_list = Some(parse_job_list(&arg)?);
                    p.jobs = Some(arg);
                }
                p.job_flag = true;
            }
            "l" => {
                p.long_list = true;
                override_format_env = true;
            }
            "n" => p.names = Some(split_list(&arg)),
            "O" => {
                if p.format.is_some() {
                    return Err(
                        "squeue: error: -O (--Format) is incompatible with -o (--format)\n".into(),
                    );
                }
                p.format_long = Some(arg);
                override_format_env = true;
            }
            "o" => {
                if p.format_long.is_some() {
                    return Err(
                        "squeue: error: -o (--format) is incompatible with -O (--Format)\n".into(),
                    );
                }
                p.format = Some(arg);
                override_format_env = true;
            }
            "p" => p.partitions = Some(arg),
            "q" => p.qos = Some(split_list(&arg)),
            "r" => p.array = true,
            "s" => {
                return Err("squeue: error: sovra's squeue does not list job steps\n".into());
            }
            "S" => p.sort = Some(arg),
            "t" => {
                p.state_list = Some(parse_states("squeue", &arg)?);
                p.states = Some(arg);
            }
            "u" => p.users = Some(arg),
            "me" => p.users = Some(me.to_string()),
            "v" => p.verbose += 1,
            "V" => return Ok((0, format!("{SLURM_VERSION}\n"), String::new())),
            "w" => match hostlist::expand(&arg) {
                Ok(hosts) if !hosts.is_empty() => p.nodes = Some(hosts),
                _ => {
                    return Err(format!(
                        "squeue: error: '{arg}' invalid entry for --nodelist\n"
                    ))
                }
            },
            "start" => {
                p.start = true;
                override_format_env = true;
            }
            "help" => return Ok((0, SQUEUE_HELP.into(), String::new())),
            "usage" => return Ok((0, SQUEUE_USAGE.into(), String::new())),
            "json" | "yaml" => {
                return Err(format!(
                    "squeue: error: sovra's squeue does not print --{id}; use the sovra CLI's \
                     json output\n"
                ))
            }
            // -a, --hide, --local, --federation, --sibling, -M, -L, -R, -P, --noconvert,
            // --array-unique: nothing to do on one sovra cluster without reservations.
            _ => {}
        }
    }
    if p.long_list && p.format.is_some() {
        return Err(
            "squeue: fatal: Options -o(--format) and -l(--long) are mutually exclusive. \
                    Please remove one and retry.\n"
                .into(),
        );
    }
    if !override_format_env {
        if let Some(f) = env.get("SQUEUE_FORMAT") {
            p.format = Some(f.clone());
        } else if let Some(f) = env.get("SQUEUE_FORMAT2") {
            p.format_long = Some(f.clone());
        }
    }
    let mut positional = positional.into_iter();
    if let Some(a) = positional.next() {
        if p.job_flag {
            p.job_list = Some(parse_job_list(&a)?);
            p.jobs = Some(a);
        } else {
            return Err(format!(
                "squeue: error: Unrecognized option: {a}\n{SQUEUE_USAGE}"
            ));
        }
    }
    if let Some(a) = positional.next() {
        return Err(format!(
            "squeue: error: Unrecognized option: {a}\n{SQUEUE_USAGE}"
        ));
    }
    if p.accounts.is_none() {
        p.accounts = env.get("SQUEUE_ACCOUNT").map(|s| split_list(s));
    }
    if p.names.is_none() {
        p.names = env.get("SQUEUE_NAMES").map(|s| split_list(s));
    }
    if p.partitions.is_none() {
        p.partitions = env.get("SQUEUE_PARTITION").cloned();
    }
    if p.qos.is_none() {
        p.qos = env.get("SQUEUE_QOS").map(|s| split_list(s));
    }
    if p.states.is_none() {
        if let Some(s) = env.get("SQUEUE_STATES") {
            p.state_list = Some(parse_states("squeue", s)?);
            p.states = Some(s.clone());
        }
    }
    if p.users.is_none() {
        p.users = env.get("SQUEUE_USERS").cloned();
    }
    if p.start {
        p.format
            .get_or_insert_with(|| "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %20Y %R".into());
        p.sort.get_or_insert_with(|| "S".into());
        if p.states.is_none() {
            p.states = Some("PD".into());
            p.state_list = Some(Some(vec![JobState::Pending]));
        }
    }

    let mut out = String::new();
    if p.verbose > 0 {
        print_options(&p, &mut out);
    }
    if p.iterate {
        out.push_str(&ctime_str(view.now, 0));
        out.push('\n');
    }
    let specs = if let Some(f) = &p.format_long {
        parse_long_format(f, &mut err)
    } else if let Some(f) = &p.format {
        if f.is_empty() {
            return Err("squeue: error: Format option lacks specification.\n".into());
        }
        parse_format(f, &mut err)
    } else if p.long_list {
        parse_format("%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R", &mut err)
    } else {
        parse_format("%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R", &mut err)
    };

    let jobs: Vec<&Job> = {
        let mut jobs: Vec<&Job> = view.jobs.iter().filter(|j| keep(j, &p)).collect();
        jobs.sort_by_key(|j| j.job_id);
        jobs
    };
    let mut rows = if p.array {
        jobs.into_iter()
            .map(|job| Row {
                job,
                array_tasks: None,
            })
            .collect()
    } else {
        fold_arrays(jobs)
    };
    let sort = p.sort.clone().unwrap_or_else(|| "P,t,-p".into());
    sort_rows(&mut rows, &sort, view.now, &mut err);
    if !p.no_header {
        render_line(&specs, None, view, &mut out);
    }
    for row in &rows {
        render_line(&specs, Some(row), view, &mut out);
    }
    Ok((0, out, err))
}

/// `_filter_job` (`squeue/print.c`).
fn keep(job: &Job, p: &Params) -> bool {
    if let Some(list) = &p.job_list {
        let hit = list.iter().any(|s| match s.task {
            None => s.job_id == job.job_id || Some(s.job_id) == job.array_job_id,
            Some(t) => Some(s.job_id) == job.array_job_id && Some(t) == job.array_task_id,
        });
        if !hit {
            return false;
        }
    }
    if let Some(parts) = &p.partitions {
        if !split_list(parts).contains(&job.partition) {
            return false;
        }
    }
    if let Some(accounts) = &p.accounts {
        if !accounts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&job.account))
        {
            return false;
        }
    }
    if let Some(qos) = &p.qos {
        if !qos.iter().any(|q| q.eq_ignore_ascii_case(&job.qos)) {
            return false;
        }
    }
    if let Some(names) = &p.names {
        if !names.contains(&job.name) {
            return false;
        }
    }
    match &p.state_list {
        Some(None) => {}
        Some(Some(states)) => {
            if !states.contains(&job.state) {
                return false;
            }
        }
        None => {
            if job.state.is_finished() {
                return false;
            }
        }
    }
    if let Some(users) = &p.users {
        let hit = split_list(users)
            .iter()
            .any(|u| *u == job.user || u.parse::<u32>().ok() == Some(job.uid));
        if !hit {
            return false;
        }
    }
    if let Some(nodes) = &p.nodes {
        if !job.nodes.iter().any(|n| nodes.contains(n)) {
            return false;
        }
    }
    true
}

/// `_print_options` (`squeue/opts.c`), printed by `-v`.
fn print_options(p: &Params, out: &mut String) {
    let null = |s: &Option<String>| s.clone().unwrap_or_else(|| "(null)".into());
    let b = |x: bool| if x { "true" } else { "false" };
    let nodes = p
        .nodes
        .as_ref()
        .map(|n| hostlist::compress(n))
        .unwrap_or_default();
    out.push_str("-----------------------------\n");
    out.push_str("all         = false\n");
    out.push_str(&format!("array       = {}\n", b(p.array)));
    out.push_str("federation  = false\n");
    out.push_str(&format!("format      = {}\n", null(&p.format)));
    out.push_str(&format!("iterate     = {}\n", i32::from(p.iterate)));
    out.push_str(&format!("job_flag    = {}\n", i32::from(p.job_flag)));
    out.push_str(&format!("jobs        = {}\n", null(&p.jobs)));
    out.push_str("licenses    = (null)\n");
    out.push_str("local       = false\n");
    let names = p.names.as_ref().map(|n| n.join(","));
    out.push_str(&format!("names       = {}\n", null(&names)));
    out.push_str(&format!("nodes       = {nodes}\n"));
    out.push_str(&format!("partitions  = {}\n", null(&p.partitions)));
    out.push_str("priority    = false\n");
    out.push_str("reservation = (null)\n");
    out.push_str("sibling      = false\n");
    out.push_str(&format!("sort        = {}\n", null(&p.sort)));
    out.push_str(&format!("start_flag  = {}\n", i32::from(p.start)));
    out.push_str(&format!("states      = {}\n", null(&p.states)));
    out.push_str("step_flag   = 0\n");
    out.push_str("steps       = (null)\n");
    out.push_str(&format!("users       = {}\n", null(&p.users)));
    out.push_str(&format!("verbose     = {}\n", p.verbose));
    out.push_str("-----------------------------\n\n\n");
}

/// The fixture cluster and the case runner shared by the conformance tables of `squeue`,
/// `sinfo`, `sacct` and `scontrol show`.
#[cfg(test)]
pub(super) mod fixture {
    use std::collections::BTreeMap;
    use std::fmt::Write;

    use expect_test::Expect;

    use super::super::model::{Job, JobState, Node, NodeState, Partition, View};

    /// 2024-03-01T12:00:00Z.
    pub const NOW: i64 = 1_709_294_400;

    fn node(name: &str, state: NodeState, cpus_alloc: u32, parts: &[&str]) -> Node {
        let gpu = name.starts_with("gpu");
        Node {
            name: name.into(),
            state,
            not_responding: false,
            partitions: parts.iter().map(|p| p.to_string()).collect(),
            cpus: 64,
            cpus_alloc,
            real_memory_mb: if gpu { 512_000 } else { 257_000 },
            alloc_memory_mb: u64::from(cpus_alloc) * 4000,
            gres: if gpu {
                "gpu:h100:8".into()
            } else {
                String::new()
            },
            gpus_alloc: if gpu { cpus_alloc / 8 } else { 0 },
            features: if gpu { "h100,ib".into() } else { "epyc".into() },
            reason: String::new(),
            reason_user: String::new(),
            reason_time: None,
            site: "syd1".into(),
            jurisdiction: "AU".into(),
        }
    }

    fn job(id: u64, user: &str, name: &str, state: JobState) -> Job {
        let uid = match user {
            "alice" => 1001,
            "bob" => 1002,
            _ => 1003,
        };
        Job {
            job_id: id,
            name: name.into(),
            user: user.into(),
            uid,
            group: "research".into(),
            gid: 500,
            account: if user == "bob" {
                "physics".into()
            } else {
                "ml".into()
            },
            partition: "gpu".into(),
            qos: "normal".into(),
            state,
            reason: if state == JobState::Pending {
                "Priority".into()
            } else {
                "None".into()
            },
            priority: 5000,
            submit_time: NOW - 7200,
            eligible_time: Some(NOW - 7200),
            time_limit_min: Some(1440),
            num_nodes: 1,
            num_cpus: 8,
            num_tasks: 1,
            cpus_per_task: 8,
            mem_per_node_mb: 32_768,
            work_dir: format!("/home/{user}"),
            command: format!("/home/{user}/{name}.sh"),
            stdout: format!("/home/{user}/slurm-{id}.out"),
            stderr: format!("/home/{user}/slurm-{id}.out"),
            requeue: true,
            ..Job::default()
        }
    }

    fn running(mut j: Job, nodes: &[&str], started_ago: i64) -> Job {
        j.nodes = nodes.iter().map(|n| n.to_string()).collect();
        j.num_nodes = nodes.len() as u32;
        j.start_time = Some(NOW - started_ago);
        j.batch_host = nodes.first().map(|n| n.to_string());
        j
    }

    fn finished(mut j: Job, ran_s: i64, ended_ago: i64, code: i32, signal: i32) -> Job {
        j = running(j, &["gpu03"], ended_ago + ran_s);
        j.end_time = Some(NOW - ended_ago);
        j.exit_code = code;
        j.exit_signal = signal;
        j
    }

    /// Three partitions, nodes in every state, jobs in every state: an array with pending
    /// tasks, a held job, a job waiting on a dependency, finished OOM and timeout jobs.
    pub fn view() -> View {
        use JobState::*;
        use NodeState::*;
        let mut nodes = vec![
            node("gpu01", Allocated, 64, &["gpu", "debug"]),
            node("gpu02", Allocated, 64, &["gpu"]),
            node("gpu03", Mixed, 32, &["gpu"]),
            node("gpu04", Idle, 0, &["gpu"]),
            node("gpu05", Drained, 0, &["gpu"]),
            node("gpu06", Down, 0, &["gpu"]),
            node("cpu1", Idle, 0, &["cpu", "debug"]),
            node("cpu2", Draining, 16, &["cpu"]),
            node("cpu3", Unknown, 0, &["cpu"]),
        ];
        nodes[4].reason = "bad gpu".into();
        nodes[4].reason_user = "root".into();
        nodes[4].reason_time = Some(NOW - 86_400);
        nodes[5].reason = "Not responding".into();
        nodes[5].reason_user = "slurm".into();
        nodes[5].reason_time = Some(NOW - 3600);
        nodes[5].not_responding = true;
        nodes[7].reason = "kernel update".into();
        nodes[7].reason_user = "root".into();
        nodes[7].reason_time = Some(NOW - 600);
        let partitions = vec![
            Partition {
                name: "gpu".into(),
                default: true,
                up: true,
                max_time_min: Some(2880),
                default_time_min: Some(60),
                nodes: (1..=6).map(|i| format!("gpu0{i}")).collect(),
                jurisdictions: vec!["AU".into()],
                sites: vec!["syd1".into()],
            },
            Partition {
                name: "cpu".into(),
                default: false,
                up: true,
                max_time_min: None,
                default_time_min: None,
                nodes: vec!["cpu1".into(), "cpu2".into(), "cpu3".into()],
                jurisdictions: vec!["AU".into()],
                sites: vec!["syd1".into()],
            },
            Partition {
                name: "debug".into(),
                default: false,
                up: false,
                max_time_min: Some(30),
                default_time_min: None,
                nodes: vec!["gpu01".into(), "cpu1".into()],
                jurisdictions: vec![],
                sites: vec![],
            },
        ];
        let mut jobs = Vec::new();
        let mut j = running(
            job(101, "alice", "train", Running),
            &["gpu01", "gpu02"],
            3725,
        );
        j.num_cpus = 128;
        j.num_tasks = 16;
        j.gpus = 16;
        j.tres_per_node = "gres:gpu:8".into();
        j.mem_per_node_mb = 262_144;
        j.jurisdictions = vec!["AU".into(), "JP".into()];
        jobs.push(j);
        let mut j = running(
            job(102, "bob", "eval-long-name", Running),
            &["gpu03"],
            2 * 86_400 + 5,
        );
        j.num_cpus = 32;
        j.time_limit_min = Some(2880);
        j.priority = 4500;
        jobs.push(j);
        let mut j = job(103, "alice", "sweep", Pending);
        j.priority = 4000;
        jobs.push(j);
        let mut j = job(104, "carol", "big", Pending);
        j.reason = "Resources".into();
        j.priority = 6000;
        j.num_nodes = 4;
        j.num_cpus = 256;
        j.start_time = Some(NOW + 7200);
        jobs.push(j);
        let mut j = job(105, "alice", "held", Pending);
        j.reason = "JobHeldUser".into();
        j.priority = 0;
        jobs.push(j);
        let mut j = job(106, "bob", "post", Pending);
        j.reason = "Dependency".into();
        j.dependency = "afterok:101(unfulfilled)".into();
        j.priority = 4000;
        j.time_limit_min = None;
        jobs.push(j);
        for (task, id) in [(0u32, 201u64), (1, 202)] {
            let mut j = running(job(id, "alice", "arr", Running), &["cpu2"], 300);
            j.partition = "cpu".into();
            j.array_job_id = Some(200);
            j.array_task_id = Some(task);
            jobs.push(j);
        }
        for task in 2..=9u32 {
            let mut j = job(201 + u64::from(task), "alice", "arr", Pending);
            j.partition = "cpu".into();
            j.array_job_id = Some(200);
            j.array_task_id = Some(task);
            j.reason = "JobArrayTaskLimit".into();
            jobs.push(j);
        }
        let mut j = finished(job(110, "alice", "oom", OutOfMemory), 900, 600, 0, 125);
        j.reason = "OutOfMemory".into();
        jobs.push(j);
        let mut j = finished(job(111, "alice", "slow", Timeout), 3600, 60, 0, 0);
        j.reason = "TimeLimit".into();
        j.time_limit_min = Some(60);
        jobs.push(j);
        jobs.push(finished(
            job(112, "alice", "ok", Completed),
            120,
            1200,
            0,
            0,
        ));
        jobs.push(finished(
            job(113, "alice", "stop", Cancelled),
            60,
            30,
            0,
            15,
        ));
        let mut j = finished(job(114, "bob", "crash", Failed), 10, 100, 1, 0);
        j.reason = "NonZeroExitCode".into();
        jobs.push(j);
        let mut j = finished(job(115, "alice", "wrapup", Completing), 50, 5, 0, 0);
        j.partition = "debug".into();
        jobs.push(j);
        let mut j = finished(job(116, "alice", "yesterday", Completed), 100, 86_400, 0, 0);
        j.submit_time = NOW - 90_000;
        jobs.push(j);
        View {
            cluster: "syd".into(),
            now: NOW,
            jobs,
            nodes,
            partitions,
        }
    }

    /// Splits a command line on spaces, keeping double-quoted words whole.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut any = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    any = true;
                }
                ' ' if !quoted => {
                    if any {
                        out.push(std::mem::take(&mut cur));
                    }
                    any = false;
                }
                c => {
                    cur.push(c);
                    any = true;
                }
            }
        }
        if any {
            out.push(cur);
        }
        out
    }

    /// Runs one command line (`ENV=x squeue -l`, `scontrol show job 12`) as user `alice`.
    pub fn run_line(line: &str) -> (u8, String, String) {
        let view = view();
        let mut words = words(line);
        let mut env = BTreeMap::new();
        while words
            .first()
            .is_some_and(|w| w.contains('=') && !w.starts_with('-'))
        {
            let w = words.remove(0);
            let (k, v) = w.split_once('=').unwrap();
            env.insert(k.to_string(), v.to_string());
        }
        let cmd = words.remove(0);
        match cmd.as_str() {
            "squeue" => super::squeue(&words, &view, "alice", &env),
            "sinfo" => super::super::sinfo::sinfo(&words, &view, &env),
            "sacct" => super::super::sacct::sacct(&words, &view, "alice", &env),
            "scontrol" => {
                let one_liner = words.iter().any(|w| w == "-o");
                let detail = words.iter().any(|w| w == "-d");
                let words: Vec<&String> = words.iter().filter(|w| !w.starts_with('-')).collect();
                let arg = words.get(2).map(|s| s.as_str());
                use super::super::show;
                match words[1].as_str() {
                    "job" => show::show_job_arg(&view, arg, one_liner, detail),
                    "node" => show::show_node(&view, arg, one_liner),
                    "partition" => show::show_partition(&view, arg, one_liner),
                    other => panic!("unknown entity {other}"),
                }
            }
            other => panic!("unknown command {other}"),
        }
    }

    /// Runs each case and compares the transcript: `$ line`, stdout, then `[stderr]` and
    /// `[exit N]` when not empty or 0. A line of only spaces (the `   ` that ends a
    /// `scontrol show job` record) is written `[N spaces]`, since snapshots dedent.
    pub fn check(cases: &[&str], expect: Expect) {
        let mut out = String::new();
        for line in cases {
            let (code, stdout, stderr) = run_line(line);
            writeln!(out, "$ {line}").unwrap();
            for l in stdout.split_inclusive('\n') {
                let body = l.trim_end_matches('\n');
                if !body.is_empty() && body.trim_matches(' ').is_empty() {
                    writeln!(out, "[{} spaces]", body.len()).unwrap();
                } else {
                    out.push_str(l);
                }
            }
            if !stderr.is_empty() {
                out.push_str("[stderr]\n");
                out.push_str(&stderr);
            }
            if code != 0 {
                writeln!(out, "[exit {code}]").unwrap();
            }
        }
        expect.assert_eq(&out);
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use proptest::prelude::*;

    use super::fixture::{check, run_line};
    use super::*;

    #[test]
    fn helpers_match_slurm() {
        assert_eq!(fmt_field("abc", 5, false, true), "abc  ");
        assert_eq!(fmt_field("abc", 5, true, true), "  abc");
        assert_eq!(fmt_field("abcdefg", 5, true, true), "abcde");
        assert_eq!(fmt_field("abcdefg", 5, true, false), "abcdefg");
        assert_eq!(fmt_field("abcdefg", 5, false, false), "abcde");
        assert_eq!(fmt_field("abcdefg", 0, false, true), "abcdefg");
        assert_eq!(print_secs(0), "0:00");
        assert_eq!(print_secs(3725), "1:02:05");
        assert_eq!(print_secs(2 * 86400 + 5), "2-00:00:05");
        assert_eq!(print_secs(-1), "INVALID");
        assert_eq!(secs2time_str(65), "00:01:05");
        assert_eq!(mins2time_str(Some(2880)), "2-00:00:00");
        assert_eq!(mins2time_str(None), "UNLIMITED");
        assert_eq!(make_time_str(fixture::NOW, 0), "2024-03-01T12:00:00");
        assert_eq!(make_time_str(0, 0), "Unknown");
        assert_eq!(ctime_str(0, 0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime_str(fixture::NOW, 0), "Fri Mar  1 12:00:00 2024");
        assert_eq!(unix_time(2024, 3, 1, 12, 0, 0), fixture::NOW);
        assert_eq!(convert_num_unit(262_144, 2), "256G");
        assert_eq!(convert_num_unit(32_000, 2), "32000M");
        assert_eq!(convert_num_unit(7, 0), "7");
        assert_eq!(bit_fmt(&[2, 3, 4, 7, 9, 10]), "2-4,7,9-10");
    }

    #[test]
    fn getopt_behaves_like_glibc() {
        let specs = SQUEUE_OPTIONS;
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            getopt(
                "squeue",
                &a(&["-hlu", "bob", "--form=%i", "-j12", "--st"]),
                specs
            ),
            Err(
                "squeue: option '--st' is ambiguous; possibilities: '--start' '--steps' \
                 '--states'\n"
                    .into()
            )
        );
        assert_eq!(
            getopt("squeue", &a(&["-hj", "12"]), specs).unwrap(),
            vec![
                Parsed::Opt("h", None),
                Parsed::Opt("j", None),
                Parsed::Positional("12".into())
            ]
        );
        assert_eq!(
            getopt("squeue", &a(&["--noheader=1"]), specs),
            Err("squeue: option '--noheader' doesn't allow an argument\n".into())
        );
    }

    /// The conformance table for `squeue`, each expectation written from `squeue/opts.c`,
    /// `print.c` and `sort.c` of 22.05 (see the module docs), as user `alice`.
    #[test]
    fn squeue_conformance() {
        check(
            &[
                "squeue",
                "squeue -l",
                "squeue -h -o \"%i %t\"",
                "squeue --start",
                "squeue -r -p cpu",
                "squeue -t all -o \"%.6i %.2t %.10M %R\"",
            ],
            expect![[r#"
                $ squeue
                             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)
                         200_[2-9]       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_0       cpu      arr    alice  R       5:00      1 cpu2
                             200_1       cpu      arr    alice  R       5:00      1 cpu2
                               115     debug   wrapup    alice CG       0:50      1 gpu03
                               104       gpu      big    carol PD       0:00      4 (Resources)
                               103       gpu    sweep    alice PD       0:00      1 (Priority)
                               106       gpu     post      bob PD       0:00      1 (Dependency)
                               105       gpu     held    alice PD       0:00      1 (JobHeldUser)
                               101       gpu    train    alice  R    1:02:05      2 gpu[01-02]
                               102       gpu eval-lon      bob  R 2-00:00:05      1 gpu03
                $ squeue -l
                             JOBID PARTITION     NAME     USER    STATE       TIME TIME_LIMI  NODES NODELIST(REASON)
                         200_[2-9]       cpu      arr    alice  PENDING       0:00 1-00:00:00      1 (JobArrayTaskLimit)
                             200_0       cpu      arr    alice  RUNNING       5:00 1-00:00:00      1 cpu2
                             200_1       cpu      arr    alice  RUNNING       5:00 1-00:00:00      1 cpu2
                               115     debug   wrapup    alice COMPLETI       0:50 1-00:00:00      1 gpu03
                               104       gpu      big    carol  PENDING       0:00 1-00:00:00      4 (Resources)
                               103       gpu    sweep    alice  PENDING       0:00 1-00:00:00      1 (Priority)
                               106       gpu     post      bob  PENDING       0:00 UNLIMITED      1 (Dependency)
                               105       gpu     held    alice  PENDING       0:00 1-00:00:00      1 (JobHeldUser)
                               101       gpu    train    alice  RUNNING    1:02:05 1-00:00:00      2 gpu[01-02]
                               102       gpu eval-lon      bob  RUNNING 2-00:00:05 2-00:00:00      1 gpu03
                $ squeue -h -o "%i %t"
                200_[2-9] PD
                200_0 R
                200_1 R
                115 CG
                104 PD
                103 PD
                106 PD
                105 PD
                101 R
                102 R
                $ squeue --start
                             JOBID PARTITION     NAME     USER ST          START_TIME  NODES SCHEDNODES           NODELIST(REASON)
                               103       gpu    sweep    alice PD                 N/A      1 (null)               (Priority)
                               105       gpu     held    alice PD                 N/A      1 (null)               (JobHeldUser)
                               106       gpu     post      bob PD                 N/A      1 (null)               (Dependency)
                         200_[2-9]       cpu      arr    alice PD                 N/A      1 (null)               (JobArrayTaskLimit)
                               104       gpu      big    carol PD 2024-03-01T14:00:00      4 (null)               (Resources)
                $ squeue -r -p cpu
                             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)
                             200_2       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_3       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_4       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_5       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_6       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_7       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_8       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_9       cpu      arr    alice PD       0:00      1 (JobArrayTaskLimit)
                             200_0       cpu      arr    alice  R       5:00      1 cpu2
                             200_1       cpu      arr    alice  R       5:00      1 cpu2
                $ squeue -t all -o "%.6i %.2t %.10M %R"
                 JOBID ST       TIME NODELIST(REASON)
                200_[2 PD       0:00 (JobArrayTaskLimit)
                 200_0  R       5:00 cpu2
                 200_1  R       5:00 cpu2
                   115 CG       0:50 gpu03
                   113 CA       1:00 gpu03
                   112 CD       2:00 gpu03
                   116 CD       1:40 gpu03
                   114  F       0:10 (NonZeroExitCode)
                   110 OO      15:00 gpu03
                   104 PD       0:00 (Resources)
                   103 PD       0:00 (Priority)
                   106 PD       0:00 (Dependency)
                   105 PD       0:00 (JobHeldUser)
                   101  R    1:02:05 gpu[01-02]
                   102  R 2-00:00:05 gpu03
                   111 TO    1:00:00 (TimeLimit)
            "#]],
        );
    }

    #[test]
    fn squeue_formats() {
        check(
            &[
                "squeue -O JobID:10,Name,State",
                "squeue -O jobarrayid:.12,timeleft:.10|,reasonlist -p cpu",
                "squeue -o \"%.5A %a %F %K %u %U %g %G %q %P %D %C %c %m %y %Q\" -j 101,205",
                "squeue -o \"%b|%B|%E|%f|%h|%k|%n|%N|%o|%O|%z|%Z|%x\" -j 106,101",
                "squeue -o \"%i %S %e %V %l %L\" -j 101,104,106",
                "squeue -h -o \"pre %i %j post\" -n sweep",
                "squeue -h -o \"no specs\" -n sweep",
                "squeue -h -o \"%.3j|%3j|%j\" -u bob",
                "squeue -h -o \"%i %$ %5\" -n sweep",
                "squeue -o %all -n sweep",
                "squeue -O Name,Bogus -n sweep",
                "SQUEUE_FORMAT=\"%i %u\" squeue -u bob",
                "SQUEUE_FORMAT2=\"JobID:6,UserName:6\" squeue -u bob",
                "SQUEUE_FORMAT=\"%i %u\" squeue -l -u bob",
            ],
            expect![[r#"
                $ squeue -O JobID:10,Name,State
                JOBID     NAME                STATE               
                203       arr                 PENDING             
                201       arr                 RUNNING             
                202       arr                 RUNNING             
                115       wrapup              COMPLETING          
                104       big                 PENDING             
                103       sweep               PENDING             
                106       post                PENDING             
                105       held                PENDING             
                101       train               RUNNING             
                102       eval-long-name      RUNNING             
                $ squeue -O jobarrayid:.12,timeleft:.10|,reasonlist -p cpu
                       JOBID TIME_LEFT|NODELIST(REASON)    
                   200_[2-9]1-00:00:00|(JobArrayTaskLimit) 
                       200_0  23:55:00|cpu2                
                       200_1  23:55:00|cpu2                
                $ squeue -o "%.5A %a %F %K %u %U %g %G %q %P %D %C %c %m %y %Q" -j 101,205
                JOBID ACCOUNT ARRAY_JOB_ID ARRAY_TASK_ID USER UID GROUP GROUP QOS PARTITION NODES CPUS MIN_CPUS MIN_MEMORY NICE PRIORITY
                  205 ml 200 4 alice 1001 research 500 normal cpu 1 8 8 32G 0 5000
                  101 ml 101 N/A alice 1001 research 500 normal gpu 2 128 8 256G 0 5000
                $ squeue -o "%b|%B|%E|%f|%h|%k|%n|%N|%o|%O|%z|%Z|%x" -j 106,101
                TRES_PER_NODE|EXEC_HOST|DEPENDENCY|FEATURES|OVER_SUBSCRIBE|COMMENT|REQ_NODES|NODELIST|COMMAND|CONTIGUOUS|S:C:T|WORK_DIR|EXC_NODES
                N/A|n/a|afterok:101(unfulfilled)|(null)|OK|(null)|||/home/bob/post.sh|0|*:*:*|/home/bob|
                gres:gpu:8|gpu01|(null)|(null)|OK|(null)||gpu[01-02]|/home/alice/train.sh|0|*:*:*|/home/alice|
                $ squeue -o "%i %S %e %V %l %L" -j 101,104,106
                JOBID START_TIME END_TIME SUBMIT_TIME TIME_LIMIT TIME_LEFT
                104 2024-03-01T14:00:00 2024-03-02T14:00:00 2024-03-01T10:00:00 1-00:00:00 1-00:00:00
                106 N/A N/A 2024-03-01T10:00:00 UNLIMITED UNLIMITED
                101 2024-03-01T10:57:55 2024-03-02T10:57:55 2024-03-01T10:00:00 1-00:00:00 22:57:55
                $ squeue -h -o "pre %i %j post" -n sweep
                pre 103 sweep post
                $ squeue -h -o "no specs" -n sweep
                no specs
                $ squeue -h -o "%.3j|%3j|%j" -u bob
                pos|pos|post
                eva|eva|eval-long-name
                $ squeue -h -o "%i %$ %5" -n sweep
                103 %$ %5
                [stderr]
                squeue: error: Invalid job format specification: $
                squeue: error: Invalid job format specification: 
                $ squeue -o %all -n sweep
                ACCOUNT|TRES_PER_NODE|MIN_CPUS|MIN_TMP_DISK|END_TIME|FEATURES|GROUP|OVER_SUBSCRIBE|JOBID|NAME|COMMENT|TIME_LIMIT|MIN_MEMORY|REQ_NODES|COMMAND|PRIORITY|QOS|REASON|SELECT_JOBINFO|ST|USER|RESERVATION|WCKEY|EXC_NODES|NICE|S:C:T|JOBID|EXEC_HOST|CPUS|NODES|DEPENDENCY|ARRAY_JOB_ID|GROUP|SOCKETS_PER_NODE|CORES_PER_SOCKET|THREADS_PER_CORE|ARRAY_TASK_ID|TIME_LEFT|TIME|NODELIST|CONTIGUOUS|PARTITION|PRIORITY|NODELIST(REASON)|START_TIME|STATE|UID|SUBMIT_TIME|LICENSES|CORE_SPEC|SCHEDNODES|WORK_DIR
                ml|N/A|8|0|N/A|(null)|research|OK|103|sweep|(null)|1-00:00:00|32G||/home/alice/sweep.sh|0.00000093132257|normal|Priority|N/A|PD|alice|(null)|(null)||0|*:*:*|103|n/a|8|1|(null)|103|500|*|*|*|N/A|1-00:00:00|0:00||0|gpu|4000|(Priority)|N/A|PENDING|1001|2024-03-01T10:00:00|(null)|N/A|(null)|/home/alice
                $ squeue -O Name,Bogus -n sweep
                NAME                
                sweep               
                [stderr]
                squeue: error: Invalid job format specification: Bogus
                $ SQUEUE_FORMAT="%i %u" squeue -u bob
                JOBID USER
                106 bob
                102 bob
                $ SQUEUE_FORMAT2="JobID:6,UserName:6" squeue -u bob
                JOBID USER  
                106   bob   
                102   bob   
                $ SQUEUE_FORMAT="%i %u" squeue -l -u bob
                             JOBID PARTITION     NAME     USER    STATE       TIME TIME_LIMI  NODES NODELIST(REASON)
                               106       gpu     post      bob  PENDING       0:00 UNLIMITED      1 (Dependency)
                               102       gpu eval-lon      bob  RUNNING 2-00:00:05 2-00:00:00      1 gpu03
            "#]],
        );
    }

    #[test]
    fn squeue_filters_and_sort() {
        check(
            &[
                "squeue -u bob",
                "squeue --me -h -o %i",
                "squeue -h -o %i -j 200",
                "squeue -h -o %i -j 200_3,101",
                "squeue -h -o %i -j200_1",
                "squeue -h -o %i -A physics",
                "squeue -h -o %i -q normal -n train,post",
                "squeue -h -o %i -w gpu[02-03]",
                "squeue -h -o \"%i %t\" -t PD,r",
                "squeue -h -o \"%i %T\" -t cd,CA,oom,TIMEOUT",
                "squeue -h -o \"%i %Q\" -S -Q,i",
                "squeue -h -o \"%i %j\" -S j",
                "squeue -h -o %i -S Pz",
                "SQUEUE_STATES=F squeue -h -o %i",
                "SQUEUE_USERS=bob squeue -h -o %i",
                "squeue -h -o %i -u nobody",
            ],
            expect![[r#"
                $ squeue -u bob
                             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)
                               106       gpu     post      bob PD       0:00      1 (Dependency)
                               102       gpu eval-lon      bob  R 2-00:00:05      1 gpu03
                $ squeue --me -h -o %i
                200_[2-9]
                200_0
                200_1
                115
                103
                105
                101
                $ squeue -h -o %i -j 200
                200_[2-9]
                200_0
                200_1
                $ squeue -h -o %i -j 200_3,101
                200_3
                101
                $ squeue -h -o %i -j200_1
                200_1
                $ squeue -h -o %i -A physics
                106
                102
                $ squeue -h -o %i -q normal -n train,post
                106
                101
                $ squeue -h -o %i -w gpu[02-03]
                115
                101
                102
                $ squeue -h -o "%i %t" -t PD,r
                200_[2-9] PD
                200_0 R
                200_1 R
                104 PD
                103 PD
                106 PD
                105 PD
                101 R
                102 R
                $ squeue -h -o "%i %T" -t cd,CA,oom,TIMEOUT
                113 CANCELLED
                112 COMPLETED
                116 COMPLETED
                110 OUT_OF_MEMORY
                111 TIMEOUT
                $ squeue -h -o "%i %Q" -S -Q,i
                104 6000
                101 5000
                115 5000
                200_0 5000
                200_1 5000
                200_[2-9] 5000
                102 4500
                103 4000
                106 4000
                105 0
                $ squeue -h -o "%i %j" -S j
                200_0 arr
                200_1 arr
                200_[2-9] arr
                104 big
                102 eval-long-name
                105 held
                106 post
                103 sweep
                101 train
                115 wrapup
                $ squeue -h -o %i -S Pz
                200_0
                200_1
                200_[2-9]
                115
                101
                102
                103
                104
                105
                106
                [stderr]
                squeue: error: Invalid sort specification: z
                $ SQUEUE_STATES=F squeue -h -o %i
                114
                $ SQUEUE_USERS=bob squeue -h -o %i
                106
                102
                $ squeue -h -o %i -u nobody
            "#]],
        );
    }

    #[test]
    fn squeue_errors_and_info() {
        check(
            &[
                "squeue -Z",
                "squeue --bogus",
                "squeue -o",
                "squeue --format",
                "squeue -t bogus",
                "squeue -o %i -O JobID",
                "squeue -O JobID -o %i",
                "squeue -l -o %i",
                "squeue -j abc",
                "squeue -w \"gpu[01-\"",
                "squeue extra",
                "squeue -i 0",
                "squeue -i 5 -h -o %i -u bob",
                "squeue --json",
                "squeue -V",
                "squeue --usage",
                "squeue -v -h -o %i -u bob",
            ],
            expect![[r#"
                $ squeue -Z
                [stderr]
                squeue: invalid option -- 'Z'
                Try "squeue --help" for more information
                [exit 1]
                $ squeue --bogus
                [stderr]
                squeue: unrecognized option '--bogus'
                Try "squeue --help" for more information
                [exit 1]
                $ squeue -o
                [stderr]
                squeue: option requires an argument -- 'o'
                Try "squeue --help" for more information
                [exit 1]
                $ squeue --format
                [stderr]
                squeue: option '--format' requires an argument
                Try "squeue --help" for more information
                [exit 1]
                $ squeue -t bogus
                [stderr]
                squeue: error: Invalid job state specified: bogus
                squeue: error: Valid job states include: PENDING,RUNNING,SUSPENDED,COMPLETED,CANCELLED,FAILED,TIMEOUT,NODE_FAIL,PREEMPTED,BOOT_FAIL,DEADLINE,OUT_OF_MEMORY,COMPLETING,CONFIGURING,RESIZING,REVOKED,SPECIAL_EXIT

                [exit 1]
                $ squeue -o %i -O JobID
                [stderr]
                squeue: error: -O (--Format) is incompatible with -o (--format)
                [exit 1]
                $ squeue -O JobID -o %i
                [stderr]
                squeue: error: -o (--format) is incompatible with -O (--Format)
                [exit 1]
                $ squeue -l -o %i
                [stderr]
                squeue: fatal: Options -o(--format) and -l(--long) are mutually exclusive. Please remove one and retry.
                [exit 1]
                $ squeue -j abc
                [stderr]
                squeue: error: Invalid job id: abc
                [exit 1]
                $ squeue -w "gpu[01-"
                [stderr]
                squeue: error: 'gpu[01-' invalid entry for --nodelist
                [exit 1]
                $ squeue extra
                [stderr]
                squeue: error: Unrecognized option: extra
                Usage: squeue [-A account] [--clusters names] [-i seconds] [--job jobid]
                              [-n name] [-o format] [-p partitions] [--qos qos]
                              [--reservation reservation] [--sort fields] [--start]
                              [--step step_id] [-t states] [-u user_name] [--usage]
                              [-L licenses] [-w nodes] [--federation] [--local] [--sibling]
                              [--json=data_parser] [--yaml=data_parser]
                	      [-ahjlrsv]
                [exit 1]
                $ squeue -i 0
                [stderr]
                squeue: error: --iterate=0

                [exit 1]
                $ squeue -i 5 -h -o %i -u bob
                Fri Mar  1 12:00:00 2024
                106
                102
                $ squeue --json
                [stderr]
                squeue: error: sovra's squeue does not print --json; use the sovra CLI's json output
                [exit 1]
                $ squeue -V
                slurm 22.05.11
                $ squeue --usage
                Usage: squeue [-A account] [--clusters names] [-i seconds] [--job jobid]
                              [-n name] [-o format] [-p partitions] [--qos qos]
                              [--reservation reservation] [--sort fields] [--start]
                              [--step step_id] [-t states] [-u user_name] [--usage]
                              [-L licenses] [-w nodes] [--federation] [--local] [--sibling]
                              [--json=data_parser] [--yaml=data_parser]
                	      [-ahjlrsv]
                $ squeue -v -h -o %i -u bob
                -----------------------------
                all         = false
                array       = false
                federation  = false
                format      = %i
                iterate     = 0
                job_flag    = 0
                jobs        = (null)
                licenses    = (null)
                local       = false
                names       = (null)
                nodes       = 
                partitions  = (null)
                priority    = false
                reservation = (null)
                sibling      = false
                sort        = (null)
                start_flag  = 0
                states      = (null)
                step_flag   = 0
                steps       = (null)
                users       = bob
                verbose     = 1
                -----------------------------


                106
                102
            "#]],
        );
    }

    #[test]
    fn squeue_help_is_the_22_05_text() {
        let (code, out, err) = run_line("squeue --help");
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.starts_with("Usage: squeue [OPTIONS]\n"));
        assert!(out.ends_with("display a brief summary of squeue options\n"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any format, option or list a user types is answered, never a panic.
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,40}", t in "[%.#0-9a-zA-Z:,|_\\-]{0,30}") {
            let view = fixture::view();
            let env = BTreeMap::new();
            for args in [
                vec!["-o".to_string(), s.clone()],
                vec!["-o".to_string(), t.clone()],
                vec!["-O".to_string(), t.clone()],
                vec!["-O".to_string(), s.clone()],
                vec!["-t".to_string(), s.clone()],
                vec!["-j".to_string(), t.clone()],
                vec!["-S".to_string(), t.clone()],
                vec!["-w".to_string(), t.clone()],
                vec![s.clone(), t.clone()],
            ] {
                let _ = squeue(&args, &view, "alice", &env);
                let _ = super::super::sinfo::sinfo(&args, &view, &env);
                let _ = super::super::sacct::sacct(&args, &view, "alice", &env);
            }
            for args in [
                vec!["-o".to_string(), t.clone()],
                vec!["-S".to_string(), s.clone()],
                vec!["-E".to_string(), t.clone()],
                vec!["-j".to_string(), t.clone()],
            ] {
                let _ = super::super::sacct::sacct(&args, &view, "alice", &env);
            }
            let _ = super::super::show::show_job_arg(&view, Some(&t), false, true);
            let _ = super::super::show::show_node(&view, Some(&t), true);
        }
    }
}
