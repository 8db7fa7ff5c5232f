//! The webhook edge: the signature over the public URL, the refusal answers
//! and their receipts, TwiML for everything authenticated, idempotency
//! (sequential and concurrent).

mod common;

use common::*;
use crm_domain::twilio::signature::sign;
use crm_testkit::TestDb;

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
    assert_eq!(row.get::<_, Option<String>>(3), None);
    assert_eq!(row.get::<_, Option<serde_json::Value>>(4), None);
    for table in ["contacts", "messages", "message_feed", "outbox"] {
        assert_eq!(
            count(&pg, &format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }
}

#[tokio::test]
async fn the_inbound_sample_is_answered_with_empty_twiml_and_recorded() {
    let db = TestDb::new().await;
    accepted(&deps(&db), sample("inbound-sms")).await;
    let pg = db.client().await;
    let row = pg
        .query_one(
            "select status, idempotency_key, event_type, http_status from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "processed");
    assert_eq!(row.get::<_, String>(1), format!("twilio:in:{SMS_SID}"));
    assert_eq!(row.get::<_, String>(2), "message_in");
    assert_eq!(row.get::<_, i32>(3), 200);
}

#[tokio::test]
async fn a_bad_signature_is_401_and_leaves_only_a_rejection() {
    let db = TestDb::new().await;
    let (status, body) = refused(&deps(&db), sample("bad-signature")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("signature_invalid"))
    );
    assert_only_a_rejection(&db, 401, "signature_invalid").await;
}

#[tokio::test]
async fn a_missing_signature_is_401() {
    let db = TestDb::new().await;
    let body = encode(&[
        ("MessageSid", "SM1"),
        ("From", "+905321234567"),
        ("Body", "x"),
    ]);
    let req = raw(&body, "", &[("x-twilio-signature", None)]);
    let (status, answer) = refused(&deps(&db), req).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("signature_missing"))
    );
    assert_only_a_rejection(&db, 401, "signature_missing").await;
}

