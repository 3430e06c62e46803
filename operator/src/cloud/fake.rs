//! In-memory fakes of the cloud traits, for controller unit tests: one [`FakeCloud`] implements
//! every trait, keeps what was ensured, counts calls into [`Calls`] like the real providers, and
//! fails the next calls of an operation on request (`fail_next`). Never used to test the
//! providers themselves: those run with the real SDKs against the local stack.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
};

use async_trait::async_trait;

use super::{
    Access, BindingIntent, Calls, Change, Cloud, CloudError, Deleted, Ensured, ErrorKind,
    FederatedCredentialIntent, FederatedCredentialState, FederatedCredentials, OidcProviderIntent,
    OidcProviderRelease, OidcProviderState, OidcProviders, Owner, RoleIntent, RoleState, Roles,
    ServiceAccountBindings, TrustGrant, TrustStatementIntent, WorkloadIdentityIntent,
    WorkloadIdentityPools, WorkloadIdentityRef, WorkloadIdentityState, calls::Outcome,
};

#[derive(Default)]
struct State {
    providers: BTreeMap<String, (Vec<String>, Owner)>,
    roles: BTreeMap<String, RoleIntent>,
    statements: BTreeMap<String, BTreeMap<String, TrustGrant>>,
    pools: BTreeMap<(String, String, String), WorkloadIdentityIntent>,
    bindings: BTreeMap<String, BTreeSet<String>>,
    credentials: BTreeMap<(String, String), FederatedCredentialIntent>,
    client_ids: BTreeMap<String, String>,
    /// Issuer objects by bucket description and key: body and content type.
    objects: BTreeMap<(String, String), (Vec<u8>, String)>,
    failures: HashMap<&'static str, VecDeque<ErrorKind>>,
}

/// Every cloud trait over in-memory state.
#[derive(Default)]
pub struct FakeCloud {
    state: Mutex<State>,
    pub calls: Calls,
}

impl FakeCloud {
    /// Fails the next `count` calls of `operation` (the trait method's name) with `kind`.
    pub fn fail_next(&self, operation: &'static str, count: usize, kind: ErrorKind) {
        self.lock()
            .failures
            .entry(operation)
            .or_default()
            .extend(std::iter::repeat_n(kind, count));
    }

