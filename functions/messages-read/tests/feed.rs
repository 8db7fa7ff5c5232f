//! GET /api/messages/events against a fresh PostgreSQL: order, kinds,
//! visibility, paging by `next_after`, and no event skipped when
//! transactions commit out of order.

mod common;

use common::*;
use crm_testkit::TestDb;
use messages_read::Deps;
use serde_json::{Value, json};

/// Feed reads wait for every transaction older than an event to finish, and
/// the test cluster is shared with other tests' databases: poll until the
/// expected number of events is there.
async fn poll(d: &Deps, tok: &str, after: &str, want: usize) -> Value {
    for _ in 0..100 {
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
async fn feed_returns_new_inbound_and_status_changes_in_order_for_visible_contacts() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let mine = contact(&pg, None, Some("user-1")).await;
    let theirs = contact(&pg, None, Some("user-2")).await;
    let m1 = inbound(&pg, &mine, 0).await;
    inbound(&pg, &theirs, 0).await;
    let out: String = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status) \
             values ('out', 'sms', $1::text::uuid, 'hello', 'queued') returning id::text",
            &[&mine],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "update messages set status = 'sent' where id = $1::text::uuid",
        &[&out],
    )
    .await
    .unwrap();
    // Not a status change: no event.
    pg.execute(
        "update messages set is_read = true, read_at = now() where id = $1::text::uuid",
        &[&m1],
    )
    .await
    .unwrap();

    let body = poll(&d, &admin(), "", 4).await;
    let kinds: Vec<(String, String, Option<String>)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["message_id"].as_str().unwrap().into(),
                e["status"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 4, "{body}");
    assert_eq!(kinds[0], ("message_in".into(), m1.clone(), None));
    assert_eq!(
        kinds[2],
        ("status".into(), out.clone(), Some("queued".into()))
    );
    assert_eq!(
        kinds[3],
        ("status".into(), out.clone(), Some("sent".into()))
    );
    let event_ids: Vec<i64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(event_ids.windows(2).all(|w| w[0] < w[1]));

    // A member sees only their contacts' events; the cursor still moves past the rest.
    let body = poll(&d, &member("user-1"), "", 3).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
    assert!(
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["contact_id"] == json!(mine))
    );

    // Paging: limit 1 walks the same four events one by one.
    let mut after = String::new();
    let mut walked = Vec::new();
    for _ in 0..4 {
        let (_, page) = call(
            &d,
            "GET",
            "/api/messages/events",
            &[("after", &after), ("limit", "1")],
            None,
            &admin(),
        )
        .await;
        walked.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        after = page["next_after"].as_str().unwrap().to_string();
    }
    assert_eq!(walked, event_ids);
    // Nothing new: empty, and the cursor stays.
    let (_, page) = call(
        &d,
        "GET",
        "/api/messages/events",
        &[("after", &after)],
        None,
        &admin(),
    )
    .await;
    assert_eq!(
        (page["events"].clone(), page["next_after"].as_str()),
        (json!([]), Some(after.as_str()))
    );
    // A new message shows after that cursor only.
    let m2 = inbound(&pg, &mine, 0).await;
    let page = poll(&d, &admin(), &after, 1).await;
    assert_eq!(page["events"][0]["message_id"], json!(m2));

    // Anything this API did not issue, including a message page cursor.
    let (_, page) = call(
        &d,
        "GET",
        &format!("/api/contacts/{mine}/messages"),
        &[("limit", "1")],
        None,
        &admin(),
    )
    .await;
    let foreign = page["next_cursor"].as_str().unwrap().to_string();
    for bad in ["123", "zz!", "ZjF8eHwx", foreign.as_str()] {
        let (status, body) = call(
            &d,
            "GET",
            "/api/messages/events",
            &[("after", bad)],
            None,
            &admin(),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some("after")),
            "{bad}"
        );
    }
    let (status, body) = call(
        &d,
        "GET",
        "/api/messages/events",
        &[("limit", "501")],
        None,
        &admin(),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("limit")));
}

#[tokio::test]
async fn feed_never_skips_an_event_a_slower_transaction_commits_later() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let c = contact(&pg, None, None).await;
    // A: an inbound message whose transaction stays open (its feed row has the lower id).
    let mut slow = db.client().await;
    let tx = slow.transaction().await.unwrap();
    let early: String = tx
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status) \
             values ('in', 'sms', $1::text::uuid, 'slow', 'received') returning id::text",
            &[&c],
        )
        .await
        .unwrap()
        .get(0);
    // B: another one, committed first.
    let late = inbound(&pg, &c, 0).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, page) = call(&d, "GET", "/api/messages/events", &[], None, &admin()).await;
    // B waits for A: answering it now would move the cursor past A.
    assert_eq!(page["events"], json!([]), "{page}");
    let after = page["next_after"].as_str().unwrap().to_string();
    tx.commit().await.unwrap();
    let page = poll(&d, &admin(), &after, 2).await;
    let got: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![early.as_str(), late.as_str()]);
}
