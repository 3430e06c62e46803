//! Watches, kube-runtime (watcher, reflector, Controller), TokenRequest and the kubelet stand-in.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Pod, ServiceAccount},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{Controller, WatchStreamExt as _, controller::Action, reflector, watcher},
};
use passport_e2e::{
    apiserver::Config,
    kubelet::Kubelet,
    oidc::{JwksVerifier, peek_claims},
    tls,
};
use serde_json::json;

use super::{Widget, WidgetSpec, api_error, eventually, fresh, install_widgets, start};

const WAIT: Duration = Duration::from_secs(10);

fn labelled(name: &str, labels: serde_json::Value) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({ "metadata": { "name": name, "labels": labels } }),
    )?)
}

type Events = futures::stream::BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>;

async fn next_raw(stream: &mut Events) -> anyhow::Result<WatchEvent<ConfigMap>> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .context("no watch event in time")?
        .context("the watch ended")?
        .context("watch error")
}

/// The next event that is not a bookmark.
async fn next_event(stream: &mut Events) -> anyhow::Result<WatchEvent<ConfigMap>> {
    loop {
        match next_raw(stream).await? {
            WatchEvent::Bookmark(_) => continue,
            other => return Ok(other),
        }
    }
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

#[tokio::test]
async fn watch_from_resource_version_with_selectors_bookmarks_and_expiry() -> anyhow::Result<()> {
    let config = Config {
        watch_window: 8,
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let (_server, client) = start(config).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let before = cms
        .create(&pp, &labelled("before", json!({ "w": "1" }))?)
        .await?;
    let rv = before.resource_version().context("rv")?;

    let params = WatchParams::default().labels("w=1").timeout(20);
    let mut stream = cms.watch(&params, &rv).await?.boxed();
    cms.create(&pp, &labelled("one", json!({ "w": "1" }))?)
        .await?;
    cms.create(&pp, &labelled("other", json!({ "w": "2" }))?)
        .await?;
    let pm = PatchParams::default();
    cms.patch("one", &pm, &Patch::Merge(json!({ "data": { "a": "b" } })))
        .await?;
    cms.patch(
        "one",
        &pm,
        &Patch::Merge(json!({ "metadata": { "labels": { "w": "0" } } })),
    )
    .await?;
    cms.patch(
        "other",
        &pm,
        &Patch::Merge(json!({ "metadata": { "labels": { "w": "1" } } })),
    )
    .await?;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(describe(&next_event(&mut stream).await?));
    }
    assert_eq!(
        seen,
        ["ADDED one", "MODIFIED one", "DELETED one", "ADDED other"]
    );

    // Replaying from the earlier resourceVersion returns the same history.
    let mut replay = cms.watch(&params, &rv).await?.boxed();
    assert_eq!(describe(&next_event(&mut replay).await?), "ADDED one");

    // Bookmarks, when allowed.
    let mut marks = cms
        .watch(&WatchParams::default().timeout(20), "0")
        .await?
        .boxed();
    let mut got_bookmark = false;
    for _ in 0..30 {
        if matches!(next_raw(&mut marks).await?, WatchEvent::Bookmark(_)) {
            got_bookmark = true;
            break;
        }
    }
    assert!(got_bookmark);
    let mut unmarked = cms
        .watch(&WatchParams::default().disable_bookmarks().timeout(1), "0")
        .await?
        .boxed();
    while let Ok(Some(event)) = tokio::time::timeout(WAIT, unmarked.next()).await {
        assert!(
            !matches!(event?, WatchEvent::Bookmark(_)),
            "no bookmarks unless allowed"
        );
    }

    // Push the window past `rv`: the watch answers an ERROR event with 410 Expired.
    for i in 0..10 {
        cms.create(&pp, &labelled(&format!("fill-{i}"), json!({}))?)
            .await?;
    }
    let mut expired = cms.watch(&params, &rv).await?.boxed();
    match next_event(&mut expired).await? {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(status.message.starts_with("too old resource version"));
        }
        other => anyhow::bail!("expected 410, got {}", describe(&other)),
    }

    // timeoutSeconds ends the stream.
    let mut short = cms
        .watch(&WatchParams::default().timeout(1), "0")
        .await?
        .boxed();
    let ended = tokio::time::timeout(WAIT, async { while short.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the watch should end after timeoutSeconds");
    Ok(())
}

#[tokio::test]
async fn watcher_reflector_and_controller() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let reflect = reflector(
        writer,
        watcher(cms.clone(), watcher::Config::default().labels("r=1")),
    )
    .applied_objects()
    .for_each(|_| async {});
    let reflect = tokio::spawn(reflect);
    for name in ["r1", "r2", "r3"] {
        cms.create(
            &PostParams::default(),
            &labelled(name, json!({ "r": "1" }))?,
        )
        .await?;
    }
    let count = |n: usize| {
        let reader = reader.clone();
        move || {
            let reader = reader.clone();
            async move { Ok((reader.state().len() == n).then_some(())) }
        }
    };
    eventually(WAIT, count(3)).await?;
    cms.delete("r2", &Default::default()).await?;
    eventually(WAIT, count(2)).await?;
    reflect.abort();

    // A controller that reconciles Widgets through kube-runtime's finalizer helper (which
    // JSON-patches with `test` ops) and reports on their status; cleanup leaves a ConfigMap.
    install_widgets(&client).await?;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    type Failure = kube::runtime::finalizer::Error<kube::Error>;
    async fn reconcile(w: Arc<Widget>, client: Arc<Client>) -> Result<Action, Failure> {
        use kube::runtime::finalizer::{Event, finalizer};
        let api: Api<Widget> = Api::namespaced((*client).clone(), "default");
        finalizer(&api, "stack.test/cleanup", w, |event| async {
            match event {
                Event::Apply(w) => {
                    let status = json!({ "status": {
                        "ready": w.spec.size > 0, "observedGeneration": w.metadata.generation } });
                    api.patch_status(
                        &w.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(status),
                    )
                    .await?;
                }
                Event::Cleanup(w) => {
                    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), "default");
                    let done: ConfigMap = serde_json::from_value(
                        json!({ "metadata": { "name": format!("cleaned-{}", w.name_any()) } }),
                    )
                    .map_err(kube::Error::SerdeError)?;
                    cms.create(&PostParams::default(), &done).await?;
                }
            }
            Ok(Action::await_change())
        })
        .await
    }
    fn error_policy(_: Arc<Widget>, _: &Failure, _: Arc<Client>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);
    widgets
        .create(
            &PostParams::default(),
            &Widget::new(
                "ctl",
                WidgetSpec {
                    size: 3,
                    color: None,
                },
            ),
        )
        .await?;
    let observed = |generation: i64| {
        let widgets = widgets.clone();
        move || {
            let widgets = widgets.clone();
            async move {
                let w = widgets.get("ctl").await?;
                Ok(w.status
                    .filter(|s| s.ready && s.observed_generation == Some(generation))
                    .map(|_| ()))
            }
        }
    };
    eventually(WAIT, observed(1)).await?;
    let w = widgets.get("ctl").await?;
    assert_eq!(
        w.finalizers(),
        ["stack.test/cleanup"],
        "the helper added its finalizer"
    );
    widgets
        .patch(
            "ctl",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "size": 4 } })),
        )
        .await?;
    eventually(WAIT, observed(2)).await?;

    widgets.delete("ctl", &Default::default()).await?;
    eventually(WAIT, || {
        let widgets = widgets.clone();
        async move { Ok(widgets.get_opt("ctl").await?.is_none().then_some(())) }
    })
    .await?;
    assert!(
        cms.get_opt("cleaned-ctl").await?.is_some(),
        "cleanup ran before removal"
    );
    controller.abort();
    Ok(())
}

