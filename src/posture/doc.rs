//! The posture document: what `--format json` prints, and what the table, DOT and HTML
//! printers read. Field by field in `docs/posture.md`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Version of the posture JSON document; bumped only on a breaking change.
pub const POSTURE_SCHEMA_VERSION: u32 = 1;

/// One input as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputDoc {
    /// Path as given (`-` for stdin).
    pub path: String,
    /// `capture` or `flow-records`.
    pub kind: &'static str,
    /// Flow records it gave.
    pub flows: u64,
    /// Why it could not be read, or only in part.
    pub error: Option<String>,
}

/// One context file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContextFile {
    /// Path as given.
    pub path: String,
    /// Objects read from it.
    pub objects: u64,
}

/// The Kubernetes context that was given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContextDoc {
    /// `--pods`.
    pub pods: Option<ContextFile>,
    /// `--services`.
    pub services: Option<ContextFile>,
    /// `--policies`.
    pub policies: Option<ContextFile>,
}

/// Counts over all inputs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Flow records read.
    pub flows: u64,
    /// Network-leg flows counted (after removing duplicates).
    pub network_flows: u64,
    /// Pod-local legs (sidecar ↔ app): never counted as exposure, not in the groups.
    pub pod_local_flows: u64,
    /// Network flows seen in more than one capture, counted once.
    pub duplicate_flows: u64,
    /// Network flows whose server was attributed to a namespace.
    pub attributed_flows: u64,
    /// Network flows whose server could not be attributed.
    pub unattributed_flows: u64,
}

/// Flows and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Flows.
    pub flows: u64,
    /// Payload bytes, both directions.
    pub bytes: u64,
}

/// Traffic in one direction of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Flows.
    pub flows: u64,
    /// Payload bytes, both directions.
    pub bytes: u64,
    /// By posture class (only classes seen).
    pub classes: BTreeMap<&'static str, Count>,
    /// Distinct peers (clients for inbound, servers for outbound).
    pub peers: u64,
}

/// A share of traffic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Share {
    /// Of flows.
    pub flows: f64,
    /// Of bytes (null when no bytes).
    pub bytes: Option<f64>,
}

/// A PeerAuthentication mode and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyDoc {
    /// `STRICT`, `PERMISSIVE` or `DISABLE`.
    pub mode: &'static str,
    /// `namespace/name`, or `default` (Istio's PERMISSIVE when no policy applies).
    pub source: String,
    /// Ports of this group's workloads where another mode applies.
    pub exceptions: Vec<PolicyException>,
}

/// A port whose mode differs from its group's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PolicyException {
    /// `namespace/workload`.
    pub workload: String,
    /// Workload port.
    pub port: u16,
    /// The mode there.
    pub mode: &'static str,
    /// The policy that sets it.
    pub source: String,
}

/// A peer behind a finding: one client (or server) and port, with counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerDoc {
    /// `namespace/pod`, `namespace/workload`, or the IP.
    pub client: String,
    /// The client's namespace when known.
    pub client_namespace: Option<String>,
    /// The server it reached: `namespace/pod` or the IP.
    pub server: String,
    /// Server port.
    pub port: u16,
    /// Flows.
    pub flows: u64,
    /// Payload bytes.
    pub bytes: u64,
}

/// Where else a flow was seen (the same connection in another capture).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Seen {
    /// Capture.
    pub capture: String,
    /// Its first frame there.
    pub first_frame: u64,
}

/// A flow behind a finding, with what it takes to find it in Wireshark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRef {
    /// Capture path (as given to `analyze`).
    pub capture: String,
    /// First frame (Wireshark's frame number).
    pub first_frame: u64,
    /// Time of the first packet.
    pub first_ts: Option<String>,
    /// Client endpoint.
    pub client: String,
    /// Server endpoint.
    pub server: String,
    /// Who the client is (`namespace/pod`, ...), when known.
    pub client_name: Option<String>,
    /// Who the server is, when known.
    pub server_name: Option<String>,
    /// The flow record's class.
    pub class: String,
    /// The posture class it counts as.
    pub posture_class: &'static str,
    /// The flow record's handshake outcome.
    pub handshake: Option<String>,
    /// The flow record's diagnosis code.
    pub diagnosis: Option<String>,
    /// A Wireshark display filter for this connection.
    pub display_filter: String,
    /// The same connection in other captures.
    pub also_in: Vec<Seen>,
}

