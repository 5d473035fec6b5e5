//! `sinfo`: partition and node summaries over [`super::model::View`], as Slurm 22.05
//! prints them.
//!
//! Sources (SchedMD/slurm, 22.05): `src/sinfo/opts.c` (options, `SINFO_*` variables, the
//! default formats of plain, `-l`, `-N`, `-N -l`, `-R`, `-R -l` and `-s`), `src/sinfo/print.c`
//! (headers, `_print_str`, `_print_secs`, the `*` of the default partition),
//! `src/sinfo/sinfo.c` (nodes of one partition fold into one line when every printed
//! per-node field is equal; without a partition field each node is counted once),
//! `src/sinfo/sort.c` (default sort `#P,-t`, or `N` with `-N`), and
//! `src/common/slurm_protocol_defs.c` (node state names).
//!
//! Where the model is thinner than Slurm:
//! - Node states carry only the `*` (not responding) suffix; `~ # ! % $ @ ^ -` never occur.
//! - `S:C:T` is printed `1:<cpus>:1` (no socket or thread counts in the model).
//! - `%U` prints the user name without `(uid)`.
//! - `-i` prints once, under the date line.
//! - Unknown nodes count as "other" in `NODES(A/I/O/T)`.

use std::collections::BTreeMap;

use sovra_fabric::slurm::hostlist;

use super::model::{Node, NodeState, Output, Partition, View};
use super::squeue::{
    convert_num_unit, ctime_str, fmt_field, getopt, make_time_str, print_secs, split_list, ArgKind,
    OptSpec, Parsed, SLURM_VERSION,
};

/// Widths above this are clamped (see `squeue`).
const WIDTH_MAX: usize = 4096;

/// `%#P` and `%#N` are at least this wide (the width of `PARTITION`).
const MIN_FIELD_SIZE: usize = 9;

/// Width of a field: a number, or `#` for the widest partition or node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    Fixed(usize),
    Widest,
}

struct Spec {
    letter: char,
    width: Width,
    right: bool,
    suffix: String,
    /// An invalid specification, printed back literally (in `suffix`).
    literal: bool,
}

/// Long names of `-O` and their letters (`sinfo/opts.c` `_parse_long_format`).
const LONG_FIELDS: &[(&str, char)] = &[
    ("available", 'a'),
    ("nodeai", 'A'),
    ("featuresact", 'b'),
    ("maxcpuspernode", 'B'),
    ("cpus", 'c'),
    ("cpusstate", 'C'),
    ("disk", 'd'),
    ("nodes", 'D'),
    ("freemem", 'e'),
    ("reason", 'E'),
    ("features", 'f'),
    ("nodeaiot", 'F'),
    ("groups", 'g'),
    ("gres", 'G'),
    ("oversubscribe", 'h'),
    ("timestamp", 'H'),
    ("priorityjobfactor", 'I'),
    ("time", 'l'),
    ("defaulttime", 'L'),
    ("memory", 'm'),
    ("preemptmode", 'M'),
    ("nodehost", 'n'),
    ("nodelist", 'N'),
    ("nodeaddr", 'o'),
    ("cpusload", 'O'),
    ("prioritytier", 'p'),
    ("partition", 'P'),
    ("root", 'r'),
    ("partitionname", 'R'),
    ("size", 's'),
    ("allocnodes", 'S'),
    ("statecompact", 't'),
    ("statelong", 'T'),
    ("user", 'u'),
    ("userlong", 'U'),
    ("version", 'v'),
    ("cluster", 'V'),
    ("weight", 'w'),
    ("sockets", 'X'),
    ("cores", 'Y'),
    ("threads", 'Z'),
    ("socketcorethread", 'z'),
];

fn header(c: char) -> &'static str {
    match c {
        'a' => "AVAIL",
        'A' => "NODES(A/I)",
        'b' => "ACTIVE_FEATURES",
        'B' => "MAX_CPUS_PER_NODE",
        'c' => "CPUS",
        'C' => "CPUS(A/I/O/T)",
        'd' => "TMP_DISK",
        'D' => "NODES",
        'e' => "FREE_MEM",
        'E' => "REASON",
        'f' => "AVAIL_FEATURES",
        'F' => "NODES(A/I/O/T)",
        'g' => "GROUPS",
        'G' => "GRES",
        'h' => "OVERSUBSCRIBE",
        'H' => "TIMESTAMP",
        'I' => "PRIO_JOB_FACTOR",
        'l' => "TIMELIMIT",
        'L' => "DEFAULTTIME",
        'm' => "MEMORY",
        'M' => "PREEMPT_MODE",
        'n' => "HOSTNAMES",
        'N' => "NODELIST",
        'o' => "NODE_ADDR",
        'O' => "CPU_LOAD",
        'p' => "PRIO_TIER",
        'P' | 'R' => "PARTITION",
        'r' => "ROOT",
        's' => "JOB_SIZE",
        'S' => "ALLOCNODES",
        't' | 'T' => "STATE",
        'u' | 'U' => "USER",
        'v' => "VERSION",
        'V' => "CLUSTER",
        'w' => "WEIGHT",
        'X' => "SOCKETS",
        'Y' => "CORES",
        'Z' => "THREADS",
        'z' => "S:C:T",
        _ => "",
    }
}

/// Fields that split a partition's nodes into lines when they differ.
const NODE_FIELDS: &str = "tTczmdwfbEuUHGXYZv";
/// Fields of the partition.
const PART_FIELDS: &str = "PRalLsrhgBSpIMV";

