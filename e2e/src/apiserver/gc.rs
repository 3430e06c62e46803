//! Garbage collection by `ownerReferences`: when an owner is removed, dependents whose owners are
//! all gone are deleted at once (background propagation, finalizers respected), or with
//! `propagationPolicy: Orphan` released from the owner instead.

use std::collections::HashSet;

use serde_json::Value;

use super::{Inner, objects, store::Key};

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

fn dependents_of(inner: &Inner, owner: &str) -> Vec<Key> {
    inner
        .store
        .all()
        .filter(|(_, obj)| owner_uids(obj).any(|u| u == owner))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Deletes the dependents of the removed object `owner_uid` that have no live owner left.
pub fn collect(inner: &mut Inner, owner_uid: &str) {
    let live: HashSet<String> = inner
        .store
        .all()
        .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(str::to_owned))
        .collect();
    for (storage, ns, name) in dependents_of(inner, owner_uid) {
        let orphaned = inner
            .store
            .get(&storage, &ns, &name)
            .is_some_and(|o| owner_uids(o).all(|u| !live.contains(u)));
        let res = inner
            .registry
            .all()
            .find(|r| r.storage_override.is_none() && r.storage_key() == storage)
            .cloned();
        if let (true, Some(res)) = (orphaned, res) {
            // A dependent already gone (a cascade got there first) is fine.
            let _ = objects::delete(inner, &res, &ns, &name, None, false, false);
        }
    }
}

/// `propagationPolicy: Orphan`: the dependents lose their reference to `owner_uid`.
pub fn orphan(inner: &mut Inner, owner_uid: &str) {
    for (storage, ns, name) in dependents_of(inner, owner_uid) {
        let Some(mut obj) = inner.store.get(&storage, &ns, &name).cloned() else {
            continue;
        };
        if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
        }
        let rv = inner.store.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        inner
            .store
            .put(&storage, &ns, &name, obj, super::store::EventType::Modified);
    }
}
