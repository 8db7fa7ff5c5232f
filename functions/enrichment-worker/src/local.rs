//! The enrichment worker on one machine: consumes the in-process enrichment
//! queue with the same `process` as the Lambda. A retry re-delivers the
//! message after its backoff; after `ENRICHMENT_MAX_ATTEMPTS` receives, or
//! for a poison message, it is dropped with an error log (the reason is
//! recorded in PostgreSQL). Without provider credentials the local sinks
//! answer (said loudly at start).

use crate::{Deps, Message, Outcome, process};
use crm_platform::local_queue::{self, Consumer, LocalOutcome, Source};

/// Jobs processed at once (the Lambda's maximum concurrency plays this part in AWS).
const CONCURRENCY: usize = 2;

pub fn spawn(queue: impl Into<Source>, deps: Deps) -> tokio::task::JoinHandle<()> {
    // `process` itself gives up on the last receive (ENRICHMENT_MAX_ATTEMPTS).
    let consumer = Consumer {
        queue: "enrichment",
        concurrency: CONCURRENCY,
        max_receives: u32::MAX,
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
                Outcome::Retry { delay, .. } => LocalOutcome::Retry { after: delay },
                Outcome::DeadLetter { reason } => LocalOutcome::DeadLetter { reason },
            }
        }
    })
}
