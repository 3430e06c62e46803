//! A fake of Cloud Storage (GCS): the parts of the JSON API (storage v1, written from its method
//! reference; no discovery document is kept for it here) that publishing files needs, and the public
//! download form `https://storage.googleapis.com/{bucket}/{object}` (the XML API's GET). It
//! is served on a port of its own, since `/{bucket}/{object}` would shadow every other path:
//! `STORAGE_EMULATOR_HOST`, as Google's storage clients take it.
//!
//! - `POST /storage/v1/b?project=` (buckets.insert), `GET /storage/v1/b/{bucket}` (buckets.get)
//! - `GET|PUT /storage/v1/b/{bucket}/iam` (buckets.getIamPolicy / setIamPolicy): `allUsers`
//!   with `roles/storage.objectViewer` (or `legacyObjectReader`) makes the objects public
//! - `POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=` and `uploadType=multipart`
//!   (objects.insert; `predefinedAcl=publicRead` and `ifGenerationMatch` honoured)
//! - `GET /storage/v1/b/{bucket}/o/{object}` (objects.get; `alt=media` for the bytes, also under
//!   `/download/storage/v1/...`), `DELETE` (objects.delete)
//! - `GET|HEAD /{bucket}/{object}`: the public form, errors in the XML API's shape
//!
//! Writes need `Authorization: Bearer` with what the GCP fake accepts: an access token it issued
//! (STS or impersonation) whose scopes allow storage, or a JWT self-signed with a service-account
//! key for `https://storage.googleapis.com/`. Any authenticated caller may do anything: no IAM
//! check on buckets.

mod multipart;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Shared, keys, state::Principal};

/// Audiences and scopes that let a token write to Cloud Storage.
const STORAGE_AUDIENCES: &[&str] = &[
    "https://storage.googleapis.com/",
    "https://storage.googleapis.com",
];
const STORAGE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/devstorage.read_write",
];
/// Roles whose permissions include `storage.objects.get`, for the `allUsers` check.
const READER_ROLES: &[&str] = &[
    "roles/storage.objectViewer",
    "roles/storage.legacyObjectReader",
    "roles/storage.objectAdmin",
];
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The buckets and their objects.
#[derive(Default)]
pub(crate) struct Buckets {
    buckets: BTreeMap<String, Bucket>,
}

struct Bucket {
    project_number: String,
    created: Timestamp,
    /// IAM policy bindings: role -> members.
    bindings: Vec<(String, Vec<String>)>,
    policy_version: u64,
    objects: BTreeMap<String, Object>,
}

impl Buckets {
    /// Seeds a bucket whose objects anyone may read (`allUsers` as
    /// `roles/storage.objectViewer`), what a published issuer needs; false when it exists.
    pub(crate) fn seed_public(&mut self, name: &str, project_number: &str) -> bool {
        if self.buckets.contains_key(name) {
            return false;
        }
        let mut bucket = Bucket::new(project_number.to_owned());
        bucket.bindings = vec![(READER_ROLES[0].to_owned(), vec!["allUsers".to_owned()])];
        self.buckets.insert(name.to_owned(), bucket);
        true
    }
}

impl Bucket {
    /// An empty bucket, created now, with no IAM bindings.
    fn new(project_number: String) -> Self {
        Self {
            project_number,
            created: Timestamp::now(),
            bindings: Vec::new(),
            policy_version: 1,
            objects: BTreeMap::new(),
        }
    }

    fn public(&self) -> bool {
        self.bindings.iter().any(|(role, members)| {
            READER_ROLES.contains(&role.as_str()) && members.iter().any(|m| m == "allUsers")
        })
    }
}

#[derive(Clone)]
struct Object {
    data: Bytes,
    content_type: String,
    cache_control: Option<String>,
    generation: i64,
    created: Timestamp,
    /// `predefinedAcl=publicRead` at upload.
    public_read: bool,
}

/// An error of the JSON API: `{"error": {"code", "message", "errors": [{"message", "domain",
/// "reason"}]}}`.
pub(crate) struct StorageError {
    status: StatusCode,
    reason: &'static str,
    message: String,
    location: Option<&'static str>,
}

