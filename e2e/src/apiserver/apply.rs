//! Server-side apply, reduced to what controllers and `kubectl apply --server-side` observe:
//! each Apply manager's fields are recorded in `metadata.managedFields` (FieldsV1); re-applying
//! without a field it applied before removes it (unless another applier owns it); applying a
//! different value to a field another applier owns is a 409 conflict unless `force=true`; a map
//! the removal leaves empty goes too, unless something else still sets a field in it.
//! Lists are atomic (no merge keys), and Update operations are not recorded as managers.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{patch, status::ApiError, store};

type Path = Vec<String>;

/// Metadata that identifies the object rather than being owned by a manager.
const IDENTITY: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];

/// The leaf paths of an applied configuration (maps are walked, everything else is a leaf).
fn paths(applied: &Value, status_only: bool) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = applied.as_object() else {
        return out;
    };
    for (key, value) in map {
        let skip = match key.as_str() {
            "apiVersion" | "kind" => true,
            "status" => !status_only,
            _ => status_only,
        };
        if skip {
            continue;
        }
        walk(value, vec![key.clone()], key == "metadata", &mut out);
    }
    out
}

fn walk(value: &Value, path: Path, in_metadata: bool, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                if in_metadata && path.len() == 1 && IDENTITY.contains(&key.as_str()) {
                    continue;
                }
                let mut p = path.clone();
                p.push(key.clone());
                walk(child, p, in_metadata, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents.iter().try_fold(obj, |v, k| v.get_mut(k));
    if let Some(Value::Object(map)) = parent {
        map.remove(last);
    }
}

/// FieldsV1: `{"f:data": {"f:key": {}}}`.
fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for key in path {
            let entry = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            node = next;
        }
    }
    Value::Object(root)
}

fn from_fields_v1(fields: &Value, prefix: &Path, out: &mut BTreeSet<Path>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> =
        map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (key, child) in children {
        let mut p = prefix.clone();
        p.push(key.trim_start_matches("f:").to_owned());
        from_fields_v1(child, &p, out);
    }
}

struct Entry {
    manager: String,
    subresource: String,
    paths: BTreeSet<Path>,
}

fn apply_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["operation"] == json!("Apply"))
        .map(|e| {
            let mut paths = BTreeSet::new();
            from_fields_v1(&e["fieldsV1"], &Vec::new(), &mut paths);
            Entry {
                manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
                paths,
            }
        })
        .collect()
}

/// Applies `body` as `manager` to `current` (None: the object does not exist yet) through
/// `subresource`; returns the object to store, with `managedFields` updated.
pub fn apply(
    current: Option<&Value>,
    body: &[u8],
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    api_version: &str,
) -> Result<Value, ApiError> {
    let applied = patch::parse_apply(body)?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration is not an object",
        ));
    }
    let status_only = subresource == Some("status");
    let subresource = subresource.unwrap_or_default();
    let mine = paths(&applied, status_only);
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let entries = apply_entries(&base);
    let others: BTreeSet<&Path> = entries
        .iter()
        .filter(|e| e.manager != manager && e.subresource == subresource)
        .flat_map(|e| &e.paths)
        .collect();

    let mut conflicts = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.manager != manager && e.subresource == subresource)
    {
        for path in mine.intersection(&e.paths) {
            if get(&base, path) != get(&applied, path) {
                conflicts.push((e.manager.clone(), format!(".{}", path.join("."))));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }

    let mut merged = base.clone();
    let mut incoming = applied.clone();
    if let Some(m) = incoming.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if status_only {
        incoming = json!({ "status": incoming.get("status").cloned().unwrap_or(Value::Null) });
    }
    patch::strategic_merge(&mut merged, &incoming);
    let previously: BTreeSet<Path> = entries
        .iter()
        .filter(|e| e.manager == manager && e.subresource == subresource)
        .flat_map(|e| e.paths.iter().cloned())
        .collect();
    // A map is owned with its members (FieldsV1's `.`): one left empty by the removal goes
    // too, unless the applied configuration or another applier still has something in it.
    let kept = |parent: &[String]| {
        mine.iter()
            .chain(others.iter().copied())
            .any(|p| p.starts_with(parent))
    };
    for path in previously.difference(&mine) {
        if !others.contains(path) {
            remove(&mut merged, path);
            for depth in (1..path.len()).rev() {
                let parent = &path[..depth];
                let empty = get(&merged, parent)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty);
                if !empty || kept(parent) {
                    break;
                }
                remove(&mut merged, parent);
            }
        }
    }

    // Forced conflicts move ownership: the losers no longer own those fields.
    let taken: BTreeSet<&Path> = mine.iter().collect();
    let mut fields: Vec<Value> = merged["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            !(e["manager"] == json!(manager)
                && e["operation"] == json!("Apply")
                && e["subresource"].as_str().unwrap_or_default() == subresource)
        })
        .map(|mut e| {
            if e["operation"] == json!("Apply")
                && e["subresource"].as_str().unwrap_or_default() == subresource
            {
                let mut kept = BTreeSet::new();
                from_fields_v1(&e["fieldsV1"], &Vec::new(), &mut kept);
                kept.retain(|p| !taken.contains(p));
                e["fieldsV1"] = to_fields_v1(&kept);
            }
            e
        })
        .collect();
    let mut entry = json!({
        "manager": manager, "operation": "Apply", "apiVersion": api_version,
        "time": store::now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&mine),
    });
    if !subresource.is_empty() {
        entry["subresource"] = json!(subresource);
    }
    fields.push(entry);
    merged["metadata"]["managedFields"] = Value::Array(fields);
    Ok(merged)
}

