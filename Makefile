# Passport's developer entry points. `make test` is what CI runs (.ci/run), on a clean clone.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
VENV := .venv
# The real kube-apiserver (e2e/kube) is built with Go into caches inside the repository
# (.cache/go, see e2e/kube/build.sh), so a fresh clone needs nothing but Go and the module proxy;
# later builds are incremental.
KUBE_BIN := $(CURDIR)/.cache/go/bin/passport-kube
# The Go SDKs' credential probes (e2e/probes), built the same way; operator/tests/run/sdks.rs
# runs them and fails when PASSPORT_PROBE_BIN is unset.
PROBE_BIN := $(CURDIR)/.cache/go/bin/passport-probe
# The e2e tests written against TestCluster (`TestCluster::connect`, `TestCluster::fresh`): they
# run on the emulator in `unit` and again on the real API server in `e2e-real`. `real_only::`
# (RBAC) runs on the real server only. The operator's e2e tests (`passport run` as a process,
# operator/tests/run) run whole on both.
REAL_API_TESTS := passport_api:: real_only:: \
  crud_selectors_conflicts_and_errors namespaces_get_defaults_and_delete_their_contents \
  secrets_fold_string_data_and_immutable_data_stays finalizers_status_subresource_and_generation \
  discovery_serves_builtins_and_crds custom_resources_are_pruned_defaulted_and_validated \
  every_served_version_reads_the_same_objects watcher_reflector_and_controller \
  token_requests_verify_against_the_served_jwks the_jwks_is_served_as_a_jwk_set_and_refused_to_json_only_clients kubelet_writes_projected_volumes_and_resolves_env \
  recorder_events_are_core_events_too metadata_only_reads_and_watches \
  server_side_apply_tracks_field_managers owner_references_cascade_unless_orphaned \
  lists_page_with_limit_and_continue url_webhooks_need_their_ca_bundle_and_follow_their_failure_policy passport_stack_serves_every_emulator_and_stops_on_ctrl_c
# Sums cargo's "test result:" lines and pytest's "N failed, N passed in Xs" line.
SUMMARY = awk '/^test result:/ { p += $$4; f += $$6; next } \
  /^[0-9]+ (passed|failed)/ { for (i = 1; i < NF; i++) { if ($$(i+1) ~ /^passed/) p += $$i; if ($$(i+1) ~ /^failed/) f += $$i } } \
  END { printf "%d passed, %d failed\n", p, f }'

.PHONY: help test lint bench fmt-check clippy manifests check-manifests unit kube probes e2e-real e2e-cluster venv stack demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: venv fmt-check clippy check-manifests unit pytest e2e-real ## Everything CI runs: lint, generated-YAML drift check, all tests on both API servers
	@$(SUMMARY) target/test.log target/test-py.log target/test-real.log

# Inside `make test` the partial runs leave the one summary line to `test`.
test: PARTIAL_SUMMARY := no

lint: fmt-check clippy ## cargo fmt --check and clippy -D warnings

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

manifests: ## Regenerate config/crd (and the Helm chart's copy) and docs/reference.md from the API types
	$(CARGO) run --quiet --locked -p passport-crds --bin crdgen -- config/crd docs/reference.md
	cp config/crd/passport.dev_*.yaml config/helm/passport/crds/

