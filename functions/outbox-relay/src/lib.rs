//! Scheduled relay: re-drives the jobs of stale states (work claimed or
//! waiting whose job never came back, `crm_domain::outbox::stale`), then
//! publishes outbox rows left unpublished (a crash between commit and
//! publish, or a failed publish) to their queues; then, as housekeeping on
//! the same schedule, deletes expired CRM API idempotency keys in a bounded
//! batch.

use crm_domain::{
    crm::idempotency,
    outbox::{self, Publisher, RelayReport, stale},
};
use crm_platform::db::PgPool;
use std::time::{Duration, Instant};

/// Rows per transaction; a batch holds its rows locked while it publishes them.
pub const BATCH: i64 = 100;

/// Expired `api_idempotency_keys` deleted per run at most: one short
/// statement a minute keeps up with far more keys than the API writes, and
/// a backlog drains over a few runs instead of in one long delete.
pub const PURGE_BATCH: i64 = 1_000;

/// What one scheduled run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Jobs of stale states re-driven before relaying.
    pub stale: stale::SweepReport,
    pub relay: RelayReport,
    /// Expired idempotency keys deleted.
    pub idempotency_keys_purged: u64,
}

/// One scheduled run: [`sweep`], [`relay`], then [`purge`]. A sweep or a
/// purge that fails is logged and reported as 0: publishing is the run's
/// job, and the next run does what this one left.
pub async fn run(
    pool: &PgPool,
    publisher: &dyn Publisher,
    budget: Duration,
) -> anyhow::Result<RunReport> {
    let stale = match sweep(pool, stale::STALE_AFTER).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %crm_domain::db::loggable(&e), "sweeping stale states failed");
            stale::SweepReport::default()
        }
    };
    let relay = relay(pool, publisher, budget).await?;
    let idempotency_keys_purged = match purge(pool, PURGE_BATCH).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %crm_domain::db::loggable(&e), "purging expired idempotency keys failed");
            0
        }
    };
    Ok(RunReport {
        stale,
        relay,
        idempotency_keys_purged,
    })
}

/// Re-drives the jobs of states open for longer than `stale_after`.
pub async fn sweep(pool: &PgPool, stale_after: Duration) -> anyhow::Result<stale::SweepReport> {
    use anyhow::Context;
    let client = pool
        .get()
        .await
        .context("getting a connection for the stale sweep")?;
    stale::sweep(&client, stale_after).await
}

/// Deletes up to `limit` idempotency keys past their 24 hours.
pub async fn purge(pool: &PgPool, limit: i64) -> anyhow::Result<u64> {
    use anyhow::Context;
    let client = pool
        .get()
        .await
        .context("getting a connection for the purge")?;
    idempotency::purge_expired(&client, limit).await
}

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

/// The backlog left after a run, published as EMF metrics
/// (`OutboxBacklog`, `OutboxOldestAgeSeconds`) with the run's counts; the
/// stack alarms on the backlog. A failed count is logged, never raised.
pub async fn report_backlog(pool: &PgPool, report: &RunReport) -> Option<outbox::Backlog> {
    use crm_platform::metrics::{Metric, emit};
    let backlog = async {
        let client = pool.get().await?;
        outbox::backlog(&client).await
    }
    .await;
    let backlog = match backlog {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %crm_domain::db::loggable(&e), "counting the outbox backlog failed");
            None
        }
    };
    let mut metrics = vec![
        Metric::count("OutboxPublished", report.relay.published as f64),
        Metric::count("OutboxFailed", report.relay.failed as f64),
    ];
    if let Some(b) = backlog {
        metrics.push(Metric::count("OutboxBacklog", b.pending as f64));
        metrics.push(Metric::seconds("OutboxOldestAgeSeconds", b.oldest_age_secs));
    }
    emit(&metrics);
    backlog
}
