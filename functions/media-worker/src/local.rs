//! The media worker on one machine: consumes the in-process media queue with
//! the same `process` as the Lambda. A retry re-delivers the message after a
//! pause; after `MEDIA_MAX_ATTEMPTS` receives, or for a poison message, it is
//! dropped with an error log (the reason is recorded in PostgreSQL).

use crate::{Deps, MediaConfig, Message, Outcome, process};
use crm_platform::{
    blob::LocalFolderBlob,
    config::{CommonConfig, ConfigError, Env},
    db::build_pool,
    local_queue::{self, Consumer, LocalOutcome, Source},
};
use std::{sync::Arc, time::Duration};

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

pub fn spawn(queue: impl Into<Source>, deps: Deps) -> tokio::task::JoinHandle<()> {
    let consumer = Consumer {
        queue: "media",
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
            match process(&m, &deps).await {
                Outcome::Done => LocalOutcome::Done,
                Outcome::Retry { .. } => LocalOutcome::Retry { after: RETRY_AFTER },
                Outcome::DeadLetter { reason } => LocalOutcome::DeadLetter { reason },
            }
        }
    })
}
