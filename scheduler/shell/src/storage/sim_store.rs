//! A test double for the deterministic fault simulation: [`SimStore`] behaves like
//! [`super::redb_store::RedbStore`] but its "disk" is an in-memory map of records.
//!
//! It is compiled in normal builds (not only under `cfg(test)`) because the simulation harness
//! in `tests/` uses it. It shares the cache and the record format with the real store, so the
//! same writes are accepted or rejected, and the same corruption is detected on open.
//!
//! # Crash model
//!
//! - The disk holds checksummed records, as the real store does. Only [`super::LogStore::sync`]
//!   writes to it: it applies every pending op, in order.
//! - [`SimStore::crash`] with `torn = None` loses every op since the last sync: the process
//!   died before the fsync began.
//! - With `torn = Some(seed)`, the first `k` of the `n` unsynced ops survive, with
//!   `k = splitmix64(seed) % (n + 1)` (no global RNG: the seed alone decides). This models a
//!   crash while a batch was being written: records reach the disk in order and the crash
//!   cuts that stream between two ops. `k = n` is a crash after the fsync finished but before
//!   `sync` returned. A half-written record is not modelled: on open it would be reported as
//!   corruption, never skipped (use [`SimStore::corrupt_entry`] for that). Real redb is
//!   gentler (a batch is one transaction: all or nothing), so a replica that survives this
//!   model survives redb.
//! - Every prefix is a valid store. Each op keeps the store's invariants on its own (see
//!   `cache.rs`): one log entry per op, a truncation is one op, a hard state is accepted only
//!   if its commit is at most the last entry already written (so entries must be appended
//!   before the hard state that commits them), and installing or creating a snapshot is one
//!   op, all or nothing. So a surviving prefix never holds a commit index past its last
//!   entry, nor a snapshot without its commit index.
//! - Nothing that survives was acknowledged: raft sends the messages that depend on a write
//!   (votes, append responses) only after `sync` returns, so keeping an unacknowledged
//!   prefix is as safe as losing it.
//!
//! [`SimStore::corrupt_entry`] damages a record on the disk (bit rot); the next open
//! ([`SimStore::reopen`], or the open inside [`SimStore::crash`]) reports
//! [`StoreError::Corrupt`].

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::cache::{impl_storage_via_cache, Cache, RawRecords};
use super::record::{RecordKey, RecordSink};
use super::{GroupId, StoreError};

/// What error locations call the simulated disk.
const ORIGIN: &str = "sim";
/// The group id in record checksums (the simulation runs one group).
const GROUP: GroupId = GroupId(0);

/// One group's Raft storage on a simulated disk. See the module docs for the crash model.
#[derive(Debug, Default)]
pub struct SimStore {
    disk: SimDisk,
    cache: Cache,
}

/// The durable records of one group.
#[derive(Clone, Debug, Default)]
struct SimDisk {
    entries: BTreeMap<u64, Vec<u8>>,
    /// Single-valued records by [`RecordKey::meta_name`].
    meta: BTreeMap<&'static str, Vec<u8>>,
}

impl SimDisk {
    fn records(&self) -> RawRecords {
        let mut records = RawRecords {
            entries: self
                .entries
                .iter()
                .map(|(index, record)| (*index, record.clone()))
                .collect(),
            ..RawRecords::default()
        };
        for key in RecordKey::META {
            if let (Some(name), Some(slot)) = (key.meta_name(), records.meta_mut(key)) {
                *slot = self.meta.get(name).cloned();
            }
        }
        records
    }
}

impl RecordSink for SimDisk {
    fn put(&mut self, key: RecordKey, record: &[u8]) -> Result<(), StoreError> {
        match (key, key.meta_name()) {
            (RecordKey::Entry(index), _) => {
                self.entries.insert(index, record.to_vec());
            }
            (_, Some(name)) => {
                self.meta.insert(name, record.to_vec());
            }
            (_, None) => {}
        }
        Ok(())
    }

    fn delete_entries(&mut self, indexes: RangeInclusive<u64>) -> Result<(), StoreError> {
        let mut after = self.entries.split_off(indexes.start());
        if let Some(end_next) = indexes.end().checked_add(1) {
            let mut kept = after.split_off(&end_next);
            self.entries.append(&mut kept);
        }
        Ok(())
    }
}

impl SimStore {
    /// An empty store (the same as `default()`; the simulation harness names it so).
    pub fn new() -> SimStore {
        SimStore::default()
    }

    /// Opens the disk as a restarted process would: only synced writes, every record verified.
    /// `self` is unchanged.
    pub fn reopen(&self) -> Result<SimStore, StoreError> {
        let cache = Cache::load(ORIGIN, GROUP, self.disk.records())?;
        Ok(SimStore {
            disk: self.disk.clone(),
            cache,
        })
    }

