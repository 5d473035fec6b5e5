//! A task's environment: device visibility, rank and world, Slurm's names.
//!
//! [`job_env`] is a pure function of the assignment, the resolved devices and a few node
//! facts. The table in `docs/agent.md` lists every variable. sovra sets the `SLURM_*` names
//! only where they mean what Slurm means, so scripts written for Slurm keep working; `SOVRA_*`
//! carries the rest. [`task_env`] layers the base, sovra's variables and the submitter's: the
//! submitter's come last and win, except [`PROTECTED_VARS`].

use std::collections::{BTreeMap, BTreeSet};

use sovra_fabric::slurm::hostlist;
use sovra_fabric::GpuTake;
use sovra_scheduler::core::job::JobId;

use super::devices::Device;
use super::task::Assignment;

/// Variables a submitter may not override: device visibility is isolation, not convenience.
pub const PROTECTED_VARS: [&str; 2] = ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"];

/// First port of the range master ports are drawn from (PyTorch's default rendezvous port).
pub const MASTER_PORT_BASE: u16 = 29_500;
/// Size of that range.
pub const MASTER_PORT_SPAN: u16 = 2_000;
const _: () = assert!(MASTER_PORT_BASE as u32 + MASTER_PORT_SPAN as u32 <= u16::MAX as u32);

/// The rendezvous port of a job: the same on every member, spread over a range so jobs that
/// share a master node rarely collide.
pub fn default_master_port(job: JobId) -> u16 {
    MASTER_PORT_BASE + (job.0 % MASTER_PORT_SPAN as u64) as u16
}

/// Inputs of [`job_env`].
#[derive(Clone, Copy, Debug)]
pub struct EnvInput<'a> {
    /// The task's assignment.
    pub assignment: &'a Assignment,
    /// Its devices, resolved against this node's inventory.
    pub devices: &'a [Device],
    /// Whether the inventory is simulated.
    pub simulated: bool,
    /// Address of rank 0; `None` uses rank 0's node name.
    pub master_addr: Option<&'a str>,
    /// Rendezvous port.
    pub master_port: u16,
    /// Path of the NCCL topology file written for this task, if any.
    pub nccl_topo_file: Option<&'a str>,
}

