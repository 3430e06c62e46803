//! `Bindings`: everything `mutate` needs besides the pod, looked up by the caller (from its
//! reflector stores, with a direct read on a miss) before the call, so mutation itself is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use passport_crds::{AccessPolicy, FederatedTrust};

use crate::Config;

/// The plain data one pod's mutation is decided from.
#[derive(Clone, Debug)]
pub struct Bindings {
    /// The pod's namespace.
    pub namespace: String,
    /// The AccessPolicies of the namespace, each with its trust. Policies that do not name the
    /// pod's service account may be included: `mutate` filters them out itself (so a caller
    /// can pass the whole namespace's list from its index).
    pub policies: Vec<PolicyBinding>,
    /// Annotations of the pod's service account (the EKS and Azure compatibility annotations).
    /// Empty when the service account is not known.
    pub service_account_annotations: BTreeMap<String, String>,
    /// Keys of the ConfigMaps and Secrets that the pod's containers reference in `envFrom`, so
    /// injected env never shadows a value a container already gets from them. A reference
    /// missing here is unknown: injection goes ahead and the trace says so.
    pub env_sources: EnvSources,
    /// The admission time, for schedule conditions.
    pub now: jiff::Timestamp,
    /// Endpoints and compatibility defaults.
    pub config: Arc<Config>,
}

impl Bindings {
    /// Bindings with no policy, no annotations and no known env sources.
    pub fn new(namespace: impl Into<String>, now: jiff::Timestamp, config: Arc<Config>) -> Self {
        Self {
            namespace: namespace.into(),
            policies: Vec::new(),
            service_account_annotations: BTreeMap::new(),
            env_sources: EnvSources::default(),
            now,
            config,
        }
    }
}

/// One AccessPolicy and what its trust says about the namespace. Shared (`Arc`) with the
/// caller's stores: a pod's bindings are built on every admission, and copying the policies
/// and trusts was most of an admission's cost.
#[derive(Clone, Debug)]
pub struct PolicyBinding {
    pub policy: Arc<AccessPolicy>,
    /// The FederatedTrust named by `spec.trustRef`; None when it does not exist.
    pub trust: Option<Arc<FederatedTrust>>,
    /// Whether the trust's `namespaceSelector` selects the pod's namespace (the caller holds the
    /// Namespace's labels; absent selector = no namespace, `{}` = every namespace).
    pub trust_admits_namespace: bool,
}

/// Known keys of ConfigMaps and Secrets in the pod's namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSources {
    pub config_maps: BTreeMap<String, BTreeSet<String>>,
    pub secrets: BTreeMap<String, BTreeSet<String>>,
}
