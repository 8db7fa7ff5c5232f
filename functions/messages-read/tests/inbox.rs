//! The console's inbox API against a fresh PostgreSQL: conversations (access,
//! unread counts, the WhatsApp window, paging, filters), marking one read,
//! and the feed's `after=now`.

mod common;

use common::*;
use crm_testkit::TestDb;
use messages_read::Deps;
use serde_json::Value;

/// A message on `channel` in `direction`, `seconds_ago`; returns its id.
async fn message(
    pg: &tokio_postgres::Client,
    contact: &str,
    direction: &str,
    channel: &str,
    body: Option<&str>,
    seconds_ago: f64,
) -> String {
    let status = if direction == "in" {
        "received"
    } else {
        "sent"
    };
    pg.query_one(
        "insert into messages (direction, channel, contact_id, body, status, created_at) \
         values ($1, $2, $3::text::uuid, $4, $5, now() - make_interval(secs => $6)) returning id::text",
        &[&direction, &channel, &contact, &body, &status, &seconds_ago],
    )
    .await
    .unwrap()
    .get(0)
}

async fn conversations(d: &Deps, tok: &str, query: &[(&str, &str)]) -> Value {
    let (status, body) = call(d, "GET", "/api/conversations", query, None, tok).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn contact_ids(page: &Value) -> Vec<String> {
    page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contact_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn conversations_are_newest_first_with_unread_preview_and_window() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let ana = contact(&pg, Some("+905321234567"), Some("user-1")).await;
    let bob = contact(&pg, Some("+905321234568"), None).await;
    let _silent = contact(&pg, Some("+905321234569"), None).await;
    // Ana: two unread inbound WhatsApp messages, then our (newer) reply.
    message(&pg, &ana, "in", "whatsapp", Some("ilk"), 7200.0).await;
    message(&pg, &ana, "in", "whatsapp", Some("ikinci"), 3600.0).await;
    let long = "ç".repeat(200);
    let reply = message(&pg, &ana, "out", "whatsapp", Some(&long), 60.0).await;
    // Bob: one SMS a day and a half ago, read; WhatsApp 30 hours ago.
    let bob_sms = message(&pg, &bob, "in", "sms", Some("sms"), 36.0 * 3600.0).await;
    message(&pg, &bob, "in", "whatsapp", None, 30.0 * 3600.0).await;
    pg.execute(
        "update messages set is_read = true, read_at = now() where id = $1::text::uuid",
        &[&bob_sms],
    )
    .await
    .unwrap();

    let page = conversations(&d, &admin(), &[]).await;
    // Contacts without messages are not conversations.
    assert_eq!(contact_ids(&page), [ana.clone(), bob.clone()]);
    let first = &page["conversations"][0];
    assert_eq!(first["unread_count"], 2);
    assert_eq!(first["owner_id"], "user-1");
    assert_eq!(first["phone"], "+905321234567");
    let last = &first["last_message"];
    assert_eq!(last["id"], reply.as_str());
    assert_eq!(
        (
            last["direction"].as_str(),
            last["channel"].as_str(),
            last["status"].as_str()
        ),
        (Some("out"), Some("whatsapp"), Some("sent"))
    );
    let preview = last["preview"].as_str().unwrap();
    assert_eq!(preview.chars().count(), 121, "120 characters and …");
    assert!(preview.ends_with('…'));
    // The window: last inbound WhatsApp (an hour ago) + 24 h, open.
    let until: chrono::DateTime<chrono::Utc> = first["window_open_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expect = chrono::Utc::now() + chrono::Duration::hours(23);
    assert!((until - expect).num_seconds().abs() < 120, "{until}");
    assert_eq!(first["window_open"], true);

    let second = &page["conversations"][1];
    assert_eq!(second["unread_count"], 1, "the read SMS is not unread");
    // Last inbound WhatsApp 30 h ago: the window closed 6 h ago (still answered).
    assert_eq!(second["window_open"], false);
    assert!(second["window_open_until"].is_string());
    assert_eq!(second["last_message"]["preview"], Value::Null, "media only");

    // Filters: a channel (its last message and its unread), unread only.
    let sms = conversations(&d, &admin(), &[("channel", "sms")]).await;
    assert_eq!(contact_ids(&sms), [bob.as_str()]);
    assert_eq!(sms["conversations"][0]["unread_count"], 0);
    assert_eq!(
        sms["conversations"][0]["last_message"]["id"],
        bob_sms.as_str()
    );
    let unread_sms = conversations(&d, &admin(), &[("channel", "sms"), ("unread", "true")]).await;
    assert!(contact_ids(&unread_sms).is_empty());
    // A contact that never wrote on WhatsApp has no window.
    let carla = contact(&pg, Some("+905321234570"), None).await;
    message(&pg, &carla, "in", "sms", Some("selam"), 1.0).await;
    let page = conversations(&d, &admin(), &[("limit", "1")]).await;
    assert_eq!(contact_ids(&page), [carla]);
    assert_eq!(page["conversations"][0]["window_open_until"], Value::Null);
    assert_eq!(page["conversations"][0]["window_open"], false);

    for (name, value) in [
        ("channel", "email"),
        ("unread", "yes"),
        ("cursor", "zzz"),
        ("limit", "0"),
    ] {
        let (status, body) = call(
            &d,
            "GET",
            "/api/conversations",
            &[(name, value)],
            None,
            &admin(),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(name)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn members_see_their_own_and_unowned_conversations_only() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let a = contact(&pg, None, Some("user-a")).await;
    let b = contact(&pg, None, Some("user-b")).await;
    let free = contact(&pg, None, None).await;
    for (c, ago) in [(&a, 30.0), (&b, 20.0), (&free, 10.0)] {
        message(&pg, c, "in", "whatsapp", Some("hi"), ago).await;
    }
    let seen = contact_ids(&conversations(&d, &member("user-a"), &[]).await);
    assert_eq!(seen, [free.clone(), a.clone()]);
    let seen = contact_ids(&conversations(&d, &member("user-b"), &[]).await);
    assert_eq!(seen, [free.clone(), b.clone()]);
    assert_eq!(
        contact_ids(&conversations(&d, &admin(), &[]).await).len(),
        3
    );

    // Marking B's conversation read as A: 404, and nothing changes.
    let path = format!("/api/conversations/{b}/read");
    let (status, body) = call(&d, "POST", &path, &[], None, &member("user-a")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let unread: i64 = pg
        .query_one("select count(*) from messages where not is_read", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unread, 3);
    // Neither is there a difference between "not yours" and "no such contact".
    let (status, _) = call(
        &d,
        "POST",
        &format!("/api/conversations/{}/read", uuid::Uuid::new_v4()),
        &[],
        None,
        &member("user-a"),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn marking_a_conversation_read_clears_its_inbound_unread_once() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let ana = contact(&pg, None, Some("user-1")).await;
    let other = contact(&pg, None, Some("user-1")).await;
    message(&pg, &ana, "in", "whatsapp", Some("1"), 30.0).await;
    message(&pg, &ana, "in", "sms", Some("2"), 20.0).await;
    message(&pg, &ana, "out", "whatsapp", Some("3"), 10.0).await;
    message(&pg, &other, "in", "whatsapp", Some("x"), 5.0).await;

    let path = format!("/api/conversations/{ana}/read");
    let (status, body) = call(&d, "POST", &path, &[], None, &member("user-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["contact_id"].as_str(), body["marked"].as_i64()),
        (Some(ana.as_str()), Some(2))
    );
    let rows = pg
        .query(
            "select direction, is_read, read_at is not null from messages \
             where contact_id = $1::text::uuid order by created_at",
            &[&ana],
        )
        .await
        .unwrap();
    let flags: Vec<(String, bool, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        flags,
        [
            ("in".to_string(), true, true),
            ("in".to_string(), true, true),
            ("out".to_string(), false, false)
        ]
    );
    // Idempotent: nothing left to mark, read_at kept.
    let before: Vec<chrono::DateTime<chrono::Utc>> = pg
        .query(
            "select read_at from messages where is_read order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (status, body) = call(&d, "POST", &path, &[], None, &member("user-1")).await;
    assert_eq!((status, body["marked"].as_i64()), (200, Some(0)));
    let after: Vec<chrono::DateTime<chrono::Utc>> = pg
        .query(
            "select read_at from messages where is_read order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(before, after);
    // The other contact's message is untouched; the list agrees.
    let page = conversations(&d, &member("user-1"), &[]).await;
    let unread: Vec<i64> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["unread_count"].as_i64().unwrap())
        .collect();
    assert_eq!(contact_ids(&page), [other.clone(), ana.clone()]);
    assert_eq!(unread, [1, 0]);
    let only_unread = conversations(&d, &member("user-1"), &[("unread", "true")]).await;
    assert_eq!(contact_ids(&only_unread), [other]);
}

#[tokio::test]
async fn conversation_pages_neither_repeat_nor_skip() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let mut expected = Vec::new();
    for i in 0..7 {
        let c = contact(&pg, None, None).await;
        // Two contacts share a last-message time: the id breaks the tie.
        let ago = if i == 3 { 400.0 } else { 100.0 * f64::from(i) };
        message(&pg, &c, "in", "sms", Some("old"), 10_000.0).await;
        message(&pg, &c, "in", "sms", Some("new"), ago).await;
        expected.push((ago, c));
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = conversations(&d, &admin(), &[("limit", "3"), ("cursor", &cursor)]).await;
        assert!(page["conversations"].as_array().unwrap().len() <= 3);
        seen.extend(contact_ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);
    // Newest last message first (ties: the larger contact id first).
    let times: Vec<f64> = seen
        .iter()
        .map(|id| expected.iter().find(|(_, c)| c == id).unwrap().0)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // A cursor of another list is refused.
    let (status, body) = call(
        &d,
        "GET",
        &format!("/api/contacts/{}/messages", expected[0].1),
        &[("limit", "1")],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 200);
    let foreign = body["next_cursor"].as_str().unwrap();
    let (status, body) = call(
        &d,
        "GET",
        "/api/conversations",
        &[("cursor", foreign)],
        None,
        &admin(),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("cursor")));
}

/// Polls the feed from `after` until it settles `want` events (the cluster's
/// other transactions may hold events back for a moment).
async fn poll(d: &Deps, tok: &str, after: &str, want: usize) -> Value {
    for _ in 0..200 {
        let (status, body) = call(
            d,
            "GET",
            "/api/messages/events",
            &[("after", after)],
            None,
            tok,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["events"].as_array().unwrap().len() >= want {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the feed never showed {want} events");
}

#[tokio::test]
async fn the_feed_can_start_at_now_and_shows_only_readable_contacts() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let a = contact(&pg, None, Some("user-a")).await;
    let b = contact(&pg, None, Some("user-b")).await;
    // History: settled before the console starts.
    message(&pg, &a, "in", "whatsapp", Some("old"), 100.0).await;
    message(&pg, &b, "in", "whatsapp", Some("old"), 90.0).await;
    poll(&d, &admin(), "", 2).await;

    let (status, head) = call(
        &d,
        "GET",
        "/api/messages/events",
        &[("after", "now")],
        None,
        &member("user-a"),
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(head["events"], serde_json::json!([]));
    let from = head["next_after"].as_str().unwrap().to_string();

    // Nothing new yet: no history replayed.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, body) = call(
        &d,
        "GET",
        "/api/messages/events",
        &[("after", &from)],
        None,
        &member("user-a"),
    )
    .await;
    assert_eq!(body["events"], serde_json::json!([]), "{body}");

    // New inbound for B then A: member A sees only A's; admin sees both.
    let for_b = message(&pg, &b, "in", "whatsapp", Some("new"), 0.0).await;
    let for_a = message(&pg, &a, "in", "whatsapp", Some("new"), 0.0).await;
    let seen = poll(&d, &admin(), &from, 2).await;
    let ids: Vec<&str> = seen["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [for_b.as_str(), for_a.as_str()]);
    let mine = poll(&d, &member("user-a"), &from, 1).await;
    let events = mine["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{mine}");
    assert_eq!(events[0]["message_id"], for_a.as_str());
    assert_eq!(events[0]["contact_id"], a.as_str());
    assert_eq!(events[0]["kind"], "message_in");
    let mine_b = poll(&d, &member("user-b"), &from, 1).await;
    assert_eq!(mine_b["events"].as_array().unwrap().len(), 1);
    assert_eq!(mine_b["events"][0]["message_id"], for_b.as_str());
}
