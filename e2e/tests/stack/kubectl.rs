//! The installed `kubectl` against the Kubernetes API emulator, through the kubeconfig it
//! writes: apply (client- and server-side), get -o yaml, printer columns of a CRD kind, delete.

use std::path::PathBuf;

use anyhow::Context as _;
use passport_e2e::apiserver::{ApiServer, Config};

/// `kubectl` from PATH or /usr/bin; CI machines have it, so its absence is a failure.
fn kubectl_path() -> anyhow::Result<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file());
    from_path
        .or_else(|| Some(PathBuf::from("/usr/bin/kubectl")).filter(|p| p.is_file()))
        .context(
            "kubectl is not installed (not on PATH nor at /usr/bin/kubectl); these tests need it",
        )
}

struct Kubectl {
    server: ApiServer,
    bin: PathBuf,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    async fn start() -> anyhow::Result<Self> {
        let bin = kubectl_path()?;
        passport_e2e::tls::install_crypto_provider();
        let server = ApiServer::start(Config::default()).await?;
        Ok(Self { server, bin })
    }

    /// Runs kubectl with `args`, feeding `stdin` when given.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(self.server.kubeconfig_path())
            .args(args)
            // A fresh cache per server: discovery is cached by host:port.
            .env("KUBECACHEDIR", self.server.dir().join("kubectl-cache"))
            .env("HOME", self.server.dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().context("running kubectl")?;
        // Dropping the pipe closes kubectl's stdin.
        if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
            pipe.write_all(input.as_bytes()).await?;
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .context("kubectl timed out")??;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs kubectl and fails with its output unless it succeeds.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let out = self.run(args, stdin).await?;
        anyhow::ensure!(
            out.ok,
            "kubectl {args:?} failed\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
        Ok(out.stdout)
    }
}

const CONFIG_MAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: demo
data:
  region: eu-west-1
";

#[tokio::test]
async fn kubectl_applies_gets_and_deletes_a_config_map() -> anyhow::Result<()> {
    let k = Kubectl::start().await?;
    let created = k.ok(&["apply", "-f", "-"], Some(CONFIG_MAP)).await?;
    assert_eq!(created.trim(), "configmap/settings created");
    let changed = CONFIG_MAP.replace("eu-west-1", "us-east-2");
    let configured = k.ok(&["apply", "-f", "-"], Some(&changed)).await?;
    assert_eq!(configured.trim(), "configmap/settings configured");
    let unchanged = k.ok(&["apply", "-f", "-"], Some(&changed)).await?;
    assert_eq!(unchanged.trim(), "configmap/settings unchanged");

    let yaml = k
        .ok(&["get", "configmap", "settings", "-o", "yaml"], None)
        .await?;
    let obj: serde_json::Value = serde_yaml::from_str(&yaml)?;
    assert_eq!(obj["data"]["region"], "us-east-2");
    assert_eq!(obj["metadata"]["labels"]["app"], "demo");
    assert!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    let listed = k.ok(&["get", "cm", "-l", "app=demo"], None).await?;
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert!(
        listed
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("settings "))
    );

    let ssa = CONFIG_MAP.replace("eu-west-1", "ap-south-1");
    let applied = k
        .ok(&["apply", "--server-side", "-f", "-"], Some(&ssa))
        .await?;
    assert_eq!(applied.trim(), "configmap/settings serverside-applied");

