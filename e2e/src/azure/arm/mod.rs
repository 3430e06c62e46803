//! The ARM side of the Azure fake: routing by swagger template, api-version and subscription
//! checks, and the identity operations, with ARM's `{"error":{"code","message"}}` bodies.
//! Bearer authentication is in `auth`, federated identity credentials in `fic`.

mod auth;
mod fic;

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

pub(super) use auth::whoami;

use super::{
    IdentitySeed, Shared,
    spec::{self, Operation, Params, RouteMatch},
    state::{FicError, Identity, IdentityKey, uuid_from},
};
use auth::{Caller, authenticate};

/// An ARM error response.
pub(super) struct ArmError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `WWW-Authenticate` challenge for 401s, like ARM sends.
    challenge: Option<String>,
}

impl ArmError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    pub(super) fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
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
    // ARM authenticates before it routes: an unknown path without a token is a 401 too.
    let caller = authenticate(shared, headers)?;
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
    let query = query_pairs(uri);
    let api_version = check_api_version(shared, &query)?;
    check_subscription(shared, &params, &caller)?;
    match route.operation {
        Operation::IdentityGet => identity_get(shared, &params),
        Operation::IdentityPut => identity_put(shared, &params, body),
        Operation::IdentityDelete => Ok(identity_delete(shared, &params)),
        Operation::FicList => fic::list(shared, &params, &query, &api_version, headers, uri),
        Operation::FicGet => fic::get(shared, &params),
        Operation::FicPut => fic::put(shared, &params, body).await,
        Operation::FicDelete => fic::delete(shared, &params).await,
    }
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

pub(super) fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
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

pub(super) fn key(params: &Params) -> IdentityKey {
    IdentityKey::new(
        &params.subscription_id,
        &params.resource_group,
        &params.identity,
    )
}

pub(super) fn identity_path(params: &Params) -> String {
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

pub(super) fn parent_not_found(params: &Params, action: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ParentResourceNotFound",
        format!(
            "Failed to perform '{action}' on resource(s) of type 'userAssignedIdentities/federatedIdentityCredentials', because the parent resource '{}' could not be found.",
            identity_path(params)
        ),
    )
}

pub(super) fn parse_body(body: &Bytes) -> Result<Value, ArmError> {
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
        if !identity.seed.location.eq_ignore_ascii_case(&location) {
            return Err(ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidResourceLocation",
                format!(
                    "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{location}'. Please select a new resource name.",
                    identity.seed.name, identity.seed.location, identity.seed.resource_group
                ),
            ));
        }
        identity.seed.tags = tags;
        return Ok(Json(identity.to_json()).into_response());
    }
    // A re-created identity gets new IDs, as in Azure.
    store.created += 1;
    let seed = format!(
        "{}#{}",
        identity_path(params).to_ascii_lowercase(),
        store.created
    );
    let identity = Identity {
        seed: IdentitySeed {
            subscription_id: params.subscription_id.clone(),
            resource_group: params.resource_group.clone(),
            name: params.identity.clone(),
            location,
            tags,
            tenant_id,
            client_id: uuid_from(&format!("client:{seed}")),
            principal_id: uuid_from(&format!("principal:{seed}")),
        },
        fics: Vec::new(),
        busy: false,
    };
    let json = identity.to_json();
    tracing::info!(identity = %identity.id(), "created user-assigned identity");
    store.identities.insert(key, identity);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

fn identity_delete(shared: &Shared, params: &Params) -> Response {
    match shared.lock().identities.remove(&key(params)) {
        Some(_) => StatusCode::OK.into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
