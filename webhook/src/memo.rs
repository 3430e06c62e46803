//! `Memo`: the decisions of recent admissions, kept to answer the next admission of another pod
//! of the same template without deciding again. The pods of a ReplicaSet reach mutating
//! admission alike but for two things no decision reads: the name the API server's
//! ServiceAccount admission gives each pod's token volume (`kube-api-access-` and five random
//! characters, in `spec.volumes` and every container's `volumeMounts`), and the time in
//! `metadata.managedFields`. The memo's key ([`PodKey`]) is the pod's JSON without those two:
//! so a Deployment's rollout or scale-up asks it the same question once per pod.
//!
//! `mutate` is a pure function of the pod and its `Bindings`, and reads neither of the two
//! parts left out: it never reads `managedFields`, and of a volume or mount that is not its own
//! it compares the name only with its own (`passport-`) names. A decision is kept only when
//! nothing of it (the patch, the messages, the trace) names a volume left out of the key, and
//! it is reused only for the same key in the same request namespace, decided from the same
//! bindings: the same policies and trusts (the very objects of the caller's stores, compared by
//! identity: a store replaces an object on any change), the same namespace verdicts,
//! service-account annotations, env sources and configuration. Bindings with a schedule
//! condition depend on the time and are never kept. The memo holds at most `budget` bytes
//! (keys and patches, roughly) and is emptied when full.
//!
//! The server reads the key in the review's one pass (`Request::read`) and, when no decision is
//! kept for it, parses the pod from the key: the pod but for the two parts. A decision on it
//! that names the token volume (as `kube-api-access-*`) is made again from the review itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize as _;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::bindings::{Bindings, PolicyBinding};
use crate::review::{Decision, Reviewed};

/// The memo's key of a pod: its JSON text as it arrived, without `metadata.managedFields`, and
/// with the name of the API server's token volume (`kube-api-access-xxxxx`) in `spec.volumes`
/// and in the containers' `volumeMounts` written as `kube-api-access-*`. Only the objects and
/// lists on the way to those are read member by member; every other value is copied as it
/// arrived, byte for byte.
#[derive(Debug)]
pub struct PodKey {
    text: String,
    /// Whether a token volume's name was left out.
    masked: bool,
}

/// The name the ServiceAccount admission plugin gives a pod's token volume: the prefix and five
/// characters of apimachinery's name generator.
fn is_token_volume(name: &str) -> bool {
    name.strip_prefix(TOKEN_VOLUME_PREFIX)
        .is_some_and(|suffix| {
            suffix.len() == 5
                && suffix
                    .bytes()
                    .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        })
}

const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

impl PodKey {
    /// Whether the name of a token volume was left out (then a decision that names one is not
    /// that of the pod as it arrived).
    pub fn masked(&self) -> bool {
        self.masked
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Read from a pod's JSON (as `Request` reads it, in the review's one pass).
impl<'de> serde::Deserialize<'de> for PodKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = Out {
            bytes: Vec::with_capacity(4096),
            masked: false,
        };
        Write {
            out: &mut out,
            at: At::Pod,
        }
        .deserialize(deserializer)?;
        // Copied from text that was UTF-8, or written by serde_json.
        let text = String::from_utf8(out.bytes).map_err(serde::de::Error::custom)?;
        Ok(Self {
            text,
            masked: out.masked,
        })
    }
}

struct Out {
    bytes: Vec<u8>,
    masked: bool,
}

/// Where in the pod a value is, as far as the key cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Pod,
    Metadata,
    Spec,
    Containers,
    Container,
    /// `spec.volumes` or a container's `volumeMounts`, and one of their items.
    Named,
    NamedItem,
    /// The `name` of such an item.
    Name,
    Other,
}

