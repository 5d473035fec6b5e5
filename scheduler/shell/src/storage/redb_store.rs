//! The durable store: one redb file per process, shared by the process's Raft groups.
//!
//! On-disk layout (two tables; every key starts with the group id):
//! - `raft_entries`: `(group, index) -> record(Entry)`;
//! - `raft_meta`: `(group, "hard_state" | "conf_state" | "snapshot") -> record(..)`, where the
//!   snapshot record holds the whole `Snapshot` (metadata with index, term and conf state, and
//!   the data).
//!
//! A record is a format version, a checksum and the protobuf payload (see `record.rs`).
//!
//! A [`RedbStore`] loads its group fully on open, verifying every record and the log's
//! invariants, and then serves raft's reads from memory. Writes update memory at once and are
//! buffered; [`super::LogStore::sync`] writes the whole buffer in one redb write transaction
//! committed with [`redb::Durability::Immediate`] (one fsync per sync: the group commit).
//! Writes not synced when the store is dropped are lost, as in a crash.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::cache::{impl_storage_via_cache, Cache, RawRecords};
use super::record::{RecordKey, RecordSink};
use super::{GroupId, StoreError};

const ENTRIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_entries");
const META: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("raft_meta");

/// The entries table, open in a write transaction.
type EntriesTable<'txn> = redb::Table<'txn, (u64, u64), &'static [u8]>;
/// The meta table, open in a write transaction.
type MetaTable<'txn> = redb::Table<'txn, (u64, &'static str), &'static [u8]>;

/// A redb database holding the Raft storage of several groups. Cheap to clone; open each
/// group's store with [`RedbDb::group`].
#[derive(Clone, Debug)]
pub struct RedbDb {
    inner: Arc<DbInner>,
}

#[derive(Debug)]
struct DbInner {
    db: Database,
    path: PathBuf,
    /// Groups with a live [`RedbStore`]: two stores for one group would diverge.
    groups_open: Mutex<BTreeSet<GroupId>>,
}

impl RedbDb {
    /// Opens the database at `path`, creating it (and its tables) if it does not exist.
    pub fn open(path: &Path) -> Result<RedbDb, StoreError> {
        let db = Database::create(path).map_err(io_error(path, "open database"))?;
        let txn = db
            .begin_write()
            .map_err(io_error(path, "begin write transaction"))?;
        txn.open_table(ENTRIES)
            .map_err(io_error(path, "open table raft_entries"))?;
        txn.open_table(META)
            .map_err(io_error(path, "open table raft_meta"))?;
        txn.commit().map_err(io_error(path, "create tables"))?;
        let inner = DbInner {
            db,
            path: path.to_path_buf(),
            groups_open: Mutex::new(BTreeSet::new()),
        };
        Ok(RedbDb {
            inner: Arc::new(inner),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Opens `group`'s store: loads and verifies all of its records. Fails if the group is
    /// already open (until that store is dropped).
    pub fn group(&self, group: GroupId) -> Result<RedbStore, StoreError> {
        let inner = &self.inner;
        if !inner.lock_groups().insert(group) {
            return Err(StoreError::Rejected(format!(
                "{} group {} is already open",
                inner.path.display(),
                group.0
            )));
        }
        // From here on the store owns the registration; dropping it (on error too) releases it.
        let mut store = RedbStore {
            db: Arc::clone(inner),
            group,
            cache: Cache::default(),
        };
        store.cache = inner.load(group)?;
        Ok(store)
    }
}

impl DbInner {
    fn lock_groups(&self) -> std::sync::MutexGuard<'_, BTreeSet<GroupId>> {
        // The set stays consistent even if a holder panicked: each update is one call.
        self.groups_open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn load(&self, group: GroupId) -> Result<Cache, StoreError> {
        let path = self.path.as_path();
        let txn = self
            .db
            .begin_read()
            .map_err(io_error(path, "begin read transaction"))?;
        let mut records = RawRecords::default();

        let entries = txn
            .open_table(ENTRIES)
            .map_err(io_error(path, "open table raft_entries"))?;
        let range = entries
            .range((group.0, 0)..=(group.0, u64::MAX))
            .map_err(io_error(path, "read entries"))?;
        for item in range {
            let (key, value) = item.map_err(io_error(path, "read entries"))?;
            records
                .entries
                .push((key.value().1, value.value().to_vec()));
        }

        let meta = txn
            .open_table(META)
            .map_err(io_error(path, "open table raft_meta"))?;
        for key in RecordKey::META {
            let (Some(name), Some(slot)) = (key.meta_name(), records.meta_mut(key)) else {
                continue;
            };
            let value = meta
                .get((group.0, name))
                .map_err(io_error(path, "read meta"))?;
            *slot = value.map(|value| value.value().to_vec());
        }
        Cache::load(&path.display().to_string(), group, records)
    }
}

/// One group's durable Raft storage in a [`RedbDb`].
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<DbInner>,
    group: GroupId,
    cache: Cache,
}

impl RedbStore {
    /// Opens `group` in the database at `path` (created if missing). To host several groups
    /// in one file, open it once with [`RedbDb::open`] and call [`RedbDb::group`] per group.
    pub fn open(path: &Path, group: GroupId) -> Result<RedbStore, StoreError> {
        RedbDb::open(path)?.group(group)
    }

    /// The group this store holds.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The database this store lives in (to open more groups in it).
    pub fn db(&self) -> RedbDb {
        RedbDb {
            inner: Arc::clone(&self.db),
        }
    }

    /// Writes the pending ops in one transaction and fsyncs it. On error nothing was written
    /// and the ops stay pending; the caller should treat the store as failed (crash) rather
    /// than retry, as after any failed fsync.
    fn sync_pending(&mut self) -> Result<(), StoreError> {
        let path = self.db.path.as_path();
        let mut txn = self
            .db
            .db
            .begin_write()
            .map_err(io_error(path, "begin write transaction"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(io_error(path, "set durability"))?;
        {
            let mut sink = TxnSink {
                path,
                group: self.group,
                entries: txn
                    .open_table(ENTRIES)
                    .map_err(io_error(path, "open raft_entries"))?,
                meta: txn
                    .open_table(META)
                    .map_err(io_error(path, "open raft_meta"))?,
            };
            for op in self.cache.pending() {
                op.write_to(self.group, &mut sink)?;
            }
        }
        txn.commit().map_err(io_error(path, "commit"))?;
        self.cache.take_pending();
        Ok(())
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.db.lock_groups().remove(&self.group);
    }
}

impl_storage_via_cache!(RedbStore);

/// Writes records into an open write transaction.
struct TxnSink<'txn, 'path> {
    path: &'path Path,
    group: GroupId,
    entries: EntriesTable<'txn>,
    meta: MetaTable<'txn>,
}

impl RecordSink for TxnSink<'_, '_> {
    fn put(&mut self, key: RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let path = self.path;
        match (key, key.meta_name()) {
            (RecordKey::Entry(index), _) => {
                self.entries.insert((self.group.0, index), record).map(drop)
            }
            (_, Some(name)) => self.meta.insert((self.group.0, name), record).map(drop),
            (_, None) => Ok(()),
        }
        .map_err(io_error(
            path,
            &format!("write group {} {key}", self.group.0),
        ))
    }

    fn delete_entries(&mut self, indexes: RangeInclusive<u64>) -> Result<(), StoreError> {
        let group = self.group.0;
        let range = (group, *indexes.start())..=(group, *indexes.end());
        self.entries
            .retain_in(range, |_, _| false)
            .map_err(io_error(
                self.path,
                &format!("delete group {group} entries"),
            ))
    }
}

fn io_error<E: Display>(path: &Path, context: &str) -> impl FnOnce(E) -> StoreError {
    let context = format!("{}: {context}", path.display());
    move |err| StoreError::Io(format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::encode;
    use crate::storage::test_support::{
        check_durability, check_raft_node, check_semantics, dump, entries, entry, hard_state,
    };
    use crate::storage::LogStore;

    const GROUP: GroupId = GroupId(1);

    fn reopen(path: &Path) -> impl Fn(RedbStore) -> Result<RedbStore, StoreError> + '_ {
        move |store| {
            drop(store);
            RedbStore::open(path, GROUP)
        }
    }

    #[test]
    fn semantics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        check_semantics(RedbStore::open(&path, GROUP).expect("open"), reopen(&path));
    }

    #[test]
    fn durability() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        check_durability(RedbStore::open(&path, GROUP).expect("open"), reopen(&path));
    }

    #[test]
    fn raft_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        check_raft_node(RedbStore::open(&path, GROUP).expect("open"), |node| {
            drop(node);
            RedbStore::open(&path, GROUP)
        });
    }

    #[test]
    fn groups_share_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let db = RedbDb::open(&path).expect("open");
        let mut one = db.group(GroupId(1)).expect("group 1");
        let mut two = db.group(GroupId(2)).expect("group 2");
        one.append(&entries(1, 3, 1)).expect("append");
        one.set_hard_state(&hard_state(1, 1, 3))
            .expect("hard state");
        two.append(&entries(1, 1, 5)).expect("append");
        one.sync().expect("sync");
        two.sync().expect("sync");
        let err = db.group(GroupId(1)).expect_err("open twice").to_string();
        assert!(err.ends_with("group 1 is already open"), "{err}");
        drop((one, two, db));

        let db = RedbDb::open(&path).expect("reopen");
        let one = db.group(GroupId(1)).expect("group 1");
        let two = db.group(GroupId(2)).expect("group 2");
        let three = db.group(GroupId(3)).expect("group 3");
        assert_eq!(
            dump(&one),
            r#"hs 1/1/3 conf [] snap 0/0 [] "" log 1:1 2:1 3:1"#
        );
        assert_eq!(dump(&two), r#"hs 0/0/0 conf [] snap 0/0 [] "" log 1:5"#);
        assert_eq!(dump(&three), r#"hs 0/0/0 conf [] snap 0/0 [] "" log "#);
        drop(one);
        assert!(
            db.group(GroupId(1)).is_ok(),
            "a dropped store releases its group"
        );
    }

    /// Writes entries 1..=3 and commit 2 for [`GROUP`], applies `tamper` directly to the
    /// tables, and returns what reopening reports, with the path replaced by `<path>`.
    fn open_tampered(tamper: impl FnOnce(&mut EntriesTable<'_>, &mut MetaTable<'_>)) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let mut store = RedbStore::open(&path, GROUP).expect("open");
        store.append(&entries(1, 3, 1)).expect("append");
        store
            .set_hard_state(&hard_state(1, 1, 2))
            .expect("hard state");
        store.sync().expect("sync");
        drop(store);

        let db = Database::create(&path).expect("open database");
        let txn = db.begin_write().expect("write");
        {
            let mut entries = txn.open_table(ENTRIES).expect("entries");
            let mut meta = txn.open_table(META).expect("meta");
            tamper(&mut entries, &mut meta);
        }
        txn.commit().expect("commit");
        drop(db);

        let result = RedbStore::open(&path, GROUP).map(|store| dump(&store));
        let outcome = match result {
            Ok(dump) => format!("ok {dump}"),
            Err(err) => err.to_string(),
        };
        outcome.replace(&path.display().to_string(), "<path>")
    }

    fn record(key: RecordKey, message: &impl protobuf::Message) -> Vec<u8> {
        encode(GROUP, key, message).expect("encode")
    }

    #[test]
    fn corruption_is_reported_with_its_location() {
        let untouched = open_tampered(|_, _| {});
        assert_eq!(
            untouched,
            r#"ok hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:1"#
        );

        let bad_checksum = open_tampered(|entries, _| {
            let mut bytes = record(RecordKey::Entry(2), &entry(2, 1));
            bytes[1] ^= 0xff;
            entries
                .insert((GROUP.0, 2), bytes.as_slice())
                .expect("insert");
        });
        assert!(
            bad_checksum.starts_with(
                "corrupt raft storage in <path> group 1 entry 2: checksum mismatch: stored "
            ),
            "{bad_checksum}"
        );

        type Tamper = fn(&mut EntriesTable<'_>);
        let cases: [(&str, Tamper); 3] = [
            ("gap", |entries| {
                entries.remove((GROUP.0, 2)).expect("remove");
            }),
            ("wrong index", |entries| {
                let bytes = record(RecordKey::Entry(3), &entry(4, 1));
                entries
                    .insert((GROUP.0, 3), bytes.as_slice())
                    .expect("insert");
            }),
            ("commit past last", |entries| {
                entries.remove((GROUP.0, 3)).expect("remove");
                entries.remove((GROUP.0, 2)).expect("remove");
            }),
        ];
        let mut outcomes = String::new();
        for (name, tamper) in cases {
            let outcome = open_tampered(|entries, _| tamper(entries));
            outcomes.push_str(&format!("{name}: {outcome}\n"));
        }
        assert_eq!(
            outcomes,
            "gap: corrupt raft storage in <path> group 1 entry 3: log is not contiguous: \
             expected entry 2 next (snapshot index 0)\n\
             wrong index: corrupt raft storage in <path> group 1 entry 3: stored entry has \
             index 4\n\
             commit past last: corrupt raft storage in <path> group 1 hard state: commit 2 is \
             outside [snapshot index 0, last index 1]\n"
        );

        let swapped = open_tampered(|_, meta| {
            let bytes = record(RecordKey::ConfState, &hard_state(1, 1, 2));
            meta.insert((GROUP.0, "hard_state"), bytes.as_slice())
                .expect("insert");
        });
        assert!(
            swapped.starts_with("corrupt raft storage in <path> group 1 hard state: checksum"),
            "{swapped}"
        );
    }
}
