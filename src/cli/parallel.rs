//! `ingest --parallel N`: a local file indexed once, cut into N segments
//! (see [`crate::core::segment`]) written concurrently by this process,
//! each with its own encoder and reading only its range of the file.

use crate::core::input::InputOptions;
use crate::core::pipeline::{Encoder, PipelineOptions};
use crate::core::report::RunReport;
use crate::core::segment;
use crate::ingest::{ingest_segment, Live, Sink};
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::driver::WriterConfig;
use crate::sinks::{Request, Service};
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

/// Why a parallel run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("indexing {path}: {source}")]
    Index {
        path: String,
        source: segment::IndexError,
    },
}

/// Indexes `path` (its progress in `live`), writes its `parts` segments concurrently (each with
/// `concurrency / parts` requests in flight, at least one, so the sink
/// sees about the load of a serial run) and returns the merged report.
#[allow(clippy::too_many_arguments)]
pub async fn run<E, W, D>(
    path: &str,
    parts: usize,
    popts: PipelineOptions,
    encoder: impl Fn() -> E,
    service: Arc<W>,
    dead_letters: Arc<D>,
    wcfg: WriterConfig,
    live: Live,
) -> Result<RunReport, ParallelError>
where
    E: Encoder + Send + 'static,
    E::Request: Request,
    W: Service<E::Request>,
    D: DeadLetterSink,
{
    let open = |p: &str| {
        std::fs::File::open(p).map_err(|source| ParallelError::Open {
            path: p.to_owned(),
            source,
        })
    };
    let file = std::io::BufReader::new(open(path)?);
    let p2 = live.progress.clone();
    let opts: InputOptions = popts.input.clone();
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    // The index pass reads the whole file once; its spacing only needs to
    // be fine relative to a segment.
    let spacing = segment::candidate_spacing(total.max(1).div_ceil(parts as u64 * 8));
    let index = tokio::task::spawn_blocking(move || segment::index(file, spacing, &opts, &p2))
        .await
        .expect("index thread")
        .map_err(|source| ParallelError::Index {
            path: path.to_owned(),
            source,
        })?;
    if !index.json {
        // k6 CSV (or input that may not be k6 output at all): one serial
        // run, which reads the header and tells the format (its byte
        // counters include the index pass).
        let sink = Sink {
            encoder: encoder(),
            service,
            dead_letters,
            config: wcfg,
        };
        let res = crate::ingest::ingest(
            std::io::BufReader::new(open(path)?),
            path.to_owned(),
            popts,
            sink,
            live,
            Arc::new(|| false),
        )
        .await;
        return Ok(res.report);
    }
    let seg_bytes = index.bytes.div_ceil(parts.max(1) as u64).max(1);
    let mut plan = segment::plan_index(&index, seg_bytes, segment::default_lookback(seg_bytes));
    if plan.len() > 1 && !segment::worth_fanning_out(&index, &plan) {
        // A gzip stream without deflate block boundaries: every segment
        // would inflate all that comes before it.
        eprintln!(
            "{path}: the gzip stream has too few deflate block boundaries to start segments near their lines (written as one block, e.g. by zlib-ng/zlib-rs level 1): written as one segment"
        );
        plan = segment::plan_index(&index, index.bytes.max(1), 0);
    }
    let metrics = Arc::new(index.metrics.clone());
    let per = (wcfg.concurrency / plan.len().max(1)).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for spec in plan {
        let from = segment::position(&index, &index.candidates[spec.read_from]);
        let mut f = open(path)?;
        f.seek(SeekFrom::Start(segment::source_offset(from.as_ref())))
            .map_err(|source| ParallelError::Open {
                path: path.to_owned(),
                source,
            })?;
        let sink = Sink {
            encoder: encoder(),
            service: service.clone(),
            dead_letters: dead_letters.clone(),
            config: WriterConfig {
                concurrency: per,
                ..wcfg.clone()
            },
        };
        let (name, popts, metrics) = (path.to_owned(), popts.clone(), metrics.clone());
        let number = spec.number;
        tasks.spawn(async move {
            // Its own counters: its report is its own work.
            let run = ingest_segment(
                std::io::BufReader::new(f),
                name,
                popts,
                metrics,
                spec,
                from,
                sink,
                Live::default(),
                // No deadline here: a segment never wraps up early.
                Arc::new(|| false),
            )
            .await;
            (number, run.report)
        });
    }
    let mut parts_done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        parts_done.push(r.expect("segment task"));
    }
    parts_done.sort_by_key(|p| p.0);
    let reports: Vec<RunReport> = parts_done.into_iter().map(|p| p.1).collect();
    let mut merged = segment::merge_reports(&reports);
    // The index pass read the file once more.
    let (r, d) = live.progress.read();
    merged.chain_bytes_read = merged.bytes_read + r;
    merged.chain_bytes_decompressed = merged.bytes_decompressed + d;
    Ok(merged)
}
