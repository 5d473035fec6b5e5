//! sovra's scheduler: a replicated state machine that places GPU jobs by topology, latency and
//! jurisdiction.
//!
//! [`core`] is pure (sans-IO): the job model, the placement pipeline and the state machine.
//! [`jobfile`] converts sovra's TOML job files into core job specs.

#![warn(missing_docs)]

pub mod core;
pub mod jobfile;
