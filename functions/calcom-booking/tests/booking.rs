//! The booking flow end to end: the sample events through `handle`, against a
//! fresh PostgreSQL database per test.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::{Value, json};

#[tokio::test]
async fn created_booking_makes_contacts_a_meeting_and_moves_the_deal_to_meeting_scheduled() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, sample("created")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["trigger"], "BOOKING_CREATED");
    assert_eq!(body["booking_uid"], UID);
    assert_eq!(body["booking_status"], "scheduled");
    assert_eq!(
        body["idempotency_key"],
        format!("calcom:{UID}:BOOKING_CREATED")
    );
    assert_eq!(body["deal_stage"], "Meeting Scheduled");
    assert_eq!(body["contact_ids"].as_array().unwrap().len(), 2);

    let pg = db.client().await;
    let people: Vec<(String, String, String, String)> = pg
        .query(
            "select id::text, email, full_name, time_zone from contacts order by email",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        people.len(),
        2,
        "one contact per attendee, the organizer is not one"
    );
    assert_eq!(
        (
            people[0].1.as_str(),
            people[0].2.as_str(),
            people[0].3.as_str()
        ),
        (
            "maria.souza@example.com.br",
            "Maria Souza",
            "America/Sao_Paulo"
        )
    );
    assert_eq!(
        (people[1].2.as_str(), people[1].3.as_str()),
        ("Rafael Lima", "America/Recife")
    );
    assert_eq!(
        body["contact_ids"][0], people[0].0,
        "the booker is the primary contact"
    );

    let deal = pg
        .query_one(
            "select id::text, contact_id::text, source, status from deals",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(deal.get::<_, String>(0), body["deal_id"].as_str().unwrap());
    assert_eq!(
        deal.get::<_, String>(1),
        people[0].0,
        "the deal is the booker's"
    );
    assert_eq!(
        (deal.get::<_, String>(2), deal.get::<_, String>(3)),
        ("calcom".into(), "open".into())
    );
    assert_eq!(
        moves(&pg).await,
        owned(&[(None, "New"), (Some("New"), "Meeting Scheduled")])
    );

    let m = pg
        .query_one(
            "select id::text, contact_id::text, body, metadata, actor, occurred_at = '2026-11-25T17:00:00Z'::timestamptz \
             from activities where type = 'meeting'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        m.get::<_, String>(0),
        body["meeting_activity_id"].as_str().unwrap()
    );
    assert_eq!(m.get::<_, String>(1), people[0].0);
    let text: String = m.get(2);
    assert!(
        text.starts_with(
            "Demo 30 min between Lucas Andrade and Maria Souza · 2026-11-25 17:00–17:30 UTC"
        ),
        "{text}"
    );
    let meta: Value = m.get(3);
    assert_eq!(meta["booking_uid"], UID);
    assert_eq!(meta["booking_uids"], json!([UID]));
    assert_eq!(
        meta["title"],
        "Demo 30 min between Lucas Andrade and Maria Souza"
    );
    assert_eq!(meta["start_time"], "2026-11-25T17:00:00Z");
    assert_eq!(meta["end_time"], "2026-11-25T17:30:00Z");
    assert_eq!(meta["location"], "integrations:daily");
    assert_eq!(
        meta["meeting_url"],
        format!("https://app.cal.com/video/{UID}")
    );
    assert_eq!(meta["calcom_booking_id"], 48213);
    assert_eq!(meta["status"], "scheduled");
    assert_eq!(
        (m.get::<_, String>(4), m.get::<_, bool>(5)),
        ("calcom".into(), true)
    );

    let out: Vec<Value> = pg
        .query("select body from outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["event_type"], "deal.stage_changed");
    assert_eq!(out[0]["payload"]["deal_id"], body["deal_id"]);
    assert_eq!(out[0]["payload"]["from"]["name"], "New");
    assert_eq!(out[0]["payload"]["to"]["name"], "Meeting Scheduled");
    assert_eq!(out[0]["payload"]["actor"], "calcom");

    let row = pg
        .query_one(
            "select b.status, s.name, b.meeting_activity_id::text, cardinality(b.attendee_contact_ids), b.calcom_booking_id \
             from calcom_bookings b join pipeline_stages s on s.id = b.stage_before_id where b.uid = $1",
            &[&UID],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("scheduled".into(), "New".into())
    );
    assert_eq!(
        row.get::<_, String>(2),
        body["meeting_activity_id"].as_str().unwrap()
    );
    assert_eq!((row.get::<_, i32>(3), row.get::<_, i64>(4)), (2, 48213));
    let ev = pg
        .query_one(
            "select status, http_status, result from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (ev.get::<_, String>(0), ev.get::<_, i32>(1)),
        ("processed".into(), 200)
    );
    assert_eq!(ev.get::<_, Value>(2), body);
}

#[tokio::test]
async fn a_reschedule_rewrites_the_same_meeting_with_the_new_times() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send(&deps, sample("created")).await;
    let (status, body) = send(&deps, sample("rescheduled")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["booking_uid"], NEW_UID);
    assert_eq!(body["rescheduled_from"], UID);
    assert_eq!(
        body["meeting_activity_id"], first["meeting_activity_id"],
        "the same meeting"
    );
    assert_eq!(body["deal_id"], first["deal_id"]);
    assert_eq!(body["deal_stage"], "Meeting Scheduled");

    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
    let meta: Value = pg
        .query_one(
            "select metadata from activities where type = 'meeting'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(meta["booking_uid"], NEW_UID);
    assert_eq!(meta["booking_uids"], json!([UID, NEW_UID]));
    assert_eq!(meta["start_time"], "2026-11-26T18:30:00Z");
    assert_eq!(meta["end_time"], "2026-11-26T19:00:00Z");
    assert_eq!(meta["rescheduled_from"], UID);
    assert_eq!(
        meta["meeting_url"],
        format!("https://app.cal.com/video/{NEW_UID}")
    );
    let row = |uid: &'static str| {
        let pg = &pg;
        async move {
            pg.query_one(
                "select status, rescheduled_from_uid, rescheduled_to_uid, meeting_activity_id::text \
                 from calcom_bookings where uid = $1",
                &[&uid],
            )
            .await
            .unwrap()
        }
    };
    let (old, new) = (row(UID).await, row(NEW_UID).await);
    assert_eq!(count(&pg, "select count(*) from calcom_bookings").await, 2);
    assert_eq!(
        (old.get::<_, String>(0), old.get::<_, Option<String>>(2)),
        ("rescheduled".into(), Some(NEW_UID.into()))
    );
    assert_eq!(
        (new.get::<_, String>(0), new.get::<_, Option<String>>(1)),
        ("scheduled".into(), Some(UID.into()))
    );
    assert_eq!(
        old.get::<_, String>(3),
        new.get::<_, String>(3),
        "both uids point at one meeting"
    );
    assert_eq!(
        moves(&pg).await.len(),
        2,
        "a reschedule does not move the deal again"
    );
    assert_eq!(count(&pg, "select count(*) from outbox").await, 1);
}

