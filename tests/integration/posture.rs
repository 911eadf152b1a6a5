//! `mtlscope posture` on the namespace scenarios in `captures/posture/` (made by
//! `captures/posture/make-posture.sh`: curl, Python ssl and a sidecar stand-in in network
//! namespaces, tcpdump -i any in each server pod) with the hand-written kubectl context
//! next to them. Client ports and frame numbers change when the captures are regenerated,
//! so flows are found by server port.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{Value, json};

use crate::support::*;

const CAPTURES: [&str; 5] = [
    "shop-permissive.pcap",
    "payments-strict.pcap",
    "reports-excluded-port.pcap",
    "vault-double-wrapped-server.pcap",
    "vault-double-wrapped-client.pcap",
];

fn path(name: &str) -> String {
    captures()
        .join("posture")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

fn context() -> Vec<String> {
    vec![
        "--pods".into(),
        path("pods.json"),
        "--services".into(),
        path("services.json"),
        "--policies".into(),
        path("peerauthentications.json"),
    ]
}

fn all_captures() -> Vec<String> {
    CAPTURES.iter().map(|c| path(c)).collect()
}

/// Runs `mtlscope posture ARGS`.
fn posture_raw(args: &[String], stdin: Option<&[u8]>) -> Output {
    let mut v: Vec<&str> = vec!["posture"];
    v.extend(args.iter().map(String::as_str));
    run(&v, stdin)
}

/// Runs `mtlscope posture --format json ARGS` and parses the document.
fn posture(args: &[String]) -> (Option<i32>, Value, String) {
    let mut a = vec!["--format".to_string(), "json".to_string()];
    a.extend_from_slice(args);
    let out = posture_raw(&a, None);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON document ({e}); stderr: {err}"));
    (out.status.code(), doc, err)
}

fn with_context(extra: &[&str]) -> Vec<String> {
    let mut v = all_captures();
    v.extend(context());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn group<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name}: {:#}", doc["groups"]))
}

fn findings<'a>(doc: &'a Value, kind: &str, group: &str) -> Vec<&'a Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind && f["group"] == group)
        .collect()
}

fn one_finding<'a>(doc: &'a Value, kind: &str, group: &str) -> &'a Value {
    let f = findings(doc, kind, group);
    assert_eq!(
        f.len(),
        1,
        "{kind} findings for {group}: {:#}",
        doc["findings"]
    );
    f[0]
}

fn class_flows(traffic: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in traffic["classes"].as_object().unwrap() {
        m.insert(k.clone(), v["flows"].clone());
    }
    Value::Object(m)
}

