//! Test fixtures: builders for AccessPolicies, FederatedTrusts and Bindings
//! (`AccessPolicy::test("api").for_sa("api").aws_role("x")`), and the fixture loader.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use passport_crds::access_policy::{
    AccessConditions, AwsAccess, AzureAccess, Enforcement, GcpAccess, ImageConditions, OidcAccess,
    Schedule, TimeWindow, Weekday,
};
use passport_crds::{AccessPolicy, FederatedTrust};
use passport_webhook::{Bindings, Config, PolicyBinding};

pub const NS: &str = "payments";

/// Builder methods on AccessPolicy.
pub trait PolicyFixture: Sized {
    fn test(name: &str) -> Self;
    fn for_sa(self, sa: &str) -> Self;
    fn trust(self, trust: &str) -> Self;
    fn aws_role(self, role_name: &str) -> Self;
    fn aws_generated(self) -> Self;
    fn aws_arn(self, arn: &str) -> Self;
    fn region(self, region: &str) -> Self;
    fn gcp_sa(self, email: &str) -> Self;
    fn gcp_direct(self) -> Self;
    fn azure(self, identity: &str, client_id: Option<&str>) -> Self;
    fn oidc(self, audience: &str) -> Self;
    fn expiration(self, seconds: i64) -> Self;
    fn images(self, prefixes: &[&str], require_digest: bool) -> Self;
    fn pod_selector(self, selector: LabelSelector) -> Self;
    fn schedule(self, tz: &str, windows: &[(&[Weekday], &str, &str)]) -> Self;
    fn reject(self) -> Self;
}

impl PolicyFixture for AccessPolicy {
    fn test(name: &str) -> Self {
        let mut policy: AccessPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "passport.dev/v1alpha1",
            "kind": "AccessPolicy",
            "metadata": { "name": name, "namespace": NS },
            "spec": { "trustRef": { "name": "aws-prod" }, "serviceAccounts": [] },
        }))
        .unwrap();
        policy.spec.token.expiration_seconds = 3600;
        policy
    }
    fn for_sa(mut self, sa: &str) -> Self {
        self.spec.service_accounts.push(sa.to_owned());
        self
    }
    fn trust(mut self, trust: &str) -> Self {
        self.spec.trust_ref.name = trust.to_owned();
        self
    }
    fn aws_role(mut self, role_name: &str) -> Self {
        self = self.aws_generated();
        if let Some(aws) = self.spec.aws.as_mut() {
            aws.role_name = Some(role_name.to_owned());
        }
        self
    }
    fn aws_generated(mut self) -> Self {
        self.spec.aws = Some(serde_json::from_value(serde_json::json!({})).unwrap());
        self.trust("aws-prod")
    }
    fn aws_arn(mut self, arn: &str) -> Self {
        let mut aws: AwsAccess = serde_json::from_value(serde_json::json!({})).unwrap();
        aws.role_arn = Some(arn.to_owned());
        self.spec.aws = Some(aws);
        self.trust("aws-prod")
    }
    fn region(mut self, region: &str) -> Self {
        if let Some(aws) = self.spec.aws.as_mut() {
            aws.region = Some(region.to_owned());
        }
        self
    }
    fn gcp_sa(mut self, email: &str) -> Self {
        self.spec.gcp = Some(GcpAccess {
            service_account: Some(email.to_owned()),
            direct: None,
        });
        self.trust("gcp-prod")
    }
    fn gcp_direct(mut self) -> Self {
        self.spec.gcp = Some(GcpAccess {
            service_account: None,
            direct: Some(true),
        });
        self.trust("gcp-prod")
    }
    fn azure(mut self, identity: &str, client_id: Option<&str>) -> Self {
        self.spec.azure = Some(AzureAccess {
            identity: identity.to_owned(),
            client_id: client_id.map(str::to_owned),
        });
        self.trust("azure-prod")
    }
    fn oidc(mut self, audience: &str) -> Self {
        self.spec.oidc = Some(OidcAccess {
            audience: audience.to_owned(),
        });
        self.trust("vault")
    }
    fn expiration(mut self, seconds: i64) -> Self {
        self.spec.token.expiration_seconds = seconds;
        self
    }
    fn images(mut self, prefixes: &[&str], require_digest: bool) -> Self {
        self.conditions().images = Some(ImageConditions {
            allowed_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            require_digest,
        });
        self
    }
    fn pod_selector(mut self, selector: LabelSelector) -> Self {
        self.conditions().pod_selector = Some(selector);
        self
    }
    fn schedule(mut self, tz: &str, windows: &[(&[Weekday], &str, &str)]) -> Self {
        self.conditions().schedule = Some(Schedule {
            time_zone: tz.to_owned(),
            windows: windows
                .iter()
                .map(|(days, start, end)| TimeWindow {
                    days: days.to_vec(),
                    start: (*start).to_owned(),
                    end: (*end).to_owned(),
                })
                .collect(),
        });
        self
    }
    fn reject(mut self) -> Self {
        self.spec.enforcement = Enforcement::Reject;
        self
    }
}

