//! The IAM REST calls for workload identity pools and providers, which no google-cloud crate
//! covers: reqwest with a token from google-cloud-auth on every call, Google's error JSON mapped
//! to [`CloudError`], and long-running operations polled to the end within a bounded time.

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use reqwest::{Method, header::HeaderMap};
use serde_json::Value;
use tokio::time::Instant;

use super::wire::Operation;
use crate::cloud::{
    Access, CloudError, ErrorKind,
    error::kind_for_status,
    retry::{Backoff, Caller},
};
use passport_crds::Cloud;

/// One REST endpoint with its credentials.
#[derive(Clone, Debug)]
pub struct Rest {
    http: reqwest::Client,
    /// `https://iam.googleapis.com`, no trailing slash.
    base: String,
    credentials: Credentials,
    pub caller: Caller,
}

/// One call: method, path under `{base}/v1/`, query and JSON body.
pub struct Request<'a> {
    pub operation: &'static str,
    pub access: Access,
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<&'a Value>,
}

impl<'a> Request<'a> {
    pub fn get(operation: &'static str, path: String) -> Self {
        Self {
            operation,
            access: Access::Read,
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    pub fn write(operation: &'static str, method: Method, path: String) -> Self {
        Self {
            operation,
            access: Access::Write,
            method,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    pub fn query(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }
}

impl Rest {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        credentials: Credentials,
        caller: Caller,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            caller,
        }
    }

    /// Sends `request` through the retrying caller and returns the JSON answer.
    pub async fn send(&self, request: &Request<'_>) -> Result<Value, CloudError> {
        let operation = request.operation;
        self.caller
            .run(operation, request.access, || self.attempt(request))
            .await
    }

    async fn attempt(&self, request: &Request<'_>) -> Result<Value, CloudError> {
        let operation = request.operation;
        let headers = auth_headers(&self.credentials, operation).await?;
        let url = format!("{}/v1/{}", self.base, request.path);
        let mut builder = self
            .http
            .request(request.method.clone(), url)
            .headers(headers);
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
            CloudError::new(
                ErrorKind::Unavailable,
                Cloud::Gcp,
                operation,
                format!("cannot reach the Google IAM API: {e}"),
            )
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            CloudError::new(
                ErrorKind::Unavailable,
                Cloud::Gcp,
                operation,
                format!("reading the answer failed: {e}"),
            )
        })?;
        if !status.is_success() {
            return Err(google_error(operation, status.as_u16(), &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        serde_json::from_str(&text).map_err(|e| {
            CloudError::new(
                ErrorKind::Unavailable,
                Cloud::Gcp,
                operation,
                format!("the answer is not JSON: {e}"),
            )
        })
    }

    /// Waits for the operation a write returned, polling `GET v1/{name}` with backoff until
    /// it is done or the backoff budget is spent. Returns the operation's `response`.
    pub async fn finish(
        &self,
        operation: &'static str,
        answer: Value,
    ) -> Result<Option<Value>, CloudError> {
        let mut op: Operation = parse(operation, answer)?;
        let backoff: Backoff = self.caller.backoff;
        let started = Instant::now();
        let mut poll = 0;
        while !op.done {
            let delay = backoff.delay(poll);
            if started.elapsed() + delay > backoff.budget.max(backoff.max * 4) {
                return Err(CloudError::new(
                    ErrorKind::Unavailable,
                    Cloud::Gcp,
                    operation,
                    format!("operation {} did not finish in time", op.name),
                ));
            }
            tokio::time::sleep(delay).await;
            poll += 1;
            let answer = self
                .send(&Request::get("GetOperation", op.name.clone()))
                .await?;
            op = parse(operation, answer)?;
        }
        if let Some(error) = op.error {
            let (kind, status) = kind_for_code(error.code);
            return Err(
                CloudError::new(kind, Cloud::Gcp, operation, error.message).with_code(status)
            );
        }
        Ok(op.response)
    }
}

/// The token headers google-cloud-auth gives for the configured credentials.
pub async fn auth_headers(
    credentials: &Credentials,
    operation: &'static str,
) -> Result<HeaderMap, CloudError> {
    match credentials.headers(http::Extensions::new()).await {
        Ok(CacheableResource::New { data, .. }) => Ok(data),
        // Only returned when the caller passed an entity tag, which this caller never does.
        Ok(CacheableResource::NotModified) => Err(CloudError::new(
            ErrorKind::Unavailable,
            Cloud::Gcp,
            operation,
            "the credentials returned no headers",
        )),
        Err(e) => Err(CloudError::new(
            if e.is_transient() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::AccessDenied
            },
            Cloud::Gcp,
            operation,
            format!("getting a Google access token failed: {e}"),
        )),
    }
}

pub fn parse<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    value: Value,
) -> Result<T, CloudError> {
    serde_json::from_value(value).map_err(|e| {
        CloudError::new(
            ErrorKind::Unavailable,
            Cloud::Gcp,
            operation,
            format!("unexpected answer: {e}"),
        )
    })
}

/// Maps Google's error JSON (`{"error": {"code", "message", "status"}}`) to a [`CloudError`]
/// carrying the message Google sent and its `status` as the code.
pub fn google_error(operation: &'static str, http_status: u16, text: &str) -> CloudError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let status = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {http_status}"));
    let kind = status
        .as_deref()
        .and_then(|s| kind_for_google_status(s, http_status))
        .unwrap_or_else(|| kind_for_status(http_status));
    let error = CloudError::new(kind, Cloud::Gcp, operation, message);
    match status {
        Some(status) => error.with_code(status),
        None => error,
    }
}

/// The kind for a `google.rpc.Code` name.
pub fn kind_for_google_status(status: &str, http_status: u16) -> Option<ErrorKind> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::Invalid,
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => ErrorKind::AccessDenied,
        "NOT_FOUND" => ErrorKind::NotFound,
        "ALREADY_EXISTS" | "ABORTED" => ErrorKind::Conflict,
        // Rate quotas answer 429; other exhausted resources are limits a person must raise.
        "RESOURCE_EXHAUSTED" if http_status == 429 => ErrorKind::Throttled,
        "RESOURCE_EXHAUSTED" => ErrorKind::LimitExceeded,
        "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "UNKNOWN" | "CANCELLED" => {
            ErrorKind::Unavailable
        }
        _ => return None,
    })
}

