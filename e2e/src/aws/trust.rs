//! IAM role trust-policy evaluation for `sts:AssumeRoleWithWebIdentity`: which statements apply
//! to a federated principal and action, and whether their conditions hold. Pure, no IO.
//!
//! Follows IAM's documented policy logic: an explicit `Deny` wins, otherwise one matching `Allow`
//! is needed. Condition keys are case-insensitive, values case-sensitive; several values for one
//! key mean OR (NOR for the negated operators); several keys and several operators mean AND.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the caller asks for, as IAM's request context sees it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The federated principal, e.g. `arn:aws:iam::123456789012:oidc-provider/issuer.example/x`.
    pub principal: String,
    /// The action, e.g. `sts:AssumeRoleWithWebIdentity`.
    pub action: String,
    /// Condition keys (any case) and their values; a key absent from the map is absent from the
    /// request context.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// The request context for a web-identity token from the issuer at `issuer_host_path`
    /// (the issuer URL without `https://`): `<issuer>:sub` and `<issuer>:aud`.
    pub fn web_identity(principal: &str, issuer_host_path: &str, sub: &str, aud: &str) -> Self {
        let mut context = BTreeMap::new();
        context.insert(format!("{issuer_host_path}:sub"), vec![sub.to_owned()]);
        context.insert(format!("{issuer_host_path}:aud"), vec![aud.to_owned()]);
        Self {
            principal: principal.to_owned(),
            action: "sts:AssumeRoleWithWebIdentity".to_owned(),
            context,
        }
    }

    fn values(&self, key: &str) -> Option<&[String]> {
        self.context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }
}

/// The outcome of evaluating a trust policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows the request.
    ImplicitDeny,
    /// A `Deny` statement matches the request.
    ExplicitDeny,
}

/// Why a document is not a policy IAM would have accepted; IAM answers `MalformedPolicyDocument`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("This policy contains invalid Json")]
    InvalidJson,
    #[error("Syntax errors in policy.")]
    Syntax,
    #[error("Policy statement must contain actions.")]
    NoActions,
    #[error("Invalid principal in policy: {0}")]
    InvalidPrincipal(String),
}

/// A parsed trust policy.
#[derive(Clone, Debug)]
pub struct Policy {
    statements: Vec<Value>,
}

