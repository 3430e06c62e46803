//! Fault injection for the cloud fakes: fail the next N calls with a status code, or delay them.
//!
//! Tests in-process call [`Faults`] directly; a stack running as a separate process exposes
//! `POST /_faults` (see [`control_router`]) with a body such as
//! `{"status": 429, "count": 2}` or `{"latencyMs": 1500, "count": 1}`, an outage with
//! `{"status": 503, "seconds": 120}` (every call fails until it ends), and `DELETE /_faults`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;

/// One planned misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a cloud-shaped error body instead of serving the call.
    Status(StatusCode),
    /// Serve the call after this delay.
    Latency(Duration),
}

/// Faults queued for the next calls of one fake. Cheap to clone; clones share the queue.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    queue: Arc<Mutex<VecDeque<Fault>>>,
    /// Every call fails with this status until this instant (an outage).
    outage: Arc<Mutex<Option<(Instant, StatusCode)>>>,
}

impl Faults {
    /// Fails each of the next `count` calls with `status`.
    pub fn fail_next(&self, count: usize, status: StatusCode) {
        self.push(count, Fault::Status(status));
    }

    /// Delays each of the next `count` calls by `delay`.
    pub fn delay_next(&self, count: usize, delay: Duration) {
        self.push(count, Fault::Latency(delay));
    }

    /// Fails every call with `status` for `duration`: an outage, however many calls come.
    pub fn fail_for(&self, duration: Duration, status: StatusCode) {
        *self.outage_lock() = Some((Instant::now() + duration, status));
    }

    /// An outage as [`Faults::fail_for`] makes, that also ends when the returned guard is
    /// dropped: a test that fails during it leaves no outage behind for the next test of a
    /// shared stack.
    pub fn outage(&self, duration: Duration, status: StatusCode) -> Outage {
        self.fail_for(duration, status);
        Outage(self.clone())
    }

    /// Whether an outage is under way.
    pub fn in_outage(&self) -> bool {
        self.outage_lock()
            .is_some_and(|(until, _)| Instant::now() < until)
    }

    /// Drops every queued fault and ends an outage.
    pub fn clear(&self) {
        self.lock().clear();
        *self.outage_lock() = None;
    }

    /// How many faults are still queued.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn push(&self, count: usize, fault: Fault) {
        let mut queue = self.lock();
        queue.extend(std::iter::repeat_n(fault, count));
    }

    fn take(&self) -> Option<Fault> {
        if let Some((until, status)) = *self.outage_lock()
            && Instant::now() < until
        {
            return Some(Fault::Status(status));
        }
        self.lock().pop_front()
    }

    fn outage_lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, StatusCode)>> {
        self.outage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Fault>> {
        // A poisoned queue only means a test thread panicked mid-push; the data is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends the outage of [`Faults::outage`] when dropped (queued faults stay queued).
#[must_use = "the outage ends when this guard is dropped"]
#[derive(Debug)]
pub struct Outage(Faults);

impl Drop for Outage {
    fn drop(&mut self) {
        *self.0.outage_lock() = None;
    }
}

/// Axum middleware: apply the next queued fault, if any, before the real handler.
/// Calls to `/_faults` itself are never faulted.
pub async fn middleware(State(faults): State<Faults>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_faults") {
        return next.run(req).await;
    }
    match faults.take() {
        Some(Fault::Status(status)) => fault_response(status),
        Some(Fault::Latency(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(req).await
        }
        None => next.run(req).await,
    }
}

/// The default body is Google's error shape with its canonical status code; the AWS and Azure
/// fakes rewrite it into their own shapes.
fn fault_response(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Injected");
    let canonical = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    };
    let mut response = (
        status,
        Json(serde_json::json!({
            "error": { "code": status.as_u16(), "message": format!("injected fault: {reason}"), "status": canonical }
        })),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultRequest {
    #[serde(default = "one")]
    count: usize,
    status: Option<u16>,
    latency_ms: Option<u64>,
    /// With `status`: an outage of this many seconds instead of `count` failures.
    seconds: Option<u64>,
}

fn one() -> usize {
    1
}

/// `POST /_faults` queues faults, `DELETE /_faults` clears them.
pub fn control_router(faults: Faults) -> Router {
    Router::new()
        .route("/_faults", post(queue_faults).delete(clear_faults))
        .with_state(faults)
}

async fn queue_faults(
    State(faults): State<Faults>,
    Json(body): Json<FaultRequest>,
) -> Result<StatusCode, (StatusCode, String)> {
    match (body.status, body.latency_ms) {
        (Some(code), None) => {
            let status = StatusCode::from_u16(code).map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("{code} is not an HTTP status"),
                )
            })?;
            match body.seconds {
                Some(seconds) => faults.fail_for(Duration::from_secs(seconds), status),
                None => faults.fail_next(body.count, status),
            }
        }
        (None, Some(ms)) => faults.delay_next(body.count, Duration::from_millis(ms)),
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                "set exactly one of status or latencyMs".to_owned(),
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(faults): State<Faults>) -> StatusCode {
    faults.clear();
    StatusCode::NO_CONTENT
}

/// Wraps a fake's router with fault injection and the control endpoint.
pub fn wrap(router: Router, faults: Faults) -> Router {
    router
        .merge(control_router(faults.clone()))
        .layer(axum::middleware::from_fn_with_state(faults, middleware))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_fails_every_call_until_it_ends() {
        let faults = Faults::default();
        faults.fail_for(Duration::from_millis(50), StatusCode::SERVICE_UNAVAILABLE);
        for _ in 0..100 {
            assert_eq!(
                faults.take(),
                Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE))
            );
        }
        assert!(faults.in_outage());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(faults.take(), None);
        assert!(!faults.in_outage());
    }

    #[test]
    fn an_outage_guard_ends_the_outage_when_dropped_and_keeps_the_queue() {
        let faults = Faults::default();
        faults.fail_next(1, StatusCode::TOO_MANY_REQUESTS);
        let outage = faults.outage(Duration::from_secs(600), StatusCode::SERVICE_UNAVAILABLE);
        assert!(faults.in_outage());
        drop(outage);
        assert!(!faults.in_outage());
        assert_eq!(
            faults.take(),
            Some(Fault::Status(StatusCode::TOO_MANY_REQUESTS))
        );
    }

    #[test]
    fn faults_are_consumed_in_order() {
        let faults = Faults::default();
        faults.fail_next(2, StatusCode::TOO_MANY_REQUESTS);
        faults.delay_next(1, Duration::from_millis(5));
        assert_eq!(faults.pending(), 3);
        assert_eq!(
            faults.take(),
            Some(Fault::Status(StatusCode::TOO_MANY_REQUESTS))
        );
        assert_eq!(
            faults.take(),
            Some(Fault::Status(StatusCode::TOO_MANY_REQUESTS))
        );
        assert_eq!(
            faults.take(),
            Some(Fault::Latency(Duration::from_millis(5)))
        );
        assert_eq!(faults.take(), None);
    }
}
