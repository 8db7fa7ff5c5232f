//! The release loop against a real PostgreSQL: pacing, pause / cancel /
//! kill switch within one batch, resume and crash-resume from the ledger,
//! one runner per campaign, the error threshold, finishing, continuation.

mod common;

use campaign_worker::{RunOutcome, run_campaign};
use common::*;
use crm_domain::{
    jobs::{CampaignJob, Job},
    outbox::{self, QueueName},
};
use crm_testkit::TestDb;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

#[tokio::test]
async fn releases_rate_times_interval_rows_per_batch_with_one_job_each() {
    let db = TestDb::new().await;
    // 20/s × 100 ms = batches of 2.
    let id = campaign(&db, 10, 20.0, "sending").await;
    ledger(&db, id).await;
    let (deps, recorder) = deps(&db, config(100, 20, 50));

    // Nobody sends: the rows stay in flight and the budget ends the run.
    let outcome = run_campaign(id, &deps, soon(1500)).await.unwrap();
    assert_eq!(outcome, RunOutcome::Continued);

    // Batches of rate × interval: never more (the channel's budget caps each
    // take at one batch); one may be short when the database's clock saw
    // less than an interval since the previous refill (scheduling jitter).
    let sizes = batch_sizes(&db, id).await;
    assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
    assert!(sizes.iter().filter(|&&n| n == 2).count() >= 3, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), 10, "{sizes:?}");
    assert_eq!(count(&db, id, "sending").await, 10);
    // Exactly one send job per delivery, published right after commit.
    let jobs = jobs_per_delivery(&db).await;
    assert_eq!(jobs.len(), 10);
    assert!(jobs.iter().all(|(_, n)| *n == 1));
    let published = recorder.bodies(QueueName::Send);
    assert_eq!(published.len(), 10);
    for body in &published {
        let job = Job::parse(&body.to_string()).expect("the SQL-built body is a Job");
        let Job::SendCampaignMessage(job) = job else {
            panic!("not a campaign send job: {body}");
        };
        assert_eq!(job.v, 1);
        assert!(jobs.iter().any(|(d, _)| *d == job.delivery_id));
    }
    // The continuation: lease given up, one RunCampaign enqueued and published.
    let c = db.client().await;
    let lease: Option<chrono::DateTime<chrono::Utc>> = c
        .query_one(
            "select runner_lease_until from campaigns where id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lease, None);
    let next = recorder.bodies(QueueName::Campaign);
    assert_eq!(next.len(), 1);
    let CampaignJob::RunCampaign(job) = CampaignJob::parse(&next[0].to_string()).unwrap();
    assert_eq!(job.campaign_id, id);
    let unpublished: i64 = c
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
async fn a_rate_change_applies_from_the_next_batch() {
    let db = TestDb::new().await;
    let id = campaign(&db, 40, 10.0, "sending").await; // 1 row per 100 ms batch
    ledger(&db, id).await;
    let (deps, _) = deps(&db, config(100, 20, 50));
    let run = tokio::spawn(async move { run_campaign(id, &deps, soon(20_000)).await });

    wait_for(&db, id, "sending", 3).await;
    db.client()
        .await
        .execute(
            "update channels set rate_per_second = 50 where name = 'sms'",
            &[],
        )
        .await
        .unwrap(); // 5 rows per batch from now on
    let sender = fake_sender(&db, id);
    let outcome = run.await.unwrap().unwrap();
    sender.abort();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );

    let sizes = batch_sizes(&db, id).await;
    let first_fast = sizes
        .iter()
        .position(|&n| n == 5)
        .expect("a batch at the new rate");
    // Before the change: single rows (one batch may have been released while
    // the update committed); after the first 5-row batch, batches of at most
    // 5 (the shared channel budget may cut one short on scheduling jitter).
    assert!(sizes[..first_fast].iter().all(|&n| n == 1), "{sizes:?}");
    assert!(first_fast >= 3, "{sizes:?}");
    let after = &sizes[first_fast..];
    assert!(after.iter().all(|&n| n <= 5), "{sizes:?}");
    assert!(
        after.iter().filter(|&&n| n == 5).count() * 2 >= after.len(),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<i64>(), 40);
}