    let deleted = k.ok(&["delete", "configmap", "settings"], None).await?;
    assert_eq!(deleted.trim(), "configmap \"settings\" deleted");
    let missing = k.run(&["get", "configmap", "settings"], None).await?;
    assert!(!missing.ok);
    assert_eq!(
        missing.stderr.trim(),
        "Error from server (NotFound): configmaps \"settings\" not found"
    );
    Ok(())
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.stack.test
spec:
  group: stack.test
  scope: Namespaced
  names: { plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd], categories: [all] }
  versions:
    - name: v1
      served: true
      storage: true
      subresources: { status: {} }
      additionalPrinterColumns:
        - { name: Size, type: integer, jsonPath: .spec.size }
        - { name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status' }
        - { name: Age, type: date, jsonPath: .metadata.creationTimestamp }
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: { type: integer }
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#;

const GADGET: &str = "\
apiVersion: stack.test/v1
kind: Gadget
metadata:
  name: g1
spec:
  size: 3
";

#[tokio::test]
async fn kubectl_serves_crd_kinds_with_printer_columns() -> anyhow::Result<()> {
    let k = Kubectl::start().await?;
    let crd = k.ok(&["apply", "-f", "-"], Some(CRD)).await?;
    assert_eq!(
        crd.trim(),
        "customresourcedefinition.apiextensions.k8s.io/gadgets.stack.test created"
    );
    let created = k.ok(&["apply", "-f", "-"], Some(GADGET)).await?;
    assert_eq!(created.trim(), "gadget.stack.test/g1 created");
    let configured = k
        .ok(
            &["apply", "-f", "-"],
            Some(&GADGET.replace("size: 3", "size: 5")),
        )
        .await?;
    assert_eq!(configured.trim(), "gadget.stack.test/g1 configured");

    let table = k.ok(&["get", "gd"], None).await?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SIZE", "READY", "AGE"]);
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(..2), Some(&["g1", "5"][..]), "{table}");

    let yaml = k.ok(&["get", "gadget", "g1", "-o", "yaml"], None).await?;
    let obj: serde_json::Value = serde_yaml::from_str(&yaml)?;
    assert_eq!(obj["spec"]["size"], 5);
    assert_eq!(obj["metadata"]["generation"], 2);

    // kubectl asks for strict field validation; with --validate=false unknown fields are pruned.
    let typo = GADGET.replace("size: 3", "size: 3\n  colour: red");
    let strict = k.run(&["apply", "-f", "-"], Some(&typo)).await?;
    assert!(!strict.ok);
    assert!(
        strict
            .stderr
            .contains("strict decoding error: unknown field \"spec.colour\""),
        "{}",
        strict.stderr
    );
    k.ok(&["apply", "--validate=false", "-f", "-"], Some(&typo))
        .await?;
    let yaml = k.ok(&["get", "gadget", "g1", "-o", "yaml"], None).await?;
    let pruned: serde_json::Value = serde_yaml::from_str(&yaml)?;
    assert_eq!(pruned["spec"], serde_json::json!({ "size": 3 }), "{yaml}");

    let deleted = k.ok(&["delete", "-f", "-"], Some(GADGET)).await?;
    assert_eq!(deleted.trim(), "gadget.stack.test \"g1\" deleted");
    let empty = k.run(&["get", "gadgets"], None).await?;
    assert!(empty.ok);
    assert_eq!(
        empty.stderr.trim(),
        "No resources found in default namespace."
    );
    Ok(())
}

fn repo_path(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
        .display()
        .to_string()
}

#[tokio::test]
async fn kubectl_applies_the_passport_crds_and_samples() -> anyhow::Result<()> {
    let k = Kubectl::start().await?;
    for ns in ["analytics", "checkout", "jobs", "payments"] {
        let doc = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        k.ok(&["apply", "-f", "-"], Some(&doc)).await?;
    }
    // The exact commands a user runs: a client-side dry run, then the real apply (`-k`:
    // config/crd is also a kustomization, which `config/default` builds on).
    let dry_run = k
        .ok(
            &["apply", "--dry-run=client", "-k", &repo_path("config/crd")],
            None,
        )
        .await?;
    assert_eq!(dry_run.lines().count(), 2, "{dry_run}");
    assert!(
        dry_run.lines().all(|l| l.ends_with("(dry run)")),
        "{dry_run}"
    );
    let crds = k
        .ok(&["apply", "-k", &repo_path("config/crd")], None)
        .await?;
    assert_eq!(crds.lines().count(), 2, "{crds}");
    let waited = k
        .ok(
            &[
                "wait",
                "--for",
                "condition=Established",
                "--timeout=10s",
                "crd/federatedtrusts.passport.dev",
                "crd/accesspolicies.passport.dev",
            ],
            None,
        )
        .await?;
    assert_eq!(waited.lines().count(), 2, "{waited}");
    let samples = k
        .ok(&["apply", "-k", &repo_path("config/samples")], None)
        .await?;
    assert!(
        samples.lines().count() >= 11 && samples.lines().all(|l| l.ends_with(" created")),
        "{samples}"
    );

    let table = k.ok(&["get", "ft"], None).await?;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("READY"),
        "{table}"
    );
    assert!(
        !header.contains("REASON"),
        "priority 1 columns only show with -o wide"
    );
    let wide = k.ok(&["get", "ft", "-o", "wide"], None).await?;
    assert!(
        wide.lines().next().unwrap_or_default().contains("REASON"),
        "{wide}"
    );

    // The CRDs' category lists both kinds across namespaces.
    let category = k.ok(&["get", "passport", "-A", "-o", "name"], None).await?;
    assert!(category.lines().count() >= 11, "{category}");
    assert!(
        category.contains("accesspolicy.passport.dev/")
            && category.contains("federatedtrust.passport.dev/"),
        "{category}"
    );

    // kubectl explain reads the published schema.
    let explained = k.ok(&["explain", "accesspolicy.spec.token"], None).await?;
    assert!(
        explained.contains("KIND:       AccessPolicy"),
        "{explained}"
    );
    assert!(explained.contains("expirationSeconds"), "{explained}");

    // The CRD's CEL rules refuse a bad object with the real message shape.
    let refused = k
        .run(
            &[
                "apply",
                "-f",
                &repo_path("e2e/tests/fixtures/invalid/missing-cloud.yaml"),
            ],
            None,
        )
        .await?;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(
            "The AccessPolicy \"nothing\" is invalid: spec: Invalid value: set one cloud block"
        ),
        "{}",
        refused.stderr
    );
    Ok(())
}

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: app
      image: busybox
