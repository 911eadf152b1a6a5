use crate::support::*;

fn lcg(seed: &mut u64) -> u8 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*seed >> 56) as u8
}

#[test]
fn a_flood_of_half_open_flows_is_bounded_and_counted() {
    let s = ([10, 0, 0, 2], 443);
    // 20 000 SYNs in 20 s of capture time: all open at once (no idle timeout helps).
    let frames: Vec<(u32, u32, Vec<u8>)> = (0..20_000u32)
        .map(|i| {
            let syn = tcp(
                ([10, 1, (i >> 8) as u8, i as u8], 1024 + (i % 60_000) as u16),
                s,
                i,
                0,
                SYN,
                b"",
            );
            (1_700_000_000 + i / 1000, (i % 1000) * 1000, syn)
        })
        .collect();
    let f = temp_file(&pcap_at(1, &frames));
    let (flows, summary) = analyze(f.path(), &["--max-flows", "500", "--threads", "2"]);
    assert_eq!(flows.len(), 20_000);
    assert_eq!(summary["flows"], 20_000);
    assert!(
        summary["evicted_flows"].as_u64().unwrap() > 18_000,
        "{summary}"
    );
    assert!(flows.iter().all(|f| f["state"] == "syn_sent"));
}

#[test]
fn random_frames_never_crash_the_pipeline() {
    let mut seed = 42u64;
    for link in [1u32, 113, 276, 101, 0] {
        let frames: Vec<Vec<u8>> = (0..3000)
            .map(|i| {
                let len = (i * 7) % 200;
                let mut f: Vec<u8> = (0..len).map(|_| lcg(&mut seed)).collect();
                // Make a share of them look like IPv4/TCP so deeper layers are reached.
                if link == 101 && f.len() > 40 && i % 2 == 0 {
                    f[0] = 0x45;
                    f[9] = 6;
                }
                f
            })
            .collect();
        let file = temp_file(&pcap(link, &frames));
        let out = run(
            &[
                "analyze",
                "--format",
                "jsonl",
                file.path().to_str().unwrap(),
            ],
            None,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains("panicked"),
            "link {link}: {err}"
        );
        let summary = jsonl(&out.stdout).pop().unwrap();
        assert_eq!(summary["packets"], 3000);
    }
}

#[test]
fn tls_garbage_after_a_handshake_header_is_an_anomaly_not_a_crash() {
    let c = ([10, 0, 0, 1], 5555);
    let s = ([10, 0, 0, 2], 443);
    let mut seed = 7u64;
    let mut frames = vec![tcp(c, s, 0, 0, SYN, b""), tcp(s, c, 0, 1, SYN | ACK, b"")];
    let mut seq = 1;
    // A record that claims to hold a 291-byte ClientHello, with random contents, then more garbage.
    for i in 0..50 {
        let mut p: Vec<u8> = (0..300).map(|_| lcg(&mut seed)).collect();
        if i == 0 {
            p[..11].copy_from_slice(&[0x16, 3, 1, 1, 39, 1, 0, 1, 35, 3, 3]);
            p[43] = 200; // a session id length that overruns the message
        }
        frames.push(tcp(c, s, seq, 1, ACK, &p));
        seq += p.len() as u32;
    }
    let f = temp_file(&pcap(1, &frames));
    let (flows, _) = analyze(f.path(), &[]);
    assert_eq!(flows.len(), 1);
    let kinds = anomaly_kinds(&flows[0]);
    assert!(kinds.iter().any(|k| k == "tls_malformed"), "{kinds:?}");
    assert_eq!(flows[0]["tls"]["sni"], serde_json::Value::Null);
}