check-manifests: ## Fail when config/crd or docs/reference.md differs from what the API types generate
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run --quiet --locked -p passport-crds --bin crdgen -- "$$tmp" "$$tmp/reference.md" >/dev/null; \
	for f in "$$tmp"/*.yaml; do \
	  diff -u "config/crd/$$(basename "$$f")" "$$f" || { echo "config/crd is stale: run 'make manifests' and commit" >&2; exit 1; }; \
	done; \
	diff -u docs/reference.md "$$tmp/reference.md" || { echo "docs/reference.md is stale: run 'make manifests' and commit" >&2; exit 1; }

unit: probes ## All tests but the real-server-only ones, ending with one "N passed, N failed" line over every test binary
	@mkdir -p target
	PASSPORT_PROBE_BIN=$(PROBE_BIN) $(CARGO) test --workspace --locked -- --skip real_only:: 2>&1 | tee target/test.log
	@[ "$(PARTIAL_SUMMARY)" = no ] || $(SUMMARY) target/test.log

.PHONY: pytest
pytest: venv ## The Python tests (the Argo CD health checks in a real Lua; the Helm chart against kustomize, in Helm's own engine)
	@mkdir -p target
	$(VENV)/bin/python -m pytest -q config/argocd config/helm 2>&1 | tee target/test-py.log

kube: ## Build the real control plane (etcd + kube-apiserver + controllers) from e2e/kube
	e2e/kube/build.sh $(KUBE_BIN)

probes: ## Build the Go SDKs' credential probes (e2e/probes) into .cache/go/bin/passport-probe
	e2e/probes/build.sh $(PROBE_BIN)

e2e-real: kube probes ## The TestCluster e2e tests again, on the real kube-apiserver
	@mkdir -p target
	PASSPORT_E2E_APISERVER=real PASSPORT_KUBE_BIN=$(KUBE_BIN) \
	  $(CARGO) test --locked -p passport-e2e --test stack -- $(REAL_API_TESTS) 2>&1 | tee target/test-real.log
	PASSPORT_E2E_APISERVER=real PASSPORT_KUBE_BIN=$(KUBE_BIN) PASSPORT_PROBE_BIN=$(PROBE_BIN) \
	  $(CARGO) test --locked -p passport-operator --test run -- --skip drills::emulator_only:: --skip issuer::emulator_only:: 2>&1 | tee -a target/test-real.log
	@[ "$(PARTIAL_SUMMARY)" = no ] || $(SUMMARY) target/test-real.log

# What `e2e-cluster` skips: the operator's e2e tests that need an API server of this machine:
# the emulator's fault injection (drills::emulator_only::), the local real server's audit log
# (real_only::), and the API server calling the operator's webhook on this machine's loopback
# (every test that registers it). For a cluster whose API server runs on this machine's
# loopback, only the first two: `make e2e-cluster CLUSTER_SKIPS='drills::emulator_only:: issuer::emulator_only:: real_only::'`.
CLUSTER_SKIPS := drills::emulator_only:: issuer::emulator_only:: real_only:: sdks:: \
  webhook::pods_of_a_policy_get_credentials_from_the_operators_webhook \
  webhook::each_clouds_own_loader_gets_credentials_from_an_injected_pods_files \
  webhook::a_webhook_outage_refuses_pods_only_in_passport_namespaces \
  webhook::a_certificate_near_expiry_is_renewed_and_served_without_a_restart \
  webhook::pods_of_one_template_are_answered_from_the_memo_until_their_policy_changes

e2e-cluster: venv probes ## The TestCluster and operator e2e tests on the cluster of PASSPORT_E2E_KUBECONFIG (docs/development.md)
	@[ -n "$${PASSPORT_E2E_KUBECONFIG:-}" ] || { echo "e2e-cluster: set PASSPORT_E2E_KUBECONFIG to the cluster's kubeconfig (docs/development.md#against-a-real-cluster)" >&2; exit 1; }
	@mkdir -p target
	$(CARGO) test --locked -p passport-e2e --test stack -- passport_api:: 2>&1 | tee target/test-cluster.log
	PASSPORT_PROBE_BIN=$(PROBE_BIN) \
	  $(CARGO) test --locked -p passport-operator --test run -- $(addprefix --skip ,$(CLUSTER_SKIPS)) 2>&1 | tee -a target/test-cluster.log
	@$(SUMMARY) target/test-cluster.log

# The load generator of the webhook benchmark, built once into .cache/oha (about 5 minutes).
OHA := $(CURDIR)/.cache/oha/bin/oha
$(OHA):
	@echo "bench: building oha (the HTTP load generator) into .cache/oha, once" >&2
	cargo install oha --version 1.16.0 --locked --root .cache/oha --target-dir .cache/oha-build
	rm -rf .cache/oha-build

bench: venv $(OHA) ## Benchmarks at full size: results in bench/results/*.json, table in docs/benchmarks.md
	$(CARGO) build --release --locked -p passport-operator --bin passport --bin passport-null-webhook
	@# One process per benchmark: each starts the operator with its own drift-check period.
	for benchmark in converge_policies_and_hold_a_steady_state webhook::webhook_against_a_null_webhook; do \
	  PASSPORT_BENCH=full PASSPORT_BIN=$(CURDIR)/target/release/passport \
	  PASSPORT_NULL_WEBHOOK_BIN=$(CURDIR)/target/release/passport-null-webhook PASSPORT_OHA=$(OHA) \
	  $(CARGO) test --locked -p passport-operator --test bench -- --nocapture --exact $$benchmark || exit 1; \
	done
	$(CARGO) bench --locked -p passport-webhook --bench mutate | python3 bench/divan_json.py bench/results/mutate.json

venv: ## Project-local Python venv with the AWS emulator (moto)
	e2e/scripts/venv.sh

stack: venv $(if $(filter real,$(APISERVER)),kube) ## Run the local stack (Kubernetes API + AWS, GCP, Azure emulators) until Ctrl-C; APISERVER=real for the real kube-apiserver
	PASSPORT_KUBE_BIN=$(KUBE_BIN) $(CARGO) run --quiet --locked -p passport-e2e --bin passport-stack -- --apiserver $(or $(APISERVER),emulated)

demo: ## The local stack with Passport's CRDs and samples, driven by kubectl
	e2e/scripts/demo.sh