";

/// An Event about the pod; describe matches events by the pod's uid.
const EVENT: &str = "\
apiVersion: v1
kind: Event
metadata:
  name: web.passport
involvedObject:
  apiVersion: v1
  kind: Pod
  name: web
  namespace: default
  uid: UID
reason: CredentialsInjected
message: injected aws credentials
type: Normal
";

#[tokio::test]
async fn kubectl_describes_a_pod_with_its_events() -> anyhow::Result<()> {
    let k = Kubectl::start().await?;
    k.ok(&["apply", "-f", "-"], Some(POD)).await?;
    let uid = k
        .ok(
            &["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"],
            None,
        )
        .await?;
    k.ok(
        &["apply", "-f", "-"],
        Some(&EVENT.replace("UID", uid.trim())),
    )
    .await?;
    let pods = k.ok(&["get", "pods"], None).await?;
    let header: Vec<&str> = pods
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = pods
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..4),
        Some(&["web", "0/1", "Pending", "0"][..]),
        "{pods}"
    );
    let described = k.ok(&["describe", "pod", "web"], None).await?;
    assert!(
        described.contains("Service Account:  default"),
        "{described}"
    );
    assert!(described.contains("kube-api-access-"), "{described}");
    assert!(
        described.contains("CredentialsInjected") && described.contains("injected aws credentials"),
        "{described}"
    );
    let table = k.ok(&["get", "events"], None).await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    assert!(
        table.contains("pod/web") && table.contains("injected aws credentials"),
        "{table}"
    );
    let events = k
        .ok(
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=web",
                "-o",
                "name",
            ],
            None,
        )
        .await?;
    assert_eq!(events.trim(), "event/web.passport");
    Ok(())
}

#[tokio::test]
async fn kubectl_get_watch_prints_new_rows() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    let k = Kubectl::start().await?;
    let mut child = tokio::process::Command::new(&k.bin)
        .arg("--kubeconfig")
        .arg(k.server.kubeconfig_path())
        .args(["get", "configmaps", "--watch"])
        .env("KUBECACHEDIR", k.server.dir().join("kubectl-cache"))
        .env("HOME", k.server.dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .context("no header from kubectl get --watch")??
        .unwrap_or_default();
    assert!(first.starts_with("NAME"), "{first}");
    k.ok(&["apply", "-f", "-"], Some(CONFIG_MAP)).await?;
    let seen = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("settings ") {
                return Ok::<_, anyhow::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .context("the new ConfigMap never showed up")??;
    assert!(seen);
    child.kill().await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_typed_create_commands_work() -> anyhow::Result<()> {
    let k = Kubectl::start().await?;
    let ns = k.ok(&["create", "namespace", "typed"], None).await?;
    assert_eq!(ns.trim(), "namespace/typed created");
    let in_ns = |args: &[&'static str]| {
        let mut v = args.to_vec();
        v.extend(["-n", "typed"]);
        v
    };
    k.ok(
        &in_ns(&["create", "configmap", "cm", "--from-literal=a=b"]),
        None,
    )
    .await?;
    k.ok(
        &in_ns(&["create", "secret", "generic", "s", "--from-literal=x=yy"]),
        None,
    )
    .await?;
    k.ok(&in_ns(&["create", "serviceaccount", "app"]), None)
        .await?;
    let cm = k
        .ok(
            &in_ns(&["get", "configmap", "cm", "-o", "jsonpath={.data.a}"]),
            None,
        )
        .await?;
    assert_eq!(cm, "b");
    let secret = k
        .ok(
            &in_ns(&["get", "secret", "s", "-o", "jsonpath={.data.x}"]),
            None,
        )
        .await?;
    assert_eq!(secret, "eXk=", "base64 of yy");

    let token = k
        .ok(
            &in_ns(&[
                "create",
                "token",
                "app",
                "--audience=sts.amazonaws.com",
                "--duration=1h",
            ]),
            None,
        )
        .await?;
    let claims = passport_e2e::oidc::peek_claims(token.trim())?;
    assert_eq!(claims["sub"], "system:serviceaccount:typed:app");
    assert_eq!(claims["aud"], serde_json::json!(["sts.amazonaws.com"]));
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(e, i)| e - i),
        Some(3600)
    );
    Ok(())
}
