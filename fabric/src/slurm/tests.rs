//! Tests of the parsers and the import, on the sample files in `fabric/tests/fixtures/slurm/`.

use std::fmt::Write;

use expect_test::{expect, Expect};

use super::hostlist::compress;
use super::*;
use crate::topology::Topology;

const SLURM_CONF: &str = include_str!("../../tests/fixtures/slurm/slurm.conf");
const TOPOLOGY_TREE: &str = include_str!("../../tests/fixtures/slurm/topology-tree.conf");
const TOPOLOGY_BLOCK: &str = include_str!("../../tests/fixtures/slurm/topology-block.conf");
const GRES_CONF: &str = include_str!("../../tests/fixtures/slurm/gres.conf");

fn au() -> ImportOptions {
    ImportOptions {
        jurisdiction: Some("AU".to_string()),
        region: "ap-southeast-2".to_string(),
        ..ImportOptions::default()
    }
}

/// An error as one checked line: one line, no full stop.
fn message(e: &SlurmImportError) -> String {
    let message = e.to_string();
    assert!(!message.contains('\n'), "multi-line error: {message}");
    assert!(!message.ends_with('.'), "full stop: {message}");
    message
}

fn render_conf(conf: &SlurmConf) -> String {
    let mut out = String::new();
    writeln!(out, "cluster {:?}", conf.cluster_name).unwrap();
    for n in &conf.nodes {
        let gres: Vec<String> = n
            .gres
            .iter()
            .map(|g| {
                let t = g
                    .type_name
                    .as_deref()
                    .map(|t| format!(":{t}"))
                    .unwrap_or_default();
                let nc = if g.no_consume { ":no_consume" } else { "" };
                format!("{}{t}{nc}:{}", g.name, g.count)
            })
            .collect();
        let attrs: Vec<String> = n.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "line {} node {} ({}): cpus {} mem {:?} gres [{}] features [{}] weight {:?} \
             state {:?} attrs [{}]",
            n.line,
            compress(&n.names),
            n.names.len(),
            n.cpu_count(),
            n.real_memory_mib,
            gres.join(","),
            n.features.join(","),
            n.weight,
            n.state,
            attrs.join(" "),
        )
        .unwrap();
    }
    for p in &conf.partitions {
        let nodes = match &p.nodes {
            PartitionNodes::All => "ALL".to_string(),
            PartitionNodes::Names(names) => compress(names),
        };
        writeln!(
            out,
            "line {} partition {} nodes {nodes:?} default {} max_time {:?} state {:?}",
            p.line, p.name, p.default, p.max_time, p.state
        )
        .unwrap();
    }
    let globals: Vec<String> = conf
        .globals
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    writeln!(out, "globals {}", globals.join(" ")).unwrap();
    if !conf.includes.is_empty() {
        writeln!(out, "includes {:?}", conf.includes).unwrap();
    }
    out
}

fn check_conf(text: &str, expect: Expect) {
    let actual = match parse_slurm_conf(text) {
        Ok(conf) => render_conf(&conf),
        Err(e) => format!("error: {}\n", message(&e)),
    };
    expect.assert_eq(&actual);
}

fn render_topology(topology: &SlurmTopology) -> String {
    let mut out = String::new();
    match topology {
        SlurmTopology::Tree { switches } => {
            for s in switches {
                writeln!(
                    out,
                    "line {} switch {}: nodes {:?} switches {:?} link_speed {:?}",
                    s.line,
                    s.name,
                    compress(&s.nodes),
                    compress(&s.switches),
                    s.link_speed
                )
                .unwrap();
            }
        }
        SlurmTopology::Block {
            blocks,
            block_sizes,
        } => {
            for b in blocks {
                writeln!(
                    out,
                    "line {} block {}: nodes {:?}",
                    b.line,
                    b.name,
                    compress(&b.nodes)
                )
                .unwrap();
            }
            writeln!(out, "block sizes {block_sizes:?}").unwrap();
        }
    }
    out
}

fn check_topology(text: &str, expect: Expect) {
    let actual = match parse_topology_conf(text) {
        Ok(topology) => render_topology(&topology),
        Err(e) => format!("error: {}\n", message(&e)),
    };
    expect.assert_eq(&actual);
}

