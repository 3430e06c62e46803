//! Passport's API: the `FederatedTrust` and `AccessPolicy` custom resources, their typed
//! conditions, the label/annotation keys and the cloud naming rules shared by the controllers
//! and the webhook. No IO here.

pub mod access_policy;
pub mod conditions;
pub mod crdgen;
pub mod federated_trust;
pub mod keys;
pub mod naming;

pub use access_policy::{AccessPolicy, AccessPolicySpec, AccessPolicyStatus};
pub use federated_trust::{FederatedTrust, FederatedTrustSpec, FederatedTrustStatus};

/// The clouds (and the generic OIDC relying party) Passport federates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    Oidc,
}

impl Cloud {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
            Self::Oidc => "oidc",
        }
    }
}
