//! The enrichment worker when things go wrong: retries with backoff and the
//! DLQ with the reason on the event, errors inside 200 answers, a note never
//! posted twice (provable failure, timeout, crash mid-call), and paid lookups
//! deduplicated across concurrent workers.

mod common;

use common::*;
use crm_testkit::TestDb;
use enrichment_worker::{Outcome, handle};
use serde_json::json;
use std::time::Duration;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{basic_auth, method, path, query_param},
};

#[tokio::test]
async fn diretrix_5xx_is_retried_with_backoff_then_the_event_shows_why_and_the_message_dead_letters()
 {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-8", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-8", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(4)
        .mount(&m.diretrix)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));

    let body = job_body(event, "lead-8", "on_create_lead");
    for receive in 1..=2u32 {
        let resp = handle(
            sqs_event(vec![record(
                "enrichment-worker/create-lead.json",
                "m-8",
                &body,
                receive,
            )]),
            &deps,
        )
        .await;
        assert_eq!(
            failures(&resp),
            vec!["m-8".to_string()],
            "receive {receive}"
        );
        assert_eq!(event_row(&pg, event).await.0, "received");
    }
    // The claim was released after each failure: nothing left pending.
    let pending: i64 = pg
        .query_one("select count(*) from enrichment_lookups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    assert!(
        matches!(run_job(&deps, event, "lead-8", "on_create_lead", 2).await, Outcome::Retry { delay, .. } if delay == Duration::from_secs(60))
    );
    // The last receive (ENRICHMENT_MAX_ATTEMPTS = 3): the event records why, SQS gets a failure (→ DLQ).
    let resp = handle(
        sqs_event(vec![record(
            "enrichment-worker/create-lead.json",
            "m-8",
            &body,
            3,
        )]),
        &deps,
    )
    .await;
    assert_eq!(failures(&resp), vec!["m-8".to_string()]);
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "failed",
            Some("gave up after 3 attempts: Diretrix answered HTTP 503")
        )
    );
    let (run_status, _, reasons, _, attempts) = run_row(&pg, event).await;
    assert_eq!((run_status.as_str(), attempts), ("failed", 4));
    assert_eq!(
        reasons,
        json!(["gave up after 3 attempts: Diretrix answered HTTP 503"])
    );
}

#[tokio::test]
async fn work_api_errors_inside_a_200_are_never_data() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-9", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-9", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": 429, "mensagem": "Créditos insuficientes"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.work)
        .await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.work)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));

    let first = run_job(&deps, event, "lead-9", "on_create_lead", 1).await;
    assert!(
        matches!(&first, Outcome::Retry { reason, .. } if reason.contains("status 429 inside a 200")),
        "{first:?}"
    );
    let second = run_job(&deps, event, "lead-9", "on_create_lead", 2).await;
    assert!(
        matches!(&second, Outcome::Retry { reason, .. } if reason == "Work API answered HTTP 429"),
        "{second:?}"
    );
    let parties: i64 = pg
        .query_one("select count(*) from parties", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(parties, 0);
    assert!(m.c2s.received_requests().await.unwrap().is_empty());
    // The Diretrix answer was kept for the window: asked once across both receives.
}

#[tokio::test]
async fn a_c2s_5xx_is_retried_and_the_note_posted_once_without_paying_again() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new(
            "lead-10",
            Some("maria.silva@gmail.com"),
            Some("11987654321"),
        ),
    )
    .await;
    let event = insert_event(&pg, "lead-10", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    diretrix(&m, EMAIL_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.c2s)
        .await;
    c2s_accepts(&m, "lead-10", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    let first = run_job(&deps, event, "lead-10", "on_create_lead", 1).await;
    assert!(
        matches!(&first, Outcome::Retry { reason, .. } if reason == "C2S answered HTTP 502"),
        "{first:?}"
    );
    let n = pg
        .query_one(
            "select status, attempts, http_status from enrichment_notes",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            n.get::<_, String>(0),
            n.get::<_, i32>(1),
            n.get::<_, Option<i32>>(2)
        ),
        ("failed".into(), 1, Some(502))
    );
    assert_eq!(event_row(&pg, event).await.0, "received");

    assert_eq!(
        run_job(&deps, event, "lead-10", "on_create_lead", 2).await,
        Outcome::Done
    );
    let n = pg
        .query_one("select status, attempts from enrichment_notes", &[])
        .await
        .unwrap();
    assert_eq!(
        (n.get::<_, String>(0), n.get::<_, i32>(1)),
        ("posted".into(), 2)
    );
    assert_eq!(event_row(&pg, event).await.0, "completed");
    // Both posts carried the same note.
    let bodies: Vec<Vec<u8>> = m
        .c2s
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
}