/// `_parse_format` of `sinfo/opts.c`: like squeue's, plus `#` for the widest value.
fn parse_format(format: &str, err: &mut String) -> Vec<Spec> {
    let mut specs = Vec::new();
    let (prefix, rest) = match format.find('%') {
        Some(p) => (&format[..p], &format[p..]),
        None => (format, ""),
    };
    if !prefix.is_empty() {
        specs.push(Spec {
            letter: ' ',
            width: Width::Fixed(0),
            right: false,
            suffix: prefix.into(),
            literal: true,
        });
    }
    for token in rest.split('%').filter(|t| !t.is_empty()) {
        let mut chars = token.char_indices().peekable();
        let right = matches!(chars.peek(), Some((_, '.')));
        if right {
            chars.next();
        }
        let width = if matches!(chars.peek(), Some((_, '#'))) {
            chars.next();
            Width::Widest
        } else {
            let mut w = 0usize;
            while let Some((_, c)) = chars.peek().copied() {
                let Some(d) = c.to_digit(10) else { break };
                w = (w * 10 + d as usize).min(WIDTH_MAX);
                chars.next();
            }
            Width::Fixed(w)
        };
        let letter = chars.next().map(|(_, c)| c);
        let suffix = chars
            .peek()
            .map(|(p, _)| token[*p..].to_string())
            .unwrap_or_default();
        match letter {
            Some(c) if !header(c).is_empty() => specs.push(Spec {
                letter: c,
                width,
                right,
                suffix,
                literal: false,
            }),
            other => {
                let c = other.map(String::from).unwrap_or_default();
                err.push_str(&format!(
                    "sinfo: error: Invalid node format specification: {c}\n"
                ));
                specs.push(Spec {
                    letter: ' ',
                    width: Width::Fixed(0),
                    right: false,
                    suffix: format!("%{token}"),
                    literal: true,
                });
            }
        }
    }
    specs
}

/// `_parse_long_format`: `name[:[.]width][suffix]`, 20 wide by default.
fn parse_long_format(format: &str, err: &mut String) -> Result<Vec<Spec>, String> {
    let mut specs = Vec::new();
    for token in format.split(',').filter(|t| !t.is_empty()) {
        let (name, width, right, suffix) = match token.split_once(':') {
            None => (token, 20, false, String::new()),
            Some((name, rest)) => {
                let (right, rest) = match rest.strip_prefix('.') {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                let digits =
                    rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let width = rest[..digits].bytes().fold(0usize, |w, b| {
                    (w * 10 + usize::from(b - b'0')).min(WIDTH_MAX)
                });
                (name, width, right, rest[digits..].to_string())
            }
        };
        let lower = name.to_ascii_lowercase();
        match LONG_FIELDS.iter().find(|(n, _)| *n == lower) {
            Some((_, c)) => specs.push(Spec {
                letter: *c,
                width: Width::Fixed(width),
                right,
                suffix,
                literal: false,
            }),
            None => {
                err.push_str(&format!(
                    "sinfo: error: Invalid node format specification: {name}\n"
                ));
                return Err(err.clone());
            }
        }
    }
    Ok(specs)
}

/// The ordering value of a node state: Slurm's base state plus its flags
/// (`NODE_STATE_DRAIN` 0x200, `NODE_STATE_NO_RESPOND` 0x800), as `-t` sorts them.
fn state_value(node: &Node) -> u32 {
    let base = match node.state {
        NodeState::Unknown => 0,
        NodeState::Down => 1,
        NodeState::Idle => 2,
        NodeState::Allocated => 3,
        NodeState::Mixed => 5,
        NodeState::Draining => 0x200 | 3,
        NodeState::Drained => 0x200 | 2,
    };
    base | if node.not_responding { 0x800 } else { 0 }
}

/// `sinfo %t` / `%T`, with `*` when not responding.
fn state_str(node: &Node, long: bool) -> String {
    let s = if long {
        node.state.long()
    } else {
        node.state.short()
    };
    format!("{s}{}", if node.not_responding { "*" } else { "" })
}

/// A node-level field (one node's value).
fn node_value(c: char, node: &Node) -> String {
    match c {
        't' => state_str(node, false),
        'T' => state_str(node, true),
        'c' | 'Y' => node.cpus.to_string(),
        'z' => format!("1:{}:1", node.cpus),
        'm' => node.real_memory_mb.to_string(),
        'd' => "0".into(),
        'w' | 'X' | 'Z' => "1".into(),
        'f' | 'b' => or_null(&node.features),
        'E' => {
            if node.reason.is_empty() {
                "none".into()
            } else {
                node.reason.clone()
            }
        }
        'u' | 'U' => {
            if node.reason_user.is_empty() {
                "Unknown".into()
            } else {
                node.reason_user.clone()
            }
        }
        'H' => node
            .reason_time
            .map_or("Unknown".into(), |t| make_time_str(t, 0)),
        'G' => or_null(&node.gres),
        'v' => SLURM_VERSION.trim_start_matches("slurm ").into(),
        _ => String::new(),
    }
}

fn or_null(s: &str) -> String {
    if s.is_empty() {
        "(null)".into()
    } else {
        s.into()
    }
}

/// One output line: nodes of one partition (or of none) with equal node-level fields.
struct Record<'a> {
    part: Option<&'a Partition>,
    nodes: Vec<&'a Node>,
    key: Vec<String>,
}

