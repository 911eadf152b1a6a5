//! A self-contained HTML report: one file, no scripts, no external assets. The service
//! graph is inline SVG laid out here (namespaces as columns ordered by who calls whom,
//! workloads stacked inside), followed by the groups, the findings with their flows
//! (capture, frame and a Wireshark display filter each) and the gate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Write};

use super::doc::{Document, Finding, FlowRef};
use super::dot::{class_color, verdict_color};
use super::table::human_bytes;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const NODE_W: f64 = 190.0;
const NODE_H: f64 = 30.0;
const NODE_GAP: f64 = 10.0;
const PAD: f64 = 12.0;
const HEAD: f64 = 30.0;
const COL_GAP: f64 = 150.0;
const NS_GAP: f64 = 24.0;
const MARGIN: f64 = 20.0;

struct Placed {
    x: f64,
    y: f64,
    h: f64,
}

/// Column of each namespace: sources left, their callees to the right (longest path,
/// cycles cut after as many rounds as there are namespaces).
fn columns(doc: &Document) -> BTreeMap<Option<String>, usize> {
    let ns_of: BTreeMap<&str, Option<String>> = doc
        .graph
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.namespace.clone()))
        .collect();
    let all: BTreeSet<Option<String>> = ns_of.values().cloned().collect();
    let mut col: BTreeMap<Option<String>, usize> = all.iter().map(|n| (n.clone(), 0)).collect();
    let pairs: BTreeSet<(Option<String>, Option<String>)> = doc
        .graph
        .edges
        .iter()
        .filter_map(|e| {
            Some((
                ns_of.get(e.from.as_str())?.clone(),
                ns_of.get(e.to.as_str())?.clone(),
            ))
        })
        .filter(|(a, b)| a != b)
        .collect();
    for _ in 0..all.len() {
        let mut changed = false;
        for (a, b) in &pairs {
            let want = col[a] + 1;
            if col[b] < want && want < all.len() {
                col.insert(b.clone(), want);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    col
}

fn svg(doc: &Document) -> String {
    let mut s = String::new();
    if doc.graph.nodes.is_empty() {
        return "<p>No flows to draw.</p>".into();
    }
    let verdicts: BTreeMap<&str, &str> = if doc.by == "namespace" {
        doc.groups
            .iter()
            .map(|g| (g.namespace.as_str(), g.verdict))
            .collect()
    } else {
        BTreeMap::new()
    };
    // Taller nodes for many edges, so that each edge has its own anchor.
    let mut degree: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in &doc.graph.edges {
        degree.entry(e.from.as_str()).or_default().1 += 1;
        degree.entry(e.to.as_str()).or_default().0 += 1;
    }
    let node_h = |id: &str| {
        let (i, o) = degree.get(id).copied().unwrap_or_default();
        NODE_H.max(16.0 * i.max(o) as f64 + 8.0)
    };
    let col = columns(doc);
    let mut by_col: BTreeMap<usize, BTreeMap<Option<String>, Vec<&super::doc::Node>>> =
        BTreeMap::new();
    for n in &doc.graph.nodes {
        by_col
            .entry(col[&n.namespace])
            .or_default()
            .entry(n.namespace.clone())
            .or_default()
            .push(n);
    }
    let mut placed: BTreeMap<&str, Placed> = BTreeMap::new();
    let mut boxes = String::new();
    let (mut width, mut height) = (0.0f64, 0.0f64);
    for (c, spaces) in &by_col {
        let x = MARGIN + *c as f64 * (NODE_W + 2.0 * PAD + COL_GAP);
        let mut y = MARGIN;
        for (ns, nodes) in spaces {
            let inner: f64 = nodes.iter().map(|n| node_h(&n.id) + NODE_GAP).sum();
            let h = HEAD + inner - NODE_GAP + PAD;
            let (label, color) = match ns {
                Some(ns) => {
                    let v = verdicts.get(ns.as_str());
                    (
                        match v {
                            Some(v) => format!("{ns} · {v}"),
                            None => ns.clone(),
                        },
                        v.map_or("#7f7f7f", |v| verdict_color(v)),
                    )
                }
                None => ("not attributed".to_string(), "#bbbbbb"),
            };
            let _ = write!(
                boxes,
                r##"<g class="ns"><rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" rx="10" fill="#fafafa" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" fill="{color}" font-weight="bold">{}</text></g>"##,
                NODE_W + 2.0 * PAD,
                x + PAD,
                y + 20.0,
                esc(&label)
            );
            let mut ny = y + HEAD;
            for n in nodes {
                let nh = node_h(&n.id);
                let _ = write!(
                    boxes,
                    r##"<g class="node"><title>{}</title><rect x="{:.1}" y="{ny:.1}" width="{NODE_W}" height="{nh:.1}" rx="6" fill="#ffffff" stroke="#555555"/><text x="{:.1}" y="{:.1}">{}</text></g>"##,
                    esc(&n.id),
                    x + PAD,
                    x + PAD + 8.0,
                    ny + nh / 2.0 + 4.0,
                    esc(&n.label)
                );
                placed.insert(
                    n.id.as_str(),
                    Placed {
                        x: x + PAD,
                        y: ny,
                        h: nh,
                    },
                );
                ny += nh + NODE_GAP;
            }
            y += h + NS_GAP;
            width = width.max(x + NODE_W + 2.0 * PAD + MARGIN);
        }
        height = height.max(y + MARGIN);
    }
    // Anchors: each edge leaves its client at its own height on the right side, and
    // reaches its server at its own height (on the left side, or the right for arcs),
    // ordered by where the other end is, so that edges do not cross at the node.
    let centre = |id: &str| placed.get(id).map_or(0.0, |p| p.y + p.h / 2.0);
    let mut outs: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut ins: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in doc.graph.edges.iter().enumerate() {
        outs.entry(e.from.as_str()).or_default().push(i);
        ins.entry(e.to.as_str()).or_default().push(i);
    }
    let mut out_y = vec![0.0; doc.graph.edges.len()];
    let mut in_y = vec![0.0; doc.graph.edges.len()];
    for (map, ys, other_end) in [(&outs, &mut out_y, false), (&ins, &mut in_y, true)] {
        for (id, list) in map {
            let Some(p) = placed.get(id) else { continue };
            let mut list = list.clone();
            list.sort_by(|&a, &b| {
                let e = &doc.graph.edges;
                let key = |i: usize| centre(if other_end { &e[i].from } else { &e[i].to });
                key(a).total_cmp(&key(b)).then(a.cmp(&b))
            });
            let n = list.len() as f64;
            for (k, &i) in list.iter().enumerate() {
                ys[i] = p.y + p.h * (k as f64 + 1.0) / (n + 1.0);
            }
        }
    }
    let mut edges = String::new();
    for (i, e) in doc.graph.edges.iter().enumerate() {
        let (Some(a), Some(b)) = (placed.get(e.from.as_str()), placed.get(e.to.as_str())) else {
            continue;
        };
        let color = class_color(e.class);
        let dash = match e.class {
            "failed" => r#" stroke-dasharray="6 4""#,
            "unknown" | "telemetry" => r#" stroke-dasharray="2 3""#,
            _ => "",
        };
        let w = super::dot::pen_width(e.flows);
        let (x1, y1) = (a.x + NODE_W, out_y[i]);
        let forward = b.x > a.x + NODE_W;
        let y2 = in_y[i];
        let (path, lx, ly, anchor) = if forward {
            let x2 = b.x;
            let mid = (x1 + x2) / 2.0;
            (
                format!("M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}"),
                x2 - 10.0,
                y2 - 4.0,
                "end",
            )
        } else {
            // Same column (or backwards): an arc on the right side.
            let x2 = b.x + NODE_W;
            let bulge = x1.max(x2) + 50.0 + (y2 - y1).abs() / 4.0;
            (
                format!("M{x1:.1},{y1:.1} C{bulge:.1},{y1:.1} {bulge:.1},{y2:.1} {x2:.1},{y2:.1}"),
                bulge - 10.0,
                (y1 + y2) / 2.0,
                "start",
            )
        };
        let tip = format!(
            "{} → {} port {}: {}, {} flow{}, {}",
            e.from,
            e.to,
            ports_text(&e.ports),
            e.class,
            e.flows,
            if e.flows == 1 { "" } else { "s" },
            human_bytes(e.bytes)
        );
        let _ = write!(
            edges,
            r#"<g class="edge"><title>{}</title><path d="{path}" fill="none" stroke="{color}" stroke-width="{w:.1}"{dash} marker-end="url(#arrow-{})"/><text x="{lx:.1}" y="{ly:.1}" fill="{color}" font-size="11" text-anchor="{anchor}">{} :{} ×{}</text></g>"#,
            esc(&tip),
            e.class,
            esc(e.class),
            esc(&ports_text(&e.ports)),
            e.flows
        );
        width = width.max(lx + 160.0);
    }
    let mut markers = String::new();
    let classes: BTreeSet<&str> = doc.graph.edges.iter().map(|e| e.class).collect();
    for c in classes {
        let _ = write!(
            markers,
            r#"<marker id="arrow-{c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>"#,
            class_color(c)
        );
    }
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12" role="img" aria-label="service graph"><defs>{markers}</defs>{boxes}{edges}</svg>"#
    );
    s
}

/// `8080` or `8080,9090`.
fn ports_text(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn legend() -> String {
    let mut s = String::from(r#"<p class="legend">"#);
    for c in [
        "plaintext",
        "istio-mtls",
        "app-tls",
        "double-wrapped",
        "failed",
        "unknown",
        "telemetry",
    ] {
        let _ = write!(
            s,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            class_color(c),
            esc(c)
        );
    }
    s.push_str("</p>");
    s
}

fn flow_rows(flows: &[FlowRef]) -> String {
    let mut s = String::from(
        "<table class=\"flows\"><tr><th>capture</th><th>frame</th><th>client</th><th>server</th><th>class</th><th>diagnosis</th><th>Wireshark filter</th></tr>",
    );
    for f in flows {
        let who = |addr: &str, name: &Option<String>| match name {
            Some(n) => format!("{}<br><small>{}</small>", esc(addr), esc(n)),
            None => esc(addr),
        };
        let also = if f.also_in.is_empty() {
            String::new()
        } else {
            format!(
                "<br><small>also {}</small>",
                esc(&f
                    .also_in
                    .iter()
                    .map(|s| format!("{} frame {}", s.capture, s.first_frame))
                    .collect::<Vec<_>>()
                    .join(", "))
            )
        };
        let _ = write!(
            s,
            "<tr><td>{}{also}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"color:{}\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&f.capture),
            f.first_frame,
            who(&f.client, &f.client_name),
            who(&f.server, &f.server_name),
            class_color(f.posture_class),
            esc(f.posture_class),
            esc(f.diagnosis.as_deref().unwrap_or("")),
            esc(&f.display_filter)
        );
    }
    s.push_str("</table>");
    s
}

fn finding(f: &Finding) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<section class=\"finding {}\"><h3><span class=\"sev\">{}</span> {}{}</h3><p>{}</p><p class=\"fix\"><b>Fix:</b> {}</p>",
        esc(f.severity),
        esc(&f.severity.to_uppercase()),
        esc(f.kind),
        f.group
            .as_ref()
            .map_or(String::new(), |g| format!(" · {}", esc(g))),
        esc(&f.summary),
        esc(&f.fix)
    );
    if !f.peers.is_empty() {
        s.push_str("<table class=\"peers\"><tr><th>client</th><th>server</th><th>port</th><th>flows</th><th>bytes</th></tr>");
        for p in &f.peers {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.client),
                esc(&p.server),
                p.port,
                p.flows,
                human_bytes(p.bytes)
            );
        }
        s.push_str("</table>");
    }
    s.push_str(&flow_rows(&f.flows));
    if f.flows_total as usize > f.flows.len() {
        let _ = write!(
            s,
            "<p>… and {} more flows.</p>",
            f.flows_total as usize - f.flows.len()
        );
    }
    s.push_str("</section>");
    s
}

const STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px;margin:0 0 6px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}\
th{background:#f3f3f3}code{font-size:12px}small{color:#666}\
.finding{border-left:6px solid #999;padding:8px 12px;margin:12px 0;background:#fcfcfc}\
.finding.high{border-color:#d62728}.finding.medium{border-color:#e6a700}.finding.low{border-color:#1f77b4}\
.sev{font-weight:bold}.fix{color:#444}\
.gate{padding:10px 14px;font-weight:bold;border-radius:6px}.gate.pass{background:#e7f6e7}.gate.fail{background:#fbe3e3}\
.legend span{margin-right:14px;font-size:13px}.legend i{display:inline-block;width:22px;height:4px;margin-right:5px;vertical-align:middle}\
.graph{overflow-x:auto;border:1px solid #eee;padding:6px}";

/// Writes the report.
pub fn write(out: &mut dyn Write, doc: &Document) -> io::Result<()> {
    let mut h = String::new();
    let t = &doc.totals;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mtlscope posture</title><style>{STYLE}</style></head><body>\
         <h1>Mesh encryption posture</h1><p>By {} · {} inputs · {} flows: {} on the network ({} seen in two captures, counted once), {} pod-local legs (not counted), {} not attributed.</p>",
        esc(doc.by),
        doc.inputs.len(),
        t.flows,
        t.network_flows,
        t.duplicate_flows,
        t.pod_local_flows,
        t.unattributed_flows
    );
    if let Some(g) = &doc.gate {
        let _ = write!(
            h,
            "<p class=\"gate {}\">Gate --require {} (forbidden: {}) on {}: {} — {} violation(s) in {} flows checked.</p>",
            if g.passed { "pass" } else { "fail" },
            esc(g.require),
            esc(&g.forbid.join(", ")),
            if g.namespaces.is_empty() {
                "all flows".to_string()
            } else {
                esc(&g.namespaces.join(", "))
            },
            if g.passed { "PASSED" } else { "FAILED" },
            g.violations_total,
            g.checked_flows
        );
    }
    let _ = write!(
        h,
        "<h2>Service graph</h2>{}<div class=\"graph\">{}</div>",
        legend(),
        svg(doc)
    );
    h.push_str("<h2>Groups</h2><table><tr><th>group</th><th>verdict</th><th>policy</th><th>inbound</th><th>outbound</th><th>mesh mTLS share</th></tr>");
    for g in &doc.groups {
        let traffic = |t: &super::doc::Traffic| {
            let classes: Vec<String> = t
                .classes
                .iter()
                .map(|(c, n)| {
                    format!(
                        "<span style=\"color:{}\">{} {}</span>",
                        class_color(c),
                        esc(c),
                        n.flows
                    )
                })
                .collect();
            format!(
                "{} flows, {}, {} peers<br>{}",
                t.flows,
                human_bytes(t.bytes),
                t.peers,
                classes.join(" · ")
            )
        };
        let policy = g.policy.as_ref().map_or("-".to_string(), |p| {
            let mut s = format!("{} <small>({})</small>", p.mode, esc(&p.source));
            for e in &p.exceptions {
                let _ = write!(
                    s,
                    "<br><small>{}:{} {} ({})</small>",
                    esc(&e.workload),
                    e.port,
                    e.mode,
                    esc(&e.source)
                );
            }
            s
        });
        let share = g.mesh_mtls_share.map_or("-".to_string(), |s| {
            format!(
                "{:.0}% of flows{}",
                s.flows * 100.0,
                s.bytes
                    .map_or(String::new(), |b| format!(", {:.0}% of bytes", b * 100.0))
            )
        });
        let _ = write!(
            h,
            "<tr><td>{}</td><td style=\"color:{};font-weight:bold\">{}</td><td>{policy}</td><td>{}</td><td>{}</td><td>{share}</td></tr>",
            esc(&g.name),
            verdict_color(g.verdict),
            esc(&g.verdicts.join(", ")),
            traffic(&g.inbound),
            traffic(&g.outbound)
        );
    }
    h.push_str("</table>");
    h.push_str("<h2>Findings</h2>");
    if doc.findings.is_empty() {
        h.push_str("<p>None.</p>");
    }
    for f in &doc.findings {
        h.push_str(&finding(f));
    }
    if let Some(g) = &doc.gate
        && !g.violations.is_empty()
    {
        h.push_str("<h2>Gate violations</h2>");
        h.push_str(&flow_rows(&g.violations));
    }
    h.push_str("<h2>Inputs</h2><ul>");
    for i in &doc.inputs {
        let _ = write!(
            h,
            "<li>{} ({}, {} flows){}</li>",
            esc(&i.path),
            i.kind,
            i.flows,
            i.error
                .as_ref()
                .map_or(String::new(), |e| format!(": <b>{}</b>", esc(e)))
        );
    }
    h.push_str("</ul></body></html>\n");
    out.write_all(h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
