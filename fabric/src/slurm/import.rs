//! The mapping from a parsed Slurm cluster to a [`TopologyDesc`].
//!
//! Placement: a tree topology puts a node under the leaf switch that lists it and that switch's
//! parent as its spine (leaf switches without a parent share a synthetic spine); a block
//! topology makes each block a leaf under one synthetic spine; no topology gives one spine and
//! one leaf, both `default`. GPUs come from `Gres=gpu…`, typed by slurm.conf or else by
//! gres.conf. Everything Slurm does not know is left empty or zero (see `docs/slurm-import.md`).

use std::collections::BTreeMap;

use super::hostlist::{self, quote};
use super::{
    ConfFile, GresConf, GresConfEntry, ImportOptions, NodeConf, SlurmConf, SlurmImportError,
    SlurmTopology,
};
use crate::jurisdiction::Jurisdiction;
use crate::topology::{
    GpuDesc, GpuModelDesc, NodeDesc, SiteDesc, SiteFabric, TopologyDesc, GPUS_PER_NODE_MAX,
};

/// Name of the spine and leaf used when there is no `topology.conf`.
const DEFAULT_TREE_NAME: &str = "default";
/// Model of GPUs whose type neither slurm.conf nor gres.conf gives.
const UNTYPED_GPU_MODEL: &str = "gpu";
/// Most unplaced nodes named in full in an error message.
const MISSING_NODES_SHOWN_MAX: usize = 1_000;

/// Where a node sits in sovra's tree.
struct Place<'a> {
    spine: &'a str,
    leaf: &'a str,
    nvlink_domain: Option<&'a str>,
}

fn options_error(message: String) -> SlurmImportError {
    SlurmImportError::Options { message }
}

pub(super) fn import(
    conf: &SlurmConf,
    topology: Option<&SlurmTopology>,
    gres: Option<&GresConf>,
    opts: &ImportOptions,
) -> Result<TopologyDesc, SlurmImportError> {
    let jurisdiction = match opts.jurisdiction.as_deref() {
        None | Some("") => {
            return Err(options_error(
                "a jurisdiction is required: slurm has no notion of one".to_string(),
            ))
        }
        Some(code) => Jurisdiction::parse(code).map_err(options_error)?,
    };
    let site = match (&opts.site, &conf.cluster_name) {
        (Some(site), _) | (None, Some(site)) if !site.is_empty() => site.clone(),
        _ => {
            return Err(options_error(
                "no site name: give one or set ClusterName in slurm.conf".to_string(),
            ))
        }
    };
    if conf.nodes.is_empty() {
        let mut message = "no nodes defined (NodeName lines)".to_string();
        if let Some(path) = conf.includes.first() {
            message += &format!("; include lines such as {} are not followed", quote(path));
        }
        return Err(SlurmImportError::File {
            file: ConfFile::SlurmConf,
            message,
        });
    }

    let synthetic_spine = synthetic_spine_name(topology);
    let mut places = placements(topology, &synthetic_spine, opts);
    complete_placements(conf, topology, &mut places)?;
    let gres_by_node = gres.map(gpu_entries_by_node);

    let mut models: Vec<GpuModelDesc> = Vec::new();
    let mut nodes: Vec<NodeDesc> = Vec::new();
    for node_conf in &conf.nodes {
        let typed = gpu_models(node_conf)?;
        for name in &node_conf.names {
            let place = &places[name.as_str()];
            let gpu_counts = match &typed {
                GpuModels::Typed(counts) => counts.clone(),
                GpuModels::Untyped(n) => {
                    let entries = gres_by_node.as_ref().map(|g| g.for_node(name));
                    untyped_gpus(node_conf, name, *n, entries.unwrap_or_default())?
                }
            };
            let mut gpus = Vec::new();
            for (model, count) in gpu_counts.into_iter().filter(|&(_, count)| count > 0) {
                let model = register_model(&mut models, &model);
                gpus.extend((0..count).map(|_| GpuDesc {
                    model: model.clone(),
                    mig: false,
                }));
            }
            assert!(gpus.len() <= GPUS_PER_NODE_MAX);
            nodes.push(NodeDesc {
                name: name.clone(),
                site: site.clone(),
                spine: place.spine.to_string(),
                leaf: place.leaf.to_string(),
                nvlink_domain: place.nvlink_domain.map(str::to_string),
                cpu_milli: node_conf.cpu_count().saturating_mul(1000),
                // Slurm's default RealMemory is 1 (MB): "unknown".
                memory_mib: node_conf.real_memory_mib.unwrap_or(1),
                gpus,
                // Slurm does not describe NICs (LinkSpeed is in arbitrary units).
                nics: Vec::new(),
            });
        }
    }
    let node_count: usize = conf.nodes.iter().map(|n| n.names.len()).sum();
    assert_eq!(nodes.len(), node_count);
    Ok(TopologyDesc {
        models,
        sites: vec![SiteDesc {
            name: site,
            jurisdiction: jurisdiction.as_str().to_string(),
            region: opts.region.clone(),
            fabric: SiteFabric::default(),
        }],
        nodes,
        site_links: Vec::new(),
    })
}

