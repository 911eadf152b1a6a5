//! Decode: a frame's bytes to a borrowed view of its TCP segment.
//!
//! This module owns link layers (Ethernet with VLAN/QinQ and PPPoE, Linux cooked SLL and
//! SLL2, BSD null/loopback, raw IP), cheap tunnels (VXLAN, Geneve, IP-in-IP) and the
//! IP/TCP headers. The usual frame (untagged Ethernet, SLL, SLL2 or raw IP; plain IPv4
//! or IPv6; TCP) is read directly, everything else through etherparse; a test checks
//! that both read a frame alike wherever the direct path answers. It copies nothing: the
//! segment view borrows the frame. Anything it cannot decode is a [`DecodeError`] that
//! the caller counts; nothing here is fatal. IP fragments are counted, never read as TCP.

use std::fmt;
use std::net::IpAddr;

use etherparse::{IpNumber, LaxIpSlice, TcpSlice};

use crate::capture::{Frame, LinkType};

/// How many encapsulations (VLAN tags, PPPoE, tunnels) are peeled before giving up.
const MAX_ENCAPSULATION: usize = 8;
/// VXLAN's IANA UDP port.
const VXLAN_PORT: u16 = 4789;
/// Geneve's IANA UDP port.
const GENEVE_PORT: u16 = 6081;

/// One end of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// IPv4 or IPv6 address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

/// `ip:port` (or `[ip]:port`) as an endpoint, for tests.
#[cfg(test)]
pub(crate) fn test_endpoint(s: &str) -> Endpoint {
    let a: std::net::SocketAddr = s.parse().expect("ip:port");
    Endpoint {
        ip: a.ip(),
        port: a.port(),
    }
}

impl fmt::Display for Endpoint {
    /// `ip:port` for IPv4, `[ip]:port` for IPv6.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// TCP header flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

/// A TCP segment, borrowed from its frame.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    /// Sender.
    pub src: Endpoint,
    /// Receiver.
    pub dst: Endpoint,
    /// Sequence number (wire value).
    pub seq: u32,
    /// Acknowledgement number (wire value).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Captured payload bytes.
    pub payload: &'a [u8],
    /// Payload length on the wire, as the IP header says; larger than `payload.len()`
    /// when the capture's snaplen cut the frame.
    pub wire_len: u32,
    /// Linux cooked v2 interface index, when the link layer carries one.
    pub ifindex: Option<u32>,
}

/// Why a frame yielded no TCP segment. Cheap to copy, hashable, so it can be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    /// A link type this build does not decode.
    UnsupportedLinkType(LinkType),
    /// The link layer carries something other than IP (ARP, LLC, LLDP, ...).
    NotIp,
    /// IP carrying something other than TCP (UDP, ICMP, ...).
    NotTcp,
    /// A fragment of an IP datagram; not reassembled, so never read as TCP.
    IpFragment,
    /// Too few captured bytes for a header at this layer.
    Truncated(Layer),
    /// A header with impossible fields at this layer.
    Malformed(Layer),
    /// More nested encapsulations than [`MAX_ENCAPSULATION`].
    TooDeep,
}

/// The protocol layer a decode error happened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Link layer (Ethernet, SLL, null, PPPoE, tunnel headers).
    Link,
    /// IPv4 or IPv6.
    Ip,
    /// TCP.
    Tcp,
}

impl DecodeError {
    /// Stable snake_case name used as a counter key in the summary.
    pub fn name(&self) -> &'static str {
        match self {
            DecodeError::UnsupportedLinkType(_) => "unsupported_link_type",
            DecodeError::NotIp => "not_ip",
            DecodeError::NotTcp => "not_tcp",
            DecodeError::IpFragment => "ip_fragment",
            DecodeError::Truncated(Layer::Link) => "truncated_link",
            DecodeError::Truncated(Layer::Ip) => "truncated_ip",
            DecodeError::Truncated(Layer::Tcp) => "truncated_tcp",
            DecodeError::Malformed(Layer::Link) => "malformed_link",
            DecodeError::Malformed(Layer::Ip) => "malformed_ip",
            DecodeError::Malformed(Layer::Tcp) => "malformed_tcp",
            DecodeError::TooDeep => "too_many_encapsulations",
        }
    }
}

