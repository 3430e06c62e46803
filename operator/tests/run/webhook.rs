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
        CLUSTER, OPERATOR_NAMESPACE, WEBHOOK_CONFIGURATION, apply_policy, apply_trust, eventually,
        harness, metric_sum, policy_ready, trust_condition, wait_policy, wait_trust,
    },
};

/// Registers the operator's webhook once for the whole binary.
pub(crate) async fn register(client: &kube::Client) {
    harness().require_loopback("registering the webhook by url");
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let wanted = json!({
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
    });
    let configuration = serde_json::from_value(wanted.clone()).unwrap();
    match api.create(&PostParams::default(), &configuration).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // A cluster that outlives the stack (PASSPORT_E2E_KUBECONFIG) may keep the
            // registration of an earlier run, whose operator listened elsewhere: point it here.
            let current = api.get(WEBHOOK_CONFIGURATION).await.unwrap();
            let stale =
                current.webhooks.unwrap_or_default().iter().any(|h| {
                    h.client_config.url.as_deref() != Some(harness().webhook_url.as_str())
                });
            if stale {
                let webhooks = json!({"webhooks": wanted["webhooks"]});
                api.patch(
                    WEBHOOK_CONFIGURATION,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&webhooks),
                )
                .await
                .unwrap();
            }
        }
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

pub(crate) fn pod(name: &str, service_account: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"serviceAccountName": service_account, "containers": [{"name": "app", "image": "registry.example.com/app:1"}]}
    }))
    .unwrap()
}

