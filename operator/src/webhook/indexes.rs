//! The webhook's own indexes of watched objects, shaped for its lookups (kube-runtime's
//! reflector store keeps every object whole under one key and answers only by that key):
//!
//! - [`ServiceAccounts`]: every service account of the cluster, kept small because there are so
//!   many. The webhook reads only the EKS and Azure workload identity annotations, which few
//!   service accounts carry. Those few are kept with their annotations; every other one as a
//!   64-bit hash of its namespace and name (about 16 bytes), only so that the webhook knows it
//!   has no annotations without asking the API server. An account the index does not know (one
//!   created a moment ago, with its pod) is read from the API server once. The hash is keyed per
//!   index (`RandomState`), so no one can craft a name that collides with another on purpose; a
//!   chance collision could only make the webhook miss the annotations of an account it has not
//!   seen yet, never give a pod another account's.
//! - [`Policies`]: the AccessPolicies by namespace, so that a pod's lookup reads its own
//!   namespace's policies, not every policy of the cluster.
//!
//! Both are filled by the same writer, which buffers a relist until it is complete (as the
//! reflector does), so that objects deleted while the watch was down disappear.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::RandomState},
    hash::BuildHasher as _,
    sync::{Arc, RwLock, RwLockReadGuard},
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{ResourceExt as _, api::PartialObjectMeta, runtime::watcher};
use passport_crds::AccessPolicy;
use tokio::sync::watch;

/// An index of one kind of watched object.
pub trait Index: Default + Send + Sync + 'static {
    type Object: Send + 'static;
    fn apply(&mut self, object: Self::Object);
    fn delete(&mut self, object: Self::Object);
}

/// An index, shared by the watcher that fills it and the request path that reads it.
pub struct Shared<I> {
    index: Arc<RwLock<I>>,
    ready: watch::Receiver<bool>,
}

impl<I> Clone for Shared<I> {
    fn clone(&self) -> Self {
        Self {
            index: self.index.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<I: Index> Shared<I> {
    /// The index, and the future that keeps it current from `events` (run it for as long as
    /// the webhook serves).
    pub fn start<S>(events: S) -> (Self, impl std::future::Future<Output = ()> + Send + 'static)
    where
        S: Stream<Item = watcher::Result<watcher::Event<I::Object>>> + Send + 'static,
    {
        let (shared, mut writer) = Self::new();
        let drive = async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => writer.apply(event),
                    // The watcher retries with its backoff; the index stays as it was.
                    Err(error) => tracing::debug!(%error, "watching for the webhook's index"),
                }
            }
        };
        (shared, drive)
    }

    fn new() -> (Self, Writer<I>) {
        let (ready_tx, ready) = watch::channel(false);
        let shared = Self {
            index: Arc::default(),
            ready,
        };
        let writer = Writer {
            index: shared.index.clone(),
            relist: None,
            ready: ready_tx,
        };
        (shared, writer)
    }

    /// An index of `objects`, ready, that nothing fills (for tests of the handler).
    #[cfg(test)]
    pub fn of(objects: impl IntoIterator<Item = I::Object>) -> Self {
        let (shared, mut writer) = Self::new();
        writer.apply(watcher::Event::Init);
        for object in objects {
            writer.apply(watcher::Event::InitApply(object));
        }
        writer.apply(watcher::Event::InitDone);
        shared
    }

    /// Whether the index has had its first full list.
    pub async fn ready(&self) -> bool {
        let mut ready = self.ready.clone();
        ready.wait_for(|ready| *ready).await.is_ok()
    }

    fn read(&self) -> RwLockReadGuard<'_, I> {
        // A poisoned lock only means a writer panicked mid-update; reading on is safe.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies watcher events to an index.
struct Writer<I> {
    index: Arc<RwLock<I>>,
    relist: Option<I>,
    ready: watch::Sender<bool>,
}

impl<I: Index> Writer<I> {
    fn apply(&mut self, event: watcher::Event<I::Object>) {
        // A poisoned lock only means a writer panicked mid-update; the next relist repairs it.
        let index = || self.index.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => self.relist = Some(I::default()),
            watcher::Event::InitApply(object) => {
                self.relist.get_or_insert_with(I::default).apply(object);
            }
            watcher::Event::InitDone => {
                *index() = self.relist.take().unwrap_or_default();
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(object) => index().apply(object),
            watcher::Event::Delete(object) => index().delete(object),
        }
    }
}

/// Whether an annotation key is one the webhook reads on service accounts.
pub fn is_compat_annotation(key: &str) -> bool {
    key.starts_with("eks.amazonaws.com/") || key.starts_with("azure.workload.identity/")
}

/// What the index knows of one service account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// It carries compatibility annotations: these.
    Annotated(BTreeMap<String, String>),
    /// It exists and carries none.
    Plain,
    /// The index has not seen it.
    Unknown,
}

/// The service accounts (module docs).
#[derive(Default)]
pub struct ServiceAccountIndex {
    /// namespace → name → the compatibility annotations (never empty).
    annotated: HashMap<String, HashMap<String, BTreeMap<String, String>>>,
    /// The hashes of every other service account.
    plain: HashSet<u64>,
    hasher: RandomState,
}

pub type ServiceAccounts = Shared<ServiceAccountIndex>;

impl ServiceAccountIndex {
    fn hash(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let hash = self.hash(namespace, name);
        self.plain.remove(&hash);
        if let Some(names) = self.annotated.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.annotated.remove(namespace);
            }
        }
    }
}

