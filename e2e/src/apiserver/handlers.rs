//! Request routing (kube-apiserver's URL layout) and the resource verbs: get, list, create,
//! update, patch, delete and deletecollection. Watch, discovery, tokens and admission live in
//! their own modules.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Shared, apply, crd, discovery, objects, openapi,
    patch::{self, PatchType},
    protobuf,
    reads::{self, selected},
    resources::ApiResource,
    status::{self, ApiError, Cause, FailedPrecondition},
    table, token, watch, webhooks,
};

pub type Query = HashMap<String, String>;

/// A JSON answer.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A request for a resource, parsed from the path.
pub struct Target {
    pub res: ApiResource,
    /// The resource writes go through (differs from `res` for events.k8s.io Events).
    pub write: ApiResource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Who is calling: the kubeconfig's token is the cluster admin, a token this server issued is
/// its service account. Nothing is refused (no authorization), this is for AdmissionReview.
pub fn user_info(shared: &Shared, headers: &HeaderMap) -> Value {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if let Some(issuer) = shared.issuer.get()
        && let Ok(claims) = crate::oidc::verify_with_jwks(bearer, &issuer.jwks(), issuer.url())
    {
        let sub = claims["sub"].as_str().unwrap_or_default();
        let ns = claims["kubernetes.io"]["namespace"]
            .as_str()
            .unwrap_or_default();
        return json!({
            "username": sub,
            "uid": claims["kubernetes.io"]["serviceaccount"]["uid"],
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
        });
    }
    json!({ "username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"] })
}

pub async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Query = uri
        .query()
        .and_then(|q| parse_query(q).ok())
        .unwrap_or_default();
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let result = route(&shared, &method, &segments, &query, &headers, &body).await;
    match result {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

fn parse_query(q: &str) -> Result<Query, ApiError> {
    axum::extract::Query::<Query>::try_from_uri(
        &format!("/?{q}")
            .parse::<Uri>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
    )
    .map(|axum::extract::Query(q)| q)
    .map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    segments: &[&str],
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (group, version, rest) = match segments {
        [] => return Ok(discovery::root_paths(shared)),
        ["version"] => return Ok(discovery::version()),
        ["healthz" | "readyz" | "livez", ..] => {
            return Ok((StatusCode::OK, "ok").into_response());
        }
        [".well-known", "openid-configuration"] => return Ok(token::openid_configuration(shared)),
        ["openid", "v1", "jwks"] => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            return Ok(token::jwks(shared, accept));
        }
        ["api"] => return Ok(discovery::core_versions(shared)),
        ["openapi", "v3"] => return Ok(openapi::index(shared)),
        ["openapi", "v3", rest @ ..] => return openapi::document(shared, rest),
        ["apis"] => return Ok(discovery::groups(shared)),
        ["apis", group] => return discovery::group(shared, group),
        ["api", "v1"] => return discovery::resources(shared, "", "v1"),
        ["apis", group, version] => return discovery::resources(shared, group, version),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return Ok((StatusCode::NOT_FOUND, "404 page not found").into_response());
        }
    };
    let target = parse_target(shared, group, version, rest)?;
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let strict = query.get("fieldValidation").is_some_and(|v| v == "Strict");
    match (method.clone(), &target.name, target.subresource.as_deref()) {
        (Method::GET, None, None) => {
            if query.get("watch").is_some_and(|v| v == "true" || v == "1") {
                watch::watch(shared, &target, query, table::Shape::from_headers(headers))
            } else {
                reads::list(shared, &target, query, headers)
            }
        }
        (Method::GET, Some(name), None | Some("status")) => {
            reads::get(shared, &target, name, headers)
        }
        (Method::POST, None, None) => {
            let body = parse_body(headers, body)?;
            crd::check_strict(&target.res, strict, &body)?;
            let body = objects::to_storage(&target.res, body);
            let user = user_info(shared, headers);
            let created = create(shared, &target, body, &user, dry_run).await?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::POST, Some(name), Some("token")) => {
            token::token_request(shared, &target, name, parse_body(headers, body)?)
        }
        (Method::PUT, Some(name), None | Some("status")) => {
            let new = parse_body(headers, body)?;
            crd::check_strict(&target.res, strict, &new)?;
            let new = objects::to_storage(&target.res, new);
            let user = user_info(shared, headers);
            let updated =
                update(shared, &target, name, &user, dry_run, |_| Ok(new.clone())).await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::PATCH, Some(name), None | Some("status")) => {
            patch(
                shared,
                &target,
                name,
                query,
                headers,
                body,
                (dry_run, strict),
            )
            .await
        }
        (Method::DELETE, Some(name), None) => {
            delete_one(shared, &target, name, query, body, dry_run)
        }
        (Method::DELETE, None, None) => delete_collection(shared, &target, query, dry_run),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A create or update body: JSON, YAML, or protobuf for the few kinds kubectl's typed commands
/// send (`kubectl create namespace|configmap|secret|serviceaccount|token`). Other protobuf and
/// CBOR bodies get 415.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}"))),
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}"))),
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body),
        _ => Err(ApiError::unsupported_body(content_type)),
    }
}

