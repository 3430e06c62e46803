//! `review`: AdmissionReview JSON in, AdmissionReview out, around `mutate`. Pure like it: the
//! caller passes a `BindingsSource` that answers from memory. Malformed input is a
//! `ReviewError` the server maps to HTTP 400, never a panic.

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, SerializePatchError,
};

use crate::mutate::{Denial, SkippedPolicy, mutate, service_account};
use crate::{Bindings, Trace};

/// Looks up the bindings of one pod; the server answers from its reflector stores.
pub trait BindingsSource {
    fn bindings(&self, namespace: &str, service_account: &str, pod: &Pod) -> Bindings;
}

impl<F> BindingsSource for F
where
    F: Fn(&str, &str, &Pod) -> Bindings,
{
    fn bindings(&self, namespace: &str, service_account: &str, pod: &Pod) -> Bindings {
        self(namespace, service_account, pod)
    }
}

/// Why a body is not a reviewable pod admission.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the AdmissionReview is for {0}, not a v1 Pod")]
    NotAPod(String),
    #[error("the AdmissionReview request has no object")]
    NoObject,
    #[error("the AdmissionReview request names no namespace")]
    NoNamespace,
    #[error("serialising the pod: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("writing the patch: {0}")]
    Patch(#[source] SerializePatchError),
}

impl ReviewError {
    /// A stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Parse(_) => "Parse",
            Self::NoRequest => "NoRequest",
            Self::NotAPod(_) => "NotAPod",
            Self::NoObject => "NoObject",
            Self::NoNamespace => "NoNamespace",
            Self::Serialize(_) => "Serialize",
            Self::Patch(_) => "Patch",
        }
    }
}

/// What was decided, for the audit line and the Warning events.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Not a CREATE: admitted untouched.
    Ignored {
        operation: String,
    },
    Admitted {
        applied: Vec<String>,
        skipped: Vec<SkippedPolicy>,
        /// The compatibility modes that gave credentials (`eks`, `azure`).
        compat: Vec<String>,
        trace: Trace,
    },
    Denied(Denial),
}

/// The response and what led to it.
#[derive(Clone, Debug)]
pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub decision: Decision,
    pub uid: String,
    pub namespace: String,
    /// The pod's name, or `<generateName>*` when the API server has not named it yet.
    pub pod: String,
    pub service_account: String,
}

impl Reviewed {
    /// The response AdmissionReview in the documented wire form, with `response.patch` in
    /// base64. kube's `AdmissionResponse` serialises the bytes as an array of numbers (kube-rs
    /// issue #1781); kube-apiserver's Go decoder happens to accept that too, but the API
    /// documents base64, which every other client and tool expects. Send this instead of
    /// serialising `review` directly.
    pub fn to_wire(&self) -> Result<serde_json::Value, serde_json::Error> {
        use base64::Engine as _;
        let patch = self.review.response.as_ref().and_then(|r| r.patch.as_ref());
        let Some(patch) = patch else {
            return serde_json::to_value(&self.review);
        };
        // Serialised without the patch, which serde would write as an array of numbers only to
        // be replaced: one value per byte of the patch.
        let mut review = self.review.clone();
        if let Some(response) = review.response.as_mut() {
            response.patch = None;
        }
        let mut value = serde_json::to_value(&review)?;
        if let Some(response) = value.get_mut("response") {
            response["patch"] = base64::engine::general_purpose::STANDARD
                .encode(patch)
                .into();
        }
        Ok(value)
    }
}

