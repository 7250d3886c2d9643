//! `k6-timestream convert`: the pure core on the command line.

use super::{exit, write_summary, ConversionArgs};
use crate::core::convert::ConvertOptions;
use crate::core::input::Progress;
use crate::core::model::Record;
use crate::core::pipeline::{self, Encoder, PipelineOptions};
use crate::core::report::RunReport;
use crate::sinks::influxdb::{InfluxEncoder, InfluxEncodingArgs, InfluxRequest};
use crate::sinks::timestream::WriteRequest;
use crate::sinks::SinkKind;
use crate::sources::local::open_local;
use clap::Args;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Args, Debug)]
pub struct ConvertCmd {
    #[command(flatten)]
    pub conv: ConversionArgs,
    /// Output shape: `timestream` (WriteRecords requests, one JSON request per line) or `influxdb` (line protocol, as it would be written).
    #[arg(long, value_enum, default_value = "timestream")]
    pub sink: SinkKind,
    #[command(flatten)]
    pub influx: InfluxEncodingArgs,
    /// DatabaseName written into each request.
    #[arg(long, default_value = "k6")]
    pub database: String,
    /// TableName written into each request.
    #[arg(long, default_value = "results")]
    pub table: String,
    /// k6 JSON output (plain or gzip, detected by content), or `-` for stdin.
    pub input: String,
}

pub fn run(cmd: ConvertCmd) -> i32 {
    let source = match open_local(&cmd.input) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FATAL;
        }
    };
    let opts = cmd.conv.pipeline_options(&cmd.input);
    match cmd.sink {
        SinkKind::Timestream => {
            let (database, table) = (cmd.database.clone(), cmd.table.clone());
            let encoder = cmd.conv.timestream_encoder();
            convert(
                &cmd,
                source,
                &opts,
                encoder,
                Threads::Four,
                move |req: &WriteRequest, buf| {
                    crate::sinks::timestream::encode::encode(buf, &database, &table, req)
                },
            )
        }
        SinkKind::Influxdb => {
            let encoder =
                InfluxEncoder::new(cmd.influx.encoder_options(), cmd.conv.collision_window_secs);
            // The InfluxDB encoder moves measures between the report's
            // counters (refused values are dropped points): it runs where
            // the report is.
            convert(
                &cmd,
                source,
                &opts,
                encoder,
                Threads::Three,
                |req: &InfluxRequest, buf| buf.extend_from_slice(&req.body),
            )
        }
    }
}

/// Where the encoder runs.
enum Threads {
    /// On the thread that parses and converts (inflate, convert + encode,
    /// render).
    Three,
    /// On a thread of its own ([`Offloaded`]): inflate, convert, encode,
    /// render.
    Four,
}