#[tokio::test]
async fn an_uncertain_post_is_flagged_and_never_repeated() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-11", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-11", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    // C2S takes longer than C2S_TIMEOUT_MS: it may have stored the note.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[("C2S_TIMEOUT_MS", "300")]));

    assert_eq!(
        run_job(&deps, event, "lead-11", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "partial");
    assert_eq!(
        error.as_deref(),
        Some("note post uncertain (C2S timed out): flagged, not repeated")
    );
    let n: String = pg
        .query_one("select status from enrichment_notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, "uncertain");

    // The same lead created again (a second event, same data): the same note is not posted again.
    let again = insert_event(&pg, "lead-11", "on_create_lead").await;
    assert_eq!(
        run_job(&deps, again, "lead-11", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, again).await;
    assert_eq!(status, "partial");
    assert!(
        error
            .unwrap()
            .contains("note post uncertain: an earlier attempt's outcome is unknown")
    );
}

#[tokio::test]
async fn a_crash_mid_post_leaves_an_intent_that_becomes_uncertain_not_a_second_post() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-12", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-12", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));
    // Simulate the crash: the first receive recorded its intent and died during the call.
    let run: uuid::Uuid = pg
        .query_one(
            "insert into enrichment_runs (event_id, lead_id, hook_action) values ($1, 'lead-12', 'on_create_lead') returning id",
            &[&event],
        )
        .await
        .unwrap()
        .get(0);
    // The note the worker composes for this lead (the same data make the same note).
    pg.execute(
        "insert into enrichment_notes (lead_id, run_id, body, body_sha256, status, attempts, attempted_at) \
         select 'lead-12', $1, b, encode(sha256(convert_to(b, 'UTF8')), 'hex'), 'pending', 1, now() - interval '1 hour' \
         from (select $2::text as b) x",
        &[&run, &expected_phone_only_note()],
    )
    .await
    .unwrap();

    assert_eq!(
        run_job(&deps, event, "lead-12", "on_create_lead", 2).await,
        Outcome::Done
    );
    let n = pg
        .query_one("select status, error from enrichment_notes", &[])
        .await
        .unwrap();
    assert_eq!(n.get::<_, String>(0), "uncertain");
    assert!(
        n.get::<_, String>(1)
            .starts_with("uncertain: an earlier attempt's outcome is unknown")
    );
    assert_eq!(event_row(&pg, event).await.0, "partial");
}

