//! A typed mirror of docs/flow-record.md. `deny_unknown_fields` makes an undocumented
//! field fail here, and the types make a changed type fail; the docs test checks that
//! every field named here is documented.

use serde::Deserialize;

use crate::support::*;

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerSide {
    client: u64,
    server: u64,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Anomaly {
    kind: String,
    from: Option<String>,
    count: u64,
    bytes: Option<u64>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Alert {
    from: String,
    level: u8,
    description: u8,
    name: Option<String>,
    frame: u64,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cert {
    subject: String,
    issuer: String,
    serial: String,
    not_before: String,
    not_after: String,
    san_dns: Vec<String>,
    san_uri: Vec<String>,
    san_ip: Vec<String>,
    san_critical: bool,
    is_ca: bool,
    key_algorithm: String,
    signature_algorithm: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    uri: String,
    trust_domain: String,
    ns: String,
    sa: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mesh {
    kind: String,
    port: Option<u16>,
    subset: Option<String>,
    service: Option<String>,
    namespace: Option<String>,
    host: Option<String>,
    client_identity: Option<Identity>,
    server_identity: Option<Identity>,
    proxy: Option<String>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Diagnosis {
    code: String,
    summary: String,
    fix: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    status: Option<u16>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    first_frame: u64,
    client: String,
    server: String,
    link: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    sni: Option<String>,
    sni_all: Vec<String>,
    alpn_offered: Option<Vec<String>>,
    alpn_selected: Option<String>,
    client_hello_version: Option<String>,
    supported_versions_offered: Option<Vec<String>>,
    version: Option<String>,
    version_name: Option<String>,
    cipher: Option<String>,
    cipher_name: Option<String>,
    ciphers_offered: Vec<String>,
    groups_offered: Vec<String>,
    key_share_groups: Vec<String>,
    alerts: Vec<Alert>,
    encrypted_alerts: PerSide,
    certificate_request: bool,
    client_certificate: bool,
    client_certificate_count: Option<u64>,
    server_certificate: bool,
    server_certificate_count: Option<u64>,
    client_certificates: Vec<Cert>,
    server_certificates: Vec<Cert>,
    resumed: bool,
    resumed_by: Option<String>,
    hello_retry_request: bool,
    ech_offered: bool,
    resumption_offered: bool,
    early_data_offered: bool,
    sslv2: bool,
    ja4: Option<String>,
    client_hellos: u32,
    client_hello_frame: Option<u64>,
    preamble: Option<String>,
    app_data_records: PerSide,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flow {
    #[serde(rename = "type")]
    kind: String,
    capture: String,
    client: String,
    server: String,
    client_basis: String,
    first_frame: u64,
    last_frame: u64,
    first_ts: String,
    last_ts: String,
    packets: PerSide,
    bytes: PerSide,
    state: String,
    end: String,
    anomalies: Vec<Anomaly>,
    app_protocol: Option<String>,
    class: String,
    confidence: String,
    evidence: Vec<String>,
    leg: String,
    handshake: String,
    diagnosis: Option<Diagnosis>,
    mesh: Option<Mesh>,
    http: Option<Http>,
    paired_with: Option<Pair>,
    tls: Option<Tls>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Summary {
    #[serde(rename = "type")]
    kind: String,
    schema_version: u32,
    capture: String,
    packets: u64,
    decoded: u64,
    undecoded: std::collections::BTreeMap<String, u64>,
    link_types: std::collections::BTreeMap<String, u64>,
    flows: u64,
    classes: std::collections::BTreeMap<String, u64>,
    tls_flows: u64,
    anomalies: std::collections::BTreeMap<String, u64>,
    evicted_flows: u64,
    error: Option<String>,
}

/// Field names of the mirror structs above, for the documentation check.
const FIELDS: &[&str] = &[
    "client",
    "server",
    "kind",
    "from",
    "count",
    "bytes",
    "level",
    "description",
    "name",
    "frame",
    "subject",
    "issuer",
    "serial",
    "not_before",
    "not_after",
    "san_dns",
    "san_uri",
    "san_ip",
    "san_critical",
    "is_ca",
    "key_algorithm",
    "signature_algorithm",
    "sni",
    "sni_all",
    "alpn_offered",
    "alpn_selected",
    "client_hello_version",
    "supported_versions_offered",
    "version",
    "version_name",
    "cipher",
    "cipher_name",
    "ciphers_offered",
    "groups_offered",
    "key_share_groups",
    "alerts",
    "encrypted_alerts",
    "certificate_request",
    "client_certificate",
    "client_certificate_count",
    "server_certificate",
    "server_certificate_count",
    "server_certificates",
    "resumed",
    "resumed_by",
    "hello_retry_request",
    "ech_offered",
    "resumption_offered",
    "early_data_offered",
    "sslv2",
    "ja4",
    "client_hellos",
    "client_hello_frame",
    "preamble",
    "app_data_records",
    "type",
    "capture",
    "client_basis",
    "first_frame",
    "last_frame",
    "first_ts",
    "last_ts",
    "packets",
    "state",
    "end",
    "anomalies",
    "app_protocol",
    "class",
    "confidence",
    "evidence",
    "tls",
    "schema_version",
    "decoded",
    "undecoded",
    "link_types",
    "flows",
    "classes",
    "tls_flows",
    "evicted_flows",
    "error",
    "leg",
    "handshake",
    "diagnosis",
    "mesh",
    "http",
    "paired_with",
    "client_certificates",
    "uri",
    "trust_domain",
    "ns",
    "sa",
    "port",
    "subset",
    "service",
    "namespace",
    "host",
    "client_identity",
    "server_identity",
    "proxy",
    "code",
    "summary",
    "fix",
    "method",
    "path",
    "status",
    "link",
];

#[test]
fn every_record_of_every_capture_matches_the_contract() {
    let mut n = 0;
    for path in all_captures() {
        let out = run(
            &["analyze", "--format", "jsonl", path.to_str().unwrap()],
            None,
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str() {
                Some("flow") => {
                    serde_json::from_value::<Flow>(v)
                        .unwrap_or_else(|e| panic!("{}: {e}\n{line}", path.display()));
                    n += 1;
                }
                Some("summary") => {
                    serde_json::from_value::<Summary>(v)
                        .unwrap_or_else(|e| panic!("{}: {e}\n{line}", path.display()));
                }
                other => panic!("unknown record type {other:?}"),
            }
        }
    }
    assert!(n >= 5, "expected flow records from captures/");
}

#[test]
fn every_field_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flow-record.md"),
    )
    .expect("docs/flow-record.md");
    for f in FIELDS {
        assert!(
            doc.contains(&format!("`{f}`")),
            "docs/flow-record.md does not document `{f}`"
        );
    }
}
