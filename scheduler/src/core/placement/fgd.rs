//! Fragmentation-aware packing of shared GPUs (FGD, Weng et al., USENIX ATC'23).
//!
//! A node's fragmentation against a target workload `M` is the GPU capacity that the
//! workload's typical tasks could not use, weighted by how common each task shape is:
//! `F_n(M) = Σ_m p_m · F_n(m)` where, for one shape `m`:
//! - a CPU-only shape counts all free GPU milli as fragment;
//! - a shape whose model list excludes the node counts all free GPU milli;
//! - if enough GPUs have `free ≥ milli_m` and the CPU fits, only GPUs too small for `m` count;
//! - otherwise all free GPU milli counts.
//!
//! Memory is not part of the measure. FGD places a task where `Δ = F_n'(M) − F_n(M)` is
//! smallest.
//!
//! # Faithful to the published evaluation
//!
//! The arithmetic follows the paper's simulator (`hkust-adsl/kubernetes-scheduler-simulator`,
//! `utils.NodeGpuShareFragAmount` and `fgd_score.go`) operation for operation, so that a run
//! reproduces its published numbers, not just their shape:
//! - `p_m = (w_m / N) / (W / N)` in `f64`, where `w_m` is the shape's task count, `N` the tasks
//!   the shapes were counted from ([`TargetWorkload::population`]) and `W = Σ w_m`;
//! - the per-shape amounts are accumulated, in shape order, into seven categories (the paper's
//!   Q1..Q4, XL, XR and no-access) and the categories other than "Q3 satisfied" are summed in
//!   category order; floating-point addition is not associative, so the order is part of the
//!   result;
//! - the node score is `int(100 · sigmoid((F_n(M) − F_n'(M)) / 1000))`, an integer in 0..=100.
//!   The truncation makes many nodes tie; ties go to the seeded node order like every other
//!   placement tie.
//!
//! Only `+`, `−`, `×` and `÷` on `f64` are used, which IEEE 754 defines exactly, plus [`exp`],
//! implemented here (fdlibm's algorithm, as in Go's `math` package) rather than taken from the
//! platform's libm, so a score is the same on every platform.

use sovra_fabric::ModelId;

/// One typical task shape and its weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadShape {
    /// CPU the task asks for.
    pub cpu_milli: u64,
    /// Milli-GPU per GPU (0 for CPU-only).
    pub gpu_milli: u32,
    /// GPUs (0 for CPU-only).
    pub gpu_count: u32,
    /// Allowed models as a bitmask over the topology's `ModelId`s; `u64::MAX` for any.
    pub model_mask: u64,
    /// Relative weight: how many tasks of the workload have this shape (or parts per million).
    pub weight: u32,
}

/// The target workload `M`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetWorkload {
    /// Shapes and weights, most common first.
    pub shapes: Vec<WorkloadShape>,
    /// Tasks the weights were counted from, the shapes left out included (the typical shapes
    /// cover only the most common part of a trace). 0 when the weights are themselves the
    /// distribution (parts per million, say); `p_m` is then `w_m / Σ w`.
    pub population: u64,
}

/// Fragmentation category of one shape on one node (the paper's names).
const Q1_LACK_BOTH: usize = 0;
const Q2_LACK_GPU: usize = 1;
const Q3_SATISFIED: usize = 2;
const Q4_LACK_CPU: usize = 3;
const XL_SATISFIED: usize = 4;
const XR_LACK_CPU: usize = 5;
const NO_ACCESS: usize = 6;
const CATEGORIES: usize = 7;

/// A shape with its probability, ready for scoring.
#[derive(Clone, Debug)]
struct Shape {
    cpu_milli: u64,
    gpu_milli: u32,
    gpu_count: u32,
    model_mask: u64,
    p: f64,
}

/// A [`TargetWorkload`] with its probabilities computed: built once per placement.
#[derive(Clone, Debug)]
pub struct FragModel {
    shapes: Vec<Shape>,
}

impl FragModel {
    /// Computes `p_m` for every shape (see the module docs).
    pub fn new(workload: &TargetWorkload) -> FragModel {
        let sum: u64 = workload.shapes.iter().map(|s| s.weight as u64).sum();
        let shapes = workload
            .shapes
            .iter()
            .map(|s| {
                let p = if sum == 0 {
                    0.0
                } else if workload.population == 0 {
                    s.weight as f64 / sum as f64
                } else {
                    let n = workload.population as f64;
                    (s.weight as f64 / n) / (sum as f64 / n)
                };
                Shape {
                    cpu_milli: s.cpu_milli,
                    gpu_milli: s.gpu_milli,
                    gpu_count: s.gpu_count,
                    model_mask: s.model_mask,
                    p,
                }
            })
            .collect();
        FragModel { shapes }
    }

