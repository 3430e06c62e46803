//! Passport's hands in the clouds. Small async traits shaped by capability, over Passport's own
//! domain types; one module per cloud, and only that module knows its SDK. Every failure is a
//! [`CloudError`]; every call is counted in [`Calls`] and retried by [`retry::Caller`].
//!
//! The traits use `async_trait` so that the controllers can hold them as trait objects
//! (`Arc<dyn Roles>`), the real providers and the in-memory fakes in [`fake`] alike.

pub mod aws;
pub mod azure;
pub mod calls;
pub mod config;
pub mod error;
pub mod fake;
pub mod gcp;
mod permissions;
pub mod retry;
pub mod store;

use std::{collections::BTreeMap, fmt};

use async_trait::async_trait;
pub use passport_crds::Cloud;
use passport_crds::keys::owner;

pub use calls::{Access, Calls};
pub use config::CloudConfig;
pub use error::{CloudError, ErrorKind, RetryClass};

/// The kind of Passport resource that owns a cloud object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum OwnerKind {
    FederatedTrust,
    AccessPolicy,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FederatedTrust => "FederatedTrust",
            Self::AccessPolicy => "AccessPolicy",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "FederatedTrust" => Some(Self::FederatedTrust),
            "AccessPolicy" => Some(Self::AccessPolicy),
            _ => None,
        }
    }
}

/// Who owns a cloud object: written as tags (AWS), in the description (GCP) or in the name
/// (Azure) of everything Passport creates, so that two clusters sharing an account never fight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// `--cluster-name` of the operator that created the object.
    pub cluster: String,
    pub kind: OwnerKind,
    /// The namespace, for AccessPolicies.
    pub namespace: Option<String>,
    pub name: String,
}

impl Owner {
    pub fn trust(cluster: &str, name: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            kind: OwnerKind::FederatedTrust,
            namespace: None,
            name: name.to_owned(),
        }
    }

    pub fn policy(cluster: &str, namespace: &str, name: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            kind: OwnerKind::AccessPolicy,
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// The ownership tags: `passport.dev/cluster`, `kind`, `namespace` (policies) and `name`.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([
            (owner::CLUSTER.to_owned(), self.cluster.clone()),
            (owner::KIND.to_owned(), self.kind.as_str().to_owned()),
            (owner::NAME.to_owned(), self.name.clone()),
        ]);
        if let Some(namespace) = &self.namespace {
            tags.insert(owner::NAMESPACE.to_owned(), namespace.clone());
        }
        tags
    }

    /// The owner that `tags` name, when they carry Passport's ownership tags.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        Some(Self {
            cluster: tags.get(owner::CLUSTER)?.clone(),
            kind: OwnerKind::parse(tags.get(owner::KIND)?)?,
            namespace: tags.get(owner::NAMESPACE).cloned(),
            name: tags.get(owner::NAME)?.clone(),
        })
    }

    /// The owner as `key=value` pairs separated by spaces, for clouds that keep only a
    /// free-text description (GCP pools and providers).
    pub fn description(&self) -> String {
        self.tags()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The owner written by [`Owner::description`], wherever it appears in `text`.
    pub fn from_description(text: &str) -> Option<Self> {
        let tags = text
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| k.starts_with("passport.dev/"))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self::from_tags(&tags)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(
                f,
                "{} {}/{} of cluster {}",
                self.kind.as_str(),
                ns,
                self.name,
                self.cluster
            ),
            None => write!(
                f,
                "{} {} of cluster {}",
                self.kind.as_str(),
                self.name,
                self.cluster
            ),
        }
    }
}

/// What an ensure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The object did not exist and was created (or restored from soft delete).
    Created,
    /// The object existed and some of it was changed.
    Updated,
    /// The object already matched: no write call was made.
    Unchanged,
}

/// The result of an ensure: the observed state after it, and what it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensured<T> {
    pub state: T,
    pub change: Change,
    /// What was changed, in words, for the Event and the audit line (empty when unchanged).
    pub changes: Vec<String>,
}