impl At {
    /// Where the member `key` of a map here is; None: left out of the key.
    fn member(self, key: &str) -> Option<At> {
        Some(match (self, key) {
            (At::Pod, "metadata") => At::Metadata,
            (At::Pod, "spec") => At::Spec,
            (At::Metadata, "managedFields") => return None,
            (At::Spec, "volumes") => At::Named,
            (At::Spec, "containers" | "initContainers" | "ephemeralContainers") => At::Containers,
            (At::Container, "volumeMounts") => At::Named,
            (At::NamedItem, "name") => At::Name,
            _ => At::Other,
        })
    }

    /// Where an item of a list here is.
    fn item(self) -> At {
        match self {
            At::Containers => At::Container,
            At::Named => At::NamedItem,
            _ => At::Other,
        }
    }
}

/// Writes one value of the pod into the key.
struct Write<'o> {
    out: &'o mut Out,
    at: At,
}

impl Write<'_> {
    fn string(&mut self, value: &str) -> serde_json::Result<()> {
        serde_json::to_writer(&mut self.out.bytes, value)
    }
}

fn custom<E: serde::de::Error>(error: serde_json::Error) -> E {
    E::custom(error)
}

impl<'de> DeserializeSeed<'de> for Write<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if !matches!(self.at, At::Other | At::Name) {
            return deserializer.deserialize_any(self);
        }
        // A value the key keeps whole is copied as it arrived, unparsed.
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        let token_volume = self.at == At::Name
            && text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .is_some_and(is_token_volume);
        if token_volume {
            self.out.masked = true;
            self.out.bytes.extend_from_slice(b"\"kube-api-access-*\"");
        } else {
            self.out.bytes.extend_from_slice(text.as_bytes());
        }
        Ok(())
    }
}

