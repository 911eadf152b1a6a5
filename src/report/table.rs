//! Human output: one row per flow, printed as soon as the flow is decided.
//!
//! Columns have fixed widths computed once from the output width (the terminal's, or
//! the configured one), so rows can be written one at a time while a stream is read; a
//! value that does not fit is cut with `…`. A row takes two lines: the second holds the
//! server under the client. With `--explain`, the flow's evidence, paired leg, diagnosis
//! and fix follow its row. Control characters in names taken from the traffic (SNI,
//! ALPN) are shown as `?`, never sent to the terminal.

use std::io::{self, Write};

use super::{FlowRecord, Summary};

/// Column headers of the flow table.
const HEADER: [&str; 11] = [
    "frame",
    "client → server",
    "leg",
    "proto",
    "class",
    "handshake",
    "sni",
    "alpn",
    "version",
    "alerts",
    "diagnosis",
];

/// Width used when neither a width is given nor a terminal is found.
const FALLBACK_WIDTH: u16 = 160;
/// Spaces between columns.
const GAP: usize = 2;

/// The cells of a row's first line, and the server (shown under the client).
fn cells(r: &FlowRecord) -> ([String; 11], String) {
    let tls = r.tls.as_ref();
    let dash = || "-".to_string();
    let cells = [
        r.first_frame.to_string(),
        r.client.to_string(),
        r.leg.to_string(),
        r.app_protocol.unwrap_or("-").to_string(),
        format!("{} ({})", r.class, r.confidence),
        r.handshake.to_string(),
        tls.and_then(|t| t.sni.clone()).unwrap_or_else(dash),
        tls.and_then(|t| {
            let offered = t.alpn_offered.as_ref()?.join(",");
            Some(match &t.alpn_selected {
                Some(sel) => format!("{offered} → {sel}"),
                None => offered,
            })
        })
        .unwrap_or_else(dash),
        tls.and_then(|t| {
            t.version_name
                .as_ref()
                .map(|n| n.to_string())
                .or_else(|| t.version.map(|v| v.to_string()))
        })
        .unwrap_or_else(dash),
        tls.map(|t| {
            t.alerts
                .iter()
                .map(|a| {
                    format!(
                        "{}:{}",
                        a.from,
                        a.name
                            .map_or_else(|| a.description.to_string(), str::to_string)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(dash),
        r.diagnosis
            .as_ref()
            .map_or_else(dash, |d| d.code.to_string()),
    ];
    (cells, format!("→ {}", r.server))
}

/// `s` in exactly `width` columns: cut with `…`, or padded (except in the last column).
fn fit(out: &mut String, s: &str, width: usize, pad: bool) {
    let n = s.chars().count();
    let safe = |c: char| if c.is_control() { '?' } else { c };
    if n <= width {
        out.extend(s.chars().map(safe));
        if pad {
            out.extend(std::iter::repeat_n(' ', width - n));
        }
    } else {
        out.extend(s.chars().take(width.saturating_sub(1)).map(safe));
        out.push('…');
    }
}

/// The evidence, pairing and diagnosis of a flow, for `--explain`.
fn explain(out: &mut dyn Write, r: &FlowRecord) -> io::Result<()> {
    writeln!(
        out,
        "frame {} {} → {}: {} ({}), {} leg",
        r.first_frame, r.client, r.server, r.class, r.confidence, r.leg
    )?;
    writeln!(out, "  evidence: {}", r.evidence.join(", "))?;
    if let Some(p) = &r.paired_with {
        writeln!(
            out,
            "  paired with frame {} {} → {} ({})",
            p.first_frame, p.client, p.server, p.link
        )?;
    }
    if let Some(d) = &r.diagnosis {
        writeln!(out, "  diagnosis {}: {}", d.code, d.summary)?;
        writeln!(out, "  fix: {}", d.fix)?;
    }
    Ok(())
}

/// Writes flow rows one at a time under a header, with widths fixed up front.
#[derive(Debug)]
pub struct TableWriter {
    widths: [usize; 11],
    header_done: bool,
    explain: bool,
}

impl TableWriter {
    /// A table `width` columns wide (None: the terminal's width); with `explain`, each
    /// row is followed by the flow's evidence, pairing and diagnosis.
    pub fn new(width: Option<u16>, explain: bool) -> TableWriter {
        let total = width
            .or_else(|| comfy_table::Table::new().width())
            .unwrap_or(FALLBACK_WIDTH);
        TableWriter {
            widths: widths(usize::from(total)),
            header_done: false,
            explain,
        }
    }

    fn line(&self, out: &mut dyn Write, cells: &[String; 11]) -> io::Result<()> {
        let mut s = String::with_capacity(self.widths.iter().sum::<usize>() + 32);
        for (i, (c, w)) in cells.iter().zip(self.widths).enumerate() {
            let last = i + 1 == cells.len();
            fit(&mut s, c, w, !last);
            if !last {
                s.push_str(&" ".repeat(GAP));
            }
        }
        writeln!(out, "{}", s.trim_end())
    }

    /// Writes one flow (and the header before the first).
    pub fn row(&mut self, out: &mut dyn Write, r: &FlowRecord) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            self.line(out, &HEADER.map(str::to_string))?;
        }
        let (first, server) = cells(r);
        self.line(out, &first)?;
        let mut second: [String; 11] = Default::default();
        second[1] = server;
        self.line(out, &second)?;
        if self.explain {
            explain(out, r)?;
        }
        Ok(())
    }
}

/// Column widths for a total width: fixed columns get what their usual values need, the
/// rest is shared by SNI, ALPN, alerts and diagnosis; on a narrow terminal the endpoints
/// give way first (down to `10.244.1.10:8080`), then lines wrap.
fn widths(total: usize) -> [usize; 11] {
    // frame, client→server, leg, proto, class, handshake, -, -, version, -, -.
    let mut w = [7, 23, 9, 8, 20, 10, 0, 0, 8, 0, 0];
    let gaps = GAP * (w.len() - 1);
    let want_rest = 56;
    let fixed = |w: &[usize; 11]| w.iter().sum::<usize>() + gaps;
    while total.saturating_sub(fixed(&w)) < want_rest && w[1] > 18 {
        w[1] -= 1;
    }
    let rest = total.saturating_sub(fixed(&w)).max(want_rest - 16);
    let diagnosis = (rest / 4).max(9);
    let alerts = (rest / 6).max(6);
    let alpn = (rest - diagnosis - alerts) * 2 / 5;
    w[6] = rest - diagnosis - alerts - alpn;
    w[7] = alpn;
    w[9] = alerts;
    w[10] = diagnosis;
    w
}

/// Writes the one-line summary of a capture.
pub fn summary(out: &mut dyn Write, summary: &Summary) -> io::Result<()> {
    let classes: Vec<String> = summary
        .classes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let undecoded: u64 = summary.undecoded.values().sum();
    let mut extra = String::new();
    if summary.evicted_flows > 0 {
        extra.push_str(&format!(", {} flows evicted", summary.evicted_flows));
    }
    if let Some(d) = summary.dropped {
        extra.push_str(&format!(
            ", {} packets dropped by the kernel, {} by the interface",
            d.kernel, d.interface
        ));
    }
    if summary.interrupted {
        extra.push_str(", interrupted");
    }
    writeln!(
        out,
        "{}: {} packets, {} flows ({}), {} undecoded packets{extra}",
        summary.capture,
        summary.packets,
        summary.flows,
        if classes.is_empty() {
            "none".to_string()
        } else {
            classes.join(", ")
        },
        undecoded
    )
}

/// Writes the flows of one capture (with their explanations when `explain_flows` is
/// set) and its summary line.
pub fn write(
    out: &mut dyn Write,
    records: &[FlowRecord],
    s: &Summary,
    width: Option<u16>,
    explain_flows: bool,
) -> io::Result<()> {
    let mut t = TableWriter::new(width, explain_flows);
    for r in records {
        t.row(out, r)?;
    }
    summary(out, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_fill_the_line() {
        for total in [140, 160, 250] {
            let w = widths(total);
            assert_eq!(w.iter().sum::<usize>() + GAP * 10, total, "{w:?}");
            assert!(w[6] >= 14 && w[7] >= 8 && w[9] >= 6, "{total}: {w:?}");
        }
        let narrow = widths(100);
        assert_eq!(narrow[1], 18);
    }

    #[test]
    fn long_and_hostile_values_are_cut_and_cleaned() {
        let mut s = String::new();
        fit(&mut s, "abc\x1b[2Jdefghij", 8, true);
        assert_eq!(s, "abc?[2J…");
        let mut s = String::new();
        fit(&mut s, "ab", 4, true);
        assert_eq!(s, "ab  ");
    }
}
