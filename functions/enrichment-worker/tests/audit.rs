//! Regression tests of the enrichment audit: one note per run whatever a
//! retry composes, 504 as uncertain, provider error bodies never cached as
//! "not found", phone_global used, the invocation deadline, runs never
//! reopened, give-ups marked retryable, hashed and purged lookup keys.

mod common;

use common::*;
use crm_domain::enrichment::store;
use crm_testkit::TestDb;
use enrichment_worker::{Outcome, cache_key, handle};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

async fn notes(pg: &tokio_postgres::Client) -> Vec<(String, String, Option<i32>)> {
    pg.query(
        "select status, body, http_status from enrichment_notes order by created_at",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_retry_after_an_uncertain_attempt_posts_nothing_even_when_it_composes_other_text() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a1", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a1", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));
    // The first attempt recorded its intent with the text it composed then
    // (e.g. before a lookup failed or the lead changed) and died mid-call.
    let run: uuid::Uuid = pg
        .query_one(
            "insert into enrichment_runs (event_id, lead_id, hook_action) values ($1, 'lead-a1', 'on_create_lead') returning id",
            &[&event],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into enrichment_notes (lead_id, run_id, body, body_sha256, status, attempts, attempted_at) \
         values ('lead-a1', $1, 'an earlier text', encode(sha256('an earlier text'::bytea), 'hex'), 'pending', 1, \
                 now() - interval '1 hour')",
        &[&run],
    )
    .await
    .unwrap();

    assert_eq!(
        run_job(&deps, event, "lead-a1", "on_create_lead", 2).await,
        Outcome::Done
    );
    let n = notes(&pg).await;
    assert_eq!(n.len(), 1, "no second note for the same event: {n:?}");
    assert_eq!(n[0].0, "uncertain");
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "partial");
    assert!(error.unwrap().contains("note post uncertain"));
}

#[tokio::test]
async fn a_retry_after_a_failed_post_reposts_the_stored_text_not_a_recomposed_one() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a2", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a2", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    diretrix(&m, EMAIL_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.c2s)
        .await;
    c2s_accepts(&m, "lead-a2", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert!(matches!(
        run_job(&deps, event, "lead-a2", "on_create_lead", 1).await,
        Outcome::Retry { .. }
    ));
    // The lead gains an e-mail before the retry: the note it would compose now differs.
    upsert_lead(
        &pg,
        &LeadFixture::new(
            "lead-a2",
            Some("maria.silva@gmail.com"),
            Some("11987654321"),
        ),
    )
    .await;
    assert_eq!(
        run_job(&deps, event, "lead-a2", "on_create_lead", 2).await,
        Outcome::Done
    );
    let n = notes(&pg).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].0, "posted");
    let bodies: Vec<Value> = m
        .c2s
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1], "the retry posts the stored text");
    assert_eq!(bodies[1]["body"], json!(n[0].1));
}

#[tokio::test]
async fn a_c2s_504_is_uncertain_flagged_and_never_repeated() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a3", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a3", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(504))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead-a3", "on_create_lead", 1).await,
        Outcome::Done
    );
    let n = notes(&pg).await;
    assert_eq!((n[0].0.as_str(), n[0].2), ("uncertain", Some(504)));
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "partial");
    assert!(error.unwrap().contains("HTTP 504"));
    // Redelivered: nothing posted again.
    assert_eq!(
        run_job(&deps, event, "lead-a3", "on_create_lead", 2).await,
        Outcome::Done
    );
}

#[tokio::test]
async fn a_work_api_error_body_is_not_cached_as_no_data() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a4", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a4", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": false, "mensagem": "Token inválido"})),
        )
        .expect(1)
        .mount(&m.work)
        .await;
    c2s_accepts(&m, "lead-a4", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead-a4", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "partial");
    let error = error.unwrap();
    assert!(error.contains("Work API"), "{error}");
    assert!(!error.contains("has no data"), "{error}");
    let work_key = cache_key("work:cpf", CPF_A);
    let cached: i64 = pg
        .query_one(
            "select count(*) from enrichment_lookups where key = $1",
            &[&work_key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cached, 0, "an error is never cached as data");
}

#[tokio::test]
async fn a_diretrix_404_that_is_not_an_empty_list_is_an_error_not_no_cpf() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a5", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a5", "on_create_lead").await;
    // A wrong base path: the server's own 404 page.
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(404).set_body_string("<html>Not Found</html>"))
        .expect(1)
        .mount(&m.diretrix)
        .await;
    let d = deps(&db, config(Some(&m), &[]));
    assert_eq!(
        run_job(&d, event, "lead-a5", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(error.contains("phone: lookup failed"), "{error}");
    assert_eq!(
        count(&pg, "select count(*) from enrichment_lookups").await,
        0,
        "not cached"
    );

    // A 404 carrying an explicit empty list is "not found", cached.
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a5", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a5", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!([])))
        .expect(1)
        .mount(&m.diretrix)
        .await;
    let d = deps(&db, config(Some(&m), &[]));
    assert_eq!(
        run_job(&d, event, "lead-a5", "on_create_lead", 1).await,
        Outcome::Done
    );
    let error = event_row(&pg, event).await.1.unwrap();
    assert!(error.contains("phone: not found"), "{error}");
    assert_eq!(
        count(&pg, "select count(*) from enrichment_lookups").await,
        1
    );
}

