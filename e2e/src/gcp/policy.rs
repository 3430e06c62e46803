//! `projects.serviceAccounts`: get, and the service account's IAM allow policy
//! (`getIamPolicy`/`setIamPolicy` with etag concurrency control), plus seeding of service
//! accounts, which the fake cannot create through the API.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    Call, Shared,
    error::ApiError,
    model::{Binding, Expr, Policy, SetIamPolicyRequest},
    state::{ServiceAccountRecord, Store},
};

/// The etag of a policy that was never written, as Google returns it.
const EMPTY_ETAG: &str = "ACAB";
const MAX_MEMBERS: usize = 1500;
const SA_DOMAIN: &str = ".iam.gserviceaccount.com";
const WITHCOND: &str = "_withcond_";

/// Adds a service account `name@<project-id>.iam.gserviceaccount.com` of a known project.
pub(crate) fn seed(
    store: &mut Store,
    email: &str,
    display_name: Option<String>,
) -> Result<Value, ApiError> {
    let project_id = email
        .split_once('@')
        .and_then(|(name, domain)| (!name.is_empty()).then_some(domain))
        .and_then(|domain| domain.strip_suffix(SA_DOMAIN))
        .ok_or_else(|| {
            ApiError::field_violation(
                "email",
                format!("'{email}' is not a service account email (name@PROJECT_ID{SA_DOMAIN})."),
            )
        })?;
    if store.project_by_id(project_id).is_none() {
        return Err(ApiError::not_found(format!(
            "Project '{project_id}' is not configured in the fake."
        )));
    }
    let digest = Sha256::digest(email.as_bytes());
    let digits: String = digest
        .iter()
        .take(20)
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let record = ServiceAccountRecord {
        email: email.to_owned(),
        project_id: project_id.to_owned(),
        unique_id: format!("1{digits}"),
        display_name,
        policy: Policy::default(),
        policy_writes: 0,
    };
    let body = service_account_json(&record);
    store
        .service_accounts
        .entry(email.to_owned())
        .or_insert(record);
    Ok(body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeedRequest {
    email: String,
    display_name: Option<String>,
}

/// `POST /_gcp/serviceAccounts` (test-only).
pub(crate) fn seed_from_call(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let request: SeedRequest = call.json("service_account")?;
    seed(&mut shared.lock(), &request.email, request.display_name)
}

fn service_account_json(record: &ServiceAccountRecord) -> Value {
    let mut body = json!({
        "name": format!("projects/{}/serviceAccounts/{}", record.project_id, record.email),
        "projectId": record.project_id,
        "uniqueId": record.unique_id,
        "email": record.email,
        "etag": STANDARD.encode(record.unique_id.as_bytes()),
        "oauth2ClientId": record.unique_id,
    });
    if let Some(display_name) = &record.display_name {
        body["displayName"] = json!(display_name);
    }
    body
}

/// Finds the service account of `projects/{projectsId}/serviceAccounts/{serviceAccountsId}`;
/// the project may be `-`, and the account an email or unique ID.
pub(super) fn find<'a>(
    store: &'a mut Store,
    project: &str,
    account: &str,
) -> Result<&'a mut ServiceAccountRecord, ApiError> {
    let project = (project != "-")
        .then(|| store.project(project, "iam.serviceAccounts.get"))
        .transpose()
        .map_err(|_| ApiError::not_found("Unknown service account"))?;
    store
        .service_accounts
        .values_mut()
        .find(|sa| {
            (sa.email == account || sa.unique_id == account)
                && project.as_ref().is_none_or(|p| p.id == sa.project_id)
        })
        .ok_or_else(|| ApiError::not_found("Unknown service account"))
}

pub(crate) fn get_service_account(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let record = find(
        &mut store,
        call.param("projectsId"),
        call.param("serviceAccountsId"),
    )?;
    Ok(service_account_json(record))
}

fn etag(record: &ServiceAccountRecord) -> String {
    if record.policy_writes == 0 {
        return EMPTY_ETAG.to_owned();
    }
    let mut hasher = Sha256::new();
    hasher.update(record.email.as_bytes());
    hasher.update(record.policy_writes.to_be_bytes());
    STANDARD.encode(&hasher.finalize()[..8])
}

fn has_conditions(policy: &Policy) -> bool {
    policy.bindings.iter().any(|b| b.condition.is_some())
}

