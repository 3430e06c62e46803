//! `review`: AdmissionReview JSON in, AdmissionReview out, around `mutate`. Pure like it: the
//! caller passes a `BindingsSource` that answers from memory. The server, which looks bindings
//! up asynchronously, takes the same path in two steps: `Admission::parse` (the one parse),
//! then `Admission::decide`. Malformed input is a `ReviewError` the server maps to HTTP 400,
//! never a panic.

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, SerializePatchError,
};

use crate::mutate::{Denial, Mutation, SkippedPolicy, mutate_owned, service_account};
use crate::pod_in::PodIn;
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
    /// documents base64, which every other client and tool expects. Send this (or
    /// [`Reviewed::to_json`]) instead of serialising `review` directly.
    pub fn to_wire(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(Wire(&self.review))
    }

    /// [`Reviewed::to_wire`] as the bytes of the HTTP response, serialised once.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Wire(&self.review))
    }
}

/// A response AdmissionReview as the API documents it (`Reviewed::to_wire`).
struct Wire<'a>(&'a AdmissionReview<DynamicObject>);

/// Its response: kube's fields and skip rules, with the patch in base64 and `patchType` (which
/// kube sets exactly when it sets the patch).
struct WireResponse<'a>(&'a AdmissionResponse);

impl serde::Serialize for Wire<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let review = self.0;
        let mut s = serializer.serialize_struct("AdmissionReview", 3)?;
        s.serialize_field("apiVersion", &review.types.api_version)?;
        s.serialize_field("kind", &review.types.kind)?;
        if let Some(response) = &review.response {
            s.serialize_field("response", &WireResponse(response))?;
        }
        s.end()
    }
}

impl serde::Serialize for WireResponse<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeStruct as _;
        let response = self.0;
        let mut s = serializer.serialize_struct("AdmissionResponse", 7)?;
        s.serialize_field("uid", &response.uid)?;
        s.serialize_field("allowed", &response.allowed)?;
        s.serialize_field("status", &response.result)?;
        if let Some(patch) = &response.patch {
            let patch = base64::engine::general_purpose::STANDARD.encode(patch);
            s.serialize_field("patch", &patch)?;
            s.serialize_field("patchType", "JSONPatch")?;
        }
        if !response.audit_annotations.is_empty() {
            s.serialize_field("auditAnnotations", &response.audit_annotations)?;
        }
        if let Some(warnings) = &response.warnings {
            s.serialize_field("warnings", warnings)?;
        }
        s.end()
    }
}

fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => format!("{prefix}*"),
        _ => String::new(),
    }
}

/// The request with its pods as k8s-openapi `Pod`s holding what `mutate` reads.
fn with_pods(r: AdmissionRequest<PodIn>) -> AdmissionRequest<Pod> {
    AdmissionRequest {
        types: r.types,
        uid: r.uid,
        kind: r.kind,
        resource: r.resource,
        sub_resource: r.sub_resource,
        request_kind: r.request_kind,
        request_resource: r.request_resource,
        request_sub_resource: r.request_sub_resource,
        name: r.name,
        namespace: r.namespace,
        operation: r.operation,
        user_info: r.user_info,
        object: r.object.map(Pod::from),
        old_object: r.old_object.map(Pod::from),
        dry_run: r.dry_run,
        options: r.options,
    }
}

/// A parsed pod AdmissionReview, between its one parse and the decision: the server looks the
/// bindings of `subject` up (from its stores, asynchronously) and then calls `decide`.
pub struct Admission {
    request: AdmissionRequest<Pod>,
    /// For a CREATE (the only operation mutated): the pod, its namespace and service account.
    create: Option<Create>,
}

struct Create {
    pod: Pod,
    namespace: String,
    service_account: String,
}

