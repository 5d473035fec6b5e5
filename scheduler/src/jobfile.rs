//! The job file: sovra's TOML format for submitting a job, converted to a core `JobSpec`.
//!
//! This is a boundary module (house style: serialization only at boundaries): the serde types
//! here are separate from the core's `JobSpec`, and every error is one line that names the
//! field or the TOML position. See `docs/jobs.md` for the format.

use serde::Deserialize;
use sovra_fabric::{Jurisdiction, Level};

use crate::core::job::{
    Affinity, ArraySpec, DepKind, DepTerm, Dependency, GangSpec, GpuRequest, InferenceSpec,
    JobControl, JobSpec, LatencySlo, RunSpec, TopologyRule, Workload, ARRAY_INDEX_MAX,
    ARRAY_TASKS_MAX,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: Option<String>,
    tenant: String,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    jurisdictions: Vec<String>,
    #[serde(default)]
    gpu_models: Vec<String>,
    cpus: Option<f64>,
    cpu_milli: Option<u64>,
    memory_gb: Option<f64>,
    memory_mib: Option<u64>,
    time_limit: Option<TimeLimit>,
    command: Option<CommandLine>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    workdir: Option<String>,
    batch: Option<GpuSection>,
    gang: Option<GangSection>,
    inference: Option<InferenceSection>,
    control: Option<ControlSection>,
}

/// `[control]`: Slurm-style job control.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ControlSection {
    user: Option<String>,
    queue: Option<String>,
    #[serde(default)]
    hold: bool,
    /// Slurm syntax: `afterok:12:13,afterany:14_2`, `?` for any-of, `singleton`.
    dependency: Option<String>,
    /// Not before this time: milliseconds since the Unix epoch.
    begin_ms: Option<u64>,
    /// Slurm syntax: `0-15`, `1,3,5`, `0-15:4`, with `%N` to run at most N at once.
    array: Option<String>,
}