impl StorageError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            location: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "notFound", message)
    }

    fn invalid_credentials() -> Self {
        Self {
            location: Some("Authorization"),
            ..Self::new(StatusCode::UNAUTHORIZED, "authError", "Invalid Credentials")
        }
    }

    /// What an anonymous caller gets for `permission` on a private resource.
    fn anonymous(permission: &str, what: &str) -> Self {
        Self {
            location: Some("Authorization"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "required",
                format!(
                    "Anonymous caller does not have {permission} access to the Google Cloud Storage {what}. Permission '{permission}' denied on resource (or it may not exist)."
                ),
            )
        }
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        let mut detail =
            json!({ "message": self.message, "domain": "global", "reason": self.reason });
        if let Some(location) = self.location {
            detail["locationType"] = json!("header");
            detail["location"] = json!(location);
        }
        let body = json!({ "error": {
            "code": self.status.as_u16(), "message": self.message, "errors": [detail],
        }});
        (self.status, Json(body)).into_response()
    }
}

/// An error of the XML API (the public download form): `<Error><Code>..</Code><Message>..`.
fn xml_error(status: StatusCode, code: &str, message: &str, details: Option<&str>) -> Response {
    let details = details
        .map(|d| format!("<Details>{}</Details>", crate::aws::query::escape(d)))
        .unwrap_or_default();
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message>{details}</Error>",
        crate::aws::query::escape(message)
    );
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=UTF-8")],
        body,
    )
        .into_response()
}

/// The storage router, sharing the GCP fake's tokens and keys.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// One request, taken apart.
struct Req {
    method: Method,
    /// Path segments, still percent-encoded.
    segments: Vec<String>,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    /// `https://host:port` the client used, for links.
    base: String,
}

impl Req {
    fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn bearer(&self) -> Option<&str> {
        let value = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            return StorageError::invalid(format!("cannot read the body: {e}")).into_response();
        }
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let req = Req {
        method: parts.method,
        segments: parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect(),
        query: parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
        base: format!("https://{host}"),
    };
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let method = req.method.clone();
    let result = match (method.as_str(), segments.as_slice()) {
        ("POST", ["storage", "v1", "b"]) => insert_bucket(&shared, &req),
        ("GET", ["storage", "v1", "b", bucket]) => get_bucket(&shared, &req, bucket),
        ("GET", ["storage", "v1", "b", bucket, "iam"]) => {
            bucket_policy(&shared, &req, bucket, false)
        }
        ("PUT", ["storage", "v1", "b", bucket, "iam"]) => {
            bucket_policy(&shared, &req, bucket, true)
        }
        ("POST", ["upload", "storage", "v1", "b", bucket, "o"]) => upload(&shared, &req, bucket),
        ("GET", ["storage", "v1", "b", bucket, "o", object])
        | ("GET", ["download", "storage", "v1", "b", bucket, "o", object]) => {
            return get_object(&shared, &req, bucket, object);
        }
        ("DELETE", ["storage", "v1", "b", bucket, "o", object]) => {
            return match delete_object(&shared, &req, bucket, object) {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => e.into_response(),
            };
        }
        ("GET" | "HEAD", [bucket, object @ ..]) if !object.is_empty() && !bucket.is_empty() => {
            return public_get(&shared, &req, bucket, &object.join("/"));
        }
        _ => Err(StorageError::not_found(format!(
            "The requested URL {} was not found on this server.",
            req.segments.join("/")
        ))),
    };
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn decode(segment: &str) -> Result<String, StorageError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| StorageError::invalid("The object name is not valid UTF-8."))
}

fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Who the Bearer token stands for; `None` for an anonymous call.
fn caller(shared: &Shared, req: &Req) -> Result<Option<Principal>, StorageError> {
    let Some(token) = req.bearer() else {
        return Ok(None);
    };
    let store = shared.lock();
    if let Some(record) = store.tokens.get(token) {
        let scoped = record
            .scopes
            .iter()
            .any(|s| STORAGE_SCOPES.contains(&s.as_str()));
        if record.expires_at <= Timestamp::now() || !scoped {
            return Err(StorageError::invalid_credentials());
        }
        return Ok(Some(record.principal.clone()));
    }
    keys::self_signed(&store, token, STORAGE_AUDIENCES, STORAGE_SCOPES)
        .map(Some)
        .ok_or_else(StorageError::invalid_credentials)
}

fn writer(shared: &Shared, req: &Req, permission: &str) -> Result<Principal, StorageError> {
    caller(shared, req)?.ok_or_else(|| StorageError::anonymous(permission, "bucket"))
}

