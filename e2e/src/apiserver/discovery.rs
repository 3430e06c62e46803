//! Discovery: `/version`, `/api`, `/apis`, `/apis/{group}` and the APIResourceLists. Only the
//! legacy (unaggregated) form is served; clients asking for aggregated discovery get it with
//! `Content-Type: application/json` and fall back, as client-go does against older servers.

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::{Shared, handlers::json_response, resources::VERBS, status::ApiError};

pub fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "32", "emulationMajor": "1", "emulationMinor": "32",
            "gitVersion": "v1.32.0-passport-stack", "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64",
        }),
    )
}

pub fn root_paths(shared: &Shared) -> Response {
    let mut paths = vec![
        "/.well-known/openid-configuration".to_owned(),
        "/api".into(),
        "/api/v1".into(),
        "/apis".into(),
        "/healthz".into(),
        "/livez".into(),
        "/openid/v1/jwks".into(),
        "/readyz".into(),
        "/version".into(),
    ];
    for (group, versions) in shared.lock().registry.groups() {
        if group.is_empty() {
            continue;
        }
        paths.push(format!("/apis/{group}"));
        paths.extend(versions.iter().map(|v| format!("/apis/{group}/{v}")));
    }
    json_response(StatusCode::OK, &json!({ "paths": paths }))
}

pub fn core_versions(shared: &Shared) -> Response {
    let addr = shared.url().trim_start_matches("https://").to_owned();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": addr }],
        }),
    )
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({ "name": group, "versions": versions, "preferredVersion": versions.first() })
}

pub fn groups(shared: &Shared) -> Response {
    let groups: Vec<Value> = shared
        .lock()
        .registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_json(g, v))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
    )
}

pub fn group(shared: &Shared, name: &str) -> Result<Response, ApiError> {
    let groups = shared.lock().registry.groups();
    let (g, v) = groups
        .iter()
        .find(|(g, _)| g == name && !g.is_empty())
        .ok_or_else(ApiError::no_route)?;
    let mut body = group_json(g, v);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &body))
}

pub fn resources(shared: &Shared, group: &str, version: &str) -> Result<Response, ApiError> {
    let inner = shared.lock();
    let mut list = Vec::new();
    for r in inner
        .registry
        .all()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        if r.status_subresource {
            list.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        for sub in &r.extra_subresources {
            list.push(json!({
                "name": format!("{}/{}", r.plural, sub.name), "singularName": "",
                "namespaced": r.namespaced, "group": sub.group, "version": "v1",
                "kind": sub.kind, "verbs": sub.verbs,
            }));
        }
    }
    if list.is_empty() {
        return Err(ApiError::no_route());
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": list,
        }),
    ))
}
