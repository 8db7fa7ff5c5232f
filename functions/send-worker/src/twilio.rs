//! Twilio's Messages API, the outbound provider of `send_message` jobs:
//! `POST {TWILIO_API_BASE_URL}/2010-04-01/Accounts/{SID}/Messages.json`,
//! Basic auth (account SID, auth token), form-encoded. Builds the exact
//! request from a queued message and classifies the answer: taken (SID and
//! status), refused for good (4xx, with Twilio's error code turned into a
//! readable reason), not taken and worth retrying, or uncertain.
//!
//! The Messages API has no idempotency key, so only answers that prove
//! Twilio did not process the request are retried: 429 and 503 (documented
//! as never processed / temporarily unavailable) and connect-phase failures
//! (DNS, connection refused, connect timeout: nothing was sent). A 500, 502,
//! 504 or other 5xx (Twilio may have sent the message before its edge
//! failed), a timeout after the request went out and a transport error
//! mid-request are *uncertain*: the message is failed and never resent.
//!
//! Without credentials the worker uses the local sink instead (`sink_sid`):
//! nothing leaves the machine, the would-be request is recorded in
//! `message_sends.local_request` and the message gets a fake `SMlocal…` SID.

use crm_domain::{Secret, messaging::store::Queued};
use crm_platform::config::{ConfigError, Env};
use serde_json::Value;
use std::fmt;

pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

#[derive(Clone)]
pub struct TwilioConfig {
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    /// `TWILIO_PHONE_NUMBER` (E.164, without `whatsapp:`): WhatsApp sender.
    pub phone_number: Option<String>,
    /// `TWILIO_SMS_NUMBER`, else `TWILIO_PHONE_NUMBER`: SMS sender.
    pub sms_number: Option<String>,
    /// When set, sent as `MessagingServiceSid` instead of `From`.
    pub messaging_service_sid: Option<String>,
    /// `PUBLIC_BASE_URL` + `/api/twilio/webhook`.
    pub status_callback: Option<String>,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .finish_non_exhaustive()
    }
}

use crate::config::err;

impl TwilioConfig {
    /// `None` without `TWILIO_ACCOUNT_SID` (the local sink); with it the
    /// auth token and a sender are required.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let (sid, token) = match (
            env.optional("TWILIO_ACCOUNT_SID"),
            env.optional("TWILIO_AUTH_TOKEN"),
        ) {
            // The auth token alone is the webhook's signing key (`make run`
            // sets a dev one): without an account SID there is nothing to call.
            (None, _) => return Ok(None),
            (Some(_), None) => {
                return Err(err(
                    "TWILIO_AUTH_TOKEN",
                    "is required with TWILIO_ACCOUNT_SID",
                ));
            }
            (Some(sid), Some(_)) => (sid.trim().to_string(), env.secret("TWILIO_AUTH_TOKEN")?),
        };
        if !sid.starts_with("AC") || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err("TWILIO_ACCOUNT_SID", "must be an account SID (AC…)"));
        }
        let number = |name: &str| -> Result<Option<String>, ConfigError> {
            env.optional(name)
                .map(|raw| {
                    let n = raw.trim().trim_start_matches("whatsapp:").to_string();
                    let digits = n.strip_prefix('+').unwrap_or("");
                    if (8..=15).contains(&digits.len())
                        && digits.chars().all(|c| c.is_ascii_digit())
                    {
                        Ok(n)
                    } else {
                        Err(err(name, "must be an E.164 number such as +14155238886"))
                    }
                })
                .transpose()
        };
        let phone_number = number("TWILIO_PHONE_NUMBER")?;
        let sms_number = number("TWILIO_SMS_NUMBER")?.or_else(|| phone_number.clone());
        let messaging_service_sid = env
            .optional("TWILIO_MESSAGING_SERVICE_SID")
            .map(|s| s.trim().to_string());
        if phone_number.is_none() && messaging_service_sid.is_none() {
            return Err(err(
                "TWILIO_PHONE_NUMBER",
                "is required unless TWILIO_MESSAGING_SERVICE_SID is set",
            ));
        }
        let base_url = env
            .optional("TWILIO_API_BASE_URL")
            .unwrap_or(DEFAULT_BASE_URL)
            .trim()
            .trim_end_matches('/')
            .to_string();
        if reqwest::Url::parse(&base_url).is_err() {
            return Err(err("TWILIO_API_BASE_URL", "is not a URL"));
        }
        let status_callback = env
            .optional("PUBLIC_BASE_URL")
            .map(|b| format!("{}/api/twilio/webhook", b.trim().trim_end_matches('/')));
        Ok(Some(Self {
            base_url,
            account_sid: sid,
            auth_token: token,
            phone_number,
            sms_number,
            messaging_service_sid,
            status_callback,
        }))
    }

    pub fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url, self.account_sid
        )
    }
}

