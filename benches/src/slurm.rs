//! `sovra-bench slurm`: sustained `sbatch` submissions through the Slurm shim.
//!
//! Three `sovrad` replicas (the `sovra` binary's hidden `demo-replica` mode, fsync on) on
//! loopback with the demo inventory and no agents, so submitted jobs stay pending and the
//! machine's cores go to submission, not to running jobs. `clients` threads each start real
//! `sbatch` processes (a link to `sovra`, as users run it: `sbatch -p all --wrap true`), one
//! after another, until `jobs` submissions or `seconds` have passed; every process parses its
//! options, connects with mutual TLS, submits, and prints `Submitted batch job N`. The rate is
//! successful submissions over the wall time of the whole run; latency is per process, from
//! spawn to exit.
//!
//! The `array` case submits `sbatch --array=0-999` instead: 1000 jobs per process, as Slurm
//! users submit parameter sweeps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sovrad::client::ClusterClient;
use sovrad::local;
use sovrad::tls::{self, Identity};
use sovrad::wire::{ClientOp, ClientResult};

/// What to run.
pub struct Config {
    /// The `sovra` binary.
    pub sovra: PathBuf,
    /// The demo inventory.
    pub inventory: PathBuf,
    /// Working directory (created; the caller removes it).
    pub dir: PathBuf,
    /// Concurrent submitting threads.
    pub clients: usize,
    /// Most `sbatch` processes in all.
    pub jobs: u64,
    /// Longest run.
    pub seconds: u64,
    /// Each process submits an array of this many jobs (1: plain `sbatch`).
    pub array: u32,
}

/// What one run measured.
pub struct Outcome {
    /// `sbatch` processes that printed a job id.
    pub processes: u64,
    /// Jobs those processes submitted.
    pub jobs: u64,
    /// Wall time of the submitting phase.
    pub wall: Duration,
    /// Per process, spawn to exit, in nanoseconds.
    pub samples_ns: Vec<u64>,
    /// Processes that failed.
    pub failures: u64,
}

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
pub fn run(cfg: &Config) -> anyhow::Result<Outcome> {
    fs::create_dir_all(&cfg.dir)?;
    let certs = cfg.dir.join("certs");
    let members = local::Members {
        replicas: &[1, 2, 3],
        clients: &["admin".into()],
        agents: &[],
        sans: &[],
    };
    local::issue_certs(&certs, "demo", &members)?;
    let addrs = local::free_loopback_addrs(3).context("no free UDP ports on 127.0.0.1")?;
    let data_dir = |id: u64| cfg.dir.join(format!("replica-{id}"));
    local::init_replicas(&cfg.inventory, &addrs, data_dir)?;
    let mut procs = Procs(Vec::new());
    for id in 1..=3u64 {
        let args: Vec<String> = vec![
            "demo-replica".into(),
            "--id".into(),
            id.to_string(),
            "--data".into(),
            data_dir(id).display().to_string(),
            "--certs".into(),
            certs.display().to_string(),
            "--listen".into(),
            addrs[id as usize - 1].to_string(),
        ];
        let log = cfg.dir.join(format!("replica-{id}.log"));
        procs.0.push(spawn(&cfg.sovra, &args, &log)?);
    }
    // A leader before the clock starts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let identity = Identity::load(&certs, "client-admin")?;
    let mut client = ClusterClient::new(addrs.clone(), identity, tls::load_ca(&certs)?);
    client.deadline = Duration::from_secs(30);
    let start = Instant::now();
    while !matches!(
        runtime.block_on(client.call(ClientOp::Leader)),
        Ok(ClientResult::Leader { .. })
    ) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("no leader within 30 s; logs in {}", cfg.dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let bin = cfg.dir.join("bin");
    fs::create_dir_all(&bin)?;
    let sbatch = bin.join("sbatch");
    std::os::unix::fs::symlink(&cfg.sovra, &sbatch)?;
    let servers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let servers = servers.join(",");
    let mut args: Vec<String> = vec!["-p".into(), "all".into(), "-J".into(), "bench".into()];
    if cfg.array > 1 {
        args.push(format!("--array=0-{}", cfg.array - 1));
    }
    args.extend(["--wrap".into(), "true".into()]);

    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(cfg.seconds);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..cfg.clients.max(1))
        .map(|_| {
            let (issued, sbatch, args) = (Arc::clone(&issued), sbatch.clone(), args.clone());
            let (servers, certs, dir) = (servers.clone(), certs.clone(), cfg.dir.clone());
            let limit = cfg.jobs;
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut failures = 0u64;
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                    let t = Instant::now();
                    let out = Command::new(&sbatch)
                        .args(&args)
                        .env("SOVRA_SERVER", &servers)
                        .env("SOVRA_CERTS", &certs)
                        .env("USER", "bench")
                        .current_dir(&dir)
                        .stdin(Stdio::null())
                        .output();
                    match out {
                        Ok(o) if o.status.success() && o.stdout.starts_with(b"Submitted") => {
                            samples.push(t.elapsed().as_nanos() as u64)
                        }
                        Ok(o) => {
                            failures += 1;
                            if failures == 1 {
                                eprintln!(
                                    "sovra-bench: sbatch failed: {}",
                                    String::from_utf8_lossy(&o.stderr).trim()
                                );
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            eprintln!("sovra-bench: cannot run sbatch: {e}");
                        }
                    }
                }
                (samples, failures)
            })
        })
        .collect();
    let mut samples_ns = Vec::new();
    let mut failures = 0;
    for w in workers {
        let (s, f) = w
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        samples_ns.extend(s);
        failures += f;
    }
    let wall = t0.elapsed();
    let processes = samples_ns.len() as u64;
    // Every acknowledged job is in the scheduler: ids are dense, so the last one counts them.
    let expected = processes * u64::from(cfg.array.max(1));
    let last = match runtime.block_on(client.call(ClientOp::JobInfo { job: expected })) {
        Ok(ClientResult::JobList { jobs }) => jobs.len(),
        other => bail!("reading job {expected}: {other:?}"),
    };
    let after = match runtime.block_on(client.call(ClientOp::JobInfo { job: expected + 1 })) {
        Ok(ClientResult::JobList { jobs }) => jobs.len(),
        _ => 0,
    };
    if last != 1 || after != 0 {
        bail!(
            "{processes} submissions acknowledged, but the scheduler does not hold exactly \
               {expected} jobs"
        );
    }
    let listed = expected;
    drop(procs);
    Ok(Outcome {
        processes,
        jobs: listed,
        wall,
        samples_ns,
        failures,
    })
}
