//! POST /api/v1/webhooks/c2s against a fresh PostgreSQL database per test,
//! with the same `events/c2s-webhook/*.json` that `cargo lambda invoke` uses.

mod common;

use common::*;
use crm_domain::{
    c2s,
    jobs::{EnrichLead, EnrichmentJob},
};
use crm_testkit::TestDb;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

const LEAD: &str = "6f1c2a9e0b7d4e3f";

fn outcomes(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_flat_create_records_the_event_upserts_the_lead_and_enqueues_one_job() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["received"].as_i64(),
            body["accepted"].as_i64(),
            body["duplicate"].as_i64(),
            body["invalid"].as_i64()
        ),
        (Some(1), Some(1), Some(0), Some(0))
    );
    let r = &body["results"][0];
    assert_eq!(r["outcome"], "accepted");
    assert_eq!(r["index"], 0);
    assert_eq!(r["lead_id"], LEAD);
    assert_eq!(r["hook_action"], "on_create_lead");
    assert_eq!(r["lead_updated"], true);
    assert_eq!(
        r["idempotency_key"],
        format!("c2s:{LEAD}:on_create_lead:2026-11-20T17:05:12Z")
    );
    let event_id = Uuid::parse_str(r["event_id"].as_str().unwrap()).unwrap();

    let pg = db.client().await;
    let ev = pg
        .query_one(
            "select id, status, event_type, subject_id, idempotency_key, processed_at is null, payload->>'id' \
             from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ev.get::<_, Uuid>(0), event_id);
    assert_eq!(ev.get::<_, String>(1), "received", "the worker finishes it");
    assert_eq!(ev.get::<_, String>(2), "on_create_lead");
    assert_eq!(ev.get::<_, String>(3), LEAD);
    assert_eq!(
        ev.get::<_, String>(4),
        r["idempotency_key"].as_str().unwrap()
    );
    assert!(ev.get::<_, bool>(5));
    assert_eq!(ev.get::<_, String>(6), LEAD);

    let lead = pg
        .query_one(
            "select customer_name, customer_email, customer_phone, customer_phone2, customer_phone_global, \
                    seller_id, price_cents, city, neighbourhood, status_alias, lead_source, channel, \
                    to_char(c2s_created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
                    last_hook_action, closed_at is null, contact_hash, attributes->'product'->>'price' \
             from c2s_leads where id = $1",
            &[&LEAD],
        )
        .await
        .unwrap();
    assert_eq!(lead.get::<_, String>(0), "Mariana Costa");
    assert_eq!(lead.get::<_, String>(1), "mariana.costa@example.com.br");
    assert_eq!(lead.get::<_, String>(2), "(11) 98765-4321");
    assert_eq!(lead.get::<_, Option<String>>(3), None);
    assert_eq!(lead.get::<_, String>(4), "+5511987654321");
    assert_eq!(lead.get::<_, String>(5), "s-2041");
    assert_eq!(lead.get::<_, i64>(6), 35_000_000);
    assert_eq!(lead.get::<_, String>(7), "São Paulo");
    assert_eq!(lead.get::<_, String>(8), "Moema");
    assert_eq!(lead.get::<_, String>(9), "novo");
    assert_eq!(lead.get::<_, String>(10), "Portal ZAP Imóveis");
    assert_eq!(lead.get::<_, String>(11), "whatsapp");
    assert_eq!(lead.get::<_, String>(12), "2026-11-20 17:05:12");
    assert_eq!(lead.get::<_, String>(13), "on_create_lead");
    assert!(lead.get::<_, bool>(14));
    assert_eq!(
        lead.get::<_, String>(15),
        c2s::contact_hash_phones(
            Some("Mariana Costa"),
            Some("mariana.costa@example.com.br"),
            &[Some("(11) 98765-4321"), None, Some("+5511987654321")]
        )
    );
    assert_eq!(
        lead.get::<_, String>(16),
        "350.000,00",
        "raw attributes kept"
    );

    let jobs = pg
        .query(
            "select body::text from outbox where queue = 'enrichment'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        EnrichmentJob::parse(&jobs[0].get::<_, String>(0)).unwrap(),
        EnrichmentJob::EnrichLead(EnrichLead {
            v: 1,
            event_id,
            lead_id: LEAD.into(),
            hook_action: "on_create_lead".into(),
        })
    );
    assert_eq!(totals(&pg).await, (1, 0, 1, 1));
}

