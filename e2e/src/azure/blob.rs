//! A fake of Azure Blob Storage's REST API, Azurite-style path addressing on a port of its own:
//! `{blob_url}/{account}/{container}` and `{blob_url}/{account}/{container}/{blob}` stand for
//! `https://{account}.blob.core.windows.net/{container}/{blob}`.
//!
//! - Create Container: `PUT /{account}/{container}?restype=container` (`x-ms-blob-public-access:
//!   blob|container` allows anonymous reads); Get Container Properties: `GET|HEAD` the same.
//! - Put Blob: `PUT /{account}/{container}/{blob}` with `x-ms-blob-type: BlockBlob`; stores
//!   `x-ms-blob-content-type` (else `Content-Type`) and `x-ms-blob-cache-control`.
//! - Get Blob / Get Blob Properties: `GET|HEAD`, answered with `Content-Type`, `Cache-Control`,
//!   `ETag`, `Last-Modified`, `x-ms-blob-type`. Delete Blob: `DELETE`.
//!
//! Writes need `Authorization: Bearer` with an access token the fake's Entra signed for Storage
//! (scope `https://storage.azure.com/.default`) and an `x-ms-version`; any principal of the
//! token's tenant may write (no Azure RBAC). Errors are Storage's XML with `x-ms-error-code`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use axum::{
    Router,
    body::{Body, Bytes, to_bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Shared;
use crate::oidc::{peek_claims, verify_with_jwks};

/// The scope a client asks Entra for to call Blob Storage with a bearer token.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// The oldest `x-ms-version` that accepts bearer tokens.
const OAUTH_MIN_VERSION: &str = "2017-11-09";
/// The version the fake answers with.
const SERVICE_VERSION: &str = "2025-01-05";
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Storage accounts by name, each with its containers.
#[derive(Default)]
pub(super) struct Accounts {
    accounts: HashMap<String, BTreeMap<String, Container>>,
}

impl Accounts {
    pub(super) fn new(names: &[String]) -> Self {
        Self {
            accounts: names.iter().map(|n| (n.clone(), BTreeMap::new())).collect(),
        }
    }

    /// Seeds a container with anonymous reads of its blobs (`x-ms-blob-public-access: blob`);
    /// false when the account is unknown or the container exists.
    pub(super) fn seed_public(&mut self, account: &str, container: &str) -> bool {
        let Some(containers) = self.accounts.get_mut(account) else {
            return false;
        };
        if containers.contains_key(container) {
            return false;
        }
        containers.insert(
            container.to_owned(),
            Container::new(container, PublicAccess::Blob),
        );
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PublicAccess {
    Off,
    Blob,
    Container,
}

struct Container {
    public: PublicAccess,
    created: Timestamp,
    etag: String,
    blobs: BTreeMap<String, Blob>,
}

impl Container {
    /// An empty container named `name`, created now.
    fn new(name: &str, public: PublicAccess) -> Self {
        let created = Timestamp::now();
        Self {
            public,
            created,
            etag: etag(name.as_bytes(), created),
            blobs: BTreeMap::new(),
        }
    }
}

#[derive(Clone)]
struct Blob {
    data: Bytes,
    content_type: String,
    cache_control: Option<String>,
    modified: Timestamp,
    etag: String,
}

/// A Storage error: status, `x-ms-error-code`, message.
struct StorageError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `AuthenticationErrorDetail`, for 401s.
    detail: Option<String>,
}

impl StorageError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    fn resource_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The specified resource does not exist.",
        )
    }

    fn container_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
        )
    }

    fn blob_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BlobNotFound",
            "The specified blob does not exist.",
        )
    }

    fn auth_failed(detail: &str) -> Self {
        Self {
            detail: Some(detail.to_owned()),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationInfo",
                "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
            )
        }
    }

    fn missing_header(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingRequiredHeader",
            format!("An HTTP header that's mandatory for this request is not specified. [{name}]"),
        )
    }

    fn into_response(self, head: bool) -> Response {
        let id = uuid::Uuid::new_v4().to_string();
        let detail = self
            .detail
            .map(|d| {
                format!(
                    "<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>",
                    crate::aws::query::escape(&d)
                )
            })
            .unwrap_or_default();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}\nRequestId:{id}\nTime:{}</Message>{detail}</Error>",
            self.code,
            crate::aws::query::escape(&self.message),
            Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.7fZ"),
        );
        let mut response = if head {
            (self.status, Body::empty()).into_response()
        } else {
            (self.status, body).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        headers.insert("x-ms-error-code", HeaderValue::from_static(self.code));
        common_headers(headers, &id);
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize resource_id=https://storage.azure.com",
                ),
            );
        }
        response
    }
}

