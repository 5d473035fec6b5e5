//! Slurm import: `slurm.conf`, `topology.conf` and `gres.conf` onto sovra's topology tree.
//!
//! Three parsers turn the files into plain data ([`parse_slurm_conf`], [`parse_topology_conf`],
//! [`parse_gres_conf`]); [`import`] maps that data onto a [`TopologyDesc`] for
//! [`Topology::build`](crate::Topology::build). The [`hostlist`] submodule is Slurm's hostlist
//! syntax, exact enough for the Slurm shim's `scontrol show hostnames|hostlist|hostlistsorted`;
//! the TOML inventory ([`crate::inventory`]) expands its hostlists with it too.
//!
//! The parsers follow Slurm's config syntax: `Key=Value` pairs, several to a line, keys in any
//! case, `#` comments (`\#` is a literal `#`), a trailing `\` joins the next line, values may be
//! double-quoted. A line that starts a record (`NodeName=`, `PartitionName=`, `SwitchName=`,
//! `BlockName=`) gives the rest of the line to that record, and keys before it are global; in
//! `gres.conf` each line is one record. `NodeName=DEFAULT` and `PartitionName=DEFAULT` set
//! defaults for the records that follow, as in Slurm. Values are checked as they are read, so
//! every error names the file and the line (`slurm.conf line 12: …`). No input makes them panic.
//!
//! The mapping and its limits are written up in `docs/slurm-import.md`: a leaf is the switch
//! (or block) that lists a node, a spine is that switch's parent, Slurm has no jurisdictions so
//! the caller must give one, and what Slurm does not say (GPU memory, NVLink, NICs) is left at
//! zero or empty.

pub mod hostlist;
mod import;
mod lexer;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::topology::TopologyDesc;

/// Most nodes one `slurm.conf` may define.
pub const NODES_MAX: usize = 1_000_000;
/// Most names all the hostlists of one file may expand to, together (node lists of
/// partitions, switches, blocks, gres.conf lines and device files included).
pub const EXPANDED_NAMES_MAX: usize = 8_000_000;

/// Which file an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfFile {
    /// `slurm.conf`.
    SlurmConf,
    /// `topology.conf`.
    TopologyConf,
    /// `gres.conf`.
    GresConf,
}

impl fmt::Display for ConfFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfFile::SlurmConf => "slurm.conf",
            ConfFile::TopologyConf => "topology.conf",
            ConfFile::GresConf => "gres.conf",
        })
    }
}

/// Why a Slurm configuration could not be read or imported. Messages are one line, lower
/// case, and name the file (and the line where there is one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlurmImportError {
    /// A line of a file is malformed or holds an invalid value.
    #[error("{file} line {line}: {message}")]
    Line {
        /// The file.
        file: ConfFile,
        /// 1-based line number; for a continued line, its first line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file as a whole does not fit: nothing in it, or nodes it leaves out.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: ConfFile,
        /// What is wrong.
        message: String,
    },
    /// [`ImportOptions`] lack something Slurm cannot supply.
    #[error("import options: {message}")]
    Options {
        /// What is wrong.
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// slurm.conf

/// What sovra reads from a `slurm.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmConf {
    /// `ClusterName`, lower-cased as Slurm does.
    pub cluster_name: Option<String>,
    /// `NodeName=` lines other than `DEFAULT`, with defaults applied, in file order.
    pub nodes: Vec<NodeConf>,
    /// `PartitionName=` lines other than `DEFAULT`, with defaults applied, in file order.
    pub partitions: Vec<PartitionConf>,
    /// Every other global `Key=Value`, as written, in file order.
    pub globals: Vec<(String, String)>,
    /// Paths of `include` lines. The crate does no IO: a caller that wants them parses the
    /// included files itself.
    pub includes: Vec<String>,
}

/// One `NodeName=` line: the nodes it names and their attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConf {
    /// Line of the `NodeName=` key.
    pub line: usize,
    /// The `NodeName` hostlist as written.
    pub names_expr: String,
    /// The expanded node names.
    pub names: Vec<String>,
    /// `CPUs` (or its old name `Procs`).
    pub cpus: Option<u32>,
    /// `Boards`.
    pub boards: Option<u32>,
    /// `Sockets` (total sockets of the node).
    pub sockets: Option<u32>,
    /// `SocketsPerBoard`.
    pub sockets_per_board: Option<u32>,
    /// `CoresPerSocket`.
    pub cores_per_socket: Option<u32>,
    /// `ThreadsPerCore`.
    pub threads_per_core: Option<u32>,
    /// `RealMemory`, in MiB (Slurm's "MB").
    pub real_memory_mib: Option<u64>,
    /// `Gres`, one entry per comma-separated item.
    pub gres: Vec<GresSpec>,
    /// `Feature` or `Features`, split at commas.
    pub features: Vec<String>,
    /// `Weight`.
    pub weight: Option<u32>,
    /// `State`, as written.
    pub state: Option<String>,
    /// Every other attribute, as written.
    pub attrs: Vec<(String, String)>,
}

impl NodeConf {
    /// The CPU count Slurm uses: `CPUs` when given, else `Sockets` (or `Boards` ×
    /// `SocketsPerBoard`) × `CoresPerSocket` × `ThreadsPerCore`, each defaulting to 1.
    pub fn cpu_count(&self) -> u64 {
        if let Some(cpus) = self.cpus {
            return u64::from(cpus);
        }
        let sockets = match self.sockets {
            Some(sockets) => u64::from(sockets),
            None => {
                u64::from(self.boards.unwrap_or(1)) * u64::from(self.sockets_per_board.unwrap_or(1))
            }
        };
        sockets
            .saturating_mul(u64::from(self.cores_per_socket.unwrap_or(1)))
            .saturating_mul(u64::from(self.threads_per_core.unwrap_or(1)))
    }
}

