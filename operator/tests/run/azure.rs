//! Azure: a policy gets one federated identity credential per service account on its managed
//! identity (read back from ARM), the identity's client ID in its status, and a real
//! client-assertion token request verifies it; edits and deletion remove only its credentials.

use kube::{Api, api::DeleteParams};
use passport_crds::{AccessPolicy, naming};
use passport_e2e::stack::{
    AZURE_CLIENT_ID, AZURE_IDENTITY, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION_ID, AZURE_TENANT_ID,
};
use serde_json::Value;

use crate::{
    aws::TRUST_LABEL,
    harness::{
        CLUSTER, apply_policy, apply_trust, eventually, harness, policy_condition, policy_ready,
        trust_condition, wait_policy, wait_trust,
    },
};

/// This namespace's credentials on the identity, by name.
fn credentials(ns: &str) -> Vec<Value> {
    let mut fics: Vec<Value> = harness()
        .stack
        .azure
        .fics(AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_IDENTITY)
        .into_iter()
        .filter(|f| {
            f["properties"]["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("system:serviceaccount:{ns}:")))
        })
        .collect();
    fics.sort_by_key(|f| f["name"].as_str().unwrap_or_default().to_owned());
    fics
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_gets_its_federated_credentials_verified_and_removed() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let trust = format!("azure-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h
        .namespace(&client, "azure", &[(TRUST_LABEL, &trust)])
        .await;
    h.service_accounts(&client, &ns, &["api", "worker"]).await;
    let identities = format!(
        "/subscriptions/{AZURE_SUBSCRIPTION_ID}/resourceGroups/{AZURE_RESOURCE_GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    apply_trust(
        &client,
        &format!(
            // No authorityHost: the stack's PASSPORT_POD_AZURE_AUTHORITY_HOST points pods, and
            // so the verification, at the Entra fake.
            "metadata: {{name: {trust}}}\nspec:\n  azure:\n    tenantId: {AZURE_TENANT_ID}\n    allowedIdentities: ['{identities}/*']\n  namespaceSelector: {{matchLabels: {{{TRUST_LABEL}: {trust}}}}}\n"
        ),
    )
    .await;
    let ready = wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    let issuer = h.stack.apiserver.issuer_url();
    let issuer = issuer.trim_end_matches('/');
    assert_eq!(
        ready.status.unwrap().azure.unwrap().issuer.as_deref(),
        Some(issuer)
    );

    let policy = format!(
        "metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api, worker]\n  azure: {{identity: '{identities}/{AZURE_IDENTITY}'}}\n  verify: true\n"
    );
    apply_policy(&client, &ns, &policy).await;
    let synced = wait_policy(&client, &ns, "api", "Ready and Verified", |p| {
        policy_ready(p) && policy_condition(p, "Verified").0 == "True"
    })
    .await;
    let azure = synced.status.unwrap().azure.unwrap();
    assert_eq!(
        azure.client_id.as_deref(),
        Some(AZURE_CLIENT_ID),
        "looked up from the identity"
    );
    let names: Vec<String> = ["api", "worker"]
        .iter()
        .map(|sa| naming::azure_fic_name(CLUSTER, &ns, sa))
        .collect();
    assert_eq!(azure.federated_credentials, names);
    let fics = credentials(&ns);
    assert_eq!(fics.len(), 2, "{fics:?}");
    for (fic, sa) in fics.iter().zip(["api", "worker"]) {
        assert_eq!(fic["name"], naming::azure_fic_name(CLUSTER, &ns, sa));
        assert_eq!(fic["properties"]["issuer"], issuer);
        assert_eq!(
            fic["properties"]["subject"],
            naming::service_account_subject(&ns, sa)
        );
        assert_eq!(
            fic["properties"]["audiences"],
            serde_json::json!(["api://AzureADTokenExchange"])
        );
    }

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
    let fics = credentials(&ns);
    assert_eq!(fics.len(), 1, "{fics:?}");
    assert_eq!(
        fics[0]["properties"]["subject"],
        naming::service_account_subject(&ns, "worker")
    );

    Api::<AccessPolicy>::namespaced(client.clone(), &ns)
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the credentials' removal", || async {
        credentials(&ns).is_empty()
    })
    .await;
}
