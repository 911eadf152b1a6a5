//! The JSON Lines writer of flow records: the bytes `serde_json` writes for a
//! [`FlowRecord`], written directly.
//!
//! The record types derive `Serialize`, and that derive is the definition of the JSON:
//! `serde_json::to_vec(&record)` is what the contract (`docs/flow-record.md`) describes.
//! Going through serde costs an escape scan, byte by byte, of every key and every value,
//! which was the largest part of writing a record. This writer writes the same bytes with
//! the keys as literals and each string value scanned once for bytes that need escaping.
//! The tests below check it against `serde_json` on records with every field set, with
//! every field empty, and with strings that need escaping; each writer function names every
//! field of its type (a pattern without `..`), so a new field does not compile until it is
//! written here too.

use super::text::{CodePoint, UtcTime, decimal, endpoint_text, hex4};
use super::{AlertRecord, Anomaly, FlowRecord, HttpRecord, PairRecord, PerSide, TlsRecord};
use crate::analyzers::tls::cert::CertSummary;
use crate::classify::mesh::Identity;
use crate::classify::{Diagnosis, Mesh};
use crate::decode::Endpoint;

/// Appends a key with its separators: `k!(out, "state")` writes `,"state":` (and
/// `k!(out, first "type")` writes `{"type":`, the first key of an object). One fixed-size copy
/// per key instead of a push for each separator.
macro_rules! k {
    ($out:expr, first $key:literal) => {
        $out.extend_from_slice(concat!("{\"", $key, "\":").as_bytes())
    };
    ($out:expr, $key:literal) => {
        $out.extend_from_slice(concat!(",\"", $key, "\":").as_bytes())
    };
}

/// Appends the JSON of a flow record to `out` (no newline), exactly as
/// `serde_json::to_writer(out, record)` would.
pub fn write_flow(out: &mut Vec<u8>, r: &FlowRecord) {
    write_before_tls(out, r);
    k!(out, "tls");
    option(out, &r.tls, self::tls);
    out.push(b'}');
}

/// The key of the last member of a record, `tls`, with its separators. It occurs once in
/// a line: no other object of a record has a `tls` member, and inside a string its
/// quotes would be escaped.
const TLS_KEY: &[u8] = b",\"tls\":";

/// Rewrites a record's line (as [`write_flow`] wrote it, with or without its newline)
/// after pairing changed members before `tls` (class, confidence, evidence, diagnosis,
/// `paired_with`): those are written anew and the TLS part, most of the line, is kept.
pub fn rewrite_before_tls(line: &mut Vec<u8>, r: &FlowRecord) {
    let mut new = Vec::with_capacity(line.len() + 512);
    match memchr::memmem::find(line, TLS_KEY) {
        Some(at) => {
            write_before_tls(&mut new, r);
            new.extend_from_slice(&line[at..]);
        }
        None => {
            write_flow(&mut new, r);
            if line.last() == Some(&b'\n') {
                new.push(b'\n');
            }
        }
    }
    *line = new;
}

/// Every member of a record but the last, `tls` (see [`rewrite_before_tls`]).
fn write_before_tls(out: &mut Vec<u8>, r: &FlowRecord) {
    let FlowRecord {
        kind,
        capture,
        client,
        server,
        client_basis,
        first_frame,
        last_frame,
        first_ts,
        last_ts,
        packets,
        bytes,
        state,
        end,
        anomalies,
        app_protocol,
        class,
        confidence,
        evidence,
        leg,
        handshake,
        diagnosis,
        mesh,
        http,
        paired_with,
        tls: _,
    } = r;
    k!(out, first "type");
    name(out, kind);
    k!(out, "capture");
    string(out, capture);
    k!(out, "client");
    endpoint(out, client);
    k!(out, "server");
    endpoint(out, server);
    k!(out, "client_basis");
    name(out, client_basis);
    k!(out, "first_frame");
    number(out, *first_frame);
    k!(out, "last_frame");
    number(out, *last_frame);
    k!(out, "first_ts");
    time(out, *first_ts);
    k!(out, "last_ts");
    time(out, *last_ts);
    k!(out, "packets");
    per_side(out, packets);
    k!(out, "bytes");
    per_side(out, bytes);
    k!(out, "state");
    name(out, state);
    k!(out, "end");
    name(out, end);
    k!(out, "anomalies");
    list(out, anomalies, anomaly);
    k!(out, "app_protocol");
    option(out, app_protocol, |out, s| name(out, s));
    k!(out, "class");
    name(out, class);
    k!(out, "confidence");
    name(out, confidence);
    k!(out, "evidence");
    strings(out, evidence);
    k!(out, "leg");
    name(out, leg);
    k!(out, "handshake");
    name(out, handshake);
    k!(out, "diagnosis");
    option(out, diagnosis, self::diagnosis);
    k!(out, "mesh");
    option(out, mesh, self::mesh);
    k!(out, "http");
    option(out, http, self::http);
    k!(out, "paired_with");
    option(out, paired_with, pair);
}

