#!/usr/bin/env bash
# Builds the Python extension and runs every Python check: ruff, mypy --strict, stubtest, pytest.
# Fails on any failure; a skipped test counts as a failure (nothing is meant to be skipped).
# Uses its own virtual environment (target-py/venv, with the system site packages for the test
# tools) and its own cargo target dir (target-py) so it never fights `cargo test` for a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh
# CI sets CBACK3_PY_TARGET_DIR to the main target dir: one build tree, nothing runs concurrently there.
export CARGO_TARGET_DIR="${CBACK3_PY_TARGET_DIR:-$PWD/target-py}"


venv="$CARGO_TARGET_DIR/venv"
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv --system-site-packages "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"

step "cargo build (the binary the shim is compared with)"
env -u CARGO_TARGET_DIR cargo build --quiet
step "maturin develop (debug) and the wheel for the fresh-venv test"
maturin develop --quiet
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
maturin build --quiet --out "$wheels"
export CBACK3_S3SYNC_WHEELS=$wheels

step "ruff"
ruff check .
ruff format --check .
step "mypy --strict (package and tests) and stubtest"
mypy --strict python tests/python
# The extension's stub, and the shim's inline types (the Options properties it makes from the
# core's table included) against what they are at run time.
python -m mypy.stubtest cback3_s3sync._core cback3_s3sync.amazons3 \
    --allowlist python/stubtest-allowlist.txt --mypy-config-file pyproject.toml
step "pytest"
report=$(mktemp)
set +e
python -m pytest tests/python -rA -p no:cacheprovider --junitxml="$report"
status=$?
set -e
skipped=$(python3 -c 'import sys,xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); print(sum(int(s.get("skipped", 0)) for s in r.iter("testsuite")))' "$report")
rm -f "$report"
if [[ $status -ne 0 ]]; then
    exit "$status"
fi
if [[ $skipped -ne 0 ]]; then
    echo "error: $skipped Python tests were skipped; skips are not passes" >&2
    exit 1
fi
