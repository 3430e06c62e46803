//! A kubelet stand-in: writes a pod's volumes (projected service-account tokens, downward API,
//! ConfigMaps, Secrets, emptyDirs) to `<root>/<namespace>/<pod>/<volume>/...` and resolves each
//! container's environment, so a test can run a process as the container would see it.
//!
//! Tokens come from the TokenRequest API bound to the pod, exactly as the real kubelet asks for
//! them, so this works against the emulator and a real API server alike. Files are written once
//! (no refresh at 80% of the lifetime, no `..data` symlink swap) and no process is started:
//! callers run their program with [`ContainerView::env_on_host`] and the host paths.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt as _, watcher},
};
use serde_json::Value;

/// Materialises pods' volumes below a root folder.
#[derive(Clone)]
pub struct Kubelet {
    client: Client,
    root: PathBuf,
}

/// A materialised pod.
#[derive(Clone, Debug)]
pub struct PodFiles {
    pub pod: Pod,
    /// `<root>/<namespace>/<pod>`.
    pub dir: PathBuf,
    /// Volume name -> its host folder.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Container (and init container) name -> what it would see.
    pub containers: BTreeMap<String, ContainerView>,
}

/// A container's environment and mounts.
#[derive(Clone, Debug, Default)]
pub struct ContainerView {
    pub env: BTreeMap<String, String>,
    /// Container mount path -> host folder (or file, with `subPath`).
    pub mounts: BTreeMap<String, PathBuf>,
}

impl ContainerView {
    /// Where a path inside the container is on the host (longest matching mount wins).
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        self.mounts
            .iter()
            .filter(|(mount, _)| {
                container_path == mount.as_str()
                    || container_path.starts_with(&format!("{}/", mount.trim_end_matches('/')))
            })
            .max_by_key(|(mount, _)| mount.len())
            .map(|(mount, host)| {
                let rest = container_path[mount.len()..].trim_start_matches('/');
                if rest.is_empty() {
                    host.clone()
                } else {
                    host.join(rest)
                }
            })
    }

    /// The environment with every value that is a path under a mount rewritten to the host path,
    /// e.g. `AWS_WEB_IDENTITY_TOKEN_FILE`.
    pub fn env_on_host(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| {
                let value = if v.starts_with('/') {
                    self.host_path(v)
                        .map_or_else(|| v.clone(), |p| p.display().to_string())
                } else {
                    v.clone()
                };
                (k.clone(), value)
            })
            .collect()
    }
}

impl ContainerView {
    /// `text` with every container mount path replaced by its host folder, for files that name
    /// other files (a GCP credential configuration's `credential_source.file`, say).
    pub fn rewrite_text(&self, text: &str) -> String {
        let mut mounts: Vec<(&String, &PathBuf)> = self.mounts.iter().collect();
        // Longest first, so /a/b is not rewritten as /a plus a leftover.
        mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        let mut out = text.to_owned();
        for (mount, host) in mounts {
            let mount = mount.trim_end_matches('/');
            if !mount.is_empty() {
                out = out.replace(mount, &host.display().to_string());
            }
        }
        out
    }
}

impl Kubelet {
    pub fn new(client: Client, root: impl Into<PathBuf>) -> Self {
        Self {
            client,
            root: root.into(),
        }
    }

