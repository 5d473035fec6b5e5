//! `sbatch`, `srun` and `salloc` against the cluster: a parsed [`BatchRequest`] becomes a sovra
//! job (its `[control]` carries the partition, hold, dependency, begin time and array), is
//! submitted in one round trip, and answers as Slurm does (`Submitted batch job N`).
//!
//! How Slurm's model maps onto sovra's:
//!
//! - One node (`-N 1`, the default) is a batch job whose one member has the job's CPUs
//!   (`ntasks x cpus-per-task`), memory and GPUs. More nodes make a gang of one member per
//!   node. As in Slurm, the batch script runs once, on the first node (rank 0); the other
//!   members hold their nodes until it ends.
//! - The script travels inside the job (`SOVRA_BATCH_SCRIPT`, at most 64 KiB) and is written
//!   to a private temporary file on the node. Output goes to `-o`/`-e` (default
//!   `slurm-%j.out`, `slurm-%A_%a.out` for arrays) in the working directory (`-D`, default
//!   the submission directory), with the patterns expanded on the node from the job's
//!   `SLURM_*` variables. Like Slurm, sovra expects that directory on a shared file system.
//! - `--export` (default `ALL`) copies the submission environment into the job; `SLURM_*`
//!   variables that describe the submission (`SLURM_SUBMIT_DIR`, `SLURM_SUBMIT_HOST`,
//!   `SLURM_CLUSTER_NAME`, `SLURM_CPUS_PER_TASK`, ...) are added.
//! - A partition is a queue bound to jurisdictions (see [`super::cluster`]); the scheduler
//!   resolves it, so an unknown one is Slurm's `Invalid partition name specified`.
//! - `srun` submits its command and follows rank 0's output until the job ends, exiting with
//!   the job's exit code. `salloc` holds an allocation (a job that runs nothing), runs the
//!   command (default `$SHELL`) here with the job's `SLURM_*` variables, and cancels the
//!   allocation when it exits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sovrad::wire::{ClientOp, ClientResult};

use super::cluster::{self, current_user};
use super::model::Output;
use super::sbatch::{
    self, BatchRequest, Clock, Cmd, ExportBase, Memory, OpenMode, Parsed, SlurmError,
    DEPENDENCY_PROBLEM, INVALID_ARRAY, INVALID_PARTITION,
};
use crate::remote::Session;

/// Largest batch script carried inside a job (one environment value).
pub const SCRIPT_MAX: usize = 64 * 1024;

/// The shell program that runs a batch script on the job's first node. `$1` is the stdout
/// path, `$2` the stderr path (already expanded), `$3` `>>` or `>`, the rest the script's
/// arguments.
const BATCH_WRAPPER: &str = r#"if [ "${SOVRA_RANK:-0}" != 0 ]; then exec sleep 2147483647; fi
d=$(mktemp -d "${TMPDIR:-/tmp}/sovra-batch.XXXXXX") || exit 1
f="$d/slurm_script"
printf '%s' "$SOVRA_BATCH_SCRIPT" > "$f" && chmod 700 "$f" || exit 1
unset SOVRA_BATCH_SCRIPT
out=$1; err=$2; mode=$3; shift 3
if [ "$mode" = ">>" ]; then "$f" "$@" >>"$out" 2>>"$err"; else "$f" "$@" >"$out" 2>"$err"; fi
rc=$?
rm -rf "$d"
exit $rc
"#;

/// Runs `sbatch`, `srun` or `salloc`.
pub fn run(cmd: Cmd, args: &[String]) -> Output {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let clock = Clock {
        now: cluster::now_s(),
        utc_offset_secs: 0,
    };
    let read = |path: Option<&Path>| -> std::io::Result<Vec<u8>> {
        match path {
            Some(p) => std::fs::read(p),
            None => {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                Ok(buf)
            }
        }
    };
    let request = match sbatch::parse(cmd, args, &env, clock, &read) {
        Ok(Parsed::Info(out)) => return out,
        Ok(Parsed::Request(r)) => r,
        Err(e) => return (e.code, String::new(), e.text),
    };
    match submit(&request, &env) {
        Ok(out) => out,
        Err(e) => (e.code, String::new(), e.text),
    }
}

fn error(cmd: Cmd, msg: &str) -> SlurmError {
    SlurmError {
        text: format!("{}: error: {msg}\n", cmd.name()),
        code: 1,
    }
}

