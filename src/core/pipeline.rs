//! parse → convert → encode over a byte stream: the whole pure core.
//!
//! The input's format is told by its first lines, never by its name: a k6
//! CSV header makes it CSV, a k6 JSON line (`Metric` or `Point`) makes it
//! JSON ([`LineFormat`]). Input whose first [`DETECT_LINES`] non-blank lines
//! hold neither is not k6 output: one [`InputError::NotK6`], and reading
//! stops there.

use crate::core::convert::{ConvertOptions, Converter};
use crate::core::input::{
    for_each_line_from, InputError, InputOptions, InputPosition, LineEvent, Progress,
};
use crate::core::k6::csv::{self, CsvLayout, CsvParser, Row, TimeFormat};
use crate::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns, TimeError};
use crate::core::k6::{fast, Line, LineError, Point};
use crate::core::model::Record;
use crate::core::report::RunReport;
use crate::core::resume::PipelineState;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Non-blank lines looked at, at most, to recognise k6 output. k6's first
/// line is a `Metric` line (JSON) or the header (CSV); five leave room for a
/// few damaged or foreign lines at the start (a truncated first line of a
/// concatenation, a banner) while a file that is not k6 output at all is
/// refused after five lines instead of being read to its end line by line.
/// Up to then the JSON path's reasons are kept aside: they are counted as
/// skipped lines once a k6 line shows it is k6 JSON (a JSON file with a few
/// bad lines converts as before), and dropped with the error otherwise.
/// An input that ends before, on a line without `\n` (cut off), gets no
/// verdict: its lines are skipped lines of an empty run, not an error.
pub const DETECT_LINES: u64 = 5;

#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    pub convert: ConvertOptions,
    pub input: InputOptions,
}

/// A sink's request builder: records in, requests out, as a pure function
/// of the record sequence (request N of an input is always the same
/// request, which is what lets a resumed run skip confirmed requests).
pub trait Encoder {
    type Request;
    /// Takes a record; returns a request when one is complete.
    fn push(&mut self, r: Record, report: &mut RunReport) -> Option<Self::Request>;
    /// At the end of the input: the requests still held, one per call,
    /// until it returns `None` (an encoder that gathers records before
    /// cutting requests may hold several).
    fn finish(&mut self, report: &mut RunReport) -> Option<Self::Request>;
    /// A request of what it holds now, with more records to come (live
    /// input, [`InputOptions::flush_interval`]); called until it returns
    /// None, like [`Encoder::finish`]; the sequence goes on after it. The
    /// default is `finish`, right for an encoder whose `finish` leaves it
    /// ready for more records.
    fn flush(&mut self, report: &mut RunReport) -> Option<Self::Request> {
        self.finish(report)
    }
    /// Takes a record that precedes the part of the input being written
    /// (a segment's look-back, see [`crate::core::segment`]): updates
    /// whatever later records depend on (the collision guard) exactly as
    /// [`push`](Self::push) would, and produces nothing. Deliberately no
    /// default: an encoder with state must say what it keeps.
    fn warm(&mut self, r: Record, report: &mut RunReport);
    /// Adapts the converter's options to the records this encoder takes
    /// (InfluxDB: groups whatever the model, metadata kept apart from
    /// tags). By default they are used as given.
    fn adapt(&self, _convert: &mut ConvertOptions) {}
    /// The input's times are coarser than its samples' (k6 CSV in whole
    /// seconds, milliseconds or microseconds): records equal in everything,
    /// time included, are distinct samples, not one sample written twice. A
    /// sink that would store such records once, or let one overwrite the
    /// other, must keep them apart. Called once per run, before the first
    /// record with such a time (a resumed run is not told again: the
    /// encoder's checkpoint keeps it). Default: nothing.
    fn coarse_times(&mut self) {}
}

/// The result of running the pipeline over one input.
#[derive(Debug)]
pub struct Outcome {
    /// Conversion counters (also filled when `error` is set).
    pub report: RunReport,
    /// The sink asked to stop before the end of the input.
    pub stopped: bool,
    pub error: Option<InputError>,
    /// Unless the input failed: the state at the end, from which
    /// [`run_from`] goes on after a stop (boxed: it holds the converter and
    /// up to a few MB of read-ahead). At the end of the input it is the
    /// finished state (what a stop in the last request's send leaves).
    /// Always None for live input ([`InputOptions::flush_interval`]): a
    /// resumed run could not rebuild the requests its ticks cut, and a
    /// pipe cannot be read again from an offset anyway.
    pub state: Option<Box<PipelineState>>,
}

/// Report key (`dropped`) of the points of a MULTI group withheld because
/// the input ended mid-write (see [`run`]).
pub const TRUNCATED_TAIL: &str = "input_truncated_tail";

/// What the input's lines are, decided on its first k6 line. Part of the
/// pipeline's state (a checkpoint keeps it): a resumed CSV run goes on with
/// the header's layout and the timestamp format its first row fixed.
#[derive(Debug, Serialize, Deserialize)]
pub enum LineFormat {
    /// No k6 line yet: the lines looked at, with their JSON reasons.
    Unknown(Vec<(u64, Unrecognised)>),
    Json,
    Csv(Box<CsvInput>),
}

