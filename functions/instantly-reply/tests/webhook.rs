//! Handler tests: the same `events/*.json` that `cargo lambda invoke` uses,
//! against a fresh PostgreSQL database per test.

use crm_domain::{
    Secret,
    signature::{Verifier, hmac_sha256_hex},
};
use crm_platform::{config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use instantly_reply::{Deps, handle};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

const SECRET: &str = "test-instantly-secret";

fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 8).unwrap()).unwrap(),
        verifier: Verifier::Secret(Secret::new(SECRET).unwrap()),
    }
}

fn request(event_json: &str) -> Request {
    lambda_http::request::from_str(event_json).expect("a valid API Gateway v2 event")
}

/// The native sample event with another body (re-signed) and header tweaks.
fn native_with(body: &str, headers: &[(&str, Option<&str>)]) -> Request {
    let mut ev: Value = serde_json::from_str(&event("instantly-reply/native.json")).unwrap();
    ev["body"] = json!(body);
    ev["headers"]["x-signature"] = json!(format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    ));
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    for (name, value) in headers {
        match value {
            Some(v) => ev["headers"][*name] = json!(v),
            None => {
                ev["headers"].as_object_mut().unwrap().remove(*name);
            }
        }
    }
    request(&ev.to_string())
}

fn native_body() -> Value {
    let ev: Value = serde_json::from_str(&event("instantly-reply/native.json")).unwrap();
    serde_json::from_str(ev["body"].as_str().unwrap()).unwrap()
}