/// Submits and, for `srun`/`salloc`/`--wait`, follows the job.
fn submit(r: &BatchRequest, env: &BTreeMap<String, String>) -> Result<Output, SlurmError> {
    let cmd = r.cmd;
    if r.test_only {
        return Err(error(
            cmd,
            "--test-only is not supported by sovra yet; `sovra place` dry-runs a placement",
        ));
    }
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".into());
    let toml = job_toml(r, env, &cwd)?;
    let mut session = cluster::session(cmd.name()).map_err(|text| SlurmError { text, code: 1 })?;
    let op = ClientOp::Submit {
        job_toml: toml,
        wait_placed: false,
    };
    let job = match session.call(op) {
        Ok(ClientResult::Submitted { job, .. }) => job,
        Ok(other) => return Err(error(cmd, &format!("unexpected answer {other:?}"))),
        Err(f) => return Err(rejection(cmd, &format!("{:#}", f.error))),
    };
    match cmd {
        Cmd::Sbatch => {
            let line = if r.parsable {
                format!("{job}\n")
            } else {
                format!("Submitted batch job {job}\n")
            };
            if r.wait {
                print!("{line}");
                let code = wait_end(&mut session, job, cmd)?;
                return Ok((code, String::new(), String::new()));
            }
            Ok((0, line, String::new()))
        }
        Cmd::Srun => {
            drop(session);
            let code = crate::remote::logs(&crate::remote::Conn::from_env(), job, 0, false, true)
                .map_err(|f| error(cmd, &format!("{:#}", f.error)))?;
            let mut session =
                cluster::session(cmd.name()).map_err(|text| SlurmError { text, code: 1 })?;
            let exit = wait_end(&mut session, job, cmd)?;
            Ok((exit.max(code), String::new(), String::new()))
        }
        Cmd::Salloc => salloc(&mut session, job, r),
    }
}

/// The server's refusal as Slurm words it.
fn rejection(cmd: Cmd, text: &str) -> SlurmError {
    let reason = if text.contains("invalid partition name") {
        INVALID_PARTITION.to_string()
    } else if text.contains("dependency") {
        DEPENDENCY_PROBLEM.to_string()
    } else if text.contains("control.array") {
        INVALID_ARRAY.to_string()
    } else {
        text.to_string()
    };
    sbatch::submission_failed(cmd, &reason)
}

