//! Applies the embedded `migrations/` in version order, recording each in
//! `schema_migrations` with a checksum. Safe when several processes start at
//! once: a session advisory lock serialises them, and each migration commits
//! in its own transaction together with its record.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Arbitrary constant shared by every process that migrates this schema.
const LOCK_KEY: i64 = 0x0C0F_FEE0_C12A_0001;

pub fn all() -> &'static [Migration] {
    MIGRATIONS
}

/// Fingerprint of the whole migration set (used to name test templates).
pub fn fingerprint() -> String {
    let mut h = Sha256::new();
    for m in MIGRATIONS {
        h.update(m.version.to_be_bytes());
        h.update(m.sql.as_bytes());
    }
    hex::encode(h.finalize())[..16].to_string()
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies what is missing; returns the versions applied by this call.
pub async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<u32>> {
    client
        .execute("select pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let outcome = apply(client).await;
    let unlock = client
        .execute("select pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let applied = outcome?;
    unlock.context("releasing the migration lock")?;
    Ok(applied)
}

async fn apply(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<u32>> {
    client
        .batch_execute(
            "create table if not exists schema_migrations (
                version    integer primary key,
                name       text not null,
                checksum   text not null,
                applied_at timestamptz not null default now())",
        )
        .await
        .context("creating schema_migrations")?;
    let rows = client
        .query("select version, checksum from schema_migrations", &[])
        .await
        .context("reading schema_migrations")?;
    let done: std::collections::HashMap<i32, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let version = i32::try_from(m.version).context("migration version out of range")?;
        if let Some(sum) = done.get(&version) {
            if *sum != checksum(m.sql) {
                bail!(
                    "migration V{}__{} was edited after it was applied; add a new migration instead",
                    m.version,
                    m.name
                );
            }
            continue;
        }
        let tx = client
            .transaction()
            .await
            .context("starting a migration transaction")?;
        tx.batch_execute(m.sql)
            .await
            .with_context(|| format!("applying migration V{}__{}", m.version, m.name))?;
        tx.execute(
            "insert into schema_migrations (version, name, checksum) values ($1, $2, $3)",
            &[&version, &m.name, &checksum(m.sql)],
        )
        .await
        .context("recording a migration")?;
        tx.commit()
            .await
            .with_context(|| format!("committing migration V{}", m.version))?;
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_embedded_in_strictly_increasing_order() {
        assert!(!all().is_empty());
        assert!(all().windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(all()[0].version, 1);
    }
}