impl<T> Ensured<T> {
    pub fn unchanged(state: T) -> Self {
        Self {
            state,
            change: Change::Unchanged,
            changes: Vec::new(),
        }
    }
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The object was deleted (or Passport's part of it removed).
    Deleted,
    /// There was nothing to delete.
    Absent,
    /// The object exists but is not Passport's to delete; it was left as it is.
    Kept { why: String },
}

// ---------------------------------------------------------------------------------------------
// AWS

/// The IAM OIDC provider for a trust's issuer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcProviderIntent {
    /// The account and partition (`aws`, `aws-cn`, `aws-us-gov`) the provider lives in.
    pub account_id: String,
    pub partition: String,
    /// The issuer URL (`https://...`), as in the tokens' `iss`.
    pub issuer: String,
    /// The audience (client ID) the provider must accept.
    pub audience: String,
    pub owner: Owner,
    /// Extra tags from the trust (`spec.aws.tags`).
    pub tags: BTreeMap<String, String>,
}

/// An IAM OIDC provider as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcProviderState {
    pub arn: String,
    /// Whether Passport (this cluster) created it, and so may delete it.
    pub created: bool,
    pub client_ids: Vec<String>,
}

/// Giving up a trust's use of an OIDC provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcProviderRelease {
    pub account_id: String,
    pub partition: String,
    pub issuer: String,
    pub owner: Owner,
    /// Whether another trust of this cluster still uses the provider (then it is kept).
    pub still_used: bool,
}

/// The grant a role's trust policy gives: tokens of `issuer` with `audience` and one of
/// `subjects` (`system:serviceaccount:<ns>:<sa>`) through the provider `provider_arn`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustGrant {
    pub provider_arn: String,
    pub issuer: String,
    pub audience: String,
    pub subjects: Vec<String>,
}

/// A role Passport creates and owns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleIntent {
    pub name: String,
    /// IAM path, e.g. `/passport/`.
    pub path: String,
    pub owner: Owner,
    pub grant: TrustGrant,
    pub managed_policy_arns: Vec<String>,
    /// An inline permissions policy document (JSON).
    pub inline_policy: Option<String>,
    pub max_session_duration: Option<i32>,
    pub permissions_boundary_arn: Option<String>,
    /// Extra tags from the trust.
    pub tags: BTreeMap<String, String>,
}

/// A role as observed after an ensure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleState {
    pub arn: String,
}

/// Passport's statement in the trust policy of a role it does not own (adoption by ARN).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustStatementIntent {
    pub role_arn: String,
    /// The statement's Sid; starts with `Passport`.
    pub sid: String,
    pub grant: TrustGrant,
}

/// IAM OIDC providers.
#[async_trait]
pub trait OidcProviders: Send + Sync {
    /// Creates the provider for the issuer, or adopts an existing one by adding the audience to
    /// its client IDs.
    async fn ensure_oidc_provider(
        &self,
        intent: &OidcProviderIntent,
    ) -> Result<Ensured<OidcProviderState>, CloudError>;

    /// Deletes the provider when this cluster created it and no other trust uses it.
    async fn delete_oidc_provider(
        &self,
        release: &OidcProviderRelease,
    ) -> Result<Deleted, CloudError>;
}

/// IAM roles.
#[async_trait]
pub trait Roles: Send + Sync {
    /// Creates or updates a role Passport owns: trust policy, permissions, session duration,
    /// boundary and tags. A role of that name that Passport does not own is a Conflict.
    async fn ensure_role(&self, intent: &RoleIntent) -> Result<Ensured<RoleState>, CloudError>;

    /// Deletes a role Passport owns (`owner`), with its policies.
    async fn delete_role(&self, name: &str, owner: &Owner) -> Result<Deleted, CloudError>;

    /// Writes Passport's statement into an adopted role's trust policy, keeping every other
    /// statement unchanged in meaning.
    async fn ensure_trust_statement(
        &self,
        intent: &TrustStatementIntent,
    ) -> Result<Ensured<RoleState>, CloudError>;

    /// Removes Passport's statement `sid` from an adopted role's trust policy.
    async fn remove_trust_statement(
        &self,
        role_arn: &str,
        sid: &str,
    ) -> Result<Deleted, CloudError>;
}

