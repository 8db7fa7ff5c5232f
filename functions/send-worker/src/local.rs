//! The send worker on one machine: consumes the in-process send queue with
//! the same `process` as the Lambda. A retry re-delivers the message after
//! the backoff delay; after `SEND_MAX_ATTEMPTS` receives, or when a message
//! belongs in the dead-letter queue, it is dropped with an error log (the
//! reason is already recorded in PostgreSQL; there is no local DLQ).

use crate::{Deps, Message, Outcome, process};
use crm_platform::local_queue::{self, Consumer, LocalOutcome, Source};

/// Messages processed at once by default (each holds a pool connection only briefly).
pub const CONCURRENCY: usize = 8;

pub fn spawn(queue: impl Into<Source>, deps: Deps) -> tokio::task::JoinHandle<()> {
    spawn_with(queue, deps, CONCURRENCY)
}

/// [`spawn`] with `concurrency` messages processed at once (the benchmark's knob).
pub fn spawn_with(
    queue: impl Into<Source>,
    deps: Deps,
    concurrency: usize,
) -> tokio::task::JoinHandle<()> {
    let consumer = Consumer {
        queue: "send",
        concurrency,
        max_receives: deps.config.max_attempts,
    };
    local_queue::spawn(queue, consumer, move |msg, receive_count| {
        let deps = deps.clone();
        async move {
            let id = msg.message_id.to_string();
            let m = Message {
                message_id: &id,
                body: &msg.body,
                receive_count,
            };
            match process(&m, &deps).await {
                Outcome::Done => LocalOutcome::Done,
                Outcome::Retry { delay } => LocalOutcome::Retry { after: delay },
                Outcome::DeadLetter { reason } => LocalOutcome::DeadLetter { reason },
            }
        }
    })
}
