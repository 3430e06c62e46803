//! The webhook's index of the cluster's service accounts, kept small because it holds every one
//! of them: the webhook reads only the EKS and Azure workload identity annotations, which few
//! service accounts carry. Those few are kept with their annotations; every other one is kept
//! as a 64-bit hash of its namespace and name (about 16 bytes), only so that the webhook knows
//! it has no annotations without asking the API server. An account the index does not know
//! (one created a moment ago, with its pod) is read from the API server once.
//!
//! The hash is keyed per process (`RandomState`), so no one can craft a name that collides with
//! another on purpose; a chance collision could only make the webhook miss the annotations of an
//! account it has not seen yet, never give a pod another account's.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::RandomState},
    hash::BuildHasher as _,
    sync::{Arc, RwLock},
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{api::PartialObjectMeta, runtime::watcher};
use tokio::sync::watch;

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

#[derive(Default)]
struct Index {
    /// namespace → name → the compatibility annotations (never empty).
    annotated: HashMap<String, HashMap<String, BTreeMap<String, String>>>,
    /// The hashes of every other service account.
    plain: HashSet<u64>,
}

/// The index, shared by the watcher that fills it and the request path that reads it.
#[derive(Clone)]
pub struct ServiceAccounts {
    index: Arc<RwLock<Index>>,
    hasher: RandomState,
    ready: watch::Receiver<bool>,
}

impl ServiceAccounts {
    /// An empty index and the function that applies watcher events to it.
    fn new() -> (Self, Writer) {
        let (ready_tx, ready) = watch::channel(false);
        let index = Self {
            index: Arc::default(),
            hasher: RandomState::new(),
            ready,
        };
        let writer = Writer {
            index: index.clone(),
            relist: None,
            ready: ready_tx,
        };
        (index, writer)
    }

    /// The index, and the future that keeps it current from `events` (a metadata watch of
    /// every service account; run it for as long as the webhook serves).
    pub fn start<S>(events: S) -> (Self, impl std::future::Future<Output = ()> + Send + 'static)
    where
        S: Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<ServiceAccount>>>>
            + Send
            + 'static,
    {
        let (index, mut writer) = Self::new();
        let drive = async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => writer.apply(event),
                    // The watcher retries with its backoff; the index stays as it was.
                    Err(error) => tracing::debug!(%error, "watching service accounts"),
                }
            }
        };
        (index, drive)
    }

    /// Whether the index has had its first full list.
    pub async fn ready(&self) -> bool {
        let mut ready = self.ready.clone();
        ready.wait_for(|ready| *ready).await.is_ok()
    }

    fn hash(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    /// What the index knows of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Known {
        // A poisoned lock only means a writer panicked mid-update; reading on is safe.
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if let Some(annotations) = index.annotated.get(namespace).and_then(|n| n.get(name)) {
            return Known::Annotated(annotations.clone());
        }
        if index.plain.contains(&self.hash(namespace, name)) {
            Known::Plain
        } else {
            Known::Unknown
        }
    }

    /// How many service accounts the index holds: `(annotated, plain)`.
    pub fn len(&self) -> (usize, usize) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        (
            index.annotated.values().map(HashMap::len).sum(),
            index.plain.len(),
        )
    }
}

/// Applies watcher events, buffering a relist until it is complete (as kube-runtime's
/// reflector does), so that accounts deleted while the watch was down disappear.
struct Writer {
    index: ServiceAccounts,
    relist: Option<Index>,
    ready: watch::Sender<bool>,
}

impl Writer {
    fn apply(&mut self, event: watcher::Event<PartialObjectMeta<ServiceAccount>>) {
        match event {
            watcher::Event::Init => self.relist = Some(Index::default()),
            watcher::Event::InitApply(sa) => {
                let relist = self.relist.get_or_insert_with(Index::default);
                insert(relist, &self.index, sa);
            }
            watcher::Event::InitDone => {
                let relist = self.relist.take().unwrap_or_default();
                *self.index.index.write().unwrap_or_else(|e| e.into_inner()) = relist;
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(sa) => {
                let mut index = self.index.index.write().unwrap_or_else(|e| e.into_inner());
                insert(&mut index, &self.index, sa);
            }
            watcher::Event::Delete(sa) => {
                let (Some(namespace), Some(name)) = (sa.metadata.namespace, sa.metadata.name)
                else {
                    return;
                };
                let mut index = self.index.index.write().unwrap_or_else(|e| e.into_inner());
                remove(&mut index, &self.index, &namespace, &name);
            }
        }
    }
}

fn remove(index: &mut Index, hasher: &ServiceAccounts, namespace: &str, name: &str) {
    index.plain.remove(&hasher.hash(namespace, name));
    if let Some(names) = index.annotated.get_mut(namespace) {
        names.remove(name);
        if names.is_empty() {
            index.annotated.remove(namespace);
        }
    }
}

fn insert(index: &mut Index, hasher: &ServiceAccounts, sa: PartialObjectMeta<ServiceAccount>) {
    let meta = sa.metadata;
    let (Some(namespace), Some(name)) = (meta.namespace, meta.name) else {
        return;
    };
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.retain(|key, _| is_compat_annotation(key));
    remove(index, hasher, &namespace, &name);
    if annotations.is_empty() {
        index.plain.insert(hasher.hash(&namespace, &name));
    } else {
        index
            .annotated
            .entry(namespace)
            .or_default()
            .insert(name, annotations);
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
}
