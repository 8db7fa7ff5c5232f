//! The campaign worker's configuration, typed and read once per cold start.

use crm_platform::config::{ConfigError, Env};
use std::time::Duration;

fn err(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// `CAMPAIGN_RUN_BUDGET_SECS` (600): how long one invocation releases
    /// batches before it hands over to its continuation. Less than the
    /// function's timeout; the Lambda's own deadline also caps it.
    pub budget: Duration,
    /// `CAMPAIGN_BATCH_INTERVAL_MS` (1000): a batch is `rate × interval` rows.
    pub batch_interval: Duration,
    /// `CAMPAIGN_ERROR_THRESHOLD_PCT` (20): more than this share of failures…
    pub error_threshold_pct: u32,
    /// `CAMPAIGN_ERROR_WINDOW` (50): …among the last this many finished rows
    /// (and only once that many have finished) pauses the campaign.
    pub error_window: i64,
    /// `CAMPAIGN_INFLIGHT_TIMEOUT_SECS` (3600): when nothing is left to
    /// release and the rows still `sending` were all released longer ago than
    /// this, the campaign is paused with the reason instead of waited on forever.
    pub inflight_timeout: Duration,
    /// `CAMPAIGN_RECEIVE_MAX` (5): receives of one RunCampaign before an error
    /// is given up on (SQS's redrive decides in AWS; the local runner uses it).
    pub max_attempts: u32,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(600),
            batch_interval: Duration::from_millis(1000),
            error_threshold_pct: 20,
            error_window: 50,
            inflight_timeout: Duration::from_secs(3600),
            max_attempts: 5,
        }
    }
}

impl RunnerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let budget: u64 = env.parse("CAMPAIGN_RUN_BUDGET_SECS", d.budget.as_secs())?;
        if !(5..=3600).contains(&budget) {
            return Err(err("CAMPAIGN_RUN_BUDGET_SECS", "must be 5..=3600 seconds"));
        }
        let interval: u64 = env.parse(
            "CAMPAIGN_BATCH_INTERVAL_MS",
            d.batch_interval.as_millis() as u64,
        )?;
        if !(10..=60_000).contains(&interval) {
            return Err(err("CAMPAIGN_BATCH_INTERVAL_MS", "must be 10..=60000 ms"));
        }
        let pct: u32 = env.parse("CAMPAIGN_ERROR_THRESHOLD_PCT", d.error_threshold_pct)?;
        if pct > 100 {
            return Err(err("CAMPAIGN_ERROR_THRESHOLD_PCT", "must be 0..=100"));
        }
        let window: i64 = env.parse("CAMPAIGN_ERROR_WINDOW", d.error_window)?;
        if !(1..=100_000).contains(&window) {
            return Err(err("CAMPAIGN_ERROR_WINDOW", "must be 1..=100000"));
        }
        let inflight: u64 = env.parse(
            "CAMPAIGN_INFLIGHT_TIMEOUT_SECS",
            d.inflight_timeout.as_secs(),
        )?;
        if inflight == 0 {
            return Err(err("CAMPAIGN_INFLIGHT_TIMEOUT_SECS", "must be positive"));
        }
        let max_attempts: u32 = env.parse("CAMPAIGN_RECEIVE_MAX", d.max_attempts)?;
        Ok(Self {
            budget: Duration::from_secs(budget),
            batch_interval: Duration::from_millis(interval),
            error_threshold_pct: pct,
            error_window: window,
            inflight_timeout: Duration::from_secs(inflight),
            max_attempts: max_attempts.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        assert_eq!(
            RunnerConfig::from_env(&Env::default()).unwrap(),
            RunnerConfig::default()
        );
    }

    #[test]
    fn settings_are_read_and_bounded() {
        let env = Env::from_pairs([
            ("CAMPAIGN_RUN_BUDGET_SECS", "120"),
            ("CAMPAIGN_BATCH_INTERVAL_MS", "250"),
            ("CAMPAIGN_ERROR_THRESHOLD_PCT", "10"),
            ("CAMPAIGN_ERROR_WINDOW", "20"),
        ]);
        let c = RunnerConfig::from_env(&env).unwrap();
        assert_eq!(c.budget, Duration::from_secs(120));
        assert_eq!(c.batch_interval, Duration::from_millis(250));
        assert_eq!((c.error_threshold_pct, c.error_window), (10, 20));
        let bad = Env::from_pairs([("CAMPAIGN_ERROR_THRESHOLD_PCT", "101")]);
        assert_eq!(
            RunnerConfig::from_env(&bad).unwrap_err().name,
            "CAMPAIGN_ERROR_THRESHOLD_PCT"
        );
        let bad = Env::from_pairs([("CAMPAIGN_BATCH_INTERVAL_MS", "soon")]);
        assert_eq!(
            RunnerConfig::from_env(&bad).unwrap_err().name,
            "CAMPAIGN_BATCH_INTERVAL_MS"
        );
    }
}
