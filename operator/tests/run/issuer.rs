//! Issuer publishing (`spec.issuer.publish`) on the local stack, into S3 (moto behind the S3
//! front), Cloud Storage and Blob Storage (the GCP and Azure fakes): the discovery document and
//! JWKS land in the bucket with their content types and cache headers, the trust reports
//! `IssuerPublished`, a public URL that is not the cluster's issuer is `IssuerMismatch`, a
//! verifier pointed at the bucket (as a CDN in front of it would make the clouds) accepts the
//! cluster's tokens, and removing `publish` clears the publication from the status. With the
//! AWS STS front resolving the issuer at the bucket, a policy's `Verified` exchange goes through
//! the published copy. On the emulator, a signing-key rotation drill: a token signed with the old
//! key keeps verifying through the overlap, the new key works at once, and the old key leaves the
//! bucket only after the overlap.

use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use passport_crds::{AccessPolicy, FederatedTrust};
use passport_e2e::{
    aws::ACCOUNT_ID,
    oidc::JwksVerifier,
    stack::{AZURE_STORAGE_ACCOUNT, GCP_PROJECT_NUMBER},
};
use serde_json::Value;

use crate::harness::{
    Harness, apply_policy, apply_trust, harness, policy_condition, policy_ready, trust_condition,
    wait_policy, wait_trust,
};

const TRUST_LABEL: &str = "e2e.passport.dev/trust";
/// The overlap the harness's operator keeps a dropped key for
/// (`PASSPORT_ISSUER_KEY_OVERLAP_SECONDS`).
const OVERLAP_SECONDS: u64 = 20;

