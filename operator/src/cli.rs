//! Passport's command line: one subcommand per job, flags also readable from the environment.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use passport_operator::{offline, plan, run::RunArgs};

/// Passport: pods use AWS, Google Cloud and Azure with no static keys.
#[derive(Debug, Parser)]
#[command(name = "passport", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version of the binary and of the API it serves.
    Version,
    /// Run the operator: reconcile FederatedTrusts and AccessPolicies into the clouds.
    Run(Box<RunArgs>),
    /// Write the CustomResourceDefinitions, generated from the API types.
    Crdgen {
        /// Directory to write one YAML file per CRD into.
        #[arg(long, env = "PASSPORT_CRD_DIR", default_value = "config/crd")]
        out_dir: PathBuf,
        /// Print all CRDs as one multi-document YAML stream instead
        /// (`passport crdgen --stdout | kubectl apply -f -`).
        #[arg(long, conflicts_with = "out_dir")]
        stdout: bool,
    },
    /// Preview offline, with no cluster and no cloud, what the controllers would create for
    /// these manifests, and every refusal they would report (for GitOps pull requests).
    Plan {
        /// YAML files, or folders of them: FederatedTrusts, AccessPolicies, and the Namespaces
        /// and ServiceAccounts they use. Other kinds are skipped.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The cluster name the operator runs with (`passport run --cluster-name`).
        #[arg(long, env = "PASSPORT_CLUSTER_NAME")]
        cluster_name: String,
        /// The cluster's issuer, for trusts without `spec.issuer.url`.
        #[arg(long)]
        issuer: Option<String>,
        /// `text` for people, `json` for tools.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The AWS account's trust-policy quota.
        #[arg(long, env = "PASSPORT_AWS_TRUST_POLICY_QUOTA", default_value_t = 2048)]
        aws_trust_policy_quota: usize,
        /// Exit with status 2 when any resource would be refused.
        #[arg(long)]
        fail_on_refusal: bool,
    },
    /// Decide one pod admission offline, as the webhook would: prints the response
    /// AdmissionReview, or with --explain every step of the decision in plain words.
    Mutate {
        /// YAML files or folders with the AccessPolicies, FederatedTrusts, Namespaces and
        /// ServiceAccounts the webhook would look up.
        #[arg(long = "objects", required = true)]
        objects: Vec<PathBuf>,
        /// The AdmissionReview request (JSON), or `-` for standard input.
        #[arg(long)]
        review: PathBuf,
        /// Print the decision trace instead of the response.
        #[arg(long)]
        explain: bool,
        /// The cluster name the operator runs with (part of generated role names).
        #[arg(long, env = "PASSPORT_CLUSTER_NAME")]
        cluster_name: String,
        /// `AWS_ENDPOINT_URL_STS` written into pods.
        #[arg(long, env = "PASSPORT_POD_AWS_STS_ENDPOINT")]
        pod_aws_sts_endpoint: Option<String>,
        /// The admission time for schedule conditions (RFC 3339; default: now).
        #[arg(long)]
        now: Option<jiff::Timestamp>,
        #[command(flatten)]
        compat: passport_operator::webhook::CompatArgs,
    },
}

