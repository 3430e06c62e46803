//! Label selectors (query strings and `LabelSelector` objects) and field selectors.

use std::collections::BTreeSet;

use serde_json::Value;

use super::status::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

/// A parsed label selector; an empty one matches everything.
#[derive(Clone, Debug, Default)]
pub struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_of(s: &str) -> Result<BTreeSet<String>, ApiError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: expected a set in parentheses, got {s:?}"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let req = if let Some(key) = term.strip_prefix('!') {
                (key.trim().to_owned(), Op::DoesNotExist)
            } else if let Some((k, v)) = term.split_once("!=") {
                (k.trim().to_owned(), Op::NotEq(v.trim().to_owned()))
            } else if let Some((k, v)) = term.split_once("==") {
                (k.trim().to_owned(), Op::Eq(v.trim().to_owned()))
            } else if let Some((k, v)) = term.split_once('=') {
                (k.trim().to_owned(), Op::Eq(v.trim().to_owned()))
            } else if let Some((k, v)) = term.split_once(" notin ") {
                (k.trim().to_owned(), Op::NotIn(set_of(v)?))
            } else if let Some((k, v)) = term.split_once(" in ") {
                (k.trim().to_owned(), Op::In(set_of(v)?))
            } else if term.contains(|c: char| c.is_whitespace() || c == '(') {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: {term:?}"
                )));
            } else {
                (term.clone(), Op::Exists)
            };
            reqs.push(req);
        }
        Ok(Self { reqs })
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                reqs.push((k.clone(), Op::Eq(v.as_str().unwrap_or_default().to_owned())));
            }
        }
        for expr in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expr["key"].as_str().unwrap_or_default().to_owned();
            let values: BTreeSet<String> = expr["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let op = match expr["operator"].as_str().unwrap_or_default() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "{other:?} is not a valid label selector operator"
                    )));
                }
            };
            reqs.push((key, op));
        }
        Ok(Self { reqs })
    }

    /// Whether an object whose `metadata.labels` is `labels` matches.
    pub fn matches(&self, labels: &Value) -> bool {
        self.reqs.iter().all(|(key, op)| {
            let value = labels.get(key).and_then(Value::as_str);
            match op {
                Op::Eq(v) => value == Some(v.as_str()),
                Op::NotEq(v) => value != Some(v.as_str()),
                Op::In(set) => value.is_some_and(|x| set.contains(x)),
                Op::NotIn(set) => value.is_none_or(|x| !set.contains(x)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// A parsed field selector (`=`, `==`, `!=`) over the fields kube-apiserver indexes for the
/// kind: `metadata.name` and `metadata.namespace` everywhere, plus the per-kind ones below.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// `kind` is `(group, plural)`; fields are checked against what that resource supports.
    pub fn parse(s: &str, kind: (&str, &str)) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let (field, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let stored = match stored_field(kind, field) {
                Some(stored) => stored,
                None => {
                    return Err(ApiError::bad_request(format!(
                        "field label not supported: {field}"
                    )));
                }
            };
            reqs.push((stored, equal, value.trim().to_owned()));
        }
        Ok(Self { reqs })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.reqs.iter().all(|(field, equal, value)| {
            let found = field.split('.').fold(object, |v, part| &v[part]);
            let actual = match found {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// The stored (core) path of a selectable field of `(group, plural)`, or None when the real
/// server refuses it. events.k8s.io Events are stored as core Events, so their names map.
fn stored_field(kind: (&str, &str), field: &str) -> Option<String> {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return Some(field.to_owned());
    }
    const EVENT_CORE: [&str; 13] = [
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "source.component",
        "source.host",
    ];
    let supported: &[&str] = match kind {
        ("", "pods") => &[
            "spec.serviceAccountName",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "events") => &EVENT_CORE,
        ("events.k8s.io", "events") => {
            let core = if let Some(rest) = field.strip_prefix("regarding.") {
                format!("involvedObject.{rest}")
            } else if field == "reportingController" {
                "reportingComponent".to_owned()
            } else if field == "deprecatedSource" {
                "source".to_owned()
            } else {
                field.to_owned()
            };
            return EVENT_CORE.contains(&core.as_str()).then_some(core);
        }
        _ => &[],
    };
    supported.contains(&field).then(|| field.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() -> Result<(), ApiError> {
        let labels = json!({ "app": "web", "tier": "front", "env": "prod" });
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "tier in (front, back)",
            "env notin (dev)",
            "app",
            "!missing",
            "app=web,tier in (front),!missing",
            "",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s)?.matches(&labels), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "tier in (back)",
            "env notin (prod)",
            "missing",
            "!app",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s)?.matches(&labels), "{s}");
        }
        Ok(())
    }

    #[test]
    fn field_selectors_check_supported_fields() -> Result<(), ApiError> {
        let pod = json!({ "metadata": { "name": "p", "namespace": "n" }, "spec": { "serviceAccountName": "sa" } });
        assert!(
            FieldSelector::parse("metadata.name=p,spec.serviceAccountName=sa", ("", "pods"))?
                .matches(&pod)
        );
        assert!(!FieldSelector::parse("metadata.namespace!=n", ("", "pods"))?.matches(&pod));
        assert!(FieldSelector::parse("spec.serviceAccountName=sa", ("", "configmaps")).is_err());
        let event = json!({ "involvedObject": { "name": "p", "kind": "Pod" } });
        assert!(
            FieldSelector::parse("regarding.name=p", ("events.k8s.io", "events"))?.matches(&event)
        );
        assert!(FieldSelector::parse("involvedObject.kind=Pod", ("", "events"))?.matches(&event));
        Ok(())
    }
}
