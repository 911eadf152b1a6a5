//! Builds a large, realistic mesh capture from the committed real-stack captures, for the
//! whole-capture benchmark (`benches/compare.sh`).
//!
//! Every TCP flow of every input capture is a template. The output interleaves instances
//! of the templates: each instance gets fresh pod addresses (client `10.64.0.0/10`-style
//! pod IPs, server service IPs), a fresh client port, random initial sequence numbers
//! (SACK blocks follow), and, after the template's last payload segment, a response body
//! of log-uniform size (TLS application-data records of random bytes on TLS flows, text
//! on cleartext ones) cut into 1448-byte segments with the client's ACKs, so flows look
//! like mesh requests of a few KiB to a few tens of KiB. A share of the instances never
//! close (long-lived connections still open at the end). Instances start at a steady
//! rate and last a few seconds each, so about `--concurrent` flows are open at once.
//! Frames become Ethernet II (SLL, SLL2, null and raw IP are converted); checksums are
//! recomputed. Deterministic for a given seed.
//!
//! ```sh
//! cargo run --release --example mkbig -- --out /tmp/mesh-1g.pcap            # 1 GiB
//! cargo run --release --example mkbig -- --size 64MiB --out small.pcap captures/*.pcap*
//! ```
//!
//! Next to the output it writes `FILE.meta` (`key=value` lines: packets, flows, bytes,
//! client hellos, the TLS server ports) for the bench script.

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mtlscope::capture::{CaptureReader, LinkType};

/// Payload bytes per body segment (Ethernet MSS with TCP timestamps).
const MSS: usize = 1448;
/// Largest TLS record body in a synthetic response.
const MAX_RECORD: usize = 16 * 1024;

struct Args {
    out: PathBuf,
    size: u64,
    concurrent: u64,
    flow_secs: f64,
    seed: u64,
    open_share: f64,
    body_min: f64,
    body_max: f64,
    inputs: Vec<PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mul = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?}")),
    };
    Ok(n * mul)
}

fn usage() -> ! {
    eprintln!(
        "usage: mkbig [--out FILE] [--size 1GiB] [--concurrent 5000] [--flow-secs 4] \
         [--seed 1] [--open-share 0.01] [--body-min 100] [--body-max 49152] [CAPTURE...]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        out: PathBuf::from("mesh-big.pcap"),
        size: 1 << 30,
        concurrent: 5000,
        flow_secs: 4.0,
        seed: 1,
        open_share: 0.01,
        body_min: 100.0,
        body_max: 49152.0,
        inputs: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |v: String| v.parse::<f64>().unwrap_or_else(|_| usage());
        match x.as_str() {
            "--out" | "-o" => a.out = PathBuf::from(val()),
            "--size" => a.size = parse_size(&val()).unwrap_or_else(|e| panic!("{e}")),
            "--concurrent" => a.concurrent = num(val()) as u64,
            "--flow-secs" => a.flow_secs = num(val()),
            "--seed" => a.seed = num(val()) as u64,
            "--open-share" => a.open_share = num(val()),
            "--body-min" => a.body_min = num(val()),
            "--body-max" => a.body_max = num(val()),
            "-h" | "--help" => usage(),
            _ if x.starts_with('-') => usage(),
            _ => a.inputs.push(PathBuf::from(x)),
        }
    }
    if a.inputs.is_empty() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
        collect_captures(&root, &mut a.inputs);
        a.inputs.sort();
    }
    a
}

fn collect_captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_captures(&p, out);
        } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
            out.push(p);
        }
    }
}

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One packet of a template flow: an Ethernet II frame with IPv4 or IPv6 and TCP.
#[derive(Clone)]
struct Pkt {
    /// Sent by the flow's client.
    from_client: bool,
    frame: Vec<u8>,
    /// Offset of the IP header and of the TCP header.
    l3: usize,
    l4: usize,
    v6: bool,
    /// Bytes lost to the snaplen.
    cut: u32,
}

