//! The Azure fake over real HTTP(S): ARM identity and federated identity credential endpoints
//! (status codes, validation, the 20-per-identity limit, 409 on concurrent writes, bearer auth,
//! api-versions and routes checked against the swagger) and the Entra token exchange.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::get};
use passport_e2e::{
    azure::{
        ARM_SCOPE, AzureFake, AzureOptions, IdentitySeed, MAX_FICS_PER_IDENTITY,
        TOKEN_EXCHANGE_AUDIENCE,
        spec::{self, examples},
    },
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
    _ca: Arc<Ca>,
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
        _ca: ca,
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

#[tokio::test]
async fn fic_create_get_list_update_delete() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let iss = env.issuer.url();
    let (status, created) = env
        .put_fic(
            &env.app,
            "apps-api",
            &iss,
            SUBJECT,
            &["api://AzureADTokenExchange"],
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["id"],
        format!(
            "/subscriptions/{SUB}/resourcegroups/rg-apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app/federatedIdentityCredentials/apps-api"
        )
    );
    assert_eq!(created["properties"]["subject"], SUBJECT);

    let (status, updated) = env
        .put_fic(
            &env.app,
            "apps-api",
            &iss,
            "system:serviceaccount:apps:other",
            &["api://AzureADTokenExchange"],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{updated}");

    // Resource IDs are case-insensitive: a lower-cased path finds the same credential.
    let lower = format!(
        "{}/subscriptions/{SUB}/resourcegroups/RG-APPS/providers/microsoft.managedidentity/userassignedidentities/APP/federatedIdentityCredentials/APPS-API?api-version={API}",
        env.fake.arm_url()
    );
    let (status, got) = env.arm_get(&lower).await?;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["name"], "apps-api");
    assert_eq!(
        got["properties"]["subject"],
        "system:serviceaccount:apps:other"
    );

    let list_url = format!(
        "{}{}/federatedIdentityCredentials?api-version={API}",
        env.fake.arm_url(),
        env.app.id()
    );
    let (status, list) = env.arm_get(&list_url).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["value"][0], got);
    assert!(list.get("nextLink").is_none());

    let delete = || {
        send(
            env.client
                .delete(env.fic_url(&env.app, "apps-api"))
                .bearer_auth(STATIC),
        )
    };
    assert_eq!(delete().await?.0, StatusCode::OK);
    assert_eq!(delete().await?.0, StatusCode::NO_CONTENT);
    let (status, body) = env.arm_get(&env.fic_url(&env.app, "apps-api")).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    assert!(env.fake.fics(SUB, "rg-apps", "app").is_empty());
    Ok(())
}

#[tokio::test]
async fn responses_have_the_swagger_example_shapes() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let example: Value = serde_json::from_str(examples::CREATE)?;
    let parameters = &example["parameters"]["parameters"];
    let (status, created) = send(
        env.client
            .put(env.fic_url(&env.app, "ficResourceName"))
            .bearer_auth(STATIC)
            .json(parameters),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED);
    let expected = &example["responses"]["201"]["body"];
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&created), keys(expected));
    assert_eq!(created["type"], expected["type"]);
    assert_eq!(created["properties"], expected["properties"]);

    let list_example: Value = serde_json::from_str(examples::LIST)?;
    let list_url = format!(
        "{}{}/federatedIdentityCredentials?api-version={API}&$top=20",
        env.fake.arm_url(),
        env.app.id()
    );
    let (_, list) = env.arm_get(&list_url).await?;
    assert_eq!(
        keys(&list["value"][0]),
        keys(&list_example["responses"]["200"]["body"]["value"][0])
    );

    let delete_example: Value = serde_json::from_str(examples::DELETE)?;
    let declared: Vec<u16> = delete_example["responses"]
        .as_object()
        .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    let (status, _) = send(
        env.client
            .delete(env.fic_url(&env.app, "ficResourceName"))
            .bearer_auth(STATIC),
    )
    .await?;
    assert!(
        declared.contains(&status.as_u16()),
        "{status} not in {declared:?}"
    );
    let get_example: Value = serde_json::from_str(examples::GET)?;
    assert_eq!(get_example["parameters"]["api-version"], API);
    Ok(())
}

