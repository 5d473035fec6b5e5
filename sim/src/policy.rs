//! The placement policies the time-driven simulations (`sovra-sim trace`, `plan`, `replay`)
//! can run, by name.
//!
//! Names are the scheduler core's ([`SharePolicy::name`]): `best-fit` (what `sovrad` runs by
//! default, `PolicyConfig::default()`), `frag-pack`, `fgd`, `random`, `dot-product`,
//! `gpu-clustering`, `gpu-packing` and `node-best-fit`. The `sovra-sim openb` names are
//! accepted too: `default` (= `frag-pack`), `dotprod`, `clustering`, `packing` and `bestfit`
//! (= `node-best-fit`, the FGD paper's best fit, not sovra's). FGD and FragPack need a target
//! workload; [`SimPolicy::config`] takes it, built from the run's jobs by
//! [`crate::openb::target_workload`].

use sovra_scheduler::core::placement::{PolicyConfig, SharePolicy, TargetWorkload};

use crate::openb::Policy;

/// A policy of a time-driven simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimPolicy {
    /// sovra's bucketed best fit: `sovrad`'s default.
    BestFit,
    /// One of the OpenB evaluation's policies (FGD's baselines, FGD, FragPack).
    Openb(Policy),
}

impl SimPolicy {
    /// Every policy, `sovrad`'s default first.
    pub const ALL: [SimPolicy; 8] = [
        SimPolicy::BestFit,
        SimPolicy::Openb(Policy::Default),
        SimPolicy::Openb(Policy::Fgd),
        SimPolicy::Openb(Policy::Random),
        SimPolicy::Openb(Policy::DotProd),
        SimPolicy::Openb(Policy::Clustering),
        SimPolicy::Openb(Policy::Packing),
        SimPolicy::Openb(Policy::BestFit),
    ];

    /// The canonical name: the core's.
    pub fn name(self) -> &'static str {
        match self {
            SimPolicy::BestFit => "best-fit",
            SimPolicy::Openb(p) => match p {
                Policy::Random => "random",
                Policy::DotProd => "dot-product",
                Policy::Clustering => "gpu-clustering",
                Policy::Packing => "gpu-packing",
                Policy::BestFit => "node-best-fit",
                Policy::Fgd => "fgd",
                Policy::Default => "frag-pack",
            },
        }
    }

    /// Parses a canonical name or a `sovra-sim openb` name.
    pub fn parse(name: &str) -> Option<SimPolicy> {
        if let Some(p) = SimPolicy::ALL.into_iter().find(|p| p.name() == name) {
            return Some(p);
        }
        Policy::parse(name).map(SimPolicy::Openb)
    }

    /// The names `parse` takes, for messages.
    pub fn names() -> String {
        let names: Vec<&str> = SimPolicy::ALL.iter().map(|p| p.name()).collect();
        format!(
            "{} (or default, dotprod, clustering, packing, bestfit)",
            names.join(", ")
        )
    }

    /// The scheduler core's policy, with `target` as FGD's and FragPack's target workload.
    pub fn config(self, target: &TargetWorkload) -> PolicyConfig {
        let share = match self {
            SimPolicy::BestFit => SharePolicy::BestFit,
            SimPolicy::Openb(p) => p.share(target),
        };
        let config = PolicyConfig {
            share,
            ..PolicyConfig::default()
        };
        assert_eq!(config.name(), self.name(), "names follow the core's");
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in SimPolicy::ALL {
            assert_eq!(SimPolicy::parse(p.name()), Some(p));
            let target = TargetWorkload {
                shapes: Vec::new(),
                population: 0,
            };
            assert_eq!(p.config(&target).name(), p.name());
        }
        assert_eq!(
            SimPolicy::parse("default"),
            Some(SimPolicy::Openb(Policy::Default))
        );
        assert_eq!(
            SimPolicy::parse("bestfit").map(SimPolicy::name),
            Some("node-best-fit")
        );
        assert_eq!(SimPolicy::parse("best"), None);
    }
}
