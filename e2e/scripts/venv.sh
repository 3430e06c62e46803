#!/usr/bin/env bash
# Creates the repo-local Python venv (.venv) that the local stack runs moto from, and installs
# e2e/requirements.txt into it. Idempotent: does nothing when the venv already matches the
# requirements (a stamp file records the hash of the requirements it was built from).
#
# Usage: e2e/scripts/venv.sh            (from anywhere; PYTHON=python3.12 to pick an interpreter)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
requirements="$root/e2e/requirements.txt"
stamp="$venv/.passport-requirements.sha256"
python="${PYTHON:-python3}"

want="$( (cat "$requirements"; "$python" --version 2>&1) | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/moto_server" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv.sh: creating $venv" >&2
    "$python" -m venv "$venv"
fi
echo "venv.sh: installing $requirements into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
"$venv/bin/moto_server" --help >/dev/null
echo "$want" >"$stamp"