    /// Simulates a power loss and a restart: the unsynced writes are lost, except for a
    /// prefix chosen by `torn` (see the module docs), and the disk is opened again (as
    /// [`SimStore::reopen`] does). Afterwards `self` is the same restarted store (or, if the
    /// open failed, holds the crashed disk and should be dropped).
    pub fn crash(&mut self, torn: Option<u64>) -> Result<SimStore, StoreError> {
        let pending = self.cache.take_pending();
        let kept = match torn {
            None => 0,
            Some(seed) => (splitmix64(seed) % (pending.len() as u64 + 1)) as usize,
        };
        for op in &pending[..kept] {
            op.write_to(GROUP, &mut self.disk)?;
        }
        let restarted = self.reopen()?;
        self.cache = restarted.cache.clone();
        Ok(restarted)
    }

    /// Damages the durable record of entry `index` (flips a bit), so that the next open
    /// reports [`StoreError::Corrupt`]. Returns whether such a record was on the disk. The
    /// cache is untouched: the damage shows only after a restart.
    pub fn corrupt_entry(&mut self, index: u64) -> bool {
        match self
            .disk
            .entries
            .get_mut(&index)
            .and_then(|record| record.last_mut())
        {
            Some(byte) => {
                *byte ^= 0x01;
                true
            }
            None => false,
        }
    }

    /// Writes the pending ops to the disk, in order.
    fn sync_pending(&mut self) -> Result<(), StoreError> {
        for op in self.cache.pending() {
            op.write_to(GROUP, &mut self.disk)?;
        }
        self.cache.take_pending();
        Ok(())
    }
}

impl_storage_via_cache!(SimStore);

/// One step of splitmix64: a tiny, well-mixed, deterministic function of `seed`.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::storage::test_support::{
        check_durability, check_raft_node, check_semantics, conf, dump, entries, hard_state,
    };
    use crate::storage::LogStore;

    #[test]
    fn semantics() {
        check_semantics(SimStore::new(), |mut store| store.crash(None));
    }

    #[test]
    fn durability() {
        check_durability(SimStore::new(), |mut store| store.crash(None));
    }

    #[test]
    fn raft_node() {
        check_raft_node(SimStore::new(), |mut node| {
            std::mem::take(node.mut_store()).crash(None)
        });
    }

    /// A store with entries 1..=4 and commit 2 synced, and seven unsynced ops: a truncation
    /// at 3, entries 3..=6 of term 2, a hard state with commit 5, a snapshot at 4.
    fn torn_store() -> SimStore {
        let mut store = SimStore::new();
        store.append(&entries(1, 4, 1)).expect("append");
        store
            .set_hard_state(&hard_state(1, 1, 2))
            .expect("hard state");
        store.sync().expect("sync");
        store.append(&entries(3, 6, 2)).expect("overwrite");
        store
            .set_hard_state(&hard_state(2, 1, 5))
            .expect("hard state");
        store
            .create_snapshot(4, &conf(&[1]), b"s4".to_vec())
            .expect("snapshot");
        assert_eq!(store.cache.pending().len(), 7);
        store
    }

    #[test]
    fn torn_crash_keeps_a_prefix_of_the_unsynced_ops() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let restarted = torn_store().crash(Some(seed)).expect("a torn store opens");
            outcomes.insert(dump(&restarted));
        }
        let prefixes: BTreeSet<String> = [
            r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:1 4:1"#,
            r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1"#,
            r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:2"#,
            r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:2 4:2"#,
            r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:2 4:2 5:2"#,
            r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:2 4:2 5:2 6:2"#,
            r#"hs 2/1/5 conf [] snap 0/0 [] "" log 1:1 2:1 3:2 4:2 5:2 6:2"#,
            r#"hs 2/1/5 conf [1] snap 4/2 [1] "s4" log 5:2 6:2"#,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            outcomes, prefixes,
            "every prefix, and only prefixes, survive"
        );

        let mut first = torn_store();
        let mut second = torn_store();
        let restarted = first.crash(Some(7)).expect("crash");
        assert_eq!(
            dump(&restarted),
            dump(&second.crash(Some(7)).expect("crash"))
        );
        assert_eq!(
            dump(&restarted),
            dump(&first),
            "self is the restarted store too"
        );
    }

    #[test]
    fn corrupt_entry_is_reported_on_open() {
        let mut store = SimStore::new();
        store.append(&entries(1, 3, 1)).expect("append");
        store.sync().expect("sync");
        assert!(store.corrupt_entry(2));
        assert!(!store.corrupt_entry(9), "no such record");
        let synced = r#"hs 0/0/0 conf [] snap 0/0 [] "" log 1:1 2:1 3:1"#;
        assert_eq!(dump(&store), synced, "the running store does not notice");

        let err = store.reopen().expect_err("corrupt");
        let StoreError::Corrupt { location, detail } = &err else {
            panic!("expected corruption, got {err}");
        };
        assert_eq!(location, "sim group 0 entry 2");
        assert!(detail.starts_with("checksum mismatch: stored "), "{detail}");
        assert!(matches!(store.crash(None), Err(StoreError::Corrupt { .. })));
    }
}
