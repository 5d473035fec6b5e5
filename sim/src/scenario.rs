//! Capacity-planning scenarios (`sovra-sim plan`): the TOML file, and the two runs it
//! describes.
//!
//! A scenario names a cluster, a workload and changes (`docs/sim.md` specifies the format;
//! `sim/examples/` holds complete files):
//! - `[cluster]`: `[[cluster.sites]]` with a jurisdiction and node groups (`count` nodes of
//!   `gpus` GPUs of `model`), or `openb_nodes = "FILE"` (an OpenB node list, one site), or
//!   `inventory = "FILE"` (sovra's inventory format);
//! - `[workload]`: a trace file in any supported format ([`crate::trace`]), and
//!   `[[workload.tenants]]` with the jurisdictions each tenant may use;
//! - `[[changes]]`: GPUs added or removed at a site at a time, a site outage over a window,
//!   nodes drained or failed, a tenant restricted to some jurisdictions, another policy.
//!
//! [`parse_scenario`] reads the file (pure: referenced files are the caller's to read);
//! [`prepare`] builds one topology for both runs, the baseline's and the scenario's jobs,
//! and the scenario's node events. Both runs share the topology: GPUs a change adds are in it
//! from the start, down until they are added, in the baseline too, so node ids (and with
//! them every tie-break) are the same in both runs. Every error is one line,
//! `file:line: field: why`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sovra_fabric::topology::{
    GpuDesc, GpuModelDesc, NodeDesc, SiteDesc, SiteFabric, SiteLinkDesc, GPUS_PER_NODE_MAX,
};
use sovra_fabric::{Jurisdiction, NodeId, Topology, TopologyDesc};
use sovra_scheduler::core::placement::TargetWorkload;
use toml::Spanned;

use crate::engine::{JobArrival, NodeChange, NodeEvent};
use crate::loader::{LoadError, NodeRow};
use crate::openb::target_workload;
use crate::policy::SimPolicy;
use crate::swf::{SwfMapping, SwfTenant};
use crate::trace::{seconds_to_ms, Format, Trace};

/// CPU a node group gets when it does not say: enough never to bind.
pub const NODE_CPUS_DEFAULT: u64 = 1_024;
/// Memory a node group gets when it does not say: enough never to bind.
pub const NODE_MEMORY_GIB_DEFAULT: u64 = 16_384;
/// RTT between two sites when `[[cluster.links]]` does not give one.
pub const SITE_RTT_MS_DEFAULT: f64 = 50.0;
/// Nodes per leaf in generated sites and for added GPUs.
const LEAF_NODES: usize = 32;
/// Most nodes a scenario's cluster may have.
const NODES_MAX: u64 = 1_000_000;
/// Largest seed: the seed is the run's first log index, and leaves room for the run.
pub const SEED_MAX: u64 = 1 << 48;

