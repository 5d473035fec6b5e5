//! Placing a whole job on this one node, for `sovra-agent run-local` and tests.
//!
//! The scheduler normally decides where members go; running by hand there is no scheduler, so
//! [`place_locally`] hands out this node's resources in index order: whole GPUs first-fit,
//! shares on the first GPU with room, MIG instances on the first MIG-mode GPU whose model has
//! the profile. It checks only GPUs: CPU and memory are the job's own limits.

use sovra_fabric::inventory::builtin_model;
use sovra_fabric::topology::MIG_MEMORY_SLICES;
use sovra_fabric::{GpuTake, Take};
use sovra_scheduler::core::job::{parse_mig_profile, GpuRequest, JobId, JobSpec};

use super::inventory::Inventory;
use super::task::{Assignment, Command, Member, TaskId};

/// Most members one local run starts.
pub const LOCAL_MEMBERS_MAX: u32 = 64;

/// Assignments for every member of `spec` on this node, in rank order. The error is one line.
pub fn place_locally(
    spec: &JobSpec,
    inventory: &Inventory,
    job: JobId,
    command: &Command,
) -> Result<Vec<Assignment>, String> {
    let count = spec.member_count();
    if count == 0 || count > LOCAL_MEMBERS_MAX {
        return Err(format!(
            "a local run starts 1..={LOCAL_MEMBERS_MAX} members, not {count}"
        ));
    }
    let gpus = inventory.gpus.len();
    let mut whole_used = vec![false; gpus];
    let mut milli_used = vec![0u32; gpus];
    let mut members = Vec::with_capacity(count as usize);
    for rank in 0..count {
        let gpu_take = match spec.member_gpus() {
            GpuRequest::None => GpuTake::None,
            GpuRequest::Whole(n) => {
                let free: Vec<usize> = (0..gpus)
                    .filter(|&i| !whole_used[i] && milli_used[i] == 0)
                    .filter(|&i| !inventory.gpus[i].mig_enabled)
                    .take(n as usize)
                    .collect();
                if free.len() < n as usize {
                    return Err(format!(
                        "member {rank} needs {n} whole gpus; node {} has {} free",
                        inventory.node,
                        free.len()
                    ));
                }
                let mut mask = 0u32;
                for i in free {
                    whole_used[i] = true;
                    mask |= 1 << i;
                }
                GpuTake::Whole { mask }
            }
            GpuRequest::Milli(m) => {
                let i = (0..gpus)
                    .find(|&i| {
                        !whole_used[i]
                            && !inventory.gpus[i].mig_enabled
                            && milli_used[i] + m <= 1000
                    })
                    .ok_or_else(|| format!("member {rank} needs {m} milli-gpu; none has room"))?;
                milli_used[i] += m;
                GpuTake::Milli {
                    local: i as u8,
                    milli: m as u16,
                }
            }
            GpuRequest::Mig(profile) => {
                let (compute, memory_gb) = parse_mig_profile(&profile)?;
                let i = (0..gpus)
                    .find(|&i| inventory.gpus[i].mig_enabled)
                    .ok_or_else(|| {
                        format!("member {rank} needs mig {profile}; no gpu is in mig mode")
                    })?;
                let gpu = &inventory.gpus[i];
                let memory = gpu
                    .model_key()
                    .or(Some(gpu.name.as_str()))
                    .and_then(builtin_model)
                    .and_then(|m| {
                        m.mig_profiles
                            .iter()
                            .find(|p| p.name.eq_ignore_ascii_case(&profile))
                            .map(|p| p.memory_slices)
                    })
                    .unwrap_or_else(|| {
                        let slice_mib = (gpu.memory_mib / MIG_MEMORY_SLICES as u64).max(1);
                        let wanted = memory_gb as u64 * 1024;
                        wanted
                            .div_ceil(slice_mib)
                            .clamp(1, MIG_MEMORY_SLICES as u64) as u8
                    });
                GpuTake::Mig {
                    local: i as u8,
                    compute,
                    memory,
                }
            }
        };
        members.push(Member {
            node: inventory.node.clone(),
            take: Take {
                cpu_milli: spec.cpu_milli,
                memory_mib: spec.memory_mib,
                gpus: gpu_take,
            },
            topology_addr: None,
        });
    }
    Ok((0..count)
        .map(|rank| Assignment {
            task: TaskId {
                job,
                rank,
                attempt: 0,
            },
            name: spec.name.clone(),
            tenant: spec.tenant.clone(),
            time_limit_ms: spec.time_limit_ms,
            members: members.clone(),
            command: command.clone(),
            tenant_net: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use sovra_scheduler::core::job::{GangSpec, TopologyRule, Workload};

    use super::*;
    use crate::core::inventory::parse_fake_gpus;
    use crate::core::task::test_spec;

    fn spec(workload: Workload) -> JobSpec {
        let mut spec = test_spec();
        spec.memory_mib = 512;
        spec.workload = workload;
        spec
    }

    fn takes(r: Result<Vec<Assignment>, String>) -> String {
        match r {
            Ok(a) => a[0]
                .members
                .iter()
                .map(|m| m.take.gpus.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn local_placement() {
        let inv = parse_fake_gpus("4xH100,1xA100-80GB:mig", None, "n1").unwrap();
        let cmd = Command {
            argv: vec!["true".into()],
            env: vec![],
            cwd: None,
        };
        let gang = |members, gpus_per_member| {
            Workload::Gang(GangSpec {
                members,
                gpus_per_member,
                topology: TopologyRule::default(),
                max_rtt_ns: None,
            })
        };
        let batch = |gpus| Workload::Batch { gpus };
        let cases = [
            spec(batch(GpuRequest::None)),
            spec(gang(2, 2)),
            spec(gang(3, 2)),
            spec(batch(GpuRequest::Milli(300))),
            spec(batch(GpuRequest::Mig("3g.40gb".into()))),
        ];
        let out: Vec<String> = cases
            .iter()
            .map(|s| takes(place_locally(s, &inv, JobId(1), &cmd)))
            .collect();
        assert_eq!(
            out,
            [
                "none",
                "0,1 | 2,3",
                "error: member 2 needs 2 whole gpus; node n1 has 0 free",
                "0@300m",
                "4:mig(3c,4m)",
            ]
        );
        let all = place_locally(&spec(gang(2, 1)), &inv, JobId(9), &cmd).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].task, TaskId::new(9, 1));
        assert_eq!(all[1].member().take.gpus.to_string(), "1");
    }
}
