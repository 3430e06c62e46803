"""The Helm chart (config/helm/passport) against the kustomize install it mirrors.

The chart is rendered by Helm's own engine (helm-python-sdk embeds Helm's Go library as a native
library: the same template functions, values coalescing and values.schema.json validation as
`helm template`), and compared with `kubectl kustomize` as parsed objects, sorted by kind,
namespace and name. The chart's CRDs come from its crds/ folder, as `helm install` (or
`helm template --include-crds`) applies them. Nothing is normalised: the chart names the params
ConfigMap with kustomize's own hash of its data.

Run: `make pytest`, or `.venv/bin/python -m pytest -q config/helm` after `e2e/scripts/venv.sh`.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "config" / "helm" / "passport"
NAMESPACE = "passport-system"

Obj = dict[str, Any]


def key(obj: Obj) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def parse(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[Obj]:
    """The objects `helm install passport config/helm/passport -n <namespace>` would create."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="passport", namespace=namespace)
        crds = [crd["data"] for crd in chart.crds]
    objects = [
        obj
        for path, text in manifests.items()
        # NOTES.txt is printed, never applied (`helm template` leaves it out too).
        if not path.endswith("NOTES.txt")
        for obj in parse(text)
    ]
    objects += [obj for text in crds for obj in parse(text)]
    return sorted(objects, key=key)


def kustomize(path: Path) -> list[Obj]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return sorted(parse(out), key=key)


def dump(obj: Obj | None) -> list[str]:
    return yaml.safe_dump(obj, sort_keys=True).splitlines() if obj else []


def assert_same_objects(chart: list[Obj], expected: list[Obj]) -> None:
    """Equal as parsed objects; on failure, a YAML diff of the objects that differ."""
    if chart == expected:
        return
    got, want = {key(o): o for o in chart}, {key(o): o for o in expected}
    lines: list[str] = []
    for k in sorted(got.keys() | want.keys()):
        a, b = got.get(k), want.get(k)
        if a != b:
            name = "/".join(k)
            lines += difflib.unified_diff(
                dump(b), dump(a), f"kustomize {name}", f"chart {name}", lineterm=""
            )
    pytest.fail("the chart and kustomize render different objects:\n" + "\n".join(lines))


