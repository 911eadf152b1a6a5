#!/usr/bin/env python3
"""Tiny TLS client built on Python's `ssl` module.

Connects, verifies the server against --cafile, sends one HTTP/1.1 GET and
reads the response until the server closes. Standard library only.
"""
import argparse
import socket
import ssl
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1", help="IP to connect to")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--alpn", default="http/1.1")
    ap.add_argument("--min-version", default="TLSv1_3", choices=["TLSv1_2", "TLSv1_3"])
    ap.add_argument("--keylog", default=None)
    args = ap.parse_args()

    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.minimum_version = getattr(ssl.TLSVersion, args.min_version)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    if args.keylog:
        ctx.keylog_filename = args.keylog

    with socket.create_connection((args.host, args.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=args.sni) as tls:
            req = (f"GET / HTTP/1.1\r\nHost: {args.sni}\r\n"
                   f"User-Agent: mtlscope-capture/1\r\nConnection: close\r\n\r\n").encode()
            tls.sendall(req)
            resp = b""
            while True:
                try:
                    chunk = tls.recv(4096)
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                resp += chunk
            status = resp.split(b"\r\n", 1)[0]
            print(f"client: {tls.version()} {tls.cipher()[0]} alpn={tls.selected_alpn_protocol()} "
                  f"status={status!r}", file=sys.stderr)
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
