//! The agent's IO: the cgroup v2 runner, the supervisor process, state files and inventory.
//!
//! [`runner::Runner`] is the entry point. [`cgroup`] and [`proc`] wrap the kernel interfaces,
//! [`state`] the durable files, [`supervisor`] the process that waits for each task,
//! [`netns`] the tenant networks, and [`nvml`] and [`inventory`] the devices.

pub mod cgroup;
pub mod ibpart;
pub mod inventory;
pub mod join;
pub mod netns;
pub mod nvml;
pub mod proc;
pub mod runner;
pub mod state;
pub mod supervisor;
