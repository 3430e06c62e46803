//! Mutating admission through MutatingWebhookConfigurations: an HTTPS webhook in the test
//! patches pods; rules, selectors, failure policies, denials and reinvocation are checked.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::{Json, Router, extract::State, routing::post};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    core::v1::{ConfigMap, Namespace, Pod},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use passport_e2e::{apiserver::Config, serve::Server, tls::Ca};
use serde_json::{Value, json};

use super::{api_error, start};

type Seen = Arc<Mutex<Vec<Value>>>;

fn respond(review: &Value, patch: Option<Value>) -> Json<Value> {
    let mut response = json!({ "uid": review["request"]["uid"], "allowed": true });
    if let Some(patch) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(STANDARD.encode(patch.to_string()));
    }
    Json(
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response }),
    )
}

fn annotate(obj: &Value, key: &str, value: &str) -> Value {
    if obj["metadata"]["annotations"].is_object() {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        json!([{ "op": "add", "path": format!("/metadata/annotations/{escaped}"), "value": value }])
    } else {
        json!([{ "op": "add", "path": "/metadata/annotations", "value": { key: value } }])
    }
}

fn webhook_router(seen: Seen) -> Router {
    Router::new()
        .route(
            "/annotate",
            post(
                |State(seen): State<Seen>, Json(review): Json<Value>| async move {
                    seen.lock().map(|mut s| s.push(review.clone())).ok();
                    let patch = annotate(&review["request"]["object"], "stack.test/mutated", "yes");
                    respond(&review, Some(patch))
                },
            ),
        )
        .route(
            "/count",
            post(|Json(review): Json<Value>| async move {
                let obj = &review["request"]["object"];
                let count = obj["metadata"]["annotations"]["count"]
                    .as_str()
                    .and_then(|c| c.parse::<u32>().ok())
                    .unwrap_or(0);
                let patch = annotate(obj, "count", &(count + 1).to_string());
                respond(&review, Some(patch))
            }),
        )
        .route(
            "/label",
            post(|Json(review): Json<Value>| async move {
                let patch =
                    json!([{ "op": "add", "path": "/metadata/labels", "value": { "b": "1" } }]);
                respond(&review, Some(patch))
            }),
        )
        .route(
            // Answers after the API server's timeout has passed.
            "/slow",
            post(|Json(review): Json<Value>| async move {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                respond(&review, None)
            }),
        )
        .route(
            "/deny",
            post(|Json(review): Json<Value>| async move {
                Json(
                    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": { "uid": review["request"]["uid"], "allowed": false,
                        "status": { "code": 403, "reason": "Forbidden", "message": "nope" } } }),
                )
            }),
        )
        .with_state(seen)
}

fn webhook(name: &str, client_config: Value, extra: Value) -> Value {
    let mut hook = json!({
        "name": name, "clientConfig": client_config,
        "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"] }],
        "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
    });
    if let (Some(h), Some(e)) = (hook.as_object_mut(), extra.as_object()) {
        h.extend(e.clone());
    }
    hook
}

async fn register(client: &Client, name: &str, hooks: Vec<Value>) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config =
        serde_json::from_value(json!({ "metadata": { "name": name }, "webhooks": hooks }))?;
    api.create(&PostParams::default(), &config).await?;
    Ok(())
}

async fn unregister(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.delete(name, &DeleteParams::default()).await?;
    Ok(())
}

fn pod(name: &str, labels: Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] } }))?)
}

