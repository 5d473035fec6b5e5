//! The `sovra` binary's contract: one-line errors, documented exit codes, no panics on input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn sovra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovra"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("sovra runs")
}

fn scratch(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("sovra-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scratch file");
    path.display().to_string()
}

/// Asserts exit `code` and a single `sovra: …` line on stderr containing `needle`.
fn assert_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("sovra: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

const INVENTORY: &str = "examples/inventory/four-sites.toml";

#[test]
fn place_gang_succeeds() {
    let out = sovra(&[
        "place",
        "--inventory",
        INVENTORY,
        "--job",
        "examples/jobs/gang-leaf.toml",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("site syd1 (AU)").count(), 8, "{stdout}");
    assert!(stdout.contains("holds all 8 members"), "{stdout}");
}

#[test]
fn place_json_names_jurisdictions() {
    let out = sovra(&[
        "place",
        "--inventory",
        INVENTORY,
        "--job",
        "examples/jobs/inference-slo.toml",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    for m in v["members"].as_array().expect("members") {
        let j = m["jurisdiction"].as_str().expect("jurisdiction");
        assert!(j == "SG" || j == "MY", "{m}");
    }
}

#[test]
fn unschedulable_exits_3() {
    let job = scratch(
        "huge.toml",
        "tenant = \"t\"\njurisdictions = [\"JP\"]\n[gang]\nmembers = 4096\ngpus_per_member = 8\n\
         topology = \"leaf\"\naffinity = \"required\"\n",
    );
    let out = sovra(&["place", "--inventory", INVENTORY, "--job", &job]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending: BadConstraints"));
}

#[test]
fn unknown_jurisdiction_places_nothing() {
    let job = scratch(
        "xx.toml",
        "tenant = \"t\"\njurisdictions = [\"XX\"]\n[batch]\ngpus = 1\n",
    );
    let out = sovra(&["place", "--inventory", INVENTORY, "--job", &job]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("JurisdictionUnavailable"));
}

#[test]
fn bad_inventory_is_one_line_exit_2() {
    let inv = scratch(
        "dup.toml",
        "[[site]]\nname = \"a\"\njurisdiction = \"AU\"\n\
         [[site]]\nname = \"a\"\njurisdiction = \"JP\"\n",
    );
    assert_error(&sovra(&["topology", "check", &inv]), 2, "declared twice");
    let inv = scratch("syntax.toml", "[[site]\nname = 1\n");
    assert_error(&sovra(&["topology", "check", &inv]), 2, "line 1");
}

#[test]
fn bad_job_is_one_line_exit_2() {
    let job = scratch(
        "bad.toml",
        "tenant = \"t\"\njurisdictions = [\"AU\"]\n[batch]\ngpu_milli = 0\n",
    );
    assert_error(
        &sovra(&["place", "--inventory", INVENTORY, "--job", &job]),
        2,
        "gpu share",
    );
}

#[test]
fn missing_file_exits_1() {
    assert_error(
        &sovra(&["topology", "check", "/nonexistent/x.toml"]),
        1,
        "cannot read",
    );
}

#[test]
fn garbage_never_panics() {
    let text = std::fs::read_to_string(root().join(INVENTORY)).expect("example");
    for cut in (0..text.len())
        .step_by(211)
        .filter(|&c| text.is_char_boundary(c))
    {
        let inv = scratch("cut.toml", &text[..cut]);
        let out = sovra(&["topology", "check", &inv]);
        let code = out.status.code();
        assert!(code == Some(0) || code == Some(2), "cut at {cut}: {code:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn import_slurm_tree() {
    let fixtures = "fabric/tests/fixtures/slurm";
    let conf = format!("{fixtures}/slurm.conf");
    let topo = format!("{fixtures}/topology-tree.conf");
    let gres = format!("{fixtures}/gres.conf");
    let args = [
        "topology",
        "import-slurm",
        "--slurm-conf",
        &conf,
        "--topology-conf",
        &topo,
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--gres-conf", &gres, "--jurisdiction", "JP"]);
    let out = sovra(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid: 1 sites"));
    let out = sovra(&[
        "topology",
        "import-slurm",
        "--slurm-conf",
        &conf,
        "--jurisdiction",
        "1",
    ]);
    assert_error(&out, 2, "invalid jurisdiction");
}

#[test]
fn submit_from_flags_is_validated_before_connecting() {
    let out = sovra(&[
        "submit",
        "--tenant",
        "t",
        "--jurisdiction",
        "AU",
        "--time-limit",
        "soon",
        "--",
        "true",
    ]);
    assert_error(&out, 2, "the flags: invalid time limit");
    // A valid job from flags gets as far as needing a server.
    let out = Command::new(env!("CARGO_BIN_EXE_sovra"))
        .args([
            "submit",
            "--tenant",
            "t",
            "--jurisdiction",
            "AU",
            "--",
            "true",
        ])
        .env_remove("SOVRA_SERVER")
        .env("SOVRA_CONFIG", "/nonexistent/sovra.toml")
        .output()
        .expect("sovra runs");
    assert_error(&out, 2, "no server");
}
