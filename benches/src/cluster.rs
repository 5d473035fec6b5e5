//! The benchmark cluster: the synthetic four-site inventory, filled to a target GPU occupancy.
//!
//! Every benchmark that needs a realistic, partly full cluster starts from [`cluster`], so two
//! benchmarks given the same `(nodes, occupancy, seed)` measure the same cluster, bit for bit.
//! The inventory is `sovra_fabric::synth::SynthConfig::four_sites(nodes)` (four sites in four
//! jurisdictions, 8 GPUs per node) and the occupancy comes from `synth::fill` with its default
//! skew across spines and leaves.

use anyhow::{ensure, Context};
use sovra_fabric::synth::{self, FillConfig, SynthConfig};
use sovra_fabric::{Ledger, Topology};

/// Inventories of at least this many nodes grow in whole rounds of it (one leaf per spine).
const NODES_ROUND_LARGE: usize = 256;
/// Smaller inventories grow in rounds of this many nodes.
const NODES_ROUND_SMALL: usize = 16;
const _: () = assert!(NODES_ROUND_LARGE % NODES_ROUND_SMALL == 0);

/// Largest distance allowed between the requested and the achieved occupancy. `fill` misses
/// only when CPU or memory strand GPUs; a bigger miss would mislabel every number.
const OCCUPANCY_TOLERANCE: f64 = 0.005;

/// Whether [`cluster`] can build an inventory of `nodes` nodes: a multiple of 256 from 256 up,
/// a positive multiple of 16 below.
pub fn nodes_supported(nodes: usize) -> bool {
    if nodes >= NODES_ROUND_LARGE {
        nodes % NODES_ROUND_LARGE == 0
    } else {
        nodes > 0 && nodes % NODES_ROUND_SMALL == 0
    }
}

/// Builds the four-site inventory of `nodes` nodes and fills a fresh ledger to `occupancy` of
/// its GPUs, deterministically for `seed`.
pub fn cluster(nodes: usize, occupancy: f64, seed: u64) -> anyhow::Result<(Topology, Ledger)> {
    ensure!(
        nodes_supported(nodes),
        "cannot build a four-site inventory of {nodes} nodes: use a multiple of \
         {NODES_ROUND_LARGE} (or of {NODES_ROUND_SMALL} below {NODES_ROUND_LARGE})"
    );
    ensure!(
        (0.0..=1.0).contains(&occupancy),
        "occupancy {occupancy} is outside 0..=1"
    );
    let desc = synth::generate(&SynthConfig::four_sites(nodes));
    let topology = Topology::build(desc).context("building the synthetic inventory")?;
    let mut ledger = Ledger::new(&topology);
    let fill_config = FillConfig {
        occupancy,
        ..FillConfig::default()
    };
    let report = synth::fill(&topology, &mut ledger, &fill_config, seed);
    ensure!(
        (report.occupancy_achieved - occupancy).abs() <= OCCUPANCY_TOLERANCE,
        "fill reached occupancy {:.4}, not the requested {occupancy}",
        report.occupancy_achieved
    );
    Ok((topology, ledger))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_supported_follows_four_sites() {
        let supported: Vec<usize> = [0, 8, 16, 48, 250, 256, 300, 512, 4096]
            .into_iter()
            .filter(|&n| nodes_supported(n))
            .collect();
        assert_eq!(supported, vec![16, 48, 256, 512, 4096]);
    }

    #[test]
    fn small_cluster_is_filled_and_deterministic() {
        let (topology, ledger) = cluster(256, 0.5, 7).unwrap();
        assert_eq!(topology.gpu_count(), 2048);
        let (_, again) = cluster(256, 0.5, 7).unwrap();
        assert_eq!(ledger, again);
    }
}
