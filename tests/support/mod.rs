//! Test helpers: run the binary, and build small synthetic pcaps for reassembly edges.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use etherparse::PacketBuilder;

/// Path of the mtlscope binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mtlscope")
}

/// The committed captures folder.
pub fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// Every capture file under `captures/` (top level and `scenarios/`), sorted.
pub fn all_captures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [captures(), captures().join("scenarios")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    out.sort();
    out
}

/// Runs `mtlscope` with `args`, feeding `stdin` if given.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mtlscope");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait")
}

/// Parses JSON Lines output into objects.
pub fn jsonl(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Flow records of a JSONL output.
pub fn flows(out: &[u8]) -> Vec<serde_json::Value> {
    jsonl(out)
        .into_iter()
        .filter(|o| o["type"] == "flow")
        .collect()
}

/// Analyzes `path` as JSONL with `extra` flags and returns (flows, summary).
pub fn analyze(path: &Path, extra: &[&str]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let p = path.to_str().expect("utf-8 path");
    let mut args = vec!["analyze", "--format", "jsonl"];
    args.extend_from_slice(extra);
    args.push(p);
    let out = run(&args, None);
    assert!(
        out.status.success(),
        "mtlscope failed on {p}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = jsonl(&out.stdout);
    let summary = all
        .iter()
        .rfind(|o| o["type"] == "summary")
        .cloned()
        .expect("summary line");
    (
        all.into_iter().filter(|o| o["type"] == "flow").collect(),
        summary,
    )
}

/// The `kind` of each anomaly of a flow record, in order.
pub fn anomaly_kinds(flow: &serde_json::Value) -> Vec<String> {
    flow["anomalies"].as_array().map_or_else(Vec::new, |a| {
        a.iter()
            .filter_map(|x| x["kind"].as_str().map(str::to_string))
            .collect()
    })
}

/// A classic little-endian microsecond pcap with link type `link`.
pub fn pcap(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&[2, 0, 4, 0]);
    for x in [0u32, 0, 65535, link] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for x in [
            1_700_000_000u32 + i as u32,
            0,
            f.len() as u32,
            f.len() as u32,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(f);
    }
    v
}

/// TCP flags for [`tcp`].
pub const SYN: u8 = 1;
/// ACK.
pub const ACK: u8 = 2;
/// FIN.
pub const FIN: u8 = 4;
/// RST.
pub const RST: u8 = 8;

/// An Ethernet/IPv4/TCP frame.
pub fn tcp(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 65535);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build packet");
    v
}

/// A TLS 1.3-style ClientHello record with `sni` and ALPN `alpn`, padded to `pad` extra
/// bytes (to make it span several segments, as post-quantum key shares do).
pub fn client_hello_record(sni: &str, alpn: &[&str], pad: usize) -> Vec<u8> {
    let mut ext = Vec::new();
    let mut put = |t: u16, body: &[u8]| {
        ext.extend_from_slice(&t.to_be_bytes());
        ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ext.extend_from_slice(body);
    };
    let mut sni_body = ((sni.len() + 3) as u16).to_be_bytes().to_vec();
    sni_body.push(0);
    sni_body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sni_body.extend_from_slice(sni.as_bytes());
    put(0, &sni_body);
    let mut list = Vec::new();
    for p in alpn {
        list.push(p.len() as u8);
        list.extend_from_slice(p.as_bytes());
    }
    let mut alpn_body = (list.len() as u16).to_be_bytes().to_vec();
    alpn_body.extend_from_slice(&list);
    put(16, &alpn_body);
    put(43, &[2, 3, 4]);
    put(21, &vec![0u8; pad]);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Writes `bytes` to a fresh temporary file and returns it (deleted on drop).
pub fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f
}