    /// Each model's pressure from model-restricted demand: `(E_k / D) / (C_k / C)`, where
    /// `E_k` is the GPU demand of shapes restricted to some models, spread over them by
    /// capacity, `D` all GPU demand, `C_k` the model's capacity and `C` the cluster's.
    pub fn model_pressure(&self, capacity: &[u64]) -> Vec<f64> {
        let total_cap: u64 = capacity.iter().sum();
        let mut excl = vec![0.0f64; capacity.len()];
        let mut demand = 0.0;
        for s in self.shapes.iter().filter(|s| s.gpu_milli > 0) {
            let d = s.p * (s.gpu_milli as f64 * s.gpu_count as f64);
            demand += d;
            if s.model_mask == u64::MAX {
                continue;
            }
            let cap: u64 = (0..capacity.len())
                .filter(|&k| s.model_mask & (1 << k) != 0)
                .map(|k| capacity[k])
                .sum();
            if cap == 0 {
                continue;
            }
            for (k, e) in excl.iter_mut().enumerate() {
                if s.model_mask & (1 << k) != 0 {
                    *e += d * capacity[k] as f64 / cap as f64;
                }
            }
        }
        (0..capacity.len())
            .map(|k| {
                if demand == 0.0 || capacity[k] == 0 {
                    0.0
                } else {
                    (excl[k] / demand) / (capacity[k] as f64 / total_cap as f64)
                }
            })
            .collect()
    }

    /// CPU per milli-GPU of the workload: `Σ p·cpu / Σ p·milli·count`, the CPU summed over
    /// the GPU shapes only, or over every shape (CPU-only ones too) when `all` (0 without GPU
    /// shapes).
    pub fn cpu_per_gpu_milli(&self, all: bool) -> f64 {
        let (mut cpu, mut gpu) = (0.0, 0.0);
        for s in &self.shapes {
            if s.gpu_milli > 0 || all {
                cpu += s.p * s.cpu_milli as f64;
            }
            gpu += s.p * (s.gpu_milli as f64 * s.gpu_count as f64);
        }
        if gpu == 0.0 {
            0.0
        } else {
            cpu / gpu
        }
    }

    /// Fragmentation `F_n(M)` of a node state, in milli-GPU: `free` is the free milli of each
    /// of the node's GPUs, `cpu_free` its free CPU, `model` its GPU model.
    pub fn node_frag(&self, free: &[u16], cpu_free: u64, model: Option<ModelId>) -> f64 {
        let total: u64 = free.iter().map(|&f| f as u64).sum();
        let mut data = [0.0f64; CATEGORIES];
        for s in &self.shapes {
            let cpu_ok = cpu_free >= s.cpu_milli;
            if s.gpu_milli == 0 {
                let c = if cpu_ok { XL_SATISFIED } else { XR_LACK_CPU };
                data[c] += s.p * total as f64;
                continue;
            }
            if model.is_some_and(|m| s.model_mask & (1u64 << m.idx()) == 0) {
                data[NO_ACCESS] += s.p * total as f64;
                continue;
            }
            let mut fitting = 0u32;
            let mut small = 0u64;
            for &f in free {
                if f as u32 >= s.gpu_milli {
                    fitting += 1;
                } else {
                    small += f as u64;
                }
            }
            if fitting >= s.gpu_count {
                if cpu_ok {
                    data[Q2_LACK_GPU] += s.p * small as f64;
                    data[Q3_SATISFIED] += s.p * (total - small) as f64;
                } else {
                    data[Q4_LACK_CPU] += s.p * total as f64;
                }
            } else if cpu_ok {
                data[Q2_LACK_GPU] += s.p * total as f64;
            } else {
                data[Q1_LACK_BOTH] += s.p * total as f64;
            }
        }
        let mut out = 0.0;
        for (c, v) in data.iter().enumerate() {
            if c != Q3_SATISFIED {
                out += v;
            }
        }
        out
    }
}

/// FGD's node score for moving from fragmentation `before` to `after`:
/// `int(100 · sigmoid((before − after) / 1000))`, in 0..=100. Higher is better; 50 means
/// unchanged.
pub fn quantised_score(before: f64, after: f64) -> i64 {
    let x = (before - after) / 1000.0;
    let s = 1.0 / (1.0 + exp(-x)) * 100.0;
    assert!((0.0..=100.0).contains(&s), "sigmoid out of range: {s}");
    s as i64
}

