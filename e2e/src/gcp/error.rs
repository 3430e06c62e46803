//! Google's two error shapes: the `google.rpc.Status` JSON of the IAM and IAM Credentials APIs,
//! and the OAuth 2.0 error body of STS.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// An error from the IAM or IAM Credentials API:
/// `{"error": {"code", "message", "status", "details"}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    /// INVALID_ARGUMENT with a `google.rpc.BadRequest` detail naming the field, as Google does
    /// for validation failures.
    pub fn field_violation(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut error = Self::invalid_argument(description.clone());
        error.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "field": field, "description": description }],
        }));
        error
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
    }

    /// PERMISSION_DENIED with the `ErrorInfo` detail Google attaches to IAM permission checks.
    pub fn iam_permission_denied(permission: &str, resource: &str) -> Self {
        let mut error = Self::permission_denied(format!(
            "Permission '{permission}' denied on resource (or it may not exist)."
        ));
        error.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "iam.googleapis.com",
            "metadata": { "permission": permission, "resource": resource },
        }));
        error
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ALREADY_EXISTS", message)
    }

    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ABORTED", message)
    }

    pub fn resource_exhausted(message: impl Into<String>, consumer: &str) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", message);
        error.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": { "service": "iam.googleapis.com", "consumer": consumer },
        }));
        error
    }

    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": self.code,
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Turns a serde error on a request body into Google's message: unknown fields are named the
/// way the ESF proxy names them (`Unknown name "x" at 'field': Cannot find field.`).
pub(crate) fn bad_json(error: &serde_json::Error, message_field: &str) -> ApiError {
    let text = error.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `")
        && let Some(name) = rest.split('`').next()
    {
        let description = format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{message_field}': Cannot find field."
        );
        return ApiError::field_violation(message_field, description);
    }
    ApiError::invalid_argument(format!("Invalid JSON payload received. {text}"))
}

/// An STS error: `{"error": "<code>", "error_description": "..."}` with HTTP 400 (RFC 6749 5.2).
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response()
    }
}
