//! The Kubernetes API emulator driven with kube-rs: CRUD, selectors, conflicts, patches,
//! finalizers, status and generation, CRDs and discovery. Watch, runtime, tokens, kubelet and
//! webhooks are in the submodules.

mod custom;
mod runtime;
mod semantics;
mod webhooks;

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResource, CustomResourceExt as _, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use passport_e2e::{
    apiserver::{ApiServer, Config},
    cluster::TestCluster,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A small custom resource with a status subresource and printer columns.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "stack.test",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wg",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready"}"#
)]
pub struct WidgetSpec {
    pub size: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A fresh API server of the test's own: the emulator, or the real kube-apiserver when
/// `PASSPORT_E2E_APISERVER=real` (`make e2e-real`). Tests that start this way must pass on both.
pub async fn fresh() -> anyhow::Result<(TestCluster, Client)> {
    let cluster = TestCluster::fresh().await?;
    let client = cluster.client();
    Ok((cluster, client))
}

pub async fn start(config: Config) -> anyhow::Result<(ApiServer, Client)> {
    passport_e2e::tls::install_crypto_provider();
    let server = ApiServer::start(config).await?;
    let client = server.client().await?;
    Ok((server, client))
}

/// Registers the Widget CRD and waits until it is served.
pub async fn install_widgets(client: &Client) -> anyhow::Result<()> {
    create_crd(client, &Widget::crd()).await
}

/// Creates a CRD and waits until it is established (at once in the emulator; a real API server
/// takes a moment, and answers 404 for its resources until then).
pub async fn create_crd(client: &Client, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
    use kube::runtime::wait::{await_condition, conditions};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.create(&PostParams::default(), crd).await?;
    tokio::time::timeout(
        WAIT,
        await_condition(crds, &crd.name_any(), conditions::is_crd_established()),
    )
    .await
    .with_context(|| format!("CRD {} is not established", crd.name_any()))??;
    Ok(())
}

/// The `Status` of a failed call.
pub fn api_error<T: std::fmt::Debug>(
    result: kube::Result<T>,
) -> anyhow::Result<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => Ok(*status),
        other => anyhow::bail!("expected an API error, got {other:?}"),
    }
}

pub fn config_map(
    name: &str,
    labels: serde_json::Value,
    data: serde_json::Value,
) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels }, "data": data,
    }))?)
}

