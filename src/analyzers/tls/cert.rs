//! X.509 certificate summaries.
//!
//! This module owns turning one DER-encoded certificate, as carried in a TLS
//! Certificate message, into a flat [`CertSummary`] for reports: names,
//! serial, validity, subject alternative names (where SPIFFE IDs live), CA
//! flag and algorithms. Parsing is done by `x509-parser`.
//!
//! It refuses to judge certificates: no signature or chain verification, no
//! validity-against-clock checks, no hostname or SPIFFE ID policy. It never
//! panics on hostile input and reports unparseable input as `None` rather
//! than a partial summary.
//!
//! In a mesh the same few certificates (workload leaves, intermediates, roots)
//! come back in thousands of connections, and a summary is a pure function of
//! the DER: [`summarize_cached`] keeps the last ones summarized, per thread, in a
//! small bounded [`Memo`].

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::memo::Memo;
use crate::capture::civil_from_days;

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// Report-ready facts about one X.509 certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject DN as x509-parser's `Display` renders it (RFC 4514-ish,
    /// e.g. `C=US, O=Example, CN=example.com`); empty for an empty subject.
    pub subject: String,
    /// Issuer DN, same rendering as `subject`.
    pub issuer: String,
    /// Serial number as lowercase hex without colons, with DER's leading
    /// `00` sign-padding bytes removed (`"0"` for a zero serial).
    pub serial: String,
    /// notBefore as RFC 3339 UTC, e.g. `2026-11-22T05:28:23Z`.
    pub not_before: String,
    /// notAfter as RFC 3339 UTC.
    pub not_after: String,
    /// dNSName entries of the SubjectAltName extension, in order.
    pub san_dns: Vec<String>,
    /// uniformResourceIdentifier entries (SPIFFE IDs live here), in order.
    pub san_uri: Vec<String>,
    /// iPAddress entries, in standard textual form (IPv6 compressed);
    /// entries of unexpected length are rendered as hex.
    pub san_ip: Vec<String>,
    /// SubjectAltName extension marked critical (Istio marks it critical when
    /// the subject is empty).
    pub san_critical: bool,
    /// basicConstraints says `cA: TRUE`.
    pub is_ca: bool,
    /// Subject public key algorithm: OID short name if known (e.g.
    /// `rsaEncryption`, `id-ecPublicKey`), else the dotted OID.
    pub key_algorithm: String,
    /// Certificate signature algorithm, same naming as `key_algorithm`
    /// (e.g. `sha256WithRSAEncryption`, `ecdsa-with-SHA256`).
    pub signature_algorithm: String,
}

/// Parse one DER certificate. Never panics on any input; returns None if it
/// does not parse, including when bytes follow the certificate.
///
/// If a certificate (against RFC 5280) carries several SubjectAltName or
/// basicConstraints extensions, the SAN entries of all of them are listed,
/// `san_critical` is set if any is critical and `is_ca` if any says CA.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (rest, cert) = X509Certificate::from_der(der).ok()?;
    if !rest.is_empty() {
        return None;
    }

    let mut summary = CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before: rfc3339(&cert.validity().not_before),
        not_after: rfc3339(&cert.validity().not_after),
        san_dns: Vec::new(),
        san_uri: Vec::new(),
        san_ip: Vec::new(),
        san_critical: false,
        is_ca: false,
        key_algorithm: oid_name(&cert.public_key().algorithm.algorithm),
        signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
    };

    for ext in cert.extensions() {
        if ext.oid == OID_X509_EXT_SUBJECT_ALT_NAME && ext.critical {
            summary.san_critical = true;
        }
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => summary.san_dns.push((*dns).to_owned()),
                        GeneralName::URI(uri) => summary.san_uri.push((*uri).to_owned()),
                        GeneralName::IPAddress(ip) => summary.san_ip.push(ip_string(ip)),
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => summary.is_ca |= bc.ca,
            _ => {}
        }
    }

    Some(summary)
}

/// Certificates remembered per thread.
const MEMO_ENTRIES: usize = 64;
/// Larger certificates are summarized every time, never remembered; with
/// [`MEMO_ENTRIES`] this bounds what the memo holds (summaries are made of the
/// certificate's fields, so they are of the same order of size).
const MEMO_MAX_DER: usize = 8 * 1024;

thread_local! {
    static MEMO: RefCell<Memo<u8, Option<Arc<CertSummary>>>> =
        RefCell::new(Memo::new(MEMO_ENTRIES, MEMO_MAX_DER));
}

/// [`summarize`], remembered per thread for the last certificates seen (keyed by
/// their whole DER). The summary is shared, not copied: the flows that saw the same
/// certificate hold the one summary (a dozen strings and lists) instead of a copy each.
pub fn summarize_cached(der: &[u8]) -> Option<Arc<CertSummary>> {
    MEMO.with_borrow_mut(|memo| memo.get(der, || summarize(der).map(Arc::new)))
}

/// OID short name from x509-parser's registry, else dotted notation.
fn oid_name(oid: &Oid<'_>) -> String {
    match oid2sn(oid, oid_registry()) {
        Ok(name) => name.to_owned(),
        Err(_) => oid.to_id_string(),
    }
}

/// Lowercase hex of the serial's content octets without leading zero bytes.
fn serial_hex(raw: &[u8]) -> String {
    let hex: String = raw
        .iter()
        .skip_while(|&&b| b == 0)
        .map(|b| format!("{b:02x}"))
        .collect();
    if hex.is_empty() { "0".to_owned() } else { hex }
}

