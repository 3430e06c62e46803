//! AWS: a trust and a policy reach Ready and Verified; the role's trust policy is exactly the
//! documented one; editing the service accounts rewrites it; deletion removes the role and the
//! namespace label; guardrails refuse without a single write; foreign roles are never touched.

use aws_sdk_iam::error::ProvideErrorMetadata as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, api::DeleteParams};
use passport_crds::{AccessPolicy, FederatedTrust, keys::NAMESPACE_ENABLED, naming};
use passport_e2e::aws::{self as stack_aws, ACCOUNT_ID};
use passport_operator::cloud::{
    TrustGrant,
    aws::{oidc_provider_arn, policy::PolicyDocument},
};

use crate::harness::{
    self, CLUSTER, apply_policy, apply_trust, eventually, harness, policy_condition, policy_ready,
    trust_condition, wait_policy, wait_trust,
};

pub const TRUST_LABEL: &str = "e2e.passport.dev/trust";

pub fn iam() -> aws_sdk_iam::Client {
    stack_aws::iam_client(
        &harness()
            .stack
            .aws
            .as_ref()
            .expect("AWS in the stack")
            .iam_url(),
    )
}

pub fn trust_yaml(name: &str, extra: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  aws:\n    accountId: '{ACCOUNT_ID}'\n    allowedRoleArns: ['arn:aws:iam::{ACCOUNT_ID}:role/allowed-*']\n  namespaceSelector: {{matchLabels: {{{TRUST_LABEL}: {name}}}}}\n{extra}"
    )
}

/// The trust policy a role must hold for these subjects.
pub fn expected_trust_policy(subjects: &[String]) -> PolicyDocument {
    let issuer = harness().stack.apiserver.issuer_url();
    let issuer = issuer.trim_end_matches('/');
    PolicyDocument::trust(
        "Passport",
        &TrustGrant {
            provider_arn: oidc_provider_arn("aws", ACCOUNT_ID, issuer),
            issuer: issuer.to_owned(),
            audience: "sts.amazonaws.com".to_owned(),
            subjects: subjects.to_vec(),
        },
    )
}

