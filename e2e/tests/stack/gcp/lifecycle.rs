//! Pools, providers, service-account policies, faults and the write quota.

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn pools_are_created_through_operations_and_soft_deleted() -> anyhow::Result<()> {
    let env = Env::start(|o| o.operation_polls(2)).await?;
    let (status, op) = env
        .post(
            &format!("v1/{}?workloadIdentityPoolId=passport", pools(PROJECT)),
            json!({ "displayName": "Passport", "description": "clusters" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{op}");
    let name = format!("projects/{NUMBER}/locations/global/workloadIdentityPools/passport");
    assert!(
        op["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{name}/operations/"))
    );
    assert_ne!(op["done"], true, "a fresh operation must not be done: {op}");
    let (polls, done) = env.wait(&op, 5).await?;
    assert_eq!(polls, 2, "done on the second poll");
    assert_eq!(done["response"]["name"], name.as_str());
    assert_eq!(done["response"]["state"], "ACTIVE");

    // The project may be named by ID or number; names always carry the number.
    let (status, pool) = env
        .get(&format!(
            "v1/projects/{NUMBER}/locations/global/workloadIdentityPools/passport"
        ))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pool["name"], name.as_str());
    assert_eq!(pool["displayName"], "Passport");

    // PATCH needs an updateMask and changes only the masked fields.
    let path = format!("v1/{}/passport", pools(PROJECT));
    let no_mask = env
        .call(Method::PATCH, &path, Some(json!({ "disabled": true })))
        .await?;
    assert_error(&no_mask, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let patched = env
        .write(
            Method::PATCH,
            &format!("{path}?updateMask=disabled"),
            json!({ "disabled": true, "description": "x" }),
        )
        .await?;
    assert_eq!(patched["disabled"], true);
    assert_eq!(patched["description"], "clusters");

    // Soft delete: still readable as DELETED with an expiry, hidden from plain lists.
    let deleted = env.write(Method::DELETE, &path, Value::Null).await?;
    assert_eq!(deleted["state"], "DELETED");
    let (_, pool) = env.get(&path).await?;
    assert_eq!(pool["state"], "DELETED");
    let expire: jiff::Timestamp = pool["expireTime"].as_str().unwrap_or_default().parse()?;
    let days = (expire - jiff::Timestamp::now()).total(jiff::Unit::Hour)? / 24.0;
    assert!((29.9..=30.1).contains(&days), "expires in {days} days");
    let (_, listed) = env.get(&format!("v1/{}", pools(PROJECT))).await?;
    assert_eq!(listed, json!({}));
    let (_, listed) = env
        .get(&format!("v1/{}?showDeleted=true", pools(PROJECT)))
        .await?;
    assert_eq!(listed["workloadIdentityPools"][0]["name"], name.as_str());

    // The ID stays taken until purged; undelete brings the pool back.
    let again = env
        .post(
            &format!("v1/{}?workloadIdentityPoolId=passport", pools(PROJECT)),
            json!({}),
        )
        .await?;
    assert_error(&again, StatusCode::CONFLICT, "ALREADY_EXISTS");
    let restored = env
        .write(Method::POST, &format!("{path}:undelete"), json!({}))
        .await?;
    assert_eq!(restored["state"], "ACTIVE");
    assert!(restored.get("expireTime").is_none());
    let twice = env.post(&format!("{path}:undelete"), json!({})).await?;
    assert_error(&twice, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION");
    Ok(())
}

#[tokio::test]
async fn purged_pools_free_their_id() -> anyhow::Result<()> {
    let env = Env::start(|o| o.soft_delete_retention(std::time::Duration::ZERO)).await?;
    env.create_pool("short-lived").await?;
    let path = format!("v1/{}/short-lived", pools(PROJECT));
    let deleted = env.write(Method::DELETE, &path, Value::Null).await?;
    assert_eq!(deleted["state"], "DELETED");
    assert_error(&env.get(&path).await?, StatusCode::NOT_FOUND, "NOT_FOUND");
    let recreated = env.create_pool("short-lived").await?;
    assert_eq!(recreated["state"], "ACTIVE");
    Ok(())
}

#[tokio::test]
async fn requests_are_validated_like_google() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    let create = |id: &str| format!("v1/{}?workloadIdentityPoolId={id}", pools(PROJECT));
    for id in ["abc", "gcp-pool", "Upper-case", &"a".repeat(33)] {
        let refused = env.post(&create(id), json!({})).await?;
        assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    let unknown = env
        .post(&create("pool-1"), json!({ "displayNam": "typo" }))
        .await?;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(
        unknown.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Unknown name \"displayNam\"")
    );
    assert_eq!(
        unknown.1["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    let long_name = env
        .post(&create("pool-1"), json!({ "displayName": "x".repeat(33) }))
        .await?;
    assert_error(&long_name, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let other_project = env
        .post(
            &format!("v1/{}?workloadIdentityPoolId=pool-1", pools("someone-else")),
            json!({}),
        )
        .await?;
    assert_error(&other_project, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    let missing = env.get(&format!("v1/{}/nope", pools(PROJECT))).await?;
    assert_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");

    env.create_pool("pool-1").await?;
    let provider = |id: &str| {
        format!(
            "v1/{}/pool-1/providers?workloadIdentityPoolProviderId={id}",
            pools(PROJECT)
        )
    };
    let issuer = "https://issuer.example";
    // Each case is refused for its own reason: the field violation names the field.
    let bad: Vec<(&str, Value, &str)> = vec![
        (
            "gcp-oidc",
            oidc_provider(issuer, json!({})),
            "workload_identity_pool_provider_id",
        ),
        (
            "http-issuer",
            oidc_provider("http://issuer.example", json!({})),
            "oidc.issuer_uri",
        ),
        (
            "too-many-auds",
            oidc_provider(
                issuer,
                json!({ "allowedAudiences": (0..11).map(|i| format!("aud-{i}")).collect::<Vec<_>>() }),
            ),
            "oidc.allowed_audiences",
        ),
        (
            "bad-jwks",
            oidc_provider(issuer, json!({ "jwksJson": "{\"keys\": \"nope\"}" })),
            "oidc.jwks_json",
        ),
        (
            "no-subject",
            json!({ "attributeMapping": { "attribute.ns": "assertion.sub" }, "oidc": { "issuerUri": issuer } }),
            "attribute_mapping",
        ),
        (
            "bad-cel",
            json!({ "attributeMapping": { "google.subject": "assertion[" }, "oidc": { "issuerUri": issuer } }),
            "attribute_mapping",
        ),
        (
            "bad-condition",
            json!({ "attributeMapping": k8s_mapping(), "attributeCondition": "&&", "oidc": { "issuerUri": issuer } }),
            "attribute_condition",
        ),
        (
            "no-kind",
            json!({ "attributeMapping": k8s_mapping() }),
            "provider_config",
        ),
        (
            "unknown-field",
            oidc_provider(issuer, json!({ "issuer": issuer })),
            "workload_identity_pool_provider",
        ),
    ];
    for (id, body, field) in bad {
        let refused = env.post(&provider(id), body).await?;
        assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
        assert_eq!(
            refused.1["error"]["details"][0]["fieldViolations"][0]["field"], field,
            "{id}: {}",
            refused.1
        );
    }
    let good = env
        .create_provider("pool-1", "good-one", oidc_provider(issuer, json!({})))
        .await?;
    assert_eq!(good["state"], "ACTIVE");
    let missing_pool = env
        .post(
            &format!(
                "v1/{}/nope/providers?workloadIdentityPoolProviderId=k8s-1",
                pools(PROJECT)
            ),
            oidc_provider(issuer, json!({})),
        )
        .await?;
    assert_error(&missing_pool, StatusCode::NOT_FOUND, "NOT_FOUND");
    Ok(())
}

#[tokio::test]
async fn providers_have_the_same_lifecycle_and_need_a_live_pool() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    env.create_pool("pool-1").await?;
    let created = env
        .create_provider(
            "pool-1",
            "k8s-1",
            json!({
                "displayName": "cluster",
                "attributeMapping": k8s_mapping(),
                "attributeCondition": "attribute.namespace != 'kube-system'",
                "oidc": { "issuerUri": "https://issuer.example", "allowedAudiences": ["gcp"] },
            }),
        )
        .await?;
    let path = format!("v1/{}/pool-1/providers/k8s-1", pools(PROJECT));
    assert_eq!(
        created["name"],
        format!("projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/providers/k8s-1")
    );
    let (status, provider) = env.get(&path).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(provider["state"], "ACTIVE");
    assert_eq!(
        provider["attributeCondition"],
        "attribute.namespace != 'kube-system'"
    );
    assert_eq!(provider["oidc"]["allowedAudiences"], json!(["gcp"]));

    let patched = env
        .write(
            Method::PATCH,
            &format!("{path}?updateMask=oidc.allowedAudiences,attributeCondition"),
            json!({ "oidc": { "allowedAudiences": ["a", "b"] } }),
        )
        .await?;
    assert_eq!(patched["oidc"]["allowedAudiences"], json!(["a", "b"]));
    assert_eq!(patched["oidc"]["issuerUri"], "https://issuer.example");
    assert!(patched.get("attributeCondition").is_none());

    env.write(Method::DELETE, &path, Value::Null).await?;
    let (_, listed) = env
        .get(&format!("v1/{}/pool-1/providers", pools(PROJECT)))
        .await?;
    assert_eq!(listed, json!({}));
    let again = env
        .post(
            &format!(
                "v1/{}/pool-1/providers?workloadIdentityPoolProviderId=k8s-1",
                pools(PROJECT)
            ),
            oidc_provider("https://issuer.example", json!({})),
        )
        .await?;
    assert_error(&again, StatusCode::CONFLICT, "ALREADY_EXISTS");
    let restored = env
        .write(Method::POST, &format!("{path}:undelete"), json!({}))
        .await?;
    assert_eq!(restored["state"], "ACTIVE");

    env.write(
        Method::DELETE,
        &format!("v1/{}/pool-1", pools(PROJECT)),
        Value::Null,
    )
    .await?;
    let under_deleted = env
        .post(
            &format!(
                "v1/{}/pool-1/providers?workloadIdentityPoolProviderId=k8s-2",
                pools(PROJECT)
            ),
            oidc_provider("https://issuer.example", json!({})),
        )
        .await?;
    assert_error(
        &under_deleted,
        StatusCode::BAD_REQUEST,
        "FAILED_PRECONDITION",
    );
    Ok(())
}

#[tokio::test]
async fn service_account_policies_use_etags() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    let (status, sa) = env
        .get(&format!("v1/projects/-/serviceAccounts/{SA}"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{sa}");
    assert_eq!(
        sa["name"],
        format!("projects/{PROJECT}/serviceAccounts/{SA}")
    );
    assert_eq!(sa["email"], SA);
    let unknown = env
        .get(&format!(
            "v1/projects/{PROJECT}/serviceAccounts/nobody@{PROJECT}.iam.gserviceaccount.com"
        ))
        .await?;
    assert_error(&unknown, StatusCode::NOT_FOUND, "NOT_FOUND");

    let other = format!("other@{PROJECT}.iam.gserviceaccount.com");
    let (status, seeded) = env
        .post("_gcp/serviceAccounts", json!({ "email": other }))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{seeded}");
    let (status, by_id) = env
        .get(&format!(
            "v1/projects/{NUMBER}/serviceAccounts/{}",
            seeded["uniqueId"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(status, StatusCode::OK, "{by_id}");
    assert_eq!(by_id["email"], other.as_str());
    let third = format!("third@{PROJECT}.iam.gserviceaccount.com");
    env.fake.add_service_account(&third)?;
    assert_eq!(
        env.get(&format!("v1/projects/-/serviceAccounts/{third}"))
            .await?
            .0,
        StatusCode::OK
    );
    assert!(env.fake.add_service_account("not-an-email").is_err());
    let foreign = env
        .post(
            "_gcp/serviceAccounts",
            json!({ "email": "x@unknown-project.iam.gserviceaccount.com" }),
        )
        .await?;
    assert_error(&foreign, StatusCode::NOT_FOUND, "NOT_FOUND");

    let get_path = format!("v1/projects/{PROJECT}/serviceAccounts/{SA}:getIamPolicy");
    let set_path = format!("v1/projects/{PROJECT}/serviceAccounts/{SA}:setIamPolicy");
    let (status, empty) = env.post(&get_path, json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty, json!({ "version": 1, "etag": "ACAB" }));

    let member = format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:api"
    );
    let binding =
        json!([{ "role": "roles/iam.workloadIdentityUser", "members": [member, member] }]);
    let (status, written) = env
        .post(
            &set_path,
            json!({ "policy": { "bindings": binding, "etag": "ACAB" } }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(
        written["bindings"][0]["members"],
        json!([member]),
        "members deduplicated"
    );
    let etag = written["etag"].as_str().unwrap_or_default().to_owned();
    assert_ne!(etag, "ACAB");
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(&etag)
        .context("etag must be base64")?;
    let (_, read) = env.post(&get_path, json!({})).await?;
    assert_eq!(read, written);

    // A writer holding the old etag lost the race.
    let stale = env
        .post(
            &set_path,
            json!({ "policy": { "bindings": [], "etag": "ACAB" } }),
        )
        .await?;
    assert_error(&stale, StatusCode::CONFLICT, "ABORTED");
    let garbage = env
        .post(&set_path, json!({ "policy": { "etag": "not base64!" } }))
        .await?;
    assert_error(&garbage, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let bad_member = env.post(&set_path, json!({ "policy": { "bindings": [{ "role": "roles/iam.workloadIdentityUser", "members": ["someone"] }] } })).await?;
    assert_error(&bad_member, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");

    // Conditional bindings need version 3, and are disguised for readers asking for less.
    let etag = read["etag"].as_str().unwrap_or_default().to_owned();
    let conditional = json!([{
        "role": "roles/iam.workloadIdentityUser",
        "members": [member],
        "condition": { "title": "office hours", "expression": "request.time.getHours('UTC') < 18" },
    }]);
    let v1 = env
        .post(
            &set_path,
            json!({ "policy": { "version": 1, "bindings": conditional, "etag": etag } }),
        )
        .await?;
    assert_error(&v1, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let (status, v3) = env
        .post(
            &set_path,
            json!({ "policy": { "version": 3, "bindings": conditional, "etag": etag } }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{v3}");
    assert_eq!(v3["version"], 3);
    let (_, as_v3) = env
        .post(
            &format!("{get_path}?options.requestedPolicyVersion=3"),
            json!({}),
        )
        .await?;
    assert_eq!(as_v3["bindings"], v3["bindings"]);
    let (_, as_v1) = env.post(&get_path, json!({})).await?;
    assert_eq!(as_v1["version"], 1);
    assert!(as_v1["bindings"][0].get("condition").is_none());
    let disguised = as_v1["bindings"][0]["role"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        disguised.starts_with("roles/iam.workloadIdentityUser_withcond_"),
        "{disguised}"
    );
    let written_back = env
        .post(
            &set_path,
            json!({ "policy": { "bindings": [{ "role": disguised, "members": [member] }] } }),
        )
        .await?;
    assert_error(&written_back, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let etag = v3["etag"].as_str().unwrap_or_default().to_owned();

    // The shapes google-cloud-iam-admin-v1 sends: no body with the version as a query
    // parameter, and the whole request message (`resource` included) as the body.
    let sdk_get = env
        .client
        .post(format!(
            "{}/{get_path}?options.requestedPolicyVersion=3&%24alt=json%3Benum-encoding%3Dint",
            env.base
        ))
        .send()
        .await?;
    assert_eq!(sdk_get.status(), StatusCode::OK);
    assert_eq!(sdk_get.json::<Value>().await?["version"], 3);
    let (status, sdk_set) = env
        .post(
            &format!("{set_path}?%24alt=json%3Benum-encoding%3Dint"),
            json!({ "resource": format!("projects/{PROJECT}/serviceAccounts/{SA}"), "policy": { "version": 3, "bindings": conditional, "etag": etag } }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{sdk_set}");
    let etag = sdk_set["etag"].as_str().unwrap_or_default().to_owned();

    let (status, cleared) = env
        .post(&set_path, json!({ "policy": { "etag": etag } }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(cleared.get("bindings").is_none());
    assert_ne!(
        cleared["etag"],
        etag.as_str(),
        "every write changes the etag"
    );
    Ok(())
}

#[tokio::test]
async fn queued_faults_are_served_then_normal_behaviour_resumes() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    let path = format!("v1/{}", pools(PROJECT));
    env.fake
        .faults()
        .fail_next(2, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..2 {
        assert_eq!(env.get(&path).await?.0, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(env.get(&path).await?.0, StatusCode::OK);

    // The same over the control endpoint, on plain HTTP.
    let http = env.fake.http().base;
    let queued = env
        .client
        .post(format!("{http}/_faults"))
        .json(&json!({ "status": 500, "count": 1 }))
        .send()
        .await?;
    assert_eq!(queued.status(), StatusCode::NO_CONTENT);
    let failed = env.client.get(format!("{http}/{path}")).send().await?;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let ok = env.client.get(format!("{http}/{path}")).send().await?;
    assert_eq!(ok.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn lists_are_paged() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    for id in ["pool-a", "pool-b", "pool-c"] {
        env.create_pool(id).await?;
    }
    let list = format!("v1/{}?pageSize=2", pools(PROJECT));
    let (_, first) = env.get(&list).await?;
    let names = |page: &Value| -> Vec<String> {
        page["workloadIdentityPools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str()?.rsplit('/').next().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&first), ["pool-a", "pool-b"]);
    let token = first["nextPageToken"]
        .as_str()
        .context("no nextPageToken")?;
    let (_, second) = env.get(&format!("{list}&pageToken={token}")).await?;
    assert_eq!(names(&second), ["pool-c"]);
    assert!(second.get("nextPageToken").is_none());
    Ok(())
}

#[tokio::test]
async fn writes_beyond_the_per_minute_quota_are_throttled() -> anyhow::Result<()> {
    let env = Env::start(|o| o.writes_per_minute(3)).await?;
    for id in ["pool-1", "pool-2", "pool-3"] {
        env.create_pool(id).await?;
    }
    let throttled = env
        .post(
            &format!("v1/{}?workloadIdentityPoolId=pool-4", pools(PROJECT)),
            json!({}),
        )
        .await?;
    assert_error(
        &throttled,
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
    );
    // Reads are not writes.
    assert_eq!(
        env.get(&format!("v1/{}/pool-1", pools(PROJECT))).await?.0,
        StatusCode::OK
    );
    Ok(())
}

/// IAM calls verify Bearer tokens: a JWT self-signed with a key the fake issued (what
/// google-cloud-auth makes of a key file) passes; a missing, unknown, expired or mis-scoped
/// token is UNAUTHENTICATED.
#[tokio::test]
async fn iam_calls_verify_self_signed_service_account_jwts() -> anyhow::Result<()> {
    let env = Env::start(|o| o.require_authentication()).await?;
    let key = env.fake.service_account_key(SA)?;
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["client_email"], SA);
    let signing = jsonwebtoken::EncodingKey::from_rsa_pem(
        key["private_key"].as_str().unwrap_or_default().as_bytes(),
    )?;
    let sign = |claims: Value, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &signing)
    };
    let kid = key["private_key_id"].as_str().unwrap_or_default();
    let now = now() as i64;
    let claims = |exp: i64, scope: &str| json!({ "iss": SA, "sub": SA, "iat": now - 5, "exp": now + exp, "scope": scope });
    let list = format!("{}/v1/{}", env.base, pools(PROJECT));
    let get = |token: Option<String>| {
        let mut request = env.client.get(&list);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await?;
            anyhow::Ok(response.status())
        }
    };
    let good = sign(claims(3600, SCOPE), kid)?;
    assert_eq!(get(Some(good)).await?, StatusCode::OK);
    assert_eq!(get(None).await?, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("garbage".into())).await?, StatusCode::UNAUTHORIZED);
    let expired = sign(claims(-600, SCOPE), kid)?;
    assert_eq!(get(Some(expired)).await?, StatusCode::UNAUTHORIZED);
    let unscoped = sign(
        claims(3600, "https://www.googleapis.com/auth/devstorage"),
        kid,
    )?;
    assert_eq!(get(Some(unscoped)).await?, StatusCode::UNAUTHORIZED);
    let unknown = sign(claims(3600, SCOPE), "not-a-key")?;
    assert_eq!(get(Some(unknown)).await?, StatusCode::UNAUTHORIZED);
    Ok(())
}
