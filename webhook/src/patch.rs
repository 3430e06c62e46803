//! The JSON patch of a mutation, from the typed pods. `mutate` changes only the pod's
//! annotations, its volumes, and its containers' and init containers' env and volume mounts,
//! and it only appends to env and volume mounts (the `Mutation` contract). So before it injects
//! anything it keeps a [`Snapshot`]: a copy of the annotations, the number of volumes with a copy
//! of those it may replace (the ones named like a grant's volume), and the length of each
//! container's env and mounts. The patch compares the snapshot with the mutated pod: only
//! what differs (or was appended) is serialised, straight into the patch's JSON, and the rest of
//! the pod is never copied. The result is exactly `json_patch::diff` of the two whole pods
//! serialised (the same operations in the same order: serde_json's maps keep keys sorted, arrays
//! are compared index by index, and an object's removals follow its additions); the property
//! tests hold it to that, fresh pods and reinvocations alike.

use std::collections::BTreeMap;

use json_patch::PatchOperation;
use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde::Serialize;
use serde::ser::Error as _;

type Result<T = ()> = std::result::Result<T, serde_json::Error>;

/// The parts of a pod `mutate` may change, as they were before it changed them.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    spec: bool,
    annotations: Option<BTreeMap<String, String>>,
    containers: Vec<Slots>,
    init_containers: Option<Vec<Slots>>,
    volumes: Option<Volumes>,
}

/// The pod's volumes as the patch needs them: how many there were, and a copy of each one
/// `mutate` may replace (a volume named like one of the grants', an earlier invocation's),
/// with its index. `mutate` leaves every other volume as it is and appends the rest.
#[derive(Clone, Debug, PartialEq)]
struct Volumes {
    len: usize,
    replaceable: Vec<(usize, Volume)>,
}

/// How many env variables and volume mounts a container had (None: no list at all).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Slots {
    env: Option<usize>,
    mounts: Option<usize>,
}

impl Slots {
    fn of(container: &Container) -> Self {
        Self {
            env: container.env.as_ref().map(Vec::len),
            mounts: container.volume_mounts.as_ref().map(Vec::len),
        }
    }
}

impl Snapshot {
    /// Keeps what the patch of a mutation of `pod` needs, and nothing else. `names` are the
    /// names of the volumes the mutation writes: a volume of the pod by one of those names may
    /// be replaced, and is copied; any other is not.
    pub fn of<'a>(pod: &Pod, names: impl Iterator<Item = &'a str> + Clone) -> Self {
        let spec = pod.spec.as_ref();
        Self {
            spec: spec.is_some(),
            annotations: pod.metadata.annotations.clone(),
            containers: spec
                .map(|s| s.containers.iter().map(Slots::of).collect())
                .unwrap_or_default(),
            init_containers: spec
                .and_then(|s| s.init_containers.as_ref())
                .map(|list| list.iter().map(Slots::of).collect()),
            volumes: spec
                .and_then(|s| s.volumes.as_ref())
                .map(|volumes| Volumes {
                    len: volumes.len(),
                    replaceable: volumes
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| names.clone().any(|name| name == v.name))
                        .map(|(index, v)| (index, v.clone()))
                        .collect(),
                }),
        }
    }

    /// The patch from the snapshotted pod to `after` as JSON, written straight from the typed
    /// parts (None when nothing differs). `after` must be the snapshotted pod as `mutate`
    /// changes pods: other annotations and volumes, env and volume mounts appended to, nothing
    /// else. What can be checked (the same containers, lists that only grew) is: an error
    /// otherwise.
    pub fn patch_json(&self, after: &Pod) -> Result<Option<Vec<u8>>> {
        let spec = after.spec.as_ref();
        let same_shape = spec.is_some() == self.spec
            && spec.map_or(0, |s| s.containers.len()) == self.containers.len()
            && spec.and_then(|s| s.init_containers.as_ref()).map(Vec::len)
                == self.init_containers.as_ref().map(Vec::len);
        if !same_shape {
            return Err(serde_json::Error::custom(
                "the mutated pod has other containers than its snapshot",
            ));
        }
        let mut ops = Ops::default();
        let mut path = Path::default();
        let metadata = path.key("metadata");
        let mut removed = Vec::new();
        ops.member(
            &mut path,
            "annotations",
            self.annotations.as_ref(),
            after.metadata.annotations.as_ref(),
            &mut removed,
            Ops::map,
        )?;
        ops.remove_all(removed)?;
        path.back(metadata);
        let Some(spec) = spec else {
            return Ok(ops.finish());
        };
        let at = path.key("spec");
        let mut removed = Vec::new();
        let containers = path.key("containers");
        ops.containers(&mut path, &self.containers, &spec.containers)?;
        path.back(containers);
        ops.member(
            &mut path,
            "initContainers",
            self.init_containers.as_deref(),
            spec.init_containers.as_deref(),
            &mut removed,
            Ops::containers,
        )?;
        ops.member(
            &mut path,
            "volumes",
            self.volumes.as_ref(),
            spec.volumes.as_deref(),
            &mut removed,
            Ops::volumes,
        )?;
        ops.remove_all(removed)?;
        path.back(at);
        Ok(ops.finish())
    }
}

