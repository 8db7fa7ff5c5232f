//! The campaign runner's SQL: the steps the campaign worker takes between
//! its paced sleeps. The ledger (`campaign_deliveries`) is the engine; these
//! functions only move rows forward and never decide twice.
//!
//! - **Lease.** One runner per campaign: `campaigns.runner_lease_until` is
//!   taken only when empty or expired, and its value is the holder's fencing
//!   token (every later step names it, so a runner whose lease was taken over
//!   changes nothing). A runner that dies leaves the lease to expire.
//! - **Start.** `queued` → snapshot of the segment → `sending`, one transaction.
//! - **Budget.** One token bucket per channel (`channels.tokens`,
//!   `refilled_at`), locked by each release until its commit, so every
//!   runner on a channel together stays within its rate ([`take_budget`]).
//! - **Release.** ONE statement moves the next `queued` rows to `sending` and
//!   writes one `send_campaign_message` outbox row per row it moved, guarded by
//!   the campaign still `sending` under this lease and the module on. A row is
//!   released once: only `queued` rows are taken, and its job is committed
//!   with it (the outbox relay publishes it if the runner dies before it does).
//! - **Threshold, finish, continuation**: see each function.

use crate::{
    campaigns::{
        audience,
        audit::{self, AuditEntry},
    },
    db::GenericClient,
    jobs::{self, CampaignJob, RunCampaign},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::{collections::BTreeMap, time::Duration};
use uuid::Uuid;

/// The audit actor of the runner's own decisions.
pub const ACTOR: &str = "system";

/// A held lease; `until` is the fencing token every step checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub campaign_id: Uuid,
    pub until: DateTime<Utc>,
}

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// This runner holds the campaign; `status` is `queued` or `sending`.
    Leased {
        lease: Lease,
        status: String,
    },
    /// Another runner holds a live lease: it continues, this one stops.
    Busy,
    /// Nothing to run (`draft`, `paused`, `cancelled`, `finished`).
    NotRunnable {
        status: String,
    },
    NotFound,
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Takes the campaign's lease for `lease_for` when it is `queued` or
/// `sending` and no live lease exists. Atomic: of two concurrent callers one
/// gets the lease, the other `Busy`.
pub async fn acquire(
    db: &impl GenericClient,
    campaign_id: Uuid,
    lease_for: Duration,
) -> anyhow::Result<Acquired> {
    let stmt = db
        .prepare_cached(
            "update campaigns set runner_lease_until = clock_timestamp() + make_interval(secs => $2) \
             where id = $1 and status in ('queued', 'sending') \
               and (runner_lease_until is null or runner_lease_until < clock_timestamp()) \
             returning runner_lease_until, status",
        )
        .await
        .context("preparing the lease")?;
    if let Some(row) = db
        .query_opt(&stmt, &[&campaign_id, &interval(lease_for)])
        .await
        .context("taking the campaign lease")?
    {
        return Ok(Acquired::Leased {
            lease: Lease {
                campaign_id,
                until: row.get(0),
            },
            status: row.get(1),
        });
    }
    let row = db
        .query_opt(
            "select status, runner_lease_until > clock_timestamp() from campaigns where id = $1",
            &[&campaign_id],
        )
        .await
        .context("reading the campaign status")?;
    Ok(match row {
        None => Acquired::NotFound,
        Some(row) => {
            let status: String = row.get(0);
            let live: Option<bool> = row.get(1);
            if matches!(status.as_str(), "queued" | "sending") && live == Some(true) {
                Acquired::Busy
            } else {
                Acquired::NotRunnable { status }
            }
        }
    })
}

/// Extends a held lease by `lease_for` from now. `false`: it is no longer
/// ours (expired and taken over), and the caller must stop.
pub async fn renew(
    db: &impl GenericClient,
    lease: &mut Lease,
    lease_for: Duration,
) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached(
            "update campaigns set runner_lease_until = clock_timestamp() + make_interval(secs => $3) \
             where id = $1 and runner_lease_until = $2 returning runner_lease_until",
        )
        .await
        .context("preparing the lease renewal")?;
    let row = db
        .query_opt(
            &stmt,
            &[&lease.campaign_id, &lease.until, &interval(lease_for)],
        )
        .await
        .context("renewing the campaign lease")?;
    Ok(match row {
        Some(row) => {
            lease.until = row.get(0);
            true
        }
        None => false,
    })
}

