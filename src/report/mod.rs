//! Report: owned, serializable records built from finished flows, and their printers.
//!
//! The JSON Lines shapes here are a public contract, documented field by field in
//! `docs/flow-record.md` and checked by `tests/`. Names are snake_case; code points are
//! hex strings (`"0x0304"`); times are RFC 3339 UTC with microseconds. Payload bytes and
//! header values are never included.

pub mod json;
pub mod table;
pub mod text;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::analyzers::tls::cert::CertSummary;
use crate::analyzers::tls::{TlsFacts, names};
use crate::analyzers::{ConnAnalyzer, plain};
use crate::capture::Timestamp;
use crate::classify::pairing::{self, LegView, Link};
use crate::classify::{self, Class, Diagnosis, Facts, Leg, Mesh, mesh};
use crate::decode::Endpoint;
use crate::flow::{Body, Dir, EndReason, Flow};
pub use text::{CodePoint, UtcTime};

/// Version of the JSON Lines schema; bumped only on a breaking change.
pub const SCHEMA_VERSION: u32 = 1;

/// A value per direction of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PerSide {
    /// Sent by the client.
    pub client: u64,
    /// Sent by the server.
    pub server: u64,
}

/// Something the traffic did that analysis had to work around.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// `gap`, `overlap_conflict`, `truncated_packets`, `out_of_order_overflow`,
    /// `tls_malformed`, `tls_desync`, `midstream`.
    pub kind: &'static str,
    /// `client` or `server`, when it belongs to one direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'static str>,
    /// How many times.
    pub count: u64,
    /// Bytes concerned (missed bytes for a gap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A plaintext TLS alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertRecord {
    /// `client` or `server`.
    pub from: &'static str,
    /// 1 warning, 2 fatal.
    pub level: u8,
    /// Description code.
    pub description: u8,
    /// Description name, or null when unregistered.
    pub name: Option<&'static str>,
    /// Frame that completed the alert.
    pub frame: u64,
}

/// TLS facts of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsRecord {
    /// First server name of the ClientHello.
    pub sni: Option<String>,
    /// Every server name.
    pub sni_all: Vec<String>,
    /// ALPN offered, in order; null when the extension is absent.
    pub alpn_offered: Option<Vec<String>>,
    /// ALPN selected by the ServerHello (TLS ≤ 1.2; TLS 1.3 encrypts it).
    pub alpn_selected: Option<String>,
    /// ClientHello legacy version.
    pub client_hello_version: Option<CodePoint>,
    /// supported_versions offered, GREASE kept (16-bit code points, printed as hex).
    #[serde(serialize_with = "text::serialize_opt_code_points")]
    pub supported_versions_offered: Option<Vec<u16>>,
    /// Negotiated version.
    pub version: Option<CodePoint>,
    /// Its name (a fixed name, or one made for a draft version).
    pub version_name: Option<Cow<'static, str>>,
    /// Chosen cipher suite.
    pub cipher: Option<CodePoint>,
    /// Its name.
    pub cipher_name: Option<&'static str>,
    /// Cipher suites offered, in order (16-bit code points, printed as hex: the lists of
    /// the ClientHello, moved here rather than converted).
    #[serde(serialize_with = "text::serialize_code_points")]
    pub ciphers_offered: Vec<u16>,
    /// supported_groups offered.
    #[serde(serialize_with = "text::serialize_code_points")]
    pub groups_offered: Vec<u16>,
    /// Groups of the client's key shares.
    #[serde(serialize_with = "text::serialize_code_points")]
    pub key_share_groups: Vec<u16>,
    /// Plaintext alerts.
    pub alerts: Vec<AlertRecord>,
    /// Encrypted alert records (an alert visible only as a record type/size).
    pub encrypted_alerts: PerSide,
    /// The server asked for a client certificate.
    pub certificate_request: bool,
    /// The client sent a Certificate message (TLS ≤ 1.2).
    pub client_certificate: bool,
    /// Certificates in it.
    pub client_certificate_count: Option<usize>,
    /// The server sent a Certificate message in clear (TLS ≤ 1.2).
    pub server_certificate: bool,
    /// Certificates in it.
    pub server_certificate_count: Option<usize>,
    /// Summaries of the client's chain, when visible (TLS ≤ 1.2; at most 8). Shared with
    /// the analyzers' memo of certificates already summarized, not copied.
    pub client_certificates: Vec<Arc<CertSummary>>,
    /// Summaries of the server's chain, when visible (at most 8; certificates that do not
    /// parse, or that exceed the reassembly bounds, are counted but not summarized).
    pub server_certificates: Vec<Arc<CertSummary>>,
    /// The handshake resumed a session.
    pub resumed: bool,
    /// How: `session_id`, `ticket` or `psk`; null when not resumed.
    pub resumed_by: Option<&'static str>,
    /// A HelloRetryRequest was sent.
    pub hello_retry_request: bool,
    /// Encrypted ClientHello offered.
    pub ech_offered: bool,
    /// Session resumption offered: session id, ticket or PSK.
    pub resumption_offered: bool,
    /// 0-RTT early data offered.
    pub early_data_offered: bool,
    /// SSL 2.0 hello format.
    pub sslv2: bool,
    /// JA4 fingerprint of the ClientHello (shared with the analyzers' memo, not copied).
    pub ja4: Option<Arc<str>>,
    /// ClientHellos seen.
    pub client_hellos: u32,
    /// Frame that completed the ClientHello.
    pub client_hello_frame: Option<u64>,
    /// Plaintext protocol before TLS started (STARTTLS, HTTP CONNECT), if any.
    pub preamble: Option<String>,
    /// Application data records.
    pub app_data_records: PerSide,
}