async fn send(deps: &Deps, req: Request) -> (u16, Value) {
    let resp: Response<Body> = handle(req, deps).await;
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn native_reply_creates_contact_activities_and_a_qualified_deal() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, request(&event("instantly-reply/native.json"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["step"], "E:deal_created_and_logged");
    assert_eq!(
        body["idempotency_key"],
        "instantly:reply_received:5c2a9f4e-8d17-4b3a-b6e0-91f2c7a4d835"
    );
    assert_eq!(body["reply_status"], "meeting_request");
    assert_eq!(body["deal_stage"], "Qualified");
    for id in ["contact_id", "activity_id", "deal_id", "system_activity_id"] {
        assert!(
            uuid::Uuid::parse_str(body[id].as_str().unwrap()).is_ok(),
            "{id}"
        );
    }

    let pg = db.client().await;
    let c = pg
        .query_one(
            "select email, full_name, company, reply_status, reply_summary from contacts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(c.get::<_, String>(0), "maria.souza@example.com.br");
    assert_eq!(c.get::<_, String>(1), "Maria Souza");
    assert_eq!(c.get::<_, String>(2), "Souza Imóveis");
    assert_eq!(c.get::<_, String>(3), "meeting_request");
    assert_eq!(c.get::<_, String>(4), "Olá, Lucas, tudo bem?");
    let d = pg
        .query_one(
            "select d.id::text, s.name, d.status, d.title from deals d join pipeline_stages s on s.id = d.stage_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(d.get::<_, String>(0), body["deal_id"].as_str().unwrap());
    assert_eq!(d.get::<_, String>(1), "Qualified");
    assert_eq!(d.get::<_, String>(2), "open");
    let kinds: Vec<String> = pg
        .query(
            "select type from activities where deal_id::text = $1 order by created_at, type",
            &[&body["deal_id"].as_str()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"email_in".to_string()) && kinds.contains(&"system".to_string()));
    let email_body: String = pg
        .query_one("select body from activities where type = 'email_in'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !email_body.contains("escreveu"),
        "quoted history is not part of the logged reply"
    );
    let ev = pg
        .query_one(
            "select status, http_status, result->>'contact_id' from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ev.get::<_, String>(0), "processed");
    assert_eq!(ev.get::<_, i32>(1), 200);
    assert_eq!(ev.get::<_, String>(2), body["contact_id"].as_str().unwrap());
    assert_eq!(
        count(&pg, "select count(*) from deal_stage_history").await,
        1
    );
}

#[tokio::test]
async fn replay_answers_409_with_the_first_ids_and_writes_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send(&deps, request(&event("instantly-reply/native.json"))).await;
    let (status, replay) = send(&deps, request(&event("instantly-reply/duplicate.json"))).await;
    assert_eq!(status, 409);
    assert_eq!(replay["error"], "Duplicate event");
    assert_eq!(replay["code"], "duplicate_event");
    for id in [
        "contact_id",
        "activity_id",
        "deal_id",
        "system_activity_id",
        "idempotency_key",
    ] {
        assert_eq!(replay[id], first[id], "{id}");
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from activities").await, 2);
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn seed_payload_authenticated_by_shared_secret_header_is_processed() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, request(&event("instantly-reply/seed.json"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["idempotency_key"], "seed-reply-0001");
    assert_eq!(body["reply_status"], "interested");
    assert_eq!(body["deal_stage"], "Qualified");
    let pg = db.client().await;
    let email: String = pg
        .query_one("select email from contacts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "john.doe@acme.com");
}

#[tokio::test]
async fn bad_signature_is_401_recorded_as_rejected_and_writes_nothing_else() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, request(&event("instantly-reply/bad-signature.json"))).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "invalid signature", "code": "signature_invalid"})
    );
    let pg = db.client().await;
    // A forged call is a log line, never a row: no key claimed, no body kept (issue 13).
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 0);
    assert_eq!(count(&pg, "select count(*) from contacts").await, 0);

    // The real event with the same key still goes through afterwards.
    let (status, _) = send(&deps, request(&event("instantly-reply/native.json"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn missing_signature_is_401() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let req = native_with(&native_body().to_string(), &[("x-signature", None)]);
    let (status, body) = send(&deps, req).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature_missing"))
    );
}

#[tokio::test]
async fn caller_errors_map_to_400_413_415_422_and_are_recorded() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let cases: Vec<(Request, u16, &str)> = vec![
        (native_with("{\"event_type\": ", &[]), 400, "malformed_json"),
        (
            native_with(
                &native_body().to_string(),
                &[("content-type", Some("text/plain"))],
            ),
            415,
            "unsupported_media_type",
        ),
        (
            native_with(&"x".repeat(256 * 1024 + 1), &[]),
            413,
            "payload_too_large",
        ),
        (
            native_with(
                &{
                    let mut b = native_body();
                    b["lead_email"] = json!("maria at example");
                    b
                }
                .to_string(),
                &[],
            ),
            422,
            "validation_failed",
        ),
        (
            native_with(
                &{
                    let mut b = native_body();
                    b.as_object_mut().unwrap().remove("lead_email");
                    b
                }
                .to_string(),
                &[],
            ),
            422,
            "validation_failed",
        ),
    ];
    // Refusals before authentication (401, 413) are a log line, never a row (issue 13).
    let n = cases.iter().filter(|c| c.1 != 401 && c.1 != 413).count() as i64;
    for (req, want, code) in cases {
        let (status, body) = send(&deps, req).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(body["code"], code);
        if want == 422 {
            assert_eq!(body["field"], "lead_email");
        }
    }
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from webhook_events where status = 'rejected'"
        )
        .await,
        n
    );
    assert_eq!(count(&pg, "select count(*) from contacts").await, 0);
    assert_eq!(count(&pg, "select count(*) from activities").await, 0);
}

#[tokio::test]
async fn same_key_with_a_different_body_is_422() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, _) = send(&deps, request(&event("instantly-reply/native.json"))).await;
    assert_eq!(status, 200);
    let mut changed = native_body();
    changed["reply_text"] = json!("Actually, not interested.");
    let (status, body) = send(&deps, native_with(&changed.to_string(), &[])).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "idempotency_key_reused");
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from activities").await, 2);
}

