"""The scale cases of the benchmark (``bench.py --scale``) and the no-op simulation
(``bench.py --simulate``); see ``scripts/bench.py --help``.

Scale: for each N a tree of N real small files (directories of 100, sizes 0..63 bytes), made
once under ``--data``, synced into a bucket of a SeaweedFS whose data directory (``--server-dir``)
outlives the run, so that a second invocation finds the prefix filled and measures the no-op and
the restore without paying the fill again. The state of the fills (which prefix holds which tree)
is a JSON file in the server directory.

Simulation: ``listing_server.py`` answers the listings of the bucket a sync of the scale tree of
N files would leave (same keys, sizes, ETags and directory markers), computed page by page
(nothing stored); the local side is that tree's names made of hard links to a few files, dated a
day back, so every file is unchanged and a correct no-op sends nothing but listings.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, make_million, start_helper, timed

from s3server import LocalS3

DAY = 86400
BUCKET = "scale"
# Hard links per inode of the simulated tree (ext4 allows 65,000).
SIM_LINKS_PER_INODE = 60000


def tree_count(root: Path) -> tuple[int, int]:
    """Files and bytes below root (lstat of every entry)."""
    n = size = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            n += 1
            size += os.lstat(os.path.join(dirpath, f)).st_size
    return n, size


def scale_tree(data: Path, n: int) -> Path:
    """The tree of n real files, made once (a stamp beside it records that it is complete)."""
    root = data / f"tree-{n}"
    stamp = data / f"tree-{n}.count"
    if root.is_dir() and stamp.exists() and stamp.read_text().strip() == str(n):
        return root
    shutil.rmtree(root, ignore_errors=True)
    print(f"making {n} files under {root} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    make_million(root, n)
    stamp.write_text(f"{n}\n")
    print(f"made {n} files in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return root


def backdate_files(root: Path, when: float) -> None:
    """Sets every file's mtime (not the directories': that would change their ctime, which
    decides whether a directory marker is put again) to `when`."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (when, when))


