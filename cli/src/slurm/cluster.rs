//! The shim's glue to sovrad: the cluster as the shim's [`View`] (jobs, nodes and the
//! partitions derived from sites and jurisdictions), and the job-control calls behind
//! `scancel` and `scontrol hold|release|requeue|update`.
//!
//! Partitions are sovra queues bound to jurisdictions: `all` (the default) holds every node,
//! and each jurisdiction has one named after its code in lower case (`au`, `jp`), holding
//! that jurisdiction's nodes. A job submitted to partitions may run only in their
//! jurisdictions; sovra's fail-closed jurisdiction check does the rest.

use std::collections::BTreeMap;

use sovra_fabric::slurm::hostlist;
use sovrad::wire::{ClientOp, ClientResult, JobAction, JobInfo, NodeInfo};

use super::model::{Job, JobState, Node, NodeState, Output, Partition, View};
use crate::remote::{Conn, Session};

/// The default partition, holding every node.
pub const DEFAULT_PARTITION: &str = "all";

/// The cluster name (`SLURM_CLUSTER_NAME`, `ClusterName`): `SOVRA_CLUSTER`, else `sovra`.
pub fn cluster_name() -> String {
    std::env::var("SOVRA_CLUSTER")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "sovra".into())
}

/// Now, in Unix seconds.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The current user's name (`USER`, else `LOGNAME`, else the uid).
pub fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }.to_string()
}

/// Opens a session, or the shim's one-line error.
pub fn session(command: &str) -> Result<Session, String> {
    Session::open(&Conn::from_env()).map_err(|f| format!("{command}: error: {:#}\n", f.error))
}

/// Reads the whole cluster into a [`View`].
pub fn fetch(session: &mut Session, command: &str, all_jobs: bool) -> Result<View, String> {
    let fail = |f: crate::Failure| format!("{command}: error: {:#}\n", f.error);
    let jobs = match session
        .call(ClientOp::JobList { all: all_jobs })
        .map_err(fail)?
    {
        ClientResult::JobList { jobs } => jobs,
        other => return Err(format!("{command}: error: unexpected answer {other:?}\n")),
    };
    let nodes = match session.call(ClientOp::NodeList).map_err(fail)? {
        ClientResult::NodeList { nodes } => nodes,
        other => return Err(format!("{command}: error: unexpected answer {other:?}\n")),
    };
    Ok(to_view(&jobs, &nodes, &cluster_name(), now_s()))
}

/// The partitions of a node list: `all`, then one per jurisdiction in first-seen order.
pub fn partitions(nodes: &[NodeInfo]) -> Vec<Partition> {
    let mut by_jurisdiction: BTreeMap<&str, (usize, Vec<String>, Vec<String>)> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let entry = by_jurisdiction
            .entry(n.jurisdiction.as_str())
            .or_insert_with(|| (i, Vec::new(), Vec::new()));
        entry.1.push(n.name.clone());
        if !entry.2.contains(&n.site) {
            entry.2.push(n.site.clone());
        }
    }
    let mut sites: Vec<String> = Vec::new();
    for n in nodes {
        if !sites.contains(&n.site) {
            sites.push(n.site.clone());
        }
    }
    let mut ordered: Vec<_> = by_jurisdiction.into_iter().collect();
    ordered.sort_by_key(|(_, (first, _, _))| *first);
    let mut out = vec![Partition {
        name: DEFAULT_PARTITION.into(),
        default: true,
        up: true,
        max_time_min: None,
        default_time_min: None,
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        jurisdictions: ordered.iter().map(|(j, _)| j.to_string()).collect(),
        sites,
    }];
    for (code, (_, names, sites)) in ordered {
        out.push(Partition {
            name: code.to_ascii_lowercase(),
            default: false,
            up: true,
            max_time_min: None,
            default_time_min: None,
            nodes: names,
            jurisdictions: vec![code.to_string()],
            sites,
        });
    }
    out
}

