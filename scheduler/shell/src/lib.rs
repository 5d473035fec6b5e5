//! sovrad: the scheduler core driven by Raft, with durable storage and QUIC transport.
//!
//! - [`replica`]: one Raft group's replica, sans-IO (RawNode + the scheduler state machine);
//!   `agents` is the leader's desk for node agents (job index, long polls, heartbeat leases).
//! - [`storage`]: the durable Raft log ([`storage::redb_store`]) and the simulation's store.
//! - [`node`]: the `sovrad` process: the event loop around a replica, store and transport.
//! - [`tls`], [`wire`], [`transport`]: cluster PKI, the versioned wire protocol, and QUIC
//!   with mutual TLS for peers and clients.

mod agents;
pub mod client;
pub mod local;
pub mod node;
pub mod replica;
pub mod storage;
pub mod tls;
pub mod transport;
pub mod wire;
