//! The `sovra-sim` binary: JSON output of `openb`, and one-line errors naming file and line
//! with exit code 1.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/openb/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sovra-sim"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sovra-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn openb_json_lines() {
    let nodes = fixture("openb_node_list_gpu_node_40.csv");
    let pods = fixture("openb_pod_list_default_300.csv");
    let (code, stdout, stderr) = sim(&[
        "openb",
        "--nodes",
        &nodes,
        "--pods",
        &pods,
        "--policy",
        "fgd,default",
        "--seeds",
        "42-43",
        "--json",
        "--jobs",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one json object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, policy) in lines.iter().zip(["fgd", "default"]) {
        assert_eq!(line["trace"], "default_300");
        assert_eq!(line["policy"], policy);
        assert_eq!(line["seeds"], serde_json::json!([42, 43]));
        for key in ["unallocated_pct_at_100", "unallocated_pct_sd", "wall_s"] {
            assert!(line[key].is_f64(), "{key} in {line}");
        }
        assert!(line.get("curve").is_none());
    }
    // The same numbers as the library, whatever the parallelism.
    let (_, again, _) = sim(&[
        "openb", "--nodes", &nodes, "--pods", &pods, "--policy", "fgd", "--seeds", "42,43",
        "--json", "--curve",
    ]);
    let again: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(
        again["unallocated_pct_per_seed"],
        lines[0]["unallocated_pct_per_seed"]
    );
    assert_eq!(again["decisions_hash"], lines[0]["decisions_hash"]);
    assert_eq!(again["curve"].as_array().map(|c| c.len()), Some(131));
}

#[test]
fn errors_are_one_line_with_file_and_line() {
    let nodes = fixture("openb_node_list_gpu_node_40.csv");
    let bad = temp_file(
        "pods.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,10,1,500\np1,x,10,1,500\n",
    );
    let bad = bad.display().to_string();
    let (code, stdout, stderr) = sim(&[
        "openb", "--nodes", &nodes, "--pods", &bad, "--policy", "fgd",
    ]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!("sovra-sim: {bad}:3: cpu_milli: \"x\" is not an integer\n")
    );

    let pods = fixture("openb_pod_list_default_300.csv");
    let policies = "random, dotprod, clustering, packing, bestfit, fgd, default";
    let seeds = "expected e.g. 42-51, 42,43 or 42";
    let cases: [(&[&str], String); 3] = [
        (
            &["--policy", "tetris"],
            format!("sovra-sim: unknown policy \"tetris\": expected one of {policies}\n"),
        ),
        (
            &["--policy", "fgd", "--seeds", "9-1"],
            format!("sovra-sim: invalid --seeds \"9-1\": {seeds}\n"),
        ),
        (
            &["--policy", "fgd", "--seeds", "x"],
            format!("sovra-sim: invalid --seeds \"x\": {seeds}\n"),
        ),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["openb", "--nodes", &nodes, "--pods", &pods];
        args.extend_from_slice(extra);
        let (code, _, stderr) = sim(&args);
        assert_eq!((code, stderr), (1, expect));
    }
    let (code, _, stderr) = sim(&[
        "openb",
        "--nodes",
        "/nonexistent.csv",
        "--pods",
        &pods,
        "--policy",
        "fgd",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("sovra-sim: cannot read /nonexistent.csv: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    let (code, _, _) = sim(&["openb", "--nodes", &nodes]);
    assert_eq!(code, 2, "usage errors exit 2");
}
