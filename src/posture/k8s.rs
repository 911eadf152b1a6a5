//! Kubernetes context, read from what users already have: `kubectl get pods -A -o json`,
//! `kubectl get svc -A -o json` and `kubectl get peerauthentications.security.istio.io -A
//! -o json` (a `List`, a `<Kind>List` from the API, or a single object).
//!
//! Only the fields posture needs are read; everything else is ignored. A file that is not
//! JSON, or holds the wrong kind of object, or lacks a field posture cannot do without, is
//! an error that says where: serde's line and column for JSON and type errors, the JSON
//! path (`items[3].metadata.name`) for the rest. Pods without an IP (Pending) and
//! host-network pods (their IP is the node's) are kept but not indexed by IP.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Deserialize;

/// The mesh's root namespace: a PeerAuthentication without a selector there is mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

// --------------------------------------------------------------------------------------
// Raw shapes (kubectl's JSON, the subset read)
// --------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOwner {
    kind: Option<String>,
    name: Option<String>,
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    namespace: Option<String>,
    creation_timestamp: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<RawOwner>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainerPort {
    name: Option<String>,
    container_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    name: Option<String>,
    ports: Option<Vec<RawContainerPort>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodSpec {
    containers: Option<Vec<RawContainer>>,
    init_containers: Option<Vec<RawContainer>>,
    service_account_name: Option<String>,
    service_account: Option<String>,
    host_network: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawPodIp {
    ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodStatus {
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<RawPodIp>>,
}

/// A port number or a port name (`targetPort`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum RawIntOrString {
    Int(u16),
    Str(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServicePort {
    name: Option<String>,
    port: Option<u16>,
    target_port: Option<RawIntOrString>,
    app_protocol: Option<String>,
    protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServiceSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
    ports: Option<Vec<RawServicePort>>,
    selector: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSelector {
    match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMtls {
    mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPeerAuthSpec {
    selector: Option<RawSelector>,
    mtls: Option<RawMtls>,
    port_level_mtls: Option<BTreeMap<String, RawMtls>>,
}

/// Items with their JSON paths.
type Items<S, T> = Vec<(String, RawObject<S, T>)>;

/// A kubectl document: a list (`items`) or a single object, of one resource type.
#[derive(Debug, Default, Deserialize)]
struct RawObject<S, T> {
    kind: Option<String>,
    items: Option<Vec<RawObject<S, T>>>,
    metadata: Option<RawMeta>,
    spec: Option<S>,
    status: Option<T>,
}

// --------------------------------------------------------------------------------------
// What posture keeps
// --------------------------------------------------------------------------------------

/// How a pod takes part in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodMesh {
    /// An `istio-proxy` container (or native sidecar init container).
    Sidecar,
    /// Ambient: `istio.io/dataplane-mode: ambient`.
    Ambient,
    /// Neither.
    None,
}

impl PodMesh {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            PodMesh::Sidecar => "sidecar",
            PodMesh::Ambient => "ambient",
            PodMesh::None => "none",
        }
    }
}

/// A pod, as posture needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Workload (Deployment from its ReplicaSet, StatefulSet, DaemonSet, Job, ... or the pod).
    pub workload: String,
    /// Its kind.
    pub workload_kind: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: Option<String>,
    /// Mesh membership.
    pub mesh: PodMesh,
    /// `sidecar.istio.io/inject` (label or annotation), when set.
    pub inject: Option<String>,
    /// `traffic.sidecar.istio.io/excludeInboundPorts`.
    pub exclude_inbound: Vec<u16>,
    /// `traffic.sidecar.istio.io/includeInboundPorts` when not `*`: only these are captured.
    pub include_inbound: Option<Vec<u16>>,
    /// Pod IPs (empty for Pending and host-network pods).
    pub ips: Vec<IpAddr>,
    /// Container ports: (name, number).
    pub ports: Vec<(Option<String>, u16)>,
}

impl Pod {
    /// Whether inbound traffic to `port` bypasses the sidecar (excludeInboundPorts, or not
    /// in a non-`*` includeInboundPorts). Only meaningful for sidecar pods.
    pub fn port_excluded(&self, port: u16) -> bool {
        self.mesh == PodMesh::Sidecar
            && (self.exclude_inbound.contains(&port)
                || self
                    .include_inbound
                    .as_ref()
                    .is_some_and(|only| !only.contains(&port)))
    }

    /// `namespace/pod`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A Service's target port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A number.
    Number(u16),
    /// A container port name.
    Name(String),
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name.
    pub name: Option<String>,
    /// Service port.
    pub port: u16,
    /// Target port (defaults to `port`).
    pub target: TargetPort,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// A Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIPs (none for headless services).
    pub cluster_ips: Vec<IpAddr>,
    /// Pod selector (empty: endpoints managed by hand).
    pub selector: BTreeMap<String, String>,
    /// TCP ports.
    pub ports: Vec<ServicePort>,
}

/// A PeerAuthentication mTLS mode (`UNSET` is kept as `None`: inherit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Only mTLS accepted.
    Strict,
    /// mTLS and plaintext accepted.
    Permissive,
    /// mTLS off.
    Disable,
}

impl Mode {
    /// Istio's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Strict => "STRICT",
            Mode::Permissive => "PERMISSIVE",
            Mode::Disable => "DISABLE",
        }
    }

    fn parse(s: &str) -> Result<Option<Mode>, String> {
        match s {
            "STRICT" => Ok(Some(Mode::Strict)),
            "PERMISSIVE" => Ok(Some(Mode::Permissive)),
            "DISABLE" => Ok(Some(Mode::Disable)),
            "UNSET" | "" => Ok(None),
            other => Err(format!(
                "unknown mode {other:?} (expected UNSET, DISABLE, PERMISSIVE or STRICT)"
            )),
        }
    }
}

