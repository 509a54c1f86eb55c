//! Could a change in a count be chance? The comparison of two Poisson rates by the exact
//! conditional (binomial) test: given `a` events over exposure `ea` and `b` over `eb`, under
//! "same rate" the `n = a + b` events fall in the first set with probability `ea / (ea + eb)`,
//! so `a` is Binomial(n, that). Written here (no statistics crate is in the allowed package
//! lists); checked against R's `binom.test` / `poisson.test` values in the tests below.

/// Above this many events the binomial is replaced by its normal approximation (with
/// continuity correction): the exact sum walks every outcome.
const EXACT_MAX: u64 = 200_000;

/// The outcome of comparing two counts with their exposures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateTest {
    /// Two-sided p-value of "the two rates are the same".
    pub p_two_sided: f64,
    /// One-sided p-value of "the second rate is not higher" (small: it went up).
    pub p_up: f64,
    /// One-sided p-value of "the second rate is not lower" (small: it went down).
    pub p_down: f64,
}

/// Compares `a` events over exposure `ea` (the first set) with `b` over `eb` (the second).
/// Exposures must be positive and finite; otherwise nothing can be said (all p-values 1).
pub fn compare_rates(a: u64, ea: f64, b: u64, eb: f64) -> RateTest {
    let none = RateTest {
        p_two_sided: 1.0,
        p_up: 1.0,
        p_down: 1.0,
    };
    let valid = |e: f64| e.is_finite() && e > 0.0;
    let Some(n) = a.checked_add(b) else {
        return none;
    };
    if !valid(ea) || !valid(eb) || n == 0 {
        return none;
    }
    let p = ea / (ea + eb);
    if n > EXACT_MAX {
        return normal(a, n, p);
    }
    // Probabilities of every outcome k of the first set, in log space (no overflow).
    let ln_choose = |k: u64| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let pmf = |k: u64| {
        let lk = ln_choose(k) + term(k, lp) + term(n - k, lq);
        lk.exp()
    };
    let observed = pmf(a);
    let (mut two, mut le, mut ge) = (0.0, 0.0, 0.0);
    for k in 0..=n {
        let pk = pmf(k);
        // The relative slack is R's: outcomes as likely as the observed one count as extreme.
        if pk <= observed * (1.0 + 1e-7) {
            two += pk;
        }
        if k <= a {
            le += pk;
        }
        if k >= a {
            ge += pk;
        }
    }
    RateTest {
        p_two_sided: two.min(1.0),
        // Few in the first set (k ≤ a) is the second set's rate being high.
        p_up: le.min(1.0),
        p_down: ge.min(1.0),
    }
}

/// `k · ln p`, with 0 · ln 0 = 0.
fn term(k: u64, lp: f64) -> f64 {
    if k == 0 {
        0.0
    } else {
        k as f64 * lp
    }
}

/// The normal approximation of Binomial(n, p) at `a`, with continuity correction.
fn normal(a: u64, n: u64, p: f64) -> RateTest {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    if sd <= 0.0 {
        return RateTest {
            p_two_sided: 1.0,
            p_up: 1.0,
            p_down: 1.0,
        };
    }
    let cdf = |x: f64| 0.5 * erfc(-(x - mean) / (sd * std::f64::consts::SQRT_2));
    let le = cdf(a as f64 + 0.5);
    let ge = 1.0 - cdf(a as f64 - 0.5);
    RateTest {
        p_two_sided: (2.0 * le.min(ge)).min(1.0),
        p_up: le,
        p_down: ge,
    }
}

/// ln(n!) by the log-gamma function.
fn ln_factorial(n: u64) -> f64 {
    ln_gamma(n as f64 + 1.0)
}

/// ln Γ(x) for x > 0: Lanczos (g = 7, 9 terms), about 15 significant digits.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The complementary error function (Numerical Recipes' erfcc, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0_f64;
        for n in 1..30u32 {
            f *= f64::from(n);
            assert!(close(ln_factorial(u64::from(n)), f.ln(), 1e-12), "{n}");
        }
        // Γ(1/2) = √π.
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
    }

    #[test]
    fn four_against_none_in_equal_time_could_be_chance() {
        // R: binom.test(4, 4)$p.value = 0.125; one-sided 0.0625.
        let t = compare_rates(4, 1.0, 0, 1.0);
        assert!(close(t.p_two_sided, 0.125, 1e-9), "{t:?}");
        assert!(close(t.p_down, 0.0625, 1e-9), "{t:?}");
        assert!(close(t.p_up, 1.0, 1e-9), "{t:?}");
        // Mirrored.
        let m = compare_rates(0, 1.0, 4, 1.0);
        assert!(close(m.p_up, 0.0625, 1e-9) && close(m.p_two_sided, 0.125, 1e-9));
    }

    #[test]
    fn matches_r_binom_test_values() {
        // R: binom.test(10, 35)$p.value = 0.01667 (two-sided, p = 0.5).
        let t = compare_rates(10, 2.0, 25, 2.0);
        assert!(close(t.p_two_sided, 0.016_673_8, 1e-4), "{t:?}");
        // R: binom.test(3, 20, p = 0.25)$p.value = 0.4394 (unequal exposures 1:3), and the
        // one-sided pbinom(3, 20, 0.25) = 0.2252.
        let u = compare_rates(3, 1.0, 17, 3.0);
        assert!(close(u.p_two_sided, 0.439_4, 1e-3), "{u:?}");
        assert!(close(u.p_up, 0.225_2, 1e-3), "{u:?}");
    }

    #[test]
    fn the_same_counts_over_the_same_exposure_are_no_change() {
        for n in [0u64, 1, 7, 1000] {
            let t = compare_rates(n, 3.5, n, 3.5);
            assert!(t.p_two_sided > 0.99, "{n}: {t:?}");
        }
    }

    #[test]
    fn large_counts_use_the_normal_approximation_consistently() {
        // Just below and above the switch give about the same answer.
        let exact = compare_rates(100_000, 1.0, 100_000 - 1_000, 1.0);
        let approx = compare_rates(101_000, 1.0, 100_000, 1.0);
        assert!(exact.p_down < 0.05 && approx.p_down < 0.05);
        let same = compare_rates(150_000, 1.0, 150_000, 1.0);
        assert!(same.p_two_sided > 0.99, "{same:?}");
        // 1% more in ten times the exposure is far from chance at this size.
        let big = compare_rates(1_000_000, 1.0, 10_100_000, 10.0);
        assert!(big.p_up < 1e-6, "{big:?}");
    }

    #[test]
    fn no_exposure_says_nothing() {
        assert_eq!(compare_rates(5, 0.0, 1, 1.0).p_two_sided, 1.0);
        assert_eq!(compare_rates(5, f64::NAN, 1, 1.0).p_up, 1.0);
        assert_eq!(compare_rates(u64::MAX, 1.0, 1, 1.0).p_up, 1.0);
    }
}