#[tokio::test]
async fn the_signature_covers_the_query_string_and_tolerates_the_default_port() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let body = encode(&[
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("From", "+905321234567"),
        ("Body", "Merhaba"),
    ]);
    // Twilio configured with an explicit :443 and a query string.
    let url = format!("https://crm.example.com:443{PATH}?tenant=tr&x=1");
    let sig = sign(TOKEN, &url, body.as_bytes());
    accepted(
        &deps,
        raw(
            &body,
            "tenant=tr&x=1",
            &[("x-twilio-signature", Some(&sig))],
        ),
    )
    .await;
    // The same signature without the query string the URL had is not Twilio's.
    let body2 = encode(&[
        ("MessageSid", "SM00000000000000000000000000000002"),
        ("From", "+905321234567"),
        ("Body", "Merhaba"),
    ]);
    let sig2 = sign(TOKEN, &url, body2.as_bytes());
    let (status, _) = refused(
        &deps,
        raw(&body2, "", &[("x-twilio-signature", Some(&sig2))]),
    )
    .await;
    assert_eq!(status, 401);
    // A body changed after signing is refused.
    let tampered = body.replace("Merhaba", "Merhabalar");
    let (status, _) = refused(
        &deps,
        raw(
            &tampered,
            "tenant=tr&x=1",
            &[("x-twilio-signature", Some(&sig))],
        ),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn wrong_content_type_is_415_after_the_signature() {
    let db = TestDb::new().await;
    let body = encode(&[
        ("MessageSid", "SM1"),
        ("From", "+905321234567"),
        ("Body", "x"),
    ]);
    let sig = sign(TOKEN, &format!("{BASE_URL}{PATH}"), body.as_bytes());
    let req = raw(
        &body,
        "",
        &[
            ("x-twilio-signature", Some(&sig)),
            ("content-type", Some("application/json")),
        ],
    );
    let (status, answer) = refused(&deps(&db), req).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert_only_a_rejection(&db, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_signed_but_undecodable_form_is_400() {
    let db = TestDb::new().await;
    let body = "MessageSid=SM1&From=%2B905321234567&Body=%E0%A4";
    let sig = sign(TOKEN, &format!("{BASE_URL}{PATH}"), body.as_bytes());
    let (status, answer) = refused(
        &deps(&db),
        raw(body, "", &[("x-twilio-signature", Some(&sig))]),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("malformed_form"))
    );
    assert_only_a_rejection(&db, 400, "malformed_form").await;
}

#[tokio::test]
async fn an_oversized_body_is_413_before_anything_else() {
    let db = TestDb::new().await;
    let body = format!("Body={}", "a".repeat(70 * 1024));
    let (status, answer) = refused(&deps(&db), raw(&body, "", &[])).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_only_a_rejection(&db, 413, "payload_too_large").await;
}

#[tokio::test]
async fn an_authenticated_message_from_an_unusable_sender_is_200_and_recorded_ignored() {
    // Twilio treats any non-2xx as a failure and retries: once authenticated, it always gets 200.
    let db = TestDb::new().await;
    let deps = deps(&db);
    accepted(&deps, inbound("SM1", "call me", "x")).await;
    let pg = db.client().await;
    let row = pg
        .query_one(
            "select status, event_type, result->>'reason' from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("ignored".to_string(), "unusable".to_string())
    );
    assert!(row.get::<_, String>(2).starts_with("From "));
    assert_eq!(count(&pg, "select count(*) from messages").await, 0);
    // A redelivery is still 200 and records nothing new.
    accepted(&deps, inbound("SM1", "call me", "x")).await;
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn an_authenticated_call_that_is_neither_is_200_and_recorded_ignored() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let req = signed(&[
        ("CallSid", "CA1"),
        ("From", "+905321234567"),
        ("CallStatus", "ringing"),
    ]);
    accepted(&deps, req).await;
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from webhook_events where status = 'ignored' and event_type = 'other'"
        )
        .await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from messages").await, 0);
}

#[tokio::test]
async fn a_replay_is_200_twiml_and_changes_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    accepted(&deps, sample("inbound-whatsapp-media")).await;
    let pg = db.client().await;
    let snapshot = "select (select count(*) from messages) + (select count(*) from contacts) * 10 \
                    + (select count(*) from message_feed) * 100 + (select count(*) from outbox) * 1000 \
                    + (select count(*) from activities) * 10000 + (select count(*) from deals) * 100000";
    let before = count(&pg, snapshot).await;
    // One message, contact, feed event, activity and deal; two media jobs.
    assert_eq!(before, 112_111);
    accepted(&deps, sample("inbound-whatsapp-media")).await;
    assert_eq!(count(&pg, snapshot).await, before);
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn ten_identical_inbound_deliveries_at_once_store_one_message() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps(&db));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let deps = deps.clone();
        tasks.push(tokio::spawn(async move {
            call(&deps, sample("inbound-sms")).await
        }));
    }
    for t in tasks {
        let (status, ct, _) = t.await.unwrap();
        assert_eq!((status, ct.as_str()), (200, "text/xml"));
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from messages").await, 1);
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
    assert_eq!(count(&pg, "select count(*) from message_feed").await, 1);
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn first_messages_from_one_unknown_sender_at_once_create_one_lead() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps(&db));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let deps = deps.clone();
        tasks.push(tokio::spawn(async move {
            let sid = format!("SM{i:032}");
            accepted(&deps, inbound(&sid, "whatsapp:+905551112233", "Merhaba")).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from messages").await, 6);
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
}

#[tokio::test]
async fn our_failure_is_500_recorded_failed_and_a_retry_is_processed() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // Break the last write of the flow: everything before it must roll back.
    pg.batch_execute("alter table activities rename to activities_away")
        .await
        .unwrap();
    let (status, body) = refused(&deps, sample("inbound-sms")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("internal_error"))
    );
    assert_eq!(body["error"], "Internal error");
    let row = pg
        .query_one("select status, idempotency_key from webhook_events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, String>(1), format!("twilio:in:{SMS_SID}"));
    for table in ["contacts", "messages", "deals", "message_feed"] {
        assert_eq!(
            count(&pg, &format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }

    pg.batch_execute("alter table activities_away rename to activities")
        .await
        .unwrap();
    accepted(&deps, sample("inbound-sms")).await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from webhook_events where status = 'processed' and attempts = 2"
        )
        .await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from messages").await, 1);
    assert_eq!(count(&pg, "select count(*) from message_feed").await, 1);
}
