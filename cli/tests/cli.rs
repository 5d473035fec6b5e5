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

const SLURM_FIXTURES: &str = "fabric/tests/fixtures/slurm";

/// Runs `sovra topology check FILE --json` and returns (nodes, gpus).
fn checked_counts(inventory: &str) -> (u64, u64) {
    let out = sovra(&["topology", "check", inventory, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    (
        v["nodes"].as_u64().expect("nodes"),
        v["gpus"].as_u64().expect("gpus"),
    )
}

#[test]
fn slurm_import_writes_an_inventory_that_checks() {
    let conf = format!("{SLURM_FIXTURES}/slurm.conf");
    let gres = format!("{SLURM_FIXTURES}/gres.conf");
    for name in ["topology-tree.conf", "topology-block.conf"] {
        // topology-*.conf is told from gres.conf by its content.
        let topology = format!("{SLURM_FIXTURES}/{name}");
        let output = scratch(&format!("harbour-{name}.toml"), "");
        let args = [
            "slurm",
            "import",
            &conf,
            &topology,
            &gres,
            "--jurisdiction",
            "au",
        ];
        let mut args = args.to_vec();
        args.extend(["--gpu-model", "a100=A100-80GB", "--output", &output]);
        let out = sovra(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(out.stdout.is_empty(), "the inventory went to --output");
        assert!(
            stderr.starts_with("valid: 1 sites, 17 nodes, 98 gpus, 4 leaves\n"),
            "{stderr}"
        );
        assert!(
            stderr.contains("gpu type a100 -> model A100-80GB"),
            "{stderr}"
        );
        assert!(stderr.contains("gpu type h100 -> model H100"), "{stderr}");
        let partitions: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("partition"))
            .collect();
        assert_eq!(partitions.len(), 3, "{stderr}");
        assert!(
            partitions[0].starts_with(
                "partition gpu (nodes hgx[001-012], default) -> queue au (jurisdiction AU), \
                 not limited to these 12 of 17 nodes"
            ),
            "{stderr}"
        );
        assert_eq!(
            partitions[2],
            "partition all (nodes ALL) -> queue au (jurisdiction AU)"
        );
        assert_eq!(checked_counts(&output), (17, 98));

        // The summary of `topology import-slurm` has the same counts.
        let mut args = vec!["topology", "import-slurm", "--slurm-conf", &conf];
        args.extend(["--topology-conf", &topology, "--gres-conf", &gres]);
        args.extend(["--jurisdiction", "AU", "--json"]);
        let out = sovra(&args);
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            (v["nodes"].as_u64(), v["gpus"].as_u64()),
            (Some(17), Some(98))
        );
    }
}

#[test]
fn slurm_import_to_stdout_and_json() {
    let conf = format!("{SLURM_FIXTURES}/slurm.conf");
    let gres = format!("{SLURM_FIXTURES}/gres.conf");
    // Without a topology.conf, into standard output: the same inventory `topology check` reads.
    let out = sovra(&[
        "slurm",
        "import",
        &conf,
        &gres,
        "--jurisdiction",
        "JP",
        "--site",
        "k1",
    ]);
    assert_error(&out, 2, "--gpu-model a100=MODEL");
    let args = [
        "slurm",
        "import",
        &conf,
        &gres,
        "--jurisdiction",
        "JP",
        "--site",
        "k1",
    ];
    let mut args = args.to_vec();
    args.extend(["--gpu-model", "a100=96"]);
    let out = sovra(&args);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("# A sovra inventory"), "{text}");
    assert!(
        text.contains("name = \"k1\"\njurisdiction = \"JP\"\n"),
        "{text}"
    );
    assert_eq!(checked_counts(&scratch("k1.toml", &text)), (17, 98));
    // --json prints the summary on stdout, so the inventory needs --output.
    args.push("--json");
    assert_eq!(sovra(&args).status.code(), Some(2));
    let output = scratch("k1-json.toml", "");
    args.extend(["--output", &output]);
    let out = sovra(&args);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        (v["nodes"].as_u64(), v["gpus"].as_u64()),
        (Some(17), Some(98))
    );
    assert_eq!(v["partitions"][0]["queue"], "jp");
    assert_eq!(v["partitions"][0]["subset"], true);
    assert_eq!(checked_counts(&output), (17, 98));
}

#[test]
fn slurm_import_errors() {
    let conf = format!("{SLURM_FIXTURES}/slurm.conf");
    let tree = format!("{SLURM_FIXTURES}/topology-tree.conf");
    let block = format!("{SLURM_FIXTURES}/topology-block.conf");
    let import = |files: &[&str]| {
        let mut args = vec!["slurm", "import"];
        args.extend(files);
        args.extend(["--jurisdiction", "AU", "--gpu-model", "a100=80"]);
        sovra(&args)
    };
    assert_error(
        &import(&["/nonexistent/slurm.conf"]),
        1,
        "/nonexistent/slurm.conf",
    );
    assert_error(
        &import(&[&conf, "/nonexistent/gres.conf"]),
        1,
        "/nonexistent/gres.conf",
    );
    let odd = scratch("odd.conf", "# neither\nFoo=bar\n");
    assert_error(
        &import(&[&conf, &odd]),
        2,
        "odd.conf: not recognised as gres.conf (no Name= line) or topology.conf",
    );
    assert_error(&import(&[&conf, &conf]), 2, "slurm.conf: not recognised");
    assert_error(
        &import(&[&conf, &tree, &block]),
        2,
        "a second topology.conf",
    );
    // A file named gres.conf is read as one, whatever it holds.
    let named = scratch("gres.conf", "SwitchName=s1 Nodes=hgx[001-012]\n");
    assert_error(&import(&[&conf, &named]), 2, "gres.conf line 1:");
    // Errors of the mapping name the file by its path.
    let partial = scratch(
        "partial-topology.conf",
        "SwitchName=s1 Nodes=hgx[001-012]\n",
    );
    assert_error(
        &import(&[&conf, &partial]),
        2,
        "partial-topology.conf: topology.conf: 5 slurm.conf node(s) under no leaf switch",
    );
    let bad = scratch("bad-slurm.conf", "NodeName=n1 CPUs=x\n");
    assert_error(&import(&[&bad]), 2, "bad-slurm.conf: slurm.conf line 1:");
}
