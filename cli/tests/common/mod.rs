//! The multi-process test harness shared by the end-to-end tests: three real `sovrad`
//! replicas and real agents (this package's `sovra` binary in its hidden `demo-replica` and
//! `demo-agent` modes) on loopback, with simulated GPU inventories. Everything is killed when
//! the [`Cluster`] is dropped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sovrad::client::ClusterClient;
use sovrad::local;
use sovrad::tls::{self, Identity};
use sovrad::wire::{ClientOp, ClientResult};

pub const SOVRA: &str = env!("CARGO_BIN_EXE_sovra");
pub const NODES: [&str; 4] = ["syd1-n1", "syd1-n2", "tyo1-n1", "tyo1-n2"];
/// Agents' lease in these tests: short, so a killed agent's node fails quickly.
pub const LEASE_MS: u64 = 3000;
/// The longest any step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

pub fn inventory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/inventory/demo.toml")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLine {
    pub name: String,
    pub state: String,
    pub detail: String,
}

/// Three replicas and some agents; everything is killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The agents' `--isolation`.
    pub isolation: &'static str,
    pub addrs: Vec<SocketAddr>,
    pub children: BTreeMap<String, Child>,
    pub runtime: tokio::runtime::Runtime,
    pub client: ClusterClient,
}

impl Cluster {
    pub fn start(agents: &[&str]) -> Cluster {
        Cluster::start_isolated(agents, "session")
    }

    pub fn start_isolated(agents: &[&str], isolation: &'static str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let agent_certs: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
        let members = local::Members {
            replicas: &[1, 2, 3],
            clients: &["admin".into()],
            agents: &agent_certs,
            sans: &[],
        };
        local::issue_certs(&certs, "demo", &members).unwrap();
        let addrs = local::free_loopback_addrs(3).expect("free ports");
        local::init_replicas(&inventory(), &addrs, |id| {
            dir.path().join(format!("replica-{id}"))
        })
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let identity = Identity::load(&certs, "client-admin").unwrap();
        let mut client = ClusterClient::new(addrs.clone(), identity, tls::load_ca(&certs).unwrap());
        client.deadline = STEP;
        let mut cluster = Cluster {
            dir,
            isolation,
            addrs,
            children: BTreeMap::new(),
            runtime,
            client,
        };
        for id in 1..=3 {
            cluster.start_replica(id);
        }
        for node in agents {
            cluster.start_agent(node);
        }
        // Every agent registered (each answers its first sync only after registering).
        cluster.wait(|c| {
            let jobs = c.call(ClientOp::Leader);
            matches!(jobs, Ok(ClientResult::Leader { .. }))
        });
        std::thread::sleep(Duration::from_millis(500));
        cluster
    }

    pub fn spawn(&mut self, name: &str, args: &[String]) {
        let log = fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(SOVRA)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sovra starts");
        self.children.insert(name.to_string(), child);
    }

    pub fn start_replica(&mut self, id: u64) {
        let args = vec![
            "demo-replica".to_string(),
            "--id".into(),
            id.to_string(),
            "--data".into(),
            self.dir
                .path()
                .join(format!("replica-{id}"))
                .display()
                .to_string(),
            "--certs".into(),
            self.dir.path().join("certs").display().to_string(),
            "--listen".into(),
            self.addrs[id as usize - 1].to_string(),
            "--agent-lease-ms".into(),
            LEASE_MS.to_string(),
        ];
        self.spawn(&format!("replica-{id}"), &args);
    }

    pub fn start_agent(&mut self, node: &str) {
        let servers: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        let args = vec![
            "demo-agent".to_string(),
            "--node".into(),
            node.into(),
            "--server".into(),
            servers.join(","),
            "--certs".into(),
            self.dir.path().join("certs").display().to_string(),
            "--state-dir".into(),
            self.state_dir(node).display().to_string(),
            "--isolation".into(),
            self.isolation.into(),
            "--probe-listen".into(),
            "127.0.0.1:0".into(),
        ];
        self.spawn(&format!("agent-{node}"), &args);
    }

