//! Measure values as text: one formatting rule for every sink, so a
//! re-processed file gives the same bytes (a resend is a duplicate, not a
//! conflict).

/// Deterministic shortest round-trip text of a finite f64: exactly what
/// `format!("{v}")` prints (the shortest digits that round-trip, without
/// exponent), except that `-0` is `0`.
///
/// Most k6 values are short decimals (`1`, `104`, `0.056926`), which
/// [`short_decimal`] formats without the `core::fmt` float machinery (a
/// visible share of the converter's time); everything else goes through
/// `format!`.
pub fn format_value(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    if let Some(s) = short_decimal(v) {
        return s;
    }
    // `{}` prints the shortest digits that round-trip, without exponent.
    format!("{v}")
}

/// 10^0 ..= 10^15, all exact in f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Integer significands of [`short_decimal`] stay below this (15 digits).
const MAX_SIGNIFICAND: f64 = 1e15;

/// `v` as `m / 10^k` with the fewest fraction digits `k ≤ 15` and an
/// integer `m < 10^15`, when there is such a decimal that parses back to
/// exactly `v`; `None` otherwise (and for zero, NaN and infinities).
///
/// Why the text equals `format!("{v}")`:
/// - `m` (< 2^53) and `10^k` (k ≤ 22) are exact doubles, so `m / 10^k` is
///   one correctly rounded division: the double nearest to the decimal
///   `m·10^-k`, i.e. what parsing that decimal gives. The check
///   `m / 10^k == |v|` therefore proves that the decimal round-trips.
/// - Any two different decimals of at most 15 significant digits parse to
///   different doubles (15 = f64's guaranteed decimal digits, DBL_DIG; it
///   holds in the normal range, and `|v| ≥ 10^-15` here). `{}` prints the
///   shortest round-tripping digits, which are at most as many as ours, so
///   they are the same number, printed positionally as below.
/// - A trailing zero of the fraction would mean a shorter `k` worked too;
///   it is stripped all the same, so the text is minimal either way.
///
/// The property tests compare it with `format!` on arbitrary doubles and on
/// generated short decimals.
fn short_decimal(v: f64) -> Option<String> {
    let a = v.abs();
    if !a.is_finite() || a == 0.0 {
        return None;
    }
    for (k, &p) in POW10.iter().enumerate() {
        let scaled = a * p;
        if scaled >= MAX_SIGNIFICAND {
            return None;
        }
        let m = scaled.round();
        if m / p == a {
            // `m` is a non-negative integer below 10^15: exact as u64.
            return Some(positional(v.is_sign_negative(), m as u64, k));
        }
    }
    None
}

/// `[-]m·10^-k` positionally: `104`, `0.056926`, `-1.5`, `0.0000001`.
fn positional(negative: bool, mut m: u64, mut k: usize) -> String {
    while k > 0 && m.is_multiple_of(10) {
        m /= 10;
        k -= 1;
    }
    // Digits of `m` right to left, with leading zeros up to `k + 1` digits
    // (so that there is at least one digit before the point).
    let mut digits = [0u8; 20];
    let mut n = 0;
    while m > 0 || n <= k {
        digits[n] = b'0' + (m % 10) as u8;
        m /= 10;
        n += 1;
    }
    let mut s = String::with_capacity(n + 2);
    if negative {
        s.push('-');
    }
    for i in (0..n).rev() {
        s.push(char::from(digits[i]));
        if i == k && k > 0 {
            s.push('.');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule `format_value` must follow, spelled the slow way.
    fn reference(v: f64) -> String {
        let s = format!("{v}");
        if s == "-0" {
            "0".to_owned()
        } else {
            s
        }
    }

    #[test]
    fn known_values() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (104.0, "104"),
            (0.056926, "0.056926"),
            (-1.5, "-1.5"),
            (1e-7, "0.0000001"),
            (1e-15, "0.000000000000001"),
            (0.1 + 0.2, "0.30000000000000004"),
            (999_999_999_999_999.0, "999999999999999"),
            (1e15, "1000000000000000"),
            (1e21, "1000000000000000000000"),
            (12.345678901234567, "12.345678901234567"),
        ] {
            assert_eq!(format_value(v), want, "{v:e}");
            assert_eq!(format_value(v), reference(v), "{v:e}");
        }
        for v in [
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            2f64.powi(53) + 2.0,
        ] {
            assert_eq!(format_value(v), reference(v), "{v:e}");
        }
    }

    #[test]
    fn short_path_covers_typical_k6_values() {
        for v in [
            1.0, 104.0, 0.056926, 1.063294, 3.761902, 0.5, 1e-7, 123456.789,
        ] {
            assert!(short_decimal(v).is_some(), "{v}");
        }
        // 17 significant digits: the general path.
        assert!(short_decimal(0.1 + 0.2).is_none());
        assert!(short_decimal(1e15).is_none());
        assert!(short_decimal(f64::NAN).is_none());
        assert!(short_decimal(f64::INFINITY).is_none());
    }

    #[test]
    fn every_power_of_ten_and_neighbours() {
        for e in -30..=30 {
            let p: f64 = format!("1e{e}").parse().unwrap();
            for v in [p, p * 3.0, -p, f64::from_bits(p.to_bits() + 1)] {
                assert_eq!(format_value(v), reference(v), "{v:e}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn equals_format_on_any_double(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite());
            prop_assert_eq!(format_value(v), reference(v));
        }

        /// Decimals of up to 17 digits with the point anywhere (k6 writes
        /// values as such decimals): both sides of the 15-digit bound.
        #[test]
        fn equals_format_on_short_decimals(
            digits in "[0-9]{1,17}",
            point in 0usize..18,
            negative in any::<bool>(),
        ) {
            let point = point.min(digits.len());
            let text = format!(
                "{}{}.{}0",
                if negative { "-" } else { "" },
                &digits[..digits.len() - point],
                &digits[digits.len() - point..]
            );
            let text = text.replace("-.", "-0.");
            let text = if text.starts_with('.') { format!("0{text}") } else { text };
            let v: f64 = text.parse().unwrap();
            prop_assert_eq!(format_value(v), reference(v), "{}", text);
        }

        #[test]
        fn equals_format_on_integers(n in any::<i64>()) {
            let v = n as f64;
            prop_assert_eq!(format_value(v), reference(v));
        }
    }
}
