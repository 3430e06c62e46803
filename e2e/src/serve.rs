//! Starting the stack's HTTP(S) servers on free loopback ports, and stopping them.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use axum::Router;
use axum_server::{Handle, tls_rustls::RustlsConfig};

/// A server running on a loopback port. Dropping it stops the server.
pub struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    handle: Handle<SocketAddr>,
}

impl Server {
    /// Serves `router` over plain HTTP on a free loopback port.
    pub async fn http(router: Router) -> anyhow::Result<Self> {
        Self::start(router, None, 0).await
    }

    /// Serves `router` over HTTPS on a free loopback port.
    pub async fn https(router: Router, tls: RustlsConfig) -> anyhow::Result<Self> {
        Self::start(router, Some(tls), 0).await
    }

    /// Serves `router` on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(
        router: Router,
        tls: Option<RustlsConfig>,
        port: u16,
    ) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let handle = Handle::new();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let scheme = if let Some(tls) = tls {
            let server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await });
            "https"
        } else {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await });
            "http"
        };
        Ok(Self {
            addr,
            scheme,
            handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting connections and lets in-flight requests finish for up to a second.
    pub fn stop(&self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
