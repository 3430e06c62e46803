//! `Status` error bodies with the codes, reasons, messages and details kube-apiserver returns.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// A group and resource, printed like kube-apiserver's qualified resource (`configmaps`,
/// `widgets.example.com`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One field problem of an `Invalid` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The `reason` kube-apiserver derives from the field error type (the message prefix).
    fn reason(&self) -> &'static str {
        let m = self.message.as_str();
        if m.starts_with("Required value") {
            "FieldValueRequired"
        } else if m.starts_with("Unsupported value") {
            "FieldValueNotSupported"
        } else if m.starts_with("Forbidden") {
            "FieldValueForbidden"
        } else if m.starts_with("Duplicate value") {
            "FieldValueDuplicate"
        } else if m.starts_with("Too long") || m.starts_with("Too many") {
            "FieldValueTooLong"
        } else {
            "FieldValueInvalid"
        }
    }
}

/// An API error, rendered as a `Status` body with the matching HTTP code.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(gr: &GroupResource, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": gr.resource });
    if !gr.group.is_empty() {
        d["group"] = json!(gr.group);
    }
    d
}

/// A delete precondition that did not hold: `field` is `UID` or `ResourceVersion`.
pub struct FailedPrecondition<'a> {
    pub kind: &'a str,
    pub field: &'a str,
    pub wanted: &'a str,
    pub actual: &'a str,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self {
            details: Some(details(gr, name)),
            ..Self::new(404, "NotFound", format!("{gr} \"{name}\" not found"))
        }
    }

    /// A path the server does not serve (unknown resource or group).
    pub fn no_route() -> Self {
        Self {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self {
            details: Some(details(gr, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{gr} \"{name}\" already exists"),
            )
        }
    }

    pub fn conflict(gr: &GroupResource, name: &str) -> Self {
        Self {
            details: Some(details(gr, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {gr} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again"
                ),
            )
        }
    }

    /// 409 for a failed delete precondition. kube-apiserver names the object by its kind here
    /// (`on ConfigMap "a"`) and says which field differs (`uid` or `ResourceVersion`).
    pub fn precondition_failed(
        gr: &GroupResource,
        name: &str,
        failed: &FailedPrecondition,
    ) -> Self {
        let FailedPrecondition {
            kind,
            field,
            wanted,
            actual,
        } = failed;
        let hint = if *field == "UID" {
            "deleted and then recreated"
        } else {
            "modified"
        };
        Self {
            details: Some(details(gr, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {kind} \"{name}\": the {field} in the \
                     precondition ({wanted}) does not match the {field} in record ({actual}). \
                     The object might have been {hint}"
                ),
            )
        }
    }

    /// 422 `Invalid`: `<Kind> "<name>" is invalid: <field>: <message>` (several causes are
    /// listed in brackets, as the apimachinery aggregate prints them).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: &[Cause]) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let summary = match rendered.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({ "reason": c.reason(), "message": c.message, "field": c.field }))
            .collect();
        // kube-apiserver names the kind with its group: `AccessPolicy.passport.dev "x"`.
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        Self {
            details: Some(json!({ "name": name, "group": group, "kind": kind, "causes": causes })),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: {summary}"),
            )
        }
    }

    /// 422 without a field, e.g. a failed JSON patch `test` operation.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self {
            details: Some(
                json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": detail.into() }] }),
            ),
            ..Self::new(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// A create or update body in a media type the server does not decode.
    pub fn unsupported_body(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// What the watch cache says about a resourceVersion older than its window.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Gone", message)
    }

    /// 406, with kube-apiserver's message listing what it can serve.
    pub fn not_acceptable(available: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!("406: Not Acceptable\n\nAvailable representations: {available}"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            details: Some(json!({ "causes": [{ "message": message }] })),
            ..Self::new(
                500,
                "InternalError",
                format!("Internal error occurred: {message}"),
            )
        }
    }

    /// An error whose code, reason and message were decided elsewhere (an admission webhook).
    pub fn custom(
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<Value>,
    ) -> Self {
        Self {
            code,
            reason,
            message,
            details,
        }
    }

    /// The `Status` object, as in a response body or a watch `ERROR` event.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_status().to_string(),
        )
            .into_response()
    }
}

/// The `Status` a successful collection delete or a finished delete returns.
pub fn success(gr: &GroupResource, name: &str, uid: &str) -> Value {
    let mut d = details(gr, name);
    d["uid"] = json!(uid);
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d })
}
