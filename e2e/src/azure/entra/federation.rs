//! Workload identity federation: matching a client assertion against the identity's federated
//! identity credentials, then verifying it against its issuer's JWKS, with Entra's AADSTS codes
//! for each way that fails.

use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;

use super::{super::Shared, ENTRA_HOSTS, EntraError, Principal, app_not_found};
use crate::oidc::{VerifyError, peek_claims};

const FIC_DOCS: &str = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

/// Workload identity federation: the assertion must match one of the identity's FICs exactly
/// (issuer, subject, audience; case-sensitive) and verify against its issuer's JWKS.
pub(super) async fn federated(
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
            tenant_id: identity.seed.tenant_id.clone(),
            client_id: identity.seed.client_id.clone(),
            principal_id: identity.seed.principal_id.clone(),
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