/// Cleartext HTTP/1.x facts (never header values other than Host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpRecord {
    /// Request method.
    pub method: Option<String>,
    /// Request path without query string.
    pub path: Option<String>,
    /// Host header.
    pub host: Option<String>,
    /// Response status.
    pub status: Option<u16>,
}

/// The other leg of the same request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairRecord {
    /// Its first frame.
    pub first_frame: u64,
    /// Its client.
    #[serde(serialize_with = "text::serialize_endpoint")]
    pub client: Endpoint,
    /// Its server.
    #[serde(serialize_with = "text::serialize_endpoint")]
    pub server: Endpoint,
    /// What the pair shows: `double-wrapped`, `double-tls`, `sidecar-originated`,
    /// `mesh-hop`, `passthrough`.
    pub link: &'static str,
}

/// One flow, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// Always `"flow"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Capture path as given (shared by the records of a capture).
    pub capture: Arc<str>,
    /// Client endpoint.
    #[serde(serialize_with = "text::serialize_endpoint")]
    pub client: Endpoint,
    /// Server endpoint.
    #[serde(serialize_with = "text::serialize_endpoint")]
    pub server: Endpoint,
    /// What decided the client.
    pub client_basis: &'static str,
    /// First frame (1-based).
    pub first_frame: u64,
    /// Last frame.
    pub last_frame: u64,
    /// Time of the first packet.
    pub first_ts: UtcTime,
    /// Time of the last packet.
    pub last_ts: UtcTime,
    /// Packets per side.
    pub packets: PerSide,
    /// TCP payload bytes per side.
    pub bytes: PerSide,
    /// TCP state.
    pub state: &'static str,
    /// Why the record was emitted.
    pub end: &'static str,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
    /// Application protocol: `tls`, `http/1.x`, `h2c`, `smtp`, ..., `unknown`, or null
    /// when no payload was seen.
    pub app_protocol: Option<&'static str>,
    /// Class.
    pub class: &'static str,
    /// Confidence of the class.
    pub confidence: &'static str,
    /// Facts behind the class.
    pub evidence: Vec<String>,
    /// `network` or `pod-local`.
    pub leg: &'static str,
    /// TLS handshake outcome.
    pub handshake: &'static str,
    /// What went wrong, or null when healthy.
    pub diagnosis: Option<Diagnosis>,
    /// Mesh details, for mesh mTLS.
    pub mesh: Option<Mesh>,
    /// Cleartext HTTP facts.
    pub http: Option<HttpRecord>,
    /// The other leg of the same request, when the capture holds both.
    pub paired_with: Option<PairRecord>,
    /// TLS facts, or null when no TLS was seen.
    pub tls: Option<TlsRecord>,
}

fn side(client: Dir, dir: Dir) -> &'static str {
    if dir == client { "client" } else { "server" }
}

/// Formats a timestamp as RFC 3339 UTC with microseconds.
pub fn rfc3339(ts: Timestamp) -> String {
    UtcTime(ts).text().as_str().to_string()
}

