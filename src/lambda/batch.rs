//! The S3 Batch Operations answer, pure: from what became of each task's
//! object to its `resultCode` and `resultString`, and the response JSON.
//!
//! Batch Operations invokes the function synchronously, one task per
//! invocation in practice, and reads the answer per task: `Succeeded`,
//! `TemporaryFailure` (redriven before the job completes) or
//! `PermanentFailure`. The result string goes into the job's completion
//! report, so it is short: the counts, or the error.

use crate::core::report::{Outcome, RunReport};
use aws_lambda_events::event::s3::batch_job::{S3BatchJobResponse, S3BatchJobResult};

/// A task's `resultCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Succeeded,
    /// Batch Operations retries the task.
    TemporaryFailure,
    PermanentFailure,
}

impl ResultCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultCode::Succeeded => "Succeeded",
            ResultCode::TemporaryFailure => "TemporaryFailure",
            ResultCode::PermanentFailure => "PermanentFailure",
        }
    }
}

/// What became of one task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// The object was processed (its report says how).
    Report(Box<RunReport>),
    /// A failure a retry can cure (what fails a whole invocation for the
    /// other event kinds): this task only is retried.
    Retryable(String),
    /// The task names no object this function can read.
    Unusable(String),
}

/// Longest result string kept (a whole chain-limit or source error fits;
/// the completion report stays one readable line per task).
pub const MAX_RESULT_STRING: usize = 512;

/// The task's `resultCode` and `resultString`.
///
/// A `continued` object is `Succeeded`: the function accepted it and its
/// own continuation chain finishes it (failures there go to the function's
/// failed-events queue, as for every other event), so a Batch retry would
/// only start a second chain over the same object.
pub fn task_result(outcome: &TaskOutcome) -> (ResultCode, String) {
    let (code, text) = match outcome {
        TaskOutcome::Retryable(e) => (ResultCode::TemporaryFailure, e.clone()),
        TaskOutcome::Unusable(e) => (ResultCode::PermanentFailure, e.clone()),
        TaskOutcome::Report(r) => report_result(r),
    };
    (code, truncate(text, MAX_RESULT_STRING))
}

