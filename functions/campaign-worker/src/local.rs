//! The campaign worker on one machine: consumes the in-process campaign
//! queue with the same `process` as the Lambda, each campaign in its own
//! task, with the same time budget (so continuations behave as in AWS). A
//! failed run is received again after a pause, up to `CAMPAIGN_RECEIVE_MAX`
//! receives; a poison message is dropped with its reason recorded.

use crate::{Deps, Message, Outcome, RETRY_AFTER, process};
use crm_platform::queue::LocalMessage;
use std::{sync::Arc, time::Instant};
use tokio::sync::{Semaphore, mpsc};

/// Campaigns run at once.
const CONCURRENCY: usize = 8;

pub fn spawn(
    mut queue: mpsc::UnboundedReceiver<LocalMessage>,
    deps: Deps,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (retry_tx, mut retries) = mpsc::unbounded_channel::<(LocalMessage, u32)>();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            let (msg, receive_count) = tokio::select! {
                Some(msg) = queue.recv() => (msg, 1),
                Some(again) = retries.recv() => again,
                else => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (deps, retry_tx) = (deps.clone(), retry_tx.clone());
            tokio::spawn(async move {
                let id = msg.message_id.to_string();
                let outcome = {
                    let _permit = permit;
                    let m = Message {
                        message_id: &id,
                        body: &msg.body,
                        receive_count,
                    };
                    process(&m, &deps, Instant::now() + deps.config.budget).await
                };
                match outcome {
                    Outcome::Done(_) => {}
                    Outcome::Retry { .. } if receive_count < deps.config.max_attempts => {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry_tx.send((msg, receive_count + 1));
                    }
                    Outcome::Retry { reason } => tracing::error!(
                        message_id = %id,
                        receive_count,
                        reason = %reason,
                        "campaign job still failing after CAMPAIGN_RECEIVE_MAX receives: dropped (SQS would dead-letter it)"
                    ),
                    Outcome::DeadLetter { reason } => tracing::error!(
                        message_id = %id,
                        reason = %reason,
                        "campaign job dead-lettered: dropped locally, reason recorded"
                    ),
                }
            });
        }
    })
}
