//! The QUIC transport of sovrad: Raft traffic between replicas and client requests, over one
//! quinn endpoint per replica, authenticated with the cluster's mutual TLS ([`crate::tls`]).
//!
//! - **Peer traffic.** [`Transport::send_raft`] never blocks: it puts the message on a bounded
//!   queue owned by one task per peer. That task keeps one connection to the peer and, per
//!   Raft group, one long-lived unidirectional stream that starts with a `PeerHello` and then
//!   carries `Raft` frames. When the queue is full, or the peer is unreachable, messages are
//!   dropped: Raft retransmits. Failed connects back off exponentially.
//! - **Requests.** A client opens one bidirectional stream per request, sends one `Request`
//!   and reads one `Response`. The transport hands the request to the event loop as
//!   [`Inbound::Request`] and writes whatever comes back on its `reply` channel.
//! - **Authorization.** The handshake rejects anyone without a certificate from the cluster CA.
//!   Peer streams further need a [`Role::Node`] certificate whose id is the `PeerHello`'s
//!   `from`; request streams accept nodes and clients.
//!
//! Every queue, stream count and connection count is bounded (see [`TransportConfig`]). Bad
//! input from the network stops the stream or closes the connection; it never panics.
//!
//! Tasks: one accepting connections (it owns one task per connection, which owns one per
//! stream) and one per peer. Dropping the [`Transport`] aborts them all.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{timeout, Instant};

use crate::tls::{self, ClusterCa, Identity, Role, TlsError};
use crate::wire::{
    self, error_code, ClientResult, Frame, Request, RequestId, Response, StreamError,
};

/// QUIC application error codes used when closing connections and stopping streams.
pub mod close_code {
    /// The endpoint is shutting down, or a client is done.
    pub const SHUTDOWN: u32 = 0;
    /// The peer's certificate does not allow what it tried (e.g. a client opening a peer
    /// stream, or a `PeerHello` naming another node or cluster).
    pub const FORBIDDEN: u32 = 1;
    /// A malformed or unexpected frame.
    pub const PROTOCOL: u32 = 2;
}

/// Bounds and timeouts of a [`Transport`]. Every bound must be at least 1.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Allow binding an address outside 127.0.0.0/8 and `::1`. Tests never set it.
    pub allow_non_loopback: bool,
    /// Outgoing Raft messages queued per peer; more are dropped.
    pub peer_queue_max: usize,
    /// Messages and requests queued for the event loop; readers wait when it is full.
    pub inbound_queue_max: usize,
    /// Distinct peers [`Transport::send_raft`] keeps a task for.
    pub peers_max: usize,
    /// Raft groups (peer streams) per peer connection.
    pub groups_per_peer_max: u32,
    /// Concurrent requests per client connection.
    pub requests_per_connection_max: u32,
    /// Accepted connections at once; more are refused.
    pub connections_max: usize,
    /// How long dialing a peer may take.
    pub connect_timeout: Duration,
    /// First wait after a failed connect or send; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between connect attempts.
    pub backoff_max: Duration,
    /// A connection that hears nothing for this long is closed.
    pub idle_timeout: Duration,
    /// How often an idle connection is pinged, to keep it open and notice dead peers.
    pub keep_alive_interval: Duration,
    /// How long the first frame of a stream may take to arrive.
    pub first_frame_timeout: Duration,
    /// How long the event loop may take to reply to a request.
    pub reply_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            allow_non_loopback: false,
            peer_queue_max: 1024,
            inbound_queue_max: 4096,
            peers_max: 64,
            groups_per_peer_max: 16,
            requests_per_connection_max: 64,
            connections_max: 256,
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(2),
            first_frame_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// How long [`Client::call`] waits by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Client::connect`] may take.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the transport hands to the event loop.
#[derive(Debug)]
pub enum Inbound {
    /// A Raft message from a peer.
    Raft {
        /// The sender's node id, as proven by its certificate.
        from: u64,
        /// The Raft group.
        group: u64,
        /// The protobuf-encoded raft message.
        bytes: Vec<u8>,
    },
    /// A client request; send the result on `reply`. Dropping `reply` answers with an error.
    Request {
        /// Who asked, as proven by its certificate.
        peer: Role,
        /// The request.
        request: Request,
        /// Where the result goes.
        reply: oneshot::Sender<ClientResult>,
    },
}

/// What became of a message given to [`Transport::send_raft`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued for the peer's task (which may still drop it if the peer is unreachable).
    Queued,
    /// Dropped: the peer's queue is full.
    QueueFull,
    /// Dropped: the message exceeds [`wire::RAFT_MESSAGE_BYTES_MAX`].
    TooLarge,
    /// Dropped: there are already [`TransportConfig::peers_max`] peers.
    TooManyPeers,
}

