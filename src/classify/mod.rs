//! Classify: a pure function from a finished flow's facts to the operator's answer.
//!
//! [`judge`] reads what the flow and its analyzers recorded (no I/O, no parsing) and
//! returns a [`Verdict`]: class, confidence, evidence, leg, handshake outcome, diagnosis
//! and mesh details. The class comes from an ordered table of small rules (`RULES`),
//! each returning `Some` when it applies; the first that applies wins. [`pairing`] links
//! the two legs of one request across flows. Rules follow the classification and
//! diagnosis tables of the mesh reference (`mesh-tls-on-the-wire.md` §8–§9).

pub mod diagnose;
pub mod mesh;
pub mod pairing;
pub mod shape;

use std::net::IpAddr;

use crate::analyzers::tls::{RecordSig, TlsFacts};
use crate::analyzers::{ConnAnalyzer, plain};
use crate::decode::Endpoint;
use crate::flow::{Dir, Flow};
pub use diagnose::Diagnosis;
use mesh::{ISTIO_ALPN, ISTIO_HTTP_ALPN, Identity};
use shape::Tls13End;

/// Who opened the connection, and on what evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The client's direction (its packets go client → server).
    pub client: Dir,
    /// What decided it: `tcp_syn`, `client_hello`, `server_hello`, `port`, `first_packet`.
    pub basis: &'static str,
}

/// Decides the client: the SYN sender, else the ClientHello sender, else the ServerHello
/// receiver, else the side with the higher port when the other is a well-known port,
/// else the sender of the first packet.
pub fn roles(flow: &Flow<ConnAnalyzer>) -> Roles {
    let tls = flow.handler().tls.facts();
    if let Some(d) = flow.opened_by() {
        return Roles {
            client: d,
            basis: "tcp_syn",
        };
    }
    if let Some(d) = tls.client_dir {
        return Roles {
            client: d,
            basis: "client_hello",
        };
    }
    if let Some(d) = tls.server_dir {
        return Roles {
            client: d.rev(),
            basis: "server_hello",
        };
    }
    if flow.a.port < 1024 && flow.b.port >= 1024 {
        return Roles {
            client: Dir::BtoA,
            basis: "port",
        };
    }
    Roles {
        client: Dir::AtoB,
        basis: "first_packet",
    }
}

/// One side of a flow, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    /// Its endpoint.
    pub ep: Endpoint,
    /// TCP payload bytes it sent.
    pub bytes: u64,
    /// It sent a FIN.
    pub fin: bool,
    /// It sent a RST.
    pub rst: bool,
    /// First bytes of its stream.
    pub head: &'a [u8],
    /// Headers of its first TLS records.
    pub records: &'a [RecordSig],
    /// Linux cooked v2 interface index.
    pub ifindex: Option<u32>,
    /// Analysis stopped reading this side before its end (the reassembly depth): what
    /// follows is unknown, so its absence proves nothing.
    pub cut_short: bool,
}

impl Side<'_> {
    fn closed(&self) -> bool {
        self.fin || self.rst
    }
}

/// Everything the rules read about one flow.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The client side.
    pub client: Side<'a>,
    /// The server side.
    pub server: Side<'a>,
    /// The client's direction in the flow (to read direction-tagged TLS facts).
    pub client_dir: Dir,
    /// TLS facts.
    pub tls: &'a TlsFacts,
    /// TLS was found in either direction.
    pub is_tls: bool,
    /// How the session resumed, if it did.
    pub resumption: Option<&'static str>,
    /// [`plain::detect`] on the two heads, once asked for (see [`Facts::protocol`]).
    pub detected: std::cell::OnceCell<Option<&'static str>>,
}

