//! Diagnosis: the wire pattern of a failure, in the words the client printed, with the
//! Istio setting that fixes it (mesh reference §7 and §9). When the evidence is thin the
//! code is `unknown` and the summary says what was seen; nothing is invented.

use std::borrow::Cow;

use super::mesh;
use super::{Class, Facts, Failure, Leg, TELEMETRY_PORTS, private_ip};
use crate::analyzers::tls::names;

/// What went wrong on a flow (or, for `double-tls`, what is worth knowing); serialized
/// as the flow record's `diagnosis`.
///
/// The texts are borrowed when they are fixed (every fix, most summaries): they are a few
/// hundred bytes, and most flows carry one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    /// Stable code (see docs/flow-record.md).
    pub code: &'static str,
    /// What happened, quoting what the client printed.
    pub summary: Cow<'static, str>,
    /// The setting that fixes it.
    pub fix: Cow<'static, str>,
}

fn d(
    code: &'static str,
    summary: impl Into<Cow<'static, str>>,
    fix: &'static str,
) -> Option<Diagnosis> {
    Some(Diagnosis {
        code,
        summary: summary.into(),
        fix: Cow::Borrowed(fix),
    })
}

fn alert_label(description: u8) -> String {
    match names::alert_name(description) {
        Some(n) => format!("{n} ({description})"),
        None => format!("unregistered alert {description}"),
    }
}

/// The informational diagnosis of a double-wrapped flow.
pub fn double_tls() -> Diagnosis {
    Diagnosis {
        code: "double-tls",
        summary: "Application TLS inside mesh mTLS: every byte is encrypted twice, and the sidecars see only \
                  opaque TCP (no L7 routing, retries, or HTTP metrics)."
            .into(),
        fix: "Terminate TLS once: let the app speak plaintext and rely on mesh mTLS (declare the port http), or \
              keep app TLS deliberately and name the port https/tls so Istio does not sniff it."
            .into(),
    }
}

/// Both legs of a "double TLS": the app's TLS refused by an outbound sidecar that expects
/// plaintext and originates TLS itself (ServiceEntry https plus DestinationRule SIMPLE).
pub fn double_tls_origination() -> Diagnosis {
    Diagnosis {
        code: "double-tls",
        summary: "Double TLS: the app sent its own ClientHello to the sidecar, which expected plaintext (answered \
                  it in clear: the app prints \"wrong version number\") and originates TLS itself on the network \
                  leg."
            .into(),
        fix: "Originate TLS once: either the app sends plaintext (Service/ServiceEntry port protocol http, \
              targetPort 443) and a DestinationRule tls.mode SIMPLE encrypts it, or drop the DestinationRule TLS \
              and declare the port https/tls so the app's TLS passes through."
            .into(),
    }
}

