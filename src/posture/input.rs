//! Flow records as posture reads them: JSON Lines from earlier `mtlscope analyze` runs, or
//! this process's own records turned into the same JSON, so that both paths are one.
//!
//! Reading is tolerant in the way `docs/flow-record.md` asks of consumers: unknown fields
//! and unknown record `type`s are ignored. A line that is not JSON, or a `flow` line without
//! one of the fields posture needs (`type`, `capture`, `client`, `server`, `class`, `leg`,
//! `first_frame`), is an error naming the line.

use std::io::BufRead;
use std::net::SocketAddr;

use serde::Deserialize;

/// Bytes per side, as in the flow record.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PerSide {
    /// Sent by the client.
    #[serde(default)]
    pub client: u64,
    /// Sent by the server.
    #[serde(default)]
    pub server: u64,
}

/// A diagnosis (`code` is what posture reads).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Diagnosis {
    /// Stable code, e.g. `strict-rejected-plaintext`.
    pub code: String,
    /// What happened.
    #[serde(default)]
    pub summary: Option<String>,
    /// The setting that fixes it.
    #[serde(default)]
    pub fix: Option<String>,
}

/// A SPIFFE identity from a visible certificate.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// The SPIFFE ID.
    #[serde(default)]
    pub uri: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub ns: Option<String>,
    /// Service account.
    #[serde(default)]
    pub sa: Option<String>,
}

/// Mesh details of the record.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Mesh {
    /// Service port from Istio's SNI.
    #[serde(default)]
    pub port: Option<u16>,
    /// Subset from Istio's SNI.
    #[serde(default)]
    pub subset: Option<String>,
    /// Service.
    #[serde(default)]
    pub service: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Service host.
    #[serde(default)]
    pub host: Option<String>,
    /// Client workload identity.
    #[serde(default)]
    pub client_identity: Option<Identity>,
    /// Server workload identity.
    #[serde(default)]
    pub server_identity: Option<Identity>,
}

/// The part of `tls` posture reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Tls {
    /// First SNI host name.
    #[serde(default)]
    pub sni: Option<String>,
}

/// The part of `http` posture reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Http {
    /// The Host header.
    #[serde(default)]
    pub host: Option<String>,
}

/// The other leg of the same request.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Pair {
    /// Its first frame.
    pub first_frame: u64,
    /// What the pair shows.
    #[serde(default)]
    pub link: Option<String>,
}

/// One `flow` record, owned.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Flow {
    /// `"flow"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Capture path as given to `analyze`.
    pub capture: String,
    /// Client endpoint text.
    pub client: String,
    /// Server endpoint text.
    pub server: String,
    /// Class.
    pub class: String,
    /// `network` or `pod-local`.
    pub leg: String,
    /// First frame.
    pub first_frame: u64,
    /// Time of the first packet.
    #[serde(default)]
    pub first_ts: Option<String>,
    /// Confidence of the class.
    #[serde(default)]
    pub confidence: Option<String>,
    /// Facts behind the class.
    #[serde(default)]
    pub evidence: Option<Vec<String>>,
    /// TLS handshake outcome.
    #[serde(default)]
    pub handshake: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub diagnosis: Option<Diagnosis>,
    /// Mesh details.
    #[serde(default)]
    pub mesh: Option<Mesh>,
    /// The other leg.
    #[serde(default)]
    pub paired_with: Option<Pair>,
    /// Payload bytes per side.
    #[serde(default)]
    pub bytes: Option<PerSide>,
    /// Packets per side.
    #[serde(default)]
    pub packets: Option<PerSide>,
    /// TLS facts.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Cleartext HTTP facts.
    #[serde(default)]
    pub http: Option<Http>,
}

impl Flow {
    /// Client endpoint, when it parses.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client.parse().ok()
    }

    /// Server endpoint, when it parses.
    pub fn server_addr(&self) -> Option<SocketAddr> {
        self.server.parse().ok()
    }

    /// Whether this is the network leg (anything but `pod-local`).
    pub fn is_network(&self) -> bool {
        self.leg != "pod-local"
    }

    /// Payload bytes in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.map_or(0, |b| b.client.saturating_add(b.server))
    }

    /// The diagnosis code, if any.
    pub fn diagnosis_code(&self) -> Option<&str> {
        self.diagnosis.as_ref().map(|d| d.code.as_str())
    }

    /// Whether `evidence` holds `item`.
    pub fn has_evidence(&self, item: &str) -> bool {
        self.evidence
            .as_ref()
            .is_some_and(|e| e.iter().any(|x| x == item))
    }

    /// Capture time of the first packet in microseconds since the epoch.
    pub fn first_micros(&self) -> Option<i64> {
        self.first_ts.as_deref().and_then(parse_rfc3339_micros)
    }

    /// Reads a flow record from its JSON object. The error says which field is wrong.
    pub fn from_value(v: serde_json::Value) -> Result<Flow, String> {
        let f: Flow = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if f.client_addr().is_none() {
            return Err(format!(
                "`client` is not an ip:port endpoint: {:?}",
                f.client
            ));
        }
        if f.server_addr().is_none() {
            return Err(format!(
                "`server` is not an ip:port endpoint: {:?}",
                f.server
            ));
        }
        Ok(f)
    }
}

/// What a flow-record file held besides its flows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// The `flow` records, in file order.
    pub flows: Vec<Flow>,
    /// Captures named by `summary` lines whose `error` was set: (capture, error).
    pub capture_errors: Vec<(String, String)>,
}

