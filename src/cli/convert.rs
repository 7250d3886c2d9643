//! `k6-timestream convert`: the pure core on the command line.

use super::{exit, write_summary, ConversionArgs};
use crate::core::input::Progress;
use crate::core::pipeline;
use crate::sources::local::open_local;
use clap::Args;
use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ConvertCmd {
    #[command(flatten)]
    pub conv: ConversionArgs,
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
    // Encoding the output runs on its own thread: with decompression on
    // another, parse/convert, inflate and encode overlap on 2 cores.
    let (tx, rx) = std::sync::mpsc::sync_channel::<crate::sinks::timestream::WriteRequest>(16);
    let (database, table) = (cmd.database.clone(), cmd.table.clone());
    let encoder = std::thread::spawn(move || -> std::io::Result<()> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let mut buf = Vec::with_capacity(64 * 1024);
        for req in rx {
            buf.clear();
            crate::sinks::timestream::encode::encode(&mut buf, &database, &table, &req);
            out.write_all(&buf)?;
        }
        out.flush()
    });
    let mut batcher = cmd.conv.timestream_encoder();
    let outcome = pipeline::run(
        source,
        &cmd.input,
        &opts,
        &mut batcher,
        Arc::new(Progress::default()),
        &mut |req, _| {
            if tx.send(req).is_ok() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(()) // the encoder failed: its error is reported below
            }
        },
    );
    drop(tx);
    let written = encoder
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("encoder thread panicked")));
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