/// Gives the lease up (the campaign stopped, or the runner is leaving).
pub async fn release_lease(db: &impl GenericClient, lease: &Lease) -> anyhow::Result<()> {
    db.execute(
        "update campaigns set runner_lease_until = null where id = $1 and runner_lease_until = $2",
        &[&lease.campaign_id, &lease.until],
    )
    .await
    .context("releasing the campaign lease")?;
    Ok(())
}

/// Gives the lease up because the campaign stopped: it is no longer
/// `sending`, or the `crm` module is off. Checked in the same statement, so
/// a resume (or the module turned back on) that lands between the runner's
/// read and this call keeps the lease with this runner — whose next batch
/// sees `sending` and goes on — instead of leaving the campaign with no
/// runner (the resume's job was dropped while the lease was held).
/// `Some(status)`: stopped; `None`: running again (or the lease is gone).
pub async fn stop(db: &impl GenericClient, lease: &Lease) -> anyhow::Result<Option<String>> {
    let row = db
        .query_opt(
            "update campaigns c set runner_lease_until = null \
             where c.id = $1 and c.runner_lease_until = $2 \
               and (c.status <> 'sending' \
                    or not exists (select 1 from module_switches m where m.module = 'crm' and m.enabled)) \
             returning c.status",
            &[&lease.campaign_id, &lease.until],
        )
        .await
        .context("stopping the campaign run")?;
    Ok(row.map(|r| r.get(0)))
}

/// What [`start`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// `queued` → snapshot taken → `sending`.
    Snapshot(audience::SnapshotSummary),
    /// Already `sending` (a continuation or a resume): the ledger is there.
    AlreadySending,
    /// The campaign left `queued`/`sending` (paused, cancelled) or the lease is gone.
    NotRunnable,
}

/// `queued` → snapshot → `sending`, in the caller's transaction (run it in
/// one: the snapshot and the status move commit together). The campaign row
/// is locked first, so a pause or cancel waits for it or wins before it.
pub async fn start(db: &impl GenericClient, lease: &Lease) -> anyhow::Result<Started> {
    let row = db
        .query_opt(
            "select status from campaigns where id = $1 and runner_lease_until = $2 for update",
            &[&lease.campaign_id, &lease.until],
        )
        .await
        .context("locking the campaign")?;
    let Some(row) = row else {
        return Ok(Started::NotRunnable);
    };
    let status: String = row.get(0);
    match status.as_str() {
        "sending" => Ok(Started::AlreadySending),
        "queued" => {
            let summary = audience::snapshot(db, lease.campaign_id)
                .await
                .context("snapshotting the segment")?;
            db.execute(
                "update campaigns set status = 'sending', updated_at = now() where id = $1 and status = 'queued'",
                &[&lease.campaign_id],
            )
            .await
            .context("moving the campaign to sending")?;
            Ok(Started::Snapshot(summary))
        }
        _ => Ok(Started::NotRunnable),
    }
}

/// The campaign as one batch sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchState {
    pub status: String,
    /// The `crm` kill switch (a missing row counts as off, as in `switch::crm_enabled`).
    pub module_enabled: bool,
    pub channel: String,
    pub channel_enabled: bool,
    /// `channels.rate_per_second`, read every batch.
    pub rate_per_second: f64,
    /// Rows still `queued` / `sending`.
    pub queued: i64,
    pub sending: i64,
    /// The newest `released_at` among `sending` rows.
    pub newest_sending_released_at: Option<DateTime<Utc>>,
}

/// Reads what decides the next batch; `None` when the lease is no longer ours.
pub async fn batch_state(
    db: &impl GenericClient,
    lease: &Lease,
) -> anyhow::Result<Option<BatchState>> {
    let stmt = db
        .prepare_cached(
            "select c.status, \
                    coalesce((select enabled from module_switches where module = 'crm'), false), \
                    ch.name, ch.enabled, ch.rate_per_second::float8, \
                    (select count(*) from campaign_deliveries d where d.campaign_id = c.id and d.status = 'queued'), \
                    (select count(*) from campaign_deliveries d where d.campaign_id = c.id and d.status = 'sending'), \
                    (select max(released_at) from campaign_deliveries d where d.campaign_id = c.id and d.status = 'sending') \
             from campaigns c join channels ch on ch.name = c.channel \
             where c.id = $1 and c.runner_lease_until = $2",
        )
        .await
        .context("preparing the batch state")?;
    let row = db
        .query_opt(&stmt, &[&lease.campaign_id, &lease.until])
        .await
        .context("reading the batch state")?;
    Ok(row.map(|row| BatchState {
        status: row.get(0),
        module_enabled: row.get(1),
        channel: row.get(2),
        channel_enabled: row.get(3),
        rate_per_second: row.get(4),
        queued: row.get(5),
        sending: row.get(6),
        newest_sending_released_at: row.get(7),
    }))
}

