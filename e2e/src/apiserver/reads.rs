//! Reads: get and list (selectors, pagination) in the representation the client asked for.

use axum::{
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    Shared,
    handlers::{Query, Target, existing, json_response},
    objects,
    selectors::{FieldSelector, LabelSelector},
    status::ApiError,
    table,
};

pub fn get(
    shared: &Shared,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let inner = shared.lock();
    let obj = objects::as_served(&target.res, existing(&inner, target, name)?);
    if table::wanted(headers) {
        let rv = inner.store.current_rv();
        return Ok(json_response(
            StatusCode::OK,
            &table::render(&target.res, &[obj], rv),
        ));
    }
    if table::metadata_wanted(headers) {
        return Ok(json_response(StatusCode::OK, &table::partial(&obj)));
    }
    Ok(json_response(StatusCode::OK, &obj))
}

/// Label and field selectors of a list, watch or deletecollection.
pub fn selectors(
    target: &Target,
    query: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").map_or("", String::as_str),
        (target.res.group.as_str(), target.res.plural.as_str()),
    )?;
    Ok((labels, fields))
}

pub fn selected(
    target: &Target,
    query: &Query,
    inner: &super::Inner,
) -> Result<Vec<Value>, ApiError> {
    let (labels, fields) = selectors(target, query)?;
    Ok(inner
        .store
        .list(&target.res.storage_key(), target.namespace.as_deref())
        .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
        .map(|o| objects::as_served(&target.res, o.clone()))
        .collect())
}

pub fn list(
    shared: &Shared,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let inner = shared.lock();
    let all = selected(target, query, &inner)?;
    let rv = inner.store.current_rv();
    drop(inner);
    let (items, page) = paginate(all, query, rv)?;
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some((token, remaining)) = page {
        metadata["continue"] = json!(token);
        // kube-apiserver counts the rest only when nothing is filtered out.
        if !query.contains_key("labelSelector") && !query.contains_key("fieldSelector") {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let body = match table::Shape::from_headers(headers) {
        table::Shape::Table => {
            let mut t = table::render(&target.res, &items, rv);
            t["metadata"] = metadata;
            t
        }
        table::Shape::Metadata => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata, "items": items.iter().map(table::partial).collect::<Vec<_>>(),
        }),
        table::Shape::Full => json!({
            "kind": format!("{}List", target.res.kind),
            "apiVersion": target.res.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The `continue` token of the next page and how many items remain after this one.
type NextPage = (String, usize);

/// `limit` and `continue`: a page of `items` (ordered by namespace and name) and, when more
/// remain, the token for the next one with the count left. Pages are cut from the current state,
/// not from a snapshot at the first page's resourceVersion as etcd would.
fn paginate(
    items: Vec<Value>,
    query: &Query,
    rv: u64,
) -> Result<(Vec<Value>, Option<NextPage>), ApiError> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    // The store's own order: namespace, then name.
    let key = |o: &Value| {
        (
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => {
            let decoded = STANDARD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| {
                    let ns = v["start"][0].as_str()?.to_owned();
                    let name = v["start"][1].as_str()?.to_owned();
                    Some((ns, name))
                })
                .ok_or_else(|| {
                    ApiError::bad_request(format!("invalid continue token: {token:?}"))
                })?;
            Some(decoded)
        }
    };
    let rest: Vec<Value> = items
        .into_iter()
        .filter(|o| after.as_ref().is_none_or(|a| key(o) > *a))
        .collect();
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    match limit {
        Some(limit) if rest.len() > limit => {
            let remaining = rest.len() - limit;
            let page: Vec<Value> = rest.into_iter().take(limit).collect();
            let (ns, name) = page.last().map(key).unwrap_or_default();
            let token = STANDARD.encode(json!({ "rv": rv, "start": [ns, name] }).to_string());
            Ok((page, Some((token, remaining))))
        }
        _ => Ok((rest, None)),
    }
}
