//! Table-driven tests of trust-policy evaluation.

use serde_json::{Value, json};

use super::*;

const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/issuer.test/cluster";
const ISSUER: &str = "issuer.test/cluster";
const SUB: &str = "system:serviceaccount:team-a:api";
const AUD: &str = "sts.amazonaws.com";

fn request() -> Request {
    Request::web_identity(PROVIDER, ISSUER, SUB, AUD)
}

fn allow(condition: Value) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": PROVIDER },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]
    })
}

fn decide(policy: &Value, request: &Request) -> Decision {
    match Policy::parse(&policy.to_string()) {
        Ok(policy) => policy.evaluate(request),
        Err(e) => panic!("policy did not parse: {e}: {policy}"),
    }
}

#[test]
fn conditions_on_sub_and_aud() {
    let cases: &[(&str, Value, Decision)] = &[
        (
            "exact sub and aud",
            json!({"StringEquals": {"issuer.test/cluster:sub": SUB, "issuer.test/cluster:aud": AUD}}),
            Decision::Allow,
        ),
        (
            "wrong sub",
            json!({"StringEquals": {"issuer.test/cluster:sub": "system:serviceaccount:team-a:web"}}),
            Decision::ImplicitDeny,
        ),
        (
            "wrong aud",
            json!({"StringEquals": {"issuer.test/cluster:aud": "other"}}),
            Decision::ImplicitDeny,
        ),
        (
            "keys are case-insensitive",
            json!({"StringEquals": {"ISSUER.TEST/Cluster:SUB": SUB}}),
            Decision::Allow,
        ),
        (
            "values are case-sensitive",
            json!({"StringEquals": {"issuer.test/cluster:sub": SUB.to_uppercase()}}),
            Decision::ImplicitDeny,
        ),
        (
            "IgnoreCase operator",
            json!({"StringEqualsIgnoreCase": {"issuer.test/cluster:sub": SUB.to_uppercase()}}),
            Decision::Allow,
        ),
        (
            "a list of values is OR",
            json!({"StringEquals": {"issuer.test/cluster:sub": ["x", SUB]}}),
            Decision::Allow,
        ),
        (
            "several keys are AND",
            json!({"StringEquals": {"issuer.test/cluster:sub": SUB, "issuer.test/cluster:aud": "x"}}),
            Decision::ImplicitDeny,
        ),
        (
            "several operators are AND",
            json!({
                "StringEquals": {"issuer.test/cluster:aud": AUD},
                "StringLike": {"issuer.test/cluster:sub": "system:serviceaccount:team-b:*"}
            }),
            Decision::ImplicitDeny,
        ),
        (
            "StringLike star",
            json!({"StringLike": {"issuer.test/cluster:sub": "system:serviceaccount:team-a:*"}}),
            Decision::Allow,
        ),
        (
            "StringLike question mark",
            json!({"StringLike": {"issuer.test/cluster:sub": "system:serviceaccount:team-?:ap?"}}),
            Decision::Allow,
        ),
        (
            "StringLike question mark is exactly one character",
            json!({"StringLike": {"issuer.test/cluster:sub": "system:serviceaccount:team-a:a?"}}),
            Decision::ImplicitDeny,
        ),
        (
            "StringLike without wildcard is equality",
            json!({"StringLike": {"issuer.test/cluster:sub": "system:serviceaccount:team-a"}}),
            Decision::ImplicitDeny,
        ),
        (
            "StringEquals does not expand wildcards",
            json!({"StringEquals": {"issuer.test/cluster:sub": "system:serviceaccount:team-a:*"}}),
            Decision::ImplicitDeny,
        ),
        (
            "StringNotEquals is NOR over the values",
            json!({"StringNotEquals": {"issuer.test/cluster:sub": ["x", SUB]}}),
            Decision::ImplicitDeny,
        ),
        (
            "StringNotEquals with other values",
            json!({"StringNotEquals": {"issuer.test/cluster:sub": ["x", "y"]}}),
            Decision::Allow,
        ),
        (
            "StringNotLike",
            json!({"StringNotLike": {"issuer.test/cluster:sub": "system:serviceaccount:kube-system:*"}}),
            Decision::Allow,
        ),
        (
            "missing key fails a positive operator",
            json!({"StringEquals": {"issuer.test/cluster:amr": "authenticated"}}),
            Decision::ImplicitDeny,
        ),
        (
            "missing key satisfies a negated operator",
            json!({"StringNotEquals": {"issuer.test/cluster:amr": "unauthenticated"}}),
            Decision::Allow,
        ),
        (
            "IfExists passes a missing key",
            json!({"StringEqualsIfExists": {"issuer.test/cluster:amr": "authenticated"}}),
            Decision::Allow,
        ),
        (
            "IfExists still checks a present key",
            json!({"StringEqualsIfExists": {"issuer.test/cluster:sub": "x"}}),
            Decision::ImplicitDeny,
        ),
        (
            "ForAnyValue:StringLike",
            json!({"ForAnyValue:StringLike": {"issuer.test/cluster:aud": ["nope", "sts.*.com"]}}),
            Decision::Allow,
        ),
        (
            "ForAnyValue on a missing key is false",
            json!({"ForAnyValue:StringLike": {"issuer.test/cluster:amr": "*"}}),
            Decision::ImplicitDeny,
        ),
        (
            "ForAllValues on a missing key is true",
            json!({"ForAllValues:StringEquals": {"issuer.test/cluster:amr": "x"}}),
            Decision::Allow,
        ),
        (
            "Null true on an absent key",
            json!({"Null": {"issuer.test/cluster:amr": "true"}}),
            Decision::Allow,
        ),
        (
            "Null true on a present key",
            json!({"Null": {"issuer.test/cluster:sub": "true"}}),
            Decision::ImplicitDeny,
        ),
        (
            "unknown operator never matches",
            json!({"StringSortOf": {"issuer.test/cluster:sub": SUB}}),
            Decision::ImplicitDeny,
        ),
        (
            "a condition on another issuer's key does not match",
            json!({"StringEquals": {"other.test:sub": SUB}}),
            Decision::ImplicitDeny,
        ),
    ];
    for (name, condition, want) in cases {
        let got = decide(&allow(condition.clone()), &request());
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn principal_and_action_select_statements() {
    let statement = |principal: Value, action: Value| json!({"Statement": {"Effect": "Allow", "Principal": principal, "Action": action}});
    let other = "arn:aws:iam::123456789012:oidc-provider/other.test";
    let cases: &[(&str, Value, Decision)] = &[
        (
            "federated string",
            statement(
                json!({"Federated": PROVIDER}),
                json!("sts:AssumeRoleWithWebIdentity"),
            ),
            Decision::Allow,
        ),
        (
            "federated list",
            statement(
                json!({"Federated": [other, PROVIDER]}),
                json!(["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]),
            ),
            Decision::Allow,
        ),
        (
            "another provider",
            statement(
                json!({"Federated": other}),
                json!("sts:AssumeRoleWithWebIdentity"),
            ),
            Decision::ImplicitDeny,
        ),
        (
            "a service principal",
            statement(
                json!({"Service": "pods.eks.amazonaws.com"}),
                json!("sts:AssumeRoleWithWebIdentity"),
            ),
            Decision::ImplicitDeny,
        ),
        (
            "everyone",
            statement(json!("*"), json!("sts:AssumeRoleWithWebIdentity")),
            Decision::Allow,
        ),
        (
            "AWS star is everyone",
            statement(json!({"AWS": "*"}), json!("sts:*")),
            Decision::Allow,
        ),
        (
            "another action",
            statement(json!({"Federated": PROVIDER}), json!("sts:AssumeRole")),
            Decision::ImplicitDeny,
        ),
        (
            "action wildcard, case-insensitive",
            statement(json!({"Federated": PROVIDER}), json!("STS:AssumeRoleWith*")),
            Decision::Allow,
        ),
        (
            "NotAction",
            json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "NotAction": "sts:AssumeRole"}}),
            Decision::Allow,
        ),
        (
            "NotPrincipal excluding us",
            json!({"Statement": {"Effect": "Allow", "NotPrincipal": {"Federated": PROVIDER}, "Action": "*"}}),
            Decision::ImplicitDeny,
        ),
    ];
    for (name, policy, want) in cases {
        assert_eq!(decide(policy, &request()), *want, "{name}");
    }
}

#[test]
fn an_explicit_deny_wins_over_any_allow() {
    let policy = json!({"Statement": [
        {"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity"},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:*",
         "Condition": {"StringLike": {"issuer.test/cluster:sub": "system:serviceaccount:team-a:*"}}},
    ]});
    assert_eq!(decide(&policy, &request()), Decision::ExplicitDeny);
    let other_sa = Request::web_identity(PROVIDER, ISSUER, "system:serviceaccount:team-b:x", AUD);
    assert_eq!(decide(&policy, &other_sa), Decision::Allow);
}

