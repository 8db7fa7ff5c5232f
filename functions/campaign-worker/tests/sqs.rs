//! On SQS (moto): a run that fails comes back after `RETRY_AFTER`, not after
//! the queue's long visibility timeout; a poison message becomes visible at
//! once for the redrive.

mod common;

use aws_config::{BehaviorVersion, Region};
use aws_lambda_events::sqs::SqsEvent;
use campaign_worker::{Deps, RETRY_AFTER, handle};
use common::*;
use crm_platform::{config::DatabaseConfig, db::build_pool, queue::SqsVisibility};
use crm_testkit::{MotoServer, TestDb};
use serde_json::json;
use std::{sync::Arc, time::Duration};

async fn queue(moto: &MotoServer) -> (aws_sdk_sqs::Client, String) {
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
        .queue_name("campaign")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (sqs, url)
}

/// Sends `body`, receives it with a `visibility` s timeout, returns it as a Lambda event.
async fn received(sqs: &aws_sdk_sqs::Client, url: &str, body: &str, visibility: i32) -> SqsEvent {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
    let got = sqs
        .receive_message()
        .queue_url(url)
        .visibility_timeout(visibility)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let m = &got[0];
    serde_json::from_value(json!({"Records": [{
        "messageId": m.message_id.as_deref().unwrap(),
        "receiptHandle": m.receipt_handle.as_deref().unwrap(),
        "body": m.body.as_deref().unwrap(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }]}))
    .unwrap()
}

async fn visible(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    sqs.receive_message()
        .queue_url(url)
        .visibility_timeout(60)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .len()
}

#[tokio::test]
async fn a_failed_run_is_delayed_by_retry_after_and_a_poison_message_is_not() {
    assert!(RETRY_AFTER > Duration::from_secs(2));
    let moto = MotoServer::start().await;
    let (sqs, url) = queue(&moto).await;

    // A database that does not exist: the run fails, the message is retried.
    let db = TestDb::new().await;
    let missing = db.url.replace(&db.name, "crmt_no_such_database");
    let pool = build_pool(&DatabaseConfig::from_url(&missing, 1).unwrap()).unwrap();
    let mut deps = Deps::with(pool, None, config(50, 20, 50));
    deps.visibility = Some(Arc::new(SqsVisibility::new(sqs.clone(), &url)));
    let body =
        r#"{"kind":"run_campaign","v":1,"campaign_id":"0192f0c8-7a00-7000-8000-00000000ca01"}"#;
    // Received with a 1 s visibility: without the worker's delay it would be back after 1 s.
    let event = received(&sqs, &url, body, 1).await;
    let response = handle(event, &deps, Duration::from_secs(5)).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(visible(&sqs, &url).await, 0, "held for RETRY_AFTER");

    // A poison message: visible again at once (received with 600 s).
    let (deps, _) = {
        let (mut deps, r) = common::deps(&db, config(50, 20, 50));
        deps.visibility = Some(Arc::new(SqsVisibility::new(sqs.clone(), &url)));
        (deps, r)
    };
    let event = received(&sqs, &url, "{\"kind\":", 600).await;
    let response = handle(event, &deps, Duration::from_secs(5)).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(visible(&sqs, &url).await, 1, "released for the redrive");
}