impl<'a> Facts<'a> {
    /// Gathers the facts of a finished flow.
    pub fn of(flow: &'a Flow<ConnAnalyzer>, roles: Roles) -> Facts<'a> {
        let side = |d: Dir| {
            let h = &flow.half[d.idx()];
            Side {
                ep: flow.sender(d),
                bytes: h.bytes,
                fin: h.fin,
                rst: h.rst,
                head: flow.handler().head(d),
                records: flow.handler().tls.record_sigs(d),
                ifindex: flow.ifindex(d),
                cut_short: flow.stream(d).depth_reached(),
            }
        };
        Facts {
            client: side(roles.client),
            server: side(roles.client.rev()),
            client_dir: roles.client,
            tls: flow.handler().tls.facts(),
            is_tls: flow.handler().tls.is_tls(),
            resumption: flow.handler().tls.resumption(),
            detected: std::cell::OnceCell::new(),
        }
    }

    fn alpn(&self) -> &'a [String] {
        self.tls
            .client_hello
            .as_ref()
            .and_then(|c| c.alpn.as_deref())
            .unwrap_or_default()
    }

    fn sni(&self) -> Option<&'a str> {
        self.tls
            .client_hello
            .as_ref()
            .and_then(|c| c.sni.first())
            .map(String::as_str)
    }

    fn istio_alpn(&self) -> bool {
        self.alpn().iter().any(|a| ISTIO_ALPN.contains(&a.as_str()))
    }

    fn server_port(&self) -> u16 {
        self.server.ep.port
    }

    fn tls13(&self) -> bool {
        self.tls
            .server_hello
            .as_ref()
            .is_some_and(|s| s.version == 0x0304 || s.version >> 8 == 0x7f)
    }

    /// A cleartext protocol was recognized (or the client's bytes are text).
    /// The cleartext protocol the heads show ([`plain::detect`]), worked out once: the
    /// plaintext rule and the record (its `app_protocol`) both ask, and it costs about
    /// 1700 instructions.
    pub fn protocol(&self) -> Option<&'static str> {
        *self
            .detected
            .get_or_init(|| plain::detect(self.client.head, self.server.head))
    }

    fn cleartext(&self) -> Option<&'static str> {
        self.protocol()
            .or_else(|| plain::looks_textual(self.client.head).then_some("text"))
            .filter(|p| *p != "ssh")
    }
}

/// The answer for one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// No TLS: cleartext application bytes.
    Plaintext,
    /// Istio's mutual TLS (sidecar or ambient HBONE).
    IstioMtls,
    /// Linkerd's mutual TLS.
    LinkerdMtls,
    /// Consul Connect's mutual TLS.
    ConsulMtls,
    /// Any other TLS: the application's own, or TLS a sidecar originates.
    AppTls,
    /// Application TLS carried inside mesh mTLS.
    DoubleWrapped,
    /// Not enough evidence either way (the evidence says why).
    Unknown,
}

impl Class {
    /// Name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Class::Plaintext => "plaintext",
            Class::IstioMtls => "istio-mtls",
            Class::LinkerdMtls => "linkerd-mtls",
            Class::ConsulMtls => "consul-mtls",
            Class::AppTls => "app-tls",
            Class::DoubleWrapped => "double-wrapped",
            Class::Unknown => "unknown",
        }
    }
}

/// How sure a classification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    /// A guess from weak signals.
    Low,
    /// Indirect evidence.
    Medium,
    /// Direct evidence (a parsed hello, a recognized protocol, both legs seen).
    High,
}

impl Confidence {
    /// Name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        }
    }
}

/// Which hop of a request a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// Between pods or nodes: what the network carries.
    Network,
    /// Inside a pod, between the sidecar and the app (loopback, 127.0.0.6, 15001/15006).
    PodLocal,
}

impl Leg {
    /// Name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Leg::Network => "network",
            Leg::PodLocal => "pod-local",
        }
    }
}

/// Ports only ever seen on the pod-local hop (Istio's outbound and inbound capture ports).
const POD_LOCAL_PORTS: [u16; 2] = [15001, 15006];
/// Ports that carry mesh telemetry and health checks in clear by design.
const TELEMETRY_PORTS: [u16; 4] = [15020, 15021, 15090, 4191];
/// The loopback interface's index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// Decides the leg from addresses, ports and the capture interface.
pub fn leg(f: &Facts<'_>) -> Leg {
    let local = |ep: &Endpoint| ep.ip.is_loopback() || POD_LOCAL_PORTS.contains(&ep.port);
    let on_lo = [f.client.ifindex, f.server.ifindex].contains(&Some(LOOPBACK_IFINDEX));
    if local(&f.client.ep) || local(&f.server.ep) || on_lo {
        Leg::PodLocal
    } else {
        Leg::Network
    }
}

