//! The scheduler's pure core: job model, placement pipeline, replicated state machine.
//!
//! Architecture invariant: nothing under `core/` does IO, reads a clock, spawns a thread or
//! draws OS randomness. Time arrives as a parameter; randomness is a seed.

pub mod job;
pub mod placement;
pub mod probe;
pub mod rng;
pub mod snapshot;
pub mod state;