async fn pod_with_sa(client: &Client, sa: &str, pod: serde_json::Value) -> anyhow::Result<Pod> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let account: ServiceAccount = serde_json::from_value(json!({ "metadata": { "name": sa } }))?;
    sas.create(&PostParams::default(), &account).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(pods
        .create(&PostParams::default(), &serde_json::from_value(pod)?)
        .await?)
}

#[tokio::test]
async fn token_requests_verify_against_the_served_jwks() -> anyhow::Result<()> {
    let (server, client) = fresh().await?;
    let url = server.server_url().context("a fresh server has a URL")?;
    let ca_pem = server
        .ca_pem()
        .context("a fresh server has a CA")?
        .to_owned();
    let pod = pod_with_sa(
        &client,
        "app",
        json!({
        "metadata": { "name": "p" },
        "spec": { "serviceAccountName": "app", "containers": [{ "name": "c", "image": "x" }] } }),
    )
    .await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let request = |exp: i64| -> anyhow::Result<TokenRequest> {
        Ok(serde_json::from_value(json!({ "spec": {
            "audiences": ["sts.amazonaws.com"], "expirationSeconds": exp,
            "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "p", "uid": pod.uid() } } }))?)
    };
    let answer = sas
        .create_token_request("app", &PostParams::default(), &request(600)?)
        .await?;
    let token = answer.status.and_then(|s| s.token).context("token")?;

    // Anonymously, as the clouds fetch them.
    let verifier = JwksVerifier::new(tls::client_trusting(&ca_pem)?);
    let claims = verifier.verify(&token, &url).await?;
    assert_eq!(claims["iss"], json!(url));
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:app");
    let sa = sas.get("app").await?;
    assert_eq!(claims["kubernetes.io"]["namespace"], "default");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"],
        json!({ "name": "app", "uid": sa.uid() })
    );
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({ "name": "p", "uid": pod.uid() })
    );
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(e, i)| e - i),
        Some(600)
    );

    let short = api_error(
        sas.create_token_request("app", &PostParams::default(), &request(599)?)
            .await,
    )?;
    assert_eq!((short.code, short.reason.as_str()), (422, "Invalid"));
    let unknown = api_error(
        sas.create_token_request("ghost", &PostParams::default(), &request(600)?)
            .await,
    )?;
    assert_eq!(unknown.code, 404);
    Ok(())
}

#[tokio::test]
async fn kubelet_writes_projected_volumes_and_resolves_env() -> anyhow::Result<()> {
    let (server, client) = fresh().await?;
    let url = server.server_url().context("a fresh server has a URL")?;
    let ca_pem = server
        .ca_pem()
        .context("a fresh server has a CA")?
        .to_owned();
    let dir = server
        .dir()
        .context("a fresh server has a folder")?
        .to_path_buf();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
        "metadata": { "name": "settings" }, "data": { "region": "eu-west-1", "other": "x" } }))?,
    )
    .await?;
    let pod = pod_with_sa(&client, "app", json!({
        "metadata": { "name": "p", "annotations": { "passport.dev/config": "{\"a\":1}" } },
        "spec": {
            "serviceAccountName": "app",
            "containers": [{
                "name": "c", "image": "x",
                "env": [
                    { "name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token" },
                    { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    { "name": "REGION", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "region" } } },
                ],
                "volumeMounts": [{ "name": "aws-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true }],
            }],
            "volumes": [{ "name": "aws-token", "projected": { "sources": [
                { "serviceAccountToken": { "audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token" } },
                { "downwardAPI": { "items": [{ "path": "config.json", "fieldRef": { "fieldPath": "metadata.annotations['passport.dev/config']" } }] } },
                { "configMap": { "name": "settings", "items": [{ "key": "region", "path": "region" }] } },
            ] } }],
        } }))
    .await?;
    let root = dir.join("kubelet");
    let kubelet = Kubelet::new(client.clone(), &root);
    let files = kubelet.materialise("default", "p").await?;
    let volume = root.join("default/p/aws-token");
    assert_eq!(files.volumes.get("aws-token"), Some(&volume));
    let token = std::fs::read_to_string(volume.join("token"))?;
    let claims = peek_claims(&token)?;
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], json!(pod.uid()));
    assert_eq!(
        std::fs::read_to_string(volume.join("config.json"))?,
        "{\"a\":1}"
    );
    assert_eq!(std::fs::read_to_string(volume.join("region"))?, "eu-west-1");
    assert!(
        !volume.join("other").exists(),
        "only the listed items are projected"
    );

    let view = files.containers.get("c").context("container view")?;
    assert_eq!(view.env.get("NS").map(String::as_str), Some("default"));
    assert_eq!(
        view.env.get("REGION").map(String::as_str),
        Some("eu-west-1")
    );
    let on_host = view.env_on_host();
    let token_path = on_host
        .get("AWS_WEB_IDENTITY_TOKEN_FILE")
        .context("token env")?;
    assert_eq!(std::fs::read_to_string(token_path)?, token);

    let config = r#"{"credential_source":{"file":"/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}}"#;
    let rewritten: serde_json::Value = serde_json::from_str(&view.rewrite_text(config))?;
    let file = rewritten["credential_source"]["file"]
        .as_str()
        .context("file")?;
    assert_eq!(
        std::fs::read_to_string(file)?,
        token,
        "paths inside files can be rewritten too"
    );

    // The kube-api-access volume the service account admission added is there too.
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let host = |file: &str| {
        view.host_path(&format!("{sa_dir}/{file}"))
            .context("mounted")
    };
    assert_eq!(std::fs::read_to_string(host("namespace")?)?, "default");
    assert_eq!(std::fs::read_to_string(host("ca.crt")?)?, ca_pem);
    let default_token = peek_claims(&std::fs::read_to_string(host("token")?)?)?;
    assert_eq!(
        default_token["aud"],
        json!([url]),
        "the API server audience by default"
    );

    // The watching form materialises pods as they are created.
    let spawned_root = dir.join("spawned");
    let task = Kubelet::new(client.clone(), &spawned_root).spawn();
    let target = spawned_root.join("default/p/aws-token/token");
    eventually(WAIT, || {
        let target = target.clone();
        async move { Ok(target.exists().then_some(())) }
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(WAIT, || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("p").await?;
            Ok((pod.status.and_then(|s| s.phase).as_deref() == Some("Running")).then_some(()))
        }
    })
    .await?;
    task.abort();
    Ok(())
}