#[tokio::test]
async fn each_wrapping_moves_the_lead_forward_to_closed() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    for name in ["create-flat.json", "update-data.json", "close-lead.json"] {
        let (status, body) = send_sample(&deps, name).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(outcomes(&body), ["accepted"], "{name}");
        assert_eq!(body["results"][0]["lead_updated"], true, "{name}");
        assert_eq!(body["results"][0]["lead_id"], LEAD, "{name}");
    }
    let pg = db.client().await;
    let lead = pg
        .query_one(
            "select status_alias, last_hook_action, \
                    to_char(closed_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI'), \
                    to_char(c2s_updated_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI'), \
                    done_details->>'reason', \
                    to_char(c2s_created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI') \
             from c2s_leads",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(lead.get::<_, String>(0), "vendido");
    assert_eq!(lead.get::<_, String>(1), "on_close_lead");
    assert_eq!(lead.get::<_, String>(2), "2026-11-22 19:45");
    assert_eq!(lead.get::<_, String>(3), "2026-11-22 19:45");
    assert_eq!(lead.get::<_, String>(4), "Proposta aceita");
    assert_eq!(lead.get::<_, String>(5), "2026-11-20 17:05");
    let actions: Vec<String> = pg
        .query(
            "select body->>'hook_action' from outbox where queue = 'enrichment' order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        ["on_create_lead", "on_update_lead", "on_close_lead"]
    );
    assert_eq!(totals(&pg).await, (3, 0, 1, 3));
}

