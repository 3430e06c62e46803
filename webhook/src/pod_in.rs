//! A pod as the review reads it: only the fields `mutate` reads or changes, parsed straight into
//! k8s-openapi's types, the rest of the pod skipped unparsed. The metadata's name, generateName,
//! namespace, labels and annotations; the spec's service account, volumes (of a volume that is
//! not Passport's, only its name: `mutate` never replaces it), containers and init containers;
//! of each container its name, image, env (names and values), envFrom and volume mounts.
//! Everything else (the pod's managedFields, resources, probes, ports, tolerations, status) is
//! neither read nor written by a mutation, and the patch is built from the parts `mutate`
//! changes alone (`patch::Snapshot`), so skipping it changes no response: the review's tests
//! hold the patch of this pod to that of `mutate` on the whole pod.

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The pod of an AdmissionReview, parsed as `mutate` reads it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodIn {
    #[serde(default, deserialize_with = "metadata")]
    metadata: ObjectMeta,
    spec: Option<SpecIn>,
}

impl k8s_openapi::Resource for PodIn {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodIn {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaIn {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

fn metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    // `null` is the default, as k8s-openapi reads it.
    let meta = Option::<MetaIn>::deserialize(deserializer)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: meta.name,
        generate_name: meta.generate_name,
        namespace: meta.namespace,
        labels: meta.labels,
        annotations: meta.annotations,
        ..ObjectMeta::default()
    })
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecIn {
    service_account_name: Option<String>,
    service_account: Option<String>,
    /// Absent or `null` is no containers, as k8s-openapi reads it (admission comes before
    /// validation, which refuses such a pod).
    containers: Option<Vec<ContainerIn>>,
    init_containers: Option<Vec<ContainerIn>>,
    volumes: Option<Vec<VolumeIn>>,
}

/// A pod volume as `mutate` reads it. One of Passport's (`passport-` names: an earlier
/// invocation's) may be replaced, and is parsed whole; of any other, `mutate` reads the name
/// alone (to count it, and to find its own), so the rest is skipped unparsed. The API server
/// writes `name` first, as in its Go type; a volume whose other members come first is parsed
/// whole. A k8s-openapi `Volume` is over 3 KB, moved at each step of the parse: the whole one
/// is boxed, and the volume is built once, in the pod's list (`Pod::from`).
#[derive(Clone, Debug)]
enum VolumeIn {
    Named(String),
    Whole(Box<Volume>),
}

impl From<VolumeIn> for Volume {
    fn from(volume: VolumeIn) -> Self {
        match volume {
            VolumeIn::Named(name) => Volume {
                name,
                ..Volume::default()
            },
            VolumeIn::Whole(volume) => *volume,
        }
    }
}

impl<'de> Deserialize<'de> for VolumeIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(VolumeVisitor)
    }
}

struct VolumeVisitor;

impl<'de> serde::de::Visitor<'de> for VolumeVisitor {
    type Value = VolumeIn;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a volume")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<VolumeIn, A::Error> {
        use serde::de::{Error as _, IgnoredAny};
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "name" && members.is_empty() {
                let name: String = map.next_value()?;
                if !name.starts_with(crate::grants::paths::VOLUME_PREFIX) {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    return Ok(VolumeIn::Named(name));
                }
                members.insert(key, serde_json::Value::String(name));
                continue;
            }
            members.insert(key, map.next_value()?);
        }
        serde_json::from_value(serde_json::Value::Object(members))
            .map(VolumeIn::Whole)
            .map_err(A::Error::custom)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerIn {
    /// Absent or `null` is empty, as k8s-openapi reads it.
    name: Option<String>,
    image: Option<String>,
    env: Option<Vec<EnvIn>>,
    env_from: Option<Vec<EnvFromSource>>,
    volume_mounts: Option<Vec<VolumeMount>>,
}

/// An env variable as `mutate` reads it: its name (never overwritten) and value (Passport's
/// own, on a reinvocation). `valueFrom` is skipped unparsed: `mutate` appends to env and never
/// reads or rewrites a variable it did not set, and one with `valueFrom` has no `value`.
#[derive(Clone, Debug, Deserialize)]
struct EnvIn {
    name: String,
    value: Option<String>,
}

