//! `passport plan`: offline, with no cluster and no cloud, what the controllers would create for
//! a set of manifests (the exact trust policy, pool and provider, credential bodies) and every
//! refusal they would report. It runs the controllers' own `desired` code, so a GitOps
//! pull-request preview says what the operator will do.

use std::{collections::BTreeMap, fmt::Write as _};

use passport_crds::conditions::Reason;
use serde::Serialize;

pub use crate::manifests::Manifests;

use crate::controllers::{
    Refusal,
    access_policy::desired::{self as policy_desired, PolicyObject, PolicyPlan},
    federated_trust::desired::{self as trust_desired, TrustObject, TrustPlan},
};

use crate::manifests::METADATA_NAME;

/// What `plan` reads.
#[derive(Clone, Debug)]
pub struct Options {
    pub cluster: String,
    /// The issuer for trusts without `spec.issuer` (a real reconcile reads it from the API server).
    pub issuer: Option<String>,
    pub trust_policy_quota: usize,
}

/// One resource's outcome.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry<T> {
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Things worth knowing that do not stop the plan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub trusts: Vec<Entry<TrustPlan>>,
    pub policies: Vec<Entry<PolicyPlan>>,
}

impl Plan {
    pub fn refusals(&self) -> usize {
        self.trusts.iter().filter(|e| e.refused.is_some()).count()
            + self.policies.iter().filter(|e| e.refused.is_some()).count()
    }
}

fn split<T>(result: Result<T, Refusal>) -> (Option<T>, Option<Refusal>) {
    match result {
        Ok(plan) => (Some(plan), None),
        Err(refusal) => (None, Some(refusal)),
    }
}

/// Runs the controllers' `desired` over the manifests.
pub fn build(manifests: &Manifests, options: &Options) -> Plan {
    // What the operator would upload for `jwks: FromCluster`; offline there is no cluster.
    const CLUSTER_JWKS: &str = "<the cluster's /openid/v1/jwks>";
    let trust_inputs = trust_desired::Inputs {
        cluster: &options.cluster,
        discovered_issuer: options.issuer.as_deref(),
        cluster_jwks: Some(CLUSTER_JWKS),
    };
    let trusts = manifests
        .trusts
        .iter()
        .map(|trust| {
            let (plan, refused) = split(trust_desired::build(trust, &trust_inputs));
            let mut notes = Vec::new();
            if refused
                .as_ref()
                .is_some_and(|r| r.reason == Reason::IssuerUnreachable)
            {
                notes.push("offline, pass the cluster's issuer with --issuer".to_owned());
            }
            Entry {
                kind: "FederatedTrust",
                name: trust.metadata.name.clone().unwrap_or_default(),
                namespace: None,
                plan,
                refused,
                notes,
            }
        })
        .collect();
    let policies = manifests
        .policies
        .iter()
        .map(|policy| {
            let namespace = policy.metadata.namespace.clone().unwrap_or_default();
            let mut notes = Vec::new();
            let (labels, found) = manifests.namespace_labels(&namespace);
            if !found {
                notes.push(format!(
                    "namespace {namespace} is not among the manifests: it is taken to have no \
                     labels but {METADATA_NAME}"
                ));
            }
            if !manifests.service_accounts.is_empty() {
                for sa in &policy.spec.service_accounts {
                    let known = manifests.service_accounts.iter().any(|s| {
                        s.metadata.name.as_deref() == Some(sa.as_str())
                            && s.metadata.namespace.as_deref() == Some(namespace.as_str())
                    });
                    if !known {
                        notes.push(format!(
                            "service account {namespace}/{sa} is not among the manifests"
                        ));
                    }
                }
            }
            let trust = manifests.trust(&policy.spec.trust_ref.name);
            let (plan, refused) = split(policy_desired::build(
                policy,
                &policy_desired::Inputs {
                    cluster: &options.cluster,
                    trust,
                    namespace_labels: &labels,
                    discovered_issuer: options.issuer.as_deref(),
                    trust_policy_quota: options.trust_policy_quota,
                },
            ));
            if refused
                .as_ref()
                .is_some_and(|r| r.reason == Reason::IssuerUnreachable)
            {
                notes.push("offline, pass the cluster's issuer with --issuer".to_owned());
            }
            Entry {
                kind: "AccessPolicy",
                name: policy.metadata.name.clone().unwrap_or_default(),
                namespace: Some(namespace),
                plan,
                refused,
                notes,
            }
        })
        .collect();
    Plan { trusts, policies }
}

