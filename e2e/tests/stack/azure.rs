//! The Azure fake over real HTTP(S): ARM identity and federated identity credential endpoints
//! (status codes, validation, the 20-per-identity limit, 409 on concurrent writes, bearer auth,
//! api-versions and routes checked against the swagger) and the Entra token exchange.

mod arm;
mod entra;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::get};
use passport_e2e::{
    azure::{AzureFake, AzureOptions, IdentitySeed, TOKEN_EXCHANGE_AUDIENCE},
    oidc::Issuer,
    serve::Server,
    tls::{self, Ca},
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "5c5f1e4a-9b7e-4c39-8c8e-2f6a1d2b3c4d";
const UNKNOWN_TENANT: &str = "0b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8";
const SUB: &str = "6f1c0a8e-1111-4b2c-9d3e-000000000001";
const OTHER_SUB: &str = "6f1c0a8e-2222-4b2c-9d3e-000000000002";
const API: &str = "2023-01-31";
const STATIC: &str = "static-arm-token-for-tests";
const SP_CLIENT: &str = "3c1d7b2a-0000-4000-8000-00000000c11e";
const SP_SECRET: &str = "sp-secret-value";
const SUBJECT: &str = "system:serviceaccount:apps:api";

/// A Kubernetes-like service-account issuer over HTTPS (discovery + JWKS).
struct TestIssuer {
    key: Arc<OnceLock<Issuer>>,
    server: Server,
}

impl TestIssuer {
    async fn start(ca: &Ca) -> anyhow::Result<Self> {
        let key: Arc<OnceLock<Issuer>> = Arc::new(OnceLock::new());
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(k): State<Arc<OnceLock<Issuer>>>| async move {
                    Json(k.get().map(Issuer::discovery).unwrap_or_default())
                }),
            )
            .route(
                "/openid/v1/jwks",
                get(|State(k): State<Arc<OnceLock<Issuer>>>| async move {
                    Json(k.get().map(Issuer::jwks).unwrap_or_default())
                }),
            )
            .with_state(key.clone());
        let server = Server::https(router, ca.loopback_server_config().await?).await?;
        key.set(Issuer::generate(&server.url())?)
            .map_err(|_| anyhow::anyhow!("issuer key set twice"))?;
        Ok(Self { key, server })
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// A service-account token shaped like kube-apiserver's, valid for `ttl` seconds from now
    /// (negative: already expired).
    fn token(&self, iss: &str, sub: &str, aud: &str, ttl: i64) -> anyhow::Result<String> {
        let now = i64::try_from(jsonwebtoken::get_current_timestamp())?;
        let claims = json!({
            "iss": iss, "sub": sub, "aud": [aud],
            "exp": now + ttl, "iat": now - 600, "nbf": now - 600,
            "kubernetes.io": {
                "namespace": "apps",
                "serviceaccount": {"name": "api", "uid": "0d6c5b2e-5f7a-4c4e-9d1a-6a7b8c9d0e1f"},
                "pod": {"name": "api-0", "uid": "1e7d6c3f-6a8b-4d5f-8e2b-7b8c9d0e1f2a"},
            },
        });
        self.key
            .get()
            .ok_or_else(|| anyhow::anyhow!("issuer key not set"))?
            .sign(&claims)
    }

    /// A valid token for `SUBJECT` and the token-exchange audience.
    fn good_token(&self) -> anyhow::Result<String> {
        self.token(&self.url(), SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 3600)
    }
}

struct Env {
    fake: AzureFake,
    client: reqwest::Client,
    issuer: TestIssuer,
    /// Two identities in TENANT/SUB and one in OTHER_TENANT/OTHER_SUB.
    app: IdentitySeed,
    worker: IdentitySeed,
    foreign: IdentitySeed,
}

async fn env(tweak: impl FnOnce(AzureOptions) -> AzureOptions) -> anyhow::Result<Env> {
    tls::install_crypto_provider();
    let ca = Arc::new(Ca::new()?);
    let issuer = TestIssuer::start(&ca).await?;
    let app = IdentitySeed::new(SUB, "rg-apps", "app", TENANT);
    let worker = IdentitySeed::new(SUB, "rg-apps", "worker", TENANT);
    let foreign = IdentitySeed::new(OTHER_SUB, "rg", "elsewhere", OTHER_TENANT);
    let options = AzureOptions::new(ca.clone())
        .identity(app.clone())
        .identity(worker.clone())
        .identity(foreign.clone())
        .service_principal(TENANT, SP_CLIENT, SP_SECRET)
        .static_token(STATIC)
        .fic_write_time(Duration::from_millis(5));
    let fake = AzureFake::start(tweak(options)).await?;
    Ok(Env {
        client: ca.client()?,
        fake,
        issuer,
        app,
        worker,
        foreign,
    })
}

/// Sends a request; returns the status and the JSON body (Null when empty).
async fn send(request: RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok((status, body))
}

fn arm_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn aadsts(body: &Value) -> (Option<&str>, Option<u64>) {
    (body["error"].as_str(), body["error_codes"][0].as_u64())
}

impl Env {
    fn fic_url(&self, seed: &IdentitySeed, name: &str) -> String {
        format!(
            "{}{}/federatedIdentityCredentials/{name}?api-version={API}",
            self.fake.arm_url(),
            seed.id()
        )
    }

    async fn put_fic(
        &self,
        seed: &IdentitySeed,
        name: &str,
        issuer: &str,
        subject: &str,
        audiences: &[&str],
    ) -> anyhow::Result<(StatusCode, Value)> {
        let body =
            json!({"properties": {"issuer": issuer, "subject": subject, "audiences": audiences}});
        send(
            self.client
                .put(self.fic_url(seed, name))
                .bearer_auth(STATIC)
                .json(&body),
        )
        .await
    }

    async fn arm_get(&self, url: &str) -> anyhow::Result<(StatusCode, Value)> {
        send(self.client.get(url).bearer_auth(STATIC)).await
    }

    async fn exchange(
        &self,
        tenant: &str,
        client_id: &str,
        assertion: &str,
        scope: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ];
        send(self.client.post(self.fake.token_url(tenant)).form(&form)).await
    }

    /// Polls until a FIC write on `seed` is in flight (fails after 5 s).
    async fn wait_until_busy(&self, seed: &IdentitySeed) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self
            .fake
            .write_in_flight(&seed.subscription_id, &seed.resource_group, &seed.name)
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no write in flight on {}",
                seed.name
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Trusts the test issuer for `SUBJECT` on the app identity.
    async fn trust_app(&self) -> anyhow::Result<()> {
        let (status, body) = self
            .put_fic(
                &self.app,
                "apps-api",
                &self.issuer.url(),
                SUBJECT,
                &[TOKEN_EXCHANGE_AUDIENCE],
            )
            .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "{status}: {body}");
        Ok(())
    }
}