/// Output formats of `passport plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// What a command asks of `main`: success, or a failure that was already reported.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `plan --fail-on-refusal` found refusals.
    Refused,
}

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Version => {
            println!(
                "passport {} (API {}/{})",
                env!("CARGO_PKG_VERSION"),
                passport_crds::keys::GROUP,
                passport_crds::keys::VERSION
            );
            Ok(Outcome::Done)
        }
        Command::Run(args) => {
            init_logging();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let ran = runtime.block_on(passport_operator::run::run(*args));
            passport_operator::audit::flush();
            ran?;
            Ok(Outcome::Done)
        }
        Command::Crdgen { out_dir, stdout } => crdgen(&out_dir, stdout).map(|()| Outcome::Done),
        Command::Plan {
            files,
            cluster_name,
            issuer,
            output,
            aws_trust_policy_quota,
            fail_on_refusal,
        } => {
            let manifests = plan::Manifests::read(&files)?;
            let plan = plan::build(
                &manifests,
                &plan::Options {
                    cluster: cluster_name,
                    issuer,
                    trust_policy_quota: aws_trust_policy_quota,
                },
            );
            let mut out = std::io::stdout().lock();
            match output {
                Output::Text => write!(out, "{}", plan::render(&plan))?,
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?,
            }
            Ok(if fail_on_refusal && plan.refusals() > 0 {
                Outcome::Refused
            } else {
                Outcome::Done
            })
        }
        Command::Mutate {
            objects,
            review,
            explain,
            cluster_name,
            pod_aws_sts_endpoint,
            now,
            compat,
        } => {
            let manifests = plan::Manifests::read(&objects)?;
            let body = if review.as_os_str() == "-" {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut body)?;
                body
            } else {
                std::fs::read(&review).with_context(|| format!("reading {}", review.display()))?
            };
            let mut config = passport_webhook::Config::new(cluster_name);
            config.aws_sts_endpoint = pod_aws_sts_endpoint;
            config.compat = compat.config();
            let source = offline::ManifestBindings {
                manifests: &manifests,
                config: std::sync::Arc::new(config),
                now: now.unwrap_or_else(jiff::Timestamp::now),
            };
            let reviewed = passport_webhook::review(&body, &source)
                .context("the review is not a pod admission the webhook can decide")?;
            let mut out = std::io::stdout().lock();
            if explain {
                write!(out, "{}", offline::explain(&reviewed))?;
            } else {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&reviewed.to_wire()?)?
                )?;
            }
            Ok(Outcome::Done)
        }
    }
}

/// Logs as text on standard error (`RUST_LOG`, default `info`); audit lines as one JSON object
/// each on standard output, apart from the rest (`passport_operator::audit`).
fn init_logging() {
    use tracing_subscriber::{EnvFilter, Layer as _, fmt, layer::SubscriberExt as _};
    let logs = fmt::layer().with_writer(std::io::stderr).with_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn")),
    );
    let subscriber = tracing_subscriber::registry().with(logs);
    let _ = tracing::subscriber::set_global_default(subscriber);
    passport_operator::audit::to_stdout();
}

