//! The three parsers: `slurm.conf`, `topology.conf`, `gres.conf`.
//!
//! Each walks the logical lines ([`lexer`]), splits a line into global pairs and a record (the
//! pairs from the first record key on), and checks values as it reads them, so that every
//! error carries its line.

use std::collections::BTreeMap;

use super::hostlist::{self, quote};
use super::lexer::{self, Statement};
use super::{
    BlockConf, ConfFile, GresConf, GresConfEntry, GresSpec, NodeConf, PartitionConf,
    PartitionNodes, SlurmConf, SlurmImportError, SlurmTopology, SwitchConf, TimeLimit,
    EXPANDED_NAMES_MAX, NODES_MAX,
};

/// One `Key=Value` with the line it was written on (defaults come from earlier lines).
#[derive(Clone, Debug)]
struct Attr {
    line: usize,
    key: String,
    value: String,
}

impl Attr {
    fn is(&self, key: &str) -> bool {
        self.key.eq_ignore_ascii_case(key)
    }
}

/// A logical line, split at its record key.
struct SplitLine {
    number: usize,
    /// Pairs before the record key.
    globals: Vec<Attr>,
    /// The record key and everything after it.
    record: Option<(Attr, Vec<Attr>)>,
}

/// Reads lines into [`SplitLine`]s; `include` paths go to `includes`.
fn split_lines(
    file: ConfFile,
    text: &str,
    record_keys: &[&str],
    includes: &mut Vec<String>,
) -> Result<Vec<SplitLine>, SlurmImportError> {
    let mut out = Vec::new();
    for line in lexer::logical_lines(text) {
        let number = line.number;
        let pairs = match lexer::statement(&line.text) {
            Ok(Statement::Include(path)) => {
                includes.push(path);
                continue;
            }
            Ok(Statement::Pairs(pairs)) => pairs,
            Err(message) => {
                return Err(SlurmImportError::Line {
                    file,
                    line: number,
                    message,
                })
            }
        };
        let mut attrs = pairs.into_iter().map(|p| Attr {
            line: number,
            key: p.key,
            value: p.value,
        });
        let mut globals = Vec::new();
        let mut record = None;
        for attr in attrs.by_ref() {
            if record_keys.iter().any(|k| attr.is(k)) {
                record = Some(attr);
                break;
            }
            globals.push(attr);
        }
        out.push(SplitLine {
            number,
            globals,
            record: record.map(|head| (head, attrs.collect())),
        });
    }
    Ok(out)
}

/// `base` with `over` laid on top, key by key (case-insensitive); later keys win.
fn overlay(base: &[Attr], over: &[Attr]) -> Vec<Attr> {
    let mut out: Vec<Attr> = Vec::with_capacity(base.len() + over.len());
    let mut slots: BTreeMap<String, usize> = BTreeMap::new();
    for attr in base.iter().chain(over) {
        match slots.get(&attr.key.to_ascii_lowercase()) {
            Some(&slot) => out[slot] = attr.clone(),
            None => {
                slots.insert(attr.key.to_ascii_lowercase(), out.len());
                out.push(attr.clone());
            }
        }
    }
    out
}

/// Counts the names a file's hostlists expand to, against [`EXPANDED_NAMES_MAX`].
struct Budget {
    file: ConfFile,
    used: usize,
}

impl Budget {
    fn new(file: ConfFile) -> Budget {
        Budget { file, used: 0 }
    }

    fn expand(&mut self, attr: &Attr) -> Result<Vec<String>, SlurmImportError> {
        let names = expand(self.file, attr)?;
        self.used = self.used.saturating_add(names.len());
        if self.used > EXPANDED_NAMES_MAX {
            let message =
                format!("hostlists expand to more than {EXPANDED_NAMES_MAX} names in all");
            return Err(line_error(self.file, attr.line, message));
        }
        Ok(names)
    }
}

fn line_error(file: ConfFile, line: usize, message: String) -> SlurmImportError {
    SlurmImportError::Line {
        file,
        line,
        message,
    }
}

