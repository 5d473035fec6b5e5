//! Writing a [`TopologyDesc`] as sovra's TOML inventory: the inverse of [`parse_inventory`].
//!
//! [`write_inventory`] gives text that [`parse_inventory`] reads back as an equal description
//! (the same models, sites, nodes and links, in the same order), or a [`WriteError`] that says
//! what the format cannot hold; it never writes something that reads back differently, and it
//! checks that by reading its own output back.
//!
//! The text is meant to be read and edited by hand, like the inventories operators write:
//! consecutive nodes of a site with the same resources and a regular layout become one
//! `[[site.nodes]]` group whose names are a compressed hostlist (`hgx[001-008]`), with explicit
//! `leaf`, `spine` and `nvlink_domain` names split by `nodes_per_leaf`, `leaves_per_spine` and
//! `nodes_per_nvlink_domain`. GPUs and NICs use the `"8xH100"` and `"4x400"` shorthands where
//! they fit, and GPU models that are exactly a built-in model are left to the built-in table.
//! Fabric latencies equal to the defaults are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{builtin_model, expand_names, ms_to_ns, parse_inventory, us_to_ns};
use super::{INVENTORY_NODES_MAX, NICS_PER_NODE_MAX};
use crate::jurisdiction::Jurisdiction;
use crate::slurm::hostlist;
use crate::topology::{
    standard_mig_profiles, GpuDesc, GpuModelDesc, NicDesc, NodeDesc, SiteDesc, SiteFabric,
    SiteLinkDesc, TopologyDesc, GPUS_PER_NODE_MAX,
};

/// Most nodes in one written node group: a hostlist range holds at most this many names.
const GROUP_NODES_MAX: usize = hostlist::RANGE_HOSTS_MAX as usize;
const _: () = assert!(GROUP_NODES_MAX <= INVENTORY_NODES_MAX);
/// Longest array written on one line (`gpus`, `nics`); longer ones get a line per entry.
const ARRAY_ONE_LINE_CHARS_MAX: usize = 80;

/// Why a description cannot be written as an inventory without changing it. Messages are one
/// line, lower case, and name the model, site, node or link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A GPU model the format cannot declare.
    #[error("gpu model {model:?}: {reason}")]
    Model {
        /// The model's name.
        model: String,
        /// What the format cannot hold.
        reason: String,
    },
    /// A site the format cannot declare.
    #[error("site {site:?}: {reason}")]
    Site {
        /// The site's name.
        site: String,
        /// What the format cannot hold.
        reason: String,
    },
    /// A node the format cannot declare.
    #[error("node {node:?}: {reason}")]
    Node {
        /// The node's name.
        node: String,
        /// What the format cannot hold.
        reason: String,
    },
    /// An inter-site link the format cannot declare.
    #[error("site link {a:?}-{b:?}: {reason}")]
    Link {
        /// One site.
        a: String,
        /// The other site.
        b: String,
        /// What the format cannot hold.
        reason: String,
    },
    /// More nodes than an inventory may hold.
    #[error("{count} nodes, an inventory holds at most {INVENTORY_NODES_MAX}")]
    TooManyNodes {
        /// Nodes in the description.
        count: usize,
    },
    /// The written text does not read back as the description: a bug in this module, reported
    /// rather than written.
    #[error("the written inventory reads back differently ({what}); this is a sovra bug")]
    NotRoundTrip {
        /// The first part that differs.
        what: String,
    },
}

