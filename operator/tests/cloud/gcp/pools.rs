//! Pools and providers: create, read back, patch only what changed, zero writes at steady
//! state, JWKS upload and rotation, undelete of soft-deleted IDs, foreign objects left alone.

use passport_operator::cloud::{
    Change, Cloud, Deleted, ErrorKind, Owner, WorkloadIdentityPools, WorkloadIdentityRef,
    error::NOT_OWNED,
};
use reqwest::Method;
use serde_json::json;

use super::*;

fn reference(pool: &str) -> WorkloadIdentityRef {
    WorkloadIdentityRef {
        project_number: NUMBER.into(),
        pool_id: pool.into(),
        provider_id: "cluster".into(),
        owner: owner(),
    }
}

fn snapshot(name: &str, value: &serde_json::Value) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, value);
    });
}

#[tokio::test]
async fn a_new_trust_creates_the_pool_and_provider_exactly_as_intended() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let ensured = env
        .provider
        .ensure_workload_identity_provider(&intent("passport-pool"))
        .await?;
    let name = format!("{}/providers/cluster", pool_path("passport-pool"));
    assert_eq!(ensured.change, Change::Created);
    assert_eq!(ensured.state.provider_name, name);
    assert_eq!(
        ensured.state.audience,
        format!("//iam.googleapis.com/{name}")
    );

    let description = owner().description();
    assert_eq!(
        env.pool("passport-pool").await?,
        json!({
            "name": pool_path("passport-pool"),
            "displayName": "Passport gcp-prod",
            "description": description,
            "state": "ACTIVE",
        })
    );
    assert_eq!(
        env.provider_of("passport-pool", "cluster").await?,
        json!({
            "name": name,
            "displayName": "Passport gcp-prod",
            "description": description,
            "state": "ACTIVE",
            "attributeMapping": {
                "google.subject": "assertion.sub",
                "attribute.namespace": "assertion['kubernetes.io']['namespace']",
            },
            "attributeCondition": "attribute.namespace != 'kube-system'",
            "oidc": { "issuerUri": ISSUER, "allowedAudiences": ["gcp-sts"] },
        })
    );
    // What Passport sent: two creates (with IDs in the query), each polled to the end.
    let writes = env.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].query["workloadIdentityPoolId"], "passport-pool");
    assert_eq!(writes[1].query["workloadIdentityPoolProviderId"], "cluster");
    snapshot("gcp_pool_create_body", &writes[0].body);
    snapshot("gcp_provider_create_body", &writes[1].body);
    assert_eq!(env.writes_count(), 2);
    Ok(())
}

#[tokio::test]
async fn an_ensure_of_a_matching_trust_makes_no_write() -> anyhow::Result<()> {
    let env = Env::start_with(|o| o.operation_polls(3)).await?;
    let intent = intent("passport-pool");
    env.provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    let writes = env.writes_count();
    let again = env
        .provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    assert_eq!(again.change, Change::Unchanged);
    assert!(again.changes.is_empty());
    assert_eq!(env.writes_count(), writes);
    assert_eq!(
        again.state.provider_name,
        format!("{}/providers/cluster", pool_path("passport-pool"))
    );
    // Three polls per operation were needed, and taken.
    assert_eq!(env.calls.operation(Cloud::Gcp, "GetOperation"), 6);
    Ok(())
}

#[tokio::test]
async fn a_changed_field_is_patched_alone() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let mut intent = intent("passport-pool");
    env.provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    env.forget_seen();
    intent.attribute_condition = Some("attribute.namespace == 'payments'".into());
    let ensured = env
        .provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    assert_eq!(ensured.change, Change::Updated);
    let writes = env.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].query["updateMask"], "attributeCondition");
    snapshot("gcp_provider_patch_condition_body", &writes[0].body);
    let provider = env.provider_of("passport-pool", "cluster").await?;
    assert_eq!(
        provider["attributeCondition"],
        "attribute.namespace == 'payments'"
    );
    assert_eq!(provider["oidc"]["allowedAudiences"], json!(["gcp-sts"]));

    // Dropping the condition clears it, again through the mask alone.
    intent.attribute_condition = None;
    env.forget_seen();
    env.provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    assert_eq!(env.writes()[0].query["updateMask"], "attributeCondition");
    let provider = env.provider_of("passport-pool", "cluster").await?;
    assert!(provider.get("attributeCondition").is_none(), "{provider}");
    Ok(())
}

