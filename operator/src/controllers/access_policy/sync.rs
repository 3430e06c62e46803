//! The cloud side of an AccessPolicy reconcile: makes the cloud match a [`PolicyPlan`], removes
//! only what the policy granted earlier and no longer lists (read from its previous status), and
//! cleans up on deletion. No Kubernetes IO, so it runs against [`crate::cloud::fake::FakeCloud`]
//! in unit tests.

use std::collections::BTreeSet;

use passport_crds::{AccessPolicy, AccessPolicyStatus, Cloud};

use super::desired::{PolicyObject, PolicyPlan};
use crate::{
    audit::Record,
    cloud::{BindingIntent, CloudError, Deleted, Ensured, Owner},
    controllers::context::Clouds,
};

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One record per cloud change (no record for what already matched).
    pub records: Vec<Record>,
    /// The Azure identity's client ID, for the status and the pods.
    pub azure_client_id: Option<String>,
}

/// A sync that failed part way: what changed before the failure, and the failure.
#[derive(Clone, Debug)]
pub struct Failed {
    pub records: Vec<Record>,
    pub error: CloudError,
}

impl Report {
    fn ensured<T>(
        &mut self,
        cloud: Cloud,
        object: &str,
        ensured: &Ensured<T>,
        after: &impl serde::Serialize,
    ) {
        self.records
            .extend(Record::ensured(cloud, object, ensured, after));
    }

    fn deleted(&mut self, cloud: Cloud, object: &str, deleted: &Deleted) {
        self.records.extend(Record::deleted(cloud, object, deleted));
    }
}

macro_rules! step {
    ($report:ident, $call:expr) => {
        match $call {
            Ok(value) => value,
            Err(error) => {
                return Err(Failed {
                    records: $report.records,
                    error,
                });
            }
        }
    };
}

/// Makes the cloud match `plan`.
pub async fn apply(
    plan: &PolicyPlan,
    policy: &AccessPolicy,
    clouds: &Clouds,
) -> Result<Report, Failed> {
    let previous = policy.status.as_ref();
    let mut report = Report::default();
    match &plan.object {
        PolicyObject::AwsRole(intent) => {
            let roles = step!(report, clouds.roles());
            let ensured = step!(report, roles.ensure_role(intent).await);
            report.ensured(Cloud::Aws, &ensured.state.arn, &ensured, intent);
            // A renamed role: the old one goes, if it is this policy's.
            if let Some(old) = previous_role_arn(previous)
                && old != plan.identity
                && let Some(name) = role_name(&old)
            {
                let deleted = step!(report, roles.delete_role(name, &intent.owner).await);
                report.deleted(Cloud::Aws, &old, &deleted);
            }
        }
        PolicyObject::AwsTrustStatement(intent) => {
            let roles = step!(report, clouds.roles());
            let ensured = step!(report, roles.ensure_trust_statement(intent).await);
            report.ensured(
                Cloud::Aws,
                &format!("{} statement {}", intent.role_arn, intent.sid),
                &ensured,
                intent,
            );
        }
        PolicyObject::GcpBinding(intent) => {
            let bindings = step!(report, clouds.bindings());
            let granted = previous_principals(previous);
            let previous_identity = previous.and_then(|s| s.identity.clone());
            let same_account = previous_identity.as_deref() == Some(&intent.service_account);
            let wanted: BTreeSet<&String> = intent.grant.iter().collect();
            let intent = BindingIntent {
                service_account: intent.service_account.clone(),
                grant: intent.grant.clone(),
                revoke: if same_account {
                    granted
                        .iter()
                        .filter(|p| !wanted.contains(p))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                },
            };
            let ensured = step!(
                report,
                bindings.ensure_workload_identity_users(&intent).await
            );
            report.ensured(Cloud::Gcp, &intent.service_account, &ensured, &intent);
            // The policy moved to another Google service account: the old one loses only
            // the members this policy granted.
            if let Some(old) = previous_identity.filter(|old| !same_account && is_email(old))
                && !granted.is_empty()
            {
                let revoke = BindingIntent {
                    service_account: old.clone(),
                    grant: Vec::new(),
                    revoke: granted,
                };
                let ensured = step!(
                    report,
                    bindings.ensure_workload_identity_users(&revoke).await
                );
                report.ensured(Cloud::Gcp, &old, &ensured, &revoke);
            }
        }
        PolicyObject::AzureCredentials { credentials } => {
            let fics = step!(report, clouds.credentials());
            for intent in credentials {
                let ensured = step!(report, fics.ensure_federated_credential(intent).await);
                report.ensured(Cloud::Azure, &ensured.state.id, &ensured, intent);
            }
            let wanted: BTreeSet<&str> = credentials.iter().map(|c| c.name.as_str()).collect();
            let identity = policy.spec.azure.as_ref().map(|a| a.identity.as_str());
            let previous_identity = previous.and_then(|s| s.identity.as_deref());
            for name in previous_credentials(previous) {
                let old_identity = previous_identity.unwrap_or_default();
                let moved = !old_identity.eq_ignore_ascii_case(identity.unwrap_or_default());
                if (moved || !wanted.contains(name.as_str())) && !old_identity.is_empty() {
                    let deleted = step!(
                        report,
                        fics.delete_federated_credential(old_identity, &name).await
                    );
                    report.deleted(
                        Cloud::Azure,
                        &format!("{old_identity}/federatedIdentityCredentials/{name}"),
                        &deleted,
                    );
                }
            }
            report.azure_client_id =
                match policy.spec.azure.as_ref().and_then(|a| a.client_id.clone()) {
                    Some(id) => Some(id),
                    None => Some(step!(report, fics.identity_client_id(&plan.identity).await)),
                };
        }
        PolicyObject::GcpDirect | PolicyObject::Oidc => {}
    }
    Ok(report)
}

