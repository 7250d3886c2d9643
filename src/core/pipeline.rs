//! parse → convert → encode over a byte stream: the whole pure core.
//!
//! The input's format is told by its first lines, never by its name: a k6
//! CSV header makes it CSV, a k6 JSON line (`Metric` or `Point`) makes it
//! JSON ([`LineFormat`]). Input whose first [`DETECT_LINES`] non-blank lines
//! hold neither is not k6 output: one [`InputError::NotK6`], and reading
//! stops there.

use crate::core::convert::{ConvertOptions, Converter};
use crate::core::input::{for_each_line, InputError, InputOptions, LineEvent, Progress};
use crate::core::k6::csv::{self, CsvLayout, CsvParser, Row, TimeFormat};
use crate::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns, TimeError};
use crate::core::k6::{parse_line, Line, Point};
use crate::core::model::Record;
use crate::core::report::RunReport;
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
    /// The last, partial request.
    fn finish(&mut self, report: &mut RunReport) -> Option<Self::Request>;
    /// The input's times are coarser than its samples' (k6 CSV in whole
    /// seconds, milliseconds or microseconds): records equal in everything,
    /// time included, are distinct samples, not one sample written twice. A
    /// sink that would store such duplicates once must keep them apart.
    /// Called once, before the first record with such a time. Default:
    /// nothing.
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
}

/// What the input's lines are, decided on its first k6 line.
enum LineFormat {
    /// No k6 line yet: the lines looked at, with their JSON reasons.
    Unknown(Vec<(u64, Unrecognised)>),
    Json,
    Csv(CsvInput),
}

