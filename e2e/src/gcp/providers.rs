//! `projects.locations.workloadIdentityPools.providers`: create, get, list, patch, delete
//! (soft), undelete, with Google's validation of OIDC providers.

use serde_json::{Value, json};

use super::{
    Call, Shared, attributes,
    error::ApiError,
    model::{Provider, apply_update_mask},
    pools::{
        self, ACTIVE, DELETED, Empty, entity_not_found, paginate, show_deleted, validate_id,
        validate_labels,
    },
    state::{Entry, Project, Store, rfc3339, typed},
};

const PROVIDER_TYPE: &str = "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolProvider";
const PROVIDER_METADATA: &str =
    "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolProviderOperationMetadata";
const JWK_FIELDS: &[&str] = &["kty", "alg", "use", "kid", "n", "e", "x", "y", "crv"];
const UPDATABLE: &[&str] = &[
    "displayName",
    "description",
    "disabled",
    "attributeMapping",
    "attributeCondition",
    "oidc",
    "oidc.issuerUri",
    "oidc.allowedAudiences",
    "oidc.jwksJson",
    "oidc.discoveryUri",
];

type Key = (String, String, String);

/// The pool named by the path: its project, ID and whether it is soft-deleted.
fn pool(
    store: &mut Store,
    call: &Call,
    permission: &str,
) -> Result<(Project, String, bool), ApiError> {
    let (project, entry) = pools::find(store, call, permission)?;
    let deleted = entry.resource.state.as_deref() == Some(DELETED);
    Ok((
        project,
        call.param("workloadIdentityPoolsId").to_owned(),
        deleted,
    ))
}

fn validate(provider: &Provider) -> Result<(), ApiError> {
    validate_labels(
        provider.display_name.as_deref(),
        provider.description.as_deref(),
    )?;
    let kinds = [
        provider.oidc.is_some(),
        provider.aws.is_some(),
        provider.saml.is_some(),
        provider.x509.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => {
            return Err(ApiError::field_violation(
                "provider_config",
                "One of oidc, aws, saml or x509 must be set.",
            ));
        }
        1 => {}
        _ => {
            return Err(ApiError::field_violation(
                "provider_config",
                "Only one of oidc, aws, saml or x509 may be set.",
            ));
        }
    }
    let Some(oidc) = &provider.oidc else {
        return Err(ApiError::invalid_argument(
            "The local GCP fake only emulates OIDC providers.",
        ));
    };
    if oidc.issuer_uri.is_empty() {
        return Err(ApiError::field_violation(
            "oidc.issuer_uri",
            "oidc.issuer_uri is required.",
        ));
    }
    if !oidc.issuer_uri.starts_with("https://") || oidc.issuer_uri.len() <= "https://".len() {
        return Err(ApiError::field_violation(
            "oidc.issuer_uri",
            format!(
                "oidc.issuer_uri '{}' must be an HTTPS URL.",
                oidc.issuer_uri
            ),
        ));
    }
    if oidc.allowed_audiences.len() > 10 {
        return Err(ApiError::field_violation(
            "oidc.allowed_audiences",
            "At most 10 allowed audiences may be configured.",
        ));
    }
    if let Some(aud) = oidc
        .allowed_audiences
        .iter()
        .find(|a| a.is_empty() || a.len() > 256)
    {
        return Err(ApiError::field_violation(
            "oidc.allowed_audiences",
            format!("Allowed audience '{aud}' must be 1-256 characters."),
        ));
    }
    if let Some(jwks) = &oidc.jwks_json {
        validate_jwks(jwks)?;
    }
    attributes::validate_mapping(&provider.attribute_mapping)?;
    if let Some(condition) = &provider.attribute_condition {
        attributes::validate_condition(condition)?;
    }
    Ok(())
}

/// `oidc.jwksJson`: a JSON string holding `{"keys": [...]}` of RSA or EC keys with only the
/// fields Google lists.
fn validate_jwks(jwks: &str) -> Result<(), ApiError> {
    let violation = |m: String| ApiError::field_violation("oidc.jwks_json", m);
    let parsed: Value = serde_json::from_str(jwks)
        .map_err(|e| violation(format!("oidc.jwks_json is not valid JSON: {e}")))?;
    let keys = parsed
        .get("keys")
        .and_then(Value::as_array)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| violation("oidc.jwks_json must contain a non-empty 'keys' array.".into()))?;
    for key in keys {
        let Some(fields) = key.as_object() else {
            return Err(violation("Each JWK must be a JSON object.".into()));
        };
        if let Some(extra) = fields.keys().find(|k| !JWK_FIELDS.contains(&k.as_str())) {
            return Err(violation(format!("Unsupported JWK field '{extra}'.")));
        }
        if !matches!(
            fields.get("kty").and_then(Value::as_str),
            Some("RSA" | "EC")
        ) {
            return Err(violation("Only RSA and EC keys are supported.".into()));
        }
    }
    Ok(())
}

fn key(project: &Project, pool: &str, call: &Call) -> Key {
    (
        project.number.clone(),
        pool.to_owned(),
        call.param("providersId").to_owned(),
    )
}