#[tokio::test]
async fn an_older_element_is_recorded_and_queued_but_does_not_overwrite_the_lead() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send_sample(&deps, "update-data.json").await;
    assert_eq!(first["results"][0]["lead_updated"], true);
    let (status, late) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200);
    assert_eq!(outcomes(&late), ["accepted"]);
    assert_eq!(late["results"][0]["lead_updated"], false);
    let pg = db.client().await;
    let (alias, action): (String, String) = {
        let r = pg
            .query_one("select status_alias, last_hook_action from c2s_leads", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(alias, "em_atendimento", "the newer update stands");
    assert_eq!(action, "on_update_lead");
    let stored: bool = pg
        .query_one(
            "select (result->>'lead_updated')::boolean from webhook_events where event_type = 'on_create_lead'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!stored);
    assert_eq!(totals(&pg).await, (2, 0, 1, 2));
}

#[tokio::test]
async fn a_replay_is_a_duplicate_and_writes_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send_sample(&deps, "create-flat.json").await;
    // The same element again, in another wrapping and authenticated through the URL.
    let mut rewrapped = sample("query-token.json");
    let el = sample_body("create-flat.json");
    rewrapped["body"] = json!(
        json!({"hook_action": el["hook_action"], "lead": {"id": el["id"], "attributes": el["attributes"]}})
            .to_string()
    );
    rewrapped["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    for req in [
        request(&crm_testkit::event("c2s-webhook/create-flat.json")),
        request(&rewrapped.to_string()),
    ] {
        let (status, body) = send(&deps, req).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(outcomes(&body), ["duplicate"]);
        let r = &body["results"][0];
        assert_eq!(r["event_id"], first["results"][0]["event_id"]);
        assert_eq!(r["status"], "received");
        assert_eq!(r["idempotency_key"], first["results"][0]["idempotency_key"]);
        assert_eq!(body["duplicate"], 1);
    }
    let pg = db.client().await;
    assert_eq!(totals(&pg).await, (1, 0, 1, 1));
    // Still a duplicate once the worker has finished it.
    pg.execute(
        "update webhook_events set status = 'completed', processed_at = now()",
        &[],
    )
    .await
    .unwrap();
    let (_, again) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(outcomes(&again), ["duplicate"]);
    assert_eq!(again["results"][0]["status"], "completed");
    assert_eq!(totals(&pg).await, (1, 0, 1, 1));
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_an_invalid_element() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    send_sample(&deps, "create-flat.json").await;
    let mut el = sample_body("create-flat.json");
    el["attributes"]["customer"]["name"] = json!("Outra Pessoa");
    let (status, body) = send(&deps, post_json(&el)).await;
    assert_eq!(status, 200, "C2S always gets 200: {body}");
    let r = &body["results"][0];
    assert_eq!(r["outcome"], "invalid");
    assert_eq!(r["code"], "idempotency_key_reused");
    assert_eq!(r["lead_id"], LEAD);
    assert_eq!(body["invalid"], 1);
    let pg = db.client().await;
    let name: String = pg
        .query_one("select customer_name from c2s_leads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Mariana Costa");
    let rej = pg
        .query_one(
            "select offered_key, error_code, subject_id, idempotency_key is null from webhook_events \
             where status = 'rejected'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rej.get::<_, String>(0),
        r["idempotency_key"].as_str().unwrap()
    );
    assert_eq!(rej.get::<_, String>(1), "idempotency_key_reused");
    assert_eq!(rej.get::<_, String>(2), LEAD);
    assert!(rej.get::<_, bool>(3));
    assert_eq!(totals(&pg).await, (1, 1, 1, 1));
}

#[tokio::test]
async fn an_array_answers_each_element_accepted_invalid_or_duplicate() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send_sample(&deps, "array-mixed.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        outcomes(&body),
        ["accepted", "invalid", "duplicate", "accepted"]
    );
    assert_eq!(
        (
            body["received"].as_i64(),
            body["accepted"].as_i64(),
            body["duplicate"].as_i64(),
            body["invalid"].as_i64()
        ),
        (Some(4), Some(2), Some(1), Some(1))
    );
    let bad = &body["results"][1];
    assert_eq!(bad["code"], "validation_failed");
    assert_eq!(bad["field"], "hook_action");
    assert_eq!(bad["lead_id"], "0c5a7f9e3b4d6c8a");
    assert_eq!(bad["index"], 1);
    assert_eq!(
        body["results"][2]["event_id"],
        body["results"][0]["event_id"]
    );
    assert_eq!(body["results"][3]["lead_id"], "9b4f6e8d2a3c5b7f");
    let pg = db.client().await;
    assert_eq!(totals(&pg).await, (2, 1, 2, 2));
    let rej = pg
        .query_one(
            "select subject_id, event_type, http_status, error_code, error, idempotency_key is null, \
                    payload is null from webhook_events where status = 'rejected'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rej.get::<_, String>(0), "0c5a7f9e3b4d6c8a");
    assert_eq!(rej.get::<_, Option<String>>(1), None);
    assert_eq!(rej.get::<_, i32>(2), 422);
    assert_eq!(rej.get::<_, String>(3), "validation_failed");
    assert_eq!(rej.get::<_, String>(4), "hook_action is required");
    assert!(
        rej.get::<_, bool>(5) && rej.get::<_, bool>(6),
        "holds no key, keeps no body"
    );
    let price: Option<i64> = pg
        .query_one(
            "select price_cents from c2s_leads where id = '8a3e5d7c1f2b4a6e'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(price, Some(125_000_000));
    let email: Option<String> = pg
        .query_one(
            "select customer_email from c2s_leads where id = '8a3e5d7c1f2b4a6e'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, None, "an empty e-mail is stored as null");

    // The whole array again: nothing new but another receipt of the invalid element.
    let (_, again) = send_sample(&deps, "array-mixed.json").await;
    assert_eq!(
        outcomes(&again),
        ["duplicate", "invalid", "duplicate", "duplicate"]
    );
    assert_eq!(totals(&pg).await, (2, 2, 2, 2));
}

#[tokio::test]
async fn ten_concurrent_identical_posts_write_one_event_one_lead_one_job() {
    let db = TestDb::new().await;
    let deps = Arc::new(deps_with_pool(&db, 10));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let deps = deps.clone();
        tasks.push(tokio::spawn(async move {
            send_sample(&deps, "create-flat.json").await
        }));
    }
    let mut seen = Vec::new();
    let mut event_ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        seen.push(body["results"][0]["outcome"].as_str().unwrap().to_string());
        event_ids.insert(body["results"][0]["event_id"].as_str().unwrap().to_string());
    }
    seen.sort();
    let mut want = vec!["accepted".to_string()];
    want.extend(std::iter::repeat_n("duplicate".to_string(), 9));
    assert_eq!(seen, want);
    assert_eq!(event_ids.len(), 1, "every answer names the one event");
    let pg = db.client().await;
    assert_eq!(totals(&pg).await, (1, 0, 1, 1));
}

#[tokio::test]
async fn the_token_is_accepted_from_the_url_query() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send_sample(&deps, "query-token.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(outcomes(&body), ["accepted"]);
    let pg = db.client().await;
    assert_eq!(totals(&pg).await, (1, 0, 1, 1));
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_401_and_only_the_rejection_is_recorded() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send_sample(&deps, "bad-token.json").await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "invalid signature", "code": "signature_invalid"})
    );

    let el = sample_body("create-flat.json").to_string();
    let (status, body) = send(&deps, post(&el, &[("x-webhook-token", None)])).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "signature_missing");

    // A wrong header is not rescued by a right URL token.
    let mut ev = sample("query-token.json");
    ev["headers"]["x-webhook-token"] = json!("wrong");
    let (status, body) = send(&deps, request(&ev.to_string())).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "signature_invalid");

    let pg = db.client().await;
    // Refusals before authentication are a log line, never a row (issue 13).
    assert_eq!(totals(&pg).await, (0, 0, 0, 0));
    let rows = pg
        .query(
            "select http_status, payload is null, idempotency_key is null, subject_id is null \
             from webhook_events",
            &[],
        )
        .await
        .unwrap();
    for r in rows {
        assert_eq!(r.get::<_, i32>(0), 401);
        assert!(r.get::<_, bool>(1) && r.get::<_, bool>(2) && r.get::<_, bool>(3));
    }
}

