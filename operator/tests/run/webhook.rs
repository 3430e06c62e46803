//! The webhook served by `passport run`, registered as a `url` MutatingWebhookConfiguration
//! without a `caBundle`: the operator patches its own CA in, and a pod of a policy's service
//! account is admitted with the AWS web-identity contract; a pod of another service account is
//! admitted untouched; a namespace Passport has not labelled is never sent to the webhook.

use k8s_openapi::api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Pod};
use kube::{Api, ResourceExt as _, api::PostParams};
use passport_crds::{keys, naming};
use passport_e2e::aws::ACCOUNT_ID;
use serde_json::json;

use crate::{
    aws::{TRUST_LABEL, trust_yaml},
    harness::{
        CLUSTER, WEBHOOK_CONFIGURATION, apply_policy, apply_trust, eventually, harness,
        policy_ready, trust_condition, wait_policy, wait_trust,
    },
};

/// Registers the operator's webhook once for the whole binary.
async fn register(client: &kube::Client) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configuration = serde_json::from_value(json!({
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [{
            "name": "pods.passport.dev",
            "clientConfig": {"url": harness().webhook_url},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {keys::NAMESPACE_ENABLED: "true"}},
            "objectSelector": {"matchExpressions": [{"key": keys::COMPONENT, "operator": "NotIn", "values": ["passport"]}]},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
        }]
    }))
    .unwrap();
    match api.create(&PostParams::default(), &configuration).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("registering the webhook: {error}"),
    }
    eventually("the operator's caBundle in the configuration", || async {
        api.get(WEBHOOK_CONFIGURATION)
            .await
            .ok()
            .and_then(|c| c.webhooks)
            .is_some_and(|hooks| hooks.iter().all(|h| h.client_config.ca_bundle.is_some()))
    })
    .await;
}

fn pod(name: &str, service_account: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"serviceAccountName": service_account, "containers": [{"name": "app", "image": "registry.example.com/app:1"}]}
    }))
    .unwrap()
}

fn env(pod: &Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_of_a_policy_get_credentials_from_the_operators_webhook() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    register(&client).await;
    let trust = format!("hook-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h.namespace(&client, "hook", &[(TRUST_LABEL, &trust)]).await;
    h.service_accounts(&client, &ns, &["api", "other"]).await;
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    apply_policy(
        &client,
        &ns,
        &format!("metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n"),
    )
    .await;
    wait_policy(&client, &ns, "api", "Ready", policy_ready).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let role = naming::aws_role_name(CLUSTER, &ns, "api");
    let arn = format!("arn:aws:iam::{ACCOUNT_ID}:role/passport/{role}");
    // The API server may need a moment to see the patched caBundle; retry with new names.
    let mut injected = None;
    for i in 0..50 {
        match pods
            .create(&PostParams::default(), &pod(&format!("app{i}"), "api"))
            .await
        {
            Ok(created) if env(&created, "AWS_ROLE_ARN").is_some() => {
                injected = Some(created);
                break;
            }
            Ok(_) | Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let injected = injected.unwrap_or_else(|| panic!("no pod was injected\n{}", h.operator_log()));
    assert_eq!(
        env(&injected, "AWS_ROLE_ARN").as_deref(),
        Some(arn.as_str())
    );
    assert_eq!(
        env(&injected, "AWS_WEB_IDENTITY_TOKEN_FILE").as_deref(),
        Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token")
    );
    let sts = h.stack.aws.as_ref().unwrap().sts_https_url();
    assert_eq!(
        env(&injected, "AWS_ENDPOINT_URL_STS").as_deref(),
        Some(sts.as_str())
    );
    assert_eq!(
        injected
            .annotations()
            .get(keys::INJECTED)
            .map(String::as_str),
        Some(format!("{ns}/api").as_str())
    );
    let volumes = injected
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .clone()
        .unwrap_or_default();
    let audience = volumes
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.clone().unwrap_or_default())
        .filter_map(|s| s.service_account_token)
        .find_map(|t| t.audience);
    assert_eq!(audience.as_deref(), Some("sts.amazonaws.com"));

    // Another service account of the namespace: admitted untouched.
    let other = pods
        .create(&PostParams::default(), &pod("other", "other"))
        .await
        .unwrap();
    assert_eq!(env(&other, "AWS_ROLE_ARN"), None);
    assert!(!other.annotations().contains_key(keys::INJECTED));

    let metrics = reqwest::get(&h.metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            r#"passport_webhook_admission_duration_seconds_count{decision="injected"}"#
        )),
        "{metrics}"
    );
}
