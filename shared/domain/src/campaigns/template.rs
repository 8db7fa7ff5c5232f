//! Campaign template rendering. A template's text holds positional `{{1}}…`
//! placeholders (Twilio Content style; `{{n}}` takes the value named by the
//! template's `variables[n-1]`, e.g. `"contact.first_name"`) and named ones
//! such as `{{contact.first_name}}`. Known names: `contact.first_name`,
//! `contact.last_name`, `contact.full_name`, `contact.company`,
//! `contact.email`, `contact.phone`, `contact.attributes.<key>` (a string or
//! number attribute) and `unsubscribe_url` (supplied by the sender).
//!
//! A placeholder whose value is missing or blank is an error, never an empty
//! gap in the text: the snapshot marks such recipients `invalid_template`
//! with the same rule ([`required_names`] + `audience`), and the sender
//! refuses to render them.

use crate::db::GenericClient;
use anyhow::Context;
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The longest rendered text accepted (SMS/WhatsApp bodies; e-mail bodies
/// are checked against the same bound to keep one rule).
pub const MAX_RENDERED_CHARS: usize = 4096;

/// The value the sender supplies for every message (not from the contact).
pub const UNSUBSCRIBE_URL: &str = "unsubscribe_url";

const CONTACT_FIELDS: &[&str] = &[
    "contact.first_name",
    "contact.last_name",
    "contact.full_name",
    "contact.company",
    "contact.email",
    "contact.phone",
];

const ATTRIBUTE_PREFIX: &str = "contact.attributes.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `{{n}}` with no `variables[n-1]` entry naming its value.
    #[error("placeholder {{{{{0}}}}} has no entry in the template's variables")]
    UnmappedPositional(u32),
    /// A name that is not one of the known value names.
    #[error("unknown variable {0}")]
    UnknownName(String),
    /// A known name without a non-blank value for this contact.
    #[error("no value for {0}")]
    Missing(String),
    #[error("rendered text is longer than {MAX_RENDERED_CHARS} characters")]
    TooLong,
    /// A `{{` with no `}}` after it.
    #[error("a placeholder opened with {{{{ is never closed")]
    Unclosed,
    /// `{{n}}` with a number no variable list can have.
    #[error("placeholder {{{{{0}}}}} is not a valid position")]
    BadPosition(String),
}

/// What a saved template may hold: every `{{` closed, and every number
/// between braces a position (1–999). Rendering stays lenient (anything
/// else is literal text), but nothing is saved that cannot mean what it says.
fn check_syntax(text: &str) -> Result<(), RenderError> {
    let mut from = 0;
    while let Some(rel) = text[from..].find("{{") {
        let start = from + rel;
        let Some(len) = text[start + 2..].find("}}") else {
            return Err(RenderError::Unclosed);
        };
        let inner = text[start + 2..start + 2 + len].trim();
        if !inner.is_empty()
            && inner.bytes().all(|b| b.is_ascii_digit())
            && !matches!(inner.parse::<u32>(), Ok(1..=999))
        {
            return Err(RenderError::BadPosition(crate::fields::clip(inner, 24)));
        }
        from = start + 2 + len + 2;
    }
    Ok(())
}

/// Whether `name` is a value name templates may use.
pub fn is_known_name(name: &str) -> bool {
    CONTACT_FIELDS.contains(&name) || name == UNSUBSCRIBE_URL || attribute_key(name).is_some()
}

/// `contact.attributes.<key>` → `<key>` (letters, digits, `_` and `-`, 1–64).
pub fn attribute_key(name: &str) -> Option<&str> {
    let key = name.strip_prefix(ATTRIBUTE_PREFIX)?;
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(key)
}

/// A placeholder found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placeholder {
    Positional(u32),
    Named(String),
}

