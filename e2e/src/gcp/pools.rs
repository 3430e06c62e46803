//! `projects.locations.workloadIdentityPools`: create, get, list, patch, delete (soft), undelete,
//! and `operations.get` for both pools and providers.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Call, Shared,
    error::ApiError,
    model::{Pool, apply_update_mask},
    state::{Entry, Project, Store, rfc3339, typed},
};

pub(super) const POOL_TYPE: &str = "type.googleapis.com/google.iam.v1.WorkloadIdentityPool";
const POOL_METADATA: &str =
    "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolOperationMetadata";
pub(super) const ACTIVE: &str = "ACTIVE";
pub(super) const DELETED: &str = "DELETED";

/// The empty `Undelete*Request` bodies.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Empty {}

/// Resolves `{projectsId}` and checks `{locationsId}`, the parent of every pool.
pub(super) fn parent(store: &Store, call: &Call, permission: &str) -> Result<Project, ApiError> {
    let project = store.project(call.param("projectsId"), permission)?;
    let location = call.param("locationsId");
    if location != "global" {
        return Err(ApiError::invalid_argument(format!(
            "Location '{location}' is not supported; the only supported location is 'global'."
        )));
    }
    Ok(project)
}

pub(super) fn pool_name(project: &Project, pool: &str) -> String {
    format!(
        "projects/{}/locations/global/workloadIdentityPools/{pool}",
        project.number
    )
}

/// IDs of pools and providers: 4-32 characters of `[a-z0-9-]`, not starting with `gcp-`.
pub(super) fn validate_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::field_violation(
            field,
            format!("{field} is required."),
        ));
    }
    let charset = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(4..=32).contains(&id.len()) || !charset {
        return Err(ApiError::field_violation(
            field,
            format!("{field} '{id}' must be 4-32 characters long and contain only [a-z0-9-]."),
        ));
    }
    if id.starts_with("gcp-") {
        return Err(ApiError::field_violation(
            field,
            format!("{field} '{id}' uses the prefix 'gcp-', which is reserved by Google."),
        ));
    }
    Ok(())
}

/// `displayName` (at most 32 characters) and `description` (at most 256).
pub(super) fn validate_labels(
    display_name: Option<&str>,
    description: Option<&str>,
) -> Result<(), ApiError> {
    if display_name.is_some_and(|d| d.chars().count() > 32) {
        return Err(ApiError::field_violation(
            "display_name",
            "display_name cannot exceed 32 characters.",
        ));
    }
    if description.is_some_and(|d| d.chars().count() > 256) {
        return Err(ApiError::field_violation(
            "description",
            "description cannot exceed 256 characters.",
        ));
    }
    Ok(())
}

pub(super) fn entity_not_found() -> ApiError {
    ApiError::not_found("Requested entity was not found.")
}

/// Page of `items` after `page_token` (the last ID of the previous page).
pub(super) fn paginate<T>(
    items: Vec<(String, T)>,
    call: &Call,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match call.query("pageSize") {
        None => 50,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n <= 0 => 50,
            Ok(n) => n.min(1000) as usize,
            Err(_) => {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value at 'page_size' (TYPE_INT32), \"{raw}\""
                )));
            }
        },
    };
    let after = call.query("pageToken").filter(|t| !t.is_empty());
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
        .collect();
    let next = (rest.len() > size).then(|| rest[size - 1].0.clone());
    rest.truncate(size);
    Ok((rest.into_iter().map(|(_, item)| item).collect(), next))
}

pub(super) fn show_deleted(call: &Call) -> bool {
    call.query("showDeleted") == Some("true")
}

pub(crate) fn create(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    store.purge_expired();
    let project = parent(&store, call, "iam.workloadIdentityPools.create")?;
    store.record_write(&project)?;
    let id = call.query("workloadIdentityPoolId").unwrap_or_default();
    validate_id("workload_identity_pool_id", id)?;
    let mut pool: Pool = call.json("workload_identity_pool")?;
    validate_labels(pool.display_name.as_deref(), pool.description.as_deref())?;
    let key = (project.number.clone(), id.to_owned());
    if store.pools.contains_key(&key) {
        return Err(ApiError::already_exists("Requested entity already exists"));
    }
    let name = pool_name(&project, id);
    pool.name = Some(name.clone());
    pool.state = Some(ACTIVE.into());
    pool.expire_time = None;
    let response = typed(POOL_TYPE, &pool);
    store.pools.insert(
        key,
        Entry {
            resource: pool,
            purge_at: None,
        },
    );
    Ok(store.start_operation(&name, POOL_METADATA, response))
}