fn anomalies(flow: &Flow<ConnAnalyzer>, client: Dir) -> Vec<Anomaly> {
    let mut out = Vec::new();
    if flow.half.iter().all(|h| !h.saw_syn()) {
        out.push(Anomaly {
            kind: "midstream",
            from: None,
            count: 1,
            bytes: None,
        });
    }
    for d in [client, client.rev()] {
        let s = flow.stats(d);
        let from = Some(side(client, d));
        let mut push = |kind, count: u64, bytes| {
            if count > 0 {
                out.push(Anomaly {
                    kind,
                    from,
                    count,
                    bytes,
                });
            }
        };
        push("gap", s.gaps, Some(s.missed_bytes));
        push("overlap_conflict", s.overlap_conflicts, None);
        push("truncated_packets", s.truncated, None);
        push("out_of_order_overflow", s.overflows, None);
    }
    let f = flow.handler().tls.facts();
    if f.malformed > 0 {
        out.push(Anomaly {
            kind: "tls_malformed",
            from: None,
            count: u64::from(f.malformed),
            bytes: None,
        });
    }
    if f.desyncs > 0 {
        out.push(Anomaly {
            kind: "tls_desync",
            from: None,
            count: u64::from(f.desyncs),
            bytes: None,
        });
    }
    out
}

/// What the TLS record needs from the analyzer beyond its facts (read before the facts
/// are taken out of it).
struct TlsExtra {
    preamble: Option<String>,
    resumed_by: Option<&'static str>,
}

/// The analyzer-level parts of the TLS record, or `None` when the flow has no TLS.
fn tls_extra(flow: &Flow<ConnAnalyzer>, client: Dir) -> Option<TlsExtra> {
    let tls = &flow.handler().tls;
    if !tls.is_tls() {
        return None;
    }
    let preamble_dir = [client, client.rev()]
        .into_iter()
        .find(|&d| tls.preamble(d) > 0);
    let preamble = preamble_dir.map(|_| {
        let (c, s) = (
            flow.handler().head(client),
            flow.handler().head(client.rev()),
        );
        if c.starts_with(b"CONNECT ") {
            "http-connect".to_string()
        } else {
            plain::detect(c, s).unwrap_or("unknown").to_string()
        }
    });
    Some(TlsExtra {
        preamble,
        resumed_by: tls.resumption(),
    })
}

/// A copy of the facts a TLS record is made of, for a flow that goes on (`--early`).
fn copy_facts(f: &TlsFacts) -> TlsFacts {
    TlsFacts {
        client_dir: f.client_dir,
        server_dir: f.server_dir,
        client_hello: f.client_hello.clone(),
        client_hellos: f.client_hellos,
        client_hello_frame: f.client_hello_frame,
        server_hello: f.server_hello.clone(),
        hello_retry: f.hello_retry.clone(),
        alerts: f.alerts.clone(),
        certificate_request: f.certificate_request,
        client_certificates: f.client_certificates,
        client_certificate_chain: f.client_certificate_chain.clone(),
        server_certificates: f.server_certificates.clone(),
        server_certificate_count: f.server_certificate_count,
        server_full_handshake: f.server_full_handshake,
        session_ticket_issued: f.session_ticket_issued,
        change_cipher_spec: f.change_cipher_spec,
        encrypted_alerts: f.encrypted_alerts,
        app_data_records: f.app_data_records,
        malformed: f.malformed,
        desyncs: f.desyncs,
    }
}