/// Counts (allocated, idle, other) of nodes, as `%F` and `%A` print them.
fn node_counts(nodes: &[&Node]) -> (usize, usize, usize) {
    let (mut a, mut i, mut o) = (0, 0, 0);
    for n in nodes {
        match n.state {
            NodeState::Allocated | NodeState::Mixed | NodeState::Draining => a += 1,
            NodeState::Idle if !n.not_responding => i += 1,
            _ => o += 1,
        }
    }
    (a, i, o)
}

fn value(c: char, rec: &Record, view: &View, width: usize) -> (String, bool) {
    let part = rec.part;
    let s = match c {
        'P' => match part {
            None => "n/a".into(),
            Some(p) => {
                let mut name = p.name.clone();
                if p.default {
                    let n = name.chars().count();
                    if width == 0 || n < width {
                        name.push('*');
                    } else {
                        name = name.chars().take(width - 1).collect();
                        name.push('*');
                    }
                }
                name
            }
        },
        'R' => part.map_or("n/a".into(), |p| p.name.clone()),
        'a' => part.map_or("n/a".into(), |p| if p.up { "up" } else { "down" }.into()),
        'l' => match part {
            None => "n/a".into(),
            Some(p) => match p.max_time_min {
                None => "infinite".into(),
                Some(m) => print_secs(m.min(1 << 40) as i64 * 60),
            },
        },
        'L' => match part.and_then(|p| p.default_time_min) {
            None => "n/a".into(),
            Some(m) => print_secs(m.min(1 << 40) as i64 * 60),
        },
        's' => "1-infinite".into(),
        'r' => "no".into(),
        'h' => "NO".into(),
        'g' | 'S' => "all".into(),
        'B' => "UNLIMITED".into(),
        'p' | 'I' => "1".into(),
        'M' => "OFF".into(),
        'V' => view.cluster.clone(),
        'D' => convert_num_unit(rec.nodes.len() as u64, 0),
        'N' | 'n' | 'o' => {
            let names: Vec<&str> = rec.nodes.iter().map(|n| n.name.as_str()).collect();
            return (hostlist::compress_unique(&names), false);
        }
        'F' => {
            let (a, i, o) = node_counts(&rec.nodes);
            format!("{a}/{i}/{o}/{}", rec.nodes.len())
        }
        'A' => {
            let (a, i, _) = node_counts(&rec.nodes);
            format!("{a}/{i}")
        }
        'C' => {
            let (mut a, mut i, mut o, mut t) = (0u64, 0u64, 0u64, 0u64);
            for n in &rec.nodes {
                let cpus = u64::from(n.cpus);
                t += cpus;
                match n.state {
                    NodeState::Drained | NodeState::Down | NodeState::Unknown => o += cpus,
                    _ if n.not_responding => o += cpus,
                    _ => {
                        let alloc = u64::from(n.cpus_alloc).min(cpus);
                        a += alloc;
                        i += cpus - alloc;
                    }
                }
            }
            format!("{a}/{i}/{o}/{t}")
        }
        'e' => {
            let free = rec
                .nodes
                .iter()
                .map(|n| n.real_memory_mb.saturating_sub(n.alloc_memory_mb));
            let (lo, hi) = free.fold((u64::MAX, 0), |(lo, hi), f| (lo.min(f), hi.max(f)));
            match (lo, hi) {
                (u64::MAX, _) => "N/A".into(),
                (lo, hi) if lo == hi => lo.to_string(),
                (lo, hi) => format!("{lo}-{hi}"),
            }
        }
        'O' => "N/A".into(),
        c => rec
            .nodes
            .first()
            .map(|n| node_value(c, n))
            .unwrap_or_default(),
    };
    (s, true)
}

