//! `sacct`: accounting listings over [`super::model::View`], as Slurm 22.05 prints them.
//!
//! Sources (SchedMD/slurm, 22.05): `src/sacct/sacct.c` (the field table with widths, a
//! negative width being left-justified; the default, `-b` and `-l` field lists),
//! `src/sacct/options.c` (options, `SACCT_FORMAT`, field names matched case-insensitively
//! by prefix, `Name%width`, the default window from midnight today), `src/sacct/print.c`
//! (`CANCELLED by <uid>`, `code:signal`, steps), `src/common/print_fields.c` (a space
//! after every column, `+` marking a cut value, `|` for `-p`/`-P`), and
//! `src/common/parse_time.c` (`secs2time_str`, `slurm_make_time_str`).
//!
//! Choices where the model is thinner than slurmdbd:
//! - Steps: a job that started and ran a batch script gets one `N.batch` line (unless
//!   `-X`); there are no `N.extern` or `N.0` lines, since sovra has no job steps. The batch
//!   step of a job killed at its time limit is `CANCELLED` with exit `0:15`, as in Slurm.
//! - `CANCELLED by <uid>` uses the job owner's uid (the model does not say who cancelled).
//! - Usage statistics (`MaxRSS`, `AveCPU`, `TRESUsage*`, energy, ...) are accepted and
//!   printed empty; times are UTC.

use std::collections::BTreeMap;

use super::model::{Job, JobState, Output, View};
use super::squeue::{
    convert_num_unit, getopt, is_batch, job_tres, make_time_str, mins2time_str, nodelist,
    secs2time_str, split_list, time_used, unix_time, ArgKind, OptSpec, Parsed, SLURM_VERSION,
};

/// Every 22.05 field with its width (negative: left-justified), in `sacct.c` order, which
/// is the order `--helpformat` lists and prefixes match in.
const FIELDS: &[(&str, i32)] = &[
    ("Account", 10),
    ("AdminComment", 20),
    ("AllocCPUS", 10),
    ("AllocNodes", 10),
    ("AllocTRES", -12),
    ("AssocID", 10),
    ("AveCPU", 10),
    ("AveCPUFreq", 10),
    ("AveDiskRead", 14),
    ("AveDiskWrite", 14),
    ("AvePages", 10),
    ("AveRSS", 10),
    ("AveVMSize", 10),
    ("BlockID", 16),
    ("Cluster", 10),
    ("Comment", 14),
    ("Constraints", 20),
    ("ConsumedEnergy", 14),
    ("ConsumedEnergyRaw", 17),
    ("Container", 19),
    ("CPUTime", 10),
    ("CPUTimeRAW", 10),
    ("DBIndex", 9),
    ("DerivedExitCode", 15),
    ("Elapsed", 10),
    ("ElapsedRaw", 10),
    ("Eligible", 19),
    ("End", 19),
    ("ExitCode", 8),
    ("Flags", -12),
    ("GID", 6),
    ("Group", 9),
    ("JobID", -12),
    ("JobIDRaw", -12),
    ("JobName", 10),
    ("Layout", 8),
    ("MaxDiskRead", 12),
    ("MaxDiskReadNode", 15),
    ("MaxDiskReadTask", 15),
    ("MaxDiskWrite", 12),
    ("MaxDiskWriteNode", 16),
    ("MaxDiskWriteTask", 16),
    ("MaxPages", 8),
    ("MaxPagesNode", 12),
    ("MaxPagesTask", 12),
    ("MaxRSS", 10),
    ("MaxRSSNode", 10),
    ("MaxRSSTask", 10),
    ("MaxVMSize", 10),
    ("MaxVMSizeNode", 14),
    ("MaxVMSizeTask", 14),
    ("McsLabel", 20),
    ("MinCPU", 10),
    ("MinCPUNode", 10),
    ("MinCPUTask", 10),
    ("NCPUS", 10),
    ("NNodes", 8),
    ("NodeList", 15),
    ("NTasks", 8),
    ("Partition", 10),
    ("Priority", 10),
    ("QOS", 10),
    ("QOSRAW", 6),
    ("Reason", 25),
    ("ReqCPUFreq", 13),
    ("ReqCPUFreqGov", 13),
    ("ReqCPUFreqMax", 13),
    ("ReqCPUFreqMin", 13),
    ("ReqCPUS", 8),
    ("ReqMem", 10),
    ("ReqNodes", 8),
    ("ReqTRES", -12),
    ("Reservation", 20),
    ("ReservationId", 14),
    ("Reserved", 10),
    ("ResvCPU", 10),
    ("ResvCPURAW", 10),
    ("Start", 19),
    ("State", 10),
    ("Submit", 19),
    ("SubmitLine", -20),
    ("Suspended", 10),
    ("SystemComment", 15),
    ("SystemCPU", 10),
    ("Timelimit", 10),
    ("TimelimitRaw", 12),
    ("TotalCPU", 10),
    ("TRESUsageInAve", -14),
    ("TRESUsageInMax", -14),
    ("TRESUsageInMaxNode", -18),
    ("TRESUsageInMaxTask", -18),
    ("TRESUsageInMin", -14),
    ("TRESUsageInMinNode", -18),
    ("TRESUsageInMinTask", -18),
    ("TRESUsageInTot", -14),
    ("TRESUsageOutAve", -15),
    ("TRESUsageOutMax", -15),
    ("TRESUsageOutMaxNode", -19),
    ("TRESUsageOutMaxTask", -19),
    ("TRESUsageOutMin", -15),
    ("TRESUsageOutMinNode", -19),
    ("TRESUsageOutMinTask", -19),
    ("TRESUsageOutTot", -15),
    ("UID", 6),
    ("User", 9),
    ("UserCPU", 10),
    ("WCKey", 10),
    ("WCKeyID", 7),
    ("WorkDir", -15),
];

