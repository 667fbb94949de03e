//! What happens to a task after an attempt ends: the pure rules of retry, backoff and requeue.
//!
//! The store applies these rules inside its transaction, so every backend decides the same way.

use crate::task::{RunOutcome, TaskState, WaitReason};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How retries back off: `base * 2^(n-1)`, capped at `max`, with "equal jitter" (a random
/// point in the upper half) so a burst of failures does not retry in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    /// After this many crash recoveries the task fails instead of being requeued again, so a
    /// task that keeps killing the daemon cannot loop forever.
    pub max_crash_requeues: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(600), max_crash_requeues: 10 }
    }
}

/// The delay before retrying after `failed_attempts` failures. `jitter` is a number in [0, 1).
pub fn backoff(policy: &RetryPolicy, failed_attempts: u32, jitter: f64) -> Duration {
    let exp = failed_attempts.saturating_sub(1).min(32);
    let raw = policy.base.saturating_mul(1u32 << exp.min(31));
    let capped = raw.min(policy.max);
    let half = capped / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The next state of a task whose attempt `attempt` ended with `outcome`, and its new failure count.
pub fn after_run(
    outcome: &RunOutcome,
    attempt: u32,
    failures_before: u32,
    max_attempts: u32,
    policy: &RetryPolicy,
    now: Timestamp,
    jitter: f64,
) -> (TaskState, u32) {
    match outcome {
        RunOutcome::Succeeded => (TaskState::Succeeded { attempt, finished_at: now }, failures_before),
        RunOutcome::Cancelled { reason } => (TaskState::Cancelled { finished_at: now, reason: reason.clone() }, failures_before),
        RunOutcome::Interrupted { .. } => (TaskState::Queued, failures_before),
        RunOutcome::Paused { until, scope, reason } => (
            TaskState::Waiting { reason: WaitReason::Budget { until: *until, scope: scope.clone(), reason: reason.clone() } },
            failures_before,
        ),
        RunOutcome::Failed { .. } | RunOutcome::TimedOut => {
            let failures = failures_before + 1;
            if failures < max_attempts.max(1) {
                let until = now.plus(backoff(policy, failures, jitter));
                (TaskState::Waiting { reason: WaitReason::Retry { until, failed_attempts: failures } }, failures)
            } else if let RunOutcome::Failed { exit_code, signal, error } = outcome {
                let reason = failure_reason(*exit_code, *signal, error.as_deref(), failures);
                (TaskState::Failed { finished_at: now, reason, exit_code: *exit_code, signal: *signal }, failures)
            } else {
                (TaskState::TimedOut { attempt, finished_at: now }, failures)
            }
        }
    }
}

/// The state after a daemon crash interrupted an attempt: back to the queue, unless this task
/// has already been interrupted by crashes too often.
pub fn after_crash(interruptions_before: u32, policy: &RetryPolicy, now: Timestamp) -> TaskState {
    if interruptions_before + 1 > policy.max_crash_requeues {
        TaskState::Failed {
            finished_at: now,
            reason: format!(
                "the daemon stopped during {} attempts of this task; not requeued again (run `owl retry` to try once more)",
                interruptions_before + 1
            ),
            exit_code: None,
            signal: None,
        }
    } else {
        TaskState::Queued
    }
}

fn failure_reason(exit_code: Option<i32>, signal: Option<i32>, error: Option<&str>, attempts: u32) -> String {
    let what = match (error, exit_code, signal) {
        (Some(e), _, _) => e.to_string(),
        (None, Some(c), _) => format!("exited with code {c}"),
        (None, None, Some(s)) => format!("killed by signal {s}"),
        (None, None, None) => "failed".to_string(),
    };
    if attempts > 1 {
        format!("{what} (after {attempts} attempts)")
    } else {
        what
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_000_000);

    fn failed(code: i32) -> RunOutcome {
        RunOutcome::Failed { exit_code: Some(code), signal: None, error: None }
    }

    #[test]
    fn success_is_terminal_and_keeps_the_attempt() {
        let (s, f) = after_run(&RunOutcome::Succeeded, 2, 1, 3, &RetryPolicy::default(), NOW, 0.5);
        assert_eq!(s, TaskState::Succeeded { attempt: 2, finished_at: NOW });
        assert_eq!(f, 1);
    }

    #[test]
    fn failure_with_attempts_left_waits_for_a_backoff() {
        let p = RetryPolicy { base: Duration::from_secs(2), ..Default::default() };
        let (s, f) = after_run(&failed(1), 1, 0, 3, &p, NOW, 0.0);
        assert_eq!(f, 1);
        assert_eq!(s, TaskState::Waiting { reason: WaitReason::Retry { until: NOW.plus(Duration::from_secs(1)), failed_attempts: 1 } });
    }

    #[test]
    fn last_failure_is_terminal_and_says_why() {
        let (s, f) = after_run(&failed(7), 3, 2, 3, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!(f, 3);
        match s {
            TaskState::Failed { reason, exit_code, .. } => {
                assert_eq!(exit_code, Some(7));
                assert_eq!(reason, "exited with code 7 (after 3 attempts)");
            }
            other => panic!("expected failed, got {other:?}"),
        }
    }

    #[test]
    fn timeouts_use_attempts_like_failures() {
        let (s, _) = after_run(&RunOutcome::TimedOut, 1, 0, 1, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!(s, TaskState::TimedOut { attempt: 1, finished_at: NOW });
        let (s, _) = after_run(&RunOutcome::TimedOut, 1, 0, 2, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!(s.status(), crate::task::Status::Waiting);
    }

    #[test]
    fn interruptions_requeue_without_counting_a_failure() {
        let (s, f) = after_run(&RunOutcome::Interrupted { reason: "shutdown".into() }, 1, 0, 1, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!((s, f), (TaskState::Queued, 0));
    }

    #[test]
    fn crash_requeues_are_capped() {
        let p = RetryPolicy { max_crash_requeues: 2, ..Default::default() };
        assert_eq!(after_crash(0, &p, NOW), TaskState::Queued);
        assert_eq!(after_crash(1, &p, NOW), TaskState::Queued);
        assert_eq!(after_crash(2, &p, NOW).status(), crate::task::Status::Failed);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_the_upper_half() {
        let p = RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(10), max_crash_requeues: 1 };
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(&p, 30, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&p, 3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 200, 0.5), Duration::from_millis(7_500));
    }
}