/// Looks up the pool named by the path, for handlers of the pool and what it contains.
pub(super) fn find<'a>(
    store: &'a mut Store,
    call: &Call,
    permission: &str,
) -> Result<(Project, &'a mut Entry<Pool>), ApiError> {
    store.purge_expired();
    let project = parent(store, call, permission)?;
    let key = (
        project.number.clone(),
        call.param("workloadIdentityPoolsId").to_owned(),
    );
    let entry = store.pools.get_mut(&key).ok_or_else(entity_not_found)?;
    Ok((project, entry))
}

pub(crate) fn get(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let (_, entry) = find(&mut store, call, "iam.workloadIdentityPools.get")?;
    Ok(json!(entry.resource))
}

pub(crate) fn list(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    store.purge_expired();
    let project = parent(&store, call, "iam.workloadIdentityPools.list")?;
    let deleted = show_deleted(call);
    let items = store
        .pools
        .iter()
        .filter(|((number, _), e)| {
            *number == project.number && (deleted || e.resource.state.as_deref() != Some(DELETED))
        })
        .map(|((_, id), e)| (id.clone(), e.resource.clone()))
        .collect();
    let (pools, next) = paginate(items, call)?;
    let mut body = json!({});
    if !pools.is_empty() {
        body["workloadIdentityPools"] = json!(pools);
    }
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(body)
}

pub(crate) fn patch(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let project = parent(&store, call, "iam.workloadIdentityPools.update")?;
    store.record_write(&project)?;
    let patch: Pool = call.json("workload_identity_pool")?;
    let (_, entry) = find(&mut store, call, "iam.workloadIdentityPools.update")?;
    if entry.resource.state.as_deref() == Some(DELETED) {
        return Err(ApiError::failed_precondition(
            "The workload identity pool is deleted; undelete it before updating it.",
        ));
    }
    let updated = apply_update_mask(
        &entry.resource,
        &patch,
        call.query("updateMask"),
        &["displayName", "description", "disabled"],
    )?;
    validate_labels(
        updated.display_name.as_deref(),
        updated.description.as_deref(),
    )?;
    entry.resource = updated;
    let response = typed(POOL_TYPE, &entry.resource);
    let name = entry.resource.name.clone().unwrap_or_default();
    Ok(store.start_operation(&name, POOL_METADATA, response))
}

pub(crate) fn delete(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let project = parent(&store, call, "iam.workloadIdentityPools.delete")?;
    store.record_write(&project)?;
    let purge_at = store.purge_deadline();
    let (_, entry) = find(&mut store, call, "iam.workloadIdentityPools.delete")?;
    if entry.resource.state.as_deref() == Some(DELETED) {
        return Err(ApiError::failed_precondition(
            "The workload identity pool is already deleted.",
        ));
    }
    entry.resource.state = Some(DELETED.into());
    entry.resource.expire_time = Some(rfc3339(purge_at));
    entry.purge_at = Some(purge_at);
    let response = typed(POOL_TYPE, &entry.resource);
    let name = entry.resource.name.clone().unwrap_or_default();
    Ok(store.start_operation(&name, POOL_METADATA, response))
}

pub(crate) fn undelete(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let project = parent(&store, call, "iam.workloadIdentityPools.undelete")?;
    store.record_write(&project)?;
    let Empty {} = call.json("undelete_workload_identity_pool_request")?;
    let (_, entry) = find(&mut store, call, "iam.workloadIdentityPools.undelete")?;
    if entry.resource.state.as_deref() != Some(DELETED) {
        return Err(ApiError::failed_precondition(
            "The workload identity pool is not deleted.",
        ));
    }
    entry.resource.state = Some(ACTIVE.into());
    entry.resource.expire_time = None;
    entry.purge_at = None;
    let response = typed(POOL_TYPE, &entry.resource);
    let name = entry.resource.name.clone().unwrap_or_default();
    Ok(store.start_operation(&name, POOL_METADATA, response))
}

/// `operations.get` under a pool or a provider; the project may be given by ID or number.
pub(crate) fn get_operation(shared: &Shared, call: &Call) -> Result<Value, ApiError> {
    let mut store = shared.lock();
    let project = parent(&store, call, "iam.workloadIdentityPools.get")?;
    let mut name = pool_name(&project, call.param("workloadIdentityPoolsId"));
    if let Some(provider) = call.params.get("providersId") {
        name.push_str("/providers/");
        name.push_str(provider);
    }
    name.push_str("/operations/");
    name.push_str(call.param("operationsId"));
    store.poll_operation(&name)
}
