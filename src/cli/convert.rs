//! `k6-timestream convert`: the pure core on the command line.

use super::{exit, write_summary, ConversionArgs};
use crate::core::input::Progress;
use crate::core::pipeline::{self, Encoder, PipelineOptions};
use crate::sinks::influxdb::{InfluxEncoder, InfluxEncodingArgs, InfluxRequest};
use crate::sinks::timestream::WriteRequest;
use crate::sinks::SinkKind;
use crate::sources::local::open_local;
use clap::Args;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::Arc;

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
                move |req: &WriteRequest, buf| {
                    crate::sinks::timestream::encode::encode(buf, &database, &table, req)
                },
            )
        }
        SinkKind::Influxdb => {
            let encoder =
                InfluxEncoder::new(cmd.influx.encoder_options(), cmd.conv.collision_window_secs);
            convert(&cmd, source, &opts, encoder, |req: &InfluxRequest, buf| {
                buf.extend_from_slice(&req.body)
            })
        }
    }
}

/// Runs the core with `encoder`, writing each request as `write` renders
/// it to stdout.
fn convert<E>(
    cmd: &ConvertCmd,
    source: impl Read + Send,
    opts: &PipelineOptions,
    mut encoder: E,
    mut write: impl FnMut(&E::Request, &mut Vec<u8>) + Send + 'static,
) -> i32
where
    E: Encoder,
    E::Request: Send + 'static,
{
    // Rendering the output runs on its own thread: with decompression on
    // another, parse/convert, inflate and render overlap on 2 cores.
    let (tx, rx) = std::sync::mpsc::sync_channel::<E::Request>(16);
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
    let outcome = pipeline::run(
        source,
        &cmd.input,
        opts,
        &mut encoder,
        Arc::new(Progress::default()),
        &mut |req, _| {
            if tx.send(req).is_ok() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(()) // the renderer failed: its error is reported below
            }
        },
    );
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
