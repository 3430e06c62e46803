//! ARM bearer authentication: access tokens minted by the fake's own Entra endpoint for the
//! ARM resource (or the configured static token), and the test-only `GET /_whoami`.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{super::Shared, ArmError};
use crate::oidc::{VerifyError, peek_claims, verify_with_jwks};

/// Audiences ARM accepts in an access token.
const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

/// Who a bearer token stands for.
#[derive(Clone, Debug)]
pub(super) enum Caller {
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

pub(super) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, ArmError> {
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
pub(in crate::azure) async fn whoami(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
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
