//! Fan-out: one input written as segments by independent runs (parallel
//! Lambda invocations, or threads of the CLI), whose records together are
//! the records of one serial run.
//!
//! Three steps:
//!
//! 1. [`index`]: one pass that only inflates (gzip) or reads (plain) the
//!    input and records candidate starts (a line boundary, its line number
//!    and offset, and for gzip the access point before it) about every
//!    `spacing` bytes, plus the metric names in order of first appearance
//!    (a byte scan; a line is parsed only when it may name a new metric).
//! 2. [`plan`]: pure, cuts the candidates into segments of about
//!    `segment_bytes`; each segment reads from a candidate `lookback_bytes`
//!    before its nominal start.
//! 3. [`run_segment`]: converts from the read start on, writes only the
//!    records the segment owns.
//!
//! # Why the union equals the serial run
//!
//! A record depends on more than its own lines:
//!
//! - **MULTI groups** merge consecutive points with the same time and
//!   dimensions. Ownership is therefore not cut at the nominal line but at
//!   the first *hard break* at or after it: a point that gets a measure
//!   and whose time differs from the previous such point's. A group never
//!   spans a hard break (its points share one time), and whether a point
//!   is one depends only on it and the previous measured point, never on
//!   what came before: the segment before and the segment after find the
//!   same break. A segment owns the records whose first line lies between
//!   its start break and the next one; it reads on past its nominal end
//!   to that break (on k6 output: the rest of one request's points).
//! - **Naming** depends on every metric name seen so far (a tag named like
//!   a metric becomes `tag_<name>`): the index lists them with the line
//!   they first appear on, and a segment's converter starts with those
//!   before its read start.
//! - **The collision guard** (+1 ns nudges) depends on the records before:
//!   a segment feeds the records of its look-back (from the first hard
//!   break after its read start up to its own start break) to the
//!   encoder's [`warm`](Encoder::warm), which updates the guard without
//!   writing. This reproduces the serial guard exactly when no chain of
//!   same-series same-time records reaches from before the look-back into
//!   the segment: true when the look-back spans more record time than the
//!   input is out of order plus the nudge chains (k6: a sample lags by at
//!   most its request's duration; colliding samples of one VU arrive
//!   moments apart), and the guard's window and capacity are not what
//!   forgot a record (then the serial run counts a
//!   `collision_window_misses` itself). The price of a longer look-back
//!   is inflating it twice: [`DEFAULT_LOOKBACK_FRACTION`].
//!
//! Report counters of lines (points, skipped, adjusted, …) belong to the
//! segment whose nominal range holds the line; counters of records
//! (records, nudged, batches, …) to the segment that writes the record, so
//! the merged report ([`merge_reports`]) is the serial run's.

use crate::core::convert::Converter;
use crate::core::input::gzip_index::{AccessPoint, IndexingDecoder};
use crate::core::input::{
    for_each_line_bounded, is_gzip, InputError, InputOptions, InputPosition, LineEvent, Progress,
    BOM,
};
use crate::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns, TimeError};
use crate::core::k6::{parse_line, Line, MetricKind};
use crate::core::model::Record;
use crate::core::pipeline::{Encoder, PipelineOptions, TRUNCATED_TAIL};
use crate::core::report::{add_counts, RunReport};
use std::collections::HashSet;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Uncompressed input one segment writes: 2 GiB. A Lambda link writes
/// ~20–25k points/s to Timestream (see BENCHMARKS.md) and a k6 point is
/// ~200 bytes of JSON, so 2 GiB (~10 M points) takes ~7–9 minutes, well
/// within the 15-minute limit with room for throttling retries.
pub const DEFAULT_SEGMENT_BYTES: u64 = 2 << 30;

/// gzip'd k6 JSON inflates ~10–14× (measured on the fixtures and
/// generated load files at level 6); the estimate of an object's
/// uncompressed size from its length uses 12, the middle: an object just
/// above the threshold may run serially, which costs nothing but time.
pub const GZIP_RATIO_ESTIMATE: u64 = 12;

/// A segment reads back 1/8 of its length before its start (to warm the
/// collision guard): with the index pass the whole object is inflated
/// about 2.125 times.
pub const DEFAULT_LOOKBACK_FRACTION: u64 = 8;

/// Candidates are at least this far apart (and at most 1/32 of a
/// segment): with gzip each holds a 32 KiB window.
pub const MIN_CANDIDATE_SPACING: u64 = 32 * 1024;

/// The estimated uncompressed size of an object of `len` bytes.
pub fn estimated_uncompressed(len: u64, gzip: bool) -> u64 {
    if gzip {
        len.saturating_mul(GZIP_RATIO_ESTIMATE)
    } else {
        len
    }
}

