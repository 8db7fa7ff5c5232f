//! The local runner's queues are as durable as SQS: an outbox row relayed
//! to a [`PgQueue`] is gone only when its consumer acknowledged it. A
//! consumer "killed" mid-job (its loop aborted, as SIGKILL would end it)
//! leaves the job to be received again after its visibility deadline, and a
//! restarted consumer finishes it exactly once.
//!
//! On the code before this change the relay marked a row published as soon
//! as it entered an in-process channel: aborting the consumer dropped the
//! message and nothing ever delivered it again (the first test's second
//! consumer would wait forever).

use crm_domain::outbox::{self, QueueName, local_queue as store};
use crm_platform::{
    config::DatabaseConfig,
    db::build_pool,
    local_queue::{self, Consumer, LocalOutcome, PgQueue},
    queue::LocalMessage,
};
use crm_testkit::TestDb;
use serde_json::json;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::mpsc;
use uuid::Uuid;

fn pool(db: &TestDb) -> deadpool_postgres::Pool {
    build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap()
}

const CONSUMER: Consumer = Consumer {
    queue: "send",
    concurrency: 4,
    max_receives: 5,
};

async fn unacked(pool: &deadpool_postgres::Pool) -> i64 {
    store::unacked(&pool.get().await.unwrap(), QueueName::Send)
        .await
        .unwrap()
}

async fn wait_until<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_job_whose_consumer_was_killed_mid_job_is_finished_exactly_once_after_a_restart() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let id = outbox::enqueue(
        &pool.get().await.unwrap(),
        QueueName::Send,
        &json!({"kind": "test", "n": 1}),
    )
    .await
    .unwrap();
    let queue = PgQueue::with_visibility(pool.clone(), Duration::from_secs(1));
    let report = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.published, 1);

    // The first process starts the job and dies before finishing it.
    let (started_tx, mut started) = mpsc::unbounded_channel::<(Uuid, u32)>();
    let first = local_queue::spawn(queue.source(QueueName::Send), CONSUMER, move |m, n| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send((m.message_id, n));
            std::future::pending::<LocalOutcome>().await
        }
    });
    assert_eq!(started.recv().await.unwrap(), (id, 1));
    first.abort();
    let _ = first.await;
    assert_eq!(unacked(&pool).await, 1, "the job survives its consumer");

    // The restarted process receives it again after the deadline and finishes it.
    let finished = Arc::new(Mutex::new(Vec::<(Uuid, u32)>::new()));
    let seen = finished.clone();
    let second = local_queue::spawn(
        PgQueue::with_visibility(pool.clone(), Duration::from_secs(1)).source(QueueName::Send),
        CONSUMER,
        move |m: LocalMessage, n| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((m.message_id, n));
                LocalOutcome::Done
            }
        },
    );
    wait_until("the job is acknowledged", async || {
        unacked(&pool).await == 0
    })
    .await;
    // Past another visibility deadline: nothing comes back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(*finished.lock().unwrap(), vec![(id, 2)]);
    second.abort();

    // The relay has nothing left, and a re-publish of the same message (a
    // relay that died between publishing and marking) is not a second job.
    let again = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.published, 0);
    let client = pool.get().await.unwrap();
    assert_eq!(
        store::publish(&client, QueueName::Send, id, "{}")
            .await
            .unwrap(),
        store::Published::Duplicate
    );
    assert_eq!(unacked(&pool).await, 0);
}

#[tokio::test]
async fn a_process_killed_before_consuming_keeps_every_accepted_job() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let client = pool.get().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            outbox::enqueue(&client, QueueName::Send, &json!({"kind": "test", "n": n}))
                .await
                .unwrap(),
        );
    }
    // Relayed, then the process dies before any worker ran.
    let queue = PgQueue::new(pool.clone());
    assert_eq!(
        outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
            .await
            .unwrap()
            .published,
        20
    );
    drop(queue);
    let finished = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let seen = finished.clone();
    let worker = local_queue::spawn(
        PgQueue::new(pool.clone()).source(QueueName::Send),
        CONSUMER,
        move |m: LocalMessage, _| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(m.message_id);
                LocalOutcome::Done
            }
        },
    );
    wait_until("every job is acknowledged", async || {
        unacked(&pool).await == 0
    })
    .await;
    worker.abort();
    let mut got = finished.lock().unwrap().clone();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each accepted job finished exactly once");
}

#[tokio::test]
async fn retries_come_back_after_their_delay_and_the_last_receive_is_dropped_with_its_reason() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let queue = PgQueue::new(pool.clone());
    let client = pool.get().await.unwrap();
    let (flaky, hopeless) = (Uuid::now_v7(), Uuid::now_v7());
    store::publish(&client, QueueName::Send, flaky, "flaky")
        .await
        .unwrap();
    store::publish(&client, QueueName::Send, hopeless, "hopeless")
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let s = seen.clone();
    let consumer = Consumer {
        max_receives: 3,
        ..CONSUMER
    };
    let worker = local_queue::spawn(queue.source(QueueName::Send), consumer, move |m, n| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((m.body.clone(), n));
            match (m.body.as_str(), n) {
                ("flaky", 2) => LocalOutcome::Done,
                _ => LocalOutcome::Retry {
                    after: Duration::from_millis(50),
                },
            }
        }
    });
    wait_until("both are acknowledged", async || unacked(&pool).await == 0).await;
    worker.abort();
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("flaky".to_string(), 1),
            ("flaky".to_string(), 2),
            ("hopeless".to_string(), 1),
            ("hopeless".to_string(), 2),
            ("hopeless".to_string(), 3),
        ]
    );
    let row = client
        .query_one(
            "select dead_reason from local_queue_messages where message_id = $1",
            &[&hopeless],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("still failing after its last receive")
    );
}
