//! Tenant isolation on InfiniBand: a job's traffic stays in its tenant's partition.
//!
//! Partition keys are configured by the subnet manager (OpenSM's `partitions.conf`, or UFM),
//! not by hosts; a host port carries the keys it was given in its pkey table
//! (`/sys/class/infiniband/<dev>/ports/<port>/pkeys/<index>`). The agent checks that the
//! tenant's key (`0x8000 | net`, full membership) is in the table of every active port and
//! hands its index to NCCL (`NCCL_IB_PKEY`), so the job's RDMA traffic uses that partition.
//! If the node has InfiniBand ports but the key is missing on one, the task does not start:
//! it would otherwise run outside its isolation. Without InfiniBand there is nothing to
//! apply, and the agent says so once.

use std::fs;
use std::path::Path;

/// The sysfs class directory of RDMA devices.
pub const SYSFS_IB: &str = "/sys/class/infiniband";

/// What applying a partition key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PkeyPlan {
    /// No InfiniBand device: nothing to apply.
    NoDevice,
    /// The key's index in every active port's table (the same everywhere, as NCCL needs one).
    Index(u16),
}

/// Finds `pkey` (full membership) in the pkey tables under `root` (normally [`SYSFS_IB`]).
/// Errors, one line each: a port lacks the key, or ports disagree on its index.
pub fn plan(root: &Path, pkey: u16) -> Result<PkeyPlan, String> {
    let Ok(devices) = fs::read_dir(root) else {
        return Ok(PkeyPlan::NoDevice);
    };
    let mut devices: Vec<_> = devices.flatten().map(|d| d.path()).collect();
    devices.sort();
    let mut found: Option<(u16, String)> = None;
    let mut any_port = false;
    for dev in devices {
        let dev_name = dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(ports) = fs::read_dir(dev.join("ports")) else {
            continue;
        };
        let mut ports: Vec<_> = ports.flatten().map(|p| p.path()).collect();
        ports.sort();
        for port in ports {
            let state = fs::read_to_string(port.join("state")).unwrap_or_default();
            // "4: ACTIVE"; ports that are down carry no traffic.
            if !state.contains("ACTIVE") {
                continue;
            }
            any_port = true;
            let where_ = format!(
                "{dev_name} port {}",
                port.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            let index = port_index(&port, pkey).ok_or_else(|| {
                format!(
                    "partition key {pkey:#06x} is not configured on {where_}; the subnet \
                     manager must add the tenant's partition"
                )
            })?;
            match &found {
                None => found = Some((index, where_)),
                Some((i, first)) if *i != index => {
                    return Err(format!(
                        "partition key {pkey:#06x} has index {i} on {first} but {index} on \
                         {where_}; NCCL_IB_PKEY takes one index"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    match found {
        Some((index, _)) => Ok(PkeyPlan::Index(index)),
        None if any_port => Err("no active InfiniBand port carries the partition".into()),
        None => Ok(PkeyPlan::NoDevice),
    }
}

/// The index of `pkey` in a port's table (`pkeys/<index>` holds `0x8002`), full membership.
fn port_index(port: &Path, pkey: u16) -> Option<u16> {
    let entries = fs::read_dir(port.join("pkeys")).ok()?;
    let mut best: Option<u16> = None;
    for e in entries.flatten() {
        let Ok(index) = e.file_name().to_string_lossy().parse::<u16>() else {
            continue;
        };
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let value = u16::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok();
        if value == Some(pkey) && best.is_none_or(|b| index < b) {
            best = Some(index);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(root: &Path, dev: &str, port: u32, state: &str, keys: &[(u16, u16)]) {
        let p = root.join(dev).join("ports").join(port.to_string());
        fs::create_dir_all(p.join("pkeys")).unwrap();
        fs::write(p.join("state"), state).unwrap();
        for (i, k) in keys {
            fs::write(p.join("pkeys").join(i.to_string()), format!("{k:#06x}\n")).unwrap();
        }
    }

    #[test]
    fn partition_keys_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("infiniband");
        assert_eq!(plan(&root, 0x8002), Ok(PkeyPlan::NoDevice));
        port(
            &root,
            "mlx5_0",
            1,
            "4: ACTIVE\n",
            &[(0, 0xffff), (1, 0x8002)],
        );
        port(
            &root,
            "mlx5_1",
            1,
            "4: ACTIVE\n",
            &[(0, 0xffff), (1, 0x8002), (2, 0x8003)],
        );
        port(&root, "mlx5_2", 1, "1: DOWN\n", &[(0, 0xffff)]);
        assert_eq!(plan(&root, 0x8002), Ok(PkeyPlan::Index(1)));
        let e = plan(&root, 0x8003).unwrap_err();
        assert!(
            e.contains("0x8003 is not configured on mlx5_0 port 1"),
            "{e}"
        );
        port(
            &root,
            "mlx5_3",
            1,
            "4: ACTIVE\n",
            &[(0, 0xffff), (5, 0x8002)],
        );
        let e = plan(&root, 0x8002).unwrap_err();
        assert!(
            e.contains("index 1 on mlx5_0 port 1 but 5 on mlx5_3 port 1"),
            "{e}"
        );
    }
}
