//! Work claimed or waiting whose job never came back: the worker died
//! after its queue gave up on the message (dead-lettered, or lost by a
//! local runner before the queue was durable), so nothing would ever look
//! at it again. The scheduled relay finds each such state once it is older
//! than [`STALE_AFTER`] and re-drives its job: a fresh outbox row copying
//! the job's last one (a new queue message id, so no consumer takes it for
//! a duplicate). The worker that receives it decides with its usual claim
//! rules, so the outcome is the documented one for each state:
//!
//! | state | worker on the re-driven job |
//! |---|---|
//! | outbound message `queued`, never attempted | sends it (nothing was sent) |
//! | outbound message `queued`, attempt claimed, no SID | fails it `uncertain: …; not resent` (Twilio may have taken it) |
//! | webhook delivery `pending`, lock lapsed | delivers it again (same `webhook-id`: receivers deduplicate) |
//! | enrichment run `running` | the run starts again (`attempts` + 1): lookups (reads) are redone; a C2S note keeps its own state (`posted`, `uncertain`) |
//! | C2S event `received` (no run yet) | enriches it (nothing was sent) |
//!
//! A job is re-driven at most [`MAX_REDRIVES`] times, and never again
//! within [`STALE_AFTER`] of its last outbox row. docs/reliability.md says
//! which states are at-most-once and why.

use crate::db::GenericClient;
use anyhow::Context;
use std::time::Duration;

/// Older than this and still open, a state is stale: well past every
/// worker's lease (a Twilio send's is its timeout + 60 s) and past SQS's
/// retries of a message with its backoff.
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Re-drives per job at most (beyond the original): a job that keeps
/// dying is left for a person (the state stays visible, and logged).
pub const MAX_REDRIVES: i64 = 3;

/// States found stale at most per kind and run.
const BATCH: i64 = 100;

/// How many jobs one sweep re-drove, per kind of stale state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub sends: u64,
    pub webhook_deliveries: u64,
    pub enrichment: u64,
}

impl SweepReport {
    pub fn total(&self) -> u64 {
        self.sends + self.webhook_deliveries + self.enrichment
    }
}

/// One kind of stale state: the job kind that carries it, the job field
/// that names it, and the query of its stale keys (`$1` = the age in seconds,
/// `$2` = the batch).
struct Kind {
    job: &'static str,
    key: &'static str,
    stale_keys: &'static str,
}

const SENDS: Kind = Kind {
    job: "send_message",
    key: "message_id",
    stale_keys: "select m.id::text from messages m \
                  where m.direction = 'out' and m.status = 'queued' and m.provider_sid is null \
                    and m.created_at < now() - make_interval(secs => $1) \
                  order by m.created_at limit $2",
};

const WEBHOOK_DELIVERIES: Kind = Kind {
    job: "deliver_webhook",
    key: "event_id",
    stale_keys: "select distinct d.event_id::text from webhook_deliveries d \
                  where d.status = 'pending' and (d.locked_until is null or d.locked_until < now()) \
                    and d.updated_at < now() - make_interval(secs => $1) \
                  limit $2",
};

const ENRICHMENT: Kind = Kind {
    job: "enrich_lead",
    key: "event_id",
    stale_keys: "(select r.event_id::text from enrichment_runs r \
                   where r.status = 'running' and r.started_at < now() - make_interval(secs => $1) \
                   limit $2) \
                 union \
                 (select e.id::text from webhook_events e \
                   where e.status = 'received' and e.received_at < now() - make_interval(secs => $1) \
                     and not exists (select 1 from enrichment_runs r where r.event_id = e.id) \
                   limit $2)",
};

/// Finds every kind of stale state older than `stale_after` and re-drives its job.
pub async fn sweep(db: &impl GenericClient, stale_after: Duration) -> anyhow::Result<SweepReport> {
    Ok(SweepReport {
        sends: redrive(db, &SENDS, stale_after).await?,
        webhook_deliveries: redrive(db, &WEBHOOK_DELIVERIES, stale_after).await?,
        enrichment: redrive(db, &ENRICHMENT, stale_after).await?,
    })
}

/// Copies the last outbox row of each stale key's job into a new row
/// (unpublished: this run's relay, or the next, publishes it), unless that
/// row is younger than `stale_after` or the job has been re-driven enough.
async fn redrive(
    db: &impl GenericClient,
    kind: &Kind,
    stale_after: Duration,
) -> anyhow::Result<u64> {
    let sql = format!(
        "with stale(key) as ({stale}), \
         latest as ( \
             select distinct on (o.body->>'{key}') o.queue, o.body, o.created_at, \
                    count(*) over (partition by o.body->>'{key}') as copies \
               from outbox o join stale s on o.body->>'{key}' = s.key \
              where o.body->>'kind' = '{job}' \
              order by o.body->>'{key}', o.id desc) \
         insert into outbox (queue, body) \
         select queue, body from latest \
          where created_at < now() - make_interval(secs => $1) and copies <= {max}",
        stale = kind.stale_keys,
        key = kind.key,
        job = kind.job,
        max = MAX_REDRIVES,
    );
    let n = db
        .execute(&sql, &[&stale_after.as_secs_f64(), &BATCH])
        .await
        .with_context(|| format!("re-driving stale {} jobs", kind.job))?;
    if n > 0 {
        tracing::warn!(job = kind.job, count = n, "re-drove jobs of stale states");
    }
    Ok(n)
}
