//! The `crm` kill switch (`module_switches`): when off, every campaign route
//! answers 403 `module_disabled` and the send worker holds campaign messages
//! (rows stay `queued`).

use crate::db::GenericClient;
use anyhow::Context;
use chrono::{DateTime, Utc};

/// Whether the campaigns module is on. A missing row counts as off (the
/// switch fails closed): the migration seeds it as on, so a missing row
/// means someone deleted it, and sending is then the unsafe guess.
pub async fn crm_enabled(db: &impl GenericClient) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached("select enabled from module_switches where module = 'crm'")
        .await
        .context("preparing the module switch read")?;
    Ok(db
        .query_opt(&stmt, &[])
        .await
        .context("reading the module switch")?
        .is_some_and(|r| r.get(0)))
}

/// [`crm_enabled`] inside a write transaction, with the row share-locked
/// until commit: a send or resume checked here cannot commit after the
/// switch went off (a toggle that committed first is seen; one that comes
/// later waits for this transaction). Missing row: off.
pub async fn crm_enabled_locked(db: &impl GenericClient) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached("select enabled from module_switches where module = 'crm' for share")
        .await
        .context("preparing the module switch lock")?;
    Ok(db
        .query_opt(&stmt, &[])
        .await
        .context("locking the module switch")?
        .is_some_and(|r| r.get(0)))
}

/// The switch as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleState {
    pub enabled: bool,
    pub reason: Option<String>,
    pub updated_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Whether this call changed `enabled`.
    pub changed: bool,
}

/// Sets the switch (row locked, so concurrent toggles serialise) and says
/// whether it changed.
pub async fn set(
    db: &impl GenericClient,
    enabled: bool,
    reason: Option<&str>,
    actor: &str,
) -> anyhow::Result<ModuleState> {
    let stmt = db
        .prepare_cached("select enabled from module_switches where module = 'crm' for update")
        .await
        .context("preparing the module switch lock")?;
    let before: bool = db
        .query_opt(&stmt, &[])
        .await
        .context("locking the module switch")?
        .is_none_or(|r| r.get(0));
    let stmt = db
        .prepare_cached(
            "insert into module_switches (module, enabled, reason, updated_by, updated_at) \
             values ('crm', $1, $2, $3, now()) \
             on conflict (module) do update set enabled = excluded.enabled, reason = excluded.reason, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at \
             returning enabled, reason, updated_by, updated_at",
        )
        .await
        .context("preparing the module switch update")?;
    let row = db
        .query_one(&stmt, &[&enabled, &reason, &actor])
        .await
        .context("updating the module switch")?;
    Ok(ModuleState {
        enabled: row.get(0),
        reason: row.get(1),
        updated_by: row.get(2),
        updated_at: row.get(3),
        changed: before != enabled,
    })
}

/// The switch as stored (the seeded row).
pub async fn state(db: &impl GenericClient) -> anyhow::Result<Option<ModuleState>> {
    let stmt = db
        .prepare_cached(
            "select enabled, reason, updated_by, updated_at from module_switches where module = 'crm'",
        )
        .await
        .context("preparing the module switch read")?;
    Ok(db
        .query_opt(&stmt, &[])
        .await
        .context("reading the module switch")?
        .map(|row| ModuleState {
            enabled: row.get(0),
            reason: row.get(1),
            updated_by: row.get(2),
            updated_at: row.get(3),
            changed: false,
        }))
}
