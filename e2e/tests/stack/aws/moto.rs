//! moto's process lifecycle: free ports, separate state, stopped on `stop` and on drop.

use aws_sdk_iam::error::ProvideErrorMetadata as _;
use passport_e2e::aws::{self, Moto};

#[tokio::test]
async fn moto_starts_on_free_ports_and_stops() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(Moto::start(), Moto::start())?;
    assert_ne!(a.url(), b.url());
    let http = reqwest::Client::new();
    let probe = format!("{}/moto-api/data.json", a.url());
    assert!(http.get(&probe).send().await?.status().is_success());
    // Each moto has its own state.
    aws::iam_client(a.url())
        .create_role()
        .role_name("only-in-a")
        .assume_role_policy_document("{}")
        .send()
        .await?;
    let in_b = aws::iam_client(b.url())
        .get_role()
        .role_name("only-in-a")
        .send()
        .await;
    assert_eq!(
        in_b.err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("NoSuchEntity")
    );
    a.stop().await;
    assert!(
        http.get(&probe).send().await.is_err(),
        "moto still answers after stop"
    );

    // Dropping kills the process too (the signal is sent at once; exit follows shortly).
    let b_probe = format!("{}/moto-api/data.json", b.url());
    drop(b);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while http.get(&b_probe).send().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "moto survived its drop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}