/// A fresh bucket on the S3 front, readable by anyone (the bucket policy a published issuer
/// needs); its public base URL (`{AWS_ENDPOINT_URL_S3}/{bucket}`).
async fn bucket(h: &Harness, name: &str) -> String {
    use passport_e2e::aws::sdk;
    let endpoint = h
        .stack
        .aws
        .as_ref()
        .expect("AWS in the stack")
        .s3_https_url();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_sdk_s3::config::Region::new(sdk::REGION))
        .credentials_provider(sdk::test_credentials())
        .force_path_style(true)
        .http_client(sdk::https_client_trusting(&h.stack.ca.cert_pem()).unwrap())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("CreateBucket");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{name}/*")}],
    });
    s3.put_bucket_policy()
        .bucket(name)
        .policy(policy.to_string())
        .send()
        .await
        .expect("PutBucketPolicy");
    format!("{}/{name}", endpoint.trim_end_matches('/'))
}

/// An object as the public sees it: status, `Content-Type`, `Cache-Control` and body.
async fn public_get(h: &Harness, url: &str) -> (u16, String, String, Vec<u8>) {
    let answer = h.stack.ca.client().unwrap().get(url).send().await.unwrap();
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (status, content_type, cache) = (
        answer.status().as_u16(),
        header("content-type"),
        header("cache-control"),
    );
    (
        status,
        content_type,
        cache,
        answer.bytes().await.unwrap().to_vec(),
    )
}

fn kids(jwks: &[u8]) -> Vec<String> {
    let jwks: Value = serde_json::from_slice(jwks).expect("the JWKS is JSON");
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect();
    kids.sort();
    kids
}

/// An AWS trust publishing to `store` (`s3: {...}`, `gcs: {...}` or `azureBlob: {...}`).
fn trust_yaml(name: &str, store: &str, public_url: Option<&str>) -> String {
    let public = public_url.map_or(String::new(), |u| format!(", publicUrl: '{u}'"));
    aws_trust_yaml(name, &format!("{{publish: {{{store}{public}}}}}"))
}

/// An AWS trust with `issuer` as its `spec.issuer`, for namespaces labelled with its name.
fn aws_trust_yaml(name: &str, issuer: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  issuer: {issuer}\n  aws: {{accountId: '{ACCOUNT_ID}'}}\n  namespaceSelector: {{matchLabels: {{{TRUST_LABEL}: {name}}}}}\n"
    )
}

fn s3_store(bucket: &str, prefix: &str) -> String {
    format!("s3: {{bucket: {bucket}, region: us-east-1, prefix: {prefix}}}")
}

/// The cluster's JWKS, as the API server serves it.
async fn cluster_kids(client: &Client) -> Vec<String> {
    let jwks = client
        .request_text(
            http::Request::get("/openid/v1/jwks")
                .header("accept", "application/jwk-set+json")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    kids(jwks.as_bytes())
}

/// What the public sees under `base` is the cluster's issuer, and the trust reports it
/// `Published`: the discovery document names the issuer, the JWKS holds exactly the cluster's
/// keys, both with the content types and cache headers the clouds expect, and a verifier that
/// fetches the issuer's keys from `base` accepts a cluster token (one pointed at a prefix where
/// nothing is published refuses it).
async fn assert_published(h: &Harness, client: &Client, trust: &str, base: &str, issuer: &str) {
    let (status, content_type, cache, body) =
        public_get(h, &format!("{base}/.well-known/openid-configuration")).await;
    assert_eq!(status, 200, "{base}");
    assert_eq!(content_type, "application/json");
    assert_eq!(cache, "public, max-age=300");
    let discovery: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(discovery["issuer"], issuer, "{discovery}");
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/openid/v1/jwks"));

    let (status, content_type, cache, jwks) =
        public_get(h, &format!("{base}/openid/v1/jwks")).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/jwk-set+json");
    assert_eq!(cache, "public, max-age=300");
    assert_eq!(
        kids(&jwks),
        cluster_kids(client).await,
        "exactly the cluster's keys"
    );
    let published = Api::<FederatedTrust>::all(client.clone())
        .get(trust)
        .await
        .unwrap();
    assert_eq!(
        trust_condition(&published, "IssuerPublished").1,
        "Published"
    );
    let publication = published.status.unwrap().publication.unwrap();
    assert_eq!(publication.url.as_deref(), Some(issuer));
    assert_eq!(publication.keys, kids(&jwks));

    // The redirect is scoped to a verifier of this test's own, not the shared stack's fakes.
    let redirected = verifier(h);
    redirected.redirects().set(issuer, base);
    let ns = h.namespace(client, "publish", &[]).await;
    h.service_accounts(client, &ns, &["app"]).await;
    let claims = redirected
        .verify(&token(client, &ns, "app").await, issuer)
        .await
        .expect("the published keys verify the cluster's token");
    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:app"));
    let empty = verifier(h);
    empty
        .redirects()
        .set(issuer, &format!("{base}-nothing-here"));
    assert!(
        empty
            .verify(&token(client, &ns, "app").await, issuer)
            .await
            .is_err()
    );
}

fn cluster_issuer(h: &Harness) -> String {
    h.stack
        .apiserver
        .issuer_url()
        .trim_end_matches('/')
        .to_owned()
}

async fn token(client: &Client, namespace: &str, sa: &str) -> String {
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": ["sts.amazonaws.com"], "expirationSeconds": 600}
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .and_then(|s| s.token)
        .expect("a token")
}

/// A verifier like the clouds' fakes, with redirects of its own (not the shared stack's) and
/// an empty cache.
fn verifier(h: &Harness) -> JwksVerifier {
    JwksVerifier::with_redirects(
        h.stack.ca.client().unwrap(),
        passport_e2e::oidc::IssuerRedirects::default(),
    )
}

/// Publishes the cluster's issuer to S3 for a trust of its own, at the issuer's URL
/// (`publicUrl`, a CDN in front of the bucket); returns the trust, the bucket's base for that
/// prefix and the issuer.
async fn published(h: &Harness, client: &Client, id: &str) -> (String, String, String) {
    let issuer = cluster_issuer(h);
    let name = format!("publish-{id}");
    let bucket_name = format!("issuer-{id}");
    let base = format!("{}/{id}", bucket(h, &bucket_name).await);
    publish(client, &name, &s3_store(&bucket_name, id), &issuer).await;
    (name, base, issuer)
}

/// Applies a trust publishing to `store` at `public_url` and waits until it is published.
async fn publish(client: &Client, name: &str, store: &str, public_url: &str) -> FederatedTrust {
    apply_trust(client, &trust_yaml(name, store, Some(public_url))).await;
    wait_trust(client, name, "IssuerPublished", |t| {
        trust_condition(t, "IssuerPublished").0 == "True"
    })
    .await
}

async fn delete_trusts(client: &Client, names: &[&str]) {
    for trust in names {
        Api::<FederatedTrust>::all(client.clone())
            .delete(trust, &DeleteParams::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issuer_is_published_to_s3_and_a_mismatched_url_is_refused() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let (name, base, issuer) = published(h, &client, id).await;
    assert_published(h, &client, &name, &base, &issuer).await;

    // Without publicUrl the documents are served at the bucket's own URL, which is not the
    // cluster's issuer: a clear condition, and the trust is not Ready.
    let mismatch = format!("mismatch-{id}");
    let bucket_name = format!("issuer-{id}-b");
    bucket(h, &bucket_name).await;
    apply_trust(
        &client,
        &trust_yaml(&mismatch, &s3_store(&bucket_name, "c1"), None),
    )
    .await;
    let trust = wait_trust(&client, &mismatch, "IssuerMismatch", |t| {
        trust_condition(t, "IssuerPublished").1 == "IssuerMismatch"
    })
    .await;
    let (status, _, message) = trust_condition(&trust, "IssuerPublished");
    assert_eq!(status, "False");
    assert!(
        message.contains("--service-account-issuer") && message.contains(&bucket_name),
        "{message}"
    );
    assert_eq!(trust_condition(&trust, "Ready").1, "IssuerMismatch");
    delete_trusts(&client, &[&name, &mismatch]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issuer_is_published_to_cloud_storage_and_blob_storage() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let issuer = cluster_issuer(h);

    // Cloud Storage, with the operator's Google credentials (STORAGE_EMULATOR_HOST).
    let gcs = format!("gcs-{id}");
    let bucket = format!("issuer-{id}");
    assert!(
        h.stack
            .gcp
            .create_public_bucket(&bucket, GCP_PROJECT_NUMBER)
    );
    let store = format!("gcs: {{bucket: {bucket}, prefix: {id}}}");
    publish(&client, &gcs, &store, &issuer).await;
    let base = format!("{}/{bucket}/{id}", h.stack.gcp.storage_url());
    assert_published(h, &client, &gcs, &base, &issuer).await;

    // Blob Storage, with the operator's Entra credentials for Storage.
    let blob = format!("blob-{id}");
    let container = format!("issuer-{id}");
    assert!(
        h.stack
            .azure
            .create_public_container(AZURE_STORAGE_ACCOUNT, &container)
    );
    let account_url = h.stack.azure.blob_account_url(AZURE_STORAGE_ACCOUNT);
    let store =
        format!("azureBlob: {{accountUrl: '{account_url}', container: {container}, prefix: {id}}}");
    publish(&client, &blob, &store, &issuer).await;
    let base = format!("{account_url}/{container}/{id}");
    assert_published(h, &client, &blob, &base, &issuer).await;

    // Without `publish` the trust stops publishing: the condition and the publication leave
    // its status (what it published stays in the container; docs/issuer-publishing.md).
    apply_trust(
        &client,
        &aws_trust_yaml(&blob, &format!("{{url: '{issuer}'}}")),
    )
    .await;
    let trust = wait_trust(&client, &blob, "without a publication", |t| {
        t.status.as_ref().is_some_and(|s| {
            s.publication.is_none() && s.conditions.iter().all(|c| c.type_ != "IssuerPublished")
        })
    })
    .await;
    assert_eq!(trust_condition(&trust, "Ready").0, "True");
    let (status, _, _, _) = public_get(h, &format!("{base}/openid/v1/jwks")).await;
    assert_eq!(status, 200, "what was published stays");
    delete_trusts(&client, &[&gcs, &blob]).await;
}

/// Removes an issuer redirect of the shared stack when dropped, so that a failing test does not
/// leave the other tests' exchanges pointed at its bucket.
struct Redirect<'a>(&'a Harness, String);

impl Drop for Redirect<'_> {
    fn drop(&mut self) {
        self.0.stack.issuer_redirects().remove(&self.1);
    }
}

/// `AssumeRoleWithWebIdentity` against the STS front, as an SDK sends it: the HTTP status and
/// the body.
async fn assume_role(h: &Harness, role_arn: &str, token: &str) -> (u16, String) {
    let sts = h
        .stack
        .aws
        .as_ref()
        .expect("AWS in the stack")
        .sts_https_url();
    let answer = h
        .stack
        .ca
        .client()
        .unwrap()
        .post(sts)
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn),
            ("RoleSessionName", "e2e"),
            ("WebIdentityToken", token),
        ])
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_exchange_goes_through_the_published_issuer() {
    let h = harness();
    // The redirect applies to every exchange of the shared stack's STS front: alone.
    let _alone = h.exclusive().await;
    let client = h.client().await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let (name, base, issuer) = published(h, &client, id).await;
    let ns = h
        .namespace(&client, "published", &[(TRUST_LABEL, &name)])
        .await;
    h.service_accounts(&client, &ns, &["app"]).await;

    // The STS front now reads this issuer's keys only from the bucket, as AWS would read them
    // from the public URL a CDN serves the bucket at.
    h.stack.resolve_issuer_at(&issuer, &base);
    let _restore = Redirect(h, issuer.clone());
    apply_policy(
        &client,
        &ns,
        &format!(
            "metadata: {{name: app}}\nspec:\n  trustRef: {{name: {name}}}\n  serviceAccounts: [app]\n  aws: {{}}\n  verify: true\n"
        ),
    )
    .await;
    let verified = wait_policy(&client, &ns, "app", "Ready and Verified", |p| {
        policy_ready(p) && policy_condition(p, "Verified").0 == "True"
    })
    .await;
    let role_arn = verified.status.unwrap().identity.expect("the role's ARN");
    let (status, body) = assume_role(h, &role_arn, &token(&client, &ns, "app").await).await;
    assert_eq!(status, 200, "{body}");

    // Resolved at a prefix where nothing is published, the same exchange fails as AWS fails
    // it when it cannot fetch the keys: they came from the bucket, not from the API server.
    h.stack
        .resolve_issuer_at(&issuer, &format!("{base}-nothing-here"));
    let (status, body) = assume_role(h, &role_arn, &token(&client, &ns, "app").await).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>IDPCommunicationError</Code>"),
        "{body}"
    );

    Api::<AccessPolicy>::namespaced(client.clone(), &ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    delete_trusts(&client, &[&name]).await;
}

/// [`wait_trust`] over up to three minutes.
async fn wait_long(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&FederatedTrust) -> bool,
) -> FederatedTrust {
    let api: Api<FederatedTrust> = Api::all(client.clone());
    for _ in 0..3 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(trust) = api.get(name).await
                && check(&trust)
            {
                return trust;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    wait_trust(client, name, what, check).await
}

/// Needs the emulator: the real kube-apiserver cannot rotate its signing key live.
pub mod emulator_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_key_rotation_keeps_the_old_key_published_through_the_overlap() {
        let h = harness();
        // The rotation changes the key every later token is signed with: alone.
        let _alone = h.exclusive().await;
        let client = h.client().await;
        let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let (name, base, issuer) = published(h, &client, id).await;
        let ns = h.namespace(&client, "rotate", &[]).await;
        h.service_accounts(&client, &ns, &["app"]).await;
        let (_, _, _, before) = public_get(h, &format!("{base}/openid/v1/jwks")).await;
        let old_kids = kids(&before);
        let old_token = token(&client, &ns, "app").await;

        let new_kid = h.stack.rotate_signing_key().unwrap();
        assert!(!old_kids.contains(&new_kid));
        // The cluster now serves only the new key; the bucket keeps the old one too.
        // Passport re-reads the cluster's keys at most every 30 s, and an issuer whose keys
        // differ from them is checked again after a minute.
        let trust = wait_long(&client, &name, "RotationInProgress", |t| {
            trust_condition(t, "IssuerPublished").1 == "RotationInProgress"
        })
        .await;
        let (_, _, _, during) = public_get(h, &format!("{base}/openid/v1/jwks")).await;
        let mut expected: Vec<String> = old_kids.iter().cloned().chain([new_kid.clone()]).collect();
        expected.sort();
        assert_eq!(
            kids(&during),
            expected,
            "old and new keys through the overlap"
        );
        let retiring = trust.status.unwrap().publication.unwrap().retiring_keys;
        assert_eq!(
            retiring.iter().map(|r| r.kid.clone()).collect::<Vec<_>>(),
            old_kids
        );

        // Through the overlap, both tokens verify against the bucket.
        let redirected = verifier(h);
        redirected.redirects().set(&issuer, &base);
        let new_token = token(&client, &ns, "app").await;
        redirected
            .verify(&new_token, &issuer)
            .await
            .expect("the new key works at once");
        redirected
            .verify(&old_token, &issuer)
            .await
            .expect("the old key still works through the overlap");

        // After the overlap the old key goes, and only then.
        let trust = wait_long(&client, &name, "Published after the overlap", |t| {
            trust_condition(t, "IssuerPublished").1 == "Published"
        })
        .await;
        let since = &retiring[0].since;
        let since: jiff::Timestamp = since.parse().unwrap();
        assert!(
            jiff::Timestamp::now().duration_since(since).as_secs() >= OVERLAP_SECONDS as i64,
            "the old key left before its overlap ended"
        );
        let (_, _, _, after) = public_get(h, &format!("{base}/openid/v1/jwks")).await;
        assert_eq!(kids(&after), std::slice::from_ref(&new_kid));
        assert!(
            trust
                .status
                .unwrap()
                .publication
                .unwrap()
                .retiring_keys
                .is_empty()
        );
        let fresh = verifier(h);
        fresh.redirects().set(&issuer, &base);
        assert!(
            fresh.verify(&old_token, &issuer).await.is_err(),
            "after the overlap a token signed with the old key is refused"
        );
        fresh
            .verify(&new_token, &issuer)
            .await
            .expect("the new key still works");

        Api::<FederatedTrust>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
    }
}