def sim_tree(data: Path, n: int) -> Path:
    """The names and sizes of `make_million`'s tree of n files (what listing_server.py lists),
    made of hard links: file i links to one of the files of i mod 64 bytes `x` kept beside the
    tree, each taking at most 60,000 links (ext4 allows 65,000), so 10M entries cost about 200
    inodes. Every mtime is a day back; the directories are made before the listing server
    starts, so their markers (LastModified: the server's start) are newer than their ctimes."""
    base = data / f"sim-{n}"
    root = base / "tree"
    stamp = base / "count"
    if root.is_dir() and stamp.exists() and stamp.read_text().strip() == str(n):
        return root
    shutil.rmtree(base, ignore_errors=True)
    inodes = base / "inodes"
    inodes.mkdir(parents=True)
    print(f"making {n} hard links under {root} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    when = float(int(time.time()) - DAY)
    sources: dict[tuple[int, int], str] = {}
    for i in range(0, n, 64 * SIM_LINKS_PER_INODE):
        for size in range(64):
            src = inodes / f"x{size:02d}-{len(sources) // 64:04d}"
            src.write_bytes(b"x" * size)
            os.utime(src, (when, when))
            sources[(size, i // (64 * SIM_LINKS_PER_INODE))] = str(src)
    for i in range(n):
        d = f"{root}/a{i // 10000:03d}/b{(i // 100) % 100:02d}"
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        os.link(sources[(i % 64, i // (64 * SIM_LINKS_PER_INODE))], f"{d}/f{i:07d}")
    stamp.write_text(f"{n}\n")
    print(f"made {n} links in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return root


class State:
    """Which prefix of the persistent bucket holds a complete sync of which tree."""

    def __init__(self, server_dir: Path) -> None:
        self.path = server_dir / "scale-state.json"
        self.data: dict[str, dict[str, object]] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)

    def entry(self, n: int) -> dict[str, object]:
        return self.data.setdefault(str(n), {"prefixes": [], "current": None, "backdated": None})


class Scale:
    def __init__(self, args: argparse.Namespace, server: LocalS3, work: Path) -> None:
        self.args = args
        self.server = server
        self.work = work
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(server.env())
        self.env["HOME"] = str(work / "home")
        (work / "home").mkdir(exist_ok=True)
        self.ours = args.ours or str(ROOT / "target" / "release" / "cback3-amazons3-sync")
        self.state = State(Path(args.server_dir))
        self.log = work / "tool.log"
        self.leftovers: list[Path] = []
        self.summary = work / "summary.json"
        if subprocess.run(
            ["aws", "s3api", "head-bucket", "--bucket", BUCKET], env=self.env, capture_output=True
        ).returncode:
            subprocess.run(
                ["aws", "s3", "mb", f"s3://{BUCKET}"], env=self.env, check=True, capture_output=True
            )

    def run(self, cmd: list[str]) -> tuple[float, float, int, str, dict[str, object]]:
        self.summary.unlink(missing_ok=True)
        secs, rss, code, tail = timed(cmd, self.env)
        summary: dict[str, object] = {}
        if self.summary.exists():
            summary = json.loads(self.summary.read_text())
        return secs, rss, code, tail, summary

    def sync_cmd(self, src: Path, prefix: str) -> list[str]:
        cmd = [self.ours, "-q", "-l", str(self.log), f"--summaryFile={self.summary}"]
        if self.args.concurrency:
            cmd.append(f"--maxConcurrency={self.args.concurrency}")
        return [*cmd, str(src), f"s3://{BUCKET}/{prefix}"]

    def restore_cmd(self, dst: Path, prefix: str) -> list[str]:
        cmd = [self.ours, "-q", "-l", str(self.log), f"--summaryFile={self.summary}", "--restore"]
        if self.args.concurrency:
            cmd.append(f"--maxConcurrency={self.args.concurrency}")
        return [*cmd, str(dst), f"s3://{BUCKET}/{prefix}"]

    def count_objects(self, prefix: str) -> int:
        """Objects under the prefix that are not directory markers, listed with s5cmd one
        top-level directory at a time (one s5cmd listing stops at 1,000,000 entries)."""

        def ls(url: str) -> list[str]:
            return subprocess.run(
                [shutil.which("s5cmd") or "s5cmd", "--endpoint-url", self.server.endpoint, "ls", url],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()

        n = 0
        for line in ls(f"s3://{BUCKET}/{prefix}/"):
            name = line.split()[-1]
            if line.split()[0] == "DIR":
                n += sum(1 for x in ls(f"s3://{BUCKET}/{prefix}/{name}*") if not x.endswith("/"))
            elif not name.endswith("/"):
                n += 1
        return n

    def initial(self, n: int, tree: Path) -> tuple[float, float, str | None]:
        """One initial sync of the tree into a fresh prefix, which becomes the current one."""
        entry = self.state.entry(n)
        prefixes: list[str] = entry["prefixes"]  # type: ignore[assignment]
        prefix = f"tree-{n}-{len(prefixes) + 1:02d}"
        print(f"scale-initial {n}: syncing into s3://{BUCKET}/{prefix} ...", file=sys.stderr, flush=True)
        secs, rss, code, tail, summary = self.run(self.sync_cmd(tree, prefix))
        prefixes.append(prefix)
        self.state.save()
        if code != 0:
            return secs, rss, f"exit {code}: {tail[-600:]}"
        uploaded = summary.get("uploaded", {}).get("files")  # type: ignore[union-attr]
        if uploaded != n:
            return secs, rss, f"summary says {uploaded} files uploaded, tree has {n}"
        listed = self.count_objects(prefix)
        if listed != n:
            return secs, rss, f"bucket lists {listed} objects (not markers), tree has {n}"
        if not entry["backdated"]:
            # A day back: no file is then within the second of its upload (which a no-op would
            # have to ask the object about), and every later run sees the same tree.
            when = float(int(time.time()) - DAY)
            backdate_files(tree, when)
            entry["backdated"] = when
        entry["current"] = prefix
        self.state.save()
        return secs, rss, None

    def noop(self, n: int, tree: Path) -> tuple[float, float, str | None]:
        prefix = self.state.entry(n)["current"]
        secs, rss, code, tail, summary = self.run(self.sync_cmd(tree, str(prefix)))
        if code != 0:
            return secs, rss, f"exit {code}: {tail[-600:]}"
        return secs, rss, check_noop(summary, n)

    def restore(self, n: int) -> tuple[float, float, str | None]:
        prefix = self.state.entry(n)["current"]
        dst = Path(tempfile.mkdtemp(prefix=f"restore-{n}-", dir=self.args.data)) / "tree"
        # Removed when the scale cases end, not now: ext4 here makes the next run's new inodes
        # skip those deleted in the last 30 s (see BENCHMARKS.md, "Method").
        self.leftovers.append(dst.parent)
        secs, rss, code, tail, _ = self.run(self.restore_cmd(dst, str(prefix)))
        if code != 0:
            return secs, rss, f"exit {code}: {tail[-600:]}"
        got, _ = tree_count(dst)
        if got != n:
            return secs, rss, f"restored {got} files, the prefix holds {n}"
        return secs, rss, None


def check_noop(summary: dict[str, object], n: int) -> str | None:
    """None when the summary shows a run that found n files and changed nothing."""
    if not summary:
        return "no summary file"
    uploaded = summary.get("uploaded", {}).get("files")  # type: ignore[union-attr]
    unchanged = summary.get("unchanged")
    deleted = summary.get("deleted")
    markers = summary.get("directories", {}).get("markers_put", 0)  # type: ignore[union-attr]
    if (uploaded, unchanged, deleted, markers) != (0, n, 0, 0):
        return (
            f"not a no-op: uploaded {uploaded}, unchanged {unchanged} (of {n}), deleted {deleted},"
            f" markers put {markers}"
        )
    return None


def report(name: str, rows: list[tuple[float, float, str | None]]) -> tuple[str, str]:
    ok = [(s, r) for s, r, p in rows if p is None]
    for s, r, p in rows:
        print(f"{name}: {s:.2f} s, {r:.1f} MiB" + (f", FAILED {p}" if p else ""), file=sys.stderr, flush=True)
    if not ok:
        return name, f"FAILED ({len(rows)})"
    secs = [s for s, _ in ok]
    rss = [r for _, r in ok]
    cell = f"{statistics.median(secs):.2f} ({min(secs):.2f}-{max(secs):.2f}) / {statistics.median(rss):.1f}"
    if len(ok) < len(rows):
        cell += f" · {len(rows) - len(ok)} failed"
    return name, cell


def run_scale(
    args: argparse.Namespace, counts: list[int], cases: list[str], work: Path
) -> list[tuple[str, str]]:
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    server_dir = Path(args.server_dir)
    trees = {n: scale_tree(data, n) for n in counts}
    table: list[tuple[str, str]] = []
    scale: Scale | None = None
    server_dir.mkdir(parents=True, exist_ok=True)
    # One SeaweedFS at a time on this data directory: a second invocation waits here.
    lock = open(server_dir / "bench.lock", "w")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another benchmark using {server_dir} ...", file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with LocalS3(data_dir=str(server_dir)) as server:
            scale = Scale(args, server, work)
            for n in counts:
                entry = scale.state.entry(n)
                # Each initial run fills a fresh prefix, which the no-op and the restore then use.
                if "scale-initial" in cases or not entry["current"]:
                    table.append(report(f"scale-initial {n}", [scale.initial(n, trees[n])]))
                if not entry["current"]:
                    continue
                if "scale-noop" in cases:
                    rows = [scale.noop(n, trees[n]) for _ in range(args.rounds)]
                    table.append(report(f"scale-noop {n}", rows))
                if "scale-restore" in cases:
                    rows = [scale.restore(n) for _ in range(args.rounds)]
                    table.append(report(f"scale-restore {n}", rows))
    finally:
        for d in scale.leftovers if scale else []:
            shutil.rmtree(d, ignore_errors=True)
        lock.close()
    return table


def run_simulate(args: argparse.Namespace, counts: list[int], work: Path) -> list[tuple[str, str]]:
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    ours = args.ours or str(ROOT / "target" / "release" / "cback3-amazons3-sync")
    table: list[tuple[str, str]] = []
    for n in counts:
        tree = sim_tree(data, n)
        # As long as the real prefixes (tree-N-01), so the keys are byte for byte as long.
        prefix = f"tree-{n}-00"
        requests_log = work / f"listing-{n}.log"
        requests_log.unlink(missing_ok=True)
        proc, port = start_helper(
            [
                sys.executable,
                str(ROOT / "scripts" / "listing_server.py"),
                "--files",
                str(n),
                "--bucket",
                BUCKET,
                "--prefix",
                prefix,
                "--unexpected-log",
                str(requests_log),
                "--ready-file",
                str(work / "listing.port"),
            ],
            work / "listing.port",
            "listing server",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "AKSIM",
                "AWS_SECRET_ACCESS_KEY": "SKSIM-secret",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
                "HOME": str(work / "home"),
            }
        )
        (work / "home").mkdir(exist_ok=True)
        summary = work / "summary.json"
        cmd = [ours, "-q", "-l", str(work / "tool.log"), f"--summaryFile={summary}"]
        if args.concurrency:
            cmd.append(f"--maxConcurrency={args.concurrency}")
        cmd += [str(tree), f"s3://{BUCKET}/{prefix}"]
        rows = []
        try:
            for _ in range(args.rounds):
                summary.unlink(missing_ok=True)
                secs, rss, code, tail = timed(cmd, env, timeout=args.sim_timeout)
                problem = None
                if code != 0:
                    problem = f"exit {code}: {tail[-600:]}"
                else:
                    problem = check_noop(json.loads(summary.read_text()) if summary.exists() else {}, n)
                if requests_log.exists() and requests_log.read_text().strip():
                    lines = requests_log.read_text().splitlines()
                    problem = (
                        f"{problem or ''} sent {len(lines)} requests other than listings, first: {lines[0]}"
                    )
                rows.append((secs, rss, problem))
        finally:
            proc.terminate()
            proc.wait()
        table.append(report(f"simulated-noop {n}", rows))
    return table
