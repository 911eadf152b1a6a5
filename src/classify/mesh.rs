//! Mesh signatures: Istio SNI and ALPN, ambient HBONE, Linkerd and Consul names, SPIFFE IDs.
//!
//! Formats (see the mesh reference): Istio's SNI is `outbound_.<port>_.<subset>_.<fqdn>`;
//! its ALPNs are `istio-peer-exchange`, `istio`, `istio-http/1.0`, `istio-http/1.1`,
//! `istio-h2`; ambient HBONE is TLS 1.3 to port 15008 with ALPN `h2` and no SNI; Linkerd's
//! SNI is `<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>`; Consul's ends in
//! `.internal.<uuid>.consul` (or `internal-v1`, `query`); SPIFFE IDs are
//! `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` (Istio) or `.../ns/<ns>/dc/<dc>/svc/<svc>` (Consul).

/// Istio's ALPN values.
pub const ISTIO_ALPN: [&str; 5] = [
    "istio-peer-exchange",
    "istio",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
/// Istio ALPNs that mean the sidecar proxied HTTP (the inner payload is HTTP, never TLS).
pub const ISTIO_HTTP_ALPN: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// HBONE's port.
pub const HBONE_PORT: u16 = 15008;

/// A workload identity from a SPIFFE ID (serialized in the flow record's `mesh`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The whole URI.
    pub uri: String,
    /// Trust domain.
    pub trust_domain: String,
    /// Namespace.
    pub ns: String,
    /// Service account (Istio), or service (Consul).
    pub sa: String,
}

/// Parses `spiffe://<td>/ns/<ns>/sa/<sa>` (Istio) or `spiffe://<td>/ns/<ns>/dc/<dc>/svc/<svc>` (Consul).
pub fn spiffe(uri: &str) -> Option<Identity> {
    let rest = uri.strip_prefix("spiffe://")?;
    let mut parts = rest.split('/');
    let td = parts.next().filter(|s| !s.is_empty())?;
    let segs: Vec<&str> = parts.collect();
    let sa = match segs.as_slice() {
        ["ns", _, "sa", sa] => sa,
        ["ns", _, "dc", _, "svc", svc] => svc,
        _ => return None,
    };
    Some(Identity {
        uri: uri.to_string(),
        trust_domain: td.to_string(),
        ns: segs[1].to_string(),
        sa: sa.to_string(),
    })
}

/// The parts of Istio's SNI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioSni {
    /// Service port.
    pub port: u16,
    /// Subset (empty for none).
    pub subset: String,
    /// Service host (FQDN).
    pub host: String,
}

impl IstioSni {
    /// Service name: the first label of a `<svc>.<ns>.svc.<domain>` host.
    pub fn service(&self) -> Option<&str> {
        self.kube_parts().map(|(s, _)| s)
    }

    /// Namespace: the second label of a `<svc>.<ns>.svc.<domain>` host.
    pub fn namespace(&self) -> Option<&str> {
        self.kube_parts().map(|(_, n)| n)
    }

    fn kube_parts(&self) -> Option<(&str, &str)> {
        let mut labels = self.host.split('.');
        let (svc, ns, kind) = (labels.next()?, labels.next()?, labels.next()?);
        (kind == "svc" && !svc.is_empty() && !ns.is_empty()).then_some((svc, ns))
    }
}

/// Parses `outbound_.<port>_.<subset>_.<host>`.
pub fn istio_sni(sni: &str) -> Option<IstioSni> {
    let (port, subset, host) = istio_sni_parts(sni)?;
    Some(IstioSni {
        port,
        subset: subset.to_string(),
        host: host.to_string(),
    })
}

/// The parts of an Istio SNI (port, subset, host), borrowed: [`plain_hostname`] only asks
/// whether a name is one, for every ClientHello.
fn istio_sni_parts(sni: &str) -> Option<(u16, &str, &str)> {
    let rest = sni.strip_prefix("outbound_.")?;
    let mut parts = rest.splitn(3, "_.");
    let port = parts.next()?.parse().ok()?;
    let subset = parts.next()?;
    let host = parts.next().filter(|h| !h.is_empty())?;
    Some((port, subset, host))
}

