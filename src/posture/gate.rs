//! The CI gate: `--require mtls [--namespace NS …] [--forbid CLASSES] [--allow CIDR|ns/workload …]`.
//!
//! A network-leg flow into a selected namespace (every flow when no `--namespace` is
//! given) whose posture class is forbidden (default: `plaintext`) is a violation, unless
//! `--allow` matches its client or its server. Pod-local legs are never checked.

use std::net::IpAddr;

use super::PClass;
use super::attribute::{Attributed, Who};

/// An `--allow` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// An address range.
    Cidr {
        /// Network address.
        net: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
    /// `namespace/name` (a workload, pod or service name) or `namespace/*`.
    Workload {
        /// Namespace.
        namespace: String,
        /// Name; None for `*`.
        name: Option<String>,
    },
}

impl Allow {
    /// Parses `10.0.0.0/8`, `10.1.2.3`, `fd00::/8`, `ns/workload` or `ns/*`.
    pub fn parse(s: &str) -> Result<Allow, String> {
        let bad = || {
            format!(
                "--allow {s:?}: expected CIDR (10.0.0.0/8), IP, namespace/workload or namespace/*"
            )
        };
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Allow::Cidr {
                net: ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
            });
        }
        let (a, b) = s.split_once('/').ok_or_else(bad)?;
        if let Ok(net) = a.parse::<IpAddr>() {
            let max = if net.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = b.parse().ok().filter(|p| *p <= max).ok_or_else(bad)?;
            return Ok(Allow::Cidr { net, prefix });
        }
        let valid = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
        };
        if !valid(a) || !(b == "*" || valid(b)) {
            return Err(bad());
        }
        Ok(Allow::Workload {
            namespace: a.to_string(),
            name: (b != "*").then(|| b.to_string()),
        })
    }

    /// Whether the endpoint (`ip`, attributed as `who`) matches.
    pub fn matches(&self, ip: IpAddr, who: &Who) -> bool {
        match self {
            Allow::Cidr { net, prefix } => in_cidr(ip, *net, *prefix),
            Allow::Workload { namespace, name } => {
                who.namespace.as_deref() == Some(namespace.as_str())
                    && name.as_ref().is_none_or(|n| {
                        [&who.workload, &who.pod, &who.service]
                            .iter()
                            .any(|x| x.as_deref() == Some(n.as_str()))
                    })
            }
        }
    }
}

/// Whether `ip` is in `net/prefix` (an IPv4 address never matches an IPv6 range, and
/// the reverse).
pub fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
        let p = u32::from(prefix).min(width);
        if p == 0 { 0 } else { bits >> (width - p) }
    }
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            masked(u32::from(a).into(), 32, prefix) == masked(u32::from(n).into(), 32, prefix)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            masked(u128::from(a), 128, prefix) == masked(u128::from(n), 128, prefix)
        }
        _ => false,
    }
}

/// Classes `--forbid` accepts (mesh mTLS is what the gate requires, so it cannot be forbidden).
pub const FORBIDDABLE: [PClass; 6] = [
    PClass::Plaintext,
    PClass::AppTls,
    PClass::DoubleWrapped,
    PClass::Failed,
    PClass::Unknown,
    PClass::Telemetry,
];

/// Parses `--forbid plaintext,double-wrapped,failed`.
pub fn parse_forbid(list: &str) -> Result<Vec<PClass>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let c = FORBIDDABLE
            .iter()
            .find(|c| c.name() == item)
            .ok_or_else(|| {
                let names: Vec<&str> = FORBIDDABLE.iter().map(|c| c.name()).collect();
                format!(
                    "--forbid: unknown class {item:?} (one of: {})",
                    names.join(", ")
                )
            })?;
        if !out.contains(c) {
            out.push(*c);
        }
    }
    if out.is_empty() {
        return Err("--forbid: no class given".into());
    }
    out.sort();
    Ok(out)
}

/// A validated gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// Forbidden classes.
    pub forbid: Vec<PClass>,
    /// Namespaces checked (empty: all flows).
    pub namespaces: Vec<String>,
    /// Exceptions.
    pub allow: Vec<Allow>,
    /// `--allow` as given, for the report.
    pub allow_text: Vec<String>,
}

/// What the gate makes of one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not in the selected namespaces.
    NotSelected,
    /// Its server's namespace is unknown, and namespaces were selected.
    Unattributed,
    /// Checked, and fine.
    Pass,
    /// Forbidden, but allowed.
    Allowed,
    /// A violation.
    Violation,
}

impl Gate {
    /// Checks one attributed network flow of posture class `class`.
    pub fn check(&self, a: &Attributed<'_>, class: PClass) -> Check {
        if !self.namespaces.is_empty() {
            match &a.server.namespace {
                None => return Check::Unattributed,
                Some(ns) if !self.namespaces.contains(ns) => return Check::NotSelected,
                Some(_) => {}
            }
        }
        if !self.forbid.contains(&class) {
            return Check::Pass;
        }
        let allowed = self.allow.iter().any(|al| {
            al.matches(a.client_addr.ip(), &a.client) || al.matches(a.server_addr.ip(), &a.server)
        });
        if allowed {
            Check::Allowed
        } else {
            Check::Violation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("10.244.3.30"), ip("10.244.0.0"), 16));
        assert!(!in_cidr(ip("10.245.3.30"), ip("10.244.0.0"), 16));
        assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(in_cidr(ip("fd00::1"), ip("fd00::"), 8));
        assert!(!in_cidr(ip("10.0.0.1"), ip("::"), 0), "families never mix");
        assert_eq!(
            Allow::parse("10.244.3.30").unwrap(),
            Allow::Cidr {
                net: ip("10.244.3.30"),
                prefix: 32
            }
        );
        assert!(Allow::parse("10.0.0.0/33").is_err());
        assert!(Allow::parse("monitoring").is_err());
        assert!(Allow::parse("a b/c").is_err());
        assert_eq!(
            Allow::parse("legacy/*").unwrap(),
            Allow::Workload {
                namespace: "legacy".into(),
                name: None
            }
        );
    }

    #[test]
    fn allow_matches_workloads_pods_and_services() {
        let who = Who {
            namespace: Some("legacy".into()),
            workload: Some("batch".into()),
            pod: Some("batch-1".into()),
            ..Who::default()
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for (allow, hit) in [
            ("legacy/batch", true),
            ("legacy/batch-1", true),
            ("legacy/*", true),
            ("legacy/other", false),
            ("other/*", false),
            ("10.0.0.0/24", true),
        ] {
            assert_eq!(
                Allow::parse(allow).unwrap().matches(ip, &who),
                hit,
                "{allow}"
            );
        }
    }

    #[test]
    fn forbid_lists() {
        assert_eq!(
            parse_forbid("failed, plaintext,plaintext").unwrap(),
            vec![PClass::Plaintext, PClass::Failed]
        );
        let e = parse_forbid("istio-mtls").unwrap_err();
        assert!(e.contains("unknown class \"istio-mtls\""), "{e}");
        assert!(parse_forbid(" , ").is_err());
    }
}
