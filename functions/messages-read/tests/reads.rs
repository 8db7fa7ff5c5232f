//! messages-read against a fresh PostgreSQL per test: the sample events,
//! message pages, flags and the admins' debug reads (the feed: feed.rs).

mod common;

use common::*;
use crm_testkit::{TestDb, event};
use serde_json::{Value, json};
use std::collections::HashSet;

#[tokio::test]
async fn sample_events_answer() {
    let db = TestDb::new().await;
    let d = deps(&db);
    for (file, status) in [
        ("contact-messages.json", 404),
        ("mark-read.json", 404),
        ("events.json", 200),
        ("webhook-diagnostics.json", 200),
        ("debug-messages.json", 200),
    ] {
        let (got, body) = send(&d, &event(&format!("messages-read/{file}"))).await;
        assert_eq!(got, status, "{file}: {body}");
    }
}

#[tokio::test]
async fn contact_messages_page_newest_first_without_repeats_or_gaps() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let c = contact(&pg, None, Some("user-1")).await;
    let mut all = Vec::new();
    for i in 0..7 {
        all.push(inbound(&pg, &c, 100 - i).await);
    }
    // Two messages with the same created_at: the id breaks the tie.
    pg.execute(
        "update messages set created_at = (select created_at from messages where id = $1::text::uuid) \
         where id = $2::text::uuid",
        &[&all[3], &all[4]],
    )
    .await
    .unwrap();
    let path = format!("/api/contacts/{c}/messages");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("limit", "3")];
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let (status, body) = call(&d, "GET", &path, &q, None, &member("user-1")).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        seen.extend(ids(&body["messages"]));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
    let newest_first: Vec<String> = pg
        .query(
            "select id::text from messages order by created_at desc, id desc",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, newest_first);

    let (status, body) = call(&d, "GET", &path, &[("limit", "201")], None, &admin()).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("limit")));
    let (status, body) = call(&d, "GET", &path, &[("cursor", "nope")], None, &admin()).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("cursor")));
    let (_, body) = call(&d, "GET", &path, &[], None, &admin()).await;
    assert_eq!(body["limit"], 50);
}