#[tokio::test]
async fn a_failed_event_is_processed_again_when_resent() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send_sample(&deps, "create-flat.json").await;
    let pg = db.client().await;
    // The enrichment worker gave up on it (retryable: error_code gave_up).
    pg.execute(
        "update webhook_events set status = 'failed', error = 'gave up after 5 attempts: lookup failed', \
                error_code = 'gave_up', processed_at = now()",
        &[],
    )
    .await
    .unwrap();
    let (status, body) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200);
    assert_eq!(outcomes(&body), ["accepted"]);
    assert_eq!(
        body["results"][0]["event_id"],
        first["results"][0]["event_id"]
    );
    let ev = pg
        .query_one(
            "select status, attempts, error is null, processed_at is null from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ev.get::<_, String>(0), "received");
    assert_eq!(ev.get::<_, i32>(1), 2);
    assert!(ev.get::<_, bool>(2) && ev.get::<_, bool>(3));
    assert_eq!(
        totals(&pg).await,
        (1, 0, 1, 2),
        "a second job for the retry"
    );
}

#[tokio::test]
async fn a_final_failure_is_a_duplicate_when_resent() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send_sample(&deps, "create-flat.json").await;
    let pg = db.client().await;
    // The enrichment worker finished it as failed for good (no error_code).
    pg.execute(
        "update webhook_events set status = 'failed', error = 'no CPF found (phone: not found; e-mail: not found)', \
                processed_at = now(), received_at = now() - interval '1 hour'",
        &[],
    )
    .await
    .unwrap();
    let (status, body) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200);
    assert_eq!(outcomes(&body), ["duplicate"]);
    assert_eq!(body["results"][0]["status"], "failed");
    assert_eq!(
        body["results"][0]["event_id"],
        first["results"][0]["event_id"]
    );
    let ev = pg
        .query_one(
            "select status, attempts, error, processed_at is not null, received_at < now() - interval '30 minutes' \
             from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ev.get::<_, String>(0), "failed");
    assert_eq!(ev.get::<_, i32>(1), 1);
    assert_eq!(
        ev.get::<_, String>(2),
        "no CPF found (phone: not found; e-mail: not found)"
    );
    assert!(ev.get::<_, bool>(3) && ev.get::<_, bool>(4));
    assert_eq!(totals(&pg).await, (1, 0, 1, 1), "no second job");
}

