//! The cloud side of AccessPolicy reconciles, over `FakeCloud`: what is written, what an edit
//! removes, what the cleanup removes, and that a steady state writes nothing.

use std::{collections::BTreeMap, sync::Arc};

use passport_crds::{AccessPolicy, FederatedTrust};

use super::*;
use crate::{
    cloud::{ErrorKind, fake::FakeCloud},
    controllers::access_policy::{
        desired::{self, Inputs},
        status::{self, Observed, Sync},
    },
};

const GCP_TRUST: &str = "metadata: {name: gcp}
spec:
  issuer: {url: 'https://issuer.example.com'}
  gcp: {projectId: p, projectNumber: '42', poolId: pool, providerId: prov, allowedServiceAccounts: ['*@p.iam.gserviceaccount.com']}
  namespaceSelector: {}
";

const AZURE_TRUST: &str = "metadata: {name: azure}
spec:
  issuer: {url: 'https://issuer.example.com'}
  azure: {tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, allowedIdentities: ['/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/*']}
  namespaceSelector: {}
";

const AWS_TRUST: &str = "metadata: {name: aws}
spec:
  issuer: {url: 'https://issuer.example.com'}
  aws: {accountId: '123456789012'}
  namespaceSelector: {}
";

const IDENTITY: &str = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi";

fn policy(trust: &str, sas: &[&str], cloud: &str) -> AccessPolicy {
    serde_yaml::from_str(&format!(
        "metadata: {{name: api, namespace: shop, generation: 1}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: {sas:?}\n  {cloud}\n"
    ))
    .unwrap()
}

fn plan_of(policy: &AccessPolicy, trust: &str) -> desired::PolicyPlan {
    let trust: FederatedTrust = serde_yaml::from_str(trust).unwrap();
    desired::build(
        policy,
        &Inputs {
            cluster: "prod",
            trust: Some(&trust),
            namespace_labels: &BTreeMap::new(),
            discovered_issuer: None,
            trust_policy_quota: 2048,
        },
    )
    .unwrap()
}

/// Applies the policy and records the status the reconciler would write.
async fn reconcile(policy: &mut AccessPolicy, trust: &str, clouds: &Clouds) -> Report {
    let plan = plan_of(policy, trust);
    let report = apply(&plan, policy, clouds).await.unwrap();
    let next = status::compute(
        policy,
        &Observed {
            sync: Sync::Synced(&plan),
            verification: None,
            azure_client_id: report.azure_client_id.clone(),
        },
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
    );
    policy.status = Some(next);
    report
}

#[tokio::test]
async fn a_gcp_edit_revokes_only_the_removed_service_account() {
    let fake = Arc::new(FakeCloud::default());
    let clouds = Clouds::fake(fake.clone());
    let email = "app@p.iam.gserviceaccount.com";
    let gcp = format!("gcp: {{serviceAccount: {email}}}");
    let mut p = policy("gcp", &["api", "worker"], &gcp);
    let first = reconcile(&mut p, GCP_TRUST, &clouds).await;
    assert_eq!(first.records.len(), 1);
    assert_eq!(fake.members(email).len(), 2);

    let writes = fake.calls.writes(Cloud::Gcp);
    let steady = reconcile(&mut p, GCP_TRUST, &clouds).await;
    assert!(steady.records.is_empty());
    assert_eq!(
        fake.calls.writes(Cloud::Gcp),
        writes,
        "a steady state writes nothing"
    );

    let status = p.status.take();
    p = policy("gcp", &["api"], &gcp);
    p.status = status;
    reconcile(&mut p, GCP_TRUST, &clouds).await;
    let members = fake.members(email);
    assert_eq!(members.len(), 1);
    assert!(
        members
            .iter()
            .all(|m| m.ends_with("system:serviceaccount:shop:api")),
        "{members:?}"
    );

    let report = cleanup(
        &p,
        &Owner::policy("prod", "shop", "api"),
        &clouds,
        "Passport",
    )
    .await
    .unwrap();
    assert_eq!(report.records.len(), 1);
    assert!(fake.members(email).is_empty());
}

