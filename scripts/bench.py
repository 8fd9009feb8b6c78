#!/usr/bin/env python3
"""Benchmark: cback3-s3sync against s5cmd, rclone, `aws s3 sync` and the original tool.

One command from a fresh clone: ``scripts/bench.sh`` (installs the peers, builds the release
binary, then runs this). Everything runs against a SeaweedFS server on 127.0.0.1 that this
script starts; ``--latency-ms N`` puts a user-space proxy in front of it that delays every
byte N ms each way. Runs are interleaved (one run of each tool per round, the order rotated
each round, after an untimed warm-up run per case), each on a fresh prefix, and the bucket
is checked after each run. Prints medians, min-max, peak RSS and the ratio ours/peer.
It is a benchmark, not a test: nothing here is timed in CI.

``--scale N`` and ``--simulate N`` run only the scale cases (N real files on a SeaweedFS whose
data outlives the run) and the no-op simulation against ``listing_server.py``: see
``bench_scale.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from s3server import LocalS3  # noqa: E402

KIB = 1024
MIB = 1024 * KIB


@dataclass
class Result:
    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    handshakes: list[int] = field(default_factory=list)


def make_small_tree(root: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(count):
        d = root / f"d{i % 100:02d}" / f"e{(i // 100) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file-{i:07d}.dat").write_bytes(rng.randbytes(rng.randint(1 * KIB, 8 * KIB)))


def make_sparse_free_file(path: Path, size: int) -> None:
    """A file of real (incompressible-enough) bytes, written in 1 MiB blocks."""
    block = random.Random(size).randbytes(MIB)
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left:
            n = min(left, MIB)
            fh.write(block[:n] if i % 2 else block[::-1][:n])
            left -= n
            i += 1


def make_million(root: Path, count: int) -> None:
    for i in range(count):
        d = root / f"a{i // 10000:03d}" / f"b{(i // 100) % 100:02d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:07d}").write_bytes(b"x" * (i % 64))


def tree_stats(root: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            n += 1
            size += os.path.getsize(os.path.join(dirpath, f))
    return n, size


def timed(
    cmd: list[str], env: dict[str, str], cwd: str | None = None, timeout: float | None = None
) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MiB) of the process tree, exit code, and the output tail.
    After `timeout` seconds the process is killed (exit code -9, said in the tail)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - start
        if timer:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read()[-2000:].decode("utf-8", "replace")
        if timeout and elapsed >= timeout:
            tail += f"\n(killed after the {timeout:g} s timeout)"
    # ru_maxrss is the largest resident set of the child or any descendant it waited for.
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, tail


def make_pki(d: Path) -> None:
    """A private CA and a certificate for 127.0.0.1 signed by it (the `openssl` CLI)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    openssl(
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=cback3 bench CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl("req", "-nodes", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "ext.cnf",
    )


def start_helper(cmd: list[str], ready: Path, what: str) -> tuple[subprocess.Popen[bytes], str]:
    """Starts a proxy that writes its port to `ready`; returns it and the port."""
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (ready.exists() and ready.read_text().strip()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


class Bench:
    def __init__(self, args: argparse.Namespace, server: LocalS3, endpoint: str, work: Path) -> None:
        self.args = args
        self.server = server
        self.endpoint = endpoint
        self.work = work
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("AWS_"):
                del self.env[k]
        self.env.update(server.env())
        self.env["AWS_ENDPOINT_URL"] = endpoint
        if os.environ.get("AWS_CA_BUNDLE"):
            self.env["AWS_CA_BUNDLE"] = os.environ["AWS_CA_BUNDLE"]
        self.env["HOME"] = str(work / "home")
        (work / "home").mkdir(exist_ok=True)
        self.bucket = f"bench-{int(time.time())}"
        self.counter = 0
        self.ours = args.ours or str(ROOT / "target" / "release" / "cback3-amazons3-sync")
        # TLS mode: the TLS proxy's handshake counter (JSON), read around each measured run.
        self.tls_stats: Path | None = None
        # Restore cases: one filled prefix per dataset, written once (not measured).
        self.filled: dict[Path, str] = {}
        # Restored trees and the change case's copies, removed when the benchmark ends (see
        # run_restore: removing them at once slowed the next run).
        self.leftovers: list[Path] = []
        s5 = shutil.which("s5cmd")
        self.s5cmd = s5 or "s5cmd"
        self.aws(["s3", "mb", f"s3://{self.bucket}"])

    def aws(self, args: list[str]) -> str:
        return subprocess.run(["aws", *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def fresh_prefix(self) -> str:
        self.counter += 1
        return f"run{self.counter:04d}"

    def listing(self, prefix: str) -> tuple[int, int]:
        out = subprocess.run(
            [self.s5cmd, "--endpoint-url", self.endpoint, "ls", f"s3://{self.bucket}/{prefix}/*"],
            env=self.env,
            capture_output=True,
            text=True,
        ).stdout
        n = size = 0
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[-2].isdigit():
                n += 1
                size += int(parts[-2])
        return n, size

    def command(self, tool: str, src: Path, prefix: str) -> list[str]:
        url = f"s3://{self.bucket}/{prefix}"
        log = str(self.work / "tool.log")
        conc = self.args.concurrency
        if tool == "ours":
            cmd = [self.ours, "-q", "-l", log]
            if conc:
                cmd.append(f"--maxConcurrency={conc}")
            return [*cmd, str(src), url]
        if tool == "s5cmd":
            return [self.s5cmd, "--endpoint-url", self.endpoint, "sync", "--delete", f"{src}/", f"{url}/"]
        if tool == "s5cmd-cp":
            return [self.s5cmd, "--endpoint-url", self.endpoint, "cp", f"{src}/*", f"{url}/"]
        if tool == "rclone":
            return ["rclone", "sync", str(src), f"bench:{self.bucket}/{prefix}"]
        if tool == "aws":
            return ["aws", "s3", "sync", "--only-show-errors", str(src), url, "--delete"]
        if tool == "original":
            return [
                sys.executable,
                "-c",
                "import sys\nfrom CedarBackup3.tools.amazons3 import cli\nsys.exit(cli())",
                "-q",
                "-w",
                "-l",
                log,
                str(src),
                url,
            ]
        raise ValueError(tool)

    def restore_command(self, tool: str, dst: Path, prefix: str) -> list[str]:
        url = f"s3://{self.bucket}/{prefix}"
        if tool == "ours":
            cmd = [self.ours, "-q", "-l", str(self.work / "tool.log"), "--restore"]
            if self.args.concurrency:
                cmd.append(f"--maxConcurrency={self.args.concurrency}")
            return [*cmd, str(dst), url]
        if tool == "s5cmd":
            return [self.s5cmd, "--endpoint-url", self.endpoint, "cp", f"{url}/*", f"{dst}/"]
        if tool == "rclone":
            return ["rclone", "copy", f"bench:{self.bucket}/{prefix}", str(dst)]
        raise ValueError(tool)

    def run_restore(self, tool: str, dataset: Path) -> tuple[float, float, str | None]:
        """One measured download of a prefix holding `dataset` into an empty directory."""
        if dataset not in self.filled:
            prefix = self.fresh_prefix()
            _, _, code, tail = timed(self.command("ours", dataset, prefix), self.env)
            if code != 0:
                return 0, 0, f"filling the prefix failed ({code}): {tail}"
            self.filled[dataset] = prefix
        prefix = self.filled[dataset]
        dst = self.work / f"restore-{self.fresh_prefix()}"
        secs, rss, code, tail = timed(self.restore_command(tool, dst, prefix), self.tool_env(tool))
        problem = None
        if code != 0:
            problem = f"exit {code}: {tail[-600:]}"
        want = tree_stats(dataset)
        if code == 0:
            got = tree_stats(dst)
            if got != want:
                problem = f"restored {got} (files, bytes), dataset {want}"
        # Removing the tree now would slow whoever restores next (measured on this machine's
        # ext4 without a journal, mounted with discard): new inodes skip those deleted in the
        # last 30 s one by one (10,000 files: 6-7 s of extra system time) and a freed 1 GiB
        # is discarded while the next file is written (2-4 s). Removed at exit unless the
        # disk runs short.
        if shutil.disk_usage(self.work).free > 3 * want[1] + (1 << 30):
            self.leftovers.append(dst)
        else:
            shutil.rmtree(dst, ignore_errors=True)
        return secs, rss, problem

    def tool_env(self, tool: str) -> dict[str, str]:
        env = dict(self.env)
        if tool == "rclone":
            if self.tls_stats:
                env["RCLONE_CA_CERT"] = env["AWS_CA_BUNDLE"]
            env.update(
                {
                    "RCLONE_CONFIG_BENCH_TYPE": "s3",
                    "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                    "RCLONE_CONFIG_BENCH_ENDPOINT": self.endpoint,
                    "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
                    "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
                    "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
                }
            )
        return env

    def run_case(
        self,
        tool: str,
        dataset: Path,
        kind: str,
        mutate: Callable[[Path], None] | None,
    ) -> tuple[float, float, str | None]:
        """One measured run. `kind` is initial, noop or change."""
        prefix = self.fresh_prefix()
        src = dataset
        if kind == "change":
            src = self.work / f"copy-{prefix}"
            shutil.copytree(dataset, src, symlinks=True)
        env = self.tool_env(tool)
        if kind in ("noop", "change"):
            # Fill the prefix with the same tool first (not measured).
            _, _, code, tail = timed(self.command(tool, src, prefix), env)
            if code != 0:
                return 0, 0, f"preparing run failed ({code}): {tail}"
            if mutate:
                mutate(src)
        secs, rss, code, tail = timed(self.command(tool, src, prefix), env)
        problem = None
        if code != 0:
            problem = f"exit {code}: {tail[-600:]}"
        else:
            want = tree_stats(src)
            got = self.listing(prefix)
            if got != want:
                problem = f"bucket has {got} (objects, bytes), source {want}"
        if kind == "change":
            self.leftovers.append(src)  # 10,000 files: see run_restore
        return secs, rss, problem

    def handshakes(self) -> int:
        if not self.tls_stats:
            return 0
        return int(json.loads(self.tls_stats.read_text())["handshakes"])


def change_one_percent(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    rng = random.Random(11)
    picked = rng.sample(files, max(1, len(files) // 50))
    half = len(picked) // 2
    future = time.time() + 5
    for p in picked[:half]:
        p.write_bytes(rng.randbytes(p.stat().st_size))
        os.utime(p, (future, future))
    for p in picked[half:]:
        p.unlink()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay each way through a proxy")
    p.add_argument(
        "--tls",
        action="store_true",
        help="HTTPS through a TLS terminator, private CA (AWS_CA_BUNDLE, SSL_CERT_FILE, RCLONE_CA_CERT)",
    )
    p.add_argument("--small-files", type=int, default=10_000)
    p.add_argument("--big-files", type=int, default=20)
    p.add_argument("--big-size-mib", type=int, default=64)
    p.add_argument("--huge-size-mib", type=int, default=1024)
    p.add_argument("--million", type=int, default=0, help="files in the no-op/memory tree (e.g. 1000000)")
    p.add_argument(
        "--cases",
        default="small-initial,small-noop,small-change,big-initial,huge-initial,small-restore,huge-restore",
        help="restore cases (small-restore, huge-restore) run ours, s5cmd and rclone only",
    )
    p.add_argument("--tools", default="ours,s5cmd,rclone,aws,original")
    p.add_argument("--concurrency", type=int, default=0, help="--maxConcurrency for ours (0: default)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up runs")
    p.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--ours", default=None, help="our binary (default: target/release/cback3-amazons3-sync)")
    p.add_argument(
        "--scale",
        default="",
        help="N[,N...]: only the scale cases (scale-initial, scale-noop, scale-restore; --cases picks among"
        " them) on a tree of N real files, against a SeaweedFS that keeps its data in --server-dir",
    )
    p.add_argument(
        "--simulate",
        default="",
        help="N[,N...]: our no-op over N hard links against scripts/listing_server.py (memory at 10M files)",
    )
    p.add_argument("--data", default="/work/benchdata", help="where the scale and simulation trees are kept")
    p.add_argument(
        "--server-dir", default="/work/benchdata/weed", help="the persistent SeaweedFS of the scale cases"
    )
    p.add_argument("--sim-timeout", type=float, default=600, help="seconds before a simulated run is killed")
    args = p.parse_args()
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    work = Path(args.work or tempfile.mkdtemp(prefix="cback3-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.scale or args.simulate:
        return scale_main(args, work)
    data = work / "data"
    data.mkdir(exist_ok=True)
    cases = [c for c in args.cases.split(",") if c]
    tools = [t for t in args.tools.split(",") if t]

    datasets: dict[str, Path] = {}
    if any(c.startswith("small") for c in cases):
        datasets["small"] = data / f"small-{args.small_files}"
        if not datasets["small"].exists():
            print(f"making {args.small_files} small files ...", file=sys.stderr)
            make_small_tree(datasets["small"], args.small_files)
    if any(c.startswith("big") for c in cases):
        datasets["big"] = data / f"big-{args.big_files}x{args.big_size_mib}"
        if not datasets["big"].exists():
            datasets["big"].mkdir()
            for i in range(args.big_files):
                make_sparse_free_file(datasets["big"] / f"big-{i:02d}.bin", args.big_size_mib * MIB)
    if any(c.startswith("huge") for c in cases):
        datasets["huge"] = data / f"huge-{args.huge_size_mib}"
        if not datasets["huge"].exists():
            datasets["huge"].mkdir()
            make_sparse_free_file(datasets["huge"] / "huge.bin", args.huge_size_mib * MIB)
    if args.million:
        cases.append("million-noop")
        datasets["million"] = data / f"million-{args.million}"
        if not datasets["million"].exists():
            print(f"making {args.million} files ...", file=sys.stderr)
            make_million(datasets["million"], args.million)

    results: dict[tuple[str, str], Result] = {}
    # A fresh server each time, removed afterwards (it keeps every object written: tens of GiB).
    with LocalS3() as server:
        proxies: list[subprocess.Popen[bytes]] = []
        bench: Bench | None = None
        endpoint = server.endpoint
        upstream = str(server.port)
        if args.latency_ms:
            proc, upstream = start_helper(
                [
                    sys.executable,
                    str(ROOT / "tests" / "s3proxy.py"),
                    "--upstream",
                    upstream,
                    "--delay-ms",
                    str(args.latency_ms),
                    "--ready-file",
                    str(work / "proxy.port"),
                ],
                work / "proxy.port",
                "latency proxy",
            )
            proxies.append(proc)
            endpoint = f"http://127.0.0.1:{upstream}"
        tls_stats = None
        if args.tls:
            pki = work / "pki"
            pki.mkdir(exist_ok=True)
            make_pki(pki)
            tls_stats = work / "tls-stats.json"
            proc, port = start_helper(
                [
                    sys.executable,
                    str(ROOT / "tests" / "tlsproxy.py"),
                    "--upstream",
                    upstream,
                    "--cert",
                    str(pki / "server.pem"),
                    "--key",
                    str(pki / "server.key"),
                    "--ready-file",
                    str(work / "tls.port"),
                    "--stats",
                    str(tls_stats),
                ],
                work / "tls.port",
                "TLS proxy",
            )
            proxies.append(proc)
            endpoint = f"https://127.0.0.1:{port}"
        try:
            if tls_stats:
                # Ours and aws read AWS_CA_BUNDLE, s5cmd (Go) SSL_CERT_FILE, rclone RCLONE_CA_CERT.
                ca = str(work / "pki" / "ca.pem")
                os.environ["AWS_CA_BUNDLE"] = ca
                os.environ["SSL_CERT_FILE"] = ca
            bench = Bench(args, server, endpoint, work)
            bench.tls_stats = tls_stats
            if args.warmup:
                # The server grows its volumes on first use; whoever wrote first would pay for it.
                for case in cases:
                    if case.endswith("initial"):
                        bench.run_case(tools[0], datasets[case.split("-")[0]], "initial", None)
            for rnd in range(args.rounds):
                for case in cases:
                    kind = case.split("-")[1]
                    ds = datasets[case.split("-")[0]]
                    # Rotate the order each round so that no tool always runs first or last.
                    shift = rnd % len(tools)
                    for tool in tools[shift:] + tools[:shift]:
                        if tool == "s5cmd-cp" and kind != "initial":
                            continue
                        if kind == "restore" and tool not in ("ours", "s5cmd", "rclone"):
                            continue
                        before = bench.handshakes()
                        if kind == "restore":
                            secs, rss, problem = bench.run_restore(tool, ds)
                        else:
                            mutate = change_one_percent if kind == "change" else None
                            secs, rss, problem = bench.run_case(tool, ds, kind, mutate)
                        # Includes the unmeasured preparing run of noop/change cases and the listing check.
                        shakes = bench.handshakes() - before
                        r = results.setdefault((case, tool), Result())
                        r.handshakes.append(shakes)
                        if problem:
                            r.failures.append(problem)
                            print(f"round {rnd + 1} {case} {tool}: FAILED {problem}", file=sys.stderr)
                        else:
                            r.seconds.append(secs)
                            r.rss_mib.append(rss)
                            print(
                                f"round {rnd + 1} {case} {tool}: {secs:.2f} s, {rss:.0f} MiB", file=sys.stderr
                            )
        finally:
            for proc in proxies:
                proc.terminate()
                proc.wait()
            if bench is not None:
                for d in bench.leftovers:
                    shutil.rmtree(d, ignore_errors=True)

    print_table(results, cases, tools, args)
    return 0


def scale_main(args: argparse.Namespace, work: Path) -> int:
    """The scale cases and the simulation only (see bench_scale.py)."""
    from bench_scale import run_scale, run_simulate

    known = ("scale-initial", "scale-noop", "scale-restore")
    picked = [c for c in args.cases.split(",") if c in known] or list(known)
    table: list[tuple[str, str]] = []
    if args.scale:
        table += run_scale(args, [int(n) for n in args.scale.split(",")], picked, work)
    if args.simulate:
        table += run_simulate(args, [int(n) for n in args.simulate.split(",")], work)
    ours = args.ours or "target/release"
    print(f"\n### {ours}; {args.rounds} rounds; seconds median (min-max) / peak RSS MiB\n")
    print("| case | ours |")
    print("|---|---|")
    for name, cell in table:
        print(f"| {name} | {cell} |")
    failed = any("FAILED" in cell or "failed" in cell for _, cell in table)
    return 1 if failed else 0


def print_table(
    results: dict[tuple[str, str], Result], cases: list[str], tools: list[str], args: argparse.Namespace
) -> None:
    mode = f"latency {args.latency_ms:g} ms each way" if args.latency_ms else "direct"
    if args.tls:
        mode += ", HTTPS (TLS handshakes per run, median, after the RSS)"
    print(f"\n### {mode}; {args.rounds} interleaved rounds; seconds median (min-max) / peak RSS MiB median\n")
    print("| case | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for case in cases:
        ours = results.get((case, "ours"))
        ours_med = statistics.median(ours.seconds) if ours and ours.seconds else None
        ours_rss = statistics.median(ours.rss_mib) if ours and ours.rss_mib else None
        cells = []
        for tool in tools:
            r = results.get((case, tool))
            if r is None:
                cells.append("n/a")
                continue
            if not r.seconds:
                cells.append(f"FAILED ({len(r.failures)})")
                continue
            med = statistics.median(r.seconds)
            rss = statistics.median(r.rss_mib)
            cell = f"{med:.2f} ({min(r.seconds):.2f}-{max(r.seconds):.2f}) / {rss:.0f}"
            if args.tls:
                cell += f" / {statistics.median(r.handshakes):.0f} TLS"
            if tool != "ours" and ours_med and ours_rss:
                cell += f" · ours/peer {ours_med / med:.2f}, RSS {ours_rss / rss:.2f}"
            if r.failures:
                cell += f" · {len(r.failures)} failed"
            cells.append(cell)
        print(f"| {case} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
