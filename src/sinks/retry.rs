//! Retry policy: what to do with each error, and how long to wait.
//!
//! One retry layer only: the SDK client is built with retries disabled
//! (`RetryConfig::disabled()`), because its standard mode would retry
//! throttling invisibly, spend our time budget, and hide the count from the
//! run report. Here every retry is counted and bounded twice: per request
//! (`max_attempts`) and per run (`budget`), so a Timestream outage costs at
//! most a known amount of time before records are dead-lettered.

use super::WriteError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the writer does with a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient: back off and send the same request again.
    Retry,
    /// The request as a whole was invalid: split it to isolate the bad
    /// record(s) (a single record is dead-lettered).
    Split,
    /// Partial success: dead-letter the rejected indexes, count the rest.
    DeadLetterRejected,
    /// Nothing more can succeed (missing table, no permission): stop the run.
    Abort,
}

pub fn classify(e: &WriteError) -> Action {
    match e {
        WriteError::Throttled { .. }
        | WriteError::Server(_)
        | WriteError::Timeout
        | WriteError::Connection(_) => Action::Retry,
        WriteError::Validation(_) => Action::Split,
        WriteError::Rejected(_) => Action::DeadLetterRejected,
        WriteError::NotFound(_) | WriteError::AccessDenied(_) | WriteError::Fatal(_) => {
            Action::Abort
        }
    }
}

/// Attempts per request (the first included), by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter" (AWS Architecture Blog, Exponential Backoff And
    /// Jitter): uniform in [0, min(cap, base·2^retry)]. Spreads synchronized
    /// clients best under throttling, at the cost of sometimes retrying fast.
    pub fn backoff(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.min(20));
        let ceiling = exp.min(self.cap);
        let nanos = ceiling.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { rng.u64(0..=nanos) })
    }
}

/// The longest `Retry-After` honoured as asked. A longer one (or one far
/// in the future as a date) is cut to this: 15 minutes is a whole Lambda
/// invocation, and a too-early retry costs one more throttled answer with
/// a fresh `Retry-After`, while an unbounded one could stall a run for as
/// long as a server (or a proxy in front of it) says.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): the full-jitter
    /// [`Self::backoff`], but never shorter than the server's
    /// `Retry-After` (capped at [`MAX_RETRY_AFTER`]). Jitter stays on top
    /// of a short `Retry-After` so that clients told the same thing do not
    /// all come back at once.
    pub fn wait(
        &self,
        retry: u32,
        rng: &mut fastrand::Rng,
        retry_after: Option<Duration>,
    ) -> Duration {
        let jittered = self.backoff(retry, rng);
        match retry_after {
            Some(after) => jittered.max(after.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

/// A run-wide number of retries; shared by all in-flight requests.
#[derive(Debug)]
pub struct RetryBudget {
    left: AtomicU64,
}

impl RetryBudget {
    pub fn new(total: u64) -> Self {
        Self {
            left: AtomicU64::new(total),
        }
    }
    /// Takes one retry from the budget; false when none is left.
    pub fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
            .is_ok()
    }
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use WriteError::*;
        for e in [
            WriteError::throttled("x"),
            Server("x".into()),
            Timeout,
            Connection("reset".into()),
        ] {
            assert_eq!(classify(&e), Action::Retry, "{e}");
        }
        assert_eq!(classify(&Validation("x".into())), Action::Split);
        assert_eq!(classify(&Rejected(vec![])), Action::DeadLetterRejected);
        for e in [
            NotFound("t".into()),
            AccessDenied("x".into()),
            Fatal("x".into()),
        ] {
            assert_eq!(classify(&e), Action::Abort, "{e}");
        }
    }

    #[test]
    fn backoff_is_full_jitter_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 0..30 {
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1 << retry.min(20))
                .min(Duration::from_secs(1));
            let mut max = Duration::ZERO;
            for _ in 0..200 {
                let d = p.backoff(retry, &mut rng);
                assert!(d <= ceiling);
                max = max.max(d);
            }
            // Jitter spans the range: some draw lands in its top half.
            assert!(max > ceiling / 2, "retry {retry}: {max:?} vs {ceiling:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_under_the_jitter() {
        let p = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(3);
        for retry in 0..12 {
            let after = Duration::from_millis(700);
            let w = p.wait(retry, &mut rng, Some(after));
            assert!(w >= after, "{w:?}");
            assert!(w <= after.max(p.cap), "{w:?}");
            assert!(p.wait(retry, &mut rng, None) <= p.cap);
        }
        // Past the cap of the jitter the server's wait decides alone…
        assert_eq!(
            p.wait(0, &mut rng, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        // …up to the longest wait honoured.
        assert_eq!(
            p.wait(0, &mut rng, Some(Duration::from_secs(u64::MAX))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn budget_is_shared_and_exact() {
        let b = std::sync::Arc::new(RetryBudget::new(1000));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..400).filter(|_| b.take()).count())
            })
            .collect();
        let taken: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken, 1000);
        assert_eq!(b.left(), 0);
    }
}