#[tokio::test]
async fn concurrent_workers_on_the_same_phone_make_one_paid_lookup() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    // Slow answers: every worker is in flight while the first call runs.
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .and(basic_auth(USER, PASS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"nome": "MARIA", "cpf": CPF_A}]))
                .set_delay(Duration::from_millis(400)),
        )
        .expect(1)
        .mount(&m.diretrix)
        .await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .and(query_param("consulta", CPF_A))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(work_body(CPF_A, "MARIA DA SILVA"))
                .set_delay(Duration::from_millis(400)),
        )
        .expect(1)
        .mount(&m.work)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(4)
        .mount(&m.c2s)
        .await;
    let mut jobs = Vec::new();
    for i in 0..4 {
        let id = format!("lead-c{i}");
        upsert_lead(&pg, &LeadFixture::new(&id, None, Some("(11) 98765-4321"))).await;
        let event = insert_event(&pg, &id, "on_create_lead").await;
        // Each worker its own pool and clients, as separate Lambda instances.
        jobs.push((deps(&db, config(Some(&m), &[])), event, id));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (deps, event, id) in jobs {
        tasks.spawn(async move { (event, run_job(&deps, event, &id, "on_create_lead", 1).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (event, outcome) = done.unwrap();
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(event_row(&pg, event).await.0, "completed");
    }
    let row = pg
        .query_one(
            "select calls, state from enrichment_lookups where key = $1",
            &[&enrichment_worker::cache_key(
                "diretrix:phone",
                "+5511987654321",
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (1, "done".to_string())
    );
    let parties: i64 = pg
        .query_one("select count(*) from parties", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(parties, 1);
}

#[tokio::test]
async fn an_expired_lookup_is_paid_for_again() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    diretrix(&m, PHONE_PATH, json!([]), 2).await;
    let deps = deps(&db, config(Some(&m), &[("LOOKUP_DEDUP_WINDOW_SECS", "60")]));
    for (i, expire) in [(0, true), (1, false)] {
        let id = format!("lead-e{i}");
        upsert_lead(&pg, &LeadFixture::new(&id, None, Some("11987654321"))).await;
        let event = insert_event(&pg, &id, "on_create_lead").await;
        assert_eq!(
            run_job(&deps, event, &id, "on_create_lead", 1).await,
            Outcome::Done
        );
        if expire {
            pg.execute(
                "update enrichment_lookups set expires_at = now() - interval '1 second'",
                &[],
            )
            .await
            .unwrap();
        }
    }
    let calls: i32 = pg
        .query_one("select calls from enrichment_lookups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(calls, 2);
}

#[tokio::test]
async fn a_malformed_message_is_recorded_and_dead_lettered_while_the_batch_goes_on() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    let deps = deps(&db, config(Some(&m), &[]));
    let sample: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&crm_testkit::event("enrichment-worker/mixed-batch.json")).unwrap();
    // The first record names an event that does not exist here: recorded and acknowledged.
    let resp = handle(sample, &deps).await;
    assert_eq!(
        failures(&resp),
        vec!["7a1e0c2a-8b3d-4e6f-9a1b-2c3d4e5f0004".to_string()]
    );
    let rows: Vec<(String, String)> = pg
        .query("select message_id, reason from poison_messages where queue = 'enrichment' order by message_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1, "the event does not exist");
    assert!(rows[1].1.starts_with("not JSON"), "{}", rows[1].1);
}

#[tokio::test]
async fn a_failed_event_the_webhook_takes_over_runs_again_on_the_same_run() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-17", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-17", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.diretrix)
        .await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-17", 1).await;
    let deps = deps(&db, config(Some(&m), &[("ENRICHMENT_MAX_ATTEMPTS", "1")]));

    // One attempt allowed: given up, the event failed with why.
    assert!(matches!(
        run_job(&deps, event, "lead-17", "on_create_lead", 1).await,
        Outcome::DeadLetter { .. }
    ));
    assert_eq!(event_row(&pg, event).await.0, "failed");
    // C2S redelivers the element; the webhook takes the failed key over (received again, same event id).
    pg.execute("update webhook_events set status = 'received', error = null, processed_at = null where id = $1", &[&event])
        .await
        .unwrap();
    assert_eq!(
        run_job(&deps, event, "lead-17", "on_create_lead", 1).await,
        Outcome::Done
    );
    assert_eq!(event_row(&pg, event).await, ("completed".to_string(), None));
    let (status, _, reasons, _, attempts) = run_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), attempts, reasons),
        ("completed", 2, json!([]))
    );
}

#[tokio::test]
async fn the_same_job_delivered_twice_at_once_posts_one_note() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead-dup", None, Some("11987654321")),
    )
    .await;
    let event = insert_event(&pg, "lead-dup", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    // A slow C2S: the second copy arrives while the first is posting.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(500)))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let (a, b) = (
        deps(&db, config(Some(&m), &[])),
        deps(&db, config(Some(&m), &[])),
    );
    let (first, second) = tokio::join!(
        run_job(&a, event, "lead-dup", "on_create_lead", 1),
        run_job(&b, event, "lead-dup", "on_create_lead", 1)
    );
    for (outcome, deps) in [(first, &a), (second, &b)] {
        if matches!(outcome, Outcome::Retry { .. }) {
            // Redelivered after its backoff: the event is finished by then.
            assert_eq!(
                run_job(deps, event, "lead-dup", "on_create_lead", 2).await,
                Outcome::Done
            );
        } else {
            assert_eq!(outcome, Outcome::Done);
        }
    }
    assert_eq!(event_row(&pg, event).await, ("completed".to_string(), None));
    let notes: i64 = pg
        .query_one(
            "select count(*) from enrichment_notes where status = 'posted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 1);
}
