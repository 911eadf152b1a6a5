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

use super::text::{CodePoint, UtcTime, decimal, endpoint_text};
use super::{AlertRecord, Anomaly, FlowRecord, HttpRecord, PairRecord, PerSide, TlsRecord};
use crate::analyzers::tls::cert::CertSummary;
use crate::classify::mesh::Identity;
use crate::classify::{Diagnosis, Mesh};
use crate::decode::Endpoint;

/// Appends the JSON of a flow record to `out` (no newline), exactly as
/// `serde_json::to_writer(out, record)` would.
pub fn write_flow(out: &mut Vec<u8>, r: &FlowRecord) {
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
        tls,
    } = r;
    let mut o = Obj::begin(out);
    string(o.key("type"), kind);
    string(o.key("capture"), capture);
    endpoint(o.key("client"), client);
    endpoint(o.key("server"), server);
    string(o.key("client_basis"), client_basis);
    number(o.key("first_frame"), *first_frame);
    number(o.key("last_frame"), *last_frame);
    time(o.key("first_ts"), *first_ts);
    time(o.key("last_ts"), *last_ts);
    per_side(o.key("packets"), packets);
    per_side(o.key("bytes"), bytes);
    string(o.key("state"), state);
    string(o.key("end"), end);
    list(o.key("anomalies"), anomalies, anomaly);
    option(o.key("app_protocol"), app_protocol, |out, s| string(out, s));
    string(o.key("class"), class);
    string(o.key("confidence"), confidence);
    list(o.key("evidence"), evidence, |out, s| string(out, s));
    string(o.key("leg"), leg);
    string(o.key("handshake"), handshake);
    option(o.key("diagnosis"), diagnosis, self::diagnosis);
    option(o.key("mesh"), mesh, self::mesh);
    option(o.key("http"), http, self::http);
    option(o.key("paired_with"), paired_with, pair);
    option(o.key("tls"), tls, self::tls);
    o.end();
}

fn per_side(out: &mut Vec<u8>, p: &PerSide) {
    let PerSide { client, server } = p;
    let mut o = Obj::begin(out);
    number(o.key("client"), *client);
    number(o.key("server"), *server);
    o.end();
}

fn anomaly(out: &mut Vec<u8>, a: &Anomaly) {
    let Anomaly {
        kind,
        from,
        count,
        bytes,
    } = a;
    let mut o = Obj::begin(out);
    string(o.key("kind"), kind);
    // `skip_serializing_if = "Option::is_none"`.
    if let Some(from) = from {
        string(o.key("from"), from);
    }
    number(o.key("count"), *count);
    if let Some(bytes) = bytes {
        number(o.key("bytes"), *bytes);
    }
    o.end();
}

fn diagnosis(out: &mut Vec<u8>, d: &Diagnosis) {
    let Diagnosis { code, summary, fix } = d;
    let mut o = Obj::begin(out);
    string(o.key("code"), code);
    string(o.key("summary"), summary);
    string(o.key("fix"), fix);
    o.end();
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
    let mut o = Obj::begin(out);
    string(o.key("kind"), kind);
    option(o.key("port"), port, |out, p| number(out, *p));
    option(o.key("subset"), subset, |out, s| string(out, s));
    option(o.key("service"), service, |out, s| string(out, s));
    option(o.key("namespace"), namespace, |out, s| string(out, s));
    option(o.key("host"), host, |out, s| string(out, s));
    option(o.key("client_identity"), client_identity, identity);
    option(o.key("server_identity"), server_identity, identity);
    option(o.key("proxy"), proxy, |out, s| string(out, s));
    o.end();
}

fn identity(out: &mut Vec<u8>, i: &Identity) {
    let Identity {
        uri,
        trust_domain,
        ns,
        sa,
    } = i;
    let mut o = Obj::begin(out);
    string(o.key("uri"), uri);
    string(o.key("trust_domain"), trust_domain);
    string(o.key("ns"), ns);
    string(o.key("sa"), sa);
    o.end();
}

