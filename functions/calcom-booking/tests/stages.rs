//! Where a booking leaves the deal: forward only, back on cancel to the stage
//! before the booking, bookings the CRM never saw, and our own failures.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::{Value, json};

/// A contact who already has an open deal at `stage`, and a name the CRM curated.
async fn known_contact_with_deal_at(pg: &tokio_postgres::Client, stage: &str) -> String {
    pg.batch_execute(&format!(
        "with c as (insert into contacts (email, full_name, source) values ('maria.souza@example.com.br', 'Maria S. Souza', 'instantly') returning id) \
         insert into deals (contact_id, pipeline_id, stage_id, title) \
         select c.id, s.pipeline_id, s.id, 'Souza Imóveis' from c, pipeline_stages s \
         join pipelines p on p.id = s.pipeline_id and p.is_default where s.name = '{stage}'"
    ))
    .await
    .unwrap();
    pg.query_one("select id::text from deals", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_deal_already_past_meeting_scheduled_is_neither_moved_forward_nor_back() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let deal_id = known_contact_with_deal_at(&pg, "Proposal").await;
    let (status, body) = send(&deps, sample("created")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["deal_id"].as_str(), body["deal_stage"].as_str()),
        (Some(deal_id.as_str()), Some("Proposal"))
    );
    let (_, body) = send(&deps, sample("cancelled")).await;
    assert_eq!(body["deal_stage"], "Proposal");
    assert!(moves(&pg).await.is_empty());
    assert_eq!(count(&pg, "select count(*) from outbox").await, 0);
    let c = pg
        .query_one(
            "select full_name, time_zone from contacts where email = 'maria.souza@example.com.br'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        c.get::<_, String>(0),
        "Maria S. Souza",
        "a name already on the contact is kept"
    );
    assert_eq!(
        c.get::<_, String>(1),
        "America/Sao_Paulo",
        "the booking's time zone is recorded"
    );
}

#[tokio::test]
async fn a_qualified_deal_moves_forward_and_a_cancellation_returns_it_to_qualified() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let deal_id = known_contact_with_deal_at(&pg, "Qualified").await;
    let (_, body) = send(&deps, sample("created")).await;
    assert_eq!(
        (body["deal_id"].as_str(), body["deal_stage"].as_str()),
        (Some(deal_id.as_str()), Some("Meeting Scheduled"))
    );
    let (_, body) = send(&deps, sample("cancelled")).await;
    assert_eq!(body["deal_stage"], "Qualified");
    assert_eq!(
        moves(&pg).await,
        owned(&[
            (Some("Qualified"), "Meeting Scheduled"),
            (Some("Meeting Scheduled"), "Qualified")
        ])
    );
}

#[tokio::test]
async fn a_cancellation_keeps_meeting_scheduled_while_another_booking_stands() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    send(&deps, sample("created")).await;
    let second = edited("created", |b| {
        b["payload"]["uid"] = json!("second-booking-uid");
        b["payload"]["startTime"] = json!("2026-12-02T17:00:00Z");
        b["payload"]["endTime"] = json!("2026-12-02T17:30:00Z");
    });
    let (status, _) = send(&deps, second).await;
    assert_eq!(status, 200);
    let (_, body) = send(&deps, sample("cancelled")).await;
    assert_eq!(
        body["deal_stage"], "Meeting Scheduled",
        "the second meeting still stands"
    );
    let cancel_second = edited("cancelled", |b| {
        b["payload"]["uid"] = json!("second-booking-uid")
    });
    let (_, body) = send(&deps, cancel_second).await;
    assert_eq!(
        body["deal_stage"], "New",
        "the last cancellation restores the stage before the first booking"
    );
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_reschedule_of_an_unknown_booking_schedules_a_new_meeting() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, sample("rescheduled")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deal_stage"], "Meeting Scheduled");
    let pg = db.client().await;
    let row = pg
        .query_one("select uid, rescheduled_from_uid from calcom_bookings", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (NEW_UID.into(), UID.into())
    );
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
async fn a_cancellation_of_an_unknown_booking_is_logged_and_a_late_creation_stays_cancelled() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, sample("cancelled")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["booking_status"], "cancelled");
    assert_eq!(body["meeting_activity_id"], Value::Null);
    let (status, late) = send(&deps, sample("created")).await;
    assert_eq!(status, 200, "{late}");
    assert_eq!(late["booking_status"], "cancelled");
    let pg = db.client().await;
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'meeting'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&pg, "select count(*) from deals").await,
        0,
        "a cancellation never opens a deal"
    );
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where metadata ->> 'event' = 'meeting_cancelled'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_failed_event_is_recorded_rolled_back_and_can_be_retried() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // Break the flow on our side: the default pipeline has no "Meeting Scheduled" stage.
    pg.batch_execute(
        "update pipeline_stages set name = 'Meeting (renamed)' where name = 'Meeting Scheduled'",
    )
    .await
    .unwrap();
    let (status, body) = send(&deps, sample("created")).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"error": "Internal error", "code": "internal_error"})
    );
    let row = pg
        .query_one(
            "select status, error_code, idempotency_key from webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (
            "failed".into(),
            "internal_error".into(),
            format!("calcom:{UID}:BOOKING_CREATED")
        )
    );
    assert_eq!(
        count(&pg, "select count(*) from contacts").await,
        0,
        "the failed flow rolled back"
    );
    assert_eq!(count(&pg, "select count(*) from calcom_bookings").await, 0);

    pg.batch_execute(
        "update pipeline_stages set name = 'Meeting Scheduled' where name = 'Meeting (renamed)'",
    )
    .await
    .unwrap();
    let (status, body) = send(&deps, sample("created")).await;
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

#[tokio::test]
async fn a_booking_cancelled_to_request_a_reschedule_is_rebooked_on_the_same_meeting() {
    // Cal.com's "request reschedule": the original is cancelled first, then the
    // attendee books again with rescheduleUid pointing at it.
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (_, first) = send(&deps, sample("created")).await;
    let (_, cancelled) = send(&deps, sample("cancelled")).await;
    assert_eq!(cancelled["deal_stage"], "New");
    let (status, body) = send(&deps, sample("rescheduled")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meeting_activity_id"], first["meeting_activity_id"]);
    assert_eq!(body["deal_stage"], "Meeting Scheduled");
    let pg = db.client().await;
    let (text, meta): (String, Value) = pg
        .query_one(
            "select body, metadata from activities where type = 'meeting'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(!text.starts_with("Cancelled"), "{text}");
    assert_eq!(meta["status"], "scheduled");
    assert_eq!(meta["cancelled_at"], Value::Null);
    assert_eq!(meta["start_time"], "2026-11-26T18:30:00Z");
    assert_eq!(
        moves(&pg).await,
        owned(&[
            (None, "New"),
            (Some("New"), "Meeting Scheduled"),
            (Some("Meeting Scheduled"), "New"),
            (Some("New"), "Meeting Scheduled"),
        ])
    );
    let old: String = pg
        .query_one("select status from calcom_bookings where uid = $1", &[&UID])
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, "rescheduled");
}
