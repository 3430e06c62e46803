//! The Azure provider over real HTTPS against the in-process Azure fake: ARM for the
//! credentials, the fake's Entra endpoint for the operator's own token (a seeded service
//! principal, or workload identity federation through the stack's issuer).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use passport_crds::conditions::Reason;
use passport_e2e::{
    azure::{AzureFake, AzureOptions, IdentitySeed, TOKEN_EXCHANGE_AUDIENCE},
    stack::{self, Stack, StackConfig},
    tls::Ca,
};
use passport_operator::cloud::{
    Calls, Change, Cloud, CloudConfig, Deleted, ErrorKind, FederatedCredentialIntent,
    FederatedCredentials,
    azure::{AzureProvider, Credentials, credential_body, token::Proof},
    error::FEDERATED_CREDENTIAL_LIMIT,
    retry::Backoff,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SUB: &str = "6f1c0a8e-1111-4b2c-9d3e-000000000001";
const RG: &str = "rg-apps";
const SP_CLIENT: &str = "3c1d7b2a-0000-4000-8000-00000000c11e";
const SP_SECRET: &str = "operator-secret";
/// Lets the test read and write ARM directly, as another writer would.
const STATIC: &str = "static-arm-token-for-tests";
const ISSUER: &str = "https://oidc.prod-aks.azure.com/72f988bf/6b2c1f0e/";
const GET: &str = "GetFederatedIdentityCredential";
const PUT: &str = "PutFederatedIdentityCredential";

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn write(tag: &str, contents: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "passport-azure-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Env {
    fake: AzureFake,
    provider: Arc<AzureProvider>,
    calls: Calls,
    seed: IdentitySeed,
    /// Trusts the fake's CA, for direct ARM calls.
    http: reqwest::Client,
    config: CloudConfig,
    _ca: TempFile,
}

async fn env(write_time: Duration) -> Env {
    env_with(write_time, Backoff::fast()).await
}

async fn env_with(write_time: Duration, backoff: Backoff) -> Env {
    let ca = Arc::new(Ca::new().unwrap());
    let seed = IdentitySeed::new(SUB, RG, "payments-mi", TENANT);
    let fake = AzureFake::start(
        AzureOptions::new(ca.clone())
            .identity(seed.clone())
            .service_principal(TENANT, SP_CLIENT, SP_SECRET)
            .static_token(STATIC)
            .fic_write_time(write_time),
    )
    .await
    .unwrap();
    let ca_file = TempFile::write("ca.pem", &ca.cert_pem());
    let config = CloudConfig {
        ca_bundle: Some(ca_file.0.clone()),
        azure_arm_endpoint: fake.arm_url(),
        backoff,
        ..CloudConfig::default()
    };
    let calls = Calls::default();
    let provider = AzureProvider::new(&config, secret_credentials(&fake), calls.clone()).unwrap();
    Env {
        http: ca.client().unwrap(),
        provider: Arc::new(provider),
        calls,
        seed,
        fake,
        config,
        _ca: ca_file,
    }
}

fn secret_credentials(fake: &AzureFake) -> Credentials {
    Credentials::from_vars(|name| match name {
        "AZURE_TENANT_ID" => Some(TENANT.to_owned()),
        "AZURE_CLIENT_ID" => Some(SP_CLIENT.to_owned()),
        "AZURE_CLIENT_SECRET" => Some(SP_SECRET.to_owned()),
        "AZURE_AUTHORITY_HOST" => Some(fake.authority_url()),
        _ => None,
    })
    .unwrap()
}

impl Env {
    fn intent(&self, name: &str, subject: &str) -> FederatedCredentialIntent {
        FederatedCredentialIntent {
            identity: self.seed.id(),
            name: name.to_owned(),
            issuer: ISSUER.to_owned(),
            subject: subject.to_owned(),
            audience: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
        }
    }

    fn fic_url(&self, name: &str) -> String {
        format!(
            "{}{}/federatedIdentityCredentials/{name}?api-version=2023-01-31",
            self.fake.arm_url(),
            self.seed.id()
        )
    }

    /// Reads a credential through ARM, as another client would.
    async fn arm_get(&self, name: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.fic_url(name))
            .bearer_auth(STATIC)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Writes a credential Passport does not own, through ARM.
    async fn arm_put(&self, name: &str, subject: &str) -> StatusCode {
        self.http
            .put(self.fic_url(name))
            .bearer_auth(STATIC)
            .json(&json!({"properties": {
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": subject,
                "audiences": [TOKEN_EXCHANGE_AUDIENCE],
            }}))
            .send()
            .await
            .unwrap()
            .status()
    }

    fn stored(&self) -> Vec<Value> {
        self.fake.fics(SUB, RG, "payments-mi")
    }

    /// Signs in once, so that injected faults hit ARM rather than the token request.
    async fn warm_token(&self) {
        self.provider
            .identity_client_id(&self.seed.id())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_credential_is_created_and_reads_back_exactly() {
    let env = env(Duration::from_millis(5)).await;
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    insta::assert_json_snapshot!("azure_credential_body", credential_body(&intent));

    let ensured = env
        .provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    assert_eq!(ensured.change, Change::Created);
    let (status, body) = env.arm_get("prod-payments-api").await;
    assert_eq!(status, StatusCode::OK);
    let expected_id = format!(
        "/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments-mi/federatedIdentityCredentials/prod-payments-api"
    );
    assert_eq!(
        body,
        json!({
            "id": expected_id,
            "name": "prod-payments-api",
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
            "properties": {
                "issuer": ISSUER,
                "subject": "system:serviceaccount:payments:api",
                "audiences": [TOKEN_EXCHANGE_AUDIENCE],
            },
        })
    );
    assert_eq!(ensured.state.id, expected_id);
    assert_eq!(env.calls.writes(Cloud::Azure), 1);
}

#[tokio::test]
async fn an_unchanged_credential_makes_no_write() {
    let env = env(Duration::from_millis(5)).await;
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    env.provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    let (writes, gets) = (
        env.calls.writes(Cloud::Azure),
        env.calls.operation(Cloud::Azure, GET),
    );

    let again = env
        .provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert!(again.changes.is_empty());
    assert_eq!(
        env.calls.writes(Cloud::Azure),
        writes,
        "no write at steady state"
    );
    assert_eq!(env.calls.operation(Cloud::Azure, GET), gets + 1);
}

#[tokio::test]
async fn a_changed_subject_rewrites_the_credential() {
    let env = env(Duration::from_millis(5)).await;
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    env.provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();

    let moved = env.intent("prod-payments-api", "system:serviceaccount:payments:api-v2");
    let ensured = env
        .provider
        .ensure_federated_credential(&moved)
        .await
        .unwrap();
    assert_eq!(ensured.change, Change::Updated);
    assert_eq!(
        ensured.changes,
        vec!["subject system:serviceaccount:payments:api -> system:serviceaccount:payments:api-v2"]
    );
    let (_, body) = env.arm_get("prod-payments-api").await;
    assert_eq!(
        body["properties"]["subject"],
        "system:serviceaccount:payments:api-v2"
    );
    assert_eq!(env.calls.operation(Cloud::Azure, PUT), 2);
    assert_eq!(env.stored().len(), 1);
}

#[tokio::test]
async fn the_identity_client_id_comes_from_arm() {
    let env = env(Duration::from_millis(5)).await;
    let client_id = env
        .provider
        .identity_client_id(&env.seed.id())
        .await
        .unwrap();
    assert_eq!(client_id, env.seed.client_id);
    let missing = env
        .provider
        .identity_client_id(&env.seed.id().replace("payments-mi", "nobody"))
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    // A credential on a missing identity is an error, not a credential to create.
    let mut orphan = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    orphan.identity = env.seed.id().replace("payments-mi", "nobody");
    let err = env
        .provider
        .ensure_federated_credential(&orphan)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.code.as_deref(), Some("ParentResourceNotFound"));
    assert_eq!(env.calls.writes(Cloud::Azure), 0);
}

#[tokio::test]
async fn delete_removes_the_credential_and_a_second_delete_finds_nothing() {
    let env = env(Duration::from_millis(5)).await;
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    env.provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    let deleted = env
        .provider
        .delete_federated_credential(&env.seed.id(), "prod-payments-api")
        .await
        .unwrap();
    assert_eq!(deleted, Deleted::Deleted);
    assert_eq!(
        env.arm_get("prod-payments-api").await.0,
        StatusCode::NOT_FOUND
    );
    let again = env
        .provider
        .delete_federated_credential(&env.seed.id(), "prod-payments-api")
        .await
        .unwrap();
    assert_eq!(again, Deleted::Absent);
}

#[tokio::test]
async fn credentials_of_other_names_are_never_touched() {
    let env = env(Duration::from_millis(5)).await;
    assert_eq!(
        env.arm_put("github-deploy", "repo:org/app:ref:refs/heads/main")
            .await,
        StatusCode::CREATED
    );
    let (_, foreign) = env.arm_get("github-deploy").await;

    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    env.provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    let moved = env.intent("prod-payments-api", "system:serviceaccount:payments:other");
    env.provider
        .ensure_federated_credential(&moved)
        .await
        .unwrap();
    env.provider
        .delete_federated_credential(&env.seed.id(), "prod-payments-api")
        .await
        .unwrap();

    assert_eq!(
        env.arm_get("github-deploy").await,
        (StatusCode::OK, foreign)
    );
    assert_eq!(env.stored().len(), 1);
}

#[tokio::test]
async fn the_21st_credential_is_a_limit_that_says_what_to_do() {
    let env = env(Duration::from_millis(1)).await;
    for n in 0..20 {
        let intent = env.intent(
            &format!("prod-apps-sa{n}"),
            &format!("system:serviceaccount:apps:sa{n}"),
        );
        env.provider
            .ensure_federated_credential(&intent)
            .await
            .unwrap();
    }
    assert_eq!(
        env.calls
            .operation(Cloud::Azure, "ListFederatedIdentityCredentials"),
        0,
        "no list on a working ensure"
    );

    let extra = env.intent("prod-apps-sa20", "system:serviceaccount:apps:sa20");
    let err = env
        .provider
        .ensure_federated_credential(&extra)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::LimitExceeded);
    assert_eq!(err.code.as_deref(), Some(FEDERATED_CREDENTIAL_LIMIT));
    assert_eq!(err.reason(), Reason::FederatedCredentialLimit);
    assert!(err.message.contains("already has 20"), "{}", err.message);
    assert!(err.message.contains("another identity"), "{}", err.message);
    assert_eq!(
        env.calls
            .operation(Cloud::Azure, "ListFederatedIdentityCredentials"),
        1
    );

    // An update at the limit is still allowed.
    let moved = env.intent("prod-apps-sa0", "system:serviceaccount:apps:renamed");
    let ensured = env
        .provider
        .ensure_federated_credential(&moved)
        .await
        .unwrap();
    assert_eq!(ensured.change, Change::Updated);
}

#[tokio::test]
async fn concurrent_ensures_on_one_identity_are_serialised() {
    // 50 ms per write: unserialised writes would overlap and get 409.
    let env = env(Duration::from_millis(50)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let provider = env.provider.clone();
        let intent = env.intent(
            &format!("prod-apps-sa{n}"),
            &format!("system:serviceaccount:apps:sa{n}"),
        );
        tasks.spawn(async move { provider.ensure_federated_credential(&intent).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().change, Change::Created);
    }
    assert_eq!(env.stored().len(), 10);
    // Exactly one PUT each: no write was refused with 409 and retried.
    assert_eq!(env.calls.operation(Cloud::Azure, PUT), 10);
    // The ten callers waited for one token request.
    assert_eq!(env.calls.operation(Cloud::Azure, "GetToken"), 1);
}

#[tokio::test]
async fn a_concurrent_write_by_another_client_is_retried() {
    let backoff = Backoff {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(200),
        budget: Duration::from_secs(10),
        max_attempts: 20,
    };
    let env = env_with(Duration::from_millis(300), backoff).await;
    env.warm_token().await;
    let outside = {
        let http = env.http.clone();
        let url = env.fic_url("github-deploy");
        tokio::spawn(async move {
            http.put(url)
                .bearer_auth(STATIC)
                .json(&json!({"properties": {
                    "issuer": "https://token.actions.githubusercontent.com",
                    "subject": "repo:org/app:ref:refs/heads/main",
                    "audiences": [TOKEN_EXCHANGE_AUDIENCE],
                }}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !env.fake.write_in_flight(SUB, RG, "payments-mi") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outside write never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    let ensured = env
        .provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    assert_eq!(ensured.change, Change::Created);
    assert!(
        env.calls.operation(Cloud::Azure, PUT) > 1,
        "the first PUT met the outside write"
    );
    assert_eq!(outside.await.unwrap().unwrap(), StatusCode::CREATED);
    assert_eq!(env.stored().len(), 2);
}

#[tokio::test]
async fn throttling_and_outages_are_retried() {
    let env = env(Duration::from_millis(5)).await;
    // The first token request is throttled, then retried.
    env.fake
        .faults()
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    env.warm_token().await;
    assert_eq!(env.calls.operation(Cloud::Azure, "GetToken"), 2);

    env.fake
        .faults()
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    env.fake
        .faults()
        .fail_next(1, StatusCode::INTERNAL_SERVER_ERROR);
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    let ensured = env
        .provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap();
    assert_eq!(ensured.change, Change::Created);
    assert_eq!(env.calls.operation(Cloud::Azure, GET), 3);
    assert_eq!(env.fake.faults().pending(), 0);
}

#[tokio::test]
async fn a_permanent_403_is_access_denied_without_retries() {
    let env = env(Duration::from_millis(5)).await;
    env.warm_token().await;
    env.fake.faults().fail_next(10, StatusCode::FORBIDDEN);
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    let err = env
        .provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap_err();
    env.fake.faults().clear();
    assert_eq!(err.kind, ErrorKind::AccessDenied);
    assert_eq!(err.code.as_deref(), Some("AuthorizationFailed"));
    assert_eq!(err.reason(), Reason::AccessDenied);
    assert_eq!(env.calls.operation(Cloud::Azure, GET), 1);
    assert_eq!(env.calls.writes(Cloud::Azure), 0);
}

#[tokio::test]
async fn an_exhausted_budget_is_throttled() {
    let env = env(Duration::from_millis(5)).await;
    env.warm_token().await;
    env.fake
        .faults()
        .fail_next(100, StatusCode::TOO_MANY_REQUESTS);
    let intent = env.intent("prod-payments-api", "system:serviceaccount:payments:api");
    let err = env
        .provider
        .ensure_federated_credential(&intent)
        .await
        .unwrap_err();
    env.fake.faults().clear();
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert_eq!(err.code.as_deref(), Some("SubscriptionRequestsThrottled"));
    assert_eq!(
        env.calls.operation(Cloud::Azure, GET),
        u64::from(env.config.backoff.max_attempts)
    );
    assert!(env.stored().is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_access_denied_with_entras_message() {
    let env = env(Duration::from_millis(5)).await;
    let mut credentials = secret_credentials(&env.fake);
    credentials.proof = Proof::ClientSecret(passport_operator::cloud::azure::token::Secret::new(
        "not-the-operator-secret-7f3a",
    ));
    let provider = AzureProvider::new(&env.config, credentials, Calls::default()).unwrap();
    let err = provider
        .identity_client_id(&env.seed.id())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AccessDenied);
    assert_eq!(err.operation, "GetToken");
    assert!(err.message.contains("AADSTS7000215"), "{}", err.message);
    assert!(
        !err.to_string().contains("not-the-operator-secret-7f3a"),
        "the secret is never shown: {err}"
    );
}

/// The stack's `stack.env` is all the provider needs; the operator can also run on workload
/// identity, with a projected token the stack's issuer signs, re-read at every token request.
#[tokio::test]
async fn stack_env_is_all_the_provider_needs_and_workload_identity_works() {
    let stack = Stack::start(StackConfig {
        aws: false,
        ..StackConfig::default()
    })
    .await
    .unwrap();
    let vars: std::collections::HashMap<_, _> = stack.env().into_iter().collect();
    let config = CloudConfig {
        ca_bundle: Some(PathBuf::from(&vars["PASSPORT_CA_BUNDLE"])),
        azure_arm_endpoint: vars["PASSPORT_AZURE_ARM_ENDPOINT"].clone(),
        backoff: Backoff::fast(),
        ..CloudConfig::default()
    };
    let credentials = Credentials::from_vars(|name| vars.get(name).cloned()).unwrap();
    let operator = AzureProvider::new(&config, credentials, Calls::default()).unwrap();
    let identity = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
        stack::AZURE_SUBSCRIPTION_ID,
        stack::AZURE_RESOURCE_GROUP,
        stack::AZURE_IDENTITY
    );
    assert_eq!(
        operator.identity_client_id(&identity).await.unwrap(),
        stack::AZURE_CLIENT_ID
    );

    // Trust the operator's own service account on the identity, then sign in as the identity.
    let issuer = vars["PASSPORT_STACK_ISSUER"].clone();
    let subject = "system:serviceaccount:passport-system:passport";
    let intent = FederatedCredentialIntent {
        identity: identity.clone(),
        name: "passport-operator".to_owned(),
        issuer: issuer.clone(),
        subject: subject.to_owned(),
        audience: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
    };
    operator.ensure_federated_credential(&intent).await.unwrap();
    let token_file = TempFile::write("token", "not-a-jwt");
    let federated = Credentials::from_vars(|name| match name {
        "AZURE_CLIENT_ID" => Some(stack::AZURE_CLIENT_ID.to_owned()),
        "AZURE_CLIENT_SECRET" => None,
        "AZURE_FEDERATED_TOKEN_FILE" => Some(token_file.0.display().to_string()),
        other => vars.get(other).cloned(),
    })
    .unwrap();
    let calls = Calls::default();
    let workload = AzureProvider::new(&config, federated, calls.clone()).unwrap();
    let refused = workload.identity_client_id(&identity).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::AccessDenied, "{refused}");

    // The kubelet rotated the token: the next request reads the new one.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let token = stack
        .apiserver
        .emulator()
        .expect("the stack runs the emulator by default")
        .issuer()
        .sign(&json!({
            "iss": issuer, "sub": subject, "aud": [TOKEN_EXCHANGE_AUDIENCE],
            "iat": now, "nbf": now, "exp": now + 3600,
        }))
        .unwrap();
    std::fs::write(&token_file.0, token).unwrap();
    assert_eq!(
        workload.identity_client_id(&identity).await.unwrap(),
        stack::AZURE_CLIENT_ID
    );
    assert_eq!(calls.operation(Cloud::Azure, "GetToken"), 2);
}
