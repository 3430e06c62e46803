//! The AWS emulator driven by the real aws-sdk-iam and aws-sdk-sts: moto's lifecycle, the IAM
//! front's extra checks, and `AssumeRoleWithWebIdentity` allowed and refused for the reasons
//! real STS uses.

use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use aws_sdk_iam::{error::ProvideErrorMetadata, operation::RequestId as _};
use aws_sdk_sts::{config::Credentials, error::SdkError};
use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use passport_e2e::{
    aws::{self, Aws, Moto, Options},
    oidc::Issuer,
    serve::Server,
    tls::Ca,
};
use serde_json::{Value, json};

const AUD: &str = "sts.amazonaws.com";

/// A Kubernetes-like token issuer on HTTPS (stack CA) serving discovery and JWKS.
struct TestIssuer {
    issuer: Issuer,
    _server: Server,
}

impl TestIssuer {
    async fn start(ca: &Ca) -> anyhow::Result<Self> {
        // The issuer's documents name its URL, which is known only once the server listens.
        let docs: Arc<OnceLock<(Value, Value)>> = Arc::default();
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(
                    |State(d): State<Arc<OnceLock<(Value, Value)>>>| async move {
                        Json(d.get().map(|d| d.0.clone()).unwrap_or_default())
                    },
                ),
            )
            .route(
                "/openid/v1/jwks",
                get(
                    |State(d): State<Arc<OnceLock<(Value, Value)>>>| async move {
                        Json(d.get().map(|d| d.1.clone()).unwrap_or_default())
                    },
                ),
            )
            .with_state(docs.clone());
        let server = Server::https(router, ca.loopback_server_config().await?).await?;
        let issuer = Issuer::generate(&server.url())?;
        docs.set((issuer.discovery(), issuer.jwks()))
            .map_err(|_| anyhow::anyhow!("issuer documents set twice"))?;
        Ok(Self {
            issuer,
            _server: server,
        })
    }

    fn url(&self) -> &str {
        self.issuer.url()
    }

    /// `127.0.0.1:PORT`: the provider ARN suffix and the condition-key prefix.
    fn host_path(&self) -> &str {
        self.url().trim_start_matches("https://")
    }

    fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            aws::ACCOUNT_ID,
            self.host_path()
        )
    }

    /// A service-account token shaped like kube-apiserver's, expiring `ttl` seconds from now.
    fn token(&self, namespace: &str, sa: &str, aud: &[&str], ttl: i64) -> anyhow::Result<String> {
        let now = jiff::Timestamp::now().as_second();
        self.issuer.sign(&json!({
            "iss": self.url(),
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "aud": aud,
            "exp": now + ttl,
            "iat": now - 30,
            "nbf": now - 30,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": sa, "uid": "6c1c4ba8-4f1e-4a6b-9a7e-3d2f1e0c9b8a"},
                "pod": {"name": format!("{sa}-0"), "uid": "0f5c2a1e-7d3b-4c8e-a9f6-1b2c3d4e5f60"},
            },
        }))
    }
}

/// One AWS emulator, one issuer registered as an IAM OIDC provider, SDK clients.
struct Fixture {
    ca: Ca,
    aws: Aws,
    issuer: TestIssuer,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

impl Fixture {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(Options::default()).await
    }

    async fn start_with(options: Options) -> anyhow::Result<Self> {
        let ca = Ca::new()?;
        let aws = Aws::start_with(&ca, options).await?;
        let issuer = TestIssuer::start(&ca).await?;
        let iam = aws::iam_client(&aws.iam_url());
        let sts = aws_sdk_sts::Client::from_conf(
            aws::sts_config(&aws.sts_url())
                .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
                .build(),
        );
        iam.create_open_id_connect_provider()
            .url(issuer.url())
            .client_id_list(AUD)
            .send()
            .await
            .context("creating the OIDC provider")?;
        Ok(Self {
            ca,
            aws,
            issuer,
            iam,
            sts,
        })
    }

