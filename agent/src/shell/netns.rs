//! Tenant network isolation, Linux backend: every task of a tenant's job runs in its own
//! network namespace, attached by a veth pair to its tenant's bridge on this node; tenants'
//! bridges are not connected, and a task's namespace has no route but its tenant's subnet.
//! So a task reaches its own tenant's tasks on this node and nothing else: not another
//! tenant, not the node's own addresses, not the outside world.
//!
//! ```text
//! root namespace                      task namespace sovra-<task>
//!   svbr<net>  (bridge, no address)     eth0  10.<64 + net / 256>.<net % 256>.<host>/24
//!     └── sv<8 hex>  ── veth ──────────   lo
//! ```
//!
//! The isolation intent (`net`, the tenant's network) is committed by the scheduler in the
//! same log entry as the allocation; the runner sets the namespace up before the task starts
//! and fails the start if it cannot, so a task never runs without the isolation it was given.
//! The commands are iproute2's `ip`, run with a bounded wait; without it the error says to
//! install it. InfiniBand partition keys and NVLink partitions are applied by backends that
//! need the hardware; see `sovra_transport` for their detection.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::core::TaskId;

/// Where iproute2 keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A task's network: its namespace and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskNet {
    /// The namespace's name (`/run/netns/<name>`).
    pub netns: String,
    /// The task's address, with its prefix (`10.64.1.2/24`).
    pub addr: String,
    /// The host side of the veth pair.
    pub veth: String,
    /// The tenant's bridge.
    pub bridge: String,
}

impl TaskNet {
    /// The namespace's file, which a process enters with `setns`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }

    /// The address without its prefix length.
    pub fn ip(&self) -> &str {
        self.addr.split('/').next().unwrap_or(&self.addr)
    }
}

/// The namespace, veth and bridge names and the address of `task` in tenant network `net`,
/// host number `host` (2..=254) on this node. Pure.
pub fn plan(task: TaskId, net: u32, host: u8) -> TaskNet {
    assert!(
        (1..=4094).contains(&net),
        "tenant network {net} out of range"
    );
    assert!((2..=254).contains(&host), "host number {host} out of range");
    let mut h = DefaultHasher::new();
    task.hash(&mut h);
    TaskNet {
        netns: format!("sovra-{task}"),
        addr: format!("10.{}.{}.{host}/24", 64 + net / 256, net % 256),
        // Interface names hold at most 15 bytes.
        veth: format!("sv{:08x}", h.finish() as u32),
        bridge: format!("svbr{net}"),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "tenant network isolation needs iproute2's `ip` (apt-get install iproute2)".into()
        } else {
            format!("cannot run ip: {e}")
        }
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Whether this process can set up tenant networks here (root, `ip`, network namespaces);
/// the reason when it cannot.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("tenant network isolation needs root".into());
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err("this kernel has no network namespaces".into());
    }
    ip(&["-V"])
}

/// Creates the task's namespace and attaches it to its tenant's bridge (created on first use).
/// On failure, whatever was made is removed again.
pub fn setup(net: &TaskNet) -> Result<(), String> {
    let result = setup_steps(net);
    if result.is_err() {
        teardown(net);
    }
    result
}

fn setup_steps(n: &TaskNet) -> Result<(), String> {
    // The bridge may exist from the tenant's other tasks.
    if !Path::new("/sys/class/net").join(&n.bridge).exists() {
        match ip(&["link", "add", &n.bridge, "type", "bridge"]) {
            Ok(()) => {}
            // Another task of the tenant made it meanwhile.
            Err(_) if Path::new("/sys/class/net").join(&n.bridge).exists() => {}
            Err(e) => return Err(e),
        }
    }
    ip(&["link", "set", &n.bridge, "up"])?;
    ip(&["netns", "add", &n.netns])?;
    let peer = format!("{}p", n.veth);
    ip(&[
        "link", "add", &n.veth, "type", "veth", "peer", "name", &peer, "netns", &n.netns,
    ])?;
    ip(&["link", "set", &n.veth, "master", &n.bridge, "up"])?;
    ip(&["-n", &n.netns, "link", "set", &peer, "name", "eth0"])?;
    ip(&["-n", &n.netns, "addr", "add", &n.addr, "dev", "eth0"])?;
    ip(&["-n", &n.netns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &n.netns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Removes the task's namespace and veth (the bridge stays for the tenant's other tasks and
/// is removed with [`remove_bridge_if_unused`]). Missing pieces are fine.
pub fn teardown(n: &TaskNet) {
    let _ = ip(&["link", "del", &n.veth]);
    let _ = ip(&["netns", "del", &n.netns]);
    remove_bridge_if_unused(&n.bridge);
}

/// Removes a tenant bridge that no veth is attached to any more.
pub fn remove_bridge_if_unused(bridge: &str) {
    let ports = Path::new("/sys/class/net").join(bridge).join("brif");
    let empty = std::fs::read_dir(&ports).is_ok_and(|mut d| d.next().is_none());
    if empty {
        let _ = ip(&["link", "del", bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let n = plan(TaskId::new(42, 1), 1, 2);
        assert_eq!(n.netns, "sovra-42-1");
        assert_eq!(n.addr, "10.64.1.2/24");
        assert_eq!(n.ip(), "10.64.1.2");
        assert_eq!(n.bridge, "svbr1");
        // The peer is the veth name plus "p": both within 15 bytes.
        assert!(n.veth.len() < 15, "{}", n.veth);
        let m = plan(TaskId::new(42, 1).with_attempt(1), 4094, 254);
        assert_eq!(m.addr, "10.79.254.254/24");
        assert_eq!(m.netns, "sovra-42-1.1");
        assert_ne!(m.veth, n.veth);
    }
}
