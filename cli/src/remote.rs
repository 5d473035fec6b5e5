//! Commands that talk to a running sovrad cluster over QUIC with mutual TLS.
//!
//! Connection settings come from flags or the environment: `--server` / `SOVRA_SERVER` (one
//! or more replica addresses, comma separated; the leader is found), `--certs` /
//! `SOVRA_CERTS` (the directory with `ca.pem` and `client-<user>.pem`/`.key`), and
//! `--user` / `SOVRA_USER` (default `admin`), and, for whatever neither gives, a config file:
//! `SOVRA_CONFIG`, else `$XDG_CONFIG_HOME/sovra/config.toml` (`~/.config/sovra/config.toml`),
//! with the keys `server` (a list or a comma-separated string), `certs` and `user`; a relative
//! `certs` is relative to the file. Requests are retried on another replica after a
//! timeout or a leader change with the same request id, so a submission never runs twice.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use sovrad::client::{ClusterClient, ClusterError};
use sovrad::wire::{ClientOp, ClientResult};

use crate::{invalid, runtime, Failure, EXIT_INVALID};

/// Where the cluster is and who we are.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// Replica addresses (comma separated); any replica will do.
    #[arg(long, env = "SOVRA_SERVER", value_delimiter = ',', global = true)]
    server: Vec<SocketAddr>,
    /// Certificates directory (ca.pem, client-<user>.pem, client-<user>.key).
    #[arg(long, env = "SOVRA_CERTS", global = true)]
    certs: Option<PathBuf>,
    /// Client user (selects client-<user>.pem) [default: admin].
    #[arg(long, env = "SOVRA_USER", global = true)]
    user: Option<String>,
}

/// The config file's contents.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<ServerList>,
    certs: Option<PathBuf>,
    user: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ServerList {
    List(Vec<String>),
    Text(String),
}

/// The config file's path: `SOVRA_CONFIG`, else the XDG location (which need not exist).
fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SOVRA_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("sovra").join("config.toml"))
}

/// Fills what flags and the environment left unset from the config file.
fn resolve(conn: &Conn) -> Result<(Vec<SocketAddr>, Option<PathBuf>, String), Failure> {
    let mut server = conn.server.clone();
    let mut certs = conn.certs.clone();
    let mut user = conn.user.clone();
    if server.is_empty() || certs.is_none() || user.is_none() {
        if let Some(path) = config_path().filter(|p| p.exists()) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| runtime(anyhow!("cannot read {}: {e}", path.display())))?;
            let file: ConfigFile = toml::from_str(&text)
                .map_err(|e| invalid(anyhow!("{}: {}", path.display(), e.message())))?;
            if server.is_empty() {
                let list = match file.server {
                    None => Vec::new(),
                    Some(ServerList::List(v)) => v,
                    Some(ServerList::Text(t)) => {
                        t.split(',').map(|s| s.trim().to_string()).collect()
                    }
                };
                for s in list.iter().filter(|s| !s.is_empty()) {
                    server.push(s.parse().map_err(|_| {
                        invalid(anyhow!(
                            "{}: server {s:?} is not an address",
                            path.display()
                        ))
                    })?);
                }
            }
            if certs.is_none() {
                certs = file.certs.map(|c| match path.parent() {
                    Some(dir) if c.is_relative() => dir.join(c),
                    _ => c,
                });
            }
            user = user.or(file.user);
        }
    }
    Ok((server, certs, user.unwrap_or_else(|| "admin".into())))
}

/// Cluster membership and leadership.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Print the leader's id and address.
    Leader,
    /// Add a replica (it joins as a learner, catches up, then votes).
    Add {
        /// Replica id.
        id: u64,
        /// Its address.
        addr: SocketAddr,
    },
    /// Remove a replica.
    Remove {
        /// Replica id.
        id: u64,
    },
}

/// GPU node administration.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Stop placing new work on a node.
    Drain {
        /// Node name.
        node: String,
    },
    /// Undo a drain.
    Resume {
        /// Node name.
        node: String,
    },
    /// Declare a node failed: its jobs are requeued.
    Fail {
        /// Node name.
        node: String,
    },
    /// Mark a node up (what its agent does when it starts).
    Register {
        /// Node name.
        node: String,
    },
}

