//! `sovra-bench raft`: the replicated scheduler end to end. Three real `sovrad` processes
//! (release builds, found next to this executable) run on loopback with their stores on
//! disk (every Raft `Ready` is one fsynced redb transaction), and in-process
//! [`ClusterClient`]s submit single-GPU batch jobs with `wait_placed`, so each answer means
//! "the job's placement is committed and applied on the leader".
//!
//! Cases (see `benches/README.md`):
//! - `submit`: `clients` concurrent clients, one request in flight each, submit for a fixed
//!   time or job count; committed placements per second and submit→placement latency.
//! - `failover`: `trials` times, kill -9 the leader and time until a submission is placed by
//!   the new leader; meanwhile a few background clients keep submitting, and at the end every
//!   acknowledged job must be listed under its id, once.
//!
//! Each case starts its own cluster from an empty directory under `--dir`; every child
//! process is killed when the case ends, also on errors (the [`Replicas`] guard).
//! The inventory is one synthetic site with `nodes` × 8 H100, written as inventory TOML, so
//! that no job of a run waits for GPUs: the harness checks that the run cannot ask for more
//! GPUs than there are.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use sovrad::client::ClusterClient;
use sovrad::tls::{self, ClusterCa, Identity};
use sovrad::wire::{ClientOp, ClientResult, RequestId};

use crate::stats::{self, Summary};

/// Replicas in the group.
pub const REPLICAS: usize = 3;
const CLUSTER: &str = "bench";
/// GPUs per node of the synthetic inventory.
pub const GPUS_PER_NODE: usize = 8;
const NODES_PER_LEAF: usize = 32;
const LEAVES_PER_SPINE: usize = 16;
/// Inventories grow in whole spines.
pub const NODES_ROUND: usize = NODES_PER_LEAF * LEAVES_PER_SPINE;
/// Jobs the `submit` warm-up may submit at most (counted against the GPUs too).
const WARMUP_JOBS_MAX: usize = 5_000;
/// How long a group may take to elect a leader before the case fails.
const ELECTION_WAIT: Duration = Duration::from_secs(15);
/// How long a failover trial may take before the case fails.
const FAILOVER_WAIT: Duration = Duration::from_secs(15);
/// How long a restarted replica may take to follow the leader again.
const REJOIN_WAIT: Duration = Duration::from_secs(20);
/// Pause after a restarted replica follows the leader, for it to catch up on the log before
/// the next trial (the wire protocol does not expose a follower's applied index).
const REJOIN_SETTLE: Duration = Duration::from_millis(1000);
/// One submission attempt of the failover probe: short, so that a dead leader costs little.
const PROBE_ATTEMPT: Duration = Duration::from_millis(150);
/// How long background clients of the failover case retry one request, leader changes
/// included.
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(15);
/// Pause between two requests of one background client.
const BACKGROUND_PAUSE: Duration = Duration::from_millis(50);

const _: () = assert!(NODES_ROUND % NODES_PER_LEAF == 0);

/// A case of the `raft` benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RaftCase {
    /// Concurrent clients submitting: committed placements per second, latency.
    Submit,
    /// kill -9 of the leader: time to the first placement by the next one.
    Failover,
}

impl RaftCase {
    /// Every case, in run order.
    pub const ALL: [RaftCase; 2] = [RaftCase::Submit, RaftCase::Failover];

    /// The name in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RaftCase::Submit => "submit",
            RaftCase::Failover => "failover",
        }
    }
}

/// What a `raft` run does.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `sovrad` binary.
    pub sovrad: PathBuf,
    /// Where the clusters' directories go (one per case; the caller removes it).
    pub dir: PathBuf,
    /// Nodes of the synthetic inventory (8 GPUs each), a multiple of [`NODES_ROUND`].
    pub nodes: usize,
    /// `submit`: concurrent clients.
    pub clients: usize,
    /// `submit`: measured time.
    pub duration: Duration,
    /// `submit`: untimed submissions first, this long.
    pub warmup: Duration,
    /// `submit`: most jobs in the measured phase.
    pub jobs_max: usize,
    /// `submit`: clients send to a follower, which forwards to the leader.
    pub via_follower: bool,
    /// `failover`: trials.
    pub trials: usize,
    /// `failover`: clients submitting in the background throughout.
    pub background_clients: usize,
}