trait Conditions {
    fn conditions(&mut self) -> &mut AccessConditions;
}

impl Conditions for AccessPolicy {
    fn conditions(&mut self) -> &mut AccessConditions {
        self.spec
            .conditions
            .get_or_insert_with(AccessConditions::default)
    }
}

fn trust(name: &str, spec: serde_json::Value) -> FederatedTrust {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "passport.dev/v1alpha1",
        "kind": "FederatedTrust",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

/// The trust a policy names, by the names the builders use.
pub fn trust_for(policy: &AccessPolicy) -> FederatedTrust {
    match policy.spec.trust_ref.name.as_str() {
        "gcp-prod" => trust(
            "gcp-prod",
            serde_json::json!({ "gcp": {
            "projectId": "my-project", "projectNumber": "123456789012",
            "poolId": "prod-pool", "providerId": "prod-cluster",
            "allowedServiceAccounts": ["*@my-project.iam.gserviceaccount.com"] },
            "namespaceSelector": {} }),
        ),
        "azure-prod" => trust(
            "azure-prod",
            serde_json::json!({ "azure": {
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "allowedIdentities": ["/subscriptions/s/*"] }, "namespaceSelector": {} }),
        ),
        "vault" => trust(
            "vault",
            serde_json::json!({ "oidc": { "allowedAudiences": ["*"] },
            "namespaceSelector": {} }),
        ),
        name => trust(
            name,
            serde_json::json!({ "aws": { "accountId": "111122223333",
            "allowedRoleArns": ["arn:aws:iam::111122223333:role/*"] },
            "namespaceSelector": {} }),
        ),
    }
}

/// Builds Bindings for the namespace `NS`.
pub struct World {
    bindings: Bindings,
}

impl World {
    pub fn new() -> Self {
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        Self {
            bindings: Bindings::new(NS, now, Arc::new(Config::new("prod"))),
        }
    }
    /// A policy with its trust, which admits the namespace.
    pub fn policy(mut self, policy: AccessPolicy) -> Self {
        let trust = trust_for(&policy);
        self.bindings.policies.push(PolicyBinding {
            policy: Arc::new(policy),
            trust: Some(Arc::new(trust)),
            trust_admits_namespace: true,
        });
        self
    }
    /// A policy whose trust's namespaceSelector leaves the namespace out.
    pub fn policy_not_admitted(mut self, policy: AccessPolicy) -> Self {
        let trust = trust_for(&policy);
        self.bindings.policies.push(PolicyBinding {
            policy: Arc::new(policy),
            trust: Some(Arc::new(trust)),
            trust_admits_namespace: false,
        });
        self
    }
    pub fn policy_without_trust(mut self, policy: AccessPolicy) -> Self {
        self.bindings.policies.push(PolicyBinding {
            policy: Arc::new(policy),
            trust: None,
            trust_admits_namespace: false,
        });
        self
    }
    pub fn sa_annotation(mut self, key: &str, value: &str) -> Self {
        self.bindings
            .service_account_annotations
            .insert(key.to_owned(), value.to_owned());
        self
    }
    pub fn config_map_keys(mut self, name: &str, keys: &[&str]) -> Self {
        self.bindings.env_sources.config_maps.insert(
            name.to_owned(),
            keys.iter().map(|k| (*k).to_owned()).collect(),
        );
        self
    }
    pub fn at(mut self, rfc3339: &str) -> Self {
        self.bindings.now = rfc3339.parse().unwrap();
        self
    }
    pub fn config(mut self, edit: impl FnOnce(&mut Config)) -> Self {
        edit(Arc::make_mut(&mut self.bindings.config));
        self
    }
    pub fn bindings(self) -> Bindings {
        self.bindings
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        match_expressions: None,
    }
}

/// The bytes of `tests/fixtures/<name>.json`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}