/// An iPAddress SAN: 4 bytes IPv4, 16 bytes IPv6, anything else as hex.
fn ip_string(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ipv4Addr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ipv6Addr::from(v6).to_string()
    } else {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// RFC 3339 UTC rendering (`YYYY-MM-DDTHH:MM:SSZ`) of an ASN.1 time.
fn rfc3339(t: &ASN1Time) -> String {
    let secs = t.timestamp();
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EC P-256 leaf, empty subject, critical SAN with DNS, SPIFFE URI, IPv4
    /// and IPv6, issued by `CA_RSA` (generated with openssl 3.0).
    const LEAF_EC: &[u8] = include_bytes!("testdata/leaf_ec_p256_spiffe.der");
    /// Self-signed RSA-2048 CA with critical basicConstraints CA:TRUE.
    const CA_RSA: &[u8] = include_bytes!("testdata/ca_rsa2048.der");

    const CA_DN: &str = "C=US, O=mtlscope test, CN=mtlscope test root CA";

    #[test]
    fn ec_leaf_with_spiffe_id() {
        let s = summarize(LEAF_EC).expect("test certificate parses");
        assert_eq!(
            s,
            CertSummary {
                subject: String::new(),
                issuer: CA_DN.to_owned(),
                serial: "f1e2d3c4b5a69788".to_owned(),
                not_before: "2026-11-22T05:31:31Z".to_owned(),
                not_after: "2027-11-22T05:31:31Z".to_owned(),
                san_dns: vec!["httpbin.default.svc.cluster.local".to_owned()],
                san_uri: vec!["spiffe://cluster.local/ns/default/sa/httpbin".to_owned()],
                san_ip: vec!["10.0.0.7".to_owned(), "fd00::7".to_owned()],
                san_critical: true,
                is_ca: false,
                key_algorithm: "id-ecPublicKey".to_owned(),
                signature_algorithm: "sha256WithRSAEncryption".to_owned(),
            }
        );
    }

    #[test]
    fn rsa_ca() {
        let s = summarize(CA_RSA).expect("test certificate parses");
        assert_eq!(
            s,
            CertSummary {
                subject: CA_DN.to_owned(),
                issuer: CA_DN.to_owned(),
                serial: "7a3f00c1".to_owned(),
                not_before: "2026-11-22T05:31:29Z".to_owned(),
                not_after: "2036-11-19T05:31:29Z".to_owned(),
                san_dns: vec![],
                san_uri: vec![],
                san_ip: vec![],
                san_critical: false,
                is_ca: true,
                key_algorithm: "rsaEncryption".to_owned(),
                signature_algorithm: "sha256WithRSAEncryption".to_owned(),
            }
        );
    }

    #[test]
    fn implements_serialize() {
        let s = summarize(LEAF_EC).expect("test certificate parses");
        fn assert_serialize<T: Serialize>(_: &T) {}
        assert_serialize(&s);
    }

    #[test]
    fn every_prefix_is_rejected() {
        for cert in [LEAF_EC, CA_RSA] {
            for len in 0..cert.len() {
                assert_eq!(summarize(&cert[..len]), None, "prefix of length {len}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut der = CA_RSA.to_vec();
        der.push(0);
        assert_eq!(summarize(&der), None);
    }

    /// xorshift64*: deterministic pseudo-random bytes without extra crates.
    fn rng(seed: u64) -> impl FnMut() -> u8 {
        let mut state = seed | 1;
        move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        }
    }

    #[test]
    fn random_bytes_are_rejected() {
        let mut next = rng(0x6d74_6c73_636f_7065);
        for len in [0usize, 1, 2, 3, 16, 100, 761, 846, 4096] {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len).map(|_| next()).collect();
                assert_eq!(summarize(&bytes), None);
                // Same, but behind a plausible outer SEQUENCE header.
                let mut framed = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
                framed.extend_from_slice(&bytes);
                assert_eq!(summarize(&framed), None);
            }
        }
    }

    #[test]
    fn corrupted_certificates_do_not_panic() {
        let mut next = rng(42);
        for cert in [LEAF_EC, CA_RSA] {
            // Every single-byte corruption at every offset (some may still parse).
            for i in 0..cert.len() {
                let mut der = cert.to_vec();
                der[i] ^= 0xff;
                let _ = summarize(&der);
                der[i] = next();
                let _ = summarize(&der);
            }
            // Random multi-byte corruption.
            for _ in 0..2000 {
                let mut der = cert.to_vec();
                for _ in 0..4 {
                    let i = usize::from(next()) * 256 + usize::from(next());
                    if let Some(b) = der.get_mut(i % cert.len()) {
                        *b = next();
                    }
                }
                let _ = summarize(&der);
            }
        }
    }

    #[test]
    fn remembered_summaries_are_the_summaries() {
        for _ in 0..3 {
            for der in [LEAF_EC, CA_RSA, &LEAF_EC[1..]] {
                assert_eq!(summarize_cached(der).as_deref(), summarize(der).as_ref());
            }
        }
    }

    #[test]
    fn serial_formatting() {
        assert_eq!(serial_hex(&[0x00, 0xf1, 0x0a]), "f10a");
        assert_eq!(serial_hex(&[0x01]), "01");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(serial_hex(&[]), "0");
        assert_eq!(serial_hex(&[0x7a, 0x00]), "7a00");
    }

    #[test]
    fn ip_formatting() {
        assert_eq!(ip_string(&[192, 0, 2, 1]), "192.0.2.1");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_string(&v6), "::1");
        // Name-constraint style address+mask or junk length: hex.
        assert_eq!(ip_string(&[10, 0, 0, 0, 255, 0, 0, 0]), "0a000000ff000000");
        assert_eq!(ip_string(&[]), "");
    }
}
