//! The moto server process (AWS IAM emulator): finding it in the repo-local venv, starting it on a
//! free loopback port, waiting until it answers, and stopping it.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// Overrides where `moto_server` is looked up.
pub const MOTO_SERVER_ENV: &str = "PASSPORT_MOTO_SERVER";
/// The script that creates the venv moto runs from.
pub const VENV_SCRIPT: &str = "e2e/scripts/venv.sh";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 3;
const LOG_TAIL: usize = 30;

/// A running moto server. Dropping it kills the process.
pub struct Moto {
    child: Child,
    url: String,
    /// Stops moto when this process exits without dropping it.
    _watchdog: Option<crate::watched::OnExit>,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it serves requests.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = moto_server_path()?;
        let mut last_error = None;
        // Another process can take the port between our probe and moto's bind; try a few.
        for _ in 0..PORT_ATTEMPTS {
            match Self::start_on(&binary, free_port()?).await {
                Ok(moto) => return Ok(moto),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    async fn start_on(binary: &PathBuf, port: u16) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Real IAM has AWS's managed policies (arn:aws:iam::aws:policy/...) in every
            // account; moto loads them only when asked (about half a second and 40 MB more).
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        // A test binary never drops its statics, and a stack shared by a binary's tests lives
        // in one: moto is also stopped when this process exits, however it exits.
        let watchdog = child.id().and_then(|pid| {
            crate::watched::on_exit(
                r#"kill "$1" 2>/dev/null"#,
                &[std::ffi::OsStr::new(&pid.to_string())],
            )
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(BufReader::new(out), tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(BufReader::new(err), tail.clone()));
        }
        let url = format!("http://127.0.0.1:{port}");
        let mut moto = Self {
            child,
            url,
            _watchdog: watchdog,
        };
        if let Err(e) = moto.wait_ready().await {
            moto.kill().await;
            let log = tail
                .lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            bail!("{e:#}\nmoto output:\n{log}");
        }
        tracing::debug!(url = %moto.url, "moto started");
        Ok(moto)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        // moto's own API answers without credentials, unlike the emulated services.
        let probe = format!("{}/moto-api/data.json", self.url);
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let mut backoff = Duration::from_millis(25);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited during startup ({status})");
            }
            if let Ok(response) = client.get(&probe).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "moto did not answer on {} within {STARTUP_TIMEOUT:?}",
                    self.url
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills moto and waits for it to exit.
    pub async fn stop(mut self) {
        self.kill().await;
    }

    async fn kill(&mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::debug!(error = %e, "moto already gone");
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // kill_on_drop also does this; being explicit keeps it true if the Child is ever moved.
        let _ = self.child.start_kill();
    }
}

/// Why a request the fronts relay to moto got no answer to pass on.
#[derive(Debug)]
pub(crate) enum RelayError {
    /// moto could not be reached.
    Unreachable(reqwest::Error),
    /// Its answer could not be read.
    Unreadable(reqwest::Error),
}

/// Relays a request to moto as a front received it (`path_and_query` of its URI, its headers
/// but the hop-by-hop ones, and `extra` headers), and returns moto's status, headers (the
/// hop-by-hop ones dropped, but `Content-Length` kept with `keep_length`: a HEAD's, the
/// object's) and body.
pub(crate) async fn relay(
    http: &reqwest::Client,
    method: axum::http::Method,
    url: String,
    headers: &axum::http::HeaderMap,
    extra: &[(axum::http::HeaderName, &str)],
    body: axum::body::Bytes,
    keep_length: bool,
) -> Result<
    (
        reqwest::StatusCode,
        axum::http::HeaderMap,
        axum::body::Bytes,
    ),
    RelayError,
> {
    use axum::http::header;
    let hop = |name: &header::HeaderName| {
        [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::EXPECT,
        ]
        .contains(name)
    };
    let mut request = http.request(method, url);
    for (name, value) in headers {
        if !hop(name) {
            request = request.header(name, value);
        }
    }
    for (name, value) in extra {
        request = request.header(name, *value);
    }
    let upstream = request
        .body(body)
        .send()
        .await
        .map_err(RelayError::Unreachable)?;
    let status = upstream.status();
    let mut out = axum::http::HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !hop(name) || (keep_length && name == header::CONTENT_LENGTH) {
            out.append(name, value.clone());
        }
    }
    let bytes = upstream.bytes().await.map_err(RelayError::Unreadable)?;
    Ok((status, out, bytes))
}

async fn drain<R: tokio::io::AsyncRead + Unpin>(
    reader: BufReader<R>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::trace!(target: "moto", %line);
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// `$PASSPORT_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`.
pub fn moto_server_path() -> anyhow::Result<PathBuf> {
    locate(
        std::env::var_os(MOTO_SERVER_ENV),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    )
}

fn locate(overridden: Option<std::ffi::OsString>, repo: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = overridden {
        return Ok(PathBuf::from(path));
    }
    let path = repo.join(".venv/bin/moto_server");
    if !path.exists() {
        bail!(
            "moto_server not found at {}: run `{VENV_SCRIPT}` from the repository root to create \
             the Python venv (or set {MOTO_SERVER_ENV} to a moto_server binary)",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_venv_names_the_script_to_run() {
        let empty = std::env::temp_dir().join("passport-no-venv-here");
        let message = locate(None, &empty).map_err(|e| e.to_string()).err();
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("e2e/scripts/venv.sh") && m.contains(MOTO_SERVER_ENV)),
            "{message:?}"
        );
        let chosen = locate(Some("/opt/moto_server".into()), &empty).ok();
        assert_eq!(chosen, Some(PathBuf::from("/opt/moto_server")));
    }
}
