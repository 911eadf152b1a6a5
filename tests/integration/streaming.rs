//! Streams: flows printed while the input is still open, a capture clock that follows the
//! wall clock on a quiet pipe, Ctrl-C, a stream cut mid-record, `--early`, and output that
//! is the same for any thread count and for a file or the same bytes on stdin; and the
//! process running without transparent huge pages.
//!
//! No test here measures time. Where a test waits for output, [`STUCK`] only guards against
//! hanging forever.

use serde_json::Value;

use crate::support::*;

const BASE: u32 = 1_700_000_000;
const S: ([u8; 4], u16) = ([10, 0, 0, 2], 443);
const A: ([u8; 4], u16) = ([10, 0, 0, 1], 40001);
const B: ([u8; 4], u16) = ([10, 0, 0, 3], 40002);

/// Flow A: a whole TLS connection at BASE s, closed cleanly; then flow B's SYN at BASE+5 s
/// (after A's close has been quiet for the 1 s grace). A is decided; B stays open.
fn a_then_b_syn() -> Vec<u8> {
    let ch = client_hello_record("stream.example.test", &["h2"], 0);
    let n = ch.len() as u32;
    let t = |f: Vec<u8>| (BASE, 0, f);
    pcap_at(
        1,
        &[
            t(tcp(A, S, 0, 0, SYN, b"")),
            t(tcp(S, A, 100, 1, SYN | ACK, b"")),
            t(tcp(A, S, 1, 101, ACK, b"")),
            t(tcp(A, S, 1, 101, ACK, &ch)),
            t(tcp(S, A, 101, 1 + n, ACK, b"")),
            t(tcp(A, S, 1 + n, 101, ACK | FIN, b"")),
            t(tcp(S, A, 101, 2 + n, ACK | FIN, b"")),
            t(tcp(A, S, 2 + n, 102, ACK, b"")),
            (BASE + 5, 0, tcp(B, S, 7, 0, SYN, b"")),
        ],
    )
}

fn check_a(first: &Value) {
    assert_eq!(first["type"], "flow", "{first}");
    assert_eq!(first["client"], "10.0.0.1:40001");
    assert_eq!(first["end"], "closed");
    assert_eq!(first["state"], "closed");
    assert_eq!(first["packets"]["client"], 5);
    assert_eq!(first["tls"]["sni"], "stream.example.test");
}

fn check_rest(rest: &[Value]) {
    assert_eq!(rest.len(), 2, "{rest:#?}");
    assert_eq!(rest[0]["client"], "10.0.0.3:40002");
    assert_eq!(rest[0]["end"], "end_of_input");
    assert_eq!(rest[1]["type"], "summary");
    assert_eq!(rest[1]["flows"], 2);
    assert_eq!(rest[1]["error"], Value::Null);
}

#[test]
fn a_flow_is_printed_when_decided_while_stdin_stays_open() {
    let mut m = Live::start(&["analyze", "--format", "jsonl", "-"]);
    m.feed(&a_then_b_syn());
    // stdin is still open: A must come out now, not at the end of input.
    check_a(&m.next_json());
    m.close_stdin();
    let (status, rest, err) = m.finish();
    assert!(status.success(), "{err}");
    check_rest(&rest);
}

/// The process runs without transparent huge pages (src/main.rs, `no_huge_pages`): the
/// kernel's own report of a running analysis says so.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
#[test]
fn the_process_runs_without_transparent_huge_pages() {
    let mut m = Live::start(&["analyze", "--format", "jsonl", "-"]);
    m.feed(&a_then_b_syn());
    check_a(&m.next_json()); // the analysis is running: main's setup is done
    let status = std::fs::read_to_string(format!("/proc/{}/status", m.child.id()))
        .expect("read the process's status");
    let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"));
    m.close_stdin();
    let (exit, _, err) = m.finish();
    assert!(exit.success(), "{err}");
    // Kernels before 5.0 do not report it.
    if let Some(thp) = thp {
        assert_eq!(thp.trim(), "0", "{status}");
    }
}

