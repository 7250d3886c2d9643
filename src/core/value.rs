//! Measure values as text: one formatting rule for every sink, so a
//! re-processed file gives the same bytes (a resend is a duplicate, not a
//! conflict).

use crate::core::model::limits::MAX_MEASURE_VALUE_CHARS;

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

/// Significant digits a float64 can carry: any decimal of more digits
/// reads back as a float64 that a 17-digit decimal also names.
pub const MAX_SIGNIFICANT_DIGITS: usize = 17;

/// The measure value text of a finite sample `v`.
///
/// `text` is the decimal the input printed, canonical (k6 CSV's `%f` text
/// without trailing fractional zeros, see [`crate::core::k6::csv`]); it is
/// written as it is, so what Timestream stores is what k6 printed, not a
/// float's re-rendering (`%f` prints 0.1 + 0.2 as `0.300000`: written `0.3`,
/// not `0.30000000000000004`). Two cases fall back to [`format_value`]:
///
/// * more than 17 significant digits: Go's `%f` prints a large float's
///   exact binary expansion (`1e23` as `99999999999999991611392`); digits
///   past the 17th are no measurement, and the shortest round-trip text
///   names the same float64;
/// * text that is not a plain decimal or is longer than a measure value may
///   be (2048 characters; only a hand-made file can get there).
///
/// Either way the text is a valid DOUBLE for Timestream and reads back as
/// `v`. Without `text` (JSON input): [`format_value`].
#[inline]
pub fn measure_text(v: f64, text: Option<&str>) -> String {
    match text {
        Some(t) if keeps_text(t) => t.to_owned(),
        _ => format_value(v),
    }
}

/// `-?digits(.digits)?`, at most 17 significant digits and 2048 bytes.
fn keeps_text(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() > MAX_MEASURE_VALUE_CHARS {
        return false;
    }
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let (int, frac) = match digits.iter().position(|&c| c == b'.') {
        Some(d) => (&digits[..d], &digits[d + 1..]),
        None => (digits, &digits[..0]),
    };
    if int.is_empty()
        || (frac.is_empty() && digits.len() != int.len())
        || !int.iter().chain(frac).all(u8::is_ascii_digit)
    {
        return false;
    }
    let all = || int.iter().chain(frac);
    let Some(first) = all().position(|&c| c != b'0') else {
        return true; // zero
    };
    let last = int.len() + frac.len() - all().rev().position(|&c| c != b'0').unwrap_or(0);
    last - first <= MAX_SIGNIFICANT_DIGITS
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

    #[test]
    fn input_text_is_kept_up_to_17_significant_digits() {
        for t in [
            "0",
            "0.3",
            "-1.25",
            "0.007812",
            "9007199254740994",
            "1500000000000000000000",
            "12345678901.123456",
            "-0.000001",
        ] {
            assert_eq!(measure_text(t.parse().unwrap(), Some(t)), t);
        }
        // 23 significant digits: %f of 1e23.
        assert_eq!(
            measure_text(1e23, Some("99999999999999991611392")),
            "100000000000000000000000"
        );
        // 19 significant digits.
        let t = "1234567890123.123456";
        let v: f64 = t.parse().unwrap();
        let out = measure_text(v, Some(t));
        assert_eq!(out, format_value(v));
        assert_eq!(out.parse::<f64>().unwrap(), v);
        // %f of f64::MAX: its 309-digit exact expansion.
        let max = format!("{:.0}", f64::MAX);
        assert_eq!(measure_text(f64::MAX, Some(&max)), format_value(f64::MAX));
        // No text: JSON's rule.
        assert_eq!(measure_text(0.1 + 0.2, None), "0.30000000000000004");
    }

    #[test]
    fn unusable_text_falls_back() {
        let long = format!("0.{}1", "0".repeat(3000));
        for t in [
            "",
            "-",
            ".5",
            "1.",
            "1e5",
            "+1",
            "1.2.3",
            "--1",
            long.as_str(),
        ] {
            assert_eq!(measure_text(2.5, Some(t)), "2.5", "{t:?}");
        }
    }
}