/// The policy as returned to a caller that asked for `requested` (default 1). Below version 3,
/// IAM hides conditions and renames conditional roles to `<role>_withcond_<hash>`, which a
/// client must not write back.
fn policy_json(record: &ServiceAccountRecord, requested: i64) -> Value {
    let mut policy = record.policy.clone();
    let conditional = has_conditions(&policy);
    policy.version = Some(if conditional && requested >= 3 { 3 } else { 1 });
    if conditional && requested < 3 {
        for binding in &mut policy.bindings {
            if let Some(condition) = binding.condition.take() {
                let digest = Sha256::digest(condition.expression.as_bytes());
                let hash: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
                binding.role = format!("{}{WITHCOND}{hash}", binding.role);
            }
        }
    }
    policy.etag = Some(etag(record));
    json!(policy)
}

fn check_version(version: i64) -> Result<(), ApiError> {
    if matches!(version, 0 | 1 | 3) {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "Invalid IAM policy version {version}; valid versions are 0, 1 and 3."
        )))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetIamPolicyBody {
    #[serde(default)]
    #[allow(dead_code, reason = "accepted like the path it duplicates")]
    resource: Option<String>,
    options: Option<GetPolicyOptions>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetPolicyOptions {
    requested_policy_version: Option<i64>,
}

/// `:getIamPolicy`. The discovery document has no request body (the version comes as the
/// `options.requestedPolicyVersion` query parameter); a `GetIamPolicyRequest` JSON body, as
/// gRPC-transcoding clients send, is accepted too.
pub(crate) fn get_iam_policy(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let body: GetIamPolicyBody = call.json("get_iam_policy_request")?;
    let requested = match call.query("options.requestedPolicyVersion") {
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::invalid_argument(format!(
                "Invalid value at 'options.requested_policy_version' (TYPE_INT32), \"{raw}\""
            ))
        })?),
        None => body.options.and_then(|o| o.requested_policy_version),
    };
    if let Some(version) = requested {
        check_version(version)?;
    }
    let mut store = shared.lock();
    let record = find(
        &mut store,
        call.param("projectsId"),
        call.param("serviceAccountsId"),
    )?;
    Ok(policy_json(record, requested.unwrap_or(1)))
}

pub(crate) fn set_iam_policy(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let request: SetIamPolicyRequest = call.json("set_iam_policy_request")?;
    let mut policy = request
        .policy
        .ok_or_else(|| ApiError::field_violation("policy", "policy is required."))?;
    // proto3 bytes: an empty etag is no etag.
    policy.etag = policy.etag.filter(|tag| !tag.is_empty());
    if let Some(version) = policy.version {
        check_version(i64::from(version))?;
    }
    if has_conditions(&policy) && policy.version != Some(3) {
        return Err(ApiError::invalid_argument(
            "Conditional role bindings require policy version 3.",
        ));
    }
    if let Some(tag) = &policy.etag
        && STANDARD.decode(tag).is_err()
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value at 'policy.etag' (TYPE_BYTES), Base64 decoding failed for \"{tag}\""
        )));
    }
    let bindings = normalize(policy.bindings)?;
    let mask = request.update_mask.unwrap_or_default();
    let audit_configs_masked = mask
        .split(',')
        .any(|p| matches!(p.trim(), "auditConfigs" | "audit_configs"));

    let mut store = shared.lock();
    let record = find(
        &mut store,
        call.param("projectsId"),
        call.param("serviceAccountsId"),
    )?;
    if let Some(tag) = &policy.etag
        && *tag != etag(record)
    {
        return Err(ApiError::aborted(
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
        ));
    }
    record.policy.bindings = bindings;
    if audit_configs_masked {
        record.policy.audit_configs = policy.audit_configs;
    }
    record.policy_writes += 1;
    Ok(policy_json(record, i64::from(policy.version.unwrap_or(1))))
}