/// Writes `desc` as an inventory that [`parse_inventory`] reads back as an equal description.
/// `header` goes first, as comment lines (say where the description came from).
///
/// What the format cannot hold is an error, never a silent change: GPU models with no memory
/// (Slurm does not say how much a GPU has), nodes with no CPUs or memory, nodes listed out of
/// site order (an inventory lists a site's nodes under that site), names that are not valid
/// hostlist items (whitespace, commas, brackets), duplicate names, and a link from a site to
/// itself.
pub fn write_inventory(desc: &TopologyDesc, header: &str) -> Result<String, WriteError> {
    let declared = check_models(desc)?;
    check_sites(desc)?;
    check_nodes(desc)?;
    check_links(desc)?;

    let mut out = String::new();
    for line in header.lines() {
        let line: String = line
            .chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect();
        out += format!("# {line}").trim_end();
        out.push('\n');
    }
    if !header.is_empty() {
        out.push('\n');
    }
    out += "version = 1\n";
    for model in &desc.models[..declared] {
        write_model(&mut out, model);
    }
    for site in &desc.sites {
        write_site(&mut out, desc, site)?;
    }
    for link in &desc.site_links {
        let rtt_ms = decimal(link.rtt_ns, 1_000_000);
        let (a, b, gbit) = (quoted(&link.a), quoted(&link.b), link.gbit_per_s);
        out += &format!("\n[[link]]\na = {a}\nb = {b}\nrtt_ms = {rtt_ms}\ngbit_per_s = {gbit}\n");
    }

    // Postcondition: the text reads back as the description.
    let back = parse_inventory(&out).map_err(|e| WriteError::NotRoundTrip {
        what: format!("it does not parse: {e}"),
    })?;
    if let Some(what) = first_difference(desc, &back) {
        return Err(WriteError::NotRoundTrip { what });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Checks: what the format cannot hold, found before anything is written.

/// Checks the models and returns how many must be declared: the rest are exactly built-in
/// models, in the order nodes first use them, which the parser adds by itself.
fn check_models(desc: &TopologyDesc) -> Result<usize, WriteError> {
    for (i, m) in desc.models.iter().enumerate() {
        let err = |reason: &str| WriteError::Model {
            model: m.name.clone(),
            reason: reason.to_string(),
        };
        if m.name.trim().is_empty() {
            return Err(err("a model needs a name"));
        }
        if desc.models[..i]
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(&m.name))
        {
            return Err(err("declared twice (model names ignore case)"));
        }
        if m.memory_mib == 0 {
            return Err(err(
                "memory unknown (0 mib); an inventory needs a positive memory_gb or memory_mib",
            ));
        }
        if i64::try_from(m.memory_mib).is_err() {
            return Err(err("memory_mib too large for toml"));
        }
    }
    let mut used: Vec<&str> = Vec::new();
    for gpu in desc.nodes.iter().flat_map(|n| &n.gpus) {
        if !used.contains(&gpu.model.as_str()) {
            used.push(&gpu.model);
        }
    }
    let n = desc.models.len();
    let declared = (0..=n)
        .find(|&k| {
            let (declared, implicit) = desc.models.split_at(k);
            let builtin = |m: &GpuModelDesc| builtin_model(&m.name).as_ref() == Some(m);
            let added_by_parser = used
                .iter()
                .filter(|&&u| !declared.iter().any(|d| d.name == u));
            implicit.iter().all(builtin) && added_by_parser.eq(implicit.iter().map(|m| &m.name))
        })
        .unwrap_or(n);
    Ok(declared)
}

fn check_sites(desc: &TopologyDesc) -> Result<(), WriteError> {
    for (i, s) in desc.sites.iter().enumerate() {
        let err = |reason: String| WriteError::Site {
            site: s.name.clone(),
            reason,
        };
        if s.name.trim().is_empty() {
            return Err(err("a site needs a name".to_string()));
        }
        if desc.sites[..i].iter().any(|x| x.name == s.name) {
            return Err(err("declared twice".to_string()));
        }
        Jurisdiction::parse(&s.jurisdiction).map_err(&err)?;
        if s.fabric.pcie_gbit_per_s == 0 {
            return Err(err(
                "fabric.pcie_gbit_per_s is 0, it must be positive".to_string()
            ));
        }
        for (field, ns) in fabric_fields(&s.fabric) {
            if us_to_ns(reparse(&decimal(ns, 1_000))) != Some(ns) {
                return Err(err(format!(
                    "fabric.{field} of {ns} ns has no exact value in us"
                )));
            }
        }
    }
    Ok(())
}

fn check_nodes(desc: &TopologyDesc) -> Result<(), WriteError> {
    if desc.nodes.len() > INVENTORY_NODES_MAX {
        return Err(WriteError::TooManyNodes {
            count: desc.nodes.len(),
        });
    }
    let site_idx: BTreeMap<&str, usize> = desc
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut last_site = 0;
    for node in &desc.nodes {
        let err = |reason: String| WriteError::Node {
            node: node.name.clone(),
            reason,
        };
        if !hostlist_item(&node.name) {
            return Err(err("the name is not a valid hostlist item".to_string()));
        }
        if !names.insert(&node.name) {
            return Err(err("declared twice".to_string()));
        }
        let Some(&site) = site_idx.get(node.site.as_str()) else {
            return Err(err(format!("unknown site {:?}", node.site)));
        };
        if site < last_site {
            let earlier = &desc.sites[last_site].name;
            return Err(err(format!(
                "listed after nodes of site {earlier:?}; an inventory lists nodes site by site, \
                 in the order of the sites"
            )));
        }
        last_site = site;
        for (what, name) in [("leaf", &node.leaf), ("spine", &node.spine)]
            .into_iter()
            .chain(node.nvlink_domain.as_ref().map(|d| ("nvlink domain", d)))
        {
            if !hostlist_item(name) {
                return Err(err(format!(
                    "{what} name {name:?} is not a valid hostlist item"
                )));
            }
        }
        if node.cpu_milli == 0 {
            return Err(err(
                "no cpus; an inventory needs a positive cpus".to_string()
            ));
        }
        if node.memory_mib == 0 {
            return Err(err(
                "no memory; an inventory needs a positive memory".to_string()
            ));
        }
        if i64::try_from(node.cpu_milli).is_err() || i64::try_from(node.memory_mib).is_err() {
            return Err(err("cpu or memory too large for toml".to_string()));
        }
        if node.gpus.len() > GPUS_PER_NODE_MAX {
            return Err(err(format!(
                "{} gpus, an inventory allows at most {GPUS_PER_NODE_MAX}",
                node.gpus.len()
            )));
        }
        for gpu in &node.gpus {
            let Some(model) = desc.models.iter().find(|m| m.name == gpu.model) else {
                return Err(err(format!(
                    "gpu model {:?} is not one of the description's models",
                    gpu.model
                )));
            };
            if gpu.mig && model.mig_profiles.is_empty() {
                return Err(err(format!(
                    "a gpu in mig mode, but gpu model {:?} is not mig-capable",
                    gpu.model
                )));
            }
        }
        if let Some(nic) = node.nics.iter().find(|n| n.gbit_per_s == 0) {
            return Err(err(format!("nic {:?} has no bandwidth", nic.name)));
        }
    }
    Ok(())
}

fn check_links(desc: &TopologyDesc) -> Result<(), WriteError> {
    for (i, l) in desc.site_links.iter().enumerate() {
        let err = |reason: String| WriteError::Link {
            a: l.a.clone(),
            b: l.b.clone(),
            reason,
        };
        for site in [&l.a, &l.b] {
            if !desc.sites.iter().any(|s| &s.name == site) {
                return Err(err(format!("unknown site {site:?}")));
            }
        }
        if l.a == l.b {
            return Err(err(
                "an inventory link joins two different sites".to_string()
            ));
        }
        if l.gbit_per_s == 0 {
            return Err(err(
                "no bandwidth; an inventory needs a positive one".to_string()
            ));
        }
        if ms_to_ns(reparse(&decimal(l.rtt_ns, 1_000_000))) != Some(l.rtt_ns) {
            return Err(err(format!(
                "rtt of {} ns has no exact value in ms",
                l.rtt_ns
            )));
        }
        let same_pair =
            |x: &&SiteLinkDesc| (x.a == l.a && x.b == l.b) || (x.a == l.b && x.b == l.a);
        if let Some(first) = desc.site_links[..i].iter().find(same_pair) {
            if (first.rtt_ns, first.gbit_per_s) != (l.rtt_ns, l.gbit_per_s) {
                return Err(err(
                    "contradicts an earlier link between the same sites".into()
                ));
            }
        }
    }
    Ok(())
}

/// Whether `name` is one hostlist item that expands to itself (no whitespace, comma, bracket).
fn hostlist_item(name: &str) -> bool {
    expand_names(name).is_ok_and(|names| names.len() == 1 && names[0] == name)
}

// ---------------------------------------------------------------------------------------------
// Writing.

fn write_model(out: &mut String, m: &GpuModelDesc) {
    let builtin = builtin_model(&m.name).is_some();
    *out += &format!("\n[[model]]\nname = {}\n", quoted(&m.name));
    *out += &memory_line(m.memory_mib);
    // A model named like a built-in one inherits what it leaves out: write everything.
    if builtin || m.nvlink_gbit_per_s != 0 {
        *out += &format!("nvlink_gbit_per_s = {}\n", m.nvlink_gbit_per_s);
    }
    if m.mig_profiles.is_empty() {
        if builtin {
            *out += "mig = false\n";
        }
    } else if m.mig_profiles == standard_mig_profiles(m.memory_mib.div_ceil(1024)) {
        *out += "mig = true\n";
    } else {
        *out += "mig_profiles = [\n";
        for p in &m.mig_profiles {
            let (name, c, mem) = (quoted(&p.name), p.compute_slices, p.memory_slices);
            *out +=
                &format!("    {{ name = {name}, compute_slices = {c}, memory_slices = {mem} }},\n");
        }
        *out += "]\n";
    }
}

fn memory_line(memory_mib: u64) -> String {
    if memory_mib % 1024 == 0 {
        format!("memory_gb = {}\n", memory_mib / 1024)
    } else {
        format!("memory_mib = {memory_mib}\n")
    }
}

fn fabric_fields(f: &SiteFabric) -> [(&'static str, u64); 4] {
    [
        ("nvlink_rtt_us", f.nvlink_rtt_ns),
        ("leaf_rtt_us", f.leaf_rtt_ns),
        ("spine_rtt_us", f.spine_rtt_ns),
        ("core_rtt_us", f.core_rtt_ns),
    ]
}

fn write_site(out: &mut String, desc: &TopologyDesc, site: &SiteDesc) -> Result<(), WriteError> {
    let nodes: Vec<&NodeDesc> = desc.nodes.iter().filter(|n| n.site == site.name).collect();
    let gpus: usize = nodes.iter().map(|n| n.gpus.len()).sum();
    *out += &format!(
        "\n# {}: {} nodes, {gpus} gpus\n[[site]]\nname = {}\njurisdiction = {}\n",
        comment_safe(&site.name),
        nodes.len(),
        quoted(&site.name),
        quoted(&site.jurisdiction)
    );
    if !site.region.is_empty() {
        *out += &format!("region = {}\n", quoted(&site.region));
    }
    let defaults = SiteFabric::default();
    let mut fabric: Vec<String> = fabric_fields(&site.fabric)
        .into_iter()
        .zip(fabric_fields(&defaults))
        .filter(|((_, ns), (_, default))| ns != default)
        .map(|((field, ns), _)| format!("{field} = {}", decimal(ns, 1_000)))
        .collect();
    if site.fabric.pcie_gbit_per_s != defaults.pcie_gbit_per_s {
        fabric.push(format!("pcie_gbit_per_s = {}", site.fabric.pcie_gbit_per_s));
    }
    if !fabric.is_empty() {
        *out += &format!("fabric = {{ {} }}\n", fabric.join(", "));
    }
    let mut start = 0;
    while start < nodes.len() {
        let end = group_end(&nodes, start);
        assert!(end > start, "a group holds at least one node");
        write_group(out, &nodes[start..end])?;
        start = end;
    }
    Ok(())
}

/// Consecutive items split into blocks as the parser splits them: runs of one name, each of
/// the first run's length except the last, which may be shorter.
#[derive(Default)]
struct Blocks<'a> {
    names: Vec<&'a str>,
    last_len: usize,
    per: Option<usize>,
}

impl<'a> Blocks<'a> {
    fn accepts(&self, name: &str) -> bool {
        match self.names.last() {
            None => true,
            Some(&last) if last == name => self.per.is_none_or(|per| self.last_len < per),
            Some(_) => self.per.is_none_or(|per| self.last_len == per),
        }
    }

    fn push(&mut self, name: &'a str) {
        assert!(self.accepts(name));
        if self.names.last() == Some(&name) {
            self.last_len += 1;
        } else {
            if !self.names.is_empty() && self.per.is_none() {
                self.per = Some(self.last_len);
            }
            self.names.push(name);
            self.last_len = 1;
        }
    }

    /// Items per block: the first block's length.
    fn per(&self) -> usize {
        self.per.unwrap_or(self.last_len)
    }
}

/// The layout of one node group: its leaves (per node), spines (per leaf block) and NVLink
/// domains (per node, when the nodes have them).
#[derive(Default)]
struct Layout<'a> {
    leaves: Blocks<'a>,
    spines: Blocks<'a>,
    domains: Blocks<'a>,
}