const SINFO_OPTIONS: &[OptSpec] = &[
    OptSpec {
        short: Some('a'),
        long: &["all"],
        arg: ArgKind::None,
        id: "a",
    },
    OptSpec {
        short: Some('d'),
        long: &["dead"],
        arg: ArgKind::None,
        id: "d",
    },
    OptSpec {
        short: Some('e'),
        long: &["exact"],
        arg: ArgKind::None,
        id: "e",
    },
    OptSpec {
        short: None,
        long: &["federation"],
        arg: ArgKind::None,
        id: "federation",
    },
    OptSpec {
        short: Some('F'),
        long: &["future"],
        arg: ArgKind::None,
        id: "F",
    },
    OptSpec {
        short: Some('h'),
        long: &["noheader"],
        arg: ArgKind::None,
        id: "h",
    },
    OptSpec {
        short: None,
        long: &["help"],
        arg: ArgKind::None,
        id: "help",
    },
    OptSpec {
        short: None,
        long: &["hide"],
        arg: ArgKind::None,
        id: "hide",
    },
    OptSpec {
        short: Some('i'),
        long: &["iterate"],
        arg: ArgKind::Required,
        id: "i",
    },
    OptSpec {
        short: None,
        long: &["json"],
        arg: ArgKind::Optional,
        id: "json",
    },
    OptSpec {
        short: Some('l'),
        long: &["long"],
        arg: ArgKind::None,
        id: "l",
    },
    OptSpec {
        short: None,
        long: &["local"],
        arg: ArgKind::None,
        id: "local",
    },
    OptSpec {
        short: Some('M'),
        long: &["cluster", "clusters"],
        arg: ArgKind::Required,
        id: "M",
    },
    OptSpec {
        short: Some('n'),
        long: &["nodes"],
        arg: ArgKind::Required,
        id: "n",
    },
    OptSpec {
        short: Some('N'),
        long: &["Node"],
        arg: ArgKind::None,
        id: "N",
    },
    OptSpec {
        short: None,
        long: &["noconvert"],
        arg: ArgKind::None,
        id: "noconvert",
    },
    OptSpec {
        short: Some('o'),
        long: &["format"],
        arg: ArgKind::Required,
        id: "o",
    },
    OptSpec {
        short: Some('O'),
        long: &["Format"],
        arg: ArgKind::Required,
        id: "O",
    },
    OptSpec {
        short: Some('p'),
        long: &["partition"],
        arg: ArgKind::Required,
        id: "p",
    },
    OptSpec {
        short: Some('r'),
        long: &["responding"],
        arg: ArgKind::None,
        id: "r",
    },
    OptSpec {
        short: Some('R'),
        long: &["list-reasons"],
        arg: ArgKind::None,
        id: "R",
    },
    OptSpec {
        short: Some('s'),
        long: &["summarize"],
        arg: ArgKind::None,
        id: "s",
    },
    OptSpec {
        short: Some('S'),
        long: &["sort"],
        arg: ArgKind::Required,
        id: "S",
    },
    OptSpec {
        short: Some('t'),
        long: &["states"],
        arg: ArgKind::Required,
        id: "t",
    },
    OptSpec {
        short: Some('T'),
        long: &["reservation"],
        arg: ArgKind::None,
        id: "T",
    },
    OptSpec {
        short: None,
        long: &["usage"],
        arg: ArgKind::None,
        id: "usage",
    },
    OptSpec {
        short: Some('v'),
        long: &["verbose"],
        arg: ArgKind::None,
        id: "v",
    },
    OptSpec {
        short: Some('V'),
        long: &["version"],
        arg: ArgKind::None,
        id: "V",
    },
    OptSpec {
        short: None,
        long: &["yaml"],
        arg: ArgKind::Optional,
        id: "yaml",
    },
];

/// `sinfo --usage` (`sinfo/opts.c` `_usage`).
const SINFO_USAGE: &str = "\
Usage: sinfo [-adelNRrsTv] [-i seconds] [-t states] [-p partition] [-n nodes]
             [-S fields] [-o format] [-O Format] [--federation] [--local]
             [--json=data_parser] [--yaml=data_parser]
";

/// `sinfo --help` (`sinfo/opts.c` `_help`).
const SINFO_HELP: &str = "\
Usage: sinfo [OPTIONS]
  -a, --all                  show all partitions (including hidden and those
                             not accessible)
  -d, --dead                 show only non-responding nodes
  -e, --exact                group nodes only on exact match of configuration
      --federation           Report federated information if a member of one
  -h, --noheader             no headers on output
  --hide                     do not show hidden or non-accessible partitions
  -i, --iterate=seconds      specify an iteration period
      --json[=data_parser]   Produce JSON output
      --local                show only local cluster in a federation.
                             Overrides --federation.
  -l, --long                 long output - displays more information
  -M, --clusters=names       clusters to issue commands to. Implies --local.
                             NOTE: SlurmDBD must be up.
  -n, --nodes=NODES          report on specific node(s)
  --noconvert                don't convert units from their original type
                             (e.g. 2048M won't be converted to 2G).
  -N, --Node                 Node-centric format
  -o, --format=format        format specification
  -O, --Format=format        long format specification
  -p, --partition=PARTITION  report on specific partition
  -r, --responding           report only responding nodes
  -R, --list-reasons         list reason nodes are down or drained
  -s, --summarize            report state summary only
  -S, --sort=fields          comma separated list of fields to sort on
  -t, --states=node_state    specify the what states of nodes to view
  -T, --reservation          show only reservation information
  -v, --verbose              verbosity level
  -V, --version              output version information and exit
      --yaml[=data_parser]   Produce YAML output

Help options:
  --help                     show this help message
  --usage                    display brief usage message
";

/// Whether `node` is in one of the `-t` states (`sinfo/opts.c` `_node_state_id`
/// names; `drain` covers draining and drained).
fn state_matches(names: &[String], node: &Node) -> bool {
    names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        match n.as_str() {
            "all" => true,
            "alloc" | "allocated" => node.state == NodeState::Allocated,
            "mix" | "mixed" => node.state == NodeState::Mixed,
            "idle" => node.state == NodeState::Idle,
            "drain" => matches!(node.state, NodeState::Draining | NodeState::Drained),
            "drng" | "draining" => node.state == NodeState::Draining,
            "drained" => node.state == NodeState::Drained,
            "down" => node.state == NodeState::Down,
            "unk" | "unknown" => node.state == NodeState::Unknown,
            "no_respond" | "not_responding" => node.not_responding,
            "resp" | "responding" => !node.not_responding,
            _ => false,
        }
    })
}

const NODE_STATE_NAMES: &[&str] = &[
    "all",
    "alloc",
    "allocated",
    "mix",
    "mixed",
    "idle",
    "drain",
    "drng",
    "draining",
    "drained",
    "down",
    "unk",
    "unknown",
    "no_respond",
    "not_responding",
    "resp",
    "responding",
    "comp",
    "completing",
    "fail",
    "failing",
    "future",
    "maint",
    "reboot",
    "power_down",
    "power_up",
    "powered_down",
    "powering_down",
    "powering_up",
    "reserved",
    "inval",
    "planned",
    "cloud",
    "dynamic_future",
    "dynamic_norm",
    "invalid_reg",
    "perfctrs",
    "blocked",
];

