//! sovra's discrete-event simulator (`sovra-sim`) over the scheduler core.
//!
//! Not built yet: the simulator arrives with the "simulator" issue. It will drive the same
//! `sovra_scheduler::core` placement code as `sovrad`, on one thread, without tokio.
