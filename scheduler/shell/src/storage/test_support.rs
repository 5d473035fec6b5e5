//! Helpers and a shared test suite for the [`LogStore`] implementations: every store must pass
//! [`check_semantics`], [`check_durability`] and [`check_raft_node`], each given a way to
//! restart that store.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RawNode, StorageError};

use super::{LogStore, StoreError};

pub(crate) fn entry(index: u64, term: u64) -> Entry {
    let data = format!("e{index}t{term}").into_bytes().into();
    Entry {
        index,
        term,
        data,
        ..Entry::default()
    }
}

/// Entries `first..=last`, all of `term`.
pub(crate) fn entries(first: u64, last: u64, term: u64) -> Vec<Entry> {
    (first..=last).map(|index| entry(index, term)).collect()
}

pub(crate) fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

pub(crate) fn conf(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..ConfState::default()
    }
}

pub(crate) fn snapshot(index: u64, term: u64, voters: &[u64], data: &str) -> Snapshot {
    let mut snapshot = Snapshot {
        data: data.as_bytes().to_vec().into(),
        ..Snapshot::default()
    };
    let metadata = snapshot.mut_metadata();
    metadata.index = index;
    metadata.term = term;
    metadata.set_conf_state(conf(voters));
    snapshot
}

/// What raft sees, on one line:
/// `hs <term>/<vote>/<commit> conf <voters> snap <index>/<term> <voters> "<data>" log
/// <index>:<term>..`.
pub(crate) fn dump<S: LogStore>(store: &S) -> String {
    let state = store.initial_state().expect("initial state");
    let hs = state.hard_state;
    let snap = store.latest_snapshot();
    let meta = snap.get_metadata();
    let first = store.first_index().expect("first index");
    let last = store.last_index().expect("last index");
    assert_eq!(first, meta.index + 1, "first index follows the snapshot");
    assert_eq!(state.conf_state, store.conf_state());
    assert_eq!(hs, store.hard_state());
    let log = store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .expect("entries");
    let log: Vec<String> = log
        .iter()
        .map(|e| format!("{}:{}", e.index, e.term))
        .collect();
    format!(
        "hs {}/{}/{} conf {:?} snap {}/{} {:?} {:?} log {}",
        hs.term,
        hs.vote,
        hs.commit,
        state.conf_state.voters,
        meta.index,
        meta.term,
        meta.get_conf_state().voters,
        String::from_utf8_lossy(&snap.data),
        log.join(" ")
    )
}

fn storage_error(result: raft::Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(raft::Error::Store(StorageError::Compacted)) => "compacted".into(),
        Err(raft::Error::Store(StorageError::Unavailable)) => "unavailable".into(),
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)) => {
            "snapshot unavailable".into()
        }
        Err(err) => format!("other {err}"),
    }
}

fn rejected(result: Result<(), StoreError>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(StoreError::Rejected(detail)) => detail,
        Err(err) => format!("unexpected error: {err}"),
    }
}

