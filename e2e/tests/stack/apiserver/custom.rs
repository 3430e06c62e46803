//! Custom resources (validation, pruning, defaults, CEL) and discovery.

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{WAIT, api_error, create_crd, eventually, fresh, install_widgets};

#[tokio::test]
async fn discovery_serves_builtins_and_crds() -> anyhow::Result<()> {
    let (_server, client) = fresh().await?;
    install_widgets(&client).await?;
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    let kinds: Vec<String> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(r, _)| format!("{}/{}", r.group, r.kind))
        .collect();
    for want in [
        "/Pod",
        "/ServiceAccount",
        "/Namespace",
        "events.k8s.io/Event",
        "coordination.k8s.io/Lease",
        "admissionregistration.k8s.io/MutatingWebhookConfiguration",
        "apiextensions.k8s.io/CustomResourceDefinition",
        "stack.test/Widget",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing from {kinds:?}"
        );
    }
    let (widget, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.kind == "Widget")
        .context("widget")?;
    assert_eq!(widget.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    let version = client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_pruned_defaulted_and_validated() -> anyhow::Result<()> {
    use kube::{api::DynamicObject, discovery::ApiResource};
    let (_server, client) = fresh().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = |schema: serde_json::Value| -> anyhow::Result<CustomResourceDefinition> {
        Ok(serde_json::from_value(json!({
            "metadata": { "name": "gizmos.stack.test" },
            "spec": { "group": "stack.test", "scope": "Namespaced",
                "names": { "plural": "gizmos", "singular": "gizmo", "kind": "Gizmo" },
                "versions": [{ "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": schema } }] } }))?)
    };
    let not_structural = crd(json!({ "type": "object", "properties": { "spec": {} } }))?;
    let refused = api_error(crds.create(&PostParams::default(), &not_structural).await)?;
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));

    create_crd(&client, &crd(json!({
        "type": "object",
        "properties": { "spec": {
            "type": "object", "required": ["size"],
            "x-kubernetes-validations": [{ "rule": "self.size <= 10", "message": "size must be at most 10" }],
            "properties": {
                "size": { "type": "integer", "minimum": 1 },
                "mode": { "type": "string", "default": "auto" },
            } } } }))?)
        .await?;
    let resource = ApiResource {
        group: "stack.test".into(),
        version: "v1".into(),
        api_version: "stack.test/v1".into(),
        kind: "Gizmo".into(),
        plural: "gizmos".into(),
    };
    let gizmos: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let gizmo = |name: &str, spec: serde_json::Value| -> anyhow::Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "stack.test/v1", "kind": "Gizmo", "metadata": { "name": name }, "spec": spec }))?)
    };
    let stored = gizmos
        .create(
            &PostParams::default(),
            &gizmo("ok", json!({ "size": 2, "extra": "x" }))?,
        )
        .await?;
    assert_eq!(
        stored.data["spec"],
        json!({ "size": 2, "mode": "auto" }),
        "pruned and defaulted"
    );

    let too_small = api_error(
        gizmos
            .create(
                &PostParams::default(),
                &gizmo("small", json!({ "size": 0 }))?,
            )
            .await,
    )?;
    assert_eq!(
        (too_small.code, too_small.reason.as_str()),
        (422, "Invalid")
    );
    assert_eq!(
        too_small.message,
        "Gizmo.stack.test \"small\" is invalid: spec.size: Invalid value: 0: spec.size in body \
         should be greater than or equal to 1",
        "the real server's words; a minimum failure leaves the CEL rules running (and passing)"
    );
    let causes = too_small.details.map(|d| d.causes).unwrap_or_default();
    assert!(causes.iter().any(|c| c.field == "spec.size"), "{causes:?}");

    let too_big = api_error(
        gizmos
            .create(
                &PostParams::default(),
                &gizmo("big", json!({ "size": 20 }))?,
            )
            .await,
    )?;
    assert!(
        too_big.message.contains("size must be at most 10"),
        "{}",
        too_big.message
    );
    let update = api_error(
        gizmos
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "size": 11 } })),
            )
            .await,
    )?;
    assert_eq!(update.code, 422, "updates are validated too");
    Ok(())
}

#[tokio::test]
async fn every_served_version_reads_the_same_objects() -> anyhow::Result<()> {
    use kube::{api::DynamicObject, discovery::ApiResource};
    let (_server, client) = fresh().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let version = |name: &str, storage: bool| {
        json!({ "name": name, "served": true, "storage": storage,
            "schema": { "openAPIV3Schema": { "type": "object",
                "properties": { "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } } } })
    };
    let crd = serde_json::from_value(json!({
        "metadata": { "name": "things.stack.test" },
        "spec": { "group": "stack.test", "scope": "Cluster",
            "names": { "plural": "things", "singular": "thing", "kind": "Thing" },
            "versions": [version("v1alpha1", true), version("v1", false)] } }))?;
    create_crd(&client, &crd).await?;
    let at = |v: &str| ApiResource {
        group: "stack.test".into(),
        version: v.into(),
        api_version: format!("stack.test/{v}"),
        kind: "Thing".into(),
        plural: "things".into(),
    };
    let old: Api<DynamicObject> = Api::all_with(client.clone(), &at("v1alpha1"));
    let new: Api<DynamicObject> = Api::all_with(client.clone(), &at("v1"));
    let thing = serde_json::from_value(json!({
        "apiVersion": "stack.test/v1alpha1", "kind": "Thing", "metadata": { "name": "t" }, "spec": { "a": 1 } }))?;
    old.create(&PostParams::default(), &thing).await?;
    let read = new.get("t").await?;
    assert_eq!(
        read.types.map(|t| t.api_version).as_deref(),
        Some("stack.test/v1")
    );
    assert_eq!(read.data["spec"]["a"], 1);

    let discovery = kube::Discovery::new(client.clone()).run().await?;
    let group = discovery.get("stack.test").context("group")?;
    assert_eq!(
        group.preferred_version_or_latest(),
        "v1",
        "GA wins over alpha"
    );

    // A names change is accepted by the CRD naming controller: in the patch's answer in the
    // emulator, a moment later in kube-apiserver.
    crds.patch(
        "things.stack.test",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "names": { "shortNames": ["th"] } } })),
    )
    .await?;
    eventually(WAIT, || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("things.stack.test").await?;
            let accepted = crd
                .status
                .and_then(|s| s.accepted_names)
                .and_then(|n| n.short_names);
            Ok((accepted == Some(vec!["th".to_owned()])).then_some(()))
        }
    })
    .await
    .context("the short name is accepted")?;
    Ok(())
}
