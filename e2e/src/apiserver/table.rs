//! Alternative representations: `meta.k8s.io/v1` Table answers for `kubectl get` (a CRD's
//! `additionalPrinterColumns` evaluated by a small JSONPath subset) and PartialObjectMetadata
//! answers for metadata-only clients (kube-rs `get_metadata`, `metadata_watcher`).

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::resources::ApiResource;

/// Whether the client asked for a Table (kubectl lists `as=Table` first in `Accept`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// How objects are sent back: as stored, as metadata only, or as Table rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Full,
    Metadata,
    Table,
}

impl Shape {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if wanted(headers) {
            Self::Table
        } else if metadata_wanted(headers) {
            Self::Metadata
        } else {
            Self::Full
        }
    }

    /// One object in this shape (a Table has a single row).
    pub fn one(self, res: &ApiResource, obj: Value, resource_version: u64) -> Value {
        match self {
            Self::Full => obj,
            Self::Metadata => partial(&obj),
            Self::Table => render(res, &[obj], resource_version),
        }
    }
}

/// Whether the client asked for metadata only (`as=PartialObjectMetadata[List]`).
pub fn metadata_wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=PartialObjectMetadata"))
}

/// An object reduced to its metadata.
pub fn partial(obj: &Value) -> Value {
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"] })
}

/// The columns of `res`: Name, then the CRD's printer columns (Age when it declares none).
fn columns(res: &ApiResource) -> Vec<Value> {
    if res.plural == "events" && res.crd.is_none() {
        // kubectl's event table: no Name column unless -o wide.
        let mut name = column("Name", "string", ".metadata.name", 1);
        name["format"] = json!("name");
        return vec![
            column("Last Seen", "string", "eventLastSeen", 0),
            column("Type", "string", ".type", 0),
            column("Reason", "string", ".reason", 0),
            column("Object", "string", "eventObject", 0),
            column("Message", "string", "eventMessage", 0),
            name,
        ];
    }
    let mut cols = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    if res.columns.is_empty() {
        cols.extend(builtin_columns(res));
        cols.push(json!({
            "name": "Age", "type": "date", "format": "", "priority": 0,
            "jsonPath": ".metadata.creationTimestamp",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
        }));
    } else {
        cols.extend(res.columns.iter().cloned());
    }
    cols
}

fn column(name: &str, type_: &str, source: &str, priority: i64) -> Value {
    let mut c = json!({ "name": name, "type": type_, "format": "", "priority": priority, "description": "" });
    if source.starts_with('.') {
        c["jsonPath"] = json!(source);
    } else {
        c["compute"] = json!(source);
    }
    c
}

/// The columns kube-apiserver prints for the built-in kinds (besides Name and Age).
fn builtin_columns(res: &ApiResource) -> Vec<Value> {
    if !res.group.is_empty()
        && res.group != "coordination.k8s.io"
        && res.group != "admissionregistration.k8s.io"
    {
        return Vec::new();
    }
    match res.plural.as_str() {
        "pods" => vec![
            column("Ready", "string", "podReady", 0),
            column("Status", "string", "podStatus", 0),
            column("Restarts", "string", "podRestarts", 0),
            column("IP", "string", ".status.podIP", 1),
            column("Node", "string", ".spec.nodeName", 1),
        ],
        "namespaces" => vec![column("Status", "string", ".status.phase", 0)],
        "configmaps" => vec![column("Data", "integer", "dataCount", 0)],
        "secrets" => vec![
            column("Type", "string", ".type", 0),
            column("Data", "integer", "dataCount", 0),
        ],
        "leases" => vec![column("Holder", "string", ".spec.holderIdentity", 0)],
        "mutatingwebhookconfigurations" => vec![column("Webhooks", "integer", "webhooksCount", 0)],
        _ => Vec::new(),
    }
}

