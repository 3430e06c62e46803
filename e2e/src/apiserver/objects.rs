//! The write path shared by every verb: what the server sets and keeps on create, update and
//! delete (metadata, generation, status subresource rules, finalizers) and the built-in kinds'
//! side effects (namespace defaults, cascading deletes, CRD registration).

use serde_json::{Map, Value, json};

use super::{
    Inner, builtins, crd, gc,
    resources::ApiResource,
    status::{ApiError, Cause},
    store::{self, EventType},
};

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

pub fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace_of(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `metadata` as a map, made one if absent. Callers have checked that `obj` is an object.
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let slot = &mut obj["metadata"];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// A DNS-1123 subdomain (most names) or label (namespaces).
fn name_problem(name: &str, label: bool) -> Option<String> {
    let max = if label { 63 } else { 253 };
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.'));
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > max || !ok_chars || !ends(name.chars().next()) || !ends(name.chars().last()) {
        let what = if label { "label" } else { "subdomain" };
        Some(format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 {what} must consist of lower case \
             alphanumeric characters, '-'{} and must start and end with an alphanumeric character",
            if label { "" } else { " or '.'" }
        ))
    } else {
        None
    }
}

/// Checks the body against the URL and applies what happens before admission: defaults of
/// built-in admission plugins (pod service account) and custom-resource decoding defaults.
pub fn prepare_create(
    inner: &Inner,
    res: &ApiResource,
    namespace: Option<&str>,
    mut obj: Value,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    if let Some(kind) = obj["kind"].as_str()
        && !kind.is_empty()
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the request ({})",
            res.kind
        )));
    }
    obj["kind"] = json!(res.kind);
    obj["apiVersion"] = json!(res.api_version());
    let m = meta_mut(&mut obj);
    if res.namespaced {
        let ns = namespace.unwrap_or_default();
        match m.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
        let ns_gr = super::status::GroupResource {
            group: String::new(),
            resource: "namespaces".into(),
        };
        match inner.store.get("/namespaces", "", ns) {
            None => return Err(ApiError::not_found(&ns_gr, ns)),
            Some(found) if !found["metadata"]["deletionTimestamp"].is_null() => {
                let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                return Err(builtins::namespace_terminating(
                    &res.group_resource().to_string(),
                    name,
                    ns,
                ));
            }
            Some(_) => {}
        }
    } else {
        m.remove("namespace");
    }
    if res.is_pod() {
        builtins::default_pod(&mut obj);
        builtins::service_account_admission(inner, &mut obj)?;
    }
    builtins::fold_string_data(res, &mut obj);
    if let Some(schema) = &res.schema {
        obj = crd::decode_defaults(schema, &obj);
    }
    Ok(obj)
}

/// Names, validates and stores a new object after admission; returns it as stored.
pub fn commit_create(
    inner: &mut Inner,
    res: &ApiResource,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let gr = res.group_resource();
    let namespace = namespace_of(&obj).to_owned();
    let mut name = name_of(&obj).to_owned();
    if name.is_empty() {
        let prefix = meta(&obj)["generateName"].as_str().unwrap_or_default();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                &res.group,
                &res.kind,
                "",
                &[Cause::new(
                    "metadata.name",
                    "Required value: name or generateName is required",
                )],
            ));
        }
        name = format!("{prefix}{}", store::name_suffix());
    }
    if let Some(problem) = name_problem(&name, res.plural == "namespaces") {
        return Err(ApiError::invalid(
            &res.group,
            &res.kind,
            &name,
            &[Cause::new("metadata.name", problem)],
        ));
    }
    let causes = super::meta::validate(&obj);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&res.group, &res.kind, &name, &causes));
    }
    if inner
        .store
        .get(&res.storage_key(), &namespace, &name)
        .is_some()
    {
        return Err(ApiError::already_exists(&gr, &name));
    }
    // Status is not the creator's to set where a status subresource exists.
    if res.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "pods") => obj["status"] = json!({ "phase": "Pending", "qosClass": "BestEffort" }),
        ("", "namespaces") => {
            obj["status"] = json!({ "phase": "Active" });
            let labels = &mut meta_mut(&mut obj)
                .entry("labels")
                .or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let causes = crd::validate_definition(&obj, &name);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&res.group, &res.kind, &name, &causes));
            }
            obj["status"] = crd::established_status(&obj);
        }
        _ => {}
    }
    if let Some(schema) = &res.schema {
        obj = crd::admit(res, schema, obj, None, &name)?;
    }
    let rv = if dry_run {
        inner.store.current_rv()
    } else {
        inner.store.next_rv()
    };
    let m = meta_mut(&mut obj);
    m.insert("name".into(), json!(name));
    m.insert("uid".into(), json!(store::new_uid()));
    m.insert("resourceVersion".into(), json!(rv.to_string()));
    m.insert("creationTimestamp".into(), json!(store::now_rfc3339()));
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.remove("selfLink");
    if res.has_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if dry_run {
        return Ok(obj);
    }
    inner.store.put(
        &res.storage_key(),
        &namespace,
        &name,
        obj.clone(),
        EventType::Added,
    );
    after_create(inner, res, &obj)?;
    Ok(obj)
}

