//! The Standard Workload Format (SWF) of the Parallel Workloads Archive.
//!
//! A file is header comment lines starting with `;` (`; MaxProcs: 128`, ignored here) and
//! one job per line: 18 whitespace-separated numbers, `-1` where a value is unknown:
//!
//! | # | field | used as |
//! |---|---|---|
//! | 1 | job number | the job's name, `swf-<n>` |
//! | 2 | submit time (s) | submit time |
//! | 3 | wait time (s) | – (the simulation makes its own) |
//! | 4 | run time (s) | run time once started |
//! | 5 | allocated processors | processors, when field 8 is unknown |
//! | 6, 7 | average CPU time, used memory | – |
//! | 8 | requested processors | processors |
//! | 9, 10 | requested time, requested memory | – |
//! | 11 | status | – (cancelled jobs with a run time ran, and are kept) |
//! | 12, 13 | user id, group id | tenant (`user-<id>` by default) |
//! | 14 | executable | – |
//! | 15, 16 | queue, partition | tenant, when [`SwfTenant`] says so |
//! | 17, 18 | preceding job, think time | – |
//!
//! **Processors become GPUs.** The archive's logs come from CPU machines, so a mapping is
//! needed; it is [`SwfMapping`]: a job asking for `p` processors asks for
//! `g = ⌈p / procs_per_gpu⌉` GPUs (`procs_per_gpu` is 1 by default: one processor, one GPU).
//! Up to `gpus_per_node` GPUs (8 by default) make one task on one node; more make a gang of
//! `⌈g / gpus_per_node⌉` members of `gpus_per_node` GPUs each, all or nothing (rounded up to
//! whole nodes, as GPU clusters allocate large jobs). CPU and memory are not modelled: the
//! jobs ask for none, so only GPUs bind.
//!
//! Rows with 18 numbers but no run time (`-1`) or no processor count are not runnable (the
//! archive marks jobs cancelled before they started this way); they are counted and left out.
//! Anything else that is not 18 numbers is an error: `file:line: field: why`.

use sovra_scheduler::core::job::GpuRequest;

use crate::loader::LoadError;
use crate::trace::{seconds_to_ms, TraceJob};

/// Fields per SWF job line.
pub const SWF_FIELDS: usize = 18;

/// Where an SWF job's tenant comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SwfTenant {
    /// Field 12: `user-<id>`.
    #[default]
    User,
    /// Field 13: `group-<id>`.
    Group,
    /// Field 15: `queue-<id>`.
    Queue,
    /// Field 16: `partition-<id>`.
    Partition,
}

impl SwfTenant {
    /// Every choice.
    pub const ALL: [SwfTenant; 4] = [
        SwfTenant::User,
        SwfTenant::Group,
        SwfTenant::Queue,
        SwfTenant::Partition,
    ];

    /// Its name, also the tenant prefix.
    pub fn name(self) -> &'static str {
        match self {
            SwfTenant::User => "user",
            SwfTenant::Group => "group",
            SwfTenant::Queue => "queue",
            SwfTenant::Partition => "partition",
        }
    }

    /// Parses a [`SwfTenant::name`].
    pub fn parse(name: &str) -> Option<SwfTenant> {
        SwfTenant::ALL.into_iter().find(|t| t.name() == name)
    }

    fn field(self) -> usize {
        match self {
            SwfTenant::User => 12,
            SwfTenant::Group => 13,
            SwfTenant::Queue => 15,
            SwfTenant::Partition => 16,
        }
    }
}

/// How SWF processors map to GPUs. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SwfMapping {
    /// Processors per GPU (at least 1).
    pub procs_per_gpu: u32,
    /// GPUs one task (or gang member) takes at most (1..=32).
    pub gpus_per_node: u32,
    /// Where the tenant comes from.
    pub tenant: SwfTenant,
}

impl Default for SwfMapping {
    fn default() -> SwfMapping {
        SwfMapping {
            procs_per_gpu: 1,
            gpus_per_node: 8,
            tenant: SwfTenant::User,
        }
    }
}

/// The fields' names, for errors (1-based field `i` is `NAMES[i - 1]`).
const NAMES: [&str; SWF_FIELDS] = [
    "job_number",
    "submit_time",
    "wait_time",
    "run_time",
    "allocated_processors",
    "average_cpu_time",
    "used_memory",
    "requested_processors",
    "requested_time",
    "requested_memory",
    "status",
    "user_id",
    "group_id",
    "executable",
    "queue",
    "partition",
    "preceding_job",
    "think_time",
];

