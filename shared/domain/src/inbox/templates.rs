//! `message_templates` (migrations/V10) kept in step with Twilio's Content
//! API: one row per ContentSid, upserted. What Twilio owns (name, language,
//! body, variables) follows Twilio; what the CRM owns (channel once set,
//! status) is left alone on update — `/v1/Content` does not carry WhatsApp
//! approval, so a new row takes the column's default status.

use crate::{crm::ApiError, db::GenericClient};
use serde_json::Value;

/// One Content API template, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentTemplate {
    pub content_sid: String,
    pub name: String,
    pub language: Option<String>,
    pub channel: &'static str,
    pub body: String,
    pub variables: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// Inserts or updates by `content_sid`; a row already equal is not written.
pub async fn upsert(db: &impl GenericClient, t: &ContentTemplate) -> Result<Upsert, ApiError> {
    let stmt = db
        .prepare_cached(
            "insert into message_templates (content_sid, name, language, channel, body, variables) \
             values ($1, $2, $3, $4, $5, $6) \
             on conflict (content_sid) do update set \
               name = excluded.name, language = excluded.language, body = excluded.body, \
               variables = case when jsonb_typeof(message_templates.variables) = 'array' \
                                 and jsonb_array_length(message_templates.variables) > 0 \
                                then message_templates.variables else excluded.variables end, \
               updated_at = now() \
             where (message_templates.name, message_templates.language, message_templates.body, \
                    message_templates.variables) \
                   is distinct from (excluded.name, excluded.language, excluded.body, \
                    case when jsonb_typeof(message_templates.variables) = 'array' \
                          and jsonb_array_length(message_templates.variables) > 0 \
                         then message_templates.variables else excluded.variables end) \
             returning (xmax = 0) as inserted",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the template upsert"))?;
    let row = db
        .query_opt(
            &stmt,
            &[
                &t.content_sid,
                &t.name,
                &t.language,
                &t.channel,
                &t.body,
                &t.variables,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "upserting a template"))?;
    Ok(match row {
        None => Upsert::Unchanged,
        Some(r) if r.get::<_, bool>(0) => Upsert::Created,
        Some(_) => Upsert::Updated,
    })
}
