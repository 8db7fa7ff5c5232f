//! openapi.json documents exactly the routes the runner serves: the same
//! (method, path) pairs as `routes::declared()`, which is exactly what
//! `routes::build` mounts. A route added without its documentation (or the
//! other way round) fails here.

use crm_platform::config::{CommonConfig, Env};
use local_runner::routes;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(routes::OPENAPI_JSON).expect("openapi.json is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn as_set(
    routes: impl IntoIterator<Item = (&'static str, &'static str)>,
) -> BTreeSet<(String, String)> {
    routes
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn the_document_lists_exactly_the_declared_routes() {
    let declared = as_set(routes::declared());
    assert_eq!(
        declared.len(),
        routes::declared().len(),
        "no route declared twice"
    );
    let documented = documented();
    let missing: Vec<_> = declared.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "openapi.json is out of date: undocumented routes {missing:?}, documented but not served {extra:?}"
    );
}

/// Enough configuration for every HTTP function's `Deps` (pools are lazy: nothing connects).
fn env() -> Env {
    Env::from_pairs([
        (
            "DATABASE_URL",
            "postgres://u@127.0.0.1:1/db?sslmode=disable",
        ),
        ("APP_ENV", "test"),
        ("DEV_SIGNATURE_BYPASS", "true"),
        ("JWT_SECRET", "test-jwt-secret"),
    ])
}

#[tokio::test]
async fn the_runner_mounts_exactly_the_declared_routes() {
    let env = env();
    let common = CommonConfig::from_env(&env).unwrap();
    let table = routes::build(&common, &env).expect("every function's Deps from the test env");
    let mounted: Vec<(&'static str, &'static str)> =
        table.routes().iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(as_set(mounted.clone()), as_set(routes::declared()));
    assert_eq!(mounted.len(), routes::declared().len());
}

#[tokio::test]
async fn the_runner_serves_the_document_at_openapi_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = env();
    let common = CommonConfig::from_env(&env).unwrap();
    let app = routes::router(routes::build(&common, &env).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let served: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        served,
        serde_json::from_str::<Value>(routes::OPENAPI_JSON).unwrap()
    );
}