/// `sinfo`: (exit code, stdout, stderr).
pub fn sinfo(args: &[String], view: &View, env: &BTreeMap<String, String>) -> Output {
    match run_sinfo(args, view, env) {
        Ok(out) => out,
        Err(err) => (1, String::new(), err),
    }
}

#[derive(Default)]
struct Params {
    format: Option<String>,
    format_long: Option<String>,
    long: bool,
    node_flag: bool,
    reasons: bool,
    summarize: bool,
    no_header: bool,
    iterate: bool,
    responding: bool,
    dead: bool,
    partitions: Option<Vec<String>>,
    states: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    sort: Option<String>,
}

fn run_sinfo(
    args: &[String],
    view: &View,
    env: &BTreeMap<String, String>,
) -> Result<Output, String> {
    const TRY: &str = "Try \"sinfo --help\" for more information\n";
    let parsed = getopt("sinfo", args, SINFO_OPTIONS).map_err(|e| format!("{e}{TRY}"))?;
    let mut p = Params {
        format: env.get("SINFO_FORMAT").cloned(),
        partitions: env.get("SINFO_PARTITION").map(|s| split_list(s)),
        sort: env.get("SINFO_SORT").cloned(),
        ..Params::default()
    };
    let mut err = String::new();
    for item in parsed {
        let (id, arg) = match item {
            Parsed::Positional(a) => {
                return Err(format!(
                    "sinfo: error: Unrecognized option: {a}\n{SINFO_USAGE}"
                ))
            }
            Parsed::Opt(id, arg) => (id, arg.unwrap_or_default()),
        };
        match id {
            "d" => p.dead = true,
            "h" => p.no_header = true,
            "i" => {
                if arg.trim().parse::<i64>().map_or(true, |n| n <= 0) {
                    return Err(format!(
                        "sinfo: error: Error: invalid entry for --iterate={arg}\n"
                    ));
                }
                p.iterate = true;
            }
            "l" => p.long = true,
            "n" => match hostlist::expand(&arg) {
                Ok(h) if !h.is_empty() => p.nodes = Some(h),
                _ => return Err(format!("sinfo: error: '{arg}' invalid entry for --nodes\n")),
            },
            "N" => p.node_flag = true,
            "o" => {
                p.format = Some(arg);
                p.format_long = None;
            }
            "O" => {
                p.format_long = Some(arg);
                p.format = None;
            }
            "p" => p.partitions = Some(split_list(&arg)),
            "r" => p.responding = true,
            "R" => p.reasons = true,
            "s" => p.summarize = true,
            "S" => p.sort = Some(arg),
            "t" => {
                let names: Vec<String> = arg
                    .split([',', '&'])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for n in &names {
                    if !NODE_STATE_NAMES.contains(&n.to_ascii_lowercase().as_str()) {
                        return Err(format!("sinfo: error: Invalid node state specified: {n}\n"));
                    }
                }
                p.states = Some(names);
            }
            "V" => return Ok((0, format!("{SLURM_VERSION}\n"), String::new())),
            "help" => return Ok((0, SINFO_HELP.into(), String::new())),
            "usage" => return Ok((0, SINFO_USAGE.into(), String::new())),
            "T" => {
                return Ok((
                    0,
                    "RESV_NAME     STATE           START_TIME             END_TIME     \
                     DURATION  NODELIST\n"
                        .into(),
                    String::new(),
                ))
            }
            "json" | "yaml" => {
                return Err(format!(
                    "sinfo: error: sovra's sinfo does not print --{id}; use the sovra CLI's \
                     json output\n"
                ))
            }
            // -a, -e, -F, --hide, --local, --federation, -M, --noconvert, -v.
            _ => {}
        }
    }

    let default_format = if p.summarize {
        "%#P %.5a %.10l %.16F  %N"
    } else if p.reasons {
        if p.long {
            "%20E %12U %19H %6t %N"
        } else {
            "%20E %9u %19H %N"
        }
    } else if p.node_flag {
        if p.long {
            "%#N %.6D %#P %.11T %.4c %.8z %.6m %.8d %.6w %.8f %20E"
        } else {
            "%#N %.6D %#P %6t"
        }
    } else if p.long {
        "%#P %.5a %.10l %.10s %.4r %.8h %.10g %.6D %.11T %N"
    } else {
        "%#P %.5a %.10l %.6D %.6t %N"
    };
    let specs = if let Some(f) = &p.format_long {
        parse_long_format(f, &mut err)?
    } else {
        let f = p
            .format
            .clone()
            .unwrap_or_else(|| default_format.to_string());
        if f.is_empty() {
            return Err("sinfo: error: Format option lacks specification\n".into());
        }
        parse_format(&f, &mut err)
    };

    let mut records = build_records(view, &specs, &p);
    let sort = p
        .sort
        .clone()
        .unwrap_or_else(|| if p.node_flag { "N" } else { "#P,-t" }.into());
    sort_records(&mut records, view, &sort);

    // `%#P` and `%#N` widths (`sinfo.c` `_set_part_field_size`, `_set_node_field_size`).
    let part_width = records
        .iter()
        .filter_map(|r| r.part)
        .map(|p| p.name.chars().count() + usize::from(p.default))
        .fold(MIN_FIELD_SIZE, usize::max);
    let node_width = records
        .iter()
        .map(|r| {
            let names: Vec<&str> = r.nodes.iter().map(|n| n.name.as_str()).collect();
            hostlist::compress_unique(&names).chars().count()
        })
        .fold(MIN_FIELD_SIZE, usize::max);
    let width_of = |spec: &Spec| match spec.width {
        Width::Fixed(w) => w,
        Width::Widest => match spec.letter {
            'P' | 'R' => part_width,
            'N' | 'n' | 'o' => node_width,
            _ => 0,
        },
    };

    let mut out = String::new();
    if p.long || p.iterate {
        out.push_str(&ctime_str(view.now, 0));
        out.push('\n');
    }
    if !p.no_header {
        for spec in &specs {
            if !spec.literal {
                out.push_str(&fmt_field(
                    header(spec.letter),
                    width_of(spec),
                    spec.right,
                    true,
                ));
            }
            out.push_str(&spec.suffix);
        }
        out.push('\n');
    }
    for rec in &records {
        for spec in &specs {
            if !spec.literal {
                let w = width_of(spec);
                let (text, cut) = value(spec.letter, rec, view, w);
                out.push_str(&fmt_field(&text, w, spec.right, cut));
            }
            out.push_str(&spec.suffix);
        }
        out.push('\n');
    }
    Ok((0, out, err))
}