#[tokio::test]
async fn served_routes_and_api_versions_match_the_swagger() -> anyhow::Result<()> {
    let documents = spec::documents()?;
    spec::check_routes(&documents)?;
    let env = env(|o| o).await?;
    for route in spec::ROUTES {
        for doc in &documents {
            assert!(doc.operation_id(&route.method, route.template).is_some());
        }
    }
    let identity_url = |version: Option<&str>| {
        let base = format!("{}{}", env.fake.arm_url(), env.app.id());
        match version {
            Some(v) => format!("{base}?api-version={v}"),
            None => base,
        }
    };
    for doc in &documents {
        let (status, body) = env.arm_get(&identity_url(Some(&doc.version))).await?;
        assert_eq!(status, StatusCode::OK, "{}: {body}", doc.version);
    }
    for (version, code) in [
        (None, "MissingApiVersionParameter"),
        (Some("2020-01-01"), "NoRegisteredProviderFound"),
        (Some("2025-01-31-preview"), "NoRegisteredProviderFound"),
        (Some("latest"), "InvalidApiVersionParameter"),
    ] {
        let (status, body) = env.arm_get(&identity_url(version)).await?;
        assert_eq!(
            (status, arm_code(&body)),
            (StatusCode::BAD_REQUEST, code),
            "{version:?}"
        );
    }
    // A path the swagger does not declare, and a method it does not declare.
    let (status, _) = env
        .arm_get(&format!(
            "{}/subscriptions/{SUB}/providers/Microsoft.Foo/bars?api-version={API}",
            env.fake.arm_url()
        ))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(env.client.post(identity_url(Some(API))).bearer_auth(STATIC)).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
    );
    Ok(())
}

#[tokio::test]
async fn identities_are_read_and_written_through_arm() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let url = format!("{}{}?api-version={API}", env.fake.arm_url(), env.app.id());
    let (status, identity) = env.arm_get(&url).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        identity["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    assert_eq!(identity["name"], "app");
    assert_eq!(identity["location"], "westus");
    assert_eq!(identity["properties"]["clientId"], env.app.client_id);
    assert_eq!(identity["properties"]["principalId"], env.app.principal_id);
    assert_eq!(identity["properties"]["tenantId"], TENANT);

    let new_url = format!(
        "{}/subscriptions/{SUB}/resourceGroups/rg-apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/created?api-version={API}",
        env.fake.arm_url()
    );
    let put = |body: Value| send(env.client.put(&new_url).bearer_auth(STATIC).json(&body));
    let (status, body) = put(json!({"tags": {}})).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::BAD_REQUEST, "LocationRequired")
    );
    let (status, created) = put(json!({"location": "eastus", "tags": {"team": "a"}})).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["properties"]["tenantId"], TENANT);
    assert_eq!(
        created["properties"]["clientId"].as_str().map(str::len),
        Some(36)
    );
    let (status, updated) = put(json!({"location": "eastus", "tags": {"team": "b"}})).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["tags"]["team"], "b");
    assert_eq!(
        updated["properties"]["clientId"],
        created["properties"]["clientId"]
    );

    let delete = || send(env.client.delete(&new_url).bearer_auth(STATIC));
    assert_eq!(delete().await?.0, StatusCode::OK);
    assert_eq!(delete().await?.0, StatusCode::NO_CONTENT);
    let (status, body) = env.arm_get(&new_url).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let unknown_sub = url.replace(SUB, "6f1c0a8e-9999-4b2c-9d3e-000000000009");
    let (status, body) = env.arm_get(&unknown_sub).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );
    Ok(())
}