def overlay(tmp_path: Path, base: str, params: list[str]) -> Path:
    """A kustomize overlay of config/<base> that sets params.env variables, the way a user
    edits params.env: kustomize then hashes the new data into the ConfigMap's name itself."""
    rel = os.path.relpath(ROOT / "config" / base, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": NAMESPACE,
                "resources": [rel],
                "configMapGenerator": [
                    {"name": "passport-params", "behavior": "merge", "literals": params}
                ],
            }
        )
    )
    return tmp_path


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def container(objects: list[Obj]) -> Obj:
    return find(objects, "Deployment", "passport")["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render()


# Same objects as the kustomize install and its overlays.


def test_default_values_render_config_default(default: list[Obj]) -> None:
    assert_same_objects(default, kustomize(ROOT / "config" / "default"))


def test_verify_enabled_renders_config_verify() -> None:
    assert_same_objects(
        render({"verify": {"enabled": True}}), kustomize(ROOT / "config" / "verify")
    )


def test_cert_manager_enabled_renders_config_certmanager() -> None:
    assert_same_objects(
        render({"certManager": {"enabled": True}}), kustomize(ROOT / "config" / "certmanager")
    )


def test_params_render_as_kustomize_renders_an_edited_params_env(tmp_path: Path) -> None:
    chart = render(
        {
            "clusterName": "prod-eu",
            "resyncSeconds": 300,
            "logLevel": "info,passport=debug",
            "verifyAll": True,
            "verify": {"enabled": True},
        }
    )
    expected = kustomize(
        overlay(
            tmp_path,
            "verify",
            [
                "PASSPORT_CLUSTER_NAME=prod-eu",
                "PASSPORT_RESYNC_SECONDS=300",
                "RUST_LOG=info,passport=debug",
                "PASSPORT_VERIFY_ALL=true",
            ],
        )
    )
    assert_same_objects(chart, expected)


def test_chart_crds_are_byte_copies_of_the_generated_config_crd() -> None:
    generated = {p.name: p.read_bytes() for p in (ROOT / "config" / "crd").glob("*.yaml")}
    generated.pop("kustomization.yaml")
    copies = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert copies.keys() == generated.keys(), "config/helm/passport/crds/ lists other files"
    stale = [name for name in generated if copies[name] != generated[name]]
    assert not stale, (
        f"config/helm/passport/crds/ differs from config/crd in {stale}: after `make manifests`, "
        "run `cp config/crd/passport.dev_*.yaml config/helm/passport/crds/`"
    )


# Each value lands where it should, and nowhere else: the render equals the default render with
# exactly the edit the case names.

Edit = Callable[[list[Obj]], None]
RENAMED = "<renamed by its data>"


def pod(objects: list[Obj]) -> Obj:
    return find(objects, "Deployment", "passport")["spec"]["template"]


def params(**data: str) -> Edit:
    """New settings in the ConfigMap, which renames it (and its envFrom reference) so that the
    pods roll; the test checks the new name apart, so the edit only marks it."""

    def edit(objects: list[Obj]) -> None:
        cm = next(o for o in objects if o["kind"] == "ConfigMap")
        cm["data"].update(data)
        cm["metadata"]["name"] = RENAMED
        container(objects)["envFrom"][0]["configMapRef"]["name"] = RENAMED

    return edit


def locate(objects: list[Obj], path: str) -> tuple[Any, str | int]:
    """The parent node and last key of `Kind/name:dotted.path` (list items by index)."""
    target, dotted = path.split(":")
    node: Any = find(objects, *target.split("/"))
    *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    for p in parents:
        node = node[p]
    return node, last


def setting(path: str, value: Any) -> Edit:
    def edit(objects: list[Obj]) -> None:
        node, last = locate(objects, path)
        node[last] = value

    return edit


def dropping(path: str) -> Edit:
    def edit(objects: list[Obj]) -> None:
        node, last = locate(objects, path)
        del node[last]

    return edit


def removing(kind: str, name: str) -> Edit:
    return lambda objects: objects.remove(find(objects, kind, name))


def steps(*edits: Edit) -> Edit:
    def edit(objects: list[Obj]) -> None:
        for e in edits:
            e(objects)

    return edit


def nothing(objects: list[Obj]) -> None:
    pass


POD = "Deployment/passport:spec.template.spec"
CONTAINER = POD + ".containers.0"
WEBHOOK = "MutatingWebhookConfiguration/passport:webhooks.0"
EXTRA_ENV = [
    {"name": "AWS_REGION", "value": "eu-west-1"},
    {"name": "AZURE_TENANT_ID", "value": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
]
DEFAULT_ENV = [
    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "PASSPORT_HEALTH_ADDR", "value": "0.0.0.0:8081"},
    {"name": "PASSPORT_WEBHOOK_ADDR", "value": "0.0.0.0:9443"},
]
AZURE_TOKEN = {
    "name": "azure-token",
    "projected": {
        "sources": [
            {
                "serviceAccountToken": {
                    "audience": "api://AzureADTokenExchange",
                    "expirationSeconds": 3600,
                    "path": "azure-identity-token",
                }
            }
        ]
    },
}
AZURE_MOUNT = {
    "name": "azure-token",
    "mountPath": "/var/run/secrets/azure/tokens",
    "readOnly": True,
}
IRSA = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/passport-operator"}
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
NODE_SELECTOR = {"kubernetes.io/os": "linux"}
TOLERATIONS = [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}]
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
            ]
        }
    }
}
POD_LABELS = {
    "app.kubernetes.io/component": "operator",
    "app.kubernetes.io/name": "passport",
    "app.kubernetes.io/part-of": "passport",
}

