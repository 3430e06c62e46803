//! The gcp provider against the in-process GCP fake: the real google-cloud-auth credentials
//! (a service-account key the fake issued, self-signed JWTs it verifies), reqwest for pools
//! and providers, and google-cloud-iam-admin-v1 for service-account policies. Every request
//! goes through a recording proxy, so tests can read what Passport sent and interfere.
//!
//! The provider talks plain HTTP to the proxy: google-cloud-iam-admin-v1 builds its own HTTP
//! client, which trusts only the platform roots (SSL_CERT_FILE), and a test cannot set the
//! environment of its own process. TLS with PASSPORT_CA_BUNDLE is covered by
//! `pools_work_over_tls_with_the_ca_bundle`.

mod bindings;
mod failures;
mod pools;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use google_cloud_auth::credentials::service_account::{self, AccessSpecifier};
use passport_e2e::{
    gcp::{GcpFake, GcpOptions},
    serve::Server,
    tls::{Ca, install_crypto_provider},
};
use passport_operator::cloud::{
    Calls, CloudConfig, Owner, WorkloadIdentityIntent, gcp::GcpProvider, retry::Backoff,
};
use serde_json::{Value, json};

pub const PROJECT_ID: &str = "demo-project";
pub const NUMBER: &str = "123456789012";
pub const SA: &str = "app@demo-project.iam.gserviceaccount.com";
pub const OPERATOR_SA: &str = "passport@demo-project.iam.gserviceaccount.com";
pub const ISSUER: &str = "https://issuer.example.com";
pub const MEMBER: &str = "user:concurrent@example.com";

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    seen: Mutex<Vec<Recorded>>,
    /// Make one concurrent setIamPolicy (adding [`MEMBER`]) just before the next one passes.
    interfere: AtomicBool,
    /// Forward the next POST whose path ends with this, then answer 503 as if the answer was lost.
    lose_answer: Mutex<Option<String>>,
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    record(&state, &parts.method, &parts.uri, &body);
    if path.ends_with(":setIamPolicy") && state.interfere.swap(false, Ordering::SeqCst) {
        let auth = parts.headers.get("authorization").cloned();
        concurrent_write(&state, &path.replace(":setIamPolicy", ""), auth).await;
    }
    let url = format!(
        "{}{}",
        state.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = state.client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name != "host" {
            upstream = upstream.header(name, value);
        }
    }
    let lose = {
        let mut lose = state.lose_answer.lock().unwrap();
        let hit = parts.method == Method::POST
            && lose.as_deref().is_some_and(|suffix| path.ends_with(suffix));
        if hit {
            *lose = None;
        }
        hit
    };
    match upstream.send().await {
        Ok(_) if lose => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#,
        )
            .into_response(),
        Ok(response) => {
            let status = response.status();
            let headers: HeaderMap = response.headers().clone();
            let bytes = response.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            if let Some(kind) = headers.get("content-type") {
                out.headers_mut().insert("content-type", kind.clone());
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

fn record(state: &ProxyState, method: &Method, uri: &Uri, body: &Bytes) {
    let query = uri
        .query()
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    state.seen.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        body,
    });
}

