//! One invocation's run of one campaign: lease, start, then paced batches
//! until the campaign stops, finishes or the time budget ends.

use crate::Deps;
use anyhow::Context;
use crm_domain::{
    campaigns::runner::{self, Acquired, Lease, Started},
    outbox,
};
use serde_json::json;
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};
use uuid::Uuid;

/// The lease taken at first: long enough for a snapshot of a large segment.
const START_LEASE: Duration = Duration::from_secs(300);
/// Added to each batch's pause for the lease renewed every batch.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// How a run ended (the job is acknowledged in every case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Another runner holds a live lease on the campaign: it continues.
    Busy,
    NotFound,
    /// Not `queued`/`sending` when the job arrived (draft, paused, cancelled, finished).
    NotRunnable {
        status: String,
    },
    /// Stopped within a batch: `paused`, `cancelled` (by someone else), or
    /// `module_disabled` (the kill switch; resuming the module re-enqueues).
    Stopped {
        why: String,
    },
    /// Paused by the runner itself (error threshold, channel disabled, rows stuck in flight).
    Paused {
        reason: String,
    },
    /// Every row terminal; counts per status.
    Finished {
        counts: BTreeMap<String, i64>,
    },
    /// The budget ended: the lease was given up and a continuation enqueued.
    Continued,
    /// The lease expired and another runner took over.
    LeaseLost,
}

/// Runs campaign `campaign_id` until `deadline`. An error leaves the rows
/// as they are (every step is one statement or one transaction) and gives
/// the lease up so the retried job can take over at once.
pub async fn run_campaign(
    campaign_id: Uuid,
    deps: &Deps,
    deadline: Instant,
) -> anyhow::Result<RunOutcome> {
    let acquired = {
        let client = deps.pool.get().await.context("database pool")?;
        runner::acquire(&client, campaign_id, START_LEASE).await?
    };
    let mut lease = match acquired {
        Acquired::Leased { lease, .. } => lease,
        Acquired::Busy => {
            tracing::info!("another runner holds the campaign: duplicate job dropped");
            return Ok(RunOutcome::Busy);
        }
        Acquired::NotRunnable { status } => return Ok(RunOutcome::NotRunnable { status }),
        Acquired::NotFound => return Ok(RunOutcome::NotFound),
    };
    let result = drive(&mut lease, deps, deadline).await;
    if result.is_err() {
        let released = async {
            let client = deps.pool.get().await?;
            runner::release_lease(&client, &lease).await
        };
        if let Err(e) = released.await {
            tracing::warn!(error = %crm_domain::db::loggable(&e), "could not give the lease up; it expires");
        }
    }
    result
}

