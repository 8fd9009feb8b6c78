#!/usr/bin/env bash
# Every test and lint, exactly what CI runs after installing the tools (.ci/run).
# Tests that touch S3 start their own SeaweedFS server on 127.0.0.1 (tests/s3server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
# Nothing from the caller's AWS setup may leak into the tests.
for v in $(env | sed -n 's/^\(AWS_[A-Z0-9_]*\)=.*/\1/p'); do
    [[ $v == AWS_EC2_METADATA_DISABLED ]] || unset "$v"
done

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check
step "cargo clippy -- -D warnings"
cargo clippy --all-targets -- -D warnings
step "cargo test (unit tests, and the binary against a local S3 server)"
cargo test
if [[ -x scripts/test-python.sh ]]; then
    step "Python extension and shim"
    scripts/test-python.sh
fi
