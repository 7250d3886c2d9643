//! Local file globs for `ingest 'runs/*.json.gz'` (a quoted pattern the
//! shell did not expand, or a shell without globbing). Dependency-free and
//! deliberately small, with the shell's rules:
//!
//! - `*` any run of characters, `?` one character, `[abc]`, `[a-z]`,
//!   `[!a-z]` / `[^a-z]` one character of (not of) a set; `\x` is `x`
//!   literally;
//! - within one path component: `*` never matches `/`, and a leading `.`
//!   is only matched by a pattern component that starts with `.` (hidden
//!   files stay hidden);
//! - a component that is exactly `**` matches any number of directories,
//!   none included (not descending into hidden ones);
//! - matches are regular files (and symlinks to them), sorted by path.
//!
//! Symlinked directories are not followed by `**` (no cycles).

use std::path::{Path, PathBuf};

/// Does `s` contain glob syntax (an unescaped `*`, `?` or `[`)?
pub fn is_pattern(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    Any,
    Star,
    /// (negated, ranges)
    Set(bool, Vec<(char, char)>),
}

fn tokens(pat: &str) -> Vec<Tok> {
    let cs: Vec<char> = pat.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '\\' if i + 1 < cs.len() => {
                out.push(Tok::Char(cs[i + 1]));
                i += 2;
                continue;
            }
            '*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::Any),
            '[' => {
                if let Some((set, next)) = parse_set(&cs, i) {
                    out.push(set);
                    i = next;
                    continue;
                }
                // No closing `]`: a literal `[`, as in the shell.
                out.push(Tok::Char('['));
            }
            c => out.push(Tok::Char(c)),
        }
        i += 1;
    }
    out
}