fn common_headers(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-ms-request-id", id);
    }
    headers.insert("x-ms-version", HeaderValue::from_static(SERVICE_VERSION));
    if let Ok(date) = HeaderValue::from_str(&http_date(Timestamp::now())) {
        headers.insert(header::DATE, date);
    }
}

fn http_date(at: Timestamp) -> String {
    at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Storage's ETags: a quoted `0x8D...` hex string, here derived from the content and time.
fn etag(data: &[u8], at: Timestamp) -> String {
    let mut hash = Sha256::new();
    hash.update(at.as_nanosecond().to_be_bytes());
    hash.update(data);
    let hex: String = hash.finalize()[..7]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!("\"0x8D{hex}\"")
}

/// The router; layer [`reshape_faults`] outside the fault middleware.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = parts.method == Method::HEAD;
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return StorageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "The request body is too large.",
            )
            .into_response(head);
        }
    };
    let segments: Vec<String> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .splitn(3, '/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let container_call = query.get("restype").is_some_and(|r| r == "container");
    let call = Call {
        shared: &shared,
        headers: &parts.headers,
    };
    let result = match (&parts.method, segments.as_slice()) {
        (&Method::PUT, [account, container]) if container_call => {
            call.create_container(account, container)
        }
        (&Method::GET | &Method::HEAD, [account, container]) if container_call => {
            call.container_properties(account, container)
        }
        (&Method::PUT, [account, container, blob]) if !blob.is_empty() => {
            call.put_blob(account, container, blob, body)
        }
        (&Method::GET | &Method::HEAD, [account, container, blob]) if !blob.is_empty() => {
            call.get_blob(account, container, blob, head)
        }
        (&Method::DELETE, [account, container, blob]) if !blob.is_empty() => {
            call.delete_blob(account, container, blob)
        }
        _ => Err(StorageError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
        )),
    };
    match result {
        Ok(response) => response,
        Err(e) => e.into_response(head),
    }
}

struct Call<'a> {
    shared: &'a Shared,
    headers: &'a HeaderMap,
}