/// One job as Slurm shows it.
pub fn to_job(j: &JobInfo, partitions: &[Partition]) -> Job {
    let c = &j.control;
    // sovrad's codes are Slurm's compact names (`PD`, `CF`, `R`, `CD`, ..., `OOM`).
    let state = JobState::from_name(&j.state).unwrap_or(JobState::Failed);
    let mut nodes: Vec<String> = Vec::new();
    if !matches!(state, JobState::Pending) {
        for (node, _, _, _) in &j.members {
            if !nodes.contains(node) {
                nodes.push(node.clone());
            }
        }
    }
    let reason = match (&j.reason, state) {
        (Some(r), JobState::Pending) => r.split(':').next().unwrap_or("None").to_string(),
        (None, JobState::Pending) if c.held => "JobHeldUser".into(),
        _ => "None".into(),
    };
    let members = c.members.max(1);
    let num_nodes = if nodes.is_empty() {
        // Pending: a gang's members each take a node; otherwise one node.
        if j.request.starts_with("gang") {
            members
        } else {
            1
        }
    } else {
        nodes.len() as u32
    };
    let gpus = (c.gpu_milli * u64::from(members)).div_ceil(1000) as u32;
    let per_node_gpus = c.gpu_milli.div_ceil(1000);
    let partition = if c.queue.is_empty() {
        partitions
            .iter()
            .find(|p| p.default)
            .map_or(DEFAULT_PARTITION.to_string(), |p| p.name.clone())
    } else {
        c.queue.clone()
    };
    let user = if c.user.is_empty() {
        j.tenant.clone()
    } else {
        c.user.clone()
    };
    let (exit_code, exit_signal) = match (state, j.exit_code) {
        (_, Some(code)) if code > 128 && code < 160 => (0, code - 128),
        (_, Some(code)) => (code, 0),
        (JobState::Cancelled | JobState::Timeout, None) => (0, 15),
        (JobState::OutOfMemory, None) => (0, 9),
        _ => (0, 0),
    };
    let secs = |ms: u64| (ms / 1000) as i64;
    Job {
        job_id: j.id,
        array_job_id: c.array.map(|(a, _)| a),
        array_task_id: c.array.map(|(_, i)| i),
        name: j.name.clone(),
        uid: uid_of(&user),
        user,
        group: String::new(),
        gid: 0,
        account: j.tenant.clone(),
        partition,
        qos: "normal".into(),
        state,
        reason,
        priority: j.priority,
        nice: 0,
        submit_time: secs(j.submit_ms),
        eligible_time: Some(secs(j.submit_ms)),
        start_time: j.start_ms.map(secs),
        end_time: j.end_ms.map(secs),
        time_limit_min: j.time_limit_ms.map(|ms| ms.div_ceil(60_000)),
        batch_host: nodes.first().cloned(),
        nodes,
        req_nodes: Vec::new(),
        exc_nodes: Vec::new(),
        num_nodes,
        num_cpus: ((c.cpu_milli * u64::from(members)).div_ceil(1000) as u32).max(1),
        num_tasks: members,
        cpus_per_task: (c.cpu_milli.div_ceil(1000) as u32).max(1),
        mem_per_node_mb: c.memory_mib,
        gpus,
        tres_per_node: if per_node_gpus > 0 {
            format!("gres:gpu:{per_node_gpus}")
        } else {
            String::new()
        },
        features: String::new(),
        dependency: c.dependency.clone(),
        work_dir: c.workdir.clone(),
        command: if c.command.is_empty() {
            "(null)".into()
        } else {
            c.command.clone()
        },
        stdout: String::new(),
        stderr: String::new(),
        exit_code,
        exit_signal,
        restarts: j.restarts,
        requeue: true,
        comment: String::new(),
        jurisdictions: j.jurisdictions.clone(),
    }
}

fn uid_of(user: &str) -> u32 {
    let Ok(name) = std::ffi::CString::new(user) else {
        return 0;
    };
    // SAFETY: getpwnam reads the passwd database; the result is used at once and not kept.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        0
    } else {
        // SAFETY: non-null results of getpwnam point at a valid passwd entry.
        unsafe { (*pw).pw_uid }
    }
}

