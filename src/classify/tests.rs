//! One test (or a few) per rule, on facts built by hand.

use super::*;
use crate::analyzers::tls::cert::CertSummary;
use crate::analyzers::tls::hello::{ClientHello, ServerHello};
use crate::analyzers::tls::{Alert, RecordSig};
use crate::capture::Timestamp;

struct Case {
    tls: TlsFacts,
    is_tls: bool,
    client: Endpoint,
    server: Endpoint,
    heads: (Vec<u8>, Vec<u8>),
    records: (Vec<RecordSig>, Vec<RecordSig>),
    bytes: (u64, u64),
    client_close: (bool, bool),
    server_close: (bool, bool),
}

use crate::decode::test_endpoint as ep;

fn sig(content_type: u8, len: u16, frame: u64) -> RecordSig {
    RecordSig {
        content_type,
        len,
        encrypted: content_type == 23,
        frame,
        ts: Timestamp(0),
    }
}

impl Case {
    fn new(client: &str, server: &str) -> Case {
        Case {
            tls: TlsFacts::default(),
            is_tls: false,
            client: ep(client),
            server: ep(server),
            heads: (Vec::new(), Vec::new()),
            records: (Vec::new(), Vec::new()),
            bytes: (0, 0),
            client_close: (false, false),
            server_close: (false, false),
        }
    }

    /// A ClientHello with `sni` and `alpn`, and a ServerHello of `version` unless 0.
    fn tls(mut self, sni: &str, alpn: &[&str], version: u16) -> Case {
        self.is_tls = true;
        self.tls.client_dir = Some(Dir::AtoB);
        self.tls.client_hello = Some(Box::new(ClientHello {
            legacy_version: 0x0303,
            sni: if sni.is_empty() {
                vec![]
            } else {
                vec![sni.into()]
            },
            alpn: (!alpn.is_empty()).then(|| alpn.iter().map(|s| s.to_string()).collect()),
            supported_versions: Some(vec![0x0304, 0x0303]),
            ciphers: vec![0x1301, 0x1302, 0x1303],
            ..ClientHello::default()
        }));
        self.records.0.push(sig(22, 512, 4));
        self.bytes.0 += 517;
        if version != 0 {
            self.tls.server_dir = Some(Dir::BtoA);
            self.tls.server_hello = Some(Box::new(ServerHello {
                version,
                legacy_version: 0x0303,
                cipher: 0x1301,
                ..ServerHello::default()
            }));
            self.records.1.push(sig(22, 90, 6));
            self.bytes.1 += 95;
        }
        self
    }

    fn facts(&self) -> Facts<'_> {
        fn side<'a>(
            ep: Endpoint,
            bytes: u64,
            close: (bool, bool),
            head: &'a [u8],
            records: &'a [RecordSig],
        ) -> Side<'a> {
            Side {
                ep,
                bytes,
                fin: close.0,
                rst: close.1,
                head,
                records,
                ifindex: None,
                cut_short: false,
            }
        }
        Facts {
            client: side(
                self.client,
                self.bytes.0,
                self.client_close,
                &self.heads.0,
                &self.records.0,
            ),
            server: side(
                self.server,
                self.bytes.1,
                self.server_close,
                &self.heads.1,
                &self.records.1,
            ),
            client_dir: Dir::AtoB,
            tls: &self.tls,
            is_tls: self.is_tls,
            resumption: None,
            detected: Default::default(),
        }
    }

    fn verdict(&self) -> Verdict {
        judge(&self.facts())
    }
}

/// TLS 1.3 records of a finished handshake: server flight, client flight, tickets.
fn finished13(c: &mut Case, client_flight: u16) {
    c.records.1.extend([sig(20, 1, 6), sig(23, 2273, 6)]);
    c.records
        .0
        .extend([sig(20, 1, 8), sig(23, client_flight, 8)]);
    c.records.1.extend([sig(23, 1114, 10), sig(23, 1114, 10)]);
}