/// Failures of binding, connecting and calling.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The bind address is not loopback and `allow_non_loopback` is off.
    #[error("refusing to bind non-loopback address {addr} (allow_non_loopback is off)")]
    NonLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// The UDP socket could not be opened.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The io error.
        source: io::Error,
    },
    /// The identity or CA does not fit the transport being bound.
    #[error("identity mismatch: {0}")]
    Identity(String),
    /// A [`TransportConfig`] value quinn cannot use.
    #[error("invalid transport config: {0}")]
    Config(String),
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused to start a connection (e.g. bad address).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The handshake did not finish in time.
    #[error("connecting to {addr}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// The server.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The connection failed or was closed; `reason` says why, and names certificate
    /// problems as such.
    #[error("connection to {addr}: {reason}")]
    Connection {
        /// The other end.
        addr: SocketAddr,
        /// A description of the QUIC or TLS error.
        reason: String,
    },
    /// The connected peer is not the node that was dialed.
    #[error("connection to {addr}: expected node {expected}, certificate says {found}")]
    WrongPeer {
        /// The other end.
        addr: SocketAddr,
        /// The node id dialed.
        expected: u64,
        /// The role its certificate carries.
        found: Role,
    },
    /// Reading or writing a frame failed.
    #[error("call to {addr}: {source}")]
    Stream {
        /// The server.
        addr: SocketAddr,
        /// What failed.
        source: StreamError,
    },
    /// No response within the call timeout.
    #[error("call to {addr}: no response within {timeout:?}")]
    CallTimeout {
        /// The server.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The server finished the stream without answering.
    #[error("call to {addr}: stream closed without a response")]
    NoResponse {
        /// The server.
        addr: SocketAddr,
    },
    /// The server answered with something other than the matching response.
    #[error("call to {addr}: {detail}")]
    BadResponse {
        /// The server.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
}

/// One replica's QUIC endpoint, both server (peers and clients dial it) and client (it dials
/// peers). Dropping it closes every connection.
pub struct Transport {
    endpoint: Endpoint,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    accept_task: AbortHandle,
}

/// Read-only state shared with the transport's tasks.
#[derive(Debug)]
struct Shared {
    cluster: String,
    self_id: u64,
    config: TransportConfig,
}

/// The sending half of one peer's task.
struct Peer {
    addr: SocketAddr,
    queue: mpsc::Sender<Outbound>,
    task: AbortHandle,
}

struct Outbound {
    group: u64,
    message: Vec<u8>,
}

impl Transport {
    /// Opens the endpoint of replica `self_id` on `addr` (port 0 picks one) and starts
    /// accepting connections. Inbound messages and requests arrive on the returned receiver.
    ///
    /// `identity` must be the certificate of node `self_id`, and `ca` the CA of `cluster`.
    ///
    /// # Panics
    ///
    /// If a bound in `config` is zero.
    pub async fn bind(
        addr: SocketAddr,
        identity: &Identity,
        ca: &ClusterCa,
        cluster: String,
        self_id: u64,
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        assert!(config.peer_queue_max > 0);
        assert!(config.inbound_queue_max > 0);
        assert!(config.peers_max > 0);
        assert!(config.groups_per_peer_max > 0);
        assert!(config.requests_per_connection_max > 0);
        assert!(config.connections_max > 0);
        if !config.allow_non_loopback && !addr.ip().is_loopback() {
            return Err(TransportError::NonLoopback { addr });
        }
        if ca.cluster() != cluster {
            return Err(TransportError::Identity(format!(
                "ca is for cluster {:?}, transport for {cluster:?}",
                ca.cluster()
            )));
        }
        let role = identity.role()?;
        if role != (Role::Node { id: self_id }) || identity.cluster()? != cluster {
            return Err(TransportError::Identity(format!(
                "certificate is for {role} of cluster {:?}, transport for node {self_id} of \
                 {cluster:?}",
                identity.cluster()?
            )));
        }

        let quic = Arc::new(quic_transport_config(&config)?);
        let mut server = tls::server_config(identity, ca)?;
        server.transport_config(quic.clone());
        let mut client = tls::client_config(identity, ca)?;
        client.transport_config(quic);
        // Stateless resets with a key that survives restarts (derived from the node's private
        // key): a restarted replica answers packets of its previous life's connections with a
        // reset the peers accept, so they reconnect at once instead of after the idle timeout.
        // The connection-id generator's key must survive restarts too: quinn drops packets
        // whose connection id its generator did not sign before it considers a reset, and the
        // default key is random per process.
        let derive = |label: &[u8]| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(label);
            h.update(identity.key_der());
            h.finalize()
        };
        let reset_key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &derive(b"sovra quic stateless reset v1\0"),
        );
        let cid_key = {
            let d = derive(b"sovra quic connection id v1\0");
            u64::from_le_bytes(d[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
        };
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let mut endpoint = Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?;

        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_max);
        let shared = Arc::new(Shared {
            cluster,
            self_id,
            config,
        });
        let runtime = tokio::runtime::Handle::current();
        let accept_task = runtime
            .spawn(run_accept(endpoint.clone(), shared.clone(), inbound_tx))
            .abort_handle();
        let transport = Transport {
            endpoint,
            local_addr,
            shared,
            runtime,
            peers: Mutex::new(HashMap::new()),
            accept_task,
        };
        Ok((transport, inbound_rx))
    }

    /// The bound address (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues a Raft message for node `to` at `addr`, without waiting. A new `addr` for a
    /// known node replaces its connection.
    ///
    /// # Panics
    ///
    /// If `to` is this replica: Raft never sends to itself.
    pub fn send_raft(&self, to: u64, addr: SocketAddr, group: u64, bytes: Vec<u8>) -> SendOutcome {
        assert_ne!(
            to, self.shared.self_id,
            "a replica does not send raft messages to itself"
        );
        if bytes.len() > wire::RAFT_MESSAGE_BYTES_MAX {
            return SendOutcome::TooLarge;
        }
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(entry) = peers.entry(to) {
            // A moved peer, or a task that is gone: start over.
            if entry.get().addr != addr || entry.get().queue.is_closed() {
                entry.remove().task.abort();
            }
        }
        let peers_len = peers.len();
        let peer = match peers.entry(to) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) if peers_len >= self.shared.config.peers_max => {
                return SendOutcome::TooManyPeers;
            }
            Entry::Vacant(entry) => {
                let (queue, queue_rx) = mpsc::channel(self.shared.config.peer_queue_max);
                let task = self.runtime.spawn(run_peer(
                    self.endpoint.clone(),
                    self.shared.clone(),
                    to,
                    addr,
                    queue_rx,
                ));
                entry.insert(Peer {
                    addr,
                    queue,
                    task: task.abort_handle(),
                })
            }
        };
        match peer.queue.try_send(Outbound {
            group,
            message: bytes,
        }) {
            Ok(()) => SendOutcome::Queued,
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => SendOutcome::QueueFull,
        }
    }

    /// Stops sending to node `to` and closes its connection (e.g. after it left the group).
    pub fn remove_peer(&self, to: u64) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.remove(&to) {
            peer.task.abort();
        }
    }

    /// Closes every connection and waits (up to a second) until the peers have been told.
    pub async fn shutdown(self) {
        let endpoint = self.endpoint.clone();
        drop(self);
        let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.endpoint
            .close(VarInt::from_u32(close_code::SHUTDOWN), b"shutting down");
        self.accept_task.abort();
        let peers = self.peers.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (_, peer) in peers.drain() {
            peer.task.abort();
        }
    }
}