/// Linkerd identity SNI: `<sa>.<ns>.serviceaccount.identity.<...>` → (ns, sa).
pub fn linkerd_sni(sni: &str) -> Option<(String, String)> {
    // A searcher built once: `str::split_once` with this 25-byte pattern set up a new
    // two-way searcher for every ClientHello, about a thousand instructions.
    static MARK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(".serviceaccount.identity."));
    let at = MARK.find(sni.as_bytes())?;
    let head = sni.get(..at)?;
    let (sa, ns) = head.split_once('.')?;
    (!sa.is_empty() && !ns.is_empty() && !ns.contains('.'))
        .then(|| (ns.to_string(), sa.to_string()))
}

/// Consul Connect SNI: `<svc>.<ns>.<dc>.internal.<td>.consul` (also `internal-v1`, with a
/// partition, and `query` for prepared queries) → (service, namespace).
pub fn consul_sni(sni: &str) -> Option<(String, String)> {
    if !sni.ends_with(".consul") {
        return None;
    }
    let labels: Vec<&str> = sni.split('.').collect();
    let kind = labels
        .iter()
        .position(|l| matches!(*l, "internal" | "internal-v1" | "query"))?;
    (kind >= 3).then(|| (labels[0].to_string(), labels[1].to_string()))
}

/// Whether a name looks like a host name a user typed (not an IP, not a mesh name).
pub fn plain_hostname(sni: &str) -> bool {
    istio_sni_parts(sni).is_none() && sni.parse::<std::net::IpAddr>().is_err() && sni.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_sni_parts() {
        let s = istio_sni("outbound_.9080_.v1_.reviews.bookinfo.svc.cluster.local").unwrap();
        assert_eq!(
            (s.port, s.subset.as_str(), s.host.as_str()),
            (9080, "v1", "reviews.bookinfo.svc.cluster.local")
        );
        assert_eq!(
            (s.service(), s.namespace()),
            (Some("reviews"), Some("bookinfo"))
        );
        let s = istio_sni("outbound_.8080_._.helloworld.default.svc.cluster.local").unwrap();
        assert_eq!(s.subset, "");
        let ext = istio_sni("outbound_.443_._.api.example.com").unwrap();
        assert_eq!(ext.service(), None);
        assert!(istio_sni("outbound_.x_._.a").is_none());
        assert!(istio_sni("outbound_.80_._.").is_none());
        assert!(istio_sni("reviews.default.svc.cluster.local").is_none());
    }

    #[test]
    fn spiffe_ids() {
        let i = spiffe("spiffe://cluster.local/ns/default/sa/sleep").unwrap();
        assert_eq!(
            (i.trust_domain.as_str(), i.ns.as_str(), i.sa.as_str()),
            ("cluster.local", "default", "sleep")
        );
        let c = spiffe("spiffe://1111-2222.consul/ns/default/dc/dc1/svc/web").unwrap();
        assert_eq!(c.sa, "web");
        assert!(spiffe("spiffe://td/ns/x").is_none());
        assert!(spiffe("https://x/ns/a/sa/b").is_none());
    }

    #[test]
    fn other_meshes() {
        assert_eq!(
            linkerd_sni("web.emojivoto.serviceaccount.identity.linkerd.cluster.local"),
            Some(("emojivoto".into(), "web".into()))
        );
        assert_eq!(linkerd_sni("web.example.com"), None);
        assert_eq!(
            consul_sni("web.default.dc1.internal.0b3e1a8c-6f0e-4a5c-9c1e-5a9e7e2b7c11.consul"),
            Some(("web".into(), "default".into()))
        );
        assert_eq!(consul_sni("consul.io"), None);
        assert!(plain_hostname("api.example.com"));
        assert!(!plain_hostname("10.0.0.1"));
        assert!(!plain_hostname("outbound_.80_._.a.b.svc.cluster.local"));
    }
}
