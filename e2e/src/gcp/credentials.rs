//! `iamcredentials.googleapis.com` `generateAccessToken` (service-account impersonation with a
//! federated token, allowed by the service account's IAM policy) and the test-only `/_whoami`.

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Call, Shared,
    error::ApiError,
    policy,
    pools::ACTIVE,
    state::{Principal, Store, TokenRecord, pool_path, rfc3339, whole_seconds},
};

/// Roles whose permissions include `iam.serviceAccounts.getAccessToken`.
const TOKEN_ROLES: &[&str] = &[
    "roles/iam.workloadIdentityUser",
    "roles/iam.serviceAccountTokenCreator",
];
const MAX_LIFETIME_SECS: f64 = 3600.0;

fn unauthenticated() -> ApiError {
    ApiError::unauthenticated(
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
         cookie or other valid authentication credential.",
    )
}

/// The live token record behind the call's Bearer token. Tokens of a pool that has since been
/// disabled or deleted stop working, as Google documents for disabled pools.
fn caller(store: &Store, call: &Call) -> Result<TokenRecord, ApiError> {
    let record = call
        .bearer()
        .and_then(|token| store.tokens.get(token))
        .filter(|r| r.expires_at > Timestamp::now())
        .cloned()
        .ok_or_else(unauthenticated)?;
    if let Principal::Federated {
        project_number,
        pool,
        ..
    } = &record.principal
    {
        let usable = store
            .pools
            .get(&(project_number.clone(), pool.clone()))
            .is_some_and(|e| e.resource.state.as_deref() == Some(ACTIVE) && !e.resource.disabled);
        if !usable {
            return Err(unauthenticated());
        }
    }
    Ok(record)
}

/// Whether IAM member `member` covers `principal`.
fn member_matches(member: &str, principal: &Principal) -> bool {
    if member == principal.member() {
        return true;
    }
    let Principal::Federated {
        project_number,
        pool,
        groups,
        attributes,
        ..
    } = principal
    else {
        return false;
    };
    let Some(rest) = member
        .strip_prefix("principalSet://")
        .and_then(|m| m.strip_prefix(&pool_path(project_number, pool)))
        .and_then(|m| m.strip_prefix('/'))
    else {
        return false;
    };
    if rest == "*" {
        return true;
    }
    if let Some(group) = rest.strip_prefix("group/") {
        return groups.iter().any(|g| g == group);
    }
    rest.strip_prefix("attribute.")
        .and_then(|a| a.split_once('/'))
        .is_some_and(|(name, value)| attributes.get(name).is_some_and(|v| v == value))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerateAccessTokenRequest {
    #[serde(default)]
    delegates: Vec<String>,
    #[serde(default)]
    scope: Vec<String>,
    lifetime: Option<String>,
}

/// Parses a protobuf Duration in JSON form (`"3600s"`, `"1.5s"`).
fn parse_lifetime(raw: &str) -> Option<f64> {
    raw.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
}

pub(crate) fn generate_access_token(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    if call.param("projectsId") != "-" {
        return Err(ApiError::invalid_argument(
            "The project must be the '-' wildcard: projects/-/serviceAccounts/{ACCOUNT}.",
        ));
    }
    let request: GenerateAccessTokenRequest = call.json("generate_access_token_request")?;
    let mut store = shared.lock();
    let caller = caller(&store, call)?;
    if request.scope.is_empty() {
        return Err(ApiError::field_violation("scope", "Scope is required."));
    }
    if !request.delegates.is_empty() {
        return Err(ApiError::invalid_argument(
            "Delegation chains are not emulated by the local GCP fake.",
        ));
    }
    let lifetime = match request.lifetime.as_deref() {
        None => MAX_LIFETIME_SECS,
        Some(raw) => parse_lifetime(raw)
            .filter(|s| *s > 0.0 && *s <= MAX_LIFETIME_SECS)
            .ok_or_else(|| {
                ApiError::field_violation(
                    "lifetime",
                    format!("The lifetime '{raw}' must be between 1s and 3600s."),
                )
            })?,
    };
    let account = policy::find(&mut store, "-", call.param("serviceAccountsId"))?;
    let allowed = account.policy.bindings.iter().any(|b| {
        b.condition.is_none()
            && TOKEN_ROLES.contains(&b.role.as_str())
            && b.members
                .iter()
                .any(|m| member_matches(m, &caller.principal))
    });
    if !allowed {
        return Err(ApiError::iam_permission_denied(
            "iam.serviceAccounts.getAccessToken",
            &format!("projects/-/serviceAccounts/{}", account.email),
        ));
    }
    let email = account.email.clone();
    let expire_time = Timestamp::now()
        .checked_add(SignedDuration::from_secs_f64(lifetime))
        .map(whole_seconds)
        .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
    let token = store.issue_token(
        "sa",
        TokenRecord {
            principal: Principal::ServiceAccount { email },
            expires_at: expire_time,
            scopes: request.scope,
        },
    );
    Ok(json!({ "accessToken": token, "expireTime": rfc3339(expire_time) }))
}

/// `GET /_whoami` (test-only): who the Bearer access token stands for.
pub(crate) fn whoami(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let store = shared.lock();
    let record = caller(&store, call)?;
    let mut body = json!({
        "principal": record.principal.member(),
        "scopes": record.scopes,
        "expireTime": rfc3339(record.expires_at),
    });
    match &record.principal {
        Principal::Federated {
            subject,
            attributes,
            groups,
            ..
        } => {
            body["kind"] = json!("federated");
            body["subject"] = json!(subject);
            body["attributes"] = json!(attributes);
            body["groups"] = json!(groups);
        }
        Principal::ServiceAccount { email } => {
            body["kind"] = json!("serviceAccount");
            body["email"] = json!(email);
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn principal_sets_match_by_pool_attribute_and_group() {
        let principal = Principal::Federated {
            project_number: "123".into(),
            pool: "pool".into(),
            subject: "system:serviceaccount:ns:sa".into(),
            groups: vec!["admins".into()],
            attributes: BTreeMap::from([("namespace".to_owned(), "ns".to_owned())]),
        };
        let base = "iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool";
        assert!(member_matches(
            &format!("principal://{base}/subject/system:serviceaccount:ns:sa"),
            &principal
        ));
        assert!(member_matches(
            &format!("principalSet://{base}/*"),
            &principal
        ));
        assert!(member_matches(
            &format!("principalSet://{base}/attribute.namespace/ns"),
            &principal
        ));
        assert!(member_matches(
            &format!("principalSet://{base}/group/admins"),
            &principal
        ));
        assert!(!member_matches(
            &format!("principal://{base}/subject/system:serviceaccount:ns:other"),
            &principal
        ));
        assert!(!member_matches(
            &format!("principalSet://{base}/attribute.namespace/other"),
            &principal
        ));
        assert!(!member_matches(
            "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/other/*",
            &principal
        ));
    }

    #[test]
    fn lifetimes_parse_like_protobuf_durations() {
        assert_eq!(parse_lifetime("3600s"), Some(3600.0));
        assert_eq!(parse_lifetime("1.5s"), Some(1.5));
        assert_eq!(parse_lifetime("3600"), None);
    }
}
