//! `scontrol show job|node|partition` in Slurm 22.05's key=value layout over
//! [`super::model::View`].
//!
//! Sources (SchedMD/slurm, 22.05): `src/api/job_info.c` (`slurm_sprint_job_info`: the order
//! of keys and line breaks, `   ` indentation, `-o` joining lines with a space, a record
//! ending in a line break then a blank line), `src/api/node_info.c`
//! (`slurm_sprint_node_table`), `src/api/partition_info.c`
//! (`slurm_sprint_partition_info`), `src/scontrol/info_job.c` (`scontrol_print_job`:
//! `Invalid job id specified`, `No jobs in the system`), `src/scontrol/info_node.c` and
//! `info_part.c` (`Node x not found`, `Partition x not found`), and
//! `src/common/parse_time.c` for times.
//!
//! sovra's own keys come last in a record, after every Slurm key, so parsers that read
//! Slurm's keys in order are not disturbed: `Jurisdictions=AU,JP` on jobs, `Site=` and
//! `Jurisdiction=` on nodes, `Sites=` and `Jurisdictions=` on partitions.
//!
//! Values the model does not hold are printed as Slurm prints an unset value:
//! `AllocNode:Sid=(null):0`, `Arch=(null)`, `OS=(null)`, `BootTime=None`; sockets and
//! threads are 1, so `CoresPerSocket` is the CPU count. Times are UTC.

use sovra_fabric::slurm::hostlist;

use super::model::{Job, JobState, Node, NodeState, Output, Partition, View};
use super::squeue::{
    convert_num_unit, is_batch, job_tres, make_time_str, mins2time_str, nodelist, secs2time_str,
    time_used, SLURM_VERSION,
};

fn or_null(s: &str) -> &str {
    if s.is_empty() {
        "(null)"
    } else {
        s
    }
}

fn list_or_null(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "(null)".into()
    } else {
        nodelist(hosts)
    }
}

