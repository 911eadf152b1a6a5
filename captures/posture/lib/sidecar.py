#!/usr/bin/env python3
"""Envoy-sidecar stand-in for mtlscope's scenario captures (standard library only).

It behaves like an Istio sidecar *on the wire*, not like Envoy inside:

  outbound  listen on 127.0.0.1:15001 in the client pod (the app connects there
            directly; there is no iptables REDIRECT on the outbound side), then
            open mTLS to the server pod: SNI outbound_.<port>_._.<svc>.<ns>.svc.cluster.local,
            ALPN istio-peer-exchange,istio (--protocol tcp) or
            istio-http/1.1,istio,http/1.1 (--protocol http), SPIFFE client certificate.
            --upstream-tls simple/mutual instead originates ordinary TLS
            (DestinationRule SIMPLE/MUTUAL) with a user SNI.
  inbound   listen on 0.0.0.0:15006; iptables REDIRECTs the pod's inbound TCP here
            (as istio-iptables does), the original destination comes from
            SO_ORIGINAL_DST. STRICT: a first byte that is not a TLS handshake record
            gets the connection reset (SO_LINGER 0). PERMISSIVE: plaintext, and TLS
            without an Istio ALPN, pass through untouched; TLS with an Istio ALPN is
            terminated (client certificate required). The decrypted (or passed-through)
            bytes go to podIP:port from source 127.0.0.6.
  gateway   --downstream tls-simple/tls-mutual: terminate the client's TLS on the
            gateway's own port and forward over mesh mTLS.

HTTP mode (--protocol http) reads the request head before choosing an upstream, answers
bytes that are not HTTP/1.x with Envoy's "400 Bad Request" (access log flag DPE) and a
failed upstream TLS handshake with a 503. Inbound HTTP adds x-forwarded-client-cert.
No metadata-exchange (MX) blob is written in TCP mode (Envoy would add one record of a
few hundred bytes per direction).
"""
import argparse
import datetime
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time

ISTIO_ALPNS = {"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"}
SO_ORIGINAL_DST = 80
# Envoy's default upstream TLS 1.2 cipher list (BoringSSL names; OpenSSL spells them alike).
ENVOY_CLIENT_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
                        "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
                        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384")
# Istio's inbound (server) TLS 1.2 cipher list.
ISTIO_SERVER_CIPHERS = ("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                        "AES256-GCM-SHA384:AES128-GCM-SHA256")
HTTP_REQ_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r?$")

ARGS = None


def log(msg):
    ts = time.strftime("%H:%M:%S")
    print(f"[{ts}] sidecar({ARGS.name}): {msg}", file=sys.stderr, flush=True)


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def version(name):
    return {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[name]


def http_date():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def envoy_reply(status, reason, body):
    body = body.encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(body)}\r\n"
            f"content-type: text/plain\r\ndate: {http_date()}\r\nserver: envoy\r\n"
            f"connection: close\r\n\r\n").encode() + body


