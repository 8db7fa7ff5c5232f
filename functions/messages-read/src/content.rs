//! Twilio's Content API (`GET /v1/Content`): the templates of the account,
//! page by page through `meta.next_page_url`. Basic auth with the account
//! SID and auth token; a next page is followed only on the configured
//! origin, so the credentials never go anywhere else.

use crm_domain::{Secret, crm::ApiError, inbox::templates::ContentTemplate};
use crm_platform::config::{ConfigError, Env};
use serde_json::Value;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://content.twilio.com";
/// Templates asked for per page (Twilio's default is 50, maximum 1,000).
const PAGE_SIZE: u32 = 100;
/// A runaway `next_page_url` chain stops here (50,000 templates).
const MAX_PAGES: usize = 500;

#[derive(Debug)]
pub struct ContentClient {
    http: reqwest::Client,
    base: reqwest::Url,
    account_sid: String,
    auth_token: Secret,
}

impl ContentClient {
    /// `TWILIO_ACCOUNT_SID` + `TWILIO_AUTH_TOKEN` (both, or neither: then
    /// `None` and the sync answers 503), `TWILIO_CONTENT_API_BASE_URL`.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let sid = env.optional("TWILIO_ACCOUNT_SID").map(str::trim);
        let token = env.optional("TWILIO_AUTH_TOKEN").and_then(Secret::new);
        let (sid, token) = match (sid.filter(|s| !s.is_empty()), token) {
            (Some(sid), Some(token)) => (sid, token),
            _ => return Ok(None),
        };
        let raw = env
            .optional("TWILIO_CONTENT_API_BASE_URL")
            .unwrap_or(DEFAULT_BASE_URL);
        let base = reqwest::Url::parse(raw.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ConfigError {
                name: "TWILIO_CONTENT_API_BASE_URL".into(),
                reason: "must be an http(s) URL".into(),
            })?;
        Ok(Some(Self::new(base, sid, token)))
    }

    pub fn new(base: reqwest::Url, account_sid: &str, auth_token: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client");
        Self {
            http,
            base,
            account_sid: account_sid.to_string(),
            auth_token,
        }
    }

    /// Every template of the account, all pages.
    pub async fn list(&self) -> Result<Vec<Value>, ApiError> {
        let mut url = self
            .base
            .join("/v1/Content")
            .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("content URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("PageSize", &PAGE_SIZE.to_string());
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.page(url.clone()).await?;
            if let Some(items) = page["contents"].as_array() {
                all.extend(items.iter().cloned());
            }
            match page["meta"]["next_page_url"].as_str() {
                Some(next) if !next.is_empty() => {
                    let next = reqwest::Url::parse(next)
                        .ok()
                        .filter(|n| n.origin() == self.base.origin())
                        .ok_or_else(|| {
                            ApiError::Unexpected(anyhow::anyhow!(
                                "Content API next_page_url is not on the configured origin"
                            ))
                        })?;
                    url = next;
                }
                _ => return Ok(all),
            }
        }
        Err(ApiError::Unexpected(anyhow::anyhow!(
            "Content API paging exceeded {MAX_PAGES} pages"
        )))
    }

    async fn page(&self, url: reqwest::Url) -> Result<Value, ApiError> {
        let resp = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                ApiError::Unavailable(anyhow::anyhow!(
                    "Content API request failed: {}",
                    e.without_url()
                ))
            })?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ApiError::Unavailable(anyhow::anyhow!(
                "Content API answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ApiError::Unexpected(anyhow::anyhow!(
                "Content API answered {status}"
            )));
        }
        resp.json().await.map_err(|e| {
            ApiError::Unexpected(anyhow::anyhow!(
                "Content API page is not JSON: {}",
                e.without_url()
            ))
        })
    }
}

/// A Content API item as a template: the text body of `twilio/text`, else
/// the `body` of the first other type that has one (quick-reply,
/// call-to-action, media, …). `None` for an item with no SID or no text.
pub fn template(item: &Value) -> Option<ContentTemplate> {
    let sid = item["sid"].as_str().filter(|s| s.starts_with("HX"))?;
    let types = item["types"].as_object()?;
    let body = types
        .get("twilio/text")
        .and_then(|t| t["body"].as_str())
        .or_else(|| types.values().find_map(|t| t["body"].as_str()))
        .filter(|b| !b.trim().is_empty())?;
    let name = item["friendly_name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(sid);
    Some(ContentTemplate {
        content_sid: sid.to_string(),
        name: name.to_string(),
        language: item["language"].as_str().map(str::to_string),
        // Content templates are what WhatsApp needs outside the 24-hour
        // window; an admin may re-label one `sms` (kept on later syncs).
        channel: "whatsapp",
        body: body.to_string(),
        variables: item
            .get("variables")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_body_wins_then_any_typed_body() {
        let t = template(&json!({"sid": "HX1", "friendly_name": "hello", "language": "pt_BR",
            "variables": {"1": "name"},
            "types": {"twilio/quick-reply": {"body": "Q {{1}}"}, "twilio/text": {"body": "Hi {{1}}"}}}))
        .unwrap();
        assert_eq!((t.body.as_str(), t.name.as_str()), ("Hi {{1}}", "hello"));
        assert_eq!(t.variables, json!({"1": "name"}));
        let t = template(&json!({"sid": "HX2", "types": {"twilio/quick-reply": {"body": "Q"}}}))
            .unwrap();
        assert_eq!((t.body.as_str(), t.name.as_str()), ("Q", "HX2"));
        assert!(
            template(&json!({"sid": "HX3", "types": {"twilio/card": {"title": "x"}}})).is_none()
        );
        assert!(template(&json!({"types": {"twilio/text": {"body": "x"}}})).is_none());
    }
}