/// How the TLS handshake went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Both sides finished.
    Complete,
    /// Both sides finished an abbreviated (resumed) handshake.
    Resumed,
    /// An alert, a close, or a non-TLS answer ended it.
    Failed,
    /// The capture ended during it.
    Incomplete,
    /// TLS records, but the capture began after the handshake.
    NotSeen,
    /// No TLS.
    None,
}

impl Handshake {
    /// Name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Handshake::Complete => "complete",
            Handshake::Resumed => "resumed",
            Handshake::Failed => "failed",
            Handshake::Incomplete => "incomplete",
            Handshake::NotSeen => "not-seen",
            Handshake::None => "none",
        }
    }
}

/// Why a handshake failed, as far as the wire shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A plaintext alert.
    Alert {
        /// Sent by the client.
        from_client: bool,
        /// Description code.
        description: u8,
    },
    /// The ClientHello got a FIN or RST and no byte back.
    NoServerHello {
        /// A RST (rather than a FIN).
        reset: bool,
    },
    /// The ClientHello got bytes back that are not TLS.
    NotTlsReply,
    /// A plaintext request got TLS bytes back.
    TlsReplyToPlaintext,
    /// TLS 1.3: the client answered the server's flight with an encrypted alert.
    ClientEncryptedAlert,
    /// TLS 1.3: the server answered the client's flight with an encrypted alert.
    ServerEncryptedAlert {
        /// The client's flight was big enough to hold a certificate.
        client_sent_certificate: bool,
    },
    /// A side closed before the handshake finished, without an alert.
    Closed,
}

/// Size of a TLS 1.3 client flight (encrypted bytes) above which it holds a certificate:
/// Finished alone is 53–69 bytes, an empty Certificate adds 8.
const CLIENT_FLIGHT_WITH_CERT: u32 = 200;

/// Alert descriptions that do not end a handshake.
const NON_FATAL_ALERTS: [u8; 4] = [0, 90, 100, 112];

/// Outcome of the TLS handshake, and the failure when it failed.
pub fn handshake(f: &Facts<'_>) -> (Handshake, Option<Failure>) {
    let tls = f.tls;
    if !f.is_tls {
        // A cleartext request answered with TLS is a failed attempt at the wrong port.
        return (Handshake::None, None);
    }
    let client_tls = !f.client.records.is_empty() || tls.client_hello.is_some();
    if !client_tls
        && f.cleartext().is_some()
        && !f.server.records.is_empty()
        && tls.server_hello.is_none()
    {
        // The client never attempted TLS: no handshake, but the answer explains the failure.
        return (Handshake::None, Some(Failure::TlsReplyToPlaintext));
    }
    if tls.client_hello.is_none() && tls.server_hello.is_none() {
        return (Handshake::NotSeen, None);
    }
    if let Some(a) = tls
        .alerts
        .iter()
        .find(|a| a.level == 2 || !NON_FATAL_ALERTS.contains(&a.description))
    {
        let failure = Failure::Alert {
            from_client: a.dir == f.client_dir,
            description: a.description,
        };
        return (Handshake::Failed, Some(failure));
    }
    let Some(sh) = &tls.server_hello else {
        if f.server.bytes == 0 && f.server.closed() {
            return (
                Handshake::Failed,
                Some(Failure::NoServerHello {
                    reset: f.server.rst,
                }),
            );
        }
        if f.server.bytes > 0 && f.server.records.is_empty() {
            return (Handshake::Failed, Some(Failure::NotTlsReply));
        }
        if f.client.closed() || f.server.closed() {
            return (Handshake::Failed, Some(Failure::Closed));
        }
        return (Handshake::Incomplete, None);
    };
    let done = if f.resumption.is_some() {
        Handshake::Resumed
    } else {
        Handshake::Complete
    };
    if sh.sslv2 {
        return (done, None);
    }
    if f.tls13() {
        let recs = shape::timeline(f.client.records, f.server.records);
        return match shape::tls13_end(&recs, f.client.closed(), f.server.closed()) {
            Tls13End::Finished => (done, None),
            Tls13End::ClientAlert => (Handshake::Failed, Some(Failure::ClientEncryptedAlert)),
            Tls13End::ServerAlert { client_flight } => (
                Handshake::Failed,
                Some(Failure::ServerEncryptedAlert {
                    client_sent_certificate: client_flight > CLIENT_FLIGHT_WITH_CERT,
                }),
            ),
            Tls13End::NoClientFlight if f.client.closed() || f.server.closed() => {
                (Handshake::Failed, Some(Failure::Closed))
            }
            Tls13End::NoClientFlight => (Handshake::Incomplete, None),
        };
    }
    // Application data is only sent after the peer's Finished.
    if tls.change_cipher_spec.iter().all(|&c| c) || tls.app_data_records.iter().any(|&n| n > 0) {
        (done, None)
    } else if f.client.cut_short || f.server.cut_short {
        (Handshake::Incomplete, None)
    } else if f.client.closed() || f.server.closed() {
        (Handshake::Failed, Some(Failure::Closed))
    } else {
        (Handshake::Incomplete, None)
    }
}

