//! Round trips (`parse(write(d)) == d`) over the examples, synthetic inventories, Slurm imports
//! and random descriptions, and the errors for what the format cannot hold.

use expect_test::{expect, Expect};
use proptest::prelude::*;

use super::*;
use crate::slurm;
use crate::synth::{self, SynthConfig};
use crate::topology::{MigProfile, Topology};

const EXAMPLES: [(&str, &str); 3] = [
    (
        "small.toml",
        include_str!("../../../../examples/inventory/small.toml"),
    ),
    (
        "four-sites.toml",
        include_str!("../../../../examples/inventory/four-sites.toml"),
    ),
    (
        "demo.toml",
        include_str!("../../../../examples/inventory/demo.toml"),
    ),
];

const SLURM_CONF: &str = include_str!("../../../tests/fixtures/slurm/slurm.conf");
const GRES_CONF: &str = include_str!("../../../tests/fixtures/slurm/gres.conf");
const TOPOLOGY_TREE: &str = include_str!("../../../tests/fixtures/slurm/topology-tree.conf");
const TOPOLOGY_BLOCK: &str = include_str!("../../../tests/fixtures/slurm/topology-block.conf");

/// Writes `desc`, reads it back and asserts the two are equal; returns the text.
fn round_trip(desc: &TopologyDesc) -> String {
    let text = match write_inventory(desc, "test") {
        Ok(text) => text,
        Err(e) => panic!("cannot write: {e}"),
    };
    let back = parse_inventory(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(first_difference(desc, &back), None, "{text}");
    assert_eq!(&back, desc);
    // Writing is deterministic, and writing what was read gives the same text.
    assert_eq!(write_inventory(&back, "test").as_ref(), Ok(&text));
    text
}

#[test]
fn examples_round_trip() {
    let docs = include_str!("../../../../docs/inventory.md");
    let docs_example = docs
        .split("## Full example\n\n```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/inventory.md has a full example");
    for (name, text) in EXAMPLES.into_iter().chain([("docs", docs_example)]) {
        let desc = parse_inventory(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        round_trip(&desc);
        Topology::build(desc).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn example_is_written_readably() {
    let desc = parse_inventory(EXAMPLES[0].1).unwrap();
    expect![[r##"
        # test

        version = 1

        # syd1: 6 nodes, 48 gpus
        [[site]]
        name = "syd1"
        jurisdiction = "AU"
        region = "ap-southeast-2"

        [[site.nodes]]
        names = "syd1-n[1-4]"
        leaf = "l0"
        spine = "s0"
        cpus = 96
        memory_gb = 1024
        gpus = "8xH100"
        nics = "4x400"

        [[site.nodes]]
        names = "syd1-n[5-6]"
        leaf = "l1"
        spine = "s0"
        cpus = 64
        memory_gb = 512
        gpus = [{ model = "A100-80GB", count = 8, mig = [0] }]
        nics = "2x200"

        # sin1: 2 nodes, 8 gpus
        [[site]]
        name = "sin1"
        jurisdiction = "SG"
        region = "ap-southeast-1"

        [[site.nodes]]
        names = "sin1-n[1-2]"
        leaf = "l0"
        spine = "s0"
        cpus = 64
        memory_gb = 512
        gpus = "4xL40S"
        nics = "2x100"

        [[link]]
        a = "syd1"
        b = "sin1"
        rtt_ms = 92
        gbit_per_s = 100
    "##]]
    .assert_eq(&round_trip(&desc));
}

fn synth_configs() -> Vec<SynthConfig> {
    let mut mig_and_nvl = SynthConfig::four_sites(256);
    mig_and_nvl.mig_leaf_fraction = 0.5;
    mig_and_nvl.nvl_domain_nodes = 9;
    let mut odd = SynthConfig::four_sites(16);
    odd.site_fabric.leaf_rtt_ns = 4_321;
    odd.site_fabric.pcie_gbit_per_s = 64;
    odd.cpu_milli_per_node = 1_500;
    odd.memory_mib_per_node = 1_000;
    odd.gpus_per_node = 0;
    odd.nics_per_node = 0;
    odd.site_links[0].rtt_ns = 123_456_789;
    let mut custom_model = SynthConfig::four_sites(16);
    custom_model.gpu_model = GpuModelDesc {
        name: "X9".to_string(),
        memory_mib: 96 * 1024 + 1,
        nvlink_gbit_per_s: 0,
        mig_profiles: vec![MigProfile {
            name: "half".to_string(),
            compute_slices: 3,
            memory_slices: 4,
        }],
    };
    custom_model.mig_leaf_fraction = 1.0;
    vec![
        SynthConfig::four_sites(16),
        SynthConfig::four_sites(4096),
        mig_and_nvl,
        odd,
        custom_model,
    ]
}

#[test]
fn synthetic_inventories_round_trip() {
    for cfg in synth_configs() {
        let desc = synth::generate(&cfg);
        let text = round_trip(&desc);
        // A regular site is a few groups, not one per node or per leaf.
        let groups = text.matches("[[site.nodes]]").count();
        assert!(groups <= 4 * cfg.sites.len(), "{groups} groups:\n{text}");
    }
    let text = round_trip(&synth::generate(&synth_configs()[2]));
    let tok1 = text.split("[[site]]").nth(2).expect("second site");
    expect![[r#"

        name = "tok1"
        jurisdiction = "JP"
        region = "ap-northeast-1"

        [[site.nodes]]
        names = "tok1-s0-l00-n[000-026]"
        leaf = "s0-l00"
        spine = "s0"
        nvlink_domain = "s0-l00-nvl[0-2]"
        nodes_per_nvlink_domain = 9
        cpus = 224
        memory_gb = 2048
        gpus = "8xH100"
        nics = [
            { name = "mlx5_0", gbit_per_s = 400 },
            { name = "mlx5_1", gbit_per_s = 400 },
            { name = "mlx5_2", gbit_per_s = 400 },
            { name = "mlx5_3", gbit_per_s = 400 },
            { name = "mlx5_4", gbit_per_s = 400 },
            { name = "mlx5_5", gbit_per_s = 400 },
            { name = "mlx5_6", gbit_per_s = 400 },
            { name = "mlx5_7", gbit_per_s = 400 },
        ]

        [[site.nodes]]
        names = "tok1-s0-l00-n[027-031]"
        leaf = "s0-l00"
        spine = "s0"
        cpus = 224
        memory_gb = 2048
        gpus = "8xH100"
        nics = [
            { name = "mlx5_0", gbit_per_s = 400 },
            { name = "mlx5_1", gbit_per_s = 400 },
            { name = "mlx5_2", gbit_per_s = 400 },
            { name = "mlx5_3", gbit_per_s = 400 },
            { name = "mlx5_4", gbit_per_s = 400 },
            { name = "mlx5_5", gbit_per_s = 400 },
            { name = "mlx5_6", gbit_per_s = 400 },
            { name = "mlx5_7", gbit_per_s = 400 },
        ]

        [[site.nodes]]
        names = "tok1-s1-l00-n[000-031]"
        leaf = "s1-l00"
        spine = "s1"
        cpus = 224
        memory_gb = 2048
        gpus = [{ model = "H100", count = 8, mig = true }]
        nics = [
            { name = "mlx5_0", gbit_per_s = 400 },
            { name = "mlx5_1", gbit_per_s = 400 },
            { name = "mlx5_2", gbit_per_s = 400 },
            { name = "mlx5_3", gbit_per_s = 400 },
            { name = "mlx5_4", gbit_per_s = 400 },
            { name = "mlx5_5", gbit_per_s = 400 },
            { name = "mlx5_6", gbit_per_s = 400 },
            { name = "mlx5_7", gbit_per_s = 400 },
        ]

        # sin1: 64 nodes, 512 gpus
    "#]]
    .assert_eq(tok1);
}

fn import(topology: Option<&str>, nvlink_blocks: bool) -> TopologyDesc {
    let conf = slurm::parse_slurm_conf(SLURM_CONF).unwrap();
    let topology = topology.map(|t| slurm::parse_topology_conf(t).unwrap());
    let gres = slurm::parse_gres_conf(GRES_CONF).unwrap();
    let opts = slurm::ImportOptions {
        jurisdiction: Some("AU".to_string()),
        blocks_are_nvlink_domains: nvlink_blocks,
        ..slurm::ImportOptions::default()
    };
    slurm::import(&conf, topology.as_ref(), Some(&gres), &opts).unwrap()
}

#[test]
fn slurm_imports_round_trip_once_gpu_memory_is_known() {
    let imports = [
        import(Some(TOPOLOGY_TREE), false),
        import(Some(TOPOLOGY_BLOCK), false),
        import(Some(TOPOLOGY_BLOCK), true),
        import(None, false),
    ];
    for mut desc in imports {
        // Slurm does not say how much memory a GPU has.
        check_err(
            &desc,
            expect![[r#"
                gpu model "a100": memory unknown (0 mib); an inventory needs a positive memory_gb or memory_mib
            "#]],
        );
        for model in &mut desc.models {
            model.memory_mib = 80 * 1024;
        }
        round_trip(&desc);
    }
    let mut desc = import(Some(TOPOLOGY_TREE), false);
    desc.models
        .iter_mut()
        .for_each(|m| m.memory_mib = 80 * 1024);
    expect![[r##"
        # test

        version = 1

        [[model]]
        name = "a100"
        memory_gb = 80

        [[model]]
        name = "h100"
        memory_gb = 80
        nvlink_gbit_per_s = 0
        mig = false

        [[model]]
        name = "l40s"
        memory_gb = 80
        nvlink_gbit_per_s = 0
        mig = false

        # harbour: 17 nodes, 98 gpus
        [[site]]
        name = "harbour"
        jurisdiction = "AU"

        [[site.nodes]]
        names = "hgx[001-008]"
        leaf = "leaf[1-2]"
        nodes_per_leaf = 4
        spine = "spine1"
        cpus = 128
        memory_mib = 1031000
        gpus = "8xa100"

        [[site.nodes]]
        names = "hgx[009-012]"
        leaf = "leaf3"
        spine = "spine2"
        cpus = 128
        memory_mib = 1031000
        gpus = "8xh100"

        [[site.nodes]]
        names = "cpu[01-04]"
        leaf = "leaf4"
        spine = "spine2"
        cpus = 64
        memory_mib = 515000

        [[site.nodes]]
        names = "viz01"
        leaf = "leaf3"
        spine = "spine2"
        cpus = 32
        memory_mib = 257000
        gpus = "2xl40s"
    "##]]
    .assert_eq(&round_trip(&desc));
}

fn check_err(desc: &TopologyDesc, expect: Expect) {
    let message = match write_inventory(desc, "") {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    assert!(!message.contains('\n'), "multi-line error: {message}");
    expect.assert_eq(&format!("{message}\n"));
}

#[test]
fn what_the_format_cannot_hold() {
    let base = synth::generate(&SynthConfig::four_sites(16));
    assert!(write_inventory(&base, "").is_ok());
    let with = |change: &dyn Fn(&mut TopologyDesc)| {
        let mut desc = base.clone();
        change(&mut desc);
        desc
    };
    let cases: Vec<(TopologyDesc, Expect)> = vec![
        (
            with(&|d| d.nodes.swap(0, 10)),
            expect![[r#"
                node "syd1-s0-l01-n000": listed after nodes of site "sin1"; an inventory lists nodes site by site, in the order of the sites
            "#]],
        ),
        (
            with(&|d| d.nodes[3].name = d.nodes[2].name.clone()),
            expect![[r#"
                node "syd1-s1-l00-n000": declared twice
            "#]],
        ),
        (
            with(&|d| d.nodes[0].name = "n 1".to_string()),
            expect![[r#"
                node "n 1": the name is not a valid hostlist item
            "#]],
        ),
        (
            with(&|d| d.nodes[0].name = "n[1]".to_string()),
            expect![[r#"
                node "n[1]": the name is not a valid hostlist item
            "#]],
        ),
        (
            with(&|d| d.nodes[0].leaf = "a,b".to_string()),
            expect![[r#"
                node "syd1-s0-l00-n000": leaf name "a,b" is not a valid hostlist item
            "#]],
        ),
        (
            with(&|d| d.nodes[0].site = "mars".to_string()),
            expect![[r#"
                node "syd1-s0-l00-n000": unknown site "mars"
            "#]],
        ),
        (
            with(&|d| d.nodes[0].cpu_milli = 0),
            expect![[r#"
                node "syd1-s0-l00-n000": no cpus; an inventory needs a positive cpus
            "#]],
        ),
        (
            with(&|d| d.nodes[0].gpus[0].model = "h100".to_string()),
            expect![[r#"
                node "syd1-s0-l00-n000": gpu model "h100" is not one of the description's models
            "#]],
        ),
        (
            with(&|d| {
                d.models[0].mig_profiles.clear();
                d.nodes[0].gpus[0].mig = true;
            }),
            expect![[r#"
                node "syd1-s0-l00-n000": a gpu in mig mode, but gpu model "H100" is not mig-capable
            "#]],
        ),
        (
            with(&|d| d.models[0].memory_mib = 0),
            expect![[r#"
                gpu model "H100": memory unknown (0 mib); an inventory needs a positive memory_gb or memory_mib
            "#]],
        ),
        (
            with(&|d| d.models.push(d.models[0].clone())),
            expect![[r#"
                gpu model "H100": declared twice (model names ignore case)
            "#]],
        ),
        (
            with(&|d| d.sites[1].jurisdiction = "Japan!".to_string()),
            expect![[r#"
                site "tok1": invalid jurisdiction "Japan!": use letters, digits and '-', starting with a letter
            "#]],
        ),
        (
            with(&|d| d.sites[1].name = d.sites[0].name.clone()),
            expect![[r#"
                site "syd1": declared twice
            "#]],
        ),
        (
            with(&|d| {
                d.site_links.push(SiteLinkDesc {
                    a: "syd1".to_string(),
                    b: "syd1".to_string(),
                    rtt_ns: 0,
                    gbit_per_s: 1,
                })
            }),
            expect![[r#"
                site link "syd1"-"syd1": an inventory link joins two different sites
            "#]],
        ),
        (
            with(&|d| {
                let mut l = d.site_links[0].clone();
                std::mem::swap(&mut l.a, &mut l.b);
                l.gbit_per_s += 1;
                d.site_links.push(l);
            }),
            expect![[r#"
                site link "tok1"-"syd1": contradicts an earlier link between the same sites
            "#]],
        ),
        (
            with(&|d| d.site_links[0].rtt_ns = (1 << 60) + 1),
            expect![[r#"
                site link "syd1"-"tok1": rtt of 1152921504606846977 ns has no exact value in ms
            "#]],
        ),
    ];
    for (desc, expect) in cases {
        check_err(&desc, expect);
    }
}

#[test]
fn odd_names_are_quoted_or_listed() {
    let mut desc = synth::generate(&SynthConfig::four_sites(16));
    desc.sites[0].region = "a \"quoted\" \\ region\twith\u{1}".to_string();
    desc.models[0].name = "H 100,x".to_string();
    for gpu in desc.nodes.iter_mut().flat_map(|n| &mut n.gpus) {
        gpu.model = "H 100,x".to_string();
    }
    desc.nodes[0].name = "n01".to_string();
    desc.nodes[1].name = "n1".to_string();
    desc.nodes[2].name = "n001".to_string();
    let text = round_trip(&desc);
    assert!(
        text.contains(r#"region = "a \"quoted\" \\ region\twith\u0001""#),
        "{text}"
    );
    assert!(
        text.contains(r#"gpus = [{ model = "H 100,x", count = 8 }]"#),
        "{text}"
    );
}

/// Random descriptions the format can hold: every one is written and reads back equal.
fn arb_desc() -> impl Strategy<Value = TopologyDesc> {
    let node = (
        0..3usize,
        (0..4usize, 0..3usize, prop::option::of(0..3usize)),
        (prop::sample::select(vec![1_000u64, 1_500, 64_000]), 1..3u64),
        prop::collection::vec((0..3usize, any::<bool>()), 0..4),
        prop::collection::vec((any::<bool>(), 1..3u32), 0..3),
    );
    (1..4usize, prop::collection::vec(node, 1..60), any::<bool>()).prop_map(
        |(n_sites, nodes, declare_h100)| {
            let mut models = vec![GpuModelDesc {
                name: "X1".to_string(),
                memory_mib: 3000,
                nvlink_gbit_per_s: 0,
                mig_profiles: Vec::new(),
            }];
            let h100 = builtin_model("H100").expect("built in");
            let l4 = builtin_model("L4").expect("built in");
            if declare_h100 {
                models.push(h100.clone());
            }
            let sites: Vec<SiteDesc> = (0..n_sites)
                .map(|i| SiteDesc {
                    name: format!("site{i}"),
                    jurisdiction: format!("J{i}"),
                    region: String::new(),
                    fabric: SiteFabric::default(),
                })
                .collect();
            let mut nodes: Vec<NodeDesc> = nodes
                .into_iter()
                .enumerate()
                .map(
                    |(i, (site, (leaf, spine, domain), (cpu, mem), gpus, nics))| {
                        let pool = [&models[0], &h100, &l4];
                        let gpus = gpus
                            .into_iter()
                            .map(|(m, mig)| GpuDesc {
                                model: pool[m].name.clone(),
                                mig: mig && !pool[m].mig_profiles.is_empty(),
                            })
                            .collect();
                        let nics = nics
                            .into_iter()
                            .enumerate()
                            .map(|(j, (auto, gbit))| NicDesc {
                                name: if auto {
                                    format!("nic{j}")
                                } else {
                                    format!("eth{j}")
                                },
                                gbit_per_s: gbit * 100,
                            })
                            .collect();
                        NodeDesc {
                            name: format!("n{:02}", i * 7 % 60 + i / 60),
                            site: format!("site{}", site % n_sites),
                            spine: format!("s{spine}"),
                            leaf: format!("l{leaf}"),
                            nvlink_domain: domain.map(|d| format!("d{d}")),
                            cpu_milli: cpu,
                            memory_mib: mem * 1024,
                            gpus,
                            nics,
                        }
                    },
                )
                .collect();
            nodes.sort_by_key(|n| n.site.clone());
            // Built-in models nobody declared come in the order nodes first use them.
            for gpu in nodes.iter().flat_map(|n| &n.gpus) {
                if !models.iter().any(|m| m.name == gpu.model) {
                    models.push(builtin_model(&gpu.model).expect("built in"));
                }
            }
            let mut site_links = Vec::new();
            for a in 0..n_sites {
                for b in a + 1..n_sites {
                    site_links.push(SiteLinkDesc {
                        a: format!("site{a}"),
                        b: format!("site{b}"),
                        rtt_ns: (a * 10 + b) as u64 * 250_000,
                        gbit_per_s: 100,
                    });
                }
            }
            TopologyDesc {
                models,
                sites,
                nodes,
                site_links,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_descriptions_round_trip(desc in arb_desc()) {
        round_trip(&desc);
    }
}
