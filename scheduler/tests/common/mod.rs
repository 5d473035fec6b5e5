//! Shared fixtures for the scheduler's integration tests: hand-written topologies, job-spec
//! builders, ledger preparation, a state-machine driver that checks invariants after every
//! entry, and compact, stable renderings of placements and jobs for `expect!` snapshots.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::fmt::Write as _;

use sovra_fabric::topology::{
    standard_mig_profiles, GpuDesc, GpuModelDesc, NicDesc, NodeDesc, SiteDesc, SiteFabric,
    SiteLinkDesc,
};
use sovra_fabric::{GpuTake, Jurisdiction, Ledger, Level, NodeId, Take, Topology, TopologyDesc};
use sovra_scheduler::core::job::{
    Affinity, GangSpec, GpuRequest, InferenceSpec, JobId, JobSpec, LatencySlo, TopologyRule,
    Workload,
};
use sovra_scheduler::core::placement::{Explanation, MemberSlot, Outcome, Placement, Plan};
use sovra_scheduler::core::state::{
    Applied, Command, Entry, JobRecord, StateMachine, PASS_PLANS_MAX,
};

// ---------------------------------------------------------------------------------------------
// Topology builders.

/// Node CPU in the fixtures: 128 cores.
pub const NODE_CPU_MILLI: u64 = 128_000;
/// Node memory in the fixtures: 1 TiB.
pub const NODE_MEMORY_MIB: u64 = 1024 * 1024;

/// The GPU models every fixture declares.
pub fn models() -> Vec<GpuModelDesc> {
    let model = |name: &str, memory_gb: u64, nvlink: u32, mig: bool| GpuModelDesc {
        name: name.to_string(),
        memory_mib: memory_gb * 1024,
        nvlink_gbit_per_s: nvlink,
        mig_profiles: if mig {
            standard_mig_profiles(memory_gb)
        } else {
            Vec::new()
        },
    };
    vec![
        model("H100", 80, 7_200, false),
        model("GB200", 192, 14_400, false),
        model("A100", 40, 4_800, true),
        model("L40S", 48, 0, false),
    ]
}

/// A site named `name` in jurisdiction `jurisdiction`, default intra-site fabric.
pub fn site(name: &str, jurisdiction: &str) -> SiteDesc {
    SiteDesc {
        name: name.to_string(),
        jurisdiction: jurisdiction.to_string(),
        region: format!("region-{name}"),
        fabric: SiteFabric::default(),
    }
}

/// A node with `gpus` GPUs of `model` (all in MIG mode when `mig`), placed at
/// `site/spine/leaf`, its own NVLink domain.
pub fn node(name: &str, at: (&str, &str, &str), model: &str, gpus: usize, mig: bool) -> NodeDesc {
    NodeDesc {
        name: name.to_string(),
        site: at.0.to_string(),
        spine: at.1.to_string(),
        leaf: at.2.to_string(),
        nvlink_domain: None,
        cpu_milli: NODE_CPU_MILLI,
        memory_mib: NODE_MEMORY_MIB,
        gpus: (0..gpus)
            .map(|_| GpuDesc {
                model: model.to_string(),
                mig,
            })
            .collect(),
        nics: vec![NicDesc {
            name: "mlx5_0".to_string(),
            gbit_per_s: 400,
        }],
    }
}

/// `node` in a multi-node NVLink domain.
pub fn nvl_node(name: &str, at: (&str, &str, &str), domain: &str, gpus: usize) -> NodeDesc {
    NodeDesc {
        nvlink_domain: Some(domain.to_string()),
        ..node(name, at, "GB200", gpus, false)
    }
}

/// An inter-site link of `rtt_ms` milliseconds.
pub fn link(a: &str, b: &str, rtt_ms: u64) -> SiteLinkDesc {
    SiteLinkDesc {
        a: a.to_string(),
        b: b.to_string(),
        rtt_ns: rtt_ms * 1_000_000,
        gbit_per_s: 100,
    }
}

/// Builds a description, panicking on a fixture mistake.
pub fn build(desc: TopologyDesc) -> Topology {
    Topology::build(desc).expect("fixture topology is valid")
}

