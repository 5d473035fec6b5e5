//! `sovra demo`: a whole sovra cluster on this machine, on loopback, in one command.
//!
//! It writes a cluster CA and certificates, initialises three `sovrad` replicas over an
//! inventory of two sites in two jurisdictions (AU and JP), starts the replicas and one agent
//! per GPU node (a declared, simulated GPU inventory: this machine need not have GPUs), then
//! submits a training gang, an inference service and a job only Japan may run, shows where
//! each was placed and why, waits for them to finish, and stops everything.
//!
//! The replicas and agents are this same binary re-executed with hidden subcommands, so
//! `cargo run -p sovra-cli -- demo` needs nothing else built. Their logs stay in the demo
//! directory (`--dir`, kept with `--keep`).

use std::collections::BTreeMap;
use std::fs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use sovrad::client::ClusterClient;
use sovrad::local;
use sovrad::tls::{self, Identity};
use sovrad::wire::{ClientOp, ClientResult};

/// The demo cluster: Sydney (AU) and Tokyo (JP), two 8-GPU nodes on one leaf each.
pub const INVENTORY: &str = include_str!("../../examples/inventory/demo.toml");

/// The demo's GPU nodes (as the inventory names them).
const NODES: [&str; 4] = ["syd1-n1", "syd1-n2", "tyo1-n1", "tyo1-n2"];
const CLUSTER: &str = "demo";
const REPLICAS: usize = 3;

/// A demo job: its file, and what it shows.
struct DemoJob {
    what: &'static str,
    toml: &'static str,
}

const JOBS: [DemoJob; 3] = [
    DemoJob {
        what: "sovereign fine-tune: 4 GPUs, Japan only (its data may not leave JP)",
        toml: r#"name = "jp-finetune"
tenant = "lionbank"
jurisdictions = ["JP"]
cpus = 4
memory_gb = 8
time_limit = 5
command = "echo finetuning in Japan on $CUDA_VISIBLE_DEVICES; sleep 2"
[batch]
gpus = 4
"#,
    },
    DemoJob {
        what: "training gang: 2 members x 8 GPUs in one leaf, AU or JP",
        toml: r#"name = "pretrain"
tenant = "acme"
jurisdictions = ["AU", "JP"]
gpu_models = ["H100"]
cpus = 8
memory_gb = 16
time_limit = 5
command = "echo rank $SOVRA_RANK of $SOVRA_WORLD_SIZE, master $SOVRA_MASTER_ADDR, GPUs $CUDA_VISIBLE_DEVICES; sleep 2"
[gang]
members = 2
gpus_per_member = 8
topology = "leaf"
affinity = "required"
"#,
    },
    DemoJob {
        what: "inference service: 2 replicas x 1 GPU on different nodes, AU or JP",
        toml: r#"name = "chat-svc"
tenant = "kaiju"
jurisdictions = ["AU", "JP"]
cpus = 2
memory_gb = 4
time_limit = 5
command = "echo replica $SOVRA_RANK serving on $CUDA_VISIBLE_DEVICES; sleep 2"
[inference]
replicas = 2
gpus = 1
spread = "node"
"#,
    },
];

/// `sovra demo` options.
pub struct DemoOptions {
    /// Where the demo's files go (default: a fresh directory under the temp dir).
    pub dir: Option<PathBuf>,
    /// Keep the directory afterwards.
    pub keep: bool,
    /// End with one JSON line.
    pub json: bool,
}

/// Children, killed (SIGTERM, then SIGKILL) when dropped, so a failed demo leaves nothing.
struct Processes {
    children: Vec<(String, Child)>,
}

impl Processes {
    fn spawn(&mut self, name: &str, args: &[String], log: &Path) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the sovra executable")?;
        let log_file =
            fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Fails if a child has exited.
    fn check(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited early ({status}); see its log");
            }
        }
        Ok(())
    }

    /// SIGTERM to all, then waits up to `limit`, then SIGKILL.
    fn stop(&mut self, limit: Duration) -> Vec<String> {
        for (_, child) in &self.children {
            // SAFETY: kill has no memory preconditions; the pid is our own child's.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let start = Instant::now();
        let mut unclean = Vec::new();
        for (name, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            unclean.push(format!("{name} ({status})"));
                        }
                        break;
                    }
                    Ok(None) if start.elapsed() < limit => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        unclean.push(format!("{name} (killed)"));
                        break;
                    }
                }
            }
        }
        self.children.clear();
        unclean
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One placed member, as `node{gpus}`.
fn parse_placement(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|m| m.split('{').next().unwrap_or(m).to_string())
        .collect()
}

