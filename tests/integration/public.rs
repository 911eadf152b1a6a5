//! Agreement with tshark on the public captures (`../shared/captures-public`, or the
//! folder named by `MTLSCOPE_SHARED`): every scored field at 99 % or better, no crash.

use std::path::PathBuf;
use std::process::Command;

use crate::support::bin;

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("MTLSCOPE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.join("tools/score-truth").exists().then_some(dir)
}

#[test]
fn agrees_with_tshark_on_the_public_captures() {
    let Some(dir) = shared() else {
        eprintln!("public captures not found (set MTLSCOPE_SHARED); agreement not checked");
        assert!(
            std::env::var_os("MTLSCOPE_REQUIRE_PUBLIC").is_none(),
            "MTLSCOPE_REQUIRE_PUBLIC is set"
        );
        return;
    };
    let caps = dir.join("captures-public");
    let out = Command::new("python3")
        .arg(dir.join("tools/score-truth"))
        .args(["--truth", caps.join("truth.jsonl").to_str().unwrap()])
        .args(["--streams", caps.join("streams.jsonl").to_str().unwrap()])
        .args([
            "--min",
            "0.99",
            "--show",
            "50",
            "--",
            bin(),
            "analyze",
            "--format",
            "jsonl",
        ])
        .output()
        .expect("run score-truth with python3");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "agreement below 99 % or a crash:\n{text}"
    );
    assert!(text.contains("0 crashes"));
}

/// Regression: `zeek/ssl-and-ssh-using-sslh.pcap` multiplexes SSH and TLS on port 443.
/// tshark labels the SSH connection "SSL Continuation Data" (its streams.jsonl says
/// `tls: true`); the bytes are `SSH-2.0-OpenSSH_6.9`, so it is SSH and not TLS.
#[test]
fn ssh_on_port_443_is_not_tls() {
    let Some(dir) = shared() else { return };
    let (flows, _) = crate::support::analyze(
        &dir.join("captures-public/zeek/ssl-and-ssh-using-sslh.pcap"),
        &[],
    );
    let ssh = flows
        .iter()
        .find(|f| f["client"] == "192.168.2.144:49641")
        .expect("the SSH flow");
    assert_eq!(
        (ssh["app_protocol"].as_str(), ssh["tls"].is_null()),
        (Some("ssh"), true)
    );
    let tls = flows
        .iter()
        .find(|f| f["client"] == "192.168.2.144:49643")
        .expect("the TLS flow");
    assert_eq!(tls["app_protocol"], "tls");
}

/// Regression: after a HelloRetryRequest the server's compatibility ChangeCipherSpec must
/// not hide the real ServerHello (suricata-verify bug-5758, zeek tls/hrr.pcap); and a
/// client CCS arriving inside the server's flight must not hide the client's Finished
/// (zeek ldap-starttls).
#[test]
fn tls13_compatibility_ccs_does_not_end_the_plaintext_handshake() {
    let Some(dir) = shared() else { return };
    for (file, cipher) in [
        ("suricata-verify/bug-5758__input.pcap", "0x1302"),
        ("zeek/tls__hrr.pcap", "0x1302"),
        ("zeek/ldap__ldap-starttls.pcap", "0x1302"),
    ] {
        let (flows, _) = crate::support::analyze(&dir.join("captures-public").join(file), &[]);
        let f = flows
            .iter()
            .find(|f| !f["tls"].is_null())
            .expect("a TLS flow");
        assert_eq!(
            (f["tls"]["cipher"].as_str(), f["handshake"].as_str()),
            (Some(cipher), Some("complete")),
            "{file}"
        );
    }
}

/// No TCP stream in which tshark found TLS is called plaintext.
#[test]
fn no_public_tls_flow_is_called_plaintext() {
    let Some(dir) = shared() else { return };
    let caps = dir.join("captures-public");
    let streams: Vec<serde_json::Value> = std::fs::read_to_string(caps.join("streams.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut files: Vec<&str> = streams
        .iter()
        .filter(|s| s["tls"] == true)
        .filter_map(|s| s["file"].as_str())
        .collect();
    files.dedup();
    let mut checked = 0;
    for file in files {
        let (flows, _) = crate::support::analyze(&caps.join(file), &[]);
        for s in streams
            .iter()
            .filter(|s| s["file"] == file && s["tls"] == true)
        {
            let ends = [
                s["initiator"].as_str().unwrap(),
                s["responder"].as_str().unwrap(),
            ];
            if let Some(f) = flows.iter().find(|f| {
                ends.contains(&f["client"].as_str().unwrap())
                    && ends.contains(&f["server"].as_str().unwrap())
            }) {
                assert_ne!(
                    f["class"], "plaintext",
                    "{file}: {} -> {}",
                    f["client"], f["server"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked} TLS streams checked");
}
