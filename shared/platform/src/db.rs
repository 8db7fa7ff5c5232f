//! The PostgreSQL pool, built once per cold start. Connections are opened
//! lazily (nothing at init), recycled cheaply, and use TLS when the URL asks
//! for it, verified against the CA bundle at `PGSSLROOTCERT`.

use crate::config::{ConfigError, DatabaseConfig};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::sync::Arc;
use tokio_postgres::config::SslMode;

pub use deadpool_postgres::Pool as PgPool;

/// The pool for `cfg`: the shared one when the process has one (the local
/// runner), else a new pool of `pool_max` whose idle connections are closed
/// after `idle_timeout` (when built inside a Tokio runtime).
pub fn build_pool(cfg: &DatabaseConfig) -> Result<Pool, ConfigError> {
    if let Some(shared) = &cfg.shared {
        return Ok(shared.clone());
    }
    let pool = new_pool(cfg)?;
    if tokio::runtime::Handle::try_current().is_ok() {
        close_idle(&pool, cfg.idle_timeout);
    }
    Ok(pool)
}

/// Closes connections idle for longer than `idle`, checked every `idle / 2`,
/// for as long as the pool exists (the task holds it weakly).
pub fn close_idle(pool: &Pool, idle: std::time::Duration) {
    let weak = pool.weak();
    let every = (idle / 2).max(std::time::Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = weak.upgrade() else { break };
            pool.retain(|_, metrics| metrics.last_used() < idle);
        }
    });
}

fn new_pool(cfg: &DatabaseConfig) -> Result<Pool, ConfigError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    // `prefer` (the URL default) without a CA bundle means plain TCP, as
    // libpq does without a root certificate; `require` insists on verified TLS.
    let plain = match cfg.pg.get_ssl_mode() {
        SslMode::Disable => true,
        SslMode::Prefer => cfg.root_cert_path.is_none(),
        _ => false,
    };
    let manager = if plain {
        Manager::from_config(cfg.pg.clone(), tokio_postgres::NoTls, manager_config)
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(cfg)?);
        Manager::from_config(cfg.pg.clone(), tls, manager_config)
    };
    Pool::builder(manager)
        .max_size(cfg.pool_max)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .build()
        .map_err(|e| ConfigError {
            name: "DATABASE_URL".into(),
            reason: format!("pool: {e}"),
        })
}

fn tls_config(cfg: &DatabaseConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let bad = |reason: String| ConfigError {
        name: "PGSSLROOTCERT".into(),
        reason,
    };
    let path = cfg.root_cert_path.as_deref().ok_or_else(|| {
        bad("is required when the database URL asks for TLS (sslmode=require)".into())
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("cannot read {path}: {e}")))?
    {
        let cert = cert.map_err(|e| bad(format!("bad PEM in {path}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("bad certificate in {path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{path} holds no certificates")));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Applies pending migrations over a dedicated connection (the advisory
/// lock is held by that session).
pub async fn migrate(cfg: &DatabaseConfig) -> anyhow::Result<Vec<u32>> {
    use anyhow::Context;
    let mut single = DatabaseConfig {
        pool_max: 1,
        shared: None,
        ..cfg.clone()
    };
    // A migration may rewrite a large table: no statement timeout here.
    single.pg.options("-c statement_timeout=0");
    let pool = new_pool(&single)?;
    let mut client = pool
        .get()
        .await
        .context("connecting to PostgreSQL to migrate")?;
    crm_domain::migrations::run(&mut client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_without_a_ca_bundle_fails_naming_pgsslrootcert() {
        let cfg = DatabaseConfig::from_url("postgres://u@h/db?sslmode=require", 1).unwrap();
        assert_eq!(build_pool(&cfg).unwrap_err().name, "PGSSLROOTCERT");
    }

    #[test]
    fn plain_urls_build_a_lazy_pool_without_connecting() {
        let cfg =
            DatabaseConfig::from_url("postgres://u@192.0.2.1:1/db?sslmode=disable", 2).unwrap();
        let pool = build_pool(&cfg).unwrap();
        assert_eq!(pool.status().size, 0);
    }
}