impl<'a> Layout<'a> {
    /// Adds `node` if the group, with it, is still one the parser would lay out the same way.
    fn try_push(&mut self, node: &'a NodeDesc) -> bool {
        let new_leaf = self.leaves.names.last() != Some(&node.leaf.as_str());
        let spine_fits = if new_leaf {
            self.spines.accepts(&node.spine)
        } else {
            self.spines.names.last() == Some(&node.spine.as_str())
        };
        let domain_fits = node
            .nvlink_domain
            .as_deref()
            .is_none_or(|d| self.domains.accepts(d));
        if !(self.leaves.accepts(&node.leaf) && spine_fits && domain_fits) {
            return false;
        }
        self.leaves.push(&node.leaf);
        if new_leaf {
            self.spines.push(&node.spine);
        }
        if let Some(d) = node.nvlink_domain.as_deref() {
            self.domains.push(d);
        }
        true
    }
}

fn same_resources(a: &NodeDesc, b: &NodeDesc) -> bool {
    a.cpu_milli == b.cpu_milli
        && a.memory_mib == b.memory_mib
        && a.gpus == b.gpus
        && a.nics == b.nics
        && a.nvlink_domain.is_some() == b.nvlink_domain.is_some()
}

/// The end of the longest group starting at `start`.
fn group_end(nodes: &[&NodeDesc], start: usize) -> usize {
    let mut layout = Layout::default();
    let mut end = start;
    while end < nodes.len()
        && end - start < GROUP_NODES_MAX
        && same_resources(nodes[start], nodes[end])
        && layout.try_push(nodes[end])
    {
        end += 1;
    }
    end
}

