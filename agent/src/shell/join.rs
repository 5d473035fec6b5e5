//! The networked agent: joins the cluster over mutual-TLS QUIC and keeps the local runner in
//! step with the node's assignments.
//!
//! One event loop. It registers the node, then long-polls the leader for the node's
//! assignments (each poll is also the heartbeat that keeps the node's lease), starts the
//! tasks that are new, cancels the tasks that left the list, and reports starts and ends.
//! Reconciliation is level-triggered: every answer is the whole list, so a lost message or a
//! scheduler failover costs one poll, never a stray or a missing task. Stopping the agent
//! leaves its tasks running; the next agent adopts them (see [`super::runner`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sovra_fabric::Take;
use sovrad::client::ClusterClient;
use sovrad::tls::{self, Identity};
use sovrad::wire::{self, ClientOp, ClientResult, JobEnd};
use tokio::task::JoinHandle;

use crate::core::task::{Assignment, Command, Member, Outcome, Report, Status, TaskId};
use crate::shell::runner::Runner;

/// How often the runner is polled while a task is starting.
const STARTING_POLL: Duration = Duration::from_millis(2);

/// How the agent reaches the cluster.
#[derive(Clone, Debug)]
pub struct JoinConfig {
    /// Replica addresses (any of them; the leader is found).
    pub servers: Vec<SocketAddr>,
    /// Certificates directory: `ca.pem` and `agent-<node>.pem/.key`.
    pub certs: PathBuf,
    /// This node's name in the inventory.
    pub node: String,
    /// How long one long poll may wait for a change (well under the lease).
    pub wait: Duration,
    /// Where to answer other agents' latency probes, and probe them from; `None`: no probing.
    pub probe_listen: Option<SocketAddr>,
    /// How often to measure the RTT to each other site.
    pub probe_interval: Duration,
}

/// Pings per peer and round.
const PROBE_PINGS: u32 = 5;
/// Longest wait for one echo.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// A probe datagram: magic, sequence number, padding.
const PROBE_MAGIC: &[u8; 4] = b"SVPR";