impl Policy {
    /// Parses and checks the structure IAM checks on `CreateRole`/`UpdateAssumeRolePolicy`.
    pub fn parse(document: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(document).map_err(|_| PolicyError::InvalidJson)?;
        let statements = match value.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(single @ Value::Object(_)) => vec![single.clone()],
            _ => return Err(PolicyError::Syntax),
        };
        for statement in &statements {
            match statement.get("Effect").and_then(Value::as_str) {
                Some("Allow" | "Deny") => {}
                _ => return Err(PolicyError::Syntax),
            }
            if statement.get("Action").is_none() && statement.get("NotAction").is_none() {
                return Err(PolicyError::NoActions);
            }
            // Trust policies must name who may assume the role.
            if statement.get("Principal").is_none() && statement.get("NotPrincipal").is_none() {
                return Err(PolicyError::Syntax);
            }
            if let Some(condition) = statement.get("Condition") {
                let ok = condition
                    .as_object()
                    .is_some_and(|ops| ops.values().all(Value::is_object));
                if !ok {
                    return Err(PolicyError::Syntax);
                }
            }
        }
        Ok(Self { statements })
    }

    /// The `Federated` principals the policy names, for IAM's check that they exist.
    pub fn federated_principals(&self) -> Vec<String> {
        self.statements
            .iter()
            .flat_map(|s| {
                ["Principal", "NotPrincipal"]
                    .into_iter()
                    .filter_map(|k| s.get(k)?.get("Federated"))
                    .flat_map(strings)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn evaluate(&self, request: &Request) -> Decision {
        let mut allowed = false;
        for statement in &self.statements {
            if !statement_applies(statement, request) {
                continue;
            }
            match statement.get("Effect").and_then(Value::as_str) {
                Some("Deny") => return Decision::ExplicitDeny,
                Some("Allow") => allowed = true,
                _ => {}
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

fn statement_applies(statement: &Value, request: &Request) -> bool {
    let principal = match (statement.get("Principal"), statement.get("NotPrincipal")) {
        (Some(p), _) => principal_matches(p, &request.principal),
        (None, Some(p)) => !principal_matches(p, &request.principal),
        (None, None) => false,
    };
    let action = match (statement.get("Action"), statement.get("NotAction")) {
        (Some(a), _) => strings(a).iter().any(|p| glob(p, &request.action, true)),
        (None, Some(a)) => !strings(a).iter().any(|p| glob(p, &request.action, true)),
        (None, None) => false,
    };
    principal
        && action
        && statement
            .get("Condition")
            .is_none_or(|c| conditions_hold(c, request))
}

fn principal_matches(principal: &Value, who: &str) -> bool {
    match principal {
        Value::String(s) => s == "*",
        // `{"AWS": "*"}` is IAM's other spelling of "everyone".
        Value::Object(map) => {
            map.get("AWS")
                .is_some_and(|a| strings(a).iter().any(|p| p == "*"))
                || map
                    .get("Federated")
                    .is_some_and(|f| strings(f).iter().any(|p| p == who))
        }
        _ => false,
    }
}

/// A policy value as a list of strings: IAM accepts a scalar or a list, and booleans and numbers
/// compare as their text.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

fn conditions_hold(condition: &Value, request: &Request) -> bool {
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.iter().all(|(operator, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, expected)| {
                operator_holds(operator, request.values(key), &strings(expected))
            })
        })
    })
}

#[derive(Clone, Copy)]
enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

fn operator_holds(operator: &str, actual: Option<&[String]>, expected: &[String]) -> bool {
    let (qualifier, rest) = if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, rest)
    } else if let Some(rest) = operator.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, rest)
    } else {
        (SetQualifier::Single, operator)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    if base == "Null" {
        // `"Null": {"key": "true"}` holds when the key is absent.
        let absent = actual.is_none_or(<[String]>::is_empty);
        return expected.iter().any(|e| e == &absent.to_string());
    }
    let Some(matcher) = Matcher::from_name(base) else {
        // IAM rejects unknown operators when the policy is written; here they never match.
        return false;
    };
    let values = match actual {
        Some(values) if !values.is_empty() => values,
        // An absent key fails positive operators and satisfies negated ones (IAM's documented
        // rule); `...IfExists` makes it pass; `ForAllValues` over an empty set is true.
        _ => {
            return if_exists
                || matches!(qualifier, SetQualifier::ForAllValues)
                || (matcher.negated && matches!(qualifier, SetQualifier::Single));
        }
    };
    let one = |value: &String| matcher.value_holds(value, expected);
    match qualifier {
        SetQualifier::Single | SetQualifier::ForAnyValue => values.iter().any(one),
        SetQualifier::ForAllValues => values.iter().all(one),
    }
}

struct Matcher {
    negated: bool,
    like: bool,
    ignore_case: bool,
}

impl Matcher {
    fn from_name(name: &str) -> Option<Self> {
        let (negated, like, ignore_case) = match name {
            "StringEquals" => (false, false, false),
            "StringNotEquals" => (true, false, false),
            "StringEqualsIgnoreCase" => (false, false, true),
            "StringNotEqualsIgnoreCase" => (true, false, true),
            "StringLike" => (false, true, false),
            "StringNotLike" => (true, true, false),
            _ => return None,
        };
        Some(Self {
            negated,
            like,
            ignore_case,
        })
    }

    /// One request value against the policy's values: OR for positive operators, NOR for negated.
    fn value_holds(&self, value: &str, expected: &[String]) -> bool {
        let any = expected.iter().any(|pattern| {
            if self.like {
                glob(pattern, value, false)
            } else if self.ignore_case {
                pattern.eq_ignore_ascii_case(value)
            } else {
                pattern == value
            }
        });
        any != self.negated
    }
}

/// IAM's wildcard match: `*` is any run of characters (also none), `?` exactly one.
pub(crate) fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (norm(pattern), norm(text));
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
