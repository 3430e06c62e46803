//! The STS front through the real aws-sdk-sts: credentials for the trusted subject, STS's
//! refusals for everything else, fault injection, HTTPS, and the raw Query-protocol shapes.

use anyhow::Context as _;
use aws_sdk_sts::{
    config::Credentials,
    error::{ProvideErrorMetadata as _, SdkError},
    operation::RequestId as _,
};
use axum::http::StatusCode;
use passport_e2e::{aws, tls::Ca};
use serde_json::json;

use super::{AUD, Fixture, TestIssuer, refusal};

#[tokio::test]
async fn assume_role_with_web_identity_grants_the_trusted_subject() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("api", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let token = fx.issuer.token("team-a", "api", &[AUD], 600)?;
    let out = fx.assume(&role_arn, &token).await?;
    let creds = out.credentials().context("no credentials")?;
    assert!(creds.access_key_id().starts_with("ASIA"));
    let expires_in = creds.expiration().secs() - jiff::Timestamp::now().as_second();
    assert!(
        (3590..=3600).contains(&expires_in),
        "default duration is 3600s, got {expires_in}"
    );
    let user = out.assumed_role_user().context("no assumed role user")?;
    assert_eq!(
        user.arn(),
        format!("arn:aws:sts::{}:assumed-role/api/e2e", aws::ACCOUNT_ID)
    );
    assert!(user.assumed_role_id().starts_with("AROA") && user.assumed_role_id().ends_with(":e2e"));
    assert_eq!(
        out.subject_from_web_identity_token(),
        Some("system:serviceaccount:team-a:api")
    );
    assert_eq!(out.audience(), Some(AUD));
    assert_eq!(out.provider(), Some(fx.issuer.provider_arn().as_str()));
    assert!(out.request_id().is_some());

    // The issued credentials identify the assumed role; forged ones do not.
    let signed = |token: Option<String>| {
        aws_sdk_sts::Client::from_conf(
            aws::sts_config(&fx.aws.sts_url())
                .credentials_provider(Credentials::new(
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    token,
                    None,
                    "test",
                ))
                .build(),
        )
    };
    let me = signed(Some(creds.session_token().to_owned()))
        .get_caller_identity()
        .send()
        .await?;
    assert_eq!(me.arn(), Some(user.arn()));
    assert_eq!(me.account(), Some(aws::ACCOUNT_ID));
    assert_eq!(me.user_id(), Some(user.assumed_role_id()));
    let forged = signed(Some("forged".to_owned()))
        .get_caller_identity()
        .send()
        .await;
    assert_eq!(refusal(forged), ("InvalidClientTokenId".to_owned(), 403));

    // DurationSeconds: within the role's maximum, and refused beyond it.
    let long = fx
        .sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("e2e")
        .web_identity_token(&token)
        .duration_seconds(7200)
        .send()
        .await;
    assert_eq!(refusal(long), ("ValidationError".to_owned(), 400));
    let short = fx
        .sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("e2e")
        .web_identity_token(&token)
        .duration_seconds(900)
        .send()
        .await?;
    let expires_in = short.credentials().map_or(0, |c| c.expiration().secs())
        - jiff::Timestamp::now().as_second();
    assert!((890..=900).contains(&expires_in), "got {expires_in}");
    let bad_name = fx
        .sts
        .assume_role_with_web_identity()
        .role_arn(&role_arn)
        .role_session_name("no spaces")
        .web_identity_token(&token)
        .send()
        .await;
    assert_eq!(refusal(bad_name), ("ValidationError".to_owned(), 400));
    Ok(())
}

#[tokio::test]
async fn assume_role_with_web_identity_refuses_like_sts() -> anyhow::Result<()> {
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError as E;
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("api", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let denied = ("AccessDenied".to_owned(), 403);
    let invalid = ("InvalidIdentityToken".to_owned(), 400);

    let wrong_sub = fx.issuer.token("team-a", "web", &[AUD], 600)?;
    assert_eq!(refusal(fx.assume(&role_arn, &wrong_sub).await), denied);

    let wrong_aud = fx.issuer.token("team-a", "api", &["other"], 600)?;
    let err = fx
        .assume(&role_arn, &wrong_aud)
        .await
        .err()
        .context("wrong aud accepted")?;
    assert_eq!(err.message(), Some("Incorrect token audience"));
    assert!(matches!(
        err.into_service_error(),
        E::InvalidIdentityTokenException(_)
    ));

    let stranger = TestIssuer::start(&fx.ca).await?;
    let foreign = stranger.token("team-a", "api", &[AUD], 600)?;
    let err = fx
        .assume(&role_arn, &foreign)
        .await
        .err()
        .context("unknown issuer accepted")?;
    assert_eq!(
        err.message().map(str::to_owned),
        Some(format!(
            "No OpenIDConnect provider found in your account for {}",
            stranger.url()
        ))
    );

    // Same claims, payload altered after signing.
    let good = fx.issuer.token("team-a", "api", &[AUD], 600)?;
    let parts: Vec<&str> = good.split('.').collect();
    let evil = fx.issuer.token("team-a", "admin", &[AUD], 600)?;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        evil.split('.').nth(1).unwrap_or_default(),
        parts[2]
    );
    assert_eq!(refusal(fx.assume(&role_arn, &tampered).await), invalid);

    let expired = fx.issuer.token("team-a", "api", &[AUD], -120)?;
    let err = fx
        .assume(&role_arn, &expired)
        .await
        .err()
        .context("expired token accepted")?;
    assert!(matches!(
        err.into_service_error(),
        E::ExpiredTokenException(_)
    ));

    let missing_role = format!("arn:aws:iam::{}:role/nobody", aws::ACCOUNT_ID);
    assert_eq!(refusal(fx.assume(&missing_role, &good).await), denied);
    assert_eq!(refusal(fx.assume(&role_arn, "not-a-jwt").await), invalid);
    // And the right token still works: nothing above was cached as a refusal.
    fx.assume(&role_arn, &good).await?;
    Ok(())
}