/// The diagnosis of a flow, from its class, leg and handshake failure.
pub fn diagnose(
    f: &Facts<'_>,
    class: Class,
    leg: Leg,
    failure: Option<Failure>,
) -> Option<Diagnosis> {
    if class == Class::DoubleWrapped {
        return Some(double_tls());
    }
    let Some(failure) = failure else {
        return plaintext(f, class, leg);
    };
    let sni = f.sni().unwrap_or("");
    if f.istio_alpn()
        && mesh::plain_hostname(sni)
        && !matches!(failure, Failure::TlsReplyToPlaintext)
    {
        return d(
            "istio-alpn-to-non-mesh-tls",
            format!(
                "The ClientHello offered Istio ALPN ({}) with the user host name {sni:?}, and the server failed \
                 the handshake: a sidecar originating TLS for a DestinationRule SIMPLE/MUTUAL put Istio's ALPN on \
                 non-mesh TLS (istio/istio#40680, Istio < 1.20).",
                f.alpn().join(",")
            ),
            "Upgrade to Istio 1.20 or later; or name the port https/tls so the HTTP ALPN filter is not applied; \
             or drop the app's TLS and use mesh mTLS (DestinationRule ISTIO_MUTUAL).",
        );
    }
    match failure {
        Failure::TlsReplyToPlaintext => d(
            "plaintext-to-tls-port",
            "A plaintext request was answered with TLS bytes: the port expects TLS. Clients see garbage, \
             \"Empty reply from server\" or a reset.",
            "Use https:// for this port, or have the sidecar originate TLS (DestinationRule tls.mode SIMPLE), \
             or serve plaintext on this port.",
        ),
        Failure::NotTlsReply => {
            let status = crate::analyzers::plain::http_facts(b"", f.server.head).status;
            let answer = status.map_or("plaintext bytes".to_string(), |s| {
                format!("plaintext HTTP {s}")
            });
            d(
                "tls-to-plaintext-port",
                format!(
                    "The ClientHello was answered with {answer}: the client prints \"wrong version number\". \
                     An https client reached a port that speaks plaintext (a port declared http, or excluded \
                     with excludeInboundPorts)."
                ),
                "Declare the Service port as https/tls (appProtocol) so the sidecar passes TLS through, or send \
                 plaintext and let a DestinationRule (tls.mode SIMPLE) originate TLS; for excluded ports, add a \
                 DestinationRule with tls.mode DISABLE for that port.",
            )
        }
        Failure::NoServerHello { reset } => d(
            "no-server-hello",
            format!(
                "The ClientHello was answered by {} and no ServerHello: curl prints \"(35) SSL_ERROR_SYSCALL\" or \
                 \"unexpected eof\". No filter chain matched this SNI, or the traffic went to the BlackHoleCluster.",
                if reset {
                    "a TCP reset"
                } else {
                    "a close (FIN)"
                }
            ),
            "Check the SNI against the Gateway hosts and its credentialName; under outboundTrafficPolicy \
             REGISTRY_ONLY add a ServiceEntry for this host; send the right SNI (curl --resolve, not -H Host).",
        ),
        Failure::Alert {
            from_client,
            description: 48,
        } => d(
            "untrusted-ca",
            if from_client {
                "The client rejected the server's certificate with alert unknown_ca (48): it prints \
                 \"CERTIFICATE_VERIFY_FAILED\" / \"unable to get local issuer certificate\"."
            } else {
                "The server rejected the client's certificate with alert unknown_ca (48): the client prints \
                 \"tlsv1 alert unknown ca\"."
            },
            if from_client {
                "Give the client the server's CA (--cacert, trust store); for sidecar upstreams set the \
                 DestinationRule caCertificates, for gateways serve a certificate from a CA clients trust."
            } else {
                "Issue the client certificate from the CA the server trusts (Gateway MUTUAL: the ca.crt in \
                 credentialName / caCertificates), or add the client's CA there."
            },
        ),
        Failure::Alert {
            from_client,
            description: desc @ (42..=46),
        } => d(
            "bad-certificate",
            format!(
                "The {} rejected the peer's certificate with alert {}: a host name or SAN mismatch, an expired or \
                 revoked certificate (client: \"tlsv1 alert bad certificate\" / \"certificate verify failed\").",
                if from_client { "client" } else { "server" },
                alert_label(desc)
            ),
            "Fix the certificate's SANs to match the name clients use (or DestinationRule subjectAltNames / sni), \
             and renew expired certificates.",
        ),
        Failure::Alert {
            from_client: false,
            description: 40,
        } if f.tls.certificate_request && f.tls.client_certificates.unwrap_or(0) == 0 => d(
            "client-cert-required",
            "The server asked for a client certificate, got none, and failed the handshake with \
                 handshake_failure (40): the client prints \"sslv3 alert handshake failure\".",
            "Give the client a certificate signed by the server's CA (Gateway tls.mode MUTUAL: the \
                 credentialName ca.crt; sidecar: DestinationRule tls.mode MUTUAL with clientCertificate), or use \
                 SIMPLE / OPTIONAL_MUTUAL on the server.",
        ),
        Failure::Alert {
            description: 116, ..
        }
        | Failure::ServerEncryptedAlert {
            client_sent_certificate: false,
        } => d(
            "client-cert-required",
            if matches!(failure, Failure::Alert { .. }) {
                "The server required a client certificate (alert certificate_required, 116): the client prints \
                 \"tlsv13 alert certificate required\"."
            } else {
                "TLS 1.3: the client's flight was too small to hold a certificate, and the server answered it \
                 with one short encrypted record (an alert) and closed: a server requiring a client certificate \
                 (the client prints \"tlsv13 alert certificate required\" on its first read)."
            },
            "Give the client a certificate signed by the server's CA (Gateway tls.mode MUTUAL: the credentialName \
             ca.crt; sidecar: DestinationRule tls.mode MUTUAL with clientCertificate), or use SIMPLE / \
             OPTIONAL_MUTUAL on the server.",
        ),
        Failure::Alert {
            description: 80, ..
        } => d(
            "server-internal-error",
            "The server answered with alert internal_error (80): the client prints \"tlsv1 alert internal error\". \
             The server has no usable certificate or key for this SNI (e.g. a missing gateway secret, or an IP \
             address used as SNI).",
            "Check the gateway's credentialName secret and its namespace (istioctl proxy-config secret), the \
             certificate/key pair, and that clients send a host name as SNI.",
        ),
        Failure::Alert {
            from_client,
            description,
        } => d(
            "unknown",
            format!(
                "The handshake failed with alert {} from the {}; no diagnosis is known for it.",
                alert_label(description),
                if from_client { "client" } else { "server" }
            ),
            "Look up the alert in the peer's logs (Envoy: the access log's upstream/downstream TLS error).",
        ),
        Failure::ServerEncryptedAlert {
            client_sent_certificate: true,
        } => d(
            "encrypted-alert-failure",
            "TLS 1.3: the client sent a certificate and the server answered with one short encrypted record (an \
             alert) and closed: the server most likely rejected the client certificate (untrusted CA or SAN).",
            "Check that the client certificate chains to the CA the server trusts, and the server's SAN \
             requirements.",
        ),
        Failure::ClientEncryptedAlert => d(
            "encrypted-alert-failure",
            "TLS 1.3: the client answered the server's certificate flight with one short encrypted record (an \
             alert) instead of its Finished, and closed: it most likely rejected the server certificate \
             (\"CERTIFICATE_VERIFY_FAILED\": untrusted CA or name mismatch).",
            "Give the client the server's CA, or fix the server certificate's SANs to match the name the client \
             uses.",
        ),
        Failure::Closed => d(
            "unknown",
            "The connection closed during the handshake without an alert.",
            "Check both peers' logs; the wire does not say why.",
        ),
    }
}