impl Default for LineFormat {
    fn default() -> Self {
        LineFormat::Unknown(Vec::new())
    }
}

/// What the JSON path would report a line before the format is known as.
#[derive(Debug, Serialize, Deserialize)]
pub enum Unrecognised {
    Skip(String),
    Ignored(String),
}

/// The CSV branch's state.
#[derive(Debug, Serialize, Deserialize)]
pub struct CsvInput {
    parser: CsvParser,
    /// First physical line of the record being read.
    record_start: u64,
    /// The current header's timestamp format, once a row fixed it.
    time_format: Option<TimeFormat>,
    /// The encoder was told of coarse times.
    told_coarse: bool,
}

/// Converter → encoder → sink, with what `run` reports of them.
struct Stage<'s, E: Encoder> {
    conv: Converter,
    out: Vec<Record>,
    encoder: &'s mut E,
    sink: &'s mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
    stopped: bool,
    tmin: i64,
    tmax: i64,
    /// The k6 JSON line parser.
    parse: ParseLine,
    /// The last `data.time` text parsed and its instant: the points of one
    /// k6 request share their time, so most points skip the parse.
    last_time: (String, Result<i64, TimeError>),
}

/// A k6 line parser ([`fast::parse_line_known`], or the serde parser
/// alone), told the converter's known tag texts
/// ([`Converter::known_tags`]).
type ParseLine = for<'a, 'k> fn(&'a str, (&'k str, &'k str)) -> Result<Line<'a>, LineError>;

impl<E: Encoder> Stage<'_, E> {
    /// [`parse_rfc3339_ns`] of `text`, remembered for the next point.
    #[inline]
    fn time_of(&mut self, text: &str) -> Result<i64, TimeError> {
        if self.last_time.0 != text {
            self.last_time.0.clear();
            self.last_time.0.push_str(text);
            self.last_time.1 = parse_rfc3339_ns(text);
        }
        self.last_time.1
    }

    /// A tick of live input: the group in progress and every request the
    /// encoder holds go out now (see `InputOptions::flush_interval` for
    /// what that costs), unless the sink stopped taking requests (then
    /// they stay in the converter and the encoder).
    fn flush_live(&mut self, report: &mut RunReport) -> bool {
        let out = &mut self.out;
        self.conv.flush(&mut |r| out.push(r));
        if !self.deliver(report) {
            return false;
        }
        while let Some(req) = self.encoder.flush(report) {
            if (self.sink)(req, report).is_break() {
                self.stopped = true;
                break;
            }
        }
        !self.stopped
    }

    #[inline]
    fn convert(
        &mut self,
        p: &Point<'_>,
        t: Result<i64, TimeError>,
        line: u64,
        report: &mut RunReport,
    ) {
        let out = &mut self.out;
        self.conv
            .push_point(p, t, line, report, &mut |r| out.push(r));
    }

    /// Hands the converted records to the encoder and its requests to the
    /// sink; `false` once the sink asked to stop. After a stop the rest of
    /// the line's records still go to the encoder (so the state is "after
    /// this line").
    #[inline]
    fn deliver(&mut self, report: &mut RunReport) -> bool {
        for r in self.out.drain(..) {
            self.tmin = self.tmin.min(r.time_ns);
            self.tmax = self.tmax.max(r.time_ns);
            if let Some(req) = self.encoder.push(r, report) {
                if (self.sink)(req, report).is_break() {
                    self.stopped = true;
                }
            }
        }
        !self.stopped
    }
}

/// Runs `source` through the core and `encoder`, handing each request to
/// `sink` in order. `sink` returns `Break` to stop: the run then ends after
/// the line being converted (its records still go into the encoder), and
/// the pending partial group and batch are not emitted but kept in the
/// outcome's [`state`](Outcome::state), from which [`run_from`] goes on.
///
/// How the input ends decides what of the tail goes out:
///
/// - **to its end**: everything.
/// - **a read error a retry can cure** ([`InputError::retryable`]: the
///   connection dropped mid-body): like a stop, the pending MULTI group and
///   the partial batch are withheld. A retry reads the object again from
///   its start and produces the same requests, so only what it will
///   reproduce identically may have gone out; the group in progress at the
///   cut would come back with more measures (same dimensions, measure name
///   and time, other values: a conflict Timestream rejects).
/// - **cut off for good** (a corrupt or truncated gzip stream, the size
///   cap, or a last line without `\n` that is blank or not a valid line
///   or record, or a CSV quoted cell still open at the end: what a k6
///   process killed mid-write or a truncated upload leaves): the pending
///   MULTI group is withheld and its points are counted as dropped
///   [`TRUNCATED_TAIL`]; the partial batch goes out. Every record before
///   that group is a pure function of the lines before it, so when the
///   complete file later replaces the object (same key, new event) its run
///   writes those records again identically (Timestream keeps them once)
///   and the withheld group in full: the re-upload stays idempotent. The
///   price: a file that is only damaged at its end, never replaced, loses
///   its last group (≤ 256 points, counted). SINGLE records are one point
///   each and never withheld.
/// - **not k6 output** ([`InputError::NotK6`]): nothing was converted.
pub fn run<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    encoder: &mut E,
    progress: Arc<Progress>,
    sink: &mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
) -> Outcome {
    run_from(source, name, opts, encoder, progress, None, sink)
}

