//! The stored record format shared by both stores, and the write operations that turn into
//! records.
//!
//! A record is `[format version: 1 byte][checksum: 8 bytes][protobuf payload]`. The checksum is
//! the first 8 bytes of SHA-256 over (group id, record key, format version, payload), so a record
//! that is damaged, or copied under another key or group, fails verification.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::RangeInclusive;

use super::{GroupId, StoreError};

/// Version of the record layout. Bump it when the layout changes; old versions are rejected.
pub(crate) const FORMAT_VERSION: u8 = 1;
const CHECKSUM_LEN: usize = 8;
const HEADER_LEN: usize = 1 + CHECKSUM_LEN;

/// Which record of a group: a log entry, or one of the group's single-valued records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKey {
    Entry(u64),
    HardState,
    ConfState,
    Snapshot,
}

impl RecordKey {
    /// All single-valued records, in load order.
    pub(crate) const META: [RecordKey; 3] = [
        RecordKey::HardState,
        RecordKey::ConfState,
        RecordKey::Snapshot,
    ];

    /// The name of a single-valued record (the redb key is `(group, name)`); `None` for entries.
    pub(crate) fn meta_name(self) -> Option<&'static str> {
        match self {
            RecordKey::Entry(_) => None,
            RecordKey::HardState => Some("hard_state"),
            RecordKey::ConfState => Some("conf_state"),
            RecordKey::Snapshot => Some("snapshot"),
        }
    }

    fn checksum_input(self, hasher: &mut Sha256) {
        match self {
            RecordKey::Entry(index) => {
                hasher.update(b"entry");
                hasher.update(index.to_le_bytes());
            }
            key => hasher.update(key.meta_name().unwrap_or_default().as_bytes()),
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Entry(index) => write!(f, "entry {index}"),
            RecordKey::HardState => f.write_str("hard state"),
            RecordKey::ConfState => f.write_str("conf state"),
            RecordKey::Snapshot => f.write_str("snapshot"),
        }
    }
}

/// Where a record lives, for error messages: `<origin> group <g> <key>`.
pub(crate) fn location(origin: &str, group: GroupId, key: RecordKey) -> String {
    format!("{origin} group {} {key}", group.0)
}