#[tokio::test]
async fn crud_selectors_conflicts_and_errors() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let a = cms
        .create(
            &pp,
            &config_map("a", json!({ "app": "web" }), json!({ "x": "1" }))?,
        )
        .await?;
    assert!(a.metadata.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(a.metadata.creation_timestamp.is_some());
    assert_eq!(
        a.metadata.generation, None,
        "ConfigMaps carry no generation"
    );
    let rv_a: u64 = a.resource_version().context("rv")?.parse()?;

    let dup = api_error(
        cms.create(&pp, &config_map("a", json!({}), json!({}))?)
            .await,
    )?;
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");

    let mut gen_cm = config_map("", json!({ "app": "db" }), json!({}))?;
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let generated = cms.create(&pp, &gen_cm).await?;
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
    let rv_gen: u64 = generated.resource_version().context("rv")?.parse()?;
    assert!(rv_gen > rv_a, "resourceVersion increases");

    let names = |list: kube::core::ObjectList<ConfigMap>| {
        let mut v: Vec<String> = list.items.iter().map(kube::ResourceExt::name_any).collect();
        v.sort();
        v
    };
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(cms.list(&sel("app=web")).await?), ["a"]);
    assert_eq!(names(cms.list(&sel("app in (web,db)")).await?).len(), 2);
    assert_eq!(
        names(cms.list(&sel("app!=web,app")).await?),
        [generated.name_any()]
    );
    assert_eq!(names(cms.list(&sel("!app")).await?), ["kube-root-ca.crt"]);
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=a"))
                .await?
        ),
        ["a"]
    );
    let bad = api_error(cms.list(&ListParams::default().fields("data.x=1")).await)?;
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));

    // Update with a stale resourceVersion: 409 Conflict.
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "y": "2" } })),
        )
        .await?;
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|d| d.get("y"))
            .map(String::as_str),
        Some("2")
    );
    let stale = api_error(cms.replace("a", &pp, &a).await)?;
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );
    let mut fresh = cms.get("a").await?;
    fresh.data = Some([("z".to_owned(), "3".to_owned())].into());
    let replaced = cms.replace("a", &pp, &fresh).await?;
    assert_eq!(replaced.data.as_ref().map(|d| d.len()), Some(1));

    // A no-op patch keeps the resourceVersion.
    let same = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "z": "3" } })),
        )
        .await?;
    assert_eq!(same.resource_version(), replaced.resource_version());

    // JSON patch, with a failing and a passing `test`.
    let failing: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/data/z", "value": "nope" },
        { "op": "replace", "path": "/data/z", "value": "4" },
    ]))?;
    let err = api_error(
        cms.patch("a", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await,
    )?;
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let passing: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/data/z", "value": "3" },
        { "op": "replace", "path": "/data/z", "value": "4" },
    ]))?;
    let after = cms
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(passing))
        .await?;
    assert_eq!(
        after
            .data
            .as_ref()
            .and_then(|d| d.get("z"))
            .map(String::as_str),
        Some("4")
    );

    // Server-side apply creates, then merges.
    let ssa = PatchParams::apply("stack-test").force();
    let applied = cms
        .patch(
            "applied",
            &ssa,
            &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "applied" }, "data": { "k": "v1" } })),
        )
        .await?;
    assert_eq!(
        applied
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("v1")
    );
    let applied = cms
        .patch(
            "applied",
            &ssa,
            &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "applied" }, "data": { "k": "v2" } })),
        )
        .await?;
    assert_eq!(
        applied
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("v2")
    );
    let missing_manager = api_error(
        cms.patch(
            "applied",
            &PatchParams::default(),
            &Patch::Apply(json!({ "data": {} })),
        )
        .await,
    )?;
    assert_eq!(
        (missing_manager.code, missing_manager.reason.as_str()),
        (422, "Invalid")
    );
    assert!(
        missing_manager
            .message
            .contains("fieldManager: Required value"),
        "{}",
        missing_manager.message
    );

    // Delete preconditions.
    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let refused = api_error(cms.delete("a", &wrong_uid).await)?;
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert!(
        refused
            .message
            .contains("the UID in the precondition (not-the-uid) does not match the UID in record"),
        "{}",
        refused.message
    );

    // Delete, then 404 with the real body.
    let deleted = cms.delete("a", &DeleteParams::default()).await?;
    assert!(deleted.is_right(), "ConfigMaps answer a Success status");
    let gone = api_error(cms.get("a").await)?;
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    assert_eq!(gone.message, "configmaps \"a\" not found");
    let patch_missing = api_error(
        cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    )?;
    assert_eq!(patch_missing.code, 404);

    // Labels are validated like the real server does.
    let bad_label = api_error(
        cms.create(
            &pp,
            &config_map("labelled", json!({ "team": "payments & co" }), json!({}))?,
        )
        .await,
    )?;
    assert_eq!(
        (bad_label.code, bad_label.reason.as_str()),
        (422, "Invalid")
    );
    assert!(
        bad_label.message.starts_with(
            "ConfigMap \"labelled\" is invalid: metadata.labels: Invalid value: \"payments & co\""
        ),
        "{}",
        bad_label.message
    );

    // Names are validated; namespaces must exist.
    let invalid = api_error(
        cms.create(&pp, &config_map("Bad_Name", json!({}), json!({}))?)
            .await,
    )?;
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert!(
        invalid
            .message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value")
    );
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let no_ns = api_error(
        elsewhere
            .create(&pp, &config_map("x", json!({}), json!({}))?)
            .await,
    )?;
    assert_eq!(
        (no_ns.code, no_ns.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    Ok(())
}

#[tokio::test]
async fn namespaces_get_defaults_and_delete_their_contents() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": "team" } }))?;
    let ns = namespaces.create(&PostParams::default(), &ns).await?;
    assert_eq!(
        ns.labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("team")
    );
    // Controllers give the namespace its ServiceAccount (at once in the emulator, soon in a
    // cluster).
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    eventually(WAIT, || {
        let sas = sas.clone();
        async move { Ok(sas.get_opt("default").await?) }
    })
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    cms.create(
        &PostParams::default(),
        &config_map("c", json!({}), json!({}))?,
    )
    .await?;
    namespaces.delete("team", &DeleteParams::default()).await?;
    gone(&namespaces, "team").await?;
    let all: Api<ConfigMap> = Api::all(client.clone());
    let left = all.list(&ListParams::default()).await?;
    assert!(
        left.items
            .iter()
            .all(|c| c.namespace().as_deref() != Some("team"))
    );
    assert!(
        left.items
            .iter()
            .any(|c| c.namespace().as_deref() == Some("default")),
        "lists span namespaces"
    );

    // A finalizer in the namespace holds it in Terminating until it is released.
    install_widgets(&client).await?;
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": "held" } }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "held");
    let mut w = Widget::new(
        "w",
        WidgetSpec {
            size: 1,
            color: None,
        },
    );
    w.metadata.finalizers = Some(vec!["stack.test/cleanup".into()]);
    widgets.create(&PostParams::default(), &w).await?;
    namespaces.delete("held", &DeleteParams::default()).await?;
    let held = namespaces.get("held").await?;
    assert_eq!(
        held.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    eventually(WAIT, || {
        let widgets = widgets.clone();
        async move {
            let w = widgets.get("w").await?;
            Ok(w.metadata.deletion_timestamp.map(|_| ()))
        }
    })
    .await
    .context("the namespace's contents are deleted")?;
    let in_held: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let refused = api_error(
        in_held
            .create(
                &PostParams::default(),
                &config_map("late", json!({}), json!({}))?,
            )
            .await,
    )?;
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        refused.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace held because it is being terminated"
    );
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await?;
    gone(&namespaces, "held")
        .await
        .context("the namespace goes once empty")?;
    Ok(())
}

