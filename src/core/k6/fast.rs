//! A specialised parser for the `Point` lines of k6's JSON output, with the
//! serde parser ([`super::json::parse_line`]) as the exact fallback.
//!
//! k6 writes every Point line with one fixed layout (easyjson, no
//! whitespace):
//!
//! ```text
//! {"metric":"vus","type":"Point","data":{"time":"…","value":2,"tags":{…},"metadata":{…}}}
//! ```
//!
//! `metadata` is left out when empty; k6 versions from before `metadata`
//! wrote `{"type":"Point","data":{…},"metric":"…"}` and could write
//! `"tags":null`. [`parse_line_fast`] scans exactly that grammar over the
//! bytes, in any key order, and says `None` the moment anything is outside
//! it; [`parse_line`] then hands the line to the serde parser. So the
//! result of [`parse_line`] is, by construction, the serde parser's result
//! on every input:
//!
//! - The fast path only ever produces `Ok` Points. Every error, every
//!   `Metric` or unknown-type line, and every line the serde parser would
//!   reject goes to the serde parser, so error classification (including
//!   its `+Inf` re-quoting retry) has exactly one implementation.
//! - What it accepts is a strict subset of JSON that serde accepts with the
//!   same meaning: no whitespace except after the closing brace, keys
//!   without escapes, each key at most once (serde rejects duplicate
//!   fields), no unknown keys (serde would skip them after validating
//!   them), tag and metadata values that are strings, `true`, `false`,
//!   `null` or small integers (floats go to serde_json's own float
//!   parser, so they fall back), `value` a JSON number, a quoted
//!   non-finite spelling, or the bare `+Inf`/`-Inf`/`NaN` that the serde
//!   parser re-quotes.
//! - Strings without escapes are borrowed from the line, as serde does;
//!   escaped strings are decoded exactly as serde_json decodes them for a
//!   `&str` (surrogate pairs joined, lone surrogates rejected → fallback).
//! - `value` is parsed from its text with `str::parse::<f64>`, exactly as
//!   the serde parser does with its raw text.
//!
//! The differential tests below check that claim on every line of the real
//! fixtures, on generated k6-like lines (with escapes, reordering,
//! whitespace, duplicates, truncations, garbage) and on arbitrary input.

use super::json::{self, Line, LineError, Point, RawTags};
use std::borrow::Cow;

/// Parsed `tags` or `metadata`: (key, text) pairs in input order.
pub type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Capacity of a non-empty `tags` list: k6's HTTP metrics carry 9–13 tags,
/// so this avoids the regrowth of a `Vec` started small; the list lives
/// only as long as its line.
const TAGS_CAPACITY: usize = 16;
/// `vu`, `iter` and usually a trace id or two.
const METADATA_CAPACITY: usize = 4;

/// Parses one line: the fast path for k6's Point layout, the serde parser
/// for everything else. Same contract and, on every input, the same result
/// as [`json::parse_line`].
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    match parse_line_fast(line) {
        Some(line) => Ok(line),
        None => json::parse_line(line),
    }
}

/// The fast path alone: `Some` only for a Point line in k6's layout that
/// the serde parser would accept with this very result; `None` means "ask
/// [`json::parse_line`]" (which may well accept the line: `None` is not an
/// error).
pub fn parse_line_fast(line: &str) -> Option<Line<'_>> {
    parse_line_fast_known(line, ("", ""))
}

/// [`parse_line`] for a caller that knows a `tags` and a `metadata` text
/// (`known`, "" for none): those of the previous point, whose parsed form
/// it keeps. A Point whose `data.tags` (`data.metadata`) text is exactly
/// the known one comes back with that member not parsed: empty `tags`
/// (`metadata`) and [`RawTags::tags_elided`] (`metadata_elided`) set; the
/// caller takes the parsed form it keeps, or parses the text with
/// [`parse_pairs`] (the same result: parsing a member reads exactly its
/// text and depends on nothing else). Any other line: as [`parse_line`].
///
/// The known text must be one this parser parsed as such a member (taken
/// from a [`RawTags`]): a prefix of the line equal to a complete member
/// text is that member, so comparing replaces the scan.
pub fn parse_line_known<'a>(line: &'a str, known: (&str, &str)) -> Result<Line<'a>, LineError> {
    match parse_line_fast_known(line, known) {
        Some(line) => Ok(line),
        None => json::parse_line(line),
    }
}

fn parse_line_fast_known<'a>(line: &'a str, known: (&str, &str)) -> Option<Line<'a>> {
    Scanner {
        text: line,
        bytes: line.as_bytes(),
        pos: 0,
        known_tags: known.0.as_bytes(),
        known_metadata: known.1.as_bytes(),
    }
    .point_line()
    .map(Line::Point)
}

/// The pairs of a `tags` or `metadata` text of a [`RawTags`] (`None` for
/// any other text).
pub fn parse_pairs(text: &str) -> Option<Pairs<'_>> {
    let mut sc = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        known_tags: b"",
        known_metadata: b"",
    };
    let pairs = sc.pairs(TAGS_CAPACITY)?;
    (sc.pos == text.len()).then_some(pairs)
}

struct Data<'a> {
    time: Cow<'a, str>,
    value: f64,
    tags: Pairs<'a>,
    metadata: Pairs<'a>,
    /// The text of `tags` and `metadata` ("" when absent), and whether
    /// each was the known text (left unparsed).
    raw: RawTags<'a>,
}

/// A cursor over the line. Every method returns `None` as soon as the
/// input leaves the accepted grammar; `pos` is then meaningless.
struct Scanner<'a, 'k> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The caller's known `tags` and `metadata` texts (empty: none).
    known_tags: &'k [u8],
    known_metadata: &'k [u8],
}

