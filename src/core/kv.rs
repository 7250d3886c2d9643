//! `KEY=VALUE` option syntax, shared by the CLI flags and the Lambda's
//! environment variables.

/// `KEY=VALUE` with a non-empty key and value.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE with non-empty key and value, got {s:?}"
        )),
    }
}

/// A comma-separated list of `KEY=VALUE` (blank items ignored).
pub fn parse_kv_list(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_kv)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_lists() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("=b").is_err() && parse_kv("a=").is_err() && parse_kv("a").is_err());
        assert_eq!(
            parse_kv_list(" env=ci, ,team=perf "),
            Ok(vec![
                ("env".into(), "ci".into()),
                ("team".into(), "perf".into())
            ])
        );
        assert!(parse_kv_list("a=1,b").is_err());
    }
}
