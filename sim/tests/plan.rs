//! `sovra-sim plan`: scenario files, the baseline and the scenario side by side, the same
//! seed giving the same JSON and SVG byte for byte, and one-line `file:line: field: why`
//! errors.

mod common;

use common::{fixture, json_lines, sim, temp_dir, write};
use expect_test::expect;
use sovra_sim::loader::LoadError;
use sovra_sim::scenario::{base_cluster, parse_scenario, prepare};
use sovra_sim::swf::SwfMapping;
use sovra_sim::trace::{parse_trace, Format};

#[test]
fn same_seed_same_json_and_svg() {
    let scenario = fixture("plan/two-sites.toml");
    let dir = temp_dir("plan-determinism");
    let mut outputs = Vec::new();
    for run in ["a", "b"] {
        let svg = dir.join(run).display().to_string();
        let (code, stdout, stderr) = sim(&["plan", &scenario, "--json", "--svg", &svg]);
        assert_eq!(code, 0, "{stderr}");
        let mut files = Vec::new();
        for name in ["utilisation.svg", "wait-cdf.svg", "comparison.svg"] {
            let text = std::fs::read_to_string(dir.join(run).join(name)).unwrap();
            assert!(text.starts_with("<svg"), "{name}");
            files.push(text);
        }
        outputs.push((stdout, files));
    }
    assert_eq!(outputs[0], outputs[1], "same seed, same bytes");
    let lines = json_lines(&outputs[0].0);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (&lines[0]["run"], &lines[1]["run"]),
        (&"baseline".into(), &"scenario".into())
    );
    for line in &lines {
        assert_eq!(line["experiment"], "plan");
        assert_eq!(line["scenario"], "two sites");
        assert_eq!(line["seed"], 3);
        for q in ["p50", "p95", "p99"] {
            assert!(line["wait_s"][q].is_f64());
            assert!(line["tenants"][0]["wait_s"][q].is_f64());
        }
        for key in ["utilisation_pct", "unallocated_pct"] {
            assert!(line[key].is_f64(), "{key}");
        }
        assert!(line["rejected"].is_u64());
    }
    // Another seed breaks ties another way.
    let (code, stdout, _) = sim(&["plan", &scenario, "--json", "--seed", "4"]);
    assert_eq!(code, 0);
    let other = json_lines(&stdout);
    assert_eq!(other[0]["seed"], 4);
    assert_ne!(other[0]["trace_hash"], lines[0]["trace_hash"]);
}

