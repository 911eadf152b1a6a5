use crate::support::*;

const C: ([u8; 4], u16) = ([10, 244, 1, 10], 40000);
const S: ([u8; 4], u16) = ([10, 244, 2, 20], 8443);

/// Handshake (SYN, SYN-ACK, ACK) with the given initial sequence numbers.
fn open(isn_c: u32, isn_s: u32) -> Vec<Vec<u8>> {
    vec![
        tcp(C, S, isn_c, 0, SYN, b""),
        tcp(S, C, isn_s, isn_c.wrapping_add(1), SYN | ACK, b""),
        tcp(C, S, isn_c.wrapping_add(1), isn_s.wrapping_add(1), ACK, b""),
    ]
}

fn one_flow(frames: &[Vec<u8>]) -> serde_json::Value {
    let f = temp_file(&pcap(1, frames));
    let (flows, _) = analyze(f.path(), &[]);
    assert_eq!(flows.len(), 1, "{flows:#?}");
    flows.into_iter().next().unwrap()
}

/// Splits `rec` into `n` nearly equal pieces.
fn split(rec: &[u8], n: usize) -> Vec<&[u8]> {
    rec.chunks(rec.len().div_ceil(n)).collect()
}

#[test]
fn client_hello_over_three_segments_out_of_order_with_a_retransmission() {
    let ch = client_hello_record("split.example.test", &["h2", "http/1.1"], 2500);
    let parts = split(&ch, 3);
    let isn = 1000;
    let mut frames = open(isn, 5000);
    let off = |i: usize| isn + 1 + parts[..i].iter().map(|p| p.len() as u32).sum::<u32>();
    frames.push(tcp(C, S, off(2), 5001, ACK, parts[2]));
    frames.push(tcp(C, S, off(0), 5001, ACK, parts[0]));
    frames.push(tcp(C, S, off(0), 5001, ACK, parts[0]));
    frames.push(tcp(C, S, off(1), 5001, ACK, parts[1]));
    let f = one_flow(&frames);
    assert_eq!(f["client"], "10.244.1.10:40000");
    assert_eq!(f["server"], "10.244.2.20:8443");
    assert_eq!(f["tls"]["sni"], "split.example.test");
    assert_eq!(
        f["tls"]["alpn_offered"],
        serde_json::json!(["h2", "http/1.1"])
    );
    assert_eq!(
        f["tls"]["client_hello_frame"], 7,
        "the ClientHello completes in the last segment"
    );
    assert_eq!(f["anomalies"], serde_json::json!([]));
}

#[test]
fn sequence_numbers_wrap_inside_the_client_hello() {
    let ch = client_hello_record("wrap.example.test", &["istio"], 3000);
    let isn = u32::MAX - 1500;
    let mut frames = open(isn, 7);
    let mut seq = isn.wrapping_add(1);
    for p in split(&ch, 3) {
        frames.push(tcp(C, S, seq, 8, ACK, p));
        seq = seq.wrapping_add(p.len() as u32);
    }
    let f = one_flow(&frames);
    assert_eq!(f["tls"]["sni"], "wrap.example.test");
}

#[test]
fn capture_started_mid_connection() {
    let ch = client_hello_record("mid.example.test", &[], 0);
    let f = one_flow(&[tcp(C, S, 777, 1, ACK, &ch)]);
    assert_eq!(f["state"], "midstream");
    assert_eq!(f["client"], "10.244.1.10:40000");
    assert_eq!(f["client_basis"], "client_hello");
    assert_eq!(f["anomalies"][0]["kind"], "midstream");
    assert_eq!(f["tls"]["sni"], "mid.example.test");
    assert_eq!(f["tls"]["alpn_offered"], serde_json::json!([]));
}

#[test]
fn the_retransmission_window_is_the_last_bytes_read() {
    // A ClientHello of some 1.3 KB sent twice, the copy differing near its start: beyond
    // the default window of 512 bytes, within one of 2048.
    let ch = client_hello_record("window.example.test", &[], 1200);
    assert!(ch.len() > 1200);
    let mut forged = ch.clone();
    forged[20] ^= 0xff;
    let mut frames = open(0, 0);
    frames.push(tcp(C, S, 1, 1, ACK, &ch));
    frames.push(tcp(C, S, 1, 1, ACK, &forged));
    let f = temp_file(&pcap(1, &frames));
    for (extra, kinds) in [
        (&[][..], vec![]),
        (
            &["--retransmit-window", "2048"][..],
            vec!["overlap_conflict"],
        ),
    ] {
        let (flows, _) = analyze(f.path(), extra);
        assert_eq!(flows[0]["tls"]["sni"], "window.example.test");
        assert_eq!(anomaly_kinds(&flows[0]), kinds, "{extra:?}");
    }
}

