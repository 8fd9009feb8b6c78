#!/usr/bin/env python3
"""A TLS terminator on 127.0.0.1 in front of the plain-HTTP S3 test server.

Accepts TLS with the given certificate and key, then pipes bytes both ways to
127.0.0.1:UPSTREAM over plain TCP (one upstream connection per client connection, so
HTTP keep-alive carries through). Counts completed and failed TLS handshakes and writes
them as JSON to --stats after each change: the tests check that the client reuses its
connections and that an untrusted certificate is not retried.

Usage: tlsproxy.py --upstream PORT --cert CERT.pem --key KEY.pem --ready-file F --stats F
Writes the port it listens on to --ready-file; runs until killed.
"""

import argparse
import asyncio
import contextlib
import json
import os
import ssl

STATS = {"handshakes": 0, "failed_handshakes": 0}


def write_stats(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(STATS, f)
    os.replace(tmp, path)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--stats", required=True)
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    async def handle(reader, writer):
        # The handshake is done here, not by the server, so that failures can be counted.
        try:
            await writer.start_tls(ctx)
        except (ssl.SSLError, ConnectionError, OSError):
            STATS["failed_handshakes"] += 1
            write_stats(args.stats)
            writer.transport.abort()
            return
        STATS["handshakes"] += 1
        write_stats(args.stats)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", args.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    write_stats(args.stats)
    port = server.sockets[0].getsockname()[1]
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, args.ready_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