/// The main fixture: four sites in four jurisdictions.
///
/// ```text
/// syd1 (AU)
///   sp1/lf1  syd-a1..a4   8 x H100
///   sp1/lf2  syd-b1..b2   8 x H100
///   sp2/lf3  nvl1 = syd-n1..n4, nvl2 = syd-n5..n8   4 x GB200 each (16-GPU NVLink domains)
///   sp2/lf4  syd-m1  4 x A100 MIG,  syd-p1  4 x A100 (not MIG),  syd-c1  CPU only
/// tyo1 (JP)  sp1/lf1  tyo-h1, tyo-h2  8 x H100,  tyo-l1  4 x L40S
/// sin1 (SG)  sp1/lf1  sin-h1  8 x H100,  sin-l1  4 x L40S
/// kul1 (MY)  sp1/lf1  kul-h1  8 x H100
/// rtt (ms): syd-tyo 110, syd-sin 92, syd-kul 95, tyo-sin 70, tyo-kul 75, sin-kul 8
/// ```
pub fn four_sites_desc() -> TopologyDesc {
    let mut nodes = Vec::new();
    for i in 1..=4 {
        nodes.push(node(
            &format!("syd-a{i}"),
            ("syd1", "sp1", "lf1"),
            "H100",
            8,
            false,
        ));
    }
    for i in 1..=2 {
        nodes.push(node(
            &format!("syd-b{i}"),
            ("syd1", "sp1", "lf2"),
            "H100",
            8,
            false,
        ));
    }
    for i in 1..=8 {
        let domain = if i <= 4 { "nvl1" } else { "nvl2" };
        nodes.push(nvl_node(
            &format!("syd-n{i}"),
            ("syd1", "sp2", "lf3"),
            domain,
            4,
        ));
    }
    nodes.push(node("syd-m1", ("syd1", "sp2", "lf4"), "A100", 4, true));
    nodes.push(node("syd-p1", ("syd1", "sp2", "lf4"), "A100", 4, false));
    nodes.push(node("syd-c1", ("syd1", "sp2", "lf4"), "H100", 0, false));
    nodes.push(node("tyo-h1", ("tyo1", "sp1", "lf1"), "H100", 8, false));
    nodes.push(node("tyo-h2", ("tyo1", "sp1", "lf1"), "H100", 8, false));
    nodes.push(node("tyo-l1", ("tyo1", "sp1", "lf1"), "L40S", 4, false));
    nodes.push(node("sin-h1", ("sin1", "sp1", "lf1"), "H100", 8, false));
    nodes.push(node("sin-l1", ("sin1", "sp1", "lf1"), "L40S", 4, false));
    nodes.push(node("kul-h1", ("kul1", "sp1", "lf1"), "H100", 8, false));
    TopologyDesc {
        models: models(),
        sites: vec![
            site("syd1", "AU"),
            site("tyo1", "JP"),
            site("sin1", "SG"),
            site("kul1", "MY"),
        ],
        nodes,
        site_links: vec![
            link("syd1", "tyo1", 110),
            link("syd1", "sin1", 92),
            link("syd1", "kul1", 95),
            link("tyo1", "sin1", 70),
            link("tyo1", "kul1", 75),
            link("sin1", "kul1", 8),
        ],
    }
}

/// [`four_sites_desc`], built.
pub fn four_sites() -> Topology {
    build(four_sites_desc())
}

/// A small single-site AU cluster: `lf1` = au-1, au-2 and `lf2` = au-3, each 8 x H100.
pub fn small_au() -> Topology {
    build(TopologyDesc {
        models: models(),
        sites: vec![site("syd1", "AU")],
        nodes: vec![
            node("au-1", ("syd1", "sp1", "lf1"), "H100", 8, false),
            node("au-2", ("syd1", "sp1", "lf1"), "H100", 8, false),
            node("au-3", ("syd1", "sp1", "lf2"), "H100", 8, false),
        ],
        site_links: Vec::new(),
    })
}