/// Runs the core with `encoder`, writing each request as `write` renders
/// it to stdout.
fn convert<E>(
    cmd: &ConvertCmd,
    source: impl Read + Send,
    opts: &PipelineOptions,
    mut encoder: E,
    threads: Threads,
    mut write: impl FnMut(&E::Request, &mut Vec<u8>) + Send + 'static,
) -> i32
where
    E: Encoder + Send + 'static,
    E::Request: Send + 'static,
{
    // Rendering the output runs on its own thread: with decompression on
    // another, parse/convert, inflate and render overlap on 2 cores. Few
    // requests wait for it: with the encoder on a thread of its own the
    // renderer can be the slowest stage, and every waiting request is
    // ~100 records of memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<E::Request>(4);
    let renderer = std::thread::spawn(move || -> std::io::Result<()> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let mut buf = Vec::with_capacity(64 * 1024);
        for req in rx {
            buf.clear();
            write(&req, &mut buf);
            out.write_all(&buf)?;
        }
        out.flush()
    });
    let progress = Arc::new(Progress::default());
    let outcome = match threads {
        Threads::Three => pipeline::run(
            source,
            &cmd.input,
            opts,
            &mut encoder,
            progress,
            &mut |req, _| {
                if tx.send(req).is_ok() {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(()) // the renderer failed: its error is reported below
                }
            },
        ),
        Threads::Four => {
            let mut offloaded = Offloaded::new(encoder, tx.clone());
            let mut outcome = pipeline::run(
                source,
                &cmd.input,
                opts,
                &mut offloaded,
                progress,
                // The renderer failed: its error is reported below.
                &mut |RendererGone, _| ControlFlow::Break(()),
            );
            // Unless `finish` did (end of input): the encoder is stopped
            // with what it holds, as the run stopped (a failed input
            // withholds the partial request).
            offloaded.close(false, &mut outcome.report);
            outcome
        }
    };
    drop(tx);
    let written = renderer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("output thread panicked")));
    let mut report = outcome.report;
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            report
                .error
                .get_or_insert_with(|| format!("writing stdout: {e}"));
        }
    }
    eprintln!("{}", report.human());
    if let Some(p) = &cmd.conv.summary_json {
        if let Err(e) = write_summary(p, &report) {
            eprintln!("error: writing {}: {e}", p.display());
            return exit::FATAL;
        }
    }
    debug_assert!(report.conversion_balanced());
    if report.error.is_some() {
        exit::FATAL
    } else {
        exit::OK
    }
}

/// Records handed to the encoder's thread at a time: few wakeups, little
/// held in flight.
const OFFLOAD_BATCH: usize = 512;

/// What [`Offloaded`] sends its thread.
enum Work {
    Records(Vec<Record>),
    Warm(Vec<Record>),
    CoarseTimes,
    Flush,
    /// The end: `finish` the encoder (the end of the input) or just stop.
    End {
        finish: bool,
    },
}

/// [`Offloaded`]'s only request: the renderer stopped taking requests, so
/// the run should stop (the pipeline hands it to the sink, which breaks).
struct RendererGone;

/// An encoder run on a thread of its own, its requests going straight to
/// the renderer: on 2 cores, parse + convert and the encoder's work
/// (collision guard, grouping window, requests) overlap instead of adding
/// up on one thread. The request sequence is the encoder's, unchanged: it
/// gets the same records in the same order, and its requests reach the
/// renderer in its order.
///
/// The trade-offs: records are in flight in batches of [`OFFLOAD_BATCH`],
/// so a stop (the renderer failed) is seen a batch or two late; and the
/// encoder's report counters are kept on its thread and added to the run's
/// report when it ends ([`Offloaded::close`]): only for an encoder whose
/// counters are the ones [`add_encoder_counters`] adds (the Timestream
/// batcher's), and only where nothing reads the report during the run
/// (`convert` prints it at the end; a checkpoint would hold a report
/// without them, so this is not for runs that are resumed).
struct Offloaded<E: Encoder> {
    /// Until the first record: the encoder and the renderer's sender (so
    /// that `adapt` can still be asked of it).
    idle: Option<(E, SyncSender<E::Request>)>,
    tx: Option<SyncSender<Work>>,
    worker: Option<JoinHandle<RunReport>>,
    batch: Vec<Record>,
    gone: Arc<AtomicBool>,
}