#[test]
fn istio_sni_and_alpn_are_istio_mtls_with_mesh_fields() {
    let mut c = Case::new("10.244.1.10:41000", "10.244.2.20:8080").tls(
        "outbound_.8080_._.helloworld.sample.svc.cluster.local",
        &["istio-http/1.1", "istio", "http/1.1"],
        0x0304,
    );
    finished13(&mut c, 53);
    let v = c.verdict();
    assert_eq!(
        (v.class, v.confidence, v.leg, v.handshake),
        (
            Class::IstioMtls,
            Confidence::High,
            Leg::Network,
            Handshake::Complete
        )
    );
    let m = v.mesh.unwrap();
    assert_eq!(
        (m.port, m.service.as_deref(), m.namespace.as_deref()),
        (Some(8080), Some("helloworld"), Some("sample"))
    );
    assert_eq!(v.diagnosis, None);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.starts_with("alpn:istio-http/1.1"))
    );
}

#[test]
fn istio_alpn_with_custom_sni_is_medium() {
    let c = Case::new("10.244.1.10:41000", "10.244.2.20:8080").tls(
        "",
        &["istio-peer-exchange", "istio"],
        0x0304,
    );
    let v = c.verdict();
    assert_eq!(
        (v.class, v.confidence),
        (Class::IstioMtls, Confidence::Medium)
    );
}

#[test]
fn spiffe_identities_fill_the_mesh_object() {
    let mut c = Case::new("10.244.1.10:41000", "10.244.2.20:9080").tls(
        "outbound_.9080_._.reviews.default.svc.cluster.local",
        &["istio"],
        0x0303,
    );
    let cert = |uri: &str| CertSummary {
        subject: String::new(),
        issuer: "O=cluster.local".into(),
        serial: "1".into(),
        not_before: String::new(),
        not_after: String::new(),
        san_dns: vec![],
        san_uri: vec![uri.into()],
        san_ip: vec![],
        san_critical: true,
        is_ca: false,
        key_algorithm: String::new(),
        signature_algorithm: String::new(),
    };
    c.tls.server_certificates = vec![cert("spiffe://cluster.local/ns/default/sa/reviews").into()];
    c.tls.client_certificate_chain =
        vec![cert("spiffe://cluster.local/ns/default/sa/productpage").into()];
    let m = c.verdict().mesh.unwrap();
    assert_eq!(m.server_identity.unwrap().sa, "reviews");
    assert_eq!(m.client_identity.unwrap().sa, "productpage");
    // Without Istio SNI or ALPN, the critical-SAN SPIFFE certificate alone says Istio (legacy TLS 1.2).
    c.tls.client_hello.as_mut().unwrap().sni = vec!["reviews".into()];
    c.tls.client_hello.as_mut().unwrap().alpn = None;
    let v = c.verdict();
    assert_eq!(
        (v.class, v.confidence),
        (Class::IstioMtls, Confidence::Medium)
    );
}

#[test]
fn hbone_is_ambient_and_tells_ztunnel_from_envoy() {
    let mut c = Case::new("10.244.1.10:41000", "10.244.2.20:15008").tls("", &["h2"], 0x0304);
    let ch = c.tls.client_hello.as_mut().unwrap();
    ch.supported_versions = Some(vec![0x0304]);
    ch.ciphers = vec![0x1302, 0x1301];
    let v = c.verdict();
    assert_eq!(v.class, Class::IstioMtls);
    assert_eq!(
        v.mesh.as_ref().map(|m| (m.kind, m.proxy)),
        Some(("istio-ambient", Some("ztunnel")))
    );
    c.tls.client_hello.as_mut().unwrap().ciphers = vec![0x1301, 0x1302, 0x1303];
    assert_eq!(c.verdict().mesh.unwrap().proxy, Some("envoy"));
    c.server.port = 443;
    assert_eq!(c.verdict().class, Class::AppTls);
}

