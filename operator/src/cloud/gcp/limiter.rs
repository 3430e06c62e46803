//! The client-side write limiter: Google allows 60 workload identity pool and provider writes
//! per project per minute, so Passport keeps its own writes within a sliding window per project.
//! A write waits for a free slot for a bounded time, then fails as Throttled.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use passport_crds::Cloud;
use tokio::time::Instant;

use crate::cloud::{CloudError, ErrorKind};

/// A sliding-window limit of writes per project. Cheap to clone; clones share the window.
#[derive(Clone, Debug)]
pub struct WriteLimiter {
    limit: usize,
    window: Duration,
    max_wait: Duration,
    writes: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl WriteLimiter {
    /// `limit` writes per `window` per project; a write waits at most `max_wait` for a slot.
    pub fn new(limit: u32, window: Duration, max_wait: Duration) -> Self {
        Self {
            limit: usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            window,
            max_wait,
            writes: Arc::default(),
        }
    }

    /// Google's quota shape: `per_minute` writes in any 60 seconds, waiting up to 10 s.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::new(per_minute, Duration::from_secs(60), Duration::from_secs(10))
    }

    /// Takes a write slot for `project`, waiting for one when the window is full.
    pub async fn acquire(&self, project: &str, operation: &'static str) -> Result<(), CloudError> {
        let started = Instant::now();
        loop {
            let wait = {
                let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
                let window = writes.entry(project.to_owned()).or_default();
                let now = Instant::now();
                while window
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    window.pop_front();
                }
                if window.len() < self.limit {
                    window.push_back(now);
                    return Ok(());
                }
                // The oldest write leaves the window first.
                window
                    .front()
                    .map(|t| (*t + self.window).saturating_duration_since(now))
                    .unwrap_or_default()
            };
            if started.elapsed() + wait > self.max_wait {
                tracing::debug!(project, operation, "write limiter full");
                return Err(CloudError::new(
                    ErrorKind::Throttled,
                    Cloud::Gcp,
                    operation,
                    format!(
                        "Passport keeps workload identity writes within {} per {}s for project \
                         {project}; no slot became free within {}s",
                        self.limit,
                        self.window.as_secs(),
                        self.max_wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_wait_for_the_window_then_give_up() {
        let limiter = WriteLimiter::new(2, Duration::from_secs(60), Duration::from_secs(90));
        let started = Instant::now();
        for _ in 0..3 {
            limiter
                .acquire("123", "Create")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // The third write waited until the first left the window.
        assert!(started.elapsed() >= Duration::from_secs(60));
        // Another project has its own window.
        limiter
            .acquire("456", "Create")
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let impatient = WriteLimiter::new(1, Duration::from_secs(60), Duration::from_secs(5));
        impatient
            .acquire("123", "Create")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = impatient.acquire("123", "Create").await;
        assert_eq!(refused.map_err(|e| e.kind), Err(ErrorKind::Throttled));
    }
}