impl Admission {
    /// Parses `body`, refusing what is not an AdmissionReview of a v1 Pod (and a CREATE with no
    /// pod or no namespace).
    pub fn parse(body: &[u8]) -> Result<Self, ReviewError> {
        // The body is checked to be UTF-8 once, then parsed as text: from bytes, serde_json
        // checks every string of the pod on its own, a tenth of the parse.
        let text = std::str::from_utf8(body).map_err(|error| {
            ReviewError::Parse(serde::de::Error::custom(format_args!(
                "the body is not UTF-8: {error}"
            )))
        })?;
        // The pod is parsed as `mutate` reads it (`pod_in`): the rest is skipped unparsed.
        let parsed: AdmissionReview<PodIn> =
            serde_json::from_str(text).map_err(ReviewError::Parse)?;
        let request: AdmissionRequest<PodIn> =
            parsed.try_into().map_err(|_| ReviewError::NoRequest)?;
        let mut request = with_pods(request);
        let gvk = &request.kind;
        if gvk.kind != "Pod" || !gvk.group.is_empty() || gvk.version != "v1" {
            return Err(ReviewError::NotAPod(format!(
                "{}/{} {}",
                gvk.group, gvk.version, gvk.kind
            )));
        }
        if request.operation != Operation::Create {
            // Other operations (a DELETE has no object) pass untouched.
            return Ok(Self {
                request,
                create: None,
            });
        }
        let pod = request.object.take().ok_or(ReviewError::NoObject)?;
        let namespace = request
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .filter(|ns| !ns.is_empty())
            .ok_or(ReviewError::NoNamespace)?;
        let service_account = service_account(&pod).to_owned();
        Ok(Self {
            request,
            create: Some(Create {
                pod,
                namespace,
                service_account,
            }),
        })
    }

    /// The namespace and service account whose bindings `decide` needs; None when there is
    /// nothing to decide (not a CREATE).
    pub fn subject(&self) -> Option<(&str, &str)> {
        self.create
            .as_ref()
            .map(|c| (c.namespace.as_str(), c.service_account.as_str()))
    }

    /// The pod of a CREATE, with the fields `mutate` reads (only those: see `pod_in`).
    pub fn pod(&self) -> Option<&Pod> {
        self.create.as_ref().map(|c| &c.pod)
    }

    /// Whether the request is a dry run (`kubectl apply --dry-run=server`): persisted nowhere.
    pub fn dry_run(&self) -> bool {
        self.request.dry_run
    }

    /// Decides with `mutate` and builds the response AdmissionReview: UID echoed, the JSON
    /// patch of the mutation (`Mutation::patch_json`), warnings for policies skipped by their
    /// conditions. `bindings` is not read for anything but a CREATE. The parsed pod is mutated in
    /// place: no copy of it is made.
    pub fn decide(self, bindings: &Bindings) -> Result<Reviewed, ReviewError> {
        let response = AdmissionResponse::from(&self.request);
        let request = self.request;
        let Some(Create {
            pod,
            namespace,
            service_account,
        }) = self.create
        else {
            return Ok(Reviewed {
                review: response.into_review(),
                decision: Decision::Ignored {
                    operation: format!("{:?}", request.operation),
                },
                uid: request.uid,
                namespace: request.namespace.unwrap_or_default(),
                pod: request.name,
                service_account: String::new(),
            });
        };
        let display = pod_display_name(&pod);
        let (review, decision) = match mutate_owned(pod, bindings) {
            Err(denial) => (
                response.deny(&denial.message).into_review(),
                Decision::Denied(denial),
            ),
            Ok(mutation) => {
                let patch = mutation.patch_json().map_err(ReviewError::Serialize)?;
                let Mutation {
                    applied,
                    skipped,
                    compat,
                    trace,
                    ..
                } = mutation;
                let mut response = match patch {
                    None => response,
                    Some(bytes) => {
                        // `with_patch` is kube's only way to set `patchType`; the bytes it
                        // writes are then replaced by the patch `mutate` wrote directly.
                        let mut response = response
                            .with_patch(json_patch::Patch(Vec::new()))
                            .map_err(ReviewError::Patch)?;
                        response.patch = Some(bytes);
                        response
                    }
                };
                if !skipped.is_empty() {
                    response.warnings = Some(
                        skipped
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
                let decision = Decision::Admitted {
                    applied,
                    skipped,
                    compat,
                    trace,
                };
                (response.into_review(), decision)
            }
        };
        Ok(Reviewed {
            review,
            decision,
            uid: request.uid,
            namespace,
            pod: display,
            service_account,
        })
    }
}

/// Parses `body`, looks the pod's bindings up in `source`, and decides (`Admission`).
pub fn review(body: &[u8], source: &dyn BindingsSource) -> Result<Reviewed, ReviewError> {
    let admission = Admission::parse(body)?;
    let bindings = match (admission.subject(), admission.pod()) {
        (Some((namespace, service_account)), Some(pod)) => {
            source.bindings(namespace, service_account, pod)
        }
        // Not read for anything but a CREATE.
        _ => Bindings::new(
            "",
            jiff::Timestamp::UNIX_EPOCH,
            std::sync::Arc::new(crate::Config::new("")),
        ),
    };
    admission.decide(&bindings)
}