fn conflict_error(conflicts: &[(String, String)]) -> ApiError {
    let n = conflicts.len();
    let plural = if n == 1 { "conflict" } else { "conflicts" };
    let listed: Vec<String> = conflicts
        .iter()
        .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
        .collect();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", listed.join(""))
    } else {
        format!("Apply failed with {n} {plural}: {}", listed.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, f)| json!({ "reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f }))
        .collect();
    ApiError::custom(409, "Conflict", message, Some(json!({ "causes": causes })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reapplying_without_a_field_removes_it_and_others_conflict() -> Result<(), ApiError> {
        let first = apply(
            None,
            br#"{"metadata":{"name":"a"},"data":{"x":"1","y":"2"}}"#,
            "m1",
            false,
            None,
            "v1",
        )?;
        let second = apply(
            Some(&first),
            br#"{"metadata":{"name":"a"},"data":{"x":"1"}}"#,
            "m1",
            false,
            None,
            "v1",
        )?;
        assert_eq!(second["data"], json!({ "x": "1" }));
        let clash = apply(
            Some(&second),
            br#"{"metadata":{"name":"a"},"data":{"x":"9"}}"#,
            "m2",
            false,
            None,
            "v1",
        );
        assert!(matches!(clash, Err(ApiError { code: 409, .. })));
        let forced = apply(
            Some(&second),
            br#"{"metadata":{"name":"a"},"data":{"x":"9"}}"#,
            "m2",
            true,
            None,
            "v1",
        )?;
        assert_eq!(forced["data"]["x"], "9");
        // m1 lost x: re-applying without it now leaves m2's value alone.
        let third = apply(
            Some(&forced),
            br#"{"metadata":{"name":"a"}}"#,
            "m1",
            false,
            None,
            "v1",
        )?;
        assert_eq!(third["data"]["x"], "9");
        Ok(())
    }

    #[test]
    fn a_map_left_empty_by_the_removal_goes_with_its_fields() -> Result<(), ApiError> {
        let apply_status = |current: &Value, manager: &str, status: &str| {
            let body = format!(r#"{{"metadata":{{"name":"a"}},"status":{status}}}"#);
            apply(
                Some(current),
                body.as_bytes(),
                manager,
                false,
                Some("status"),
                "v1",
            )
        };
        let created = json!({"metadata": {"name": "a"}, "spec": {"x": 1}});
        let first = apply_status(
            &created,
            "m1",
            r#"{"ready":true,"publication":{"url":"u","keys":["k"]}}"#,
        )?;
        let second = apply_status(&first, "m1", r#"{"ready":true}"#)?;
        assert_eq!(second["status"], json!({ "ready": true }));
        assert_eq!(
            second["spec"],
            json!({ "x": 1 }),
            "the spec is not the status's"
        );
        // A map another applier still sets a field in stays, with that field.
        let shared = apply_status(&first, "m2", r#"{"publication":{"note":"n"}}"#)?;
        let third = apply_status(&shared, "m1", r#"{"ready":true}"#)?;
        assert_eq!(third["status"]["publication"], json!({ "note": "n" }));
        Ok(())
    }
}
