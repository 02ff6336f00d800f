//! The Mann–Whitney U test, one-sided, on the per-run values of a metric.
//!
//! Why this test: runs of a benchmark are few (3–10 a side), their distribution is unknown and often skewed (one
//! run hit a busy second), so a rank test that assumes nothing about the shape is the honest choice. Small samples
//! get the exact permutation distribution of U (exact also with ties, because it permutes the mid-ranks actually
//! observed); larger ones the normal approximation with the tie correction and a continuity correction.

use serde::Serialize;

/// Up to this many arrangements of the pooled runs the exact distribution is enumerated (C(20,10) = 184,756).
const EXACT_LIMIT: u64 = 200_000;

/// The outcome of a one-sided test that the candidate's values are larger than the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    /// `Mann–Whitney U`.
    pub test: &'static str,
    /// `exact` or `normal approximation`.
    pub method: &'static str,
    /// U of the candidate: the number of (baseline, candidate) pairs in which the candidate is larger (ties count
    /// one half).
    pub u: f64,
    /// One-sided p-value: the chance of a U at least this large if both sides came from one distribution.
    pub p: f64,
    /// The smallest p-value these sample sizes can give (the test cannot detect anything when it is above alpha).
    pub min_p: f64,
}

/// One-sided Mann–Whitney U test of "candidate > baseline". None when a side is empty.
pub fn mann_whitney_greater(baseline: &[f64], candidate: &[f64]) -> Option<TestResult> {
    let (m, n) = (baseline.len(), candidate.len());
    if m == 0 || n == 0 {
        return None;
    }
    let ranks = midranks(baseline, candidate);
    let cand_ranks = &ranks[m..];
    let rank_sum: f64 = cand_ranks.iter().sum();
    let u = rank_sum - (n * (n + 1)) as f64 / 2.0;
    let total = binomial(m + n, n);
    let min_p = 1.0 / total as f64;
    if total <= EXACT_LIMIT {
        // Every way of choosing which n of the pooled ranks are the candidate's is equally likely under the null.
        let (mut at_least, mut all) = (0u64, 0u64);
        let threshold = rank_sum - 1e-9;
        for_each_subset_sum(&ranks, n, &mut |s| {
            all += 1;
            if s >= threshold {
                at_least += 1;
            }
        });
        return Some(TestResult {
            test: "Mann–Whitney U",
            method: "exact",
            u,
            p: at_least as f64 / all as f64,
            min_p,
        });
    }
    let (mf, nf) = (m as f64, n as f64);
    let big_n = mf + nf;
    let mean = mf * nf / 2.0;
    let ties = tie_term(&ranks);
    let var = mf * nf / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)));
    let p = if var <= 0.0 {
        // Every value equal: no evidence either way.
        1.0
    } else {
        let z = (u - mean - 0.5) / var.sqrt();
        upper_normal_tail(z)
    };
    Some(TestResult {
        test: "Mann–Whitney U",
        method: "normal approximation",
        u,
        p,
        min_p,
    })
}