/// Runs a campaign of 100 single-row batches, applies `stop` once two rows
/// are out, and returns (rows released when stopped, rows released in the end, outcome).
async fn stop_midway(stop: &str) -> (TestDb, Uuid, i64, i64, RunOutcome) {
    let db = TestDb::new().await;
    let id = campaign(&db, 100, 10.0, "sending").await;
    ledger(&db, id).await;
    let (deps, _) = deps(&db, config(100, 20, 50));
    let run = tokio::spawn(async move { run_campaign(id, &deps, soon(20_000)).await });
    wait_for(&db, id, "sending", 2).await;
    let c = db.client().await;
    c.batch_execute(&stop.replace("$ID", &id.to_string()))
        .await
        .unwrap();
    let at_stop: i64 = c
        .query_one(
            "select count(*) from campaign_deliveries where campaign_id = $1 and released_at is not null",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let outcome = run.await.unwrap().unwrap();
    let released: i64 = c
        .query_one(
            "select count(*) from campaign_deliveries where campaign_id = $1 and released_at is not null",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    (db, id, at_stop, released, outcome)
}

#[tokio::test]
async fn pause_stops_the_release_within_one_batch() {
    let (db, id, at_stop, released, outcome) = stop_midway(
        "update campaigns set status = 'paused', pause_reason = 'paused by user:alice' where id = '$ID'",
    )
    .await;
    assert_eq!(
        outcome,
        RunOutcome::Stopped {
            why: "paused".into()
        }
    );
    assert!(
        released <= at_stop + 1,
        "{released} released, {at_stop} at the pause"
    );
    assert!(count(&db, id, "queued").await >= 97);
    // The lease is given up, so a resume's job can start at once.
    let c = db.client().await;
    let leased: bool = c
        .query_one(
            "select runner_lease_until is not null from campaigns where id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!leased);
}

#[tokio::test]
async fn cancel_stops_the_release_within_one_batch() {
    let (db, id, at_stop, released, outcome) = stop_midway(
        "begin; update campaigns set status = 'cancelled', cancelled_at = now() where id = '$ID'; \
         update campaign_deliveries set status = 'cancelled' where campaign_id = '$ID' and status = 'queued'; commit",
    )
    .await;
    assert_eq!(
        outcome,
        RunOutcome::Stopped {
            why: "cancelled".into()
        }
    );
    assert!(
        released <= at_stop + 1,
        "{released} released, {at_stop} at the cancel"
    );
    assert_eq!(count(&db, id, "queued").await, 0);
}

#[tokio::test]
async fn the_kill_switch_stops_the_release_and_leaves_rows_queued() {
    let (db, id, at_stop, released, outcome) =
        stop_midway("update module_switches set enabled = false where module = 'crm'").await;
    assert_eq!(
        outcome,
        RunOutcome::Stopped {
            why: "module_disabled".into()
        }
    );
    assert!(
        released <= at_stop + 1,
        "{released} released, {at_stop} at the switch"
    );
    assert!(count(&db, id, "queued").await >= 97);
    // The campaign itself is untouched: turning the module on resumes it.
    let c = db.client().await;
    let status: String = c
        .query_one("select status from campaigns where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "sending");
}

#[tokio::test]
async fn resume_continues_from_the_ledger_and_never_releases_a_row_twice() {
    let db = TestDb::new().await;
    let id = campaign(&db, 12, 100.0, "sending").await;
    ledger(&db, id).await;
    let (deps, recorder) = deps(&db, config(50, 20, 50));
    // A first run releases a few batches, then the campaign is paused.
    let first = tokio::spawn({
        let deps = deps.clone();
        async move { run_campaign(id, &deps, soon(20_000)).await }
    });
    wait_for(&db, id, "sending", 5).await;
    let c = db.client().await;
    c.execute(
        "update campaigns set status = 'paused' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert!(matches!(
        first.await.unwrap().unwrap(),
        RunOutcome::Stopped { .. }
    ));
    // Meanwhile the send worker sent what was released.
    c.execute(
        "update campaign_deliveries set status = 'sent', sent_at = now() where campaign_id = $1 and status = 'sending'",
        &[&id],
    )
    .await
    .unwrap();
    let sent_before = count(&db, id, "sent").await;
    assert!((5..12).contains(&sent_before), "{sent_before}");

    // Resume (as the API does: paused → sending) and run again.
    c.execute(
        "update campaigns set status = 'sending' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let sender = fake_sender(&db, id);
    let outcome = run_campaign(id, &deps, soon(20_000)).await.unwrap();
    sender.abort();
    let RunOutcome::Finished { counts } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(counts.get("sent"), Some(&12));
    let jobs = jobs_per_delivery(&db).await;
    assert_eq!(jobs.len(), 12);
    assert!(jobs.iter().all(|(_, n)| *n == 1), "{jobs:?}");
    assert_eq!(recorder.bodies(QueueName::Send).len(), 12);
}

#[tokio::test]
async fn a_crash_after_release_before_send_gives_each_delivery_exactly_one_job() {
    let db = TestDb::new().await;
    let id = campaign(&db, 8, 100.0, "sending").await;
    ledger(&db, id).await;
    let c = db.client().await;
    // The dead runner: it held the lease (now expired), released 3 rows with
    // their jobs in one statement, and died before publishing them.
    c.batch_execute(&format!(
        "update campaigns set runner_lease_until = now() - interval '1 second' where id = '{id}'; \
         with r as (update campaign_deliveries set status = 'sending', released_at = now() \
                    where id in (select id from campaign_deliveries where campaign_id = '{id}' order by id limit 3) \
                    returning id) \
         insert into outbox (queue, body) select 'send', jsonb_build_object('kind', 'send_campaign_message', 'v', 1, 'delivery_id', r.id) from r"
    ))
    .await
    .unwrap();
    let (deps, recorder) = deps(&db, config(50, 20, 50));

    // The job is received again and takes over; the relay publishes the dead runner's jobs.
    let sender = fake_sender(&db, id);
    let run = tokio::spawn({
        let deps = deps.clone();
        async move { run_campaign(id, &deps, soon(20_000)).await }
    });
    {
        let mut client = deps.pool.get().await.unwrap();
        outbox::relay_batch(&mut client, recorder.as_ref(), 100)
            .await
            .unwrap();
    }
    let outcome = run.await.unwrap().unwrap();
    sender.abort();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );

    let jobs = jobs_per_delivery(&db).await;
    assert_eq!(jobs.len(), 8);
    assert!(jobs.iter().all(|(_, n)| *n == 1), "{jobs:?}");
    // Published once each too (runner fast path + relay never overlap).
    let mut published: Vec<String> = recorder
        .bodies(QueueName::Send)
        .iter()
        .map(|b| b["delivery_id"].as_str().unwrap().to_string())
        .collect();
    published.sort();
    let n = published.len();
    published.dedup();
    assert_eq!((n, published.len()), (8, 8));
}

#[tokio::test]
async fn two_concurrent_runs_of_one_campaign_make_one_runner() {
    let db = TestDb::new().await;
    let id = campaign(&db, 20, 200.0, "queued").await;
    let (deps, _) = deps(&db, config(50, 20, 50));
    let sender = fake_sender(&db, id);
    let a = tokio::spawn({
        let deps = deps.clone();
        async move { run_campaign(id, &deps, soon(20_000)).await }
    });
    let b = tokio::spawn({
        let deps = deps.clone();
        async move { run_campaign(id, &deps, soon(20_000)).await }
    });
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    sender.abort();
    let outcomes = [a, b];
    assert_eq!(
        outcomes.iter().filter(|o| **o == RunOutcome::Busy).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, RunOutcome::Finished { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    // One snapshot, one job per delivery.
    assert_eq!(count(&db, id, "sent").await, 20);
    let jobs = jobs_per_delivery(&db).await;
    assert_eq!(jobs.len(), 20);
    assert!(jobs.iter().all(|(_, n)| *n == 1));
}

#[tokio::test]
async fn a_job_for_a_campaign_under_a_live_lease_is_dropped_and_an_expired_one_taken_over() {
    let db = TestDb::new().await;
    let id = campaign(&db, 3, 100.0, "sending").await;
    ledger(&db, id).await;
    let c = db.client().await;
    c.execute(
        "update campaigns set runner_lease_until = now() + interval '1 minute' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let (deps, _) = deps(&db, config(50, 20, 50));
    assert_eq!(
        run_campaign(id, &deps, soon(5_000)).await.unwrap(),
        RunOutcome::Busy
    );
    assert_eq!(count(&db, id, "queued").await, 3);

    c.execute(
        "update campaigns set runner_lease_until = now() - interval '1 second' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let sender = fake_sender(&db, id);
    let outcome = run_campaign(id, &deps, soon(20_000)).await.unwrap();
    sender.abort();
    assert!(
        matches!(outcome, RunOutcome::Finished { .. }),
        "{outcome:?}"
    );
}

/// A sending campaign whose ledger has `finished` rows of which `failed`
/// failed, and 5 rows still queued.
async fn with_outcomes(finished: i32, failed: i32) -> (TestDb, Uuid) {
    let db = TestDb::new().await;
    let id = campaign(&db, finished + 5, 100.0, "sending").await;
    ledger(&db, id).await;
    let c = db.client().await;
    c.execute(
        "with picked as (select id, row_number() over (order by id) n from campaign_deliveries \
                         where campaign_id = $1 order by id limit $2) \
         update campaign_deliveries d set \
             status = case when p.n <= $3 then 'failed' else 'delivered' end, \
             failed_at = case when p.n <= $3 then now() end, \
             sent_at = case when p.n <= $3 then null else now() end, \
             error_code = case when p.n <= $3 then '30003' end \
         from picked p where d.id = p.id",
        &[&id, &i64::from(finished), &i64::from(failed)],
    )
    .await
    .unwrap();
    (db, id)
}

#[tokio::test]
async fn more_failures_than_the_threshold_pause_the_campaign_with_the_reason() {
    let (db, id) = with_outcomes(10, 3).await; // 30 % > 20 %
    let (deps, _) = deps(&db, config(50, 20, 10));
    let outcome = run_campaign(id, &deps, soon(5_000)).await.unwrap();
    let RunOutcome::Paused { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("3 of the last 10"), "{reason}");
    let c = db.client().await;
    let row = c
        .query_one(
            "select status, pause_reason, runner_lease_until is null from campaigns where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "paused");
    assert_eq!(row.get::<_, Option<String>>(1), Some(reason.clone()));
    assert!(row.get::<_, bool>(2));
    // Nothing more released; the pause is audited by the system with counts, no contact data.
    assert_eq!(count(&db, id, "queued").await, 5);
    let audit = audit(&db, "crm.campaign.paused", id).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "system");
    assert_eq!(audit[0].1["reason"], reason.as_str());
    assert_eq!(audit[0].1["counts"]["failed"], 3);
    assert_eq!(audit[0].1["threshold_pct"], 20);
    assert!(!audit[0].1.to_string().contains("@example.com"));
    assert!(!audit[0].1.to_string().contains("+1555"));
}

#[tokio::test]
async fn failures_at_the_threshold_or_below_the_minimum_sample_do_not_pause() {
    for (finished, failed, window) in [(10, 2, 10), (4, 4, 10)] {
        // 20 % is not more than 20 %; 4 (then, with the 5 sent, 9) finished
        // rows stay below a window of 10 although every earlier one failed.
        let (db, id) = with_outcomes(finished, failed).await;
        let (deps, _) = deps(&db, config(50, 20, window));
        let sender = fake_sender(&db, id);
        let outcome = run_campaign(id, &deps, soon(20_000)).await.unwrap();
        sender.abort();
        assert!(
            matches!(outcome, RunOutcome::Finished { .. }),
            "{finished}/{failed}: {outcome:?}"
        );
        assert!(audit(&db, "crm.campaign.paused", id).await.is_empty());
    }
}

#[tokio::test]
async fn a_disabled_channel_pauses_the_campaign() {
    let db = TestDb::new().await;
    let id = campaign(&db, 3, 100.0, "sending").await;
    ledger(&db, id).await;
    db.client()
        .await
        .execute(
            "update channels set enabled = false where name = 'sms'",
            &[],
        )
        .await
        .unwrap();
    let (deps, _) = deps(&db, config(50, 20, 10));
    let outcome = run_campaign(id, &deps, soon(5_000)).await.unwrap();
    assert_eq!(
        outcome,
        RunOutcome::Paused {
            reason: "channel sms is disabled".into()
        }
    );
    assert_eq!(count(&db, id, "queued").await, 3);
    assert_eq!(audit(&db, "crm.campaign.paused", id).await.len(), 1);
}

#[tokio::test]
async fn finished_only_when_no_row_is_queued_or_sending_with_counts_audited() {
    let db = TestDb::new().await;
    let id = campaign(&db, 6, 100.0, "sending").await;
    ledger(&db, id).await;
    let (deps, recorder) = deps(&db, config(50, 20, 50));
    // Released but never sent: the run waits for them, then hands over.
    let outcome = run_campaign(id, &deps, soon(600)).await.unwrap();
    assert_eq!(outcome, RunOutcome::Continued);
    let c = db.client().await;
    let status: String = c
        .query_one("select status from campaigns where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "sending");
    assert!(audit(&db, "crm.campaign.finished", id).await.is_empty());
    assert_eq!(recorder.bodies(QueueName::Campaign).len(), 1);

    // The send worker ends every row: 3 delivered, 2 failed, 1 skipped at send time.
    c.batch_execute(&format!(
        "with r as (select id, row_number() over (order by id) n from campaign_deliveries where campaign_id = '{id}') \
         update campaign_deliveries d set \
            status = case when r.n <= 3 then 'delivered' when r.n <= 5 then 'failed' else 'skipped' end, \
            skip_reason = case when r.n > 5 then 'opted_out' end, \
            sent_at = case when r.n <= 3 then now() end, failed_at = case when r.n between 4 and 5 then now() end \
         from r where d.id = r.id"
    ))
    .await
    .unwrap();
    // The continuation (same job body) finishes it.
    let RunOutcome::Finished { counts } = run_campaign(id, &deps, soon(5_000)).await.unwrap()
    else {
        panic!("not finished");
    };
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![
            ("delivered".to_string(), 3),
            ("failed".to_string(), 2),
            ("skipped".to_string(), 1)
        ]
    );
    let row = c
        .query_one(
            "select status, finished_at is not null from campaigns where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "finished");
    assert!(row.get::<_, bool>(1));
    let audit = audit(&db, "crm.campaign.finished", id).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "system");
    assert_eq!(
        audit[0].1,
        serde_json::json!({"counts": {"delivered": 3, "failed": 2, "skipped": 1}, "recipients": 6})
    );
    // A late duplicate finds nothing to run.
    assert_eq!(
        run_campaign(id, &deps, soon(1_000)).await.unwrap(),
        RunOutcome::NotRunnable {
            status: "finished".into()
        }
    );
}

#[tokio::test]
async fn a_queued_campaign_is_snapshotted_once_then_released_and_finished() {
    let db = TestDb::new().await;
    let id = campaign(&db, 25, 200.0, "queued").await;
    let c = db.client().await;
    // One contact opted out of SMS, one has no phone: both skipped by the snapshot.
    c.batch_execute(
        "insert into opt_outs (contact_id, channel, source) select id, 'sms', 'api' from contacts where email = 'p1@example.com'; \
         update contacts set phone = null where email = 'p2@example.com'",
    )
    .await
    .unwrap();
    let (deps, recorder) = deps(&db, config(50, 20, 50));
    let sender = fake_sender(&db, id);
    let outcome = run_campaign(id, &deps, soon(20_000)).await.unwrap();
    sender.abort();
    let RunOutcome::Finished { counts } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(counts.get("sent"), Some(&23));
    assert_eq!(counts.get("skipped"), Some(&2));
    let row = c
        .query_one(
            "select recipients, snapshot_at is not null from campaigns where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(25));
    assert!(row.get::<_, bool>(1));
    assert_eq!(recorder.bodies(QueueName::Send).len(), 23);
}

#[tokio::test]
async fn a_stop_that_finds_the_campaign_resumed_keeps_the_lease() {
    use crm_domain::campaigns::runner::{self, Acquired};
    let db = TestDb::new().await;
    let id = campaign(&db, 2, 100.0, "sending").await;
    let (deps, _) = deps(&db, config(50, 20, 50));
    let client = deps.pool.get().await.unwrap();
    let Acquired::Leased { lease, .. } = runner::acquire(&client, id, Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not leased");
    };
    // The runner saw `paused`, but a resume committed before it let go.
    assert_eq!(runner::stop(&client, &lease).await.unwrap(), None);
    let held: bool = client
        .query_one(
            "select runner_lease_until is not null from campaigns where id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held, "the lease stays with the runner that will carry on");
    // Paused for real: the lease is given up.
    client
        .execute(
            "update campaigns set status = 'paused' where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        runner::stop(&client, &lease).await.unwrap().as_deref(),
        Some("paused")
    );
    // Module off with the campaign still sending: stopped too.
    client
        .execute(
            "update campaigns set status = 'sending', runner_lease_until = $2 where id = $1",
            &[&id, &lease.until],
        )
        .await
        .unwrap();
    client
        .execute(
            "update module_switches set enabled = false where module = 'crm'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        runner::stop(&client, &lease).await.unwrap().as_deref(),
        Some("sending")
    );
}
