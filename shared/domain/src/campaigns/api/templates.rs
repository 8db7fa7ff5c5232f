//! Templates: the catalogue campaigns render (API-made and Twilio-synced).

use super::{CHANNELS, db_err};
use crate::{
    auth::Principal,
    campaigns::{
        audit::{self, AuditEntry},
        template,
    },
    crm::{
        ApiError, Done,
        input::{Fields, Patch},
    },
    db::GenericClient,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

pub const TEMPLATE_STATUSES: &[&str] = &["approved", "pending", "rejected", "disabled"];
const MAX_CONTENT_CHARS: usize = 4096;
const MAX_VARIABLES: usize = 20;

// ---------------------------------------------------------------- templates

const TEMPLATE_COLUMNS: &str = "id, name, channel, body, subject, variables, content_sid, language, status, source, \
     created_by, created_at, updated_at";

fn template_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, Uuid>(0),
        "name": r.get::<_, String>(1),
        "channel": r.get::<_, String>(2),
        "content": r.get::<_, String>(3),
        "subject": r.get::<_, Option<String>>(4),
        "variables": r.get::<_, Value>(5),
        "content_sid": r.get::<_, Option<String>>(6),
        "language": r.get::<_, Option<String>>(7),
        "status": r.get::<_, String>(8),
        "source": r.get::<_, String>(9),
        "created_by": r.get::<_, Option<String>>(10),
        "created_at": r.get::<_, DateTime<Utc>>(11),
        "updated_at": r.get::<_, DateTime<Utc>>(12),
    })
}

/// A template's fields after validation (create, or a patch merged onto the stored row).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateFields {
    pub name: String,
    pub channel: String,
    pub content: String,
    pub subject: Option<String>,
    pub variables: Vec<String>,
    pub content_sid: Option<String>,
    pub language: Option<String>,
    pub status: String,
}

const TEMPLATE_KEYS: &[&str] = &[
    "name",
    "channel",
    "content",
    "subject",
    "variables",
    "content_sid",
    "language",
    "status",
];