/// The write rules and reads of `raft::MemStorage`, on a fresh `store`; `restart` syncs
/// nothing itself and must return the store as reopened from its durable state.
pub(crate) fn check_semantics<S: LogStore>(
    mut store: S,
    restart: impl Fn(S) -> Result<S, StoreError>,
) {
    let empty = r#"hs 0/0/0 conf [] snap 0/0 [] "" log "#;
    assert_eq!(dump(&store), empty);
    assert_eq!(storage_error(store.term(0)), "ok 0");
    assert_eq!(storage_error(store.term(1)), "unavailable");

    // Append, then overwrite a conflicting suffix.
    store.append(&entries(1, 5, 1)).expect("append");
    store
        .set_hard_state(&hard_state(1, 1, 2))
        .expect("hard state");
    store.append(&entries(4, 4, 2)).expect("truncate");
    assert_eq!(
        dump(&store),
        r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:1 4:2"#
    );
    store
        .append(&entries(5, 6, 2))
        .expect("append after truncation");
    let expected = r#"hs 1/1/2 conf [] snap 0/0 [] "" log 1:1 2:1 3:1 4:2 5:2 6:2"#;
    assert_eq!(dump(&store), expected);

    // Reads.
    let context = || GetEntriesContext::empty(false);
    assert_eq!(storage_error(store.term(4)), "ok 2");
    assert_eq!(storage_error(store.term(7)), "unavailable");
    assert_eq!(
        storage_error(store.entries(2, 2, None, context()).map(|e| e.len())),
        "ok 0"
    );
    assert_eq!(
        storage_error(store.entries(1, 8, None, context()).map(|e| e.len())),
        "unavailable"
    );
    let one_size = u64::from(protobuf::Message::compute_size(&entry(1, 1)));
    let limited = store
        .entries(1, 7, Some(2 * one_size), context())
        .expect("limited");
    assert_eq!(limited.len(), 2, "max_size keeps whole entries that fit");
    let limited = store.entries(1, 7, Some(0), context()).expect("limited");
    assert_eq!(limited.len(), 1, "max_size returns at least one entry");
    // No snapshot names peer 2 yet: raft is told to wait while the replica takes one.
    assert_eq!(
        storage_error(store.snapshot(0, 2).map(|s| s.get_metadata().index)),
        "snapshot unavailable"
    );
    assert!(store.take_snapshot_wanted());
    assert!(!store.take_snapshot_wanted());
    assert_eq!(
        storage_error(store.snapshot(1, 2).map(|_| ())),
        "snapshot unavailable"
    );

    // Rejected writes change nothing.
    type Write<S> = fn(&mut S) -> Result<(), StoreError>;
    let cases: [(&str, Write<S>); 8] = [
        ("gap", |s| s.append(&entries(8, 8, 2))),
        ("committed", |s| s.append(&entries(2, 2, 2))),
        ("not contiguous", |s| s.append(&[entry(7, 2), entry(9, 2)])),
        ("term decreases", |s| s.append(&entries(7, 7, 1))),
        ("commit past last", |s| s.set_commit(7)),
        ("term goes back", |s| s.set_hard_state(&hard_state(0, 0, 2))),
        ("unknown term", |s| {
            s.create_snapshot(7, &conf(&[1]), Vec::new())
        }),
        ("snapshot below commit", |s| {
            s.apply_snapshot(&snapshot(1, 1, &[1], ""))
        }),
    ];
    let mut outcomes = String::new();
    for (name, write) in cases {
        outcomes.push_str(&format!("{name}: {}\n", rejected(write(&mut store))));
        assert_eq!(dump(&store), expected, "{name} changed the store");
    }
    assert_eq!(
        outcomes,
        "gap: append at 8 would leave a gap after last index 6\n\
         committed: append at 2 would overwrite committed entries (commit 2)\n\
         not contiguous: appended entries are not contiguous: entry 9 follows 7\n\
         term decreases: appended entry 7 has term 1, below the previous term 2\n\
         commit past last: commit 7 is past the last index 6 (append the entries first)\n\
         term goes back: term 0 is below the stored term 1\n\
         unknown term: snapshot at 7: its term is unknown (snapshot index 0, last index 6)\n\
         snapshot below commit: snapshot index 1 is below commit 2: it would drop committed \
         entries\n"
    );

    // A snapshot compacts the log and raises the commit index; older ones are refused.
    store
        .create_snapshot(4, &conf(&[1, 2]), b"at4".to_vec())
        .expect("create snapshot");
    let compacted = r#"hs 1/1/4 conf [1, 2] snap 4/2 [1, 2] "at4" log 5:2 6:2"#;
    assert_eq!(dump(&store), compacted);
    assert_eq!(storage_error(store.term(4)), "ok 2");
    assert_eq!(storage_error(store.term(3)), "compacted");
    assert_eq!(
        storage_error(store.entries(4, 6, None, context()).map(|e| e.len())),
        "compacted"
    );
    assert_eq!(
        storage_error(store.snapshot(4, 2).map(|s| s.get_metadata().index)),
        "ok 4"
    );
    assert_eq!(
        storage_error(store.snapshot(5, 2).map(|_| ())),
        "snapshot unavailable"
    );
    assert_eq!(
        rejected(store.append(&entries(4, 4, 2))),
        "append at 4 would overwrite compacted entries (first index 5)"
    );
    assert_eq!(
        rejected(store.create_snapshot(3, &conf(&[1]), Vec::new())),
        "snapshot at 3: its term is unknown (snapshot index 4, last index 6)"
    );
    assert_eq!(
        rejected(store.set_commit(3)),
        "commit 3 is below the snapshot index 4"
    );
    assert_eq!(dump(&store), compacted);

    store.sync().expect("sync");
    let mut store = restart(store).expect("restart");
    assert_eq!(dump(&store), compacted);

    // Installing a snapshot replaces the log; out-of-date ones are ignored.
    store
        .apply_snapshot(&snapshot(10, 3, &[1, 2, 3], "at10"))
        .expect("apply snapshot");
    let installed = r#"hs 3/1/10 conf [1, 2, 3] snap 10/3 [1, 2, 3] "at10" log "#;
    assert_eq!(dump(&store), installed);
    store
        .apply_snapshot(&snapshot(10, 3, &[9], "again"))
        .expect("same index");
    store
        .apply_snapshot(&snapshot(7, 3, &[9], "older"))
        .expect("older");
    assert_eq!(dump(&store), installed);
    assert_eq!(storage_error(store.term(10)), "ok 3");
    store
        .append(&entries(11, 12, 3))
        .expect("append after snapshot");
    store.sync().expect("sync");
    let store = restart(store).expect("restart");
    assert_eq!(
        dump(&store),
        r#"hs 3/1/10 conf [1, 2, 3] snap 10/3 [1, 2, 3] "at10" log 11:3 12:3"#
    );
}

