//! Lambda SQS batches: every record processed concurrently, the ids of those
//! not done returned as partial batch failures. Shared by the workers.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use std::{collections::HashMap, future::Future};

/// SQS's `ApproximateReceiveCount`: 1 on the first receive.
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Runs `process` on every record concurrently; it answers whether the
/// record is done. A panic counts as not done.
pub async fn run<F, Fut>(records: Vec<SqsMessage>, process: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = HashMap::new();
    for record in records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let task = tasks.spawn(process(record));
        ids.insert(task.id(), message_id);
    }
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (task, done) = match joined {
            Ok((task, done)) => (task, done),
            Err(e) => {
                tracing::error!(error = %e, "processing a message panicked");
                (e.id(), false)
            }
        };
        if !done {
            // An empty id (a record without one) makes Lambda retry the whole
            // batch, which is the safe answer when we cannot name the message.
            response.add_failure(ids.remove(&task).unwrap_or_default());
        }
    }
    response
}

/// Why a queue body is not a job, in words that quote nothing of the body
/// (only the position of the problem).
pub fn unreadable(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => {
            format!("not JSON (line {}, column {})", e.line(), e.column())
        }
        Category::Data => format!("not a known job (line {}, column {})", e.line(), e.column()),
        Category::Io => "unreadable".to_string(),
    }
}

/// Records a message that is not a job in `poison_messages` (counting its
/// receives), so its dead-letter copy has a reason in PostgreSQL; a failure
/// to record is logged, never raised (the message goes to the DLQ anyway).
pub async fn record_poison(
    pool: &crate::db::PgPool,
    queue: crm_domain::outbox::QueueName,
    message_id: &str,
    reason: &str,
    receive_count: u32,
) {
    let count = i32::try_from(receive_count).unwrap_or(i32::MAX);
    let recorded = async {
        let client = pool.get().await?;
        crm_domain::webhooks_out::store::record_poison(&client, queue, message_id, reason, count)
            .await
    };
    if let Err(e) = recorded.await {
        tracing::error!(error = %crm_domain::db::loggable(&e), "could not record the poison message");
    }
}

#[cfg(test)]
mod unreadable_tests {
    use super::unreadable;

    #[test]
    fn describes_the_problem_without_quoting_the_body() {
        let secret = "+5511987654321";
        let e = serde_json::from_str::<serde_json::Value>(&format!("{{\"phone\": {secret}"))
            .unwrap_err();
        let why = unreadable(&e);
        assert!(why.starts_with("not JSON (line 1"), "{why}");
        assert!(!why.contains(secret));
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Job {
            id: u32,
        }
        let e = serde_json::from_str::<Job>(&format!("{{\"id\": \"{secret}\"}}")).unwrap_err();
        let why = unreadable(&e);
        assert!(why.starts_with("not a known job"), "{why}");
        assert!(!why.contains(secret));
    }
}