/// Whether this build can decode frames of `link`.
pub fn supports(link: LinkType) -> bool {
    matches!(
        link,
        LinkType::NULL
            | LinkType::ETHERNET
            | LinkType::RAW_12
            | LinkType::RAW_14
            | LinkType::RAW
            | LinkType::LOOP
            | LinkType::LINUX_SLL
            | LinkType::IPV4
            | LinkType::IPV6
            | LinkType::LINUX_SLL2
    )
}

/// What sits at the start of a byte slice while peeling encapsulations.
#[derive(Clone, Copy)]
enum Next {
    Ethernet,
    EtherType(u16),
    Ip,
}

/// Decodes the TCP segment inside `frame`.
#[inline]
pub fn decode<'a>(frame: &Frame<'a>) -> Result<TcpSegment<'a>, DecodeError> {
    match fast(frame) {
        Some(seg) => Ok(seg),
        None => decode_any(frame),
    }
}

/// The usual frame, decoded without etherparse: Ethernet (no tag), Linux cooked SLL or
/// SLL2, or raw IP; then IPv4 without fragmentation or IPv6 without extension headers,
/// whole (not cut by a snaplen); then TCP. Anything else, or any field out of the
/// ordinary, is `None` and left to [`decode_any`]; where this answers, it answers exactly
/// as [`decode_any`] would (a test compares them).
#[inline]
fn fast<'a>(frame: &Frame<'a>) -> Option<TcpSegment<'a>> {
    let data = frame.data;
    let (ether_type, ip, ifindex) = match frame.link {
        LinkType::ETHERNET => (data.get(12..14)?, data.get(14..)?, None),
        LinkType::LINUX_SLL => (data.get(14..16)?, data.get(16..)?, None),
        LinkType::LINUX_SLL2 => {
            let i = data.get(4..8)?;
            let ifindex = u32::from_be_bytes([i[0], i[1], i[2], i[3]]);
            (data.get(0..2)?, data.get(20..)?, Some(ifindex))
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => {
            (&[0x08, 0x00][..], data, None)
        }
        _ => return None,
    };
    if ether_type != [0x08, 0x00] && ether_type != [0x86, 0xdd] {
        return None;
    }
    let (src, dst, tcp) = match ip.first()? >> 4 {
        4 => {
            let h = ip.get(..20)?;
            let header_len = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            // Not fragmented (no "more fragments", offset 0), TCP, whole.
            if h[6] & 0x3f != 0 || h[7] != 0 || h[9] != 6 || header_len < 20 {
                return None;
            }
            if total < header_len || total > ip.len() {
                return None;
            }
            let src = IpAddr::from([h[12], h[13], h[14], h[15]]);
            let dst = IpAddr::from([h[16], h[17], h[18], h[19]]);
            (src, dst, &ip[header_len..total])
        }
        6 => {
            let h = ip.get(..40)?;
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if h[6] != 6 || len == 0 || 40 + len > ip.len() {
                return None;
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).ok()?);
            (src, dst, &ip[40..40 + len])
        }
        _ => return None,
    };
    let t = tcp.get(..20)?;
    let header_len = usize::from(t[12] >> 4) * 4;
    if header_len < 20 || header_len > tcp.len() {
        return None;
    }
    let word = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    Some(TcpSegment {
        src: Endpoint {
            ip: src,
            port: u16::from_be_bytes([t[0], t[1]]),
        },
        dst: Endpoint {
            ip: dst,
            port: u16::from_be_bytes([t[2], t[3]]),
        },
        seq: word(4),
        ack: word(8),
        flags: TcpFlags(t[13] & 0x1f),
        payload: &tcp[header_len..],
        wire_len: (tcp.len() - header_len) as u32,
        ifindex,
    })
}

