#!/usr/bin/env bash
# Builds the wheel (the extension, the Python package, both command names and the man page)
# into dist/. Needs cargo (Rust 1.94 or newer, from rustup) and python3 with venv; maturin is
# installed into a virtual environment of its own (target/wheel-venv), never system-wide.
# CBACK3_WHEEL_PROFILE=debug builds an unoptimised wheel (CI: it reuses the test build).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found: install Rust 1.94 or newer with rustup (https://rustup.rs)," \
        "open a new shell, and build as your own user (sudo does not see ~/.cargo/bin)" >&2
    exit 1
fi
need=1.94
have=$(rustc --version | awk '{print $2}')
if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1) != "$need" ]]; then
    echo "error: rustc $have is too old; this needs $need or newer (rustup update stable)" >&2
    exit 1
fi

venv=target/wheel-venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv" || {
        echo "error: python3 cannot make a virtual environment (Debian: apt install python3-venv)" >&2
        exit 1
    }
fi
if [[ ! -x $venv/bin/maturin ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'maturin>=1.9.4,<2'
fi

profile=(--release)
[[ ${CBACK3_WHEEL_PROFILE:-release} == debug ]] && profile=()
mkdir -p dist
rm -f dist/cback3_s3sync-*.whl
"$venv/bin/maturin" build --quiet "${profile[@]}" --out dist
ls dist/cback3_s3sync-*.whl
