//! Entra's discovery documents (OpenID configuration, instance discovery, signing keys), with
//! every endpoint pointing back at the fake so MSAL-based SDKs can use it as authority host.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{super::Shared, ALIASES, EntraError};

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`, pointing back at this server.
pub(in crate::azure) async fn openid_configuration(
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
pub(in crate::azure) async fn keys(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.signer.jwks())
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=...`: MSAL's instance
/// discovery. The fake is its own only instance, so every alias is this host.
pub(in crate::azure) async fn instance_discovery(
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