/// Synced writes survive a restart; unsynced ones do not.
pub(crate) fn check_durability<S: LogStore>(
    mut store: S,
    restart: impl Fn(S) -> Result<S, StoreError>,
) {
    store.sync().expect("sync with nothing pending");
    store.append(&entries(1, 3, 1)).expect("append");
    store
        .set_hard_state(&hard_state(1, 2, 1))
        .expect("hard state");
    store.sync().expect("sync");
    let synced = r#"hs 1/2/1 conf [] snap 0/0 [] "" log 1:1 2:1 3:1"#;
    assert_eq!(dump(&store), synced);

    store.append(&entries(3, 5, 2)).expect("overwrite");
    store
        .set_hard_state(&hard_state(2, 0, 4))
        .expect("hard state");
    store
        .create_snapshot(2, &conf(&[1]), b"lost".to_vec())
        .expect("snapshot");
    assert_eq!(
        dump(&store),
        r#"hs 2/0/4 conf [1] snap 2/1 [1] "lost" log 3:2 4:2 5:2"#
    );
    let store = restart(store).expect("restart");
    assert_eq!(dump(&store), synced, "unsynced writes are lost");
    let store = restart(store).expect("restart twice");
    assert_eq!(dump(&store), synced);
}

/// Runs ready cycles the way the replica does until raft has nothing more to do, returning
/// the data of the committed entries.
pub(crate) fn drive<S: LogStore>(node: &mut RawNode<S>) -> Vec<String> {
    let mut applied = Vec::new();
    let mut take = |entries: Vec<Entry>| {
        applied.extend(
            entries
                .iter()
                .map(|e| String::from_utf8_lossy(&e.data).into_owned()),
        );
    };
    while node.has_ready() {
        let mut ready = node.ready();
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            node.mut_store()
                .apply_snapshot(&snapshot)
                .expect("apply snapshot");
        }
        take(ready.take_committed_entries());
        node.mut_store().append(ready.entries()).expect("append");
        if let Some(hs) = ready.hs() {
            node.mut_store().set_hard_state(hs).expect("hard state");
        }
        node.mut_store().sync().expect("sync");
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            node.mut_store().set_commit(commit).expect("commit");
            node.mut_store().sync().expect("sync");
        }
        take(light.take_committed_entries());
        node.advance_apply();
    }
    applied
}

fn raft_node<S: LogStore>(store: S) -> RawNode<S> {
    let config = raft::Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 3,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&config, store, &logger).expect("raw node")
}

/// A one-node group over `store`: bootstraps, elects itself, commits a proposal, restarts
/// (`restart` takes the node apart and reopens its store), sees the proposal again, takes a
/// snapshot, restarts and commits another proposal.
pub(crate) fn check_raft_node<S: LogStore>(
    mut store: S,
    restart: impl Fn(RawNode<S>) -> Result<S, StoreError>,
) {
    store
        .apply_snapshot(&snapshot(1, 1, &[1], "boot"))
        .expect("bootstrap");
    store.sync().expect("sync");

    let mut node = raft_node(store);
    node.campaign().expect("campaign");
    assert_eq!(
        drive(&mut node),
        [""],
        "the new leader commits an empty entry"
    );
    assert_eq!(node.raft.state, raft::StateRole::Leader);
    node.propose(Vec::new(), b"hello".to_vec())
        .expect("propose");
    assert_eq!(drive(&mut node), ["hello"]);
    assert_eq!(
        dump(node.store()),
        r#"hs 2/1/3 conf [1] snap 1/1 [1] "boot" log 2:2 3:2"#
    );

    let mut node = raft_node(restart(node).expect("restart"));
    assert_eq!(
        dump(node.store()),
        r#"hs 2/1/3 conf [1] snap 1/1 [1] "boot" log 2:2 3:2"#
    );
    assert_eq!(
        drive(&mut node),
        ["", "hello"],
        "committed entries are applied again"
    );

    node.mut_store()
        .create_snapshot(3, &conf(&[1]), b"at3".to_vec())
        .expect("snapshot");
    node.mut_store().sync().expect("sync");
    let mut node = raft_node(restart(node).expect("restart"));
    assert_eq!(
        dump(node.store()),
        r#"hs 2/1/3 conf [1] snap 3/2 [1] "at3" log "#
    );
    assert_eq!(drive(&mut node), Vec::<String>::new());
    node.campaign().expect("campaign");
    node.propose(Vec::new(), b"again".to_vec())
        .expect("propose");
    assert_eq!(drive(&mut node), ["", "again"]);
    assert_eq!(
        dump(node.store()),
        r#"hs 3/1/5 conf [1] snap 3/2 [1] "at3" log 4:3 5:3"#
    );
}
