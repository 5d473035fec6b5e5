//! Setting up a cluster on one machine: free loopback ports, a cluster's certificates, and
//! the replicas' founding state. `sovrad certs`, `sovra demo`, the end-to-end tests and the
//! benchmarks all build their clusters with these.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use crate::tls::{self, Role, TlsError};

/// `n` distinct free UDP ports on 127.0.0.1: bound together (so they differ), then released.
pub fn free_loopback_addrs(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let sockets = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    sockets.iter().map(UdpSocket::local_addr).collect()
}

/// Who gets a certificate from a new cluster CA.
#[derive(Clone, Debug, Default)]
pub struct Members<'a> {
    /// Replica ids (`node-<id>`).
    pub replicas: &'a [u64],
    /// Client users (`client-<user>`).
    pub clients: &'a [String],
    /// GPU nodes whose agents get certificates (`agent-<node>`).
    pub agents: &'a [String],
    /// Extra subject alternative names of replica certificates.
    pub sans: &'a [String],
}

/// Creates the cluster CA in `dir` (created) and a certificate for every member.
pub fn issue_certs(dir: &Path, cluster: &str, members: &Members<'_>) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = tls::create_ca(dir, cluster)?;
    for &id in members.replicas {
        tls::issue(
            dir,
            &ca,
            &Role::Node { id },
            &format!("node-{id}"),
            members.sans,
        )?;
    }
    for user in members.clients {
        let role = Role::Client { user: user.clone() };
        tls::issue(dir, &ca, &role, &format!("client-{user}"), &[])?;
    }
    for node in members.agents {
        let role = Role::Agent { node: node.clone() };
        tls::issue(dir, &ca, &role, &format!("agent-{node}"), &[])?;
    }
    Ok(())
}

/// Initialises one founding replica per address (ids 1, 2, ...) from `inventory`, all nodes
/// waiting for their agents; replica `id`'s data goes to `data(id)`.
pub fn init_replicas(
    inventory: &Path,
    addrs: &[SocketAddr],
    data: impl Fn(u64) -> PathBuf,
) -> anyhow::Result<()> {
    let peers: BTreeMap<u64, String> = (1..)
        .zip(addrs)
        .map(|(id, addr)| (id, addr.to_string()))
        .collect();
    for &id in peers.keys() {
        let sm = crate::node::initial_state(inventory, false)?;
        crate::node::init(&data(id), &peers, &sm)?;
    }
    Ok(())
}
