//! The webhook edge: authenticity, the refusal answers and their receipts,
//! ignored triggers, idempotency (sequential and concurrent).

mod common;

use common::*;
use crm_domain::{Secret, signature::Verifier};
use crm_testkit::TestDb;
use serde_json::{Value, json};

#[tokio::test]
async fn replay_answers_409_with_the_first_ids_and_writes_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send(&deps, sample("created")).await;
    let (status, replay) = send(&deps, sample("created")).await;
    assert_eq!(status, 409);
    assert_eq!(replay["error"], "Duplicate event");
    assert_eq!(replay["code"], "duplicate_event");
    for id in [
        "contact_ids",
        "deal_id",
        "meeting_activity_id",
        "booking_uid",
        "idempotency_key",
        "deal_stage",
    ] {
        assert_eq!(replay[id], first[id], "{id}");
    }
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn same_key_with_a_different_body_is_422() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    send(&deps, sample("created")).await;
    let changed = edited("created", |b| {
        b["payload"]["title"] = json!("Another title")
    });
    let (status, body) = send(&deps, changed).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "idempotency_key_reused");
    let pg = db.client().await;
    let title: Value = pg
        .query_one(
            "select metadata -> 'title' from activities where type = 'meeting'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "Demo 30 min between Lucas Andrade and Maria Souza");
}

/// The rows a refused call leaves: one `rejected` receipt, no key held, no body kept, nothing else.
async fn assert_only_a_rejection(db: &TestDb, status: i32, code: &str) {
    let pg = db.client().await;
    // Refusals before authentication (401, 413) are a log line, never a row (issue 13).
    if status == 401 || status == 413 {
        let _ = code;
        assert_eq!(count(&pg, "select count(*) from webhook_events").await, 0);
        return;
    }
    let row = pg
        .query_one(
            "select status, http_status, error_code, idempotency_key, payload from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "rejected");
    assert_eq!(
        (row.get::<_, i32>(1), row.get::<_, String>(2).as_str()),
        (status, code)
    );
    assert_eq!(
        row.get::<_, Option<String>>(3),
        None,
        "a refused call never claims a key"
    );
    assert_eq!(
        row.get::<_, Option<Value>>(4),
        None,
        "an unauthenticated body is not stored"
    );
    for table in [
        "contacts",
        "deals",
        "activities",
        "calcom_bookings",
        "outbox",
    ] {
        assert_eq!(
            count(&pg, &format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }
}

#[tokio::test]
async fn bad_signature_is_401_recorded_as_rejected_and_the_real_event_still_goes_through() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, sample("bad-signature")).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "invalid signature", "code": "signature_invalid"})
    );
    assert_only_a_rejection(&db, 401, "signature_invalid").await;
    let (status, _) = send(&deps, sample("created")).await;
    assert_eq!(status, 200, "a forged call did not squat the key");
}

#[tokio::test]
async fn the_no_secret_placeholder_is_refused() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, sample("no-secret")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature_invalid"))
    );
    assert_only_a_rejection(&db, 401, "signature_invalid").await;
}

#[tokio::test]
async fn the_development_bypass_accepts_the_no_secret_placeholder() {
    let db = TestDb::new().await;
    let deps = deps_with(&db, 4, Verifier::Bypass);
    let (status, body) = send(&deps, sample("no-secret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deal_stage"], "Meeting Scheduled");
}