fn per_side(out: &mut Vec<u8>, p: &PerSide) {
    let PerSide { client, server } = p;
    k!(out, first "client");
    number(out, *client);
    k!(out, "server");
    number(out, *server);
    out.push(b'}');
}

fn anomaly(out: &mut Vec<u8>, a: &Anomaly) {
    let Anomaly {
        kind,
        from,
        count,
        bytes,
    } = a;
    k!(out, first "kind");
    name(out, kind);
    // `skip_serializing_if = "Option::is_none"`.
    if let Some(from) = from {
        k!(out, "from");
        name(out, from);
    }
    k!(out, "count");
    number(out, *count);
    if let Some(bytes) = bytes {
        k!(out, "bytes");
        number(out, *bytes);
    }
    out.push(b'}');
}

fn diagnosis(out: &mut Vec<u8>, d: &Diagnosis) {
    let Diagnosis { code, summary, fix } = d;
    k!(out, first "code");
    string(out, code);
    k!(out, "summary");
    string(out, summary);
    k!(out, "fix");
    string(out, fix);
    out.push(b'}');
}

fn mesh(out: &mut Vec<u8>, m: &Mesh) {
    let Mesh {
        kind,
        port,
        subset,
        service,
        namespace,
        host,
        client_identity,
        server_identity,
        proxy,
    } = m;
    k!(out, first "kind");
    name(out, kind);
    k!(out, "port");
    option(out, port, |out, p| number(out, *p));
    k!(out, "subset");
    option(out, subset, |out, s| string(out, s));
    k!(out, "service");
    option(out, service, |out, s| string(out, s));
    k!(out, "namespace");
    option(out, namespace, |out, s| string(out, s));
    k!(out, "host");
    option(out, host, |out, s| string(out, s));
    k!(out, "client_identity");
    option(out, client_identity, identity);
    k!(out, "server_identity");
    option(out, server_identity, identity);
    k!(out, "proxy");
    option(out, proxy, |out, s| string(out, s));
    out.push(b'}');
}

fn identity(out: &mut Vec<u8>, i: &Identity) {
    let Identity {
        uri,
        trust_domain,
        ns,
        sa,
    } = i;
    k!(out, first "uri");
    string(out, uri);
    k!(out, "trust_domain");
    string(out, trust_domain);
    k!(out, "ns");
    string(out, ns);
    k!(out, "sa");
    string(out, sa);
    out.push(b'}');
}

fn http(out: &mut Vec<u8>, h: &HttpRecord) {
    let HttpRecord {
        method,
        path,
        host,
        status,
    } = h;
    k!(out, first "method");
    option(out, method, |out, s| string(out, s));
    k!(out, "path");
    option(out, path, |out, s| string(out, s));
    k!(out, "host");
    option(out, host, |out, s| string(out, s));
    k!(out, "status");
    option(out, status, |out, s| number(out, *s));
    out.push(b'}');
}

fn pair(out: &mut Vec<u8>, p: &PairRecord) {
    let PairRecord {
        first_frame,
        client,
        server,
        link,
    } = p;
    k!(out, first "first_frame");
    number(out, *first_frame);
    k!(out, "client");
    endpoint(out, client);
    k!(out, "server");
    endpoint(out, server);
    k!(out, "link");
    name(out, link);
    out.push(b'}');
}

