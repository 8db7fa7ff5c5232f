//! Delivery records against a real PostgreSQL: one claim at a time per
//! event and URL, a lapsed claim can be taken again, finished deliveries
//! stay finished, and concurrent claims have exactly one winner.

use crm_domain::{
    outbox::QueueName,
    webhooks_out::{
        AttemptOutcome,
        store::{self, AttemptRecord, Claim, DeliveryStatus, TargetRef},
    },
};
use crm_testkit::TestDb;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::time::Duration;
use uuid::Uuid;

const KEY: &str = "5a3f0e1c9b7d2a4e6f8a0b1c3d5e7f9a1b2c4d6e8f0a2b4c6d8e0f1a3b5c7d9e";
const TARGET: TargetRef<'static> = TargetRef {
    key: KEY,
    origin: "https://n8n.example.com",
};
const LEASE: Duration = Duration::from_secs(60);

fn pool(db: &TestDb, size: usize) -> Pool {
    let cfg: tokio_postgres::Config = db.url.parse().unwrap();
    let mgr = Manager::from_config(
        cfg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr).max_size(size).build().unwrap()
}

fn attempt(outcome: AttemptOutcome, status: DeliveryStatus) -> AttemptRecord<'static> {
    AttemptRecord {
        outcome,
        duration: Duration::from_millis(12),
        message_id: Some("m1"),
        status,
        error: None,
    }
}

#[tokio::test]
async fn a_claimed_delivery_is_busy_until_recorded_then_finished() {
    let db = TestDb::new().await;
    let pool = pool(&db, 1);
    let c = pool.get().await.unwrap();
    let event = Uuid::now_v7();
    let Claim::Claimed { id, attempts: 0 } =
        store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
            .await
            .unwrap()
    else {
        panic!("a new delivery is claimed");
    };
    assert_eq!(
        store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
            .await
            .unwrap(),
        Claim::Busy
    );
    let n = store::record_attempt(
        &c,
        id,
        &attempt(AttemptOutcome::Status(503), DeliveryStatus::Pending),
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
            .await
            .unwrap(),
        Claim::Claimed { id, attempts: 1 }
    );
    store::record_attempt(
        &c,
        id,
        &attempt(AttemptOutcome::Status(200), DeliveryStatus::Delivered),
    )
    .await
    .unwrap();
    assert_eq!(
        store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
            .await
            .unwrap(),
        Claim::Finished(DeliveryStatus::Delivered)
    );
    let row = c
        .query_one(
            "select status, attempts, locked_until is null, finished_at is not null from webhook_deliveries where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "delivered");
    assert_eq!(row.get::<_, i32>(1), 2);
    assert!(row.get::<_, bool>(2) && row.get::<_, bool>(3));
}

#[tokio::test]
async fn a_lapsed_claim_can_be_taken_again() {
    let db = TestDb::new().await;
    let pool = pool(&db, 1);
    let c = pool.get().await.unwrap();
    let event = Uuid::now_v7();
    let first = store::claim(
        &c,
        event,
        "deal.stage_changed",
        &TARGET,
        Duration::from_millis(1),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
        .await
        .unwrap();
    assert!(matches!(first, Claim::Claimed { .. }));
    assert_eq!(first, second, "the same delivery, no attempt recorded yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_have_exactly_one_winner() {
    let db = TestDb::new().await;
    let event = Uuid::now_v7();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = pool(&db, 1);
        let c = pool.get().await.unwrap();
        tasks.push(tokio::spawn(async move {
            store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Claim::Claimed { .. } => won += 1,
            Claim::Busy => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn poison_messages_are_counted_per_message() {
    let db = TestDb::new().await;
    let pool = pool(&db, 1);
    let c = pool.get().await.unwrap();
    store::record_poison(
        &c,
        QueueName::Send,
        "sqs-1",
        "not JSON (line 1, column 3)",
        1,
    )
    .await
    .unwrap();
    store::record_poison(
        &c,
        QueueName::Send,
        "sqs-1",
        "not JSON (line 1, column 3)",
        2,
    )
    .await
    .unwrap();
    let row = c
        .query_one(
            "select count(*), max(receive_count) from poison_messages",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (1, 2));
}

/// `(status, attempts, last_error, claim released, finished_at set)` of the delivery.
async fn state(
    c: &deadpool_postgres::Client,
    event: Uuid,
) -> (String, i32, Option<String>, bool, bool) {
    let r = c
        .query_one(
            "select status, attempts, last_error, locked_until is null, finished_at is not null \
             from webhook_deliveries where event_id = $1 and target_key = $2",
            &[&event, &KEY],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

#[tokio::test]
async fn giving_up_marks_an_unfinished_delivery_dead_and_releases_its_claim() {
    let db = TestDb::new().await;
    let pool = pool(&db, 1);
    let c = pool.get().await.unwrap();
    let event = Uuid::now_v7();
    // Held by someone right now.
    store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
        .await
        .unwrap();
    let why = "receives exhausted while another worker held the delivery";
    assert!(
        store::give_up(&c, event, "deal.stage_changed", &TARGET, why)
            .await
            .unwrap()
    );
    assert_eq!(
        state(&c, event).await,
        ("dead".into(), 0, Some(why.into()), true, true)
    );
    assert_eq!(
        store::claim(&c, event, "deal.stage_changed", &TARGET, LEASE)
            .await
            .unwrap(),
        Claim::Finished(DeliveryStatus::Dead)
    );
}

#[tokio::test]
async fn giving_up_leaves_a_finished_delivery_as_it_is_and_creates_a_missing_one_dead() {
    let db = TestDb::new().await;
    let pool = pool(&db, 1);
    let c = pool.get().await.unwrap();
    let delivered = Uuid::now_v7();
    let Claim::Claimed { id, .. } =
        store::claim(&c, delivered, "deal.stage_changed", &TARGET, LEASE)
            .await
            .unwrap()
    else {
        panic!("a new delivery is claimed");
    };
    store::record_attempt(
        &c,
        id,
        &attempt(AttemptOutcome::Status(204), DeliveryStatus::Delivered),
    )
    .await
    .unwrap();
    assert!(
        !store::give_up(&c, delivered, "deal.stage_changed", &TARGET, "too late")
            .await
            .unwrap()
    );
    assert_eq!(
        state(&c, delivered).await,
        ("delivered".into(), 1, None, true, true)
    );
    // Never claimed (its claim failed): written dead, so the reason is on record.
    let unseen = Uuid::now_v7();
    assert!(
        store::give_up(
            &c,
            unseen,
            "deal.stage_changed",
            &TARGET,
            "receives exhausted while a delivery step failed"
        )
        .await
        .unwrap()
    );
    assert_eq!(
        state(&c, unseen).await,
        (
            "dead".into(),
            0,
            Some("receives exhausted while a delivery step failed".into()),
            true,
            true
        )
    );
}