fn parse_target(
    shared: &Shared,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            (Some((*ns).to_owned()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some((*name).to_owned()), None),
        [plural, name, sub] => (*plural, Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return Err(ApiError::no_route()),
    };
    let (res, write) = {
        let inner = shared.lock();
        let res = inner
            .registry
            .find(group, version, plural)
            .cloned()
            .ok_or_else(ApiError::no_route)?;
        let write = inner.registry.writer(&res);
        (res, write)
    };
    if res.namespaced != namespace.is_some() && !(res.namespaced && name.is_none()) {
        return Err(ApiError::no_route());
    }
    match subresource.as_deref() {
        None => {}
        Some("status") if res.status_subresource => {}
        Some(sub) if res.extra_subresources.iter().any(|s| s.name == sub) => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    Ok(Target {
        res,
        write,
        namespace,
        name,
        subresource,
    })
}

pub fn existing(inner: &super::Inner, target: &Target, name: &str) -> Result<Value, ApiError> {
    let ns = target.namespace.as_deref().unwrap_or_default();
    inner
        .store
        .get(&target.res.storage_key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.res.group_resource(), name))
}

/// Create: pre-admission checks and defaults, mutating webhooks, then naming and storage.
pub async fn create(
    shared: &Shared,
    target: &Target,
    body: Value,
    user: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let (prepared, hooks) = {
        let inner = shared.lock();
        let prepared =
            objects::prepare_create(&inner, &target.write, target.namespace.as_deref(), body)?;
        let hooks = webhooks::matching(&inner, &target.write, "CREATE", &prepared)?;
        (prepared, hooks)
    };
    let admitted = if hooks.is_empty() {
        prepared
    } else {
        let request = webhooks::Request {
            res: &target.write,
            operation: "CREATE",
            old: None,
            user,
            dry_run,
        };
        webhooks::admit(shared, &request, prepared, hooks).await?
    };
    let mut inner = shared.lock();
    let created = objects::commit_create(&mut inner, &target.write, admitted, dry_run)?;
    Ok(objects::as_served(&target.res, created))
}

/// Update (PUT or PATCH): `make` builds the new object from the stored one; UPDATE webhooks
/// run on it (main resource only). Without webhooks it all happens under one lock; with them,
/// a write that lands meanwhile makes this one a 409, as a stale resourceVersion would.
async fn update(
    shared: &Shared,
    target: &Target,
    name: &str,
    user: &Value,
    dry_run: bool,
    make: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let sub = target.subresource.as_deref();
    let (old, new, hooks) = {
        let mut inner = shared.lock();
        let old = existing(&inner, target, name)?;
        let new = make(&old)?;
        let hooks = if sub.is_none() {
            webhooks::matching(&inner, &target.write, "UPDATE", &new)?
        } else {
            Vec::new()
        };
        if hooks.is_empty() {
            let updated = objects::update(&mut inner, &target.write, &old, new, sub, dry_run)?;
            return Ok(objects::as_served(&target.res, updated));
        }
        (old, new, hooks)
    };
    let request = webhooks::Request {
        res: &target.write,
        operation: "UPDATE",
        old: Some(&old),
        user,
        dry_run,
    };
    let admitted = webhooks::admit(shared, &request, new, hooks).await?;
    let mut inner = shared.lock();
    let current = existing(&inner, target, name)?;
    if current["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
        return Err(ApiError::conflict(&target.res.group_resource(), name));
    }
    let updated = objects::update(&mut inner, &target.write, &current, admitted, sub, dry_run)?;
    Ok(objects::as_served(&target.res, updated))
}

async fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    (dry_run, strict): (bool, bool),
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = PatchType::from_content_type(content_type)?;
    let manager = query.get("fieldManager").map_or("", String::as_str);
    let force = query.get("force").is_some_and(|f| f == "true");
    if kind == PatchType::Apply && manager.is_empty() {
        // kube-apiserver validates the PatchOptions: 422, not 400.
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[Cause::new(
                "fieldManager",
                "Required value: is required for apply patch",
            )],
        ));
    }
    if kind == PatchType::Strategic && target.res.crd.is_some() {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let exists = {
        let inner = shared.lock();
        let ns = target.namespace.as_deref().unwrap_or_default();
        inner
            .store
            .get(&target.res.storage_key(), ns, name)
            .is_some()
    };
    if exists {
        let user = user_info(shared, headers);
        let updated = update(shared, target, name, &user, dry_run, |old| {
            let served = objects::as_served(&target.res, old.clone());
            let new = if kind == PatchType::Apply {
                apply::apply(
                    Some(&served),
                    body,
                    manager,
                    force,
                    target.subresource.as_deref(),
                    &target.res.api_version(),
                )?
            } else {
                patch::apply(kind, &served, body)?
            };
            crd::check_strict(&target.res, strict, &new)?;
            Ok(objects::to_storage(&target.res, new))
        })
        .await?;
        return Ok(json_response(StatusCode::OK, &updated));
    }
    if kind != PatchType::Apply || target.subresource.is_some() {
        return Err(ApiError::not_found(&target.res.group_resource(), name));
    }
    // Server-side apply of an absent object creates it.
    let obj = apply::apply(None, body, manager, force, None, &target.res.api_version())?;
    let given = obj["metadata"]["name"].as_str().unwrap_or_default();
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    crd::check_strict(&target.res, strict, &obj)?;
    let obj = objects::to_storage(&target.res, obj);
    let user = user_info(shared, headers);
    let created = create(shared, target, obj, &user, dry_run).await?;
    Ok(json_response(StatusCode::CREATED, &created))
}