/// Mid-ranks (1-based, ties get the mean of their ranks) of baseline followed by candidate.
fn midranks(a: &[f64], b: &[f64]) -> Vec<f64> {
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let mut order: Vec<usize> = (0..pooled.len()).collect();
    order.sort_by(|&i, &j| pooled[i].total_cmp(&pooled[j]));
    let mut ranks = vec![0.0; pooled.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && pooled[order[j + 1]] == pooled[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Σ (t³ − t) over groups of tied ranks.
fn tie_term(ranks: &[f64]) -> f64 {
    let mut sorted = ranks.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        sum += t * t * t - t;
        i = j + 1;
    }
    sum
}

fn binomial(n: usize, k: usize) -> u64 {
    let k = k.min(n - k);
    let mut r: u64 = 1;
    for i in 0..k {
        // Exact at every step: r * (n - i) is divisible by (i + 1).
        r = r.saturating_mul((n - i) as u64) / (i as u64 + 1);
    }
    r
}

/// Calls `f` with the sum of every k-element subset of `values`.
fn for_each_subset_sum(values: &[f64], k: usize, f: &mut dyn FnMut(f64)) {
    fn go(values: &[f64], start: usize, k: usize, acc: f64, f: &mut dyn FnMut(f64)) {
        if k == 0 {
            f(acc);
            return;
        }
        for i in start..=values.len() - k {
            go(values, i + 1, k - 1, acc + values[i], f);
        }
    }
    go(values, 0, k, 0.0, f);
}

/// P(Z ≥ z) for a standard normal Z.
pub fn upper_normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn five_against_five_fully_separated_is_one_in_252() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        let r = mann_whitney_greater(&a, &b).unwrap();
        assert_eq!(r.method, "exact");
        assert_eq!(r.u, 25.0);
        assert!((r.p - 1.0 / 252.0).abs() < 1e-12, "{}", r.p);
        assert!((r.min_p - 1.0 / 252.0).abs() < 1e-12);
        // The other direction is as unlikely as it gets.
        let r = mann_whitney_greater(&b, &a).unwrap();
        assert_eq!((r.u, r.p), (0.0, 1.0));
    }

    #[test]
    fn exact_p_matches_published_tables() {
        // m = n = 4, U = 14 of 16: P(U ≥ 14) = 4/70 (counts 1, 1, 2 for U = 16, 15, 14).
        let a = [1.0, 2.0, 3.0, 6.0];
        let b = [4.0, 5.0, 7.0, 8.0];
        let r = mann_whitney_greater(&a, &b).unwrap();
        assert_eq!(r.u, 14.0);
        assert!((r.p - 4.0 / 70.0).abs() < 1e-12, "{}", r.p);
        // m = 3, n = 5: P(U ≥ 14) = 2/56 (counts 1, 1 for U = 15, 14).
        let r = mann_whitney_greater(&[1.0, 2.0, 4.0], &[3.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(r.u, 14.0);
        assert!((r.p - 2.0 / 56.0).abs() < 1e-12, "{}", r.p);
    }

    #[test]
    fn all_ties_give_no_evidence() {
        let r = mann_whitney_greater(&[0.0; 5], &[0.0; 5]).unwrap();
        assert_eq!(r.u, 12.5);
        assert_eq!(r.p, 1.0);
        let r = mann_whitney_greater(&[0.0; 30], &[0.0; 30]).unwrap();
        assert_eq!(r.method, "normal approximation");
        assert_eq!(r.p, 1.0);
    }

    #[test]
    fn normal_approximation_is_close_to_the_exact_value_where_both_apply() {
        // 10 v 10 is still exact; compare with the approximation computed by hand.
        let a: Vec<f64> = (0..10).map(|i| i as f64 * 2.0).collect();
        let b: Vec<f64> = (0..10).map(|i| i as f64 * 2.0 + 3.0).collect();
        let exact = mann_whitney_greater(&a, &b).unwrap();
        let (mean, sd) = (50.0, (100.0f64 * 21.0 / 12.0).sqrt());
        let approx = upper_normal_tail((exact.u - mean - 0.5) / sd);
        assert!((exact.p - approx).abs() < 0.01, "exact {} approx {approx}", exact.p);
        // 25 v 25 uses the approximation.
        let a: Vec<f64> = (0..25).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..25).map(|i| i as f64 + 10.0).collect();
        let r = mann_whitney_greater(&a, &b).unwrap();
        assert_eq!(r.method, "normal approximation");
        assert!(r.p < 0.01 && r.p > 1e-6, "{}", r.p);
    }

    #[test]
    fn normal_tail_known_values() {
        assert!((upper_normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_normal_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((upper_normal_tail(-1.644_854) - 0.95).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn p_is_a_probability_and_u_is_in_range(
            a in proptest::collection::vec(0u8..6, 1..7),
            b in proptest::collection::vec(0u8..6, 1..7),
        ) {
            let a: Vec<f64> = a.into_iter().map(f64::from).collect();
            let b: Vec<f64> = b.into_iter().map(f64::from).collect();
            let r = mann_whitney_greater(&a, &b).unwrap();
            prop_assert!(r.p > 0.0 && r.p <= 1.0);
            prop_assert!(r.u >= 0.0 && r.u <= (a.len() * b.len()) as f64);
            // U counts the pairs directly.
            let pairs: f64 = a.iter().flat_map(|x| b.iter().map(move |y| if y > x { 1.0 } else if y == x { 0.5 } else { 0.0 })).sum();
            prop_assert!((r.u - pairs).abs() < 1e-9);
            // Shifting the candidate up never raises p.
            let up: Vec<f64> = b.iter().map(|y| y + 10.0).collect();
            prop_assert!(mann_whitney_greater(&a, &up).unwrap().p <= r.p + 1e-12);
        }
    }
}
