//! A minimal OpenAPI v3 surface: the `/openapi/v3` index and one document per group/version with
//! a PATCH operation per kind that declares the `fieldValidation` query parameter. That is what
//! kubectl (1.27+) checks before leaving field validation to the server instead of downloading
//! `/openapi/v2` (not served) for client-side validation. Custom resources' schemas are
//! published (for `kubectl explain`); built-in kinds' are not.

use axum::{http::StatusCode, response::Response};
use serde_json::{Map, Value, json};

use super::{Shared, handlers::json_response, status::ApiError};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn index(shared: &Shared) -> Response {
    let groups = shared.lock().registry.groups();
    let mut paths = Map::new();
    for (group, versions) in groups {
        for version in versions {
            let path = gv_path(&group, &version);
            let rv = shared.lock().store.current_rv();
            paths.insert(
                path.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={rv:016X}") }),
            );
        }
    }
    json_response(StatusCode::OK, &json!({ "paths": paths }))
}

pub fn document(shared: &Shared, segments: &[&str]) -> Result<Response, ApiError> {
    let (group, version) = match segments {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return Err(ApiError::no_route()),
    };
    let inner = shared.lock();
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in inner
        .registry
        .all()
        .filter(|r| r.group == group && r.version == version)
    {
        if let Some(schema) = &r.schema {
            schemas.insert(
                schema_name(&r.group, &r.version, &r.kind),
                published(r, schema),
            );
        }
        let prefix = format!("/{}", gv_path(&r.group, &r.version));
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        // Strategic merge is left out on purpose: kubectl would then build its patch from the
        // published schemas, which are not served; without it, it uses its compiled-in types.
        let content_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let content: Map<String, Value> = content_types
            .into_iter()
            .map(|t| (t.to_owned(), json!({ "schema": { "type": "object" } })))
            .collect();
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", r.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
                    "parameters": [
                        { "name": "dryRun", "in": "query", "schema": { "type": "string" } },
                        { "name": "fieldManager", "in": "query", "schema": { "type": "string" } },
                        { "name": "fieldValidation", "in": "query", "schema": { "type": "string" } },
                        { "name": "force", "in": "query", "schema": { "type": "boolean" } },
                    ],
                    "requestBody": { "content": content, "required": true },
                    "responses": { "200": { "description": "OK" } },
                },
            }),
        );
    }
    if paths.is_empty() {
        return Err(ApiError::no_route());
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": "v1.32.0" },
            "paths": paths,
            "components": { "schemas": schemas },
        }),
    ))
}

/// `dev.passport.v1alpha1.AccessPolicy`: the group reversed, as kube-apiserver names CRD schemas.
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// A custom resource's schema as published: the CRD's `openAPIV3Schema` with the standard
/// `apiVersion`, `kind` and `metadata` fields and the GVK extension `kubectl explain` looks for.
fn published(r: &super::resources::ApiResource, schema: &Value) -> Value {
    let mut out = schema.clone();
    out["x-kubernetes-group-version-kind"] =
        json!([{ "group": r.group, "version": r.version, "kind": r.kind }]);
    if !out["properties"].is_object() {
        out["properties"] = json!({});
    }
    let standard = [
        (
            "apiVersion",
            "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.",
        ),
        (
            "kind",
            "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.",
        ),
    ];
    for (field, description) in standard {
        out["properties"][field] = json!({ "type": "string", "description": description });
    }
    out["properties"]["metadata"] = json!({
        "type": "object",
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    });
    out
}