/// The TLS record, made of the flow's facts: names, lists and certificate chains are
/// moved into it, not copied (the flow is done with them).
fn tls_record(f: TlsFacts, client: Dir, extra: TlsExtra) -> TlsRecord {
    let TlsFacts {
        mut client_hello,
        client_hellos,
        client_hello_frame,
        mut server_hello,
        hello_retry,
        alerts,
        certificate_request,
        client_certificates,
        client_certificate_chain,
        server_certificates,
        server_certificate_count,
        encrypted_alerts,
        app_data_records,
        ..
    } = f;
    let TlsExtra {
        preamble,
        resumed_by,
    } = extra;
    let per = |v: [u64; 2]| PerSide {
        client: v[client.idx()],
        server: v[client.rev().idx()],
    };
    // Owned parts first; the rest reads the hellos. Only the final ServerHello's ALPN is
    // reported; version and cipher come from it or, failing that, the HelloRetryRequest.
    let sni_all = client_hello
        .as_mut()
        .map(|c| std::mem::take(&mut c.sni))
        .unwrap_or_default();
    let alpn_offered = client_hello.as_mut().and_then(|c| c.alpn.take());
    // The code point lists as the hello parsed them (printed as hex when written).
    let (supported_versions_offered, ciphers_offered, groups_offered, key_share_groups) =
        client_hello
            .as_mut()
            .map(|c| {
                (
                    c.supported_versions.take(),
                    std::mem::take(&mut c.ciphers),
                    std::mem::take(&mut c.groups),
                    std::mem::take(&mut c.key_share_groups),
                )
            })
            .unwrap_or_default();
    let ja4 = client_hello
        .as_ref()
        .filter(|c| !c.sslv2)
        .map(|c| Arc::clone(&c.ja4));
    let alpn_selected = server_hello.as_mut().and_then(|s| s.alpn.take());
    let ch = client_hello.as_ref();
    let sh = server_hello.as_ref().or(hello_retry.as_ref());
    TlsRecord {
        sni: sni_all.first().cloned(),
        sni_all,
        alpn_offered,
        alpn_selected,
        client_hello_version: ch.map(|c| CodePoint::new(c.legacy_version)),
        supported_versions_offered,
        version: sh.map(|s| CodePoint::new(s.version)),
        version_name: sh.and_then(|s| names::version_name(s.version)),
        cipher: sh.and_then(|s| {
            if s.sslv2 {
                s.sslv2_cipher.map(CodePoint::sslv2_cipher)
            } else {
                Some(CodePoint::new(s.cipher))
            }
        }),
        cipher_name: sh
            .filter(|s| !s.sslv2)
            .and_then(|s| names::cipher_name(s.cipher)),
        ciphers_offered,
        groups_offered,
        key_share_groups,
        alerts: alerts
            .iter()
            .map(|a| AlertRecord {
                from: side(client, a.dir),
                level: a.level,
                description: a.description,
                name: names::alert_name(a.description),
                frame: a.frame,
            })
            .collect(),
        encrypted_alerts: per(encrypted_alerts.map(u64::from)),
        certificate_request,
        client_certificate: client_certificates.is_some(),
        client_certificate_count: client_certificates,
        client_certificates: client_certificate_chain,
        server_certificate: server_certificate_count.is_some(),
        server_certificate_count,
        server_certificates,
        resumed: resumed_by.is_some(),
        resumed_by,
        hello_retry_request: hello_retry.is_some(),
        ech_offered: ch.is_some_and(|c| c.ech),
        resumption_offered: ch
            .is_some_and(|c| !c.session_id.is_empty() || c.session_ticket || c.psk),
        early_data_offered: ch.is_some_and(|c| c.early_data),
        sslv2: ch.is_some_and(|c| c.sslv2) || sh.is_some_and(|s| s.sslv2),
        ja4,
        client_hellos,
        client_hello_frame,
        preamble,
        app_data_records: per(app_data_records),
    }
}

fn end_name(end: Option<EndReason>) -> &'static str {
    match end {
        Some(EndReason::EndOfInput) | None => "end_of_input",
        Some(EndReason::Closed) => "closed",
        Some(EndReason::Idle) => "idle_timeout",
        Some(EndReason::PortReuse) => "port_reuse",
        Some(EndReason::Evicted) => "evicted",
    }
}

/// Builds the record of a flow that goes on (an early record, `--early`): its TLS facts
/// are copied.
pub fn flow_record(flow: &Flow<ConnAnalyzer>, capture: &Arc<str>) -> Box<FlowRecord> {
    let (r, tls) = record_but_tls(flow, capture);
    let mut r = Box::new(r);
    if let Some((extra, client)) = tls {
        r.tls = Some(tls_record(
            copy_facts(flow.handler().tls.facts()),
            client,
            extra,
        ));
    }
    r
}

/// Builds the record of a finished flow. The flow is consumed: its server names, ALPN
/// lists, JA4 and certificate chains move into the record instead of being copied, and
/// its body, emptied of them, is given back for its table to reuse for a new flow
/// ([`FlowTable::report_finished`](crate::flow::FlowTable::report_finished)).
///
/// The record is boxed as soon as it is made (it travels boxed to the printer) and the
/// TLS part written into the box: a record is about 1.5 KB, and each move of it by value
/// is a `memcpy` of that size.
pub fn finished_record(
    mut flow: Flow<ConnAnalyzer>,
    capture: &Arc<str>,
) -> (Box<FlowRecord>, Box<Body<ConnAnalyzer>>) {
    let (r, tls) = record_but_tls(&flow, capture);
    let mut r = Box::new(r);
    if let Some((extra, client)) = tls {
        // Moved out of the flow's body.
        let facts = flow.body.handler.tls.take_facts();
        r.tls = Some(tls_record(facts, client, extra));
    }
    (r, flow.body)
}

