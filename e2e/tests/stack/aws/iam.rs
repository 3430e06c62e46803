//! The IAM front: moto's API through the real aws-sdk-iam, plus the checks real IAM makes and
//! moto does not (trust-policy quota and syntax, federated principals, client-ID edits).

use anyhow::Context as _;
use aws_sdk_iam::error::ProvideErrorMetadata as _;
use passport_e2e::aws::{self, Options};
use serde_json::{Value, json};

use super::{AUD, Fixture, refusal};

#[tokio::test]
async fn iam_front_manages_providers_and_roles_with_iam_checks() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let arn = fx.issuer.provider_arn();
    let role_arn = fx
        .role("app", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    assert_eq!(
        role_arn,
        format!("arn:aws:iam::{}:role/app", aws::ACCOUNT_ID)
    );

    // GetRole hands the trust policy back URL-encoded, as IAM does.
    let role = fx.iam.get_role().role_name("app").send().await?;
    let encoded = role
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .unwrap_or_default();
    let decoded: Value =
        serde_json::from_str(&percent_encoding::percent_decode_str(encoded).decode_utf8()?)?;
    assert_eq!(decoded["Statement"][0]["Principal"]["Federated"], arn);

    // Client-ID edits (moto answers them with 500; the front implements them).
    let client_ids = |iam: aws_sdk_iam::Client, arn: String| async move {
        let p = iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await?;
        anyhow::Ok(p.client_id_list().to_vec())
    };
    fx.iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id("second")
        .send()
        .await?;
    fx.iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id("second")
        .send()
        .await?;
    assert_eq!(
        client_ids(fx.iam.clone(), arn.clone()).await?,
        [AUD, "second"]
    );
    fx.iam
        .remove_client_id_from_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id(AUD)
        .send()
        .await?;
    fx.iam
        .remove_client_id_from_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .client_id("absent")
        .send()
        .await?;
    assert_eq!(client_ids(fx.iam.clone(), arn.clone()).await?, ["second"]);
    let missing = format!(
        "arn:aws:iam::{}:oidc-provider/nowhere.test",
        aws::ACCOUNT_ID
    );
    let add_missing = fx
        .iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&missing)
        .client_id("x")
        .send()
        .await;
    assert_eq!(refusal(add_missing), ("NoSuchEntity".to_owned(), 404));

    // Deleting a missing provider is NoSuchEntity (moto says OK).
    let delete_missing = fx
        .iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&missing)
        .send()
        .await;
    assert_eq!(refusal(delete_missing), ("NoSuchEntity".to_owned(), 404));

    // A role may only trust a provider that exists; malformed JSON is refused.
    let trusting_missing = json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": missing}, "Action": "sts:AssumeRoleWithWebIdentity"}]});
    let created = fx
        .iam
        .create_role()
        .role_name("orphan")
        .assume_role_policy_document(trusting_missing.to_string())
        .send()
        .await;
    assert_eq!(
        refusal(created),
        ("MalformedPolicyDocument".to_owned(), 400)
    );
    let created = fx
        .iam
        .create_role()
        .role_name("broken")
        .assume_role_policy_document("{not json")
        .send()
        .await;
    assert_eq!(
        refusal(created),
        ("MalformedPolicyDocument".to_owned(), 400)
    );
    assert!(
        fx.iam.get_role().role_name("orphan").send().await.is_err(),
        "refused role was created"
    );

    // Everything else reaches moto unchanged, including its typed errors.
    let again = fx
        .iam
        .create_role()
        .role_name("app")
        .assume_role_policy_document(decoded.to_string())
        .send()
        .await;
    assert_eq!(refusal(again), ("EntityAlreadyExists".to_owned(), 409));
    fx.iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn trust_policy_quota_is_enforced_without_counting_whitespace() -> anyhow::Result<()> {
    let fx = Fixture::start_with(Options {
        trust_policy_quota: 600,
        ..Options::default()
    })
    .await?;
    let host = fx.issuer.host_path();
    let policy = |subs: Vec<String>, pretty: bool| {
        let doc = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": fx.issuer.provider_arn()},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {format!("{host}:sub"): subs}},
            }],
        });
        if pretty {
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        } else {
            doc.to_string()
        }
    };
    let subs = |n: usize| {
        (0..n)
            .map(|i| format!("system:serviceaccount:ns:sa-{i:03}"))
            .collect::<Vec<_>>()
    };
    // Find the largest list that fits, compactly written.
    let fits = (1..40)
        .take_while(|n| aws::quota::trust_policy_size(&policy(subs(*n), false)) <= 600)
        .last()
        .unwrap_or(1);
    let pretty = policy(subs(fits), true);
    assert!(
        pretty.len() > 600,
        "the pretty form must exceed the quota only through whitespace"
    );
    fx.iam
        .create_role()
        .role_name("fits")
        .assume_role_policy_document(pretty)
        .send()
        .await?;

    let too_big = policy(subs(fits + 1), false);
    let created = fx
        .iam
        .create_role()
        .role_name("too-big")
        .assume_role_policy_document(&too_big)
        .send()
        .await;
    let err = created.err().context("an over-quota role was accepted")?;
    assert_eq!(err.code(), Some("LimitExceeded"));
    assert_eq!(
        err.message(),
        Some("Cannot exceed quota for ACLSizePerRole: 600")
    );
    assert!(matches!(
        err.into_service_error(),
        aws_sdk_iam::operation::create_role::CreateRoleError::LimitExceededException(_)
    ));
    let updated = fx
        .iam
        .update_assume_role_policy()
        .role_name("fits")
        .policy_document(&too_big)
        .send()
        .await;
    assert_eq!(refusal(updated), ("LimitExceeded".to_owned(), 409));
    assert!(fx.iam.get_role().role_name("too-big").send().await.is_err());
    Ok(())
}

/// AWS's managed policies exist in every account, as in real IAM: a role can attach one (the
/// samples attach `AmazonS3ReadOnlyAccess`); a name AWS does not manage is `NoSuchEntity`.
#[tokio::test]
async fn aws_managed_policies_are_attachable() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    fx.role("reader", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let managed = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
    fx.iam
        .attach_role_policy()
        .role_name("reader")
        .policy_arn(managed)
        .send()
        .await
        .context("attaching an AWS managed policy")?;
    let attached = fx
        .iam
        .list_attached_role_policies()
        .role_name("reader")
        .send()
        .await?;
    let arns: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(arns, [managed]);
    let unknown = fx
        .iam
        .attach_role_policy()
        .role_name("reader")
        .policy_arn("arn:aws:iam::aws:policy/NoSuchManagedPolicy")
        .send()
        .await
        .expect_err("AWS manages no such policy");
    assert_eq!(unknown.code(), Some("NoSuchEntity"));
    Ok(())
}