/// `spine0`, or the first `spineN` that no switch is called.
fn synthetic_spine_name(topology: Option<&SlurmTopology>) -> String {
    let taken = |name: &str| match topology {
        Some(SlurmTopology::Tree { switches }) => switches.iter().any(|s| s.name == name),
        _ => false,
    };
    (0..)
        .map(|i| format!("spine{i}"))
        .find(|name| !taken(name))
        .expect("finitely many switches")
}

/// Where each node named by the topology goes (names slurm.conf lacks included).
fn placements<'a>(
    topology: Option<&'a SlurmTopology>,
    synthetic_spine: &'a str,
    opts: &ImportOptions,
) -> BTreeMap<&'a str, Place<'a>> {
    let mut places = BTreeMap::new();
    match topology {
        None => {}
        Some(SlurmTopology::Tree { switches }) => {
            let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
            for s in switches {
                for child in &s.switches {
                    parent.insert(child, &s.name);
                }
            }
            for leaf in switches.iter().filter(|s| s.switches.is_empty()) {
                let spine = parent.get(leaf.name.as_str()).copied();
                for node in &leaf.nodes {
                    let place = Place {
                        spine: spine.unwrap_or(synthetic_spine),
                        leaf: &leaf.name,
                        nvlink_domain: None,
                    };
                    places.insert(node.as_str(), place);
                }
            }
        }
        Some(SlurmTopology::Block { blocks, .. }) => {
            for block in blocks {
                for node in &block.nodes {
                    let place = Place {
                        spine: synthetic_spine,
                        leaf: &block.name,
                        nvlink_domain: opts.blocks_are_nvlink_domains.then_some(&*block.name),
                    };
                    places.insert(node.as_str(), place);
                }
            }
        }
    }
    places
}

