//! The JSON patch between two pods, from the typed pods. `mutate` changes only the pod's
//! annotations, its volumes, and its containers' and init containers' env and volume mounts
//! (the `Mutation` contract): those parts are compared typed, element by element, and only the
//! elements that differ are serialised. The result is exactly `json_patch::diff` of the two
//! whole pods serialised (the same operations in the same order: serde_json's maps keep keys
//! sorted, arrays are compared index by index, and an object's removals follow its additions),
//! for any two pods: when anything else differs, it is that diff. The property tests hold it
//! to both.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Volume, VolumeMount};
use serde::Serialize;

type Result = std::result::Result<(), serde_json::Error>;

/// The patch that turns `before` into `after`.
pub fn diff(mut before: Pod, mut after: Pod) -> std::result::Result<Patch, serde_json::Error> {
    let mut ops = Ops::default();
    let (mut b, mut a) = (Parts::take(&mut before), Parts::take(&mut after));
    if before != after {
        // Something outside Passport's parts differs: the diff of the whole pods.
        b.restore(&mut before);
        a.restore(&mut after);
        ops.value(&PointerBuf::root(), &before, &after)?;
        return Ok(Patch(ops.0));
    }
    let mut ptr = PointerBuf::root();
    ptr.push_back("metadata");
    let mut removed = Vec::new();
    ops.member(
        &mut ptr,
        "annotations",
        b.annotations.as_ref(),
        a.annotations.as_ref(),
        &mut removed,
        Ops::map,
    )?;
    ops.remove_all(removed);
    ptr.pop_back();
    if before.spec.is_some() {
        ptr.push_back("spec");
        let mut removed = Vec::new();
        ptr.push_back("containers");
        ops.list(
            &mut ptr,
            &mut b.containers,
            &mut a.containers,
            Ops::container,
        )?;
        ptr.pop_back();
        ops.member(
            &mut ptr,
            "initContainers",
            b.init_containers.as_mut(),
            a.init_containers.as_mut(),
            &mut removed,
            |ops, ptr, b, a| ops.list(ptr, b.as_mut_slice(), a.as_mut_slice(), Ops::container),
        )?;
        ops.member(
            &mut ptr,
            "volumes",
            b.volumes.as_mut(),
            a.volumes.as_mut(),
            &mut removed,
            |ops, ptr, b, a| ops.list(ptr, b.as_mut_slice(), a.as_mut_slice(), Ops::item::<Volume>),
        )?;
        ops.remove_all(removed);
    }
    Ok(Patch(ops.0))
}

/// The parts of a pod `mutate` may change, taken out of it.
struct Parts {
    annotations: Option<BTreeMap<String, String>>,
    containers: Vec<Container>,
    init_containers: Option<Vec<Container>>,
    volumes: Option<Vec<Volume>>,
}

impl Parts {
    fn take(pod: &mut Pod) -> Self {
        let annotations = pod.metadata.annotations.take();
        match pod.spec.as_mut() {
            Some(spec) => Self {
                annotations,
                containers: std::mem::take(&mut spec.containers),
                init_containers: spec.init_containers.take(),
                volumes: spec.volumes.take(),
            },
            None => Self {
                annotations,
                containers: Vec::new(),
                init_containers: None,
                volumes: None,
            },
        }
    }

    fn restore(&mut self, pod: &mut Pod) {
        pod.metadata.annotations = self.annotations.take();
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers = std::mem::take(&mut self.containers);
            spec.init_containers = self.init_containers.take();
            spec.volumes = self.volumes.take();
        }
    }
}

/// The operations so far.
#[derive(Default)]
struct Ops(Vec<PatchOperation>);

impl Ops {
    fn add(&mut self, ptr: &PointerBuf, value: &impl Serialize) -> Result {
        self.0.push(PatchOperation::Add(AddOperation {
            path: ptr.clone(),
            value: serde_json::to_value(value)?,
        }));
        Ok(())
    }

    fn remove_all(&mut self, removed: Vec<PointerBuf>) {
        self.0.extend(
            removed
                .into_iter()
                .map(|path| PatchOperation::Remove(RemoveOperation { path })),
        );
    }

