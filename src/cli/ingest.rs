//! `k6-timestream ingest`: convert and write to Timestream or InfluxDB.

use super::{exit, progress, write_summary, ConversionArgs};
use crate::core::pipeline::{Encoder, PipelineOptions};
use crate::ingest::{ingest, Live, Sink};
use crate::sinks::dead_letter::file::FileSink;
use crate::sinks::driver::{
    check_concurrency, WriterConfig, DEFAULT_CONCURRENCY, DEFAULT_REQUEST_TIMEOUT_SECS,
    DEFAULT_RETRY_BUDGET,
};
use crate::sinks::influxdb::{InfluxArgs, InfluxEncoder, InfluxWriter};
use crate::sinks::retry::RetryPolicy;
use crate::sinks::retry::DEFAULT_MAX_ATTEMPTS;
use crate::sinks::timestream::service::{build_client, TimestreamWriter};
use crate::sinks::{Request, Service, SinkKind};
use crate::sources::s3::S3Source;
use crate::sources::{parse_s3_url, ObjectRef, ObjectSource};
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct IngestCmd {
    #[command(flatten)]
    pub conv: ConversionArgs,
    /// Where to write: `timestream` (Amazon Timestream for LiveAnalytics) or `influxdb` (InfluxDB 1.x/2.x/3, e.g. Amazon Timestream for InfluxDB; see the --influxdb-* options).
    #[arg(long, value_enum, default_value = "timestream")]
    pub sink: SinkKind,
    /// Timestream database (with --sink timestream).
    #[arg(long)]
    pub database: Option<String>,
    /// Timestream table (with --sink timestream).
    #[arg(long)]
    pub table: Option<String>,
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// Timestream Write endpoint (skips endpoint discovery); default from AWS_ENDPOINT_URL_TIMESTREAM_WRITE / AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: the standard chain, e.g. AWS_REGION or the profile).
    #[arg(long)]
    pub region: Option<String>,
    /// WriteRecords calls in flight at most.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS, value_name = "SECS")]
    pub request_timeout_secs: u64,
    /// Attempts per request (first included) for throttling, 5xx, timeouts, connection errors.
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Retries allowed across the whole run.
    #[arg(long, default_value_t = DEFAULT_RETRY_BUDGET)]
    pub retry_budget: u64,
    /// JSON-lines file for records that could not be written (default: ./<testid>.dead-letter.jsonl).
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,
    /// Progress display: auto (bar on a terminal, periodic log lines otherwise), bar, log, none.
    #[arg(long, default_value = "auto", value_parser = ["auto", "bar", "log", "none"])]
    pub progress: String,
    /// Split one file or s3://bucket/key object into N segments written
    /// concurrently, each reading only its range (the records are those
    /// of a serial run); 1: serial.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// Live mode (stdin or a named pipe by default, every input when given): requests also go out once their oldest data is this old (e.g. 1s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = super::live::parse_interval)]
    pub flush_interval: Option<Duration>,
    #[command(flatten)]
    pub backfill: super::backfill::BackfillArgs,
    /// k6 JSON output: a file, `-` for stdin, s3://bucket/key, or (for many objects) s3://bucket/prefix/ or a glob.
    pub input: String,
    /// More inputs: files, globs, s3:// keys or prefixes, ingested together (see --objects-in-flight).
    #[arg(value_name = "MORE")]
    pub more: Vec<String>,
}