/// A compact, stable rendering of a built topology.
fn summary(topo: &Topology) -> String {
    let mut out = String::new();
    let models: Vec<String> = topo
        .models()
        .iter()
        .map(|m| {
            format!(
                "{} ({} MiB, nvlink {}, mig {})",
                m.name,
                m.memory_mib,
                m.nvlink_gbit_per_s,
                m.mig_profiles.len()
            )
        })
        .collect();
    writeln!(out, "models: {}", models.join(", ")).unwrap();
    let gpus = |range: &std::ops::Range<u32>| -> u32 {
        topo.nodes()[range.start as usize..range.end as usize]
            .iter()
            .map(|n| n.gpu_count())
            .sum()
    };
    for (i, site) in topo.sites().iter().enumerate() {
        writeln!(
            out,
            "site {} {} {:?}: {} nodes, {} gpus, {} nvlink domains",
            site.name,
            topo.site_jurisdiction(crate::SiteId::from_idx(i)),
            site.region,
            site.nodes.len(),
            gpus(&site.nodes),
            site.domains.len(),
        )
        .unwrap();
        for spine in &topo.spines()[site.spines.start as usize..site.spines.end as usize] {
            writeln!(out, "  spine {}", spine.name).unwrap();
            for leaf in &topo.leaves()[spine.leaves.start as usize..spine.leaves.end as usize] {
                let names: Vec<&str> = topo.nodes()
                    [leaf.nodes.start as usize..leaf.nodes.end as usize]
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect();
                writeln!(
                    out,
                    "    leaf {}: {} ({} nodes, {} gpus, {} nvlink domains)",
                    leaf.name,
                    compress(&names),
                    names.len(),
                    gpus(&leaf.nodes),
                    leaf.domains.len(),
                )
                .unwrap();
            }
        }
    }
    // One line per distinct node shape.
    let mut shapes: Vec<String> = Vec::new();
    for node in topo.nodes() {
        let model = node.model.map_or("-", |m| topo.model(m).name.as_str());
        let shape = format!(
            "{} cpus, {} MiB, {} gpus {model}, {} nics",
            node.cpu_milli / 1000,
            node.memory_mib,
            node.gpu_count(),
            node.nics.len()
        );
        if !shapes.iter().any(|s| s.ends_with(&shape)) {
            shapes.push(format!("node {}: {shape}", node.name));
        }
    }
    out.push_str(&shapes.join("\n"));
    out.push('\n');
    out
}

fn check_import(
    conf: &str,
    topology: Option<&str>,
    gres: Option<&str>,
    opts: &ImportOptions,
    expect: Expect,
) {
    let actual = match import_texts(conf, topology, gres, opts) {
        Ok(desc) => match Topology::build(desc) {
            Ok(topo) => summary(&topo),
            Err(e) => format!("build error: {e}\n"),
        },
        Err(e) => format!("error: {}\n", message(&e)),
    };
    expect.assert_eq(&actual);
}

fn import_texts(
    conf: &str,
    topology: Option<&str>,
    gres: Option<&str>,
    opts: &ImportOptions,
) -> Result<TopologyDesc, SlurmImportError> {
    let conf = parse_slurm_conf(conf)?;
    let topology = topology.map(parse_topology_conf).transpose()?;
    let gres = gres.map(parse_gres_conf).transpose()?;
    import(&conf, topology.as_ref(), gres.as_ref(), opts)
}

// ---------------------------------------------------------------------------------------------
// slurm.conf