// ---------------------------------------------------------------------------------------------
// The file's DTOs. Every table denies unknown fields so that typos are errors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioToml {
    name: Option<String>,
    seed: Option<Spanned<u64>>,
    policy: Option<Spanned<String>>,
    cluster: Spanned<ClusterToml>,
    workload: Spanned<WorkloadToml>,
    #[serde(default)]
    changes: Vec<Spanned<ChangeToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterToml {
    #[serde(default)]
    sites: Vec<Spanned<SiteToml>>,
    openb_nodes: Option<String>,
    inventory: Option<String>,
    site: Option<String>,
    jurisdiction: Option<String>,
    #[serde(default)]
    links: Vec<Spanned<LinkToml>>,
    default_rtt_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteToml {
    name: String,
    jurisdiction: String,
    region: Option<String>,
    #[serde(default)]
    nodes: Vec<Spanned<NodeGroupToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeGroupToml {
    count: u64,
    gpus: u64,
    model: Option<String>,
    cpus: Option<u64>,
    memory_gib: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkToml {
    a: String,
    b: String,
    rtt_ms: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadToml {
    trace: String,
    format: Option<String>,
    procs_per_gpu: Option<u32>,
    gpus_per_node: Option<u32>,
    tenant_from: Option<String>,
    arrival_scale: Option<f64>,
    default_jurisdictions: Option<Vec<String>>,
    #[serde(default)]
    tenants: Vec<Spanned<TenantToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantToml {
    name: String,
    jurisdictions: Vec<String>,
}

/// A time: seconds, or a string such as `"90s"`, `"15m"`, `"6h"`, `"2d"`, `"1d12h"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum TimeToml {
    Seconds(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeToml {
    kind: String,
    at: Option<TimeToml>,
    until: Option<TimeToml>,
    site: Option<String>,
    model: Option<String>,
    gpus: Option<u64>,
    gpus_per_node: Option<u64>,
    cpus: Option<u64>,
    memory_gib: Option<u64>,
    nodes: Option<Vec<String>>,
    tenant: Option<String>,
    jurisdictions: Option<Vec<String>>,
    policy: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The parsed scenario.

/// Where the cluster comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterSource {
    /// Sites written in the scenario.
    Sites(Vec<SiteSpec>),
    /// An OpenB node list, as one site.
    OpenbNodes {
        /// The file, as written (relative to the scenario).
        path: String,
        /// The site's name.
        site: String,
        /// The site's jurisdiction.
        jurisdiction: String,
    },
    /// A sovra inventory file.
    Inventory {
        /// The file, as written (relative to the scenario).
        path: String,
    },
}

/// A site of the scenario's cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// Name.
    pub name: String,
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// Region label.
    pub region: String,
    /// Node groups.
    pub groups: Vec<NodeGroup>,
}

/// `count` identical nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeGroup {
    /// Nodes.
    pub count: u64,
    /// GPUs per node.
    pub gpus: u32,
    /// GPU model (empty without GPUs).
    pub model: String,
    /// CPU per node.
    pub cpu_milli: u64,
    /// Memory per node.
    pub memory_mib: u64,
}

/// Which nodes a drain or failure hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeTarget {
    /// These nodes, by name.
    Nodes(Vec<String>),
    /// Every node of a site.
    Site(String),
}

/// A change of the scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `gpus` GPUs of `model` installed at `site` at `at_ms`, in nodes of `gpus_per_node`.
    AddGpus {
        /// When.
        at_ms: u64,
        /// Site.
        site: String,
        /// Model.
        model: String,
        /// GPUs in all.
        gpus: u64,
        /// Node shape; `None` copies a node of the model.
        gpus_per_node: Option<u32>,
        /// CPU per node; `None` copies a node of the model.
        cpu_milli: Option<u64>,
        /// Memory per node; `None` copies a node of the model.
        memory_mib: Option<u64>,
    },
    /// `gpus` GPUs of `model` taken out of `site` at `at_ms` (whole nodes, last first):
    /// their jobs are requeued.
    RemoveGpus {
        /// When.
        at_ms: u64,
        /// Site.
        site: String,
        /// Model.
        model: String,
        /// GPUs in all.
        gpus: u64,
    },
    /// Every node of `site` down over `[from_ms, until_ms)`; jobs on them are requeued.
    Outage {
        /// Site.
        site: String,
        /// Start.
        from_ms: u64,
        /// End (`None`: never back).
        until_ms: Option<u64>,
    },
    /// Nodes drained over `[at_ms, until_ms)`: their jobs run on, nothing new lands.
    Drain {
        /// Which nodes.
        target: NodeTarget,
        /// Start.
        at_ms: u64,
        /// End (`None`: for good).
        until_ms: Option<u64>,
    },
    /// Nodes failed over `[at_ms, until_ms)`: their jobs are requeued.
    Fail {
        /// Which nodes.
        target: NodeTarget,
        /// Start.
        at_ms: u64,
        /// End (`None`: never repaired).
        until_ms: Option<u64>,
    },
    /// From `at_ms` on, `tenant`'s jobs may only run in `jurisdictions` (applies to jobs
    /// submitted from then on).
    RestrictTenant {
        /// Tenant.
        tenant: String,
        /// Allowed jurisdictions.
        jurisdictions: Vec<Jurisdiction>,
        /// From when.
        at_ms: u64,
    },
    /// The scenario runs another policy than the baseline.
    Policy(SimPolicy),
}

/// A change and where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeAt {
    /// The change.
    pub change: Change,
    /// Its index in `changes`.
    pub idx: usize,
    /// Its line.
    pub line: usize,
}

/// A tenant's allowed jurisdictions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSpec {
    /// Tenant.
    pub name: String,
    /// Allowed jurisdictions.
    pub jurisdictions: Vec<Jurisdiction>,
    /// Its line.
    pub line: usize,
}

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioFile {
    /// The file, for errors.
    pub file: String,
    /// Title.
    pub name: String,
    /// Seed: the first log index of both runs.
    pub seed: u64,
    /// Policy of both runs (`None`: `best-fit`, what `sovrad` runs).
    pub policy: Option<SimPolicy>,
    /// The cluster.
    pub cluster: ClusterSource,
    /// RTTs between sites written in the scenario: `(a, b, rtt_ms)`.
    pub links: Vec<(String, String, f64)>,
    /// RTT for pairs of sites without a link.
    pub default_rtt_ms: f64,
    /// The trace file, as written (relative to the scenario).
    pub trace: String,
    /// Its format (`None`: from the extension).
    pub format: Option<Format>,
    /// How SWF processors become GPUs.
    pub swf: SwfMapping,
    /// Submit times are multiplied by this (1: as the trace has them).
    pub arrival_scale: f64,
    /// Tenants' allowed jurisdictions.
    pub tenants: Vec<TenantSpec>,
    /// Jurisdictions of tenants not listed (`None`: every jurisdiction of the cluster).
    pub default_jurisdictions: Option<Vec<Jurisdiction>>,
    /// The changes, in file order.
    pub changes: Vec<ChangeAt>,
    /// Lines of `[cluster]` and `[workload]`.
    lines: (usize, usize),
}

/// Parses a time: seconds (`5400`, `1.5`) or a number with units (`90s`, `15m`, `6h`, `2d`,
/// `1w`, `1d12h`).
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a time: use seconds or e.g. \"90s\", \"6h\", \"1d12h\"");
    let t = text.trim();
    if let Ok(s) = t.parse::<f64>() {
        return seconds_to_ms(s).ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = next.trim_start();
    }
    seconds_to_ms(total).ok_or_else(bad)
}