const DEFAULT_FIELDS: &str = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode";
const BRIEF_FIELDS: &str = "JobID,State,ExitCode";
const LONG_FIELDS: &str = "JobID,JobIDRaw,JobName,Partition,MaxVMSize,MaxVMSizeNode,\
MaxVMSizeTask,AveVMSize,MaxRSS,MaxRSSNode,MaxRSSTask,AveRSS,MaxPages,MaxPagesNode,MaxPagesTask,\
AvePages,MinCPU,MinCPUNode,MinCPUTask,AveCPU,NTasks,AllocCPUS,Elapsed,State,ExitCode,AveCPUFreq,\
ReqCPUFreqMin,ReqCPUFreqMax,ReqCPUFreqGov,ReqMem,ConsumedEnergy,MaxDiskRead,MaxDiskReadNode,\
MaxDiskReadTask,AveDiskRead,MaxDiskWrite,MaxDiskWriteNode,MaxDiskWriteTask,AveDiskWrite,ReqTRES,\
AllocTRES,TRESUsageInAve,TRESUsageInMax,TRESUsageInMaxNode,TRESUsageInMaxTask,TRESUsageInMin,\
TRESUsageInMinNode,TRESUsageInMinTask,TRESUsageInTot,TRESUsageOutMax,TRESUsageOutMaxNode,\
TRESUsageOutMaxTask,TRESUsageOutAve,TRESUsageOutTot";

/// A chosen column: the field's name (as in [`FIELDS`]) and width.
struct Column {
    name: &'static str,
    width: i32,
}

/// `--format` parsing (`sacct/options.c`): names match by case-insensitive prefix, first
/// in table order; `Name%N` sets the width (its sign chooses the side).
fn parse_fields(list: &str) -> Result<Vec<Column>, String> {
    let mut out = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (name, width) = match item.split_once('%') {
            Some((n, w)) => (n, Some(atoi(w))),
            None => (item, None),
        };
        let found = FIELDS.iter().find(|(f, _)| {
            !name.is_empty() && f.len() >= name.len() && f[..name.len()].eq_ignore_ascii_case(name)
        });
        let Some((fname, fwidth)) = found else {
            return Err(format!("Invalid field requested: \"{name}\"\n"));
        };
        let width = match width {
            Some(w) if w != 0 => w,
            _ => *fwidth,
        };
        out.push(Column { name: fname, width });
    }
    Ok(out)
}

/// C's `atoi`, clamped to a sane width.
fn atoi(s: &str) -> i32 {
    let s = s.trim_start();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i32, |n, b| (n * 10 + i32::from(b - b'0')).min(4096));
    if neg {
        -n
    } else {
        n
    }
}

/// One output line: a job or its batch step.
struct Line<'a> {
    job: &'a Job,
    batch: bool,
}

/// `JobID` as sacct prints it: `12`, `12_3`, with `.batch` for the step.
fn job_id(job: &Job, raw: bool) -> String {
    match (raw, job.array_job_id, job.array_task_id) {
        (false, Some(a), Some(t)) => format!("{a}_{t}"),
        _ => job.job_id.to_string(),
    }
}

/// The state and exit code of a job's batch step.
fn batch_state(job: &Job) -> (String, String) {
    match job.state {
        JobState::Timeout => ("CANCELLED".into(), "0:15".into()),
        s => (
            s.long().into(),
            format!("{}:{}", job.exit_code, job.exit_signal),
        ),
    }
}

