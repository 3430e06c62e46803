//! Issuer redirects and signing-key rotation: a verifier fetches an issuer's documents from the
//! bucket they were published to, re-fetches the JWKS when a token names an unknown key id, and
//! an old-kid token verifies only where the old key is still served.

use std::sync::Arc;

use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
use passport_e2e::{
    apiserver::{self, ApiServer},
    gcp::{GcpFake, GcpOptions},
    oidc::{Issuer, JwksVerifier, VerifyError, verify_with_jwks},
    stack::{Stack, StackConfig},
    tls::{Ca, client_trusting},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Answer;

/// An issuer URL no one serves (a closed loopback port).
const ISSUER: &str = "https://127.0.0.1:1/c1";
const BUCKET: &str = "issuers";

fn claims(issuer: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({ "iss": issuer, "sub": "system:serviceaccount:ns:sa", "aud": "a", "exp": now + 600, "iat": now })
}

/// A public Cloud Storage bucket on the GCP fake, to publish documents into.
struct Bucket {
    fake: GcpFake,
    http: reqwest::Client,
    token: String,
}

impl Bucket {
    async fn start(ca: &Arc<Ca>) -> anyhow::Result<Self> {
        const SA: &str = "publisher@demo-project.iam.gserviceaccount.com";
        let fake = GcpFake::start(
            GcpOptions::new(ca.clone())
                .project("demo-project", "1")
                .service_account(SA),
        )
        .await?;
        let token = super::storage_jwt(&fake, SA)?;
        let bucket = Self {
            fake,
            http: ca.client()?,
            token,
        };
        let url = bucket.fake.storage_url();
        bucket
            .http
            .post(format!("{url}/storage/v1/b?project=demo-project"))
            .bearer_auth(&bucket.token)
            .json(&json!({ "name": BUCKET }))
            .send()
            .await?
            .error_for_status()?;
        bucket
            .http
            .put(format!("{url}/storage/v1/b/{BUCKET}/iam"))
            .bearer_auth(&bucket.token)
            .json(&json!({ "bindings": [{ "role": "roles/storage.objectViewer", "members": ["allUsers"] }] }))
            .send()
            .await?
            .error_for_status()?;
        Ok(bucket)
    }

    /// `https://.../issuers/{prefix}`: where a CDN in front of the bucket would serve from.
    fn base(&self, prefix: &str) -> String {
        format!("{}/{BUCKET}/{prefix}", self.fake.storage_url())
    }

    async fn put(&self, name: &str, body: &Value) -> anyhow::Result<()> {
        self.http
            .post(format!(
                "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}",
                self.fake.storage_url()
            ))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Publishes `issuer`'s documents under `prefix`, as Passport writes them: the discovery
    /// document names the issuer, its `jwks_uri` the public copy.
    async fn publish(&self, prefix: &str, named_issuer: &str, jwks: &Value) -> anyhow::Result<()> {
        let discovery = json!({
            "issuer": named_issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.base(prefix)),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        self.put(
            &format!("{prefix}%2F.well-known%2Fopenid-configuration"),
            &discovery,
        )
        .await?;
        self.put(&format!("{prefix}%2Fopenid%2Fv1%2Fjwks"), jwks)
            .await
    }
}

#[tokio::test]
async fn a_redirect_makes_a_verifier_fetch_the_keys_from_the_bucket() -> anyhow::Result<()> {
    let ca = Arc::new(Ca::new()?);
    let bucket = Bucket::start(&ca).await?;
    let issuer = Issuer::generate(ISSUER)?;
    bucket.publish("c1", ISSUER, &issuer.jwks()).await?;
    let token = issuer.sign(&claims(ISSUER))?;
    let verifier = JwksVerifier::new(ca.client()?);
    assert!(matches!(
        verifier.verify(&token, ISSUER).await,
        Err(VerifyError::Discovery { .. })
    ));
    verifier.redirects().set(ISSUER, &bucket.base("c1"));
    let verified = verifier.verify(&token, ISSUER).await?;
    assert_eq!(verified["sub"], "system:serviceaccount:ns:sa");

    // A document that names another issuer is refused, as the clouds refuse it.
    bucket
        .publish("c2", "https://elsewhere.test", &issuer.jwks())
        .await?;
    verifier.redirects().set(ISSUER, &bucket.base("c2"));
    assert!(matches!(
        verifier.verify(&token, ISSUER).await,
        Err(VerifyError::Discovery { .. })
    ));
    verifier.redirects().remove(ISSUER);
    assert!(verifier.verify(&token, ISSUER).await.is_err());
    Ok(())
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_and_an_old_kid_fails_once_dropped() -> anyhow::Result<()>
{
    let ca = Arc::new(Ca::new()?);
    let bucket = Bucket::start(&ca).await?;
    let issuer = Issuer::generate(ISSUER)?;
    let old_jwks = issuer.jwks();
    bucket.publish("c1", ISSUER, &old_jwks).await?;
    let verifier = JwksVerifier::new(ca.client()?);
    verifier.redirects().set(ISSUER, &bucket.base("c1"));
    let old = issuer.sign(&claims(ISSUER))?;
    verifier.verify(&old, ISSUER).await?;

    let old_kid = issuer.kid();
    let new_kid = issuer.rotate()?;
    assert_ne!(old_kid, new_kid);
    let new = issuer.sign(&claims(ISSUER))?;
    // Not yet published: the refetch finds only the old key.
    assert!(matches!(
        verifier.verify(&new, ISSUER).await,
        Err(VerifyError::UnknownKey(_))
    ));
    // Published with both keys (the overlap a careful rotation keeps): both verify.
    let mut both = old_jwks.clone();
    if let (Some(keys), Some(new_keys)) = (
        both["keys"].as_array_mut(),
        issuer.jwks()["keys"].as_array(),
    ) {
        keys.extend(new_keys.iter().cloned());
    }
    bucket.publish("c1", ISSUER, &both).await?;
    verifier.verify(&new, ISSUER).await?;
    verifier.verify(&old, ISSUER).await?;
    // The old key dropped: a verifier that still caches it accepts the old token (no cache
    // expiry here), one that fetches the JWKS now refuses it.
    bucket.publish("c1", ISSUER, &issuer.jwks()).await?;
    verifier.verify(&old, ISSUER).await?;
    let fresh = JwksVerifier::new(ca.client()?);
    fresh.redirects().set(ISSUER, &bucket.base("c1"));
    fresh.verify(&new, ISSUER).await?;
    assert!(matches!(
        fresh.verify(&old, ISSUER).await,
        Err(VerifyError::UnknownKey(_))
    ));
    Ok(())
}

async fn service_account_token(server: &ApiServer, audience: &str) -> anyhow::Result<String> {
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": [audience]}}))?;
    kube::Api::<ServiceAccount>::namespaced(server.client().await?, "default")
        .create_token_request("default", &Default::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("no token"))
}

async fn served_jwks(http: &reqwest::Client, server: &ApiServer) -> anyhow::Result<Value> {
    let answer = Answer::of(
        http.get(format!("{}/openid/v1/jwks", server.url()))
            .header("accept", "application/jwk-set+json"),
    )
    .await?;
    Ok(answer.json())
}

#[tokio::test]
async fn rotating_the_emulators_signing_key_serves_only_the_new_key() -> anyhow::Result<()> {
    let server = ApiServer::start(apiserver::Config::default()).await?;
    let http = client_trusting(server.ca_pem())?;
    let old_jwks = served_jwks(&http, &server).await?;
    let old = service_account_token(&server, "a").await?;
    let verifier = JwksVerifier::new(http.clone());
    verifier.verify(&old, &server.url()).await?;

    let rotated = Answer::of(http.post(format!(
        "{}{}",
        server.url(),
        apiserver::ROTATE_SIGNING_KEY_PATH
    )))
    .await?;
    assert_eq!(rotated.status, StatusCode::OK);
    let kid = rotated.json()["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let new_jwks = served_jwks(&http, &server).await?;
    let kids: Vec<&str> = new_jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, [kid.as_str()]);
    assert_ne!(old_jwks["keys"][0]["kid"], new_jwks["keys"][0]["kid"]);

    let new = service_account_token(&server, "a").await?;
    assert_eq!(
        jsonwebtoken::decode_header(&new)?.kid.as_deref(),
        Some(kid.as_str())
    );
    // The verifier cached the old JWKS; the unknown kid makes it fetch the new one.
    verifier.verify(&new, &server.url()).await?;
    assert!(matches!(
        verifier.verify(&old, &server.url()).await,
        Err(VerifyError::UnknownKey(_))
    ));
    // The old token still verifies where the old key is served (a published copy).
    verify_with_jwks(&old, &old_jwks, &server.url())?;
    assert_ne!(server.rotate_signing_key()?, kid);
    Ok(())
}

/// The whole stack: the emulator's documents published to S3 (through the S3 front), and
/// `resolve_issuer_at` telling STS to read them there. After a rotation the emulator serves
/// only the new key, so an old token verifies through the published copy alone.
#[tokio::test]
async fn stack_sts_reads_a_published_issuer_after_resolve_issuer_at() -> anyhow::Result<()> {
    use aws_sdk_s3::primitives::ByteStream;
    let stack = Stack::start(StackConfig::default()).await?;
    let aws = stack
        .aws
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no AWS"))?;
    let issuer = stack.apiserver.issuer_url();
    let server = stack
        .apiserver
        .emulator()
        .ok_or_else(|| anyhow::anyhow!("not the emulator"))?;
    let ca_pem = std::fs::read_to_string(stack.apiserver.ca_path())?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(aws.s3_https_url())
            .region(aws_sdk_s3::config::Region::new(
                passport_e2e::aws::sdk::REGION,
            ))
            .credentials_provider(passport_e2e::aws::sdk::test_credentials())
            .force_path_style(true)
            .http_client(passport_e2e::aws::sdk::https_client_trusting(&ca_pem)?)
            .build(),
    );
    s3.create_bucket().bucket("oidc").send().await?;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::oidc/*"}]});
    s3.put_bucket_policy()
        .bucket("oidc")
        .policy(policy.to_string())
        .send()
        .await?;
    let public = format!("{}/oidc/c1", aws.s3_https_url());
    let publish = |jwks: Value| {
        let s3 = s3.clone();
        let discovery = json!({ "issuer": issuer, "jwks_uri": format!("{public}/openid/v1/jwks") });
        async move {
            for (key, body) in [
                ("c1/.well-known/openid-configuration", discovery),
                ("c1/openid/v1/jwks", jwks),
            ] {
                s3.put_object()
                    .bucket("oidc")
                    .key(key)
                    .content_type("application/json")
                    .body(ByteStream::from(body.to_string().into_bytes()))
                    .send()
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    publish(server.issuer().jwks()).await?;

    let iam = passport_e2e::aws::iam_client(&aws.iam_url());
    iam.create_open_id_connect_provider()
        .url(&issuer)
        .client_id_list("sts.amazonaws.com")
        .send()
        .await?;
    let host = issuer.trim_start_matches("https://");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{}:oidc-provider/{host}", passport_e2e::aws::ACCOUNT_ID)},
        "Action": "sts:AssumeRoleWithWebIdentity"}]});
    let role = iam
        .create_role()
        .role_name("reader")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await?;
    let role_arn = role.role().map(|r| r.arn().to_owned()).unwrap_or_default();
    let sts = passport_e2e::aws::sts_client(&aws.sts_url());
    let assume = |token: String| {
        let sts = sts.clone();
        let role_arn = role_arn.clone();
        async move {
            sts.assume_role_with_web_identity()
                .role_arn(role_arn)
                .role_session_name("e2e")
                .web_identity_token(token)
                .send()
                .await
                .is_ok()
        }
    };
    let old = service_account_token(server, "sts.amazonaws.com").await?;
    stack.rotate_signing_key()?;
    // The emulator now serves only the new key: the old token fails at the issuer itself...
    assert!(!assume(old.clone()).await);
    // ...and verifies where the old key is still published.
    stack.resolve_issuer_at(&issuer, &public);
    assert!(assume(old.clone()).await);
    let new = service_account_token(server, "sts.amazonaws.com").await?;
    assert!(
        !assume(new.clone()).await,
        "the bucket does not hold the new key yet"
    );
    publish(server.issuer().jwks()).await?;
    assert!(assume(new).await);
    assert!(!assume(old).await);
    Ok(())
}
