//! Hello messages to owned facts.
//!
//! tls-parser decodes the fixed part of ClientHello and ServerHello; the extension list
//! is walked here as plain type-length-value entries, so that one odd extension (a draft
//! code point, a post-quantum key share, GREASE) never hides the others. Nothing that
//! borrows the input escapes this module.

use std::sync::Arc;

use super::ja4::{Ja4Input, ja4_cached};

/// Extension code points this module reads.
mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const SESSION_TICKET: u16 = 35;
    pub const PRE_SHARED_KEY: u16 = 41;
    pub const EARLY_DATA: u16 = 42;
    pub const SUPPORTED_VERSIONS: u16 = 43;
    pub const KEY_SHARE: u16 = 51;
    pub const KEY_SHARE_DRAFT: u16 = 40;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
    pub const ENCRYPTED_SERVER_NAME: u16 = 0xffce;
}

/// The SHA-256 of "HelloRetryRequest": a ServerHello with this random is an HRR.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// A legacy session id. TLS allows at most 32 bytes, held inline: every TLS 1.3
/// ClientHello sends one (for middlebox compatibility), and a separate allocation per
/// hello for it cost more than the bytes. Only an SSL 2.0 hello can carry a longer one.
#[derive(Clone, Debug)]
pub enum SessionId {
    /// At most 32 bytes: the first `len` of `bytes`.
    Inline {
        /// Bytes used.
        len: u8,
        /// The id, zero-padded.
        bytes: [u8; 32],
    },
    /// Longer (SSL 2.0 only).
    Long(Box<[u8]>),
}

impl SessionId {
    /// The id `b`.
    pub fn new(b: &[u8]) -> SessionId {
        let mut bytes = [0; 32];
        match bytes.get_mut(..b.len()) {
            Some(head) => {
                head.copy_from_slice(b);
                SessionId::Inline {
                    len: b.len() as u8,
                    bytes,
                }
            }
            None => SessionId::Long(b.into()),
        }
    }

    /// Its bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SessionId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            SessionId::Long(b) => b,
        }
    }
}

impl Default for SessionId {
    fn default() -> SessionId {
        SessionId::new(&[])
    }
}

impl std::ops::Deref for SessionId {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &SessionId) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SessionId {}

/// What a ClientHello offered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// legacy_version (the record-independent ClientHello.version).
    pub legacy_version: u16,
    /// Every host name in the server_name extension, in order.
    pub sni: Vec<String>,
    /// ALPN protocols offered, in order; `None` when the extension is absent.
    pub alpn: Option<Vec<String>>,
    /// supported_versions offered, GREASE kept; `None` when absent.
    pub supported_versions: Option<Vec<u16>>,
    /// Cipher suites offered, in order, GREASE kept.
    pub ciphers: Vec<u16>,
    /// Extension types, in order.
    pub extensions: Vec<u16>,
    /// supported_groups, in order.
    pub groups: Vec<u16>,
    /// Groups of the key shares sent.
    pub key_share_groups: Vec<u16>,
    /// signature_algorithms, in order.
    pub signature_algorithms: Vec<u16>,
    /// Legacy session id (bytes), used to detect TLS 1.2 resumption.
    pub session_id: SessionId,
    /// A non-empty session ticket was presented.
    pub session_ticket: bool,
    /// A pre_shared_key extension was present (TLS 1.3 resumption attempt).
    pub psk: bool,
    /// early_data (0-RTT) was offered.
    pub early_data: bool,
    /// encrypted_client_hello (or the older encrypted_server_name) was present.
    pub ech: bool,
    /// Sent in SSL 2.0 record format.
    pub sslv2: bool,
    /// JA4 fingerprint (shared with the per-thread memo and the flows of the same
    /// ClientHello shape).
    pub ja4: Arc<str>,
}

/// What a ServerHello (or HelloRetryRequest) chose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// ServerHello.version as on the wire.
    pub legacy_version: u16,
    /// Negotiated version: supported_versions if present, else `legacy_version`.
    pub version: u16,
    /// Chosen cipher suite.
    pub cipher: u16,
    /// ALPN protocol selected (visible in TLS ≤ 1.2 only).
    pub alpn: Option<String>,
    /// Session id echoed or assigned.
    pub session_id: SessionId,
    /// Extension types, in order.
    pub extensions: Vec<u16>,
    /// Group of the server's key share.
    pub key_share_group: Option<u16>,
    /// The server accepted a pre-shared key (TLS 1.3 resumption).
    pub psk: bool,
    /// This is a HelloRetryRequest.
    pub hello_retry: bool,
    /// Sent in SSL 2.0 format.
    pub sslv2: bool,
    /// SSL 2.0 only: the first 3-byte cipher kind the server listed.
    pub sslv2_cipher: Option<u32>,
}

