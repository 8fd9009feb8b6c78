#!/usr/bin/env bash
# Every test and lint, exactly what CI runs after installing the tools (.ci/run).
# Tests that touch S3 start their own SeaweedFS server on 127.0.0.1 (tests/s3server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh

step "cargo fmt --check"
cargo fmt --check
step "cargo clippy -- -D warnings"
cargo clippy --all-targets -- -D warnings
step "cargo clippy --features python -- -D warnings (the extension module)"
cargo clippy --features python -- -D warnings
step "cargo test (unit tests, and the binary against a local S3 server)"
cargo test
# Run through bash, not by its exec bit: a lost mode bit must not skip the Python suite.
step "Python extension and shim"
bash scripts/test-python.sh
