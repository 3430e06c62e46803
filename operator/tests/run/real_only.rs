//! Tests that only the real kube-apiserver can judge (`make e2e-real`; `make unit` skips
//! `real_only::`). There the harness runs the operator as the ServiceAccount of `config/rbac`,
//! bound to exactly the roles `kubectl kustomize config/verify` renders, so every other test
//! in this binary fails when a rule is missing. This one shows the converse from the API
//! server's audit log: every verb of every rule is used by the operator, and nothing the
//! operator asked for was refused.

use std::collections::BTreeSet;

use k8s_openapi::api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Pod};
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    aws::{TRUST_LABEL, trust_yaml},
    harness::{
        OPERATOR_NAMESPACE, OPERATOR_USER, WEBHOOK_CONFIGURATION, apply_policy, apply_trust,
        eventually, harness, policy_condition, policy_ready, rendered_install, trust_condition,
        wait_policy, wait_trust,
    },
    webhook::{pod, register},
};

/// One permission a rule grants: API group, resource (with `/subresource`), verb, the
/// namespace a Role limits it to, and its `resourceNames`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    role: String,
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
    names: Vec<String>,
}

/// Every (role, group, resource, verb) that the rendered install grants the operator's
/// ServiceAccount through a binding.
fn grants() -> Vec<Grant> {
    let objects = rendered_install().unwrap();
    let bound = |kind: &str, role_kind: &str| -> BTreeSet<String> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind && o["roleRef"]["kind"] == role_kind)
            .filter(|o| {
                o["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == "passport"
                        && s["namespace"] == OPERATOR_NAMESPACE
                })
            })
            .filter_map(|o| o["roleRef"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    let cluster_roles = bound("ClusterRoleBinding", "ClusterRole");
    let roles = bound("RoleBinding", "Role");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut grants = Vec::new();
    for object in &objects {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = match object["kind"].as_str() {
            Some("ClusterRole") if cluster_roles.contains(name) => None,
            Some("Role") if roles.contains(name) => Some(OPERATOR_NAMESPACE.to_owned()),
            _ => continue,
        };
        for rule in object["rules"].as_array().into_iter().flatten() {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "{name}: a nonResourceURLs rule"
            );
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        for field in [&group, &resource, &verb] {
                            assert_ne!(field, "*", "{name}: a wildcard in {rule}");
                        }
                        grants.push(Grant {
                            role: name.to_owned(),
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                            namespace: namespace.clone(),
                            names: strings(&rule["resourceNames"]),
                        });
                    }
                }
            }
        }
    }
    grants
}

/// The operator's requests in the API server's audit log.
fn operator_requests() -> Vec<Value> {
    harness()
        .apiserver_audit()
        .into_iter()
        .filter(|e| e["user"]["username"] == OPERATOR_USER)
        .filter(|e| e["stage"] == "ResponseComplete" || e["stage"] == "ResponseStarted")
        .collect()
}

fn uses(grant: &Grant, request: &Value) -> bool {
    let object = &request["objectRef"];
    let resource = match object["subresource"].as_str() {
        Some(sub) => format!("{}/{sub}", object["resource"].as_str().unwrap_or_default()),
        None => object["resource"].as_str().unwrap_or_default().to_owned(),
    };
    request["verb"] == grant.verb.as_str()
        && object["apiGroup"].as_str().unwrap_or_default() == grant.group
        && resource == grant.resource
        && grant
            .namespace
            .as_deref()
            .is_none_or(|ns| object["namespace"] == ns)
        && (grant.names.is_empty()
            || object["name"]
                .as_str()
                .is_some_and(|n| grant.names.iter().any(|g| g == n)))
}