/// A client of one replica: the CLI, tests, later agents.
pub struct Client {
    endpoint: Endpoint,
    connection: Connection,
    server: SocketAddr,
    call_timeout: Duration,
}

impl Client {
    /// Connects to the replica at `server`, presenting `identity` and verifying the server
    /// against `ca`. The server's certificate must name `server`'s IP address.
    pub async fn connect(
        server: SocketAddr,
        identity: &Identity,
        ca: &ClusterCa,
    ) -> Result<Client, TransportError> {
        let bind_ip = match server.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let bind = SocketAddr::new(bind_ip, 0);
        let mut client = tls::client_config(identity, ca)?;
        client.transport_config(Arc::new(
            quic_transport_config(&TransportConfig::default())?,
        ));
        let mut endpoint =
            Endpoint::client(bind).map_err(|source| TransportError::Bind { addr: bind, source })?;
        endpoint.set_default_client_config(client);
        let connection = connect(&endpoint, server, CLIENT_CONNECT_TIMEOUT).await?;
        Ok(Client {
            endpoint,
            connection,
            server,
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// Sets how long [`Client::call`] waits for a response.
    pub fn set_call_timeout(&mut self, call_timeout: Duration) {
        self.call_timeout = call_timeout;
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends `request` on a new stream and waits for its response.
    pub async fn call(&self, request: &Request) -> Result<Response, TransportError> {
        match timeout(self.call_timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::CallTimeout {
                addr: self.server,
                timeout: self.call_timeout,
            }),
        }
    }

    /// Closes the connection, telling the server.
    pub async fn close(self) {
        self.close_within(Duration::from_secs(1)).await;
    }

    /// Closes the connection and waits at most `wait` for it to drain. The close frame goes
    /// out at once; a process about to exit needs only that (a few milliseconds), not the
    /// whole draining period.
    pub async fn close_within(self, wait: Duration) {
        self.connection
            .close(VarInt::from_u32(close_code::SHUTDOWN), b"done");
        let _ = timeout(wait, self.endpoint.wait_idle()).await;
    }

    async fn exchange(&self, request: &Request) -> Result<Response, TransportError> {
        let addr = self.server;
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| connection_error(addr, &e))?;
        let frame = Frame::Request(request.clone());
        wire::write_frame(&mut send, &frame)
            .await
            .map_err(|e| self.stream_error(e))?;
        // The stream is already finished or reset only if the connection is gone; the read
        // below reports that.
        let _ = send.finish();
        match wire::read_frame(&mut recv)
            .await
            .map_err(|e| self.stream_error(e))?
        {
            None => Err(TransportError::NoResponse { addr }),
            Some(Frame::Response(response)) if response.id == request.id => Ok(response),
            Some(Frame::Response(response)) => Err(TransportError::BadResponse {
                addr,
                detail: format!(
                    "response is for request {:?}, not {:?}: {:?}",
                    response.id, request.id, response.result
                ),
            }),
            Some(other) => Err(TransportError::BadResponse {
                addr,
                detail: format!("expected a response frame, got {}", other.kind_name()),
            }),
        }
    }

    /// Describes a stream failure by the connection's failure when that is the cause.
    fn stream_error(&self, source: StreamError) -> TransportError {
        match self.connection.close_reason() {
            Some(reason) => connection_error(self.server, &reason),
            None => TransportError::Stream {
                addr: self.server,
                source,
            },
        }
    }
}

fn quic_transport_config(
    config: &TransportConfig,
) -> Result<quinn::TransportConfig, TransportError> {
    let idle_timeout = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|e| TransportError::Config(format!("idle timeout: {e}")))?;
    let mut quic = quinn::TransportConfig::default();
    quic.max_idle_timeout(Some(idle_timeout))
        .keep_alive_interval(Some(config.keep_alive_interval))
        .max_concurrent_uni_streams(VarInt::from_u32(config.groups_per_peer_max))
        .max_concurrent_bidi_streams(VarInt::from_u32(config.requests_per_connection_max));
    Ok(quic)
}

/// Dials `addr` with the endpoint's client configuration and completes the handshake.
async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Connection, TransportError> {
    // Servers are verified by IP address: their certificates carry IP SANs.
    let server_name = addr.ip().to_string();
    let connecting = endpoint
        .connect(addr, &server_name)
        .map_err(|source| TransportError::Connect { addr, source })?;
    match timeout(connect_timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(connection_error(addr, &e)),
        Err(_) => Err(TransportError::ConnectTimeout {
            addr,
            timeout: connect_timeout,
        }),
    }
}

fn connection_error(addr: SocketAddr, error: &ConnectionError) -> TransportError {
    TransportError::Connection {
        addr,
        reason: describe_connection_error(error),
    }
}

/// quinn reports TLS alerts as bare numbers; say which side refused which certificate.
fn describe_connection_error(error: &ConnectionError) -> String {
    let (code, by_peer) = match error {
        ConnectionError::ConnectionClosed(close) => (close.error_code, true),
        ConnectionError::TransportError(transport) => (transport.code, false),
        _ => return error.to_string(),
    };
    let Some(alert) = u64::from(code)
        .checked_sub(0x100)
        .filter(|alert| *alert < 0x100)
    else {
        return error.to_string();
    };
    // TLS alerts (RFC 8446): bad_certificate .. certificate_unknown, unknown_ca,
    // decrypt_error (rustls sends it for a bad certificate signature, e.g. from another CA
    // with the same name), certificate_required.
    let certificate = matches!(alert, 42..=46 | 48 | 51 | 116);
    match (certificate, by_peer) {
        (true, true) => format!("the peer refused our certificate (tls alert {alert}): {error}"),
        (true, false) => format!("we refused the peer's certificate (tls alert {alert}): {error}"),
        (false, _) => format!("tls handshake failed (alert {alert}): {error}"),
    }
}

/// The task behind one peer's queue: connects lazily, sends, reconnects with backoff.
async fn run_peer(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    to: u64,
    addr: SocketAddr,
    mut queue: mpsc::Receiver<Outbound>,
) {
    let config = &shared.config;
    let mut link: Option<PeerLink> = None;
    let mut backoff = config.backoff_min;
    let mut retry_at: Option<Instant> = None;
    while let Some(outbound) = queue.recv().await {
        if link
            .as_ref()
            .is_some_and(|link| link.connection.close_reason().is_some())
        {
            link = None;
        }
        if link.is_none() {
            if retry_at.is_some_and(|at| Instant::now() < at) {
                continue; // Backing off: drop the message, Raft will resend.
            }
            match connect_peer(&endpoint, &shared, to, addr).await {
                Ok(connection) => {
                    link = Some(PeerLink {
                        connection,
                        streams: HashMap::new(),
                    })
                }
                Err(e) => {
                    tracing::debug!(to, %addr, ?backoff, "peer connect failed, backing off: {e}");
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(config.backoff_max);
                    continue;
                }
            }
        }
        let Some(current) = link.as_mut() else {
            continue;
        };
        match current.send(&shared, outbound).await {
            Ok(()) => {
                backoff = config.backoff_min;
                retry_at = None;
            }
            Err(e) => {
                tracing::debug!(to, %addr, ?backoff, "peer send failed, reconnecting: {e}");
                link = None;
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(config.backoff_max);
            }
        }
    }
}

async fn connect_peer(
    endpoint: &Endpoint,
    shared: &Shared,
    to: u64,
    addr: SocketAddr,
) -> Result<Connection, TransportError> {
    let connection = connect(endpoint, addr, shared.config.connect_timeout).await?;
    let found = tls::peer_role(&connection)?;
    if found != (Role::Node { id: to }) {
        connection.close(
            VarInt::from_u32(close_code::FORBIDDEN),
            b"not the node dialed",
        );
        return Err(TransportError::WrongPeer {
            addr,
            expected: to,
            found,
        });
    }
    Ok(connection)
}

/// A live connection to a peer, with one stream per Raft group.
struct PeerLink {
    connection: Connection,
    streams: HashMap<u64, SendStream>,
}

impl PeerLink {
    async fn send(&mut self, shared: &Shared, outbound: Outbound) -> Result<(), StreamError> {
        let Outbound { group, message } = outbound;
        let groups_full = self.streams.len() >= shared.config.groups_per_peer_max as usize;
        let stream = match self.streams.entry(group) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) if groups_full => {
                tracing::debug!(group, "too many raft groups for one peer, dropping message");
                return Ok(());
            }
            Entry::Vacant(entry) => {
                let mut stream = self
                    .connection
                    .open_uni()
                    .await
                    .map_err(|e| StreamError::Write(quinn::WriteError::ConnectionLost(e)))?;
                let hello = Frame::PeerHello {
                    cluster: shared.cluster.clone(),
                    group,
                    from: shared.self_id,
                };
                wire::write_frame(&mut stream, &hello).await?;
                entry.insert(stream)
            }
        };
        for frame in wire::raft_frames(group, message) {
            wire::write_frame(stream, &frame).await?;
        }
        Ok(())
    }
}