#[test]
fn conflicting_overlap_keeps_the_first_copy() {
    let ch = client_hello_record("first.example.test", &[], 0);
    let mut forged = ch.clone();
    let at = forged.len() - 3;
    forged[at] ^= 0xff;
    let mut frames = open(0, 0);
    frames.push(tcp(C, S, 1, 1, ACK, &ch));
    frames.push(tcp(C, S, 1, 1, ACK, &forged));
    let f = one_flow(&frames);
    assert_eq!(f["tls"]["sni"], "first.example.test");
    let kinds = anomaly_kinds(&f);
    assert_eq!(kinds, ["overlap_conflict"]);
    assert_eq!(f["anomalies"][0]["from"], "client");
}

#[test]
fn lost_segment_is_a_gap_with_missed_bytes_and_analysis_continues() {
    let ch = client_hello_record("gap.example.test", &[], 0);
    let mut frames = open(0, 100);
    frames.push(tcp(C, S, 1, 101, ACK, &ch));
    // Server: an application data record of 300 bytes whose middle segment is missing,
    // then a plaintext alert.
    let mut app = vec![0x17, 3, 3, 1, 44];
    app.extend_from_slice(&[0xaa; 300]);
    frames.push(tcp(S, C, 101, 1, ACK, &app[..100]));
    frames.push(tcp(S, C, 301, 1, ACK, &app[200..]));
    frames.push(tcp(
        S,
        C,
        101 + app.len() as u32,
        1,
        ACK,
        &[0x15, 3, 3, 0, 2, 2, 40],
    ));
    let f = one_flow(&frames);
    let gap = f["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "gap")
        .expect("gap anomaly");
    assert_eq!(
        (gap["from"].as_str(), gap["bytes"].as_u64()),
        (Some("server"), Some(100))
    );
    assert_eq!(f["tls"]["alerts"][0]["description"], 40);
    assert_eq!(f["tls"]["alerts"][0]["from"], "server");
}

#[test]
fn a_new_syn_on_the_same_ports_starts_a_new_flow() {
    let mut frames = open(10, 20);
    frames.push(tcp(C, S, 11, 21, ACK, b"GET / HTTP/1.1\r\n\r\n"));
    frames.push(tcp(C, S, 29, 21, ACK | FIN, b""));
    frames.push(tcp(S, C, 21, 30, ACK | FIN, b""));
    frames.extend(open(9_000_000, 20));
    let f = temp_file(&pcap(1, &frames));
    let (flows, _) = analyze(f.path(), &[]);
    assert_eq!(flows.len(), 2);
    assert_eq!(
        (flows[0]["state"].as_str(), flows[0]["end"].as_str()),
        (Some("closed"), Some("port_reuse"))
    );
    assert_eq!(flows[0]["app_protocol"], "http/1.x");
    assert_eq!(flows[1]["first_frame"], 7);
}

#[test]
fn reset_during_the_handshake() {
    let mut frames = open(0, 0);
    frames.push(tcp(
        C,
        S,
        1,
        1,
        ACK,
        &client_hello_record("rst.example.test", &[], 0),
    ));
    frames.push(tcp(S, C, 1, 1, RST | ACK, b""));
    let f = one_flow(&frames);
    assert_eq!(f["state"], "reset");
    assert_eq!(f["tls"]["version"], serde_json::Value::Null);
}

#[test]
fn snaplen_cut_is_counted_and_the_rest_still_parses() {
    let ch = client_hello_record("cut.example.test", &[], 0);
    let mut frames = open(0, 0);
    frames.push(tcp(C, S, 1, 1, ACK, &ch));
    let mut cut = tcp(S, C, 1, 1 + ch.len() as u32, ACK, &[0x17; 400]);
    cut.truncate(cut.len() - 300);
    frames.push(cut);
    frames.push(tcp(S, C, 401, 1, ACK, &[0x15, 3, 3, 0, 2, 1, 0]));
    let f = one_flow(&frames);
    let kinds = anomaly_kinds(&f);
    assert!(kinds.iter().any(|k| k == "truncated_packets"), "{kinds:?}");
    assert_eq!(f["bytes"]["server"], 407, "wire bytes, not captured bytes");
    assert_eq!(f["tls"]["sni"], "cut.example.test");
}
