//! The posture for people: one table row per group (inbound and outbound on two lines),
//! then the findings with the flows behind them, then the gate. Colour only when asked
//! (the caller decides: stdout is a terminal and NO_COLOR is unset).

use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use super::doc::{Document, Finding, FlowRef, GroupDoc, Traffic};

/// Flows listed per finding (the JSON document has more).
const FLOWS_SHOWN: usize = 10;
/// Narrower terminals than this are taken for unknown sizes.
const MIN_WIDTH: u16 = 40;
/// Width used when the terminal's is unknown.
const FALLBACK_WIDTH: u16 = 160;

/// Human-readable byte count (1024-based).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn verdict_color(v: &str) -> Color {
    match v {
        "policy-mismatch" | "would-break" | "bypassed" => Color::Red,
        "strict-enforced" => Color::Yellow,
        "strict-ready" => Color::Green,
        _ => Color::DarkGrey,
    }
}

fn severity_ansi(s: &str) -> &'static str {
    match s {
        "high" => "\x1b[1;31m",
        "medium" => "\x1b[1;33m",
        "low" => "\x1b[36m",
        _ => "\x1b[90m",
    }
}

fn paint(text: &str, ansi: &str, color: bool) -> String {
    if color {
        format!("{ansi}{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn class_cell(t: &Traffic, names: &[&str]) -> String {
    let n: u64 = names
        .iter()
        .filter_map(|c| t.classes.get(c))
        .map(|c| c.flows)
        .sum();
    if n == 0 { "-".into() } else { n.to_string() }
}

fn two(f: impl Fn(&Traffic) -> String, g: &GroupDoc) -> String {
    format!("{}\n{}", f(&g.inbound), f(&g.outbound))
}

fn group_row(g: &GroupDoc, color: bool) -> Vec<Cell> {
    let mut vcell = Cell::new(g.verdicts.join("\n"));
    if color {
        vcell = vcell.fg(verdict_color(g.verdict));
    }
    let policy = g.policy.as_ref().map_or_else(
        || "-".to_string(),
        |p| {
            let mut s = format!("{}\n{}", p.mode, p.source);
            for e in &p.exceptions {
                s.push_str(&format!("\n{}:{} {}", e.workload, e.port, e.mode));
            }
            s
        },
    );
    let name = match g.dataplane {
        Some(d) => format!("{}\n[{d}]", g.name),
        None => g.name.clone(),
    };
    let share = g.mesh_mtls_share.map_or_else(
        || "-".to_string(),
        |s| {
            let bytes = s
                .bytes
                .map_or("-".to_string(), |b| format!("{:.0}%", b * 100.0));
            format!("{:.0}% / {bytes}", s.flows * 100.0)
        },
    );
    vec![
        Cell::new(name),
        vcell,
        Cell::new(policy),
        Cell::new("in\nout"),
        Cell::new(two(|t| t.flows.to_string(), g)),
        Cell::new(two(|t| human_bytes(t.bytes), g)),
        Cell::new(two(|t| class_cell(t, &["plaintext"]), g)),
        Cell::new(two(
            |t| class_cell(t, &["istio-mtls", "linkerd-mtls", "consul-mtls"]),
            g,
        )),
        Cell::new(two(|t| class_cell(t, &["app-tls"]), g)),
        Cell::new(two(|t| class_cell(t, &["double-wrapped"]), g)),
        Cell::new(two(|t| class_cell(t, &["failed"]), g)),
        Cell::new(two(|t| class_cell(t, &["unknown", "telemetry"]), g)),
        Cell::new(two(|t| t.peers.to_string(), g)),
        Cell::new(share),
    ]
}

/// One flow on one line: capture, frame, endpoints, class, diagnosis, names.
pub fn flow_line(f: &FlowRef) -> String {
    let names = match (&f.client_name, &f.server_name) {
        (None, None) => String::new(),
        (c, s) => format!(
            " ({} → {})",
            c.as_deref().unwrap_or("?"),
            s.as_deref().unwrap_or("?")
        ),
    };
    let seen = if f.also_in.is_empty() {
        String::new()
    } else {
        let others: Vec<String> = f
            .also_in
            .iter()
            .map(|s| format!("{} frame {}", s.capture, s.first_frame))
            .collect();
        format!("; also {}", others.join(", "))
    };
    format!(
        "{} frame {}  {} → {}  {}{}{names}{seen}",
        f.capture,
        f.first_frame,
        f.client,
        f.server,
        f.posture_class,
        f.diagnosis
            .as_ref()
            .map_or(String::new(), |d| format!(" [{d}]")),
    )
}

fn finding(out: &mut dyn Write, f: &Finding, color: bool) -> io::Result<()> {
    let sev = paint(
        &format!("{:<6}", f.severity.to_uppercase()),
        severity_ansi(f.severity),
        color,
    );
    writeln!(
        out,
        "{sev} {}{}",
        f.kind,
        f.group.as_ref().map_or(String::new(), |g| format!("  {g}"))
    )?;
    writeln!(out, "       {}", f.summary)?;
    writeln!(out, "       fix: {}", f.fix)?;
    for fl in f.flows.iter().take(FLOWS_SHOWN) {
        writeln!(out, "         {}", flow_line(fl))?;
    }
    if f.flows_total as usize > FLOWS_SHOWN {
        writeln!(
            out,
            "         … and {} more (--format json lists them)",
            f.flows_total as usize - FLOWS_SHOWN
        )?;
    }
    Ok(())
}

/// Writes the document as tables and text.
pub fn write(
    out: &mut dyn Write,
    doc: &Document,
    width: Option<u16>,
    color: bool,
) -> io::Result<()> {
    let t = &doc.totals;
    writeln!(
        out,
        "Posture by {} — {} input{}, {} flows: {} on the network{}, {} pod-local leg{} (not counted){}",
        doc.by,
        doc.inputs.len(),
        if doc.inputs.len() == 1 { "" } else { "s" },
        t.flows,
        t.network_flows,
        if t.duplicate_flows > 0 {
            format!(" ({} more seen twice)", t.duplicate_flows)
        } else {
            String::new()
        },
        t.pod_local_flows,
        if t.pod_local_flows == 1 { "" } else { "s" },
        if t.unattributed_flows > 0 {
            format!(", {} not attributed", t.unattributed_flows)
        } else {
            String::new()
        }
    )?;
    for i in doc.inputs.iter().filter(|i| i.error.is_some()) {
        writeln!(
            out,
            "{}",
            paint(
                &format!(
                    "input {}: {}",
                    i.path,
                    i.error.as_deref().unwrap_or_default()
                ),
                "\x1b[33m",
                color
            )
        )?;
    }
    if !doc.groups.is_empty() {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec![
                doc.by,
                "verdict",
                "policy",
                "",
                "flows",
                "bytes",
                "plain",
                "mTLS",
                "app-tls",
                "double",
                "failed",
                "other",
                "peers",
                "mTLS share\nflows / bytes",
            ]);
        if color {
            table.enforce_styling();
        }
        match width {
            Some(w) => {
                table.set_width(w);
            }
            // A terminal that reports no usable size (a pty without one): a fixed width.
            None if table.width().is_none_or(|w| w < MIN_WIDTH) => {
                table.set_width(FALLBACK_WIDTH);
            }
            None => {}
        }
        for g in &doc.groups {
            table.add_row(group_row(g, color));
        }
        writeln!(out, "{table}")?;
    } else {
        writeln!(out, "No flows attributed to a namespace.")?;
    }
    if !doc.findings.is_empty() {
        writeln!(out, "\nFindings (most severe first)")?;
        for f in &doc.findings {
            finding(out, f, color)?;
        }
    }
    if let Some(g) = &doc.gate {
        let scope = if g.namespaces.is_empty() {
            "all flows".to_string()
        } else {
            format!("namespaces {}", g.namespaces.join(", "))
        };
        let status = if g.passed {
            paint("PASSED", "\x1b[1;32m", color)
        } else {
            paint("FAILED", "\x1b[1;31m", color)
        };
        writeln!(
            out,
            "\nGate --require {} (forbidden: {}) on {scope}: {status}, {} violation{} in {} flows checked{}{}",
            g.require,
            g.forbid.join(", "),
            g.violations_total,
            if g.violations_total == 1 { "" } else { "s" },
            g.checked_flows,
            if g.allowed_flows > 0 {
                format!(", {} allowed by --allow", g.allowed_flows)
            } else {
                String::new()
            },
            if g.unattributed_flows > 0 {
                format!(
                    ", {} flows not checked (namespace unknown)",
                    g.unattributed_flows
                )
            } else {
                String::new()
            }
        )?;
        for v in &g.violations {
            writeln!(out, "  {}", flow_line(v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn paint_only_when_asked() {
        assert_eq!(paint("x", "\x1b[31m", false), "x");
        assert_eq!(paint("x", "\x1b[31m", true), "\x1b[31mx\x1b[0m");
    }
}