#[tokio::test]
async fn string_like_trusts_a_whole_namespace() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("team-a", "StringLike", "system:serviceaccount:team-a:*")
        .await?;
    for sa in ["api", "worker"] {
        let token = fx.issuer.token("team-a", sa, &[AUD], 600)?;
        let out = fx.assume(&role_arn, &token).await?;
        assert_eq!(
            out.subject_from_web_identity_token().map(str::to_owned),
            Some(format!("system:serviceaccount:team-a:{sa}"))
        );
    }
    let other_ns = fx.issuer.token("team-b", "api", &[AUD], 600)?;
    assert_eq!(
        refusal(fx.assume(&role_arn, &other_ns).await),
        ("AccessDenied".to_owned(), 403)
    );
    Ok(())
}

#[tokio::test]
async fn injected_faults_come_back_then_service_resumes() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let role_arn = fx
        .role("api", "StringEquals", "system:serviceaccount:team-a:api")
        .await?;
    let token = fx.issuer.token("team-a", "api", &[AUD], 600)?;

    fx.aws
        .sts_faults()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refusal(fx.assume(&role_arn, &token).await),
        ("ServiceUnavailable".to_owned(), 503)
    );
    fx.assume(&role_arn, &token)
        .await
        .context("after the fault")?;

    // Through the control route, as a stack in another process is driven; the SDK's standard
    // retry rides out one throttle.
    let http = reqwest::Client::new();
    let queued = http
        .post(format!("{}/_faults", fx.aws.iam_url()))
        .json(&json!({"status": 429, "count": 1}))
        .send()
        .await?;
    assert_eq!(queued.status(), StatusCode::NO_CONTENT);
    assert_eq!(fx.aws.iam_faults().pending(), 1);
    let listed = fx
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .context("the SDK did not retry the throttle")?;
    assert_eq!(listed.open_id_connect_provider_list().len(), 1);
    assert_eq!(fx.aws.iam_faults().pending(), 0);
    Ok(())
}

#[tokio::test]
async fn https_endpoints_serve_the_sdks_with_the_stack_ca() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let http_client = aws::sdk::https_client_trusting(&fx.ca.cert_pem())?;
    let iam = aws_sdk_iam::Client::from_conf(
        aws::iam_config(&fx.aws.iam_https_url())
            .http_client(http_client.clone())
            .build(),
    );
    assert!(fx.aws.iam_https_url().starts_with("https://"));
    let role_arn = {
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": fx.issuer.provider_arn()}, "Action": "sts:AssumeRoleWithWebIdentity"}]});
        let out = iam
            .create_role()
            .role_name("tls")
            .assume_role_policy_document(policy.to_string())
            .send()
            .await?;
        out.role().map(|r| r.arn().to_owned()).unwrap_or_default()
    };
    let sts = aws_sdk_sts::Client::from_conf(
        aws::sts_config(&fx.aws.sts_https_url())
            .http_client(http_client)
            .build(),
    );
    let token = fx.issuer.token("team-a", "api", &[AUD], 600)?;
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("tls")
        .web_identity_token(token)
        .send()
        .await?;
    assert!(out.credentials().is_some());

    // A client that does not trust the stack CA is refused at the TLS layer.
    let untrusting = aws_sdk_sts::Client::from_conf(
        aws::sts_config(&fx.aws.sts_https_url())
            .http_client(aws::sdk::https_client_trusting(&Ca::new()?.cert_pem())?)
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
            .build(),
    );
    let refused = untrusting.get_caller_identity().send().await;
    assert!(
        matches!(refused, Err(SdkError::DispatchFailure(_))),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sts_errors_are_query_protocol_xml() -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let http = reqwest::Client::new();
    let response = http
        .post(fx.aws.sts_url())
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:aws:iam::123456789012:role/none"),
            ("RoleSessionName", "raw"),
            (
                "WebIdentityToken",
                &fx.issuer.token("ns", "sa", &[AUD], 600)?,
            ),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["content-type"], "text/xml");
    let body = response.text().await?;
    assert!(body.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>"), "{body}");

    // GET with a query string works as well, and unknown actions are refused.
    let response = http
        .get(format!(
            "{}/?Action=GetSessionToken&Version=2011-06-15",
            fx.aws.sts_url()
        ))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await?
            .contains("<Code>InvalidAction</Code>")
    );
    let response = http
        .get(format!(
            "{}/?Action=GetCallerIdentity&Version=2011-06-15",
            fx.aws.sts_url()
        ))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await?
            .contains("<Code>MissingAuthenticationToken</Code>")
    );
    Ok(())
}
