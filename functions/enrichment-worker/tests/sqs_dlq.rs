//! On SQS (moto): a job that keeps failing is delayed by the worker's
//! backoff, and after ENRICHMENT_MAX_ATTEMPTS receives it lands in the
//! dead-letter queue — with the reason on its webhook event.

mod common;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use common::*;
use crm_platform::queue::SqsVisibility;
use crm_testkit::{MotoServer, TestDb};
use enrichment_worker::handle;
use serde_json::json;
use std::{sync::Arc, time::Duration};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

#[tokio::test]
async fn a_job_that_keeps_failing_lands_in_the_dlq_and_the_event_says_why() {
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
    let dlq_url = sqs
        .create_queue()
        .queue_name("enrichment-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue_url = sqs
        .create_queue()
        .queue_name("enrichment")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-q", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-q", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&m.diretrix)
        .await;
    let mut deps = deps(&db, config(Some(&m), &[("ENRICHMENT_MAX_ATTEMPTS", "2")]));
    deps.backoff.base = Duration::from_secs(1);
    deps.visibility = Some(Arc::new(SqsVisibility::new(sqs.clone(), &queue_url)));

    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(job_body(event, "lead-q", "on_create_lead"))
        .send()
        .await
        .unwrap();
    let receive = |url: String| {
        let sqs = sqs.clone();
        async move {
            sqs.receive_message()
                .queue_url(url)
                .visibility_timeout(60)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default()
        }
    };
    for expected in 1..=2u32 {
        let mut got = Vec::new();
        for _ in 0..60 {
            got = receive(queue_url.clone()).await;
            if !got.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let msg = &got[0];
        let count: u32 = msg.attributes.as_ref().unwrap()
            [&MessageSystemAttributeName::ApproximateReceiveCount]
            .parse()
            .unwrap();
        assert_eq!(count, expected);
        let mut r = record(
            "enrichment-worker/create-lead.json",
            msg.message_id.as_deref().unwrap(),
            msg.body.as_deref().unwrap(),
            count,
        );
        r["receiptHandle"] = json!(msg.receipt_handle.as_deref().unwrap());
        let resp = handle(sqs_event(vec![r]), &deps).await;
        assert_eq!(
            failures(&resp).len(),
            1,
            "receive {expected} is a batch item failure"
        );
    }
    // The last receive left it visible at once: SQS redrives it to the DLQ.
    let mut in_dlq = Vec::new();
    for _ in 0..60 {
        assert!(
            receive(queue_url.clone()).await.is_empty(),
            "never delivered a third time"
        );
        in_dlq = receive(dlq_url.clone()).await;
        if !in_dlq.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(in_dlq.len(), 1, "the message is in the dead-letter queue");
    assert_eq!(
        event_row(&pg, event).await,
        (
            "failed".to_string(),
            Some("gave up after 2 attempts: Diretrix answered HTTP 503".to_string())
        )
    );
}