#[tokio::test]
async fn secrets_fold_string_data_and_immutable_data_stays() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    let (_server, client) = fresh().await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "s" }, "immutable": true, "stringData": { "token": "hunter2" } }))?;
    let stored = secrets.create(&PostParams::default(), &secret).await?;
    assert_eq!(stored.string_data, None);
    let value = stored
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .context("data.token")?;
    assert_eq!(value.0, b"hunter2");
    let change = api_error(
        secrets
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": { "token": "x" } })),
            )
            .await,
    )?;
    assert_eq!((change.code, change.reason.as_str()), (422, "Invalid"));
    assert!(
        change
            .message
            .contains("field is immutable when `immutable` is set"),
        "{}",
        change.message
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_status_subresource_and_generation() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    install_widgets(&client).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.stack.test").await?;
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let mut w = Widget::new(
        "w",
        WidgetSpec {
            size: 1,
            color: None,
        },
    );
    w.metadata.finalizers = Some(vec!["stack.test/hold".into()]);
    w.status = Some(WidgetStatus {
        ready: true,
        observed_generation: Some(9),
    });
    let w = widgets.create(&PostParams::default(), &w).await?;
    assert!(w.status.is_none(), "status is dropped on create");
    assert_eq!(w.metadata.generation, Some(1));

    let pp = PatchParams::default();
    let w = widgets
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({ "metadata": { "labels": { "l": "1" } } })),
        )
        .await?;
    assert_eq!(
        w.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let w = widgets
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({ "spec": { "size": 2 }, "status": { "ready": true } })),
        )
        .await?;
    assert_eq!(w.metadata.generation, Some(2), "spec changes bump it");
    assert!(w.status.is_none(), "the main resource ignores status");

    let w = widgets
        .patch_status(
            "w",
            &pp,
            &Patch::Merge(json!({
            "spec": { "size": 99 }, "status": { "ready": true, "observedGeneration": 2 } })),
        )
        .await?;
    assert_eq!(w.spec.size, 2, "/status ignores spec");
    assert_eq!(w.metadata.generation, Some(2));
    assert!(w.status.as_ref().is_some_and(|s| s.ready));
    let mut put = widgets.get("w").await?;
    put.status = Some(WidgetStatus {
        ready: false,
        observed_generation: None,
    });
    let put = widgets.replace("w", &PostParams::default(), &put).await?;
    assert!(
        put.status.as_ref().is_some_and(|s| s.ready),
        "PUT on the main resource keeps status"
    );

    // Finalizers: delete marks, clearing them removes.
    let marked = widgets.delete("w", &DeleteParams::default()).await?;
    let marked = marked.left().context("a finalized object is returned")?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    let still = widgets.get("w").await?;
    assert!(still.metadata.deletion_timestamp.is_some());
    let late = api_error(
        widgets
            .patch(
                "w",
                &pp,
                &Patch::Merge(
                    json!({ "metadata": { "finalizers": ["stack.test/hold", "stack.test/late"] } }),
                ),
            )
            .await,
    )?;
    assert_eq!(late.code, 422);
    assert!(
        late.message
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        late.message
    );
    widgets
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await?;
    assert!(widgets.get_opt("w").await?.is_none());

    // Pods get the service account admission defaults and a Pending status.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "p" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
        "status": { "phase": "Running" } }))?;
    let pod = pods.create(&PostParams::default(), &pod).await?;
    assert_eq!(
        pod.spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        Some("default")
    );
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let forbidden = api_error(
        pods.patch(
            "p",
            &pp,
            &Patch::Merge(json!({ "spec": { "hostname": "x" } })),
        )
        .await,
    )?;
    assert_eq!(forbidden.code, 422);
    let running = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Merge(json!({ "status": { "phase": "Running" } })),
        )
        .await?;
    assert_eq!(
        running.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    Ok(())
}

/// How long tests wait for what controllers do (at once in the emulator, asynchronously in a
/// real cluster).
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `name` no longer exists.
pub async fn gone<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(WAIT, || async move {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
    .with_context(|| format!("{name} still exists"))
}

/// Polls `check` every 20ms until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
