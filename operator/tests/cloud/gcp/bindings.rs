//! `roles/iam.workloadIdentityUser` members: only Passport's members change, nothing is
//! written when they are already right, and a concurrent policy write is survived.

use passport_operator::cloud::{BindingIntent, Change, Cloud, ServiceAccountBindings};
use reqwest::Method;
use serde_json::json;

use super::*;

fn principal(subject: &str) -> String {
    format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/passport-pool/subject/{subject}"
    )
}

fn intent(grant: &[&str], revoke: &[&str]) -> BindingIntent {
    BindingIntent {
        service_account: SA.into(),
        grant: grant.iter().map(|s| principal(s)).collect(),
        revoke: revoke.iter().map(|s| principal(s)).collect(),
    }
}

const FOREIGN: &str = "user:alice@example.com";

async fn seed_foreign_members(env: &Env) -> anyhow::Result<()> {
    let (status, body) = env
        .call(
            Method::POST,
            &format!("v1/projects/{PROJECT_ID}/serviceAccounts/{SA}:setIamPolicy"),
            Some(json!({ "policy": { "bindings": [
                { "role": "roles/iam.workloadIdentityUser", "members": [FOREIGN] },
                { "role": "roles/iam.serviceAccountViewer", "members": [principal("a")] },
            ] } })),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
    Ok(())
}

/// The members of `role` in the stored policy.
async fn members(env: &Env, role: &str) -> anyhow::Result<Vec<String>> {
    let policy = env.policy().await?;
    Ok(policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role)
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect())
}

const WIU: &str = "roles/iam.workloadIdentityUser";
const VIEWER: &str = "roles/iam.serviceAccountViewer";

#[tokio::test]
async fn grants_and_revokes_touch_only_passports_members() -> anyhow::Result<()> {
    let env = Env::start().await?;
    seed_foreign_members(&env).await?;

    let granted = env
        .provider
        .ensure_workload_identity_users(&intent(&["a", "b"], &[]))
        .await?;
    assert_eq!(granted.change, Change::Updated);
    assert_eq!(
        members(&env, WIU).await?,
        vec![principal("a"), principal("b"), FOREIGN.to_owned()]
    );
    assert_eq!(members(&env, VIEWER).await?, vec![principal("a")]);

    let writes = env.writes_count();
    let again = env
        .provider
        .ensure_workload_identity_users(&intent(&["a", "b"], &[]))
        .await?;
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(env.writes_count(), writes);

    env.provider
        .ensure_workload_identity_users(&intent(&["b"], &["a"]))
        .await?;
    assert_eq!(
        members(&env, WIU).await?,
        vec![principal("b"), FOREIGN.to_owned()]
    );
    // Revoking the last of Passport's members leaves the foreign one and the other role.
    env.provider
        .ensure_workload_identity_users(&intent(&[], &["b"]))
        .await?;
    assert_eq!(members(&env, WIU).await?, vec![FOREIGN.to_owned()]);
    assert_eq!(members(&env, VIEWER).await?, vec![principal("a")]);
    Ok(())
}

#[tokio::test]
async fn an_emptied_binding_is_removed() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.provider
        .ensure_workload_identity_users(&intent(&["a"], &[]))
        .await?;
    env.forget_seen();
    env.provider
        .ensure_workload_identity_users(&intent(&[], &["a"]))
        .await?;
    let writes = env.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0].body["policy"].get("bindings"),
        None,
        "{:?}",
        writes[0].body
    );
    assert!(env.policy().await?.get("bindings").is_none());
    // Revoking what is not there writes nothing.
    let count = env.writes_count();
    env.provider
        .ensure_workload_identity_users(&intent(&[], &["a"]))
        .await?;
    assert_eq!(env.writes_count(), count);
    Ok(())
}

#[tokio::test]
async fn a_concurrent_policy_write_is_read_again_and_kept() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.interfere_once();
    let ensured = env
        .provider
        .ensure_workload_identity_users(&intent(&["a"], &[]))
        .await?;
    assert_eq!(ensured.change, Change::Updated);
    // The first write carried a stale etag and was refused; the policy was read again.
    assert_eq!(env.calls.operation(Cloud::Gcp, "GetIamPolicy"), 2);
    assert_eq!(env.calls.operation(Cloud::Gcp, "SetIamPolicy"), 2);
    let sets: Vec<_> = env
        .seen()
        .into_iter()
        .filter(|r| r.path.ends_with(":setIamPolicy"))
        .collect();
    assert_eq!(sets.len(), 2);
    assert_ne!(
        sets[0].body["policy"]["etag"],
        sets[1].body["policy"]["etag"]
    );
    assert_eq!(
        members(&env, WIU).await?,
        vec![principal("a"), MEMBER.to_owned()]
    );
    Ok(())
}
