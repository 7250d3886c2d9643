//! Stopping a run and going on later, in another process: the pipeline's
//! whole state at a stop ([`PipelineState`]), the checkpoint that adds the
//! sink's encoder and the requests built but not sent ([`Checkpoint`], with
//! its stored form), and the run that starts fresh or from one ([`run`]).
//!
//! The guarantee: a run stopped any number of times and resumed from its
//! checkpoints (serialised and read back) hands out exactly the requests of
//! one uninterrupted run, in order, each once — byte-identical requests, so
//! a request sent again is a duplicate, never a conflict. It rests on the
//! requests being a pure function of the input (see
//! [`Encoder`](crate::core::pipeline::Encoder)) and on every piece of state
//! that influences them being in the checkpoint: the converter (metric
//! definitions, the group in progress), the encoder (its sequence number,
//! the records of the partial request, the collision guard), the report's
//! counters, and the input position (line number, offset, access point).
//!
//! Live input ([`InputOptions::flush_interval`]) is never checkpointed: its
//! ticks send partial requests when the clock says, so the requests are
//! not a function of the input, and a pipe cannot be read again from an
//! offset. A stopped live run's [`run`] returns no checkpoint.
//!
//! [`InputOptions::flush_interval`]: crate::core::input::InputOptions::flush_interval

use crate::core::convert::Converter;
use crate::core::input::{InputPosition, PositionDecodeError, Progress};
use crate::core::pipeline::{self, Encoder, LineFormat, Outcome, PipelineOptions};
use crate::core::report::RunReport;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::Arc;

/// The pipeline's state after a line: what [`pipeline::run_from`] needs to
/// go on as if it had never stopped.
pub struct PipelineState {
    pub converter: Converter,
    /// The conversion counters so far (the run's own byte counters are
    /// replaced by those of the run that goes on).
    pub report: RunReport,
    /// Smallest and largest record time so far.
    pub time_range: (i64, i64),
    /// Where reading goes on.
    pub input: InputPosition,
    /// What the lines are (JSON, or CSV with its header's layout).
    pub format: LineFormat,
}

impl std::fmt::Debug for PipelineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineState")
            .field("lines", &self.report.lines)
            .field("records", &self.report.records)
            .field("time_range", &self.time_range)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

/// A stopped run: its pipeline state, its encoder, and the requests that
/// were built but not sent (in sequence order; every request before the
/// first of them was handed out before the stop).
pub struct Checkpoint<E: Encoder> {
    pub state: PipelineState,
    pub encoder: E,
    pub unsent: Vec<E::Request>,
}

/// Why a stored checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint of this format (magic bytes or version)")]
    Format,
    #[error("checkpoint larger than {MAX_CHECKPOINT_BYTES} bytes")]
    TooLarge,
    #[error("checkpoint is not a valid gzip stream: {0}")]
    Gzip(std::io::Error),
    #[error("checkpoint input position: {0}")]
    Position(#[from] PositionDecodeError),
    #[error("checkpoint state: {0}")]
    State(#[from] serde_json::Error),
}

/// Stored form, version 1: a gzip stream (its CRC-32 guards the whole) of
/// `MAGIC`, the version byte, the encoded input position's length (u64 LE)
/// and bytes ([`InputPosition::to_bytes`]: it holds binary read-ahead and an
/// access point), then the rest of the state as JSON (serde: the state's
/// types define it, so a field added to them is stored without a format
/// change here). gzip level 1: most of the size is the collision guard's
/// hashes, which do not compress anyway.
const MAGIC: &[u8; 9] = b"K6TS-CKPT";
const VERSION: u8 = 1;
/// Far above any real checkpoint (a full collision guard is ~20 MB of
/// JSON), low enough that a wrong object cannot exhaust memory.
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;

#[derive(Serialize)]
struct Body<'a, E, Q> {
    converter: &'a Converter,
    report: &'a RunReport,
    time_range: (i64, i64),
    format: &'a LineFormat,
    encoder: &'a E,
    unsent: &'a [Q],
}

#[derive(Deserialize)]
struct OwnedBody<E, Q> {
    converter: Converter,
    report: RunReport,
    time_range: (i64, i64),
    /// Checkpoints written before CSV input existed are of JSON runs.
    #[serde(default = "json_format")]
    format: LineFormat,
    encoder: E,
    unsent: Vec<Q>,
}