/// Answers probes: echoes every datagram that starts with [`PROBE_MAGIC`].
async fn probe_responder(socket: tokio::net::UdpSocket) {
    let mut buf = [0u8; 64];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) if n >= 8 && &buf[..4] == PROBE_MAGIC => {
                let _ = socket.send_to(&buf[..n], from).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("probe responder: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The median RTT to `peer` over [`PROBE_PINGS`] sequential pings, in ns; 0 when none came
/// back. Bounded: at most `PROBE_PINGS` datagrams and `PROBE_PINGS x PROBE_TIMEOUT`.
async fn probe_peer(socket: &tokio::net::UdpSocket, peer: SocketAddr, seq: &mut u32) -> u64 {
    let mut samples = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..PROBE_PINGS {
        *seq = seq.wrapping_add(1);
        let mut ping = [0u8; 16];
        ping[..4].copy_from_slice(PROBE_MAGIC);
        ping[4..8].copy_from_slice(&seq.to_le_bytes());
        let sent = std::time::Instant::now();
        if socket.send_to(&ping, peer).await.is_err() {
            continue;
        }
        let wait = tokio::time::timeout(PROBE_TIMEOUT, async {
            loop {
                match socket.recv_from(&mut buf).await {
                    // Only this ping's echo counts; late echoes of earlier ones are dropped.
                    Ok((n, from)) if from == peer && n >= 8 && buf[4..8] == ping[4..8] => {
                        return true
                    }
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        });
        if let Ok(true) = wait.await {
            samples.push(sent.elapsed().as_nanos().max(1) as u64);
        }
    }
    sovra_scheduler::core::probe::median_ns(&mut samples)
}

/// Probes the other sites every `interval`, reporting each round's medians to the leader,
/// which answers with whom to probe next. Runs until the agent stops.
async fn probe_loop(cfg: JoinConfig, listen: SocketAddr) {
    let mut rtts: Vec<(String, u64)> = Vec::new();
    let mut seq = 0u32;
    let socket = match tokio::net::UdpSocket::bind((listen.ip(), 0)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot bind a probe socket on {}: {e}", listen.ip());
            return;
        }
    };
    let Ok(mut c) = client(&cfg) else { return };
    loop {
        let op = ClientOp::AgentProbe {
            node: cfg.node.clone(),
            listen: listen.to_string(),
            rtts: std::mem::take(&mut rtts),
        };
        let peers = match c.call(op).await {
            Ok(ClientResult::ProbePeers { peers }) => peers,
            Ok(other) => {
                tracing::debug!("probe report: {other:?}");
                Vec::new()
            }
            Err(e) => {
                tracing::debug!("probe report: {e}");
                Vec::new()
            }
        };
        for (site, addr) in peers {
            let Ok(peer) = addr.parse::<SocketAddr>() else {
                continue;
            };
            let rtt = probe_peer(&socket, peer, &mut seq).await;
            rtts.push((site, rtt));
        }
        tokio::time::sleep(cfg.probe_interval).await;
    }
}

/// What the agent tells the scheduler for a runner report: `None` when the scheduler needs
/// nothing (it cancelled the task, or it enforces the time limit itself).
fn report_op(node: &str, report: &Report) -> Option<ClientOp> {
    let job = report.task.job.0;
    let attempt = report.task.attempt;
    let node = node.to_string();
    match &report.status {
        Status::Running { .. } => Some(ClientOp::JobStarted { node, job, attempt }),
        Status::Finished(f) => {
            let how = match &f.outcome {
                Outcome::Completed => JobEnd::Exited(0),
                Outcome::Failed(exit) => JobEnd::Exited(exit.shell_code()),
                Outcome::OutOfMemory => JobEnd::OutOfMemory,
                // The shell's "command not found".
                Outcome::LaunchFailed(_) => JobEnd::Exited(127),
                // Lost while the agent was down: report it failed, as SIGKILL would.
                Outcome::NodeFail(_) => JobEnd::Exited(128 + 9),
                Outcome::Cancelled | Outcome::TimeLimit => return None,
            };
            Some(ClientOp::JobEnded {
                node,
                job,
                attempt,
                how,
            })
        }
    }
}

/// The tasks of `jobs` that run on `node`, as runner assignments with the job's attempt.
fn desired(node: &str, jobs: &[wire::Assignment]) -> Vec<(Assignment, u32)> {
    let mut out = Vec::new();
    for a in jobs {
        let members: Vec<Member> = a
            .members
            .iter()
            .map(|(name, gpus)| Member {
                node: name.clone(),
                take: Take {
                    cpu_milli: a.cpu_milli,
                    memory_mib: a.memory_mib,
                    gpus: *gpus,
                },
                topology_addr: None,
            })
            .collect();
        for (rank, (name, _)) in a.members.iter().enumerate() {
            if name != node {
                continue;
            }
            out.push((
                Assignment {
                    task: TaskId::new(a.job, rank as u32).with_attempt(a.attempt),
                    name: a.name.clone(),
                    tenant: a.tenant.clone(),
                    time_limit_ms: a.time_limit_ms,
                    members: members.clone(),
                    command: Command {
                        argv: a.argv.clone(),
                        env: a.env.clone(),
                        cwd: (!a.workdir.is_empty()).then(|| a.workdir.clone()),
                    },
                    tenant_net: (a.tenant_net > 0).then_some(a.tenant_net),
                },
                a.attempt,
            ));
        }
    }
    out
}

/// Which attempt of each task this agent has run to its end, so that a list computed before
/// the scheduler applied the end (level-triggered lists can lag a report) never starts the
/// same attempt again once the runner has forgotten it. A requeued job is a new attempt.
#[derive(Default)]
struct Ran {
    /// The attempt of each task as last assigned.
    assigned: BTreeMap<TaskId, u32>,
    /// The attempt each task finished.
    finished: BTreeMap<TaskId, u32>,
}

impl Ran {
    /// The assignments to hand to the runner: all but attempts that already ended here.
    fn fresh(&mut self, want: Vec<(Assignment, u32)>) -> Vec<Assignment> {
        let mut out = Vec::new();
        for (assignment, attempt) in want {
            if self.finished.get(&assignment.task) == Some(&attempt) {
                continue; // Ended here; the scheduler has not applied it yet.
            }
            self.assigned.insert(assignment.task, attempt);
            out.push(assignment);
        }
        out
    }

    fn finished(&mut self, task: TaskId) {
        let attempt = self.assigned.get(&task).copied().unwrap_or(0);
        self.finished.insert(task, attempt);
    }
}

/// Brings the runner to the assignments: starts new tasks, cancels those no longer assigned.
fn reconcile(runner: &mut Runner, ran: &mut Ran, node: &str, jobs: &[wire::Assignment]) {
    let want = desired(node, jobs);
    let wanted: BTreeSet<TaskId> = want.iter().map(|(a, _)| a.task).collect();
    for assignment in ran.fresh(want) {
        let task = assignment.task;
        if let crate::core::lifecycle::Assigned::Rejected(why) = runner.assign(assignment) {
            tracing::warn!(%task, "assignment refused: {why}");
        }
    }
    for info in runner.tasks() {
        if info.finished.is_none() && !wanted.contains(&info.task) {
            runner.cancel(info.task);
        }
    }
    // Tasks the scheduler no longer lists need no memory.
    ran.finished.retain(|t, _| wanted.contains(t));
    ran.assigned.retain(|t, _| wanted.contains(t));
}

fn client(cfg: &JoinConfig) -> anyhow::Result<ClusterClient> {
    let name = format!("agent-{}", cfg.node);
    let identity = Identity::load(&cfg.certs, &name)
        .with_context(|| format!("loading {}/{name}.pem", cfg.certs.display()))?;
    let ca = tls::load_ca(&cfg.certs)?;
    let mut client = ClusterClient::new(cfg.servers.clone(), identity, ca);
    // A long poll must not time out before the leader answers it.
    client.attempt_timeout = cfg.wait + Duration::from_secs(3);
    client.deadline = cfg.wait + Duration::from_secs(10);
    Ok(client)
}

async fn register(
    client: &mut ClusterClient,
    node: &str,
    (gpus, nics): &(Vec<String>, Vec<(String, u32)>),
) -> anyhow::Result<()> {
    let op = ClientOp::AgentRegister {
        node: node.into(),
        gpus: gpus.clone(),
        nics: nics.clone(),
    };
    match client.call(op).await {
        Ok(ClientResult::Ok) => Ok(()),
        Ok(ClientResult::Error { message, .. }) => anyhow::bail!("registering {node}: {message}"),
        Ok(other) => anyhow::bail!("registering {node}: unexpected answer {other:?}"),
        Err(e) => anyhow::bail!("registering {node}: {e}"),
    }
}

type Sync = JoinHandle<(ClusterClient, anyhow::Result<ClientResult>)>;
type Sent = JoinHandle<(ClusterClient, Report, anyhow::Result<ClientResult>)>;

fn spawn_sync(mut client: ClusterClient, node: String, known: u64, wait: Duration) -> Sync {
    tokio::spawn(async move {
        let op = ClientOp::AgentSync {
            node,
            known,
            wait_ms: wait.as_millis().min(u128::from(wire::AGENT_WAIT_MS_MAX)) as u32,
        };
        let result = client.call(op).await.map_err(anyhow::Error::from);
        (client, result)
    })
}

fn spawn_report(mut client: ClusterClient, op: ClientOp, report: Report) -> Sent {
    tokio::spawn(async move {
        let result = client.call(op).await.map_err(anyhow::Error::from);
        (client, report, result)
    })
}

/// Reads `max` bytes at `offset` of a task's output file: the bytes and whether the file
/// ends there.
fn read_output(path: &std::path::Path, offset: u64, max: u32) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = offset.min(len);
    file.seek(SeekFrom::Start(start))?;
    let mut data = Vec::new();
    file.take(u64::from(max)).read_to_end(&mut data)?;
    let eof = start + data.len() as u64 >= len;
    Ok((data, eof))
}

/// Answers one of the leader's output requests on its own connection (a read must not wait
/// behind reports, nor hold up the poll loop).
fn spawn_log_answer(cfg: &JoinConfig, path: std::path::PathBuf, request: wire::LogRequest) {
    let node = cfg.node.clone();
    let Ok(mut client) = client(cfg) else { return };
    tokio::spawn(async move {
        let (data, eof, error) = match read_output(&path, request.offset, request.max) {
            Ok((data, eof)) => (data, eof, None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Vec::new(),
                true,
                Some(format!(
                    "no output of job {} rank {} on node {node}",
                    request.job, request.rank
                )),
            ),
            Err(e) => (Vec::new(), true, Some(format!("{}: {e}", path.display()))),
        };
        let op = ClientOp::LogData {
            node,
            token: request.token,
            offset: request.offset,
            data,
            eof,
            error,
        };
        if let Err(e) = client.call(op).await {
            tracing::warn!("sending output: {e}");
        }
    });
}

/// Reports problems on its own connection; the leader drains the node.
fn spawn_health_report(cfg: &JoinConfig, problems: Vec<String>) {
    let node = cfg.node.clone();
    let Ok(mut client) = client(cfg) else { return };
    tokio::spawn(async move {
        eprintln!(
            "sovra-agent: node {node} unhealthy: {}",
            problems.join("; ")
        );
        if let Err(e) = client.call(ClientOp::AgentHealth { node, problems }).await {
            tracing::warn!("reporting health: {e}");
        }
    });
}

/// Aborts its tasks when dropped (the probing stops with the agent).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs the agent until `stop` completes. Tasks keep running after it returns.
pub async fn serve(
    cfg: JoinConfig,
    mut runner: Runner,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let gpus: Vec<String> = runner
        .inventory()
        .gpus
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let nics: Vec<(String, u32)> = runner
        .inventory()
        .nics
        .iter()
        .map(|n| (n.name.clone(), n.gbit_per_s))
        .collect();
    let gpus = (gpus, nics);
    let mut sync_client = client(&cfg)?;
    let report_client = client(&cfg)?;
    // Latency probing: answer other agents' probes and probe the other sites.
    let _probing = match cfg.probe_listen {
        Some(listen) => {
            let socket = tokio::net::UdpSocket::bind(listen)
                .await
                .with_context(|| format!("cannot listen for probes on {listen}"))?;
            let bound = socket.local_addr()?;
            let responder = tokio::spawn(probe_responder(socket));
            let prober = tokio::spawn(probe_loop(cfg.clone(), bound));
            Some(AbortOnDrop(vec![responder, prober]))
        }
        None => None,
    };
    // The first registration must succeed: a wrong certificate or an unknown node is a
    // configuration error, said once, not retried forever.
    register(&mut sync_client, &cfg.node, &gpus).await?;
    eprintln!(
        "sovra-agent: node {} joined ({} GPUs{})",
        cfg.node,
        runner.inventory().gpus.len(),
        if runner.inventory().simulated {
            ", SIMULATED"
        } else {
            ""
        }
    );
    let mut known = 0;
    let mut ran = Ran::default();
    // Real GPUs: follow XIDs, ECC and temperature, report problems (the leader drains).
    let health = if runner.inventory().simulated || runner.inventory().gpus.is_empty() {
        None
    } else {
        match crate::shell::nvml::HealthWatcher::start() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("no GPU health events: {e}");
                None
            }
        }
    };
    let mut health_tracker = crate::core::inventory::HealthTracker::default();
    let mut health_checked = std::time::Instant::now();
    let mut sync: Option<Sync> = Some(spawn_sync(sync_client, cfg.node.clone(), 0, cfg.wait));
    let mut idle_report_client = Some(report_client);
    let mut sent: Option<Sent> = None;
    let mut pending: Vec<Report> = runner.unacked_reports();
    let mut delay = runner.poll_delay();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            joined = async { sync.as_mut().expect("guarded").await }, if sync.is_some() => {
                let (mut c, result) = joined.context("sync task")?;
                match result {
                    Ok(ClientResult::Assignments { version, in_service, jobs, log_requests }) => {
                        for request in log_requests {
                            // The latest attempt: the one assigned now, else the last run.
                            let attempt = jobs
                                .iter()
                                .find(|a| a.job == request.job)
                                .map(|a| a.attempt)
                                .or_else(|| {
                                    runner
                                        .tasks()
                                        .iter()
                                        .filter(|t| {
                                            t.task.job.0 == request.job
                                                && t.task.rank == request.rank
                                        })
                                        .map(|t| t.task.attempt)
                                        .max()
                                })
                                .unwrap_or(0);
                            let task =
                                TaskId::new(request.job, request.rank).with_attempt(attempt);
                            let (out, err) = runner.log_paths(task);
                            let path = if request.stderr { err } else { out };
                            spawn_log_answer(&cfg, path, request);
                        }
                        reconcile(&mut runner, &mut ran, &cfg.node, &jobs);
                        known = version;
                        if !in_service {
                            // Failed while it was cut off (or never up): come back.
                            if let Err(e) = register(&mut c, &cfg.node, &gpus).await {
                                tracing::warn!("{e:#}");
                            }
                        }
                    }
                    Ok(other) => tracing::warn!("sync: unexpected answer {other:?}"),
                    Err(e) => {
                        tracing::warn!("sync: {e:#}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                sync = Some(spawn_sync(c, cfg.node.clone(), known, cfg.wait));
            }
            done = async { sent.as_mut().expect("guarded").await }, if sent.is_some() => {
                sent = None;
                let (c, report, result) = done.context("report task")?;
                idle_report_client = Some(c);
                match result {
                    // Refusals are final too (an unknown or already finished job): there is
                    // nothing to retry.
                    Ok(ClientResult::Ok | ClientResult::Error { .. }) => {
                        runner.report_acked(report.task);
                    }
                    Ok(other) => {
                        tracing::warn!("report: unexpected answer {other:?}");
                        pending.push(report);
                    }
                    Err(e) => {
                        tracing::warn!("report of {}: {e:#}", report.task);
                        pending.push(report);
                    }
                }
            }
            () = tokio::time::sleep(delay) => {}
        }
        runner.poll();
        if let Some(w) = &health {
            if health_checked.elapsed() >= Duration::from_secs(1) {
                health_checked = std::time::Instant::now();
                let problems = health_tracker.problems(&w.samples());
                if !problems.is_empty() {
                    spawn_health_report(&cfg, problems);
                }
            }
        }
        // A task being started is checked often, so its start is reported at once; otherwise
        // the runner says when it next needs a look.
        let starting = runner
            .tasks()
            .iter()
            .any(|t| t.phase == crate::core::lifecycle::Phase::Preparing);
        delay = if starting {
            STARTING_POLL
        } else {
            runner.poll_delay()
        };
        while let Some(report) = runner.poll_report() {
            if matches!(report.status, Status::Finished(_)) {
                ran.finished(report.task);
            }
            pending.push(report);
        }
        if sent.is_none() {
            while let Some(report) = (!pending.is_empty()).then(|| pending.remove(0)) {
                match report_op(&cfg.node, &report) {
                    None => {
                        runner.report_acked(report.task);
                    }
                    Some(op) => {
                        let c = idle_report_client.take().expect("no report in flight");
                        sent = Some(spawn_report(c, op, report));
                        break;
                    }
                }
            }
        }
    }
    if let Some(task) = sync {
        task.abort();
    }
    if let Some(task) = sent {
        task.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(job: u64, attempt: u32) -> wire::Assignment {
        wire::Assignment {
            job,
            name: "j".into(),
            tenant: "t".into(),
            running: true,
            attempt,
            cpu_milli: 1000,
            memory_mib: 1024,
            time_limit_ms: None,
            argv: vec!["true".into()],
            env: Vec::new(),
            workdir: String::new(),
            members: vec![
                ("a".into(), sovra_fabric::GpuTake::None),
                ("b".into(), sovra_fabric::GpuTake::None),
                ("a".into(), sovra_fabric::GpuTake::None),
            ],
            tenant_net: 1,
        }
    }

    #[test]
    fn only_this_nodes_ranks_are_desired() {
        let want = desired("a", &[listed(7, 0)]);
        let tasks: Vec<TaskId> = want.iter().map(|(a, _)| a.task).collect();
        assert_eq!(tasks, [TaskId::new(7, 0), TaskId::new(7, 2)]);
        assert_eq!(want[0].0.members.len(), 3);
    }

    /// A list that lags the end report must not start the same attempt again; a requeue
    /// (next attempt) must.
    #[test]
    fn an_ended_attempt_is_never_started_again() {
        let mut ran = Ran::default();
        let first = ran.fresh(desired("b", &[listed(7, 0)]));
        assert_eq!(first.len(), 1);
        ran.finished(TaskId::new(7, 1));
        assert!(ran.fresh(desired("b", &[listed(7, 0)])).is_empty());
        let again = ran.fresh(desired("b", &[listed(7, 1)]));
        assert_eq!(again.len(), 1, "a requeued job runs again");
    }
}
