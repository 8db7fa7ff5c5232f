//! Shared test support: a worker wired to a fresh database and a mock
//! receiver, SQS events built from `events/send-worker/*.json`, and checks
//! of what the receiver got.
#![allow(dead_code)]

use aws_lambda_events::sqs::SqsEvent;
use crm_domain::webhooks_out::SigningKey;
use crm_platform::{
    config::{DatabaseConfig, Env},
    db::build_pool,
};
use crm_testkit::{TestDb, event};
use send_worker::{Deps, SendConfig};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn deps_for(db: &TestDb, urls: &[String], max_attempts: u32, timeout_ms: u64) -> Deps {
    let (urls, max, timeout) = (
        urls.join(","),
        max_attempts.to_string(),
        timeout_ms.to_string(),
    );
    let env = Env::from_pairs([
        ("OUTBOUND_WEBHOOK_URLS", urls.as_str()),
        ("OUTBOUND_WEBHOOK_SECRET", SECRET),
        ("SEND_MAX_ATTEMPTS", max.as_str()),
        ("OUTBOUND_WEBHOOK_TIMEOUT_MS", timeout.as_str()),
    ]);
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap();
    Deps::with(pool, SendConfig::from_env(&env).unwrap()).unwrap()
}

/// The body of a `deliver_webhook` job for `event_id` (the sample's, re-keyed).
pub fn job_body(event_id: Uuid) -> String {
    let sample = sample_record("send-worker/deliver-webhook.json", 0);
    let mut job: Value = serde_json::from_str(sample["body"].as_str().unwrap()).unwrap();
    job["event_id"] = json!(event_id);
    job.to_string()
}

fn sample_record(file: &str, i: usize) -> Value {
    let ev: Value = serde_json::from_str(&event(file)).unwrap();
    ev["Records"][i].clone()
}

/// One SQS record shaped like the sample, with this id, body and receive count.
pub fn record(message_id: &str, body: &str, receive_count: u32) -> Value {
    let mut r = sample_record("send-worker/deliver-webhook.json", 0);
    r["messageId"] = json!(message_id);
    r["receiptHandle"] = json!(format!("receipt-{message_id}"));
    r["body"] = json!(body);
    r["attributes"]["ApproximateReceiveCount"] = json!(receive_count.to_string());
    r
}

pub fn sqs_event(records: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

pub fn event_file(file: &str) -> SqsEvent {
    serde_json::from_str(&event(file)).expect("an SQS event")
}

pub fn failures(resp: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// Asserts a request is a correctly signed Standard Webhooks POST of the job
/// with `event_id`, and returns its parsed body.
pub fn assert_signed(req: &wiremock::Request, event_id: Uuid) -> Value {
    assert_eq!(req.method.as_str(), "POST");
    let h = |name: &str| {
        req.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("webhook-id"), event_id.to_string());
    let ts: i64 = h("webhook-timestamp").parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 60,
        "fresh timestamp"
    );
    let key = SigningKey::parse(SECRET).unwrap();
    assert!(
        key.verify(
            &event_id.to_string(),
            ts,
            &req.body,
            &h("webhook-signature")
        ),
        "signature verifies"
    );
    assert!(h("webhook-signature").starts_with("v1,"));
    serde_json::from_slice(&req.body).unwrap()
}

/// `(status, attempts, last_http_status, last_error)` of the deliveries of an event, by target origin order.
pub async fn deliveries(
    db: &TestDb,
    event_id: Uuid,
) -> Vec<(String, i32, Option<i32>, Option<String>)> {
    db.client()
        .await
        .query(
            "select status, attempts, last_http_status, last_error from webhook_deliveries \
             where event_id = $1 order by id",
            &[&event_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// `(attempt, http_status, error_class)` of every attempt of an event.
pub async fn attempts(db: &TestDb, event_id: Uuid) -> Vec<(i32, Option<i32>, Option<String>)> {
    db.client()
        .await
        .query(
            "select a.attempt, a.http_status, a.error_class from webhook_delivery_attempts a \
             join webhook_deliveries d on d.id = a.delivery_id where d.event_id = $1 order by a.id",
            &[&event_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The target key (SHA-256 of the URL) the worker stores for `url`.
pub fn target_key(url: &str) -> String {
    send_worker::Target::parse(url).expect("an http(s) URL").key
}

/// As `deliveries`, in the order of `urls`: the worker posts to the URLs of
/// a job concurrently, so delivery ids do not follow the configured order.
pub async fn deliveries_for(
    db: &TestDb,
    event_id: Uuid,
    urls: &[String],
) -> Vec<(String, i32, Option<i32>, Option<String>)> {
    let pg = db.client().await;
    let mut out = Vec::new();
    for url in urls {
        let rows = pg
            .query(
                "select status, attempts, last_http_status, last_error from webhook_deliveries \
                 where event_id = $1 and target_key = $2",
                &[&event_id, &target_key(url)],
            )
            .await
            .unwrap();
        out.extend(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
        );
    }
    out
}

/// As `attempts`, grouped in the order of `urls` (each URL's in attempt order).
pub async fn attempts_for(
    db: &TestDb,
    event_id: Uuid,
    urls: &[String],
) -> Vec<(i32, Option<i32>, Option<String>)> {
    let pg = db.client().await;
    let mut out = Vec::new();
    for url in urls {
        let rows = pg
            .query(
                "select a.attempt, a.http_status, a.error_class from webhook_delivery_attempts a \
                 join webhook_deliveries d on d.id = a.delivery_id \
                 where d.event_id = $1 and d.target_key = $2 order by a.attempt",
                &[&event_id, &target_key(url)],
            )
            .await
            .unwrap();
        out.extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
    }
    out
}

pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
