//! Recovery and shared limits, against a real PostgreSQL: a campaign paused
//! by the error threshold resumes and finishes; one rate budget per channel
//! shared by concurrent runners; rows stuck in `sending` are reconciled.

mod common;

use campaign_worker::{RunOutcome, run_campaign};
use chrono::{DateTime, Duration as Span, Utc};
use common::*;
use crm_domain::campaigns::runner::{self, Acquired, Lease};
use crm_testkit::TestDb;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

/// Marks released rows `sent`, but only those released in the last minute
/// (so rows the test made stuck long ago are left to the runner).
fn recent_sender(db: &TestDb, campaign_id: Uuid) -> tokio::task::JoinHandle<()> {
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
                     where campaign_id = $1 and status = 'sending' and released_at > now() - interval '1 minute'",
                    &[&campaign_id],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test]
async fn a_campaign_paused_by_the_error_threshold_resumes_and_finishes() {
    let db = TestDb::new().await;
    let id = campaign(&db, 15, 100.0, "sending").await;
    ledger(&db, id).await;
    let c = db.client().await;
    // 10 rows came back, 3 failed (30 % > 20 %); 5 still queued.
    c.execute(
        "with picked as (select id, row_number() over (order by id) n from campaign_deliveries \
                         where campaign_id = $1 order by id limit 10) \
         update campaign_deliveries d set \
             status = case when p.n <= 3 then 'failed' else 'delivered' end, \
             failed_at = case when p.n <= 3 then now() end, \
             sent_at = case when p.n <= 3 then null else now() end, \
             error_code = case when p.n <= 3 then '30003' end \
         from picked p where d.id = p.id",
        &[&id],
    )
    .await
    .unwrap();
    let (deps, _) = deps(&db, config(50, 20, 10));
    let outcome = run_campaign(id, &deps, soon(5_000)).await.unwrap();
    assert!(matches!(outcome, RunOutcome::Paused { .. }), "{outcome:?}");
    assert_eq!(count(&db, id, "queued").await, 5);

    // POST resume's statement (the API test checks it sets resumed_at).
    c.execute(
        "update campaigns set status = 'sending', pause_reason = null, resumed_at = now(), \
         updated_at = now() where id = $1 and status = 'paused'",
        &[&id],
    )
    .await
    .unwrap();
    let sender = recent_sender(&db, id);
    let outcome = run_campaign(id, &deps, soon(20_000)).await.unwrap();
    sender.abort();
    // Before the fix the same 3 failures paused it again at the first batch.
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
    assert_eq!(count(&db, id, "queued").await, 0);
    assert_eq!(count(&db, id, "sent").await, 5);
    assert_eq!(audit(&db, "crm.campaign.paused", id).await.len(), 1);
}

/// A second campaign on the same channel, segment and template.
async fn second_campaign(db: &TestDb, first: Uuid) -> Uuid {
    let c = db.client().await;
    let id: Uuid = c
        .query_one(
            "insert into campaigns (name, channel, segment_id, template_id, status, created_by, queued_at) \
             select 'second', channel, segment_id, template_id, 'sending', created_by, now() \
             from campaigns where id = $1 returning id",
            &[&first],
        )
        .await
        .unwrap()
        .get(0);
    ledger(db, id).await;
    id
}

fn pool(db: &TestDb) -> deadpool_postgres::Pool {
    crm_platform::db::build_pool(
        &crm_platform::config::DatabaseConfig::from_url(&db.url, 4).unwrap(),
    )
    .unwrap()
}

async fn lease(db: &TestDb, id: Uuid) -> Lease {
    let c = pool(db).get().await.unwrap();
    match runner::acquire(&c, id, Duration::from_secs(600))
        .await
        .unwrap()
    {
        Acquired::Leased { lease, .. } => lease,
        other => panic!("{other:?}"),
    }
}

/// One release by `lease` at bucket time `at`, committed.
async fn release_at(db: &TestDb, lease: &Lease, rows: i64, at: DateTime<Utc>) -> i64 {
    let mut c = pool(db).get().await.unwrap();
    let tx = c.transaction().await.unwrap();
    let ids = runner::release_batch(&tx, lease, rows, Some(at))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ids.len() as i64
}