#[tokio::test]
async fn a_cancellation_logs_it_and_moves_the_deal_back_to_the_stage_before_the_booking() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send(&deps, sample("created")).await;
    let (status, body) = send(&deps, sample("cancelled")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["booking_status"], "cancelled");
    assert_eq!(body["deal_stage"], "New");
    assert_eq!(body["meeting_activity_id"], first["meeting_activity_id"]);

    let pg = db.client().await;
    assert_eq!(stage_of(&pg, &body["deal_id"]).await, "New");
    assert_eq!(
        moves(&pg).await,
        owned(&[
            (None, "New"),
            (Some("New"), "Meeting Scheduled"),
            (Some("Meeting Scheduled"), "New")
        ])
    );
    let log = pg
        .query_one(
            "select body, metadata, actor from activities where id::text = $1",
            &[&body["cancellation_activity_id"].as_str()],
        )
        .await
        .unwrap();
    let text: String = log.get(0);
    assert!(
        text.contains("Reason: Fechamos com outro fornecedor por enquanto."),
        "{text}"
    );
    assert_eq!(log.get::<_, Value>(1)["event"], "meeting_cancelled");
    assert_eq!(log.get::<_, String>(2), "calcom");
    let meeting: (String, Value) = pg
        .query_one(
            "select body, metadata from activities where type = 'meeting'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(meeting.0.starts_with("Cancelled: "), "{}", meeting.0);
    assert_eq!(meeting.1["status"], "cancelled");
    assert_eq!(
        meeting.1["cancellation_reason"],
        "Fechamos com outro fornecedor por enquanto."
    );
    let row = pg
        .query_one(
            "select status, cancelled_at is not null, cancellation_reason from calcom_bookings",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("cancelled".into(), true)
    );
    let to_names: Vec<String> = pg
        .query(
            "select body -> 'payload' -> 'to' ->> 'name' from outbox order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(to_names, ["Meeting Scheduled", "New"]);

    // A late BOOKING_CREATED for the cancelled uid does not bring it back:
    // its uid and trigger are its key (a fresh Idempotency-Key header does
    // not make it new, issue 13), so it is a replay.
    let late = signed(
        &body_of("created").to_string(),
        &[("idempotency-key", Some("late-delivery-1"))],
    );
    let (status, again) = send(&deps, late).await;
    assert_eq!(status, 409, "{again}");
    let booking_status: String = pg
        .query_one("select status from calcom_bookings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(booking_status, "cancelled");
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn cancelling_the_rescheduled_booking_restores_the_original_stage() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    send(&deps, sample("created")).await;
    send(&deps, sample("rescheduled")).await;
    let cancel = edited("cancelled", |b| {
        b["payload"]["uid"] = json!(NEW_UID);
        b["payload"]["startTime"] = json!("2026-11-26T18:30:00Z");
        b["payload"]["endTime"] = json!("2026-11-26T19:00:00Z");
    });
    let (status, body) = send(&deps, cancel).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deal_stage"], "New");
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pg,
            "select count(*) from calcom_bookings where status = 'scheduled'"
        )
        .await,
        0
    );
}