#[tokio::test]
async fn invalid_fic_writes_are_refused() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let iss = env.issuer.url();
    let aud = [TOKEN_EXCHANGE_AUDIENCE];
    let long = "x".repeat(601);
    let long_issuer = format!("{iss}/{}", "p".repeat(600));
    let cases: Vec<(&str, &str, &str, &[&str], &str)> = vec![
        ("ab", &iss, SUBJECT, &aud, "is invalid"),
        ("-starts-with-dash", &iss, SUBJECT, &aud, "is invalid"),
        ("has.dot", &iss, SUBJECT, &aud, "is invalid"),
        ("no-audience", &iss, SUBJECT, &[], "exactly 1 audience"),
        (
            "two-audiences",
            &iss,
            SUBJECT,
            &["a", "b"],
            "exactly 1 audience",
        ),
        (
            "plain-http",
            "http://issuer.test",
            SUBJECT,
            &aud,
            "https URL",
        ),
        ("long-issuer", &long_issuer, SUBJECT, &aud, "at most 600"),
        ("long-subject", &iss, &long, &aud, "at most 600"),
    ];
    for (name, issuer, subject, audiences, message) in cases {
        let (status, body) = env
            .put_fic(&env.app, name, issuer, subject, audiences)
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(arm_code(&body), "BadRequest", "{name}");
        let text = body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{name}: {text}");
    }

    let (status, _) = env.put_fic(&env.app, "first", &iss, SUBJECT, &aud).await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = env.put_fic(&env.app, "second", &iss, SUBJECT, &aud).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Issuer and subject combination already exists")
    );
    // The same pair on another identity is fine.
    assert_eq!(
        env.put_fic(&env.worker, "second", &iss, SUBJECT, &aud)
            .await?
            .0,
        StatusCode::CREATED
    );

    let missing = IdentitySeed::new(SUB, "rg-apps", "missing", TENANT);
    let (status, body) = env.put_fic(&missing, "fic", &iss, SUBJECT, &aud).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ParentResourceNotFound")
    );
    let (status, body) = send(
        env.client
            .put(env.fic_url(&env.app, "bad-json"))
            .bearer_auth(STATIC)
            .body("{not json"),
    )
    .await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidRequestContent")
    );
    let (status, body) = send(
        env.client
            .put(env.fic_url(&env.app, "empty"))
            .bearer_auth(STATIC)
            .json(&json!({})),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        env.fake.fics(SUB, "rg-apps", "app").len(),
        1,
        "refused writes stored nothing"
    );
    Ok(())
}

#[tokio::test]
async fn an_identity_holds_at_most_twenty_fics() -> anyhow::Result<()> {
    let env = env(|o| o.fic_write_time(Duration::ZERO)).await?;
    let iss = env.issuer.url();
    let aud = [TOKEN_EXCHANGE_AUDIENCE];
    for n in 0..MAX_FICS_PER_IDENTITY {
        let (status, body) = env
            .put_fic(
                &env.app,
                &format!("fic-{n}"),
                &iss,
                &format!("sub-{n}"),
                &aud,
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{n}: {body}");
    }
    let (status, body) = env
        .put_fic(&env.app, "fic-21st", &iss, "sub-21", &aud)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 20"), "{message}");
    // Updating one of the twenty is still allowed; deleting one makes room.
    assert_eq!(
        env.put_fic(&env.app, "fic-0", &iss, "sub-0-changed", &aud)
            .await?
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            env.client
                .delete(env.fic_url(&env.app, "fic-1"))
                .bearer_auth(STATIC)
        )
        .await?
        .0,
        StatusCode::OK
    );
    assert_eq!(
        env.put_fic(&env.app, "fic-21st", &iss, "sub-21", &aud)
            .await?
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        env.fake.fics(SUB, "rg-apps", "app").len(),
        MAX_FICS_PER_IDENTITY
    );

    // Paging through the twenty with $top follows nextLink.
    let mut url = format!(
        "{}{}/federatedIdentityCredentials?api-version={API}&$top=7",
        env.fake.arm_url(),
        env.app.id()
    );
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, page) = env.arm_get(&url).await?;
        assert_eq!(status, StatusCode::OK);
        seen.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), MAX_FICS_PER_IDENTITY);
    Ok(())
}

