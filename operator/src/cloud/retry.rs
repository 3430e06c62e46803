//! Retries for cloud calls: throttling and outages are retried with capped, jittered
//! exponential backoff inside a bounded time budget. Every attempt is counted. After the budget
//! the caller gets the Throttled or Unavailable error, never a hang.

use std::{future::Future, time::Duration};

use passport_crds::Cloud;
use tokio::time::Instant;

use super::{
    CloudError,
    calls::{Access, Calls, Outcome},
    error::ErrorKind,
};

/// The backoff schedule and its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Longest delay between two attempts.
    pub max: Duration,
    /// Time after which no new attempt starts.
    pub budget: Duration,
    /// Attempts at most, the first included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(8),
            budget: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// A schedule for tests against the local stack: same shape, milliseconds.
    pub fn fast() -> Self {
        Self {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            budget: Duration::from_secs(2),
            max_attempts: 5,
        }
    }

    /// The delay before retry number `retry` (0-based): full jitter over a capped exponential.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        let cap = exp.min(self.max);
        // Full jitter, but never below half the step, so retries still spread out.
        let half = cap / 2;
        half + cap.saturating_sub(half).mul_f64(fastrand::f64())
    }
}

/// Runs cloud calls for one provider: counts each attempt, retries the transient ones.
#[derive(Clone, Debug)]
pub struct Caller {
    pub cloud: Cloud,
    pub calls: Calls,
    pub backoff: Backoff,
}

impl Caller {
    pub fn new(cloud: Cloud, calls: Calls, backoff: Backoff) -> Self {
        Self {
            cloud,
            calls,
            backoff,
        }
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not worth retrying, or the
    /// budget is spent. Throttling (429) and outages (5xx, connection failures) are retried.
    pub async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        access: Access,
        mut attempt: F,
    ) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let result = attempt().await;
            self.calls
                .record(self.cloud, operation, access, Outcome::of(&result));
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !matches!(error.kind, ErrorKind::Throttled | ErrorKind::Unavailable) {
                return Err(error);
            }
            let delay = self.backoff.delay(retry);
            retry += 1;
            if retry >= self.backoff.max_attempts || started.elapsed() + delay > self.backoff.budget
            {
                tracing::debug!(
                    cloud = %self.cloud,
                    operation,
                    attempts = retry,
                    "retry budget spent"
                );
                return Err(error);
            }
            tracing::debug!(cloud = %self.cloud, operation, delay_ms = delay.as_millis() as u64, kind = ?error.kind, "retrying cloud call");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn caller() -> Caller {
        Caller::new(Cloud::Gcp, Calls::default(), Backoff::fast())
    }

    fn failure(kind: ErrorKind) -> CloudError {
        CloudError::new(kind, Cloud::Gcp, "GetPool", "injected")
    }

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let backoff = Backoff::default();
        for retry in 0..20 {
            let d = backoff.delay(retry);
            assert!(d <= backoff.max, "{d:?}");
        }
        assert!(backoff.delay(0) <= Duration::from_millis(250));
        assert!(backoff.delay(4) >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn throttling_is_retried_until_it_passes() {
        let caller = caller();
        let attempts = AtomicU32::new(0);
        let result = caller
            .run("GetPool", Access::Read, || async {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(failure(ErrorKind::Throttled))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(caller.calls.operation(Cloud::Gcp, "GetPool"), 3);
    }

    #[tokio::test]
    async fn an_exhausted_budget_returns_the_last_error() {
        let caller = caller();
        let result: Result<(), _> = caller
            .run("GetPool", Access::Read, || async {
                Err(failure(ErrorKind::Unavailable))
            })
            .await;
        assert_eq!(result.map_err(|e| e.kind), Err(ErrorKind::Unavailable));
        assert_eq!(
            caller.calls.operation(Cloud::Gcp, "GetPool"),
            u64::from(Backoff::fast().max_attempts)
        );
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let caller = caller();
        let result: Result<(), _> = caller
            .run("SetIamPolicy", Access::Write, || async {
                Err(failure(ErrorKind::AccessDenied))
            })
            .await;
        assert_eq!(result.map_err(|e| e.kind), Err(ErrorKind::AccessDenied));
        assert_eq!(caller.calls.writes(Cloud::Gcp), 1);
    }
}