/// `e^x`, deterministic on every platform: fdlibm's `__ieee754_exp`, the algorithm of Go's
/// portable `math.Exp` (error below one ulp).
pub fn exp(x: f64) -> f64 {
    // fdlibm's constants, by their bits.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    const OVERFLOW: f64 = f64::from_bits(0x4086_2E42_FEFA_39EF);
    const UNDERFLOW: f64 = f64::from_bits(0xC087_4910_D52D_3051);
    const NEAR_ZERO: f64 = 1.0 / (1u64 << 28) as f64;
    const P1: f64 = f64::from_bits(0x3FC5_5555_5555_5555);
    const P2: f64 = f64::from_bits(0xBF66_C16C_16BE_BD93);
    const P3: f64 = f64::from_bits(0x3F11_566A_AF25_DE2C);
    const P4: f64 = f64::from_bits(0xBEBB_BD41_C5D2_6BF1);
    const P5: f64 = f64::from_bits(0x3E66_3769_72BE_A4D0);
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == f64::NEG_INFINITY || x < UNDERFLOW {
        return 0.0;
    }
    if x > OVERFLOW {
        return f64::INFINITY;
    }
    if -NEAR_ZERO < x && x < NEAR_ZERO {
        return 1.0 + x;
    }
    // Reduce: x = k·ln2 + r with |r| ≤ ln2/2, r carried as hi − lo for precision.
    let k: i32 = if x < 0.0 {
        (LOG2_E * x - 0.5) as i32
    } else {
        (LOG2_E * x + 0.5) as i32
    };
    let hi = x - k as f64 * LN2_HI;
    let lo = k as f64 * LN2_LO;
    let r = hi - lo;
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    ldexp(y, k)
}

/// `y · 2^k`, exact unless the result is subnormal.
fn ldexp(mut y: f64, mut k: i32) -> f64 {
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    while k > 1023 {
        y *= pow2(1023);
        k -= 1023;
    }
    while k < -1022 {
        y *= pow2(-1022);
        k += 1022;
    }
    y * pow2(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(shapes: &[(u64, u32, u32, u32)], population: u64) -> FragModel {
        FragModel::new(&TargetWorkload {
            shapes: shapes
                .iter()
                .map(|&(cpu_milli, gpu_milli, gpu_count, weight)| WorkloadShape {
                    cpu_milli,
                    gpu_milli,
                    gpu_count,
                    model_mask: u64::MAX,
                    weight,
                })
                .collect(),
            population,
        })
    }

    #[test]
    fn frag_by_category() {
        // One half-GPU shape, one whole-GPU shape, one CPU-only shape, equally common.
        let m = workload(
            &[(4_000, 500, 1, 1), (8_000, 1_000, 1, 1), (2_000, 0, 0, 1)],
            0,
        );
        let third = 1.0 / 3.0;
        // Empty node: only the CPU-only shape sees fragment (all 2000 idle milli).
        assert_eq!(m.node_frag(&[1_000, 1_000], 32_000, None), third * 2_000.0);
        // A 300-milli sliver: too small for both GPU shapes.
        let f = m.node_frag(&[300, 1_000], 32_000, None);
        assert_eq!(f, third * 300.0 + third * 300.0 + third * 1_300.0);
        // Not enough CPU for the GPU shapes: everything idle is fragment for every shape.
        assert_eq!(m.node_frag(&[300, 1_000], 3_000, None), 1_300.0);
    }

    #[test]
    fn probabilities_follow_the_population() {
        // Shapes counted from 10 tasks, the two kept covering 8: p = (w/10) / (8/10).
        let m = workload(&[(1_000, 0, 0, 6), (1_000, 500, 1, 2)], 10);
        assert_eq!(m.shapes[0].p, (6.0 / 10.0) / (8.0 / 10.0));
        assert_eq!(m.shapes[1].p, (2.0 / 10.0) / (8.0 / 10.0));
    }

    #[test]
    fn quantised_scores() {
        assert_eq!(quantised_score(0.0, 0.0), 50);
        assert_eq!(quantised_score(0.0, 1_000.0), 26);
        assert_eq!(quantised_score(0.0, 100.0), 47);
        assert_eq!(quantised_score(1_000.0, 0.0), 73);
        assert_eq!(quantised_score(0.0, 1e9), 0);
        // A rounding-noise increase reads as unchanged, as in the reference simulator.
        assert_eq!(quantised_score(0.0, 1e-13), 50);
    }

    #[test]
    fn exp_matches_known_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(1.0), std::f64::consts::E);
        assert_eq!(exp(-1.0), 0.36787944117144233);
        assert_eq!(exp(2.5), 12.182493960703473);
        assert_eq!(exp(-745.2), 0.0);
        assert_eq!(exp(710.0), f64::INFINITY);
        for i in -2_000..2_000 {
            let x = i as f64 / 100.0;
            let (a, b) = (exp(x), x.exp());
            assert!((a - b).abs() <= b * 2.5e-16, "exp({x}) = {a}, libm {b}");
        }
    }
}