/// `slurm_sprint_job_info` for one job.
fn sprint_job(job: &Job, view: &View, one_liner: bool, detail: bool) -> String {
    let end = if one_liner { " " } else { "\n   " };
    let mut lines: Vec<String> = Vec::new();
    let mut first = format!("JobId={} ", job.job_id);
    if let (Some(a), Some(t)) = (job.array_job_id, job.array_task_id) {
        first.push_str(&format!("ArrayJobId={a} ArrayTaskId={t} "));
    }
    first.push_str(&format!("JobName={}", job.name));
    lines.push(first);
    lines.push(format!(
        "UserId={}({}) GroupId={}({}) MCS_label=N/A",
        job.user, job.uid, job.group, job.gid
    ));
    lines.push(format!(
        "Priority={} Nice={} Account={} QOS={}",
        job.priority, job.nice, job.account, job.qos
    ));
    lines.push(format!(
        "JobState={} Reason={} Dependency={}",
        job.state.long(),
        super::squeue::reason(job).replace(char::is_whitespace, "_"),
        or_null(&job.dependency)
    ));
    let (code, signal) = (job.exit_code, job.exit_signal);
    lines.push(format!(
        "Requeue={} Restarts={} BatchFlag={} Reboot=0 ExitCode={code}:{signal}",
        u8::from(job.requeue),
        job.restarts,
        u8::from(is_batch(job))
    ));
    if detail {
        lines.push("DerivedExitCode=0:0".into());
    }
    let run_time = if job.state == JobState::Pending {
        0
    } else {
        time_used(job, view.now)
    };
    lines.push(format!(
        "RunTime={} TimeLimit={} TimeMin=N/A",
        secs2time_str(run_time),
        mins2time_str(job.time_limit_min)
    ));
    let eligible = job.eligible_time.unwrap_or(0);
    lines.push(format!(
        "SubmitTime={} EligibleTime={}",
        make_time_str(job.submit_time, 0),
        make_time_str(eligible, 0)
    ));
    lines.push(format!("AccrueTime={}", make_time_str(eligible, 0)));
    let start = job.start_time.unwrap_or(0);
    let end_time = match (job.end_time, job.time_limit_min) {
        (Some(e), _) => e,
        (None, Some(l)) if start != 0 => start + l.min(1 << 40) as i64 * 60,
        _ => 0,
    };
    let end_str = if job.time_limit_min.is_none() && !job.state.is_finished() {
        "Unknown".into()
    } else {
        make_time_str(end_time, 0)
    };
    lines.push(format!(
        "StartTime={} EndTime={end_str} Deadline=N/A",
        make_time_str(start, 0)
    ));
    let last_eval = if eligible != 0 {
        eligible
    } else {
        job.submit_time
    };
    lines.push(format!(
        "SuspendTime=None SecsPreSuspend=0 LastSchedEval={} Scheduler=Main",
        make_time_str(last_eval, 0)
    ));
    lines.push(format!(
        "Partition={} AllocNode:Sid=(null):0",
        job.partition
    ));
    lines.push(format!(
        "ReqNodeList={} ExcNodeList={}",
        list_or_null(&job.req_nodes),
        list_or_null(&job.exc_nodes)
    ));
    lines.push(format!("NodeList={}", list_or_null(&job.nodes)));
    if let Some(h) = &job.batch_host {
        lines.push(format!("BatchHost={h}"));
    }
    let num_nodes = if job.state == JobState::Pending {
        format!("{0}-{0}", job.num_nodes)
    } else {
        job.num_nodes.to_string()
    };
    lines.push(format!(
        "NumNodes={num_nodes} NumCPUs={} NumTasks={} CPUs/Task={} ReqB:S:C:T=0:0:*:*",
        job.num_cpus, job.num_tasks, job.cpus_per_task
    ));
    lines.push(format!("TRES={}", job_tres(job, false)));
    lines.push("Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*".into());
    if detail && !job.nodes.is_empty() {
        let cpus = job.num_cpus / job.num_nodes.max(1);
        let cpu_ids = if cpus > 1 {
            format!("0-{}", cpus - 1)
        } else {
            "0".into()
        };
        let gres = job
            .tres_per_node
            .strip_prefix("gres:")
            .unwrap_or(&job.tres_per_node);
        lines.push(format!(
            "  Nodes={} CPU_IDs={cpu_ids} Mem={} GRES={gres}",
            nodelist(&job.nodes),
            job.mem_per_node_mb
        ));
    }
    lines.push(format!(
        "MinCPUsNode={} MinMemoryNode={} MinTmpDiskNode=0",
        job.cpus_per_task.max(1),
        convert_num_unit(job.mem_per_node_mb, 2)
    ));
    lines.push(format!(
        "Features={} DelayBoot=00:00:00",
        or_null(&job.features)
    ));
    lines.push("OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)".into());
    lines.push(format!("Command={}", or_null(&job.command)));
    let mut work_dir = format!("WorkDir={}", job.work_dir);
    if !job.comment.is_empty() {
        work_dir.push_str(end);
        work_dir.push_str(&format!("Comment={} ", job.comment));
    }
    lines.push(work_dir);
    if is_batch(job) {
        lines.push(format!("StdErr={}", job.stderr));
        lines.push("StdIn=/dev/null".into());
        lines.push(format!("StdOut={}", job.stdout));
    }
    lines.push("Power=".into());
    if !job.tres_per_node.is_empty() {
        lines.push(format!("TresPerNode={}", job.tres_per_node));
    }
    if !job.jurisdictions.is_empty() {
        lines.push(format!("Jurisdictions={}", job.jurisdictions.join(",")));
    }
    let mut out = lines.join(end);
    out.push_str(end);
    out.push_str(if one_liner { "\n" } else { "\n\n" });
    out
}

