//! The in-memory view of one group's Raft storage, shared by both stores.
//!
//! [`Cache`] holds what raft reads (hard state, conf state, the latest snapshot, the entries
//! after it) plus the buffered writes ([`Op`]s) not yet made durable. It answers every
//! [`raft::Storage`] read, so reads never touch the disk, and it enforces the log's invariants
//! on every write, the same ones [`Cache::load`] checks on open, so a store never writes what
//! it would later refuse to open:
//!
//! - entries are contiguous, starting right after the snapshot index;
//! - terms never decrease along the log (the snapshot's term counts as the term before it);
//! - `snapshot index <= hard state commit <= last index`;
//! - committed and compacted entries are never overwritten.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::record::{decode, location, Op, RecordKey};
use super::{GroupId, StoreError};

/// The raw records of one group, as read from the disk, before verification.
#[derive(Debug, Default)]
pub(crate) struct RawRecords {
    /// `(key index, record)` in ascending key order.
    pub(crate) entries: Vec<(u64, Vec<u8>)>,
    pub(crate) hard_state: Option<Vec<u8>>,
    pub(crate) conf_state: Option<Vec<u8>>,
    pub(crate) snapshot: Option<Vec<u8>>,
}

impl RawRecords {
    /// The slot of a single-valued record.
    pub(crate) fn meta_mut(&mut self, key: RecordKey) -> Option<&mut Option<Vec<u8>>> {
        match key {
            RecordKey::Entry(_) => None,
            RecordKey::HardState => Some(&mut self.hard_state),
            RecordKey::ConfState => Some(&mut self.conf_state),
            RecordKey::Snapshot => Some(&mut self.snapshot),
        }
    }
}