/// Mesh details of a flow (serialized as the flow record's `mesh`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Mesh {
    /// `istio-sidecar`, `istio-ambient`, `linkerd`, `consul`.
    pub kind: &'static str,
    /// Service port from the SNI.
    pub port: Option<u16>,
    /// Subset from the SNI.
    pub subset: Option<String>,
    /// Service name.
    pub service: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Service host (FQDN).
    pub host: Option<String>,
    /// Client workload identity (from a visible client certificate).
    pub client_identity: Option<Identity>,
    /// Server workload identity (from a visible server certificate).
    pub server_identity: Option<Identity>,
    /// Ambient only: which proxy sent the hello, by its TLS fingerprint (`ztunnel`, `envoy`).
    pub proxy: Option<&'static str>,
}

/// The verdict on one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Class.
    pub class: Class,
    /// How sure.
    pub confidence: Confidence,
    /// Short strings naming the facts used.
    pub evidence: Vec<String>,
    /// Network or pod-local.
    pub leg: Leg,
    /// TLS handshake outcome.
    pub handshake: Handshake,
    /// What went wrong, or an informational note; `None` when healthy.
    pub diagnosis: Option<Diagnosis>,
    /// Mesh details, for mesh mTLS.
    pub mesh: Option<Mesh>,
}

/// What a class rule returns.
struct Call {
    class: Class,
    confidence: Confidence,
    evidence: Vec<String>,
    mesh: Option<Mesh>,
}

type Rule = fn(&Facts<'_>) -> Option<Call>;

fn identities(f: &Facts<'_>) -> (Option<Identity>, Option<Identity>) {
    let first_spiffe = |chain: &[std::sync::Arc<crate::analyzers::tls::cert::CertSummary>]| {
        chain
            .first()
            .and_then(|c| c.san_uri.iter().find_map(|u| mesh::spiffe(u)))
    };
    (
        first_spiffe(&f.tls.client_certificate_chain),
        first_spiffe(&f.tls.server_certificates),
    )
}

/// An evidence item: `tag` then `value` (`sni:` and the name), built directly: `format!`
/// cost about 500 instructions a string, and most flows have two or three.
fn tagged(tag: &str, value: &str) -> String {
    let mut s = String::with_capacity(tag.len() + value.len());
    s.push_str(tag);
    s.push_str(value);
    s
}

/// An evidence item: `tag` then the items joined by commas (`alpn:h2,http/1.1`).
fn tagged_list<'a>(tag: &str, items: impl Iterator<Item = &'a str> + Clone) -> String {
    let len = items.clone().map(|i| i.len() + 1).sum::<usize>();
    let mut s = String::with_capacity(tag.len() + len);
    s.push_str(tag);
    for (i, item) in items.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s
}

