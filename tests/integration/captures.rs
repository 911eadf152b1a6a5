//! Exact facts on the captures in `captures/` (made by `captures/make-captures.sh` with
//! OpenSSL, Python `ssl`, curl and tcpdump; see captures/README.md). Client ports change
//! when the captures are regenerated, so flows are found by server port.

use serde_json::{Value, json};

use crate::support::*;

fn flows_of(name: &str) -> (Vec<Value>, Value) {
    analyze(&captures().join(name), &[])
}

/// The one flow whose server port is `port`.
fn by_port(flows: &[Value], port: u16) -> Value {
    let want = format!(":{port}");
    let found: Vec<&Value> = flows
        .iter()
        .filter(|f| f["server"].as_str().unwrap().ends_with(&want))
        .collect();
    assert_eq!(found.len(), 1, "flows to port {port}: {flows:#?}");
    found[0].clone()
}

#[test]
fn openssl_tls13_on_loopback() {
    let (flows, summary) = flows_of("openssl-tls13-lo.pcap");
    assert_eq!(summary["link_types"], json!({"1": summary["packets"]}));
    let f = by_port(&flows, 8443);
    assert_eq!(
        (f["client_basis"].as_str(), f["state"].as_str()),
        (Some("tcp_syn"), Some("closed"))
    );
    let t = &f["tls"];
    assert_eq!(t["sni"], "api.example.test");
    assert_eq!(t["alpn_offered"], json!(["h2", "http/1.1"]));
    assert_eq!(
        t["alpn_selected"],
        Value::Null,
        "TLS 1.3 encrypts the selected ALPN"
    );
    assert_eq!(
        (t["version"].as_str(), t["version_name"].as_str()),
        (Some("0x0304"), Some("TLS 1.3"))
    );
    assert_eq!(
        (t["cipher"].as_str(), t["cipher_name"].as_str()),
        (Some("0x1302"), Some("TLS_AES_256_GCM_SHA384"))
    );
    assert_eq!(
        t["server_certificate"], false,
        "TLS 1.3 encrypts certificates"
    );
    assert_eq!(t["alerts"], json!([]));
    assert!(
        t["ja4"].as_str().unwrap().starts_with("t13d"),
        "{}",
        t["ja4"]
    );
}

#[test]
fn openssl_tls12_mutual_with_spiffe_certificates() {
    let (flows, _) = flows_of("openssl-tls12-mutual-lo.pcap");
    let f = by_port(&flows, 8080);
    let t = &f["tls"];
    assert_eq!(
        t["sni"],
        "outbound_.8080_._.server.default.svc.cluster.local"
    );
    assert_eq!(t["alpn_offered"], json!(["istio-peer-exchange", "istio"]));
    assert_eq!(t["alpn_selected"], "istio-peer-exchange");
    assert_eq!(t["version"], "0x0303");
    assert_eq!(t["certificate_request"], true);
    assert_eq!(
        (
            t["client_certificate"].as_bool(),
            t["client_certificate_count"].as_u64()
        ),
        (Some(true), Some(2)),
        "leaf and CA, as tshark counts"
    );
    let leaf = &t["server_certificates"][0];
    assert_eq!(
        leaf["san_uri"],
        json!(["spiffe://cluster.local/ns/default/sa/server"])
    );
    assert_eq!(leaf["san_dns"], json!(["server.default.svc.cluster.local"]));
    assert_eq!(f["class"], "istio-mtls");
}

#[test]
fn python_ssl_captured_with_any_is_sll2() {
    let (flows, summary) = flows_of("python-tls-any-sll2.pcap");
    assert_eq!(summary["link_types"], json!({"276": summary["packets"]}));
    assert_eq!(summary["undecoded"], json!({}));
    let t = &by_port(&flows, 9443)["tls"];
    assert_eq!(t["sni"], "py.example.test");
    assert_eq!(t["alpn_offered"], json!(["http/1.1"]));
    assert_eq!(t["version"], "0x0304");
}

