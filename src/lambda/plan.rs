//! Deadline arithmetic, pure: from the invocation's deadline and the
//! configured margin and budget to the instants the run stops at.

use std::time::{Duration, SystemTime};

/// Time left until `deadline`. Lambda sends the deadline as epoch
/// milliseconds; some local runtime emulators send the remaining duration
/// in that header instead (a "deadline" in January 1970). A deadline
/// before 2001 cannot be meant as an instant, so it is read as a duration.
pub fn time_left(deadline: SystemTime, now: SystemTime) -> Duration {
    match deadline.duration_since(now) {
        Ok(left) => left,
        Err(_) => {
            let since_epoch = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            if since_epoch < Duration::from_secs(1_000_000_000) {
                since_epoch
            } else {
                Duration::ZERO
            }
        }
    }
}

/// Deadline margin actually used: the configured one, but never more than
/// a quarter of the time the invocation has (a 60 s margin on a 30 s
/// function would leave no time to work).
pub fn effective_margin(configured: Duration, remaining: Duration) -> Duration {
    configured.min(remaining / 4)
}

/// When one object's run stops, as offsets from the moment it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Stop taking new requests once at least one new request was written
    /// (the work budget; the progress guarantee keeps a chain advancing).
    pub soft_stop: Duration,
    /// Stop taking new requests whatever happened.
    pub hard_stop: Duration,
    /// No retry sleep may end past this: such a request is dead-lettered.
    pub last_retry: Duration,
    /// Per-attempt timeout: the configured one, capped by the margin.
    pub request_timeout: Duration,
    /// The margin in force (for messages).
    pub margin: Duration,
}

/// The plan for a run that starts with `remaining` time left, `elapsed`
/// after the invocation started (earlier objects of the same event).
pub fn plan(
    remaining: Duration,
    elapsed: Duration,
    margin: Duration,
    work_budget: Duration,
    request_timeout: Duration,
) -> Plan {
    let margin = effective_margin(margin, remaining);
    let hard_stop = remaining.saturating_sub(margin);
    let soft_stop = if work_budget.is_zero() {
        hard_stop
    } else {
        hard_stop.min(work_budget.saturating_sub(elapsed))
    };
    Plan {
        soft_stop,
        hard_stop,
        last_retry: remaining.saturating_sub(margin / 2),
        request_timeout: request_timeout.min(margin.max(Duration::from_secs(1))),
        margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn deadline_as_instant_or_as_duration() {
        let now = SystemTime::now();
        assert_eq!(time_left(now + S(30), now), S(30));
        assert_eq!(
            time_left(SystemTime::UNIX_EPOCH + Duration::from_millis(600_000), now),
            S(600)
        );
        assert_eq!(time_left(now - S(5), now), Duration::ZERO);
    }

    #[test]
    fn margin_is_capped_by_the_time_left() {
        assert_eq!(effective_margin(S(60), S(900)), S(60));
        assert_eq!(effective_margin(S(60), S(30)), Duration::from_millis(7500));
    }

    #[test]
    fn stops_follow_margin_and_budget() {
        // 15 min function, 60 s margin, no budget.
        let p = plan(S(900), S(0), S(60), S(0), S(20));
        assert_eq!(
            (p.soft_stop, p.hard_stop, p.last_retry),
            (S(840), S(840), S(870))
        );
        assert_eq!(p.request_timeout, S(20));
        // A work budget counts from the invocation's start.
        let p = plan(S(900), S(10), S(60), S(100), S(20));
        assert_eq!((p.soft_stop, p.hard_stop), (S(90), S(840)));
        // A budget used up by earlier objects stops at once (softly).
        assert_eq!(plan(S(900), S(200), S(60), S(100), S(20)).soft_stop, S(0));
        // A short function: the margin shrinks, so does the timeout.
        let p = plan(S(8), S(0), S(60), S(0), S(20));
        assert_eq!(
            (p.margin, p.hard_stop, p.request_timeout),
            (S(2), S(6), S(2))
        );
    }
}
