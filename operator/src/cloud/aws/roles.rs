//! IAM roles: roles Passport creates and owns (trust policy, managed and inline policies,
//! session duration, permissions boundary, ownership tags), and Passport's own statements in the
//! trust policies of adopted roles. Every ensure reads first and writes only the differences.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_iam::types::Role;

use super::{
    AwsProvider,
    error::map,
    policy::{self, PolicyDocument},
    role_name_of, tag_map, tags,
};
use crate::cloud::{
    Access, Change, Cloud, CloudError, Deleted, Ensured, ErrorKind, Owner, RoleIntent, RoleState,
    Roles, TrustStatementIntent, error::TRUST_POLICY_TOO_LARGE,
};

/// The Sid of the trust statement in roles Passport owns.
pub const OWNED_SID: &str = "Passport";
/// The name of the inline policy Passport manages on its roles.
pub const INLINE_POLICY_NAME: &str = "passport";
/// IAM's default maximum session duration.
const DEFAULT_MAX_SESSION: i32 = 3600;

fn invalid(operation: &'static str, message: impl Into<String>) -> CloudError {
    CloudError::new(ErrorKind::Invalid, Cloud::Aws, operation, message)
}

impl AwsProvider {
    /// Refuses a trust policy over the account's quota before any call.
    fn check_size(&self, role: &str, document: &str) -> Result<(), CloudError> {
        let size = policy::size(document);
        if size > self.quota {
            return Err(CloudError::new(
                ErrorKind::LimitExceeded,
                Cloud::Aws,
                "UpdateAssumeRolePolicy",
                format!(
                    "the trust policy of role {role} would be {size} characters, over the account's \
                     quota of {}: bind fewer service accounts to one role, split the policy, or \
                     raise the IAM quota 'Role trust policy length' and --aws-trust-policy-quota",
                    self.quota
                ),
            )
            .with_code(TRUST_POLICY_TOO_LARGE));
        }
        Ok(())
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, CloudError> {
        let iam = &self.iam;
        let result = self
            .caller
            .run("GetRole", Access::Read, || async move {
                iam.get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| map("GetRole", e))
            })
            .await;
        match result {
            Ok(out) => Ok(out.role),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn attached_policies(&self, role: &str) -> Result<BTreeSet<String>, CloudError> {
        let iam = &self.iam;
        let mut arns = BTreeSet::new();
        let mut marker: Option<String> = None;
        loop {
            let page_marker = marker.as_deref();
            let out = self
                .caller
                .run("ListAttachedRolePolicies", Access::Read, || async move {
                    iam.list_attached_role_policies()
                        .role_name(role)
                        .set_marker(page_marker.map(str::to_owned))
                        .send()
                        .await
                        .map_err(|e| map("ListAttachedRolePolicies", e))
                })
                .await?;
            arns.extend(
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned)),
            );
            match (out.is_truncated, out.marker) {
                (true, Some(next)) => marker = Some(next),
                _ => return Ok(arns),
            }
        }
    }

