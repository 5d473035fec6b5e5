//! sovra's topology model: the physical and legal shape of a sovereign GPU factory.
//!
//! Sites belong to a [`Jurisdiction`]; each site has spines, leaves (racks or blocks), NVLink
//! domains, nodes and GPUs ([`Topology`]). Free capacity lives beside the structure in a
//! [`Ledger`], kept incrementally per subtree. Inventories come from sovra's TOML format
//! ([`inventory`]) or from Slurm's `slurm.conf`/`topology.conf` ([`slurm`]); [`synth`] makes
//! synthetic inventories for benchmarks and the simulator.
//!
//! Architecture invariant: this crate is pure. It does no IO (parsers take `&str`), knows
//! nothing about jobs, Raft or the network, and all its randomness is seeded.

#![warn(missing_docs)]

pub mod bitset;
pub mod ids;
pub mod inventory;
pub mod jurisdiction;
pub mod ledger;
pub mod slurm;
pub mod synth;
pub mod topology;

pub use ids::{DomainId, GpuId, LeafId, ModelId, NodeId, SiteId, SpineId};
pub use jurisdiction::{Jurisdiction, JurisdictionMask};
pub use ledger::{GpuTake, Ledger, Shortfall, Take};
pub use topology::{Level, Topology, TopologyDesc, TopologyError};