/// A map's key, borrowed from the text when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for Write<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        let text: &[u8] = if v { b"true" } else { b"false" };
        self.out.bytes.extend_from_slice(text);
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        serde_json::to_writer(&mut self.out.bytes, &v).map_err(custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        serde_json::to_writer(&mut self.out.bytes, &v).map_err(custom)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        serde_json::to_writer(&mut self.out.bytes, &v).map_err(custom)
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        if self.at == At::Name && is_token_volume(v) {
            self.out.masked = true;
            return self.string("kube-api-access-*").map_err(custom);
        }
        self.string(v).map_err(custom)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.bytes.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item = self.at.item();
        self.out.bytes.push(b'[');
        let mut first = true;
        loop {
            let mark = self.out.bytes.len();
            if !first {
                self.out.bytes.push(b',');
            }
            let write = Write {
                out: &mut *self.out,
                at: item,
            };
            if seq.next_element_seed(write)?.is_none() {
                self.out.bytes.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.bytes.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.out.bytes.push(b'{');
        let mut first = true;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(at) = self.at.member(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !first {
                self.out.bytes.push(b',');
            }
            first = false;
            match &key {
                // Borrowed from the text: it has no escapes.
                std::borrow::Cow::Borrowed(key) => {
                    self.out.bytes.push(b'"');
                    self.out.bytes.extend_from_slice(key.as_bytes());
                    self.out.bytes.push(b'"');
                }
                std::borrow::Cow::Owned(key) => self.string(key).map_err(custom)?,
            }
            self.out.bytes.push(b':');
            map.next_value_seed(Write {
                out: &mut *self.out,
                at,
            })?;
        }
        self.out.bytes.push(b'}');
        Ok(())
    }
}

/// Whether anything `reviewed` says (the patch, the messages, the trace) names a token volume:
/// then its decision may not be given to a pod whose token volume has another name.
pub fn names_a_token_volume(reviewed: &Reviewed) -> bool {
    let response = &reviewed.response;
    let says = |text: &str| text.contains(TOKEN_VOLUME_PREFIX);
    let trace = trace_of(reviewed);
    response.patch.as_deref().is_some_and(|p| {
        p.windows(TOKEN_VOLUME_PREFIX.len())
            .any(|w| w == TOKEN_VOLUME_PREFIX.as_bytes())
    }) || says(&response.message)
        || response.warnings.iter().any(|w| says(w))
        || trace.is_some_and(|t| t.steps.iter().any(|s| says(&s.message)))
}

/// The trace of a decision; None for an ignored pod.
fn trace_of(reviewed: &Reviewed) -> Option<&crate::Trace> {
    match &reviewed.decision {
        Decision::Admitted { trace, .. } => Some(trace),
        Decision::Denied(denial) => Some(&denial.trace),
        Decision::Ignored { .. } => None,
    }
}

/// The recent decisions, by pod text.
pub struct Memo {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bytes held, as counted by `Decided::size`.
    used: usize,
    entries: HashMap<Box<str>, Arc<Decided>, foldhash::fast::RandomState>,
}

/// One decision and what it was decided from.
pub struct Decided {
    /// The request's namespace (the key is the pod's text alone).
    request_namespace: Option<String>,
    inputs: Inputs,
    /// The decision; its response carries the first request's UID, which `Decided::to_json_for`
    /// replaces.
    pub reviewed: Reviewed,
    /// The response's JSON after its UID (`Response::tail_json`).
    tail: Vec<u8>,
    /// The decision trace's text as a JSON string (`Trace::text`, escaped), for the audit line
    /// of each request it answers; None for an ignored pod, which has no trace.
    trace_json: Option<Box<RawValue>>,
}

/// Everything of `Bindings` that `mutate` reads, but the time.
struct Inputs {
    namespace: String,
    policies: Vec<PolicyBinding>,
    service_account_annotations: std::collections::BTreeMap<String, String>,
    env_sources: crate::EnvSources,
    config: Arc<crate::Config>,
}

impl Inputs {
    fn of(bindings: &Bindings) -> Self {
        Self {
            namespace: bindings.namespace.clone(),
            policies: bindings.policies.clone(),
            service_account_annotations: bindings.service_account_annotations.clone(),
            env_sources: bindings.env_sources.clone(),
            config: bindings.config.clone(),
        }
    }

    fn same_as(&self, bindings: &Bindings) -> bool {
        let same_policy = |a: &PolicyBinding, b: &PolicyBinding| {
            Arc::ptr_eq(&a.policy, &b.policy)
                && match (&a.trust, &b.trust) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
                && a.trust_admits_namespace == b.trust_admits_namespace
        };
        self.namespace == bindings.namespace
            && Arc::ptr_eq(&self.config, &bindings.config)
            && self.policies.len() == bindings.policies.len()
            && self
                .policies
                .iter()
                .zip(&bindings.policies)
                .all(|(a, b)| same_policy(a, b))
            && self.service_account_annotations == bindings.service_account_annotations
            && self.env_sources == bindings.env_sources
    }
}

impl Decided {
    /// What the entry counts against the budget: the pod's text, the patch and a share for the
    /// rest (trace, names).
    fn size(&self, key: &str) -> usize {
        key.len() + self.reviewed.response.patch.as_ref().map_or(0, Vec::len) + 1024
    }

    /// The response AdmissionReview for the request `uid` of version `api_version`: that of
    /// `Response::to_json_for`, with all but its start kept written.
    pub fn to_json_for(&self, api_version: &str, uid: &str) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(96 + api_version.len() + uid.len() + self.tail.len());
        crate::review::write_head(&mut out, api_version, uid)?;
        out.extend_from_slice(&self.tail);
        Ok(out)
    }

    /// The decision trace's text (`Trace::text`) as a JSON string, written once: what the
    /// audit line of every request this decision answers carries. None when the pod was
    /// ignored (no trace).
    pub fn trace_json(&self) -> Option<&RawValue> {
        self.trace_json.as_deref()
    }

    /// The namespace and service account of the pod: whose bindings to look up.
    pub fn subject(&self) -> (&str, &str) {
        (&self.reviewed.namespace, &self.reviewed.service_account)
    }

    /// Whether `bindings` are those this decision was made from: then `mutate` would decide
    /// the same again.
    pub fn answers(&self, bindings: &Bindings) -> bool {
        self.inputs.same_as(bindings)
    }
}

