//! Human output: one row per flow, printed as soon as the flow is decided.
//!
//! Columns have fixed widths computed once from the output width (the terminal's, or
//! the configured one), so rows can be written one at a time while a stream is read; a
//! value that does not fit is cut with `…`. Control characters in names taken from the
//! traffic (SNI, ALPN) are shown as `?`, never sent to the terminal.

use std::io::{self, Write};

use super::{FlowRecord, Summary};

/// Column headers of the flow table.
const HEADER: [&str; 9] = [
    "frame", "client", "server", "proto", "class", "sni", "alpn", "version", "alerts",
];

/// Width used when neither a width is given nor a terminal is found.
const FALLBACK_WIDTH: u16 = 160;
/// Spaces between columns.
const GAP: usize = 2;

fn cells(r: &FlowRecord) -> [String; 9] {
    let tls = r.tls.as_ref();
    let dash = || "-".to_string();
    [
        r.first_frame.to_string(),
        r.client.clone(),
        r.server.clone(),
        r.app_protocol.unwrap_or("-").to_string(),
        r.class.to_string(),
        tls.and_then(|t| t.sni.clone()).unwrap_or_else(dash),
        tls.and_then(|t| {
            let offered = t.alpn_offered.as_ref()?.join(",");
            Some(match &t.alpn_selected {
                Some(sel) => format!("{offered} → {sel}"),
                None => offered,
            })
        })
        .unwrap_or_else(dash),
        tls.and_then(|t| t.version_name.clone().or_else(|| t.version.clone()))
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
    ]
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

/// Writes flow rows one at a time under a header, with widths fixed up front.
#[derive(Debug)]
pub struct TableWriter {
    widths: [usize; 9],
    header_done: bool,
}

impl TableWriter {
    /// A table `width` columns wide (None: the terminal's width).
    pub fn new(width: Option<u16>) -> TableWriter {
        let total = width
            .or_else(|| comfy_table::Table::new().width())
            .unwrap_or(FALLBACK_WIDTH);
        TableWriter {
            widths: widths(usize::from(total)),
            header_done: false,
        }
    }

    fn line(&self, out: &mut dyn Write, cells: &[String; 9]) -> io::Result<()> {
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
        self.line(out, &cells(r))
    }
}

/// Column widths for a total width: fixed columns get what their usual values need, the
/// rest is shared by SNI, ALPN and alerts; on a narrow terminal the endpoints give way
/// first (down to `10.244.1.10:8080`), then lines wrap.
fn widths(total: usize) -> [usize; 9] {
    // frame, client, server, proto, class, -, -, version, -.
    let mut w = [7, 21, 21, 8, 12, 0, 0, 8, 0];
    let gaps = GAP * (w.len() - 1);
    let want_rest = 40;
    let fixed = |w: &[usize; 9]| w.iter().sum::<usize>() + gaps;
    while total.saturating_sub(fixed(&w)) < want_rest && w[1] > 16 {
        w[1] -= 1;
        w[2] -= 1;
    }
    let rest = total.saturating_sub(fixed(&w)).max(want_rest - 10);
    let alerts = (rest / 5).max(6);
    let alpn = (rest - alerts) * 2 / 5;
    w[5] = rest - alerts - alpn;
    w[6] = alpn;
    w[8] = alerts;
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

/// Writes the flows of one capture and its summary line.
pub fn write(
    out: &mut dyn Write,
    records: &[FlowRecord],
    s: &Summary,
    width: Option<u16>,
) -> io::Result<()> {
    let mut t = TableWriter::new(width);
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
        for total in [120, 160, 250] {
            let w = widths(total);
            assert_eq!(w.iter().sum::<usize>() + GAP * 8, total, "{w:?}");
            assert!(w[5] >= 16 && w[6] >= 8 && w[8] >= 6, "{total}: {w:?}");
        }
        let narrow = widths(80);
        assert_eq!(narrow[1], 16);
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