/// Bucket names: 3-63 characters of lowercase letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
fn valid_bucket_name(name: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && ends(name.chars().next())
        && ends(name.chars().last())
}

/// RFC 3339 with milliseconds, as the JSON API prints times.
fn millis(at: Timestamp) -> String {
    format!(
        "{}.{:03}Z",
        at.strftime("%Y-%m-%dT%H:%M:%S"),
        at.subsec_millisecond()
    )
}

fn bucket_json(name: &str, bucket: &Bucket, base: &str) -> Value {
    json!({
        "kind": "storage#bucket",
        "selfLink": format!("{base}/storage/v1/b/{name}"),
        "id": name,
        "name": name,
        "projectNumber": bucket.project_number,
        "metageneration": "1",
        "location": "US",
        "storageClass": "STANDARD",
        "etag": "CAE=",
        "timeCreated": millis(bucket.created),
        "updated": millis(bucket.created),
        "locationType": "multi-region",
        "iamConfiguration": {
            "bucketPolicyOnly": { "enabled": false },
            "uniformBucketLevelAccess": { "enabled": false },
            "publicAccessPrevention": "inherited",
        },
    })
}

fn insert_bucket(shared: &Shared, req: &Req) -> Result<Value, StorageError> {
    writer(shared, req, "storage.buckets.create")?;
    let project = req
        .query("project")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            StorageError::new(
                StatusCode::BAD_REQUEST,
                "required",
                "Required parameter: project",
            )
        })?;
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| StorageError::new(StatusCode::BAD_REQUEST, "parseError", e.to_string()))?;
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(StorageError::new(
            StatusCode::BAD_REQUEST,
            "required",
            "Required",
        ));
    }
    if !valid_bucket_name(name) {
        return Err(StorageError::invalid(format!(
            "Invalid bucket name: '{name}'"
        )));
    }
    let project_number = shared
        .lock()
        .project(project, "storage.buckets.create")
        .map(|p| p.number)
        .map_err(|_| StorageError::invalid(format!("Unknown project id: {project}")))?;
    let mut buckets = shared.storage();
    if buckets.buckets.contains_key(name) {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Your previous request to create the named bucket succeeded and you already own it.",
        ));
    }
    let bucket = Bucket::new(project_number);
    let out = bucket_json(name, &bucket, &req.base);
    buckets.buckets.insert(name.to_owned(), bucket);
    Ok(out)
}

fn no_bucket() -> StorageError {
    StorageError::not_found("The specified bucket does not exist.")
}

fn get_bucket(shared: &Shared, req: &Req, bucket: &str) -> Result<Value, StorageError> {
    let name = decode(bucket)?;
    writer(shared, req, "storage.buckets.get")?;
    let buckets = shared.storage();
    let found = buckets.buckets.get(&name).ok_or_else(no_bucket)?;
    Ok(bucket_json(&name, found, &req.base))
}

fn policy_json(name: &str, bucket: &Bucket) -> Value {
    json!({
        "kind": "storage#policy",
        "resourceId": format!("projects/_/buckets/{name}"),
        "version": 1,
        "etag": STANDARD.encode(bucket.policy_version.to_be_bytes()),
        "bindings": bucket.bindings.iter()
            .map(|(role, members)| json!({ "role": role, "members": members }))
            .collect::<Vec<_>>(),
    })
}

fn bucket_policy(
    shared: &Shared,
    req: &Req,
    bucket: &str,
    set: bool,
) -> Result<Value, StorageError> {
    let name = decode(bucket)?;
    writer(
        shared,
        req,
        if set {
            "storage.buckets.setIamPolicy"
        } else {
            "storage.buckets.getIamPolicy"
        },
    )?;
    let mut buckets = shared.storage();
    let found = buckets.buckets.get_mut(&name).ok_or_else(no_bucket)?;
    if set {
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| StorageError::new(StatusCode::BAD_REQUEST, "parseError", e.to_string()))?;
        let mut bindings = Vec::new();
        for binding in body
            .get("bindings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let role = binding
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !role.starts_with("roles/") && !role.starts_with("projects/") {
                return Err(StorageError::invalid(format!(
                    "Role {role} is not a valid role."
                )));
            }
            let members = binding
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            bindings.push((role.to_owned(), members));
        }
        found.bindings = bindings;
        found.policy_version += 1;
    }
    Ok(policy_json(&name, found))
}