/// The form fields of the Messages API call, in a stable order.
pub fn form(
    config: Option<&TwilioConfig>,
    msg: &Queued,
    media_url: Option<&str>,
) -> Vec<(&'static str, String)> {
    let whatsapp = msg.channel == "whatsapp";
    let mut f = Vec::new();
    f.push((
        "To",
        if whatsapp {
            format!("whatsapp:{}", msg.to)
        } else {
            msg.to.clone()
        },
    ));
    match config {
        Some(c) if c.messaging_service_sid.is_some() => {
            f.push((
                "MessagingServiceSid",
                c.messaging_service_sid.clone().unwrap_or_default(),
            ));
        }
        Some(c) => {
            let from = if whatsapp {
                c.phone_number.as_ref().map(|n| format!("whatsapp:{n}"))
            } else {
                c.sms_number.clone()
            };
            f.push(("From", from.unwrap_or_default()));
        }
        None => {}
    }
    match (&msg.template_sid, &msg.body) {
        (Some(sid), _) => {
            f.push(("ContentSid", sid.clone()));
            let vars = msg
                .variables
                .clone()
                .unwrap_or(Value::Object(Default::default()));
            f.push(("ContentVariables", vars.to_string()));
        }
        (None, Some(body)) => f.push(("Body", body.clone())),
        (None, None) => {}
    }
    if let Some(url) = media_url {
        f.push(("MediaUrl", url.to_string()));
    }
    if let Some(cb) = config.and_then(|c| c.status_callback.clone()) {
        f.push(("StatusCallback", cb));
    }
    f
}

/// How Twilio answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Taken: its SID and our status for it.
    Sent { sid: String, status: String },
    /// Refused for good: Twilio's error code and a readable reason.
    Rejected { code: Option<i32>, reason: String },
    /// Not taken this time (429, 503, nothing sent): try again later.
    Retry { reason: String },
    /// It may have been sent (5xx other than 503, a timeout or transport
    /// error after sending, 2xx without a usable SID): never retried.
    Uncertain { reason: String },
}

/// A readable reason for a Twilio error code (never Twilio's own text, which
/// can quote the phone number).
pub fn describe(code: i32) -> String {
    match code {
        63016 => "WhatsApp 24-hour window closed: send a template".into(),
        63013 | 21654 => "template variables are missing or invalid".into(),
        20404 => "unknown template (ContentSid not found)".into(),
        21211 => "invalid recipient phone number".into(),
        21610 => "the recipient opted out (replied STOP)".into(),
        30003 => "delivery failed: unreachable destination handset".into(),
        30004 => "delivery failed: message blocked by the recipient".into(),
        30005 => "delivery failed: unknown destination handset".into(),
        30006 => "delivery failed: landline or unreachable carrier".into(),
        30007 => "delivery failed: filtered by the carrier".into(),
        30008 => "delivery failed: unknown error".into(),
        other => format!("Twilio error {other}"),
    }
}

/// Our status for the one Twilio gives a message it just took.
fn status(raw: Option<&str>) -> String {
    match raw {
        Some(s @ ("accepted" | "scheduled" | "queued" | "sending" | "sent")) => s.into(),
        _ => "queued".into(),
    }
}

/// Classifies an HTTP answer.
pub fn classify(http_status: u16, body: &[u8]) -> Answer {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match http_status {
        200..=299 => match json["sid"].as_str() {
            Some(sid)
                if (2..=64).contains(&sid.len())
                    && sid.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Answer::Sent {
                    sid: sid.into(),
                    status: status(json["status"].as_str()),
                }
            }
            _ => Answer::Uncertain {
                reason: format!("Twilio answered HTTP {http_status} without a message SID"),
            },
        },
        // Twilio: a 429 is never processed; a 503 is "temporarily unavailable".
        429 | 503 => Answer::Retry {
            reason: format!("Twilio answered HTTP {http_status}"),
        },
        // Twilio: a 500 on a non-idempotent POST (sending an SMS) may follow
        // a send; a retry could deliver the message twice.
        500..=599 => Answer::Uncertain {
            reason: format!("Twilio answered HTTP {http_status}; it may have sent the message"),
        },
        _ => {
            let code = json["code"].as_i64().and_then(|c| i32::try_from(c).ok());
            Answer::Rejected {
                code,
                reason: match code {
                    Some(c) => describe(c),
                    None => format!("Twilio refused the message (HTTP {http_status})"),
                },
            }
        }
    }
}

