//! `sovra-bench e2e`: submit-to-running latency on the demo cluster.
//!
//! Three replicas and four agents (the `sovra` binary's hidden `demo-replica` and
//! `demo-agent` modes, simulated 8xH100 inventories, session isolation so no root is needed)
//! on loopback. One client submits single-GPU jobs one after another (`command = "sleep
//! 0.05"`); each sample is the time from sending the submission to the first linearizable
//! read that shows the job running, that is: placement committed, the agent's long poll woken,
//! the task's supervisor started and the process confirmed, the start report committed. Reads
//! poll every millisecond, so a sample is at most about a millisecond late.

use std::fs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sovrad::client::ClusterClient;
use sovrad::local;
use sovrad::tls::{self, Identity};
use sovrad::wire::{ClientOp, ClientResult};

/// The demo cluster's GPU nodes.
const NODES: [&str; 4] = ["syd1-n1", "syd1-n2", "tyo1-n1", "tyo1-n2"];

/// What to run.
pub struct Config {
    /// The `sovra` binary.
    pub sovra: PathBuf,
    /// The demo inventory.
    pub inventory: PathBuf,
    /// Working directory (created; the caller removes it).
    pub dir: PathBuf,
    /// Jobs to time.
    pub jobs: usize,
}

/// Submit-to-running samples, in nanoseconds.
pub struct Result {
    /// One per job.
    pub samples_ns: Vec<u64>,
}

/// The processes; killed on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(sovra: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let log = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    Command::new(sovra)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", sovra.display()))
}

/// Runs the case.
pub async fn run(cfg: &Config) -> anyhow::Result<Result> {
    fs::create_dir_all(&cfg.dir)?;
    let certs = cfg.dir.join("certs");
    let agents: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    let members = local::Members {
        replicas: &[1, 2, 3],
        clients: &["admin".into()],
        agents: &agents,
        sans: &[],
    };
    local::issue_certs(&certs, "demo", &members)?;
    let addrs = local::free_loopback_addrs(3).context("no free UDP ports on 127.0.0.1")?;
    let data_dir = |id: u64| cfg.dir.join(format!("replica-{id}"));
    local::init_replicas(&cfg.inventory, &addrs, data_dir)?;
    let mut procs = Procs(Vec::new());
    for id in 1..=3u64 {
        let data = data_dir(id);
        let args: Vec<String> = vec![
            "demo-replica".into(),
            "--id".into(),
            id.to_string(),
            "--data".into(),
            data.display().to_string(),
            "--certs".into(),
            certs.display().to_string(),
            "--listen".into(),
            addrs[id as usize - 1].to_string(),
        ];
        let log = cfg.dir.join(format!("replica-{id}.log"));
        procs.0.push(spawn(&cfg.sovra, &args, &log)?);
    }
    let servers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    for node in NODES {
        let args: Vec<String> = vec![
            "demo-agent".into(),
            "--node".into(),
            node.into(),
            "--server".into(),
            servers.join(","),
            "--certs".into(),
            certs.display().to_string(),
            "--state-dir".into(),
            cfg.dir.join(format!("agent-{node}")).display().to_string(),
            "--isolation".into(),
            "session".into(),
        ];
        let log = cfg.dir.join(format!("agent-{node}.log"));
        procs.0.push(spawn(&cfg.sovra, &args, &log)?);
    }
    let identity = Identity::load(&certs, "client-admin")?;
    let mut client = ClusterClient::new(addrs, identity, tls::load_ca(&certs)?);
    client.deadline = Duration::from_secs(30);
    // A leader, and agents registered.
    let start = Instant::now();
    while !matches!(
        client.call(ClientOp::Leader).await,
        Ok(ClientResult::Leader { .. })
    ) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("no leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let toml = "name = \"lat\"\ntenant = \"bench\"\njurisdictions = [\"AU\", \"JP\"]\n\
                cpus = 1\nmemory_gb = 1\ncommand = [\"sleep\", \"0.05\"]\n[batch]\ngpus = 1\n";
    let mut samples_ns = Vec::with_capacity(cfg.jobs);
    for k in 0..cfg.jobs {
        let t0 = Instant::now();
        let op = ClientOp::Submit {
            job_toml: toml.into(),
            wait_placed: false,
        };
        let job = match client.call(op).await {
            Ok(ClientResult::Submitted { job, .. }) => job,
            other => bail!("submission {k}: {other:?}"),
        };
        loop {
            let state = match client.call(ClientOp::JobInfo { job }).await {
                Ok(ClientResult::JobList { jobs }) => jobs.into_iter().next().map(|j| j.state),
                other => bail!("status of job {job}: {other:?}"),
            };
            match state.as_deref() {
                Some("R" | "CD") => break,
                Some("PD" | "CF") => {}
                other => bail!("job {job} ended {other:?} before it was seen running"),
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "job {job} not running after 30 s; logs in {}",
                    cfg.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples_ns.push(t0.elapsed().as_nanos() as u64);
    }
    Ok(Result { samples_ns })
}
