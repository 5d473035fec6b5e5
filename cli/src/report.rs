//! Topology summaries for `sovra topology check` and the Slurm imports.

use std::fmt::Write as _;

use sovra_fabric::topology::Level;
use sovra_fabric::{SiteId, Topology};

/// Prints a summary: per site its jurisdiction, spines, leaves, nodes and GPUs, and the RTTs.
pub fn print_topology(topology: &Topology, json: bool) {
    if json {
        println!("{}", topology_json(topology));
    } else {
        print!("{}", topology_text(topology));
    }
}

fn site_summaries(topology: &Topology) -> Vec<serde_json::Value> {
    topology
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
        .collect()
}

/// Pairs of sites, each once, in site order.
fn site_pairs(topology: &Topology) -> impl Iterator<Item = (SiteId, SiteId)> {
    let n = topology.sites().len();
    (0..n).flat_map(move |a| (a + 1..n).map(move |b| (SiteId::from_idx(a), SiteId::from_idx(b))))
}

/// The summary as one JSON object.
pub fn topology_json(topology: &Topology) -> serde_json::Value {
    let rtt: Vec<serde_json::Value> = site_pairs(topology)
        .map(|(a, b)| {
            serde_json::json!({
                "a": topology.site(a).name, "b": topology.site(b).name,
                "rtt_ms": topology.site_rtt_ns(a, b) as f64 / 1e6,
            })
        })
        .collect();
    serde_json::json!({
        "valid": true,
        "nodes": topology.nodes().len(),
        "gpus": topology.gpu_count(),
        "sites": site_summaries(topology),
        "site_rtt": rtt,
    })
}

/// The summary as lines of text.
pub fn topology_text(topology: &Topology) -> String {
    let mut out = format!(
        "valid: {} sites, {} nodes, {} gpus, {} leaves\n",
        topology.sites().len(),
        topology.nodes().len(),
        topology.gpu_count(),
        topology.subtree_count(Level::Leaf)
    );
    for s in &site_summaries(topology) {
        let _ = writeln!(
            out,
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
    for (a, b) in site_pairs(topology) {
        let _ = writeln!(
            out,
            "rtt {}-{}: {} ms",
            topology.site(a).name,
            topology.site(b).name,
            topology.site_rtt_ns(a, b) as f64 / 1e6
        );
    }
    out
}
