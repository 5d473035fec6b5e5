//! Measured latency with hysteresis: the leader feeds agents' RTT samples for a site pair into
//! an [`RttFilter`], which says when the committed RTT should change. Placement then uses
//! measured RTTs, not configured guesses, without flapping: a change is proposed only after
//! the median of the recent samples has stayed outside a band around the committed value for
//! several reports in a row. A link whose probes go unanswered for as many rounds is marked
//! down ([`SITE_LINK_DOWN_NS`]: placement avoids it, and `sovra topology show` and
//! explanations say why). Pure and deterministic.

use std::collections::VecDeque;

use sovra_fabric::topology::SITE_LINK_DOWN_NS;

/// Samples the median is taken over.
pub const WINDOW: usize = 5;
/// Reports in a row the median must stay outside the band before a change is proposed.
pub const CONFIRMATIONS: u32 = 3;
/// The band: a change must exceed this fraction of the committed RTT ...
pub const BAND_FRACTION: f64 = 0.2;
/// ... and this many nanoseconds.
pub const BAND_MIN_NS: u64 = 100_000;

/// One site pair's recent samples and the change being confirmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RttFilter {
    samples: VecDeque<u64>,
    streak: u32,
    lost: u32,
}

impl RttFilter {
    /// A probe round got no answer. Returns [`SITE_LINK_DOWN_NS`] to commit once
    /// [`CONFIRMATIONS`] rounds in a row were lost (and the link is not already down); the
    /// samples start afresh, so the link comes back after as many good rounds.
    pub fn observe_lost(&mut self, committed_ns: u64) -> Option<u64> {
        self.streak = 0;
        self.samples.clear();
        self.lost += 1;
        (self.lost >= CONFIRMATIONS && committed_ns < SITE_LINK_DOWN_NS).then(|| {
            self.lost = 0;
            SITE_LINK_DOWN_NS
        })
    }

    /// Adds a sample (ns; at least 1). Returns the RTT to commit when the change is
    /// confirmed: the median of the window, after [`CONFIRMATIONS`] reports in a row outside
    /// the band around `committed_ns`.
    pub fn observe(&mut self, sample_ns: u64, committed_ns: u64) -> Option<u64> {
        assert!(sample_ns > 0, "an RTT sample is positive");
        self.lost = 0;
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(sample_ns);
        let median = self.median();
        let band = ((committed_ns as f64 * BAND_FRACTION) as u64).max(BAND_MIN_NS);
        if median.abs_diff(committed_ns) <= band {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < CONFIRMATIONS {
            return None;
        }
        self.streak = 0;
        Some(median)
    }

    /// The median of the window.
    pub fn median(&self) -> u64 {
        let mut window: Vec<u64> = self.samples.iter().copied().collect();
        median_ns(&mut window)
    }
}

/// The median of `samples` (the lower middle for an even count); 0 when there are none.
/// Sorts them in place.
pub fn median_ns(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples
        .get(samples.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_after_confirmed_changes_only() {
        let mut f = RttFilter::default();
        // 100 ms configured; loopback-fast samples: proposed on the third report in a row.
        let committed = 100_000_000;
        assert_eq!(f.observe(60_000, committed), None);
        assert_eq!(f.observe(50_000, committed), None);
        assert_eq!(f.observe(55_000, committed), Some(55_000));
        // Within the band of the new value: nothing, however it wiggles.
        let committed = 55_000;
        for s in [60_000, 120_000, 40_000, 150_000, 70_000] {
            assert_eq!(f.observe(s, committed), None, "{s}");
        }
        // One outlier never moves it; a sustained shift does.
        let mut g = RttFilter::default();
        for _ in 0..10 {
            assert_eq!(g.observe(10_000_000, 10_000_000), None);
        }
        assert_eq!(g.observe(90_000_000, 10_000_000), None);
        assert_eq!(g.observe(10_000_000, 10_000_000), None);
        let mut out = None;
        for _ in 0..6 {
            out = out.or(g.observe(30_000_000, 10_000_000));
        }
        assert_eq!(out, Some(30_000_000));
    }

    #[test]
    fn lost_links_go_down_and_come_back() {
        let mut f = RttFilter::default();
        let up = 5_000_000;
        assert_eq!(f.observe_lost(up), None);
        assert_eq!(f.observe_lost(up), None);
        // One answer in between resets the count.
        assert_eq!(f.observe(5_000_000, up), None);
        assert_eq!(f.observe_lost(up), None);
        assert_eq!(f.observe_lost(up), None);
        assert_eq!(f.observe_lost(up), Some(SITE_LINK_DOWN_NS));
        // Down: more losses change nothing; answers bring it back after confirmation.
        assert_eq!(f.observe_lost(SITE_LINK_DOWN_NS), None);
        assert_eq!(f.observe_lost(SITE_LINK_DOWN_NS), None);
        assert_eq!(f.observe_lost(SITE_LINK_DOWN_NS), None);
        assert_eq!(f.observe(6_000_000, SITE_LINK_DOWN_NS), None);
        assert_eq!(f.observe(6_000_000, SITE_LINK_DOWN_NS), None);
        assert_eq!(f.observe(6_000_000, SITE_LINK_DOWN_NS), Some(6_000_000));
    }
}
