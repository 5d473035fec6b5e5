//! sovra's node agent (`sovra-agent`): GPU inventory and the local job runtime.
//!
//! [`core`] is pure (sans-IO): the task lifecycle state machine and its reconcile step after a
//! restart, the job environment, device resolution, the NCCL topology file and the inventory
//! model with its simulated (`--fake-gpus`) form. [`shell`] does the IO: the cgroup v2 runner
//! and its per-task supervisor process, durable state files, NVML and sysfs inventory.
//!
//! The network part of the agent (join, heartbeats, assignments over QUIC) drives a
//! [`shell::runner::Runner`]: `assign`, `cancel`, `report_acked`, `poll`, and drains
//! `poll_report`.

#![warn(missing_docs)]

pub mod core;
pub mod shell;