/// A little cursor for length-prefixed fields; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn u16s(b: &[u8]) -> Vec<u16> {
        b.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }
}

/// Walks an extension block as (type, body) pairs; stops quietly at a malformed entry.
fn extensions(block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut r = Reader(block);
    std::iter::from_fn(move || {
        let t = r.u16()?;
        let body = r.vec16()?;
        Some((t, body))
    })
}

/// A name as text: invalid UTF-8 replaced, as `String::from_utf8_lossy` does, after the
/// quicker check that finds the usual name valid.
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Parses a ClientHello handshake body (without the 4-byte handshake header).
///
/// The fixed part is read here with the same checks as tls-parser's
/// `parse_tls_handshake_client_hello` (session id of at most 32 bytes, an even cipher
/// list, an extension block only when whole, trailing bytes ignored): tls-parser would
/// allocate a vector for the ciphers and one for the compression methods of every hello,
/// only for them to be copied. Every list kept is counted before it is filled, so each
/// is allocated once and at its exact size.
pub fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.take(32)?;
    let session_id = r.vec8().filter(|sid| sid.len() <= 32)?;
    let ciphers = r.vec16().filter(|c| c.len() % 2 == 0)?;
    r.vec8()?;
    let ext_block = r.vec16().unwrap_or_default();
    let mut out = ClientHello {
        legacy_version,
        ciphers: Reader::u16s(ciphers),
        session_id: SessionId::new(session_id),
        extensions: Vec::with_capacity(extensions(ext_block).count()),
        ..ClientHello::default()
    };
    for (t, b) in extensions(ext_block) {
        out.extensions.push(t);
        let mut r = Reader(b);
        match t {
            ext::SERVER_NAME => {
                if let Some(list) = r.vec16() {
                    let names = || {
                        let mut l = Reader(list);
                        std::iter::from_fn(move || match (l.u8(), l.vec16()) {
                            (Some(kind), Some(name)) => Some((kind, name)),
                            _ => None,
                        })
                        .filter(|&(kind, _)| kind == 0)
                    };
                    out.sni.reserve_exact(names().count());
                    out.sni.extend(names().map(|(_, name)| text(name)));
                }
            }
            ext::ALPN => {
                let protos = r.vec16().map_or_else(Vec::new, |list| {
                    let protos = || {
                        let mut l = Reader(list);
                        std::iter::from_fn(move || l.vec8())
                    };
                    let mut v = Vec::with_capacity(protos().count());
                    v.extend(protos().map(text));
                    v
                });
                out.alpn = Some(protos);
            }
            ext::SUPPORTED_VERSIONS => out.supported_versions = r.vec8().map(Reader::u16s),
            ext::SUPPORTED_GROUPS => out.groups = r.vec16().map(Reader::u16s).unwrap_or_default(),
            ext::SIGNATURE_ALGORITHMS => {
                out.signature_algorithms = r.vec16().map(Reader::u16s).unwrap_or_default()
            }
            ext::KEY_SHARE | ext::KEY_SHARE_DRAFT => {
                if let Some(list) = r.vec16() {
                    let groups = || {
                        let mut l = Reader(list);
                        std::iter::from_fn(move || match (l.u16(), l.vec16()) {
                            (Some(g), Some(_)) => Some(g),
                            _ => None,
                        })
                    };
                    out.key_share_groups.reserve_exact(groups().count());
                    out.key_share_groups.extend(groups());
                }
            }
            ext::SESSION_TICKET => out.session_ticket = !b.is_empty(),
            ext::PRE_SHARED_KEY => out.psk = true,
            ext::EARLY_DATA => out.early_data = true,
            ext::ENCRYPTED_CLIENT_HELLO | ext::ENCRYPTED_SERVER_NAME => out.ech = true,
            _ => {}
        }
    }
    out.ja4 = ja4_cached(&Ja4Input {
        transport: 't',
        legacy_version: out.legacy_version,
        supported_versions: out.supported_versions.as_deref(),
        has_sni: !out.sni.is_empty(),
        ciphers: &out.ciphers,
        extensions: &out.extensions,
        first_alpn: out
            .alpn
            .as_ref()
            .and_then(|a| a.first())
            .map(|s| s.as_bytes()),
        signature_algorithms: &out.signature_algorithms,
    });
    Some(out)
}