#[tokio::test]
async fn phone_global_is_looked_up_when_phone_and_phone2_are_not_usable() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a6", None, None)).await;
    pg.execute(
        "update c2s_leads set customer_phone2 = 'n/a', customer_phone_global = '+55 11 98765-4321' where id = 'lead-a6'",
        &[],
    )
    .await
    .unwrap();
    let event = insert_event(&pg, "lead-a6", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-a6", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));
    assert_eq!(
        run_job(&deps, event, "lead-a6", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, _) = event_row(&pg, event).await;
    assert_ne!(status, "failed");
    let (_, identity, _, validation, _) = run_row(&pg, event).await;
    assert_eq!(identity.as_deref(), Some("phone_only"));
    assert_eq!(validation["phone"]["valid"], json!(true));
}

#[tokio::test]
async fn waiting_on_another_workers_lookup_stops_at_the_deadline() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a7", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a7", "on_create_lead").await;
    // Another worker holds the phone's lookup (its lease is 2 × 3 s + 10 s).
    pg.execute(
        "insert into enrichment_lookups (key, state, lease_until, expires_at) \
         values ($1, 'pending', now() + interval '16 seconds', now() + interval '1 day')",
        &[&cache_key("diretrix:phone", "+5511987654321")],
    )
    .await
    .unwrap();
    let mut deps = deps(&db, config(Some(&m), &[]));
    deps.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let outcome = run_job(&deps, event, "lead-a7", "on_create_lead", 1).await;
    assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(event_row(&pg, event).await.0, "received");
}

#[tokio::test]
async fn the_c2s_post_is_not_started_without_the_time_to_finish_it() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a8", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a8", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&m.c2s)
        .await;
    let mut deps = deps(
        &db,
        config(
            Some(&m),
            &[
                ("DIRETRIX_TIMEOUT_MS", "1000"),
                ("WORK_API_TIMEOUT_MS", "1000"),
                ("C2S_TIMEOUT_MS", "20000"),
            ],
        ),
    );
    deps.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(8));
    let outcome = run_job(&deps, event, "lead-a8", "on_create_lead", 1).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.contains("not enough time")),
        "{outcome:?}"
    );
    assert_eq!(notes(&pg).await.len(), 0, "no intent recorded");
    assert_eq!(event_row(&pg, event).await.0, "received");
}

#[tokio::test]
async fn a_finished_event_never_gets_its_run_reopened() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-a9", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-a9", "on_create_lead").await;
    let deps = deps_local(&db);
    let c = deps.pool.get().await.unwrap();
    let run = store::start_run(&c, event, "lead-a9", "on_create_lead", &"a".repeat(64))
        .await
        .unwrap()
        .expect("received: started");
    let reasons: [String; 0] = [];
    store::finish(
        &c,
        run.id,
        event,
        &store::Finish {
            status: "completed",
            identity: Some("phone_only"),
            validation: None,
            reasons: &reasons,
            error: None,
        },
    )
    .await
    .unwrap();
    // A duplicate delivery that read `received` before the finish.
    assert_eq!(
        store::start_run(&c, event, "lead-a9", "on_create_lead", &"a".repeat(64))
            .await
            .unwrap(),
        None
    );
    let (status, _, _, _, attempts) = run_row(&pg, event).await;
    assert_eq!((status.as_str(), attempts), ("completed", 1));
}

#[tokio::test]
async fn a_give_up_is_marked_retryable_and_a_final_failure_is_not() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-b1", None, Some("11987654321"))).await;
    let gave_up = insert_event(&pg, "lead-b1", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&m.diretrix)
        .await;
    diretrix(&m, PHONE_PATH, json!([]), 1).await;
    let deps = deps(&db, config(Some(&m), &[("ENRICHMENT_MAX_ATTEMPTS", "1")]));
    assert!(matches!(
        run_job(&deps, gave_up, "lead-b1", "on_create_lead", 1).await,
        Outcome::DeadLetter { .. }
    ));
    let final_fail = insert_event(&pg, "lead-b1", "on_create_lead").await;
    assert_eq!(
        run_job(&deps, final_fail, "lead-b1", "on_create_lead", 1).await,
        Outcome::Done
    );
    let code = |id| {
        let pg = &pg;
        async move {
            let r = pg
                .query_one(
                    "select status, error_code from webhook_events where id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (r.get::<_, String>(0), r.get::<_, Option<String>>(1))
        }
    };
    assert_eq!(
        code(gave_up).await,
        ("failed".into(), Some("gave_up".into()))
    );
    assert_eq!(code(final_fail).await, ("failed".into(), None));
}

#[tokio::test]
async fn lookup_keys_are_hashed_and_expired_rows_purged() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-b2", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-b2", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-b2", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));
    assert_eq!(
        run_job(&deps, event, "lead-b2", "on_create_lead", 1).await,
        Outcome::Done
    );
    let keys: Vec<String> = pg
        .query("select key from enrichment_lookups order by key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        assert!(
            !k.contains("987654321") && !k.contains(CPF_A),
            "no datum in clear: {k}"
        );
    }
    // One expires; an invocation purges it and keeps the live one.
    pg.execute(
        "update enrichment_lookups set expires_at = now() - interval '1 second' where key = $1",
        &[&keys[0]],
    )
    .await
    .unwrap();
    handle(sqs_event(vec![]), &deps).await;
    let left: Vec<String> = pg
        .query("select key from enrichment_lookups", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec![keys[1].clone()]);
}
