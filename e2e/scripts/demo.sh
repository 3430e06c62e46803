#!/usr/bin/env bash
# `make demo`: start the local stack, install Passport's CRDs and samples into its Kubernetes
# API with the real kubectl, and show what a cluster admin sees. The controllers and webhook are
# not built yet, so the samples have no status; this shows the API, its validation, and the
# emulated cluster and clouds that the operator will run against.
set -euo pipefail
cd "$(dirname "$0")/../.."

e2e/scripts/venv.sh
cargo build --quiet --locked -p passport-e2e --bin passport-stack
dir=$(mktemp -d)
log="$dir/stack.log"
target/debug/passport-stack --dir "$dir" >"$log" 2>&1 &
stack_pid=$!
trap 'kill "$stack_pid" 2>/dev/null; wait "$stack_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

for _ in $(seq 1 600); do
  [ -s "$dir/stack.env" ] && break
  kill -0 "$stack_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$dir/stack.env" ] || { echo "the stack did not start within 60 s" >&2; cat "$log" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
source "$dir/stack.env"
set +a

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "The local stack"
cat "$dir/stack.env"

step "kubectl apply -f config/crd"
kubectl apply -f config/crd
kubectl wait --for condition=Established --timeout=30s crd/federatedtrusts.passport.dev crd/accesspolicies.passport.dev

step "kubectl explain accesspolicy.spec.token"
kubectl explain accesspolicy.spec.token

step "Namespaces for the samples"
for ns in payments checkout analytics jobs; do kubectl create namespace "$ns"; done

step "kubectl apply -k config/samples"
kubectl apply -k config/samples

step "kubectl get federatedtrusts,accesspolicies -A (category: kubectl get passport -A)"
kubectl get passport -A

step "A bad AccessPolicy is refused by the API server with a message that says what to fix"
kubectl apply -f e2e/tests/fixtures/invalid/short-expiration.yaml || true
kubectl apply -f e2e/tests/fixtures/invalid/two-clouds-policy.yaml || true

step "A projected service-account token, as the webhook will give pods (decoded claims)"
kubectl create serviceaccount api -n payments
kubectl create token api -n payments --audience sts.amazonaws.com --duration 10m |
  python3 -c '
import base64, json, sys
payload = sys.stdin.read().strip().split(".")[1]
print(json.dumps(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))), indent=2))
'
step "The issuer that signed it, as clouds fetch it"
curl -s --cacert "$PASSPORT_STACK_CA" "$PASSPORT_STACK_ISSUER/.well-known/openid-configuration"; echo

step "Done"
echo "The controllers and the webhook are not built yet: the samples above have no status."
echo "Run 'make stack' to keep the stack up and explore it with kubectl."