fn http(out: &mut Vec<u8>, h: &HttpRecord) {
    let HttpRecord {
        method,
        path,
        host,
        status,
    } = h;
    let mut o = Obj::begin(out);
    option(o.key("method"), method, |out, s| string(out, s));
    option(o.key("path"), path, |out, s| string(out, s));
    option(o.key("host"), host, |out, s| string(out, s));
    option(o.key("status"), status, |out, s| number(out, *s));
    o.end();
}

fn pair(out: &mut Vec<u8>, p: &PairRecord) {
    let PairRecord {
        first_frame,
        client,
        server,
        link,
    } = p;
    let mut o = Obj::begin(out);
    number(o.key("first_frame"), *first_frame);
    endpoint(o.key("client"), client);
    endpoint(o.key("server"), server);
    string(o.key("link"), link);
    o.end();
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
    let strings = |out: &mut Vec<u8>, v: &Vec<String>| list(out, v, |out, s| string(out, s));
    let code_points = |out: &mut Vec<u8>, v: &Vec<CodePoint>| list(out, v, code_point);
    let mut o = Obj::begin(out);
    option(o.key("sni"), sni, |out, s| string(out, s));
    strings(o.key("sni_all"), sni_all);
    option(o.key("alpn_offered"), alpn_offered, strings);
    option(o.key("alpn_selected"), alpn_selected, |out, s| {
        string(out, s)
    });
    option(
        o.key("client_hello_version"),
        client_hello_version,
        code_point,
    );
    option(
        o.key("supported_versions_offered"),
        supported_versions_offered,
        code_points,
    );
    option(o.key("version"), version, code_point);
    option(o.key("version_name"), version_name, |out, s| string(out, s));
    option(o.key("cipher"), cipher, code_point);
    option(o.key("cipher_name"), cipher_name, |out, s| string(out, s));
    code_points(o.key("ciphers_offered"), ciphers_offered);
    code_points(o.key("groups_offered"), groups_offered);
    code_points(o.key("key_share_groups"), key_share_groups);
    list(o.key("alerts"), alerts, alert);
    per_side(o.key("encrypted_alerts"), encrypted_alerts);
    boolean(o.key("certificate_request"), *certificate_request);
    boolean(o.key("client_certificate"), *client_certificate);
    option(
        o.key("client_certificate_count"),
        client_certificate_count,
        |out, n| number(out, *n as u64),
    );
    boolean(o.key("server_certificate"), *server_certificate);
    option(
        o.key("server_certificate_count"),
        server_certificate_count,
        |out, n| number(out, *n as u64),
    );
    list(o.key("client_certificates"), client_certificates, cert);
    list(o.key("server_certificates"), server_certificates, cert);
    boolean(o.key("resumed"), *resumed);
    option(o.key("resumed_by"), resumed_by, |out, s| string(out, s));
    boolean(o.key("hello_retry_request"), *hello_retry_request);
    boolean(o.key("ech_offered"), *ech_offered);
    boolean(o.key("resumption_offered"), *resumption_offered);
    boolean(o.key("early_data_offered"), *early_data_offered);
    boolean(o.key("sslv2"), *sslv2);
    option(o.key("ja4"), ja4, |out, s| string(out, s));
    number(o.key("client_hellos"), *client_hellos);
    option(o.key("client_hello_frame"), client_hello_frame, |out, f| {
        number(out, *f)
    });
    option(o.key("preamble"), preamble, |out, s| string(out, s));
    per_side(o.key("app_data_records"), app_data_records);
    o.end();
}