/// The plan in words, for people.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for entry in &plan.trusts {
        header(&mut out, entry);
        if let Some(p) = &entry.plan {
            let _ = writeln!(out, "  cloud: {}  issuer: {}", p.cloud.as_str(), p.issuer);
            match &p.object {
                TrustObject::AwsOidcProvider(intent) => {
                    let arn = crate::cloud::aws::oidc_provider_arn(
                        &intent.partition,
                        &intent.account_id,
                        &intent.issuer,
                    );
                    let _ = writeln!(out, "  IAM OIDC provider {arn}");
                    let _ = writeln!(out, "    client ID: {}", intent.audience);
                    tags(&mut out, &intent.owner.tags(), &intent.tags);
                }
                TrustObject::GcpWorkloadIdentityProvider(intent) => {
                    let _ = writeln!(
                        out,
                        "  workload identity pool projects/{}/locations/global/workloadIdentityPools/{}",
                        intent.project_number, intent.pool_id
                    );
                    let _ = writeln!(out, "  OIDC provider {}", intent.provider_id);
                    let _ = writeln!(out, "    issuerUri: {}", intent.issuer);
                    for (k, v) in &intent.attribute_mapping {
                        let _ = writeln!(out, "    attributeMapping {k} = {v}");
                    }
                    if let Some(c) = &intent.attribute_condition {
                        let _ = writeln!(out, "    attributeCondition: {c}");
                    }
                    if let Some(jwks) = &intent.jwks_json {
                        let _ = writeln!(out, "    jwksJson: {jwks}");
                    }
                    let _ = writeln!(out, "    description: {}", intent.owner.description());
                }
                TrustObject::None => {
                    let _ = writeln!(
                        out,
                        "  nothing to create: configure the relying party with the issuer"
                    );
                }
            }
        }
        notes(&mut out, entry);
    }
    for entry in &plan.policies {
        header(&mut out, entry);
        if let Some(p) = &entry.plan {
            let _ = writeln!(out, "  cloud: {}  identity: {}", p.cloud, p.identity);
            let _ = writeln!(out, "  token audience: {}", p.audience);
            policy_object(&mut out, p);
        }
        notes(&mut out, entry);
    }
    let _ = writeln!(
        out,
        "{} trusts, {} policies, {} refused",
        plan.trusts.len(),
        plan.policies.len(),
        plan.refusals()
    );
    out
}

fn header<T>(out: &mut String, entry: &Entry<T>) {
    let name = match &entry.namespace {
        Some(ns) => format!("{ns}/{}", entry.name),
        None => entry.name.clone(),
    };
    match &entry.refused {
        Some(r) => {
            let _ = writeln!(
                out,
                "{} {name}: REFUSED ({}): {}",
                entry.kind,
                r.reason.as_str(),
                r.message
            );
        }
        None => {
            let _ = writeln!(out, "{} {name}:", entry.kind);
        }
    }
}

fn notes<T>(out: &mut String, entry: &Entry<T>) {
    for note in &entry.notes {
        let _ = writeln!(out, "  note: {note}");
    }
}

fn tags(out: &mut String, owner: &BTreeMap<String, String>, extra: &BTreeMap<String, String>) {
    let all: Vec<String> = owner
        .iter()
        .chain(extra)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "    tags: {}", all.join(", "));
}

