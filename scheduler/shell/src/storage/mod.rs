//! Durable Raft storage: the log, the hard state, the conf state and snapshots of one Raft
//! group, behind [`LogStore`].
//!
//! `raft::RawNode` reads through [`raft::Storage`]; the replica writes through [`LogStore`]
//! while handling a `Ready`: it buffers entries and states with `append`/`set_*`, then calls
//! [`LogStore::sync`] once per `Ready` (group commit: one fsync for everything the Ready
//! carried). Reads must see buffered writes immediately (raft reads back what it appended).
//!
//! Implementations:
//! - [`redb_store::RedbStore`]: the real store, one redb file per process; every key starts
//!   with the group id so one process can host several groups (one per jurisdiction).
//! - [`sim_store::SimStore`]: a test double for the deterministic fault simulation, with the
//!   crash semantics of a real disk (unsynced writes are lost, the last write may be torn).

mod cache;
mod record;
pub mod redb_store;
pub mod sim_store;
#[cfg(test)]
mod test_support;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

/// A Raft group's id. Part of every storage key and every wire message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u64);

/// Why storage failed. Corruption is never silently applied: it is reported with where it was
/// found, and the process refuses to start on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record failed its checksum or could not be decoded.
    #[error("corrupt raft storage in {location}: {detail}")]
    Corrupt {
        /// File and key, e.g. `/var/lib/sovrad/raft.redb group 1 entry 42`.
        location: String,
        /// What was wrong.
        detail: String,
    },
    /// The underlying store failed (I/O, full disk, ...).
    #[error("raft storage I/O error: {0}")]
    Io(String),
    /// A write that would break the log's invariants (a gap, overwriting compacted or committed
    /// entries, a commit past the last entry, ...). A bug in the caller; nothing was buffered.
    #[error("raft storage rejected a write: {0}")]
    Rejected(String),
}

/// Write side of a group's Raft storage. Read side is [`raft::Storage`].
pub trait LogStore: raft::Storage {
    /// Appends entries, first removing any existing entries at or after the first new index
    /// (a new leader overwrote them). Buffered until [`LogStore::sync`].
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;
    /// Sets the hard state (term, vote, commit). Buffered until [`LogStore::sync`].
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError>;
    /// Sets only the commit index of the hard state. Buffered until [`LogStore::sync`].
    fn set_commit(&mut self, commit: u64) -> Result<(), StoreError>;
    /// Installs a snapshot received from the leader: replaces the log, the conf state and
    /// the snapshot. Buffered until [`LogStore::sync`].
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// Records a snapshot of the applied state at `index` (with its term and conf state),
    /// taken by this replica, and compacts the log up to `index` (entries after it stay).
    /// The stored conf state becomes `conf_state`: a restarted replica applies from the
    /// snapshot on, replaying later conf changes. Buffered until [`LogStore::sync`].
    fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: &ConfState,
        data: Vec<u8>,
    ) -> Result<(), StoreError>;
    /// Makes every buffered write durable (one fsync).
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Whether raft asked for a snapshot this store could not give since the last call (too
    /// old, or taken before the peer joined): the replica then takes a fresh one.
    fn take_snapshot_wanted(&mut self) -> bool;
    /// The latest snapshot stored (empty metadata if none).
    fn latest_snapshot(&self) -> Snapshot;
    /// Hard state as stored (including buffered writes).
    fn hard_state(&self) -> HardState;
    /// Conf state as stored (including buffered writes).
    fn conf_state(&self) -> ConfState;
}
