//! The Cloud Storage fake: bucket insert, media and multipart uploads, object metadata in the
//! JSON API's shape, and public reads through `/{bucket}/{object}` only where the bucket's IAM
//! policy (or the object's ACL) lets `allUsers` read.

use std::sync::Arc;

use passport_e2e::{
    gcp::{GcpFake, GcpOptions},
    tls::Ca,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Answer;

const PROJECT: &str = "demo-project";
const SA: &str = "publisher@demo-project.iam.gserviceaccount.com";
const DOC: &str = r#"{"issuer":"https://oidc.example.test/c1"}"#;

struct Env {
    fake: GcpFake,
    http: reqwest::Client,
    url: String,
    token: String,
}

/// A JWT self-signed with a key of `SA` for `aud` (AIP-4111), as google-cloud-auth makes them.
impl Env {
    async fn start() -> anyhow::Result<Self> {
        let ca = Arc::new(Ca::new()?);
        let fake = GcpFake::start(
            GcpOptions::new(ca.clone())
                .project(PROJECT, "123456789012")
                .service_account(SA),
        )
        .await?;
        let key = fake.service_account_key(SA)?;
        Ok(Self {
            token: super::self_signed(&key, SA, "https://storage.googleapis.com/")?,
            url: fake.storage_url(),
            http: ca.client()?,
            fake,
        })
    }

    async fn insert_bucket(&self, name: &str) -> anyhow::Result<Answer> {
        Answer::of(
            self.http
                .post(format!("{}/storage/v1/b?project={PROJECT}", self.url))
                .bearer_auth(&self.token)
                .json(&json!({ "name": name })),
        )
        .await
    }

    async fn multipart(
        &self,
        bucket: &str,
        metadata: Value,
        media: &str,
    ) -> anyhow::Result<Answer> {
        let body = format!(
            "--sep\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--sep\r\nContent-Type: text/plain\r\n\r\n{media}\r\n--sep--\r\n"
        );
        Answer::of(
            self.http
                .post(format!(
                    "{}/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
                    self.url
                ))
                .bearer_auth(&self.token)
                .header("content-type", "multipart/related; boundary=sep")
                .body(body),
        )
        .await
    }
}

fn reason(answer: &Answer) -> String {
    let body = answer.json();
    assert_eq!(body["error"]["code"], answer.status.as_u16(), "{body}");
    body["error"]["errors"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn gcs_writes_need_a_bearer_token_for_storage() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let insert = |token: Option<String>| {
        let request = env
            .http
            .post(format!("{}/storage/v1/b?project={PROJECT}", env.url))
            .json(&json!({ "name": "issuer-docs" }));
        Answer::of(match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    };
    let anonymous = insert(None).await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&anonymous), "required");
    let garbage = insert(Some("not-a-token".into())).await?;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&garbage), "authError");
    let key = env.fake.service_account_key(SA)?;
    let for_iam = insert(Some(super::self_signed(
        &key,
        SA,
        "https://iam.googleapis.com/",
    )?))
    .await?;
    assert_eq!(for_iam.status, StatusCode::UNAUTHORIZED);

    let created = env.insert_bucket("issuer-docs").await?;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert_eq!(created.json()["name"], "issuer-docs");
    assert_eq!(created.json()["kind"], "storage#bucket");
    let again = env.insert_bucket("issuer-docs").await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(reason(&again), "conflict");
    let bad = env.insert_bucket("Bad_Name").await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let missing = Answer::of(
        env.http
            .post(format!(
                "{}/upload/storage/v1/b/nope/o?uploadType=media&name=x",
                env.url
            ))
            .bearer_auth(&env.token)
            .body("x"),
    )
    .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(reason(&missing), "notFound");
    Ok(())
}

