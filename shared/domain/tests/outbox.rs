//! The outbox against a real PostgreSQL: the after-commit fast path
//! (`relay_ids`) publishes exactly the rows it names, never older rows of
//! other requests, with the same marking as the scheduled relay.

use crm_domain::outbox::{self, BoxFuture, Publisher, QueueName, RelayReport};
use crm_testkit::TestDb;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::json;
use std::sync::Mutex;
use uuid::Uuid;

fn pool(db: &TestDb) -> Pool {
    let cfg: tokio_postgres::Config = db.url.parse().unwrap();
    let mgr = Manager::from_config(
        cfg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr).max_size(2).build().unwrap()
}

/// Records what it was asked to publish.
#[derive(Default)]
struct Recorder(Mutex<Vec<(QueueName, Uuid)>>);

impl Publisher for Recorder {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        id: Uuid,
        _body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.0.lock().unwrap().push((queue, id));
            Ok(())
        })
    }
}

async fn published(c: &deadpool_postgres::Client, id: Uuid) -> bool {
    c.query_one(
        "select published_at is not null from outbox where message_id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn relay_ids_publishes_only_the_named_rows() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut c = pool.get().await.unwrap();
    // Older rows of others, unpublished, on the same queue and another.
    let older_send = outbox::enqueue(&c, QueueName::Send, &json!({"n": 0}))
        .await
        .unwrap();
    let older_media = outbox::enqueue(&c, QueueName::Media, &json!({"n": 1}))
        .await
        .unwrap();
    let mine = [
        outbox::enqueue(&c, QueueName::Send, &json!({"n": 2}))
            .await
            .unwrap(),
        outbox::enqueue(&c, QueueName::Enrichment, &json!({"n": 3}))
            .await
            .unwrap(),
    ];
    let recorder = Recorder::default();
    let report = outbox::relay_ids(&mut c, &recorder, &mine).await.unwrap();
    assert_eq!(
        report,
        RelayReport {
            published: 2,
            failed: 0
        }
    );
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [(QueueName::Send, mine[0]), (QueueName::Enrichment, mine[1])]
    );
    assert!(published(&c, mine[0]).await && published(&c, mine[1]).await);
    assert!(!published(&c, older_send).await && !published(&c, older_media).await);

    // Already published: not again. No ids: nothing at all.
    let again = outbox::relay_ids(&mut c, &recorder, &mine).await.unwrap();
    assert_eq!(again, RelayReport::default());
    assert_eq!(
        outbox::relay_ids(&mut c, &recorder, &[]).await.unwrap(),
        RelayReport::default()
    );
    assert_eq!(recorder.0.lock().unwrap().len(), 2);
    // The scheduled relay still finds the others.
    let rest = outbox::relay_batch(&mut c, &recorder, 10).await.unwrap();
    assert_eq!(rest.published, 2);
}

#[tokio::test]
async fn relay_ids_skips_a_row_another_relay_holds() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut c = pool.get().await.unwrap();
    let mut other = pool.get().await.unwrap();
    let id = outbox::enqueue(&c, QueueName::Send, &json!({"n": 0}))
        .await
        .unwrap();
    // Another relay has the row locked (publishing it right now).
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "select 1 from outbox where message_id = $1 for update",
        &[&id],
    )
    .await
    .unwrap();
    let recorder = Recorder::default();
    let report = outbox::relay_ids(&mut c, &recorder, &[id]).await.unwrap();
    assert_eq!(report, RelayReport::default(), "skipped, not waited for");
    tx.rollback().await.unwrap();
    assert!(recorder.0.lock().unwrap().is_empty());
}

/// Counts how many publishes are in flight at once; every third one fails.
#[derive(Default)]
struct Concurrency {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Publisher for Concurrency {
    fn publish<'a>(
        &'a self,
        _queue: QueueName,
        _id: Uuid,
        _body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.max.fetch_max(n, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.now.fetch_sub(1, SeqCst);
            if self.calls.fetch_add(1, SeqCst) % 3 == 2 {
                anyhow::bail!("queue unavailable");
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_fan_out_is_published_concurrently_and_each_row_keeps_its_own_outcome() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut c = pool.get().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..48 {
        ids.push(
            outbox::enqueue(&c, QueueName::Send, &json!({"n": n}))
                .await
                .unwrap(),
        );
    }
    let publisher = Concurrency::default();
    let report = outbox::relay_ids(&mut c, &publisher, &ids).await.unwrap();
    assert_eq!(
        report,
        RelayReport {
            published: 32,
            failed: 16
        }
    );
    let max = publisher.max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(max > 1, "publishes ran one at a time");
    assert!(max <= 16, "more than the bound in flight: {max}");
    let row = c
        .query_one(
            "select count(*) filter (where published_at is not null), \
                    count(*) filter (where published_at is null and last_error is not null and attempts = 1) \
             from outbox",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (32, 16));
}
