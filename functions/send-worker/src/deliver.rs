//! One HTTP attempt of one outbound webhook: sign, post, classify. Nothing
//! from the response but its status is read or kept.

use crate::config::{SendConfig, Target};
use crm_domain::webhooks_out::{AttemptOutcome, SigningKey};
use std::time::{Duration, Instant};

/// The one HTTP client of a cold start: timeouts from the configuration,
/// redirects not followed (a POST must not silently become a GET elsewhere).
pub fn client(config: &SendConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("crm-hub-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Posts `body` to `target`, signed for `msg_id` at the current time.
pub async fn attempt(
    http: &reqwest::Client,
    key: &SigningKey,
    target: &Target,
    msg_id: &str,
    body: &[u8],
) -> (AttemptOutcome, Duration) {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = key.sign(msg_id, timestamp, body);
    let started = Instant::now();
    let sent = http
        .post(target.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await;
    let outcome = match sent {
        // The body is not read: dropping the response closes or reuses the connection.
        Ok(resp) => AttemptOutcome::Status(resp.status().as_u16()),
        Err(e) if e.is_timeout() => AttemptOutcome::Timeout,
        Err(e) if e.is_connect() => AttemptOutcome::Connect,
        Err(_) => AttemptOutcome::Transport,
    };
    (outcome, started.elapsed())
}
