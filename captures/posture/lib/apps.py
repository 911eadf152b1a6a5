#!/usr/bin/env python3
"""Application servers for mtlscope's scenario captures (standard library only).

  http    plaintext HTTP/1.1 app. Answers a request with 200; answers bytes that are
          not an HTTP/1.x request line (e.g. a TLS ClientHello) at once with
          "HTTP/1.1 400 Bad Request", like any HTTP server.
  https   TLS app on Python's ssl module (OpenSSL). Optional client-certificate
          requirement, ALPN, version limits, and --sni-fail: the SNI callback returns
          ALERT_DESCRIPTION_INTERNAL_ERROR, so OpenSSL answers the ClientHello with a
          plaintext fatal alert internal_error(80) (a gateway without a usable
          certificate for that SNI).
  client  plaintext HTTP/1.1 keep-alive client (several requests on one connection).
  closer  reads what the client sends (a ClientHello) and closes: FIN, or RST with
          --rst (SO_LINGER 0). --hold keeps the connection open without answering.

Each server handles --count connections, then exits.
"""
import argparse
import datetime
import re
import select
import socket
import ssl
import struct
import sys
import time

HTTP_REQ_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r?$")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] app: {msg}", file=sys.stderr, flush=True)


def listen(bind, port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((bind, port))
    ls.listen(16)
    return ls


def http_date():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def response(status, reason, body, server, keep_alive=False):
    body = body.encode()
    conn = "keep-alive" if keep_alive else "close"
    return (f"HTTP/1.1 {status} {reason}\r\nServer: {server}\r\nDate: {http_date()}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {conn}\r\n\r\n").encode() + body


def serve_http_on(sock, args, peer, keep_alive=False):
    """Read one request from sock (plain or TLS) and answer it. False if nothing to answer."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(16384)
        except (socket.timeout, ssl.SSLError, OSError) as exc:
            log(f"{peer}: recv error {exc}")
            return False
        if not chunk:
            break
        data += chunk
        line = data.split(b"\n", 1)[0]
        if not re.match(rb"^[A-Z]", data) or (b"\n" in data and not HTTP_REQ_LINE.match(line)):
            log(f"{peer}: not an HTTP request ({data[:3].hex()}...), 400")
            sock.sendall(response(400, "Bad Request", "Bad Request\n", args.server_name))
            return False
    if not data:
        return False
    line = data.split(b"\r\n", 1)[0]
    xfcc = re.search(rb"(?im)^x-forwarded-client-cert: (.*)\r$", data)
    log(f"{peer}: {line!r}" + (f" xfcc={xfcc.group(1)!r}" if xfcc else ""))
    sock.sendall(response(200, "OK", args.body + "\n", args.server_name, keep_alive))
    return True


def cmd_http(args):
    ls = listen(args.bind, args.port)
    ready(args)
    for _ in range(args.count):
        c, peer = ls.accept()
        try:
            for i in range(args.requests):
                if not serve_http_on(c, args, peer, keep_alive=i + 1 < args.requests):
                    break
            time.sleep(0.05)
        finally:
            c.close()


def cmd_client(args):
    """Plain HTTP/1.1 keep-alive client: several requests on one connection."""
    host, _, port = args.connect.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.source:
        s.bind((args.source, 0))
    s.settimeout(10)
    s.connect((host, int(port)))
    for i in range(args.requests):
        if i:
            time.sleep(args.gap)
        s.sendall((f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\nUser-Agent: python-app/1\r\n"
                   f"Accept: */*\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(16384)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        need = int(m.group(1)) if m else 0
        while len(body) < need:
            chunk = s.recv(16384)
            if not chunk:
                break
            body += chunk
        print(head.split(b"\r\n", 1)[0].decode(), body.decode(errors="replace").strip(), flush=True)
    s.close()


def cmd_https(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = getattr(ssl.TLSVersion, args.min_version)
    ctx.maximum_version = getattr(ssl.TLSVersion, args.max_version)
    ctx.load_cert_chain(args.cert, args.key)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = args.num_tickets
    if args.keylog:
        ctx.keylog_filename = args.keylog
    if args.sni_fail:
        def sni_cb(sslobj, server_name, sslctx):
            log(f"SNI {server_name!r}: no certificate for it -> internal_error")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        ctx.sni_callback = sni_cb
    ls = listen(args.bind, args.port)
    ready(args)
    for _ in range(args.count):
        raw, peer = ls.accept()
        try:
            raw.settimeout(5)
            tls = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log(f"{peer}: handshake failed: {exc}")
            raw.close()
            continue
        log(f"{peer}: {tls.version()} alpn={tls.selected_alpn_protocol()} "
            f"resumed={tls.session_reused} client-cert={bool(tls.getpeercert())}")
        try:
            serve_http_on(tls, args, peer)
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
        except (ssl.SSLError, OSError) as exc:
            log(f"{peer}: error {exc}")
        finally:
            tls.close()


def cmd_closer(args):
    ls = listen(args.bind, args.port)
    ready(args)
    for _ in range(args.count):
        c, peer = ls.accept()
        got = b""
        # read what arrives until the client has been quiet for 200 ms
        while True:
            r, _, _ = select.select([c], [], [], 0.2)
            if not r:
                break
            chunk = c.recv(16384)
            if not chunk:
                break
            got += chunk
        log(f"{peer}: read {len(got)} bytes (first {got[:6].hex()}), "
            + ("holding" if args.hold else ("RST" if args.rst else "FIN")))
        if args.hold:
            time.sleep(args.hold)
            c.close()
        elif args.rst:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            c.close()


def ready(args):
    if args.ready_file:
        open(args.ready_file, "w").close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--source")
    c.add_argument("--connect", required=True, help="IP:PORT")
    c.add_argument("--host", required=True)
    c.add_argument("--path", default="/get")
    c.add_argument("--requests", type=int, default=2)
    c.add_argument("--gap", type=float, default=1.0)
    for name in ("http", "https", "closer"):
        p = sub.add_parser(name)
        p.add_argument("--bind", default="0.0.0.0")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--count", type=int, default=1)
        p.add_argument("--ready-file")
        p.add_argument("--server-name", default="app")
        p.add_argument("--body", default="hello")
        if name == "http":
            p.add_argument("--requests", type=int, default=1, help="requests per connection (keep-alive)")
        if name == "https":
            p.add_argument("--cert", required=True)
            p.add_argument("--key", required=True)
            p.add_argument("--alpn", default="http/1.1")
            p.add_argument("--min-version", default="TLSv1_2", choices=["TLSv1_2", "TLSv1_3"])
            p.add_argument("--max-version", default="TLSv1_3", choices=["TLSv1_2", "TLSv1_3"])
            p.add_argument("--client-ca")
            p.add_argument("--num-tickets", type=int, default=1)
            p.add_argument("--keylog")
            p.add_argument("--sni-fail", action="store_true")
        if name == "closer":
            p.add_argument("--rst", action="store_true")
            p.add_argument("--hold", type=float, default=0.0)
    args = ap.parse_args()
    {"http": cmd_http, "https": cmd_https, "closer": cmd_closer, "client": cmd_client}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
