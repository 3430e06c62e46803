//! GCP: a trust creates its workload identity pool and provider with the cluster's JWKS; a
//! policy binds its principals on a Google service account (read back with getIamPolicy) and a
//! real STS exchange plus impersonation verifies it; edits revoke only what left the list; the
//! deletions clean up.

use kube::{Api, api::DeleteParams};
use passport_crds::{AccessPolicy, FederatedTrust, naming};
use passport_e2e::stack::{GCP_PROJECT_ID, GCP_PROJECT_NUMBER};
use serde_json::Value;

use crate::{
    aws::TRUST_LABEL,
    harness::{
        CLUSTER, apply_policy, apply_trust, eventually, harness, policy_condition, policy_ready,
        trust_condition, wait_policy, wait_trust,
    },
};

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn members(email: &str) -> Vec<String> {
    let base = harness().stack.gcp.http().base;
    let policy: Value = reqwest::Client::new()
        .post(format!(
            "{base}/v1/projects/-/serviceAccounts/{email}:getIamPolicy"
        ))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut members: Vec<String> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == "roles/iam.workloadIdentityUser")
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    members.sort();
    members
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trust_gets_its_provider_and_a_policy_its_binding_verified_by_a_real_exchange() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let trust = format!("gcp-{id}");
    let pool = format!("pool-{id}");
    let provider = format!("prov-{id}");
    let email = format!("app-{id}@{GCP_PROJECT_ID}.iam.gserviceaccount.com");
    h.stack.gcp.add_service_account(&email).unwrap();
    let ns = h.namespace(&client, "gcp", &[(TRUST_LABEL, &trust)]).await;
    h.service_accounts(&client, &ns, &["api", "worker"]).await;
    apply_trust(
        &client,
        &format!(
            "metadata: {{name: {trust}}}\nspec:\n  gcp: {{projectId: {GCP_PROJECT_ID}, projectNumber: '{GCP_PROJECT_NUMBER}', poolId: {pool}, providerId: {provider}, jwks: FromCluster, allowedServiceAccounts: ['*@{GCP_PROJECT_ID}.iam.gserviceaccount.com']}}\n  namespaceSelector: {{matchLabels: {{{TRUST_LABEL}: {trust}}}}}\n"
        ),
    )
    .await;
    let ready = wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    let name = naming::gcp_provider_name(GCP_PROJECT_NUMBER, &pool, &provider);
    let gcp_status = ready.status.as_ref().and_then(|s| s.gcp.clone()).unwrap();
    assert_eq!(gcp_status.provider_name.as_deref(), Some(name.as_str()));
    assert_eq!(
        gcp_status.audience,
        Some(format!("//iam.googleapis.com/{name}"))
    );

    // The provider as Google's API returns it.
    let base = h.stack.gcp.http().base;
    let (code, body) = get(&format!("{base}/v1/{name}")).await;
    assert_eq!(code, 200, "{body}");
    let issuer = h.stack.apiserver.issuer_url();
    assert_eq!(body["oidc"]["issuerUri"], issuer.trim_end_matches('/'));
    assert_eq!(body["attributeMapping"]["google.subject"], "assertion.sub");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("passport.dev/cluster=e2e"),
        "{body}"
    );
    let uploaded: Value = serde_json::from_str(body["oidc"]["jwksJson"].as_str().unwrap()).unwrap();
    let served: Value = client
        .request(
            http::Request::get("/openid/v1/jwks")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let kids = |v: &Value| -> Vec<String> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(!kids(&served).is_empty());
    assert_eq!(
        kids(&uploaded),
        kids(&served),
        "jwksJson is the cluster's JWKS"
    );

    let policy = format!(
        "metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api, worker]\n  gcp: {{serviceAccount: {email}}}\n  verify: true\n"
    );
    apply_policy(&client, &ns, &policy).await;
    let synced = wait_policy(&client, &ns, "api", "Ready and Verified", |p| {
        policy_ready(p) && policy_condition(p, "Verified").0 == "True"
    })
    .await;
    let principal = |sa: &str| {
        format!(
            "principal://iam.googleapis.com/projects/{GCP_PROJECT_NUMBER}/locations/global/workloadIdentityPools/{pool}/subject/system:serviceaccount:{ns}:{sa}"
        )
    };
    assert_eq!(
        members(&email).await,
        [principal("api"), principal("worker")]
    );
    let status = synced.status.unwrap();
    assert_eq!(status.identity.as_deref(), Some(email.as_str()));
    assert_eq!(
        status.gcp.unwrap().principals,
        [principal("api"), principal("worker")]
    );

    apply_policy(&client, &ns, &policy.replace("[api, worker]", "[worker]")).await;
    wait_policy(
        &client,
        &ns,
        "api",
        "synced with one service account",
        |p| {
            policy_ready(p)
                && p.status
                    .as_ref()
                    .is_some_and(|s| s.bound_service_accounts == ["worker"])
        },
    )
    .await;
    assert_eq!(members(&email).await, [principal("worker")]);

    Api::<AccessPolicy>::namespaced(client.clone(), &ns)
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the binding's removal", || async {
        members(&email).await.is_empty()
    })
    .await;

    Api::<FederatedTrust>::all(client.clone())
        .delete(&trust, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the provider's deletion", || async {
        let (code, body) = get(&format!("{base}/v1/{name}")).await;
        code == 404 || body["state"] == "DELETED"
    })
    .await;
    let _ = CLUSTER;
}
