//! Issue 13, "unauthenticated work": every webhook verifies its signature
//! before it takes a database connection. Forged calls write no row (they
//! are a log line and a counter, docs/security.md) and get 401 even while
//! the database is down.

mod common;

use common::*;
use crm_testkit::TestDb;

/// (path, headers carrying a wrong signature, content type).
fn forged(i: usize) -> (&'static str, Vec<(&'static str, String)>, &'static str) {
    match i % 4 {
        0 => (
            "/crm/webhooks/instantly/reply",
            vec![("x-signature", format!("sha256={:064x}", i))],
            "application/json",
        ),
        1 => (
            "/crm/webhooks/calcom/booking",
            vec![("x-cal-signature-256", format!("{:064x}", i))],
            "application/json",
        ),
        2 => (
            "/api/v1/webhooks/c2s",
            vec![("x-webhook-token", format!("guess-{i}"))],
            "application/json",
        ),
        _ => (
            "/api/twilio/webhook",
            vec![("x-twilio-signature", format!("AAAA{i}="))],
            "application/x-www-form-urlencoded",
        ),
    }
}

async fn send_forged(base: &str, i: usize) -> (u16, serde_json::Value) {
    let (path, headers, content_type) = forged(i);
    let mut req = client()
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .body(if content_type.ends_with("json") {
            format!(r#"{{"event_type":"reply_received","n":{i}}}"#)
        } else {
            format!("MessageSid=SM{i:032}&From=%2B905321234567&Body=hi")
        });
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn three_hundred_forged_calls_write_no_row() {
    let db = TestDb::new().await;
    let base = serve(&db.url).await;
    for i in 0..300 {
        let (status, body) = send_forged(&base, i).await;
        assert_eq!(status, 401, "call {i}: {body}");
        assert_eq!(body["code"], "signature_invalid", "call {i}");
    }
    let pg = db.client().await;
    let rows: i64 = pg
        .query_one("select count(*) from webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "refusals before authentication are not rows");
    assert!(crm_domain::db::webhook_events::unauthenticated_refusals() >= 300);
}

#[tokio::test]
async fn a_forged_call_gets_401_while_the_database_is_down() {
    // Nothing listens on port 1: every connection attempt fails at once.
    let base = serve("postgres://crm@127.0.0.1:1/crm?sslmode=disable").await;
    for i in 0..8 {
        let (status, body) = send_forged(&base, i).await;
        assert_eq!(status, 401, "call {i}: {body}");
    }
}