/// Releases up to `limit` `queued` rows, as many as the channel's shared
/// budget allows, in the caller's transaction (run it in one: the channel
/// row stays locked until commit, so concurrent runners on one channel take
/// turns). Each released row becomes `sending` (`released_at` = the
/// statement's time, the same for the whole batch) and gets one
/// `send_campaign_message` outbox row. Nothing is released (and no budget
/// taken) unless the campaign is `sending` under this lease and the `crm`
/// module is on. `at` is the bucket's clock (`None`: the database's
/// `clock_timestamp()`; tests pass explicit times). Returns the outbox
/// `message_id`s to publish after commit.
pub async fn release_batch(
    db: &impl GenericClient,
    lease: &Lease,
    limit: i64,
    at: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<Uuid>> {
    let budget = take_budget(db, lease.campaign_id, limit, at).await?;
    if budget == 0 {
        return Ok(Vec::new());
    }
    let stmt = db
        .prepare_cached(
            "with allowed as ( \
                 select c.id from campaigns c \
                 where c.id = $1 and c.status = 'sending' and c.runner_lease_until = $2 \
                   and exists (select 1 from module_switches m where m.module = 'crm' and m.enabled) \
             ), next as ( \
                 select d.id from campaign_deliveries d \
                 where d.campaign_id = (select id from allowed) and d.status = 'queued' \
                 order by d.id limit $3 for update skip locked \
             ), released as ( \
                 update campaign_deliveries d \
                 set status = 'sending', released_at = now(), updated_at = now() \
                 from next where d.id = next.id and d.status = 'queued' \
                 returning d.id \
             ) \
             insert into outbox (queue, body) \
             select 'send', jsonb_build_object('kind', 'send_campaign_message', 'v', 1, 'delivery_id', released.id) \
             from released \
             returning message_id",
        )
        .await
        .context("preparing the release")?;
    let rows = db
        .query(&stmt, &[&lease.campaign_id, &lease.until, &budget])
        .await
        .context("releasing a batch of deliveries")?;
    let released = rows.len() as i64;
    if released > 0 {
        db.execute(
            "update channels set tokens = tokens - $2::float8::numeric \
             where name = (select channel from campaigns where id = $1)",
            &[&lease.campaign_id, &(released as f64)],
        )
        .await
        .context("spending the channel budget")?;
    }
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The channel's token bucket: locks the campaign's `channels` row (until
/// the caller's commit), refills it by `rate × (at − refilled_at)` capped at
/// `cap` (one batch: `rate × interval`, at least 1), and answers how many
/// rows may go now: `min(cap, tokens rounded)`. Rounding lets a runner
/// whose timer fired a few milliseconds early take its batch; the fraction
/// it borrows (at most half a message) is repaid from the next refill, so
/// over any period the channel's runners together release at most
/// `cap + rate × period` rows. A bucket never used (`refilled_at` null)
/// starts full. The tokens spent are subtracted by [`release_batch`].
pub async fn take_budget(
    db: &impl GenericClient,
    campaign_id: Uuid,
    cap: i64,
    at: Option<DateTime<Utc>>,
) -> anyhow::Result<i64> {
    let stmt = db
        .prepare_cached(
            "update channels ch set \
                 tokens = case when ch.refilled_at is null then $2::float8::numeric \
                          else least($2::float8::numeric, ch.tokens + ch.rate_per_second * \
                               greatest(0, extract(epoch from (coalesce($3, clock_timestamp()) - ch.refilled_at)))) end, \
                 refilled_at = greatest(ch.refilled_at, coalesce($3, clock_timestamp())) \
             where ch.name = (select channel from campaigns where id = $1) \
             returning least($2::float8, floor(ch.tokens::float8 + 0.5))::int8",
        )
        .await
        .context("preparing the channel budget")?;
    let cap = cap.max(1);
    let row = db
        .query_opt(&stmt, &[&campaign_id, &(cap as f64), &at])
        .await
        .context("refilling the channel budget")?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0)))
}