/// The spacing of candidate starts for segments of `segment_bytes`, for
/// the Lambda's fan-out and `ingest --parallel` alike.
///
/// A segment's look-back starts at a candidate at least 1/8 segment back
/// and decodes from the access point before it, so coarse candidates
/// inflate up to 1/8 + 2 spacings again per segment; 1/32 keeps that near
/// 3/16. The price is memory while indexing: a 32 KiB window per gzip
/// candidate, ~1 MiB a segment.
pub fn candidate_spacing(segment_bytes: u64) -> u64 {
    (segment_bytes / 32).max(MIN_CANDIDATE_SPACING)
}

/// A line boundary a segment may start reading at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Lines before it: the line starting here is `lines + 1`.
    pub lines: u64,
    /// Decompressed offset of that line.
    pub offset: u64,
    /// gzip: the access point decoding starts from (None: the stream's
    /// start).
    pub point: Option<AccessPoint>,
}

/// A metric name's first appearance (a definition line or a point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSeen {
    pub line: u64,
    pub name: String,
    /// Set for a definition line with a known type.
    pub kind: Option<MetricKind>,
}

/// What the index pass learned.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub gzip: bool,
    pub bom: bool,
    /// Lines and decompressed bytes of the whole input.
    pub lines: u64,
    pub bytes: u64,
    /// In offset order, the first one at line 1.
    pub candidates: Vec<Candidate>,
    /// Metric definition lines and first appearances, in line order.
    pub metrics: Vec<MetricSeen>,
    /// The first non-blank line is a k6 JSON line (`Metric` or `Point`).
    /// Only such input is cut into segments: k6 CSV needs its header's
    /// layout in every part (and its whole-second times make hard breaks
    /// rare), and anything else is left to the serial run's format
    /// detection, which names input that is not k6 output.
    pub json: bool,
}

/// Where a segment reads and what it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    /// 0-based.
    pub number: u32,
    /// Nominal first line (1-based); ownership starts at the first hard
    /// break at or after it (segment 0: line 1).
    pub start_line: u64,
    /// Nominal first line of the next segment (None: the last segment).
    pub end_line: Option<u64>,
    /// Decompressed offset of that line: the reader reads ahead in small
    /// steps from there on (the segment stops soon after).
    pub end_offset: Option<u64>,
    /// Index of the candidate it reads from (≤ its start).
    pub read_from: usize,
}

/// Cuts an input of `bytes` with these candidates into segments of about
/// `segment_bytes` (at least one segment). Each cut is at the first
/// candidate at or after its ideal offset (`k × bytes / n`); each segment
/// after the first reads from the last candidate at least
/// `lookback_bytes` before its cut.
pub fn plan(
    candidates: &[(u64, u64)],
    bytes: u64,
    segment_bytes: u64,
    lookback_bytes: u64,
) -> Vec<SegmentSpec> {
    let n = bytes.div_ceil(segment_bytes.max(1)).max(1);
    let mut cuts: Vec<usize> = vec![0];
    for k in 1..n {
        let ideal = (u128::from(bytes) * u128::from(k) / u128::from(n)) as u64;
        let Some(i) = candidates.iter().position(|c| c.1 >= ideal) else {
            break;
        };
        if i > *cuts.last().expect("not empty") {
            cuts.push(i);
        }
    }
    let mut out = Vec::with_capacity(cuts.len());
    for (j, &c) in cuts.iter().enumerate() {
        let (lines, offset) = candidates.get(c).copied().unwrap_or((0, 0));
        let read_from = if j == 0 {
            0
        } else {
            let want = offset.saturating_sub(lookback_bytes);
            candidates[..=c]
                .iter()
                .rposition(|x| x.1 <= want)
                .unwrap_or(0)
        };
        out.push(SegmentSpec {
            number: j as u32,
            start_line: if j == 0 { 1 } else { lines + 1 },
            end_line: cuts.get(j + 1).map(|&e| candidates[e].0 + 1),
            end_offset: cuts.get(j + 1).map(|&e| candidates[e].1),
            read_from,
        });
    }
    out
}

/// The plan of [`plan`] over an index.
pub fn plan_index(index: &Index, segment_bytes: u64, lookback_bytes: u64) -> Vec<SegmentSpec> {
    let c: Vec<(u64, u64)> = index
        .candidates
        .iter()
        .map(|c| (c.lines, c.offset))
        .collect();
    plan(&c, index.bytes, segment_bytes, lookback_bytes)
}