/// Parses a scenario file; `file` names it in errors.
pub fn parse_scenario(file: &str, text: &str) -> Result<ScenarioFile, LoadError> {
    let error = |offset: usize, field: &str, why: String| LoadError {
        file: file.to_string(),
        line: line_of(text, offset),
        message: format!("{field}: {why}"),
    };
    let doc: ScenarioToml = toml::from_str(text).map_err(|e| {
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        LoadError {
            file: file.to_string(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: format!("toml: {}", message.trim_end_matches('.')),
        }
    })?;
    let seed = match &doc.seed {
        None => 0,
        Some(s) if *s.get_ref() <= SEED_MAX => *s.get_ref(),
        Some(s) => {
            return Err(error(
                s.span().start,
                "seed",
                format!("{} is above the maximum {SEED_MAX}", s.get_ref()),
            ))
        }
    };
    let policy = match &doc.policy {
        None => None,
        Some(p) => Some(SimPolicy::parse(p.get_ref()).ok_or_else(|| {
            error(
                p.span().start,
                "policy",
                format!(
                    "unknown policy {:?}: expected one of {}",
                    p.get_ref(),
                    SimPolicy::names()
                ),
            )
        })?),
    };
    let cluster_at = doc.cluster.span().start;
    let cluster = doc.cluster.into_inner();
    let sources = [
        !cluster.sites.is_empty(),
        cluster.openb_nodes.is_some(),
        cluster.inventory.is_some(),
    ];
    if sources.iter().filter(|&&s| s).count() != 1 {
        return Err(error(
            cluster_at,
            "cluster",
            "give exactly one of [[cluster.sites]], openb_nodes or inventory".into(),
        ));
    }
    if (cluster.site.is_some() || cluster.jurisdiction.is_some()) && cluster.openb_nodes.is_none() {
        return Err(error(
            cluster_at,
            "cluster.site",
            "site and jurisdiction name the site of openb_nodes only".into(),
        ));
    }
    let source = if let Some(path) = cluster.openb_nodes {
        ClusterSource::OpenbNodes {
            path,
            site: cluster.site.unwrap_or_else(|| crate::openb::SITE.into()),
            jurisdiction: cluster
                .jurisdiction
                .unwrap_or_else(|| crate::openb::JURISDICTION.into()),
        }
    } else if let Some(path) = cluster.inventory {
        if !cluster.links.is_empty() {
            return Err(error(
                cluster_at,
                "cluster.links",
                "an inventory has its own links".into(),
            ));
        }
        ClusterSource::Inventory { path }
    } else {
        let mut sites = Vec::new();
        for (i, site) in cluster.sites.into_iter().enumerate() {
            let at = site.span().start;
            let site = site.into_inner();
            let field = |f: &str| format!("cluster.sites[{i}].{f}");
            Jurisdiction::parse(&site.jurisdiction)
                .map_err(|e| error(at, &field("jurisdiction"), e))?;
            if site.nodes.is_empty() {
                return Err(error(at, &field("nodes"), "a site needs nodes".into()));
            }
            let mut groups = Vec::new();
            for (k, group) in site.nodes.into_iter().enumerate() {
                let at = group.span().start;
                let g = group.into_inner();
                let field = |f: &str| format!("cluster.sites[{i}].nodes[{k}].{f}");
                if g.count == 0 || g.count > NODES_MAX {
                    return Err(error(
                        at,
                        &field("count"),
                        format!("must be 1..={NODES_MAX}"),
                    ));
                }
                if g.gpus > GPUS_PER_NODE_MAX as u64 {
                    return Err(error(
                        at,
                        &field("gpus"),
                        format!("{} gpus, at most {GPUS_PER_NODE_MAX} per node", g.gpus),
                    ));
                }
                let model = g.model.unwrap_or_default();
                if g.gpus > 0 && model.is_empty() {
                    return Err(error(
                        at,
                        &field("model"),
                        "nodes with gpus need a model".into(),
                    ));
                }
                groups.push(NodeGroup {
                    count: g.count,
                    gpus: g.gpus as u32,
                    model: if g.gpus == 0 { String::new() } else { model },
                    cpu_milli: g.cpus.unwrap_or(NODE_CPUS_DEFAULT).saturating_mul(1_000),
                    memory_mib: g
                        .memory_gib
                        .unwrap_or(NODE_MEMORY_GIB_DEFAULT)
                        .saturating_mul(1_024),
                });
            }
            sites.push(SiteSpec {
                region: site
                    .region
                    .unwrap_or_else(|| site.jurisdiction.to_ascii_lowercase()),
                name: site.name,
                jurisdiction: site.jurisdiction,
                groups,
            });
        }
        ClusterSource::Sites(sites)
    };
    let mut links = Vec::new();
    for (i, link) in cluster.links.into_iter().enumerate() {
        let at = link.span().start;
        let l = link.into_inner();
        if !(0.0..1e6).contains(&l.rtt_ms) {
            return Err(error(
                at,
                &format!("cluster.links[{i}].rtt_ms"),
                format!("{} is not a round-trip time in ms", l.rtt_ms),
            ));
        }
        links.push((l.a, l.b, l.rtt_ms));
    }
    let default_rtt_ms = cluster.default_rtt_ms.unwrap_or(SITE_RTT_MS_DEFAULT);
    if !(0.0..1e6).contains(&default_rtt_ms) {
        return Err(error(
            cluster_at,
            "cluster.default_rtt_ms",
            format!("{default_rtt_ms} is not a round-trip time in ms"),
        ));
    }

    let workload_at = doc.workload.span().start;
    let workload = doc.workload.into_inner();
    let format = match &workload.format {
        None => None,
        Some(f) => Some(Format::parse(f).ok_or_else(|| {
            error(
                workload_at,
                "workload.format",
                format!("unknown format {f:?}: expected openb, swf or jsonl"),
            )
        })?),
    };
    let mut swf = SwfMapping::default();
    if let Some(p) = workload.procs_per_gpu {
        if p == 0 {
            return Err(error(
                workload_at,
                "workload.procs_per_gpu",
                "must be at least 1".into(),
            ));
        }
        swf.procs_per_gpu = p;
    }
    if let Some(g) = workload.gpus_per_node {
        if g == 0 || g as usize > GPUS_PER_NODE_MAX {
            return Err(error(
                workload_at,
                "workload.gpus_per_node",
                format!("must be 1..={GPUS_PER_NODE_MAX}"),
            ));
        }
        swf.gpus_per_node = g;
    }
    if let Some(t) = &workload.tenant_from {
        swf.tenant = SwfTenant::parse(t).ok_or_else(|| {
            error(
                workload_at,
                "workload.tenant_from",
                format!("unknown field {t:?}: expected user, group, queue or partition"),
            )
        })?;
    }
    let arrival_scale = workload.arrival_scale.unwrap_or(1.0);
    if !(arrival_scale > 0.0 && arrival_scale <= 1e6) {
        return Err(error(
            workload_at,
            "workload.arrival_scale",
            format!("{arrival_scale} is not a positive factor (at most 1000000)"),
        ));
    }
    let codes = |list: &[String], at: usize, field: &str| -> Result<Vec<Jurisdiction>, LoadError> {
        list.iter()
            .map(|j| Jurisdiction::parse(j).map_err(|e| error(at, field, e)))
            .collect()
    };
    let default_jurisdictions = match &workload.default_jurisdictions {
        None => None,
        Some(list) => Some(codes(list, workload_at, "workload.default_jurisdictions")?),
    };
    let mut tenants: Vec<TenantSpec> = Vec::new();
    for (i, t) in workload.tenants.into_iter().enumerate() {
        let at = t.span().start;
        let t = t.into_inner();
        let field = format!("workload.tenants[{i}].jurisdictions");
        if tenants.iter().any(|x| x.name == t.name) {
            return Err(error(
                at,
                &format!("workload.tenants[{i}].name"),
                format!("tenant {:?} appears twice", t.name),
            ));
        }
        tenants.push(TenantSpec {
            jurisdictions: codes(&t.jurisdictions, at, &field)?,
            name: t.name,
            line: line_of(text, at),
        });
    }

    let mut changes = Vec::new();
    for (i, c) in doc.changes.into_iter().enumerate() {
        let at = c.span().start;
        let change = parse_change(c.into_inner())
            .map_err(|(field, why)| error(at, &format!("changes[{i}].{field}"), why))?;
        changes.push(ChangeAt {
            change,
            idx: i,
            line: line_of(text, at),
        });
    }
    Ok(ScenarioFile {
        file: file.to_string(),
        name: doc.name.unwrap_or_else(|| file.to_string()),
        seed,
        policy,
        cluster: source,
        links,
        default_rtt_ms,
        trace: workload.trace,
        format,
        swf,
        arrival_scale,
        tenants,
        default_jurisdictions,
        changes,
        lines: (line_of(text, cluster_at), line_of(text, workload_at)),
    })
}

/// One change; errors are `(field, why)`.
fn parse_change(c: ChangeToml) -> Result<Change, (String, String)> {
    let kind = c.kind.clone();
    let fail = |field: &str, why: String| (field.to_string(), why);
    let time = |t: &Option<TimeToml>, field: &str| -> Result<Option<u64>, (String, String)> {
        match t {
            None => Ok(None),
            Some(TimeToml::Seconds(s)) => seconds_to_ms(*s)
                .map(Some)
                .ok_or_else(|| fail(field, format!("{s} is not a time in seconds"))),
            Some(TimeToml::Text(t)) => parse_time(t).map(Some).map_err(|e| fail(field, e)),
        }
    };
    let at = time(&c.at, "at")?;
    let until = time(&c.until, "until")?;
    let need =
        |v: Option<u64>, field: &str| v.ok_or_else(|| fail(field, format!("{kind} needs it")));
    let need_str = |v: &Option<String>, field: &str| {
        v.clone()
            .ok_or_else(|| fail(field, format!("{kind} needs it")))
    };
    // Fields each kind takes; any other field set is an error.
    let allowed: &[&str] = match kind.as_str() {
        "add-gpus" => &[
            "at",
            "site",
            "model",
            "gpus",
            "gpus_per_node",
            "cpus",
            "memory_gib",
        ],
        "remove-gpus" => &["at", "site", "model", "gpus"],
        "outage" => &["at", "until", "site"],
        "drain" | "fail" => &["at", "until", "site", "nodes"],
        "restrict-tenant" => &["at", "tenant", "jurisdictions"],
        "policy" => &["policy"],
        _ => {
            return Err(fail(
                "kind",
                format!(
                    "unknown change {kind:?}: expected add-gpus, remove-gpus, outage, drain, \
                     fail, restrict-tenant or policy"
                ),
            ))
        }
    };
    let set = [
        ("at", c.at.is_some()),
        ("until", c.until.is_some()),
        ("site", c.site.is_some()),
        ("model", c.model.is_some()),
        ("gpus", c.gpus.is_some()),
        ("gpus_per_node", c.gpus_per_node.is_some()),
        ("cpus", c.cpus.is_some()),
        ("memory_gib", c.memory_gib.is_some()),
        ("nodes", c.nodes.is_some()),
        ("tenant", c.tenant.is_some()),
        ("jurisdictions", c.jurisdictions.is_some()),
        ("policy", c.policy.is_some()),
    ];
    if let Some((field, _)) = set.iter().find(|(f, s)| *s && !allowed.contains(f)) {
        return Err(fail(field, format!("{kind} does not take {field}")));
    }
    if let (Some(a), Some(u)) = (at, until) {
        if u <= a {
            return Err(fail("until", "must be after at".into()));
        }
    }
    let gpus = |field: &str| -> Result<u64, (String, String)> {
        match c.gpus {
            Some(g) if g > 0 && g <= NODES_MAX * GPUS_PER_NODE_MAX as u64 => Ok(g),
            Some(g) => Err(fail(field, format!("{g} gpus: must be positive"))),
            None => Err(fail(field, format!("{kind} needs it"))),
        }
    };
    let target = || -> Result<NodeTarget, (String, String)> {
        match (&c.nodes, &c.site) {
            (Some(nodes), None) if !nodes.is_empty() => Ok(NodeTarget::Nodes(nodes.clone())),
            (None, Some(site)) => Ok(NodeTarget::Site(site.clone())),
            _ => Err(fail(
                "nodes",
                format!("{kind} needs nodes = [...] or site, not both"),
            )),
        }
    };
    Ok(match kind.as_str() {
        "add-gpus" => {
            let gpus_per_node = match c.gpus_per_node {
                None => None,
                Some(g) if g > 0 && g <= GPUS_PER_NODE_MAX as u64 => Some(g as u32),
                Some(g) => {
                    return Err(fail(
                        "gpus_per_node",
                        format!("{g}: must be 1..={GPUS_PER_NODE_MAX}"),
                    ))
                }
            };
            Change::AddGpus {
                at_ms: need(at, "at")?,
                site: need_str(&c.site, "site")?,
                model: need_str(&c.model, "model")?,
                gpus: gpus("gpus")?,
                gpus_per_node,
                cpu_milli: c.cpus.map(|x| x.saturating_mul(1_000)),
                memory_mib: c.memory_gib.map(|x| x.saturating_mul(1_024)),
            }
        }
        "remove-gpus" => Change::RemoveGpus {
            at_ms: need(at, "at")?,
            site: need_str(&c.site, "site")?,
            model: need_str(&c.model, "model")?,
            gpus: gpus("gpus")?,
        },
        "outage" => Change::Outage {
            site: need_str(&c.site, "site")?,
            from_ms: need(at, "at")?,
            until_ms: until,
        },
        "drain" => Change::Drain {
            target: target()?,
            at_ms: need(at, "at")?,
            until_ms: until,
        },
        "fail" => Change::Fail {
            target: target()?,
            at_ms: need(at, "at")?,
            until_ms: until,
        },
        "restrict-tenant" => {
            let list = c
                .jurisdictions
                .clone()
                .ok_or_else(|| fail("jurisdictions", format!("{kind} needs it")))?;
            let jurisdictions = list
                .iter()
                .map(|j| Jurisdiction::parse(j).map_err(|e| fail("jurisdictions", e)))
                .collect::<Result<Vec<_>, _>>()?;
            Change::RestrictTenant {
                tenant: need_str(&c.tenant, "tenant")?,
                jurisdictions,
                at_ms: at.unwrap_or(0),
            }
        }
        "policy" => {
            let name = need_str(&c.policy, "policy")?;
            Change::Policy(SimPolicy::parse(&name).ok_or_else(|| {
                fail(
                    "policy",
                    format!(
                        "unknown policy {name:?}: expected one of {}",
                        SimPolicy::names()
                    ),
                )
            })?)
        }
        _ => unreachable!("kinds checked above"),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------------------
// Building the runs.

/// The cluster file a scenario names, read by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFile {
    /// Its name, for errors.
    pub file: String,
    /// Its text.
    pub text: String,
}

/// Everything both runs of a scenario need.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The cluster, with every GPU any change adds.
    pub topology: Topology,
    /// Nodes down at the start: GPUs a change adds later. The baseline never adds them.
    pub initially_down: Vec<NodeId>,
    /// The scenario's node events, in change order.
    pub events: Vec<NodeEvent>,
    /// The baseline's jobs.
    pub baseline_jobs: Vec<JobArrival>,
    /// The scenario's jobs (tenant restrictions applied).
    pub scenario_jobs: Vec<JobArrival>,
    /// The scenario's policy when a change sets one.
    pub scenario_policy: Option<SimPolicy>,
    /// FGD's and FragPack's target workload, from the trace's jobs.
    pub target: TargetWorkload,
}

/// The cluster of a scenario before any change. `cluster_file` is the file that
/// `openb_nodes` or `inventory` names (`None` for sites written in the scenario).
pub fn base_cluster(
    scenario: &ScenarioFile,
    cluster_file: Option<&ClusterFile>,
) -> Result<TopologyDesc, LoadError> {
    let scenario_error = |field: &str, why: String| LoadError {
        file: scenario.file.clone(),
        line: scenario.lines.0,
        message: format!("{field}: {why}"),
    };
    let need_file =
        || cluster_file.ok_or_else(|| scenario_error("cluster", "file not read".into()));
    let mut desc = match &scenario.cluster {
        ClusterSource::Sites(sites) => sites_desc(sites),
        ClusterSource::OpenbNodes {
            site, jurisdiction, ..
        } => {
            let f = need_file()?;
            let nodes = crate::loader::parse_nodes(&f.file, &f.text)?;
            Jurisdiction::parse(jurisdiction)
                .map_err(|e| scenario_error("cluster.jurisdiction", e))?;
            openb_desc(&nodes, site, jurisdiction)
        }
        ClusterSource::Inventory { .. } => {
            let f = need_file()?;
            sovra_fabric::inventory::parse_inventory(&f.text).map_err(|e| {
                use sovra_fabric::inventory::InventoryError;
                let (line, message) = match e {
                    InventoryError::Toml { at, message } => (at.map_or(1, |p| p.line), message),
                    InventoryError::Invalid { line, message } => (line, message),
                    InventoryError::Topology(t) => (1, t.to_string()),
                };
                LoadError {
                    file: f.file.clone(),
                    line,
                    message: format!("inventory: {message}"),
                }
            })?
        }
    };
    if !matches!(scenario.cluster, ClusterSource::Inventory { .. }) {
        let names: Vec<String> = desc.sites.iter().map(|s| s.name.clone()).collect();
        for (a, b, _) in &scenario.links {
            for s in [a, b] {
                if !names.contains(s) {
                    return Err(scenario_error(
                        "cluster.links",
                        format!("unknown site {s:?}"),
                    ));
                }
            }
        }
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let rtt_ms = scenario
                    .links
                    .iter()
                    .find(|(x, y, _)| (x == a && y == b) || (x == b && y == a))
                    .map_or(scenario.default_rtt_ms, |l| l.2);
                desc.site_links.push(SiteLinkDesc {
                    a: a.clone(),
                    b: b.clone(),
                    rtt_ns: (rtt_ms * 1e6).round() as u64,
                    gbit_per_s: 100,
                });
            }
        }
    }
    Ok(desc)
}