    /// Creates a role trusting the issuer with `operator` on `sub` (and `aud` = AUD).
    async fn role(&self, name: &str, operator: &str, sub: &str) -> anyhow::Result<String> {
        let host = self.issuer.host_path();
        let mut condition = json!({"StringEquals": {format!("{host}:aud"): AUD}});
        condition[operator][format!("{host}:sub")] = json!(sub);
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": self.issuer.provider_arn()},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }],
        });
        let role = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(policy.to_string())
            .send()
            .await
            .context("creating the role")?;
        Ok(role.role().map(|r| r.arn().to_owned()).unwrap_or_default())
    }

    async fn assume(
        &self,
        role_arn: &str,
        token: &str,
    ) -> Result<
        aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
        SdkError<
            aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
        >,
    > {
        self.sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("e2e")
            .web_identity_token(token)
            .send()
            .await
    }
}

/// The error code and HTTP status of a refused call.
fn refusal<E: ProvideErrorMetadata, R: HttpStatus>(
    result: Result<impl std::fmt::Debug, SdkError<E, R>>,
) -> (String, u16) {
    match result {
        Ok(out) => panic!("expected a refusal, got {out:?}"),
        Err(e) => (
            e.code().unwrap_or("<none>").to_owned(),
            e.raw_response().map_or(0, HttpStatus::status),
        ),
    }
}

trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_sts::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[tokio::test]
async fn moto_starts_on_free_ports_and_stops() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(Moto::start(), Moto::start())?;
    assert_ne!(a.url(), b.url());
    let http = reqwest::Client::new();
    let probe = format!("{}/moto-api/data.json", a.url());
    assert!(http.get(&probe).send().await?.status().is_success());
    // Each moto has its own state.
    aws::iam_client(a.url())
        .create_role()
        .role_name("only-in-a")
        .assume_role_policy_document("{}")
        .send()
        .await?;
    let in_b = aws::iam_client(b.url())
        .get_role()
        .role_name("only-in-a")
        .send()
        .await;
    assert_eq!(
        in_b.err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("NoSuchEntity")
    );
    a.stop().await;
    assert!(
        http.get(&probe).send().await.is_err(),
        "moto still answers after stop"
    );
    drop(b);
    Ok(())
}

