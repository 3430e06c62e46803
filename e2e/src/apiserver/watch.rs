//! Watch: a chunked stream of `{"type", "object"}` JSON lines from a resourceVersion, with
//! bookmarks, initial events, selectors, `timeoutSeconds` and 410 Expired for compacted versions.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::sync::{
    broadcast::error::{RecvError, TryRecvError},
    mpsc,
};

use super::{
    Shared,
    handlers::{Query, Target},
    objects,
    reads::{selected, selectors},
    selectors::{FieldSelector, LabelSelector},
    status::ApiError,
    store::{Event, EventType},
    table::Shape,
};

/// Default server-side watch timeout (kube-apiserver's `--min-request-timeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({ "type": kind, "object": object }).to_string();
    s.push('\n');
    Bytes::from(s)
}

struct Filter {
    storage: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(&obj["metadata"]["labels"]) && self.fields.matches(obj)
    }

    /// What a watcher of this selection sees of `event`, if anything.
    fn view(&self, event: &Event) -> Option<&'static str> {
        if event.storage != self.storage
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != event.namespace)
        {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.prev.as_ref().is_some_and(|p| self.matches(p));
        match (event.kind, before, now) {
            (EventType::Added, _, true) => Some("ADDED"),
            (EventType::Modified, true, true) => Some("MODIFIED"),
            (EventType::Modified, false, true) => Some("ADDED"),
            (EventType::Modified, true, false) => Some("DELETED"),
            (EventType::Deleted, _, true) => Some("DELETED"),
            _ => None,
        }
    }
}

/// Streams the watch, each object in `shape` (kubectl `get -w` asks for Table rows).
pub fn watch(
    shared: &Arc<Shared>,
    target: &Target,
    query: &Query,
    shape: Shape,
) -> Result<Response, ApiError> {
    let shape = {
        let res = target.res.clone();
        move |obj: Value| {
            let rv = super::store::rv_of(&obj);
            shape.one(&res, obj, rv)
        }
    };
    let (labels, fields) = selectors(target, query)?;
    let filter = Filter {
        storage: target.res.storage_key(),
        namespace: target.namespace.clone(),
        labels,
        fields,
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let requested_rv = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))
        })
        .transpose()?;

    let mut first: Vec<Bytes> = Vec::new();
    let res = target.res.clone();
    let (rx, start_rv) = {
        let inner = shared.lock();
        let current = inner.store.current_rv();
        match requested_rv {
            Some(rv) if !send_initial => {
                if rv < inner.store.compacted_rv() {
                    let err = ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        inner.store.compacted_rv()
                    ));
                    first.push(line("ERROR", &err.to_status()));
                    (None, rv)
                } else {
                    let (past, rx) = inner.store.events_since(rv);
                    for event in past {
                        if let Some(kind) = filter.view(&event) {
                            let obj = shape(objects::as_served(&res, event.object.clone()));
                            first.push(line(kind, &obj));
                        }
                    }
                    (Some(rx), rv)
                }
            }
            _ => {
                for obj in selected(target, query, &inner)? {
                    first.push(line("ADDED", &shape(obj)));
                }
                if send_initial && bookmarks {
                    first.push(line("BOOKMARK", &bookmark(&res, current, true)));
                }
                let (_, rx) = inner.store.events_since(current);
                (Some(rx), current)
            }
        }
    };

    let (tx, out) = mpsc::channel::<Bytes>(64);
    let shared = shared.clone();
    let interval = shared.config.bookmark_interval;
    tokio::spawn(async move {
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = rx else { return };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.reset();
        let mut last_rv = start_rv;
        // The line a watcher of this selection gets for `event`, if any.
        let mut deliver = |event: &Event| -> Option<Bytes> {
            if event.rv <= last_rv {
                return None;
            }
            last_rv = event.rv;
            let kind = filter.view(event)?;
            Some(line(
                kind,
                &shape(objects::as_served(&res, event.object.clone())),
            ))
        };
        loop {
            let out = tokio::select! {
                () = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    // Every event up to `current` is already queued: send those first, so a
                    // client resuming from the bookmark misses nothing.
                    let mut newest = shared.lock().store.current_rv();
                    let mut lines = Vec::new();
                    loop {
                        match rx.try_recv() {
                            Ok(event) => {
                                newest = newest.max(event.rv);
                                lines.extend(deliver(&event));
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(_) => return,
                        }
                    }
                    lines.push(line("BOOKMARK", &bookmark(&res, newest, false)));
                    lines
                }
                event = rx.recv() => match event {
                    Ok(event) => deliver(&event).into_iter().collect(),
                    // A watcher that fell behind is closed; the client re-watches from its
                    // last resourceVersion, as after any dropped connection.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                },
            };
            for b in out {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|b| (Ok::<_, Infallible>(b), out))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn bookmark(res: &super::resources::ApiResource, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "kind": res.kind, "apiVersion": res.api_version(), "metadata": meta })
}
