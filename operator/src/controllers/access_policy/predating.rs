//! Pods that predate their policy: the webhook acts only when a pod is created, so pods of a
//! policy's service accounts that were running before it (or before their namespace was
//! enabled) lack its credentials until they restart. Passport counts them and names their
//! owners; it restarts nothing itself. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use passport_crds::keys;

/// Pods without the policy's credentials, by owner (`Kind/name`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WithoutCredentials {
    pub count: usize,
    pub owners: BTreeMap<String, usize>,
}

/// The live pods of `service_accounts` whose `passport.dev/injected` does not name `policy`
/// (`namespace/name`); pods that opted out (`passport.dev/inject: "false"`) are not counted.
pub fn pods_without_credentials(
    pods: &[Pod],
    policy: &str,
    service_accounts: &[String],
) -> WithoutCredentials {
    let mut found = WithoutCredentials::default();
    for pod in pods {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
        let injected = annotations
            .get(keys::INJECTED)
            .is_some_and(|list| list.split(',').any(|p| p.trim() == policy));
        let opted_out = annotations.get(keys::INJECT).map(String::as_str) == Some("false");
        if finished || injected || opted_out || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if !service_accounts
            .iter()
            .any(|sa| sa == passport_webhook::service_account(pod))
        {
            continue;
        }
        let owner = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|refs| refs.first())
            .map(|o| format!("{}/{}", o.kind, o.name))
            .unwrap_or_else(|| format!("Pod/{}", pod.metadata.name.clone().unwrap_or_default()));
        found.count += 1;
        *found.owners.entry(owner).or_default() += 1;
    }
    found
}

/// The Event note: how many, whose, and the restart that fixes it.
pub fn note(found: &WithoutCredentials, namespace: &str) -> String {
    let owners: Vec<String> = found
        .owners
        .iter()
        .map(|(owner, n)| format!("{owner} ({n})"))
        .collect();
    let restart = found
        .owners
        .keys()
        .find_map(|owner| restart_command(owner, namespace))
        .unwrap_or_else(|| format!("kubectl delete pod <name> -n {namespace}"));
    format!(
        "{} running pod(s) started before this policy and have none of its credentials: {}; \
         restart them to pick them up, e.g. {restart}",
        found.count,
        owners.join(", ")
    )
}

/// The one-line restart for an owner, when it has one.
fn restart_command(owner: &str, namespace: &str) -> Option<String> {
    let (kind, name) = owner.split_once('/')?;
    let target = match kind {
        // A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`.
        "ReplicaSet" => format!(
            "deployment/{}",
            name.rsplit_once('-').map_or(name, |(d, _)| d)
        ),
        "StatefulSet" => format!("statefulset/{name}"),
        "DaemonSet" => format!("daemonset/{name}"),
        _ => return None,
    };
    Some(format!("kubectl rollout restart {target} -n {namespace}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(
        name: &str,
        sa: &str,
        annotations: serde_json::Value,
        owner: Option<(&str, &str)>,
    ) -> Pod {
        let mut pod = serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
            "spec": {"serviceAccountName": sa, "containers": []},
            "status": {"phase": "Running"}
        });
        if let Some((kind, owner)) = owner {
            pod["metadata"]["ownerReferences"] = serde_json::json!([{
                "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "u"
            }]);
        }
        serde_json::from_value(pod).unwrap()
    }

    #[test]
    fn only_live_pods_of_the_service_accounts_without_the_policy_are_counted() {
        let pods = [
            pod(
                "a-1",
                "api",
                serde_json::json!({}),
                Some(("ReplicaSet", "api-7d9f")),
            ),
            pod(
                "a-2",
                "api",
                serde_json::json!({}),
                Some(("ReplicaSet", "api-7d9f")),
            ),
            pod(
                "b",
                "api",
                serde_json::json!({"passport.dev/injected": "shop/other,shop/api"}),
                None,
            ),
            pod("c", "worker", serde_json::json!({}), None),
            pod(
                "d",
                "api",
                serde_json::json!({"passport.dev/inject": "false"}),
                None,
            ),
            pod(
                "e",
                "api",
                serde_json::json!({"passport.dev/injected": "shop/other"}),
                None,
            ),
        ];
        let found = pods_without_credentials(&pods, "shop/api", &["api".to_owned()]);
        assert_eq!(found.count, 3);
        assert_eq!(found.owners.get("ReplicaSet/api-7d9f"), Some(&2));
        assert_eq!(found.owners.get("Pod/e"), Some(&1));
        let note = note(&found, "shop");
        assert!(note.starts_with("3 running pod(s)"), "{note}");
        assert!(
            note.contains("kubectl rollout restart deployment/api -n shop"),
            "{note}"
        );
    }
}
