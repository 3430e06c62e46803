//! PATCH bodies: JSON patch (RFC 6902, `test` included), JSON merge patch (RFC 7386), a
//! strategic merge patch subset for built-ins. Server-side apply lives in `apply`.

use serde_json::{Map, Value};

use super::status::ApiError;

/// The patch flavours, by request `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }
}

/// Parses an apply body (YAML, of which JSON is a subset).
pub fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Applies `body` of `kind` to `current`.
pub fn apply(kind: PatchType, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            for op in &ops.0 {
                // As in kube-apiserver's JSON patch library, testing for null passes when the
                // path is absent (kube-runtime's finalizer helper relies on it).
                if let json_patch::PatchOperation::Test(test) = op
                    && test.value.is_null()
                    && doc.pointer(test.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, std::slice::from_ref(op))
                    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
            }
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut doc, &patch);
        }
        PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            strategic_merge(&mut doc, &patch);
        }
        PatchType::Apply => {
            return Err(ApiError::internal(
                "apply patches go through the server-side apply module",
            ));
        }
    }
    Ok(doc)
}

/// Lists of built-in kinds that strategic merge patches merge by `name` instead of replacing.
const MERGE_BY_NAME: [&str; 7] = [
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "volumeMounts",
    "env",
    "imagePullSecrets",
];

/// Strategic merge: a merge patch whose well-known lists merge by `name`, honouring the
/// `$patch: delete|replace` directive and dropping the ordering directives.
pub fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *doc = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *doc = Value::Object(replaced);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(target) = doc else { return };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(Value::Array(current)), Value::Array(items))
                if MERGE_BY_NAME.contains(&key.as_str()) =>
            {
                merge_list_by_name(current, items);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                if value.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                } else {
                    strategic_merge(existing, value);
                }
            }
            _ => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, value);
                if value.is_object() {
                    target.insert(key.clone(), fresh);
                } else {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
    }
}

fn merge_list_by_name(current: &mut Vec<Value>, items: &[Value]) {
    for item in items {
        let name = item.get("name").cloned();
        let position = current
            .iter()
            .position(|c| name.is_some() && c.get("name") == name.as_ref());
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (Some(i), false) => strategic_merge(&mut current[i], item),
            (None, true) => {}
            (None, false) => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, item);
                current.push(fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut pod = json!({ "spec": { "containers": [
            { "name": "a", "image": "a:1", "env": [{ "name": "X", "value": "1" }] },
            { "name": "b", "image": "b:1" } ] } });
        let patch = json!({ "spec": {
            "$setElementOrder/containers": [{ "name": "a" }, { "name": "b" }],
            "containers": [
                { "name": "a", "env": [{ "name": "Y", "value": "2" }] },
                { "name": "b", "$patch": "delete" } ] } });
        strategic_merge(&mut pod, &patch);
        assert_eq!(
            pod,
            json!({ "spec": { "containers": [
                { "name": "a", "image": "a:1", "env": [{ "name": "X", "value": "1" }, { "name": "Y", "value": "2" }] } ] } })
        );
    }

    #[test]
    fn testing_an_absent_path_for_null_passes() -> Result<(), ApiError> {
        let doc = json!({ "metadata": {} });
        let patched = apply(
            PatchType::Json,
            &doc,
            br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                 {"op":"add","path":"/metadata/finalizers","value":["f"]}]"#,
        )?;
        assert_eq!(patched["metadata"]["finalizers"], json!(["f"]));
        Ok(())
    }

    #[test]
    fn json_patch_test_failure_is_unprocessable() {
        let doc = json!({ "data": { "a": "1" } });
        let err = apply(
            PatchType::Json,
            &doc,
            br#"[{"op":"test","path":"/data/a","value":"2"}]"#,
        );
        assert!(matches!(err, Err(ApiError { code: 422, .. })));
    }
}
