//! Service-account tokens: the TokenRequest subresource (`serviceaccounts/{name}/token`), signed
//! with the server's own key, and the OIDC discovery and JWKS that let others verify them.

use axum::{
    http::StatusCode,
    response::{IntoResponse as _, Response},
};
use serde_json::{Value, json};

use super::{
    Shared,
    handlers::{Target, json_response},
    status::{ApiError, Cause, GroupResource},
    store,
};

/// kube-apiserver refuses shorter tokens.
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;

pub fn openid_configuration(shared: &Shared) -> Response {
    match shared.issuer.get() {
        Some(issuer) => json_response(StatusCode::OK, &issuer.discovery()),
        None => ApiError::internal("the issuer is not ready").into_response(),
    }
}

/// `/openid/v1/jwks`, served as kube-apiserver serves it: `application/jwk-set+json` only, so
/// a client that accepts nothing but `application/json` gets 406 Not Acceptable.
pub fn jwks(shared: &Shared, accept: Option<&str>) -> Response {
    if let Some(accept) = accept
        && !accept.split(',').any(|range| {
            let range = range.split(';').next().unwrap_or_default().trim();
            matches!(
                range,
                "application/jwk-set+json" | "application/*" | "*/*" | ""
            )
        })
    {
        return ApiError::not_acceptable("application/jwk-set+json").into_response();
    }
    match shared.issuer.get() {
        Some(issuer) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/jwk-set+json")],
            issuer.jwks().to_string(),
        )
            .into_response(),
        None => ApiError::internal("the issuer is not ready").into_response(),
    }
}

/// What a token is for.
pub struct TokenSpec<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// `(name, uid)` of the pod the token is bound to.
    pub pod: Option<(String, String)>,
}

/// Signs a token with exactly the claims kube-apiserver puts in a bound service-account token.
pub fn issue(
    shared: &Shared,
    spec: &TokenSpec<'_>,
    sa_uid: &str,
) -> Result<(String, i64), ApiError> {
    let issuer = shared
        .issuer
        .get()
        .ok_or_else(|| ApiError::internal("the issuer is not ready"))?;
    let now = jiff::Timestamp::now().as_second();
    let exp = now + spec.expiration_seconds;
    let mut k8s = json!({
        "namespace": spec.namespace,
        "serviceaccount": { "name": spec.service_account, "uid": sa_uid },
    });
    if let Some((name, uid)) = &spec.pod {
        k8s["pod"] = json!({ "name": name, "uid": uid });
    }
    let claims = json!({
        "aud": spec.audiences,
        "exp": exp,
        "iat": now,
        "iss": issuer.url(),
        "jti": store::new_uid(),
        "kubernetes.io": k8s,
        "nbf": now,
        "sub": format!("system:serviceaccount:{}:{}", spec.namespace, spec.service_account),
    });
    let token = issuer
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    Ok((token, exp))
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
pub fn token_request(
    shared: &Shared,
    target: &Target,
    name: &str,
    request: Value,
) -> Result<Response, ApiError> {
    let namespace = target.namespace.clone().unwrap_or_default();
    let spec = &request["spec"];
    let expiration = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION);
    let invalid = |field: &str, message: String| {
        ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            &[Cause::new(field, message)],
        )
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let issuer_url = shared.url().to_owned();
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let audiences = if audiences.is_empty() {
        vec![issuer_url]
    } else {
        audiences
    };
    let (sa_uid, pod) = {
        let inner = shared.lock();
        let sa = inner
            .store
            .get("/serviceaccounts", &namespace, name)
            .ok_or_else(|| ApiError::not_found(&target.res.group_resource(), name))?;
        let sa_uid = sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let bound = &spec["boundObjectRef"];
        let pod = if bound.is_null() {
            None
        } else {
            let kind = bound["kind"].as_str().unwrap_or_default();
            if kind != "Pod" && kind != "Secret" && kind != "Node" {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    format!(
                        "Unsupported value: {kind:?}: supported values: \"Pod\", \"Secret\", \"Node\""
                    ),
                ));
            }
            let pod_name = bound["name"].as_str().unwrap_or_default();
            let storage = if kind == "Pod" { "/pods" } else { "/secrets" };
            let gr = GroupResource {
                group: String::new(),
                resource: format!("{}s", kind.to_lowercase()),
            };
            let obj = inner
                .store
                .get(storage, &namespace, pod_name)
                .ok_or_else(|| ApiError::not_found(&gr, pod_name))?;
            let uid = obj["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
                && want != uid
            {
                return Err(ApiError::conflict(&gr, pod_name));
            }
            (kind == "Pod").then(|| (pod_name.to_owned(), uid))
        };
        (sa_uid, pod)
    };
    let token_spec = TokenSpec {
        namespace: &namespace,
        service_account: name,
        audiences: audiences.clone(),
        expiration_seconds: expiration,
        pod,
    };
    let (token, exp) = issue(shared, &token_spec, &sa_uid)?;
    let expiration_timestamp = jiff::Timestamp::from_second(exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut out_spec = spec.clone();
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(expiration);
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "name": name, "namespace": namespace, "creationTimestamp": null },
            "spec": out_spec,
            "status": { "token": token, "expirationTimestamp": expiration_timestamp },
        }),
    ))
}