pub async fn role_trust_policy(name: &str) -> Option<PolicyDocument> {
    match iam().get_role().role_name(name).send().await {
        Ok(out) => {
            let encoded = out.role?.assume_role_policy_document?;
            let text = percent_encoding::percent_decode_str(&encoded)
                .decode_utf8()
                .expect("UTF-8")
                .into_owned();
            Some(PolicyDocument::parse(&text).expect("a policy document"))
        }
        Err(error) if error.code() == Some("NoSuchEntity") => None,
        Err(error) => panic!("GetRole {name}: {error:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_gets_its_role_verified_updated_and_deleted() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let trust = format!("aws-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h.namespace(&client, "aws", &[(TRUST_LABEL, &trust)]).await;
    h.service_accounts(&client, &ns, &["api", "worker"]).await;
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    let ready = wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    let status = ready.status.clone().unwrap();
    let issuer = h.stack.apiserver.issuer_url();
    assert_eq!(
        status.issuer.as_deref(),
        Some(issuer.trim_end_matches('/')),
        "discovered from the API server"
    );
    assert_eq!(
        status.aws.unwrap().oidc_provider_arn,
        Some(oidc_provider_arn(
            "aws",
            ACCOUNT_ID,
            issuer.trim_end_matches('/')
        ))
    );
    assert!(status.jwks_uri.is_some());
    assert_eq!(trust_condition(&ready, "IssuerReachable").0, "True");

    let policy = format!(
        "metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api, worker]\n  aws: {{}}\n  verify: true\n"
    );
    apply_policy(&client, &ns, &policy).await;
    let synced = wait_policy(&client, &ns, "api", "Ready and Verified", |p| {
        policy_ready(p) && policy_condition(p, "Verified").0 == "True"
    })
    .await;
    let role = naming::aws_role_name(CLUSTER, &ns, "api");
    let arn = format!("arn:aws:iam::{ACCOUNT_ID}:role/passport/{role}");
    let status = synced.status.unwrap();
    assert_eq!(status.identity.as_deref(), Some(arn.as_str()));
    assert_eq!(status.aws.unwrap().role_arn.as_deref(), Some(arn.as_str()));
    let subject = |sa: &str| naming::service_account_subject(&ns, sa);
    let document = role_trust_policy(&role).await.expect("the role exists");
    assert!(
        document.same_as(&expected_trust_policy(&[subject("api"), subject("worker")])),
        "{}",
        document.to_json()
    );
    let namespaces = Api::<Namespace>::all(client.clone());
    let labels = namespaces.get(&ns).await.unwrap().metadata.labels.unwrap();
    assert_eq!(
        labels.get(NAMESPACE_ENABLED).map(String::as_str),
        Some("true")
    );
    h.audit_when("the role's creation", |audit| {
        audit.iter().any(|line| {
            line["resource"] == format!("{ns}/api")
                && line["operation"] == "create"
                && line["object"] == arn.as_str()
        })
    })
    .await;

    // Removing a service account removes only its grant.
    apply_policy(&client, &ns, &policy.replace("[api, worker]", "[api]")).await;
    wait_policy(
        &client,
        &ns,
        "api",
        "synced with one service account",
        |p| {
            policy_ready(p)
                && p.status
                    .as_ref()
                    .is_some_and(|s| s.bound_service_accounts == ["api"])
        },
    )
    .await;
    let document = role_trust_policy(&role).await.expect("the role exists");
    assert!(
        document.same_as(&expected_trust_policy(&[subject("api")])),
        "{}",
        document.to_json()
    );

    // Deleting the policy (the trust's deletionPolicy is Delete) removes the role and the label.
    Api::<AccessPolicy>::namespaced(client.clone(), &ns)
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the role's deletion", || async {
        role_trust_policy(&role).await.is_none()
    })
    .await;
    eventually("the namespace label's removal", || async {
        let ns = namespaces.get(&ns).await.unwrap();
        !ns.metadata
            .labels
            .unwrap_or_default()
            .contains_key(NAMESPACE_ENABLED)
    })
    .await;
    Api::<FederatedTrust>::all(client.clone())
        .delete(&trust, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the trust's deletion", || async {
        Api::<FederatedTrust>::all(client.clone())
            .get_opt(&trust)
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

/// A policy applied while its trust is still creating its OIDC provider (a trust and its
/// policies in one `kubectl apply`): the policy waits for the trust's cloud side instead of
/// asking IAM for a role that trusts a provider not there yet (IAM refuses it: "Invalid
/// principal in policy"), so it reaches Ready with no failed call, no Warning Event and no
/// error in the audit log. The trust's first IAM call is held for a few seconds, so that the
/// policy's reconcile comes first.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_applied_with_its_trust_waits_for_it_without_a_refused_write() {
    use k8s_openapi::api::events::v1::Event;
    let h = harness();
    // The held call is IAM's next one, whoever makes it: no other test may call meanwhile.
    let _exclusive = h.exclusive().await;
    let client = h.client().await;
    let trust = format!("aws-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h.namespace(&client, "aws", &[(TRUST_LABEL, &trust)]).await;
    h.service_accounts(&client, &ns, &["api"]).await;
    let faults = h.stack.aws.as_ref().expect("AWS in the stack").iam_faults();
    faults.delay_next(1, std::time::Duration::from_secs(3));
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    eventually("the trust's first IAM call", || async {
        faults.pending() == 0
    })
    .await;
    apply_policy(
        &client,
        &ns,
        &format!(
            "metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n"
        ),
    )
    .await;
    let waiting = wait_policy(&client, &ns, "api", "waiting for its trust", |p| {
        policy_condition(p, "CloudSynced").1 == "Progressing"
    })
    .await;
    assert!(
        policy_condition(&waiting, "Ready")
            .2
            .contains(&format!("waiting for FederatedTrust {trust}")),
        "{:?}",
        waiting.status
    );
    wait_policy(&client, &ns, "api", "Ready", policy_ready).await;
    let resource = format!("{ns}/api");
    let errors: Vec<_> = h
        .audit()
        .await
        .into_iter()
        .filter(|line| {
            line["resource"] == resource.as_str()
                && line["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("error"))
        })
        .collect();
    assert!(errors.is_empty(), "failed cloud calls: {errors:?}");
    let warnings: Vec<_> = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| (e.reason, e.note))
        .collect();
    assert!(warnings.is_empty(), "Warning Events: {warnings:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn guardrails_refuse_with_a_clear_condition_and_write_nothing() {
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    let trust = format!("guard-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let admitted = h
        .namespace(&client, "guard", &[(TRUST_LABEL, &trust)])
        .await;
    let outside = h.namespace(&client, "outside", &[]).await;
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    // A role another policy owns, and one nobody in Passport owns.
    let owned = format!("allowed-owned-{admitted}");
    apply_policy(
        &client,
        &admitted,
        &format!("metadata: {{name: owner}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{roleName: {owned}}}\n"),
    )
    .await;
    wait_policy(&client, &admitted, "owner", "Ready", policy_ready).await;
    let foreign = format!("foreign-{admitted}");
    let foreign_policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam()
        .create_role()
        .role_name(&foreign)
        .assume_role_policy_document(foreign_policy)
        .send()
        .await
        .unwrap();
    let owned_before = role_trust_policy(&owned).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let writes = h.calls("aws", "write").await;

    let cases = [
        (
            admitted.as_str(),
            "disallowed",
            format!("aws: {{roleArn: 'arn:aws:iam::{ACCOUNT_ID}:role/not-allowed'}}"),
            "IdentityNotAllowed",
            "allowedRoleArns",
        ),
        (
            outside.as_str(),
            "outside",
            "aws: {}".to_owned(),
            "NamespaceNotAllowed",
            "namespaceSelector",
        ),
        (
            admitted.as_str(),
            "wrong-cloud",
            "gcp: {direct: true}".to_owned(),
            "CloudMismatch",
            "spec.gcp",
        ),
        (
            admitted.as_str(),
            "claims-owned",
            format!("aws: {{roleName: {owned}}}"),
            "NotOwned",
            "belongs to",
        ),
        (
            admitted.as_str(),
            "claims-foreign",
            format!("aws: {{roleName: {foreign}}}"),
            "NotOwned",
            "Passport never modifies",
        ),
    ];
    for (ns, name, cloud, _, _) in &cases {
        apply_policy(
            &client,
            ns,
            &format!("metadata: {{name: {name}}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  {cloud}\n"),
        )
        .await;
    }
    for (ns, name, _, reason, words) in &cases {
        let refused = wait_policy(&client, ns, name, reason, |p| {
            policy_condition(p, "Ready").1 == *reason
        })
        .await;
        let (status, _, message) = policy_condition(&refused, "Ready");
        assert_eq!(status, "False");
        assert!(message.contains(words), "{name}: {message}");
        assert_eq!(policy_condition(&refused, "CloudSynced").1, *reason);
    }
    assert_eq!(
        h.calls("aws", "write").await,
        writes,
        "a guardrail wrote to AWS"
    );
    assert!(
        role_trust_policy(&owned)
            .await
            .unwrap()
            .same_as(&owned_before)
    );
    let untouched = role_trust_policy(&foreign).await.unwrap();
    assert!(untouched.same_as(&PolicyDocument::parse(foreign_policy).unwrap()));
    // The outside namespace never gets the webhook's label.
    let labels = Api::<Namespace>::all(client.clone())
        .get(&outside)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert!(!labels.contains_key(NAMESPACE_ENABLED));

    // Deleting the claimants leaves both roles in place.
    let policies = Api::<AccessPolicy>::namespaced(client.clone(), &admitted);
    for name in ["claims-owned", "claims-foreign"] {
        policies
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("the claimants' deletion", || async {
        policies.get_opt("claims-owned").await.unwrap().is_none()
            && policies.get_opt("claims-foreign").await.unwrap().is_none()
    })
    .await;
    assert!(role_trust_policy(&owned).await.is_some());
    assert!(role_trust_policy(&foreign).await.is_some());
    let _ = harness::CLUSTER;
}