async fn drive(lease: &mut Lease, deps: &Deps, deadline: Instant) -> anyhow::Result<RunOutcome> {
    let config = &deps.config;
    // queued → snapshot → sending, one transaction.
    {
        let mut client = deps.pool.get().await.context("database pool")?;
        let tx = client
            .transaction()
            .await
            .context("starting the snapshot")?;
        match runner::start(&tx, lease).await? {
            Started::Snapshot(summary) => {
                tx.commit().await.context("committing the snapshot")?;
                tracing::info!(
                    inserted = summary.inserted,
                    queued = summary.queued,
                    skipped = ?summary.skipped,
                    "segment snapshot taken"
                );
            }
            Started::AlreadySending => tx.commit().await.context("committing the start")?,
            Started::NotRunnable => {
                // Rolls back; the connection already held gives the lease up.
                drop(tx);
                runner::release_lease(&client, lease).await?;
                return Ok(RunOutcome::NotRunnable {
                    status: "changed before the start".into(),
                });
            }
        }
    }
    loop {
        // The pause is counted from the batch's start: the time the batch
        // itself takes (release, publish) is part of its period, not added to it.
        let batch_started = Instant::now();
        let mut client = deps.pool.get().await.context("database pool")?;
        if batch_started >= deadline {
            return continue_later(&mut client, lease, deps).await;
        }
        let Some(state) = runner::batch_state(&client, lease).await? else {
            return Ok(RunOutcome::LeaseLost);
        };
        if state.status != "sending" || !state.module_enabled {
            // Rows stay as they are (queued rows wait for a resume, or for
            // the module: turning it on re-enqueues the campaign).
            match runner::stop(&client, lease).await? {
                Some(status) if status != "sending" => {
                    return Ok(RunOutcome::Stopped { why: status });
                }
                Some(_) => {
                    return Ok(RunOutcome::Stopped {
                        why: "module_disabled".into(),
                    });
                }
                // Resumed (or switched back on) meanwhile: carry on.
                None => continue,
            }
        }
        if !state.channel_enabled {
            let reason = format!("channel {} is disabled", state.channel);
            return pause(&mut client, lease, reason, json!({})).await;
        }
        if let Some(reason) = runner::threshold_exceeded(
            &client,
            lease.campaign_id,
            config.error_threshold_pct,
            config.error_window,
        )
        .await?
        {
            let details = json!({
                "threshold_pct": config.error_threshold_pct,
                "window": config.error_window,
                "counts": runner::counts(&client, lease.campaign_id).await?,
            });
            return pause(&mut client, lease, reason, details).await;
        }
        let (rows, wait) = runner::pace(state.rate_per_second, config.batch_interval);
        if !runner::renew(
            &client,
            lease,
            wait.max(config.batch_interval) + LEASE_MARGIN,
        )
        .await?
        {
            return Ok(RunOutcome::LeaseLost);
        }
        let pause_for = if state.queued > 0 {
            // The channel's budget is shared by every runner on it: its row
            // stays locked from the refill to the commit of the release.
            let tx = client.transaction().await.context("starting the release")?;
            let ids = runner::release_batch(&tx, lease, rows, None).await?;
            tx.commit().await.context("committing the release")?;
            tracing::debug!(
                released = ids.len(),
                rate = state.rate_per_second,
                "batch released"
            );
            publish(&mut client, deps, &ids).await;
            wait
        } else if state.sending == 0 {
            let tx = client.transaction().await.context("starting the finish")?;
            if let Some(counts) = runner::try_finish(&tx, lease).await? {
                tx.commit().await.context("committing the finish")?;
                tracing::info!(counts = ?counts, "campaign finished");
                return Ok(RunOutcome::Finished { counts });
            }
            // A row went back to queued meanwhile (or the campaign changed): look again.
            continue;
        } else {
            // Waiting for the send worker to finish the rows in flight. Rows
            // stuck past the in-flight timeout (their job dead-lettered, say)
            // are reconciled: never attempted → queued again, attempted →
            // failed `uncertain`; the next batch releases or finishes.
            let reconciled =
                runner::reconcile_stuck(&client, lease, config.inflight_timeout).await?;
            if reconciled != runner::Reconciled::default() {
                tracing::warn!(
                    requeued = reconciled.requeued,
                    failed_uncertain = reconciled.failed,
                    "deliveries stuck in sending reconciled"
                );
                continue;
            }
            config.batch_interval
        };
        drop(client);
        let left = deadline.saturating_duration_since(Instant::now());
        let rest = pause_for.saturating_sub(batch_started.elapsed());
        tokio::time::sleep(rest.min(left)).await;
    }
}

async fn pause(
    client: &mut deadpool_postgres::Client,
    lease: &Lease,
    reason: String,
    details: serde_json::Value,
) -> anyhow::Result<RunOutcome> {
    let tx = client.transaction().await.context("starting the pause")?;
    let paused = runner::pause(&tx, lease, &reason, details).await?;
    tx.commit().await.context("committing the pause")?;
    if paused {
        tracing::warn!(reason = %reason, "campaign paused by the runner");
        Ok(RunOutcome::Paused { reason })
    } else {
        Ok(RunOutcome::LeaseLost)
    }
}

/// Gives the lease up and enqueues the next run in one transaction, then
/// publishes it (the relay does if this fails).
async fn continue_later(
    client: &mut deadpool_postgres::Client,
    lease: &Lease,
    deps: &Deps,
) -> anyhow::Result<RunOutcome> {
    let tx = client
        .transaction()
        .await
        .context("starting the continuation")?;
    let Some(id) = runner::continue_later(&tx, lease).await? else {
        return Ok(RunOutcome::LeaseLost);
    };
    tx.commit().await.context("committing the continuation")?;
    publish(client, deps, &[id]).await;
    tracing::info!("time budget spent: continuation enqueued");
    Ok(RunOutcome::Continued)
}

/// Publishes exactly these outbox rows after commit; a failure leaves them
/// to the scheduled relay.
async fn publish(client: &mut deadpool_postgres::Client, deps: &Deps, ids: &[Uuid]) {
    let Some(publisher) = deps.publisher.as_deref() else {
        return;
    };
    match outbox::relay_ids(client, publisher, ids).await {
        Ok(r) if r.failed > 0 => {
            tracing::warn!(
                published = r.published,
                failed = r.failed,
                "some jobs left to the relay"
            )
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %crm_domain::db::loggable(&e), "publishing after commit failed; the relay publishes")
        }
    }
}
