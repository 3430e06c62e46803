//! The proto3 JSON mapping as Google's front ends apply it to request bodies: `null` for any
//! field means the field's default (so it is dropped before the body is typed), and a field may
//! be spelled with its proto name (`display_name`) as well as its JSON name (`displayName`).
//! Unknown fields stay unknown and are refused by the typed models.

use serde_json::{Map, Value};

/// Fields of the served messages that are proto `map<..>`s: their keys are data, not field
/// names, so they are neither renamed nor stripped.
const MAP_FIELDS: &[&str] = &["attributeMapping"];

/// Applies the mapping to a request body.
pub(crate) fn normalize(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(normalize_message(object)),
        // Repeated fields: a null element is not the default of anything; leave it for the
        // typed model to refuse, as Google does.
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn normalize_message(object: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        let key = if key.starts_with('@') {
            key
        } else {
            json_name(&key)
        };
        let value = if MAP_FIELDS.contains(&key.as_str()) {
            value
        } else {
            normalize(value)
        };
        out.insert(key, value);
    }
    out
}

/// The lowerCamelCase JSON name of a proto field name (`issuer_uri` -> `issuerUri`).
pub(super) fn json_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nulls_are_defaults_and_proto_names_are_json_names() {
        let body = json!({
            "delegates": null,
            "scope": ["s"],
            "display_name": "x",
            "oidc": { "issuer_uri": "https://i", "jwks_json": null },
            "attributeMapping": { "attribute.service_account_name": "assertion.sub" },
            "aws": { "@type": "t" },
        });
        assert_eq!(
            normalize(body),
            json!({
                "scope": ["s"],
                "displayName": "x",
                "oidc": { "issuerUri": "https://i" },
                "attributeMapping": { "attribute.service_account_name": "assertion.sub" },
                "aws": { "@type": "t" },
            })
        );
    }
}