#[tokio::test]
async fn members_get_404_for_contacts_and_messages_they_cannot_see() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let theirs = contact(&pg, None, Some("user-2")).await;
    let unowned = contact(&pg, None, None).await;
    let m = inbound(&pg, &theirs, 5).await;
    inbound(&pg, &unowned, 5).await;
    let me = member("user-1");
    let (status, body) = call(
        &d,
        "GET",
        &format!("/api/contacts/{theirs}/messages"),
        &[],
        None,
        &me,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = call(
        &d,
        "GET",
        &format!("/api/contacts/{unowned}/messages"),
        &[],
        None,
        &me,
    )
    .await;
    assert_eq!(
        (status, body["messages"].as_array().unwrap().len()),
        (200, 1)
    );
    let (status, _) = call(
        &d,
        "PATCH",
        &format!("/api/messages/{m}"),
        &[],
        Some(r#"{"is_read":true}"#),
        &me,
    )
    .await;
    assert_eq!(status, 404);
    let read: bool = pg
        .query_one(
            "select is_read from messages where id = $1::text::uuid",
            &[&m],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!read);
    let (status, _) = call(
        &d,
        "GET",
        &format!("/api/contacts/{theirs}/messages"),
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &d,
        "GET",
        "/api/contacts/not-a-uuid/messages",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn patch_sets_flags_with_timestamps_and_refuses_anything_else() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let c = contact(&pg, None, Some("user-1")).await;
    let m = inbound(&pg, &c, 5).await;
    let path = format!("/api/messages/{m}");
    let me = member("user-1");

    let (status, body) = call(&d, "PATCH", &path, &[], Some(r#"{"is_read":true}"#), &me).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["is_read"], true);
    assert!(body["message"]["read_at"].is_string());
    assert_eq!(body["message"]["is_starred"], false);
    let read_at = body["message"]["read_at"].clone();

    // Read again: the first timestamp stays; star it.
    let (_, body) = call(
        &d,
        "PATCH",
        &path,
        &[],
        Some(r#"{"is_read":true,"is_starred":true}"#),
        &me,
    )
    .await;
    assert_eq!(body["message"]["read_at"], read_at);
    assert!(body["message"]["starred_at"].is_string());

    let (_, body) = call(&d, "PATCH", &path, &[], Some(r#"{"is_read":false}"#), &me).await;
    assert_eq!(
        (
            body["message"]["is_read"].clone(),
            body["message"]["read_at"].clone()
        ),
        (json!(false), Value::Null)
    );
    assert_eq!(body["message"]["is_starred"], true);
    let row = pg
        .query_one(
            "select is_read, read_at is null, is_starred, starred_at is not null from messages where id = $1::text::uuid",
            &[&m],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (false, true, true, true)
    );

    for (body, code, field) in [
        (r#"{"is_read":"yes"}"#, 422, Some("is_read")),
        (r#"{"is_starred":1}"#, 422, Some("is_starred")),
        (r#"{"is_read":null}"#, 422, Some("is_read")),
        (r#"{"is_read":true,"body":"x"}"#, 422, Some("body")),
        (r#"[true]"#, 422, Some("body")),
        (r#"{"is_read":"#, 400, None),
    ] {
        let (status, answer) = call(&d, "PATCH", &path, &[], Some(body), &me).await;
        assert_eq!((status, answer["field"].as_str()), (code, field), "{body}");
    }
    // Without application/json.
    let mut ev: Value = serde_json::from_str(&event("messages-read/mark-read.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["headers"]["content-type"] = json!("text/plain");
    assert_eq!(send(&d, &ev.to_string()).await.0, 415);
}

#[tokio::test]
async fn debug_endpoints_are_for_admins_only() {
    let db = TestDb::new().await;
    let d = deps(&db);
    for (path, q) in [
        ("/api/debug/webhook-diagnostics", vec![]),
        ("/api/debug/messages", vec![("phone", "+905321234567")]),
    ] {
        let (status, body) = call(&d, "GET", path, &q, None, &member("user-1")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn diagnostics_count_by_source_and_status_within_the_window() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let hash = "a".repeat(64);
    for (i, (source, status, hours_ago)) in [
        ("twilio", "processed", 1),
        ("twilio", "processed", 2),
        ("twilio", "failed", 3),
        ("instantly", "rejected", 1),
        ("calcom", "processed", 48),
    ]
    .into_iter()
    .enumerate()
    {
        let key = (status != "rejected").then(|| format!("k{i}"));
        pg.execute(
            "insert into webhook_events (source, idempotency_key, payload_hash, status, error_code, error, payload, received_at) \
             values ($1, $2, $3, $4, case when $4 in ('failed','rejected') then 'boom' end, \
                     case when $4 in ('failed','rejected') then 'it broke' end, '{\"secret\":\"payload\"}', \
                     now() - make_interval(hours => $5))",
            &[&source, &key, &hash, &status, &hours_ago],
        )
        .await
        .unwrap();
    }
    let (status, body) = call(
        &d,
        "GET",
        "/api/debug/webhook-diagnostics",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hours"], 24);
    assert_eq!(
        body["counts"],
        json!([
            {"source": "instantly", "status": "rejected", "count": 1},
            {"source": "twilio", "status": "failed", "count": 1},
            {"source": "twilio", "status": "processed", "count": 2},
        ])
    );
    let errors = body["last_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["source"], "instantly");
    assert_eq!(errors[0]["error_code"], "boom");
    assert!(!body.to_string().contains("payload\""));
    let (_, body) = call(
        &d,
        "GET",
        "/api/debug/webhook-diagnostics",
        &[("hours", "72")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(body["counts"].as_array().unwrap().len(), 4);
    let (status, body) = call(
        &d,
        "GET",
        "/api/debug/webhook-diagnostics",
        &[("hours", "721")],
        None,
        &admin(),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("hours")));
}

#[tokio::test]
async fn debug_messages_match_phone_variants_like_the_webhook() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    // Stored without the 9th digit, as older WhatsApp ids carry it.
    let br = contact(&pg, Some("+551187654321"), None).await;
    let tr = contact(&pg, Some("+905321234567"), Some("user-9")).await;
    let m = inbound(&pg, &br, 10).await;
    inbound(&pg, &tr, 5).await;
    let m_new = inbound(&pg, &br, 1).await;
    let (status, body) = call(
        &d,
        "GET",
        "/api/debug/messages",
        &[("phone", "+55 11 98765-4321")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["contacts"][0]["id"], json!(br));
    assert_eq!(ids(&body["messages"]), vec![m_new, m]);
    // Turkish national format; then a legacy spelling with the trunk 0 kept
    // (another country's number with the same last 10 digits is not a match).
    let (_, body) = call(
        &d,
        "GET",
        "/api/debug/messages",
        &[("phone", "0532 123 45 67")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(body["contacts"][0]["id"], json!(tr));
    let legacy = contact(&pg, Some("+9005321234568"), None).await;
    contact(&pg, Some("+15321234568"), None).await;
    let (_, body) = call(
        &d,
        "GET",
        "/api/debug/messages",
        &[("phone", "+905321234568")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(body["contacts"][0]["id"], json!(legacy));
    let (_, body) = call(
        &d,
        "GET",
        "/api/debug/messages",
        &[("phone", "+905559998877")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(
        (body["contacts"].clone(), body["messages"].clone()),
        (json!([]), json!([]))
    );
    let (status, body) = call(
        &d,
        "GET",
        "/api/debug/messages",
        &[("phone", "abc")],
        None,
        &admin(),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("phone")));
    let (status, _) = call(&d, "GET", "/api/debug/messages", &[], None, &admin()).await;
    assert_eq!(status, 422);
}
