//! Job traces for the time-driven simulations: one job type for every input format.
//!
//! A [`TraceJob`] is what a trace says about a job: who submits it, when, for how long it
//! runs, what one member needs and how many members it has. Three formats are read, each
//! from text with errors that name the file and the line (`file:line: field: why`):
//! - OpenB pod lists ([`openb_jobs`]), replayed by their own clock: a pod arrives at its
//!   `creation_time` and runs for as long as it held resources in the original cluster
//!   (`deletion_time − scheduled_time`, or `deletion_time − creation_time` for a pod the
//!   original cluster never scheduled). This is *not* the FGD paper's arrivals-only protocol
//!   (`sovra-sim openb`); it is a different experiment and is labelled so;
//! - the Standard Workload Format of the Parallel Workloads Archive ([`crate::swf`]);
//! - sovra's own JSONL job format ([`crate::jsonl`]).
//!
//! [`TraceJob::spec`] turns a job into the scheduler core's `JobSpec` once the cluster and
//! the scenario have said which jurisdictions it may run in.

use sovra_fabric::Jurisdiction;
use sovra_scheduler::core::job::{GangSpec, GpuRequest, JobSpec, TopologyRule, Workload};

use crate::loader::{LoadError, PodRow};
use crate::openb::gpu_request;
use crate::swf::SwfMapping;

/// A job as a trace gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceJob {
    /// Name (the trace's id).
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Submit time.
    pub submit_ms: u64,
    /// Run time once started.
    pub duration_ms: u64,
    /// Priority (higher runs first).
    pub priority: u32,
    /// CPU per member.
    pub cpu_milli: u64,
    /// Memory per member.
    pub memory_mib: u64,
    /// GPUs per member: none, whole GPUs, or a share of one.
    pub gpus: GpuRequest,
    /// Members: 1 is a single task; more is a gang of whole-GPU members, all or nothing.
    pub members: u32,
    /// Allowed GPU models; empty allows any.
    pub gpu_models: Vec<String>,
    /// Allowed jurisdictions the trace names itself; `None` leaves it to the tenant.
    pub jurisdictions: Option<Vec<Jurisdiction>>,
    /// The 1-based line in the trace file.
    pub line: usize,
}

impl TraceJob {
    /// The job the state machine is given, allowed in `jurisdictions`.
    pub fn spec(&self, jurisdictions: Vec<Jurisdiction>) -> JobSpec {
        let workload = if self.members > 1 {
            let gpus_per_member = match self.gpus {
                GpuRequest::Whole(k) => k,
                _ => panic!("gang members take whole gpus (checked by the parsers)"),
            };
            Workload::Gang(GangSpec {
                members: self.members,
                gpus_per_member,
                topology: TopologyRule::default(),
                max_rtt_ns: None,
            })
        } else {
            Workload::Batch {
                gpus: self.gpus.clone(),
            }
        };
        JobSpec {
            run: Default::default(),
            name: self.name.clone(),
            tenant: self.tenant.clone(),
            priority: self.priority,
            jurisdictions,
            gpu_models: self.gpu_models.clone(),
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
            time_limit_ms: None,
            workload,
            control: Default::default(),
        }
    }
}

/// A trace format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// An OpenB pod list (CSV), replayed by its creation and deletion times.
    Openb,
    /// The Standard Workload Format.
    Swf,
    /// sovra's JSONL job format.
    Jsonl,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Openb, Format::Swf, Format::Jsonl];

    /// The name `--format` and scenario files take.
    pub fn name(self) -> &'static str {
        match self {
            Format::Openb => "openb",
            Format::Swf => "swf",
            Format::Jsonl => "jsonl",
        }
    }

    /// Parses a [`Format::name`].
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format a file name's extension says: `.csv` OpenB, `.swf` SWF, `.jsonl` or
    /// `.ndjson` JSONL.
    pub fn of_file(name: &str) -> Option<Format> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Openb),
            "swf" => Some(Format::Swf),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// A parsed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Its format.
    pub format: Format,
    /// The jobs, in file order.
    pub jobs: Vec<TraceJob>,
    /// Rows well-formed but not runnable, left out (SWF jobs without a run time or a
    /// processor count, as the archive marks cancelled jobs).
    pub skipped: usize,
}

impl Trace {
    /// Multiplies every submit time by `factor` (durations stay): below 1 it compresses the
    /// arrivals and raises the load, above 1 it spreads them.
    pub fn scale_arrivals(&mut self, factor: f64) {
        assert!(factor.is_finite() && factor > 0.0, "a positive scale");
        for j in &mut self.jobs {
            j.submit_ms = (j.submit_ms as f64 * factor).round() as u64;
        }
    }
}

/// Parses a trace of `format` from `text`; `file` names it in errors.
pub fn parse_trace(
    format: Format,
    file: &str,
    text: &str,
    swf: &SwfMapping,
) -> Result<Trace, LoadError> {
    let (jobs, skipped) = match format {
        Format::Openb => (
            openb_jobs(file, &crate::loader::parse_pods(file, text)?)?,
            0,
        ),
        Format::Swf => crate::swf::parse_swf(file, text, swf)?,
        Format::Jsonl => (crate::jsonl::parse_jsonl(file, text)?, 0),
    };
    if jobs.is_empty() {
        return Err(LoadError {
            file: file.to_string(),
            line: 1,
            message: "trace: no runnable job".into(),
        });
    }
    Ok(Trace {
        format,
        jobs,
        skipped,
    })
}