fn number<T: std::str::FromStr>(file: ConfFile, attr: &Attr) -> Result<T, SlurmImportError> {
    let digits = !attr.value.is_empty() && attr.value.bytes().all(|b| b.is_ascii_digit());
    match attr.value.parse::<T>() {
        Ok(n) if digits => Ok(n),
        _ => Err(line_error(
            file,
            attr.line,
            format!(
                "{}={}: expected a whole number in range",
                attr.key,
                quote(&attr.value)
            ),
        )),
    }
}

fn expand(file: ConfFile, attr: &Attr) -> Result<Vec<String>, SlurmImportError> {
    hostlist::expand(&attr.value)
        .map_err(|e| line_error(file, attr.line, format!("{}: {e}", attr.key)))
}

/// A count with an optional binary suffix (`8`, `4G`). `None`: not count-shaped.
fn count(text: &str) -> Option<Result<u64, String>> {
    let split = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    let too_large = || format!("count {} is too large", quote(text));
    let n = digits.parse::<u64>().map_err(|_| too_large());
    Some(n.and_then(|n| n.checked_mul(1u64 << shift).ok_or_else(too_large)))
}

/// Parses a `Gres=` value: `gpu:a100:8,gpu:v100:2(S:0-1),nvme:no_consume:1`.
fn gres_list(value: &str) -> Result<Vec<GresSpec>, String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    let mut specs = Vec::new();
    for item in items {
        let invalid = |why: &str| format!("Gres item {}: {why}", quote(item));
        // A socket binding such as `(S:0-1)` may follow; sovra does not use it.
        let spec = match item.find('(') {
            Some(open) if item.ends_with(')') => &item[..open],
            Some(_) => return Err(invalid("unbalanced parentheses")),
            None => item,
        };
        let mut fields: Vec<&str> = spec.split(':').collect();
        let name = fields.remove(0);
        if name.is_empty() || fields.iter().any(|f| f.is_empty()) {
            return Err(invalid("expected name[:type][:no_consume][:count]"));
        }
        let mut n = 1;
        if let Some(parsed) = fields.last().and_then(|last| count(last)) {
            n = parsed.map_err(|e| invalid(&e))?;
            fields.pop();
        }
        let (mut type_name, mut no_consume) = (None, false);
        for field in fields {
            if field.eq_ignore_ascii_case("no_consume") {
                no_consume = true;
            } else if type_name.is_none() {
                type_name = Some(field.to_string());
            } else {
                return Err(invalid("expected name[:type][:no_consume][:count]"));
            }
        }
        specs.push(GresSpec {
            name: name.to_string(),
            type_name,
            count: n,
            no_consume,
        });
    }
    Ok(specs)
}

fn boolean(file: ConfFile, attr: &Attr) -> Result<bool, SlurmImportError> {
    match attr.value.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "up" | "1" => Ok(true),
        "no" | "n" | "false" | "down" | "0" => Ok(false),
        _ => Err(line_error(
            file,
            attr.line,
            format!("{}={}: expected YES or NO", attr.key, quote(&attr.value)),
        )),
    }
}

/// Parses a Slurm time limit: `INFINITE`, minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
/// `D-HH:MM:SS`.
fn time_limit(text: &str) -> Option<TimeLimit> {
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "infinite" | "unlimited" | "-1") {
        return Some(TimeLimit::Infinite);
    }
    let field = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (Some(field(days)?), clock),
        None => (None, text),
    };
    let parts: Vec<u64> = clock.split(':').map(field).collect::<Option<_>>()?;
    let (h, m, s) = match (days.is_some(), parts.as_slice()) {
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        (_, [h, m, s]) => (*h, *m, *s),
        (false, [m]) => (0, *m, 0),
        (false, [m, s]) => (0, *m, *s),
        _ => return None,
    };
    let seconds = days
        .unwrap_or(0)
        .checked_mul(86_400)?
        .checked_add(h.checked_mul(3_600)?)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(s)?;
    Some(TimeLimit::Minutes(seconds.div_ceil(60)))
}

// ---------------------------------------------------------------------------------------------
// slurm.conf