fn object_json(bucket: &str, name: &str, object: &Object, base: &str) -> Value {
    let encoded = encode(name);
    let mut out = json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/{}", object.generation),
        "selfLink": format!("{base}/storage/v1/b/{bucket}/o/{encoded}"),
        "mediaLink": format!(
            "{base}/download/storage/v1/b/{bucket}/o/{encoded}?generation={}&alt=media",
            object.generation
        ),
        "name": name,
        "bucket": bucket,
        "generation": object.generation.to_string(),
        "metageneration": "1",
        "contentType": object.content_type,
        "storageClass": "STANDARD",
        "size": object.data.len().to_string(),
        "etag": etag(object),
        "timeCreated": millis(object.created),
        "updated": millis(object.created),
        "timeStorageClassUpdated": millis(object.created),
        "timeFinalized": millis(object.created),
    });
    if let Some(cache_control) = &object.cache_control {
        out["cacheControl"] = json!(cache_control);
    }
    out
}

/// An opaque etag derived from the content and generation (GCS's is opaque too).
fn etag(object: &Object) -> String {
    let mut hash = Sha256::new();
    hash.update(object.generation.to_be_bytes());
    hash.update(&object.data);
    STANDARD.encode(&hash.finalize()[..12])
}

fn upload(shared: &Shared, req: &Req, bucket: &str) -> Result<Value, StorageError> {
    let bucket = decode(bucket)?;
    writer(shared, req, "storage.objects.create")?;
    let content_type_header = || {
        req.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (metadata, data, part_type) = match req.query("uploadType") {
        Some("media") => (json!({}), req.body.clone(), content_type_header()),
        Some("multipart") => {
            let content_type = content_type_header().unwrap_or_default();
            let (metadata, media) = multipart::parse_related(&content_type, &req.body)
                .map_err(StorageError::invalid)?;
            let metadata: Value = serde_json::from_slice(&metadata.body).map_err(|e| {
                StorageError::new(
                    StatusCode::BAD_REQUEST,
                    "parseError",
                    format!("Parse Error: {e}"),
                )
            })?;
            (metadata, Bytes::from(media.body), media.content_type)
        }
        Some(other) => {
            return Err(StorageError::invalid(format!(
                "Invalid upload type '{other}': the fake serves uploadType=media and multipart."
            )));
        }
        None => {
            return Err(StorageError::new(
                StatusCode::BAD_REQUEST,
                "required",
                "Upload requests must include an uploadType URL parameter and a URL-encoded object name.",
            ));
        }
    };
    let text = |name: &str| {
        metadata
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name = text("name")
        .or_else(|| req.query("name").map(str::to_owned))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StorageError::new(StatusCode::BAD_REQUEST, "required", "Required"))?;
    let content_type = text("contentType")
        .or(part_type)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let public_read = match req.query("predefinedAcl") {
        None
        | Some(
            "private"
            | "projectPrivate"
            | "bucketOwnerRead"
            | "bucketOwnerFullControl"
            | "authenticatedRead",
        ) => false,
        Some("publicRead") => true,
        Some(other) => {
            return Err(StorageError::invalid(format!(
                "Invalid argument: predefinedAcl={other}"
            )));
        }
    };
    let mut buckets = shared.storage();
    let found = buckets.buckets.get_mut(&bucket).ok_or_else(no_bucket)?;
    if let Some(wanted) = req.query("ifGenerationMatch") {
        let current = found.objects.get(&name).map_or(0, |o| o.generation);
        if wanted.parse::<i64>().ok() != Some(current) {
            return Err(StorageError::new(
                StatusCode::PRECONDITION_FAILED,
                "conditionNotMet",
                "At least one of the pre-conditions you specified did not hold.",
            ));
        }
    }
    let now = Timestamp::now();
    // Generations are microsecond timestamps, strictly increasing per object.
    let previous = found.objects.get(&name).map_or(0, |o| o.generation);
    let object = Object {
        data,
        content_type,
        cache_control: text("cacheControl"),
        generation: now.as_microsecond().max(previous + 1),
        created: now,
        public_read,
    };
    let out = object_json(&bucket, &name, &object, &req.base);
    found.objects.insert(name, object);
    Ok(out)
}

/// The object, if the caller may read it: an authenticated caller always, an anonymous one when
/// the bucket's policy or the object's ACL makes it public.
fn readable(
    shared: &Shared,
    req: &Req,
    bucket: &str,
    name: &str,
) -> Result<Result<(Object, bool), StorageError>, StorageError> {
    let authenticated = caller(shared, req)?.is_some();
    let buckets = shared.storage();
    let Some(found) = buckets.buckets.get(bucket) else {
        return Ok(Err(if authenticated {
            no_bucket()
        } else {
            StorageError::anonymous("storage.objects.get", "object")
        }));
    };
    let object = found.objects.get(name);
    let public = found.public() || object.is_some_and(|o| o.public_read);
    if !authenticated && !public {
        return Ok(Err(StorageError::anonymous(
            "storage.objects.get",
            "object",
        )));
    }
    Ok(object
        .cloned()
        .map(|o| (o, public))
        .ok_or_else(|| StorageError::not_found(format!("No such object: {bucket}/{name}"))))
}

fn get_object(shared: &Shared, req: &Req, bucket: &str, object: &str) -> Response {
    let (bucket, name) = match (decode(bucket), decode(object)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let media =
        req.query("alt") == Some("media") || req.segments.first().is_some_and(|s| s == "download");
    match readable(shared, req, &bucket, &name) {
        Err(e) | Ok(Err(e)) => e.into_response(),
        Ok(Ok((found, public))) if media => media_response(&found, public, true),
        Ok(Ok((found, _))) => Json(object_json(&bucket, &name, &found, &req.base)).into_response(),
    }
}

/// The stored bytes with their headers. GCS serves a public object without a stored
/// Cache-Control as `public, max-age=3600`, a private one as `private, max-age=0`.
fn media_response(object: &Object, public: bool, body: bool) -> Response {
    let cache_control = object.cache_control.clone().unwrap_or_else(|| {
        if public {
            "public, max-age=3600".to_owned()
        } else {
            "private, max-age=0".to_owned()
        }
    });
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("content-type", object.content_type.clone());
    put("cache-control", cache_control);
    put("etag", format!("\"{}\"", etag(object)));
    put(
        "last-modified",
        object
            .created
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    );
    put("x-goog-generation", object.generation.to_string());
    put("x-goog-metageneration", "1".to_owned());
    put(
        "x-goog-stored-content-length",
        object.data.len().to_string(),
    );
    put("x-goog-storage-class", "STANDARD".to_owned());
    put("content-length", object.data.len().to_string());
    if body {
        (StatusCode::OK, headers, object.data.clone()).into_response()
    } else {
        (StatusCode::OK, headers).into_response()
    }
}

fn delete_object(
    shared: &Shared,
    req: &Req,
    bucket: &str,
    object: &str,
) -> Result<(), StorageError> {
    let (bucket, name) = (decode(bucket)?, decode(object)?);
    writer(shared, req, "storage.objects.delete")?;
    let mut buckets = shared.storage();
    let found = buckets.buckets.get_mut(&bucket).ok_or_else(no_bucket)?;
    found
        .objects
        .remove(&name)
        .ok_or_else(|| StorageError::not_found(format!("No such object: {bucket}/{name}")))?;
    Ok(())
}

/// `GET|HEAD /{bucket}/{object}`: what `https://storage.googleapis.com/{bucket}/{object}`
/// serves, errors in the XML API's shape.
fn public_get(shared: &Shared, req: &Req, bucket: &str, object: &str) -> Response {
    let (bucket, name) = match (decode(bucket), decode(object)) {
        (Ok(b), Ok(n)) => (b, n),
        _ => {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Invalid argument.",
                None,
            );
        }
    };
    let body = req.method != Method::HEAD;
    match readable(shared, req, &bucket, &name) {
        Err(_) => xml_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "Authentication required.",
            None,
        ),
        Ok(Ok((found, public))) => media_response(&found, public, body),
        Ok(Err(e)) if e.status == StatusCode::UNAUTHORIZED => xml_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access denied.",
            Some(
                "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
            ),
        ),
        Ok(Err(e)) if e.message.starts_with("No such object") => xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
            Some(&format!("No such object: {bucket}/{name}")),
        ),
        Ok(Err(_)) => xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist.",
            None,
        ),
    }
}
