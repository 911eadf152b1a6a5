//! Verdicts: pure functions from the inbound flows of a namespace (or workload, or
//! service) to what setting STRICT would do. One small function per rule, no I/O.
//!
//! | verdict | when |
//! |---|---|
//! | `policy-mismatch` | the PeerAuthentication says STRICT but plaintext (or app TLS from outside the mesh) was accepted, or it says DISABLE but mesh mTLS was accepted |
//! | `would-break` | plaintext was accepted by a meshed (or unknown) server on a port its sidecar captures, and STRICT is not in force: STRICT would reset these clients; also app TLS accepted by a sidecar pod from outside the mesh (PERMISSIVE passes it through, STRICT resets it) |
//! | `bypassed` | plaintext was accepted on a port excluded from the sidecar (`excludeInboundPorts`, or not in `includeInboundPorts`) or by a pod without a sidecar: STRICT does not apply there |
//! | `strict-enforced` | the server reset plaintext (the flow record's `strict-rejected-plaintext`) |
//! | `strict-ready` | no plaintext peer at all (accepted or reset) and nothing STRICT would reset |
//! | `no-inbound-traffic` | no inbound network flow was seen |
//!
//! Several verdicts can hold at once; [`verdicts`] lists them most severe first, and the
//! first is the group's verdict.

use super::PClass;
use super::k8s::Mode;

/// How the server refused plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A TCP reset and no byte (PeerAuthentication STRICT).
    Strict,
    /// TLS bytes back (a TLS port, not a mesh decision).
    TlsPort,
}

/// What the verdict rules know of one inbound network flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundFact {
    /// Its posture class.
    pub class: PClass,
    /// How plaintext was refused, if it was.
    pub rejection: Option<Rejection>,
    /// The server port bypasses the server pod's sidecar.
    pub excluded: bool,
    /// The server pod is in the mesh (sidecar or ambient); None when unknown.
    pub meshed: Option<bool>,
    /// The PeerAuthentication mode for the server port; None without `--policies`.
    pub mode: Option<Mode>,
}

/// A verdict, most severe first in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Policy and wire disagree.
    PolicyMismatch,
    /// STRICT would reset some clients.
    WouldBreak,
    /// Plaintext past the sidecar.
    Bypassed,
    /// STRICT is resetting plaintext clients.
    StrictEnforced,
    /// No plaintext peers.
    StrictReady,
    /// Nothing inbound seen.
    NoInboundTraffic,
}

impl Verdict {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::PolicyMismatch => "policy-mismatch",
            Verdict::WouldBreak => "would-break",
            Verdict::Bypassed => "bypassed",
            Verdict::StrictEnforced => "strict-enforced",
            Verdict::StrictReady => "strict-ready",
            Verdict::NoInboundTraffic => "no-inbound-traffic",
        }
    }
}

/// Plaintext the server accepted (telemetry ports excluded: plaintext by design).
pub fn exposed(f: &InboundFact) -> bool {
    f.class == PClass::Plaintext
}

/// App TLS a meshed server accepted from a client outside the mesh: PERMISSIVE passes it
/// through to the app, STRICT resets it (no Istio ALPN, no client certificate).
pub fn foreign_tls(f: &InboundFact) -> bool {
    f.class == PClass::AppTls && f.meshed == Some(true) && !f.excluded
}

/// Rule `bypassed`: accepted plaintext that never met a sidecar.
pub fn bypassed(f: &InboundFact) -> bool {
    exposed(f) && (f.excluded || f.meshed == Some(false))
}

/// Rule `would-break`: a client STRICT would reset, where STRICT is not yet in force.
pub fn would_break(f: &InboundFact) -> bool {
    ((exposed(f) && !bypassed(f)) || foreign_tls(f)) && f.mode != Some(Mode::Strict)
}

/// Rule `strict-enforced`: plaintext answered by a reset.
pub fn strict_enforced(f: &InboundFact) -> bool {
    f.rejection == Some(Rejection::Strict)
}

/// What the policy says against what the wire shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// STRICT, yet plaintext (or foreign app TLS) was accepted.
    StrictButAccepted,
    /// DISABLE, yet mesh mTLS was accepted.
    DisableButMtls,
}

/// Rule `policy-mismatch`.
pub fn policy_mismatch(f: &InboundFact) -> Option<Mismatch> {
    match f.mode? {
        Mode::Strict if exposed(f) || foreign_tls(f) => Some(Mismatch::StrictButAccepted),
        Mode::Disable if f.class.is_mesh_mtls() => Some(Mismatch::DisableButMtls),
        _ => None,
    }
}

/// A peer that keeps the group from being STRICT-ready.
pub fn plaintext_peer(f: &InboundFact) -> bool {
    exposed(f) || foreign_tls(f) || strict_enforced(f)
}

/// Rule `strict-ready`: some inbound traffic, and no plaintext peer.
pub fn strict_ready(facts: &[InboundFact]) -> bool {
    !facts.is_empty() && !facts.iter().any(plaintext_peer)
}