/// Decodes the TCP segment inside any frame this build supports.
fn decode_any<'a>(frame: &Frame<'a>) -> Result<TcpSegment<'a>, DecodeError> {
    let data = frame.data;
    let mut ifindex = None;
    let (next, rest) = match frame.link {
        LinkType::ETHERNET => (Next::Ethernet, data),
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => {
            (Next::Ip, data)
        }
        LinkType::NULL | LinkType::LOOP => {
            let h = data.get(..4).ok_or(DecodeError::Truncated(Layer::Link))?;
            let raw = [h[0], h[1], h[2], h[3]];
            // NULL is in the writer's byte order, LOOP in network order; accept either.
            let family = if frame.link == LinkType::LOOP {
                u32::from_be_bytes(raw)
            } else {
                let le = u32::from_le_bytes(raw);
                if le > 0xffff {
                    u32::from_be_bytes(raw)
                } else {
                    le
                }
            };
            match family {
                2 | 10 | 24 | 28 | 30 => (Next::Ip, &data[4..]),
                _ => return Err(DecodeError::NotIp),
            }
        }
        LinkType::LINUX_SLL => {
            let h = data.get(..16).ok_or(DecodeError::Truncated(Layer::Link))?;
            (
                Next::EtherType(u16::from_be_bytes([h[14], h[15]])),
                &data[16..],
            )
        }
        LinkType::LINUX_SLL2 => {
            let h = data.get(..20).ok_or(DecodeError::Truncated(Layer::Link))?;
            ifindex = Some(u32::from_be_bytes([h[4], h[5], h[6], h[7]]));
            (
                Next::EtherType(u16::from_be_bytes([h[0], h[1]])),
                &data[20..],
            )
        }
        other => return Err(DecodeError::UnsupportedLinkType(other)),
    };
    let mut seg = peel(next, rest, 0)?;
    seg.ifindex = ifindex;
    Ok(seg)
}

/// Peels link-layer encapsulations until an IP header, then decodes IP and TCP.
fn peel(mut next: Next, mut data: &[u8], depth: usize) -> Result<TcpSegment<'_>, DecodeError> {
    for _ in 0..MAX_ENCAPSULATION {
        match next {
            Next::Ethernet => {
                let h = data.get(..14).ok_or(DecodeError::Truncated(Layer::Link))?;
                next = Next::EtherType(u16::from_be_bytes([h[12], h[13]]));
                data = &data[14..];
            }
            Next::EtherType(0x0800) | Next::EtherType(0x86dd) => next = Next::Ip,
            // 802.1Q, 802.1ad (QinQ) and the old QinQ value: a 4-byte tag.
            Next::EtherType(0x8100) | Next::EtherType(0x88a8) | Next::EtherType(0x9100) => {
                let h = data.get(..4).ok_or(DecodeError::Truncated(Layer::Link))?;
                next = Next::EtherType(u16::from_be_bytes([h[2], h[3]]));
                data = &data[4..];
            }
            // PPPoE session: 6-byte header, then the 2-byte PPP protocol.
            Next::EtherType(0x8864) => {
                let h = data.get(..8).ok_or(DecodeError::Truncated(Layer::Link))?;
                match u16::from_be_bytes([h[6], h[7]]) {
                    0x0021 | 0x0057 => next = Next::Ip,
                    _ => return Err(DecodeError::NotIp),
                }
                data = &data[8..];
            }
            Next::EtherType(_) => return Err(DecodeError::NotIp),
            Next::Ip => return decode_ip(data, depth),
        }
    }
    Err(DecodeError::TooDeep)
}

