//! The enrichment worker's SQL (migrations/V14): runs and their outcome on
//! `webhook_events`, the lookup deduplication table, parties and their link
//! to a lead, and note posts (intent before, result after).

use super::sources::WorkPerson;
use crate::{db::GenericClient, types::PayloadHash};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// What the worker reads of a `c2s_leads` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    pub id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_phone2: Option<String>,
    pub customer_phone_global: Option<String>,
    pub seller_id: Option<String>,
    pub seller_name: Option<String>,
    pub seller_email: Option<String>,
    pub product_description: Option<String>,
    pub status_name: Option<String>,
    pub contact_hash: String,
    pub closed_at: Option<DateTime<Utc>>,
}

pub async fn load_lead(db: &impl GenericClient, id: &str) -> anyhow::Result<Option<Lead>> {
    let stmt = db
        .prepare_cached(
            "select id, customer_name, customer_email, customer_phone, customer_phone2, seller_id, seller_name, \
                    seller_email, product_description, status_name, contact_hash, closed_at, customer_phone_global \
             from c2s_leads where id = $1",
        )
        .await
        .context("preparing the lead read")?;
    let row = db
        .query_opt(&stmt, &[&id])
        .await
        .context("reading the lead")?;
    Ok(row.map(|r| Lead {
        id: r.get(0),
        customer_name: r.get(1),
        customer_email: r.get(2),
        customer_phone: r.get(3),
        customer_phone2: r.get(4),
        customer_phone_global: r.get(12),
        seller_id: r.get(5),
        seller_name: r.get(6),
        seller_email: r.get(7),
        product_description: r.get(8),
        status_name: r.get(9),
        contact_hash: r.get(10),
        closed_at: r.get(11),
    }))
}

/// The event's status, `None` when there is no such event.
pub async fn event_status(
    db: &impl GenericClient,
    event_id: Uuid,
) -> anyhow::Result<Option<String>> {
    let stmt = db
        .prepare_cached("select status from webhook_events where id = $1")
        .await
        .context("preparing the event read")?;
    let row = db
        .query_opt(&stmt, &[&event_id])
        .await
        .context("reading the event")?;
    Ok(row.map(|r| r.get(0)))
}

/// A run as `start_run` left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: Uuid,
    pub attempts: i32,
}

/// Creates the event's run, or counts another attempt of it — only while
/// the event is still `received`, checked in the same statement (the event
/// row is locked): a duplicate delivery never reopens a finished run.
/// `None`: the event is no longer `received`.
pub async fn start_run(
    db: &impl GenericClient,
    event_id: Uuid,
    lead_id: &str,
    hook_action: &str,
    contact_hash: &str,
) -> anyhow::Result<Option<Run>> {
    let stmt = db
        .prepare_cached(
            "with ev as (select id from webhook_events where id = $1 and status = 'received' for update) \
             insert into enrichment_runs (event_id, lead_id, hook_action, contact_hash) \
             select ev.id, $2, $3, $4 from ev \
             on conflict (event_id) do update set attempts = enrichment_runs.attempts + 1, \
                 contact_hash = excluded.contact_hash, status = 'running', finished_at = null, \
                 duration_ms = null, error = null, \
                 started_at = case when enrichment_runs.status = 'running' \
                              then enrichment_runs.started_at else now() end \
             returning id, attempts",
        )
        .await
        .context("preparing the run start")?;
    let row = db
        .query_opt(&stmt, &[&event_id, &lead_id, &hook_action, &contact_hash])
        .await
        .context("starting the enrichment run")?;
    Ok(row.map(|row| Run {
        id: row.get(0),
        attempts: row.get(1),
    }))
}

/// The contact hash of the lead's last run that enriched (completed or partial), other than `run`.
pub async fn last_enriched_hash(
    db: &impl GenericClient,
    lead_id: &str,
    run: Uuid,
) -> anyhow::Result<Option<(Uuid, String)>> {
    let stmt = db
        .prepare_cached(
            "select id, contact_hash from enrichment_runs \
             where lead_id = $1 and id <> $2 and status in ('completed', 'partial') \
               and hook_action <> 'on_close_lead' and contact_hash is not null \
             order by finished_at desc limit 1",
        )
        .await
        .context("preparing the last run read")?;
    let row = db
        .query_opt(&stmt, &[&lead_id, &run])
        .await
        .context("reading the last run")?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish<'a> {
    pub status: &'a str,
    /// `None` keeps what an earlier receive recorded.
    pub identity: Option<&'a str>,
    /// `None` keeps what an earlier receive recorded.
    pub validation: Option<&'a Value>,
    pub reasons: &'a [String],
    /// Written to `webhook_events.error` (and the run's) — never a value of the lead.
    pub error: Option<&'a str>,
}