fn server_port(flow: &Value) -> u16 {
    flow["server"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn totals_count_network_legs_once() {
    let (code, doc, err) = posture(&with_context(&[]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        doc["totals"],
        json!({"flows": 16, "network_flows": 8, "pod_local_flows": 7, "duplicate_flows": 1,
               "attributed_flows": 8, "unattributed_flows": 0})
    );
    assert_eq!(doc["type"], "posture");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(
        doc["context"]["pods"]["objects"], 9,
        "every pod is read, Pending and host-network ones too"
    );
    let verdicts: Vec<(&str, &str)> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("legacy", "no-inbound-traffic"),
            ("payments", "strict-enforced"),
            ("reports", "policy-mismatch"),
            ("shop", "would-break"),
            ("vault", "strict-ready"),
            ("web", "no-inbound-traffic"),
        ]
    );
}

#[test]
fn permissive_namespace_would_break_and_lists_the_plaintext_client() {
    let (_, doc, _) = posture(&with_context(&[]));
    let shop = group(&doc, "shop");
    assert_eq!(shop["verdicts"], json!(["would-break"]));
    assert_eq!(
        shop["policy"],
        json!({"mode": "PERMISSIVE", "source": "istio-system/default", "exceptions": []})
    );
    assert_eq!(
        class_flows(&shop["inbound"]),
        json!({"plaintext": 2, "istio-mtls": 1})
    );
    assert_eq!(shop["inbound"]["peers"], 2);
    let share = &shop["mesh_mtls_share"];
    assert_eq!(share["flows"], 0.3333);
    assert!(
        share["bytes"].as_f64().unwrap() > 0.5,
        "mTLS carries most bytes"
    );
    let f = one_finding(&doc, "would-break", "shop");
    assert_eq!(f["severity"], "high");
    assert_eq!(
        f["peers"],
        json!([{"client": "legacy/batch-7f9c6d5b4-q8wzn", "client_namespace": "legacy",
                "server": "shop/cart-6b8d9c7f5-7hx2p", "port": 8080, "flows": 2,
                "bytes": f["peers"][0]["bytes"]}])
    );
    assert_eq!(f["flows_total"], 2);
    for fl in f["flows"].as_array().unwrap() {
        assert_eq!(fl["capture"], path("shop-permissive.pcap"));
        assert_eq!(fl["posture_class"], "plaintext");
        assert!(fl["first_frame"].as_u64().unwrap() >= 1);
        let filter = fl["display_filter"].as_str().unwrap();
        assert!(
            filter.starts_with("ip.addr==10.244.3.30 && tcp.port==")
                && filter.ends_with("ip.addr==10.244.2.20 && tcp.port==8080"),
            "{filter}"
        );
    }
}

#[test]
fn strict_namespace_is_strict_enforced() {
    let (_, doc, _) = posture(&with_context(&[]));
    let p = group(&doc, "payments");
    assert_eq!(p["verdicts"], json!(["strict-enforced"]));
    assert_eq!(p["policy"]["mode"], "STRICT");
    assert_eq!(p["policy"]["source"], "payments/default");
    assert_eq!(
        class_flows(&p["inbound"]),
        json!({"istio-mtls": 1, "failed": 1})
    );
    let f = one_finding(&doc, "strict-enforced", "payments");
    assert_eq!(f["severity"], "medium");
    assert_eq!(f["peers"][0]["client"], "legacy/batch-7f9c6d5b4-q8wzn");
    assert_eq!(f["flows"][0]["diagnosis"], "strict-rejected-plaintext");
    assert_eq!(f["flows"][0]["class"], "plaintext");
    assert_eq!(f["flows"][0]["posture_class"], "failed");
    assert!(findings(&doc, "would-break", "payments").is_empty());
}

#[test]
fn excluded_port_is_bypassed_and_contradicts_strict() {
    let (_, doc, _) = posture(&with_context(&[]));
    let r = group(&doc, "reports");
    assert_eq!(r["verdicts"], json!(["policy-mismatch", "bypassed"]));
    assert_eq!(
        class_flows(&r["inbound"]),
        json!({"plaintext": 1, "istio-mtls": 1})
    );
    let b = one_finding(&doc, "bypassed", "reports");
    assert_eq!(b["peers"][0]["port"], 9090);
    assert_eq!(server_port(&b["flows"][0]), 9090);
    let m = one_finding(&doc, "policy-mismatch", "reports");
    let summary = m["summary"].as_str().unwrap();
    assert!(
        summary.contains("reports/default says STRICT") && summary.contains("excluded"),
        "{summary}"
    );
    assert!(
        findings(&doc, "would-break", "reports").is_empty(),
        "STRICT does not apply to an excluded port"
    );
}

#[test]
fn double_wrapped_service_is_counted_once_and_strict_ready() {
    let (_, doc, _) = posture(&with_context(&[]));
    let v = group(&doc, "vault");
    assert_eq!(v["verdicts"], json!(["strict-ready"]));
    assert_eq!(class_flows(&v["inbound"]), json!({"double-wrapped": 1}));
    assert_eq!(v["mesh_mtls_share"], json!({"flows": 1.0, "bytes": 1.0}));
    let f = one_finding(&doc, "double-wrapped", "vault");
    assert_eq!(f["severity"], "low");
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains("Service port 443 named https, appProtocol https"),
        "{summary}"
    );
    let flow = &f["flows"][0];
    let captures = [
        flow["capture"].as_str().unwrap().to_string(),
        flow["also_in"][0]["capture"].as_str().unwrap().to_string(),
    ];
    assert_eq!(
        captures,
        [
            path("vault-double-wrapped-client.pcap"),
            path("vault-double-wrapped-server.pcap")
        ],
        "the same connection in the client pod's and the server pod's capture"
    );
    let web = group(&doc, "web");
    assert_eq!(
        class_flows(&web["outbound"]),
        json!({"istio-mtls": 3, "double-wrapped": 1})
    );
}

