#!/usr/bin/env bash
# Every test and lint, exactly what CI runs after installing the tools (.ci/run).
# Tests that touch S3 start their own server on 127.0.0.1 (tests/s3server.py): SeaweedFS, then
# the S3 suites once more against moto (CBACK3_TEST_SERVER=moto), a second server model.
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
step "the S3 suites again against moto (AWS's own answers: whole-second LastModified, url-encoded listings, multipart rules)"
# One binary per subject (tests/README.md). Left out, as they need SeaweedFS features moto does
# not have (moto accepts any credentials); each calls needs_seaweedfs() and fails with that reason
# if run against moto:
#   sync::wrong_credentials_fail_cleanly                      a wrong secret is rejected
#   bad_input::missing_bucket_access_denied_and_credentials   a read-only identity, unknown key ids
#   security::secrets_never_reach_the_screen_or_the_logfile   a wrong secret is rejected
# Of the cli and faults binaries only bad_input and security run here (filters by module path):
# the rest is the client's retries and timing through tests/s3proxy.py (faults, soak, redteam)
# or involves no S3 answers (logging, cli_options, getopt_differential, module_graph).
CBACK3_TEST_SERVER=moto cargo test --test sync --test restore --test lock --test aws -- \
    --skip wrong_credentials_fail_cleanly
CBACK3_TEST_SERVER=moto cargo test --test cli --test faults -- bad_input:: security:: \
    --skip missing_bucket_access_denied_and_credentials \
    --skip secrets_never_reach_the_screen_or_the_logfile
# Run through bash, not by its exec bit: a lost mode bit must not skip the Python suite.
step "Python extension and shim"
bash scripts/test-python.sh
