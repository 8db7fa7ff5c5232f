//! Runs a validated API write: under its idempotency key when the client
//! sent one (see `idempotency` for the protocol), in one transaction, then
//! publishes the outbox rows it wrote right away — those rows only, by
//! `message_id`, never other requests' (the scheduled relay is the safety
//! net, not the normal path). Shared by every JSON write API.

use crate::{
    IdempotencyKey, PayloadHash,
    auth::Principal,
    crm::{
        ApiError, Done,
        idempotency::{self, Claim, Held},
    },
    outbox::{self, Publisher},
};
use std::{future::Future, pin::Pin};

/// What the caller gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub body: serde_json::Value,
    /// Served from the idempotency key (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

/// The work of one request, run inside its transaction.
pub type Work<'a> = Pin<Box<dyn Future<Output = Result<Done, ApiError>> + Send + 'a>>;

pub async fn execute<F>(
    pool: &deadpool_postgres::Pool,
    publisher: Option<&dyn Publisher>,
    who: &Principal,
    key: Option<IdempotencyKey>,
    hash: &PayloadHash,
    work: F,
) -> Result<Outcome, ApiError>
where
    F: for<'a> FnOnce(&'a deadpool_postgres::Transaction<'a>, &'a Principal) -> Work<'a>,
{
    let mut client = pool.get().await?;
    let held = match key {
        None => None,
        Some(key) => match idempotency::claim(&client, who.user_id(), &key, hash).await? {
            Claim::Replay { status, body } => {
                return Ok(Outcome {
                    status,
                    body,
                    replayed: true,
                });
            }
            Claim::New(held) => Some(held),
        },
    };
    let result = transact(&mut client, who, held.as_ref(), work).await;
    if let (Err(err), Some(held)) = (&result, &held) {
        if err.is_server_fault() {
            // Nothing was written: free the key so the client can retry.
            idempotency::release(&client, held).await;
        } else if !matches!(err, ApiError::InFlight) {
            // A caller fault found while working is the answer to this
            // request: stored and replayed like a success (as Stripe does).
            if let Err(e) = idempotency::complete(&client, held, err.status(), &err.body()).await {
                tracing::warn!(error = %e.diagnostic(), "could not store the refusal under its key");
            }
        }
    }
    let done = result?;
    if !done.enqueued.is_empty()
        && let Some(publisher) = publisher
    {
        match outbox::relay_ids(&mut client, publisher, &done.enqueued).await {
            Ok(r) => tracing::debug!(
                published = r.published,
                failed = r.failed,
                "outbox fast path"
            ),
            // The write is committed and its rows wait for the scheduled relay.
            Err(e) => tracing::warn!(error = %crate::db::loggable(&e), "outbox fast path failed"),
        }
    }
    Ok(Outcome {
        status: done.status,
        body: done.body,
        replayed: false,
    })
}

/// The work and (under a key) its stored answer, committed together.
async fn transact<F>(
    client: &mut deadpool_postgres::Client,
    who: &Principal,
    held: Option<&Held>,
    work: F,
) -> Result<Done, ApiError>
where
    F: for<'a> FnOnce(&'a deadpool_postgres::Transaction<'a>, &'a Principal) -> Work<'a>,
{
    let tx = client
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the write transaction"))?;
    if let Some(held) = held {
        idempotency::lock(&tx, held).await?;
    }
    let done = work(&tx, who).await?;
    if let Some(held) = held {
        idempotency::complete(&tx, held, done.status, &done.body).await?;
    }
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the write"))?;
    Ok(done)
}