/// One group's storage as raft sees it, plus the writes not yet synced.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache {
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot (metadata and data); index 0 if none.
    snapshot: Snapshot,
    /// `entries[i].index == snapshot index + 1 + i`.
    entries: Vec<Entry>,
    /// Writes since the last sync, in order.
    pending: Vec<Op>,
    /// Raft asked for a snapshot the store could not give (too old, or its conf state
    /// lacks the peer it is for): the replica should take a fresh one.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl Cache {
    /// Verifies `records` (checksums, decoding, the invariants in the module docs) and builds
    /// the cache. `origin` names the file for error locations.
    pub(crate) fn load(
        origin: &str,
        group: GroupId,
        records: RawRecords,
    ) -> Result<Cache, StoreError> {
        fn meta<M: protobuf::Message + Default>(
            origin: &str,
            group: GroupId,
            key: RecordKey,
            record: &Option<Vec<u8>>,
        ) -> Result<M, StoreError> {
            match record {
                Some(record) => decode(origin, group, key, record),
                None => Ok(M::default()),
            }
        }
        let hard_state: HardState = meta(origin, group, RecordKey::HardState, &records.hard_state)?;
        let conf_state: ConfState = meta(origin, group, RecordKey::ConfState, &records.conf_state)?;
        let snapshot: Snapshot = meta(origin, group, RecordKey::Snapshot, &records.snapshot)?;

        let snapshot_index = snapshot.get_metadata().index;
        let mut term_previous = snapshot.get_metadata().term;
        let mut entries = Vec::with_capacity(records.entries.len());
        for (key_index, record) in &records.entries {
            let key = RecordKey::Entry(*key_index);
            let corrupt = |detail: String| StoreError::Corrupt {
                location: location(origin, group, key),
                detail,
            };
            let entry: Entry = decode(origin, group, key, record)?;
            if entry.index != *key_index {
                return Err(corrupt(format!("stored entry has index {}", entry.index)));
            }
            let index_expected = snapshot_index + 1 + entries.len() as u64;
            if *key_index != index_expected {
                return Err(corrupt(format!(
                    "log is not contiguous: expected entry {index_expected} next \
                     (snapshot index {snapshot_index})"
                )));
            }
            if entry.term < term_previous {
                return Err(corrupt(format!(
                    "term {} is below the previous entry's term {term_previous}",
                    entry.term
                )));
            }
            term_previous = entry.term;
            entries.push(entry);
        }

        let cache = Cache {
            hard_state,
            conf_state,
            snapshot,
            entries,
            pending: Vec::new(),
            snapshot_wanted: std::cell::Cell::new(false),
        };
        let commit = cache.hard_state.commit;
        if commit > cache.last_index() || commit < snapshot_index {
            return Err(StoreError::Corrupt {
                location: location(origin, group, RecordKey::HardState),
                detail: format!(
                    "commit {commit} is outside [snapshot index {snapshot_index}, \
                     last index {}]",
                    cache.last_index()
                ),
            });
        }
        Ok(cache)
    }

    /// The writes since the last sync, in order.
    pub(crate) fn pending(&self) -> &[Op] {
        &self.pending
    }

    /// Forgets the writes since the last sync (they were made durable, or lost in a crash).
    pub(crate) fn take_pending(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.pending)
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |entry| entry.index)
    }

    /// The term of `index` if it is the snapshot index or in the log.
    fn term_known(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        let offset = index.checked_sub(self.first_index())?;
        let offset = usize::try_from(offset).ok()?;
        self.entries.get(offset).map(|entry| entry.term)
    }

    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub(crate) fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub(crate) fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    // Writes. Each checks everything first and changes nothing when it returns an error.

    pub(crate) fn append(&mut self, entries_new: &[Entry]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries_new.first(), entries_new.last()) else {
            return Ok(());
        };
        let index_first = first.index;
        if index_first < self.first_index() {
            return Err(rejected(format!(
                "append at {index_first} would overwrite compacted entries \
                 (first index {})",
                self.first_index()
            )));
        }
        if index_first > self.last_index() + 1 {
            return Err(rejected(format!(
                "append at {index_first} would leave a gap after last index {}",
                self.last_index()
            )));
        }
        if index_first <= self.hard_state.commit {
            return Err(rejected(format!(
                "append at {index_first} would overwrite committed entries (commit {})",
                self.hard_state.commit
            )));
        }
        let mut term_previous = self.term_known(index_first - 1).unwrap_or_default();
        for (offset, entry) in entries_new.iter().enumerate() {
            if entry.index != index_first + offset as u64 {
                return Err(rejected(format!(
                    "appended entries are not contiguous: entry {} follows {}",
                    entry.index,
                    index_first + offset as u64 - 1
                )));
            }
            if entry.term < term_previous {
                return Err(rejected(format!(
                    "appended entry {} has term {}, below the previous term {term_previous}",
                    entry.index, entry.term
                )));
            }
            term_previous = entry.term;
        }

        if index_first <= self.last_index() {
            self.pending.push(Op::Truncate { index_first });
            self.entries
                .truncate((index_first - self.first_index()) as usize);
        }
        self.pending
            .extend(entries_new.iter().cloned().map(Op::PutEntry));
        self.entries.extend_from_slice(entries_new);
        debug_assert_eq!(self.last_index(), last.index);
        Ok(())
    }

    pub(crate) fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), StoreError> {
        if hard_state.commit > self.last_index() {
            return Err(rejected(format!(
                "commit {} is past the last index {} (append the entries first)",
                hard_state.commit,
                self.last_index()
            )));
        }
        if hard_state.commit < self.snapshot_index() {
            return Err(rejected(format!(
                "commit {} is below the snapshot index {}",
                hard_state.commit,
                self.snapshot_index()
            )));
        }
        if hard_state.term < self.hard_state.term {
            return Err(rejected(format!(
                "term {} is below the stored term {}",
                hard_state.term, self.hard_state.term
            )));
        }
        self.hard_state = hard_state.clone();
        self.pending.push(Op::PutHardState(hard_state.clone()));
        Ok(())
    }

    pub(crate) fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit;
        self.set_hard_state(&hard_state)
    }

    /// Installs a snapshot from the leader. One at or below the current snapshot index is out
    /// of date and ignored, as `raft::MemStorage` does (it returns `SnapshotOutOfDate`, which
    /// raft never acts on: it only hands over snapshots newer than its commit index).
    pub(crate) fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let metadata = snapshot.get_metadata();
        if metadata.index <= self.snapshot_index() {
            return Ok(());
        }
        if metadata.index < self.hard_state.commit {
            return Err(rejected(format!(
                "snapshot index {} is below commit {}: it would drop committed entries",
                metadata.index, self.hard_state.commit
            )));
        }
        let mut hard_state = self.hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = metadata.index;
        self.hard_state = hard_state.clone();
        self.conf_state = metadata.get_conf_state().clone();
        self.snapshot = snapshot.clone();
        self.entries.clear();
        self.pending.push(Op::InstallSnapshot {
            snapshot: snapshot.clone(),
            hard_state,
            conf_state: self.conf_state.clone(),
        });
        Ok(())
    }

    /// Records a snapshot taken at `index` and compacts the log up to it; `conf_state` becomes
    /// the stored conf state. `index` must be in `[snapshot index, last index]` so its term is
    /// known; the commit index is raised to `index` if lower (a snapshot covers applied, hence
    /// committed, entries).
    pub(crate) fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: &ConfState,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        let Some(term) = self.term_known(index) else {
            return Err(rejected(format!(
                "snapshot at {index}: its term is unknown (snapshot index {}, last index {})",
                self.snapshot_index(),
                self.last_index()
            )));
        };
        if self.hard_state.commit < index {
            // Raise the commit first: a snapshot record must never be kept without it.
            self.set_commit(index)?;
        }
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(conf_state.clone());
        self.entries
            .drain(..(index - self.snapshot_index()) as usize);
        self.snapshot = snapshot.clone();
        self.conf_state = conf_state.clone();
        self.pending.push(Op::PutSnapshot(snapshot));
        debug_assert_eq!(self.first_index(), index + 1);
        Ok(())
    }

    // Reads, with the semantics of `raft::MemStorage`.

    pub(crate) fn initial_state(&self) -> RaftState {
        RaftState::new(self.hard_state.clone(), self.conf_state.clone())
    }

    /// Entries in `[low, high)`, at most `max_size` bytes but at least one. `MemStorage`
    /// panics on `high > last index + 1`; this returns `Unavailable` instead.
    pub(crate) fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.first_index();
        let mut entries = self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }

    pub(crate) fn term(&self, index: u64) -> raft::Result<u64> {
        if let Some(term) = self.term_known(index) {
            return Ok(term);
        }
        if index < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        Err(raft::Error::Store(StorageError::Unavailable))
    }

    /// The latest snapshot, or `SnapshotTemporarilyUnavailable` if it is older than
    /// `request_index` or its conf state does not name peer `to` (a learner added since: it
    /// would refuse it). Then the replica creates a newer one ([`Cache::take_snapshot_wanted`]).
    pub(crate) fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let cs = self.snapshot.get_metadata().get_conf_state();
        let names_peer = cs.voters.contains(&to) || cs.learners.contains(&to);
        if self.snapshot_index() < request_index || !names_peer {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }

    /// Whether raft asked for a snapshot since the last call.
    pub(crate) fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }
}