/// Every `{{…}}` in `text`, with its byte span. Braces holding anything but
/// a number or a dotted name are left as literal text.
fn scan(text: &str) -> Vec<(usize, usize, Placeholder)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find("{{") {
        let start = from + rel;
        let Some(len) = text[start + 2..].find("}}") else {
            break;
        };
        let inner = text[start + 2..start + 2 + len].trim();
        let end = start + 2 + len + 2;
        let ph = if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            inner.parse::<u32>().ok().map(Placeholder::Positional)
        } else if !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        {
            Some(Placeholder::Named(inner.to_string()))
        } else {
            None
        };
        match ph {
            Some(ph) => {
                found.push((start, end, ph));
                from = end;
            }
            None => from = start + 2,
        }
    }
    found
}

/// The value name behind a placeholder.
fn name_of(ph: &Placeholder, positional: &[String]) -> Result<String, RenderError> {
    match ph {
        Placeholder::Named(n) => Ok(n.clone()),
        Placeholder::Positional(n) => positional
            .get((*n as usize).wrapping_sub(1))
            .filter(|_| *n >= 1)
            .cloned()
            .ok_or(RenderError::UnmappedPositional(*n)),
    }
}

/// The value names `texts` need (unique, in first-use order), or the first
/// placeholder that cannot be resolved. Checks every name is known.
pub fn required_names(texts: &[&str], positional: &[String]) -> Result<Vec<String>, RenderError> {
    let mut names: Vec<String> = Vec::new();
    for text in texts {
        check_syntax(text)?;
        for (_, _, ph) in scan(text) {
            let name = name_of(&ph, positional)?;
            if !is_known_name(&name) {
                return Err(RenderError::UnknownName(name));
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    // Positional variables must all be sendable as ContentVariables too.
    for name in positional {
        if !is_known_name(name) {
            return Err(RenderError::UnknownName(name.clone()));
        }
    }
    Ok(names)
}

fn value<'v>(values: &'v HashMap<String, String>, name: &str) -> Result<&'v str, RenderError> {
    match values.get(name).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(RenderError::Missing(name.to_string())),
    }
}

/// Fills every placeholder of `text`; see the module docs.
pub fn render(
    text: &str,
    positional: &[String],
    values: &HashMap<String, String>,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for (start, end, ph) in scan(text) {
        let name = name_of(&ph, positional)?;
        if !is_known_name(&name) {
            return Err(RenderError::UnknownName(name));
        }
        out.push_str(&text[at..start]);
        out.push_str(value(values, &name)?);
        at = end;
    }
    out.push_str(&text[at..]);
    if out.chars().count() > MAX_RENDERED_CHARS {
        return Err(RenderError::TooLong);
    }
    Ok(out)
}

/// WhatsApp `ContentVariables`: `{"1": value of positional[0], …}`.
pub fn content_variables(
    positional: &[String],
    values: &HashMap<String, String>,
) -> Result<Map<String, Value>, RenderError> {
    let mut vars = Map::new();
    for (i, name) in positional.iter().enumerate() {
        if !is_known_name(name) {
            return Err(RenderError::UnknownName(name.clone()));
        }
        vars.insert(
            (i + 1).to_string(),
            Value::String(value(values, name)?.to_string()),
        );
    }
    Ok(vars)
}