/// The variables sovra sets for a task, sorted by name.
pub fn job_env(input: &EnvInput<'_>) -> BTreeMap<String, String> {
    let a = input.assignment;
    let me = a.member();
    let rank = a.task.rank;
    let world = a.members.len();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };

    // Devices.
    let uuids: Vec<&str> = uuids_of(input.devices);
    let gpu_indices: BTreeSet<u32> = input.devices.iter().map(|d| d.gpu_index).collect();
    let gpu_indices: Vec<String> = gpu_indices.iter().map(u32::to_string).collect();
    set("CUDA_DEVICE_ORDER", "PCI_BUS_ID".into());
    set("CUDA_VISIBLE_DEVICES", uuids.join(","));
    let nvidia = if uuids.is_empty() {
        "void".to_string()
    } else {
        uuids.join(",")
    };
    set("NVIDIA_VISIBLE_DEVICES", nvidia);
    if let GpuTake::Milli { milli, .. } = me.take.gpus {
        set(
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
            (milli as u32).div_ceil(10).to_string(),
        );
    }
    if let (Some(path), false) = (input.nccl_topo_file, uuids.is_empty()) {
        set("NCCL_TOPO_FILE", path.to_string());
    }

    // The job and this member.
    let nodes_by_rank: Vec<&str> = a.members.iter().map(|m| m.node.as_str()).collect();
    let nodes = unique_nodes(&nodes_by_rank);
    let node_id = nodes.iter().position(|n| n == &me.node).unwrap_or(0);
    let local_id = a.members[..rank as usize]
        .iter()
        .filter(|m| m.node == me.node)
        .count();
    let master_addr = input
        .master_addr
        .unwrap_or(a.members[0].node.as_str())
        .to_string();
    let cpus = me.take.cpu_milli.div_ceil(1000).max(1);

    set("SOVRA_JOB_ID", a.task.job.0.to_string());
    set("SOVRA_JOB_NAME", a.name.clone());
    set("SOVRA_TENANT", a.tenant.clone());
    set("SOVRA_RANK", rank.to_string());
    set("SOVRA_WORLD_SIZE", world.to_string());
    set("SOVRA_LOCAL_RANK", local_id.to_string());
    set("SOVRA_NODE_NAME", me.node.clone());
    set("SOVRA_NODES", nodes_by_rank.join(","));
    set("SOVRA_MASTER_ADDR", master_addr.clone());
    set("SOVRA_MASTER_PORT", input.master_port.to_string());
    set("SOVRA_GPUS", me.take.gpus.to_string());
    set("SOVRA_GPU_UUIDS", uuids.join(","));
    set("SOVRA_CPU_MILLI", me.take.cpu_milli.to_string());
    set("SOVRA_MEMORY_MIB", me.take.memory_mib.to_string());
    if let Some(ms) = a.time_limit_ms {
        set("SOVRA_TIME_LIMIT_SECONDS", ms.div_ceil(1000).to_string());
    }
    if input.simulated {
        set("SOVRA_SIMULATED_GPUS", "1".into());
    }
    set("MASTER_ADDR", master_addr);
    set("MASTER_PORT", input.master_port.to_string());

    // Slurm's names, where they mean the same.
    let job_id = a.task.job.0.to_string();
    set("SLURM_JOB_ID", job_id.clone());
    set("SLURM_JOBID", job_id);
    set("SLURM_JOB_NAME", a.name.clone());
    set("SLURM_JOB_ACCOUNT", a.tenant.clone());
    set("SLURM_PROCID", rank.to_string());
    set("SLURM_LOCALID", local_id.to_string());
    set("SLURM_NODEID", node_id.to_string());
    set("SLURM_NTASKS", world.to_string());
    set("SLURM_NPROCS", world.to_string());
    set("SLURM_JOB_NODELIST", hostlist::compress_unique(&nodes));
    set("SLURM_JOB_NUM_NODES", nodes.len().to_string());
    set("SLURM_NNODES", nodes.len().to_string());
    set("SLURM_CPUS_ON_NODE", cpus.to_string());
    set("SLURM_MEM_PER_NODE", me.take.memory_mib.to_string());
    set("SLURM_GPUS_ON_NODE", gpu_indices.len().to_string());
    if !gpu_indices.is_empty() {
        set("SLURM_JOB_GPUS", gpu_indices.join(","));
    }
    if let Some(addr) = &me.topology_addr {
        set("SLURM_TOPOLOGY_ADDR", addr.clone());
        set(
            "SLURM_TOPOLOGY_ADDR_PATTERN",
            "switch.switch.switch.node".into(),
        );
    }
    env
}

