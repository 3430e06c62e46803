//! `sts.googleapis.com/v1/token`: the OAuth 2.0 token exchange of an OIDC token for a federated
//! access token, verified against the workload identity pool provider the audience names.

use std::collections::HashMap;

use axum::{
    Form,
    body::Body,
    extract::{FromRequest as _, Request},
    http::header,
};
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Value, json};

use super::{
    Call, Shared, attributes,
    error::OAuthError,
    model::Provider,
    pools::{ACTIVE, DELETED},
    state::{Principal, TokenRecord, pool_path},
};
use crate::oidc::{self, VerifyError};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// Request fields in their form (snake_case) spelling, with the JSON (lowerCamelCase) one.
const FIELDS: &[(&str, &str)] = &[
    ("grant_type", "grantType"),
    ("requested_token_type", "requestedTokenType"),
    ("subject_token", "subjectToken"),
    ("subject_token_type", "subjectTokenType"),
    ("scope", "scope"),
    ("audience", "audience"),
    ("actor_token", "actorToken"),
    ("actor_token_type", "actorTokenType"),
    ("options", "options"),
];

/// Reads the request as form fields (what the Google auth libraries send) or as JSON (the
/// discovery document's `GoogleIdentityStsV1ExchangeTokenRequest`; either spelling accepted).
async fn fields(call: &Call) -> Result<HashMap<&'static str, String>, OAuthError> {
    let is_json = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let raw: Vec<(String, String)> = if is_json {
        let object: serde_json::Map<String, Value> = serde_json::from_slice(&call.body)
            .map_err(|e| OAuthError::invalid_request(format!("Invalid JSON payload: {e}")))?;
        object
            .into_iter()
            // proto3 JSON: null is the field's default, i.e. absent.
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(OAuthError::invalid_request(format!(
                    "Invalid value for {k}: expected a string, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?
    } else {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(call.body.clone()))
            .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
        Form::<Vec<(String, String)>>::from_request(request, &())
            .await
            .map_err(|e| OAuthError::invalid_request(format!("Invalid form body: {e}")))?
            .0
    };
    let mut out = HashMap::new();
    for (key, value) in raw {
        let name = FIELDS
            .iter()
            .find(|(snake, camel)| key == *snake || key == *camel)
            .map(|(snake, _)| *snake)
            .ok_or_else(|| OAuthError::invalid_request(format!("Unknown parameter: {key}")))?;
        out.insert(name, value);
    }
    Ok(out)
}

fn invalid_target() -> OAuthError {
    OAuthError::new(
        "invalid_target",
        "The target service indicated by the \"audience\" parameters is invalid. This might either be \
         because the pool or provider is disabled or deleted or because it doesn't exist.",
    )
}

/// `(project number, pool, provider)` from `//iam.googleapis.com/projects/N/locations/global/
/// workloadIdentityPools/P/providers/V`.
fn parse_audience(audience: &str) -> Option<(String, String, String)> {
    let rest = audience.strip_prefix("//iam.googleapis.com/projects/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [
            number,
            "locations",
            "global",
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] => Some((
            (*number).to_owned(),
            (*pool).to_owned(),
            (*provider).to_owned(),
        )),
        _ => None,
    }
}

fn verify_error(error: VerifyError) -> OAuthError {
    let description = match &error {
        VerifyError::Invalid(e) => match e.kind() {
            ErrorKind::ExpiredSignature => "The ID Token has expired.".to_owned(),
            ErrorKind::ImmatureSignature => "The ID Token is not yet valid (nbf).".to_owned(),
            ErrorKind::InvalidSignature => "Invalid JWT signature.".to_owned(),
            ErrorKind::InvalidIssuer => "The ID Token issuer is not trusted.".to_owned(),
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("The ID Token is missing the required claim '{claim}'.")
            }
            _ => format!("Invalid ID Token: {e}"),
        },
        VerifyError::UnknownKey(kid) => {
            format!("Invalid JWT signature: no key with kid {kid:?} in the provider's JWKS.")
        }
        other => other.to_string(),
    };
    OAuthError::invalid_grant(description)
}

