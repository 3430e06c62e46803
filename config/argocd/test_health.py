"""The Argo CD health checks, run by a real Lua 5.1 interpreter (lupa's, the dialect of
Argo CD's gopher-lua) against sample objects in testdata/.

    .venv/bin/python -m pytest -q config/argocd          (make pytest)
    .venv/bin/python config/argocd/test_health.py write  rewrites argocd-cm-patch.yaml from the
                                                         .lua files after a change to them
"""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from lupa import lua51

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TESTDATA = HERE / "testdata"
PATCH = HERE / "argocd-cm-patch.yaml"
SCRIPTS = {
    "FederatedTrust": HERE / "health-federatedtrust.lua",
    "AccessPolicy": HERE / "health-accesspolicy.lua",
}


def key(kind):
    return f"resource.customizations.health.passport.dev_{kind}"


def evaluate(kind, obj):
    """Runs the kind's script the way Argo CD does: a fresh state, `obj` a global holding the
    object as decoded from JSON, the returned table read for status and message. Only the
    libraries Argo CD's sandbox offers are left (no io, no file loading)."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    env = lua.globals()
    for unsafe in ("io", "os", "dofile", "loadfile", "require", "package", "debug"):
        env[unsafe] = None
    # Through JSON, as Argo CD sees the object: timestamps are strings, numbers are numbers.
    plain = json.loads(json.dumps(obj, default=str))
    env.obj = lua.table_from(plain, recursive=True)
    result = lua.execute(SCRIPTS[kind].read_text())
    return result["status"], result["message"]


def fixture(name):
    return yaml.safe_load((TESTDATA / name).read_text())


# What each sample must give; the samples' comments say why. Messages are exact.
EXPECTED = {
    "accesspolicy-no-status.yaml": (
        "Progressing",
        "Waiting for Passport to report conditions",
    ),
    "accesspolicy-empty-conditions.yaml": (
        "Progressing",
        "Waiting for Passport to report conditions",
    ),
    "accesspolicy-stale-generation.yaml": (
        "Progressing",
        "Waiting for Passport to reconcile generation 3 (status is of 2)",
    ),
    "accesspolicy-stale-ready-condition.yaml": (
        "Progressing",
        "Waiting for Passport to reconcile generation 3 (status is of 2)",
    ),
    "accesspolicy-no-ready-condition.yaml": (
        "Progressing",
        "Waiting for the Ready condition",
    ),
    "accesspolicy-ready-unknown.yaml": ("Progressing", "first reconcile under way"),
    "accesspolicy-ready.yaml": (
        "Healthy",
        "the cloud grants the listed service accounts, and a token exchange worked",
    ),
    "accesspolicy-throttled.yaml": ("Progressing", "Throttled: Rate exceeded"),
    "accesspolicy-cloud-unavailable.yaml": (
        "Progressing",
        "CloudUnavailable: request to ARM failed: connection reset",
    ),
    "accesspolicy-conflict.yaml": (
        "Progressing",
        "Conflict: There were concurrent policy changes.",
    ),
    "accesspolicy-verification-pending.yaml": (
        "Progressing",
        "Waiting for the token exchange to work (new credentials can take minutes): "
        "CloudRejected: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity",
    ),
    "accesspolicy-cloud-rejected.yaml": (
        "Degraded",
        "CloudRejected: role arn:aws:iam::123456789012:role/apps/billing-exporter does not "
        "exist: create it, or fix roleArn",
    ),
    "accesspolicy-namespace-not-allowed.yaml": (
        "Degraded",
        "NamespaceNotAllowed: FederatedTrust vault does not admit namespace jobs: its "
        "namespaceSelector selects none",
    ),
    "accesspolicy-access-denied.yaml": (
        "Degraded",
        "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/passport/op is not "
        "authorized to perform: iam:CreateRole",
    ),
    "accesspolicy-missing-message.yaml": (
        "Degraded",
        "IdentityNotAllowed: role arn:aws:iam::123456789012:role/admin is not in "
        "allowedRoleArns of FederatedTrust aws-prod",
    ),
    "accesspolicy-no-message-at-all.yaml": ("Degraded", "TrustNotFound: no message"),
    "accesspolicy-unknown-reason.yaml": (
        "Degraded",
        "SomethingNew: something new went wrong",
    ),
    "accesspolicy-deleting-access-denied.yaml": (
        "Degraded",
        "Deleting: cleaning up the cloud objects failed, the deletion waits: not authorized "
        "to perform: iam:DeleteRole",
    ),
    "accesspolicy-deleting-throttled.yaml": (
        "Progressing",
        "Deleting: cleaning up the cloud objects failed, the deletion waits: Rate exceeded",
    ),
    "accesspolicy-being-deleted.yaml": (
        "Progressing",
        "Being deleted: Passport is removing its cloud objects",
    ),
    "federatedtrust-no-status.yaml": (
        "Progressing",
        "Waiting for Passport to report conditions",
    ),
    "federatedtrust-stale-generation.yaml": (
        "Progressing",
        "Waiting for Passport to reconcile generation 5 (status is of 4)",
    ),
    "federatedtrust-ready.yaml": ("Healthy", "the cloud trusts the issuer"),
    "federatedtrust-ready-issuer-private.yaml": ("Healthy", "the cloud trusts the issuer"),
    "federatedtrust-issuer-unreachable.yaml": (
        "Degraded",
        "IssuerUnreachable: a cloud could not fetch "
        "https://oidc.example.com/clusters/prod/.well-known/openid-configuration (HTTP 404)",
    ),
    "federatedtrust-cloud-unavailable.yaml": (
        "Progressing",
        "CloudUnavailable: operation projects/123456789/locations/global/workloadIdentityPools/"
        "prod-pool/operations/abc did not finish in time",
    ),
    "federatedtrust-not-owned.yaml": (
        "Degraded",
        "NotOwned: workload identity pool projects/123456789/locations/global/"
        "workloadIdentityPools/prod-pool belongs to cluster staging",
    ),
    "federatedtrust-missing-message.yaml": (
        "Degraded",
        "IssuerNotPublic: the issuer http://oidc.internal is not an https:// URL",
    ),
    "federatedtrust-being-deleted.yaml": (
        "Progressing",
        "Being deleted: Passport is removing its cloud objects",
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_gets_its_health(name):
    obj = fixture(name)
    assert evaluate(obj["kind"], obj) == EXPECTED[name]


def test_every_sample_has_an_expectation_and_every_expectation_a_sample():
    assert sorted(p.name for p in TESTDATA.glob("*.yaml")) == sorted(EXPECTED)


# The classes of docs/conditions.md's reasons, as config/argocd/README.md documents them.
# Reconciled only ever comes with Ready=True; Deleting takes the class of CloudSynced's reason.
TRANSIENT = {"Progressing", "Throttled", "CloudUnavailable", "Conflict"}
NEEDS_A_PERSON = {
    "IssuerUnreachable",
    "IssuerNotPublic",
    "TrustNotFound",
    "NamespaceNotAllowed",
    "CloudMismatch",
    "IdentityNotAllowed",
    "InvalidConditions",
    "TrustPolicyTooLarge",
    "FederatedCredentialLimit",
    "SubjectTooLong",
    "AccessDenied",
    "NotOwned",
    "CloudRejected",
    # IssuerPublished=False: Ready carries them (issuer publishing).
    "PublishFailed",
    "IssuerMismatch",
}
# Reasons of True conditions only (IssuerPublished), or of a deletion.
OTHERS = {"Reconciled", "Deleting", "Published", "RotationInProgress"}


def passport_reasons():
    """Reason::ALL from crds/src/conditions.rs, so that a new reason fails this test until it
    is given a class here and in the scripts."""
    source = (ROOT / "crds/src/conditions.rs").read_text()
    block = re.search(r"pub const ALL: \[Self; \d+\] = \[(.*?)\];", source, re.S)
    assert block, "Reason::ALL not found in crds/src/conditions.rs"
    return re.findall(r"Self::(\w+)", block.group(1))


def test_every_reason_of_passport_has_exactly_one_class():
    reasons = passport_reasons()
    assert len(reasons) >= 19
    assert not TRANSIENT & NEEDS_A_PERSON
    assert set(reasons) == TRANSIENT | NEEDS_A_PERSON | OTHERS


def failed(kind, reason, synced_reason=None):
    """A current object whose Ready is False with `reason` (CloudSynced with `synced_reason`)."""
    condition = lambda type_, reason: {  # noqa: E731
        "type": type_,
        "status": "False",
        "reason": reason,
        "message": "m",
        "observedGeneration": 1,
    }
    return {
        "kind": kind,
        "metadata": {"name": "x", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                condition("Ready", reason),
                condition("CloudSynced", synced_reason or reason),
            ],
        },
    }


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
@pytest.mark.parametrize("reason", sorted(TRANSIENT | NEEDS_A_PERSON))
def test_transient_reasons_progress_and_the_others_degrade(kind, reason):
    want = "Progressing" if reason in TRANSIENT else "Degraded"
    assert evaluate(kind, failed(kind, reason)) == (want, f"{reason}: m")


@pytest.mark.parametrize("reason", sorted(TRANSIENT | NEEDS_A_PERSON))
def test_a_failed_cleanup_takes_the_class_of_its_cloud_reason(reason):
    want = "Progressing" if reason in TRANSIENT else "Degraded"
    status, _ = evaluate("AccessPolicy", failed("AccessPolicy", "Deleting", reason))
    assert status == want


def patch_text():
    """argocd-cm-patch.yaml as `write` makes it: the .lua files verbatim, as block scalars."""
    lines = [
        "# Passport's Argo CD health checks for argocd-cm. Generated from health-*.lua by",
        "# `.venv/bin/python config/argocd/test_health.py write`; a test fails when it drifts from them.",
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm-patch.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for kind, script in SCRIPTS.items():
        lines.append(f"  {key(kind)}: |")
        lines.extend(f"    {line}" if line else "" for line in script.read_text().splitlines())
    return "\n".join(lines) + "\n"


def test_the_configmap_patch_embeds_the_scripts_verbatim():
    patch = yaml.safe_load(PATCH.read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    assert sorted(patch["data"]) == sorted(key(kind) for kind in SCRIPTS)
    for kind, script in SCRIPTS.items():
        assert patch["data"][key(kind)] == script.read_text(), (
            f"{PATCH.name} differs from {script.name}: run "
            "`.venv/bin/python config/argocd/test_health.py write`"
        )
    assert PATCH.read_text() == patch_text()


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit(__doc__)
    PATCH.write_text(patch_text())