/// Removes what the policy put in the cloud, by its spec and last status (the trust may be gone
/// already). Objects Passport did not create are left alone by the providers.
pub async fn cleanup(
    policy: &AccessPolicy,
    owner: &Owner,
    clouds: &Clouds,
    sid: &str,
) -> Result<Report, Failed> {
    let status = policy.status.as_ref();
    let mut report = Report::default();
    if let Some(aws) = &policy.spec.aws {
        let roles = step!(report, clouds.roles());
        if let Some(arn) = &aws.role_arn {
            let deleted = step!(report, roles.remove_trust_statement(arn, sid).await);
            report.deleted(Cloud::Aws, &format!("{arn} statement {sid}"), &deleted);
        } else if let Some(arn) = previous_role_arn(status)
            && let Some(name) = role_name(&arn)
        {
            let deleted = step!(report, roles.delete_role(name, owner).await);
            report.deleted(Cloud::Aws, &arn, &deleted);
        }
    }
    if let Some(gcp) = &policy.spec.gcp {
        let granted = previous_principals(status);
        let account = status
            .and_then(|s| s.identity.clone())
            .filter(|i| is_email(i))
            .or_else(|| gcp.service_account.clone());
        if let Some(account) = account
            && !granted.is_empty()
        {
            let bindings = step!(report, clouds.bindings());
            let revoke = BindingIntent {
                service_account: account.clone(),
                grant: Vec::new(),
                revoke: granted,
            };
            let ensured = step!(
                report,
                bindings.ensure_workload_identity_users(&revoke).await
            );
            report.ensured(Cloud::Gcp, &account, &ensured, &revoke);
        }
    }
    if let Some(azure) = &policy.spec.azure {
        let identity = status
            .and_then(|s| s.identity.clone())
            .unwrap_or_else(|| azure.identity.clone());
        let names = previous_credentials(status);
        if !names.is_empty() {
            let fics = step!(report, clouds.credentials());
            for name in names {
                let deleted = step!(
                    report,
                    fics.delete_federated_credential(&identity, &name).await
                );
                report.deleted(
                    Cloud::Azure,
                    &format!("{identity}/federatedIdentityCredentials/{name}"),
                    &deleted,
                );
            }
        }
    }
    Ok(report)
}

fn previous_role_arn(status: Option<&AccessPolicyStatus>) -> Option<String> {
    status?.aws.as_ref()?.role_arn.clone()
}

fn previous_principals(status: Option<&AccessPolicyStatus>) -> Vec<String> {
    status
        .and_then(|s| s.gcp.as_ref())
        .map(|g| g.principals.clone())
        .unwrap_or_default()
}

fn previous_credentials(status: Option<&AccessPolicyStatus>) -> Vec<String> {
    status
        .and_then(|s| s.azure.as_ref())
        .map(|a| a.federated_credentials.clone())
        .unwrap_or_default()
}

/// The role name of a role ARN (`arn:aws:iam::123:role/path/name` → `name`).
fn role_name(arn: &str) -> Option<&str> {
    arn.split_once(":role/")
        .and_then(|(_, path)| path.rsplit('/').next())
        .filter(|name| !name.is_empty())
}

fn is_email(identity: &str) -> bool {
    identity.contains('@') && !identity.starts_with("principal")
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
