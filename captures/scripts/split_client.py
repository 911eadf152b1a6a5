#!/usr/bin/env python3
"""TLS client that sends its (real) ClientHello in several TCP segments.

The handshake is driven by a real OpenSSL state machine through
ssl.SSLObject + ssl.MemoryBIO; only the transport is done by hand:
the first flight (the ClientHello record) is written to a TCP_NODELAY
socket in several send() calls with short pauses, so the kernel emits one
TCP segment per call. After that the same SSLObject completes the
handshake over the socket, sends one HTTP/1.1 request and reads the reply.
Standard library only.
"""
import argparse
import socket
import ssl
import sys
import time


def flush(obj_out: ssl.MemoryBIO, sock: socket.socket) -> None:
    data = obj_out.read()
    if data:
        sock.sendall(data)


def pump_until(obj: ssl.SSLObject, inc: ssl.MemoryBIO, out: ssl.MemoryBIO,
               sock: socket.socket, fn):
    """Call fn() until it stops raising SSLWantReadError, feeding socket data."""
    while True:
        try:
            res = fn()
            flush(out, sock)
            return res
        except ssl.SSLWantReadError:
            flush(out, sock)
            data = sock.recv(65536)
            if not data:
                inc.write_eof()
            else:
                inc.write(data)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="split.example.test")
    ap.add_argument("--alpn", default="h2,http/1.1")
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--splits", default="96,256",
                    help="byte offsets inside the ClientHello record where a new segment starts")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between the send() calls")
    ap.add_argument("--keylog", default=None)
    args = ap.parse_args()

    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.set_alpn_protocols(args.alpn.split(","))
    if args.keylog:
        ctx.keylog_filename = args.keylog
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False, server_hostname=args.sni)

    # 1. Let OpenSSL produce the real ClientHello.
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    if not hello or hello[0] != 0x16:
        print("split_client: no ClientHello produced", file=sys.stderr)
        return 1
    offsets = [int(x) for x in args.splits.split(",") if x]
    offsets = [o for o in offsets if 0 < o < len(hello)]
    bounds = [0] + offsets + [len(hello)]
    pieces = [hello[a:b] for a, b in zip(bounds, bounds[1:])]
    print(f"split_client: ClientHello record {len(hello)} bytes -> segments "
          f"{[len(p) for p in pieces]}", file=sys.stderr)

    # 2. Send it in pieces, one TCP segment each.
    sock = socket.create_connection((args.host, args.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    time.sleep(args.pause)
    for i, piece in enumerate(pieces):
        if i:
            time.sleep(args.pause)
        sock.sendall(piece)

    # 3. Finish the real handshake with the same SSLObject.
    pump_until(obj, inc, out, sock, obj.do_handshake)
    print(f"split_client: {obj.version()} {obj.cipher()[0]} alpn={obj.selected_alpn_protocol()}",
          file=sys.stderr)

    req = (f"GET / HTTP/1.1\r\nHost: {args.sni}\r\nUser-Agent: mtlscope-capture/1\r\n"
           f"Connection: close\r\n\r\n").encode()
    obj.write(req)
    flush(out, sock)
    resp = b""
    while True:
        try:
            chunk = pump_until(obj, inc, out, sock, lambda: obj.read(65536))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        if not chunk:
            break
        resp += chunk
    status = resp.split(b"\r\n", 1)[0]
    print(f"split_client: status={status!r}", file=sys.stderr)
    try:
        obj.unwrap()
    except ssl.SSLError:
        pass
    flush(out, sock)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