/// Accepts connections until the endpoint closes; each gets a task, all owned here.
async fn run_accept(endpoint: Endpoint, shared: Arc<Shared>, inbound: mpsc::Sender<Inbound>) {
    let mut connections = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        while connections.try_join_next().is_some() {}
        if connections.len() >= shared.config.connections_max {
            tracing::debug!(remote = %incoming.remote_address(), "too many connections, refusing");
            incoming.refuse();
            continue;
        }
        connections.spawn(handle_connection(incoming, shared.clone(), inbound.clone()));
    }
}

async fn handle_connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<Inbound>,
) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::debug!(%remote, "handshake failed: {e}");
            return;
        }
    };
    let role = match tls::peer_role(&connection) {
        Ok(role) => role,
        Err(e) => {
            tracing::debug!(%remote, "refusing connection: {e}");
            let reason = e.to_string();
            connection.close(VarInt::from_u32(close_code::FORBIDDEN), reason.as_bytes());
            return;
        }
    };
    tracing::debug!(%remote, %role, "connection accepted");
    // Stream counts are bounded by the QUIC stream limits of `quic_transport_config`.
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            stream = connection.accept_uni() => {
                let Ok(recv) = stream else { break };
                let Role::Node { id } = role else {
                    tracing::debug!(%remote, %role, "refusing peer stream from a client");
                    connection.close(
                        VarInt::from_u32(close_code::FORBIDDEN),
                        b"peer streams require a node certificate",
                    );
                    break;
                };
                streams.spawn(handle_peer_stream(recv, id, shared.clone(), inbound.clone()));
            }
            stream = connection.accept_bi() => {
                let Ok((send, recv)) = stream else { break };
                let task = handle_request_stream(
                    send,
                    recv,
                    role.clone(),
                    shared.clone(),
                    inbound.clone(),
                );
                streams.spawn(task);
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}