fn site_of(node: &str) -> (&'static str, &'static str) {
    if node.starts_with("syd1") {
        ("syd1", "AU")
    } else {
        ("tyo1", "JP")
    }
}

/// Whether the agent can use cgroups here (root, and a cgroup2 mount; on a hybrid host the
/// limits go to the cgroup v1 controllers).
fn isolation() -> &'static str {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && sovra_agent::shell::cgroup::cgroup2_mount().is_some() {
        "cgroup-best-effort"
    } else {
        "session"
    }
}

/// Runs the demo; returns the process exit code.
pub fn run(opts: DemoOptions) -> anyhow::Result<u8> {
    let started = Instant::now();
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sovra-demo-{}", std::process::id())),
    };
    if dir.exists() && fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; pass another --dir",
            dir.display()
        );
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let say = |line: String| {
        if !opts.json {
            println!("{line}");
        }
    };
    let result = run_in(&dir, &say);
    let code = match &result {
        Ok(summary) => {
            if opts.json {
                let mut summary = summary.clone();
                let wall = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                summary.push(("wall_s", json!(wall)));
                println!("{}", ordered_json(&summary));
            }
            if summary[0].1 == "ok" {
                0
            } else {
                1
            }
        }
        Err(e) => {
            if opts.json {
                let error = json!(format!("{e:#}"));
                println!(
                    "{}",
                    ordered_json(&[("demo", json!("failed")), ("error", error)])
                );
            }
            eprintln!("sovra: demo failed: {e:#}");
            eprintln!("sovra: logs are in {}", dir.display());
            1
        }
    };
    if opts.keep || code != 0 {
        say(format!("files and logs kept in {}", dir.display()));
    } else {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(code)
}

