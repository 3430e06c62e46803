//! ARM: identities and federated identity credentials, checked against the swagger.

use std::time::Duration;

use passport_e2e::azure::{
    IdentitySeed, MAX_FICS_PER_IDENTITY, TOKEN_EXCHANGE_AUDIENCE,
    spec::{self, examples},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{API, STATIC, SUB, SUBJECT, TENANT, arm_code, env, send};
#[tokio::test]
async fn fic_create_get_list_update_delete() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let iss = env.issuer.url();
    let (status, created) = env
        .put_fic(
            &env.app,
            "apps-api",
            &iss,
            SUBJECT,
            &["api://AzureADTokenExchange"],
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["id"],
        format!(
            "/subscriptions/{SUB}/resourcegroups/rg-apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app/federatedIdentityCredentials/apps-api"
        )
    );
    assert_eq!(created["properties"]["subject"], SUBJECT);

    let (status, updated) = env
        .put_fic(
            &env.app,
            "apps-api",
            &iss,
            "system:serviceaccount:apps:other",
            &["api://AzureADTokenExchange"],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{updated}");

    // Resource IDs are case-insensitive: a lower-cased path finds the same credential.
    let lower = format!(
        "{}/subscriptions/{SUB}/resourcegroups/RG-APPS/providers/microsoft.managedidentity/userassignedidentities/APP/federatedIdentityCredentials/APPS-API?api-version={API}",
        env.fake.arm_url()
    );
    let (status, got) = env.arm_get(&lower).await?;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["name"], "apps-api");
    assert_eq!(
        got["properties"]["subject"],
        "system:serviceaccount:apps:other"
    );

    let list_url = format!(
        "{}{}/federatedIdentityCredentials?api-version={API}",
        env.fake.arm_url(),
        env.app.id()
    );
    let (status, list) = env.arm_get(&list_url).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["value"][0], got);
    assert!(list.get("nextLink").is_none());

    let delete = || {
        send(
            env.client
                .delete(env.fic_url(&env.app, "apps-api"))
                .bearer_auth(STATIC),
        )
    };
    assert_eq!(delete().await?.0, StatusCode::OK);
    assert_eq!(delete().await?.0, StatusCode::NO_CONTENT);
    let (status, body) = env.arm_get(&env.fic_url(&env.app, "apps-api")).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    assert!(env.fake.fics(SUB, "rg-apps", "app").is_empty());
    Ok(())
}

#[tokio::test]
async fn responses_have_the_swagger_example_shapes() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let example: Value = serde_json::from_str(examples::CREATE)?;
    let parameters = &example["parameters"]["parameters"];
    let (status, created) = send(
        env.client
            .put(env.fic_url(&env.app, "ficResourceName"))
            .bearer_auth(STATIC)
            .json(parameters),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED);
    let expected = &example["responses"]["201"]["body"];
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&created), keys(expected));
    assert_eq!(created["type"], expected["type"]);
    assert_eq!(created["properties"], expected["properties"]);

    let list_example: Value = serde_json::from_str(examples::LIST)?;
    let list_url = format!(
        "{}{}/federatedIdentityCredentials?api-version={API}&$top=20",
        env.fake.arm_url(),
        env.app.id()
    );
    let (_, list) = env.arm_get(&list_url).await?;
    assert_eq!(
        keys(&list["value"][0]),
        keys(&list_example["responses"]["200"]["body"]["value"][0])
    );

    let delete_example: Value = serde_json::from_str(examples::DELETE)?;
    let declared: Vec<u16> = delete_example["responses"]
        .as_object()
        .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    let (status, _) = send(
        env.client
            .delete(env.fic_url(&env.app, "ficResourceName"))
            .bearer_auth(STATIC),
    )
    .await?;
    assert!(
        declared.contains(&status.as_u16()),
        "{status} not in {declared:?}"
    );
    let get_example: Value = serde_json::from_str(examples::GET)?;
    assert_eq!(get_example["parameters"]["api-version"], API);
    Ok(())
}

#[tokio::test]
async fn served_routes_and_api_versions_match_the_swagger() -> anyhow::Result<()> {
    let documents = spec::documents()?;
    spec::check_routes(&documents)?;
    let env = env(|o| o).await?;
    for route in spec::ROUTES {
        for doc in &documents {
            assert!(doc.operation_id(&route.method, route.template).is_some());
        }
    }
    let identity_url = |version: Option<&str>| {
        let base = format!("{}{}", env.fake.arm_url(), env.app.id());
        match version {
            Some(v) => format!("{base}?api-version={v}"),
            None => base,
        }
    };
    for doc in &documents {
        let (status, body) = env.arm_get(&identity_url(Some(&doc.version))).await?;
        assert_eq!(status, StatusCode::OK, "{}: {body}", doc.version);
    }
    for (version, code) in [
        (None, "MissingApiVersionParameter"),
        (Some("2020-01-01"), "NoRegisteredProviderFound"),
        (Some("2025-01-31-preview"), "NoRegisteredProviderFound"),
        (Some("latest"), "InvalidApiVersionParameter"),
    ] {
        let (status, body) = env.arm_get(&identity_url(version)).await?;
        assert_eq!(
            (status, arm_code(&body)),
            (StatusCode::BAD_REQUEST, code),
            "{version:?}"
        );
    }
    // A path the swagger does not declare, and a method it does not declare.
    let (status, _) = env
        .arm_get(&format!(
            "{}/subscriptions/{SUB}/providers/Microsoft.Foo/bars?api-version={API}",
            env.fake.arm_url()
        ))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(env.client.post(identity_url(Some(API))).bearer_auth(STATIC)).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
    );
    Ok(())
}

