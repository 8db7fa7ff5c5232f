//! What a campaign delivery says: the template rendered for one contact
//! (subject, text, WhatsApp ContentVariables) and its signed unsubscribe
//! link. Pure: no I/O. Errors name variables, never values.

use crate::{
    campaigns::template,
    secret::Secret,
    unsubscribe::{self, Unsubscribe},
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::{collections::HashMap, time::Duration};
use uuid::Uuid;

/// How unsubscribe links are made: `{base_url}/api/v1/crm/unsubscribe?token=…`,
/// signed with `UNSUBSCRIBE_SECRET`, valid for `ttl`.
#[derive(Clone)]
pub struct Links {
    pub base_url: String,
    pub secret: Secret,
    pub ttl: Duration,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base_url", &self.base_url)
            .field("secret", &"***")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Links {
    /// The signed link for one contact, channel and campaign.
    pub fn url(
        &self,
        contact_id: Uuid,
        channel: &str,
        campaign_id: Uuid,
        now: DateTime<Utc>,
    ) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let token = unsubscribe::sign(
            &self.secret,
            &Unsubscribe {
                contact_id,
                channel: channel.to_string(),
                campaign_id: Some(campaign_id),
                expires: now.timestamp().saturating_add(ttl),
            },
        );
        format!(
            "{}/api/v1/crm/unsubscribe?token={token}",
            self.base_url.trim_end_matches('/')
        )
    }
}

/// The template's `variables` jsonb array as names (non-strings ignored).
pub(super) fn positional(v: Option<Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => s,
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A delivery's rendered content.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    /// WhatsApp content templates: Twilio's `ContentVariables`.
    pub variables: Option<Map<String, Value>>,
}

/// The unsubscribe line appended to e-mail and SMS texts that do not place
/// `{{unsubscribe_url}}` themselves.
pub fn unsubscribe_line(channel: &str, url: &str) -> String {
    match channel {
        "email" => format!("\n\n--\nUnsubscribe: {url}"),
        _ => format!("\n\nOpt out: {url}"),
    }
}

/// Renders a delivery's subject, text and WhatsApp variables; the error is
/// the reason (variable names only, never values).
pub fn render_all(
    channel: &str,
    body: &str,
    subject: Option<String>,
    content_template: bool,
    positional: &[String],
    values: &HashMap<String, String>,
    unsubscribe_url: &str,
) -> Result<Rendered, String> {
    let mut text = template::render(body, positional, values).map_err(|e| e.to_string())?;
    if matches!(channel, "email" | "sms") && !text.contains(unsubscribe_url) {
        text.push_str(&unsubscribe_line(channel, unsubscribe_url));
    }
    if text.chars().count() > template::MAX_RENDERED_CHARS {
        return Err(format!(
            "rendered text with its unsubscribe line is longer than {} characters",
            template::MAX_RENDERED_CHARS
        ));
    }
    let subject = match (channel, subject) {
        ("email", Some(s)) => {
            let s = template::render(&s, positional, values).map_err(|e| e.to_string())?;
            // A header value: one line.
            Some(s.replace(['\r', '\n'], " "))
        }
        ("email", None) => return Err("an e-mail template needs a subject".into()),
        _ => None,
    };
    let variables = if channel == "whatsapp" && content_template {
        Some(template::content_variables(positional, values).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(Rendered {
        subject,
        text,
        variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> HashMap<String, String> {
        [
            ("contact.first_name", "Ana"),
            ("unsubscribe_url", "https://crm.example.com/u?token=t"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn email_and_sms_texts_get_the_unsubscribe_link_once() {
        let url = "https://crm.example.com/u?token=t";
        let e = render_all(
            "email",
            "Hi {{contact.first_name}}",
            Some("For {{1}}".into()),
            false,
            &["contact.first_name".into()],
            &values(),
            url,
        )
        .unwrap();
        assert_eq!(e.subject.as_deref(), Some("For Ana"));
        assert_eq!(e.text, format!("Hi Ana\n\n--\nUnsubscribe: {url}"));
        let s = render_all(
            "sms",
            "Hi {{1}}, leave: {{unsubscribe_url}}",
            None,
            false,
            &["contact.first_name".into()],
            &values(),
            url,
        )
        .unwrap();
        assert_eq!(
            s.text,
            format!("Hi Ana, leave: {url}"),
            "placed once, not appended"
        );
        let w = render_all(
            "whatsapp",
            "Hi {{1}}",
            None,
            true,
            &["contact.first_name".into()],
            &values(),
            "",
        )
        .unwrap();
        assert_eq!(w.text, "Hi Ana");
        assert_eq!(
            w.variables.unwrap().get("1"),
            Some(&Value::String("Ana".into()))
        );
    }

    #[test]
    fn render_failures_name_the_variable_not_a_value() {
        let err = render_all(
            "email",
            "Hi {{contact.company}}",
            Some("S".into()),
            false,
            &[],
            &values(),
            "u",
        )
        .unwrap_err();
        assert!(err.contains("contact.company"), "{err}");
        assert!(render_all("email", "Hi", None, false, &[], &values(), "u").is_err());
    }

    #[test]
    fn links_verify_with_the_secret_and_carry_ids_only() {
        let links = Links {
            base_url: "https://crm.example.com/".into(),
            secret: Secret::new("unsub-secret").unwrap(),
            ttl: Duration::from_secs(90 * 86_400),
        };
        let (contact, campaign) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Utc::now();
        let url = links.url(contact, "email", campaign, now);
        let token = url
            .strip_prefix("https://crm.example.com/api/v1/crm/unsubscribe?token=")
            .unwrap();
        let claims = unsubscribe::verify(&links.secret, token, now).unwrap();
        assert_eq!(claims.contact_id, contact);
        assert_eq!(claims.campaign_id, Some(campaign));
        assert_eq!(claims.channel, "email");
        assert_eq!(claims.expires, now.timestamp() + 90 * 86_400);
        assert!(!format!("{links:?}").contains("unsub-secret"));
    }
}
