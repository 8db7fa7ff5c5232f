//! GET /api/v1/admin/webhook-events and /summary: filters, keyset pages,
//! no payloads or keys in the answer, the per-source summary with its
//! hint, admins only.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::json;

/// One `webhook_events` row `minutes_ago`; rejected rows hold no key.
async fn event(
    pg: &tokio_postgres::Client,
    source: &str,
    status: &str,
    code: Option<&str>,
    minutes_ago: i32,
    duration_ms: Option<i32>,
) -> String {
    let key = (status != "rejected").then(|| format!("lead@example.com:{}", uuid::Uuid::now_v7()));
    pg.query_one(
        "insert into webhook_events (source, idempotency_key, offered_key, payload_hash, status, error_code, error, \
                                     payload, http_status, received_at, duration_ms) \
         values ($1, $2, 'offered-secret-key', repeat('a', 64), $3, $4, case when $4 is not null then 'refused: ' || $4 end, \
                 '{\"body\": \"the whole payload\"}', case when $3 = 'rejected' then 401 else 200 end, \
                 now() - make_interval(mins => $5), $6) returning id::text",
        &[&source, &key, &status, &code, &minutes_ago, &duration_ms],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn recent_events_filter_by_source_status_and_code_and_page_without_payloads() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let mut rejected = Vec::new();
    for m in 1..=3 {
        rejected.push(
            event(
                &pg,
                "calcom",
                "rejected",
                Some("signature_invalid"),
                m,
                None,
            )
            .await,
        );
    }
    event(&pg, "calcom", "processed", None, 4, Some(80)).await;
    event(
        &pg,
        "twilio",
        "rejected",
        Some("signature_missing"),
        5,
        None,
    )
    .await;

    let path = "/api/v1/admin/webhook-events";
    let q = [("source", "calcom"), ("status", "rejected"), ("limit", "2")];
    let (s, page) = call(&d, "GET", path, &q, None, &admin()).await;
    assert_eq!(s, 200, "{page}");
    let ids: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [rejected[0].as_str(), rejected[1].as_str()]);
    let first = &page["events"][0];
    assert_eq!(first["error_code"], "signature_invalid");
    assert_eq!(first["http_status"], 401);
    assert_eq!(first["source"], "calcom");
    let text = page.to_string();
    assert!(
        !text.contains("payload")
            && !text.contains("offered-secret-key")
            && !text.contains("lead@example.com"),
        "{text}"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = call(
        &d,
        "GET",
        path,
        &[
            ("source", "calcom"),
            ("status", "rejected"),
            ("limit", "2"),
            ("cursor", cursor),
        ],
        None,
        &admin(),
    )
    .await;
    assert_eq!(next["events"].as_array().unwrap().len(), 1);
    assert_eq!(next["events"][0]["id"], rejected[2].as_str());
    assert!(next["next_cursor"].is_null());

    let (_, by_code) = call(
        &d,
        "GET",
        path,
        &[("error_code", "signature_missing")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(by_code["events"].as_array().unwrap().len(), 1);
    assert_eq!(by_code["events"][0]["source"], "twilio");
    let (s, bad) = call(&d, "GET", path, &[("source", "stripe")], None, &admin()).await;
    assert_eq!((s, bad["field"].as_str()), (422, Some("source")));
}

#[tokio::test]
async fn the_summary_counts_by_status_and_code_and_says_calcom_is_refused() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    event(&pg, "calcom", "processed", None, 120, Some(100)).await;
    for m in 1..=4 {
        event(
            &pg,
            "calcom",
            "rejected",
            Some("signature_invalid"),
            m,
            None,
        )
        .await;
    }
    event(&pg, "twilio", "processed", None, 3, Some(40)).await;
    event(&pg, "twilio", "processed", None, 4, Some(60)).await;
    // Outside the window.
    event(
        &pg,
        "instantly",
        "rejected",
        Some("signature_missing"),
        60 * 30,
        None,
    )
    .await;

    let (s, sum) = call(
        &d,
        "GET",
        "/api/v1/admin/webhook-events/summary",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(s, 200, "{sum}");
    assert_eq!(sum["hours"], 24);
    let sources = sum["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 5, "every source, with or without events");
    let cal = sources.iter().find(|s| s["source"] == "calcom").unwrap();
    assert_eq!(cal["total"], 5);
    assert_eq!(
        cal["by_status"],
        json!([{"status": "processed", "count": 1}, {"status": "rejected", "count": 4}])
    );
    assert_eq!(cal["by_error_code"][0]["error_code"], "signature_invalid");
    assert_eq!(cal["by_error_code"][0]["count"], 4);
    let hint = cal["hints"][0].as_str().unwrap();
    assert!(
        hint.starts_with("Cal.com's signature does not verify (4 refused)"),
        "{hint}"
    );
    let tw = sources.iter().find(|s| s["source"] == "twilio").unwrap();
    assert_eq!(tw["median_duration_ms"], 50);
    assert_eq!(tw["hints"], json!([]));
    let inst = sources.iter().find(|s| s["source"] == "instantly").unwrap();
    assert_eq!(inst["total"], 0);

    let (s, _) = call(
        &d,
        "GET",
        "/api/v1/admin/webhook-events/summary",
        &[("hours", "0")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(s, 422);
}

#[tokio::test]
async fn members_are_refused_the_diagnostics() {
    let db = TestDb::new().await;
    let d = deps(&db);
    for path in [
        "/api/v1/admin/webhook-events",
        "/api/v1/admin/webhook-events/summary",
    ] {
        let (s, b) = call(&d, "GET", path, &[], None, &member("user-1")).await;
        assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{path}");
    }
}
