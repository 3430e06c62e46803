//! What kube-apiserver does with a CRD's `openAPIV3Schema`: check that the schema is structural,
//! validate objects against it (OpenAPI + CEL `x-kubernetes-validations`), prune unknown fields
//! and apply defaults. Used by the API emulator and by the tests of the generated CRDs.
//!
//! OpenAPI validation goes through the `jsonschema` crate after turning the Kubernetes dialect
//! (`nullable`, `x-kubernetes-int-or-string`) into plain JSON Schema; CEL goes through kube-cel.

use std::fmt;

use serde_json::{Map, Value};

/// One invalid field, in the shape kube-apiserver reports it (`spec.x: Invalid value: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path to the field, e.g. `spec.aws.accountId` (empty for the object itself).
    pub field: String,
    /// What is wrong, e.g. `Required value` or `Invalid value: "x": should match '^a$'`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

const JUNCTORS: [&str; 4] = ["allOf", "anyOf", "oneOf", "not"];
/// Keys that a structural schema may not set inside a logical junctor.
const FORBIDDEN_IN_JUNCTOR: [&str; 5] = [
    "type",
    "default",
    "description",
    "additionalProperties",
    "nullable",
];

/// The ways `schema` breaks the Kubernetes rules for structural schemas (empty when it is
/// structural), each naming the offending path. A real API server refuses such a CRD.
pub fn structural_errors(schema: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        errors.push("<root>: type must be object".to_owned());
    }
    check_node(schema, "<root>", false, &mut errors);
    if let Some(metadata) = schema.pointer("/properties/metadata") {
        let allowed = ["type", "properties", "description"];
        if let Some(extra) = metadata
            .as_object()
            .and_then(|m| m.keys().find(|k| !allowed.contains(&k.as_str())))
        {
            errors.push(format!(
                "<root>.properties.metadata: only name and generateName may be restricted, found {extra}"
            ));
        }
        if let Some(props) = metadata.get("properties").and_then(Value::as_object) {
            for key in props
                .keys()
                .filter(|k| *k != "name" && *k != "generateName")
            {
                errors.push(format!(
                    "<root>.properties.metadata.properties.{key}: only name and generateName may be restricted"
                ));
            }
        }
    }
    errors
}

fn check_node(node: &Value, path: &str, in_junctor: bool, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: schema must be an object"));
        return;
    };
    let flag = |key: &str| obj.get(key).and_then(Value::as_bool) == Some(true);
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve = flag("x-kubernetes-preserve-unknown-fields");

    if obj.contains_key("$ref") {
        errors.push(format!("{path}: $ref is not allowed"));
    }
    if flag("uniqueItems") {
        errors.push(format!("{path}: uniqueItems cannot be set to true"));
    }
    if obj.contains_key("additionalItems") {
        errors.push(format!("{path}: additionalItems is not allowed"));
    }
    if in_junctor {
        for key in FORBIDDEN_IN_JUNCTOR {
            if obj.contains_key(key) && !int_or_string_branch(node) {
                errors.push(format!(
                    "{path}: {key} must not be set inside allOf/anyOf/oneOf/not"
                ));
            }
        }
        if obj.keys().any(|k| k.starts_with("x-kubernetes-")) {
            errors.push(format!(
                "{path}: x-kubernetes-* extensions must not be set inside allOf/anyOf/oneOf/not"
            ));
        }
    } else if !obj.contains_key("type") && !int_or_string && !preserve {
        errors.push(format!("{path}: type must be set"));
    }
    if obj.contains_key("properties")
        && obj
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
    {
        errors.push(format!(
            "{path}: additionalProperties and properties are mutually exclusive"
        ));
    }

    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            check_node(
                child,
                &format!("{path}.properties.{name}"),
                in_junctor,
                errors,
            );
        }
    }
    if let Some(items) = obj.get("items") {
        check_node(items, &format!("{path}.items"), in_junctor, errors);
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        check_node(
            additional,
            &format!("{path}.additionalProperties"),
            in_junctor,
            errors,
        );
    }
    for junctor in JUNCTORS {
        let branches: Vec<&Value> = match obj.get(junctor) {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(single @ Value::Object(_)) => vec![single],
            _ => continue,
        };
        for (i, branch) in branches.into_iter().enumerate() {
            let branch_path = format!("{path}.{junctor}[{i}]");
            check_node(branch, &branch_path, true, errors);
            check_junctor_fields_declared(obj, branch, &branch_path, errors);
        }
    }

    if !in_junctor && let Some(default) = obj.get("default") {
        check_default(node, default, path, errors);
    }
}

