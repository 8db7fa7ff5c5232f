//! The media worker on one machine: consumes the in-process media queue with
//! the same `process` as the Lambda. A retry re-delivers the message after a
//! pause; after `MEDIA_MAX_ATTEMPTS` receives, or for a poison message, it is
//! dropped with an error log (the reason is recorded in PostgreSQL).

use crate::{Deps, MediaConfig, Message, Outcome, process};
use crm_platform::{
    blob::LocalFolderBlob,
    config::{CommonConfig, ConfigError, Env},
    db::build_pool,
    queue::LocalMessage,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::{Semaphore, mpsc};

/// Files downloaded at once.
const CONCURRENCY: usize = 4;
/// Pause before a retry (SQS's visibility timeout plays this part in AWS).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The worker's dependencies on one machine: media in `MEDIA_DIR` (default
/// `.local/media`). Fails when the Twilio credentials are not configured.
pub fn deps(common: &CommonConfig, env: &Env) -> Result<Deps, ConfigError> {
    let config = MediaConfig::from_env(env, common.app_env)?;
    let dir = env.optional("MEDIA_DIR").unwrap_or(".local/media");
    tracing::info!(media_dir = dir, "media worker stores into a local folder");
    Deps::with(
        build_pool(&common.database)?,
        Arc::new(LocalFolderBlob::new(dir)),
        config,
    )
}

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
                    process(&m, &deps).await
                };
                match outcome {
                    Outcome::Done => {}
                    Outcome::Retry { .. } if receive_count < deps.config.max_attempts => {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry_tx.send((msg, receive_count + 1));
                    }
                    Outcome::Retry { .. } => tracing::error!(
                        message_id = %id,
                        receive_count,
                        "media message still failing after MEDIA_MAX_ATTEMPTS receives: dropped (SQS would dead-letter it)"
                    ),
                    Outcome::DeadLetter { reason } => tracing::error!(
                        message_id = %id,
                        reason = %reason,
                        "media message dead-lettered: dropped locally, reason recorded"
                    ),
                }
            });
        }
    })
}