/// Parses a ServerHello body, including TLS 1.3 drafts whose layout lacks the session id
/// and compression fields, and recognizes a HelloRetryRequest.
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut out = ServerHello::default();
    let ext_block = match tls_parser::parse_tls_handshake_server_hello(body) {
        Ok((_, sh)) => {
            out.legacy_version = sh.version.0;
            out.cipher = sh.cipher.0;
            out.session_id = SessionId::new(sh.session_id.unwrap_or_default());
            out.hello_retry = sh.random == HRR_RANDOM;
            sh.ext.unwrap_or_default()
        }
        Err(_) => {
            // Drafts before -22 (0x7fXX) and draft-era 0x0304: version, random, cipher, extensions.
            let mut r = Reader(body);
            out.legacy_version = r.u16()?;
            if out.legacy_version >> 8 != 0x7f
                && out.legacy_version != 0x0304
                && out.legacy_version >> 8 != 0x7e
            {
                return None;
            }
            r.take(32)?;
            out.cipher = r.u16()?;
            r.vec16().unwrap_or_default()
        }
    };
    out.version = out.legacy_version;
    out.extensions = Vec::with_capacity(extensions(ext_block).count());
    for (t, b) in extensions(ext_block) {
        out.extensions.push(t);
        let mut r = Reader(b);
        match t {
            ext::SUPPORTED_VERSIONS => {
                if let Some(v) = r.u16() {
                    out.version = v;
                }
            }
            ext::ALPN => {
                out.alpn = r.vec16().and_then(|l| Reader(l).vec8()).map(text);
            }
            ext::KEY_SHARE | ext::KEY_SHARE_DRAFT => out.key_share_group = r.u16(),
            ext::PRE_SHARED_KEY => out.psk = true,
            _ => {}
        }
    }
    Some(out)
}

/// Parses an HelloRetryRequest as drafts sent it (handshake type 6).
pub fn parse_draft_hello_retry(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    let mut out = ServerHello {
        legacy_version,
        version: legacy_version,
        hello_retry: true,
        ..ServerHello::default()
    };
    if legacy_version >= 0x7f16 || legacy_version == 0x0303 {
        // draft-22 and later moved HRR into ServerHello; type 6 here is unexpected.
        out.cipher = r.u16()?;
    } else if legacy_version >= 0x7f13 {
        out.cipher = r.u16()?;
    }
    for (t, b) in extensions(r.vec16().unwrap_or_default()) {
        out.extensions.push(t);
        if t == ext::SUPPORTED_VERSIONS
            && let Some(v) = Reader(b).u16()
        {
            out.version = v;
        }
    }
    Some(out)
}

/// Parses an SSL 2.0 CLIENT-HELLO record (header included): `[len(2)] 01 version(2) ...`.
pub fn parse_sslv2_client_hello(rec: &[u8]) -> Option<(ClientHello, usize)> {
    let (hdr, body) = sslv2_record(rec)?;
    let mut r = Reader(body);
    if r.u8()? != 1 {
        return None;
    }
    let version = r.u16()?;
    let cipher_len = usize::from(r.u16()?);
    let sid_len = usize::from(r.u16()?);
    let challenge_len = usize::from(r.u16()?);
    let specs = r.take(cipher_len)?;
    let sid = r.take(sid_len)?;
    r.take(challenge_len)?;
    let ciphers = specs
        .chunks_exact(3)
        .map(|c| {
            if c[0] == 0 {
                u16::from_be_bytes([c[1], c[2]])
            } else {
                0xff00 | u16::from(c[0])
            }
        })
        .collect();
    Some((
        ClientHello {
            legacy_version: version,
            ciphers,
            session_id: SessionId::new(sid),
            sslv2: true,
            ..ClientHello::default()
        },
        hdr,
    ))
}

/// Parses an SSL 2.0 SERVER-HELLO record: `[len(2)] 04 hit type version(2) ...`.
pub fn parse_sslv2_server_hello(rec: &[u8]) -> Option<ServerHello> {
    let (_, body) = sslv2_record(rec)?;
    let mut r = Reader(body);
    if r.u8()? != 4 {
        return None;
    }
    r.take(2)?;
    let version = r.u16()?;
    let cert_len = usize::from(r.u16()?);
    let specs_len = usize::from(r.u16()?);
    r.u16()?;
    r.take(cert_len)?;
    let sslv2_cipher = r
        .take(specs_len.min(3))
        .filter(|c| c.len() == 3)
        .map(|c| (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]));
    Some(ServerHello {
        legacy_version: version,
        version,
        sslv2: true,
        sslv2_cipher,
        ..ServerHello::default()
    })
}

