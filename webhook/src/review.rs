//! `review`: AdmissionReview JSON in, AdmissionReview out, around `mutate`. Pure like it: the
//! caller passes a `BindingsSource` that answers from memory. The server, which looks bindings
//! up asynchronously, takes the same path in two steps: `Admission::parse` (the one parse),
//! then `Admission::decide`; with its memo, it reads the review with the pod written as its
//! memo key (`Request`), and parses the pod only when no decision is kept for it. Malformed input
//! is a `ReviewError` the server maps to HTTP 400, never a panic.

use k8s_openapi::api::core::v1::Pod;
use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::memo::PodKey;
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
    pub response: Response,
    pub decision: Decision,
    pub namespace: String,
    /// The pod's name, or `<generateName>*` when the API server has not named it yet.
    pub pod: String,
    pub service_account: String,
}

impl Reviewed {
    /// The response AdmissionReview as JSON ([`Response::to_json`]), for printing.
    pub fn to_wire(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.response.to_json()?)
    }

    /// The bytes of the HTTP response ([`Response::to_json`]).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        self.response.to_json()
    }
}

/// The response AdmissionReview Passport answers with. Its own type rather than kube's
/// `AdmissionResponse`, which serialises the patch as an array of numbers (kube-rs issue #1781)
/// where the API documents base64, and has no way to take a patch already written as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request's `apiVersion`, echoed: the API server expects its own version back.
    pub api_version: String,
    /// The request's UID, echoed.
    pub uid: String,
    pub allowed: bool,
    /// Why the pod was refused, shown to whoever created it (`status.message`); empty when
    /// allowed.
    pub message: String,
    /// The JSON patch (RFC 6902) of the mutation, as JSON; None when nothing changes.
    pub patch: Option<Vec<u8>>,
    /// Shown by kubectl to whoever created the pod (policies skipped for their conditions).
    pub warnings: Vec<String>,
}

impl Response {
    /// An allowed response to the request `uid` of version `api_version`, with no patch.
    fn allow(api_version: String, uid: String) -> Self {
        Self {
            api_version,
            uid,
            allowed: true,
            message: String::new(),
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// The AdmissionReview in its documented wire form: `response.patch` in base64 with
    /// `patchType: JSONPatch`, a refusal's message in `response.status.message`, members
    /// with nothing to say left out. Written straight into one buffer: the base64 patch, the
    /// largest part, needs no JSON escaping and is encoded in place.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        self.to_json_for(&self.api_version, &self.uid)
    }

    /// [`Response::to_json`] as the answer to the request `uid` of version `api_version`: the
    /// same decision, given to another pod of the same template (`crate::memo`).
    pub fn to_json_for(&self, api_version: &str, uid: &str) -> Result<Vec<u8>, serde_json::Error> {
        let patch_len = self.patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4);
        let mut out = Vec::with_capacity(192 + patch_len + uid.len() + self.message.len());
        write_head(&mut out, api_version, uid)?;
        self.write_tail(&mut out)?;
        Ok(out)
    }

    /// The end of the response's JSON, after its UID: what does not change from one request to
    /// another on the same decision (`crate::memo` keeps it written).
    pub fn tail_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::new();
        self.write_tail(&mut out)?;
        Ok(out)
    }

    fn write_tail(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        use base64::Engine as _;
        let allowed: &[u8] = if self.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        };
        out.extend_from_slice(allowed);
        if !self.message.is_empty() {
            out.extend_from_slice(b",\"status\":{\"message\":");
            serde_json::to_writer(&mut *out, &self.message)?;
            out.push(b'}');
        }
        if let Some(patch) = &self.patch {
            out.extend_from_slice(b",\"patch\":\"");
            let start = out.len();
            out.resize(start + patch.len().div_ceil(3) * 4, 0);
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(patch, &mut out[start..])
                .map_err(<serde_json::Error as serde::ser::Error>::custom)?;
            out.truncate(start + written);
            out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            serde_json::to_writer(&mut *out, &self.warnings)?;
        }
        out.extend_from_slice(b"}}");
        Ok(())
    }
}

/// The start of a response AdmissionReview's JSON, up to and with its UID.
pub fn write_head(
    out: &mut Vec<u8>,
    api_version: &str,
    uid: &str,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut *out, api_version)?;
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    serde_json::to_writer(&mut *out, uid)
}

fn pod_display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => [prefix.as_str(), "*"].concat(),
        _ => String::new(),
    }
}

/// An AdmissionReview request as it arrives, read in one pass, with only what Passport reads
/// built. kube's `AdmissionReview` flattens its `apiVersion` and `kind` into it
/// (`#[serde(flatten)]`), and for that serde first buffers the whole body, the pod included,
/// into a tree of its own: every member the pod parse (`pod_in`) skips would be read and copied
/// anyway. The members kube's `AdmissionRequest` requires stay required here. `O` is the
/// object as it is read: the pod (`PodIn`), or its text left unparsed (`Request`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<O> {
    api_version: String,
    #[expect(dead_code, reason = "required, not read")]
    kind: IgnoredAny,
    request: Option<RequestIn<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<O> {
    uid: String,
    kind: GroupVersionKind,
    /// Required, not read.
    resource: IgnoredAny,
    /// Required, not read.
    user_info: IgnoredAny,
    operation: Operation,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    object: Option<O>,
    #[serde(default)]
    dry_run: bool,
}

