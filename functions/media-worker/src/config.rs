//! The media worker's configuration, typed and read once per cold start.

use crm_domain::Secret;
use crm_platform::config::{AppEnv, ConfigError, Env};
use std::{net::IpAddr, time::Duration};

const ALLOW_HOSTS: &str = "TWILIO_MEDIA_ALLOW_HOSTS";
const ALLOW_TYPES: &str = "MEDIA_ALLOW_TYPES";
const MAX_BYTES: &str = "MEDIA_MAX_BYTES";
const MAX_ATTEMPTS: &str = "MEDIA_MAX_ATTEMPTS";
const TIMEOUT_MS: &str = "MEDIA_FETCH_TIMEOUT_MS";

/// Twilio's media hosts: the REST API (`/Messages/MM…/Media/ME…`) and its
/// media CDN, where those URLs redirect. A leading dot means "any subdomain of".
pub const DEFAULT_HOSTS: &str = "api.twilio.com,.twiliocdn.com";

/// What WhatsApp and MMS carry that the CRM shows or plays.
pub const DEFAULT_TYPES: &str = "image/jpeg,image/png,image/webp,image/gif,\
audio/ogg,audio/mpeg,audio/amr,audio/mp4,video/mp4,video/3gpp,application/pdf";

fn err(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        reason: reason.into(),
    }
}

/// One allow-list entry: a host (exactly, or any subdomain of it) and the
/// port it must be reached on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower case, no trailing dot.
    pub host: String,
    pub subdomains: bool,
    pub port: u16,
}

impl AllowedHost {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        let (subdomains, rest) = match raw.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, raw.as_str()),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0)?),
            None => (rest, 443),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let valid = if host.parse::<IpAddr>().is_ok() {
            !subdomains
        } else {
            // A name: dotted labels, the last not numeric (that would be an IP in disguise).
            host.contains('.')
                && host.split('.').all(label_ok)
                && !host
                    .rsplit('.')
                    .next()
                    .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
        };
        valid.then(|| Self {
            host: host.to_string(),
            subdomains,
            port,
        })
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        port == self.port
            && if self.subdomains {
                host.strip_suffix(&self.host)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            } else {
                host == self.host
            }
    }

    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

