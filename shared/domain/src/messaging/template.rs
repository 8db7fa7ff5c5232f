//! POST /api/messages/template: fills a Twilio Content template.
//! `{{1}}` = the contact's name, `{{2}}`/`{{3}}` = date and time (UTC,
//! `dd/mm/yyyy` and `HH:MM`) of the meeting of the contact's open deal (the
//! latest `meeting` activity's `metadata.start_time`, as Cal.com bookings
//! store it), `{{4}}…` = `parameters` in order. Every placeholder must be
//! filled and non-empty and the rendered text at most 1,024 characters, all
//! checked before anything is stored. Templates are allowed outside the
//! WhatsApp 24-hour window.

use super::{Outgoing, insert, recipient};
use crate::{
    auth::Principal,
    crm::{
        ApiError, Done,
        input::{Fields, Patch},
    },
    db::GenericClient,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Twilio's limit on a rendered template body.
pub const MAX_RENDERED_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateInput {
    pub contact_id: Uuid,
    pub template_id: Uuid,
    pub parameters: Vec<String>,
}

impl TemplateInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let params = body.get("parameters").cloned();
        let f = Fields::new(body, &["contact_id", "template_id", "parameters"])?;
        let uuid = |name: &str| match f.uuid(name)? {
            Patch::Set(id) => Ok(id),
            _ => Err(ApiError::validation(name, "is required")),
        };
        let parameters = match params {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_string()),
                    _ => Err(ApiError::validation("parameters", "must be strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::validation("parameters", "must be an array")),
        };
        Ok(Self {
            contact_id: uuid("contact_id")?,
            template_id: uuid("template_id")?,
            parameters,
        })
    }
}

/// The numbers of the `{{n}}` placeholders in `body`, ascending, unique.
pub fn placeholders(body: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find("}}")
            && let Ok(n) = rest[..end].trim().parse::<u32>()
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// What fills the placeholders.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub name: Option<&'a str>,
    pub meeting: Option<DateTime<Utc>>,
    pub parameters: &'a [String],
}

/// The rendered text and `ContentVariables`, or the 422 naming what is missing.
pub fn render(
    body: &str,
    values: &Values<'_>,
) -> Result<(String, BTreeMap<String, String>), ApiError> {
    let mut vars = BTreeMap::new();
    let used = placeholders(body);
    let extra = used.iter().filter(|n| **n >= 4).max().map_or(0, |m| m - 3) as usize;
    if values.parameters.len() > extra {
        return Err(ApiError::validation(
            "parameters",
            format!(
                "has {} values but the template takes {extra}",
                values.parameters.len()
            ),
        ));
    }
    for n in used {
        let value = match n {
            1 => values.name.map(str::to_string),
            2 => values.meeting.map(|t| t.format("%d/%m/%Y").to_string()),
            3 => values.meeting.map(|t| t.format("%H:%M").to_string()),
            0 => None,
            n => values.parameters.get(n as usize - 4).cloned(),
        };
        let value = value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            let why = match n {
                1 => "the contact has no name",
                2 | 3 => "the contact has no open deal with a meeting",
                _ => "has no non-empty value in parameters",
            };
            ApiError::validation(format!("{{{{{n}}}}}"), why)
        })?;
        vars.insert(n.to_string(), value);
    }
    let mut text = body.to_string();
    for (n, v) in &vars {
        text = text.replace(&format!("{{{{{n}}}}}"), v);
    }
    if text.chars().count() > MAX_RENDERED_CHARS {
        return Err(ApiError::validation(
            "parameters",
            format!("render the template longer than {MAX_RENDERED_CHARS} characters"),
        ));
    }
    Ok((text, vars))
}