/// The record of a flow without its TLS facts, and what the TLS record needs besides
/// them (when the flow has TLS).
fn record_but_tls(
    flow: &Flow<ConnAnalyzer>,
    capture: &Arc<str>,
) -> (FlowRecord, Option<(TlsExtra, Dir)>) {
    let roles = classify::roles(flow);
    let c = roles.client;
    let facts = Facts::of(flow, roles);
    let verdict = classify::judge(&facts);
    let tls = tls_extra(flow, c);
    let any_payload = flow.half.iter().any(|h| h.bytes > 0);
    // A cleartext request answered with TLS still spoke its cleartext protocol.
    let app_protocol = if tls.is_some() && verdict.class != Class::Plaintext {
        Some("tls")
    } else if !any_payload {
        None
    } else {
        // The heads the judge read: what it detected, if it asked.
        Some(facts.protocol().unwrap_or("unknown"))
    };
    let (hc, hs) = (&flow.half[c.idx()], &flow.half[c.rev().idx()]);
    let http = matches!(app_protocol, Some("http/1.x")).then(|| {
        let h = plain::http_facts(flow.handler().head(c), flow.handler().head(c.rev()));
        HttpRecord {
            method: h.method,
            path: h.path,
            host: h.host,
            status: h.status,
        }
    });
    let record = FlowRecord {
        kind: "flow",
        capture: Arc::clone(capture),
        client: flow.sender(c),
        server: flow.sender(c.rev()),
        client_basis: roles.basis,
        first_frame: flow.first_frame,
        last_frame: flow.last_frame,
        first_ts: UtcTime(flow.first_ts),
        last_ts: UtcTime(flow.last_ts),
        packets: PerSide {
            client: hc.packets,
            server: hs.packets,
        },
        bytes: PerSide {
            client: hc.bytes,
            server: hs.bytes,
        },
        state: flow.state().name(),
        end: end_name(flow.end),
        anomalies: anomalies(flow, c),
        app_protocol,
        class: verdict.class.name(),
        confidence: verdict.confidence.name(),
        evidence: verdict.evidence,
        leg: verdict.leg.name(),
        handshake: verdict.handshake.name(),
        diagnosis: verdict.diagnosis,
        mesh: verdict.mesh,
        http,
        paired_with: None,
        tls: None,
    };
    (record, tls.map(|t| (t, c)))
}

fn class_of(name: &str) -> Class {
    [
        Class::Plaintext,
        Class::IstioMtls,
        Class::LinkerdMtls,
        Class::ConsulMtls,
        Class::AppTls,
        Class::DoubleWrapped,
    ]
    .into_iter()
    .find(|c| c.name() == name)
    .unwrap_or(Class::Unknown)
}