/// `scontrol show job [ID]`: `ids` None shows every job. An id names a job or, for an
/// array, all of its tasks.
pub fn show_job(view: &View, ids: Option<&[u64]>, one_liner: bool, detail: bool) -> Output {
    let mut out = String::new();
    let mut jobs: Vec<&Job> = view.jobs.iter().collect();
    jobs.sort_by_key(|j| j.job_id);
    match ids {
        None => {
            if jobs.is_empty() {
                return (0, "No jobs in the system\n".into(), String::new());
            }
            for j in jobs {
                out.push_str(&sprint_job(j, view, one_liner, detail));
            }
        }
        Some(ids) => {
            for id in ids {
                let hits: Vec<&&Job> = jobs
                    .iter()
                    .filter(|j| j.job_id == *id || j.array_job_id == Some(*id))
                    .collect();
                if hits.is_empty() {
                    return (
                        1,
                        out,
                        "slurm_load_jobs error: Invalid job id specified\n".into(),
                    );
                }
                for j in hits {
                    out.push_str(&sprint_job(j, view, one_liner, detail));
                }
            }
        }
    }
    (0, out, String::new())
}

/// `scontrol show job [ID]` from the command line word: `12`, `12_3`; anything else but
/// digits, `_` and `+` is `Invalid job id specified` (`info_job.c`).
pub fn show_job_arg(view: &View, arg: Option<&str>, one_liner: bool, detail: bool) -> Output {
    let Some(arg) = arg else {
        return show_job(view, None, one_liner, detail);
    };
    if arg.is_empty()
        || !arg
            .chars()
            .all(|c| c.is_ascii_digit() || c == '_' || c == '+')
    {
        return (
            1,
            String::new(),
            "scontrol_print_job error: Invalid job id specified\n".into(),
        );
    }
    let (id, task) = match arg.split_once('_') {
        Some((j, t)) => (j, Some(t)),
        None => (arg, None),
    };
    let digits = |s: &str| -> u64 {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().unwrap_or(0)
    };
    let id = digits(id);
    let Some(task) = task else {
        return show_job(view, Some(&[id]), one_liner, detail);
    };
    let task = digits(task);
    let hit = view
        .jobs
        .iter()
        .find(|j| j.array_job_id == Some(id) && j.array_task_id.map(u64::from) == Some(task));
    match hit {
        Some(j) => (0, sprint_job(j, view, one_liner, detail), String::new()),
        None => (
            1,
            String::new(),
            "slurm_load_jobs error: Invalid job id specified\n".into(),
        ),
    }
}

/// `node_state_string_complete`: the base state, then `+` flags.
fn node_state(node: &Node) -> String {
    let busy = if node.cpus_alloc >= node.cpus {
        "ALLOCATED"
    } else {
        "MIXED"
    };
    let mut s = match node.state {
        NodeState::Idle => "IDLE".to_string(),
        NodeState::Mixed => "MIXED".into(),
        NodeState::Allocated => "ALLOCATED".into(),
        NodeState::Draining => format!("{busy}+DRAIN"),
        NodeState::Drained => "IDLE+DRAIN".into(),
        NodeState::Down => "DOWN".into(),
        NodeState::Unknown => "UNKNOWN".into(),
    };
    if node.not_responding {
        s.push_str("+NOT_RESPONDING");
    }
    s
}

/// The GPU count of a `gpu:h100:8` gres string.
fn gpu_count(gres: &str) -> u64 {
    gres.split(',')
        .filter(|g| g.starts_with("gpu"))
        .filter_map(|g| g.rsplit(':').next()?.split('(').next()?.parse::<u64>().ok())
        .sum()
}