#[test]
fn by_workload_and_by_service() {
    let (_, doc, _) = posture(&with_context(&["--by", "workload"]));
    assert_eq!(doc["by"], "workload");
    let cart = group(&doc, "shop/cart");
    assert_eq!(
        (cart["workload"].as_str(), cart["service"].as_str()),
        (Some("cart"), Some("cart"))
    );
    assert_eq!(cart["dataplane"], "sidecar");
    assert_eq!(group(&doc, "legacy/batch")["dataplane"], "none");
    let vault = group(&doc, "vault/vault");
    assert_eq!(vault["dataplane"], "sidecar", "a native sidecar counts");
    assert_eq!(
        vault["policy"],
        json!({"mode": "STRICT", "source": "vault/vault-strict-except-api",
               "exceptions": [{"workload": "vault/vault", "port": 8443, "mode": "PERMISSIVE",
                               "source": "vault/vault-strict-except-api"}]})
    );
    assert_eq!(
        group(&doc, "reports/reporter")["verdict"],
        "policy-mismatch"
    );
    let (_, doc, _) = posture(&with_context(&["--by", "service"]));
    let reporter = group(&doc, "reports/reporter");
    assert_eq!(reporter["service"], "reporter");
    assert_eq!(reporter["verdicts"], json!(["policy-mismatch", "bypassed"]));
}

#[test]
fn disable_policy_with_mtls_on_the_wire_is_a_policy_mismatch() {
    let pa = std::fs::read_to_string(path("peerauthentications.json")).unwrap();
    let mut v: Value = serde_json::from_str(&pa).unwrap();
    v["items"].as_array_mut().unwrap().push(json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "shop"},
        "spec": {"mtls": {"mode": "DISABLE"}}
    }));
    let f = temp_file(v.to_string().as_bytes());
    let mut args = all_captures();
    args.extend([
        "--pods".into(),
        path("pods.json"),
        "--policies".into(),
        f.path().to_str().unwrap().into(),
    ]);
    let (_, doc, _) = posture(&args);
    let shop = group(&doc, "shop");
    assert_eq!(shop["verdicts"], json!(["policy-mismatch", "would-break"]));
    let m = one_finding(&doc, "policy-mismatch", "shop");
    assert!(
        m["summary"]
            .as_str()
            .unwrap()
            .contains("shop/default says DISABLE, but 1 flow of mesh mTLS was accepted"),
        "{}",
        m["summary"]
    );
    assert_eq!(m["flows"][0]["posture_class"], "istio-mtls");
}

#[test]
fn without_context_the_wire_attributes_and_says_what_it_cannot() {
    let (code, doc, _) = posture(&all_captures());
    assert_eq!(code, Some(0));
    assert_eq!(
        doc["context"],
        json!({"pods": null, "services": null, "policies": null})
    );
    let names: Vec<&str> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments", "reports", "shop", "vault"]);
    // Plaintext to cart is attributed by the Istio SNI of the mTLS flow to the same IP.
    let shop = group(&doc, "shop");
    assert_eq!(shop["verdict"], "would-break");
    assert_eq!(shop["policy"], Value::Null);
    assert_eq!(
        one_finding(&doc, "would-break", "shop")["peers"][0]["client"],
        "10.244.3.30"
    );
    // Without pods, port 9090's exclusion is unknown: plaintext there would break.
    assert_eq!(group(&doc, "reports")["verdict"], "would-break");
    let strangers: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "unattributed-clients")
        .collect();
    assert_eq!(strangers.len(), 1);
    assert_eq!(strangers[0]["flows_total"], 8);
    assert_eq!(strangers[0]["flows"].as_array().unwrap().len(), 8);
    let s = strangers[0]["summary"].as_str().unwrap();
    assert!(
        s.contains("2 client addresses") && s.contains("10.244.1.10, 10.244.3.30"),
        "{s}"
    );
}

