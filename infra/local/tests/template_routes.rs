//! template.yaml routes exactly what the code serves: every HttpApi event
//! (Method + Path) equals `routes::declared()`, so a function added to the
//! code but not to the deployment (or the other way round) fails here.

use local_runner::routes;
use std::collections::BTreeSet;

/// (METHOD, path) of every `Type: HttpApi` event, read line by line (the
/// template uses CloudFormation tags a plain YAML parser rejects).
fn templated() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
        .unwrap();
    let mut out = BTreeSet::new();
    let mut in_http_event = false;
    let mut method: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Type:") {
            in_http_event = line == "Type: HttpApi";
            method = None;
        } else if in_http_event && let Some(m) = line.strip_prefix("Method:") {
            method = Some(m.trim().to_ascii_uppercase());
        } else if in_http_event && let Some(p) = line.strip_prefix("Path:") {
            let m = method
                .take()
                .expect("Method before Path in an HttpApi event");
            out.insert((m, p.trim().to_string()));
        }
    }
    out
}

#[test]
fn every_declared_route_is_deployed_and_nothing_else() {
    // The API's routes and the console's catch-all (GET / and GET /{proxy+}),
    // which the runner serves as its fallback rather than from the table.
    let declared: BTreeSet<(String, String)> = routes::declared()
        .into_iter()
        .chain(console::ROUTES.iter().copied())
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let templated = templated();
    assert!(
        templated.len() >= 9,
        "parsed {} routes from template.yaml",
        templated.len()
    );
    assert_eq!(templated, declared);
}