impl From<EnvIn> for EnvVar {
    fn from(env: EnvIn) -> Self {
        EnvVar {
            name: env.name,
            value: env.value,
            value_from: None,
        }
    }
}

impl From<ContainerIn> for Container {
    fn from(c: ContainerIn) -> Self {
        Container {
            name: c.name.unwrap_or_default(),
            image: c.image,
            env: c.env.map(|env| env.into_iter().map(EnvVar::from).collect()),
            env_from: c.env_from,
            volume_mounts: c.volume_mounts,
            ..Container::default()
        }
    }
}

impl From<PodIn> for Pod {
    fn from(pod: PodIn) -> Self {
        Pod {
            metadata: pod.metadata,
            spec: pod.spec.map(|spec| PodSpec {
                service_account_name: spec.service_account_name,
                service_account: spec.service_account,
                containers: spec
                    .containers
                    .into_iter()
                    .flatten()
                    .map(Container::from)
                    .collect(),
                init_containers: spec
                    .init_containers
                    .map(|list| list.into_iter().map(Container::from).collect()),
                volumes: spec
                    .volumes
                    .map(|list| list.into_iter().map(Volume::from).collect()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Absent and `null` members read as k8s-openapi reads them, so no pod the full parse
    /// accepts is refused.
    #[test]
    fn absent_and_null_members_read_as_k8s_openapi_reads_them() {
        for pod in [
            serde_json::json!({}),
            serde_json::json!({"metadata": null, "spec": null}),
            serde_json::json!({"spec": {}}),
            serde_json::json!({"spec": {"containers": null, "volumes": null}}),
            serde_json::json!({"spec": {"containers": [{}, {"name": null, "env": null}]}}),
            serde_json::json!({"metadata": {"name": "p", "labels": null},
                "spec": {"containers": [{"name": "app", "image": "i", "ports": [{"containerPort": 1}]}],
                         "initContainers": [{"name": "init", "restartPolicy": "Always"}]}}),
            serde_json::json!({"spec": {"containers": [{"name": "app", "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "C", "value": null}]}]}}),
        ] {
            let full: Pod = serde_json::from_value(pod.clone()).unwrap();
            let slim: PodIn = serde_json::from_value(pod.clone()).unwrap();
            let mut expected = full.clone();
            // What `pod_in` leaves out.
            if let Some(spec) = expected.spec.as_mut() {
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    c.ports = None;
                    c.restart_policy = None;
                    for env in c.env.iter_mut().flatten() {
                        env.value_from = None;
                    }
                }
            }
            assert_eq!(Pod::from(slim), expected, "{pod}");
        }
    }

    /// Of a volume that is not Passport's, only the name is kept; Passport's own, and a volume
    /// whose name does not come first, are parsed whole.
    #[test]
    fn only_passports_volumes_are_parsed_whole() {
        // As text: the order of a volume's members is what is tested (a JSON value's map
        // sorts them).
        let token = r#"{"name":"passport-aws-token","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"audience":"sts.amazonaws.com","path":"token"}}]}}"#;
        let late = r#"{"configMap":{"name":"settings"},"name":"settings"}"#;
        let pod = format!(
            r#"{{"spec":{{"containers":[],"volumes":[{{"name":"kube-api-access","projected":{{"sources":[{{"configMap":{{"name":"kube-root-ca.crt"}}}}]}}}},{token},{late},{{"name":"scratch","emptyDir":"a member of the wrong type, never read"}}]}}}}"#
        );
        let slim: PodIn = serde_json::from_str(&pod).unwrap();
        let volumes = Pod::from(slim).spec.unwrap().volumes.unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kube-api-access",
                "passport-aws-token",
                "settings",
                "scratch"
            ]
        );
        assert_eq!(
            volumes[0],
            Volume {
                name: "kube-api-access".into(),
                ..Volume::default()
            }
        );
        assert_eq!(volumes[1], serde_json::from_str::<Volume>(token).unwrap());
        assert_eq!(volumes[2], serde_json::from_str::<Volume>(late).unwrap());
        assert!(volumes[3].empty_dir.is_none());
        let malformed = r#"{"spec":{"volumes":[{"projected":5,"name":"x"}]}}"#;
        assert!(serde_json::from_str::<PodIn>(malformed).is_err());
    }
}
