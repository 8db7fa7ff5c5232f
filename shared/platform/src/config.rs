//! Configuration, typed and read once per cold start. A missing or malformed
//! variable fails start-up naming the variable.

use crm_domain::{Secret, signature::Verifier};
use std::{collections::HashMap, fmt};

#[derive(Debug, thiserror::Error)]
#[error("configuration {name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

fn err(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A source of variables: the process environment, or a map in tests.
#[derive(Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// These variables with `overrides` on top: a key in both takes the
    /// override's value (a secret's keys win over the process environment).
    pub fn overlaid(mut self, overrides: impl IntoIterator<Item = (String, String)>) -> Self {
        self.0.extend(overrides);
        self
    }

    /// Unset and empty are the same: absent.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or_else(|| err(name, "is required"))
    }

    pub fn secret(&self, name: &str) -> Result<Secret, ConfigError> {
        Secret::new(self.required(name)?).ok_or_else(|| err(name, "is required"))
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
            Some(_) => Err(err(name, "must be true or false")),
        }
    }

    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| err(name, "is not a valid number")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Production,
    Staging,
    Development,
    Test,
}

/// Signing keys (JWT, unsubscribe links) shorter than this are refused in
/// every environment but `test` (docs/security.md).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

impl AppEnv {
    /// `DEV_SIGNATURE_BYPASS` is honoured only here.
    pub fn allows_signature_bypass(self) -> bool {
        matches!(self, Self::Development | Self::Test)
    }

    /// Whether a signing key must be at least [`MIN_SIGNING_KEY_BYTES`] long.
    pub fn enforces_key_length(self) -> bool {
        self != Self::Test
    }

    /// A signing key (`JWT_SECRET`, `UNSUBSCRIBE_SECRET`): required, and at
    /// least [`MIN_SIGNING_KEY_BYTES`] long unless `APP_ENV=test`.
    pub fn signing_key(self, env: &Env, name: &str) -> Result<Secret, ConfigError> {
        let secret = env.secret(name)?;
        if self.enforces_key_length() && secret.expose().len() < MIN_SIGNING_KEY_BYTES {
            return Err(err(
                name,
                format!(
                    "must be at least {MIN_SIGNING_KEY_BYTES} bytes (only APP_ENV=test accepts shorter)"
                ),
            ));
        }
        Ok(secret)
    }

    /// Reads `APP_ENV` alone (unset: production).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::parse(env)
    }

    fn parse(env: &Env) -> Result<Self, ConfigError> {
        // Unset means production: the safe default for anything deployed.
        match env
            .optional("APP_ENV")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("production") | Some("prod") => Ok(Self::Production),
            Some("staging") => Ok(Self::Staging),
            Some("development") | Some("dev") | Some("local") => Ok(Self::Development),
            Some("test") => Ok(Self::Test),
            Some(_) => Err(err(
                "APP_ENV",
                "must be production, staging, development or test",
            )),
        }
    }
}