/// A cleartext request answered with TLS bytes: the request itself crossed in clear.
/// Checked before [`RULES`], from the handshake outcome `judge` computes once for the
/// verdict (it reads the record timeline, the costliest part of judging).
fn plaintext_to_tls(f: &Facts<'_>, failure: Option<Failure>) -> Option<Call> {
    (failure == Some(Failure::TlsReplyToPlaintext)).then(|| Call {
        class: Class::Plaintext,
        confidence: Confidence::High,
        evidence: vec![
            tagged("cleartext:", f.cleartext().unwrap_or("text")),
            "tls_reply".into(),
        ],
        mesh: None,
    })
}

/// Istio sidecar mTLS: the `outbound_` SNI, or an Istio ALPN without a user host name.
fn rule_istio_sidecar(f: &Facts<'_>) -> Option<Call> {
    let ch = f.tls.client_hello.as_ref()?;
    let sni = f.sni().and_then(mesh::istio_sni);
    let alpn: Vec<&str> = f
        .alpn()
        .iter()
        .map(String::as_str)
        .filter(|a| ISTIO_ALPN.contains(a))
        .collect();
    let user_host = f.sni().is_some_and(mesh::plain_hostname);
    if sni.is_none() && (alpn.is_empty() || user_host) {
        return None;
    }
    let mut evidence = Vec::new();
    if let Some(s) = ch.sni.first().filter(|_| sni.is_some()) {
        evidence.push(tagged("sni:", s));
    }
    if !alpn.is_empty() {
        evidence.push(tagged_list("alpn:", alpn.iter().copied()));
    }
    let (client_identity, server_identity) = identities(f);
    if let Some(id) = &server_identity {
        evidence.push(tagged("server_spiffe:", &id.uri));
    }
    let mesh = Mesh {
        kind: "istio-sidecar",
        port: sni.as_ref().map(|s| s.port),
        subset: sni.as_ref().map(|s| s.subset.clone()),
        service: sni.as_ref().and_then(|s| s.service().map(str::to_string)),
        namespace: sni.as_ref().and_then(|s| s.namespace().map(str::to_string)),
        host: sni.as_ref().map(|s| s.host.clone()),
        client_identity,
        server_identity,
        proxy: None,
    };
    let confidence = if sni.is_some() {
        Confidence::High
    } else {
        Confidence::Medium
    };
    Some(Call {
        class: Class::IstioMtls,
        confidence,
        evidence,
        mesh: Some(mesh),
    })
}

/// Ambient HBONE: TLS 1.3 only, ALPN exactly `h2`, no SNI, to port 15008.
fn rule_istio_hbone(f: &Facts<'_>) -> Option<Call> {
    let ch = f.tls.client_hello.as_ref()?;
    let only13 = ch.supported_versions.as_ref().is_some_and(|v| {
        let real: Vec<u16> = v
            .iter()
            .copied()
            .filter(|&x| !crate::analyzers::tls::ja4::is_grease(x))
            .collect();
        real == [0x0304]
    });
    if f.server_port() != mesh::HBONE_PORT || !ch.sni.is_empty() || f.alpn() != ["h2"] || !only13 {
        return None;
    }
    // rustls in ztunnel offers AES-256 then AES-128 and no ChaCha20; Envoy's BoringSSL offers all three.
    let suites: Vec<u16> = ch
        .ciphers
        .iter()
        .copied()
        .filter(|c| c >> 8 == 0x13)
        .collect();
    let proxy = if suites == [0x1302, 0x1301] {
        "ztunnel"
    } else {
        "envoy"
    };
    Some(Call {
        class: Class::IstioMtls,
        confidence: Confidence::High,
        evidence: vec![
            "hbone:15008".into(),
            "alpn:h2".into(),
            "no_sni".into(),
            "tls1.3_only".into(),
            format!("proxy:{proxy}"),
        ],
        mesh: Some(Mesh {
            kind: "istio-ambient",
            proxy: Some(proxy),
            ..Mesh::default()
        }),
    })
}

/// Linkerd: the identity SNI.
fn rule_linkerd(f: &Facts<'_>) -> Option<Call> {
    let (ns, sa) = mesh::linkerd_sni(f.sni()?)?;
    let id = Identity {
        uri: f.sni()?.to_string(),
        trust_domain: String::new(),
        ns: ns.clone(),
        sa,
    };
    Some(Call {
        class: Class::LinkerdMtls,
        confidence: Confidence::High,
        evidence: vec![tagged("sni:", f.sni()?)],
        mesh: Some(Mesh {
            kind: "linkerd",
            namespace: Some(ns),
            server_identity: Some(id),
            ..Mesh::default()
        }),
    })
}