#[tokio::test]
async fn recorder_events_are_core_events_too() -> anyhow::Result<()> {
    use k8s_openapi::api::{core::v1::Event as CoreEvent, events::v1::Event};
    use kube::{
        Resource as _,
        runtime::events::{Event as Published, EventType, Recorder, Reporter},
    };
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(&PostParams::default(), &labelled("subject", json!({}))?)
        .await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "passport".into(),
            instance: None,
        },
    );
    let event = Published {
        type_: EventType::Warning,
        reason: "ConditionsFailed".into(),
        note: Some("image not allowed".into()),
        action: "Admit".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&event, &reference).await?;
    recorder.publish(&event, &reference).await?;

    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    // Only the events about this ConfigMap: the controllers a real cluster runs may record
    // their own in `default`, and the assertion is about the recorder's series, not about them.
    let listed = core.list(&Default::default()).await?;
    let uid = cm.metadata.uid.as_deref();
    let ours: Vec<&CoreEvent> = listed
        .items
        .iter()
        .filter(|e| e.involved_object.uid.as_deref() == uid)
        .collect();
    let seen: Vec<String> = listed
        .items
        .iter()
        .map(|e| {
            format!(
                "{} ({:?} {:?}: {:?})",
                e.name_any(),
                e.involved_object.kind,
                e.involved_object.name,
                e.reason
            )
        })
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "the second publish updates the series; events in default: {seen:?}"
    );
    let stored = ours[0];
    assert_eq!(stored.involved_object.name.as_deref(), Some("subject"));
    assert_eq!(stored.message.as_deref(), Some("image not allowed"));
    assert_eq!(stored.reason.as_deref(), Some("ConditionsFailed"));
    assert_eq!(stored.reporting_component.as_deref(), Some("passport"));

    let v1: Api<Event> = Api::namespaced(client.clone(), "default");
    let same = v1.get(&stored.name_any()).await?;
    assert_eq!(same.note.as_deref(), Some("image not allowed"));
    assert_eq!(
        same.regarding.and_then(|r| r.name).as_deref(),
        Some("subject")
    );
    assert_eq!(same.series.map(|s| s.count), Some(2));
    Ok(())
}