/// One generic resource of a node: `gpu:a100:8` is name `gpu`, type `a100`, count 8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GresSpec {
    /// Resource name (`gpu`, `shard`, `mps`, …).
    pub name: String,
    /// Type (for GPUs, the model as the site names it), if given.
    pub type_name: Option<String>,
    /// Count; 1 when not given. `K`, `M`, `G`, `T`, `P` suffixes are powers of 1024.
    pub count: u64,
    /// `no_consume` was given.
    pub no_consume: bool,
}

/// One `PartitionName=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionConf {
    /// Line of the `PartitionName=` key.
    pub line: usize,
    /// Partition name.
    pub name: String,
    /// `Nodes`.
    pub nodes: PartitionNodes,
    /// `Default=YES`.
    pub default: bool,
    /// `MaxTime`, if given.
    pub max_time: Option<TimeLimit>,
    /// `State`, as written.
    pub state: Option<String>,
    /// Every other attribute, as written.
    pub attrs: Vec<(String, String)>,
}

/// The nodes of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionNodes {
    /// `Nodes=ALL`.
    All,
    /// An expanded hostlist (node or nodeset names); empty when `Nodes` is not given.
    Names(Vec<String>),
}

/// A Slurm time limit such as `MaxTime=1-12:00:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLimit {
    /// `INFINITE`, `UNLIMITED` or `-1`.
    Infinite,
    /// Whole minutes; seconds round up, as in Slurm.
    Minutes(u64),
}

/// Parses a `slurm.conf`.
pub fn parse_slurm_conf(text: &str) -> Result<SlurmConf, SlurmImportError> {
    parse::slurm_conf(text)
}

// ---------------------------------------------------------------------------------------------
// topology.conf

/// What sovra reads from a `topology.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlurmTopology {
    /// The tree plugin: `SwitchName=` lines.
    Tree {
        /// Switches in file order.
        switches: Vec<SwitchConf>,
    },
    /// The block plugin: `BlockName=` lines and `BlockSizes`.
    Block {
        /// Blocks in file order.
        blocks: Vec<BlockConf>,
        /// `BlockSizes`, empty when not given.
        block_sizes: Vec<u32>,
    },
}

/// One `SwitchName=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchConf {
    /// Line of the `SwitchName=` key.
    pub line: usize,
    /// Switch name.
    pub name: String,
    /// Nodes attached directly (a leaf switch); empty otherwise.
    pub nodes: Vec<String>,
    /// Child switches; empty for a leaf switch.
    pub switches: Vec<String>,
    /// `LinkSpeed`, in Slurm's arbitrary units.
    pub link_speed: Option<u32>,
}

/// One `BlockName=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockConf {
    /// Line of the `BlockName=` key.
    pub line: usize,
    /// Block name.
    pub name: String,
    /// Nodes of the block.
    pub nodes: Vec<String>,
}

/// Parses a `topology.conf` (tree or block plugin) and checks its structure: unique names,
/// known child switches, no cycles, each switch under one parent, each node in one leaf switch
/// or block.
pub fn parse_topology_conf(text: &str) -> Result<SlurmTopology, SlurmImportError> {
    parse::topology_conf(text)
}

// ---------------------------------------------------------------------------------------------
// gres.conf

/// What sovra reads from a `gres.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GresConf {
    /// Lines with `Name=`, in file order.
    pub entries: Vec<GresConfEntry>,
    /// `AutoDetect=` values, with the nodes they apply to (`None`: every node).
    pub autodetect: Vec<(Option<Vec<String>>, String)>,
}

/// One `Name=` line of a `gres.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GresConfEntry {
    /// Line number.
    pub line: usize,
    /// `NodeName`, expanded; `None` means every node reading the file.
    pub nodes: Option<Vec<String>>,
    /// `Name` (`gpu`, `mps`, `shard`, …).
    pub name: String,
    /// `Type`, if given.
    pub type_name: Option<String>,
    /// `Count` if given, else the number of `File` devices, else 1.
    pub count: u64,
    /// `File`, expanded.
    pub files: Vec<String>,
}

/// Parses a `gres.conf`.
pub fn parse_gres_conf(text: &str) -> Result<GresConf, SlurmImportError> {
    parse::gres_conf(text)
}

// ---------------------------------------------------------------------------------------------
// Import.

/// What the import needs that Slurm does not say. A config struct, passed in, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Site name; `None` uses `ClusterName`.
    pub site: Option<String>,
    /// Jurisdiction code of the site (`AU`). Required: Slurm has no such notion.
    pub jurisdiction: Option<String>,
    /// Region label; informative.
    pub region: String,
    /// Make each block of a block topology an NVLink domain too (GB200 NVL72 racks are
    /// usually configured as Slurm blocks). Off by default: Slurm does not say.
    pub blocks_are_nvlink_domains: bool,
}

/// Maps a Slurm cluster onto one sovra site; see the module docs and `docs/slurm-import.md`.
///
/// Without a `topology.conf` the nodes go under one spine and one leaf, both named `default`.
/// Every node of `slurm.conf` must be under a leaf switch or in a block; nodes that
/// `topology.conf` names but `slurm.conf` does not define are skipped, as Slurm skips them.
pub fn import(
    conf: &SlurmConf,
    topology: Option<&SlurmTopology>,
    gres: Option<&GresConf>,
    opts: &ImportOptions,
) -> Result<TopologyDesc, SlurmImportError> {
    import::import(conf, topology, gres, opts)
}
