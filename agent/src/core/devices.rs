//! Which devices a task gets: the GPUs (or MIG instance) its placement names, by UUID.
//!
//! Placement speaks in local GPU indices and MIG slice counts ([`GpuTake`]); CUDA and the
//! container runtime want UUIDs. [`resolve`] maps one to the other against this node's
//! [`Inventory`], and picks a free MIG instance of the right shape. On a simulated inventory
//! MIG instances are made up on demand with stable fake UUIDs.

use std::collections::BTreeSet;

use sovra_fabric::GpuTake;

use super::inventory::{fake_uuid, mig_slices_fit, Inventory};

/// Most simulated MIG instances of one shape on one GPU (a GPU has 7 compute slices).
const FAKE_MIG_PER_SHAPE_MAX: u32 = 7;

/// One device a task may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// `GPU-…` or `MIG-…` UUID, what `CUDA_VISIBLE_DEVICES` lists.
    pub uuid: String,
    /// Local index of the physical GPU (the parent, for a MIG instance).
    pub gpu_index: u32,
    /// Whether this is a MIG instance.
    pub mig: bool,
}

/// Resolves a take to devices. `mig_in_use` holds the MIG UUIDs other tasks on this node hold.
/// Errors are one line, lower case, and mean the assignment does not fit this node.
pub fn resolve(
    inventory: &Inventory,
    take: &GpuTake,
    mig_in_use: &BTreeSet<String>,
) -> Result<Vec<Device>, String> {
    let gpu = |index: u8| {
        inventory.gpus.get(index as usize).ok_or_else(|| {
            format!(
                "the assignment holds gpu {index} but node {} has {} gpus",
                inventory.node,
                inventory.gpus.len()
            )
        })
    };
    match *take {
        GpuTake::None => Ok(Vec::new()),
        GpuTake::Whole { mask } => {
            let mut out = Vec::new();
            for index in (0..32u8).filter(|i| mask & (1u32 << i) != 0) {
                let g = gpu(index)?;
                if g.mig_enabled {
                    return Err(format!("gpu {index} is in mig mode but was given whole"));
                }
                out.push(Device {
                    uuid: g.uuid.clone(),
                    gpu_index: g.index,
                    mig: false,
                });
            }
            Ok(out)
        }
        GpuTake::Milli { local, .. } => {
            let g = gpu(local)?;
            if g.mig_enabled {
                return Err(format!(
                    "gpu {local} is in mig mode but was given as a share"
                ));
            }
            Ok(vec![Device {
                uuid: g.uuid.clone(),
                gpu_index: g.index,
                mig: false,
            }])
        }
        GpuTake::Mig {
            local,
            compute,
            memory,
        } => {
            let g = gpu(local)?;
            if !g.mig_enabled {
                return Err(format!("gpu {local} is not in mig mode"));
            }
            if !mig_slices_fit(compute, memory) {
                return Err(format!("mig shape {compute}c,{memory}m does not fit a gpu"));
            }
            let existing = g.mig_instances.iter().find(|m| {
                m.compute_slices == compute
                    && m.memory_slices == memory
                    && !mig_in_use.contains(&m.uuid)
            });
            let uuid = match existing {
                Some(m) => Some(m.uuid.clone()),
                None if inventory.simulated => (0..FAKE_MIG_PER_SHAPE_MAX)
                    .map(|k| {
                        let parts = [
                            inventory.node.as_str(),
                            &g.index.to_string(),
                            &compute.to_string(),
                            &memory.to_string(),
                            &k.to_string(),
                        ];
                        fake_uuid("MIG", &parts)
                    })
                    .find(|uuid| !mig_in_use.contains(uuid)),
                None => None,
            };
            let uuid = uuid.ok_or_else(|| {
                format!(
                    "no free mig instance with {compute} compute and {memory} memory slices \
                     on gpu {local} (create one with nvidia-smi mig -cgi)"
                )
            })?;
            Ok(vec![Device {
                uuid,
                gpu_index: g.index,
                mig: true,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::core::inventory::{parse_fake_gpus, MigInstance};

    fn show(r: Result<Vec<Device>, String>) -> String {
        match r {
            Ok(devices) => devices
                .iter()
                .map(|d| {
                    format!(
                        "{}@{}{}",
                        d.uuid,
                        d.gpu_index,
                        if d.mig { " mig" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn resolve_takes() {
        let inv = parse_fake_gpus("2xH100,1xA100-80GB:mig", None, "n1").unwrap();
        let none = BTreeSet::new();
        let cases = [
            GpuTake::None,
            GpuTake::Whole { mask: 0b11 },
            GpuTake::Whole { mask: 0b1000 },
            GpuTake::Whole { mask: 0b100 },
            GpuTake::Milli {
                local: 1,
                milli: 300,
            },
            GpuTake::Mig {
                local: 2,
                compute: 1,
                memory: 1,
            },
            GpuTake::Mig {
                local: 0,
                compute: 1,
                memory: 1,
            },
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|t| format!("{t}: {}", show(resolve(&inv, t, &none))))
            .collect();
        expect![[r#"
            none: 
            0,1: GPU-fake-bc4df47a-a179-4a54-4c13-fc457b3b7e38@0 GPU-fake-cda8ed79-f4af-7de8-a765-98d814ec3260@1
            3: error: the assignment holds gpu 3 but node n1 has 3 gpus
            2: error: gpu 2 is in mig mode but was given whole
            1@300m: GPU-fake-cda8ed79-f4af-7de8-a765-98d814ec3260@1
            2:mig(1c,1m): MIG-fake-3167a0ee-9e28-fff7-e434-eedac124311f@2 mig
            0:mig(1c,1m): error: gpu 0 is not in mig mode"#]]
        .assert_eq(&out.join("\n"));
    }

    #[test]
    fn mig_instances_are_not_shared() {
        let mut inv = parse_fake_gpus("1xA100-80GB:mig", None, "n1").unwrap();
        let take = GpuTake::Mig {
            local: 0,
            compute: 1,
            memory: 1,
        };
        // Simulated: a fresh instance per task.
        let mut in_use = BTreeSet::new();
        let first = resolve(&inv, &take, &in_use).unwrap();
        in_use.insert(first[0].uuid.clone());
        let second = resolve(&inv, &take, &in_use).unwrap();
        assert_ne!(first, second);
        // Real: only the instances that exist.
        inv.simulated = false;
        inv.gpus[0].mig_instances = vec![MigInstance {
            uuid: "MIG-a".into(),
            compute_slices: 1,
            memory_slices: 1,
            memory_mib: 10 * 1024,
        }];
        assert_eq!(
            resolve(&inv, &take, &BTreeSet::new()).unwrap()[0].uuid,
            "MIG-a"
        );
        let busy = BTreeSet::from(["MIG-a".to_string()]);
        expect![[r#"error: no free mig instance with 1 compute and 1 memory slices on gpu 0 (create one with nvidia-smi mig -cgi)"#]]
        .assert_eq(&show(resolve(&inv, &take, &busy)));
    }
}