fn decode_ip(data: &[u8], depth: usize) -> Result<TcpSegment<'_>, DecodeError> {
    if depth >= MAX_ENCAPSULATION {
        return Err(DecodeError::TooDeep);
    }
    let version = data.first().ok_or(DecodeError::Truncated(Layer::Ip))? >> 4;
    if version != 4 && version != 6 {
        return Err(DecodeError::NotIp);
    }
    let (ip, _ext_err) = LaxIpSlice::from_slice(data).map_err(|e| {
        use etherparse::err::ip::LaxHeaderSliceError;
        match e {
            LaxHeaderSliceError::Len(_) => DecodeError::Truncated(Layer::Ip),
            LaxHeaderSliceError::Content(_) => DecodeError::Malformed(Layer::Ip),
        }
    })?;
    let payload = ip.payload();
    if payload.fragmented {
        return Err(DecodeError::IpFragment);
    }
    // Length of the IP payload on the wire, which the snaplen may have cut.
    let offset = payload.payload.as_ptr() as usize - data.as_ptr() as usize;
    let total = match &ip {
        LaxIpSlice::Ipv4(v4) => usize::from(v4.header().total_len()),
        LaxIpSlice::Ipv6(v6) => 40 + usize::from(v6.header().payload_length()),
    };
    let wire_payload = if payload.incomplete && total > offset {
        total - offset
    } else {
        payload.payload.len()
    };
    let (src, dst) = (ip.source_addr(), ip.destination_addr());
    match payload.ip_number {
        IpNumber::TCP => {}
        IpNumber::UDP => return decode_tunnel(payload.payload, depth),
        IpNumber::IPV4 | IpNumber::IPV6 => return decode_ip(payload.payload, depth + 1),
        _ => return Err(DecodeError::NotTcp),
    }
    let tcp = TcpSlice::from_slice(payload.payload).map_err(|e| {
        use etherparse::err::tcp::HeaderSliceError;
        match e {
            HeaderSliceError::Len(_) => DecodeError::Truncated(Layer::Tcp),
            HeaderSliceError::Content(_) => DecodeError::Malformed(Layer::Tcp),
        }
    })?;
    let header_len = tcp.header_slice().len();
    let captured = tcp.payload();
    let wire_len = wire_payload.saturating_sub(header_len).max(captured.len());
    let flags = (tcp.fin() as u8 * TcpFlags::FIN)
        | (tcp.syn() as u8 * TcpFlags::SYN)
        | (tcp.rst() as u8 * TcpFlags::RST)
        | (tcp.psh() as u8 * TcpFlags::PSH)
        | (tcp.ack() as u8 * TcpFlags::ACK);
    Ok(TcpSegment {
        src: Endpoint {
            ip: src,
            port: tcp.source_port(),
        },
        dst: Endpoint {
            ip: dst,
            port: tcp.destination_port(),
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(flags),
        payload: captured,
        wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
        ifindex: None,
    })
}