/// One node as Slurm shows it.
pub fn to_node(n: &NodeInfo, partitions: &[Partition]) -> Node {
    let gpus_alloc = n.gpus - n.gpus_whole_free.min(n.gpus);
    let cpus = n.cpu_milli.div_ceil(1000) as u32;
    let cpus_alloc = (n.cpu_milli - n.cpu_free_milli.min(n.cpu_milli)).div_ceil(1000) as u32;
    let busy = gpus_alloc > 0 || cpus_alloc > 0;
    let full = (n.gpus > 0 && gpus_alloc == n.gpus) || (cpus > 0 && cpus_alloc >= cpus);
    let state = match n.state.as_str() {
        "unknown" => NodeState::Unknown,
        "down" => NodeState::Down,
        "drained" if busy => NodeState::Draining,
        "drained" => NodeState::Drained,
        _ if full => NodeState::Allocated,
        _ if busy => NodeState::Mixed,
        _ => NodeState::Idle,
    };
    Node {
        name: n.name.clone(),
        state,
        not_responding: n.state == "unknown",
        partitions: partitions
            .iter()
            .filter(|p| p.nodes.contains(&n.name))
            .map(|p| p.name.clone())
            .collect(),
        cpus,
        cpus_alloc,
        real_memory_mb: n.memory_mib,
        alloc_memory_mb: n.memory_mib - n.memory_free_mib.min(n.memory_mib),
        gres: if n.gpus > 0 {
            format!("gpu:{}:{}", n.model.to_ascii_lowercase(), n.gpus)
        } else {
            String::new()
        },
        gpus_alloc,
        features: n.model.clone(),
        reason: match n.state.as_str() {
            "drained" => "drained by sovra".into(),
            "down" => "Not responding".into(),
            _ => String::new(),
        },
        reason_user: String::new(),
        reason_time: None,
        site: n.site.clone(),
        jurisdiction: n.jurisdiction.clone(),
    }
}

/// The cluster as the shim's model.
pub fn to_view(jobs: &[JobInfo], nodes: &[NodeInfo], cluster: &str, now: i64) -> View {
    let partitions = partitions(nodes);
    View {
        cluster: cluster.to_string(),
        now,
        jobs: jobs.iter().map(|j| to_job(j, &partitions)).collect(),
        nodes: nodes.iter().map(|n| to_node(n, &partitions)).collect(),
        partitions,
    }
}

/// A job id argument: `12`, `12_3` (one task), `12_[1-3,5]` (tasks): the sovra job ids it
/// names in `view` (an array's job id names every task).
pub fn resolve_job_ids(view: &View, arg: &str) -> Result<Vec<u64>, ()> {
    let (id, tasks) = match arg.split_once('_') {
        None => (arg, None),
        Some((id, tasks)) => (id, Some(tasks)),
    };
    let id: u64 = id.parse().map_err(|_| ())?;
    let tasks: Option<Vec<u32>> = match tasks {
        None => None,
        Some(t) => {
            let t = t.trim_start_matches('[').trim_end_matches(']');
            let mut out = Vec::new();
            for part in t.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b): (u32, u32) =
                            (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
                        if b < a || b - a > 100_000 {
                            return Err(());
                        }
                        out.extend(a..=b);
                    }
                    None => out.push(part.parse().map_err(|_| ())?),
                }
            }
            Some(out)
        }
    };
    let array: Vec<&Job> = view
        .jobs
        .iter()
        .filter(|j| j.array_job_id == Some(id))
        .collect();
    match tasks {
        None if array.is_empty() => Ok(vec![id]),
        None => Ok(array.iter().map(|j| j.job_id).collect()),
        Some(tasks) => Ok(array
            .iter()
            .filter(|j| j.array_task_id.is_some_and(|t| tasks.contains(&t)))
            .map(|j| j.job_id)
            .collect()),
    }
}

