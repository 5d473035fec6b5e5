//! Why a job cannot be placed: an exact count of what each filter removed, and a reason code.
//!
//! This is the slow path (one pass over the eligible nodes), run only when placement fails, so
//! the hot path never pays for explanations it does not need.

use sovra_fabric::topology::Level;
use sovra_fabric::{GpuId, NodeId};

use super::member::{allowed_gpus, count_removal, slot_on, Overlay};
use super::{Ctx, FilterCounts, PendingReason, Unschedulable};
use crate::core::job::{Affinity, GpuRequest, Workload};

pub(crate) fn diagnose(ctx: &mut Ctx<'_>, topology_message: Option<String>) -> Unschedulable {
    let gpus = ctx.job.member_gpus();
    let keep = ctx.explanation.removed;
    ctx.explanation.removed = FilterCounts {
        jurisdiction: keep.jurisdiction,
        latency: keep.latency,
        ..FilterCounts::default()
    };
    let overlay = Overlay::default();
    let mut feasible = 0u32;
    let ranges = ctx.ranges.clone();
    for range in &ranges {
        for i in range.clone() {
            match slot_on(ctx, &overlay, NodeId::from_idx(i), &gpus) {
                Ok(_) => feasible += 1,
                Err(removal) => count_removal(ctx, removal),
            }
        }
    }
    ctx.explanation.nodes_evaluated = ctx.explanation.nodes_eligible;
    let removed = ctx.explanation.removed;
    let juris: Vec<&str> = ctx
        .explanation
        .jurisdictions
        .iter()
        .map(|j| j.as_str())
        .collect();
    if removed.unschedulable == ctx.explanation.nodes_eligible {
        let message = format!(
            "all {} nodes in allowed jurisdictions [{}] are down or drained",
            ctx.explanation.nodes_eligible,
            juris.join(",")
        );
        ctx.explanation.steps.push(message.clone());
        return Unschedulable {
            reason: PendingReason::JurisdictionUnavailable,
            message,
        };
    }
    if let Some(message) = never_fits(ctx) {
        ctx.explanation.steps.push(message.clone());
        return Unschedulable {
            reason: PendingReason::BadConstraints,
            message,
        };
    }
    let message = match topology_message {
        Some(m) if feasible > 0 => m,
        _ => format!(
            "{} of {} eligible nodes fit one member (short of: cpu {}, memory {}, gpu {}, \
             model {}, unavailable {})",
            feasible,
            ctx.explanation.nodes_eligible,
            removed.cpu,
            removed.memory,
            removed.gpu,
            removed.model,
            removed.unschedulable
        ),
    };
    ctx.explanation.steps.push(message.clone());
    Unschedulable {
        reason: PendingReason::Resources,
        message,
    }
}

/// Members node `node` could hold on an empty cluster.
fn static_members(ctx: &Ctx<'_>, node: NodeId, gpus: &GpuRequest) -> u64 {
    let topology = ctx.view.topology;
    let spec = topology.node(node);
    let job = ctx.job;
    let mut members = u64::MAX;
    if let Some(by_cpu) = spec.cpu_milli.checked_div(job.cpu_milli) {
        members = members.min(by_cpu);
    }
    if let Some(by_memory) = spec.memory_mib.checked_div(job.memory_mib) {
        members = members.min(by_memory);
    }
    let allowed = allowed_gpus(ctx, node);
    let (mut plain, mut mig_slots) = (0u64, 0u64);
    for g in spec.gpus.clone() {
        let gpu = topology.gpu(GpuId(g));
        if allowed & (1 << gpu.local) == 0 {
            continue;
        }
        if gpu.mig {
            if let GpuRequest::Mig(profile) = gpus {
                let model = topology.model(gpu.model);
                if let Some(p) = model.mig_profiles.iter().find(|p| &p.name == profile) {
                    mig_slots += (sovra_fabric::topology::MIG_COMPUTE_SLICES / p.compute_slices)
                        .min(sovra_fabric::topology::MIG_MEMORY_SLICES / p.memory_slices)
                        as u64;
                }
            }
        } else {
            plain += 1;
        }
    }
    let by_gpu = match gpus {
        GpuRequest::None => u64::MAX,
        GpuRequest::Whole(n) => plain / *n as u64,
        GpuRequest::Milli(m) => plain * (1000 / *m as u64),
        GpuRequest::Mig(_) => mig_slots,
    };
    members.min(by_gpu)
}