/// `slurm_sprint_node_table` for one node.
fn sprint_node(node: &Node, one_liner: bool) -> String {
    let end = if one_liner { " " } else { "\n   " };
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!(
        "NodeName={} Arch=(null) CoresPerSocket={} ",
        node.name, node.cpus
    ));
    lines.push(format!(
        "CPUAlloc={} CPUEfctv={} CPUTot={} CPULoad=N/A",
        node.cpus_alloc, node.cpus, node.cpus
    ));
    lines.push(format!("AvailableFeatures={}", or_null(&node.features)));
    lines.push(format!("ActiveFeatures={}", or_null(&node.features)));
    lines.push(format!("Gres={}", or_null(&node.gres)));
    lines.push(format!(
        "NodeAddr={0} NodeHostName={0} Version={1}",
        node.name,
        SLURM_VERSION.trim_start_matches("slurm ")
    ));
    lines.push("OS=(null) ".into());
    lines.push(format!(
        "RealMemory={} AllocMem={} FreeMem=N/A Sockets=1 Boards=1",
        node.real_memory_mb, node.alloc_memory_mb
    ));
    lines.push(format!(
        "State={} ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A",
        node_state(node)
    ));
    lines.push(format!("Partitions={} ", node.partitions.join(",")));
    lines.push("BootTime=None SlurmdStartTime=None".into());
    lines.push("LastBusyTime=Unknown".into());
    let gpus = gpu_count(&node.gres);
    let mut cfg = format!(
        "cpu={},mem={},billing={}",
        node.cpus,
        convert_num_unit(node.real_memory_mb, 2),
        node.cpus
    );
    if gpus > 0 {
        cfg.push_str(&format!(",gres/gpu={gpus}"));
    }
    lines.push(format!("CfgTRES={cfg}"));
    let mut alloc = Vec::new();
    if node.cpus_alloc > 0 {
        alloc.push(format!("cpu={}", node.cpus_alloc));
    }
    if node.alloc_memory_mb > 0 {
        alloc.push(format!("mem={}", convert_num_unit(node.alloc_memory_mb, 2)));
    }
    if node.gpus_alloc > 0 {
        alloc.push(format!("gres/gpu={}", node.gpus_alloc));
    }
    lines.push(format!("AllocTRES={}", alloc.join(",")));
    lines.push("CapWatts=n/a".into());
    lines.push("CurrentWatts=0 AveWatts=0".into());
    lines.push("ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s".into());
    if !node.reason.is_empty() {
        let user = if node.reason_user.is_empty() {
            "Unknown"
        } else {
            &node.reason_user
        };
        let time = make_time_str(node.reason_time.unwrap_or(0), 0);
        lines.push(format!("Reason={} [{user}@{time}]", node.reason));
    }
    let mut sovra = Vec::new();
    if !node.site.is_empty() {
        sovra.push(format!("Site={}", node.site));
    }
    if !node.jurisdiction.is_empty() {
        sovra.push(format!("Jurisdiction={}", node.jurisdiction));
    }
    if !sovra.is_empty() {
        lines.push(sovra.join(" "));
    }
    let mut out = lines.join(end);
    out.push_str(if one_liner { "\n" } else { "\n\n" });
    out
}

/// `scontrol show node [NAME]`; `name` may be a hostlist (`gpu[01-02]`).
pub fn show_node(view: &View, name: Option<&str>, one_liner: bool) -> Output {
    let Some(name) = name else {
        if view.nodes.is_empty() {
            return (0, "No nodes in the system\n".into(), String::new());
        }
        let out: String = view
            .nodes
            .iter()
            .map(|n| sprint_node(n, one_liner))
            .collect();
        return (0, out, String::new());
    };
    let names = hostlist::expand(name).unwrap_or_else(|_| vec![name.to_string()]);
    let mut out = String::new();
    for n in &names {
        match view.nodes.iter().find(|x| x.name == *n) {
            Some(node) => out.push_str(&sprint_node(node, one_liner)),
            None => {
                out.push_str(&format!("Node {n} not found\n"));
                return (1, out, String::new());
            }
        }
    }
    (0, out, String::new())
}

