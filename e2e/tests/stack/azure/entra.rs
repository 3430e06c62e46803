//! Entra: the token exchange, ARM's bearer authentication, discovery, and fault injection.

use std::time::Duration;

use passport_e2e::{
    azure::{ARM_SCOPE, TOKEN_EXCHANGE_AUDIENCE},
    oidc::Issuer,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    API, OTHER_TENANT, SP_CLIENT, SP_SECRET, STATIC, SUB, SUBJECT, TENANT, UNKNOWN_TENANT, aadsts,
    arm_code, env, send,
};
#[tokio::test]
async fn arm_requires_an_entra_token_for_arm_in_the_right_tenant() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let url = format!("{}{}?api-version={API}", env.fake.arm_url(), env.app.id());
    let response = env.client.get(&url).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").is_some());
    let body: Value = response.json().await?;
    assert_eq!(arm_code(&body), "AuthenticationFailed");
    // ARM authenticates before routing: even a path it does not serve is a 401 without a token.
    let (status, body) = send(env.client.get(format!(
        "{}/subscriptions/{SUB}/nowhere",
        env.fake.arm_url()
    )))
    .await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );
    let (status, body) = send(env.client.get(&url).bearer_auth("not-a-token")).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );

    env.trust_app().await?;
    let assertion = env.issuer.good_token()?;
    let (status, token) = env
        .exchange(TENANT, &env.app.client_id, &assertion, ARM_SCOPE)
        .await?;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3599);
    assert_eq!(token["ext_expires_in"], 3599);
    let access = token["access_token"].as_str().unwrap_or_default();
    let (status, identity) = send(env.client.get(&url).bearer_auth(access)).await?;
    assert_eq!(status, StatusCode::OK, "{identity}");
    let (status, who) = send(
        env.client
            .get(format!("{}/_whoami", env.fake.arm_url()))
            .bearer_auth(access),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(who["clientId"], env.app.client_id);
    assert_eq!(who["principalId"], env.app.principal_id);
    assert_eq!(who["tenantId"], TENANT);
    assert_eq!(
        who["identityId"].as_str().map(str::to_ascii_lowercase),
        Some(env.app.id().to_ascii_lowercase())
    );

    // A token for another resource is refused by ARM.
    let (status, vault) = env
        .exchange(
            TENANT,
            &env.app.client_id,
            &assertion,
            "https://vault.azure.net/.default",
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(
        env.client
            .get(&url)
            .bearer_auth(vault["access_token"].as_str().unwrap_or_default()),
    )
    .await?;
    assert_eq!(
        (status, arm_code(&body)),
        (
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience"
        )
    );
    // A token from this tenant is refused in another tenant's subscription.
    let foreign_url = format!(
        "{}{}?api-version={API}",
        env.fake.arm_url(),
        env.foreign.id()
    );
    let (status, body) = send(env.client.get(&foreign_url).bearer_auth(access)).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationTokenTenant")
    );

    // A service principal with a client secret also gets an ARM token.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", SP_CLIENT),
        ("scope", ARM_SCOPE),
        ("client_secret", SP_SECRET),
    ];
    let (status, sp) = send(env.client.post(env.fake.token_url(TENANT)).form(&form)).await?;
    assert_eq!(status, StatusCode::OK, "{sp}");
    let (status, _) = send(
        env.client
            .get(&url)
            .bearer_auth(sp["access_token"].as_str().unwrap_or_default()),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", SP_CLIENT),
        ("scope", ARM_SCOPE),
        ("client_secret", "nope"),
    ];
    let (status, body) = send(env.client.post(env.fake.token_url(TENANT)).form(&wrong)).await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::UNAUTHORIZED,
            (Some("invalid_client"), Some(7000215))
        )
    );
    Ok(())
}

