//! `sovrad`: the replicated sovra scheduler service.
//!
//! ```text
//! sovrad certs --dir certs --cluster demo --nodes 1,2,3 --clients admin
//! sovrad init  --id 1 --data d1 --inventory inv.toml --peer 1=127.0.0.1:7101 --peer 2=...
//! sovrad run   --id 1 --data d1 --certs certs --cluster demo --listen 127.0.0.1:7101
//! ```
//!
//! Exit codes: 0 success, 1 runtime error (storage, network, corrupt log), 2 invalid
//! arguments or configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sovrad::node::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "sovrad",
    version,
    about = "The replicated sovra scheduler service"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a cluster CA and certificates for replicas, clients and agents.
    Certs {
        /// Directory for the CA and certificates (created).
        #[arg(long)]
        dir: PathBuf,
        /// Cluster name.
        #[arg(long)]
        cluster: String,
        /// Replica ids to issue certificates for (node-<id>.pem), e.g. 1,2,3.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u64>,
        /// Client users to issue certificates for (client-<user>.pem).
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// GPU nodes to issue agent certificates for (agent-<node>.pem); an agent may speak
        /// only for its own node.
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
        /// Extra subject alternative names for replica certificates (addresses, DNS names).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Write the founding configuration of a new cluster into an empty data directory.
    /// Every founding replica is initialised with the same peers and inventory.
    Init {
        /// This replica's id.
        #[arg(long)]
        id: u64,
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The cluster inventory (TOML, docs/inventory.md).
        #[arg(long)]
        inventory: PathBuf,
        /// A founding replica: ID=ADDRESS. Repeat for each.
        #[arg(long = "peer", required = true)]
        peers: Vec<String>,
        /// Treat every node as up without an agent registering it (demos and tests without
        /// agents; a declared assumption, printed at start).
        #[arg(long)]
        assume_nodes_up: bool,
    },
    /// Serve until SIGINT or SIGTERM.
    Run {
        /// This replica's id.
        #[arg(long)]
        id: u64,
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Certificates directory (ca.pem, node-<id>.pem, node-<id>.key).
        #[arg(long)]
        certs: PathBuf,
        /// Cluster name.
        #[arg(long)]
        cluster: String,
        /// Address for peers and clients (loopback only unless configured otherwise).
        #[arg(long)]
        listen: SocketAddr,
        /// Raft tick in milliseconds.
        #[arg(long, default_value_t = 50)]
        tick_ms: u64,
        /// Ticks without a leader before an election (randomized up to twice this).
        #[arg(long, default_value_t = 10)]
        election_ticks: usize,
        /// A node whose agent registered it is failed when its agent is silent this long
        /// (milliseconds; a new leader first grants every agent this long).
        #[arg(long, default_value_t = 10_000)]
        agent_lease_ms: u64,
        /// The inventory; needed only to join an existing cluster with an empty data dir.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
}

fn parse_peers(peers: &[String]) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for p in peers {
        let (id, addr) = p
            .split_once('=')
            .ok_or_else(|| format!("invalid --peer {p:?}: expected ID=ADDRESS"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| format!("invalid replica id in --peer {p:?}"))?;
        addr.parse::<SocketAddr>()
            .map_err(|_| format!("invalid address in --peer {p:?}"))?;
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("replica {id} given twice"));
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result: Result<(), (u8, String)> = match cli.command {
        Cmd::Certs {
            dir,
            cluster,
            nodes,
            clients,
            agents,
            sans,
        } => {
            let members = sovrad::local::Members {
                replicas: &nodes,
                clients: &clients,
                agents: &agents,
                sans: &sans,
            };
            sovrad::local::issue_certs(&dir, &cluster, &members).map_err(|e| (2, e.to_string()))
        }
        Cmd::Init {
            id,
            data,
            inventory,
            peers,
            assume_nodes_up,
        } => (|| {
            let peers = parse_peers(&peers).map_err(|e| (2, e))?;
            if !peers.contains_key(&id) {
                return Err((2, format!("replica {id} is not among the --peer list")));
            }
            let sm = node::initial_state(&inventory, assume_nodes_up)
                .map_err(|e| (2, format!("{e:#}")))?;
            node::init(&data, &peers, &sm).map_err(|e| (1, format!("{e:#}")))
        })(),
        Cmd::Run {
            id,
            data,
            certs,
            cluster,
            listen,
            tick_ms,
            election_ticks,
            agent_lease_ms,
            inventory,
        } => {
            if tick_ms == 0 || election_ticks < 2 || agent_lease_ms < 1000 {
                Err((
                    2,
                    "--tick-ms must be positive, --election-ticks at least 2 and \
                     --agent-lease-ms at least 1000"
                        .into(),
                ))
            } else {
                node::run(RunOptions {
                    id,
                    listen,
                    data,
                    certs,
                    cluster,
                    tick: Duration::from_millis(tick_ms),
                    election_ticks,
                    agent_lease_ms,
                    inventory,
                })
                .map_err(|e| (1, format!("{e:#}")))
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("sovrad: {message}");
            ExitCode::from(code)
        }
    }
}