/// A field's value for a line; `None` prints blank.
fn value(name: &str, line: &Line, view: &View) -> Option<String> {
    let job = line.job;
    let batch = line.batch;
    let started = job.start_time.is_some() && job.state != JobState::Pending;
    let step_cpus = job.num_cpus / job.num_nodes.max(1);
    let v = match name {
        "Account" => job.account.clone(),
        "AllocCPUS" | "NCPUS" => {
            if batch {
                step_cpus.to_string()
            } else if started {
                job.num_cpus.to_string()
            } else {
                "0".into()
            }
        }
        "AllocNodes" => {
            if started {
                job.num_nodes.to_string()
            } else {
                "0".into()
            }
        }
        "AllocTRES" => {
            if batch {
                let mem = convert_num_unit(job.mem_per_node_mb, 2);
                format!("cpu={step_cpus},mem={mem},node=1")
            } else if started {
                job_tres(job, true)
            } else {
                String::new()
            }
        }
        "ReqTRES" => {
            if batch {
                return None;
            } else {
                job_tres(job, true)
            }
        }
        "Cluster" => view.cluster.clone(),
        "Comment" => {
            if batch {
                return None;
            } else {
                job.comment.clone()
            }
        }
        "Constraints" => {
            if batch {
                return None;
            } else {
                job.features.clone()
            }
        }
        "CPUTime" => secs2time_str(time_used(job, view.now) * i64::from(job.num_cpus)),
        "CPUTimeRAW" => (time_used(job, view.now) * i64::from(job.num_cpus)).to_string(),
        "DerivedExitCode" => {
            if batch {
                return None;
            } else {
                "0:0".into()
            }
        }
        "Elapsed" => secs2time_str(time_used(job, view.now)),
        "ElapsedRaw" => time_used(job, view.now).to_string(),
        "Eligible" => {
            if batch {
                return None;
            }
            make_time_str(job.eligible_time.unwrap_or(0), 0)
        }
        "End" => make_time_str(job.end_time.unwrap_or(0), 0),
        "ExitCode" => {
            if batch {
                batch_state(job).1
            } else {
                format!("{}:{}", job.exit_code, job.exit_signal)
            }
        }
        "GID" => job.gid.to_string(),
        "Group" => {
            if batch {
                return None;
            } else {
                job.group.clone()
            }
        }
        "JobID" => format!(
            "{}{}",
            job_id(job, false),
            if batch { ".batch" } else { "" }
        ),
        "JobIDRaw" => format!("{}{}", job_id(job, true), if batch { ".batch" } else { "" }),
        "JobName" => {
            if batch {
                "batch".into()
            } else {
                job.name.clone()
            }
        }
        "NNodes" => {
            if batch {
                "1".into()
            } else {
                job.num_nodes.to_string()
            }
        }
        "NodeList" => {
            if batch {
                job.batch_host.clone().unwrap_or_default()
            } else if started {
                nodelist(&job.nodes)
            } else {
                "None assigned".into()
            }
        }
        "NTasks" if batch => "1".into(),
        "Partition" => {
            if batch {
                return None;
            } else {
                job.partition.clone()
            }
        }
        "Priority" => job.priority.to_string(),
        "QOS" => {
            if batch {
                return None;
            } else {
                job.qos.clone()
            }
        }
        "Reason" => {
            if batch {
                return None;
            } else {
                super::squeue::reason(job).into()
            }
        }
        "ReqCPUS" => job.num_cpus.to_string(),
        "ReqMem" => convert_num_unit(job.mem_per_node_mb, 2),
        "ReqNodes" => job.num_nodes.to_string(),
        "Reserved" | "ResvCPU" => {
            let start = job.start_time.unwrap_or(view.now);
            let since = job.eligible_time.unwrap_or(job.submit_time);
            secs2time_str((start - since).max(0))
        }
        "Start" => make_time_str(
            if started {
                job.start_time.unwrap_or(0)
            } else {
                0
            },
            0,
        ),
        "State" => {
            if batch {
                batch_state(job).0
            } else if job.state == JobState::Cancelled {
                format!("CANCELLED by {}", job.uid)
            } else {
                job.state.long().into()
            }
        }
        "Submit" => make_time_str(job.submit_time, 0),
        "Suspended" => "00:00:00".into(),
        "Timelimit" => {
            if batch {
                return None;
            } else {
                mins2time_str(job.time_limit_min)
            }
        }
        "TimelimitRaw" => {
            if batch {
                return None;
            }
            job.time_limit_min
                .map_or("UNLIMITED".into(), |m| m.to_string())
        }
        "UID" => job.uid.to_string(),
        "User" => {
            if batch {
                return None;
            } else {
                job.user.clone()
            }
        }
        "WorkDir" => job.work_dir.clone(),
        "SubmitLine" | "Flags" => {
            if batch {
                return None;
            } else {
                String::new()
            }
        }
        _ => return None,
    };
    Some(v)
}

/// How columns are separated (`print_fields.c`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fixed,
    /// `-p`: a delimiter after every value.
    Parsable,
    /// `-P`: a delimiter between values.
    Parsable2,
}

/// `print_fields_str`: a fixed column, cut with a `+`, then a space; or the value and the
/// delimiter.
fn render(col: &Column, v: Option<&str>, mode: Mode, delim: &str, last: bool, out: &mut String) {
    match mode {
        Mode::Parsable2 if last => out.push_str(v.unwrap_or("")),
        Mode::Parsable | Mode::Parsable2 => {
            out.push_str(v.unwrap_or(""));
            out.push_str(delim);
        }
        Mode::Fixed => {
            let w = col.width.unsigned_abs() as usize;
            let text: String = match v {
                None => " ".into(),
                Some(v) if v.chars().count() > w && w > 0 => {
                    let mut t: String = v.chars().take(w - 1).collect();
                    t.push('+');
                    t
                }
                Some(v) => v.chars().take(w).collect(),
            };
            let pad = w.saturating_sub(text.chars().count());
            if col.width >= 0 {
                out.push_str(&" ".repeat(pad));
                out.push_str(&text);
            } else {
                out.push_str(&text);
                out.push_str(&" ".repeat(pad));
            }
            out.push(' ');
        }
    }
}

