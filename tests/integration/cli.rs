use crate::support::*;

fn sample_pcap() -> Vec<u8> {
    let c = ([10, 0, 0, 1], 40001);
    let s = ([10, 0, 0, 2], 443);
    pcap(
        1,
        &[
            tcp(c, s, 0, 0, SYN, b""),
            tcp(s, c, 0, 1, SYN | ACK, b""),
            tcp(
                c,
                s,
                1,
                1,
                ACK,
                &client_hello_record("cli.example.test", &["h2"], 0),
            ),
        ],
    )
}

#[test]
fn garbage_file_is_an_error_naming_it_and_other_files_still_run() {
    let good = temp_file(&sample_pcap());
    let bad = temp_file(b"this is not a capture at all, just some text\n");
    let out = run(
        &[
            "analyze",
            "--format",
            "jsonl",
            bad.path().to_str().unwrap(),
            good.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(bad.path().to_str().unwrap()) && err.contains("not a pcap"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line per failed file: {err}");
    let fl = flows(&out.stdout);
    assert_eq!(fl.len(), 1);
    assert_eq!(fl[0]["tls"]["sni"], "cli.example.test");
}

#[test]
fn truncated_file_reports_what_came_before_the_cut() {
    let mut bytes = sample_pcap();
    bytes.truncate(bytes.len() - 20);
    let f = temp_file(&bytes);
    let out = run(
        &["analyze", "--format", "jsonl", f.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    let all = jsonl(&out.stdout);
    assert_eq!(all.iter().filter(|o| o["type"] == "flow").count(), 1);
    let summary = all.last().unwrap();
    assert_eq!(summary["packets"], 2);
    assert!(summary["error"].as_str().unwrap().contains("truncated"));
}

#[test]
fn unknown_link_type_is_an_error() {
    let f = temp_file(&pcap(147, &[vec![0u8; 40]]));
    let out = run(
        &["analyze", "--format", "jsonl", f.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported link type 147"));
}

#[test]
fn missing_and_empty_files_are_errors() {
    let empty = temp_file(b"");
    let out = run(
        &[
            "analyze",
            "/nonexistent/x.pcap",
            empty.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/x.pcap: cannot open") && err.contains("empty input"),
        "{err}"
    );
}

#[test]
fn stdin_gives_the_same_records_as_the_file() {
    let bytes = sample_pcap();
    let f = temp_file(&bytes);
    let from_file = run(
        &["analyze", "--format", "jsonl", f.path().to_str().unwrap()],
        None,
    );
    let from_stdin = run(&["analyze", "--format", "jsonl", "-"], Some(&bytes));
    assert!(from_stdin.status.success());
    let strip = |o: &[u8]| {
        jsonl(o)
            .into_iter()
            .map(|mut v| {
                v["capture"] = serde_json::Value::Null;
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&from_file.stdout), strip(&from_stdin.stdout));
    assert_eq!(flows(&from_stdin.stdout)[0]["capture"], "-");
}

#[test]
fn output_is_identical_for_any_thread_count() {
    let inputs: Vec<String> = all_captures()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        inputs.len() >= 30,
        "captures/ should hold the real-stack captures"
    );
    let run_with = |threads: &str| {
        let mut args = vec!["analyze", "--format", "jsonl", "--threads", threads];
        args.extend(inputs.iter().map(String::as_str));
        let out = run(&args, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let one = run_with("1");
    assert!(flows(&one).len() >= 5);
    for n in ["2", "3", "8"] {
        assert!(one == run_with(n), "--threads {n} differs from --threads 1");
    }
}

/// One file at a time, so that its threads share it (with several files, each file gets
/// a thread): the reader hands workers frames in the file's mapped windows.
#[test]
fn output_of_one_file_is_identical_for_any_thread_count() {
    let mut shared = 0;
    for path in all_captures() {
        let path = path.display().to_string();
        let run_with = |threads: &str| {
            let out = run(
                &["analyze", "--format", "jsonl", "--threads", threads, &path],
                None,
            );
            assert!(out.status.success(), "{path}");
            out.stdout
        };
        let one = run_with("1");
        for n in ["2", "3"] {
            assert!(one == run_with(n), "{path}: --threads {n} differs");
        }
        shared += usize::from(flows(&one).len() >= 2);
    }
    assert!(shared >= 20, "captures with flows to share: {shared}");
}

#[test]
fn table_output_has_a_row_per_flow() {
    let f = temp_file(&sample_pcap());
    let out = run(
        &["analyze", "--format", "table", f.path().to_str().unwrap()],
        None,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cli.example.test") && text.contains("10.0.0.1:40001"),
        "{text}"
    );
    assert!(
        text.lines().all(|l| l.chars().count() <= 160),
        "fits the width:\n{text}"
    );
}

#[test]
fn bad_flags_exit_2() {
    let out = run(&["analyze", "--threads", "0", "x.pcap"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
    let out = run(&["analyze", "--retransmit-window", "65537", "x.pcap"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retransmit-window"));
}

#[cfg(not(feature = "live"))]
#[test]
fn live_capture_without_the_feature_says_how_to_get_it() {
    let out = run(&["analyze", "-i", "lo"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features live"));
}

#[test]
fn interface_and_files_do_not_mix() {
    let out = run(&["analyze", "-i", "lo", "x.pcap"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_prints_evidence_and_the_fix() {
    let path = captures().join("tls-alert-unknown-ca-lo.pcap");
    let out = run(
        &[
            "analyze",
            "--format",
            "table",
            "--explain",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("untrusted-ca") && text.contains("evidence: client_hello"),
        "{text}"
    );
    assert!(
        text.contains("fix: Give the client the server's CA"),
        "{text}"
    );
    let plain = run(
        &["analyze", "--format", "table", path.to_str().unwrap()],
        None,
    );
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("evidence:"));
}
