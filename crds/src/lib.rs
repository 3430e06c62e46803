//! Passport's API: the `FederatedTrust` and `AccessPolicy` custom resources, their typed
//! conditions, the label/annotation keys and the cloud naming rules shared by the controllers
//! and the webhook. No IO here.

pub mod access_policy;
pub mod conditions;
pub mod crdgen;
pub mod federated_trust;
pub mod keys;
pub mod matching;
pub mod naming;
pub mod reference;

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
    /// The cloud whose block is set, when exactly one of the four is (what the CRDs' CEL rules
    /// guarantee for stored objects).
    pub fn only_one(aws: bool, gcp: bool, azure: bool, oidc: bool) -> Option<Self> {
        match (aws, gcp, azure, oidc) {
            (true, false, false, false) => Some(Self::Aws),
            (false, true, false, false) => Some(Self::Gcp),
            (false, false, true, false) => Some(Self::Azure),
            (false, false, false, true) => Some(Self::Oidc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
            Self::Oidc => "oidc",
        }
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Cloud;

    #[test]
    fn a_cloud_only_when_exactly_one_block_is_set() {
        assert_eq!(Cloud::only_one(true, false, false, false), Some(Cloud::Aws));
        assert_eq!(
            Cloud::only_one(false, false, false, true),
            Some(Cloud::Oidc)
        );
        assert_eq!(Cloud::only_one(false, false, false, false), None);
        assert_eq!(Cloud::only_one(true, true, false, false), None);
    }
}