#[test]
fn unattributed_servers_are_listed() {
    // A plaintext flow to an address nothing names.
    let c = ([10, 9, 0, 1], 40000);
    let s = ([192, 0, 2, 80], 80);
    let pcap_bytes = pcap(
        1,
        &[
            tcp(c, s, 0, 0, SYN, b""),
            tcp(s, c, 0, 1, SYN | ACK, b""),
            tcp(c, s, 1, 1, ACK, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
            tcp(s, c, 1, 34, ACK, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
    );
    let f = temp_file(&pcap_bytes);
    let (code, doc, _) = posture(&[f.path().to_str().unwrap().to_string()]);
    assert_eq!(code, Some(0));
    assert_eq!(doc["totals"]["unattributed_flows"], 1);
    assert_eq!(doc["groups"], json!([]));
    let u: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "unattributed")
        .collect();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0]["severity"], "info");
    assert_eq!(u[0]["flows"][0]["server"], "192.0.2.80:80");
    // The gate without --namespace checks every flow, attributed or not.
    let out = posture_raw(
        &[
            f.path().to_str().unwrap().into(),
            "--require".into(),
            "mtls".into(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    // With --namespace, unattributed flows are not checked, and the gate says so.
    let (code, doc, _) = posture(&[
        f.path().to_str().unwrap().into(),
        "--require".into(),
        "mtls".into(),
        "-n".into(),
        "shop".into(),
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(doc["gate"]["unattributed_flows"], 1);
    assert_eq!(doc["gate"]["checked_flows"], 0);
}

/// `analyze --format jsonl` of each capture into a temporary file.
fn jsonl_of(capture: &str, dir: &tempfile::TempDir) -> String {
    let out = run(&["analyze", "--format", "jsonl", capture], None);
    assert!(out.status.success());
    let name = std::path::Path::new(capture)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let p: PathBuf = dir.path().join(format!("{name}.jsonl"));
    std::fs::write(&p, &out.stdout).unwrap();
    p.to_str().unwrap().to_string()
}

fn without_inputs(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("inputs");
    doc
}

#[test]
fn flow_records_merge_into_the_same_posture_as_the_captures() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl: Vec<String> = all_captures().iter().map(|c| jsonl_of(c, &dir)).collect();
    let (_, at_once, _) = posture(&with_context(&["--require", "mtls"]));
    let mut args = jsonl.clone();
    args.extend(context());
    args.extend(["--require".into(), "mtls".into()]);
    let (code, merged, err) = posture(&args);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        merged["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["flow-records"; 5]
    );
    assert_eq!(without_inputs(merged), without_inputs(at_once.clone()));
    // Any mix, in any order: captures and records.
    let mut mixed = vec![
        jsonl[4].clone(),
        all_captures()[0].clone(),
        jsonl[2].clone(),
    ];
    mixed.extend([all_captures()[3].clone(), jsonl[1].clone()]);
    mixed.extend(context());
    mixed.extend(["--require".into(), "mtls".into()]);
    let (_, mixed_doc, _) = posture(&mixed);
    assert_eq!(without_inputs(mixed_doc), without_inputs(at_once.clone()));
    // Two separate captures' records on standard input, concatenated.
    let mut both = std::fs::read(&jsonl[0]).unwrap();
    both.extend(std::fs::read(&jsonl[1]).unwrap());
    let mut a = vec!["--format".to_string(), "json".into(), "-".into()];
    a.extend(context());
    let out = posture_raw(&a, Some(&both));
    assert!(out.status.success());
    let from_stdin: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut two = vec![all_captures()[0].clone(), all_captures()[1].clone()];
    two.extend(context());
    let (_, two_captures, _) = posture(&two);
    assert_eq!(without_inputs(from_stdin), without_inputs(two_captures));
}

#[test]
fn a_capture_on_stdin_is_analyzed() {
    let bytes = std::fs::read(path("payments-strict.pcap")).unwrap();
    let mut a = vec!["--format".to_string(), "json".into(), "-".into()];
    a.extend(context());
    let out = posture_raw(&a, Some(&bytes));
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["inputs"][0]["kind"], "capture");
    assert_eq!(group(&doc, "payments")["verdict"], "strict-enforced");
}

fn gate(extra: &[&str]) -> Output {
    let mut a = with_context(&["--require", "mtls"]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(["--format".into(), "json".into()]);
    posture_raw(&a, None)
}

#[test]
fn gate_exit_codes() {
    // vault: only mesh mTLS (double-wrapped) comes in.
    assert_eq!(gate(&["-n", "vault"]).status.code(), Some(0));
    assert_eq!(
        gate(&["-n", "vault", "--forbid", "plaintext,double-wrapped"])
            .status
            .code(),
        Some(1)
    );
    // payments: the plaintext client was reset; it counts as failed.
    assert_eq!(gate(&["-n", "payments"]).status.code(), Some(0));
    assert_eq!(
        gate(&["-n", "payments", "--forbid", "plaintext,failed"])
            .status
            .code(),
        Some(1)
    );
    // shop: plaintext accepted; the offending flows are listed on stderr.
    let out = gate(&["-n", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "mtlscope: gate failed: 2 flows of a forbidden class (plaintext) into shop"
        ),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("shop-permissive.pcap frame"))
            .count(),
        2,
        "{err}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["gate"]["passed"], false);
    assert_eq!(doc["gate"]["violations_total"], 2);
    assert_eq!(doc["gate"]["checked_flows"], 3);
    assert_eq!(doc["namespaces"], json!(["shop"]));
    assert_eq!(
        doc["groups"].as_array().unwrap().len(),
        1,
        "--namespace limits the groups"
    );
    // --allow by CIDR or by workload lets them through.
    for allow in ["10.244.3.0/24", "legacy/batch", "legacy/*", "shop/cart"] {
        let out = gate(&["-n", "shop", "--allow", allow]);
        assert_eq!(out.status.code(), Some(0), "--allow {allow}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["gate"]["allowed_flows"], 2, "--allow {allow}");
    }
    // Every namespace: shop and reports accept plaintext.
    let out = gate(&[]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["gate"]["violations_total"], 3);
    // No gate: 0 whatever the posture.
    let out = posture_raw(&with_context(&["--format", "json"]), None);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn usage_and_input_errors_exit_2() {
    let caps = all_captures();
    let c = caps[0].as_str();
    for (args, needle) in [
        (vec!["posture", c, "--forbid", "failed"], "--require"),
        (
            vec!["posture", c, "--require", "mtls", "--allow", "batch"],
            "--allow",
        ),
        (
            vec!["posture", c, "--require", "mtls", "--forbid", "istio-mtls"],
            "unknown class",
        ),
        (vec!["posture", c, "--require", "tls"], "invalid value"),
        (vec!["posture", c, "--by", "pod"], "invalid value"),
        (vec!["posture"], "required"),
    ] {
        let out = run(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // An unreadable input: the others are still assessed, the input error wins over
    // a failed gate.
    let garbage = temp_file(b"GET / HTTP/1.1\r\n\r\n");
    let mut args = vec![
        garbage.path().to_str().unwrap().to_string(),
        "/nonexistent/x.jsonl".into(),
    ];
    args.extend(with_context(&["--require", "mtls"]));
    let (code, doc, err) = posture(&args);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!(
            "{}: neither a capture (pcap, pcapng) nor flow records",
            garbage.path().display()
        )) && err.contains("/nonexistent/x.jsonl: cannot open"),
        "{err}"
    );
    assert_eq!(doc["inputs"][0]["kind"], "unreadable");
    assert_eq!(group(&doc, "shop")["verdict"], "would-break");
    assert_eq!(doc["gate"]["passed"], false);
    // A flow-record file with a bad line names the line.
    let dir = tempfile::tempdir().unwrap();
    let good = jsonl_of(&caps[1], &dir);
    let mut text = std::fs::read_to_string(&good).unwrap();
    text.push_str("{\"type\":\"flow\",\"capture\":\"x\"}\n");
    let bad = temp_file(text.as_bytes());
    let out = posture_raw(&[bad.path().to_str().unwrap().into()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().count();
    assert!(
        err.contains(&format!("line {line}: missing field `client`")),
        "{err}"
    );
    // Records of a capture that was read only in part.
    let partial = format!(
        "{}{{\"type\":\"summary\",\"capture\":\"cut.pcap\",\"error\":\"truncated: …\"}}\n",
        std::fs::read_to_string(&good).unwrap()
    );
    let partial = temp_file(partial.as_bytes());
    let out = posture_raw(&[partial.path().to_str().unwrap().into()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the records of cut.pcap are partial"));
}

#[test]
fn bad_context_files_name_the_file_and_the_problem() {
    let pods = std::fs::read_to_string(path("pods.json")).unwrap();
    let truncated = temp_file(&pods.as_bytes()[..pods.len() / 2]);
    let services = path("services.json");
    let bad_mode = temp_file(
        br#"{"apiVersion":"v1","kind":"List","items":[{"kind":"PeerAuthentication","metadata":{"name":"x","namespace":"y"},"spec":{"mtls":{"mode":"STRICTT"}}}]}"#,
    );
    for (flag, file, needle) in [
        (
            "--pods",
            truncated.path().to_str().unwrap().to_string(),
            "the JSON ends early (a partial file?): EOF while parsing",
        ),
        (
            "--pods",
            services.clone(),
            "items[0] is a Service, not a Pod (expected the output of `kubectl get pods -A -o json`)",
        ),
        (
            "--policies",
            bad_mode.path().to_str().unwrap().to_string(),
            "items[0].spec.mtls.mode: unknown mode \"STRICTT\"",
        ),
        ("--services", "/nonexistent/svc.json".into(), "cannot read"),
    ] {
        let args = [
            "posture".to_string(),
            path("shop-permissive.pcap"),
            flag.into(),
            file.clone(),
        ];
        let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        assert_eq!(out.status.code(), Some(2), "{flag} {file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("mtlscope: {file}: ")) && err.contains(needle),
            "{flag} {file}: {err}"
        );
        assert!(out.stdout.is_empty(), "no report on wrong context");
    }
}

#[test]
fn table_output_is_plain_when_piped() {
    let out = posture_raw(
        &with_context(&["--format", "table", "--require", "mtls"]),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    for needle in [
        "Posture by namespace — 5 inputs, 16 flows: 8 on the network (1 more seen twice), 7 pod-local legs",
        "would-break",
        "strict-enforced",
        "policy-mismatch",
        "STRICT would reset 1 client reaching shop without mesh mTLS: legacy/batch-7f9c6d5b4-q8wzn → :8080 (2 flows).",
        "Gate --require mtls (forbidden: plaintext) on all flows: FAILED, 3 violations",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn dot_output_is_valid_graphviz() {
    let out = posture_raw(&with_context(&["--format", "dot"]), None);
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph mtlscope_posture {") && dot.trim_end().ends_with('}'));
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
    for needle in [
        "subgraph \"cluster_",
        "label=\"shop\\nwould-break\"",
        "\"legacy/batch\" -> \"shop/cart\" [label=\"plaintext :8080\\n2 flows, 504 B\", color=\"#d62728\"",
        "\"web/frontend\" -> \"vault/vault\" [label=\"double-wrapped :8443",
    ] {
        assert!(dot.contains(needle), "{needle:?} not in:\n{dot}");
    }
    // Graphviz itself, when installed (CI installs it and sets MTLSCOPE_REQUIRE_DOT).
    let dot_bin = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match dot_bin {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(dot.as_bytes())
                .unwrap();
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "dot -Tsvg: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(String::from_utf8_lossy(&o.stdout).contains("<svg"));
        }
        Err(e) => assert!(
            std::env::var_os("MTLSCOPE_REQUIRE_DOT").is_none(),
            "graphviz's dot is required here: {e}"
        ),
    }
}

#[test]
fn html_report_is_self_contained() {
    let out = posture_raw(
        &with_context(&["--format", "html", "--require", "mtls"]),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for bad in ["<script", "src=", "href=", "<link", "@import", "url(http"] {
        assert!(!html.contains(bad), "external or active content: {bad}");
    }
    for needle in [
        "<svg xmlns=\"http://www.w3.org/2000/svg\"",
        "shop · would-break",
        "ip.addr==10.244.3.30",
        "Gate --require mtls",
        "legacy/batch-7f9c6d5b4-q8wzn",
    ] {
        assert!(html.contains(needle), "{needle:?} missing");
    }
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
}

/// Every key of the JSON document, recursively, except the keys of `classes` maps
/// (class names, documented in their own list).
fn keys(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                if k != "classes" {
                    keys(x, out);
                } else if let Value::Object(c) = x {
                    for y in c.values() {
                        keys(y, out);
                    }
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn every_posture_field_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/posture.md"),
    )
    .expect("docs/posture.md");
    let mut all = std::collections::BTreeSet::new();
    for extra in [vec!["--require", "mtls"], vec!["--by", "workload"]] {
        let (_, v, _) = posture(&with_context(&extra));
        keys(&v, &mut all);
    }
    let (_, v, _) = posture(&all_captures());
    keys(&v, &mut all);
    for k in all {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/posture.md does not document `{k}`"
        );
    }
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    // A pseudo-terminal from util-linux `script`, when there is one.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let cmd = format!(
        "{} posture {} --format table",
        bin(),
        path("shop-permissive.pcap")
    );
    let on_tty = |no_color: Option<&str>| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().expect("script");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = on_tty(None);
    assert!(
        coloured.contains("\x1b[") && coloured.contains("would-break"),
        "{coloured}"
    );
    assert!(!on_tty(Some("1")).contains('\x1b'));
}

#[test]
fn the_scenario_captures_of_one_namespace_merge_into_one_posture() {
    // captures/scenarios/: httpbin in namespace bar, captured once PERMISSIVE (a plaintext
    // client and an mTLS client) and once STRICT (the plaintext client reset).
    let dir = captures().join("scenarios");
    let files: Vec<String> = ["permissive-namespace.pcap", "strict-namespace.pcap"]
        .iter()
        .map(|f| dir.join(f).to_str().unwrap().to_string())
        .collect();
    if !std::path::Path::new(&files[0]).exists() {
        return;
    }
    let (code, doc, _) = posture(&files);
    assert_eq!(code, Some(0));
    let bar = group(&doc, "bar");
    assert_eq!(bar["verdicts"], json!(["would-break", "strict-enforced"]));
    assert_eq!(
        class_flows(&bar["inbound"]),
        json!({"plaintext": 1, "istio-mtls": 2, "failed": 1})
    );
    let f = one_finding(&doc, "strict-enforced", "bar");
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .starts_with("STRICT reset 1 plaintext connection from 1 client: 10.244.3.30 → :8080"),
        "{}",
        f["summary"]
    );
}
