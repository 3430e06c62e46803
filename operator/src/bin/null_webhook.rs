//! `passport-null-webhook`: the baseline of the webhook benchmark (`make bench`). It serves
//! `POST /mutate` on `passport run`'s HTTPS stack (the same runtime, axum-server, rustls and
//! certificate) with a handler that allows every review with no patch, so that the benchmark
//! reports what Passport's webhook costs as a ratio to a webhook that does nothing.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use clap::Parser as _;
use passport_operator::webhook;

/// The allocator of `passport` (operator/src/main.rs), so that both sides measure one stack.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve a webhook that allows every pod unchanged (a benchmark baseline, not for clusters).
#[derive(Debug, clap::Parser)]
#[command(name = "passport-null-webhook", version)]
struct Args {
    /// Where to listen (HTTPS).
    #[arg(long, default_value = "127.0.0.1:9444")]
    addr: SocketAddr,
    /// A folder with `tls.crt` and `tls.key` (the benchmark copies `passport run`'s own).
    #[arg(long)]
    tls_dir: PathBuf,
    /// How the review is read: `uid` reads its UID and skips the rest (the benchmark's
    /// baseline); `kube` reads it whole into kube's types, as kube-rs's admission example does
    /// (a second baseline, for context).
    #[arg(long, value_enum, default_value_t = Read::Uid)]
    read: Read,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Read {
    Uid,
    Kube,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As `passport run` builds its runtime (operator/src/cli.rs): TOKIO_WORKER_THREADS applies.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let read = |name: &str| {
        let path = args.tls_dir.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let rustls = RustlsConfig::from_pem(read("tls.crt")?, read("tls.key")?)
        .await
        .context("loading the serving certificate")?;
    let listener = webhook::listen(args.addr)?;
    eprintln!(
        "passport-null-webhook: serving https://{}/mutate (reading {:?})",
        args.addr, args.read
    );
    let router = match args.read {
        Read::Uid => webhook::null::router(),
        Read::Kube => webhook::null::router_kube(),
    };
    webhook::serve_https(listener, rustls, router).await
}
