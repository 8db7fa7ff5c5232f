//! Shared set-up for the campaign worker's tests: a campaign over N contacts
//! on a channel with a given rate, a publisher that records what it is
//! given, and a stand-in for the send worker.
#![allow(dead_code)]

use campaign_worker::{Deps, RunnerConfig};
use crm_domain::outbox::{BoxFuture, Publisher, QueueName};
use crm_platform::{config::DatabaseConfig, db::build_pool};
use crm_testkit::TestDb;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use uuid::Uuid;

/// Records every publish (queue, outbox message id, body).
#[derive(Default)]
pub struct Recorder {
    pub sent: Mutex<Vec<(QueueName, Uuid, String)>>,
}

impl Recorder {
    pub fn bodies(&self, queue: QueueName) -> Vec<serde_json::Value> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _, _)| *q == queue)
            .map(|(_, _, b)| serde_json::from_str(b).unwrap())
            .collect()
    }
}

impl Publisher for Recorder {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        message_id: Uuid,
        body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.sent
            .lock()
            .unwrap()
            .push((queue, message_id, body.to_string()));
        Box::pin(async { Ok(()) })
    }
}

/// Fast batches for tests: `interval_ms` per batch, threshold `pct` % over `window`.
pub fn config(interval_ms: u64, pct: u32, window: i64) -> RunnerConfig {
    RunnerConfig {
        budget: Duration::from_secs(30),
        batch_interval: Duration::from_millis(interval_ms),
        error_threshold_pct: pct,
        error_window: window,
        ..RunnerConfig::default()
    }
}

pub fn deps(db: &TestDb, config: RunnerConfig) -> (Deps, Arc<Recorder>) {
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 8).unwrap()).unwrap();
    let recorder = Arc::new(Recorder::default());
    let publisher: Arc<dyn Publisher> = recorder.clone();
    (Deps::with(pool, Some(publisher), config), recorder)
}

/// `n` contacts with phones (and e-mails), an enabled `sms` channel at
/// `rate`/s, an approved SMS template without variables, a segment of every
/// contact, and a campaign in `status` (`queued` as POST send leaves it, or
/// `sending` for ledger rows inserted by the test). Returns the campaign id.
pub async fn campaign(db: &TestDb, n: i32, rate: f64, status: &str) -> Uuid {
    let c = db.client().await;
    c.execute(
        "insert into contacts (email, phone, first_name) \
         select 'p' || g || '@example.com', '+1555' || lpad(g::text, 7, '0'), 'P' || g \
         from generate_series(1, $1) g",
        &[&n],
    )
    .await
    .unwrap();
    c.execute(
        "update channels set enabled = true, rate_per_second = $1::float8::numeric where name = 'sms'",
        &[&rate],
    )
    .await
    .unwrap();
    let template: Uuid = c
        .query_one(
            "insert into message_templates (name, channel, body, status, source, created_by) \
             values ('hello', 'sms', 'Hello from us', 'approved', 'api', 'user:alice') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let segment: Uuid = c
        .query_one(
            "insert into segments (name, filter, created_by) values ('everyone', '{}', 'user:alice') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.query_one(
        "insert into campaigns (name, channel, segment_id, template_id, status, created_by, queued_at) \
         values ('launch', 'sms', $1, $2, $3, 'user:alice', now()) returning id",
        &[&segment, &template, &status],
    )
    .await
    .unwrap()
    .get(0)
}

/// Ledger rows for every contact, `queued`, as a snapshot would write them
/// (for tests of the release logic on its own).
pub async fn ledger(db: &TestDb, campaign_id: Uuid) {
    let c = db.client().await;
    c.execute(
        "insert into campaign_deliveries (campaign_id, contact_id) select $1, id from contacts",
        &[&campaign_id],
    )
    .await
    .unwrap();
    c.execute(
        "update campaigns set recipients = (select count(*) from campaign_deliveries where campaign_id = $1), \
         snapshot_at = now() where id = $1",
        &[&campaign_id],
    )
    .await
    .unwrap();
}

/// Rows per status.
pub async fn statuses(db: &TestDb, campaign_id: Uuid) -> std::collections::BTreeMap<String, i64> {
    let c = db.client().await;
    c.query(
        "select status, count(*) from campaign_deliveries where campaign_id = $1 group by status",
        &[&campaign_id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

pub async fn count(db: &TestDb, campaign_id: Uuid, status: &str) -> i64 {
    statuses(db, campaign_id)
        .await
        .get(status)
        .copied()
        .unwrap_or(0)
}

/// Send jobs in the outbox per delivery: (delivery id, jobs).
pub async fn jobs_per_delivery(db: &TestDb) -> Vec<(Uuid, i64)> {
    let c = db.client().await;
    c.query(
        "select (body->>'delivery_id')::uuid, count(*) from outbox \
         where queue = 'send' and body->>'kind' = 'send_campaign_message' group by 1 order by 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Batches released, oldest first: rows per distinct `released_at` (one
/// release statement stamps its whole batch with the same time).
pub async fn batch_sizes(db: &TestDb, campaign_id: Uuid) -> Vec<i64> {
    let c = db.client().await;
    c.query(
        "select count(*) from campaign_deliveries where campaign_id = $1 and released_at is not null \
         group by released_at order by released_at",
        &[&campaign_id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A stand-in for the send worker: every `sending` row of the campaign
/// becomes `sent` shortly after release. Abort the handle to stop it.
pub fn fake_sender(db: &TestDb, campaign_id: Uuid) -> tokio::task::JoinHandle<()> {
    let url = db.url.clone();
    tokio::spawn(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        loop {
            client
                .execute(
                    "update campaign_deliveries set status = 'sent', sent_at = now(), attempts = attempts + 1 \
                     where campaign_id = $1 and status = 'sending'",
                    &[&campaign_id],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Polls until `status` has at least `n` rows (or panics after 20 s: a hang, not a timing assertion).
pub async fn wait_for(db: &TestDb, campaign_id: Uuid, status: &str, n: i64) {
    for _ in 0..2000 {
        if count(db, campaign_id, status).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {n} rows {status}");
}

/// Audit rows of `action` for the campaign: (actor, details).
pub async fn audit(
    db: &TestDb,
    action: &str,
    campaign_id: Uuid,
) -> Vec<(String, serde_json::Value)> {
    let c = db.client().await;
    c.query(
        "select actor, details from audit_log where action = $1 and target_id = $2 order by id",
        &[&action, &campaign_id.to_string()],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}