    async fn inline_policy(&self, role: &str) -> Result<Option<String>, CloudError> {
        let iam = &self.iam;
        let result = self
            .caller
            .run("GetRolePolicy", Access::Read, || async move {
                iam.get_role_policy()
                    .role_name(role)
                    .policy_name(INLINE_POLICY_NAME)
                    .send()
                    .await
                    .map_err(|e| map("GetRolePolicy", e))
            })
            .await;
        match result {
            Ok(out) => Ok(Some(out.policy_document)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn update_trust(&self, role: &str, document: &str) -> Result<(), CloudError> {
        let iam = &self.iam;
        self.caller
            .run("UpdateAssumeRolePolicy", Access::Write, || async move {
                iam.update_assume_role_policy()
                    .role_name(role)
                    .policy_document(document)
                    .send()
                    .await
                    .map_err(|e| map("UpdateAssumeRolePolicy", e))
            })
            .await?;
        Ok(())
    }

    /// Makes the managed-policy attachments and the inline policy of a role Passport owns match.
    async fn sync_permissions(
        &self,
        intent: &RoleIntent,
        attached: BTreeSet<String>,
        inline: Option<String>,
        changes: &mut Vec<String>,
    ) -> Result<(), CloudError> {
        let iam = &self.iam;
        let role = intent.name.as_str();
        let wanted: BTreeSet<String> = intent.managed_policy_arns.iter().cloned().collect();
        for arn in wanted.difference(&attached) {
            let arn = arn.as_str();
            self.caller
                .run("AttachRolePolicy", Access::Write, || async move {
                    iam.attach_role_policy()
                        .role_name(role)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(|e| map("AttachRolePolicy", e))
                })
                .await?;
            changes.push(format!("attached {arn}"));
        }
        for arn in attached.difference(&wanted) {
            let arn = arn.as_str();
            self.caller
                .run("DetachRolePolicy", Access::Write, || async move {
                    iam.detach_role_policy()
                        .role_name(role)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(|e| map("DetachRolePolicy", e))
                })
                .await?;
            changes.push(format!("detached {arn}"));
        }
        match (&intent.inline_policy, inline) {
            (Some(want), have) if !have.as_deref().is_some_and(|h| policy::same_text(h, want)) => {
                let want = want.as_str();
                self.caller
                    .run("PutRolePolicy", Access::Write, || async move {
                        iam.put_role_policy()
                            .role_name(role)
                            .policy_name(INLINE_POLICY_NAME)
                            .policy_document(want)
                            .send()
                            .await
                            .map_err(|e| map("PutRolePolicy", e))
                    })
                    .await?;
                changes.push("wrote the inline policy".to_owned());
            }
            (None, Some(_)) => {
                self.delete_inline(role, INLINE_POLICY_NAME).await?;
                changes.push("removed the inline policy".to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    async fn delete_inline(&self, role: &str, name: &str) -> Result<(), CloudError> {
        let iam = &self.iam;
        self.caller
            .run("DeleteRolePolicy", Access::Write, || async move {
                iam.delete_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| map("DeleteRolePolicy", e))
            })
            .await?;
        Ok(())
    }

    async fn create_role(
        &self,
        intent: &RoleIntent,
        trust: &str,
    ) -> Result<Ensured<RoleState>, CloudError> {
        let iam = &self.iam;
        let mut all_tags = intent.tags.clone();
        all_tags.extend(intent.owner.tags());
        let tags = tags(&all_tags)?;
        let tags = &tags;
        let description = format!("Managed by Passport for {}", intent.owner);
        let description = description.as_str();
        let out = self
            .caller
            .run("CreateRole", Access::Write, || async move {
                iam.create_role()
                    .role_name(&intent.name)
                    .path(&intent.path)
                    .assume_role_policy_document(trust)
                    .description(description)
                    .set_max_session_duration(intent.max_session_duration)
                    .set_permissions_boundary(intent.permissions_boundary_arn.clone())
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .map_err(|e| map("CreateRole", e))
            })
            .await?;
        let arn = out
            .role
            .map(|r| r.arn)
            .ok_or_else(|| invalid("CreateRole", "IAM returned no role"))?;
        let mut changes = vec![format!("created role {}", intent.name)];
        self.sync_permissions(intent, BTreeSet::new(), None, &mut changes)
            .await?;
        tracing::info!(role = %arn, "created iam role");
        Ok(Ensured {
            state: RoleState { arn },
            change: Change::Created,
            changes,
        })
    }
}

impl AwsProvider {
    /// Explains a `DeleteConflict` on a role Passport owns: someone put it into an instance
    /// profile (ACK's controller got stuck here). Passport does not edit profiles it did not
    /// create, so a person has to; the error waits for them instead of retrying hot.
    async fn delete_conflict(&self, name: &str, error: CloudError) -> CloudError {
        let iam = &self.iam;
        let profiles = self
            .caller
            .run("ListInstanceProfilesForRole", Access::Read, || async move {
                iam.list_instance_profiles_for_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| map("ListInstanceProfilesForRole", e))
            })
            .await
            .map(|out| {
                out.instance_profiles()
                    .iter()
                    .map(|p| p.instance_profile_name().to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut message = format!("IAM refused to delete role {name}: {}", error.message);
        if !profiles.is_empty() {
            message.push_str(&format!(
                "; remove it from the instance profiles {} (aws iam remove-role-from-instance-profile)",
                profiles.join(", ")
            ));
        }
        CloudError::new(ErrorKind::Conflict, Cloud::Aws, "DeleteRole", message)
            .with_code(crate::cloud::error::BLOCKED)
    }
}

/// Who a role's tags say owns it, for messages.
fn owner_of(tags: &BTreeMap<String, String>) -> String {
    Owner::from_tags(tags).map_or_else(
        || "someone outside Passport (it has no Passport ownership tags)".to_owned(),
        |o| o.to_string(),
    )
}

#[async_trait]
impl Roles for AwsProvider {
    async fn ensure_role(&self, intent: &RoleIntent) -> Result<Ensured<RoleState>, CloudError> {
        let trust = PolicyDocument::trust(OWNED_SID, &intent.grant).to_json();
        self.check_size(&intent.name, &trust)?;
        if let Some(inline) = &intent.inline_policy {
            PolicyDocument::parse(inline).map_err(|e| invalid("PutRolePolicy", e.to_string()))?;
        }
        let Some(role) = self.get_role(&intent.name).await? else {
            return self.create_role(intent, &trust).await;
        };
        let role_tags = tag_map(role.tags());
        if Owner::from_tags(&role_tags).as_ref() != Some(&intent.owner) {
            return Err(CloudError::not_owned(
                Cloud::Aws,
                "GetRole",
                &format!("IAM role {}", intent.name),
                &owner_of(&role_tags),
            ));
        }
        if role.path != intent.path {
            return Err(invalid(
                "GetRole",
                format!(
                    "role {} exists under path {} but the trust's rolePath is {}; IAM cannot move \
                     a role: delete the role or restore the rolePath",
                    intent.name, role.path, intent.path
                ),
            ));
        }
        let iam = &self.iam;
        let name = intent.name.as_str();
        let mut changes = Vec::new();
        let current = role.assume_role_policy_document.as_deref().unwrap_or("");
        if !policy::same_text(current, &trust) {
            self.update_trust(name, &trust).await?;
            changes.push("updated the trust policy".to_owned());
        }
        let want_session = intent.max_session_duration.unwrap_or(DEFAULT_MAX_SESSION);
        if role.max_session_duration.unwrap_or(DEFAULT_MAX_SESSION) != want_session {
            self.caller
                .run("UpdateRole", Access::Write, || async move {
                    iam.update_role()
                        .role_name(name)
                        .max_session_duration(want_session)
                        .send()
                        .await
                        .map_err(|e| map("UpdateRole", e))
                })
                .await?;
            changes.push(format!("set the maximum session to {want_session} s"));
        }
        let boundary = role
            .permissions_boundary
            .as_ref()
            .and_then(|b| b.permissions_boundary_arn.as_deref());
        match (intent.permissions_boundary_arn.as_deref(), boundary) {
            (Some(want), have) if have != Some(want) => {
                self.caller
                    .run("PutRolePermissionsBoundary", Access::Write, || async move {
                        iam.put_role_permissions_boundary()
                            .role_name(name)
                            .permissions_boundary(want)
                            .send()
                            .await
                            .map_err(|e| map("PutRolePermissionsBoundary", e))
                    })
                    .await?;
                changes.push(format!("set the permissions boundary {want}"));
            }
            (None, Some(_)) => {
                self.caller
                    .run(
                        "DeleteRolePermissionsBoundary",
                        Access::Write,
                        || async move {
                            iam.delete_role_permissions_boundary()
                                .role_name(name)
                                .send()
                                .await
                                .map_err(|e| map("DeleteRolePermissionsBoundary", e))
                        },
                    )
                    .await?;
                changes.push("removed the permissions boundary".to_owned());
            }
            _ => {}
        }
        let stale: BTreeMap<String, String> = intent
            .tags
            .iter()
            .filter(|(k, v)| role_tags.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !stale.is_empty() {
            let stale = tags(&stale)?;
            let stale = &stale;
            self.caller
                .run("TagRole", Access::Write, || async move {
                    iam.tag_role()
                        .role_name(name)
                        .set_tags(Some(stale.clone()))
                        .send()
                        .await
                        .map_err(|e| map("TagRole", e))
                })
                .await?;
            changes.push("updated tags".to_owned());
        }
        let attached = self.attached_policies(name).await?;
        let inline = self.inline_policy(name).await?;
        self.sync_permissions(intent, attached, inline, &mut changes)
            .await?;
        if !changes.is_empty() {
            tracing::info!(role = %role.arn, changes = changes.len(), "updated iam role");
        }
        Ok(Ensured {
            state: RoleState { arn: role.arn },
            change: if changes.is_empty() {
                Change::Unchanged
            } else {
                Change::Updated
            },
            changes,
        })
    }

    async fn delete_role(&self, name: &str, owner: &Owner) -> Result<Deleted, CloudError> {
        let Some(role) = self.get_role(name).await? else {
            return Ok(Deleted::Absent);
        };
        let role_tags = tag_map(role.tags());
        if Owner::from_tags(&role_tags).as_ref() != Some(owner) {
            return Ok(Deleted::Kept {
                why: format!("IAM role {name} belongs to {}", owner_of(&role_tags)),
            });
        }
        let iam = &self.iam;
        for arn in self.attached_policies(name).await? {
            let arn = arn.as_str();
            self.caller
                .run("DetachRolePolicy", Access::Write, || async move {
                    iam.detach_role_policy()
                        .role_name(name)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(|e| map("DetachRolePolicy", e))
                })
                .await?;
        }
        let inline = self
            .caller
            .run("ListRolePolicies", Access::Read, || async move {
                iam.list_role_policies()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| map("ListRolePolicies", e))
            })
            .await?;
        for policy_name in inline.policy_names() {
            self.delete_inline(name, policy_name).await?;
        }
        let result = self
            .caller
            .run("DeleteRole", Access::Write, || async move {
                iam.delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| map("DeleteRole", e))
            })
            .await;
        match result {
            Ok(_) => {
                tracing::info!(role = %role.arn, "deleted iam role");
                Ok(Deleted::Deleted)
            }
            Err(e) if e.is_not_found() => Ok(Deleted::Absent),
            Err(e) if e.code.as_deref() == Some("DeleteConflict") => {
                Err(self.delete_conflict(name, e).await)
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_trust_statement(
        &self,
        intent: &TrustStatementIntent,
    ) -> Result<Ensured<RoleState>, CloudError> {
        if !intent.sid.starts_with(policy::SID_PREFIX) {
            return Err(invalid(
                "UpdateAssumeRolePolicy",
                format!("statement id {} must start with Passport", intent.sid),
            ));
        }
        let name = role_name_of(&intent.role_arn).ok_or_else(|| {
            invalid(
                "GetRole",
                format!("{} is not an IAM role ARN", intent.role_arn),
            )
        })?;
        let role = self.get_role(name).await?.ok_or_else(|| {
            CloudError::new(
                ErrorKind::NotFound,
                Cloud::Aws,
                "GetRole",
                format!(
                    "role {} does not exist: create it, or fix roleArn",
                    intent.role_arn
                ),
            )
        })?;
        let current = role.assume_role_policy_document.as_deref().unwrap_or("");
        let document = PolicyDocument::parse(current)
            .map_err(|e| invalid("GetRole", format!("role {name}: {e}")))?;
        let edited = document.with_statement(&intent.sid, &intent.grant);
        if edited.same_as(&document) {
            return Ok(Ensured::unchanged(RoleState { arn: role.arn }));
        }
        let text = edited.to_json();
        self.check_size(name, &text)?;
        self.update_trust(name, &text).await?;
        tracing::info!(role = %role.arn, sid = %intent.sid, "updated trust statement of adopted role");
        Ok(Ensured {
            state: RoleState { arn: role.arn },
            change: Change::Updated,
            changes: vec![format!("wrote statement {}", intent.sid)],
        })
    }

    async fn remove_trust_statement(
        &self,
        role_arn: &str,
        sid: &str,
    ) -> Result<Deleted, CloudError> {
        let Some(name) = role_name_of(role_arn) else {
            return Ok(Deleted::Absent);
        };
        let Some(role) = self.get_role(name).await? else {
            return Ok(Deleted::Absent);
        };
        let current = role.assume_role_policy_document.as_deref().unwrap_or("");
        let document = PolicyDocument::parse(current)
            .map_err(|e| invalid("GetRole", format!("role {name}: {e}")))?;
        if !document.has_statement(sid) {
            return Ok(Deleted::Absent);
        }
        let text = document.without_statement(sid).to_json();
        self.update_trust(name, &text).await?;
        tracing::info!(role = %role.arn, sid, "removed trust statement of adopted role");
        Ok(Deleted::Deleted)
    }
}
