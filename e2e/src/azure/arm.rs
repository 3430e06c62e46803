//! The ARM side of the Azure fake: routing by swagger template, bearer authentication against
//! the fake's own Entra keys, api-version checks, and the identity and FIC operations, with
//! ARM's `{"error":{"code","message"}}` bodies.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Shared,
    spec::{self, Operation, Params, RouteMatch},
    state::{FicError, Identity, IdentityKey, parse_fic, uuid_from},
};
use crate::oidc::{VerifyError, peek_claims, verify_with_jwks};

/// Audiences ARM accepts in an access token.
const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

/// Identities created through ARM so far, to give each one fresh IDs.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// An ARM error response.
pub(super) struct ArmError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `WWW-Authenticate` challenge for 401s, like ARM sends.
    challenge: Option<String>,
}

impl ArmError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        let challenge = format!(
            "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        Self {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, code, message)
        }
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(value) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<FicError> for ArmError {
    fn from(e: FicError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string())
    }
}

/// Who a bearer token stands for.
#[derive(Clone, Debug)]
enum Caller {
    /// The configured static token: allowed in every subscription.
    Static,
    Principal {
        tenant_id: String,
        client_id: String,
        principal_id: String,
        identity_id: Option<String>,
        audience: String,
    },
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, ArmError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ArmError::unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ArmError::unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        })?;
    if shared.static_token.as_deref() == Some(token) {
        return Ok(Caller::Static);
    }
    let invalid =
        || ArmError::unauthorized("InvalidAuthenticationToken", "The access token is invalid.");
    let tid = peek_claims(token)
        .ok()
        .and_then(|c| c.get("tid").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(invalid)?;
    let issuer = format!("https://sts.windows.net/{tid}/");
    let claims = match verify_with_jwks(token, &shared.signer.jwks(), &issuer) {
        Ok(claims) => claims,
        Err(VerifyError::Invalid(e))
            if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) =>
        {
            return Err(ArmError::unauthorized(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            ));
        }
        Err(_) => return Err(invalid()),
    };
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let audience = text("aud");
    if !ARM_AUDIENCES.contains(&audience.as_str()) {
        return Err(ArmError::unauthorized(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{audience}'. It should exactly match with one of the allowed audiences '{}'.",
                ARM_AUDIENCES.join("','")
            ),
        ));
    }
    Ok(Caller::Principal {
        tenant_id: tid,
        client_id: text("appid"),
        principal_id: text("oid"),
        identity_id: claims
            .get("xms_mirid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        audience,
    })
}

/// `GET /_whoami` (test-only): which principal the bearer token stands for.
pub(super) async fn whoami(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authenticate(&shared, &headers) {
        Ok(Caller::Static) => Json(json!({"static": true})).into_response(),
        Ok(Caller::Principal {
            tenant_id,
            client_id,
            principal_id,
            identity_id,
            audience,
        }) => Json(json!({
            "static": false,
            "tenantId": tenant_id,
            "clientId": client_id,
            "principalId": principal_id,
            "identityId": identity_id,
            "audience": audience,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Every request no other route takes: ARM.
pub(super) async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serve(&shared, &method, &uri, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let (route, params) = match spec::match_route(method, uri.path()) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::MethodNotAllowed => {
            return Err(ArmError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The HTTP method '{method}' is not supported at '{}'.",
                    uri.path()
                ),
            ));
        }
        RouteMatch::NotFound => {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("The Azure fake does not serve '{}'.", uri.path()),
            ));
        }
    };
    let caller = authenticate(shared, headers)?;
    let query = query_pairs(uri);
    let api_version = check_api_version(shared, &query)?;
    check_subscription(shared, &params, &caller)?;
    match route.operation {
        Operation::IdentityGet => identity_get(shared, &params),
        Operation::IdentityPut => identity_put(shared, &params, body),
        Operation::IdentityDelete => Ok(identity_delete(shared, &params)),
        Operation::FicList => fic_list(shared, &params, &query, &api_version, headers, uri),
        Operation::FicGet => fic_get(shared, &params),
        Operation::FicPut => fic_put(shared, &params, body).await,
        Operation::FicDelete => fic_delete(shared, &params).await,
    }
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://q/?{q}"))
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_api_version(shared: &Shared, query: &[(String, String)]) -> Result<String, ArmError> {
    let supported = shared.api_versions.join(", ");
    let Some(version) = query_value(query, "api-version") else {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if !spec::well_formed_api_version(version) {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{supported}'."
            ),
        ));
    }
    if !shared.api_versions.iter().any(|v| v == version) {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'westus' and API version '{version}' for type 'userAssignedIdentities'. The supported api-versions are '{supported}'."
            ),
        ));
    }
    Ok(version.to_owned())
}