CASES: dict[str, tuple[dict[str, Any], Edit]] = {
    "clusterName": ({"clusterName": "prod-eu"}, params(PASSPORT_CLUSTER_NAME="prod-eu")),
    # `--set` types digits as a number.
    "a clusterName of digits": ({"clusterName": 42}, params(PASSPORT_CLUSTER_NAME="42")),
    # Values files give Helm numbers as floats: this one must not become "1.2096e+06".
    "resyncSeconds": (
        {"resyncSeconds": 1209600},
        params(PASSPORT_RESYNC_SECONDS="1209600"),
    ),
    "logLevel": ({"logLevel": "debug"}, params(RUST_LOG="debug")),
    "webhook": (
        {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5}},
        steps(
            setting(WEBHOOK + ".failurePolicy", "Ignore"),
            setting(WEBHOOK + ".timeoutSeconds", 5),
        ),
    ),
    "replicas": ({"replicas": 3}, setting("Deployment/passport:spec.replicas", 3)),
    "image": (
        {
            "image": {
                "repository": "registry.example.com/passport",
                "tag": "dev",
                "pullPolicy": "Always",
            }
        },
        steps(
            setting(CONTAINER + ".image", "registry.example.com/passport:dev"),
            setting(CONTAINER + ".imagePullPolicy", "Always"),
        ),
    ),
    "an image tag of digits": (
        {"image": {"tag": 7}},
        setting(CONTAINER + ".image", "ghcr.io/passport-dev/passport:7"),
    ),
    "resources": ({"resources": RESOURCES}, setting(CONTAINER + ".resources", RESOURCES)),
    "an existing priority class": (
        {"priorityClass": {"create": False, "name": "system-cluster-critical"}},
        steps(
            removing("PriorityClass", "passport-critical"),
            setting(POD + ".priorityClassName", "system-cluster-critical"),
        ),
    ),
    "no priority class": (
        {"priorityClass": {"create": False, "name": ""}},
        steps(removing("PriorityClass", "passport-critical"), dropping(POD + ".priorityClassName")),
    ),
    "podDisruptionBudget.minAvailable": (
        {"podDisruptionBudget": {"minAvailable": "50%"}},
        setting("PodDisruptionBudget/passport:spec.minAvailable", "50%"),
    ),
    "no podDisruptionBudget": (
        {"replicas": 1, "podDisruptionBudget": {"enabled": False}},
        steps(
            removing("PodDisruptionBudget", "passport"),
            setting("Deployment/passport:spec.replicas", 1),
        ),
    ),
    "serviceAccount.annotations": (
        {"serviceAccount": {"annotations": IRSA}},
        setting("ServiceAccount/passport:metadata.annotations", IRSA),
    ),
    "podLabels": (
        {"podLabels": {"azure.workload.identity/use": "true"}},
        setting(
            "Deployment/passport:spec.template.metadata.labels",
            {**POD_LABELS, "azure.workload.identity/use": "true"},
        ),
    ),
    # The webhook's objectSelector and the Deployment's selector rely on these labels.
    "podLabels cannot override Passport's own": (
        {"podLabels": {"app.kubernetes.io/part-of": "other", "app.kubernetes.io/component": "x"}},
        nothing,
    ),
    "extraEnv": ({"extraEnv": EXTRA_ENV}, setting(CONTAINER + ".env", DEFAULT_ENV + EXTRA_ENV)),
    "extraVolumes and extraVolumeMounts": (
        {"extraVolumes": [AZURE_TOKEN], "extraVolumeMounts": [AZURE_MOUNT]},
        steps(
            setting(POD + ".volumes", [AZURE_TOKEN]),
            setting(CONTAINER + ".volumeMounts", [AZURE_MOUNT]),
        ),
    ),
    "scheduling": (
        {"nodeSelector": NODE_SELECTOR, "tolerations": TOLERATIONS, "affinity": AFFINITY},
        steps(
            setting(POD + ".nodeSelector", NODE_SELECTOR),
            setting(POD + ".tolerations", TOLERATIONS),
            setting(POD + ".affinity", AFFINITY),
        ),
    ),
    "a namespace managed elsewhere": (
        {"namespace": {"create": False}},
        removing("Namespace", NAMESPACE),
    ),
}


def params_name(objects: list[Obj]) -> str:
    name = next(o for o in objects if o["kind"] == "ConfigMap")["metadata"]["name"]
    assert container(objects)["envFrom"][0]["configMapRef"]["name"] == name
    return name