/// The summary's fields, in order.
type Summary = Vec<(&'static str, serde_json::Value)>;

fn run_in(dir: &Path, say: &dyn Fn(String)) -> anyhow::Result<Summary> {
    // 1. PKI, inventory, replicas' data.
    let certs = dir.join("certs");
    let agents: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    let members = local::Members {
        replicas: &[1, 2, 3],
        clients: &["admin".into()],
        agents: &agents,
        sans: &[],
    };
    local::issue_certs(&certs, CLUSTER, &members)?;
    let inventory = dir.join("inventory.toml");
    fs::write(&inventory, INVENTORY)?;
    let addrs = local::free_loopback_addrs(REPLICAS).context("no free UDP ports on 127.0.0.1")?;
    local::init_replicas(&inventory, &addrs, |id| dir.join(format!("replica-{id}")))?;
    say(format!(
        "sovra demo: 3 replicas, 2 sites (syd1 in AU, tyo1 in JP), 4 nodes x 8 H100 \
         (simulated GPUs), in {}",
        dir.display()
    ));

    // 2. Replicas and agents.
    let mut procs = Processes {
        children: Vec::new(),
    };
    for (i, addr) in addrs.iter().enumerate() {
        let id = (i + 1).to_string();
        let args: Vec<String> = [
            "demo-replica",
            "--id",
            &id,
            "--data",
            &dir.join(format!("replica-{id}")).display().to_string(),
            "--certs",
            &certs.display().to_string(),
            "--listen",
            &addr.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        procs.spawn(
            &format!("replica {id}"),
            &args,
            &dir.join(format!("replica-{id}.log")),
        )?;
    }
    let servers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let isolation = isolation();
    for node in NODES {
        let args: Vec<String> = [
            "demo-agent",
            "--node",
            node,
            "--server",
            &servers.join(","),
            "--certs",
            &certs.display().to_string(),
            "--state-dir",
            &dir.join(format!("agent-{node}")).display().to_string(),
            "--isolation",
            isolation,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        procs.spawn(
            &format!("agent {node}"),
            &args,
            &dir.join(format!("agent-{node}.log")),
        )?;
    }
    say(format!(
        "started 3 replicas on {} and 4 agents (task isolation: {isolation})",
        servers.join(", ")
    ));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let identity = Identity::load(&certs, "client-admin")?;
    let ca_cert = tls::load_ca(&certs)?;
    let mut client = ClusterClient::new(addrs.clone(), identity, ca_cert);
    client.deadline = Duration::from_secs(20);

    // 3. Wait for a leader and every node up (agents registered).
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        procs.check()?;
        if let Ok(ClientResult::Leader { id, addr }) =
            runtime.block_on(client.call(ClientOp::Leader))
        {
            break (id, addr);
        }
        if Instant::now() > deadline {
            bail!("no leader elected within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    say(format!("replica {} at {} leads", leader.0, leader.1));
    // Agents register as they start; give them a moment (each registers once).
    std::thread::sleep(Duration::from_millis(800));
    procs.check()?;

    // 4. Submit.
    let mut placements = Vec::new();
    let mut submitted = Vec::new();
    for job in &JOBS {
        let op = ClientOp::Submit {
            job_toml: job.toml.to_string(),
            wait_placed: true,
        };
        let (id, placed) = match runtime.block_on(client.call(op)) {
            Ok(ClientResult::Submitted {
                job: id,
                placed: Some(p),
            }) if !p.starts_with("pending") => (id, p),
            Ok(ClientResult::Submitted { job: id, placed }) => {
                bail!("job {id} was not placed: {}", placed.unwrap_or_default())
            }
            other => bail!("submitting a demo job: {other:?}"),
        };
        let nodes = parse_placement(&placed);
        let (site, jurisdiction) = site_of(&nodes[0]);
        let name = job
            .toml
            .lines()
            .next()
            .and_then(|l| l.split('"').nth(1))
            .unwrap_or("job");
        say(format!("\njob {id} {name}: {}", job.what));
        say(format!("  placed: {placed}"));
        let why = match (name, site) {
            ("jp-finetune", _) => {
                "only JP is allowed: tyo1 is the only JP site, syd1 (AU) was never considered"
                    .to_string()
            }
            ("pretrain", "syd1") => "16 GPUs in one leaf: tyo1 has 12 left after jp-finetune, \
                                    so the gang goes whole to syd1's leaf"
                .to_string(),
            ("pretrain", _) => "16 GPUs in one leaf, both members under one switch".to_string(),
            ("chat-svc", _) => {
                format!("spread = node puts each replica on its own node; {site} has the free GPUs")
            }
            _ => String::new(),
        };
        say(format!("  in {site} ({jurisdiction}): {why}"));
        placements.push(json!({
            "job": id, "name": name, "site": site, "jurisdiction": jurisdiction,
            "nodes": nodes, "placed": placed,
        }));
        submitted.push(id);
    }

    // 5. Wait for the jobs to finish.
    say(String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let states = loop {
        procs.check()?;
        let states: BTreeMap<u64, String> =
            match runtime.block_on(client.call(ClientOp::JobList { all: true })) {
                Ok(ClientResult::JobList { jobs }) => {
                    jobs.into_iter().map(|j| (j.id, j.state)).collect()
                }
                other => bail!("listing jobs: {other:?}"),
            };
        let done = submitted.iter().all(|j| {
            states
                .get(j)
                .is_some_and(|s| !matches!(s.as_str(), "PD" | "CF" | "R"))
        });
        if done {
            break states;
        }
        if Instant::now() > deadline {
            bail!("jobs did not finish within 60 s: {states:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let completed = submitted
        .iter()
        .filter(|j| states.get(j).map(String::as_str) == Some("CD"))
        .count();
    for j in &submitted {
        say(format!(
            "job {j}: {}",
            states.get(j).map(String::as_str).unwrap_or("?")
        ));
    }
    // Task output, as the agents wrote it.
    for node in NODES {
        let logs = dir.join(format!("agent-{node}")).join("logs");
        let Ok(entries) = fs::read_dir(&logs) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "out"))
            .collect();
        files.sort();
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_default();
            for line in text.lines() {
                say(format!(
                    "  {node} {}: {line}",
                    f.file_stem().and_then(|s| s.to_str()).unwrap_or("")
                ));
            }
        }
    }

    // 6. Stop: agents first (their tasks are done), then replicas.
    drop(client);
    let unclean = procs.stop(Duration::from_secs(10));
    let ok = completed == submitted.len() && unclean.is_empty();
    say(format!(
        "\n{completed} of {} jobs completed; cluster stopped{}",
        submitted.len(),
        if unclean.is_empty() {
            " cleanly".to_string()
        } else {
            format!(", but not cleanly: {}", unclean.join(", "))
        }
    ));
    Ok(vec![
        ("demo", json!(if ok { "ok" } else { "failed" })),
        ("jobs_submitted", json!(submitted.len())),
        ("jobs_completed", json!(completed)),
        ("placements", json!(placements)),
        ("replicas", json!(REPLICAS)),
        ("agents", json!(NODES.len())),
        (
            "sites",
            json!([{"site": "syd1", "jurisdiction": "AU"}, {"site": "tyo1", "jurisdiction": "JP"}]),
        ),
        ("simulated_gpus", json!(true)),
        ("isolation", json!(isolation)),
        ("stopped_cleanly", json!(unclean.is_empty())),
    ])
}

/// One JSON object with its keys in the given order (serde_json's map sorts them).
fn ordered_json(pairs: &[(&str, serde_json::Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(*k)))
        .collect();
    format!("{{{}}}", fields.join(","))
}