fn model_desc(name: &str) -> GpuModelDesc {
    GpuModelDesc {
        name: name.to_string(),
        memory_mib: 0,
        nvlink_gbit_per_s: 0,
        mig_profiles: Vec::new(),
    }
}

fn add_model(desc: &mut TopologyDesc, model: &str) {
    if !model.is_empty() && !desc.models.iter().any(|m| m.name == model) {
        desc.models.push(model_desc(model));
    }
}

fn node_desc(
    name: String,
    site: &str,
    leaf: String,
    cpu: u64,
    mem: u64,
    gpus: u32,
    model: &str,
) -> NodeDesc {
    NodeDesc {
        name,
        site: site.to_string(),
        spine: "spine-0".into(),
        leaf,
        nvlink_domain: None,
        cpu_milli: cpu,
        memory_mib: mem,
        gpus: (0..gpus)
            .map(|_| GpuDesc {
                model: model.to_string(),
                mig: false,
            })
            .collect(),
        nics: Vec::new(),
    }
}

fn sites_desc(sites: &[SiteSpec]) -> TopologyDesc {
    let mut desc = TopologyDesc::default();
    for s in sites {
        desc.sites.push(SiteDesc {
            name: s.name.clone(),
            jurisdiction: s.jurisdiction.clone(),
            region: s.region.clone(),
            fabric: SiteFabric::default(),
        });
        let mut i = 0usize;
        for g in &s.groups {
            add_model(&mut desc, &g.model);
            for _ in 0..g.count {
                desc.nodes.push(node_desc(
                    format!("{}-n{:04}", s.name, i + 1),
                    &s.name,
                    format!("leaf-{}", i / LEAF_NODES),
                    g.cpu_milli,
                    g.memory_mib,
                    g.gpus,
                    &g.model,
                ));
                i += 1;
            }
        }
    }
    desc
}