/// An AdmissionReview straight to the operator's webhook, for a pod of a service account that
/// does not exist: the webhook's store misses and it reads the API server once, as it does when
/// a pod and its service account arrive in one `kubectl apply`.
async fn review_a_pod_of_a_missing_service_account(client: &kube::Client, namespace: &str) {
    let configuration = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(WEBHOOK_CONFIGURATION)
        .await
        .unwrap();
    let bundle = configuration.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("the operator patched its caBundle in")
        .0;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&bundle).unwrap())
        .build()
        .unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "4b1e0d7c-rbac-miss",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": serde_json::to_value(pod("ghost-pod", "ghost")).unwrap(),
        }
    });
    let response: Value = http
        .post(&harness().webhook_url)
        .json(&review)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["response"]["allowed"], true, "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rule_of_the_operators_rbac_is_used_and_nothing_it_asks_is_refused() {
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    register(&client).await;

    // Exercise every code path that needs a rule, whatever the other tests did before.
    let trust = format!("rbac-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h.namespace(&client, "rbac", &[(TRUST_LABEL, &trust)]).await;
    h.service_accounts(&client, &ns, &["api", "batch"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // A pod older than its policy (pods list).
    pods.create(&PostParams::default(), &pod("early", "api"))
        .await
        .unwrap();
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    // Verification needs a token (serviceaccounts/token create, the verify overlay).
    apply_policy(
        &client,
        &ns,
        &format!("metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n  verify: true\n"),
    )
    .await;
    wait_policy(&client, &ns, "api", "Ready and Verified", |p| {
        policy_ready(p) && policy_condition(p, "Verified").0 == "True"
    })
    .await;
    // A pod refused nothing but skipped by a condition, twice with the same name: the second
    // Warning Event repeats the first and is patched into a series (events patch).
    apply_policy(
        &client,
        &ns,
        &format!("metadata: {{name: batch}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [batch]\n  aws: {{}}\n  conditions: {{podSelector: {{matchLabels: {{tier: batch}}}}}}\n  enforcement: Skip\n"),
    )
    .await;
    wait_policy(&client, &ns, "batch", "Ready", policy_ready).await;
    for _ in 0..2 {
        eventually("a pod skipped by the condition", || async {
            pods.create(&PostParams::default(), &pod("skipped", "batch"))
                .await
                .is_ok_and(|p| p.annotations().get(passport_crds::keys::INJECTED).is_none())
        })
        .await;
        pods.delete("skipped", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
        eventually("the skipped pod is gone", || async {
            pods.get_opt("skipped").await.unwrap().is_none()
        })
        .await;
    }
    // The webhook's direct reads after a store miss (serviceaccounts get, accesspolicies list).
    review_a_pod_of_a_missing_service_account(&client, &ns).await;
    review_a_pod_of_a_missing_service_account(&client, &format!("{ns}-gone")).await;
    // A certificate inside its renewal window is rotated (secrets update).
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    secrets
        .patch(
            "passport-webhook-tls",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"passport.dev/not-after": tomorrow}}}),
            ),
        )
        .await
        .unwrap();
    // Deleting the namespace's policies removes the namespace label (namespaces patch) and the
    // finalizers (accesspolicies patch).
    let policies: Api<passport_crds::AccessPolicy> = Api::namespaced(client.clone(), &ns);
    for name in ["api", "batch"] {
        policies
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("the policies are gone", || async {
        policies
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;

    // Every verb of every rule shows up in the audit log as the operator's own request.
    let grants = grants();
    assert!(grants.len() > 10, "{grants:#?}");
    let mut unused = Vec::new();
    for _ in 0..60 {
        let requests = operator_requests();
        unused = grants
            .iter()
            .filter(|g| !requests.iter().any(|r| uses(g, r)))
            .cloned()
            .collect();
        if unused.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(
        unused.is_empty(),
        "rules the operator never used (remove them, or exercise the code that needs them):\n{unused:#?}"
    );
    // ... and nothing it asked for was refused.
    let refused: Vec<String> = operator_requests()
        .iter()
        .filter(|r| r["responseStatus"]["code"] == 403)
        .map(|r| {
            format!(
                "{} {} {}",
                r["verb"], r["requestURI"], r["responseStatus"]["message"]
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "refused requests:\n{}",
        refused.join("\n")
    );
}