/// `slurm_sprint_partition_info` for one partition.
fn sprint_partition(part: &Partition, view: &View, one_liner: bool) -> String {
    let end = if one_liner { " " } else { "\n   " };
    let nodes: Vec<&Node> = part
        .nodes
        .iter()
        .filter_map(|n| view.nodes.iter().find(|x| x.name == *n))
        .collect();
    let cpus: u64 = nodes.iter().map(|n| u64::from(n.cpus)).sum();
    let mem: u64 = nodes.iter().map(|n| n.real_memory_mb).sum();
    let gpus: u64 = nodes.iter().map(|n| gpu_count(&n.gres)).sum();
    let yes_no = |b: bool| if b { "YES" } else { "NO" };
    let mut lines = vec![
        format!("PartitionName={}", part.name),
        "AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL".into(),
        format!("AllocNodes=ALL Default={} QoS=N/A", yes_no(part.default)),
        format!(
            "DefaultTime={} DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO",
            part.default_time_min
                .map_or("NONE".into(), |m| mins2time_str(Some(m)))
        ),
        format!(
            "MaxNodes=UNLIMITED MaxTime={} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED",
            mins2time_str(part.max_time_min)
        ),
        // The configured list, in its order (`part_ptr->nodes`).
        format!(
            "Nodes={}",
            if part.nodes.is_empty() {
                "(null)".into()
            } else {
                hostlist::compress(&part.nodes)
            }
        ),
        "PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO".into(),
        "OverTimeLimit=NONE PreemptMode=OFF".into(),
        format!(
            "State={} TotalCPUs={cpus} TotalNodes={} SelectTypeParameters=NONE",
            if part.up { "UP" } else { "DOWN" },
            nodes.len()
        ),
        "JobDefaults=(null)".into(),
        "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED".into(),
    ];
    let mut tres = format!(
        "cpu={cpus},mem={},node={},billing={cpus}",
        convert_num_unit(mem, 2),
        nodes.len()
    );
    if gpus > 0 {
        tres.push_str(&format!(",gres/gpu={gpus}"));
    }
    lines.push(format!("TRES={tres}"));
    if !part.sites.is_empty() || !part.jurisdictions.is_empty() {
        lines.push(format!(
            "Sites={} Jurisdictions={}",
            part.sites.join(","),
            part.jurisdictions.join(",")
        ));
    }
    let mut out = lines.join(end);
    out.push_str(if one_liner { "\n" } else { "\n\n" });
    out
}

