//! Lambda SQS batches: every record processed concurrently, the ids of those
//! not done returned as partial batch failures. Shared by the workers.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use std::{collections::HashMap, future::Future};

// One panicking record must fail alone: `run` (and the send worker's own
// JoinSet) turn a task's panic into that record's batch item failure, which
// needs unwinding. Under `panic = "abort"` the whole process dies with the
// batch, and every healthy record in it is received again toward the DLQ.
// Tests always unwind, so this is checked where it matters: every build of
// this crate. `cargo lambda build --release` adds `panic = "abort"` unless
// `[profile.release]` sets `panic` itself (the workspace pins "unwind"); a
// build that gets abort anyway (a profile, RUSTFLAGS, a changed Cargo.toml)
// stops here instead of shipping. See docs/deploy.md.
#[cfg(not(panic = "unwind"))]
compile_error!(
    "crm-platform must be built with panic = \"unwind\": the SQS batch runner turns a \
     panicking record into one batch item failure (set panic = \"unwind\" in [profile.release])"
);

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
    let records = ids.len();
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
    emit_batch_metrics(records, response.batch_item_failures.len());
    response
}

/// `BatchRecords` and `BatchFailures` of one batch as EMF metrics (the
/// stack's failure-rate alarms divide one by the other).
pub fn emit_batch_metrics(records: usize, failures: usize) {
    crate::metrics::emit(&[
        crate::metrics::Metric::count("BatchRecords", records as f64),
        crate::metrics::Metric::count("BatchFailures", failures as f64),
    ]);
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
mod run_tests {
    use super::run;
    use aws_lambda_events::sqs::SqsMessage;

    fn record(id: &str) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.to_string());
        message.body = Some(id.to_string());
        message
    }

    #[tokio::test]
    async fn a_panicking_record_in_a_batch_of_ten_fails_alone() {
        let records: Vec<_> = (0..10).map(|i| record(&format!("m{i}"))).collect();
        let processed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let response = run(records, |r| {
            let processed = processed.clone();
            async move {
                if r.body.as_deref() == Some("m6") {
                    panic!("a bad message");
                }
                processed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                true
            }
        })
        .await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m6"]);
        assert_eq!(processed.load(std::sync::atomic::Ordering::SeqCst), 9);
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