/// Parses an SWF log. Returns the runnable jobs and how many rows were not runnable.
pub fn parse_swf(
    file: &str,
    text: &str,
    mapping: &SwfMapping,
) -> Result<(Vec<TraceJob>, usize), LoadError> {
    assert!(mapping.procs_per_gpu >= 1, "procs_per_gpu is at least 1");
    assert!(
        (1..=sovra_fabric::topology::GPUS_PER_NODE_MAX as u32).contains(&mapping.gpus_per_node),
        "gpus_per_node is 1..=32"
    );
    let error = |line: usize, message: String| LoadError {
        file: file.to_string(),
        line,
        message,
    };
    let mut jobs = Vec::new();
    let mut skipped = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != SWF_FIELDS {
            return Err(error(
                n,
                format!(
                    "fields: {} fields, an swf job line has {SWF_FIELDS}",
                    fields.len()
                ),
            ));
        }
        let mut values = [0f64; SWF_FIELDS];
        for (k, f) in fields.iter().enumerate() {
            values[k] = match f.parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => return Err(error(n, format!("{}: {f:?} is not a number", NAMES[k]))),
            };
        }
        let field = |k: usize| values[k - 1];
        let integer = |k: usize| -> Result<i64, LoadError> {
            let v = field(k);
            if v.fract() != 0.0 || v.abs() > 1e15 {
                return Err(error(n, format!("{}: {v} is not an integer", NAMES[k - 1])));
            }
            Ok(v as i64)
        };
        let id = integer(1)?;
        let submit = field(2);
        let submit_ms = seconds_to_ms(submit)
            .ok_or_else(|| error(n, format!("submit_time: {submit} is not a time in seconds")))?;
        let procs = match integer(8)? {
            p if p > 0 => p,
            _ => integer(5)?,
        };
        let run = field(4);
        if run < 0.0 || procs <= 0 {
            skipped += 1;
            continue;
        }
        let duration_ms = seconds_to_ms(run)
            .ok_or_else(|| error(n, format!("run_time: {run} is not a time in seconds")))?;
        let gpus = (procs as u64).div_ceil(mapping.procs_per_gpu as u64);
        let per_node = mapping.gpus_per_node as u64;
        let (members, per_member) = if gpus <= per_node {
            (1, gpus)
        } else {
            (gpus.div_ceil(per_node), per_node)
        };
        if members > sovra_scheduler::core::job::MEMBERS_MAX as u64 {
            return Err(error(
                n,
                format!(
                    "requested_processors: {procs} processors make {members} gang members, \
                     at most {}",
                    sovra_scheduler::core::job::MEMBERS_MAX
                ),
            ));
        }
        let owner = integer(mapping.tenant.field())?;
        let tenant = if owner < 0 {
            format!("{}-unknown", mapping.tenant.name())
        } else {
            format!("{}-{owner}", mapping.tenant.name())
        };
        jobs.push(TraceJob {
            name: format!("swf-{id}"),
            tenant,
            submit_ms,
            duration_ms,
            priority: 0,
            cpu_milli: 0,
            memory_mib: 0,
            gpus: GpuRequest::Whole(per_member as u32),
            members: members as u32,
            gpu_models: Vec::new(),
            jurisdictions: None,
            line: n,
        });
    }
    Ok((jobs, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "; Version: 2.2\n\
        ; MaxProcs: 64\n\
        \n\
        1 0 10 3600 4 -1 -1 4 7200 -1 1 3 1 -1 1 -1 -1 -1\n\
        2   60.5  0  120.25 -1 -1 -1 12 -1 -1 1 7 2 -1 2 -1 -1 -1\n\
        3 100 -1 -1 8 -1 -1 8 -1 -1 5 3 1 -1 1 -1 -1 -1\n\
        4 200 0 50 2 -1 -1 -1 -1 -1 0 -1 -1 -1 1 -1 -1 -1\n";

    #[test]
    fn jobs_and_the_gpu_mapping() {
        let (jobs, skipped) = parse_swf("log.swf", LOG, &SwfMapping::default()).unwrap();
        assert_eq!(skipped, 1, "job 3 has no run time");
        let got: Vec<_> = jobs
            .iter()
            .map(|j| {
                (
                    j.name.as_str(),
                    j.tenant.as_str(),
                    j.submit_ms,
                    j.duration_ms,
                    j.members,
                    j.gpus.clone(),
                    j.line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("swf-1", "user-3", 0, 3_600_000, 1, GpuRequest::Whole(4), 4),
                (
                    "swf-2",
                    "user-7",
                    60_500,
                    120_250,
                    2,
                    GpuRequest::Whole(8),
                    5
                ),
                (
                    "swf-4",
                    "user-unknown",
                    200_000,
                    50_000,
                    1,
                    GpuRequest::Whole(2),
                    7
                ),
            ]
        );
        let mapping = SwfMapping {
            procs_per_gpu: 4,
            gpus_per_node: 2,
            tenant: SwfTenant::Queue,
        };
        let (jobs, _) = parse_swf("log.swf", LOG, &mapping).unwrap();
        let got: Vec<_> = jobs
            .iter()
            .map(|j| (j.tenant.as_str(), j.members, j.gpus.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("queue-1", 1, GpuRequest::Whole(1)),
                ("queue-2", 2, GpuRequest::Whole(2)),
                ("queue-1", 1, GpuRequest::Whole(1)),
            ]
        );
    }

    #[test]
    fn malformed_rows_name_file_line_and_field() {
        let err = |row: &str| {
            parse_swf("log.swf", &format!("; c\n{row}\n"), &SwfMapping::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("1 0 10 3600 4"),
            "log.swf:2: fields: 5 fields, an swf job line has 18"
        );
        assert_eq!(
            err("1 0 10 1h 4 -1 -1 4 7200 -1 1 3 1 -1 1 -1 -1 -1"),
            "log.swf:2: run_time: \"1h\" is not a number"
        );
        assert_eq!(
            err("1 -5 10 60 4 -1 -1 4 7200 -1 1 3 1 -1 1 -1 -1 -1"),
            "log.swf:2: submit_time: -5 is not a time in seconds"
        );
        assert_eq!(
            err("1 0 10 60 4 -1 -1 4.5 7200 -1 1 3 1 -1 1 -1 -1 -1"),
            "log.swf:2: requested_processors: 4.5 is not an integer"
        );
        assert_eq!(
            err("1 0 10 60 4 -1 -1 4 7200 -1 1 3 nan -1 1 -1 -1 -1"),
            "log.swf:2: group_id: \"nan\" is not a number"
        );
    }
}