#[tokio::test]
async fn identities_are_read_and_written_through_arm() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let url = format!("{}{}?api-version={API}", env.fake.arm_url(), env.app.id());
    let (status, identity) = env.arm_get(&url).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        identity["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    assert_eq!(identity["name"], "app");
    assert_eq!(identity["location"], "westus");
    assert_eq!(identity["properties"]["clientId"], env.app.client_id);
    assert_eq!(identity["properties"]["principalId"], env.app.principal_id);
    assert_eq!(identity["properties"]["tenantId"], TENANT);

    let new_url = format!(
        "{}/subscriptions/{SUB}/resourceGroups/rg-apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/created?api-version={API}",
        env.fake.arm_url()
    );
    let put = |body: Value| send(env.client.put(&new_url).bearer_auth(STATIC).json(&body));
    let (status, body) = put(json!({"tags": {}})).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::BAD_REQUEST, "LocationRequired")
    );
    let (status, created) = put(json!({"location": "eastus", "tags": {"team": "a"}})).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["properties"]["tenantId"], TENANT);
    assert_eq!(
        created["properties"]["clientId"].as_str().map(str::len),
        Some(36)
    );
    let (status, updated) = put(json!({"location": "eastus", "tags": {"team": "b"}})).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["tags"]["team"], "b");
    assert_eq!(
        updated["properties"]["clientId"],
        created["properties"]["clientId"]
    );

    let (status, body) = put(json!({"location": "westus"})).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidResourceLocation")
    );

    let delete = || send(env.client.delete(&new_url).bearer_auth(STATIC));
    assert_eq!(delete().await?.0, StatusCode::OK);
    assert_eq!(delete().await?.0, StatusCode::NO_CONTENT);
    let (status, body) = env.arm_get(&new_url).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    // Re-created under the same name, an identity is a new principal with new IDs.
    let (status, again) = put(json!({"location": "eastus"})).await?;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(
        again["properties"]["clientId"],
        created["properties"]["clientId"]
    );
    assert_ne!(
        again["properties"]["principalId"],
        created["properties"]["principalId"]
    );
    let unknown_sub = url.replace(SUB, "6f1c0a8e-9999-4b2c-9d3e-000000000009");
    let (status, body) = env.arm_get(&unknown_sub).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );
    Ok(())
}

#[tokio::test]
async fn invalid_fic_writes_are_refused() -> anyhow::Result<()> {
    let env = env(|o| o).await?;
    let iss = env.issuer.url();
    let aud = [TOKEN_EXCHANGE_AUDIENCE];
    let long = "x".repeat(601);
    let long_issuer = format!("{iss}/{}", "p".repeat(600));
    let cases: Vec<(&str, &str, &str, &[&str], &str)> = vec![
        ("ab", &iss, SUBJECT, &aud, "is invalid"),
        ("-starts-with-dash", &iss, SUBJECT, &aud, "is invalid"),
        ("has.dot", &iss, SUBJECT, &aud, "is invalid"),
        ("no-audience", &iss, SUBJECT, &[], "exactly 1 audience"),
        (
            "two-audiences",
            &iss,
            SUBJECT,
            &["a", "b"],
            "exactly 1 audience",
        ),
        (
            "plain-http",
            "http://issuer.test",
            SUBJECT,
            &aud,
            "https URL",
        ),
        ("long-issuer", &long_issuer, SUBJECT, &aud, "at most 600"),
        ("long-subject", &iss, &long, &aud, "at most 600"),
    ];
    for (name, issuer, subject, audiences, message) in cases {
        let (status, body) = env
            .put_fic(&env.app, name, issuer, subject, audiences)
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(arm_code(&body), "BadRequest", "{name}");
        let text = body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{name}: {text}");
    }

    let (status, _) = env.put_fic(&env.app, "first", &iss, SUBJECT, &aud).await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = env.put_fic(&env.app, "second", &iss, SUBJECT, &aud).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Issuer and subject combination already exists")
    );
    // The same pair on another identity is fine.
    assert_eq!(
        env.put_fic(&env.worker, "second", &iss, SUBJECT, &aud)
            .await?
            .0,
        StatusCode::CREATED
    );

    let missing = IdentitySeed::new(SUB, "rg-apps", "missing", TENANT);
    let (status, body) = env.put_fic(&missing, "fic", &iss, SUBJECT, &aud).await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::NOT_FOUND, "ParentResourceNotFound")
    );
    let (status, body) = send(
        env.client
            .put(env.fic_url(&env.app, "bad-json"))
            .bearer_auth(STATIC)
            .body("{not json"),
    )
    .await?;
    assert_eq!(
        (status, arm_code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidRequestContent")
    );
    let (status, body) = send(
        env.client
            .put(env.fic_url(&env.app, "empty"))
            .bearer_auth(STATIC)
            .json(&json!({})),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        env.fake.fics(SUB, "rg-apps", "app").len(),
        1,
        "refused writes stored nothing"
    );
    Ok(())
}