/// Two sites: syd1 (AU, one 8 x H100 node `au-1`) and tyo1 (JP, `jp-1`, 8 x H100), 110 ms.
pub fn au_jp() -> Topology {
    build(TopologyDesc {
        models: models(),
        sites: vec![site("syd1", "AU"), site("tyo1", "JP")],
        nodes: vec![
            node("au-1", ("syd1", "sp1", "lf1"), "H100", 8, false),
            node("jp-1", ("tyo1", "sp1", "lf1"), "H100", 8, false),
        ],
        site_links: vec![link("syd1", "tyo1", 110)],
    })
}

// ---------------------------------------------------------------------------------------------
// Ledger preparation.

/// The id of a node by name (panics on a fixture typo).
pub fn node_id(topology: &Topology, name: &str) -> NodeId {
    topology
        .node_by_name(name)
        .unwrap_or_else(|| panic!("no node {name:?} in the fixture"))
}

/// Takes the lowest `n` whole GPUs of `name` (no CPU or memory).
pub fn use_gpus(topology: &Topology, ledger: &mut Ledger, name: &str, n: u32) {
    let id = node_id(topology, name);
    let free = ledger.node(id).whole_mask;
    let mut mask = 0u32;
    let mut rest = free;
    for _ in 0..n {
        let bit = rest & rest.wrapping_neg();
        assert!(bit != 0, "{name} has fewer than {n} free gpus");
        mask |= bit;
        rest &= !bit;
    }
    ledger.take(
        topology,
        id,
        &Take {
            cpu_milli: 0,
            memory_mib: 0,
            gpus: GpuTake::Whole { mask },
        },
    );
}

/// Takes `milli` milli-GPU of GPU `local` of `name`.
pub fn use_milli(topology: &Topology, ledger: &mut Ledger, name: &str, local: u8, milli: u16) {
    let take = Take {
        cpu_milli: 0,
        memory_mib: 0,
        gpus: GpuTake::Milli { local, milli },
    };
    ledger.take(topology, node_id(topology, name), &take);
}

/// Takes `compute`/`memory` MIG slices of GPU `local` of `name`.
pub fn use_mig(topology: &Topology, ledger: &mut Ledger, name: &str, local: u8, slices: (u8, u8)) {
    let gpus = GpuTake::Mig {
        local,
        compute: slices.0,
        memory: slices.1,
    };
    ledger.take(
        topology,
        node_id(topology, name),
        &Take {
            cpu_milli: 0,
            memory_mib: 0,
            gpus,
        },
    );
}

/// Takes CPU and memory of `name` (no GPU).
pub fn use_host(topology: &Topology, ledger: &mut Ledger, name: &str, cpu_milli: u64, mib: u64) {
    let take = Take {
        cpu_milli,
        memory_mib: mib,
        gpus: GpuTake::None,
    };
    ledger.take(topology, node_id(topology, name), &take);
}

/// Marks `name` unschedulable (down or drained).
pub fn down(topology: &Topology, ledger: &mut Ledger, name: &str) {
    ledger.set_schedulable(topology, node_id(topology, name), false);
}

