//! Writes grants into a pod: volumes, read-only mounts in every container and init container
//! (native sidecars included) outside the skip lists, env that never overwrites what a
//! container already sets, and annotations. Re-applying the same grants changes nothing, which
//! is what makes `mutate` idempotent under reinvocation. Env and volume mounts are only ever
//! appended to (never edited or reordered), which is what lets the patch be built from their
//! lengths before (`patch::Snapshot`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, EnvFromSource, Pod, VolumeMount};

use crate::bindings::EnvSources;
use crate::grants::Grant;
use crate::trace::{Outcome, StepKind, Trace};

/// An `envFrom` source of a ConfigMap or a Secret, with its keys when they are known.
struct Source<'a> {
    kind: &'static str,
    name: &'a str,
    keys: Option<&'a BTreeSet<String>>,
}

fn env_source<'a>(from: &'a EnvFromSource, sources: &'a EnvSources) -> Option<Source<'a>> {
    let (kind, name, keys) = if let Some(cm) = &from.config_map_ref {
        ("configMap", &cm.name, &sources.config_maps)
    } else if let Some(secret) = &from.secret_ref {
        ("secret", &secret.name, &sources.secrets)
    } else {
        return None;
    };
    Some(Source {
        kind,
        name,
        keys: keys.get(name),
    })
}

/// Whether `container` already sets `name`: in the first `own` entries of its `env` (those it
/// had before this grant, so a grant never hides its own variables), or through an `envFrom`
/// source whose keys are known. Borrowed, not collected: this runs per container and grant.
fn already_sets(container: &Container, own: usize, sources: &EnvSources, name: &str) -> bool {
    let env = container.env.as_deref().unwrap_or_default();
    if env[..own.min(env.len())].iter().any(|e| e.name == name) {
        return true;
    }
    container.env_from.iter().flatten().any(|from| {
        let Some(key) = name.strip_prefix(from.prefix.as_deref().unwrap_or("")) else {
            return false;
        };
        env_source(from, sources)
            .and_then(|source| source.keys)
            .is_some_and(|keys| keys.contains(key))
    })
}

/// The `envFrom` sources of `container` whose keys are not known (`configMap <name>`).
fn unknown_sources<'a>(
    container: &'a Container,
    sources: &'a EnvSources,
) -> impl Iterator<Item = String> + 'a {
    container
        .env_from
        .iter()
        .flatten()
        .filter_map(|from| env_source(from, sources))
        .filter(|source| source.keys.is_none())
        .map(|source| format!("{} {}", source.kind, source.name))
}

/// What happened in one container for one grant.
#[derive(Default)]
struct Applied {
    /// The containers the volume was mounted in, comma-separated (one string for the pod, not
    /// one per container).
    mounted: String,
    notes: Vec<String>,
}

fn apply_to_container(
    container: &mut Container,
    grant: &Grant,
    sources: &EnvSources,
    applied: &mut Applied,
) {
    // Lists created here are dropped again if they stay empty; lists the pod had stay.
    let (had_env, had_mounts) = (container.env.is_some(), container.volume_mounts.is_some());
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    let name = &grant.volume.name;
    if let Some(other) = mounts
        .iter()
        .find(|m| m.mount_path == grant.mount_path && &m.name != name)
    {
        // Two mounts at one path make the pod invalid; the container keeps its own (a pod an
        // older webhook already mutated, or the user's choice).
        applied.notes.push(format!(
            "{} already mounts {} at {}, kept",
            container.name, other.name, grant.mount_path
        ));
    } else if !mounts.iter().any(|m| &m.name == name) {
        mounts.push(VolumeMount {
            name: name.clone(),
            mount_path: grant.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        if !applied.mounted.is_empty() {
            applied.mounted.push_str(", ");
        }
        applied.mounted.push_str(&container.name);
    }

    let own = container.env.as_ref().map_or(0, Vec::len);
    // One allocation for all of the grant's env, rather than one per group.
    let total = grant.env_groups.iter().map(Vec::len).sum();
    if let Some(env) = container.env.as_mut() {
        env.reserve(total);
    }
    for group in &grant.env_groups {
        let set: Vec<&str> = group
            .iter()
            .map(|var| var.name.as_str())
            .filter(|n| already_sets(container, own, sources, n))
            .collect();
        let env = container
            .env
            .get_or_insert_with(|| Vec::with_capacity(total));
        if set.is_empty() {
            env.extend(group.iter().cloned());
        } else if group.iter().any(|var| {
            !env.iter()
                .any(|e| e.name == var.name && e.value == var.value)
        }) {
            // Only worth a note when the value is not already ours (reinvocation).
            let names: Vec<&str> = group.iter().map(|var| var.name.as_str()).collect();
            applied.notes.push(format!(
                "{} already sets {}, so {} left as is",
                container.name,
                set.join(", "),
                names.join(", ")
            ));
        }
    }
    let unknown: Vec<String> = unknown_sources(container, sources).collect();
    if !unknown.is_empty() {
        applied.notes.push(format!(
            "{} reads env from {} whose keys are not known; injected env takes precedence over them",
            container.name,
            unknown.join(", ")
        ));
    }
    if !had_env && container.env.as_ref().is_some_and(Vec::is_empty) {
        container.env = None;
    }
    if !had_mounts && container.volume_mounts.as_ref().is_some_and(Vec::is_empty) {
        container.volume_mounts = None;
    }
}

/// Applies `grants` to `pod` (their volumes move into it); `skip` are the containers
/// `passport.dev/skip-containers` names.
pub(crate) fn apply(
    pod: &mut Pod,
    grants: Vec<Grant>,
    skip: &BTreeSet<String>,
    sources: &EnvSources,
    trace: &mut Trace,
) {
    for grant in grants {
        let mut applied = Applied::default();
        let mut skipped = Vec::new();
        if let Some(spec) = pod.spec.as_mut() {
            let containers = spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut());
            for container in containers {
                if skip.contains(&container.name) || grant.skip_containers.contains(&container.name)
                {
                    skipped.push(container.name.clone());
                } else {
                    apply_to_container(container, &grant, sources, &mut applied);
                }
            }
        }
        let env_names: Vec<&str> = grant
            .env_groups
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        let mut message = format!(
            "{} from {}: volume {} at {}, env {}",
            grant.cloud,
            grant.source,
            grant.volume.name,
            grant.mount_path,
            env_names.join(", ")
        );
        if let Some(spec) = pod.spec.as_mut() {
            let volumes = spec.volumes.get_or_insert_with(Vec::new);
            // The names are Passport's own (`passport-` prefix): one already there is ours from
            // an earlier invocation and is brought up to date.
            match volumes.iter_mut().find(|v| v.name == grant.volume.name) {
                Some(volume) => *volume = grant.volume,
                None => volumes.push(grant.volume),
            }
        }
        if !grant.annotations.is_empty() {
            let annotations = pod
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            annotations.extend(grant.annotations);
        }
        if !applied.mounted.is_empty() {
            message.push_str("; mounted in ");
            message.push_str(&applied.mounted);
        }
        if !skipped.is_empty() {
            message.push_str("; skipped containers ");
            message.push_str(&skipped.join(", "));
        }
        trace.push(StepKind::Inject, None, Outcome::Info, message);
        for note in applied.notes {
            trace.push(StepKind::Inject, None, Outcome::Info, note);
        }
    }
}
