//! sovra's deterministic simulator (`sovra-sim`) over the scheduler core.
//!
//! It runs the same placement code as `sovrad`, `sovra_scheduler::core::placement::place`
//! over a `sovra_fabric::Ledger` (directly, or through the replicated `StateMachine`), on one
//! thread, with no clock, no IO and no randomness but seeds:
//! - [`openb`]: the FGD paper's OpenB evaluation, replayed exactly (`sovra-sim openb`);
//! - [`engine`]: the discrete-event core (a heap of `(time, seq)` events) and a cluster
//!   simulation of arrivals, completions, node failures and repairs over the state machine;
//! - [`loader`]: the OpenB CSV formats, parsed from text with `file:line` errors;
//! - [`gorand`]: Go's `math/rand`, which the paper's workload construction draws from.
//!
//! Architecture invariant: nothing in this crate's library does IO or reads a clock (the tidy
//! test checks it); `main.rs` reads the files and times the runs.

#![warn(missing_docs)]

pub mod engine;
pub mod gorand;
pub mod loader;
pub mod openb;
pub mod stats;