/// Bytes the segments of `specs` inflate for nothing before the
/// candidate they read from: from the access point of that candidate (or
/// the stream's start when it has none) to the candidate itself.
///
/// Access points exist only at deflate block boundaries. Most gzip writers
/// (k6's Go `compress/gzip`, GNU gzip, zlib levels 2–9) end a block every
/// few hundred KiB of text, but a stream written as a single block has
/// none: zlib-ng's and zlib-rs's level 1 ("quick" deflate) keeps one
/// static block open for the whole stream. Every segment of such a stream
/// would inflate everything before it, n²/2 segments' worth in total.
pub fn wasted_inflation(index: &Index, specs: &[SegmentSpec]) -> u64 {
    if !index.gzip {
        return 0;
    }
    specs
        .iter()
        .skip(1)
        .map(|s| {
            let c = &index.candidates[s.read_from];
            c.offset
                - c.point
                    .as_ref()
                    .map_or(0, AccessPoint::out_offset)
                    .min(c.offset)
        })
        .sum()
}

/// Whether fanning out pays: the segments together must not inflate more
/// than the input once more for nothing (else the input is written
/// serially, by one chain of continuations).
pub fn worth_fanning_out(index: &Index, specs: &[SegmentSpec]) -> bool {
    specs.len() >= 2 && wasted_inflation(index, specs) <= index.bytes
}

/// The look-back for segments of `segment_bytes`.
pub fn default_lookback(segment_bytes: u64) -> u64 {
    segment_bytes / DEFAULT_LOOKBACK_FRACTION
}

/// Whether a byte scan shows the line names no new metric: every
/// `"metric"` key in it is in compact form (`"metric":"…"`, no escape)
/// and names a metric in `known`, so the line's own metric, whichever key
/// it is, is known. Anything else (no such key, a `\u` escape, the word
/// `Metric` of a definition line, an unknown name) needs the parser.
fn all_known(line: &[u8], known: &HashSet<String>) -> bool {
    const KEY: &[u8] = b"\"metric\"";
    if memchr::memmem::find(line, b"\\u").is_some()
        || memchr::memmem::find(line, b"Metric").is_some()
    {
        return false;
    }
    let mut any = false;
    for at in memchr::memmem::find_iter(line, KEY) {
        let rest = &line[at + KEY.len()..];
        let Some(rest) = rest.strip_prefix(b":\"") else {
            return false;
        };
        let Some(end) = memchr::memchr2(b'"', b'\\', rest) else {
            return false;
        };
        if rest[end] != b'"' {
            return false;
        }
        match std::str::from_utf8(&rest[..end]) {
            Ok(name) if known.contains(name) => any = true,
            _ => return false,
        }
    }
    any
}

/// Reads the whole input once: candidates about every `spacing`
/// decompressed bytes, metric names. Lines longer than
/// `opts.max_line_bytes` are skipped as the reader skips them.
pub fn index<R: Read>(
    mut source: R,
    spacing: u64,
    opts: &InputOptions,
    progress: &Progress,
) -> Result<Index, IndexError> {
    let mut head = Vec::new();
    (&mut source).take(2).read_to_end(&mut head)?;
    let gzip = is_gzip(&head);
    let counted = Counted {
        inner: io::Cursor::new(head).chain(source),
        progress,
    };
    let mut idx = Index {
        gzip,
        ..Default::default()
    };
    let mut scan = Scan {
        idx: &mut idx,
        spacing: spacing.max(1),
        opts,
        known: HashSet::new(),
        line: Vec::new(),
        too_long: false,
        at: 0,
        line_start: 0,
        lines: 0,
        points: Vec::new(),
        first: true,
        judged: false,
    };
    let mut buf = vec![0u8; 256 * 1024];
    if gzip {
        let mut dec = IndexingDecoder::new(counted)
            .map_err(|e| IndexError::Input(io::Error::other(e).to_string()))?
            .with_span(spacing.min(crate::core::input::ACCESS_POINT_SPAN));
        loop {
            let n = dec.read(&mut buf).map_err(|e| {
                if crate::core::input::gzip_index::GzipIndexError::from_io_error(&e).is_some() {
                    IndexError::Corrupt(e.to_string())
                } else {
                    IndexError::Input(e.to_string())
                }
            })?;
            scan.points.extend(dec.take_points());
            // Of the points before the next candidate can be, only the
            // latest may be of use (each holds a 32 KiB window).
            let next = scan.idx.candidates.last().map_or(0, |c| c.offset) + scan.spacing;
            if let Some(i) = scan.points.iter().rposition(|p| p.out_offset() <= next) {
                scan.points.drain(..i);
            }
            if n == 0 {
                break;
            }
            progress
                .bytes_decompressed
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            scan.feed(&buf[..n]);
            if scan.at > opts.max_decompressed_bytes {
                return Err(IndexError::TooLarge);
            }
        }
    } else {
        let mut counted = counted;
        loop {
            let n = counted.read(&mut buf)?;
            if n == 0 {
                break;
            }
            progress
                .bytes_decompressed
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            scan.feed(&buf[..n]);
        }
    }
    scan.end();
    Ok(idx)
}

