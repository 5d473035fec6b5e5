//! Topology summaries for `sovra topology`, and the Slurm import front end.

use std::path::Path;

use sovra_fabric::topology::Level;
use sovra_fabric::{SiteId, Topology};

use crate::{invalid, read, Failure};

/// Prints a summary: per site its jurisdiction, spines, leaves, nodes and GPUs, and the RTTs.
pub fn print_topology(topology: &Topology, json: bool) {
    let sites: Vec<serde_json::Value> = topology
        .sites()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let nodes = s.nodes.start as usize..s.nodes.end as usize;
            let gpus: u32 = nodes.clone().map(|n| topology.nodes()[n].gpu_count()).sum();
            serde_json::json!({
                "site": s.name,
                "jurisdiction": topology.site_jurisdiction(SiteId::from_idx(i)).as_str(),
                "region": s.region,
                "spines": s.spines.end - s.spines.start,
                "leaves": s.leaves.end - s.leaves.start,
                "nvlink_domains": s.domains.end - s.domains.start,
                "nodes": nodes.len(),
                "gpus": gpus,
            })
        })
        .collect();
    if json {
        let mut rtt = Vec::new();
        for a in 0..topology.sites().len() {
            for b in a + 1..topology.sites().len() {
                let (sa, sb) = (
                    sovra_fabric::SiteId::from_idx(a),
                    sovra_fabric::SiteId::from_idx(b),
                );
                rtt.push(serde_json::json!({
                    "a": topology.site(sa).name, "b": topology.site(sb).name,
                    "rtt_ms": topology.site_rtt_ns(sa, sb) as f64 / 1e6,
                }));
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "valid": true,
                "nodes": topology.nodes().len(),
                "gpus": topology.gpu_count(),
                "sites": sites,
                "site_rtt": rtt,
            })
        );
        return;
    }
    println!(
        "valid: {} sites, {} nodes, {} gpus, {} leaves",
        topology.sites().len(),
        topology.nodes().len(),
        topology.gpu_count(),
        topology.subtree_count(Level::Leaf)
    );
    for s in &sites {
        println!(
            "site {} ({}, {}): {} spines, {} leaves, {} nvlink domains, {} nodes, {} gpus",
            s["site"].as_str().unwrap_or(""),
            s["jurisdiction"].as_str().unwrap_or(""),
            s["region"].as_str().unwrap_or(""),
            s["spines"],
            s["leaves"],
            s["nvlink_domains"],
            s["nodes"],
            s["gpus"]
        );
    }
    for a in 0..topology.sites().len() {
        for b in a + 1..topology.sites().len() {
            let (sa, sb) = (
                sovra_fabric::SiteId::from_idx(a),
                sovra_fabric::SiteId::from_idx(b),
            );
            println!(
                "rtt {}-{}: {} ms",
                topology.site(sa).name,
                topology.site(sb).name,
                topology.site_rtt_ns(sa, sb) as f64 / 1e6
            );
        }
    }
}

/// Reads and converts a Slurm cluster description.
pub fn import_slurm(
    slurm_conf: &Path,
    topology_conf: Option<&Path>,
    gres_conf: Option<&Path>,
    jurisdiction: &str,
    site: Option<String>,
) -> Result<Topology, Failure> {
    use sovra_fabric::slurm;
    let at = |path: &Path, e: &dyn std::fmt::Display| {
        invalid(anyhow::anyhow!("{}: {e}", path.display()))
    };
    let conf = slurm::parse_slurm_conf(&read(slurm_conf)?).map_err(|e| at(slurm_conf, &e))?;
    let topology = match topology_conf {
        Some(p) => Some(slurm::parse_topology_conf(&read(p)?).map_err(|e| at(p, &e))?),
        None => None,
    };
    let gres = match gres_conf {
        Some(p) => Some(slurm::parse_gres_conf(&read(p)?).map_err(|e| at(p, &e))?),
        None => None,
    };
    let opts = slurm::ImportOptions {
        site,
        jurisdiction: Some(jurisdiction.to_string()),
        region: String::new(),
        blocks_are_nvlink_domains: false,
    };
    let desc = slurm::import(&conf, topology.as_ref(), gres.as_ref(), &opts)
        .map_err(|e| invalid(anyhow::anyhow!("slurm import: {e}")))?;
    Topology::build(desc).map_err(|e| invalid(anyhow::anyhow!("slurm import: {e}")))
}