impl<'a> Scanner<'a, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    fn expect(&mut self, want: u8) -> Option<()> {
        (self.bump()? == want).then_some(())
    }

    #[inline]
    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(lit.len())?;
        if self.bytes.get(self.pos..end)? != lit {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// After an object member: `,` → `true` (another member follows),
    /// `}` → `false` (the object is closed).
    #[inline]
    fn next_member(&mut self) -> Option<bool> {
        match self.bump()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    fn point_line(mut self) -> Option<Point<'a>> {
        self.expect(b'{')?;
        let (mut metric, mut is_point, mut data) = (None, false, None);
        loop {
            match self.key()? {
                b"metric" if metric.is_none() => metric = Some(self.string()?),
                b"type" if !is_point => {
                    // Metric lines and unknown types: the serde parser.
                    if self.string()? != "Point" {
                        return None;
                    }
                    is_point = true;
                }
                b"data" if data.is_none() => data = Some(self.data()?),
                _ => return None,
            }
            if !self.next_member()? {
                break;
            }
        }
        // serde_json allows trailing JSON whitespace (a `\r` left by CRLF).
        let rest = self.bytes.get(self.pos..)?;
        if !rest
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return None;
        }
        // An empty metric name is the serde parser's MissingField.
        let metric = metric.filter(|m| !m.is_empty())?;
        let data = data.filter(|_| is_point)?;
        Some(Point {
            metric,
            time: data.time,
            value: data.value,
            tags: data.tags,
            metadata: data.metadata,
            // JSON values are numbers, formatted by the converter.
            value_text: None,
            raw_tags: Some(data.raw),
        })
    }

    fn data(&mut self) -> Option<Data<'a>> {
        self.expect(b'{')?;
        let (mut time, mut value, mut tags, mut metadata) = (None, None, None, None);
        let mut raw = RawTags::default();
        loop {
            match self.key()? {
                b"time" if time.is_none() => time = Some(self.string()?),
                b"value" if value.is_none() => value = Some(self.value()?),
                b"tags" if tags.is_none() => {
                    let (pairs, text, elided) = self.member(TAGS_CAPACITY, self.known_tags)?;
                    (tags, raw.tags, raw.tags_elided) = (Some(pairs), text, elided);
                }
                b"metadata" if metadata.is_none() => {
                    let (pairs, text, elided) =
                        self.member(METADATA_CAPACITY, self.known_metadata)?;
                    (metadata, raw.metadata, raw.metadata_elided) = (Some(pairs), text, elided);
                }
                // `name`/`type` (Metric fields) and anything unknown.
                _ => return None,
            }
            if !self.next_member()? {
                break;
            }
        }
        Some(Data {
            time: time?,
            value: value?,
            tags: tags.unwrap_or_default(),
            metadata: metadata.unwrap_or_default(),
            raw,
        })
    }

    /// A `tags` or `metadata` value: its pairs and its text, or, when the
    /// text is `known` (non-empty), no pairs, the text, and `true`.
    #[inline]
    fn member(&mut self, capacity: usize, known: &[u8]) -> Option<(Pairs<'a>, &'a str, bool)> {
        let start = self.pos;
        if !known.is_empty() && self.bytes[start..].starts_with(known) {
            self.pos += known.len();
            return Some((Vec::new(), self.text.get(start..self.pos)?, true));
        }
        let pairs = self.pairs(capacity)?;
        Some((pairs, self.text.get(start..self.pos)?, false))
    }

    /// A member name and its `:`. Names with escapes are left to serde
    /// (it matches field names after decoding them).
    #[inline(always)]
    fn key(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = find_special(self.bytes, start)?;
        if self.bytes[end] != b'"' || self.bytes.get(end + 1) != Some(&b':') {
            return None;
        }
        self.pos = end + 2;
        Some(&self.bytes[start..end])
    }

    /// A JSON string: borrowed when it has no escapes, decoded otherwise.
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = find_special(self.bytes, start)?;
        match self.bytes[end] {
            b'"' => {
                self.pos = end + 1;
                // Both ends sit next to an ASCII `"`: always char boundaries.
                Some(Cow::Borrowed(self.text.get(start..end)?))
            }
            b'\\' => self.escaped(start, end).map(Cow::Owned),
            // A raw control character: invalid JSON.
            _ => None,
        }
    }

    /// Decodes a string from `start` (after its `"`), whose first special
    /// byte is the `\` at `at`. Mirrors serde_json's `parse_str` for `&str`
    /// input: the eight one-letter escapes, `\uXXXX` with either hex case,
    /// a high surrogate only followed by `\u` and a low surrogate, a lone
    /// low surrogate rejected.
    #[cold]
    fn escaped(&mut self, start: usize, mut at: usize) -> Option<String> {
        let mut out = String::with_capacity(at - start + 16);
        let mut run = start;
        loop {
            // `run..at` has no special bytes; `at` is a special byte.
            out.push_str(self.text.get(run..at)?);
            match self.bytes[at] {
                b'"' => {
                    self.pos = at + 1;
                    return Some(out);
                }
                b'\\' => {}
                _ => return None,
            }
            let esc = *self.bytes.get(at + 1)?;
            at += 2;
            match esc {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hi = hex4(self.bytes.get(at..at + 4)?)?;
                    at += 4;
                    let code = match hi {
                        0xD800..=0xDBFF => {
                            if self.bytes.get(at..at + 2)? != b"\\u" {
                                return None;
                            }
                            let lo = hex4(self.bytes.get(at + 2..at + 6)?)?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return None;
                            }
                            at += 6;
                            0x1_0000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => u32::from(hi),
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            }
            run = at;
            at = find_special(self.bytes, at)?;
        }
    }

    /// `data.value`: a JSON number (grammar checked here, as serde_json's
    /// raw-value scan does, then parsed from its text with Rust's
    /// correctly rounded parser like the serde parser), or Go's bare
    /// `+Inf`/`-Inf`/`NaN`, which the serde parser re-quotes and accepts.
    /// That retry replaces the *first* `"value":<token>` of the line; in a
    /// line this scanner accepts, the only such text is `data.value`
    /// itself (anywhere else `"value":` is a key and a bare token after it
    /// is rejected), so both agree.
    fn value(&mut self) -> Option<f64> {
        let start = self.pos;
        match self.peek()? {
            b'"' => return self.quoted_value(),
            b'+' => {
                self.literal(b"+Inf")?;
                return Some(f64::INFINITY);
            }
            b'N' => {
                self.literal(b"NaN")?;
                return Some(f64::NAN);
            }
            b'-' => {
                if self.bytes.get(start + 1) == Some(&b'I') {
                    self.literal(b"-Inf")?;
                    return Some(f64::NEG_INFINITY);
                }
                self.pos += 1;
            }
            _ => {}
        }
        match self.bump()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.nonempty_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.nonempty_digits()?;
        }
        // A digit after a leading `0` is caught by the caller (`,`/`}`
        // expected). Every text of this grammar parses (overflow → ±inf).
        self.text.get(start..self.pos)?.parse().ok()
    }

    /// A quoted `value`: the serde parser compares the raw text between the
    /// quotes (escapes are not decoded, so an escaped spelling is its
    /// MalformedJson and falls back here).
    #[cold]
    fn quoted_value(&mut self) -> Option<f64> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = find_special(self.bytes, start)?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.pos = end + 1;
        match &self.bytes[start..end] {
            b"+Inf" | b"Inf" | b"Infinity" | b"+Infinity" => Some(f64::INFINITY),
            b"-Inf" | b"-Infinity" => Some(f64::NEG_INFINITY),
            b"NaN" => Some(f64::NAN),
            _ => None,
        }
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn nonempty_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// `tags`/`metadata`: `null`, or an object of scalars as (key, text)
    /// pairs in input order, duplicates kept, `null` values left out.
    fn pairs(&mut self, capacity: usize) -> Option<Pairs<'a>> {
        match self.bump()? {
            b'{' => {}
            b'n' => {
                self.literal(b"ull")?;
                return Some(Vec::new());
            }
            _ => return None,
        }
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(capacity);
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            match self.peek()? {
                b'"' => out.push((key, self.string()?)),
                b'n' => self.literal(b"null")?,
                b't' => {
                    self.literal(b"true")?;
                    out.push((key, Cow::Borrowed("true")));
                }
                b'f' => {
                    self.literal(b"false")?;
                    out.push((key, Cow::Borrowed("false")));
                }
                b'-' | b'0'..=b'9' => out.push((key, self.integer()?)),
                // Nested objects and arrays: the serde parser's error.
                _ => return None,
            }
            if !self.next_member()? {
                return Some(out);
            }
        }
    }

    /// An integer tag value. serde_json reads it as `u64`/`i64` and the
    /// serde parser prints it with `to_string()`, which gives back the text
    /// itself (JSON has no `+` and no leading zeros), except `-0`, which
    /// serde_json reads as the float `-0.0`, printed `0`. Fractions and
    /// exponents (serde_json's own float parsing, not always correctly
    /// rounded) and more than 18 digits (possible `u64` overflow into that
    /// float path) fall back.
    fn integer(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let first = self.pos;
        match self.bump()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.pos - first > 18 || matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        let text = self.text.get(start..self.pos)?;
        Some(Cow::Borrowed(if text == "-0" { "0" } else { text }))
    }
}