/// Whether a decision from `bindings` may be kept: not when it depends on the time.
fn timeless(bindings: &Bindings) -> bool {
    !bindings.policies.iter().any(|b| {
        b.policy
            .spec
            .conditions
            .as_ref()
            .is_some_and(|c| c.schedule.is_some())
    })
}

impl Memo {
    /// A memo of at most `budget` bytes; 0 keeps nothing.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map half-written: each change is one call.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The decision kept for the pod of `key` in a request of `namespace`; the caller checks
    /// [`Decided::answers`] with the bindings it looks up.
    pub fn get(&self, namespace: Option<&str>, key: &PodKey) -> Option<Arc<Decided>> {
        if !self.enabled() {
            return None;
        }
        let decided = self.lock().entries.get(key.as_str()).cloned()?;
        (decided.request_namespace.as_deref() == namespace).then_some(decided)
    }

    /// Keeps `reviewed`, decided for the pod of `key` in a request of `namespace` from
    /// `bindings`, unless the decision depends on the time or names the pod's token volume.
    /// Returns it, shared (an error: its response could not be written).
    pub fn keep(
        &self,
        namespace: Option<&str>,
        key: &PodKey,
        bindings: &Bindings,
        reviewed: Reviewed,
    ) -> Result<Arc<Decided>, serde_json::Error> {
        let pod = key.as_str();
        let trace_json = trace_of(&reviewed)
            .map(|trace| serde_json::value::to_raw_value(&trace.text()))
            .transpose()?;
        let decided = Arc::new(Decided {
            request_namespace: namespace.map(str::to_owned),
            inputs: Inputs::of(bindings),
            tail: reviewed.response.tail_json()?,
            trace_json,
            reviewed,
        });
        let size = decided.size(pod);
        if !self.enabled()
            || !timeless(bindings)
            || size > self.budget
            || (key.masked && names_a_token_volume(&decided.reviewed))
        {
            return Ok(decided);
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(pod) {
            inner.used -= old.size(pod);
        }
        if inner.used + size > self.budget {
            inner.entries.clear();
            inner.used = 0;
        }
        inner.entries.insert(pod.into(), decided.clone());
        inner.used += size;
        Ok(decided)
    }

    /// How many decisions are kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Pod;
    use passport_crds::{AccessPolicy, FederatedTrust};

    use super::{Memo, PodKey};
    use crate::{Bindings, Config, PolicyBinding, Request, review};

    fn pod(image: &str) -> serde_json::Value {
        template(image, "x7k2p", "2026-12-07T10:00:00Z")
    }

    /// A ReplicaSet's pod as it reaches admission: its token volume named `kube-api-access-`
    /// and `suffix`, and the ReplicaSet controller's managed fields at `time`.
    fn template(image: &str, suffix: &str, time: &str) -> serde_json::Value {
        let volume = format!("kube-api-access-{suffix}");
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "api-7d9c5-", "namespace": "shop", "labels": {"app": "api"},
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                    "apiVersion": "v1", "time": time, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}}}}]},
            "spec": {"serviceAccountName": "api",
                "containers": [{"name": "app", "image": image, "volumeMounts": [
                    {"name": volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                "volumes": [{"name": volume, "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]}
        })
    }

    fn body(uid: &str, object: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "rs"},
                "object": object
            }
        }))
        .unwrap()
    }

    fn bindings(conditions: serde_json::Value) -> Bindings {
        let policy: AccessPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "passport.dev/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": "s3", "namespace": "shop"},
            "spec": {"trustRef": {"name": "aws"}, "serviceAccounts": ["api"],
                     "aws": {"roleName": "s3"}, "enforcement": "Reject", "conditions": conditions}
        }))
        .unwrap();
        let trust: FederatedTrust = serde_json::from_value(serde_json::json!({
            "apiVersion": "passport.dev/v1alpha1", "kind": "FederatedTrust",
            "metadata": {"name": "aws"},
            "spec": {"aws": {"accountId": "111122223333"}, "namespaceSelector": {}}
        }))
        .unwrap();
        let mut bindings = Bindings::new(
            "shop",
            jiff::Timestamp::constant(1_796_119_200, 0),
            Arc::new(Config::new("prod")),
        );
        bindings.policies.push(PolicyBinding {
            policy: Arc::new(policy),
            trust: Some(Arc::new(trust)),
            trust_admits_namespace: true,
        });
        bindings
    }

    fn images() -> serde_json::Value {
        serde_json::json!({"images": {"allowedPrefixes": ["registry.example.com/"]}})
    }

    /// Reviews `body` with `bindings` and keeps the decision, as the server does on a miss.
    fn decide_and_keep(memo: &Memo, body: &[u8], bindings: &Bindings) {
        let (admission, key) = Request::read(body).unwrap().admission().unwrap();
        let reviewed = admission.decide(bindings).unwrap();
        let key = key.unwrap();
        memo.keep(Some("shop"), &key, bindings, reviewed).unwrap();
    }

    fn pod_text(body: &[u8]) -> PodKey {
        Request::read(body).unwrap().admission().unwrap().1.unwrap()
    }

    fn key(pod: &serde_json::Value) -> String {
        serde_json::from_str::<PodKey>(&pod.to_string())
            .unwrap()
            .text
    }

    /// Pods of one template have one key; any other difference is another key.
    #[test]
    fn the_key_leaves_out_only_the_token_volumes_name_and_the_managed_fields() {
        let first = template(
            "registry.example.com/api:1",
            "x7k2p",
            "2026-12-07T10:00:00Z",
        );
        let second = template(
            "registry.example.com/api:1",
            "b5z9q",
            "2026-12-07T10:00:03Z",
        );
        assert_eq!(key(&first), key(&second));
        let text = key(&first);
        assert!(
            !text.contains("managedFields") && !text.contains("x7k2p"),
            "{text}"
        );
        assert!(text.contains(r#""name":"kube-api-access-*""#), "{text}");
        // Everything else is kept as it arrived, byte for byte.
        let plain = key(
            &serde_json::json!({"metadata": {"labels": {"a": "\"é\u{1}"}},
            "spec": {"containers": [], "x": [1, -2, 1.5, true, null, {}]}}),
        );
        assert_eq!(
            plain,
            r#"{"metadata":{"labels":{"a":"\"é\u0001"}},"spec":{"containers":[],"x":[1,-2,1.5,true,null,{}]}}"#
        );
        let differs = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut other = first.clone();
            change(&mut other);
            key(&other) != text
        };
        for (what, change) in [
            (
                "an image",
                &(|p: &mut serde_json::Value| p["spec"]["containers"][0]["image"] = "i:2".into())
                    as &dyn Fn(&mut serde_json::Value),
            ),
            ("a label", &|p: &mut serde_json::Value| {
                p["metadata"]["labels"]["app"] = "web".into()
            }),
            ("the token volume's path", &|p: &mut serde_json::Value| {
                p["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["path"] =
                    "t".into()
            }),
            ("a mount's path", &|p: &mut serde_json::Value| {
                p["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/x".into()
            }),
            (
                "a name that only looks generated",
                &|p: &mut serde_json::Value| {
                    p["spec"]["volumes"][0]["name"] = "kube-api-access-x7k2a".into();
                    p["spec"]["containers"][0]["volumeMounts"][0]["name"] =
                        "kube-api-access-x7k2a".into();
                },
            ),
            (
                "a label valued like a token volume",
                &|p: &mut serde_json::Value| {
                    p["metadata"]["labels"]["app"] = "kube-api-access-b5z9q".into()
                },
            ),
            (
                "a container named like one",
                &|p: &mut serde_json::Value| {
                    p["spec"]["containers"][0]["name"] = "kube-api-access-b5z9q".into()
                },
            ),
            ("the service account", &|p: &mut serde_json::Value| {
                p["spec"]["serviceAccountName"] = "web".into()
            }),
            ("managed fields elsewhere", &|p: &mut serde_json::Value| {
                p["spec"]["managedFields"] = serde_json::json!([])
            }),
        ] {
            assert!(differs(change), "{what}");
        }
        assert!(serde_json::from_str::<PodKey>("{\"spec\": [").is_err());
        assert!(serde_json::from_str::<PodKey>("{} {}").is_err());
    }

    /// The next pod of the template, with its own token volume's name and time, gets from the
    /// memo exactly what `review` gives it.
    #[test]
    fn the_next_pod_of_a_template_gets_what_a_fresh_decision_gives_it() {
        let memo = Memo::new(1 << 20);
        let bound = bindings(images());
        let first = template(
            "registry.example.com/api:1",
            "x7k2p",
            "2026-12-07T10:00:00Z",
        );
        decide_and_keep(&memo, &body("u-1", &first), &bound);
        let next = body(
            "u-2",
            &template(
                "registry.example.com/api:1",
                "b5z9q",
                "2026-12-07T10:00:03Z",
            ),
        );
        let kept = memo.get(Some("shop"), &pod_text(&next)).unwrap();
        assert!(kept.answers(&bound));
        let fresh = review(&next, &|_: &str, _: &str, _: &Pod| bound.clone()).unwrap();
        assert!(fresh.response.patch.is_some());
        assert_eq!(
            String::from_utf8(kept.to_json_for("admission.k8s.io/v1", "u-2").unwrap()).unwrap(),
            String::from_utf8(fresh.to_json().unwrap()).unwrap()
        );
        assert_eq!(kept.reviewed.decision, fresh.decision);
        // Its trace, written once for the audit lines, says what a fresh decision's says.
        let crate::Decision::Admitted { trace, .. } = &fresh.decision else {
            panic!("not admitted: {:?}", fresh.decision);
        };
        assert!(!trace.steps.is_empty());
        let written: String = serde_json::from_str(kept.trace_json().unwrap().get()).unwrap();
        assert_eq!(written, trace.text());
    }

    /// A decision that names the pod's token volume (here: mounted where Passport mounts the AWS
    /// token) would name the wrong volume for the next pod: it is not kept.
    #[test]
    fn a_decision_that_names_the_token_volume_is_not_kept() {
        let memo = Memo::new(1 << 20);
        let bound = bindings(images());
        let mut pod = template(
            "registry.example.com/api:1",
            "x7k2p",
            "2026-12-07T10:00:00Z",
        );
        pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] =
            crate::grants::paths::AWS_MOUNT.into();
        let text = body("u-1", &pod);
        let fresh = review(&text, &|_: &str, _: &str, _: &Pod| bound.clone()).unwrap();
        let crate::Decision::Admitted { trace, .. } = &fresh.decision else {
            panic!("{:?}", fresh.decision)
        };
        assert!(
            trace.text().contains("kube-api-access-x7k2p"),
            "{}",
            trace.text()
        );
        decide_and_keep(&memo, &text, &bound);
        assert!(memo.is_empty());
    }

    /// A kept decision answers another request on the same pod text exactly as `review` would
    /// (its UID echoed), and only from the very bindings it was decided from.
    #[test]
    fn a_kept_decision_answers_the_same_pod_from_the_same_bindings_only() {
        let memo = Memo::new(1 << 20);
        let bound = bindings(images());
        for (image, allowed) in [
            ("registry.example.com/api:1", true),
            ("evil.io/api:1", false),
        ] {
            let first = body("u-1", &pod(image));
            decide_and_keep(&memo, &first, &bound);
            let second = body("u-2", &pod(image));
            let kept = memo.get(Some("shop"), &pod_text(&second)).unwrap();
            assert_eq!(kept.subject(), ("shop", "api"));
            assert!(kept.answers(&bound));
            let again = kept.to_json_for("admission.k8s.io/v1", "u-2").unwrap();
            let fresh = review(&second, &|_: &str, _: &str, _: &Pod| bound.clone()).unwrap();
            assert_eq!(fresh.response.allowed, allowed);
            assert_eq!(
                String::from_utf8(again).unwrap(),
                String::from_utf8(fresh.to_json().unwrap()).unwrap()
            );
        }
        assert_eq!(memo.len(), 2);

        let text = body("u-3", &pod("registry.example.com/api:1"));
        let kept = memo.get(Some("shop"), &pod_text(&text)).unwrap();
        assert!(memo.get(Some("other"), &pod_text(&text)).is_none());
        assert!(memo.get(None, &pod_text(&text)).is_none());
        let other_pod = body("u-3", &pod("registry.example.com/api:2"));
        assert!(memo.get(Some("shop"), &pod_text(&other_pod)).is_none());

        // Any change in the bindings: the same policy read again (a store replaces the object on
        // every change), the trust's verdict on the namespace, the service account's
        // annotations, another configuration, one more policy, another namespace.
        let mut changed = Vec::new();
        let mut b = bound.clone();
        b.policies[0].policy = Arc::new((*b.policies[0].policy).clone());
        changed.push(b);
        let mut b = bound.clone();
        b.policies[0].trust = Some(Arc::new((**b.policies[0].trust.as_ref().unwrap()).clone()));
        changed.push(b);
        let mut b = bound.clone();
        b.policies[0].trust = None;
        changed.push(b);
        let mut b = bound.clone();
        b.policies[0].trust_admits_namespace = false;
        changed.push(b);
        let mut b = bound.clone();
        b.service_account_annotations.insert(
            "eks.amazonaws.com/role-arn".into(),
            "arn:aws:iam::1:role/r".into(),
        );
        changed.push(b);
        let mut b = bound.clone();
        b.config = Arc::new(Config::new("prod"));
        changed.push(b);
        let mut b = bound.clone();
        b.policies.push(bound.policies[0].clone());
        changed.push(b);
        let mut b = bound.clone();
        b.namespace = "other".into();
        changed.push(b);
        let mut b = bound.clone();
        b.env_sources
            .config_maps
            .insert("settings".into(), ["AWS_REGION".to_owned()].into());
        changed.push(b);
        for (i, b) in changed.iter().enumerate() {
            assert!(!kept.answers(b), "change {i} is not seen");
        }
        // The time alone is not an input of a decision without a schedule.
        let later = Bindings {
            now: jiff::Timestamp::constant(1_896_119_200, 0),
            ..bound.clone()
        };
        assert!(kept.answers(&later));
    }

    #[test]
    fn a_decision_that_depends_on_the_time_is_not_kept() {
        let memo = Memo::new(1 << 20);
        let schedule = serde_json::json!({"schedule": {"timeZone": "UTC",
            "windows": [{"days": ["Tue"], "start": "08:00", "end": "18:00"}]}});
        let text = body("u-1", &pod("registry.example.com/api:1"));
        decide_and_keep(&memo, &text, &bindings(schedule));
        assert!(memo.is_empty());
        decide_and_keep(&memo, &text, &bindings(images()));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn the_memo_stays_within_its_budget() {
        let bound = bindings(images());
        let off = Memo::new(0);
        let text = body("u-1", &pod("registry.example.com/api:1"));
        decide_and_keep(&off, &text, &bound);
        assert!(off.is_empty() && off.get(Some("shop"), &pod_text(&text)).is_none());

        // A few decisions fit: the memo is emptied when the next one does not.
        let memo = Memo::new(3 * (1024 + 2048));
        let (mut most, mut emptied) = (0, false);
        for i in 0..20 {
            let text = body("u", &pod(&format!("registry.example.com/api:{i}")));
            let before = memo.len();
            decide_and_keep(&memo, &text, &bound);
            assert!(memo.get(Some("shop"), &pod_text(&text)).is_some(), "{i}");
            emptied |= memo.len() < before;
            most = most.max(memo.len());
            assert!(memo.inner.lock().unwrap().used <= memo.budget);
        }
        assert!(emptied && (2..10).contains(&most), "{most}");
        // Keeping the same pod again replaces its entry.
        let before = memo.len();
        let text = body("u", &pod("registry.example.com/api:19"));
        decide_and_keep(&memo, &text, &bound);
        assert_eq!(memo.len(), before);
    }
}
