//! sovrad: the scheduler core driven by Raft, with durable storage and QUIC transport.
//!
//! - [`replica`]: one Raft group's replica, sans-IO (RawNode + the scheduler state machine).
//! - [`storage`]: the durable Raft log ([`storage::redb_store`]) and the simulation's store.

pub mod replica;
pub mod storage;
