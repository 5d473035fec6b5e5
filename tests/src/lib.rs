//! Multi-process tests of sovra's real binaries on loopback, and the repository's tidy checks.
//!
//! The tests live in `tests/tests/`; this library only holds helpers they share.

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
