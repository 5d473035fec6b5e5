//! Gang placement: `members × gpus_per_member` whole GPUs, all or nothing, by topology.
//!
//! For each level of the rule's ladder (just the required level, or the preferred level and
//! every wider one), candidate subtrees are ranked by the ledger's histogram bound on how many
//! members they can hold; the tightest subtree that holds the whole gang is tried first
//! (packing big gangs into small holes keeps big holes for big gangs). Inside a subtree,
//! members fill the largest children first (fewest leaves touched) and, within a leaf, the
//! best-fitting nodes first. Crossing sites is allowed only for `any` gangs, or preferred
//! gangs with a max RTT, and every member pair must then be within that RTT.

use sovra_fabric::topology::Level;
use sovra_fabric::{GpuTake, NodeId, Take};

use super::member::{allowed_gpus, rotate};
use super::{Ctx, MemberSlot, Unschedulable};
use crate::core::job::{Affinity, GangSpec};
use crate::core::rng::tie;

/// Places a gang.
pub(crate) fn place_gang(
    ctx: &mut Ctx<'_>,
    spec: &GangSpec,
) -> Result<Vec<MemberSlot>, Unschedulable> {
    let ladder: Vec<Level> = match (spec.topology.level, spec.topology.affinity) {
        (Some(level), Affinity::Required) => vec![level],
        (Some(level), Affinity::Preferred) => {
            Level::ALL.iter().copied().filter(|&l| l >= level).collect()
        }
        (None, _) => Level::ALL.to_vec(),
    };
    for (i, &level) in ladder.iter().enumerate() {
        if let Some(slots) = gang_at_level(ctx, spec, level) {
            if i > 0 {
                ctx.explanation.steps.push(format!(
                    "preferred {} not available, widened to {}",
                    ladder[0].name(),
                    level.name()
                ));
            }
            return Ok(slots);
        }
    }
    let may_cross = spec.topology.level.is_none()
        || (spec.topology.affinity == Affinity::Preferred && spec.max_rtt_ns.is_some());
    if may_cross && ctx.sites.len() > 1 {
        if let Some(slots) = gang_across_sites(ctx, spec) {
            return Ok(slots);
        }
    }
    let message = match (spec.topology.level, spec.topology.affinity) {
        (Some(level), Affinity::Required) => format!(
            "no {} can hold {} members of {} gpus",
            level.name(),
            spec.members,
            spec.gpus_per_member
        ),
        _ => format!(
            "no eligible capacity holds {} members of {} gpus{}",
            spec.members,
            spec.gpus_per_member,
            match spec.max_rtt_ns {
                Some(rtt) => format!(" within {} of each other", super::fmt_rtt(rtt)),
                None => String::new(),
            }
        ),
    };
    Err(ctx.unschedulable(Some(message)))
}

/// Upper bound on members the subtree holds (histogram; CPU/memory/model not considered).
fn fit(ctx: &Ctx<'_>, level: Level, idx: usize, g: u32) -> u64 {
    if level == Level::Node {
        let free = ctx.view.ledger.node(NodeId::from_idx(idx));
        if !free.schedulable {
            return 0;
        }
        return (free.whole_free() / g) as u64;
    }
    ctx.view.ledger.members_fit(level, idx, g)
}

/// Subtree indices at `level` inside a site.
fn site_subtrees(
    ctx: &Ctx<'_>,
    site: sovra_fabric::SiteId,
    level: Level,
) -> std::ops::Range<usize> {
    let s = ctx.view.topology.site(site);
    let r = match level {
        Level::Node => s.nodes.clone(),
        Level::NvlDomain => s.domains.clone(),
        Level::Leaf => s.leaves.clone(),
        Level::Spine => s.spines.clone(),
        Level::Site => site.0..site.0 + 1,
    };
    r.start as usize..r.end as usize
}

