//! The AWS Query protocol as IAM and STS speak it: parameters from the query string and the
//! form body, XML responses, and `ErrorResponse` bodies.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The request parameters: query string first, then the form body (POST wins on a clash, as the
/// SDKs only ever send one of them).
#[derive(Clone, Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>, body: &Bytes) -> Result<Self, String> {
        let mut params = BTreeMap::new();
        if let Some(query) = query {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query).map_err(|e| e.to_string())?;
            params.extend(pairs);
        }
        if !body.is_empty() {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())?;
            params.extend(pairs);
        }
        Ok(Self(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `Prefix.member.1`, `Prefix.member.2`, ... in order.
    pub fn members(&self, prefix: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.get(&format!("{prefix}.member.{i}")).map(str::to_owned))
            .collect()
    }
}

/// Escapes text for an XML element body.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A fresh request id in the UUID shape AWS uses.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Cryptographically random bytes from the TLS provider's generator (no extra crate needed).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    if provider.secure_random.fill(&mut buf).is_err() {
        // aws-lc's generator does not fail in practice; fall back to the clock so ids stay unique.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = nanos[i % nanos.len()];
        }
    }
    buf
}

/// A `200 OK` XML document `<{action}Response>` with `result` inside `<{action}Result>` (omitted
/// when `result` is `None`, as for IAM calls that return nothing).
pub fn success(namespace: &str, action: &str, result: Option<&str>) -> Response {
    let request_id = request_id();
    let result = result
        .map(|r| format!("<{action}Result>{r}</{action}Result>"))
        .unwrap_or_default();
    let body = format!(
        "<{action}Response xmlns=\"{namespace}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    );
    xml(StatusCode::OK, &request_id, body)
}

/// An AWS Query `ErrorResponse`.
pub fn error(namespace: &str, status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = request_id();
    // Client errors are the caller's fault ("Sender"), server errors AWS's ("Receiver").
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        escape(code),
        escape(message)
    );
    xml(status, &request_id, body)
}

/// Re-shapes the fault middleware's injected errors (JSON, shared by all fakes) into AWS Query
/// errors so SDKs classify them as AWS would: `Throttling` for 429, `ServiceUnavailable` for
/// 503, `InternalFailure` for 500. Layer it outside `faults::wrap`; the fronts themselves never
/// answer JSON.
pub fn aws_shaped_faults(router: axum::Router, namespace: &'static str) -> axum::Router {
    router.layer(axum::middleware::map_response(
        move |response: Response| async move {
            let json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let status = response.status();
            if !json || !(status.is_client_error() || status.is_server_error()) {
                return response;
            }
            let (code, message) = match status {
                StatusCode::TOO_MANY_REQUESTS => ("Throttling", "Rate exceeded"),
                StatusCode::FORBIDDEN => (
                    "AccessDenied",
                    "User is not authorized to perform this action",
                ),
                StatusCode::SERVICE_UNAVAILABLE => ("ServiceUnavailable", "Service is unavailable"),
                StatusCode::INTERNAL_SERVER_ERROR => {
                    ("InternalFailure", "An internal error occurred")
                }
                _ => (
                    "InjectedFault",
                    status.canonical_reason().unwrap_or("Injected fault"),
                ),
            };
            let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
            let mut shaped = error(namespace, status, code, message);
            if let Some(value) = retry_after {
                shaped.headers_mut().insert(header::RETRY_AFTER, value);
            }
            shaped
        },
    ))
}

fn xml(status: StatusCode, request_id: &str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_merge_query_and_form_and_list_members() -> Result<(), String> {
        let body = Bytes::from_static(
            b"Action=X&ClientIDList.member.1=a&ClientIDList.member.2=b%2Bc&T=1+2",
        );
        let params = Params::parse(Some("Version=2011-06-15&Action=Y"), &body)?;
        assert_eq!(params.get("Action"), Some("X"));
        assert_eq!(params.get("Version"), Some("2011-06-15"));
        assert_eq!(params.get("T"), Some("1 2"));
        assert_eq!(params.members("ClientIDList"), ["a", "b+c"]);
        Ok(())
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }
}