/// `[...]` starting at `cs[start]`; returns the set and the index after `]`.
fn parse_set(cs: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start + 1;
    let neg = matches!(cs.get(i), Some('!' | '^'));
    if neg {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *cs.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Set(neg, ranges), i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *cs.get(i)?
        } else {
            c
        };
        if cs.get(i + 1) == Some(&'-') && cs.get(i + 2).is_some_and(|&c| c != ']') {
            let hi = cs[i + 2];
            ranges.push((lo, hi));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Char(x) => *x == c,
        Tok::Any => true,
        Tok::Star => unreachable!("stars are handled by the matcher"),
        Tok::Set(neg, ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg,
    }
}

/// Does one path component `name` match the component pattern `pat`?
pub fn matches(pat: &str, name: &str) -> bool {
    let toks = tokens(pat);
    let cs: Vec<char> = name.chars().collect();
    if cs.first() == Some(&'.') && toks.first() != Some(&Tok::Char('.')) {
        return false;
    }
    // Linear-time wildcard matching: on a mismatch, let the last star take
    // one more character (runs of stars were collapsed by `tokens`).
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < cs.len() {
        match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(tok) if tok_matches(tok, cs[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    toks[t..].iter().all(|x| *x == Tok::Star)
}

#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    #[error("{pattern}: no files match")]
    NoMatch { pattern: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The files `pattern` matches, sorted. A pattern without glob syntax is
/// returned as it is (whether the file exists is for the caller to find).
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, GlobError> {
    if !is_pattern(pattern) {
        return Ok(vec![PathBuf::from(unescape(pattern))]);
    }
    let absolute = pattern.starts_with('/');
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let root = if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let mut found = Vec::new();
    walk(&root, &comps, &mut found)?;
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(GlobError::NoMatch {
            pattern: pattern.to_owned(),
        });
    }
    Ok(found)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

fn read_dir(dir: &Path) -> Result<Vec<(String, std::fs::FileType)>, GlobError> {
    let shown = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let io = |source| GlobError::Io {
        path: shown.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(shown).map_err(io)? {
        let e = e.map_err(io)?;
        // Names that are not UTF-8 cannot match a UTF-8 pattern anyway.
        if let Ok(name) = e.file_name().into_string() {
            out.push((name, e.file_type().map_err(io)?));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, comps: &[&str], found: &mut Vec<PathBuf>) -> Result<(), GlobError> {
    let Some((&first, rest)) = comps.split_first() else {
        if std::fs::metadata(dir).is_ok_and(|m| m.is_file()) {
            found.push(dir.to_path_buf());
        }
        return Ok(());
    };
    if first == "**" {
        // Zero directories, then each subdirectory (not hidden, not a link).
        walk(dir, rest, found)?;
        for (name, ty) in read_dir(dir)? {
            if ty.is_dir() && !name.starts_with('.') {
                walk(&dir.join(&name), comps, found)?;
            }
        }
        return Ok(());
    }
    if !is_pattern(first) {
        let next = dir.join(unescape(first));
        if rest.is_empty() || next.is_dir() {
            walk(&next, rest, found)?;
        }
        return Ok(());
    }
    if !dir.as_os_str().is_empty() && !dir.is_dir() {
        return Ok(());
    }
    for (name, _) in read_dir(dir)? {
        if matches(first, &name) {
            walk(&dir.join(&name), rest, found)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: the definition, by plain recursion over the tokens.
    fn reference(toks: &[Tok], name: &[char]) -> bool {
        match toks.split_first() {
            None => name.is_empty(),
            Some((Tok::Star, rest)) => (0..=name.len()).any(|k| reference(rest, &name[k..])),
            Some((t, rest)) => {
                !name.is_empty() && tok_matches(t, name[0]) && reference(rest, &name[1..])
            }
        }
    }

    #[test]
    fn shell_rules() {
        assert!(matches("*.json.gz", "run 1.json.gz"));
        assert!(!matches("*.json.gz", "run.json"));
        assert!(matches("run-?.json", "run-7.json"));
        assert!(!matches("run-?.json", "run-17.json"));
        assert!(matches("run-[0-9][!a-z].json", "run-1X.json"));
        assert!(!matches("run-[0-9][!a-z].json", "run-1x.json"));
        assert!(matches("[]x]", "]"), "a leading ] is a member");
        assert!(matches("a[", "a["), "an unclosed [ is literal");
        assert!(matches(r"a\*b", "a*b") && !matches(r"a\*b", "axb"));
        assert!(!matches("*", ".hidden"), "hidden files stay hidden");
        assert!(matches(".*", ".hidden"));
        assert!(matches("*", ""), "as a component matcher");
        assert!(is_pattern("runs/*.gz") && !is_pattern(r"runs/\*.gz") && !is_pattern("a.json"));
    }

    #[test]
    fn expands_against_a_tree() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in [
            "runs/a.json.gz",
            "runs/b.json.gz",
            "runs/c.txt",
            "runs/.hidden.json.gz",
            "runs/2024/d.json.gz",
            "runs/2024/deep/e.json.gz",
            "other/f.json.gz",
        ] {
            let path = p.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::create_dir_all(p.join("runs/dir.json.gz")).unwrap();
        let base = p.to_str().unwrap();
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|x| x.strip_prefix(p).unwrap().to_str().unwrap().to_owned())
                .collect()
        };
        let got = rel(expand(&format!("{base}/runs/*.json.gz")).unwrap());
        assert_eq!(
            got,
            ["runs/a.json.gz", "runs/b.json.gz"],
            "no dirs, no hidden"
        );
        let got = rel(expand(&format!("{base}/runs/**/*.json.gz")).unwrap());
        assert_eq!(
            got,
            [
                "runs/2024/d.json.gz",
                "runs/2024/deep/e.json.gz",
                "runs/a.json.gz",
                "runs/b.json.gz"
            ]
        );
        let got = rel(expand(&format!("{base}/*/?.json.gz")).unwrap());
        assert_eq!(got, ["other/f.json.gz", "runs/a.json.gz", "runs/b.json.gz"]);
        assert!(matches!(
            expand(&format!("{base}/runs/*.csv")),
            Err(GlobError::NoMatch { .. })
        ));
        assert_eq!(
            expand("plain name.json").unwrap(),
            [PathBuf::from("plain name.json")]
        );
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_the_definition(
            pat in "[ab*?.\\[\\]!-]{0,8}",
            name in "[ab.\\]-]{0,8}",
        ) {
            let toks = tokens(&pat);
            let cs: Vec<char> = name.chars().collect();
            let hidden = cs.first() == Some(&'.') && toks.first() != Some(&Tok::Char('.'));
            let want = !hidden && reference(&toks, &cs);
            prop_assert_eq!(matches(&pat, &name), want);
        }

        #[test]
        fn escaped_text_matches_only_itself(s in "[a-z.*?\\[\\]\\\\]{1,10}", other in "[a-z.]{1,10}") {
            let escaped: String = s.chars().flat_map(|c| ['\\', c]).collect();
            prop_assert!(!is_pattern(&escaped));
            prop_assert_eq!(unescape(&escaped), s.clone());
            prop_assert!(matches(&escaped, &s));
            prop_assert_eq!(matches(&escaped, &other), other == s);
        }
    }
}