#[test]
fn curl_plaintext_http_and_h2c() {
    let (flows, _) = flows_of("curl-http-plaintext-lo.pcap");
    let h1 = by_port(&flows, 8000);
    assert_eq!(
        (
            h1["app_protocol"].as_str(),
            h1["class"].as_str(),
            h1["tls"].as_null()
        ),
        (Some("http/1.x"), Some("plaintext"), Some(()))
    );
    let h2 = by_port(&flows, 8001);
    assert_eq!(
        (h2["app_protocol"].as_str(), h2["class"].as_str()),
        (Some("h2c"), Some("plaintext"))
    );
}

#[test]
fn curl_https_in_pcapng() {
    let (flows, summary) = flows_of("curl-https-pcapng.pcapng");
    assert_eq!(summary["error"], Value::Null);
    let t = &by_port(&flows, 4443)["tls"];
    assert_eq!(t["sni"], "www.example.test");
    assert_eq!(t["alpn_offered"], json!(["h2", "http/1.1"]));
    assert_eq!(t["version"], "0x0304");
}

#[test]
fn client_hello_in_three_segments_delivered_out_of_order() {
    let (flows, _) = flows_of("split-clienthello-ooo.pcap");
    let f = by_port(&flows, 443);
    assert_eq!(
        f["client"].as_str().unwrap().split(':').next(),
        Some("10.244.1.10")
    );
    let t = &f["tls"];
    assert_eq!(t["sni"], "split.example.test");
    assert_eq!(t["alpn_offered"], json!(["h2", "http/1.1"]));
    assert_eq!(t["version"], "0x0304");
    // The segments arrive as frames 4 (middle), 6 (first), 8 (last): the hello is
    // complete only at frame 8.
    assert_eq!(t["client_hello_frame"], 8);
    assert_eq!(f["anomalies"], json!([]));
}

#[test]
fn client_rejects_the_server_ca() {
    let (flows, _) = flows_of("tls-alert-unknown-ca-lo.pcap");
    let t = &by_port(&flows, 10443)["tls"];
    assert_eq!(t["sni"], "untrusted.example.test");
    assert_eq!(t["version"], "0x0303");
    assert_eq!(
        t["alerts"],
        json!([{"from": "client", "level": 2, "description": 48, "name": "unknown_ca", "frame": 8}])
    );
    assert_eq!(t["server_certificate"], true);
}

/// Linkerd, Consul and ambient signatures (captures/make-mesh-signatures.sh: OpenSSL with
/// the names and ALPN these meshes put on the wire).
#[test]
fn other_mesh_signatures() {
    let (flows, _) = flows_of("linkerd-identity-sni.pcap");
    let f = by_port(&flows, 4143);
    assert_eq!(
        (f["class"].as_str(), f["handshake"].as_str()),
        (Some("linkerd-mtls"), Some("complete"))
    );
    assert_eq!(
        (
            f["mesh"]["namespace"].as_str(),
            f["mesh"]["server_identity"]["sa"].as_str()
        ),
        (Some("emojivoto"), Some("web"))
    );
    let (flows, _) = flows_of("consul-connect-sni.pcap");
    let f = by_port(&flows, 20000);
    assert_eq!(f["class"], "consul-mtls");
    assert_eq!(
        (
            f["mesh"]["service"].as_str(),
            f["mesh"]["namespace"].as_str()
        ),
        (Some("web"), Some("default"))
    );
    let (flows, _) = flows_of("hbone-ztunnel-like.pcap");
    let f = by_port(&flows, 15008);
    assert_eq!(f["class"], "istio-mtls");
    assert_eq!(
        (f["mesh"]["kind"].as_str(), f["mesh"]["proxy"].as_str()),
        (Some("istio-ambient"), Some("ztunnel"))
    );
    assert_eq!(f["tls"]["sni"], Value::Null);
}