#[tokio::test]
async fn a_fresh_idempotency_header_does_not_replay_a_signed_payload() {
    // Issue 13: the header is not signed; the payload names its own event.
    let db = TestDb::new().await;
    let deps = deps(&db);
    let body = native_body().to_string();
    let pg = db.client().await;
    let (s1, b1) = send(
        &deps,
        native_with(&body, &[("idempotency-key", Some("hdr-1"))]),
    )
    .await;
    let activities = count(&pg, "select count(*) from activities").await;
    let (s2, b2) = send(
        &deps,
        native_with(&body, &[("idempotency-key", Some("hdr-2"))]),
    )
    .await;
    assert_eq!((s1, s2), (200, 409), "{b2}");
    assert_eq!(b2["code"], "duplicate_event");
    assert_ne!(b1["idempotency_key"], "hdr-1", "the payload's own key");
    assert_eq!(
        count(&pg, "select count(*) from activities").await,
        activities,
        "no duplicate activities"
    );
}

#[tokio::test]
async fn the_header_keys_only_a_payload_without_its_own_identity() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let mut body = native_body();
    let obj = body.as_object_mut().unwrap();
    obj.remove("email_id");
    obj.remove("timestamp");
    let body = body.to_string();
    let (s1, b1) = send(
        &deps,
        native_with(&body, &[("idempotency-key", Some("hdr-1"))]),
    )
    .await;
    assert_eq!(s1, 200, "{b1}");
    assert_eq!(b1["idempotency_key"], "hdr-1");
}

