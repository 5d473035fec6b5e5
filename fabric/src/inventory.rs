//! sovra's TOML inventory format: the file operators write by hand to describe their sites.
//!
//! The format is specified in `docs/inventory.md`; `examples/inventory/` holds complete files.
//! [`parse_inventory`] turns the text into a [`TopologyDesc`] and checks every field;
//! [`load_inventory`] also builds the [`Topology`]; [`write_inventory`] goes the other way, from
//! a description to text that parses back equal. The serde types below are the format's own
//! DTOs (core types do not derive serde) and never leave this module.
//!
//! Node groups keep large sites short: one `[[site.nodes]]` table names its nodes with a Slurm
//! hostlist (`syd1-n[001-128]`, expanded by [`crate::slurm::hostlist`] exactly as Slurm does)
//! and can split them over auto-named leaves and spines (`nodes_per_leaf`, `leaves_per_spine`).
//!
//! Errors are one line and say where: TOML and shape errors (syntax, unknown field, wrong type,
//! malformed `gpus` string) carry toml's line and column; field errors carry the line of their
//! entry and name the site, node group or link and the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::jurisdiction::Jurisdiction;
use crate::slurm::hostlist;

mod write;
use crate::topology::{
    standard_mig_profiles, GpuDesc, GpuModelDesc, MigProfile, NicDesc, NodeDesc, SiteDesc,
    SiteFabric, SiteLinkDesc, Topology, TopologyDesc, TopologyError, GPUS_PER_NODE_MAX,
};
pub use write::{write_inventory, WriteError};

/// The format version this parser reads (`version = 1`, the default).
const INVENTORY_VERSION: u32 = 1;
/// Most names one hostlist may expand to.
const HOSTLIST_NAMES_MAX: usize = 1_000_000;
const _: () = assert!(HOSTLIST_NAMES_MAX <= hostlist::HOSTS_MAX);
/// Most nodes one inventory may declare.
const INVENTORY_NODES_MAX: usize = 1_000_000;
/// Most NICs the `"4x400"` shorthand may give one node.
const NICS_PER_NODE_MAX: usize = 64;

/// Parses an inventory into a topology description. Checks every field but does not build the
/// [`Topology`]; structural checks (leaf under two spines, missing RTTs, …) happen in
/// [`Topology::build`] or [`load_inventory`].
pub fn parse_inventory(text: &str) -> Result<TopologyDesc, InventoryError> {
    let doc: InventoryToml = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    convert(text, doc)
}

/// Parses an inventory and builds its [`Topology`].
pub fn load_inventory(text: &str) -> Result<Topology, InventoryError> {
    let desc = parse_inventory(text)?;
    Ok(Topology::build(desc)?)
}

/// A position in the inventory text, both 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

