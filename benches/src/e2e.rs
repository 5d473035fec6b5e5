//! `sovra-bench e2e`: submit-to-running latency on the demo cluster.
//!
//! Three replicas and four agents (the `sovra` binary's hidden `demo-replica` and
//! `demo-agent` modes, simulated 8xH100 inventories, session isolation so no root is needed)
//! on loopback. One client submits single-GPU jobs one after another (`command = "sleep
//! 0.05"`); each sample is the time from sending the submission to the first linearizable
//! read that shows the job running, that is: placement committed, the agent's long poll woken,
//! the task's supervisor started and the process confirmed, the start report committed. Reads
//! poll every millisecond, so a sample is at most about a millisecond late.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sovrad::client::ClusterClient;
use sovrad::tls::{self, Identity, Role};
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

fn state_of(text: &str, job: u64) -> Option<String> {
    let line = text.lines().next()?;
    let mut f = line.split_whitespace();
    (f.next()?.parse::<u64>().ok()? == job).then_some(())?;
    Some(f.nth(2)?.to_string())
}

/// Runs the case.
pub async fn run(cfg: &Config) -> anyhow::Result<Result> {
    fs::create_dir_all(&cfg.dir)?;
    let certs = cfg.dir.join("certs");
    fs::create_dir_all(&certs)?;
    let ca = tls::create_ca(&certs, "demo")?;
    for id in 1..=3 {
        tls::issue(&certs, &ca, &Role::Node { id }, &format!("node-{id}"), &[])?;
    }
    let admin = Role::Client {
        user: "admin".into(),
    };
    tls::issue(&certs, &ca, &admin, "client-admin", &[])?;
    for node in NODES {
        let role = Role::Agent { node: node.into() };
        tls::issue(&certs, &ca, &role, &format!("agent-{node}"), &[])?;
    }
    let sockets: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::result::Result<_, _>>()?;
    let addrs: Vec<SocketAddr> = sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<std::result::Result<_, _>>()?;
    drop(sockets);
    let peers: BTreeMap<u64, String> = (0..3)
        .map(|i| (i as u64 + 1, addrs[i].to_string()))
        .collect();
    let mut procs = Procs(Vec::new());
    for id in 1..=3u64 {
        let data = cfg.dir.join(format!("replica-{id}"));
        let sm = sovrad::node::initial_state(&cfg.inventory, false)?;
        sovrad::node::init(&data, &peers, &sm)?;
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
            let state = match client.call(ClientOp::Status { job }).await {
                Ok(ClientResult::Job { text }) => state_of(&text, job),
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