fn write_group(out: &mut String, nodes: &[&NodeDesc]) -> Result<(), WriteError> {
    let first = nodes[0];
    let mut layout = Layout::default();
    for node in nodes {
        let pushed = layout.try_push(node);
        assert!(pushed, "group_end made the group");
    }
    let hostlist_of = |names: &[&str]| {
        hostlist_text(names).ok_or_else(|| WriteError::Node {
            node: first.name.clone(),
            reason: "its group's names cannot be written as a hostlist".to_string(),
        })
    };
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    *out += &format!(
        "\n[[site.nodes]]\nnames = {}\n",
        quoted(&hostlist_of(&names)?)
    );
    let mut blocks = |field: &str, per_field: &str, blocks: &Blocks<'_>| {
        *out += &format!("{field} = {}\n", quoted(&hostlist_of(&blocks.names)?));
        if blocks.names.len() > 1 {
            *out += &format!("{per_field} = {}\n", blocks.per());
        }
        Ok::<(), WriteError>(())
    };
    blocks("leaf", "nodes_per_leaf", &layout.leaves)?;
    blocks("spine", "leaves_per_spine", &layout.spines)?;
    if first.nvlink_domain.is_some() {
        blocks("nvlink_domain", "nodes_per_nvlink_domain", &layout.domains)?;
    }
    if first.cpu_milli % 1000 == 0 {
        *out += &format!("cpus = {}\n", first.cpu_milli / 1000);
    } else {
        *out += &format!("cpu_milli = {}\n", first.cpu_milli);
    }
    *out += &memory_line(first.memory_mib);
    if !first.gpus.is_empty() {
        *out += &format!("gpus = {}\n", gpus_value(&first.gpus));
    }
    if !first.nics.is_empty() {
        *out += &format!("nics = {}\n", nics_value(&first.nics));
    }
    Ok(())
}