fn crdgen(out_dir: &Path, stdout: bool) -> anyhow::Result<()> {
    let files = passport_crds::crdgen::render().context("rendering the CRDs")?;
    if stdout {
        let mut out = std::io::stdout().lock();
        for (_, yaml) in files {
            writeln!(out, "---\n{}", yaml.trim_end())?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for (name, yaml) in files {
        let path = out_dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crdgen_writes_one_file_per_crd() {
        let dir = std::env::temp_dir().join(format!("passport-crdgen-{}", std::process::id()));
        let cli = Cli::try_parse_from(["passport", "crdgen", "--out-dir", dir.to_str().unwrap()])
            .unwrap();
        assert_eq!(run(cli).unwrap(), Outcome::Done);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "passport.dev_accesspolicies.yaml",
                "passport.dev_federatedtrusts.yaml"
            ]
        );
        let trust = std::fs::read_to_string(dir.join("passport.dev_federatedtrusts.yaml")).unwrap();
        assert!(trust.contains("kind: CustomResourceDefinition"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn run_refuses_a_cluster_name_that_is_not_a_dns_label() {
        let parse = |name: &str| {
            Cli::try_parse_from(["passport", "run", &format!("--cluster-name={name}")])
        };
        assert!(parse("prod-eu-1").is_ok());
        for bad in ["", "Prod", "-prod", "prod-", "prod_eu", &"a".repeat(64)] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("is not a cluster name"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_compat_flags_turn_the_eks_mode_off_and_set_its_defaults() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let decide = |flags: &[&str]| {
            let mut args = vec!["passport", "run", "--cluster-name", "prod"];
            args.extend_from_slice(flags);
            let Cli {
                command: Command::Run(run),
            } = Cli::try_parse_from(args).unwrap()
            else {
                panic!("not run")
            };
            let mut config = passport_webhook::Config::new("prod");
            config.compat = run.webhook.compat.config();
            let objects = format!("{root}/operator/tests/fixtures/compat/objects.yaml");
            let manifests = plan::Manifests::read(&[objects.into()]).unwrap();
            let source = offline::ManifestBindings {
                manifests: &manifests,
                config: std::sync::Arc::new(config),
                now: jiff::Timestamp::now(),
            };
            let body =
                std::fs::read(format!("{root}/webhook/tests/fixtures/compat-eks.json")).unwrap();
            let reviewed = passport_webhook::review(&body, &source).unwrap();
            serde_json::to_string(&reviewed.to_wire().unwrap()).unwrap()
        };
        let patch = |wire: &str| -> String {
            use base64::Engine as _;
            let value: serde_json::Value = serde_json::from_str(wire).unwrap();
            value["response"]["patch"]
                .as_str()
                .map(|p| {
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(p).unwrap())
                        .unwrap()
                })
                .unwrap_or_default()
        };
        let on = patch(&decide(&[]));
        assert!(on.contains("arn:aws:iam::111122223333:role/legacy"), "{on}");
        assert!(on.contains("sts.amazonaws.com"), "{on}");
        let tuned = patch(&decide(&[
            "--eks-token-audience",
            "sts.example.internal",
            "--eks-aws-default-region",
            "eu-west-1",
        ]));
        assert!(tuned.contains("sts.example.internal"), "{tuned}");
        assert!(tuned.contains("eu-west-1"), "{tuned}");
        let off = patch(&decide(&["--compat-eks=false"]));
        assert!(!off.contains("role/legacy"), "{off}");
        assert!(
            Cli::try_parse_from([
                "passport",
                "run",
                "--cluster-name",
                "prod",
                "--eks-token-expiration",
                "60"
            ])
            .is_err(),
            "under the EKS webhook's 600 s minimum"
        );
    }

    #[test]
    fn plan_fails_on_refusals_only_when_asked() {
        let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples");
        let plan = |extra: &[&str]| {
            let mut args = vec!["passport", "plan", "-f", samples, "--cluster-name", "prod"];
            args.extend_from_slice(extra);
            run(Cli::try_parse_from(args).unwrap()).unwrap()
        };
        // Without --issuer the trusts lacking spec.issuer are refused.
        assert_eq!(plan(&["--fail-on-refusal", "-o", "json"]), Outcome::Refused);
        assert_eq!(plan(&["-o", "json"]), Outcome::Done);
        assert!(Cli::try_parse_from(["passport", "plan", "--cluster-name", "x"]).is_err());
    }

    #[test]
    fn mutate_decides_a_review_offline_and_refuses_what_is_not_a_pod() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mutate = |review: &str, explain: bool| {
            let samples = format!("{root}/config/samples");
            let namespaces = format!("{root}/operator/tests/fixtures/plan/namespaces.yaml");
            let mut args = vec![
                "passport".to_owned(),
                "mutate".to_owned(),
                "--objects".to_owned(),
                samples,
                "--objects".to_owned(),
                namespaces,
                "--review".to_owned(),
                review.to_owned(),
                "--cluster-name".to_owned(),
                "prod".to_owned(),
            ];
            if explain {
                args.push("--explain".to_owned());
            }
            run(Cli::try_parse_from(args).unwrap())
        };
        let pod = format!("{root}/operator/tests/fixtures/mutate/payments-api.json");
        assert_eq!(mutate(&pod, false).unwrap(), Outcome::Done);
        assert_eq!(mutate(&pod, true).unwrap(), Outcome::Done);
        let not_a_pod = format!("{root}/webhook/tests/fixtures/not-a-pod.json");
        let error = mutate(&not_a_pod, false).unwrap_err();
        assert!(format!("{error:#}").contains("not a v1 Pod"), "{error:#}");
        assert!(mutate("/nonexistent/review.json", false).is_err());
    }

    #[test]
    fn subcommands_that_do_not_exist_are_refused() {
        assert!(Cli::try_parse_from(["passport", "frobnicate"]).is_err());
        assert!(Cli::try_parse_from(["passport", "crdgen", "--stdout", "--out-dir", "x"]).is_err());
    }
}