const SACCT_OPTIONS: &[OptSpec] = &[
    OptSpec {
        short: Some('a'),
        long: &["allusers"],
        arg: ArgKind::None,
        id: "a",
    },
    OptSpec {
        short: Some('A'),
        long: &["accounts"],
        arg: ArgKind::Required,
        id: "A",
    },
    OptSpec {
        short: Some('b'),
        long: &["brief"],
        arg: ArgKind::None,
        id: "b",
    },
    OptSpec {
        short: Some('c'),
        long: &["completion"],
        arg: ArgKind::None,
        id: "c",
    },
    OptSpec {
        short: Some('D'),
        long: &["duplicates"],
        arg: ArgKind::None,
        id: "D",
    },
    OptSpec {
        short: None,
        long: &["delimiter"],
        arg: ArgKind::Required,
        id: "delimiter",
    },
    OptSpec {
        short: Some('e'),
        long: &["helpformat"],
        arg: ArgKind::None,
        id: "e",
    },
    OptSpec {
        short: Some('E'),
        long: &["endtime"],
        arg: ArgKind::Required,
        id: "E",
    },
    OptSpec {
        short: Some('h'),
        long: &["help"],
        arg: ArgKind::None,
        id: "help",
    },
    OptSpec {
        short: Some('j'),
        long: &["jobs"],
        arg: ArgKind::Required,
        id: "j",
    },
    OptSpec {
        short: None,
        long: &["json"],
        arg: ArgKind::Optional,
        id: "json",
    },
    OptSpec {
        short: Some('l'),
        long: &["long"],
        arg: ArgKind::None,
        id: "l",
    },
    OptSpec {
        short: Some('L'),
        long: &["allclusters"],
        arg: ArgKind::None,
        id: "L",
    },
    OptSpec {
        short: Some('M'),
        long: &["clusters"],
        arg: ArgKind::Required,
        id: "M",
    },
    OptSpec {
        short: None,
        long: &["name"],
        arg: ArgKind::Required,
        id: "name",
    },
    OptSpec {
        short: Some('n'),
        long: &["noheader"],
        arg: ArgKind::None,
        id: "n",
    },
    OptSpec {
        short: Some('N'),
        long: &["nodelist"],
        arg: ArgKind::Required,
        id: "N",
    },
    OptSpec {
        short: Some('o'),
        long: &["format"],
        arg: ArgKind::Required,
        id: "o",
    },
    OptSpec {
        short: Some('p'),
        long: &["parsable"],
        arg: ArgKind::None,
        id: "p",
    },
    OptSpec {
        short: Some('P'),
        long: &["parsable2"],
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
        short: Some('r'),
        long: &["partition"],
        arg: ArgKind::Required,
        id: "r",
    },
    OptSpec {
        short: Some('s'),
        long: &["state"],
        arg: ArgKind::Required,
        id: "s",
    },
    OptSpec {
        short: Some('S'),
        long: &["starttime"],
        arg: ArgKind::Required,
        id: "S",
    },
    OptSpec {
        short: Some('T'),
        long: &["truncate"],
        arg: ArgKind::None,
        id: "T",
    },
    OptSpec {
        short: Some('u'),
        long: &["uid", "user"],
        arg: ArgKind::Required,
        id: "u",
    },
    OptSpec {
        short: None,
        long: &["units"],
        arg: ArgKind::Required,
        id: "units",
    },
    OptSpec {
        short: None,
        long: &["usage"],
        arg: ArgKind::None,
        id: "usage",
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
        short: Some('X'),
        long: &["allocations"],
        arg: ArgKind::None,
        id: "X",
    },
    OptSpec {
        short: None,
        long: &["yaml"],
        arg: ArgKind::Optional,
        id: "yaml",
    },
];

const SACCT_USAGE: &str = "\
Usage: sacct [options]
\tUse --help for help
";

const SACCT_HELP: &str = "\
sacct [<OPTION>]
    Valid <OPTION> values are:
     -a, --allusers:
\t           Display jobs for all users. By default, only the
\t           current user's jobs are displayed.  If ran by user root
\t           this is the default.
     -A, --accounts:
\t           Use this comma separated list of accounts to select jobs
\t           to display.  By default, all accounts are selected.
     -b, --brief:
\t           Equivalent to '--format=jobstep,state,error'.
     --delimiter:
\t           ASCII characters used to separate the fields when
\t           specifying the  -p  or  -P options. The default delimiter
\t           is a '|'. This option is ignored if -p or -P options
\t           are not specified.
     -e, --helpformat:
\t           Print a list of fields that can be specified with the
\t           '--format' option
     -E, --endtime:
\t           Select jobs eligible before this time.  If states are
\t           given with the -s option then return jobs in this state
\t           before this period.
     -h, --help: Print this description of use.
     -j, --jobs:
\t           Format is <job(.step)>. Display information about this
\t           job or comma-separated list of jobs. The default is all
\t           jobs. Adding .step will display the specific job step of
\t           that job. (A step id of 'batch' will display the
\t           information about the batch step.)
     -l, --long:
\t           Equivalent to specifying
\t           '--format=jobid,jobidraw,jobname,partition,maxvmsize,
\t                     maxvmsizenode,maxvmsizetask,avevmsize,maxrss,
\t                     maxrssnode,maxrsstask,averss,maxpages,
\t                     maxpagesnode,maxpagestask,avepages,mincpu,
\t                     mincpunode,mincputask,avecpu,ntasks,alloccpus,
\t                     elapsed,state,exitcode,avecpufreq,reqcpufreqmin,
\t                     reqcpufreqmax,reqcpufreqgov,reqmem,consumedenergy,
\t                     maxdiskread,maxdiskreadnode,maxdiskreadtask,
\t                     avediskread,maxdiskwrite,maxdiskwritenode,
\t                     maxdiskwritetask,avediskwrite,reqtres,alloctres,
\t                     tresusageinave,tresusageinmax,tresusageinmaxn,
\t                     tresusageinmaxt,tresusageinmin,tresusageinminn,
\t                     tresusageinmint,tresusageintot,tresusageoutmax,
\t                     tresusageoutmaxn,tresusageoutmaxt,
\t                     tresusageoutave,tresusageouttot
     -n, --noheader:
\t           No header will be added to the beginning of output.
\t           The default is to print a header.
     -o, --format:
\t           Comma separated list of fields. (use \"--helpformat\"
\t           for a list of available fields).
     -p, --parsable: output will be '|' delimited with a '|' at the end
     -P, --parsable2: output will be '|' delimited without a '|' at the end
     -r, --partition:
\t           Comma separated list of partitions to select jobs and
\t           job steps from. The default is all partitions.
     -s, --state:
\t           Select jobs based on their current state or the state
\t           they were in during the time period given: running (r),
\t           completed (cd), failed (f), timeout (to), resizing (rs),
\t           deadline (dl) and node_fail (nf).
     -S, --starttime:
\t           Select jobs eligible after this time.  Default is
\t           00:00:00 of the current day, unless '-s' is set then
\t           the default is 'now'.
     -u, --uid, --user:
\t           Use this comma separated list of uids or user names
\t           to select jobs to display.  By default, the running
\t           user's uid is used.
     --usage: Display brief usage message.
     -V, --version: Print version.
     -X, --allocations:
\t           Only show statistics relevant to the job allocation
\t           itself, not taking steps into consideration.
";