/// A hostlist that expands to exactly `names`: compressed when that expands right, else the
/// names joined by commas.
fn hostlist_text(names: &[&str]) -> Option<String> {
    let expands_to_names = |text: &str| expand_names(text).is_ok_and(|e| e == names);
    let compressed = hostlist::compress(names);
    if expands_to_names(&compressed) {
        return Some(compressed);
    }
    let joined = names.join(",");
    expands_to_names(&joined).then_some(joined)
}

/// `"8xH100"`, `"4xH100,4xL40S"`, or an array of `{ model, count, mig }` tables when some GPUs
/// are in MIG mode or a model name does not fit the shorthand.
fn gpus_value(gpus: &[GpuDesc]) -> String {
    // Runs of one model: (model, count, MIG indices within the run).
    let mut runs: Vec<(&str, u32, Vec<u32>)> = Vec::new();
    for gpu in gpus {
        match runs.last_mut() {
            Some((model, count, _)) if *model == gpu.model => *count += 1,
            _ => runs.push((&gpu.model, 1, Vec::new())),
        }
        let (_, count, mig) = runs.last_mut().expect("just pushed");
        if gpu.mig {
            mig.push(*count - 1);
        }
    }
    let plain = |model: &str| {
        !model.is_empty()
            && !model.contains(',')
            && !model.contains(char::is_whitespace)
            && !model.contains(|c: char| c.is_control())
    };
    if runs
        .iter()
        .all(|(model, _, mig)| mig.is_empty() && plain(model))
    {
        let items: Vec<String> = runs.iter().map(|(m, c, _)| format!("{c}x{m}")).collect();
        return quoted(&items.join(","));
    }
    let entries: Vec<String> = runs
        .iter()
        .map(|(model, count, mig)| {
            let mig = match mig.len() {
                0 => String::new(),
                n if n == *count as usize => ", mig = true".to_string(),
                _ => {
                    let indices: Vec<String> = mig.iter().map(u32::to_string).collect();
                    format!(", mig = [{}]", indices.join(", "))
                }
            };
            format!("{{ model = {}, count = {count}{mig} }}", quoted(model))
        })
        .collect();
    array(&entries)
}

