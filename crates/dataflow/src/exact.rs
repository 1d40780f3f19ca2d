//! Exact floating-point summation (Shewchuk's algorithm, as Python's `math.fsum`).
//!
//! Series are sums of contributions added and retracted in any order; summing them exactly
//! makes the result independent of that order (so any worker count and any arrival order
//! give bit-identical values) and makes a retraction cancel its contribution to exactly 0.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// An exact sum of `f64`s, kept as non-overlapping partials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    partials: SmallVec<[f64; 2]>,
}

/// `a + b` as the rounded sum and its rounding error (the fast two-sum, larger magnitude
/// first): for finite inputs `hi + lo` is `a + b` exactly, so `lo == 0.0` says the `f64`
/// sum is exact.
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let (big, small) = if a.abs() < b.abs() { (b, a) } else { (a, b) };
    let hi = big + small;
    (hi, small - (hi - big))
}

impl ExactSum {
    /// Adds `x` exactly.
    pub fn add(&mut self, x: f64) {
        // Most sums are one partial or none: the loop below, unrolled for them.
        match self.partials.as_mut_slice() {
            [] => {
                if x != 0.0 {
                    self.partials.push(x);
                }
            }
            [y] => {
                let (hi, lo) = two_sum(x, *y);
                if lo != 0.0 {
                    *y = lo;
                    self.partials.push(hi);
                } else if hi != 0.0 {
                    *y = hi;
                } else {
                    self.partials.clear();
                }
            }
            _ => self.add_any(x),
        }
    }

    /// Adds `x` to a sum of any number of partials.
    fn add_any(&mut self, mut x: f64) {
        let mut i = 0;
        for j in 0..self.partials.len() {
            let (hi, lo) = two_sum(x, self.partials[j]);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        self.partials.truncate(i);
        if x != 0.0 || !x.is_finite() {
            self.partials.push(x);
        }
    }

    /// Adds another exact sum.
    pub fn add_sum(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
    }

    /// Subtracts another exact sum.
    pub fn sub_sum(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(-p);
        }
    }

    /// Whether the sum is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.partials.iter().all(|p| *p == 0.0)
    }

    /// The partials (their sum is the exact value).
    pub fn partials(&self) -> &[f64] {
        &self.partials
    }

    /// The correctly rounded value.
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(&last) = p.last() else { return 0.0 };
        let mut n = p.len() - 1;
        let mut hi = last;
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_exactly_in_any_order() {
        let xs = [0.1, 1e16, 0.7, -1e16, 3.3, 1e-9, 48_000_000.5];
        let mut a = ExactSum::default();
        for x in xs {
            a.add(x);
        }
        let mut b = ExactSum::default();
        for x in xs.iter().rev() {
            b.add(*x);
        }
        assert_eq!(a.value(), b.value());
        assert_eq!(a.value(), 0.1 + 0.7 + 3.3 + 1e-9 + 48_000_000.5);
        for x in xs {
            a.add(-x);
        }
        assert!(a.is_zero());
        assert_eq!(a.value(), 0.0);
    }

    /// The unrolled cases give the partials, bit for bit, the general loop gives.
    #[test]
    fn the_short_cases_match_the_general_loop() {
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e16,
            -1e16,
            1e-300,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pick = seed % 16;
            match specials.get(pick as usize) {
                Some(x) => *x,
                None => {
                    ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                        * 10f64.powi((seed % 40) as i32 - 20)
                }
            }
        };
        for _ in 0..20_000 {
            let (mut fast, mut general) = (ExactSum::default(), ExactSum::default());
            for _ in 0..4 {
                let x = next();
                fast.add(x);
                general.add_any(x);
                let bits =
                    |s: &ExactSum| s.partials.iter().map(|p| p.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&general), "after adding {x}");
            }
        }
    }

    #[test]
    fn is_correctly_rounded() {
        let mut s = ExactSum::default();
        for _ in 0..10 {
            s.add(0.1);
        }
        assert_eq!(s.value(), 1.0);
        let mut t = ExactSum::default();
        t.add(1.0);
        t.add(1e-30);
        t.add(-1.0);
        assert_eq!(t.value(), 1e-30);
    }
}