/// Twilio's account credentials, sent as HTTP Basic auth to the media URL's
/// own host only. `Debug` hides the token.
#[derive(Clone)]
pub struct Credentials {
    pub account_sid: String,
    pub auth_token: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub credentials: Credentials,
    pub allow_hosts: Vec<AllowedHost>,
    /// `http` URLs (with an allow-listed `host:port`): never in production.
    pub allow_http: bool,
    /// Lower-case MIME types without parameters.
    pub allow_types: Vec<String>,
    pub max_bytes: u64,
    /// Receives before SQS dead-letters the message (the queue's maxReceiveCount).
    pub max_attempts: u32,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl MediaConfig {
    pub fn from_env(env: &Env, app_env: AppEnv) -> Result<Self, ConfigError> {
        let credentials = Credentials {
            account_sid: env.required("TWILIO_ACCOUNT_SID")?.trim().to_string(),
            auth_token: env.secret("TWILIO_AUTH_TOKEN")?,
        };
        let production = app_env == AppEnv::Production;
        let raw_hosts = env.optional(ALLOW_HOSTS).unwrap_or(DEFAULT_HOSTS);
        let mut allow_hosts = Vec::new();
        for (i, raw) in raw_hosts
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .enumerate()
        {
            let entry = AllowedHost::parse(raw).ok_or_else(|| {
                err(
                    ALLOW_HOSTS,
                    format!("entry {} is not a host[:port] or .domain", i + 1),
                )
            })?;
            if production && entry.is_ip() {
                return Err(err(
                    ALLOW_HOSTS,
                    format!("entry {} is an IP address: refused in production", i + 1),
                ));
            }
            allow_hosts.push(entry);
        }
        if allow_hosts.is_empty() {
            return Err(err(ALLOW_HOSTS, "must name at least one host"));
        }
        let allow_types: Vec<String> = env
            .optional(ALLOW_TYPES)
            .unwrap_or(DEFAULT_TYPES)
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        if allow_types.is_empty() || allow_types.iter().any(|t| !t.contains('/')) {
            return Err(err(ALLOW_TYPES, "must be a comma list of MIME types"));
        }
        let max_bytes: u64 = env.parse(MAX_BYTES, 16 * 1024 * 1024)?;
        if !(1..=100 * 1024 * 1024).contains(&max_bytes) {
            return Err(err(MAX_BYTES, "must be between 1 and 104857600"));
        }
        let max_attempts: u32 = env.parse(MAX_ATTEMPTS, 5)?;
        if !(1..=1000).contains(&max_attempts) {
            return Err(err(MAX_ATTEMPTS, "must be between 1 and 1000"));
        }
        let timeout_ms: u64 = env.parse(TIMEOUT_MS, 30_000)?;
        if !(100..=300_000).contains(&timeout_ms) {
            return Err(err(TIMEOUT_MS, "must be between 100 and 300000"));
        }
        let timeout = Duration::from_millis(timeout_ms);
        Ok(Self {
            credentials,
            allow_hosts,
            allow_http: !production,
            allow_types,
            max_bytes,
            max_attempts,
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(5)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)], app_env: AppEnv) -> Result<MediaConfig, ConfigError> {
        let mut all = vec![
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("TWILIO_AUTH_TOKEN", "t0ken"),
        ];
        all.extend_from_slice(pairs);
        MediaConfig::from_env(&Env::from_pairs(all), app_env)
    }

    #[test]
    fn defaults_allow_twilio_hosts_over_https_only_in_production() {
        let c = load(&[], AppEnv::Production).unwrap();
        assert!(!c.allow_http);
        assert_eq!(c.max_bytes, 16 * 1024 * 1024);
        assert_eq!(c.allow_types.len(), 11);
        assert!(
            c.allow_hosts
                .iter()
                .any(|h| h.matches("api.twilio.com", 443))
        );
        assert!(
            c.allow_hosts
                .iter()
                .any(|h| h.matches("media.twiliocdn.com", 443))
        );
        assert!(
            !c.allow_hosts
                .iter()
                .any(|h| h.matches("twiliocdn.com", 443))
        );
        assert!(
            !c.allow_hosts
                .iter()
                .any(|h| h.matches("api.twilio.com", 8443))
        );
        assert!(!format!("{c:?}").contains("t0ken"));
    }

    #[test]
    fn ip_entries_are_for_tests_and_never_for_production() {
        let c = load(&[(ALLOW_HOSTS, "127.0.0.1:8080")], AppEnv::Test).unwrap();
        assert!(c.allow_http && c.allow_hosts[0].matches("127.0.0.1", 8080));
        let e = load(&[(ALLOW_HOSTS, "127.0.0.1:8080")], AppEnv::Production).unwrap_err();
        assert_eq!(e.name, ALLOW_HOSTS);
    }

    #[test]
    fn bad_values_fail_naming_the_variable() {
        for (name, value) in [
            (ALLOW_HOSTS, "api.twilio.com,http://x"),
            (ALLOW_HOSTS, ".127.0.0.1"),
            (ALLOW_HOSTS, "localhost"),
            (ALLOW_TYPES, "jpeg"),
            (MAX_BYTES, "0"),
            (MAX_ATTEMPTS, "many"),
            (TIMEOUT_MS, "1"),
        ] {
            assert_eq!(
                load(&[(name, value)], AppEnv::Test).unwrap_err().name,
                name,
                "{value}"
            );
        }
        let e = MediaConfig::from_env(
            &Env::from_pairs([("TWILIO_ACCOUNT_SID", "AC1")]),
            AppEnv::Test,
        )
        .unwrap_err();
        assert_eq!(e.name, "TWILIO_AUTH_TOKEN");
    }
}
