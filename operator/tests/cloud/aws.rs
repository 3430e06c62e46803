//! The AWS provider with the real aws-sdk-iam against moto behind the stack's IAM front: OIDC
//! providers and roles created, read back, updated, left alone when already right (zero writes),
//! adopted, deleted, and foreign objects never touched; faults retried or surfaced.

use std::collections::BTreeMap;

use aws_sdk_iam::config::retry::RetryConfig;
use passport_crds::conditions::Reason;
use passport_e2e::{
    aws::{self, Aws},
    oidc::ServedIssuer,
    tls::Ca,
};
use passport_operator::cloud::{
    Calls, Change, Cloud, CloudConfig, Deleted, ErrorKind, OidcProviderIntent, OidcProviderRelease,
    OidcProviders as _, Owner, RoleIntent, Roles as _, TrustGrant, TrustStatementIntent,
    aws::{AwsProvider, policy::PolicyDocument},
    retry::Backoff,
};
use reqwest::StatusCode;

const AUD: &str = "sts.amazonaws.com";
// Customer managed policies the fixture creates (moto loads no AWS managed policies).
const READ_ONLY: &str = "arn:aws:iam::123456789012:policy/invoices-read";
const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/payments-boundary";

struct Fx {
    // Held for the fixture's lifetime: dropping them stops the servers.
    _ca: Ca,
    aws: Aws,
    issuer: ServedIssuer,
    calls: Calls,
    provider: AwsProvider,
    /// A plain IAM client (no Passport logic) to seed and read back state.
    iam: aws_sdk_iam::Client,
}

async fn fx() -> Fx {
    passport_e2e::tls::install_crypto_provider();
    let ca = Ca::new().unwrap();
    let aws = Aws::start(&ca).await.unwrap();
    let issuer = ServedIssuer::start(&ca).await.unwrap();
    let calls = Calls::default();
    let config = CloudConfig {
        backoff: Backoff::fast(),
        ..CloudConfig::default()
    };
    // The provider talks HTTPS to the IAM front and trusts only the stack CA, as in a cluster.
    let sdk = aws::iam_config(&aws.iam_https_url())
        .http_client(aws::sdk::https_client_trusting(&ca.cert_pem()).unwrap())
        .retry_config(RetryConfig::disabled())
        .build();
    let provider = AwsProvider::new(aws_sdk_iam::Client::from_conf(sdk), calls.clone(), &config);
    let iam = aws::iam_client(&aws.iam_url());
    for name in ["invoices-read", "payments-boundary"] {
        iam.create_policy()
            .policy_name(name)
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
    }
    Fx {
        _ca: ca,
        aws,
        issuer,
        calls,
        provider,
        iam,
    }
}

fn trust_owner() -> Owner {
    Owner::trust("prod", "aws")
}

fn policy_owner() -> Owner {
    Owner::policy("prod", "payments", "api")
}

fn subject(sa: &str) -> String {
    format!("system:serviceaccount:payments:{sa}")
}

impl Fx {
    fn oidc(&self) -> OidcProviderIntent {
        OidcProviderIntent {
            account_id: aws::ACCOUNT_ID.to_owned(),
            partition: "aws".to_owned(),
            issuer: self.issuer.url().to_owned(),
            audience: AUD.to_owned(),
            owner: trust_owner(),
            tags: BTreeMap::from([("team".to_owned(), "platform".to_owned())]),
        }
    }

    fn release(&self, still_used: bool) -> OidcProviderRelease {
        OidcProviderRelease {
            account_id: aws::ACCOUNT_ID.to_owned(),
            partition: "aws".to_owned(),
            issuer: self.issuer.url().to_owned(),
            owner: trust_owner(),
            still_used,
        }
    }

    fn grant(&self, sas: &[&str]) -> TrustGrant {
        TrustGrant {
            provider_arn: self.issuer.provider_arn(),
            issuer: self.issuer.url().to_owned(),
            audience: AUD.to_owned(),
            subjects: sas.iter().map(|sa| subject(sa)).collect(),
        }
    }