fn check_subscription(shared: &Shared, params: &Params, caller: &Caller) -> Result<(), ArmError> {
    let store = shared.lock();
    let Some(tenant) = store.subscription_tenant(&params.subscription_id) else {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!(
                "The subscription '{}' could not be found.",
                params.subscription_id
            ),
        ));
    };
    if let Caller::Principal { tenant_id, .. } = caller
        && !tenant_id.eq_ignore_ascii_case(tenant)
    {
        return Err(ArmError::unauthorized(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer 'https://sts.windows.net/{tenant_id}/'. It must match the tenant 'https://sts.windows.net/{tenant}/' associated with this subscription."
            ),
        ));
    }
    Ok(())
}

fn key(params: &Params) -> IdentityKey {
    IdentityKey::new(
        &params.subscription_id,
        &params.resource_group,
        &params.identity,
    )
}

fn identity_path(params: &Params) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
        params.subscription_id, params.resource_group, params.identity
    )
}

fn identity_not_found(params: &Params) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            params.identity, params.resource_group
        ),
    )
}

fn parent_not_found(params: &Params, action: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ParentResourceNotFound",
        format!(
            "Failed to perform '{action}' on resource(s) of type 'userAssignedIdentities/federatedIdentityCredentials', because the parent resource '{}' could not be found.",
            identity_path(params)
        ),
    )
}

fn parse_body(body: &Bytes) -> Result<Value, ArmError> {
    serde_json::from_slice(body).map_err(|e| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })
}

fn identity_get(shared: &Shared, params: &Params) -> Result<Response, ArmError> {
    let store = shared.lock();
    let identity = store
        .identities
        .get(&key(params))
        .ok_or_else(|| identity_not_found(params))?;
    Ok(Json(identity.to_json()).into_response())
}

fn identity_put(shared: &Shared, params: &Params, body: &Bytes) -> Result<Response, ArmError> {
    let body = parse_body(body)?;
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "LocationRequired",
                "The location property is required for this definition.",
            )
        })?
        .to_owned();
    let tags = body
        .get("tags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut store = shared.lock();
    let tenant_id = store
        .subscription_tenant(&params.subscription_id)
        .unwrap_or_default()
        .to_owned();
    let key = key(params);
    if let Some(identity) = store.identities.get_mut(&key) {
        if !identity.location.eq_ignore_ascii_case(&location) {
            return Err(ArmError::new(
                StatusCode::BAD_REQUEST,
                "LocationNotAvailableForResourceType",
                format!(
                    "The location of an existing identity cannot change from '{}' to '{location}'.",
                    identity.location
                ),
            ));
        }
        identity.tags = tags;
        return Ok(Json(identity.to_json()).into_response());
    }
    // A re-created identity gets new IDs, as in Azure.
    let seed = format!(
        "{}#{}",
        identity_path(params).to_ascii_lowercase(),
        CREATED.fetch_add(1, Ordering::Relaxed)
    );
    let identity = Identity {
        subscription_id: params.subscription_id.clone(),
        resource_group: params.resource_group.clone(),
        name: params.identity.clone(),
        location,
        tags,
        tenant_id,
        client_id: uuid_from(&format!("client:{seed}")),
        principal_id: uuid_from(&format!("principal:{seed}")),
        fics: Vec::new(),
        busy: false,
    };
    let json = identity.to_json();
    store.identities.insert(key, identity);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

fn identity_delete(shared: &Shared, params: &Params) -> Response {
    match shared.lock().identities.remove(&key(params)) {
        Some(_) => StatusCode::OK.into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

fn fic_name(params: &Params) -> &str {
    params.fic.as_deref().unwrap_or_default()
}

fn fic_get(shared: &Shared, params: &Params) -> Result<Response, ArmError> {
    let store = shared.lock();
    let identity = store
        .identities
        .get(&key(params))
        .ok_or_else(|| parent_not_found(params, "read"))?;
    let fic = identity.fic(fic_name(params)).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{}/federatedIdentityCredentials/{}' under resource group '{}' was not found.",
                params.identity,
                fic_name(params),
                params.resource_group
            ),
        )
    })?;
    Ok(Json(fic.to_json(&identity.id())).into_response())
}

