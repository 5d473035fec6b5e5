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
    if !(0..=365 * 24 * 3600).contains(&secs) {
        return "INVALID".into();
    }
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `secs2time_str` (`common/parse_time.c`): `HH:MM:SS` or `D-HH:MM:SS`.
pub(super) fn secs2time_str(secs: i64) -> String {
    if secs < 0 {
        return "INVALID".into();
    }
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `mins2time_str` (`common/parse_time.c`); `None` is `UNLIMITED`.
pub(super) fn mins2time_str(mins: Option<u64>) -> String {
    match mins {
        None => "UNLIMITED".into(),
        Some(m) => secs2time_str(m.min(i64::MAX as u64 / 120) as i64 * 60),
    }
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
    if t == 0 {
        return "Unknown".into();
    }
    let (y, mo, d, h, mi, s, _) = broken_down(t, tz_offset_s);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
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
    use JobState::*;
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
    let all = [
        Pending,
        Running,
        Suspended,
        Completed,
        Cancelled,
        Failed,
        Timeout,
        NodeFail,
        Preempted,
        BootFail,
        Deadline,
        OutOfMemory,
        Completing,
        Configuring,
        Requeued,
    ];
    if let Some(s) = all
        .iter()
        .find(|s| name.eq_ignore_ascii_case(s.long()) || name.eq_ignore_ascii_case(s.short()))
    {
        return Some(Some(*s));
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
            None if lower.len() >= 7 && "numtasks".starts_with(&lower[..7]) => Field::NumTasks,
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
            'l' => match job.time_limit_min {
                None => "UNLIMITED".into(),
                Some(m) => print_secs(m.min(1 << 40) as i64 * 60),
            },
            'L' => match job.time_limit_min {
                None => "UNLIMITED".into(),
                Some(m) => print_secs(m.min(1 << 40) as i64 * 60 - time_used(job, now)),
            },
            'm' => convert_num_unit(job.mem_per_node_mb, 2),
            'M' => print_secs(time_used(job, now)),
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