#[tokio::test]
async fn gcs_multipart_uploads_keep_their_metadata() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.insert_bucket("issuer-docs").await?;
    let name = "c1/.well-known/openid-configuration";
    let uploaded = env
        .multipart(
            "issuer-docs",
            json!({ "name": name, "contentType": "application/json", "cacheControl": "public, max-age=60" }),
            DOC,
        )
        .await?;
    assert_eq!(uploaded.status, StatusCode::OK, "{}", uploaded.text());
    let object = uploaded.json();
    assert_eq!(object["name"], name);
    assert_eq!(object["size"], DOC.len().to_string());
    assert_eq!(object["contentType"], "application/json");
    assert_eq!(object["cacheControl"], "public, max-age=60");
    assert!(
        object["generation"]
            .as_str()
            .is_some_and(|g| g.parse::<i64>().is_ok())
    );
    assert!(
        object["updated"]
            .as_str()
            .unwrap_or_default()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );

    let encoded = "c1%2F.well-known%2Fopenid-configuration";
    let url = format!("{}/storage/v1/b/issuer-docs/o/{encoded}", env.url);
    let metadata = Answer::of(env.http.get(&url).bearer_auth(&env.token)).await?;
    assert_eq!(metadata.json()["generation"], object["generation"]);
    assert_eq!(metadata.json()["cacheControl"], "public, max-age=60");
    let media = Answer::of(
        env.http
            .get(format!("{url}?alt=media"))
            .bearer_auth(&env.token),
    )
    .await?;
    assert_eq!(media.text(), DOC);
    assert_eq!(media.header("content-type"), "application/json");

    // The metadata's contentType wins over the media part's; without one the part's is kept.
    let plain = env
        .multipart("issuer-docs", json!({ "name": "plain" }), "hello")
        .await?;
    assert_eq!(plain.json()["contentType"], "text/plain");
    assert!(plain.json().get("cacheControl").is_none());
    let stale = Answer::of(
        env.http
            .post(format!(
                "{}/upload/storage/v1/b/issuer-docs/o?uploadType=media&name=plain&ifGenerationMatch=0",
                env.url
            ))
            .bearer_auth(&env.token)
            .body("again"),
    )
    .await?;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    Ok(())
}

#[tokio::test]
async fn gcs_public_reads_follow_the_buckets_iam_policy() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.insert_bucket("issuer-docs").await?;
    let name = "c1/openid/v1/jwks";
    env.multipart(
        "issuer-docs",
        json!({ "name": name, "contentType": "application/json", "cacheControl": "max-age=300" }),
        DOC,
    )
    .await?;
    let public_url = format!("{}/issuer-docs/{name}", env.url);
    let private = Answer::of(env.http.get(&public_url)).await?;
    assert_eq!(private.status, StatusCode::FORBIDDEN);
    assert!(
        private.text().contains("<Code>AccessDenied</Code>"),
        "{}",
        private.text()
    );
    let anonymous_json = Answer::of(env.http.get(format!(
        "{}/storage/v1/b/issuer-docs/o/c1%2Fopenid%2Fv1%2Fjwks",
        env.url
    )))
    .await?;
    assert_eq!(anonymous_json.status, StatusCode::UNAUTHORIZED);

    let policy =
        json!({ "bindings": [{ "role": "roles/storage.objectViewer", "members": ["allUsers"] }] });
    let set = Answer::of(
        env.http
            .put(format!("{}/storage/v1/b/issuer-docs/iam", env.url))
            .bearer_auth(&env.token)
            .json(&policy),
    )
    .await?;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let public = Answer::of(env.http.get(&public_url)).await?;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.text(), DOC);
    assert_eq!(public.header("content-type"), "application/json");
    assert_eq!(public.header("cache-control"), "max-age=300");

    // Without a stored Cache-Control, a public object is served as GCS serves it.
    Answer::of(
        env.http
            .post(format!(
                "{}/upload/storage/v1/b/issuer-docs/o?uploadType=media&name=bare",
                env.url
            ))
            .bearer_auth(&env.token)
            .header("content-type", "application/json")
            .body(DOC),
    )
    .await?;
    let bare = Answer::of(env.http.get(format!("{}/issuer-docs/bare", env.url))).await?;
    assert_eq!(bare.header("cache-control"), "public, max-age=3600");
    let missing = Answer::of(env.http.get(format!("{}/issuer-docs/nope", env.url))).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("<Code>NoSuchKey</Code>"));
    Ok(())
}