// ---------------------------------------------------------------------------------------------
// GCP

/// A workload identity pool and its OIDC provider.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityIntent {
    pub project_number: String,
    pub pool_id: String,
    pub provider_id: String,
    pub issuer: String,
    /// Audiences the provider accepts; empty means Google's default (the provider's own name).
    pub allowed_audiences: Vec<String>,
    pub attribute_mapping: BTreeMap<String, String>,
    pub attribute_condition: Option<String>,
    /// The issuer's JWKS uploaded inline (`jwks: FromCluster`); None lets Google fetch it.
    pub jwks_json: Option<String>,
    pub owner: Owner,
}

/// A provider as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentityState {
    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
    pub provider_name: String,
    /// `//iam.googleapis.com/<provider_name>`: the audience pods' tokens carry.
    pub audience: String,
}

/// Which pool and provider to delete, and whose they must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentityRef {
    pub project_number: String,
    pub pool_id: String,
    pub provider_id: String,
    pub owner: Owner,
}

/// Changes to the `roles/iam.workloadIdentityUser` members of one Google service account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingIntent {
    /// The service account's email.
    pub service_account: String,
    /// Members that must be present (`principal://...`).
    pub grant: Vec<String>,
    /// Members Passport granted earlier that must go; no other member is ever touched.
    pub revoke: Vec<String>,
}

/// Workload identity pools and providers.
#[async_trait]
pub trait WorkloadIdentityPools: Send + Sync {
    async fn ensure_workload_identity_provider(
        &self,
        intent: &WorkloadIdentityIntent,
    ) -> Result<Ensured<WorkloadIdentityState>, CloudError>;

    async fn delete_workload_identity_provider(
        &self,
        target: &WorkloadIdentityRef,
    ) -> Result<Deleted, CloudError>;
}

/// IAM bindings on Google service accounts.
#[async_trait]
pub trait ServiceAccountBindings: Send + Sync {
    /// Read-modify-write of the service account's IAM policy with its etag, retried on an
    /// etag conflict; touches only the members named in `intent`.
    async fn ensure_workload_identity_users(
        &self,
        intent: &BindingIntent,
    ) -> Result<Ensured<()>, CloudError>;
}

// ---------------------------------------------------------------------------------------------
// Azure

/// A federated identity credential on a user-assigned managed identity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredentialIntent {
    /// The identity's ARM resource ID.
    pub identity: String,
    /// The credential's name (`crds::naming::azure_fic_name`, which carries the owner).
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audience: String,
}

/// A credential as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedCredentialState {
    /// The credential's ARM resource ID.
    pub id: String,
}

/// Federated identity credentials on user-assigned managed identities.
#[async_trait]
pub trait FederatedCredentials: Send + Sync {
    async fn ensure_federated_credential(
        &self,
        intent: &FederatedCredentialIntent,
    ) -> Result<Ensured<FederatedCredentialState>, CloudError>;

    async fn delete_federated_credential(
        &self,
        identity: &str,
        name: &str,
    ) -> Result<Deleted, CloudError>;

    /// The identity's client ID (for `AZURE_CLIENT_ID` when a policy does not set it).
    async fn identity_client_id(&self, identity: &str) -> Result<String, CloudError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_survives_its_tags_and_its_description() {
        let owner = Owner::policy("prod", "payments", "s3-reader");
        assert_eq!(Owner::from_tags(&owner.tags()), Some(owner.clone()));
        let described = format!("managed by Passport: {}", owner.description());
        assert_eq!(Owner::from_description(&described), Some(owner.clone()));
        assert_eq!(
            owner.to_string(),
            "AccessPolicy payments/s3-reader of cluster prod"
        );
        let trust = Owner::trust("prod", "aws-prod");
        assert_eq!(Owner::from_tags(&trust.tags()), Some(trust));
    }

    #[test]
    fn tags_without_passports_keys_name_no_owner() {
        let tags = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        assert_eq!(Owner::from_tags(&tags), None);
        assert_eq!(Owner::from_description("created by hand"), None);
    }
}
