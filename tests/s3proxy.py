#!/usr/bin/env python3
"""A user-space TCP proxy on 127.0.0.1 in front of the local S3 server.

It adds what the kernel cannot here (no ``tc netem``):

* **latency**: every byte is delivered ``--delay-ms`` after it arrived, in each direction,
  like a long link (bandwidth is not limited, order is kept);
* **faults**, per HTTP request, for a chosen share of requests: ``reset`` (close the
  connection mid-request), ``400`` (MalformedXML), ``stall`` (hold the request without answering for
  ``--stall-s`` seconds, then close), ``500`` (InternalError), ``503`` (SlowDown) and
  ``drop`` (pass the request to the server, then close the connection instead of relaying
  the answer: the server did the work but the client never hears of it) and ``hold`` (the same,
  but the connection stays silent for ``stall_s`` seconds before it is closed).

The share and kinds of faults can be changed while it runs by writing a JSON object to the
control file given with ``--control`` (read before each request), for example
``{"fault_rate": 0.2, "faults": ["reset", "503"]}`` or ``{"fault_rate": 0}``; ``stall_s``,
``delay_ms``, ``fault_methods`` (only requests with these HTTP methods get faults, for example
``["PUT"]``) and ``fault_match`` (only requests whose request line contains this text, for example
a key) and ``fault_skip`` (so many eligible requests pass before faults start) may be set there
too. Two more kinds exist for downloads: ``corrupt`` (relay the answer
with the first byte of its body changed; needs a Content-Length body) and ``stall_body`` (relay
the head and the first half of a Content-Length body, then stay silent for ``stall_s`` seconds
and close: a body that stops mid-transfer). With a control file every
connection is handled request by request, so that faults switched on later reach connections that
are already open.

Servers that reject the 2025 SDK checksums are imitated with ``reject_checksums`` in the control
JSON: ``"all"`` answers 400 InvalidArgument, in Backblaze B2's words, every request carrying an
``x-amz-sdk-checksum-algorithm``, ``x-amz-checksum-*`` (but ``-mode``) or ``x-amz-trailer`` header
(a trailer is only ever a checksum); ``"crc64nvme"`` (400 InvalidRequest) only those naming CRC64NVME in a
header; ``"full_object"`` (501 NotImplemented) only those with ``x-amz-checksum-type:
FULL_OBJECT``; ``null`` nothing; ``reject_methods`` (for example ``["PUT"]``: PutObject and UploadPart only)
limits it to those HTTP methods. ``reject_header`` (a header name) answers B2's 400
InvalidArgument to every request carrying that header, for an unrelated rejection. Each such
answer is counted as ``checksum_rejections`` / ``header_rejections`` in the stats.

Usage: ``s3proxy.py --listen PORT --upstream PORT [--delay-ms N] [--fault-rate F]
[--faults reset,stall,500,503] [--seed N] [--control FILE] [--ready-file FILE]``.
It prints ``listening on PORT`` when ready and counts what it did into ``--stats FILE`` (JSON)
on exit (SIGTERM or SIGINT), and after every injected fault.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    # A request the server refuses as a whole (what a strict XML parser says of a bad body).
    "400": (400, "Bad Request", "MalformedXML", "The XML you provided was not well-formed."),
}


@dataclass
class Settings:
    delay: float = 0.0
    fault_rate: float = 0.0
    faults: list[str] = field(default_factory=lambda: ["reset", "500", "503"])
    stall_s: float = 30.0
    fault_methods: list[str] | None = None
    fault_match: str | None = None
    fault_skip: int = 0
    reject_checksums: str | None = None
    reject_header: str | None = None
    reject_methods: list[str] | None = None
    control: str | None = None
    _control_stamp: tuple[int, int, int] = (0, 0, 0)

    def refresh(self) -> None:
        if not self.control:
            return
        try:
            st = os.stat(self.control)
        except FileNotFoundError:
            return
        # mtime alone misses two writes within the filesystem's timestamp granularity.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._control_stamp:
            return
        self._control_stamp = stamp
        try:
            with open(self.control, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return
        self.fault_rate = float(data.get("fault_rate", self.fault_rate))
        self.faults = list(data.get("faults", self.faults))
        self.delay = float(data.get("delay_ms", self.delay * 1000)) / 1000
        self.stall_s = float(data.get("stall_s", self.stall_s))
        self.reject_checksums = data.get("reject_checksums")
        self.reject_header = data.get("reject_header")
        rmethods = data.get("reject_methods")
        self.reject_methods = [str(m).upper() for m in rmethods] if rmethods else None
        methods = data.get("fault_methods")
        self.fault_methods = [str(m).upper() for m in methods] if methods else None
        self.fault_match = data.get("fault_match") or None
        self.fault_skip = int(data.get("fault_skip", 0))


def b2_unsupported(header: str) -> tuple[int, str, str, str]:
    return (
        400,
        "Bad Request",
        "InvalidArgument",
        f"Unsupported header '{header}' received for this API call.",
    )


def rejection(settings: Settings, head: bytes) -> tuple[tuple[int, str, str, str], str] | None:
    """The error answer (and its stats counter) for a request the settings reject, if any."""
    headers = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip().decode("latin-1").lower(), value.strip().decode("latin-1")))
    if settings.reject_header:
        wanted = settings.reject_header.lower()
        if any(name == wanted for name, _ in headers):
            return b2_unsupported(wanted), "header_rejections"
    mode = settings.reject_checksums
    method = head.split(b" ", 1)[0].decode("ascii", "replace").upper()
    if not mode or (settings.reject_methods and method not in settings.reject_methods):
        return None
    if mode == "all":
        for name, _ in headers:
            # x-amz-checksum-mode asks for the stored checksums in an answer: not a request checksum.
            request_checksum = name.startswith("x-amz-checksum-") and name != "x-amz-checksum-mode"
            if name in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer") or request_checksum:
                return b2_unsupported(name), "checksum_rejections"
    elif mode == "crc64nvme":
        if any("crc64nvme" in name or "crc64nvme" in value.lower() for name, value in headers):
            return (
                (400, "Bad Request", "InvalidRequest", "Checksum algorithm not supported: CRC64NVME."),
                "checksum_rejections",
            )
    elif mode == "full_object" and any(
        name == "x-amz-checksum-type" and value.upper() == "FULL_OBJECT" for name, value in headers
    ):
        return (
            (
                501,
                "Not Implemented",
                "NotImplemented",
                "The FULL_OBJECT checksum type is not implemented.",
            ),
            "checksum_rejections",
        )
    return None


class Proxy:
    def __init__(self, settings: Settings, upstream: int, seed: int, stats_path: str | None = None) -> None:
        self.s = settings
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.stats_path = stats_path

    def count_fault(self, kind: str) -> None:
        self.stats[kind] += 1
        self.stats["faults"] += 1
        self.write_stats()

    def write_stats(self) -> None:
        if not self.stats_path:
            return
        with open(self.stats_path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(dict(self.stats), fh)
        os.replace(self.stats_path + ".tmp", self.stats_path)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies bytes, each chunk delivered `delay` after it was read."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self.s.delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, asyncio.CancelledError):
            sender.cancel()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        self.s.refresh()
        if self.s.fault_rate <= 0 and not self.s.control:
            # Plain latency proxy: no need to look at requests.
            try:
                ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                cwriter.close()
                return
            await asyncio.gather(self.pipe(creader, uwriter), self.pipe(ureader, cwriter))
            return
        with contextlib.suppress(asyncio.CancelledError):  # stalls still held at shutdown
            await self.handle_http(creader, cwriter)

    async def handle_http(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        """Request by request, so that a fault can be chosen for each one."""
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cwriter.close()
            return
        try:
            while True:
                head = await self.read_head(creader)
                if head is None:
                    return
                self.stats["requests"] += 1
                self.s.refresh()
                length = 0
                chunked = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                    if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                fault = None
                method = head.split(b" ", 1)[0].decode("ascii", "replace").upper()
                # Per method too (``method_PUT``, ``method_HEAD``...): what a run asked for.
                self.stats[f"method_{method}"] += 1
                eligible = self.s.fault_methods is None or method in self.s.fault_methods
                if self.s.fault_match:
                    request_line = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                    eligible = eligible and self.s.fault_match in request_line
                if eligible and self.s.fault_skip > 0:
                    # The first fault_skip eligible requests pass untouched.
                    self.s.fault_skip -= 1
                    eligible = False
                if eligible and self.s.faults and self.rng.random() < self.s.fault_rate:
                    fault = self.rng.choice(self.s.faults)
                if fault == "reset":
                    self.count_fault("reset")
                    # Read part of the body, then drop the connection.
                    if length:
                        await creader.read(min(length, 1024))
                    cwriter.transport.abort()
                    return
                if fault == "stall":
                    self.count_fault("stall")
                    await asyncio.sleep(self.s.stall_s)
                    cwriter.transport.abort()
                    return
                rejected = rejection(self.s, head)
                if rejected:
                    fault = None
                    self.stats[rejected[1]] += 1
                    self.write_stats()
                if fault in ERRORS or rejected:
                    if fault:
                        self.count_fault(fault)
                    if chunked:
                        await self.copy_chunked(creader, None)
                    elif length:
                        await creader.readexactly(length)
                    status, reason, code, message = rejected[0] if rejected else ERRORS[fault]
                    body = (
                        '<?xml version="1.0" encoding="UTF-8"?>\n'
                        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                    ).encode()
                    cwriter.write(
                        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )
                    await cwriter.drain()
                    cwriter.close()
                    return
                await asyncio.sleep(self.s.delay)
                uwriter.write(head)
                remaining = length
                if chunked:
                    await self.copy_chunked(creader, uwriter)
                while remaining:
                    chunk = await creader.read(min(remaining, 65536))
                    if not chunk:
                        return
                    uwriter.write(chunk)
                    remaining -= len(chunk)
                await uwriter.drain()
                if fault == "drop":
                    # The server gets the whole request and answers; the client hears nothing.
                    self.count_fault("drop")
                    await self.read_head(ureader)
                    cwriter.transport.abort()
                    return
                if fault == "hold":
                    # The same, but counted once the server has answered (so a test knows the
                    # work is done), and the client hears nothing for stall_s seconds.
                    await self.read_head(ureader)
                    self.count_fault("hold")
                    await asyncio.sleep(self.s.stall_s)
                    cwriter.transport.abort()
                    return
                if fault == "corrupt":
                    self.count_fault("corrupt")
                if fault == "stall_body":
                    self.count_fault("stall_body")
                if not await self.relay_response(
                    ureader, cwriter, head, corrupt=fault == "corrupt", stall_body=fault == "stall_body"
                ):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            for w in (uwriter, cwriter):
                with contextlib.suppress(Exception):
                    w.close()

    async def copy_chunked(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        """Copies (or, without a writer, reads away) one chunked message body."""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            if writer:
                writer.write(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    if writer:
                        writer.write(line)
                if writer:
                    writer.write(line)
                return
            data = await reader.readexactly(size + 2)
            if writer:
                writer.write(data)

    async def relay_response(
        self,
        ureader: asyncio.StreamReader,
        cwriter: asyncio.StreamWriter,
        request_head: bytes,
        corrupt: bool = False,
        stall_body: bool = False,
    ) -> bool:
        """Copies one response; False when the connection must close afterwards."""
        while True:
            head = await self.read_head(ureader)
            if head is None:
                return False
            status_line = head.split(b"\r\n", 1)[0]
            if b" 100 " in status_line + b" ":
                cwriter.write(head)
                continue
            break
        await asyncio.sleep(self.s.delay)
        cwriter.write(head)
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        is_head = request_head.startswith(b"HEAD ")
        if is_head or status_line.split(b" ")[1:2] in ([b"204"], [b"304"]):
            pass
        elif b"content-length" in headers:
            remaining = int(headers[b"content-length"])
            if stall_body:
                half = await ureader.readexactly(remaining // 2)
                cwriter.write(half)
                await cwriter.drain()
                await asyncio.sleep(self.s.stall_s)
                cwriter.transport.abort()
                return False
            while remaining:
                chunk = await ureader.read(min(remaining, 65536))
                if not chunk:
                    return False
                if corrupt:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    corrupt = False
                cwriter.write(chunk)
                remaining -= len(chunk)
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size_line = await ureader.readuntil(b"\r\n")
                cwriter.write(size_line)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # Optional trailers, then the empty line that ends the message.
                    while (line := await ureader.readuntil(b"\r\n")) != b"\r\n":
                        cwriter.write(line)
                    cwriter.write(line)
                    break
                cwriter.write(await ureader.readexactly(size + 2))
        else:
            while chunk := await ureader.read(65536):
                cwriter.write(chunk)
            await cwriter.drain()
            return False
        await cwriter.drain()
        return headers.get(b"connection", b"").lower() != b"close"


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings(
        delay=args.delay_ms / 1000,
        fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f],
        stall_s=args.stall_s,
        control=args.control,
    )
    proxy = Proxy(settings, args.upstream, args.seed, args.stats)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.listen)
    port = server.sockets[0].getsockname()[1]
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(str(port))
        os.replace(args.ready_file + ".tmp", args.ready_file)
    print(f"listening on {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    proxy.write_stats()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=int, default=0)
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument(
        "--faults",
        default="reset,500,503",
        help="any of reset,stall,400,500,503,drop,hold,corrupt,stall_body",
    )
    p.add_argument("--stall-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--control")
    p.add_argument("--ready-file")
    p.add_argument("--stats")
    asyncio.run(main_async(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