/// A JSON pointer being built: tokens are pushed and taken back by length.
#[derive(Default)]
struct Path(String);

impl Path {
    /// Appends the object key `key` (escaped); returns the length to go back to.
    fn key(&mut self, key: &str) -> usize {
        let len = self.0.len();
        self.0.push('/');
        if !key.contains(['~', '/']) {
            self.0.push_str(key);
            return len;
        }
        for c in key.chars() {
            match c {
                '~' => self.0.push_str("~0"),
                '/' => self.0.push_str("~1"),
                c => self.0.push(c),
            }
        }
        len
    }

    /// Appends the array index `index`; returns the length to go back to.
    fn index(&mut self, index: usize) -> usize {
        let len = self.0.len();
        self.0.push('/');
        // Without the formatting machinery: a few per container on the request path.
        self.0.push_str(itoa::Buffer::new().format(index));
        len
    }

    fn back(&mut self, len: usize) {
        self.0.truncate(len);
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The operations so far, written as the JSON array of the patch.
struct Ops {
    out: Vec<u8>,
    count: usize,
}

impl Default for Ops {
    fn default() -> Self {
        Self {
            // A few operations per container: one allocation for most patches.
            out: Vec::with_capacity(2048),
            count: 0,
        }
    }
}

impl Ops {
    /// Opens the operation `op` at `path`, up to the closing brace.
    fn open(&mut self, op: &str, path: &str) -> Result {
        self.out.push(if self.count == 0 { b'[' } else { b',' });
        self.count += 1;
        self.out.extend_from_slice(b"{\"op\":\"");
        self.out.extend_from_slice(op.as_bytes());
        self.out.extend_from_slice(b"\",\"path\":");
        serde_json::to_writer(&mut self.out, path)
    }

    fn add(&mut self, path: &Path, value: &impl Serialize) -> Result {
        self.add_json(path, |out| serde_json::to_writer(out, value))
    }

    /// An `add` at `path` whose value `write` writes into the patch's bytes.
    fn add_json(&mut self, path: &Path, write: impl FnOnce(&mut Vec<u8>) -> Result) -> Result {
        self.open("add", path.as_str())?;
        self.out.extend_from_slice(b",\"value\":");
        write(&mut self.out)?;
        self.out.push(b'}');
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result {
        self.open("remove", path)?;
        self.out.push(b'}');
        Ok(())
    }

    fn remove_all(&mut self, removed: Vec<String>) -> Result {
        removed.iter().try_for_each(|path| self.remove(path))
    }

    /// The patch: None when there is no operation.
    fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        self.out.push(b']');
        Some(self.out)
    }

    /// Two values that differ, anything inside them: their JSON diff, under `path`.
    fn value(&mut self, path: &Path, before: &impl Serialize, after: &impl Serialize) -> Result {
        let patch = json_patch::diff(
            &serde_json::to_value(before)?,
            &serde_json::to_value(after)?,
        );
        for mut op in patch.0 {
            let at = match &mut op {
                PatchOperation::Add(op) => &mut op.path,
                PatchOperation::Remove(op) => &mut op.path,
                PatchOperation::Replace(op) => &mut op.path,
                PatchOperation::Move(op) => &mut op.path,
                PatchOperation::Copy(op) => &mut op.path,
                PatchOperation::Test(op) => &mut op.path,
            };
            *at = PointerBuf::parse(format!("{}{}", path.as_str(), at.as_str()))
                .map_err(serde_json::Error::custom)?;
            self.out.push(if self.count == 0 { b'[' } else { b',' });
            self.count += 1;
            serde_json::to_writer(&mut self.out, &op)?;
        }
        Ok(())
    }

    /// The optional member `key` of the object at `path`: added, compared with `inner`, or
    /// removed (into `removed`, which the caller appends after the object's other operations).
    fn member<B, A: Serialize>(
        &mut self,
        path: &mut Path,
        key: &str,
        before: Option<B>,
        after: Option<A>,
        removed: &mut Vec<String>,
        inner: impl FnOnce(&mut Self, &mut Path, B, A) -> Result,
    ) -> Result {
        let at = path.key(key);
        let done = match (before, after) {
            (None, Some(after)) => self.add(path, &after),
            (Some(before), Some(after)) => inner(self, path, before, after),
            (Some(_), None) => {
                removed.push(path.as_str().to_owned());
                Ok(())
            }
            (None, None) => Ok(()),
        };
        path.back(at);
        done
    }

    /// The volumes: those `mutate` may have replaced, compared with their copies, then the
    /// ones appended (as `list` would write them: index by index).
    fn volumes(&mut self, path: &mut Path, before: &Volumes, after: &[Volume]) -> Result {
        if after.len() < before.len {
            return Err(serde_json::Error::custom(
                "the mutated pod has fewer volumes than its snapshot",
            ));
        }
        for (index, b) in &before.replaceable {
            let a = &after[*index];
            if b != a {
                let at = path.index(*index);
                self.value(path, b, a)?;
                path.back(at);
            }
        }
        for (index, a) in after.iter().enumerate().skip(before.len) {
            let at = path.index(index);
            self.add(path, a)?;
            path.back(at);
        }
        Ok(())
    }

    /// A string map (annotations), key by key.
    fn map(
        &mut self,
        path: &mut Path,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> Result {
        for (key, value) in after {
            match before.get(key) {
                Some(old) if old == value => continue,
                old => {
                    let at = path.key(key);
                    match old {
                        None => self.add(path, value)?,
                        Some(old) => self.value(path, old, value)?,
                    }
                    path.back(at);
                }
            }
        }
        for key in before.keys().filter(|key| !after.contains_key(*key)) {
            let at = path.key(key);
            self.remove(path.as_str())?;
            path.back(at);
        }
        Ok(())
    }

    /// Containers of the same count, by index: what was appended to their env and volume
    /// mounts. Every container gets the same variables and mounts, so each distinct one is
    /// serialised once and its JSON copied for the others (`Written`).
    fn containers(&mut self, path: &mut Path, before: &[Slots], after: &[Container]) -> Result {
        let (mut env_written, mut mounts_written) = (Written::default(), Written::default());
        for (index, (b, a)) in before.iter().zip(after).enumerate() {
            let (env, mounts) = (a.env.as_deref(), a.volume_mounts.as_deref());
            if b.env == env.map(<[_]>::len) && b.mounts == mounts.map(<[_]>::len) {
                continue;
            }
            let at = path.index(index);
            let mut removed = Vec::new();
            self.member(
                path,
                "env",
                b.env,
                env,
                &mut removed,
                |ops, path, kept, env| ops.appended(path, kept, env, &mut env_written),
            )?;
            self.member(
                path,
                "volumeMounts",
                b.mounts,
                mounts,
                &mut removed,
                |ops, path, kept, mounts| ops.appended(path, kept, mounts, &mut mounts_written),
            )?;
            self.remove_all(removed)?;
            path.back(at);
        }
        Ok(())
    }

    /// The elements of `after` past the first `kept`, which are the list as it was.
    fn appended<'a, T: Serialize + PartialEq>(
        &mut self,
        path: &mut Path,
        kept: usize,
        after: &'a [T],
        written: &mut Written<'a, T>,
    ) -> Result {
        if after.len() < kept {
            return Err(serde_json::Error::custom(format!(
                "{} lost elements since its snapshot",
                path.as_str()
            )));
        }
        for (index, a) in after.iter().enumerate().skip(kept) {
            let at = path.index(index);
            self.add_json(path, |out| {
                match written.0.iter().find(|(value, _)| *value == a) {
                    Some((_, json)) => out.extend_from_within(json.clone()),
                    None => {
                        let start = out.len();
                        serde_json::to_writer(&mut *out, a)?;
                        written.0.push((a, start..out.len()));
                    }
                }
                Ok(())
            })?;
            path.back(at);
        }
        Ok(())
    }
}

/// Values already written into the patch, with where their JSON is: an equal value is copied
/// from there rather than serialised again.
struct Written<'a, T>(Vec<(&'a T, std::ops::Range<usize>)>);