/// The kind and name of a numeric `google.rpc.Code` (in an operation's `error`).
pub fn kind_for_code(code: i32) -> (ErrorKind, &'static str) {
    let name = match code {
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        13 => "INTERNAL",
        _ => "UNKNOWN",
    };
    // An operation's RESOURCE_EXHAUSTED is a limit: a rate quota would refuse the call itself.
    let kind = kind_for_google_status(name, 400).unwrap_or(ErrorKind::Invalid);
    (kind, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_keep_their_message_and_status() {
        let body = r#"{"error":{"code":403,"message":"Permission 'x' denied","status":"PERMISSION_DENIED"}}"#;
        let error = google_error("GetWorkloadIdentityPool", 403, body);
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert_eq!(error.message, "Permission 'x' denied");
        assert_eq!(error.code.as_deref(), Some("PERMISSION_DENIED"));
        let quota = google_error("X", 429, r#"{"error":{"status":"RESOURCE_EXHAUSTED"}}"#);
        assert_eq!(quota.kind, ErrorKind::Throttled);
        assert_eq!(
            google_error("X", 409, r#"{"error":{"status":"ABORTED"}}"#).kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            google_error("X", 502, "<html>").kind,
            ErrorKind::Unavailable
        );
        assert_eq!(kind_for_code(6), (ErrorKind::Conflict, "ALREADY_EXISTS"));
    }
}
