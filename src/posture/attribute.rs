//! Who is at each end of a flow: namespace, workload, pod, service.
//!
//! In order, the first that answers wins. Server: the pod with that IP (`--pods`), the
//! Service with that ClusterIP (`--services`), the flow's Istio SNI (`mesh.namespace`,
//! `mesh.service`), the server's SPIFFE ID, what other flows' SNI or SPIFFE IDs say about
//! the same IP (`learned`), and last a `<svc>.<ns>.svc` name in the TLS SNI or HTTP Host.
//! Client: the pod, the client's SPIFFE ID, then `learned`. An IP that the wire ties to
//! two namespaces is not learned.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::input::Flow;
use super::k8s::{Cluster, Pod, ServicePort};

/// How an endpoint was attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// `--pods`: the pod with this IP.
    Pods,
    /// `--services`: the Service with this ClusterIP.
    Services,
    /// The flow's Istio SNI.
    Sni,
    /// The SPIFFE ID of a visible certificate.
    Spiffe,
    /// Another flow's SNI or SPIFFE ID for the same IP.
    Learned,
    /// A `<svc>.<ns>.svc` name in the TLS SNI or the HTTP Host header.
    Host,
}

/// One end of a flow, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Who {
    /// Namespace.
    pub namespace: Option<String>,
    /// Workload (Deployment, StatefulSet, ...).
    pub workload: Option<String>,
    /// Pod.
    pub pod: Option<String>,
    /// Service.
    pub service: Option<String>,
    /// Service account.
    pub service_account: Option<String>,
    /// How this was found; None: not attributed.
    pub basis: Option<Basis>,
}

impl Who {
    /// `namespace/pod`, `namespace/workload`, `namespace/service`, or the IP.
    pub fn label(&self, ip: IpAddr) -> String {
        match (&self.namespace, &self.pod, &self.workload, &self.service) {
            (Some(ns), Some(p), _, _) => format!("{ns}/{p}"),
            (Some(ns), None, Some(w), _) => format!("{ns}/{w}"),
            (Some(ns), None, None, Some(s)) => format!("{ns}/{s}"),
            (Some(ns), None, None, None) => match &self.service_account {
                Some(sa) => format!("{ns}/sa:{sa}"),
                None => format!("{ns}/{ip}"),
            },
            _ => ip.to_string(),
        }
    }

    /// The graph node: `namespace/workload`, else `namespace/service`, else the IP.
    pub fn node(&self, ip: IpAddr) -> String {
        match (
            &self.namespace,
            &self.workload,
            &self.service,
            &self.service_account,
        ) {
            (Some(ns), Some(w), _, _) => format!("{ns}/{w}"),
            (Some(ns), None, Some(s), _) => format!("{ns}/{s}"),
            (Some(ns), None, None, Some(sa)) => format!("{ns}/sa:{sa}"),
            (Some(ns), None, None, None) => format!("{ns}/{ip}"),
            _ => ip.to_string(),
        }
    }
}

/// A network flow with both ends attributed.
#[derive(Clone, Debug)]
pub struct Attributed<'a> {
    /// The record.
    pub flow: &'a Flow,
    /// Client endpoint.
    pub client_addr: SocketAddr,
    /// Server endpoint.
    pub server_addr: SocketAddr,
    /// Who the client is.
    pub client: Who,
    /// Who the server is.
    pub server: Who,
    /// The server pod, from `--pods`.
    pub server_pod: Option<&'a Pod>,
    /// The client pod, from `--pods`.
    pub client_pod: Option<&'a Pod>,
    /// The Service port the flow went to, from `--services`.
    pub service_port: Option<ServicePort>,
}

/// What the wire says about one IP.
#[derive(Clone, Debug)]
struct Fact {
    ns: String,
    service: Option<String>,
    /// Two services named for one IP: none is kept.
    service_clash: bool,
}

/// What the wire says about IPs, learned from all flows.
#[derive(Clone, Debug, Default)]
pub struct Learned {
    /// None: two namespaces claimed the IP.
    by_ip: HashMap<IpAddr, Option<Fact>>,
}

impl Learned {
    fn note(&mut self, ip: IpAddr, ns: &str, service: Option<&str>) {
        let entry = self.by_ip.entry(ip).or_insert_with(|| {
            Some(Fact {
                ns: ns.to_string(),
                service: None,
                service_clash: false,
            })
        });
        let Some(fact) = entry else { return };
        if fact.ns != ns {
            *entry = None;
            return;
        }
        if let Some(s) = service
            && !fact.service_clash
        {
            match &fact.service {
                None => fact.service = Some(s.to_string()),
                Some(known) if known != s => {
                    fact.service = None;
                    fact.service_clash = true;
                }
                Some(_) => {}
            }
        }
    }