fn report_result(r: &RunReport) -> (ResultCode, String) {
    let error = || {
        r.error
            .clone()
            .unwrap_or_else(|| "no error text".to_owned())
    };
    match r.outcome {
        Some(Outcome::Complete) => {
            let mut s = format!(
                "complete: {} points, {} measures written, {} records dead-lettered",
                r.points, r.written_measures, r.dead_lettered
            );
            if r.dead_lettered > 0 {
                if let Some(l) = &r.dead_letter_location {
                    s += &format!(" ({l})");
                }
            }
            (ResultCode::Succeeded, s)
        }
        Some(Outcome::Continued) => (
            ResultCode::Succeeded,
            format!(
                "continued in a new invocation: {} measures written, {} records dead-lettered so far",
                r.written_measures, r.dead_lettered
            ),
        ),
        Some(Outcome::Skipped) => (
            ResultCode::Succeeded,
            "skipped: the key does not look like k6 results (K6TS_SUFFIXES)".to_owned(),
        ),
        Some(o @ (Outcome::NotFound | Outcome::Replaced | Outcome::Failed | Outcome::ChainLimit)) => {
            (ResultCode::PermanentFailure, format!("{}: {}", o.as_str(), error()))
        }
        None => (ResultCode::PermanentFailure, format!("no outcome: {}", error())),
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The answer to an invocation: its schema version and id echoed, one
/// result per task in the order given. Keys missing from the answer count
/// as permanent failures (there are none: every task gets a result).
pub fn response(
    schema_version: &str,
    invocation_id: &str,
    tasks: &[(String, TaskOutcome)],
) -> S3BatchJobResponse {
    let mut resp = S3BatchJobResponse::default();
    resp.invocation_schema_version = Some(schema_version.to_owned());
    resp.treat_missing_keys_as = Some(ResultCode::PermanentFailure.as_str().to_owned());
    resp.invocation_id = Some(invocation_id.to_owned());
    resp.results = tasks
        .iter()
        .map(|(task_id, outcome)| {
            let (code, text) = task_result(outcome);
            let mut r = S3BatchJobResult::default();
            r.task_id = Some(task_id.clone());
            r.result_code = Some(code.as_str().to_owned());
            r.result_string = Some(text);
            r
        })
        .collect();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(outcome: Option<Outcome>, error: Option<&str>) -> TaskOutcome {
        TaskOutcome::Report(Box::new(RunReport {
            outcome,
            error: error.map(str::to_owned),
            points: 10,
            written_measures: 8,
            dead_lettered: 2,
            dead_letter_location: Some("s3://b/k6-timestream-dead-letter/b/k.json".into()),
            ..Default::default()
        }))
    }

    #[test]
    fn table() {
        use ResultCode::*;
        let clean = TaskOutcome::Report(Box::new(RunReport {
            outcome: Some(Outcome::Complete),
            points: 436,
            written_measures: 436,
            dead_letter_location: Some("s3://b/unused".into()),
            ..Default::default()
        }));
        let rows: &[(TaskOutcome, ResultCode, &str)] = &[
            (clean, Succeeded, "complete: 436 points, 436 measures written, 0 records dead-lettered"),
            (
                report(Some(Outcome::Complete), None),
                Succeeded,
                "complete: 10 points, 8 measures written, 2 records dead-lettered (s3://b/k6-timestream-dead-letter/b/k.json)",
            ),
            (
                report(Some(Outcome::Continued), None),
                Succeeded,
                "continued in a new invocation: 8 measures written, 2 records dead-lettered so far",
            ),
            (
                report(Some(Outcome::Skipped), None),
                Succeeded,
                "skipped: the key does not look like k6 results (K6TS_SUFFIXES)",
            ),
            (
                report(Some(Outcome::NotFound), Some("s3://b/k: object not found")),
                PermanentFailure,
                "not_found: s3://b/k: object not found",
            ),
            (
                report(Some(Outcome::Replaced), Some("replaced")),
                PermanentFailure,
                "replaced: replaced",
            ),
            (
                report(Some(Outcome::Failed), Some("line 3: bad gzip")),
                PermanentFailure,
                "failed: line 3: bad gzip",
            ),
            (
                report(Some(Outcome::ChainLimit), Some("chain limit (50)")),
                PermanentFailure,
                "chain_limit: chain limit (50)",
            ),
            (report(Some(Outcome::Failed), None), PermanentFailure, "failed: no error text"),
            (report(None, Some("odd")), PermanentFailure, "no outcome: odd"),
            (
                TaskOutcome::Retryable("503 SlowDown".into()),
                TemporaryFailure,
                "503 SlowDown",
            ),
            (
                TaskOutcome::Unusable("task without s3Bucket or s3BucketArn".into()),
                PermanentFailure,
                "task without s3Bucket or s3BucketArn",
            ),
        ];
        for (outcome, code, text) in rows {
            assert_eq!(
                task_result(outcome),
                (*code, (*text).to_owned()),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn long_errors_are_cut_at_a_char_boundary() {
        let long = "é".repeat(400);
        let (code, s) = task_result(&TaskOutcome::Retryable(long));
        assert_eq!(code, ResultCode::TemporaryFailure);
        assert!(
            s.len() <= MAX_RESULT_STRING && s.ends_with('…'),
            "{}",
            s.len()
        );
        assert!(s.len() > MAX_RESULT_STRING - 8);
        let short = "x".repeat(MAX_RESULT_STRING);
        assert_eq!(task_result(&TaskOutcome::Unusable(short.clone())).1, short);
    }

    #[test]
    fn response_has_the_batch_operations_shape() {
        let tasks = vec![
            ("t1".to_owned(), report(Some(Outcome::Complete), None)),
            ("t2".to_owned(), TaskOutcome::Retryable("timeout".into())),
        ];
        let v = serde_json::to_value(response("2.0", "inv", &tasks)).unwrap();
        assert_eq!(
            v,
            json!({
                "invocationSchemaVersion": "2.0",
                "treatMissingKeysAs": "PermanentFailure",
                "invocationId": "inv",
                "results": [
                    {"taskId": "t1", "resultCode": "Succeeded",
                     "resultString": "complete: 10 points, 8 measures written, 2 records dead-lettered (s3://b/k6-timestream-dead-letter/b/k.json)"},
                    {"taskId": "t2", "resultCode": "TemporaryFailure", "resultString": "timeout"}
                ]
            })
        );
    }
}