/// Applies `action` to each job `arg` names; the first failure's text.
pub fn control(
    session: &mut Session,
    view: &View,
    arg: &str,
    action: Option<JobAction>,
) -> Result<(), String> {
    let ids = resolve_job_ids(view, arg).map_err(|()| "Invalid job id specified".to_string())?;
    if ids.is_empty() {
        return Err("Invalid job id specified".into());
    }
    for id in ids {
        let op = match action {
            None => ClientOp::Cancel { job: id },
            Some(action) => ClientOp::JobControl { job: id, action },
        };
        session.call(op).map_err(|f| {
            let text = format!("{:#}", f.error);
            if text.starts_with("unknown job") {
                "Invalid job id specified".to_string()
            } else if text.contains("already ended") || text.contains("no longer pending") {
                "Job/step already completing or completed".to_string()
            } else {
                text
            }
        })?;
    }
    Ok(())
}

/// `scancel`: job ids (with array forms), `-u`, `-n`, `-p`, `-t`, `--me`; silent on success
/// as Slurm is. Exit 1 when a job could not be cancelled.
pub fn scancel(args: &[String]) -> Output {
    let mut ids: Vec<String> = Vec::new();
    let (mut user, mut name, mut partition, mut states) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<String, Output> {
            it.next().cloned().ok_or_else(|| {
                (
                    1,
                    String::new(),
                    format!("scancel: option requires an argument -- '{flag}'\n"),
                )
            })
        };
        match a.as_str() {
            "-u" | "--user" => match value("u") {
                Ok(v) => user = Some(v),
                Err(o) => return o,
            },
            "--me" => user = Some(current_user()),
            "-n" | "--name" | "--jobname" => match value("n") {
                Ok(v) => name = Some(v),
                Err(o) => return o,
            },
            "-p" | "--partition" => match value("p") {
                Ok(v) => partition = Some(v),
                Err(o) => return o,
            },
            "-t" | "--state" => match value("t") {
                Ok(v) => states = Some(v.to_ascii_uppercase()),
                Err(o) => return o,
            },
            "-Q" | "--quiet" | "-v" | "--verbose" | "-f" | "--full" | "-b" | "--batch" => {}
            "-V" | "--version" => return (0, "slurm 22.05.11\n".into(), String::new()),
            s if s.starts_with("--user=") => user = Some(s[7..].to_string()),
            s if s.starts_with("--name=") => name = Some(s[7..].to_string()),
            s if s.starts_with("--partition=") => partition = Some(s[12..].to_string()),
            s if s.starts_with("--state=") => states = Some(s[8..].to_ascii_uppercase()),
            s if s.starts_with('-') => {
                return (
                    1,
                    String::new(),
                    format!(
                        "scancel: unrecognized option '{s}'\nTry \"scancel --help\" for more \
                         information\n"
                    ),
                )
            }
            s => ids.push(s.to_string()),
        }
    }
    let filters = user.is_some() || name.is_some() || partition.is_some() || states.is_some();
    if ids.is_empty() && !filters {
        return (
            1,
            String::new(),
            "scancel: error: No job identification provided\n".into(),
        );
    }
    let mut session = match session("scancel") {
        Ok(s) => s,
        Err(e) => return (1, String::new(), e),
    };
    let view = match fetch(&mut session, "scancel", false) {
        Ok(v) => v,
        Err(e) => return (1, String::new(), e),
    };
    let mut targets: Vec<String> = ids.clone();
    if filters {
        let matches = |j: &Job| {
            user.as_ref().is_none_or(|u| &j.user == u)
                && name.as_ref().is_none_or(|n| &j.name == n)
                && partition.as_ref().is_none_or(|p| &j.partition == p)
                && states.as_ref().is_none_or(|s| {
                    s.split(',')
                        .any(|s| JobState::from_name(s) == Some(j.state))
                })
                && (ids.is_empty()
                    || ids
                        .iter()
                        .any(|i| resolve_job_ids(&view, i).is_ok_and(|v| v.contains(&j.job_id))))
        };
        targets = view
            .jobs
            .iter()
            .filter(|j| !j.state.is_finished() && matches(j))
            .map(|j| j.job_id.to_string())
            .collect();
    }
    let mut err = String::new();
    for t in &targets {
        if let Err(why) = control(&mut session, &view, t, None) {
            err.push_str(&format!(
                "scancel: error: Kill job error on job id {t}: {why}\n"
            ));
        }
    }
    (u8::from(!err.is_empty()), String::new(), err)
}