impl Index for ServiceAccountIndex {
    type Object = PartialObjectMeta<ServiceAccount>;

    fn apply(&mut self, sa: Self::Object) {
        let meta = sa.metadata;
        let (Some(namespace), Some(name)) = (meta.namespace, meta.name) else {
            return;
        };
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.retain(|key, _| is_compat_annotation(key));
        self.remove(&namespace, &name);
        if annotations.is_empty() {
            let hash = self.hash(&namespace, &name);
            self.plain.insert(hash);
        } else {
            self.annotated
                .entry(namespace)
                .or_default()
                .insert(name, annotations);
        }
    }

    fn delete(&mut self, sa: Self::Object) {
        if let (Some(namespace), Some(name)) = (&sa.metadata.namespace, &sa.metadata.name) {
            self.remove(namespace, name);
        }
    }
}

impl Shared<ServiceAccountIndex> {
    /// What the index knows of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Known {
        let index = self.read();
        if let Some(annotations) = index.annotated.get(namespace).and_then(|n| n.get(name)) {
            return Known::Annotated(annotations.clone());
        }
        if index.plain.contains(&index.hash(namespace, name)) {
            Known::Plain
        } else {
            Known::Unknown
        }
    }

    /// How many service accounts the index holds: `(annotated, plain)`.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let index = self.read();
        (
            index.annotated.values().map(HashMap::len).sum(),
            index.plain.len(),
        )
    }
}

/// The AccessPolicies by namespace, without their `managedFields`.
#[derive(Default)]
pub struct PolicyIndex {
    by_namespace: HashMap<String, Vec<Arc<AccessPolicy>>>,
}

pub type Policies = Shared<PolicyIndex>;

impl Index for PolicyIndex {
    type Object = AccessPolicy;

    fn apply(&mut self, mut policy: AccessPolicy) {
        let Some(namespace) = policy.metadata.namespace.clone() else {
            return;
        };
        policy.managed_fields_mut().clear();
        let policies = self.by_namespace.entry(namespace).or_default();
        match policies
            .iter_mut()
            .find(|p| p.metadata.name == policy.metadata.name)
        {
            Some(stored) => *stored = Arc::new(policy),
            None => policies.push(Arc::new(policy)),
        }
    }

    fn delete(&mut self, policy: AccessPolicy) {
        let Some(namespace) = policy.metadata.namespace.as_deref() else {
            return;
        };
        if let Some(policies) = self.by_namespace.get_mut(namespace) {
            policies.retain(|p| p.metadata.name != policy.metadata.name);
            if policies.is_empty() {
                self.by_namespace.remove(namespace);
            }
        }
    }
}

impl Shared<PolicyIndex> {
    /// The policies of `namespace` (shared, not copied).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<AccessPolicy>> {
        self.read()
            .by_namespace
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watcher::Event;