/// `parse_time` (`common/parse_time.c`), the forms scripts use: `now[{+|-}N[unit]]`,
/// `today`, `midnight`, `YYYY-MM-DD[THH:MM[:SS]]`, `HH:MM[:SS]` (today). UTC.
fn parse_time(s: &str, now: i64) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let midnight = now - now.rem_euclid(86400);
    if lower == "today" || lower == "midnight" {
        return Some(midnight);
    }
    if lower == "tomorrow" {
        return Some(midnight + 86400);
    }
    if let Some(rest) = lower.strip_prefix("now") {
        if rest.is_empty() {
            return Some(now);
        }
        let (sign, rest) = match rest.as_bytes()[0] {
            b'+' => (1, &rest[1..]),
            b'-' => (-1, &rest[1..]),
            _ => return None,
        };
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: i64 = rest[..digits].parse().ok()?;
        let unit = match &rest[digits..] {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            "w" | "week" | "weeks" => 7 * 86400,
            _ => return None,
        };
        return Some(now + sign * n.checked_mul(unit)?);
    }
    let nums = |t: &str| -> Option<Vec<u32>> { t.split(':').map(|x| x.parse().ok()).collect() };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (Some(d), Some(t)),
        None if s.contains('-') => (Some(s), None),
        None => (None, Some(s)),
    };
    let hms = match time {
        None => vec![0, 0, 0],
        Some(t) => nums(t)?,
    };
    if hms.len() < 2 && date.is_none() || hms.len() > 3 || hms.is_empty() {
        return None;
    }
    let (h, mi, sec) = (hms[0], *hms.get(1).unwrap_or(&0), *hms.get(2).unwrap_or(&0));
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    match date {
        None => Some(midnight + i64::from(h * 3600 + mi * 60 + sec)),
        Some(d) => {
            let parts: Vec<&str> = d.split('-').collect();
            let [y, mo, day] = parts[..] else { return None };
            let (y, mo, day): (i64, u32, u32) =
                (y.parse().ok()?, mo.parse().ok()?, day.parse().ok()?);
            if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || !(1970..=9999).contains(&y) {
                return None;
            }
            Some(unix_time(y, mo, day, h, mi, sec))
        }
    }
}

/// `sacct`: (exit code, stdout, stderr).
pub fn sacct(args: &[String], view: &View, me: &str, env: &BTreeMap<String, String>) -> Output {
    match run_sacct(args, view, me, env) {
        Ok(out) => out,
        Err(err) => (1, String::new(), err),
    }
}

