//! The STS exchange, its refusals, and impersonation.

use passport_e2e::oidc::Issuer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

/// Sets up pool-1 with provider `provider` (an OIDC provider for the test issuer).
async fn trust(env: &Env, provider: &str, oidc: Value) -> anyhow::Result<()> {
    env.create_pool("pool-1").await?;
    env.create_provider(
        "pool-1",
        provider,
        json!({
            "attributeMapping": k8s_mapping(),
            "attributeCondition": "attribute.namespace != 'kube-system'",
            "oidc": oidc,
        }),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn sts_exchanges_verified_tokens_and_impersonation_needs_the_binding() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    // No jwksJson: the fake discovers the issuer's keys over HTTPS.
    trust(
        &env,
        "k8s-oidc",
        json!({ "issuerUri": env.issuer.url(), "allowedAudiences": ["gcp-sts"] }),
    )
    .await?;
    let token = env.k8s_token("gcp-sts", "team-a", 600)?;
    let (status, exchanged) = env
        .exchange(&audience("pool-1", "k8s-oidc"), &token)
        .await?;
    assert_eq!(status, StatusCode::OK, "{exchanged}");
    assert_eq!(exchanged["token_type"], "Bearer");
    assert_eq!(
        exchanged["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(exchanged["expires_in"], 3600);
    let federated = exchanged["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let principal = format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:api"
    );
    let (status, me) = env.whoami(&federated).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["principal"], principal.as_str());
    assert_eq!(me["attributes"]["namespace"], "team-a");

    // Without a binding the service account cannot be impersonated.
    let denied = env.impersonate(&federated).await?;
    assert_error(&denied, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    env.set_policy(&[&format!("principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/someone-else")]).await?;
    let denied = env.impersonate(&federated).await?;
    assert_error(&denied, StatusCode::FORBIDDEN, "PERMISSION_DENIED");

    env.set_policy(&[&principal]).await?;
    let (status, impersonated) = env.impersonate(&federated).await?;
    assert_eq!(status, StatusCode::OK, "{impersonated}");
    let expire: jiff::Timestamp = impersonated["expireTime"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    assert!(expire > jiff::Timestamp::now());
    let sa_token = impersonated["accessToken"].as_str().unwrap_or_default();
    let (_, me) = env.whoami(sa_token).await?;
    assert_eq!(me["principal"], format!("serviceAccount:{SA}"));

    // A namespace-wide principalSet works too; other namespaces stay out.
    env.set_policy(&[&format!("principalSet://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/attribute.namespace/team-a")]).await?;
    assert_eq!(env.impersonate(&federated).await?.0, StatusCode::OK);
    let (_, other) = env
        .exchange(
            &audience("pool-1", "k8s-oidc"),
            &env.k8s_token("gcp-sts", "team-b", 600)?,
        )
        .await?;
    let other = other["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_error(
        &env.impersonate(&other).await?,
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
    );

    // Disabling the pool stops exchanges and the tokens already issued from it.
    env.write(
        Method::PATCH,
        &format!("v1/{}/pool-1?updateMask=disabled", pools(PROJECT)),
        json!({ "disabled": true }),
    )
    .await?;
    assert_error(
        &env.whoami(&federated).await?,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    );
    assert_oauth(
        &env.exchange(&audience("pool-1", "k8s-oidc"), &token)
            .await?,
        "invalid_target",
        "disabled",
    );

    let anonymous = env.whoami("made-up").await?;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    Ok(())
}

#[tokio::test]
async fn sts_refuses_tokens_the_provider_does_not_trust() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    trust(
        &env,
        "k8s-oidc",
        json!({ "issuerUri": env.issuer.url(), "allowedAudiences": ["gcp-sts"] }),
    )
    .await?;
    let aud = audience("pool-1", "k8s-oidc");

    let impostor = Issuer::generate("https://elsewhere.example")?;
    let wrong_issuer = env.k8s_token_from(&impostor, "gcp-sts", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &wrong_issuer).await?,
        "invalid_grant",
        "issuer",
    );

    let wrong_audience = env.k8s_token("sts.amazonaws.com", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &wrong_audience).await?,
        "invalid_grant",
        "audience",
    );

    // Same issuer URL, different key: the signature cannot verify.
    let forger = Issuer::generate(env.issuer.url())?;
    let forged = env.k8s_token_from(&forger, "gcp-sts", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &forged).await?,
        "invalid_grant",
        "signature",
    );
    let good = env.k8s_token("gcp-sts", "team-a", 600)?;
    let (head, _) = good.rsplit_once('.').context("JWT")?;
    let (_, other_sig) = forged.rsplit_once('.').context("JWT")?;
    let tampered = format!("{head}.{other_sig}");
    assert_oauth(
        &env.exchange(&aud, &tampered).await?,
        "invalid_grant",
        "signature",
    );

    let expired = env.k8s_token("gcp-sts", "team-a", -120)?;
    assert_oauth(
        &env.exchange(&aud, &expired).await?,
        "invalid_grant",
        "expired",
    );

    let system = env.k8s_token("gcp-sts", "kube-system", 600)?;
    assert_oauth(
        &env.exchange(&aud, &system).await?,
        "unauthorized_client",
        "attribute condition",
    );

    assert_oauth(
        &env.exchange(&audience("pool-1", "nope"), &good).await?,
        "invalid_target",
        "audience",
    );

    // The good token works until its pool is deleted.
    assert_eq!(env.exchange(&aud, &good).await?.0, StatusCode::OK);
    env.write(
        Method::DELETE,
        &format!("v1/{}/pool-1", pools(PROJECT)),
        Value::Null,
    )
    .await?;
    assert_oauth(
        &env.exchange(&aud, &good).await?,
        "invalid_target",
        "deleted",
    );

    let wrong_grant = env
        .client
        .post(env.fake.https().sts_token)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(wrong_grant.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong_grant.json::<Value>().await?["error"],
        "unsupported_grant_type"
    );
    Ok(())
}