/// Failures among the last `window` rows that came back from the provider
/// path (`sent`, `delivered`, `failed`) since the campaign was last sent or
/// resumed (`campaigns.resumed_at`), newest first: `(failed, counted)`. The
/// failures that paused a campaign do not count again after its resume.
pub async fn recent_outcomes(
    db: &impl GenericClient,
    campaign_id: Uuid,
    window: i64,
) -> anyhow::Result<(i64, i64)> {
    let stmt = db
        .prepare_cached(
            "select count(*) filter (where status = 'failed'), count(*) from ( \
                 select status from campaign_deliveries \
                 where campaign_id = $1 and status in ('sent', 'delivered', 'failed') \
                   and coalesce(failed_at, sent_at) > coalesce( \
                       (select resumed_at from campaigns where id = $1), '-infinity'::timestamptz) \
                 order by coalesce(failed_at, sent_at) desc nulls last limit $2 \
             ) w",
        )
        .await
        .context("preparing the error window")?;
    let row = db
        .query_one(&stmt, &[&campaign_id, &window])
        .await
        .context("reading the error window")?;
    Ok((row.get(0), row.get(1)))
}

/// The error threshold: more than `pct` % failed among the last `window`
/// finished rows, once at least `window` rows have finished. Returns the
/// pause reason when it trips.
pub async fn threshold_exceeded(
    db: &impl GenericClient,
    campaign_id: Uuid,
    pct: u32,
    window: i64,
) -> anyhow::Result<Option<String>> {
    let (failed, counted) = recent_outcomes(db, campaign_id, window).await?;
    if counted < window || counted == 0 {
        return Ok(None);
    }
    // failed / counted > pct / 100, in integers.
    if failed * 100 > i64::from(pct) * counted {
        return Ok(Some(format!(
            "error threshold: {failed} of the last {counted} deliveries failed (more than {pct}%)"
        )));
    }
    Ok(None)
}

/// What [`reconcile_stuck`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Never attempted (no `attempted_at`, no linked message): back to `queued`.
    pub requeued: u64,
    /// Attempted with no recorded result: `failed` / `uncertain`, never resent.
    pub failed: u64,
}

/// Rows `sending` for longer than `timeout` since their release (their job
/// dead-lettered, say). A row the send worker never claimed for the
/// provider (`attempted_at` and `message_id` null) goes back to `queued`,
/// `released_at` null, and is released again (the send worker's claim on
/// the row keeps that to one message: an old job finds the row `queued` or
/// already handled). A row that was attempted (or has an outbound message)
/// may have reached the provider: it becomes `failed` with `error_code`
/// `uncertain` and is never resent. Guarded by this lease; one statement.
pub async fn reconcile_stuck(
    db: &impl GenericClient,
    lease: &Lease,
    timeout: Duration,
) -> anyhow::Result<Reconciled> {
    let stmt = db
        .prepare_cached(
            "with stuck as ( \
                 select d.id, (d.attempted_at is null and d.message_id is null) as fresh \
                 from campaign_deliveries d join campaigns c on c.id = d.campaign_id \
                 where c.id = $1 and c.runner_lease_until = $2 and d.status = 'sending' \
                   and d.released_at < clock_timestamp() - make_interval(secs => $3) \
                 for update of d skip locked \
             ), moved as ( \
                 update campaign_deliveries d set \
                     status = case when s.fresh then 'queued' else 'failed' end, \
                     released_at = case when s.fresh then null else d.released_at end, \
                     failed_at = case when s.fresh then null else now() end, \
                     error_code = case when s.fresh then d.error_code else 'uncertain' end, \
                     error = case when s.fresh then d.error \
                             else 'still sending after the in-flight timeout: outcome unknown, not resent' end, \
                     updated_at = now() \
                 from stuck s where d.id = s.id and d.status = 'sending' \
                 returning s.fresh \
             ) \
             select count(*) filter (where fresh), count(*) filter (where not fresh) from moved",
        )
        .await
        .context("preparing the stuck deliveries reconciliation")?;
    let row = db
        .query_one(
            &stmt,
            &[&lease.campaign_id, &lease.until, &timeout.as_secs_f64()],
        )
        .await
        .context("reconciling deliveries stuck in sending")?;
    Ok(Reconciled {
        requeued: row.get::<_, i64>(0) as u64,
        failed: row.get::<_, i64>(1) as u64,
    })
}

/// Per-status row counts of the campaign's ledger.
pub async fn counts(
    db: &impl GenericClient,
    campaign_id: Uuid,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows = db
        .query(
            "select status, count(*) from campaign_deliveries where campaign_id = $1 group by status",
            &[&campaign_id],
        )
        .await
        .context("counting the ledger")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `sending` → `paused` with `reason`, the lease given up, audited
/// `crm.campaign.paused` by `system`. Run it in one transaction. `false`:
/// the campaign was no longer `sending` under this lease (nothing written).
pub async fn pause(
    db: &impl GenericClient,
    lease: &Lease,
    reason: &str,
    details: serde_json::Value,
) -> anyhow::Result<bool> {
    let n = db
        .execute(
            "update campaigns set status = 'paused', pause_reason = left($3, 500), runner_lease_until = null, updated_at = now() \
             where id = $1 and runner_lease_until = $2 and status = 'sending'",
            &[&lease.campaign_id, &lease.until, &reason],
        )
        .await
        .context("pausing the campaign")?;
    if n == 0 {
        return Ok(false);
    }
    let mut details = details;
    if let Some(map) = details.as_object_mut() {
        map.insert("reason".into(), json!(reason));
    }
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.paused",
            actor: ACTOR,
            target_type: "campaign",
            target_id: Some(lease.campaign_id.to_string()),
            details,
        },
    )
    .await
    .context("auditing the pause")?;
    Ok(true)
}