/// Another writer adds [`MEMBER`] to the policy, changing its etag.
async fn concurrent_write(
    state: &ProxyState,
    resource: &str,
    auth: Option<axum::http::HeaderValue>,
) {
    let url = |verb: &str| format!("{}{resource}:{verb}", state.upstream);
    let auth = auth.unwrap();
    let policy: Value = state
        .client
        .post(url("getIamPolicy"))
        .header("authorization", auth.clone())
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    bindings.push(json!({ "role": "roles/iam.workloadIdentityUser", "members": [MEMBER] }));
    let response = state
        .client
        .post(url("setIamPolicy"))
        .header("authorization", auth)
        .json(&json!({ "policy": { "bindings": bindings, "etag": policy["etag"] } }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "concurrent write failed");
}

/// A running fake behind the proxy, and a provider pointed at the proxy.
pub struct Env {
    pub fake: GcpFake,
    pub calls: Calls,
    pub provider: GcpProvider,
    pub config: CloudConfig,
    pub credentials: google_cloud_auth::credentials::Credentials,
    /// The fake itself, over plain HTTP, for reading back and seeding.
    pub client: reqwest::Client,
    pub direct: String,
    proxy: Arc<ProxyState>,
    _proxy_server: Server,
    pub ca: Arc<Ca>,
}

impl Env {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|o| o).await
    }

    pub async fn start_with(
        configure: impl FnOnce(GcpOptions) -> GcpOptions,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        let ca = Arc::new(Ca::new()?);
        let options = GcpOptions::new(ca.clone())
            .project(PROJECT_ID, NUMBER)
            .service_account(SA)
            .service_account(OPERATOR_SA)
            .require_authentication();
        let fake = GcpFake::start(configure(options)).await?;
        let key = fake.service_account_key(OPERATOR_SA)?;
        let credentials = service_account::Builder::new(key)
            .with_access_specifier(AccessSpecifier::from_scopes([
                "https://www.googleapis.com/auth/cloud-platform",
            ]))
            .build()?;
        let direct = fake.http().base;
        let proxy = Arc::new(ProxyState {
            upstream: direct.clone(),
            ..ProxyState::default()
        });
        let router = Router::new().fallback(forward).with_state(proxy.clone());
        let proxy_server = Server::http(router).await?;
        let config = CloudConfig {
            gcp_iam_endpoint: proxy_server.url(),
            backoff: Backoff::fast(),
            ..CloudConfig::default()
        };
        let calls = Calls::default();
        let provider = GcpProvider::new(&config, calls.clone(), credentials.clone()).await?;
        Ok(Self {
            fake,
            calls,
            provider,
            config,
            credentials,
            client: reqwest::Client::new(),
            direct,
            proxy,
            _proxy_server: proxy_server,
            ca,
        })
    }

    /// Requests the proxy saw, in order.
    pub fn seen(&self) -> Vec<Recorded> {
        self.proxy.seen.lock().unwrap().clone()
    }

    /// Requests the proxy saw that change state.
    pub fn writes(&self) -> Vec<Recorded> {
        self.seen()
            .into_iter()
            .filter(|r| r.method != "GET" && !r.path.ends_with(":getIamPolicy"))
            .collect()
    }

    pub fn forget_seen(&self) {
        self.proxy.seen.lock().unwrap().clear();
    }

    pub fn lose_next_answer(&self, path_suffix: &str) {
        *self.proxy.lose_answer.lock().unwrap() = Some(path_suffix.to_owned());
    }

    pub fn interfere_once(&self) {
        self.proxy.interfere.store(true, Ordering::SeqCst);
    }

    /// A call straight to the fake (not seen by the proxy, not counted).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}/{path}", self.direct))
            .bearer_auth(self.token().await?);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = StatusCode::from_u16(response.status().as_u16())?;
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| text.clone())?
        };
        Ok((status, value))
    }

    async fn token(&self) -> anyhow::Result<String> {
        let headers = match self.credentials.headers(http::Extensions::new()).await? {
            google_cloud_auth::credentials::CacheableResource::New { data, .. } => data,
            google_cloud_auth::credentials::CacheableResource::NotModified => {
                anyhow::bail!("no headers")
            }
        };
        let value = headers
            .get("authorization")
            .context("no authorization header")?
            .to_str()?;
        Ok(value.trim_start_matches("Bearer ").to_owned())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        anyhow::ensure!(status == StatusCode::OK, "GET {path}: {status} {body}");
        Ok(body)
    }

    /// A write straight to the fake that returns an operation, polled until done.
    pub async fn write(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let (status, mut op) = self.call(method, path, Some(body)).await?;
        anyhow::ensure!(status == StatusCode::OK, "{path}: {status} {op}");
        for _ in 0..10 {
            if op["done"] == json!(true) {
                return Ok(op["response"].clone());
            }
            let name = op["name"].as_str().context("operation name")?.to_owned();
            op = self.get(&format!("v1/{name}")).await?;
        }
        anyhow::bail!("operation not done: {op}")
    }

    pub async fn pool(&self, pool: &str) -> anyhow::Result<Value> {
        self.get(&format!("v1/{}", pool_path(pool))).await
    }

    pub async fn provider_of(&self, pool: &str, provider: &str) -> anyhow::Result<Value> {
        self.get(&format!("v1/{}/providers/{provider}", pool_path(pool)))
            .await
    }

    pub async fn policy(&self) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("v1/projects/-/serviceAccounts/{SA}:getIamPolicy"),
                Some(json!({})),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(body)
    }

    pub fn writes_count(&self) -> u64 {
        self.calls.writes(passport_operator::cloud::Cloud::Gcp)
    }
}

pub fn pool_path(pool: &str) -> String {
    format!("projects/{NUMBER}/locations/global/workloadIdentityPools/{pool}")
}

pub fn owner() -> Owner {
    Owner::trust("prod", "gcp-prod")
}

pub fn jwks(kid: &str) -> String {
    json!({ "keys": [{ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB" }] })
    .to_string()
}

/// A trust's intent for pool `pool` with provider `cluster`.
pub fn intent(pool: &str) -> WorkloadIdentityIntent {
    WorkloadIdentityIntent {
        project_number: NUMBER.into(),
        pool_id: pool.into(),
        provider_id: "cluster".into(),
        issuer: ISSUER.into(),
        allowed_audiences: vec!["gcp-sts".into()],
        attribute_mapping: BTreeMap::from([
            ("google.subject".into(), "assertion.sub".into()),
            (
                "attribute.namespace".into(),
                "assertion['kubernetes.io']['namespace']".into(),
            ),
        ]),
        attribute_condition: Some("attribute.namespace != 'kube-system'".into()),
        jwks_json: None,
        owner: owner(),
    }
}