fn client(conn: &Conn) -> Result<ClusterClient, Failure> {
    client_of(resolve(conn)?)
}

/// A client of the resolved settings (server list, certificates directory, user).
fn client_of(
    (server, certs, user): (Vec<SocketAddr>, Option<PathBuf>, String),
) -> Result<ClusterClient, Failure> {
    if server.is_empty() {
        return Err(invalid(anyhow!(
            "no server: pass --server ADDR, set SOVRA_SERVER, or put server = [...] in \
             ~/.config/sovra/config.toml"
        )));
    }
    let Some(certs) = &certs else {
        return Err(invalid(anyhow!(
            "no certificates: pass --certs DIR, set SOVRA_CERTS, or put certs = \"DIR\" in \
             ~/.config/sovra/config.toml"
        )));
    };
    let identity = sovrad::tls::Identity::load(certs, &format!("client-{user}"))
        .map_err(|e| invalid(anyhow!("{e}")))?;
    let ca = sovrad::tls::load_ca(certs).map_err(|e| invalid(anyhow!("{e}")))?;
    Ok(ClusterClient::new(server, identity, ca))
}

impl Conn {
    /// The connection settings from the environment and the config file only (the Slurm
    /// shim's commands take no sovra flags).
    pub fn from_env() -> Conn {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Conn {
            server: var("SOVRA_SERVER")
                .map(|list| {
                    list.split(',')
                        .filter_map(|a| a.trim().parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            certs: var("SOVRA_CERTS").map(PathBuf::from),
            user: var("SOVRA_USER"),
        }
    }
}

/// A client and the runtime its calls run on, for commands that make several calls. Its
/// connection is closed (the replica told) when it is dropped.
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: ClusterClient,
    /// Where the leader was last seen, and what that file said when opened.
    hint: Option<(PathBuf, Option<SocketAddr>)>,
}

/// The file remembering the leader of the cluster at `servers`, for this user: short-lived
/// commands (one `sbatch` each) then go to it at once instead of asking a replica first.
fn leader_hint_path(servers: &[SocketAddr]) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    servers.hash(&mut h);
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    Some(dir.join(format!("sovra-leader-{uid}-{:016x}", h.finish())))
}

impl Session {
    /// Connects lazily: the first call goes to the leader remembered from an earlier run, or
    /// finds it.
    pub fn open(conn: &Conn) -> Result<Session, Failure> {
        let resolved = resolve(conn)?;
        let servers = resolved.0.clone();
        let mut client = client_of(resolved)?;
        let hint = leader_hint_path(&servers).map(|path| {
            let known = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<SocketAddr>().ok())
                .filter(|a| servers.contains(a));
            if let Some(addr) = known {
                client.assume_leader(addr);
            }
            (path, known)
        });
        Ok(Session {
            client,
            rt: async_runtime()?,
            hint,
        })
    }

    /// One operation; refusals and failures are errors.
    pub fn call(&mut self, op: ClientOp) -> Result<ClientResult, Failure> {
        answer(self.rt.block_on(self.client.call(op)))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.rt.block_on(self.client.close());
        if let (Some((path, known)), Some(leader)) = (&self.hint, self.client.leader()) {
            if *known != Some(leader) {
                // Best effort: a hint only saves a round trip.
                let tmp = path.with_extension(format!("{}", std::process::id()));
                if std::fs::write(&tmp, leader.to_string()).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }
}

/// Runs one operation and returns its answer; refusals and failures are errors.
pub fn query(conn: &Conn, op: ClientOp) -> Result<ClientResult, Failure> {
    let mut client = client(conn)?;
    answer(async_runtime()?.block_on(client.call(op)))
}

/// The runtime one command's calls run on.
fn async_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| runtime(anyhow!("cannot start the async runtime: {e}")))
}

/// A call's answer, with "no leader", refusals (exit 2 for invalid requests) and transport
/// failures as the CLI's errors.
fn answer(result: Result<ClientResult, ClusterError>) -> Result<ClientResult, Failure> {
    match result {
        Ok(ClientResult::NotLeader { .. }) => Err(runtime(anyhow!("no leader"))),
        Ok(ClientResult::Error { code, message }) if code >= 100 => Err(Failure {
            code: EXIT_INVALID,
            error: anyhow!("{message}"),
        }),
        Ok(ClientResult::Error { message, .. }) => Err(runtime(anyhow!("{message}"))),
        Ok(other) => Ok(other),
        Err(e) => Err(runtime(anyhow!("{e}"))),
    }
}

