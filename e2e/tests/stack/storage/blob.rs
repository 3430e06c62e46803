//! The Blob Storage fake: bearer tokens from the Entra fake for Storage, Put Blob's required
//! headers, properties that come back on Get Blob, and anonymous reads only from containers
//! created with public access.

use std::sync::Arc;

use passport_e2e::{
    azure::{ARM_SCOPE, AzureFake, AzureOptions, STORAGE_SCOPE},
    tls::Ca,
};
use reqwest::StatusCode;

use super::Answer;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "9a1f3c5e-7b2d-4e6f-8a0c-1d3e5f7a9b2c";
const SECRET: &str = "publisher-secret";
const ACCOUNT: &str = "passportdev";
const VERSION: &str = "2025-01-05";
const DOC: &str = r#"{"issuer":"https://oidc.example.test/c1"}"#;

struct Env {
    fake: AzureFake,
    http: reqwest::Client,
    token: String,
}

impl Env {
    async fn start() -> anyhow::Result<Self> {
        let ca = Arc::new(Ca::new()?);
        let fake = AzureFake::start(
            AzureOptions::new(ca.clone())
                .service_principal(TENANT, CLIENT, SECRET)
                .storage_account(ACCOUNT),
        )
        .await?;
        let http = ca.client()?;
        let mut env = Self {
            fake,
            http,
            token: String::new(),
        };
        env.token = env.entra_token(STORAGE_SCOPE).await?;
        Ok(env)
    }

    /// A client-credentials token from the Entra fake.
    async fn entra_token(&self, scope: &str) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .http
            .post(self.fake.token_url(TENANT))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("scope", scope),
            ])
            .send()
            .await?
            .json()
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no token: {body}"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{ACCOUNT}/{path}", self.fake.blob_url())
    }

    async fn create_container(&self, name: &str, public: Option<&str>) -> anyhow::Result<Answer> {
        let mut request = self
            .http
            .put(self.url(&format!("{name}?restype=container")))
            .bearer_auth(&self.token)
            .header("x-ms-version", VERSION);
        if let Some(public) = public {
            request = request.header("x-ms-blob-public-access", public);
        }
        Answer::of(request).await
    }

    async fn put_doc(&self, path: &str) -> anyhow::Result<Answer> {
        Answer::of(
            self.http
                .put(self.url(path))
                .bearer_auth(&self.token)
                .header("x-ms-version", VERSION)
                .header("x-ms-blob-type", "BlockBlob")
                .header("x-ms-blob-content-type", "application/json")
                .header("x-ms-blob-cache-control", "public, max-age=60")
                .body(DOC),
        )
        .await
    }
}

fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.header("x-ms-error-code"), code);
    if !answer.body.is_empty() {
        assert!(
            answer
                .text()
                .contains(&format!("<Error><Code>{code}</Code>")),
            "{}",
            answer.text()
        );
    }
}

#[tokio::test]
async fn blob_writes_need_a_storage_token_a_version_and_a_blob_type() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let url = env.url("issuer?restype=container");
    let anonymous = Answer::of(env.http.put(&url).header("x-ms-version", VERSION)).await?;
    assert_error(
        &anonymous,
        StatusCode::UNAUTHORIZED,
        "NoAuthenticationInformation",
    );
    let arm = env.entra_token(ARM_SCOPE).await?;
    let wrong_audience = Answer::of(
        env.http
            .put(&url)
            .bearer_auth(arm)
            .header("x-ms-version", VERSION),
    )
    .await?;
    assert_error(
        &wrong_audience,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationInfo",
    );
    assert!(wrong_audience.text().contains("Audience validation failed"));
    let no_version = Answer::of(env.http.put(&url).bearer_auth(&env.token)).await?;
    assert_error(
        &no_version,
        StatusCode::BAD_REQUEST,
        "MissingRequiredHeader",
    );

    let missing_container = env.put_doc("issuer/c1/jwks").await?;
    assert_error(
        &missing_container,
        StatusCode::NOT_FOUND,
        "ContainerNotFound",
    );
    let created = env.create_container("issuer", None).await?;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let again = env.create_container("issuer", None).await?;
    assert_error(&again, StatusCode::CONFLICT, "ContainerAlreadyExists");
    let untyped = Answer::of(
        env.http
            .put(env.url("issuer/c1/jwks"))
            .bearer_auth(&env.token)
            .header("x-ms-version", VERSION)
            .body(DOC),
    )
    .await?;
    assert_error(&untyped, StatusCode::BAD_REQUEST, "MissingRequiredHeader");
    let put = env.put_doc("issuer/c1/jwks").await?;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert!(put.header("etag").starts_with("\"0x"));
    Ok(())
}

#[tokio::test]
async fn blob_properties_round_trip_and_anonymous_reads_need_public_access() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.create_container("public", Some("blob")).await?;
    env.create_container("private", None).await?;
    let path = "c1/.well-known/openid-configuration";
    let put = env.put_doc(&format!("public/{path}")).await?;
    env.put_doc(&format!("private/{path}")).await?;

    let read = Answer::of(env.http.get(env.url(&format!("public/{path}")))).await?;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    assert_eq!(read.text(), DOC);
    assert_eq!(read.header("content-type"), "application/json");
    assert_eq!(read.header("cache-control"), "public, max-age=60");
    assert_eq!(read.header("x-ms-blob-type"), "BlockBlob");
    assert_eq!(read.header("etag"), put.header("etag"));
    assert!(!read.header("last-modified").is_empty());
    let head = Answer::of(env.http.head(env.url(&format!("public/{path}")))).await?;
    assert_eq!(head.header("content-length"), DOC.len().to_string());

    let hidden = Answer::of(env.http.get(env.url(&format!("private/{path}")))).await?;
    assert_error(&hidden, StatusCode::NOT_FOUND, "ResourceNotFound");
    let owner = Answer::of(
        env.http
            .get(env.url(&format!("private/{path}")))
            .bearer_auth(&env.token)
            .header("x-ms-version", VERSION),
    )
    .await?;
    assert_eq!(owner.status, StatusCode::OK);
    let missing = Answer::of(env.http.get(env.url("public/nope"))).await?;
    assert_error(&missing, StatusCode::NOT_FOUND, "BlobNotFound");

    env.fake
        .blob_faults()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    let busy = Answer::of(env.http.get(env.url(&format!("public/{path}")))).await?;
    assert_error(&busy, StatusCode::SERVICE_UNAVAILABLE, "ServerBusy");
    Ok(())
}