#[tokio::test]
async fn inline_jwks_is_uploaded_and_replaced_only_when_the_keys_change() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let mut intent = intent("passport-pool");
    intent.jwks_json = Some(jwks("key-1"));
    env.provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    let provider = env.provider_of("passport-pool", "cluster").await?;
    assert_eq!(provider["oidc"]["jwksJson"], jwks("key-1"));

    // The same keys spelled differently are the same keys.
    let parsed: serde_json::Value = serde_json::from_str(&jwks("key-1"))?;
    intent.jwks_json = Some(serde_json::to_string_pretty(&parsed)?);
    let writes = env.writes_count();
    let same = env
        .provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    assert_eq!(same.change, Change::Unchanged);
    assert_eq!(env.writes_count(), writes);

    intent.jwks_json = Some(jwks("key-2"));
    env.forget_seen();
    let rotated = env
        .provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    assert_eq!(rotated.change, Change::Updated);
    let writes = env.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].query["updateMask"], "oidc.jwksJson");
    assert_eq!(
        writes[0].body,
        json!({ "oidc": { "jwksJson": jwks("key-2") } })
    );
    let provider = env.provider_of("passport-pool", "cluster").await?;
    assert_eq!(provider["oidc"]["jwksJson"], jwks("key-2"));
    assert_eq!(provider["oidc"]["issuerUri"], ISSUER);
    Ok(())
}

#[tokio::test]
async fn a_soft_deleted_pool_is_undeleted_not_created() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let intent = intent("passport-pool");
    env.provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    let deleted = env
        .provider
        .delete_workload_identity_provider(&reference("passport-pool"))
        .await?;
    assert_eq!(deleted, Deleted::Deleted);
    assert_eq!(env.pool("passport-pool").await?["state"], "DELETED");

    let restored = env
        .provider
        .ensure_workload_identity_provider(&intent)
        .await?;
    assert_eq!(restored.change, Change::Created);
    assert_eq!(
        env.calls
            .operation(Cloud::Gcp, "CreateWorkloadIdentityPool"),
        1
    );
    assert_eq!(
        env.calls
            .operation(Cloud::Gcp, "UndeleteWorkloadIdentityPool"),
        1
    );
    assert_eq!(
        env.calls
            .operation(Cloud::Gcp, "UndeleteWorkloadIdentityPoolProvider"),
        1
    );
    assert_eq!(env.pool("passport-pool").await?["state"], "ACTIVE");
    assert_eq!(
        env.provider_of("passport-pool", "cluster").await?["state"],
        "ACTIVE"
    );
    Ok(())
}

