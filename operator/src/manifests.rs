//! Kubernetes manifests read from YAML files, by kind, for the offline commands (`passport plan`,
//! `passport mutate`): FederatedTrusts, AccessPolicies, and the Namespaces and ServiceAccounts
//! they use; for `passport mutate`, also the keys (never the values) of ConfigMaps and Secrets
//! that pods read through `envFrom`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use passport_crds::{AccessPolicy, FederatedTrust};
use passport_webhook::EnvSources;
use serde::Deserialize;

/// The label the API server puts on every namespace, with its name.
pub const METADATA_NAME: &str = "kubernetes.io/metadata.name";

/// The manifests, by kind.
#[derive(Default, Debug)]
pub struct Manifests {
    pub trusts: Vec<FederatedTrust>,
    pub policies: Vec<AccessPolicy>,
    pub namespaces: Vec<Namespace>,
    pub service_accounts: Vec<ServiceAccount>,
    /// Keys of ConfigMaps and Secrets, by namespace.
    pub env_sources: BTreeMap<String, EnvSources>,
}

/// A ConfigMap or Secret as far as `envFrom` goes: its name and keys.
#[derive(Deserialize)]
struct KeysOnly {
    metadata: NameOnly,
    #[serde(default)]
    data: BTreeMap<String, serde::de::IgnoredAny>,
    #[serde(default, rename = "binaryData")]
    binary_data: BTreeMap<String, serde::de::IgnoredAny>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
    namespace: Option<String>,
}

impl KeysOnly {
    fn into_parts(self) -> (String, String, BTreeSet<String>) {
        let keys = self
            .data
            .into_keys()
            .chain(self.binary_data.into_keys())
            .chain(self.string_data.into_keys())
            .collect();
        let namespace = self
            .metadata
            .namespace
            .unwrap_or_else(|| "default".to_owned());
        (namespace, self.metadata.name, keys)
    }
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(default)]
    kind: String,
}

impl Manifests {
    /// Reads every YAML document of `paths` (files, or folders of `*.yaml`/`*.yml`); kinds other
    /// than FederatedTrust, AccessPolicy, Namespace, ServiceAccount, ConfigMap and Secret are
    /// skipped.
    pub fn read(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut manifests = Self::default();
        for path in paths {
            for file in yaml_files(path)? {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                manifests
                    .add(&text)
                    .with_context(|| format!("parsing {}", file.display()))?;
            }
        }
        Ok(manifests)
    }

    /// Adds the documents of one YAML stream.
    pub fn add(&mut self, text: &str) -> anyhow::Result<()> {
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(document)?;
            if value.is_null() {
                continue;
            }
            let kind = serde_yaml::from_value::<TypeMeta>(value.clone())?.kind;
            match kind.as_str() {
                "FederatedTrust" => self.trusts.push(serde_yaml::from_value(value)?),
                "AccessPolicy" => self.policies.push(serde_yaml::from_value(value)?),
                "Namespace" => self.namespaces.push(serde_yaml::from_value(value)?),
                "ServiceAccount" => self.service_accounts.push(serde_yaml::from_value(value)?),
                "ConfigMap" | "Secret" => {
                    let (namespace, name, keys) =
                        serde_yaml::from_value::<KeysOnly>(value)?.into_parts();
                    let sources = self.env_sources.entry(namespace).or_default();
                    let by_name = if kind == "ConfigMap" {
                        &mut sources.config_maps
                    } else {
                        &mut sources.secrets
                    };
                    by_name.insert(name, keys);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn yaml_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

impl Manifests {
    /// A namespace's labels as the API server would have them: those of its manifest, or none,
    /// plus `kubernetes.io/metadata.name`. The flag says whether the manifest was found.
    pub fn namespace_labels(&self, namespace: &str) -> (BTreeMap<String, String>, bool) {
        let found = self
            .namespaces
            .iter()
            .find(|ns| ns.metadata.name.as_deref() == Some(namespace));
        let mut labels = found
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert(METADATA_NAME.to_owned(), namespace.to_owned());
        (labels, found.is_some())
    }

    /// The trust a policy names.
    pub fn trust(&self, name: &str) -> Option<&FederatedTrust> {
        self.trusts
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(name))
    }
}