#[tokio::test]
async fn concurrent_writes_to_one_identity_get_409() -> anyhow::Result<()> {
    let env = env(|o| o.fic_write_time(Duration::from_millis(800))).await?;
    let iss = env.issuer.url();
    let aud = [TOKEN_EXCHANGE_AUDIENCE];
    // The second write starts once the first is in flight, and lands within its 800 ms.
    let (first, second) =
        tokio::join!(env.put_fic(&env.app, "first", &iss, "sub-a", &aud), async {
            env.wait_until_busy(&env.app).await?;
            env.put_fic(&env.app, "second", &iss, "sub-b", &aud).await
        },);
    let (first, second) = (first?, second?);
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    assert_eq!(second.0, StatusCode::CONFLICT, "{}", second.1);
    assert_eq!(
        arm_code(&second.1),
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    );
    assert_eq!(env.fake.fics(SUB, "rg-apps", "app").len(), 1);
    assert!(!env.fake.write_in_flight(SUB, "rg-apps", "app"));

    // A delete is a write too; and once the first write finished the identity takes writes.
    let (put, delete) = tokio::join!(env.put_fic(&env.app, "third", &iss, "sub-c", &aud), async {
        env.wait_until_busy(&env.app).await?;
        send(
            env.client
                .delete(env.fic_url(&env.app, "first"))
                .bearer_auth(STATIC),
        )
        .await
    },);
    assert_eq!(put?.0, StatusCode::CREATED);
    let (status, body) = delete?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(env.fake.fics(SUB, "rg-apps", "app").len(), 2);

    // Writes to different identities do not contend.
    let (a, b) = tokio::join!(
        env.put_fic(&env.app, "fourth", &iss, "sub-d", &aud),
        async {
            env.wait_until_busy(&env.app).await?;
            env.put_fic(&env.worker, "fourth", &iss, "sub-d", &aud)
                .await
        },
    );
    assert_eq!((a?.0, b?.0), (StatusCode::CREATED, StatusCode::CREATED));
    Ok(())
}

#[tokio::test]
async fn arm_requires_an_entra_token_for_arm_in_the_right_tenant() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let url = format!("{}{}?api-version={API}", env.fake.arm_url(), env.app.id());
    let response = env.client.get(&url).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").is_some());
    let body: Value = response.json().await?;
    assert_eq!(arm_code(&body), "AuthenticationFailed");
    let (status, body) = send(env.client.get(&url).bearer_auth("not-a-token")).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );

    env.trust_app().await?;
    let assertion = env.issuer.good_token()?;
    let (status, token) = env
        .exchange(TENANT, &env.app.client_id, &assertion, ARM_SCOPE)
        .await?;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3599);
    assert_eq!(token["ext_expires_in"], 3599);
    let access = token["access_token"].as_str().unwrap_or_default();
    let (status, identity) = send(env.client.get(&url).bearer_auth(access)).await?;
    assert_eq!(status, StatusCode::OK, "{identity}");
    let (status, who) = send(
        env.client
            .get(format!("{}/_whoami", env.fake.arm_url()))
            .bearer_auth(access),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(who["clientId"], env.app.client_id);
    assert_eq!(who["principalId"], env.app.principal_id);
    assert_eq!(who["tenantId"], TENANT);
    assert_eq!(
        who["identityId"].as_str().map(str::to_ascii_lowercase),
        Some(env.app.id().to_ascii_lowercase())
    );

    // A token for another resource is refused by ARM.
    let (status, vault) = env
        .exchange(
            TENANT,
            &env.app.client_id,
            &assertion,
            "https://vault.azure.net/.default",
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(
        env.client
            .get(&url)
            .bearer_auth(vault["access_token"].as_str().unwrap_or_default()),
    )
    .await?;
    assert_eq!(
        (status, arm_code(&body)),
        (
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience"
        )
    );
    // A token from this tenant is refused in another tenant's subscription.
    let foreign_url = format!(
        "{}{}?api-version={API}",
        env.fake.arm_url(),
        env.foreign.id()
    );
    let (status, body) = send(env.client.get(&foreign_url).bearer_auth(access)).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationTokenTenant")
    );

    // A service principal with a client secret also gets an ARM token.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", SP_CLIENT),
        ("scope", ARM_SCOPE),
        ("client_secret", SP_SECRET),
    ];
    let (status, sp) = send(env.client.post(env.fake.token_url(TENANT)).form(&form)).await?;
    assert_eq!(status, StatusCode::OK, "{sp}");
    let (status, _) = send(
        env.client
            .get(&url)
            .bearer_auth(sp["access_token"].as_str().unwrap_or_default()),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", SP_CLIENT),
        ("scope", ARM_SCOPE),
        ("client_secret", "nope"),
    ];
    let (status, body) = send(env.client.post(env.fake.token_url(TENANT)).form(&wrong)).await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::UNAUTHORIZED,
            (Some("invalid_client"), Some(7000215))
        )
    );
    Ok(())
}

