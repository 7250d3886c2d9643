//! parse → convert → encode over a byte stream: the whole pure core.

use crate::core::convert::{ConvertOptions, Converter};
use crate::core::input::{
    for_each_line_from, InputError, InputOptions, InputPosition, LineEvent, Progress,
};
use crate::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns, TimeError};
use crate::core::k6::{fast, Line, LineError};
use crate::core::model::Record;
use crate::core::report::RunReport;
use crate::core::resume::PipelineState;
use std::cell::Cell;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    pub convert: ConvertOptions,
    pub input: InputOptions,
}

/// A sink's request builder: records in, requests out, as a pure function
/// of the record sequence (request N of an input is always the same
/// request, which is what lets a resumed run skip confirmed requests).
/// Live input is the exception: its [`Encoder::flush`]es fall where the
/// clock says, so its requests are not a function of the bytes and it is
/// never checkpointed (see [`Outcome::state`]).
pub trait Encoder {
    type Request;
    /// Takes a record; returns a request when one is complete.
    fn push(&mut self, r: Record, report: &mut RunReport) -> Option<Self::Request>;
    /// At the end of the input: the requests still held, one per call,
    /// until it returns `None` (an encoder that gathers records before
    /// cutting requests may hold several).
    fn finish(&mut self, report: &mut RunReport) -> Option<Self::Request>;
    /// Takes a record that precedes the part of the input being written
    /// (a segment's look-back, see [`crate::core::segment`]): updates
    /// whatever later records depend on (the collision guard) exactly as
    /// [`push`](Self::push) would, and produces nothing. Deliberately no
    /// default: an encoder with state must say what it keeps.
    fn warm(&mut self, r: Record, report: &mut RunReport);
    /// A request of what it holds now, with more records to come (live
    /// input, [`InputOptions::flush_interval`]); called until it returns
    /// None, like [`Encoder::finish`]; the sequence goes on after it. The
    /// default is `finish`, right for an encoder whose `finish` leaves it
    /// ready for more records.
    fn flush(&mut self, report: &mut RunReport) -> Option<Self::Request> {
        self.finish(report)
    }
    /// Adapts the converter's options to the records this encoder takes
    /// (InfluxDB: groups whatever the model, metadata kept apart from
    /// tags). By default they are used as given.
    fn adapt(&self, _convert: &mut ConvertOptions) {}
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
///   cap, or a last line without `\n` that is blank or not a valid line: what a k6
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
        fast::parse_line,
    )
}

/// A k6 line parser ([`fast::parse_line`] or
/// [`crate::core::k6::json::parse_line`]).
type ParseLine = for<'a> fn(&'a str) -> Result<Line<'a>, LineError>;