/// Compresses node names as Slurm's hostlist does (for `SLURM_JOB_NODELIST`-style output).
pub fn nodelist(nodes: &[String]) -> String {
    hostlist::compress(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sovrad::wire::JobControlInfo;

    fn node(name: &str, site: &str, j: &str, state: &str, free: u32) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            site: site.into(),
            jurisdiction: j.into(),
            state: state.into(),
            agent: true,
            model: "H100".into(),
            gpus: 8,
            gpus_whole_free: free,
            cpu_free_milli: 64_000,
            memory_free_mib: 512 * 1024,
            cpu_milli: 64_000,
            memory_mib: 512 * 1024,
            conflicts: Vec::new(),
        }
    }

    #[test]
    fn partitions_follow_jurisdictions() {
        let nodes = [
            node("syd1-n1", "syd1", "AU", "up", 8),
            node("tyo1-n1", "tyo1", "JP", "up", 4),
            node("syd2-n1", "syd2", "AU", "drained", 8),
        ];
        let p = partitions(&nodes);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["all", "au", "jp"]);
        assert_eq!(p[1].nodes, ["syd1-n1", "syd2-n1"]);
        assert_eq!(p[1].sites, ["syd1", "syd2"]);
        assert_eq!(p[0].jurisdictions, ["AU", "JP"]);
        assert_eq!(p[2].jurisdictions, ["JP"]);
        let v = to_view(&[], &nodes, "c", 0);
        assert_eq!(v.nodes[0].state, NodeState::Idle);
        assert_eq!(v.nodes[1].state, NodeState::Mixed);
        assert_eq!(v.nodes[2].state, NodeState::Drained);
        assert_eq!(v.nodes[0].partitions, ["all", "au"]);
        assert_eq!(v.nodes[0].gres, "gpu:h100:8");
    }

    #[test]
    fn jobs_and_array_ids() {
        let info = |id: u64, state: &str, array: Option<(u64, u32)>| JobInfo {
            id,
            name: "sweep".into(),
            tenant: "acme".into(),
            state: state.into(),
            priority: 0,
            jurisdictions: vec!["AU".into()],
            request: "1 GPU".into(),
            time_limit_ms: Some(90_000),
            submit_ms: 1_000_000,
            start_ms: None,
            end_ms: None,
            exit_code: None,
            restarts: 0,
            members: vec![],
            reason: Some("JobArrayTaskLimit: its array runs at most 1 tasks at once".into()),
            control: JobControlInfo {
                user: "alice".into(),
                array,
                members: 1,
                cpu_milli: 2000,
                memory_mib: 1024,
                gpu_milli: 1000,
                ..JobControlInfo::default()
            },
        };
        let jobs = [
            info(7, "PD", Some((7, 0))),
            info(8, "PD", Some((7, 2))),
            info(9, "CA", None),
        ];
        let v = to_view(&jobs, &[], "c", 2_000);
        let j = &v.jobs[0];
        assert_eq!((j.array_job_id, j.array_task_id), (Some(7), Some(0)));
        assert_eq!(j.reason, "JobArrayTaskLimit");
        assert_eq!(j.time_limit_min, Some(2));
        assert_eq!(
            (j.num_cpus, j.gpus, j.tres_per_node.as_str()),
            (2, 1, "gres:gpu:1")
        );
        assert_eq!(j.partition, "all");
        assert_eq!((v.jobs[2].exit_code, v.jobs[2].exit_signal), (0, 15));
        assert_eq!(resolve_job_ids(&v, "7"), Ok(vec![7, 8]));
        assert_eq!(resolve_job_ids(&v, "7_2"), Ok(vec![8]));
        assert_eq!(resolve_job_ids(&v, "7_[0-2]"), Ok(vec![7, 8]));
        assert_eq!(resolve_job_ids(&v, "9"), Ok(vec![9]));
        assert_eq!(resolve_job_ids(&v, "x"), Err(()));
    }
}
