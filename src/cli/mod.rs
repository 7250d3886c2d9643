//! The `k6-timestream` command line: argument types and the subcommands.

pub mod convert;
pub mod ingest;
pub mod parallel;

use crate::core::collision::DEFAULT_COLLISION_WINDOW_SECS;
use crate::core::convert::{ConvertOptions, TestId, DEFAULT_MULTI_MEASURE_NAME};
use crate::core::input::{InputOptions, DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_LINE_BYTES};
use crate::core::model::DataModel;
use crate::core::pipeline::PipelineOptions;
use crate::sinks::timestream::Batcher;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit codes.
pub mod exit {
    /// Every point was converted (convert) or written (ingest).
    pub const OK: i32 = 0;
    /// The run finished but some records were dead-lettered (ingest).
    pub const DEAD_LETTERED: i32 = 1;
    /// Bad arguments (also clap's own code).
    pub const USAGE: i32 = 2;
    /// A fatal error: unreadable/corrupt input, missing table, access denied.
    pub const FATAL: i32 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "k6-timestream",
    version,
    about = "Stream k6 JSON results (plain or gzip; a file, - or s3://) into Amazon Timestream"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert k6 JSON output into WriteRecords requests (one JSON request per stdout line), or InfluxDB line protocol with --sink influxdb; no network calls.
    Convert(convert::ConvertCmd),
    /// Convert and write to Timestream (or InfluxDB with --sink influxdb) with bounded concurrency, retries and a dead-letter file.
    Ingest(ingest::IngestCmd),
}

/// Options shared by `convert` and `ingest`: how points become records.
#[derive(Args, Debug, Clone)]
pub struct ConversionArgs {
    /// Timestream data model: `multi` (one MULTI record per k6 request/sample group; cheaper) or `single` (one record per point). InfluxDB always gets one line per point.
    #[arg(long, default_value = "multi", value_parser = parse_model)]
    pub model: DataModel,
    /// Run identifier added as dimension `testid` to points without a `testid` tag (default: the input file name without .json/.ndjson/.gz).
    #[arg(long, value_name = "ID", conflicts_with = "no_testid")]
    pub testid: Option<String>,
    /// Do not add a `testid` dimension.
    #[arg(long)]
    pub no_testid: bool,
    /// Extra dimension added to every record, KEY=VALUE (repeatable); a point's own tag of the same name wins.
    #[arg(long = "dimension", value_name = "KEY=VALUE", value_parser = crate::core::kv::parse_kv)]
    pub dimensions: Vec<(String, String)>,
    /// MeasureName of MULTI records.
    #[arg(long, default_value = DEFAULT_MULTI_MEASURE_NAME, value_name = "NAME", value_parser = parse_measure_name)]
    pub measure_name: String,
    /// Longest accepted input line in bytes; longer lines are skipped and reported.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES, value_name = "BYTES")]
    pub max_line_bytes: usize,
    /// Cap on the decompressed size of the input (guards against decompression bombs).
    #[arg(long, default_value_t = DEFAULT_MAX_DECOMPRESSED_BYTES, value_name = "BYTES")]
    pub max_decompressed_bytes: u64,
    /// Span of record times remembered to resolve timestamp collisions.
    #[arg(long, default_value_t = DEFAULT_COLLISION_WINDOW_SECS, value_name = "SECS")]
    pub collision_window_secs: u64,
    /// Write the run report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

impl ConversionArgs {
    pub fn testid_rule(&self) -> TestId {
        match (&self.testid, self.no_testid) {
            (_, true) => TestId::Off,
            (Some(t), _) => TestId::Fixed(t.clone()),
            (None, false) => TestId::FromInput,
        }
    }

    /// Timestream's request builder for these options.
    pub fn timestream_encoder(&self) -> Batcher {
        Batcher::new(self.model, self.collision_window_secs)
    }

    pub fn pipeline_options(&self, input_name: &str) -> PipelineOptions {
        PipelineOptions {
            convert: ConvertOptions {
                model: self.model,
                testid: self.testid_rule().resolve(input_name),
                extra_dimensions: self.dimensions.clone(),
                multi_measure_name: self.measure_name.clone(),
                ..Default::default()
            },
            input: InputOptions {
                max_line_bytes: self.max_line_bytes,
                max_decompressed_bytes: self.max_decompressed_bytes,
            },
        }
    }
}

pub fn parse_measure_name(s: &str) -> Result<String, String> {
    crate::core::convert::check_measure_name(s).map(|()| s.to_owned())
}

pub fn parse_model(s: &str) -> Result<DataModel, String> {
    s.parse()
}

/// Writes the report JSON to `path`.
pub fn write_summary(
    path: &std::path::Path,
    report: &crate::core::report::RunReport,
) -> std::io::Result<()> {
    let mut s = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    s.push('\n');
    std::fs::write(path, s)
}

/// Parses arguments and runs; returns the process exit code. Argument
/// errors print one line (`error: …`) and give 2.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return exit::OK;
            }
            // One line, not clap's multi-line block: the message up to the
            // first blank line (it may list the missing arguments below).
            let msg = e.to_string();
            let first: Vec<&str> = msg
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let line = if first.is_empty() {
                "error: invalid arguments".to_owned()
            } else {
                first.join(" ")
            };
            eprintln!("{line} (see --help)");
            return exit::USAGE;
        }
    };
    match cli.command {
        Command::Convert(c) => convert::run(c),
        Command::Ingest(c) => ingest::run(c),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks (unique argument ids across flattened structs,
    /// valid defaults), which it otherwise runs only when parsing.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