#[tokio::test]
async fn token_exchange_refuses_assertions_that_do_not_match_exactly() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let iss = env.issuer.url();
    let client = env.app.client_id.clone();
    // No FIC at all yet.
    let (status, body) = env
        .exchange(TENANT, &client, &env.issuer.good_token()?, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::UNAUTHORIZED,
            (Some("invalid_client"), Some(70021))
        ),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AADSTS70021: No matching federated identity record found")
    );

    env.trust_app().await?;
    let stranger = Issuer::generate(&iss)?;
    let mut tampered = env.issuer.good_token()?;
    let other_sig = env.issuer.token(
        &iss,
        "system:serviceaccount:apps:other",
        TOKEN_EXCHANGE_AUDIENCE,
        3600,
    )?;
    tampered.truncate(tampered.rfind('.').unwrap_or_default());
    tampered.push_str(&other_sig[other_sig.rfind('.').unwrap_or_default()..]);
    let stranger_claims = json!({"iss": iss, "sub": SUBJECT, "aud": [TOKEN_EXCHANGE_AUDIENCE],
        "exp": jsonwebtoken::get_current_timestamp() + 600, "iat": jsonwebtoken::get_current_timestamp()});
    let cases: Vec<(&str, String, u64)> = vec![
        (
            "subject mismatch",
            env.issuer.token(
                &iss,
                "system:serviceaccount:apps:other",
                TOKEN_EXCHANGE_AUDIENCE,
                3600,
            )?,
            700213,
        ),
        (
            "subject case differs",
            env.issuer.token(
                &iss,
                "system:serviceaccount:Apps:api",
                TOKEN_EXCHANGE_AUDIENCE,
                3600,
            )?,
            700213,
        ),
        (
            "issuer with trailing slash",
            env.issuer
                .token(&format!("{iss}/"), SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 3600)?,
            700211,
        ),
        (
            "audience mismatch",
            env.issuer.token(&iss, SUBJECT, "sts.amazonaws.com", 3600)?,
            700212,
        ),
        (
            "signed by another key",
            stranger.sign(&stranger_claims)?,
            700027,
        ),
        ("tampered signature", tampered, 700027),
        (
            "expired",
            env.issuer
                .token(&iss, SUBJECT, TOKEN_EXCHANGE_AUDIENCE, -120)?,
            700024,
        ),
    ];
    for (case, assertion, code) in cases {
        let (status, body) = env.exchange(TENANT, &client, &assertion, ARM_SCOPE).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(
            aadsts(&body),
            (Some("invalid_client"), Some(code)),
            "{case}: {body}"
        );
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{case}: {description}"
        );
    }

    let good = env.issuer.good_token()?;
    let (status, body) = env
        .exchange(OTHER_TENANT, &client, &good, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("unauthorized_client"), Some(700016))
        ),
        "wrong tenant"
    );
    let (status, body) = env
        .exchange(UNKNOWN_TENANT, &client, &good, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_request"), Some(90002))
        ),
        "unknown tenant"
    );
    let (status, body) = env
        .exchange(TENANT, &client, "not.a.jwt", ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body).1),
        (StatusCode::BAD_REQUEST, Some(50027))
    );
    let (status, body) = env
        .exchange(TENANT, &client, &good, "https://management.azure.com")
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_scope"), Some(1002012))
        )
    );
    let form = [
        ("grant_type", "password"),
        ("client_id", client.as_str()),
        ("scope", ARM_SCOPE),
    ];
    let (status, body) = send(env.client.post(env.fake.token_url(TENANT)).form(&form)).await?;
    assert_eq!(
        (status, aadsts(&body).0),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.as_str()),
        ("scope", ARM_SCOPE),
    ];
    let (status, body) = send(env.client.post(env.fake.token_url(TENANT)).form(&form)).await?;
    assert_eq!(
        (status, aadsts(&body).1),
        (StatusCode::UNAUTHORIZED, Some(7000218))
    );

    // After all that, the exact match still works.
    let (status, body) = env.exchange(TENANT, &client, &good, ARM_SCOPE).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn new_fics_take_effect_after_the_propagation_delay() -> anyhow::Result<()> {
    let env = env(|o| o.fic_propagation(Duration::from_millis(300))).await?;
    env.trust_app().await?;
    let good = env.issuer.good_token()?;
    let (status, body) = env
        .exchange(TENANT, &env.app.client_id, &good, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body).1),
        (StatusCode::UNAUTHORIZED, Some(70021)),
        "{body}"
    );
    // Poll like a client retrying AADSTS70021 would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = env
            .exchange(TENANT, &env.app.client_id, &good, ARM_SCOPE)
            .await?;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn discovery_documents_point_back_at_the_fake() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let authority = env.fake.authority_url();
    assert!(authority.starts_with("https://") && authority.ends_with('/'));
    let base = authority.trim_end_matches('/');
    let (status, config) = send(env.client.get(format!(
        "{base}/{TENANT}/v2.0/.well-known/openid-configuration"
    )))
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(config["issuer"], format!("{base}/{TENANT}/v2.0"));
    let (status, keys) = send(
        env.client
            .get(config["jwks_uri"].as_str().unwrap_or_default()),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(keys["keys"].as_array().is_some_and(|k| !k.is_empty()));
    let (status, body) = send(env.client.get(format!(
        "{base}/{UNKNOWN_TENANT}/v2.0/.well-known/openid-configuration"
    )))
    .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_tenant"), Some(90002))
        )
    );

    let authorize = format!("{base}/{TENANT}/oauth2/v2.0/authorize");
    let (status, instance) = send(
        env.client
            .get(format!("{base}/common/discovery/instance"))
            .query(&[
                ("api-version", "1.1"),
                ("authorization_endpoint", authorize.as_str()),
            ]),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        instance["tenant_discovery_endpoint"],
        format!("{base}/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    let host = base.trim_start_matches("https://");
    assert_eq!(instance["metadata"][0]["aliases"][0], host);

    // Over plain HTTP the same documents point at the HTTP server.
    let http = env.fake.http_url();
    let (status, config) = send(env.client.get(format!(
        "{http}/{TENANT}/v2.0/.well-known/openid-configuration"
    )))
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config["token_endpoint"],
        format!("{http}/{TENANT}/oauth2/v2.0/token")
    );
    Ok(())
}

