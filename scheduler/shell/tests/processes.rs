//! Multi-process tests of the real `sovrad` binary (house style 19): three replicas run as
//! separate processes on loopback, and a supervisor here kills (`SIGKILL`), stops and resumes
//! (`SIGSTOP`/`SIGCONT`, a partition that no message crosses), restarts (`SIGTERM`) and
//! corrupts them. The client side runs in-process: [`ClusterClient`], the code the `sovra`
//! CLI uses.
//!
//! Why these tests live in the `sovrad` package and not in the workspace's `tests/` package:
//! cargo sets `CARGO_BIN_EXE_<name>`, and builds the binary before the tests run, only for
//! binaries of the package under test. From `tests/`, the binary would have to be looked up
//! under the target directory, where it may be stale or missing (`cargo test -p sovra-tests`
//! does not build it). Here `cargo test -p sovrad` always tests the binary it just built.
//!
//! Every test gets its own temporary directory (certificates, data directories, one log per
//! replica start) and free UDP ports on 127.0.0.1 (bound on port 0 and released just before
//! the replicas start). [`Cluster`] kills every child it started when dropped, also when a
//! test panics, and then prints the replicas' logs. Every wait is bounded.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sovrad::client::{ClusterClient, ClusterError};
use sovrad::tls::{self, Identity};
use sovrad::wire::{self, ClientOp, ClientResult, RequestId};

const SOVRAD: &str = env!("CARGO_BIN_EXE_sovrad");
const INVENTORY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/inventory/small.toml"
);
const CLUSTER: &str = "ptest";
const REPLICAS: usize = 3;
/// Agents' heartbeat lease (short, so a test sees a silent agent's node fail).
const AGENT_LEASE: Duration = Duration::from_millis(1500);

/// How long a replica group may take to elect a leader (debug binaries, a loaded machine).
const ELECTION_WAIT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after `SIGTERM` (a leader hands over first, ~1 s).
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// Client deadline for a call that must not succeed (a partitioned minority).
const MINORITY_DEADLINE: Duration = Duration::from_secs(2);

/// A single-GPU batch job in Australia (syd1 in `small.toml`), named so that it can be found
/// in the job list.
fn job_toml(name: &str) -> String {
    format!(
        "name = \"{name}\"\ntenant = \"acme\"\njurisdictions = [\"AU\"]\ncpus = 1\n\
         memory_gb = 1\n\n[batch]\ngpus = 1\n"
    )
}

fn submit_op(name: &str) -> ClientOp {
    ClientOp::Submit {
        job_toml: job_toml(name),
        wait_placed: true,
    }
}

/// Runs `sovrad` to completion (certs, init), bounded in time; panics with its stderr on
/// failure.
fn sovrad_ok(args: &[&str]) {
    let out = Command::new(SOVRAD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sovrad starts");
    assert!(
        out.status.success(),
        "sovrad {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a signal with kill(1), to keep `unsafe` and a libc dependency out of the tests.
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -s {name} {} failed", child.id());
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// One job as rendered by `Jobs`: `id name tenant state detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JobLine {
    name: String,
    state: String,
    detail: String,
}

fn parse_jobs(text: &str) -> BTreeMap<u64, JobLine> {
    let mut jobs = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.splitn(5, ' ');
        let id: u64 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("bad job line {line:?}"));
        let name = fields.next().unwrap_or_default().to_string();
        let _tenant = fields.next();
        let state = fields.next().unwrap_or_default().to_string();
        let detail = fields.next().unwrap_or_default().to_string();
        let old = jobs.insert(
            id,
            JobLine {
                name,
                state,
                detail,
            },
        );
        assert!(old.is_none(), "job {id} listed twice");
    }
    jobs
}