#[test]
fn slurm_conf_fixture() {
    check_conf(
        SLURM_CONF,
        expect![[r#"
            cluster Some("harbour")
            line 14 node hgx[001-008] (8): cpus 128 mem Some(1031000) gres [gpu:a100:8] features [a100,ib] weight Some(10) state Some("UNKNOWN") attrs []
            line 17 node hgx[009-012] (4): cpus 128 mem Some(1031000) gres [gpu:8] features [h100,ib] weight Some(20) state Some("UNKNOWN") attrs [NodeAddr=10.0.1.[9-12]]
            line 21 node cpu[01-04] (4): cpus 64 mem Some(515000) gres [] features [] weight Some(1) state Some("UNKNOWN") attrs []
            line 23 node viz01 (1): cpus 32 mem Some(257000) gres [gpu:l40s:2] features [viz] weight None state Some("UNKNOWN") attrs []
            line 26 partition gpu nodes "hgx[001-012]" default true max_time Some(Minutes(1440)) state Some("UP")
            line 27 partition cpu nodes "cpu[01-04]" default false max_time Some(Minutes(2880)) state Some("UP")
            line 28 partition all nodes "ALL" default false max_time Some(Infinite) state Some("DOWN")
            globals SlurmctldHost=head0(10.0.0.1) SelectType=select/cons_tres SelectTypeParameters=CR_Core_Memory GresTypes=gpu TopologyPlugin=topology/tree ProctrackType=proctrack/cgroup
        "#]],
    );
}

#[test]
fn slurm_conf_defaults_continuation_and_case() {
    check_conf(
        "NodeName=DEFAULT CPUs=4 RealMemory=100 Gres=gpu:2\n\
         NodeName=a[1-2]\n\
         NODENAME=b1 cpus=8 \\\n  REALMEMORY=200 # a comment\n\
         NodeName=DEFAULT Gres=gpu:v100:1 CPUs=2\n\
         NodeName=c1 Weight=5 Boards=2 SocketsPerBoard=2 CoresPerSocket=4 Procs=3\n\
         NodeName=DEFAULT CPUs=1 gres=gpu:1\n\
         nodename=d1 Boards=2 SocketsPerBoard=2 CoresPerSocket=4\n\
         PartitionName=DEFAULT MaxTime=30 Default=yes\n\
         partitionname=p1 Nodes=a[1-2],b1\n\
         PartitionName=p2 Default=NO maxtime=1:30 Shared=NO\n\
         include /etc/slurm/cgroup-nodes.conf\n\
         ClusterName=x DebugFlags=Gres\n\
         ClusterName=Second\n",
        expect![[r#"
            cluster Some("second")
            line 2 node a[1-2] (2): cpus 4 mem Some(100) gres [gpu:2] features [] weight None state None attrs []
            line 3 node b1 (1): cpus 8 mem Some(200) gres [gpu:2] features [] weight None state None attrs []
            line 6 node c1 (1): cpus 3 mem Some(100) gres [gpu:v100:1] features [] weight Some(5) state None attrs []
            line 8 node d1 (1): cpus 1 mem Some(100) gres [gpu:1] features [] weight None state None attrs []
            line 10 partition p1 nodes "a[1-2],b1" default true max_time Some(Minutes(30)) state None
            line 11 partition p2 nodes "" default false max_time Some(Minutes(2)) state None
            globals DebugFlags=Gres
            includes ["/etc/slurm/cgroup-nodes.conf"]
        "#]],
    );
    // CPUs from the socket layout when CPUs is not given anywhere.
    check_conf(
        "NodeName=n1 Boards=2 SocketsPerBoard=2 CoresPerSocket=4 ThreadsPerCore=2\n\
         NodeName=n2 Sockets=2 CoresPerSocket=8\n\
         NodeName=n3\n",
        expect![[r#"
            cluster None
            line 1 node n1 (1): cpus 32 mem None gres [] features [] weight None state None attrs []
            line 2 node n2 (1): cpus 16 mem None gres [] features [] weight None state None attrs []
            line 3 node n3 (1): cpus 1 mem None gres [] features [] weight None state None attrs []
            globals 
        "#]],
    );
}

#[test]
fn slurm_conf_errors() {
    let cases = [
        "NodeName=a CPUs=x",
        "NodeName=a CPUs=99999999999",
        "NodeName=a RealMemory=-1",
        "NodeName=a[1-",
        "NodeName=a[1-3]x",
        "NodeName=",
        "NodeName=a\nNodeName=b,a",
        "NodeName=a Gres=gpu::1",
        "NodeName=DEFAULT CPUs=two\n\nNodeName=a",
        "PartitionName=p Default=maybe",
        "PartitionName=p MaxTime=soon",
        "PartitionName=p\nPartitionName=p",
        "PartitionName=\"\" Nodes=a",
        "PartitionName=p Nodes=a[2-1]",
        "CPUs",
        "Reason=\"open",
        "=x",
        "NodeName=a Weight+=1",
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|c| {
            let result = parse_slurm_conf(c).map(|_| "ok".to_string());
            format!("{c:?} => {}", result.unwrap_or_else(|e| message(&e)))
        })
        .collect();
    expect![[r#"
        "NodeName=a CPUs=x" => slurm.conf line 1: CPUs="x": expected a whole number in range
        "NodeName=a CPUs=99999999999" => slurm.conf line 1: CPUs="99999999999": expected a whole number in range
        "NodeName=a RealMemory=-1" => slurm.conf line 1: RealMemory="-1": expected a whole number in range
        "NodeName=a[1-" => slurm.conf line 1: NodeName: hostlist "a[1-": unbalanced brackets
        "NodeName=a[1-3]x" => slurm.conf line 1: NodeName: hostlist "a[1-3]x": a bracket group must end the name
        "NodeName=" => slurm.conf line 1: NodeName is empty
        "NodeName=a\nNodeName=b,a" => slurm.conf line 2: node a is already defined on line 1
        "NodeName=a Gres=gpu::1" => slurm.conf line 1: Gres item "gpu::1": expected name[:type][:no_consume][:count]
        "NodeName=DEFAULT CPUs=two\n\nNodeName=a" => slurm.conf line 1: CPUs="two": expected a whole number in range
        "PartitionName=p Default=maybe" => slurm.conf line 1: Default="maybe": expected YES or NO
        "PartitionName=p MaxTime=soon" => slurm.conf line 1: MaxTime="soon": expected minutes, [D-]HH:MM:SS or INFINITE
        "PartitionName=p\nPartitionName=p" => slurm.conf line 2: partition "p" is already defined on line 1
        "PartitionName=\"\" Nodes=a" => slurm.conf line 1: PartitionName is empty
        "PartitionName=p Nodes=a[2-1]" => slurm.conf line 1: Nodes: hostlist "a[2-1]": range "2-1" is reversed
        "CPUs" => slurm.conf line 1: CPUs: expected '=' and a value
        "Reason=\"open" => slurm.conf line 1: Reason: unterminated quote
        "=x" => slurm.conf line 1: expected Key=Value at "=x"
        "NodeName=a Weight+=1" => slurm.conf line 1: Weight+=: operators are for scontrol, not config files
    "#]]
    .assert_eq(&(out.join("\n") + "\n"));
}

// ---------------------------------------------------------------------------------------------
// topology.conf and gres.conf

#[test]
fn topology_tree() {
    // One level: leaf switches only.
    check_topology(
        "SwitchName=s0 Nodes=tux[0-3]\nSwitchName=s1 Nodes=tux[4-7]\n",
        expect![[r#"
            line 1 switch s0: nodes "tux[0-3]" switches "" link_speed None
            line 2 switch s1: nodes "tux[4-7]" switches "" link_speed None
        "#]],
    );
    // Two levels.
    check_topology(
        "SwitchName=s0 Nodes=tux[0-3] LinkSpeed=100\n\
         switchname=s1 nodes=tux[4-7]\n\
         SwitchName=s2 Switches=s[0-1]\n",
        expect![[r#"
            line 1 switch s0: nodes "tux[0-3]" switches "" link_speed Some(100)
            line 2 switch s1: nodes "tux[4-7]" switches "" link_speed None
            line 3 switch s2: nodes "" switches "s[0-1]" link_speed None
        "#]],
    );
    // Three levels.
    check_topology(
        TOPOLOGY_TREE,
        expect![[r#"
            line 2 switch leaf1: nodes "hgx[001-004]" switches "" link_speed Some(400)
            line 3 switch leaf2: nodes "hgx[005-008]" switches "" link_speed Some(400)
            line 4 switch leaf3: nodes "hgx[009-012],viz01" switches "" link_speed Some(400)
            line 5 switch leaf4: nodes "cpu[01-04]" switches "" link_speed Some(100)
            line 6 switch spine1: nodes "" switches "leaf[1-2]" link_speed None
            line 7 switch spine2: nodes "" switches "leaf[3-4]" link_speed None
            line 8 switch core: nodes "" switches "spine[1-2]" link_speed None
        "#]],
    );
}

#[test]
fn topology_block() {
    check_topology(
        TOPOLOGY_BLOCK,
        expect![[r#"
            line 2 block block1: nodes "hgx[001-004]"
            line 3 block block2: nodes "hgx[005-008]"
            line 4 block block3: nodes "hgx[009-012]"
            line 5 block block4: nodes "cpu[01-04],viz01"
            block sizes [4, 8]
        "#]],
    );
    check_topology(
        "BlockSizes=18 BlockName=b1 Nodes=n[1-18]\n",
        expect![[r#"
            line 1 block b1: nodes "n[1-18]"
            block sizes [18]
        "#]],
    );
}

#[test]
fn topology_errors() {
    let cases = [
        "",
        "  # nothing\n",
        "SwitchName=s0 Nodes=a Switches=s1\nSwitchName=s1",
        "SwitchName=s0 Nodes=a\nSwitchName=s0 Nodes=b",
        "SwitchName=s0 Nodes=a\nSwitchName=s1 Nodes=a",
        "SwitchName=s0 Switches=s9",
        "SwitchName=s0 Switches=s0",
        "SwitchName=a Nodes=n1\nSwitchName=s1 Switches=a\nSwitchName=s2 Switches=a",
        "SwitchName=s1 Switches=s2\nSwitchName=s2 Switches=s1",
        "SwitchName=s0 Nodes=a LinkSpeed=fast",
        "SwitchName=s0 Nodes=a Color=red",
        "SwitchName=",
        "BlockName=b1",
        "BlockName=b1 Nodes=a Switches=x",
        "BlockName=b1 Nodes=a\nSwitchName=s0 Nodes=b",
        "SwitchName=s0 Nodes=b\nBlockName=b1 Nodes=a",
        "BlockName=b1 Nodes=a\nBlockName=b1 Nodes=b",
        "BlockName=b1 Nodes=a\nBlockName=b2 Nodes=a",
        "BlockSizes=4,12\nBlockName=b1 Nodes=a",
        "BlockSizes=4\nSwitchName=s0 Nodes=a",
        "RingName=r1 Nodes=a[1-4]",
        "Nodes=a",
        "include other.conf\nSwitchName=s0 Nodes=a",
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|c| {
            let result = parse_topology_conf(c).map(|_| "ok".to_string());
            format!("{c:?} => {}", result.unwrap_or_else(|e| message(&e)))
        })
        .collect();
    expect![[r#"
        "" => topology.conf: no SwitchName or BlockName lines
        "  # nothing\n" => topology.conf: no SwitchName or BlockName lines
        "SwitchName=s0 Nodes=a Switches=s1\nSwitchName=s1" => topology.conf line 1: switch s0 has both Nodes and Switches
        "SwitchName=s0 Nodes=a\nSwitchName=s0 Nodes=b" => topology.conf line 2: switch s0 is already defined on line 1
        "SwitchName=s0 Nodes=a\nSwitchName=s1 Nodes=a" => topology.conf line 2: node a is in switch s0 and switch s1; sovra needs one
        "SwitchName=s0 Switches=s9" => topology.conf line 1: switch s0: unknown child switch s9
        "SwitchName=s0 Switches=s0" => topology.conf line 1: switch s0 lists itself as a child
        "SwitchName=a Nodes=n1\nSwitchName=s1 Switches=a\nSwitchName=s2 Switches=a" => topology.conf line 3: switch a is a child of both s1 and s2; sovra needs a tree
        "SwitchName=s1 Switches=s2\nSwitchName=s2 Switches=s1" => topology.conf line 1: switch s1 is its own ancestor
        "SwitchName=s0 Nodes=a LinkSpeed=fast" => topology.conf line 1: LinkSpeed="fast": expected a whole number in range
        "SwitchName=s0 Nodes=a Color=red" => topology.conf line 1: unknown key Color on a SwitchName line
        "SwitchName=" => topology.conf line 1: SwitchName is empty
        "BlockName=b1" => topology.conf line 1: block b1 has no Nodes
        "BlockName=b1 Nodes=a Switches=x" => topology.conf line 1: unknown key Switches on a BlockName line
        "BlockName=b1 Nodes=a\nSwitchName=s0 Nodes=b" => topology.conf line 2: SwitchName lines cannot be mixed with BlockName lines
        "SwitchName=s0 Nodes=b\nBlockName=b1 Nodes=a" => topology.conf line 2: BlockName lines cannot be mixed with SwitchName lines
        "BlockName=b1 Nodes=a\nBlockName=b1 Nodes=b" => topology.conf line 2: block b1 is already defined on line 1
        "BlockName=b1 Nodes=a\nBlockName=b2 Nodes=a" => topology.conf line 2: node a is in block b1 and block b2; sovra needs one
        "BlockSizes=4,12\nBlockName=b1 Nodes=a" => topology.conf line 1: BlockSizes: 12 is not a power-of-two multiple of the base size 4
        "BlockSizes=4\nSwitchName=s0 Nodes=a" => topology.conf line 1: BlockSizes needs BlockName lines, not SwitchName lines
        "RingName=r1 Nodes=a[1-4]" => topology.conf line 1: ring topologies (RingName) are not supported
        "Nodes=a" => topology.conf line 1: unknown key Nodes
        "include other.conf\nSwitchName=s0 Nodes=a" => topology.conf: include "other.conf" is not supported in topology.conf
    "#]]
    .assert_eq(&(out.join("\n") + "\n"));
}

#[test]
fn gres_conf() {
    let conf = parse_gres_conf(GRES_CONF).unwrap();
    let mut out = String::new();
    for e in &conf.entries {
        let nodes = e.nodes.as_ref().map(|n| compress(n));
        writeln!(
            out,
            "line {} nodes {nodes:?} {} type {:?} count {} files {:?}",
            e.line,
            e.name,
            e.type_name,
            e.count,
            compress(&e.files)
        )
        .unwrap();
    }
    writeln!(out, "autodetect {:?}", conf.autodetect).unwrap();
    expect![[r#"
        line 3 nodes Some("hgx[001-008]") gpu type Some("a100") count 8 files "/dev/nvidia[0-7]"
        line 4 nodes Some("hgx[009-012]") gpu type Some("h100") count 4 files "/dev/nvidia[0-3]"
        line 5 nodes Some("hgx[009-012]") gpu type Some("h100") count 4 files "/dev/nvidia[4-7]"
        line 6 nodes Some("viz01") gpu type Some("l40s") count 2 files "/dev/nvidia[0-1]"
        autodetect [(None, "off")]
    "#]]
    .assert_eq(&out);

    let cases = [
        "Name=gpu Count=2",
        "Name=gpu",
        "Name=mps Count=4K",
        "Name=gpu Typ=a100",
        "NodeName=a Type=a100",
        "Name=gpu Count=lots",
        "Name=gpu File=/dev/nvidia[1-0]",
        "Name=\"\" File=/dev/nvidia0",
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|c| {
            let result = parse_gres_conf(c).map(|g| format!("count {}", g.entries[0].count));
            format!("{c:?} => {}", result.unwrap_or_else(|e| message(&e)))
        })
        .collect();
    expect![[r#"
        "Name=gpu Count=2" => count 2
        "Name=gpu" => count 1
        "Name=mps Count=4K" => count 4096
        "Name=gpu Typ=a100" => gres.conf line 1: unknown key Typ
        "NodeName=a Type=a100" => gres.conf line 1: expected Name= (or AutoDetect=)
        "Name=gpu Count=lots" => gres.conf line 1: Count="lots": expected a count like 8 or 4G
        "Name=gpu File=/dev/nvidia[1-0]" => gres.conf line 1: File: hostlist "/dev/nvidia[1-0]": range "1-0" is reversed
        "Name=\"\" File=/dev/nvidia0" => gres.conf line 1: Name is empty
    "#]]
    .assert_eq(&(out.join("\n") + "\n"));
}

// ---------------------------------------------------------------------------------------------
// Import, end to end.

#[test]
fn import_tree() {
    check_import(
        SLURM_CONF,
        Some(TOPOLOGY_TREE),
        Some(GRES_CONF),
        &au(),
        expect![[r#"
            models: a100 (0 MiB, nvlink 0, mig 0), h100 (0 MiB, nvlink 0, mig 0), l40s (0 MiB, nvlink 0, mig 0)
            site harbour AU "ap-southeast-2": 17 nodes, 98 gpus, 17 nvlink domains
              spine spine1
                leaf leaf1: hgx[001-004] (4 nodes, 32 gpus, 4 nvlink domains)
                leaf leaf2: hgx[005-008] (4 nodes, 32 gpus, 4 nvlink domains)
              spine spine2
                leaf leaf3: hgx[009-012],viz01 (5 nodes, 34 gpus, 5 nvlink domains)
                leaf leaf4: cpu[01-04] (4 nodes, 0 gpus, 4 nvlink domains)
            node hgx001: 128 cpus, 1031000 MiB, 8 gpus a100, 0 nics
            node hgx009: 128 cpus, 1031000 MiB, 8 gpus h100, 0 nics
            node viz01: 32 cpus, 257000 MiB, 2 gpus l40s, 0 nics
            node cpu01: 64 cpus, 515000 MiB, 0 gpus -, 0 nics
        "#]],
    );
    // Without gres.conf the untyped GPUs are of model "gpu"; a site name overrides ClusterName.
    let opts = ImportOptions {
        site: Some("syd1".to_string()),
        ..au()
    };
    check_import(
        SLURM_CONF,
        Some(TOPOLOGY_TREE),
        None,
        &opts,
        expect![[r#"
            models: a100 (0 MiB, nvlink 0, mig 0), gpu (0 MiB, nvlink 0, mig 0), l40s (0 MiB, nvlink 0, mig 0)
            site syd1 AU "ap-southeast-2": 17 nodes, 98 gpus, 17 nvlink domains
              spine spine1
                leaf leaf1: hgx[001-004] (4 nodes, 32 gpus, 4 nvlink domains)
                leaf leaf2: hgx[005-008] (4 nodes, 32 gpus, 4 nvlink domains)
              spine spine2
                leaf leaf3: hgx[009-012],viz01 (5 nodes, 34 gpus, 5 nvlink domains)
                leaf leaf4: cpu[01-04] (4 nodes, 0 gpus, 4 nvlink domains)
            node hgx001: 128 cpus, 1031000 MiB, 8 gpus a100, 0 nics
            node hgx009: 128 cpus, 1031000 MiB, 8 gpus gpu, 0 nics
            node viz01: 32 cpus, 257000 MiB, 2 gpus l40s, 0 nics
            node cpu01: 64 cpus, 515000 MiB, 0 gpus -, 0 nics
        "#]],
    );
}

#[test]
fn import_small_trees() {
    let conf = "ClusterName=tux\nNodeName=tux[0-7] CPUs=8 RealMemory=64000 Gres=gpu:A100:4\n";
    const LEAVES: &str = "SwitchName=s0 Nodes=tux[0-3]\nSwitchName=s1 Nodes=tux[4-7]\n";
    // Two levels: s2 is the spine.
    check_import(
        conf,
        Some(&format!("{LEAVES}SwitchName=s2 Switches=s[0-1]\n")),
        None,
        &au(),
        expect![[r#"
            models: A100 (0 MiB, nvlink 0, mig 0)
            site tux AU "ap-southeast-2": 8 nodes, 32 gpus, 8 nvlink domains
              spine s2
                leaf s0: tux[0-3] (4 nodes, 16 gpus, 4 nvlink domains)
                leaf s1: tux[4-7] (4 nodes, 16 gpus, 4 nvlink domains)
            node tux0: 8 cpus, 64000 MiB, 4 gpus A100, 0 nics
        "#]],
    );
    // One level: a synthetic spine, named past the switch that already has its name; a
    // switch that names a node slurm.conf lacks is fine, as in Slurm.
    check_import(
        conf,
        Some("SwitchName=spine0 Nodes=tux[0-3]\nSwitchName=s1 Nodes=tux[4-7],tux99\n"),
        None,
        &au(),
        expect![[r#"
            models: A100 (0 MiB, nvlink 0, mig 0)
            site tux AU "ap-southeast-2": 8 nodes, 32 gpus, 8 nvlink domains
              spine spine1
                leaf spine0: tux[0-3] (4 nodes, 16 gpus, 4 nvlink domains)
                leaf s1: tux[4-7] (4 nodes, 16 gpus, 4 nvlink domains)
            node tux0: 8 cpus, 64000 MiB, 4 gpus A100, 0 nics
        "#]],
    );
    // Leaf switches with and without a parent.
    check_import(
        conf,
        Some(&format!("{LEAVES}SwitchName=top Switches=s0\n")),
        None,
        &au(),
        expect![[r#"
            models: A100 (0 MiB, nvlink 0, mig 0)
            site tux AU "ap-southeast-2": 8 nodes, 32 gpus, 8 nvlink domains
              spine top
                leaf s0: tux[0-3] (4 nodes, 16 gpus, 4 nvlink domains)
              spine spine0
                leaf s1: tux[4-7] (4 nodes, 16 gpus, 4 nvlink domains)
            node tux0: 8 cpus, 64000 MiB, 4 gpus A100, 0 nics
        "#]],
    );
}

#[test]
fn import_block_and_none() {
    let opts = ImportOptions {
        blocks_are_nvlink_domains: true,
        ..au()
    };
    check_import(
        SLURM_CONF,
        Some(TOPOLOGY_BLOCK),
        Some(GRES_CONF),
        &opts,
        expect![[r#"
            models: a100 (0 MiB, nvlink 0, mig 0), h100 (0 MiB, nvlink 0, mig 0), l40s (0 MiB, nvlink 0, mig 0)
            site harbour AU "ap-southeast-2": 17 nodes, 98 gpus, 4 nvlink domains
              spine spine0
                leaf block1: hgx[001-004] (4 nodes, 32 gpus, 1 nvlink domains)
                leaf block2: hgx[005-008] (4 nodes, 32 gpus, 1 nvlink domains)
                leaf block3: hgx[009-012] (4 nodes, 32 gpus, 1 nvlink domains)
                leaf block4: cpu[01-04],viz01 (5 nodes, 2 gpus, 1 nvlink domains)
            node hgx001: 128 cpus, 1031000 MiB, 8 gpus a100, 0 nics
            node hgx009: 128 cpus, 1031000 MiB, 8 gpus h100, 0 nics
            node cpu01: 64 cpus, 515000 MiB, 0 gpus -, 0 nics
            node viz01: 32 cpus, 257000 MiB, 2 gpus l40s, 0 nics
        "#]],
    );
    check_import(
        SLURM_CONF,
        None,
        Some(GRES_CONF),
        &au(),
        expect![[r#"
            models: a100 (0 MiB, nvlink 0, mig 0), h100 (0 MiB, nvlink 0, mig 0), l40s (0 MiB, nvlink 0, mig 0)
            site harbour AU "ap-southeast-2": 17 nodes, 98 gpus, 17 nvlink domains
              spine default
                leaf default: hgx[001-012],cpu[01-04],viz01 (17 nodes, 98 gpus, 17 nvlink domains)
            node hgx001: 128 cpus, 1031000 MiB, 8 gpus a100, 0 nics
            node hgx009: 128 cpus, 1031000 MiB, 8 gpus h100, 0 nics
            node cpu01: 64 cpus, 515000 MiB, 0 gpus -, 0 nics
            node viz01: 32 cpus, 257000 MiB, 2 gpus l40s, 0 nics
        "#]],
    );
}

#[test]
fn import_errors() {
    let check = |conf: &str, topology: Option<&str>, gres: Option<&str>, opts: &ImportOptions| {
        match import_texts(conf, topology, gres, opts) {
            Ok(_) => "ok".to_string(),
            Err(e) => message(&e),
        }
    };
    let conf = "ClusterName=c\nNodeName=n[1-4] Gres=gpu:2\n";
    let out = [
        check(conf, None, None, &ImportOptions::default()),
        check(
            conf,
            None,
            None,
            &ImportOptions {
                jurisdiction: Some("Australia".to_string()),
                ..au()
            },
        ),
        check("NodeName=n1\n", None, None, &au()),
        check("ClusterName=c\n", None, None, &au()),
        check("ClusterName=c\ninclude nodes.conf\n", None, None, &au()),
        check(conf, Some("SwitchName=s0 Nodes=n[1-2]\n"), None, &au()),
        check(conf, Some("BlockName=b0 Nodes=n1\n"), None, &au()),
        check(
            conf,
            None,
            Some("NodeName=n3 Name=gpu Type=a100 Count=1\n"),
            &au(),
        ),
        check(
            "ClusterName=c\nNodeName=n1 Gres=gpu:a100:2,gpu:1\n",
            None,
            None,
            &au(),
        ),
        check(
            "ClusterName=c\nNodeName=n1 Gres=gpu:a100:16,gpu:h100:17\n",
            None,
            None,
            &au(),
        ),
    ];
    expect![[r#"
        import options: a jurisdiction is required: slurm has no notion of one
        import options: invalid jurisdiction "Australia": expected 2 to 8 characters
        import options: no site name: give one or set ClusterName in slurm.conf
        slurm.conf: no nodes defined (NodeName lines)
        slurm.conf: no nodes defined (NodeName lines); include lines such as "nodes.conf" are not followed
        topology.conf: 2 slurm.conf node(s) under no leaf switch: n[3-4] (slurm would treat them as unreachable)
        topology.conf: 3 slurm.conf node(s) in no block: n[2-4] (slurm would treat them as unreachable)
        gres.conf line 1: node n3 has 1 gpu(s) here but 2 in slurm.conf line 2
        slurm.conf line 2: Gres mixes typed (gpu:TYPE:N) and untyped (gpu:N) gpus
        slurm.conf line 2: nodes "n1" have 33 gpus each, sovra supports at most 32
    "#]]
    .assert_eq(&(out.join("\n") + "\n"));
}

/// Every truncation of each fixture, and every one-character deletion or substitution with a
/// character that matters to the syntax, parses and imports without panicking.
#[test]
fn mangled_fixtures_never_panic() {
    const SUBSTITUTES: [char; 10] = ['[', ']', '=', '\\', '#', ',', '"', '-', '\n', '0'];
    fn variants(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &i in &boundaries {
            out.push(text[..i].to_string());
            let next = text[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            out.push(format!("{}{}", &text[..i], &text[next..]));
            for c in SUBSTITUTES {
                out.push(format!("{}{c}{}", &text[..i], &text[next..]));
            }
        }
        out
    }
    let conf = parse_slurm_conf(SLURM_CONF).unwrap();
    let tree = parse_topology_conf(TOPOLOGY_TREE).unwrap();
    let block = parse_topology_conf(TOPOLOGY_BLOCK).unwrap();
    let gres = parse_gres_conf(GRES_CONF).unwrap();
    let opts = au();
    let mut outcomes = [0usize; 2];
    let mut record = |result: Result<TopologyDesc, SlurmImportError>| {
        let ok = match result {
            Ok(desc) => Topology::build(desc).is_ok(),
            Err(e) => {
                message(&e);
                false
            }
        };
        outcomes[ok as usize] += 1;
    };
    for text in variants(SLURM_CONF) {
        record(parse_slurm_conf(&text).and_then(|c| import(&c, Some(&tree), Some(&gres), &opts)));
    }
    for (fixture, original) in [(TOPOLOGY_TREE, &tree), (TOPOLOGY_BLOCK, &block)] {
        assert!(matches!(parse_topology_conf(fixture), Ok(ref t) if t == original));
        for text in variants(fixture) {
            record(parse_topology_conf(&text).and_then(|t| import(&conf, Some(&t), None, &opts)));
        }
    }
    for text in variants(GRES_CONF) {
        record(parse_gres_conf(&text).and_then(|g| import(&conf, None, Some(&g), &opts)));
    }
    // Both outcomes happen: the mangling reaches past the parsers.
    assert!(outcomes[0] > 1000, "{outcomes:?}");
    assert!(outcomes[1] > 1000, "{outcomes:?}");
}