/// Gives every slurm.conf node a place: `default` without a topology, else an error for the
/// nodes the topology leaves out.
fn complete_placements<'a>(
    conf: &'a SlurmConf,
    topology: Option<&SlurmTopology>,
    places: &mut BTreeMap<&'a str, Place<'a>>,
) -> Result<(), SlurmImportError> {
    let mut missing: Vec<&str> = Vec::new();
    for name in conf.nodes.iter().flat_map(|n| &n.names) {
        if places.contains_key(name.as_str()) {
            continue;
        }
        match topology {
            None => {
                let place = Place {
                    spine: DEFAULT_TREE_NAME,
                    leaf: DEFAULT_TREE_NAME,
                    nvlink_domain: None,
                };
                places.insert(name, place);
            }
            Some(_) => missing.push(name),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let under = match topology {
        Some(SlurmTopology::Block { .. }) => "in no block",
        _ => "under no leaf switch",
    };
    let shown = hostlist::compress(&missing[..missing.len().min(MISSING_NODES_SHOWN_MAX)]);
    let more = if missing.len() > MISSING_NODES_SHOWN_MAX {
        ",…"
    } else {
        ""
    };
    Err(SlurmImportError::File {
        file: ConfFile::TopologyConf,
        message: format!(
            "{} slurm.conf node(s) {under}: {shown}{more} (slurm would treat them as unreachable)",
            missing.len()
        ),
    })
}

/// A node line's GPUs before gres.conf is consulted.
enum GpuModels {
    /// Typed in slurm.conf: (model, count) in order.
    Typed(Vec<(String, usize)>),
    /// `gpu:<n>` without a type: n GPUs whose models gres.conf may give.
    Untyped(usize),
}

fn gpu_models(node: &NodeConf) -> Result<GpuModels, SlurmImportError> {
    let line_error = |message: String| SlurmImportError::Line {
        file: ConfFile::SlurmConf,
        line: node.line,
        message,
    };
    let gpus: Vec<_> = node
        .gres
        .iter()
        .filter(|g| g.name.eq_ignore_ascii_case("gpu"))
        .collect();
    let total = gpus.iter().map(|g| g.count).fold(0u64, u64::saturating_add);
    if total > GPUS_PER_NODE_MAX as u64 {
        return Err(line_error(format!(
            "nodes {} have {total} gpus each, sovra supports at most {GPUS_PER_NODE_MAX}",
            quote(&node.names_expr)
        )));
    }
    let typed = gpus.iter().filter(|g| g.type_name.is_some()).count();
    if typed == 0 {
        return Ok(GpuModels::Untyped(total as usize));
    }
    if typed < gpus.len() {
        return Err(line_error(
            "Gres mixes typed (gpu:TYPE:N) and untyped (gpu:N) gpus".to_string(),
        ));
    }
    let counts = gpus
        .iter()
        .map(|g| (g.type_name.clone().unwrap_or_default(), g.count as usize))
        .collect();
    Ok(GpuModels::Typed(counts))
}

/// gres.conf `Name=gpu` lines: those for every node, and those naming nodes.
struct GpuEntries<'a> {
    all_nodes: Vec<&'a GresConfEntry>,
    by_node: BTreeMap<&'a str, Vec<&'a GresConfEntry>>,
}

impl<'a> GpuEntries<'a> {
    fn for_node(&self, node: &str) -> Vec<&'a GresConfEntry> {
        let mut entries = self.all_nodes.clone();
        entries.extend(self.by_node.get(node).into_iter().flatten());
        entries.sort_by_key(|e| e.line);
        entries
    }
}

fn gpu_entries_by_node(gres: &GresConf) -> GpuEntries<'_> {
    let mut entries = GpuEntries {
        all_nodes: Vec::new(),
        by_node: BTreeMap::new(),
    };
    for entry in gres
        .entries
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case("gpu"))
    {
        match &entry.nodes {
            None => entries.all_nodes.push(entry),
            Some(nodes) => {
                for node in nodes {
                    entries
                        .by_node
                        .entry(node.as_str())
                        .or_default()
                        .push(entry);
                }
            }
        }
    }
    entries
}

/// Models of a node's untyped GPUs: from its gres.conf lines when there are any (their counts
/// must add up to slurm.conf's), else all of model `gpu`.
fn untyped_gpus(
    node: &NodeConf,
    name: &str,
    count: usize,
    entries: Vec<&GresConfEntry>,
) -> Result<Vec<(String, usize)>, SlurmImportError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if entries.is_empty() {
        return Ok(vec![(UNTYPED_GPU_MODEL.to_string(), count)]);
    }
    let listed = entries
        .iter()
        .map(|e| e.count)
        .fold(0u64, u64::saturating_add);
    if listed != count as u64 {
        return Err(SlurmImportError::Line {
            file: ConfFile::GresConf,
            line: entries[0].line,
            message: format!(
                "node {name} has {listed} gpu(s) here but {count} in slurm.conf line {}",
                node.line
            ),
        });
    }
    Ok(entries
        .iter()
        .map(|e| {
            let model = e.type_name.as_deref().unwrap_or(UNTYPED_GPU_MODEL);
            (model.to_string(), e.count as usize)
        })
        .collect())
}

/// The model's name as first registered (models match case-insensitively); a new model gets
/// what Slurm knows of it: nothing (memory 0, no NVLink, no MIG).
fn register_model(models: &mut Vec<GpuModelDesc>, name: &str) -> String {
    if let Some(m) = models.iter().find(|m| m.name.eq_ignore_ascii_case(name)) {
        return m.name.clone();
    }
    models.push(GpuModelDesc {
        name: name.to_string(),
        memory_mib: 0,
        nvlink_gbit_per_s: 0,
        mig_profiles: Vec::new(),
    });
    name.to_string()
}