    /// Learns from the Istio SNI and SPIFFE IDs of `flows`.
    pub fn from_flows<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> Learned {
        let mut l = Learned::default();
        for f in flows {
            let (Some(c), Some(s)) = (f.client_addr(), f.server_addr()) else {
                continue;
            };
            let Some(m) = &f.mesh else { continue };
            if let Some(ns) = &m.namespace {
                l.note(s.ip(), ns, m.service.as_deref());
            }
            if let Some(ns) = m.server_identity.as_ref().and_then(|i| i.ns.as_deref()) {
                l.note(s.ip(), ns, None);
            }
            if let Some(ns) = m.client_identity.as_ref().and_then(|i| i.ns.as_deref()) {
                l.note(c.ip(), ns, None);
            }
        }
        l
    }

    fn get(&self, ip: IpAddr) -> Option<(&str, Option<&str>)> {
        let f = self.by_ip.get(&ip)?.as_ref()?;
        Some((&f.ns, f.service.as_deref()))
    }
}

/// `(service, namespace)` from `<svc>.<ns>.svc[.<domain>][:port]`.
pub fn service_host(name: &str) -> Option<(String, String)> {
    let host = name.rsplit_once(':').map_or(name, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            name
        }
    });
    let mut parts = host.split('.');
    let (svc, ns, kw) = (parts.next()?, parts.next()?, parts.next()?);
    (kw == "svc" && !svc.is_empty() && !ns.is_empty()).then(|| (svc.to_string(), ns.to_string()))
}

fn from_pod(pod: &Pod, cluster: &Cluster, port: Option<u16>) -> Who {
    let service = port
        .and_then(|p| cluster.service_of_pod(pod, p).map(|(s, _)| s))
        .or_else(|| cluster.any_service_of_pod(pod))
        .map(|s| s.name.clone());
    Who {
        namespace: Some(pod.namespace.clone()),
        workload: Some(pod.workload.clone()),
        pod: Some(pod.name.clone()),
        service,
        service_account: pod.service_account.clone(),
        basis: Some(Basis::Pods),
    }
}

fn ns_only(ns: &str, service: Option<&str>, sa: Option<&str>, basis: Basis) -> Who {
    Who {
        namespace: Some(ns.to_string()),
        service: service.map(str::to_string),
        service_account: sa.map(str::to_string),
        basis: Some(basis),
        ..Who::default()
    }
}

fn server_who(f: &Flow, addr: SocketAddr, cluster: &Cluster, learned: &Learned) -> Who {
    if let Some(pod) = cluster.pod(addr.ip()) {
        let mut who = from_pod(pod, cluster, Some(addr.port()));
        if who.service.is_none() {
            // The SNI names the service when the Service list does not.
            who.service = f
                .mesh
                .as_ref()
                .filter(|m| m.namespace.as_deref() == Some(pod.namespace.as_str()))
                .and_then(|m| m.service.clone());
        }
        return who;
    }
    if let Some((svc, _)) = cluster.service_by_cluster_ip(addr.ip(), addr.port()) {
        return ns_only(&svc.namespace, Some(&svc.name), None, Basis::Services);
    }
    let mesh = f.mesh.as_ref();
    if let Some(ns) = mesh.and_then(|m| m.namespace.as_deref()) {
        return ns_only(
            ns,
            mesh.and_then(|m| m.service.as_deref()),
            None,
            Basis::Sni,
        );
    }
    if let Some(id) = mesh.and_then(|m| m.server_identity.as_ref())
        && let Some(ns) = id.ns.as_deref()
    {
        return ns_only(ns, None, id.sa.as_deref(), Basis::Spiffe);
    }
    if let Some((ns, svc)) = learned.get(addr.ip()) {
        return ns_only(ns, svc, None, Basis::Learned);
    }
    let named = f
        .tls
        .as_ref()
        .and_then(|t| t.sni.as_deref())
        .or_else(|| f.http.as_ref().and_then(|h| h.host.as_deref()))
        .and_then(service_host);
    if let Some((svc, ns)) = named {
        return ns_only(&ns, Some(&svc), None, Basis::Host);
    }
    Who::default()
}

fn client_who(f: &Flow, addr: SocketAddr, cluster: &Cluster, learned: &Learned) -> Who {
    if let Some(pod) = cluster.pod(addr.ip()) {
        return from_pod(pod, cluster, None);
    }
    let id = f.mesh.as_ref().and_then(|m| m.client_identity.as_ref());
    if let Some(id) = id
        && let Some(ns) = id.ns.as_deref()
    {
        return ns_only(ns, None, id.sa.as_deref(), Basis::Spiffe);
    }
    if let Some((ns, svc)) = learned.get(addr.ip()) {
        return ns_only(ns, svc, None, Basis::Learned);
    }
    Who::default()
}

