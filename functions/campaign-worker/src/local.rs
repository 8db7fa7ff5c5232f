//! The campaign worker on one machine: consumes the in-process campaign
//! queue with the same `process` as the Lambda, each campaign in its own
//! task, with the same time budget (so continuations behave as in AWS). A
//! failed run is received again after a pause, up to `CAMPAIGN_RECEIVE_MAX`
//! receives; a poison message is dropped with its reason recorded.

use crate::{Deps, Message, Outcome, RETRY_AFTER, process};
use crm_platform::local_queue::{self, Consumer, LocalOutcome, Source};
use std::time::Instant;

/// Campaigns run at once.
const CONCURRENCY: usize = 8;

pub fn spawn(queue: impl Into<Source>, deps: Deps) -> tokio::task::JoinHandle<()> {
    let consumer = Consumer {
        queue: "campaign",
        concurrency: CONCURRENCY,
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
            match process(&m, &deps, Instant::now() + deps.config.budget).await {
                Outcome::Done(_) => LocalOutcome::Done,
                Outcome::Retry { .. } => LocalOutcome::Retry { after: RETRY_AFTER },
                Outcome::DeadLetter { reason } => LocalOutcome::DeadLetter { reason },
            }
        }
    })
}