/// Record keys of `slurm.conf`: the rest of the line belongs to them.
const SLURM_RECORDS: [&str; 5] = [
    "NodeName",
    "PartitionName",
    "NodeSet",
    "DownNodes",
    "FrontendName",
];

pub(super) fn slurm_conf(text: &str) -> Result<SlurmConf, SlurmImportError> {
    const FILE: ConfFile = ConfFile::SlurmConf;
    let mut conf = SlurmConf::default();
    let lines = split_lines(FILE, text, &SLURM_RECORDS, &mut conf.includes)?;
    let mut node_defaults: Vec<Attr> = Vec::new();
    let mut partition_defaults: Vec<Attr> = Vec::new();
    let mut node_lines: BTreeMap<String, usize> = BTreeMap::new();
    let mut partition_lines: BTreeMap<String, usize> = BTreeMap::new();
    let mut budget = Budget::new(FILE);
    for line in lines {
        for attr in line.globals {
            if attr.is("ClusterName") {
                conf.cluster_name = Some(attr.value.to_ascii_lowercase());
            } else {
                conf.globals.push((attr.key, attr.value));
            }
        }
        let Some((head, attrs)) = line.record else {
            continue;
        };
        let is_default = head.value.eq_ignore_ascii_case("DEFAULT");
        if head.is("NodeName") && is_default {
            node_defaults = overlay(&node_defaults, &attrs);
        } else if head.is("NodeName") {
            let node = node_conf(&mut budget, &head, &overlay(&node_defaults, &attrs))?;
            for name in &node.names {
                if let Some(first) = node_lines.insert(name.clone(), line.number) {
                    let message = format!("node {name} is already defined on line {first}");
                    return Err(line_error(FILE, line.number, message));
                }
            }
            if node_lines.len() > NODES_MAX {
                let message = format!("more than {NODES_MAX} nodes");
                return Err(line_error(FILE, line.number, message));
            }
            conf.nodes.push(node);
        } else if head.is("PartitionName") && is_default {
            partition_defaults = overlay(&partition_defaults, &attrs);
        } else if head.is("PartitionName") {
            let attrs = overlay(&partition_defaults, &attrs);
            let partition = partition_conf(&mut budget, &head, &attrs)?;
            if let Some(first) = partition_lines.insert(partition.name.clone(), line.number) {
                let message = format!(
                    "partition {} is already defined on line {first}",
                    quote(&partition.name)
                );
                return Err(line_error(FILE, line.number, message));
            }
            conf.partitions.push(partition);
        } else {
            // NodeSet, DownNodes, FrontendName: kept as written, not interpreted.
            conf.globals.push((head.key, head.value));
            conf.globals
                .extend(attrs.into_iter().map(|a| (a.key, a.value)));
        }
    }
    Ok(conf)
}