/// Every verdict that holds, most severe first (never empty).
pub fn verdicts(facts: &[InboundFact]) -> Vec<Verdict> {
    if facts.is_empty() {
        return vec![Verdict::NoInboundTraffic];
    }
    let any = |rule: fn(&InboundFact) -> bool| facts.iter().any(rule);
    let mut out = Vec::new();
    if facts.iter().any(|f| policy_mismatch(f).is_some()) {
        out.push(Verdict::PolicyMismatch);
    }
    if any(would_break) {
        out.push(Verdict::WouldBreak);
    }
    if any(bypassed) {
        out.push(Verdict::Bypassed);
    }
    if any(strict_enforced) {
        out.push(Verdict::StrictEnforced);
    }
    if strict_ready(facts) {
        out.push(Verdict::StrictReady);
    }
    // Every plaintext peer meets one of the rules above, so `out` is never empty.
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(class: PClass) -> InboundFact {
        InboundFact {
            class,
            rejection: None,
            excluded: false,
            meshed: Some(true),
            mode: Some(Mode::Permissive),
        }
    }

    #[test]
    fn plaintext_in_permissive_would_break() {
        let f = fact(PClass::Plaintext);
        assert!(would_break(&f) && !bypassed(&f) && policy_mismatch(&f).is_none());
        assert_eq!(
            verdicts(&[f, fact(PClass::IstioMtls)]),
            vec![Verdict::WouldBreak]
        );
        let unknown_server = InboundFact {
            meshed: None,
            mode: None,
            ..f
        };
        assert!(
            would_break(&unknown_server),
            "without context, plaintext is a would-break"
        );
        let disabled = InboundFact {
            mode: Some(Mode::Disable),
            ..f
        };
        assert!(would_break(&disabled));
    }

    #[test]
    fn reset_plaintext_is_strict_enforced() {
        let reset = InboundFact {
            class: PClass::Failed,
            rejection: Some(Rejection::Strict),
            mode: Some(Mode::Strict),
            ..fact(PClass::Failed)
        };
        assert!(strict_enforced(&reset) && !would_break(&reset));
        assert_eq!(
            verdicts(&[fact(PClass::IstioMtls), reset]),
            vec![Verdict::StrictEnforced]
        );
        let tls_port = InboundFact {
            rejection: Some(Rejection::TlsPort),
            ..reset
        };
        assert!(!strict_enforced(&tls_port));
        assert_eq!(verdicts(&[tls_port]), vec![Verdict::StrictReady]);
    }

    #[test]
    fn excluded_port_or_no_sidecar_is_bypassed() {
        let excluded = InboundFact {
            excluded: true,
            mode: Some(Mode::Strict),
            ..fact(PClass::Plaintext)
        };
        assert!(bypassed(&excluded) && !would_break(&excluded));
        assert_eq!(
            policy_mismatch(&excluded),
            Some(Mismatch::StrictButAccepted),
            "STRICT on paper, plaintext on the wire"
        );
        assert_eq!(
            verdicts(&[excluded, fact(PClass::IstioMtls)]),
            vec![Verdict::PolicyMismatch, Verdict::Bypassed]
        );
        let no_sidecar = InboundFact {
            meshed: Some(false),
            ..fact(PClass::Plaintext)
        };
        assert!(bypassed(&no_sidecar) && !would_break(&no_sidecar));
        assert_eq!(verdicts(&[no_sidecar]), vec![Verdict::Bypassed]);
    }

    #[test]
    fn policy_mismatches() {
        let strict_plain = InboundFact {
            mode: Some(Mode::Strict),
            ..fact(PClass::Plaintext)
        };
        assert_eq!(
            policy_mismatch(&strict_plain),
            Some(Mismatch::StrictButAccepted)
        );
        assert!(!would_break(&strict_plain), "STRICT is already set");
        let disable_mtls = InboundFact {
            mode: Some(Mode::Disable),
            ..fact(PClass::DoubleWrapped)
        };
        assert_eq!(
            policy_mismatch(&disable_mtls),
            Some(Mismatch::DisableButMtls)
        );
        assert_eq!(
            verdicts(&[disable_mtls]),
            vec![Verdict::PolicyMismatch, Verdict::StrictReady]
        );
        let strict_foreign = InboundFact {
            mode: Some(Mode::Strict),
            ..fact(PClass::AppTls)
        };
        assert_eq!(
            policy_mismatch(&strict_foreign),
            Some(Mismatch::StrictButAccepted)
        );
        let no_policies = InboundFact {
            mode: None,
            ..disable_mtls
        };
        assert_eq!(policy_mismatch(&no_policies), None);
    }

    #[test]
    fn foreign_app_tls_needs_a_known_meshed_server() {
        let f = fact(PClass::AppTls);
        assert!(foreign_tls(&f) && would_break(&f));
        let unknown = InboundFact { meshed: None, ..f };
        assert!(!foreign_tls(&unknown) && !would_break(&unknown));
        assert_eq!(verdicts(&[unknown]), vec![Verdict::StrictReady]);
    }

    #[test]
    fn mtls_only_is_strict_ready_and_nothing_is_no_traffic() {
        let facts = [
            fact(PClass::IstioMtls),
            fact(PClass::DoubleWrapped),
            fact(PClass::Telemetry),
            fact(PClass::Failed),
            fact(PClass::Unknown),
        ];
        assert!(strict_ready(&facts));
        assert_eq!(verdicts(&facts), vec![Verdict::StrictReady]);
        assert_eq!(verdicts(&[]), vec![Verdict::NoInboundTraffic]);
        assert!(!strict_ready(&[]));
    }
}