/// How to reach PostgreSQL: `DATABASE_URL`, or the `PG_*` set.
#[derive(Clone)]
pub struct DatabaseConfig {
    pub pg: tokio_postgres::Config,
    /// CA bundle for TLS to RDS (its CA is not in the public roots).
    pub root_cert_path: Option<String>,
    pub pool_max: usize,
    /// Server-side bound on one statement (`PG_STATEMENT_TIMEOUT_MS`,
    /// default 10 000; 0 = none): a runaway query ends instead of holding
    /// its connection.
    pub statement_timeout: std::time::Duration,
    /// Idle connections are closed after this (`PG_IDLE_TIMEOUT_SECS`,
    /// default 60): a quiet process gives its share of the database back.
    pub idle_timeout: std::time::Duration,
    /// A pool every function of this process uses (the local runner's one
    /// shared pool); `None` builds a pool per call of `build_pool`.
    pub shared: Option<deadpool_postgres::Pool>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("hosts", &self.pg.get_hosts().len())
            .field("dbname", &self.pg.get_dbname())
            .field("ssl_mode", &self.pg.get_ssl_mode())
            .field("password", &"***")
            .field("pool_max", &self.pool_max)
            .field("statement_timeout", &self.statement_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl DatabaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let pg = match env.optional("DATABASE_URL") {
            Some(url) => normalise_sslmode(url)
                .parse::<tokio_postgres::Config>()
                .map_err(|_| err("DATABASE_URL", "is not a valid PostgreSQL URL"))?,
            None => {
                let mut pg = tokio_postgres::Config::new();
                pg.host(
                    env.required("PG_HOST")
                        .map_err(|_| err("DATABASE_URL", "or PG_HOST is required"))?,
                );
                pg.port(env.parse("PG_PORT", 5432u16)?);
                pg.dbname(env.required("PG_DATABASE")?);
                pg.user(env.required("PG_USER")?);
                if let Some(pass) = env.optional("PG_PASSWORD") {
                    pg.password(pass);
                }
                if let Some(mode) = env.optional("PG_SSLMODE") {
                    pg.ssl_mode(match mode {
                        "disable" => tokio_postgres::config::SslMode::Disable,
                        "prefer" => tokio_postgres::config::SslMode::Prefer,
                        "require" => tokio_postgres::config::SslMode::Require,
                        _ => return Err(err("PG_SSLMODE", "must be disable, prefer or require")),
                    });
                }
                pg
            }
        };
        let mut pg = match env.optional("DATABASE_HOST") {
            Some(host) => with_host(&pg, host.trim()),
            None => pg,
        };
        pg.application_name("crm-hub");
        pg.connect_timeout(std::time::Duration::from_secs(5));
        // A peer that vanished (failover, a dead NAT entry) is noticed in
        // about 30 s instead of the kernel's two hours, and unacknowledged
        // writes give up after 30 s.
        pg.keepalives(true);
        pg.keepalives_idle(std::time::Duration::from_secs(15));
        pg.keepalives_interval(std::time::Duration::from_secs(5));
        pg.keepalives_retries(3);
        pg.tcp_user_timeout(std::time::Duration::from_secs(30));
        let statement_ms = env.parse("PG_STATEMENT_TIMEOUT_MS", 10_000u64)?;
        // Sent at connect as a startup option; a session may still raise it
        // (`set local statement_timeout`) for a known long statement.
        pg.options(format!("-c statement_timeout={statement_ms}"));
        let pool_max = env.parse("PG_POOL_MAX", 2usize)?;
        if pool_max == 0 {
            return Err(err("PG_POOL_MAX", "must be at least 1"));
        }
        let idle_secs = env.parse("PG_IDLE_TIMEOUT_SECS", 60u64)?;
        if idle_secs == 0 {
            return Err(err("PG_IDLE_TIMEOUT_SECS", "must be at least 1"));
        }
        Ok(Self {
            pg,
            root_cert_path: env.optional("PGSSLROOTCERT").map(str::to_owned),
            pool_max,
            statement_timeout: std::time::Duration::from_millis(statement_ms),
            idle_timeout: std::time::Duration::from_secs(idle_secs),
            shared: None,
        })
    }

    pub fn from_url(url: &str, pool_max: usize) -> Result<Self, ConfigError> {
        Self::from_env(&Env::from_pairs([
            ("DATABASE_URL", url),
            ("PG_POOL_MAX", &pool_max.to_string()),
        ]))
    }
}

/// The same connection settings against another host: `DATABASE_HOST`
/// (the stack's RDS Proxy endpoint, when it has one) replaces the host of
/// the secret's `DATABASE_URL`, so the secret need not change when a proxy
/// is put in front of the database.
fn with_host(pg: &tokio_postgres::Config, host: &str) -> tokio_postgres::Config {
    let mut out = tokio_postgres::Config::new();
    out.host(host);
    if let Some(port) = pg.get_ports().first() {
        out.port(*port);
    }
    if let Some(user) = pg.get_user() {
        out.user(user);
    }
    if let Some(password) = pg.get_password() {
        out.password(password);
    }
    if let Some(dbname) = pg.get_dbname() {
        out.dbname(dbname);
    }
    if let Some(options) = pg.get_options() {
        out.options(options);
    }
    out.ssl_mode(pg.get_ssl_mode());
    out
}