/// A task's complete environment: `base`, then sovra's variables, then the submitter's
/// (`submitter` may override all but [`PROTECTED_VARS`]).
pub fn task_env(
    base: &[(String, String)],
    sovra: BTreeMap<String, String>,
    submitter: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = base.iter().cloned().collect();
    let protected: Vec<(String, String)> = PROTECTED_VARS
        .iter()
        .filter_map(|k| sovra.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    env.extend(sovra);
    env.extend(submitter.iter().cloned());
    env.extend(protected);
    env
}

fn uuids_of(devices: &[Device]) -> Vec<&str> {
    devices.iter().map(|d| d.uuid.as_str()).collect()
}

/// The job's nodes, each once, in Slurm's hostlist order (what `SLURM_NODEID` counts in).
fn unique_nodes(nodes: &[&str]) -> Vec<String> {
    let compressed = hostlist::compress_unique(nodes);
    match hostlist::expand(&compressed) {
        Ok(list) => list,
        Err(_) => {
            // Names a hostlist cannot carry: fall back to sorted and deduplicated.
            let set: BTreeSet<&str> = nodes.iter().copied().collect();
            set.into_iter().map(str::to_string).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use sovra_fabric::Take;

    use super::*;
    use crate::core::devices::resolve;
    use crate::core::inventory::parse_fake_gpus;
    use crate::core::task::{Command, Member, TaskId};

    fn gang(rank: u32) -> Assignment {
        let take = |mask| Take {
            cpu_milli: 8000,
            memory_mib: 65536,
            gpus: GpuTake::Whole { mask },
        };
        let member = |node: &str, mask| Member {
            node: node.into(),
            take: take(mask),
            topology_addr: Some(format!("syd1.s0.l0.{node}")),
        };
        Assignment {
            task: TaskId::new(42, rank),
            name: "llm".into(),
            tenant: "acme".into(),
            time_limit_ms: Some(3_600_000),
            members: vec![
                member("syd1-h002", 0b11),
                member("syd1-h001", 0b11),
                member("syd1-h002", 0b1100),
            ],
            command: Command {
                argv: vec!["train".into()],
                env: vec![],
                cwd: None,
            },
            tenant_net: None,
        }
    }

    fn render(env: &BTreeMap<String, String>) -> String {
        env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    #[test]
    fn gang_member_env() {
        let a = gang(2);
        let inv = parse_fake_gpus("4xH100", None, "syd1-h002").unwrap();
        let devices = resolve(&inv, &a.member().take.gpus, &BTreeSet::new()).unwrap();
        let env = job_env(&EnvInput {
            assignment: &a,
            devices: &devices,
            simulated: true,
            master_addr: None,
            master_port: default_master_port(a.task.job),
            nccl_topo_file: Some("/var/lib/sovra-agent/tasks/42-2/nccl-topo.xml"),
        });
        expect![[r#"
            CUDA_DEVICE_ORDER=PCI_BUS_ID
            CUDA_VISIBLE_DEVICES=GPU-fake-9120d489-db1d-823e-4a93-0ff570af7f09,GPU-fake-bd68816e-17d1-631f-da6e-59676cd4889b
            MASTER_ADDR=syd1-h002
            MASTER_PORT=29542
            NCCL_TOPO_FILE=/var/lib/sovra-agent/tasks/42-2/nccl-topo.xml
            NVIDIA_VISIBLE_DEVICES=GPU-fake-9120d489-db1d-823e-4a93-0ff570af7f09,GPU-fake-bd68816e-17d1-631f-da6e-59676cd4889b
            SLURM_CPUS_ON_NODE=8
            SLURM_GPUS_ON_NODE=2
            SLURM_JOBID=42
            SLURM_JOB_ACCOUNT=acme
            SLURM_JOB_GPUS=2,3
            SLURM_JOB_ID=42
            SLURM_JOB_NAME=llm
            SLURM_JOB_NODELIST=syd1-h[001-002]
            SLURM_JOB_NUM_NODES=2
            SLURM_LOCALID=1
            SLURM_MEM_PER_NODE=65536
            SLURM_NNODES=2
            SLURM_NODEID=1
            SLURM_NPROCS=3
            SLURM_NTASKS=3
            SLURM_PROCID=2
            SLURM_TOPOLOGY_ADDR=syd1.s0.l0.syd1-h002
            SLURM_TOPOLOGY_ADDR_PATTERN=switch.switch.switch.node
            SOVRA_CPU_MILLI=8000
            SOVRA_GPUS=2,3
            SOVRA_GPU_UUIDS=GPU-fake-9120d489-db1d-823e-4a93-0ff570af7f09,GPU-fake-bd68816e-17d1-631f-da6e-59676cd4889b
            SOVRA_JOB_ID=42
            SOVRA_JOB_NAME=llm
            SOVRA_LOCAL_RANK=1
            SOVRA_MASTER_ADDR=syd1-h002
            SOVRA_MASTER_PORT=29542
            SOVRA_MEMORY_MIB=65536
            SOVRA_NODES=syd1-h002,syd1-h001,syd1-h002
            SOVRA_NODE_NAME=syd1-h002
            SOVRA_RANK=2
            SOVRA_SIMULATED_GPUS=1
            SOVRA_TENANT=acme
            SOVRA_TIME_LIMIT_SECONDS=3600
            SOVRA_WORLD_SIZE=3
        "#]]
        .assert_eq(&render(&env));
    }

    #[test]
    fn cpu_only_batch_env_hides_gpus() {
        let mut a = gang(0);
        a.time_limit_ms = None;
        a.members.truncate(1);
        a.members[0].take.gpus = GpuTake::None;
        a.members[0].take.cpu_milli = 500;
        a.members[0].topology_addr = None;
        let env = job_env(&EnvInput {
            assignment: &a,
            devices: &[],
            simulated: false,
            master_addr: Some("10.0.0.1"),
            master_port: 1234,
            nccl_topo_file: Some("/unused"),
        });
        expect![[r#"
            CUDA_DEVICE_ORDER=PCI_BUS_ID
            CUDA_VISIBLE_DEVICES=
            MASTER_ADDR=10.0.0.1
            MASTER_PORT=1234
            NVIDIA_VISIBLE_DEVICES=void
            SLURM_CPUS_ON_NODE=1
            SLURM_GPUS_ON_NODE=0
            SLURM_JOBID=42
            SLURM_JOB_ACCOUNT=acme
            SLURM_JOB_ID=42
            SLURM_JOB_NAME=llm
            SLURM_JOB_NODELIST=syd1-h002
            SLURM_JOB_NUM_NODES=1
            SLURM_LOCALID=0
            SLURM_MEM_PER_NODE=65536
            SLURM_NNODES=1
            SLURM_NODEID=0
            SLURM_NPROCS=1
            SLURM_NTASKS=1
            SLURM_PROCID=0
            SOVRA_CPU_MILLI=500
            SOVRA_GPUS=none
            SOVRA_GPU_UUIDS=
            SOVRA_JOB_ID=42
            SOVRA_JOB_NAME=llm
            SOVRA_LOCAL_RANK=0
            SOVRA_MASTER_ADDR=10.0.0.1
            SOVRA_MASTER_PORT=1234
            SOVRA_MEMORY_MIB=65536
            SOVRA_NODES=syd1-h002
            SOVRA_NODE_NAME=syd1-h002
            SOVRA_RANK=0
            SOVRA_TENANT=acme
            SOVRA_WORLD_SIZE=1
        "#]]
        .assert_eq(&render(&env));
    }

    #[test]
    fn submitter_overrides_all_but_device_visibility() {
        let base = [("PATH".to_string(), "/bin".to_string())];
        let sovra = BTreeMap::from([
            ("CUDA_VISIBLE_DEVICES".to_string(), "GPU-a".to_string()),
            ("SLURM_PROCID".to_string(), "0".to_string()),
        ]);
        let submitter = [
            ("CUDA_VISIBLE_DEVICES".to_string(), "all".to_string()),
            ("NVIDIA_VISIBLE_DEVICES".to_string(), "all".to_string()),
            ("SLURM_PROCID".to_string(), "7".to_string()),
            ("PATH".to_string(), "/opt/bin".to_string()),
        ];
        let env = task_env(&base, sovra, &submitter);
        expect![[r#"
            CUDA_VISIBLE_DEVICES=GPU-a
            NVIDIA_VISIBLE_DEVICES=all
            PATH=/opt/bin
            SLURM_PROCID=7
        "#]]
        .assert_eq(&render(&env));
    }

    #[test]
    fn share_sets_mps_percentage() {
        let mut a = gang(0);
        a.members.truncate(1);
        a.members[0].take.gpus = GpuTake::Milli {
            local: 1,
            milli: 333,
        };
        let inv = parse_fake_gpus("2xH100", None, "syd1-h002").unwrap();
        let devices = resolve(&inv, &a.member().take.gpus, &BTreeSet::new()).unwrap();
        let env = job_env(&EnvInput {
            assignment: &a,
            devices: &devices,
            simulated: true,
            master_addr: None,
            master_port: 1,
            nccl_topo_file: None,
        });
        assert_eq!(env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "34");
        assert_eq!(env["SLURM_JOB_GPUS"], "1");
        assert_eq!(env["SOVRA_GPUS"], "1@333m");
        assert!(!env.contains_key("NCCL_TOPO_FILE"));
    }
}
