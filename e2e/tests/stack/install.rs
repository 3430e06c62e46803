//! The install manifests under `config/`, rendered by `kubectl kustomize` as a user renders
//! them: least-privilege RBAC without wildcards, a webhook registration that can only block
//! Passport's own namespaces, a hardened Deployment, and overlays that add or remove exactly
//! what they say. The real API server then validates every rendered object (`real_only`).

use std::process::Command;

use serde_json::Value;

/// `kubectl kustomize config/<dir>`, parsed into objects.
pub fn render(dir: &str) -> Vec<Value> {
    let path = format!("{}/../config/{dir}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("kubectl")
        .args(["kustomize", &path])
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl kustomize {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_json::to_value(
                <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap(),
            )
            .unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn one<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind}/{name} in {objects:#?}");
    found[0]
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

/// Every (group, resource, verb) granted by the RBAC objects, `*` included if any.
fn granted(objects: &[Value]) -> Vec<(String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = Vec::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for rule in role["rules"].as_array().unwrap() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

fn grants(objects: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    granted(objects)
        .iter()
        .any(|(g, r, v)| g == group && r == resource && v == verb)
}

#[test]
fn the_default_install_is_least_privilege_hardened_and_scoped() {
    let objects = render("default");
    assert_eq!(
        kinds(&objects)
            .into_iter()
            .filter(|k| !k.starts_with("ConfigMap/"))
            .collect::<Vec<_>>(),
        [
            "ClusterRole/passport-operator",
            "ClusterRole/passport-webhook-ca",
            "ClusterRoleBinding/passport-operator",
            "ClusterRoleBinding/passport-webhook-ca",
            "CustomResourceDefinition/accesspolicies.passport.dev",
            "CustomResourceDefinition/federatedtrusts.passport.dev",
            "Deployment/passport",
            "MutatingWebhookConfiguration/passport",
            "Namespace/passport-system",
            "PodDisruptionBudget/passport",
            "PriorityClass/passport-critical",
            "Role/passport-leader-election",
            "Role/passport-webhook-tls",
            "RoleBinding/passport-leader-election",
            "RoleBinding/passport-webhook-tls",
            "Service/passport-metrics",
            "Service/passport-webhook",
            "ServiceAccount/passport",
        ]
    );
    // Namespaced objects all land in passport-system.
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        let cluster_scoped = matches!(
            kind,
            "Namespace"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "CustomResourceDefinition"
                | "MutatingWebhookConfiguration"
                | "PriorityClass"
        );
        assert_eq!(
            object["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some("passport-system"),
            "{kind}"
        );
    }

    // RBAC: no wildcard anywhere, no token minting in the base, Secrets only in the namespace.
    for (group, resource, verb) in granted(&objects) {
        for field in [&group, &resource, &verb] {
            assert!(
                !field.contains('*'),
                "a wildcard: {group} {resource} {verb}"
            );
        }
    }
    assert!(!grants(&objects, "", "serviceaccounts/token", "create"));
    for role in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        let rules = role["rules"].to_string();
        assert!(!rules.contains("secrets"), "{rules}");
        assert!(!rules.contains("leases"), "{rules}");
    }
    let webhook_ca = one(&objects, "ClusterRole", "passport-webhook-ca");
    assert_eq!(
        webhook_ca["rules"][0]["resourceNames"],
        serde_json::json!(["passport"])
    );
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "passport", "namespace": "passport-system"}])
        );
    }

    // The webhook can only ever block namespaces Passport (or their owner) labelled.
    let configuration = one(&objects, "MutatingWebhookConfiguration", "passport");
    let hook = &configuration["webhooks"][0];
    assert_eq!(
        hook["namespaceSelector"],
        serde_json::json!({"matchLabels": {"passport.dev/enabled": "true"}})
    );
    assert_eq!(
        hook["objectSelector"]["matchExpressions"][0],
        serde_json::json!({"key": "app.kubernetes.io/part-of", "operator": "NotIn", "values": ["passport"]})
    );
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(
        hook["rules"][0]["operations"],
        serde_json::json!(["CREATE"])
    );
    assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 10);
    assert!(
        hook["clientConfig"].get("caBundle").is_none(),
        "Passport patches it"
    );
    assert_eq!(
        hook["clientConfig"]["service"],
        serde_json::json!({"namespace": "passport-system", "name": "passport-webhook", "path": "/mutate", "port": 443})
    );

    // The Deployment: two replicas, hardened, probed, bounded, spread, and not mutated itself.
    let deployment = one(&objects, "Deployment", "passport");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "passport"
    );
    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], "passport");
    assert_eq!(pod["priorityClassName"], "passport-critical");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        pod["topologySpreadConstraints"].as_array().unwrap().len(),
        2
    );
    let container = &pod["containers"][0];
    assert!(
        container["image"]
            .as_str()
            .unwrap()
            .starts_with("ghcr.io/passport-dev/passport:")
    );
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "health", "{probe}");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "POD_NAMESPACE",
        "POD_NAME",
        "PASSPORT_WEBHOOK_ADDR",
        "PASSPORT_HEALTH_ADDR",
    ] {
        assert!(env.contains(&name), "{name} in {env:?}");
    }
    // Its settings come from the generated ConfigMap, which names the cluster.
    let params_name = container["envFrom"][0]["configMapRef"]["name"]
        .as_str()
        .unwrap();
    let params = one(&objects, "ConfigMap", params_name);
    assert!(params["data"].get("PASSPORT_CLUSTER_NAME").is_some());
    let pdb = one(&objects, "PodDisruptionBudget", "passport");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let service = one(&objects, "Service", "passport-webhook");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn the_verify_overlay_adds_only_token_requests() {
    let base = render("default");
    let verify = render("verify");
    let mut added = granted(&verify);
    for grant in granted(&base) {
        let at = added.iter().position(|g| *g == grant).expect("kept");
        added.remove(at);
    }
    assert_eq!(
        added,
        [(
            String::new(),
            "serviceaccounts/token".to_owned(),
            "create".to_owned()
        )]
    );
    assert_eq!(
        verify.len(),
        base.len() + 2,
        "a ClusterRole and its binding"
    );
}

#[test]
fn the_cert_manager_overlay_drops_the_self_managed_certificate_and_its_rights() {
    let objects = render("certmanager");
    assert!(!grants(&objects, "", "secrets", "create"));
    assert!(!grants(&objects, "", "secrets", "update"));
    assert!(!grants(
        &objects,
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "patch"
    ));
    let configuration = one(&objects, "MutatingWebhookConfiguration", "passport");
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "passport-system/passport-webhook"
    );
    let certificate = one(&objects, "Certificate", "passport-webhook");
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        "passport-webhook.passport-system.svc"
    );
    let secret = certificate["spec"]["secretName"].as_str().unwrap();
    let deployment = one(&objects, "Deployment", "passport");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], secret);
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        value("PASSPORT_WEBHOOK_TLS_DIR").unwrap(),
        pod["containers"][0]["volumeMounts"][0]["mountPath"]
    );
    assert_eq!(value("PASSPORT_WEBHOOK_CONFIGURATION").unwrap(), "");
    // Everything else is the default install's.
    assert_eq!(
        granted(&objects).len() + 5,
        granted(&render("default")).len(),
        "only the Secret and caBundle rules are gone"
    );
}
