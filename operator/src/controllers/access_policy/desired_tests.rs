//! Tests of the AccessPolicy's desired state and its guardrails.

use std::collections::BTreeMap;

use super::*;

fn trust(yaml: &str) -> FederatedTrust {
    serde_yaml::from_str(yaml).unwrap()
}

fn policy(yaml: &str) -> AccessPolicy {
    serde_yaml::from_str(yaml).unwrap()
}

const AWS_TRUST: &str = "metadata: {name: aws-prod}
spec:
  issuer: {url: https://oidc.example.com/c1}
  aws:
    accountId: '123456789012'
    allowedRoleArns: ['arn:aws:iam::123456789012:role/apps/*']
    permissionsBoundaryArn: arn:aws:iam::123456789012:policy/boundary
  namespaceSelector: {matchLabels: {passport.dev/cloud-access: aws}}
";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plan(
    policy_yaml: &str,
    trust_yaml: Option<&str>,
    ns: &[(&str, &str)],
) -> Result<PolicyPlan, Refusal> {
    let trust = trust_yaml.map(trust);
    let labels = labels(ns);
    build(
        &policy(policy_yaml),
        &Inputs {
            cluster: "prod",
            trust: trust.as_ref(),
            namespace_labels: &labels,
            discovered_issuer: None,
            trust_policy_quota: 2048,
        },
    )
}

const AWS_NS: &[(&str, &str)] = &[("passport.dev/cloud-access", "aws")];

#[test]
fn an_owned_role_gets_one_statement_for_every_service_account_and_the_boundary() {
    let p = plan(
        "metadata: {name: api, namespace: payments}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api, worker]\n  aws: {roleName: payments-api}\n",
        Some(AWS_TRUST),
        AWS_NS,
    )
    .unwrap();
    assert_eq!(
        p.identity,
        "arn:aws:iam::123456789012:role/passport/payments-api"
    );
    let PolicyObject::AwsRole(role) = p.object else {
        panic!()
    };
    assert_eq!(
        role.grant.subjects,
        [
            "system:serviceaccount:payments:api",
            "system:serviceaccount:payments:worker"
        ]
    );
    assert_eq!(
        role.grant.provider_arn,
        "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/c1"
    );
    assert_eq!(
        role.permissions_boundary_arn.as_deref(),
        Some("arn:aws:iam::123456789012:policy/boundary")
    );
    assert_eq!(role.owner, Owner::policy("prod", "payments", "api"));
}

#[test]
fn a_role_without_a_name_is_named_after_cluster_namespace_and_policy() {
    let p = plan(
        "metadata: {name: api, namespace: payments}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api]\n  aws: {}\n",
        Some(AWS_TRUST),
        AWS_NS,
    )
    .unwrap();
    assert_eq!(
        p.identity,
        "arn:aws:iam::123456789012:role/passport/prod-payments-api"
    );
}

#[test]
fn an_adopted_role_must_be_allowed_by_the_trust() {
    let allowed = plan(
        "metadata: {name: api, namespace: payments}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api]\n  aws: {roleArn: 'arn:aws:iam::123456789012:role/apps/shared'}\n",
        Some(AWS_TRUST),
        AWS_NS,
    )
    .unwrap();
    let PolicyObject::AwsTrustStatement(statement) = allowed.object else {
        panic!()
    };
    assert!(statement.sid.starts_with("Passport"));
    let refused = plan(
        "metadata: {name: api, namespace: payments}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api]\n  aws: {roleArn: 'arn:aws:iam::123456789012:role/admin'}\n",
        Some(AWS_TRUST),
        AWS_NS,
    )
    .unwrap_err();
    assert_eq!(refused.reason, Reason::IdentityNotAllowed);
    assert!(
        refused.message.contains("allowedRoleArns"),
        "{}",
        refused.message
    );
}

#[test]
fn a_namespace_outside_the_trust_is_refused() {
    let refused = plan(
        "metadata: {name: api, namespace: intruder}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api]\n  aws: {roleName: x}\n",
        Some(AWS_TRUST),
        &[],
    )
    .unwrap_err();
    assert_eq!(refused.reason, Reason::NamespaceNotAllowed);
    assert!(
        refused.message.contains("namespace intruder"),
        "{}",
        refused.message
    );
}

#[test]
fn a_missing_trust_and_the_wrong_cloud_are_refused() {
    let aws_policy = "metadata: {name: api, namespace: payments}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api]\n  aws: {roleName: x}\n";
    assert_eq!(
        plan(aws_policy, None, AWS_NS).unwrap_err().reason,
        Reason::TrustNotFound
    );
    let gcp_trust = "metadata: {name: aws-prod}\nspec:\n  gcp: {projectId: my-project, projectNumber: '1', poolId: pool-1, providerId: prov-1}\n  namespaceSelector: {}\n";
    let refused = plan(aws_policy, Some(gcp_trust), &[]).unwrap_err();
    assert_eq!(refused.reason, Reason::CloudMismatch);
    assert!(
        refused.message.contains("trusts gcp"),
        "{}",
        refused.message
    );
}