/// Consul Connect: its SNI, or a Consul SPIFFE ID on a visible certificate.
fn rule_consul(f: &Facts<'_>) -> Option<Call> {
    let (client_identity, server_identity) = identities(f);
    let consul_id = |i: &Option<Identity>| i.as_ref().is_some_and(|i| i.uri.contains("/dc/"));
    let sni = f.sni().and_then(mesh::consul_sni);
    let (service, namespace) = (sni.as_ref().map(|s| s.0.clone()), sni.map(|s| s.1));
    if service.is_none() && !consul_id(&server_identity) && !consul_id(&client_identity) {
        return None;
    }
    let evidence = match f.sni().filter(|_| service.is_some()) {
        Some(sni) => vec![tagged("sni:", sni)],
        None => vec!["consul_spiffe".into()],
    };
    Some(Call {
        class: Class::ConsulMtls,
        confidence: Confidence::High,
        evidence,
        mesh: Some(Mesh {
            kind: "consul",
            service,
            namespace,
            client_identity,
            server_identity,
            ..Mesh::default()
        }),
    })
}

/// Legacy Istio (TLS 1.2): a SPIFFE workload certificate with a critical SAN and an empty subject.
fn rule_istio_spiffe_cert(f: &Facts<'_>) -> Option<Call> {
    let leaf = f.tls.server_certificates.first()?;
    let id = leaf.san_uri.iter().find_map(|u| mesh::spiffe(u))?;
    if !leaf.san_critical || !leaf.subject.is_empty() && !leaf.subject.starts_with("O=") {
        return None;
    }
    let (client_identity, _) = identities(f);
    Some(Call {
        class: Class::IstioMtls,
        confidence: Confidence::Medium,
        evidence: vec![tagged("server_spiffe:", &id.uri), "critical_san".into()],
        mesh: Some(Mesh {
            kind: "istio-sidecar",
            client_identity,
            server_identity: Some(id),
            ..Mesh::default()
        }),
    })
}

/// Any other TLS with a handshake in view.
fn rule_app_tls(f: &Facts<'_>) -> Option<Call> {
    if f.tls.client_hello.is_none() && f.tls.server_hello.is_none() {
        return None;
    }
    // Room for every item below: no regrowth.
    let mut evidence = Vec::with_capacity(4);
    evidence.push(
        if f.tls.client_hello.is_some() {
            "client_hello"
        } else {
            "server_hello"
        }
        .to_string(),
    );
    if let Some(sni) = f.sni() {
        evidence.push(tagged("sni:", sni));
    }
    if !f.alpn().is_empty() {
        evidence.push(tagged_list("alpn:", f.alpn().iter().map(String::as_str)));
    }
    if f.istio_alpn() {
        // Istio ALPN with a user host name: a sidecar originating TLS for a DestinationRule
        // SIMPLE/MUTUAL before Istio 1.20 (istio/istio#40680).
        evidence.push("sidecar_originated:istio_alpn_with_user_sni".into());
    }
    Some(Call {
        class: Class::AppTls,
        confidence: Confidence::High,
        evidence,
        mesh: None,
    })
}

/// TLS records without a handshake: TLS, but whose?
fn rule_tls_unseen(f: &Facts<'_>) -> Option<Call> {
    f.is_tls.then(|| Call {
        class: Class::Unknown,
        confidence: Confidence::Low,
        evidence: vec!["tls_records_without_handshake".into()],
        mesh: None,
    })
}

/// Cleartext application bytes.
fn rule_plaintext(f: &Facts<'_>) -> Option<Call> {
    let proto = f.cleartext()?;
    let mut evidence = Vec::with_capacity(2);
    evidence.push(tagged("cleartext:", proto));
    if TELEMETRY_PORTS.contains(&f.server_port()) {
        evidence.push("mesh_telemetry".into());
    }
    let confidence = if proto == "text" {
        Confidence::Medium
    } else {
        Confidence::High
    };
    Some(Call {
        class: Class::Plaintext,
        confidence,
        evidence,
        mesh: None,
    })
}