fn policy_object(out: &mut String, plan: &PolicyPlan) {
    match &plan.object {
        PolicyObject::AwsRole(role) => {
            let _ = writeln!(out, "  IAM role {} (path {})", role.name, role.path);
            let trust = crate::cloud::aws::policy::PolicyDocument::trust("Passport", &role.grant);
            let _ = writeln!(out, "    trust policy:");
            indent(
                out,
                &serde_json::to_string_pretty(&trust).unwrap_or_default(),
            );
            for arn in &role.managed_policy_arns {
                let _ = writeln!(out, "    managed policy: {arn}");
            }
            if let Some(inline) = &role.inline_policy {
                let _ = writeln!(out, "    inline policy \"passport\": {}", inline.trim_end());
            }
            if let Some(max) = role.max_session_duration {
                let _ = writeln!(out, "    max session: {max} s");
            }
            if let Some(boundary) = &role.permissions_boundary_arn {
                let _ = writeln!(out, "    permissions boundary: {boundary}");
            }
            tags(out, &role.owner.tags(), &role.tags);
        }
        PolicyObject::AwsTrustStatement(statement) => {
            let _ = writeln!(
                out,
                "  statement {} in the trust policy of {} (other statements kept):",
                statement.sid, statement.role_arn
            );
            let doc =
                crate::cloud::aws::policy::PolicyDocument::trust(&statement.sid, &statement.grant);
            indent(
                out,
                &serde_json::to_string_pretty(&doc.statements).unwrap_or_default(),
            );
        }
        PolicyObject::GcpBinding(binding) => {
            let _ = writeln!(
                out,
                "  roles/iam.workloadIdentityUser on {}:",
                binding.service_account
            );
            for member in &binding.grant {
                let _ = writeln!(out, "    + {member}");
            }
        }
        PolicyObject::GcpDirect => {
            let _ = writeln!(out, "  nothing to write; grant roles to:");
            for principal in &plan.principals {
                let _ = writeln!(out, "    {principal}");
            }
        }
        PolicyObject::AzureCredentials { credentials } => {
            for fic in credentials {
                let _ = writeln!(out, "  federated identity credential {}:", fic.name);
                let _ = writeln!(
                    out,
                    "    issuer: {}  subject: {}  audience: {}",
                    fic.issuer, fic.subject, fic.audience
                );
            }
        }
        PolicyObject::Oidc => {
            let _ = writeln!(out, "  nothing to write: pods get a token for the audience");
        }
    }
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "      {line}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn samples() -> Manifests {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Manifests::read(&[
            root.join("config/samples"),
            root.join("operator/tests/fixtures/plan/namespaces.yaml"),
        ])
        .unwrap()
    }

    fn options(issuer: Option<&str>) -> Options {
        Options {
            cluster: "prod".to_owned(),
            issuer: issuer.map(str::to_owned),
            trust_policy_quota: 2048,
        }
    }

    #[test]
    fn the_samples_plan_to_these_cloud_objects() {
        let plan = build(
            &samples(),
            &options(Some("https://oidc.example.com/clusters/prod")),
        );
        assert_eq!(plan.trusts.len(), 4);
        assert_eq!(plan.policies.len(), 7);
        insta::assert_json_snapshot!("plan_samples", plan);
        insta::assert_snapshot!("plan_samples_text", render(&plan));
    }

    #[test]
    fn without_an_issuer_the_plan_says_how_to_give_one() {
        let plan = build(&samples(), &options(None));
        let gcp = plan.trusts.iter().find(|e| e.name == "gcp-prod").unwrap();
        assert_eq!(
            gcp.refused.as_ref().unwrap().reason,
            Reason::IssuerUnreachable
        );
        assert!(gcp.notes.iter().any(|n| n.contains("--issuer")));
        assert!(plan.refusals() > 0);
    }

    #[test]
    fn a_namespace_missing_from_the_manifests_has_only_its_name_label() {
        let mut manifests = samples();
        manifests.namespaces.clear();
        let plan = build(
            &manifests,
            &options(Some("https://oidc.example.com/clusters/prod")),
        );
        let s3 = plan
            .policies
            .iter()
            .find(|e| e.name == "s3-reader")
            .unwrap();
        assert_eq!(
            s3.refused.as_ref().unwrap().reason,
            Reason::NamespaceNotAllowed
        );
        // The Azure trust selects by kubernetes.io/metadata.name, which every namespace has.
        let azure = plan
            .policies
            .iter()
            .find(|e| e.name == "keyvault-reader")
            .unwrap();
        assert!(azure.refused.is_none(), "{:?}", azure.refused);
    }

    #[test]
    fn unknown_kinds_are_skipped_and_bad_yaml_is_an_error() {
        let mut manifests = Manifests::default();
        manifests
            .add("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n")
            .unwrap();
        assert!(manifests.trusts.is_empty() && manifests.policies.is_empty());
        assert!(
            manifests
                .add("kind: AccessPolicy\nspec: [not, a, map]\n")
                .is_err()
        );
    }
}