/// Attributes one network flow (None when an endpoint does not parse).
pub fn attribute<'a>(
    f: &'a Flow,
    cluster: &'a Cluster,
    learned: &Learned,
) -> Option<Attributed<'a>> {
    let (client_addr, server_addr) = (f.client_addr()?, f.server_addr()?);
    let server_pod = cluster.pod(server_addr.ip());
    let service_port = match server_pod {
        Some(pod) => cluster
            .service_of_pod(pod, server_addr.port())
            .map(|(_, p)| p.clone()),
        None => cluster
            .service_by_cluster_ip(server_addr.ip(), server_addr.port())
            .and_then(|(_, p)| p.cloned()),
    };
    Some(Attributed {
        flow: f,
        client_addr,
        server_addr,
        client: client_who(f, client_addr, cluster, learned),
        server: server_who(f, server_addr, cluster, learned),
        server_pod,
        client_pod: cluster.pod(client_addr.ip()),
        service_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::input::{Http, Identity, Mesh};

    fn flow(client: &str, server: &str) -> Flow {
        Flow {
            kind: "flow".into(),
            capture: "c".into(),
            client: client.into(),
            server: server.into(),
            class: "plaintext".into(),
            leg: "network".into(),
            first_frame: 1,
            first_ts: None,
            confidence: None,
            evidence: None,
            handshake: None,
            diagnosis: None,
            mesh: None,
            paired_with: None,
            bytes: None,
            packets: None,
            tls: None,
            http: None,
        }
    }

    #[test]
    fn service_host_names() {
        assert_eq!(
            service_host("cart.shop.svc.cluster.local:80"),
            Some(("cart".into(), "shop".into()))
        );
        assert_eq!(
            service_host("cart.shop.svc"),
            Some(("cart".into(), "shop".into()))
        );
        assert_eq!(service_host("www.example.com"), None);
        assert_eq!(service_host("cart.shop"), None);
    }

    #[test]
    fn without_context_the_wire_attributes() {
        let mut mtls = flow("10.0.0.1:1000", "10.0.0.2:8080");
        mtls.mesh = Some(Mesh {
            namespace: Some("shop".into()),
            service: Some("cart".into()),
            client_identity: Some(Identity {
                uri: None,
                ns: Some("web".into()),
                sa: Some("frontend".into()),
            }),
            ..Mesh::default()
        });
        let plain = flow("10.0.0.3:1000", "10.0.0.2:8080");
        let mut by_host = flow("10.0.0.3:1001", "10.0.0.9:80");
        by_host.http = Some(Http {
            host: Some("ledger.payments.svc.cluster.local".into()),
        });
        let stranger = flow("10.0.0.3:1002", "192.0.2.1:80");
        let flows = [mtls, plain, by_host, stranger];
        let learned = Learned::from_flows(&flows);
        let cluster = Cluster::default();
        let a: Vec<_> = flows
            .iter()
            .map(|f| attribute(f, &cluster, &learned).unwrap())
            .collect();
        assert_eq!(a[0].server.basis, Some(Basis::Sni));
        assert_eq!(a[0].client.label(a[0].client_addr.ip()), "web/sa:frontend");
        assert_eq!(a[1].server.basis, Some(Basis::Learned));
        assert_eq!(a[1].server.node(a[1].server_addr.ip()), "shop/cart");
        assert_eq!(a[1].client.basis, None);
        assert_eq!(a[1].client.label(a[1].client_addr.ip()), "10.0.0.3");
        assert_eq!(a[2].server.basis, Some(Basis::Host));
        assert_eq!(a[2].server.namespace.as_deref(), Some("payments"));
        assert_eq!(a[3].server, Who::default());
    }

    #[test]
    fn cluster_ips_attribute_to_their_service() {
        let services = crate::posture::k8s::parse_services(
            r#"{"kind":"List","items":[{"metadata":{"name":"cart","namespace":"shop"},"spec":{"clusterIP":"10.96.20.20","ports":[{"name":"http","port":80,"targetPort":8080}]}}]}"#,
        )
        .unwrap();
        let cluster = Cluster::new(None, Some(services), None);
        let f = flow("10.0.0.3:1000", "10.96.20.20:80");
        let a = attribute(&f, &cluster, &Learned::default()).unwrap();
        assert_eq!(a.server.basis, Some(Basis::Services));
        assert_eq!(a.server.label(a.server_addr.ip()), "shop/cart");
        assert_eq!(a.service_port.map(|p| p.name), Some(Some("http".into())));
    }

    #[test]
    fn conflicting_wire_facts_are_not_learned() {
        let mut a = flow("10.0.0.1:1", "10.0.0.2:1");
        a.mesh = Some(Mesh {
            namespace: Some("x".into()),
            ..Mesh::default()
        });
        let mut b = a.clone();
        b.mesh = Some(Mesh {
            namespace: Some("y".into()),
            ..Mesh::default()
        });
        let l = Learned::from_flows([&a, &b]);
        assert!(l.get("10.0.0.2".parse().unwrap()).is_none());
        let svc = |name: &str| {
            let mut f = a.clone();
            f.mesh = Some(Mesh {
                namespace: Some("x".into()),
                service: Some(name.into()),
                ..Mesh::default()
            });
            f
        };
        let (s1, s2, s3) = (svc("one"), svc("two"), svc("three"));
        let ip = "10.0.0.2".parse().unwrap();
        assert_eq!(
            Learned::from_flows([&s1, &s1]).get(ip),
            Some(("x", Some("one")))
        );
        assert_eq!(
            Learned::from_flows([&s1, &s2, &s3]).get(ip),
            Some(("x", None))
        );
    }
}
