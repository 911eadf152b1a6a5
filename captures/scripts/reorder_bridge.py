#!/usr/bin/env python3
"""Userspace L2 bridge between two interfaces that reorders one TCP segment.

Used because the kernel here has no sch_netem. It runs in a "router"
network namespace between the client's and the server's veth pairs and
forwards every Ethernet frame unchanged between --a and --b, with two
exceptions:

* TCP/IPv4 checksums are recomputed (veth hands frames over with
  CHECKSUM_PARTIAL; once they go through a packet socket the receiver
  would otherwise drop them) and frames larger than the MTU (GSO) are
  split into MSS-sized segments;
* the first a->b TCP segment whose payload starts a TLS handshake record
  (0x16 0x03) is held back and released right after the next a->b data
  segment of the same connection has been forwarded (or after
  --hold-timeout seconds). The server therefore receives the ClientHello
  segments out of order, as if the network had reordered them.

Every frame is also delayed by --delay seconds (a constant one-way path
delay, FIFO). This gives the connection a realistic min RTT, so the
client's RACK loss detection (reordering window = min_rtt/4) tolerates
the reorder instead of firing an immediate spurious retransmission.

Packet payload bytes are never modified. Standard library only; Linux only.
"""
import argparse
import collections
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAX_FRAME = 1514


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def parse_tcp(frame: bytes):
    """Return (ihl_off, tcp_off, payload_off, key) for IPv4/TCP frames, else None."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = 14
    ihl = (frame[ip] & 0x0F) * 4
    if frame[ip + 9] != 6:
        return None
    tot = struct.unpack("!H", frame[ip + 2:ip + 4])[0]
    tcp = ip + ihl
    doff = (frame[tcp + 12] >> 4) * 4
    pay = tcp + doff
    key = (frame[ip + 12:ip + 16], frame[ip + 16:ip + 20], frame[tcp:tcp + 2], frame[tcp + 2:tcp + 4])
    return ihl, tcp, pay, ip + tot, key


def fix_checksums(frame: bytearray) -> bytearray:
    p = parse_tcp(bytes(frame))
    if p is None:
        return frame
    ihl, tcp, pay, end, _ = p
    ip = 14
    del frame[end:]  # drop Ethernet padding, if any
    frame[ip + 10:ip + 12] = b"\0\0"
    frame[ip + 10:ip + 12] = struct.pack("!H", csum(bytes(frame[ip:ip + ihl])))
    seg = bytes(frame[tcp:end])
    pseudo = frame[ip + 12:ip + 20] + struct.pack("!BBH", 0, 6, len(seg))
    frame[tcp + 16:tcp + 18] = b"\0\0"
    seg = bytes(frame[tcp:end])
    frame[tcp + 16:tcp + 18] = struct.pack("!H", csum(bytes(pseudo) + seg))
    return frame


def segment(frame: bytes):
    """Software GSO: split an oversized IPv4/TCP frame into MTU-sized frames."""
    p = parse_tcp(frame)
    if p is None or len(frame) <= MAX_FRAME:
        return [bytearray(frame)]
    ihl, tcp, pay, end, _ = p
    ip = 14
    hdr = frame[:pay]
    data = frame[pay:end]
    mss = MAX_FRAME - pay
    seq0 = struct.unpack("!I", frame[tcp + 4:tcp + 8])[0]
    ipid0 = struct.unpack("!H", frame[ip + 4:ip + 6])[0]
    flags = frame[tcp + 13]
    out = []
    for i, off in enumerate(range(0, len(data), mss)):
        chunk = data[off:off + mss]
        last = off + mss >= len(data)
        f = bytearray(hdr) + chunk
        f[ip + 2:ip + 4] = struct.pack("!H", len(f) - ip)
        f[ip + 4:ip + 6] = struct.pack("!H", (ipid0 + i) & 0xFFFF)
        f[tcp + 4:tcp + 8] = struct.pack("!I", (seq0 + off) & 0xFFFFFFFF)
        f[tcp + 13] = flags if last else flags & ~0x09  # clear FIN/PSH except on the last one
        out.append(f)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="client-side interface")
    ap.add_argument("--b", required=True, help="server-side interface")
    ap.add_argument("--hold-timeout", type=float, default=1.0)
    ap.add_argument("--delay", type=float, default=0.010, help="one-way delay in seconds")
    ap.add_argument("--ready-file", default=None)
    args = ap.parse_args()

    socks = {}
    for name in (args.a, args.b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        socks[name] = s
    other = {args.a: socks[args.b], args.b: socks[args.a]}
    by_fd = {s.fileno(): n for n, s in socks.items()}

    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.ready_file:
        open(args.ready_file, "w").close()

    held = None          # (key, frames, deadline)
    done_keys = set()    # connections whose ClientHello was already reordered
    queue = collections.deque()  # (due, out_socket, frame), due is non-decreasing

    def enqueue(out_sock, frames):
        due = time.monotonic() + args.delay
        for f in frames:
            queue.append((due, out_sock, bytes(f)))

    def release():
        nonlocal held
        if held is not None:
            enqueue(socks[args.b], held[1])
            print(f"reorder_bridge: released held segment ({len(held[1])} frame(s))", file=sys.stderr)
            held = None

    def flush_due():
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, out_sock, f = queue.popleft()
            out_sock.send(f)

    def forward():
        nonlocal held
        while True:
            now = time.monotonic()
            deadlines = [d for d in ((queue[0][0] if queue else None),
                                     (held[2] if held is not None else None)) if d is not None]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            ready, _, _ = select.select(list(socks.values()), [], [], timeout)
            if held is not None and time.monotonic() >= held[2]:
                release()
            for s in ready:
                name = by_fd[s.fileno()]
                frame, addr = s.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmissions
                frames = [fix_checksums(f) for f in segment(frame)]
                p = parse_tcp(bytes(frames[0]))
                has_data = p is not None and p[3] > p[2]
                if name == args.a and has_data:
                    key = p[4]
                    starts_hs = frames[0][p[2]:p[2] + 2] == b"\x16\x03"
                    if held is None and starts_hs and key not in done_keys:
                        held = (key, frames, time.monotonic() + args.hold_timeout)
                        done_keys.add(key)
                        print("reorder_bridge: holding first TLS handshake segment", file=sys.stderr)
                        continue
                    if held is not None and held[0] == key:
                        enqueue(other[name], frames)
                        release()
                        continue
                enqueue(other[name], frames)
            flush_due()

    try:
        forward()
    except Stop:
        pass
    release()
    for _, out_sock, f in queue:
        out_sock.send(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