/// [`run`], or the rest of a stopped run when `from` is its state (then
/// `encoder` must be the encoder as it was at the stop, `source` must
/// yield the input from `from.input.source_offset()` on, and the requests
/// that follow are exactly those the stopped run would have produced).
pub fn run_from<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    encoder: &mut E,
    progress: Arc<Progress>,
    from: Option<PipelineState>,
    sink: &mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
) -> Outcome {
    // The one place the line parser is chosen: the scanner for k6's layout
    // (serde_json as its exact fallback); the tests run the serde parser
    // alone through `run_parsed` for a differential check.
    run_parsed(
        source,
        name,
        opts,
        encoder,
        progress,
        from,
        sink,
        fast::parse_line_known,
    )
}

#[allow(clippy::too_many_arguments)] // run_from's arguments and the parser
fn run_parsed<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    encoder: &mut E,
    progress: Arc<Progress>,
    from: Option<PipelineState>,
    sink: &mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
    parse: ParseLine,
) -> Outcome {
    let (mut report, conv, (tmin, tmax), position, mut format) = match from {
        Some(s) => (s.report, s.converter, s.time_range, Some(s.input), s.format),
        None => {
            let mut convert = opts.convert.clone();
            encoder.adapt(&mut convert);
            (
                RunReport {
                    input: name.to_owned(),
                    model: convert.model.as_str().to_owned(),
                    ..Default::default()
                },
                Converter::new(convert),
                (i64::MAX, i64::MIN),
                None,
                LineFormat::default(),
            )
        }
    };
    let mut stage = Stage {
        conv,
        out: Vec::new(),
        encoder,
        sink,
        stopped: false,
        tmin,
        tmax,
        parse,
        // "" is no time: its parse is an error, as it is here.
        last_time: (String::new(), parse_rfc3339_ns("")),
    };
    let mut not_k6 = false;
    // The last line that was blank or not a usable line (tail rule).
    let mut last_bad_line = 0u64;

    let (p, from) = (progress.clone(), position);
    let lines = for_each_line_from(source, name, &opts.input, p, from, |n, ev| {
        report.lines = n;
        if let LineEvent::Tick = ev {
            return stage.flush_live(&mut report);
        }
        match &mut format {
            LineFormat::Json => json_line(n, ev, &mut stage, &mut report, &mut last_bad_line),
            LineFormat::Csv(c) => csv_line(n, ev, c, &mut stage, &mut report, &mut last_bad_line),
            LineFormat::Unknown(seen) => match detect(n, &ev, seen, &mut report, parse) {
                Detected::NotYet => {
                    last_bad_line = n;
                    not_k6 = seen.len() as u64 >= DETECT_LINES;
                    !not_k6
                }
                Detected::Json => {
                    settle(seen, None, &mut report);
                    format = LineFormat::Json;
                    report.format = "json".to_owned();
                    json_line(n, ev, &mut stage, &mut report, &mut last_bad_line)
                }
                Detected::Csv => {
                    settle(seen, Some("csv_missing_header"), &mut report);
                    let mut c = Box::new(CsvInput {
                        parser: CsvParser::default().with_first_line(n),
                        record_start: n,
                        time_format: None,
                        told_coarse: false,
                    });
                    let go = csv_line(n, ev, &mut c, &mut stage, &mut report, &mut last_bad_line);
                    format = LineFormat::Csv(c);
                    report.format = "csv".to_owned();
                    go
                }
            },
        }
    });
    let (input_format, mut error) = (lines.format, lines.result.err());
    if let LineFormat::Unknown(seen) = &mut format {
        // Input cut off (its last line has no `\n`) before DETECT_LINES
        // lines gave a verdict: no verdict. It may be the start of a k6 file
        // that a killed k6 or a cut upload left, with a few bad lines before
        // a first k6 line that was cut; the lines are counted as the JSON
        // path would count them, and the tail rule below applies.
        if !not_k6 && input_format.unterminated {
            settle(seen, None, &mut report);
        }
        // Stopped at DETECT_LINES, or the whole input had fewer lines and
        // none of them was k6's. (An empty or blank input is an empty run.)
        if error.is_none() && (not_k6 || !seen.is_empty()) {
            error = Some(InputError::NotK6 {
                input: name.to_owned(),
                lines: seen.len() as u64,
            });
        }
    }
    report.gzip = input_format.gzip;
    report.bom = input_format.bom;
    let mut open_quote_at_end = false;
    if let LineFormat::Csv(c) = &mut format {
        if error.is_none() && !stage.stopped {
            // A quoted cell still open at the end of the input.
            if let Err(e) = c.parser.finish() {
                report.skip(e.error.reason(), e.line);
                open_quote_at_end = true;
            }
        }
    }
    let retry_will_reread = error.as_ref().is_some_and(InputError::retryable);
    if !stage.stopped && !retry_will_reread {
        let cut_off = error.is_some()
            || open_quote_at_end
            || (input_format.unterminated && last_bad_line == report.lines);
        if cut_off {
            stage.conv.discard_group(TRUNCATED_TAIL, &mut report);
        }
        let out = &mut stage.out;
        stage.conv.flush(&mut |r| out.push(r));
        if stage.deliver(&mut report) {
            while let Some(req) = stage.encoder.finish(&mut report) {
                if (stage.sink)(req, &mut report).is_break() {
                    stage.stopped = true;
                    break;
                }
            }
        }
    }
    if let LineFormat::Csv(c) = &format {
        csv_warnings(c, &mut report);
    }
    let (r, d) = progress.read();
    report.bytes_read = r;
    report.bytes_decompressed = d;
    if let Some(e) = &error {
        report.error = Some(e.to_string());
        report.failure_reason = e.reason().map(str::to_owned);
    }
    let Stage {
        conv,
        stopped,
        tmin,
        tmax,
        ..
    } = stage;
    report.complete = error.is_none() && !stopped;
    if tmin <= tmax {
        report.first_time = Some(format_rfc3339_ns(tmin));
        report.last_time = Some(format_rfc3339_ns(tmax));
    }
    let live = opts.input.flush_interval.is_some();
    let state = (error.is_none() && !live).then(|| {
        Box::new(PipelineState {
            converter: conv,
            report: report.clone(),
            time_range: (tmin, tmax),
            input: lines
                .stopped_at
                .unwrap_or_else(|| InputPosition::end(input_format, report.lines, lines.offset)),
            format,
        })
    });
    Outcome {
        report,
        stopped,
        error,
        state,
    }
}

