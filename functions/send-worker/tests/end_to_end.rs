//! End to end, without Lambda: a stage change commits its outbox row, the
//! publish step "crashes", the relay republishes, the queue delivers twice
//! (at-least-once) — and the receiver gets the webhook exactly once. Also
//! the in-process consumer of `make run`, and SQS backoff through moto.

mod common;

use aws_config::{BehaviorVersion, Region};
use common::*;
use crm_domain::{outbox::QueueName, pipeline};
use crm_platform::{
    config::DatabaseConfig,
    db::build_pool,
    queue::{InProcessQueue, SqsVisibility},
};
use crm_testkit::{MotoServer, TestDb};
use send_worker::handle;
use serde_json::json;
use std::{sync::Arc, time::Duration};
use uuid::Uuid;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

/// A contact with an open deal in the default pipeline's "New" stage;
/// returns the deal and the id of the "Qualified" stage.
async fn deal(db: &TestDb) -> (Uuid, Uuid) {
    let c = db.client().await;
    let contact: Uuid = c
        .query_one(
            "insert into contacts (email) values ('ada@example.com') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let deal: Uuid = c
        .query_one(
            "insert into deals (contact_id, pipeline_id, stage_id, title) \
             select $1, p.id, s.id, 'Ada' from pipelines p join pipeline_stages s on s.pipeline_id = p.id \
             where p.is_default and s.name = 'New' returning id",
            &[&contact],
        )
        .await
        .unwrap()
        .get(0);
    let qualified: Uuid = c
        .query_one(
            "select s.id from pipeline_stages s join pipelines p on p.id = s.pipeline_id \
             where p.is_default and s.name = 'Qualified'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (deal, qualified)
}

#[tokio::test]
async fn a_stage_change_left_unpublished_is_relayed_and_delivered_exactly_once() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let deps = deps_for(&db, &[format!("{}/n8n", server.uri())], 5, 2_000);
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 2).unwrap()).unwrap();

    // Commit the move (and its outbox row); the process then dies before publishing.
    let (deal_id, qualified) = deal(&db).await;
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let moved = pipeline::move_stage(&tx, deal_id, qualified, "user:u1", None)
            .await
            .unwrap();
        assert!(matches!(moved, pipeline::MoveOutcome::Moved(_)));
        tx.commit().await.unwrap();
    }

    // The scheduled relay finds the row and publishes it to the send queue.
    let (queue, mut receivers) = InProcessQueue::new();
    let send = receivers.get_mut(&QueueName::Send).unwrap();
    let report = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.published, 1);
    let msg = send.recv().await.unwrap();
    let sqs_message = record("sqs-1", &msg.body, 1);
    let resp = handle(sqs_event(vec![sqs_message.clone()]), &deps).await;
    assert!(resp.batch_item_failures.is_empty());

    // Nothing left for a second relay run.
    let again = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.published, 0);
    assert!(send.try_recv().is_err());

    // SQS delivers the same message again, and a relay that crashed after
    // publishing but before marking the row publishes it a second time.
    let resp = handle(sqs_event(vec![sqs_message]), &deps).await;
    assert!(resp.batch_item_failures.is_empty());
    db.client()
        .await
        .execute("update outbox set published_at = null", &[])
        .await
        .unwrap();
    let republished = outbox_relay::relay(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(republished.published, 1);
    let copy = send.recv().await.unwrap();
    assert_eq!(copy.message_id, msg.message_id);
    let resp = handle(sqs_event(vec![record("sqs-2", &copy.body, 1)]), &deps).await;
    assert!(resp.batch_item_failures.is_empty());

    let got = server.received_requests().await.unwrap();
    assert_eq!(got.len(), 1, "exactly one webhook");
    let job: serde_json::Value = serde_json::from_str(&msg.body).unwrap();
    let event_id: Uuid = job["event_id"].as_str().unwrap().parse().unwrap();
    let posted = assert_signed(&got[0], event_id);
    assert_eq!(posted["type"], "deal.stage_changed");
    assert_eq!(posted["data"]["deal_id"], json!(deal_id));
    assert_eq!(posted["data"]["from"]["name"], "New");
    assert_eq!(posted["data"]["to"]["name"], "Qualified");
    assert_eq!(posted["data"]["to"]["stage_id"], json!(qualified));
    assert_eq!(posted["data"]["actor"], "user:u1");
    assert_eq!(
        deliveries(&db, event_id).await,
        [("delivered".into(), 1, Some(200), None)]
    );
}

#[tokio::test]
async fn the_local_consumer_redelivers_after_the_backoff() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut deps = deps_for(&db, &[format!("{}/hook", server.uri())], 5, 2_000);
    deps.backoff.base = Duration::from_millis(50);
    let (queue, mut receivers) = InProcessQueue::new();
    let worker = send_worker::local::spawn(receivers.remove(&QueueName::Send).unwrap(), deps);
    let event_id = Uuid::now_v7();
    use crm_domain::outbox::Publisher;
    queue
        .publish(QueueName::Send, Uuid::now_v7(), &job_body(event_id))
        .await
        .unwrap();
    eventually("the third attempt to deliver", || async {
        deliveries(&db, event_id).await.first().map(|d| d.0.clone()) == Some("delivered".into())
    })
    .await;
    assert_eq!(
        attempts(&db, event_id).await,
        [
            (1, Some(503), Some("http_status".into())),
            (2, Some(503), Some("http_status".into())),
            (3, Some(200), None)
        ]
    );
    worker.abort();
}

#[tokio::test]
async fn on_sqs_a_retry_delays_the_message_by_the_backoff() {
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
    let queue_url = sqs
        .create_queue()
        .queue_name("send")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(2)
        .mount(&server)
        .await;
    let mut deps = deps_for(&db, &[format!("{}/hook", server.uri())], 5, 2_000);
    deps.backoff.base = Duration::from_secs(1);
    deps.visibility = Some(Arc::new(SqsVisibility::new(sqs.clone(), &queue_url)));

    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(job_body(Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    let receive = || async {
        sqs.receive_message()
            .queue_url(&queue_url)
            .visibility_timeout(60)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    };
    let as_record = |m: &aws_sdk_sqs::types::Message| {
        let attrs = m.attributes.as_ref().unwrap();
        let count =
            &attrs[&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount];
        let mut r = record(
            m.message_id.as_deref().unwrap(),
            m.body.as_deref().unwrap(),
            count.parse().unwrap(),
        );
        r["receiptHandle"] = json!(m.receipt_handle.as_deref().unwrap());
        (count.clone(), r)
    };

    // Received with a 60 s visibility; the 500 makes the worker ask for 1 s.
    let got = receive().await;
    let (count, r) = as_record(&got[0]);
    assert_eq!(count, "1");
    assert_eq!(failures(&handle(sqs_event(vec![r]), &deps).await).len(), 1);
    assert!(receive().await.is_empty(), "invisible during the backoff");

    // Back after the backoff, not after 60 s.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let got = receive().await;
    let (count, r) = as_record(&got[0]);
    assert_eq!(count, "2");
    assert_eq!(failures(&handle(sqs_event(vec![r]), &deps).await).len(), 1);
    assert!(
        receive().await.is_empty(),
        "invisible during the second backoff (2 s)"
    );
}
