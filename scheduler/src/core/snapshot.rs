//! Snapshots of the replicated state, and the canonical binary codec that snapshots (and the
//! Raft log) are written in.
//!
//! # Why hand-written
//!
//! Core types do not derive `Serialize`: serialization happens only at boundaries, in explicit
//! versioned formats (house style, rule 9). These bytes are a contract. Replicas compare state
//! hashes, one binary restores a snapshot that another wrote, and log entries outlive the
//! process that wrote them. A hand-written codec keeps every byte of the format in this one
//! file. It gives each value exactly one encoding, so hashing the encoding hashes the value
//! deterministically on every platform. And it needs no new dependency.
//!
//! # Encoding
//!
//! - Integers are fixed width and little-endian (`u8`, `u16`, `u32`, `u64`; `i32` in two's
//!   complement). The format uses fixed width, not varints: every value then has exactly one
//!   encoding, with no overlong forms to reject, and sizes are easy to bound.
//! - `bool` is one byte, 0 or 1. Any other byte is an error.
//! - Strings and byte strings are a `u32` length, then the bytes. Strings must be UTF-8.
//! - Sequences are a `u32` count, then the items in order. Maps are written as sequences in
//!   key order.
//! - `Option<T>` is a tag byte: 0 (none), or 1 followed by the `T`.
//! - An enum is a tag byte, then the fields of its variant. Tags are part of the format. Never
//!   renumber or reuse a tag: a new variant takes a new tag.
//! - A struct is its fields in declaration order, with no names and no padding.
//! - A jurisdiction is its code, as a string, and is validated on decode. An id is its integer.
//!
//! Decoding never panics. Every read is bounds-checked. Before anything is allocated, every
//! length is checked against the bytes left (every encoded value is at least one byte) and
//! against a format maximum. Unknown tags and trailing bytes are errors. A [`DecodeError`]
//! names the byte offset where decoding failed.
//!
//! # Blobs
//!
//! A stand-alone value, such as a log [`Entry`] or a [`Command`], is written by [`to_blob`]:
//! one [`FORMAT_VERSION`] byte, then the value. A snapshot is laid out as follows:
//!
//! ```text
//! "SOVRASNP" | FORMAT_VERSION: u8
//!   | TopologyDesc (with measured RTTs) | scope: [Jurisdiction] | nodes: [NodeState]
//!   | agent_managed: [bool] | jobs: [JobRecord] (ascending id) | next_job: u64
//!   | applied_index: u64 | epoch: u64
//!   | PolicyConfig | clock_ms: u64 | tenant_nets: [(str, u32)]
//!   | SHA-256 of everything before: [u8; 32]
//! ```
//!
//! Derived state is not stored. [`StateMachine::restore`] rebuilds the topology's indexes, the
//! ledger (from the jobs' allocations) and the pending queue, and checks each one as it goes.
//! A snapshot therefore cannot carry a ledger that disagrees with its jobs.
//! [`StateMachine::state_hash`] hashes the same body plus the derived state: the ledger per
//! node and per GPU, the built RTT and bandwidth matrix, and the queue order. Any drift in
//! derived state thus shows up as a hash mismatch between replicas.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use sovra_fabric::topology::{
    GpuDesc, GpuModelDesc, MigProfile, NicDesc, NodeDesc, SiteDesc, SiteFabric, SiteLinkDesc,
    GPUS_PER_NODE_MAX, MIG_COMPUTE_SLICES, MIG_MEMORY_SLICES,
};
use sovra_fabric::{
    GpuId, GpuTake, Jurisdiction, Ledger, Level, NodeId, SiteId, Take, Topology, TopologyDesc,
};

use crate::core::job::{
    Affinity, ArraySpec, DepKind, DepTerm, Dependency, GangSpec, GpuRequest, InferenceSpec,
    JobControl, JobId, JobSpec, LatencySlo, RunSpec, TopologyRule, Workload, ARRAY_TASKS_MAX,
    DEPENDENCY_TERMS_MAX, RUN_ITEMS_MAX,
};
use crate::core::placement::fgd::{TargetWorkload, WorkloadShape};
use crate::core::placement::{
    MemberSlot, PendingReason, Plan, PolicyConfig, SharePolicy, Unschedulable,
};
use crate::core::state::{
    ArrayTask, Command, Deps, Entry, ExitStatus, IsolationIntent, JobRecord, JobState, NodeState,
    PendingQueue, RequestId, StateMachine, JOBS_MAX, TENANT_NETS_MAX,
};

/// The version of the codec and of the snapshot layout. Bump it on any change to either.
pub const FORMAT_VERSION: u8 = 4;
/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SOVRASNP";
/// The longest string or byte string.
pub const BYTES_LEN_MAX: usize = 16 << 20;
/// The most items in one sequence.
pub const ITEMS_MAX: usize = 16 << 20;
/// The most sites in a topology description. The topology builder's RTT matrix is
/// `sites × sites`, so this bounds what a snapshot can make restore allocate.
pub const SITES_MAX: usize = 1_024;
/// The most nodes in a topology description. This is the inventory parser's limit too.
pub const NODES_MAX: usize = 1_000_000;
/// The most GPU models. Placement keeps the allowed models as a `u64` mask.
pub const MODELS_MAX: usize = 64;
/// The most NICs on one node. This is the inventory parser's limit too.
pub const NICS_PER_NODE_MAX: usize = 64;
/// The most MIG profiles of one GPU model.
pub const MIG_PROFILES_MAX: usize = 64;

const CHECKSUM_LEN: usize = 32;
const HEADER_LEN: usize = SNAPSHOT_MAGIC.len() + 1;
/// Domain separation: a state hash is never equal to the hash of some snapshot's bytes.
const HASH_DOMAIN: [u8; 8] = *b"SOVRAHSH";
/// `state_hash` feeds the hasher in chunks of about this size instead of buffering the state.
const HASH_CHUNK: usize = 1 << 16;
/// Bytes reserved up front for a sequence. Larger ones grow as their items decode.
const PREALLOC_BYTES_MAX: usize = 1 << 16;

const _: () = assert!(BYTES_LEN_MAX <= u32::MAX as usize);
const _: () = assert!(ITEMS_MAX <= u32::MAX as usize);
const _: () = assert!(JOBS_MAX <= ITEMS_MAX);
const _: () = assert!(NODES_MAX <= ITEMS_MAX);
const _: () = assert!(SITES_MAX * SITES_MAX <= ITEMS_MAX);

// ---------------------------------------------------------------------------------------------
// Errors.

/// Why bytes could not be decoded. The message is one line, in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The byte offset where decoding failed, counted from the start of the input.
    pub offset: usize,
    /// What went wrong.
    pub message: String,
}

impl DecodeError {
    /// Makes an error at `offset`.
    pub fn new(offset: usize, message: impl Into<String>) -> DecodeError {
        DecodeError {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for DecodeError {}

fn bad_tag(offset: usize, what: &str, tag: u8) -> DecodeError {
    DecodeError::new(offset, format!("invalid {what} tag {tag}"))
}

// ---------------------------------------------------------------------------------------------
// Encoder and decoder.

/// Writes values in the canonical format. See the module docs for the encoding.
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// Writes one byte.
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Writes a `u16`, little-endian.
    pub fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a `u32`, little-endian.
    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a `u64`, little-endian.
    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes an `i32`, in two's complement and little-endian.
    pub fn put_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a `bool` as one byte, 0 or 1.
    pub fn put_bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    /// Writes a sequence count. Panics above [`ITEMS_MAX`]. That is a bug: the edges bound
    /// every collection well below it.
    pub fn put_count(&mut self, n: usize) {
        assert!(
            n <= ITEMS_MAX,
            "sequence of {n} items, at most {ITEMS_MAX} are encodable"
        );
        self.put_u32(n as u32);
    }

    /// Writes a length-prefixed byte string. Panics above [`BYTES_LEN_MAX`]. That is a bug:
    /// the edges bound request sizes well below it.
    pub fn put_bytes(&mut self, v: &[u8]) {
        assert!(
            v.len() <= BYTES_LEN_MAX,
            "byte string of {} bytes, at most {BYTES_LEN_MAX} are encodable",
            v.len()
        );
        self.put_u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }

    /// Writes a length-prefixed UTF-8 string. It has the same limit as
    /// [`Encoder::put_bytes`].
    pub fn put_str(&mut self, v: &str) {
        self.put_bytes(v.as_bytes());
    }

    /// Writes bytes as they are, with no length (for magic numbers and checksums).
    pub fn put_raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// The number of bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Reads values in the canonical format. Every method checks bounds. None of them panics.
#[derive(Clone, Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, pos: 0 }
    }

    /// The offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The number of bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An error at the current offset.
    pub fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::new(self.pos, message)
    }