pub(crate) fn env(pod: &Pod, name: &str) -> Option<String> {
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
    let ns = aws_namespace(&client, "hook", &["other"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let role = naming::aws_role_name(CLUSTER, &ns, "api");
    let arn = format!("arn:aws:iam::{ACCOUNT_ID}:role/passport/{role}");
    // The API server may need a moment to see the patched caBundle; retry with new names.
    let injected = injected_pod(&pods, "app", "api")
        .await
        .unwrap_or_else(|| panic!("no pod was injected\n{}", h.operator_log()));
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

    // The injection's audit line, on the operator's standard output; none for the other pod.
    let pod_name = injected.name_any();
    let audit = h
        .audit_when("the injected pod", |audit| {
            audit.iter().any(|l| {
                l["message"] == "admission"
                    && l["namespace"] == ns.as_str()
                    && l["pod"] == pod_name.as_str()
            })
        })
        .await;
    let admissions: Vec<_> = audit
        .iter()
        .filter(|l| l["message"] == "admission" && l["namespace"] == ns.as_str())
        .collect();
    let line = admissions
        .iter()
        .find(|l| l["pod"] == injected.name_any().as_str())
        .unwrap_or_else(|| panic!("no admission audit line for the pod: {audit:?}"));
    assert_eq!(line["target"], "audit");
    assert_eq!(line["decision"], "admitted");
    assert_eq!(line["service_account"], "api");
    assert_eq!(line["applied"], format!("{ns}/api"));
    assert!(
        !line["correlation_id"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let trace = line["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("names service account api"), "{trace}");
    assert!(
        admissions.iter().all(|l| l["service_account"] != "other"),
        "a pod no policy names has no audit line: {admissions:?}"
    );

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

/// Creates a pod of `service_account`, retrying while the API server catches up with the
/// webhook configuration; returns the first pod the webhook injected.
pub(crate) async fn injected_pod(
    pods: &Api<Pod>,
    prefix: &str,
    service_account: &str,
) -> Option<Pod> {
    for i in 0..50 {
        if let Ok(created) = pods
            .create(
                &PostParams::default(),
                &pod(&format!("{prefix}{i}"), service_account),
            )
            .await
            && env(&created, "AWS_ROLE_ARN").is_some()
        {
            return Some(created);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    None
}

/// A namespace with an AWS trust and a Ready policy for service account `api`, and the other
/// service accounts `extra`.
pub(crate) async fn aws_namespace(client: &kube::Client, prefix: &str, extra: &[&str]) -> String {
    let h = harness();
    let trust = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let ns = h.namespace(client, prefix, &[(TRUST_LABEL, &trust)]).await;
    let mut names = vec!["api"];
    names.extend_from_slice(extra);
    h.service_accounts(client, &ns, &names).await;
    apply_trust(client, &trust_yaml(&trust, "")).await;
    wait_trust(client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    apply_policy(
        client,
        &ns,
        &format!("metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n"),
    )
    .await;
    wait_policy(client, &ns, "api", "Ready", policy_ready).await;
    ns
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_outage_refuses_pods_only_in_passport_namespaces() {
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    register(&client).await;
    let ns = aws_namespace(&client, "outage", &[]).await;
    let elsewhere = h.namespace(&client, "elsewhere", &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert!(injected_pod(&pods, "before", "api").await.is_some());

    h.kill_operator();
    let refused = pods
        .create(&PostParams::default(), &pod("during", "api"))
        .await
        .expect_err("failurePolicy Fail refuses pods of Passport namespaces while it is down");
    let kube::Error::Api(status) = refused else {
        panic!("not an API error: {refused:?}");
    };
    assert!(
        status
            .message
            .contains("failed calling webhook \"pods.passport.dev\""),
        "{}",
        status.message
    );
    // Namespaces without Passport's label never reach the webhook.
    Api::<Pod>::namespaced(client.clone(), &elsewhere)
        .create(&PostParams::default(), &pod("unaffected", "default"))
        .await
        .expect("a namespace outside Passport is unaffected by its outage");

    h.start_operator().unwrap();
    assert!(
        injected_pod(&pods, "after", "api").await.is_some(),
        "the webhook came back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_near_expiry_is_renewed_and_served_without_a_restart() {
    use k8s_openapi::api::core::v1::Secret;
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    register(&client).await;
    let ns = aws_namespace(&client, "rotate", &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert!(injected_pod(&pods, "before", "api").await.is_some());

    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let before = secrets.get("passport-webhook-tls").await.unwrap();
    let cert = |s: &Secret| s.data.as_ref().and_then(|d| d.get("tls.crt")).cloned();
    let ca = |s: &Secret| s.data.as_ref().and_then(|d| d.get("ca.crt")).cloned();
    // Pretend the certificate expires tomorrow: inside the renewal window.
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
    eventually("the renewal", || async {
        let now = secrets.get("passport-webhook-tls").await.unwrap();
        cert(&now) != cert(&before)
    })
    .await;
    let after = secrets.get("passport-webhook-tls").await.unwrap();
    assert_eq!(
        ca(&after),
        ca(&before),
        "the CA, and so the caBundle, is kept"
    );
    // Give the server its reload period, then admit through the new certificate.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    assert!(injected_pod(&pods, "after", "api").await.is_some());
    assert!(
        h.operator_log()
            .contains("reloaded the webhook's serving certificate")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_clouds_own_loader_gets_credentials_from_an_injected_pods_files() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    register(&client).await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let ns = h
        .namespace(
            &client,
            "sdk",
            &[(crate::aws::TRUST_LABEL, &format!("sdk-{id}"))],
        )
        .await;
    h.service_accounts(&client, &ns, &["shop", "nobody"]).await;
    // The demo's trusts and policies, renamed for this namespace.
    crate::sdks::apply_demo(&client, &ns, &format!("sdk-{id}"), id).await;
    for cloud in ["aws", "gcp", "azure"] {
        wait_policy(
            &client,
            &ns,
            &format!("shop-{cloud}"),
            "Ready",
            policy_ready,
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let shop = injected_pod(&pods, "shop", "shop")
        .await
        .expect("the shop pod is injected");
    let nobody = pods
        .create(&PostParams::default(), &pod("nobody", "nobody"))
        .await
        .unwrap();
    assert_eq!(env(&nobody, "AWS_ROLE_ARN"), None);

    // What a node writes for the pods, then each cloud's own loader with only that.
    let root = h.stack.dir().join(format!("pods-{id}"));
    let kubelet = passport_e2e::kubelet::Kubelet::new(client.clone(), &root);
    for name in [shop.name_any(), "nobody".to_owned()] {
        kubelet.materialise(&ns, &name).await.unwrap();
    }
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../e2e/scripts/demo_exchange.py"
    );
    let ca = h.stack.apiserver.ca_path();
    let run = |pod: &Pod| {
        let file = root.join(format!("{}.json", pod.name_any()));
        std::fs::write(&file, serde_json::to_vec(&pods_json(pod)).unwrap()).unwrap();
        std::process::Command::new(python)
            .args([
                script,
                file.to_str().unwrap(),
                root.to_str().unwrap(),
                "app",
            ])
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("AWS_CA_BUNDLE", &ca)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .output()
            .unwrap()
    };
    let out = run(&pods.get(&shop.name_any()).await.unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("assumed-role/shop-{id}/")), "{text}");
    assert!(
        text.contains("payments-api@my-project.iam.gserviceaccount.com"),
        "{text}"
    );
    assert!(
        text.contains("6c2a5d7e-1f3b-4a8c-9d0e-2b4f6a8c0e1d"),
        "{text}"
    );

    // A pod whose service account no policy names has nothing to exchange.
    let out = run(&pods.get("nobody").await.unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert_eq!(text.matches("FAILED").count(), 3, "{text}");
}

fn pods_json(pod: &Pod) -> serde_json::Value {
    serde_json::to_value(pod).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_that_predate_their_policy_are_counted_and_their_owner_named() {
    use k8s_openapi::api::events::v1::Event;
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let trust = format!("early-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h
        .namespace(&client, "early", &[(TRUST_LABEL, &trust)])
        .await;
    h.service_accounts(&client, &ns, &["api"]).await;
    // Created before the policy: the namespace is not enabled yet, so no webhook sees it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod("early", "api"))
        .await
        .unwrap();
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
    let policy = wait_policy(
        &client,
        &ns,
        "api",
        "Ready with the early pod counted",
        |p| {
            policy_ready(p) && p.status.as_ref().and_then(|s| s.pods_without_credentials) == Some(1)
        },
    )
    .await;
    assert_eq!(policy.status.unwrap().pods_without_credentials, Some(1));
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    eventually("a PodsWithoutCredentials Event naming the pod", || async {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("PodsWithoutCredentials")
                    && e.note.as_deref().is_some_and(|n| n.contains("Pod/early"))
            })
    })
    .await;
}

/// Pods of one template (a ReplicaSet's: `generateName` and the same spec) reach admission as
/// the same bytes, on the real API server as on the emulator (both name a pod after mutating
/// admission): the webhook answers them from its memo, and sees a change of their policy at
/// the next pod.
#[tokio::test(flavor = "multi_thread")]
async fn pods_of_one_template_are_answered_from_the_memo_until_their_policy_changes() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    register(&client).await;
    let ns = aws_namespace(&client, "memo", &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    injected_pod(&pods, "warm", "api")
        .await
        .unwrap_or_else(|| panic!("no pod was injected\n{}", h.operator_log()));
    let template: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "api-", "labels": {"app": "api"}},
        "spec": {"serviceAccountName": "api", "containers": [{"name": "app", "image": "registry.example.com/app:1"}]}
    }))
    .unwrap();
    let series =
        |result: &str| format!("passport_webhook_memo_lookups_total{{result=\"{result}\"}}");
    let (hits, stale) = (series("hit"), series("stale"));
    let hits_before = metric_sum(&h.metrics_url, &hits).await;
    let (mut created, mut token_volumes) = (Vec::new(), std::collections::BTreeSet::new());
    // A status write of the policy (its controller's) between two pods makes the next one
    // stale rather than a hit: a few more pods than two leave room for that.
    for _ in 0..8 {
        let pod = pods
            .create(&PostParams::default(), &template)
            .await
            .unwrap();
        assert!(
            env(&pod, "AWS_ROLE_ARN").is_some(),
            "{:?}",
            pod.spec.as_ref().map(|s| &s.containers[0].env)
        );
        let token_volume = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find(|v| v.name.starts_with("kube-api-access-")))
            .map(|v| v.name.clone());
        token_volumes.insert(token_volume.unwrap_or_else(|| panic!("no token volume: {pod:?}")));
        created.push(pod.name_any());
        if metric_sum(&h.metrics_url, &hits).await >= hits_before + 2.0 {
            break;
        }
    }
    assert!(
        metric_sum(&h.metrics_url, &hits).await >= hits_before + 2.0,
        "pods {created:?} were all decided afresh: {}",
        reqwest::get(&h.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .filter(|l| l.contains("memo"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Each pod had a token volume of its own name (the API server's ServiceAccount admission
    // names it, before the webhook): the memo's key leaves the name out.
    assert_eq!(token_volumes.len(), created.len(), "{token_volumes:?}");
    // Each pod has its own audit line, with its own request's UID, and the trace of the one
    // decision: the first pod's, written afresh, and the others', written by the memo.
    let of_template = |l: &&serde_json::Value| {
        l["message"] == "admission" && l["namespace"] == ns.as_str() && l["pod"] == "api-*"
    };
    let audit = h
        .audit_when("each pod of the template", |audit| {
            audit.iter().filter(of_template).count() >= created.len()
        })
        .await;
    let lines: Vec<&serde_json::Value> = audit.iter().filter(of_template).collect();
    let ids: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["correlation_id"].as_str())
        .collect();
    assert_eq!(ids.len(), created.len(), "{audit:?}");
    let traces: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l["trace"].as_str()).collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert!(
        traces
            .iter()
            .all(|t| t.contains("names service account api")),
        "{traces:?}"
    );

    // The policy now refuses images outside docker.io: the next pod of the template is
    // refused, once the webhook's store has the change.
    let trust = Api::<passport_crds::AccessPolicy>::namespaced(client.clone(), &ns)
        .get("api")
        .await
        .unwrap()
        .spec
        .trust_ref
        .name;
    let stale_before = metric_sum(&h.metrics_url, &stale).await;
    apply_policy(
        &client,
        &ns,
        &format!(
            "metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n  enforcement: Reject\n  conditions:\n    images: {{allowedPrefixes: [docker.io/]}}\n"
        ),
    )
    .await;
    eventually("the template's next pod refused", || async {
        pods.create(&PostParams::default(), &template)
            .await
            .is_err_and(|e| e.to_string().contains("condition images failed"))
    })
    .await;
    assert!(metric_sum(&h.metrics_url, &stale).await > stale_before);
}