#[tokio::test]
async fn sts_uses_inline_jwks_and_the_default_audience() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    // An issuer nobody can reach: only the inline keys can verify its tokens.
    let private = Issuer::generate("https://kubernetes.default.svc")?;
    trust(
        &env,
        "inline",
        json!({
            "issuerUri": private.url(),
            "jwksJson": private.jwks().to_string(),
        }),
    )
    .await?;
    let aud = audience("pool-1", "inline");
    for token_audience in [aud.clone(), format!("https:{aud}")] {
        let token = env.k8s_token_from(&private, &token_audience, "team-a", 600)?;
        let (status, body) = env.exchange(&aud, &token).await?;
        assert_eq!(status, StatusCode::OK, "{token_audience}: {body}");
    }
    let other_aud = env.k8s_token_from(&private, "gcp-sts", "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &other_aud).await?,
        "invalid_grant",
        "audience",
    );
    let forger = Issuer::generate(private.url())?;
    let forged = env.k8s_token_from(&forger, &aud, "team-a", 600)?;
    assert_oauth(
        &env.exchange(&aud, &forged).await?,
        "invalid_grant",
        "signature",
    );

    // The same exchange as a JSON body in the discovery document's spelling.
    let token = env.k8s_token_from(&private, &aud, "team-a", 600)?;
    let response = env
        .client
        .post(env.fake.http().sts_token)
        .json(&json!({
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
            "subjectTokenType": "urn:ietf:params:oauth:token-type:id_token",
            "subjectToken": token,
            "audience": aud,
            "scope": SCOPE,
        }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(())
}

/// What google-auth for Python sends and reads: `"delegates": null` (proto3 JSON null is the
/// default), and an `expireTime` on whole seconds, which it parses with `%Y-%m-%dT%H:%M:%SZ`.
#[tokio::test]
async fn impersonation_takes_null_fields_and_expires_on_whole_seconds() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    trust(
        &env,
        "k8s-oidc",
        json!({ "issuerUri": env.issuer.url(), "allowedAudiences": ["gcp-sts"] }),
    )
    .await?;
    let token = env.k8s_token("gcp-sts", "team-a", 600)?;
    let (_, exchanged) = env
        .exchange(&audience("pool-1", "k8s-oidc"), &token)
        .await?;
    let federated = exchanged["access_token"].as_str().unwrap_or_default();
    env.set_policy(&[&format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:api"
    )])
    .await?;
    let response = env
        .client
        .post(env.fake.https().impersonation_url(SA))
        .bearer_auth(federated)
        .json(&json!({ "delegates": null, "scope": [SCOPE], "lifetime": "3600s" }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expire = body["expireTime"].as_str().unwrap_or_default();
    let shape = expire.len() == "2014-10-02T15:01:23Z".len()
        && expire.ends_with('Z')
        && !expire.contains('.');
    assert!(shape, "expireTime {expire:?} is not on whole seconds");
    let expire: jiff::Timestamp = expire.parse()?;
    assert!(expire > jiff::Timestamp::now());

    // A proto field name is as good as its JSON name; an unknown one is still refused.
    let (status, body) = env
        .call(
            Method::POST,
            &format!("v1/{}?workloadIdentityPoolId=pool-2", pools(PROJECT)),
            Some(json!({ "display_name": "snake", "description": null })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, pool) = env.get(&format!("v1/{}/pool-2", pools(PROJECT))).await?;
    assert_eq!(pool["displayName"], "snake");
    assert!(pool.get("description").is_none(), "{pool}");
    let refused = env
        .call(
            Method::POST,
            &format!("v1/{}?workloadIdentityPoolId=pool-3", pools(PROJECT)),
            Some(json!({ "colour": null, "shade": "x" })),
        )
        .await?;
    assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    Ok(())
}