fn tls(out: &mut Vec<u8>, t: &TlsRecord) {
    let TlsRecord {
        sni,
        sni_all,
        alpn_offered,
        alpn_selected,
        client_hello_version,
        supported_versions_offered,
        version,
        version_name,
        cipher,
        cipher_name,
        ciphers_offered,
        groups_offered,
        key_share_groups,
        alerts,
        encrypted_alerts,
        certificate_request,
        client_certificate,
        client_certificate_count,
        server_certificate,
        server_certificate_count,
        client_certificates,
        server_certificates,
        resumed,
        resumed_by,
        hello_retry_request,
        ech_offered,
        resumption_offered,
        early_data_offered,
        sslv2,
        ja4,
        client_hellos,
        client_hello_frame,
        preamble,
        app_data_records,
    } = t;
    k!(out, first "sni");
    option(out, sni, |out, s| string(out, s));
    k!(out, "sni_all");
    strings(out, sni_all);
    k!(out, "alpn_offered");
    option(out, alpn_offered, |out, v| strings(out, v));
    k!(out, "alpn_selected");
    option(out, alpn_selected, |out, s| string(out, s));
    k!(out, "client_hello_version");
    option(out, client_hello_version, code_point);
    k!(out, "supported_versions_offered");
    option(out, supported_versions_offered, |out, v| {
        code_points(out, v)
    });
    k!(out, "version");
    option(out, version, code_point);
    k!(out, "version_name");
    option(out, version_name, |out, s| name(out, s));
    k!(out, "cipher");
    option(out, cipher, code_point);
    k!(out, "cipher_name");
    option(out, cipher_name, |out, s| name(out, s));
    k!(out, "ciphers_offered");
    code_points(out, ciphers_offered);
    k!(out, "groups_offered");
    code_points(out, groups_offered);
    k!(out, "key_share_groups");
    code_points(out, key_share_groups);
    k!(out, "alerts");
    list(out, alerts, alert);
    k!(out, "encrypted_alerts");
    per_side(out, encrypted_alerts);
    k!(out, "certificate_request");
    boolean(out, *certificate_request);
    k!(out, "client_certificate");
    boolean(out, *client_certificate);
    k!(out, "client_certificate_count");
    option(out, client_certificate_count, |out, n| {
        number(out, *n as u64)
    });
    k!(out, "server_certificate");
    boolean(out, *server_certificate);
    k!(out, "server_certificate_count");
    option(out, server_certificate_count, |out, n| {
        number(out, *n as u64)
    });
    k!(out, "client_certificates");
    list(out, client_certificates, |out, c| cert(out, c));
    k!(out, "server_certificates");
    list(out, server_certificates, |out, c| cert(out, c));
    k!(out, "resumed");
    boolean(out, *resumed);
    k!(out, "resumed_by");
    option(out, resumed_by, |out, s| string(out, s));
    k!(out, "hello_retry_request");
    boolean(out, *hello_retry_request);
    k!(out, "ech_offered");
    boolean(out, *ech_offered);
    k!(out, "resumption_offered");
    boolean(out, *resumption_offered);
    k!(out, "early_data_offered");
    boolean(out, *early_data_offered);
    k!(out, "sslv2");
    boolean(out, *sslv2);
    k!(out, "ja4");
    option(out, ja4, |out, s| name(out, s));
    k!(out, "client_hellos");
    number(out, *client_hellos);
    k!(out, "client_hello_frame");
    option(out, client_hello_frame, |out, f| number(out, *f));
    k!(out, "preamble");
    option(out, preamble, |out, s| string(out, s));
    k!(out, "app_data_records");
    per_side(out, app_data_records);
    out.push(b'}');
}

fn alert(out: &mut Vec<u8>, a: &AlertRecord) {
    let AlertRecord {
        from,
        level,
        description,
        name,
        frame,
    } = a;
    k!(out, first "from");
    string(out, from);
    k!(out, "level");
    number(out, *level);
    k!(out, "description");
    number(out, *description);
    k!(out, "name");
    option(out, name, |out, s| string(out, s));
    k!(out, "frame");
    number(out, *frame);
    out.push(b'}');
}