fn gang_at_level(ctx: &mut Ctx<'_>, spec: &GangSpec, level: Level) -> Option<Vec<MemberSlot>> {
    let need = spec.members as u64;
    let g = spec.gpus_per_member;
    let mut candidates: Vec<(u64, u64, usize)> = Vec::new();
    for si in 0..ctx.sites.len() {
        let site = ctx.sites[si];
        for idx in site_subtrees(ctx, site, level) {
            let ub = fit(ctx, level, idx, g);
            if ub >= need {
                candidates.push((ub, tie(ctx.seed, idx as u64), idx));
            }
        }
    }
    candidates.sort_unstable();
    // Tightest bound first; the bound ignores models, CPU and memory, so by default every
    // candidate is tried before giving up (see `PolicyConfig::subtree_limit`).
    for &(ub, _, idx) in candidates.iter().take(ctx.policy.subtree_limit.max(1)) {
        ctx.explanation.subtrees_evaluated += 1;
        let mut out = Vec::with_capacity(spec.members as usize);
        fill(ctx, level, idx, spec, &mut out);
        if out.len() as u64 == need && rtt_ok(ctx, spec, &out) {
            let name = ctx.view.topology.subtree_name(level, idx);
            ctx.explanation.steps.push(format!(
                "{} {} holds all {} members (bound {} members)",
                level.name(),
                name,
                need,
                ub
            ));
            return Some(out);
        }
    }
    None
}

/// Fills up to the gang's remaining members inside subtree `idx` at `level`, appending slots.
fn fill(ctx: &mut Ctx<'_>, level: Level, idx: usize, spec: &GangSpec, out: &mut Vec<MemberSlot>) {
    let topology = ctx.view.topology;
    let g = spec.gpus_per_member;
    let children: Option<(Level, std::ops::Range<usize>)> = match level {
        Level::Site => {
            let s = &topology.sites()[idx];
            Some((Level::Spine, s.spines.start as usize..s.spines.end as usize))
        }
        Level::Spine => {
            let s = &topology.spines()[idx];
            Some((Level::Leaf, s.leaves.start as usize..s.leaves.end as usize))
        }
        Level::Leaf => {
            let l = &topology.leaves()[idx];
            let multi_node_domains = l.domains.end - l.domains.start < l.nodes.end - l.nodes.start;
            multi_node_domains.then_some((
                Level::NvlDomain,
                l.domains.start as usize..l.domains.end as usize,
            ))
        }
        Level::NvlDomain | Level::Node => None,
    };
    if let Some((child_level, range)) = children {
        let mut order: Vec<(std::cmp::Reverse<u64>, u64, usize)> = range
            .map(|c| {
                (
                    std::cmp::Reverse(fit(ctx, child_level, c, g)),
                    tie(ctx.seed, c as u64),
                    c,
                )
            })
            .filter(|(std::cmp::Reverse(f), _, _)| *f > 0)
            .collect();
        order.sort_unstable();
        for (_, _, child) in order {
            if out.len() == spec.members as usize {
                return;
            }
            fill(ctx, child_level, child, spec, out);
        }
        return;
    }
    // Flat: best-fitting nodes first (exactly g free, then more).
    let nodes = topology.subtree_nodes(level, idx);
    let ranges = rotate(std::slice::from_ref(&nodes), ctx.seed);
    let job = ctx.job;
    for k in g as usize..=sovra_fabric::topology::GPUS_PER_NODE_MAX {
        for range in &ranges {
            for node in ctx.view.ledger.nodes_with_whole_free(k, range.clone()) {
                if out.len() == spec.members as usize {
                    return;
                }
                ctx.explanation.nodes_evaluated += 1;
                let free = ctx.view.ledger.node(node);
                let mut usable = free.whole_mask & allowed_gpus(ctx, node);
                let mut members = usable.count_ones() / g;
                if let Some(by_cpu) = free.cpu_milli.checked_div(job.cpu_milli) {
                    members = members.min(by_cpu.min(u32::MAX as u64) as u32);
                }
                if let Some(by_memory) = free.memory_mib.checked_div(job.memory_mib) {
                    members = members.min(by_memory.min(u32::MAX as u64) as u32);
                }
                let left = spec.members as usize - out.len();
                for _ in 0..members.min(left as u32) {
                    let mut mask = 0u32;
                    for _ in 0..g {
                        let bit = usable & usable.wrapping_neg();
                        mask |= bit;
                        usable &= !bit;
                    }
                    out.push(MemberSlot {
                        node,
                        take: Take {
                            cpu_milli: job.cpu_milli,
                            memory_mib: job.memory_mib,
                            gpus: GpuTake::Whole { mask },
                        },
                    });
                }
            }
        }
    }
}

