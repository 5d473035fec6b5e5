//! Trace inputs of the time-driven replay (`sovra-sim trace`): the OpenB pod list by its own
//! clock, SWF and JSONL, their fixtures, and one-line `file:line: field: why` errors with exit
//! code 1 (2 for bad usage).

mod common;

use common::{fixture, json_lines, sim, temp_dir, write};
use sovra_sim::jsonl::parse_jsonl;
use sovra_sim::swf::{parse_swf, SwfMapping};

const INVENTORY: &str = r#"
[[site]]
name = "east"
jurisdiction = "JP"
[[site.nodes]]
names = "east-n[1-4]"
gpus = "4xH100"
cpus = 64
memory_gb = 512

[[site]]
name = "west"
jurisdiction = "SG"
[[site.nodes]]
names = "west-n[1-2]"
gpus = "4xH100"
cpus = 64
memory_gb = 512

[[link]]
a = "east"
b = "west"
rtt_ms = 70
gbit_per_s = 100
"#;

#[test]
fn fixtures_parse() {
    let jobs = parse_jsonl(
        "jobs.jsonl",
        &std::fs::read_to_string(fixture("traces/jobs.jsonl")).unwrap(),
    )
    .unwrap();
    assert_eq!(jobs.len(), 36);
    assert_eq!(jobs.iter().filter(|j| j.members == 2).count(), 5);
    let (jobs, skipped) = parse_swf(
        "jobs.swf",
        &std::fs::read_to_string(fixture("traces/jobs.swf")).unwrap(),
        &SwfMapping::default(),
    )
    .unwrap();
    assert_eq!((jobs.len(), skipped), (13, 1));
    assert!(jobs.iter().all(|j| j.tenant.starts_with("user-")));
}

#[test]
fn openb_replayed_by_its_own_clock() {
    let (code, stdout, stderr) = sim(&[
        "trace",
        "--nodes",
        &fixture("openb/openb_node_list_gpu_node_40.csv"),
        "--trace",
        &fixture("openb/openb_pod_list_default_300.csv"),
        "--policy",
        "fgd,default",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2);
    for (line, policy) in lines.iter().zip(["fgd", "frag-pack"]) {
        assert_eq!(
            line["experiment"], "openb-time",
            "not the arrivals-only protocol"
        );
        assert_eq!(line["policy"], policy);
        assert_eq!(line["jobs"], 300);
        assert_eq!(line["gpus"], 186);
        for q in ["p50", "p95", "p99"] {
            assert!(line["wait_s"][q].is_f64(), "{q} in {line}");
        }
        assert!(line["utilisation_pct"].as_f64().unwrap() > 0.0);
        assert!(!line["utilisation_series"]["pct"]
            .as_array()
            .unwrap()
            .is_empty());
        let tenants: Vec<&str> = line["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap())
            .collect();
        assert_eq!(
            tenants,
            ["BE", "Burstable", "Guaranteed", "LS"],
            "tenants are qos classes"
        );
    }
    let (code, stdout, _) = sim(&[
        "trace",
        "--nodes",
        &fixture("openb/openb_node_list_gpu_node_40.csv"),
        "--trace",
        &fixture("openb/openb_pod_list_default_300.csv"),
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("not the FGD paper's arrivals-only protocol"),
        "{stdout}"
    );
}

#[test]
fn swf_and_jsonl_on_an_inventory() {
    let dir = temp_dir("swf-jsonl");
    let inventory = write(&dir, "inventory.toml", INVENTORY);
    let (swf, jsonl) = (fixture("traces/jobs.swf"), fixture("traces/jobs.jsonl"));
    // Nodes have 4 GPUs: SWF jobs of more than 4 processors become gangs of 4-GPU members.
    let swf_args = ["--trace", &swf, "--gpus-per-node", "4"];
    for (args, jobs) in [(&swf_args[..], 13), (&["--trace", &jsonl][..], 36)] {
        let mut all = vec!["trace", "--inventory", &inventory, "--json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = sim(&all);
        assert_eq!(code, 0, "{stderr}");
        let line = &json_lines(&stdout)[0];
        assert_eq!(line["experiment"], "trace-time");
        assert_eq!(line["jobs"], jobs);
        assert_eq!(line["started"], jobs, "{line}");
    }
    // With 8 GPUs per task, 8 processors ask for more than a node has: they never start.
    let (code, stdout, _) = sim(&[
        "trace",
        "--inventory",
        &inventory,
        "--trace",
        &swf,
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(json_lines(&stdout)[0]["never_started"], 6);
    let (code, stdout, stderr) = sim(&[
        "trace",
        "--inventory",
        &inventory,
        "--trace",
        &fixture("traces/jobs.swf"),
        "--procs-per-gpu",
        "4",
        "--tenant-from",
        "group",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("group-1"), "{stdout}");
    assert!(
        stdout.contains("(1 rows not runnable, left out)"),
        "{stdout}"
    );
}

#[test]
fn malformed_rows_are_one_line_errors() {
    let dir = temp_dir("malformed");
    let inventory = write(&dir, "inventory.toml", INVENTORY);
    let good = "{\"id\":\"a\",\"submit_s\":0,\"duration_s\":1}\n";
    let cases = [
        (
            "bad.jsonl",
            format!("{good}{{\"id\":\"b\",\"submit_s\":0,\"duration_s\":1,\"gpus\":-2}}\n"),
            "bad.jsonl:2: gpus: expected a non-negative integer, got -2",
        ),
        (
            "bad.swf",
            "; header\n1 0 0 60 4 -1 -1 4 -1 -1 1 1 1 -1 1 -1 -1\n".to_string(),
            "bad.swf:2: fields: 17 fields, an swf job line has 18",
        ),
        (
            "bad.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time,deletion_time\n\
             p0,1000,10,1,500,5,\n"
                .to_string(),
            "bad.csv:2: deletion_time: missing (the time-driven replay needs creation and \
             deletion times)",
        ),
    ];
    for (name, text, expect) in cases {
        let path = write(&dir, name, &text);
        let (code, stdout, stderr) = sim(&["trace", "--inventory", &inventory, "--trace", &path]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr, format!("sovra-sim: {}/{expect}\n", dir.display()));
    }
    let unknown = write(&dir, "jobs.txt", good);
    let (code, _, stderr) = sim(&["trace", "--inventory", &inventory, "--trace", &unknown]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot tell the format"), "{stderr}");
    for args in [
        vec!["trace", "--trace", &unknown],
        vec![
            "trace",
            "--inventory",
            &inventory,
            "--trace",
            &unknown,
            "--format",
            "xml",
        ],
        vec![
            "trace",
            "--inventory",
            &inventory,
            "--trace",
            &unknown,
            "--policy",
            "best",
        ],
        vec![
            "trace",
            "--inventory",
            &inventory,
            "--trace",
            &unknown,
            "--seed",
            "-1",
        ],
    ] {
        let (code, _, stderr) = sim(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}
