//! Small numeric helpers with the exact semantics of the reference's Python post-processing.

/// Sum as numpy sums a float64 array: pairwise, eight accumulators per block of at most 128,
/// so that means agree with the reference's `pandas` means to the last bit.
pub fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Python's `round(x, digits)`: the decimal with `digits` places nearest to `x`'s exact
/// binary value (ties to even), read back as the nearest `f64`.
pub fn round_decimals(x: f64, digits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.digits$}")
        .parse()
        .expect("a formatted float parses")
}

/// Mean and sample standard deviation (n − 1); the deviation is 0 for one value.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_pythons() {
        assert_eq!(round_decimals(95.144999, 2), 95.14);
        assert_eq!(round_decimals(0.125, 2), 0.12);
        assert_eq!(round_decimals(0.375, 2), 0.38);
        assert_eq!(
            round_decimals(2.675, 2),
            2.67,
            "2.675 is 2.67499.. in binary"
        );
    }

    #[test]
    fn pairwise_sums() {
        let a: Vec<f64> = (0..300).map(|i| 0.1 * i as f64).collect();
        assert!((pairwise_sum(&a) - 4_485.0).abs() < 1e-9);
        assert_eq!(pairwise_sum(&[1.0, 2.0, 3.0]), 6.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((sd - 1.290_994_448_735_805_6).abs() < 1e-15);
    }
}
