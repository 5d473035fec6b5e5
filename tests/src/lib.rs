//! Multi-process tests of sovra's real binaries on loopback, and the repository's tidy checks.
//!
//! The tests live in `tests/tests/`; this library only holds helpers they share.
//!
//! `sovrad`'s multi-process tests (three replicas; kill -9, restart, partitions, corruption,
//! foreign certificates) live in `scheduler/shell/tests/processes.rs` instead: cargo builds a
//! binary before the tests run, and names it in `CARGO_BIN_EXE_<name>`, only for tests of the
//! binary's own package. From here the binary would have to be found under the target
//! directory, stale or missing after `cargo test -p sovra-tests`.

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