/// The issue's own check: a capture piped through `tcpdump -r … -w -`.
#[test]
fn a_tcpdump_stream_prints_flows_before_the_input_ends() {
    let file = temp_file(&a_then_b_syn());
    let dump = std::process::Command::new("tcpdump")
        .args(["-r", file.path().to_str().unwrap(), "-w", "-"])
        .output();
    let Some(dump) = dump.ok().filter(|o| o.status.success()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "tcpdump is required in CI (.ci/run installs it)"
        );
        eprintln!("tcpdump not available: skipped");
        return;
    };
    let mut m = Live::start(&["analyze", "--format", "jsonl", "-"]);
    m.feed(&dump.stdout);
    check_a(&m.next_json());
    m.close_stdin();
    let (status, rest, err) = m.finish();
    assert!(status.success(), "{err}");
    check_rest(&rest);
}

#[test]
fn on_a_quiet_stream_idle_flows_end_by_the_wall_clock() {
    let mut m = Live::start(&["analyze", "--format", "jsonl", "--idle-timeout", "1", "-"]);
    m.feed(&pcap_at(1, &[(BASE, 0, tcp(B, S, 7, 0, SYN, b""))]));
    // No more packets will come: the wall clock must end the flow.
    let f = m.next_json();
    assert_eq!(
        (f["client"].as_str(), f["end"].as_str()),
        (Some("10.0.0.3:40002"), Some("idle_timeout"))
    );
    let (status, rest, _) = m.finish();
    assert!(status.success());
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["flows"], 1);
}

#[test]
fn sigint_prints_what_was_seen_and_exits_cleanly() {
    let mut m = Live::start(&["analyze", "--format", "jsonl", "-"]);
    m.feed(&a_then_b_syn());
    check_a(&m.next_json()); // everything fed has been read
    m.signal("INT");
    let (status, rest, err) = m.finish();
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(rest.len(), 2, "{rest:#?}");
    assert_eq!(rest[0]["client"], "10.0.0.3:40002");
    assert_eq!(rest[1]["interrupted"], true);
    assert_eq!(rest[1]["packets"], 9);
}

#[test]
fn a_stream_cut_mid_record_is_a_warning() {
    let mut bytes = a_then_b_syn();
    bytes.truncate(bytes.len() - 10);
    let out = run(&["analyze", "--format", "jsonl", "-"], Some(&bytes));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a cut stream is not an error: {err}");
    assert!(
        err.contains("warning") && err.contains("truncated"),
        "{err}"
    );
    let all = jsonl(&out.stdout);
    let summary = all.last().unwrap();
    assert_eq!(summary["error"], Value::Null);
    assert!(summary["warning"].as_str().unwrap().contains("truncated"));
    assert_eq!(summary["packets"], 8);
    assert_eq!(flows(&out.stdout).len(), 1, "the flow before the cut");
}