/// A PeerAuthentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuthentication {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `creationTimestamp` (Istio picks the oldest of several matching policies).
    pub created: String,
    /// `selector.matchLabels` (None or empty: namespace-wide, or mesh-wide in the root namespace).
    pub selector: Option<BTreeMap<String, String>>,
    /// `mtls.mode` (None: UNSET, inherit).
    pub mode: Option<Mode>,
    /// `portLevelMtls`, by workload port.
    pub port_modes: BTreeMap<u16, Mode>,
}

impl PeerAuthentication {
    fn is_workload(&self) -> bool {
        self.selector.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The mode in force for a workload port, and the policy that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// The mode.
    pub mode: Mode,
    /// `namespace/name` of the PeerAuthentication, or `default` (Istio's PERMISSIVE when
    /// no policy applies).
    pub source: String,
    /// Set by `portLevelMtls`.
    pub port_level: bool,
}

/// Everything known about the cluster. Empty when no context was given.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Pods (`--pods`), or None.
    pub pods: Option<Vec<Pod>>,
    /// Services (`--services`), or None.
    pub services: Option<Vec<Service>>,
    /// PeerAuthentications (`--policies`), or None.
    pub policies: Option<Vec<PeerAuthentication>>,
    pod_by_ip: HashMap<IpAddr, usize>,
    svc_by_ip: HashMap<IpAddr, usize>,
    /// Per pod (by index), the services selecting it, sorted by name.
    pod_services: Vec<Vec<usize>>,
}