    fn sa(
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> PartialObjectMeta<ServiceAccount> {
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        }))
        .unwrap()
    }

    const ROLE: (&str, &str) = ("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/r");

    #[tokio::test]
    async fn keeps_annotations_only_of_annotated_accounts_and_knows_the_others() {
        let (index, mut writer) = ServiceAccounts::new();
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(sa(
            "shop",
            "api",
            &[
                ROLE,
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ],
        )));
        writer.apply(Event::InitApply(sa("shop", "web", &[("team", "a")])));
        assert_eq!(
            index.get("shop", "api"),
            Known::Unknown,
            "not before the list is done"
        );
        writer.apply(Event::InitDone);
        assert!(index.ready().await);

        let only_role: BTreeMap<String, String> = [(ROLE.0.to_owned(), ROLE.1.to_owned())].into();
        assert_eq!(
            index.get("shop", "api"),
            Known::Annotated(only_role.clone())
        );
        assert_eq!(index.get("shop", "web"), Known::Plain);
        assert_eq!(index.get("shop", "other"), Known::Unknown);
        assert_eq!(index.get("other", "web"), Known::Unknown);
        assert_eq!(index.len(), (1, 1));

        // Annotations come and go.
        writer.apply(Event::Apply(sa("shop", "api", &[])));
        assert_eq!(index.get("shop", "api"), Known::Plain);
        writer.apply(Event::Apply(sa("shop", "web", &[ROLE])));
        assert_eq!(index.get("shop", "web"), Known::Annotated(only_role));
        assert_eq!(index.len(), (1, 1));

        writer.apply(Event::Delete(sa("shop", "web", &[ROLE])));
        writer.apply(Event::Delete(sa("shop", "api", &[])));
        assert_eq!(index.get("shop", "web"), Known::Unknown);
        assert_eq!(index.get("shop", "api"), Known::Unknown);
        assert_eq!(index.len(), (0, 0));
    }

    #[tokio::test]
    async fn a_relist_replaces_the_index_only_when_complete() {
        let (index, mut writer) = ServiceAccounts::new();
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(sa("shop", "gone", &[ROLE])));
        writer.apply(Event::InitApply(sa("shop", "plain-gone", &[])));
        writer.apply(Event::InitDone);
        assert_eq!(index.len(), (1, 1));

        // The watch restarts; both were deleted meanwhile.
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(sa("shop", "new", &[])));
        assert_eq!(
            index.get("shop", "plain-gone"),
            Known::Plain,
            "the old list serves until done"
        );
        assert_eq!(index.get("shop", "new"), Known::Unknown);
        writer.apply(Event::InitDone);
        assert_eq!(index.get("shop", "gone"), Known::Unknown);
        assert_eq!(index.get("shop", "plain-gone"), Known::Unknown);
        assert_eq!(index.get("shop", "new"), Known::Plain);
        assert_eq!(index.len(), (0, 1));
    }

    fn policy(namespace: &str, name: &str, service_account: &str) -> AccessPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "passport.dev/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": name, "namespace": namespace,
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"trustRef": {"name": "aws"}, "serviceAccounts": [service_account], "aws": {}},
        }))
        .unwrap()
    }

    fn names(policies: &[Arc<AccessPolicy>]) -> Vec<(String, Vec<String>)> {
        policies
            .iter()
            .map(|p| (p.name_any(), p.spec.service_accounts.clone()))
            .collect()
    }

    #[tokio::test]
    async fn policies_are_found_by_namespace_and_kept_current() {
        let (index, mut writer) = Policies::new();
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(policy("shop", "a", "api")));
        writer.apply(Event::InitApply(policy("shop", "b", "web")));
        writer.apply(Event::InitApply(policy("bank", "a", "api")));
        writer.apply(Event::InitDone);
        assert!(index.ready().await);
        let shop = index.in_namespace("shop");
        assert_eq!(
            names(&shop),
            [
                ("a".to_owned(), vec!["api".to_owned()]),
                ("b".to_owned(), vec!["web".to_owned()])
            ]
        );
        assert!(
            shop.iter().all(|p| p.managed_fields().is_empty()),
            "managedFields are dropped"
        );
        assert_eq!(names(&index.in_namespace("bank")).len(), 1);
        assert!(index.in_namespace("other").is_empty());

        // An edit replaces the policy; a delete removes it and only it.
        writer.apply(Event::Apply(policy("shop", "a", "worker")));
        writer.apply(Event::Delete(policy("shop", "b", "web")));
        assert_eq!(
            names(&index.in_namespace("shop")),
            [("a".to_owned(), vec!["worker".to_owned()])]
        );
        assert_eq!(names(&index.in_namespace("bank")).len(), 1);

        // A relist without the namespace's policies empties it.
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(policy("bank", "a", "api")));
        writer.apply(Event::InitDone);
        assert!(index.in_namespace("shop").is_empty());
        assert_eq!(names(&index.in_namespace("bank")).len(), 1);
    }
}
