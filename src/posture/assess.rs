//! From flow records to the posture document: drop pod-local legs, count a connection seen
//! in several captures once, attribute both ends, group, judge, find, graph and gate.
//!
//! Everything here is deterministic: flows are sorted before they are deduplicated, and
//! every map is ordered, so the document does not depend on input order (apart from the
//! order `inputs` lists them in) or on thread scheduling.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::attribute::{self, Attributed, Learned, Who};
use super::doc::{
    ContextDoc, Count, Document, Edge, Finding, FlowRef, GateDoc, Graph, GroupDoc, InputDoc,
    MAX_FLOW_REFS, Node, POSTURE_SCHEMA_VERSION, PeerDoc, PolicyDoc, PolicyException, Seen, Share,
    Totals, Traffic,
};
use super::gate::Check;
use super::input::Flow;
use super::k8s::{Cluster, PodMesh};
use super::verdict::{self, InboundFact, Mismatch, Rejection, Verdict};
use super::{By, Options, PClass, rejection};

/// The same connection in two captures starts within this many microseconds (captures
/// on different nodes differ by their clocks' skew).
pub const DEDUP_WINDOW_MICROS: i64 = 5_000_000;

/// One input's flows.
#[derive(Clone, Debug)]
pub struct Input {
    /// How it is reported.
    pub doc: InputDoc,
    /// Its flow records.
    pub flows: Vec<Flow>,
}

/// A network flow kept after deduplication, with the other captures that saw it.
#[derive(Clone, Debug)]
struct Kept {
    flow: Flow,
    also_in: Vec<Seen>,
}

fn confidence_rank(f: &Flow) -> u8 {
    match f.confidence.as_deref() {
        Some("high") => 3,
        Some("medium") => 2,
        Some("low") => 1,
        _ => 0,
    }
}

/// Counts a connection seen in several captures once: same client and server endpoints,
/// first packets within [`DEDUP_WINDOW_MICROS`], different captures. The record kept is
/// the most confident (then the first by capture name and frame). Returns the kept flows
/// sorted by capture and frame, and how many were dropped.
fn dedupe(mut flows: Vec<Flow>) -> (Vec<Kept>, u64) {
    flows.sort_by(|a, b| {
        (
            &a.client,
            &a.server,
            a.first_micros(),
            &a.capture,
            a.first_frame,
        )
            .cmp(&(
                &b.client,
                &b.server,
                b.first_micros(),
                &b.capture,
                b.first_frame,
            ))
    });
    let mut clusters: Vec<Vec<Flow>> = Vec::new();
    for f in flows {
        let joins = clusters.last().is_some_and(|c| {
            let head = &c[0];
            head.client == f.client
                && head.server == f.server
                && !c.iter().any(|x| x.capture == f.capture)
                && matches!((head.first_micros(), f.first_micros()),
                    (Some(a), Some(b)) if (b - a).abs() <= DEDUP_WINDOW_MICROS)
        });
        match clusters.last_mut() {
            Some(c) if joins => c.push(f),
            _ => clusters.push(vec![f]),
        }
    }
    let mut dropped = 0;
    let mut kept: Vec<Kept> = clusters
        .into_iter()
        .map(|mut c| {
            c.sort_by(|a, b| {
                (confidence_rank(b), &a.capture, a.first_frame).cmp(&(
                    confidence_rank(a),
                    &b.capture,
                    b.first_frame,
                ))
            });
            dropped += c.len() as u64 - 1;
            let mut it = c.into_iter();
            let flow = it.next().expect("clusters are never empty");
            let mut also_in: Vec<Seen> = it
                .map(|f| Seen {
                    capture: f.capture,
                    first_frame: f.first_frame,
                })
                .collect();
            also_in.sort();
            Kept { flow, also_in }
        })
        .collect();
    kept.sort_by(|a, b| {
        (&a.flow.capture, a.flow.first_frame).cmp(&(&b.flow.capture, b.flow.first_frame))
    });
    (kept, dropped)
}

