//! CRM API idempotency keys against a real PostgreSQL: expired keys are
//! purged in bounded batches, oldest first; live ones are kept.

use crm_domain::crm::idempotency::purge_expired;
use crm_testkit::TestDb;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
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

/// A completed key of `user` created `hours_ago`.
async fn key(c: &deadpool_postgres::Client, user: &str, key: &str, hours_ago: f64) {
    c.execute(
        "insert into api_idempotency_keys (user_id, idempotency_key, request_hash, status, lock_token, \
           response_status, response_body, created_at, locked_at, completed_at) \
         values ($1, $2, repeat('a', 64), 'completed', $3, 201, '{}'::jsonb, \
           now() - make_interval(secs => $4::float8 * 3600), now() - make_interval(secs => $4::float8 * 3600), now())",
        &[&user, &key, &Uuid::new_v4(), &hours_ago],
    )
    .await
    .unwrap();
}

async fn keys(c: &deadpool_postgres::Client) -> Vec<String> {
    c.query(
        "select idempotency_key from api_idempotency_keys order by idempotency_key",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn expired_keys_are_purged_in_bounded_batches_and_live_ones_kept() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let c = pool.get().await.unwrap();
    key(&c, "u1", "old-1", 72.0).await;
    key(&c, "u2", "old-2", 48.0).await;
    key(&c, "u1", "old-3", 24.5).await;
    key(&c, "u1", "live-1", 23.5).await;
    key(&c, "u2", "live-2", 0.0).await;

    assert_eq!(purge_expired(&c, 2).await.unwrap(), 2);
    assert_eq!(
        keys(&c).await,
        ["live-1", "live-2", "old-3"],
        "oldest first"
    );
    assert_eq!(purge_expired(&c, 2).await.unwrap(), 1);
    assert_eq!(purge_expired(&c, 2).await.unwrap(), 0);
    assert_eq!(keys(&c).await, ["live-1", "live-2"]);
}

#[tokio::test]
async fn a_key_held_by_a_request_is_skipped_not_waited_for() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let c = pool.get().await.unwrap();
    let mut holder = pool.get().await.unwrap();
    key(&c, "u1", "old-held", 30.0).await;
    key(&c, "u1", "old-free", 30.0).await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "select 1 from api_idempotency_keys where idempotency_key = 'old-held' for update",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(purge_expired(&c, 10).await.unwrap(), 1);
    tx.rollback().await.unwrap();
    assert_eq!(keys(&c).await, ["old-held"]);
    assert_eq!(purge_expired(&c, 10).await.unwrap(), 1);
}