/// `scontrol show partition [NAME]`.
pub fn show_partition(view: &View, name: Option<&str>, one_liner: bool) -> Output {
    match name {
        None if view.partitions.is_empty() => {
            (0, "No partitions in the system\n".into(), String::new())
        }
        None => {
            let out = view
                .partitions
                .iter()
                .map(|p| sprint_partition(p, view, one_liner));
            (0, out.collect(), String::new())
        }
        Some(name) => match view.partitions.iter().find(|p| p.name == name) {
            Some(p) => (0, sprint_partition(p, view, one_liner), String::new()),
            None => (1, format!("Partition {name} not found\n"), String::new()),
        },
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::super::squeue::fixture::check;

    /// The conformance table for `scontrol show`, written from `api/job_info.c`,
    /// `api/node_info.c`, `api/partition_info.c` and `scontrol/info_*.c` of 22.05.
    #[test]
    fn show_job_conformance() {
        check(
            &[
                "scontrol show job 101",
                "scontrol show job 104",
                "scontrol -o show job 110",
                "scontrol -d show job 202",
                "scontrol show job 200_5",
                "scontrol show job 999",
                "scontrol show job 200_99",
                "scontrol show job abc",
            ],
            expect![[r#"
                $ scontrol show job 101
                JobId=101 JobName=train
                   UserId=alice(1001) GroupId=research(500) MCS_label=N/A
                   Priority=5000 Nice=0 Account=ml QOS=normal
                   JobState=RUNNING Reason=None Dependency=(null)
                   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
                   RunTime=01:02:05 TimeLimit=1-00:00:00 TimeMin=N/A
                   SubmitTime=2024-03-01T10:00:00 EligibleTime=2024-03-01T10:00:00
                   AccrueTime=2024-03-01T10:00:00
                   StartTime=2024-03-01T10:57:55 EndTime=2024-03-02T10:57:55 Deadline=N/A
                   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2024-03-01T10:00:00 Scheduler=Main
                   Partition=gpu AllocNode:Sid=(null):0
                   ReqNodeList=(null) ExcNodeList=(null)
                   NodeList=gpu[01-02]
                   BatchHost=gpu01
                   NumNodes=2 NumCPUs=128 NumTasks=16 CPUs/Task=8 ReqB:S:C:T=0:0:*:*
                   TRES=cpu=128,mem=512G,node=2,billing=128,gres/gpu=16
                   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
                   MinCPUsNode=8 MinMemoryNode=256G MinTmpDiskNode=0
                   Features=(null) DelayBoot=00:00:00
                   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
                   Command=/home/alice/train.sh
                   WorkDir=/home/alice
                   StdErr=/home/alice/slurm-101.out
                   StdIn=/dev/null
                   StdOut=/home/alice/slurm-101.out
                   Power=
                   TresPerNode=gres:gpu:8
                   Jurisdictions=AU,JP
                [3 spaces]

                $ scontrol show job 104
                JobId=104 JobName=big
                   UserId=carol(1003) GroupId=research(500) MCS_label=N/A
                   Priority=6000 Nice=0 Account=ml QOS=normal
                   JobState=PENDING Reason=Resources Dependency=(null)
                   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
                   RunTime=00:00:00 TimeLimit=1-00:00:00 TimeMin=N/A
                   SubmitTime=2024-03-01T10:00:00 EligibleTime=2024-03-01T10:00:00
                   AccrueTime=2024-03-01T10:00:00
                   StartTime=2024-03-01T14:00:00 EndTime=2024-03-02T14:00:00 Deadline=N/A
                   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2024-03-01T10:00:00 Scheduler=Main
                   Partition=gpu AllocNode:Sid=(null):0
                   ReqNodeList=(null) ExcNodeList=(null)
                   NodeList=(null)
                   NumNodes=4-4 NumCPUs=256 NumTasks=1 CPUs/Task=8 ReqB:S:C:T=0:0:*:*
                   TRES=cpu=256,mem=128G,node=4,billing=256
                   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
                   MinCPUsNode=8 MinMemoryNode=32G MinTmpDiskNode=0
                   Features=(null) DelayBoot=00:00:00
                   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
                   Command=/home/carol/big.sh
                   WorkDir=/home/carol
                   StdErr=/home/carol/slurm-104.out
                   StdIn=/dev/null
                   StdOut=/home/carol/slurm-104.out
                   Power=
                [3 spaces]

                $ scontrol -o show job 110
                JobId=110 JobName=oom UserId=alice(1001) GroupId=research(500) MCS_label=N/A Priority=5000 Nice=0 Account=ml QOS=normal JobState=OUT_OF_MEMORY Reason=OutOfMemory Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:125 RunTime=00:15:00 TimeLimit=1-00:00:00 TimeMin=N/A SubmitTime=2024-03-01T10:00:00 EligibleTime=2024-03-01T10:00:00 AccrueTime=2024-03-01T10:00:00 StartTime=2024-03-01T11:35:00 EndTime=2024-03-01T11:50:00 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2024-03-01T10:00:00 Scheduler=Main Partition=gpu AllocNode:Sid=(null):0 ReqNodeList=(null) ExcNodeList=(null) NodeList=gpu03 BatchHost=gpu03 NumNodes=1 NumCPUs=8 NumTasks=1 CPUs/Task=8 ReqB:S:C:T=0:0:*:* TRES=cpu=8,mem=32G,node=1,billing=8 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=8 MinMemoryNode=32G MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=/home/alice/oom.sh WorkDir=/home/alice StdErr=/home/alice/slurm-110.out StdIn=/dev/null StdOut=/home/alice/slurm-110.out Power= 
                $ scontrol -d show job 202
                JobId=202 ArrayJobId=200 ArrayTaskId=1 JobName=arr
                   UserId=alice(1001) GroupId=research(500) MCS_label=N/A
                   Priority=5000 Nice=0 Account=ml QOS=normal
                   JobState=RUNNING Reason=None Dependency=(null)
                   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
                   DerivedExitCode=0:0
                   RunTime=00:05:00 TimeLimit=1-00:00:00 TimeMin=N/A
                   SubmitTime=2024-03-01T10:00:00 EligibleTime=2024-03-01T10:00:00
                   AccrueTime=2024-03-01T10:00:00
                   StartTime=2024-03-01T11:55:00 EndTime=2024-03-02T11:55:00 Deadline=N/A
                   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2024-03-01T10:00:00 Scheduler=Main
                   Partition=cpu AllocNode:Sid=(null):0
                   ReqNodeList=(null) ExcNodeList=(null)
                   NodeList=cpu2
                   BatchHost=cpu2
                   NumNodes=1 NumCPUs=8 NumTasks=1 CPUs/Task=8 ReqB:S:C:T=0:0:*:*
                   TRES=cpu=8,mem=32G,node=1,billing=8
                   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
                     Nodes=cpu2 CPU_IDs=0-7 Mem=32768 GRES=
                   MinCPUsNode=8 MinMemoryNode=32G MinTmpDiskNode=0
                   Features=(null) DelayBoot=00:00:00
                   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
                   Command=/home/alice/arr.sh
                   WorkDir=/home/alice
                   StdErr=/home/alice/slurm-202.out
                   StdIn=/dev/null
                   StdOut=/home/alice/slurm-202.out
                   Power=
                [3 spaces]

                $ scontrol show job 200_5
                JobId=206 ArrayJobId=200 ArrayTaskId=5 JobName=arr
                   UserId=alice(1001) GroupId=research(500) MCS_label=N/A
                   Priority=5000 Nice=0 Account=ml QOS=normal
                   JobState=PENDING Reason=JobArrayTaskLimit Dependency=(null)
                   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
                   RunTime=00:00:00 TimeLimit=1-00:00:00 TimeMin=N/A
                   SubmitTime=2024-03-01T10:00:00 EligibleTime=2024-03-01T10:00:00
                   AccrueTime=2024-03-01T10:00:00
                   StartTime=Unknown EndTime=Unknown Deadline=N/A
                   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2024-03-01T10:00:00 Scheduler=Main
                   Partition=cpu AllocNode:Sid=(null):0
                   ReqNodeList=(null) ExcNodeList=(null)
                   NodeList=(null)
                   NumNodes=1-1 NumCPUs=8 NumTasks=1 CPUs/Task=8 ReqB:S:C:T=0:0:*:*
                   TRES=cpu=8,mem=32G,node=1,billing=8
                   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
                   MinCPUsNode=8 MinMemoryNode=32G MinTmpDiskNode=0
                   Features=(null) DelayBoot=00:00:00
                   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
                   Command=/home/alice/arr.sh
                   WorkDir=/home/alice
                   StdErr=/home/alice/slurm-206.out
                   StdIn=/dev/null
                   StdOut=/home/alice/slurm-206.out
                   Power=
                [3 spaces]

                $ scontrol show job 999
                [stderr]
                slurm_load_jobs error: Invalid job id specified
                [exit 1]
                $ scontrol show job 200_99
                [stderr]
                slurm_load_jobs error: Invalid job id specified
                [exit 1]
                $ scontrol show job abc
                [stderr]
                scontrol_print_job error: Invalid job id specified
                [exit 1]
            "#]],
        );
    }

    #[test]
    fn show_node_and_partition_conformance() {
        check(
            &[
                "scontrol show node gpu05",
                "scontrol -o show node gpu[03-04]",
                "scontrol show node cpu2",
                "scontrol show node nope",
                "scontrol show partition gpu",
                "scontrol -o show partition debug",
                "scontrol show partition nope",
            ],
            expect![[r#"
                $ scontrol show node gpu05
                NodeName=gpu05 Arch=(null) CoresPerSocket=64 
                   CPUAlloc=0 CPUEfctv=64 CPUTot=64 CPULoad=N/A
                   AvailableFeatures=h100,ib
                   ActiveFeatures=h100,ib
                   Gres=gpu:h100:8
                   NodeAddr=gpu05 NodeHostName=gpu05 Version=22.05.11
                   OS=(null) 
                   RealMemory=512000 AllocMem=0 FreeMem=N/A Sockets=1 Boards=1
                   State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
                   Partitions=gpu 
                   BootTime=None SlurmdStartTime=None
                   LastBusyTime=Unknown
                   CfgTRES=cpu=64,mem=500G,billing=64,gres/gpu=8
                   AllocTRES=
                   CapWatts=n/a
                   CurrentWatts=0 AveWatts=0
                   ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
                   Reason=bad gpu [root@2024-02-29T12:00:00]
                   Site=syd1 Jurisdiction=AU

                $ scontrol -o show node gpu[03-04]
                NodeName=gpu03 Arch=(null) CoresPerSocket=64  CPUAlloc=32 CPUEfctv=64 CPUTot=64 CPULoad=N/A AvailableFeatures=h100,ib ActiveFeatures=h100,ib Gres=gpu:h100:8 NodeAddr=gpu03 NodeHostName=gpu03 Version=22.05.11 OS=(null)  RealMemory=512000 AllocMem=128000 FreeMem=N/A Sockets=1 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=gpu  BootTime=None SlurmdStartTime=None LastBusyTime=Unknown CfgTRES=cpu=64,mem=500G,billing=64,gres/gpu=8 AllocTRES=cpu=32,mem=125G,gres/gpu=4 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s Site=syd1 Jurisdiction=AU
                NodeName=gpu04 Arch=(null) CoresPerSocket=64  CPUAlloc=0 CPUEfctv=64 CPUTot=64 CPULoad=N/A AvailableFeatures=h100,ib ActiveFeatures=h100,ib Gres=gpu:h100:8 NodeAddr=gpu04 NodeHostName=gpu04 Version=22.05.11 OS=(null)  RealMemory=512000 AllocMem=0 FreeMem=N/A Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=gpu  BootTime=None SlurmdStartTime=None LastBusyTime=Unknown CfgTRES=cpu=64,mem=500G,billing=64,gres/gpu=8 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s Site=syd1 Jurisdiction=AU
                $ scontrol show node cpu2
                NodeName=cpu2 Arch=(null) CoresPerSocket=64 
                   CPUAlloc=16 CPUEfctv=64 CPUTot=64 CPULoad=N/A
                   AvailableFeatures=epyc
                   ActiveFeatures=epyc
                   Gres=(null)
                   NodeAddr=cpu2 NodeHostName=cpu2 Version=22.05.11
                   OS=(null) 
                   RealMemory=257000 AllocMem=64000 FreeMem=N/A Sockets=1 Boards=1
                   State=MIXED+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
                   Partitions=cpu 
                   BootTime=None SlurmdStartTime=None
                   LastBusyTime=Unknown
                   CfgTRES=cpu=64,mem=257000M,billing=64
                   AllocTRES=cpu=16,mem=64000M
                   CapWatts=n/a
                   CurrentWatts=0 AveWatts=0
                   ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
                   Reason=kernel update [root@2024-03-01T11:50:00]
                   Site=syd1 Jurisdiction=AU

                $ scontrol show node nope
                Node nope not found
                [exit 1]
                $ scontrol show partition gpu
                PartitionName=gpu
                   AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL
                   AllocNodes=ALL Default=YES QoS=N/A
                   DefaultTime=01:00:00 DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO
                   MaxNodes=UNLIMITED MaxTime=2-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED
                   Nodes=gpu[01-06]
                   PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO
                   OverTimeLimit=NONE PreemptMode=OFF
                   State=UP TotalCPUs=384 TotalNodes=6 SelectTypeParameters=NONE
                   JobDefaults=(null)
                   DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED
                   TRES=cpu=384,mem=3000G,node=6,billing=384,gres/gpu=48
                   Sites=syd1 Jurisdictions=AU

                $ scontrol -o show partition debug
                PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=00:30:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=gpu01,cpu1 PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=DOWN TotalCPUs=128 TotalNodes=2 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=128,mem=769000M,node=2,billing=128,gres/gpu=8
                $ scontrol show partition nope
                Partition nope not found
                [exit 1]
            "#]],
        );
    }
}
