//! The GCP fake over real HTTP(S): pool and provider lifecycles with long-running operations and
//! soft delete, validation, IAM policy etags, the STS exchange and its refusals, impersonation,
//! fault injection, the write quota, and every route checked against the discovery documents.
//! This file holds the harness; the tests are in the submodules.

mod exchange;
mod google_auth;
mod lifecycle;
mod spec;

use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, bail, ensure};
use axum::{Json, Router, extract::State, routing::get};
use jsonwebtoken::get_current_timestamp as now;
use passport_e2e::{
    gcp::{GcpFake, GcpOptions},
    oidc::Issuer,
    serve::Server,
    tls::{Ca, install_crypto_provider},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) const PROJECT: &str = "demo-project";
pub(crate) const NUMBER: &str = "123456789012";
pub(crate) const SA: &str = "app@demo-project.iam.gserviceaccount.com";
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A running fake, a client trusting the stack CA, and a Kubernetes-like token issuer served
/// over HTTPS.
pub(crate) struct Env {
    pub(crate) fake: GcpFake,
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) issuer: Issuer,
    pub(crate) ca: Arc<Ca>,
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
    pub(crate) async fn start(
        configure: impl FnOnce(GcpOptions) -> GcpOptions,
    ) -> anyhow::Result<Self> {
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
            ca,
            _issuer_server: issuer_server,
        })
    }

    pub(crate) async fn call(
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

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Polls `v1/{operation}` until it is done (at most `max` polls), returning the polls
    /// it took and the final operation.
    pub(crate) async fn wait(&self, operation: &Value, max: u32) -> anyhow::Result<(u32, Value)> {
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
    pub(crate) async fn write(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let (status, op) = self.call(method, path, Some(body)).await?;
        ensure!(status == StatusCode::OK, "{path}: {status} {op}");
        Ok(self.wait(&op, 5).await?.1["response"].clone())
    }

    pub(crate) async fn create_pool(&self, id: &str) -> anyhow::Result<Value> {
        self.write(
            Method::POST,
            &format!("v1/{}?workloadIdentityPoolId={id}", pools(PROJECT)),
            json!({ "displayName": "Passport" }),
        )
        .await
    }

    pub(crate) async fn create_provider(
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
    pub(crate) fn k8s_token(
        &self,
        audience: &str,
        namespace: &str,
        exp: i64,
    ) -> anyhow::Result<String> {
        self.k8s_token_from(&self.issuer, audience, namespace, exp)
    }

    pub(crate) fn k8s_token_from(
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
    pub(crate) async fn exchange(
        &self,
        audience: &str,
        token: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
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

    pub(crate) async fn whoami(&self, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .get(format!("{}/_whoami", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    pub(crate) async fn impersonate(&self, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .post(self.fake.https().impersonation_url(SA))
            .bearer_auth(token)
            .json(&json!({ "scope": [SCOPE], "lifetime": "3600s" }))
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    pub(crate) async fn set_policy(&self, members: &[&str]) -> anyhow::Result<()> {
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

pub(crate) fn pools(project: &str) -> String {
    format!("projects/{project}/locations/global/workloadIdentityPools")
}

pub(crate) fn audience(pool: &str, provider: &str) -> String {
    format!(
        "//iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{pool}/providers/{provider}"
    )
}

pub(crate) fn k8s_mapping() -> Value {
    json!({
        "google.subject": "assertion.sub",
        "attribute.namespace": "assertion['kubernetes.io']['namespace']",
        "attribute.service_account_name": "assertion['kubernetes.io']['serviceaccount']['name']",
    })
}

pub(crate) fn oidc_provider(issuer: &str, extra: Value) -> Value {
    let mut oidc = json!({ "issuerUri": issuer });
    if let (Some(oidc), Some(extra)) = (oidc.as_object_mut(), extra.as_object()) {
        oidc.extend(extra.clone());
    }
    json!({ "attributeMapping": k8s_mapping(), "oidc": oidc })
}

pub(crate) fn assert_error(actual: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(actual.0, status, "{}", actual.1);
    assert_eq!(actual.1["error"]["status"], code, "{}", actual.1);
    assert_eq!(actual.1["error"]["code"], status.as_u16(), "{}", actual.1);
}

pub(crate) fn assert_oauth(actual: &(StatusCode, Value), error: &str, mentions: &str) {
    assert_eq!(actual.0, StatusCode::BAD_REQUEST, "{}", actual.1);
    assert_eq!(actual.1["error"], error, "{}", actual.1);
    let description = actual.1["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(mentions),
        "{description:?} should mention {mentions:?}"
    );
}
