//! Inference placement: replicas spread across failure domains, within a latency objective.
//!
//! Eligible sites already meet the SLO (stage 1). Each replica goes to the spread domain with
//! the fewest replicas so far, then the lowest RTT to the ingress site, then a seeded tie;
//! inside the domain, best fit on a node no other replica uses. Only when no fresh node is
//! left may replicas share a node.

use sovra_fabric::topology::Level;
use sovra_fabric::SiteId;

use super::member::{find_slot, rotate, Overlay};
use super::{Ctx, MemberSlot, Unschedulable};
use crate::core::job::InferenceSpec;
use crate::core::rng::tie;

/// Places an inference service.
pub(crate) fn place_inference(
    ctx: &mut Ctx<'_>,
    spec: &InferenceSpec,
) -> Result<Vec<MemberSlot>, Unschedulable> {
    let topology = ctx.view.topology;
    let ingress: Option<SiteId> = spec
        .slo
        .as_ref()
        .and_then(|slo| topology.site_by_name(&slo.ingress_site));
    let site_rtt = |site: SiteId| ingress.map_or(0, |i| topology.site_rtt_ns(i, site));
    // Spread domains: (replicas so far, rtt to ingress, tie, subtree index).
    let mut domains: Vec<(u32, u64, u64, usize)> = Vec::new();
    for &site in &ctx.sites {
        let s = topology.site(site);
        let range = match spec.spread {
            Level::Node => s.nodes.clone(),
            Level::NvlDomain => s.domains.clone(),
            Level::Leaf => s.leaves.clone(),
            Level::Spine => s.spines.clone(),
            Level::Site => site.0..site.0 + 1,
        };
        for idx in range.start as usize..range.end as usize {
            domains.push((0, site_rtt(site), tie(ctx.seed, idx as u64), idx));
        }
    }
    let mut overlay = Overlay::default();
    let mut out: Vec<MemberSlot> = Vec::with_capacity(spec.replicas as usize);
    for replica in 0..spec.replicas {
        let mut chosen: Option<(usize, MemberSlot)> = None;
        if spec.spread == Level::Node {
            // Every node is its own domain: best fit over fresh nodes, in rtt tiers.
            let mut tiers: Vec<(u64, SiteId)> =
                ctx.sites.iter().map(|&s| (site_rtt(s), s)).collect();
            tiers.sort_unstable();
            for pass_allows_reuse in [false, true] {
                for &(_, site) in &tiers {
                    let r = &topology.site(site).nodes;
                    let site_nodes = r.start as usize..r.end as usize;
                    let ranges =
                        rotate(std::slice::from_ref(&site_nodes), ctx.seed ^ replica as u64);
                    let skip = |n| !pass_allows_reuse && overlay.uses(n);
                    if let Some(slot) = find_slot(ctx, &overlay, &ranges, &spec.gpus, &skip) {
                        chosen = Some((slot.node.idx(), slot));
                        break;
                    }
                }
                if chosen.is_some() {
                    break;
                }
            }
        } else {
            domains.sort_unstable();
            'passes: for pass_allows_reuse in [false, true] {
                for domain in domains.iter_mut() {
                    let idx = domain.3;
                    ctx.explanation.subtrees_evaluated += 1;
                    let nodes = topology.subtree_nodes(spec.spread, idx);
                    let ranges = rotate(&[nodes], ctx.seed ^ replica as u64);
                    let skip = |n| !pass_allows_reuse && overlay.uses(n);
                    if let Some(slot) = find_slot(ctx, &overlay, &ranges, &spec.gpus, &skip) {
                        domain.0 += 1;
                        chosen = Some((idx, slot));
                        break 'passes;
                    }
                }
            }
        }
        let Some((_, slot)) = chosen else {
            let message = format!("only {replica} of {} replicas fit", spec.replicas);
            return Err(ctx.unschedulable(Some(message)));
        };
        overlay.add(slot.node, &slot.take);
        out.push(slot);
    }
    let mut used: Vec<usize> = out
        .iter()
        .map(|s| topology.subtree_of(spec.spread.max(Level::Node), s.node))
        .collect();
    used.sort_unstable();
    used.dedup();
    ctx.explanation.steps.push(format!(
        "{} replicas spread over {} {} domain(s)",
        spec.replicas,
        used.len(),
        spec.spread.name()
    ));
    Ok(out)
}