/// Records the outcome on the run and moves the event received → `status`,
/// with `processed_at` and `duration_ms` (from the run's start). Only a
/// `running` run is finished: a concurrent copy of the job that finished
/// first keeps its outcome.
pub async fn finish(
    db: &impl GenericClient,
    run: Uuid,
    event_id: Uuid,
    f: &Finish<'_>,
) -> anyhow::Result<()> {
    let reasons = serde_json::to_value(f.reasons).expect("strings serialise");
    let stmt = db
        .prepare_cached(
            // The event is locked before the run, in the order `start_run`
            // takes them, so a duplicate delivery starting while this copy
            // finishes waits instead of deadlocking.
            "with ev as (select id from webhook_events where id = $7 for update), \
             run as ( \
               update enrichment_runs set status = $2, identity = coalesce($3, identity), \
                      validation = coalesce($4, validation), reasons = $5, \
                      error = left($6, 2000), finished_at = now(), \
                      duration_ms = least(extract(epoch from now() - started_at) * 1000, 2147483647)::int \
               where id = $1 and status = 'running' and exists (select 1 from ev) returning duration_ms) \
             update webhook_events e set status = $2, error = left($6, 2000), processed_at = now(), \
                    duration_ms = run.duration_ms \
             from run where e.id = $7",
        )
        .await
        .context("preparing the run finish")?;
    db.execute(
        &stmt,
        &[
            &run,
            &f.status,
            &f.identity,
            &f.validation,
            &reasons,
            &f.error,
            &event_id,
        ],
    )
    .await
    .context("finishing the enrichment run")?;
    Ok(())
}

/// Fails an event that has no run (its lead is missing).
pub async fn fail_event(
    db: &impl GenericClient,
    event_id: Uuid,
    error: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update webhook_events set status = 'failed', error = left($2, 2000), processed_at = now(), \
                    duration_ms = least(extract(epoch from now() - received_at) * 1000, 2147483647)::int \
             where id = $1 and status = 'received'",
        )
        .await
        .context("preparing the event failure")?;
    db.execute(&stmt, &[&event_id, &error])
        .await
        .context("failing the event")?;
    Ok(())
}

/// Marks an event the worker gave up on (`error` is the give-up reason it
/// was failed with) as retryable: `error_code = 'gave_up'`, so a re-send of
/// the element by C2S takes it over (migrations/V16). A final `failed`
/// outcome (no CPF found, invalid data) has no such code and stays final.
pub async fn mark_gave_up(
    db: &impl GenericClient,
    event_id: Uuid,
    error: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update webhook_events set error_code = 'gave_up' \
             where id = $1 and status = 'failed' and error = left($2, 2000)",
        )
        .await
        .context("preparing the give-up mark")?;
    db.execute(&stmt, &[&event_id, &error])
        .await
        .context("marking the give-up")?;
    Ok(())
}

/// The answer to a lookup claim.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupClaim {
    /// This worker makes the paid call, then `complete_lookup` or `release_lookup`.
    Mine,
    /// Answered within the window: the stored result.
    Done(Value),
    /// Another worker is calling right now.
    Busy,
}

/// Claims `key` for a paid call, unless a result within the window exists or
/// another worker holds a live claim. One statement: concurrent claimers
/// serialise on the key's row, so exactly one of them gets `Mine`.
pub async fn claim_lookup(
    db: &impl GenericClient,
    key: &str,
    lease: Duration,
    window: Duration,
) -> anyhow::Result<LookupClaim> {
    let (lease, window) = (secs(lease), secs(window));
    let stmt = db
        .prepare_cached(
            "insert into enrichment_lookups (key, state, lease_until, expires_at) \
             values ($1, 'pending', now() + make_interval(secs => $2), now() + make_interval(secs => $3)) \
             on conflict (key) do update set state = 'pending', result = null, \
                 lease_until = excluded.lease_until, expires_at = excluded.expires_at, \
                 calls = enrichment_lookups.calls + 1, updated_at = now() \
               where (enrichment_lookups.state = 'done' and enrichment_lookups.expires_at <= now()) \
                  or (enrichment_lookups.state = 'pending' and enrichment_lookups.lease_until <= now()) \
             returning true",
        )
        .await
        .context("preparing the lookup claim")?;
    if db
        .query_opt(&stmt, &[&key, &lease, &window])
        .await
        .context("claiming the lookup")?
        .is_some()
    {
        return Ok(LookupClaim::Mine);
    }
    let stmt = db
        .prepare_cached("select state, result from enrichment_lookups where key = $1")
        .await
        .context("preparing the lookup read")?;
    let row = db
        .query_opt(&stmt, &[&key])
        .await
        .context("reading the lookup")?;
    Ok(match row {
        Some(r) if r.get::<_, String>(0) == "done" => LookupClaim::Done(r.get(1)),
        // Released between the two statements: the caller claims again.
        None => LookupClaim::Busy,
        Some(_) => LookupClaim::Busy,
    })
}

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Stores the answer of a claimed lookup, valid for `window`.
pub async fn complete_lookup(
    db: &impl GenericClient,
    key: &str,
    result: &Value,
    window: Duration,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update enrichment_lookups set state = 'done', result = $2, \
                    expires_at = now() + make_interval(secs => $3), updated_at = now() where key = $1",
        )
        .await
        .context("preparing the lookup completion")?;
    db.execute(&stmt, &[&key, result, &secs(window)])
        .await
        .context("completing the lookup")?;
    Ok(())
}