impl Cluster {
    /// Builds the indexes. A pod IP claimed by two running pods is dropped (ambiguous).
    pub fn new(
        pods: Option<Vec<Pod>>,
        services: Option<Vec<Service>>,
        policies: Option<Vec<PeerAuthentication>>,
    ) -> Cluster {
        let mut pod_by_ip = HashMap::new();
        let mut dup = Vec::new();
        for (i, p) in pods.iter().flatten().enumerate() {
            for ip in &p.ips {
                if pod_by_ip.insert(*ip, i).is_some() {
                    dup.push(*ip);
                }
            }
        }
        for ip in dup {
            pod_by_ip.remove(&ip);
        }
        let mut svc_by_ip = HashMap::new();
        for (i, s) in services.iter().flatten().enumerate() {
            for ip in &s.cluster_ips {
                svc_by_ip.insert(*ip, i);
            }
        }
        // Once, not per flow: which services select which pods.
        let svcs = services.as_deref().unwrap_or_default();
        let pod_services = pods
            .iter()
            .flatten()
            .map(|pod| {
                let mut v: Vec<usize> = svcs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.namespace == pod.namespace
                            && !s.selector.is_empty()
                            && s.selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
                    })
                    .map(|(i, _)| i)
                    .collect();
                v.sort_by(|&a, &b| svcs[a].name.cmp(&svcs[b].name));
                v
            })
            .collect();
        Cluster {
            pods,
            services,
            policies,
            pod_by_ip,
            svc_by_ip,
            pod_services,
        }
    }

    /// The pod with this IP.
    pub fn pod(&self, ip: IpAddr) -> Option<&Pod> {
        let i = *self.pod_by_ip.get(&ip)?;
        self.pods.as_ref()?.get(i)
    }

    /// Services selecting `pod`, by name: indexed for pods of this cluster, else computed.
    fn services_of(&self, pod: &Pod) -> Vec<&Service> {
        let svcs = self.services.as_deref().unwrap_or_default();
        let indexed = pod
            .ips
            .first()
            .and_then(|ip| self.pod_by_ip.get(ip))
            .filter(|&&i| self.pods.as_ref().is_some_and(|p| std::ptr::eq(&p[i], pod)));
        if let Some(&i) = indexed {
            return self.pod_services[i].iter().map(|&s| &svcs[s]).collect();
        }
        let mut v: Vec<&Service> = svcs
            .iter()
            .filter(|s| {
                s.namespace == pod.namespace
                    && !s.selector.is_empty()
                    && s.selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The service with this ClusterIP, and its port numbered `port`.
    pub fn service_by_cluster_ip(
        &self,
        ip: IpAddr,
        port: u16,
    ) -> Option<(&Service, Option<&ServicePort>)> {
        let s = self.services.as_ref()?.get(*self.svc_by_ip.get(&ip)?)?;
        Some((s, s.ports.iter().find(|p| p.port == port)))
    }

    /// The first service (by name) selecting `pod` with a port whose target is `port`.
    pub fn service_of_pod(&self, pod: &Pod, port: u16) -> Option<(&Service, &ServicePort)> {
        self.services_of(pod).into_iter().find_map(|s| {
            let sp = s.ports.iter().find(|sp| match &sp.target {
                TargetPort::Number(n) => *n == port,
                TargetPort::Name(name) => pod
                    .ports
                    .iter()
                    .any(|(pn, num)| pn.as_deref() == Some(name.as_str()) && *num == port),
            })?;
            Some((s, sp))
        })
    }

    /// The first service (by name) selecting `pod`, whatever the port.
    pub fn any_service_of_pod(&self, pod: &Pod) -> Option<&Service> {
        self.services_of(pod).into_iter().next()
    }

    /// The PeerAuthentication mode for inbound traffic to `port` of `pod` (or, without a
    /// pod, for namespace `namespace`): workload policy (port level first), namespace
    /// policy, mesh-wide policy, else Istio's default PERMISSIVE. None without `--policies`.
    pub fn effective_mode(
        &self,
        namespace: &str,
        pod: Option<&Pod>,
        port: Option<u16>,
    ) -> Option<Effective> {
        let policies = self.policies.as_ref()?;
        if let Some(pod) = pod {
            let workload = oldest(
                policies
                    .iter()
                    .filter(|pa| pa.namespace == pod.namespace && pa.is_workload())
                    .filter(|pa| {
                        pa.selector
                            .iter()
                            .flatten()
                            .all(|(k, v)| pod.labels.get(k) == Some(v))
                    })
                    .collect(),
            );
            if let Some(pa) = workload {
                if let Some(m) = port.and_then(|p| pa.port_modes.get(&p)) {
                    return Some(Effective {
                        mode: *m,
                        source: pa.full_name(),
                        port_level: true,
                    });
                }
                if let Some(m) = pa.mode {
                    return Some(Effective {
                        mode: m,
                        source: pa.full_name(),
                        port_level: false,
                    });
                }
            }
        }
        for ns in [namespace, ROOT_NAMESPACE] {
            let pa = oldest(
                policies
                    .iter()
                    .filter(|pa| pa.namespace == ns && !pa.is_workload())
                    .collect(),
            );
            if let Some(m) = pa.and_then(|pa| pa.mode.map(|m| (m, pa))) {
                return Some(Effective {
                    mode: m.0,
                    source: m.1.full_name(),
                    port_level: false,
                });
            }
        }
        Some(Effective {
            mode: Mode::Permissive,
            source: "default".to_string(),
            port_level: false,
        })
    }
}

/// The oldest policy (Istio's rule when several apply), then by name.
fn oldest(mut v: Vec<&PeerAuthentication>) -> Option<&PeerAuthentication> {
    v.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    v.into_iter().next()
}

// --------------------------------------------------------------------------------------
// Parsing
// --------------------------------------------------------------------------------------

fn doc<S, T>(text: &str) -> Result<RawObject<S, T>, String>
where
    S: for<'de> Deserialize<'de> + Default,
    T: for<'de> Deserialize<'de> + Default,
{
    if text.trim().is_empty() {
        return Err("empty file, expected kubectl's JSON (`-o json`)".into());
    }
    serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the JSON ends early (a partial file?)",
            serde_json::error::Category::Syntax => "not JSON",
            _ => "unexpected shape",
        };
        format!("{what}: {e}")
    })
}

