//! An input run as a chain of stopped and resumed runs, the way Lambda
//! continuations run a big object: each link is handed the input from its
//! checkpoint's source offset on (a ranged read), starts from the previous
//! link's checkpoint (stored and read back), and stops after a planned
//! number of requests. Used by the resume properties of `properties.rs` and
//! by `resume.rs`.

use k6_timestream::core::input::Progress;
use k6_timestream::core::pipeline::PipelineOptions;
use k6_timestream::core::report::RunReport;
use k6_timestream::core::resume::{self, Checkpoint, Start};
use k6_timestream::sinks::timestream::{Batcher, WriteRequest};
use std::sync::Arc;

/// What one link does with the requests it is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Sent: the test keeps them.
    pub send: usize,
    /// Then taken but never sent, like the requests the driver finds
    /// queued in the channel at a stop: they lead the checkpoint's unsent
    /// requests. Every later one is refused (handed back).
    pub queue: usize,
}

#[derive(Debug, Default)]
pub struct Chain {
    /// Everything sent, in order, over all links.
    pub sent: Vec<WriteRequest>,
    /// Each link's report.
    pub reports: Vec<RunReport>,
    /// The stored size of each checkpoint written.
    pub checkpoint_bytes: Vec<usize>,
    /// Where each link read the input from (None: it read nothing, all it
    /// needed was in its checkpoint).
    pub offsets: Vec<Option<u64>>,
}

/// Runs `input` through links planned by `plan` (after the plan: links that
/// send everything) until a link ends with nothing left.
pub fn run_chain(
    input: &[u8],
    name: &str,
    opts: &PipelineOptions,
    window_secs: u64,
    plan: &[Link],
) -> Result<Chain, String> {
    let mut chain = Chain::default();
    let mut stored: Option<Vec<u8>> = None;
    for i in 0usize.. {
        if i > 100_000 {
            return Err("the chain does not end".into());
        }
        let link = plan.get(i).copied().unwrap_or(Link {
            send: usize::MAX,
            queue: 0,
        });
        let (start, offset) = match stored.take() {
            None => (
                Start::Fresh(Batcher::new(opts.convert.model, window_secs)),
                Some(0),
            ),
            Some(bytes) => {
                let c = Checkpoint::<Batcher>::decode(&bytes)
                    .map_err(|e| format!("link {i}: checkpoint: {e}"))?;
                let offset = c
                    .state
                    .input
                    .reads_source()
                    .then(|| c.state.input.source_offset());
                (Start::Resume(Box::new(c)), offset)
            }
        };
        chain.offsets.push(offset);
        let source = match offset {
            Some(o) => input
                .get(o as usize..)
                .ok_or_else(|| format!("link {i}: source offset {o} past the end"))?,
            None => &[],
        };
        let (mut handed, mut queued) = (0usize, Vec::new());
        let (outcome, checkpoint) = resume::run(
            source,
            name,
            opts,
            start,
            Arc::new(Progress::default()),
            &mut |req| {
                handed += 1;
                if handed <= link.send {
                    chain.sent.push(req);
                    Ok(())
                } else if handed - link.send <= link.queue {
                    queued.push(req);
                    Ok(())
                } else {
                    Err(req)
                }
            },
        );
        if let Some(e) = outcome.error {
            return Err(format!("link {i}: {e}"));
        }
        chain.reports.push(outcome.report);
        let mut checkpoint =
            checkpoint.ok_or_else(|| format!("link {i}: no checkpoint without an error"))?;
        queued.append(&mut checkpoint.unsent);
        checkpoint.unsent = queued;
        if checkpoint.unsent.is_empty() && checkpoint.state.input.finished {
            return Ok(chain);
        }
        let bytes = checkpoint.encode();
        chain.checkpoint_bytes.push(bytes.len());
        stored = Some(bytes);
    }
    unreachable!("an unbounded range")
}