/// What the JSON path would report a line before the format is known as.
enum Unrecognised {
    Skip(&'static str),
    Ignored(String),
}

/// The CSV branch's state.
struct CsvInput {
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
}

impl<E: Encoder> Stage<'_, E> {
    /// Converts one point and hands on the records it completes; `false`
    /// when the sink asked to stop.
    #[inline]
    fn point(
        &mut self,
        p: &Point<'_>,
        t: Result<i64, TimeError>,
        line: u64,
        report: &mut RunReport,
    ) -> bool {
        self.convert(p, t, line, report);
        self.deliver(report)
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

    #[inline]
    fn deliver(&mut self, report: &mut RunReport) -> bool {
        if self.out.is_empty() {
            return true;
        }
        for r in self.out.drain(..) {
            self.tmin = self.tmin.min(r.time_ns);
            self.tmax = self.tmax.max(r.time_ns);
            if let Some(req) = self.encoder.push(r, report) {
                if (self.sink)(req, report).is_break() {
                    self.stopped = true;
                    return false;
                }
            }
        }
        true
    }
}

/// Runs `source` through the core and `encoder`, handing each request to
/// `sink` in order. `sink` returns `Break` to stop (then the pending
/// partial group and batch are not emitted: a resumed run regenerates them
/// identically).
pub fn run<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    encoder: &mut E,
    progress: Arc<Progress>,
    sink: &mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
) -> Outcome {
    let mut report = RunReport {
        input: name.to_owned(),
        model: opts.convert.model.as_str().to_owned(),
        ..Default::default()
    };
    let mut stage = Stage {
        conv: Converter::new(opts.convert.clone()),
        out: Vec::new(),
        encoder,
        sink,
        stopped: false,
        tmin: i64::MAX,
        tmax: i64::MIN,
    };
    let mut format = LineFormat::Unknown(Vec::new());
    let mut not_k6 = false;

    let (gzip, res) = for_each_line(source, name, &opts.input, progress.clone(), |n, ev| {
        report.lines = n;
        match &mut format {
            LineFormat::Json => match ev {
                LineEvent::Line(b) => json_line(n, b, &mut stage, &mut report),
                LineEvent::TooLong => {
                    report.skip("line_too_long", n);
                    true
                }
            },
            LineFormat::Csv(c) => csv_line(n, ev, c, &mut stage, &mut report),
            LineFormat::Unknown(seen) => match detect(n, &ev, seen, &mut report) {
                Detected::NotYet => {
                    not_k6 = seen.len() as u64 >= DETECT_LINES;
                    !not_k6
                }
                Detected::Json => {
                    settle(seen, None, &mut report);
                    format = LineFormat::Json;
                    report.format = "json".to_owned();
                    let LineEvent::Line(b) = ev else {
                        unreachable!("a k6 JSON line is a line")
                    };
                    json_line(n, b, &mut stage, &mut report)
                }
                Detected::Csv => {
                    settle(seen, Some("csv_missing_header"), &mut report);
                    let mut c = CsvInput {
                        parser: CsvParser::default().with_first_line(n),
                        record_start: n,
                        time_format: None,
                        told_coarse: false,
                    };
                    let first = csv_line(n, ev, &mut c, &mut stage, &mut report);
                    format = LineFormat::Csv(c);
                    report.format = "csv".to_owned();
                    first
                }
            },
        }
    });
    let mut error = res.err();
    if let LineFormat::Unknown(seen) = &format {
        // Stopped at DETECT_LINES, or the whole input had fewer lines and
        // none of them was k6's. (An empty input is an empty run.)
        if error.is_none() && (not_k6 || !seen.is_empty()) {
            error = Some(InputError::NotK6 {
                input: name.to_owned(),
                lines: seen.len() as u64,
            });
        }
    }
    report.gzip = gzip;
    if let LineFormat::Csv(c) = &mut format {
        if error.is_none() && !stage.stopped {
            // A quoted cell still open at the end of the input.
            if let Err(e) = c.parser.finish() {
                report.skip(e.error.reason(), e.line);
            }
        }
        report.blank_lines += c.parser.records().blank_lines();
    }
    if !stage.stopped {
        // End of input, or a fatal error after which nothing more comes:
        // what was converted so far still goes out.
        let out = &mut stage.out;
        stage.conv.flush(&mut |r| out.push(r));
        if stage.deliver(&mut report) {
            if let Some(req) = stage.encoder.finish(&mut report) {
                if (stage.sink)(req, &mut report).is_break() {
                    stage.stopped = true;
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
    }
    let stopped = stage.stopped;
    report.complete = error.is_none() && !stopped;
    if stage.tmin <= stage.tmax {
        report.first_time = Some(format_rfc3339_ns(stage.tmin));
        report.last_time = Some(format_rfc3339_ns(stage.tmax));
    }
    Outcome {
        report,
        stopped,
        error,
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
) -> Detected {
    let bytes = match ev {
        LineEvent::TooLong => {
            seen.push((n, Unrecognised::Skip("line_too_long")));
            return Detected::NotYet;
        }
        LineEvent::Line(b) => *b,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        report.blank_lines += 1;
        return Detected::NotYet;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        seen.push((n, Unrecognised::Skip("invalid_utf8")));
        return Detected::NotYet;
    };
    if csv::is_header(text) {
        return Detected::Csv;
    }
    match parse_json(text) {
        Ok(Line::Metric { .. } | Line::Point(_)) => return Detected::Json,
        // A JSON object of another `type` is no evidence of k6.
        Ok(Line::Other { kind }) => seen.push((n, Unrecognised::Ignored(kind.into_owned()))),
        Err(e) => seen.push((n, Unrecognised::Skip(e.reason()))),
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
            (Unrecognised::Skip(r @ ("line_too_long" | "invalid_utf8")), _) => report.skip(r, n),
            (_, Some(r)) => report.skip(r, n),
            (Unrecognised::Skip(r), None) => report.skip(r, n),
            (Unrecognised::Ignored(kind), None) => {
                *report.ignored.entry(kind).or_default() += 1;
            }
        }
    }
}

/// [`parse_line`], called from this one place: with one caller the
/// compiler inlines the whole JSON scan into it as before format detection
/// called it too (measured: two call sites cost the JSON path ~2.5 % more
/// instructions through other inlining in serde's code).
#[inline(never)]
fn parse_json(text: &str) -> Result<Line<'_>, crate::core::k6::LineError> {
    parse_line(text)
}

/// One line of k6 JSON output.
#[inline]
fn json_line<E: Encoder>(
    n: u64,
    bytes: &[u8],
    stage: &mut Stage<'_, E>,
    report: &mut RunReport,
) -> bool {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        report.blank_lines += 1;
        return true;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        report.skip("invalid_utf8", n);
        return true;
    };
    match parse_json(text) {
        Err(e) => report.skip(e.reason(), n),
        Ok(Line::Metric { name, kind }) => {
            report.metric_definitions += 1;
            stage.conv.define_metric(&name, kind);
        }
        Ok(Line::Other { kind }) => *report.ignored.entry(kind.into_owned()).or_default() += 1,
        Ok(Line::Point(p)) => {
            let t = parse_rfc3339_ns(&p.time);
            if matches!(t, Err(TimeError::Syntax | TimeError::Range)) {
                report.skip("invalid_time", n);
                return true;
            }
            return stage.point(&p, t, n, report);
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
) -> bool {
    if !c.parser.records().in_record() {
        c.record_start = n;
    }
    let row = match ev {
        LineEvent::TooLong => {
            report.skip("line_too_long", n);
            if let Err(e) = c.parser.skip_line() {
                report.skip(e.error.reason(), e.line);
            }
            return true;
        }
        LineEvent::Line(b) => c.parser.push_line(b),
    };
    match row {
        Ok(None | Some(Row::Header)) => return true,
        Err(e) => {
            report.skip(e.error.reason(), e.line);
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

/// What the report says about data read from k6 CSV.
fn csv_warnings(c: &CsvInput, report: &mut RunReport) {
    if report.points > 0 {
        report.warnings.push(
            "k6 CSV output carries no metric types (no Metric lines): points_by_kind counts every point as unknown"
                .to_owned(),
        );
    }
    if let Some(f) = c.time_format.filter(|f| f.truncates()) {
        let default = if f == TimeFormat::Unix {
            ", k6's default"
        } else {
            ""
        };
        report.warnings.push(format!(
            "the CSV's timestamps are {} (K6_CSV_TIME_FORMAT={}{default}): records of one series that share a timestamp were moved apart in +1 ns steps to keep every point ({} nudged); for exact times run k6 with K6_CSV_TIME_FORMAT=unix_nano",
            f.resolution(),
            f.k6_name(),
            report.nudged
        ));
    }
}