pub(crate) async fn token(shared: &Shared, call: &Call) -> Result<Value, OAuthError> {
    let fields = fields(call).await?;
    let get = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    if get("grant_type") != GRANT_TYPE {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            format!("Unsupported grant type: \"{}\"", get("grant_type")),
        ));
    }
    if get("requested_token_type") != ACCESS_TOKEN {
        return Err(OAuthError::invalid_request(format!(
            "Invalid requested_token_type: \"{}\"",
            get("requested_token_type")
        )));
    }
    if !SUBJECT_TYPES.contains(&get("subject_token_type")) {
        return Err(OAuthError::invalid_request(format!(
            "Invalid subject_token_type: \"{}\"",
            get("subject_token_type")
        )));
    }
    let subject_token = get("subject_token");
    if subject_token.is_empty() {
        return Err(OAuthError::invalid_request("subject_token is required."));
    }
    if get("scope").trim().is_empty() {
        return Err(OAuthError::invalid_request(
            "scope is required when exchanging an external credential.",
        ));
    }
    let (number, pool, provider_id) = parse_audience(get("audience")).ok_or_else(invalid_target)?;
    let provider = active_provider(shared, &number, &pool, &provider_id)?;
    let oidc = provider.oidc.clone().unwrap_or_default();

    let iss = oidc::peek_claims(subject_token)
        .map_err(|e| OAuthError::invalid_grant(e.to_string()))?
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if iss != oidc.issuer_uri {
        return Err(OAuthError::invalid_grant(format!(
            "The issuer in ID Token {iss} does not match the expected ones: {}.",
            oidc.issuer_uri
        )));
    }
    let claims = match &oidc.jwks_json {
        Some(jwks) => {
            let jwks: Value = serde_json::from_str(jwks).map_err(|e| {
                OAuthError::invalid_grant(format!("The provider's jwksJson is invalid: {e}"))
            })?;
            oidc::verify_with_jwks(subject_token, &jwks, &oidc.issuer_uri)
        }
        None => {
            shared
                .verifier
                .verify(subject_token, &oidc.issuer_uri)
                .await
        }
    }
    .map_err(verify_error)?;

    let provider_name = format!("{}/providers/{provider_id}", pool_path(&number, &pool));
    let expected: Vec<String> = if oidc.allowed_audiences.is_empty() {
        vec![
            format!("//{provider_name}"),
            format!("https://{provider_name}"),
        ]
    } else {
        oidc.allowed_audiences.clone()
    };
    let token_audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if !token_audiences.iter().any(|a| expected.contains(a)) {
        return Err(OAuthError::invalid_grant(format!(
            "The audience in ID Token {token_audiences:?} does not match the expected audience {expected:?}."
        )));
    }
    let mapped = attributes::evaluate(
        &provider.attribute_mapping,
        provider.attribute_condition.as_deref(),
        &claims,
    )?;

    let mut store = shared.lock();
    let lifetime = store.config.access_token_lifetime;
    let expires_at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(lifetime.as_secs() as i64))
        .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
    let access_token = store.issue_token(
        "federated",
        TokenRecord {
            principal: Principal::Federated {
                project_number: number,
                pool,
                subject: mapped.subject,
                groups: mapped.groups,
                attributes: mapped.attributes,
            },
            expires_at,
            scopes: get("scope").split_whitespace().map(str::to_owned).collect(),
        },
    );
    Ok(json!({
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    }))
}

/// The provider named by the audience, when it and its pool are active and enabled.
fn active_provider(
    shared: &Shared,
    number: &str,
    pool: &str,
    provider: &str,
) -> Result<Provider, OAuthError> {
    let mut store = shared.lock();
    store.purge_expired();
    let pool_ok = store
        .pools
        .get(&(number.to_owned(), pool.to_owned()))
        .is_some_and(|e| e.resource.state.as_deref() == Some(ACTIVE) && !e.resource.disabled);
    let provider = store
        .providers
        .get(&(number.to_owned(), pool.to_owned(), provider.to_owned()))
        .map(|e| e.resource.clone())
        .filter(|p| p.state.as_deref() != Some(DELETED) && !p.disabled && p.oidc.is_some());
    match provider {
        Some(provider) if pool_ok => Ok(provider),
        _ => Err(invalid_target()),
    }
}
