//! Finding this node's inventory (NVML, or a declared simulation), its NICs from sysfs, and
//! showing it as text or JSON.
//!
//! This is a boundary module: the JSON built here is the inventory's external form, separate
//! from the core types. A simulated inventory says so at the top of the text and in a
//! `"simulated": true` field.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use super::nvml::{self, NvmlProbeError};
use crate::core::inventory::{parse_fake_gpus, Inventory, NicInfo, NvLinkPeer};

/// Where the inventory comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventorySource {
    /// NVML; fails without a driver.
    Nvml,
    /// A node without GPUs (`--no-gpus`): nothing to ask NVML.
    NoGpus,
    /// A declaration (`--fake-gpus 8xH100`, optionally `--fake-nics 8x400`).
    Fake {
        /// The GPU declaration.
        gpus: String,
        /// The NIC declaration.
        nics: Option<String>,
    },
}

/// Why no inventory could be made. Messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// NVML failed.
    #[error(transparent)]
    Nvml(#[from] NvmlProbeError),
    /// The declaration is malformed.
    #[error("{0}")]
    Fake(String),
}

/// Builds the inventory of node `node`.
pub fn detect(source: &InventorySource, node: &str) -> Result<Inventory, InventoryError> {
    match source {
        InventorySource::Nvml => Ok(nvml::probe(node)?),
        InventorySource::NoGpus => Ok(Inventory {
            node: node.to_string(),
            simulated: false,
            source: "--no-gpus".into(),
            driver_version: None,
            cuda_version: None,
            gpus: Vec::new(),
            nics: sysfs_nics(),
        }),
        InventorySource::Fake { gpus, nics } => {
            parse_fake_gpus(gpus, nics.as_deref(), node).map_err(InventoryError::Fake)
        }
    }
}

/// This machine's host name (the default node name).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// InfiniBand / RoCE devices from `/sys/class/infiniband`, with port 1's rate.
pub fn sysfs_nics() -> Vec<NicInfo> {
    let root = Path::new("/sys/class/infiniband");
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut nics: Vec<NicInfo> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let dir = entry.path();
            let rate = fs::read_to_string(dir.join("ports/1/rate")).unwrap_or_default();
            let gbit_per_s = parse_ib_rate(&rate).unwrap_or(0);
            let device = fs::canonicalize(dir.join("device")).ok();
            let pci_bus_id = device
                .as_ref()
                .and_then(|d| d.file_name()?.to_str().map(str::to_string));
            let numa_node = device
                .and_then(|d| fs::read_to_string(d.join("numa_node")).ok())
                .and_then(|t| t.trim().parse::<i64>().ok())
                .and_then(|n| u32::try_from(n).ok());
            Some(NicInfo {
                name,
                gbit_per_s,
                pci_bus_id,
                numa_node,
            })
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

/// `400 Gb/sec (4X NDR)` → 400.
fn parse_ib_rate(text: &str) -> Option<u32> {
    let number = text.split_whitespace().next()?;
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value.round() as u32)
}

/// The inventory as JSON.
pub fn to_json(inv: &Inventory) -> Value {
    let gpus: Vec<Value> = inv
        .gpus
        .iter()
        .map(|g| {
            json!({
                "index": g.index,
                "uuid": g.uuid,
                "name": g.name,
                "model": g.model_key(),
                "memory_mib": g.memory_mib,
                "pci_bus_id": g.pci_bus_id,
                "numa_node": g.numa_node,
                "compute_capability": g.compute_capability.map(|(a, b)| format!("{a}.{b}")),
                "mig": {
                    "enabled": g.mig_enabled,
                    "instances": g.mig_instances.iter().map(|m| json!({
                        "uuid": m.uuid,
                        "profile": m.profile(),
                        "compute_slices": m.compute_slices,
                        "memory_slices": m.memory_slices,
                        "memory_mib": m.memory_mib,
                    })).collect::<Vec<_>>(),
                },
                "nvlinks": g.nvlinks.iter().map(|l| json!({
                    "remote_pci_bus_id": l.remote_pci_bus_id,
                    "peer": peer_name(l.peer),
                    "links": l.links,
                })).collect::<Vec<_>>(),
                "health": {
                    "healthy": g.health.healthy(),
                    "temperature_c": g.health.temperature_c,
                    "ecc_uncorrected": g.health.ecc_uncorrected,
                    "ecc_corrected": g.health.ecc_corrected,
                    "xid_last": g.health.xid_last,
                },
                "simulated": inv.simulated,
            })
        })
        .collect();
    let nics: Vec<Value> = inv
        .nics
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "gbit_per_s": n.gbit_per_s,
                "pci_bus_id": n.pci_bus_id,
                "numa_node": n.numa_node,
            })
        })
        .collect();
    json!({
        "node": inv.node,
        "simulated": inv.simulated,
        "source": inv.source,
        "driver_version": inv.driver_version,
        "cuda_version": inv.cuda_version,
        "gpus": gpus,
        "nics": nics,
    })
}