#[tokio::test]
async fn http_and_https_share_state_and_faults_are_injected() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    env.trust_app().await?;
    let http_url = format!(
        "{}{}/federatedIdentityCredentials/apps-api?api-version={API}",
        env.fake.http_url(),
        env.app.id()
    );
    let (status, fic) = env.arm_get(&http_url).await?;
    assert_eq!(status, StatusCode::OK, "{fic}");

    env.fake
        .faults()
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    let response = env.client.get(&http_url).bearer_auth(STATIC).send().await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        env.arm_get(&http_url).await?.0,
        StatusCode::OK,
        "only the next call fails"
    );

    // The control endpoint, as a stack in another process would be driven.
    let control = send(
        env.client
            .post(format!("{}/_faults", env.fake.arm_url()))
            .json(&json!({"status": 500, "count": 2})),
    )
    .await?;
    assert_eq!(control.0, StatusCode::NO_CONTENT);
    let token_call = env
        .exchange(
            TENANT,
            &env.app.client_id,
            &env.issuer.good_token()?,
            ARM_SCOPE,
        )
        .await?;
    assert_eq!(
        token_call.0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Entra is faulted too"
    );
    assert_eq!(
        env.arm_get(&http_url).await?.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(env.fake.faults().pending(), 0);
    assert_eq!(env.arm_get(&http_url).await?.0, StatusCode::OK);
    Ok(())
}