impl Position {
    fn of(text: &str, offset: usize) -> Position {
        let before = &text.as_bytes()[..offset.min(text.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Count characters, not bytes: skip UTF-8 continuation bytes.
        let column = before[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1;
        Position {
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            column,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why an inventory was rejected. Messages are one line, lower case, and say where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Not TOML, or not shaped like an inventory: unknown field, wrong type, missing field,
    /// malformed value such as `gpus = "8H100"`.
    #[error("{}{message}", at.map(|at| format!("{at}: ")).unwrap_or_default())]
    Toml {
        /// Where toml located the problem, when it could.
        at: Option<Position>,
        /// What is wrong.
        message: String,
    },
    /// A well-formed entry with an invalid value; the message names the entry and the field.
    #[error("line {line}: {message}")]
    Invalid {
        /// Line of the entry (its `[[...]]` header or inline table).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The description is not a valid topology ([`load_inventory`] only).
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

fn toml_error(text: &str, e: &toml::de::Error) -> InventoryError {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let message = message.trim_end_matches('.').to_string();
    InventoryError::Toml {
        at: e.span().map(|s| Position::of(text, s.start)),
        message,
    }
}

fn line_of<T>(text: &str, spanned: &Spanned<T>) -> usize {
    Position::of(text, spanned.span().start).line
}

// ---------------------------------------------------------------------------------------------
// The format's DTOs. Every table denies unknown fields so that typos are errors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryToml {
    version: Option<Spanned<u32>>,
    #[serde(default)]
    model: Vec<Spanned<ModelToml>>,
    #[serde(default)]
    site: Vec<Spanned<SiteToml>>,
    #[serde(default)]
    link: Vec<Spanned<LinkToml>>,
    link_matrix: Option<Spanned<LinkMatrixToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    name: String,
    memory_gb: Option<u64>,
    memory_mib: Option<u64>,
    nvlink_gbit_per_s: Option<u32>,
    mig: Option<bool>,
    mig_profiles: Option<Vec<MigProfileToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigProfileToml {
    name: String,
    compute_slices: u8,
    memory_slices: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteToml {
    name: String,
    jurisdiction: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    fabric: FabricToml,
    #[serde(default)]
    nodes: Vec<Spanned<NodeGroupToml>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FabricToml {
    nvlink_rtt_us: Option<f64>,
    leaf_rtt_us: Option<f64>,
    spine_rtt_us: Option<f64>,
    core_rtt_us: Option<f64>,
    pcie_gbit_per_s: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeGroupToml {
    names: String,
    spine: Option<String>,
    leaf: Option<String>,
    nvlink_domain: Option<String>,
    leaves_per_spine: Option<u64>,
    nodes_per_leaf: Option<u64>,
    nodes_per_nvlink_domain: Option<u64>,
    cpus: Option<u64>,
    cpu_milli: Option<u64>,
    memory_gb: Option<u64>,
    memory_mib: Option<u64>,
    #[serde(default)]
    gpus: GpusToml,
    #[serde(default)]
    nics: NicsToml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkToml {
    a: String,
    b: String,
    rtt_ms: f64,
    gbit_per_s: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkMatrixToml {
    sites: Vec<String>,
    rtt_ms: Vec<Vec<f64>>,
    gbit_per_s: BandwidthToml,
}

/// `gpus`: `"8xH100"`, `"4xH100,4xL40S"`, `{ model, count, mig }`, or an array of those.
#[derive(Default)]
struct GpusToml(Vec<GpuEntryToml>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuEntryToml {
    model: String,
    count: u32,
    #[serde(default)]
    mig: MigToml,
}

/// `mig`: `true` (all GPUs of the entry), `false`, or local indices `[0, 1]`.
#[derive(Default)]
enum MigToml {
    #[default]
    Off,
    All,
    Indices(Vec<u32>),
}

/// `nics`: `"4x400"`, `"2x400,1x100"` (named `nic0`, `nic1`, …) or `[{ name, gbit_per_s }]`.
#[derive(Default)]
struct NicsToml(Vec<NicToml>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicToml {
    name: String,
    gbit_per_s: u32,
}

/// `gbit_per_s` of `[link_matrix]`: one number for every pair, or a matrix.
enum BandwidthToml {
    All(u32),
    Matrix(Vec<Vec<u32>>),
}

impl<'de> Deserialize<'de> for GpusToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GpusToml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GpusToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string like \"8xH100\", a table { model, count, mig } or an array")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<GpusToml, E> {
                let expected = "expected COUNTxMODEL like \"8xH100\"";
                let entries = count_x_list(text)
                    .map_err(|()| E::custom(format!("invalid gpus {text:?}: {expected}")))?
                    .into_iter()
                    .map(|(count, model)| GpuEntryToml {
                        model: model.to_string(),
                        count,
                        mig: MigToml::Off,
                    });
                Ok(GpusToml(entries.collect()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<GpusToml, A::Error> {
                Ok(GpusToml(vec![GpuEntryToml::deserialize(
                    MapAccessDeserializer::new(map),
                )?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GpusToml, A::Error> {
                let mut all = Vec::new();
                while let Some(GpusToml(entries)) = seq.next_element()? {
                    all.extend(entries);
                }
                Ok(GpusToml(all))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for MigToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MigToml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MigToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or an array of gpu indices")
            }
            fn visit_bool<E: de::Error>(self, all: bool) -> Result<MigToml, E> {
                Ok(if all { MigToml::All } else { MigToml::Off })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MigToml, A::Error> {
                Ok(MigToml::Indices(Vec::deserialize(
                    SeqAccessDeserializer::new(seq),
                )?))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for NicsToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NicsToml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NicsToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string like \"4x400\" or an array of { name, gbit_per_s }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<NicsToml, E> {
                let invalid = || {
                    let expected = "expected COUNTxGBIT like \"4x400\"";
                    E::custom(format!("invalid nics {text:?}: {expected}"))
                };
                let mut nics = Vec::new();
                for (count, gbit) in count_x_list(text).map_err(|()| invalid())? {
                    let gbit_per_s = gbit.parse::<u32>().map_err(|_| invalid())?;
                    if nics.len() + count as usize > NICS_PER_NODE_MAX {
                        let message =
                            format!("nics {text:?}: at most {NICS_PER_NODE_MAX} per node");
                        return Err(E::custom(message));
                    }
                    for _ in 0..count {
                        nics.push(NicToml {
                            name: format!("nic{}", nics.len()),
                            gbit_per_s,
                        });
                    }
                }
                Ok(NicsToml(nics))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<NicsToml, A::Error> {
                Ok(NicsToml(Vec::deserialize(SeqAccessDeserializer::new(seq))?))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for BandwidthToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BandwidthToml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BandwidthToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bandwidth in gbit/s or a matrix of them")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BandwidthToml, E> {
                let v =
                    u32::try_from(v).map_err(|_| E::custom(format!("invalid bandwidth {v}")))?;
                Ok(BandwidthToml::All(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BandwidthToml, E> {
                let v =
                    u32::try_from(v).map_err(|_| E::custom(format!("invalid bandwidth {v}")))?;
                Ok(BandwidthToml::All(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<BandwidthToml, A::Error> {
                Ok(BandwidthToml::Matrix(Vec::deserialize(
                    SeqAccessDeserializer::new(seq),
                )?))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `"8xH100"` or `"4xH100, 4xL40S"` into (count, rest) pairs; counts are positive.
fn count_x_list(text: &str) -> Result<Vec<(u32, &str)>, ()> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let digits = item.bytes().take_while(u8::is_ascii_digit).count();
        let (count, rest) = item.split_at(digits);
        let rest = rest.strip_prefix(['x', 'X']).ok_or(())?.trim();
        let count: u32 = count.parse().map_err(|_| ())?;
        if count == 0 || rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(());
        }
        out.push((count, rest));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Built-in GPU models: usable without a [[model]] table.

struct BuiltinModel {
    name: &'static str,
    memory_gb: u64,
    nvlink_gbit_per_s: u32,
    mig: bool,
}

const fn builtin(name: &'static str, memory_gb: u64, nvlink: u32, mig: bool) -> BuiltinModel {
    BuiltinModel {
        name,
        memory_gb,
        nvlink_gbit_per_s: nvlink,
        mig,
    }
}

const BUILTIN_MODELS: &[BuiltinModel] = &[
    builtin("H100", 80, 7200, true),
    builtin("H200", 141, 7200, true),
    builtin("A100-40GB", 40, 4800, true),
    builtin("A100-80GB", 80, 4800, true),
    builtin("B200", 180, 14400, true),
    builtin("GB200", 186, 14400, true),
    builtin("L40S", 48, 0, false),
    builtin("L4", 24, 0, false),
    builtin("A10", 24, 0, false),
    builtin("T4", 16, 0, false),
    builtin("V100", 32, 2400, false),
];

fn find_builtin(name: &str) -> Option<&'static BuiltinModel> {
    BUILTIN_MODELS
        .iter()
        .find(|b| b.name.eq_ignore_ascii_case(name))
}

/// A built-in GPU model by name (case-insensitive), as an inventory without a `[[model]]` table
/// declares it. The node agent's simulated inventory (`--fake-gpus 8xH100`) uses it.
pub fn builtin_model(name: &str) -> Option<GpuModelDesc> {
    let b = find_builtin(name)?;
    let mig_profiles = if b.mig {
        standard_mig_profiles(b.memory_gb)
    } else {
        Vec::new()
    };
    Some(GpuModelDesc {
        name: b.name.to_string(),
        memory_mib: b.memory_gb * 1024,
        nvlink_gbit_per_s: b.nvlink_gbit_per_s,
        mig_profiles,
    })
}

/// Names of the built-in GPU models, in declaration order.
pub fn builtin_model_names() -> impl Iterator<Item = &'static str> {
    BUILTIN_MODELS.iter().map(|b| b.name)
}

// ---------------------------------------------------------------------------------------------
// DTO → description.

fn invalid(line: usize, message: String) -> InventoryError {
    InventoryError::Invalid { line, message }
}

fn convert(text: &str, doc: InventoryToml) -> Result<TopologyDesc, InventoryError> {
    if let Some(version) = &doc.version {
        if *version.get_ref() != INVENTORY_VERSION {
            let message = format!(
                "unsupported inventory version {}, this sovra reads version {INVENTORY_VERSION}",
                version.get_ref()
            );
            return Err(invalid(line_of(text, version), message));
        }
    }
    let mut desc = TopologyDesc::default();
    for model in &doc.model {
        let line = line_of(text, model);
        let m = convert_model(model.get_ref()).map_err(|message| invalid(line, message))?;
        if desc
            .models
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(&m.name))
        {
            return Err(invalid(
                line,
                format!("gpu model {:?} is declared twice", m.name),
            ));
        }
        desc.models.push(m);
    }
    let mut node_lines: BTreeMap<String, usize> = BTreeMap::new();
    for site in &doc.site {
        let line = line_of(text, site);
        let s = convert_site(site.get_ref()).map_err(|message| invalid(line, message))?;
        if desc.sites.iter().any(|x| x.name == s.name) {
            return Err(invalid(
                line,
                format!("site {:?} is declared twice", s.name),
            ));
        }
        let mut state = SiteState::default();
        for group in &site.get_ref().nodes {
            convert_group(text, &s, &mut state, group, &mut node_lines, &mut desc)?;
        }
        desc.sites.push(s);
    }
    let site_known = |desc: &TopologyDesc, name: &str| desc.sites.iter().any(|s| s.name == name);
    // Every link with the line it came from, to report contradictions where they are.
    let mut links: Vec<(SiteLinkDesc, usize)> = Vec::new();
    for link in &doc.link {
        let line = line_of(text, link);
        let l = link.get_ref();
        let at = format!("link {:?}-{:?}", l.a, l.b);
        for name in [&l.a, &l.b] {
            if !site_known(&desc, name) {
                return Err(invalid(line, format!("{at}: unknown site {name:?}")));
            }
        }
        if l.a == l.b {
            return Err(invalid(
                line,
                format!("{at}: a link needs two different sites"),
            ));
        }
        let rtt_ns = ms_to_ns(l.rtt_ms)
            .ok_or_else(|| invalid(line, format!("{at}: rtt_ms must be a non-negative number")))?;
        if l.gbit_per_s == 0 {
            return Err(invalid(line, format!("{at}: gbit_per_s must be positive")));
        }
        let (a, b, gbit_per_s) = (l.a.clone(), l.b.clone(), l.gbit_per_s);
        links.push((
            SiteLinkDesc {
                a,
                b,
                rtt_ns,
                gbit_per_s,
            },
            line,
        ));
    }
    if let Some(matrix) = &doc.link_matrix {
        let line = line_of(text, matrix);
        let from_matrix = convert_matrix(matrix.get_ref(), |name| site_known(&desc, name))
            .map_err(|message| invalid(line, format!("link_matrix: {message}")))?;
        links.extend(from_matrix.into_iter().map(|l| (l, line)));
    }
    for (i, (l, line)) in links.iter().enumerate() {
        let same_pair = |(x, _): &&(SiteLinkDesc, usize)| {
            (x.a == l.a && x.b == l.b) || (x.a == l.b && x.b == l.a)
        };
        if let Some((first, first_line)) = links[..i].iter().find(same_pair) {
            let at = format!("link {:?}-{:?}", l.a, l.b);
            if first.rtt_ns != l.rtt_ns {
                let (ms, first_ms) = (l.rtt_ns as f64 / 1e6, first.rtt_ns as f64 / 1e6);
                let message =
                    format!("{at}: rtt_ms {ms} contradicts {first_ms} at line {first_line}");
                return Err(invalid(*line, message));
            }
            if first.gbit_per_s != l.gbit_per_s {
                let (gbit, first_gbit) = (l.gbit_per_s, first.gbit_per_s);
                let message = format!(
                    "{at}: gbit_per_s {gbit} contradicts {first_gbit} at line {first_line}"
                );
                return Err(invalid(*line, message));
            }
        }
    }
    desc.site_links = links.into_iter().map(|(l, _)| l).collect();
    Ok(desc)
}

fn convert_model(m: &ModelToml) -> Result<GpuModelDesc, String> {
    let at = format!("gpu model {:?}", m.name);
    if m.name.trim().is_empty() {
        return Err("gpu model with an empty name".to_string());
    }
    let base = find_builtin(&m.name);
    let memory_mib = match (m.memory_gb, m.memory_mib, base) {
        (Some(_), Some(_), _) => {
            return Err(format!("{at}: give memory_gb or memory_mib, not both"))
        }
        (Some(gb), None, _) => gb
            .checked_mul(1024)
            .ok_or_else(|| format!("{at}: memory_gb too large"))?,
        (None, Some(mib), _) => mib,
        (None, None, Some(b)) => b.memory_gb * 1024,
        (None, None, None) => return Err(format!("{at}: missing memory_gb (or memory_mib)")),
    };
    if memory_mib == 0 {
        return Err(format!("{at}: memory must be positive"));
    }
    let nvlink_gbit_per_s = m
        .nvlink_gbit_per_s
        .or(base.map(|b| b.nvlink_gbit_per_s))
        .unwrap_or(0);
    let mig_profiles = match (m.mig, &m.mig_profiles) {
        (Some(false), Some(_)) => {
            return Err(format!("{at}: mig = false contradicts mig_profiles"))
        }
        (_, Some(profiles)) if profiles.is_empty() => {
            return Err(format!(
                "{at}: mig_profiles is empty; remove it or set mig = false"
            ))
        }
        (_, Some(profiles)) => profiles
            .iter()
            .map(|p| MigProfile {
                name: p.name.clone(),
                compute_slices: p.compute_slices,
                memory_slices: p.memory_slices,
            })
            .collect(),
        (Some(true), None) => standard_mig_profiles(memory_mib.div_ceil(1024)),
        (Some(false), None) => Vec::new(),
        (None, None) if base.is_some_and(|b| b.mig) => {
            standard_mig_profiles(memory_mib.div_ceil(1024))
        }
        (None, None) => Vec::new(),
    };
    Ok(GpuModelDesc {
        name: m.name.clone(),
        memory_mib,
        nvlink_gbit_per_s,
        mig_profiles,
    })
}

fn convert_site(s: &SiteToml) -> Result<SiteDesc, String> {
    if s.name.trim().is_empty() {
        return Err("site with an empty name".to_string());
    }
    let at = format!("site {:?}", s.name);
    Jurisdiction::parse(&s.jurisdiction).map_err(|e| format!("{at}: {e}"))?;
    let defaults = SiteFabric::default();
    let f = &s.fabric;
    let rtt = |value: Option<f64>, field: &str, default: u64| match value {
        None => Ok(default),
        Some(us) => us_to_ns(us)
            .ok_or_else(|| format!("{at}: fabric.{field} must be a non-negative number")),
    };
    let fabric = SiteFabric {
        nvlink_rtt_ns: rtt(f.nvlink_rtt_us, "nvlink_rtt_us", defaults.nvlink_rtt_ns)?,
        leaf_rtt_ns: rtt(f.leaf_rtt_us, "leaf_rtt_us", defaults.leaf_rtt_ns)?,
        spine_rtt_ns: rtt(f.spine_rtt_us, "spine_rtt_us", defaults.spine_rtt_ns)?,
        core_rtt_ns: rtt(f.core_rtt_us, "core_rtt_us", defaults.core_rtt_ns)?,
        pcie_gbit_per_s: f.pcie_gbit_per_s.unwrap_or(defaults.pcie_gbit_per_s),
    };
    if fabric.pcie_gbit_per_s == 0 {
        return Err(format!("{at}: fabric.pcie_gbit_per_s must be positive"));
    }
    Ok(SiteDesc {
        name: s.name.clone(),
        jurisdiction: s.jurisdiction.clone(),
        region: s.region.clone(),
        fabric,
    })
}

fn ms_to_ns(ms: f64) -> Option<u64> {
    (ms.is_finite() && ms >= 0.0).then(|| (ms * 1e6).round() as u64)
}

fn us_to_ns(us: f64) -> Option<u64> {
    (us.is_finite() && us >= 0.0).then(|| (us * 1e3).round() as u64)
}

/// Per-site counters for auto-named switches and the leaf → spine map seen so far.
#[derive(Default)]
struct SiteState {
    leaves_auto: usize,
    spines_auto: usize,
    domains_auto: usize,
    leaf_spine: BTreeMap<String, String>,
}

fn convert_group(
    text: &str,
    site: &SiteDesc,
    state: &mut SiteState,
    group: &Spanned<NodeGroupToml>,
    node_lines: &mut BTreeMap<String, usize>,
    desc: &mut TopologyDesc,
) -> Result<(), InventoryError> {
    let line = line_of(text, group);
    let g = group.get_ref();
    let err = |message: String| invalid(line, format!("node group {:?}: {message}", g.names));
    let names = expand_names(&g.names).map_err(|e| err(format!("names: {e}")))?;
    if desc.nodes.len() + names.len() > INVENTORY_NODES_MAX {
        return Err(err(format!(
            "the inventory has more than {INVENTORY_NODES_MAX} nodes"
        )));
    }
    let cpu_milli = match (g.cpus, g.cpu_milli) {
        (Some(_), Some(_)) => return Err(err("give cpus or cpu_milli, not both".into())),
        (Some(cpus), None) => cpus
            .checked_mul(1000)
            .ok_or_else(|| err("cpus too large".into()))?,
        (None, Some(milli)) => milli,
        (None, None) => return Err(err("missing cpus (or cpu_milli)".into())),
    };
    if cpu_milli == 0 {
        return Err(err("cpus must be positive".into()));
    }
    let memory_mib = match (g.memory_gb, g.memory_mib) {
        (Some(_), Some(_)) => return Err(err("give memory_gb or memory_mib, not both".into())),
        (Some(gb), None) => gb
            .checked_mul(1024)
            .ok_or_else(|| err("memory_gb too large".into()))?,
        (None, Some(mib)) => mib,
        (None, None) => return Err(err("missing memory_gb (or memory_mib)".into())),
    };
    if memory_mib == 0 {
        return Err(err("memory must be positive".into()));
    }
    let gpus = convert_gpus(&g.gpus.0, &mut desc.models).map_err(&err)?;
    let mut nics = Vec::with_capacity(g.nics.0.len());
    for nic in &g.nics.0 {
        if nic.gbit_per_s == 0 {
            return Err(err(format!(
                "nic {:?}: gbit_per_s must be positive",
                nic.name
            )));
        }
        nics.push(NicDesc {
            name: nic.name.clone(),
            gbit_per_s: nic.gbit_per_s,
        });
    }

    // Position: nodes → leaves → spines, and nodes → NVLink domains.
    let n = names.len();
    let leaf_split = Split {
        items: "nodes",
        field: "leaf",
        per_field: "nodes_per_leaf",
    };
    let mut auto_leaf = || auto_name("l", &mut state.leaves_auto);
    let leaves = leaf_split
        .blocks(n, g.leaf.as_deref(), g.nodes_per_leaf, &mut auto_leaf)
        .map_err(&err)?
        .unwrap_or_else(|| (vec![auto_leaf()], n));
    let spine_split = Split {
        items: "leaves",
        field: "spine",
        per_field: "leaves_per_spine",
    };
    let n_leaves = leaves.0.len();
    let mut auto_spine = || auto_name("s", &mut state.spines_auto);
    let spines = spine_split
        .blocks(
            n_leaves,
            g.spine.as_deref(),
            g.leaves_per_spine,
            &mut auto_spine,
        )
        .map_err(&err)?;
    let spine_of_leaf: Vec<String> = match spines {
        Some((spines, per)) => (0..n_leaves).map(|i| spines[i / per].clone()).collect(),
        None => {
            // Leaves seen before keep their spine; new ones share one new auto-named spine.
            let mut fresh: Option<String> = None;
            let known = |leaf: &String| state.leaf_spine.get(leaf).cloned();
            let known: Vec<Option<String>> = leaves.0.iter().map(known).collect();
            known
                .into_iter()
                .map(|s| s.unwrap_or_else(|| fresh.get_or_insert_with(&mut auto_spine).clone()))
                .collect()
        }
    };
    for (leaf, spine) in leaves.0.iter().zip(&spine_of_leaf) {
        state
            .leaf_spine
            .entry(leaf.clone())
            .or_insert_with(|| spine.clone());
    }
    let domain_split = Split {
        items: "nodes",
        field: "nvlink_domain",
        per_field: "nodes_per_nvlink_domain",
    };
    let mut auto_domain = || auto_name("nvl", &mut state.domains_auto);
    let domains = domain_split
        .blocks(
            n,
            g.nvlink_domain.as_deref(),
            g.nodes_per_nvlink_domain,
            &mut auto_domain,
        )
        .map_err(&err)?;

    for (i, name) in names.into_iter().enumerate() {
        if let Some(&first) = node_lines.get(&name) {
            return Err(err(format!(
                "node {name:?} is already declared at line {first}"
            )));
        }
        node_lines.insert(name.clone(), line);
        let leaf_idx = i / leaves.1;
        desc.nodes.push(NodeDesc {
            name,
            site: site.name.clone(),
            spine: spine_of_leaf[leaf_idx].clone(),
            leaf: leaves.0[leaf_idx].clone(),
            nvlink_domain: domains.as_ref().map(|(names, per)| names[i / per].clone()),
            cpu_milli,
            memory_mib,
            gpus: gpus.clone(),
            nics: nics.clone(),
        });
    }
    Ok(())
}

fn auto_name(prefix: &str, counter: &mut usize) -> String {
    *counter += 1;
    format!("{prefix}{}", *counter - 1)
}

/// How the items of a node group are split into consecutive blocks (leaves, spines, domains).
struct Split {
    items: &'static str,
    field: &'static str,
    per_field: &'static str,
}

impl Split {
    /// The block names and the items per block, or `None` when neither the names (a hostlist)
    /// nor the block size is given.
    fn blocks(
        &self,
        n: usize,
        names: Option<&str>,
        per: Option<u64>,
        auto: &mut dyn FnMut() -> String,
    ) -> Result<Option<(Vec<String>, usize)>, String> {
        let Split {
            items,
            field,
            per_field,
        } = self;
        let names = match names {
            Some(hostlist) => Some(expand_names(hostlist).map_err(|e| format!("{field}: {e}"))?),
            None => None,
        };
        let per = match per {
            Some(0) => return Err(format!("{per_field} must be positive")),
            Some(per) => Some(usize::try_from(per).unwrap_or(usize::MAX)),
            None => None,
        };
        Ok(Some(match (names, per) {
            (None, None) => return Ok(None),
            (None, Some(per)) => ((0..n.div_ceil(per)).map(|_| auto()).collect(), per),
            (Some(names), None) => {
                let per = n.div_ceil(names.len());
                if n.div_ceil(per) != names.len() {
                    return Err(format!(
                        "{n} {items} do not split over the {} names of {field}; set {per_field}",
                        names.len()
                    ));
                }
                (names, per)
            }
            (Some(names), Some(per)) => {
                if n.div_ceil(per) != names.len() {
                    return Err(format!(
                        "{n} {items} at {per_field} = {per} need {} names in {field}, it has {}",
                        n.div_ceil(per),
                        names.len()
                    ));
                }
                (names, per)
            }
        }))
    }
}

fn convert_gpus(
    entries: &[GpuEntryToml],
    models: &mut Vec<GpuModelDesc>,
) -> Result<Vec<GpuDesc>, String> {
    let total: u64 = entries.iter().map(|e| e.count as u64).sum();
    if total > GPUS_PER_NODE_MAX as u64 {
        return Err(format!(
            "{total} gpus per node, at most {GPUS_PER_NODE_MAX}"
        ));
    }
    let mut gpus = Vec::new();
    for entry in entries {
        if entry.count == 0 {
            return Err(format!("gpus: count of {:?} must be positive", entry.model));
        }
        let model = match models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(&entry.model))
        {
            Some(m) => m,
            None => {
                let Some(model) = builtin_model(&entry.model) else {
                    return Err(format!(
                        "unknown gpu model {:?} (not built in; declare it with [[model]])",
                        entry.model
                    ));
                };
                models.push(model);
                models.last().expect("just pushed")
            }
        };
        let mut mig = vec![false; entry.count as usize];
        match &entry.mig {
            MigToml::Off => {}
            MigToml::All => mig.fill(true),
            MigToml::Indices(indices) => {
                for &idx in indices {
                    let slot = mig.get_mut(idx as usize).ok_or_else(|| {
                        format!(
                            "gpus: mig index {idx} out of range for {} gpus",
                            entry.count
                        )
                    })?;
                    if *slot {
                        return Err(format!("gpus: mig index {idx} given twice"));
                    }
                    *slot = true;
                }
            }
        }
        if mig.contains(&true) && model.mig_profiles.is_empty() {
            return Err(format!(
                "gpus: gpu model {:?} is not mig-capable",
                model.name
            ));
        }
        let name = &model.name;
        gpus.extend(mig.into_iter().map(|mig| GpuDesc {
            model: name.clone(),
            mig,
        }));
    }
    Ok(gpus)
}

fn convert_matrix(
    m: &LinkMatrixToml,
    site_known: impl Fn(&str) -> bool,
) -> Result<Vec<SiteLinkDesc>, String> {
    let n = m.sites.len();
    for (i, name) in m.sites.iter().enumerate() {
        if !site_known(name) {
            return Err(format!("unknown site {name:?}"));
        }
        if m.sites[..i].contains(name) {
            return Err(format!("site {name:?} is listed twice"));
        }
    }
    let square = |field: &str, rows: Vec<usize>| {
        if rows.len() != n {
            return Err(format!(
                "{field} has {} rows, expected {n} (one per site)",
                rows.len()
            ));
        }
        match rows.iter().position(|&len| len != n) {
            Some(i) => Err(format!(
                "{field} row {} ({}) has {} entries, expected {n}",
                i + 1,
                m.sites[i],
                rows[i]
            )),
            None => Ok(()),
        }
    };
    square("rtt_ms", m.rtt_ms.iter().map(Vec::len).collect())?;
    if let BandwidthToml::Matrix(rows) = &m.gbit_per_s {
        square("gbit_per_s", rows.iter().map(Vec::len).collect())?;
    }
    let gbit = |i: usize, j: usize| match &m.gbit_per_s {
        BandwidthToml::All(v) => *v,
        BandwidthToml::Matrix(rows) => rows[i][j],
    };
    let mut links = Vec::new();
    for i in 0..n {
        let (a, rtt_ii) = (&m.sites[i], m.rtt_ms[i][i]);
        if rtt_ii != 0.0 {
            return Err(format!(
                "rtt_ms from {a} to itself is {rtt_ii} ms, must be 0"
            ));
        }
        for j in i + 1..n {
            let (b, ab, ba) = (&m.sites[j], m.rtt_ms[i][j], m.rtt_ms[j][i]);
            let Some(rtt_ns) = ms_to_ns(ab).filter(|_| ms_to_ns(ba).is_some()) else {
                return Err(format!(
                    "rtt_ms between {a} and {b} must be a non-negative number"
                ));
            };
            if ms_to_ns(ab) != ms_to_ns(ba) {
                return Err(format!(
                    "rtt_ms not symmetric: {a}->{b} is {ab} ms but {b}->{a} is {ba} ms"
                ));
            }
            let gbit_per_s = gbit(i, j);
            if gbit_per_s != gbit(j, i) {
                return Err(format!(
                    "gbit_per_s not symmetric: {a}->{b} is {gbit_per_s} but {b}->{a} is {}",
                    gbit(j, i)
                ));
            }
            if gbit_per_s == 0 {
                return Err(format!("gbit_per_s between {a} and {b} must be positive"));
            }
            links.push(SiteLinkDesc {
                a: a.clone(),
                b: b.clone(),
                rtt_ns,
                gbit_per_s,
            });
        }
    }
    Ok(links)
}

// ---------------------------------------------------------------------------------------------
// Hostlists.

/// Expands a hostlist field (`names`, `leaf`, `spine`, `nvlink_domain`) with Slurm's own
/// syntax and order ([`hostlist::expand`], the same code as the Slurm import), so a hostlist
/// names the same nodes, in the same order, here as in a `slurm.conf`. An inventory is stricter
/// than Slurm in three ways, each a likely typo in a hand-written file: an empty or blank
/// hostlist, whitespace or control characters (Slurm would split at spaces), and empty names
/// (`a,,b`, `a,`, which Slurm skips) are errors. At most [`HOSTLIST_NAMES_MAX`] names.
fn expand_names(text: &str) -> Result<Vec<String>, String> {
    if text.trim().is_empty() {
        return Err("empty hostlist".to_string());
    }
    let quoted = hostlist::quote(text);
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("hostlist {quoted}: invalid character {c:?}"));
    }
    let names = hostlist::expand(text).map_err(|e| e.to_string())?;
    // Brackets hold no empty element once `expand` has accepted them, so these commas are
    // outside brackets.
    if text.starts_with(',') || text.ends_with(',') || text.contains(",,") {
        return Err(format!("hostlist {quoted}: empty name"));
    }
    if names.len() > HOSTLIST_NAMES_MAX {
        return Err(format!(
            "hostlist {quoted}: expands to more than {HOSTLIST_NAMES_MAX} names"
        ));
    }
    assert!(!names.is_empty(), "a non-blank hostlist names something");
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use expect_test::{expect, Expect};

    use super::*;
    use crate::topology::Level;
    use crate::SiteId;

    const SMALL: &str = include_str!("../../examples/inventory/small.toml");
    const FOUR_SITES: &str = include_str!("../../examples/inventory/four-sites.toml");

    /// A compact, stable rendering of a built topology.
    fn summary(topo: &Topology) -> String {
        let mut out = String::new();
        for m in topo.models() {
            let mig = match (m.mig_profiles.first(), m.mig_profiles.last()) {
                (Some(first), Some(last)) => format!("{}..{}", first.name, last.name),
                _ => "no".to_string(),
            };
            let (gib, nvlink) = (m.memory_mib / 1024, m.nvlink_gbit_per_s);
            writeln!(out, "model {} {gib}GiB nvlink {nvlink} mig {mig}", m.name).unwrap();
        }
        for (i, s) in topo.sites().iter().enumerate() {
            let site = SiteId::from_idx(i);
            let nodes = s.nodes.start as usize..s.nodes.end as usize;
            let site_gpus = topo.nodes()[nodes.clone()]
                .iter()
                .flat_map(|n| n.gpus.clone());
            let gpus = site_gpus.clone().count();
            let mig = site_gpus.filter(|&g| topo.gpus()[g as usize].mig).count();
            let domains = &topo.domains()[s.domains.start as usize..s.domains.end as usize];
            let multi_node = domains
                .iter()
                .filter(|d| d.nodes.len() > 1)
                .map(|d| format!(" {}={}", d.name, d.nodes.len()))
                .collect::<String>();
            writeln!(
                out,
                "site {} {} {}: {} nodes, {gpus} gpus ({mig} mig), {} domains{multi_node}",
                s.name,
                topo.site_jurisdiction(site),
                s.region,
                nodes.len(),
                domains.len(),
            )
            .unwrap();
            for spine in &topo.spines()[s.spines.start as usize..s.spines.end as usize] {
                let leaves = topo.leaves()[spine.leaves.start as usize..spine.leaves.end as usize]
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.nodes.len()))
                    .collect::<Vec<_>>();
                writeln!(out, "  {}: {}", spine.name, leaves.join(" ")).unwrap();
            }
        }
        let sites = topo.sites();
        for a in 0..sites.len() {
            for b in a + 1..sites.len() {
                let (sa, sb) = (SiteId::from_idx(a), SiteId::from_idx(b));
                let ms = topo.site_rtt_ns(sa, sb) as f64 / 1e6;
                let gbit = topo.site_gbit_per_s(sa, sb);
                writeln!(
                    out,
                    "rtt {}-{} {ms}ms {gbit}gbit/s",
                    sites[a].name, sites[b].name
                )
                .unwrap();
            }
        }
        // From the first node to the first node of the next leaves and to the last node.
        let mut others: Vec<usize> = topo
            .leaves()
            .iter()
            .skip(1)
            .take(3)
            .map(|l| l.nodes.start as usize)
            .collect();
        others.push(topo.nodes().len() - 1);
        others.dedup();
        let names: Vec<(&str, &str)> = others
            .iter()
            .map(|&i| (topo.nodes()[0].name.as_str(), topo.nodes()[i].name.as_str()))
            .collect();
        out + &queries(topo, &names)
    }

    /// RTT, common level and GPU 0 to GPU 0 bandwidth between pairs of named nodes.
    fn queries(topo: &Topology, pairs: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for &(a, b) in pairs {
            let id = |name| topo.node_by_name(name).expect("node exists");
            let (first, other) = (id(a), id(b));
            let level = topo.common_level(first, other).map_or("none", Level::name);
            let us = topo.node_rtt_ns(first, other) as f64 / 1e3;
            let gbit = match (topo.node(first).gpu_count(), topo.node(other).gpu_count()) {
                (0, _) | (_, 0) => "no gpus".to_string(),
                _ => {
                    let (ga, gb) = (topo.node_gpu(first, 0), topo.node_gpu(other, 0));
                    topo.gpu_gbit_per_s(ga, gb).to_string()
                }
            };
            writeln!(out, "{a} -> {b}: {level}, {us}us, gpu0 gbit/s {gbit}").unwrap();
        }
        out
    }

    /// Wraps a one-line message at 80 columns so that snapshots fit the line limit.
    fn wrap(message: &str) -> String {
        let mut out = String::new();
        let mut width = 0;
        for word in message.split(' ') {
            if width > 0 && width + 1 + word.len() > 80 {
                out.push('\n');
                width = 0;
            } else if width > 0 {
                out.push(' ');
                width += 1;
            }
            out.push_str(word);
            width += word.len();
        }
        out.push('\n');
        out
    }

    fn check_ok(text: &str, expect: Expect) {
        match load_inventory(text) {
            Ok(topo) => expect.assert_eq(&summary(&topo)),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn check_err(text: &str, expect: Expect) {
        let message = match load_inventory(text) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        assert!(!message.contains('\n'), "multi-line error: {message}");
        assert!(!message.ends_with('.'), "full stop: {message}");
        expect.assert_eq(&wrap(&message));
    }

    const SITE: &str = "[[site]]\nname = \"syd1\"\njurisdiction = \"AU\"\n";
    const NODE: &str = "names = \"n[1-4]\"\ncpus = 8\nmemory_gb = 64\n";

    /// One site with one node group made of `group` (its fields, one per line).
    fn site_with(group: &str) -> String {
        format!("{SITE}\n[[site.nodes]]\n{group}\n")
    }

    /// Two sites of one node each, then `rest` (links).
    fn two_sites(rest: &str) -> String {
        let tok = "[[site]]\nname = \"tok1\"\njurisdiction = \"JP\"\n";
        let tok_nodes = "[[site.nodes]]\nnames = \"t1\"\ncpus = 8\nmemory_gb = 64\n";
        format!("{}{tok}{tok_nodes}\n{rest}\n", site_with(NODE))
    }

    #[test]
    fn examples_load() {
        check_ok(
            SMALL,
            expect![[r#"
                model H100 80GiB nvlink 7200 mig 1g.10gb..7g.80gb
                model A100-80GB 80GiB nvlink 4800 mig 1g.10gb..7g.80gb
                model L40S 48GiB nvlink 0 mig no
                site syd1 AU ap-southeast-2: 6 nodes, 48 gpus (2 mig), 6 domains
                  s0: l0=4 l1=2
                site sin1 SG ap-southeast-1: 2 nodes, 8 gpus (0 mig), 2 domains
                  s0: l0=2
                rtt syd1-sin1 92ms 100gbit/s
                syd1-n1 -> syd1-n5: spine, 9us, gpu0 gbit/s 400
                syd1-n1 -> sin1-n1: none, 92000us, gpu0 gbit/s 100
                syd1-n1 -> sin1-n2: none, 92000us, gpu0 gbit/s 100
            "#]],
        );
        check_ok(
            FOUR_SITES,
            expect![[r#"
                model H100 80GiB nvlink 7200 mig 1g.10gb..7g.80gb
                model A100-80GB 80GiB nvlink 4800 mig 1g.10gb..7g.80gb
                model GB200 186GiB nvlink 14400 mig 1g.23gb..7g.184gb
                model H200 141GiB nvlink 7200 mig 1g.18gb..7g.144gb
                model L40S 48GiB nvlink 0 mig no
                model A100-40GB 40GiB nvlink 4800 mig 1g.5gb..7g.40gb
                site syd1 AU ap-southeast-2: 76 nodes, 576 gpus (16 mig), 76 domains
                  s0: l0=16 l1=16
                  s1: l2=16 l3=16 l4=8
                  mgmt: mgmt-l0=4
                site tok1 JP ap-northeast-1: 66 nodes, 456 gpus (0 mig), 49 domains nvl72-1=18
                  s0: rack1=16 rack2=16
                  s1: nvl72-rack1=18 rack3=8 rack4=8
                site sin1 SG ap-southeast-1: 64 nodes, 448 gpus (0 mig), 64 domains
                  s0: l0=16 l1=16 l2=16
                  s-inf: inf1=8 inf2=8
                site kul1 MY ap-southeast-5: 24 nodes, 192 gpus (64 mig), 24 domains
                  kul1-s1: kul1-l1=8 kul1-l2=8 kul1-l3=8
                rtt syd1-tok1 110ms 100gbit/s
                rtt syd1-sin1 92ms 100gbit/s
                rtt syd1-kul1 95ms 100gbit/s
                rtt tok1-sin1 70ms 100gbit/s
                rtt tok1-kul1 75ms 100gbit/s
                rtt sin1-kul1 8ms 400gbit/s
                syd1-h001 -> syd1-h017: spine, 9us, gpu0 gbit/s 3200
                syd1-h001 -> syd1-h033: site, 14us, gpu0 gbit/s 3200
                syd1-h001 -> syd1-h049: site, 14us, gpu0 gbit/s 3200
                syd1-h001 -> kul1-a08: none, 95000us, gpu0 gbit/s 100
            "#]],
        );
    }

    #[test]
    fn docs_example_loads() {
        let docs = include_str!("../../docs/inventory.md");
        let example = docs
            .split("## Full example\n\n```toml\n")
            .nth(1)
            .expect("example");
        let example = example.split("```").next().expect("closing fence");
        check_ok(
            example,
            expect![[r#"
                model X2 96GiB nvlink 3600 mig 1g.12gb..7g.96gb
                model H100 80GiB nvlink 7200 mig 1g.10gb..7g.80gb
                model GB200 186GiB nvlink 14400 mig 1g.23gb..7g.184gb
                site syd1 AU ap-southeast-2: 136 nodes, 1056 gpus (16 mig), 136 domains
                  s0: l0=32 l1=32
                  s1: l2=32 l3=32 l4=8
                site tok1 JP ap-northeast-1: 18 nodes, 72 gpus (0 mig), 1 domains nvl72-1=18
                  s0: nvl72-rack1=18
                rtt syd1-tok1 110ms 100gbit/s
                syd1-h001 -> syd1-h033: spine, 9us, gpu0 gbit/s 3200
                syd1-h001 -> syd1-h065: site, 14us, gpu0 gbit/s 3200
                syd1-h001 -> syd1-h097: site, 14us, gpu0 gbit/s 3200
                syd1-h001 -> tok1-gb18: none, 110000us, gpu0 gbit/s 100
            "#]],
        );
    }

    #[test]
    fn four_sites_queries() {
        let topo = load_inventory(FOUR_SITES).unwrap();
        let pairs = [
            ("tok1-gb01", "tok1-gb18"),
            ("tok1-gb01", "tok1-g01"),
            ("tok1-h001", "tok1-h017"),
            ("sin1-h001", "sin1-h048"),
            ("sin1-h001", "kul1-h01"),
            ("syd1-a01", "syd1-h064"),
        ];
        expect![[r#"
            tok1-gb01 -> tok1-gb18: nvlink, 2us, gpu0 gbit/s 14400
            tok1-gb01 -> tok1-g01: spine, 9us, gpu0 gbit/s 3200
            tok1-h001 -> tok1-h017: spine, 9us, gpu0 gbit/s 3200
            sin1-h001 -> sin1-h048: spine, 8us, gpu0 gbit/s 3200
            sin1-h001 -> kul1-h01: none, 8000us, gpu0 gbit/s 400
            syd1-a01 -> syd1-h064: spine, 9us, gpu0 gbit/s 400
        "#]]
        .assert_eq(&queries(&topo, &pairs));
        let mig_gpus = |node: &str| {
            let node = topo.node(topo.node_by_name(node).unwrap());
            let gpus = node.gpus.start as usize..node.gpus.end as usize;
            topo.gpus()[gpus]
                .iter()
                .map(|g| g.mig as u8)
                .collect::<Vec<_>>()
        };
        expect!["[1, 1, 0, 0, 0, 0, 0, 0] [1, 1, 1, 1, 1, 1, 1, 1]"].assert_eq(&format!(
            "{:?} {:?}",
            mig_gpus("syd1-a01"),
            mig_gpus("kul1-a01")
        ));
    }

    #[test]
    fn good_inventories() {
        // Everything defaulted: one auto leaf and spine, no GPUs, no NICs, default fabric.
        check_ok(
            &site_with(NODE),
            expect![[r#"
                site syd1 AU : 4 nodes, 0 gpus (0 mig), 4 domains
                  s0: l0=4
                n1 -> n4: leaf, 5us, gpu0 gbit/s no gpus
            "#]],
        );
        // A big site in two lines: 128 nodes, 32 per leaf, 2 leaves per spine.
        check_ok(
            &site_with(
                "names = \"n[000-127]\"\nnodes_per_leaf = 32\nleaves_per_spine = 2\n\
                 cpus = 96\nmemory_gb = 1024\ngpus = \"8xH100\"",
            ),
            expect![[r#"
                model H100 80GiB nvlink 7200 mig 1g.10gb..7g.80gb
                site syd1 AU : 128 nodes, 1024 gpus (0 mig), 128 domains
                  s0: l0=32 l1=32
                  s1: l2=32 l3=32
                n000 -> n032: spine, 9us, gpu0 gbit/s 0
                n000 -> n064: site, 14us, gpu0 gbit/s 0
                n000 -> n096: site, 14us, gpu0 gbit/s 0
                n000 -> n127: site, 14us, gpu0 gbit/s 0
            "#]],
        );
        // Auto names continue across groups; a group naming a known leaf joins its spine.
        check_ok(
            &format!(
                "{}[[site.nodes]]\nnames = \"m[1-2]\"\nleaf = \"l0\"\ncpus = 8\nmemory_gb = 8\n\
                 [[site.nodes]]\nnames = \"k[1-4]\"\nnodes_per_leaf = 2\ncpus = 8\n\
                 memory_gb = 8\nnodes_per_nvlink_domain = 2\n",
                site_with(NODE)
            ),
            expect![[r#"
                site syd1 AU : 10 nodes, 0 gpus (0 mig), 8 domains nvl0=2 nvl1=2
                  s0: l0=6
                  s1: l1=2 l2=2
                n1 -> k1: site, 14us, gpu0 gbit/s no gpus
                n1 -> k3: site, 14us, gpu0 gbit/s no gpus
                n1 -> k4: site, 14us, gpu0 gbit/s no gpus
            "#]],
        );
        // A declared model with explicit MIG profiles, mixed GPUs, matrix links with floats.
        check_ok(
            &format!(
                "[[model]]\nname = \"X1\"\nmemory_mib = 49152\nmig_profiles = [\n  \
                 {{ name = \"1g.6gb\", compute_slices = 1, memory_slices = 1 }},\n  \
                 {{ name = \"7g.48gb\", compute_slices = 7, memory_slices = 8 }},\n]\n{}",
                two_sites(
                    "[link_matrix]\nsites = [\"tok1\", \"syd1\"]\n\
                     rtt_ms = [[0, 104.5], [104.5, 0]]\ngbit_per_s = 40",
                )
                .replace(
                    "names = \"t1\"",
                    "names = \"t1\"\ngpus = [\"2xL4\", { model = \"x1\", count = 2, mig = [1] }]",
                )
            ),
            expect![[r#"
                model X1 48GiB nvlink 0 mig 1g.6gb..7g.48gb
                model L4 24GiB nvlink 0 mig no
                site syd1 AU : 4 nodes, 0 gpus (0 mig), 4 domains
                  s0: l0=4
                site tok1 JP : 1 nodes, 4 gpus (1 mig), 1 domains
                  s0: l0=1
                rtt syd1-tok1 104.5ms 40gbit/s
                n1 -> t1: none, 104500us, gpu0 gbit/s no gpus
            "#]],
        );
    }

    #[test]
    fn toml_errors() {
        check_err(
            "[[site]\nname = 1",
            expect![[r#"
                line 1, column 8: unclosed array table, expected `]`
            "#]],
        );
        check_err(
            "[[site]]\nname = \"syd1\nx = 1",
            expect![[r#"
                line 2, column 13: invalid basic string, expected `"`
            "#]],
        );
        check_err(
            &format!("{SITE}nmae = \"x\"\n"),
            expect![[r#"
                line 4, column 1: unknown field `nmae`, expected one of `name`, `jurisdiction`,
                `region`, `fabric`, `nodes`
            "#]],
        );
        check_err(
            "[[site]]\nname = \"syd1\"\n",
            expect![[r#"
                line 1, column 1: missing field `jurisdiction`
            "#]],
        );
        check_err(
            "[[nodes]]\nnames = \"n1\"\n",
            expect![[r#"
                line 1, column 3: unknown field `nodes`, expected one of `version`, `model`,
                `site`, `link`, `link_matrix`
            "#]],
        );
        check_err(
            "[[site.nodes]]\nnames = \"n1\"\n",
            expect![[r#"
                line 1, column 3: invalid type: map, expected a sequence
            "#]],
        );
        check_err(
            &site_with("names = \"n1\"\ncpus = \"96\""),
            expect![[r#"
                line 7, column 8: invalid type: string "96", expected u64
            "#]],
        );
        check_err(
            &site_with("names = \"n1\"\ncpus = -1"),
            expect![[r#"
                line 7, column 8: invalid value: integer `-1`, expected u64
            "#]],
        );
        check_err(
            &site_with(&format!("{NODE}gpu = \"8xH100\"")),
            expect![[r#"
                line 9, column 1: unknown field `gpu`, expected one of `names`, `spine`, `leaf`,
                `nvlink_domain`, `leaves_per_spine`, `nodes_per_leaf`,
                `nodes_per_nvlink_domain`, `cpus`, `cpu_milli`, `memory_gb`, `memory_mib`,
                `gpus`, `nics`
            "#]],
        );
        check_err(
            &format!("{SITE}fabric = {{ leaf_rtt = 5 }}\n"),
            expect![[r#"
                line 4, column 12: unknown field `leaf_rtt`, expected one of `nvlink_rtt_us`,
                `leaf_rtt_us`, `spine_rtt_us`, `core_rtt_us`, `pcie_gbit_per_s`
            "#]],
        );
        check_err(
            "version = 2\n",
            expect![[r#"
                line 1: unsupported inventory version 2, this sovra reads version 1
            "#]],
        );
    }

    #[test]
    fn node_group_errors() {
        let check = |fields: &str, expect: Expect| check_err(&site_with(fields), expect);
        check(
            "names = \"n1\"\nmemory_gb = 64",
            expect![[r#"
                line 5: node group "n1": missing cpus (or cpu_milli)
            "#]],
        );
        check(
            "names = \"n1\"\ncpus = 8",
            expect![[r#"
                line 5: node group "n1": missing memory_gb (or memory_mib)
            "#]],
        );
        check(
            "names = \"n1\"\ncpus = 8\ncpu_milli = 8000\nmemory_gb = 1",
            expect![[r#"
                line 5: node group "n1": give cpus or cpu_milli, not both
            "#]],
        );
        check(
            "names = \"n1\"\ncpus = 0\nmemory_gb = 64",
            expect![[r#"
                line 5: node group "n1": cpus must be positive
            "#]],
        );
        check(
            "names = \"n1\"\ncpus = 8\nmemory_gb = 64\nmemory_mib = 1",
            expect![[r#"
                line 5: node group "n1": give memory_gb or memory_mib, not both
            "#]],
        );
        check(
            "names = \"n1\"\ncpus = 8\nmemory_mib = 0",
            expect![[r#"
                line 5: node group "n1": memory must be positive
            "#]],
        );
        check(
            "names = \"n[1-\"\ncpus = 8\nmemory_gb = 64",
            expect![[r#"
                line 5: node group "n[1-": names: hostlist "n[1-": unbalanced brackets
            "#]],
        );
        check(
            "names = \"n[1,1]\"\ncpus = 8\nmemory_gb = 64",
            expect![[r#"
                line 5: node group "n[1,1]": node "n1" is already declared at line 5
            "#]],
        );
        check(
            &format!("{NODE}gpus = \"8H100\""),
            expect![[r#"
                line 9, column 8: invalid gpus "8H100": expected COUNTxMODEL like "8xH100"
            "#]],
        );
        check(
            &format!("{NODE}gpus = \"0xH100\""),
            expect![[r#"
                line 9, column 8: invalid gpus "0xH100": expected COUNTxMODEL like "8xH100"
            "#]],
        );
        check(
            &format!("{NODE}gpus = \"8x\""),
            expect![[r#"
                line 9, column 8: invalid gpus "8x": expected COUNTxMODEL like "8xH100"
            "#]],
        );
        check(
            &format!("{NODE}gpus = \"8xH1000\""),
            expect![[r#"
                line 5: node group "n[1-4]": unknown gpu model "H1000" (not built in; declare it
                with [[model]])
            "#]],
        );
        check(
            &format!("{NODE}gpus = \"40xH100\""),
            expect![[r#"
                line 5: node group "n[1-4]": 40 gpus per node, at most 32
            "#]],
        );
        check(
            &format!("{NODE}gpus = 8"),
            expect![[r#"
                line 9, column 8: invalid type: integer `8`, expected a string like "8xH100", a
                table { model, count, mig } or an array
            "#]],
        );
        check(
            &format!("{NODE}gpus = {{ model = \"H100\", cnt = 8 }}"),
            expect![[r#"
                line 9, column 26: unknown field `cnt`, expected one of `model`, `count`, `mig`
            "#]],
        );
        check(
            &format!("{NODE}gpus = {{ model = \"H100\", count = 0 }}"),
            expect![[r#"
                line 5: node group "n[1-4]": gpus: count of "H100" must be positive
            "#]],
        );
        check(
            &format!("{NODE}gpus = {{ model = \"L40S\", count = 4, mig = true }}"),
            expect![[r#"
                line 5: node group "n[1-4]": gpus: gpu model "L40S" is not mig-capable
            "#]],
        );
        check(
            &format!("{NODE}gpus = {{ model = \"H100\", count = 4, mig = [4] }}"),
            expect![[r#"
                line 5: node group "n[1-4]": gpus: mig index 4 out of range for 4 gpus
            "#]],
        );
        check(
            &format!("{NODE}gpus = {{ model = \"H100\", count = 4, mig = [1, 1] }}"),
            expect![[r#"
                line 5: node group "n[1-4]": gpus: mig index 1 given twice
            "#]],
        );
        check(
            &format!("{NODE}nics = \"4*400\""),
            expect![[r#"
                line 9, column 8: invalid nics "4*400": expected COUNTxGBIT like "4x400"
            "#]],
        );
        check(
            &format!("{NODE}nics = \"100x400\""),
            expect![[r#"
                line 9, column 8: nics "100x400": at most 64 per node
            "#]],
        );
        check(
            &format!("{NODE}nics = [{{ name = \"eth0\", gbit_per_s = 0 }}]"),
            expect![[r#"
                line 5: node group "n[1-4]": nic "eth0": gbit_per_s must be positive
            "#]],
        );
        check(
            &format!("{NODE}nics = [{{ name = \"eth0\" }}]"),
            expect![[r#"
                line 9, column 9: missing field `gbit_per_s`
            "#]],
        );
        check(
            &format!("{NODE}leaf = \"l[0-2]\""),
            expect![[r#"
                line 5: node group "n[1-4]": 4 nodes do not split over the 3 names of leaf; set
                nodes_per_leaf
            "#]],
        );
        check(
            &format!("{NODE}leaf = \"l[0-2]\"\nnodes_per_leaf = 1"),
            expect![[r#"
                line 5: node group "n[1-4]": 4 nodes at nodes_per_leaf = 1 need 4 names in leaf,
                it has 3
            "#]],
        );
        check(
            &format!("{NODE}nodes_per_leaf = 0"),
            expect![[r#"
                line 5: node group "n[1-4]": nodes_per_leaf must be positive
            "#]],
        );
        check(
            &format!("{NODE}spine = \"s[0-1]\"\nnodes_per_leaf = 2"),
            expect![[r#"
                ok
            "#]],
        );
        check(
            &format!("{NODE}spine = \"s[0-2]\"\nnodes_per_leaf = 2"),
            expect![[r#"
                line 5: node group "n[1-4]": 2 leaves do not split over the 3 names of spine;
                set leaves_per_spine
            "#]],
        );
        check(
            &format!("{NODE}nvlink_domain = \"d[\""),
            expect![[r#"
                line 5: node group "n[1-4]": nvlink_domain: hostlist "d[": unbalanced brackets
            "#]],
        );
        check(
            &format!("{NODE}nvlink_domain = \"nvl0\"\nnodes_per_leaf = 2"),
            expect![[r#"
                site "syd1": nvlink domain "nvl0" spans leaves "l0" and "l1"
            "#]],
        );
        check(
            &format!("{NODE}leaf = \"l0\"\nspine = \"s0\"\n[[site.nodes]]\n{NODE}"),
            expect![[r#"
                line 11: node group "n[1-4]": node "n1" is already declared at line 5
            "#]],
        );
        check(
            &format!(
                "{NODE}leaf = \"l0\"\nspine = \"s0\"\n[[site.nodes]]\nnames = \"m1\"\n\
                 cpus = 1\nmemory_gb = 1\nleaf = \"l0\"\nspine = \"s1\""
            ),
            expect![[r#"
                site "syd1": leaf "l0" is under spine "s0" and spine "s1"
            "#]],
        );
    }

    #[test]
    fn model_and_site_errors() {
        let model = |fields: &str| format!("[[model]]\n{fields}\n{}", site_with(NODE));
        check_err(
            &model("name = \"X1\""),
            expect![[r#"
                line 1: gpu model "X1": missing memory_gb (or memory_mib)
            "#]],
        );
        check_err(
            &model("name = \"X1\"\nmemory_gb = 8\nmemory_mib = 8"),
            expect![[r#"
                line 1: gpu model "X1": give memory_gb or memory_mib, not both
            "#]],
        );
        check_err(
            &model("name = \"X1\"\nmemory_gb = 0"),
            expect![[r#"
                line 1: gpu model "X1": memory must be positive
            "#]],
        );
        check_err(
            &model("name = \"\"\nmemory_gb = 8"),
            expect![[r#"
                line 1: gpu model with an empty name
            "#]],
        );
        check_err(
            &model("name = \"H100\"\n[[model]]\nname = \"h100\"\nmemory_gb = 94"),
            expect![[r#"
                line 3: gpu model "h100" is declared twice
            "#]],
        );
        check_err(
            &model("name = \"X1\"\nmemory_gb = 8\nmig = false\nmig_profiles = []"),
            expect![[r#"
                line 1: gpu model "X1": mig = false contradicts mig_profiles
            "#]],
        );
        check_err(
            &model("name = \"X1\"\nmemory_gb = 8\nmig_profiles = []"),
            expect![[r#"
                line 1: gpu model "X1": mig_profiles is empty; remove it or set mig = false
            "#]],
        );
        check_err(
            &model(
                "name = \"X1\"\nmemory_gb = 8\n\
                 mig_profiles = [{ name = \"9g\", compute_slices = 9, memory_slices = 1 }]",
            ),
            expect![[r#"
                gpu model "X1": mig profile "9g" uses 9 compute and 1 memory slices, at most 7
                and 8
            "#]],
        );
        check_err(
            &model("name = \"X1\"\nmemory_gb = 8\nnvlink = 1"),
            expect![[r#"
                line 4, column 1: unknown field `nvlink`, expected one of `name`, `memory_gb`,
                `memory_mib`, `nvlink_gbit_per_s`, `mig`, `mig_profiles`
            "#]],
        );
        check_err(
            &format!("{}{SITE}", site_with(NODE)).replace("names = \"n[1-4]\"", "names = \"x1\""),
            expect![[r#"
                line 10: site "syd1" is declared twice
            "#]],
        );
        let site = |fields: &str| format!("[[site]]\n{fields}\n");
        check_err(
            &site("name = \"syd1\"\njurisdiction = \"Australia\""),
            expect![[r#"
                line 1: site "syd1": invalid jurisdiction "Australia": expected 2 to 8
                characters
            "#]],
        );
        check_err(
            &site("name = \" \"\njurisdiction = \"AU\""),
            expect![[r#"
                line 1: site with an empty name
            "#]],
        );
        check_err(
            &site("name = \"syd1\"\njurisdiction = \"AU\"\nfabric = { leaf_rtt_us = -5 }"),
            expect![[r#"
                line 1: site "syd1": fabric.leaf_rtt_us must be a non-negative number
            "#]],
        );
        check_err(
            &site("name = \"syd1\"\njurisdiction = \"AU\"\nfabric = { pcie_gbit_per_s = 0 }"),
            expect![[r#"
                line 1: site "syd1": fabric.pcie_gbit_per_s must be positive
            "#]],
        );
    }

    #[test]
    fn link_errors() {
        let link = |a: &str, b: &str, rest: &str| {
            two_sites(&format!("[[link]]\na = \"{a}\"\nb = \"{b}\"\n{rest}"))
        };
        check_err(
            &two_sites(""),
            expect![[r#"
                no rtt given between sites "syd1" and "tok1"
            "#]],
        );
        check_err(
            &link("syd1", "tok9", "rtt_ms = 1\ngbit_per_s = 1"),
            expect![[r#"
                line 18: link "syd1"-"tok9": unknown site "tok9"
            "#]],
        );
        check_err(
            &link("syd1", "tok1", "rtt_ms = -1\ngbit_per_s = 1"),
            expect![[r#"
                line 18: link "syd1"-"tok1": rtt_ms must be a non-negative number
            "#]],
        );
        check_err(
            &link("syd1", "tok1", "rtt_ms = 1\ngbit_per_s = 0"),
            expect![[r#"
                line 18: link "syd1"-"tok1": gbit_per_s must be positive
            "#]],
        );
        check_err(
            &link("syd1", "tok1", "rtt_ms = 1"),
            expect![[r#"
                line 18, column 1: missing field `gbit_per_s`
            "#]],
        );
        check_err(
            &link("syd1", "syd1", "rtt_ms = 1\ngbit_per_s = 1"),
            expect![[r#"
                line 18: link "syd1"-"syd1": a link needs two different sites
            "#]],
        );
        check_err(
            &link("syd1", "tok1", "rtt_ms = 1\ngbit_per_s = 1\n").replace(
                "[[link]]",
                "[[link]]\na = \"tok1\"\nb = \"syd1\"\nrtt_ms = 2\ngbit_per_s = 1\n[[link]]",
            ),
            expect![[r#"
                line 23: link "syd1"-"tok1": rtt_ms 1 contradicts 2 at line 18
            "#]],
        );
        let matrix = |sites: &str, rtt_ms: &str, gbit_per_s: &str| {
            two_sites(&format!(
                "[link_matrix]\nsites = {sites}\nrtt_ms = {rtt_ms}\ngbit_per_s = {gbit_per_s}"
            ))
        };
        let pair = "[\"syd1\", \"tok1\"]";
        check_err(
            &matrix(pair, "[[0, 1]]", "1"),
            expect![[r#"
                line 18: link_matrix: rtt_ms has 1 rows, expected 2 (one per site)
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, 1], [1]]", "1"),
            expect![[r#"
                line 18: link_matrix: rtt_ms row 2 (tok1) has 1 entries, expected 2
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, 1], [1, 3]]", "1"),
            expect![[r#"
                line 18: link_matrix: rtt_ms from tok1 to itself is 3 ms, must be 0
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, 110], [100, 0]]", "1"),
            expect![[r#"
                line 18: link_matrix: rtt_ms not symmetric: syd1->tok1 is 110 ms but tok1->syd1
                is 100 ms
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, -1], [-1, 0]]", "1"),
            expect![[r#"
                line 18: link_matrix: rtt_ms between syd1 and tok1 must be a non-negative number
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, 1], [1, 0]]", "[[0, 1], [2, 0]]"),
            expect![[r#"
                line 18: link_matrix: gbit_per_s not symmetric: syd1->tok1 is 1 but tok1->syd1
                is 2
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, 1], [1, 0]]", "0"),
            expect![[r#"
                line 18: link_matrix: gbit_per_s between syd1 and tok1 must be positive
            "#]],
        );
        check_err(
            &matrix(pair, "[[0, 1], [1, 0]]", "\"fast\""),
            expect![[r#"
                line 21, column 14: invalid type: string "fast", expected a bandwidth in gbit/s
                or a matrix of them
            "#]],
        );
        check_err(
            &matrix("[\"syd1\", \"syd1\"]", "[[0, 1], [1, 0]]", "1"),
            expect![[r#"
                line 18: link_matrix: site "syd1" is listed twice
            "#]],
        );
        check_err(
            &matrix("[\"syd1\", \"x\"]", "[[0, 1], [1, 0]]", "1"),
            expect![[r#"
                line 18: link_matrix: unknown site "x"
            "#]],
        );
    }

    #[test]
    fn load_errors() {
        check_err(
            "",
            expect![[r#"
                inventory declares no sites
            "#]],
        );
        let sites: String = (0..65)
            .map(|i| format!("[[site]]\nname = \"s{i}\"\njurisdiction = \"J{i}\"\n"))
            .collect();
        check_err(
            &sites,
            expect![[r#"
                too many jurisdictions: at most 64 are supported
            "#]],
        );
    }

    #[test]
    fn hostlists() {
        let cases = [
            "n1",
            "n[001-003,40]",
            "n[8-11]",
            "r[1-2]n[1-2]",
            "a1,b[1-2],c",
            "syd1-n[0001-1024]",
            "[1-3]",
            "n[0-65535]",
            "r[0-15]n[0-62499]",
            // Slurm's syntax and limits (`scontrol show hostnames` 22.05).
            "r[0-15]n[0-62500]",
            "n[0-65536]",
            "r[1-2]n[1-2]-ib",
            "n[0-99999999999999999999]",
            "n[3-1]",
            "n[1-2",
            "n[1-2]]",
            "n]",
            "n[a-b]",
            "n[1--2]",
            "n[]",
            // Stricter than Slurm.
            "n 1",
            "n[1,\t2]",
            "",
            "  ",
            "a,,b",
            "a,",
            ",a",
            ",",
            &format!("{}[1-2", "n".repeat(70)),
        ];
        let mut out = String::new();
        for text in cases {
            let actual = match expand_names(text) {
                Ok(names) if names.len() > 8 => {
                    let last = &names[names.len() - 1];
                    format!("{} names: {} .. {last}", names.len(), names[0])
                }
                Ok(names) => names.join(" "),
                Err(e) => {
                    assert!(!e.contains('\n'), "multi-line error: {e}");
                    format!("error: {e}")
                }
            };
            // Wrapped, continuation lines indented, to fit the line limit.
            let line = wrap(&format!("{text:?} => {actual}"));
            out += &line.trim_end().replace('\n', "\n    ");
            out.push('\n');
        }
        expect![[r#"
            "n1" => n1
            "n[001-003,40]" => n001 n002 n003 n40
            "n[8-11]" => n8 n9 n10 n11
            "r[1-2]n[1-2]" => r1n1 r1n2 r2n1 r2n2
            "a1,b[1-2],c" => a1 b1 b2 c
            "syd1-n[0001-1024]" => 1024 names: syd1-n0001 .. syd1-n1024
            "[1-3]" => 1 2 3
            "n[0-65535]" => 65536 names: n0 .. n65535
            "r[0-15]n[0-62499]" => 1000000 names: r0n0 .. r15n62499
            "r[0-15]n[0-62500]" => error: hostlist "r[0-15]n[0-62500]": expands to more than
                1000000 hosts
            "n[0-65536]" => error: hostlist "n[0-65536]": "0-65536" has more than 65536
                hosts
            "r[1-2]n[1-2]-ib" => error: hostlist "r[1-2]n[1-2]-ib": a bracket group must end
                the name
            "n[0-99999999999999999999]" => error: hostlist "n[0-99999999999999999999]":
                "0-99999999999999999999" is not a number or a range of numbers
            "n[3-1]" => error: hostlist "n[3-1]": range "3-1" is reversed
            "n[1-2" => error: hostlist "n[1-2": unbalanced brackets
            "n[1-2]]" => error: hostlist "n[1-2]]": unbalanced brackets
            "n]" => error: hostlist "n]": unbalanced brackets
            "n[a-b]" => error: hostlist "n[a-b]": "a-b" is not a number or a range of
                numbers
            "n[1--2]" => error: hostlist "n[1--2]": "1--2" is not a number or a range of
                numbers
            "n[]" => error: hostlist "n[]": "" is not a number or a range of numbers
            "n 1" => error: hostlist "n 1": invalid character ' '
            "n[1,\t2]" => error: hostlist "n[1,\t2]": invalid character '\t'
            "" => error: empty hostlist
            "  " => error: empty hostlist
            "a,,b" => error: hostlist "a,,b": empty name
            "a," => error: hostlist "a,": empty name
            ",a" => error: hostlist ",a": empty name
            "," => error: hostlist ",": empty name
            "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn[1-2" =>
                error: hostlist
                "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"…:
                unbalanced brackets
        "#]]
        .assert_eq(&out);
    }

    /// Three or more bracket groups: the last varies fastest, then the first, the second, …,
    /// the one before last slowest, as in Slurm (not plain lexicographic order).
    #[test]
    fn hostlists_three_groups_follow_slurm() {
        let names = expand_names("r[1-2]c[1-2]n[1-2]").unwrap();
        expect![[r#"
            r1c1n1 r1c1n2 r2c1n1 r2c1n2 r1c2n1 r1c2n2 r2c2n1 r2c2n2
        "#]]
        .assert_eq(&(names.join(" ") + "\n"));
        for text in [
            "r[1-2]c[1-2]n[1-2]",
            "a[1-2]b[3-4]c[5-6]",
            "a[1-2]b[1-2]c[1-2]d[1-2]",
            "dc[1-2]-r[01-03]-n[8-10],x[0-1]y[5,7]z[2]",
            "syd1-s[0-1]-l[00-15]-n[000-031]",
        ] {
            assert_eq!(
                expand_names(text),
                Ok(hostlist::expand(text).unwrap()),
                "{text}"
            );
        }
        // The order decides which nodes share a leaf: 4 per leaf, in hostlist order.
        let text = format!(
            "{SITE}\n[[site.nodes]]\nnames = \"r[1-2]c[1-2]n[1-2]\"\ncpus = 8\nmemory_gb = 64\n\
             nodes_per_leaf = 4\n"
        );
        let topo = load_inventory(&text).unwrap();
        let leaves: Vec<String> = topo
            .leaves()
            .iter()
            .map(|l| {
                let nodes = l.nodes.start as usize..l.nodes.end as usize;
                let names: Vec<&str> = topo.nodes()[nodes]
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect();
                format!("{}: {}", l.name, names.join(" "))
            })
            .collect();
        expect![[r#"
            l0: r1c1n1 r1c1n2 r2c1n1 r2c1n2
            l1: r1c2n1 r1c2n2 r2c2n1 r2c2n2
        "#]]
        .assert_eq(&(leaves.join("\n") + "\n"));
    }

    #[test]
    fn error_positions() {
        // Line and column count characters, not bytes.
        let text = "# héllo\n[[site]]\nname = \"é\"\njurisdiction = \"AU\"\nbad = 1\n";
        check_err(
            text,
            expect![[r#"
                line 5, column 1: unknown field `bad`, expected one of `name`, `jurisdiction`,
                `region`, `fabric`, `nodes`
            "#]],
        );
    }

    #[test]
    fn truncated_example_never_panics() {
        assert!(FOUR_SITES.is_ascii());
        let (mut ok, mut err) = (0, 0);
        for end in (0..FOUR_SITES.len()).step_by(97) {
            match load_inventory(&FOUR_SITES[..end]) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(!e.to_string().contains('\n'));
                    err += 1;
                }
            }
        }
        assert!(ok + err > 30);
    }
}