/// `sending` → `finished` when no row is `queued` or `sending` (checked in
/// the same statement), the lease given up, audited `crm.campaign.finished`
/// with the per-status counts. Run it in one transaction. `None`: rows are
/// still open (or the campaign left `sending`).
pub async fn try_finish(
    db: &impl GenericClient,
    lease: &Lease,
) -> anyhow::Result<Option<BTreeMap<String, i64>>> {
    let n = db
        .execute(
            "update campaigns c set status = 'finished', finished_at = now(), runner_lease_until = null, updated_at = now() \
             where c.id = $1 and c.runner_lease_until = $2 and c.status = 'sending' \
               and not exists (select 1 from campaign_deliveries d \
                               where d.campaign_id = c.id and d.status in ('queued', 'sending'))",
            &[&lease.campaign_id, &lease.until],
        )
        .await
        .context("finishing the campaign")?;
    if n == 0 {
        return Ok(None);
    }
    let counts = counts(db, lease.campaign_id).await?;
    let total: i64 = counts.values().sum();
    audit::record(
        db,
        &AuditEntry {
            action: "crm.campaign.finished",
            actor: ACTOR,
            target_type: "campaign",
            target_id: Some(lease.campaign_id.to_string()),
            details: json!({ "counts": counts, "recipients": total }),
        },
    )
    .await
    .context("auditing the finish")?;
    Ok(Some(counts))
}

/// The continuation: gives the lease up and writes a new `RunCampaign` to the
/// outbox in the caller's transaction, so the next runner can take over at
/// once (the lease is free when the job arrives). Returns its outbox
/// `message_id`, or `None` when the lease was no longer ours (nothing written).
pub async fn continue_later(
    db: &impl GenericClient,
    lease: &Lease,
) -> anyhow::Result<Option<Uuid>> {
    let n = db
        .execute(
            "update campaigns set runner_lease_until = null where id = $1 and runner_lease_until = $2",
            &[&lease.campaign_id, &lease.until],
        )
        .await
        .context("giving the lease up for the continuation")?;
    if n == 0 {
        return Ok(None);
    }
    let job = CampaignJob::RunCampaign(RunCampaign {
        v: 1,
        campaign_id: lease.campaign_id,
    });
    Ok(Some(jobs::enqueue_campaign(db, &job).await?))
}

/// Rows per batch and the pause after each, for `rate` messages/s and a
/// configured batch interval: `floor(rate × interval)` rows (at least 1),
/// then `rows / rate` seconds, so a slow channel (rate × interval < 1) still
/// gets exactly its rate.
pub fn pace(rate_per_second: f64, batch_interval: Duration) -> (i64, Duration) {
    let rate = if rate_per_second.is_finite() && rate_per_second > 0.0 {
        rate_per_second
    } else {
        1.0
    };
    let rows = (rate * batch_interval.as_secs_f64()).floor().max(1.0);
    // The CHECK bounds rate at 1000/s; cap rows too in case the interval is large.
    let rows = rows.min(100_000.0);
    (rows as i64, Duration::from_secs_f64(rows / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_releases_rate_times_interval_rows_per_batch() {
        assert_eq!(
            pace(20.0, Duration::from_secs(1)),
            (20, Duration::from_secs(1))
        );
        assert_eq!(
            pace(10.0, Duration::from_millis(500)),
            (5, Duration::from_millis(500))
        );
    }

    #[test]
    fn pace_of_a_slow_channel_is_one_row_per_period() {
        let (rows, wait) = pace(0.5, Duration::from_secs(1));
        assert_eq!(rows, 1);
        assert_eq!(wait, Duration::from_secs(2));
    }

    #[test]
    fn pace_rounds_down_and_waits_for_the_rows_it_released() {
        let (rows, wait) = pace(2.5, Duration::from_secs(1));
        assert_eq!(rows, 2);
        assert_eq!(wait, Duration::from_millis(800));
    }
}
