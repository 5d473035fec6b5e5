//! sovra's node agent (`sovra-agent`): inventory, job lifecycle under cgroup v2, data mover.
//!
//! Not built yet: the agent arrives with the "node agent, CLI and demo" issue. This crate holds
//! the workspace slot so the layout in `docs/ARCHITECTURE.md` stays true.
