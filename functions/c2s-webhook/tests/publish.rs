//! The after-commit fast path: each accepted element's enrichment job is
//! published right after its statement commits (exactly this call's rows),
//! and a publish failure never changes the answer — the row waits for the
//! scheduled relay.

mod common;

use common::*;
use crm_domain::outbox::{self, BoxFuture, Publisher, QueueName};
use crm_testkit::TestDb;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Records every publish (queue, outbox message id, body); fails them all
/// when `fail` is set (after recording the attempt).
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(QueueName, Uuid, Value)>>,
    fail: bool,
}

impl Recorder {
    fn failing() -> Self {
        Self {
            fail: true,
            ..Self::default()
        }
    }

    fn sent(&self) -> Vec<(QueueName, Uuid, Value)> {
        self.sent.lock().unwrap().clone()
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
            .push((queue, message_id, serde_json::from_str(body).unwrap()));
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                anyhow::bail!("queue unavailable")
            }
            Ok(())
        })
    }
}

fn with_publisher(db: &TestDb, recorder: &Arc<Recorder>) -> c2s_webhook::Deps {
    let mut deps = deps(db);
    let publisher: Arc<dyn Publisher> = recorder.clone();
    deps.publisher = Some(publisher);
    deps
}

/// (message_id, event_id in the body, published, attempts, last_error) of every enrichment row.
async fn rows(
    pg: &tokio_postgres::Client,
) -> Vec<(Uuid, Option<String>, bool, i32, Option<String>)> {
    pg.query(
        "select message_id, body->>'event_id', published_at is not null, attempts, last_error \
         from outbox where queue = 'enrichment' order by id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

#[tokio::test]
async fn an_accepted_element_is_published_once_right_after_commit_and_a_duplicate_publishes_nothing()
 {
    let db = TestDb::new().await;
    let recorder = Arc::new(Recorder::default());
    let deps = with_publisher(&db, &recorder);
    let pg = db.client().await;
    // An older row nobody published yet (another call's, a crash's): not ours to take.
    let pooled = deps.pool.get().await.unwrap();
    let unrelated = outbox::enqueue(
        &pooled,
        QueueName::Enrichment,
        &json!({"kind": "someone_else", "v": 1}),
    )
    .await
    .unwrap();
    drop(pooled);

    let (status, body) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "accepted");
    let event_id = body["results"][0]["event_id"].as_str().unwrap().to_string();

    let sent = recorder.sent();
    assert_eq!(sent.len(), 1, "published once, before the answer");
    let (queue, message_id, job) = &sent[0];
    assert_eq!(*queue, QueueName::Enrichment);
    assert_eq!(job["kind"], "enrich_lead");
    assert_eq!(job["event_id"], event_id.as_str());
    let all = rows(&pg).await;
    let mine: Vec<_> = all.iter().filter(|r| r.0 != unrelated).collect();
    assert_eq!(mine.len(), 1);
    let (row_id, row_event, published, attempts, last_error) = mine[0];
    assert_eq!(row_id, message_id, "the outbox row's message_id");
    assert_eq!(row_event.as_deref(), Some(event_id.as_str()));
    assert!(*published, "marked published");
    assert_eq!((*attempts, last_error.as_deref()), (1, None));
    let other = all.iter().find(|r| r.0 == unrelated).unwrap();
    assert!(!other.2, "another call's row is left to the relay");

    // The same element again: duplicate, nothing written, nothing published.
    let (status, again) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["results"][0]["outcome"], "duplicate");
    assert_eq!(recorder.sent().len(), 1, "a duplicate publishes nothing");
    assert_eq!(rows(&pg).await.len(), 2);
}

#[tokio::test]
async fn an_array_publishes_each_accepted_elements_job_once() {
    let db = TestDb::new().await;
    let recorder = Arc::new(Recorder::default());
    let deps = with_publisher(&db, &recorder);
    let (status, body) = send_sample(&deps, "array-mixed.json").await;
    assert_eq!(status, 200, "{body}");
    let accepted: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "accepted")
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(accepted.len(), 2);
    let sent = recorder.sent();
    let published: Vec<&str> = sent
        .iter()
        .map(|s| s.2["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        published, accepted,
        "one job per accepted element, in order"
    );
    let pg = db.client().await;
    let rows = rows(&pg).await;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        sent.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    assert!(rows.iter().all(|r| r.2), "all marked published");
}

#[tokio::test]
async fn a_failing_publisher_still_answers_200_and_leaves_the_row_to_the_relay() {
    let db = TestDb::new().await;
    let recorder = Arc::new(Recorder::failing());
    let deps = with_publisher(&db, &recorder);
    let (status, body) = send_sample(&deps, "create-flat.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["results"][0]["outcome"], "accepted");
    assert_eq!(recorder.sent().len(), 1, "tried once");

    let pg = db.client().await;
    let rows_now = rows(&pg).await;
    assert_eq!(rows_now.len(), 1);
    let (message_id, _, published, attempts, last_error) = &rows_now[0];
    assert!(!published, "left unpublished for the relay");
    assert_eq!(*attempts, 1);
    assert!(last_error.is_some());
    assert_eq!(*message_id, recorder.sent()[0].1);

    // The scheduled relay then publishes it, under the same message_id.
    let relay = Recorder::default();
    let mut client = deps.pool.get().await.unwrap();
    let report = outbox::relay_batch(&mut client, &relay, 100).await.unwrap();
    assert_eq!((report.published, report.failed), (1, 0));
    assert_eq!(relay.sent()[0].1, *message_id);
    assert!(rows(&pg).await[0].2, "published by the relay");
}

#[tokio::test]
async fn on_a_500_the_jobs_of_the_elements_before_it_are_still_published() {
    let db = TestDb::new().await;
    let recorder = Arc::new(Recorder::default());
    let deps = with_publisher(&db, &recorder);
    let pg = db.client().await;
    // Make the second element's lead upsert fail.
    pg.batch_execute(
        "alter table c2s_leads add constraint test_refuse_lead check (id <> '8a3e5d7c1f2b4a6e')",
    )
    .await
    .unwrap();
    let array = json!([
        sample_body("create-flat.json"),
        sample_body("array-mixed.json")[0]
    ]);
    let (status, _) = send(&deps, post_json(&array)).await;
    assert_eq!(status, 500);
    let sent = recorder.sent();
    assert_eq!(sent.len(), 1, "the first element's job only");
    let rows = rows(&pg).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, sent[0].1);
    assert!(rows[0].2, "marked published");
}