/// The jobs of an OpenB pod list for the time-driven replay. Every pod needs its
/// `creation_time` and `deletion_time`; the tenant is its QoS class (`openb` when the file
/// has none).
pub fn openb_jobs(file: &str, pods: &[PodRow]) -> Result<Vec<TraceJob>, LoadError> {
    let error = |line: usize, message: String| LoadError {
        file: file.to_string(),
        line,
        message,
    };
    pods.iter()
        .map(|p| {
            let missing = |column: &str| {
                error(
                    p.line,
                    format!(
                        "{column}: missing (the time-driven replay needs creation and \
                         deletion times)"
                    ),
                )
            };
            let created = p.creation_s.ok_or_else(|| missing("creation_time"))?;
            let deleted = p.deletion_s.ok_or_else(|| missing("deletion_time"))?;
            let started = p.scheduled_s.unwrap_or(created);
            if started < created {
                return Err(error(
                    p.line,
                    format!("scheduled_time: {started} is before creation_time {created}"),
                ));
            }
            if deleted < started {
                let column = if p.scheduled_s.is_some() {
                    "scheduled_time"
                } else {
                    "creation_time"
                };
                return Err(error(
                    p.line,
                    format!("deletion_time: {deleted} is before {column} {started}"),
                ));
            }
            Ok(TraceJob {
                name: p.name.clone(),
                tenant: if p.qos.is_empty() {
                    "openb".into()
                } else {
                    p.qos.clone()
                },
                submit_ms: seconds_ms(created),
                duration_ms: seconds_ms(deleted - started),
                priority: 0,
                cpu_milli: p.cpu_milli,
                memory_mib: p.memory_mib,
                gpus: gpu_request(p),
                members: 1,
                gpu_models: p.models(),
                jurisdictions: None,
                line: p.line,
            })
        })
        .collect()
}

fn seconds_ms(s: u64) -> u64 {
    s.saturating_mul(1_000)
}

/// Seconds as a JSON or SWF number (fractions allowed) to milliseconds: `None` when negative,
/// not finite, or beyond 2^53 ms (about 285,000 years).
pub fn seconds_to_ms(s: f64) -> Option<u64> {
    const MS_MAX: f64 = 9_007_199_254_740_992.0;
    let ms = (s * 1_000.0).round();
    (s.is_finite() && s >= 0.0 && ms <= MS_MAX).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::parse_pods;

    const HEAD: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,\
                        creation_time,deletion_time,scheduled_time\n";

    #[test]
    fn openb_pods_replay_by_their_clock() {
        let text = format!(
            "{HEAD}p0,4000,1024,1,460,,LS,Running,10,110,20\n\
             p1,8000,2048,2,1000,V100M16|V100M32,BE,Pending,30,50,\n\
             p2,1000,10,0,0,,,Succeeded,40,40,40\n"
        );
        let jobs = openb_jobs("pods.csv", &parse_pods("pods.csv", &text).unwrap()).unwrap();
        let got: Vec<_> = jobs
            .iter()
            .map(|j| {
                (
                    j.tenant.as_str(),
                    j.submit_ms,
                    j.duration_ms,
                    j.gpus.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("LS", 10_000, 90_000, GpuRequest::Milli(460)),
                ("BE", 30_000, 20_000, GpuRequest::Whole(2)),
                ("openb", 40_000, 0, GpuRequest::None),
            ]
        );
        assert_eq!(jobs[1].gpu_models, ["V100M16", "V100M32"]);
        assert_eq!(jobs[2].line, 4);
    }

    #[test]
    fn openb_rows_without_times_are_errors() {
        let err = |rows: &str| {
            let text = format!("{HEAD}{rows}");
            let pods = parse_pods("pods.csv", &text).unwrap();
            openb_jobs("pods.csv", &pods).unwrap_err().to_string()
        };
        assert_eq!(
            err("p0,1000,10,1,500,,LS,Running,,100,\n"),
            "pods.csv:2: creation_time: missing (the time-driven replay needs creation and \
             deletion times)"
        );
        assert_eq!(
            err("p0,1000,10,1,500,,LS,Running,5,100,1\n"),
            "pods.csv:2: scheduled_time: 1 is before creation_time 5"
        );
        assert_eq!(
            err("p0,1000,10,1,500,,LS,Running,5,7,9\n"),
            "pods.csv:2: deletion_time: 7 is before scheduled_time 9"
        );
        let no_times = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1,1,0,0\n";
        let pods = parse_pods("m.csv", no_times).unwrap();
        assert!(openb_jobs("m.csv", &pods)
            .unwrap_err()
            .to_string()
            .starts_with("m.csv:2: creation_time: missing"));
    }

    #[test]
    fn formats_by_name_and_extension() {
        assert_eq!(Format::of_file("a/b/jobs.JSONL"), Some(Format::Jsonl));
        assert_eq!(Format::of_file("x.swf"), Some(Format::Swf));
        assert_eq!(Format::of_file("pods.csv"), Some(Format::Openb));
        assert_eq!(Format::of_file("trace"), None);
        assert_eq!(Format::parse("swf"), Some(Format::Swf));
        assert_eq!(seconds_to_ms(1.5), Some(1_500));
        assert_eq!(seconds_to_ms(-1.0), None);
        assert_eq!(seconds_to_ms(f64::NAN), None);
        assert_eq!(seconds_to_ms(1e300), None);
    }
}