/// Cells that are counts or summaries rather than a field.
fn compute(obj: &Value, what: &str) -> Value {
    let len = |v: &Value| v.as_array().map_or(0, Vec::len) + v.as_object().map_or(0, |m| m.len());
    match what {
        "podReady" => {
            let statuses = obj["status"]["containerStatuses"].as_array();
            let ready = statuses
                .into_iter()
                .flatten()
                .filter(|c| c["ready"] == json!(true))
                .count();
            json!(format!("{ready}/{}", len(&obj["spec"]["containers"])))
        }
        "podStatus" => {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["status"]["phase"].clone()
            } else {
                json!("Terminating")
            }
        }
        "podRestarts" => {
            let restarts: i64 = obj["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum();
            json!(restarts.to_string())
        }
        "dataCount" => json!(len(&obj["data"]) + len(&obj["binaryData"])),
        // Rows are rendered from the stored core Event, whichever API was asked.
        "eventLastSeen" => {
            let when = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|k| {
                    obj[*k]
                        .as_str()
                        .or_else(|| obj["series"]["lastObservedTime"].as_str())
                });
            json!(when.map_or_else(|| "<unknown>".to_owned(), age))
        }
        "eventObject" => {
            let involved = if obj["involvedObject"].is_null() {
                &obj["regarding"]
            } else {
                &obj["involvedObject"]
            };
            json!(format!(
                "{}/{}",
                involved["kind"].as_str().unwrap_or_default().to_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            ))
        }
        "eventMessage" => {
            if obj["message"].is_null() {
                obj["note"].clone()
            } else {
                obj["message"].clone()
            }
        }
        "webhooksCount" => json!(len(&obj["webhooks"])),
        _ => Value::Null,
    }
}

/// A Table of `objects`.
pub fn render(res: &ApiResource, objects: &[Value], resource_version: u64) -> Value {
    let cols = columns(res);
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = cols
                .iter()
                .map(|c| {
                    if c["format"] == json!("name") && c["jsonPath"].is_null() {
                        return obj["metadata"]["name"].clone();
                    }
                    if let Some(what) = c["compute"].as_str() {
                        return compute(obj, what);
                    }
                    let path = c["jsonPath"].as_str().unwrap_or_default();
                    let value = eval(obj, path);
                    match (c["type"].as_str(), value) {
                        (_, None) => Value::Null,
                        (Some("date"), Some(v)) => json!(age(v.as_str().unwrap_or_default())),
                        (Some("string"), Some(Value::String(s))) => json!(s),
                        (Some("string"), Some(other)) => json!(other.to_string()),
                        (_, Some(v)) => v,
                    }
                })
                .collect();
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            })
        })
        .collect();
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or_default(),
                "description": c["description"].as_str().unwrap_or_default(),
                "priority": c["priority"].as_i64().unwrap_or(0),
            })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version.to_string() },
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// Evaluates `.a.b[0].c` and `.a[?(@.k=="v")].c` (the forms printer columns use).
pub fn eval(obj: &Value, path: &str) -> Option<Value> {
    let mut current = obj.clone();
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('.').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inside = &after[..end];
            rest = after[end + 1..].trim_start_matches('.');
            if let Some(filter) = inside
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (key, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                current = current
                    .as_array()?
                    .iter()
                    .find(|item| {
                        eval(item, key.trim())
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .as_deref()
                            == Some(value)
                    })?
                    .clone();
            } else {
                current = current.get(inside.parse::<usize>().ok()?)?.clone();
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            current = current.get(&rest[..end])?.clone();
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(current)
}

/// How long ago `timestamp` was, as kubectl prints ages (`45s`, `3m10s`, `5h`, `2d`).
pub fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86400 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({ "spec": { "n": 3, "items": [{ "a": "x" }] },
            "status": { "conditions": [{ "type": "A", "status": "False" }, { "type": "Ready", "status": "True" }] } });
        assert_eq!(eval(&obj, ".spec.n"), Some(json!(3)));
        assert_eq!(eval(&obj, ".spec.items[0].a"), Some(json!("x")));
        assert_eq!(
            eval(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(eval(&obj, ".spec.missing"), None);
    }
}