fn node_conf(
    budget: &mut Budget,
    head: &Attr,
    attrs: &[Attr],
) -> Result<NodeConf, SlurmImportError> {
    const FILE: ConfFile = ConfFile::SlurmConf;
    let names = budget.expand(head)?;
    if names.is_empty() {
        return Err(line_error(FILE, head.line, "NodeName is empty".to_string()));
    }
    let mut node = NodeConf {
        line: head.line,
        names_expr: head.value.clone(),
        names,
        cpus: None,
        boards: None,
        sockets: None,
        sockets_per_board: None,
        cores_per_socket: None,
        threads_per_core: None,
        real_memory_mib: None,
        gres: Vec::new(),
        features: Vec::new(),
        weight: None,
        state: None,
        attrs: Vec::new(),
    };
    for attr in attrs {
        match attr.key.to_ascii_lowercase().as_str() {
            "cpus" | "procs" => node.cpus = Some(number(FILE, attr)?),
            "boards" => node.boards = Some(number(FILE, attr)?),
            "sockets" => node.sockets = Some(number(FILE, attr)?),
            "socketsperboard" => node.sockets_per_board = Some(number(FILE, attr)?),
            "corespersocket" => node.cores_per_socket = Some(number(FILE, attr)?),
            "threadspercore" => node.threads_per_core = Some(number(FILE, attr)?),
            "realmemory" => node.real_memory_mib = Some(number(FILE, attr)?),
            "weight" => node.weight = Some(number(FILE, attr)?),
            "gres" => {
                node.gres = gres_list(&attr.value).map_err(|m| line_error(FILE, attr.line, m))?;
            }
            "feature" | "features" => {
                node.features = attr
                    .value
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "state" => node.state = Some(attr.value.clone()),
            _ => node.attrs.push((attr.key.clone(), attr.value.clone())),
        }
    }
    Ok(node)
}

fn partition_conf(
    budget: &mut Budget,
    head: &Attr,
    attrs: &[Attr],
) -> Result<PartitionConf, SlurmImportError> {
    const FILE: ConfFile = ConfFile::SlurmConf;
    if head.value.is_empty() {
        return Err(line_error(
            FILE,
            head.line,
            "PartitionName is empty".to_string(),
        ));
    }
    let mut partition = PartitionConf {
        line: head.line,
        name: head.value.clone(),
        nodes: PartitionNodes::Names(Vec::new()),
        default: false,
        max_time: None,
        state: None,
        attrs: Vec::new(),
    };
    for attr in attrs {
        match attr.key.to_ascii_lowercase().as_str() {
            "nodes" if attr.value.eq_ignore_ascii_case("ALL") => {
                partition.nodes = PartitionNodes::All;
            }
            "nodes" => partition.nodes = PartitionNodes::Names(budget.expand(attr)?),
            "default" => partition.default = boolean(FILE, attr)?,
            "maxtime" => {
                let limit = time_limit(&attr.value).ok_or_else(|| {
                    let message = format!(
                        "MaxTime={}: expected minutes, [D-]HH:MM:SS or INFINITE",
                        quote(&attr.value)
                    );
                    line_error(FILE, attr.line, message)
                })?;
                partition.max_time = Some(limit);
            }
            "state" => partition.state = Some(attr.value.clone()),
            _ => partition.attrs.push((attr.key.clone(), attr.value.clone())),
        }
    }
    Ok(partition)
}

// ---------------------------------------------------------------------------------------------
// topology.conf

const TOPOLOGY_RECORDS: [&str; 3] = ["SwitchName", "BlockName", "RingName"];

pub(super) fn topology_conf(text: &str) -> Result<SlurmTopology, SlurmImportError> {
    const FILE: ConfFile = ConfFile::TopologyConf;
    let mut includes = Vec::new();
    let lines = split_lines(FILE, text, &TOPOLOGY_RECORDS, &mut includes)?;
    let mut switches: Vec<SwitchConf> = Vec::new();
    let mut blocks: Vec<BlockConf> = Vec::new();
    let mut block_sizes: Option<(usize, Vec<u32>)> = None;
    let mut budget = Budget::new(FILE);
    for line in lines {
        for attr in &line.globals {
            if !attr.is("BlockSizes") {
                let message = format!("unknown key {}", attr.key);
                return Err(line_error(FILE, attr.line, message));
            }
            let sizes = parse_block_sizes(&attr.value)
                .map_err(|m| line_error(FILE, attr.line, format!("BlockSizes: {m}")))?;
            block_sizes = Some((attr.line, sizes));
        }
        let Some((head, attrs)) = line.record else {
            continue;
        };
        if head.value.is_empty() {
            return Err(line_error(
                FILE,
                head.line,
                format!("{} is empty", head.key),
            ));
        }
        let (mut nodes, mut children, mut link_speed) = (None, None, None);
        for attr in &attrs {
            match attr.key.to_ascii_lowercase().as_str() {
                "nodes" => nodes = Some(budget.expand(attr)?),
                "switches" if head.is("SwitchName") => children = Some(budget.expand(attr)?),
                "linkspeed" if head.is("SwitchName") => link_speed = Some(number(FILE, attr)?),
                _ => {
                    let message = format!("unknown key {} on a {} line", attr.key, head.key);
                    return Err(line_error(FILE, attr.line, message));
                }
            }
        }
        if head.is("RingName") {
            let message = "ring topologies (RingName) are not supported".to_string();
            return Err(line_error(FILE, head.line, message));
        }
        if head.is("SwitchName") {
            if !blocks.is_empty() {
                let message = "SwitchName lines cannot be mixed with BlockName lines".to_string();
                return Err(line_error(FILE, head.line, message));
            }
            if nodes.is_some() && children.is_some() {
                let message = format!("switch {} has both Nodes and Switches", head.value);
                return Err(line_error(FILE, head.line, message));
            }
            switches.push(SwitchConf {
                line: head.line,
                name: head.value.clone(),
                nodes: dedup(nodes.unwrap_or_default()),
                switches: children.unwrap_or_default(),
                link_speed,
            });
        } else {
            if !switches.is_empty() {
                let message = "BlockName lines cannot be mixed with SwitchName lines".to_string();
                return Err(line_error(FILE, head.line, message));
            }
            let Some(nodes) = nodes else {
                let message = format!("block {} has no Nodes", head.value);
                return Err(line_error(FILE, head.line, message));
            };
            blocks.push(BlockConf {
                line: head.line,
                name: head.value.clone(),
                nodes: dedup(nodes),
            });
        }
    }
    if let Some(path) = includes.first() {
        let message = format!("include {} is not supported in topology.conf", quote(path));
        return Err(SlurmImportError::File {
            file: FILE,
            message,
        });
    }
    if !switches.is_empty() {
        if let Some((line, _)) = block_sizes {
            let message = "BlockSizes needs BlockName lines, not SwitchName lines".to_string();
            return Err(line_error(FILE, line, message));
        }
        check_tree(&switches)?;
        return Ok(SlurmTopology::Tree { switches });
    }
    if !blocks.is_empty() {
        check_unique(
            FILE,
            "block",
            blocks.iter().map(|b| (b.line, &b.name, &b.nodes)),
        )?;
        let block_sizes = block_sizes.map(|(_, sizes)| sizes).unwrap_or_default();
        return Ok(SlurmTopology::Block {
            blocks,
            block_sizes,
        });
    }
    let message = "no SwitchName or BlockName lines".to_string();
    Err(SlurmImportError::File {
        file: FILE,
        message,
    })
}

/// Drops repeated names, keeping the first of each.
fn dedup(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// `BlockSizes=18,36,72`: positive; each a power-of-two multiple (at most 2^15) of the first.
fn parse_block_sizes(value: &str) -> Result<Vec<u32>, String> {
    let mut sizes: Vec<u32> = Vec::new();
    for item in value.split(',') {
        let size = item
            .parse::<u32>()
            .ok()
            .filter(|&s| s > 0 && item.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{} is not a positive whole number", quote(item)))?;
        let base = *sizes.first().unwrap_or(&size);
        let ratio = size / base;
        if size % base != 0 || !ratio.is_power_of_two() || ratio > 1 << 15 {
            return Err(format!(
                "{size} is not a power-of-two multiple of the base size {base}"
            ));
        }
        sizes.push(size);
    }
    Ok(sizes)
}

/// Unique names; each node under one of the (switches or blocks) that list nodes.
fn check_unique<'a>(
    file: ConfFile,
    what: &str,
    items: impl Iterator<Item = (usize, &'a String, &'a Vec<String>)>,
) -> Result<(), SlurmImportError> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut homes: BTreeMap<&str, &str> = BTreeMap::new();
    for (line, name, nodes) in items {
        if let Some(first) = names.insert(name, line) {
            let message = format!("{what} {name} is already defined on line {first}");
            return Err(line_error(file, line, message));
        }
        for node in nodes {
            if let Some(other) = homes.insert(node, name) {
                let message =
                    format!("node {node} is in {what} {other} and {what} {name}; sovra needs one");
                return Err(line_error(file, line, message));
            }
        }
    }
    Ok(())
}

/// The switches form a forest: known children, one parent each, no cycles.
fn check_tree(switches: &[SwitchConf]) -> Result<(), SlurmImportError> {
    const FILE: ConfFile = ConfFile::TopologyConf;
    check_unique(
        FILE,
        "switch",
        switches.iter().map(|s| (s.line, &s.name, &s.nodes)),
    )?;
    let index: BTreeMap<&str, usize> = switches
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut parent: Vec<Option<usize>> = vec![None; switches.len()];
    for (i, s) in switches.iter().enumerate() {
        for child in &s.switches {
            let Some(&c) = index.get(child.as_str()) else {
                let message = format!("switch {}: unknown child switch {child}", s.name);
                return Err(line_error(FILE, s.line, message));
            };
            if c == i {
                let message = format!("switch {} lists itself as a child", s.name);
                return Err(line_error(FILE, s.line, message));
            }
            if let Some(p) = parent[c].filter(|&p| p != i) {
                let message = format!(
                    "switch {child} is a child of both {} and {}; sovra needs a tree",
                    switches[p].name, s.name
                );
                return Err(line_error(FILE, s.line, message));
            }
            parent[c] = Some(i);
        }
    }
    // With one parent each, a cycle is a walk up that never ends.
    for (i, s) in switches.iter().enumerate() {
        let mut at = i;
        for _ in 0..=switches.len() {
            match parent[at] {
                Some(p) if p == i => {
                    let message = format!("switch {} is its own ancestor", s.name);
                    return Err(line_error(FILE, s.line, message));
                }
                Some(p) => at = p,
                None => break,
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// gres.conf

const GRES_KEYS: [&str; 12] = [
    "NodeName",
    "Name",
    "Type",
    "File",
    "Count",
    "Cores",
    "CPUs",
    "Links",
    "Flags",
    "AutoDetect",
    "MultipleFiles",
    "CoreSpecCount",
];

pub(super) fn gres_conf(text: &str) -> Result<GresConf, SlurmImportError> {
    const FILE: ConfFile = ConfFile::GresConf;
    let mut conf = GresConf::default();
    let mut includes = Vec::new();
    let mut budget = Budget::new(FILE);
    for line in split_lines(FILE, text, &[], &mut includes)? {
        let attrs = line.globals;
        if let Some(attr) = attrs.iter().find(|a| !GRES_KEYS.iter().any(|k| a.is(k))) {
            let message = format!("unknown key {}", attr.key);
            return Err(line_error(FILE, attr.line, message));
        }
        let get = |key: &str| attrs.iter().rev().find(|a| a.is(key));
        let nodes = get("NodeName").map(|a| budget.expand(a)).transpose()?;
        if let Some(mode) = get("AutoDetect") {
            conf.autodetect.push((nodes.clone(), mode.value.clone()));
        }
        let Some(name) = get("Name") else {
            if get("AutoDetect").is_none() {
                let message = "expected Name= (or AutoDetect=)".to_string();
                return Err(line_error(FILE, line.number, message));
            }
            continue;
        };
        if name.value.is_empty() {
            return Err(line_error(FILE, line.number, "Name is empty".to_string()));
        }
        let files = get("File")
            .map(|a| budget.expand(a))
            .transpose()?
            .unwrap_or_default();
        let count = match get("Count") {
            Some(attr) => match count(&attr.value) {
                Some(Ok(n)) => n,
                Some(Err(message)) => return Err(line_error(FILE, attr.line, message)),
                None => {
                    let message = format!(
                        "Count={}: expected a count like 8 or 4G",
                        quote(&attr.value)
                    );
                    return Err(line_error(FILE, attr.line, message));
                }
            },
            None if !files.is_empty() => files.len() as u64,
            None => 1,
        };
        conf.entries.push(GresConfEntry {
            line: line.number,
            nodes,
            name: name.value.clone(),
            type_name: get("Type").map(|a| a.value.clone()),
            count,
            files,
        });
    }
    if let Some(path) = includes.first() {
        let message = format!("include {} is not supported in gres.conf", quote(path));
        return Err(SlurmImportError::File {
            file: FILE,
            message,
        });
    }
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn gres_items() {
        let cases = [
            "gpu:a100:8",
            "gpu:8",
            "gpu",
            "gpu:a100",
            "gpu:a100:4(S:0-1),gpu:v100:2(S:0,1),nvme:no_consume:1",
            "bandwidth:lustre:no_consume:4G",
            "gpu:0",
            "gpu::8",
            "gpu:a:b:8",
            "gpu:8(S:0",
            "gpu:99999999999999999999",
            "gpu:1P",
            "gpu:16384P",
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|c| format!("{c} => {:?}", gres_list(c)))
            .collect();
        expect![[r#"
            gpu:a100:8 => Ok([GresSpec { name: "gpu", type_name: Some("a100"), count: 8, no_consume: false }])
            gpu:8 => Ok([GresSpec { name: "gpu", type_name: None, count: 8, no_consume: false }])
            gpu => Ok([GresSpec { name: "gpu", type_name: None, count: 1, no_consume: false }])
            gpu:a100 => Ok([GresSpec { name: "gpu", type_name: Some("a100"), count: 1, no_consume: false }])
            gpu:a100:4(S:0-1),gpu:v100:2(S:0,1),nvme:no_consume:1 => Ok([GresSpec { name: "gpu", type_name: Some("a100"), count: 4, no_consume: false }, GresSpec { name: "gpu", type_name: Some("v100"), count: 2, no_consume: false }, GresSpec { name: "nvme", type_name: None, count: 1, no_consume: true }])
            bandwidth:lustre:no_consume:4G => Ok([GresSpec { name: "bandwidth", type_name: Some("lustre"), count: 4294967296, no_consume: true }])
            gpu:0 => Ok([GresSpec { name: "gpu", type_name: None, count: 0, no_consume: false }])
            gpu::8 => Err("Gres item \"gpu::8\": expected name[:type][:no_consume][:count]")
            gpu:a:b:8 => Err("Gres item \"gpu:a:b:8\": expected name[:type][:no_consume][:count]")
            gpu:8(S:0 => Err("Gres item \"gpu:8(S:0\": unbalanced parentheses")
            gpu:99999999999999999999 => Err("Gres item \"gpu:99999999999999999999\": count \"99999999999999999999\" is too large")
            gpu:1P => Ok([GresSpec { name: "gpu", type_name: None, count: 1125899906842624, no_consume: false }])
            gpu:16384P => Err("Gres item \"gpu:16384P\": count \"16384P\" is too large")
        "#]]
        .assert_eq(&(out.join("\n") + "\n"));
    }

    #[test]
    fn time_limits() {
        let cases = [
            "INFINITE",
            "unlimited",
            "-1",
            "30",
            "30:01",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:01",
            "0",
            "",
            "1-",
            "a",
            "1:2:3:4",
            "1-2:3:4:5",
            "-5",
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|c| format!("{c:?} => {:?}", time_limit(c)))
            .collect();
        expect![[r#"
            "INFINITE" => Some(Infinite)
            "unlimited" => Some(Infinite)
            "-1" => Some(Infinite)
            "30" => Some(Minutes(30))
            "30:01" => Some(Minutes(31))
            "2:00:00" => Some(Minutes(120))
            "1-12" => Some(Minutes(2160))
            "1-12:30" => Some(Minutes(2190))
            "1-12:30:01" => Some(Minutes(2191))
            "0" => Some(Minutes(0))
            "" => None
            "1-" => None
            "a" => None
            "1:2:3:4" => None
            "1-2:3:4:5" => None
            "-5" => None
        "#]]
        .assert_eq(&(out.join("\n") + "\n"));
    }

    #[test]
    fn block_sizes() {
        let cases = [
            "18,36,72", "30,120", "30,90", "8", "0", "a", "4,4", "1,65536", "1,131072",
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|c| format!("{c} => {:?}", parse_block_sizes(c)))
            .collect();
        expect![[r#"
            18,36,72 => Ok([18, 36, 72])
            30,120 => Ok([30, 120])
            30,90 => Err("90 is not a power-of-two multiple of the base size 30")
            8 => Ok([8])
            0 => Err("\"0\" is not a positive whole number")
            a => Err("\"a\" is not a positive whole number")
            4,4 => Ok([4, 4])
            1,65536 => Err("65536 is not a power-of-two multiple of the base size 1")
            1,131072 => Err("131072 is not a power-of-two multiple of the base size 1")
        "#]]
        .assert_eq(&(out.join("\n") + "\n"));
    }
}
