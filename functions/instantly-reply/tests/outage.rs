//! Every wait bounded: with the database frozen (a proxy that stops passing
//! bytes, as a SIGSTOPped PostgreSQL does) a webhook answers 503 with
//! `Retry-After` within its deadline, and with the database unreachable it
//! answers 503 too (never 500); once the database is back the next call
//! succeeds without a restart. Before this change the frozen call hung for
//! as long as the freeze and the unreachable one answered 500.

use crm_domain::{
    Secret,
    signature::{Verifier, hmac_sha256_hex},
};
use crm_platform::{config::DatabaseConfig, db::build_pool, http};
use crm_testkit::{FreezableProxy, TestDb, event};
use instantly_reply::{Deps, handle};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET: &str = "test-instantly-secret";

fn signed(n: u32) -> Request {
    let mut ev: Value = serde_json::from_str(&event("instantly-reply/native.json")).unwrap();
    let mut body: Value = serde_json::from_str(ev["body"].as_str().unwrap()).unwrap();
    body["email_id"] = json!(format!("outage-{n}"));
    let body = body.to_string();
    ev["headers"]["x-signature"] = json!(format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    ));
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    ev["body"] = json!(body);
    lambda_http::request::from_str(&ev.to_string()).unwrap()
}

/// One call as the Lambda main and the local runner make it: within `deadline`.
async fn call(deps: &Deps, n: u32, deadline: Duration) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let resp = http::bounded(deadline, handle(signed(n), deps)).await;
    let took = started.elapsed();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    (resp.status().as_u16(), retry_after, body, took)
}

#[tokio::test]
async fn a_frozen_or_unreachable_database_answers_503_with_retry_after_within_the_deadline() {
    let db = TestDb::new().await;
    let (proxy, url) = FreezableProxy::for_url(&db.url).await;
    let deps = Deps {
        pool: build_pool(&DatabaseConfig::from_url(&url, 2).unwrap()).unwrap(),
        verifier: Verifier::Secret(Secret::new(SECRET).unwrap()),
    };
    let deadline = Duration::from_secs(2);
    let (status, _, body, _) = call(&deps, 1, deadline).await;
    assert_eq!(status, 200, "{body}");

    // Frozen: bounded by the deadline, told when to come back.
    proxy.freeze();
    let (status, retry_after, body, took) = call(&deps, 2, deadline).await;
    assert_eq!(
        (status, retry_after.as_deref(), body["code"].as_str()),
        (503, Some("5"), Some("temporarily_unavailable"))
    );
    assert!(took < deadline + Duration::from_secs(1), "took {took:?}");

    // Back: the next call succeeds without a restart.
    proxy.thaw();
    let mut recovered = false;
    for n in 3..20 {
        if call(&deps, n, deadline).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "no 200 after the database came back");

    // Unreachable (connections reset, new ones refused): 503, never 500.
    proxy.close();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, retry_after, body, _) = call(&deps, 30, deadline).await;
    assert_eq!(
        (status, retry_after.as_deref(), body["code"].as_str()),
        (503, Some("5"), Some("temporarily_unavailable")),
        "{body}"
    );
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "select count(*) from webhook_events where status = 'processed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored >= 2,
        "the calls before and after the freeze were applied"
    );
}
