//! The agent's pure core: the task lifecycle, the job environment, device resolution, the NCCL
//! topology file and the inventory model.
//!
//! Architecture invariant: nothing under `core/` does IO, reads a clock, spawns a thread or
//! draws OS randomness. Time arrives as a parameter ([`task::Millis`]); the shell executes the
//! [`lifecycle::Action`]s and reports what it observed.

pub mod devices;
pub mod env;
pub mod inventory;
pub mod lifecycle;
pub mod local;
pub mod nccl;
pub mod task;

pub use lifecycle::{Action, Assigned, Config, Lifecycle, Phase, Recovered, Signal, Started};
pub use task::{
    Assignment, Command, Ended, Exit, ExitRecord, Finished, KillReason, Member, Millis, Outcome,
    Report, Status, TaskId,
};
