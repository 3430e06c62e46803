//! The Entra ID side of the Azure fake: the v2.0 token endpoint (client credentials with a
//! federated client assertion or a client secret) and the access tokens it signs. Errors carry
//! Entra's body and AADSTS codes. Assertion checks are in `federation`, the discovery documents
//! MSAL reads in `discovery`.

mod discovery;
mod federation;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Form, Json,
    extract::{Path, State, rejection::FormRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

pub(super) use discovery::{instance_discovery, keys, openid_configuration};

use super::{Shared, state::uuid_from};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of the access tokens handed out, as Entra reports it.
const TOKEN_LIFETIME_SECS: u64 = 3599;
/// Tenant aliases that name no tenant.
pub(super) const ALIASES: &[&str] = &["common", "organizations", "consumers"];
/// Hosts whose tokens Entra refuses as federated assertions.
pub(super) const ENTRA_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
];

/// An Entra error: HTTP status, OAuth `error`, AADSTS code and description.
pub(super) struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    pub(super) fn bad_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            code,
            description,
        )
    }

    pub(super) fn invalid_client(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            description,
        )
    }

    fn missing(parameter: &str) -> Self {
        Self::bad_request(
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }

    pub(super) fn tenant_not_found(tenant: &str) -> Self {
        Self::bad_request(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let timestamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M:%SZ")
            .to_string();
        let trace_id = uuid_from(&format!("trace:{timestamp}:{}", self.description));
        let correlation_id = uuid_from(&format!("correlation:{trace_id}"));
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status, Json(body)).into_response()
    }
}

/// Who Entra issues a token to.
pub(super) struct Principal {
    tenant_id: String,
    client_id: String,
    principal_id: String,
    /// Set for managed identities (the `xms_mirid` claim).
    identity_id: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    match exchange(&shared, &tenant, form).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => {
            tracing::info!(%tenant, code = e.code, error = e.error, "refused token request");
            e.into_response()
        }
    }
}

async fn exchange(
    shared: &Shared,
    tenant: &str,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Value, EntraError> {
    let Form(form) = form.map_err(|_| EntraError::missing("grant_type"))?;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let grant_type = field("grant_type").ok_or_else(|| EntraError::missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    if ALIASES.iter().any(|a| a.eq_ignore_ascii_case(tenant)) {
        return Err(EntraError::bad_request(
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        ));
    }
    if !shared.lock().tenant_exists(tenant) {
        return Err(EntraError::tenant_not_found(tenant));
    }
    let client_id = field("client_id").ok_or_else(|| EntraError::missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| EntraError::missing("scope"))?;
    let resource = scope
        .split_whitespace()
        .find_map(|s| s.strip_suffix("/.default"))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            EntraError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            )
        })?;
    let principal = match (field("client_assertion"), field("client_secret")) {
        (Some(assertion), _) => {
            match field("client_assertion_type") {
                Some(JWT_BEARER) => {}
                Some(other) => {
                    return Err(EntraError::bad_request(
                        70002,
                        format!(
                            "The client_assertion_type '{other}' is not supported; use '{JWT_BEARER}'."
                        ),
                    ));
                }
                None => return Err(EntraError::missing("client_assertion_type")),
            }
            federation::federated(shared, tenant, client_id, assertion).await?
        }
        (None, Some(secret)) => with_secret(shared, tenant, client_id, secret)?,
        (None, None) => {
            return Err(EntraError::invalid_client(
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
    };
    let access_token = mint(shared, &principal, resource)?;
    tracing::info!(%tenant, client_id = %principal.client_id, %resource, "issued access token");
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "ext_expires_in": TOKEN_LIFETIME_SECS,
        "access_token": access_token,
    }))
}

pub(super) fn app_not_found(tenant: &str, client_id: &str) -> EntraError {
    EntraError::new(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

fn with_secret(
    shared: &Shared,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> Result<Principal, EntraError> {
    let store = shared.lock();
    let Some(sp) = store.service_principal(tenant, client_id) else {
        return Err(match store.identity_by_client_id(tenant, client_id) {
            // Managed identities have no secrets.
            Some(_) => bad_secret(client_id),
            None => app_not_found(tenant, client_id),
        });
    };
    if sp.client_secret != secret {
        return Err(bad_secret(client_id));
    }
    Ok(Principal {
        tenant_id: sp.tenant_id.clone(),
        client_id: sp.client_id.clone(),
        principal_id: uuid_from(&format!("sp:{}", sp.client_id.to_ascii_lowercase())),
        identity_id: None,
    })
}

fn bad_secret(client_id: &str) -> EntraError {
    EntraError::invalid_client(
        7000215,
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
        ),
    )
}

/// Signs a v1-shaped access token (the shape ARM receives from real Entra).
fn mint(shared: &Shared, principal: &Principal, resource: &str) -> Result<String, EntraError> {
    let now = jsonwebtoken::get_current_timestamp();
    // Real ARM tokens name the resource with a trailing slash.
    let audience = if resource == "https://management.azure.com" {
        "https://management.azure.com/"
    } else {
        resource
    };
    let mut claims = json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{}/", principal.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_SECS,
        "appid": principal.client_id,
        "appidacr": "2",
        "idp": format!("https://sts.windows.net/{}/", principal.tenant_id),
        "idtyp": "app",
        "oid": principal.principal_id,
        "sub": principal.principal_id,
        "tid": principal.tenant_id,
        "uti": uuid_from(&format!("uti:{now}:{}:{resource}", principal.client_id)),
        "ver": "1.0",
    });
    if let Some(id) = &principal.identity_id {
        claims["xms_mirid"] = json!(id);
    }
    shared.signer.sign(&claims).map_err(|e| {
        EntraError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            90000,
            format!("Signing the access token failed: {e}"),
        )
    })
}
