#!/usr/bin/env bash
# Builds passport-probe (the Go SDKs' credential probes, see README.md) into $1, with Go's module
# and build caches under .cache/go/ in the repository unless GOMODCACHE / GOCACHE are set, as
# e2e/kube/build.sh does. Incremental: quiet, and the binary untouched, when nothing changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUTPUT}"
export GOMODCACHE="${GOMODCACHE:-$root/.cache/go/mod}"
export GOCACHE="${GOCACHE:-$root/.cache/go/build}"
cd "$here"
exec go build -trimpath -o "$out" .