/// The class rules, in order, after [`plaintext_to_tls`].
const RULES: [Rule; 8] = [
    rule_istio_hbone,
    rule_istio_sidecar,
    rule_linkerd,
    rule_consul,
    rule_istio_spiffe_cert,
    rule_app_tls,
    rule_tls_unseen,
    rule_plaintext,
];

/// Ports that conventionally carry TLS: Istio TCP-mode mTLS to them is likely double-wrapped.
const TLS_PORTS: [u16; 4] = [443, 8443, 9443, 6443];

/// Upgrades Istio TCP-mode mTLS to double-wrapped on size evidence (medium) or on the
/// service port alone (low). HTTP-mode ALPN rules it out: the sidecar parsed HTTP.
fn double_wrap(f: &Facts<'_>, call: &mut Call) {
    if call.class != Class::IstioMtls
        || call
            .mesh
            .as_ref()
            .is_some_and(|m| m.kind != "istio-sidecar")
    {
        return;
    }
    let alpn = f.alpn();
    if alpn.iter().any(|a| ISTIO_HTTP_ALPN.contains(&a.as_str()))
        || !alpn
            .iter()
            .any(|a| a == "istio-peer-exchange" || a == "istio")
    {
        return;
    }
    let recs = shape::timeline(f.client.records, f.server.records);
    let outer = match &f.tls.server_hello {
        Some(sh) if f.tls13() => shape::Outer::Tls13 {
            finished_len: if sh.cipher == 0x1302 { 69 } else { 53 },
        },
        _ => shape::Outer::Tls12,
    };
    if let Some(s) = shape::inner_shape(&recs, outer) {
        if shape::looks_like_inner_handshake(&s) {
            call.class = Class::DoubleWrapped;
            call.confidence = Confidence::Medium;
            call.evidence.push(format!(
                "inner_handshake_shape:{}/{}/{}",
                s.client_first, s.server_next, s.client_next
            ));
        }
        return;
    }
    let port = call
        .mesh
        .as_ref()
        .and_then(|m| m.port)
        .unwrap_or(f.server_port());
    if TLS_PORTS.contains(&port) {
        call.class = Class::DoubleWrapped;
        call.confidence = Confidence::Low;
        call.evidence
            .push(format!("tcp_mode_mtls_to_tls_port:{port}"));
    }
}

/// Judges a flow from its facts.
pub fn judge(f: &Facts<'_>) -> Verdict {
    let (handshake, failure) = handshake(f);
    let mut call = plaintext_to_tls(f, failure)
        .or_else(|| RULES.iter().find_map(|r| r(f)))
        .unwrap_or_else(|| {
            let why = if f.client.bytes + f.server.bytes == 0 {
                "no_payload"
            } else if f.protocol() == Some("ssh") {
                "ssh"
            } else {
                "unrecognized_payload"
            };
            Call {
                class: Class::Unknown,
                confidence: Confidence::Low,
                evidence: vec![why.into()],
                mesh: None,
            }
        });
    double_wrap(f, &mut call);
    let leg = leg(f);
    // On the network leg, TLS without a mesh signature may also be a sidecar originating it
    // for a DestinationRule SIMPLE/MUTUAL; only the pod-local leg or a paired leg proves
    // it is the application's own.
    if call.class == Class::AppTls && leg == Leg::Network && call.confidence == Confidence::High {
        call.confidence = Confidence::Medium;
    }
    let diagnosis = diagnose::diagnose(f, call.class, leg, failure);
    Verdict {
        class: call.class,
        confidence: call.confidence,
        evidence: call.evidence,
        leg,
        handshake,
        diagnosis,
        mesh: call.mesh,
    }
}

/// Whether an address is private (RFC 1918, CGNAT, unique-local, link-local): a pod's.
pub fn private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_link_local()
                || (a.octets()[0] == 100 && a.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(a) => {
            (a.segments()[0] & 0xfe00) == 0xfc00 || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests;