/// A Wireshark display filter for the connection between `c` and `s`.
pub fn display_filter(c: SocketAddr, s: SocketAddr) -> String {
    let ipf = if c.is_ipv4() { "ip.addr" } else { "ipv6.addr" };
    format!(
        "{ipf}=={} && tcp.port=={} && {ipf}=={} && tcp.port=={}",
        c.ip(),
        c.port(),
        s.ip(),
        s.port()
    )
}

/// Everything known about one counted network flow.
struct Row<'a> {
    a: Attributed<'a>,
    class: PClass,
    fact: InboundFact,
    effective: Option<super::k8s::Effective>,
    also_in: &'a [Seen],
}

impl Row<'_> {
    fn bytes(&self) -> u64 {
        self.a.flow.total_bytes()
    }

    fn flow_ref(&self) -> FlowRef {
        let f = self.a.flow;
        let name = |w: &Who, ip| w.basis.map(|_| w.label(ip));
        FlowRef {
            capture: f.capture.clone(),
            first_frame: f.first_frame,
            first_ts: f.first_ts.clone(),
            client: f.client.clone(),
            server: f.server.clone(),
            client_name: name(&self.a.client, self.a.client_addr.ip()),
            server_name: name(&self.a.server, self.a.server_addr.ip()),
            class: f.class.clone(),
            posture_class: self.class.name(),
            handshake: f.handshake.clone(),
            diagnosis: f.diagnosis_code().map(str::to_string),
            display_filter: display_filter(self.a.client_addr, self.a.server_addr),
            also_in: self.also_in.to_vec(),
        }
    }

    fn client_label(&self) -> String {
        self.a.client.label(self.a.client_addr.ip())
    }

    fn server_label(&self) -> String {
        self.a.server.label(self.a.server_addr.ip())
    }
}

/// A group's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    namespace: String,
    workload: Option<String>,
    service: Option<String>,
}

impl Key {
    fn of(who: &Who, by: By) -> Option<Key> {
        let namespace = who.namespace.clone()?;
        let sa = || who.service_account.as_ref().map(|s| format!("sa:{s}"));
        let (workload, service) = match by {
            By::Namespace => (None, None),
            By::Workload => match &who.workload {
                Some(w) => (Some(w.clone()), None),
                None => match &who.service {
                    Some(s) => (None, Some(s.clone())),
                    None => (sa(), None),
                },
            },
            By::Service => match &who.service {
                Some(s) => (None, Some(s.clone())),
                None => (who.workload.clone().or_else(sa), None),
            },
        };
        Some(Key {
            namespace,
            workload,
            service,
        })
    }

    fn name(&self) -> String {
        match (&self.workload, &self.service) {
            (Some(w), _) => format!("{}/{w}", self.namespace),
            (None, Some(s)) => format!("{}/{s}", self.namespace),
            (None, None) => self.namespace.clone(),
        }
    }
}

#[derive(Default)]
struct Acc {
    inbound: Vec<usize>,
    outbound: Vec<usize>,
}