impl<T> Default for Written<'_, T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use json_patch::Patch;

    /// The patch from the snapshotted pod to `after`, as `json_patch` reads it.
    fn diff(snapshot: &Snapshot, after: &Pod) -> Result<Patch> {
        match snapshot.patch_json(after)? {
            Some(bytes) => serde_json::from_slice(&bytes),
            None => Ok(Patch(Vec::new())),
        }
    }

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": {"a/b": "1"}},
            "spec": {"containers": containers},
        }))
        .unwrap()
    }

    #[test]
    fn a_snapshot_diffs_only_its_parts_with_escaped_keys() {
        let before = pod(serde_json::json!([{"name": "app"}, {"name": "proxy", "env": []}]));
        let snapshot = Snapshot::of(&before, std::iter::empty());
        let mut after = before.clone();
        let annotations = after.metadata.annotations.as_mut().unwrap();
        annotations.insert("x~y/z".into(), "2".into());
        annotations.remove("a/b");
        let spec = after.spec.as_mut().unwrap();
        spec.containers[1].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "A".into(),
            value: Some("1".into()),
            value_from: None,
        }]);
        let patch = diff(&snapshot, &after).unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!([
                {"op": "add", "path": "/metadata/annotations/x~0y~1z", "value": "2"},
                {"op": "remove", "path": "/metadata/annotations/a~1b"},
                {"op": "add", "path": "/spec/containers/1/env/0", "value": {"name": "A", "value": "1"}},
            ])
        );
        assert_eq!(
            patch,
            json_patch::diff(
                &serde_json::to_value(&before).unwrap(),
                &serde_json::to_value(&after).unwrap()
            )
        );
    }

    #[test]
    fn a_snapshot_refuses_a_pod_with_other_containers() {
        let before = pod(serde_json::json!([{"name": "app"}]));
        let snapshot = Snapshot::of(&before, std::iter::empty());
        let after = pod(serde_json::json!([{"name": "app"}, {"name": "more"}]));
        let error = diff(&snapshot, &after).unwrap_err();
        assert!(error.to_string().contains("other containers"), "{error}");
        let mut shorter = before.clone();
        shorter.spec.as_mut().unwrap().containers[0].env = Some(Vec::new());
        let snapshot = Snapshot::of(
            &pod(serde_json::json!([{"name": "app", "env": [{"name": "A"}]}])),
            std::iter::empty(),
        );
        let error = diff(&snapshot, &shorter).unwrap_err();
        assert!(error.to_string().contains("lost elements"), "{error}");
    }

    fn volume(name: &str, expiration: i64) -> Volume {
        crate::grants::projected_volume(
            name,
            vec![crate::grants::token_source(
                "token",
                "sts.amazonaws.com",
                expiration,
            )],
        )
    }

    #[test]
    fn a_snapshot_copies_only_the_volumes_a_grant_may_replace() {
        let mut before = pod(serde_json::json!([{"name": "app"}]));
        let spec = before.spec.as_mut().unwrap();
        spec.volumes = Some(vec![
            Volume {
                name: "data".into(),
                ..Volume::default()
            },
            volume("passport-aws-token", 3600),
        ]);
        let snapshot = Snapshot::of(&before, ["passport-aws-token", "passport-gcp"].into_iter());
        assert_eq!(
            snapshot
                .volumes
                .as_ref()
                .map(|v| (v.len, v.replaceable.len())),
            Some((2, 1)),
            "the other volume is counted, not copied"
        );
        // The stale volume brought up to date, and another appended.
        let mut after = before.clone();
        let volumes = after.spec.as_mut().unwrap().volumes.as_mut().unwrap();
        volumes[1] = volume("passport-aws-token", 86_400);
        volumes.push(volume("passport-gcp", 3600));
        let patch = diff(&snapshot, &after).unwrap();
        assert_eq!(
            patch,
            json_patch::diff(
                &serde_json::to_value(&before).unwrap(),
                &serde_json::to_value(&after).unwrap()
            )
        );
        assert_eq!(patch.0.len(), 2, "{patch:?}");

        let mut fewer = before.clone();
        fewer.spec.as_mut().unwrap().volumes.as_mut().unwrap().pop();
        let error = diff(&snapshot, &fewer).unwrap_err();
        assert!(error.to_string().contains("fewer volumes"), "{error}");
    }
}
