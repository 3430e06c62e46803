#!/usr/bin/env bash
# `make demo`: the local stack, `passport run` against it with nothing but stack.env, the demo
# trusts and policies (one per cloud) and the samples, a pod that gets all three clouds'
# credentials from Passport's webhook, and each cloud's own credential loader exchanging that
# pod's tokens with the stack's emulators. Everything stops when the demo ends (or on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\n\033[1;31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

step "Preparing the Python venv (moto, google-auth)"
e2e/scripts/venv.sh

step "Building passport and passport-stack (the first build takes a few minutes)"
cargo build --locked --bin passport-stack --bin passport

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

step "Starting the local stack (Kubernetes API emulator, AWS, GCP and Azure emulators, kubelet stand-in)"
target/debug/passport-stack --dir "$dir" >"$dir/stack.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  [ -s "$dir/stack.env" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$dir/stack.log" >&2; fail "the stack exited"; }
  sleep 0.1
done
[ -s "$dir/stack.env" ] || { cat "$dir/stack.log" >&2; fail "the stack did not start within 60 s"; }
set -a
# shellcheck disable=SC1091
source "$dir/stack.env"
set +a
grep -E '^(KUBECONFIG|AWS_ENDPOINT_URL_IAM|PASSPORT_GCP_IAM_ENDPOINT|PASSPORT_AZURE_ARM_ENDPOINT)=' "$dir/stack.env"

step "kubectl apply -k config/crd"
kubectl apply -k config/crd
kubectl wait --for condition=Established --timeout=30s crd/federatedtrusts.passport.dev crd/accesspolicies.passport.dev

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
health_port=$(free_port)
webhook_port=$(free_port)

step "passport run --cluster-name demo   (with nothing but stack.env; logs: operator.log, audit lines: audit.log)"
target/debug/passport run --cluster-name demo \
  --health-addr "127.0.0.1:$health_port" --webhook-addr "127.0.0.1:$webhook_port" \
  >"$dir/audit.log" 2>"$dir/operator.log" &
pids+=($!)
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$health_port/readyz" >/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$dir/operator.log" >&2; fail "passport run exited"; }
  sleep 0.2
done
curl -sf "http://127.0.0.1:$health_port/readyz" >/dev/null || { tail -20 "$dir/operator.log" >&2; fail "passport run never became ready"; }
echo "ready: http://127.0.0.1:$health_port/readyz, webhook https://127.0.0.1:$webhook_port/mutate"

step "Registering the webhook (no caBundle: Passport patches in its own CA)"
sed "s|WEBHOOK_URL|https://127.0.0.1:$webhook_port/mutate|" e2e/demo/webhook.yaml | kubectl apply -f -

step "kubectl apply -f e2e/demo/demo.yaml   (a trust and a policy per cloud, verify: true)"
kubectl apply -f e2e/demo/demo.yaml
if ! kubectl wait --for condition=Ready --timeout=120s -n demo accesspolicy --all; then
  kubectl get accesspolicies -n demo -o yaml >&2
  tail -30 "$dir/operator.log" >&2
  fail "the demo policies did not become Ready"
fi

step "kubectl apply -k config/samples   (production-shaped: their issuers are example.com, so watch the conditions explain what is wrong)"
for ns in payments checkout analytics jobs; do kubectl create namespace "$ns" >/dev/null; done
kubectl label namespace payments passport.dev/cloud-access=aws >/dev/null
kubectl apply -k config/samples
sleep 5

step "kubectl get federatedtrusts,accesspolicies -A"
kubectl get passport -A
echo
echo "Why a sample is not Ready, in the words of its Ready condition:"
{
  kubectl get federatedtrusts -o jsonpath='{range .items[*]}FederatedTrust {.metadata.name}: {.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}'
  kubectl get accesspolicies -A -o jsonpath='{range .items[*]}AccessPolicy {.metadata.namespace}/{.metadata.name}: {.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}'
} | grep -v ': Reconciled: ' | sed 's/^/  /' | cut -c1-240

step "The demo pod: its service account is in one policy per cloud"
for _ in $(seq 1 50); do
  kubectl get mutatingwebhookconfiguration passport -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q . && break
  sleep 0.2
done
kubectl apply -f e2e/demo/pod.yaml
kubectl wait --for condition=Ready --timeout=60s -n demo pod/shop
echo "annotation passport.dev/injected: $(kubectl get pod shop -n demo -o jsonpath='{.metadata.annotations.passport\.dev/injected}')"
echo "env of container app:"
kubectl get pod shop -n demo -o jsonpath='{range .spec.containers[0].env[*]}    {.name}={.value}{"\n"}{end}'
echo "projected token volumes (volume: audience, lifetime):"
kubectl get pod shop -n demo -o jsonpath='{range .spec.volumes[*]}{.name}{range .projected.sources[*].serviceAccountToken}{"\t"}{.audience}{"\t"}{.expirationSeconds}{end}{"\n"}{end}' |
  awk -F '\t' 'NF > 1 { printf "    %s: %s, %ss\n", $1, ($2 == "" ? "no audience (the API server'"'"'s own token)" : $2), $3 }'
echo "files the kubelet stand-in wrote for it: $dir/pods/demo/shop/"

step "Each cloud's own credential loader, with only that pod's env and files"
kubectl get pod shop -n demo -o json >"$dir/pod.json"
REQUESTS_CA_BUNDLE="$PASSPORT_STACK_CA" AWS_CA_BUNDLE="$PASSPORT_STACK_CA" \
  .venv/bin/python e2e/scripts/demo_exchange.py "$dir/pod.json" "$dir/pods" app ||
  fail "an exchange failed (see above); operator log: $(tail -5 "$dir/operator.log")"

step "The audit log (one JSON line per cloud change and per admission)"
head -3 "$dir/audit.log"
echo "... $(wc -l <"$dir/audit.log") lines"

step "Done"
echo "Keep a stack up with 'make stack' and run 'passport run' against it: see docs/operations.md."
