//! Object storage: every object as JSON under (resource, namespace, name), one global
//! resourceVersion counter, and a bounded log of watch events that watchers replay and follow.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use serde_json::Value;
use tokio::sync::broadcast;

/// `ADDED`, `MODIFIED` or `DELETED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watchers see it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub storage: String,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The object before this change (for watches with selectors: leaving the selection is a
    /// DELETED, entering it an ADDED).
    pub prev: Option<Value>,
}

/// (storage key, namespace, name).
pub type Key = (String, String, String);

/// The object store. Callers hold the server's lock around it.
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Arc<Event>>,
    window: usize,
    /// The newest resourceVersion that fell out of the log: watches from before it get 410.
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Store {
    pub fn new(window: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            window: window.max(1),
            compacted: 0,
            tx,
        }
    }

    /// Ends every open watch (their streams close, as when an API server restarts or a load
    /// balancer drops connections). With `compact`, the event log is compacted past the current
    /// resourceVersion too, so a watch resumed from any version seen so far gets 410 Expired and
    /// the client must list again.
    pub fn disconnect_watches(&mut self, compact: bool) {
        self.tx = broadcast::channel(4096).0;
        if compact {
            self.rv += 1;
            self.compacted = self.rv;
            self.log.clear();
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    /// Takes the next resourceVersion.
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn get(&self, storage: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(storage.to_owned(), namespace.to_owned(), name.to_owned()))
    }

    /// Objects of one resource, in one namespace or (None) all of them, ordered by
    /// namespace and name as etcd lists them.
    pub fn list<'a>(
        &'a self,
        storage: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        // Keys sort by storage, then namespace: start at the first key of the range.
        let start = (
            storage.to_owned(),
            namespace.unwrap_or_default().to_owned(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |((s, ns, _), _)| s == storage && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v)
    }

    /// Every object with its (storage, namespace, name).
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    /// Stores `object` (whose resourceVersion the caller already set to `rv`) and logs the event.
    pub fn put(
        &mut self,
        storage: &str,
        namespace: &str,
        name: &str,
        object: Value,
        kind: EventType,
    ) {
        let rv = rv_of(&object);
        let prev = self.objects.insert(
            (storage.to_owned(), namespace.to_owned(), name.to_owned()),
            object.clone(),
        );
        self.record(storage, namespace, kind, object, prev, rv);
    }

    /// Removes an object; the DELETED event carries it with a fresh resourceVersion.
    pub fn remove(&mut self, storage: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut object =
            self.objects
                .remove(&(storage.to_owned(), namespace.to_owned(), name.to_owned()))?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        self.record(
            storage,
            namespace,
            EventType::Deleted,
            object.clone(),
            None,
            rv,
        );
        Some(object)
    }

    fn record(
        &mut self,
        storage: &str,
        namespace: &str,
        kind: EventType,
        object: Value,
        prev: Option<Value>,
        rv: u64,
    ) {
        let event = Arc::new(Event {
            rv,
            storage: storage.to_owned(),
            namespace: namespace.to_owned(),
            kind,
            object,
            prev,
        });
        self.log.push_back(event.clone());
        while self.log.len() > self.window {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    /// Logged events newer than `rv`, and a receiver for the ones to come. Taken under the lock
    /// so nothing falls between the two.
    pub fn events_since(&self, rv: u64) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let past = self.log.iter().filter(|e| e.rv > rv).cloned().collect();
        (past, self.tx.subscribe())
    }
}

/// The resourceVersion of an object as a number (0 when absent or malformed).
pub fn rv_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A random (version 4) UUID, as kube-apiserver puts in `metadata.uid`.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The 5-character suffix `generateName` gets, from the same alphabet as apimachinery.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Now, as RFC 3339 with second precision (how metadata timestamps are written).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}