/// Reads `PeerHello`, checks it against the certificate, then forwards `Raft` frames.
async fn handle_peer_stream(
    mut recv: RecvStream,
    node: u64,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<Inbound>,
) {
    let stop = |recv: &mut RecvStream, code: u32| {
        // Already stopped or finished: nothing left to refuse.
        let _ = recv.stop(VarInt::from_u32(code));
    };
    let hello = timeout(
        shared.config.first_frame_timeout,
        wire::read_frame(&mut recv),
    )
    .await;
    let group = match hello {
        Ok(Ok(Some(Frame::PeerHello {
            cluster,
            group,
            from,
        }))) => {
            if cluster != shared.cluster || from != node {
                tracing::debug!(node, from, cluster, "peer hello does not match certificate");
                return stop(&mut recv, close_code::FORBIDDEN);
            }
            group
        }
        Ok(Ok(None)) => return,
        Ok(Ok(Some(frame))) => {
            tracing::debug!(
                node,
                kind = frame.kind_name(),
                "peer stream must start with hello"
            );
            return stop(&mut recv, close_code::PROTOCOL);
        }
        Ok(Err(e)) => {
            tracing::debug!(node, "bad peer hello: {e}");
            return stop(&mut recv, close_code::PROTOCOL);
        }
        Err(_) => {
            tracing::debug!(node, "no peer hello in time");
            return stop(&mut recv, close_code::PROTOCOL);
        }
    };
    let mut joiner = wire::RaftJoiner::default();
    loop {
        let message = match wire::read_frame(&mut recv).await {
            Ok(Some(Frame::Raft {
                group: frame_group,
                message,
            })) if frame_group == group && !joiner.in_progress() => Some(message),
            Ok(Some(Frame::RaftPart {
                group: frame_group,
                total,
                part,
            })) if frame_group == group => match joiner.push(total, part) {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(node, group, "bad raft parts: {e}");
                    return stop(&mut recv, close_code::PROTOCOL);
                }
            },
            Ok(None) => return,
            Ok(Some(frame)) => {
                tracing::debug!(
                    node,
                    group,
                    kind = frame.kind_name(),
                    "unexpected peer frame"
                );
                return stop(&mut recv, close_code::PROTOCOL);
            }
            Err(e) => {
                tracing::debug!(node, group, "peer stream failed: {e}");
                return stop(&mut recv, close_code::PROTOCOL);
            }
        };
        if let Some(message) = message {
            let message = Inbound::Raft {
                from: node,
                group,
                bytes: message,
            };
            if inbound.send(message).await.is_err() {
                return; // The event loop is gone.
            }
        }
    }
}

/// Reads one `Request`, hands it to the event loop, writes the one `Response`.
async fn handle_request_stream(
    send: SendStream,
    mut recv: RecvStream,
    peer: Role,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<Inbound>,
) {
    let malformed = |message: String| ClientResult::Error {
        code: error_code::MALFORMED,
        message,
    };
    let first = timeout(
        shared.config.first_frame_timeout,
        wire::read_frame(&mut recv),
    )
    .await;
    let request = match first {
        Ok(Ok(Some(Frame::Request(request)))) => request,
        Ok(Ok(None)) => return,
        Ok(Ok(Some(frame))) => {
            let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
            let message = format!("expected a request frame, got {}", frame.kind_name());
            return respond(send, RequestId::default(), malformed(message)).await;
        }
        Ok(Err(StreamError::Decode(e))) => {
            let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
            return respond(send, RequestId::default(), malformed(e.to_string())).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, "request stream failed: {e}");
            let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
            return respond(send, RequestId::default(), malformed(e.to_string())).await;
        }
        Err(_) => {
            let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
            let message = "no request frame in time".to_string();
            return respond(send, RequestId::default(), malformed(message)).await;
        }
    };
    let id = request.id;
    let (reply, reply_rx) = oneshot::channel();
    if inbound
        .send(Inbound::Request {
            peer,
            request,
            reply,
        })
        .await
        .is_err()
    {
        let result = ClientResult::Error {
            code: error_code::DROPPED,
            message: "the server is shutting down".into(),
        };
        return respond(send, id, result).await;
    }
    let result = match timeout(shared.config.reply_timeout, reply_rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => ClientResult::Error {
            code: error_code::DROPPED,
            message: "the server dropped the request without a reply".into(),
        },
        Err(_) => ClientResult::Error {
            code: error_code::TIMEOUT,
            message: format!("no reply within {:?}", shared.config.reply_timeout),
        },
    };
    respond(send, id, result).await;
}