    /// Reads `n` bytes as they are (no length prefix).
    pub fn get_raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "unexpected end of input: {n} bytes needed, {} left",
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn get_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.get_raw(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn get_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.get_array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn get_u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.get_array()?))
    }

    /// Reads a little-endian `u32`.
    pub fn get_u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.get_array()?))
    }

    /// Reads a little-endian `u64`.
    pub fn get_u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.get_array()?))
    }

    /// Reads a little-endian `i32`.
    pub fn get_i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.get_array()?))
    }

    /// Reads a `bool`. Only 0 and 1 are valid.
    pub fn get_bool(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.get_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::new(at, format!("invalid bool {v}"))),
        }
    }

    /// Reads a sequence count. It must be at most `max` and at most the number of bytes
    /// left, since every item takes at least one byte.
    pub fn get_count(&mut self, max: usize, what: &str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.get_u32()? as usize;
        if n > max {
            return Err(DecodeError::new(
                at,
                format!("{n} {what}, at most {max} allowed"),
            ));
        }
        if n > self.remaining() {
            return Err(DecodeError::new(
                at,
                format!(
                    "{n} {what} cannot fit in the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    /// Reads a length-prefixed byte string. It must be at most [`BYTES_LEN_MAX`] long.
    pub fn get_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let n = self.get_u32()? as usize;
        if n > BYTES_LEN_MAX {
            return Err(DecodeError::new(
                at,
                format!("byte string of {n} bytes, at most {BYTES_LEN_MAX} allowed"),
            ));
        }
        self.get_raw(n)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn get_str(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        let bytes = self.get_bytes()?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::new(at, "string is not valid utf-8")),
        }
    }

    /// Checks that every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// A value with a canonical encoding. Every encoding is at least one byte long. The decoder
/// relies on that to bound sequence counts by the bytes left.
pub trait Codec: Sized {
    /// Appends the encoding of `self`.
    fn encode(&self, e: &mut Encoder);
    /// Reads one value. Returns an error on invalid or truncated input, and never panics.
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;
}

/// Encodes a stand-alone value: one [`FORMAT_VERSION`] byte, then the value. The Raft log
/// stores each [`Entry`] this way.
pub fn to_blob<T: Codec>(value: &T) -> Vec<u8> {
    let mut e = Encoder::default();
    e.put_u8(FORMAT_VERSION);
    value.encode(&mut e);
    e.into_bytes()
}

/// Decodes a blob written by [`to_blob`]. Fails on a different version or on trailing bytes.
pub fn from_blob<T: Codec>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut d = Decoder::new(bytes);
    let version = d.get_u8()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::new(
            0,
            format!("unsupported format version {version}, expected {FORMAT_VERSION}"),
        ));
    }
    let value = T::decode(&mut d)?;
    d.finish()?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Generic and primitive impls.

fn decode_seq<T: Codec>(
    d: &mut Decoder<'_>,
    max: usize,
    what: &str,
) -> Result<Vec<T>, DecodeError> {
    let n = d.get_count(max, what)?;
    let cap = n.min(PREALLOC_BYTES_MAX / std::mem::size_of::<T>().max(1));
    let mut out = Vec::with_capacity(cap);
    for _ in 0..n {
        out.push(T::decode(d)?);
    }
    Ok(out)
}

fn encode_seq<T: Codec>(e: &mut Encoder, items: &[T]) {
    e.put_count(items.len());
    for item in items {
        item.encode(e);
    }
}

impl Codec for u8 {
    fn encode(&self, e: &mut Encoder) {
        e.put_u8(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<u8, DecodeError> {
        d.get_u8()
    }
}

impl Codec for u32 {
    fn encode(&self, e: &mut Encoder) {
        e.put_u32(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<u32, DecodeError> {
        d.get_u32()
    }
}

impl Codec for u64 {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
        d.get_u64()
    }
}

impl Codec for i32 {
    fn encode(&self, e: &mut Encoder) {
        e.put_i32(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<i32, DecodeError> {
        d.get_i32()
    }
}

impl Codec for bool {
    fn encode(&self, e: &mut Encoder) {
        e.put_bool(*self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<bool, DecodeError> {
        d.get_bool()
    }
}

impl Codec for String {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<String, DecodeError> {
        d.get_str()
    }
}

impl<T: Codec> Codec for Option<T> {
    fn encode(&self, e: &mut Encoder) {
        match self {
            None => e.put_u8(0),
            Some(v) => {
                e.put_u8(1);
                v.encode(e);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Option<T>, DecodeError> {
        let at = d.offset();
        match d.get_u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(d)?)),
            tag => Err(bad_tag(at, "option", tag)),
        }
    }
}

impl<T: Codec> Codec for Vec<T> {
    fn encode(&self, e: &mut Encoder) {
        encode_seq(e, self);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Vec<T>, DecodeError> {
        decode_seq(d, ITEMS_MAX, "items")
    }
}

impl<A: Codec, B: Codec> Codec for (A, B) {
    fn encode(&self, e: &mut Encoder) {
        self.0.encode(e);
        self.1.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<(A, B), DecodeError> {
        Ok((A::decode(d)?, B::decode(d)?))
    }
}

/// Implements [`Codec`] for a fieldless enum from one table of tags, so the two directions
/// cannot disagree.
macro_rules! unit_enum_codec {
    ($ty:ty, $what:literal, { $($variant:path = $tag:literal),+ $(,)? }) => {
        impl Codec for $ty {
            fn encode(&self, e: &mut Encoder) {
                e.put_u8(match *self { $($variant => $tag),+ });
            }
            fn decode(d: &mut Decoder<'_>) -> Result<$ty, DecodeError> {
                let at = d.offset();
                match d.get_u8()? {
                    $($tag => Ok($variant),)+
                    tag => Err(bad_tag(at, $what, tag)),
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Fabric types.

unit_enum_codec!(Level, "level", {
    Level::Node = 0,
    Level::NvlDomain = 1,
    Level::Leaf = 2,
    Level::Spine = 3,
    Level::Site = 4,
});

impl Codec for Jurisdiction {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(self.as_str());
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Jurisdiction, DecodeError> {
        let at = d.offset();
        let text = d.get_str()?;
        let j = Jurisdiction::parse(&text).map_err(|m| DecodeError::new(at, m))?;
        // Canonical form only: `parse` upper-cases, so "au" would decode to "AU".
        if j.as_str() != text {
            return Err(DecodeError::new(
                at,
                format!("jurisdiction {text:?} is not canonical"),
            ));
        }
        Ok(j)
    }
}

impl Codec for NodeId {
    fn encode(&self, e: &mut Encoder) {
        e.put_u32(self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<NodeId, DecodeError> {
        Ok(NodeId(d.get_u32()?))
    }
}

impl Codec for MigProfile {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.name);
        e.put_u8(self.compute_slices);
        e.put_u8(self.memory_slices);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<MigProfile, DecodeError> {
        Ok(MigProfile {
            name: d.get_str()?,
            compute_slices: d.get_u8()?,
            memory_slices: d.get_u8()?,
        })
    }
}

impl Codec for GpuModelDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.name);
        e.put_u64(self.memory_mib);
        e.put_u32(self.nvlink_gbit_per_s);
        encode_seq(e, &self.mig_profiles);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<GpuModelDesc, DecodeError> {
        Ok(GpuModelDesc {
            name: d.get_str()?,
            memory_mib: d.get_u64()?,
            nvlink_gbit_per_s: d.get_u32()?,
            mig_profiles: decode_seq(d, MIG_PROFILES_MAX, "mig profiles")?,
        })
    }
}

impl Codec for SiteFabric {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(self.nvlink_rtt_ns);
        e.put_u64(self.leaf_rtt_ns);
        e.put_u64(self.spine_rtt_ns);
        e.put_u64(self.core_rtt_ns);
        e.put_u32(self.pcie_gbit_per_s);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<SiteFabric, DecodeError> {
        Ok(SiteFabric {
            nvlink_rtt_ns: d.get_u64()?,
            leaf_rtt_ns: d.get_u64()?,
            spine_rtt_ns: d.get_u64()?,
            core_rtt_ns: d.get_u64()?,
            pcie_gbit_per_s: d.get_u32()?,
        })
    }
}

impl Codec for SiteDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.name);
        e.put_str(&self.jurisdiction);
        e.put_str(&self.region);
        self.fabric.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<SiteDesc, DecodeError> {
        Ok(SiteDesc {
            name: d.get_str()?,
            jurisdiction: d.get_str()?,
            region: d.get_str()?,
            fabric: SiteFabric::decode(d)?,
        })
    }
}

impl Codec for NicDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.name);
        e.put_u32(self.gbit_per_s);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<NicDesc, DecodeError> {
        Ok(NicDesc {
            name: d.get_str()?,
            gbit_per_s: d.get_u32()?,
        })
    }
}

impl Codec for GpuDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.model);
        e.put_bool(self.mig);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<GpuDesc, DecodeError> {
        Ok(GpuDesc {
            model: d.get_str()?,
            mig: d.get_bool()?,
        })
    }
}

impl Codec for NodeDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.name);
        e.put_str(&self.site);
        e.put_str(&self.spine);
        e.put_str(&self.leaf);
        self.nvlink_domain.encode(e);
        e.put_u64(self.cpu_milli);
        e.put_u64(self.memory_mib);
        encode_seq(e, &self.gpus);
        encode_seq(e, &self.nics);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<NodeDesc, DecodeError> {
        Ok(NodeDesc {
            name: d.get_str()?,
            site: d.get_str()?,
            spine: d.get_str()?,
            leaf: d.get_str()?,
            nvlink_domain: Option::decode(d)?,
            cpu_milli: d.get_u64()?,
            memory_mib: d.get_u64()?,
            gpus: decode_seq(d, GPUS_PER_NODE_MAX, "gpus on a node")?,
            nics: decode_seq(d, NICS_PER_NODE_MAX, "nics on a node")?,
        })
    }
}

impl Codec for SiteLinkDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.a);
        e.put_str(&self.b);
        e.put_u64(self.rtt_ns);
        e.put_u32(self.gbit_per_s);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<SiteLinkDesc, DecodeError> {
        Ok(SiteLinkDesc {
            a: d.get_str()?,
            b: d.get_str()?,
            rtt_ns: d.get_u64()?,
            gbit_per_s: d.get_u32()?,
        })
    }
}

impl Codec for TopologyDesc {
    fn encode(&self, e: &mut Encoder) {
        encode_seq(e, &self.models);
        encode_seq(e, &self.sites);
        encode_seq(e, &self.nodes);
        encode_seq(e, &self.site_links);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<TopologyDesc, DecodeError> {
        Ok(TopologyDesc {
            models: decode_seq(d, MODELS_MAX, "gpu models")?,
            sites: decode_seq(d, SITES_MAX, "sites")?,
            nodes: decode_seq(d, NODES_MAX, "nodes")?,
            site_links: decode_seq(d, SITES_MAX * SITES_MAX, "site links")?,
        })
    }
}

impl Codec for GpuTake {
    fn encode(&self, e: &mut Encoder) {
        match *self {
            GpuTake::None => e.put_u8(0),
            GpuTake::Whole { mask } => {
                e.put_u8(1);
                e.put_u32(mask);
            }
            GpuTake::Milli { local, milli } => {
                e.put_u8(2);
                e.put_u8(local);
                e.put_u16(milli);
            }
            GpuTake::Mig {
                local,
                compute,
                memory,
            } => {
                e.put_u8(3);
                e.put_u8(local);
                e.put_u8(compute);
                e.put_u8(memory);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<GpuTake, DecodeError> {
        let at = d.offset();
        Ok(match d.get_u8()? {
            0 => GpuTake::None,
            1 => GpuTake::Whole { mask: d.get_u32()? },
            2 => GpuTake::Milli {
                local: d.get_u8()?,
                milli: d.get_u16()?,
            },
            3 => GpuTake::Mig {
                local: d.get_u8()?,
                compute: d.get_u8()?,
                memory: d.get_u8()?,
            },
            tag => return Err(bad_tag(at, "gpu take", tag)),
        })
    }
}

impl Codec for Take {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(self.cpu_milli);
        e.put_u64(self.memory_mib);
        self.gpus.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Take, DecodeError> {
        Ok(Take {
            cpu_milli: d.get_u64()?,
            memory_mib: d.get_u64()?,
            gpus: GpuTake::decode(d)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Job model.

impl Codec for JobId {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<JobId, DecodeError> {
        Ok(JobId(d.get_u64()?))
    }
}

impl Codec for GpuRequest {
    fn encode(&self, e: &mut Encoder) {
        match self {
            GpuRequest::None => e.put_u8(0),
            GpuRequest::Whole(n) => {
                e.put_u8(1);
                e.put_u32(*n);
            }
            GpuRequest::Milli(m) => {
                e.put_u8(2);
                e.put_u32(*m);
            }
            GpuRequest::Mig(profile) => {
                e.put_u8(3);
                e.put_str(profile);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<GpuRequest, DecodeError> {
        let at = d.offset();
        Ok(match d.get_u8()? {
            0 => GpuRequest::None,
            1 => GpuRequest::Whole(d.get_u32()?),
            2 => GpuRequest::Milli(d.get_u32()?),
            3 => GpuRequest::Mig(d.get_str()?),
            tag => return Err(bad_tag(at, "gpu request", tag)),
        })
    }
}

unit_enum_codec!(Affinity, "affinity", {
    Affinity::Required = 0,
    Affinity::Preferred = 1,
});

impl Codec for TopologyRule {
    fn encode(&self, e: &mut Encoder) {
        self.level.encode(e);
        self.affinity.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<TopologyRule, DecodeError> {
        Ok(TopologyRule {
            level: Option::decode(d)?,
            affinity: Affinity::decode(d)?,
        })
    }
}

impl Codec for GangSpec {
    fn encode(&self, e: &mut Encoder) {
        e.put_u32(self.members);
        e.put_u32(self.gpus_per_member);
        self.topology.encode(e);
        self.max_rtt_ns.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<GangSpec, DecodeError> {
        Ok(GangSpec {
            members: d.get_u32()?,
            gpus_per_member: d.get_u32()?,
            topology: TopologyRule::decode(d)?,
            max_rtt_ns: Option::decode(d)?,
        })
    }
}

impl Codec for LatencySlo {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.ingress_site);
        e.put_u64(self.max_rtt_ns);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<LatencySlo, DecodeError> {
        Ok(LatencySlo {
            ingress_site: d.get_str()?,
            max_rtt_ns: d.get_u64()?,
        })
    }
}

impl Codec for InferenceSpec {
    fn encode(&self, e: &mut Encoder) {
        e.put_u32(self.replicas);
        self.gpus.encode(e);
        self.slo.encode(e);
        self.spread.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<InferenceSpec, DecodeError> {
        Ok(InferenceSpec {
            replicas: d.get_u32()?,
            gpus: GpuRequest::decode(d)?,
            slo: Option::decode(d)?,
            spread: Level::decode(d)?,
        })
    }
}

impl Codec for Workload {
    fn encode(&self, e: &mut Encoder) {
        match self {
            Workload::Batch { gpus } => {
                e.put_u8(0);
                gpus.encode(e);
            }
            Workload::Gang(gang) => {
                e.put_u8(1);
                gang.encode(e);
            }
            Workload::Inference(service) => {
                e.put_u8(2);
                service.encode(e);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Workload, DecodeError> {
        let at = d.offset();
        Ok(match d.get_u8()? {
            0 => Workload::Batch {
                gpus: GpuRequest::decode(d)?,
            },
            1 => Workload::Gang(GangSpec::decode(d)?),
            2 => Workload::Inference(InferenceSpec::decode(d)?),
            tag => return Err(bad_tag(at, "workload", tag)),
        })
    }
}

impl Codec for JobSpec {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.name);
        e.put_str(&self.tenant);
        e.put_u32(self.priority);
        encode_seq(e, &self.jurisdictions);
        encode_seq(e, &self.gpu_models);
        e.put_u64(self.cpu_milli);
        e.put_u64(self.memory_mib);
        self.time_limit_ms.encode(e);
        self.workload.encode(e);
        self.run.encode(e);
        self.control.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<JobSpec, DecodeError> {
        Ok(JobSpec {
            name: d.get_str()?,
            tenant: d.get_str()?,
            priority: d.get_u32()?,
            jurisdictions: Vec::decode(d)?,
            gpu_models: Vec::decode(d)?,
            cpu_milli: d.get_u64()?,
            memory_mib: d.get_u64()?,
            time_limit_ms: Option::decode(d)?,
            workload: Workload::decode(d)?,
            run: RunSpec::decode(d)?,
            control: JobControl::decode(d)?,
        })
    }
}

unit_enum_codec!(DepKind, "dependency kind", {
    DepKind::After = 0,
    DepKind::AfterAny = 1,
    DepKind::AfterOk = 2,
    DepKind::AfterNotOk = 3,
    DepKind::Singleton = 4,
});

impl Codec for DepTerm {
    fn encode(&self, e: &mut Encoder) {
        self.kind.encode(e);
        e.put_u64(self.job);
        self.task.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<DepTerm, DecodeError> {
        Ok(DepTerm {
            kind: DepKind::decode(d)?,
            job: d.get_u64()?,
            task: Option::decode(d)?,
        })
    }
}

impl Codec for JobControl {
    fn encode(&self, e: &mut Encoder) {
        e.put_str(&self.user);
        e.put_str(&self.queue);
        e.put_bool(self.hold);
        match &self.dependency {
            None => e.put_u8(0),
            Some(dep) => {
                e.put_u8(1);
                e.put_bool(dep.any);
                encode_seq(e, &dep.terms);
            }
        }
        self.begin_ms.encode(e);
        match &self.array {
            None => e.put_u8(0),
            Some(a) => {
                e.put_u8(1);
                encode_seq(e, &a.indices);
                e.put_u32(a.throttle);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<JobControl, DecodeError> {
        let user = d.get_str()?;
        let queue = d.get_str()?;
        let hold = d.get_bool()?;
        let at = d.offset();
        let dependency = match d.get_u8()? {
            0 => None,
            1 => {
                let any = d.get_bool()?;
                let n = d.get_count(DEPENDENCY_TERMS_MAX, "dependency terms")?;
                let mut terms = Vec::with_capacity(n);
                for _ in 0..n {
                    terms.push(DepTerm::decode(d)?);
                }
                Some(Dependency { any, terms })
            }
            tag => return Err(bad_tag(at, "dependency", tag)),
        };
        let begin_ms = Option::decode(d)?;
        let at = d.offset();
        let array = match d.get_u8()? {
            0 => None,
            1 => {
                let n = d.get_count(ARRAY_TASKS_MAX, "array indices")?;
                let mut indices = Vec::with_capacity(n);
                for _ in 0..n {
                    indices.push(d.get_u32()?);
                }
                Some(ArraySpec {
                    indices,
                    throttle: d.get_u32()?,
                })
            }
            tag => return Err(bad_tag(at, "array", tag)),
        };
        Ok(JobControl {
            user,
            queue,
            hold,
            dependency,
            begin_ms,
            array,
        })
    }
}

impl Codec for ArrayTask {
    fn encode(&self, e: &mut Encoder) {
        self.job.encode(e);
        e.put_u32(self.index);
        e.put_u32(self.throttle);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<ArrayTask, DecodeError> {
        Ok(ArrayTask {
            job: JobId::decode(d)?,
            index: d.get_u32()?,
            throttle: d.get_u32()?,
        })
    }
}

impl Codec for Deps {
    fn encode(&self, e: &mut Encoder) {
        e.put_bool(self.any);
        e.put_count(self.terms.len());
        for (kind, job) in &self.terms {
            kind.encode(e);
            job.encode(e);
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Deps, DecodeError> {
        let any = d.get_bool()?;
        let n = d.get_count(DEPENDENCY_TERMS_MAX * 4, "dependency jobs")?;
        let mut terms = Vec::with_capacity(n);
        for _ in 0..n {
            terms.push((DepKind::decode(d)?, JobId::decode(d)?));
        }
        Ok(Deps { any, terms })
    }
}

impl Codec for RunSpec {
    fn encode(&self, e: &mut Encoder) {
        e.put_count(self.argv.len());
        for arg in &self.argv {
            e.put_str(arg);
        }
        e.put_count(self.env.len());
        for (name, value) in &self.env {
            e.put_str(name);
            e.put_str(value);
        }
        e.put_str(&self.workdir);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<RunSpec, DecodeError> {
        let n = d.get_count(RUN_ITEMS_MAX, "command arguments")?;
        let mut argv = Vec::with_capacity(n);
        for _ in 0..n {
            argv.push(d.get_str()?);
        }
        let n = d.get_count(RUN_ITEMS_MAX, "environment variables")?;
        let mut env = Vec::with_capacity(n);
        for _ in 0..n {
            env.push((d.get_str()?, d.get_str()?));
        }
        Ok(RunSpec {
            argv,
            env,
            workdir: d.get_str()?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Placement types.

impl Codec for MemberSlot {
    fn encode(&self, e: &mut Encoder) {
        self.node.encode(e);
        self.take.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<MemberSlot, DecodeError> {
        Ok(MemberSlot {
            node: NodeId::decode(d)?,
            take: Take::decode(d)?,
        })
    }
}

impl Codec for Plan {
    fn encode(&self, e: &mut Encoder) {
        self.job.encode(e);
        e.put_u64(self.seed);
        encode_seq(e, &self.members);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Plan, DecodeError> {
        Ok(Plan {
            job: JobId::decode(d)?,
            seed: d.get_u64()?,
            members: Vec::decode(d)?,
        })
    }
}

unit_enum_codec!(PendingReason, "pending reason", {
    PendingReason::Resources = 0,
    PendingReason::Priority = 1,
    PendingReason::JurisdictionUnavailable = 2,
    PendingReason::LatencyUnavailable = 3,
    PendingReason::BadConstraints = 4,
    PendingReason::StalePlan = 5,
    PendingReason::Held = 6,
    PendingReason::Dependency = 7,
    PendingReason::DependencyNeverSatisfied = 8,
    PendingReason::BeginTime = 9,
    PendingReason::ArrayTaskLimit = 10,
});

impl Codec for Unschedulable {
    fn encode(&self, e: &mut Encoder) {
        self.reason.encode(e);
        e.put_str(&self.message);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Unschedulable, DecodeError> {
        Ok(Unschedulable {
            reason: PendingReason::decode(d)?,
            message: d.get_str()?,
        })
    }
}

impl Codec for WorkloadShape {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(self.cpu_milli);
        e.put_u32(self.gpu_milli);
        e.put_u32(self.gpu_count);
        e.put_u64(self.model_mask);
        e.put_u32(self.weight);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<WorkloadShape, DecodeError> {
        Ok(WorkloadShape {
            cpu_milli: d.get_u64()?,
            gpu_milli: d.get_u32()?,
            gpu_count: d.get_u32()?,
            model_mask: d.get_u64()?,
            weight: d.get_u32()?,
        })
    }
}

impl Codec for TargetWorkload {
    fn encode(&self, e: &mut Encoder) {
        encode_seq(e, &self.shapes);
        e.put_u64(self.population);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<TargetWorkload, DecodeError> {
        Ok(TargetWorkload {
            shapes: Vec::decode(d)?,
            population: d.get_u64()?,
        })
    }
}

/// Share-policy tags. Tag 1 is the first FGD layout (shapes only, weights in parts per
/// million): still decoded, no longer written.
impl Codec for SharePolicy {
    fn encode(&self, e: &mut Encoder) {
        match self {
            SharePolicy::BestFit => e.put_u8(0),
            SharePolicy::Fgd(target) => {
                e.put_u8(2);
                target.encode(e);
            }
            SharePolicy::Random => e.put_u8(3),
            SharePolicy::DotProduct => e.put_u8(4),
            SharePolicy::GpuClustering => e.put_u8(5),
            SharePolicy::GpuPacking => e.put_u8(6),
            SharePolicy::NodeBestFit => e.put_u8(7),
            SharePolicy::FragPack(target) => {
                e.put_u8(8);
                target.encode(e);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<SharePolicy, DecodeError> {
        let at = d.offset();
        Ok(match d.get_u8()? {
            0 => SharePolicy::BestFit,
            1 => SharePolicy::Fgd(TargetWorkload {
                shapes: Vec::decode(d)?,
                population: 0,
            }),
            2 => SharePolicy::Fgd(TargetWorkload::decode(d)?),
            3 => SharePolicy::Random,
            4 => SharePolicy::DotProduct,
            5 => SharePolicy::GpuClustering,
            6 => SharePolicy::GpuPacking,
            7 => SharePolicy::NodeBestFit,
            8 => SharePolicy::FragPack(TargetWorkload::decode(d)?),
            tag => return Err(bad_tag(at, "share policy", tag)),
        })
    }
}

fn get_usize(d: &mut Decoder<'_>) -> Result<usize, DecodeError> {
    let at = d.offset();
    let v = d.get_u64()?;
    usize::try_from(v).map_err(|_| DecodeError::new(at, format!("{v} does not fit a usize")))
}

impl Codec for PolicyConfig {
    fn encode(&self, e: &mut Encoder) {
        self.share.encode(e);
        e.put_u64(self.candidate_limit as u64);
        e.put_u64(self.subtree_limit as u64);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<PolicyConfig, DecodeError> {
        Ok(PolicyConfig {
            share: SharePolicy::decode(d)?,
            candidate_limit: get_usize(d)?,
            subtree_limit: get_usize(d)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// State-machine types.

unit_enum_codec!(JobState, "job state", {
    JobState::Pending = 0,
    JobState::Placed = 1,
    JobState::Running = 2,
    JobState::Completed = 3,
    JobState::Failed = 4,
    JobState::Cancelled = 5,
    JobState::Timeout = 6,
    JobState::NodeFail = 7,
    JobState::OutOfMemory = 8,
});

unit_enum_codec!(NodeState, "node state", {
    NodeState::Unknown = 0,
    NodeState::Up = 1,
    NodeState::Drained = 2,
    NodeState::Down = 3,
});

impl Codec for ExitStatus {
    fn encode(&self, e: &mut Encoder) {
        match *self {
            ExitStatus::Completed => e.put_u8(0),
            ExitStatus::Failed(code) => {
                e.put_u8(1);
                e.put_i32(code);
            }
            ExitStatus::OutOfMemory => e.put_u8(2),
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<ExitStatus, DecodeError> {
        let at = d.offset();
        Ok(match d.get_u8()? {
            0 => ExitStatus::Completed,
            1 => ExitStatus::Failed(d.get_i32()?),
            2 => ExitStatus::OutOfMemory,
            tag => return Err(bad_tag(at, "exit status", tag)),
        })
    }
}

impl Codec for RequestId {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(self.client);
        e.put_u64(self.seq);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<RequestId, DecodeError> {
        Ok(RequestId {
            client: d.get_u64()?,
            seq: d.get_u64()?,
        })
    }
}

impl Codec for JobRecord {
    fn encode(&self, e: &mut Encoder) {
        self.id.encode(e);
        self.spec.encode(e);
        self.state.encode(e);
        e.put_u64(self.submit_index);
        e.put_u64(self.submit_ms);
        self.start_ms.encode(e);
        self.end_ms.encode(e);
        self.plan.encode(e);
        self.reason.encode(e);
        self.tried_epoch.encode(e);
        e.put_u32(self.restarts);
        self.exit_code.encode(e);
        self.request.encode(e);
        self.ran_on.encode(e);
        self.held.encode(e);
        self.deps.encode(e);
        self.array.encode(e);
        self.isolation.map(|i| i.net).encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<JobRecord, DecodeError> {
        Ok(JobRecord {
            id: JobId::decode(d)?,
            spec: JobSpec::decode(d)?,
            state: JobState::decode(d)?,
            submit_index: d.get_u64()?,
            submit_ms: d.get_u64()?,
            start_ms: Option::decode(d)?,
            end_ms: Option::decode(d)?,
            plan: Option::decode(d)?,
            reason: Option::decode(d)?,
            tried_epoch: Option::decode(d)?,
            restarts: d.get_u32()?,
            exit_code: Option::decode(d)?,
            request: Option::decode(d)?,
            ran_on: Option::decode(d)?,
            held: bool::decode(d)?,
            deps: Option::decode(d)?,
            array: Option::decode(d)?,
            isolation: Option::<u32>::decode(d)?.map(|net| IsolationIntent { net }),
        })
    }
}

impl Codec for Command {
    fn encode(&self, e: &mut Encoder) {
        match self {
            Command::RegisterNode { node } => {
                e.put_u8(0);
                e.put_str(node);
            }
            Command::Submit { spec, request } => {
                e.put_u8(1);
                spec.encode(e);
                request.encode(e);
            }
            Command::SchedulePass {
                epoch,
                plans,
                deferred,
            } => {
                e.put_u8(2);
                e.put_u64(*epoch);
                encode_seq(e, plans);
                encode_seq(e, deferred);
            }
            Command::Start { job } => {
                e.put_u8(3);
                job.encode(e);
            }
            Command::Finish { job, status } => {
                e.put_u8(4);
                job.encode(e);
                status.encode(e);
            }
            Command::Cancel { job } => {
                e.put_u8(5);
                job.encode(e);
            }
            Command::Drain { node } => {
                e.put_u8(6);
                e.put_str(node);
            }
            Command::Resume { node } => {
                e.put_u8(7);
                e.put_str(node);
            }
            Command::FailNode { node } => {
                e.put_u8(8);
                e.put_str(node);
            }
            Command::SetSiteRtt { a, b, rtt_ns } => {
                e.put_u8(9);
                e.put_str(a);
                e.put_str(b);
                e.put_u64(*rtt_ns);
            }
            Command::Tick => e.put_u8(10),
            Command::Hold { job } => {
                e.put_u8(11);
                job.encode(e);
            }
            Command::Release { job } => {
                e.put_u8(12);
                job.encode(e);
            }
            Command::Requeue { job } => {
                e.put_u8(13);
                job.encode(e);
            }
            Command::SetTimeLimit { job, time_limit_ms } => {
                e.put_u8(14);
                job.encode(e);
                time_limit_ms.encode(e);
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Command, DecodeError> {
        let at = d.offset();
        Ok(match d.get_u8()? {
            0 => Command::RegisterNode { node: d.get_str()? },
            1 => Command::Submit {
                spec: JobSpec::decode(d)?,
                request: Option::decode(d)?,
            },
            2 => Command::SchedulePass {
                epoch: d.get_u64()?,
                plans: Vec::decode(d)?,
                deferred: Vec::decode(d)?,
            },
            3 => Command::Start {
                job: JobId::decode(d)?,
            },
            4 => Command::Finish {
                job: JobId::decode(d)?,
                status: ExitStatus::decode(d)?,
            },
            5 => Command::Cancel {
                job: JobId::decode(d)?,
            },
            6 => Command::Drain { node: d.get_str()? },
            7 => Command::Resume { node: d.get_str()? },
            8 => Command::FailNode { node: d.get_str()? },
            9 => Command::SetSiteRtt {
                a: d.get_str()?,
                b: d.get_str()?,
                rtt_ns: d.get_u64()?,
            },
            10 => Command::Tick,
            11 => Command::Hold {
                job: JobId::decode(d)?,
            },
            12 => Command::Release {
                job: JobId::decode(d)?,
            },
            13 => Command::Requeue {
                job: JobId::decode(d)?,
            },
            14 => Command::SetTimeLimit {
                job: JobId::decode(d)?,
                time_limit_ms: Option::decode(d)?,
            },
            tag => return Err(bad_tag(at, "command", tag)),
        })
    }
}

impl Codec for Entry {
    fn encode(&self, e: &mut Encoder) {
        e.put_u64(self.index);
        e.put_u64(self.time_ms);
        self.command.encode(e);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Entry, DecodeError> {
        Ok(Entry {
            index: d.get_u64()?,
            time_ms: d.get_u64()?,
            command: Command::decode(d)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot, restore, state hash.

impl StateMachine {
    /// The state as a self-checking snapshot. See the module docs for the layout. Pure: the
    /// same state always gives the same bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.put_raw(&SNAPSHOT_MAGIC);
        e.put_u8(FORMAT_VERSION);
        self.encode_body(&mut e, &mut |_| {});
        let checksum = Sha256::digest(e.as_bytes());
        e.put_raw(&checksum);
        e.into_bytes()
    }

    /// Rebuilds a state machine from [`StateMachine::snapshot`] bytes. First it verifies the
    /// magic, the version and the checksum. It then rebuilds the derived state (the topology,
    /// the ledger and the pending queue), checking it as it goes. The result has the same
    /// [`StateMachine::state_hash`] as the state that was snapshotted. Any input that is not
    /// such a snapshot gives an error, never a panic.
    pub fn restore(bytes: &[u8]) -> Result<StateMachine, DecodeError> {
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(DecodeError::new(
                bytes.len(),
                format!(
                    "snapshot truncated: {} bytes, at least {} expected",
                    bytes.len(),
                    HEADER_LEN + CHECKSUM_LEN
                ),
            ));
        }
        if bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
            return Err(DecodeError::new(0, "not a sovra snapshot (bad magic)"));
        }
        let version = bytes[SNAPSHOT_MAGIC.len()];
        if version != FORMAT_VERSION {
            return Err(DecodeError::new(
                SNAPSHOT_MAGIC.len(),
                format!("unsupported snapshot version {version}, expected {FORMAT_VERSION}"),
            ));
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Sha256::digest(content).as_slice() != checksum {
            return Err(DecodeError::new(
                content.len(),
                "snapshot checksum mismatch",
            ));
        }
        let mut d = Decoder::new(content);
        d.get_raw(HEADER_LEN)?; // Checked above; offsets stay relative to the whole snapshot.
        let sm = decode_state(&mut d)?;
        d.finish()?;
        Ok(sm)
    }

    /// A SHA-256 digest of everything that decides future behaviour. That is the snapshot body
    /// plus the derived state: the ledger's free state per node and use per GPU, the built
    /// inter-site matrices and the queue order. Replicas that applied the same entries have
    /// equal hashes, and [`StateMachine::restore`] keeps the hash. Pure; O(cluster + jobs).
    pub fn state_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        let mut e = Encoder::default();
        e.put_raw(&HASH_DOMAIN);
        e.put_u8(FORMAT_VERSION);
        let mut spill = |e: &mut Encoder| {
            if e.len() >= HASH_CHUNK {
                hasher.update(e.as_bytes());
                e.clear();
            }
        };
        self.encode_body(&mut e, &mut spill);
        // Derived state. It follows from the body on a correct replica; hashing it is what
        // detects a replica whose derived state drifted.
        let topology = &self.topology;
        let n_sites = topology.sites().len();
        e.put_count(n_sites);
        for a in 0..n_sites {
            for b in 0..n_sites {
                let (a, b) = (SiteId::from_idx(a), SiteId::from_idx(b));
                e.put_u64(topology.site_rtt_ns(a, b));
                e.put_u32(topology.site_gbit_per_s(a, b));
            }
            spill(&mut e);
        }
        e.put_count(topology.nodes().len());
        for i in 0..topology.nodes().len() {
            let free = self.ledger.node(NodeId::from_idx(i));
            e.put_u64(free.cpu_milli);
            e.put_u64(free.memory_mib);
            e.put_u32(free.whole_mask);
            e.put_bool(free.schedulable);
            spill(&mut e);
        }
        e.put_count(topology.gpu_count());
        for g in 0..topology.gpu_count() {
            let used = self.ledger.gpu(GpuId::from_idx(g));
            e.put_u16(used.used_milli);
            e.put_u8(used.mig_compute_used);
            e.put_u8(used.mig_memory_used);
            spill(&mut e);
        }
        e.put_count(self.queue.len());
        for job in self.queue.iter() {
            job.encode(&mut e);
            spill(&mut e);
        }
        hasher.update(e.as_bytes());
        hasher.finalize().into()
    }

    /// Writes the snapshot body, calling `spill` after each variable-size part so a hasher can
    /// consume the bytes in chunks.
    fn encode_body(&self, e: &mut Encoder, spill: &mut dyn FnMut(&mut Encoder)) {
        self.topology.desc().encode(e);
        encode_seq(e, &self.scope);
        encode_seq(e, &self.nodes);
        encode_seq(e, &self.agent_managed);
        spill(e);
        e.put_count(self.jobs.len());
        for record in self.jobs.values() {
            record.encode(e);
            spill(e);
        }
        e.put_u64(self.next_job);
        e.put_u64(self.applied_index);
        e.put_u64(self.epoch);
        self.policy.encode(e);
        e.put_u64(self.clock_ms);
        e.put_count(self.tenant_nets.len());
        for (tenant, net) in &self.tenant_nets {
            e.put_str(tenant);
            e.put_u32(*net);
        }
        spill(e);
    }
}

/// Decodes a snapshot body and rebuilds the derived state. It checks everything that a later
/// `apply` or `plan_pass` relies on and that would otherwise end in a panic there.
fn decode_state(d: &mut Decoder<'_>) -> Result<StateMachine, DecodeError> {
    let at = d.offset();
    let desc = TopologyDesc::decode(d)?;
    let topology = Topology::build(desc)
        .map_err(|e| DecodeError::new(at, format!("snapshot topology is invalid: {e}")))?;

    let at = d.offset();
    let scope: Vec<Jurisdiction> = Vec::decode(d)?;
    if !scope.windows(2).all(|w| w[0] < w[1]) {
        return Err(DecodeError::new(
            at,
            "snapshot scope is not sorted and unique",
        ));
    }
    let mask = topology.jurisdiction_mask(&scope);
    if let Some(site) = topology
        .sites()
        .iter()
        .find(|s| !mask.contains(s.jurisdiction))
    {
        return Err(DecodeError::new(
            at,
            format!("snapshot scope leaves out site {}", site.name),
        ));
    }

    let at = d.offset();
    let nodes: Vec<NodeState> = decode_seq(d, NODES_MAX, "node states")?;
    if nodes.len() != topology.nodes().len() {
        return Err(DecodeError::new(
            at,
            format!(
                "snapshot has {} node states for {} nodes",
                nodes.len(),
                topology.nodes().len()
            ),
        ));
    }
    let at = d.offset();
    let agent_managed: Vec<bool> = decode_seq(d, NODES_MAX, "agent-managed flags")?;
    if agent_managed.len() != nodes.len() {
        return Err(DecodeError::new(
            at,
            format!(
                "snapshot has {} agent flags for {} nodes",
                agent_managed.len(),
                nodes.len()
            ),
        ));
    }

    let n_jobs = d.get_count(JOBS_MAX, "jobs")?;
    let mut jobs: BTreeMap<JobId, JobRecord> = BTreeMap::new();
    let mut requests: BTreeMap<RequestId, JobId> = BTreeMap::new();
    for _ in 0..n_jobs {
        let at = d.offset();
        let record = JobRecord::decode(d)?;
        if jobs
            .last_key_value()
            .is_some_and(|(&last, _)| last >= record.id)
        {
            return Err(DecodeError::new(
                at,
                format!("job {} out of order", record.id),
            ));
        }
        check_record(&topology, &record).map_err(|m| DecodeError::new(at, m))?;
        if let Some(request) = record.request {
            if requests.insert(request, record.id).is_some() {
                return Err(DecodeError::new(
                    at,
                    format!("request {request:?} submitted two jobs"),
                ));
            }
        }
        jobs.insert(record.id, record);
    }

    let at = d.offset();
    let next_job = d.get_u64()?;
    let applied_index = d.get_u64()?;
    let epoch = d.get_u64()?;
    let policy = PolicyConfig::decode(d)?;
    let clock_ms = d.get_u64()?;
    let at_nets = d.offset();
    let n = d.get_count(TENANT_NETS_MAX as usize, "tenant networks")?;
    let mut tenant_nets = BTreeMap::new();
    for _ in 0..n {
        let at = d.offset();
        let tenant = d.get_str()?;
        let net = d.get_u32()?;
        if net == 0 || net > TENANT_NETS_MAX || tenant_nets.insert(tenant, net).is_some() {
            return Err(DecodeError::new(at, "invalid tenant network"));
        }
    }
    // Dense and distinct, and every job's intent is its tenant's.
    let mut nets: Vec<u32> = tenant_nets.values().copied().collect();
    nets.sort_unstable();
    if nets.iter().enumerate().any(|(i, &n)| n != i as u32 + 1) {
        return Err(DecodeError::new(at_nets, "tenant networks are not 1..n"));
    }
    for r in jobs.values() {
        let bad = match r.isolation {
            Some(i) => tenant_nets.get(&r.spec.tenant) != Some(&i.net),
            None => r.state.holds_resources(),
        };
        if bad {
            return Err(DecodeError::new(
                at_nets,
                format!("job {} has no or the wrong tenant network", r.id),
            ));
        }
    }
    // The state machine asserts `next_job > jobs.len()` and increments both counters.
    if jobs
        .last_key_value()
        .is_some_and(|(&last, _)| last.0 >= next_job)
        || next_job <= jobs.len() as u64
        || next_job == u64::MAX
    {
        return Err(DecodeError::new(
            at,
            format!("snapshot next job id {next_job} is invalid"),
        ));
    }
    if epoch == u64::MAX {
        return Err(DecodeError::new(at, "snapshot capacity epoch is invalid"));
    }

    let ledger = rebuild_ledger(&topology, &nodes, &jobs).map_err(|m| DecodeError::new(at, m))?;
    let mut queue = PendingQueue::default();
    for r in jobs.values().filter(|r| r.state == JobState::Pending) {
        queue.insert(r.spec.priority, r.submit_index, r.id);
    }
    Ok(StateMachine {
        topology,
        ledger,
        scope,
        nodes,
        agent_managed,
        jobs,
        requests,
        queue,
        next_job,
        applied_index,
        epoch,
        policy,
        clock_ms,
        tenant_nets,
    })
}

/// Checks one record on its own: the spec is valid and the allocation has the job's shape.
fn check_record(topology: &Topology, r: &JobRecord) -> Result<(), String> {
    r.spec
        .validate()
        .map_err(|e| format!("job {}: {e}", r.id))?;
    if let Some(ran) = &r.ran_on {
        if ran.job != r.id
            || ran
                .members
                .iter()
                .any(|m| m.node.idx() >= topology.nodes().len())
        {
            return Err(format!("job {} ran on an invalid allocation", r.id));
        }
    }
    match (&r.plan, r.state.holds_resources()) {
        (None, false) => Ok(()),
        (None, true) => Err(format!(
            "job {} is {:?} without an allocation",
            r.id, r.state
        )),
        (Some(_), false) => Err(format!("job {} is {:?} with an allocation", r.id, r.state)),
        (Some(plan), true) => {
            if plan.job != r.id {
                return Err(format!("job {} holds the plan of job {}", r.id, plan.job));
            }
            if plan.members.len() != r.spec.member_count() as usize {
                return Err(format!("job {} plan has the wrong number of members", r.id));
            }
            if plan
                .members
                .iter()
                .any(|m| m.node.idx() >= topology.nodes().len())
            {
                return Err(format!("job {} plan names an unknown node", r.id));
            }
            Ok(())
        }
    }
}

/// Recounts the ledger from the jobs' allocations. Allocations are taken first, while every
/// node of a fresh ledger is still schedulable: a drained node legitimately holds running
/// jobs, and [`Ledger::check`] would call it unschedulable. So on a fresh ledger `check` tests
/// resources only. The node states are applied after. The ledger's state is a function of the
/// final allocations, not of the order of takes, so the result equals the live ledger.
fn rebuild_ledger(
    topology: &Topology,
    nodes: &[NodeState],
    jobs: &BTreeMap<JobId, JobRecord>,
) -> Result<Ledger, String> {
    let mut ledger = Ledger::new(topology);
    for r in jobs.values() {
        let Some(plan) = &r.plan else { continue };
        for slot in &plan.members {
            let name = &topology.node(slot.node).name;
            // Bound slice counts first: `check` adds them to the used counts as `u8`.
            if let GpuTake::Mig {
                compute, memory, ..
            } = slot.take.gpus
            {
                if compute > MIG_COMPUTE_SLICES || memory > MIG_MEMORY_SLICES {
                    return Err(format!("job {} takes too many mig slices on {name}", r.id));
                }
            }
            if let Err(short) = ledger.check(topology, slot.node, &slot.take) {
                return Err(format!(
                    "job {} allocation on node {name} does not fit ({})",
                    r.id,
                    short.name()
                ));
            }
            ledger.take(topology, slot.node, &slot.take);
        }
    }
    for (i, &state) in nodes.iter().enumerate() {
        ledger.set_schedulable(topology, NodeId::from_idx(i), state == NodeState::Up);
    }
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use sovra_fabric::topology::standard_mig_profiles;

    use super::*;
    use crate::core::rng::mix;
    use crate::core::state::Applied;

    // -----------------------------------------------------------------------------------------
    // Fixtures.

    fn node(name: &str, site: &str, leaf: &str, gpus: Vec<GpuDesc>) -> NodeDesc {
        NodeDesc {
            name: name.into(),
            site: site.into(),
            spine: "s0".into(),
            leaf: leaf.into(),
            nvlink_domain: None,
            cpu_milli: 64_000,
            memory_mib: 512 * 1024,
            gpus,
            nics: vec![NicDesc {
                name: "mlx5_0".into(),
                gbit_per_s: 400,
            }],
        }
    }

    fn gpus(model: &str, n: usize, mig: usize) -> Vec<GpuDesc> {
        (0..n)
            .map(|i| GpuDesc {
                model: model.into(),
                mig: i < mig,
            })
            .collect()
    }

    /// Two sites (AU, JP), H100 nodes, an A100 node with two MIG-mode GPUs, a CPU-only node.
    fn desc() -> TopologyDesc {
        let site = |name: &str, j: &str| SiteDesc {
            name: name.into(),
            jurisdiction: j.into(),
            region: format!("{j}-region"),
            fabric: SiteFabric::default(),
        };
        let mut nvl = node("syd-h1", "syd1", "l0", gpus("H100", 8, 0));
        nvl.nvlink_domain = Some("nvl0".into());
        TopologyDesc {
            models: vec![
                GpuModelDesc {
                    name: "H100".into(),
                    memory_mib: 80 * 1024,
                    nvlink_gbit_per_s: 7_200,
                    mig_profiles: vec![],
                },
                GpuModelDesc {
                    name: "A100".into(),
                    memory_mib: 80 * 1024,
                    nvlink_gbit_per_s: 4_800,
                    mig_profiles: standard_mig_profiles(80),
                },
            ],
            sites: vec![site("syd1", "AU"), site("tyo1", "JP")],
            nodes: vec![
                node("syd-h0", "syd1", "l0", gpus("H100", 8, 0)),
                nvl,
                node("syd-h2", "syd1", "l1", gpus("H100", 8, 0)),
                node("syd-a0", "syd1", "l1", gpus("A100", 4, 2)),
                node("syd-c0", "syd1", "l1", vec![]),
                node("tyo-h0", "tyo1", "l0", gpus("H100", 8, 0)),
                node("tyo-h1", "tyo1", "l0", gpus("H100", 8, 0)),
                node("tyo-a0", "tyo1", "l0", gpus("A100", 4, 0)),
            ],
            site_links: vec![SiteLinkDesc {
                a: "syd1".into(),
                b: "tyo1".into(),
                rtt_ns: 110_000_000,
                gbit_per_s: 100,
            }],
        }
    }

    fn spec(name: &str, juris: &[&str], workload: Workload) -> JobSpec {
        JobSpec {
            run: Default::default(),
            name: name.into(),
            tenant: "research".into(),
            priority: 10,
            jurisdictions: juris
                .iter()
                .map(|j| Jurisdiction::parse(j).unwrap())
                .collect(),
            gpu_models: vec![],
            cpu_milli: 4_000,
            memory_mib: 16 * 1024,
            time_limit_ms: None,
            workload,
            control: Default::default(),
        }
    }

    fn gang(members: u32, gpus_per_member: u32, level: Option<Level>, a: Affinity) -> Workload {
        Workload::Gang(GangSpec {
            members,
            gpus_per_member,
            topology: TopologyRule { level, affinity: a },
            max_rtt_ns: None,
        })
    }

    /// Jobs of every workload kind and GPU request kind.
    fn specs() -> Vec<JobSpec> {
        let batch = |gpus| Workload::Batch { gpus };
        let mut milli = spec("milli", &["AU", "JP"], batch(GpuRequest::Milli(250)));
        milli.gpu_models = vec!["A100".into()];
        let mut limited = spec("limited", &["AU"], batch(GpuRequest::Whole(1)));
        limited.time_limit_ms = Some(500);
        let mut urgent = spec("urgent", &["JP"], batch(GpuRequest::Whole(4)));
        urgent.priority = 50;
        let service = |replicas, gpus, slo| {
            Workload::Inference(InferenceSpec {
                replicas,
                gpus,
                slo,
                spread: Level::Node,
            })
        };
        let slo = LatencySlo {
            ingress_site: "syd1".into(),
            max_rtt_ns: 1_000_000,
        };
        vec![
            spec("whole", &["AU"], batch(GpuRequest::Whole(2))),
            milli,
            spec("mig", &["AU"], batch(GpuRequest::Mig("1g.10gb".into()))),
            spec("cpu", &["AU", "JP"], batch(GpuRequest::None)),
            limited,
            urgent,
            spec(
                "gang-au",
                &["AU"],
                gang(2, 8, Some(Level::Leaf), Affinity::Preferred),
            ),
            spec(
                "gang-jp",
                &["JP"],
                gang(2, 4, Some(Level::Site), Affinity::Required),
            ),
            spec(
                "serve",
                &["AU"],
                service(2, GpuRequest::Whole(1), Some(slo)),
            ),
            spec(
                "serve-mig",
                &["AU"],
                service(1, GpuRequest::Mig("2g.20gb".into()), None),
            ),
            spec(
                "serve-milli",
                &["JP"],
                service(2, GpuRequest::Milli(500), None),
            ),
            spec("too-big", &["AU"], gang(8, 8, None, Affinity::Preferred)),
            spec("elsewhere", &["SG"], batch(GpuRequest::Whole(1))),
        ]
    }

    /// Hands out strictly increasing log indexes and times.
    struct Log {
        index: u64,
        time_ms: u64,
    }

    impl Log {
        fn entry(&mut self, command: Command) -> Entry {
            self.index += 1;
            self.time_ms += 200;
            Entry {
                index: self.index,
                time_ms: self.time_ms,
                command,
            }
        }

        fn apply(&mut self, sm: &mut StateMachine, command: Command) -> Applied {
            let entry = self.entry(command);
            // Every entry the test applies also goes through the log codec.
            assert_eq!(from_blob::<Entry>(&to_blob(&entry)).unwrap(), entry);
            let applied = sm.apply(&entry);
            sm.check_invariants();
            applied
        }

        fn pass(&mut self, sm: &mut StateMachine) -> Option<Applied> {
            let (command, _) = sm.plan_pass(64)?;
            Some(self.apply(sm, command))
        }
    }

    fn jobs_in(sm: &StateMachine, state: JobState) -> Vec<JobId> {
        sm.jobs()
            .filter(|r| r.state == state)
            .map(|r| r.id)
            .collect()
    }

    fn node_name(sm: &StateMachine, job: JobId) -> String {
        let plan = sm.job(job).unwrap().plan.as_ref().unwrap();
        sm.topology().node(plan.members[0].node).name.clone()
    }

    /// A state that has seen every command, with jobs in most states, a running job on a
    /// drained node, a requeued job, a measured RTT and a time-limit kill.
    fn scenario() -> (StateMachine, Log) {
        let topology = Topology::build(desc()).unwrap();
        let mut sm = StateMachine::with_all_nodes_up(topology, PolicyConfig::default());
        let mut log = Log {
            index: 0,
            time_ms: 1_700_000_000_000,
        };
        log.apply(
            &mut sm,
            Command::RegisterNode {
                node: "syd-h0".into(),
            },
        );
        for s in specs() {
            log.apply(
                &mut sm,
                Command::Submit {
                    spec: s,
                    request: None,
                },
            );
        }
        log.pass(&mut sm).unwrap();
        for job in jobs_in(&sm, JobState::Placed) {
            assert_eq!(log.apply(&mut sm, Command::Start { job }), Applied::Ok);
        }
        let running = jobs_in(&sm, JobState::Running);
        assert!(running.len() >= 8, "{running:?}");
        let id = |name: &str| sm.jobs().find(|r| r.spec.name == name).unwrap().id;
        let (whole, cpu, serve, serve_milli) =
            (id("whole"), id("cpu"), id("serve"), id("serve-milli"));
        let (gang_au, gang_jp) = (id("gang-au"), id("gang-jp"));
        let finish = |job, status| Command::Finish { job, status };
        log.apply(&mut sm, finish(whole, ExitStatus::Completed));
        log.apply(&mut sm, finish(serve_milli, ExitStatus::Failed(3)));
        log.apply(&mut sm, finish(cpu, ExitStatus::OutOfMemory));
        log.apply(&mut sm, Command::Cancel { job: serve });
        let drained = node_name(&sm, gang_au);
        log.apply(&mut sm, Command::Drain { node: drained });
        let failed = node_name(&sm, gang_jp);
        assert!(matches!(
            log.apply(&mut sm, Command::FailNode { node: failed }),
            Applied::Ended(_)
        ));
        let rtt = Command::SetSiteRtt {
            a: "tyo1".into(),
            b: "syd1".into(),
            rtt_ns: 95_000_000,
        };
        log.apply(&mut sm, rtt);
        log.time_ms += 1_000;
        assert!(
            matches!(log.apply(&mut sm, Command::Tick), Applied::Ended(ended) if !ended.is_empty())
        );
        log.pass(&mut sm);
        (sm, log)
    }

    fn summary(sm: &StateMachine) -> String {
        let mut out = String::new();
        for r in sm.jobs() {
            let reason = r.reason.as_ref().map_or("-", |u| u.reason.code());
            let nodes: Vec<String> = r
                .plan
                .iter()
                .flat_map(|p| &p.members)
                .map(|m| sm.topology().node(m.node).name.clone())
                .collect();
            out += &format!(
                "{} {} {} restarts={} reason={} nodes=[{}]\n",
                r.id,
                r.spec.name,
                r.state.code(),
                r.restarts,
                reason,
                nodes.join(",")
            );
        }
        for (i, n) in sm.topology().nodes().iter().enumerate() {
            let state = sm.node_state(NodeId::from_idx(i));
            if state != NodeState::Up {
                out += &format!("{} {state:?}\n", n.name);
            }
        }
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A pseudo-random stream from the core's own mixer.
    struct Stream(u64);

    impl Stream {
        fn next(&mut self) -> u64 {
            self.0 = mix(self.0);
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    // -----------------------------------------------------------------------------------------
    // Snapshot and restore.

    #[test]
    fn scenario_covers_the_states() {
        let (sm, _) = scenario();
        // The scenario is what the other tests snapshot: it must hold placed, running,
        // pending, requeued and ended jobs, and a drained node with a running job.
        check_summary(
            &sm,
            expect![[r#"
                1 whole CD restarts=0 reason=- nodes=[]
                2 milli CF restarts=0 reason=- nodes=[syd-a0]
                3 mig R restarts=0 reason=- nodes=[syd-a0]
                4 cpu OOM restarts=0 reason=- nodes=[]
                5 limited TO restarts=0 reason=- nodes=[]
                6 urgent R restarts=0 reason=- nodes=[tyo-a0]
                7 gang-au R restarts=0 reason=- nodes=[syd-h0,syd-h1]
                8 gang-jp CF restarts=1 reason=- nodes=[tyo-h1,tyo-h1]
                9 serve CA restarts=0 reason=- nodes=[]
                10 serve-mig R restarts=0 reason=- nodes=[syd-a0]
                11 serve-milli F restarts=0 reason=- nodes=[]
                12 too-big PD restarts=0 reason=BadConstraints nodes=[]
                syd-h0 Drained
                tyo-h0 Down
            "#]],
        );
    }

    fn check_summary(sm: &StateMachine, expect: Expect) {
        expect.assert_eq(&summary(sm));
    }

    #[test]
    fn restore_keeps_the_hash_and_the_behaviour() {
        let (mut a, mut log) = scenario();
        let bytes = a.snapshot();
        assert_eq!(a.snapshot(), bytes, "snapshot is deterministic");
        let mut b = StateMachine::restore(&bytes).unwrap();
        b.check_invariants();
        assert_eq!(hex(&a.state_hash()), hex(&b.state_hash()));
        assert_eq!(
            b.snapshot(),
            bytes,
            "restore then snapshot gives the same bytes"
        );
        assert_eq!(summary(&a), summary(&b));

        // The same further entries keep both replicas equal, plans included.
        let mut log_b = Log {
            index: log.index,
            time_ms: log.time_ms,
        };
        let mut more: Vec<Command> = vec![
            Command::Submit {
                spec: spec("later", &["AU"], gang(1, 2, None, Affinity::Required)),
                request: Some(RequestId { client: 1, seq: 1 }),
            },
            Command::Submit {
                spec: spec(
                    "later-jp",
                    &["JP"],
                    Workload::Batch {
                        gpus: GpuRequest::Milli(100),
                    },
                ),
                request: None,
            },
        ];
        let drained = (0..a.topology().nodes().len())
            .map(NodeId::from_idx)
            .find(|&n| a.node_state(n) == NodeState::Drained)
            .map(|n| a.topology().node(n).name.clone())
            .unwrap();
        for round in 0..4 {
            for command in more.drain(..) {
                let ra = log.apply(&mut a, command.clone());
                let rb = log_b.apply(&mut b, command);
                assert_eq!(ra, rb);
                assert_eq!(a.state_hash(), b.state_hash());
            }
            let pa = a.plan_pass(64).map(|(c, _)| c);
            let pb = b.plan_pass(64).map(|(c, _)| c);
            assert_eq!(pa, pb, "round {round}: the leader plans the same on both");
            more.extend(pa);
            more.extend(
                jobs_in(&a, JobState::Placed)
                    .into_iter()
                    .map(|job| Command::Start { job }),
            );
            match round {
                0 => more.push(Command::Resume {
                    node: drained.clone(),
                }),
                1 => more.push(Command::FailNode {
                    node: drained.clone(),
                }),
                2 => {
                    more.push(Command::RegisterNode {
                        node: drained.clone(),
                    });
                    more.push(Command::Tick);
                }
                _ => {
                    let running = jobs_in(&a, JobState::Running);
                    more.push(Command::Finish {
                        job: running[0],
                        status: ExitStatus::Completed,
                    });
                }
            }
        }
        for command in more {
            assert_eq!(
                log.apply(&mut a, command.clone()),
                log_b.apply(&mut b, command)
            );
        }
        assert_eq!(a.state_hash(), b.state_hash());
        assert_eq!(a.snapshot(), b.snapshot());
    }

    #[test]
    fn hash_sees_every_part_of_the_state() {
        let (sm, _) = scenario();
        let base = sm.state_hash();
        let mut changed = sm.clone();
        changed.applied_index += 1;
        assert_ne!(changed.state_hash(), base);
        let mut changed = sm.clone();
        changed.epoch += 1;
        assert_ne!(changed.state_hash(), base);
        let mut changed = sm.clone();
        changed.policy.candidate_limit += 1;
        assert_ne!(changed.state_hash(), base);
        let mut changed = sm.clone();
        changed.jobs.values_mut().next().unwrap().restarts += 1;
        assert_ne!(changed.state_hash(), base);
        // Ledger drift alone (allocations unchanged) changes the hash.
        let mut changed = sm.clone();
        let (topology, ledger) = (&changed.topology, &mut changed.ledger);
        let cpu = Take {
            cpu_milli: 1,
            memory_mib: 0,
            gpus: GpuTake::None,
        };
        ledger.take(topology, NodeId(0), &cpu);
        assert_ne!(changed.state_hash(), base);
        let mut changed = sm.clone();
        let gpu = (0..sm.topology().gpu_count())
            .map(GpuId::from_idx)
            .find(|&g| {
                let used = sm.ledger().gpu(g).used_milli;
                !sm.topology().gpu(g).mig && used > 0 && used < 1000
            });
        let gpu = sm.topology().gpu(gpu.expect("a partly used gpu"));
        let milli = GpuTake::Milli {
            local: gpu.local,
            milli: 1,
        };
        let take = Take {
            cpu_milli: 0,
            memory_mib: 0,
            gpus: milli,
        };
        changed.ledger.take(&changed.topology, gpu.node, &take);
        assert_ne!(changed.state_hash(), base);
        let mut changed = sm.clone();
        let (topology, ledger) = (&changed.topology, &mut changed.ledger);
        ledger.set_schedulable(topology, NodeId(1), !ledger.node(NodeId(1)).schedulable);
        assert_ne!(changed.state_hash(), base);
        assert_eq!(sm.clone().state_hash(), base);
    }

    #[test]
    fn restore_rejects_every_truncation() {
        let (sm, _) = scenario();
        let bytes = sm.snapshot();
        for n in 0..bytes.len() {
            assert!(
                StateMachine::restore(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(StateMachine::restore(&longer).is_err());
    }

    #[test]
    fn restore_rejects_every_bit_flip() {
        let (sm, _) = scenario();
        let bytes = sm.snapshot();
        let mut flipped = bytes.clone();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                flipped[i] ^= 1 << bit;
                let err = StateMachine::restore(&flipped).unwrap_err();
                if i >= HEADER_LEN {
                    assert_eq!(
                        err.message, "snapshot checksum mismatch",
                        "byte {i} bit {bit}"
                    );
                }
                flipped[i] ^= 1 << bit;
            }
        }
        assert_eq!(flipped, bytes);
    }

    #[test]
    fn restore_errors() {
        let (sm, _) = scenario();
        let bytes = sm.snapshot();
        let check = |bytes: &[u8], expect: Expect| {
            expect.assert_eq(&StateMachine::restore(bytes).unwrap_err().to_string());
        };
        check(
            b"",
            expect![["snapshot truncated: 0 bytes, at least 41 expected at byte 0"]],
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        check(
            &bad,
            expect![["not a sovra snapshot (bad magic) at byte 0"]],
        );
        let mut bad = bytes.clone();
        bad[8] = FORMAT_VERSION + 1;
        assert_eq!(
            StateMachine::restore(&bad).unwrap_err().to_string(),
            format!(
                "unsupported snapshot version {}, expected {FORMAT_VERSION} at byte 8",
                FORMAT_VERSION + 1
            )
        );
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        let at = bytes.len() - CHECKSUM_LEN;
        let err = StateMachine::restore(&bad).unwrap_err();
        assert_eq!(err, DecodeError::new(at, "snapshot checksum mismatch"));

        // Well-sealed but inconsistent snapshots: the checks behind the checksum.
        let seal = |sm: &StateMachine| {
            let mut e = Encoder::default();
            e.put_raw(&SNAPSHOT_MAGIC);
            e.put_u8(FORMAT_VERSION);
            sm.encode_body(&mut e, &mut |_| {});
            let sum = Sha256::digest(e.as_bytes());
            e.put_raw(&sum);
            e.into_bytes()
        };
        let err = |sm: &StateMachine| StateMachine::restore(&seal(sm)).unwrap_err().message;
        let id = |name: &str| sm.jobs().find(|r| r.spec.name == name).unwrap().id;
        let (gang_au, urgent) = (id("gang-au"), id("urgent"));
        let mut bad = sm.clone();
        bad.jobs.get_mut(&gang_au).unwrap().state = JobState::Completed;
        expect![["job 7 is Completed with an allocation"]].assert_eq(&err(&bad));
        // Another running job claims the same GPUs as the gang.
        let mut bad = sm.clone();
        let gang = sm.jobs[&gang_au].clone();
        let record = bad.jobs.get_mut(&urgent).unwrap();
        record.plan = gang.plan.map(|p| Plan { job: urgent, ..p });
        record.spec = gang.spec;
        expect![["job 7 allocation on node syd-h0 does not fit (gpu)"]].assert_eq(&err(&bad));
        let mut bad = sm.clone();
        bad.next_job = 3;
        expect![["snapshot next job id 3 is invalid"]].assert_eq(&err(&bad));
        let mut bad = sm.clone();
        bad.nodes.pop();
        expect![["snapshot has 7 node states for 8 nodes"]].assert_eq(&err(&bad));
        let mut bad = sm.clone();
        bad.scope.pop();
        expect![["snapshot scope leaves out site tyo1"]].assert_eq(&err(&bad));
        let mut bad = sm.clone();
        bad.jobs.get_mut(&urgent).unwrap().spec.tenant.clear();
        expect![["job 6: job has no tenant"]].assert_eq(&err(&bad));
    }

    #[test]
    fn restore_survives_tampered_bodies() {
        // A malicious snapshot can carry a valid checksum. Restore must still return Ok or
        // Err, never panic, and whatever it accepts must be a consistent, usable state.
        let (sm, _) = scenario();
        let bytes = sm.snapshot();
        let body_end = bytes.len() - CHECKSUM_LEN;
        let mut rng = Stream(7);
        let mut accepted = 0;
        for _ in 0..3_000 {
            let mut body = bytes[..body_end].to_vec();
            for _ in 0..1 + rng.below(3) {
                let i = HEADER_LEN + rng.below(body_end - HEADER_LEN);
                body[i] = match rng.below(4) {
                    0 => body[i] ^ (1 << rng.below(8)),
                    1 => 0,
                    2 => 0xff,
                    _ => rng.next() as u8,
                };
            }
            let sum = Sha256::digest(&body);
            body.extend_from_slice(&sum);
            if let Ok(mut restored) = StateMachine::restore(&body) {
                accepted += 1;
                restored.check_invariants();
                if restored.applied_index > u64::MAX / 2 {
                    continue; // No further entry can be applied: a stuck replica, not a panic.
                }
                let mut log = Log {
                    index: restored.applied_index,
                    time_ms: u64::MAX / 4,
                };
                log.pass(&mut restored);
                log.apply(&mut restored, Command::Tick);
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    // -----------------------------------------------------------------------------------------
    // The codec.

    fn round_trip<T: Codec + PartialEq + fmt::Debug>(value: &T) {
        let bytes = to_blob(value);
        let back: T = from_blob(&bytes).unwrap();
        assert_eq!(&back, value);
        assert_eq!(
            to_blob(&back),
            bytes,
            "canonical: re-encoding gives the same bytes"
        );
        for n in 0..bytes.len() {
            assert!(
                from_blob::<T>(&bytes[..n]).is_err(),
                "prefix of {n} bytes of {value:?}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(from_blob::<T>(&longer).is_err());
    }

    fn every_command() -> Vec<Command> {
        let take = |gpus| Take {
            cpu_milli: 1_500,
            memory_mib: 2_048,
            gpus,
        };
        let slot = |node, gpus| MemberSlot {
            node: NodeId(node),
            take: take(gpus),
        };
        let plan = Plan {
            job: JobId(4),
            seed: 0xDEAD_BEEF_0123_4567,
            members: vec![
                slot(0, GpuTake::None),
                slot(1, GpuTake::Whole { mask: 0b1010_0000 }),
                slot(
                    2,
                    GpuTake::Milli {
                        local: 3,
                        milli: 999,
                    },
                ),
                slot(
                    3,
                    GpuTake::Mig {
                        local: 1,
                        compute: 3,
                        memory: 4,
                    },
                ),
            ],
        };
        let reasons = [
            PendingReason::Resources,
            PendingReason::Priority,
            PendingReason::JurisdictionUnavailable,
            PendingReason::LatencyUnavailable,
            PendingReason::BadConstraints,
            PendingReason::StalePlan,
        ];
        let deferred = reasons
            .iter()
            .enumerate()
            .map(|(i, &reason)| {
                (
                    JobId(i as u64 + 10),
                    Unschedulable {
                        reason,
                        message: format!("why {i} ✓"),
                    },
                )
            })
            .collect();
        let mut commands: Vec<Command> = specs()
            .into_iter()
            .map(|spec| Command::Submit {
                spec,
                request: None,
            })
            .collect();
        let mut exotic = spec(
            "exotic",
            &["AU", "EU-WEST"],
            gang(3, 2, None, Affinity::Required),
        );
        exotic.gpu_models = vec!["H100".into(), "a100".into()];
        exotic.time_limit_ms = Some(u64::MAX);
        exotic.name = String::new();
        if let Workload::Gang(g) = &mut exotic.workload {
            g.max_rtt_ns = Some(7);
        }
        commands.push(Command::Submit {
            spec: exotic,
            request: None,
        });
        commands.extend([
            Command::RegisterNode {
                node: "syd-h0".into(),
            },
            Command::SchedulePass {
                epoch: 9,
                plans: vec![plan.clone(), plan],
                deferred,
            },
            Command::SchedulePass {
                epoch: 0,
                plans: vec![],
                deferred: vec![],
            },
            Command::Start { job: JobId(1) },
            Command::Finish {
                job: JobId(2),
                status: ExitStatus::Completed,
            },
            Command::Finish {
                job: JobId(2),
                status: ExitStatus::Failed(-9),
            },
            Command::Finish {
                job: JobId(u64::MAX),
                status: ExitStatus::OutOfMemory,
            },
            Command::Cancel { job: JobId(3) },
            Command::Drain {
                node: "tyo-h0".into(),
            },
            Command::Resume {
                node: String::new(),
            },
            Command::FailNode {
                node: "ノード".into(),
            },
            Command::SetSiteRtt {
                a: "syd1".into(),
                b: "tyo1".into(),
                rtt_ns: 1,
            },
            Command::Tick,
        ]);
        commands
    }

    #[test]
    fn commands_and_entries_round_trip() {
        let commands = every_command();
        let mut tags: Vec<u8> = commands.iter().map(|c| to_blob(c)[1]).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(
            tags,
            (0..=10).collect::<Vec<u8>>(),
            "every command variant is covered"
        );
        for (i, command) in commands.into_iter().enumerate() {
            round_trip(&command);
            round_trip(&Entry {
                index: i as u64 + 1,
                time_ms: u64::MAX - i as u64,
                command,
            });
        }
    }

    #[test]
    fn state_types_round_trip() {
        let (sm, _) = scenario();
        for r in sm.jobs() {
            round_trip(r);
        }
        round_trip(sm.topology().desc());
        round_trip(&desc());
        for state in [
            NodeState::Unknown,
            NodeState::Up,
            NodeState::Drained,
            NodeState::Down,
        ] {
            round_trip(&state);
        }
        round_trip(&PolicyConfig::default());
        let fgd = TargetWorkload {
            shapes: vec![WorkloadShape {
                cpu_milli: 8_000,
                gpu_milli: 500,
                gpu_count: 1,
                model_mask: u64::MAX,
                weight: 1_000_000,
            }],
            population: 0,
        };
        let shares = [
            SharePolicy::BestFit,
            SharePolicy::Fgd(fgd.clone()),
            SharePolicy::Fgd(TargetWorkload {
                population: 1_200_000,
                ..fgd.clone()
            }),
            SharePolicy::Random,
            SharePolicy::DotProduct,
            SharePolicy::GpuClustering,
            SharePolicy::GpuPacking,
            SharePolicy::NodeBestFit,
            SharePolicy::FragPack(fgd.clone()),
        ];
        for share in shares {
            round_trip(&PolicyConfig {
                share,
                candidate_limit: 3,
                subtree_limit: usize::MAX,
            });
        }
        for level in Level::ALL {
            round_trip(&level);
        }
    }

    #[test]
    fn share_policy_tags() {
        // The first FGD layout (tag 1: shapes only) still decodes, with no population.
        let mut legacy = vec![FORMAT_VERSION, 1];
        legacy.extend_from_slice(&1u32.to_le_bytes());
        legacy.extend_from_slice(&8_000u64.to_le_bytes());
        legacy.extend_from_slice(&500u32.to_le_bytes());
        legacy.extend_from_slice(&1u32.to_le_bytes());
        legacy.extend_from_slice(&u64::MAX.to_le_bytes());
        legacy.extend_from_slice(&1_000_000u32.to_le_bytes());
        let expect = SharePolicy::Fgd(TargetWorkload {
            shapes: vec![WorkloadShape {
                cpu_milli: 8_000,
                gpu_milli: 500,
                gpu_count: 1,
                model_mask: u64::MAX,
                weight: 1_000_000,
            }],
            population: 0,
        });
        assert_eq!(from_blob::<SharePolicy>(&legacy).unwrap(), expect);
        // It is written with the current tag.
        assert_eq!(to_blob(&expect)[1], 2);
        let check = |bytes: &[u8], expect: Expect| {
            expect.assert_eq(&from_blob::<SharePolicy>(bytes).unwrap_err().to_string());
        };
        check(
            &[FORMAT_VERSION, 9],
            expect![["invalid share policy tag 9 at byte 1"]],
        );
        check(
            &[FORMAT_VERSION, 255],
            expect![["invalid share policy tag 255 at byte 1"]],
        );
    }

    #[test]
    fn entry_format_is_stable() {
        // These bytes are the log format: changing them needs a new FORMAT_VERSION.
        let entry = Entry {
            index: 7,
            time_ms: 1_000,
            command: Command::Finish {
                job: JobId(3),
                status: ExitStatus::Failed(-1),
            },
        };
        let expect = expect!["040700000000000000e80300000000000004030000000000000001ffffffff"];
        expect.assert_eq(&hex(&to_blob(&entry)));
    }

    #[test]
    fn decode_errors() {
        let check = |bytes: &[u8], expect: Expect| {
            expect.assert_eq(&from_blob::<Command>(bytes).unwrap_err().to_string());
        };
        check(
            &[],
            expect![["unexpected end of input: 1 bytes needed, 0 left at byte 0"]],
        );
        assert_eq!(
            from_blob::<Command>(&[FORMAT_VERSION + 1, 10])
                .unwrap_err()
                .to_string(),
            format!(
                "unsupported format version {}, expected {FORMAT_VERSION} at byte 0",
                FORMAT_VERSION + 1
            )
        );
        check(
            &[FORMAT_VERSION, 99],
            expect![["invalid command tag 99 at byte 1"]],
        );
        check(
            &[FORMAT_VERSION, 10, 0],
            expect![["1 trailing bytes at byte 2"]],
        );
        check(
            &[FORMAT_VERSION, 0, 2, 0, 0, 0, 0xff, 0xfe],
            expect![["string is not valid utf-8 at byte 2"]],
        );
        check(
            &[FORMAT_VERSION, 0, 0xff, 0xff, 0xff, 0xff],
            expect![["byte string of 4294967295 bytes, at most 16777216 allowed at byte 2"]],
        );
        check(
            &[FORMAT_VERSION, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            expect![["16777216 items cannot fit in the 0 bytes left at byte 10"]],
        );
        check(
            &[FORMAT_VERSION, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            expect![["33554432 items, at most 16777216 allowed at byte 10"]],
        );
        // A length near the end of the spec (in its job control) made huge: a bound error
        // that names its offset.
        let submit = to_blob(&Command::Submit {
            spec: specs().remove(0),
            request: None,
        });
        let mut bad = submit.clone();
        let at = bad.len() - 6;
        bad[at] = 9;
        check(
            &bad,
            expect!["byte string of 150994944 bytes, at most 16777216 allowed at byte 80"],
        );
        let mut bad = submit.clone();
        let at = bad.windows(2).position(|w| w == b"AU").unwrap();
        bad[at..at + 2].copy_from_slice(b"au");
        check(
            &bad,
            expect![[r#"jurisdiction "au" is not canonical at byte 31"#]],
        );
        let mut bad = submit;
        bad[at] = b'1';
        let err = from_blob::<Command>(&bad).unwrap_err();
        assert_eq!(err.offset, 31);
        assert!(
            err.message.starts_with("invalid jurisdiction \"1U\""),
            "{err}"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Stream(42);
        for round in 0..20_000 {
            let len = rng.below(if round % 10 == 0 { 4_096 } else { 96 });
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Small counts and tags reach deeper into the decoders than uniform bytes do.
            if round % 2 == 0 {
                for b in bytes.iter_mut() {
                    *b %= 4;
                }
            }
            if let Some(b) = bytes.first_mut() {
                *b = FORMAT_VERSION;
            }
            let _ = from_blob::<Entry>(&bytes);
            let _ = from_blob::<Command>(&bytes);
            let _ = from_blob::<JobRecord>(&bytes);
            let _ = from_blob::<TopologyDesc>(&bytes);
            let _ = from_blob::<PolicyConfig>(&bytes);
            let _ = StateMachine::restore(&bytes);
            // Past the magic and the checksum: garbage reaches the state decoder.
            let mut sealed = SNAPSHOT_MAGIC.to_vec();
            sealed.push(FORMAT_VERSION);
            sealed.extend_from_slice(&bytes[1.min(bytes.len())..]);
            let sum = Sha256::digest(&sealed);
            sealed.extend_from_slice(&sum);
            let _ = StateMachine::restore(&sealed);
        }
    }
}
