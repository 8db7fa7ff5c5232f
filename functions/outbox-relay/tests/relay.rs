//! The outbox relay against a real PostgreSQL: at-least-once, never twice
//! under concurrent relays, failures kept for the next run; and through SQS.

use crm_domain::outbox::{self, BoxFuture, Publisher, QueueName, RelayReport};
use crm_platform::{config::DatabaseConfig, db::build_pool, queue::InProcessQueue};
use crm_testkit::{MotoServer, TestDb};
use serde_json::json;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use uuid::Uuid;

fn pool(db: &TestDb) -> deadpool_postgres::Pool {
    build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap()
}

async fn enqueue_n(pool: &deadpool_postgres::Pool, n: usize) -> Vec<Uuid> {
    let client = pool.get().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            outbox::enqueue(&client, QueueName::Send, &json!({"kind": "test", "n": i}))
                .await
                .unwrap(),
        );
    }
    ids
}

/// Records what it was asked to publish; fails while `failing` is set.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(QueueName, Uuid, String)>>,
    failing: std::sync::atomic::AtomicBool,
}

impl Publisher for Recorder {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        id: Uuid,
        body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                anyhow::bail!("queue unavailable");
            }
            self.seen
                .lock()
                .unwrap()
                .push((queue, id, body.to_string()));
            Ok(())
        })
    }
}

#[tokio::test]
async fn unpublished_rows_are_published_once_in_order() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let ids = enqueue_n(&pool, 3).await;
    let (queue, mut rx) = InProcessQueue::new();
    let report = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        report,
        RelayReport {
            published: 3,
            failed: 0
        }
    );
    let send = rx.get_mut(&QueueName::Send).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let msg = send.recv().await.unwrap();
        assert_eq!(msg.message_id, *id);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&msg.body).unwrap(),
            json!({"kind": "test", "n": i})
        );
    }
    let again = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again, RelayReport::default());
    assert!(send.try_recv().is_err(), "nothing is published twice");
    let client = db.client().await;
    let unpublished: i64 = client
        .query_one(
            "select count(*) from outbox where published_at is null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unpublished, 0);
}

#[tokio::test]
async fn a_failed_publish_keeps_the_row_with_its_error_for_the_next_run() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    enqueue_n(&pool, 2).await;
    let recorder = Recorder::default();
    recorder
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let report = outbox_relay::relay(&pool, &recorder, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        report,
        RelayReport {
            published: 0,
            failed: 2
        }
    );
    let client = db.client().await;
    let row = client
        .query_one("select count(*), min(attempts), min(last_error) from outbox where published_at is null", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, i32>(1), 1);
    assert_eq!(row.get::<_, String>(2), "queue unavailable");

    recorder
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let report = outbox_relay::relay(&pool, &recorder, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        report,
        RelayReport {
            published: 2,
            failed: 0
        }
    );
    assert_eq!(recorder.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_run_relays_then_purges_expired_idempotency_keys_in_a_bounded_batch() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    enqueue_n(&pool, 2).await;
    let client = db.client().await;
    // 1,003 keys past their 24 hours (older than one purge batch), and one live.
    client
        .execute(
            "insert into api_idempotency_keys (user_id, idempotency_key, request_hash, lock_token, created_at) \
             select 'u1', 'old-' || n, repeat('a', 64), gen_random_uuid(), now() - interval '25 hours' \
             from generate_series(1, $1::int) n",
            &[&(outbox_relay::PURGE_BATCH as i32 + 3)],
        )
        .await
        .unwrap();
    client
        .execute(
            "insert into api_idempotency_keys (user_id, idempotency_key, request_hash, lock_token) \
             values ('u1', 'live', repeat('a', 64), gen_random_uuid())",
            &[],
        )
        .await
        .unwrap();
    let recorder = Recorder::default();
    let report = outbox_relay::run(&pool, &recorder, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        report,
        outbox_relay::RunReport {
            stale: Default::default(),
            relay: RelayReport {
                published: 2,
                failed: 0
            },
            idempotency_keys_purged: 1_000,
        }
    );
    let next = outbox_relay::run(&pool, &recorder, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(next.idempotency_keys_purged, 3);
    let left: Vec<String> = client
        .query("select idempotency_key from api_idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["live"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_relays_split_the_rows_and_never_publish_one_twice() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let ids = enqueue_n(&pool, 450).await;
    let recorder = Arc::new(Recorder::default());
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (pool, recorder) = (pool.clone(), recorder.clone());
        runs.push(tokio::spawn(async move {
            outbox_relay::relay(&pool, recorder.as_ref(), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut total = 0;
    for r in runs {
        total += r.await.unwrap().published;
    }
    // A relay stops on a short batch; sweep what a race may have left.
    total += outbox_relay::relay(&pool, recorder.as_ref(), Duration::from_secs(30))
        .await
        .unwrap()
        .published;
    assert_eq!(total, 450);
    let mut seen: Vec<Uuid> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id, _)| *id)
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every row exactly once");
}

#[tokio::test]
async fn relay_publishes_to_sqs() {
    use aws_config::{BehaviorVersion, Region};
    let moto = MotoServer::start().await;
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let url = sqs
        .create_queue()
        .queue_name("crm-send")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let publisher = crm_platform::queue::SqsPublisher::new(
        sqs.clone(),
        std::collections::HashMap::from([(QueueName::Send, url.clone())]),
    );
    let db = TestDb::new().await;
    let pool = pool(&db);
    let ids = enqueue_n(&pool, 2).await;
    let report = outbox_relay::relay(&pool, &publisher, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.published, 2);
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let mut got_ids: Vec<String> = got
        .messages
        .unwrap_or_default()
        .iter()
        .map(|m| {
            m.message_attributes.as_ref().unwrap()["outbox_message_id"]
                .string_value
                .clone()
                .unwrap()
        })
        .collect();
    got_ids.sort();
    let mut want: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    want.sort();
    assert_eq!(got_ids, want);
}

#[tokio::test]
async fn the_backlog_counts_unpublished_rows_until_the_relay_publishes_them() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    enqueue_n(&pool, 3).await;
    let client = pool.get().await.unwrap();
    let before = outbox::backlog(&client).await.unwrap();
    assert_eq!(before.pending, 3);
    assert!(before.oldest_age_secs >= 0.0);
    let recorder = Recorder::default();
    let report = outbox_relay::run(&pool, &recorder, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(report.relay.published, 3);
    let after = outbox_relay::report_backlog(&pool, &report).await.unwrap();
    assert_eq!(after.pending, 0);
    assert_eq!(after.oldest_age_secs, 0.0);
}
