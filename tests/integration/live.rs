//! Live capture on `lo` (feature `live`): real traffic made here is captured and analyzed.
//! Skipped, with a message, when the process may not capture (CAP_NET_RAW); when it may,
//! anything wrong fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::support::*;

/// One TLS-looking connection to `port`: a ClientHello with SNI `live.example.test`,
/// answered by a handshake record, then closed by both sides.
fn connect(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let _ = c.write_all(&[0x16, 3, 3, 0, 4, 0x0e, 0, 0, 0]);
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(&client_hello_record("live.example.test", &["istio"], 0))
        .expect("send ClientHello");
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
    drop(s);
    server.join().expect("server thread");
}

#[test]
fn captures_real_traffic_on_loopback() {
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let filter = format!("tcp port {port}");
    let mut m = Live::start(&["analyze", "--format", "jsonl", "-i", "lo", "-f", &filter]);
    // Connect until a flow comes out: the first connections may precede the capture.
    let mut got = None;
    for _ in 0..20 {
        if let Ok(Some(_)) = m.child.try_wait() {
            break;
        }
        connect(port);
        if let Ok(line) = m.lines.recv_timeout(std::time::Duration::from_secs(3)) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
            // A summary this early means the capture could not start.
            if v["type"] == "flow" {
                got = Some(v);
            }
            break;
        }
    }
    let Some(flow) = got else {
        let _ = m.child.kill();
        let (_, _, err) = m.finish();
        if err.contains("no permission") {
            eprintln!("live capture not permitted here (needs CAP_NET_RAW): skipped\n{err}");
            assert!(
                std::env::var_os("MTLSCOPE_REQUIRE_LIVE").is_none(),
                "MTLSCOPE_REQUIRE_LIVE is set: {err}"
            );
            return;
        }
        panic!("no flow captured on lo: {err}");
    };
    m.signal("INT");
    let (status, rest, err) = m.finish();
    assert!(status.success(), "{err}");
    assert_eq!(flow["server"], format!("127.0.0.1:{port}"));
    assert_eq!(flow["client_basis"], "tcp_syn");
    assert_eq!(flow["tls"]["sni"], "live.example.test");
    assert_eq!(flow["tls"]["alpn_offered"], serde_json::json!(["istio"]));
    assert_eq!(flow["end"], "closed");
    let summary = rest.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["capture"], "live:lo");
    assert_eq!(summary["interrupted"], true);
    assert!(summary["flows"].as_u64().unwrap() >= 1);
    assert_eq!(summary["dropped"]["kernel"], 0, "{summary}");
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let out = run(&["analyze", "-i", "no-such-if0"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no interface named \"no-such-if0\"") || err.contains("no permission"),
        "{err}"
    );
}

#[test]
fn interfaces_are_listed() {
    let out = run(&["analyze", "--list-interfaces"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("lo ")), "{text}");
}
