//! Exact order statistics of a set of durations, without a statistics dependency.
//!
//! Percentiles use the nearest-rank definition: the p-th percentile of `n` sorted samples is
//! the sample at rank `ceil(p / 100 × n)` (1-based). So p99 of 2,000 samples is the 1,980th
//! smallest, and p50 of an even count is the lower middle sample, never an interpolation.

/// Order statistics of a non-empty set of durations, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Median (nearest rank).
    pub p50_ns: u64,
    /// 99th percentile (nearest rank).
    pub p99_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Arithmetic mean.
    pub mean_ns: f64,
}

/// Summarises `durations_ns`, sorting it in place. Empty input is a bug in the caller.
pub fn summarize(durations_ns: &mut [u64]) -> Summary {
    assert!(!durations_ns.is_empty(), "no samples to summarize");
    durations_ns.sort_unstable();
    let sum: u128 = durations_ns.iter().map(|&d| u128::from(d)).sum();
    let summary = Summary {
        p50_ns: percentile(durations_ns, 50),
        p99_ns: percentile(durations_ns, 99),
        max_ns: durations_ns[durations_ns.len() - 1],
        mean_ns: sum as f64 / durations_ns.len() as f64,
    };
    assert!(summary.p50_ns <= summary.p99_ns);
    assert!(summary.p99_ns <= summary.max_ns);
    summary
}

/// The nearest-rank `p`-th percentile of `sorted`, for `p` in `1..=100`.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    assert!((1..=100).contains(&p));
    assert!(!sorted.is_empty());
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mut input: Vec<u64>, expect: (u64, u64, u64, f64)) {
        let s = summarize(&mut input);
        assert_eq!((s.p50_ns, s.p99_ns, s.max_ns, s.mean_ns), expect);
    }

    #[test]
    fn nearest_rank() {
        check(vec![5], (5, 5, 5, 5.0));
        check(vec![4, 1, 3, 2], (2, 4, 4, 2.5));
        // 1..=200: p50 is rank 100, p99 is rank 198.
        check((1..=200).rev().collect(), (100, 198, 200, 100.5));
        // 1..=2000: p99 is rank 1980.
        check((1..=2000).collect(), (1000, 1980, 2000, 1000.5));
    }
}