/// `_build_sinfo_data` (`sinfo/sinfo.c`): per partition, nodes with equal printed node
/// fields share a record; with `-N` each node has its own; without a partition field the
/// partitions are not told apart and each node is counted once.
fn build_records<'a>(view: &'a View, specs: &[Spec], p: &Params) -> Vec<Record<'a>> {
    let node_fields: Vec<char> = specs
        .iter()
        .filter(|s| !s.literal && NODE_FIELDS.contains(s.letter))
        .map(|s| s.letter)
        .collect();
    let by_partition = p.node_flag
        || specs
            .iter()
            .any(|s| !s.literal && PART_FIELDS.contains(s.letter));
    let mut records: Vec<Record> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for part in &view.partitions {
        if let Some(wanted) = &p.partitions {
            if !wanted.contains(&part.name) {
                continue;
            }
        }
        for name in &part.nodes {
            let Some(node) = view.nodes.iter().find(|n| n.name == *name) else {
                continue;
            };
            if !keep_node(node, p) {
                continue;
            }
            if !by_partition {
                if seen.contains(&node.name.as_str()) {
                    continue;
                }
                seen.push(&node.name);
            }
            let mut key: Vec<String> = node_fields.iter().map(|c| node_value(*c, node)).collect();
            if p.node_flag {
                key.push(node.name.clone());
            }
            let part = by_partition.then_some(part);
            let found = records
                .iter_mut()
                .find(|r| r.key == key && r.part.map(|x| &x.name) == part.map(|x| &x.name));
            match found {
                Some(r) => r.nodes.push(node),
                None => records.push(Record {
                    part,
                    nodes: vec![node],
                    key,
                }),
            }
        }
    }
    records
}

/// `_filter_out` (`sinfo/sinfo.c`).
fn keep_node(node: &Node, p: &Params) -> bool {
    if let Some(nodes) = &p.nodes {
        if !nodes.contains(&node.name) {
            return false;
        }
    }
    if let Some(states) = &p.states {
        if !state_matches(states, node) {
            return false;
        }
    }
    if p.responding && node.not_responding {
        return false;
    }
    if p.dead && !(node.not_responding || node.state == NodeState::Down) {
        return false;
    }
    if p.reasons
        && !matches!(
            node.state,
            NodeState::Draining | NodeState::Drained | NodeState::Down
        )
    {
        return false;
    }
    true
}

/// Natural order of node names: the text, then the number at the end.
fn node_order(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, num) = name.split_at(name.len() - digits);
    (
        prefix.to_string(),
        num.parse().unwrap_or(0),
        name.to_string(),
    )
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(u64),
    Str(String),
    Node((String, u64, String)),
}