/// Three `sovrad` processes on loopback and an async runtime for in-process clients.
struct Cluster {
    dir: tempfile::TempDir,
    addrs: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    /// Starts per replica, to name each start's log file.
    starts: Vec<u32>,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// Creates certificates, initialises three data directories and starts the replicas.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let addrs = sovrad::local::free_loopback_addrs(REPLICAS).expect("free UDP ports");
        let mut cluster = Cluster {
            dir,
            addrs,
            children: (0..REPLICAS).map(|_| None).collect(),
            starts: vec![0; REPLICAS],
            runtime,
        };
        let certs = cluster.certs_dir();
        let certs = certs.to_str().expect("utf-8 path");
        sovrad_ok(&[
            "certs",
            "--dir",
            certs,
            "--cluster",
            CLUSTER,
            "--nodes",
            "1,2,3",
            "--clients",
            "admin",
            "--agents",
            "syd1-n1,syd1-n2,syd1-n3,syd1-n4",
        ]);
        let peers: Vec<String> = (0..REPLICAS)
            .map(|i| format!("{}={}", i + 1, cluster.addrs[i]))
            .collect();
        for i in 0..REPLICAS {
            let data = cluster.data_dir(i);
            let id = (i + 1).to_string();
            let mut args = vec![
                "init",
                "--id",
                &id,
                "--data",
                data.to_str().expect("utf-8 path"),
                "--inventory",
                INVENTORY,
                "--assume-nodes-up",
            ];
            for p in &peers {
                args.extend(["--peer", p]);
            }
            sovrad_ok(&args);
        }
        for i in 0..REPLICAS {
            cluster.spawn(i);
        }
        cluster
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("d{}", i + 1))
    }

    fn log_path(&self, i: usize, start: u32) -> PathBuf {
        self.dir
            .path()
            .join(format!("replica-{}.start-{start}.log", i + 1))
    }

    /// Starts replica `i` (id `i + 1`); its stdout and stderr go to a fresh log file.
    fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "replica {} is running", i + 1);
        self.starts[i] += 1;
        let log = File::create(self.log_path(i, self.starts[i])).expect("log file");
        let child = Command::new(SOVRAD)
            .arg("run")
            .args(["--id", &(i + 1).to_string()])
            .arg("--data")
            .arg(self.data_dir(i))
            .arg("--certs")
            .arg(self.certs_dir())
            .args(["--cluster", CLUSTER])
            .args(["--listen", &self.addrs[i].to_string()])
            .args(["--agent-lease-ms", &AGENT_LEASE.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("sovrad run starts");
        self.children[i] = Some(child);
    }

    fn child(&self, i: usize) -> &Child {
        self.children[i].as_ref().expect("replica is running")
    }

    /// `kill -9`: the replica gets no chance to hand over or flush anything.
    fn kill9(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("replica is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// `SIGTERM`, then waits for a clean exit (status 0).
    fn stop(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("replica is running");
        signal(&child, "TERM");
        let status = wait_exit(&mut child, EXIT_WAIT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "replica {} did not exit cleanly within {EXIT_WAIT:?} of SIGTERM",
            i + 1
        );
    }

    fn identity(&self) -> (Identity, tls::ClusterCa) {
        let certs = self.certs_dir();
        let identity = Identity::load(&certs, "client-admin").expect("client identity");
        let ca = tls::load_ca(&certs).expect("cluster CA");
        (identity, ca)
    }

    /// A client of the replicas `which` (indexes).
    fn client_of(&self, which: &[usize]) -> ClusterClient {
        let (identity, ca) = self.identity();
        let addrs = which.iter().map(|&i| self.addrs[i]).collect();
        ClusterClient::new(addrs, identity, ca)
    }

    /// A client of every replica.
    fn client(&self) -> ClusterClient {
        self.client_of(&[0, 1, 2])
    }

    fn call(&self, client: &mut ClusterClient, op: ClientOp) -> Result<ClientResult, String> {
        self.runtime
            .block_on(client.call(op))
            .map_err(|e| e.to_string())
    }

    fn call_with_id(
        &self,
        client: &mut ClusterClient,
        id: RequestId,
        op: ClientOp,
    ) -> Result<ClientResult, String> {
        self.runtime
            .block_on(client.call_with_id(id, op))
            .map_err(|e| e.to_string())
    }

    /// Waits until one of `candidates` says that it leads itself; returns its index.
    fn wait_leader(&self, candidates: &[usize]) -> usize {
        let start = Instant::now();
        let mut clients: Vec<(usize, ClusterClient)> = candidates
            .iter()
            .map(|&i| {
                let mut c = self.client_of(&[i]);
                c.deadline = Duration::from_millis(300);
                c.attempt_timeout = Duration::from_millis(300);
                (i, c)
            })
            .collect();
        while start.elapsed() < ELECTION_WAIT {
            for (i, client) in &mut clients {
                if let Ok(ClientResult::Leader { id, .. }) = self.call(client, ClientOp::Leader) {
                    if id == *i as u64 + 1 {
                        return *i;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no leader among replicas {candidates:?} within {ELECTION_WAIT:?}");
    }

    /// Submits a job named `name` under request id `id`; asserts that it was placed and
    /// returns its id.
    fn submit_placed(&self, client: &mut ClusterClient, id: RequestId, name: &str) -> u64 {
        match self.call_with_id(client, id, submit_op(name)) {
            Ok(ClientResult::Submitted {
                job,
                placed: Some(placed),
            }) if !placed.starts_with("pending") => job,
            other => panic!("submitting {name}: {other:?}"),
        }
    }

    /// The job list (a linearizable read through the leader).
    fn jobs(&self, client: &mut ClusterClient) -> BTreeMap<u64, JobLine> {
        match self.call(client, ClientOp::Jobs) {
            Ok(ClientResult::Jobs { text }) => parse_jobs(&text),
            other => panic!("listing jobs: {other:?}"),
        }
    }

    fn log_text(&self, i: usize, start: u32) -> String {
        fs::read_to_string(self.log_path(i, start)).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL also ends stopped (SIGSTOP) processes.
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for i in 0..REPLICAS {
                for start in 1..=self.starts[i] {
                    eprintln!(
                        "--- replica {} start {start} ---\n{}",
                        i + 1,
                        self.log_text(i, start)
                    );
                }
            }
        }
    }
}

/// Names of all jobs, with how many jobs carry each.
fn name_counts(jobs: &BTreeMap<u64, JobLine>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in jobs.values() {
        *counts.entry(line.name.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn three_replicas_elect_a_leader_and_place_jobs() {
    let cluster = Cluster::start();
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    match cluster.call(&mut client, ClientOp::Leader) {
        Ok(ClientResult::Leader { id, addr }) => {
            assert_eq!(id, leader as u64 + 1);
            assert_eq!(addr, cluster.addrs[leader].to_string());
        }
        other => panic!("leader: {other:?}"),
    }
    let mut placed = BTreeMap::new();
    for k in 0..4 {
        let name = format!("place-{k}");
        let id = client.request_id();
        let job = cluster.submit_placed(&mut client, id, &name);
        placed.insert(job, name);
    }
    assert_eq!(placed.len(), 4, "four distinct job ids: {placed:?}");
    let jobs = cluster.jobs(&mut client);
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    let mut gpus = Vec::new();
    for (job, name) in &placed {
        let line = &jobs[job];
        assert_eq!(&line.name, name);
        assert_eq!(line.state, "CF", "placed, waiting for its agent: {line:?}");
        // One GPU on one syd1 node, e.g. `syd1-n6{1}`.
        assert!(
            line.detail.starts_with("syd1-n") && line.detail.ends_with('}'),
            "{line:?}"
        );
        assert!(
            !line.detail.contains(' ') && !line.detail.contains(','),
            "{line:?}"
        );
        gpus.push(line.detail.clone());
        match cluster.call(&mut client, ClientOp::Status { job: *job }) {
            Ok(ClientResult::Job { text }) => {
                assert_eq!(text, format!("{job} {name} acme CF {}", line.detail));
            }
            other => panic!("status of job {job}: {other:?}"),
        }
    }
    gpus.sort();
    gpus.dedup();
    assert_eq!(gpus.len(), 4, "no GPU is given twice: {gpus:?}");
}

#[test]
fn leader_kill9_loses_and_duplicates_nothing() {
    let mut cluster = Cluster::start();
    let old_leader = cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    // (request id, name, job id) of every acknowledged submission.
    let mut acked: Vec<(RequestId, String, u64)> = Vec::new();
    for k in 0..4 {
        let name = format!("before-{k}");
        let id = client.request_id();
        acked.push((
            id,
            name.clone(),
            cluster.submit_placed(&mut client, id, &name),
        ));
    }

    // A second client keeps submitting while the leader dies: some of its requests are in
    // flight at the kill, and the client retries them (same request id) on the new leader.
    let mut background = cluster.client();
    let task = cluster.runtime.spawn(async move {
        let mut done = Vec::new();
        for k in 0..16 {
            let name = format!("during-{k}");
            let id = background.request_id();
            let result = background.call_with_id(id, submit_op(&name)).await;
            done.push((id, name, result));
        }
        done
    });
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill9(old_leader);
    let survivors: Vec<usize> = (0..REPLICAS).filter(|&i| i != old_leader).collect();
    let new_leader = cluster.wait_leader(&survivors);
    assert_ne!(new_leader, old_leader);

    let during = cluster
        .runtime
        .block_on(task)
        .expect("background submitter");
    for (id, name, result) in during {
        match result {
            Ok(ClientResult::Submitted {
                job,
                placed: Some(placed),
            }) if !placed.starts_with("pending") => acked.push((id, name, job)),
            other => panic!("{name}: {other:?}"),
        }
    }
    let mut client = cluster.client_of(&survivors);
    for k in 0..4 {
        let name = format!("after-{k}");
        let id = client.request_id();
        acked.push((
            id,
            name.clone(),
            cluster.submit_placed(&mut client, id, &name),
        ));
    }

    // No loss, no duplicate: exactly one job per acknowledged request, with the id the
    // acknowledgement gave.
    let jobs = cluster.jobs(&mut client);
    assert_eq!(jobs.len(), acked.len(), "{jobs:?}");
    for (_, name, job) in &acked {
        assert_eq!(
            jobs.get(job).map(|l| l.name.as_str()),
            Some(name.as_str()),
            "job {job}"
        );
    }
    // Retried submissions keep their request id and get the same job, never a new one.
    for (id, name, job) in &acked {
        let again = cluster.submit_placed(&mut client, *id, name);
        assert_eq!(again, *job, "retry of {name} made another job");
    }
    assert_eq!(
        cluster.jobs(&mut client),
        jobs,
        "retries changed the job list"
    );
}

/// A follower killed with SIGKILL and restarted on its address hears from the leader again
/// at once. The leader's connection to the dead process is closed by the restarted one's
/// QUIC stateless reset (keyed from the node's key, so it survives the restart), not by the
/// 10 s idle timeout, which is what this checks (with half the timeout as the bound: rejoining
/// takes ~0.3 s, so the margin is wide).
#[test]
fn killed_follower_rejoins_before_the_idle_timeout() {
    let mut cluster = Cluster::start();
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let follower = (leader + 1) % REPLICAS;
    let mut client = cluster.client();
    let id = client.request_id();
    cluster.submit_placed(&mut client, id, "before");

    cluster.kill9(follower);
    cluster.spawn(follower);
    let restarted = Instant::now();
    let mut asked = cluster.client_of(&[follower]);
    asked.deadline = Duration::from_millis(300);
    asked.attempt_timeout = Duration::from_millis(300);
    let bound = Duration::from_secs(5);
    loop {
        if let Ok(ClientResult::Leader { id, .. }) = cluster.call(&mut asked, ClientOp::Leader) {
            if id == leader as u64 + 1 {
                break;
            }
        }
        assert!(
            restarted.elapsed() < bound,
            "the restarted follower has not heard from the leader after {:?}",
            restarted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restart_of_all_replicas_keeps_the_state() {
    let mut cluster = Cluster::start();
    cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    let mut placed = Vec::new();
    for k in 0..5 {
        let id = client.request_id();
        placed.push(cluster.submit_placed(&mut client, id, &format!("kept-{k}")));
    }
    let cancelled = placed[1];
    assert_eq!(
        cluster.call(&mut client, ClientOp::Cancel { job: cancelled }),
        Ok(ClientResult::Ok)
    );
    let before = cluster.jobs(&mut client);
    assert_eq!(before[&cancelled].state, "CA", "{before:?}");
    drop(client);

    for i in 0..REPLICAS {
        cluster.stop(i);
    }
    for i in 0..REPLICAS {
        cluster.spawn(i);
    }
    cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    assert_eq!(
        cluster.jobs(&mut client),
        before,
        "same jobs in the same states"
    );
    let id = client.request_id();
    let job = cluster.submit_placed(&mut client, id, "after-restart");
    assert!(!before.contains_key(&job), "job ids are not reused: {job}");
    assert_eq!(cluster.jobs(&mut client).len(), before.len() + 1);
}

#[test]
fn partitioned_minority_acknowledges_nothing() {
    let cluster = Cluster::start();
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    let id = client.request_id();
    cluster.submit_placed(&mut client, id, "warm-up");

    // Two partitions of one replica each: first a follower (with the leader stopped, it
    // cannot even elect itself), then the leader (whose proposals enter its log but cannot
    // commit; check_quorum makes it step down).
    let follower = (0..REPLICAS).find(|&i| i != leader).expect("a follower");
    let mut requests: Vec<(RequestId, String)> = Vec::new();
    for (round, isolated) in [follower, usize::MAX].into_iter().enumerate() {
        let isolated = if isolated == usize::MAX {
            cluster.wait_leader(&[0, 1, 2])
        } else {
            isolated
        };
        let others: Vec<usize> = (0..REPLICAS).filter(|&i| i != isolated).collect();
        for &i in &others {
            signal(cluster.child(i), "STOP");
        }
        let name = format!("minority-{round}");
        let mut minority = cluster.client_of(&[isolated]);
        minority.deadline = MINORITY_DEADLINE;
        minority.attempt_timeout = Duration::from_millis(400);
        let id = minority.request_id();
        let result = cluster.call_with_id(&mut minority, id, submit_op(&name));
        for &i in &others {
            signal(cluster.child(i), "CONT");
        }
        eprintln!("replica {} alone, {name}: {result:?}", isolated + 1);
        match result {
            Err(message) => assert!(message.starts_with("no leader answered"), "{message}"),
            // Not an acknowledgement either: the transport gave up (dropped, timed out).
            Ok(ClientResult::NotLeader { .. }) => {}
            Ok(ClientResult::Error { code, .. }) if code < 100 => {}
            Ok(other) => panic!("replica {} alone acknowledged {other:?}", isolated + 1),
        }
        requests.push((id, name));
    }

    // Healed. A proposal the isolated leader appended may still commit now (legal Raft); a
    // request id still maps to at most one job, and a retry (same id) finds that job.
    cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    let jobs = cluster.jobs(&mut client);
    eprintln!("after healing: {jobs:?}");
    let counts = name_counts(&jobs);
    for (_, name) in &requests {
        assert!(counts.get(name).copied().unwrap_or(0) <= 1, "{jobs:?}");
    }
    for (id, name) in &requests {
        let first = cluster.submit_placed(&mut client, *id, name);
        let second = cluster.submit_placed(&mut client, *id, name);
        assert_eq!(first, second);
    }
    let counts = name_counts(&cluster.jobs(&mut client));
    for (_, name) in &requests {
        assert_eq!(counts.get(name), Some(&1), "{counts:?}");
    }
}

/// Flips one byte inside every occurrence of `needle` in the file (a damaged sector under a
/// live record). Returns how many occurrences were flipped.
fn flip_occurrences(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = fs::read(path).expect("read the store");
    let mut hits = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(needle.len()).position(|w| w == needle) {
        let pos = at + pos;
        bytes[pos] ^= 0x20;
        hits += 1;
        at = pos + needle.len();
    }
    fs::write(path, bytes).expect("write the store");
    hits
}

#[test]
fn corrupt_log_is_refused_at_start() {
    let mut cluster = Cluster::start();
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let mut client = cluster.client();
    let marker = "corruptme";
    for k in 0..3 {
        let id = client.request_id();
        cluster.submit_placed(&mut client, id, &format!("{marker}-{k}"));
    }
    // The leader's log certainly holds every acknowledged entry.
    cluster.stop(leader);
    let store = cluster.data_dir(leader).join("raft.redb");
    // Damage the bytes of live log records: their checksums no longer match. (Overwriting an
    // arbitrary region is not always detected, and need not be: it may hit a free page.)
    let hits = flip_occurrences(&store, marker.as_bytes());
    assert!(
        hits >= 3,
        "only {hits} copies of the marker in {}",
        store.display()
    );

    cluster.spawn(leader);
    let start = cluster.starts[leader];
    let mut child = cluster.children[leader].take().expect("started");
    let status = wait_exit(&mut child, EXIT_WAIT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = cluster.log_text(leader, start);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {log}");
    let expected = format!(
        "sovrad: corrupt raft storage in {} group 1 ",
        store.display()
    );
    assert!(lines[0].starts_with(&expected), "{log}");
    assert!(lines[0].contains("checksum mismatch"), "{log}");

    // The other two still form a majority and keep placing.
    let survivors: Vec<usize> = (0..REPLICAS).filter(|&i| i != leader).collect();
    let mut client = cluster.client_of(&survivors);
    let id = client.request_id();
    cluster.submit_placed(&mut client, id, "after-corruption");
}

#[test]
fn client_with_a_foreign_certificate_is_refused() {
    let cluster = Cluster::start();
    cluster.wait_leader(&[0, 1, 2]);
    let foreign = cluster.dir.path().join("foreign");
    sovrad_ok(&[
        "certs",
        "--dir",
        foreign.to_str().expect("utf-8 path"),
        "--cluster",
        CLUSTER,
        "--nodes",
        "1",
        "--clients",
        "admin",
    ]);
    let (identity, ca) = cluster.identity();
    let foreign_identity = Identity::load(&foreign, "client-admin").expect("identity");
    let foreign_ca = tls::load_ca(&foreign).expect("foreign CA");
    let addrs = cluster.addrs.clone();
    // The servers refuse a client certificate from another CA, and a client refuses servers
    // its CA did not certify; either way, the error names the certificate.
    for (what, identity, ca) in [
        ("foreign client certificate", foreign_identity, ca.clone()),
        ("foreign CA", identity, foreign_ca),
    ] {
        let mut client = ClusterClient::new(addrs.clone(), identity, ca);
        client.deadline = Duration::from_secs(5);
        let result = cluster.runtime.block_on(client.call(ClientOp::Jobs));
        match result {
            Err(ClusterError::Transport(e)) => {
                let message = e.to_string();
                eprintln!("{what}: {message}");
                assert!(message.contains("certificate"), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // The cluster still serves its own clients.
    let mut client = cluster.client();
    let id = client.request_id();
    cluster.submit_placed(&mut client, id, "still-served");
}

/// An agent's certificate speaks for its own node only: it may register that node, and is
/// refused (with the forbidden code) anything else, on the leader and on followers alike.
#[test]
fn agent_certificates_speak_only_for_their_node() {
    let cluster = Cluster::start();
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let certs = cluster.certs_dir();
    let identity = Identity::load(&certs, "agent-syd1-n1").expect("agent identity");
    let ca = tls::load_ca(&certs).expect("cluster CA");
    for replica in [leader, (leader + 1) % REPLICAS] {
        let mut agent =
            ClusterClient::new(vec![cluster.addrs[replica]], identity.clone(), ca.clone());
        assert_eq!(
            cluster.call(
                &mut agent,
                ClientOp::RegisterNode {
                    node: "syd1-n1".into()
                }
            ),
            Ok(ClientResult::Ok),
            "replica {replica}"
        );
        // Registering with the GPUs found: they must match the inventory (8 H100 here).
        let found = |n: usize, name: &str| ClientOp::AgentRegister {
            node: "syd1-n1".into(),
            gpus: vec![name.to_string(); n],
            nics: Vec::new(),
        };
        assert_eq!(
            cluster.call(&mut agent, found(8, "NVIDIA H100 80GB HBM3")),
            Ok(ClientResult::Ok)
        );
        for (op, why) in [
            (
                found(4, "NVIDIA H100 80GB HBM3"),
                "declares 8 H100 GPUs, the agent found 4",
            ),
            (
                found(8, "NVIDIA A100-SXM4-80GB"),
                "declares H100 GPUs, the agent found",
            ),
        ] {
            match cluster.call(&mut agent, op) {
                Ok(ClientResult::Error { message, .. }) => {
                    assert!(message.contains(why), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
        for op in [
            ClientOp::RegisterNode {
                node: "syd1-n2".into(),
            },
            submit_op("from-an-agent"),
            ClientOp::Jobs,
            ClientOp::FailNode {
                node: "syd1-n2".into(),
            },
        ] {
            let what = op.describe();
            match cluster.call(&mut agent, op) {
                Ok(ClientResult::Error { code, message }) => {
                    assert_eq!(code, sovrad::node::ERROR_FORBIDDEN, "{what}: {message}");
                    assert!(
                        message.contains("agent of node syd1-n1 may not"),
                        "{what}: {message}"
                    );
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}

/// An agent's view of the cluster, through its own certificate.
fn agent_client(cluster: &Cluster, node: &str) -> ClusterClient {
    let certs = cluster.certs_dir();
    let identity = Identity::load(&certs, &format!("agent-{node}")).expect("agent identity");
    let ca = tls::load_ca(&certs).expect("cluster CA");
    ClusterClient::new(cluster.addrs.clone(), identity, ca)
}

fn sync(
    cluster: &Cluster,
    agent: &mut ClusterClient,
    node: &str,
    known: u64,
    wait_ms: u32,
) -> (u64, Vec<wire::Assignment>) {
    let op = ClientOp::AgentSync {
        node: node.into(),
        known,
        wait_ms,
    };
    match cluster.call(agent, op) {
        Ok(ClientResult::Assignments { version, jobs, .. }) => (version, jobs),
        other => panic!("sync of {node}: {other:?}"),
    }
}

/// The agent protocol end to end against real replicas: a job placed on a node shows up in
/// its agent's assignments with its command, a long poll wakes when the job starts, the
/// rank-0 exit completes it and empties the list; an agent that goes silent past its lease
/// gets its node failed (its job requeued), while agents that keep polling keep theirs.
#[test]
fn agents_get_assignments_and_silent_agents_lose_their_node() {
    let cluster = Cluster::start();
    cluster.wait_leader(&[0, 1, 2]);
    let nodes = ["syd1-n1", "syd1-n2", "syd1-n3", "syd1-n4"];
    let mut agents: Vec<ClusterClient> = nodes.iter().map(|n| agent_client(&cluster, n)).collect();
    for (agent, node) in agents.iter_mut().zip(nodes) {
        let op = ClientOp::RegisterNode { node: node.into() };
        assert_eq!(cluster.call(agent, op), Ok(ClientResult::Ok));
        assert_eq!(sync(&cluster, agent, node, 0, 0).1, vec![]);
    }

    let mut client = cluster.client();
    let job_toml = "name = \"train\"\ntenant = \"acme\"\njurisdictions = [\"AU\"]\n\
                    gpu_models = [\"H100\"]\ncommand = \"echo hi\"\n[env]\nSEED = \"7\"\n\
                    [batch]\ngpus = 8\n";
    let op = ClientOp::Submit {
        job_toml: job_toml.into(),
        wait_placed: true,
    };
    let (job, placed) = match cluster.call(&mut client, op) {
        Ok(ClientResult::Submitted {
            job,
            placed: Some(p),
        }) => (job, p),
        other => panic!("submit: {other:?}"),
    };
    let at = nodes
        .iter()
        .position(|n| placed.starts_with(&format!("{n}{{")))
        .unwrap_or_else(|| panic!("placed on {placed}"));
    let node = nodes[at];
    let (version, jobs) = sync(&cluster, &mut agents[at], node, 0, 0);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let a = &jobs[0];
    assert_eq!((a.job, a.name.as_str(), a.running), (job, "train", false));
    assert_eq!(a.argv, ["/bin/sh", "-c", "echo hi"]);
    assert_eq!(a.env, [("SEED".to_string(), "7".to_string())]);
    assert_eq!(
        a.members,
        [(
            node.to_string(),
            sovra_fabric::GpuTake::Whole { mask: 0xff }
        )]
    );
    // Nothing changed: a zero-wait poll answers with the same version.
    assert_eq!(sync(&cluster, &mut agents[at], node, version, 0).0, version);

    // A long poll wakes when the job starts (well before its 20 s wait).
    let mut poller = agent_client(&cluster, node);
    let poll_node = node.to_string();
    let long_poll = cluster.runtime.spawn(async move {
        let started = Instant::now();
        let op = ClientOp::AgentSync {
            node: poll_node,
            known: version,
            wait_ms: 20_000,
        };
        (poller.call(op).await, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = ClientOp::JobStarted {
        attempt: 0,
        node: node.into(),
        job,
    };
    assert_eq!(
        cluster.call(&mut agents[at], started.clone()),
        Ok(ClientResult::Ok)
    );
    // Idempotent: another report of the same start is fine.
    assert_eq!(cluster.call(&mut agents[at], started), Ok(ClientResult::Ok));
    let (woken, waited) = cluster.runtime.block_on(long_poll).expect("long poll");
    match woken {
        Ok(ClientResult::Assignments {
            version: v, jobs, ..
        }) => {
            assert_ne!(v, version);
            assert!(jobs[0].running, "{jobs:?}");
        }
        other => panic!("long poll: {other:?}"),
    }
    assert!(
        waited < Duration::from_secs(10),
        "long poll took {waited:?}"
    );
    // Another node's agent may not report this job.
    let other = (at + 1) % nodes.len();
    let ended = ClientOp::JobEnded {
        attempt: 0,
        node: nodes[other].into(),
        job,
        how: wire::JobEnd::Exited(0),
    };
    match cluster.call(&mut agents[other], ended) {
        Ok(ClientResult::Error { message, .. }) => {
            assert!(message.contains("no member on node"), "{message}")
        }
        other => panic!("foreign end report: {other:?}"),
    }
    let ended = ClientOp::JobEnded {
        attempt: 0,
        node: node.into(),
        job,
        how: wire::JobEnd::Exited(0),
    };
    assert_eq!(cluster.call(&mut agents[at], ended), Ok(ClientResult::Ok));
    assert_eq!(sync(&cluster, &mut agents[at], node, 0, 0).1, vec![]);
    assert_eq!(cluster.jobs(&mut client)[&job].state, "CD");

    // An unhealthy node is drained: nothing new lands there, and only its own agent may say so.
    let other = (at + 1) % nodes.len();
    let health = |node: &str| ClientOp::AgentHealth {
        node: node.into(),
        problems: vec!["GPU GPU-1234: critical XID 79".into()],
    };
    match cluster.call(&mut agents[other], health(nodes[at])) {
        Ok(ClientResult::Error { code, .. }) => assert_eq!(code, sovrad::node::ERROR_FORBIDDEN),
        other => panic!("foreign health report: {other:?}"),
    }
    assert_eq!(
        cluster.call(&mut agents[at], health(node)),
        Ok(ClientResult::Ok)
    );
    let drained = match cluster.call(&mut client, ClientOp::NodeList) {
        Ok(ClientResult::NodeList { nodes }) => nodes
            .into_iter()
            .find(|n| n.name == node)
            .map(|n| n.state)
            .unwrap_or_default(),
        other => panic!("nodes: {other:?}"),
    };
    assert_eq!(drained, "drained");
    let resume = ClientOp::Resume { node: node.into() };
    assert_eq!(cluster.call(&mut client, resume), Ok(ClientResult::Ok));

    // Four jobs fill the four H100 nodes; the agent of the node holding the last one goes
    // silent, the others keep polling. Its node is failed and its job waits again.
    let mut held = BTreeMap::new();
    for k in 0..4 {
        let op = ClientOp::Submit {
            job_toml: job_toml.replace("\"train\"", &format!("\"fill-{k}\"")),
            wait_placed: true,
        };
        match cluster.call(&mut client, op) {
            Ok(ClientResult::Submitted {
                job,
                placed: Some(p),
            }) if !p.starts_with("pending") => held.insert(job, ()),
            other => panic!("fill-{k}: {other:?}"),
        };
    }
    let jobs = cluster.jobs(&mut client);
    let last = *held.keys().last().expect("four jobs");
    let silent = nodes
        .iter()
        .position(|n| jobs[&last].detail.starts_with(&format!("{n}{{")))
        .expect("the last job is on an H100 node");
    let deadline = Instant::now() + AGENT_LEASE * 4 + Duration::from_secs(3);
    loop {
        for (i, agent) in agents.iter_mut().enumerate() {
            if i != silent {
                sync(&cluster, agent, nodes[i], 0, 0);
            }
        }
        let jobs = cluster.jobs(&mut client);
        if jobs[&last].state == "PD" {
            for job in held.keys().filter(|&&j| j != last) {
                assert_eq!(jobs[job].state, "CF", "job {job} lost its node: {jobs:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {} was not failed: {jobs:?}",
            nodes[silent]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