    /// Two values that differ, anything inside them: their JSON diff, under `ptr`.
    fn value(
        &mut self,
        ptr: &PointerBuf,
        before: &impl Serialize,
        after: &impl Serialize,
    ) -> Result {
        let patch = json_patch::diff(
            &serde_json::to_value(before)?,
            &serde_json::to_value(after)?,
        );
        for mut op in patch.0 {
            let path = match &mut op {
                PatchOperation::Add(op) => &mut op.path,
                PatchOperation::Remove(op) => &mut op.path,
                PatchOperation::Replace(op) => &mut op.path,
                PatchOperation::Move(op) => &mut op.path,
                PatchOperation::Copy(op) => &mut op.path,
                PatchOperation::Test(op) => &mut op.path,
            };
            *path = ptr.concat(path);
            self.0.push(op);
        }
        Ok(())
    }

    /// One element of a list, compared typed first.
    fn item<T: Serialize + PartialEq>(
        &mut self,
        ptr: &mut PointerBuf,
        b: &mut T,
        a: &mut T,
    ) -> Result {
        if b == a {
            return Ok(());
        }
        self.value(ptr, b, a)
    }

    /// The optional member `key` of the object at `ptr`: added, compared with `inner`, or
    /// removed (into `removed`, which the caller appends after the object's other operations).
    fn member<T: Serialize>(
        &mut self,
        ptr: &mut PointerBuf,
        key: &str,
        before: Option<T>,
        after: Option<T>,
        removed: &mut Vec<PointerBuf>,
        inner: impl FnOnce(&mut Self, &mut PointerBuf, T, T) -> Result,
    ) -> Result {
        ptr.push_back(key);
        let done = match (before, after) {
            (None, Some(after)) => self.add(ptr, &after),
            (Some(before), Some(after)) => inner(self, ptr, before, after),
            (Some(_), None) => {
                removed.push(ptr.clone());
                Ok(())
            }
            (None, None) => Ok(()),
        };
        ptr.pop_back();
        done
    }

    /// A list, index by index (as `json_patch::diff` compares arrays).
    fn list<T: Serialize>(
        &mut self,
        ptr: &mut PointerBuf,
        before: &mut [T],
        after: &mut [T],
        mut item: impl FnMut(&mut Self, &mut PointerBuf, &mut T, &mut T) -> Result,
    ) -> Result {
        // Elements past the shorter list: added, or removed from the end one index at a time.
        let common = before.len().min(after.len());
        for (index, (b, a)) in before.iter_mut().zip(after.iter_mut()).enumerate() {
            ptr.push_back(index);
            item(self, ptr, b, a)?;
            ptr.pop_back();
        }
        for (index, a) in after.iter().enumerate().skip(common) {
            ptr.push_back(index);
            self.add(ptr, a)?;
            ptr.pop_back();
        }
        for _ in common..before.len() {
            ptr.push_back(common);
            self.0.push(PatchOperation::Remove(RemoveOperation {
                path: ptr.clone(),
            }));
            ptr.pop_back();
        }
        Ok(())
    }

    /// A string map (annotations), key by key.
    fn map(
        &mut self,
        ptr: &mut PointerBuf,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> Result {
        for (key, value) in after {
            ptr.push_back(key);
            match before.get(key) {
                None => self.add(ptr, value)?,
                Some(old) if old != value => self.value(ptr, old, value)?,
                Some(_) => {}
            }
            ptr.pop_back();
        }
        for key in before.keys().filter(|key| !after.contains_key(*key)) {
            ptr.push_back(key);
            self.0.push(PatchOperation::Remove(RemoveOperation {
                path: ptr.clone(),
            }));
            ptr.pop_back();
        }
        Ok(())
    }

    /// A container: its env and volume mounts compared element by element when nothing else
    /// in it differs, the whole container otherwise.
    fn container(&mut self, ptr: &mut PointerBuf, b: &mut Container, a: &mut Container) -> Result {
        let (mut b_env, mut b_mounts) = (b.env.take(), b.volume_mounts.take());
        let (mut a_env, mut a_mounts) = (a.env.take(), a.volume_mounts.take());
        if b != a {
            (b.env, b.volume_mounts) = (b_env, b_mounts);
            (a.env, a.volume_mounts) = (a_env, a_mounts);
            return self.value(ptr, b, a);
        }
        let mut removed = Vec::new();
        self.member(
            ptr,
            "env",
            b_env.as_deref_mut(),
            a_env.as_deref_mut(),
            &mut removed,
            |ops, ptr, b, a| ops.list(ptr, b, a, Ops::item::<EnvVar>),
        )?;
        self.member(
            ptr,
            "volumeMounts",
            b_mounts.as_deref_mut(),
            a_mounts.as_deref_mut(),
            &mut removed,
            |ops, ptr, b, a| ops.list(ptr, b, a, Ops::item::<VolumeMount>),
        )?;
        self.remove_all(removed);
        Ok(())
    }
}