/// `sort_sinfo_list` (`sinfo/sort.c`): keys from last to first, stable; `#P` is the
/// configuration order of partitions; `-` reverses.
fn sort_records(records: &mut [Record], view: &View, sort: &str) {
    let keys: Vec<&str> = sort.split(',').filter(|k| !k.is_empty()).collect();
    for key in keys.iter().rev() {
        let (reverse, key) = match key.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key.strip_prefix('+').unwrap_or(key)),
        };
        let get = |r: &Record| -> Key {
            let first = r.nodes.first();
            match key {
                "#P" => Key::Num(
                    r.part
                        .and_then(|p| view.partitions.iter().position(|x| x.name == p.name))
                        .unwrap_or(0) as u64,
                ),
                "P" | "R" => Key::Str(r.part.map(|p| p.name.clone()).unwrap_or_default()),
                "t" | "T" => Key::Num(first.map_or(0, |n| u64::from(state_value(n)))),
                "N" | "n" | "o" => {
                    Key::Node(first.map_or_else(Default::default, |n| node_order(&n.name)))
                }
                "D" => Key::Num(r.nodes.len() as u64),
                "c" => Key::Num(first.map_or(0, |n| u64::from(n.cpus))),
                "m" => Key::Num(first.map_or(0, |n| n.real_memory_mb)),
                "E" => Key::Str(first.map(|n| n.reason.clone()).unwrap_or_default()),
                "a" => Key::Num(u64::from(r.part.is_some_and(|p| p.up))),
                "l" => Key::Num(r.part.and_then(|p| p.max_time_min).unwrap_or(u64::MAX)),
                _ => Key::Num(0),
            }
        };
        records.sort_by(|a, b| {
            let o = get(a).cmp(&get(b));
            if reverse {
                o.reverse()
            } else {
                o
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::super::squeue::fixture::check;

    /// The conformance table for `sinfo`, written from `sinfo/opts.c`, `print.c`,
    /// `sinfo.c` and `sort.c` of 22.05.
    #[test]
    fn sinfo_conformance() {
        check(
            &[
                "sinfo",
                "sinfo -N",
                "sinfo -N -l",
                "sinfo -l",
                "sinfo -R",
                "sinfo -R -l",
                "sinfo -s",
                "sinfo -h -p cpu",
                "sinfo -t idle,drain",
                "sinfo -n gpu[01-03] -N -h",
                "sinfo -o \"%P %C %F %A %e %G %f\"",
                "sinfo -o \"%4P|%.3P|%R %l %L %m %c %z\" -p gpu,debug",
                "sinfo -h -o %N",
                "sinfo -O Partition:12,NodeAIOT:.16,StateLong",
                "sinfo -o \"%P %Q\"",
                "sinfo -O bogus",
                "sinfo -r -h -o \"%P %t %N\"",
                "sinfo -d -h -o \"%N %T\"",
                "SINFO_FORMAT=\"%P %D\" sinfo",
                "sinfo -S -D -h -o \"%P %D %t\"",
            ],
            expect![[r#"
                $ sinfo
                PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST
                gpu*         up 2-00:00:00      1  down* gpu06
                gpu*         up 2-00:00:00      1  drain gpu05
                gpu*         up 2-00:00:00      1    mix gpu03
                gpu*         up 2-00:00:00      2  alloc gpu[01-02]
                gpu*         up 2-00:00:00      1   idle gpu04
                cpu          up   infinite      1   drng cpu2
                cpu          up   infinite      1   idle cpu1
                cpu          up   infinite      1    unk cpu3
                debug      down      30:00      1  alloc gpu01
                debug      down      30:00      1   idle cpu1
                $ sinfo -N
                NODELIST   NODES PARTITION STATE 
                cpu1           1 cpu       idle  
                cpu1           1 debug     idle  
                cpu2           1 cpu       drng  
                cpu3           1 cpu       unk   
                gpu01          1 gpu*      alloc 
                gpu01          1 debug     alloc 
                gpu02          1 gpu*      alloc 
                gpu03          1 gpu*      mix   
                gpu04          1 gpu*      idle  
                gpu05          1 gpu*      drain 
                gpu06          1 gpu*      down* 
                $ sinfo -N -l
                Fri Mar  1 12:00:00 2024
                NODELIST   NODES PARTITION       STATE CPUS    S:C:T MEMORY TMP_DISK WEIGHT AVAIL_FE REASON              
                cpu1           1 cpu              idle   64   1:64:1 257000        0      1     epyc none                
                cpu1           1 debug            idle   64   1:64:1 257000        0      1     epyc none                
                cpu2           1 cpu          draining   64   1:64:1 257000        0      1     epyc kernel update       
                cpu3           1 cpu           unknown   64   1:64:1 257000        0      1     epyc none                
                gpu01          1 gpu*        allocated   64   1:64:1 512000        0      1  h100,ib none                
                gpu01          1 debug       allocated   64   1:64:1 512000        0      1  h100,ib none                
                gpu02          1 gpu*        allocated   64   1:64:1 512000        0      1  h100,ib none                
                gpu03          1 gpu*            mixed   64   1:64:1 512000        0      1  h100,ib none                
                gpu04          1 gpu*             idle   64   1:64:1 512000        0      1  h100,ib none                
                gpu05          1 gpu*          drained   64   1:64:1 512000        0      1  h100,ib bad gpu             
                gpu06          1 gpu*            down*   64   1:64:1 512000        0      1  h100,ib Not responding      
                $ sinfo -l
                Fri Mar  1 12:00:00 2024
                PARTITION AVAIL  TIMELIMIT   JOB_SIZE ROOT OVERSUBS     GROUPS  NODES       STATE NODELIST
                gpu*         up 2-00:00:00 1-infinite   no       NO        all      1       down* gpu06
                gpu*         up 2-00:00:00 1-infinite   no       NO        all      1     drained gpu05
                gpu*         up 2-00:00:00 1-infinite   no       NO        all      1       mixed gpu03
                gpu*         up 2-00:00:00 1-infinite   no       NO        all      2   allocated gpu[01-02]
                gpu*         up 2-00:00:00 1-infinite   no       NO        all      1        idle gpu04
                cpu          up   infinite 1-infinite   no       NO        all      1    draining cpu2
                cpu          up   infinite 1-infinite   no       NO        all      1        idle cpu1
                cpu          up   infinite 1-infinite   no       NO        all      1     unknown cpu3
                debug      down      30:00 1-infinite   no       NO        all      1   allocated gpu01
                debug      down      30:00 1-infinite   no       NO        all      1        idle cpu1
                $ sinfo -R
                REASON               USER      TIMESTAMP           NODELIST
                Not responding       slurm     2024-03-01T11:00:00 gpu06
                kernel update        root      2024-03-01T11:50:00 cpu2
                bad gpu              root      2024-02-29T12:00:00 gpu05
                $ sinfo -R -l
                Fri Mar  1 12:00:00 2024
                REASON               USER         TIMESTAMP           STATE  NODELIST
                Not responding       slurm        2024-03-01T11:00:00 down*  gpu06
                kernel update        root         2024-03-01T11:50:00 drng   cpu2
                bad gpu              root         2024-02-29T12:00:00 drain  gpu05
                $ sinfo -s
                PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T)  NODELIST
                gpu*         up 2-00:00:00          3/1/2/6  gpu[01-06]
                cpu          up   infinite          1/1/1/3  cpu[1-3]
                debug      down      30:00          1/1/0/2  cpu1,gpu01
                $ sinfo -h -p cpu
                cpu          up   infinite      1   drng cpu2
                cpu          up   infinite      1   idle cpu1
                cpu          up   infinite      1    unk cpu3
                $ sinfo -t idle,drain
                PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST
                gpu*         up 2-00:00:00      1  drain gpu05
                gpu*         up 2-00:00:00      1   idle gpu04
                cpu          up   infinite      1   drng cpu2
                cpu          up   infinite      1   idle cpu1
                debug      down      30:00      1   idle cpu1
                $ sinfo -n gpu[01-03] -N -h
                gpu01          1 gpu*      alloc 
                gpu01          1 debug     alloc 
                gpu02          1 gpu*      alloc 
                gpu03          1 gpu*      mix   
                $ sinfo -o "%P %C %F %A %e %G %f"
                PARTITION CPUS(A/I/O/T) NODES(A/I/O/T) NODES(A/I) FREE_MEM GRES AVAIL_FEATURES
                gpu* 160/96/128/384 3/1/2/6 3/1 256000-512000 gpu:h100:8 h100,ib
                cpu 16/112/64/192 1/1/1/3 1/1 193000-257000 (null) epyc
                debug 64/0/0/64 1/0/0/1 1/0 256000 gpu:h100:8 h100,ib
                debug 0/64/0/64 0/1/0/1 0/1 257000 (null) epyc
                $ sinfo -o "%4P|%.3P|%R %l %L %m %c %z" -p gpu,debug
                PART|PAR|PARTITION TIMELIMIT DEFAULTTIME MEMORY CPUS S:C:T
                gpu*|gp*|gpu 2-00:00:00 1:00:00 512000 64 1:64:1
                debu|deb|debug 30:00 n/a 512000 64 1:64:1
                debu|deb|debug 30:00 n/a 257000 64 1:64:1
                $ sinfo -h -o %N
                cpu[1-3],gpu[01-06]
                $ sinfo -O Partition:12,NodeAIOT:.16,StateLong
                PARTITION     NODES(A/I/O/T)STATE               
                gpu*                 0/0/1/1down*               
                gpu*                 0/0/1/1drained             
                gpu*                 1/0/0/1mixed               
                gpu*                 2/0/0/2allocated           
                gpu*                 0/1/0/1idle                
                cpu                  1/0/0/1draining            
                cpu                  0/1/0/1idle                
                cpu                  0/0/1/1unknown             
                debug                1/0/0/1allocated           
                debug                0/1/0/1idle                
                $ sinfo -o "%P %Q"
                PARTITION %Q
                gpu* %Q
                cpu %Q
                debug %Q
                [stderr]
                sinfo: error: Invalid node format specification: Q
                $ sinfo -O bogus
                [stderr]
                sinfo: error: Invalid node format specification: bogus
                [exit 1]
                $ sinfo -r -h -o "%P %t %N"
                gpu* drain gpu05
                gpu* mix gpu03
                gpu* alloc gpu[01-02]
                gpu* idle gpu04
                cpu drng cpu2
                cpu idle cpu1
                cpu unk cpu3
                debug alloc gpu01
                debug idle cpu1
                $ sinfo -d -h -o "%N %T"
                gpu06 down*
                $ SINFO_FORMAT="%P %D" sinfo
                PARTITION NODES
                gpu* 6
                cpu 3
                debug 2
                $ sinfo -S -D -h -o "%P %D %t"
                gpu* 2 alloc
                gpu* 1 mix
                gpu* 1 idle
                gpu* 1 drain
                gpu* 1 down*
                cpu 1 idle
                cpu 1 drng
                cpu 1 unk
                debug 1 alloc
                debug 1 idle
            "#]],
        );
    }

    #[test]
    fn sinfo_errors_and_info() {
        check(
            &[
                "sinfo -t bogus",
                "sinfo -Q",
                "sinfo extra",
                "sinfo -V",
                "sinfo --usage",
                "sinfo --yaml",
            ],
            expect![[r#"
                $ sinfo -t bogus
                [stderr]
                sinfo: error: Invalid node state specified: bogus
                [exit 1]
                $ sinfo -Q
                [stderr]
                sinfo: invalid option -- 'Q'
                Try "sinfo --help" for more information
                [exit 1]
                $ sinfo extra
                [stderr]
                sinfo: error: Unrecognized option: extra
                Usage: sinfo [-adelNRrsTv] [-i seconds] [-t states] [-p partition] [-n nodes]
                             [-S fields] [-o format] [-O Format] [--federation] [--local]
                             [--json=data_parser] [--yaml=data_parser]
                [exit 1]
                $ sinfo -V
                slurm 22.05.11
                $ sinfo --usage
                Usage: sinfo [-adelNRrsTv] [-i seconds] [-t states] [-p partition] [-n nodes]
                             [-S fields] [-o format] [-O Format] [--federation] [--local]
                             [--json=data_parser] [--yaml=data_parser]
                $ sinfo --yaml
                [stderr]
                sinfo: error: sovra's sinfo does not print --yaml; use the sovra CLI's json output
                [exit 1]
            "#]],
        );
    }
}
