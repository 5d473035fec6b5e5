//! A client of a sovrad cluster: finds the leader, retries with the same request id.
//!
//! Requests go to the last known leader. `NotLeader` with a hint moves to the hinted replica;
//! without one, or on a timeout or a dropped connection, the client tries the next replica
//! after a short pause. A retried request keeps its request id, so a submission that did
//! commit before the failure is answered with the job it created, never a second one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_free::next_client_id;

use crate::tls::{ClusterCa, Identity};
use crate::transport::{Client, TransportError};
use crate::wire::{ClientOp, ClientResult, Request, RequestId};

/// Why a call failed for good.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No replica answered within the deadline.
    #[error("no leader answered within {0:?} (tried {1})")]
    Unavailable(Duration, String),
    /// A replica refused the connection for good (certificates).
    #[error("{0}")]
    Transport(TransportError),
}

/// Client ids without a random number crate: the clock and the process id, mixed.
mod rand_free {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn next_client_id() -> u64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut z = nanos ^ (u64::from(std::process::id()) << 32);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).max(1)
    }
}

/// A connection-caching client of one Raft group.
pub struct ClusterClient {
    replicas: Vec<SocketAddr>,
    identity: Identity,
    ca: ClusterCa,
    group: u64,
    client_id: u64,
    next_seq: u64,
    leader: usize,
    /// Whether `leader` was confirmed by a `Leader` answer (forwarding followers would
    /// otherwise serve us forever at an extra hop).
    located: bool,
    conn: Option<(SocketAddr, Client)>,
    /// How long one call may take in total, retries included.
    pub deadline: Duration,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
}

impl ClusterClient {
    /// A client of the replicas at `replicas` (any of them; the leader is found).
    pub fn new(replicas: Vec<SocketAddr>, identity: Identity, ca: ClusterCa) -> ClusterClient {
        assert!(!replicas.is_empty(), "at least one replica address");
        ClusterClient {
            replicas,
            identity,
            ca,
            group: crate::node::GROUP.0,
            client_id: next_client_id(),
            next_seq: 1,
            leader: 0,
            located: false,
            conn: None,
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(1),
        }
    }

    /// Starts with `addr` as the leader without asking first (a hint remembered from an
    /// earlier run; a wrong one costs one redirect).
    pub fn assume_leader(&mut self, addr: SocketAddr) {
        self.leader = self.replica_index(addr);
        self.located = true;
    }

    /// The replica believed to lead, once one answered as leader.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.located
            .then(|| self.replicas[self.leader % self.replicas.len()])
    }

    /// Closes the connection, telling the replica, so a short-lived client (one `sbatch`)
    /// does not hold a connection slot there until the idle timeout.
    pub async fn close(&mut self) {
        if let Some((_, conn)) = self.conn.take() {
            conn.close_within(Duration::from_millis(1)).await;
        }
    }

    /// Allocates a request id (call once per logical request; retries reuse it).
    pub fn request_id(&mut self) -> RequestId {
        let id = RequestId {
            client: self.client_id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        id
    }

    /// Sends `op` until a replica that leads answers, or the deadline passes.
    pub async fn call(&mut self, op: ClientOp) -> Result<ClientResult, ClusterError> {
        let id = self.request_id();
        self.call_with_id(id, op).await
    }

    /// Like [`ClusterClient::call`] with a given request id (to retry a request).
    pub async fn call_with_id(
        &mut self,
        id: RequestId,
        op: ClientOp,
    ) -> Result<ClientResult, ClusterError> {
        let request = Request {
            id,
            group: self.group,
            op,
        };
        let start = Instant::now();
        if !self.located {
            self.locate().await;
        }
        let mut tried = Vec::new();
        let mut pause = Duration::from_millis(20);
        // At least one attempt, even if locating the leader used up a short deadline.
        let mut first = true;
        let mut hinted_leader = false;
        while first || start.elapsed() < self.deadline {
            first = false;
            let addr = self.replicas[self.leader % self.replicas.len()];
            tried.push(addr.to_string());
            match self.attempt(addr, &request).await {
                Ok(ClientResult::NotLeader { leader }) => {
                    self.located = false;
                    // A hinted leader we did not know of joins the list.
                    let hinted = leader
                        .and_then(|(_, a)| a.parse::<SocketAddr>().ok())
                        .map(|a| self.replica_index(a));
                    match hinted {
                        Some(i) if i != self.leader % self.replicas.len() => {
                            self.leader = i;
                            hinted_leader = true;
                        }
                        _ => {
                            self.leader += 1;
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(500));
                        }
                    }
                }
                Ok(result) => {
                    // The replica a follower named as leader answered: it leads.
                    self.located |= hinted_leader;
                    return Ok(result);
                }
                Err(e @ TransportError::Tls(_)) => return Err(ClusterError::Transport(e)),
                // A refused certificate will not get better by retrying.
                Err(e @ TransportError::Connection { .. })
                    if e.to_string().contains("certificate") =>
                {
                    return Err(ClusterError::Transport(e))
                }
                Err(_) => {
                    self.conn = None;
                    self.located = false;
                    hinted_leader = false;
                    self.leader += 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
        tried.dedup();
        Err(ClusterError::Unavailable(self.deadline, tried.join(", ")))
    }

    /// The index of replica `addr`, added to the list if it was not there.
    fn replica_index(&mut self, addr: SocketAddr) -> usize {
        match self.replicas.iter().position(|r| *r == addr) {
            Some(i) => i,
            None => {
                self.replicas.push(addr);
                self.replicas.len() - 1
            }
        }
    }

    /// Asks the replica we talk to who leads, and moves there (one round trip, no Raft).
    async fn locate(&mut self) {
        let addr = self.replicas[self.leader % self.replicas.len()];
        let request = Request {
            id: RequestId::default(),
            group: self.group,
            op: ClientOp::Leader,
        };
        let answer = self.attempt(addr, &request).await;
        if answer.is_err() {
            // That replica is gone: the next call starts with the next one.
            self.leader += 1;
            return;
        }
        if let Ok(ClientResult::Leader { addr: leader, .. }) = answer {
            if let Ok(a) = leader.parse::<SocketAddr>() {
                self.leader = self.replica_index(a);
                self.located = true;
            }
        }
    }

    async fn attempt(
        &mut self,
        addr: SocketAddr,
        request: &Request,
    ) -> Result<ClientResult, TransportError> {
        if self.conn.as_ref().is_none_or(|(a, _)| *a != addr) {
            let connect = Client::connect(addr, &self.identity, &self.ca);
            let timeout = self.attempt_timeout;
            let mut client = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| TransportError::ConnectTimeout { addr, timeout })??;
            client.set_call_timeout(self.attempt_timeout);
            self.conn = Some((addr, client));
        }
        let (_, client) = self.conn.as_ref().expect("connected above");
        match client.call(request).await {
            Ok(response) => Ok(response.result),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}