pub(crate) fn create(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let (project, pool_id, pool_deleted) =
        pool(&mut store, call, "iam.workloadIdentityPoolProviders.create")?;
    store.record_write(&project)?;
    let id = call
        .query("workloadIdentityPoolProviderId")
        .unwrap_or_default();
    validate_id("workload_identity_pool_provider_id", id)?;
    let mut provider: Provider = call.json("workload_identity_pool_provider")?;
    validate(&provider)?;
    if pool_deleted {
        return Err(ApiError::failed_precondition(
            "The parent workload identity pool is deleted; undelete it before adding providers.",
        ));
    }
    let key = (project.number.clone(), pool_id.clone(), id.to_owned());
    if store.providers.contains_key(&key) {
        return Err(ApiError::already_exists("Requested entity already exists"));
    }
    let name = format!("{}/providers/{id}", pools::pool_name(&project, &pool_id));
    provider.name = Some(name.clone());
    provider.state = Some(ACTIVE.into());
    provider.expire_time = None;
    let response = typed(PROVIDER_TYPE, &provider);
    store.providers.insert(
        key,
        Entry {
            resource: provider,
            purge_at: None,
        },
    );
    Ok(store.start_operation(&name, PROVIDER_METADATA, response))
}

pub(crate) fn get(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let (project, pool_id, _) = pool(&mut store, call, "iam.workloadIdentityPoolProviders.get")?;
    let entry = store
        .providers
        .get(&key(&project, &pool_id, call))
        .ok_or_else(entity_not_found)?;
    Ok(json!(entry.resource))
}

pub(crate) fn list(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let (project, pool_id, _) = pool(&mut store, call, "iam.workloadIdentityPoolProviders.list")?;
    let deleted = show_deleted(call);
    let items = store
        .providers
        .iter()
        .filter(|((number, pool, _), e)| {
            *number == project.number
                && *pool == pool_id
                && (deleted || e.resource.state.as_deref() != Some(DELETED))
        })
        .map(|((_, _, id), e)| (id.clone(), e.resource.clone()))
        .collect();
    let (providers, next) = paginate(items, call)?;
    let mut body = json!({});
    if !providers.is_empty() {
        body["workloadIdentityPoolProviders"] = json!(providers);
    }
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(body)
}

/// Finds the provider for a write, after counting the write against the quota.
fn for_write<'a>(
    store: &'a mut Store,
    call: &Call,
    permission: &str,
) -> Result<(bool, &'a mut Entry<Provider>), ApiError> {
    let (project, pool_id, pool_deleted) = pool(store, call, permission)?;
    store.record_write(&project)?;
    let entry = store
        .providers
        .get_mut(&key(&project, &pool_id, call))
        .ok_or_else(entity_not_found)?;
    Ok((pool_deleted, entry))
}

pub(crate) fn patch(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let (_, entry) = for_write(&mut store, call, "iam.workloadIdentityPoolProviders.update")?;
    let patch: Provider = call.json("workload_identity_pool_provider")?;
    if entry.resource.state.as_deref() == Some(DELETED) {
        return Err(ApiError::failed_precondition(
            "The workload identity pool provider is deleted; undelete it before updating it.",
        ));
    }
    let updated = apply_update_mask(&entry.resource, &patch, call.query("updateMask"), UPDATABLE)?;
    validate(&updated)?;
    entry.resource = updated;
    let response = typed(PROVIDER_TYPE, &entry.resource);
    let name = entry.resource.name.clone().unwrap_or_default();
    Ok(store.start_operation(&name, PROVIDER_METADATA, response))
}

pub(crate) fn delete(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let purge_at = store.purge_deadline();
    let (_, entry) = for_write(&mut store, call, "iam.workloadIdentityPoolProviders.delete")?;
    if entry.resource.state.as_deref() == Some(DELETED) {
        return Err(ApiError::failed_precondition(
            "The workload identity pool provider is already deleted.",
        ));
    }
    entry.resource.state = Some(DELETED.into());
    entry.resource.expire_time = Some(rfc3339(purge_at));
    entry.purge_at = Some(purge_at);
    let response = typed(PROVIDER_TYPE, &entry.resource);
    let name = entry.resource.name.clone().unwrap_or_default();
    Ok(store.start_operation(&name, PROVIDER_METADATA, response))
}

pub(crate) fn undelete(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let (pool_deleted, entry) = for_write(
        &mut store,
        call,
        "iam.workloadIdentityPoolProviders.undelete",
    )?;
    let Empty {} = call.json("undelete_workload_identity_pool_provider_request")?;
    if pool_deleted {
        return Err(ApiError::failed_precondition(
            "The parent workload identity pool is deleted; undelete it first.",
        ));
    }
    if entry.resource.state.as_deref() != Some(DELETED) {
        return Err(ApiError::failed_precondition(
            "The workload identity pool provider is not deleted.",
        ));
    }
    entry.resource.state = Some(ACTIVE.into());
    entry.resource.expire_time = None;
    entry.purge_at = None;
    let response = typed(PROVIDER_TYPE, &entry.resource);
    let name = entry.resource.name.clone().unwrap_or_default();
    Ok(store.start_operation(&name, PROVIDER_METADATA, response))
}