#[tokio::test]
async fn iam_front_manages_providers_and_roles_with_iam_checks() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let arn = fx.issuer.provider_arn();
    let role_arn = fx
        .role("app", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    assert_eq!(
        role_arn,
        format!("arn:aws:iam::{}:role/app", aws::ACCOUNT_ID)
    );

    // GetRole hands the trust policy back URL-encoded, as IAM does.
    let role = fx.iam.get_role().role_name("app").send().await?;
    let encoded = role
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .unwrap_or_default();
    let decoded: Value =
        serde_json::from_str(&percent_encoding::percent_decode_str(encoded).decode_utf8()?)?;
    assert_eq!(decoded["Statement"][0]["Principal"]["Federated"], arn);

    // Client-ID edits (moto answers them with 500; the front implements them).
    let client_ids = |iam: aws_sdk_iam::Client, arn: String| async move {
        let p = iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await?;
        anyhow::Ok(p.client_id_list().to_vec())
    };
    fx.iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id("second")
        .send()
        .await?;
    fx.iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id("second")
        .send()
        .await?;
    assert_eq!(
        client_ids(fx.iam.clone(), arn.clone()).await?,
        [AUD, "second"]
    );
    fx.iam
        .remove_client_id_from_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id(AUD)
        .send()
        .await?;
    fx.iam
        .remove_client_id_from_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id("absent")
        .send()
        .await?;
    assert_eq!(client_ids(fx.iam.clone(), arn.clone()).await?, ["second"]);
    let missing = format!(
        "arn:aws:iam::{}:oidc-provider/nowhere.test",
        aws::ACCOUNT_ID
    );
    let add_missing = fx
        .iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&missing)
        .client_id("x")
        .send()
        .await;
    assert_eq!(refusal(add_missing), ("NoSuchEntity".to_owned(), 404));

    // Deleting a missing provider is NoSuchEntity (moto says OK).
    let delete_missing = fx
        .iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&missing)
        .send()
        .await;
    assert_eq!(refusal(delete_missing), ("NoSuchEntity".to_owned(), 404));

    // A role may only trust a provider that exists; malformed JSON is refused.
    let trusting_missing = json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": missing}, "Action": "sts:AssumeRoleWithWebIdentity"}]});
    let created = fx
        .iam
        .create_role()
        .role_name("orphan")
        .assume_role_policy_document(trusting_missing.to_string())
        .send()
        .await;
    assert_eq!(
        refusal(created),
        ("MalformedPolicyDocument".to_owned(), 400)
    );
    let created = fx
        .iam
        .create_role()
        .role_name("broken")
        .assume_role_policy_document("{not json")
        .send()
        .await;
    assert_eq!(
        refusal(created),
        ("MalformedPolicyDocument".to_owned(), 400)
    );
    assert!(
        fx.iam.get_role().role_name("orphan").send().await.is_err(),
        "refused role was created"
    );

    // Everything else reaches moto unchanged, including its typed errors.
    let again = fx
        .iam
        .create_role()
        .role_name("app")
        .assume_role_policy_document(decoded.to_string())
        .send()
        .await;
    assert_eq!(refusal(again), ("EntityAlreadyExists".to_owned(), 409));
    fx.iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn trust_policy_quota_is_enforced_without_counting_whitespace() -> anyhow::Result<()> {
    let fx = Fixture::start_with(Options {
        trust_policy_quota: 600,
        ..Options::default()
    })
    .await?;
    let host = fx.issuer.host_path();
    let policy = |subs: Vec<String>, pretty: bool| {
        let doc = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": fx.issuer.provider_arn()},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {format!("{host}:sub"): subs}},
            }],
        });
        if pretty {
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        } else {
            doc.to_string()
        }
    };
    let subs = |n: usize| {
        (0..n)
            .map(|i| format!("system:serviceaccount:ns:sa-{i:03}"))
            .collect::<Vec<_>>()
    };
    // Find the largest list that fits, compactly written.
    let fits = (1..40)
        .take_while(|n| aws::quota::trust_policy_size(&policy(subs(*n), false)) <= 600)
        .last()
        .unwrap_or(1);
    let pretty = policy(subs(fits), true);
    assert!(
        pretty.len() > 600,
        "the pretty form must exceed the quota only through whitespace"
    );
    fx.iam
        .create_role()
        .role_name("fits")
        .assume_role_policy_document(pretty)
        .send()
        .await?;

    let too_big = policy(subs(fits + 1), false);
    let created = fx
        .iam
        .create_role()
        .role_name("too-big")
        .assume_role_policy_document(&too_big)
        .send()
        .await;
    let err = created.err().context("an over-quota role was accepted")?;
    assert_eq!(err.code(), Some("LimitExceeded"));
    assert_eq!(
        err.message(),
        Some("Cannot exceed quota for ACLSizePerRole: 600")
    );
    assert!(matches!(
        err.into_service_error(),
        aws_sdk_iam::operation::create_role::CreateRoleError::LimitExceededException(_)
    ));
    let updated = fx
        .iam
        .update_assume_role_policy()
        .role_name("fits")
        .policy_document(&too_big)
        .send()
        .await;
    assert_eq!(refusal(updated), ("LimitExceeded".to_owned(), 409));
    assert!(fx.iam.get_role().role_name("too-big").send().await.is_err());
    Ok(())
}