#[tokio::test]
async fn missing_signature_is_401() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let req = signed(
        &body_of("created").to_string(),
        &[("x-cal-signature-256", None)],
    );
    let (status, body) = send(&deps, req).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature_missing"))
    );
    assert_only_a_rejection(&db, 401, "signature_missing").await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_even_for_a_well_formed_signature() {
    let db = TestDb::new().await;
    let deps = deps_with(
        &db,
        2,
        Verifier::Secret(Secret::new("another-calcom-secret").unwrap()),
    );
    let (status, _) = send(&deps, sample("created")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn caller_errors_map_to_400_413_415_422_name_the_field_and_are_recorded() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let created = body_of("created").to_string();
    let cases: Vec<(lambda_http::Request, u16, &str, Option<&str>)> = vec![
        (
            signed("{\"triggerEvent\": ", &[]),
            400,
            "malformed_json",
            None,
        ),
        (
            signed(&created, &[("content-type", Some("text/plain"))]),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            signed(&"x".repeat(256 * 1024 + 1), &[]),
            413,
            "payload_too_large",
            None,
        ),
        (
            edited("created", |b| b["payload"]["attendees"] = json!([])),
            422,
            "validation_failed",
            Some("payload.attendees"),
        ),
        (
            edited("created", |b| {
                b["payload"]["attendees"][0]["email"] = json!("maria at example")
            }),
            422,
            "validation_failed",
            Some("payload.attendees[0].email"),
        ),
        (
            edited("created", |b| {
                b["payload"]["startTime"] = json!("25/11/2026 17:00")
            }),
            422,
            "validation_failed",
            Some("payload.startTime"),
        ),
        (
            edited("created", |b| {
                b["payload"].as_object_mut().unwrap().remove("uid");
            }),
            422,
            "validation_failed",
            Some("payload.uid"),
        ),
        (
            signed(&created, &[("idempotency-key", Some(&"k".repeat(256)))]),
            422,
            "validation_failed",
            Some("Idempotency-Key"),
        ),
    ];
    // Refusals before authentication (401, 413) are a log line, never a row (issue 13).
    let n = cases.iter().filter(|c| c.1 != 401 && c.1 != 413).count() as i64;
    for (req, want, code, field) in cases {
        let (status, body) = send(&deps, req).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(body["code"], code);
        assert_eq!(body["field"].as_str(), field);
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
    let typed: i64 = count(
        &pg,
        "select count(*) from webhook_events where event_type = 'BOOKING_CREATED' and error_code = 'validation_failed'",
    )
    .await;
    assert_eq!(
        typed, 4,
        "a refused booking's receipt still says which trigger it was"
    );
    for table in ["contacts", "deals", "activities", "calcom_bookings"] {
        assert_eq!(
            count(&pg, &format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }
}

#[tokio::test]
async fn other_triggers_with_or_without_the_wrapper_are_recorded_and_ignored() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, ended) = send(&deps, sample("ignored")).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(
        ended,
        json!({"status": "ignored", "trigger": "MEETING_ENDED", "idempotency_key": format!("calcom:{UID}:MEETING_ENDED")})
    );
    let (status, ping) = send(&deps, sample("ping")).await;
    assert_eq!(status, 200, "{ping}");
    assert_eq!(
        (ping["status"].as_str(), ping["trigger"].as_str()),
        (Some("ignored"), Some("PING"))
    );
    assert!(
        ping["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let (status, _) = send(&deps, sample("ignored")).await;
    assert_eq!(
        status, 409,
        "an ignored event is still an event: its replay is a duplicate"
    );

    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from webhook_events where status = 'ignored'"
        )
        .await,
        2
    );
    for table in ["contacts", "deals", "activities", "calcom_bookings"] {
        assert_eq!(
            count(&pg, &format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_identical_deliveries_at_once_give_one_200_nine_409_and_one_meeting() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps_with(
        &db,
        10,
        Verifier::Secret(Secret::new(SECRET).unwrap()),
    ));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (deps, barrier) = (deps.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // Connect first, so all ten hit PostgreSQL together.
            drop(deps.pool.get().await.unwrap());
            barrier.wait().await;
            send(&deps, sample("created")).await
        }));
    }
    let mut statuses = Vec::new();
    let mut meetings = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        statuses.push(status);
        meetings.insert(body["meeting_activity_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    assert_eq!(meetings.len(), 1, "every answer names the same meeting");
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from contacts").await, 2);
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from outbox").await, 1);
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_booking_under_different_headers_make_one_meeting() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps_with(
        &db,
        6,
        Verifier::Secret(Secret::new(SECRET).unwrap()),
    ));
    let body = body_of("created").to_string();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(6));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (deps, barrier, body) = (deps.clone(), barrier.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            drop(deps.pool.get().await.unwrap());
            barrier.wait().await;
            send(
                &deps,
                signed(&body, &[("idempotency-key", Some(&format!("key-{i}")))]),
            )
            .await
        }));
    }
    // The uid and trigger are the key whatever the header says: one does the work.
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().0);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409]);
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
    assert_eq!(moves(&pg).await.len(), 2);
}

#[tokio::test]
async fn a_fresh_idempotency_header_does_not_replay_a_signed_booking() {
    // Issue 13: the header is not covered by the signature; the uid and trigger are the key.
    let db = TestDb::new().await;
    let deps = deps(&db);
    let body = body_of("created").to_string();
    let (s1, b1) = send(&deps, signed(&body, &[("idempotency-key", Some("hdr-1"))])).await;
    let (s2, b2) = send(&deps, signed(&body, &[("idempotency-key", Some("hdr-2"))])).await;
    assert_eq!((s1, s2), (200, 409), "{b1} {b2}");
    assert_eq!(b2["code"], "duplicate_event");
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
}
