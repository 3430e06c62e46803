"""`make demo`'s last step: each cloud's own credential loader, given nothing but one container's
env and the files the kubelet stand-in wrote for it, obtains credentials from the local stack.

Usage: demo_exchange.py <pod.json> <pods dir> <container>
The CA of the stack must be in REQUESTS_CA_BUNDLE / AWS_CA_BUNDLE (the demo sets both).
"""

import base64
import json
import os
import sys

import boto3
import requests
from google.auth import identity_pool
from google.auth.transport.requests import Request


def container_view(pod, root, name):
    """The container's env, with paths under its mounts rewritten to where the kubelet stand-in
    wrote them on this machine."""
    ns, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    spec = pod["spec"]
    container = next(c for c in spec["containers"] if c["name"] == name)
    mounts = {
        m["mountPath"]: os.path.join(root, ns, pod_name, m["name"])
        for m in container.get("volumeMounts", [])
    }

    def host(path):
        best = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")),
                   key=len, default=None)
        if best is None:
            return path
        return os.path.join(mounts[best], path[len(best):].lstrip("/"))

    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    return {k: host(v) if v.startswith("/") else v for k, v in env.items()}, host


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def aws(env):
    with open(env["AWS_WEB_IDENTITY_TOKEN_FILE"]) as f:
        token = f.read().strip()
    sts = boto3.client("sts", endpoint_url=env["AWS_ENDPOINT_URL_STS"],
                       region_name=os.environ.get("AWS_REGION", "us-east-1"))
    answer = sts.assume_role_with_web_identity(
        RoleArn=env["AWS_ROLE_ARN"], RoleSessionName="demo", WebIdentityToken=token)
    c = answer["Credentials"]
    caller = boto3.client(
        "sts", endpoint_url=env["AWS_ENDPOINT_URL_STS"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"]).get_caller_identity()
    return f"AWS STS says the caller is {caller['Arn']}"


def gcp(env, host):
    with open(env["GOOGLE_APPLICATION_CREDENTIALS"]) as f:
        info = json.load(f)
    info["credential_source"]["file"] = host(info["credential_source"]["file"])
    credentials = identity_pool.Credentials.from_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    who = credentials.service_account_email or "the federated principal"
    return f"Google issued an access token for {who} (expires {credentials.expiry.isoformat()}Z)"


def azure(env):
    with open(env["AZURE_FEDERATED_TOKEN_FILE"]) as f:
        assertion = f.read().strip()
    url = f"{env['AZURE_AUTHORITY_HOST'].rstrip('/')}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token"
    answer = requests.post(url, data={
        "grant_type": "client_credentials",
        "client_id": env["AZURE_CLIENT_ID"],
        "scope": "https://management.azure.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }, timeout=20)
    answer.raise_for_status()
    token = claims(answer.json()["access_token"])
    return (f"Entra ID issued a token for client {token.get('appid', token.get('azp'))} "
            f"(object {token.get('oid')}, tenant {token.get('tid')})")


def main():
    with open(sys.argv[1]) as f:
        pod = json.load(f)
    env, host = container_view(pod, sys.argv[2], sys.argv[3])
    failed = False
    for cloud, run in [("aws", lambda: aws(env)), ("gcp", lambda: gcp(env, host)),
                       ("azure", lambda: azure(env))]:
        try:
            print(f"  {cloud:5} {run()}")
        except Exception as error:  # the demo says what failed and goes on
            failed = True
            print(f"  {cloud:5} FAILED: {type(error).__name__}: {error}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
