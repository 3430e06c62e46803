# Passport's developer entry points. `make test` is what CI runs (.ci/run), on a clean clone.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
VENV := .venv

.PHONY: help test lint fmt-check clippy manifests check-manifests unit venv stack demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: venv fmt-check clippy check-manifests unit ## Everything CI runs: lint, generated-YAML drift check, all tests

lint: fmt-check clippy ## cargo fmt --check and clippy -D warnings

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

manifests: ## Regenerate config/crd from the API types
	$(CARGO) run --quiet --locked -p passport-crds --bin crdgen -- config/crd

check-manifests: ## Fail when config/crd differs from what the API types generate
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run --quiet --locked -p passport-crds --bin crdgen -- "$$tmp" >/dev/null; \
	for f in "$$tmp"/*.yaml; do \
	  diff -u "config/crd/$$(basename "$$f")" "$$f" || { echo "config/crd is stale: run 'make manifests' and commit" >&2; exit 1; }; \
	done

unit: ## All tests, ending with one "N passed, N failed" line over every test binary
	@mkdir -p target
	$(CARGO) test --workspace --locked 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "%d passed, %d failed\n", p, f }' target/test.log

venv: ## Project-local Python venv with the AWS emulator (moto)
	e2e/scripts/venv.sh

stack: venv ## Run the local stack (Kubernetes API + AWS, GCP, Azure emulators) until Ctrl-C
	$(CARGO) run --quiet --locked -p passport-e2e --bin passport-stack

demo: ## The local stack with Passport's CRDs and samples, driven by kubectl
	e2e/scripts/demo.sh