/// The items of a list (with their paths), or the single object.
fn items<S, T>(doc: RawObject<S, T>, kind: &str, command: &str) -> Result<Items<S, T>, String> {
    let list_kind = format!("{kind}List");
    let top = doc.kind.clone();
    match (top.as_deref(), doc.items) {
        (Some(k), _) if k != "List" && k != list_kind && k != kind => Err(format!(
            "a {k}, not a {kind} or a list of them (expected the output of `{command}`)"
        )),
        (_, Some(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.into_iter().enumerate() {
                let path = format!("items[{i}]");
                if let Some(k) = it.kind.as_deref().filter(|k| *k != kind) {
                    return Err(format!(
                        "{path} is a {k}, not a {kind} (expected the output of `{command}`)"
                    ));
                }
                out.push((path, it));
            }
            Ok(out)
        }
        (Some(k), None) if k == kind => Ok(vec![(
            String::new(),
            RawObject {
                kind: top,
                items: None,
                metadata: doc.metadata,
                spec: doc.spec,
                status: doc.status,
            },
        )]),
        _ => Err(format!(
            "no `items` list and no single {kind} (expected the output of `{command}`)"
        )),
    }
}

fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Name and namespace, both required.
fn name_ns(path: &str, meta: Option<&RawMeta>) -> Result<(String, String), String> {
    let meta = meta.ok_or_else(|| format!("{}: missing", at(path, "metadata")))?;
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}: missing", at(path, "metadata.name")))?;
    let ns = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            format!(
                "{}: missing (list with `-A` or `-n NAMESPACE` so that kubectl writes it)",
                at(path, "metadata.namespace")
            )
        })?;
    Ok((name, ns))
}

fn parse_ip(path: &str, s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{path}: not an IP address: {s:?}"))
}

/// A comma-separated port list of a traffic annotation.
fn port_list(path: &str, s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("{path}: not a port list: {s:?}"))
        })
        .collect()
}

fn workload_of(meta: &RawMeta, pod_name: &str) -> (String, String) {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first());
    let Some((kind, name)) = owner.and_then(|o| Some((o.kind.clone()?, o.name.clone()?))) else {
        return ("Pod".into(), pod_name.to_string());
    };
    if kind == "ReplicaSet" {
        let hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        if let Some(base) = hash.and_then(|h| name.strip_suffix(&format!("-{h}"))) {
            return ("Deployment".into(), base.to_string());
        }
    }
    (kind, name)
}

/// Reads `kubectl get pods -A -o json`.
pub fn parse_pods(text: &str) -> Result<Vec<Pod>, String> {
    const ANN_EXCLUDE: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
    const ANN_INCLUDE: &str = "traffic.sidecar.istio.io/includeInboundPorts";
    let raw: RawObject<RawPodSpec, RawPodStatus> = doc(text)?;
    let mut out = Vec::new();
    for (path, item) in items(raw, "Pod", "kubectl get pods -A -o json")? {
        let (name, namespace) = name_ns(&path, item.metadata.as_ref())?;
        let meta = item.metadata.unwrap_or_default();
        let spec = item.spec.unwrap_or_default();
        let status = item.status.unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let (workload_kind, workload) = workload_of(&meta, &name);
        let containers = spec.containers.iter().flatten();
        let inits = spec.init_containers.iter().flatten();
        let has_proxy = containers
            .clone()
            .chain(inits.clone())
            .any(|c| c.name.as_deref() == Some("istio-proxy"));
        let ambient = [&labels, &annotations]
            .iter()
            .any(|m| m.get("istio.io/dataplane-mode").map(String::as_str) == Some("ambient"))
            || annotations
                .get("ambient.istio.io/redirection")
                .map(String::as_str)
                == Some("enabled");
        let mesh = if has_proxy {
            PodMesh::Sidecar
        } else if ambient {
            PodMesh::Ambient
        } else {
            PodMesh::None
        };
        let inject = labels
            .get("sidecar.istio.io/inject")
            .or_else(|| annotations.get("sidecar.istio.io/inject"))
            .cloned();
        let ann_path = |k: &str| at(&path, &format!("metadata.annotations[{k:?}]"));
        let exclude_inbound = match annotations.get(ANN_EXCLUDE) {
            Some(v) => port_list(&ann_path(ANN_EXCLUDE), v)?,
            None => Vec::new(),
        };
        let include_inbound = match annotations.get(ANN_INCLUDE).map(|s| s.trim()) {
            Some("*") | None => None,
            Some(v) => Some(port_list(&ann_path(ANN_INCLUDE), v)?),
        };
        let mut ips = Vec::new();
        if spec.host_network != Some(true) {
            if let Some(list) = &status.pod_ips {
                for (i, p) in list.iter().enumerate() {
                    if let Some(ip) = &p.ip {
                        ips.push(parse_ip(&at(&path, &format!("status.podIPs[{i}].ip")), ip)?);
                    }
                }
            }
            if let Some(ip) = &status.pod_ip {
                let ip = parse_ip(&at(&path, "status.podIP"), ip)?;
                if !ips.contains(&ip) {
                    ips.insert(0, ip);
                }
            }
        }
        let ports = containers
            .chain(inits)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| Some((p.name.clone(), p.container_port?)))
            .collect();
        out.push(Pod {
            namespace,
            name,
            workload,
            workload_kind,
            labels,
            service_account: spec.service_account_name.or(spec.service_account),
            mesh,
            inject,
            exclude_inbound,
            include_inbound,
            ips,
            ports,
        });
    }
    Ok(out)
}