fn cert(out: &mut Vec<u8>, c: &CertSummary) {
    let CertSummary {
        subject,
        issuer,
        serial,
        not_before,
        not_after,
        san_dns,
        san_uri,
        san_ip,
        san_critical,
        is_ca,
        key_algorithm,
        signature_algorithm,
    } = c;
    k!(out, first "subject");
    string(out, subject);
    k!(out, "issuer");
    string(out, issuer);
    k!(out, "serial");
    string(out, serial);
    k!(out, "not_before");
    string(out, not_before);
    k!(out, "not_after");
    string(out, not_after);
    k!(out, "san_dns");
    strings(out, san_dns);
    k!(out, "san_uri");
    strings(out, san_uri);
    k!(out, "san_ip");
    strings(out, san_ip);
    k!(out, "san_critical");
    boolean(out, *san_critical);
    k!(out, "is_ca");
    boolean(out, *is_ca);
    k!(out, "key_algorithm");
    string(out, key_algorithm);
    k!(out, "signature_algorithm");
    string(out, signature_algorithm);
    out.push(b'}');
}

/// `[item,item,...]`.
fn list<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(b']');
}

/// A list of strings.
fn strings(out: &mut Vec<u8>, items: &[String]) {
    list(out, items, |out, s| string(out, s));
}

/// A list of 16-bit code points (`"0x%04x"` each). A ClientHello lists dozens (its cipher
/// suites, groups), so each is written with its comma as one fixed-size copy, and the
/// first comma becomes the `[`.
fn code_points(out: &mut Vec<u8>, items: &[u16]) {
    out.reserve(items.len() * 9 + 2);
    let start = out.len();
    for &c in items {
        let h = hex4(c);
        out.extend_from_slice(&[b',', b'"', b'0', b'x', h[0], h[1], h[2], h[3], b'"']);
    }
    match out.get_mut(start) {
        Some(b) => *b = b'[',
        None => out.push(b'['),
    }
    out.push(b']');
}

/// The value, or `null`.
#[inline]
fn option<T>(out: &mut Vec<u8>, v: &Option<T>, some: impl FnOnce(&mut Vec<u8>, &T)) {
    match v {
        Some(x) => some(out, x),
        None => out.extend_from_slice(b"null"),
    }
}

fn boolean(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// An unsigned integer in decimal.
fn number(out: &mut Vec<u8>, v: impl Into<u64>) {
    let v: u64 = v.into();
    // Most counts are a single digit.
    if v < 10 {
        out.push(b'0' + v as u8);
    } else {
        decimal(v).write_to(out);
    }
}

fn code_point(out: &mut Vec<u8>, c: &CodePoint) {
    match c.hex16() {
        Some(h) => out.extend_from_slice(&[b'"', b'0', b'x', h[0], h[1], h[2], h[3], b'"']),
        None => c.text().write_quoted_to(out),
    }
}

fn time(out: &mut Vec<u8>, t: UtcTime) {
    t.text().write_quoted_to(out);
}

fn endpoint(out: &mut Vec<u8>, ep: &Endpoint) {
    endpoint_text(ep).write_quoted_to(out);
}

/// A string known to need no escaping, between quotes.
#[inline]
fn quoted_plain(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

/// Text mtlscope makes itself (a class, a state, an anomaly kind, a cipher or version
/// name from its tables, a JA4 fingerprint), written between quotes without looking for
/// bytes to escape: there are none, as the debug builds check.
#[inline]
fn name(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!any_needs_escape(s.as_bytes()), "{s:?}");
    quoted_plain(out, s.as_bytes());
}

/// Whether serde_json escapes this byte in a string: `"`, `\` and the control characters
/// below 0x20 (not DEL; not non-ASCII, which is written as UTF-8).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the 8 bytes of `x` needs escaping, tested on the whole word at once
/// (the "has a byte less than n" and "has a zero byte" tricks: exact as yes/no answers,
/// which is all that is asked here).
fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v;
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let quote = zero_byte(x ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(x ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) & HIGH != 0
}

/// Whether any of 16 bytes needs escaping: a fixed-size loop the compiler turns into a few
/// SIMD instructions (SSE2 compares and a mask).
#[inline(always)]
fn chunk_needs_escape(c: &[u8; 16]) -> bool {
    c.iter()
        .fold(0u8, |any, &b| any | u8::from(needs_escape(b)))
        != 0
}

/// Whether any byte of `s` needs escaping. Sixteen bytes at a time, the last chunk
/// overlapping the one before; shorter strings a word at a time (two overlapping words).
/// A byte-by-byte loop cost about five instructions a byte, and every string is tested.
#[inline]
fn any_needs_escape(s: &[u8]) -> bool {
    let n = s.len();
    if n >= 16 {
        let chunk = |i: usize| {
            let mut c = [0u8; 16];
            c.copy_from_slice(&s[i..i + 16]);
            c
        };
        let mut any = false;
        let mut i = 0;
        while i + 16 <= n {
            any |= chunk_needs_escape(&chunk(i));
            i += 16;
        }
        any | (i < n && chunk_needs_escape(&chunk(n - 16)))
    } else if n >= 8 {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[i..i + 8]);
            u64::from_le_bytes(w)
        };
        word_needs_escape(word(0)) | word_needs_escape(word(n - 8))
    } else if n >= 4 {
        let half = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&s[i..i + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        word_needs_escape(half(0) | half(n - 4) << 32)
    } else {
        s.iter().any(|&b| needs_escape(b))
    }
}

