#!/usr/bin/env python3
"""Check the scenario captures against expected.json with tshark (standard library only).

For every capture it
  * enumerates the TCP flows (client = sender of the SYN; without a SYN, the endpoint
    that expected.json names as server) and requires a one-to-one match with the
    expected flows (server ip:port + client_ip [+ nth]);
  * re-assembles both directions from tshark's tcp.payload and parses the TLS records
    itself: ClientHello SNI / ALPN / supported_versions, ServerHello version and ALPN,
    plaintext alerts (content type 21, length 2), first bytes of each direction;
  * with --keylog, lets tshark decrypt (all TLS keys of the run) to establish the
    ground truth of `handshake` (both Finished seen, any non-close_notify alert,
    server Certificate present or not) and to print the encrypted alerts and the
    negotiated ALPN;
  * reads SPIFFE URI SANs from clear-text certificates (TLS 1.2) for mesh identities;
  * checks leg, paired_with (start times within 100 ms), file size < 60 KB, link type.
Class, confidence and diagnosis are judgements; they are printed, not checked.

--dump prints the facts of every flow (used to write README.md).
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys

FIELDS = ["frame.number", "frame.time_relative", "tcp.stream", "ip.src", "tcp.srcport", "ip.dst",
          "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.len", "tcp.payload", "sll.ifindex"]


def tshark(args):
    out = subprocess.run(["tshark", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"tshark failed: {args}")
    return out.stdout


def linktype(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
    magic = struct.unpack("<I", hdr[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        return struct.unpack("<I", hdr[20:24])[0]
    return struct.unpack(">I", hdr[20:24])[0]


class Flow:
    def __init__(self, stream):
        self.stream = stream
        self.client = None  # (ip, port)
        self.server = None
        self.syn_seen = False
        self.first_time = None
        self.first_frame = None
        self.pkts = []  # (time, src(ip,port), flags, seq, len, payload bytes, ifindex)
        self.facts = {}

    def key(self):
        return f"{self.server[0]}:{self.server[1]}", self.client[0]


def read_packets(path):
    flows = {}
    out = tshark(["-r", path, "-o", "tcp.relative_sequence_numbers:FALSE", "-T", "fields",
                  "-E", "separator=|", *sum([["-e", f] for f in FIELDS], [])])
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) < len(FIELDS) or not parts[2]:
            continue
        (num, t, stream, src, sport, dst, dport, flags, seq, ln, payload, ifindex) = parts[:12]
        fl = flows.setdefault(int(stream), Flow(int(stream)))
        flags = int(flags, 16)
        src_ep, dst_ep = (src, int(sport)), (dst, int(dport))
        if fl.first_time is None:
            fl.first_time, fl.first_frame = float(t), int(num)
        if flags & 0x02 and not flags & 0x10:  # SYN without ACK
            fl.client, fl.server, fl.syn_seen = src_ep, dst_ep, True
        fl.endpoints = (src_ep, dst_ep)
        fl.pkts.append((float(t), src_ep, flags, int(seq), int(ln or 0),
                        bytes.fromhex(payload.replace(":", "")) if payload else b"", ifindex))
    return flows


def reassemble(fl, src):
    """Bytes sent by src, in sequence order, without duplicates."""
    segs = sorted({(seq, data) for (_, s, _, seq, ln, data, _) in fl.pkts if s == src and data})
    out, nxt = b"", None
    for seq, data in segs:
        if nxt is None:
            nxt = seq
        if seq + len(data) <= nxt:
            continue
        if seq > nxt:  # gap (capture started late or loss): keep going
            nxt = seq
        out += data[nxt - seq:]
        nxt = seq + len(data)
    return out


def records(data):
    recs, p = [], 0
    while p + 5 <= len(data) and data[p] in (20, 21, 22, 23) and data[p + 1] == 3:
        ln = int.from_bytes(data[p + 3:p + 5], "big")
        recs.append((data[p], int.from_bytes(data[p + 1:p + 3], "big"), ln, data[p + 5:p + 5 + ln]))
        p += 5 + ln
    return recs


def hello_ext(body, is_client):
    """Parse Client/ServerHello body (after the 4-byte handshake header)."""
    info = {"legacy_version": int.from_bytes(body[0:2], "big")}
    p = 2 + 32
    sid = body[p + 1:p + 1 + body[p]]
    p += 1 + body[p]
    if is_client:
        p += 2 + int.from_bytes(body[p:p + 2], "big")
        p += 1 + body[p]
    else:
        info["cipher"] = int.from_bytes(body[p:p + 2], "big")
        p += 3
    info["session_id"] = sid.hex()
    exts = []
    if p + 2 <= len(body):
        end = p + 2 + int.from_bytes(body[p:p + 2], "big")
        p += 2
        while p + 4 <= end:
            et = int.from_bytes(body[p:p + 2], "big")
            el = int.from_bytes(body[p + 2:p + 4], "big")
            eb = body[p + 4:p + 4 + el]
            exts.append(et)
            if et == 0 and is_client:
                info["sni"] = eb[5:5 + int.from_bytes(eb[3:5], "big")].decode()
            elif et == 16:
                names, q = [], 2
                while q < len(eb):
                    names.append(eb[q + 1:q + 1 + eb[q]].decode())
                    q += 1 + eb[q]
                info["alpn"] = names
            elif et == 43:
                if is_client:
                    info["supported_versions"] = [int.from_bytes(eb[i:i + 2], "big")
                                                  for i in range(1, 1 + eb[0], 2)]
                else:
                    info["selected_version"] = int.from_bytes(eb[0:2], "big")
            p += 4 + el
    info["extensions"] = exts
    return info


def first_kind(data):
    if not data:
        return None
    if data[0] == 0x16 and data[1:2] == b"\x03":
        return "tls-handshake"
    if data[0] in (20, 21, 23) and data[1:2] == b"\x03":
        return "tls-record"
    if re.match(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r\n", data):
        return "http-request"
    if data.startswith(b"HTTP/1."):
        return "http-response"
    return "other"


def analyse(fl):
    c = reassemble(fl, fl.client)
    s = reassemble(fl, fl.server)
    f = fl.facts
    f["client_first"], f["server_first"] = first_kind(c), first_kind(s)
    f["client_bytes"], f["server_bytes"] = len(c), len(s)
    f["client_head"] = c[:40]
    f["server_head"] = s[:40]
    crec, srec = records(c), records(s)
    f["client_records"] = [(t, ln) for (t, _, ln, _) in crec]
    f["server_records"] = [(t, ln) for (t, _, ln, _) in srec]
    f["alerts"] = []
    ch = sh = None
    if f["client_first"] == "tls-handshake" and crec and crec[0][3][:1] == b"\x01":
        ch = hello_ext(crec[0][3][4:], True)
    if srec and srec[0][0] == 22 and srec[0][3][:1] == b"\x02":
        sh = hello_ext(srec[0][3][4:], False)
    f["ch"], f["sh"] = ch, sh
    # Plaintext alerts: content type 21 with a 2-byte body. Merge by time order.
    alerts = []
    for who, ep in (("client", fl.client), ("server", fl.server)):
        data = reassemble(fl, ep)
        for (t, _, ln, body) in records(data):
            if t == 21 and ln == 2:
                alerts.append((who, body[0], body[1]))
    # order: by first packet carrying a 7-byte-ish alert record of that side
    def when(a):
        ep = fl.client if a[0] == "client" else fl.server
        for (t, src, _, _, ln, data, _) in fl.pkts:
            if src == ep and b"\x15\x03" in data and data.find(bytes([a[1], a[2]])) >= 0:
                return t
        return 0.0
    f["alerts"] = sorted(alerts, key=when)
    f["rst_from"] = sorted({("client" if src == fl.client else "server")
                            for (_, src, flags, *_r) in fl.pkts if flags & 0x04})
    f["fin_from"] = sorted({("client" if src == fl.client else "server")
                            for (_, src, flags, *_r) in fl.pkts if flags & 0x01})
    f["syn_seen"] = fl.syn_seen
    f["ifindexes"] = sorted({p[6] for p in fl.pkts if p[6]})
    f["packets"] = len(fl.pkts)


def decrypted_facts(path, keylog, ports):
    """tshark with key log: per stream, handshake types / alerts / ALPN / URIs by sender port."""
    args = ["-r", path, "-o", f"tls.keylog_file:{keylog}" if keylog else "tls.desegment_ssl_records:TRUE"]
    for p in sorted(ports):
        if p != 443:
            args += ["-d", f"tcp.port=={p},tls"]
    args += ["-Y", "tls", "-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
             "-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport", "-e", "tls.handshake.type",
             "-e", "tls.alert_message.level", "-e", "tls.alert_message.desc",
             "-e", "tls.handshake.extensions_alpn_str", "-e", "x509ce.uniformResourceIdentifier",
             "-e", "tls.record.content_type"]
    out = tshark(args)
    per = {}
    for line in out.splitlines():
        st, src, sport, hs, lvl, desc, alpn, uris, ctype = (line.split("|") + [""] * 9)[:9]
        d = per.setdefault(int(st), [])
        d.append({"src": (src, int(sport)), "hs": [int(x) for x in hs.split(",") if x],
                  "alert_level": [int(x) for x in lvl.split(",") if x],
                  "alert": [int(x) for x in desc.split(",") if x],
                  "alpn": alpn, "uris": [u for u in uris.split(",") if u],
                  "ctype": [int(x) for x in ctype.split(",") if x]})
    return per


def handshake_truth(fl, dec, have_keys):
    f = fl.facts
    if f["client_first"] not in ("tls-handshake", "tls-record"):
        return "none"
    if f["ch"] is None:
        return "not-seen"
    cfin = sfin = scert = False
    bad_alerts = []
    for d in dec or []:
        side = "client" if d["src"] == fl.client else "server"
        if 20 in d["hs"]:
            cfin, sfin = (True, sfin) if side == "client" else (cfin, True)
        if 11 in d["hs"] and side == "server":
            scert = True
        for a in d["alert"]:
            if a != 0:
                bad_alerts.append((side, a))
    f["decrypted_alerts"] = bad_alerts
    f["client_finished"], f["server_finished"], f["server_cert"] = cfin, sfin, scert
    if not have_keys:
        if f["alerts"]:
            return "failed"
        return "?"
    if cfin and sfin and not bad_alerts:
        return "resumed" if not scert else "complete"
    if bad_alerts or f["fin_from"] or f["rst_from"]:
        return "failed"
    return "incomplete"


def spiffe(uri):
    m = re.match(r"^spiffe://[^/]+/ns/([^/]+)/sa/([^/]+)$", uri or "")
    return {"ns": m.group(1), "sa": m.group(2)} if m else None


def parse_istio_sni(sni):
    m = re.match(r"^outbound_\.(\d+)_\.([^.]*)_\.(([^.]+)\.([^.]+)\.svc\.cluster\.local)$", sni or "")
    if not m:
        return None
    return {"port": int(m.group(1)), "subset": m.group(2), "service": m.group(4),
            "namespace": m.group(5), "host": m.group(3)}


def is_pod_local(server, client_ip):
    ip, port = server.rsplit(":", 1)
    return (ip.startswith("127.") or client_ip.startswith("127.") or port in ("15001", "15006"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--keylog")
    ap.add_argument("--only", help="space separated capture names")
    ap.add_argument("--dump", action="store_true")
    args = ap.parse_args()
    expected = json.load(open(args.expected))
    only = set(args.only.split()) if args.only else None
    have_keys = bool(args.keylog and os.path.getsize(args.keylog) > 0)
    errors = []

    def err(cap, msg):
        errors.append(f"{cap}: {msg}")
        print(f"  !! {msg}")

    names_on_disk = sorted(n for n in os.listdir(args.dir) if n.endswith(".pcap"))
    names_expected = [e["capture"] for e in expected]
    for n in names_on_disk:
        if n not in names_expected:
            errors.append(f"{n}: capture not described in expected.json")
    if args.dump:  # also describe captures that expected.json does not mention yet
        for n in names_on_disk:
            if n not in names_expected and (not only or n in only):
                expected.append({"capture": n, "flows": []})
    for e in expected:
        cap = e["capture"]
        if only and cap not in only:
            continue
        path = os.path.join(args.dir, cap)
        print(f"\n=== {cap}")
        if not os.path.exists(path):
            err(cap, "file missing")
            continue
        size = os.path.getsize(path)
        lt = linktype(path)
        print(f"  size {size} bytes, link type {lt}")
        if size >= 60 * 1024:
            err(cap, f"size {size} >= 60 KB")
        if e.get("linktype") is not None and lt != e["linktype"]:
            err(cap, f"link type {lt}, expected {e['linktype']}")
        flows = read_packets(path)
        exp_servers = {fe["server"] for fe in e["flows"]}
        for fl in flows.values():
            if fl.client is None:  # no SYN in the capture: pick the endpoint expected.json calls server
                a, b = fl.endpoints
                a_s, b_s = f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"
                if b_s in exp_servers or (a_s not in exp_servers and b[1] < a[1]):
                    fl.client, fl.server = a, b
                else:
                    fl.client, fl.server = b, a
            analyse(fl)
        tls_ports = {fl.server[1] for fl in flows.values()
                     if fl.facts["client_first"] in ("tls-handshake", "tls-record")
                     or fl.facts["server_first"] in ("tls-handshake", "tls-record")}
        dec = decrypted_facts(path, args.keylog if have_keys else None, tls_ports)
        # nth: order among flows with the same (server, client_ip)
        groups = {}
        for fl in sorted(flows.values(), key=lambda x: x.first_time):
            k = fl.key()
            fl.nth = len(groups.setdefault(k, []))
            groups[k].append(fl)
        for fl in flows.values():
            fl.facts["handshake"] = handshake_truth(fl, dec.get(fl.stream), have_keys)
            uris = {"client": [], "server": []}
            sel_alpn = []
            for d in dec.get(fl.stream, []):
                side = "client" if d["src"] == fl.client else "server"
                uris[side] += d["uris"]
                if side == "server" and d["alpn"] and (2 in d["hs"] or 8 in d["hs"]):
                    sel_alpn.append(d["alpn"])
            fl.facts["uris"] = uris
            fl.facts["alpn_selected_decrypted"] = sel_alpn
        seen = set()
        for i, fe in enumerate(e["flows"]):
            k = (fe["server"], fe["client_ip"])
            cands = groups.get(k, [])
            nth = fe.get("nth", 0)
            tag = f"flow {fe['client_ip']} -> {fe['server']}" + (f" #{nth}" if "nth" in fe else "")
            if nth >= len(cands):
                err(cap, f"{tag}: not in capture")
                continue
            if len(cands) > 1 and "nth" not in fe:
                err(cap, f"{tag}: {len(cands)} flows share server+client_ip; give 'nth'")
            fl = cands[nth]
            seen.add(fl.stream)
            f = fl.facts
            ch, sh = f["ch"], f["sh"]
            sni = ch.get("sni") if ch else None
            alpn = ch.get("alpn") if ch else None  # null when the extension is absent
            ver = None
            if sh:
                ver = "0x%04x" % sh.get("selected_version", sh["legacy_version"])
            alerts = [{"from": w, "description": d} for (w, _lvl, d) in f["alerts"]]
            print(f"  {tag}: stream {fl.stream}, {f['packets']} pkts, client->{f['client_first']} "
                  f"server->{f['server_first']}, sni={sni} alpn={alpn} version={ver} "
                  f"handshake={f['handshake']} alerts={alerts} dec_alerts={f.get('decrypted_alerts')} "
                  f"rst={f['rst_from']} fin={f['fin_from']} syn={f['syn_seen']} "
                  f"alpn_sel(dec)={f['alpn_selected_decrypted']} uris={f['uris']}")
            if args.dump:
                print(f"      client records {f['client_records'][:14]}")
                print(f"      server records {f['server_records'][:14]}")
                print(f"      client head {f['client_head']!r}")
                print(f"      server head {f['server_head']!r}")
            def chk(field, got):
                if field in fe and fe[field] != got:
                    err(cap, f"{tag}: {field} expected {fe[field]!r}, capture says {got!r}")
            chk("sni", sni)
            chk("alpn_offered", alpn)
            chk("version", ver)
            chk("alerts", alerts)
            if f["handshake"] != "?":
                chk("handshake", f["handshake"])
            chk("leg", "pod-local" if is_pod_local(fe["server"], fe["client_ip"]) else "network")
            if fe.get("class") == "plaintext" and f["client_first"] not in ("http-request", "other"):
                err(cap, f"{tag}: class plaintext but the client sent {f['client_first']}")
            # app_protocol (mtlscope's contract): http/1.x for a clear-text HTTP client, tls
            # when the client sent a ClientHello; null means "not checked".
            ap_ = fe.get("app_protocol")
            if ap_ is not None:
                if f["client_first"] == "http-request" and ap_ != "http/1.x":
                    err(cap, f"{tag}: client sends HTTP/1.x but app_protocol is {ap_!r}")
                elif ch and ap_ != "tls":
                    err(cap, f"{tag}: client sends a ClientHello but app_protocol is {ap_!r}")
            # mesh: consistent with the SNI, identities only if certificates were in clear
            mesh = fe.get("mesh")
            parsed = parse_istio_sni(sni)
            if parsed:
                if not mesh:
                    err(cap, f"{tag}: Istio SNI but mesh is null")
                else:
                    for k2, v in parsed.items():
                        if mesh.get(k2) != v:
                            err(cap, f"{tag}: mesh.{k2} expected {mesh.get(k2)!r}, SNI says {v!r}")
            if mesh:
                clear = ver == "0x0303"
                for side, key in (("client", "client_identity"), ("server", "server_identity")):
                    want = mesh.get(key)
                    got = None
                    if clear:
                        for u in f["uris"][side]:
                            got = got or spiffe(u)
                    if want != got:
                        err(cap, f"{tag}: mesh.{key} expected {want}, certificates in clear say {got}")
        for fl in flows.values():
            if fl.stream not in seen:
                err(cap, f"flow {fl.client} -> {fl.server} (stream {fl.stream}) not in expected.json")
                if args.dump:
                    f = fl.facts
                    print(f"      t={fl.first_time:.4f} nth={fl.nth} {f['packets']} pkts client->{f['client_first']} "
                          f"server->{f['server_first']} ch={f['ch'] and {k: f['ch'].get(k) for k in ('sni', 'alpn', 'supported_versions')}} "
                          f"sh={f['sh'] and {k: f['sh'].get(k) for k in ('selected_version', 'legacy_version', 'alpn', 'extensions')}} "
                          f"handshake={f['handshake']} alerts={f['alerts']} dec_alerts={f.get('decrypted_alerts')} "
                          f"rst={f['rst_from']} fin={f['fin_from']} syn={f['syn_seen']} if={f['ifindexes']} "
                          f"alpn_sel(dec)={f['alpn_selected_decrypted']} uris={f['uris']}")
                    print(f"      client records {f['client_records'][:16]}")
                    print(f"      server records {f['server_records'][:16]}")
                    print(f"      client head {f['client_head']!r}")
                    print(f"      server head {f['server_head']!r}")
        # paired_with: the named flow exists and starts within 100 ms
        for fe in e["flows"]:
            pw = fe.get("paired_with")
            if not pw:
                continue
            mine = groups.get((fe["server"], fe["client_ip"]), [])
            other = [fl for k, v in groups.items() if k[0] == pw for fl in v]
            other = [o for o in other if not mine or o is not mine[fe.get("nth", 0)]]
            if not mine or not other:
                err(cap, f"{fe['server']}: paired_with {pw} not found")
                continue
            m = mine[fe.get("nth", 0)]
            dt = min(abs(o.first_time - m.first_time) for o in other)
            if dt > 0.1:
                err(cap, f"{fe['server']}: paired flow {pw} starts {dt * 1000:.0f} ms apart")
    print()
    if errors:
        print(f"{len(errors)} problem(s):")
        for x in errors:
            print("  " + x)
        return 1
    print("all expectations that tshark can check hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