/// Splits an SSL 2.0 record (2-byte header, high bit set) into header length and body.
pub fn sslv2_record(rec: &[u8]) -> Option<(usize, &[u8])> {
    let (&b0, &b1) = (rec.first()?, rec.get(1)?);
    if b0 & 0x80 == 0 {
        return None;
    }
    let len = (usize::from(b0 & 0x7f) << 8) | usize::from(b1);
    Some((2 + len, rec.get(2..2 + len)?))
}

/// Whether `v` could start an SSL 2.0 client hello stream: `[len] 01 [version]`.
pub fn looks_like_sslv2_client_hello(b: &[u8]) -> bool {
    b.len() >= 5
        && b[0] & 0x80 != 0
        && b[2] == 1
        && matches!(u16::from_be_bytes([b[3], b[4]]), 0x0002 | 0x0300..=0x0304)
}

/// Whether `b` could start an SSL 2.0 server hello: `[len] 04 hit type 00 02`.
pub fn looks_like_sslv2_server_hello(b: &[u8]) -> bool {
    b.len() >= 7
        && b[0] & 0x80 != 0
        && b[2] == 4
        && b[3] <= 1
        && u16::from_be_bytes([b[5], b[6]]) == 0x0002
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ClientHello body with the given extension block.
    fn client_hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[7u8; 32]);
        b.push(0);
        b.extend_from_slice(&[0, 4, 0x13, 0x01, 0x0a, 0x0a]);
        b.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (t, body) in exts {
            e.extend_from_slice(&t.to_be_bytes());
            e.extend_from_slice(&(body.len() as u16).to_be_bytes());
            e.extend_from_slice(body);
        }
        b.extend_from_slice(&(e.len() as u16).to_be_bytes());
        b.extend_from_slice(&e);
        b
    }

    #[test]
    fn client_hello_extensions() {
        let sni = b"outbound_.8080_._.reviews.default.svc.cluster.local";
        let mut sni_ext = ((sni.len() + 3) as u16).to_be_bytes().to_vec();
        sni_ext.push(0);
        sni_ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(sni);
        let alpn = [&b"istio-peer-exchange"[..], b"istio"];
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        let mut alpn_ext = (list.len() as u16).to_be_bytes().to_vec();
        alpn_ext.extend_from_slice(&list);
        let ch = client_hello(&[
            (0x0a0a, vec![]),
            (0, sni_ext),
            (16, alpn_ext),
            (43, vec![4, 0x0a, 0x0a, 0x03, 0x04]),
            (51, vec![0, 6, 0x00, 0x1d, 0, 2, 0xaa, 0xbb]),
            (0xfe0d, vec![1, 2, 3]),
            (0x9999, vec![0xff]), // unknown extension, odd body
        ]);
        let f = parse_client_hello(&ch).unwrap();
        assert_eq!(f.sni, vec![String::from_utf8_lossy(sni)]);
        assert_eq!(
            f.alpn,
            Some(vec!["istio-peer-exchange".into(), "istio".into()])
        );
        assert_eq!(f.supported_versions, Some(vec![0x0a0a, 0x0304]));
        assert_eq!(f.ciphers, vec![0x1301, 0x0a0a]);
        assert_eq!(f.key_share_groups, vec![0x001d]);
        assert!(f.ech);
        assert!(f.ja4.starts_with("t13d0106ie_"), "{}", f.ja4);
    }

    #[test]
    fn server_hello_versions_and_hrr() {
        let mut sh = vec![0x03, 0x03];
        sh.extend_from_slice(&HRR_RANDOM);
        sh.extend_from_slice(&[0, 0x13, 0x02, 0]);
        sh.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        let f = parse_server_hello(&sh).unwrap();
        assert!(f.hello_retry);
        assert_eq!((f.version, f.cipher), (0x0304, 0x1302));
        // draft-18 layout
        let mut d = vec![0x7f, 0x12];
        d.extend_from_slice(&[1u8; 32]);
        d.extend_from_slice(&[0x13, 0x01, 0, 0]);
        let f = parse_server_hello(&d).unwrap();
        assert_eq!(
            (f.version, f.cipher, f.hello_retry),
            (0x7f12, 0x1301, false)
        );
    }

    #[test]
    fn truncated_hellos_never_panic() {
        let ch = client_hello(&[
            (0, vec![0, 5, 0, 0, 2, b'a', b'b']),
            (16, vec![0, 3, 2, b'h', b'2']),
        ]);
        for n in 0..ch.len() {
            let _ = parse_client_hello(&ch[..n]);
            let _ = parse_server_hello(&ch[..n]);
            let _ = parse_sslv2_client_hello(&ch[..n]);
        }
    }
}
