//! The resource registry: which group/version/resources the emulator serves (built-ins plus the
//! kinds of established CRDs), and how each behaves (scope, status subresource, schema, columns).

use std::collections::BTreeMap;

use serde_json::Value;

use super::status::GroupResource;

/// A subresource served with another kind than its parent (`serviceaccounts/token`).
#[derive(Clone, Debug)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Writes to the main resource keep the stored `status`; `/status` writes change only it.
    pub status_subresource: bool,
    /// Whether objects carry `metadata.generation` (custom resources, pods, CRDs and webhook
    /// configurations do; ConfigMaps, Secrets and the like do not).
    pub has_generation: bool,
    /// Served but not stored here (e.g. the `token` subresource's kind).
    pub extra_subresources: Vec<Subresource>,
    /// The version's `openAPIV3Schema`, for custom resources.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns`, for custom resources.
    pub columns: Vec<Value>,
    /// The CRD that defines this resource, if any.
    pub crd: Option<String>,
    /// Another resource's storage this one shares (events.k8s.io Events are core Events).
    pub storage_override: Option<String>,
}

pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ApiResource {
    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short_names: &[&str],
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: short_names.iter().map(|s| (*s).to_owned()).collect(),
            categories: Vec::new(),
            status_subresource: false,
            has_generation: false,
            extra_subresources: Vec::new(),
            schema: None,
            columns: Vec::new(),
            crd: None,
            storage_override: None,
        }
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource {
            group: self.group.clone(),
            resource: self.plural.clone(),
        }
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Where objects live in the store: all versions of a resource share it.
    pub fn storage_key(&self) -> String {
        self.storage_override
            .clone()
            .unwrap_or_else(|| format!("{}/{}", self.group, self.plural))
    }

    /// events.k8s.io/v1 Event, stored as a core v1 Event.
    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    pub fn is_pod(&self) -> bool {
        self.group.is_empty() && self.plural == "pods"
    }
}

/// Built-ins and CRD-defined resources.
#[derive(Debug)]
pub struct Registry {
    builtins: Vec<ApiResource>,
    /// CRD name -> its served versions.
    custom: BTreeMap<String, Vec<ApiResource>>,
}

impl Registry {
    pub fn new() -> Self {
        let mut ns = ApiResource::builtin("", "v1", "namespaces", "Namespace", false, &["ns"]);
        ns.status_subresource = true;
        let mut sa =
            ApiResource::builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]);
        sa.extra_subresources.push(Subresource {
            name: "token",
            group: "authentication.k8s.io",
            kind: "TokenRequest",
            verbs: &["create"],
        });
        let mut pods = ApiResource::builtin("", "v1", "pods", "Pod", true, &["po"]);
        pods.status_subresource = true;
        pods.has_generation = true;
        pods.categories = vec!["all".into()];
        let mut crds = ApiResource::builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
        );
        crds.categories = vec!["api-extensions".into()];
        crds.status_subresource = true;
        crds.has_generation = true;
        let mut mwc = ApiResource::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
        );
        mwc.categories = vec!["api-extensions".into()];
        mwc.has_generation = true;
        let mut events_v1 =
            ApiResource::builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"]);
        events_v1.storage_override = Some("/events".into());
        Self {
            builtins: vec![
                ns,
                sa,
                pods,
                ApiResource::builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
                ApiResource::builtin("", "v1", "secrets", "Secret", true, &[]),
                ApiResource::builtin("", "v1", "events", "Event", true, &["ev"]),
                events_v1,
                ApiResource::builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
                mwc,
                crds,
            ],
            custom: BTreeMap::new(),
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &ApiResource> {
        self.builtins.iter().chain(self.custom.values().flatten())
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ApiResource> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The group/versions served, grouped by group in registration order; the first version of
    /// each group is its preferred one.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// The resource writes go through: the owner of the storage a resource shares, or itself.
    pub fn writer(&self, res: &ApiResource) -> ApiResource {
        res.storage_override
            .as_ref()
            .and_then(|key| {
                self.all()
                    .find(|r| r.storage_override.is_none() && r.storage_key() == *key)
            })
            .unwrap_or(res)
            .clone()
    }

    pub fn set_custom(&mut self, crd: &str, versions: Vec<ApiResource>) {
        self.custom.insert(crd.to_owned(), versions);
    }

    pub fn remove_custom(&mut self, crd: &str) -> Option<Vec<ApiResource>> {
        self.custom.remove(crd)
    }
}
