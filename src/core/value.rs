//! Measure values as text: one formatting rule for every sink, so a
//! re-processed file gives the same bytes (a resend is a duplicate, not a
//! conflict).

use crate::core::model::limits::MAX_MEASURE_VALUE_CHARS;

/// Deterministic shortest round-trip text of a finite f64.
pub fn format_value(v: f64) -> String {
    // `{}` prints the shortest digits that round-trip, without exponent.
    let mut s = format!("{v}");
    if s == "-0" {
        s = "0".to_owned();
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