/// One group's posture.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupDoc {
    /// `namespace`, or `namespace/workload`, or `namespace/service`.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Workload (`--by workload`).
    pub workload: Option<String>,
    /// Service (`--by service`, or a workload's service).
    pub service: Option<String>,
    /// The most severe verdict.
    pub verdict: &'static str,
    /// Every verdict that holds, most severe first.
    pub verdicts: Vec<&'static str>,
    /// PeerAuthentication in force (null without `--policies`).
    pub policy: Option<PolicyDoc>,
    /// How its pods take part in the mesh (`--by workload`, with `--pods`).
    pub dataplane: Option<&'static str>,
    /// Flows whose server is in the group.
    pub inbound: Traffic,
    /// Flows whose client is in the group.
    pub outbound: Traffic,
    /// Share of its network traffic (inbound and outbound) that is mesh mTLS
    /// (double-wrapped included); null without traffic.
    pub mesh_mtls_share: Option<Share>,
}

/// A finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `high`, `medium`, `low` or `info`.
    pub severity: &'static str,
    /// `policy-mismatch`, `would-break`, `bypassed`, `strict-enforced`,
    /// `failed-handshakes`, `double-wrapped`, `unknown-traffic`, `unattributed`.
    pub kind: &'static str,
    /// The group (null for `unattributed`).
    pub group: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// What the wire shows.
    pub summary: String,
    /// What to change.
    pub fix: String,
    /// Clients (and ports) behind it.
    pub peers: Vec<PeerDoc>,
    /// Flows behind it (at most [`MAX_FLOW_REFS`]).
    pub flows: Vec<FlowRef>,
    /// Flows behind it in all.
    pub flows_total: u64,
}

/// Flow references kept per finding and for the gate.
pub const MAX_FLOW_REFS: usize = 200;

/// A graph node: a workload (or service, or IP).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Node {
    /// `namespace/workload`, `namespace/service`, or an IP.
    pub id: String,
    /// Namespace, when known.
    pub namespace: Option<String>,
    /// Short name shown.
    pub label: String,
}

/// Flows of one class from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// Client node id.
    pub from: String,
    /// Server node id.
    pub to: String,
    /// Posture class.
    pub class: &'static str,
    /// Server ports, ascending.
    pub ports: Vec<u16>,
    /// Flows.
    pub flows: u64,
    /// Payload bytes.
    pub bytes: u64,
}

/// The service graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// Nodes, sorted by id.
    pub nodes: Vec<Node>,
    /// Edges, sorted.
    pub edges: Vec<Edge>,
}

/// The CI gate's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateDoc {
    /// What is required: `mtls`.
    pub require: &'static str,
    /// Forbidden posture classes.
    pub forbid: Vec<&'static str>,
    /// Namespaces checked (empty: every flow, attributed or not).
    pub namespaces: Vec<String>,
    /// `--allow` entries.
    pub allow: Vec<String>,
    /// No violation.
    pub passed: bool,
    /// Flows into the selected namespaces that were checked.
    pub checked_flows: u64,
    /// Forbidden flows that `--allow` let through.
    pub allowed_flows: u64,
    /// Flows not checked because their server's namespace is unknown (with `--namespace`).
    pub unattributed_flows: u64,
    /// Violations in all.
    pub violations_total: u64,
    /// The offending flows (at most [`MAX_FLOW_REFS`]).
    pub violations: Vec<FlowRef>,
}

/// The whole posture document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    /// Always `"posture"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// [`POSTURE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `namespace`, `workload` or `service`.
    pub by: &'static str,
    /// `--namespace` filter (empty: all).
    pub namespaces: Vec<String>,
    /// Inputs, in the order given.
    pub inputs: Vec<InputDoc>,
    /// Kubernetes context.
    pub context: ContextDoc,
    /// Counts.
    pub totals: Totals,
    /// Groups, sorted by name.
    pub groups: Vec<GroupDoc>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// The service graph (workloads as nodes).
    pub graph: Graph,
    /// The gate, when `--require` was given.
    pub gate: Option<GateDoc>,
}
