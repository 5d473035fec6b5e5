//! Decision logs (`--decisions FILE`) and `sovra-sim replay`: an unchanged log replays with no
//! difference (exit 0); a policy override is a what-if whose differences are reported (exit
//! 3); a tampered decision is found; a malformed log is a one-line error (exit 1).

mod common;

use common::{fixture, json_lines, sim, temp_dir, write};
use sovra_scheduler::core::snapshot::FORMAT_VERSION;
use sovra_sim::decisions::parse_log;

fn plan_log(test: &str) -> (std::path::PathBuf, String) {
    let dir = temp_dir(test);
    let log = dir.join("decisions.jsonl").display().to_string();
    let (code, _, stderr) = sim(&[
        "plan",
        &fixture("plan/two-sites.toml"),
        "--json",
        "--decisions",
        &log,
    ]);
    assert_eq!(code, 0, "{stderr}");
    (dir, log)
}

#[test]
fn an_unchanged_log_replays_identically() {
    let (_dir, log) = plan_log("replay-same");
    let (code, stdout, stderr) = sim(&["replay", &log]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("run 0 (baseline, best-fit): "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("run 1 (scenario, best-fit): "),
        "{stdout}"
    );
    assert!(lines.iter().all(|l| l.ends_with(", 0 differ")), "{stdout}");
    let (code, stdout, _) = sim(&["replay", &log, "--json"]);
    assert_eq!(code, 0);
    for line in json_lines(&stdout) {
        assert_eq!(line["kind"], "summary");
        assert_eq!(line["differ"], 0);
        assert_eq!(line["logged"], line["replayed"]);
        assert!(
            line["logged"].as_u64().unwrap() >= 36,
            "every job is placed at least once"
        );
    }
    // A time-driven trace's log replays too.
    let dir = temp_dir("replay-trace");
    let log = dir.join("trace.jsonl").display().to_string();
    let (code, _, stderr) = sim(&[
        "trace",
        "--nodes",
        &fixture("openb/openb_node_list_gpu_node_40.csv"),
        "--trace",
        &fixture("openb/openb_pod_list_default_300.csv"),
        "--policy",
        "fgd",
        "--decisions",
        &log,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = sim(&["replay", &log]);
    assert_eq!(
        (code, stdout.as_str()),
        (
            0,
            "run 0 (trace, fgd): 300 decisions logged, 300 replayed, 0 differ\n"
        )
    );
}

#[test]
fn the_log_holds_the_inputs() {
    let (_dir, log) = plan_log("replay-inputs");
    let runs = parse_log(&log, &std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(runs.len(), 2);
    let (baseline, scenario) = (&runs[0].input, &runs[1].input);
    assert_eq!(baseline.jobs.len(), 36);
    assert!(baseline.events.is_empty());
    // The scenario's changes as node events: 8 GPUs added (2 nodes up), the outage of west
    // (2 nodes down and up), the drain of one node (drain and resume).
    assert_eq!(scenario.events.len(), 2 + 4 + 2);
    assert_eq!(
        baseline.config.initially_down,
        scenario.config.initially_down
    );
    assert_eq!(baseline.config.initially_down.len(), 2);
    assert_eq!(baseline.config.first_index, 3);
    assert_eq!(baseline.topology.desc(), scenario.topology.desc());
    // Tenant a is restricted to JP from 6 h on, in the scenario only.
    let restricted = scenario
        .jobs
        .iter()
        .zip(&baseline.jobs)
        .filter(|(s, b)| s.spec.jurisdictions != b.spec.jurisdictions)
        .count();
    assert!(restricted > 0);
}

#[test]
fn a_policy_override_reports_what_differs() {
    let (_dir, log) = plan_log("replay-whatif");
    let (code, stdout, stderr) = sim(&["replay", &log, "--policy", "fgd", "--json"]);
    assert_eq!(code, 3, "{stderr}");
    let lines = json_lines(&stdout);
    let diffs: Vec<_> = lines.iter().filter(|l| l["kind"] == "diff").collect();
    let summaries: Vec<_> = lines.iter().filter(|l| l["kind"] == "summary").collect();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0]["policy"], "best-fit -> fgd");
    let differ: u64 = summaries
        .iter()
        .map(|s| s["differ"].as_u64().unwrap())
        .sum();
    assert_eq!(diffs.len() as u64, differ);
    assert!(differ > 0);
    for d in &diffs {
        assert!(d["name"].as_str().unwrap().starts_with('t'));
        assert!(d["logged"].is_object() || d["replayed"].is_object());
    }
    let (code, stdout, _) = sim(&["replay", &log, "--policy", "fgd"]);
    assert_eq!(code, 3);
    assert!(stdout.contains("(baseline, best-fit -> fgd)"), "{stdout}");
    assert!(stdout.contains(": logged placed on "), "{stdout}");
}

#[test]
fn a_tampered_decision_is_found() {
    let (dir, log) = plan_log("replay-tamper");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let (n, line) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("\"kind\":\"decision\"") && l.contains("\"gpus\":[0]"))
        .map(|(n, l)| (n, l.clone()))
        .expect("a one-gpu placement");
    lines[n] = line.replace("\"gpus\":[0]", "\"gpus\":[3]");
    let tampered = write(&dir, "tampered.jsonl", &(lines.join("\n") + "\n"));
    let (code, stdout, _) = sim(&["replay", &tampered, "--json"]);
    assert_eq!(code, 3);
    let diffs: Vec<_> = json_lines(&stdout)
        .into_iter()
        .filter(|l| l["kind"] == "diff")
        .collect();
    assert_eq!(diffs.len(), 1, "{stdout}");
    assert_eq!(diffs[0]["log_line"], n + 1);
    assert_eq!(
        diffs[0]["logged"]["plan"][0]["gpus"],
        serde_json::json!([3])
    );
    assert_eq!(
        diffs[0]["replayed"]["plan"][0]["gpus"],
        serde_json::json!([0])
    );
}

#[test]
fn malformed_logs_are_one_line_errors() {
    let dir = temp_dir("replay-malformed");
    let (_, log) = plan_log("replay-malformed-src");
    let text = std::fs::read_to_string(&log).unwrap();
    let second = text.lines().nth(1).unwrap();
    let cases = [
        (
            "empty.jsonl",
            String::new(),
            "empty.jsonl:1: log: empty: expected a decision log",
        ),
        (
            "blob.jsonl",
            format!(
                "{}\n{}\n",
                text.lines().next().unwrap(),
                second.replace(
                    &format!("\"topology_blob\":\"{FORMAT_VERSION:02x}"),
                    &format!("\"topology_blob\":\"{:02x}", FORMAT_VERSION + 1)
                )
            ),
            &format!(
                "blob.jsonl:2: topology_blob: unsupported format version {}, expected \
                 {FORMAT_VERSION} at byte 0",
                FORMAT_VERSION + 1
            ),
        ),
    ];
    for (name, text, expect) in cases {
        let path = write(&dir, name, &text);
        let (code, _, stderr) = sim(&["replay", &path]);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(stderr, format!("sovra-sim: {}/{expect}\n", dir.display()));
    }
    assert_eq!(sim(&["replay", &log, "--policy", "nope"]).0, 2);
}