/// Reads JSON Lines flow records. Blank lines are skipped; records of other types are
/// ignored, except that a `summary` with an `error` is kept (that capture was read only in
/// part when the records were made). Errors name the 1-based line.
pub fn read_records(src: impl BufRead) -> Result<Records, String> {
    let mut out = Records::default();
    for (i, line) in src.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| format!("read error at line {n}: {e}"))?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("line {n}: not a JSON flow record: {e}"))?;
        let kind = v.get("type").and_then(|t| t.as_str());
        match kind {
            Some("flow") => out
                .flows
                .push(Flow::from_value(v).map_err(|e| format!("line {n}: {e}"))?),
            Some("summary") => {
                if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                    let capture = v
                        .get("capture")
                        .and_then(|c| c.as_str())
                        .unwrap_or("?")
                        .to_string();
                    out.capture_errors.push((capture, err.to_string()));
                }
            }
            Some(_) => {}
            None if v.is_object() => {
                return Err(format!("line {n}: a JSON object without a string `type`"));
            }
            None => return Err(format!("line {n}: not a JSON object")),
        }
    }
    Ok(out)
}

/// What the first bytes of an input say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A pcap or pcapng capture.
    Capture,
    /// JSON Lines flow records (the first non-blank byte is `{`).
    FlowRecords,
    /// Nothing at all.
    Empty,
    /// Neither.
    Unknown,
}

/// Tells a capture (pcap magic in either byte order and resolution, pcapng section
/// header) from JSON Lines by the first bytes. `head` should hold at least 4 bytes when
/// the input has them; for JSON, leading whitespace is skipped within `head`.
pub fn sniff(head: &[u8]) -> InputKind {
    const MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    if head.len() >= 4 && MAGICS.iter().any(|m| head[..4] == m[..]) {
        return InputKind::Capture;
    }
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => InputKind::FlowRecords,
        Some(_) => InputKind::Unknown,
        None if head.is_empty() => InputKind::Empty,
        None => InputKind::Unknown,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` (the flow record's format) to microseconds since
/// the epoch.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let micros = if frac.is_empty() {
        0
    } else {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut six: String = digits.chars().take(6).collect();
        while six.len() < 6 {
            six.push('0');
        }
        six.parse::<i64>().ok()?
    };
    // Days from civil (Howard Hinnant), proleptic Gregorian.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000) + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = r#"{"type":"flow","capture":"a.pcap","client":"10.0.0.1:4000","server":"[fd00::2]:80","class":"plaintext","leg":"network","first_frame":3,"first_ts":"2026-11-20T09:14:02.000001Z","brand_new_field":{"x":1},"bytes":{"client":10,"server":20}}"#;

    #[test]
    fn reads_flows_ignoring_unknown_fields_and_types() {
        let text = format!(
            "{FLOW}\n\n{{\"type\":\"begin\",\"x\":1}}\n{{\"type\":\"summary\",\"capture\":\"a.pcap\",\"error\":\"truncated\"}}\n"
        );
        let r = read_records(text.as_bytes()).unwrap();
        assert_eq!(r.flows.len(), 1);
        let f = &r.flows[0];
        assert_eq!(f.server_addr().unwrap().port(), 80);
        assert_eq!(f.total_bytes(), 30);
        assert_eq!(f.first_micros(), Some(1_795_166_042_000_001));
        assert_eq!(
            r.capture_errors,
            vec![("a.pcap".to_string(), "truncated".to_string())]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let missing = r#"{"type":"flow","capture":"a","client":"1.2.3.4:1","server":"1.2.3.4:2","class":"plaintext","first_frame":1}"#;
        let e = read_records(format!("{FLOW}\n{missing}\n").as_bytes()).unwrap_err();
        assert!(e.contains("line 2") && e.contains("`leg`"), "{e}");
        let e = read_records(&b"{\"type\":\"flow\",\"capt"[..]).unwrap_err();
        assert!(e.starts_with("line 1: not a JSON flow record"), "{e}");
        let bad_ep = FLOW.replace("10.0.0.1:4000", "10.0.0.1");
        let e = read_records(bad_ep.as_bytes()).unwrap_err();
        assert!(e.contains("`client`"), "{e}");
        let e = read_records(&b"[1,2]\n"[..]).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
    }

    #[test]
    fn sniffs_captures_and_json() {
        assert_eq!(sniff(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), InputKind::Capture);
        assert_eq!(sniff(&[0x0a, 0x0d, 0x0d, 0x0a]), InputKind::Capture);
        assert_eq!(sniff(&[0x4d, 0x3c, 0xb2, 0xa1]), InputKind::Capture);
        assert_eq!(sniff(b"  \n{\"type\""), InputKind::FlowRecords);
        assert_eq!(sniff(b"hello"), InputKind::Unknown);
        assert_eq!(sniff(b""), InputKind::Empty);
        assert_eq!(sniff(b"\n\n"), InputKind::Unknown);
    }

    #[test]
    fn parses_record_times() {
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(
            parse_rfc3339_micros("2000-02-29T00:00:01.5Z"),
            Some(951_782_401_500_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2000-02-29T00:00:01Z"),
            Some(951_782_401_000_000)
        );
        assert_eq!(parse_rfc3339_micros("2000-02-29 00:00:01Z"), None);
        assert_eq!(parse_rfc3339_micros("2000-13-29T00:00:01Z"), None);
        assert_eq!(parse_rfc3339_micros("2000-02-29T00:00:01.Z"), None);
    }
}
