//! Live mode of `ingest`: when requests are cut by time as well as by size
//! (`--flush-interval`), so that points of a running k6 reach the sink
//! within about the interval (plus one request) of k6 writing them:
//!
//! ```text
//! k6 run --out json=/dev/stdout script.js | k6-timestream ingest --database D --table T -
//! ```
//!
//! On by default for a pipe (stdin or a named pipe, not a regular file
//! redirected to stdin), with a 1 s interval; `--flush-interval` sets it
//! for any input. Files keep batching that depends on their bytes alone.

use std::time::Duration;

pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// `500ms`, `2s`, `1.5` (seconds), `0.25s`; 1 ms to 1 h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 1s or 500ms, got {s:?}"))?;
    let secs = v * scale;
    if !(0.001..=3600.0).contains(&secs) {
        return Err(format!("expected 1ms to 1h, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The interval in effect for `input`: the explicit one, else the default
/// when the input is a pipe.
pub fn flush_interval(input: &str, explicit: Option<Duration>) -> Option<Duration> {
    explicit.or_else(|| is_pipe(input).then_some(DEFAULT_FLUSH_INTERVAL))
}

/// Stdin or a path that is not a regular file (a FIFO, a character
/// device, a socket). `k6-timestream ingest - < file.json` stays a file.
fn is_pipe(input: &str) -> bool {
    if input.starts_with("s3://") {
        return false;
    }
    let path = if input == "-" { "/dev/stdin" } else { input };
    match std::fs::metadata(path) {
        Ok(m) => !m.is_file(),
        // No /dev/stdin (not Linux or macOS): assume a pipe for `-`.
        Err(_) => input == "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("2h").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn files_are_not_live_unless_asked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("run.json");
        std::fs::write(&f, b"{}\n").unwrap();
        let f = f.to_str().unwrap();
        assert_eq!(flush_interval(f, None), None);
        let two = Some(Duration::from_secs(2));
        assert_eq!(flush_interval(f, two), two);
        assert_eq!(flush_interval("s3://b/k.json", None), None);
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            flush_interval(fifo.to_str().unwrap(), None),
            Some(DEFAULT_FLUSH_INTERVAL)
        );
    }
}