/// `"4x400"` or `"2x400,1x100"` when the NICs are named `nic0`, `nic1`, … in order, else an
/// array of `{ name, gbit_per_s }` tables.
fn nics_value(nics: &[NicDesc]) -> String {
    let auto_named = nics
        .iter()
        .enumerate()
        .all(|(i, n)| n.name == format!("nic{i}"));
    if auto_named && nics.len() <= NICS_PER_NODE_MAX {
        let mut runs: Vec<(u32, usize)> = Vec::new();
        for nic in nics {
            match runs.last_mut() {
                Some((gbit, count)) if *gbit == nic.gbit_per_s => *count += 1,
                _ => runs.push((nic.gbit_per_s, 1)),
            }
        }
        let items: Vec<String> = runs.iter().map(|(g, c)| format!("{c}x{g}")).collect();
        return quoted(&items.join(","));
    }
    let entries: Vec<String> = nics
        .iter()
        .map(|n| {
            format!(
                "{{ name = {}, gbit_per_s = {} }}",
                quoted(&n.name),
                n.gbit_per_s
            )
        })
        .collect();
    array(&entries)
}

/// A TOML array: on one line when it is short, else one entry per line.
fn array(entries: &[String]) -> String {
    let one_line = format!("[{}]", entries.join(", "));
    if one_line.len() <= ARRAY_ONE_LINE_CHARS_MAX {
        return one_line;
    }
    let mut out = "[\n".to_string();
    for entry in entries {
        out += &format!("    {entry},\n");
    }
    out + "]"
}

/// `ns` in units of `ns_per_unit` as a TOML number: an integer when exact, else the shortest
/// float that reads back as the same f64.
fn decimal(ns: u64, ns_per_unit: u64) -> String {
    if ns % ns_per_unit == 0 {
        return (ns / ns_per_unit).to_string();
    }
    let text = (ns as f64 / ns_per_unit as f64).to_string();
    if text.contains('.') {
        text
    } else {
        text + ".0"
    }
}

/// The f64 that the TOML reader makes of a number written by [`decimal`].
fn reparse(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\t' => out += "\\t",
            '\r' => out += "\\r",
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The first part in which two descriptions differ, named for an error message.
fn first_difference(a: &TopologyDesc, b: &TopologyDesc) -> Option<String> {
    fn first<T: PartialEq>(
        what: &str,
        a: &[T],
        b: &[T],
        name: impl Fn(&T) -> String,
    ) -> Option<String> {
        if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
            return Some(format!("{what} {}", name(&a[i])));
        }
        (a.len() != b.len()).then(|| format!("{what} count {} vs {}", a.len(), b.len()))
    }
    first("gpu model", &a.models, &b.models, |m| {
        format!("{:?}", m.name)
    })
    .or_else(|| first("site", &a.sites, &b.sites, |s| format!("{:?}", s.name)))
    .or_else(|| first("node", &a.nodes, &b.nodes, |n| format!("{:?}", n.name)))
    .or_else(|| {
        first("link", &a.site_links, &b.site_links, |l| {
            format!("{}-{}", l.a, l.b)
        })
    })
}

#[cfg(test)]
mod tests;
