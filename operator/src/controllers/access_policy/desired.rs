//! What an AccessPolicy asks of its cloud, and every refusal the controller reports instead of
//! writing: a missing trust, a namespace the trust does not admit, the wrong cloud, an identity
//! outside the trust's allowlist, limits the cloud would hit. This is Passport's guard against
//! one namespace taking over another's cloud identity. Pure.

use std::collections::BTreeMap;

use passport_crds::{AccessPolicy, Cloud, FederatedTrust, conditions::Reason, matching, naming};

use super::super::{Refusal, federated_trust::desired as trust_desired};
use crate::cloud::{
    BindingIntent, FederatedCredentialIntent, Owner, RoleIntent, TrustGrant, TrustStatementIntent,
    aws,
};

/// An Azure identity holds at most this many federated credentials.
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;

/// What the policy's reconcile needs besides the object.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// `--cluster-name`.
    pub cluster: &'a str,
    /// The FederatedTrust named by `spec.trustRef`, if it exists.
    pub trust: Option<&'a FederatedTrust>,
    /// The labels of the policy's namespace.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The issuer discovered from the API server (for trusts without `spec.issuer`).
    pub discovered_issuer: Option<&'a str>,
    /// The AWS account's trust-policy quota.
    pub trust_policy_quota: usize,
}

/// The cloud objects a policy needs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PolicyObject {
    /// A role Passport creates and owns.
    AwsRole(RoleIntent),
    /// Passport's statement in an adopted role.
    AwsTrustStatement(TrustStatementIntent),
    /// `roles/iam.workloadIdentityUser` members on a Google service account.
    GcpBinding(BindingIntent),
    /// Direct access: nothing to write; grant roles to the principals.
    GcpDirect,
    /// One federated credential per service account.
    AzureCredentials {
        credentials: Vec<FederatedCredentialIntent>,
    },
    /// A token for another relying party: nothing to write.
    Oidc,
}

/// A policy's desired state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPlan {
    pub cloud: &'static str,
    /// The cloud identity, for `status.identity` and the printer column: a role ARN, a Google
    /// service account, a principal, a managed identity, an audience.
    pub identity: String,
    /// The audience pods' tokens carry.
    pub audience: String,
    /// The `principal://` of each service account (GCP).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    pub object: PolicyObject,
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal::new(reason, message)
}

/// The policy's desired cloud objects, or why Passport will not create them.
pub fn build(policy: &AccessPolicy, inputs: &Inputs<'_>) -> Result<PolicyPlan, Refusal> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let name = policy.metadata.name.clone().unwrap_or_default();
    let trust_name = &policy.spec.trust_ref.name;
    let trust = inputs.trust.ok_or_else(|| {
        refuse(
            Reason::TrustNotFound,
            format!(
                "FederatedTrust {trust_name} does not exist: create it, or fix spec.trustRef.name"
            ),
        )
    })?;
    if !matching::optional_selector_matches(
        trust.spec.namespace_selector.as_ref(),
        inputs.namespace_labels,
    ) {
        return Err(refuse(
            Reason::NamespaceNotAllowed,
            format!(
                "FederatedTrust {trust_name} does not admit namespace {namespace}: its \
                 namespaceSelector does not match the namespace's labels; ask the cluster admin \
                 to label the namespace or widen the trust's namespaceSelector"
            ),
        ));
    }
    let trust_cloud = trust.spec.cloud();
    let policy_cloud = Cloud::only_one(
        policy.spec.aws.is_some(),
        policy.spec.gcp.is_some(),
        policy.spec.azure.is_some(),
        policy.spec.oidc.is_some(),
    );
    if trust_cloud != policy_cloud || trust_cloud.is_none() {
        return Err(refuse(
            Reason::CloudMismatch,
            format!(
                "the policy sets spec.{} but FederatedTrust {trust_name} trusts {}: use a trust of \
                 the same cloud",
                policy_cloud.map_or("<none>", Cloud::as_str),
                trust_cloud.map_or("<none>", Cloud::as_str)
            ),
        ));
    }
    let issuer = trust_desired::issuer(trust, inputs.discovered_issuer)?;
    let subjects: Vec<String> = policy
        .spec
        .service_accounts
        .iter()
        .map(|sa| naming::service_account_subject(&namespace, sa))
        .collect();
    let owner = Owner::policy(inputs.cluster, &namespace, &name);
    let ctx = Ctx {
        policy,
        trust,
        trust_name,
        namespace: &namespace,
        name: &name,
        issuer: &issuer,
        subjects,
        owner,
        inputs,
    };
    match (
        &trust.spec.aws,
        &trust.spec.gcp,
        &trust.spec.azure,
        &trust.spec.oidc,
    ) {
        (Some(_), ..) => ctx.aws(),
        (_, Some(_), ..) => ctx.gcp(),
        (_, _, Some(_), _) => ctx.azure(),
        _ => ctx.oidc(),
    }
}