#[tokio::test]
async fn token_exchange_refuses_assertions_that_do_not_match_exactly() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let iss = env.issuer.url();
    let client = env.app.client_id.clone();
    // No FIC at all yet.
    let (status, body) = env
        .exchange(TENANT, &client, &env.issuer.good_token()?, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::UNAUTHORIZED,
            (Some("invalid_client"), Some(70021))
        ),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AADSTS70021: No matching federated identity record found")
    );

    env.trust_app().await?;
    let stranger = Issuer::generate(&iss)?;
    let mut tampered = env.issuer.good_token()?;
    let other_sig = env.issuer.token(
        &iss,
        "system:serviceaccount:apps:other",
        TOKEN_EXCHANGE_AUDIENCE,
        3600,
    )?;
    tampered.truncate(tampered.rfind('.').unwrap_or_default());
    tampered.push_str(&other_sig[other_sig.rfind('.').unwrap_or_default()..]);
    let stranger_claims = json!({"iss": iss, "sub": SUBJECT, "aud": [TOKEN_EXCHANGE_AUDIENCE],
        "exp": jsonwebtoken::get_current_timestamp() + 600, "iat": jsonwebtoken::get_current_timestamp()});
    let cases: Vec<(&str, String, u64)> = vec![
        (
            "subject mismatch",
            env.issuer.token(
                &iss,
                "system:serviceaccount:apps:other",
                TOKEN_EXCHANGE_AUDIENCE,
                3600,
            )?,
            700213,
        ),
        (
            "subject case differs",
            env.issuer.token(
                &iss,
                "system:serviceaccount:Apps:api",
                TOKEN_EXCHANGE_AUDIENCE,
                3600,
            )?,
            700213,
        ),
        (
            "issuer with trailing slash",
            env.issuer
                .token(&format!("{iss}/"), SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 3600)?,
            700211,
        ),
        (
            "audience mismatch",
            env.issuer.token(&iss, SUBJECT, "sts.amazonaws.com", 3600)?,
            700212,
        ),
        (
            "signed by another key",
            stranger.sign(&stranger_claims)?,
            700027,
        ),
        ("tampered signature", tampered, 700027),
        (
            "expired",
            env.issuer
                .token(&iss, SUBJECT, TOKEN_EXCHANGE_AUDIENCE, -120)?,
            700024,
        ),
    ];
    for (case, assertion, code) in cases {
        let (status, body) = env.exchange(TENANT, &client, &assertion, ARM_SCOPE).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(
            aadsts(&body),
            (Some("invalid_client"), Some(code)),
            "{case}: {body}"
        );
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{case}: {description}"
        );
    }

    let good = env.issuer.good_token()?;
    let (status, body) = env
        .exchange(OTHER_TENANT, &client, &good, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("unauthorized_client"), Some(700016))
        ),
        "wrong tenant"
    );
    let (status, body) = env
        .exchange(UNKNOWN_TENANT, &client, &good, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_request"), Some(90002))
        ),
        "unknown tenant"
    );
    let (status, body) = env
        .exchange(TENANT, &client, "not.a.jwt", ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body).1),
        (StatusCode::BAD_REQUEST, Some(50027))
    );
    let (status, body) = env
        .exchange(TENANT, &client, &good, "https://management.azure.com")
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_scope"), Some(1002012))
        )
    );
    let form = [
        ("grant_type", "password"),
        ("client_id", client.as_str()),
        ("scope", ARM_SCOPE),
    ];
    let (status, body) = send(env.client.post(env.fake.token_url(TENANT)).form(&form)).await?;
    assert_eq!(
        (status, aadsts(&body).0),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.as_str()),
        ("scope", ARM_SCOPE),
    ];
    let (status, body) = send(env.client.post(env.fake.token_url(TENANT)).form(&form)).await?;
    assert_eq!(
        (status, aadsts(&body).1),
        (StatusCode::UNAUTHORIZED, Some(7000218))
    );

    // A trusted issuer whose discovery document cannot be fetched (nothing listens there).
    let dead = "https://127.0.0.1:1";
    let (status, body) = env
        .put_fic(
            &env.app,
            "dead-issuer",
            dead,
            SUBJECT,
            &[TOKEN_EXCHANGE_AUDIENCE],
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let unreachable = env
        .issuer
        .token(dead, SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 3600)?;
    let (status, body) = env
        .exchange(TENANT, &client, &unreachable, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_request"), Some(50166))
        ),
        "{body}"
    );

    // After all that, the exact match still works.
    let (status, body) = env.exchange(TENANT, &client, &good, ARM_SCOPE).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn new_fics_take_effect_after_the_propagation_delay() -> anyhow::Result<()> {
    let env = env(|o| o.fic_propagation(Duration::from_millis(300))).await?;
    env.trust_app().await?;
    let good = env.issuer.good_token()?;
    let (status, body) = env
        .exchange(TENANT, &env.app.client_id, &good, ARM_SCOPE)
        .await?;
    assert_eq!(
        (status, aadsts(&body).1),
        (StatusCode::UNAUTHORIZED, Some(70021)),
        "{body}"
    );
    // Poll like a client retrying AADSTS70021 would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = env
            .exchange(TENANT, &env.app.client_id, &good, ARM_SCOPE)
            .await?;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn discovery_documents_point_back_at_the_fake() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let authority = env.fake.authority_url();
    assert!(authority.starts_with("https://") && authority.ends_with('/'));
    let base = authority.trim_end_matches('/');
    let (status, config) = send(env.client.get(format!(
        "{base}/{TENANT}/v2.0/.well-known/openid-configuration"
    )))
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(config["issuer"], format!("{base}/{TENANT}/v2.0"));
    let (status, keys) = send(
        env.client
            .get(config["jwks_uri"].as_str().unwrap_or_default()),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(keys["keys"].as_array().is_some_and(|k| !k.is_empty()));
    let (status, body) = send(env.client.get(format!(
        "{base}/{UNKNOWN_TENANT}/v2.0/.well-known/openid-configuration"
    )))
    .await?;
    assert_eq!(
        (status, aadsts(&body)),
        (
            StatusCode::BAD_REQUEST,
            (Some("invalid_tenant"), Some(90002))
        )
    );

    let authorize = format!("{base}/{TENANT}/oauth2/v2.0/authorize");
    let (status, instance) = send(
        env.client
            .get(format!("{base}/common/discovery/instance"))
            .query(&[
                ("api-version", "1.1"),
                ("authorization_endpoint", authorize.as_str()),
            ]),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        instance["tenant_discovery_endpoint"],
        format!("{base}/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    let host = base.trim_start_matches("https://");
    assert_eq!(instance["metadata"][0]["aliases"][0], host);

    // Over plain HTTP the same documents point at the HTTP server.
    let http = env.fake.http_url();
    let (status, config) = send(env.client.get(format!(
        "{http}/{TENANT}/v2.0/.well-known/openid-configuration"
    )))
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config["token_endpoint"],
        format!("{http}/{TENANT}/oauth2/v2.0/token")
    );
    Ok(())
}

#[tokio::test]
async fn http_and_https_share_state_and_faults_are_injected() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    env.trust_app().await?;
    let http_url = format!(
        "{}{}/federatedIdentityCredentials/apps-api?api-version={API}",
        env.fake.http_url(),
        env.app.id()
    );
    let (status, fic) = env.arm_get(&http_url).await?;
    assert_eq!(status, StatusCode::OK, "{fic}");

    env.fake
        .faults()
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    let response = env.client.get(&http_url).bearer_auth(STATIC).send().await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Shaped like ARM's own throttling error, not the shared middleware's numeric code.
    let body: Value = response.json().await?;
    assert_eq!(arm_code(&body), "SubscriptionRequestsThrottled", "{body}");
    assert_eq!(
        env.arm_get(&http_url).await?.0,
        StatusCode::OK,
        "only the next call fails"
    );

    // The control endpoint, as a stack in another process would be driven.
    let control = send(
        env.client
            .post(format!("{}/_faults", env.fake.arm_url()))
            .json(&json!({"status": 500, "count": 2})),
    )
    .await?;
    assert_eq!(control.0, StatusCode::NO_CONTENT);
    let token_call = env
        .exchange(
            TENANT,
            &env.app.client_id,
            &env.issuer.good_token()?,
            ARM_SCOPE,
        )
        .await?;
    assert_eq!(
        (token_call.0, aadsts(&token_call.1)),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            (Some("temporarily_unavailable"), Some(90033))
        ),
        "Entra is faulted too, in Entra's shape"
    );
    let (status, body) = env.arm_get(&http_url).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
    );
    // Real error responses pass through the reshaping untouched.
    let missing = http_url.replace("apps-api", "missing");
    let (status, body) = env.arm_get(&missing).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    assert_eq!(env.fake.faults().pending(), 0);
    assert_eq!(env.arm_get(&http_url).await?.0, StatusCode::OK);
    Ok(())
}