#[test]
fn malformed_documents_are_refused() {
    let cases: &[(&str, &str, PolicyError)] = &[
        ("not json", "{", PolicyError::InvalidJson),
        (
            "no statement",
            r#"{"Version":"2012-10-17"}"#,
            PolicyError::Syntax,
        ),
        (
            "bad effect",
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"*"}}"#,
            PolicyError::Syntax,
        ),
        (
            "no action",
            r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#,
            PolicyError::NoActions,
        ),
        (
            "no principal",
            r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#,
            PolicyError::Syntax,
        ),
        (
            "condition not an object",
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":"x"}}}"#,
            PolicyError::Syntax,
        ),
    ];
    for (name, doc, want) in cases {
        assert_eq!(Policy::parse(doc).err().as_ref(), Some(want), "{name}");
    }
}

#[test]
fn federated_principals_are_listed() -> Result<(), PolicyError> {
    let policy = Policy::parse(
        &json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Federated": ["a", "b"]}, "Action": "*"},
            {"Effect": "Allow", "Principal": {"Federated": "c"}, "Action": "*"},
            {"Effect": "Allow", "Principal": "*", "Action": "*"},
        ]})
        .to_string(),
    )?;
    assert_eq!(policy.federated_principals(), ["a", "b", "c"]);
    Ok(())
}

#[test]
fn glob_matches_like_iam() {
    let cases = [
        ("*", "", true),
        ("*", "anything", true),
        ("a*c", "abbbc", true),
        ("a*c", "abbbd", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*:api", "system:serviceaccount:ns:api", true),
        ("**x", "yx", true),
        ("x", "X", false),
    ];
    for (pattern, text, want) in cases {
        assert_eq!(glob(pattern, text, false), want, "{pattern} vs {text}");
    }
    assert!(glob(
        "sts:assumerole*",
        "sts:AssumeRoleWithWebIdentity",
        true
    ));
}