/// `anyOf: [{type: integer}, {type: string}]` is the one place a type may appear in a junctor.
fn int_or_string_branch(node: &Value) -> bool {
    matches!(
        node.get("type").and_then(Value::as_str),
        Some("integer" | "string")
    ) && node.as_object().is_some_and(|o| o.len() == 1)
}

/// Every property a junctor branch talks about must also be declared outside the junctor.
fn check_junctor_fields_declared(
    outer: &Map<String, Value>,
    branch: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    if let Some(props) = branch.get("properties").and_then(Value::as_object) {
        let declared = outer.get("properties").and_then(Value::as_object);
        for name in props.keys() {
            if !declared.is_some_and(|d| d.contains_key(name)) {
                errors.push(format!(
                    "{path}.properties.{name}: must also be specified outside the junctor"
                ));
            }
        }
    }
    if branch.get("items").is_some() && outer.get("items").is_none() {
        errors.push(format!(
            "{path}.items: must also be specified outside the junctor"
        ));
    }
}

fn check_default(node: &Value, default: &Value, path: &str, errors: &mut Vec<String>) {
    let mut pruned = default.clone();
    prune_value(node, &mut pruned);
    if &pruned != default {
        errors.push(format!(
            "{path}.default: must not have fields that would be pruned"
        ));
    }
    match jsonschema_for(node) {
        Ok(validator) => {
            for error in validator.iter_errors(default) {
                errors.push(format!("{path}.default: {error}"));
            }
        }
        Err(error) => errors.push(format!("{path}: {error}")),
    }
}

/// CEL rules in `schema` that do not compile, each with the path of the node that carries it.
/// The API server refuses a CRD with such a rule.
pub fn cel_compile_errors(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_compiled(
        &kube::core::cel::compile_schema(schema),
        "<root>",
        &mut |node, path| {
            for error in node.compilation_errors() {
                out.push(format!("{path}: {error}"));
            }
        },
    );
    out.sort();
    out
}

/// CEL rules that may use an unknown variable or blow the API server's cost budget (kube-cel's
/// static analysis: a coarse estimate that catches rules over unbounded lists and strings).
pub fn cel_warnings(schema: &Value) -> Vec<String> {
    use kube::core::cel::{ScopeContext, analyze_rule};
    let mut out = Vec::new();
    walk_compiled(
        &kube::core::cel::compile_schema(schema),
        "<root>",
        &mut |node, path| {
            for compiled in node.validations.iter().flatten() {
                for warning in analyze_rule(&compiled.rule.rule, node, ScopeContext::CrdValidation)
                {
                    out.push(format!("{path}: {}: {}", warning.rule, warning.message));
                }
            }
        },
    );
    out.sort();
    out
}

fn walk_compiled(
    node: &kube::core::cel::CompiledSchema,
    path: &str,
    visit: &mut dyn FnMut(&kube::core::cel::CompiledSchema, &str),
) {
    visit(node, path);
    for (name, child) in &node.properties {
        walk_compiled(child, &format!("{path}.{name}"), visit);
    }
    if let Some(items) = &node.items {
        walk_compiled(items, &format!("{path}[*]"), visit);
    }
    if let Some(additional) = &node.additional_properties {
        walk_compiled(additional, &format!("{path}{{*}}"), visit);
    }
    for child in node.all_of.iter().chain(&node.one_of).chain(&node.any_of) {
        walk_compiled(child, path, visit);
    }
}