#[tokio::test]
async fn two_campaigns_on_one_channel_share_its_rate() {
    let db = TestDb::new().await;
    // sms at 10/s, a 1 s batch interval: 10 rows per interval for the channel.
    let a = campaign(&db, 40, 10.0, "sending").await;
    ledger(&db, a).await;
    let b = second_campaign(&db, a).await;
    let (la, lb) = (lease(&db, a).await, lease(&db, b).await);
    let (rows, _) = runner::pace(10.0, Duration::from_secs(1));
    assert_eq!(rows, 10);

    let t0: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let mut per_interval = Vec::new();
    for k in 0..6 {
        let at = t0 + Span::seconds(k);
        // Both runners try a full batch each interval, in alternating order.
        let (first, second) = if k % 2 == 0 { (&la, &lb) } else { (&lb, &la) };
        let n = release_at(&db, first, rows, at).await + release_at(&db, second, rows, at).await;
        per_interval.push(n);
    }
    // Together never more than rate × interval, and the budget is used.
    assert_eq!(per_interval, vec![10; 6], "{per_interval:?}");
    // Half an interval later: half the budget; a retry at the same instant gets nothing.
    let at = t0 + Span::milliseconds(5_500);
    assert_eq!(release_at(&db, &la, rows, at).await, 5);
    assert_eq!(release_at(&db, &lb, rows, at).await, 0);
    // After a long idle the bucket holds one batch, not the idle time's worth.
    let at = t0 + Span::seconds(60);
    let n = release_at(&db, &la, rows, at).await + release_at(&db, &lb, rows, at).await;
    assert_eq!(n, 10);
    let released: i64 = db
        .client()
        .await
        .query_one(
            "select count(*) from campaign_deliveries where status = 'sending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(released, 6 * 10 + 5 + 10);
    // Each campaign got a share (the order alternated).
    assert!(count(&db, a, "sending").await >= 30);
    assert!(count(&db, b, "sending").await >= 30);
}

#[tokio::test]
async fn concurrent_runners_on_one_channel_stay_within_its_rate() {
    let db = TestDb::new().await;
    // 20/s × 100 ms batches: each runner alone would release 2 per batch.
    let a = campaign(&db, 30, 20.0, "sending").await;
    ledger(&db, a).await;
    let b = second_campaign(&db, a).await;
    let (deps, _) = deps(&db, config(100, 20, 50));
    let started = std::time::Instant::now();
    let deadline = soon(1_000);
    let (ra, rb) = tokio::join!(
        run_campaign(a, &deps, deadline),
        run_campaign(b, &deps, deadline)
    );
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(ra.unwrap(), RunOutcome::Continued);
    assert_eq!(rb.unwrap(), RunOutcome::Continued);
    let released = count(&db, a, "sending").await + count(&db, b, "sending").await;
    // A full first batch plus the rate over the run (half a row of jitter
    // tolerance per batch); two independent runners would release about twice that.
    let bound = 2.0 + 20.0 * elapsed + 1.0;
    assert!(
        (released as f64) <= bound,
        "{released} released in {elapsed:.2} s (bound {bound:.1})"
    );
    assert!(released >= 10, "{released}");
}

/// A campaign whose 4 rows were released 2 h ago and never finished: rows
/// 1–3 never attempted, row 4 attempted (provider outcome unknown).
async fn stuck(db: &TestDb) -> Uuid {
    let id = campaign(db, 4, 100.0, "sending").await;
    ledger(db, id).await;
    db.client()
        .await
        .execute(
            "with picked as (select id, row_number() over (order by id) n from campaign_deliveries \
                             where campaign_id = $1) \
             update campaign_deliveries d set status = 'sending', \
                 released_at = now() - interval '2 hours', \
                 attempted_at = case when p.n = 4 then now() - interval '2 hours' end, \
                 attempts = case when p.n = 4 then 1 else 0 end \
             from picked p where d.id = p.id",
            &[&id],
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn rows_stuck_in_sending_are_requeued_or_failed_uncertain_and_the_campaign_finishes() {
    let db = TestDb::new().await;
    let id = stuck(&db).await;
    let mut config = config(50, 20, 50);
    config.inflight_timeout = Duration::from_secs(60);
    let (deps, _) = deps(&db, config);
    let sender = recent_sender(&db, id);
    let outcome = run_campaign(id, &deps, soon(10_000)).await.unwrap();
    sender.abort();
    // Before the fix: paused "still sending", and a resume paused it again.
    let RunOutcome::Finished { counts } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(counts.get("sent"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("failed"), Some(&1), "{counts:?}");
    let c = db.client().await;
    let row = c
        .query_one(
            "select error_code, attempts from campaign_deliveries where campaign_id = $1 and status = 'failed'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("uncertain")
    );
    // The attempted row was never released again: only the three requeued rows got a new job.
    assert_eq!(jobs_per_delivery(&db).await.len(), 3);
    assert!(audit(&db, "crm.campaign.paused", id).await.is_empty());
}

#[tokio::test]
async fn rows_in_flight_within_the_timeout_are_left_alone() {
    let db = TestDb::new().await;
    let id = stuck(&db).await;
    let lease = lease(&db, id).await;
    let c = pool(&db).get().await.unwrap();
    let r = runner::reconcile_stuck(&c, &lease, Duration::from_secs(3 * 3600))
        .await
        .unwrap();
    assert_eq!(r, runner::Reconciled::default());
    assert_eq!(count(&db, id, "sending").await, 4);
    let r = runner::reconcile_stuck(&c, &lease, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        r,
        runner::Reconciled {
            requeued: 3,
            failed: 1
        }
    );
    assert_eq!(count(&db, id, "queued").await, 3);
}