#[tokio::test]
async fn assume_role_with_web_identity_grants_the_trusted_subject() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("api", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let token = fx.issuer.token("team-a", "api", &[AUD], 600)?;
    let out = fx.assume(&role_arn, &token).await?;
    let creds = out.credentials().context("no credentials")?;
    assert!(creds.access_key_id().starts_with("ASIA"));
    let expires_in = creds.expiration().secs() - jiff::Timestamp::now().as_second();
    assert!(
        (3590..=3600).contains(&expires_in),
        "default duration is 3600s, got {expires_in}"
    );
    let user = out.assumed_role_user().context("no assumed role user")?;
    assert_eq!(
        user.arn(),
        format!("arn:aws:sts::{}:assumed-role/api/e2e", aws::ACCOUNT_ID)
    );
    assert!(user.assumed_role_id().starts_with("AROA") && user.assumed_role_id().ends_with(":e2e"));
    assert_eq!(
        out.subject_from_web_identity_token(),
        Some("system:serviceaccount:team-a:api")
    );
    assert_eq!(out.audience(), Some(AUD));
    assert_eq!(out.provider(), Some(fx.issuer.provider_arn().as_str()));
    assert!(out.request_id().is_some());

    // The issued credentials identify the assumed role; forged ones do not.
    let signed = |token: Option<String>| {
        aws_sdk_sts::Client::from_conf(
            aws::sts_config(&fx.aws.sts_url())
                .credentials_provider(Credentials::new(
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    token,
                    None,
                    "test",
                ))
                .build(),
        )
    };
    let me = signed(Some(creds.session_token().to_owned()))
        .get_caller_identity()
        .send()
        .await?;
    assert_eq!(me.arn(), Some(user.arn()));
    assert_eq!(me.account(), Some(aws::ACCOUNT_ID));
    assert_eq!(me.user_id(), Some(user.assumed_role_id()));
    let forged = signed(Some("forged".to_owned()))
        .get_caller_identity()
        .send()
        .await;
    assert_eq!(refusal(forged), ("InvalidClientTokenId".to_owned(), 403));

    // DurationSeconds: within the role's maximum, and refused beyond it.
    let long = fx
        .sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("e2e")
        .web_identity_token(&token)
        .duration_seconds(7200)
        .send()
        .await;
    assert_eq!(refusal(long), ("ValidationError".to_owned(), 400));
    let short = fx
        .sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("e2e")
        .web_identity_token(&token)
        .duration_seconds(900)
        .send()
        .await?;
    let expires_in = short.credentials().map_or(0, |c| c.expiration().secs())
        - jiff::Timestamp::now().as_second();
    assert!((890..=900).contains(&expires_in), "got {expires_in}");
    let bad_name = fx
        .sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("no spaces")
        .web_identity_token(&token)
        .send()
        .await;
    assert_eq!(refusal(bad_name), ("ValidationError".to_owned(), 400));
    Ok(())
}

#[tokio::test]
async fn assume_role_with_web_identity_refuses_like_sts() -> anyhow::Result<()> {
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError as E;
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("api", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let denied = ("AccessDenied".to_owned(), 403);
    let invalid = ("InvalidIdentityToken".to_owned(), 400);

    let wrong_sub = fx.issuer.token("team-a", "web", &[AUD], 600)?;
    assert_eq!(refusal(fx.assume(&role_arn, &wrong_sub).await), denied);

    let wrong_aud = fx.issuer.token("team-a", "api", &["other"], 600)?;
    let err = fx
        .assume(&role_arn, &wrong_aud)
        .await
        .err()
        .context("wrong aud accepted")?;
    assert_eq!(err.message(), Some("Incorrect token audience"));
    assert!(matches!(
        err.into_service_error(),
        E::InvalidIdentityTokenException(_)
    ));

    let stranger = TestIssuer::start(&fx.ca).await?;
    let foreign = stranger.token("team-a", "api", &[AUD], 600)?;
    let err = fx
        .assume(&role_arn, &foreign)
        .await
        .err()
        .context("unknown issuer accepted")?;
    assert_eq!(
        err.message().map(str::to_owned),
        Some(format!(
            "No OpenIDConnect provider found in your account for {}",
            stranger.url()
        ))
    );

    // Same claims, payload altered after signing.
    let good = fx.issuer.token("team-a", "api", &[AUD], 600)?;
    let parts: Vec<&str> = good.split('.').collect();
    let evil = fx.issuer.token("team-a", "admin", &[AUD], 600)?;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        evil.split('.').nth(1).unwrap_or_default(),
        parts[2]
    );
    assert_eq!(refusal(fx.assume(&role_arn, &tampered).await), invalid);

    let expired = fx.issuer.token("team-a", "api", &[AUD], -120)?;
    let err = fx
        .assume(&role_arn, &expired)
        .await
        .err()
        .context("expired token accepted")?;
    assert!(matches!(
        err.into_service_error(),
        E::ExpiredTokenException(_)
    ));

    let missing_role = format!("arn:aws:iam::{}:role/nobody", aws::ACCOUNT_ID);
    assert_eq!(refusal(fx.assume(&missing_role, &good).await), denied);
    assert_eq!(refusal(fx.assume(&role_arn, "not-a-jwt").await), invalid);
    // And the right token still works: nothing above was cached as a refusal.
    fx.assume(&role_arn, &good).await?;
    Ok(())
}