#[tokio::test]
async fn our_failure_answers_500_records_failed_and_the_resend_is_processed() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // Make the lead upsert fail for this element only.
    pg.batch_execute(
        "alter table c2s_leads add constraint test_refuse_moema check (neighbourhood <> 'Moema')",
    )
    .await
    .unwrap();
    let array = json!([
        sample_body("array-mixed.json")[0],
        sample_body("create-flat.json")
    ]);
    let (status, body) = send(&deps, post_json(&array)).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"error": "Internal error", "code": "internal_error"})
    );
    let failed = pg
        .query_one(
            "select status, error_code, idempotency_key from webhook_events where status = 'failed'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(failed.get::<_, String>(1), "internal_error");
    assert_eq!(
        failed.get::<_, String>(2),
        "c2s:8a3e5d7c1f2b4a6e:on_create_lead:2026-11-22T09:00:00Z"
    );
    // Both elements are in Moema: the first failed and nothing after it ran.
    assert_eq!(count(&pg, "select count(*) from c2s_leads").await, 0);
    assert_eq!(count(&pg, "select count(*) from outbox").await, 0);

    pg.batch_execute("alter table c2s_leads drop constraint test_refuse_moema")
        .await
        .unwrap();
    let (status, body) = send(&deps, post_json(&array)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(outcomes(&body), ["accepted", "accepted"]);
    let attempts: i32 = pg
        .query_one(
            "select attempts from webhook_events where subject_id = '8a3e5d7c1f2b4a6e'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2);
    assert_eq!(totals(&pg).await, (2, 0, 2, 2));
}

#[tokio::test]
async fn whole_call_refusals_are_recorded_and_write_nothing_else() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let el = sample_body("create-flat.json");
    let too_many = Value::Array(vec![el.clone(); c2s::MAX_ELEMENTS + 1]).to_string();
    let huge = format!(
        "{{\"id\":\"x\",\"hook_action\":\"on_create_lead\",\"pad\":\"{}\"}}",
        "a".repeat(c2s::MAX_BODY_BYTES)
    );
    type Headers<'a> = Vec<(&'a str, Option<&'a str>)>;
    let cases: Vec<(String, Headers, u16, &str)> = vec![
        ("{not json".into(), vec![], 400, "malformed_json"),
        (
            el.to_string(),
            vec![("content-type", Some("text/plain"))],
            415,
            "unsupported_media_type",
        ),
        ("[]".into(), vec![], 422, "validation_failed"),
        ("\"hello\"".into(), vec![], 422, "validation_failed"),
        (too_many, vec![], 422, "validation_failed"),
        (huge, vec![], 413, "payload_too_large"),
    ];
    let n = cases.len() as i64;
    for (body, headers, want_status, want_code) in cases {
        let (status, answer) = send(&deps, post(&body, &headers)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (want_status, Some(want_code)),
            "{answer}"
        );
    }
    let pg = db.client().await;
    // The 413 is refused before authentication: a log line, not a row (issue 13).
    assert_eq!(totals(&pg).await, (0, n - 1, 0, 0));
}

#[tokio::test]
async fn other_methods_and_paths_are_refused() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let mut ev = sample("create-flat.json");
    ev["requestContext"]["http"]["method"] = json!("GET");
    let (status, body) = send(&deps, request(&ev.to_string())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let mut ev = sample("create-flat.json");
    ev["rawPath"] = json!("/api/v1/webhooks/c2sx");
    let (status, body) = send(&deps, request(&ev.to_string())).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}