/// A JSON string, escaped as serde_json escapes it. Inlined (a record has some 25 strings,
/// and the call cost about as much as the usual string's test and copy); the rare string
/// that needs escaping goes the slow way.
#[inline]
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if any_needs_escape(bytes) {
        escaped(out, bytes);
    } else {
        quoted_plain(out, bytes);
    }
}

/// A string with bytes to escape. Runs of 16 bytes with none are skipped at once (such a
/// string is usually a sentence quoting a word or two).
#[cold]
#[inline(never)]
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes
            .get(i..i + 16)
            .and_then(|c| <&[u8; 16]>::try_from(c).ok())
            && !chunk_needs_escape(chunk)
        {
            i += 16;
            continue;
        }
        let b = bytes[i];
        if needs_escape(b) {
            out.extend_from_slice(&bytes[run..i]);
            run = i + 1;
            escape(out, b);
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// The escape sequence of one byte, as serde_json's compact formatter writes it.
fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            let hex = [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]];
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;

    use crate::decode::test_endpoint as ep;

    fn same_as_serde(r: &FlowRecord) {
        let mut mine = Vec::new();
        write_flow(&mut mine, r);
        let serde = serde_json::to_vec(r).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&mine),
            String::from_utf8_lossy(&serde)
        );
    }

    /// A string with every byte serde_json escapes, and some it does not.
    fn hostile() -> String {
        let mut s: String = (0u8..0x80).map(char::from).collect();
        s.push_str("é→😀\u{2028}\u{fffd}");
        s
    }

    fn cert(tag: &str) -> CertSummary {
        CertSummary {
            subject: format!("CN={tag}, O=\"quoted\""),
            issuer: "C=US, O=Example".into(),
            serial: "1a2b".into(),
            not_before: "2026-11-22T05:28:23Z".into(),
            not_after: "2027-11-22T05:28:23Z".into(),
            san_dns: vec!["a.example".into(), hostile()],
            san_uri: vec!["spiffe://cluster.local/ns/a/sa/b".into()],
            san_ip: vec!["10.0.0.1".into(), "fd00::1".into()],
            san_critical: true,
            is_ca: false,
            key_algorithm: "id-ecPublicKey".into(),
            signature_algorithm: "ecdsa-with-SHA256".into(),
        }
    }

    fn identity(sa: &str) -> Identity {
        Identity {
            uri: format!("spiffe://td/ns/n/sa/{sa}"),
            trust_domain: "td".into(),
            ns: "n".into(),
            sa: sa.into(),
        }
    }

    /// A record with every optional field set and every list non-empty.
    fn full() -> FlowRecord {
        FlowRecord {
            kind: "flow",
            capture: "dir/with \"quotes\"\\and\ttab.pcap".into(),
            client: ep("10.64.0.89:37559"),
            server: ep("[fd00::2]:443"),
            client_basis: "tcp_syn",
            first_frame: 1,
            last_frame: u64::MAX,
            first_ts: UtcTime(Timestamp(1_795_843_703_123_456_789)),
            last_ts: UtcTime(Timestamp(-1)),
            packets: PerSide {
                client: 0,
                server: 18_446_744_073_709_551_615,
            },
            bytes: PerSide {
                client: 1234,
                server: 10,
            },
            state: "closed",
            end: "closed",
            anomalies: vec![
                Anomaly {
                    kind: "midstream",
                    from: None,
                    count: 1,
                    bytes: None,
                },
                Anomaly {
                    kind: "gap",
                    from: Some("client"),
                    count: 3,
                    bytes: Some(4096),
                },
                Anomaly {
                    kind: "truncated_packets",
                    from: Some("server"),
                    count: 7,
                    bytes: None,
                },
            ],
            app_protocol: Some("tls"),
            class: "istio-mtls",
            confidence: "high",
            evidence: vec!["client_hello".into(), hostile()],
            leg: "network",
            handshake: "complete",
            diagnosis: Some(Diagnosis {
                code: "double-tls",
                summary: "the client said \"no\"\n".into(),
                fix: "set X".into(),
            }),
            mesh: Some(Mesh {
                kind: "istio-sidecar",
                port: Some(8080),
                subset: Some("v1".into()),
                service: Some("svc".into()),
                namespace: Some("ns".into()),
                host: Some(hostile()),
                client_identity: Some(identity("client")),
                server_identity: Some(identity("server")),
                proxy: Some("ztunnel"),
            }),
            http: Some(HttpRecord {
                method: Some("GET".into()),
                path: Some("/a\\b".into()),
                host: Some("h".into()),
                status: Some(200),
            }),
            paired_with: Some(PairRecord {
                first_frame: 12,
                client: ep("127.0.0.6:4000"),
                server: ep("10.0.0.2:8080"),
                link: "mesh-hop",
            }),
            tls: Some(TlsRecord {
                sni: Some("outbound_.8080_._.a.b.svc.cluster.local".into()),
                sni_all: vec!["a".into(), hostile()],
                alpn_offered: Some(vec!["istio-peer-exchange".into(), "istio".into()]),
                alpn_selected: Some("h2".into()),
                client_hello_version: Some(CodePoint::new(0x0303)),
                supported_versions_offered: Some(vec![0x0a0a, 0x0304]),
                version: Some(CodePoint::new(0x0304)),
                version_name: Some("TLS 1.3".into()),
                cipher: Some(CodePoint::sslv2_cipher(0x0700c0)),
                cipher_name: Some("TLS_AES_128_GCM_SHA256"),
                ciphers_offered: vec![0x1301, 0x00ff, 0xffff],
                groups_offered: vec![0x001d],
                key_share_groups: vec![0x11ec, 0],
                alerts: vec![
                    AlertRecord {
                        from: "server",
                        level: 2,
                        description: 42,
                        name: Some("bad_certificate"),
                        frame: 9,
                    },
                    AlertRecord {
                        from: "client",
                        level: 1,
                        description: 255,
                        name: None,
                        frame: 10,
                    },
                ],
                encrypted_alerts: PerSide {
                    client: 1,
                    server: 2,
                },
                certificate_request: true,
                client_certificate: true,
                client_certificate_count: Some(2),
                server_certificate: true,
                server_certificate_count: Some(usize::MAX),
                client_certificates: vec![cert("client").into()],
                server_certificates: vec![cert("leaf").into(), cert("ca").into()],
                resumed: true,
                resumed_by: Some("psk"),
                hello_retry_request: true,
                ech_offered: true,
                resumption_offered: true,
                early_data_offered: true,
                sslv2: true,
                ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
                client_hellos: u32::MAX,
                client_hello_frame: Some(5),
                preamble: Some("http-connect".into()),
                app_data_records: PerSide {
                    client: 100,
                    server: 200,
                },
            }),
        }
    }

    #[test]
    fn a_full_record_is_written_as_serde_writes_it() {
        same_as_serde(&full());
    }

    #[test]
    fn a_line_rewritten_after_pairing_is_the_line_of_the_changed_record() {
        let mut r = full();
        r.paired_with = None;
        r.diagnosis = None;
        let mut line = Vec::new();
        write_flow(&mut line, &r);
        line.push(b'\n');
        let mut paired = r.clone();
        paired.paired_with = full().paired_with;
        paired.diagnosis = full().diagnosis;
        paired.class = "double-wrapped";
        paired.evidence.push("pod_local_leg:frame_12".into());
        rewrite_before_tls(&mut line, &paired);
        let mut expected = serde_json::to_vec(&paired).unwrap();
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&expected)
        );
        // A record without TLS ends in `"tls":null`.
        r.tls = None;
        paired.tls = None;
        line.clear();
        write_flow(&mut line, &r);
        rewrite_before_tls(&mut line, &paired);
        let expected = serde_json::to_vec(&paired).unwrap();
        assert_eq!(line, expected);
        // A line that is not a record's is written anew.
        line = b"{}\n".to_vec();
        rewrite_before_tls(&mut line, &paired);
        let mut expected = serde_json::to_vec(&paired).unwrap();
        expected.push(b'\n');
        assert_eq!(line, expected);
    }

    #[test]
    fn empty_and_null_fields_are_written_as_serde_writes_them() {
        let mut r = full();
        r.capture = "".into();
        r.anomalies.clear();
        r.app_protocol = None;
        r.evidence = vec![String::new()];
        r.diagnosis = None;
        r.http = Some(HttpRecord {
            method: None,
            path: None,
            host: None,
            status: None,
        });
        r.paired_with = None;
        r.mesh = Some(Mesh::default());
        if let Some(t) = r.tls.as_mut() {
            *t = TlsRecord {
                sni: None,
                sni_all: Vec::new(),
                alpn_offered: None,
                alpn_selected: None,
                client_hello_version: None,
                supported_versions_offered: None,
                version: None,
                version_name: None,
                cipher: None,
                cipher_name: None,
                ciphers_offered: Vec::new(),
                groups_offered: Vec::new(),
                key_share_groups: Vec::new(),
                alerts: Vec::new(),
                encrypted_alerts: PerSide::default(),
                certificate_request: false,
                client_certificate: false,
                client_certificate_count: None,
                server_certificate: false,
                server_certificate_count: None,
                client_certificates: Vec::new(),
                server_certificates: Vec::new(),
                resumed: false,
                resumed_by: None,
                hello_retry_request: false,
                ech_offered: false,
                resumption_offered: false,
                early_data_offered: false,
                sslv2: false,
                ja4: None,
                client_hellos: 0,
                client_hello_frame: None,
                preamble: None,
                app_data_records: PerSide::default(),
            };
        }
        same_as_serde(&r);
        r.mesh = None;
        r.http = None;
        r.tls = None;
        same_as_serde(&r);
    }

    #[test]
    fn the_chunked_test_finds_every_byte_to_escape() {
        for n in 0..40 {
            let clean = vec![b'a'; n];
            assert!(!any_needs_escape(&clean));
            let high = vec![0xffu8; n];
            assert!(!any_needs_escape(&high));
            for i in 0..n {
                for b in 0..=255u8 {
                    let mut s = clean.clone();
                    s[i] = b;
                    assert_eq!(any_needs_escape(&s), needs_escape(b), "{n} {i} {b}");
                    let mut s = high.clone();
                    s[i] = b;
                    assert_eq!(any_needs_escape(&s), needs_escape(b), "{n} {i} {b}");
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_escapes_them() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        cases.extend(["", "plain", "\"", "a\\", "\u{7f}", "x\u{1}y\u{1f}z"].map(String::from));
        cases.push(hostile());
        let long = |sep: &str| format!("{}{sep}{}{sep}", "x".repeat(40), "y".repeat(33));
        cases.extend(["\"", "\\", "\n", "\u{1}", "é"].map(long));
        for s in cases {
            let mut mine = Vec::new();
            string(&mut mine, &s);
            assert_eq!(mine, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }
}