/// Four hex digits (either case), as serde_json's `decode_four_hex_digits`.
fn hex4(b: &[u8]) -> Option<u16> {
    let mut n = 0u16;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | u16::from(d);
    }
    Some(n)
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Index of the first byte at or after `from` that ends a plain string run:
/// `"`, `\` or a control character (< 0x20, invalid raw in JSON strings).
///
/// Eight bytes at a time (SWAR): for each byte, "equals `"`", "equals `\`"
/// and "is below 0x20" set its high bit. The classic `(x - 0x01…) & !x`
/// trick can also flag bytes *above* a true hit (borrow propagation), but
/// never below one, so in a little-endian load the lowest flagged byte is
/// exact. k6 strings are mostly 5–60 bytes, so the per-call cost matters
/// more than the bandwidth: measured on the fixtures, `memchr2` (`"`/`\`)
/// plus a separate control-character pass was ~25% slower overall, and an
/// SSE2 version only ~8% faster (not worth `unsafe` and an x86-only path;
/// this one is the same on arm64). Always inlined, like [`Scanner::string`]
/// and [`Scanner::key`]: as calls, their `Cow` results went through the
/// stack and reloading them stalled (~20% of the fast path's time).
#[inline(always)]
fn find_special(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & HIGHS;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = bytes.get(i..)?;
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|p| i + p)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::io::Read;

    type Parsed<'a> = Result<Line<'a>, LineError>;

    /// Unoptimised builds (plain `cargo test`) check a tenth of the
    /// generated and mutated cases, which keeps the library's unit tests
    /// at seconds; `cargo test --release --lib core::k6::fast` checks all.
    const SCALE: usize = if cfg!(debug_assertions) { 10 } else { 1 };

    fn same_pairs(a: &Pairs<'_>, b: &Pairs<'_>) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, va), (kb, vb))| ka == kb && va == vb)
    }

    /// Equal results: same variant, same strings, same `f64` bits (so
    /// `NaN`, `-0.0` and infinities are compared exactly, unlike `==`).
    fn same(a: &Parsed<'_>, b: &Parsed<'_>) -> bool {
        match (a, b) {
            (Err(x), Err(y)) => x == y,
            (Ok(Line::Point(x)), Ok(Line::Point(y))) => {
                x.metric == y.metric
                    && x.time == y.time
                    && x.value.to_bits() == y.value.to_bits()
                    && same_pairs(&x.tags, &y.tags)
                    && same_pairs(&x.metadata, &y.metadata)
            }
            (Ok(x @ (Line::Metric { .. } | Line::Other { .. })), Ok(y)) => x == y,
            _ => false,
        }
    }

    /// Asserts that the fast path (when it answers) and the combined parser
    /// agree with the serde parser; returns whether the fast path answered.
    fn check(line: &str) -> bool {
        let want = json::parse_line(line);
        let fast = parse_line_fast(line);
        let took_fast = fast.is_some();
        if let Some(got) = fast {
            // Told its own member texts, the parser leaves them unparsed.
            if let Line::Point(Point {
                raw_tags: Some(r), ..
            }) = &got
            {
                let elided = check_known(line, (r.tags, r.metadata)).expect("a Point");
                assert_eq!(elided, (!r.tags.is_empty(), !r.metadata.is_empty()));
            }
            assert!(
                same(&Ok(got), &want),
                "fast path differs on {line:?}:\n fast  {:?}\n serde {want:?}",
                parse_line_fast(line)
            );
        }
        let got = parse_line(line);
        assert!(
            same(&got, &want),
            "parse_line differs on {line:?}:\n got   {got:?}\n serde {want:?}"
        );
        took_fast
    }

    /// [`parse_line_known`] with `known` agrees with the serde parser once
    /// the members it left unparsed are parsed from their text (which must
    /// be the known one); returns which it left unparsed, for a Point.
    fn check_known(line: &str, known: (&str, &str)) -> Option<(bool, bool)> {
        let want = json::parse_line(line);
        let mut got = parse_line_known(line, known);
        let mut elided = None;
        if let Ok(Line::Point(p)) = &mut got {
            let r = p.raw_tags.unwrap_or_default();
            if r.tags_elided {
                assert!(p.tags.is_empty() && r.tags == known.0, "{line:?}");
                p.tags = parse_pairs(r.tags).expect("an elided text parses");
            }
            if r.metadata_elided {
                assert!(p.metadata.is_empty() && r.metadata == known.1, "{line:?}");
                p.metadata = parse_pairs(r.metadata).expect("an elided text parses");
            }
            elided = Some((r.tags_elided, r.metadata_elided));
        }
        assert!(
            same(&got, &want),
            "parse_line_known differs on {line:?} knowing {known:?}:\n got   {got:?}\n serde {want:?}"
        );
        elided
    }

    /// Every string of a fast-path Point is borrowed from the line unless
    /// the line has an escape (`-0` and booleans become fixed text, which
    /// is borrowed as well).
    fn all_borrowed(p: &Point<'_>) -> bool {
        let pairs = p.tags.iter().chain(&p.metadata).flat_map(|(k, v)| [k, v]);
        [&p.metric, &p.time]
            .into_iter()
            .chain(pairs)
            .all(|c| matches!(c, Cow::Borrowed(_)))
    }

    fn fixtures_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// Decompressed bytes of every k6 output fixture (`.gz` members
    /// concatenated, as the reader does), by file name.
    pub(crate) fn fixtures() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures directory") {
            let path = entry.expect("fixture entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let raw = std::fs::read(&path).expect("fixture file");
            let bytes = if name.ends_with(".gz") {
                let mut v = Vec::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut v)
                    .expect("gunzip fixture");
                v
            } else if name.ends_with(".json") || name.ends_with(".ndjson") {
                raw
            } else {
                continue;
            };
            out.push((name, bytes));
        }
        out.sort();
        assert!(
            out.len() >= 8,
            "expected the 8 k6 fixtures, found {}",
            out.len()
        );
        out
    }

    /// The lines as the reader hands them over: split at `\n`, one `\r`
    /// stripped, no empty piece after a final `\n`.
    fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        body.split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
    }

    #[test]
    fn fixtures_differential_and_hit_rate() {
        let (mut total_points, mut total_fast) = (0usize, 0usize);
        for (name, bytes) in fixtures() {
            let (mut n, mut points, mut fast) = (0usize, 0usize, 0usize);
            for raw in lines(&bytes) {
                let text = String::from_utf8_lossy(raw);
                n += 1;
                if matches!(json::parse_line(&text), Ok(Line::Point(_))) {
                    points += 1;
                }
                if check(&text) {
                    fast += 1;
                    let Some(Line::Point(p)) = parse_line_fast(&text) else {
                        unreachable!()
                    };
                    if !text.contains('\\') {
                        assert!(all_borrowed(&p), "allocated strings for {text}");
                    }
                }
                // With the `\n` and `\r` still attached (JSON whitespace).
                let mut with_eol = text.into_owned();
                with_eol.push_str("\r\n");
                check(&with_eol);
            }
            println!("{name}: {n} lines, {points} Points, {fast} on the fast path");
            // Every Point line of every fixture, real or synthetic, takes
            // the fast path; nothing else does (it only produces Points).
            assert_eq!(fast, points, "{name}");
            total_points += points;
            total_fast += fast;
        }
        println!("all fixtures: {total_fast}/{total_points} Points on the fast path");
        assert!(total_points > 4000);
    }

    /// Each fixture line parsed knowing the previous Point's member texts,
    /// as the pipeline parses: the same results, and most members of real
    /// k6 output are left unparsed.
    #[test]
    fn fixtures_with_the_previous_texts_known() {
        let (mut members, mut elided) = (0usize, 0usize);
        for (_, bytes) in fixtures() {
            let mut known = (String::new(), String::new());
            for raw in lines(&bytes) {
                let text = String::from_utf8_lossy(raw);
                if let Some((t, m)) = check_known(&text, (&known.0, &known.1)) {
                    members += 2;
                    elided += usize::from(t) + usize::from(m);
                }
                if let Ok(Line::Point(p)) = parse_line(&text) {
                    if let Some(r) = p.raw_tags {
                        known = (r.tags.to_owned(), r.metadata.to_owned());
                    }
                }
            }
        }
        println!("{elided} of {members} members left unparsed");
        assert!(elided > members / 4, "{elided} of {members}");
    }

    /// Older k6 (before `metadata`) wrote `type`, `data`, `metric`.
    #[test]
    fn older_key_order_takes_the_fast_path() {
        let l = r#"{"type":"Point","data":{"time":"2017-05-09T14:34:45.239531499+02:00","value":459.865729,"tags":{"group":"::my group::json","method":"GET","status":"200","url":"https://httpbin.org/get"}},"metric":"http_req_duration"}"#;
        assert!(check(l));
        let l = r#"{"type":"Point","data":{"time":"2017-05-09T14:34:45.625742514+02:00","value":5,"tags":null},"metric":"vus"}"#;
        assert!(check(l));
    }

    #[test]
    fn covered_shapes_take_the_fast_path() {
        let t = r#""time":"2024-03-01T17:04:05.123456789Z""#;
        for data in [
            r#""value":1,"tags":{"a":"b"}"#,
            r#""value":-0,"tags":{}"#,
            r#""value":1.5e-7,"tags":null"#,
            r#""value":1E+400,"tags":{"a":"b"},"metadata":{"vu":"1","iter":"0"}"#,
            r#""value":+Inf,"tags":{"a":"b"}"#,
            r#""value":-Inf"#,
            r#""value":NaN,"tags":{}"#,
            r#""value":"NaN","tags":{}"#,
            r#""value":"-Infinity""#,
            r#""tags":{"b":"c"},"value":2"#,
            r#""value":2,"tags":{"k":true,"l":false,"m":null,"n":-12,"o":0,"p":-0,"q":123456789012345678}"#,
            r#""value":2,"tags":{"a":"x","a":"y"},"metadata":null"#,
            r#""value":2,"tags":{"esc":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE80\u2028"}"#,
            r#""value":2,"tags":{"\u0041":"héllo wörld ✓ 日本語 🚀","":"empty key"}"#,
        ] {
            let l = format!(r#"{{"metric":"m","type":"Point","data":{{{t},{data}}}}}"#);
            assert!(check(&l), "{l}");
        }
        // The fast path's decoding, spelled out.
        let l = format!(
            r#"{{"metric":"m\u0031","type":"Poin\u0074","data":{{{t},"value":1,"tags":{{"s":"a\uD83D\uDE80\n\u00E9\\"}}}}}}"#
        );
        let Some(Line::Point(p)) = parse_line_fast(&l) else {
            panic!("{l}")
        };
        assert_eq!(p.metric, "m1");
        assert_eq!(p.tags, vec![("s".into(), "a🚀\né\\".into())]);
        assert!(matches!(p.tags[0].1, Cow::Owned(_)));
    }

    #[test]
    fn unusual_lines_fall_back() {
        let t = r#""time":"2024-03-01T17:04:05Z""#;
        for data in [
            // Errors of every kind.
            r#""value":"12.5""#,
            r#""value":null"#,
            r#""value":true"#,
            r#""value":01"#,
            r#""value":1."#,
            r#""value":.5"#,
            r#""value":1e"#,
            r#""value":-"#,
            r#""value":+Infinity"#,
            r#""value":Infinity"#,
            r#""value":"N\u0061N""#,
            r#""value":1,"tags":{"a":[1]}"#,
            r#""value":1,"tags":{"a":{}}"#,
            r#""value":1,"tags":[]"#,
            r#""value":1,"tags":{"a":"\ud800"}"#,
            r#""value":1,"tags":{"a":"\udc00\ud800"}"#,
            r#""value":1,"tags":{"a":"\x"}"#,
            r#""value":1,"tags":{"a":"tab	raw"}"#,
            r#""value":1,"value":2"#,
            r#""value":1,"tags":{},"tags":{}"#,
            // Valid, but left to the serde parser.
            r#""value":1,"tags":{"a":1.5}"#,
            r#""value":1,"tags":{"a":1e3}"#,
            r#""value":1,"tags":{"a":1234567890123456789}"#,
            r#""value":1,"extra":{"x":[1,2]}"#,
            r#""value":1,"name":"n","type":"counter""#,
            r#""value" :1"#,
            r#""value": 1"#,
            r#""val\u0075e":1"#,
        ] {
            let l = format!(r#"{{"metric":"m","type":"Point","data":{{{t},{data}}}}}"#);
            assert!(!check(&l), "{l}");
        }
        for l in [
            "",
            " ",
            "{}",
            "[1]",
            r#"["Point","m",{"time":"t","value":1}]"#,
            r#" {"metric":"m","type":"Point","data":{"time":"t","value":1}}"#,
            r#"{"metric":"m","type":"Point","data":{"time":"t","value":1}}x"#,
            "{\"metric\":\"m\",\"type\":\"Point\",\"data\":{\"time\":\"t\",\"value\":1}}\u{c}",
            r#"{"metric":"","type":"Point","data":{"time":"t","value":1}}"#,
            r#"{"metric":null,"type":"Point","data":{"time":"t","value":1}}"#,
            r#"{"type":"Point","data":{"time":"t","value":1}}"#,
            r#"{"metric":"m","data":{"time":"t","value":1}}"#,
            r#"{"metric":"m","type":"Point"}"#,
            r#"{"metric":"m","type":"Point","data":{"value":1}}"#,
            r#"{"metric":"m","type":"Point","data":{"time":"t"}}"#,
            r#"{"metric":"m","type":"Point","data":null}"#,
            r#"{"metric":"m","type":"Point","type":"Point","data":{"time":"t","value":1}}"#,
            r#"{"metric":"m","type":"Metric","data":{"name":"m","type":"rate"}}"#,
            r#"{"metric":"m","type":"Summary","data":{"time":"t","value":1}}"#,
            r#"{"metric":"m","type":"Point","data":{"time":"t","value":1},"x":0}"#,
        ] {
            assert!(!check(l), "{l}");
        }
    }

    /// Every truncation, every single-byte deletion and a set of
    /// single-byte substitutions of a sample of real lines (all of
    /// `special_values.json` and `edge_cases.ndjson`, the first lines of
    /// the others; with [`SCALE`] > 1, every SCALE-th position, a
    /// different residue on each line).
    #[test]
    fn mutations_of_real_lines() {
        const SUBST: &[u8] = b"\"\\{}[],:n0-+e. \t\x01a";
        let mut checked = 0usize;
        for (name, bytes) in fixtures() {
            let take = if name.starts_with("special") || name.starts_with("edge") {
                usize::MAX
            } else {
                40
            };
            for (n, raw) in lines(&bytes).take(take).enumerate() {
                for i in (n % SCALE..raw.len()).step_by(SCALE) {
                    check(&String::from_utf8_lossy(&raw[..i]));
                    let mut del = raw.to_vec();
                    del.remove(i);
                    check(&String::from_utf8_lossy(&del));
                    for &b in SUBST {
                        let mut sub = raw.to_vec();
                        sub[i] = b;
                        check(&String::from_utf8_lossy(&sub));
                    }
                    checked += 2 + SUBST.len();
                }
            }
        }
        assert!(checked > 100_000 / SCALE, "{checked}");
    }

    // ---- generated k6-like lines ------------------------------------

    /// A piece of a JSON string's source text.
    #[derive(Debug, Clone)]
    enum Piece {
        Text(String),
        /// `\` and this letter (valid or not).
        Esc(char),
        /// `\uXXXX`, upper- or lowercase hex.
        U(u16, bool),
        /// A surrogate pair (or two arbitrary code units).
        Pair(u16, u16),
        /// A raw char, possibly `"`, `\` or a control character.
        Raw(char),
    }

    /// A JSON-ish value: tokens are raw text, so invalid JSON is possible.
    #[derive(Debug, Clone)]
    enum J {
        Tok(String),
        Str(Vec<Piece>),
        Obj(Vec<(Vec<Piece>, J)>),
        Arr(Vec<J>),
    }

    /// Whitespace between tokens, from a tiny PRNG so that the rate can be
    /// zero (the common case) or anything up to every other slot.
    struct Ws {
        state: u64,
        rate: u64,
    }

    impl Ws {
        fn put(&mut self, out: &mut String) {
            if self.rate == 0 {
                return;
            }
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            if self.state % 8 < self.rate {
                out.push([' ', '\t', '\n', '\r'][(self.state >> 8) as usize % 4]);
            }
        }
    }

    fn render_str(pieces: &[Piece], out: &mut String) {
        out.push('"');
        for p in pieces {
            match p {
                Piece::Text(s) => out.push_str(s),
                Piece::Esc(c) => {
                    out.push('\\');
                    out.push(*c);
                }
                Piece::U(n, true) => out.push_str(&format!("\\u{n:04X}")),
                Piece::U(n, false) => out.push_str(&format!("\\u{n:04x}")),
                Piece::Pair(a, b) => out.push_str(&format!("\\u{a:04x}\\u{b:04X}")),
                Piece::Raw(c) => out.push(*c),
            }
        }
        out.push('"');
    }

    fn render(j: &J, out: &mut String, ws: &mut Ws) {
        match j {
            J::Tok(t) => out.push_str(t),
            J::Str(p) => render_str(p, out),
            J::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    ws.put(out);
                    render_str(k, out);
                    ws.put(out);
                    out.push(':');
                    ws.put(out);
                    render(v, out, ws);
                    ws.put(out);
                }
                out.push('}');
            }
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    ws.put(out);
                    render(v, out, ws);
                    ws.put(out);
                }
                out.push(']');
            }
        }
    }

    fn text(s: &str) -> Vec<Piece> {
        vec![Piece::Text(s.to_owned())]
    }

    fn piece() -> impl Strategy<Value = Piece> {
        // Valid pieces outweigh the invalid ones (bad escapes, lone
        // surrogates, raw `"`/`\`/control characters) about 30:1, so that
        // a string of a few pieces is usually valid and the fast path gets
        // exercised, not only the fallback.
        prop_oneof![
            80 => "[a-zA-Z0-9 _:/.?=&%-]{1,12}".prop_map(Piece::Text),
            15 => "[éäöü✓日本語ключ🚀😀\u{7f}\u{2028}\u{fffd}]{1,3}".prop_map(Piece::Text),
            15 => prop::sample::select(vec!['"', '\\', '/', 'b', 'f', 'n', 'r', 't'])
                .prop_map(Piece::Esc),
            10 => (any::<u16>(), any::<bool>())
                .prop_filter("not a surrogate", |(n, _)| !(0xD800..0xE000).contains(n))
                .prop_map(|(n, u)| Piece::U(n, u)),
            8 => (0xD800u16..0xDC00, 0xDC00u16..0xE000).prop_map(|(a, b)| Piece::Pair(a, b)),
            1 => prop::sample::select(vec!['x', 'u', '0', ' ', 'U', '\'', 'a'])
                .prop_map(Piece::Esc),
            1 => (0xD800u16..0xE000, any::<bool>()).prop_map(|(n, u)| Piece::U(n, u)),
            1 => (0xD800u16..0xE000, any::<u16>()).prop_map(|(a, b)| Piece::Pair(a, b)),
            1 => any::<char>().prop_map(Piece::Raw),
            1 => prop::sample::select(vec!['\u{0}', '\u{1}', '\t', '\n', '\u{1f}', '"', '\\'])
                .prop_map(Piece::Raw),
        ]
    }

    fn jstr() -> BoxedStrategy<Vec<Piece>> {
        prop_oneof![
            6 => "[a-zA-Z0-9_:/.?=-]{0,24}".prop_map(|s| text(&s)),
            1 => prop::collection::vec(piece(), 0..5),
        ]
        .boxed()
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => any::<f64>().prop_map(|v| format!("{v}")),
            4 => any::<f64>().prop_map(|v| format!("{v:e}")),
            4 => any::<i64>().prop_map(|v| v.to_string()),
            6 => "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
            1 => "[-+]?[0-9]{0,3}\\.?[0-9]{0,3}([eE][+-]?[0-9]{0,3})?",
            2 => prop::sample::select(vec![
                "+Inf", "-Inf", "NaN", "Infinity", "-Infinity", "+Infinity", "inf", "nan",
                "-0", "0", "-0.0", "0e0", "1e400", "-1e400", "1e-400", "5e-324",
                "1.7976931348623157e+308", "9007199254740993", "1.160472e+06", "00", "01",
                "-", "1.", "1e", ".5", "+1", "0x10", "1_0", "+Inf,", "-Inf}", "NaN ",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn tok(s: &str) -> J {
        J::Tok(s.to_owned())
    }

    fn value() -> BoxedStrategy<J> {
        prop_oneof![
            30 => number().prop_map(J::Tok),
            2 => prop::sample::select(vec!["+Inf", "-Inf", "NaN"]).prop_map(tok),
            2 => prop::sample::select(vec![
                "NaN", "+Inf", "-Inf", "Inf", "Infinity", "+Infinity", "-Infinity", "12.5",
                "abc", "", "nan",
            ])
            .prop_map(|s| J::Str(text(s))),
            1 => jstr().prop_map(J::Str),
            1 => prop::sample::select(vec!["null", "true", "false", "[]", "{}", "[1]", "{\"a\":1}"])
                .prop_map(tok),
        ]
        .boxed()
    }

    /// A tag or metadata value, including the non-string kinds.
    fn scalar() -> BoxedStrategy<J> {
        let leaf = || {
            prop_oneof![
                100 => jstr().prop_map(J::Str),
                2 => prop::sample::select(vec!["true", "false", "null"]).prop_map(tok),
                1 => prop::sample::select(vec!["tru", "nul", "nulll"]).prop_map(tok),
                1 => (-20i64..20).prop_map(|v| J::Tok(v.to_string())),
                1 => any::<i64>().prop_map(|v| J::Tok(v.to_string())),
                1 => any::<u64>().prop_map(|v| J::Tok(v.to_string())),
                // Around the `u64`/`i64` limits and past them (float path).
                1 => "-?[1-9][0-9]{16,21}".prop_map(J::Tok),
                1 => number().prop_map(J::Tok),
            ]
        };
        prop_oneof![
            200 => leaf(),
            1 => prop::collection::vec(leaf(), 0..3).prop_map(J::Arr),
            1 => prop::collection::vec((jstr(), leaf()), 0..3).prop_map(J::Obj),
        ]
        .boxed()
    }

    fn tag_key() -> impl Strategy<Value = Vec<Piece>> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "expected_response", "group", "method", "name", "proto", "scenario", "status",
                "url", "vu", "iter", "trace_id", "", "ключ", "key with space",
            ])
            .prop_map(text),
            1 => jstr(),
        ]
    }

    fn pairs() -> BoxedStrategy<J> {
        prop_oneof![
            40 => prop::collection::vec((tag_key(), scalar()), 0..12).prop_map(J::Obj),
            2 => Just(tok("null")),
            1 => prop::sample::select(vec!["{}", "[]", "5", "\"x\"", "true", "nul"]).prop_map(tok),
        ]
        .boxed()
    }

    fn time() -> BoxedStrategy<J> {
        prop_oneof![
            20 => "20[0-9]{2}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][01][0-9]:[0-5][0-9])"
                .prop_map(|s| J::Str(text(&s))),
            1 => jstr().prop_map(J::Str),
            1 => prop::sample::select(vec!["null", "5", "{}"]).prop_map(tok),
        ].boxed()
    }

    /// A key as written: usually plain, sometimes escaped or misspelt.
    fn key(name: &'static str) -> impl Strategy<Value = Vec<Piece>> {
        let first = name.chars().next().unwrap_or('x');
        let rest = name.get(first.len_utf8()..).unwrap_or("").to_owned();
        prop_oneof![
            60 => Just(text(name)),
            1 => Just(vec![Piece::U(first as u16, false), Piece::Text(rest)]),
            1 => Just(text(&name.to_uppercase())),
        ]
    }

    /// An object member present with probability `p`/20.
    fn member(
        p: u32,
        name: &'static str,
        v: impl Strategy<Value = J>,
    ) -> impl Strategy<Value = Option<(Vec<Piece>, J)>> {
        (0..20u32, key(name), v).prop_map(move |(roll, k, v)| (roll < p).then_some((k, v)))
    }

    /// Members in k6's order or shuffled, plus rare extra members (unknown
    /// keys or duplicates of known ones).
    fn object(
        members: impl Strategy<Value = Vec<Option<(Vec<Piece>, J)>>>,
        extra: impl Strategy<Value = (Vec<Piece>, J)>,
    ) -> impl Strategy<Value = J> {
        (
            members,
            prop::collection::vec(extra, 0..2),
            0..40u32,
            any::<bool>(),
        )
            .prop_flat_map(|(members, extra, extra_roll, shuffle)| {
                let mut v: Vec<_> = members.into_iter().flatten().collect();
                if extra_roll < 2 {
                    v.extend(extra);
                }
                let fixed = Just(v.clone()).boxed();
                let picked = if shuffle {
                    Just(v).prop_shuffle().boxed()
                } else {
                    fixed
                };
                picked.prop_map(J::Obj)
            })
    }

    fn data() -> BoxedStrategy<J> {
        let members = (
            member(19, "time", time()),
            member(19, "value", value()),
            member(18, "tags", pairs()),
            member(10, "metadata", pairs()),
        )
            .prop_map(|(a, b, c, d)| vec![a, b, c, d]);
        let extra = (
            prop::sample::select(vec![
                "time", "value", "tags", "metadata", "name", "type", "x",
            ])
            .prop_map(text),
            prop_oneof![value(), pairs(), jstr().prop_map(J::Str)],
        );
        object(members, extra).boxed()
    }

    pub(crate) fn line() -> impl Strategy<Value = String> {
        let metric = prop_oneof![
            20 => "[a-z_]{1,20}".prop_map(|s| J::Str(text(&s))),
            1 => jstr().prop_map(J::Str),
            1 => prop::sample::select(vec!["null", "5", "\"\""]).prop_map(tok),
        ];
        let kind = prop_oneof![
            24 => Just(J::Str(text("Point"))),
            1 => Just(J::Str(vec![Piece::Text("Poin".into()), Piece::U(0x74, true)])),
            1 => prop::sample::select(vec!["Metric", "Summary", "point", ""])
                .prop_map(|s| J::Str(text(s))),
            1 => Just(tok("null")),
        ];
        let data = prop_oneof![30 => data(), 1 => prop::sample::select(vec!["null", "[]", "5"]).prop_map(tok)];
        let members = (
            member(19, "metric", metric),
            member(19, "type", kind),
            member(19, "data", data),
        )
            .prop_map(|(a, b, c)| vec![a, b, c]);
        let extra = (
            prop::sample::select(vec!["metric", "type", "data", "extra"]).prop_map(text),
            prop_oneof![jstr().prop_map(J::Str), scalar()],
        );
        let trailer = prop_oneof![
            30 => Just(String::new()),
            1 => Just("\r".to_owned()),
            1 => Just(" \n\t".to_owned()),
            // Whitespace to Unicode or C, not to JSON.
            1 => prop::sample::select(vec!["\u{c}", "\u{b}", "\u{a0}", "\u{feff}", "\u{0}"])
                .prop_map(str::to_owned),
            1 => Just("}".to_owned()),
            1 => Just(",".to_owned()),
            1 => ".{1,4}",
        ];
        let ws = prop_oneof![8 => Just(0u64), 1 => 1..5u64];
        (object(members, extra), trailer, ws, any::<u64>()).prop_map(
            |(top, trailer, rate, seed)| {
                let mut ws = Ws {
                    state: seed | 1,
                    rate,
                };
                let mut out = String::new();
                ws.put(&mut out);
                render(&top, &mut out, &mut ws);
                ws.put(&mut out);
                out.push_str(&trailer);
                out
            },
        )
    }

    /// The generator is only a good test if many of its lines take the
    /// fast path and many do not, including the tricky accepted shapes.
    #[test]
    fn generator_exercises_both_paths() {
        let mut runner = TestRunner::deterministic();
        let strategy = line();
        let (mut n, mut fast, mut escaped, mut reordered, mut bare, mut points) =
            (0, 0, 0, 0, 0, 0);
        for _ in 0..4000 / SCALE {
            let l = strategy.new_tree(&mut runner).unwrap().current();
            n += 1;
            if matches!(json::parse_line(&l), Ok(Line::Point(_))) {
                points += 1;
            }
            if check(&l) {
                fast += 1;
                escaped += usize::from(l.contains('\\'));
                reordered += usize::from(!l.starts_with("{\"metric\":"));
                bare += usize::from(l.contains(":+Inf") || l.contains(":NaN"));
            }
        }
        println!(
            "{n} lines: {points} Points, {fast} on the fast path ({escaped} with escapes, \
             {reordered} reordered, {bare} bare non-finite)"
        );
        assert!(fast * 5 > n, "{fast} of {n}");
        assert!(points > fast, "{points} {fast}");
        assert!(
            escaped * SCALE > 50 && reordered * SCALE > 100 && bare * SCALE > 10,
            "{escaped} {reordered} {bare}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases((2000 / SCALE) as u32))]

        #[test]
        fn generated_lines_and_all_their_prefixes(l in line()) {
            check(&l);
            // Its member texts, known while its prefixes are parsed: a
            // prefix may hold a whole member and break off after it.
            let raw = match parse_line_fast(&l) {
                Some(Line::Point(p)) => p.raw_tags.unwrap_or_default(),
                _ => RawTags::default(),
            };
            for (i, _) in l.char_indices() {
                check(&l[..i]);
                check_known(&l[..i], (raw.tags, raw.metadata));
            }
        }

        #[test]
        fn known_texts_of_other_lines(a in line(), b in line()) {
            // What the pipeline does: the previous point's texts known.
            if let Some(Line::Point(p)) = parse_line_fast(&a) {
                let r = p.raw_tags.unwrap_or_default();
                check_known(&b, (r.tags, r.metadata));
            }
        }

        #[test]
        fn generated_lines_with_garbage(l in line(), cut in any::<prop::sample::Index>(), junk in ".{0,3}") {
            let bytes = l.as_bytes();
            let at = cut.index(bytes.len() + 1);
            let mut s = String::from_utf8_lossy(&bytes[..at]).into_owned();
            s.push_str(&junk);
            s.push_str(&String::from_utf8_lossy(&bytes[at..]));
            check(&s);
        }

        #[test]
        fn arbitrary_strings(s in any::<String>(), prefix in prop::sample::select(vec![
            "", "{", "{\"metric\":", "{\"metric\":\"m\",\"type\":\"Point\",\"data\":{",
            "{\"metric\":\"m\",\"type\":\"Point\",\"data\":{\"time\":\"t\",\"value\":",
        ])) {
            check(&format!("{prefix}{s}"));
        }

        #[test]
        fn arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
            check(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn json_alphabet_soup(s in "\\{\"(metric|type|data|time|value|tags)\":[{}\\[\\]\",:0-9a-zPIN\\\\ +.eE-]{0,80}") {
            check(&s);
        }
    }
}