fn traffic(rows: &[Row<'_>], idx: &[usize], inbound: bool) -> Traffic {
    let mut t = Traffic::default();
    let mut peers = BTreeSet::new();
    for &i in idx {
        let r = &rows[i];
        t.flows += 1;
        t.bytes += r.bytes();
        let c = t.classes.entry(r.class.name()).or_insert(Count::default());
        c.flows += 1;
        c.bytes += r.bytes();
        peers.insert(if inbound {
            r.client_label()
        } else {
            r.a.server.node(r.a.server_addr.ip())
        });
    }
    t.peers = peers.len() as u64;
    t
}

fn share(rows: &[Row<'_>], idx: &BTreeSet<usize>) -> Option<Share> {
    if idx.is_empty() {
        return None;
    }
    let (mut flows, mut bytes, mut all_bytes) = (0u64, 0u64, 0u64);
    for &i in idx {
        let r = &rows[i];
        all_bytes += r.bytes();
        if r.class.is_mesh_mtls() {
            flows += 1;
            bytes += r.bytes();
        }
    }
    Some(Share {
        flows: round4(flows as f64 / idx.len() as f64),
        bytes: (all_bytes > 0).then(|| round4(bytes as f64 / all_bytes as f64)),
    })
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn peers(rows: &[Row<'_>], idx: &[usize]) -> Vec<PeerDoc> {
    let mut m: BTreeMap<(String, String, u16), (Option<String>, Count)> = BTreeMap::new();
    for &i in idx {
        let r = &rows[i];
        let e = m
            .entry((r.client_label(), r.server_label(), r.a.server_addr.port()))
            .or_insert((r.a.client.namespace.clone(), Count::default()));
        e.1.flows += 1;
        e.1.bytes += r.bytes();
    }
    let mut out: Vec<PeerDoc> = m
        .into_iter()
        .map(|((client, server, port), (ns, c))| PeerDoc {
            client,
            client_namespace: ns,
            server,
            port,
            flows: c.flows,
            bytes: c.bytes,
        })
        .collect();
    out.sort_by(|a, b| {
        b.flows
            .cmp(&a.flows)
            .then_with(|| (&a.client, a.port).cmp(&(&b.client, b.port)))
    });
    out
}

fn refs(rows: &[Row<'_>], idx: &[usize]) -> (Vec<FlowRef>, u64) {
    let v = idx
        .iter()
        .take(MAX_FLOW_REFS)
        .map(|&i| rows[i].flow_ref())
        .collect();
    (v, idx.len() as u64)
}

fn peer_list(p: &[PeerDoc]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = p
        .iter()
        .take(SHOWN)
        .map(|x| {
            format!(
                "{} → :{} ({} flow{})",
                x.client,
                x.port,
                x.flows,
                if x.flows == 1 { "" } else { "s" }
            )
        })
        .collect();
    if p.len() > SHOWN {
        parts.push(format!("and {} more", p.len() - SHOWN));
    }
    parts.join(", ")
}

fn ports_of(rows: &[Row<'_>], idx: &[usize]) -> String {
    let ports: BTreeSet<u16> = idx.iter().map(|&i| rows[i].a.server_addr.port()).collect();
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Distinct clients among peers (a client on two ports is one client).
fn clients(p: &[PeerDoc]) -> usize {
    p.iter().map(|x| &x.client).collect::<BTreeSet<_>>().len()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Findings of one group, from its inbound rows.
fn group_findings(rows: &[Row<'_>], key: &Key, inbound: &[usize]) -> Vec<Finding> {
    let select = |p: &dyn Fn(&Row<'_>) -> bool| -> Vec<usize> {
        inbound.iter().copied().filter(|&i| p(&rows[i])).collect()
    };
    let group = key.name();
    let mut out = Vec::new();
    let mut push =
        |severity, kind, summary: String, fix: String, with_peers: bool, idx: &[usize]| {
            let (flows, flows_total) = refs(rows, idx);
            out.push(Finding {
                severity,
                kind,
                group: Some(group.clone()),
                namespace: Some(key.namespace.clone()),
                summary,
                fix,
                peers: if with_peers {
                    peers(rows, idx)
                } else {
                    Vec::new()
                },
                flows,
                flows_total,
            });
        };

    let strict_accepted =
        select(&|r| verdict::policy_mismatch(&r.fact) == Some(Mismatch::StrictButAccepted));
    if !strict_accepted.is_empty() {
        let sources: BTreeSet<String> = strict_accepted
            .iter()
            .filter_map(|&i| rows[i].effective.as_ref().map(|e| e.source.clone()))
            .collect();
        let excluded = strict_accepted
            .iter()
            .filter(|&&i| rows[i].fact.excluded)
            .count();
        let why = if excluded == strict_accepted.len() {
            " because the port is excluded from the sidecar (traffic.sidecar.istio.io/excludeInboundPorts), \
             where no PeerAuthentication applies"
                .to_string()
        } else if strict_accepted
            .iter()
            .all(|&i| rows[i].fact.meshed == Some(false))
        {
            " because the server pod has no sidecar to enforce it".to_string()
        } else {
            String::new()
        };
        push(
            "high",
            "policy-mismatch",
            format!(
                "PeerAuthentication {} says STRICT, but {} without mesh mTLS {} accepted on port {}{why}.",
                sources.into_iter().collect::<Vec<_>>().join(", "),
                plural(strict_accepted.len(), "flow", "flows"),
                if strict_accepted.len() == 1 { "was" } else { "were" },
                ports_of(rows, &strict_accepted),
            ),
            "Remove the port from excludeInboundPorts (or add it to includeInboundPorts) and make sure every \
             server pod runs a sidecar, so that STRICT is enforced; or set portLevelMtls for the port to \
             what is really meant."
                .into(),
            true,
            &strict_accepted,
        );
    }
    let disable_mtls =
        select(&|r| verdict::policy_mismatch(&r.fact) == Some(Mismatch::DisableButMtls));
    if !disable_mtls.is_empty() {
        let sources: BTreeSet<String> = disable_mtls
            .iter()
            .filter_map(|&i| rows[i].effective.as_ref().map(|e| e.source.clone()))
            .collect();
        push(
            "high",
            "policy-mismatch",
            format!(
                "PeerAuthentication {} says DISABLE, but {} of mesh mTLS {} accepted on port {}: the sidecars \
                 do not enforce this policy (not yet pushed, another policy wins, or it changed after the capture).",
                sources.into_iter().collect::<Vec<_>>().join(", "),
                plural(disable_mtls.len(), "flow", "flows"),
                if disable_mtls.len() == 1 { "was" } else { "were" },
                ports_of(rows, &disable_mtls),
            ),
            "Check the policy istiod applies (`istioctl x describe pod`, `istioctl proxy-config listener`) and \
             remove the DISABLE policy if mTLS is wanted."
                .into(),
            false,
            &disable_mtls,
        );
    }
    let breaking = select(&|r| verdict::would_break(&r.fact));
    if !breaking.is_empty() {
        let p = peers(rows, &breaking);
        push(
            "high",
            "would-break",
            format!(
                "STRICT would reset {} reaching {group} without mesh mTLS: {}.",
                plural(clients(&p), "client", "clients"),
                peer_list(&p)
            ),
            "Give these clients a sidecar (or enroll them in ambient) so that auto-mTLS encrypts their traffic, \
             then set PeerAuthentication mtls.mode STRICT; meanwhile keep their ports PERMISSIVE with \
             portLevelMtls."
                .into(),
            true,
            &breaking,
        );
    }
    let bypass = select(&|r| verdict::bypassed(&r.fact));
    if !bypass.is_empty() {
        let excluded = bypass.iter().any(|&i| rows[i].fact.excluded);
        let why = if excluded {
            "excluded from the sidecar (traffic.sidecar.istio.io/excludeInboundPorts)"
        } else {
            "of pods without a sidecar"
        };
        let p = peers(rows, &bypass);
        push(
            "high",
            "bypassed",
            format!(
                "Plaintext accepted on port {} {why}: no PeerAuthentication applies there, STRICT cannot protect \
                 it. From: {}.",
                ports_of(rows, &bypass),
                peer_list(&p)
            ),
            "Remove the port from excludeInboundPorts (or inject a sidecar) so that the mesh encrypts it, or \
             encrypt it in the application."
                .into(),
            true,
            &bypass,
        );
    }
    let reset = select(&|r| verdict::strict_enforced(&r.fact));
    if !reset.is_empty() {
        let p = peers(rows, &reset);
        push(
            "medium",
            "strict-enforced",
            format!(
                "STRICT reset {} from {}: {}. Their requests crossed the network in clear before the reset.",
                plural(reset.len(), "plaintext connection", "plaintext connections"),
                plural(clients(&p), "client", "clients"),
                peer_list(&p)
            ),
            "Inject a sidecar into these clients (or enroll them in ambient), or remove their \
             excludeOutboundPorts/excludeOutboundIPRanges; they cannot reach the service as they are."
                .into(),
            true,
            &reset,
        );
    }
    let failed =
        select(&|r| r.class == PClass::Failed && r.fact.rejection != Some(Rejection::Strict));
    if !failed.is_empty() {
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for &i in &failed {
            *codes
                .entry(
                    rows[i]
                        .a
                        .flow
                        .diagnosis_code()
                        .unwrap_or("no diagnosis")
                        .to_string(),
                )
                .or_default() += 1;
        }
        let fixes: BTreeSet<String> = failed
            .iter()
            .filter_map(|&i| rows[i].a.flow.diagnosis.as_ref()?.fix.clone())
            .collect();
        push(
            "medium",
            "failed-handshakes",
            format!(
                "{} failed: {}.",
                plural(failed.len(), "connection", "connections"),
                codes
                    .iter()
                    .map(|(c, n)| format!("{c} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            if fixes.is_empty() {
                "See each flow's diagnosis (`mtlscope analyze --explain`).".into()
            } else {
                fixes.into_iter().collect::<Vec<_>>().join(" ")
            },
            true,
            &failed,
        );
    }
    let double = select(&|r| r.class == PClass::DoubleWrapped);
    if !double.is_empty() {
        let ports: BTreeSet<String> = double
            .iter()
            .map(|&i| {
                let r = &rows[i];
                match &r.a.service_port {
                    Some(sp) => format!(
                        "{} (Service port {}{}{})",
                        r.a.server_addr.port(),
                        sp.port,
                        sp.name
                            .as_ref()
                            .map_or(String::new(), |n| format!(" named {n}")),
                        sp.app_protocol
                            .as_ref()
                            .map_or(String::new(), |a| format!(", appProtocol {a}"))
                    ),
                    None => r.a.server_addr.port().to_string(),
                }
            })
            .collect();
        push(
            "low",
            "double-wrapped",
            format!(
                "{} of application TLS inside mesh mTLS on port {}: encrypted twice, and the sidecars see only \
                 TCP (no L7 routing, retries or HTTP telemetry).",
                plural(double.len(), "flow", "flows"),
                ports.into_iter().collect::<Vec<_>>().join(", ")
            ),
            "Let the application speak plain HTTP on a port named http and rely on mesh mTLS, or keep app TLS \
             deliberately (e.g. end-to-end certificates) and name the port https/tls."
                .into(),
            false,
            &double,
        );
    }
    let unknown = select(&|r| r.class == PClass::Unknown);
    if !unknown.is_empty() {
        push(
            "low",
            "unknown-traffic",
            format!(
                "{} could not be classified (TLS without its handshake in the capture, no payload, or \
                 unrecognized bytes); they are not counted as plaintext.",
                plural(unknown.len(), "flow", "flows")
            ),
            "Capture from the start of the connections (restart the client, or capture longer) to see their \
             handshakes."
                .into(),
            false,
            &unknown,
        );
    }
    out
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "high" => 0,
        "medium" => 1,
        "low" => 2,
        _ => 3,
    }
}

fn kind_rank(k: &str) -> u8 {
    [
        "policy-mismatch",
        "would-break",
        "bypassed",
        "strict-enforced",
        "failed-handshakes",
        "double-wrapped",
        "unknown-traffic",
        "unattributed",
        "unattributed-clients",
    ]
    .iter()
    .position(|x| *x == k)
    .map_or(u8::MAX, |p| p as u8)
}

fn policy_doc(
    rows: &[Row<'_>],
    key: &Key,
    inbound: &[usize],
    cluster: &Cluster,
) -> Option<PolicyDoc> {
    let pod = if key.workload.is_some() {
        inbound
            .iter()
            .find_map(|&i| rows[i].a.server_pod)
            .or_else(|| {
                cluster.pods.iter().flatten().find(|p| {
                    p.namespace == key.namespace && Some(&p.workload) == key.workload.as_ref()
                })
            })
    } else {
        None
    };
    let base = cluster.effective_mode(&key.namespace, pod, None)?;
    let mut exceptions = BTreeSet::new();
    for &i in inbound {
        let r = &rows[i];
        if let (Some(e), Some(p)) = (&r.effective, r.a.server_pod)
            && e.mode != base.mode
        {
            exceptions.insert(PolicyException {
                workload: format!("{}/{}", p.namespace, p.workload),
                port: r.a.server_addr.port(),
                mode: e.mode.name(),
                source: e.source.clone(),
            });
        }
    }
    Some(PolicyDoc {
        mode: base.mode.name(),
        source: base.source,
        exceptions: exceptions.into_iter().collect(),
    })
}

fn dataplane(rows: &[Row<'_>], key: &Key, acc: &Acc, cluster: &Cluster) -> Option<&'static str> {
    key.workload.as_ref()?;
    let pod = acc
        .inbound
        .iter()
        .find_map(|&i| rows[i].a.server_pod)
        .or_else(|| acc.outbound.iter().find_map(|&i| rows[i].a.client_pod))
        .or_else(|| {
            cluster.pods.iter().flatten().find(|p| {
                p.namespace == key.namespace && Some(&p.workload) == key.workload.as_ref()
            })
        })?;
    Some(pod.mesh.name())
}

fn graph(rows: &[Row<'_>], selected: &dyn Fn(&Row<'_>) -> bool) -> Graph {
    let mut nodes = BTreeMap::new();
    let mut edges: BTreeMap<(String, String, PClass), (Count, BTreeSet<u16>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| selected(r)) {
        let mut node = |w: &Who, ip| {
            let id = w.node(ip);
            let label = match &w.namespace {
                Some(ns) => id
                    .strip_prefix(&format!("{ns}/"))
                    .unwrap_or(&id)
                    .to_string(),
                None => id.clone(),
            };
            nodes.entry(id.clone()).or_insert(Node {
                id: id.clone(),
                namespace: w.namespace.clone(),
                label,
            });
            id
        };
        let from = node(&r.a.client, r.a.client_addr.ip());
        let to = node(&r.a.server, r.a.server_addr.ip());
        let (c, ports) = edges.entry((from, to, r.class)).or_default();
        c.flows += 1;
        c.bytes += r.bytes();
        ports.insert(r.a.server_addr.port());
    }
    Graph {
        nodes: nodes.into_values().collect(),
        edges: edges
            .into_iter()
            .map(|((from, to, class), (c, ports))| Edge {
                from,
                to,
                class: class.name(),
                ports: ports.into_iter().collect(),
                flows: c.flows,
                bytes: c.bytes,
            })
            .collect(),
    }
}

/// Builds the posture document.
pub fn assess(
    inputs: Vec<Input>,
    cluster: &Cluster,
    context: ContextDoc,
    opts: &Options,
) -> Document {
    let mut totals = Totals::default();
    let mut docs = Vec::with_capacity(inputs.len());
    let mut network = Vec::new();
    for input in inputs {
        docs.push(input.doc);
        for f in input.flows {
            totals.flows += 1;
            if f.is_network() {
                network.push(f);
            } else {
                totals.pod_local_flows += 1;
            }
        }
    }
    let (kept, dropped) = dedupe(network);
    totals.duplicate_flows = dropped;
    totals.network_flows = kept.len() as u64;
    let learned = Learned::from_flows(kept.iter().map(|k| &k.flow));

    let rows: Vec<Row<'_>> = kept
        .iter()
        .filter_map(|k| {
            let a = attribute::attribute(&k.flow, cluster, &learned)?;
            let class = PClass::of(&k.flow);
            let effective = a.server.namespace.as_deref().and_then(|ns| {
                cluster.effective_mode(ns, a.server_pod, Some(a.server_addr.port()))
            });
            let fact = InboundFact {
                class,
                rejection: rejection(&k.flow),
                excluded: a
                    .server_pod
                    .is_some_and(|p| p.port_excluded(a.server_addr.port())),
                meshed: a.server_pod.map(|p| p.mesh != PodMesh::None),
                mode: effective.as_ref().map(|e| e.mode),
            };
            Some(Row {
                a,
                class,
                fact,
                effective,
                also_in: &k.also_in,
            })
        })
        .collect();

    let mut groups: BTreeMap<Key, Acc> = BTreeMap::new();
    let mut unattributed = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match Key::of(&r.a.server, opts.by) {
            Some(k) => groups.entry(k).or_default().inbound.push(i),
            None => unattributed.push(i),
        }
        if let Some(k) = Key::of(&r.a.client, opts.by) {
            groups.entry(k).or_default().outbound.push(i);
        }
    }
    totals.unattributed_flows = unattributed.len() as u64;
    totals.attributed_flows = rows.len() as u64 - totals.unattributed_flows;

    let shown = |ns: &str| opts.namespaces.is_empty() || opts.namespaces.iter().any(|n| n == ns);
    let mut group_docs = Vec::new();
    let mut findings = Vec::new();
    for (key, acc) in &groups {
        if !shown(&key.namespace) {
            continue;
        }
        let facts: Vec<InboundFact> = acc.inbound.iter().map(|&i| rows[i].fact).collect();
        let verdicts: Vec<&'static str> = verdict::verdicts(&facts)
            .into_iter()
            .map(Verdict::name)
            .collect();
        let both: BTreeSet<usize> = acc.inbound.iter().chain(&acc.outbound).copied().collect();
        let service = key.service.clone().or_else(|| {
            key.workload.as_ref().and_then(|_| {
                acc.inbound
                    .iter()
                    .find_map(|&i| rows[i].a.server.service.clone())
            })
        });
        group_docs.push(GroupDoc {
            name: key.name(),
            namespace: key.namespace.clone(),
            workload: key.workload.clone(),
            service,
            verdict: verdicts[0],
            verdicts,
            policy: policy_doc(&rows, key, &acc.inbound, cluster),
            dataplane: dataplane(&rows, key, acc, cluster),
            inbound: traffic(&rows, &acc.inbound, true),
            outbound: traffic(&rows, &acc.outbound, false),
            mesh_mtls_share: share(&rows, &both),
        });
        findings.extend(group_findings(&rows, key, &acc.inbound));
    }
    if !unattributed.is_empty() {
        let (flows, flows_total) = refs(&rows, &unattributed);
        let servers: BTreeSet<String> = unattributed
            .iter()
            .map(|&i| rows[i].a.server_addr.to_string())
            .collect();
        let shown_servers: Vec<String> = servers.iter().take(8).cloned().collect();
        findings.push(Finding {
            severity: "info",
            kind: "unattributed",
            group: None,
            namespace: None,
            summary: format!(
                "{} to {} could not be attributed to a namespace (no pod or Service with that IP, no Istio SNI, \
                 no SPIFFE ID, no <svc>.<ns>.svc name): {}{}.",
                plural(unattributed.len(), "flow", "flows"),
                plural(servers.len(), "server", "servers"),
                shown_servers.join(", "),
                if servers.len() > shown_servers.len() { ", …" } else { "" }
            ),
            fix: "Give the cluster's context: --pods (kubectl get pods -A -o json) and --services (kubectl get \
                  svc -A -o json)."
                .into(),
            peers: Vec::new(),
            flows,
            flows_total,
        });
    }
    let mut strangers: BTreeMap<String, Count> = BTreeMap::new();
    let mut stranger_rows = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if r.a.client.basis.is_none() {
            let c = strangers
                .entry(r.a.client_addr.ip().to_string())
                .or_default();
            c.flows += 1;
            c.bytes += r.bytes();
            stranger_rows.push(i);
        }
    }
    if !strangers.is_empty() {
        let (flows, flows_total) = refs(&rows, &stranger_rows);
        let ips: Vec<&String> = strangers.keys().take(8).collect();
        findings.push(Finding {
            severity: "info",
            kind: "unattributed-clients",
            group: None,
            namespace: None,
            summary: format!(
                "{} could not be attributed to a namespace (no pod with that IP, no SPIFFE ID): {}{}. Their \
                 flows count as inbound for their servers, and as nobody's outbound.",
                plural(strangers.len(), "client address", "client addresses"),
                ips.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                if strangers.len() > ips.len() { ", …" } else { "" }
            ),
            fix: "Give the cluster's pods: --pods (kubectl get pods -A -o json).".into(),
            peers: Vec::new(),
            flows,
            flows_total,
        });
    }
    findings.sort_by(|a, b| {
        (severity_rank(a.severity), kind_rank(a.kind), &a.group).cmp(&(
            severity_rank(b.severity),
            kind_rank(b.kind),
            &b.group,
        ))
    });

    let in_view = |r: &Row<'_>| {
        opts.namespaces.is_empty()
            || [&r.a.client.namespace, &r.a.server.namespace]
                .iter()
                .any(|ns| ns.as_deref().is_some_and(shown))
    };
    let graph = graph(&rows, &in_view);

    let gate = opts.gate.as_ref().map(|g| {
        let mut doc = GateDoc {
            require: "mtls",
            forbid: g.forbid.iter().map(|c| c.name()).collect(),
            namespaces: g.namespaces.clone(),
            allow: g.allow_text.clone(),
            passed: true,
            checked_flows: 0,
            allowed_flows: 0,
            unattributed_flows: 0,
            violations_total: 0,
            violations: Vec::new(),
        };
        for r in &rows {
            match g.check(&r.a, r.class) {
                Check::NotSelected => {}
                Check::Unattributed => doc.unattributed_flows += 1,
                Check::Pass => doc.checked_flows += 1,
                Check::Allowed => {
                    doc.checked_flows += 1;
                    doc.allowed_flows += 1;
                }
                Check::Violation => {
                    doc.checked_flows += 1;
                    doc.violations_total += 1;
                    if doc.violations.len() < MAX_FLOW_REFS {
                        doc.violations.push(r.flow_ref());
                    }
                }
            }
        }
        doc.passed = doc.violations_total == 0;
        doc
    });

    Document {
        kind: "posture",
        schema_version: POSTURE_SCHEMA_VERSION,
        by: opts.by.name(),
        namespaces: opts.namespaces.clone(),
        inputs: docs,
        context,
        totals,
        groups: group_docs,
        findings,
        graph,
        gate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(capture: &str, frame: u64, client: &str, ts: &str, confidence: &str) -> Flow {
        Flow::from_value(serde_json::json!({
            "type": "flow", "capture": capture, "client": client, "server": "10.0.0.2:443",
            "class": "istio-mtls", "leg": "network", "first_frame": frame,
            "first_ts": ts, "confidence": confidence,
        }))
        .unwrap()
    }

    #[test]
    fn a_connection_in_two_captures_is_counted_once() {
        let t0 = "2026-01-01T00:00:00.000000Z";
        let t1 = "2026-01-01T00:00:01.000000Z";
        let late = "2026-01-01T00:00:09.000000Z";
        let near = "2026-01-01T00:00:00.200000Z";
        let (kept, dropped) = dedupe(vec![
            flow("server.pcap", 7, "10.0.0.1:5000", near, "medium"),
            flow("client.pcap", 3, "10.0.0.1:5000", t0, "high"),
            // Same capture, same ports, a second later: port reuse, another connection.
            flow("client.pcap", 9, "10.0.0.1:5000", t1, "high"),
            // Another capture, too late to be the same connection.
            flow("third.pcap", 1, "10.0.0.1:5000", late, "high"),
            flow("client.pcap", 4, "10.0.0.1:5001", t0, "high"),
        ]);
        assert_eq!(dropped, 1);
        let got: Vec<(&str, u64, Vec<Seen>)> = kept
            .iter()
            .map(|k| {
                (
                    k.flow.capture.as_str(),
                    k.flow.first_frame,
                    k.also_in.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "client.pcap",
                    3,
                    vec![Seen {
                        capture: "server.pcap".into(),
                        first_frame: 7
                    }]
                ),
                ("client.pcap", 4, vec![]),
                ("client.pcap", 9, vec![]),
                ("third.pcap", 1, vec![]),
            ]
        );
    }

    #[test]
    fn display_filters() {
        assert_eq!(
            display_filter("10.0.0.1:5".parse().unwrap(), "10.0.0.2:6".parse().unwrap()),
            "ip.addr==10.0.0.1 && tcp.port==5 && ip.addr==10.0.0.2 && tcp.port==6"
        );
        assert_eq!(
            display_filter(
                "[fd00::1]:5".parse().unwrap(),
                "[fd00::2]:6".parse().unwrap()
            ),
            "ipv6.addr==fd00::1 && tcp.port==5 && ipv6.addr==fd00::2 && tcp.port==6"
        );
    }
}