impl<E> Checkpoint<E>
where
    E: Encoder + Serialize,
    E::Request: Serialize,
{
    /// The stored form (see [`Checkpoint::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let position = self.state.input.to_bytes();
        let body = Body {
            converter: &self.state.converter,
            report: &self.state.report,
            time_range: self.state.time_range,
            format: &self.state.format,
            encoder: &self.encoder,
            unsent: &self.unsent,
        };
        // Writing into memory cannot fail, and the state's types serialise
        // without error (no maps with non-string keys, no custom errors).
        gz.write_all(MAGIC).expect("in memory");
        gz.write_all(&[VERSION]).expect("in memory");
        gz.write_all(&(position.len() as u64).to_le_bytes())
            .expect("in memory");
        gz.write_all(&position).expect("in memory");
        serde_json::to_writer(&mut gz, &body).expect("serialisable state");
        gz.finish().expect("in memory")
    }
}

impl<E> Checkpoint<E>
where
    E: Encoder + DeserializeOwned,
    E::Request: DeserializeOwned,
{
    /// Reads [`Checkpoint::encode`]'s output back.
    pub fn decode(stored: &[u8]) -> Result<Self, CheckpointError> {
        let mut bytes = Vec::new();
        flate2::read::MultiGzDecoder::new(stored)
            .take(MAX_CHECKPOINT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(CheckpointError::Gzip)?;
        if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge);
        }
        let header = MAGIC.len() + 1 + 8;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC || bytes[MAGIC.len()] != VERSION {
            return Err(CheckpointError::Format);
        }
        let mut len = [0; 8];
        len.copy_from_slice(&bytes[MAGIC.len() + 1..header]);
        let rest = &bytes[header..];
        let position_len = usize::try_from(u64::from_le_bytes(len))
            .ok()
            .filter(|n| *n <= rest.len())
            .ok_or(CheckpointError::Format)?;
        let (position, json) = rest.split_at(position_len);
        let input = InputPosition::from_bytes(position)?;
        let body: OwnedBody<E, E::Request> = serde_json::from_slice(json)?;
        Ok(Checkpoint {
            state: PipelineState {
                converter: body.converter,
                report: body.report,
                time_range: body.time_range,
                input,
                format: body.format,
            },
            encoder: body.encoder,
            unsent: body.unsent,
        })
    }
}

fn json_format() -> LineFormat {
    LineFormat::Json
}

/// Where a [`run`] starts.
pub enum Start<E: Encoder> {
    /// At the input's first byte, with a fresh encoder.
    Fresh(E),
    /// Where a stopped run left off; the source must yield the input from
    /// `checkpoint.state.input.source_offset()` on.
    Resume(Box<Checkpoint<E>>),
}

/// Runs the pipeline from `start`, handing each request to `send`, which
/// may refuse it (handing it back). On a refusal the run stops after the
/// line being converted; the checkpoint holds the refused request and any
/// that followed it, and the state to go on with. A checkpoint's unsent
/// requests are offered first, before anything is read.
pub fn run<R: Read + Send, E: Encoder>(
    source: R,
    name: &str,
    opts: &PipelineOptions,
    start: Start<E>,
    progress: Arc<Progress>,
    send: &mut dyn FnMut(E::Request) -> Result<(), E::Request>,
) -> (Outcome, Option<Checkpoint<E>>) {
    let (mut encoder, state, unsent) = match start {
        Start::Fresh(e) => (e, None, Vec::new()),
        Start::Resume(c) => {
            let c = *c;
            (c.encoder, Some(c.state), c.unsent)
        }
    };
    let mut refused = Vec::new();
    let mut unsent = unsent.into_iter();
    for req in unsent.by_ref() {
        if let Err(req) = send(req) {
            refused.push(req);
            break;
        }
    }
    if !refused.is_empty() {
        refused.extend(unsent);
        // Stopped before reading anything: the checkpoint is the one the
        // run started from, less what was sent.
        let state = state.expect("unsent requests come with a pipeline state");
        let outcome = Outcome {
            report: RunReport {
                bytes_read: 0,
                bytes_decompressed: 0,
                gzip: state.input.gzip,
                complete: false,
                error: None,
                ..state.report.clone()
            },
            stopped: true,
            error: None,
            state: None,
        };
        let checkpoint = Checkpoint {
            state,
            encoder,
            unsent: refused,
        };
        return (outcome, Some(checkpoint));
    }
    let mut outcome = pipeline::run_from(
        source,
        name,
        opts,
        &mut encoder,
        progress,
        state,
        &mut |req, _| {
            if !refused.is_empty() {
                // Once one request was refused, so is every later one.
                refused.push(req);
                return ControlFlow::Break(());
            }
            match send(req) {
                Ok(()) => ControlFlow::Continue(()),
                Err(req) => {
                    refused.push(req);
                    ControlFlow::Break(())
                }
            }
        },
    );
    let checkpoint = outcome.state.take().map(|state| Checkpoint {
        state: *state,
        encoder,
        unsent: refused,
    });
    (outcome, checkpoint)
}