#[tokio::test]
async fn mutating_webhooks_follow_rules_selectors_and_policies() -> anyhow::Result<()> {
    let ca = Ca::new()?;
    let cert = ca.issue(&["hooks.hooks.svc", "localhost", "127.0.0.1"])?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert_pem.into_bytes(),
        cert.key_pem.into_bytes(),
    )
    .await?;
    let seen: Seen = Arc::default();
    let hook_server = Server::https(webhook_router(seen.clone()), tls).await?;
    let config = Config {
        service_overrides: [("hooks/hooks".to_owned(), hook_server.addr())].into(),
        ..Config::default()
    };
    let (_server, client) = start(config).await?;
    let ca_bundle = STANDARD.encode(ca.cert_pem());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        ("hooked", json!({ "passport": "on" })),
        ("plain", json!({})),
    ] {
        let ns = serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } }))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    register(&client, "main", vec![webhook(
        "annotate.stack.test",
        json!({ "service": { "namespace": "hooks", "name": "hooks", "path": "/annotate" }, "caBundle": ca_bundle }),
        json!({
            "namespaceSelector": { "matchLabels": { "passport": "on" } },
            "objectSelector": { "matchExpressions": [{ "key": "skip", "operator": "DoesNotExist" }] },
        }),
    )])
    .await?;
    let hooked: Api<Pod> = Api::namespaced(client.clone(), "hooked");
    let plain: Api<Pod> = Api::namespaced(client.clone(), "plain");
    let pp = PostParams::default();
    let mutated = |p: &Pod| p.annotations().get("stack.test/mutated").cloned();

    let p1 = hooked.create(&pp, &pod("p1", json!({}))?).await?;
    assert_eq!(mutated(&p1).as_deref(), Some("yes"));
    let review = seen
        .lock()
        .ok()
        .and_then(|s| s.first().cloned())
        .context("a review")?;
    // kube's admission types (what Passport's webhook uses) read it.
    let typed: kube::core::admission::AdmissionReview<kube::core::DynamicObject> =
        serde_json::from_value(review.clone())?;
    let typed: kube::core::admission::AdmissionRequest<kube::core::DynamicObject> =
        typed.try_into()?;
    assert_eq!(typed.operation, kube::core::admission::Operation::Create);
    assert_eq!(
        typed.object.map(|o| o.metadata.name),
        Some(Some("p1".to_owned()))
    );
    let request = &review["request"];
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(
        request["kind"],
        json!({ "group": "", "version": "v1", "kind": "Pod" })
    );
    assert_eq!(
        request["resource"],
        json!({ "group": "", "version": "v1", "resource": "pods" })
    );
    assert_eq!(
        (request["namespace"].as_str(), request["name"].as_str()),
        (Some("hooked"), Some("p1"))
    );
    assert_eq!(request["dryRun"], false);
    assert_eq!(request["userInfo"]["username"], "kubernetes-admin");
    assert_eq!(
        request["object"]["spec"]["serviceAccountName"], "default",
        "admission defaults come first"
    );

    assert_eq!(
        mutated(&plain.create(&pp, &pod("p2", json!({}))?).await?),
        None,
        "namespaceSelector"
    );
    assert_eq!(
        mutated(
            &hooked
                .create(&pp, &pod("p3", json!({ "skip": "1" }))?)
                .await?
        ),
        None,
        "objectSelector"
    );
    // dryRun reaches the webhook and nothing is stored.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let dry_pod = hooked.create(&dry, &pod("dry", json!({}))?).await?;
    assert_eq!(mutated(&dry_pod).as_deref(), Some("yes"));
    assert!(
        hooked.get_opt("dry").await?.is_none(),
        "dry runs store nothing"
    );
    let dry_review = seen
        .lock()
        .ok()
        .and_then(|s| s.last().cloned())
        .context("a review")?;
    assert_eq!(dry_review["request"]["dryRun"], true);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "hooked");
    cms.create(
        &pp,
        &serde_json::from_value(json!({ "metadata": { "name": "c" } }))?,
    )
    .await?;
    assert_eq!(
        seen.lock().map(|s| s.len()).unwrap_or_default(),
        2,
        "rules: only pods are sent"
    );
    unregister(&client, "main").await?;

    // UPDATE webhooks see the old object; CREATE is not sent to them.
    let updates = webhook(
        "update.stack.test",
        json!({ "url": format!("https://{}/annotate", hook_server.addr()), "caBundle": ca_bundle }),
        json!({ "rules": [{ "operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"] }] }),
    );
    register(&client, "updates", vec![updates]).await?;
    let before = seen.lock().map(|s| s.len()).unwrap_or_default();
    let plain_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "plain");
    plain_cms
        .create(
            &pp,
            &serde_json::from_value(json!({ "metadata": { "name": "u" } }))?,
        )
        .await?;
    assert_eq!(
        seen.lock().map(|s| s.len()).unwrap_or_default(),
        before,
        "CREATE is not an UPDATE"
    );
    let updated = plain_cms
        .patch(
            "u",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "a": "1" } })),
        )
        .await?;
    assert_eq!(
        updated
            .annotations()
            .get("stack.test/mutated")
            .map(String::as_str),
        Some("yes")
    );
    let review = seen
        .lock()
        .ok()
        .and_then(|s| s.last().cloned())
        .context("a review")?;
    assert_eq!(review["request"]["operation"], "UPDATE");
    assert_eq!(review["request"]["oldObject"]["metadata"]["name"], "u");
    assert!(
        review["request"]["oldObject"]["data"].is_null(),
        "the old object is the stored one"
    );
    assert_eq!(review["request"]["options"]["kind"], "UpdateOptions");
    unregister(&client, "updates").await?;

    // A webhook that cannot be reached: Fail rejects, Ignore admits.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let down = json!({ "url": format!("https://{closed}/mutate"), "caBundle": ca_bundle });
    register(
        &client,
        "down",
        vec![webhook(
            "down.stack.test",
            down,
            json!({ "timeoutSeconds": 2 }),
        )],
    )
    .await?;
    let refused = api_error(plain.create(&pp, &pod("p4", json!({}))?).await)?;
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (500, "InternalError")
    );
    assert!(
        refused.message.starts_with("Internal error occurred: failed calling webhook \"down.stack.test\": failed to call webhook"),
        "{}",
        refused.message
    );
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let ignore: json_patch::Patch = serde_json::from_value(json!([
        { "op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore" }]))?;
    mwcs.patch("down", &PatchParams::default(), &Patch::<()>::Json(ignore))
        .await?;
    plain.create(&pp, &pod("p4", json!({}))?).await?;
    unregister(&client, "down").await?;

    // timeoutSeconds is honoured: a slow webhook fails the call (Fail) after one second.
    let slow =
        json!({ "url": format!("https://{}/slow", hook_server.addr()), "caBundle": ca_bundle });
    register(
        &client,
        "slow",
        vec![webhook(
            "slow.stack.test",
            slow,
            json!({ "timeoutSeconds": 1 }),
        )],
    )
    .await?;
    let started = std::time::Instant::now();
    let timed_out = api_error(plain.create(&pp, &pod("p-slow", json!({}))?).await)?;
    assert_eq!(timed_out.code, 500);
    assert!(
        timed_out
            .message
            .contains("failed calling webhook \"slow.stack.test\"")
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2900),
        "gave up before the answer"
    );
    unregister(&client, "slow").await?;

    // A denial carries the webhook's code and message.
    let deny =
        json!({ "url": format!("https://{}/deny", hook_server.addr()), "caBundle": ca_bundle });
    register(
        &client,
        "deny",
        vec![webhook("deny.stack.test", deny, json!({}))],
    )
    .await?;
    let denied = api_error(plain.create(&pp, &pod("p5", json!({}))?).await)?;
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        "admission webhook \"deny.stack.test\" denied the request: nope"
    );
    unregister(&client, "deny").await?;

    // reinvocationPolicy IfNeeded: the first webhook runs again after the second changed the pod.
    let url = |path: &str| json!({ "url": format!("https://127.0.0.1:{}{path}", hook_server.addr().port()), "caBundle": ca_bundle });
    register(
        &client,
        "reinvoke",
        vec![
            webhook(
                "count.stack.test",
                url("/count"),
                json!({ "reinvocationPolicy": "IfNeeded" }),
            ),
            webhook("label.stack.test", url("/label"), json!({})),
        ],
    )
    .await?;
    let p6 = plain.create(&pp, &pod("p6", json!({}))?).await?;
    assert_eq!(p6.labels().get("b").map(String::as_str), Some("1"));
    assert_eq!(p6.annotations().get("count").map(String::as_str), Some("2"));
    Ok(())
}