enum Detected {
    NotYet,
    Json,
    Csv,
}

/// Looks at a line before the format is known.
fn detect(
    n: u64,
    ev: &LineEvent<'_>,
    seen: &mut Vec<(u64, Unrecognised)>,
    report: &mut RunReport,
    parse: ParseLine,
) -> Detected {
    let bytes = match ev {
        LineEvent::TooLong => {
            seen.push((n, Unrecognised::Skip("line_too_long".into())));
            return Detected::NotYet;
        }
        LineEvent::Line(b) => *b,
        // (Ticks are handled before: see `run_parsed`.)
        LineEvent::Tick => return Detected::NotYet,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        report.blank_lines += 1;
        return Detected::NotYet;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        seen.push((n, Unrecognised::Skip("invalid_utf8".into())));
        return Detected::NotYet;
    };
    if csv::is_header(text) {
        return Detected::Csv;
    }
    match parse_json(parse, text, ("", "")) {
        Ok(Line::Metric { .. } | Line::Point(_)) => return Detected::Json,
        // A JSON object of another `type` is no evidence of k6.
        Ok(Line::Other { kind }) => seen.push((n, Unrecognised::Ignored(kind.into_owned()))),
        Err(e) => seen.push((n, Unrecognised::Skip(e.reason().into()))),
    }
    Detected::NotYet
}

/// Counts the lines looked at before the format was known: as the JSON path
/// would, or (CSV) as lines before the header, `reason` (a too long or
/// non-UTF-8 line keeps its own reason).
fn settle(
    seen: &mut Vec<(u64, Unrecognised)>,
    reason: Option<&'static str>,
    report: &mut RunReport,
) {
    for (n, u) in seen.drain(..) {
        match (u, reason) {
            (Unrecognised::Skip(r), _) if r == "line_too_long" || r == "invalid_utf8" => {
                report.skip(&r, n)
            }
            (_, Some(r)) => report.skip(r, n),
            (Unrecognised::Skip(r), None) => report.skip(&r, n),
            (Unrecognised::Ignored(kind), None) => {
                *report.ignored.entry(kind).or_default() += 1;
            }
        }
    }
}

/// The line parser, called from this one place (format detection and the
/// JSON path): one call site keeps the parser's inlining as it was before
/// detection called it too (measured with the serde parser: two call sites
/// cost the JSON path ~2.5 % more instructions).
#[inline(never)]
fn parse_json<'a>(
    parse: ParseLine,
    text: &'a str,
    known: (&str, &str),
) -> Result<Line<'a>, LineError> {
    parse(text, known)
}

/// One line of k6 JSON output.
#[inline]
fn json_line<E: Encoder>(
    n: u64,
    ev: LineEvent<'_>,
    stage: &mut Stage<'_, E>,
    report: &mut RunReport,
    last_bad_line: &mut u64,
) -> bool {
    let bytes = match ev {
        LineEvent::TooLong => {
            report.skip("line_too_long", n);
            *last_bad_line = n;
            return true;
        }
        LineEvent::Line(b) => b,
        LineEvent::Tick => return true,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        report.blank_lines += 1;
        *last_bad_line = n;
        return true;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        report.skip("invalid_utf8", n);
        *last_bad_line = n;
        return true;
    };
    match parse_json(stage.parse, text, stage.conv.known_tags()) {
        Err(e) => {
            report.skip(e.reason(), n);
            *last_bad_line = n;
        }
        Ok(Line::Metric { name, kind }) => {
            report.metric_definitions += 1;
            stage.conv.define_metric(&name, kind);
        }
        Ok(Line::Other { kind }) => *report.ignored.entry(kind.into_owned()).or_default() += 1,
        Ok(Line::Point(p)) => {
            let t = stage.time_of(&p.time);
            if matches!(t, Err(TimeError::Syntax | TimeError::Range)) {
                report.skip("invalid_time", n);
                *last_bad_line = n;
                return true;
            }
            stage.convert(&p, t, n, report);
            if !stage.out.is_empty() {
                return stage.deliver(report);
            }
        }
    }
    true
}

