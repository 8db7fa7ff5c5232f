//! The scheduled relay finds work whose job never came back (a worker died
//! after its queue gave up on the message) once it is past its deadline,
//! and re-drives the job once per deadline, a bounded number of times.
//! Before this change nothing looked at these states again: they stayed
//! `queued` / `pending` / `received` forever.

use crm_domain::outbox::{self, QueueName, stale};
use crm_platform::{config::DatabaseConfig, db::build_pool};
use crm_testkit::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

async fn outbox_bodies(client: &tokio_postgres::Client, kind: &str) -> Vec<(Uuid, Value)> {
    client
        .query(
            "select message_id, body from outbox where body->>'kind' = $1 order by id",
            &[&kind],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Makes everything written so far look `minutes` old.
async fn age(client: &tokio_postgres::Client, minutes: i32) {
    client
        .batch_execute(&format!(
            "update messages set created_at = now() - interval '{minutes} minutes'; \
             update webhook_deliveries set updated_at = now() - interval '{minutes} minutes'; \
             update webhook_events set received_at = now() - interval '{minutes} minutes'; \
             update outbox set created_at = now() - interval '{minutes} minutes';"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn stale_sends_deliveries_and_c2s_events_are_redriven_once_per_deadline_and_at_most_three_times()
 {
    let db = TestDb::new().await;
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 2).unwrap()).unwrap();
    let client = db.client().await;
    let pg = pool.get().await.unwrap();
    // An outbound message waiting for its send, and one already taken by Twilio.
    let contact: Uuid = client
        .query_one(
            "insert into contacts (phone) values ('+5511987654321') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut sends = Vec::new();
    for sid in [None, Some("SM0123456789")] {
        let id: Uuid = client
            .query_one(
                "insert into messages (direction, channel, contact_id, body, status, provider_sid) \
                 values ('out', 'sms', $1, 'hi', 'queued', $2) returning id",
                &[&contact, &sid],
            )
            .await
            .unwrap()
            .get(0);
        outbox::enqueue(
            &pg,
            QueueName::Send,
            &json!({"kind": "send_message", "v": 1, "message_id": id}),
        )
        .await
        .unwrap();
        sends.push(id);
    }
    // A webhook delivery left pending with its lock lapsed.
    let event = Uuid::now_v7();
    client
        .execute(
            "insert into webhook_deliveries (event_id, event_type, target_key, target_origin, locked_until) \
             values ($1, 'deal.stage_changed', repeat('a', 64), 'http://127.0.0.1:1', now() - interval '1 hour')",
            &[&event],
        )
        .await
        .unwrap();
    let webhook_job = json!({"kind": "deliver_webhook", "v": 1, "event_id": event,
        "event_type": "deal.stage_changed", "occurred_at": "2026-12-01T00:00:00Z", "payload": {}});
    outbox::enqueue(&pg, QueueName::Send, &webhook_job)
        .await
        .unwrap();
    // A C2S event accepted whose enrichment never ran.
    let c2s: Uuid = client
        .query_one(
            "insert into webhook_events (source, idempotency_key, payload_hash, event_type) \
             values ('c2s', 'lead-1:on_create_lead', repeat('b', 64), 'on_create_lead') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let enrich_job = json!({"kind": "enrich_lead", "v": 1, "event_id": c2s,
        "lead_id": "lead-1", "hook_action": "on_create_lead"});
    outbox::enqueue(&pg, QueueName::Enrichment, &enrich_job)
        .await
        .unwrap();
    client
        .execute("update outbox set published_at = now()", &[])
        .await
        .unwrap();

    // Young states are left alone.
    age(&client, 5).await;
    assert_eq!(
        stale::sweep(&pg, stale::STALE_AFTER).await.unwrap(),
        stale::SweepReport::default()
    );

    // Past the deadline: each open state's job is copied once, under a new message id.
    age(&client, 20).await;
    let report = stale::sweep(&pg, stale::STALE_AFTER).await.unwrap();
    assert_eq!(
        report,
        stale::SweepReport {
            sends: 1,
            webhook_deliveries: 1,
            enrichment: 1
        }
    );
    let send_jobs = outbox_bodies(&client, "send_message").await;
    assert_eq!(send_jobs.len(), 3);
    assert_eq!(send_jobs[2].1["message_id"], json!(sends[0]));
    assert_ne!(send_jobs[2].0, send_jobs[0].0, "a fresh queue message id");
    assert_eq!(
        outbox_bodies(&client, "deliver_webhook").await[1].1,
        webhook_job
    );
    assert_eq!(outbox_bodies(&client, "enrich_lead").await[1].1, enrich_job);
    let unpublished: i64 = client
        .query_one(
            "select count(*) from outbox where published_at is null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unpublished, 3, "the relay publishes the copies");

    // Not again within the deadline of the copy.
    assert_eq!(
        stale::sweep(&pg, stale::STALE_AFTER).await.unwrap().total(),
        0
    );

    // At most MAX_REDRIVES copies per job, however long the state stays open.
    for _ in 0..5 {
        age(&client, 20).await;
        stale::sweep(&pg, stale::STALE_AFTER).await.unwrap();
    }
    assert_eq!(
        outbox_bodies(&client, "send_message").await.len() as i64,
        1 + 1 + stale::MAX_REDRIVES
    );

    // A finished state is never re-driven.
    client
        .batch_execute(
            "update webhook_deliveries set status = 'delivered', finished_at = now(); \
             update webhook_events set status = 'processed'; delete from outbox where body->>'kind' <> 'send_message';",
        )
        .await
        .unwrap();
    age(&client, 20).await;
    let last = stale::sweep(&pg, stale::STALE_AFTER).await.unwrap();
    assert_eq!((last.webhook_deliveries, last.enrichment), (0, 0));
}
