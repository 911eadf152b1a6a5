//! Human output: one table row per flow, sized to the terminal.

use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

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

fn row(r: &FlowRecord) -> Vec<String> {
    let tls = r.tls.as_ref();
    let dash = || "-".to_string();
    vec![
        r.first_frame.to_string(),
        format!("{}\n→ {}", r.client, r.server),
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
        r.diagnosis
            .as_ref()
            .map_or_else(dash, |d| d.code.to_string()),
    ]
}

/// The evidence and diagnosis of each flow, for `--explain`.
fn explain(out: &mut dyn Write, records: &[FlowRecord]) -> io::Result<()> {
    for r in records {
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
    }
    Ok(())
}

/// Writes the flows of one capture, their explanations when `explain_flows` is set, and
/// a one-line summary.
pub fn write(
    out: &mut dyn Write,
    records: &[FlowRecord],
    summary: &Summary,
    width: Option<u16>,
    explain_flows: bool,
) -> io::Result<()> {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(HEADER);
    if let Some(w) = width {
        t.set_width(w);
    }
    for r in records {
        t.add_row(row(r));
    }
    if !records.is_empty() {
        writeln!(out, "{t}")?;
    }
    if explain_flows {
        explain(out, records)?;
    }
    let classes: Vec<String> = summary
        .classes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let undecoded: u64 = summary.undecoded.values().sum();
    writeln!(
        out,
        "{}: {} packets, {} flows ({}), {} undecoded packets",
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