/// `LOG_LEVEL` is a tracing filter (`info`, `debug`, `warn,crm_domain=debug`).
fn log_level(env: &Env) -> Result<String, ConfigError> {
    let level = env
        .optional("LOG_LEVEL")
        .unwrap_or("info")
        .trim()
        .to_string();
    tracing_subscriber::EnvFilter::try_new(&level).map_err(|_| {
        err(
            "LOG_LEVEL",
            "is not a valid log filter (e.g. info, debug, warn)",
        )
    })?;
    Ok(level)
}

/// tokio-postgres knows `disable|prefer|require`; libpq's `verify-ca` and
/// `verify-full` (what RDS documents) map to `require`, which here always
/// verifies the chain and the host name with rustls.
fn normalise_sslmode(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}

/// Settings every function shares.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub app_env: AppEnv,
    pub log_level: String,
    pub dev_signature_bypass: bool,
    pub database: DatabaseConfig,
}

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let app_env = AppEnv::parse(env)?;
        let dev_signature_bypass = env.bool("DEV_SIGNATURE_BYPASS", false)?;
        if dev_signature_bypass && !app_env.allows_signature_bypass() {
            return Err(err(
                "DEV_SIGNATURE_BYPASS",
                "is accepted only with APP_ENV=development or test",
            ));
        }
        Ok(Self {
            app_env,
            log_level: log_level(env)?,
            dev_signature_bypass,
            database: DatabaseConfig::from_env(env)?,
        })
    }

    /// The verifier for a webhook source: the secret named, or the bypass
    /// (which makes the secret optional and says so loudly).
    pub fn verifier(&self, env: &Env, secret_name: &str) -> Result<Verifier, ConfigError> {
        if self.dev_signature_bypass {
            tracing::warn!(
                secret = secret_name,
                app_env = ?self.app_env,
                "DEV_SIGNATURE_BYPASS is ON: webhook signatures are NOT checked. Never use this outside development."
            );
            return Ok(Verifier::Bypass);
        }
        Ok(Verifier::Secret(env.secret(secret_name)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_is_refused_in_production_and_when_app_env_is_unset() {
        for pairs in [
            vec![
                ("DATABASE_URL", "postgres://u@h/db"),
                ("DEV_SIGNATURE_BYPASS", "true"),
                ("APP_ENV", "production"),
            ],
            vec![
                ("DATABASE_URL", "postgres://u@h/db"),
                ("DEV_SIGNATURE_BYPASS", "true"),
            ],
        ] {
            let e = CommonConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(e.name, "DEV_SIGNATURE_BYPASS");
        }
        let ok = CommonConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DEV_SIGNATURE_BYPASS", "true"),
            ("APP_ENV", "development"),
        ]))
        .unwrap();
        assert!(ok.dev_signature_bypass);
    }

    #[test]
    fn bypass_is_refused_in_staging_and_accepted_only_in_development_and_test() {
        for (app_env, accepted) in [
            ("staging", false),
            ("production", false),
            ("development", true),
            ("test", true),
        ] {
            let got = CommonConfig::from_env(&Env::from_pairs([
                ("DATABASE_URL", "postgres://u@h/db"),
                ("DEV_SIGNATURE_BYPASS", "true"),
                ("APP_ENV", app_env),
            ]));
            match got {
                Ok(c) => assert!(accepted && c.dev_signature_bypass, "{app_env}"),
                Err(e) => assert!(!accepted && e.name == "DEV_SIGNATURE_BYPASS", "{app_env}"),
            }
        }
    }

    #[test]
    fn signing_keys_are_long_everywhere_but_test() {
        let short = Env::from_pairs([("JWT_SECRET", "short-secret")]);
        let long_key = "k".repeat(MIN_SIGNING_KEY_BYTES);
        let long = Env::from_pairs([("JWT_SECRET", long_key.as_str())]);
        for app_env in [AppEnv::Production, AppEnv::Staging, AppEnv::Development] {
            assert_eq!(
                app_env.signing_key(&short, "JWT_SECRET").unwrap_err().name,
                "JWT_SECRET",
                "{app_env:?}"
            );
            assert!(app_env.signing_key(&long, "JWT_SECRET").is_ok());
        }
        assert!(AppEnv::Test.signing_key(&short, "JWT_SECRET").is_ok());
        assert!(
            AppEnv::Test
                .signing_key(&Env::default(), "JWT_SECRET")
                .is_err()
        );
    }

    #[test]
    fn malformed_values_fail_with_their_name() {
        let e = CommonConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DEV_SIGNATURE_BYPASS", "maybe"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "DEV_SIGNATURE_BYPASS");
        let e = CommonConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://u@h/db"),
            ("PG_POOL_MAX", "lots"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "PG_POOL_MAX");
        let e = CommonConfig::from_env(&Env::from_pairs([("APP_ENV", "moon")])).unwrap_err();
        assert_eq!(e.name, "APP_ENV");
    }

    #[test]
    fn a_bad_log_level_fails_naming_it() {
        let e = CommonConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://u@h/db"),
            ("LOG_LEVEL", "[[loud"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "LOG_LEVEL");
        let ok = CommonConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://u@h/db"),
            ("LOG_LEVEL", "warn,crm_domain=debug"),
        ]))
        .unwrap();
        assert_eq!(ok.log_level, "warn,crm_domain=debug");
    }

    #[test]
    fn rds_style_sslmode_verify_full_is_accepted_as_verified_tls() {
        let c = DatabaseConfig::from_url("postgres://u@h/db?sslmode=verify-full", 1).unwrap();
        assert_eq!(
            c.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn database_comes_from_url_or_the_pg_set() {
        let e = CommonConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(e.name, "DATABASE_URL");
        let c = DatabaseConfig::from_env(&Env::from_pairs([
            ("PG_HOST", "db.internal"),
            ("PG_DATABASE", "crm"),
            ("PG_USER", "crm"),
            ("PG_PASSWORD", "s3cret"),
        ]))
        .unwrap();
        assert_eq!(c.pg.get_dbname(), Some("crm"));
        assert_eq!(c.pg.get_ports(), &[5432]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = DatabaseConfig::from_env(&Env::from_pairs([("PG_HOST", "h"), ("PG_USER", "u")]))
            .unwrap_err();
        assert_eq!(e.name, "PG_DATABASE");
    }

    #[test]
    fn database_host_replaces_the_url_host_and_keeps_the_rest() {
        let c = DatabaseConfig::from_env(&Env::from_pairs([
            (
                "DATABASE_URL",
                "postgres://crm:pw@db.internal:6432/crm?sslmode=require",
            ),
            (
                "DATABASE_HOST",
                "crm-proxy.proxy-abc.us-east-1.rds.amazonaws.com",
            ),
        ]))
        .unwrap();
        assert_eq!(
            c.pg.get_hosts(),
            &[tokio_postgres::config::Host::Tcp(
                "crm-proxy.proxy-abc.us-east-1.rds.amazonaws.com".into()
            )]
        );
        assert_eq!(c.pg.get_ports(), &[6432]);
        assert_eq!(c.pg.get_user(), Some("crm"));
        assert_eq!(c.pg.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.pg.get_dbname(), Some("crm"));
        assert_eq!(
            c.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn missing_secret_fails_unless_bypassed() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://u@h/db"), ("APP_ENV", "test")]);
        let common = CommonConfig::from_env(&env).unwrap();
        assert_eq!(
            common
                .verifier(&env, "HMAC_SHARED_SECRET_INSTANTLY")
                .unwrap_err()
                .name,
            "HMAC_SHARED_SECRET_INSTANTLY"
        );
    }
}