impl<E> Offloaded<E>
where
    E: Encoder + Send + 'static,
    E::Request: Send + 'static,
{
    fn new(encoder: E, out: SyncSender<E::Request>) -> Self {
        Self {
            idle: Some((encoder, out)),
            tx: None,
            worker: None,
            batch: Vec::with_capacity(OFFLOAD_BATCH),
            gone: Arc::default(),
        }
    }

    /// Sends `w` to the encoder's thread (started at the first call).
    fn send(&mut self, w: Work) {
        if let Some((mut encoder, out)) = self.idle.take() {
            let (tx, rx) = sync_channel::<Work>(4);
            let gone = self.gone.clone();
            self.tx = Some(tx);
            self.worker = Some(std::thread::spawn(move || {
                let mut report = RunReport::default();
                // Whether a request came (and the renderer took it).
                let deliver = |req: Option<E::Request>| match req.map(|r| out.send(r)) {
                    Some(Ok(())) => true,
                    Some(Err(_)) => {
                        gone.store(true, Ordering::Relaxed);
                        false
                    }
                    None => false,
                };
                for w in rx {
                    match w {
                        Work::Records(rs) => {
                            for r in rs {
                                let req = encoder.push(r, &mut report);
                                deliver(req);
                            }
                        }
                        Work::Warm(rs) => rs.into_iter().for_each(|r| encoder.warm(r, &mut report)),
                        Work::CoarseTimes => encoder.coarse_times(),
                        Work::Flush => while deliver(encoder.flush(&mut report)) {},
                        Work::End { finish: true } => {
                            while deliver(encoder.finish(&mut report)) {}
                            break;
                        }
                        Work::End { finish: false } => break,
                    }
                }
                report
            }));
        }
        if let Some(tx) = &self.tx {
            // A send fails only if the thread is gone (it panicked):
            // `close` reports that.
            let _ = tx.send(w);
        }
    }

    /// Hands over the records gathered so far.
    fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(OFFLOAD_BATCH));
            self.send(Work::Records(batch));
        }
    }

    /// Ends the encoder's thread (once; later calls do nothing), finishing
    /// the encoder first if `finish`, and adds its counters to `report`.
    fn close(&mut self, finish: bool, report: &mut RunReport) {
        if finish {
            self.send_batch();
        } else {
            self.batch.clear();
        }
        if let Some((mut encoder, out)) = self.idle.take() {
            // No record came: the encoder finishes here.
            while let Some(req) = finish.then(|| encoder.finish(report)).flatten() {
                if out.send(req).is_err() {
                    break;
                }
            }
            return;
        }
        self.send(Work::End { finish });
        self.tx = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(counts)) => add_encoder_counters(report, &counts),
            Some(Err(_)) => {
                report
                    .error
                    .get_or_insert_with(|| "the encoder's thread panicked".to_owned());
            }
            None => {} // closed before
        }
    }
}

impl<E> Encoder for Offloaded<E>
where
    E: Encoder + Send + 'static,
    E::Request: Send + 'static,
{
    type Request = RendererGone;

    fn push(&mut self, r: Record, _: &mut RunReport) -> Option<RendererGone> {
        self.batch.push(r);
        if self.batch.len() >= OFFLOAD_BATCH {
            self.send_batch();
        }
        self.gone.load(Ordering::Relaxed).then_some(RendererGone)
    }

    fn finish(&mut self, report: &mut RunReport) -> Option<RendererGone> {
        self.close(true, report);
        None
    }

    fn flush(&mut self, _: &mut RunReport) -> Option<RendererGone> {
        self.send_batch();
        self.send(Work::Flush);
        None
    }

    fn warm(&mut self, r: Record, _: &mut RunReport) {
        self.send_batch();
        self.send(Work::Warm(vec![r]));
    }

    fn adapt(&self, convert: &mut ConvertOptions) {
        if let Some((e, _)) = &self.idle {
            e.adapt(convert);
        }
    }

    fn coarse_times(&mut self) {
        self.send_batch();
        self.send(Work::CoarseTimes);
    }
}

/// [`RunReport::add_encoder_counters`] of `from`, an encoder's own report,
/// to `into`. Debug builds check that the encoder touched nothing else.
fn add_encoder_counters(into: &mut RunReport, from: &RunReport) {
    into.add_encoder_counters(from);
    debug_assert_eq!(
        RunReport {
            records: 0,
            batches: 0,
            estimated_event_bytes: 0,
            estimated_write_bytes: 0,
            nudged: 0,
            identical_duplicates: 0,
            identical_duplicate_measures: 0,
            collision_window_misses: 0,
            ..from.clone()
        },
        RunReport::default(),
        "an encoder counter that is not added"
    );
}