/// Gives a claimed lookup up (the call failed): the next worker may claim it.
pub async fn release_lookup(db: &impl GenericClient, key: &str) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached("delete from enrichment_lookups where key = $1 and state = 'pending'")
        .await
        .context("preparing the lookup release")?;
    db.execute(&stmt, &[&key])
        .await
        .context("releasing the lookup")?;
    Ok(())
}

/// Deletes up to `limit` expired lookups (answers past their window, claims
/// whose holder died over an hour ago), so the cache keeps no answer longer
/// than `LOOKUP_DEDUP_WINDOW_SECS`. Rows another worker holds are skipped.
/// Returns how many went.
pub async fn purge_lookups(db: &impl GenericClient, limit: i64) -> anyhow::Result<u64> {
    let stmt = db
        .prepare_cached(
            "delete from enrichment_lookups where key in ( \
               select key from enrichment_lookups \
               where (state = 'done' and expires_at <= now()) \
                  or (state = 'pending' and lease_until <= now() - interval '1 hour') \
               order by expires_at limit $1 for update skip locked)",
        )
        .await
        .context("preparing the lookup purge")?;
    db.execute(&stmt, &[&limit])
        .await
        .context("purging expired lookups")
}

/// Inserts or refreshes the person of `p.cpf`; returns the party id.
pub async fn upsert_party(
    db: &impl GenericClient,
    p: &WorkPerson,
    payload: &Value,
) -> anyhow::Result<Uuid> {
    let financial = p.has_financial().then(|| {
        serde_json::json!({
            "renda": p.renda, "poderAquisitivo": p.poder_aquisitivo,
            "faixaPoderAquisitivo": p.faixa_poder_aquisitivo,
            "scoreCSBA": p.score, "scoreCSBAFaixaRisco": p.score_faixa_risco,
        })
    });
    let stmt = db
        .prepare_cached(
            "insert into parties (cpf, name, birth_date, gender, mother_name, emails, phones, addresses, companies, \
                                  financial, source_payload) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             on conflict (cpf) do update set name = excluded.name, birth_date = excluded.birth_date, \
                 gender = excluded.gender, mother_name = excluded.mother_name, emails = excluded.emails, \
                 phones = excluded.phones, addresses = excluded.addresses, companies = excluded.companies, \
                 financial = excluded.financial, source_payload = excluded.source_payload, \
                 fetched_at = now(), updated_at = now() \
             returning id",
        )
        .await
        .context("preparing the party upsert")?;
    let row = db
        .query_one(
            &stmt,
            &[
                &p.cpf.as_str(),
                &p.nome,
                &p.birth_date(),
                &p.sexo,
                &p.nome_mae,
                &json(&p.emails),
                &json(&p.telefones),
                &json(&p.enderecos),
                &json(&p.empresas),
                &financial,
                payload,
            ],
        )
        .await
        .context("upserting the party")?;
    Ok(row.get(0))
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("party fields serialise")
}

pub async fn link_party(
    db: &impl GenericClient,
    lead_id: &str,
    party_id: Uuid,
    matched_by: &str,
    run: Uuid,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into lead_parties (lead_id, party_id, matched_by, run_id) values ($1, $2, $3, $4) \
             on conflict (lead_id, party_id) do update set matched_by = excluded.matched_by, \
                 run_id = excluded.run_id, updated_at = now()",
        )
        .await
        .context("preparing the party link")?;
    db.execute(&stmt, &[&lead_id, &party_id, &matched_by, &run])
        .await
        .context("linking the party")?;
    Ok(())
}

/// What to do about a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteTurn {
    /// The intent is recorded: post `body` now, then `note_result`. On a
    /// retry of the run `body` is the text stored by its first attempt, not
    /// the one composed now.
    Post { id: Uuid, body: String },
    /// Already posted (or recorded by the local sink): nothing to do.
    Done,
    /// An earlier attempt's outcome is unknown: flagged, never repeated.
    Uncertain,
    /// Another worker is posting it right now.
    Busy,
}