/// Waits for `job` to end; its exit code (1 when it failed without one).
fn wait_end(session: &mut Session, job: u64, cmd: Cmd) -> Result<u8, SlurmError> {
    loop {
        let info = match session.call(ClientOp::JobInfo { job }) {
            Ok(ClientResult::JobList { jobs }) => jobs.into_iter().next(),
            Ok(_) => None,
            Err(f) => return Err(error(cmd, &format!("{:#}", f.error))),
        };
        if let Some(j) = info {
            if !matches!(j.state.as_str(), "PD" | "CF" | "R") {
                return Ok(match (j.state.as_str(), j.exit_code) {
                    ("CD", _) => 0,
                    (_, Some(code)) => code.clamp(1, 255) as u8,
                    _ => 1,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `salloc`: once the allocation holds, runs the command here with the job's variables;
/// cancels the allocation when it exits.
fn salloc(session: &mut Session, job: u64, r: &BatchRequest) -> Result<Output, SlurmError> {
    let cmd = Cmd::Salloc;
    eprintln!("salloc: Pending job allocation {job}");
    let nodes = loop {
        match session.call(ClientOp::JobInfo { job }) {
            Ok(ClientResult::JobList { jobs }) => {
                if let Some(j) = jobs.first() {
                    match j.state.as_str() {
                        "CF" | "R" => {
                            let mut nodes: Vec<String> = Vec::new();
                            for (n, _, _, _) in &j.members {
                                if !nodes.contains(n) {
                                    nodes.push(n.clone());
                                }
                            }
                            break nodes;
                        }
                        "PD" => {}
                        other => {
                            return Err(error(
                                cmd,
                                &format!("job allocation {job} has ended ({other})"),
                            ))
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(f) => return Err(error(cmd, &format!("{:#}", f.error))),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("salloc: job {job} queued and waiting for resources");
    eprintln!("salloc: job {job} has been allocated resources");
    eprintln!("salloc: Granted job allocation {job}");
    let argv: Vec<String> = if r.args.is_empty() && r.script_path.is_none() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        r.script_path
            .iter()
            .cloned()
            .chain(r.args.clone())
            .collect()
    };
    let nodelist = cluster::nodelist(&nodes);
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("SLURM_JOB_ID", job.to_string())
        .env("SLURM_JOBID", job.to_string())
        .env("SLURM_JOB_NODELIST", &nodelist)
        .env("SLURM_NODELIST", &nodelist)
        .env("SLURM_JOB_NUM_NODES", nodes.len().to_string())
        .env("SLURM_NNODES", nodes.len().to_string())
        .env("SLURM_CLUSTER_NAME", cluster::cluster_name())
        .status();
    let _ = session.call(ClientOp::Cancel { job });
    eprintln!("salloc: Relinquishing job allocation {job}");
    match status {
        Ok(s) => Ok((
            s.code().unwrap_or(1).clamp(0, 255) as u8,
            String::new(),
            String::new(),
        )),
        Err(e) => Err(error(cmd, &format!("{}: {e}", argv[0]))),
    }
}

/// GPUs per node the request asks for.
fn gpus_per_node(r: &BatchRequest, nodes: u32) -> u32 {
    if let Some(g) = &r.gpus_per_node {
        return g.count;
    }
    if let Some(g) = r.gres.iter().find(|g| g.name == "gpu") {
        return g.count.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(g) = &r.gpus_per_task {
        let tasks = r
            .ntasks_per_node
            .or(r.ntasks.map(|n| n.div_ceil(nodes)))
            .unwrap_or(1);
        return g.count.saturating_mul(tasks);
    }
    if let Some(g) = &r.gpus {
        return g.count.div_ceil(nodes);
    }
    0
}

/// The GPU model a request names (`-G h100:2`, `--gres gpu:h100:2`), if any.
fn gpu_model(r: &BatchRequest) -> Option<String> {
    [&r.gpus_per_node, &r.gpus, &r.gpus_per_task]
        .into_iter()
        .flatten()
        .find_map(|g| g.kind.clone())
        .or_else(|| {
            r.gres
                .iter()
                .find(|g| g.name == "gpu")
                .and_then(|g| g.kind.clone())
        })
}

/// The shell words of an output pattern, expanded on the node from the job's variables.
fn shell_pattern(pattern: &str, name: &str, user: &str) -> String {
    let ctx = sbatch::PatternCtx {
        job_id: 0,
        array_job_id: None,
        array_task_id: None,
        step_id: None,
        // `%N`, like the ids, comes from the node's environment (below), never from here.
        node: String::new(),
        node_id: 0,
        task_id: 0,
        user: user.into(),
        job_name: name.into(),
    };
    // Expand the static parts here; the ids come from the job's environment there.
    // Text inside the wrapper's double quotes: `\`, `"`, `$` and backquotes escaped.
    let quote = |text: &str| {
        let mut q = String::with_capacity(text.len());
        for c in text.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                q.push('\\');
            }
            q.push(c);
        }
        q
    };
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('%') {
        out.push_str(&quote(&rest[..i]));
        let tail = &rest[i + 1..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let Some(c) = tail[digits..].chars().next() else {
            out.push_str(&quote(&rest[i..]));
            rest = "";
            break;
        };
        let var = match c {
            'j' | 'J' => Some("${SLURM_JOB_ID}"),
            'A' => Some("${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}"),
            'a' => Some("${SLURM_ARRAY_TASK_ID:-4294967294}"),
            'N' => Some("$(hostname -s)"),
            _ => None,
        };
        match var {
            Some(v) => out.push_str(v),
            None => {
                let piece = &rest[i..i + 1 + digits + c.len_utf8()];
                out.push_str(&quote(&sbatch::expand_pattern(piece, &ctx)));
            }
        }
        rest = &tail[digits + c.len_utf8()..];
    }
    out.push_str(&quote(rest));
    out
}

/// The sovra job file for a request.
pub fn job_toml(
    r: &BatchRequest,
    env: &BTreeMap<String, String>,
    cwd: &str,
) -> Result<String, SlurmError> {
    use toml::Value;
    let cmd = r.cmd;
    let user = current_user();
    let nodes = r.nodes.map_or(1, |n| n.min.max(1));
    let tasks_per_node = r
        .ntasks_per_node
        .or(r.ntasks.map(|n| n.div_ceil(nodes)))
        .unwrap_or(1)
        .max(1);
    let cpus = tasks_per_node.saturating_mul(r.cpus_per_task.unwrap_or(1).max(1));
    let gpus = gpus_per_node(r, nodes);
    let memory_mib = match r.memory {
        Some(Memory::Node(m)) => Some(m),
        Some(Memory::Cpu(m)) => Some(m.saturating_mul(u64::from(cpus))),
        Some(Memory::Gpu(m)) => Some(m.saturating_mul(u64::from(gpus.max(1)))),
        None => None,
    };
    let name = r
        .job_name
        .clone()
        .unwrap_or_else(|| match (&r.wrap, &r.script_path) {
            (Some(_), _) => "wrap".into(),
            (None, Some(p)) => Path::new(p)
                .file_name()
                .map_or("sbatch".into(), |f| f.to_string_lossy().into_owned()),
            (None, None) if cmd == Cmd::Srun => r.args.first().cloned().unwrap_or_default(),
            (None, None) => cmd.name().into(),
        });
    let workdir = match &r.chdir {
        Some(d) if d.starts_with('/') => d.clone(),
        Some(d) => format!("{cwd}/{d}"),
        None => cwd.to_string(),
    };
    let tenant = r
        .account
        .clone()
        .or_else(|| env.get("SOVRA_TENANT").cloned())
        .unwrap_or_else(|| user.clone());

    let mut job = toml::Table::new();
    job.insert("name".into(), Value::String(name.clone()));
    job.insert("tenant".into(), Value::String(tenant.clone()));
    job.insert("cpus".into(), Value::Integer(i64::from(cpus)));
    if let Some(m) = memory_mib {
        job.insert("memory_mib".into(), Value::Integer(m.max(1) as i64));
    }
    if let Some(sbatch::TimeLimit::Minutes(m)) = r.time_limit {
        if m > 0 {
            job.insert("time_limit".into(), Value::Integer(m as i64));
        }
    }
    if let Some(model) = gpu_model(r) {
        job.insert(
            "gpu_models".into(),
            Value::Array(vec![Value::String(model.to_ascii_uppercase())]),
        );
    }
    if let Some(sbatch::Priority::Value(p)) = r.priority {
        job.insert("priority".into(), Value::Integer(i64::from(p)));
    }
    // The workload: one member per node.
    let mut section = toml::Table::new();
    if nodes > 1 {
        section.insert("members".into(), Value::Integer(i64::from(nodes)));
        section.insert("gpus_per_member".into(), Value::Integer(i64::from(gpus)));
        section.insert("topology".into(), Value::String("any".into()));
        if gpus == 0 {
            return Err(error(
                cmd,
                "sovra places multi-node jobs as GPU gangs: give --gpus-per-node",
            ));
        }
        job.insert("gang".into(), Value::Table(section));
    } else {
        if gpus > 0 {
            section.insert("gpus".into(), Value::Integer(i64::from(gpus)));
        }
        job.insert("batch".into(), Value::Table(section));
    }

    // What runs, and its environment.
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let base = r.export.as_ref().map_or(ExportBase::All, |e| e.base);
    if base == ExportBase::All {
        for (k, v) in env {
            // The submission's own sovra settings and credentials stay here.
            if !k.starts_with("SOVRA_") && !k.starts_with("SLURM_") && !k.is_empty() {
                vars.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(e) = &r.export {
        for (k, v) in &e.vars {
            if let Some(v) = v.as_ref().or_else(|| env.get(k)) {
                vars.insert(k.clone(), v.clone());
            }
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    vars.insert("SLURM_SUBMIT_DIR".into(), cwd.to_string());
    vars.insert("SLURM_SUBMIT_HOST".into(), host);
    vars.insert("SLURM_CLUSTER_NAME".into(), cluster::cluster_name());
    vars.insert("SLURM_JOB_NAME".into(), name.clone());
    if let Some(c) = r.cpus_per_task {
        vars.insert("SLURM_CPUS_PER_TASK".into(), c.to_string());
    }
    vars.insert("SLURM_NTASKS_PER_NODE".into(), tasks_per_node.to_string());
    if let Some(p) = r.partitions.first() {
        vars.insert("SLURM_JOB_PARTITION".into(), p.clone());
    }
    let command: Vec<String> = match cmd {
        Cmd::Srun => r.args.clone(),
        Cmd::Salloc => Vec::new(),
        Cmd::Sbatch => {
            let script = r.script.clone().unwrap_or_default();
            if script.len() > SCRIPT_MAX {
                return Err(error(
                    cmd,
                    &format!(
                        "batch script is {} bytes; sovra carries at most {SCRIPT_MAX}",
                        script.len()
                    ),
                ));
            }
            vars.insert("SOVRA_BATCH_SCRIPT".into(), script);
            let out = r
                .output
                .clone()
                .unwrap_or_else(|| r.default_output().into());
            let err = r.error.clone().unwrap_or_else(|| out.clone());
            let mode = match r.open_mode {
                Some(OpenMode::Append) => ">>",
                _ => ">",
            };
            let mut argv = vec![
                "/bin/sh".to_string(),
                "-c".into(),
                format!(
                    "set -- \"{}\" \"{}\" \"{}\" \"$@\"\n{BATCH_WRAPPER}",
                    shell_pattern(&out, &name, &user),
                    shell_pattern(&err, &name, &user),
                    mode
                ),
                "sbatch".into(),
            ];
            argv.extend(r.args.iter().cloned());
            argv
        }
    };
    if !command.is_empty() {
        job.insert(
            "command".into(),
            Value::Array(command.into_iter().map(Value::String).collect()),
        );
    }
    job.insert("workdir".into(), Value::String(workdir));
    job.insert(
        "env".into(),
        Value::Table(
            vars.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        ),
    );

    // Job control.
    let mut control = toml::Table::new();
    control.insert("user".into(), Value::String(user));
    let queue = match r.partitions.as_slice() {
        [] => cluster::DEFAULT_PARTITION.to_string(),
        [one] => one.clone(),
        many => {
            // Several partitions: the union of their jurisdictions, all of them queues.
            let mut codes = Vec::new();
            for p in many {
                if p == cluster::DEFAULT_PARTITION {
                    codes.clear();
                    break;
                }
                codes.push(Value::String(p.to_ascii_uppercase()));
            }
            if !codes.is_empty() {
                job.insert("jurisdictions".into(), Value::Array(codes));
            }
            cluster::DEFAULT_PARTITION.to_string()
        }
    };
    control.insert("queue".into(), Value::String(queue));
    if r.hold {
        control.insert("hold".into(), Value::Boolean(true));
    }
    if let Some(d) = &r.dependency {
        control.insert("dependency".into(), Value::String(d.text.clone()));
    }
    if let Some(b) = r.begin {
        control.insert("begin_ms".into(), Value::Integer(b.saturating_mul(1000)));
    }
    if let Some(a) = &r.array {
        control.insert("array".into(), Value::String(a.text.clone()));
    }
    job.insert("control".into(), Value::Table(control));
    toml::to_string(&job).map_err(|e| error(cmd, &format!("cannot encode the job: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(args: &[&str], script: &str) -> BatchRequest {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let script = script.to_string();
        let read = move |_: Option<&Path>| Ok(script.clone().into_bytes());
        match sbatch::parse(
            Cmd::Sbatch,
            &args,
            &BTreeMap::new(),
            Clock::default(),
            &read,
        )
        .unwrap()
        {
            Parsed::Request(r) => *r,
            Parsed::Info(o) => panic!("{o:?}"),
        }
    }

    #[test]
    fn requests_become_job_files_the_scheduler_accepts() {
        let script = "#!/bin/sh\n#SBATCH -J train\n#SBATCH --gpus-per-node=4\necho hi\n";
        let r = request(
            &[
                "-N",
                "2",
                "-p",
                "jp",
                "-t",
                "1:30:00",
                "-d",
                "afterok:7",
                "-a",
                "0-3%2",
                "s.sh",
            ],
            script,
        );
        let text = job_toml(&r, &BTreeMap::new(), "/home/a").unwrap();
        let spec = sovra_scheduler::jobfile::parse_job(&text).expect(&text);
        assert_eq!(spec.name, "train");
        assert_eq!(spec.member_count(), 2);
        assert_eq!(
            spec.member_gpus(),
            sovra_scheduler::core::job::GpuRequest::Whole(4)
        );
        assert_eq!(spec.time_limit_ms, Some(90 * 60_000));
        assert_eq!(spec.control.queue, "jp");
        assert_eq!(spec.control.dependency.unwrap().to_string(), "afterok:7");
        let array = spec.control.array.unwrap();
        assert_eq!((array.indices, array.throttle), (vec![0, 1, 2, 3], 2));
        assert_eq!(spec.run.workdir, "/home/a");
        let env: BTreeMap<_, _> = spec.run.env.into_iter().collect();
        assert_eq!(env["SOVRA_BATCH_SCRIPT"], script);
        assert_eq!(env["SLURM_SUBMIT_DIR"], "/home/a");
        // Arrays default to slurm-%A_%a.out, expanded on the node.
        assert!(spec.run.argv[2].contains("slurm-${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}_"));
    }

    #[test]
    fn patterns_expand_on_the_node() {
        assert_eq!(
            shell_pattern("slurm-%j.out", "n", "u"),
            "slurm-${SLURM_JOB_ID}.out"
        );
        assert_eq!(
            shell_pattern("%x-%u-%%.log", "train", "alice"),
            "train-alice-%.log"
        );
        assert_eq!(shell_pattern("o%", "n", "u"), "o%");
    }
}
