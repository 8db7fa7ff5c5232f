//! Scheduled relay: publishes outbox rows left unpublished (a crash between
//! commit and publish, or a failed publish) to their queues.

use crm_domain::outbox::{self, Publisher, RelayReport};
use crm_platform::db::PgPool;
use std::time::{Duration, Instant};

/// Rows per transaction; a batch holds its rows locked while it publishes them.
pub const BATCH: i64 = 100;

/// Drains the outbox in batches until it is empty, a batch makes no
/// progress, or `budget` is spent (a Lambda invocation has a deadline).
pub async fn relay(
    pool: &PgPool,
    publisher: &dyn Publisher,
    budget: Duration,
) -> anyhow::Result<RelayReport> {
    use anyhow::Context;
    let started = Instant::now();
    let mut total = RelayReport::default();
    let mut client = pool
        .get()
        .await
        .context("getting a connection for the relay")?;
    loop {
        let batch = outbox::relay_batch(&mut client, publisher, BATCH).await?;
        total.published += batch.published;
        total.failed += batch.failed;
        let drained = batch.published + batch.failed < BATCH as usize;
        if drained || batch.published == 0 || started.elapsed() >= budget {
            break;
        }
    }
    Ok(total)
}
