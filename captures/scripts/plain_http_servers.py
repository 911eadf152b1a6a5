#!/usr/bin/env python3
"""Plain-text HTTP servers for the cleartext capture.

* --http1-port: HTTP/1.1 server (http.server with protocol_version HTTP/1.1)
* --h2c-port:   minimal HTTP/2 cleartext server for "prior knowledge"
                clients (curl --http2-prior-knowledge). It speaks just
                enough HTTP/2 to answer one GET: SETTINGS exchange, one
                HEADERS (":status: 200", HPACK static table) + DATA reply,
                then GOAWAY.

Each server handles --count connections and exits. Standard library only.
"""
import argparse
import http.server
import socket
import struct
import sys
import threading

BODY1 = b"hello over cleartext HTTP/1.1\n"
BODY2 = b"hello over cleartext h2c\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types / flags
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x7, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


class H1Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mtlscope-capture/1"
    sys_version = ""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY1)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(BODY1)
        self.close_connection = True

    def log_message(self, fmt, *a):
        print("http1: " + fmt % a, file=sys.stderr)


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("eof")
        buf += chunk
    return buf


def hpack_literal(name_index: int, value: bytes) -> bytes:
    # Literal Header Field without Indexing, indexed name (RFC 7541 6.2.2), 4-bit prefix.
    assert name_index < 15 or name_index - 15 < 128
    pre = bytes([name_index]) if name_index < 15 else bytes([0x0F, name_index - 15])
    return pre + bytes([len(value)]) + value


def serve_h2c_conn(conn: socket.socket) -> None:
    if recv_exact(conn, len(PREFACE)) != PREFACE:
        print("h2c: bad preface", file=sys.stderr)
        return
    conn.sendall(frame(SETTINGS, 0, 0, struct.pack("!HI", 0x3, 100)))  # MAX_CONCURRENT_STREAMS=100
    answered = False
    while True:
        try:
            hdr = recv_exact(conn, 9)
        except ConnectionError:
            return
        length = int.from_bytes(hdr[:3], "big")
        ftype, flags = hdr[3], hdr[4]
        stream = struct.unpack("!I", hdr[5:9])[0] & 0x7FFFFFFF
        payload = recv_exact(conn, length) if length else b""
        if ftype == SETTINGS and not flags & ACK:
            conn.sendall(frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            conn.sendall(frame(PING, ACK, 0, payload))
        elif ftype == HEADERS and flags & END_STREAM and not answered:
            block = (b"\x88"  # :status 200 (static index 8)
                     + hpack_literal(31, b"text/plain")  # content-type
                     + hpack_literal(28, str(len(BODY2)).encode()))  # content-length
            conn.sendall(frame(HEADERS, END_HEADERS, stream, block)
                         + frame(DATA, END_STREAM, stream, BODY2))
            answered = True
            print(f"h2c: answered stream {stream}", file=sys.stderr)
        elif ftype == GOAWAY:
            conn.sendall(frame(GOAWAY, 0, 0, struct.pack("!II", stream if answered else 0, 0)))
            return


def h2c_server(bind: str, port: int, count: int, ready: threading.Event) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((bind, port))
    ls.listen(4)
    ready.set()
    for _ in range(count):
        conn, _ = ls.accept()
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                serve_h2c_conn(conn)
            except (OSError, ConnectionError) as exc:
                print(f"h2c: {exc}", file=sys.stderr)
    ls.close()


def http1_server(bind: str, port: int, count: int, ready: threading.Event) -> None:
    http.server.HTTPServer.allow_reuse_address = True
    srv = http.server.HTTPServer((bind, port), H1Handler)
    ready.set()
    for _ in range(count):
        srv.handle_request()
    srv.server_close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--http1-port", type=int, default=8000)
    ap.add_argument("--h2c-port", type=int, default=0, help="0 disables the h2c server")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--ready-file", default=None)
    args = ap.parse_args()

    threads, events = [], []
    for fn, port in ((http1_server, args.http1_port), (h2c_server, args.h2c_port)):
        if port:
            ev = threading.Event()
            t = threading.Thread(target=fn, args=(args.bind, port, args.count, ev), daemon=True)
            t.start()
            threads.append(t)
            events.append(ev)
    for ev in events:
        ev.wait(10)
    if args.ready_file:
        open(args.ready_file, "w").close()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
