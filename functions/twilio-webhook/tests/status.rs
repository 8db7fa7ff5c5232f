//! Status callbacks: forward only whatever order they arrive in, terminal
//! failures kept with their error in words, every raw callback kept.

mod common;

use common::*;
use crm_testkit::TestDb;

/// A status and the `ErrorCode` sent with it.
type Callback<'a> = (&'a str, Option<&'a str>);
/// Four callbacks, and the status and error code every order of them must leave.
type Case<'a> = (&'a [Callback<'a>], (&'a str, Option<i32>));

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

async fn state(pg: &tokio_postgres::Client, sid: &str) -> (String, Option<i32>, Option<String>) {
    let row = pg
        .query_one(
            "select status, error_code, error_message from messages where provider_sid = $1",
            &[&sid],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn every_arrival_order_of_four_statuses_ends_in_the_same_status() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // (the four callbacks, where every order of them must leave the message)
    let cases: &[Case] = &[
        (
            &[
                ("sending", None),
                ("sent", None),
                ("delivered", None),
                ("read", None),
            ],
            ("read", None),
        ),
        (
            &[
                ("queued", None),
                ("sent", None),
                ("delivered", None),
                ("read", None),
            ],
            ("read", None),
        ),
        (
            &[
                ("sending", None),
                ("sent", None),
                ("undelivered", Some("30003")),
                ("delivered", None),
            ],
            ("undelivered", Some(30003)),
        ),
        (
            &[
                ("sent", None),
                ("failed", Some("63016")),
                ("delivered", None),
                ("read", None),
            ],
            ("failed", Some(63016)),
        ),
    ];
    let mut n = 0;
    for (case, (callbacks, (last, code))) in cases.iter().enumerate() {
        let perms = permutations(callbacks);
        assert_eq!(perms.len(), 24);
        for order in perms {
            n += 1;
            let sid = format!("SM{case}{n:031}");
            outbound(&pg, &sid, "queued").await;
            for (status_name, error) in &order {
                accepted(&deps, status(&sid, status_name, *error)).await;
            }
            let (got, got_code, words) = state(&pg, &sid).await;
            assert_eq!((got.as_str(), got_code), (*last, *code), "{order:?}");
            assert_eq!(words.is_some(), code.is_some(), "{order:?}");
            let kept: i64 = pg
                .query_one(
                    "select count(*) from message_status_events where provider_sid = $1",
                    &[&sid],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(kept, 4, "every raw callback is kept: {order:?}");
        }
    }
}

#[tokio::test]
async fn a_late_sent_never_undoes_a_failure_and_the_error_reads_as_words() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let id = outbound(&pg, OUT_SID, "queued").await;
    accepted(&deps, sample("status-undelivered")).await;
    accepted(&deps, status(OUT_SID, "sent", None)).await;
    accepted(&deps, sample("status-delivered")).await;
    assert_eq!(
        state(&pg, OUT_SID).await,
        (
            "undelivered".to_string(),
            Some(30003),
            Some("Unreachable destination handset (30003)".to_string())
        )
    );
    let events: Vec<(String, bool, Option<uuid::Uuid>, serde_json::Value)> = pg
        .query(
            "select status, applied, message_id, payload from message_status_events order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let summary: Vec<(&str, bool)> = events.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        summary,
        [("undelivered", true), ("sent", false), ("delivered", false)]
    );
    assert!(events.iter().all(|e| e.2 == Some(id)));
    // The raw callback as Twilio sent it.
    assert_eq!(events[0].3["ErrorCode"], "30003");
    assert_eq!(events[0].3["ChannelPrefix"], "whatsapp");
}

#[tokio::test]
async fn a_repeated_callback_is_kept_once() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    outbound(&pg, OUT_SID, "sent").await;
    for _ in 0..3 {
        accepted(&deps, sample("status-delivered")).await;
    }
    assert_eq!(state(&pg, OUT_SID).await.0, "delivered");
    assert_eq!(
        count(&pg, "select count(*) from message_status_events").await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from webhook_events").await, 1);
}

#[tokio::test]
async fn a_callback_for_an_unknown_message_or_status_is_kept_unapplied() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    accepted(&deps, sample("status-delivered")).await;
    outbound(&pg, "SM0000000000000000000000000000000a", "sent").await;
    accepted(
        &deps,
        status(
            "SM0000000000000000000000000000000a",
            "partially_delivered",
            None,
        ),
    )
    .await;
    let rows: Vec<(String, bool, bool)> = pg
        .query(
            "select status, applied, message_id is null from message_status_events order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("delivered".to_string(), false, true),
            ("partially_delivered".to_string(), false, false)
        ]
    );
    assert_eq!(
        state(&pg, "SM0000000000000000000000000000000a").await.0,
        "sent"
    );
    assert_eq!(count(&pg, "select count(*) from messages").await, 1);
}

#[tokio::test]
async fn concurrent_callbacks_for_one_message_still_move_it_forward_only() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps(&db));
    let pg = db.client().await;
    outbound(&pg, OUT_SID, "queued").await;
    let mut tasks = Vec::new();
    for s in ["sending", "sent", "delivered", "read", "sent", "delivered"] {
        let deps = deps.clone();
        tasks.push(tokio::spawn(async move {
            accepted(&deps, status(OUT_SID, s, None)).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(state(&pg, OUT_SID).await.0, "read");
    assert_eq!(
        count(&pg, "select count(*) from message_status_events").await,
        4
    );
}
