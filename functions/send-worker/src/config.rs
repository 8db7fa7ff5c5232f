//! The send worker's configuration, typed and read once per cold start.

use crm_domain::webhooks_out::SigningKey;
use crm_platform::config::{ConfigError, Env};
use sha2::{Digest, Sha256};
use std::{fmt, time::Duration};

const URLS: &str = "OUTBOUND_WEBHOOK_URLS";
const SECRET: &str = "OUTBOUND_WEBHOOK_SECRET";
const MAX_ATTEMPTS: &str = "SEND_MAX_ATTEMPTS";
const TIMEOUT_MS: &str = "OUTBOUND_WEBHOOK_TIMEOUT_MS";

pub(crate) fn err(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        reason: reason.into(),
    }
}

/// One outbound webhook URL. `Debug` shows only its origin: the path or
/// query may carry a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub url: reqwest::Url,
    /// SHA-256 hex of the URL: the delivery key stored instead of the URL.
    pub key: String,
    /// `scheme://host[:port]`, safe to store and log.
    pub origin: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.origin)
    }
}

impl Target {
    pub fn parse(raw: &str) -> Option<Self> {
        let url = reqwest::Url::parse(raw.trim()).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return None;
        }
        let key = hex::encode(Sha256::digest(url.as_str().as_bytes()));
        let origin = url.origin().ascii_serialization();
        Some(Self { url, key, origin })
    }
}

#[derive(Debug, Clone)]
pub struct SendConfig {
    pub targets: Vec<Target>,
    /// Present whenever `targets` is not empty.
    pub key: Option<SigningKey>,
    /// Attempts per delivery before it is dead; equals the queue's maxReceiveCount.
    pub max_attempts: u32,
    /// Whole-request timeout of one attempt.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Twilio's Messages API for `send_message` jobs; `None`: the local sink.
    pub twilio: Option<crate::twilio::TwilioConfig>,
    /// Campaign deliveries: unsubscribe links, the webhook channel, SES.
    pub campaigns: crate::campaigns::CampaignConfig,
}

impl SendConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut targets: Vec<Target> = Vec::new();
        let entries = env.optional(URLS).unwrap_or_default().split(',');
        for (i, raw) in entries.filter(|s| !s.trim().is_empty()).enumerate() {
            // The URL is never echoed back: it may carry a token.
            let target = Target::parse(raw)
                .ok_or_else(|| err(URLS, format!("entry {} is not an http(s) URL", i + 1)))?;
            if let Some(j) = targets.iter().position(|t| t.key == target.key) {
                return Err(err(
                    URLS,
                    format!("entry {} repeats entry {}", i + 1, j + 1),
                ));
            }
            targets.push(target);
        }
        let key = match (targets.is_empty(), env.optional(SECRET)) {
            (_, Some(secret)) => {
                Some(SigningKey::parse(secret).map_err(|e| err(SECRET, e.to_string()))?)
            }
            (false, None) => {
                return Err(err(SECRET, "is required when OUTBOUND_WEBHOOK_URLS is set"));
            }
            (true, None) => None,
        };
        let max_attempts: u32 = env.parse(MAX_ATTEMPTS, 5)?;
        // SQS allows a maxReceiveCount of 1 to 1000.
        if !(1..=1000).contains(&max_attempts) {
            return Err(err(MAX_ATTEMPTS, "must be between 1 and 1000"));
        }
        let timeout_ms: u64 = env.parse(TIMEOUT_MS, 10_000)?;
        if !(100..=120_000).contains(&timeout_ms) {
            return Err(err(TIMEOUT_MS, "must be between 100 and 120000"));
        }
        let timeout = Duration::from_millis(timeout_ms);
        Ok(Self {
            targets,
            key,
            max_attempts,
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(5)),
            twilio: crate::twilio::TwilioConfig::from_env(env)?,
            campaigns: crate::campaigns::CampaignConfig::from_env(env, timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn load(pairs: &[(&str, &str)]) -> Result<SendConfig, ConfigError> {
        SendConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_with_no_urls_need_no_secret() {
        let c = load(&[]).unwrap();
        assert!(c.targets.is_empty() && c.key.is_none());
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn urls_are_parsed_hashed_and_shown_by_origin_only() {
        let c = load(&[
            (
                URLS,
                " https://n8n.example.com/webhook/abc?token=t0p , http://127.0.0.1:9000/hook,",
            ),
            (SECRET, KEY),
        ])
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[0].origin, "https://n8n.example.com");
        assert_eq!(c.targets[1].origin, "http://127.0.0.1:9000");
        assert_eq!(c.targets[0].key.len(), 64);
        let shown = format!("{c:?}");
        assert!(!shown.contains("t0p") && !shown.contains("abc") && !shown.contains("MfKQ"));
    }

    #[test]
    fn bad_values_fail_naming_the_variable_without_echoing_it() {
        let e = load(&[
            (URLS, "https://ok.example.com,ftp://x.example.com/?k=s3cr3t"),
            (SECRET, KEY),
        ])
        .unwrap_err();
        assert_eq!(e.name, URLS);
        assert!(e.reason.contains("entry 2") && !e.reason.contains("s3cr3t"));
        let e = load(&[
            (URLS, "https://a.example.com/h,https://a.example.com/h"),
            (SECRET, KEY),
        ])
        .unwrap_err();
        assert_eq!(
            (e.name.as_str(), e.reason.as_str()),
            (URLS, "entry 2 repeats entry 1")
        );
        assert_eq!(
            load(&[(URLS, "https://a.example.com")]).unwrap_err().name,
            SECRET
        );
        assert_eq!(
            load(&[
                (URLS, "https://a.example.com"),
                (SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            ])
            .unwrap_err()
            .name,
            SECRET
        );
        assert_eq!(load(&[(MAX_ATTEMPTS, "0")]).unwrap_err().name, MAX_ATTEMPTS);
        assert_eq!(
            load(&[(MAX_ATTEMPTS, "many")]).unwrap_err().name,
            MAX_ATTEMPTS
        );
        assert_eq!(load(&[(TIMEOUT_MS, "5")]).unwrap_err().name, TIMEOUT_MS);
    }
}