/// Reads `kubectl get svc -A -o json`.
pub fn parse_services(text: &str) -> Result<Vec<Service>, String> {
    let raw: RawObject<RawServiceSpec, serde_json::Value> = doc(text)?;
    let mut out = Vec::new();
    for (path, item) in items(raw, "Service", "kubectl get svc -A -o json")? {
        let (name, namespace) = name_ns(&path, item.metadata.as_ref())?;
        let spec = item.spec.unwrap_or_default();
        let mut cluster_ips = Vec::new();
        let listed = spec.cluster_ips.clone().unwrap_or_default();
        for (i, s) in spec.cluster_ip.iter().chain(listed.iter()).enumerate() {
            if s == "None" || s.is_empty() {
                continue;
            }
            let field = if i == 0 && spec.cluster_ip.is_some() {
                "spec.clusterIP".to_string()
            } else {
                format!(
                    "spec.clusterIPs[{}]",
                    i - usize::from(spec.cluster_ip.is_some())
                )
            };
            let ip = parse_ip(&at(&path, &field), s)?;
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            if p.protocol.as_deref().is_some_and(|pr| pr != "TCP") {
                continue;
            }
            let port = p.port.ok_or_else(|| {
                format!("{}: missing", at(&path, &format!("spec.ports[{i}].port")))
            })?;
            let target = match &p.target_port {
                None => TargetPort::Number(port),
                Some(RawIntOrString::Int(n)) => TargetPort::Number(*n),
                Some(RawIntOrString::Str(s)) => match s.parse::<u16>() {
                    Ok(n) => TargetPort::Number(n),
                    Err(_) => TargetPort::Name(s.clone()),
                },
            };
            ports.push(ServicePort {
                name: p.name.clone(),
                port,
                target,
                app_protocol: p.app_protocol.clone(),
            });
        }
        out.push(Service {
            namespace,
            name,
            cluster_ips,
            selector: spec.selector.unwrap_or_default(),
            ports,
        });
    }
    Ok(out)
}