impl Call<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    /// Whether a bearer token came; an invalid one, or one for another audience, is refused.
    fn authenticate(&self, account: &str) -> Result<bool, StorageError> {
        let Some(value) = self.header("authorization") else {
            return Ok(false);
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| StorageError::auth_failed("Authentication scheme is not Bearer."))?;
        match self.header("x-ms-version") {
            None => return Err(StorageError::missing_header("x-ms-version")),
            Some(version) if version < OAUTH_MIN_VERSION => {
                return Err(StorageError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    format!(
                        "Authentication with a bearer token needs x-ms-version {OAUTH_MIN_VERSION} or later."
                    ),
                ));
            }
            Some(_) => {}
        }
        let tid = peek_claims(token)
            .ok()
            .and_then(|c| c.get("tid").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| StorageError::auth_failed("Signature validation failed."))?;
        let issuer = format!("https://sts.windows.net/{tid}/");
        let claims =
            verify_with_jwks(token, &self.shared.signer.jwks(), &issuer).map_err(|e| match e {
                crate::oidc::VerifyError::Invalid(e)
                    if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) =>
                {
                    StorageError::auth_failed("Lifetime validation failed. The token is expired.")
                }
                _ => {
                    StorageError::auth_failed("Signature validation failed. Signature is invalid.")
                }
            })?;
        let audience = claims
            .get("aud")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let allowed = [
            "https://storage.azure.com".to_owned(),
            "https://storage.azure.com/".to_owned(),
            format!("https://{account}.blob.core.windows.net"),
            format!("https://{account}.blob.core.windows.net/"),
        ];
        if !allowed.iter().any(|a| a == audience) {
            return Err(StorageError::auth_failed(
                "Audience validation failed. Audience did not match.",
            ));
        }
        Ok(true)
    }

    /// Authenticates a write: a bearer token is required.
    fn writer(&self, account: &str) -> Result<(), StorageError> {
        if self.authenticate(account)? {
            Ok(())
        } else {
            Err(StorageError::new(
                StatusCode::UNAUTHORIZED,
                "NoAuthenticationInformation",
                "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
            ))
        }
    }

    fn created(&self, etag: &str, modified: Timestamp) -> Response {
        let mut response = (StatusCode::CREATED, Body::empty()).into_response();
        let headers = response.headers_mut();
        common_headers(headers, &uuid::Uuid::new_v4().to_string());
        put(headers, "etag", etag);
        put(headers, "last-modified", &http_date(modified));
        put(headers, "x-ms-request-server-encrypted", "true");
        response
    }

    fn create_container(&self, account: &str, container: &str) -> Result<Response, StorageError> {
        self.writer(account)?;
        let public = match self.header("x-ms-blob-public-access") {
            None => PublicAccess::Off,
            Some("blob") => PublicAccess::Blob,
            Some("container") => PublicAccess::Container,
            Some(_) => {
                return Err(StorageError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "The value for one of the HTTP headers is not in the correct format.",
                ));
            }
        };
        if !valid_container_name(container) {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "InvalidResourceName",
                "The specifed resource name contains invalid characters.",
            ));
        }
        let mut accounts = self.shared.blobs();
        let containers = accounts
            .accounts
            .get_mut(account)
            .ok_or_else(StorageError::resource_not_found)?;
        if containers.contains_key(container) {
            return Err(StorageError::new(
                StatusCode::CONFLICT,
                "ContainerAlreadyExists",
                "The specified container already exists.",
            ));
        }
        let created = Container::new(container, public);
        let (tag, now) = (created.etag.clone(), created.created);
        containers.insert(container.to_owned(), created);
        Ok(self.created(&tag, now))
    }

    fn container_properties(
        &self,
        account: &str,
        container: &str,
    ) -> Result<Response, StorageError> {
        self.writer(account)?;
        let accounts = self.shared.blobs();
        let found = accounts
            .accounts
            .get(account)
            .ok_or_else(StorageError::resource_not_found)?
            .get(container)
            .ok_or_else(StorageError::container_not_found)?;
        let mut response = (StatusCode::OK, Body::empty()).into_response();
        let headers = response.headers_mut();
        common_headers(headers, &uuid::Uuid::new_v4().to_string());
        put(headers, "etag", &found.etag);
        put(headers, "last-modified", &http_date(found.created));
        match found.public {
            PublicAccess::Off => {}
            PublicAccess::Blob => put(headers, "x-ms-blob-public-access", "blob"),
            PublicAccess::Container => put(headers, "x-ms-blob-public-access", "container"),
        }
        Ok(response)
    }

    fn put_blob(
        &self,
        account: &str,
        container: &str,
        blob: &str,
        data: Bytes,
    ) -> Result<Response, StorageError> {
        self.writer(account)?;
        match self.header("x-ms-blob-type") {
            Some("BlockBlob") => {}
            Some("PageBlob" | "AppendBlob") => {
                return Err(StorageError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "The local Blob fake stores block blobs only.",
                ));
            }
            Some(_) => {
                return Err(StorageError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "The value for one of the HTTP headers is not in the correct format.",
                ));
            }
            None => return Err(StorageError::missing_header("x-ms-blob-type")),
        }
        let content_type = self
            .header("x-ms-blob-content-type")
            .or_else(|| self.header("content-type"))
            .filter(|t| !t.is_empty())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let cache_control = self.header("x-ms-blob-cache-control").map(str::to_owned);
        let mut accounts = self.shared.blobs();
        let found = accounts
            .accounts
            .get_mut(account)
            .ok_or_else(StorageError::resource_not_found)?
            .get_mut(container)
            .ok_or_else(StorageError::container_not_found)?;
        let now = Timestamp::now();
        let tag = etag(&data, now);
        found.blobs.insert(
            blob.to_owned(),
            Blob {
                data,
                content_type,
                cache_control,
                modified: now,
                etag: tag.clone(),
            },
        );
        Ok(self.created(&tag, now))
    }

    fn get_blob(
        &self,
        account: &str,
        container: &str,
        blob: &str,
        head: bool,
    ) -> Result<Response, StorageError> {
        let authenticated = self.authenticate(account)?;
        let accounts = self.shared.blobs();
        let containers = accounts
            .accounts
            .get(account)
            .ok_or_else(StorageError::resource_not_found)?;
        let found = containers.get(container);
        // Anonymous reads see only public containers; anything else does not exist for them.
        let public = found.is_some_and(|c| c.public != PublicAccess::Off);
        if !authenticated && !public {
            return Err(StorageError::resource_not_found());
        }
        let found = found.ok_or_else(StorageError::container_not_found)?;
        let blob = found
            .blobs
            .get(blob)
            .ok_or_else(StorageError::blob_not_found)?;
        let mut response = if head {
            (StatusCode::OK, Body::empty()).into_response()
        } else {
            (StatusCode::OK, blob.data.clone()).into_response()
        };
        let headers = response.headers_mut();
        common_headers(headers, &uuid::Uuid::new_v4().to_string());
        put(headers, "content-type", &blob.content_type);
        put(headers, "content-length", &blob.data.len().to_string());
        if let Some(cache_control) = &blob.cache_control {
            put(headers, "cache-control", cache_control);
        }
        put(headers, "etag", &blob.etag);
        put(headers, "last-modified", &http_date(blob.modified));
        put(headers, "x-ms-creation-time", &http_date(blob.modified));
        put(headers, "x-ms-blob-type", "BlockBlob");
        put(headers, "x-ms-lease-status", "unlocked");
        put(headers, "x-ms-lease-state", "available");
        put(headers, "x-ms-server-encrypted", "true");
        put(headers, "accept-ranges", "bytes");
        Ok(response)
    }

    fn delete_blob(
        &self,
        account: &str,
        container: &str,
        blob: &str,
    ) -> Result<Response, StorageError> {
        self.writer(account)?;
        let mut accounts = self.shared.blobs();
        let found = accounts
            .accounts
            .get_mut(account)
            .ok_or_else(StorageError::resource_not_found)?
            .get_mut(container)
            .ok_or_else(StorageError::container_not_found)?;
        found
            .blobs
            .remove(blob)
            .ok_or_else(StorageError::blob_not_found)?;
        let mut response = (StatusCode::ACCEPTED, Body::empty()).into_response();
        common_headers(response.headers_mut(), &uuid::Uuid::new_v4().to_string());
        Ok(response)
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Container names: 3-63 lowercase letters, digits and single hyphens, starting and ending with
/// a letter or digit (`$root` and `$web` aside).
fn valid_container_name(name: &str) -> bool {
    if name == "$root" || name == "$web" {
        return true;
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && !name.contains("--")
}

/// Turns the fault middleware's JSON errors into Storage's XML (503 `ServerBusy`, as Storage
/// throttles; 500 `InternalError`; others `InjectedFault`).
pub(super) async fn reshape_faults(request: Request, next: Next) -> Response {
    let head = request.method() == Method::HEAD;
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if !json || status.is_success() {
        return response;
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let (code, message) = match status {
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => (
            "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request.",
        ),
        StatusCode::INTERNAL_SERVER_ERROR => (
            "InternalError",
            "The server encountered an internal error. Please retry the request.",
        ),
        _ => ("InjectedFault", "Injected fault."),
    };
    let mut shaped = StorageError::new(status, code, message).into_response(head);
    if let Some(value) = retry_after {
        shaped.headers_mut().insert(header::RETRY_AFTER, value);
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_storages_rules() {
        assert!(valid_container_name("issuer-docs"));
        assert!(valid_container_name("$web"));
        assert!(!valid_container_name("ab"));
        assert!(!valid_container_name("Issuer"));
        assert!(!valid_container_name("a--b"));
        assert!(!valid_container_name("-ab"));
    }
}