fn variables_field(raw: Option<&Value>) -> Result<Patch<Vec<String>>, ApiError> {
    match raw {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Null),
        Some(Value::Array(items)) => {
            if items.len() > MAX_VARIABLES {
                return Err(ApiError::validation(
                    "variables",
                    format!("has more than {MAX_VARIABLES} entries"),
                ));
            }
            items
                .iter()
                .map(|v| match v.as_str().map(str::trim) {
                    Some(s) if template::is_known_name(s) => Ok(s.to_string()),
                    _ => Err(ApiError::validation(
                        "variables",
                        "must hold known variable names such as contact.first_name",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Patch::Set)
        }
        Some(_) => Err(ApiError::validation("variables", "must be an array")),
    }
}

fn one_of(field: &str, value: String, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

impl TemplateFields {
    /// `base` is the stored template for a patch, `None` for a create.
    pub fn parse(
        body: Map<String, Value>,
        base: Option<&TemplateFields>,
    ) -> Result<Self, ApiError> {
        let vars_raw = body.get("variables").cloned();
        let f = Fields::new(body, TEMPLATE_KEYS)?;
        let pick = |patch: Patch<String>, name: &str, old: Option<&String>| match (patch, old) {
            (Patch::Set(v), _) => Ok(v),
            (Patch::Absent, Some(old)) => Ok(old.clone()),
            _ => Err(ApiError::validation(name, "is required")),
        };
        let opt = |patch: Patch<String>, old: Option<&Option<String>>| match patch {
            Patch::Set(v) => Some(v),
            Patch::Null => None,
            Patch::Absent => old.cloned().flatten(),
        };
        let name = pick(f.text("name", 200)?, "name", base.map(|b| &b.name))?;
        let channel = one_of(
            "channel",
            pick(f.text("channel", 20)?, "channel", base.map(|b| &b.channel))?,
            CHANNELS,
        )?;
        let content = pick(
            f.text("content", MAX_CONTENT_CHARS)?,
            "content",
            base.map(|b| &b.content),
        )?;
        let subject = opt(f.text("subject", 998)?, base.map(|b| &b.subject));
        let content_sid = opt(f.text("content_sid", 64)?, base.map(|b| &b.content_sid));
        let language = opt(f.text("language", 20)?, base.map(|b| &b.language));
        let status = match f.text("status", 20)? {
            Patch::Set(s) => one_of("status", s, TEMPLATE_STATUSES)?,
            Patch::Null => return Err(ApiError::validation("status", "may not be null")),
            Patch::Absent => base.map_or_else(|| "approved".to_string(), |b| b.status.clone()),
        };
        let variables = match variables_field(vars_raw.as_ref())? {
            Patch::Set(v) => v,
            Patch::Null => Vec::new(),
            Patch::Absent => base.map(|b| b.variables.clone()).unwrap_or_default(),
        };
        if channel == "email" && subject.is_none() {
            return Err(ApiError::validation(
                "subject",
                "is required for e-mail templates",
            ));
        }
        if channel != "email" && subject.is_some() {
            return Err(ApiError::validation(
                "subject",
                "is only for e-mail templates",
            ));
        }
        if let Some(sid) = &content_sid {
            if channel != "whatsapp" {
                return Err(ApiError::validation(
                    "content_sid",
                    "is only for WhatsApp templates",
                ));
            }
            let ok = sid.len() == 34
                && sid.starts_with("HX")
                && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(ApiError::validation(
                    "content_sid",
                    "must be a Twilio Content SID (HX and 32 hex digits)",
                ));
            }
        }
        let mut texts = vec![content.as_str()];
        if let Some(s) = &subject {
            texts.push(s);
        }
        template::required_names(&texts, &variables)
            .map_err(|e| ApiError::validation("content", e.to_string()))?;
        Ok(Self {
            name,
            channel,
            content,
            subject,
            variables,
            content_sid,
            language,
            status,
        })
    }

    fn from_row(r: &Row) -> Self {
        let variables = match r.get::<_, Value>(5) {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Self {
            name: r.get(1),
            channel: r.get(2),
            content: r.get(3),
            subject: r.get(4),
            variables,
            content_sid: r.get(6),
            language: r.get(7),
            status: r.get(8),
        }
    }
}

pub async fn list_templates(
    db: &impl GenericClient,
    channel: Option<&str>,
) -> Result<Value, ApiError> {
    let sql = format!(
        "select {TEMPLATE_COLUMNS} from message_templates where ($1::text is null or channel = $1) \
         order by name, id limit 1000"
    );
    let rows = db
        .query(sql.as_str(), &[&channel])
        .await
        .map_err(|e| db_err(e, "listing templates"))?;
    Ok(json!({"items": rows.iter().map(template_json).collect::<Vec<_>>()}))
}

async fn template_row(db: &impl GenericClient, id: Uuid, lock: bool) -> Result<Row, ApiError> {
    let sql = format!(
        "select {TEMPLATE_COLUMNS} from message_templates where id = $1{}",
        if lock { " for update" } else { "" }
    );
    db.query_opt(sql.as_str(), &[&id])
        .await
        .map_err(|e| db_err(e, "reading a template"))?
        .ok_or(ApiError::NotFound("template"))
}

pub async fn get_template(db: &impl GenericClient, id: Uuid) -> Result<Value, ApiError> {
    Ok(template_json(&template_row(db, id, false).await?))
}

pub async fn create_template(
    db: &impl GenericClient,
    who: &Principal,
    t: TemplateFields,
) -> Result<Done, ApiError> {
    let sql = format!(
        "insert into message_templates (name, channel, body, subject, variables, content_sid, language, status, \
             source, created_by) values ($1, $2, $3, $4, $5, $6, $7, $8, 'api', $9) returning {TEMPLATE_COLUMNS}"
    );
    let row = db
        .query_one(
            sql.as_str(),
            &[
                &t.name,
                &t.channel,
                &t.content,
                &t.subject,
                &json!(t.variables),
                &t.content_sid,
                &t.language,
                &t.status,
                &who.actor(),
            ],
        )
        .await
        .map_err(|e| db_err(e, "creating a template"))?;
    let id: Uuid = row.get(0);
    audit::record(
        db,
        &AuditEntry {
            action: "crm.template.created",
            actor: &who.actor(),
            target_type: "template",
            target_id: Some(id.to_string()),
            details: json!({"channel": t.channel, "status": t.status, "variables": t.variables.len()}),
        },
    )
    .await?;
    Ok(Done::new(201, template_json(&row)))
}

/// Whether a campaign that is not draft, finished or cancelled uses the
/// template (its text must not change under a running campaign).
async fn template_busy(db: &impl GenericClient, id: Uuid) -> Result<bool, ApiError> {
    Ok(db
        .query_one(
            "select exists (select 1 from campaigns where template_id = $1 \
             and status in ('queued', 'sending', 'paused'))",
            &[&id],
        )
        .await
        .map_err(|e| db_err(e, "checking the template's campaigns"))?
        .get(0))
}

pub async fn update_template(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    body: Map<String, Value>,
) -> Result<Done, ApiError> {
    let row = template_row(db, id, true).await?;
    let source: String = row.get(9);
    // A synced template's text belongs to Twilio; here it takes a status and
    // the names its {{1}}… placeholders are filled from (the sync keeps them).
    if source == "twilio_sync" && body.keys().any(|k| k != "status" && k != "variables") {
        return Err(ApiError::Refused {
            code: "synced_template",
            message: "Templates synced from Twilio change only their status and variables here"
                .into(),
        });
    }
    let base = TemplateFields::from_row(&row);
    let t = TemplateFields::parse(body, Some(&base))?;
    if t != base && template_busy(db, id).await? {
        return Err(ApiError::Refused {
            code: "template_in_use",
            message: "The template is used by an active campaign; pause or cancel it first".into(),
        });
    }
    let sql = format!(
        "update message_templates set name = $2, channel = $3, body = $4, subject = $5, variables = $6, \
             content_sid = $7, language = $8, status = $9, updated_at = now() where id = $1 \
         returning {TEMPLATE_COLUMNS}"
    );
    let row = db
        .query_one(
            sql.as_str(),
            &[
                &id,
                &t.name,
                &t.channel,
                &t.content,
                &t.subject,
                &json!(t.variables),
                &t.content_sid,
                &t.language,
                &t.status,
            ],
        )
        .await
        .map_err(|e| db_err(e, "updating a template"))?;
    let mut changed = Vec::new();
    for (field, differs) in [
        ("name", t.name != base.name),
        ("channel", t.channel != base.channel),
        ("content", t.content != base.content),
        ("subject", t.subject != base.subject),
        ("variables", t.variables != base.variables),
        ("content_sid", t.content_sid != base.content_sid),
        ("language", t.language != base.language),
        ("status", t.status != base.status),
    ] {
        if differs {
            changed.push(field);
        }
    }
    audit::record(
        db,
        &AuditEntry {
            action: "crm.template.updated",
            actor: &who.actor(),
            target_type: "template",
            target_id: Some(id.to_string()),
            details: json!({"fields": changed, "status": t.status}),
        },
    )
    .await?;
    Ok(Done::new(200, template_json(&row)))
}

pub async fn delete_template(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<Done, ApiError> {
    let n = db
        .execute("delete from message_templates where id = $1", &[&id])
        .await
        .map_err(|e| db_err(e, "deleting a template"))?;
    if n == 0 {
        return Err(ApiError::NotFound("template"));
    }
    audit::record(
        db,
        &AuditEntry {
            action: "crm.template.deleted",
            actor: &who.actor(),
            target_type: "template",
            target_id: Some(id.to_string()),
            details: json!({}),
        },
    )
    .await?;
    Ok(Done::new(200, json!({"id": id, "deleted": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn email_templates_need_a_subject_and_known_variables() {
        let e = TemplateFields::parse(
            obj(json!({"name": "n", "channel": "email", "content": "Hi"})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.body()["field"], "subject");
        let e = TemplateFields::parse(
            obj(json!({"name": "n", "channel": "sms", "content": "Hi {{contact.secret}}"})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.body()["field"], "content");
        let e = TemplateFields::parse(
            obj(json!({"name": "n", "channel": "sms", "content": "Hi {{2}}", "variables": ["contact.first_name"]})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.body()["field"], "content");
        let t = TemplateFields::parse(
            obj(json!({"name": "n", "channel": "whatsapp", "content": "Hi {{1}}",
                       "variables": ["contact.first_name"], "content_sid": "HX0123456789abcdef0123456789abcdef"})),
            None,
        )
        .unwrap();
        assert_eq!(t.status, "approved");
        let patched = TemplateFields::parse(obj(json!({"status": "disabled"})), Some(&t)).unwrap();
        assert_eq!(patched.content, t.content);
        assert_eq!(patched.status, "disabled");
    }
}