/// Why the index pass failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Reading the source failed (a retry may help).
    #[error("reading the input: {0}")]
    Input(String),
    #[error("the input is not a valid gzip stream: {0}")]
    Corrupt(String),
    #[error("the input inflates beyond the size cap")]
    TooLarge,
}

impl From<io::Error> for IndexError {
    fn from(e: io::Error) -> Self {
        IndexError::Input(e.to_string())
    }
}

struct Counted<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .bytes_read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

struct Scan<'a> {
    idx: &'a mut Index,
    spacing: u64,
    opts: &'a InputOptions,
    known: HashSet<String>,
    line: Vec<u8>,
    too_long: bool,
    /// Decompressed offset of the next byte fed.
    at: u64,
    line_start: u64,
    lines: u64,
    /// Access points not yet behind a candidate (the latest ones).
    points: Vec<AccessPoint>,
    first: bool,
    /// The first non-blank line was looked at.
    judged: bool,
}

impl Scan<'_> {
    fn feed(&mut self, mut chunk: &[u8]) {
        if self.first && !chunk.is_empty() {
            // A byte-order mark is not part of line 1 (the reader skips
            // it the same way; a mark split across chunks is not worth it:
            // the first chunk holds at least 3 bytes of any real input).
            self.first = false;
            if chunk.starts_with(BOM) {
                self.idx.bom = true;
                chunk = &chunk[BOM.len()..];
                self.at += BOM.len() as u64;
                self.line_start = self.at;
            }
            self.candidate();
        }
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    self.take(&chunk[..i]);
                    self.at += i as u64 + 1;
                    chunk = &chunk[i + 1..];
                    self.end_line();
                }
                None => {
                    self.take(chunk);
                    self.at += chunk.len() as u64;
                    chunk = &[];
                }
            }
        }
    }

    fn take(&mut self, part: &[u8]) {
        if self.too_long {
            return;
        }
        if self.line.len() + part.len() > self.opts.max_line_bytes {
            self.too_long = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn end_line(&mut self) {
        self.lines += 1;
        if !self.too_long {
            let mut l = std::mem::take(&mut self.line);
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            if !self.judged && !l.iter().all(u8::is_ascii_whitespace) {
                self.judged = true;
                self.idx.json = std::str::from_utf8(&l).is_ok_and(|t| {
                    matches!(parse_line(t), Ok(Line::Metric { .. } | Line::Point(_)))
                });
            }
            self.names(&l);
            self.line = l;
            self.line.clear();
        }
        self.too_long = false;
        self.line_start = self.at;
        if self.line_start >= self.idx.candidates.last().map_or(0, |c| c.offset) + self.spacing {
            self.candidate();
        }
    }

    fn candidate(&mut self) {
        let off = self.line_start;
        // The latest access point at or before the line (older ones are
        // of no use any more).
        let keep = self.points.iter().rposition(|p| p.out_offset() <= off);
        let point = keep.map(|i| {
            let p = self.points[i].clone();
            self.points.drain(..=i);
            p
        });
        let point = point.or_else(|| self.idx.candidates.last().and_then(|c| c.point.clone()));
        self.idx.candidates.push(Candidate {
            lines: self.lines,
            offset: off,
            point: if self.idx.gzip { point } else { None },
        });
    }

    fn names(&mut self, line: &[u8]) {
        if all_known(line, &self.known) {
            return;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        let (name, kind) = match parse_line(text) {
            Ok(Line::Metric { name, kind }) => (name, kind),
            Ok(Line::Point(p)) => (p.metric, None),
            _ => return,
        };
        let new = !self.known.contains(&*name);
        if new || kind.is_some() {
            self.idx.metrics.push(MetricSeen {
                line: self.lines,
                name: name.to_string(),
                kind,
            });
        }
        if new {
            self.known.insert(name.into_owned());
        }
    }

    fn end(&mut self) {
        if !self.line.is_empty() || self.too_long {
            self.lines += 1;
            let l = std::mem::take(&mut self.line);
            if !self.too_long {
                self.names(&l);
            }
        }
        if self.idx.candidates.is_empty() {
            self.candidate();
        }
        self.idx.lines = self.lines;
        self.idx.bytes = self.at;
    }
}

/// The input position of a candidate (for [`run_segment`]'s `from`).
pub fn position(index: &Index, c: &Candidate) -> Option<InputPosition> {
    (c.lines > 0 || c.offset > 0).then(|| InputPosition {
        lines: c.lines,
        offset: c.offset,
        gzip: index.gzip,
        bom: index.bom,
        finished: false,
        pending: Vec::new(),
        source_done: false,
        point: c.point.clone(),
    })
}

/// Where a segment's source must start (a ranged read from here on).
pub fn source_offset(from: Option<&InputPosition>) -> u64 {
    from.map_or(0, InputPosition::source_offset)
}

/// What a segment did.
#[derive(Debug)]
pub struct SegmentOutcome {
    /// Its own counters (see the module doc); `bytes_read` and
    /// `bytes_decompressed` are its own reading, look-back included.
    pub report: RunReport,
    /// The lines of the records it owned: from its start break to the
    /// next segment's (None: to the end of the input).
    pub owned: (u64, Option<u64>),
    /// Records fed to the guard from the look-back.
    pub warmed: u64,
    /// The sink asked to stop: the segment is incomplete.
    pub stopped: bool,
    pub error: Option<InputError>,
    /// The nominal end it stood for: the spec's, or, when it wrapped up
    /// early, the line after the one it was at (the next part's
    /// [`SegmentSpec::start_line`]).
    pub end_line: Option<u64>,
}

impl SegmentOutcome {
    /// It ended before its planned end: the rest of its range is left to
    /// a next part starting at [`Self::end_line`].
    pub fn wrapped_up(&self, spec: &SegmentSpec) -> bool {
        self.end_line != spec.end_line
    }
}

/// Runs one segment: reads `source` (the input from
/// [`source_offset`]`(from)` on), converts from `from`, warms `encoder`
/// with the look-back's records and hands the requests of the records the
/// segment owns to `sink`. `metrics` is the index's list (those before
/// the read start seed the converter).
///
/// # Wrapping up early
///
/// `wrap_up()` is asked at every line from the start line on (first when
/// the look-back is behind). Once it returns true (the Lambda's time is
/// nearly up) the
/// segment moves its nominal end to the line after the one it is at and
/// ends as at a planned end: at the next hard break, its grouping window
/// handed out. The rest is a *part* of the same segment: the same spec
/// and read start with `start_line` = [`SegmentOutcome::end_line`]. It
/// owns from the same hard break on and warms its guard with everything
/// before (all the records the first part wrote are in its look-back), so
/// the parts together write the segment's records. The price is the next
/// part inflating and converting the earlier parts' lines again (an
/// order of magnitude faster than writing them), only when time ran out.
#[allow(clippy::too_many_arguments)]
pub fn run_segment<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    metrics: &[MetricSeen],
    spec: &SegmentSpec,
    from: Option<InputPosition>,
    encoder: &mut E,
    progress: Arc<Progress>,
    wrap_up: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
) -> SegmentOutcome {
    let mut convert = opts.convert.clone();
    encoder.adapt(&mut convert);
    let mut report = RunReport {
        input: name.to_owned(),
        model: convert.model.as_str().to_owned(),
        ..Default::default()
    };
    let mut conv = Converter::new(convert);
    let read_start = from.as_ref().map_or(0, |p| p.lines);
    for m in metrics.iter().filter(|m| m.line <= read_start) {
        conv.define_metric(&m.name, m.kind);
    }
    // Counters of lines outside the nominal range, and of records not
    // written here.
    let mut scratch = RunReport::default();
    let start_line = spec.start_line;
    // Moves when it wraps up early.
    let mut end_line = spec.end_line;
    let owns_line =
        |n: u64, end_line: Option<u64>| n >= start_line && end_line.is_none_or(|e| n < e);
    // Ownership breaks: segment 0 owns from line 1 (a later part of it,
    // like any segment, from the first hard break at its start line).
    let mut begin: Option<u64> = (spec.number == 0 && spec.start_line <= 1).then_some(1);
    let mut end: Option<u64> = None;
    let mut warm_from: Option<u64> = (spec.number == 0).then_some(1);
    let mut prev_time: Option<i64> = None;
    let (mut tmin, mut tmax) = (i64::MAX, i64::MIN);
    let mut out: Vec<Record> = Vec::new();
    let mut stopped = false;
    let mut warmed = 0u64;
    let mut last_bad_line = 0u64;
    let mut seen_lines = 0u64;

    let mut route = |out: &mut Vec<Record>,
                     begin: Option<u64>,
                     end: Option<u64>,
                     warm_from: Option<u64>,
                     report: &mut RunReport,
                     scratch: &mut RunReport,
                     encoder: &mut E,
                     stopped: &mut bool| {
        for r in out.drain(..) {
            let first = r.lines.first().copied().unwrap_or(0);
            let owned = begin.is_some_and(|b| first >= b) && end.is_none_or(|e| first < e);
            if owned {
                tmin = tmin.min(r.time_ns);
                tmax = tmax.max(r.time_ns);
                if let Some(req) = encoder.push(r, report) {
                    if sink(req, report).is_break() {
                        *stopped = true;
                    }
                }
            } else if warm_from.is_some_and(|w| first >= w) && begin.is_none_or(|b| first < b) {
                warmed += 1;
                encoder.warm(r, scratch);
            }
        }
    };

    let lines = for_each_line_bounded(
        source,
        name,
        &opts.input,
        progress.clone(),
        from,
        spec.end_offset,
        |n, ev| {
            seen_lines = n;
            if end.is_none() && end_line.is_none_or(|e| n + 1 < e) && n >= start_line && wrap_up() {
                end_line = Some(n + 1);
            }
            let rep: &mut RunReport = if owns_line(n, end_line) {
                &mut report
            } else {
                &mut scratch
            };
            let bytes = match ev {
                LineEvent::TooLong => {
                    rep.skip("line_too_long", n);
                    last_bad_line = n;
                    return true;
                }
                LineEvent::Line(b) => b,
                // Segments read files, never live input: no ticks.
                LineEvent::Tick => return true,
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                rep.blank_lines += 1;
                last_bad_line = n;
                return true;
            }
            let Ok(text) = std::str::from_utf8(bytes) else {
                rep.skip("invalid_utf8", n);
                last_bad_line = n;
                return true;
            };
            match parse_line(text) {
                Err(e) => {
                    rep.skip(e.reason(), n);
                    last_bad_line = n;
                }
                Ok(Line::Metric { name, kind }) => {
                    rep.metric_definitions += 1;
                    conv.define_metric(&name, kind);
                }
                Ok(Line::Other { kind }) => *rep.ignored.entry(kind.into_owned()).or_default() += 1,
                Ok(Line::Point(p)) => {
                    let t = parse_rfc3339_ns(&p.time);
                    if matches!(t, Err(TimeError::Syntax | TimeError::Range)) {
                        rep.skip("invalid_time", n);
                        last_bad_line = n;
                        return true;
                    }
                    let before = rep.measures;
                    conv.push_point(&p, t, n, rep, &mut |r| out.push(r));
                    if rep.measures > before {
                        // A measured point: a hard break when its time differs
                        // from the previous measured point's.
                        let t = t.unwrap_or_default();
                        if prev_time.is_some_and(|p| p != t) {
                            if warm_from.is_none() {
                                warm_from = Some(n);
                            }
                            if begin.is_none() && n >= start_line {
                                begin = Some(n);
                            }
                            if end.is_none() && end_line.is_some_and(|e| n >= e) {
                                end = Some(n);
                                begin.get_or_insert(n);
                            }
                        }
                        prev_time = Some(t);
                    }
                    if !out.is_empty() {
                        route(
                            &mut out,
                            begin,
                            end,
                            warm_from,
                            &mut report,
                            &mut scratch,
                            encoder,
                            &mut stopped,
                        );
                    }
                    if end.is_some() || stopped {
                        return false;
                    }
                }
            }
            true
        },
    );
    let (format, error) = (lines.format, lines.result.err());
    report.gzip = format.gzip;
    report.bom = format.bom;
    let retry_will_reread = error.as_ref().is_some_and(InputError::retryable);
    if !stopped && !retry_will_reread {
        if end.is_none() {
            // The input ended before the next segment's break: everything
            // left is ours (the next segment owns nothing).
            let cut_off = error.is_some() || (format.unterminated && last_bad_line == seen_lines);
            if cut_off {
                let rep = if owns_line(seen_lines, end_line) {
                    &mut report
                } else {
                    &mut scratch
                };
                conv.discard_group(TRUNCATED_TAIL, rep);
            }
            conv.flush(&mut |r| out.push(r));
            route(
                &mut out,
                begin,
                end,
                warm_from,
                &mut report,
                &mut scratch,
                encoder,
                &mut stopped,
            );
        }
        // Until it has nothing left: a grouping window may hold several.
        while !stopped {
            let Some(req) = encoder.finish(&mut report) else {
                break;
            };
            if sink(req, &mut report).is_break() {
                stopped = true;
            }
        }
    }
    let (r, d) = progress.read();
    report.bytes_read = r;
    report.bytes_decompressed = d;
    // Lines: those of the nominal range this segment saw.
    let last = end_line.map_or(seen_lines, |e| seen_lines.min(e - 1));
    report.lines = (last + 1).saturating_sub(start_line);
    if let Some(e) = &error {
        report.error = Some(e.to_string());
    }
    report.complete = error.is_none() && !stopped;
    if tmin <= tmax {
        report.first_time = Some(format_rfc3339_ns(tmin));
        report.last_time = Some(format_rfc3339_ns(tmax));
    }
    report.segments = 1;
    let owned_from = begin.unwrap_or(end.unwrap_or(seen_lines + 1));
    SegmentOutcome {
        report,
        owned: (owned_from, end),
        warmed,
        stopped,
        error,
        end_line,
    }
}

/// The object's report from its segments' (in segment order, a
/// segment's parts in theirs): counters summed, times widened, `segments`
/// summed (a segment's first part says 1, its later parts 0), `complete`
/// only when every part is; the first error kept.
pub fn merge_reports(parts: &[RunReport]) -> RunReport {
    let mut m = RunReport::default();
    let mut first = true;
    for p in parts {
        if first {
            m.input.clone_from(&p.input);
            m.version_id.clone_from(&p.version_id);
            m.model.clone_from(&p.model);
            m.gzip = p.gzip;
            m.bom = p.bom;
            m.complete = true;
            first = false;
        }
        m.bytes_read += p.bytes_read;
        m.bytes_decompressed += p.bytes_decompressed;
        m.lines += p.lines;
        m.blank_lines += p.blank_lines;
        m.metric_definitions += p.metric_definitions;
        m.points += p.points;
        add_counts(&mut m.points_by_kind, &p.points_by_kind);
        m.measures += p.measures;
        m.add_encoder_counters(p);
        add_counts(&mut m.skipped, &p.skipped);
        add_lines(&mut m.skipped_first_lines, &p.skipped_first_lines);
        add_counts(&mut m.ignored, &p.ignored);
        add_counts(&mut m.dropped, &p.dropped);
        add_lines(&mut m.dropped_first_lines, &p.dropped_first_lines);
        add_counts(&mut m.adjusted, &p.adjusted);
        m.first_time = min_time(m.first_time.take(), p.first_time.clone(), true);
        m.last_time = min_time(m.last_time.take(), p.last_time.clone(), false);
        m.add_carried(p);
        m.batches_skipped += p.batches_skipped;
        m.continuations += p.continuations;
        // A segment's first part counts 1, its later parts 0.
        m.segments += p.segments;
        m.complete &= p.complete;
        if m.error.is_none() {
            m.error.clone_from(&p.error);
        }
    }
    m.chain_bytes_read = m.chain_bytes_read.max(m.bytes_read);
    m.chain_bytes_decompressed = m.chain_bytes_decompressed.max(m.bytes_decompressed);
    m
}

/// First lines per reason: the report keeps the first few of the whole
/// input (see [`RunReport::skip`]).
fn add_lines(
    into: &mut std::collections::BTreeMap<String, Vec<u64>>,
    from: &std::collections::BTreeMap<String, Vec<u64>>,
) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        e.extend(v);
        e.sort_unstable();
        e.dedup();
        e.truncate(crate::core::report::FIRST_LINES_KEPT);
    }
}