#[allow(clippy::too_many_arguments)] // run_from's arguments and the parser
fn run_parsed<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    encoder: &mut E,
    progress: Arc<Progress>,
    from: Option<PipelineState>,
    sink: &mut dyn FnMut(E::Request, &mut RunReport) -> ControlFlow<()>,
    parse_line: ParseLine,
) -> Outcome {
    let (mut report, mut conv, (mut tmin, mut tmax), position) = match from {
        Some(s) => (s.report, s.converter, s.time_range, Some(s.input)),
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
            )
        }
    };
    let mut out: Vec<Record> = Vec::new();
    let mut stopped = false;
    // The last line that was blank or not a usable line (tail rule).
    let mut last_bad_line = 0u64;
    // Set by a tick of live input: `deliver` then also sends the partial
    // request (see `InputOptions::flush_interval` for what that costs).
    let flush_partial = Cell::new(false);

    let mut deliver = |out: &mut Vec<Record>,
                       report: &mut RunReport,
                       batcher: &mut E,
                       stopped: &mut bool|
     -> bool {
        for r in out.drain(..) {
            tmin = tmin.min(r.time_ns);
            tmax = tmax.max(r.time_ns);
            if let Some(req) = batcher.push(r, report) {
                // After a stop the rest of the line's records still go to
                // the encoder (so the state is "after this line").
                if sink(req, report).is_break() {
                    *stopped = true;
                }
            }
        }
        // After a tick, unless the sink stopped taking requests (then the
        // partial request stays in the encoder).
        // (Every request it holds: a grouping window may hold several.)
        if flush_partial.take() && !*stopped {
            while let Some(req) = batcher.flush(report) {
                if sink(req, report).is_break() {
                    *stopped = true;
                    break;
                }
            }
        }
        !*stopped
    };

    let (p, from) = (progress.clone(), position);
    let lines = for_each_line_from(source, name, &opts.input, p, from, |n, ev| {
        report.lines = n;
        let bytes = match ev {
            LineEvent::Tick => {
                conv.flush(&mut |r| out.push(r));
                flush_partial.set(true);
                return deliver(&mut out, &mut report, encoder, &mut stopped);
            }
            LineEvent::TooLong => {
                report.skip("line_too_long", n);
                last_bad_line = n;
                return true;
            }
            LineEvent::Line(b) => b,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            report.blank_lines += 1;
            last_bad_line = n;
            return true;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            report.skip("invalid_utf8", n);
            last_bad_line = n;
            return true;
        };
        match parse_line(text) {
            Err(e) => {
                report.skip(e.reason(), n);
                last_bad_line = n;
            }
            Ok(Line::Metric { name, kind }) => {
                report.metric_definitions += 1;
                conv.define_metric(&name, kind);
            }
            Ok(Line::Other { kind }) => *report.ignored.entry(kind.into_owned()).or_default() += 1,
            Ok(Line::Point(p)) => {
                let t = parse_rfc3339_ns(&p.time);
                if matches!(t, Err(TimeError::Syntax | TimeError::Range)) {
                    report.skip("invalid_time", n);
                    last_bad_line = n;
                    return true;
                }
                conv.push_point(&p, t, n, &mut report, &mut |r| out.push(r));
                if !out.is_empty() {
                    return deliver(&mut out, &mut report, encoder, &mut stopped);
                }
            }
        }
        true
    });
    let (format, error) = (lines.format, lines.result.err());
    report.gzip = format.gzip;
    report.bom = format.bom;
    let retry_will_reread = error.as_ref().is_some_and(InputError::retryable);
    if !stopped && !retry_will_reread {
        let cut_off = error.is_some() || (format.unterminated && last_bad_line == report.lines);
        if cut_off {
            conv.discard_group(TRUNCATED_TAIL, &mut report);
        }
        conv.flush(&mut |r| out.push(r));
        if deliver(&mut out, &mut report, encoder, &mut stopped) {
            while let Some(req) = encoder.finish(&mut report) {
                if sink(req, &mut report).is_break() {
                    stopped = true;
                    break;
                }
            }
        }
    }
    let (r, d) = progress.read();
    report.bytes_read = r;
    report.bytes_decompressed = d;
    if let Some(e) = &error {
        report.error = Some(e.to_string());
    }
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
                .unwrap_or_else(|| InputPosition::end(format, report.lines, lines.offset)),
        })
    });
    Outcome {
        report,
        stopped,
        error,
        state,
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
            let (fast, serde) = (run(fast::parse_line), run(json::parse_line));
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

    /// Requests of at most three records.
    struct Threes(Vec<Record>);
    impl Encoder for Threes {
        type Request = Vec<Record>;
        fn push(&mut self, r: Record, _: &mut RunReport) -> Option<Vec<Record>> {
            self.0.push(r);
            (self.0.len() == 3).then(|| std::mem::take(&mut self.0))
        }
        fn finish(&mut self, _: &mut RunReport) -> Option<Vec<Record>> {
            (!self.0.is_empty()).then(|| std::mem::take(&mut self.0))
        }
        fn warm(&mut self, _: Record, _: &mut RunReport) {}
    }

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
            &mut Threes(Vec::new()),
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
    #[derive(Default)]
    struct Plain(Vec<Record>);
    impl Encoder for Plain {
        type Request = Vec<Record>;
        fn push(&mut self, r: Record, _: &mut RunReport) -> Option<Vec<Record>> {
            self.0.push(r);
            (self.0.len() == 100).then(|| std::mem::take(&mut self.0))
        }
        fn finish(&mut self, _: &mut RunReport) -> Option<Vec<Record>> {
            (!self.0.is_empty()).then(|| std::mem::take(&mut self.0))
        }
        fn warm(&mut self, _: Record, _: &mut RunReport) {}
    }

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