/// Diagnoses for cleartext flows.
fn plaintext(f: &Facts<'_>, class: Class, leg: Leg) -> Option<Diagnosis> {
    if class != Class::Plaintext {
        return None;
    }
    if f.server.bytes == 0 && f.server.rst && f.client.bytes > 0 {
        return d(
            "strict-rejected-plaintext",
            "A plaintext request was answered by a TCP reset: the client prints \"Connection reset by peer\" \
             (curl exit 56). The server requires mTLS (PeerAuthentication STRICT) and this client has no sidecar, \
             or bypasses it.",
            "Inject a sidecar into the client (or enroll it in ambient), remove excludeOutboundPorts / \
             excludeOutboundIPRanges for this destination, or set the PeerAuthentication (portLevelMtls) to \
             PERMISSIVE while migrating.",
        );
    }
    let pods = private_ip(f.client.ep.ip) && private_ip(f.server.ep.ip);
    if leg == Leg::Network
        && pods
        && f.server.bytes > 0
        && !TELEMETRY_PORTS.contains(&f.server.ep.port)
    {
        return d(
            "plaintext-in-mesh",
            "Cleartext between two workloads on the network: the server accepted it (PeerAuthentication \
             PERMISSIVE or DISABLE, or the port is excluded from the sidecar).",
            "Give the client a sidecar so auto-mTLS encrypts it, then set PeerAuthentication mtls.mode STRICT for \
             the namespace or workload; remove excludeInboundPorts for this port.",
        );
    }
    None
}