/// A webhook reached by `url` (which the real kube-apiserver can call on loopback too): its
/// `caBundle` decides whether the TLS handshake succeeds, `failurePolicy` what a failed call
/// does; a patch may be base64 or, as kube-rs serialises bytes, an array of numbers (Go's JSON
/// decodes both into `[]byte`; the real server showed it).
#[tokio::test]
async fn url_webhooks_need_their_ca_bundle_and_follow_their_failure_policy() -> anyhow::Result<()> {
    let ca = Ca::new()?;
    let cert = ca.issue(&["localhost", "127.0.0.1"])?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert_pem.into_bytes(),
        cert.key_pem.into_bytes(),
    )
    .await?;
    let router = webhook_router(Arc::default()).route(
        "/bytes",
        post(|Json(review): Json<Value>| async move {
            let patch = json!([{ "op": "add", "path": "/metadata/labels", "value": { "b": "1" } }]);
            let bytes: Vec<u8> = patch.to_string().into_bytes();
            Json(
                json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": { "uid": review["request"]["uid"], "allowed": true,
                    "patchType": "JSONPatch", "patch": bytes } }),
            )
        }),
    );
    let hook_server = Server::https(router, tls).await?;
    let (_cluster, client) = super::fresh().await?;
    let ns: Namespace = serde_json::from_value(
        json!({ "metadata": { "name": "urlhooks", "labels": { "hooks": "on" } } }),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "urlhooks");
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", hook_server.addr().port());
    let selector = json!({ "namespaceSelector": { "matchLabels": { "hooks": "on" } } });
    let right_ca = STANDARD.encode(ca.cert_pem());
    let wrong_ca = STANDARD.encode(Ca::new()?.cert_pem());
    let hook = |name: &str, path: &str, ca: &str, policy: &str| {
        let mut extra = selector.clone();
        extra["failurePolicy"] = json!(policy);
        webhook(name, json!({ "url": url(path), "caBundle": ca }), extra)
    };
    // Real kube-apiserver may take a moment to see a new configuration.
    async fn create_eventually(
        pods: &Api<Pod>,
        name: &str,
        want_ok: bool,
    ) -> Result<Pod, kube::Error> {
        let mut last = pods
            .create(
                &PostParams::default(),
                &pod(name, json!({})).expect("a pod"),
            )
            .await;
        for _ in 0..50 {
            if last.is_ok() == want_ok {
                break;
            }
            if let Ok(p) = &last {
                let _ = pods.delete(&p.name_any(), &DeleteParams::default()).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            last = pods
                .create(
                    &PostParams::default(),
                    &pod(name, json!({})).expect("a pod"),
                )
                .await;
        }
        last
    }

    register(
        &client,
        "by-url",
        vec![hook("annotate.url.test", "/annotate", &right_ca, "Fail")],
    )
    .await?;
    let mut mutated = None;
    for i in 0..50 {
        let p = pods
            .create(&PostParams::default(), &pod(&format!("ok{i}"), json!({}))?)
            .await?;
        if p.annotations().contains_key("stack.test/mutated") {
            mutated = Some(p);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(mutated.is_some(), "the webhook never mutated a pod");
    unregister(&client, "by-url").await?;

    register(
        &client,
        "wrong-ca",
        vec![hook("annotate.url.test", "/annotate", &wrong_ca, "Fail")],
    )
    .await?;
    let refused = create_eventually(&pods, "untrusted", false).await;
    let message = api_error(refused)?.message;
    assert!(
        message.contains("failed calling webhook \"annotate.url.test\""),
        "{message}"
    );
    assert!(
        message.contains("x509") || message.contains("certificate"),
        "{message}"
    );
    unregister(&client, "wrong-ca").await?;

    register(
        &client,
        "ignored",
        vec![hook("annotate.url.test", "/annotate", &wrong_ca, "Ignore")],
    )
    .await?;
    let admitted = create_eventually(&pods, "ignored", true).await?;
    assert!(!admitted.annotations().contains_key("stack.test/mutated"));
    unregister(&client, "ignored").await?;

    // A self-signed serving certificate marked CA:TRUE, its own caBundle (what `openssl req
    // -x509` makes): kube-apiserver's Go TLS accepts it.
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate()?;
    let self_signed = params.self_signed(&key)?;
    let own_tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        self_signed.pem().into_bytes(),
        key.serialize_pem().into_bytes(),
    )
    .await?;
    let own_server = Server::https(webhook_router(Arc::default()), own_tls).await?;
    let own_url = format!("https://127.0.0.1:{}/annotate", own_server.addr().port());
    let mut extra = selector.clone();
    extra["failurePolicy"] = json!("Fail");
    register(
        &client,
        "self-signed",
        vec![webhook(
            "selfsigned.url.test",
            json!({ "url": own_url, "caBundle": STANDARD.encode(self_signed.pem()) }),
            extra,
        )],
    )
    .await?;
    let mut accepted = false;
    for i in 0..50 {
        if let Ok(p) = pods
            .create(
                &PostParams::default(),
                &pod(&format!("selfsigned{i}"), json!({}))?,
            )
            .await
            && p.annotations().contains_key("stack.test/mutated")
        {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        accepted,
        "a CA:TRUE self-signed webhook certificate was refused"
    );
    unregister(&client, "self-signed").await?;

    register(
        &client,
        "bytes",
        vec![hook("bytes.url.test", "/bytes", &right_ca, "Fail")],
    )
    .await?;
    let mut labelled = false;
    for i in 0..50 {
        let p = pods
            .create(
                &PostParams::default(),
                &pod(&format!("bytes{i}"), json!({}))?,
            )
            .await?;
        if p.labels().get("b").map(String::as_str) == Some("1") {
            labelled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        labelled,
        "a patch sent as an array of numbers was not applied"
    );
    unregister(&client, "bytes").await?;
    Ok(())
}