    pub fn state_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("agent-{node}"))
    }

    pub fn kill9(&mut self, name: &str) {
        let mut child = self.children.remove(name).expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn call(&mut self, op: ClientOp) -> Result<ClientResult, String> {
        self.runtime
            .block_on(self.client.call(op))
            .map_err(|e| e.to_string())
    }

    /// Polls `done` until it holds, or fails after [`STEP`].
    pub fn wait(&mut self, mut done: impl FnMut(&mut Cluster) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < STEP,
                "timed out; logs in {:?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in self.children.keys() {
            let text =
                fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
            out.push_str(&format!("--- {name}\n{text}"));
        }
        out
    }

    /// Submits; returns the job id and its placement text.
    pub fn submit(&mut self, toml: &str) -> (u64, String) {
        let op = ClientOp::Submit {
            job_toml: toml.to_string(),
            wait_placed: true,
        };
        match self.call(op) {
            Ok(ClientResult::Submitted {
                job,
                placed: Some(p),
            }) if !p.starts_with("pending") => (job, p),
            other => panic!("submit: {other:?}"),
        }
    }

    /// Submits a job that may wait; returns its id.
    pub fn submit_pending(&mut self, toml: &str) -> u64 {
        let op = ClientOp::Submit {
            job_toml: toml.to_string(),
            wait_placed: false,
        };
        match self.call(op) {
            Ok(ClientResult::Submitted { job, .. }) => job,
            other => panic!("submit: {other:?}"),
        }
    }

    pub fn jobs(&mut self) -> BTreeMap<u64, JobLine> {
        let jobs = match self.call(ClientOp::JobList { all: true }) {
            Ok(ClientResult::JobList { jobs }) => jobs,
            other => panic!("jobs: {other:?}"),
        };
        jobs.into_iter()
            .map(|j| {
                // Where it runs or ran, as `node{gpus}`; or why it waits.
                let members: Vec<String> = j
                    .members
                    .iter()
                    .map(|(node, _, _, gpus)| format!("{node}{{{gpus}}}"))
                    .collect();
                let detail = match (&j.reason, j.state.as_str()) {
                    (Some(r), "PD") => r.clone(),
                    _ => members.join(" "),
                };
                let line = JobLine {
                    name: j.name,
                    state: j.state,
                    detail,
                };
                (j.id, line)
            })
            .collect()
    }

    /// Runs a Slurm command of the shim (a link to `sovra` named `name`) against this
    /// cluster, with `env` added; returns (exit code, stdout, stderr).
    pub fn shim(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let bin = self.dir.path().join("bin");
        let link = bin.join(name);
        if !link.exists() {
            fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(SOVRA, &link).unwrap();
        }
        let servers: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        let out = Command::new(&link)
            .args(args)
            .env("SOVRA_SERVER", servers.join(","))
            .env("SOVRA_CERTS", self.dir.path().join("certs"))
            .env("USER", "alice")
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .expect("the shim runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn wait_state(&mut self, job: u64, state: &str) -> JobLine {
        let mut last = None;
        self.wait(|c| {
            let line = c.jobs().remove(&job);
            let done = line.as_ref().is_some_and(|l| l.state == state);
            last = line;
            done
        });
        last.unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents first and gently: a demo agent removes its cgroups when it stops.
        for (name, child) in &mut self.children {
            if name.starts_with("agent-") {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (name, child) in &mut self.children {
            while name.starts_with("agent-")
                && Instant::now() < deadline
                && matches!(child.try_wait(), Ok(None))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn job(name: &str, jurisdictions: &str, gpus: u32, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ntenant = \"t\"\njurisdictions = [{jurisdictions}]\ncpus = 1\n\
         memory_gb = 1\n{extra}\n[batch]\ngpus = {gpus}\n"
    )
}

pub fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}