def rst_close(sock):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# --------------------------------------------------------------------------
# ClientHello peek (for PERMISSIVE filter-chain matching)
# --------------------------------------------------------------------------
def peek_first_bytes(sock, timeout):
    """Return ("tls", record) for a TLS handshake record, ("plain", bytes), or (None, b"")."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        data = sock.recv(16384, socket.MSG_PEEK)
        if not data:
            return None, b""
        if data[0] != 0x16:
            return "plain", data
        if len(data) >= 5:
            need = 5 + int.from_bytes(data[3:5], "big")
            if len(data) >= need:
                return "tls", data[:need]
        time.sleep(0.005)  # the rest of the record is still on its way
    return ("tls" if data[:1] == b"\x16" else ("plain" if data else None)), data


def clienthello_alpn(record):
    """ALPN protocol names offered in a ClientHello record (best effort)."""
    try:
        p = 5
        if record[p] != 1:
            return []
        p += 4 + 2 + 32
        p += 1 + record[p]
        p += 2 + int.from_bytes(record[p:p + 2], "big")
        p += 1 + record[p]
        end = p + 2 + int.from_bytes(record[p:p + 2], "big")
        p += 2
        while p + 4 <= end:
            etype = int.from_bytes(record[p:p + 2], "big")
            elen = int.from_bytes(record[p + 2:p + 4], "big")
            body = record[p + 4:p + 4 + elen]
            if etype == 16:
                out, q = [], 2
                while q < len(body):
                    n = body[q]
                    out.append(body[q + 1:q + 1 + n].decode("ascii", "replace"))
                    q += 1 + n
                return out
            p += 4 + elen
    except IndexError:
        pass
    return []


# --------------------------------------------------------------------------
# TLS contexts
# --------------------------------------------------------------------------
def downstream_ctx(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = version(a.down_min)
    ctx.maximum_version = version(a.down_max)
    ctx.load_cert_chain(a.down_cert, a.down_key)
    if a.down_ciphers:
        ctx.set_ciphers(a.down_ciphers)
    if a.down_ca:
        ctx.load_verify_locations(a.down_ca)
    if a.downstream in ("mesh-strict", "mesh-permissive", "tls-mutual"):
        ctx.verify_mode = ssl.CERT_REQUIRED
    if a.down_alpn:
        ctx.set_alpn_protocols(a.down_alpn.split(","))
    ctx.num_tickets = a.down_tickets
    if a.keylog:
        ctx.keylog_filename = a.keylog
    return ctx


def upstream_ctx(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = version(a.up_min)
    ctx.maximum_version = version(a.up_max)
    ctx.check_hostname = a.up_verify_hostname
    if a.up_ca:
        ctx.load_verify_locations(a.up_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if a.up_cert:
        ctx.load_cert_chain(a.up_cert, a.up_key)
    if a.up_ciphers:
        ctx.set_ciphers(a.up_ciphers)
    if a.alpn:
        ctx.set_alpn_protocols(a.alpn.split(","))
    if a.keylog:
        ctx.keylog_filename = a.keylog
    return ctx


def peer_uri(tls):
    try:
        cert = tls.getpeercert()
    except (ValueError, OSError):
        return None
    for kind, val in (cert or {}).get("subjectAltName", ()):
        if kind == "URI":
            return val
    return None


# --------------------------------------------------------------------------
# byte pump: one thread per connection, select() over both sockets
# --------------------------------------------------------------------------
def send_all(sock, data, timeout=10.0):
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        try:
            n = sock.send(view)
            view = view[n:]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            if time.monotonic() > deadline:
                raise TimeoutError("send timed out")
            select.select([], [sock], [], 0.05)


def half_close(sock):
    """Propagate EOF: close_notify for TLS, then FIN (reading stays possible)."""
    try:
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.unwrap()  # sends close_notify; non-blocking -> raises WantRead
            except (ssl.SSLError, OSError, ValueError):
                pass
        socket.socket.shutdown(sock, socket.SHUT_WR)
    except OSError:
        pass


def pump(down, up, on_upstream_error=None, idle=10.0):
    peer = {down: up, up: down}
    name = {down: "downstream", up: "upstream"}
    eof = set()
    got_from_up = False
    for s in (down, up):
        s.setblocking(False)
    while len(eof) < 2:
        live = [s for s in (down, up) if s not in eof]
        ready = [s for s in live if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            ready, _, _ = select.select(live, [], [], idle)
            if not ready:
                log("idle timeout")
                break
        for s in ready:
            try:
                data = s.recv(16384)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                continue
            except (ssl.SSLError, OSError) as exc:
                log(f"{name[s]} error: {exc}")
                if s is up and not got_from_up and on_upstream_error:
                    try:
                        on_upstream_error(exc)
                    except OSError:
                        pass
                return
            if data:
                if s is up:
                    got_from_up = True
                try:
                    send_all(peer[s], data)
                except (ssl.SSLError, OSError) as exc:
                    log(f"{name[peer[s]]} send error: {exc}")
                    return
            else:
                eof.add(s)
                if peer[s] not in eof:
                    half_close(peer[s])


def close_all(*socks):
    for s in socks:
        if s is None:
            continue
        try:
            s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# connection handling
# --------------------------------------------------------------------------
def read_http_head(sock, timeout=5.0):
    """Read until the end of the request head. Returns (data, is_http)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(16384)
        except (socket.timeout, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
        first_line = data.split(b"\n", 1)[0]
        if not re.match(rb"^[A-Z]", data) or (b"\n" in data and not HTTP_REQ_LINE.match(first_line)):
            return data, False
    return data, bool(HTTP_REQ_LINE.match(data.split(b"\n", 1)[0]))


def connect_upstream(dst, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        s.bind((source, 0))
    s.settimeout(5)
    s.connect(dst)
    return s


def handle(conn, peer, down_ctx, up_ctx):
    a = ARGS
    down = conn
    up = None
    try:
        dst = hostport(a.upstream) if a.upstream else None
        if a.downstream.startswith("mesh"):
            od = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            orig = (socket.inet_ntoa(od[4:8]), struct.unpack("!H", od[2:4])[0])
            dst = dst or orig
            kind, first = peek_first_bytes(conn, 3.0)
            alpn = clienthello_alpn(first) if kind == "tls" else []
            istio = bool(ISTIO_ALPNS.intersection(alpn))
            log(f"inbound {peer[0]}:{peer[1]} -> {orig[0]}:{orig[1]} first={kind} alpn={alpn}")
            if kind is None:
                conn.close()
                return
            if a.downstream == "mesh-strict" and kind != "tls":
                # No filter chain matches raw_buffer in STRICT: Envoy closes with the
                # request unread, the kernel answers with RST.
                conn.recv(4096)
                log("STRICT: plaintext, no matching filter chain -> RST")
                rst_close(conn)
                return
            if kind == "plain" or (kind == "tls" and not istio and a.downstream == "mesh-permissive"):
                # PERMISSIVE raw_buffer chain, or TLS pass-through chain (app's own TLS).
                up = connect_upstream(dst, a.source)
                log(f"passthrough ({kind}) to {dst[0]}:{dst[1]} from {a.source}")
                pump(down, up)
                return
            conn.settimeout(5)
            down = down_ctx.wrap_socket(conn, server_side=True)
            log(f"mTLS terminated: {down.version()} alpn={down.selected_alpn_protocol()} "
                f"peer={peer_uri(down)}")
        elif a.downstream in ("tls-simple", "tls-mutual"):
            conn.settimeout(5)
            down = down_ctx.wrap_socket(conn, server_side=True)
            log(f"downstream TLS: {down.version()} alpn={down.selected_alpn_protocol()} "
                f"sni-cert={a.down_cert}")

        first = b""
        http_mode = a.protocol == "http"
        if a.protocol == "auto" and isinstance(down, ssl.SSLSocket):
            # Inbound: HTTP filter chain unless the negotiated ALPN is the TCP/MX one.
            http_mode = down.selected_alpn_protocol() != "istio-peer-exchange"
        if http_mode:
            first, ok = read_http_head(down)
            if not first:
                return
            if not ok:
                log(f"not HTTP/1.x ({first[:3].hex()}...): 400 Bad Request (DPE)")
                send_all(down, envoy_reply(400, "Bad Request", "Bad Request"))
                time.sleep(0.05)
                return
            if a.xfcc and isinstance(down, ssl.SSLSocket):
                uri = peer_uri(down)
                if uri:
                    head, _, rest = first.partition(b"\r\n")
                    xfcc = (f"x-forwarded-client-cert: By={a.xfcc};Subject=\"\";"
                            f"URI={uri}").encode()
                    first = head + b"\r\n" + xfcc + b"\r\n" + rest

        up = connect_upstream(dst, a.source)
        if a.upstream_tls != "none":
            try:
                up = up_ctx.wrap_socket(up, server_hostname=a.sni)
                log(f"upstream TLS to {dst[0]}:{dst[1]} sni={a.sni}: {up.version()} "
                    f"alpn={up.selected_alpn_protocol()} peer={peer_uri(up)}")
            except (ssl.SSLError, OSError) as exc:
                log(f"upstream TLS handshake failed: {exc}")
                if http_mode:
                    send_all(down, envoy_reply(
                        503, "Service Unavailable",
                        "upstream connect error or disconnect/reset before headers. reset reason: "
                        f"connection failure, transport failure reason: TLS_error: {exc}"))
                    time.sleep(0.05)
                return
        else:
            log(f"upstream plain to {dst[0]}:{dst[1]} from {a.source or 'default'}")

        def on_upstream_error(exc):
            if http_mode:
                send_all(down, envoy_reply(
                    503, "Service Unavailable",
                    "upstream connect error or disconnect/reset before headers. "
                    f"reset reason: connection termination, transport failure reason: {exc}"))

        if first:
            try:
                send_all(up, first)
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                log(f"upstream send failed: {exc}")
                on_upstream_error(exc)
                return
        pump(down, up, on_upstream_error)
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        log(f"connection from {peer[0]}:{peer[1]} failed: {exc}")
    finally:
        close_all(down, up)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="sidecar")
    ap.add_argument("--listen", required=True, help="IP:PORT")
    ap.add_argument("--count", type=int, default=1, help="connections to serve before exiting")
    ap.add_argument("--ready-file")
    ap.add_argument("--keylog")
    ap.add_argument("--protocol", choices=["tcp", "http", "auto"], default="tcp",
                    help="auto (inbound): HTTP unless ALPN istio-peer-exchange was negotiated")
    ap.add_argument("--downstream", default="plain",
                    choices=["plain", "mesh-strict", "mesh-permissive", "tls-simple", "tls-mutual"])
    ap.add_argument("--down-cert")
    ap.add_argument("--down-key")
    ap.add_argument("--down-ca")
    ap.add_argument("--down-alpn", default="istio-peer-exchange,h2,http/1.1")
    ap.add_argument("--down-min", default="1.2", choices=["1.2", "1.3"])
    ap.add_argument("--down-max", default="1.3", choices=["1.2", "1.3"])
    ap.add_argument("--down-ciphers", default=ISTIO_SERVER_CIPHERS)
    ap.add_argument("--down-tickets", type=int, default=2, help="TLS 1.3 tickets (BoringSSL sends 2)")
    ap.add_argument("--xfcc", help="By= value of x-forwarded-client-cert (inbound HTTP)")
    ap.add_argument("--upstream", help="IP:PORT (inbound: default is SO_ORIGINAL_DST)")
    ap.add_argument("--source", help="bind the upstream socket to this address (127.0.0.6 inbound)")
    ap.add_argument("--upstream-tls", default="none", choices=["none", "mtls", "simple", "mutual"])
    ap.add_argument("--sni")
    ap.add_argument("--alpn")
    ap.add_argument("--up-cert")
    ap.add_argument("--up-key")
    ap.add_argument("--up-ca")
    ap.add_argument("--up-min", default="1.2", choices=["1.2", "1.3"])
    ap.add_argument("--up-max", default="1.3", choices=["1.2", "1.3"])
    ap.add_argument("--up-ciphers", default=ENVOY_CLIENT_CIPHERS)
    ap.add_argument("--up-verify-hostname", action="store_true")
    ARGS = ap.parse_args()

    down_ctx = downstream_ctx(ARGS) if ARGS.downstream != "plain" else None
    up_ctx = upstream_ctx(ARGS) if ARGS.upstream_tls != "none" else None

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(hostport(ARGS.listen))
    ls.listen(16)
    log(f"listening on {ARGS.listen} downstream={ARGS.downstream} protocol={ARGS.protocol} "
        f"upstream={ARGS.upstream or 'ORIGINAL_DST'} upstream-tls={ARGS.upstream_tls}")
    if ARGS.ready_file:
        open(ARGS.ready_file, "w").close()
    threads = []
    for _ in range(ARGS.count):
        conn, peer = ls.accept()
        t = threading.Thread(target=handle, args=(conn, peer, down_ctx, up_ctx), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(30)
    ls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
