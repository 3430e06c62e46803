//! What the webhook looks up for a pod: AccessPolicies, FederatedTrusts, Namespaces and
//! ServiceAccounts from memory: reflector stores of the trusts and of the namespaces
//! (metadata-only, stripped to labels and annotations), and the webhook's own indexes
//! (`indexes`) of the policies by namespace and of the service accounts, compact. When the store knows no policy for the pod's service account,
//! one direct API read, bounded by a timeout, covers a policy applied in the same `kubectl
//! apply` as the pod (and likewise for a service account the index has not seen yet). The
//! request path makes no other IO.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ListParams, ObjectMeta, PartialObjectMeta},
    runtime::{
        WatchStreamExt as _,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use passport_crds::{AccessPolicy, FederatedTrust, matching};
use passport_webhook::{Bindings, Config, PolicyBinding};

use super::indexes::{Known, Policies, ServiceAccounts, is_compat_annotation};

/// The stores, and the client for misses.
#[derive(Clone)]
pub struct Lookups {
    client: Client,
    policies: Policies,
    trusts: Store<FederatedTrust>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    service_accounts: ServiceAccounts,
    config: Arc<Config>,
    miss_timeout: Duration,
}

/// Keeps only what the webhook reads of an object's metadata.
fn slim<K>(object: &mut PartialObjectMeta<K>) {
    let meta = &mut object.metadata;
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        labels: meta.labels.take(),
        annotations: meta.annotations.take(),
        resource_version: meta.resource_version.take(),
        uid: meta.uid.take(),
        ..ObjectMeta::default()
    };
}

impl Lookups {
    /// The stores and the future that keeps them filled (run it for as long as the webhook
    /// serves).
    pub fn start(
        client: Client,
        config: Arc<Config>,
        miss_timeout: Duration,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (trusts, trust_writer) = reflector::store();
        let (namespaces, namespace_writer) = reflector::store();
        let cfg = watcher::Config::default;
        let (policies, drive_policies) = Policies::start(
            watcher(Api::<AccessPolicy>::all(client.clone()), cfg()).default_backoff(),
        );
        let drive_trusts = watcher(Api::<FederatedTrust>::all(client.clone()), cfg())
            .default_backoff()
            .modify(|t| t.managed_fields_mut().clear())
            .reflect(trust_writer)
            .for_each(|_| async {});
        let drive_namespaces = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            cfg(),
        )
        .default_backoff()
        .modify(slim)
        .reflect(namespace_writer)
        .for_each(|_| async {});
        let (service_accounts, drive_sas) = ServiceAccounts::start(
            watcher(
                Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
                cfg(),
            )
            .default_backoff(),
        );
        let lookups = Self {
            client,
            policies,
            trusts,
            namespaces,
            service_accounts,
            config,
            miss_timeout,
        };
        let drive = async move {
            futures::join!(drive_policies, drive_trusts, drive_namespaces, drive_sas);
        };
        (lookups, drive)
    }

    /// Stores holding `policies` and `trusts` (and no namespace or service account), for tests
    /// of the handler without an API server.
    #[cfg(test)]
    pub fn for_tests(
        client: Client,
        config: Arc<Config>,
        miss_timeout: Duration,
        policies: Vec<AccessPolicy>,
        trusts: Vec<FederatedTrust>,
    ) -> Self {
        let (trust_store, mut trust_writer) = reflector::store();
        for trust in trusts {
            trust_writer.apply_watcher_event(&watcher::Event::Apply(trust));
        }
        Self {
            client,
            policies: Policies::of(policies),
            trusts: trust_store,
            namespaces: reflector::store().0,
            service_accounts: ServiceAccounts::of([]),
            config,
            miss_timeout,
        }
    }

    /// Whether every store has its first full list.
    pub async fn ready(&self) -> bool {
        self.policies.ready().await
            && self.trusts.wait_until_ready().await.is_ok()
            && self.namespaces.wait_until_ready().await.is_ok()
            && self.service_accounts.ready().await
    }

    /// No bindings, for a request that is not a CREATE (nothing is decided for it).
    pub fn no_bindings(&self, now: jiff::Timestamp) -> Bindings {
        Bindings::new("", now, self.config.clone())
    }

    /// The bindings for a pod of `service_account` in `namespace`.
    pub async fn bindings(
        &self,
        namespace: &str,
        service_account: &str,
        now: jiff::Timestamp,
    ) -> Bindings {
        let mut policies = self.policies.in_namespace(namespace);
        let names_sa =
            |p: &Arc<AccessPolicy>| p.spec.service_accounts.iter().any(|s| s == service_account);
        if !policies.iter().any(names_sa) {
            // A miss: the policy may have been created a moment ago, with the pod.
            let api: Api<AccessPolicy> = Api::namespaced(self.client.clone(), namespace);
            match tokio::time::timeout(self.miss_timeout, api.list(&ListParams::default())).await {
                Ok(Ok(list)) => policies = list.items.into_iter().map(Arc::new).collect(),
                Ok(Err(error)) => {
                    tracing::warn!(%error, namespace, "reading AccessPolicies after a store miss")
                }
                Err(_) => tracing::warn!(
                    namespace,
                    "reading AccessPolicies after a store miss timed out"
                ),
            }
        }
        let ns = self.namespace(namespace).await;
        let no_labels = BTreeMap::new();
        let labels = ns.as_deref().map_or(&no_labels, |ns| ns.labels());
        let mut bindings = Bindings::new(namespace, now, self.config.clone());
        // Only the policies that name the pod's service account: `mutate` reads no other, so
        // the others' trusts are not looked up.
        for policy in policies
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && names_sa(p))
        {
            let trust = self.trust(&policy.spec.trust_ref.name).await;
            let trust_admits_namespace = trust.as_ref().is_some_and(|t| {
                matching::optional_selector_matches(t.spec.namespace_selector.as_ref(), labels)
            });
            bindings.policies.push(PolicyBinding {
                policy,
                trust,
                trust_admits_namespace,
            });
        }
        bindings.service_account_annotations = self
            .service_account_annotations(namespace, service_account)
            .await;
        bindings
    }

    async fn trust(&self, name: &str) -> Option<Arc<FederatedTrust>> {
        if let Some(trust) = self.trusts.get(&ObjectRef::new(name)) {
            return Some(trust);
        }
        let api: Api<FederatedTrust> = Api::all(self.client.clone());
        match tokio::time::timeout(self.miss_timeout, api.get_opt(name)).await {
            Ok(Ok(trust)) => trust.map(Arc::new),
            _ => None,
        }
    }

    /// The namespace's metadata (its labels), shared with the store; None when it is not known.
    async fn namespace(&self, namespace: &str) -> Option<Arc<PartialObjectMeta<Namespace>>> {
        if let Some(ns) = self.namespaces.get(&ObjectRef::new(namespace)) {
            return Some(ns);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        match tokio::time::timeout(self.miss_timeout, api.get_metadata_opt(namespace)).await {
            Ok(Ok(Some(ns))) => Some(Arc::new(ns)),
            _ => None,
        }
    }

    async fn service_account_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> BTreeMap<String, String> {
        match self.service_accounts.get(namespace, name) {
            Known::Annotated(annotations) => return annotations,
            Known::Plain => return BTreeMap::new(),
            Known::Unknown => {}
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(self.miss_timeout, api.get_metadata_opt(name)).await {
            Ok(Ok(Some(sa))) => {
                let mut annotations = sa.metadata.annotations.unwrap_or_default();
                annotations.retain(|key, _| is_compat_annotation(key));
                annotations
            }
            _ => BTreeMap::new(),
        }
    }
}
