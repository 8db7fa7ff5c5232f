//! The enrichment worker's configuration, typed and read once per cold start.
//! Each provider is configured completely or not at all; not at all means
//! its clearly labelled local sink, which production refuses.

use crm_domain::Secret;
use crm_platform::config::{AppEnv, ConfigError, Env};
use std::{fmt, time::Duration};

fn err(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Diretrix: HTTP Basic credentials.
#[derive(Clone)]
pub struct DiretrixConfig {
    pub base_url: reqwest::Url,
    pub user: String,
    pub pass: Secret,
}

/// The Work API: a token in the query string (so its URLs are never logged).
#[derive(Clone)]
pub struct WorkConfig {
    pub base_url: reqwest::Url,
    pub token: Secret,
}

/// Contact2Sale: a bearer token.
#[derive(Clone)]
pub struct C2sConfig {
    pub base_url: reqwest::Url,
    pub token: Secret,
}

macro_rules! origin_only_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.base_url.origin().ascii_serialization())
            }
        }
    )*};
}
origin_only_debug!(DiretrixConfig, WorkConfig, C2sConfig);

/// Per-API call settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallConfig {
    pub timeout: Duration,
    /// Minimum spacing between two calls from this process.
    pub min_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct EnrichmentConfig {
    /// `None`: local sink (every lookup answers "not found (local sink)").
    pub diretrix: Option<DiretrixConfig>,
    pub work: Option<WorkConfig>,
    /// `None`: local sink (the note is recorded, not posted).
    pub c2s: Option<C2sConfig>,
    pub diretrix_call: CallConfig,
    pub work_call: CallConfig,
    pub c2s_call: CallConfig,
    /// Receives before SQS dead-letters the message (the queue's maxReceiveCount).
    pub max_attempts: u32,
    /// How long a paid lookup's answer is reused by every worker.
    pub dedup_window: Duration,
}