fn openb_desc(nodes: &[NodeRow], site: &str, jurisdiction: &str) -> TopologyDesc {
    let mut desc = TopologyDesc {
        sites: vec![SiteDesc {
            name: site.to_string(),
            jurisdiction: jurisdiction.to_string(),
            region: jurisdiction.to_ascii_lowercase(),
            fabric: SiteFabric::default(),
        }],
        ..TopologyDesc::default()
    };
    for (i, n) in nodes.iter().enumerate() {
        add_model(&mut desc, &n.model);
        desc.nodes.push(node_desc(
            n.name.clone(),
            site,
            format!("leaf-{}", i / LEAF_NODES),
            n.cpu_milli,
            n.memory_mib,
            n.gpus,
            &n.model,
        ));
    }
    desc
}

/// Builds both runs of `scenario` on `base` (from [`base_cluster`]) with `trace`.
pub fn prepare(
    scenario: &ScenarioFile,
    mut base: TopologyDesc,
    trace: &Trace,
) -> Result<Prepared, LoadError> {
    let error = |line: usize, field: String, why: String| LoadError {
        file: scenario.file.clone(),
        line,
        message: format!("{field}: {why}"),
    };
    // GPUs added: nodes appended to their site, in new leaves.
    let site_names: Vec<String> = base.sites.iter().map(|s| s.name.clone()).collect();
    let known_site = |c: &ChangeAt, site: &str| {
        if site_names.iter().any(|s| s == site) {
            Ok(())
        } else {
            Err(error(
                c.line,
                format!("changes[{}].site", c.idx),
                format!(
                    "unknown site {site:?} (the cluster has {})",
                    site_names.join(", ")
                ),
            ))
        }
    };
    let base_nodes = base.nodes.len();
    let mut added: Vec<(usize, Vec<String>)> = Vec::new();
    let mut added_per_site: BTreeMap<String, usize> = BTreeMap::new();
    for c in &scenario.changes {
        let Change::AddGpus {
            site,
            model,
            gpus,
            gpus_per_node,
            cpu_milli,
            memory_mib,
            ..
        } = &c.change
        else {
            continue;
        };
        known_site(c, site)?;
        let template = base.nodes[..base_nodes]
            .iter()
            .filter(|n| n.gpus.first().is_some_and(|g| &g.model == model))
            .min_by_key(|n| n.site != *site);
        let field = |f: &str| format!("changes[{}].{f}", c.idx);
        let no_template = |f: &str| {
            error(
                c.line,
                field(f),
                format!("no {model} node to copy: set gpus_per_node, cpus and memory_gib"),
            )
        };
        let per_node = match (gpus_per_node, template) {
            (Some(g), _) => *g,
            (None, Some(t)) => t.gpus.len() as u32,
            (None, None) => return Err(no_template("gpus_per_node")),
        };
        let cpu = match (cpu_milli, template) {
            (Some(c), _) => *c,
            (None, Some(t)) => t.cpu_milli,
            (None, None) => return Err(no_template("cpus")),
        };
        let mem = match (memory_mib, template) {
            (Some(m), _) => *m,
            (None, Some(t)) => t.memory_mib,
            (None, None) => return Err(no_template("memory_gib")),
        };
        if gpus % per_node as u64 != 0 {
            return Err(error(
                c.line,
                field("gpus"),
                format!("{gpus} gpus do not make whole nodes of {per_node} gpus"),
            ));
        }
        let count = gpus / per_node as u64;
        if (base.nodes.len() as u64).saturating_add(count) > NODES_MAX {
            return Err(error(
                c.line,
                field("gpus"),
                format!("more than {NODES_MAX} nodes"),
            ));
        }
        add_model(&mut base, model);
        let spine = base.nodes[..base_nodes]
            .iter()
            .rev()
            .find(|n| &n.site == site)
            .map_or_else(|| "spine-0".to_string(), |n| n.spine.clone());
        let mut names = Vec::new();
        for _ in 0..count {
            let k = added_per_site.entry(site.clone()).or_default();
            let name = format!("{site}-new{:04}", *k + 1);
            let mut node = node_desc(
                name.clone(),
                site,
                format!("new-{}", *k / LEAF_NODES),
                cpu,
                mem,
                per_node,
                model,
            );
            node.spine = spine.clone();
            *k += 1;
            base.nodes.push(node);
            names.push(name);
        }
        added.push((c.idx, names));
    }
    let topology = Topology::build(base)
        .map_err(|e| error(scenario.lines.0, "cluster".into(), e.to_string()))?;
    let id = |name: &str| topology.node_by_name(name).expect("built from these names");
    let mut initially_down: Vec<NodeId> = added
        .iter()
        .flat_map(|(_, names)| names.iter().map(|n| id(n)))
        .collect();
    initially_down.sort_unstable();
    let is_added: BTreeSet<NodeId> = initially_down.iter().copied().collect();

    // Node events.
    let mut events = Vec::new();
    let mut removed: BTreeSet<NodeId> = BTreeSet::new();
    let mut scenario_policy = None;
    let mut restrictions: Vec<(&str, u64, &[Jurisdiction], &ChangeAt)> = Vec::new();
    let site_nodes = |site: &str| -> Vec<NodeId> {
        let s = topology.site_by_name(site).expect("checked");
        let r = topology.site(s).nodes.clone();
        (r.start..r.end)
            .map(|i| NodeId::from_idx(i as usize))
            .collect()
    };
    let targets = |c: &ChangeAt, target: &NodeTarget| -> Result<Vec<NodeId>, LoadError> {
        match target {
            NodeTarget::Site(site) => {
                known_site(c, site)?;
                Ok(site_nodes(site))
            }
            NodeTarget::Nodes(names) => names
                .iter()
                .map(|n| {
                    topology.node_by_name(n).ok_or_else(|| {
                        error(
                            c.line,
                            format!("changes[{}].nodes", c.idx),
                            format!("unknown node {n:?}"),
                        )
                    })
                })
                .collect(),
        }
    };
    let push = |events: &mut Vec<NodeEvent>, nodes: &[NodeId], at_ms: u64, change| {
        for &node in nodes {
            events.push(NodeEvent {
                at_ms,
                node,
                change,
            });
        }
    };
    for c in &scenario.changes {
        match &c.change {
            Change::AddGpus { at_ms, .. } => {
                let names = &added.iter().find(|(i, _)| *i == c.idx).expect("added").1;
                let nodes: Vec<NodeId> = names.iter().map(|n| id(n)).collect();
                push(&mut events, &nodes, *at_ms, NodeChange::Up);
            }
            Change::RemoveGpus {
                at_ms,
                site,
                model,
                gpus,
            } => {
                known_site(c, site)?;
                let mut left = *gpus;
                let mut nodes = Vec::new();
                for node in site_nodes(site).into_iter().rev() {
                    let n = topology.node(node);
                    let of_model = n
                        .model
                        .is_some_and(|m| topology.model(m).name.eq_ignore_ascii_case(model));
                    let g = n.gpu_count() as u64;
                    if !of_model || is_added.contains(&node) || removed.contains(&node) {
                        continue;
                    }
                    if g > 0 && g <= left {
                        left -= g;
                        nodes.push(node);
                        removed.insert(node);
                    }
                    if left == 0 {
                        break;
                    }
                }
                if left > 0 {
                    return Err(error(
                        c.line,
                        format!("changes[{}].gpus", c.idx),
                        format!(
                            "{site} has no whole nodes of {model} making {gpus} gpus \
                             ({left} left over)"
                        ),
                    ));
                }
                push(&mut events, &nodes, *at_ms, NodeChange::Down);
            }
            Change::Outage {
                site,
                from_ms,
                until_ms,
            } => {
                known_site(c, site)?;
                let nodes = site_nodes(site);
                push(&mut events, &nodes, *from_ms, NodeChange::Down);
                if let Some(until) = until_ms {
                    push(&mut events, &nodes, *until, NodeChange::Up);
                }
            }
            Change::Drain {
                target,
                at_ms,
                until_ms,
            } => {
                let nodes = targets(c, target)?;
                push(&mut events, &nodes, *at_ms, NodeChange::Drain);
                if let Some(until) = until_ms {
                    push(&mut events, &nodes, *until, NodeChange::Resume);
                }
            }
            Change::Fail {
                target,
                at_ms,
                until_ms,
            } => {
                let nodes = targets(c, target)?;
                push(&mut events, &nodes, *at_ms, NodeChange::Down);
                if let Some(until) = until_ms {
                    push(&mut events, &nodes, *until, NodeChange::Up);
                }
            }
            Change::RestrictTenant {
                tenant,
                jurisdictions,
                at_ms,
            } => restrictions.push((tenant, *at_ms, jurisdictions, c)),
            Change::Policy(p) => scenario_policy = Some(*p),
        }
    }

    // Jurisdictions.
    let cluster_codes = topology.jurisdictions().to_vec();
    let check_codes = |codes: &[Jurisdiction], line: usize, field: String| match codes
        .iter()
        .find(|j| !cluster_codes.contains(j))
    {
        None => Ok(()),
        Some(j) => Err(error(
            line,
            field,
            format!(
                "jurisdiction {j} has no site in the cluster ({})",
                join(&cluster_codes)
            ),
        )),
    };
    let tenants_in_trace: BTreeSet<&str> = trace.jobs.iter().map(|j| j.tenant.as_str()).collect();
    let no_such_tenant = |name: &str, line: usize, field: String| {
        error(
            line,
            field,
            format!("no job of tenant {name:?} in the trace"),
        )
    };
    for (i, t) in scenario.tenants.iter().enumerate() {
        check_codes(
            &t.jurisdictions,
            t.line,
            format!("workload.tenants[{i}].jurisdictions"),
        )?;
        if !tenants_in_trace.contains(t.name.as_str()) {
            return Err(no_such_tenant(
                &t.name,
                t.line,
                format!("workload.tenants[{i}].name"),
            ));
        }
    }
    if let Some(d) = &scenario.default_jurisdictions {
        check_codes(d, scenario.lines.1, "workload.default_jurisdictions".into())?;
    }
    for (tenant, _, codes, c) in &restrictions {
        check_codes(codes, c.line, format!("changes[{}].jurisdictions", c.idx))?;
        if !tenants_in_trace.contains(tenant) {
            return Err(no_such_tenant(
                tenant,
                c.line,
                format!("changes[{}].tenant", c.idx),
            ));
        }
    }
    restrictions.sort_by_key(|r| r.1);
    let default = scenario
        .default_jurisdictions
        .clone()
        .unwrap_or_else(|| cluster_codes.clone());
    let mut baseline_jobs = Vec::with_capacity(trace.jobs.len());
    let mut scenario_jobs = Vec::with_capacity(trace.jobs.len());
    for job in &trace.jobs {
        let tenant = scenario.tenants.iter().find(|t| t.name == job.tenant);
        let allowed = tenant.map_or(&default, |t| &t.jurisdictions);
        let base = match &job.jurisdictions {
            None => allowed.clone(),
            Some(own) => intersect(own, allowed),
        };
        let restricted = restrictions
            .iter()
            .rev()
            .find(|(t, at, _, _)| *t == job.tenant && *at <= job.submit_ms)
            .map_or_else(|| base.clone(), |(_, _, codes, _)| intersect(&base, codes));
        let arrival = |jurisdictions| JobArrival {
            spec: job.spec(jurisdictions),
            at_ms: job.submit_ms,
            duration_ms: job.duration_ms,
        };
        baseline_jobs.push(arrival(base));
        scenario_jobs.push(arrival(restricted));
    }
    let models: Vec<String> = topology.models().iter().map(|m| m.name.clone()).collect();
    let specs: Vec<_> = baseline_jobs.iter().map(|j| j.spec.clone()).collect();
    let target = target_workload(&specs, &models);
    Ok(Prepared {
        topology,
        initially_down,
        events,
        baseline_jobs,
        scenario_jobs,
        scenario_policy,
        target,
    })
}

/// `a` ∩ `b`, in `a`'s order.
fn intersect(a: &[Jurisdiction], b: &[Jurisdiction]) -> Vec<Jurisdiction> {
    a.iter().filter(|j| b.contains(j)).copied().collect()
}

fn join(codes: &[Jurisdiction]) -> String {
    codes
        .iter()
        .map(|j| j.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("90"), Ok(90_000));
        assert_eq!(parse_time("1.5"), Ok(1_500));
        assert_eq!(parse_time("90s"), Ok(90_000));
        assert_eq!(parse_time("15m"), Ok(900_000));
        assert_eq!(parse_time("6h"), Ok(21_600_000));
        assert_eq!(parse_time("1d12h"), Ok(129_600_000));
        assert_eq!(parse_time("1d 12h"), Ok(129_600_000));
        assert_eq!(parse_time("2w"), Ok(1_209_600_000));
        assert_eq!(parse_time("250ms"), Ok(250));
        for bad in ["", "h", "6x", "-1h", "1h-", "abc"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
