//! Fault injection for the API server: the shared `faults` queue and `/_faults` control route,
//! with injected failures re-shaped into the `Status` bodies kube-apiserver sends (429 with
//! `Retry-After` and `retryAfterSeconds`, 500, 503, 504), so clients take their real error paths.

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::status::ApiError;
use crate::faults::{self, Faults};

/// Wraps the API router with the shared fault queue.
pub fn wrap(router: Router, faults: Faults) -> Router {
    faults::wrap(router, faults).layer(axum::middleware::from_fn(as_status))
}

async fn as_status(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let code = response.status();
    if !(code.is_client_error() || code.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, 64 * 1024).await else {
        return (code, "").into_response();
    };
    let injected = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .filter(|m| m.starts_with("injected fault"));
    let Some(message) = injected else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let (reason, details) = match code {
        StatusCode::TOO_MANY_REQUESTS => {
            ("TooManyRequests", Some(json!({ "retryAfterSeconds": 1 })))
        }
        StatusCode::SERVICE_UNAVAILABLE => ("ServiceUnavailable", None),
        StatusCode::GATEWAY_TIMEOUT => ("Timeout", None),
        StatusCode::CONFLICT => ("Conflict", None),
        _ => ("InternalError", None),
    };
    let mut out = ApiError::custom(code.as_u16(), reason, message, details).into_response();
    if let Some(retry) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, retry.clone());
    }
    out
}