/// Largest RTT between any two members: the inter-site RTT of every pair of sites used, and
/// inside each site the fabric RTT of the widest level its members span.
pub(crate) fn max_member_rtt_ns(ctx: &Ctx<'_>, slots: &[MemberSlot]) -> u64 {
    let topology = ctx.view.topology;
    // (site, first member's node there, members there, widest common level with it).
    let mut sites: Vec<(sovra_fabric::SiteId, NodeId, usize, Level)> = Vec::new();
    for s in slots {
        let site = topology.node(s.node).site;
        match sites.iter_mut().find(|(x, _, _, _)| *x == site) {
            Some((_, first, count, widest)) => {
                *count += 1;
                if let Some(level) = topology.common_level(*first, s.node) {
                    *widest = (*widest).max(level);
                }
            }
            None => sites.push((site, s.node, 1, Level::Node)),
        }
    }
    let mut max = 0;
    for (i, &(a, _, count, widest)) in sites.iter().enumerate() {
        let fabric = &topology.site(a).fabric;
        let inside = match widest {
            Level::Node if count == 1 => 0,
            Level::Node | Level::NvlDomain => fabric.nvlink_rtt_ns,
            Level::Leaf => fabric.leaf_rtt_ns,
            Level::Spine => fabric.spine_rtt_ns,
            Level::Site => fabric.core_rtt_ns,
        };
        max = max.max(inside);
        for &(b, _, _, _) in &sites[i + 1..] {
            max = max.max(topology.site_rtt_ns(a, b));
        }
    }
    max
}

fn rtt_ok(ctx: &Ctx<'_>, spec: &GangSpec, slots: &[MemberSlot]) -> bool {
    match spec.max_rtt_ns {
        Some(max) => max_member_rtt_ns(ctx, slots) <= max,
        None => true,
    }
}

fn gang_across_sites(ctx: &mut Ctx<'_>, spec: &GangSpec) -> Option<Vec<MemberSlot>> {
    let topology = ctx.view.topology;
    let g = spec.gpus_per_member;
    let need = spec.members as u64;
    let mut anchors: Vec<(std::cmp::Reverse<u64>, u64, sovra_fabric::SiteId)> = ctx
        .sites
        .iter()
        .map(|&s| {
            (
                std::cmp::Reverse(fit(ctx, Level::Site, s.idx(), g)),
                tie(ctx.seed, s.0 as u64),
                s,
            )
        })
        .collect();
    anchors.sort_unstable();
    for &(_, _, anchor) in anchors.iter().take(ctx.policy.subtree_limit.max(1)) {
        ctx.explanation.subtrees_evaluated += 1;
        let mut group = vec![anchor];
        let mut capacity = fit(ctx, Level::Site, anchor.idx(), g);
        let mut others: Vec<(u64, sovra_fabric::SiteId)> = ctx
            .sites
            .iter()
            .filter(|&&s| s != anchor)
            .map(|&s| (topology.site_rtt_ns(anchor, s), s))
            .collect();
        others.sort_unstable();
        for (_, s) in others {
            if capacity >= need {
                break;
            }
            let close = match spec.max_rtt_ns {
                Some(max) => group.iter().all(|&x| topology.site_rtt_ns(x, s) <= max),
                None => true,
            };
            if close {
                group.push(s);
                capacity += fit(ctx, Level::Site, s.idx(), g);
            }
        }
        if capacity < need {
            continue;
        }
        let mut out = Vec::with_capacity(spec.members as usize);
        for &s in &group {
            fill(ctx, Level::Site, s.idx(), spec, &mut out);
        }
        if out.len() as u64 == need && rtt_ok(ctx, spec, &out) {
            let names: Vec<&str> = group
                .iter()
                .map(|&s| topology.site(s).name.as_str())
                .collect();
            ctx.explanation.steps.push(format!(
                "gang spans sites [{}], max member rtt {}",
                names.join(","),
                super::fmt_rtt(max_member_rtt_ns(ctx, &out))
            ));
            return Some(out);
        }
    }
    None
}