/// The start of the meeting of the contact's open deal, if any.
async fn meeting_start(
    db: &impl GenericClient,
    contact_id: Uuid,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let stmt = db
        .prepare_cached(
            "select a.metadata ->> 'start_time' from activities a join deals d on d.id = a.deal_id \
             where d.contact_id = $1 and d.status = 'open' and a.type = 'meeting' \
             order by a.occurred_at desc, a.id desc limit 1",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the meeting lookup"))?;
    let row = db
        .query_opt(&stmt, &[&contact_id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the deal's meeting"))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|s| s.parse::<DateTime<Utc>>().ok()))
}

/// POST /api/messages/template: checks, renders, stores and enqueues (202).
pub async fn queue_template(
    db: &impl GenericClient,
    who: &Principal,
    input: TemplateInput,
) -> Result<Done, ApiError> {
    let stmt = db
        .prepare_cached(
            "select content_sid, channel, body, status from message_templates where id = $1",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the template lookup"))?;
    let tpl = db
        .query_opt(&stmt, &[&input.template_id])
        .await
        .map_err(|e| ApiError::from_db(e, "loading the template"))?
        .ok_or_else(|| ApiError::validation("template_id", "does not exist"))?;
    let content_sid: Option<String> = tpl.get(0);
    let channel = super::Channel::parse(tpl.get(1)).unwrap_or(super::Channel::Whatsapp);
    let body: String = tpl.get(2);
    let status: String = tpl.get(3);
    let Some(content_sid) = content_sid.filter(|_| status == "approved") else {
        return Err(ApiError::validation(
            "template_id",
            "is not an approved Twilio template",
        ));
    };
    let to = recipient(db, who, input.contact_id, Some(channel)).await?;
    let meeting = if placeholders(&body).iter().any(|n| *n == 2 || *n == 3) {
        meeting_start(db, to.id).await?
    } else {
        None
    };
    let values = Values {
        name: to.full_name.as_deref(),
        meeting,
        parameters: &input.parameters,
    };
    let (text, vars) = render(&body, &values)?;
    let variables = serde_json::to_value(&vars).expect("strings serialise");
    let out = Outgoing {
        contact_id: to.id,
        channel: to.channel,
        body: Some(&text),
        media_key: None,
        template_sid: Some(&content_sid),
        variables: Some(&variables),
    };
    insert(db, who, &out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn placeholders_are_found_once_each_in_order() {
        assert_eq!(
            placeholders("{{2}} hi {{1}}, {{1}} {{ 4 }} {{x}}"),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn every_placeholder_is_filled_from_name_meeting_and_parameters() {
        let p = params(&["Ofis"]);
        let v = Values {
            name: Some("Ana"),
            meeting: Some("2026-12-01T14:30:00Z".parse().unwrap()),
            parameters: &p,
        };
        let (text, vars) = render("Hi {{1}}, see you {{2}} at {{3}} in {{4}}", &v).unwrap();
        assert_eq!(text, "Hi Ana, see you 01/12/2026 at 14:30 in Ofis");
        assert_eq!(
            serde_json::to_value(&vars).unwrap(),
            serde_json::json!({"1": "Ana", "2": "01/12/2026", "3": "14:30", "4": "Ofis"})
        );
    }

    #[test]
    fn a_missing_or_blank_value_names_its_placeholder() {
        let p = params(&[" "]);
        let v = Values {
            name: Some("Ana"),
            meeting: None,
            parameters: &p,
        };
        let e = render("{{1}} {{4}}", &v).unwrap_err();
        assert_eq!(e.body()["field"], "{{4}}");
        let e = render(
            "{{2}}",
            &Values {
                name: Some("Ana"),
                ..Values::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.body()["field"], "{{2}}");
        let nameless = Values::default();
        assert_eq!(
            render("{{1}}", &nameless).unwrap_err().body()["field"],
            "{{1}}"
        );
    }

    #[test]
    fn rendered_text_over_1024_characters_is_refused() {
        let long = params(&[&"x".repeat(1021)]);
        let v = Values {
            name: Some("Ana"),
            meeting: None,
            parameters: &long,
        };
        assert!(render("{{1}} {{4}}", &v).is_err());
        let p = params(&["a", "b"]);
        let v = Values {
            name: Some("Ana"),
            meeting: None,
            parameters: &p,
        };
        assert_eq!(
            render("{{4}}", &v).unwrap_err().body()["field"],
            "parameters"
        );
    }
}