    /// Watches pods in all namespaces, materialises each new one (once per pod uid) and reports
    /// it Running with ready containers, as a kubelet would once they started. Abort the handle
    /// to stop.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(self.client.clone());
            let mut seen = HashSet::new();
            let mut events = watcher(pods, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(pod) = event else { continue };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if !seen.insert(uid) {
                    continue;
                }
                let started = match self.write_pod(&pod).await {
                    Ok(_) => self.report_running(&pod).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = started {
                    tracing::warn!(error = %format!("{error:#}"), "kubelet could not start a pod");
                }
            }
        })
    }

    /// Patches the pod's status to Running with every container ready.
    async fn report_running(&self, pod: &Pod) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())?.to_string();
        let statuses: Vec<Value> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                serde_json::json!({ "name": c.name, "image": c.image, "ready": true, "started": true,
                    "restartCount": 0, "state": { "running": { "startedAt": now } } })
            })
            .collect();
        let status = serde_json::json!({ "status": {
            "phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1", "startTime": now,
            "conditions": [
                { "type": "Initialized", "status": "True", "lastTransitionTime": now },
                { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
                { "type": "Ready", "status": "True", "lastTransitionTime": now },
            ],
            "containerStatuses": statuses,
        } });
        Api::<Pod>::namespaced(self.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .with_context(|| format!("reporting pod {ns}/{name} running"))?;
        Ok(())
    }

    /// Reads the pod and writes its volumes (its status is left alone).
    pub async fn materialise(&self, namespace: &str, name: &str) -> anyhow::Result<PodFiles> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .with_context(|| format!("reading pod {namespace}/{name}"))?;
        self.write_pod(&pod).await
    }

    /// The folder of a pod's files.
    pub fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join(namespace).join(name)
    }

    async fn write_pod(&self, pod: &Pod) -> anyhow::Result<PodFiles> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let dir = self.pod_dir(&ns, &name);
        let pod_json = serde_json::to_value(pod)?;
        let spec = pod.spec.clone().unwrap_or_default();
        let mut volumes = BTreeMap::new();
        for volume in spec.volumes.iter().flatten() {
            let vdir = dir.join(&volume.name);
            std::fs::create_dir_all(&vdir)
                .with_context(|| format!("creating {}", vdir.display()))?;
            let v = serde_json::to_value(volume)?;
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            for source in v["projected"]["sources"].as_array().into_iter().flatten() {
                files.extend(self.source_files(pod, &pod_json, &ns, source).await?);
            }
            if !v["downwardAPI"].is_null() {
                files.extend(downward_files(&pod_json, &v["downwardAPI"])?);
            }
            if !v["configMap"].is_null() {
                files.extend(self.config_map_files(&ns, &v["configMap"]).await?);
            }
            if !v["secret"].is_null() {
                let mut s = v["secret"].clone();
                s["name"] = s["secretName"].clone();
                files.extend(self.secret_files(&ns, &s).await?);
            }
            for (path, bytes) in files {
                let file = vdir.join(&path);
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&file, bytes)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            volumes.insert(volume.name.clone(), vdir);
        }
        let mut containers = BTreeMap::new();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let view = self.container_view(&ns, &pod_json, c, &volumes).await?;
            containers.insert(c.name.clone(), view);
        }
        Ok(PodFiles {
            pod: pod.clone(),
            dir,
            volumes,
            containers,
        })
    }

    async fn source_files(
        &self,
        pod: &Pod,
        pod_json: &Value,
        ns: &str,
        source: &Value,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let sat = &source["serviceAccountToken"];
        if !sat.is_null() {
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            let mut spec = serde_json::json!({
                "expirationSeconds": sat["expirationSeconds"].as_i64().unwrap_or(3600),
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod",
                    "name": pod.metadata.name, "uid": pod.metadata.uid,
                },
            });
            if let Some(audience) = sat["audience"].as_str() {
                spec["audiences"] = serde_json::json!([audience]);
            }
            let request: TokenRequest = serde_json::from_value(serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec,
            }))?;
            let answer = Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
                .create_token_request(&sa, &PostParams::default(), &request)
                .await
                .with_context(|| format!("requesting a token for {ns}/{sa}"))?;
            let token = answer
                .status
                .and_then(|s| s.token)
                .context("the TokenRequest answer has no token")?;
            let path = sat["path"].as_str().unwrap_or("token").to_owned();
            return Ok(vec![(path, token.into_bytes())]);
        }
        if !source["downwardAPI"].is_null() {
            return downward_files(pod_json, &source["downwardAPI"]);
        }
        if !source["configMap"].is_null() {
            return self.config_map_files(ns, &source["configMap"]).await;
        }
        if !source["secret"].is_null() {
            return self.secret_files(ns, &source["secret"]).await;
        }
        Ok(Vec::new())
    }

    async fn config_map_files(
        &self,
        ns: &str,
        source: &Value,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        self.key_files(ns, source, |cm: ConfigMap| {
            cm.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect()
        })
        .await
    }

    async fn secret_files(
        &self,
        ns: &str,
        source: &Value,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        self.key_files(ns, source, |secret: Secret| {
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        })
        .await
    }

    /// The files of a configMap or secret source (`name`, `optional`, `items`), read from the
    /// object of kind `K` through `data`.
    async fn key_files<K>(
        &self,
        ns: &str,
        source: &Value,
        data: impl FnOnce(K) -> BTreeMap<String, Vec<u8>>,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = source["name"].as_str().unwrap_or_default();
        let optional = source["optional"] == Value::Bool(true);
        let data = match Api::<K>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(object) => data(object),
            None if optional => BTreeMap::new(),
            None => anyhow::bail!("{} {ns}/{name} not found", K::kind(&()).to_lowercase()),
        };
        Ok(select_items(data, &source["items"]))
    }

    async fn container_view(
        &self,
        ns: &str,
        pod_json: &Value,
        container: &Container,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> anyhow::Result<ContainerView> {
        let mut env = BTreeMap::new();
        for from in container.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let mut data = BTreeMap::new();
            if let Some(cm) = &from.config_map_ref {
                data = self
                    .config_map_files(
                        ns,
                        &serde_json::json!({ "name": cm.name, "optional": cm.optional }),
                    )
                    .await?
                    .into_iter()
                    .collect();
            } else if let Some(s) = &from.secret_ref {
                data = self
                    .secret_files(
                        ns,
                        &serde_json::json!({ "name": s.name, "optional": s.optional }),
                    )
                    .await?
                    .into_iter()
                    .collect();
            }
            for (k, v) in data {
                env.insert(
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        for var in container.env.iter().flatten() {
            let value = match &var.value_from {
                None => expand(var.value.as_deref().unwrap_or_default(), &env),
                Some(from) => {
                    if let Some(field) = &from.field_ref {
                        field_value(pod_json, &field.field_path).unwrap_or_default()
                    } else if let Some(key) = &from.config_map_key_ref {
                        let files = self
                            .config_map_files(
                                ns,
                                &serde_json::json!({ "name": key.name, "optional": key.optional }),
                            )
                            .await?;
                        lookup(&files, &key.key)
                    } else if let Some(key) = &from.secret_key_ref {
                        let files = self
                            .secret_files(
                                ns,
                                &serde_json::json!({ "name": key.name, "optional": key.optional }),
                            )
                            .await?;
                        lookup(&files, &key.key)
                    } else {
                        String::new()
                    }
                }
            };
            env.insert(var.name.clone(), value);
        }
        let mut mounts = BTreeMap::new();
        for m in container.volume_mounts.iter().flatten() {
            let Some(host) = volumes.get(&m.name) else {
                continue;
            };
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => host.join(sub),
                None => host.clone(),
            };
            mounts.insert(m.mount_path.clone(), host);
        }
        Ok(ContainerView { env, mounts })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn lookup(files: &[(String, Vec<u8>)], key: &str) -> String {
    files
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// All keys, or only the listed `items` under their `path`.
fn select_items(data: BTreeMap<String, Vec<u8>>, items: &Value) -> Vec<(String, Vec<u8>)> {
    match items.as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| {
                let key = i["key"].as_str()?;
                let path = i["path"].as_str().unwrap_or(key);
                data.get(key).map(|v| (path.to_owned(), v.clone()))
            })
            .collect(),
        _ => data.into_iter().collect(),
    }
}

/// Files of a downwardAPI volume or projection.
fn downward_files(pod: &Value, source: &Value) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in source["items"].as_array().into_iter().flatten() {
        let path = item["path"]
            .as_str()
            .context("downwardAPI item without path")?;
        let Some(field) = item["fieldRef"]["fieldPath"].as_str() else {
            continue;
        };
        let value = field_value(pod, field)
            .with_context(|| format!("unsupported downwardAPI fieldPath {field:?}"))?;
        out.push((path.to_owned(), value.into_bytes()));
    }
    Ok(out)
}

/// A downward-API `fieldPath` of the pod, formatted as the kubelet writes it.
pub fn field_value(pod: &Value, field: &str) -> Option<String> {
    let map_lines = |map: &Value| {
        let mut lines: Vec<String> = map
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    serde_json::to_string(v.as_str().unwrap_or_default()).unwrap_or_default()
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    };
    for (prefix, key) in [
        ("metadata.annotations", "annotations"),
        ("metadata.labels", "labels"),
    ] {
        if field == prefix {
            return Some(map_lines(&pod["metadata"][key]));
        }
        if let Some(rest) = field
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
        {
            return Some(
                pod["metadata"][key][rest]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let value = match field {
        "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.serviceAccountName"
        | "spec.nodeName"
        | "status.podIP"
        | "status.hostIP" => field.split('.').fold(pod, |v, part| &v[part]),
        _ => return None,
    };
    Some(value.as_str().unwrap_or_default().to_owned())
}

/// `$(VAR)` references to variables defined earlier, as the kubelet expands them; `$$` is a
/// literal `$`, and unknown references are left as written.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_expand_like_the_kubelet() {
        let env: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
        assert_eq!(expand("$(A)/$(B)/$$(A)/$", &env), "x/$(B)/$(A)/$");
    }
}
