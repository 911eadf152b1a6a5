#!/usr/bin/env python3
"""Tiny TLS server built on Python's `ssl` module (OpenSSL underneath).

Accepts --count connections, reads one HTTP/1.x request per connection,
answers with a small fixed HTTP/1.1 response and closes with close_notify.
Standard library only.
"""
import argparse
import socket
import ssl
import sys

BODY = b"hello from python ssl\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--alpn", default="http/1.1", help="comma separated, server preference order")
    ap.add_argument("--min-version", default="TLSv1_3", choices=["TLSv1_2", "TLSv1_3"])
    ap.add_argument("--max-version", default="TLSv1_3", choices=["TLSv1_2", "TLSv1_3"])
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--keylog", default=None)
    ap.add_argument("--ready-file", default=None, help="touched once listening")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = getattr(ssl.TLSVersion, args.min_version)
    ctx.maximum_version = getattr(ssl.TLSVersion, args.max_version)
    ctx.load_cert_chain(args.cert, args.key)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    if args.keylog:
        ctx.keylog_filename = args.keylog
    # Keep the capture small: one session ticket is plenty.
    ctx.num_tickets = 1

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(8)
    if args.ready_file:
        open(args.ready_file, "w").close()

    for _ in range(args.count):
        raw, peer = lsock.accept()
        try:
            with ctx.wrap_socket(raw, server_side=True) as tls:
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    req += chunk
                first_line = req.split(b"\r\n", 1)[0]
                print(f"server: {peer} {tls.version()} alpn={tls.selected_alpn_protocol()} "
                      f"request={first_line!r}", file=sys.stderr)
                resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
                        b"Connection: close\r\n\r\n" + BODY)
                tls.sendall(resp)
                try:
                    tls.unwrap()
                except (ssl.SSLError, OSError):
                    pass
        except (ssl.SSLError, OSError) as exc:
            print(f"server: {peer} error: {exc}", file=sys.stderr)
    lsock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
