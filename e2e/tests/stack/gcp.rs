//! The GCP fake over real HTTP(S): pool and provider lifecycles with long-running operations and
//! soft delete, validation, IAM policy etags, the STS exchange and its refusals, impersonation,
//! fault injection, the write quota, and every route checked against the discovery documents.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use anyhow::{Context as _, bail, ensure};
use axum::{Json, Router, extract::State, routing::get};
use jsonwebtoken::get_current_timestamp as now;
use passport_e2e::{
    gcp::{Api, GcpFake, GcpOptions, ROUTES},
    oidc::Issuer,
    serve::Server,
    tls::{Ca, install_crypto_provider},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PROJECT: &str = "demo-project";
const NUMBER: &str = "123456789012";
const SA: &str = "app@demo-project.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A running fake, a client trusting the stack CA, and a Kubernetes-like token issuer served
/// over HTTPS.
struct Env {
    fake: GcpFake,
    client: reqwest::Client,
    base: String,
    issuer: Issuer,
    _issuer_server: Server,
}

type Docs = Arc<OnceLock<(Value, Value)>>;

async fn discovery(State(docs): State<Docs>) -> Json<Value> {
    Json(docs.get().map(|d| d.0.clone()).unwrap_or_default())
}

async fn jwks(State(docs): State<Docs>) -> Json<Value> {
    Json(docs.get().map(|d| d.1.clone()).unwrap_or_default())
}

impl Env {
    async fn start(configure: impl FnOnce(GcpOptions) -> GcpOptions) -> anyhow::Result<Self> {
        install_crypto_provider();
        let ca = Arc::new(Ca::new()?);
        let docs: Docs = Arc::default();
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/openid/v1/jwks", get(jwks))
            .with_state(docs.clone());
        let issuer_server = Server::https(router, ca.loopback_server_config().await?).await?;
        let issuer = Issuer::generate(&issuer_server.url())?;
        docs.set((issuer.discovery(), issuer.jwks()))
            .map_err(|_| anyhow::anyhow!("issuer documents already set"))?;
        let options = GcpOptions::new(ca.clone())
            .project(PROJECT, NUMBER)
            .service_account(SA);
        let fake = GcpFake::start(configure(options)).await?;
        Ok(Self {
            base: fake.https().base,
            client: ca.client()?,
            fake,
            issuer,
            _issuer_server: issuer_server,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.client.request(method, format!("{}/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON body: {text}"))?
        };
        Ok((status, body))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Polls `v1/{operation}` until it is done (at most `max` polls), returning the polls
    /// it took and the final operation.
    async fn wait(&self, operation: &Value, max: u32) -> anyhow::Result<(u32, Value)> {
        let name = operation["name"]
            .as_str()
            .with_context(|| format!("no operation name in {operation}"))?;
        for polls in 1..=max {
            let (status, op) = self.get(&format!("v1/{name}")).await?;
            ensure!(status == StatusCode::OK, "polling {name}: {status} {op}");
            if op["done"] == json!(true) {
                return Ok((polls, op));
            }
        }
        bail!("operation {name} not done after {max} polls")
    }

    /// Runs a write that returns an operation, and waits for it.
    async fn write(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, op) = self.call(method, path, Some(body)).await?;
        ensure!(status == StatusCode::OK, "{path}: {status} {op}");
        Ok(self.wait(&op, 5).await?.1["response"].clone())
    }

    async fn create_pool(&self, id: &str) -> anyhow::Result<Value> {
        self.write(
            Method::POST,
            &format!("v1/{}?workloadIdentityPoolId={id}", pools(PROJECT)),
            json!({ "displayName": "Passport" }),
        )
        .await
    }

    async fn create_provider(
        &self,
        pool: &str,
        id: &str,
        provider: Value,
    ) -> anyhow::Result<Value> {
        self.write(
            Method::POST,
            &format!(
                "v1/{}/{pool}/providers?workloadIdentityPoolProviderId={id}",
                pools(PROJECT)
            ),
            provider,
        )
        .await
    }

    /// A service-account token shaped like kube-apiserver's, `exp` seconds from now.
    fn k8s_token(&self, audience: &str, namespace: &str, exp: i64) -> anyhow::Result<String> {
        self.k8s_token_from(&self.issuer, audience, namespace, exp)
    }

    fn k8s_token_from(
        &self,
        issuer: &Issuer,
        audience: &str,
        namespace: &str,
        exp: i64,
    ) -> anyhow::Result<String> {
        let now = now() as i64;
        issuer.sign(&json!({
            "iss": issuer.url(),
            "sub": format!("system:serviceaccount:{namespace}:api"),
            "aud": [audience],
            "exp": now + exp,
            "iat": now - 10,
            "nbf": now - 10,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": { "name": "api", "uid": "6a0bd4b5-0000-4000-8000-000000000001" },
                "pod": { "name": "api-0", "uid": "6a0bd4b5-0000-4000-8000-000000000002" },
            },
        }))
    }

    /// The STS exchange, form-encoded as the Google auth libraries send it.
    async fn exchange(&self, audience: &str, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .post(self.fake.https().sts_token)
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("subject_token", token),
                ("audience", audience),
                ("scope", SCOPE),
            ])
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    async fn whoami(&self, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .get(format!("{}/_whoami", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    async fn impersonate(&self, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .post(self.fake.https().impersonation_url(SA))
            .bearer_auth(token)
            .json(&json!({ "scope": [SCOPE], "lifetime": "3600s" }))
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    async fn set_policy(&self, members: &[&str]) -> anyhow::Result<()> {
        let (status, body) = self
            .post(
                &format!("v1/projects/{PROJECT}/serviceAccounts/{SA}:setIamPolicy"),
                json!({ "policy": { "bindings": [
                    { "role": "roles/iam.workloadIdentityUser", "members": members }
                ] } }),
            )
            .await?;
        ensure!(status == StatusCode::OK, "setIamPolicy: {status} {body}");
        Ok(())
    }
}

fn pools(project: &str) -> String {
    format!("projects/{project}/locations/global/workloadIdentityPools")
}

fn audience(pool: &str, provider: &str) -> String {
    format!(
        "//iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{pool}/providers/{provider}"
    )
}

fn k8s_mapping() -> Value {
    json!({
        "google.subject": "assertion.sub",
        "attribute.namespace": "assertion['kubernetes.io']['namespace']",
        "attribute.service_account_name": "assertion['kubernetes.io']['serviceaccount']['name']",
    })
}

fn oidc_provider(issuer: &str, extra: Value) -> Value {
    let mut oidc = json!({ "issuerUri": issuer });
    if let (Some(oidc), Some(extra)) = (oidc.as_object_mut(), extra.as_object()) {
        oidc.extend(extra.clone());
    }
    json!({ "attributeMapping": k8s_mapping(), "oidc": oidc })
}

fn assert_error(actual: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(actual.0, status, "{}", actual.1);
    assert_eq!(actual.1["error"]["status"], code, "{}", actual.1);
    assert_eq!(actual.1["error"]["code"], status.as_u16(), "{}", actual.1);
}

fn assert_oauth(actual: &(StatusCode, Value), error: &str, mentions: &str) {
    assert_eq!(actual.0, StatusCode::BAD_REQUEST, "{}", actual.1);
    assert_eq!(actual.1["error"], error, "{}", actual.1);
    let description = actual.1["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(mentions),
        "{description:?} should mention {mentions:?}"
    );
}

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

/// Sets up pool-1 with provider `provider` (an OIDC provider for the test issuer).
async fn trust(env: &Env, provider: &str, oidc: Value) -> anyhow::Result<()> {
    env.create_pool("pool-1").await?;
    env.create_provider(
        "pool-1",
        provider,
        json!({
            "attributeMapping": k8s_mapping(),
            "attributeCondition": "attribute.namespace != 'kube-system'",
            "oidc": oidc,
        }),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn sts_exchanges_verified_tokens_and_impersonation_needs_the_binding() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    // No jwksJson: the fake discovers the issuer's keys over HTTPS.
    trust(
        &env,
        "k8s-oidc",
        json!({ "issuerUri": env.issuer.url(), "allowedAudiences": ["gcp-sts"] }),
    )
    .await?;
    let token = env.k8s_token("gcp-sts", "team-a", 600)?;
    let (status, exchanged) = env
        .exchange(&audience("pool-1", "k8s-oidc"), &token)
        .await?;
    assert_eq!(status, StatusCode::OK, "{exchanged}");
    assert_eq!(exchanged["token_type"], "Bearer");
    assert_eq!(
        exchanged["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(exchanged["expires_in"], 3600);
    let federated = exchanged["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let principal = format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:api"
    );
    let (status, me) = env.whoami(&federated).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["principal"], principal.as_str());
    assert_eq!(me["attributes"]["namespace"], "team-a");

    // Without a binding the service account cannot be impersonated.
    let denied = env.impersonate(&federated).await?;
    assert_error(&denied, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    env.set_policy(&[&format!("principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/someone-else")]).await?;
    let denied = env.impersonate(&federated).await?;
    assert_error(&denied, StatusCode::FORBIDDEN, "PERMISSION_DENIED");

    env.set_policy(&[&principal]).await?;
    let (status, impersonated) = env.impersonate(&federated).await?;
    assert_eq!(status, StatusCode::OK, "{impersonated}");
    let expire: jiff::Timestamp = impersonated["expireTime"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    assert!(expire > jiff::Timestamp::now());
    let sa_token = impersonated["accessToken"].as_str().unwrap_or_default();
    let (_, me) = env.whoami(sa_token).await?;
    assert_eq!(me["principal"], format!("serviceAccount:{SA}"));

    // A namespace-wide principalSet works too; other namespaces stay out.
    env.set_policy(&[&format!("principalSet://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/attribute.namespace/team-a")]).await?;
    assert_eq!(env.impersonate(&federated).await?.0, StatusCode::OK);
    let (_, other) = env
        .exchange(
            &audience("pool-1", "k8s-oidc"),
            &env.k8s_token("gcp-sts", "team-b", 600)?,
        )
        .await?;
    let other = other["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_error(
        &env.impersonate(&other).await?,
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
    );

    // Disabling the pool stops exchanges and the tokens already issued from it.
    env.write(
        Method::PATCH,
        &format!("v1/{}/pool-1?updateMask=disabled", pools(PROJECT)),
        json!({ "disabled": true }),
    )
    .await?;
    assert_error(
        &env.whoami(&federated).await?,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    );
    assert_oauth(
        &env.exchange(&audience("pool-1", "k8s-oidc"), &token)
            .await?,
        "invalid_target",
        "disabled",
    );

    let anonymous = env.whoami("made-up").await?;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    Ok(())
}

#[tokio::test]
async fn sts_refuses_tokens_the_provider_does_not_trust() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    trust(
        &env,
        "k8s-oidc",
        json!({ "issuerUri": env.issuer.url(), "allowedAudiences": ["gcp-sts"] }),
    )
    .await?;
    let aud = audience("pool-1", "k8s-oidc");

    let impostor = Issuer::generate("https://elsewhere.example")?;
    let wrong_issuer = env.k8s_token_from(&impostor, "gcp-sts", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &wrong_issuer).await?,
        "invalid_grant",
        "issuer",
    );

    let wrong_audience = env.k8s_token("sts.amazonaws.com", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &wrong_audience).await?,
        "invalid_grant",
        "audience",
    );

    // Same issuer URL, different key: the signature cannot verify.
    let forger = Issuer::generate(env.issuer.url())?;
    let forged = env.k8s_token_from(&forger, "gcp-sts", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &forged).await?,
        "invalid_grant",
        "signature",
    );
    let good = env.k8s_token("gcp-sts", "team-a", 600)?;
    let (head, _) = good.rsplit_once('.').context("JWT")?;
    let (_, other_sig) = forged.rsplit_once('.').context("JWT")?;
    let tampered = format!("{head}.{other_sig}");
    assert_oauth(
        &env.exchange(&aud, &tampered).await?,
        "invalid_grant",
        "signature",
    );

    let expired = env.k8s_token("gcp-sts", "team-a", -120)?;
    assert_oauth(
        &env.exchange(&aud, &expired).await?,
        "invalid_grant",
        "expired",
    );

    let system = env.k8s_token("gcp-sts", "kube-system", 600)?;
    assert_oauth(
        &env.exchange(&aud, &system).await?,
        "unauthorized_client",
        "attribute condition",
    );

    assert_oauth(
        &env.exchange(&audience("pool-1", "nope"), &good).await?,
        "invalid_target",
        "audience",
    );

    // The good token works until its pool is deleted.
    assert_eq!(env.exchange(&aud, &good).await?.0, StatusCode::OK);
    env.write(
        Method::DELETE,
        &format!("v1/{}/pool-1", pools(PROJECT)),
        Value::Null,
    )
    .await?;
    assert_oauth(
        &env.exchange(&aud, &good).await?,
        "invalid_target",
        "deleted",
    );

    let wrong_grant = env
        .client
        .post(env.fake.https().sts_token)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(wrong_grant.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong_grant.json::<Value>().await?["error"],
        "unsupported_grant_type"
    );
    Ok(())
}

#[tokio::test]
async fn sts_uses_inline_jwks_and_the_default_audience() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    // An issuer nobody can reach: only the inline keys can verify its tokens.
    let private = Issuer::generate("https://kubernetes.default.svc")?;
    trust(
        &env,
        "inline",
        json!({
            "issuerUri": private.url(),
            "jwksJson": private.jwks().to_string(),
        }),
    )
    .await?;
    let aud = audience("pool-1", "inline");
    for token_audience in [aud.clone(), format!("https:{aud}")] {
        let token = env.k8s_token_from(&private, &token_audience, "team-a", 600)?;
        let (status, body) = env.exchange(&aud, &token).await?;
        assert_eq!(status, StatusCode::OK, "{token_audience}: {body}");
    }
    let other_aud = env.k8s_token_from(&private, "gcp-sts", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &other_aud).await?,
        "invalid_grant",
        "audience",
    );
    let forger = Issuer::generate(private.url())?;
    let forged = env.k8s_token_from(&forger, &aud, "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &forged).await?,
        "invalid_grant",
        "signature",
    );

    // The same exchange as a JSON body in the discovery document's spelling.
    let token = env.k8s_token_from(&private, &aud, "team-a", 600)?;
    let response = env
        .client
        .post(env.fake.http().sts_token)
        .json(&json!({
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
            "subjectTokenType": "urn:ietf:params:oauth:token-type:id_token",
            "subjectToken": token,
            "audience": aud,
            "scope": SCOPE,
        }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
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

/// `shared/specs/gcp/latest`, beside the repository (or beside the worktree folder).
fn specs_dir() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("PASSPORT_SPECS_DIR").map(PathBuf::from),
        Some(manifest.join("../../shared/specs")),
        Some(manifest.join("../../../shared/specs")),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join("gcp/latest"))
        .find(|dir| dir.join("iam.v1.json").is_file())
        .context("shared/specs/gcp/latest not found (set PASSPORT_SPECS_DIR)")
}

/// Every method of a discovery document, as (HTTP method, flatPath) with its parameters.
fn methods(doc: &Value) -> Vec<(String, String, Value)> {
    fn walk(resources: &Value, out: &mut Vec<(String, String, Value)>) {
        for resource in resources.as_object().into_iter().flat_map(|r| r.values()) {
            for method in resource["methods"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                let path = method["flatPath"]
                    .as_str()
                    .or(method["path"].as_str())
                    .unwrap_or_default();
                out.push((
                    method["httpMethod"].as_str().unwrap_or_default().to_owned(),
                    path.to_owned(),
                    method["parameters"].clone(),
                ));
            }
            walk(&resource["resources"], out);
        }
    }
    let mut out = Vec::new();
    walk(&doc["resources"], &mut out);
    out
}

#[test]
fn every_route_exists_in_the_discovery_documents() -> anyhow::Result<()> {
    let dir = specs_dir()?;
    let load = |name: &str| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            dir.join(name),
        )?)?)
    };
    let iam = methods(&load("iam.v1.json")?);
    let sts = methods(&load("sts.v1.json")?);
    for route in ROUTES {
        let methods = match route.api {
            Api::Iam => &iam,
            Api::Sts => &sts,
            Api::IamCredentials => {
                // No discovery document for iamcredentials in specs/: pin the documented path.
                assert_eq!(
                    route.path,
                    "v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}:generateAccessToken"
                );
                continue;
            }
            Api::TestOnly => {
                assert!(
                    route.path.starts_with('_'),
                    "test-only routes live under /_: {}",
                    route.path
                );
                continue;
            }
        };
        let Some((_, _, params)) = methods
            .iter()
            .find(|(m, p, _)| m == route.method && p == route.path)
        else {
            bail!(
                "{} {} is not in the {:?} discovery document",
                route.method,
                route.path,
                route.api
            );
        };
        for query in route.query {
            assert!(
                params.get(*query).is_some(),
                "{} {} has no parameter {query}",
                route.method,
                route.path
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_schema_field_is_accepted_in_request_bodies() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(specs_dir()?.join("iam.v1.json"))?)?;
    let dummy = |schema: &Value| match schema["type"].as_str() {
        Some("string") => json!("x"),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        Some("integer") => json!(1),
        _ => json!({}),
    };
    let check = |schema: &str| -> Vec<(String, Value)> {
        doc["schemas"][schema]["properties"]
            .as_object()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), dummy(v))).collect())
            .unwrap_or_default()
    };
    let unknown_name = |body: &Value| {
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Unknown name")
    };
    for (i, (field, value)) in check("WorkloadIdentityPool").into_iter().enumerate() {
        let (_, body) = env
            .post(
                &format!("v1/{}?workloadIdentityPoolId=pool-{i:02}", pools(PROJECT)),
                json!({ field.clone(): value }),
            )
            .await?;
        assert!(
            !unknown_name(&body),
            "WorkloadIdentityPool.{field} refused: {body}"
        );
    }
    env.create_pool("parent").await?;
    let provider_fields = check("WorkloadIdentityPoolProvider")
        .into_iter()
        .map(|(k, v)| (k, v, false));
    let oidc_fields = check("Oidc").into_iter().map(|(k, v)| (k, v, true));
    for (field, value, nested) in provider_fields.chain(oidc_fields) {
        let body = if nested {
            json!({ "oidc": { field.clone(): value } })
        } else {
            json!({ field.clone(): value })
        };
        let (_, body) = env
            .post(
                &format!(
                    "v1/{}/parent/providers?workloadIdentityPoolProviderId=prov",
                    pools(PROJECT)
                ),
                body,
            )
            .await?;
        assert!(
            !unknown_name(&body),
            "provider field {field} refused: {body}"
        );
    }
    for (field, value) in check("Policy") {
        let (_, body) = env
            .post(
                &format!("v1/projects/-/serviceAccounts/{SA}:setIamPolicy"),
                json!({ "policy": { field.clone(): value } }),
            )
            .await?;
        assert!(!unknown_name(&body), "Policy.{field} refused: {body}");
    }
    Ok(())
}