@pytest.mark.parametrize("values,edit", CASES.values(), ids=CASES.keys())
def test_a_value_changes_only_what_it_names(
    default: list[Obj], values: dict[str, Any], edit: Edit
) -> None:
    chart = render(values)
    expected = copy.deepcopy(default)
    edit(expected)
    if params_name(expected) == RENAMED:
        renamed = params_name(chart)
        assert renamed != params_name(default), "new settings must rename the ConfigMap"
        assert re.fullmatch(r"passport-params-[a-z0-9]{10}", renamed)
        params()(chart)
    assert_same_objects(sorted(chart, key=key), sorted(expected, key=key))


def test_extra_env_and_volumes_come_after_cert_managers() -> None:
    objects = render(
        {
            "certManager": {"enabled": True},
            "extraEnv": EXTRA_ENV,
            "extraVolumes": [AZURE_TOKEN],
            "extraVolumeMounts": [AZURE_MOUNT],
        }
    )
    c = container(objects)
    assert [e["name"] for e in c["env"]] == [
        "PASSPORT_WEBHOOK_TLS_DIR",
        "PASSPORT_WEBHOOK_CONFIGURATION",
        "POD_NAMESPACE",
        "POD_NAME",
        "PASSPORT_HEALTH_ADDR",
        "PASSPORT_WEBHOOK_ADDR",
        "AWS_REGION",
        "AZURE_TENANT_ID",
    ]
    assert [m["name"] for m in c["volumeMounts"]] == ["webhook-tls", "azure-token"]
    assert [v["name"] for v in pod(objects)["spec"]["volumes"]] == [
        "webhook-tls",
        "azure-token",
    ]


def test_another_release_namespace_moves_every_reference_to_it() -> None:
    objects = render({"certManager": {"enabled": True}}, namespace="identity")
    text = yaml.safe_dump_all(objects)
    assert NAMESPACE not in text
    assert find(objects, "Namespace", "identity")
    webhook = find(objects, "MutatingWebhookConfiguration", "passport")
    assert webhook["webhooks"][0]["clientConfig"]["service"]["namespace"] == "identity"
    assert webhook["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "identity/passport-webhook"
    }
    assert find(objects, "Certificate", "passport-webhook")["spec"]["dnsNames"] == [
        "passport-webhook.identity.svc",
        "passport-webhook.identity.svc.cluster.local",
    ]
    for o in objects:
        for subject in o.get("subjects", []):
            assert subject["namespace"] == "identity", key(o)


# Refusals.


REFUSED = [
    ({"webhook": {"failurePolicy": "Never"}}, "/webhook/failurePolicy"),
    ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
    ({"clusterName": "Prod_EU"}, "/clusterName"),
    ({"clustername": "prod"}, "'clustername' not allowed"),
    (
        {"podLabels": {"azure.workload.identity/use": True}},
        "/podLabels/azure.workload.identity~1use",
    ),
    ({"extraEnv": [{"value": "eu-west-1"}]}, "/extraEnv/0"),
    ({"verifyAll": True}, "verifyAll needs verify.enabled=true"),
    (
        {"priorityClass": {"create": True, "name": ""}},
        "priorityClass.create needs priorityClass.name",
    ),
]


@pytest.mark.parametrize("values,message", REFUSED, ids=[m for _, m in REFUSED])
def test_bad_values_are_refused_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError), match=re.escape(message)):
        render(values)


@pytest.mark.parametrize("namespace", ["default", "kube-system"])
def test_the_chart_never_takes_over_a_system_namespace(namespace: str) -> None:
    with pytest.raises(helm.HelmRenderError, match="namespace.create=false"):
        render(namespace=namespace)
    assert not [
        o for o in render({"namespace": {"create": False}}, namespace) if o["kind"] == "Namespace"
    ]


# The chart as a chart.


def test_helm_lint_finds_nothing_to_fix() -> None:
    report = helm.lint(CHART, namespace=NAMESPACE, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values a user sets; `resources` is one value, not three."""
    out = []
    for k, v in values.items():
        path = prefix + k
        if isinstance(v, dict) and v and k != "resources":
            out += leaves(v, path + ".")
        else:
            out.append(path)
    return out


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [p for p in leaves(values) if f"`{p}`" not in readme]
    assert not missing, f"config/helm/passport/README.md does not document {missing}"