#[tokio::test]
async fn other_instantly_events_are_recorded_and_ignored() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, request(&event("instantly-reply/ignored-event.json"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ignored");
    assert_eq!(body["event_type"], "email_opened");
    let pg = db.client().await;
    let st: String = pg
        .query_one("select status from webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "ignored");
    assert_eq!(count(&pg, "select count(*) from contacts").await, 0);
}

#[tokio::test]
async fn turkish_unsubscribe_records_an_email_opt_out_and_keeps_the_deal_new() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(
        &deps,
        request(&event("instantly-reply/unsubscribe-tr.json")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply_status"], "unsubscribe");
    assert_eq!(body["deal_stage"], "New");
    let pg = db.client().await;
    let row = pg
        .query_one("select o.channel, o.source from opt_outs o join contacts c on c.id = o.contact_id where c.email = 'ahmet.yilmaz@example.com.tr'", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("email".into(), "instantly".into())
    );
}

#[tokio::test]
async fn a_deal_is_never_moved_backwards() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let mut b = native_body();
    b["email_id"] = json!("first");
    let (_, first) = send(&deps, native_with(&b.to_string(), &[])).await;
    assert_eq!(first["deal_stage"], "Qualified");
    b["email_id"] = json!("second");
    b["reply_text"] = json!("Qual é o preço?");
    let (status, second) = send(&deps, native_with(&b.to_string(), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(second["reply_status"], "question");
    assert_eq!(second["deal_stage"], "Qualified");
    assert_eq!(second["deal_id"], first["deal_id"]);
    let pg = db.client().await;
    assert_eq!(
        count(&pg, "select count(*) from deal_stage_history").await,
        1
    );
    let sys: String = pg
        .query_one(
            "select body from activities where id::text = $1",
            &[&second["system_activity_id"].as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sys.contains("stays in Qualified"), "{sys}");
}

#[tokio::test]
async fn a_new_deal_moves_from_new_to_qualified_with_history() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let mut b = native_body();
    b["email_id"] = json!("q1");
    b["reply_text"] = json!("Who is this?");
    let (_, first) = send(&deps, native_with(&b.to_string(), &[])).await;
    assert_eq!(first["deal_stage"], "New");
    b["email_id"] = json!("q2");
    b["reply_text"] = json!("Ok, I'm interested. Send details.");
    let (_, second) = send(&deps, native_with(&b.to_string(), &[])).await;
    assert_eq!(second["deal_stage"], "Qualified");
    let pg = db.client().await;
    let moves: Vec<(Option<String>, String)> = pg
        .query(
            "select f.name, t.name from deal_stage_history h left join pipeline_stages f on f.id = h.from_stage_id \
             join pipeline_stages t on t.id = h.to_stage_id order by h.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        moves,
        vec![
            (None, "New".to_string()),
            (Some("New".to_string()), "Qualified".to_string())
        ]
    );
    // The move (not the creation) is announced to outbound webhooks, as every stage move is.
    let jobs: Vec<String> = pg
        .query("select body::text from outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(jobs.len(), 1);
    let crm_domain::jobs::Job::DeliverWebhook(job) =
        crm_domain::jobs::Job::parse(&jobs[0]).unwrap()
    else {
        panic!("a stage move enqueues a deliver_webhook job");
    };
    assert_eq!(job.event_type, "deal.stage_changed");
    assert_eq!(job.payload["deal_id"], second["deal_id"]);
    assert_eq!(job.payload["from"]["name"], "New");
    assert_eq!(job.payload["to"]["name"], "Qualified");
    assert_eq!(job.payload["actor"], "instantly");
}

#[tokio::test]
async fn a_failed_event_is_recorded_and_can_be_retried() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // Break the flow on our side: the default pipeline has no "Qualified" stage.
    pg.batch_execute(
        "update pipeline_stages set name = 'Qualified (renamed)' where name = 'Qualified'",
    )
    .await
    .unwrap();
    let (status, body) = send(&deps, request(&event("instantly-reply/native.json"))).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"error": "Internal error", "code": "internal_error"})
    );
    let row = pg
        .query_one("select status, error_code from webhook_events", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("failed".into(), "internal_error".into())
    );
    assert_eq!(
        count(&pg, "select count(*) from contacts").await,
        0,
        "the failed flow rolled back"
    );

    pg.batch_execute(
        "update pipeline_stages set name = 'Qualified' where name = 'Qualified (renamed)'",
    )
    .await
    .unwrap();
    let (status, body) = send(&deps, request(&event("instantly-reply/native.json"))).await;
    assert_eq!(status, 200, "{body}");
    let row = pg
        .query_one("select status, attempts from webhook_events", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("processed".into(), 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_identical_requests_at_once_give_one_200_and_nineteen_409() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 20).unwrap()).unwrap(),
        verifier: Verifier::Secret(Secret::new(SECRET).unwrap()),
    });
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (deps, barrier) = (deps.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // Connect first, so all twenty hit PostgreSQL together.
            drop(deps.pool.get().await.unwrap());
            barrier.wait().await;
            send(&deps, request(&event("instantly-reply/native.json"))).await
        }));
    }
    let mut statuses = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        statuses.push(status);
        ids.insert(body["deal_id"].as_str().unwrap().to_string());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(ids.len(), 1, "every answer names the same deal");
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
    assert_eq!(count(&pg, "select count(*) from activities").await, 2);
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn an_open_then_a_reply_for_the_same_email_are_two_events() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, request(&event("instantly-reply/ignored-event.json"))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
    // Same email_id as the sample open event, now a reply.
    let opened: Value = serde_json::from_str(
        serde_json::from_str::<Value>(&event("instantly-reply/ignored-event.json")).unwrap()["body"].as_str().unwrap(),
    )
    .unwrap();
    let mut reply = native_body();
    reply["email_id"] = opened["email_id"].clone();
    let (status, body) = send(&deps, native_with(&reply.to_string(), &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn an_overlong_upstream_id_is_hashed_into_a_key_not_refused() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let mut b = native_body();
    b["email_id"] = json!("x".repeat(400));
    let (status, first) = send(&deps, native_with(&b.to_string(), &[])).await;
    assert_eq!(status, 200, "{first}");
    assert!(
        first["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("instantly:sha256:")
    );
    let (status, _) = send(&deps, native_with(&b.to_string(), &[])).await;
    assert_eq!(status, 409, "the hashed key still deduplicates");
}

#[tokio::test]
async fn an_unauthenticated_call_gets_401_before_any_other_check() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let req = native_with(
        "not json",
        &[
            ("x-signature", Some("00")),
            ("idempotency-key", Some(&"k".repeat(300))),
            ("content-type", Some("text/plain")),
        ],
    );
    let (status, body) = send(&deps, req).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature_invalid"))
    );
}