#[tokio::test]
async fn an_identity_holds_at_most_twenty_fics() -> anyhow::Result<()> {
    let env = env(|o| o.fic_write_time(Duration::ZERO)).await?;
    let iss = env.issuer.url();
    let aud = [TOKEN_EXCHANGE_AUDIENCE];
    for n in 0..MAX_FICS_PER_IDENTITY {
        let (status, body) = env
            .put_fic(
                &env.app,
                &format!("fic-{n}"),
                &iss,
                &format!("sub-{n}"),
                &aud,
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{n}: {body}");
    }
    let (status, body) = env
        .put_fic(&env.app, "fic-21st", &iss, "sub-21", &aud)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 20"), "{message}");
    // Updating one of the twenty is still allowed; deleting one makes room.
    assert_eq!(
        env.put_fic(&env.app, "fic-0", &iss, "sub-0-changed", &aud)
            .await?
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            env.client
                .delete(env.fic_url(&env.app, "fic-1"))
                .bearer_auth(STATIC)
        )
        .await?
        .0,
        StatusCode::OK
    );
    assert_eq!(
        env.put_fic(&env.app, "fic-21st", &iss, "sub-21", &aud)
            .await?
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        env.fake.fics(SUB, "rg-apps", "app").len(),
        MAX_FICS_PER_IDENTITY
    );

    // Paging through the twenty with $top follows nextLink.
    let mut url = format!(
        "{}{}/federatedIdentityCredentials?api-version={API}&$top=7",
        env.fake.arm_url(),
        env.app.id()
    );
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, page) = env.arm_get(&url).await?;
        assert_eq!(status, StatusCode::OK);
        seen.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), MAX_FICS_PER_IDENTITY);
    Ok(())
}

#[tokio::test]
async fn concurrent_writes_to_one_identity_get_409() -> anyhow::Result<()> {
    let env = env(|o| o.fic_write_time(Duration::from_millis(800))).await?;
    let iss = env.issuer.url();
    let aud = [TOKEN_EXCHANGE_AUDIENCE];
    // The second write starts once the first is in flight, and lands within its 800 ms.
    let (first, second) =
        tokio::join!(env.put_fic(&env.app, "first", &iss, "sub-a", &aud), async {
            env.wait_until_busy(&env.app).await?;
            env.put_fic(&env.app, "second", &iss, "sub-b", &aud).await
        },);
    let (first, second) = (first?, second?);
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    assert_eq!(second.0, StatusCode::CONFLICT, "{}", second.1);
    assert_eq!(
        arm_code(&second.1),
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    );
    assert_eq!(env.fake.fics(SUB, "rg-apps", "app").len(), 1);
    assert!(!env.fake.write_in_flight(SUB, "rg-apps", "app"));

    // A delete is a write too; and once the first write finished the identity takes writes.
    let (put, delete) = tokio::join!(env.put_fic(&env.app, "third", &iss, "sub-c", &aud), async {
        env.wait_until_busy(&env.app).await?;
        send(
            env.client
                .delete(env.fic_url(&env.app, "first"))
                .bearer_auth(STATIC),
        )
        .await
    },);
    assert_eq!(put?.0, StatusCode::CREATED);
    let (status, body) = delete?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(env.fake.fics(SUB, "rg-apps", "app").len(), 2);

    // Writes to different identities do not contend, and reads never wait for writes.
    let (a, b) = tokio::join!(
        env.put_fic(&env.app, "fourth", &iss, "sub-d", &aud),
        async {
            env.wait_until_busy(&env.app).await?;
            let read = env.arm_get(&env.fic_url(&env.app, "third")).await?;
            let write = env
                .put_fic(&env.worker, "fourth", &iss, "sub-d", &aud)
                .await?;
            anyhow::Ok((read, write))
        },
    );
    let (read, write) = b?;
    assert_eq!(read.0, StatusCode::OK, "{}", read.1);
    assert_eq!((a?.0, write.0), (StatusCode::CREATED, StatusCode::CREATED));
    Ok(())
}