/// `body` as text: checked to be UTF-8 once, then parsed as text (from bytes, serde_json checks
/// every string of the pod on its own, a tenth of the parse).
fn text(body: &[u8]) -> Result<&str, ReviewError> {
    std::str::from_utf8(body).map_err(|error| {
        ReviewError::Parse(serde::de::Error::custom(format_args!(
            "the body is not UTF-8: {error}"
        )))
    })
}

/// The request of a review, refused when there is none or it is not of a v1 Pod.
fn pod_request<O>(parsed: ReviewIn<O>) -> Result<(String, RequestIn<O>), ReviewError> {
    let request = parsed.request.ok_or(ReviewError::NoRequest)?;
    let gvk = &request.kind;
    if gvk.kind != "Pod" || !gvk.group.is_empty() || gvk.version != "v1" {
        return Err(ReviewError::NotAPod(format!(
            "{}/{} {}",
            gvk.group, gvk.version, gvk.kind
        )));
    }
    Ok((parsed.api_version, request))
}

impl<O> RequestIn<O> {
    /// The same request with its object read another way.
    fn with_object<P>(
        self,
        read: impl FnOnce(O) -> Result<P, ReviewError>,
    ) -> Result<RequestIn<P>, ReviewError> {
        let object = self.object.map(read).transpose()?;
        Ok(RequestIn {
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            user_info: self.user_info,
            operation: self.operation,
            name: self.name,
            namespace: self.namespace,
            object,
            dry_run: self.dry_run,
        })
    }
}

/// A pod AdmissionReview read with its object written as its memo key (`crate::memo::PodKey`)
/// instead of parsed: what a caller needs to find an earlier decision on a pod of the same
/// template, in the one pass over the body. [`Request::admission`] then parses the pod from
/// its key: the admission `Admission::parse` reads from the same body, but that the name of
/// the pod's token volume reads `kube-api-access-*` and `managedFields` are gone (no decision
/// reads either; a decision that names the token volume is made again from the body).
pub struct Request {
    api_version: String,
    request: RequestIn<PodKey>,
}

impl Request {
    /// Reads `body`, refusing what is not an AdmissionReview of a v1 Pod.
    pub fn read(body: &[u8]) -> Result<Self, ReviewError> {
        let parsed: ReviewIn<PodKey> =
            serde_json::from_str(text(body)?).map_err(ReviewError::Parse)?;
        let (api_version, request) = pod_request(parsed)?;
        Ok(Self {
            api_version,
            request,
        })
    }

    /// The memo key of the pod of a CREATE (the only operation decided).
    pub fn created_pod(&self) -> Option<&PodKey> {
        let create = self.request.operation == Operation::Create;
        self.request.object.as_ref().filter(|_| create)
    }

    /// The request's namespace, if it names one.
    pub fn namespace(&self) -> Option<&str> {
        self.request.namespace.as_deref()
    }

    /// The request's `apiVersion`, echoed in the response.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The request's UID, echoed in the response.
    pub fn uid(&self) -> &str {
        &self.request.uid
    }

    /// Whether the request is a dry run (`kubectl apply --dry-run=server`): persisted nowhere.
    pub fn dry_run(&self) -> bool {
        self.request.dry_run
    }

    /// Parses the pod from its key, and hands the key back.
    pub fn admission(self) -> Result<(Admission, Option<PodKey>), ReviewError> {
        let mut key = None;
        let request = self.request.with_object(|pod| {
            let parsed = serde_json::from_str(pod.as_str()).map_err(ReviewError::Parse);
            key = Some(pod);
            parsed
        })?;
        Ok((Admission::new(self.api_version, request)?, key))
    }
}

/// A parsed pod AdmissionReview, between its one parse and the decision: the server looks the
/// bindings of `subject` up (from its stores, asynchronously) and then calls `decide`. It keeps
/// of the request only what the response and the audit need, and the pod boxed: it is held
/// across the server's lookups, in the request's future.
pub struct Admission {
    /// The request's `apiVersion` and UID, echoed in the response.
    api_version: String,
    uid: String,
    operation: Operation,
    namespace: Option<String>,
    /// The object's name (empty for a pod the API server names after admission).
    name: String,
    dry_run: bool,
    /// For a CREATE (the only operation mutated): the pod, its namespace and service account.
    create: Option<Create>,
}

struct Create {
    pod: Box<Pod>,
    namespace: String,
    service_account: String,
}