/// The parts of a pod that `mutate` may change, as JSON: `metadata.annotations`,
/// `spec.volumes`, `spec.containers` and `spec.initContainers` (everything it writes lives
/// there). The diff of these parts of two pods is the diff of the whole pods, operation for
/// operation, without serialising the rest of each pod twice.
fn mutable_parts(pod: &Pod) -> Result<serde_json::Value, serde_json::Error> {
    use serde_json::{Map, Value, to_value};
    let mut metadata = Map::new();
    if let Some(annotations) = &pod.metadata.annotations {
        metadata.insert("annotations".to_owned(), to_value(annotations)?);
    }
    let mut parts = Map::new();
    parts.insert("metadata".to_owned(), Value::Object(metadata));
    if let Some(spec) = &pod.spec {
        let mut changed = Map::new();
        changed.insert("containers".to_owned(), to_value(&spec.containers)?);
        if let Some(init) = &spec.init_containers {
            changed.insert("initContainers".to_owned(), to_value(init)?);
        }
        if let Some(volumes) = &spec.volumes {
            changed.insert("volumes".to_owned(), to_value(volumes)?);
        }
        parts.insert("spec".to_owned(), Value::Object(changed));
    }
    Ok(Value::Object(parts))
}

fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => format!("{prefix}*"),
        _ => String::new(),
    }
}

/// Parses `body`, decides with `mutate`, and builds the response AdmissionReview (UID echoed,
/// JSON patch from `json_patch::diff` of the parts `mutate` changes, warnings for policies
/// skipped by their conditions).
pub fn review(body: &[u8], source: &dyn BindingsSource) -> Result<Reviewed, ReviewError> {
    let parsed: AdmissionReview<Pod> = serde_json::from_slice(body).map_err(ReviewError::Parse)?;
    let request: AdmissionRequest<Pod> = parsed.try_into().map_err(|_| ReviewError::NoRequest)?;
    if request.kind.kind != "Pod" || !request.kind.group.is_empty() || request.kind.version != "v1"
    {
        let gvk = &request.kind;
        return Err(ReviewError::NotAPod(format!(
            "{}/{} {}",
            gvk.group, gvk.version, gvk.kind
        )));
    }
    let response = AdmissionResponse::from(&request);
    if request.operation != Operation::Create {
        // Only CREATE is mutated; other operations (a DELETE has no object) pass untouched.
        return Ok(Reviewed {
            review: response.into_review(),
            decision: Decision::Ignored {
                operation: format!("{:?}", request.operation),
            },
            uid: request.uid.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            pod: request.name.clone(),
            service_account: String::new(),
        });
    }
    let pod = request.object.as_ref().ok_or(ReviewError::NoObject)?;
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .filter(|ns| !ns.is_empty())
        .ok_or(ReviewError::NoNamespace)?;
    let sa = service_account(pod).to_owned();
    let mut reviewed = Reviewed {
        review: response.clone().into_review(),
        decision: Decision::Ignored {
            operation: format!("{:?}", request.operation),
        },
        uid: request.uid.clone(),
        namespace,
        pod: pod_display_name(pod),
        service_account: sa,
    };
    let bindings = source.bindings(&reviewed.namespace, &reviewed.service_account, pod);
    match mutate(pod, &bindings) {
        Err(denial) => {
            reviewed.review = response.deny(&denial.message).into_review();
            reviewed.decision = Decision::Denied(denial);
        }
        Ok(mutation) => {
            let before = mutable_parts(pod).map_err(ReviewError::Serialize)?;
            let after = mutable_parts(&mutation.pod).map_err(ReviewError::Serialize)?;
            let patch = json_patch::diff(&before, &after);
            let mut response = if patch.0.is_empty() {
                response
            } else {
                response.with_patch(patch).map_err(ReviewError::Patch)?
            };
            if !mutation.skipped.is_empty() {
                response.warnings = Some(
                    mutation
                        .skipped
                        .iter()
                        .map(|s| {
                            format!(
                                "Passport: no credentials from AccessPolicy {}: {}",
                                s.policy, s.reason
                            )
                        })
                        .collect(),
                );
            }
            reviewed.review = response.into_review();
            reviewed.decision = Decision::Admitted {
                applied: mutation.applied,
                skipped: mutation.skipped,
                compat: mutation.compat,
                trace: mutation.trace,
            };
        }
    }
    Ok(reviewed)
}