#[test]
fn linkerd_and_consul() {
    let c = Case::new("10.244.1.10:41000", "10.244.2.20:8080").tls(
        "web.emojivoto.serviceaccount.identity.linkerd.cluster.local",
        &[],
        0x0304,
    );
    let v = c.verdict();
    assert_eq!(v.class, Class::LinkerdMtls);
    assert_eq!(v.mesh.unwrap().namespace.as_deref(), Some("emojivoto"));
    let c = Case::new("10.244.1.10:41000", "10.244.2.20:20000").tls(
        "web.default.dc1.internal.0b3e1a8c-6f0e-4a5c-9c1e-5a9e7e2b7c11.consul",
        &[],
        0x0303,
    );
    assert_eq!(c.verdict().class, Class::ConsulMtls);
}

#[test]
fn user_tls_is_app_tls_and_notes_istio_alpn_origination() {
    let c = Case::new("10.244.1.10:41000", "203.0.113.5:443").tls(
        "api.example.com",
        &["h2", "http/1.1"],
        0x0304,
    );
    let v = c.verdict();
    // On the network leg it could be a sidecar's origination: medium; on the pod-local hop: high.
    assert_eq!((v.class, v.confidence), (Class::AppTls, Confidence::Medium));
    let local =
        Case::new("127.0.0.6:41000", "10.244.2.20:8443").tls("api.example.com", &["h2"], 0x0304);
    assert_eq!(local.verdict().confidence, Confidence::High);
    let c = Case::new("10.244.1.10:41000", "10.244.2.20:8443").tls(
        "web.example.com",
        &["istio-http/1.1", "istio", "http/1.1"],
        0x0304,
    );
    let v = c.verdict();
    assert_eq!(v.class, Class::AppTls);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.starts_with("sidecar_originated"))
    );
}

#[test]
fn tcp_mode_mtls_with_an_inner_handshake_shape_is_double_wrapped_medium() {
    let mut c = Case::new("10.244.1.10:41000", "10.244.2.20:443").tls(
        "outbound_.443_._.web.shop.svc.cluster.local",
        &["istio-peer-exchange", "istio"],
        0x0304,
    );
    finished13(&mut c, 2025);
    c.records.0.push(sig(23, 534, 12));
    c.records.1.push(sig(23, 1445, 13));
    c.records.0.push(sig(23, 97, 14));
    let v = c.verdict();
    assert_eq!(
        (v.class, v.confidence),
        (Class::DoubleWrapped, Confidence::Medium)
    );
    assert_eq!(v.diagnosis.map(|d| d.code), Some("double-tls"));
    // HTTP-mode ALPN: the sidecar parsed HTTP, never double-wrapped.
    c.tls.client_hello.as_mut().unwrap().alpn = Some(vec!["istio-http/1.1".into(), "istio".into()]);
    assert_eq!(c.verdict().class, Class::IstioMtls);
}

#[test]
fn tcp_mode_mtls_to_port_443_without_traffic_is_double_wrapped_low() {
    let c = Case::new("10.244.1.10:41000", "10.244.2.20:443").tls(
        "outbound_.443_._.web.shop.svc.cluster.local",
        &["istio-peer-exchange", "istio"],
        0x0304,
    );
    let v = c.verdict();
    assert_eq!(
        (v.class, v.confidence),
        (Class::DoubleWrapped, Confidence::Low)
    );
    let c = Case::new("10.244.1.10:41000", "10.244.2.20:8080").tls(
        "outbound_.8080_._.web.shop.svc.cluster.local",
        &["istio-peer-exchange", "istio"],
        0x0304,
    );
    assert_eq!(c.verdict().class, Class::IstioMtls);
}

#[test]
fn legs() {
    let c = Case::new("127.0.0.6:50000", "10.244.2.20:8080");
    assert_eq!(leg(&c.facts()), Leg::PodLocal);
    let c = Case::new("10.244.1.10:40000", "10.96.0.10:15001");
    assert_eq!(leg(&c.facts()), Leg::PodLocal);
    let c = Case::new("10.244.1.10:40000", "10.244.2.20:8080");
    assert_eq!(leg(&c.facts()), Leg::Network);
}

fn plain_http(client: &str, server: &str) -> Case {
    let mut c = Case::new(client, server);
    c.heads.0 = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n".to_vec();
    c.bytes.0 = 30;
    c
}