fn run_sacct(
    args: &[String],
    view: &View,
    me: &str,
    env: &BTreeMap<String, String>,
) -> Result<Output, String> {
    const TRY: &str = "Try \"sacct --help\" for more information\n";
    let parsed = getopt("sacct", args, SACCT_OPTIONS).map_err(|e| format!("{e}{TRY}"))?;
    let mut format = env.get("SACCT_FORMAT").cloned();
    let mut extra_format: Vec<String> = Vec::new();
    let mut all_users = me == "root";
    let mut users: Option<Vec<String>> = None;
    let mut accounts: Option<Vec<String>> = None;
    let mut partitions: Option<Vec<String>> = None;
    let mut qos: Option<Vec<String>> = None;
    let mut names: Option<Vec<String>> = None;
    let mut nodes: Option<Vec<String>> = None;
    let mut jobs: Option<Vec<(u64, Option<u32>)>> = None;
    let mut states: Option<Vec<JobState>> = None;
    let (mut start, mut end) = (None, None);
    let mut mode = Mode::Fixed;
    let mut delim = "|".to_string();
    let mut no_header = false;
    let mut allocations = false;
    for item in parsed {
        let (id, arg) = match item {
            Parsed::Positional(a) => {
                return Err(format!(
                    "sacct: error: Unknown arguments: {a}\n{SACCT_USAGE}"
                ))
            }
            Parsed::Opt(id, arg) => (id, arg.unwrap_or_default()),
        };
        match id {
            "a" => all_users = true,
            "A" => accounts = Some(split_list(&arg)),
            "b" => format = Some(BRIEF_FIELDS.into()),
            "delimiter" => delim = arg,
            "e" => {
                let mut out = String::new();
                for (i, (name, _)) in FIELDS.iter().enumerate() {
                    if i % 4 != 0 {
                        out.push(' ');
                    } else if i > 0 {
                        out.push('\n');
                    }
                    out.push_str(&format!("{name:<19}"));
                }
                out.push('\n');
                return Ok((0, out, String::new()));
            }
            "E" | "S" => {
                let Some(t) = parse_time(&arg, view.now) else {
                    return Err(format!(
                        "sacct: error: Invalid time specification (pos=0): {arg}\n"
                    ));
                };
                if id == "S" {
                    start = Some(t);
                } else {
                    end = Some(t);
                }
            }
            "help" => return Ok((0, SACCT_HELP.into(), String::new())),
            "usage" => return Ok((0, SACCT_USAGE.into(), String::new())),
            "j" => {
                let mut list = Vec::new();
                for item in split_list(&arg) {
                    let job = item.split('.').next().unwrap_or("");
                    let (id, task) = match job.split_once('_') {
                        Some((j, t)) => (j, Some(t)),
                        None => (job, None),
                    };
                    let id: Option<u64> = id.parse().ok().filter(|n| *n > 0);
                    let task: Option<Option<u32>> = match task {
                        None => Some(None),
                        Some(t) => t.parse().ok().map(Some),
                    };
                    match (id, task) {
                        (Some(id), Some(task)) => list.push((id, task)),
                        _ => return Err(format!("sacct: fatal: Bad job/step specified: {item}\n")),
                    }
                }
                jobs = Some(list);
            }
            "l" => format = Some(LONG_FIELDS.into()),
            "name" => names = Some(split_list(&arg)),
            "n" => no_header = true,
            "N" => match sovra_fabric::slurm::hostlist::expand(&arg) {
                Ok(h) => nodes = Some(h),
                Err(_) => return Err(format!("sacct: fatal: Invalid node list: {arg}\n")),
            },
            "o" => extra_format.push(arg),
            "p" => mode = Mode::Parsable,
            "P" => mode = Mode::Parsable2,
            "q" => qos = Some(split_list(&arg)),
            "r" => partitions = Some(split_list(&arg)),
            "s" => {
                let mut list = Vec::new();
                for name in split_list(&arg) {
                    let state = sacct_state(&name).ok_or_else(|| {
                        format!("sacct: fatal: unrecognized job state value {name}\n")
                    })?;
                    list.extend(state);
                }
                states = Some(list);
            }
            "u" => {
                if arg == "-1" {
                    all_users = true;
                } else {
                    users = Some(split_list(&arg));
                }
            }
            "V" => return Ok((0, format!("{SLURM_VERSION}\n"), String::new())),
            "X" => allocations = true,
            "json" | "yaml" => {
                return Err(format!(
                    "sacct: error: sovra's sacct does not print --{id}; use the sovra CLI's json \
                     output\n"
                ))
            }
            // -c, -D, -L, -M, -T, --units, -v.
            _ => {}
        }
    }
    // `-o` adds to `-b`/`-l` when given with them, else replaces the default.
    let mut fields = format.unwrap_or_default();
    if !extra_format.is_empty() {
        if !fields.is_empty() && args.iter().any(|a| matches!(a.as_str(), "-b" | "-l")) {
            fields.push(',');
        } else {
            fields.clear();
        }
        fields.push_str(&extra_format.join(","));
    }
    if fields.is_empty() {
        fields = DEFAULT_FIELDS.into();
    }
    let columns = parse_fields(&fields)?;

    // The window: from midnight today, or from now with `-s`, or from the epoch with -j.
    let midnight = view.now - view.now.rem_euclid(86400);
    let start = start.unwrap_or(if jobs.is_some() {
        0
    } else if states.is_some() {
        view.now
    } else {
        midnight
    });
    let end = end.unwrap_or(view.now);
    if end < start {
        return Err(format!(
            "sacct: error: Start time ({}) requested is after end time ({}).\n",
            make_time_str(start, 0),
            make_time_str(end, 0)
        ));
    }
    let mut selected: Vec<&Job> = view
        .jobs
        .iter()
        .filter(|j| {
            if let Some(list) = &jobs {
                let hit = list.iter().any(|(id, task)| match task {
                    None => *id == j.job_id || Some(*id) == j.array_job_id,
                    Some(t) => Some(*id) == j.array_job_id && Some(*t) == j.array_task_id,
                });
                if !hit {
                    return false;
                }
            } else if j.submit_time > end || j.end_time.is_some_and(|e| e < start) {
                return false;
            }
            if !all_users && jobs.is_none() || users.is_some() {
                let wanted = users.clone().unwrap_or_else(|| vec![me.to_string()]);
                if !wanted
                    .iter()
                    .any(|u| *u == j.user || u.parse::<u32>().ok() == Some(j.uid))
                {
                    return false;
                }
            }
            let in_list = |list: &Option<Vec<String>>, v: &str| {
                list.as_ref()
                    .is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(v)))
            };
            in_list(&accounts, &j.account)
                && in_list(&partitions, &j.partition)
                && in_list(&qos, &j.qos)
                && names.as_ref().is_none_or(|n| n.contains(&j.name))
                && states.as_ref().is_none_or(|s| s.contains(&j.state))
                && nodes
                    .as_ref()
                    .is_none_or(|n| j.nodes.iter().any(|x| n.contains(x)))
        })
        .collect();
    selected.sort_by_key(|j| {
        (
            j.array_job_id.unwrap_or(j.job_id),
            j.array_task_id,
            j.job_id,
        )
    });

    let mut out = String::new();
    if !no_header {
        for (i, col) in columns.iter().enumerate() {
            let last = i + 1 == columns.len();
            match mode {
                Mode::Fixed => {
                    let w = col.width.unsigned_abs() as usize;
                    let name: String = col.name.chars().take(w).collect();
                    if col.width >= 0 {
                        out.push_str(&format!("{name:>w$} "));
                    } else {
                        out.push_str(&format!("{name:<w$} "));
                    }
                }
                _ => render(col, Some(col.name), mode, &delim, last, &mut out),
            }
        }
        out.push('\n');
        if mode == Mode::Fixed {
            for col in &columns {
                let w = col.width.unsigned_abs() as usize;
                out.push_str(&"-".repeat(w));
                out.push(' ');
            }
            out.push('\n');
        }
    }
    for job in selected {
        let mut lines = vec![Line { job, batch: false }];
        let ran = job.start_time.is_some() && job.state != JobState::Pending;
        if !allocations && ran && is_batch(job) {
            lines.push(Line { job, batch: true });
        }
        for line in &lines {
            for (i, col) in columns.iter().enumerate() {
                let v = value(col.name, line, view);
                render(
                    col,
                    v.as_deref(),
                    mode,
                    &delim,
                    i + 1 == columns.len(),
                    &mut out,
                );
            }
            out.push('\n');
        }
    }
    Ok((0, out, String::new()))
}