fn checksum(group: GroupId, key: RecordKey, version: u8, payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(group.0.to_le_bytes());
    key.checksum_input(&mut hasher);
    hasher.update([version]);
    hasher.update(payload);
    let digest = hasher.finalize();
    let mut out = [0; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

/// Encodes `message` as the record stored under `key`.
pub(crate) fn encode<M: protobuf::Message>(
    group: GroupId,
    key: RecordKey,
    message: &M,
) -> Result<Vec<u8>, StoreError> {
    let payload = message
        .write_to_bytes()
        .map_err(|err| StoreError::Io(format!("encode group {} {key}: {err}", group.0)))?;
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.push(FORMAT_VERSION);
    record.extend_from_slice(&checksum(group, key, FORMAT_VERSION, &payload));
    record.extend_from_slice(&payload);
    Ok(record)
}

/// Verifies and decodes the record stored under `key`. `origin` names the file (or the
/// simulated disk) for the error message.
pub(crate) fn decode<M: protobuf::Message>(
    origin: &str,
    group: GroupId,
    key: RecordKey,
    record: &[u8],
) -> Result<M, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        location: location(origin, group, key),
        detail,
    };
    if record.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "record is {} bytes, shorter than its {HEADER_LEN}-byte header",
            record.len()
        )));
    }
    let (header, payload) = record.split_at(HEADER_LEN);
    let version = header[0];
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unknown format version {version} (this build reads version {FORMAT_VERSION})"
        )));
    }
    let expected = checksum(group, key, version, payload);
    if header[1..] != expected {
        return Err(corrupt(format!(
            "checksum mismatch: stored {}, computed {}",
            hex(&header[1..]),
            hex(&expected)
        )));
    }
    M::parse_from_bytes(payload).map_err(|err| corrupt(format!("undecodable payload: {err}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where the stores write records: a redb write transaction, or the simulated disk.
pub(crate) trait RecordSink {
    /// Stores `record` under `key`, replacing any previous one.
    fn put(&mut self, key: RecordKey, record: &[u8]) -> Result<(), StoreError>;
    /// Deletes every entry record whose index is in `indexes`.
    fn delete_entries(&mut self, indexes: RangeInclusive<u64>) -> Result<(), StoreError>;
}

/// One buffered write, in the order the caller made it. Each op keeps the stored state valid
/// on its own (the simulated disk relies on that when it keeps a prefix of a torn batch).
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Deletes every entry at or after `index_first` (a new leader overwrote them).
    Truncate {
        index_first: u64,
    },
    /// Stores one entry under its index.
    PutEntry(Entry),
    PutHardState(HardState),
    /// Stores a snapshot taken by this replica and its conf state as the group's conf state,
    /// and deletes every entry the snapshot covers, all at once.
    PutSnapshot(Snapshot),
    /// Installs a snapshot from the leader: deletes every entry and stores the snapshot with
    /// the hard state and conf state that go with it, all at once.
    InstallSnapshot {
        snapshot: Snapshot,
        hard_state: HardState,
        conf_state: ConfState,
    },
}

impl Op {
    /// Writes this op's records to `sink`.
    pub(crate) fn write_to(
        &self,
        group: GroupId,
        sink: &mut impl RecordSink,
    ) -> Result<(), StoreError> {
        match self {
            Op::Truncate { index_first } => sink.delete_entries(*index_first..=u64::MAX),
            Op::PutEntry(entry) => {
                let key = RecordKey::Entry(entry.index);
                sink.put(key, &encode(group, key, entry)?)
            }
            Op::PutHardState(hard_state) => put(group, sink, RecordKey::HardState, hard_state),
            Op::PutSnapshot(snapshot) => {
                let metadata = snapshot.get_metadata();
                put(group, sink, RecordKey::Snapshot, snapshot)?;
                put(group, sink, RecordKey::ConfState, metadata.get_conf_state())?;
                sink.delete_entries(0..=metadata.index)
            }
            Op::InstallSnapshot {
                snapshot,
                hard_state,
                conf_state,
            } => {
                sink.delete_entries(0..=u64::MAX)?;
                put(group, sink, RecordKey::Snapshot, snapshot)?;
                put(group, sink, RecordKey::HardState, hard_state)?;
                put(group, sink, RecordKey::ConfState, conf_state)
            }
        }
    }
}

fn put<M: protobuf::Message>(
    group: GroupId,
    sink: &mut impl RecordSink,
    key: RecordKey,
    message: &M,
) -> Result<(), StoreError> {
    sink.put(key, &encode(group, key, message)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: b"payload".to_vec().into(),
            ..Entry::default()
        }
    }

    fn decode_entry(group: GroupId, key: RecordKey, record: &[u8]) -> Result<Entry, String> {
        decode::<Entry>("test.redb", group, key, record).map_err(|err| err.to_string())
    }

    #[test]
    fn round_trip() {
        let key = RecordKey::Entry(7);
        let record = encode(GroupId(3), key, &entry(7, 2)).expect("encode");
        assert_eq!(record[0], FORMAT_VERSION);
        assert_eq!(decode_entry(GroupId(3), key, &record), Ok(entry(7, 2)));
    }

    #[test]
    fn damage_is_detected() {
        let key = RecordKey::Entry(7);
        let record = encode(GroupId(3), key, &entry(7, 2)).expect("encode");

        let mut flipped = record.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = decode_entry(GroupId(3), key, &flipped).expect_err("flipped bit");
        assert!(
            err.contains("test.redb group 3 entry 7: checksum mismatch"),
            "{err}"
        );

        let err = decode_entry(GroupId(4), key, &record).expect_err("other group");
        assert!(err.contains("checksum mismatch"), "{err}");
        let err = decode_entry(GroupId(3), RecordKey::Entry(8), &record).expect_err("other key");
        assert!(err.contains("checksum mismatch"), "{err}");

        let err = decode_entry(GroupId(3), key, &record[..4]).expect_err("short");
        assert!(err.contains("shorter than its 9-byte header"), "{err}");

        let mut future = record.clone();
        future[0] = FORMAT_VERSION + 1;
        let err = decode_entry(GroupId(3), key, &future).expect_err("version");
        assert!(err.contains("unknown format version 2"), "{err}");
    }
}
