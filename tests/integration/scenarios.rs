//! Every flow of every mesh scenario in `captures/scenarios/` (real stacks in network
//! namespaces; see its README) is classified and diagnosed exactly as `expected.json`
//! says. Flows are found by server endpoint and client address (and `nth` when several
//! share them, in first-frame order); client ports change when the captures are remade.

use serde_json::{Value, json};

use crate::support::*;

fn field_diffs(got: &Value, want: &Value) -> Vec<String> {
    let tls = &got["tls"];
    let mut diffs = Vec::new();
    fn check(diffs: &mut Vec<String>, name: &str, g: Value, w: &Value) {
        if &g != w {
            diffs.push(format!("{name}: got {g}, want {w}"));
        }
    }
    for k in ["class", "leg", "handshake"] {
        check(&mut diffs, k, got[k].clone(), &want[k]);
    }
    for k in ["confidence", "app_protocol"] {
        if !want[k].is_null() {
            check(&mut diffs, k, got[k].clone(), &want[k]);
        }
    }
    check(
        &mut diffs,
        "diagnosis",
        got["diagnosis"]["code"].clone(),
        &want["diagnosis"],
    );
    check(
        &mut diffs,
        "paired_with",
        got["paired_with"]["server"].clone(),
        &want["paired_with"],
    );
    check(&mut diffs, "sni", tls["sni"].clone(), &want["sni"]);
    check(
        &mut diffs,
        "alpn_offered",
        tls["alpn_offered"].clone(),
        &want["alpn_offered"],
    );
    check(
        &mut diffs,
        "version",
        tls["version"].clone(),
        &want["version"],
    );
    let alerts = |v: &Value| {
        let mut a: Vec<(String, u64)> = v
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|x| {
                        (
                            x["from"].to_string(),
                            x["description"].as_u64().unwrap_or(999),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        a.sort();
        a
    };
    if alerts(&tls["alerts"]) != alerts(&want["alerts"]) {
        diffs.push(format!(
            "alerts: got {}, want {}",
            tls["alerts"], want["alerts"]
        ));
    }
    match want["mesh"].as_object() {
        None => check(&mut diffs, "mesh", got["mesh"].clone(), &Value::Null),
        Some(m) => {
            for (k, w) in m {
                let g = &got["mesh"][k];
                let g = if k.ends_with("identity") && !g.is_null() {
                    json!({"ns": g["ns"], "sa": g["sa"]})
                } else {
                    g.clone()
                };
                check(&mut diffs, &format!("mesh.{k}"), g, w);
            }
        }
    }
    for tag in want["tags"].as_array().into_iter().flatten() {
        let ok = match tag.as_str() {
            Some("sidecar-originated") => got["evidence"].as_array().is_some_and(|e| {
                e.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|s| s.starts_with("sidecar_originated"))
                })
            }),
            Some("client-certificate") => tls["client_certificate"] == true,
            _ => false,
        };
        if !ok {
            diffs.push(format!("tag {tag} not shown"));
        }
    }
    diffs
}

#[test]
fn every_scenario_flow_is_classified_and_diagnosed_as_expected() {
    let dir = captures().join("scenarios");
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("valid JSON");
    assert!(expected.len() >= 25, "scenario list");
    let mut failures = Vec::new();
    let mut checked = 0;
    for scenario in &expected {
        let capture = scenario["capture"].as_str().unwrap();
        let (flows, summary) = analyze(&dir.join(capture), &[]);
        assert_eq!(
            summary["link_types"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec![scenario["linktype"].to_string()]),
            "{capture}"
        );
        let want_flows = scenario["flows"].as_array().unwrap();
        if flows.len() != want_flows.len() {
            failures.push(format!(
                "{capture}: {} flows, expected {}",
                flows.len(),
                want_flows.len()
            ));
        }
        for want in want_flows {
            let (server, client_ip) = (
                want["server"].as_str().unwrap(),
                want["client_ip"].as_str().unwrap(),
            );
            let matching: Vec<&Value> = flows
                .iter()
                .filter(|f| {
                    let client = f["client"].as_str().unwrap();
                    f["server"] == server
                        && client
                            .rsplit_once(':')
                            .map(|(ip, _)| ip.trim_matches(['[', ']']))
                            == Some(client_ip)
                })
                .collect();
            let nth = want["nth"].as_u64().unwrap_or(0) as usize;
            let Some(got) = matching.get(nth) else {
                failures.push(format!("{capture}: no flow {client_ip} -> {server} #{nth}"));
                continue;
            };
            checked += 1;
            for d in field_diffs(got, want) {
                failures.push(format!("{capture}: {client_ip} -> {server}: {d}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 50, "only {checked} flows checked");
}