#[test]
fn baseline_and_scenario_side_by_side() {
    let (code, stdout, stderr) = sim(&["plan", &fixture("plan/two-sites.toml")]);
    assert_eq!(code, 0, "{stderr}");
    expect![[r#"
        two sites: policy best-fit, seed 3, 36 jobs, 24 gpus at the start
                                           baseline     scenario       change
          gpu utilisation                   55.81 %      49.26 %     -6.55 pp
          unallocated while jobs wait       36.30 %      47.56 %    +11.26 pp
          gpus online (mean)                   24.0         29.6         +5.6
          wait p50                              0 s          0 s
          wait p95                            3.2 h        2.3 h
          wait p99                            6.9 h        2.6 h
          rejected                                0            0           +0
          never started                           0            0           +0
          failed (node failures)                  0            0           +0
          requeued                                0            2           +2
          end                                13.4 h       12.8 h

          tenant         run          jobs  started  rejected  never  wait p50  wait p95  wait p99
          a              baseline       27       27         0      0       0 s    22 min    24 min
                         scenario       27       27         0      0       0 s     9 min    24 min
          b              baseline        9        9         0      0    11 min     6.9 h     6.9 h
                         scenario        9        9         0      0    44 min     2.6 h     2.6 h

    "#]]
    .assert_eq(&stdout);
}

#[test]
fn policies_and_policy_changes() {
    let scenario = fixture("plan/two-sites.toml");
    let (code, stdout, stderr) = sim(&["plan", &scenario, "--json", "--policy", "best-fit,fgd"]);
    assert_eq!(code, 0, "{stderr}");
    let runs: Vec<(String, String)> = json_lines(&stdout)
        .iter()
        .map(|l| {
            (
                l["run"].as_str().unwrap().into(),
                l["policy"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("baseline", "best-fit"),
        ("scenario", "best-fit"),
        ("baseline", "fgd"),
        ("scenario", "fgd"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(runs, expect);
    // A `policy` change: the scenario runs another policy than the baseline.
    let dir = temp_dir("plan-policy");
    let text = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("../traces/jobs.jsonl", &fixture("traces/jobs.jsonl"))
        + "\n[[changes]]\nkind = \"policy\"\npolicy = \"frag-pack\"\n";
    let path = write(&dir, "policy.toml", &text);
    let (code, stdout, stderr) = sim(&["plan", &path, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(
        (&lines[0]["policy"], &lines[1]["policy"]),
        (&"best-fit".into(), &"frag-pack".into())
    );
}

#[test]
fn restricted_tenants_are_rejected_where_nothing_is_allowed() {
    let dir = temp_dir("plan-restrict");
    let text = std::fs::read_to_string(fixture("plan/two-sites.toml"))
        .unwrap()
        .replace("../traces/jobs.jsonl", &fixture("traces/jobs.jsonl"))
        + "\n[[changes]]\nkind = \"restrict-tenant\"\ntenant = \"b\"\njurisdictions = [\"JP\"]\n";
    let path = write(&dir, "restrict.toml", &text);
    let (code, stdout, stderr) = sim(&["plan", &path, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    let b = |line: &serde_json::Value| line["tenants"][1].clone();
    assert_eq!(b(&lines[0])["tenant"], "b");
    assert_eq!(b(&lines[0])["rejected"], 0);
    assert_eq!(
        b(&lines[1])["rejected"],
        9,
        "b may use SG only; restricted to JP, nothing is left"
    );
    assert_eq!(lines[1]["rejected"], 9);
}

/// A scenario's error: parsing, then preparing against the fixture trace.
fn scenario_error(text: &str) -> String {
    let run = || -> Result<(), LoadError> {
        let sc = parse_scenario("s.toml", text)?;
        let base = base_cluster(&sc, None)?;
        let jobs = std::fs::read_to_string(fixture("traces/jobs.jsonl")).unwrap();
        let trace = parse_trace(Format::Jsonl, "jobs.jsonl", &jobs, &SwfMapping::default())?;
        prepare(&sc, base, &trace)?;
        Ok(())
    };
    run().unwrap_err().to_string()
}

#[test]
fn scenario_errors_name_file_line_and_field() {
    let head = "[cluster]\n[[cluster.sites]]\nname = \"east\"\njurisdiction = \"JP\"\n\
                nodes = [{ count = 2, gpus = 4, model = \"H100\" }]\n\
                [workload]\ntrace = \"jobs.jsonl\"\n";
    let change = |body: &str| format!("{head}\n[[changes]]\n{body}\n");
    let cases = [
        ("seed = 1\n", "s.toml:1: toml: missing field `cluster`"),
        (
            &format!("{head}colour = 1\n") as &str,
            "s.toml:8: toml: unknown field `colour`, expected one of `trace`, `format`, \
             `procs_per_gpu`, `gpus_per_node`, `tenant_from`, `arrival_scale`, \
             `default_jurisdictions`, `tenants`",
        ),
        (
            &change("kind = \"flood\""),
            "s.toml:9: changes[0].kind: unknown change \"flood\": expected add-gpus, \
             remove-gpus, outage, drain, fail, restrict-tenant or policy",
        ),
        (
            &change("kind = \"outage\"\nsite = \"east\"\nat = \"6x\""),
            "s.toml:9: changes[0].at: \"6x\" is not a time: use seconds or e.g. \"90s\", \
             \"6h\", \"1d12h\"",
        ),
        (
            &change("kind = \"outage\"\nsite = \"east\"\nat = \"6h\"\nuntil = \"5h\""),
            "s.toml:9: changes[0].until: must be after at",
        ),
        (
            &change("kind = \"outage\"\nsite = \"west\"\nat = 60"),
            "s.toml:9: changes[0].site: unknown site \"west\" (the cluster has east)",
        ),
        (
            &change("kind = \"outage\"\nsite = \"east\"\nat = 60\ngpus = 8"),
            "s.toml:9: changes[0].gpus: outage does not take gpus",
        ),
        (
            &change("kind = \"add-gpus\"\nsite = \"east\"\nat = 0\nmodel = \"H100\"\ngpus = 6"),
            "s.toml:9: changes[0].gpus: 6 gpus do not make whole nodes of 4 gpus",
        ),
        (
            &change("kind = \"add-gpus\"\nsite = \"east\"\nat = 0\nmodel = \"B200\"\ngpus = 8"),
            "s.toml:9: changes[0].gpus_per_node: no B200 node to copy: set gpus_per_node, cpus \
             and memory_gib",
        ),
        (
            &change("kind = \"remove-gpus\"\nsite = \"east\"\nat = 0\nmodel = \"H100\"\ngpus = 12"),
            "s.toml:9: changes[0].gpus: east has no whole nodes of H100 making 12 gpus (4 left \
             over)",
        ),
        (
            &change("kind = \"drain\"\nnodes = [\"east-n0009\"]\nat = 0"),
            "s.toml:9: changes[0].nodes: unknown node \"east-n0009\"",
        ),
        (
            &change("kind = \"restrict-tenant\"\ntenant = \"zed\"\njurisdictions = [\"JP\"]"),
            "s.toml:9: changes[0].tenant: no job of tenant \"zed\" in the trace",
        ),
        (
            &change("kind = \"restrict-tenant\"\ntenant = \"a\"\njurisdictions = [\"SG\"]"),
            "s.toml:9: changes[0].jurisdictions: jurisdiction SG has no site in the cluster (JP)",
        ),
        (
            &change("kind = \"policy\"\npolicy = \"greedy\""),
            "s.toml:9: changes[0].policy: unknown policy \"greedy\": expected one of best-fit, \
             frag-pack, fgd, random, dot-product, gpu-clustering, gpu-packing, node-best-fit \
             (or default, dotprod, clustering, packing, bestfit)",
        ),
        (
            &format!("{head}[[workload.tenants]]\nname = \"a\"\njurisdictions = [\"J\"]\n"),
            "s.toml:8: workload.tenants[0].jurisdictions: invalid jurisdiction \"J\": expected \
             2 to 8 characters",
        ),
        (
            &head.replace("gpus = 4,", "gpus = 40,"),
            "s.toml:5: cluster.sites[0].nodes[0].gpus: 40 gpus, at most 32 per node",
        ),
        (
            &format!("seed = 1000000000000000\n{head}"),
            "s.toml:1: seed: 1000000000000000 is above the maximum 281474976710656",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, expect) in cases {
        let got = scenario_error(text);
        if got != expect {
            wrong.push(format!("{text}\n  got:    {got}\n  expect: {expect}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn plan_errors_are_one_line_with_exit_codes() {
    let dir = temp_dir("plan-errors");
    let bad = write(&dir, "bad.toml", "[cluster\n");
    let (code, stdout, stderr) = sim(&["plan", &bad]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("sovra-sim: {bad}:1: toml: ")),
        "{stderr}"
    );
    let missing_trace = write(
        &dir,
        "missing.toml",
        "[cluster]\nopenb_nodes = \"nodes.csv\"\n[workload]\ntrace = \"pods.csv\"\n",
    );
    let (code, _, stderr) = sim(&["plan", &missing_trace]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("sovra-sim: cannot read "), "{stderr}");
    for args in [
        vec!["plan"],
        vec!["plan", &bad, "--policy", "nope"],
        vec!["plan", &bad, "--x"],
    ] {
        assert_eq!(sim(&args).0, 2, "{args:?}");
    }
}
