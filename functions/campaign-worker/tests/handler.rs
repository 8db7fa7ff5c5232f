//! The Lambda handler on the sample events: a `run_campaign` job runs the
//! campaign; a body that is not a job is recorded and reported failed.

mod common;

use aws_lambda_events::sqs::SqsEvent;
use campaign_worker::handle;
use common::*;
use crm_testkit::{TestDb, event};
use std::time::Duration;
use uuid::Uuid;

const EVENT_CAMPAIGN: &str = "0192f0c8-7a00-7000-8000-00000000ca01";

#[tokio::test]
async fn the_sample_job_runs_its_campaign_to_the_end() {
    let db = TestDb::new().await;
    let generated = campaign(&db, 4, 100.0, "queued").await;
    let id = Uuid::parse_str(EVENT_CAMPAIGN).unwrap();
    db.client()
        .await
        .execute(
            "update campaigns set id = $2 where id = $1",
            &[&generated, &id],
        )
        .await
        .unwrap();
    let (deps, _) = deps(&db, config(50, 20, 50));
    let sqs: SqsEvent = serde_json::from_str(&event("campaign-worker/run-campaign.json")).unwrap();
    let sender = fake_sender(&db, id);
    let response = handle(sqs, &deps, Duration::from_secs(20)).await;
    sender.abort();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(count(&db, id, "sent").await, 4);
    let status: String = db
        .client()
        .await
        .query_one("select status from campaigns where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "finished");
}

#[tokio::test]
async fn a_job_for_an_unknown_campaign_is_acknowledged() {
    let db = TestDb::new().await;
    let (deps, _) = deps(&db, config(50, 20, 50));
    let sqs: SqsEvent = serde_json::from_str(&event("campaign-worker/run-campaign.json")).unwrap();
    let response = handle(sqs, &deps, Duration::from_secs(5)).await;
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_malformed_body_is_recorded_and_reported_failed() {
    let db = TestDb::new().await;
    let (deps, _) = deps(&db, config(50, 20, 50));
    let sqs: SqsEvent = serde_json::from_str(&event("campaign-worker/malformed.json")).unwrap();
    let response = handle(sqs, &deps, Duration::from_secs(5)).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec!["5c2e8f10-3a4b-4c5d-8e6f-7a8b9c0d1e02".to_string()]
    );
    let row = db
        .client()
        .await
        .query_one(
            "select queue, reason from poison_messages where message_id = '5c2e8f10-3a4b-4c5d-8e6f-7a8b9c0d1e02'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "campaign");
    assert!(row.get::<_, String>(1).starts_with("not JSON"));
}