fn alert(out: &mut Vec<u8>, a: &AlertRecord) {
    let AlertRecord {
        from,
        level,
        description,
        name,
        frame,
    } = a;
    let mut o = Obj::begin(out);
    string(o.key("from"), from);
    number(o.key("level"), *level);
    number(o.key("description"), *description);
    option(o.key("name"), name, |out, s| string(out, s));
    number(o.key("frame"), *frame);
    o.end();
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
    let strings = |out: &mut Vec<u8>, v: &Vec<String>| list(out, v, |out, s| string(out, s));
    let mut o = Obj::begin(out);
    string(o.key("subject"), subject);
    string(o.key("issuer"), issuer);
    string(o.key("serial"), serial);
    string(o.key("not_before"), not_before);
    string(o.key("not_after"), not_after);
    strings(o.key("san_dns"), san_dns);
    strings(o.key("san_uri"), san_uri);
    strings(o.key("san_ip"), san_ip);
    boolean(o.key("san_critical"), *san_critical);
    boolean(o.key("is_ca"), *is_ca);
    string(o.key("key_algorithm"), key_algorithm);
    string(o.key("signature_algorithm"), signature_algorithm);
    o.end();
}

/// An object being written: `{`, then `"key":value` pairs separated by commas, then `}`.
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Obj<'o> {
    fn begin(out: &'o mut Vec<u8>) -> Obj<'o> {
        out.push(b'{');
        Obj { out, empty: true }
    }

    /// Writes the key of the next member (a Rust field name: nothing to escape) and
    /// returns the output for its value.
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn end(self) {
        self.out.push(b'}');
    }
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

/// The value, or `null`.
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
    out.extend_from_slice(decimal(v.into()).as_bytes());
}

fn code_point(out: &mut Vec<u8>, c: &CodePoint) {
    let text = c.text();
    // Code points are many (a ClientHello lists dozens): the usual `0x%04x` is written as
    // one fixed-size copy rather than through a `memcpy` call.
    match <&[u8; 6]>::try_from(text.as_bytes()) {
        Ok(&[a, b, c, d, e, f]) => out.extend_from_slice(&[b'"', a, b, c, d, e, f, b'"']),
        Err(_) => quoted_plain(out, text.as_bytes()),
    }
}

fn time(out: &mut Vec<u8>, t: UtcTime) {
    quoted_plain(out, t.text().as_bytes());
}

fn endpoint(out: &mut Vec<u8>, ep: &Endpoint) {
    quoted_plain(out, endpoint_text(ep).as_bytes());
}

/// A string made here of characters that need no escaping (hex and decimal digits,
/// `x.:-[]TZ`).
fn quoted_plain(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

/// Whether serde_json escapes this byte in a string: `"`, `\` and the control characters
/// below 0x20 (not DEL; not non-ASCII, which is written as UTF-8).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost every string needs no escape: one pass to tell (no early exit, so that it
    // vectorizes), one copy.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(bytes);
    } else {
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !needs_escape(b) {
                continue;
            }
            out.extend_from_slice(&bytes[run..i]);
            run = i + 1;
            escape(out, b);
        }
        out.extend_from_slice(&bytes[run..]);
    }
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

    fn ep(s: &str) -> Endpoint {
        let sa: std::net::SocketAddr = s.parse().unwrap();
        Endpoint {
            ip: sa.ip(),
            port: sa.port(),
        }
    }

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
                supported_versions_offered: Some(vec![
                    CodePoint::new(0x0a0a),
                    CodePoint::new(0x0304),
                ]),
                version: Some(CodePoint::new(0x0304)),
                version_name: Some("TLS 1.3".into()),
                cipher: Some(CodePoint::sslv2_cipher(0x0700c0)),
                cipher_name: Some("TLS_AES_128_GCM_SHA256"),
                ciphers_offered: vec![CodePoint::new(0x1301), CodePoint::new(0x00ff)],
                groups_offered: vec![CodePoint::new(0x001d)],
                key_share_groups: vec![CodePoint::new(0x11ec), CodePoint::new(0)],
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
                client_certificates: vec![cert("client")],
                server_certificates: vec![cert("leaf"), cert("ca")],
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
    fn empty_and_null_fields_are_written_as_serde_writes_them() {
        let mut r = full();
        r.capture = String::new();
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
    fn strings_are_escaped_as_serde_escapes_them() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        cases.extend(["", "plain", "\"", "a\\", "\u{7f}", "x\u{1}y\u{1f}z"].map(String::from));
        cases.push(hostile());
        for s in cases {
            let mut mine = Vec::new();
            string(&mut mine, &s);
            assert_eq!(mine, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }
}
