//! What built-in kinds do beyond storage: the ServiceAccount admission plugin and pod defaults,
//! pod spec immutability, and the per-namespace objects controllers create.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{
    Inner,
    objects::{commit_create, meta, name_of, namespace_of},
    resources::ApiResource,
    status::ApiError,
    status::Cause,
    store,
};

/// What the ServiceAccount admission plugin does before webhooks see a pod.
pub fn default_pod(pod: &mut Value) {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["serviceAccountName"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        spec["serviceAccountName"] = json!("default");
    }
    spec["serviceAccount"] = spec["serviceAccountName"].clone();
    for key in ["restartPolicy", "dnsPolicy", "schedulerName"] {
        if spec[key].is_null() {
            spec[key] = json!(match key {
                "restartPolicy" => "Always",
                "dnsPolicy" => "ClusterFirst",
                _ => "default-scheduler",
            });
        }
    }
    if spec["terminationGracePeriodSeconds"].is_null() {
        spec["terminationGracePeriodSeconds"] = json!(30);
    }
}

/// The ServiceAccount admission plugin: the pod's service account must exist, and unless token
/// automounting is off (on the pod or the account) every container gets the `kube-api-access-*`
/// projected volume at `/var/run/secrets/kubernetes.io/serviceaccount`.
pub fn service_account_admission(inner: &Inner, pod: &mut Value) -> Result<(), ApiError> {
    const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let ns = namespace_of(pod).to_owned();
    let sa_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let Some(sa) = inner.store.get("/serviceaccounts", &ns, &sa_name) else {
        let name = name_of(pod);
        let name = if name.is_empty() {
            meta(pod)["generateName"].as_str().unwrap_or_default()
        } else {
            name
        };
        return Err(ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: error looking up service account {ns}/{sa_name}: \
             serviceaccount \"{sa_name}\" not found"
        )));
    };
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", store::name_suffix());
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let mounts = &mut c["volumeMounts"];
            let taken = mounts
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str() == Some(MOUNT));
            if taken {
                continue;
            }
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            if let Some(items) = mounts.as_array_mut() {
                items.push(json!({ "name": volume, "mountPath": MOUNT, "readOnly": true }));
                mounted = true;
            }
        }
    }
    if mounted {
        let volumes = &mut pod["spec"]["volumes"];
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(items) = volumes.as_array_mut() {
            items.push(json!({ "name": volume, "projected": { "defaultMode": 420, "sources": [
                { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace",
                    "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ] } }));
        }
    }
    Ok(())
}

/// Pod specs are immutable apart from images, activeDeadlineSeconds and tolerations.
pub fn pod_spec_change_forbidden(old: &Value, new: &Value) -> bool {
    let scrub = |spec: &Value| {
        let mut s = spec.clone();
        for list in ["containers", "initContainers"] {
            if let Some(items) = s.get_mut(list).and_then(Value::as_array_mut) {
                for c in items {
                    c["image"] = Value::Null;
                }
            }
        }
        if let Some(o) = s.as_object_mut() {
            o.remove("activeDeadlineSeconds");
            o.remove("tolerations");
        }
        s
    };
    scrub(&old["spec"]) != scrub(&new["spec"])
}

/// The `default` ServiceAccount and `kube-root-ca.crt` ConfigMap controllers create in each
/// namespace; done synchronously here so tests never wait for them.
pub fn ensure_namespace_defaults(inner: &mut Inner, ns: &str) -> Result<(), ApiError> {
    let ca = inner.ca_pem.clone();
    let defaults = [
        (
            "serviceaccounts",
            json!({ "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "default", "namespace": ns } }),
        ),
        (
            "configmaps",
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "kube-root-ca.crt", "namespace": ns },
            "data": { "ca.crt": ca } }),
        ),
    ];
    for (plural, obj) in defaults {
        let Some(res) = inner.registry.find("", "v1", plural).cloned() else {
            continue;
        };
        if inner
            .store
            .get(&res.storage_key(), ns, name_of(&obj))
            .is_none()
        {
            commit_create(inner, &res, obj, false)?;
        }
    }
    Ok(())
}

/// Secrets: `stringData` is write-only; its entries are base64-encoded into `data`.
pub fn fold_string_data(res: &ApiResource, obj: &mut Value) {
    if !(res.group.is_empty() && res.plural == "secrets") {
        return;
    }
    let Some(string_data) = obj
        .as_object_mut()
        .and_then(|o| o.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
    else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (key, value) in string_data {
        obj["data"][key.as_str()] = json!(STANDARD.encode(value.as_str().unwrap_or_default()));
    }
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data (and stay immutable).
pub fn check_immutable_data(res: &ApiResource, old: &Value, new: &Value) -> Result<(), ApiError> {
    let kinds = res.group.is_empty() && matches!(res.plural.as_str(), "configmaps" | "secrets");
    if !kinds || old["immutable"] != json!(true) {
        return Ok(());
    }
    let mut causes = Vec::new();
    for field in ["data", "binaryData"] {
        if old[field] != new[field] {
            causes.push(Cause::new(
                field,
                "Forbidden: field is immutable when `immutable` is set",
            ));
        }
    }
    if new["immutable"] != json!(true) {
        causes.push(Cause::new(
            "immutable",
            "Forbidden: field is immutable when `immutable` is set",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid("", &res.kind, name_of(old), &causes))
}

/// events.k8s.io/v1 field -> core/v1 field (the rest share names).
const EVENT_FIELDS: [(&str, &str); 8] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename_fields(obj: &Value, to_core: bool, api_version: &str) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        for (v1, core) in EVENT_FIELDS {
            let (from, to) = if to_core { (v1, core) } else { (core, v1) };
            if let Some(value) = map.remove(from) {
                map.insert(to.to_owned(), value);
            }
        }
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!("Event"));
    }
    out
}

/// An events.k8s.io/v1 Event as the core/v1 Event it is stored as.
pub fn events_to_core(obj: &Value) -> Value {
    rename_fields(obj, true, "v1")
}

/// A stored core/v1 Event as served by events.k8s.io/v1.
pub fn events_from_core(obj: &Value) -> Value {
    rename_fields(obj, false, "events.k8s.io/v1")
}

/// Namespace deletion: the namespace turns Terminating, everything in it is deleted (objects
/// with finalizers wait for them), and the namespace goes once it is empty.
pub fn terminate_namespace(inner: &mut Inner, mut ns: Value) -> Result<(Value, bool), ApiError> {
    let name = name_of(&ns).to_owned();
    if ns["metadata"]["deletionTimestamp"].is_null() {
        let rv = inner.store.next_rv();
        ns["metadata"]["deletionTimestamp"] = json!(store::now_rfc3339());
        ns["metadata"]["resourceVersion"] = json!(rv.to_string());
        ns["spec"]["finalizers"] = json!(["kubernetes"]);
        ns["status"]["phase"] = json!("Terminating");
        inner.store.put(
            "/namespaces",
            "",
            &name,
            ns.clone(),
            store::EventType::Modified,
        );
    }
    let contents: Vec<(ApiResource, String)> = inner
        .store
        .all()
        .filter(|((_, n, _), _)| *n == name)
        .filter_map(|((storage, _, obj_name), _)| {
            inner
                .registry
                .all()
                .find(|r| r.storage_override.is_none() && r.storage_key() == *storage)
                .map(|r| (r.clone(), obj_name.clone()))
        })
        .collect();
    for (obj_res, obj_name) in contents {
        // Already gone through a cascade, or waiting for its finalizers: both fine.
        let _ = super::objects::delete(inner, &obj_res, &name, &obj_name, None, false, false);
    }
    if let Some(gone) = finish_namespace_if_empty(inner, &name) {
        return Ok((gone, true));
    }
    // The last removal in the loop may already have taken the namespace away.
    Ok(match inner.store.get("/namespaces", "", &name) {
        Some(current) => (current.clone(), false),
        None => (ns, true),
    })
}

/// Removes a Terminating namespace once nothing is left in it; returns it when removed.
pub fn finish_namespace_if_empty(inner: &mut Inner, ns: &str) -> Option<Value> {
    let terminating = inner
        .store
        .get("/namespaces", "", ns)
        .is_some_and(|n| !n["metadata"]["deletionTimestamp"].is_null());
    let empty = !inner.store.all().any(|((_, n, _), _)| n == ns);
    if terminating && empty {
        inner.store.remove("/namespaces", "", ns)
    } else {
        None
    }
}

/// What creating into a Terminating namespace answers.
pub fn namespace_terminating(resource: &str, name: &str, ns: &str) -> ApiError {
    ApiError::custom(
        403,
        "Forbidden",
        format!(
            "{resource} \"{name}\" is forbidden: unable to create new content in namespace {ns} \
             because it is being terminated"
        ),
        Some(json!({ "name": ns, "kind": "namespaces", "causes": [{
            "reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"),
            "field": "metadata.namespace" }] })),
    )
}