#[test]
fn early_prints_on_handshake_then_the_final_record() {
    let (flows, summary) = analyze(&captures().join("openssl-tls13-lo.pcap"), &["--early"]);
    assert_eq!(flows.len(), 2, "{flows:#?}");
    assert_eq!(flows[0]["end"], "handshake");
    assert_eq!(flows[0]["first_frame"], flows[1]["first_frame"]);
    assert_eq!(flows[0]["tls"]["version"], "0x0304");
    assert_ne!(flows[1]["end"], "handshake");
    assert!(
        flows[0]["last_frame"].as_u64() < flows[1]["last_frame"].as_u64(),
        "the early record is written before the flow ends"
    );
    assert_eq!(summary["flows"], 1, "early records are not counted");
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// 2400 overlapping flows that end in every way: closed by FINs, reset, idle, half
/// closed then idle, reused ports, midstream, and open at the end.
fn many_flows() -> Vec<u8> {
    let mut seed = 5u64;
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new(); // (time in ms, frame)
    for i in 0..2400u32 {
        let start = u64::from(i) * 50;
        let c = (
            [10, 1 + (i % 7) as u8, (i >> 8) as u8, i as u8],
            20000 + (i % 40000) as u16,
        );
        let s = ([10, 96, 0, 1 + (i % 5) as u8], 443 + (i % 3) as u16 * 7637);
        let isn = lcg(&mut seed) as u32;
        let ch = client_hello_record(&format!("f{i}.example.test"), &["h2", "istio"], 0);
        let n = ch.len() as u32;
        let step = 20 + lcg(&mut seed) % 300;
        let mut pk = |k: u64, f: Vec<u8>| frames.push((start + k * step, f));
        let kind = i % 7;
        if kind != 5 {
            pk(0, tcp(c, s, isn, 0, SYN, b""));
            pk(1, tcp(s, c, 9, isn + 1, SYN | ACK, b""));
            pk(2, tcp(c, s, isn + 1, 10, ACK, &ch));
        } else {
            pk(0, tcp(c, s, isn, 10, ACK, &ch));
        }
        match kind {
            0 => {
                pk(3, tcp(c, s, isn + 1 + n, 10, ACK | FIN, b""));
                pk(4, tcp(s, c, 10, isn + 2 + n, ACK | FIN, b""));
                pk(5, tcp(c, s, isn + 2 + n, 11, ACK, b""));
            }
            1 => pk(3, tcp(s, c, 10, isn + 1 + n, RST | ACK, b"")),
            3 => pk(3, tcp(c, s, isn + 1 + n, 10, ACK | FIN, b"")),
            4 => pk(40, tcp(c, s, isn ^ 0x5555, 0, SYN, b"")),
            _ => {}
        }
    }
    frames.sort_by_key(|(t, _)| *t);
    let frames: Vec<(u32, u32, Vec<u8>)> = frames
        .into_iter()
        .map(|(t, f)| (BASE + (t / 1000) as u32, (t % 1000) as u32 * 1000, f))
        .collect();
    pcap_at(1, &frames)
}

#[test]
fn output_is_the_same_for_any_thread_count_and_for_stdin() {
    let bytes = many_flows();
    let file = temp_file(&bytes);
    let path = file.path().to_str().unwrap();
    let args = |t: &'static str| {
        [
            "analyze",
            "--format",
            "jsonl",
            "--idle-timeout",
            "20",
            "--threads",
            t,
        ]
    };
    let one = run(&[&args("1")[..], &[path]].concat(), None);
    assert!(one.status.success());
    let recs = flows(&one.stdout);
    assert_eq!(
        recs.len(),
        2400 + 2400 / 7 + 1,
        "every flow, and the reused ports' new flows"
    );
    let mut ends = std::collections::BTreeMap::new();
    for r in &recs {
        *ends
            .entry(r["end"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    for e in ["closed", "idle_timeout", "port_reuse", "end_of_input"] {
        assert!(
            ends.get(e).copied().unwrap_or(0) > 0,
            "no `{e}` end: {ends:?}"
        );
    }
    let first_frames: Vec<u64> = recs
        .iter()
        .map(|r| r["first_frame"].as_u64().unwrap())
        .collect();
    assert!(
        first_frames.windows(2).any(|w| w[0] > w[1]),
        "records follow decisions, not first frames"
    );
    for t in ["2", "3", "8"] {
        let out = run(&[&args(t)[..], &[path]].concat(), None);
        assert!(
            one.stdout == out.stdout,
            "--threads {t} differs from --threads 1"
        );
    }
    let stdin = run(&[&args("2")[..], &["-"]].concat(), Some(&bytes));
    let text = String::from_utf8_lossy(&one.stdout).replace(path, "-");
    assert!(
        text.as_bytes() == stdin.stdout,
        "stdin differs from the file"
    );
}
