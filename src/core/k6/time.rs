//! Exact RFC 3339 → integer nanoseconds since the Unix epoch.
//!
//! k6 writes `data.time` with Go's `time.RFC3339Nano` in the machine's local
//! zone: 0–9 fractional digits (trailing zeros trimmed) and `Z` or `±HH:MM`.
//! Floating point is never involved: the date is turned into a day number with
//! integer civil-calendar arithmetic and every component is added as integer
//! nanoseconds, so the same text always yields the same instant, to the ns.

use std::fmt;

/// Why a timestamp could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS[.fffffffff](Z|±HH:MM)`.
    Syntax,
    /// A field is out of its range (month 13, 31 February, hour 24, …).
    Range,
    /// A valid timestamp whose instant does not fit `i64` nanoseconds
    /// (before 1677-09-21 or after 2262-04-11).
    Overflow,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeError::Syntax => "not an RFC 3339 timestamp",
            TimeError::Range => "RFC 3339 field out of range",
            TimeError::Overflow => "timestamp outside the i64 nanosecond range",
        })
    }
}

const NS_PER_SEC: i128 = 1_000_000_000;

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 timestamp into nanoseconds since the epoch.
///
/// Accepts `T`/`t` (or a space) between date and time, `Z`/`z` or a numeric
/// offset, and 0–9 fractional digits. More than 9 digits would need rounding
/// and is refused rather than silently altered; leap seconds (`:60`) are
/// refused because the epoch scale has no place for them.
pub fn parse_rfc3339_ns(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(TimeError::Syntax);
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(TimeError::Syntax);
    }
    let year = digits(&b[0..4]).ok_or(TimeError::Syntax)?;
    let month = digits(&b[5..7]).ok_or(TimeError::Syntax)?;
    let day = digits(&b[8..10]).ok_or(TimeError::Syntax)?;
    let hour = digits(&b[11..13]).ok_or(TimeError::Syntax)?;
    let min = digits(&b[14..16]).ok_or(TimeError::Syntax)?;
    let sec = digits(&b[17..19]).ok_or(TimeError::Syntax)?;
    let mut i = 19;
    let mut frac_ns: i128 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return Err(TimeError::Syntax);
        }
        let f = i128::from(digits(&b[start..i]).ok_or(TimeError::Syntax)?);
        frac_ns = f * 10i128.pow((9 - n) as u32);
    }
    let offset_secs: i128 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(&b[i + 1..i + 3]).ok_or(TimeError::Syntax)?;
            let om = digits(&b[i + 4..i + 6]).ok_or(TimeError::Syntax)?;
            if oh > 23 || om > 59 {
                return Err(TimeError::Range);
            }
            let o = i128::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(TimeError::Syntax),
    };
    let y = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(y, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return Err(TimeError::Range);
    }
    let days = i128::from(days_from_civil(y, month, day));
    let secs = days * 86_400 + i128::from(hour * 3600 + min * 60 + sec) - offset_secs;
    let ns = secs * NS_PER_SEC + frac_ns;
    i64::try_from(ns).map_err(|_| TimeError::Overflow)
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with 9 fractional digits
/// (used for reports and tests; the inverse of [`parse_rfc3339_ns`]).
pub fn format_rfc3339_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days (Hinnant)
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00.000000001Z"), Ok(1));
        assert_eq!(parse_rfc3339_ns("1970-01-01T05:30:00+05:30"), Ok(0));
        assert_eq!(parse_rfc3339_ns("1969-12-31T17:00:00-07:00"), Ok(0));
        // k6 output, local time in India.
        assert_eq!(
            parse_rfc3339_ns("2024-03-01T17:04:05.123456789+05:30"),
            Ok(1_709_292_845_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-03-01T11:34:05.1234Z"),
            Ok(1_709_292_845_123_400_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2000-02-29T00:00:00Z"),
            Ok(951_782_400_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-03-01t11:34:05z"),
            Ok(1_709_292_845_000_000_000)
        );
    }

    #[test]
    fn rejects_bad_text() {
        for s in [
            "",
            "2024-03-01",
            "2024-03-01T11:34:05",
            "2024-03-01T11:34:05.Z",
            "2024-03-01T11:34:05.1234567891Z",
            "2024-03-01T11:34:05+0530",
            "2024-03-01T11:34:05+05:30x",
            "2024-03-01T11:34:5Z",
            "20x4-03-01T11:34:05Z",
        ] {
            assert_eq!(parse_rfc3339_ns(s), Err(TimeError::Syntax), "{s}");
        }
        for s in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T23:59:59+24:00",
        ] {
            assert_eq!(parse_rfc3339_ns(s), Err(TimeError::Range), "{s}");
        }
        assert_eq!(
            parse_rfc3339_ns("9999-01-01T00:00:00Z"),
            Err(TimeError::Overflow)
        );
    }

    proptest! {
        /// Formatting any i64 instant and parsing it back is the identity.
        #[test]
        fn roundtrip_utc(ns in any::<i64>()) {
            prop_assert_eq!(parse_rfc3339_ns(&format_rfc3339_ns(ns)), Ok(ns));
        }

        /// The same instant written with any offset and any number of
        /// fractional digits (trailing zeros trimmed as Go does) parses to the
        /// same nanosecond.
        #[test]
        fn offsets_and_precision(ns in -5_000_000_000_000_000_000i64..9_000_000_000_000_000_000i64,
                                 off_min in -1439i64..=1439i64,
                                 trim in 0usize..=9) {
            // Drop `trim` low digits so the text has 9-trim digits.
            let p = 10i64.pow(trim as u32);
            let ns = ns - ns.rem_euclid(p);
            let local = ns + off_min * 60_000_000_000;
            let utc = format_rfc3339_ns(local);
            let (head, frac) = utc[..utc.len() - 1].split_once('.').unwrap();
            let frac = &frac[..9 - trim];
            let sign = if off_min < 0 { '-' } else { '+' };
            let a = off_min.abs();
            let text = if frac.is_empty() {
                format!("{head}{sign}{:02}:{:02}", a / 60, a % 60)
            } else {
                format!("{head}.{frac}{sign}{:02}:{:02}", a / 60, a % 60)
            };
            prop_assert_eq!(parse_rfc3339_ns(&text), Ok(ns), "{}", text);
        }

        /// Arbitrary text never panics.
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_rfc3339_ns(&s);
        }
    }
}
