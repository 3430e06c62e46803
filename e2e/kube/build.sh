#!/usr/bin/env bash
# Builds passport-kube (the real control plane for the e2e tests) into $1, with Go's module and
# build caches under .cache/go/ in the repository unless GOMODCACHE / GOCACHE are set. The Makefile
# and e2e/src/realapi.rs both build through this script, so their builds share one cache entry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUTPUT}"
export GOMODCACHE="${GOMODCACHE:-$root/.cache/go/mod}"
export GOCACHE="${GOCACHE:-$root/.cache/go/build}"
# The release go.mod requires; stamped into /version as a release build would be.
version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' "$here/go.mod")"
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
minor="$(echo "$version" | cut -d. -f2)"
pkg=k8s.io/component-base/version
cd "$here"
exec go build -trimpath -o "$out" \
  -ldflags "-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" .