/// Calls the Messages API once.
pub async fn send(
    http: &reqwest::Client,
    config: &TwilioConfig,
    fields: &[(&'static str, String)],
) -> Answer {
    let sent = http
        .post(config.messages_url())
        .basic_auth(&config.account_sid, Some(config.auth_token.expose()))
        .form(fields)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return transport_failure(&e),
    };
    let http_status = resp.status().as_u16();
    match resp.bytes().await {
        Ok(body) => classify(http_status, &body),
        // The status line alone decides: 2xx/5xx uncertain, 429/503 retry,
        // other 4xx refused.
        Err(_) => classify(http_status, &[]),
    }
}

/// A call that got no HTTP answer. Only a connect-phase failure (DNS,
/// refused, TLS, connect timeout: the HTTP client's connect error is in the
/// source chain, as `crm_platform::email` checks for SES) proves nothing was
/// sent; a timeout or transport error after that may follow a send.
fn transport_failure(e: &reqwest::Error) -> Answer {
    // `is_connect` before `is_timeout`: a connect timeout is both.
    if e.is_connect() {
        Answer::Retry {
            reason: "the Twilio call failed to connect".into(),
        }
    } else if e.is_builder() {
        Answer::Retry {
            reason: "the Twilio request could not be built".into(),
        }
    } else if e.is_timeout() {
        Answer::Uncertain {
            reason: "the Twilio call timed out after sending; it may have sent the message".into(),
        }
    } else {
        Answer::Uncertain {
            reason: "the Twilio call failed mid-request; it may have sent the message".into(),
        }
    }
}

/// The local sink's fake SID for a message: `SMlocal` + its id.
pub fn sink_sid(message_id: uuid::Uuid) -> String {
    format!("SMlocal{}", message_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_error_codes_map_to_readable_failures() {
        let cases = [
            (
                400,
                63016,
                "WhatsApp 24-hour window closed: send a template",
            ),
            (400, 63013, "template variables are missing or invalid"),
            (400, 21654, "template variables are missing or invalid"),
            (404, 20404, "unknown template (ContentSid not found)"),
            (400, 21211, "invalid recipient phone number"),
            (400, 21610, "the recipient opted out (replied STOP)"),
            (
                400,
                30003,
                "delivery failed: unreachable destination handset",
            ),
            (400, 30008, "delivery failed: unknown error"),
            (400, 12345, "Twilio error 12345"),
        ];
        for (http, code, reason) in cases {
            let body = format!(
                r#"{{"code": {code}, "message": "The 'To' number +905321234567 is bad", "status": {http}}}"#
            );
            assert_eq!(
                classify(http, body.as_bytes()),
                Answer::Rejected {
                    code: Some(code),
                    reason: reason.into()
                },
                "{code}"
            );
        }
    }

    #[test]
    fn only_rate_limits_and_503_retry_other_server_errors_are_uncertain() {
        for http in [429, 503] {
            assert!(
                matches!(classify(http, b""), Answer::Retry { .. }),
                "{http}"
            );
        }
        for http in [500, 502, 504, 599] {
            assert!(
                matches!(classify(http, b"{}"), Answer::Uncertain { .. }),
                "{http}"
            );
        }
        assert!(matches!(
            classify(401, b"{}"),
            Answer::Rejected { code: None, .. }
        ));
    }

    #[test]
    fn a_2xx_without_a_sid_is_uncertain_not_retried() {
        assert!(matches!(classify(201, b"{}"), Answer::Uncertain { .. }));
        assert_eq!(
            classify(
                201,
                br#"{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}"#
            ),
            Answer::Sent {
                sid: "SM0123456789abcdef0123456789abcdef".into(),
                status: "queued".into()
            }
        );
    }

    #[test]
    fn config_needs_both_credentials_or_neither() {
        let load = |pairs: &[(&str, &str)]| {
            TwilioConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert!(load(&[]).unwrap().is_none());
        assert!(load(&[("TWILIO_ACCOUNT_SID", "AC123")]).is_err());
        let token_only = [("TWILIO_AUTH_TOKEN", "dev-twilio-token-0123456789")];
        assert!(
            load(&token_only).unwrap().is_none(),
            "the webhook's key alone: local sink"
        );
        let c = load(&[
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("TWILIO_PHONE_NUMBER", "whatsapp:+14155238886"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.phone_number.as_deref(), Some("+14155238886"));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }
}