/// A message when the job could not fit even an empty cluster.
fn never_fits(ctx: &Ctx<'_>) -> Option<String> {
    let topology = ctx.view.topology;
    let gpus = ctx.job.member_gpus();
    let member_fits_somewhere = ctx
        .ranges
        .iter()
        .flat_map(|r| r.clone())
        .any(|i| static_members(ctx, NodeId::from_idx(i), &gpus) > 0);
    if !member_fits_somewhere {
        return Some(format!(
            "no eligible node can ever hold one member ({} cpu milli, {} MiB, {:?})",
            ctx.job.cpu_milli, ctx.job.memory_mib, gpus
        ));
    }
    let (need, what) = match &ctx.job.workload {
        Workload::Batch { .. } => return None,
        Workload::Inference(spec) => {
            // Replicas may share a node when no fresh one is left, so the bound is the sum.
            let total: u64 = ctx
                .ranges
                .iter()
                .flat_map(|r| r.clone())
                .map(|i| static_members(ctx, NodeId::from_idx(i), &gpus))
                .fold(0u64, |a, b| a.saturating_add(b));
            let need = spec.replicas as u64;
            return (total < need).then(|| {
                format!(
                    "the eligible sites hold at most {total} of {need} replicas even when empty"
                )
            });
        }
        Workload::Gang(spec) => (spec.members as u64, spec),
    };
    let spec = what;
    let crosses = spec.topology.level.is_none()
        || (spec.topology.affinity == Affinity::Preferred && spec.max_rtt_ns.is_some());
    let cap = match (spec.topology.level, spec.topology.affinity) {
        (Some(level), Affinity::Required) => level,
        _ => Level::Site,
    };
    // Per eligible site: the widest level (up to `cap`) whose fabric RTT the gang allows, and
    // the most members one subtree at that level holds on an empty cluster.
    let mut per_site: Vec<(sovra_fabric::SiteId, u64)> = Vec::new();
    for &site in &ctx.sites {
        let fabric = &topology.site(site).fabric;
        let level = match spec.max_rtt_ns {
            None => Some(cap),
            Some(max) => [
                (Level::Site, fabric.core_rtt_ns),
                (Level::Spine, fabric.spine_rtt_ns),
                (Level::Leaf, fabric.leaf_rtt_ns),
                (Level::NvlDomain, fabric.nvlink_rtt_ns),
                (Level::Node, fabric.nvlink_rtt_ns),
            ]
            .into_iter()
            .find(|&(l, rtt)| l <= cap && rtt <= max)
            .map(|(l, _)| l),
        };
        let best = match level {
            Some(level) => best_subtree(ctx, site, level, &gpus),
            // Not even two members on one node are close enough: a lone member at most.
            None => {
                let nodes = topology.site(site).nodes.clone();
                let any = (nodes.start as usize..nodes.end as usize)
                    .any(|n| static_members(ctx, NodeId::from_idx(n), &gpus) > 0);
                u64::from(any)
            }
        };
        per_site.push((site, best));
    }
    let mut bound = per_site.iter().map(|p| p.1).max().unwrap_or(0);
    if crosses {
        // Members in several sites: an upper bound sums, around each anchor site, the sites
        // close enough to it (each still limited inside to the levels the RTT allows).
        for &(a, ca) in &per_site {
            let mut sum = ca;
            for &(b, cb) in &per_site {
                let close = spec
                    .max_rtt_ns
                    .is_none_or(|max| topology.site_rtt_ns(a, b) <= max);
                if b != a && close {
                    sum = sum.saturating_add(cb);
                }
            }
            bound = bound.max(sum);
        }
    }
    (bound < need).then(|| {
        let within = match spec.max_rtt_ns {
            Some(rtt) => format!(" within {} of each other", super::fmt_rtt(rtt)),
            None => String::new(),
        };
        let g = spec.gpus_per_member;
        if crosses {
            format!(
                "the eligible sites can never hold {need} members of {g} gpus{within}: \
                 at most {bound}"
            )
        } else {
            format!(
                "no {} can ever hold {need} members of {g} gpus{within}: at most {bound}",
                cap.name()
            )
        }
    })
}

/// The most members one `level` subtree of `site` holds on an empty cluster.
fn best_subtree(ctx: &Ctx<'_>, site: sovra_fabric::SiteId, level: Level, gpus: &GpuRequest) -> u64 {
    let topology = ctx.view.topology;
    let nodes = topology.site(site).nodes.clone();
    let mut best = 0u64;
    let mut current: Option<(usize, u64)> = None;
    for n in nodes.start as usize..nodes.end as usize {
        let subtree = topology.subtree_of(level, NodeId::from_idx(n));
        let m = static_members(ctx, NodeId::from_idx(n), gpus);
        current = match current {
            Some((s, acc)) if s == subtree => Some((s, acc.saturating_add(m))),
            Some((_, acc)) => {
                best = best.max(acc);
                Some((subtree, m))
            }
            None => Some((subtree, m)),
        };
    }
    if let Some((_, acc)) = current {
        best = best.max(acc);
    }
    best
}