/// Results of the `submit` case.
#[derive(Clone, Debug)]
pub struct SubmitResult {
    /// Submissions answered with a placement in the measured phase.
    pub placed: u64,
    /// Submissions answered as pending (no GPU): should be 0.
    pub unplaced: u64,
    /// Submissions that failed (deadline, errors).
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// From the start of the measured phase until its last answer.
    pub elapsed: Duration,
    /// Submit→placement-committed latency of the placed submissions.
    pub latency: Option<Summary>,
}

impl SubmitResult {
    /// Committed placements per second.
    pub fn commits_per_s(&self) -> f64 {
        self.placed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Results of the `failover` case.
#[derive(Clone, Debug)]
pub struct FailoverResult {
    /// Kill→first committed placement by the new leader, per trial, in nanoseconds.
    pub failover: Summary,
    /// Kill→a survivor says it leads, per trial (the election alone).
    pub election: Summary,
    /// Restart of the killed replica→it names the new leader, per trial.
    pub rejoin: Summary,
    /// Acknowledged submissions (background and probes), after retrying the unanswered ones.
    pub acked: usize,
    /// Requests a background client gave up on during the trials (retried at the end).
    pub retried_at_end: usize,
    /// Acknowledged jobs missing from the final list, or listed under another name.
    pub lost: usize,
    /// Jobs listed twice for one request, plus listed jobs beyond the acknowledged ones.
    pub duplicated: usize,
    /// Jobs in the final list.
    pub listed: usize,
}

/// A single-GPU batch job; `name` makes it findable in the job list.
fn job_toml(name: &str) -> String {
    format!(
        "name = \"{name}\"\ntenant = \"bench\"\njurisdictions = [\"AU\"]\ncpus = 1\n\
         memory_gb = 1\n\n[batch]\ngpus = 1\n"
    )
}

fn submit_op(name: &str) -> ClientOp {
    ClientOp::Submit {
        job_toml: job_toml(name),
        wait_placed: true,
    }
}

/// Whether a submission was answered with a placement.
fn is_placed(result: &ClientResult) -> bool {
    matches!(result, ClientResult::Submitted { placed: Some(p), .. } if !p.starts_with("pending"))
}

/// The synthetic inventory: one site, `nodes` × 8 H100, 32 nodes per leaf, 16 leaves per
/// spine.
pub fn inventory_toml(nodes: usize) -> String {
    assert!(nodes > 0 && nodes % NODES_ROUND == 0);
    format!(
        "# Generated by sovra-bench raft: {nodes} nodes x {GPUS_PER_NODE} H100.\n\
         version = 1\n\n[[site]]\nname = \"bench1\"\njurisdiction = \"AU\"\n\n\
         [[site.nodes]]\nnames = \"b[00001-{nodes:05}]\"\nnodes_per_leaf = {NODES_PER_LEAF}\n\
         leaves_per_spine = {LEAVES_PER_SPINE}\ncpus = 128\nmemory_gb = 2048\n\
         gpus = \"{GPUS_PER_NODE}xH100\"\nnics = \"8x400\"\n"
    )
}

/// Runs a short `sovrad` command (certs, init) to completion.
fn sovrad_ok(sovrad: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(sovrad)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", sovrad.display()))?;
    if !out.status.success() {
        bail!(
            "sovrad {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Three `sovrad` processes. Dropping it kills every one still running.
pub struct Replicas {
    sovrad: PathBuf,
    dir: PathBuf,
    addrs: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    starts: Vec<u32>,
    identity: Identity,
    ca: ClusterCa,
}

impl Replicas {
    /// Writes certificates, the inventory and three initialised data directories into `dir`
    /// (which must not exist), then starts the replicas.
    pub fn start(sovrad: &Path, dir: &Path, nodes: usize) -> anyhow::Result<Replicas> {
        ensure!(
            !dir.exists(),
            "{} exists; pass another --dir or remove it",
            dir.display()
        );
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let certs = dir.join("certs");
        let text = |p: &Path| p.to_str().map(str::to_string).context("non-UTF-8 path");
        sovrad_ok(
            sovrad,
            &[
                "certs",
                "--dir",
                &text(&certs)?,
                "--cluster",
                CLUSTER,
                "--nodes",
                "1,2,3",
                "--clients",
                "bench",
            ],
        )?;
        let inventory = dir.join("inventory.toml");
        fs::write(&inventory, inventory_toml(nodes))
            .with_context(|| format!("cannot write {}", inventory.display()))?;
        let addrs = sovrad::local::free_loopback_addrs(REPLICAS)
            .context("cannot find free UDP ports on 127.0.0.1")?;
        let peers: Vec<String> = (0..REPLICAS)
            .map(|i| format!("{}={}", i + 1, addrs[i]))
            .collect();
        let start = Instant::now();
        for i in 0..REPLICAS {
            let id = (i + 1).to_string();
            let data = text(&dir.join(format!("d{id}")))?;
            let inventory = text(&inventory)?;
            let mut args = vec![
                "init",
                "--id",
                &id,
                "--data",
                &data,
                "--inventory",
                &inventory,
                "--assume-nodes-up",
            ];
            for p in &peers {
                args.extend(["--peer", p.as_str()]);
            }
            sovrad_ok(sovrad, &args)?;
        }
        eprintln!(
            "sovra-bench: initialised {REPLICAS} replicas of {nodes} nodes in {:.2} s, store \
             {} KiB each",
            start.elapsed().as_secs_f64(),
            fs::metadata(dir.join("d1/raft.redb")).map_or(0, |m| m.len() / 1024)
        );
        let identity = Identity::load(&certs, "client-bench").map_err(|e| anyhow!("{e}"))?;
        let ca = tls::load_ca(&certs).map_err(|e| anyhow!("{e}"))?;
        let mut replicas = Replicas {
            sovrad: sovrad.to_path_buf(),
            dir: dir.to_path_buf(),
            addrs,
            children: (0..REPLICAS).map(|_| None).collect(),
            starts: vec![0; REPLICAS],
            identity,
            ca,
        };
        for i in 0..REPLICAS {
            replicas.spawn(i)?;
        }
        Ok(replicas)
    }

    /// Starts replica `i` (id `i + 1`), its output going to a log file per start.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        assert!(self.children[i].is_none(), "replica {} is running", i + 1);
        self.starts[i] += 1;
        let log_path = self
            .dir
            .join(format!("replica-{}.start-{}.log", i + 1, self.starts[i]));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(&self.sovrad)
            .arg("run")
            .args(["--id", &(i + 1).to_string()])
            .arg("--data")
            .arg(self.dir.join(format!("d{}", i + 1)))
            .arg("--certs")
            .arg(self.dir.join("certs"))
            .args(["--cluster", CLUSTER])
            .args(["--listen", &self.addrs[i].to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.sovrad.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// kill -9, and reap it (its store's file lock is free afterwards).
    fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = self.children[i].take().context("replica is not running")?;
        child.kill().context("SIGKILL")?;
        child.wait().context("reaping a killed replica")?;
        Ok(())
    }

    /// Fails if a replica that should run has exited (a crash would void the numbers).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (i, child) in self.children.iter_mut().enumerate() {
            if let Some(child) = child {
                if let Some(status) = child.try_wait().context("try_wait")? {
                    bail!(
                        "replica {} exited ({status}); see {}",
                        i + 1,
                        self.dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// A client of the replicas `which`.
    fn client(&self, which: &[usize]) -> ClusterClient {
        let addrs = which.iter().map(|&i| self.addrs[i]).collect();
        ClusterClient::new(addrs, self.identity.clone(), self.ca.clone())
    }

    fn all(&self) -> Vec<usize> {
        (0..REPLICAS).collect()
    }

    /// Waits until one of `candidates` says that it leads itself.
    async fn wait_leader(&self, candidates: &[usize], limit: Duration) -> anyhow::Result<usize> {
        let start = Instant::now();
        let mut clients: Vec<(usize, ClusterClient)> = candidates
            .iter()
            .map(|&i| {
                let mut c = self.client(&[i]);
                c.deadline = Duration::from_millis(200);
                c.attempt_timeout = Duration::from_millis(200);
                (i, c)
            })
            .collect();
        while start.elapsed() < limit {
            for (i, client) in &mut clients {
                if let Ok(ClientResult::Leader { id, .. }) = client.call(ClientOp::Leader).await {
                    if id == *i as u64 + 1 {
                        return Ok(*i);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bail!("no leader among replicas {candidates:?} within {limit:?}")
    }

    /// Waits until replica `i` names `leader` as its leader.
    async fn wait_following(&self, i: usize, leader: usize) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut client = self.client(&[i]);
        client.deadline = Duration::from_millis(200);
        client.attempt_timeout = Duration::from_millis(200);
        while start.elapsed() < REJOIN_WAIT {
            if let Ok(ClientResult::Leader { id, .. }) = client.call(ClientOp::Leader).await {
                if id == leader as u64 + 1 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "replica {} did not follow replica {} within {REJOIN_WAIT:?}",
            i + 1,
            leader + 1
        )
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for mut child in self.children.iter_mut().filter_map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one submitting client did.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    placed: u64,
    unplaced: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Submits one job at a time until `until`, or until `budget` reaches `limit` (shared by all
/// clients). Returns the client for the next phase.
async fn submitter(
    mut client: ClusterClient,
    name: String,
    until: Instant,
    budget: Arc<AtomicUsize>,
    limit: usize,
) -> (ClusterClient, Tally) {
    let mut tally = Tally::default();
    while Instant::now() < until && budget.fetch_add(1, Ordering::Relaxed) < limit {
        let id = client.request_id();
        let start = Instant::now();
        let result = client
            .call_with_id(id, submit_op(&format!("{name}-{}", id.seq)))
            .await;
        let took = start.elapsed();
        match result {
            Ok(r) if is_placed(&r) => {
                tally.placed += 1;
                tally.latencies_ns.push(took.as_nanos() as u64);
            }
            Ok(ClientResult::Submitted { .. }) => tally.unplaced += 1,
            other => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("{other:?}"));
            }
        }
    }
    (client, tally)
}

/// Runs every client for one phase; returns the clients, the merged tally and the time from
/// the start to the last answer.
async fn phase(
    clients: Vec<ClusterClient>,
    length: Duration,
    limit: usize,
) -> anyhow::Result<(Vec<ClusterClient>, Tally, Duration)> {
    let start = Instant::now();
    let until = start + length;
    let budget = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, client)| {
            tokio::spawn(submitter(
                client,
                format!("c{c}"),
                until,
                budget.clone(),
                limit,
            ))
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    let mut all = Tally::default();
    for task in tasks {
        let (client, tally) = task.await.context("a client task failed")?;
        clients.push(client);
        all.latencies_ns.extend(tally.latencies_ns);
        all.placed += tally.placed;
        all.unplaced += tally.unplaced;
        all.errors += tally.errors;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    Ok((clients, all, start.elapsed()))
}

/// The `submit` case.
pub async fn submit(cfg: &Config) -> anyhow::Result<SubmitResult> {
    let gpus = cfg.nodes * GPUS_PER_NODE;
    ensure!(
        cfg.jobs_max + WARMUP_JOBS_MAX <= gpus,
        "{} nodes have {gpus} GPUs, fewer than --jobs-max {} plus {WARMUP_JOBS_MAX} warm-up \
         jobs: every job must find a GPU",
        cfg.nodes,
        cfg.jobs_max
    );
    let mut replicas = Replicas::start(&cfg.sovrad, &cfg.dir.join("submit"), cfg.nodes)?;
    let leader = replicas.wait_leader(&replicas.all(), ELECTION_WAIT).await?;
    eprintln!("sovra-bench: replica {} leads", leader + 1);
    // Leader first, unless asked otherwise: a follower forwards every request to the leader
    // and relays the answer (one more hop each way), and the client never learns better.
    let followers = (0..REPLICAS).filter(|&i| i != leader);
    let order: Vec<usize> = if cfg.via_follower {
        followers.chain([leader]).collect()
    } else {
        [leader].into_iter().chain(followers).collect()
    };
    let clients: Vec<ClusterClient> = (0..cfg.clients).map(|_| replicas.client(&order)).collect();
    let (clients, warm, _) = phase(clients, cfg.warmup, WARMUP_JOBS_MAX).await?;
    eprintln!(
        "sovra-bench: warm-up placed {} jobs ({} failed)",
        warm.placed, warm.errors
    );
    let (_clients, mut tally, elapsed) = phase(clients, cfg.duration, cfg.jobs_max).await?;
    replicas.check_alive()?;
    let latency =
        (!tally.latencies_ns.is_empty()).then(|| stats::summarize(&mut tally.latencies_ns));
    Ok(SubmitResult {
        placed: tally.placed,
        unplaced: tally.unplaced,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed,
        latency,
    })
}

/// Every request a failover-case client made: (request id, job name, job id if answered).
type Requests = Vec<(RequestId, String, Option<u64>)>;

/// A background client of the failover case: submits until `stop`, retrying each request
/// (same id) through leader changes for up to [`BACKGROUND_DEADLINE`].
/// All background clients together submit at most `limit` jobs (`budget` counts them), so
/// that the probes always find a GPU.
async fn background(
    mut client: ClusterClient,
    name: String,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicUsize>,
    limit: usize,
) -> Requests {
    client.deadline = BACKGROUND_DEADLINE;
    let mut requests = Vec::new();
    while !stop.load(Ordering::Relaxed) && budget.fetch_add(1, Ordering::Relaxed) < limit {
        let id = client.request_id();
        let job_name = format!("{name}-{}", id.seq);
        let job = match client.call_with_id(id, submit_op(&job_name)).await {
            Ok(ClientResult::Submitted { job, .. }) => Some(job),
            _ => None,
        };
        requests.push((id, job_name, job));
        // A steady trickle, not a flood: the trials measure failover, not saturation.
        tokio::time::sleep(BACKGROUND_PAUSE).await;
    }
    requests
}

/// Submits `name` under `id` until a replica answers with its placement; returns when.
async fn probe(client: &mut ClusterClient, id: RequestId, name: &str) -> anyhow::Result<u64> {
    let start = Instant::now();
    client.deadline = PROBE_ATTEMPT;
    client.attempt_timeout = PROBE_ATTEMPT;
    let mut last = String::new();
    while start.elapsed() < FAILOVER_WAIT {
        match client.call_with_id(id, submit_op(name)).await {
            Ok(ClientResult::Submitted { job, placed }) => {
                let placed = placed.unwrap_or_default();
                ensure!(!placed.starts_with("pending"), "probe {name}: {placed}");
                return Ok(job);
            }
            other => last = format!("{other:?}"),
        }
    }
    bail!("no placement within {FAILOVER_WAIT:?} of the kill (last: {last})")
}

/// The `failover` case.
pub async fn failover(cfg: &Config) -> anyhow::Result<FailoverResult> {
    let mut replicas = Replicas::start(&cfg.sovrad, &cfg.dir.join("failover"), cfg.nodes)?;
    replicas.wait_leader(&replicas.all(), ELECTION_WAIT).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..cfg.background_clients)
        .map(|c| {
            let client = replicas.client(&replicas.all());
            let limit = cfg.nodes * GPUS_PER_NODE / 2;
            let name = format!("bg{c}");
            tokio::spawn(background(
                client,
                name,
                stop.clone(),
                budget.clone(),
                limit,
            ))
        })
        .collect();
    let mut probes: Requests = Vec::new();
    let mut failover_ns = Vec::new();
    let mut election_ns = Vec::new();
    let mut rejoin_ns = Vec::new();
    let mut probe_client = replicas.client(&replicas.all());
    let result: anyhow::Result<()> = async {
        for trial in 0..cfg.trials {
            let leader = replicas.wait_leader(&replicas.all(), ELECTION_WAIT).await?;
            let survivors: Vec<usize> = (0..REPLICAS).filter(|&i| i != leader).collect();
            let id = probe_client.request_id();
            let name = format!("probe-{trial}");
            replicas.kill9(leader)?;
            let killed = Instant::now();
            // The client's view (first placement) and, watched from the side, the election.
            let placed = async {
                let job = probe(&mut probe_client, id, &name).await;
                (job, killed.elapsed())
            };
            let elected = async {
                let leader = replicas.wait_leader(&survivors, FAILOVER_WAIT).await;
                (leader, killed.elapsed())
            };
            let ((job, placed_after), (new_leader, elected_after)) = tokio::join!(placed, elected);
            let job = job.with_context(|| format!("trial {trial}"))?;
            let new_leader = new_leader.with_context(|| format!("trial {trial}"))?;
            failover_ns.push(placed_after.as_nanos() as u64);
            election_ns.push(elected_after.as_nanos() as u64);
            probes.push((id, name, Some(job)));
            eprintln!(
                "sovra-bench: trial {trial}: killed replica {}, replica {} leads after {:.0} ms, \
                 first placement after {:.0} ms",
                leader + 1,
                new_leader + 1,
                elected_after.as_secs_f64() * 1e3,
                placed_after.as_secs_f64() * 1e3
            );
            let restarted = Instant::now();
            replicas.spawn(leader)?;
            replicas.wait_following(leader, new_leader).await?;
            rejoin_ns.push(restarted.elapsed().as_nanos() as u64);
            eprintln!(
                "sovra-bench: trial {trial}: replica {} follows again {:.0} ms after its \
                 restart",
                leader + 1,
                restarted.elapsed().as_secs_f64() * 1e3
            );
            tokio::time::sleep(REJOIN_SETTLE).await;
            replicas.check_alive()?;
        }
        Ok(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut requests = probes;
    for task in tasks {
        requests.extend(task.await.context("a background client failed")?);
    }
    result?;
    let (acked, retried_at_end, lost, duplicated, listed) =
        check_exactly_once(&replicas, requests).await?;
    Ok(FailoverResult {
        failover: stats::summarize(&mut failover_ns),
        election: stats::summarize(&mut election_ns),
        rejoin: stats::summarize(&mut rejoin_ns),
        acked,
        retried_at_end,
        lost,
        duplicated,
        listed,
    })
}

/// Retries unanswered requests (same id), then compares the job list with the answers.
/// Returns (acknowledged, retried at the end, lost, duplicated, listed).
async fn check_exactly_once(
    replicas: &Replicas,
    mut requests: Requests,
) -> anyhow::Result<(usize, usize, usize, usize, usize)> {
    replicas.wait_leader(&replicas.all(), ELECTION_WAIT).await?;
    let mut client = replicas.client(&replicas.all());
    let mut retried_at_end = 0;
    for (id, name, job) in &mut requests {
        if job.is_none() {
            retried_at_end += 1;
            match client.call_with_id(*id, submit_op(name)).await {
                Ok(ClientResult::Submitted { job: j, .. }) => *job = Some(j),
                other => bail!("retrying {name} after the trials: {other:?}"),
            }
        }
    }
    // A retry of an answered request must find the same job: check the probes.
    for (id, name, job) in requests.iter().filter(|r| r.1.starts_with("probe-")) {
        match client.call_with_id(*id, submit_op(name)).await {
            Ok(ClientResult::Submitted { job: j, .. }) if Some(j) == *job => {}
            other => bail!("retrying {name} (job {job:?}) gave {other:?}"),
        }
    }
    let text = match client.call(ClientOp::Jobs).await {
        Ok(ClientResult::Jobs { text }) => text,
        other => bail!("listing jobs: {other:?}"),
    };
    let mut listed: BTreeMap<u64, String> = BTreeMap::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split(' ');
        let id: u64 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("bad job line {line:?}"))?;
        let name = fields.next().unwrap_or_default().to_string();
        *by_name.entry(name.clone()).or_default() += 1;
        listed.insert(id, name);
    }
    let lost = requests
        .iter()
        .filter(|(_, name, job)| job.and_then(|j| listed.get(&j)) != Some(name))
        .count();
    let twice: usize = by_name.values().map(|&n| n.saturating_sub(1)).sum();
    let extra = listed.len().saturating_sub(requests.len());
    Ok((
        requests.len(),
        retried_at_end,
        lost,
        twice.max(extra),
        listed.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_loads() {
        let text = inventory_toml(NODES_ROUND);
        let topology = sovra_fabric::inventory::load_inventory(&text).expect("valid inventory");
        assert_eq!(topology.gpu_count(), NODES_ROUND * GPUS_PER_NODE);
    }
}
