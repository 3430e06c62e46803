//! The stack's S3 endpoint: a thin path-style reverse proxy (`{url}/{bucket}/{key}`) to moto's S3,
//! so that S3 is served over HTTPS with the stack CA and answers faults in S3's error shape.
//!
//! moto in server mode routes a request to S3 when its `Authorization` names the `s3` service,
//! and an unsigned request to S3 by default; it enforces anonymous access itself (the bucket
//! policy, or the object's ACL). The front only mends what moto answers unlike S3: an anonymous
//! `HEAD` is checked as `s3:GetObject` (moto checks an `s3:HeadObject` no policy grants), and
//! moto's empty-bodied 403 gets S3's `AccessDenied` body.

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use super::{
    moto::RelayError,
    query::{escape, request_id},
};

/// The S3 front's state. Cheap to clone.
#[derive(Clone)]
pub struct S3Front {
    moto_url: String,
    http: reqwest::Client,
}

impl S3Front {
    /// `moto_url`: moto's plain-HTTP address.
    pub fn new(moto_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            moto_url: moto_url.trim_end_matches('/').to_owned(),
            // moto answers 30x for some calls; the SDK, not the proxy, should see them.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// Whether the bucket policy lets anyone `s3:GetObject` the object at `path`
    /// (`/{bucket}/{key}`): an `Allow` statement for principal `*`, action `s3:GetObject`
    /// (or `s3:*`, `*`) and a resource pattern matching `arn:aws:s3:::{bucket}/{key}`.
    async fn anonymous_read_allowed(&self, path: &str) -> bool {
        let Some((bucket, key)) = path.trim_start_matches('/').split_once('/') else {
            return false;
        };
        let Ok(answer) = self
            .http
            .get(format!("{}/{bucket}?policy", self.moto_url))
            .header(header::AUTHORIZATION, OWNER_AUTHORIZATION)
            .send()
            .await
        else {
            return false;
        };
        if !answer.status().is_success() {
            return false;
        }
        let Ok(policy) = answer.json::<serde_json::Value>().await else {
            return false;
        };
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        let resource = format!("arn:aws:s3:::{bucket}/{key}");
        let list = |v: &serde_json::Value| -> Vec<String> {
            match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let statements = match &policy["Statement"] {
            serde_json::Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        statements.iter().any(|st| {
            let anyone =
                st["Principal"] == "*" || list(&st["Principal"]["AWS"]).iter().any(|p| p == "*");
            st["Effect"] == "Allow"
                && anyone
                && list(&st["Action"])
                    .iter()
                    .any(|a| a == "s3:GetObject" || a == "s3:*" || a == "*")
                && list(&st["Resource"])
                    .iter()
                    .any(|r| super::trust::glob(r, &resource, false))
        })
    }

    /// The router (not yet wrapped with fault injection).
    pub fn router(self) -> Router {
        Router::new().fallback(forward).with_state(self)
    }
}

/// An S3 error body: `<Error><Code>..</Code><Message>..</Message><RequestId>..</RequestId>
/// <HostId>..</HostId></Error>`, `application/xml`. HEAD answers carry no body.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let id = request_id();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{id}</RequestId><HostId>{id}</HostId></Error>",
        escape(code),
        escape(message)
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-amz-request-id", value);
    }
    response
}

/// Rewrites the fault middleware's JSON errors into S3's XML error shape, with the codes S3
/// uses for those statuses (`SlowDown` for 503 and 429, as S3 throttles with 503).
pub fn shaped_faults(router: Router) -> Router {
    router.layer(axum::middleware::map_response(
        |response: Response| async move {
            let json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let status = response.status();
            if !json || !(status.is_client_error() || status.is_server_error()) {
                return response;
            }
            let (code, message) = match status {
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    ("SlowDown", "Please reduce your request rate.")
                }
                StatusCode::FORBIDDEN => ("AccessDenied", "Access Denied"),
                StatusCode::INTERNAL_SERVER_ERROR => (
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ),
                _ => (
                    "InjectedFault",
                    status.canonical_reason().unwrap_or("Injected fault"),
                ),
            };
            error(status, code, message)
        },
    ))
}

/// Whether the request carries no credentials: no `Authorization` and no presigned query.
fn anonymous(headers: &HeaderMap, uri: &Uri) -> bool {
    !headers.contains_key(header::AUTHORIZATION)
        && !uri.query().is_some_and(|q| q.contains("X-Amz-Signature="))
}

async fn forward(
    State(front): State<S3Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let anonymous_head = method == Method::HEAD && anonymous(&headers, &uri);
    // S3 authorizes HEAD Object as s3:GetObject; moto checks s3:HeadObject, which no policy
    // grants, so an anonymous HEAD is asked as a GET and answered without the body.
    let upstream_method = if anonymous_head {
        Method::GET
    } else {
        method.clone()
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // moto routes an unsigned request by its path, and sends `…/.well-known/openid-configuration`
    // to its Cognito, whatever the bucket: exactly the object a published issuer serves. So an
    // anonymous read is checked here against the bucket policy, as S3 does, and then sent to
    // moto as the bucket owner's (moto checks no signatures).
    let anonymous_read =
        (method == Method::GET || method == Method::HEAD) && anonymous(&headers, &uri);
    if anonymous_read && !front.anonymous_read_allowed(uri.path()).await {
        return error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
    }
    let owner: &[(header::HeaderName, &str)] = if anonymous_read {
        &[(header::AUTHORIZATION, OWNER_AUTHORIZATION)]
    } else {
        &[]
    };
    let url = format!("{}{path}", front.moto_url);
    let head = method == Method::HEAD;
    let relayed = super::moto::relay(
        &front.http,
        upstream_method,
        url,
        &headers,
        owner,
        body,
        head,
    );
    let (status, out, bytes) = match relayed.await {
        Ok(answer) => answer,
        Err(RelayError::Unreachable(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("moto is not reachable: {e}"),
            );
        }
        Err(RelayError::Unreadable(e)) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                &format!("reading moto's answer: {e}"),
            );
        }
    };
    if status == StatusCode::FORBIDDEN && bytes.is_empty() && method != Method::HEAD {
        return error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
    }
    if method == Method::HEAD {
        // moto's Content-Length (the object's) stays; the body does not.
        return (status, out, Body::empty()).into_response();
    }
    (status, out, bytes).into_response()
}

/// What moto takes for the bucket owner: any SigV4 header scoped to `s3` (it checks no
/// signature).
const OWNER_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