#[tokio::test]
async fn foreign_pools_and_providers_are_never_modified() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let pools = format!("v1/projects/{NUMBER}/locations/global/workloadIdentityPools");
    env.write(
        Method::POST,
        &format!("{pools}?workloadIdentityPoolId=hand-made"),
        json!({ "displayName": "Made by hand", "description": "ops team" }),
    )
    .await?;
    let other = Owner::trust("staging", "gcp-prod");
    env.write(
        Method::POST,
        &format!("{pools}?workloadIdentityPoolId=other-cluster"),
        json!({ "description": other.description() }),
    )
    .await?;
    let before = (
        env.pool("hand-made").await?,
        env.pool("other-cluster").await?,
    );

    let error = env
        .provider
        .ensure_workload_identity_provider(&intent("hand-made"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(error.code.as_deref(), Some(NOT_OWNED));
    let error = env
        .provider
        .ensure_workload_identity_provider(&intent("other-cluster"))
        .await
        .unwrap_err();
    assert_eq!(error.code.as_deref(), Some(NOT_OWNED));
    assert!(
        error.message.contains("cluster staging"),
        "{}",
        error.message
    );

    // Nor is a provider of someone else, even in a pool Passport may not touch anyway.
    env.write(
        Method::POST,
        &format!("{pools}/hand-made/providers?workloadIdentityPoolProviderId=cluster"),
        json!({ "description": "ops team", "attributeMapping": { "google.subject": "assertion.sub" },
                "oidc": { "issuerUri": ISSUER } }),
    )
    .await?;
    let kept = env
        .provider
        .delete_workload_identity_provider(&reference("hand-made"))
        .await?;
    assert!(matches!(kept, Deleted::Kept { .. }), "{kept:?}");
    let kept = env
        .provider
        .delete_workload_identity_provider(&reference("other-cluster"))
        .await?;
    assert!(matches!(kept, Deleted::Kept { .. }), "{kept:?}");
    assert_eq!(env.writes_count(), 0);
    assert!(env.writes().is_empty());
    assert_eq!(
        (
            env.pool("hand-made").await?,
            env.pool("other-cluster").await?
        ),
        before
    );
    assert_eq!(
        env.provider_of("hand-made", "cluster").await?["state"],
        "ACTIVE"
    );
    Ok(())
}

#[tokio::test]
async fn delete_removes_only_what_passport_created() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.provider
        .ensure_workload_identity_provider(&intent("shared-pool"))
        .await?;
    env.write(
        Method::POST,
        &format!(
            "v1/{}/providers?workloadIdentityPoolProviderId=ops-provider",
            pool_path("shared-pool")
        ),
        json!({ "description": "ops team", "attributeMapping": { "google.subject": "assertion.sub" },
                "oidc": { "issuerUri": ISSUER } }),
    )
    .await?;
    let mut foreign = intent("shared-pool");
    foreign.provider_id = "ops-provider".into();
    let writes = env.writes_count();
    let error = env
        .provider
        .ensure_workload_identity_provider(&foreign)
        .await
        .unwrap_err();
    assert_eq!(error.code.as_deref(), Some(NOT_OWNED));
    assert_eq!(env.writes_count(), writes);

    let deleted = env
        .provider
        .delete_workload_identity_provider(&reference("shared-pool"))
        .await?;
    assert_eq!(deleted, Deleted::Deleted);
    assert_eq!(
        env.provider_of("shared-pool", "cluster").await?["state"],
        "DELETED"
    );
    // The pool still holds someone else's provider, so it stays.
    assert_eq!(env.pool("shared-pool").await?["state"], "ACTIVE");
    assert_eq!(
        env.provider_of("shared-pool", "ops-provider").await?["state"],
        "ACTIVE"
    );

    env.provider
        .ensure_workload_identity_provider(&intent("own-pool"))
        .await?;
    let deleted = env
        .provider
        .delete_workload_identity_provider(&reference("own-pool"))
        .await?;
    assert_eq!(deleted, Deleted::Deleted);
    assert_eq!(env.pool("own-pool").await?["state"], "DELETED");
    // Deleting again finds nothing live to delete and writes nothing.
    let writes = env.writes_count();
    let again = env
        .provider
        .delete_workload_identity_provider(&reference("own-pool"))
        .await?;
    assert_eq!(again, Deleted::Absent);
    assert_eq!(env.writes_count(), writes);
    Ok(())
}

#[tokio::test]
async fn pools_work_over_tls_with_the_ca_bundle() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let dir = std::env::temp_dir().join(format!("passport-gcp-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, env.ca.cert_pem())?;
    let config = CloudConfig {
        gcp_iam_endpoint: env.fake.https().base,
        ca_bundle: Some(bundle),
        ..env.config.clone()
    };
    let calls = Calls::default();
    let provider = GcpProvider::new(&config, calls.clone(), env.credentials.clone()).await?;
    let ensured = provider
        .ensure_workload_identity_provider(&intent("tls-pool"))
        .await;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(ensured?.change, Change::Created);
    assert_eq!(calls.writes(Cloud::Gcp), 2);
    assert_eq!(env.pool("tls-pool").await?["state"], "ACTIVE");
    Ok(())
}
