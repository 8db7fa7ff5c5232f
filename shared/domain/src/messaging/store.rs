//! The send worker's queries: load a queued message, claim an attempt before
//! calling Twilio, record the answer. A message is sent at most once: one
//! with a SID is done, and one whose previous attempt's outcome is unknown
//! (claimed, no SID, lease expired) is failed as uncertain, not resent.
//! Opt-outs are checked again at send time, under the message's lock: one
//! recorded after the API accepted the message fails it `opted_out`
//! (campaign messages and one-off sends alike), with no Twilio call.

use crate::{crm::ApiError, db::GenericClient};
use anyhow::Context;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// What `message_sends.content_variables` holds for a template message.
pub async fn save_variables(
    db: &impl GenericClient,
    message_id: Uuid,
    variables: &Value,
) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached("insert into message_sends (message_id, content_variables) values ($1, $2)")
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the send row insert"))?;
    db.execute(&stmt, &[&message_id, variables])
        .await
        .map_err(|e| ApiError::from_db(e, "storing the template variables"))?;
    Ok(())
}

/// A queued outbound message and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: Uuid,
    pub channel: String,
    /// The contact's E.164 phone.
    pub to: String,
    pub body: Option<String>,
    pub media_key: Option<String>,
    pub template_sid: Option<String>,
    pub variables: Option<Value>,
}

/// What may be done with a message now.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Claimed: call Twilio, then `record_sent` / `record_failed` / `release`.
    Go(Queued),
    /// Already handed over (has a SID) or finished: nothing to do.
    Finished,
    /// Another receive is calling Twilio right now (claim younger than the lease).
    Busy,
    /// A previous attempt's outcome is unknown: marked failed, not resent.
    Uncertain,
    /// No such outbound message (deleted with its contact).
    Missing,
    /// The contact opted out of the message's channel after it was queued:
    /// marked failed (`OPTED_OUT`), not sent.
    OptedOut,
}

pub const UNCERTAIN: &str = "uncertain: previous attempt outcome unknown";
/// `error_message` of a message not sent because the contact opted out of
/// its channel (it starts with the ledger's `opted_out` reason).
pub const OPTED_OUT: &str = "opted_out: the contact opted out of this channel";

/// Claims the message for one Twilio call, in one transaction.
pub async fn claim(
    client: &mut deadpool_postgres::Client,
    message_id: Uuid,
    lease: Duration,
) -> anyhow::Result<Claim> {
    let tx = client.transaction().await.context("starting the claim")?;
    // Lock first, read second: a statement that waited for the lock still
    // reads joined tables as of its own start, so a concurrent claim's
    // committed `message_sends` row would be invisible to it. The read below
    // is a new statement, with a snapshot taken after the lock was granted.
    let locked = tx
        .query_opt(
            "select 1 from messages where id = $1 and direction = 'out' for update",
            &[&message_id],
        )
        .await
        .context("locking the queued message")?;
    if locked.is_none() {
        return Ok(Claim::Missing);
    }
    let row = tx
        .query_opt(
            "select m.channel, c.phone, m.body, m.media_key, m.template_sid, s.content_variables, \
                    m.provider_sid, m.status, s.attempted_at, \
                    s.attempted_at > now() - make_interval(secs => $2), \
                    exists (select 1 from opt_outs o \
                            where o.contact_id = m.contact_id and o.channel = m.channel) \
             from messages m join contacts c on c.id = m.contact_id \
             left join message_sends s on s.message_id = m.id \
             where m.id = $1 and m.direction = 'out'",
            &[&message_id, &lease.as_secs_f64()],
        )
        .await
        .context("loading the queued message")?;
    let Some(row) = row else {
        return Ok(Claim::Missing);
    };
    let sid: Option<String> = row.get(6);
    let status: String = row.get(7);
    if sid.is_some() || status != "queued" {
        return Ok(Claim::Finished);
    }
    let attempted: Option<chrono::DateTime<chrono::Utc>> = row.get(8);
    if attempted.is_some() {
        if row.get::<_, Option<bool>>(9) == Some(true) {
            return Ok(Claim::Busy);
        }
        fail(&tx, message_id, None, UNCERTAIN).await?;
        tx.commit()
            .await
            .context("committing the uncertain failure")?;
        return Ok(Claim::Uncertain);
    }
    if row.get::<_, bool>(10) {
        fail(&tx, message_id, None, OPTED_OUT).await?;
        tx.commit()
            .await
            .context("committing the opt-out failure")?;
        return Ok(Claim::OptedOut);
    }
    let Some(to) = row.get::<_, Option<String>>(1) else {
        fail(&tx, message_id, None, "the contact has no phone number").await?;
        tx.commit().await.context("committing the failure")?;
        return Ok(Claim::Finished);
    };
    tx.execute(
        "insert into message_sends (message_id, attempts, attempted_at) values ($1, 1, now()) \
         on conflict (message_id) do update set attempts = message_sends.attempts + 1, \
           attempted_at = now(), updated_at = now()",
        &[&message_id],
    )
    .await
    .context("claiming the send attempt")?;
    tx.commit().await.context("committing the claim")?;
    Ok(Claim::Go(Queued {
        id: message_id,
        channel: row.get(0),
        to,
        body: row.get(2),
        media_key: row.get(3),
        template_sid: row.get(4),
        variables: row.get(5),
    }))
}

/// Twilio took it: its SID and status.
pub async fn record_sent(
    db: &impl GenericClient,
    message_id: Uuid,
    sid: &str,
    status: &str,
    sink: &str,
    local_request: Option<&Value>,
) -> anyhow::Result<()> {
    db.execute(
        "update messages set provider_sid = $2, status = $3, status_updated_at = now(), updated_at = now() \
         where id = $1 and provider_sid is null",
        &[&message_id, &sid, &status],
    )
    .await
    .context("storing the provider SID")?;
    db.execute(
        "update message_sends set sink = $2, local_request = $3, updated_at = now() where message_id = $1",
        &[&message_id, &sink, &local_request],
    )
    .await
    .context("recording the sink")?;
    Ok(())
}

/// For good: `failed` with Twilio's code and a readable reason.
pub async fn record_failed(
    db: &impl GenericClient,
    message_id: Uuid,
    code: Option<i32>,
    message: &str,
) -> anyhow::Result<()> {
    fail(db, message_id, code, message).await
}

async fn fail(
    db: &impl GenericClient,
    message_id: Uuid,
    code: Option<i32>,
    message: &str,
) -> anyhow::Result<()> {
    db.execute(
        "update messages set status = 'failed', error_code = $2, error_message = $3, \
           status_updated_at = now(), updated_at = now() \
         where id = $1 and provider_sid is null and status = 'queued'",
        &[&message_id, &code, &message],
    )
    .await
    .context("marking the message failed")?;
    Ok(())
}

/// Twilio did not take it (429, 503, a connect-phase failure): the next
/// receive may try again. Never after an answer that may follow a send.
pub async fn release(db: &impl GenericClient, message_id: Uuid) -> anyhow::Result<()> {
    db.execute(
        "update message_sends set attempted_at = null, updated_at = now() where message_id = $1",
        &[&message_id],
    )
    .await
    .context("releasing the send attempt")?;
    Ok(())
}