/// sha256 hex of `text` (the same digest as [`PayloadHash::of_bytes`]).
pub fn sha256_hex(text: &str) -> String {
    PayloadHash::of_bytes(text.as_bytes()).as_str().to_owned()
}

/// Records the intent to post `body` to the lead for run `run` (committed
/// before the call). A note is unique per run (= per webhook event) and per
/// lead and text:
/// - the run has a note already: that row decides, whatever text the retry
///   composed now — posted/local is `Done`, uncertain is `Uncertain`, a
///   pending one younger than `lease` is `Busy` and older becomes
///   `uncertain` (the worker died mid-call); only a provably `failed` one is
///   attempted again, with its stored body;
/// - another run of the lead has the same text: the same rules on that row;
/// - otherwise a new `pending` row: `Post`.
pub async fn note_intent(
    db: &impl GenericClient,
    lead_id: &str,
    run: Uuid,
    body: &str,
    lease: Duration,
) -> anyhow::Result<NoteTurn> {
    // A new note (no conflict on either unique rule).
    let insert = db
        .prepare_cached(
            "insert into enrichment_notes (lead_id, run_id, body, body_sha256, status, attempts, attempted_at) \
             values ($1, $2, $3, $4, 'pending', 1, now()) on conflict do nothing returning id",
        )
        .await
        .context("preparing the note intent")?;
    let hash = sha256_hex(body);
    if let Some(row) = db
        .query_opt(&insert, &[&lead_id, &run, &body, &hash])
        .await
        .context("recording the note intent")?
    {
        return Ok(NoteTurn::Post {
            id: row.get(0),
            body: body.to_string(),
        });
    }
    // The run's own note first; else the lead's note with the same text.
    // One statement per row: concurrent callers serialise on its lock.
    let update = db
        .prepare_cached(
            "with target as ( \
               select id from enrichment_notes where run_id = $1 \
               union all \
               select id from enrichment_notes where lead_id = $2 and body_sha256 = $3 \
                 and not exists (select 1 from enrichment_notes where run_id = $1) \
               limit 1) \
             update enrichment_notes n set \
                 status = case n.status when 'failed' then 'pending' \
                          when 'pending' then 'uncertain' else n.status end, \
                 attempts = n.attempts + (n.status = 'failed')::int, \
                 attempted_at = case when n.status = 'failed' then now() else n.attempted_at end, \
                 error = case when n.status = 'pending' \
                         then 'uncertain: an earlier attempt''s outcome is unknown; not posted again' \
                         else n.error end, \
                 updated_at = now() \
             from target where n.id = target.id \
               and (n.status <> 'pending' or n.attempted_at <= now() - make_interval(secs => $4)) \
             returning n.id, n.status, n.body",
        )
        .await
        .context("preparing the note retry")?;
    let row = db
        .query_opt(&update, &[&run, &lead_id, &hash, &secs(lease)])
        .await
        .context("recording the note retry")?;
    let Some(row) = row else {
        // A pending attempt within its lease (or the row vanished with its lead).
        return Ok(NoteTurn::Busy);
    };
    let (id, status, stored): (Uuid, String, String) = (row.get(0), row.get(1), row.get(2));
    Ok(match status.as_str() {
        "pending" => NoteTurn::Post { id, body: stored },
        "uncertain" => NoteTurn::Uncertain,
        _ => NoteTurn::Done,
    })
}

/// Records what became of a note: `posted`, `failed` (provably not taken),
/// `uncertain` or `local` (the local sink).
pub async fn note_result(
    db: &impl GenericClient,
    note: Uuid,
    status: &str,
    http_status: Option<i32>,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "update enrichment_notes set status = $2, http_status = $3, error = left($4, 1000), \
                    posted_at = case when $2 in ('posted', 'local') then now() else posted_at end, \
                    updated_at = now() where id = $1",
        )
        .await
        .context("preparing the note result")?;
    db.execute(&stmt, &[&note, &status, &http_status, &error])
        .await
        .context("recording the note result")?;
    Ok(())
}

/// Records a note the local sink kept (no C2S credentials): never posted.
pub async fn note_local(
    db: &impl GenericClient,
    lead_id: &str,
    run: Uuid,
    body: &str,
) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into enrichment_notes (lead_id, run_id, body, body_sha256, status, posted_at) \
             values ($1, $2, $3, $4, 'local', now()) on conflict do nothing",
        )
        .await
        .context("preparing the local note")?;
    db.execute(&stmt, &[&lead_id, &run, &body, &sha256_hex(body)])
        .await
        .context("recording the local note")?;
    Ok(())
}