/// DELETE of one object: preconditions, finalizers, propagation. Built-ins answer a Success
/// Status when the object is gone at once; pods, namespaces and custom resources answer the
/// object, as kube-apiserver does.
fn delete_one(
    shared: &Shared,
    target: &Target,
    name: &str,
    query: &Query,
    body: &Bytes,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let precondition = options["preconditions"]["resourceVersion"].as_str();
    let orphan = options["propagationPolicy"] == json!("Orphan")
        || options["orphanDependents"] == json!(true)
        || query
            .get("propagationPolicy")
            .is_some_and(|p| p == "Orphan");
    let mut inner = shared.lock();
    let ns = target.namespace.clone().unwrap_or_default();
    if let Some(uid) = options["preconditions"]["uid"].as_str() {
        let current = existing(&inner, target, name)?;
        let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
        if actual != uid {
            return Err(ApiError::precondition_failed(
                &target.res.group_resource(),
                name,
                &FailedPrecondition {
                    kind: &target.res.kind,
                    field: "UID",
                    wanted: uid,
                    actual,
                },
            ));
        }
    }
    let (obj, removed) = objects::delete(
        &mut inner,
        &target.write,
        &ns,
        name,
        precondition,
        dry_run,
        orphan,
    )?;
    let returns_object = target.res.crd.is_some()
        || target.res.is_pod()
        || target.res.plural == "namespaces"
        || !removed;
    if returns_object {
        Ok(json_response(
            StatusCode::OK,
            &objects::as_served(&target.res, obj),
        ))
    } else {
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
        Ok(json_response(
            StatusCode::OK,
            &status::success(&target.res.group_resource(), name, uid),
        ))
    }
}

fn delete_collection(
    shared: &Shared,
    target: &Target,
    query: &Query,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let mut inner = shared.lock();
    let victims = selected(target, query, &inner)?;
    let mut items = Vec::new();
    for v in victims {
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Ok((obj, _)) =
            objects::delete(&mut inner, &target.write, &ns, &name, None, dry_run, false)
        {
            items.push(objects::as_served(&target.res, obj));
        }
    }
    let rv = inner.store.current_rv();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.res.kind),
            "apiVersion": target.res.api_version(),
            "metadata": { "resourceVersion": rv.to_string() },
            "items": items,
        }),
    ))
}