/// One physical line of k6 CSV output. Every line goes to the parser,
/// blank ones included (inside a quoted cell they are content); a bad
/// record is one skipped line, at its first line.
fn csv_line<E: Encoder>(
    n: u64,
    ev: LineEvent<'_>,
    c: &mut CsvInput,
    stage: &mut Stage<'_, E>,
    report: &mut RunReport,
    last_bad_line: &mut u64,
) -> bool {
    let between_records = !c.parser.records().in_record();
    if between_records {
        c.record_start = n;
    }
    let row = match ev {
        LineEvent::TooLong => {
            report.skip("line_too_long", n);
            *last_bad_line = n;
            if let Err(e) = c.parser.skip_line() {
                report.skip(e.error.reason(), e.line);
            }
            return true;
        }
        LineEvent::Line(b) => {
            if between_records && b.iter().all(u8::is_ascii_whitespace) {
                // Counted here, not by the parser, so the count is in the
                // report (and its checkpoint) line by line.
                report.blank_lines += 1;
                *last_bad_line = n;
            }
            c.parser.push_line(b)
        }
        LineEvent::Tick => return true,
    };
    match row {
        Ok(None | Some(Row::Header)) => return true,
        Err(e) => {
            report.skip(e.error.reason(), e.line);
            *last_bad_line = n;
            return true;
        }
        Ok(Some(Row::Point(p))) => {
            let t = Ok(p.time_ns);
            stage.convert(&p.into_point(), t, c.record_start, report);
        }
    }
    // The row fixed (or kept) the layout's timestamp format; its records
    // are not with the encoder yet.
    c.time_format = c.parser.layout().and_then(CsvLayout::time_format);
    if !c.told_coarse && c.time_format.is_some_and(TimeFormat::truncates) {
        c.told_coarse = true;
        stage.encoder.coarse_times();
    }
    stage.deliver(report)
}

/// Says it once, also over a resumed run whose report already says it.
fn warn(report: &mut RunReport, w: String) {
    if !report.warnings.contains(&w) {
        report.warnings.push(w);
    }
}

