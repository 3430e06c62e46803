//! `roles/iam.workloadIdentityUser` members on Google service accounts, through
//! google-cloud-iam-admin-v1: read-modify-write of the account's IAM policy with its etag,
//! re-read and retried on an etag conflict, touching only the members Passport names.
//!
//! The crate builds its own reqwest client, so it cannot take Passport's CA bundle: it trusts
//! the platform's roots (rustls-platform-verifier, which on Linux reads `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`). `stack.env` exports `SSL_CERT_FILE` for the local stack.

use std::collections::BTreeSet;

use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_v1::model::{Binding, GetPolicyOptions, Policy};

use super::{GcpProvider, rest};
use crate::cloud::{Access, BindingIntent, CloudError, Ensured, ErrorKind, error::kind_for_status};
use passport_crds::Cloud;

pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";
/// Read-modify-write rounds before an etag conflict reaches the caller.
const ETAG_ROUNDS: usize = 5;

/// Passport's edit of a policy: the members of the unconditional workload identity user
/// binding after `grant` and `revoke`; None when nothing changes.
pub fn edit(policy: &Policy, intent: &BindingIntent) -> Option<Policy> {
    let index = policy
        .bindings
        .iter()
        .position(|b| b.role == WORKLOAD_IDENTITY_USER && b.condition.is_none());
    let current: BTreeSet<&str> = index
        .map(|i| {
            policy.bindings[i]
                .members
                .iter()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    let revoke: BTreeSet<&str> = intent.revoke.iter().map(String::as_str).collect();
    let wanted: BTreeSet<&str> = current
        .iter()
        .copied()
        .filter(|m| !revoke.contains(m))
        .chain(
            intent
                .grant
                .iter()
                .map(String::as_str)
                .filter(|m| !revoke.contains(m)),
        )
        .collect();
    if wanted == current {
        return None;
    }
    let mut edited = policy.clone();
    let members: Vec<String> = wanted.into_iter().map(str::to_owned).collect();
    match index {
        Some(i) if members.is_empty() => {
            edited.bindings.remove(i);
        }
        Some(i) => edited.bindings[i].members = members,
        None => edited.bindings.push(
            Binding::new()
                .set_role(WORKLOAD_IDENTITY_USER)
                .set_members(members),
        ),
    }
    Some(edited)
}

/// Maps a google-cloud-gax error to a [`CloudError`] with the message Google sent.
fn gax_error(operation: &'static str, error: &google_cloud_iam_admin_v1::Error) -> CloudError {
    if let Some(status) = error.status() {
        let name = status.code.name();
        let http = error.http_status_code().unwrap_or(500);
        let kind =
            rest::kind_for_google_status(name, http).unwrap_or_else(|| kind_for_status(http));
        return CloudError::new(kind, Cloud::Gcp, operation, status.message.clone())
            .with_code(name);
    }
    let kind = if error.is_authentication() {
        ErrorKind::AccessDenied
    } else if let Some(http) = error.http_status_code() {
        kind_for_status(http)
    } else {
        ErrorKind::Unavailable
    };
    CloudError::new(kind, Cloud::Gcp, operation, error.to_string())
}

impl GcpProvider {
    pub(super) async fn ensure_members(
        &self,
        intent: &BindingIntent,
    ) -> Result<Ensured<()>, CloudError> {
        let resource = format!("projects/-/serviceAccounts/{}", intent.service_account);
        let mut round = 0;
        loop {
            round += 1;
            let policy = self.get_policy(&self.iam, &resource).await?;
            let Some(edited) = edit(&policy, intent) else {
                return Ok(Ensured::unchanged(()));
            };
            match self.set_policy(&self.iam, &resource, edited).await {
                Ok(()) => {
                    tracing::info!(
                        service_account = %intent.service_account,
                        granted = intent.grant.len(),
                        revoked = intent.revoke.len(),
                        "updated workload identity users"
                    );
                    return Ok(Ensured {
                        state: (),
                        change: crate::cloud::Change::Updated,
                        changes: vec![format!(
                            "updated {WORKLOAD_IDENTITY_USER} members of {}",
                            intent.service_account
                        )],
                    });
                }
                Err(e) if e.kind == ErrorKind::Conflict && round < ETAG_ROUNDS => {
                    tracing::debug!(
                        service_account = %intent.service_account,
                        round,
                        "iam policy changed under us, reading it again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_policy(&self, iam: &Iam, resource: &str) -> Result<Policy, CloudError> {
        self.rest
            .caller
            .run("GetIamPolicy", Access::Read, || async {
                iam.get_iam_policy()
                    .set_resource(resource)
                    // Version 3 shows conditional bindings as they are, so writing the policy
                    // back keeps them.
                    .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
                    .send()
                    .await
                    .map_err(|e| gax_error("GetIamPolicy", &e))
            })
            .await
    }

    async fn set_policy(
        &self,
        iam: &Iam,
        resource: &str,
        policy: Policy,
    ) -> Result<(), CloudError> {
        self.rest
            .caller
            .run("SetIamPolicy", Access::Write, || async {
                iam.set_iam_policy()
                    .set_resource(resource)
                    .set_policy(policy.clone())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| gax_error("SetIamPolicy", &e))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bindings: &[(&str, &[&str])]) -> Policy {
        Policy::new().set_bindings(bindings.iter().map(|(role, members)| {
            Binding::new()
                .set_role(*role)
                .set_members(members.iter().map(|m| (*m).to_owned()))
        }))
    }

    fn intent(grant: &[&str], revoke: &[&str]) -> BindingIntent {
        BindingIntent {
            service_account: "sa@p.iam.gserviceaccount.com".into(),
            grant: grant.iter().map(|m| (*m).to_owned()).collect(),
            revoke: revoke.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn grants_and_revokes_touch_only_the_named_members() {
        let before = policy(&[
            (WORKLOAD_IDENTITY_USER, &["user:someone@x", "principal://a"]),
            ("roles/viewer", &["principal://a"]),
        ]);
        let Some(after) = edit(&before, &intent(&["principal://b"], &["principal://a"])) else {
            panic!("no edit");
        };
        assert_eq!(
            after.bindings[0].members,
            ["principal://b", "user:someone@x"]
        );
        assert_eq!(after.bindings[1], before.bindings[1]);
        assert!(edit(&after, &intent(&["principal://b"], &["principal://a"])).is_none());
    }

    #[test]
    fn an_emptied_binding_is_removed_and_a_missing_one_added() {
        let before = policy(&[(WORKLOAD_IDENTITY_USER, &["principal://a"])]);
        let Some(after) = edit(&before, &intent(&[], &["principal://a"])) else {
            panic!("no edit");
        };
        assert!(after.bindings.is_empty());
        let Some(added) = edit(&after, &intent(&["principal://a"], &[])) else {
            panic!("no edit");
        };
        assert_eq!(added.bindings[0].role, WORKLOAD_IDENTITY_USER);
    }
}