/// `1d 2:03:04`-style elapsed time, as squeue prints it.
fn elapsed(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m}:{s:02}"),
        (0, _) => format!("{h}:{m:02}:{s:02}"),
        _ => format!("{d}-{h:02}:{m:02}:{s:02}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn members_text(j: &sovrad::wire::JobInfo) -> String {
    j.members
        .iter()
        .map(|(node, _, _, gpus)| match gpus {
            sovra_fabric::GpuTake::None => node.clone(),
            g => format!("{node}{{{g}}}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn job_json(j: &sovrad::wire::JobInfo) -> serde_json::Value {
    let members: Vec<serde_json::Value> = j
        .members
        .iter()
        .map(|(node, site, jurisdiction, gpus)| {
            serde_json::json!({"node": node, "site": site, "jurisdiction": jurisdiction,
                "gpus": gpus.to_string()})
        })
        .collect();
    serde_json::json!({
        "job": j.id, "name": j.name, "tenant": j.tenant, "state": j.state,
        "priority": j.priority, "jurisdictions": j.jurisdictions, "request": j.request,
        "time_limit_ms": j.time_limit_ms, "submit_ms": j.submit_ms, "start_ms": j.start_ms,
        "end_ms": j.end_ms, "exit_code": j.exit_code, "restarts": j.restarts,
        "members": members, "reason": j.reason,
        "user": j.control.user, "queue": j.control.queue, "held": j.control.held,
        "array": j.control.array
            .map(|(job, index)| serde_json::json!({"job": job, "index": index})),
        "dependency": j.control.dependency,
    })
}

/// `sovra jobs` / `sovra status`: a squeue-like table, or one JSON object per job.
pub fn print_jobs(jobs: &[sovrad::wire::JobInfo], json: bool) {
    if json {
        for j in jobs {
            println!("{}", job_json(j));
        }
        return;
    }
    println!(
        "{:>8} {:<16} {:<10} {:>3} {:>10}  NODES(REASON)",
        "JOBID", "NAME", "TENANT", "ST", "TIME"
    );
    let now = now_ms();
    for j in jobs {
        let time = match (j.start_ms, j.end_ms) {
            (Some(s), Some(e)) => elapsed(e.saturating_sub(s)),
            (Some(s), None) => elapsed(now.saturating_sub(s)),
            _ => "0:00".into(),
        };
        let detail = match &j.reason {
            Some(r) if j.state == "PD" => format!("({r})"),
            _ => members_text(j),
        };
        println!(
            "{:>8} {:<16} {:<10} {:>3} {:>10}  {detail}",
            j.id, j.name, j.tenant, j.state, time
        );
    }
}

/// `sovra explain`: what the job asks for, where it runs and why, or why it waits.
pub fn print_explain(j: &sovrad::wire::JobInfo, json: bool) {
    let sites: std::collections::BTreeSet<(&str, &str)> = j
        .members
        .iter()
        .map(|(_, site, jurisdiction, _)| (site.as_str(), jurisdiction.as_str()))
        .collect();
    let ended = !matches!(j.state.as_str(), "PD" | "CF" | "R");
    let why = if j.members.is_empty() {
        match (&j.reason, ended) {
            (_, true) => format!("ended ({}) before it was placed", j.state),
            (Some(r), false) => format!("waits: {r}"),
            (None, false) => "not scheduled yet".to_string(),
        }
    } else if j.state == "PD" {
        let last = sites
            .iter()
            .map(|(s, c)| format!("{s} ({c})"))
            .collect::<Vec<_>>()
            .join(", ");
        match &j.reason {
            Some(r) => format!("requeued (last ran in {last}); waits: {r}"),
            None => format!("requeued (last ran in {last})"),
        }
    } else {
        let inside = sites
            .iter()
            .all(|(_, code)| j.jurisdictions.iter().any(|a| a == code));
        format!(
            "{} in {} — inside the allowed jurisdictions: {}",
            if ended { "ran" } else { "placed" },
            sites
                .iter()
                .map(|(s, c)| format!("{s} ({c})"))
                .collect::<Vec<_>>()
                .join(", "),
            if inside { "yes" } else { "NO" }
        )
    };
    if json {
        let mut v = job_json(j);
        v["why"] = serde_json::Value::from(why);
        println!("{v}");
        return;
    }
    println!("job {} {} (tenant {}): {}", j.id, j.name, j.tenant, j.state);
    println!(
        "  asks for: {}, allowed in {}",
        j.request,
        j.jurisdictions.join(", ")
    );
    for (rank, (node, site, jurisdiction, gpus)) in j.members.iter().enumerate() {
        println!("  rank {rank}: {node} GPUs {gpus} (site {site}, {jurisdiction})");
    }
    println!("  {why}");
    if j.restarts > 0 {
        println!("  requeued {} time(s) after node failures", j.restarts);
    }
}

/// `sovra nodes`: one line per node, or one JSON object per node.
pub fn print_nodes(nodes: &[sovrad::wire::NodeInfo], json: bool) {
    if json {
        for n in nodes {
            println!(
                "{}",
                serde_json::json!({
                    "node": n.name, "site": n.site, "jurisdiction": n.jurisdiction,
                    "state": n.state, "agent": n.agent, "model": n.model, "gpus": n.gpus,
                    "gpus_free": n.gpus_whole_free, "cpu_free_milli": n.cpu_free_milli,
                    "memory_free_mib": n.memory_free_mib, "conflicts": n.conflicts,
                })
            );
        }
        return;
    }
    println!(
        "{:<16} {:<8} {:<4} {:<8} {:<6} {:<10} {:>9}",
        "NODE", "SITE", "JUR", "STATE", "AGENT", "MODEL", "GPUS FREE"
    );
    for n in nodes {
        println!(
            "{:<16} {:<8} {:<4} {:<8} {:<6} {:<10} {:>4}/{:<4}",
            n.name,
            n.site,
            n.jurisdiction,
            n.state,
            if n.agent { "yes" } else { "no" },
            n.model,
            n.gpus_whole_free,
            n.gpus
        );
        for c in &n.conflicts {
            println!("  ! {c}");
        }
    }
}

/// `sovra logs`: a task's output, read from its node's agent through the leader, written to
/// stdout as it is; with `follow`, keeps reading while the job runs.
pub fn logs(conn: &Conn, job: u64, rank: u32, stderr: bool, follow: bool) -> Result<u8, Failure> {
    use std::io::Write;
    let mut client = client(conn)?;
    let rt = async_runtime()?;
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let op = ClientOp::Logs {
            job,
            rank,
            stderr,
            offset,
            max: sovrad::wire::LOG_CHUNK_MAX,
        };
        let (data, eof) = match answer(rt.block_on(client.call(op)))? {
            ClientResult::LogChunk { data, eof, .. } => (data, eof),
            other => return Err(runtime(anyhow!("unexpected answer {other:?}"))),
        };
        out.write_all(&data)
            .and_then(|()| out.flush())
            .map_err(|e| runtime(anyhow!("writing the output: {e}")))?;
        offset += data.len() as u64;
        if !eof {
            continue;
        }
        if !follow {
            return Ok(0);
        }
        // Following: stop once the job has ended and everything is read.
        let ended = match rt.block_on(client.call(ClientOp::JobInfo { job })) {
            Ok(ClientResult::JobList { jobs }) => jobs
                .first()
                .is_none_or(|j| !matches!(j.state.as_str(), "PD" | "CF" | "R")),
            _ => false,
        };
        if ended && data.is_empty() {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Runs one operation and prints the result. Returns the exit code.
pub fn call(conn: &Conn, op: ClientOp) -> Result<u8, Failure> {
    match query(conn, op)? {
        ClientResult::Submitted { job, placed } => {
            match placed {
                Some(p) => println!("job {job}: {p}"),
                None => println!("job {job} submitted"),
            }
            Ok(0)
        }
        ClientResult::Ok => Ok(0),
        ClientResult::Leader { id, addr } => {
            println!("{id} {addr}");
            Ok(0)
        }
        other => Err(runtime(anyhow!("unexpected answer {other:?}"))),
    }
}
