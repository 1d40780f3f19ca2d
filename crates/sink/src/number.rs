//! Numbers written into line protocol exactly as Rust's `Display` writes them, faster.
//!
//! `Display` gives the shortest digits that read back as the same `f64`, never in exponent
//! form (`1`, `0.1`, `0.0000001`, `1000000000000000000000`). Most fields of most points are
//! whole numbers (counts, amounts in yuan): below 2^53 such an `f64` is written as its
//! integer's digits, which are those shortest digits (every integer there is an `f64`, so
//! no shorter digits read back as it), without going through `core::fmt`. Other values go
//! through `Display` itself: Ryu's shortest digits differ from it where two are equally
//! close (it rounds such a tie to even, `Display` up).

use std::fmt::Write as _;

/// Appends `v` as `format!("{v}")` would.
pub fn push_f64(out: &mut String, v: f64) {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && v.abs() < EXACT_INTEGERS {
        if v == 0.0 && v.is_sign_negative() {
            out.push_str("-0");
        } else {
            out.push_str(itoa::Buffer::new().format(v as i64));
        }
        return;
    }
    let _ = write!(out, "{v}");
}

/// Appends an integer.
pub fn push_i64(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: f64) {
        let mut ours = String::new();
        push_f64(&mut ours, v);
        assert_eq!(ours, format!("{v}"), "bits {:#x}", v.to_bits());
    }

    /// Byte for byte what `Display` writes: hand-picked edges, random bit patterns over the
    /// whole range, and random decimals of the sizes points carry.
    #[test]
    fn writes_what_display_writes() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.3,
            1.5e-7,
            1e-5,
            1e-4,
            123.456,
            1e15,
            1e16,
            1e21,
            1e22,
            1e23,
            -1e300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            9_007_199_254_740_992.0,
            9_007_199_254_740_993.0,
            4_503_599_627_370_495.5,
            0.1 + 0.2,
            1.0 / 3.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            check(v);
        }
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300_000 {
            let r = next();
            check(f64::from_bits(r));
            // A decimal of a few digits scaled by a power of ten, as amounts and ratios are.
            let digits = (r >> 20) % 10_000_000;
            let scale = 10f64.powi((r % 40) as i32 - 20);
            check(digits as f64 * scale);
            check(digits as f64 / scale);
            check((r >> 11) as f64 / (1u64 << 53) as f64);
            // Whole numbers on both sides of 2^53, both signs.
            check((r >> 10) as f64);
            check(-((r >> 11) as f64));
            check((r >> 40) as f64 * if r & 1 == 0 { 1.0 } else { -1.0 });
        }
        let mut i = String::new();
        push_i64(&mut i, i64::MIN);
        assert_eq!(i, i64::MIN.to_string());
    }
}