fn fic_list(
    shared: &Shared,
    params: &Params,
    query: &[(String, String)],
    api_version: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ArmError> {
    let bad = |name: &str, value: &str| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            format!("The value '{value}' of query parameter '{name}' is invalid."),
        )
    };
    let top = match query_value(query, "$top") {
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("$top", v))?,
        ),
        None => None,
    };
    let skip = match query_value(query, "$skiptoken") {
        Some(v) => v.parse::<usize>().map_err(|_| bad("$skiptoken", v))?,
        None => 0,
    };
    let store = shared.lock();
    let identity = store
        .identities
        .get(&key(params))
        .ok_or_else(|| parent_not_found(params, "read"))?;
    let id = identity.id();
    let all: Vec<Value> = identity.fics.iter().map(|s| s.fic.to_json(&id)).collect();
    let end = top.map_or(all.len(), |t| (skip + t).min(all.len()));
    let page = all.get(skip.min(all.len())..end).unwrap_or_default();
    let mut body = json!({ "value": page });
    if end < all.len() {
        let top = top.unwrap_or(all.len());
        body["nextLink"] = json!(format!(
            "{}{}?api-version={api_version}&$top={top}&$skiptoken={end}",
            shared.base_url(headers, uri),
            uri.path()
        ));
    }
    Ok(Json(body).into_response())
}

fn concurrent_write(identity: &Identity) -> ArmError {
    ArmError::new(
        StatusCode::CONFLICT,
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
        format!(
            "Too many Federated Identity Credentials are written concurrently for the managed identity '{}'. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.",
            identity.id()
        ),
    )
}

/// Marks an identity busy for the duration of a FIC write; clears it however the write ends
/// (including a client hanging up mid-request).
struct WriteGuard {
    shared: Arc<Shared>,
    key: IdentityKey,
}

impl WriteGuard {
    fn begin(
        shared: &Arc<Shared>,
        identity: &mut Identity,
        key: IdentityKey,
    ) -> Result<Self, ArmError> {
        if identity.busy {
            return Err(concurrent_write(identity));
        }
        identity.busy = true;
        Ok(Self {
            shared: shared.clone(),
            key,
        })
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some(identity) = self.shared.lock().identities.get_mut(&self.key) {
            identity.busy = false;
        }
    }
}

async fn fic_put(
    shared: &Arc<Shared>,
    params: &Params,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let key = key(params);
    let (guard, fic, created) = {
        let mut store = shared.lock();
        let identity = store
            .identities
            .get_mut(&key)
            .ok_or_else(|| parent_not_found(params, "write"))?;
        let fic = parse_fic(fic_name(params), &parse_body(body)?)?;
        if identity.busy {
            return Err(concurrent_write(identity));
        }
        let created = identity.check_upsert(&fic)?;
        // Last in this block: the guard's drop takes the lock, so it must never drop while
        // `store` is held. The identity stays busy until then, so the checks above hold.
        let guard = WriteGuard::begin(shared, identity, key.clone())?;
        (guard, fic, created)
    };
    tokio::time::sleep(shared.fic_write_time).await;
    let mut store = shared.lock();
    let usable_from = Instant::now() + store.propagation;
    let identity = store
        .identities
        .get_mut(&key)
        .ok_or_else(|| parent_not_found(params, "write"))?;
    let name = fic.name.clone();
    identity.upsert(fic, usable_from);
    let json = identity
        .fic(&name)
        .map(|f| f.to_json(&identity.id()))
        .unwrap_or_default();
    drop(store);
    drop(guard);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json)).into_response())
}

async fn fic_delete(shared: &Arc<Shared>, params: &Params) -> Result<Response, ArmError> {
    let key = key(params);
    let guard = {
        let mut store = shared.lock();
        let identity = store
            .identities
            .get_mut(&key)
            .ok_or_else(|| parent_not_found(params, "delete"))?;
        if identity.fic(fic_name(params)).is_none() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        WriteGuard::begin(shared, identity, key.clone())?
    };
    tokio::time::sleep(shared.fic_write_time).await;
    let removed = shared
        .lock()
        .identities
        .get_mut(&key)
        .is_some_and(|i| i.remove(fic_name(params)));
    drop(guard);
    Ok(if removed {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    }
    .into_response())
}