/// The contact's values by name (blank ones left out). `unsubscribe_url` is
/// not among them: the sender adds it. `contact.full_name` is the stored
/// full name, else first and last name joined — the same rule the snapshot's
/// `invalid_template` check applies in SQL.
pub async fn contact_values(
    db: &impl GenericClient,
    contact_id: Uuid,
) -> anyhow::Result<HashMap<String, String>> {
    let stmt = db
        .prepare_cached(
            "select first_name, last_name, full_name, company, email, phone, attributes \
             from contacts where id = $1",
        )
        .await
        .context("preparing the contact values read")?;
    let row = db
        .query_opt(&stmt, &[&contact_id])
        .await
        .context("reading the contact's template values")?
        .with_context(|| format!("contact {contact_id} not found"))?;
    let mut values = HashMap::new();
    let mut put = |name: &str, v: Option<String>| {
        if let Some(v) = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            values.insert(name.to_string(), v);
        }
    };
    let first: Option<String> = row.get(0);
    let last: Option<String> = row.get(1);
    let full: Option<String> = row.get(2);
    let joined = [first.as_deref(), last.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let full = full
        .filter(|s| !s.trim().is_empty())
        .or(Some(joined).filter(|s| !s.trim().is_empty()));
    put("contact.first_name", first);
    put("contact.last_name", last);
    put("contact.full_name", full);
    put("contact.company", row.get(3));
    put("contact.email", row.get(4));
    put("contact.phone", row.get(5));
    if let Value::Object(attrs) = row.get::<_, Value>(6) {
        for (k, v) in attrs {
            let text = match v {
                Value::String(s) => Some(s),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if attribute_key(&format!("{ATTRIBUTE_PREFIX}{k}")).is_some() {
                put(&format!("{ATTRIBUTE_PREFIX}{k}"), text);
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pos(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn positional_and_named_placeholders_are_filled() {
        let v = vals(&[
            ("contact.first_name", "Ana"),
            ("contact.company", "Acme"),
            ("unsubscribe_url", "https://x/u?t=1"),
        ]);
        let text = render(
            "Hi {{1}} from {{ contact.company }}! Stop: {{unsubscribe_url}} {{1}}",
            &pos(&["contact.first_name"]),
            &v,
        )
        .unwrap();
        assert_eq!(text, "Hi Ana from Acme! Stop: https://x/u?t=1 Ana");
    }

    #[test]
    fn non_placeholder_braces_stay_literal() {
        let v = vals(&[]);
        assert_eq!(
            render("json {{ }} and {{a b}} and {{", &[], &v).unwrap(),
            "json {{ }} and {{a b}} and {{"
        );
    }

    #[test]
    fn a_missing_or_blank_value_is_an_error_naming_it() {
        let v = vals(&[("contact.first_name", "  ")]);
        assert_eq!(
            render("Hi {{contact.first_name}}", &[], &v),
            Err(RenderError::Missing("contact.first_name".into()))
        );
        assert_eq!(
            render("Hi {{2}}", &pos(&["contact.first_name"]), &v),
            Err(RenderError::UnmappedPositional(2))
        );
        assert_eq!(
            render("Hi {{0}}", &[], &v),
            Err(RenderError::UnmappedPositional(0))
        );
        assert_eq!(
            render("Hi {{contact.password}}", &[], &v),
            Err(RenderError::UnknownName("contact.password".into()))
        );
    }

    #[test]
    fn content_variables_follow_the_positional_order() {
        let v = vals(&[("contact.first_name", "Ana"), ("contact.company", "Acme")]);
        let vars = content_variables(&pos(&["contact.first_name", "contact.company"]), &v).unwrap();
        assert_eq!(
            Value::Object(vars),
            serde_json::json!({"1": "Ana", "2": "Acme"})
        );
        assert!(content_variables(&pos(&["contact.email"]), &v).is_err());
    }

    #[test]
    fn required_names_are_unique_and_checked() {
        assert_eq!(
            required_names(
                &[
                    "{{1}} {{contact.company}}",
                    "{{contact.attributes.plan}} {{1}}"
                ],
                &pos(&["contact.first_name"])
            )
            .unwrap(),
            pos(&[
                "contact.first_name",
                "contact.company",
                "contact.attributes.plan"
            ])
        );
        assert!(required_names(&["{{contact.attributes.}}"], &[]).is_err());
        // Issue 13: nothing is saved that cannot mean what it says.
        assert_eq!(
            required_names(&["Hi {{99999999999999999999}}"], &[]),
            Err(RenderError::BadPosition("99999999999999999999".into()))
        );
        assert_eq!(
            required_names(&["Hi {{contact.first_name"], &[]),
            Err(RenderError::Unclosed)
        );
        assert_eq!(
            required_names(&["Hi {{1000}}"], &pos(&["contact.first_name"])).unwrap_err(),
            RenderError::BadPosition("1000".into())
        );
        assert!(required_names(&["hi"], &pos(&["nope"])).is_err());
    }

    #[test]
    fn rendered_text_is_bounded() {
        let long = "x".repeat(MAX_RENDERED_CHARS);
        let v = vals(&[("contact.first_name", &long)]);
        assert_eq!(
            render("{{contact.first_name}}!", &[], &v),
            Err(RenderError::TooLong)
        );
    }
}