    /// An issuer object written to a bucket: its body and content type.
    pub fn object(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
        self.lock()
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Seeds an identity's client ID.
    pub fn identity(&self, identity: &str, client_id: &str) {
        self.lock()
            .client_ids
            .insert(identity.to_ascii_lowercase(), client_id.to_owned());
    }

    /// Seeds a role Passport does not own (so ensures of that name conflict).
    pub fn foreign_role(&self, name: &str, owner: Owner) {
        let mut intent = placeholder_role(name);
        intent.owner = owner;
        self.lock().roles.insert(name.to_owned(), intent);
    }

    /// The role ensured under `name`, if any.
    pub fn role(&self, name: &str) -> Option<RoleIntent> {
        self.lock().roles.get(name).cloned()
    }

    /// The members Passport bound on a service account.
    pub fn members(&self, service_account: &str) -> BTreeSet<String> {
        self.lock()
            .bindings
            .get(service_account)
            .cloned()
            .unwrap_or_default()
    }

    /// The credentials on an identity, by name.
    pub fn credentials(&self, identity: &str) -> Vec<String> {
        let key = identity.to_ascii_lowercase();
        self.lock()
            .credentials
            .keys()
            .filter(|(i, _)| *i == key)
            .map(|(_, n)| n.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the call and returns the queued failure for `operation`, if any.
    fn enter(
        &self,
        cloud: Cloud,
        operation: &'static str,
        access: Access,
    ) -> Result<(), CloudError> {
        let failure = self
            .lock()
            .failures
            .get_mut(operation)
            .and_then(VecDeque::pop_front);
        let result = match failure {
            Some(kind) => Err(CloudError::new(
                kind,
                cloud,
                operation,
                "injected by FakeCloud",
            )),
            None => Ok(()),
        };
        self.calls
            .record(cloud, operation, access, Outcome::of(&result));
        result
    }
}

fn placeholder_role(name: &str) -> RoleIntent {
    RoleIntent {
        name: name.to_owned(),
        path: "/".to_owned(),
        owner: Owner::trust("", ""),
        grant: TrustGrant {
            provider_arn: String::new(),
            issuer: String::new(),
            audience: String::new(),
            subjects: Vec::new(),
        },
        managed_policy_arns: Vec::new(),
        inline_policy: None,
        max_session_duration: None,
        permissions_boundary_arn: None,
        tags: BTreeMap::new(),
    }
}

fn change<T>(state: T, before: Option<bool>) -> Ensured<T> {
    // before: None = absent, Some(true) = already equal, Some(false) = different.
    let change = match before {
        None => Change::Created,
        Some(true) => Change::Unchanged,
        Some(false) => Change::Updated,
    };
    Ensured {
        state,
        change,
        changes: match change {
            Change::Unchanged => Vec::new(),
            _ => vec!["changed in FakeCloud".to_owned()],
        },
    }
}

fn access(before: Option<bool>) -> Access {
    if before == Some(true) {
        Access::Read
    } else {
        Access::Write
    }
}

#[async_trait]
impl OidcProviders for FakeCloud {
    async fn ensure_oidc_provider(
        &self,
        intent: &OidcProviderIntent,
    ) -> Result<Ensured<OidcProviderState>, CloudError> {
        let arn =
            super::aws::oidc_provider_arn(&intent.partition, &intent.account_id, &intent.issuer);
        let before = self
            .lock()
            .providers
            .get(&arn)
            .map(|(ids, _)| ids.contains(&intent.audience));
        self.enter(Cloud::Aws, "ensure_oidc_provider", access(before))?;
        let mut state = self.lock();
        let (ids, owner) = state
            .providers
            .entry(arn.clone())
            .or_insert_with(|| (Vec::new(), intent.owner.clone()));
        if !ids.contains(&intent.audience) {
            ids.push(intent.audience.clone());
        }
        let created = owner.cluster == intent.owner.cluster;
        Ok(change(
            OidcProviderState {
                arn,
                created,
                client_ids: ids.clone(),
            },
            before,
        ))
    }

    async fn delete_oidc_provider(
        &self,
        release: &OidcProviderRelease,
    ) -> Result<Deleted, CloudError> {
        self.enter(Cloud::Aws, "delete_oidc_provider", Access::Write)?;
        let arn =
            super::aws::oidc_provider_arn(&release.partition, &release.account_id, &release.issuer);
        let mut state = self.lock();
        match state.providers.get(&arn) {
            None => Ok(Deleted::Absent),
            Some((_, owner)) if owner.cluster != release.owner.cluster => Ok(Deleted::Kept {
                why: format!("the OIDC provider belongs to {owner}"),
            }),
            Some(_) if release.still_used => Ok(Deleted::Kept {
                why: "another FederatedTrust still uses the OIDC provider".to_owned(),
            }),
            Some(_) => {
                state.providers.remove(&arn);
                Ok(Deleted::Deleted)
            }
        }
    }
}

fn role_arn(name: &str, path: &str) -> String {
    format!("arn:aws:iam::123456789012:role{path}{name}")
}

#[async_trait]
impl Roles for FakeCloud {
    async fn ensure_role(&self, intent: &RoleIntent) -> Result<Ensured<RoleState>, CloudError> {
        let existing = self.lock().roles.get(&intent.name).cloned();
        if let Some(existing) = &existing
            && existing.owner != intent.owner
        {
            self.enter(Cloud::Aws, "ensure_role", Access::Read)?;
            return Err(CloudError::not_owned(
                Cloud::Aws,
                "ensure_role",
                &format!("IAM role {}", intent.name),
                &existing.owner.to_string(),
            ));
        }
        let before = existing.map(|e| &e == intent);
        self.enter(Cloud::Aws, "ensure_role", access(before))?;
        self.lock()
            .roles
            .insert(intent.name.clone(), intent.clone());
        Ok(change(
            RoleState {
                arn: role_arn(&intent.name, &intent.path),
            },
            before,
        ))
    }

    async fn delete_role(&self, name: &str, owner: &Owner) -> Result<Deleted, CloudError> {
        self.enter(Cloud::Aws, "delete_role", Access::Write)?;
        let mut state = self.lock();
        match state.roles.get(name) {
            None => Ok(Deleted::Absent),
            Some(role) if &role.owner != owner => Ok(Deleted::Kept {
                why: format!("IAM role {name} belongs to {}", role.owner),
            }),
            Some(_) => {
                state.roles.remove(name);
                Ok(Deleted::Deleted)
            }
        }
    }

    async fn ensure_trust_statement(
        &self,
        intent: &TrustStatementIntent,
    ) -> Result<Ensured<RoleState>, CloudError> {
        let before = self
            .lock()
            .statements
            .get(&intent.role_arn)
            .and_then(|s| s.get(&intent.sid))
            .map(|g| g == &intent.grant);
        self.enter(Cloud::Aws, "ensure_trust_statement", access(before))?;
        self.lock()
            .statements
            .entry(intent.role_arn.clone())
            .or_default()
            .insert(intent.sid.clone(), intent.grant.clone());
        Ok(change(
            RoleState {
                arn: intent.role_arn.clone(),
            },
            before,
        ))
    }

    async fn remove_trust_statement(
        &self,
        role_arn: &str,
        sid: &str,
    ) -> Result<Deleted, CloudError> {
        self.enter(Cloud::Aws, "remove_trust_statement", Access::Write)?;
        let removed = self
            .lock()
            .statements
            .get_mut(role_arn)
            .and_then(|s| s.remove(sid));
        Ok(if removed.is_some() {
            Deleted::Deleted
        } else {
            Deleted::Absent
        })
    }
}

#[async_trait]
impl WorkloadIdentityPools for FakeCloud {
    async fn ensure_workload_identity_provider(
        &self,
        intent: &WorkloadIdentityIntent,
    ) -> Result<Ensured<WorkloadIdentityState>, CloudError> {
        let key = (
            intent.project_number.clone(),
            intent.pool_id.clone(),
            intent.provider_id.clone(),
        );
        let before = self.lock().pools.get(&key).map(|p| p == intent);
        self.enter(
            Cloud::Gcp,
            "ensure_workload_identity_provider",
            access(before),
        )?;
        self.lock().pools.insert(key, intent.clone());
        let provider_name = format!(
            "projects/{}/locations/global/workloadIdentityPools/{}/providers/{}",
            intent.project_number, intent.pool_id, intent.provider_id
        );
        Ok(change(
            WorkloadIdentityState {
                audience: format!("//iam.googleapis.com/{provider_name}"),
                provider_name,
            },
            before,
        ))
    }

    async fn delete_workload_identity_provider(
        &self,
        target: &WorkloadIdentityRef,
    ) -> Result<Deleted, CloudError> {
        self.enter(
            Cloud::Gcp,
            "delete_workload_identity_provider",
            Access::Write,
        )?;
        let key = (
            target.project_number.clone(),
            target.pool_id.clone(),
            target.provider_id.clone(),
        );
        Ok(match self.lock().pools.remove(&key) {
            Some(_) => Deleted::Deleted,
            None => Deleted::Absent,
        })
    }
}

#[async_trait]
impl ServiceAccountBindings for FakeCloud {
    async fn ensure_workload_identity_users(
        &self,
        intent: &BindingIntent,
    ) -> Result<Ensured<()>, CloudError> {
        let current = self.members(&intent.service_account);
        let mut wanted = current.clone();
        wanted.extend(intent.grant.iter().cloned());
        for member in &intent.revoke {
            wanted.remove(member);
        }
        let before = Some(wanted == current);
        self.enter(Cloud::Gcp, "ensure_workload_identity_users", access(before))?;
        self.lock()
            .bindings
            .insert(intent.service_account.clone(), wanted);
        Ok(change((), before))
    }
}

#[async_trait]
impl FederatedCredentials for FakeCloud {
    async fn ensure_federated_credential(
        &self,
        intent: &FederatedCredentialIntent,
    ) -> Result<Ensured<FederatedCredentialState>, CloudError> {
        let key = (intent.identity.to_ascii_lowercase(), intent.name.clone());
        let before = self.lock().credentials.get(&key).map(|c| c == intent);
        if before.is_none() && self.credentials(&intent.identity).len() >= 20 {
            self.enter(Cloud::Azure, "ensure_federated_credential", Access::Write)?;
            return Err(CloudError::new(
                ErrorKind::LimitExceeded,
                Cloud::Azure,
                "ensure_federated_credential",
                "the identity already has 20 federated identity credentials",
            )
            .with_code(super::error::FEDERATED_CREDENTIAL_LIMIT));
        }
        self.enter(Cloud::Azure, "ensure_federated_credential", access(before))?;
        self.lock().credentials.insert(key, intent.clone());
        Ok(change(
            FederatedCredentialState {
                id: format!(
                    "{}/federatedIdentityCredentials/{}",
                    intent.identity, intent.name
                ),
            },
            before,
        ))
    }

    async fn delete_federated_credential(
        &self,
        identity: &str,
        name: &str,
    ) -> Result<Deleted, CloudError> {
        self.enter(Cloud::Azure, "delete_federated_credential", Access::Write)?;
        let key = (identity.to_ascii_lowercase(), name.to_owned());
        Ok(match self.lock().credentials.remove(&key) {
            Some(_) => Deleted::Deleted,
            None => Deleted::Absent,
        })
    }

    async fn identity_client_id(&self, identity: &str) -> Result<String, CloudError> {
        self.enter(Cloud::Azure, "identity_client_id", Access::Read)?;
        self.lock()
            .client_ids
            .get(&identity.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| {
                CloudError::new(
                    ErrorKind::NotFound,
                    Cloud::Azure,
                    "identity_client_id",
                    format!("identity {identity} not found"),
                )
            })
    }
}

#[async_trait]
impl super::store::IssuerStores for FakeCloud {
    async fn read(
        &self,
        bucket: &super::store::Bucket,
        key: &str,
    ) -> Result<Option<Vec<u8>>, CloudError> {
        self.enter(bucket.cloud(), "read", Access::Read)?;
        Ok(self.object(&bucket.describe(), key).map(|(body, _)| body))
    }

    async fn write(
        &self,
        bucket: &super::store::Bucket,
        object: &super::store::StoredObject<'_>,
    ) -> Result<(), CloudError> {
        self.enter(bucket.cloud(), "write", Access::Write)?;
        self.lock().objects.insert(
            (bucket.describe(), object.key.to_owned()),
            (object.body.to_vec(), object.content_type.to_owned()),
        );
        Ok(())
    }

    fn public_base(&self, bucket: &super::store::Bucket) -> String {
        format!(
            "https://public.example/{}",
            bucket.describe().replace("://", "/")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, subjects: &[&str]) -> RoleIntent {
        let mut intent = placeholder_role(name);
        intent.owner = Owner::policy("prod", "ns", "p");
        intent.grant.subjects = subjects.iter().map(|s| s.to_string()).collect();
        intent
    }

    #[tokio::test]
    async fn ensures_report_created_unchanged_and_updated_and_count_writes() {
        let fake = FakeCloud::default();
        let first = fake.ensure_role(&role("r", &["a"])).await.unwrap();
        assert_eq!(first.change, Change::Created);
        let again = fake.ensure_role(&role("r", &["a"])).await.unwrap();
        assert_eq!(again.change, Change::Unchanged);
        let changed = fake.ensure_role(&role("r", &["a", "b"])).await.unwrap();
        assert_eq!(changed.change, Change::Updated);
        assert_eq!(fake.calls.writes(Cloud::Aws), 2);
    }

    #[tokio::test]
    async fn a_foreign_role_conflicts_and_failures_can_be_injected() {
        let fake = FakeCloud::default();
        fake.foreign_role("theirs", Owner::policy("staging", "ns", "p"));
        let error = fake.ensure_role(&role("theirs", &["a"])).await.unwrap_err();
        assert_eq!(error.reason(), passport_crds::conditions::Reason::NotOwned);
        fake.fail_next("ensure_role", 1, ErrorKind::Throttled);
        let error = fake.ensure_role(&role("mine", &["a"])).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Throttled);
        assert!(fake.ensure_role(&role("mine", &["a"])).await.is_ok());
    }

    #[tokio::test]
    async fn bindings_touch_only_the_named_members() {
        let fake = FakeCloud::default();
        let sa = "app@p.iam.gserviceaccount.com";
        let grant = |grant: &[&str], revoke: &[&str]| BindingIntent {
            service_account: sa.to_owned(),
            grant: grant.iter().map(|s| s.to_string()).collect(),
            revoke: revoke.iter().map(|s| s.to_string()).collect(),
        };
        fake.ensure_workload_identity_users(&grant(&["x", "y"], &[]))
            .await
            .unwrap();
        let again = fake
            .ensure_workload_identity_users(&grant(&["x"], &["y"]))
            .await
            .unwrap();
        assert_eq!(again.change, Change::Updated);
        assert_eq!(fake.members(sa), BTreeSet::from(["x".to_owned()]));
    }

    #[tokio::test]
    async fn the_twenty_first_credential_hits_the_limit() {
        let fake = FakeCloud::default();
        let id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i";
        for n in 0..21 {
            let result = fake
                .ensure_federated_credential(&FederatedCredentialIntent {
                    identity: id.to_owned(),
                    name: format!("fic-{n}"),
                    issuer: "https://issuer".to_owned(),
                    subject: format!("system:serviceaccount:ns:sa{n}"),
                    audience: "api://AzureADTokenExchange".to_owned(),
                })
                .await;
            assert_eq!(result.is_ok(), n < 20, "credential {n}");
        }
        assert_eq!(fake.credentials(id).len(), 20);
    }
}
