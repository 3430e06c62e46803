//! `passport-stack`: the local stack as one process (`make stack`). Prints the kubeconfig and
//! the cloud endpoints, writes them to `<dir>/stack.env`, runs the kubelet stand-in (each pod's
//! volumes under `<dir>/pods/<namespace>/<pod>/<volume>/`), and runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use passport_e2e::{
    kubelet::Kubelet,
    realapi,
    stack::{Stack, StackConfig},
};

/// Passport's local stack: a Kubernetes API server (the emulator or the real one) and AWS, GCP and
/// Azure emulators.
#[derive(Debug, Parser)]
#[command(name = "passport-stack", version)]
struct Args {
    /// Folder for the kubeconfig, the CA certificate and stack.env (default: a new temporary one).
    #[arg(long, env = "PASSPORT_STACK_DIR")]
    dir: Option<PathBuf>,
    /// Port of the Kubernetes API server (0: any free port).
    #[arg(long, env = "PASSPORT_STACK_API_PORT", default_value_t = 0)]
    api_port: u16,
    /// Which Kubernetes API server to run: the emulator, or the real kube-apiserver built from
    /// e2e/kube (needs Go; the first build downloads and compiles it).
    #[arg(long, env = "PASSPORT_STACK_APISERVER", value_enum, default_value_t = realapi::Kind::Emulated)]
    apiserver: realapi::Kind,
    /// Do not start moto and the AWS fronts.
    #[arg(long)]
    no_aws: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir)?;
    }
    let stack = Stack::start(StackConfig {
        dir: args.dir,
        api_port: args.api_port,
        apiserver: args.apiserver,
        kubeconfig: None,
        aws: !args.no_aws,
    })
    .await?;
    // What a node would do for every pod: write its projected tokens, ConfigMaps and files.
    let kubelet = Kubelet::new(stack.apiserver.client().await?, stack.dir().join("pods")).spawn();
    println!("passport local stack is up (Ctrl-C stops it)\n");
    for (key, value) in stack.env() {
        println!("{key}={value}");
    }
    println!(
        "\nsource {}/stack.env  # or: export KUBECONFIG=...",
        stack.dir().display()
    );
    wait_for_shutdown().await?;
    eprintln!("stopping the local stack");
    kubelet.abort();
    drop(stack);
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
