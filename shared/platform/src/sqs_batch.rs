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
