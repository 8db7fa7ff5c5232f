//! The audit log of the campaigns module: who did what to which record, with
//! ids and counts only. Callers must never put message bodies or contact
//! details (names, e-mails, phones) in `details`; the API tests assert it.

use crate::db::GenericClient;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub struct AuditEntry<'a> {
    /// `crm.<object>.<verb>`, e.g. `crm.campaign.sent` (the table's CHECK).
    pub action: &'a str,
    /// `user:<sub>` or `system`.
    pub actor: &'a str,
    /// `campaign`, `template`, `segment`, `channel`, `module`, `contact`.
    pub target_type: &'a str,
    pub target_id: Option<String>,
    pub details: Value,
}

/// Writes one entry; call it inside the transaction of the change it records.
pub async fn record(db: &impl GenericClient, e: &AuditEntry<'_>) -> anyhow::Result<()> {
    let stmt = db
        .prepare_cached(
            "insert into audit_log (action, actor, target_type, target_id, details) \
             values ($1, $2, $3, $4, $5)",
        )
        .await
        .context("preparing the audit insert")?;
    db.execute(
        &stmt,
        &[
            &e.action,
            &e.actor,
            &e.target_type,
            &e.target_id,
            &e.details,
        ],
    )
    .await
    .with_context(|| format!("writing audit entry {}", e.action))?;
    Ok(())
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Keyset: entries strictly older than this id (ids grow with time).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Entries matching the filters, newest first, and the id to continue from.
pub async fn list(
    db: &impl GenericClient,
    q: &AuditQuery,
) -> anyhow::Result<(Vec<Value>, Option<i64>)> {
    let stmt = db
        .prepare_cached(
            "select id, action, actor, target_type, target_id, details, created_at from audit_log \
             where ($1::text is null or action = $1) and ($2::text is null or actor = $2) \
               and ($3::bigint is null or id < $3) \
             order by id desc limit $4",
        )
        .await
        .context("preparing the audit read")?;
    let rows = db
        .query(&stmt, &[&q.action, &q.actor, &q.before_id, &(q.limit + 1)])
        .await
        .context("reading the audit log")?;
    let more = rows.len() as i64 > q.limit;
    let items: Vec<(i64, Value)> = rows
        .iter()
        .take(q.limit as usize)
        .map(|r| {
            let id: i64 = r.get(0);
            let at: DateTime<Utc> = r.get(6);
            (
                id,
                json!({
                    "id": id,
                    "action": r.get::<_, String>(1),
                    "actor": r.get::<_, String>(2),
                    "target_type": r.get::<_, String>(3),
                    "target_id": r.get::<_, Option<String>>(4),
                    "details": r.get::<_, Value>(5),
                    "created_at": at,
                }),
            )
        })
        .collect();
    let next = if more {
        items.last().map(|(id, _)| *id)
    } else {
        None
    };
    Ok((items.into_iter().map(|(_, v)| v).collect(), next))
}
