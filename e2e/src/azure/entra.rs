//! The Entra ID side of the Azure fake: the v2.0 token endpoint (client credentials with a
//! federated client assertion or a client secret), the discovery documents MSAL reads, and the
//! keys that sign the access tokens it issues. Errors carry Entra's body and AADSTS codes.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Form, Json,
    extract::{Path, Query, State, rejection::FormRejection},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Value, json};

use super::{Shared, state::uuid_from};
use crate::oidc::{VerifyError, peek_claims};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const FIC_DOCS: &str = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation";
/// Lifetime of the access tokens handed out, as Entra reports it.
const TOKEN_LIFETIME_SECS: u64 = 3599;
/// Tenant aliases that name no tenant.
const ALIASES: &[&str] = &["common", "organizations", "consumers"];
/// Hosts whose tokens Entra refuses as federated assertions.
const ENTRA_HOSTS: &[&str] = &[
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

    fn bad_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            code,
            description,
        )
    }

    fn invalid_client(code: u32, description: impl Into<String>) -> Self {
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

    fn tenant_not_found(tenant: &str) -> Self {
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
struct Principal {
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
        Err(e) => e.into_response(),
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
            federated(shared, tenant, client_id, assertion).await?
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
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "ext_expires_in": TOKEN_LIFETIME_SECS,
        "access_token": access_token,
    }))
}

fn app_not_found(tenant: &str, client_id: &str) -> EntraError {
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

/// Workload identity federation: the assertion must match one of the identity's FICs exactly
/// (issuer, subject, audience; case-sensitive) and verify against its issuer's JWKS.
async fn federated(
    shared: &Shared,
    tenant: &str,
    client_id: &str,
    assertion: &str,
) -> Result<Principal, EntraError> {
    let malformed = || EntraError::bad_request(50027, "JWT token is invalid or malformed.");
    let claims = peek_claims(assertion).map_err(|_| malformed())?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (iss, sub) = (text("iss"), text("sub"));
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if iss.is_empty() || sub.is_empty() || audiences.is_empty() {
        return Err(malformed());
    }
    let iss_host = reqwest::Url::parse(&iss)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    if iss_host.is_some_and(|h| {
        ENTRA_HOSTS
            .iter()
            .any(|e| h == *e || h.ends_with(&format!(".{e}")))
    }) {
        return Err(EntraError::bad_request(
            700222,
            "AAD-issued tokens may not be used for federated identity flows.",
        ));
    }
    let principal = {
        let store = shared.lock();
        let Some(identity) = store.identity_by_client_id(tenant, client_id) else {
            // The fake's service principals carry no FICs.
            return Err(match store.service_principal(tenant, client_id) {
                Some(_) => no_matching_record(&iss, &sub, &audiences.join(",")),
                None => app_not_found(tenant, client_id),
            });
        };
        let now = std::time::Instant::now();
        let fics: Vec<_> = identity
            .fics
            .iter()
            .filter(|s| s.usable_from <= now)
            .map(|s| &s.fic)
            .collect();
        let aud = audiences.join(",");
        if fics.is_empty() {
            return Err(no_matching_record(&iss, &sub, &aud));
        }
        let by_issuer: Vec<_> = fics.iter().filter(|f| f.issuer == iss).collect();
        if by_issuer.is_empty() {
            return Err(EntraError::invalid_client(
                700211,
                format!(
                    "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. {FIC_DOCS}"
                ),
            ));
        }
        let by_subject: Vec<_> = by_issuer.iter().filter(|f| f.subject == sub).collect();
        if by_subject.is_empty() {
            return Err(EntraError::invalid_client(
                700213,
                format!(
                    "No matching federated identity record found for presented assertion subject '{sub}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. {FIC_DOCS}"
                ),
            ));
        }
        let matched = by_subject
            .iter()
            .any(|f| f.audiences.iter().any(|a| audiences.contains(a)));
        if !matched {
            return Err(EntraError::invalid_client(
                700212,
                format!(
                    "No matching federated identity record found for presented assertion audience '{aud}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. {FIC_DOCS}"
                ),
            ));
        }
        Principal {
            tenant_id: identity.tenant_id.clone(),
            client_id: identity.client_id.clone(),
            principal_id: identity.principal_id.clone(),
            identity_id: Some(identity.id()),
        }
    };
    shared
        .verifier
        .verify(assertion, &iss)
        .await
        .map_err(|e| assertion_refused(e, &claims))?;
    Ok(principal)
}

fn no_matching_record(iss: &str, sub: &str, aud: &str) -> EntraError {
    EntraError::invalid_client(
        70021,
        format!(
            "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'. {FIC_DOCS}"
        ),
    )
}

fn assertion_refused(error: VerifyError, claims: &Value) -> EntraError {
    let signature = |reason: &str| {
        EntraError::invalid_client(
            700027,
            format!("Client assertion contains an invalid signature. [Reason - {reason}]"),
        )
    };
    match error {
        VerifyError::Discovery { url, reason } => EntraError::bad_request(
            50166,
            format!("Request to External OIDC endpoint failed. [{url}: {reason}]"),
        ),
        VerifyError::UnknownKey(_) => signature("The key was not found."),
        VerifyError::Invalid(e) => match e.kind() {
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                let at = |name: &str| claims.get(name).and_then(Value::as_i64).unwrap_or_default();
                let show = |secs: i64| {
                    jiff::Timestamp::from_second(secs)
                        .map(|t| t.strftime("%m/%d/%Y %H:%M:%S").to_string())
                        .unwrap_or_default()
                };
                let valid_from = if at("nbf") != 0 { at("nbf") } else { at("iat") };
                EntraError::invalid_client(
                    700024,
                    format!(
                        "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.7fZ"),
                        show(valid_from),
                        show(at("exp")),
                    ),
                )
            }
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat => signature(
                "The provided signature value did not match the expected signature value.",
            ),
            _ => {
                EntraError::bad_request(50027, format!("JWT token is invalid or malformed. [{e}]"))
            }
        },
        VerifyError::Malformed(_) | VerifyError::UntrustedIssuer(_) => {
            EntraError::bad_request(50027, "JWT token is invalid or malformed.")
        }
    }
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

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`, pointing back at this server.
pub(super) async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let known = ALIASES.iter().any(|a| a.eq_ignore_ascii_case(&tenant))
        || shared.lock().tenant_exists(&tenant);
    if !known {
        let mut error = EntraError::tenant_not_found(&tenant);
        error.error = "invalid_tenant";
        return error.into_response();
    }
    let base = shared.base_url(&headers, &uri);
    let issuer_tenant = if ALIASES.iter().any(|a| a.eq_ignore_ascii_case(&tenant)) {
        "{tenantid}".to_owned()
    } else {
        tenant.clone()
    };
    let host = base.split_once("://").map(|(_, h)| h).unwrap_or_default();
    Json(json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{issuer_tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "oid"],
        "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": host,
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the keys that sign the fake's access tokens.
pub(super) async fn keys(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.signer.jwks())
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=...`: MSAL's instance
/// discovery. The fake is its own only instance, so every alias is this host.
pub(super) async fn instance_discovery(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let base = shared.base_url(&headers, &uri);
    let host = base
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or_default()
        .to_owned();
    let tenant = query
        .get("authorization_endpoint")
        .and_then(|e| reqwest::Url::parse(e).ok())
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next().map(str::to_owned))
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "common".to_owned());
    Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": query.get("api-version").cloned().unwrap_or_else(|| "1.1".to_owned()),
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    }))
    .into_response()
}