struct Ctx<'a> {
    policy: &'a AccessPolicy,
    trust: &'a FederatedTrust,
    trust_name: &'a str,
    namespace: &'a str,
    name: &'a str,
    issuer: &'a str,
    subjects: Vec<String>,
    owner: Owner,
    inputs: &'a Inputs<'a>,
}

impl Ctx<'_> {
    /// The allowlist rule, shared with the webhook (`matching::identity_refusal`).
    fn identity_refusal(&self) -> Option<String> {
        matching::identity_refusal(&self.policy.spec, self.trust_name, &self.trust.spec)
    }

    fn audience(&self, cloud_default: &str) -> String {
        self.policy
            .spec
            .token
            .audience
            .clone()
            .unwrap_or_else(|| cloud_default.to_owned())
    }

    fn aws(self) -> Result<PolicyPlan, Refusal> {
        let (Some(trust), Some(access)) = (&self.trust.spec.aws, &self.policy.spec.aws) else {
            return Err(refuse(
                Reason::CloudMismatch,
                "the policy and trust disagree on AWS",
            ));
        };
        let audience = self.audience(&trust.audience);
        let grant = TrustGrant {
            provider_arn: aws::oidc_provider_arn(
                trust.partition.as_str(),
                &trust.account_id,
                self.issuer,
            ),
            issuer: self.issuer.to_owned(),
            audience: audience.clone(),
            subjects: self.subjects.clone(),
        };
        if let Some(arn) = &access.role_arn {
            if let Some(message) = self.identity_refusal() {
                return Err(refuse(Reason::IdentityNotAllowed, message));
            }
            return Ok(PolicyPlan {
                cloud: Cloud::Aws.as_str(),
                identity: arn.clone(),
                audience,
                principals: Vec::new(),
                object: PolicyObject::AwsTrustStatement(TrustStatementIntent {
                    role_arn: arn.clone(),
                    sid: naming::aws_statement_sid(self.inputs.cluster, self.namespace, self.name),
                    grant,
                }),
            });
        }
        let role_name = access.role_name.clone().unwrap_or_else(|| {
            naming::aws_role_name(self.inputs.cluster, self.namespace, self.name)
        });
        let document = aws::policy::PolicyDocument::trust("Passport", &grant).to_json();
        let size = aws::policy::size(&document);
        if size > self.inputs.trust_policy_quota {
            return Err(refuse(
                Reason::TrustPolicyTooLarge,
                format!(
                    "the trust policy of role {role_name} would be {size} characters, over the \
                     account's quota of {}: bind fewer service accounts to one policy, or raise \
                     the IAM quota and --aws-trust-policy-quota",
                    self.inputs.trust_policy_quota
                ),
            ));
        }
        let arn = naming::aws_role_arn(
            trust.partition.as_str(),
            &trust.account_id,
            &trust.role_path,
            &role_name,
        );
        Ok(PolicyPlan {
            cloud: Cloud::Aws.as_str(),
            identity: arn,
            audience,
            principals: Vec::new(),
            object: PolicyObject::AwsRole(RoleIntent {
                name: role_name,
                path: trust.role_path.clone(),
                owner: self.owner.clone(),
                grant,
                managed_policy_arns: access.managed_policy_arns.clone(),
                inline_policy: access.inline_policy.clone(),
                max_session_duration: access.max_session_duration,
                permissions_boundary_arn: trust.permissions_boundary_arn.clone(),
                tags: trust.tags.clone(),
            }),
        })
    }

    fn gcp(self) -> Result<PolicyPlan, Refusal> {
        let (Some(trust), Some(access)) = (&self.trust.spec.gcp, &self.policy.spec.gcp) else {
            return Err(refuse(
                Reason::CloudMismatch,
                "the policy and trust disagree on GCP",
            ));
        };
        let maps_sub = trust
            .attribute_mapping
            .as_ref()
            .is_none_or(|m| m.get("google.subject").map(String::as_str) == Some("assertion.sub"));
        let mut principals = Vec::new();
        for sa in &self.policy.spec.service_accounts {
            let subject = if maps_sub {
                naming::gcp_subject(self.namespace, sa)
                    .map_err(|message| refuse(Reason::SubjectTooLong, message))?
            } else {
                naming::service_account_subject(self.namespace, sa)
            };
            principals.push(format!(
                "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/subject/{subject}",
                trust.project_number, trust.pool_id
            ));
        }
        let audience = self.audience(&trust_desired::gcp_audience(
            &trust.project_number,
            &trust.pool_id,
            &trust.provider_id,
        ));
        match &access.service_account {
            Some(email) => {
                if let Some(message) = self.identity_refusal() {
                    return Err(refuse(Reason::IdentityNotAllowed, message));
                }
                Ok(PolicyPlan {
                    cloud: Cloud::Gcp.as_str(),
                    identity: email.clone(),
                    audience,
                    object: PolicyObject::GcpBinding(BindingIntent {
                        service_account: email.clone(),
                        grant: principals.clone(),
                        revoke: Vec::new(),
                    }),
                    principals,
                })
            }
            None => Ok(PolicyPlan {
                cloud: Cloud::Gcp.as_str(),
                identity: principals.first().cloned().unwrap_or_default(),
                audience,
                principals,
                object: PolicyObject::GcpDirect,
            }),
        }
    }

    fn azure(self) -> Result<PolicyPlan, Refusal> {
        let (Some(trust), Some(access)) = (&self.trust.spec.azure, &self.policy.spec.azure) else {
            return Err(refuse(
                Reason::CloudMismatch,
                "the policy and trust disagree on Azure",
            ));
        };
        if let Some(message) = self.identity_refusal() {
            return Err(refuse(Reason::IdentityNotAllowed, message));
        }
        if self.subjects.len() > MAX_FEDERATED_CREDENTIALS {
            return Err(refuse(
                Reason::FederatedCredentialLimit,
                format!(
                    "an Azure identity holds at most {MAX_FEDERATED_CREDENTIALS} federated \
                     credentials and this policy binds {} service accounts: split them over \
                     several identities",
                    self.subjects.len()
                ),
            ));
        }
        let audience = self.audience(&trust.audience);
        let credentials = self
            .policy
            .spec
            .service_accounts
            .iter()
            .zip(&self.subjects)
            .map(|(sa, subject)| FederatedCredentialIntent {
                identity: access.identity.clone(),
                name: naming::azure_fic_name(self.inputs.cluster, self.namespace, sa),
                issuer: self.issuer.to_owned(),
                subject: subject.clone(),
                audience: audience.clone(),
            })
            .collect();
        Ok(PolicyPlan {
            cloud: Cloud::Azure.as_str(),
            identity: access.identity.clone(),
            audience,
            principals: Vec::new(),
            object: PolicyObject::AzureCredentials { credentials },
        })
    }

    fn oidc(self) -> Result<PolicyPlan, Refusal> {
        let (Some(_), Some(access)) = (&self.trust.spec.oidc, &self.policy.spec.oidc) else {
            return Err(refuse(
                Reason::CloudMismatch,
                "the policy and trust disagree on OIDC",
            ));
        };
        if let Some(message) = self.identity_refusal() {
            return Err(refuse(Reason::IdentityNotAllowed, message));
        }
        Ok(PolicyPlan {
            cloud: Cloud::Oidc.as_str(),
            identity: access.audience.clone(),
            audience: self.audience(&access.audience),
            principals: Vec::new(),
            object: PolicyObject::Oidc,
        })
    }
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
