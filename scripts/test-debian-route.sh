#!/usr/bin/env bash
# Runs the README's Debian install route as written, as root on this (Debian) machine, against a
# local SeaweedFS server: Debian's cedar-backup3 package fills a bucket with the original tool;
# then the README's blocks install ours beside it and check the bucket, divert the package's
# command and man page, and switch back. Between the blocks: ours syncs the original's bucket
# and uploads nothing; after the switch back the original's own -v passes on the bucket ours
# wrote. Only the bucket URL and the source directory of the README's commands are replaced.
# Changes the machine (apt, /opt, /usr/bin, /usr/local/bin): CI runs it on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

if [[ -z ${CBACK3_ROUTE_INNER:-} ]]; then
    [[ $(id -u) == 0 ]] || { echo "error: run as root (it installs packages)" >&2; exit 1; }
    command -v dpkg-divert >/dev/null || { echo "error: needs a Debian system" >&2; exit 1; }
    if ! dpkg -s cedar-backup3 python3-venv man-db >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cedar-backup3 python3-venv man-db >/dev/null
    fi
    bash scripts/build-wheel.sh
    exec env CBACK3_ROUTE_INNER=1 python3 tests/s3server.py run -- bash "$0"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/home
mkdir -p "$src/me/docs" "$src/me/.private"
echo "report" > "$src/me/docs/report.txt"
echo "secret" > "$src/me/.private/key"
chmod 700 "$src/me/.private"
for i in $(seq 1 20); do echo "file $i" > "$src/me/docs/f$i.txt"; done
touch -d '2025-01-01 00:00' "$src"/me/docs/* "$src/me/.private/key"
bucket=debian-route-$$
url=s3://$bucket/home
aws s3 mb "s3://$bucket" >/dev/null
# An administrator's PATH: this machine's own Pythons (pyenv, pip's console scripts) would
# otherwise come first; only the AWS CLI the original wraps is kept, through one link.
mkdir "$work/bin"
ln -s "$(command -v aws)" "$work/bin/aws"
export PATH=$work/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The README's commands run through this function, as root: sudo (when there is one) would
# drop the local server's environment.
sudo() { "$@"; }
block() {  # the ```sh block after the README's <!-- ci:NAME --> marker, bucket and source replaced
    awk -v m="<!-- ci:$1" 'index($0, m) == 1 {on = 1; next} on && /^```sh/ {code = 1; next}
        code && /^```/ {exit} code {print}' README.md |
        sed -e "s#/home s3://my-bucket/home#$src $url#g"
}
run_block() {
    local code
    code=$(block "$1")
    [[ -n $code ]] || { echo "error: no block ci:$1 in README.md" >&2; exit 1; }
    echo "== README block ci:$1"
    printf '%s\n' "$code" | sed 's/^/   $ /'
    eval "$code"
}
fail() { echo "error: $*" >&2; exit 1; }

echo "== the package's original fills the bucket"
/usr/bin/cback3-amazons3-sync -l "$work/original.log" "$src" "$url"

run_block debian-install        # ours installed beside it; its -v passes on the original's bucket
[[ $(cback3-s3sync -V) == *cback3-s3sync* ]] || fail "cback3-s3sync is not ours"

run_block debian-switch
[[ $(command -v cback3-amazons3-sync) == /usr/bin/cback3-amazons3-sync ]] || fail "cback3-amazons3-sync is not /usr/bin's"
[[ $(cback3-amazons3-sync -V) == *cback3-s3sync* ]] || fail "after the divert, cback3-amazons3-sync -V does not print cback3-s3sync"
page=$(man -w cback3-amazons3-sync)
[[ $(readlink -f "$page") == /opt/cback3-s3sync/* ]] || fail "man cback3-amazons3-sync shows $page, not ours"

echo "== ours syncs the original's bucket: no file uploaded again (directory markers are zero bytes)"
cback3-amazons3-sync -l "$work/ours.log" --summaryFile "$work/summary.json" "$src" "$url"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); u=s["uploaded"]; sys.exit(f"uploaded {u}" if u["bytes"] else 0)' "$work/summary.json"
echo "changed" > "$src/me/docs/report.txt"
cback3-s3sync -l "$work/ours.log" "$src" "$url"

run_block debian-back
[[ ! -e /usr/local/bin/cback3-s3sync && ! -e /opt/cback3-s3sync ]] || fail "ours is still installed"
grep -q CedarBackup3 /usr/bin/cback3-amazons3-sync || fail "/usr/bin/cback3-amazons3-sync is not the package's"
[[ $(readlink -f "$(man -w cback3-amazons3-sync)") == /usr/share/man/man1/cback3-amazons3-sync.1.gz ]] ||
    fail "the package's man page is not back"
echo "== the original's -v on the bucket ours wrote"
/usr/bin/cback3-amazons3-sync -v -l "$work/original.log" "$src" "$url"
echo "Debian route: 1 passed, 0 failed"