/// RFC 3339 UTC texts of one format compare as times.
fn min_time(a: Option<String>, b: Option<String>, earliest: bool) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if (a <= b) == earliest { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of many deflate blocks fans out; the same text written as
    /// one static block (zlib-rs level 1) has no access points and does not.
    #[test]
    fn single_block_gzip_is_not_worth_fanning_out() {
        use std::io::Write;
        let mut text = Vec::new();
        for i in 0..60_000u64 {
            writeln!(
                text,
                r#"{{"metric":"m{}","type":"Point","data":{{"time":"2026-01-01T00:00:{:02}.{:09}Z","value":{},"tags":{{"n":"{}"}}}}}}"#,
                i % 7,
                (i / 1000) % 60,
                i * 7919 % 1_000_000_000,
                i * 31 % 977,
                i % 13
            )
            .unwrap();
        }
        let gz = |level: u32| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(&text).unwrap();
            e.finish().unwrap()
        };
        let opts = InputOptions::default();
        let segment_bytes = text.len() as u64 / 6;
        for (level, worth) in [(6, true), (1, false)] {
            let idx = index(
                &gz(level)[..],
                segment_bytes / 32,
                &opts,
                &Progress::default(),
            )
            .unwrap();
            let specs = plan_index(&idx, segment_bytes, default_lookback(segment_bytes));
            assert!(specs.len() >= 4, "level {level}: {} segments", specs.len());
            assert_eq!(
                worth_fanning_out(&idx, &specs),
                worth,
                "level {level}: wasted {} of {}",
                wasted_inflation(&idx, &specs),
                idx.bytes
            );
        }
        // Plain text never wastes anything.
        let idx = index(&text[..], segment_bytes / 32, &opts, &Progress::default()).unwrap();
        let specs = plan_index(&idx, segment_bytes, default_lookback(segment_bytes));
        assert_eq!(wasted_inflation(&idx, &specs), 0);
        assert!(worth_fanning_out(&idx, &specs));
    }

    fn spec(number: u32, start_line: u64, end_line: Option<u64>, read_from: usize) -> SegmentSpec {
        // Candidates of the table below: line l starts at offset (l-1)×10.
        SegmentSpec {
            number,
            start_line,
            end_line,
            end_offset: end_line.map(|l| (l - 1) * 10),
            read_from,
        }
    }

    #[test]
    fn plan_cuts_at_candidates_with_look_back() {
        // (lines before, offset) every 100 bytes, 10 lines each.
        let c: Vec<(u64, u64)> = (0..10).map(|i| (i * 10, i * 100)).collect();
        let cases: &[(u64, u64, u64, Vec<SegmentSpec>)] = &[
            // Small enough: one segment, no cut.
            (1000, 1000, 0, vec![spec(0, 1, None, 0)]),
            (1000, 5000, 300, vec![spec(0, 1, None, 0)]),
            // Two halves, cut at offset 500 (line 51), read from 300.
            (
                1000,
                500,
                200,
                vec![spec(0, 1, Some(51), 0), spec(1, 51, None, 3)],
            ),
            // Ideal cuts at 333, 666: first candidates at or after them.
            (
                1000,
                334,
                0,
                vec![
                    spec(0, 1, Some(41), 0),
                    spec(1, 41, Some(71), 4),
                    spec(2, 71, None, 7),
                ],
            ),
            // A look-back longer than the input before: from the start.
            (
                1000,
                500,
                10_000,
                vec![spec(0, 1, Some(51), 0), spec(1, 51, None, 0)],
            ),
            // More segments than candidates: one per candidate at most.
            (
                1000,
                1,
                0,
                (0..10)
                    .map(|i| {
                        spec(
                            i,
                            if i == 0 { 1 } else { u64::from(i) * 10 + 1 },
                            (i < 9).then(|| u64::from(i + 1) * 10 + 1),
                            i as usize,
                        )
                    })
                    .collect(),
            ),
        ];
        for (bytes, seg, look, want) in cases {
            assert_eq!(&plan(&c, *bytes, *seg, *look), want, "{bytes} {seg} {look}");
        }
        // No candidates but the first (one long line): one segment.
        assert_eq!(plan(&[(0, 0)], 1 << 30, 1, 0), vec![spec(0, 1, None, 0)]);
    }

    #[test]
    fn a_byte_scan_vouches_only_for_known_compact_names() {
        let known: HashSet<String> = ["http_reqs".to_owned(), "vus".to_owned()].into();
        let cases: &[(&str, bool)] = &[
            (r#"{"metric":"http_reqs","type":"Point","data":{}}"#, true),
            (r#"{"metric":"iterations","type":"Point"}"#, false),
            // A tag named metric with a known value, the key itself new.
            (
                r#"{"metric":"new","data":{"tags":{"metric":"vus"}}}"#,
                false,
            ),
            (r#"{"metric" : "vus"}"#, false),
            (
                r#"{"m\u0065tric":"new","data":{"tags":{"metric":"vus"}}}"#,
                false,
            ),
            (r#"{"metric":"vus\"x"}"#, false),
            (
                r#"{"type":"Metric","data":{"name":"vus"},"metric":"vus"}"#,
                false,
            ),
            (r#"{"type":"Point"}"#, false),
            ("", false),
        ];
        for (line, want) in cases {
            assert_eq!(all_known(line.as_bytes(), &known), *want, "{line}");
        }
    }

    #[test]
    fn merged_reports_sum_and_widen() {
        let a = RunReport {
            input: "x".into(),
            points: 3,
            lines: 4,
            first_time: Some("2026-01-01T00:00:02.000000000Z".into()),
            last_time: Some("2026-01-01T00:00:05.000000000Z".into()),
            bytes_decompressed: 10,
            skipped_first_lines: [("bad".to_owned(), vec![9])].into(),
            skipped: [("bad".to_owned(), 1)].into(),
            complete: true,
            segments: 1,
            ..Default::default()
        };
        let b = RunReport {
            points: 2,
            lines: 1,
            first_time: Some("2026-01-01T00:00:01.000000000Z".into()),
            last_time: Some("2026-01-01T00:00:03.000000000Z".into()),
            bytes_decompressed: 7,
            skipped_first_lines: [("bad".to_owned(), vec![2])].into(),
            skipped: [("bad".to_owned(), 1)].into(),
            complete: false,
            error: Some("boom".into()),
            segments: 1,
            ..Default::default()
        };
        let m = merge_reports(&[a, b]);
        assert_eq!((m.points, m.lines, m.segments), (5, 5, 2));
        assert_eq!(m.input, "x");
        assert_eq!(
            m.first_time.as_deref(),
            Some("2026-01-01T00:00:01.000000000Z")
        );
        assert_eq!(
            m.last_time.as_deref(),
            Some("2026-01-01T00:00:05.000000000Z")
        );
        assert_eq!(m.skipped_first_lines["bad"], [2, 9]);
        assert_eq!(m.skipped["bad"], 2);
        assert_eq!(m.chain_bytes_decompressed, 17);
        assert!(!m.complete);
        assert_eq!(m.error.as_deref(), Some("boom"));
        assert_eq!(merge_reports(&[]), RunReport::default());
    }
}
