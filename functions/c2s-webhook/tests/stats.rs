//! GET /api/v1/webhooks/c2s/stats: numbers on seeded events, the window, who may read it.

mod common;

use common::*;
use crm_domain::auth::Role;
use crm_testkit::TestDb;
use serde_json::{Value, json};

/// One c2s event received `at` (SQL, relative to `t0` = the start of today,
/// UTC), finished `ms` later (none: still received).
async fn seed(
    pg: &tokio_postgres::Client,
    n: usize,
    action: &str,
    status: &str,
    at: &str,
    ms: Option<i32>,
) {
    let sql = format!(
        "with t as (select date_trunc('day', now() at time zone 'UTC') at time zone 'UTC' as t0) \
         insert into webhook_events (source, idempotency_key, payload_hash, event_type, status, subject_id, \
                                     received_at, processed_at) \
         select 'c2s', 'seed:' || gen_random_uuid(), repeat('a', 64), $1, $2, 'L', {at}, \
                {at} + make_interval(secs => $3::float8 / 1000) \
         from t",
    );
    let ms: Option<f64> = ms.map(f64::from);
    for _ in 0..n {
        pg.execute(&sql, &[&action, &status, &ms]).await.unwrap();
    }
}

async fn day(pg: &tokio_postgres::Client, days_ago: i32) -> String {
    pg.query_one(
        "select to_char((now() at time zone 'UTC')::date - $1::int, 'YYYY-MM-DD')",
        &[&days_ago],
    )
    .await
    .unwrap()
    .get(0)
}

async fn seed_week(pg: &tokio_postgres::Client) {
    // Today, on_create_lead: finished in 500, 1000, 2000, 3000, 4000, 6000 ms, and one still waiting.
    seed(pg, 1, "on_create_lead", "completed", "t0", Some(1000)).await;
    seed(
        pg,
        1,
        "on_create_lead",
        "completed",
        "t0 + interval '1 hour'",
        Some(2000),
    )
    .await;
    seed(pg, 1, "on_create_lead", "completed", "t0", Some(6000)).await;
    seed(pg, 1, "on_create_lead", "partial", "t0", Some(4000)).await;
    seed(pg, 1, "on_create_lead", "failed", "t0", Some(3000)).await;
    seed(pg, 1, "on_create_lead", "skipped", "t0", Some(500)).await;
    seed(pg, 1, "on_create_lead", "received", "t0", None).await;
    // Today, on_close_lead.
    seed(pg, 1, "on_close_lead", "completed", "t0", Some(800)).await;
    // Yesterday, on_update_lead: two failures.
    seed(
        pg,
        1,
        "on_update_lead",
        "failed",
        "t0 - interval '12 hours'",
        Some(100),
    )
    .await;
    seed(
        pg,
        1,
        "on_update_lead",
        "failed",
        "t0 - interval '1 second'",
        Some(300),
    )
    .await;
    // Ten days ago: outside the default window.
    seed(
        pg,
        2,
        "on_create_lead",
        "completed",
        "t0 - interval '9 days 12 hours'",
        Some(50),
    )
    .await;
    // Not counted in rows: a rejected element (counted apart), another source.
    pg.batch_execute(
        "insert into webhook_events (source, payload_hash, event_type, status, http_status, error_code) \
         values ('c2s', repeat('b', 64), 'on_create_lead', 'rejected', 422, 'validation_failed'); \
         insert into webhook_events (source, idempotency_key, payload_hash, event_type, status) \
         values ('instantly', 'i1', repeat('c', 64), 'on_create_lead', 'completed')",
    )
    .await
    .unwrap();
}

fn admin() -> String {
    format!("Bearer {}", jwt("admin-1", Role::Admin))
}

#[tokio::test]
async fn stats_count_each_day_and_action_with_success_rate_and_median() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    seed_week(&pg).await;
    let (today, yesterday) = (day(&pg, 0).await, day(&pg, 1).await);
    let (status, body) = stats(&deps, &[], Some(&admin())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["days"], 7);
    assert_eq!(body["rejected"], 1);
    assert_eq!(
        body["rows"],
        json!([
            {"day": yesterday, "hook_action": "on_update_lead", "total": 2, "received": 0, "completed": 0,
             "partial": 0, "failed": 2, "skipped": 0, "success_rate": 0.0, "median_processing_ms": 200},
            {"day": today, "hook_action": "on_close_lead", "total": 1, "received": 0, "completed": 1,
             "partial": 0, "failed": 0, "skipped": 0, "success_rate": 100.0, "median_processing_ms": 800},
            {"day": today, "hook_action": "on_create_lead", "total": 7, "received": 1, "completed": 3,
             "partial": 1, "failed": 1, "skipped": 1, "success_rate": 60.0, "median_processing_ms": 2500},
        ])
    );
    let since = body["since"].as_str().unwrap();
    assert!(since.starts_with(&day(&pg, 6).await), "{since}");
}

#[tokio::test]
async fn the_window_is_chosen_in_days() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    seed_week(&pg).await;
    let (status, body) = stats(&deps, &[("days", "30")], Some(&admin())).await;
    assert_eq!(status, 200, "{body}");
    let old = day(&pg, 10).await;
    let rows: Vec<&Value> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["day"] == old.as_str())
        .collect();
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0]["total"], 2);
    assert_eq!(rows[0]["median_processing_ms"], 50);

    let (_, one) = stats(&deps, &[("days", "1")], Some(&admin())).await;
    let days: Vec<&str> = one["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, vec![day(&pg, 0).await.as_str(); 2]);

    for bad in ["0", "91", "abc", "-1"] {
        let (status, body) = stats(&deps, &[("days", bad)], Some(&admin())).await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(body["field"], "days");
    }
}

#[tokio::test]
async fn stats_are_for_admins_only() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let member = format!("Bearer {}", jwt("user-1", Role::Member));
    let (status, body) = stats(&deps, &[], Some(&member)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = stats(&deps, &[], None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_missing"))
    );
    let (status, body) = stats(&deps, &[], Some("Bearer not.a.token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_invalid"))
    );
}

#[tokio::test]
async fn the_sample_event_and_a_fresh_webhook_show_up() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    send_sample(&deps, "array-mixed.json").await;
    let (status, body) = send_sample(&deps, "stats.json").await;
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().unwrap();
    let total: i64 = rows.iter().map(|r| r["total"].as_i64().unwrap()).sum();
    let received: i64 = rows.iter().map(|r| r["received"].as_i64().unwrap()).sum();
    assert_eq!((total, received), (2, 2), "{body}");
    assert!(
        rows.iter()
            .all(|r| r["success_rate"].is_null() && r["median_processing_ms"].is_null())
    );
    assert_eq!(body["rejected"], 1);
}