#[tokio::test]
async fn metadata_only_reads_and_watches() -> anyhow::Result<()> {
    use kube::core::PartialObjectMeta;
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
        "metadata": { "name": "meta", "labels": { "m": "1" } }, "data": { "secret": "x" } }))?,
    )
    .await?;
    let raw = axum::http::Request::get("/api/v1/namespaces/default/configmaps/meta")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())?;
    let raw: serde_json::Value = client.request(raw).await?;
    assert_eq!(raw["kind"], "PartialObjectMetadata");
    assert!(raw.get("data").is_none(), "only metadata is sent");
    let meta = cms.get_metadata("meta").await?;
    assert_eq!(
        meta.metadata
            .labels
            .unwrap_or_default()
            .get("m")
            .map(String::as_str),
        Some("1")
    );
    let listed = cms
        .list_metadata(&kube::api::ListParams::default().labels("m=1"))
        .await?;
    assert_eq!(listed.items.len(), 1);
    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(metas, watcher::Config::default().labels("m=1"))
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(WAIT, stream.next())
        .await?
        .context("watch ended")??;
    assert_eq!(first.name_any(), "meta");
    Ok(())
}

#[tokio::test]
async fn the_jwks_is_served_as_a_jwk_set_and_refused_to_json_only_clients() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    let get = |path: &str, accept: &str| {
        axum::http::Request::get(path)
            .header(axum::http::header::ACCEPT, accept)
            .body(Vec::new())
    };
    let jwks: serde_json::Value = client
        .request(get(
            "/openid/v1/jwks",
            "application/jwk-set+json, application/json",
        )?)
        .await?;
    assert!(
        jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{jwks}"
    );
    let refused = client
        .request::<serde_json::Value>(get("/openid/v1/jwks", "application/json")?)
        .await
        .expect_err("kube-apiserver answers 406 to a JSON-only Accept");
    let kube::Error::Api(status) = refused else {
        panic!("not a Status: {refused:?}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (406, "NotAcceptable")
    );
    assert!(
        status.message.contains("application/jwk-set+json"),
        "{}",
        status.message
    );
    // The discovery document is plain JSON.
    let discovery: serde_json::Value = client
        .request(get(
            "/.well-known/openid-configuration",
            "application/json",
        )?)
        .await?;
    assert!(
        discovery["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/openid/v1/jwks"))
    );
    Ok(())
}