#[tokio::test]
async fn string_like_trusts_a_whole_namespace() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("team-a", "StringLike", "system:serviceaccount:team-a:*")
        .await?;
    for sa in ["api", "worker"] {
        let token = fx.issuer.token("team-a", sa, &[AUD], 600)?;
        let out = fx.assume(&role_arn, &token).await?;
        assert_eq!(
            out.subject_from_web_identity_token().map(str::to_owned),
            Some(format!("system:serviceaccount:team-a:{sa}"))
        );
    }
    let other_ns = fx.issuer.token("team-b", "api", &[AUD], 600)?;
    assert_eq!(
        refusal(fx.assume(&role_arn, &other_ns).await),
        ("AccessDenied".to_owned(), 403)
    );
    Ok(())
}

#[tokio::test]
async fn injected_faults_come_back_then_service_resumes() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("api", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let token = fx.issuer.token("team-a", "api", &[AUD], 600)?;

    fx.aws
        .sts_faults()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refusal(fx.assume(&role_arn, &token).await),
        ("ServiceUnavailable".to_owned(), 503)
    );
    fx.assume(&role_arn, &token)
        .await
        .context("after the fault")?;

    // Through the control route, as a stack in another process is driven; the SDK's standard
    // retry rides out one throttle.
    let http = reqwest::Client::new();
    let queued = http
        .post(format!("{}/_faults", fx.aws.iam_url()))
        .json(&json!({"status": 429, "count": 1}))
        .send()
        .await?;
    assert_eq!(queued.status(), StatusCode::NO_CONTENT);
    assert_eq!(fx.aws.iam_faults().pending(), 1);
    let listed = fx
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .context("the SDK did not retry the throttle")?;
    assert_eq!(listed.open_id_connect_provider_list().len(), 1);
    assert_eq!(fx.aws.iam_faults().pending(), 0);
    Ok(())
}

#[tokio::test]
async fn https_endpoints_serve_the_sdks_with_the_stack_ca() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let http_client = aws::sdk::https_client_trusting(&fx.ca.cert_pem())?;
    let iam = aws_sdk_iam::Client::from_conf(
        aws::iam_config(&fx.aws.iam_https_url())
            .http_client(http_client.clone())
            .build(),
    );
    assert!(fx.aws.iam_https_url().starts_with("https://"));
    let role_arn = {
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": fx.issuer.provider_arn()}, "Action": "sts:AssumeRoleWithWebIdentity"}]});
        let out = iam
            .create_role()
            .role_name("tls")
            .assume_role_policy_document(policy.to_string())
            .send()
            .await?;
        out.role().map(|r| r.arn().to_owned()).unwrap_or_default()
    };
    let sts = aws_sdk_sts::Client::from_conf(
        aws::sts_config(&fx.aws.sts_https_url())
            .http_client(http_client)
            .build(),
    );
    let token = fx.issuer.token("team-a", "api", &[AUD], 600)?;
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("tls")
        .web_identity_token(token)
        .send()
        .await?;
    assert!(out.credentials().is_some());

    // A client that does not trust the stack CA is refused at the TLS layer.
    let untrusting = aws_sdk_sts::Client::from_conf(
        aws::sts_config(&fx.aws.sts_https_url())
            .http_client(aws::sdk::https_client_trusting(&Ca::new()?.cert_pem())?)
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
            .build(),
    );
    let refused = untrusting.get_caller_identity().send().await;
    assert!(
        matches!(refused, Err(SdkError::DispatchFailure(_))),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sts_errors_are_query_protocol_xml() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let http = reqwest::Client::new();
    let response = http
        .post(fx.aws.sts_url())
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:aws:iam::123456789012:role/none"),
            ("RoleSessionName", "raw"),
            (
                "WebIdentityToken",
                &fx.issuer.token("ns", "sa", &[AUD], 600)?,
            ),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["content-type"], "text/xml");
    let body = response.text().await?;
    assert!(body.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>"), "{body}");

    // GET with a query string works as well, and unknown actions are refused.
    let response = http
        .get(format!(
            "{}/?Action=GetSessionToken&Version=2011-06-15",
            fx.aws.sts_url()
        ))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await?
            .contains("<Code>InvalidAction</Code>")
    );
    let response = http
        .get(format!(
            "{}/?Action=GetCallerIdentity&Version=2011-06-15",
            fx.aws.sts_url()
        ))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await?
            .contains("<Code>MissingAuthenticationToken</Code>")
    );
    Ok(())
}
