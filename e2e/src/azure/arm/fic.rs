//! ARM federated identity credential operations: get, list (with `$top`/nextLink), create or
//! update, delete; one write at a time per identity (a concurrent one gets 409).

use std::{sync::Arc, time::Instant};

use axum::{
    Json,
    body::Bytes,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    super::{
        Shared,
        spec::Params,
        state::{Identity, IdentityKey, parse_fic},
    },
    ArmError, key, parent_not_found, parse_body, query_value,
};

fn fic_name(params: &Params) -> &str {
    params.fic.as_deref().unwrap_or_default()
}

pub(super) fn get(shared: &Shared, params: &Params) -> Result<Response, ArmError> {
    let store = shared.lock();
    let identity = store
        .identities
        .get(&key(params))
        .ok_or_else(|| parent_not_found(params, "read"))?;
    let fic = identity.fic(fic_name(params)).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/{}/federatedIdentityCredentials/{}' under resource group '{}' was not found.",
                params.identity,
                fic_name(params),
                params.resource_group
            ),
        )
    })?;
    Ok(Json(fic.to_json(&identity.id())).into_response())
}

pub(super) fn list(
    shared: &Shared,
    params: &Params,
    query: &[(String, String)],
    api_version: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ArmError> {
    let bad = |name: &str, value: &str| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            format!("The value '{value}' of query parameter '{name}' is invalid."),
        )
    };
    let top = match query_value(query, "$top") {
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("$top", v))?,
        ),
        None => None,
    };
    let skip = match query_value(query, "$skiptoken") {
        Some(v) => v.parse::<usize>().map_err(|_| bad("$skiptoken", v))?,
        None => 0,
    };
    let store = shared.lock();
    let identity = store
        .identities
        .get(&key(params))
        .ok_or_else(|| parent_not_found(params, "read"))?;
    let id = identity.id();
    let all: Vec<Value> = identity.fics.iter().map(|s| s.fic.to_json(&id)).collect();
    let end = top.map_or(all.len(), |t| (skip + t).min(all.len()));
    let page = all.get(skip.min(all.len())..end).unwrap_or_default();
    let mut body = json!({ "value": page });
    if end < all.len() {
        let top = top.unwrap_or(all.len());
        body["nextLink"] = json!(format!(
            "{}{}?api-version={api_version}&$top={top}&$skiptoken={end}",
            shared.base_url(headers, uri),
            uri.path()
        ));
    }
    Ok(Json(body).into_response())
}

fn concurrent_write(identity: &Identity) -> ArmError {
    tracing::info!(identity = %identity.id(), "refused concurrent federated identity credential write");
    ArmError::new(
        StatusCode::CONFLICT,
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
        format!(
            "Too many Federated Identity Credentials are written concurrently for the managed identity '{}'. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.",
            identity.id()
        ),
    )
}

/// Marks an identity busy for the duration of a FIC write; clears it however the write ends
/// (including a client hanging up mid-request).
struct WriteGuard {
    shared: Arc<Shared>,
    key: IdentityKey,
}

impl WriteGuard {
    fn begin(
        shared: &Arc<Shared>,
        identity: &mut Identity,
        key: IdentityKey,
    ) -> Result<Self, ArmError> {
        if identity.busy {
            return Err(concurrent_write(identity));
        }
        identity.busy = true;
        Ok(Self {
            shared: shared.clone(),
            key,
        })
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some(identity) = self.shared.lock().identities.get_mut(&self.key) {
            identity.busy = false;
        }
    }
}

pub(super) async fn put(
    shared: &Arc<Shared>,
    params: &Params,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let key = key(params);
    let (guard, fic, created) = {
        let mut store = shared.lock();
        let identity = store
            .identities
            .get_mut(&key)
            .ok_or_else(|| parent_not_found(params, "write"))?;
        let fic = parse_fic(fic_name(params), &parse_body(body)?)?;
        if identity.busy {
            return Err(concurrent_write(identity));
        }
        let created = identity.check_upsert(&fic)?;
        // Last in this block: the guard's drop takes the lock, so it must never drop while
        // `store` is held. The identity stays busy until then, so the checks above hold.
        let guard = WriteGuard::begin(shared, identity, key.clone())?;
        (guard, fic, created)
    };
    tokio::time::sleep(shared.fic_write_time).await;
    let mut store = shared.lock();
    let usable_from = Instant::now() + store.propagation;
    let identity = store
        .identities
        .get_mut(&key)
        .ok_or_else(|| parent_not_found(params, "write"))?;
    let name = fic.name.clone();
    tracing::info!(identity = %identity.id(), fic = %fic.name, created, "wrote federated identity credential");
    identity.upsert(fic, usable_from);
    let json = identity
        .fic(&name)
        .map(|f| f.to_json(&identity.id()))
        .unwrap_or_default();
    drop(store);
    drop(guard);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json)).into_response())
}

pub(super) async fn delete(shared: &Arc<Shared>, params: &Params) -> Result<Response, ArmError> {
    let key = key(params);
    let guard = {
        let mut store = shared.lock();
        let identity = store
            .identities
            .get_mut(&key)
            .ok_or_else(|| parent_not_found(params, "delete"))?;
        if identity.fic(fic_name(params)).is_none() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        WriteGuard::begin(shared, identity, key.clone())?
    };
    tokio::time::sleep(shared.fic_write_time).await;
    let removed = shared
        .lock()
        .identities
        .get_mut(&key)
        .is_some_and(|i| i.remove(fic_name(params)));
    drop(guard);
    if removed {
        tracing::info!(identity = %params.identity, fic = %fic_name(params), "deleted federated identity credential");
    }
    Ok(if removed {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    }
    .into_response())
}
