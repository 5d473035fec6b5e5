//! Commands that talk to a running sovrad cluster over QUIC with mutual TLS.
//!
//! Connection settings come from flags or the environment: `--server` / `SOVRA_SERVER` (one
//! or more replica addresses, comma separated; the leader is found), `--certs` /
//! `SOVRA_CERTS` (the directory with `ca.pem` and `client-<user>.pem`/`.key`), and
//! `--user` / `SOVRA_USER` (default `admin`). Requests are retried on another replica after a
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
    /// Client user (selects client-<user>.pem).
    #[arg(long, env = "SOVRA_USER", default_value = "admin", global = true)]
    user: String,
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
    if conn.server.is_empty() {
        return Err(invalid(anyhow!(
            "no server: pass --server ADDR or set SOVRA_SERVER"
        )));
    }
    let Some(certs) = &conn.certs else {
        return Err(invalid(anyhow!(
            "no certificates: pass --certs DIR or set SOVRA_CERTS"
        )));
    };
    let identity = sovrad::tls::Identity::load(certs, &format!("client-{}", conn.user))
        .map_err(|e| invalid(anyhow!("{e}")))?;
    let ca = sovrad::tls::load_ca(certs).map_err(|e| invalid(anyhow!("{e}")))?;
    Ok(ClusterClient::new(conn.server.clone(), identity, ca))
}

/// Runs one operation and prints the result. Returns the exit code.
pub fn call(conn: &Conn, op: ClientOp) -> Result<u8, Failure> {
    let mut client = client(conn)?;
    let runtime_ = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| runtime(anyhow!("cannot start the async runtime: {e}")))?;
    let result = runtime_.block_on(client.call(op));
    match result {
        Ok(ClientResult::Submitted { job, placed }) => {
            match placed {
                Some(p) => println!("job {job}: {p}"),
                None => println!("job {job} submitted"),
            }
            Ok(0)
        }
        Ok(ClientResult::Ok) => Ok(0),
        Ok(ClientResult::Job { text } | ClientResult::Jobs { text }) => {
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(0)
        }
        Ok(ClientResult::Leader { id, addr }) => {
            println!("{id} {addr}");
            Ok(0)
        }
        Ok(ClientResult::Assignments {
            version,
            in_service,
            jobs,
        }) => {
            println!("version {version} in_service {in_service}");
            for a in jobs {
                let members: Vec<String> = a
                    .members
                    .iter()
                    .map(|(node, gpus)| format!("{node}{{{gpus}}}"))
                    .collect();
                let state = if a.running { "R" } else { "PL" };
                println!(
                    "{} {} {} {} {}",
                    a.job,
                    a.name,
                    a.tenant,
                    state,
                    members.join(" ")
                );
            }
            Ok(0)
        }
        Ok(ClientResult::NotLeader { .. }) => Err(runtime(anyhow!("no leader"))),
        Ok(ClientResult::Error { code, message }) => {
            if code >= 100 {
                Err(Failure {
                    code: EXIT_INVALID,
                    error: anyhow!("{message}"),
                })
            } else {
                Err(runtime(anyhow!("{message}")))
            }
        }
        Err(ClusterError::Transport(e)) => Err(runtime(anyhow!("{e}"))),
        Err(e) => Err(runtime(anyhow!("{e}"))),
    }
}