/// Links the two legs of each request found in one capture's records (see
/// [`classify::pairing`]) and updates both records: `paired_with` on each, and on a
/// double-wrapped pair the class, high confidence, evidence and diagnosis.
pub fn link_legs(records: &mut [&mut FlowRecord]) {
    let views: Vec<LegView> = records
        .iter()
        .map(|r| {
            let alpn = r
                .tls
                .as_ref()
                .and_then(|t| t.alpn_offered.as_deref())
                .unwrap_or_default();
            let has = |a: &str| alpn.iter().any(|x| x == a);
            LegView {
                first_ts: r.first_ts.nanos(),
                client: r.client,
                server: r.server,
                leg: if r.leg == Leg::PodLocal.name() {
                    Leg::PodLocal
                } else {
                    Leg::Network
                },
                class: class_of(r.class),
                client_hello: r.tls.as_ref().is_some_and(|t| t.client_hellos > 0),
                tcp_mode_mtls: (has("istio-peer-exchange") || has("istio"))
                    && !mesh::ISTIO_HTTP_ALPN.iter().any(|a| has(a)),
                handshake_ok: matches!(r.handshake, "complete" | "resumed"),
                tls_answered_in_clear: r
                    .diagnosis
                    .as_ref()
                    .is_some_and(|d| d.code == "tls-to-plaintext-port"),
            }
        })
        .collect();
    for p in pairing::pair(&views) {
        let link = match p.link {
            Link::DoubleWrapped => "double-wrapped",
            Link::DoubleTls => "double-tls",
            Link::SidecarOriginated => "sidecar-originated",
            Link::MeshHop => "mesh-hop",
            Link::Passthrough => "passthrough",
        };
        let refer = |r: &FlowRecord| PairRecord {
            first_frame: r.first_frame,
            client: r.client,
            server: r.server,
            link,
        };
        let (to_local, to_net) = (refer(records[p.pod_local]), refer(records[p.network]));
        let evidence_local = format!("pod_local_leg:frame_{}", to_local.first_frame);
        let evidence_net = format!("network_leg:frame_{}", to_net.first_frame);
        let net = &mut records[p.network];
        net.paired_with = Some(to_local);
        match p.link {
            Link::DoubleWrapped => {
                net.class = Class::DoubleWrapped.name();
                net.confidence = classify::Confidence::High.name();
                net.evidence
                    .push(format!("inner_client_hello_on_{evidence_local}"));
                net.diagnosis = Some(classify::diagnose::double_tls());
            }
            Link::SidecarOriginated => {
                net.confidence = classify::Confidence::High.name();
                net.evidence
                    .push(format!("sidecar_originated:{evidence_local}"));
            }
            Link::DoubleTls => {
                net.evidence
                    .push(format!("sidecar_originated:{evidence_local}"));
                net.diagnosis = Some(classify::diagnose::double_tls_origination());
            }
            Link::MeshHop | Link::Passthrough => net.evidence.push(evidence_local),
        }
        let local = &mut records[p.pod_local];
        local.paired_with = Some(to_net);
        local.evidence.push(evidence_net);
        match p.link {
            Link::DoubleWrapped => local.evidence.push("inner_tls_of_double_wrapped".into()),
            Link::DoubleTls => local.diagnosis = Some(classify::diagnose::double_tls_origination()),
            _ => {}
        }
    }
}

/// Packets a live capture lost before mtlscope saw them (libpcap's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    /// Dropped by the kernel (buffer full: mtlscope or the system too slow).
    pub kernel: u64,
    /// Dropped by the interface or its driver.
    pub interface: u64,
}

/// Counts for one capture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Always `"summary"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// JSON Lines schema version.
    pub schema_version: u32,
    /// Capture path as given.
    pub capture: String,
    /// Frames read.
    pub packets: u64,
    /// Frames decoded to a TCP segment.
    pub decoded: u64,
    /// Frames not decoded, by reason.
    pub undecoded: BTreeMap<&'static str, u64>,
    /// Link types seen, by number, with frame counts.
    pub link_types: BTreeMap<u32, u64>,
    /// Flow records emitted.
    pub flows: u64,
    /// Flows by class.
    pub classes: BTreeMap<&'static str, u64>,
    /// Flows with TLS.
    pub tls_flows: u64,
    /// Anomalies by kind (summed over flows).
    pub anomalies: BTreeMap<&'static str, u64>,
    /// Flows evicted because the flow table was full.
    pub evicted_flows: u64,
    /// Packets of connections already reported closed, absorbed within the linger (a
    /// late ACK, a retransmitted FIN, a RST after the close); in no flow's counts.
    pub late_packets: u64,
    /// Live capture: packets lost before analysis; null for files and streams.
    pub dropped: Option<Drops>,
    /// Reading stopped early on SIGINT or SIGTERM.
    pub interrupted: bool,
    /// A problem that did not stop the analysis (a stream cut in the middle of a record).
    pub warning: Option<String>,
    /// The error that stopped reading this capture, if any.
    pub error: Option<String>,
}

impl Summary {
    /// Adds a flow record's counts.
    pub fn count(&mut self, r: &FlowRecord) {
        self.flows += 1;
        *self.classes.entry(r.class).or_default() += 1;
        if r.tls.is_some() {
            self.tls_flows += 1;
        }
        for a in &r.anomalies {
            *self.anomalies.entry(a.kind).or_default() += a.count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(Timestamp(1_795_843_703_123_456_789)),
            "2026-11-28T05:28:23.123456Z"
        );
        assert_eq!(
            rfc3339(Timestamp(951_782_400 * 1_000_000_000)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
