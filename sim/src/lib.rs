//! sovra's deterministic simulator (`sovra-sim`) over the scheduler core.
//!
//! It runs the same placement code as `sovrad`, `sovra_scheduler::core::placement::place`
//! over a `sovra_fabric::Ledger` (directly, or through the replicated `StateMachine`), on one
//! thread, with no clock, no IO and no randomness but seeds:
//! - [`openb`]: the FGD paper's OpenB evaluation, replayed exactly (`sovra-sim openb`);
//! - [`engine`]: the discrete-event core (a heap of `(time, seq)` events) and a cluster
//!   simulation of arrivals, completions, node failures and repairs, site outages and drains
//!   over the state machine;
//! - [`trace`], [`swf`], [`jsonl`], [`loader`]: job traces (OpenB pod lists replayed by their
//!   own clock, the Standard Workload Format, sovra's JSONL jobs) and the OpenB CSVs, parsed
//!   from text with `file:line: field: why` errors;
//! - [`scenario`]: capacity-planning scenarios (`sovra-sim plan`), TOML;
//! - [`run`], [`policy`]: one time-driven run, its summary and tables; policies by name;
//! - [`decisions`]: decision logs and their replay (`sovra-sim replay`);
//! - [`plot`]: SVG plots, rendered to strings;
//! - [`gorand`]: Go's `math/rand`, which the paper's workload construction draws from.
//!
//! Architecture invariant: nothing in this crate's library does IO or reads a clock (the tidy
//! test checks it); `main.rs` reads the files and times the runs.

#![warn(missing_docs)]

pub mod decisions;
pub mod engine;
pub mod gorand;
pub mod jsonl;
pub mod loader;
pub mod openb;
pub mod plot;
pub mod policy;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod swf;
pub mod trace;
