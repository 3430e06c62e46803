//! ObjectMeta validation every write goes through, with kube-apiserver's messages: label keys
//! and values, annotation keys and total size, and no new finalizers on an object being deleted.

use serde_json::Value;

use super::status::Cause;

const NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and \
must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
'MyValue',  or 'my_value',  or '12345', regex used for validation is \
'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const MAX_ANNOTATIONS: usize = 256 * 1024;

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn qualified_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(alnum)
        && s.chars().last().is_some_and(alnum)
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Problems with a qualified name (`prefix/name` or `name`), as field messages.
fn key_problems(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(prefix) = prefix
        && !dns_subdomain(prefix)
    {
        out.push(format!(
            "Invalid value: {key:?}: prefix part a lowercase RFC 1123 subdomain must consist of \
             lower case alphanumeric characters, '-' or '.', and must start and end with an \
             alphanumeric character"
        ));
    }
    if name.len() > 63 {
        out.push(format!(
            "Invalid value: {key:?}: name part must be no more than 63 characters"
        ));
    }
    if !qualified_part(name) {
        out.push(format!("Invalid value: {key:?}: {NAME_MSG}"));
    }
    out
}

/// Label and annotation problems of `obj`.
pub fn validate(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &obj["metadata"];
    for (key, value) in meta["labels"].as_object().into_iter().flatten() {
        for p in key_problems(key) {
            causes.push(Cause::new("metadata.labels", p));
        }
        let value = value.as_str().unwrap_or_default();
        if value.len() > 63 {
            causes.push(Cause::new(
                "metadata.labels",
                format!("Invalid value: {value:?}: must be no more than 63 characters"),
            ));
        }
        if !value.is_empty() && !qualified_part(value) {
            causes.push(Cause::new(
                "metadata.labels",
                format!("Invalid value: {value:?}: {VALUE_MSG}"),
            ));
        }
    }
    let annotations = meta["annotations"].as_object();
    let mut size = 0;
    for (key, value) in annotations.into_iter().flatten() {
        for p in key_problems(&key.to_lowercase()) {
            causes.push(Cause::new("metadata.annotations", p));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > MAX_ANNOTATIONS {
        causes.push(Cause::new(
            "metadata.annotations",
            format!("Too long: may not be more than {MAX_ANNOTATIONS} bytes"),
        ));
    }
    causes
}

/// An object being deleted may lose finalizers but not gain new ones.
pub fn finalizer_problems(old: &Value, new: &Value) -> Vec<Cause> {
    if old["metadata"]["deletionTimestamp"].is_null() {
        return Vec::new();
    }
    let before: Vec<&str> = old["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let added: Vec<String> = new["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|f| !before.contains(f))
        .map(|f| format!("{f:?}"))
        .collect();
    if added.is_empty() {
        return Vec::new();
    }
    vec![Cause::new(
        "metadata.finalizers",
        format!(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new \
             finalizers []string{{{}}}",
            added.join(", ")
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_follow_the_qualified_name_rules() {
        let ok = json!({ "metadata": { "labels": { "app.kubernetes.io/name": "web", "x": "" },
            "annotations": { "passport.dev/injected": "a,b" } } });
        assert!(validate(&ok).is_empty());
        let long = "v".repeat(64);
        let bad =
            json!({ "metadata": { "labels": { "bad key": "ok", "k": "bad value!", "l": long } } });
        let fields: Vec<String> = validate(&bad).into_iter().map(|c| c.message).collect();
        assert_eq!(fields.len(), 3, "{fields:?}");
        assert!(
            fields
                .iter()
                .any(|m| m.contains("must be no more than 63 characters"))
        );
    }
}
