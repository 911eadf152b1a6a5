//! Posture: from flow records to "is namespace X really encrypted, and who would break if
//! I set STRICT?".
//!
//! This stage sits to the right of [`report`](crate::report): it consumes flow records,
//! never packets. Captures analyzed in this process and JSON Lines from earlier runs
//! arrive through the same owned [`input::Flow`], so both paths are one. It imports
//! nothing from the stages to its left; `app` wires it up.
//!
//! * [`input`] reads flow records (tolerant: unknown fields and types are ignored).
//! * [`k8s`] reads the optional Kubernetes context (pods, services, PeerAuthentications).
//! * [`attribute`] decides who is at each end of a flow.
//! * [`verdict`] is the pure verdict logic, one function per rule.
//! * [`assess`] counts, groups, finds and gates, into a [`doc::Document`].
//! * [`table`], [`dot`] and [`html`] print it; `--format json` is the document itself.

pub mod assess;
pub mod attribute;
pub mod doc;
pub mod dot;
pub mod gate;
pub mod html;
pub mod input;
pub mod k8s;
pub mod table;
pub mod verdict;

use input::Flow;
use verdict::Rejection;

/// What a flow counts as in posture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PClass {
    /// Cleartext the server accepted.
    Plaintext,
    /// Cleartext to the mesh's health and metrics ports (15020, 15021, 15090, 4191):
    /// plaintext by design.
    Telemetry,
    /// Istio mTLS.
    IstioMtls,
    /// Linkerd mTLS.
    LinkerdMtls,
    /// Consul mTLS.
    ConsulMtls,
    /// Application TLS (not mesh mTLS).
    AppTls,
    /// Application TLS inside mesh mTLS.
    DoubleWrapped,
    /// A failed TLS handshake, or plaintext the server refused.
    Failed,
    /// The flow record could not tell.
    Unknown,
}

impl PClass {
    /// Every class, in report order.
    pub const ALL: [PClass; 9] = [
        PClass::Plaintext,
        PClass::IstioMtls,
        PClass::LinkerdMtls,
        PClass::ConsulMtls,
        PClass::AppTls,
        PClass::DoubleWrapped,
        PClass::Failed,
        PClass::Unknown,
        PClass::Telemetry,
    ];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            PClass::Plaintext => "plaintext",
            PClass::Telemetry => "telemetry",
            PClass::IstioMtls => "istio-mtls",
            PClass::LinkerdMtls => "linkerd-mtls",
            PClass::ConsulMtls => "consul-mtls",
            PClass::AppTls => "app-tls",
            PClass::DoubleWrapped => "double-wrapped",
            PClass::Failed => "failed",
            PClass::Unknown => "unknown",
        }
    }

    /// Mesh mTLS (double-wrapped included: its outer layer is).
    pub fn is_mesh_mtls(self) -> bool {
        matches!(
            self,
            PClass::IstioMtls | PClass::LinkerdMtls | PClass::ConsulMtls | PClass::DoubleWrapped
        )
    }

    /// The posture class of a flow record: `handshake: failed` and refused plaintext are
    /// `failed`; plaintext with `mesh_telemetry` evidence is `telemetry`; else the class.
    pub fn of(f: &Flow) -> PClass {
        if f.handshake.as_deref() == Some("failed") || rejection(f).is_some() {
            return PClass::Failed;
        }
        match f.class.as_str() {
            "plaintext" if f.has_evidence("mesh_telemetry") => PClass::Telemetry,
            "plaintext" => PClass::Plaintext,
            "istio-mtls" => PClass::IstioMtls,
            "linkerd-mtls" => PClass::LinkerdMtls,
            "consul-mtls" => PClass::ConsulMtls,
            "app-tls" => PClass::AppTls,
            "double-wrapped" => PClass::DoubleWrapped,
            _ => PClass::Unknown,
        }
    }
}

/// How the server refused a plaintext flow, from its diagnosis.
pub fn rejection(f: &Flow) -> Option<Rejection> {
    if f.class != "plaintext" {
        return None;
    }
    match f.diagnosis_code()? {
        "strict-rejected-plaintext" => Some(Rejection::Strict),
        "plaintext-to-tls-port" => Some(Rejection::TlsPort),
        _ => None,
    }
}

/// How flows are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum By {
    /// By namespace.
    #[default]
    Namespace,
    /// By workload (Deployment, StatefulSet, ...).
    Workload,
    /// By Service.
    Service,
}

impl By {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            By::Namespace => "namespace",
            By::Workload => "workload",
            By::Service => "service",
        }
    }
}

/// What to assess and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Grouping.
    pub by: By,
    /// Namespaces shown (and gated); empty: all.
    pub namespaces: Vec<String>,
    /// The CI gate, when `--require mtls` was given.
    pub gate: Option<gate::Gate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(class: &str, handshake: &str, diag: Option<&str>, evidence: &[&str]) -> Flow {
        let v = serde_json::json!({
            "type": "flow", "capture": "c", "client": "10.0.0.1:1", "server": "10.0.0.2:2",
            "class": class, "leg": "network", "first_frame": 1, "handshake": handshake,
            "diagnosis": diag.map(|c| serde_json::json!({"code": c, "summary": "", "fix": ""})),
            "evidence": evidence,
        });
        Flow::from_value(v).unwrap()
    }

    #[test]
    fn posture_classes() {
        assert_eq!(
            PClass::of(&flow("plaintext", "none", None, &[])),
            PClass::Plaintext
        );
        assert_eq!(
            PClass::of(&flow("plaintext", "none", None, &["mesh_telemetry"])),
            PClass::Telemetry
        );
        assert_eq!(
            PClass::of(&flow(
                "plaintext",
                "none",
                Some("strict-rejected-plaintext"),
                &[]
            )),
            PClass::Failed
        );
        assert_eq!(
            PClass::of(&flow("plaintext", "none", Some("plaintext-in-mesh"), &[])),
            PClass::Plaintext
        );
        assert_eq!(
            PClass::of(&flow("istio-mtls", "failed", None, &[])),
            PClass::Failed
        );
        assert_eq!(
            PClass::of(&flow("istio-mtls", "incomplete", None, &[])),
            PClass::IstioMtls
        );
        assert_eq!(
            PClass::of(&flow("quantum-tls", "none", None, &[])),
            PClass::Unknown
        );
        assert!(PClass::DoubleWrapped.is_mesh_mtls() && !PClass::AppTls.is_mesh_mtls());
    }
}
