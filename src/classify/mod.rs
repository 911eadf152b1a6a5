//! Classify: a pure function from a finished flow's facts to a class and its evidence.
//!
//! Nothing here does I/O or parsing; it reads what the flow and its analyzers recorded.
//! Each rule is a small function returning `Some(evidence)` when it applies, tried in
//! order; the first that applies sets the class.

use crate::analyzers::{ConnAnalyzer, plain};
use crate::flow::{Dir, Flow};

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
    let tls = flow.handler.tls.facts();
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

/// The answer for one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// No TLS: cleartext application bytes.
    Plaintext,
    /// Istio's mutual TLS.
    IstioMtls,
    /// Any other TLS.
    AppTls,
    /// Not enough evidence either way.
    Unknown,
}

impl Class {
    /// Name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Class::Plaintext => "plaintext",
            Class::IstioMtls => "istio-mtls",
            Class::AppTls => "app-tls",
            Class::Unknown => "unknown",
        }
    }
}

/// How sure a classification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    /// Direct evidence (a parsed hello, a recognized protocol).
    High,
    /// Indirect evidence.
    Medium,
    /// A guess.
    Low,
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

/// A class with its confidence and the facts that led to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The class.
    pub class: Class,
    /// How sure.
    pub confidence: Confidence,
    /// Short strings naming the facts used.
    pub evidence: Vec<String>,
}

/// The Istio ALPN values a sidecar offers.
const ISTIO_ALPN: [&str; 5] = [
    "istio-peer-exchange",
    "istio",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// Istio's SNI: `outbound_.<port>_.<subset>_.<host>`.
fn istio_sni(sni: &str) -> bool {
    let Some(rest) = sni.strip_prefix("outbound_.") else {
        return false;
    };
    let mut parts = rest.splitn(3, "_.");
    let port = parts.next().unwrap_or_default();
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && parts.next().is_some()
        && parts.next().is_some()
}

type Rule = fn(&Flow<ConnAnalyzer>, Roles) -> Option<Classification>;

fn rule_istio(flow: &Flow<ConnAnalyzer>, _: Roles) -> Option<Classification> {
    let ch = flow.handler.tls.facts().client_hello.as_ref()?;
    let mut evidence = Vec::new();
    if let Some(sni) = ch.sni.first().filter(|s| istio_sni(s)) {
        evidence.push(format!("sni:{sni}"));
    }
    let alpn: Vec<&str> = ch
        .alpn
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|a| ISTIO_ALPN.contains(a))
        .collect();
    if !alpn.is_empty() {
        evidence.push(format!("alpn:{}", alpn.join(",")));
    }
    if evidence.is_empty() {
        return None;
    }
    Some(Classification {
        class: Class::IstioMtls,
        confidence: Confidence::High,
        evidence,
    })
}

fn rule_tls(flow: &Flow<ConnAnalyzer>, _: Roles) -> Option<Classification> {
    let tls = &flow.handler.tls;
    if !tls.is_tls() {
        return None;
    }
    let f = tls.facts();
    let (confidence, what) = if f.client_hello.is_some() {
        (Confidence::High, "client_hello")
    } else if f.server_hello.is_some() {
        (Confidence::High, "server_hello")
    } else {
        (Confidence::Medium, "tls_records")
    };
    Some(Classification {
        class: Class::AppTls,
        confidence,
        evidence: vec![what.into()],
    })
}

fn rule_plaintext(flow: &Flow<ConnAnalyzer>, roles: Roles) -> Option<Classification> {
    let (c, s) = (
        flow.handler.head(roles.client),
        flow.handler.head(roles.client.rev()),
    );
    if let Some(proto) = plain::detect(c, s) {
        if proto == "ssh" {
            return None;
        }
        return Some(Classification {
            class: Class::Plaintext,
            confidence: Confidence::High,
            evidence: vec![format!("cleartext:{proto}")],
        });
    }
    if plain::looks_textual(c) && (s.is_empty() || plain::looks_textual(s)) {
        return Some(Classification {
            class: Class::Plaintext,
            confidence: Confidence::Medium,
            evidence: vec!["printable_payload".into()],
        });
    }
    None
}

const RULES: [Rule; 3] = [rule_istio, rule_tls, rule_plaintext];

/// Classifies a finished flow.
pub fn classify(flow: &Flow<ConnAnalyzer>, roles: Roles) -> Classification {
    RULES
        .iter()
        .find_map(|r| r(flow, roles))
        .unwrap_or_else(|| {
            let any_payload = flow.half.iter().any(|h| h.bytes > 0);
            Classification {
                class: Class::Unknown,
                confidence: Confidence::Low,
                evidence: vec![
                    if any_payload {
                        "unrecognized_payload"
                    } else {
                        "no_payload"
                    }
                    .into(),
                ],
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_sni_shapes() {
        assert!(istio_sni(
            "outbound_.8080_._.helloworld.default.svc.cluster.local"
        ));
        assert!(istio_sni(
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
        ));
        assert!(!istio_sni("outbound_.x_._.a"));
        assert!(!istio_sni("reviews.default.svc.cluster.local"));
        assert!(!istio_sni("outbound_.80"));
    }
}