fn url(env: &Env, name: &str, default: Option<&str>) -> Result<Option<reqwest::Url>, ConfigError> {
    let Some(raw) = env.optional(name).or(default) else {
        return Ok(None);
    };
    let u = reqwest::Url::parse(raw.trim()).map_err(|_| err(name, "is not a URL"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || u.cannot_be_a_base() {
        return Err(err(name, "must be an http(s) URL"));
    }
    if u.query().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err(err(name, "must not carry a query or credentials"));
    }
    Ok(Some(u))
}

fn millis(
    env: &Env,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let v: u64 = env.parse(name, default)?;
    if !range.contains(&v) {
        return Err(err(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(Duration::from_millis(v))
}

impl EnrichmentConfig {
    pub fn from_env(env: &Env, app_env: AppEnv) -> Result<Self, ConfigError> {
        let production = app_env == AppEnv::Production;
        let diretrix = match (
            env.optional("DIRETRIX_BASE_URL"),
            env.optional("DIRETRIX_USER"),
            env.optional("DIRETRIX_PASS"),
        ) {
            (None, None, None) => None,
            _ => Some(DiretrixConfig {
                base_url: url(env, "DIRETRIX_BASE_URL", None)?.ok_or_else(|| {
                    err(
                        "DIRETRIX_BASE_URL",
                        "is required with DIRETRIX_USER/DIRETRIX_PASS",
                    )
                })?,
                user: env.required("DIRETRIX_USER")?.trim().to_string(),
                pass: env.secret("DIRETRIX_PASS")?,
            }),
        };
        let work = match env.optional("WORK_API") {
            None => None,
            Some(_) => Some(WorkConfig {
                base_url: url(
                    env,
                    "WORK_API_BASE_URL",
                    Some("https://completa.workbuscas.com"),
                )?
                .expect("defaulted"),
                token: env.secret("WORK_API")?,
            }),
        };
        let c2s = match (env.optional("C2S_BASE_URL"), env.optional("C2S_TOKEN")) {
            (None, None) => None,
            _ => Some(C2sConfig {
                base_url: url(env, "C2S_BASE_URL", None)?
                    .ok_or_else(|| err("C2S_BASE_URL", "is required with C2S_TOKEN"))?,
                token: env.secret("C2S_TOKEN")?,
            }),
        };
        if production {
            for (missing, name) in [
                (diretrix.is_none(), "DIRETRIX_BASE_URL"),
                (work.is_none(), "WORK_API"),
                (c2s.is_none(), "C2S_BASE_URL"),
            ] {
                if missing {
                    return Err(err(
                        name,
                        "is required when APP_ENV=production (the local sink is for development)",
                    ));
                }
            }
        }
        let max_attempts: u32 = env.parse("ENRICHMENT_MAX_ATTEMPTS", 5)?;
        if !(1..=1000).contains(&max_attempts) {
            return Err(err("ENRICHMENT_MAX_ATTEMPTS", "must be between 1 and 1000"));
        }
        let window: u64 = env.parse("LOOKUP_DEDUP_WINDOW_SECS", 86_400)?;
        if !(1..=90 * 86_400).contains(&window) {
            return Err(err(
                "LOOKUP_DEDUP_WINDOW_SECS",
                "must be between 1 and 7776000",
            ));
        }
        Ok(Self {
            diretrix,
            work,
            c2s,
            diretrix_call: CallConfig {
                timeout: millis(env, "DIRETRIX_TIMEOUT_MS", 10_000, 100..=120_000)?,
                min_interval: millis(env, "DIRETRIX_MIN_INTERVAL_MS", 200, 0..=60_000)?,
            },
            work_call: CallConfig {
                timeout: millis(env, "WORK_API_TIMEOUT_MS", 45_000, 100..=300_000)?,
                min_interval: millis(env, "WORK_API_MIN_INTERVAL_MS", 1_000, 0..=60_000)?,
            },
            c2s_call: CallConfig {
                timeout: millis(env, "C2S_TIMEOUT_MS", 15_000, 100..=120_000)?,
                min_interval: millis(env, "C2S_MIN_INTERVAL_MS", 100, 0..=60_000)?,
            },
            max_attempts,
            dedup_window: Duration::from_secs(window),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DIRETRIX_BASE_URL", "https://api.diretrix.example/v1"),
            ("DIRETRIX_USER", "crm"),
            ("DIRETRIX_PASS", "d1r-s3cret"),
            ("WORK_API", "w0rk-t0ken"),
            ("C2S_BASE_URL", "https://api.contact2sale.com"),
            ("C2S_TOKEN", "c2s-t0ken"),
        ]
    }

    #[test]
    fn defaults_and_secrets_stay_hidden() {
        let c = EnrichmentConfig::from_env(&Env::from_pairs(full()), AppEnv::Production).unwrap();
        assert_eq!(
            c.work.as_ref().unwrap().base_url.as_str(),
            "https://completa.workbuscas.com/"
        );
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.dedup_window, Duration::from_secs(86_400));
        assert_eq!(c.work_call.timeout, Duration::from_secs(45));
        let shown = format!("{c:?}");
        for secret in ["d1r-s3cret", "w0rk-t0ken", "c2s-t0ken"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn no_credentials_is_the_local_sink_outside_production_only() {
        let c = EnrichmentConfig::from_env(&Env::default(), AppEnv::Development).unwrap();
        assert!(c.diretrix.is_none() && c.work.is_none() && c.c2s.is_none());
        let e = EnrichmentConfig::from_env(&Env::default(), AppEnv::Production).unwrap_err();
        assert_eq!(e.name, "DIRETRIX_BASE_URL");
    }

    #[test]
    fn bad_values_fail_naming_the_variable() {
        for (name, value) in [
            ("DIRETRIX_BASE_URL", "ftp://x"),
            ("C2S_BASE_URL", "https://api.example.com/?token=x"),
            ("ENRICHMENT_MAX_ATTEMPTS", "0"),
            ("LOOKUP_DEDUP_WINDOW_SECS", "soon"),
            ("WORK_API_TIMEOUT_MS", "5"),
        ] {
            let mut pairs = full();
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, value));
            let e = EnrichmentConfig::from_env(&Env::from_pairs(pairs), AppEnv::Test).unwrap_err();
            assert_eq!(e.name, name, "{value}");
        }
        let e =
            EnrichmentConfig::from_env(&Env::from_pairs([("DIRETRIX_USER", "x")]), AppEnv::Test)
                .unwrap_err();
        assert_eq!(e.name, "DIRETRIX_BASE_URL");
    }
}
