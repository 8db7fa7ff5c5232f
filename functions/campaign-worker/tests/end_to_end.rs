//! Snapshot → release → the send worker's own `process` (local e-mail sink,
//! through the in-process send queue as `make run` wires it) → finished.

mod common;

use campaign_worker::{RunOutcome, run_campaign};
use common::*;
use crm_domain::{campaigns::audience, outbox::Publisher};
use crm_platform::{
    config::{CommonConfig, Env},
    queue::InProcessQueue,
};
use crm_testkit::TestDb;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

#[tokio::test]
async fn a_campaign_goes_from_snapshot_through_the_send_worker_to_finished() {
    let db = TestDb::new().await;
    let id = campaign(&db, 6, 100.0, "queued").await;
    let c = db.client().await;
    // An e-mail campaign (the local mail sink), enabled channel.
    c.batch_execute(&format!(
        "update channels set enabled = true, rate_per_second = 100 where name = 'email'; \
         update message_templates set channel = 'email', subject = 'News for {{{{contact.first_name}}}}', \
            body = 'Hello {{{{contact.first_name}}}}'; \
         update campaigns set channel = 'email' where id = '{id}'"
    ))
    .await
    .unwrap();
    // The snapshot is taken; then one recipient opts out before the send.
    let (mut deps, _) = deps(&db, config(50, 20, 50));
    let summary = {
        let client = deps.pool.get().await.unwrap();
        let summary = audience::snapshot(&client, id).await.unwrap();
        client
            .execute(
                "update campaigns set status = 'sending' where id = $1",
                &[&id],
            )
            .await
            .unwrap();
        summary
    };
    assert_eq!(summary.queued, 6);
    c.execute(
        "insert into opt_outs (contact_id, channel, source) select id, 'email', 'api' from contacts where email = 'p3@example.com'",
        &[],
    )
    .await
    .unwrap();

    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("APP_ENV", "test"),
        (
            "UNSUBSCRIBE_SECRET",
            "test-unsubscribe-secret-0123456789abcdef",
        ),
        ("PUBLIC_BASE_URL", "https://crm.example.com"),
    ]);
    let common = CommonConfig::from_env(&env).unwrap();
    let (queue, mut receivers) = InProcessQueue::new();
    let queue = Arc::new(queue);
    let sender = send_worker::local::spawn(
        receivers
            .remove(&crm_domain::outbox::QueueName::Send)
            .unwrap(),
        send_worker::Deps::new(&common, &env).unwrap(),
    );
    let publisher: Arc<dyn Publisher> = queue.clone();
    deps.publisher = Some(publisher);

    let outcome = run_campaign(id, &deps, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    sender.abort();
    let RunOutcome::Finished { counts } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(counts.get("sent"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("skipped"), Some(&1), "{counts:?}");
    let row = c
        .query_one(
            "select d.skip_reason from campaign_deliveries d join contacts k on k.id = d.contact_id \
             where d.campaign_id = $1 and k.email = 'p3@example.com'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("opted_out")
    );
    // Every sent row carries the sink's provider id; one job per delivery.
    let unsent: i64 = c
        .query_one(
            "select count(*) from campaign_deliveries where campaign_id = $1 and status = 'sent' and provider_id is null",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unsent, 0);
    let jobs = jobs_per_delivery(&db).await;
    assert_eq!(jobs.len(), 6);
    assert!(jobs.iter().all(|(_, n)| *n == 1));
    assert_eq!(audit(&db, "crm.campaign.finished", id).await.len(), 1);
}
