//! Gives injected faults the error body of the service they pretend to come from. The shared
//! fault middleware answers in Google's shape (`{"error":{"code":429,...}}`, a numeric code);
//! Azure clients parse ARM's string `error.code` or Entra's `error`/`error_codes`, so a fault
//! must look like a real throttle or outage to them. Status and headers (`Retry-After`) stay.

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{arm::ArmError, entra::EntraError};

/// Fault bodies are tiny; anything bigger is not one.
const MAX_FAULT_BODY: usize = 64 * 1024;

/// Axum middleware, layered outside `faults::wrap`.
pub(super) async fn reshape(request: Request, next: Next) -> Response {
    let entra = is_entra_path(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    if status.is_success() || !is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FAULT_BODY).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "response body too large").into_response();
    };
    let injected = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .is_some_and(|v| v.pointer("/error/code").is_some_and(Value::is_number));
    if !injected {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let mut reshaped = if entra {
        entra_fault(status).into_response()
    } else {
        arm_fault(status).into_response()
    };
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            reshaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    reshaped
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn is_entra_path(path: &str) -> bool {
    ["/oauth2/", "/discovery/", "/.well-known/"]
        .iter()
        .any(|p| path.contains(p))
}

fn arm_fault(status: StatusCode) -> ArmError {
    let code = match status.as_u16() {
        429 => "SubscriptionRequestsThrottled",
        400 => "BadRequest",
        401 => "AuthenticationFailed",
        403 => "AuthorizationFailed",
        404 => "ResourceNotFound",
        409 => "Conflict",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InjectedFault",
    };
    let message = if status == StatusCode::TOO_MANY_REQUESTS {
        "Number of requests for subscription exceeded the limit (injected fault). Please try again after the time in the Retry-After header.".to_owned()
    } else {
        format!(
            "Injected fault: {}.",
            status.canonical_reason().unwrap_or("error")
        )
    };
    ArmError::new(status, code, message)
}

fn entra_fault(status: StatusCode) -> EntraError {
    match status.as_u16() {
        429 => EntraError::new(
            status,
            "temporarily_unavailable",
            90055,
            "There are too many incoming requests (injected fault). Retry after the time in the Retry-After header.",
        ),
        500..=599 => EntraError::new(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred (injected fault). Please try again.",
        ),
        _ => EntraError::new(
            status,
            "invalid_request",
            90000,
            format!(
                "Injected fault: {}.",
                status.canonical_reason().unwrap_or("error")
            ),
        ),
    }
}