impl Pkt {
    fn flags(&self) -> u8 {
        self.frame[self.l4 + 13]
    }
    fn seq(&self) -> u32 {
        be32(&self.frame[self.l4 + 4..])
    }
    fn payload_len(&self) -> usize {
        let doff = usize::from(self.frame[self.l4 + 12] >> 4) * 4;
        self.frame.len().saturating_sub(self.l4 + doff)
    }
    fn payload(&self) -> &[u8] {
        let doff = usize::from(self.frame[self.l4 + 12] >> 4) * 4;
        self.frame.get(self.l4 + doff..).unwrap_or(&[])
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

struct Template {
    name: String,
    pkts: Vec<Pkt>,
    /// The client starts with a TLS handshake record.
    tls: bool,
    /// Index before which the response body goes (after the last payload segment that
    /// precedes the close), if any.
    body_at: Option<usize>,
    /// Index of the first FIN or RST.
    close_at: usize,
    /// Next sequence numbers of client and server at `body_at`.
    next: [u32; 2],
    server_port: u16,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The IP packet inside a frame of `link`, if it is one.
fn ip_of(link: LinkType, data: &[u8]) -> Option<&[u8]> {
    let (mut ethertype, mut rest) = match link {
        LinkType::ETHERNET => (be16(data.get(12..14)?), data.get(14..)?),
        LinkType::LINUX_SLL => (be16(data.get(14..16)?), data.get(16..)?),
        LinkType::LINUX_SLL2 => (be16(data.get(0..2)?), data.get(20..)?),
        LinkType::NULL | LinkType::LOOP => (0, data.get(4..)?),
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => {
            (0, data)
        }
        _ => return None,
    };
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = be16(rest.get(2..4)?);
        rest = rest.get(4..)?;
    }
    match ethertype {
        0 | 0x0800 | 0x86dd => Some(rest),
        _ => None,
    }
}

type Key = (Vec<u8>, u16, Vec<u8>, u16);

/// Reads the TCP flows of one capture as templates.
fn load(path: &Path) -> Vec<Template> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader =
        CaptureReader::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut flows: HashMap<Key, (usize, Vec<(bool, Pkt)>)> = HashMap::new();
    let mut order = 0;
    let _ = reader.for_each_frame(|f| {
        let Some(ip) = ip_of(f.link, f.data) else {
            return;
        };
        let cut = f.orig_len.saturating_sub(f.data.len() as u32);
        let (v6, ihl, proto, src, dst) = match ip.first().map(|b| b >> 4) {
            Some(4) if ip.len() >= 20 => {
                let frag = be16(&ip[6..8]) & 0x3fff;
                if frag != 0 {
                    return;
                }
                (
                    false,
                    usize::from(ip[0] & 15) * 4,
                    ip[9],
                    ip[12..16].to_vec(),
                    ip[16..20].to_vec(),
                )
            }
            Some(6) if ip.len() >= 40 => (true, 40, ip[6], ip[8..24].to_vec(), ip[24..40].to_vec()),
            _ => return,
        };
        if proto != 6 || ip.len() < ihl + 20 {
            return;
        }
        let tcp = &ip[ihl..];
        let (sport, dport) = (be16(&tcp[0..2]), be16(&tcp[2..4]));
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        frame.extend_from_slice(&if v6 { [0x86, 0xdd] } else { [0x08, 0x00] });
        frame.extend_from_slice(ip);
        let pkt = Pkt {
            from_client: true,
            frame,
            l3: 14,
            l4: 14 + ihl,
            v6,
            cut,
        };
        let fwd = (src.clone(), sport, dst.clone(), dport);
        let rev = (dst, dport, src, sport);
        let key = if fwd <= rev { fwd.clone() } else { rev };
        let entry = flows.entry(key).or_insert_with(|| {
            order += 1;
            (order, Vec::new())
        });
        entry.1.push((key_is_fwd(&fwd, &entry.1), pkt));
    });
    let mut list: Vec<(usize, Vec<(bool, Pkt)>)> = flows.into_values().collect();
    list.sort_by_key(|(o, _)| *o);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    list.into_iter()
        .filter_map(|(_, pkts)| template(&name, pkts))
        .collect()
}

/// Whether a packet goes in the same direction as the flow's first packet.
fn key_is_fwd(fwd: &Key, so_far: &[(bool, Pkt)]) -> bool {
    let Some((_, first)) = so_far.first() else {
        return true;
    };
    let f = &first.frame;
    let (src, sport) = if first.v6 {
        (
            f[first.l3 + 8..first.l3 + 24].to_vec(),
            be16(&f[first.l4..]),
        )
    } else {
        (
            f[first.l3 + 12..first.l3 + 16].to_vec(),
            be16(&f[first.l4..]),
        )
    };
    src == fwd.0 && sport == fwd.1
}

fn template(name: &str, pkts: Vec<(bool, Pkt)>) -> Option<Template> {
    // The client: the sender of a SYN without ACK, else of the first packet.
    let syn_fwd = pkts
        .iter()
        .find(|(_, p)| p.flags() & (SYN | ACK) == SYN)
        .map(|(fwd, _)| *fwd);
    let client_fwd = syn_fwd.unwrap_or(true);
    let pkts: Vec<Pkt> = pkts
        .into_iter()
        .map(|(fwd, mut p)| {
            p.from_client = fwd == client_fwd;
            p
        })
        .collect();
    let first_server = pkts.iter().find(|p| !p.from_client)?;
    let server_port = be16(&first_server.frame[first_server.l4..]);
    // The client's first stream byte (by sequence number, not arrival) starts a TLS
    // handshake record.
    let client_isn = pkts
        .iter()
        .find(|p| p.from_client && p.flags() & SYN != 0)
        .map(|p| p.seq().wrapping_add(1));
    let tls = pkts
        .iter()
        .filter(|p| p.from_client && p.payload_len() > 0)
        .find(|p| client_isn.is_none_or(|isn| p.seq() == isn))
        .is_some_and(|p| p.payload().starts_with(&[0x16, 3]));
    let close_at = pkts
        .iter()
        .position(|p| p.flags() & (FIN | RST) != 0)
        .unwrap_or(pkts.len());
    let last_data = pkts[..close_at].iter().rposition(|p| p.payload_len() > 0);
    let mut next = [0u32; 2];
    let body_at = last_data.map(|i| i + 1);
    if let Some(at) = body_at {
        for p in &pkts[..at] {
            let side = usize::from(!p.from_client);
            let len = p.payload_len() as u32 + p.cut + u32::from(p.flags() & SYN != 0);
            let end = p.seq().wrapping_add(len);
            if next[side] == 0 || (end.wrapping_sub(next[side]) as i32) > 0 {
                next[side] = end;
            }
        }
    }
    Some(Template {
        name: name.to_string(),
        pkts,
        tls,
        body_at,
        close_at,
        next,
        server_port,
    })
}

/// Addresses, ports and sequence offsets of one instance.
struct Rewrite {
    client: ([u8; 16], u16),
    server: ([u8; 16], u16),
    /// Added to the client's and the server's sequence numbers.
    off: [u32; 2],
}

impl Rewrite {
    fn apply(&self, p: &mut Pkt, body_shift: u32) {
        let (src, dst) = if p.from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let (me, peer) = if p.from_client { (0, 1) } else { (1, 0) };
        // The server's bytes after the body are shifted by its length.
        let shift_mine = if me == 1 { body_shift } else { 0 };
        let shift_peer = if peer == 1 { body_shift } else { 0 };
        let l3 = p.l3;
        let f = &mut p.frame;
        if p.v6 {
            f[l3 + 8..l3 + 24].copy_from_slice(&src.0);
            f[l3 + 24..l3 + 40].copy_from_slice(&dst.0);
        } else {
            f[l3 + 12..l3 + 16].copy_from_slice(&src.0[12..]);
            f[l3 + 16..l3 + 20].copy_from_slice(&dst.0[12..]);
        }
        let t = p.l4;
        f[t..t + 2].copy_from_slice(&src.1.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&dst.1.to_be_bytes());
        let seq = be32(&f[t + 4..])
            .wrapping_add(self.off[me])
            .wrapping_add(shift_mine);
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        if f[t + 13] & ACK != 0 {
            let ack = be32(&f[t + 8..])
                .wrapping_add(self.off[peer])
                .wrapping_add(shift_peer);
            f[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
        }
        // SACK blocks name the peer's sequence numbers.
        let doff = usize::from(f[t + 12] >> 4) * 4;
        let mut i = t + 20;
        let end = (t + doff).min(f.len());
        while i < end {
            match f[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let Some(&len) = f.get(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > end {
                        break;
                    }
                    if kind == 5 {
                        let mut j = i + 2;
                        while j + 4 <= i + len {
                            let v = be32(&f[j..])
                                .wrapping_add(self.off[peer])
                                .wrapping_add(shift_peer);
                            f[j..j + 4].copy_from_slice(&v.to_be_bytes());
                            j += 4;
                        }
                    }
                    i += len;
                }
            }
        }
        checksums(p);
    }
}

fn sum16(mut acc: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [x] = chunks.remainder() {
        acc += u32::from(*x) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header and TCP checksums (the TCP one only when the whole
/// segment was captured).
fn checksums(p: &mut Pkt) {
    let (l3, t) = (p.l3, p.l4);
    let f = &mut p.frame;
    let tcp_len = f.len() - t;
    let mut acc = if p.v6 {
        let mut a = sum16(0, &f[l3 + 8..l3 + 40]);
        a += tcp_len as u32 + 6;
        a
    } else {
        f[l3 + 10] = 0;
        f[l3 + 11] = 0;
        let c = fold(sum16(0, &f[l3..t]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let mut a = sum16(0, &f[l3 + 12..l3 + 20]);
        a += tcp_len as u32 + 6;
        a
    };
    if p.cut == 0 {
        f[t + 16] = 0;
        f[t + 17] = 0;
        acc = sum16(acc, &f[t..]);
        let c = fold(acc);
        f[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    }
}

/// Sets the IP length fields after the payload changed.
fn fix_lengths(p: &mut Pkt) {
    let len = p.frame.len() - p.l3;
    if p.v6 {
        let pl = (len - 40) as u16;
        p.frame[p.l3 + 4..p.l3 + 6].copy_from_slice(&pl.to_be_bytes());
    } else {
        p.frame[p.l3 + 2..p.l3 + 4].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

/// A segment like `proto` (same headers and options) with `payload`, flags, seq and ack
/// in template space (before the instance's rewrite).
fn segment(proto: &Pkt, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Pkt {
    let doff = usize::from(proto.frame[proto.l4 + 12] >> 4) * 4;
    let mut frame = proto.frame[..proto.l4 + doff].to_vec();
    frame.extend_from_slice(payload);
    let t = proto.l4;
    frame[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    frame[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
    frame[t + 13] = flags;
    let mut p = Pkt {
        frame,
        cut: 0,
        ..proto.clone()
    };
    fix_lengths(&mut p);
    p
}

/// The response body: TLS application-data records of random bytes, or text.
fn body_bytes(rng: &mut Rng, len: usize, tls: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 5);
    if tls {
        while out.len() < len {
            let n = (len - out.len()).clamp(1, MAX_RECORD);
            out.extend_from_slice(&[0x17, 3, 3]);
            out.extend_from_slice(&((n + 17) as u16).to_be_bytes());
            for _ in 0..(n + 17).div_ceil(8) {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
            out.truncate(out.len() - ((n + 17).div_ceil(8) * 8 - (n + 17)));
        }
    } else {
        const TEXT: &[u8] =
            b"{\"id\":12345,\"name\":\"reviews-v2\",\"status\":\"ok\",\"items\":[1,2,3]}\n";
        while out.len() < len {
            out.extend_from_slice(TEXT);
        }
        out.truncate(len);
    }
    out
}

/// The packets of one instance, in order, rewritten.
fn instance(t: &Template, rw: &Rewrite, rng: &mut Rng, a: &Args, open: bool) -> Vec<Pkt> {
    let mut out: Vec<Pkt> = Vec::with_capacity(t.pkts.len() + 16);
    let end = if open { t.close_at } else { t.pkts.len() };
    let body_len = match t.body_at {
        Some(_) => (a.body_min * (a.body_max / a.body_min).powf(rng.unit())) as usize,
        None => 0,
    };
    let body = if body_len > 0 {
        body_bytes(rng, body_len, t.tls)
    } else {
        Vec::new()
    };
    let shift = body.len() as u32;
    for (i, p) in t.pkts[..end].iter().enumerate() {
        if Some(i) == t.body_at && !body.is_empty() {
            let proto_s = t
                .pkts
                .iter()
                .rfind(|p| !p.from_client && p.payload_len() > 0);
            let proto_s =
                proto_s.unwrap_or_else(|| t.pkts.iter().find(|p| !p.from_client).unwrap());
            let proto_c = t
                .pkts
                .iter()
                .find(|p| p.from_client && p.flags() & ACK != 0);
            let [c_next, s_next] = t.next;
            let mut off = 0usize;
            let mut n = 0;
            while off < body.len() {
                let take = (body.len() - off).min(MSS);
                let last = off + take == body.len();
                let flags = ACK | if last { PSH } else { 0 };
                let mut seg = segment(
                    proto_s,
                    flags,
                    s_next.wrapping_add(off as u32),
                    c_next,
                    &body[off..off + take],
                );
                off += take;
                n += 1;
                rw.apply(&mut seg, 0);
                out.push(seg);
                if let Some(pc) = proto_c.filter(|_| n % 2 == 0 || last) {
                    let mut ack = segment(pc, ACK, c_next, s_next.wrapping_add(off as u32), &[]);
                    rw.apply(&mut ack, 0);
                    out.push(ack);
                }
            }
        }
        let mut q = p.clone();
        let s = if t.body_at.is_some_and(|at| i >= at) {
            shift
        } else {
            0
        };
        rw.apply(&mut q, s);
        out.push(q);
    }
    out
}

struct Active {
    pkts: Vec<Pkt>,
    next: usize,
    start_ns: i64,
    step_ns: i64,
}

fn main() {
    let a = args();
    let mut templates = Vec::new();
    for p in &a.inputs {
        templates.extend(load(p));
    }
    let templates: Vec<Template> = templates
        .into_iter()
        .filter(|t| t.pkts.len() >= 3 && t.pkts.iter().all(|p| p.cut == 0 || p.payload_len() > 0))
        .collect();
    assert!(!templates.is_empty(), "no TCP flow in the input captures");
    let tls_ports: BTreeSet<u16> = templates
        .iter()
        .filter(|t| t.tls)
        .map(|t| t.server_port)
        .collect();
    eprintln!(
        "mkbig: {} templates from {} captures ({} TLS), target {} bytes",
        templates.len(),
        a.inputs.len(),
        templates.iter().filter(|t| t.tls).count(),
        a.size
    );
    for t in &templates {
        eprintln!(
            "  {:<36} port {:>5} {:>3} packets {}",
            t.name,
            t.server_port,
            t.pkts.len(),
            if t.tls { "tls" } else { "cleartext" }
        );
    }

    let file = std::fs::File::create(&a.out).unwrap_or_else(|e| panic!("{}: {e}", a.out.display()));
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&[2, 0, 4, 0]);
    for x in [0u32, 0, 262_144, 1] {
        hdr.extend_from_slice(&x.to_le_bytes());
    }
    w.write_all(&hdr).unwrap();

    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let t0: i64 = 1_767_225_600 * 1_000_000_000; // 2026-01-01T00:00:00Z
    let flow_ns = (a.flow_secs * 1e9) as i64;
    let gap_ns = (flow_ns / a.concurrent.max(1) as i64).max(1);
    let mut written = hdr.len() as u64;
    // Bytes of the instances started so far (written or still to write).
    let mut committed = written;
    let (mut packets, mut flows, mut hellos) = (0u64, 0u64, 0u64);
    let mut heap: BinaryHeap<std::cmp::Reverse<(i64, u64)>> = BinaryHeap::new();
    let mut active: HashMap<u64, Active> = HashMap::new();
    let mut next_start = t0;
    let mut generating = true;
    let servers: Vec<[u8; 4]> = (0..400u32)
        .map(|i| [10, 96, (i >> 8) as u8, (i & 255) as u8 + 1])
        .collect();
    loop {
        // Start every instance whose start time comes before the next packet due.
        while generating && heap.peek().is_none_or(|r| r.0.0 >= next_start) {
            if committed >= a.size {
                generating = false;
                break;
            }
            let id = flows;
            flows += 1;
            let t = &templates[rng.below(templates.len() as u64) as usize];
            let open = rng.unit() < a.open_share;
            let mut client = [0u8; 16];
            let mut server = [0u8; 16];
            let (c4, s4) = (
                [10, 64 + ((id >> 16) & 63) as u8, (id >> 8) as u8, id as u8],
                servers[rng.below(servers.len() as u64) as usize],
            );
            if t.pkts[0].v6 {
                client[..2].copy_from_slice(&[0xfd, 0]);
                client[8..16].copy_from_slice(&(id + 1).to_be_bytes());
                server[..2].copy_from_slice(&[0xfd, 0x96]);
                server[12..].copy_from_slice(&s4);
            } else {
                client[12..].copy_from_slice(&c4);
                server[12..].copy_from_slice(&s4);
            }
            let rw = Rewrite {
                client: (client, 32768 + ((id * 7919) % 28000) as u16),
                server: (server, t.server_port),
                off: [rng.next() as u32, rng.next() as u32],
            };
            let pkts = instance(t, &rw, &mut rng, &a, open);
            if t.tls {
                hellos += 1;
            }
            committed += pkts.iter().map(|p| 16 + p.frame.len() as u64).sum::<u64>();
            let dur = (flow_ns as f64 * (0.5 + rng.unit())) as i64;
            let step = dur / pkts.len().max(2) as i64;
            heap.push(std::cmp::Reverse((next_start, id)));
            active.insert(
                id,
                Active {
                    pkts,
                    next: 0,
                    start_ns: next_start,
                    step_ns: step.max(1),
                },
            );
            next_start += gap_ns;
        }
        let Some(std::cmp::Reverse((ts, id))) = heap.pop() else {
            break;
        };
        let inst = active.get_mut(&id).expect("active instance");
        let p = &inst.pkts[inst.next];
        let caplen = p.frame.len() as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((ts % 1_000_000_000 / 1000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&caplen.to_le_bytes());
        rec[12..16].copy_from_slice(&(caplen + p.cut).to_le_bytes());
        w.write_all(&rec).unwrap();
        w.write_all(&p.frame).unwrap();
        written += 16 + u64::from(caplen);
        packets += 1;
        inst.next += 1;
        if inst.next < inst.pkts.len() {
            let due = inst.start_ns + inst.step_ns * inst.next as i64;
            heap.push(std::cmp::Reverse((due.max(ts), id)));
        } else {
            active.remove(&id);
        }
    }
    w.flush().unwrap();
    let span = (next_start - t0) as f64 / 1e9;
    let ports: Vec<String> = tls_ports.iter().map(u16::to_string).collect();
    let meta = format!(
        "bytes={written}\npackets={packets}\nflows={flows}\nclient_hellos={hellos}\n\
         tls_ports={}\nconcurrent={}\nspan_secs={span:.1}\nseed={}\n",
        ports.join(","),
        a.concurrent,
        a.seed
    );
    let meta_path = format!("{}.meta", a.out.display());
    std::fs::write(&meta_path, &meta).unwrap();
    eprintln!(
        "mkbig: wrote {} ({written} bytes, {packets} packets, {flows} flows, {hellos} \
         ClientHellos, ~{span:.0} s of capture time)",
        a.out.display()
    );
}