impl IngestCmd {
    pub fn inputs(&self) -> Vec<&str> {
        std::iter::once(self.input.as_str())
            .chain(self.more.iter().map(String::as_str))
            .collect()
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    let n = s
        .parse::<usize>()
        .map_err(|_| format!("expected a number, got {s:?}"))?;
    check_concurrency(n)
}

pub fn run(cmd: IngestCmd) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return exit::FATAL;
        }
    };
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: IngestCmd) -> i32 {
    if cmd.parallel > 1 && cmd.input == "-" {
        // Segments read ranges of the input after an index pass over all
        // of it: stdin can be read only once.
        eprintln!("error: --parallel needs a file or an s3://bucket/key object: stdin (-) cannot be read in ranges; save it to a file first, or drop --parallel");
        return exit::USAGE;
    }
    let request_timeout = Duration::from_secs(cmd.request_timeout_secs.max(1));
    // The sink's settings are checked, and InfluxDB is probed, before any
    // work: a wrong URL, token or database is one clear error up front.
    let influx = match cmd.sink {
        SinkKind::Timestream => {
            if cmd.database.is_none() || cmd.table.is_none() {
                eprintln!("error: --database and --table are required with --sink timestream (see --help)");
                return exit::USAGE;
            }
            None
        }
        SinkKind::Influxdb => match influx_writer(&cmd.influx, request_timeout).await {
            Ok(w) => Some(w),
            Err((code, e)) => {
                eprintln!("error: {e}");
                return code;
            }
        },
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &cmd.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let sdk = loader.load().await;
    // InfluxDB from a local file needs no AWS at all.
    let needs_aws =
        cmd.sink == SinkKind::Timestream || cmd.inputs().iter().any(|i| i.starts_with("s3://"));
    if needs_aws && sdk.region().is_none() {
        eprintln!("error: no AWS region configured (set AWS_REGION or pass --region)");
        return exit::FATAL;
    }
    if super::backfill::wanted(&cmd.inputs(), &cmd.backfill) {
        if cmd.parallel > 1 {
            eprintln!("error: --parallel splits one file or object; several objects are ingested together with --objects-in-flight");
            return exit::USAGE;
        }
        return backfill(&cmd, &sdk, influx).await;
    }
    // A parallel run opens its input for the index pass (and again in
    // ranges for its segments); the serial stream is then unused.
    let parallel = if cmd.parallel > 1 {
        let s3 = || S3Source {
            client: crate::sources::s3::build_client(&sdk),
        };
        match super::parallel::Input::open(&cmd.input, s3).await {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FATAL;
            }
        }
    } else {
        None
    };
    let (source, size): (Box<dyn Read + Send>, Option<u64>) = if let Some(p) = &parallel {
        (Box::new(std::io::empty()), p.opened.size)
    } else if let Some((bucket, key)) = parse_s3_url(&cmd.input) {
        let src = S3Source {
            client: crate::sources::s3::build_client(&sdk),
        };
        match src
            .open(&ObjectRef {
                bucket,
                key,
                version_id: None,
                etag: None,
            })
            .await
        {
            Ok(o) => (Box::new(tokio_util::io::SyncIoBridge::new(o.body)), o.size),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FATAL;
            }
        }
    } else {
        let size = std::fs::metadata(&cmd.input)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        match crate::sources::local::open_local(&cmd.input) {
            Ok(s) => (s, size),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FATAL;
            }
        }
    };
    let mut popts = cmd.conv.pipeline_options(&cmd.input);
    popts.input.flush_interval = super::live::flush_interval(&cmd.input, cmd.flush_interval);
    let dl_path = cmd.dead_letter.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.dead-letter.jsonl",
            crate::core::convert::derive_testid(&cmd.input)
        ))
    });
    let dlq = Arc::new(FileSink::new(dl_path));
    let wcfg = writer_config(&cmd);
    let run = Run {
        cmd: &cmd,
        source,
        parallel,
        size,
        popts,
    };
    match influx {
        None => {
            let writer = match timestream_writer(&cmd, &sdk).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::FATAL;
                }
            };
            run.sink(|| cmd.conv.timestream_encoder(), writer, dlq, wcfg)
                .await
        }
        Some(writer) => {
            let encoder = || {
                InfluxEncoder::new(
                    cmd.influx.encoding.encoder_options(),
                    cmd.conv.collision_window_secs,
                )
            };
            run.sink(encoder, Arc::new(writer), dlq, wcfg).await
        }
    }
}

/// The InfluxDB writer, probed: a usage error (exit 2) for missing
/// options, a fatal one (exit 3) when the server refuses us or cannot be
/// reached.
async fn influx_writer(
    args: &InfluxArgs,
    timeout: Duration,
) -> Result<InfluxWriter, (i32, String)> {
    let mut cfg = args
        .config(|k| std::env::var(k).ok())
        .map_err(|e| (exit::USAGE, format!("{e} (see --help)")))?;
    cfg.timeout = timeout;
    let target = format!("InfluxDB at {} ({})", cfg.url, cfg.api.target());
    let writer = InfluxWriter::new(&cfg).map_err(|e| (exit::FATAL, format!("{target}: {e}")))?;
    match writer.probe().await {
        Ok(info) => {
            let version = info.version.as_deref().unwrap_or("unknown");
            eprintln!("{target}: ready (server version {version})");
            Ok(writer)
        }
        Err(e) => Err((exit::FATAL, format!("{target}: {e}"))),
    }
}

/// One input on its way to a sink.
struct Run<'a> {
    cmd: &'a IngestCmd,
    source: Box<dyn Read + Send>,
    /// Set for `--parallel` (then `source` is not read).
    parallel: Option<super::parallel::Input>,
    size: Option<u64>,
    popts: PipelineOptions,
}

