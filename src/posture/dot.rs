//! The service graph as Graphviz DOT: namespaces as clusters, workloads as nodes, one
//! edge per (client, server, class) labelled with its flows and bytes and coloured by
//! class. Endpoints not attributed to a namespace stand alone as their IP.
//!
//! `mtlscope posture --format dot … | dot -Tsvg > mesh.svg`

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::doc::Document;
use super::table::human_bytes;

/// Colour of a posture class (shared with the HTML report).
pub fn class_color(class: &str) -> &'static str {
    match class {
        "plaintext" => "#d62728",
        "istio-mtls" | "linkerd-mtls" | "consul-mtls" => "#2ca02c",
        "app-tls" => "#1f77b4",
        "double-wrapped" => "#ff7f0e",
        "failed" => "#7f7f7f",
        "telemetry" => "#b0b0b0",
        _ => "#8c564b",
    }
}

/// Line style of a posture class.
pub fn class_style(class: &str) -> &'static str {
    match class {
        "failed" => "dashed",
        "unknown" | "telemetry" => "dotted",
        _ => "solid",
    }
}

/// Colour of a verdict (shared with the HTML report).
pub fn verdict_color(v: &str) -> &'static str {
    match v {
        "policy-mismatch" | "would-break" | "bypassed" => "#d62728",
        "strict-enforced" => "#e6a700",
        "strict-ready" => "#2ca02c",
        _ => "#7f7f7f",
    }
}

/// A DOT string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Edge width: 1 for one flow, growing with the logarithm of the count, at most 6.
pub fn pen_width(flows: u64) -> f64 {
    (1.0 + (flows.max(1) as f64).log2()).min(6.0)
}

/// Writes the graph.
pub fn write(out: &mut dyn Write, doc: &Document) -> io::Result<()> {
    writeln!(out, "digraph mtlscope_posture {{")?;
    writeln!(
        out,
        "  graph [rankdir=LR, fontname=\"Helvetica\", labelloc=t, label={}];",
        quote("mtlscope posture: workloads and their flows, coloured by class")
    )?;
    writeln!(
        out,
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\", fontsize=11];"
    )?;
    writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=9];")?;
    // Namespace verdicts, when grouped by namespace.
    let verdicts: BTreeMap<&str, &str> = if doc.by == "namespace" {
        doc.groups
            .iter()
            .map(|g| (g.namespace.as_str(), g.verdict))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut by_ns: BTreeMap<Option<&str>, Vec<&super::doc::Node>> = BTreeMap::new();
    for n in &doc.graph.nodes {
        by_ns.entry(n.namespace.as_deref()).or_default().push(n);
    }
    for (i, (ns, nodes)) in by_ns.iter().enumerate() {
        match ns {
            Some(ns) => {
                let verdict = verdicts.get(ns);
                let label = match verdict {
                    Some(v) => format!("{ns}\n{v}"),
                    None => ns.to_string(),
                };
                writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{i}")))?;
                writeln!(
                    out,
                    "    label={}; style=\"rounded\"; color={}; fontcolor={};",
                    quote(&label),
                    quote(verdict.map_or("#7f7f7f", |v| verdict_color(v))),
                    quote(verdict.map_or("#333333", |v| verdict_color(v)))
                )?;
                for n in nodes {
                    writeln!(out, "    {} [label={}];", quote(&n.id), quote(&n.label))?;
                }
                writeln!(out, "  }}")?;
            }
            None => {
                for n in nodes {
                    writeln!(
                        out,
                        "  {} [label={}, shape=ellipse, fillcolor=\"#eeeeee\"];",
                        quote(&n.id),
                        quote(&n.label)
                    )?;
                }
            }
        }
    }
    for e in &doc.graph.edges {
        let ports: Vec<String> = e.ports.iter().map(|p| format!(":{p}")).collect();
        let label = format!(
            "{} {}\n{} flow{}, {}",
            e.class,
            ports.join(" "),
            e.flows,
            if e.flows == 1 { "" } else { "s" },
            human_bytes(e.bytes)
        );
        let color = class_color(e.class);
        writeln!(
            out,
            "  {} -> {} [label={}, color={}, fontcolor={}, style={}, penwidth={:.1}];",
            quote(&e.from),
            quote(&e.to),
            quote(&label),
            quote(color),
            quote(color),
            class_style(e.class),
            pen_width(e.flows)
        )?;
    }
    writeln!(out, "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(pen_width(1), 1.0);
        assert_eq!(pen_width(4), 3.0);
        assert_eq!(pen_width(1 << 20), 6.0);
    }
}