/// Reads `kubectl get peerauthentications.security.istio.io -A -o json`.
pub fn parse_policies(text: &str) -> Result<Vec<PeerAuthentication>, String> {
    let raw: RawObject<RawPeerAuthSpec, serde_json::Value> = doc(text)?;
    let mut out = Vec::new();
    let command = "kubectl get peerauthentications.security.istio.io -A -o json";
    for (path, item) in items(raw, "PeerAuthentication", command)? {
        let (name, namespace) = name_ns(&path, item.metadata.as_ref())?;
        let created = item
            .metadata
            .as_ref()
            .and_then(|m| m.creation_timestamp.clone())
            .unwrap_or_default();
        let spec = item.spec.unwrap_or_default();
        let mode = match spec.mtls.as_ref().and_then(|m| m.mode.as_deref()) {
            Some(m) => {
                Mode::parse(m).map_err(|e| format!("{}: {e}", at(&path, "spec.mtls.mode")))?
            }
            None => None,
        };
        let mut port_modes = BTreeMap::new();
        for (k, v) in spec.port_level_mtls.iter().flatten() {
            let field = at(&path, &format!("spec.portLevelMtls[{k:?}]"));
            let port: u16 = k
                .parse()
                .map_err(|_| format!("{field}: the key is not a port number"))?;
            let m = v
                .mode
                .as_deref()
                .map(Mode::parse)
                .transpose()
                .map_err(|e| format!("{field}.mode: {e}"))?
                .flatten();
            if let Some(m) = m {
                port_modes.insert(port, m);
            }
        }
        out.push(PeerAuthentication {
            namespace,
            name,
            created,
            selector: spec.selector.and_then(|s| s.match_labels),
            mode,
            port_modes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_json(extra_meta: &str, spec: &str, status: &str) -> String {
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{{"kind":"Pod","metadata":{{"name":"p","namespace":"ns"{extra_meta}}},"spec":{spec},"status":{status}}}]}}"#
        )
    }

    #[test]
    fn pods_workloads_mesh_and_ports() {
        let text = pod_json(
            r#","labels":{"app":"a","pod-template-hash":"abc12"},"annotations":{"traffic.sidecar.istio.io/excludeInboundPorts":"9090, 9091"},"ownerReferences":[{"kind":"ReplicaSet","name":"a-abc12","controller":true}],"unknownField":1"#,
            r#"{"containers":[{"name":"app","ports":[{"name":"http","containerPort":8080}]},{"name":"istio-proxy"}],"serviceAccountName":"sa"}"#,
            r#"{"podIP":"10.1.2.3","podIPs":[{"ip":"10.1.2.3"},{"ip":"fd00::3"}]}"#,
        );
        let pods = parse_pods(&text).unwrap();
        let p = &pods[0];
        assert_eq!(
            (p.workload_kind.as_str(), p.workload.as_str()),
            ("Deployment", "a")
        );
        assert_eq!(p.mesh, PodMesh::Sidecar);
        assert_eq!(p.exclude_inbound, vec![9090, 9091]);
        assert!(p.port_excluded(9091) && !p.port_excluded(8080));
        assert_eq!(p.ips.len(), 2);
        assert_eq!(p.ports, vec![(Some("http".to_string()), 8080)]);
        assert_eq!(p.service_account.as_deref(), Some("sa"));
    }

    #[test]
    fn single_pod_native_sidecar_ambient_and_include_ports() {
        let single = r#"{"kind":"Pod","metadata":{"name":"v-0","namespace":"v","annotations":{"traffic.sidecar.istio.io/includeInboundPorts":"8443"},"ownerReferences":[{"kind":"StatefulSet","name":"v"}]},"spec":{"initContainers":[{"name":"istio-proxy","restartPolicy":"Always"}],"containers":[{"name":"v"}]},"status":{"podIP":"10.0.0.7"}}"#;
        let p = &parse_pods(single).unwrap()[0];
        assert_eq!((p.workload.as_str(), p.mesh), ("v", PodMesh::Sidecar));
        assert!(p.port_excluded(8200) && !p.port_excluded(8443));
        let ambient = pod_json(
            r#","labels":{"istio.io/dataplane-mode":"ambient"}"#,
            r#"{"containers":[{"name":"x"}],"hostNetwork":false}"#,
            r#"{"podIP":"10.0.0.8"}"#,
        );
        let p = &parse_pods(&ambient).unwrap()[0];
        assert_eq!((p.mesh, p.workload.as_str()), (PodMesh::Ambient, "p"));
        let host = pod_json("", r#"{"hostNetwork":true}"#, r#"{"podIP":"192.168.1.1"}"#);
        assert!(parse_pods(&host).unwrap()[0].ips.is_empty());
        let pending = pod_json("", "{}", r#"{"phase":"Pending"}"#);
        assert!(parse_pods(&pending).unwrap()[0].ips.is_empty());
    }

    #[test]
    fn pod_errors_say_where() {
        let e = parse_pods("").unwrap_err();
        assert!(e.contains("empty file"), "{e}");
        let e = parse_pods("{\"items\": [").unwrap_err();
        assert!(e.contains("ends early") && e.contains("line 1"), "{e}");
        let e = parse_pods("not json").unwrap_err();
        assert!(e.starts_with("not JSON"), "{e}");
        let svc = r#"{"kind":"List","items":[{"kind":"Service","metadata":{"name":"s","namespace":"n"}}]}"#;
        let e = parse_pods(svc).unwrap_err();
        assert!(e.contains("items[0] is a Service, not a Pod"), "{e}");
        let e =
            parse_pods(r#"{"kind":"List","items":[{"metadata":{"namespace":"n"}}]}"#).unwrap_err();
        assert_eq!(e, "items[0].metadata.name: missing");
        let e = parse_pods(&pod_json("", "{}", r#"{"podIP":"10.0.0.300"}"#)).unwrap_err();
        assert!(
            e.contains("items[0].status.podIP: not an IP address"),
            "{e}"
        );
        let e = parse_pods(&pod_json(
            r#","annotations":{"traffic.sidecar.istio.io/excludeInboundPorts":"http"}"#,
            "{}",
            "{}",
        ))
        .unwrap_err();
        assert!(
            e.contains("excludeInboundPorts") && e.contains("not a port list"),
            "{e}"
        );
        let e = parse_pods(
            r#"{"kind":"List","items":[{"metadata":{"name":"p","namespace":"n","labels":["a"]}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("unexpected shape") && e.contains("column"),
            "{e}"
        );
        let e = parse_pods(r#"{"kind":"Deployment"}"#).unwrap_err();
        assert!(e.contains("a Deployment, not a Pod"), "{e}");
        let e = parse_pods(r#"{"foo":1}"#).unwrap_err();
        assert!(e.contains("no `items` list"), "{e}");
    }

    #[test]
    fn services_of_pods_and_cluster_ips() {
        let pods = parse_pods(&pod_json(
            r#","labels":{"app":"a"}"#,
            r#"{"containers":[{"name":"c","ports":[{"name":"web","containerPort":8080}]}]}"#,
            r#"{"podIP":"10.0.0.5"}"#,
        ))
        .unwrap();
        let services = parse_services(
            r#"{"kind":"List","items":[
            {"metadata":{"name":"z","namespace":"ns"},"spec":{"clusterIP":"10.96.0.9","selector":{"app":"a"},"ports":[{"port":80,"targetPort":"web"}]}},
            {"metadata":{"name":"b","namespace":"ns"},"spec":{"selector":{"app":"a"},"ports":[{"port":9000}]}},
            {"metadata":{"name":"other-ns","namespace":"x"},"spec":{"selector":{"app":"a"},"ports":[{"port":8080}]}}]}"#,
        )
        .unwrap();
        let c = Cluster::new(Some(pods), Some(services), None);
        let pod = c.pod("10.0.0.5".parse().unwrap()).unwrap();
        let (s, p) = c.service_of_pod(pod, 8080).unwrap();
        assert_eq!((s.name.as_str(), p.port), ("z", 80), "named target port");
        assert_eq!(c.service_of_pod(pod, 9000).unwrap().0.name, "b");
        assert!(c.service_of_pod(pod, 1).is_none());
        assert_eq!(
            c.any_service_of_pod(pod).unwrap().name,
            "b",
            "first by name"
        );
        let (s, p) = c
            .service_by_cluster_ip("10.96.0.9".parse().unwrap(), 80)
            .unwrap();
        assert_eq!((s.name.as_str(), p.map(|p| p.port)), ("z", Some(80)));
        let mut stranger = pod.clone();
        stranger.ips.clear();
        assert_eq!(
            c.any_service_of_pod(&stranger).unwrap().name,
            "b",
            "not indexed"
        );
    }

    #[test]
    fn services_named_targets_and_cluster_ips() {
        let text = r#"{"kind":"ServiceList","items":[
            {"metadata":{"name":"s","namespace":"n"},"spec":{"clusterIP":"10.96.0.5","clusterIPs":["10.96.0.5","fd00::5"],"selector":{"app":"a"},
             "ports":[{"name":"http","port":80,"targetPort":"http","appProtocol":"http"},{"port":53,"protocol":"UDP"},{"port":8443}]}},
            {"metadata":{"name":"h","namespace":"n"},"spec":{"clusterIP":"None","ports":[{"port":1,"targetPort":"2"}]}}]}"#;
        let s = parse_services(text).unwrap();
        assert_eq!(s[0].cluster_ips.len(), 2);
        assert_eq!(s[0].ports.len(), 2, "UDP ports are not TCP flows");
        assert_eq!(s[0].ports[0].target, TargetPort::Name("http".into()));
        assert_eq!(s[0].ports[1].target, TargetPort::Number(8443));
        assert!(s[1].cluster_ips.is_empty());
        assert_eq!(s[1].ports[0].target, TargetPort::Number(2));
        let e = parse_services(r#"{"kind":"List","items":[{"metadata":{"name":"s","namespace":"n"},"spec":{"clusterIP":"x"}}]}"#).unwrap_err();
        assert_eq!(e, "items[0].spec.clusterIP: not an IP address: \"x\"");
    }

    fn pa(
        ns: &str,
        name: &str,
        created: &str,
        sel: Option<&str>,
        mode: &str,
        ports: &str,
    ) -> String {
        let sel = sel.map_or(String::new(), |s| {
            format!(r#","selector":{{"matchLabels":{{"app":"{s}"}}}}"#)
        });
        format!(
            r#"{{"kind":"PeerAuthentication","metadata":{{"name":"{name}","namespace":"{ns}","creationTimestamp":"{created}"}},"spec":{{"mtls":{{"mode":"{mode}"}}{sel}{ports}}}}}"#
        )
    }

    fn cluster(pas: &[String]) -> (Cluster, Pod) {
        let text = format!(r#"{{"kind":"List","items":[{}]}}"#, pas.join(","));
        let policies = parse_policies(&text).unwrap();
        let pod = Pod {
            namespace: "n".into(),
            name: "a-0".into(),
            workload: "a".into(),
            workload_kind: "StatefulSet".into(),
            labels: [("app".to_string(), "a".to_string())].into(),
            service_account: None,
            mesh: PodMesh::Sidecar,
            inject: None,
            exclude_inbound: vec![],
            include_inbound: None,
            ips: vec![],
            ports: vec![],
        };
        (Cluster::new(None, None, Some(policies)), pod)
    }

    #[test]
    fn peer_authentication_precedence() {
        let mesh = pa("istio-system", "default", "1", None, "STRICT", "");
        let ns = pa("n", "default", "2", None, "PERMISSIVE", "");
        let wl = pa(
            "n",
            "wl",
            "3",
            Some("a"),
            "UNSET",
            r#","portLevelMtls":{"8080":{"mode":"DISABLE"}}"#,
        );
        let (c, pod) = cluster(&[mesh.clone(), ns.clone(), wl.clone()]);
        let e = c.effective_mode("n", Some(&pod), Some(8080)).unwrap();
        assert_eq!(
            (e.mode, e.source.as_str(), e.port_level),
            (Mode::Disable, "n/wl", true)
        );
        let e = c.effective_mode("n", Some(&pod), Some(9000)).unwrap();
        assert_eq!(
            (e.mode, e.source.as_str()),
            (Mode::Permissive, "n/default"),
            "UNSET inherits"
        );
        let (c, pod) = cluster(std::slice::from_ref(&mesh));
        let e = c.effective_mode("n", Some(&pod), Some(1)).unwrap();
        assert_eq!(
            (e.mode, e.source.as_str()),
            (Mode::Strict, "istio-system/default")
        );
        let (c, _) = cluster(&[]);
        assert_eq!(c.effective_mode("n", None, None).unwrap().source, "default");
        let other = pa("n", "other", "0", Some("b"), "STRICT", "");
        let older = pa("n", "older", "0", Some("a"), "DISABLE", "");
        let (c, pod) = cluster(&[wl, other, older, ns]);
        let e = c.effective_mode("n", Some(&pod), Some(8080)).unwrap();
        assert_eq!(
            (e.mode, e.source.as_str()),
            (Mode::Disable, "n/older"),
            "the oldest workload policy wins"
        );
        assert!(Cluster::default().effective_mode("n", None, None).is_none());
    }

    #[test]
    fn policy_errors_say_where() {
        let text = format!(
            r#"{{"kind":"List","items":[{}]}}"#,
            pa("n", "x", "", None, "STRICTT", "")
        );
        let e = parse_policies(&text).unwrap_err();
        assert!(
            e.starts_with("items[0].spec.mtls.mode: unknown mode \"STRICTT\""),
            "{e}"
        );
        let bad_port = pa(
            "n",
            "x",
            "",
            Some("a"),
            "STRICT",
            r#","portLevelMtls":{"http":{"mode":"DISABLE"}}"#,
        );
        let e = parse_policies(&bad_port).unwrap_err();
        assert!(
            e.contains("spec.portLevelMtls[\"http\"]: the key is not a port number"),
            "{e}"
        );
    }
}