/// Validates bindings and stores them the way IAM does: one binding per role and condition,
/// members sorted without duplicates, bindings without members dropped.
fn normalize(bindings: Vec<Binding>) -> Result<Vec<Binding>, ApiError> {
    let mut merged: BTreeMap<(String, Option<Expr>), Vec<String>> = BTreeMap::new();
    for binding in bindings {
        let custom =
            binding.role.starts_with("projects/") || binding.role.starts_with("organizations/");
        if !(binding.role.starts_with("roles/") || custom)
            || binding.role.ends_with('/')
            || binding.role.contains(WITHCOND)
        {
            return Err(ApiError::invalid_argument(format!(
                "Role ({}) does not exist in the resource's hierarchy.",
                binding.role
            )));
        }
        for member in &binding.members {
            validate_member(member)?;
        }
        merged
            .entry((binding.role, binding.condition))
            .or_default()
            .extend(binding.members);
    }
    let mut total = 0;
    let mut out = Vec::new();
    for ((role, condition), mut members) in merged {
        members.sort();
        members.dedup();
        total += members.len();
        if !members.is_empty() {
            out.push(Binding {
                role,
                members,
                condition,
            });
        }
    }
    if total > MAX_MEMBERS {
        return Err(ApiError::invalid_argument(format!(
            "The number of members in the policy ({total}) is larger than the maximum allowed size {MAX_MEMBERS}."
        )));
    }
    Ok(out)
}

fn validate_member(member: &str) -> Result<(), ApiError> {
    let invalid =
        || ApiError::invalid_argument(format!("Invalid principal identifier '{member}'."));
    if matches!(member, "allUsers" | "allAuthenticatedUsers") {
        return Ok(());
    }
    for prefix in ["user:", "serviceAccount:", "group:", "domain:", "deleted:"] {
        if let Some(rest) = member.strip_prefix(prefix) {
            return if rest.is_empty() {
                Err(invalid())
            } else {
                Ok(())
            };
        }
    }
    let (rest, set) = if let Some(rest) = member.strip_prefix("principal://iam.googleapis.com/") {
        (rest, false)
    } else if let Some(rest) = member.strip_prefix("principalSet://iam.googleapis.com/") {
        (rest, true)
    } else {
        return Err(invalid());
    };
    if rest.starts_with("locations/global/workforcePools/") {
        return Ok(());
    }
    let parts: Vec<&str> = rest.splitn(7, '/').collect();
    let well_formed = parts.len() == 7
        && parts[0] == "projects"
        && !parts[1].is_empty()
        && parts[1].chars().all(|c| c.is_ascii_digit())
        && parts[2] == "locations"
        && parts[3] == "global"
        && parts[4] == "workloadIdentityPools"
        && !parts[5].is_empty();
    if !well_formed {
        return Err(invalid());
    }
    let tail = parts[6];
    let ok = if set {
        tail == "*"
            || tail.strip_prefix("group/").is_some_and(|g| !g.is_empty())
            || tail
                .strip_prefix("attribute.")
                .and_then(|a| a.split_once('/'))
                .is_some_and(|(name, value)| !name.is_empty() && !value.is_empty())
    } else {
        tail.strip_prefix("subject/").is_some_and(|s| !s.is_empty())
    };
    if ok { Ok(()) } else { Err(invalid()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_checked_for_shape() {
        let pool = "projects/123/locations/global/workloadIdentityPools/pool";
        for good in [
            format!("principal://iam.googleapis.com/{pool}/subject/system:serviceaccount:ns:sa"),
            format!("principalSet://iam.googleapis.com/{pool}/*"),
            format!("principalSet://iam.googleapis.com/{pool}/attribute.namespace/ns"),
            "serviceAccount:a@p.iam.gserviceaccount.com".to_owned(),
        ] {
            assert!(validate_member(&good).is_ok(), "{good}");
        }
        for bad in [
            "principal://iam.googleapis.com/projects/demo/locations/global/workloadIdentityPools/pool/subject/x".to_owned(),
            format!("principal://iam.googleapis.com/{pool}/subject/"),
            format!("principalSet://iam.googleapis.com/{pool}/subject/x"),
            "someone@example.com".to_owned(),
        ] {
            assert!(validate_member(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bindings_are_merged_sorted_and_emptied_ones_dropped() -> anyhow::Result<()> {
        let binding = |role: &str, members: &[&str]| Binding {
            role: role.into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            condition: None,
        };
        let Ok(out) = normalize(vec![
            binding("roles/iam.workloadIdentityUser", &["user:b@x", "user:a@x"]),
            binding("roles/viewer", &[]),
            binding("roles/iam.workloadIdentityUser", &["user:a@x"]),
        ]) else {
            anyhow::bail!("valid bindings refused");
        };
        assert_eq!(
            out,
            vec![binding(
                "roles/iam.workloadIdentityUser",
                &["user:a@x", "user:b@x"]
            )]
        );
        Ok(())
    }
}