    fn role(&self, name: &str, sas: &[&str]) -> RoleIntent {
        RoleIntent {
            name: name.to_owned(),
            path: "/passport/".to_owned(),
            owner: policy_owner(),
            grant: self.grant(sas),
            managed_policy_arns: vec![READ_ONLY.to_owned()],
            inline_policy: Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::invoices/*"}]}"#
                    .to_owned(),
            ),
            max_session_duration: Some(7200),
            permissions_boundary_arn: Some(BOUNDARY.to_owned()),
            tags: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        }
    }

    async fn with_provider(&self) {
        self.provider
            .ensure_oidc_provider(&self.oidc())
            .await
            .unwrap();
    }

    async fn trust_policy(&self, role: &str) -> PolicyDocument {
        let out = self.iam.get_role().role_name(role).send().await.unwrap();
        let text = out.role.unwrap().assume_role_policy_document.unwrap();
        PolicyDocument::parse(&text).unwrap()
    }

    /// Creates a role outside Passport with `trust` and `tags`.
    async fn foreign_role(&self, name: &str, trust: &str, tags: &[(&str, &str)]) {
        let tags = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap()
            })
            .collect();
        self.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust)
            .set_tags(Some(tags))
            .send()
            .await
            .unwrap();
    }
}

fn tag_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

#[tokio::test]
async fn an_oidc_provider_is_created_with_ownership_tags_and_then_left_alone() {
    let fx = fx().await;
    let ensured = fx.provider.ensure_oidc_provider(&fx.oidc()).await.unwrap();
    assert_eq!(ensured.change, Change::Created);
    assert_eq!(ensured.state.arn, fx.issuer.provider_arn());
    assert!(ensured.state.created);

    let out = fx
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&ensured.state.arn)
        .send()
        .await
        .unwrap();
    assert_eq!(out.client_id_list(), [AUD]);
    let tags = tag_map(out.tags());
    assert_eq!(tags["passport.dev/cluster"], "prod");
    assert_eq!(tags["passport.dev/kind"], "FederatedTrust");
    assert_eq!(tags["passport.dev/name"], "aws");
    assert_eq!(tags["team"], "platform");

    let writes = fx.calls.writes(Cloud::Aws);
    let again = fx.provider.ensure_oidc_provider(&fx.oidc()).await.unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(
        fx.calls.writes(Cloud::Aws),
        writes,
        "no write at steady state"
    );
}

#[tokio::test]
async fn an_existing_provider_is_adopted_by_adding_the_audience_and_never_deleted() {
    let fx = fx().await;
    fx.iam
        .create_open_id_connect_provider()
        .url(fx.issuer.url())
        .client_id_list("vault")
        .send()
        .await
        .unwrap();
    let ensured = fx.provider.ensure_oidc_provider(&fx.oidc()).await.unwrap();
    assert_eq!(ensured.change, Change::Updated);
    assert!(!ensured.state.created);
    let out = fx
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(fx.issuer.provider_arn())
        .send()
        .await
        .unwrap();
    let mut ids = out.client_id_list().to_vec();
    ids.sort();
    assert_eq!(ids, [AUD, "vault"]);
    assert!(out.tags().is_empty(), "an adopted provider gets no tags");

    let deleted = fx
        .provider
        .delete_oidc_provider(&fx.release(false))
        .await
        .unwrap();
    assert!(
        matches!(deleted, Deleted::Kept { ref why } if why.contains("not created by Passport"))
    );
    fx.iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(fx.issuer.provider_arn())
        .send()
        .await
        .expect("the adopted provider still exists");
}

#[tokio::test]
async fn a_provider_is_deleted_only_when_no_other_trust_uses_it() {
    let fx = fx().await;
    fx.with_provider().await;
    let kept = fx
        .provider
        .delete_oidc_provider(&fx.release(true))
        .await
        .unwrap();
    assert!(matches!(kept, Deleted::Kept { .. }));
    let deleted = fx
        .provider
        .delete_oidc_provider(&fx.release(false))
        .await
        .unwrap();
    assert_eq!(deleted, Deleted::Deleted);
    let gone = fx
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(fx.issuer.provider_arn())
        .send()
        .await;
    assert!(gone.is_err());
    let again = fx
        .provider
        .delete_oidc_provider(&fx.release(false))
        .await
        .unwrap();
    assert_eq!(again, Deleted::Absent);
}

#[tokio::test]
async fn a_role_is_created_with_the_exact_documents_and_works_with_sts() {
    let fx = fx().await;
    fx.with_provider().await;
    let intent = fx.role("payments-api", &["api", "worker"]);
    let ensured = fx.provider.ensure_role(&intent).await.unwrap();
    assert_eq!(ensured.change, Change::Created);
    assert_eq!(
        ensured.state.arn,
        format!(
            "arn:aws:iam::{}:role/passport/payments-api",
            aws::ACCOUNT_ID
        )
    );

    let role = fx
        .iam
        .get_role()
        .role_name("payments-api")
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(role.path, "/passport/");
    assert_eq!(role.max_session_duration, Some(7200));
    assert_eq!(
        role.permissions_boundary
            .and_then(|b| b.permissions_boundary_arn)
            .as_deref(),
        Some(BOUNDARY)
    );
    let tags = tag_map(role.tags.as_deref().unwrap_or_default());
    assert_eq!(tags["passport.dev/namespace"], "payments");
    assert_eq!(tags["passport.dev/kind"], "AccessPolicy");
    assert_eq!(tags["team"], "payments");
    let trust = PolicyDocument::parse(&role.assume_role_policy_document.unwrap()).unwrap();
    assert!(trust.same_as(&PolicyDocument::trust(
        "Passport",
        &fx.grant(&["worker", "api"])
    )));
    // The issuer's port changes per run: the snapshot names it ISSUER.
    let stable: serde_json::Value =
        serde_json::from_str(&trust.to_json().replace(fx.issuer.host_path(), "ISSUER")).unwrap();
    insta::assert_json_snapshot!("aws_owned_role_trust_policy", stable);
    let attached = fx
        .iam
        .list_attached_role_policies()
        .role_name("payments-api")
        .send()
        .await
        .unwrap();
    let attached: Vec<_> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(attached, [READ_ONLY]);
    let inline = fx
        .iam
        .get_role_policy()
        .role_name("payments-api")
        .policy_name("passport")
        .send()
        .await
        .unwrap();
    assert!(passport_operator::cloud::aws::policy::same_text(
        &inline.policy_document,
        intent.inline_policy.as_deref().unwrap()
    ));

    let writes = fx.calls.writes(Cloud::Aws);
    let again = fx.provider.ensure_role(&intent).await.unwrap();
    assert_eq!(again.change, Change::Unchanged, "{:?}", again.changes);
    assert_eq!(
        fx.calls.writes(Cloud::Aws),
        writes,
        "no write at steady state"
    );

    // The document Passport wrote is one STS accepts for the bound service account only.
    let sts = aws::sts_client(&fx.aws.sts_url());
    let token = fx.issuer.token("payments", "api", &[AUD], 600).unwrap();
    let assumed = sts
        .assume_role_with_web_identity()
        .role_arn(&ensured.state.arn)
        .role_session_name("test")
        .web_identity_token(token)
        .send()
        .await;
    assert!(assumed.is_ok(), "{assumed:?}");
    let stranger = fx
        .issuer
        .token("payments", "intruder", &[AUD], 600)
        .unwrap();
    let refused = sts
        .assume_role_with_web_identity()
        .role_arn(&ensured.state.arn)
        .role_session_name("test")
        .web_identity_token(stranger)
        .send()
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn changing_the_service_accounts_rewrites_only_the_trust_policy() {
    let fx = fx().await;
    fx.with_provider().await;
    fx.provider
        .ensure_role(&fx.role("payments-api", &["api"]))
        .await
        .unwrap();
    let writes = fx.calls.writes(Cloud::Aws);
    let updated = fx
        .provider
        .ensure_role(&fx.role("payments-api", &["api", "worker"]))
        .await
        .unwrap();
    assert_eq!(updated.change, Change::Updated);
    assert_eq!(fx.calls.writes(Cloud::Aws), writes + 1);
    assert_eq!(fx.calls.operation(Cloud::Aws, "UpdateAssumeRolePolicy"), 1);
    assert!(
        fx.trust_policy("payments-api")
            .await
            .same_as(&PolicyDocument::trust(
                "Passport",
                &fx.grant(&["api", "worker"])
            ))
    );

    let mut fewer = fx.role("payments-api", &["api", "worker"]);
    fewer.managed_policy_arns.clear();
    fewer.inline_policy = None;
    fewer.max_session_duration = None;
    let updated = fx.provider.ensure_role(&fewer).await.unwrap();
    assert_eq!(updated.change, Change::Updated);
    assert_eq!(fx.calls.operation(Cloud::Aws, "DetachRolePolicy"), 1);
    assert_eq!(fx.calls.operation(Cloud::Aws, "DeleteRolePolicy"), 1);
    let role = fx
        .iam
        .get_role()
        .role_name("payments-api")
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(role.max_session_duration, Some(3600));
}

#[tokio::test]
async fn a_role_is_deleted_with_its_policies_only_by_its_owner() {
    let fx = fx().await;
    fx.with_provider().await;
    fx.provider
        .ensure_role(&fx.role("payments-api", &["api"]))
        .await
        .unwrap();
    let other = Owner::policy("prod", "payments", "someone-else");
    let kept = fx
        .provider
        .delete_role("payments-api", &other)
        .await
        .unwrap();
    assert!(matches!(kept, Deleted::Kept { ref why } if why.contains("payments/api")));
    assert_eq!(
        fx.provider
            .delete_role("payments-api", &policy_owner())
            .await
            .unwrap(),
        Deleted::Deleted
    );
    assert!(
        fx.iam
            .get_role()
            .role_name("payments-api")
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        fx.provider
            .delete_role("payments-api", &policy_owner())
            .await
            .unwrap(),
        Deleted::Absent
    );
}

#[tokio::test]
async fn a_role_passport_does_not_own_is_never_modified() {
    let fx = fx().await;
    fx.with_provider().await;
    let foreign = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    fx.foreign_role("hand-made", foreign, &[]).await;
    fx.foreign_role(
        "other-cluster",
        foreign,
        &[
            ("passport.dev/cluster", "staging"),
            ("passport.dev/kind", "AccessPolicy"),
            ("passport.dev/namespace", "payments"),
            ("passport.dev/name", "api"),
        ],
    )
    .await;
    let writes = fx.calls.writes(Cloud::Aws);
    let error = fx
        .provider
        .ensure_role(&fx.role("hand-made", &["api"]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(error.reason(), Reason::NotOwned);
    assert!(
        error.message.contains("outside Passport"),
        "{}",
        error.message
    );
    let error = fx
        .provider
        .ensure_role(&fx.role("other-cluster", &["api"]))
        .await
        .unwrap_err();
    assert!(
        error.message.contains("of cluster staging"),
        "{}",
        error.message
    );
    assert_eq!(fx.calls.writes(Cloud::Aws), writes, "nothing written");
    assert!(
        fx.trust_policy("hand-made")
            .await
            .same_as(&PolicyDocument::parse(foreign).unwrap())
    );
    let kept = fx
        .provider
        .delete_role("hand-made", &policy_owner())
        .await
        .unwrap();
    assert!(matches!(kept, Deleted::Kept { .. }));
}

#[tokio::test]
async fn an_adopted_role_keeps_every_other_statement() {
    let fx = fx().await;
    fx.with_provider().await;
    let original = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ops","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}"#;
    fx.foreign_role("shared-app", original, &[("owner", "ops")])
        .await;
    let intent = TrustStatementIntent {
        role_arn: format!("arn:aws:iam::{}:role/shared-app", aws::ACCOUNT_ID),
        sid: "PassportPaymentsApi".to_owned(),
        grant: fx.grant(&["api"]),
    };
    let ensured = fx.provider.ensure_trust_statement(&intent).await.unwrap();
    assert_eq!(ensured.change, Change::Updated);
    let trust = fx.trust_policy("shared-app").await;
    assert_eq!(trust.statements.len(), 2);
    let ops = PolicyDocument::parse(original).unwrap();
    assert!(trust.without_statement("PassportPaymentsApi").same_as(&ops));

    let writes = fx.calls.writes(Cloud::Aws);
    let again = fx.provider.ensure_trust_statement(&intent).await.unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(fx.calls.writes(Cloud::Aws), writes);

    let removed = fx
        .provider
        .remove_trust_statement(&intent.role_arn, &intent.sid)
        .await
        .unwrap();
    assert_eq!(removed, Deleted::Deleted);
    assert!(fx.trust_policy("shared-app").await.same_as(&ops));
    let role = fx
        .iam
        .get_role()
        .role_name("shared-app")
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(
        tag_map(role.tags.as_deref().unwrap_or_default())["owner"],
        "ops"
    );
}

#[tokio::test]
async fn a_trust_policy_over_the_quota_is_refused_before_any_call() {
    let fx = fx().await;
    let many: Vec<String> = (0..60).map(|i| format!("service-account-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let error = fx
        .provider
        .ensure_role(&fx.role("too-big", &many))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded);
    assert_eq!(error.reason(), Reason::TrustPolicyTooLarge);
    assert!(error.message.contains("quota of 2048"), "{}", error.message);
    assert_eq!(fx.calls.total(Cloud::Aws), 0, "no call reached AWS");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_they_pass() {
    let fx = fx().await;
    fx.aws
        .iam_faults()
        .fail_next(2, StatusCode::TOO_MANY_REQUESTS);
    fx.aws
        .iam_faults()
        .fail_next(1, StatusCode::INTERNAL_SERVER_ERROR);
    let ensured = fx.provider.ensure_oidc_provider(&fx.oidc()).await.unwrap();
    assert_eq!(ensured.change, Change::Created);
    // Three failed reads, one that found nothing, then the create.
    assert_eq!(
        fx.calls.operation(Cloud::Aws, "GetOpenIDConnectProvider"),
        4
    );
    assert_eq!(
        fx.calls
            .operation(Cloud::Aws, "CreateOpenIDConnectProvider"),
        1
    );
}

#[tokio::test]
async fn a_permanent_denial_surfaces_as_access_denied_without_retries() {
    let fx = fx().await;
    fx.aws.iam_faults().fail_next(5, StatusCode::FORBIDDEN);
    let error = fx
        .provider
        .ensure_oidc_provider(&fx.oidc())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::AccessDenied);
    assert_eq!(error.reason(), Reason::AccessDenied);
    assert_eq!(
        fx.calls.operation(Cloud::Aws, "GetOpenIDConnectProvider"),
        1
    );
}

#[tokio::test]
async fn an_exhausted_retry_budget_surfaces_as_throttled() {
    let fx = fx().await;
    fx.aws
        .iam_faults()
        .fail_next(50, StatusCode::TOO_MANY_REQUESTS);
    let error = fx
        .provider
        .ensure_oidc_provider(&fx.oidc())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(
        fx.calls.operation(Cloud::Aws, "GetOpenIDConnectProvider"),
        u64::from(Backoff::fast().max_attempts)
    );
    fx.aws.iam_faults().clear();
}

#[tokio::test]
async fn a_role_held_by_an_instance_profile_is_reported_not_retried() {
    let fx = fx().await;
    fx.with_provider().await;
    fx.provider
        .ensure_role(&fx.role("payments-api", &["api"]))
        .await
        .unwrap();
    fx.iam
        .create_instance_profile()
        .instance_profile_name("legacy-ec2")
        .send()
        .await
        .unwrap();
    fx.iam
        .add_role_to_instance_profile()
        .instance_profile_name("legacy-ec2")
        .role_name("payments-api")
        .send()
        .await
        .unwrap();
    let error = fx
        .provider
        .delete_role("payments-api", &policy_owner())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(
        error.retry(),
        passport_operator::cloud::RetryClass::UserFixable
    );
    assert!(error.message.contains("legacy-ec2"), "{}", error.message);
}

/// Set in the child process of [`stack_env_is_all_the_aws_provider_needs`].
const CHILD: &str = "PASSPORT_TEST_STACK_ENV_CHILD";

#[derive(clap::Parser)]
struct EnvOnly {
    #[command(flatten)]
    cloud: CloudConfig,
}

/// The contract with the local stack: a process whose environment is only `stack.env` (plus
/// PATH and HOME) builds the AWS provider from the standard chain and manages IAM. The check runs
/// in a child process, since a test cannot safely change its own environment.
#[tokio::test]
async fn stack_env_is_all_the_aws_provider_needs() {
    use clap::Parser as _;
    if std::env::var_os(CHILD).is_some() {
        passport_e2e::tls::install_crypto_provider();
        let config = EnvOnly::parse_from(["passport"]).cloud;
        let provider = AwsProvider::from_env(&config, Calls::default())
            .await
            .unwrap();
        let intent = OidcProviderIntent {
            account_id: aws::ACCOUNT_ID.to_owned(),
            partition: "aws".to_owned(),
            issuer: std::env::var("PASSPORT_STACK_ISSUER").unwrap(),
            audience: AUD.to_owned(),
            owner: trust_owner(),
            tags: BTreeMap::new(),
        };
        let ensured = provider.ensure_oidc_provider(&intent).await.unwrap();
        assert_eq!(ensured.change, Change::Created);
        return;
    }
    let stack = passport_e2e::stack::Stack::start(passport_e2e::stack::StackConfig::default())
        .await
        .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", "aws::stack_env_is_all_the_aws_provider_needs"])
        .env_clear()
        .env(CHILD, "1");
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            child.env(key, value);
        }
    }
    // Exactly what `set -a; . stack.env; set +a` exports.
    let env_file = std::fs::read_to_string(stack.dir().join("stack.env")).unwrap();
    for line in env_file.lines() {
        let (key, value) = line.split_once('=').unwrap();
        child.env(key, value);
    }
    let output = tokio::task::spawn_blocking(move || child.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
