//! Write semantics beyond CRUD: server-side apply ownership, ownerReferences garbage collection
//! and injected faults.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use passport_e2e::apiserver::Config;
use serde_json::json;

use super::{Widget, WidgetSpec, api_error, config_map, fresh, gone, install_widgets, start};

#[tokio::test]
async fn server_side_apply_tracks_field_managers() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |data: serde_json::Value| {
        Patch::Apply(json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "ssa" }, "data": data }))
    };
    let as_a = PatchParams::apply("manager-a");
    cms.patch("ssa", &as_a, &cm(json!({ "k": "1", "extra": "x" })))
        .await?;
    let reapplied = cms.patch("ssa", &as_a, &cm(json!({ "k": "1" }))).await?;
    assert_eq!(
        reapplied.data,
        Some([("k".to_owned(), "1".to_owned())].into()),
        "extra was dropped"
    );
    let managers: Vec<_> = reapplied
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["manager-a"]);

    let as_b = PatchParams::apply("manager-b");
    let clash = api_error(cms.patch("ssa", &as_b, &cm(json!({ "k": "2" }))).await)?;
    assert_eq!((clash.code, clash.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        clash.message,
        "Apply failed with 1 conflict: conflict with \"manager-a\": .data.k"
    );
    let forced = cms
        .patch("ssa", &as_b.clone().force(), &cm(json!({ "k": "2" })))
        .await?;
    assert_eq!(
        forced
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("2")
    );

    // Other writes keep the recorded managers.
    let merged = cms
        .patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "m": "3" } })),
        )
        .await?;
    assert_eq!(merged.managed_fields().len(), 2);

    // Status applied through /status: a condition field left out is removed.
    install_widgets(&client).await?;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    widgets
        .create(
            &PostParams::default(),
            &Widget::new(
                "s",
                WidgetSpec {
                    size: 1,
                    color: None,
                },
            ),
        )
        .await?;
    let status = |s: serde_json::Value| {
        Patch::Apply(json!({ "apiVersion": "stack.test/v1", "kind": "Widget",
            "metadata": { "name": "s" }, "status": s }))
    };
    let ctl = PatchParams::apply("controller").force();
    widgets
        .patch_status(
            "s",
            &ctl,
            &status(json!({ "ready": true, "observedGeneration": 1 })),
        )
        .await?;
    let w = widgets
        .patch_status("s", &ctl, &status(json!({ "ready": true })))
        .await?;
    let st = w.status.context("status")?;
    assert!(st.ready);
    assert_eq!(st.observed_generation, None);
    assert_eq!(w.spec.size, 1, "a status apply leaves spec alone");
    Ok(())
}

#[tokio::test]
async fn owner_references_cascade_unless_orphaned() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let owned_by = |name: &str, owner: &ConfigMap| -> anyhow::Result<ConfigMap> {
        Ok(serde_json::from_value(
            json!({ "metadata": { "name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(), "uid": owner.uid() }] } }),
        )?)
    };
    let owner = cms
        .create(&pp, &config_map("owner", json!({}), json!({}))?)
        .await?;
    let child = cms.create(&pp, &owned_by("child", &owner)?).await?;
    cms.create(&pp, &owned_by("grandchild", &child)?).await?;
    cms.delete("owner", &DeleteParams::background()).await?;
    for name in ["child", "grandchild"] {
        gone(&cms, name)
            .await
            .with_context(|| format!("{name} is collected"))?;
    }

    let owner = cms
        .create(&pp, &config_map("owner2", json!({}), json!({}))?)
        .await?;
    cms.create(&pp, &owned_by("kept", &owner)?).await?;
    cms.delete("owner2", &DeleteParams::orphan()).await?;
    gone(&cms, "owner2").await?;
    let kept = cms.get("kept").await?;
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn injected_faults_come_back_as_status_errors() -> anyhow::Result<()> {
    use axum::http::StatusCode;
    let (server, client) = start(Config::default()).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    server
        .faults()
        .fail_next(1, StatusCode::INTERNAL_SERVER_ERROR);
    let failed = api_error(cms.get("kube-root-ca.crt").await)?;
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    // kube-rs retries 429 and 503 by itself, as client-go does; the call then succeeds.
    server.faults().fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    server
        .faults()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    assert!(cms.get("kube-root-ca.crt").await.is_ok());
    assert_eq!(server.faults().pending(), 0, "both faults were served");
    Ok(())
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() -> anyhow::Result<()> {
    use kube::api::ListParams;
    let (_server, client) = fresh().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &config_map(&format!("page-{i}"), json!({ "p": "1" }), json!({}))?,
        )
        .await?;
    }
    let first = cms
        .list(&ListParams::default().labels("p=1").limit(2))
        .await?;
    assert_eq!(first.items.len(), 2);
    assert_eq!(
        first.metadata.remaining_item_count, None,
        "no count of the rest when a selector filters"
    );
    let everything = cms.list(&ListParams::default()).await?.items.len();
    let unfiltered = cms.list(&ListParams::default().limit(2)).await?;
    assert_eq!(
        unfiltered.metadata.remaining_item_count,
        Some(i64::try_from(everything)? - 2)
    );
    let mut names: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
    let mut token = first.metadata.continue_.clone();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = cms
            .list(
                &ListParams::default()
                    .labels("p=1")
                    .limit(2)
                    .continue_token(&t),
            )
            .await?;
        names.extend(page.items.iter().map(|c| c.name_any()));
        token = page.metadata.continue_;
    }
    assert_eq!(names, ["page-0", "page-1", "page-2", "page-3", "page-4"]);

    // kube-runtime's watcher follows the pages too.
    let all = kube::runtime::watcher(
        cms.clone(),
        kube::runtime::watcher::Config::default()
            .labels("p=1")
            .page_size(2),
    );
    let listed = {
        use futures::StreamExt as _;
        let mut stream = std::pin::pin!(all);
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            match event? {
                kube::runtime::watcher::Event::InitApply(c) => seen.push(c.name_any()),
                kube::runtime::watcher::Event::InitDone => break,
                _ => {}
            }
        }
        seen
    };
    assert_eq!(listed.len(), 5);
    Ok(())
}
