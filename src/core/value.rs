//! Measure values as text: one formatting rule for every sink, so a
//! re-processed file gives the same bytes (a resend is a duplicate, not a
//! conflict).

/// Deterministic shortest round-trip text of a finite f64.
pub fn format_value(v: f64) -> String {
    // `{}` prints the shortest digits that round-trip, without exponent.
    let mut s = format!("{v}");
    if s == "-0" {
        s = "0".to_owned();
    }
    s
}