async fn respond(mut send: SendStream, id: RequestId, result: ClientResult) {
    let response = Frame::Response(Response { id, result });
    let written = match wire::write_frame(&mut send, &response).await {
        Err(StreamError::TooLarge { len, .. }) => {
            let result = ClientResult::Error {
                code: error_code::MALFORMED,
                message: format!("response of {len} bytes is over the frame limit"),
            };
            wire::write_frame(&mut send, &Frame::Response(Response { id, result })).await
        }
        written => written,
    };
    match written {
        // Finishing fails only if the client already reset the stream.
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => tracing::debug!(?id, "writing response failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{create_ca, issue, CaIssuer};
    use crate::wire::ClientOp;

    const WAIT: Duration = Duration::from_secs(10);
    const CLUSTER: &str = "test-cluster";

    struct Pki {
        _dir: tempfile::TempDir,
        ca: CaIssuer,
        nodes: Vec<Identity>,
        client: Identity,
    }

    impl Pki {
        fn new(cluster: &str) -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let ca = create_ca(dir.path(), cluster).unwrap();
            let nodes = (1..=3)
                .map(|id| {
                    issue(
                        dir.path(),
                        &ca,
                        &Role::Node { id },
                        &format!("node-{id}"),
                        &[],
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let user = Role::Client {
                user: "alice".into(),
            };
            let client = issue(dir.path(), &ca, &user, "alice", &[]).unwrap();
            Pki {
                _dir: dir,
                ca,
                nodes,
                client,
            }
        }

        fn ca(&self) -> &ClusterCa {
            self.ca.ca()
        }

        fn node(&self, id: u64) -> &Identity {
            &self.nodes[usize::try_from(id - 1).unwrap()]
        }

        async fn bind(&self, id: u64, addr: SocketAddr) -> (Transport, mpsc::Receiver<Inbound>) {
            let config = TransportConfig::default();
            let cluster = self.ca().cluster().to_string();
            Transport::bind(addr, self.node(id), self.ca(), cluster, id, config)
                .await
                .unwrap()
        }

        /// A bare quinn connection to `server` presenting `identity`, for speaking raw frames.
        async fn raw_connection(&self, identity: &Identity, server: SocketAddr) -> Connection {
            let mut endpoint = Endpoint::client(loopback()).unwrap();
            endpoint.set_default_client_config(tls::client_config(identity, self.ca()).unwrap());
            connect(&endpoint, server, WAIT).await.unwrap()
        }
    }

    fn loopback() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    }

    async fn next_inbound(inbound: &mut mpsc::Receiver<Inbound>) -> Inbound {
        timeout(WAIT, inbound.recv())
            .await
            .expect("inbound timed out")
            .expect("inbound closed")
    }

    async fn next_raft(inbound: &mut mpsc::Receiver<Inbound>) -> (u64, u64, Vec<u8>) {
        match next_inbound(inbound).await {
            Inbound::Raft { from, group, bytes } => (from, group, bytes),
            other => panic!("expected raft, got {other:?}"),
        }
    }

    async fn assert_quiet(inbound: &mut mpsc::Receiver<Inbound>) {
        let got = timeout(Duration::from_millis(300), inbound.recv()).await;
        assert!(got.is_err(), "expected nothing inbound, got {got:?}");
    }

    fn request(seq: u64, op: ClientOp) -> Request {
        Request {
            id: RequestId { client: 7, seq },
            group: 1,
            op,
        }
    }

    /// Answers requests like a tiny event loop: `Leader` gets node 2, `Cancel` is dropped
    /// unanswered, everything else gets `Ok`.
    fn serve(mut inbound: mpsc::Receiver<Inbound>) -> tokio::task::JoinHandle<Vec<Role>> {
        tokio::spawn(async move {
            let mut peers = Vec::new();
            while let Some(message) = inbound.recv().await {
                let Inbound::Request {
                    peer,
                    request,
                    reply,
                } = message
                else {
                    continue;
                };
                peers.push(peer);
                let result = match request.op {
                    ClientOp::Leader => ClientResult::Leader {
                        id: 2,
                        addr: "here".into(),
                    },
                    ClientOp::Cancel { .. } => continue,
                    _ => ClientResult::Ok,
                };
                let _ = reply.send(result);
            }
            peers
        })
    }

    #[tokio::test]
    async fn peers_exchange_raft_messages_both_ways() {
        let pki = Pki::new(CLUSTER);
        let (one, mut one_inbound) = pki.bind(1, loopback()).await;
        let (two, mut two_inbound) = pki.bind(2, loopback()).await;

        for n in 0..3u8 {
            assert_eq!(
                one.send_raft(2, two.local_addr(), 1, vec![n]),
                SendOutcome::Queued
            );
        }
        assert_eq!(
            one.send_raft(2, two.local_addr(), 9, b"other".to_vec()),
            SendOutcome::Queued
        );
        for n in 0..3u8 {
            assert_eq!(next_raft(&mut two_inbound).await, (1, 1, vec![n]));
        }
        assert_eq!(next_raft(&mut two_inbound).await, (1, 9, b"other".to_vec()));

        assert_eq!(
            two.send_raft(1, one.local_addr(), 1, b"back".to_vec()),
            SendOutcome::Queued
        );
        assert_eq!(next_raft(&mut one_inbound).await, (2, 1, b"back".to_vec()));

        // Over one frame: split into parts and joined again, in order with what follows.
        let big: Vec<u8> = (0..wire::FRAME_BYTES_MAX as usize + 5 * wire::RAFT_PART_BYTES / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(
            one.send_raft(2, two.local_addr(), 1, big.clone()),
            SendOutcome::Queued
        );
        assert_eq!(
            one.send_raft(2, two.local_addr(), 1, b"next".to_vec()),
            SendOutcome::Queued
        );
        assert!(next_raft(&mut two_inbound).await == (1, 1, big));
        assert_eq!(next_raft(&mut two_inbound).await, (1, 1, b"next".to_vec()));
        let huge = vec![0; wire::RAFT_MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            one.send_raft(2, two.local_addr(), 1, huge),
            SendOutcome::TooLarge
        );
        one.shutdown().await;
        two.shutdown().await;
    }

    #[tokio::test]
    async fn send_raft_is_bounded() {
        let pki = Pki::new(CLUSTER);
        let config = TransportConfig {
            peers_max: 1,
            peer_queue_max: 1,
            ..Default::default()
        };
        let cluster = CLUSTER.to_string();
        let (one, _inbound) =
            Transport::bind(loopback(), pki.node(1), pki.ca(), cluster, 1, config)
                .await
                .unwrap();
        // A peer that never answers; nothing runs between the sends below, so the peer task
        // has not taken anything off its queue yet.
        let silent = std::net::UdpSocket::bind(loopback()).unwrap();
        let addr = silent.local_addr().unwrap();
        assert_eq!(one.send_raft(2, addr, 1, vec![1]), SendOutcome::Queued);
        assert_eq!(one.send_raft(2, addr, 1, vec![2]), SendOutcome::QueueFull);
        assert_eq!(
            one.send_raft(3, addr, 1, vec![3]),
            SendOutcome::TooManyPeers
        );
        one.remove_peer(2);
        assert_eq!(one.send_raft(3, addr, 1, vec![3]), SendOutcome::Queued);
        one.shutdown().await;
    }

    #[tokio::test]
    async fn client_call_round_trip() {
        let pki = Pki::new(CLUSTER);
        let (two, inbound) = pki.bind(2, loopback()).await;
        let server = serve(inbound);

        let client = Client::connect(two.local_addr(), &pki.client, pki.ca())
            .await
            .unwrap();
        let leader = request(1, ClientOp::Leader);
        let response = client.call(&leader).await.unwrap();
        let expected = ClientResult::Leader {
            id: 2,
            addr: "here".into(),
        };
        assert_eq!(
            response,
            Response {
                id: leader.id,
                result: expected
            }
        );

        let submit = request(
            2,
            ClientOp::Submit {
                job_toml: "x = 1".into(),
                wait_placed: true,
            },
        );
        assert_eq!(client.call(&submit).await.unwrap().result, ClientResult::Ok);

        let dropped = client
            .call(&request(3, ClientOp::Cancel { job: 4 }))
            .await
            .unwrap();
        let message = "the server dropped the request without a reply".to_string();
        assert_eq!(
            dropped.result,
            ClientResult::Error {
                code: error_code::DROPPED,
                message
            }
        );
        client.close().await;

        // A node may call too.
        let node = Client::connect(two.local_addr(), pki.node(3), pki.ca())
            .await
            .unwrap();
        assert_eq!(
            node.call(&request(4, ClientOp::Jobs)).await.unwrap().result,
            ClientResult::Ok
        );
        node.close().await;

        two.shutdown().await;
        let alice = Role::Client {
            user: "alice".into(),
        };
        let peers = timeout(WAIT, server).await.unwrap().unwrap();
        assert_eq!(
            peers,
            [alice.clone(), alice.clone(), alice, Role::Node { id: 3 }]
        );
    }

    #[tokio::test]
    async fn peer_reconnects_after_restart_on_the_same_port() {
        let pki = Pki::new(CLUSTER);
        let (one, _one_inbound) = pki.bind(1, loopback()).await;
        let (two, mut two_inbound) = pki.bind(2, loopback()).await;
        let addr = two.local_addr();
        one.send_raft(2, addr, 1, b"before".to_vec());
        assert_eq!(
            next_raft(&mut two_inbound).await,
            (1, 1, b"before".to_vec())
        );

        two.shutdown().await;
        drop(two_inbound);

        let deadline = Instant::now() + WAIT;
        let (two, mut two_inbound) = loop {
            let config = TransportConfig::default();
            let cluster = CLUSTER.to_string();
            match Transport::bind(addr, pki.node(2), pki.ca(), cluster, 2, config).await {
                Ok(bound) => break bound,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding {addr}: {e}"),
            }
        };
        let received = async {
            loop {
                one.send_raft(2, addr, 1, b"after".to_vec());
                let got = timeout(Duration::from_millis(100), two_inbound.recv()).await;
                if let Ok(Some(Inbound::Raft { from, group, bytes })) = got {
                    break (from, group, bytes);
                }
            }
        };
        let (from, group, bytes) = timeout(WAIT, received).await.expect("no reconnect");
        assert_eq!((from, group), (1, 1));
        assert_eq!(bytes, b"after");
        one.shutdown().await;
        two.shutdown().await;
    }

    /// Runs a call with a client identity and CA, returning the error text.
    async fn refused(server: SocketAddr, identity: &Identity, ca: &ClusterCa) -> String {
        let result = async {
            let client = Client::connect(server, identity, ca).await?;
            client.call(&request(1, ClientOp::Leader)).await
        };
        match timeout(WAIT, result).await.unwrap() {
            Ok(response) => panic!("expected a refusal, got {response:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn unauthenticated_clients_are_refused() {
        let pki = Pki::new(CLUSTER);
        let (two, mut inbound) = pki.bind(2, loopback()).await;
        let addr = two.local_addr();
        let stranger = Pki::new(CLUSTER);
        let foreign = Pki::new("other-cluster");

        // A certificate from another CA.
        let message = refused(addr, &foreign.client, pki.ca()).await;
        assert_eq!(
            message,
            format!(
                "connection to {addr}: the peer refused our certificate (tls alert 48): aborted \
                 by peer: the cryptographic handshake failed: error 48: invalid peer \
                 certificate: UnknownIssuer"
            )
        );
        // Even one for the same cluster name and role: a CA's name is not its key.
        let message = refused(addr, &stranger.client, pki.ca()).await;
        assert!(
            message.contains("the peer refused our certificate (tls alert 51)"),
            "{message}"
        );
        assert!(message.contains("BadSignature"), "{message}");
        let message = refused(addr, stranger.node(1), pki.ca()).await;
        assert!(
            message.contains("the peer refused our certificate"),
            "{message}"
        );

        // A server whose certificate is from another CA.
        let message = refused(addr, &foreign.client, foreign.ca()).await;
        assert!(
            message.contains("we refused the peer's certificate (tls alert 48)"),
            "{message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");

        // No client certificate at all.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca().cert().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut bare = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        bare.alpn_protocols = vec![tls::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(bare).unwrap();
        let mut endpoint = Endpoint::client(loopback()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let error = async {
            let connection = connect(&endpoint, addr, WAIT).await?;
            let (mut send, mut recv) = connection
                .open_bi()
                .await
                .map_err(|e| connection_error(addr, &e))?;
            let frame = Frame::Request(request(1, ClientOp::Leader));
            let written = wire::write_frame(&mut send, &frame).await;
            let read = wire::read_frame(&mut recv).await;
            match connection.close_reason() {
                Some(e) => Err::<(), _>(connection_error(addr, &e)),
                None => panic!("not refused: {written:?} {read:?}"),
            }
        };
        let message = timeout(WAIT, error).await.unwrap().unwrap_err().to_string();
        assert!(
            message.contains("the peer refused our certificate (tls alert 116)"),
            "{message}"
        );

        assert_quiet(&mut inbound).await;
        two.shutdown().await;
    }

    #[tokio::test]
    async fn client_certificates_cannot_open_peer_streams() {
        let pki = Pki::new(CLUSTER);
        let (two, mut inbound) = pki.bind(2, loopback()).await;
        let connection = pki.raw_connection(&pki.client, two.local_addr()).await;
        let mut send = connection.open_uni().await.unwrap();
        let hello = Frame::PeerHello {
            cluster: CLUSTER.into(),
            group: 1,
            from: 1,
        };
        wire::write_frame(&mut send, &hello).await.unwrap();
        let raft = Frame::Raft {
            group: 1,
            message: b"forged".to_vec(),
        };
        wire::write_frame(&mut send, &raft).await.unwrap();

        let closed = timeout(WAIT, connection.closed()).await.unwrap();
        let ConnectionError::ApplicationClosed(close) = closed else {
            panic!("expected an application close, got {closed:?}");
        };
        assert_eq!(close.error_code, VarInt::from_u32(close_code::FORBIDDEN));
        assert_eq!(
            &close.reason[..],
            b"peer streams require a node certificate"
        );
        assert_quiet(&mut inbound).await;
        two.shutdown().await;
    }

    #[tokio::test]
    async fn malformed_frames_get_errors_not_panics() {
        let pki = Pki::new(CLUSTER);
        let (two, inbound) = pki.bind(2, loopback()).await;
        let server = serve(inbound);
        let addr = two.local_addr();
        let connection = pki.raw_connection(pki.node(1), addr).await;

        // Request streams: answered with a MALFORMED error.
        let request_stream = |bytes: Vec<u8>| {
            let connection = connection.clone();
            async move {
                let (mut send, mut recv) = connection.open_bi().await.unwrap();
                send.write_all(&bytes).await.unwrap();
                let _ = send.finish();
                match wire::read_frame(&mut recv).await.unwrap() {
                    Some(Frame::Response(Response {
                        id,
                        result: ClientResult::Error { code, message },
                    })) => {
                        assert_eq!(id, RequestId::default());
                        assert_eq!(code, error_code::MALFORMED);
                        message
                    }
                    other => panic!("expected an error response, got {other:?}"),
                }
            }
        };
        let oversize = request_stream(vec![0xff; 8]).await;
        assert_eq!(
            oversize,
            "frame length 4294967295 exceeds the limit of 16777216 bytes"
        );
        let mut bad_version = encode_request(1);
        bad_version[4] = 9;
        let message = request_stream(bad_version).await;
        assert_eq!(
            message,
            "unsupported protocol version 9 (this build speaks 1)"
        );
        let mut cut = encode_request(1);
        cut.truncate(cut.len() - 1);
        let message = request_stream(cut).await;
        assert_eq!(message, "stream ended inside a frame (31 of 32 bytes)");
        let raft = wire::encode(&Frame::Raft {
            group: 1,
            message: vec![],
        });
        let message = request_stream(raft).await;
        assert_eq!(message, "expected a request frame, got raft");

        // Peer streams: stopped.
        let peer_stream = |frames: Vec<Vec<u8>>| {
            let connection = connection.clone();
            async move {
                let mut send = connection.open_uni().await.unwrap();
                for frame in frames {
                    // The server may stop the stream before everything is written.
                    if send.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                timeout(WAIT, send.stopped()).await.unwrap().unwrap()
            }
        };
        let hello = |from: u64| {
            wire::encode(&Frame::PeerHello {
                cluster: CLUSTER.into(),
                group: 1,
                from,
            })
        };
        let protocol = Some(VarInt::from_u32(close_code::PROTOCOL));
        let forbidden = Some(VarInt::from_u32(close_code::FORBIDDEN));
        assert_eq!(peer_stream(vec![vec![0xff; 8]]).await, protocol);
        assert_eq!(
            peer_stream(vec![hello(1), vec![1, 0, 0, 0, 0, 0, 0]]).await,
            protocol
        );
        assert_eq!(
            peer_stream(vec![hello(1), encode_request(1)]).await,
            protocol
        );
        // Node 1's certificate, claiming to be node 3.
        assert_eq!(peer_stream(vec![hello(3), encode_raft(1)]).await, forbidden);
        let other_cluster = wire::encode(&Frame::PeerHello {
            cluster: "other".into(),
            group: 1,
            from: 1,
        });
        assert_eq!(
            peer_stream(vec![other_cluster, encode_raft(1)]).await,
            forbidden
        );
        // A raft frame for another group than the stream's hello.
        assert_eq!(peer_stream(vec![hello(1), encode_raft(2)]).await, protocol);

        // The server still serves.
        let client = Client::connect(addr, &pki.client, pki.ca()).await.unwrap();
        assert_eq!(
            client
                .call(&request(9, ClientOp::Jobs))
                .await
                .unwrap()
                .result,
            ClientResult::Ok
        );
        client.close().await;
        two.shutdown().await;
        let peers = timeout(WAIT, server).await.unwrap().unwrap();
        assert_eq!(
            peers,
            [Role::Client {
                user: "alice".into()
            }]
        );
    }

    fn encode_request(seq: u64) -> Vec<u8> {
        wire::encode(&Frame::Request(request(seq, ClientOp::Jobs)))
    }

    fn encode_raft(group: u64) -> Vec<u8> {
        wire::encode(&Frame::Raft {
            group,
            message: b"m".to_vec(),
        })
    }

    #[tokio::test]
    async fn bind_checks_address_and_identity() {
        let pki = Pki::new(CLUSTER);
        let cluster = || CLUSTER.to_string();
        let config = TransportConfig::default;
        let public: SocketAddr = "10.1.2.3:0".parse().unwrap();
        let error = Transport::bind(public, pki.node(1), pki.ca(), cluster(), 1, config())
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "refusing to bind non-loopback address 10.1.2.3:0 (allow_non_loopback is off)"
        );
        let error = Transport::bind(loopback(), pki.node(1), pki.ca(), cluster(), 2, config())
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "identity mismatch: certificate is for node 1 of cluster \"test-cluster\", \
             transport for node 2 of \"test-cluster\""
        );
        let error = Transport::bind(loopback(), &pki.client, pki.ca(), cluster(), 1, config())
            .await
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("certificate is for client alice"),
            "{error}"
        );
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0);
        // ::1 is allowed; the machine may lack IPv6, so only the loopback check is asserted.
        if let Err(e) = Transport::bind(v6, pki.node(1), pki.ca(), cluster(), 1, config()).await {
            assert!(matches!(e, TransportError::Bind { .. }), "{e}");
        }
    }
}
