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
    let Workload::Gang(spec) = &ctx.job.workload else {
        return None;
    };
    let need = spec.members as u64;
    let crosses = spec.topology.level.is_none()
        || (spec.topology.affinity == Affinity::Preferred && spec.max_rtt_ns.is_some());
    let level = match (spec.topology.level, spec.topology.affinity) {
        (Some(level), Affinity::Required) => level,
        _ if crosses => {
            let total: u64 = ctx
                .ranges
                .iter()
                .flat_map(|r| r.clone())
                .map(|i| static_members(ctx, NodeId::from_idx(i), &gpus))
                .sum();
            return (total < need).then(|| {
                format!("the eligible sites hold at most {total} of {need} members even when empty")
            });
        }
        _ => Level::Site,
    };
    let mut best = 0u64;
    for &site in &ctx.sites {
        let nodes = topology.site(site).nodes.clone();
        let mut current: Option<(usize, u64)> = None;
        for n in nodes.start as usize..nodes.end as usize {
            let subtree = topology.subtree_of(level, NodeId::from_idx(n));
            let m = static_members(ctx, NodeId::from_idx(n), &gpus);
            current = match current {
                Some((s, acc)) if s == subtree => Some((s, acc + m)),
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
    }
    (best < need).then(|| {
        format!(
            "no {} can ever hold {} members of {} gpus: the largest holds {}",
            level.name(),
            need,
            spec.gpus_per_member,
            best
        )
    })
}