impl Run<'_> {
    async fn sink<E, W>(
        self,
        encoder: impl Fn() -> E,
        writer: Arc<W>,
        dlq: Arc<FileSink>,
        wcfg: WriterConfig,
    ) -> i32
    where
        E: Encoder + Send + 'static,
        E::Request: Request,
        W: Service<E::Request>,
    {
        let Run {
            cmd,
            source,
            parallel,
            size,
            popts,
        } = self;
        let live = Live::default();
        let display = progress::single(progress::Mode::resolve(&cmd.progress), live.clone(), size);
        let started = Instant::now();
        if let Some(input) = parallel {
            let res = super::parallel::run(
                input,
                usize::from(cmd.parallel),
                popts,
                encoder,
                writer,
                dlq,
                wcfg,
                live,
            )
            .await;
            display.finish().await;
            return match res {
                Ok(r) => report(cmd, r, started),
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::FATAL
                }
            };
        }
        let sink = Sink {
            encoder: encoder(),
            service: writer,
            dead_letters: dlq,
            config: wcfg,
        };
        let res = ingest(
            source,
            cmd.input.clone(),
            popts,
            sink,
            live,
            Arc::new(|| false),
        )
        .await;
        display.finish().await;
        report(cmd, res.report, started)
    }
}

/// Prints the report (and writes --summary-json); the exit code.
fn report(cmd: &IngestCmd, report: crate::core::report::RunReport, started: Instant) -> i32 {
    let mut report = report;
    report.seconds = started.elapsed().as_secs_f64();
    eprintln!("{}", report.human());
    if let Some(p) = &cmd.conv.summary_json {
        if let Err(e) = write_summary(p, &report) {
            eprintln!("error: writing {}: {e}", p.display());
            return exit::FATAL;
        }
    }
    if report.error.is_some() {
        exit::FATAL
    } else if report.dead_lettered > 0 || report.dropped_total() > 0 {
        exit::DEAD_LETTERED
    } else {
        exit::OK
    }
}

fn writer_config(cmd: &IngestCmd) -> WriterConfig {
    WriterConfig {
        concurrency: cmd.concurrency,
        request_timeout: Duration::from_secs(cmd.request_timeout_secs.max(1)),
        retry: RetryPolicy {
            max_attempts: cmd.max_attempts,
            ..RetryPolicy::default()
        },
        retry_budget: cmd.retry_budget,
        skip_batches: 0,
        hard_deadline: None,
        shared_limit: None,
    }
}

/// The Timestream writer for `cmd`'s database and table.
async fn timestream_writer(
    cmd: &IngestCmd,
    sdk: &aws_config::SdkConfig,
) -> Result<Arc<TimestreamWriter>, String> {
    let client = build_client(sdk, cmd.endpoint_url.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(TimestreamWriter::new(
        client,
        cmd.database.clone().unwrap_or_default(),
        cmd.table.clone().unwrap_or_default(),
    )))
}

/// Several objects (a prefix, several files, a glob, or `--state`), into
/// Timestream or (`influx` set: the probed writer) InfluxDB.
async fn backfill(
    cmd: &IngestCmd,
    sdk: &aws_config::SdkConfig,
    influx: Option<InfluxWriter>,
) -> i32 {
    let mut wcfg = writer_config(cmd);
    // One budget of calls in flight for all objects together.
    wcfg.shared_limit = Some(Arc::new(tokio::sync::Semaphore::new(cmd.concurrency)));
    let plan = super::backfill::Plan {
        inputs: cmd.inputs(),
        args: &cmd.backfill,
        conv: &cmd.conv,
        dead_letter: cmd.dead_letter.clone(),
        progress: progress::Mode::resolve(&cmd.progress),
        flush_interval: cmd.flush_interval,
        writer: wcfg,
    };
    match influx {
        None => {
            let writer = match timestream_writer(cmd, sdk).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::FATAL;
                }
            };
            let conv = cmd.conv.clone();
            let make = move || conv.timestream_encoder();
            super::backfill::run(plan, sdk, Box::new(make), writer).await
        }
        Some(writer) => {
            let opts = cmd.influx.encoding.encoder_options();
            let window = cmd.conv.collision_window_secs;
            let make = move || InfluxEncoder::new(opts.clone(), window);
            super::backfill::run(plan, sdk, Box::new(make), Arc::new(writer)).await
        }
    }
}