fn rejected(detail: String) -> StoreError {
    StoreError::Rejected(detail)
}

/// Implements [`raft::Storage`] and [`super::LogStore`] for a store with a `cache: Cache` field
/// and an inherent `fn sync_pending(&mut self) -> Result<(), StoreError>` that makes
/// `self.cache.pending()` durable (called only when there is something pending) and then
/// forgets it.
macro_rules! impl_storage_via_cache {
    ($store:ty) => {
        impl raft::Storage for $store {
            fn initial_state(&self) -> raft::Result<raft::RaftState> {
                Ok(self.cache.initial_state())
            }

            fn entries(
                &self,
                low: u64,
                high: u64,
                max_size: impl Into<Option<u64>>,
                context: raft::GetEntriesContext,
            ) -> raft::Result<Vec<raft::eraftpb::Entry>> {
                self.cache.entries(low, high, max_size.into(), context)
            }

            fn term(&self, index: u64) -> raft::Result<u64> {
                self.cache.term(index)
            }

            fn first_index(&self) -> raft::Result<u64> {
                Ok(self.cache.first_index())
            }

            fn last_index(&self) -> raft::Result<u64> {
                Ok(self.cache.last_index())
            }

            fn snapshot(
                &self,
                request_index: u64,
                to: u64,
            ) -> raft::Result<raft::eraftpb::Snapshot> {
                self.cache.snapshot(request_index, to)
            }
        }

        impl $crate::storage::LogStore for $store {
            fn append(
                &mut self,
                entries: &[raft::eraftpb::Entry],
            ) -> Result<(), $crate::storage::StoreError> {
                self.cache.append(entries)
            }

            fn set_hard_state(
                &mut self,
                hard_state: &raft::eraftpb::HardState,
            ) -> Result<(), $crate::storage::StoreError> {
                self.cache.set_hard_state(hard_state)
            }

            fn set_commit(&mut self, commit: u64) -> Result<(), $crate::storage::StoreError> {
                self.cache.set_commit(commit)
            }

            fn apply_snapshot(
                &mut self,
                snapshot: &raft::eraftpb::Snapshot,
            ) -> Result<(), $crate::storage::StoreError> {
                self.cache.apply_snapshot(snapshot)
            }

            fn create_snapshot(
                &mut self,
                index: u64,
                conf_state: &raft::eraftpb::ConfState,
                data: Vec<u8>,
            ) -> Result<(), $crate::storage::StoreError> {
                self.cache.create_snapshot(index, conf_state, data)
            }

            fn sync(&mut self) -> Result<(), $crate::storage::StoreError> {
                if self.cache.pending().is_empty() {
                    return Ok(());
                }
                self.sync_pending()
            }

            fn latest_snapshot(&self) -> raft::eraftpb::Snapshot {
                self.cache.latest_snapshot().clone()
            }

            fn take_snapshot_wanted(&mut self) -> bool {
                self.cache.take_snapshot_wanted()
            }

            fn hard_state(&self) -> raft::eraftpb::HardState {
                self.cache.hard_state().clone()
            }

            fn conf_state(&self) -> raft::eraftpb::ConfState {
                self.cache.conf_state().clone()
            }
        }
    };
}
pub(crate) use impl_storage_via_cache;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::encode;
    use crate::storage::test_support::{entry, hard_state, snapshot};

    const GROUP: GroupId = GroupId(1);

    /// Stored records, written with valid checksums: a snapshot `(index, term)` (none if
    /// index 0), entries `(key index, entry index, term)`, a hard state commit.
    fn check(snapshot_at: (u64, u64), log: &[(u64, u64, u64)], commit: u64) -> String {
        let mut records = RawRecords::default();
        if snapshot_at.0 > 0 {
            let snap = snapshot(snapshot_at.0, snapshot_at.1, &[1], "");
            records.snapshot = Some(encode(GROUP, RecordKey::Snapshot, &snap).expect("encode"));
        }
        for &(key, index, term) in log {
            let record = encode(GROUP, RecordKey::Entry(key), &entry(index, term));
            records.entries.push((key, record.expect("encode")));
        }
        let hs = encode(GROUP, RecordKey::HardState, &hard_state(1, 0, commit));
        records.hard_state = Some(hs.expect("encode"));
        match Cache::load("f", GROUP, records) {
            Ok(cache) => format!(
                "ok first {} last {}",
                cache.first_index(),
                cache.last_index()
            ),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn load_verifies_the_log() {
        let cases = [
            ("empty", check((0, 0), &[], 0)),
            ("log", check((0, 0), &[(1, 1, 1), (2, 2, 1)], 2)),
            ("after snapshot", check((4, 2), &[(5, 5, 2), (6, 6, 3)], 4)),
            ("snapshot only", check((4, 2), &[], 4)),
            (
                "key and index differ",
                check((0, 0), &[(1, 1, 1), (2, 3, 1)], 1),
            ),
            ("gap", check((0, 0), &[(1, 1, 1), (3, 3, 1)], 1)),
            ("gap after snapshot", check((4, 2), &[(6, 6, 2)], 4)),
            (
                "compacted entry left",
                check((4, 2), &[(4, 4, 2), (5, 5, 2)], 4),
            ),
            ("term decreases", check((0, 0), &[(1, 1, 2), (2, 2, 1)], 1)),
            ("term below snapshot", check((4, 2), &[(5, 5, 1)], 4)),
            ("commit past last", check((0, 0), &[(1, 1, 1)], 2)),
            ("commit below snapshot", check((4, 2), &[(5, 5, 2)], 3)),
        ];
        let outcomes: Vec<String> = cases
            .iter()
            .map(|(name, outcome)| format!("{name}: {outcome}"))
            .collect();
        assert_eq!(
            outcomes,
            [
                "empty: ok first 1 last 0",
                "log: ok first 1 last 2",
                "after snapshot: ok first 5 last 6",
                "snapshot only: ok first 5 last 4",
                "key and index differ: corrupt raft storage in f group 1 entry 2: stored entry \
                 has index 3",
                "gap: corrupt raft storage in f group 1 entry 3: log is not contiguous: expected \
                 entry 2 next (snapshot index 0)",
                "gap after snapshot: corrupt raft storage in f group 1 entry 6: log is not \
                 contiguous: expected entry 5 next (snapshot index 4)",
                "compacted entry left: corrupt raft storage in f group 1 entry 4: log is not \
                 contiguous: expected entry 5 next (snapshot index 4)",
                "term decreases: corrupt raft storage in f group 1 entry 2: term 1 is below the \
                 previous entry's term 2",
                "term below snapshot: corrupt raft storage in f group 1 entry 5: term 1 is below \
                 the previous entry's term 2",
                "commit past last: corrupt raft storage in f group 1 hard state: commit 2 is \
                 outside [snapshot index 0, last index 1]",
                "commit below snapshot: corrupt raft storage in f group 1 hard state: commit 3 \
                 is outside [snapshot index 4, last index 5]",
            ]
        );
    }
}