fn peer_name(peer: NvLinkPeer) -> &'static str {
    match peer {
        NvLinkPeer::Gpu => "gpu",
        NvLinkPeer::Switch => "nvswitch",
        NvLinkPeer::Other => "other",
    }
}

/// The inventory as text, one line per device.
pub fn to_text(inv: &Inventory) -> String {
    let mut out = String::new();
    if inv.simulated {
        out.push_str(&format!(
            "node {}: SIMULATED inventory ({}), no NVIDIA driver was asked\n",
            inv.node, inv.source
        ));
    } else {
        out.push_str(&format!(
            "node {}: driver {}, CUDA {}\n",
            inv.node,
            inv.driver_version.as_deref().unwrap_or("?"),
            inv.cuda_version.as_deref().unwrap_or("?")
        ));
    }
    out.push_str(&format!("gpus: {}\n", inv.gpus.len()));
    for g in &inv.gpus {
        let links: u32 = g.nvlinks.iter().map(|l| l.links).sum();
        let mig = if g.mig_enabled {
            format!("mig on ({} instances)", g.mig_instances.len())
        } else {
            "mig off".to_string()
        };
        let temp = g
            .health
            .temperature_c
            .map_or("-".to_string(), |t| format!("{t}C"));
        let health = if g.health.healthy() {
            "healthy"
        } else {
            "UNHEALTHY"
        };
        out.push_str(&format!(
            "  {:>2}  {}  {}  {} MiB  pci {}  {}  nvlink {} links  temp {}  {}{}\n",
            g.index,
            g.uuid,
            g.name,
            g.memory_mib,
            g.pci_bus_id,
            mig,
            links,
            temp,
            health,
            if inv.simulated { "  (simulated)" } else { "" }
        ));
        for m in &g.mig_instances {
            out.push_str(&format!("        {}  {}\n", m.uuid, m.profile()));
        }
    }
    out.push_str(&format!("nics: {}\n", inv.nics.len()));
    for n in &inv.nics {
        out.push_str(&format!(
            "  {}  {} Gbit/s  pci {}\n",
            n.name,
            n.gbit_per_s,
            n.pci_bus_id.as_deref().unwrap_or("?")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ib_rates() {
        assert_eq!(parse_ib_rate("400 Gb/sec (4X NDR)\n"), Some(400));
        assert_eq!(parse_ib_rate("56 Gb/sec (4X FDR)"), Some(56));
        assert_eq!(parse_ib_rate(""), None);
    }

    #[test]
    fn simulated_is_marked_everywhere() {
        let source = InventorySource::Fake {
            gpus: "2xH100".into(),
            nics: None,
        };
        let inv = detect(&source, "n1").unwrap();
        let text = to_text(&inv);
        assert!(text.starts_with("node n1: SIMULATED inventory (--fake-gpus 2xH100)"));
        assert_eq!(text.matches("(simulated)").count(), 2);
        let json = to_json(&inv);
        assert_eq!(json["simulated"], true);
        assert_eq!(json["gpus"][1]["simulated"], true);
        assert_eq!(json["gpus"][0]["model"], "H100");
    }
}