#[tokio::test]
async fn azure_credentials_follow_the_list_and_the_client_id_is_looked_up() {
    let fake = Arc::new(FakeCloud::default());
    fake.identity(IDENTITY, "6c2a5d7e-1f3b-4a8c-9d0e-2b4f6a8c0e1d");
    let clouds = Clouds::fake(fake.clone());
    let azure = format!("azure: {{identity: '{IDENTITY}'}}");
    let mut p = policy("azure", &["api", "worker"], &azure);
    let report = reconcile(&mut p, AZURE_TRUST, &clouds).await;
    assert_eq!(report.records.len(), 2);
    assert_eq!(
        report.azure_client_id.as_deref(),
        Some("6c2a5d7e-1f3b-4a8c-9d0e-2b4f6a8c0e1d")
    );
    assert_eq!(fake.credentials(IDENTITY).len(), 2);

    let status = p.status.take();
    p = policy("azure", &["worker"], &azure);
    p.status = status;
    let report = reconcile(&mut p, AZURE_TRUST, &clouds).await;
    assert_eq!(report.records.len(), 1, "{report:?}");
    assert_eq!(report.records[0].operation, "delete");
    let left = fake.credentials(IDENTITY);
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("worker"), "{left:?}");

    cleanup(
        &p,
        &Owner::policy("prod", "shop", "api"),
        &clouds,
        "Passport",
    )
    .await
    .unwrap();
    assert!(fake.credentials(IDENTITY).is_empty());
}

#[tokio::test]
async fn a_role_owned_by_another_policy_is_refused_and_left_alone() {
    let fake = Arc::new(FakeCloud::default());
    let other = Owner::policy("prod", "billing", "api");
    fake.foreign_role("shared", other.clone());
    let clouds = Clouds::fake(fake.clone());
    let p = policy("aws", &["api"], "aws: {roleName: shared}");
    let plan = plan_of(&p, AWS_TRUST);
    let failed = apply(&plan, &p, &clouds).await.unwrap_err();
    assert_eq!(
        failed.error.reason(),
        passport_crds::conditions::Reason::NotOwned
    );
    assert!(failed.records.is_empty());
    assert_eq!(fake.role("shared").map(|r| r.owner), Some(other));

    // Deleting the refused policy does not delete the other policy's role either.
    let mut deleting = p.clone();
    deleting.status = Some(passport_crds::AccessPolicyStatus {
        aws: Some(passport_crds::access_policy::AwsAccessStatus {
            role_arn: Some("arn:aws:iam::123456789012:role/passport/shared".to_owned()),
        }),
        ..Default::default()
    });
    let report = cleanup(
        &deleting,
        &Owner::policy("prod", "shop", "api"),
        &clouds,
        "Passport",
    )
    .await
    .unwrap();
    assert!(
        report.records.iter().all(|r| r.operation == "keep"),
        "{report:?}"
    );
    assert!(fake.role("shared").is_some());
}

#[tokio::test]
async fn a_failed_write_is_reported_with_what_changed_before_it() {
    let fake = Arc::new(FakeCloud::default());
    fake.identity(IDENTITY, "6c2a5d7e-1f3b-4a8c-9d0e-2b4f6a8c0e1d");
    // The second credential's write fails.
    let clouds = Clouds::fake(fake.clone());
    let azure = format!("azure: {{identity: '{IDENTITY}'}}");
    let p = policy("azure", &["api", "worker"], &azure);
    let plan = plan_of(&p, AZURE_TRUST);
    fake.fail_next("identity_client_id", 1, ErrorKind::Throttled);
    let failed = apply(&plan, &p, &clouds).await.unwrap_err();
    assert_eq!(
        failed.records.len(),
        2,
        "both credentials were written first"
    );
    assert_eq!(failed.error.kind, ErrorKind::Throttled);
}

#[test]
fn role_names_come_from_the_last_path_segment() {
    assert_eq!(role_name("arn:aws:iam::1:role/passport/api"), Some("api"));
    assert_eq!(role_name("arn:aws:iam::1:role/api"), Some("api"));
    assert_eq!(role_name("arn:aws:iam::1:user/api"), None);
}
