//! Injected faults and limits: 429 and 500 are retried, a 403 is AccessDenied at once, a
//! spent budget is Throttled, and the client-side limiter keeps writes within its rate.

use std::time::Duration;

use passport_operator::cloud::{
    BindingIntent, Cloud, ErrorKind, ServiceAccountBindings, WorkloadIdentityPools,
    gcp::WriteLimiter, retry::Backoff,
};
use reqwest::StatusCode;

use super::*;

fn binding() -> BindingIntent {
    BindingIntent {
        service_account: SA.into(),
        grant: vec![format!(
            "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/p/subject/s"
        )],
        revoke: Vec::new(),
    }
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_they_pass() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.fake
        .faults()
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    env.fake
        .faults()
        .fail_next(1, StatusCode::INTERNAL_SERVER_ERROR);
    env.provider
        .ensure_workload_identity_provider(&intent("passport-pool"))
        .await?;
    // The pool GET failed twice, then passed.
    assert_eq!(
        env.calls.operation(Cloud::Gcp, "GetWorkloadIdentityPool"),
        3
    );

    env.fake
        .faults()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    env.fake
        .faults()
        .fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    env.provider
        .ensure_workload_identity_users(&binding())
        .await?;
    assert_eq!(env.calls.operation(Cloud::Gcp, "GetIamPolicy"), 3);
    assert_eq!(env.fake.faults().pending(), 0);
    Ok(())
}

#[tokio::test]
async fn a_permission_error_surfaces_at_once_as_access_denied() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.fake.faults().fail_next(1, StatusCode::FORBIDDEN);
    let error = env
        .provider
        .ensure_workload_identity_provider(&intent("passport-pool"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::AccessDenied);
    assert_eq!(error.code.as_deref(), Some("PERMISSION_DENIED"));
    assert!(
        error.message.contains("injected fault"),
        "{}",
        error.message
    );
    assert_eq!(env.calls.total(Cloud::Gcp), 1);

    env.fake.faults().fail_next(1, StatusCode::FORBIDDEN);
    let error = env
        .provider
        .ensure_workload_identity_users(&binding())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::AccessDenied);
    assert_eq!(error.code.as_deref(), Some("PERMISSION_DENIED"));
    Ok(())
}

#[tokio::test]
async fn a_spent_retry_budget_surfaces_as_throttled() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.fake
        .faults()
        .fail_next(100, StatusCode::TOO_MANY_REQUESTS);
    let error = env
        .provider
        .ensure_workload_identity_provider(&intent("passport-pool"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(
        env.calls.operation(Cloud::Gcp, "GetWorkloadIdentityPool"),
        u64::from(Backoff::fast().max_attempts)
    );
    assert_eq!(env.calls.writes(Cloud::Gcp), 0);
    env.fake.faults().clear();
    Ok(())
}

#[tokio::test]
async fn the_write_limiter_keeps_writes_within_the_rate() -> anyhow::Result<()> {
    // The fake enforces the same quota as Google would, here two writes a minute: the limiter
    // must refuse the third write itself rather than let Google throttle it.
    let env = Env::start_with(|o| o.writes_per_minute(2)).await?;
    let provider = env.provider.clone().with_limiter(WriteLimiter::new(
        2,
        Duration::from_secs(60),
        Duration::from_millis(200),
    ));
    let mut intent = intent("passport-pool");
    provider.ensure_workload_identity_provider(&intent).await?;
    assert_eq!(env.calls.writes(Cloud::Gcp), 2);
    intent.attribute_condition = None;
    let error = provider
        .ensure_workload_identity_provider(&intent)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(error.code, None, "refused by Passport, not by Google");
    assert_eq!(env.calls.writes(Cloud::Gcp), 2);

    // With a short window, writes wait for a slot and then pass.
    let env = Env::start().await?;
    let window = Duration::from_millis(300);
    let provider =
        env.provider
            .clone()
            .with_limiter(WriteLimiter::new(1, window, Duration::from_secs(5)));
    let started = std::time::Instant::now();
    provider
        .ensure_workload_identity_provider(&super::intent("passport-pool"))
        .await?;
    assert_eq!(env.calls.writes(Cloud::Gcp), 2);
    assert!(started.elapsed() >= window, "{:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_on_retry() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.lose_next_answer("/workloadIdentityPools");
    let ensured = env
        .provider
        .ensure_workload_identity_provider(&intent("passport-pool"))
        .await?;
    // The retried create met its own first attempt (ALREADY_EXISTS) and took the pool as
    // Passport's after checking its owner.
    assert_eq!(
        env.calls
            .operation(Cloud::Gcp, "CreateWorkloadIdentityPool"),
        2
    );
    assert_eq!(env.pool("passport-pool").await?["state"], "ACTIVE");
    assert_eq!(
        ensured.state.provider_name,
        format!("{}/providers/cluster", pool_path("passport-pool"))
    );
    Ok(())
}