/// Fills every GPU of every node of `site`.
pub fn fill_site(topology: &Topology, ledger: &mut Ledger, site: &str) {
    let site = topology.site_by_name(site).expect("fixture site");
    for i in topology.site(site).nodes.clone() {
        let id = NodeId(i);
        let mask = ledger.node(id).whole_mask;
        if mask != 0 {
            let take = Take {
                cpu_milli: 0,
                memory_mib: 0,
                gpus: GpuTake::Whole { mask },
            };
            ledger.take(topology, id, &take);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Job builders.

/// A jurisdiction code (panics on a malformed fixture code).
pub fn jur(code: &str) -> Jurisdiction {
    Jurisdiction::parse(code).expect("fixture jurisdiction")
}

/// A spec allowed in AU, 1 CPU and 4 GiB per member, priority 10, no time limit.
pub fn spec(name: &str, workload: Workload) -> JobSpec {
    JobSpec {
        run: Default::default(),
        name: name.to_string(),
        tenant: "acme".to_string(),
        priority: 10,
        jurisdictions: vec![jur("AU")],
        gpu_models: Vec::new(),
        cpu_milli: 1_000,
        memory_mib: 4_096,
        time_limit_ms: None,
        workload,
        control: Default::default(),
    }
}

/// A batch job.
pub fn batch(gpus: GpuRequest) -> JobSpec {
    spec("batch", Workload::Batch { gpus })
}

/// A batch job of `n` whole GPUs.
pub fn batch_whole(n: u32) -> JobSpec {
    batch(GpuRequest::Whole(n))
}

/// A gang of `members × gpus` with a topology rule.
pub fn gang(members: u32, gpus: u32, level: Option<Level>, affinity: Affinity) -> JobSpec {
    spec(
        "gang",
        Workload::Gang(GangSpec {
            members,
            gpus_per_member: gpus,
            topology: TopologyRule { level, affinity },
            max_rtt_ns: None,
        }),
    )
}

/// An inference service.
pub fn inference(
    replicas: u32,
    gpus: GpuRequest,
    slo: Option<(&str, u64)>,
    spread: Level,
) -> JobSpec {
    spec(
        "svc",
        Workload::Inference(InferenceSpec {
            replicas,
            gpus,
            slo: slo.map(|(site, ms)| LatencySlo {
                ingress_site: site.to_string(),
                max_rtt_ns: ms * 1_000_000,
            }),
            spread,
        }),
    )
}

/// Chainable tweaks of a [`JobSpec`].
pub trait SpecExt: Sized {
    /// Allowed jurisdictions.
    fn juris(self, codes: &[&str]) -> Self;
    /// Allowed GPU models.
    fn models(self, names: &[&str]) -> Self;
    /// CPU and memory per member.
    fn host(self, cpu_milli: u64, memory_mib: u64) -> Self;
    /// Priority.
    fn prio(self, priority: u32) -> Self;
    /// Time limit.
    fn limit_ms(self, ms: u64) -> Self;
    /// Name.
    fn named(self, name: &str) -> Self;
    /// Gang max RTT in milliseconds (panics on a non-gang).
    fn max_rtt_ms(self, ms: u64) -> Self {
        self.max_rtt_ns(ms * 1_000_000)
    }
    /// Gang max RTT in nanoseconds (panics on a non-gang).
    fn max_rtt_ns(self, ns: u64) -> Self;
}

impl SpecExt for JobSpec {
    fn juris(mut self, codes: &[&str]) -> JobSpec {
        self.jurisdictions = codes.iter().map(|c| jur(c)).collect();
        self
    }
    fn models(mut self, names: &[&str]) -> JobSpec {
        self.gpu_models = names.iter().map(|n| n.to_string()).collect();
        self
    }
    fn host(mut self, cpu_milli: u64, memory_mib: u64) -> JobSpec {
        self.cpu_milli = cpu_milli;
        self.memory_mib = memory_mib;
        self
    }
    fn prio(mut self, priority: u32) -> JobSpec {
        self.priority = priority;
        self
    }
    fn limit_ms(mut self, ms: u64) -> JobSpec {
        self.time_limit_ms = Some(ms);
        self
    }
    fn named(mut self, name: &str) -> JobSpec {
        self.name = name.to_string();
        self
    }
    fn max_rtt_ns(mut self, ns: u64) -> JobSpec {
        match &mut self.workload {
            Workload::Gang(g) => g.max_rtt_ns = Some(ns),
            other => panic!("max_rtt on a non-gang workload {other:?}"),
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Renderings.

/// A slot as `node{gpus}`: `syd-a1{0-3}`, `syd-p1{g2:250m}`, `syd-m1{g0:mig 1c/1m}`, `syd-c1{}`.
pub fn render_slot(topology: &Topology, slot: &MemberSlot) -> String {
    let name = &topology.node(slot.node).name;
    let gpus = match slot.take.gpus {
        GpuTake::None => String::new(),
        GpuTake::Whole { mask } => render_mask(mask),
        GpuTake::Milli { local, milli } => format!("g{local}:{milli}m"),
        GpuTake::Mig {
            local,
            compute,
            memory,
        } => format!("g{local}:mig {compute}c/{memory}m"),
    };
    format!("{name}{{{gpus}}}")
}

/// A GPU bitmask as runs of local indices: `0-3,6`.
pub fn render_mask(mask: u32) -> String {
    let mut out = Vec::new();
    let mut i = 0u32;
    while i < 32 {
        if mask & (1 << i) == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < 32 && mask & (1 << i) != 0 {
            i += 1;
        }
        out.push(if i - 1 == start {
            format!("{start}")
        } else {
            format!("{start}-{}", i - 1)
        });
    }
    out.join(",")
}

/// A plan's members in rank order, six slots to a line.
pub fn render_members(topology: &Topology, plan: &Plan) -> String {
    let words: Vec<String> = plan
        .members
        .iter()
        .map(|s| render_slot(topology, s))
        .collect();
    let mut out = String::new();
    for chunk in words.chunks(6) {
        writeln!(out, "  {}", chunk.join(" ")).unwrap();
    }
    out
}

/// Snapshot text width: renderings wrap longer lines (continuations indented two spaces) so
/// snapshots stay within the 100-column limit.
pub const WRAP_WIDTH: usize = 80;

/// `text` word-wrapped to [`WRAP_WIDTH`], continuation lines indented by two spaces.
pub fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > WRAP_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = "  ".to_string();
        } else if !line.is_empty() && line != "  " {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// The explanation's counts and steps.
pub fn render_explanation(e: &Explanation) -> String {
    let r = &e.removed;
    let juris: Vec<&str> = e.jurisdictions.iter().map(|j| j.as_str()).collect();
    let mut out = format!(
        "nodes={} eligible={} evaluated={} subtrees={} jurisdictions=[{}]\n\
         removed: jurisdiction={} latency={} unavailable={} model={} cpu={} memory={} gpu={}\n",
        e.nodes_total,
        e.nodes_eligible,
        e.nodes_evaluated,
        e.subtrees_evaluated,
        juris.join(","),
        r.jurisdiction,
        r.latency,
        r.unschedulable,
        r.model,
        r.cpu,
        r.memory,
        r.gpu
    );
    for step in &e.steps {
        writeln!(out, "{}", wrap(&format!("- {step}"))).unwrap();
    }
    out
}

/// A placement: outcome, then explanation.
pub fn render_placement(topology: &Topology, placement: &Placement) -> String {
    let mut out = match &placement.outcome {
        Outcome::Placed(plan) => format!("placed\n{}", render_members(topology, plan)),
        Outcome::Unschedulable(u) => {
            format!("{}\n", wrap(&format!("{}: {}", u.reason.code(), u.message)))
        }
    };
    out.push_str(&render_explanation(&placement.explanation));
    out
}

/// One job as `#id name STATE [slots | reason: message]`.
pub fn render_job(topology: &Topology, r: &JobRecord) -> String {
    let mut out = format!("#{} {} {}", r.id, r.spec.name, r.state.code());
    if let Some(plan) = &r.plan {
        let slots: Vec<String> = plan
            .members
            .iter()
            .map(|s| render_slot(topology, s))
            .collect();
        write!(out, " {}", slots.join(" ")).unwrap();
    }
    if let Some(reason) = &r.reason {
        write!(out, " {}: {}", reason.reason.code(), reason.message).unwrap();
    }
    if r.restarts > 0 {
        write!(out, " restarts={}", r.restarts).unwrap();
    }
    wrap(&out)
}

// ---------------------------------------------------------------------------------------------
// State-machine driver.

/// Drives a [`StateMachine`] with consecutive log indices and a settable clock, and runs the
/// full invariant check after every entry.
pub struct Driver {
    /// The state machine.
    pub sm: StateMachine,
    /// Index of the last entry made.
    pub index: u64,
    /// Clock stamped on the next entry.
    pub now_ms: u64,
}

impl Driver {
    /// A driver for a state machine with every node up and the default policy.
    pub fn new(topology: Topology) -> Driver {
        let sm = StateMachine::with_all_nodes_up(topology, Default::default());
        sm.check_invariants();
        Driver {
            sm,
            index: 0,
            now_ms: 1_000,
        }
    }

    /// A driver for an existing state machine.
    pub fn with(sm: StateMachine) -> Driver {
        sm.check_invariants();
        Driver {
            sm,
            index: 0,
            now_ms: 1_000,
        }
    }

    /// Applies one command as the next entry.
    pub fn apply(&mut self, command: Command) -> Applied {
        self.index += 1;
        let entry = Entry {
            index: self.index,
            time_ms: self.now_ms,
            command,
        };
        let applied = self.sm.apply(&entry);
        self.sm.check_invariants();
        applied
    }

    /// Submits a job that must be accepted.
    pub fn submit(&mut self, spec: JobSpec) -> JobId {
        match self.apply(Command::Submit {
            spec,
            request: None,
        }) {
            Applied::Submitted(id) => id,
            other => panic!("submit not accepted: {other:?}"),
        }
    }

    /// Plans a pass on the committed state (`None` when nothing needs one).
    pub fn plan(&self) -> Option<Command> {
        self.sm
            .plan_pass(PASS_PLANS_MAX)
            .map(|(command, _)| command)
    }

    /// Plans and applies a pass; `None` when nothing needed one.
    pub fn pass(&mut self) -> Option<Applied> {
        let command = self.plan()?;
        Some(self.apply(command))
    }

    /// The record of a job.
    pub fn job(&self, id: JobId) -> &JobRecord {
        self.sm.job(id).expect("job exists")
    }

    /// Every job, one line each.
    pub fn render_jobs(&self) -> String {
        let mut out = String::new();
        for r in self.sm.jobs() {
            writeln!(out, "{}", render_job(self.sm.topology(), r)).unwrap();
        }
        out
    }

    /// Free whole GPUs over the cluster (schedulable or not).
    pub fn free_gpus(&self) -> u32 {
        let topology = self.sm.topology();
        (0..topology.nodes().len())
            .map(|i| self.sm.ledger().node(NodeId::from_idx(i)).whole_free())
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Plan checks shared by the example tests and the property tests.

/// Everything wrong with `plan` for `spec` against `ledger` (empty when the plan is sound):
/// fit (no GPU, milli-GPU, MIG slice, CPU or memory oversubscribed, no unschedulable node,
/// members checked one after another) and every [`constraint_violations`].
pub fn plan_violations(
    topology: &Topology,
    ledger: &Ledger,
    spec: &JobSpec,
    plan: &Plan,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut scratch = ledger.clone();
    for (rank, slot) in plan.members.iter().enumerate() {
        match scratch.check(topology, slot.node, &slot.take) {
            Ok(()) => scratch.take(topology, slot.node, &slot.take),
            Err(short) => out.push(format!(
                "member {rank} on {}: short of {}",
                topology.node(slot.node).name,
                short.name()
            )),
        }
    }
    out.extend(constraint_violations(topology, spec, plan, true));
    out
}

/// Everything wrong with `plan` for `spec` apart from fit: member count, take shape, GPU
/// model, jurisdiction (fail-closed), required topology level, site crossing, and, when
/// `latency` (the RTTs are those the plan was made with), gang max RTT between every member
/// pair and the inference latency SLO of every replica.
pub fn constraint_violations(
    topology: &Topology,
    spec: &JobSpec,
    plan: &Plan,
    latency: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if plan.members.len() != spec.member_count() as usize {
        out.push(format!(
            "{} slots for {} members",
            plan.members.len(),
            spec.member_count()
        ));
    }
    let mask = topology.jurisdiction_mask(&spec.jurisdictions);
    for (rank, slot) in plan.members.iter().enumerate() {
        let name = &topology.node(slot.node).name;
        let site = topology.node(slot.node).site;
        if !mask.contains(topology.site(site).jurisdiction) {
            out.push(format!(
                "member {rank} on {name} in {}, outside {:?}",
                topology.site_jurisdiction(site),
                spec.jurisdictions
            ));
        }
        if let Some(why) = slot_mismatch(topology, spec, slot) {
            out.push(format!("member {rank} on {name}: {why}"));
        }
    }
    let nodes: Vec<NodeId> = plan.members.iter().map(|s| s.node).collect();
    if nodes.is_empty() {
        return out;
    }
    let max_pair_rtt_ns = nodes
        .iter()
        .flat_map(|&a| nodes.iter().map(move |&b| (a, b)))
        .map(|(a, b)| topology.node_rtt_ns(a, b))
        .max()
        .unwrap_or(0);
    let site_count = {
        let mut sites: Vec<_> = nodes.iter().map(|&n| topology.node(n).site).collect();
        sites.sort_unstable();
        sites.dedup();
        sites.len()
    };
    match &spec.workload {
        Workload::Batch { .. } => {}
        Workload::Gang(g) => {
            if let (Some(level), Affinity::Required) = (g.topology.level, g.topology.affinity) {
                let first = topology.subtree_of(level, nodes[0]);
                if nodes
                    .iter()
                    .any(|&n| topology.subtree_of(level, n) != first)
                {
                    out.push(format!("required {} violated", level.name()));
                }
            }
            let may_cross = g.topology.level.is_none()
                || (g.topology.affinity == Affinity::Preferred && g.max_rtt_ns.is_some());
            if site_count > 1 && !may_cross {
                out.push(format!("gang spans {site_count} sites without leave to"));
            }
            if let (Some(max), true) = (g.max_rtt_ns, latency) {
                if max_pair_rtt_ns > max {
                    out.push(format!("member rtt {max_pair_rtt_ns} ns over max {max} ns"));
                }
            }
        }
        Workload::Inference(InferenceSpec { slo: Some(slo), .. }) if latency => {
            match topology.site_by_name(&slo.ingress_site) {
                None => out.push(format!("placed with unknown ingress {}", slo.ingress_site)),
                Some(ingress) => {
                    for &n in &nodes {
                        let rtt = topology.site_rtt_ns(ingress, topology.node(n).site);
                        if rtt > slo.max_rtt_ns {
                            out.push(format!(
                                "replica on {} is {rtt} ns from ingress, slo {} ns",
                                topology.node(n).name,
                                slo.max_rtt_ns
                            ));
                        }
                    }
                }
            }
        }
        Workload::Inference(_) => {}
    }
    out
}

/// Why one slot does not match the member request (shape or model), if it does not.
fn slot_mismatch(topology: &Topology, spec: &JobSpec, slot: &MemberSlot) -> Option<String> {
    if slot.take.cpu_milli != spec.cpu_milli || slot.take.memory_mib != spec.memory_mib {
        return Some(format!("host take {:?} differs from the spec", slot.take));
    }
    let node = topology.node(slot.node);
    let model_ok = |local: u8| {
        let gpu = topology.gpu(topology.node_gpu(slot.node, local));
        spec.gpu_models.is_empty()
            || spec
                .gpu_models
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&topology.model(gpu.model).name))
    };
    let locals = |mask: u32| (0..node.gpu_count() as u8).filter(move |l| mask & (1 << l) != 0);
    match (spec.member_gpus(), slot.take.gpus) {
        (GpuRequest::None, GpuTake::None) => None,
        (GpuRequest::Whole(n), GpuTake::Whole { mask }) => {
            if mask.count_ones() != n {
                Some(format!("{} gpus for {n}", mask.count_ones()))
            } else if !locals(mask).all(model_ok) {
                Some("gpu of a disallowed model".into())
            } else {
                None
            }
        }
        (GpuRequest::Milli(m), GpuTake::Milli { local, milli }) => {
            if milli as u32 != m {
                Some(format!("{milli} milli for {m}"))
            } else if !model_ok(local) {
                Some("gpu of a disallowed model".into())
            } else {
                None
            }
        }
        (
            GpuRequest::Mig(profile),
            GpuTake::Mig {
                local,
                compute,
                memory,
            },
        ) => {
            let gpu = topology.gpu(topology.node_gpu(slot.node, local));
            let matches = topology.model(gpu.model).mig_profiles.iter().any(|p| {
                p.name == profile && p.compute_slices == compute && p.memory_slices == memory
            });
            if !gpu.mig || !matches {
                Some(format!(
                    "mig take {compute}c/{memory}m is not profile {profile}"
                ))
            } else if !model_ok(local) {
                Some("gpu of a disallowed model".into())
            } else {
                None
            }
        }
        (want, got) => Some(format!("take {got:?} for request {want:?}")),
    }
}