#[test]
fn plaintext_between_pods_is_plaintext_in_mesh_but_not_on_the_pod_local_hop() {
    let mut c = plain_http("10.244.3.30:40000", "10.244.2.20:8080");
    c.heads.1 = b"HTTP/1.1 200 OK\r\n".to_vec();
    c.bytes.1 = 200;
    let v = c.verdict();
    assert_eq!((v.class, v.handshake), (Class::Plaintext, Handshake::None));
    assert_eq!(v.diagnosis.map(|d| d.code), Some("plaintext-in-mesh"));
    let mut local = plain_http("127.0.0.6:40000", "10.244.2.20:8080");
    local.bytes.1 = 200;
    let v = local.verdict();
    assert_eq!(
        (v.class, v.leg, v.diagnosis),
        (Class::Plaintext, Leg::PodLocal, None)
    );
    // Telemetry ports are plaintext by design.
    let mut probe = plain_http("10.244.0.1:40000", "10.244.2.20:15021");
    probe.bytes.1 = 100;
    assert_eq!(probe.verdict().diagnosis, None);
}

#[test]
fn plaintext_reset_by_the_server_is_strict_rejected() {
    let mut c = plain_http("10.244.3.30:40000", "10.244.2.20:8080");
    c.server_close = (false, true);
    let v = c.verdict();
    assert_eq!(
        v.diagnosis.map(|d| d.code),
        Some("strict-rejected-plaintext")
    );
}

#[test]
fn client_hello_answered_in_plaintext_is_tls_to_plaintext_port() {
    let mut c = Case::new("10.244.1.10:40000", "10.244.2.20:8080").tls("web.shop.svc", &["h2"], 0);
    c.heads.1 = b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec();
    c.bytes.1 = 28;
    let v = c.verdict();
    assert_eq!(v.handshake, Handshake::Failed);
    let d = v.diagnosis.unwrap();
    assert_eq!(d.code, "tls-to-plaintext-port");
    assert!(
        d.summary.contains("HTTP 400") && d.summary.contains("wrong version number"),
        "{}",
        d.summary
    );
}

#[test]
fn plaintext_answered_with_tls_is_plaintext_to_tls_port() {
    let mut c = plain_http("10.244.1.10:40000", "10.244.2.20:8443");
    c.is_tls = true;
    c.records.1.push(sig(21, 2, 5));
    c.tls.alerts.push(Alert {
        dir: Dir::BtoA,
        level: 2,
        description: 10,
        frame: 5,
    });
    let v = c.verdict();
    assert_eq!((v.class, v.handshake), (Class::Plaintext, Handshake::None));
    assert_eq!(v.diagnosis.map(|d| d.code), Some("plaintext-to-tls-port"));
}

fn failed_with_alert(from: Dir, description: u8) -> Case {
    let mut c =
        Case::new("10.244.1.10:40000", "10.244.2.20:8443").tls("web.shop.svc", &["h2"], 0x0303);
    c.tls.alerts.push(Alert {
        dir: from,
        level: 2,
        description,
        frame: 9,
    });
    c
}

#[test]
fn alerts_map_to_diagnoses() {
    let code = |c: Case| c.verdict().diagnosis.map(|d| d.code);
    assert_eq!(code(failed_with_alert(Dir::AtoB, 48)), Some("untrusted-ca"));
    assert_eq!(
        code(failed_with_alert(Dir::AtoB, 42)),
        Some("bad-certificate")
    );
    assert_eq!(
        code(failed_with_alert(Dir::AtoB, 46)),
        Some("bad-certificate")
    );
    assert_eq!(
        code(failed_with_alert(Dir::BtoA, 80)),
        Some("server-internal-error")
    );
    assert_eq!(
        code(failed_with_alert(Dir::BtoA, 116)),
        Some("client-cert-required")
    );
    // handshake_failure is a missing client certificate only after a CertificateRequest.
    assert_eq!(code(failed_with_alert(Dir::BtoA, 40)), Some("unknown"));
    let mut c = failed_with_alert(Dir::BtoA, 40);
    c.tls.certificate_request = true;
    c.tls.client_certificates = Some(0);
    assert_eq!(code(c), Some("client-cert-required"));
    let unknown = failed_with_alert(Dir::BtoA, 201)
        .verdict()
        .diagnosis
        .unwrap();
    assert!(
        unknown.summary.contains("unregistered alert 201"),
        "{}",
        unknown.summary
    );
    assert_eq!(
        failed_with_alert(Dir::AtoB, 48).verdict().handshake,
        Handshake::Failed
    );
}