/// Validates `obj` against `schema`: OpenAPI constraints, then the CEL rules (with `old` for
/// transition rules on update). As kube-apiserver does, the CEL rules are skipped when a
/// constraint they rely on failed (a required field, a type, an enum, a maximum length, item or
/// property count); other failures (minimum, pattern, minimum length) are reported beside the
/// rules' own. Defaults should already have been applied, as the API server does before
/// validating.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut rules_checkable = true;
    match jsonschema_for(schema) {
        Ok(validator) => {
            for error in validator.iter_errors(obj) {
                let (field_error, blocks_rules) = openapi_error(&error);
                rules_checkable &= !blocks_rules;
                errors.push(field_error);
            }
        }
        Err(error) => {
            rules_checkable = false;
            errors.push(FieldError {
                field: String::new(),
                message: format!("the CRD schema does not compile: {error}"),
            });
        }
    }
    if !rules_checkable {
        errors.push(FieldError {
            field: "<nil>".to_owned(),
            message: RULES_NOT_CHECKED.to_owned(),
        });
        return Err(errors);
    }
    if let Err(cel_errors) = kube::core::cel::Validator::new().validate(schema, obj, old) {
        for error in cel_errors.into_vec() {
            let message = match lookup(obj, &error.field_path) {
                // kube-apiserver (1.37) names no value for objects and arrays.
                Some(Value::Object(_) | Value::Array(_)) | None => {
                    format!("Invalid value: {}", error.message)
                }
                Some(value) => format!("Invalid value: {}: {}", short(value), error.message),
            };
            errors.push(FieldError {
                message,
                field: error.field_path,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What kube-apiserver adds when it skipped the CEL rules because of schema errors.
const RULES_NOT_CHECKED: &str = "Invalid value: null: some validation rules were not checked \
    because the object was invalid; correct the existing errors to complete validation";

/// The field error in kube-apiserver's words, and whether it keeps the CEL rules from running.
fn openapi_error(error: &jsonschema::ValidationError<'_>) -> (FieldError, bool) {
    use jsonschema::error::ValidationErrorKind as Kind;
    let mut field = pointer_to_path(error.instance_path().as_str());
    let value = short(error.instance());
    let (message, blocks_rules) = match error.kind() {
        Kind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            field = if field.is_empty() {
                name
            } else {
                format!("{field}.{name}")
            };
            ("Required value".to_owned(), true)
        }
        Kind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|values| values.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            (
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    supported.join(", ")
                ),
                true,
            )
        }
        Kind::Type { kind } => {
            let actual = format!("\"{}\"", json_type(error.instance()));
            let expected = match kind {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(set) => format!("{set:?}"),
            };
            (
                format!(
                    "Invalid value: {actual}: {field} in body must be of type {expected}: {actual}"
                ),
                true,
            )
        }
        Kind::MaxLength { limit } => (
            format!("Too long: may not be more than {limit} bytes"),
            true,
        ),
        Kind::MaxItems { limit } => {
            let count = error.instance().as_array().map_or(0, Vec::len);
            let items = if *limit == 1 { "item" } else { "items" };
            (
                format!("Too many: {count}: must have at most {limit} {items}"),
                true,
            )
        }
        Kind::MaxProperties { limit } => {
            let count = error.instance().as_object().map_or(0, Map::len);
            (
                format!("Too many: {count}: must have at most {limit} items"),
                true,
            )
        }
        Kind::Minimum { limit } => (
            format!(
                "Invalid value: {value}: {field} in body should be greater than or equal to {}",
                number(limit)
            ),
            false,
        ),
        Kind::Maximum { limit } => (
            format!(
                "Invalid value: {value}: {field} in body should be less than or equal to {}",
                number(limit)
            ),
            false,
        ),
        Kind::Pattern { pattern } => (
            format!("Invalid value: {value}: {field} in body should match '{pattern}'"),
            false,
        ),
        Kind::MinLength { limit } => (
            format!(
                "Invalid value: {value}: {field} in body should be at least {limit} chars long"
            ),
            false,
        ),
        _ => (format!("Invalid value: {value}: {error}"), false),
    };
    (FieldError { field, message }, blocks_rules)
}

/// A JSON number as kube-apiserver prints a schema bound: `1`, not `1.0`.
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        _ => value.to_string(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `/spec/items/0/name` -> `spec.items[0].name`, the way Kubernetes prints field paths.
fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

fn lookup<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(obj, |value, key| value.get(key))
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}...", &text[..text.floor_char_boundary(77)])
    } else {
        text
    }
}