/// VXLAN and Geneve carry a frame inside UDP; anything else over UDP is not TCP.
fn decode_tunnel(udp: &[u8], depth: usize) -> Result<TcpSegment<'_>, DecodeError> {
    let h = udp.get(..8).ok_or(DecodeError::NotTcp)?;
    let dst_port = u16::from_be_bytes([h[2], h[3]]);
    let body = &udp[8..];
    match dst_port {
        VXLAN_PORT => {
            let v = body.get(..8).ok_or(DecodeError::Truncated(Layer::Link))?;
            if v[0] & 0x08 == 0 {
                return Err(DecodeError::NotTcp);
            }
            peel(Next::Ethernet, &body[8..], depth + 1)
        }
        GENEVE_PORT => {
            let g = body.get(..8).ok_or(DecodeError::Truncated(Layer::Link))?;
            let opt_len = usize::from(g[0] & 0x3f) * 4;
            let inner = body
                .get(8 + opt_len..)
                .ok_or(DecodeError::Truncated(Layer::Link))?;
            match u16::from_be_bytes([g[2], g[3]]) {
                0x6558 => peel(Next::Ethernet, inner, depth + 1),
                0x0800 | 0x86dd => decode_ip(inner, depth + 1),
                _ => Err(DecodeError::NotIp),
            }
        }
        _ => Err(DecodeError::NotTcp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;
    use etherparse::PacketBuilder;

    fn frame(link: LinkType, data: &[u8]) -> Frame<'_> {
        Frame {
            number: 1,
            ts: Timestamp(0),
            link,
            interface: 0,
            data,
            orig_len: data.len() as u32,
            block: None,
        }
    }

    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1000, 65535)
            .ack(77);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn raw_ipv4_tcp() {
        let pkt = ipv4_tcp(b"hello");
        let s = decode(&frame(LinkType::RAW, &pkt)).unwrap();
        assert_eq!(s.src.to_string(), "10.0.0.1:40000");
        assert_eq!(s.dst.to_string(), "10.0.0.2:443");
        assert_eq!(
            (s.seq, s.ack, s.payload, s.wire_len),
            (1000, 77, &b"hello"[..], 5)
        );
        assert!(s.flags.has(TcpFlags::ACK));
    }

    #[test]
    fn ethernet_qinq_and_pppoe() {
        let ip = ipv4_tcp(b"x");
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x88, 0x64]);
        f.extend_from_slice(&[0x11, 0, 0, 1, 0, 0, 0x00, 0x21]);
        f.extend_from_slice(&ip);
        let s = decode(&frame(LinkType::ETHERNET, &f)).unwrap();
        assert_eq!(s.payload, b"x");
    }

    #[test]
    fn sll2_keeps_interface_index() {
        let ip = ipv4_tcp(b"");
        let mut f = vec![0x08, 0x00, 0, 0, 0, 0, 0, 7];
        f.extend_from_slice(&[0u8; 12]);
        f.extend_from_slice(&ip);
        let s = decode(&frame(LinkType::LINUX_SLL2, &f)).unwrap();
        assert_eq!(s.ifindex, Some(7));
    }

    #[test]
    fn snaplen_cut_keeps_the_wire_length() {
        let pkt = ipv4_tcp(&[7u8; 100]);
        let cut = &pkt[..pkt.len() - 60];
        let s = decode(&frame(LinkType::RAW, cut)).unwrap();
        assert_eq!((s.payload.len(), s.wire_len), (40, 100));
    }

    #[test]
    fn fragments_are_not_tcp() {
        let mut pkt = ipv4_tcp(b"0123456789");
        pkt[6] = 0x20; // more fragments
        assert_eq!(
            decode(&frame(LinkType::RAW, &pkt)).unwrap_err(),
            DecodeError::IpFragment
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            for link in [0, 1, 101, 108, 113, 228, 229, 276, 999] {
                let _ = decode(&frame(LinkType(link), &data));
            }
        }
    }

    /// Whether two decodings are the same view of the same bytes.
    fn same(a: &TcpSegment<'_>, b: &TcpSegment<'_>) -> bool {
        (a.src, a.dst, a.seq, a.ack, a.flags, a.wire_len, a.ifindex)
            == (b.src, b.dst, b.seq, b.ack, b.flags, b.wire_len, b.ifindex)
            && std::ptr::eq(a.payload, b.payload)
    }

    /// Every frame of every committed capture, with its link type.
    fn committed_frames() -> Vec<(LinkType, Vec<u8>)> {
        let mut out = Vec::new();
        for path in crate::capture::committed_captures() {
            let bytes = std::fs::read(&path).expect("readable");
            let mut r = crate::capture::CaptureReader::new(&bytes[..]).expect("a capture");
            let _ = r.for_each_frame(|f| out.push((f.link, f.data.to_vec())));
        }
        out
    }

    /// Checks that the fast path, where it answers, answers as the general one does.
    fn fast_agrees(link: LinkType, data: &[u8]) -> bool {
        let f = frame(link, data);
        match fast(&f) {
            None => false,
            Some(a) => {
                let b = decode_any(&f);
                assert!(
                    b.as_ref().is_ok_and(|b| same(&a, b)),
                    "fast {a:?}, general {b:?}, frame {data:02x?}"
                );
                true
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_the_general_one_on_committed_captures() {
        let frames = committed_frames();
        let fast = frames.iter().filter(|(l, d)| fast_agrees(*l, d)).count();
        // Most real frames take the fast path.
        assert!(fast * 10 > frames.len() * 9, "{fast} of {}", frames.len());
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_the_general_one_on_damaged_frames(
            pick in 0usize..10_000,
            flips in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 0..4),
            cut in 0usize..2000,
            link in proptest::sample::select(vec![1u32, 101, 113, 228, 229, 276]),
        ) {
            let frames = committed_frames();
            let (real, bytes) = &frames[pick % frames.len()];
            let mut data = bytes.clone();
            for (at, x) in flips {
                if let Some(b) = data.get_mut(at) {
                    *b ^= x;
                }
            }
            data.truncate(data.len() - cut % (data.len() + 1));
            // Its own link type, and others that read the same bytes differently.
            fast_agrees(*real, &data);
            fast_agrees(LinkType(link), &data);
        }
    }
}