impl Admission {
    /// Parses `body`, refusing what is not an AdmissionReview of a v1 Pod (and a CREATE with no
    /// pod or no namespace).
    pub fn parse(body: &[u8]) -> Result<Self, ReviewError> {
        // The pod is parsed as `mutate` reads it (`pod_in`): the rest is skipped unparsed.
        let parsed: ReviewIn<PodIn> =
            serde_json::from_str(text(body)?).map_err(ReviewError::Parse)?;
        let (api_version, request) = pod_request(parsed)?;
        Self::new(api_version, request)
    }

    fn new(api_version: String, request: RequestIn<PodIn>) -> Result<Self, ReviewError> {
        let mut admission = Self {
            api_version,
            uid: request.uid,
            operation: request.operation,
            namespace: request.namespace,
            name: request.name,
            dry_run: request.dry_run,
            create: None,
        };
        if admission.operation != Operation::Create {
            // Other operations (a DELETE has no object) pass untouched.
            return Ok(admission);
        }
        let pod = Box::new(Pod::from(request.object.ok_or(ReviewError::NoObject)?));
        let namespace = admission
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .filter(|ns| !ns.is_empty())
            .ok_or(ReviewError::NoNamespace)?;
        let service_account = service_account(&pod).to_owned();
        admission.create = Some(Create {
            pod,
            namespace,
            service_account,
        });
        Ok(admission)
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
        self.create.as_ref().map(|c| &*c.pod)
    }

    /// [`Admission::pod`], owned: the pod exactly as `decide` hands it to `mutate_owned` (for a
    /// caller that times `mutate` apart from the parse, as the benchmark does).
    pub fn into_pod(self) -> Option<Pod> {
        self.create.map(|c| *c.pod)
    }

    /// Whether the request is a dry run (`kubectl apply --dry-run=server`): persisted nowhere.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Decides with `mutate` and builds the response AdmissionReview: UID echoed, the JSON
    /// patch of the mutation (`Mutation::patch_json`), warnings for policies skipped by their
    /// conditions. `bindings` is not read for anything but a CREATE. The parsed pod is mutated in
    /// place: no copy of it is made.
    pub fn decide(self, bindings: &Bindings) -> Result<Reviewed, ReviewError> {
        let response = Response::allow(self.api_version, self.uid);
        let Some(Create {
            pod,
            namespace,
            service_account,
        }) = self.create
        else {
            return Ok(Reviewed {
                response,
                decision: Decision::Ignored {
                    operation: format!("{:?}", self.operation),
                },
                namespace: self.namespace.unwrap_or_default(),
                pod: self.name,
                service_account: String::new(),
            });
        };
        let display = pod_display_name(&pod);
        let (response, decision) = match mutate_owned(*pod, bindings) {
            Err(denial) => (
                Response {
                    allowed: false,
                    message: denial.message.clone(),
                    ..response
                },
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
                let warnings = skipped
                    .iter()
                    .map(|s| {
                        format!(
                            "Passport: no credentials from AccessPolicy {}: {}",
                            s.policy, s.reason
                        )
                    })
                    .collect();
                let decision = Decision::Admitted {
                    applied,
                    skipped,
                    compat,
                    trace,
                };
                (
                    Response {
                        patch,
                        warnings,
                        ..response
                    },
                    decision,
                )
            }
        };
        Ok(Reviewed {
            response,
            decision,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine as _;

    use super::Response;

    fn wire(response: &Response) -> serde_json::Value {
        serde_json::from_slice(&response.to_json().unwrap()).unwrap()
    }

    #[test]
    fn the_response_is_written_in_the_documented_wire_form() {
        let patch = br#"[{"op":"add","path":"/metadata/annotations/a~1b","value":"\"x\"\n"}]"#;
        let admitted = Response {
            patch: Some(patch.to_vec()),
            warnings: vec!["Passport: \"quoted\"".to_owned()],
            ..Response::allow("admission.k8s.io/v1".to_owned(), "u-\"1\"".to_owned())
        };
        let json = wire(&admitted);
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(json["kind"], "AdmissionReview");
        let response = &json["response"];
        assert_eq!(response["uid"], "u-\"1\"", "the UID is echoed, escaped");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, patch, "the patch is base64 of its JSON");
        assert_eq!(response["warnings"][0], "Passport: \"quoted\"");
        assert!(response.get("status").is_none(), "{json}");

        for len in 0..4 {
            let bytes = Response {
                patch: Some(vec![b'['; len]),
                ..admitted.clone()
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(wire(&bytes)["response"]["patch"].as_str().unwrap())
                .unwrap();
            assert_eq!(decoded.len(), len, "padding of a {len}-byte patch");
        }

        let denied = Response {
            allowed: false,
            message: "Passport refused the pod: AccessPolicy shop/api: condition images failed"
                .to_owned(),
            ..Response::allow("admission.k8s.io/v1".to_owned(), "u-2".to_owned())
        };
        let json = wire(&denied);
        let response = &json["response"];
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["message"], denied.message);
        assert!(response.get("patch").is_none() && response.get("patchType").is_none());
        assert!(response.get("warnings").is_none(), "{json}");
    }
}
