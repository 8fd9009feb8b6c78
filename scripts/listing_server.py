#!/usr/bin/env python3
"""A listing-only S3 endpoint for the benchmark's no-op simulation (``bench.py --simulate``).

Serves one bucket on 127.0.0.1 whose objects under ``PREFIX/`` are what a sync of
``bench.make_million``'s tree of ``N`` files stores: the same keys and sizes (``aAAA/bBB/fIIIIIII``,
100 files to a directory, i mod 64 bytes of ``x`` with their MD5 as ETag) and a zero-byte
directory marker per directory, every LastModified the second the server started. Keys are
computed, never stored: a page is found from its start key by bisection over the (monotonic)
key of each position, so the server's memory does not grow with N.

Answers ListObjectsV2 (prefix, delimiter, continuation-token, start-after, max-keys up to 1000,
encoding-type=url) and ListMultipartUploads (always empty). Anything else is answered with a
501 error and written to ``--unexpected-log`` (and stderr): a no-op that sends a HeadObject or a
PutObject is then caught. Signatures are not checked. Not a test fixture: benchmark only.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import hashlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

# Above every character of a key: `p + TOP` sorts after every key that starts with p.
TOP = "\U0010ffff"


class Tree:
    """The keys of `bench.make_million`'s tree of `files` files below `prefix`: file i is
    `aAAA/bBB/fIIIIIII` (A = i / 10,000, B = i / 100 mod 100) of i mod 64 bytes `x`, and each
    directory has its marker `aAAA/` or `aAAA/bBB/`. In byte order a directory's marker comes
    first, then its entries (`/` sorts below the digits and letters), so position p is computed:
    every `a` directory but the last holds 1 + 100 markers + 10,000 files, every `b` directory
    but the last 100 files."""

    A_SPAN = 1 + 100 * 101
    B_SPAN = 101

    def __init__(self, files: int, prefix: str) -> None:
        self.files = files
        self.root = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.total = files + -(-files // 10000) + -(-files // 100)

    def key(self, pos: int) -> str:
        a, r = divmod(pos, self.A_SPAN)
        if r == 0:
            return f"{self.root}a{a:03d}/"
        b, s = divmod(r - 1, self.B_SPAN)
        if s == 0:
            return f"{self.root}a{a:03d}/b{b:02d}/"
        return f"{self.root}a{a:03d}/b{b:02d}/f{a * 10000 + b * 100 + s - 1:07d}"

    def first_at_or_after(self, k: str) -> int:
        return bisect.bisect_left(range(self.total), k, key=self.key)

    def first_after(self, k: str) -> int:
        return bisect.bisect_right(range(self.total), k, key=self.key)

    def page(
        self, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[str], list[str], str | None]:
        """Keys and common prefixes of one page, and the start key of the next (None: last page)."""
        pos = max(self.first_at_or_after(prefix), self.first_after(after) if after else 0)
        keys: list[str] = []
        prefixes: list[str] = []
        last = ""
        while pos < self.total and len(keys) + len(prefixes) < max_keys:
            k = self.key(pos)
            if not k.startswith(prefix):
                return keys, prefixes, None
            rest = k[len(prefix) :]
            cut = rest.find(delimiter) if delimiter else -1
            if cut >= 0:
                common = prefix + rest[: cut + len(delimiter)]
                prefixes.append(common)
                last = common + TOP
                pos = self.first_at_or_after(last)
            else:
                keys.append(k)
                last = k
                pos += 1
        if pos < self.total and self.key(pos).startswith(prefix):
            return keys, prefixes, last
        return keys, prefixes, None


def token_of(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode("utf-8")).decode("ascii")


def after_of(token: str) -> str:
    return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amz-request-id", "SIM")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def unexpected(self, why: str) -> None:
        line = f"{self.command} {self.path} ({why})"
        print(f"listing_server: unexpected request: {line}", file=sys.stderr, flush=True)
        with self.server.log_lock, open(self.server.unexpected_log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.reply(
            501,
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
            f"<Message>the listing server answers listings only: {escape(why)}</Message></Error>",
        )

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        bucket = url.path.strip("/")
        if bucket != self.server.bucket:
            self.unexpected(f"not the bucket {self.server.bucket}")
            return
        if "uploads" in query:
            self.reply(200, self.uploads(query))
        elif query.get("list-type") == ["2"]:
            self.reply(200, self.list_v2(query))
        else:
            self.unexpected("not ListObjectsV2 or ListMultipartUploads")

    def do_HEAD(self) -> None:
        self.unexpected("HEAD")

    def do_PUT(self) -> None:
        self.unexpected("PUT")

    def do_POST(self) -> None:
        self.unexpected("POST")

    def do_DELETE(self) -> None:
        self.unexpected("DELETE")

    def uploads(self, query: dict[str, list[str]]) -> str:
        prefix = query.get("prefix", [""])[0]
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Bucket>{self.server.bucket}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
            f"<Prefix>{escape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>"
            "</ListMultipartUploadsResult>"
        )

    def list_v2(self, query: dict[str, list[str]]) -> str:
        prefix = query.get("prefix", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        token = query.get("continuation-token", [""])[0]
        start_after = query.get("start-after", [""])[0]
        max_keys = max(0, min(1000, int(query.get("max-keys", ["1000"])[0])))
        url_enc = query.get("encoding-type", [""])[0] == "url"

        def enc(s: str) -> str:
            return escape(quote(s, safe="/") if url_enc else s)

        after = max(start_after, after_of(token) if token else "")
        keys, prefixes, nxt = self.server.tree.page(prefix, delimiter, after, max_keys)
        srv = self.server
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{srv.bucket}</Name><Prefix>{enc(prefix)}</Prefix>"
            f"<KeyCount>{len(keys) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
        ]
        if delimiter:
            parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        if url_enc:
            parts.append("<EncodingType>url</EncodingType>")
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if start_after:
            parts.append(f"<StartAfter>{enc(start_after)}</StartAfter>")
        parts.append(f"<IsTruncated>{'true' if nxt is not None else 'false'}</IsTruncated>")
        if nxt is not None:
            parts.append(f"<NextContinuationToken>{token_of(nxt)}</NextContinuationToken>")
        for k in keys:
            size = 0 if k.endswith("/") else int(k[-7:]) % 64
            parts.append(
                f"<Contents><Key>{enc(k)}</Key><LastModified>{srv.last_modified}</LastModified>"
                f"<ETag>&quot;{srv.etags[size]}&quot;</ETag>"
                f"<Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            )
        for c in prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{enc(c)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return "".join(parts)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(("127.0.0.1", args.port), Handler)
        self.tree = Tree(args.files, args.prefix)
        self.bucket = args.bucket
        # The ETag (MD5) of each size's content, as SeaweedFS stores it for a single PUT.
        self.etags = [hashlib.md5(b"x" * n).hexdigest() for n in range(64)]
        self.last_modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        self.unexpected_log = args.unexpected_log
        self.log_lock = threading.Lock()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, required=True)
    p.add_argument("--bucket", default="scale")
    p.add_argument("--prefix", default="sim")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unexpected-log", default="/dev/null")
    p.add_argument("--ready-file", default=None, help="write the port here once listening")
    args = p.parse_args()
    if not 0 < args.files <= 10_000_000:
        p.error("the key format holds 1 to 10,000,000 files")
    server = Server(args)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(f"{server.server_address[1]}\n")
        tmp.replace(args.ready_file)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