fn jsonschema_for(
    schema: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&to_json_schema(schema))
}

/// Rewrites the Kubernetes OpenAPI dialect into plain JSON Schema draft 4.
fn to_json_schema(node: &Value) -> Value {
    let Some(obj) = node.as_object() else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .map(|props| {
                        props
                            .iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" | "additionalProperties" | "not" => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .map(|list| list.iter().map(to_json_schema).collect())
                    .unwrap_or_default(),
            ),
            k if k.starts_with("x-kubernetes-") || k == "nullable" || k == "default" => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    let flag = |key: &str| obj.get(key).and_then(Value::as_bool) == Some(true);
    if flag("x-kubernetes-int-or-string") {
        out.remove("anyOf");
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    if flag("nullable") {
        if let Some(Value::String(ty)) = out.get("type").cloned() {
            out.insert("type".into(), serde_json::json!([ty, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    Value::Object(out)
}

/// Removes fields the schema does not know, as the API server does on create and update.
/// `apiVersion`, `kind` and `metadata` at the root are kept.
pub fn prune(schema: &Value, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    map.retain(|key, _| {
        matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
            || props.is_some_and(|p| p.contains_key(key))
            || preserves_unknown(schema)
    });
    for (key, value) in map.iter_mut() {
        if key == "metadata" {
            continue;
        }
        if let Some(child) = props.and_then(|p| p.get(key)) {
            prune_value(child, value);
        }
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune_value(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true)
            {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if props.is_none() && additional.is_none() && preserves_unknown(schema) {
                return;
            }
            map.retain(|key, _| {
                props.is_some_and(|p| p.contains_key(key))
                    || additional.is_some()
                    || preserves_unknown(schema)
            });
            for (key, child_value) in map.iter_mut() {
                let child_schema = props.and_then(|p| p.get(key)).or(additional);
                if let Some(child_schema) = child_schema {
                    prune_value(child_schema, child_value);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_value(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Applies the schema's `default`s to absent fields, as the API server does on create, update
/// and read.
pub fn apply_defaults(schema: &Value, obj: &Value) -> Value {
    kube::core::cel::apply_defaults(schema, obj)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "x-kubernetes-validations": [
                        {"rule": "!has(self.a) || !has(self.b)", "message": "set a or b, not both"}
                    ],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$"},
                        "count": {"type": "integer", "minimum": 1, "default": 3},
                        "a": {"type": "string", "nullable": true},
                        "b": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "port": {"x-kubernetes-int-or-string": true,
                                 "anyOf": [{"type": "integer"}, {"type": "string"}]}
                    }
                }
            }
        })
    }

    #[test]
    fn a_well_formed_schema_is_structural() {
        assert_eq!(structural_errors(&schema()), Vec::<String>::new());
    }

    #[test]
    fn structural_rules_catch_what_the_api_server_refuses() {
        let bad = json!({
            "type": "object",
            "properties": {
                "untyped": {"description": "no type"},
                "both": {"type": "object", "properties": {"x": {"type": "string"}},
                         "additionalProperties": {"type": "string"}},
                "typed_in_anyof": {"type": "object", "properties": {"x": {"type": "string"}},
                                   "anyOf": [{"type": "object", "required": ["x"]}]},
                "undeclared": {"type": "object", "oneOf": [{"properties": {"y": {}}}]},
                "bad_default": {"type": "integer", "minimum": 5, "default": 1}
            }
        });
        let errors = structural_errors(&bad).join("\n");
        assert!(
            errors.contains("properties.untyped: type must be set"),
            "{errors}"
        );
        assert!(
            errors.contains(
                "properties.both: additionalProperties and properties are mutually exclusive"
            ),
            "{errors}"
        );
        assert!(
            errors.contains("typed_in_anyof.anyOf[0]: type must not be set"),
            "{errors}"
        );
        assert!(
            errors.contains("undeclared.oneOf[0].properties.y: must also be specified outside"),
            "{errors}"
        );
        assert!(
            errors.contains("properties.bad_default.default"),
            "{errors}"
        );
    }

    #[test]
    fn cel_rules_that_do_not_compile_are_reported_with_their_path() {
        assert_eq!(cel_compile_errors(&schema()), Vec::<String>::new());
        let mut broken = schema();
        broken["properties"]["spec"]["properties"]["count"]["x-kubernetes-validations"] =
            json!([{"rule": "self >= 1 &&"}]);
        let mut unbounded = schema();
        unbounded["properties"]["spec"]["properties"]["list"] = json!({
            "type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x != y || x == y))"}]
        });
        assert_ne!(cel_warnings(&unbounded), Vec::<String>::new());
        let errors = cel_compile_errors(&broken);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("<root>.spec.count: "), "{errors:?}");
    }

    #[test]
    fn validation_reports_openapi_and_cel_errors_with_field_paths() {
        let obj = json!({"spec": {"name": "Bad1", "count": 0, "a": "x", "b": "y", "port": 8080}});
        let errors = validate(&schema(), &obj, None).expect_err("invalid object");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let text = text.join("\n");
        assert!(
            text.contains("spec.name: Invalid value: \"Bad1\""),
            "{text}"
        );
        assert!(
            text.contains(
                "spec.name: Invalid value: \"Bad1\": spec.name in body should match '^[a-z]+$'"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("spec: Invalid value: set a or b, not both"),
            "a pattern or minimum failure leaves the CEL rules running: {text}"
        );

        let mistyped = json!({"spec": {"name": "ok", "count": "three", "a": "x", "b": "y"}});
        let text: Vec<String> = validate(&schema(), &mistyped, None)
            .expect_err("count is a string")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "spec.count: Invalid value: \"string\": spec.count in body must be of type integer: \"string\"",
                "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ],
            "a type failure keeps the CEL rules from running"
        );

        let cel_only = json!({"spec": {"name": "ok", "a": "x", "b": "y"}});
        let errors = validate(&schema(), &cel_only, None).expect_err("both a and b");
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["spec: Invalid value: set a or b, not both"],
            "no value is named for an object"
        );

        let missing = validate(&schema(), &json!({"spec": {}}), None).expect_err("missing name");
        assert_eq!(missing[0].to_string(), "spec.name: Required value");
    }

    #[test]
    fn nullable_fields_accept_null_and_valid_objects_pass() {
        let obj = json!({"spec": {"name": "ok", "a": null, "labels": {"k": "v"}, "port": "http"}});
        assert_eq!(validate(&schema(), &obj, None), Ok(()));
    }

    #[test]
    fn pruning_drops_unknown_fields_but_keeps_maps_and_metadata() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"name": "ok", "typo": 1, "labels": {"free": "form"}},
            "extra": true
        });
        prune(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}},
                "spec": {"name": "ok", "labels": {"free": "form"}}
            })
        );
    }

    #[test]
    fn defaults_fill_absent_fields_only() {
        let defaulted = apply_defaults(&schema(), &json!({"spec": {"name": "ok"}}));
        assert_eq!(defaulted["spec"]["count"], 3);
        let kept = apply_defaults(&schema(), &json!({"spec": {"name": "ok", "count": 7}}));
        assert_eq!(kept["spec"]["count"], 7);
    }
}