fn after_create(inner: &mut Inner, res: &ApiResource, obj: &Value) -> Result<(), ApiError> {
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") => builtins::ensure_namespace_defaults(inner, name_of(obj)),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            crd::register(&mut inner.registry, obj);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether the change from `old` to `new` is one that bumps `metadata.generation`: `spec` for
/// kinds with one, everything but metadata and status otherwise.
fn generation_changed(old: &Value, new: &Value) -> bool {
    if old.get("spec").is_some() || new.get("spec").is_some() {
        return old.get("spec") != new.get("spec");
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for k in ["metadata", "status", "kind", "apiVersion"] {
                o.remove(k);
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// Replaces `old` with `new` (a PUT body or a patched object) through `subresource` (None or
/// `status`). A no-op keeps the object and its resourceVersion, as etcd-backed storage does.
pub fn update(
    inner: &mut Inner,
    res: &ApiResource,
    old: &Value,
    mut new: Value,
    subresource: Option<&str>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let gr = res.group_resource();
    let name = name_of(old).to_owned();
    let namespace = namespace_of(old).to_owned();
    if !new.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    let given_name = name_of(&new);
    if !given_name.is_empty() && given_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(given_rv) = meta(&new)["resourceVersion"].as_str()
        && !given_rv.is_empty()
        && given_rv != meta(old)["resourceVersion"].as_str().unwrap_or_default()
    {
        return Err(ApiError::conflict(&gr, &name));
    }
    if subresource == Some("status") {
        let status = new.get("status").cloned();
        let fields = new["metadata"].get("managedFields").cloned();
        new = old.clone();
        if let Some(fields) = fields {
            new["metadata"]["managedFields"] = fields;
        }
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    } else if res.status_subresource {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    new["kind"] = json!(res.kind);
    new["apiVersion"] = json!(res.api_version());
    {
        let old_meta = meta(old).clone();
        let m = meta_mut(&mut new);
        for key in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        // Writers that do not mention managedFields keep the recorded owners.
        if !m.contains_key("managedFields")
            && let Some(fields) = old_meta.get("managedFields")
        {
            m.insert("managedFields".into(), fields.clone());
        }
    }
    builtins::fold_string_data(res, &mut new);
    builtins::check_immutable_data(res, old, &new)?;
    let mut causes = super::meta::validate(&new);
    causes.extend(super::meta::finalizer_problems(old, &new));
    if !causes.is_empty() {
        return Err(ApiError::invalid(&res.group, &res.kind, &name, &causes));
    }
    if res.is_pod() && subresource.is_none() && builtins::pod_spec_change_forbidden(old, &new) {
        return Err(ApiError::invalid(
            "",
            "Pod",
            &name,
            &[Cause::new(
                "spec",
                "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, \
                 `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` \
                 (only additions to existing tolerations)",
            )],
        ));
    }
    if res.group == "apiextensions.k8s.io" && subresource.is_none() {
        let causes = crd::validate_definition(&new, &name);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&res.group, &res.kind, &name, &causes));
        }
        // What the CRD controllers do after a change: accept the new names, record versions.
        crd::refresh_status(&mut new);
    }
    if let Some(schema) = &res.schema {
        new = crd::decode_defaults(schema, &new);
        new = crd::admit(res, schema, new, Some(old), &name)?;
    }
    if res.has_generation && generation_changed(old, &new) {
        let generation = meta(old)["generation"].as_i64().unwrap_or(1) + 1;
        meta_mut(&mut new).insert("generation".into(), json!(generation));
    }
    if new == *old {
        return Ok(new);
    }
    if dry_run {
        return Ok(new);
    }
    let deleting = !meta(&new)["deletionTimestamp"].is_null();
    let finalizers_left = meta(&new)["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let rv = inner.store.next_rv();
    meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
    if deleting && !finalizers_left {
        inner.store.put(
            &res.storage_key(),
            &namespace,
            &name,
            new.clone(),
            EventType::Modified,
        );
        return remove(inner, res, &namespace, &name);
    }
    inner.store.put(
        &res.storage_key(),
        &namespace,
        &name,
        new.clone(),
        EventType::Modified,
    );
    if res.group == "apiextensions.k8s.io" {
        crd::register(&mut inner.registry, &new);
    }
    Ok(new)
}

/// DELETE: with finalizers, marks the object (deletionTimestamp) and keeps it; without, removes
/// it. Returns the object and whether it is gone.
pub fn delete(
    inner: &mut Inner,
    res: &ApiResource,
    namespace: &str,
    name: &str,
    precondition_rv: Option<&str>,
    dry_run: bool,
    orphan: bool,
) -> Result<(Value, bool), ApiError> {
    let gr = res.group_resource();
    let Some(old) = inner
        .store
        .get(&res.storage_key(), namespace, name)
        .cloned()
    else {
        return Err(ApiError::not_found(&gr, name));
    };
    let actual_rv = meta(&old)["resourceVersion"].as_str().unwrap_or_default();
    if let Some(rv) = precondition_rv
        && rv != actual_rv
    {
        return Err(ApiError::precondition_failed(
            &gr,
            name,
            &super::status::FailedPrecondition {
                kind: &res.kind,
                field: "ResourceVersion",
                wanted: rv,
                actual: actual_rv,
            },
        ));
    }
    let has_finalizers = meta(&old)["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if dry_run {
        return Ok((old, !has_finalizers));
    }
    if res.group.is_empty() && res.plural == "namespaces" {
        return builtins::terminate_namespace(inner, old);
    }
    if !has_finalizers {
        if orphan {
            let uid = meta(&old)["uid"].as_str().unwrap_or_default().to_owned();
            gc::orphan(inner, &uid);
        }
        return Ok((remove(inner, res, namespace, name)?, true));
    }
    if !meta(&old)["deletionTimestamp"].is_null() {
        return Ok((old, false));
    }
    let mut new = old.clone();
    let rv = inner.store.next_rv();
    let m = meta_mut(&mut new);
    m.insert("deletionTimestamp".into(), json!(store::now_rfc3339()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    m.insert("resourceVersion".into(), json!(rv.to_string()));
    if res.has_generation {
        let generation = m.get("generation").and_then(Value::as_i64).unwrap_or(1) + 1;
        m.insert("generation".into(), json!(generation));
    }
    inner.store.put(
        &res.storage_key(),
        namespace,
        name,
        new.clone(),
        EventType::Modified,
    );
    Ok((new, false))
}

/// Removes an object for good, with the cascades of namespaces and CRDs.
fn remove(
    inner: &mut Inner,
    res: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let gone = inner
        .store
        .remove(&res.storage_key(), namespace, name)
        .ok_or_else(|| ApiError::not_found(&res.group_resource(), name))?;
    // A CRD takes its custom resources with it (at once, their finalizers notwithstanding).
    if res.group == "apiextensions.k8s.io"
        && let Some(versions) = inner.registry.remove_custom(name)
        && let Some(first) = versions.first()
    {
        let key = first.storage_key();
        let all: Vec<(String, String)> = inner
            .store
            .list(&key, None)
            .map(|o| (namespace_of(o).to_owned(), name_of(o).to_owned()))
            .collect();
        for (ns, n) in all {
            inner.store.remove(&key, &ns, &n);
        }
    }
    if let Some(uid) = gone["metadata"]["uid"].as_str() {
        gc::collect(inner, uid);
    }
    if res.namespaced {
        builtins::finish_namespace_if_empty(inner, namespace);
    }
    Ok(gone)
}

/// An object as served at `res`'s version: custom resources are stored once and served at
/// every version with only `apiVersion` changed (conversion strategy `None`); events.k8s.io
/// Events are converted from the stored core Events.
pub fn as_served(res: &ApiResource, mut obj: Value) -> Value {
    if res.is_events_v1() {
        return builtins::events_from_core(&obj);
    }
    obj["apiVersion"] = json!(res.api_version());
    obj
}

/// A request body in the storage representation of `res`.
pub fn to_storage(res: &ApiResource, obj: Value) -> Value {
    if res.is_events_v1() {
        builtins::events_to_core(&obj)
    } else {
        obj
    }
}