/// The states `-s` accepts (`sacct/options.c` `_decode_state` over `job_state_num`).
fn sacct_state(name: &str) -> Option<Option<JobState>> {
    if let Some(s) = JobState::from_name(name) {
        return Some(Some(s));
    }
    ["RS", "RESIZING", "RV", "REVOKED", "SE", "SPECIAL_EXIT"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
        .then_some(None)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::super::squeue::fixture::check;

    /// The conformance table for `sacct`, written from `sacct/sacct.c`, `options.c`,
    /// `print.c` and `common/print_fields.c` of 22.05, as user `alice` at 12:00.
    #[test]
    fn sacct_conformance() {
        check(
            &[
                "sacct",
                "sacct -X",
                "sacct -P -o JobID,State,ExitCode",
                "sacct -p -X -o jobid,jobn,elapsed,start,end -j 101,110",
                "sacct -b -j 111,113",
                "sacct -a -X -n -o JobID,User,Partition,NodeList,AllocTRES%40 -s R",
                "sacct -X -o JobID%-8,JobName%5,State%20,ExitCode -j 113,200",
                "sacct -X -o reqtres,alloctres,timelimit,submit -j 101",
                "sacct -P --delimiter=, -X -n -o jobid,jobidraw,state -j 200_1,205",
                "sacct -X -u bob -S 2024-03-01 -o JobID,User,State",
                "sacct -X -a -S now-30minutes -E now -o JobID,State -n",
                "sacct -X -S 2024-02-29T00:00:00 -n -o JobID,Submit",
                "SACCT_FORMAT=JobID,MaxRSS sacct -X -j 112",
            ],
            expect![[r#"
                $ sacct
                JobID           JobName  Partition    Account  AllocCPUS      State ExitCode 
                ------------ ---------- ---------- ---------- ---------- ---------- -------- 
                101               train        gpu         ml        128    RUNNING      0:0 
                101.batch         batch                    ml         64    RUNNING      0:0 
                103               sweep        gpu         ml          0    PENDING      0:0 
                105                held        gpu         ml          0    PENDING      0:0 
                110                 oom        gpu         ml          8 OUT_OF_ME+    0:125 
                110.batch         batch                    ml          8 OUT_OF_ME+    0:125 
                111                slow        gpu         ml          8    TIMEOUT      0:0 
                111.batch         batch                    ml          8  CANCELLED     0:15 
                112                  ok        gpu         ml          8  COMPLETED      0:0 
                112.batch         batch                    ml          8  COMPLETED      0:0 
                113                stop        gpu         ml          8 CANCELLED+     0:15 
                113.batch         batch                    ml          8  CANCELLED     0:15 
                115              wrapup      debug         ml          8 COMPLETING      0:0 
                115.batch         batch                    ml          8 COMPLETING      0:0 
                200_0               arr        cpu         ml          8    RUNNING      0:0 
                200_0.batch       batch                    ml          8    RUNNING      0:0 
                200_1               arr        cpu         ml          8    RUNNING      0:0 
                200_1.batch       batch                    ml          8    RUNNING      0:0 
                200_2               arr        cpu         ml          0    PENDING      0:0 
                200_3               arr        cpu         ml          0    PENDING      0:0 
                200_4               arr        cpu         ml          0    PENDING      0:0 
                200_5               arr        cpu         ml          0    PENDING      0:0 
                200_6               arr        cpu         ml          0    PENDING      0:0 
                200_7               arr        cpu         ml          0    PENDING      0:0 
                200_8               arr        cpu         ml          0    PENDING      0:0 
                200_9               arr        cpu         ml          0    PENDING      0:0 
                $ sacct -X
                JobID           JobName  Partition    Account  AllocCPUS      State ExitCode 
                ------------ ---------- ---------- ---------- ---------- ---------- -------- 
                101               train        gpu         ml        128    RUNNING      0:0 
                103               sweep        gpu         ml          0    PENDING      0:0 
                105                held        gpu         ml          0    PENDING      0:0 
                110                 oom        gpu         ml          8 OUT_OF_ME+    0:125 
                111                slow        gpu         ml          8    TIMEOUT      0:0 
                112                  ok        gpu         ml          8  COMPLETED      0:0 
                113                stop        gpu         ml          8 CANCELLED+     0:15 
                115              wrapup      debug         ml          8 COMPLETING      0:0 
                200_0               arr        cpu         ml          8    RUNNING      0:0 
                200_1               arr        cpu         ml          8    RUNNING      0:0 
                200_2               arr        cpu         ml          0    PENDING      0:0 
                200_3               arr        cpu         ml          0    PENDING      0:0 
                200_4               arr        cpu         ml          0    PENDING      0:0 
                200_5               arr        cpu         ml          0    PENDING      0:0 
                200_6               arr        cpu         ml          0    PENDING      0:0 
                200_7               arr        cpu         ml          0    PENDING      0:0 
                200_8               arr        cpu         ml          0    PENDING      0:0 
                200_9               arr        cpu         ml          0    PENDING      0:0 
                $ sacct -P -o JobID,State,ExitCode
                JobID|State|ExitCode
                101|RUNNING|0:0
                101.batch|RUNNING|0:0
                103|PENDING|0:0
                105|PENDING|0:0
                110|OUT_OF_MEMORY|0:125
                110.batch|OUT_OF_MEMORY|0:125
                111|TIMEOUT|0:0
                111.batch|CANCELLED|0:15
                112|COMPLETED|0:0
                112.batch|COMPLETED|0:0
                113|CANCELLED by 1001|0:15
                113.batch|CANCELLED|0:15
                115|COMPLETING|0:0
                115.batch|COMPLETING|0:0
                200_0|RUNNING|0:0
                200_0.batch|RUNNING|0:0
                200_1|RUNNING|0:0
                200_1.batch|RUNNING|0:0
                200_2|PENDING|0:0
                200_3|PENDING|0:0
                200_4|PENDING|0:0
                200_5|PENDING|0:0
                200_6|PENDING|0:0
                200_7|PENDING|0:0
                200_8|PENDING|0:0
                200_9|PENDING|0:0
                $ sacct -p -X -o jobid,jobn,elapsed,start,end -j 101,110
                JobID|JobName|Elapsed|Start|End|
                101|train|01:02:05|2024-03-01T10:57:55|Unknown|
                110|oom|00:15:00|2024-03-01T11:35:00|2024-03-01T11:50:00|
                $ sacct -b -j 111,113
                JobID             State ExitCode 
                ------------ ---------- -------- 
                111             TIMEOUT      0:0 
                111.batch     CANCELLED     0:15 
                113          CANCELLED+     0:15 
                113.batch     CANCELLED     0:15 
                $ sacct -a -X -n -o JobID,User,Partition,NodeList,AllocTRES%40 -s R
                101              alice        gpu      gpu[01-02] billing=128,cpu=128,gres/gpu=16,mem=512+ 
                102                bob        gpu           gpu03         billing=32,cpu=32,mem=32G,node=1 
                200_0            alice        cpu            cpu2           billing=8,cpu=8,mem=32G,node=1 
                200_1            alice        cpu            cpu2           billing=8,cpu=8,mem=32G,node=1 
                $ sacct -X -o JobID%-8,JobName%5,State%20,ExitCode -j 113,200
                JobID    JobNa                State ExitCode 
                -------- ----- -------------------- -------- 
                113       stop    CANCELLED by 1001     0:15 
                200_0      arr              RUNNING      0:0 
                200_1      arr              RUNNING      0:0 
                200_2      arr              PENDING      0:0 
                200_3      arr              PENDING      0:0 
                200_4      arr              PENDING      0:0 
                200_5      arr              PENDING      0:0 
                200_6      arr              PENDING      0:0 
                200_7      arr              PENDING      0:0 
                200_8      arr              PENDING      0:0 
                200_9      arr              PENDING      0:0 
                $ sacct -X -o reqtres,alloctres,timelimit,submit -j 101
                ReqTRES      AllocTRES     Timelimit              Submit 
                ------------ ------------ ---------- ------------------- 
                billing=128+ billing=128+ 1-00:00:00 2024-03-01T10:00:00 
                $ sacct -P --delimiter=, -X -n -o jobid,jobidraw,state -j 200_1,205
                200_1,202,RUNNING
                200_4,205,PENDING
                $ sacct -X -u bob -S 2024-03-01 -o JobID,User,State
                JobID             User      State 
                ------------ --------- ---------- 
                102                bob    RUNNING 
                106                bob    PENDING 
                114                bob     FAILED 
                $ sacct -X -a -S now-30minutes -E now -o JobID,State -n
                101             RUNNING 
                102             RUNNING 
                103             PENDING 
                104             PENDING 
                105             PENDING 
                106             PENDING 
                110          OUT_OF_ME+ 
                111             TIMEOUT 
                112           COMPLETED 
                113          CANCELLED+ 
                114              FAILED 
                115          COMPLETING 
                200_0           RUNNING 
                200_1           RUNNING 
                200_2           PENDING 
                200_3           PENDING 
                200_4           PENDING 
                200_5           PENDING 
                200_6           PENDING 
                200_7           PENDING 
                200_8           PENDING 
                200_9           PENDING 
                $ sacct -X -S 2024-02-29T00:00:00 -n -o JobID,Submit
                101          2024-03-01T10:00:00 
                103          2024-03-01T10:00:00 
                105          2024-03-01T10:00:00 
                110          2024-03-01T10:00:00 
                111          2024-03-01T10:00:00 
                112          2024-03-01T10:00:00 
                113          2024-03-01T10:00:00 
                115          2024-03-01T10:00:00 
                116          2024-02-29T11:00:00 
                200_0        2024-03-01T10:00:00 
                200_1        2024-03-01T10:00:00 
                200_2        2024-03-01T10:00:00 
                200_3        2024-03-01T10:00:00 
                200_4        2024-03-01T10:00:00 
                200_5        2024-03-01T10:00:00 
                200_6        2024-03-01T10:00:00 
                200_7        2024-03-01T10:00:00 
                200_8        2024-03-01T10:00:00 
                200_9        2024-03-01T10:00:00 
                $ SACCT_FORMAT=JobID,MaxRSS sacct -X -j 112
                JobID            MaxRSS 
                ------------ ---------- 
                112                     
            "#]],
        );
    }

    #[test]
    fn sacct_errors_and_info() {
        check(
            &[
                "sacct -o JobID,Bogus",
                "sacct -S yesterdayish",
                "sacct -S now -E 2020-01-01",
                "sacct -j x1",
                "sacct -s nope",
                "sacct -Y",
                "sacct -V",
                "sacct --usage",
            ],
            expect![[r#"
                $ sacct -o JobID,Bogus
                [stderr]
                Invalid field requested: "Bogus"
                [exit 1]
                $ sacct -S yesterdayish
                [stderr]
                sacct: error: Invalid time specification (pos=0): yesterdayish
                [exit 1]
                $ sacct -S now -E 2020-01-01
                [stderr]
                sacct: error: Start time (2024-03-01T12:00:00) requested is after end time (2020-01-01T00:00:00).
                [exit 1]
                $ sacct -j x1
                [stderr]
                sacct: fatal: Bad job/step specified: x1
                [exit 1]
                $ sacct -s nope
                [stderr]
                sacct: fatal: unrecognized job state value nope
                [exit 1]
                $ sacct -Y
                [stderr]
                sacct: invalid option -- 'Y'
                Try "sacct --help" for more information
                [exit 1]
                $ sacct -V
                slurm 22.05.11
                $ sacct --usage
                Usage: sacct [options]
                	Use --help for help
            "#]],
        );
        let (code, out, _) = super::super::squeue::fixture::run_line("sacct -e");
        assert_eq!(code, 0);
        assert!(out.starts_with(
            "Account             AdminComment        AllocCPUS           AllocNodes         \n"
        ));
    }
}