/// `command = ["prog", "arg"]`, or a string run by `/bin/sh -c`.
#[derive(Deserialize)]
#[serde(untagged)]
enum CommandLine {
    Argv(Vec<String>),
    Shell(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeLimit {
    Minutes(u64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GpuSection {
    gpus: Option<u32>,
    gpu_milli: Option<u32>,
    mig: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GangSection {
    members: u32,
    gpus_per_member: u32,
    topology: Option<String>,
    affinity: Option<String>,
    max_rtt_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferenceSection {
    replicas: u32,
    gpus: Option<u32>,
    gpu_milli: Option<u32>,
    mig: Option<String>,
    spread: Option<String>,
    slo: Option<SloSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SloSection {
    ingress_site: String,
    max_rtt_ms: f64,
}

/// Parses a job file. Errors are one line, lower case.
pub fn parse_job(text: &str) -> Result<JobSpec, String> {
    let file: JobFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let cpu_milli = match (file.cpus, file.cpu_milli) {
        (Some(_), Some(_)) => return Err("give cpus or cpu_milli, not both".into()),
        (Some(c), None) => positive_scaled(c, 1000.0, "cpus")?,
        (None, Some(m)) => m,
        (None, None) => 1000,
    };
    let memory_mib = match (file.memory_gb, file.memory_mib) {
        (Some(_), Some(_)) => return Err("give memory_gb or memory_mib, not both".into()),
        (Some(g), None) => positive_scaled(g, 1024.0, "memory_gb")?,
        (None, Some(m)) => m,
        (None, None) => 1024,
    };
    let mut jurisdictions = Vec::with_capacity(file.jurisdictions.len());
    for code in &file.jurisdictions {
        jurisdictions.push(Jurisdiction::parse(code)?);
    }
    let time_limit_ms = match file.time_limit {
        None => None,
        Some(TimeLimit::Minutes(m)) => Some(m.saturating_mul(60_000)),
        Some(TimeLimit::Text(t)) => parse_slurm_time(&t)?,
    };
    let sections = [
        file.batch.is_some(),
        file.gang.is_some(),
        file.inference.is_some(),
    ];
    let workload = match sections.iter().filter(|&&x| x).count() {
        0 => Workload::Batch {
            gpus: GpuRequest::None,
        },
        1 => {
            if let Some(b) = file.batch {
                Workload::Batch {
                    gpus: gpu_request(b.gpus, b.gpu_milli, b.mig, "batch")?,
                }
            } else if let Some(g) = file.gang {
                Workload::Gang(gang(g)?)
            } else {
                Workload::Inference(inference(file.inference.expect("counted"))?)
            }
        }
        _ => return Err("a job has one of [batch], [gang] or [inference], not several".into()),
    };
    let spec = JobSpec {
        name: file.name.unwrap_or_else(|| "job".into()),
        tenant: file.tenant,
        priority: file.priority,
        jurisdictions,
        gpu_models: file.gpu_models,
        cpu_milli,
        memory_mib,
        time_limit_ms,
        workload,
        run: RunSpec {
            argv: match file.command {
                None => Vec::new(),
                Some(CommandLine::Argv(argv)) => {
                    if argv.is_empty() {
                        return Err("command is an empty list".into());
                    }
                    argv
                }
                Some(CommandLine::Shell(line)) => {
                    vec!["/bin/sh".into(), "-c".into(), line]
                }
            },
            // Sorted by name (a TOML table has no order worth keeping).
            env: file.env.into_iter().collect(),
            workdir: file.workdir.unwrap_or_default(),
        },
        control: control(file.control.unwrap_or_default())?,
    };
    spec.validate()?;
    Ok(spec)
}

fn control(c: ControlSection) -> Result<JobControl, String> {
    Ok(JobControl {
        user: c.user.unwrap_or_default(),
        queue: c.queue.unwrap_or_default(),
        hold: c.hold,
        dependency: c.dependency.as_deref().map(parse_dependency).transpose()?,
        begin_ms: c.begin_ms,
        array: c.array.as_deref().map(parse_array).transpose()?,
    })
}

/// Parses Slurm's dependency syntax (`sbatch -d`): terms `type:job[_task][:job...]` and
/// `singleton`, separated by `,` (all must hold) or `?` (any one suffices), not both.
pub fn parse_dependency(text: &str) -> Result<Dependency, String> {
    let bad = |why: &str| format!("control.dependency {text:?}: {why}");
    let (any, parts): (bool, Vec<&str>) = match (text.contains(','), text.contains('?')) {
        (true, true) => return Err(bad("use ',' or '?' between terms, not both")),
        (_, true) => (true, text.split('?').collect()),
        _ => (false, text.split(',').collect()),
    };
    let mut terms = Vec::new();
    for part in parts {
        if part == "singleton" {
            terms.push(DepTerm {
                kind: DepKind::Singleton,
                job: 0,
                task: None,
            });
            continue;
        }
        let mut fields = part.split(':');
        let kind = match fields.next().unwrap_or("") {
            "after" => DepKind::After,
            "afterany" => DepKind::AfterAny,
            "afterok" => DepKind::AfterOk,
            "afternotok" => DepKind::AfterNotOk,
            "" => return Err(bad("empty term")),
            other => {
                return Err(bad(&format!(
                    "unknown type {other:?} (after, afterany, afterok, afternotok, singleton)"
                )))
            }
        };
        let mut jobs = 0;
        for job in fields {
            // `after:12+10` (a delay in minutes) is Slurm's too; not supported.
            if job.contains('+') {
                return Err(bad("delays (+minutes) are not supported"));
            }
            let (id, task) = match job.split_once('_') {
                Some((id, task)) => (id, Some(task)),
                None => (job, None),
            };
            let id: u64 = id
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(&format!("{job:?} is not a job id")))?;
            let task = match task {
                None => None,
                Some(t) => Some(
                    t.parse::<u32>()
                        .map_err(|_| bad(&format!("{job:?} is not a job array task")))?,
                ),
            };
            terms.push(DepTerm {
                kind,
                job: id,
                task,
            });
            jobs += 1;
        }
        if jobs == 0 {
            return Err(bad(&format!("{part:?} names no job")));
        }
    }
    Ok(Dependency { any, terms })
}

/// Parses Slurm's array syntax (`sbatch --array`): comma-separated indices and ranges
/// `a-b[:step]`, then `%N` for at most N tasks at once.
pub fn parse_array(text: &str) -> Result<ArraySpec, String> {
    let bad = |why: &str| format!("control.array {text:?}: {why}");
    let (list, throttle) = match text.split_once('%') {
        None => (text, 0),
        Some((list, n)) => (
            list,
            n.parse::<u32>()
                .map_err(|_| bad("the throttle after % is not a number"))?,
        ),
    };
    let mut indices = std::collections::BTreeSet::new();
    for part in list.split(',') {
        let (range, step) = match part.split_once(':') {
            None => (part, 1),
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| bad("a step must be a positive number"))?,
            ),
        };
        let num = |t: &str| {
            t.parse::<u32>()
                .ok()
                .filter(|&n| n <= ARRAY_INDEX_MAX)
                .ok_or_else(|| bad(&format!("indices are numbers 0..={ARRAY_INDEX_MAX}")))
        };
        let (lo, hi) = match range.split_once('-') {
            None => (num(range)?, num(range)?),
            Some((a, b)) => (num(a)?, num(b)?),
        };
        if lo > hi {
            return Err(bad(&format!("range {range:?} runs backwards")));
        }
        indices.extend((lo..=hi).step_by(step as usize));
        if indices.len() > ARRAY_TASKS_MAX {
            return Err(bad(&format!("at most {ARRAY_TASKS_MAX} tasks")));
        }
    }
    Ok(ArraySpec {
        indices: indices.into_iter().collect(),
        throttle,
    })
}

fn gang(g: GangSection) -> Result<GangSpec, String> {
    let level = match g.topology.as_deref() {
        None => Some(Level::Leaf),
        Some("any") => None,
        Some(name) => Some(Level::parse(name).ok_or_else(|| {
            format!("gang.topology {name:?}: expected node, nvlink, leaf, spine, site or any")
        })?),
    };
    let affinity = match g.affinity.as_deref() {
        None | Some("preferred") => Affinity::Preferred,
        Some("required") => Affinity::Required,
        Some(other) => {
            return Err(format!(
                "gang.affinity {other:?}: expected required or preferred"
            ))
        }
    };
    let max_rtt_ns = g
        .max_rtt_ms
        .map(|ms| ms_to_ns(ms, "gang.max_rtt_ms"))
        .transpose()?;
    if g.gpus_per_member == 0 {
        return Err("gang.gpus_per_member must be at least 1".into());
    }
    Ok(GangSpec {
        members: g.members,
        gpus_per_member: g.gpus_per_member,
        topology: TopologyRule { level, affinity },
        max_rtt_ns,
    })
}

fn inference(s: InferenceSection) -> Result<InferenceSpec, String> {
    let spread = match s.spread.as_deref() {
        None => Level::Leaf,
        Some(name) => Level::parse(name).ok_or_else(|| {
            format!("inference.spread {name:?}: expected node, nvlink, leaf, spine or site")
        })?,
    };
    let slo = match s.slo {
        None => None,
        Some(slo) => Some(LatencySlo {
            ingress_site: slo.ingress_site,
            max_rtt_ns: ms_to_ns(slo.max_rtt_ms, "inference.slo.max_rtt_ms")?,
        }),
    };
    Ok(InferenceSpec {
        replicas: s.replicas,
        gpus: gpu_request(s.gpus, s.gpu_milli, s.mig, "inference")?,
        slo,
        spread,
    })
}

fn gpu_request(
    gpus: Option<u32>,
    milli: Option<u32>,
    mig: Option<String>,
    section: &str,
) -> Result<GpuRequest, String> {
    match (gpus, milli, mig) {
        (None, None, None) => Ok(GpuRequest::None),
        (Some(0), None, None) => Ok(GpuRequest::None),
        (Some(n), None, None) => Ok(GpuRequest::Whole(n)),
        (None, Some(m), None) => Ok(GpuRequest::Milli(m)),
        (None, None, Some(p)) => Ok(GpuRequest::Mig(p)),
        _ => Err(format!("{section}: give one of gpus, gpu_milli or mig")),
    }
}

fn positive_scaled(value: f64, scale: f64, field: &str) -> Result<u64, String> {
    if !value.is_finite() || value < 0.0 || value * scale > u64::MAX as f64 / 2.0 {
        return Err(format!(
            "{field} must be a non-negative number, got {value}"
        ));
    }
    Ok((value * scale).round() as u64)
}

fn ms_to_ns(ms: f64, field: &str) -> Result<u64, String> {
    if !ms.is_finite() || ms <= 0.0 || ms > 1e9 {
        return Err(format!(
            "{field} must be a positive number of milliseconds, got {ms}"
        ));
    }
    Ok((ms * 1e6).round() as u64)
}

/// Parses a Slurm time limit: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or
/// `UNLIMITED`/`INFINITE` (no limit). Returns milliseconds.
pub fn parse_slurm_time(text: &str) -> Result<Option<u64>, String> {
    let bad = || format!("invalid time limit {text:?}: use minutes, M:S, H:M:S or D-H[:M[:S]]");
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return Ok(None);
    }
    let num = |s: &str| -> Result<u64, String> {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u64>().map_err(|_| bad())
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(num(d)?), rest),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => num(m)? * 60,
        (None, [m, s]) => num(m)? * 60 + num(s)?,
        (None, [h, m, s]) => num(h)? * 3600 + num(m)? * 60 + num(s)?,
        (Some(d), [h]) => d * 86400 + num(h)? * 3600,
        (Some(d), [h, m]) => d * 86400 + num(h)? * 3600 + num(m)? * 60,
        (Some(d), [h, m, s]) => d * 86400 + num(h)? * 3600 + num(m)? * 60 + num(s)?,
        _ => return Err(bad()),
    };
    if seconds == 0 {
        return Err(format!("invalid time limit {text:?}: must be positive"));
    }
    Ok(Some(seconds * 1000))
}

/// One line for a TOML error: `line L, column C: message`.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e
        .message()
        .lines()
        .next()
        .unwrap_or("invalid toml")
        .trim_end_matches('.');
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}: {message}")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(text: &str, expect: Expect) {
        let actual = match parse_job(text) {
            Ok(spec) => format!("{spec:?}"),
            Err(e) => format!("error: {e}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn gang_job() {
        check(
            r#"
name = "pretrain"
tenant = "acme"
jurisdictions = ["au"]
cpus = 16
memory_gb = 128
time_limit = "1-00:00:00"
[gang]
members = 8
gpus_per_member = 8
topology = "leaf"
affinity = "required"
"#,
            expect![[
                r#"JobSpec { name: "pretrain", tenant: "acme", priority: 0, jurisdictions: [AU], gpu_models: [], cpu_milli: 16000, memory_mib: 131072, time_limit_ms: Some(86400000), workload: Gang(GangSpec { members: 8, gpus_per_member: 8, topology: TopologyRule { level: Some(Leaf), affinity: Required }, max_rtt_ns: None }), run: RunSpec { argv: [], env: [], workdir: "" }, control: JobControl { user: "", queue: "", hold: false, dependency: None, begin_ms: None, array: None } }"#
            ]],
        );
    }

    #[test]
    fn command_env_and_workdir() {
        let base = "tenant = \"t\"\njurisdictions = [\"AU\"]\n";
        let spec = parse_job(&format!(
            "{base}command = [\"python3\", \"train.py\", \"--lr=3e-4\"]\nworkdir = \"/data\"\n\
             [env]\nZ = \"last\"\nA = \"first\"\n"
        ))
        .unwrap();
        assert_eq!(spec.run.argv, ["python3", "train.py", "--lr=3e-4"]);
        assert_eq!(
            spec.run.env,
            [("A".into(), "first".into()), ("Z".into(), "last".into())]
        );
        assert_eq!(spec.run.workdir, "/data");
        let spec = parse_job(&format!("{base}command = \"echo hi && sleep 1\"\n")).unwrap();
        assert_eq!(spec.run.argv, ["/bin/sh", "-c", "echo hi && sleep 1"]);
        let spec = parse_job(base).unwrap();
        assert_eq!(spec.run, RunSpec::default());
        for (bad, why) in [
            ("command = []", "command is an empty list"),
            ("command = [\"\"]", "command names an empty program"),
            ("command = \"a\\u0000b\"", "may not contain NUL bytes"),
            (
                "[env]\n\"A=B\" = \"x\"",
                "invalid environment variable name",
            ),
        ] {
            let err = parse_job(&format!("{base}{bad}\n")).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_inputs() {
        check(
            "tenant = \"a\"\n",
            expect![[r#"error: job allows no jurisdiction: set at least one (e.g. "AU")"#]],
        );
        check(
            "tenant = \"a\"\njurisdictions = []\n",
            expect![[r#"error: job allows no jurisdiction: set at least one (e.g. "AU")"#]],
        );
        check(
            "tenant = \"a\"\njurisdictions = [\"AU\"]\n[batch]\ngpu_milli = 1500\n",
            expect![[
                r#"error: gpu share must be 1..=999 milli-gpu, got 1500 (use whole gpus for 1000)"#
            ]],
        );
        check(
            "tenant = \"a\"\njurisdictions = [\"AU\"]\ntime_limit = \"1:2:3:4\"\n",
            expect![[
                r#"error: invalid time limit "1:2:3:4": use minutes, M:S, H:M:S or D-H[:M[:S]]"#
            ]],
        );
        check(
            "tenant = \"a\"\njurisdictions = [\"AU\"]\ncolour = 1\n",
            expect![[
                r#"error: line 3, column 1: unknown field `colour`, expected one of `name`, `tenant`, `priority`, `jurisdictions`, `gpu_models`, `cpus`, `cpu_milli`, `memory_gb`, `memory_mib`, `time_limit`, `command`, `env`, `workdir`, `batch`, `gang`, `inference`, `control`"#
            ]],
        );
        check(
            "tenant = \"a\"\njurisdictions = [\"AU\"]\n[gang]\nmembers = 2\n\
             gpus_per_member = 1\ntopology = \"galaxy\"\n",
            expect![[
                r#"error: gang.topology "galaxy": expected node, nvlink, leaf, spine, site or any"#
            ]],
        );
        check(
            "tenant = ",
            expect![[
                r#"error: line 1, column 10: string values must be quoted, expected literal string"#
            ]],
        );
    }

    #[test]
    fn slurm_times() {
        let cases = [
            ("5", Some(300_000)),
            ("5:30", Some(330_000)),
            ("1:00:00", Some(3_600_000)),
            ("2-12", Some(216_000_000)),
            ("1-0:30", Some(88_200_000)),
            ("1-0:0:1", Some(86_401_000)),
            ("UNLIMITED", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_slurm_time(text), Ok(want), "{text}");
        }
        for bad in ["", "-1", "a", "1:2:3:4", "1-2:3:4:5", "0", "99999999999"] {
            assert!(parse_slurm_time(bad).is_err(), "{bad}");
        }
    }
}