#[test]
fn too_many_service_accounts_for_the_trust_policy_quota_are_refused() {
    let sas: Vec<String> = (0..60).map(|i| format!("service-account-{i}")).collect();
    let yaml = format!(
        "metadata: {{name: api, namespace: payments}}\nspec:\n  trustRef: {{name: aws-prod}}\n  serviceAccounts: [{}]\n  aws: {{roleName: x}}\n",
        sas.join(", ")
    );
    assert_eq!(
        plan(&yaml, Some(AWS_TRUST), AWS_NS).unwrap_err().reason,
        Reason::TrustPolicyTooLarge
    );
}

const GCP_TRUST: &str = "metadata: {name: gcp-prod}
spec:
  issuer: {url: https://oidc.example.com/c1}
  gcp:
    projectId: my-project
    projectNumber: '123456789012'
    poolId: prod-cluster
    providerId: kubernetes
    allowedServiceAccounts: ['*@my-project.iam.gserviceaccount.com']
  namespaceSelector: {}
";

#[test]
fn a_gcp_policy_binds_each_service_accounts_principal() {
    let p = plan(
        "metadata: {name: bq, namespace: payments}\nspec:\n  trustRef: {name: gcp-prod}\n  serviceAccounts: [api]\n  gcp: {serviceAccount: payments-api@my-project.iam.gserviceaccount.com}\n",
        Some(GCP_TRUST),
        &[],
    )
    .unwrap();
    let principal = "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/prod-cluster/subject/system:serviceaccount:payments:api";
    assert_eq!(p.principals, [principal]);
    assert_eq!(
        p.audience,
        "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/prod-cluster/providers/kubernetes"
    );
    let PolicyObject::GcpBinding(binding) = p.object else {
        panic!()
    };
    assert_eq!(binding.grant, [principal]);

    let refused = plan(
        "metadata: {name: bq, namespace: payments}\nspec:\n  trustRef: {name: gcp-prod}\n  serviceAccounts: [api]\n  gcp: {serviceAccount: admin@other.iam.gserviceaccount.com}\n",
        Some(GCP_TRUST),
        &[],
    )
    .unwrap_err();
    assert_eq!(refused.reason, Reason::IdentityNotAllowed);
}

#[test]
fn a_subject_over_gcps_limit_is_refused() {
    let long = "a".repeat(100);
    let yaml = format!(
        "metadata: {{name: bq, namespace: payments}}\nspec:\n  trustRef: {{name: gcp-prod}}\n  serviceAccounts: [{long}]\n  gcp: {{direct: true}}\n"
    );
    assert_eq!(
        plan(&yaml, Some(GCP_TRUST), &[]).unwrap_err().reason,
        Reason::SubjectTooLong
    );
}

const AZURE_TRUST: &str = "metadata: {name: azure-prod}
spec:
  issuer: {url: https://oidc.example.com/c1}
  azure:
    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
    allowedIdentities: ['/subscriptions/s/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/*']
  namespaceSelector: {}
";

#[test]
fn an_azure_policy_gets_one_credential_per_service_account() {
    let p = plan(
        "metadata: {name: co, namespace: shop}\nspec:\n  trustRef: {name: azure-prod}\n  serviceAccounts: [api, worker]\n  azure: {identity: /subscriptions/s/resourcegroups/APPS/providers/Microsoft.ManagedIdentity/userAssignedIdentities/checkout}\n",
        Some(AZURE_TRUST),
        &[],
    )
    .unwrap();
    let PolicyObject::AzureCredentials { credentials } = p.object else {
        panic!()
    };
    assert_eq!(credentials.len(), 2);
    assert_eq!(credentials[0].name, "prod-shop-api");
    assert_eq!(credentials[1].subject, "system:serviceaccount:shop:worker");
    assert_eq!(credentials[0].audience, "api://AzureADTokenExchange");
    assert_eq!(credentials[0].issuer, "https://oidc.example.com/c1");
}

#[test]
fn an_oidc_audience_must_be_allowed() {
    let trust = "metadata: {name: vault}\nspec:\n  issuer: {url: https://oidc.example.com/c1}\n  oidc: {allowedAudiences: [vault]}\n  namespaceSelector: {}\n";
    let ok = plan(
        "metadata: {name: v, namespace: ns}\nspec:\n  trustRef: {name: vault}\n  serviceAccounts: [api]\n  oidc: {audience: vault}\n",
        Some(trust),
        &[],
    )
    .unwrap();
    assert_eq!(ok.object, PolicyObject::Oidc);
    let refused = plan(
        "metadata: {name: v, namespace: ns}\nspec:\n  trustRef: {name: vault}\n  serviceAccounts: [api]\n  oidc: {audience: other}\n",
        Some(trust),
        &[],
    )
    .unwrap_err();
    assert_eq!(refused.reason, Reason::IdentityNotAllowed);
}
