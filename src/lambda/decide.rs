//! What an object's run comes to, pure: from what happened to the outcome
//! and to what the handler does next.

use crate::core::report::Outcome;

/// What happened in one invocation's run of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The run stopped for time (deadline margin or work budget) with
    /// requests left, and not because of an error.
    pub stopped_for_time: bool,
    /// The run ended in an error; `Some(true)` when a retry can cure it
    /// (a network read error), `Some(false)` when not (bad input, a sink
    /// that refuses the run).
    pub failure: Option<bool>,
    /// At least one request was finished in this invocation (else a
    /// continuation would find itself in the same place).
    pub progressed: bool,
    /// The first object of the invocation (a later one may find the time
    /// used up by earlier objects: it continues instead of failing).
    pub first: bool,
    /// This invocation's place in the chain (0: the original event).
    pub attempt: u32,
    pub max_continuations: u32,
}

/// What the handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Report this outcome; the object is done with.
    Report(Outcome),
    /// Hand the rest to a new invocation (outcome `continued`).
    Continue,
    /// Not one new request fit before the margin: report `failed` with a
    /// message saying so.
    NoProgress,
    /// Fail the invocation so Lambda retries it.
    Retry,
}

pub fn decide(f: &Facts) -> Decision {
    match f.failure {
        Some(true) => return Decision::Retry,
        Some(false) => return Decision::Report(Outcome::Failed),
        None => {}
    }
    if !f.stopped_for_time {
        return Decision::Report(Outcome::Complete);
    }
    if f.first && !f.progressed {
        Decision::NoProgress
    } else if f.attempt >= f.max_continuations {
        Decision::Report(Outcome::ChainLimit)
    } else {
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input that is not k6 output is `failed` by its type, not its text.
    #[test]
    fn not_k6_input_fails() {
        let failure = crate::ingest::Failure::NotK6(String::new());
        let f = Facts {
            stopped_for_time: false,
            failure: Some(failure.retryable()),
            progressed: false,
            first: true,
            attempt: 0,
            max_continuations: 50,
        };
        assert_eq!(decide(&f), Decision::Report(Outcome::Failed));
    }

    #[test]
    fn table() {
        use Decision::*;
        // (stopped_for_time, failure, progressed, first, attempt, max) → decision
        type Row = ((bool, Option<bool>, bool, bool, u32, u32), Decision);
        let rows: &[Row] = &[
            ((false, None, true, true, 0, 50), Report(Outcome::Complete)),
            ((false, None, false, true, 0, 50), Report(Outcome::Complete)),
            ((false, Some(true), true, true, 0, 50), Retry),
            ((true, Some(true), true, true, 0, 50), Retry),
            (
                (false, Some(false), true, true, 0, 50),
                Report(Outcome::Failed),
            ),
            (
                (true, Some(false), true, true, 3, 50),
                Report(Outcome::Failed),
            ),
            ((true, None, true, true, 0, 50), Continue),
            ((true, None, true, false, 0, 50), Continue),
            ((true, None, false, false, 0, 50), Continue),
            ((true, None, false, true, 0, 50), NoProgress),
            (
                (true, None, true, true, 50, 50),
                Report(Outcome::ChainLimit),
            ),
            ((true, None, true, true, 49, 50), Continue),
            ((true, None, true, true, 0, 0), Report(Outcome::ChainLimit)),
        ];
        for &((stopped_for_time, failure, progressed, first, attempt, max), want) in rows {
            let f = Facts {
                stopped_for_time,
                failure,
                progressed,
                first,
                attempt,
                max_continuations: max,
            };
            assert_eq!(decide(&f), want, "{f:?}");
        }
    }
}
