//! CustomResourceDefinitions: checking a definition, serving its kinds, and the custom-resource
//! write path (prune unknown fields, apply defaults, validate against `openAPIV3Schema` + CEL).

use serde_json::{Value, json};

use crate::schema;

use super::{
    resources::{ApiResource, Registry},
    status::{ApiError, Cause},
    store,
};

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Problems with a definition, as `Invalid` causes (empty when it can be served).
pub fn validate_definition(crd: &Value, name: &str) -> Vec<Cause> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let mut causes = Vec::new();
    if group.is_empty() {
        causes.push(Cause::new("spec.group", "Required value"));
    }
    if plural.is_empty() {
        causes.push(Cause::new("spec.names.plural", "Required value"));
    }
    if spec["names"]["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::new("spec.names.kind", "Required value"));
    }
    if name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        causes.push(Cause::new(
            "spec.scope",
            format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                spec["scope"]
            ),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "spec.versions",
            "Required value: must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::new(
            "spec.versions",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                json!(versions)
            ),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let schema = &v["schema"]["openAPIV3Schema"];
        if schema.is_null() {
            causes.push(Cause::new(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required",
            ));
            continue;
        }
        let problems = schema::structural_errors(schema)
            .into_iter()
            .chain(schema::cel_compile_errors(schema));
        for problem in problems {
            causes.push(Cause::new(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                problem,
            ));
        }
    }
    causes
}

/// The status a definition gets once accepted: names accepted and established at once.
pub fn established_status(crd: &Value) -> Value {
    let now = store::now_rfc3339();
    let names = &crd["spec"]["names"];
    let mut accepted = names.clone();
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        accepted["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == json!(true))
        .map(|v| v["name"].clone())
        .collect();
    json!({
        "conditions": [
            { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
              "message": "no conflicts found", "lastTransitionTime": now },
            { "type": "Established", "status": "True", "reason": "InitialNamesAccepted",
              "message": "the initial names have been accepted", "lastTransitionTime": now },
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

/// After an update: `acceptedNames` follow the spec, `storedVersions` gain the storage version.
pub fn refresh_status(crd: &mut Value) {
    let fresh = established_status(crd);
    if crd["status"].is_null() {
        crd["status"] = fresh;
        return;
    }
    crd["status"]["acceptedNames"] = fresh["acceptedNames"].clone();
    let mut stored: Vec<Value> = crd["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for v in fresh["storedVersions"].as_array().into_iter().flatten() {
        if !stored.contains(v) {
            stored.push(v.clone());
        }
    }
    crd["status"]["storedVersions"] = Value::Array(stored);
}

/// Serves (or re-serves, after an update) the definition's served versions.
pub fn register(registry: &mut Registry, crd: &Value) {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_owned();
    let crd_name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let resources = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] != json!(false))
        .map(|v| ApiResource {
            group: spec["group"].as_str().unwrap_or_default().to_owned(),
            version: v["name"].as_str().unwrap_or_default().to_owned(),
            plural: names["plural"].as_str().unwrap_or_default().to_owned(),
            singular: names["singular"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map_or_else(|| kind.to_lowercase(), str::to_owned),
            kind: kind.clone(),
            namespaced: spec["scope"] == json!("Namespaced"),
            short_names: str_list(&names["shortNames"]),
            categories: str_list(&names["categories"]),
            status_subresource: !v["subresources"]["status"].is_null(),
            has_generation: true,
            extra_subresources: Vec::new(),
            schema: Some(v["schema"]["openAPIV3Schema"].clone()),
            columns: v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            crd: Some(crd_name.clone()),
            storage_override: None,
        })
        .collect::<Vec<_>>();
    // Discovery lists versions by Kubernetes version priority; the first is the preferred one.
    let mut resources = resources;
    resources.sort_by_key(|r| std::cmp::Reverse(kube::core::Version::parse(&r.version).priority()));
    registry.set_custom(&crd_name, resources);
}

/// Pruning and defaulting applied when a request body is decoded (before admission).
pub fn decode_defaults(schema: &Value, obj: &Value) -> Value {
    let mut out = obj.clone();
    prune_keeping_meta(schema, &mut out);
    schema::apply_defaults(schema, &out)
}

/// apiVersion, kind and metadata are never pruned, whatever the schema says.
fn prune_keeping_meta(schema: &Value, obj: &mut Value) {
    let kept: Vec<(&str, Value)> = ["apiVersion", "kind", "metadata"]
        .into_iter()
        .filter_map(|k| obj.get(k).map(|v| (k, v.clone())))
        .collect();
    schema::prune(schema, obj);
    for (k, v) in kept {
        obj[k] = v;
    }
}

/// Prunes, defaults and validates a custom resource after admission; 422 with the field causes
/// when the schema or a CEL rule refuses it.
pub fn admit(
    res: &ApiResource,
    schema: &Value,
    obj: Value,
    old: Option<&Value>,
    name: &str,
) -> Result<Value, ApiError> {
    let mut obj = schema::apply_defaults(schema, &obj);
    prune_keeping_meta(schema, &mut obj);
    match schema::validate(schema, &obj, old) {
        Ok(()) => Ok(obj),
        Err(errors) => {
            let causes: Vec<Cause> = errors
                .into_iter()
                .map(|e| Cause::new(e.field, e.message))
                .collect();
            Err(ApiError::invalid(&res.group, &res.kind, name, &causes))
        }
    }
}

/// Paths of the fields `schema` does not know (what pruning drops), for `fieldValidation=Strict`.
pub fn unknown_fields(schema: &Value, obj: &Value) -> Vec<String> {
    let mut pruned = obj.clone();
    schema::prune(schema, &mut pruned);
    let mut out = Vec::new();
    diff_paths(obj, &pruned, "", &mut out);
    out
}

fn diff_paths(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, value) in b {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match a.get(key) {
                    None => out.push(child),
                    Some(kept) => diff_paths(value, kept, &child, out),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                diff_paths(bv, av, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `fieldValidation=Strict`: unknown fields are a 400 instead of being dropped silently.
pub fn check_strict(res: &ApiResource, strict: bool, obj: &Value) -> Result<(), ApiError> {
    let Some(schema) = res.schema.as_ref().filter(|_| strict) else {
        return Ok(());
    };
    let unknown = unknown_fields(schema, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "strict decoding error: {}",
        list.join(", ")
    )))
}