/// What the report says about data read from k6 CSV.
fn csv_warnings(c: &CsvInput, report: &mut RunReport) {
    if report.points > 0 {
        warn(
            report,
            "k6 CSV output carries no metric types (no Metric lines): points_by_kind counts every point as unknown".to_owned(),
        );
    }
    if let Some(f) = c.time_format.filter(|f| f.truncates()) {
        let default = if f == TimeFormat::Unix {
            ", k6's default"
        } else {
            ""
        };
        warn(
            report,
            format!(
                "the CSV's timestamps are {} (K6_CSV_TIME_FORMAT={}{default}): records of one series that share a timestamp were moved apart in +1 ns steps to keep every point (counted in nudged); for exact times run k6 with K6_CSV_TIME_FORMAT=unix_nano",
                f.resolution(),
                f.k6_name(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::DataModel;
    use proptest::prelude::Strategy;
    use std::io::Write;

    /// The pipeline with the specialised parser and with the serde parser
    /// alone: the same requests (SINGLE and MULTI, grouped by windows) and
    /// the same report.
    fn same_with_both_parsers(input: &[u8]) -> Result<(), String> {
        use crate::core::k6::json;
        use crate::sinks::timestream::{Batcher, WriteRequest};
        for model in [DataModel::Multi, DataModel::Single] {
            let opts = PipelineOptions {
                convert: ConvertOptions {
                    model,
                    testid: Some("t".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let run = |parse: ParseLine| {
                let mut reqs: Vec<WriteRequest> = Vec::new();
                let mut b = Batcher::with_group_window(model, 60, 300);
                let out = run_parsed(
                    input,
                    "in",
                    &opts,
                    &mut b,
                    Arc::default(),
                    None,
                    &mut |q, _| {
                        reqs.push(q);
                        ControlFlow::Continue(())
                    },
                    parse,
                );
                (reqs, out.report, out.error.map(|e| e.to_string()))
            };
            let (fast, serde) = (
                run(fast::parse_line_known),
                run(|text, _| json::parse_line(text)),
            );
            if fast != serde {
                return Err(format!("{model:?}: the runs differ"));
            }
        }
        Ok(())
    }

    #[test]
    fn both_parsers_convert_the_fixtures_alike() {
        let fixtures = crate::core::k6::fast::tests::fixtures();
        for (name, bytes) in &fixtures {
            same_with_both_parsers(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // All fixtures as one input (metrics defined late, times jumping).
        let all: Vec<u8> = fixtures.iter().flat_map(|(_, b)| b.clone()).collect();
        same_with_both_parsers(&all).unwrap();
    }

    /// Points with the same tag text reuse the previous point's dimensions
    /// (and the parser leaves that text unparsed), unless a metric named
    /// like one of the tags was defined in between: that renames the
    /// dimension, so the tags are parsed and the dimensions built again.
    #[test]
    fn a_metric_named_like_a_tag_between_points_with_the_same_tags() {
        let point = |m: &str| {
            format!(
                r#"{{"metric":"{m}","type":"Point","data":{{"time":"2026-11-25T10:00:00Z","value":1,"tags":{{"status":"200","url":"/"}}}}}}"#
            )
        };
        let status =
            r#"{"type":"Metric","data":{"name":"status","type":"counter"},"metric":"status"}"#;
        let text = [point("a"), point("b"), status.to_owned(), point("c")].join("\n");
        same_with_both_parsers(text.as_bytes()).unwrap();
        let (sent, out) = go(text.as_bytes(), DataModel::Multi);
        let records: Vec<&Record> = sent.iter().flatten().collect();
        let names =
            |r: &Record| -> Vec<String> { r.dimensions.iter().map(|d| d.name.clone()).collect() };
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].lines, [1, 2]);
        assert_eq!(names(records[0]), ["status", "url"]);
        assert_eq!(names(records[1]), ["tag_status", "url"]);
        assert_eq!(out.report.adjusted["dimension_renamed_metric_clash"], 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            if cfg!(debug_assertions) { 64 } else { 512 }
        ))]

        /// Generated lines (escapes, unicode, exponents, `null` tags,
        /// reordered and extra fields, whitespace, garbage), mixed with
        /// real ones: a differential test of the two parsers on what
        /// reaches the converter and the requests, not only on the parse.
        #[test]
        fn both_parsers_convert_generated_lines_alike(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => crate::core::k6::fast::tests::line(),
                    1 => proptest::sample::select(vec![
                        r#"{"metric":"http_reqs","type":"Point","data":{"time":"2024-03-01T17:04:05.1Z","value":1,"tags":{"url":"u","status":"200"}}}"#,
                        r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2024-03-01T17:04:05.1Z","value":3.25e1,"tags":{"url":"u","status":"200"}}}"#,
                        r#"{"type":"Metric","data":{"name":"http_reqs","type":"counter","contains":"default","thresholds":[],"submetrics":null},"metric":"http_reqs"}"#,
                    ]).prop_map(str::to_owned),
                ],
                0..40,
            )
        ) {
            let text = lines.join("\n");
            proptest::prop_assert!(same_with_both_parsers(text.as_bytes()).is_ok());
        }
    }

    /// Requests of at most `N` records, nothing else.
    #[derive(Default)]
    pub(super) struct Chunks<const N: usize>(Vec<Record>);
    impl<const N: usize> Encoder for Chunks<N> {
        type Request = Vec<Record>;
        fn push(&mut self, r: Record, _: &mut RunReport) -> Option<Vec<Record>> {
            self.0.push(r);
            (self.0.len() == N).then(|| std::mem::take(&mut self.0))
        }
        fn finish(&mut self, _: &mut RunReport) -> Option<Vec<Record>> {
            (!self.0.is_empty()).then(|| std::mem::take(&mut self.0))
        }
        fn warm(&mut self, _: Record, _: &mut RunReport) {}
    }

    /// Requests of at most three records.
    type Threes = Chunks<3>;

    /// Hands out `cut` bytes, then fails like a dropped connection.
    struct Broken<'a>(&'a [u8], usize);
    impl Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 == 0 {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            self.1 -= n;
            Ok(n)
        }
    }

    fn line(metric: &str, time: &str, tag: &str) -> String {
        format!(
            r#"{{"metric":"{metric}","type":"Point","data":{{"time":"{time}","value":1,"tags":{{"k":"{tag}"}}}}}}"#
        )
    }

    /// Four one-point groups (three records make a request), then a group
    /// of two points.
    fn input() -> Vec<u8> {
        let mut s = String::new();
        for i in 0..4 {
            s += &line("a", &format!("2026-11-25T10:00:0{i}Z"), "x");
            s.push('\n');
        }
        for m in ["a", "b"] {
            s += &line(m, "2026-11-25T10:00:09Z", "x");
            s.push('\n');
        }
        s.into_bytes()
    }

    fn go<R: Read + Send>(src: R, model: DataModel) -> (Vec<Vec<Record>>, Outcome) {
        let opts = PipelineOptions {
            convert: ConvertOptions {
                model,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut sent = Vec::new();
        let out = run(
            src,
            "t",
            &opts,
            &mut Threes::default(),
            Arc::default(),
            &mut |r, _| {
                sent.push(r);
                ControlFlow::Continue(())
            },
        );
        (sent, out)
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_retryable_read_error_withholds_the_group_and_the_batch() {
        let data = input();
        // Cut inside the last line: the group of 10:00:09 is in progress,
        // the fourth record waits in the batch.
        let (sent, out) = go(Broken(&data, data.len() - 5), DataModel::Multi);
        assert!(out.error.as_ref().is_some_and(InputError::retryable));
        assert!(!out.report.complete && !out.stopped);
        assert_eq!(sent.len(), 1, "only the complete request");
        assert_eq!(sent[0].len(), 3);
        assert!(out.report.conversion_balanced());
    }

    #[test]
    fn a_truncated_gzip_withholds_only_the_group_in_progress() {
        let data = input();
        let z = gzip(&data);
        let (full, _) = go(&z[..], DataModel::Multi);
        let (sent, out) = go(&z[..z.len() - 4], DataModel::Multi);
        assert!(matches!(out.error, Some(InputError::Corrupt { .. })));
        // The four one-point records go out, the last group does not.
        let records: Vec<&Record> = sent.iter().flatten().collect();
        assert_eq!(records.len(), 4);
        let all: Vec<&Record> = full.iter().flatten().collect();
        assert_eq!(records[..], all[..4]);
        assert_eq!(out.report.dropped[TRUNCATED_TAIL], 2);
        assert_eq!(out.report.dropped_first_lines[TRUNCATED_TAIL], [5, 6]);
        assert!(out.report.conversion_balanced());
        // SINGLE records are one point each: nothing to withhold.
        let (sent, out) = go(&z[..z.len() - 4], DataModel::Single);
        assert_eq!(sent.iter().flatten().count(), 6);
        assert!(out.report.dropped.is_empty());
    }

    #[test]
    fn a_plain_file_cut_inside_its_last_line_withholds_the_group() {
        let data = input();
        let (_, out) = go(&data[..data.len() - 5], DataModel::Multi);
        assert!(out.error.is_none() && out.report.complete);
        assert_eq!(out.report.dropped[TRUNCATED_TAIL], 1);
        assert_eq!(out.report.skipped["malformed_json"], 1);
        // A valid last line without `\n` is a complete input.
        let (sent, out) = go(&data[..data.len() - 1], DataModel::Multi);
        assert!(out.report.dropped.is_empty());
        assert_eq!(sent.iter().flatten().count(), 5);
    }

    #[test]
    fn not_k6_output_stops_after_detect_lines() {
        let text: String = (0..1000).map(|i| format!("row {i}\n")).collect();
        let (sent, out) = go(text.as_bytes(), DataModel::Multi);
        assert!(sent.is_empty() && out.state.is_none());
        assert!(matches!(
            out.error,
            Some(InputError::NotK6 {
                lines: DETECT_LINES,
                ..
            })
        ));
        assert_eq!(out.report.lines, DETECT_LINES);
        assert_eq!(out.report.failure_reason.as_deref(), Some("not_k6"));
        assert!(out.report.skipped.is_empty());
        // Fewer lines than that, none of them k6's: the same error.
        let (_, out) = go(&b"\n{\"a\":1}\n"[..], DataModel::Multi);
        assert!(matches!(
            out.error,
            Some(InputError::NotK6 { lines: 1, .. })
        ));
        // Empty and blank inputs are empty runs.
        for empty in [&b""[..], b"\n \n"] {
            let (_, out) = go(empty, DataModel::Multi);
            assert!(out.error.is_none() && out.report.complete);
        }
    }

    #[test]
    fn a_cut_off_first_line_is_no_verdict() {
        let data = input();
        let (_, out) = go(&data[..20], DataModel::Multi);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.report.skipped["malformed_json"], 1);
        // With a few bad lines before it, as a k6 file may have: no verdict.
        let (_, out) = go(&b"a\nb\n{\"metric\":"[..], DataModel::Multi);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.report.skipped["malformed_json"], 3);
        // Enough complete foreign lines: not k6, cut or not.
        let (_, out) = go(&b"a\nb\nc\nd\ne\n{\"metric\":"[..], DataModel::Multi);
        assert!(matches!(
            out.error,
            Some(InputError::NotK6 { lines: 5, .. })
        ));
    }

    #[test]
    fn csv_state_goes_on_from_a_serialised_checkpoint() {
        let mut csv = String::from("metric_name,timestamp,metric_value,url,extra_tags,metadata\n");
        for i in 0..10 {
            csv += &format!("m,1709292845,{i}.000000,\"/a,b\",k=v,\n");
        }
        let opts = PipelineOptions::default();
        let (full, _) = go(csv.as_bytes(), DataModel::Multi);
        // Stop after the first request, go on from the stored state.
        let mut enc = Threes::default();
        let mut first = Vec::new();
        let out = run(
            csv.as_bytes(),
            "t",
            &opts,
            &mut enc,
            Arc::default(),
            &mut |r, _| {
                first.push(r);
                ControlFlow::Break(())
            },
        );
        let state = *out.state.unwrap();
        assert!(matches!(state.format, LineFormat::Csv(_)));
        let stored = serde_json::to_string(&state.format).unwrap();
        let state = PipelineState {
            format: serde_json::from_str(&stored).unwrap(),
            ..state
        };
        let offset = state.input.source_offset() as usize;
        let mut rest = Vec::new();
        let out = run_from(
            &csv.as_bytes()[offset..],
            "t",
            &opts,
            &mut enc,
            Arc::default(),
            Some(state),
            &mut |r, _| {
                rest.push(r);
                ControlFlow::Continue(())
            },
        );
        assert!(out.error.is_none() && out.report.skipped.is_empty());
        first.extend(rest);
        assert_eq!(first, full);
        assert_eq!(out.report.format, "csv");
        assert_eq!(out.report.warnings.len(), 2, "{:?}", out.report.warnings);
    }

    #[test]
    fn bom_is_reported_not_skipped() {
        let mut data = crate::core::input::BOM.to_vec();
        data.extend(input());
        for src in [data.clone(), gzip(&data)] {
            let (sent, out) = go(&src[..], DataModel::Multi);
            assert!(out.report.bom && out.report.skipped.is_empty());
            assert_eq!(sent.iter().flatten().count(), 5);
        }
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;
    use crate::core::model::Values;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Requests of up to 100 records, nothing else.
    type Plain = super::tests::Chunks<100>;

    /// A pipe written by another thread: `parts` with `gap` in between.
    struct Pipe(mpsc::Receiver<Vec<u8>>, Vec<u8>);
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(c) => self.1 = c,
                    Err(_) => return Ok(0),
                }
            }
            let n = self.1.len().min(buf.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    fn point(metric: &str) -> String {
        format!(
            r#"{{"type":"Point","metric":"{metric}","data":{{"time":"2026-01-01T00:00:00.000000001Z","value":1,"tags":{{"k":"v"}}}}}}"#
        ) + "\n"
    }

    /// (measures per request, when each request came out).
    fn run_piped(flush: Option<Duration>, gap: Duration) -> (Vec<Vec<usize>>, Vec<Duration>) {
        let (tx, rx) = mpsc::channel();
        let parts = [point("a") + &point("b"), point("c")];
        let writer = std::thread::spawn(move || {
            for p in parts {
                tx.send(p.into_bytes()).unwrap();
                std::thread::sleep(gap);
            }
        });
        let opts = PipelineOptions {
            input: InputOptions {
                flush_interval: flush,
                ..Default::default()
            },
            ..Default::default()
        };
        let start = Instant::now();
        let (mut sizes, mut times) = (Vec::new(), Vec::new());
        let out = run(
            Pipe(rx, Vec::new()),
            "live",
            &opts,
            &mut Plain::default(),
            Arc::default(),
            &mut |req, _| {
                times.push(start.elapsed());
                sizes.push(
                    req.iter()
                        .map(|r| match &r.values {
                            Values::Multi(m) => m.len(),
                            Values::Single(_) => 1,
                        })
                        .collect(),
                );
                ControlFlow::Continue(())
            },
        );
        writer.join().unwrap();
        assert!(out.report.complete && out.report.points == 3);
        assert_eq!(
            out.state.is_some(),
            flush.is_none(),
            "live input is never checkpointed"
        );
        (sizes, times)
    }

    /// The same through the InfluxDB encoder (which adapts the conversion
    /// to groups): the tick sends the group as a request of its own, the
    /// sequence goes on, and the late point of the same series and time
    /// is moved by +1 ns rather than overwriting the lines sent.
    #[test]
    fn a_live_flush_through_the_influxdb_encoder() {
        use crate::sinks::influxdb::{EncoderOptions, InfluxEncoder};
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            for p in [point("a") + &point("b"), point("c")] {
                tx.send(p.into_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(400));
            }
        });
        let opts = PipelineOptions {
            input: InputOptions {
                flush_interval: Some(Duration::from_millis(100)),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut encoder = InfluxEncoder::new(EncoderOptions::default(), 60);
        let mut reqs = Vec::new();
        let out = run(
            Pipe(rx, Vec::new()),
            "live",
            &opts,
            &mut encoder,
            Arc::default(),
            &mut |req, _| {
                reqs.push(req);
                ControlFlow::Continue(())
            },
        );
        writer.join().unwrap();
        assert!(out.report.complete && out.state.is_none());
        let seqs: Vec<u64> = reqs.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1]);
        let body = |i: usize| String::from_utf8_lossy(&reqs[i].body).into_owned();
        // 2026-01-01T00:00:00.000000001Z
        let t = 1_767_225_600_000_000_001i64;
        assert_eq!(body(0), format!("a,k=v value=1 {t}\nb,k=v value=1 {t}\n"));
        assert_eq!(body(1), format!("c,k=v value=1 {}\n", t + 1));
        assert_eq!((out.report.records, out.report.nudged), (2, 1));
    }

    #[test]
    fn live_input_hands_over_the_group_and_the_batch_on_time() {
        let gap = Duration::from_millis(500);
        let (sizes, times) = run_piped(Some(Duration::from_millis(100)), gap);
        // The group in progress went out 100 ms after its data came, long
        // before the rest of the input; its late third point is a record
        // of its own.
        assert_eq!(sizes, [vec![2], vec![1]]);
        assert!(
            times[0] >= Duration::from_millis(100) && times[0] < gap,
            "{times:?}"
        );
        // A file (no interval): one group, one request, at the end.
        let (sizes, times) = run_piped(None, gap);
        assert_eq!(sizes, [vec![3]]);
        assert!(times[0] >= 2 * gap - Duration::from_millis(50), "{times:?}");
    }
}