#[test]
fn istio_alpn_with_a_user_host_that_fails_is_istio_40680() {
    let mut c = Case::new("10.244.1.10:40000", "10.244.2.20:8443").tls(
        "web.shop.example",
        &["istio-http/1.1", "istio", "http/1.1"],
        0,
    );
    c.tls.alerts.push(Alert {
        dir: Dir::BtoA,
        level: 2,
        description: 120,
        frame: 5,
    });
    assert_eq!(
        c.verdict().diagnosis.map(|d| d.code),
        Some("istio-alpn-to-non-mesh-tls")
    );
}

#[test]
fn client_hello_closed_without_answer_is_no_server_hello() {
    let mut c =
        Case::new("10.244.1.10:40000", "10.244.2.20:443").tls("blocked.example.com", &[], 0);
    c.server_close = (false, true);
    let v = c.verdict();
    assert_eq!(
        (v.handshake, v.diagnosis.map(|d| d.code)),
        (Handshake::Failed, Some("no-server-hello"))
    );
    let mut c =
        Case::new("10.244.1.10:40000", "10.244.2.20:443").tls("blocked.example.com", &[], 0);
    assert_eq!(c.verdict().handshake, Handshake::Incomplete);
    c.server_close = (true, false);
    assert!(c.verdict().diagnosis.unwrap().summary.contains("FIN"));
}

#[test]
fn tls13_encrypted_failures() {
    // Server requires a certificate: small client flight, a 19-byte answer, close.
    let mut c =
        Case::new("10.244.1.10:40000", "10.244.2.20:443").tls("gw.example.com", &["h2"], 0x0304);
    c.records.1.extend([sig(20, 1, 6), sig(23, 1500, 6)]);
    c.records.0.extend([sig(20, 1, 8), sig(23, 61, 8)]);
    c.records.1.push(sig(23, 19, 10));
    c.server_close = (true, false);
    let v = c.verdict();
    assert_eq!(
        (v.handshake, v.diagnosis.map(|d| d.code)),
        (Handshake::Failed, Some("client-cert-required"))
    );
    // The client rejects the server certificate: its first encrypted record is alert-sized.
    let mut c =
        Case::new("10.244.1.10:40000", "10.244.2.20:443").tls("gw.example.com", &["h2"], 0x0304);
    c.records.1.extend([sig(20, 1, 6), sig(23, 1500, 6)]);
    c.records.0.extend([sig(20, 1, 8), sig(23, 19, 8)]);
    c.client_close = (true, false);
    let v = c.verdict();
    assert_eq!(
        (v.handshake, v.diagnosis.map(|d| d.code)),
        (Handshake::Failed, Some("encrypted-alert-failure"))
    );
}

#[test]
fn handshake_outcomes() {
    let mut c = Case::new("10.244.1.10:40000", "10.244.2.20:443").tls("a.example.com", &[], 0x0303);
    assert_eq!(c.verdict().handshake, Handshake::Incomplete);
    c.tls.change_cipher_spec = [true, true];
    assert_eq!(c.verdict().handshake, Handshake::Complete);
    let mut f = c.facts();
    f.resumption = Some("session_id");
    assert_eq!(handshake(&f).0, Handshake::Resumed);
    let mut m = Case::new("10.244.1.10:40000", "10.244.2.20:443");
    m.is_tls = true;
    m.records.0.push(sig(23, 100, 1));
    let v = m.verdict();
    assert_eq!((v.class, v.handshake), (Class::Unknown, Handshake::NotSeen));
    assert_eq!(
        Case::new("10.0.0.1:1", "10.0.0.2:2").verdict().evidence,
        ["no_payload"]
    );
}
