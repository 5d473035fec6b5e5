//! Tidy: repository-wide rules checked under `cargo test` (house style 20).
//!
//! - every Rust module starts with a `//!` doc comment;
//! - pure code (`*/src/core/`, the fabric topology model, the simulator) does no IO, reads no
//!   clock and draws no OS randomness;
//! - lines are at most 100 columns (raw string literals, used for snapshot expectations, are
//!   exempt).

use std::fs;
use std::path::{Path, PathBuf};

use sovra_tests::workspace_root;

const LINE_COLUMNS_MAX: usize = 100;
const FORBIDDEN_IN_PURE: [&str; 7] = [
    "tokio",
    "std::net",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "std::thread::spawn",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Pure code: the cores, the fabric topology model (not its transports), the simulator.
fn is_pure(rel: &str) -> bool {
    rel.contains("/src/core/")
        || (rel.starts_with("fabric/src/") && !rel.starts_with("fabric/src/transport"))
        || rel.starts_with("sim/src/") && !rel.ends_with("main.rs")
}

#[test]
fn tidy() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 10,
        "tidy found too few files under {}",
        root.display()
    );
    let mut problems = Vec::new();
    for path in &files {
        let rel = relative(path);
        let text = fs::read_to_string(path).expect("readable source");
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!("{rel}: does not start with a `//!` module doc"));
        }
        let mut in_raw = false;
        for (i, line) in text.lines().enumerate() {
            let raw_opens = line.matches("r#\"").count();
            let raw_closes = line.matches("\"#").count();
            let exempt = in_raw || raw_opens > 0;
            if raw_opens > raw_closes {
                in_raw = true;
            } else if raw_closes > raw_opens {
                in_raw = false;
            }
            if !exempt && line.chars().count() > LINE_COLUMNS_MAX {
                problems.push(format!(
                    "{rel}:{}: longer than {LINE_COLUMNS_MAX} columns",
                    i + 1
                ));
            }
            if is_pure(&rel) {
                let code = line.split("//").next().unwrap_or("");
                for word in FORBIDDEN_IN_PURE {
                    if code.contains(word) {
                        problems.push(format!("{rel}:{}: `{word}` in pure code", i + 1));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "tidy found problems:\n{}",
        problems.join("\n")
    );
}
