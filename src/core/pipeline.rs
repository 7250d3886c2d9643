//! parse → convert → encode over a byte stream: the whole pure core.

use crate::core::convert::{ConvertOptions, Converter};
use crate::core::input::{for_each_line, InputError, InputOptions, LineEvent, Progress};
use crate::core::k6::time::{format_rfc3339_ns, parse_rfc3339_ns, TimeError};
use crate::core::k6::{fast::parse_line, Line};
use crate::core::model::Record;
use crate::core::report::RunReport;
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
pub trait Encoder {
    type Request;
    /// Takes a record; returns a request when one is complete.
    fn push(&mut self, r: Record, report: &mut RunReport) -> Option<Self::Request>;
    /// The last, partial request.
    fn finish(&mut self, report: &mut RunReport) -> Option<Self::Request>;
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
    let mut conv = Converter::new(opts.convert.clone());
    let mut out: Vec<Record> = Vec::new();
    let mut stopped = false;
    let (mut tmin, mut tmax) = (i64::MAX, i64::MIN);

    let mut deliver = |out: &mut Vec<Record>,
                       report: &mut RunReport,
                       batcher: &mut E,
                       stopped: &mut bool|
     -> bool {
        for r in out.drain(..) {
            tmin = tmin.min(r.time_ns);
            tmax = tmax.max(r.time_ns);
            if let Some(req) = batcher.push(r, report) {
                if sink(req, report).is_break() {
                    *stopped = true;
                    return false;
                }
            }
        }
        true
    };

    let (gzip, res) = for_each_line(source, name, &opts.input, progress.clone(), |n, ev| {
        report.lines = n;
        let bytes = match ev {
            LineEvent::TooLong => {
                report.skip("line_too_long", n);
                return true;
            }
            LineEvent::Line(b) => b,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            report.blank_lines += 1;
            return true;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            report.skip("invalid_utf8", n);
            return true;
        };
        match parse_line(text) {
            Err(e) => report.skip(e.reason(), n),
            Ok(Line::Metric { name, kind }) => {
                report.metric_definitions += 1;
                conv.define_metric(&name, kind);
            }
            Ok(Line::Other { kind }) => *report.ignored.entry(kind.into_owned()).or_default() += 1,
            Ok(Line::Point(p)) => {
                let t = parse_rfc3339_ns(&p.time);
                if matches!(t, Err(TimeError::Syntax | TimeError::Range)) {
                    report.skip("invalid_time", n);
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
    let error = res.err();
    report.gzip = gzip;
    if !stopped {
        // End of input, or a fatal error after which nothing more comes:
        // what was converted so far still goes out.
        conv.flush(&mut |r| out.push(r));
        if deliver(&mut out, &mut report, encoder, &mut stopped) {
            if let Some(req) = encoder.finish(&mut report) {
                if sink(req, &mut report).is_break() {
                    stopped = true;
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
    Outcome {
        report,
        stopped,
        error,
    }
}
