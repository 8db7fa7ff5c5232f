//! Contact2Sale hook elements → typed values. A hook body is the lead
//! resource as C2S's `GET /integration/leads/{id}` returns it, and public
//! integrations disagree on the wrapping, so each element may be
//! `{id, hook_action, attributes}`, `{hook_action, data{type, id, attributes}}`
//! or `{hook_action, lead{id, attributes}}`.
//!
//! Leniency is deliberate: C2S answers nothing useful to a refusal, so only
//! what identifies the event (lead id, hook action) or orders it (the
//! timestamps) makes an element invalid. Any attribute may be null or empty;
//! an unreadable price is stored as null (the raw text stays in `attributes`);
//! e-mail and phone are validated by the enrichment worker, not here.

use crate::{error::WebhookError, fields::clip, types::PayloadHash};
use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The hook actions C2S can subscribe a URL to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookAction {
    CreateLead,
    UpdateLead,
    CloseLead,
}

impl HookAction {
    pub const ALL: [HookAction; 3] = [
        HookAction::CreateLead,
        HookAction::UpdateLead,
        HookAction::CloseLead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookAction::CreateLead => "on_create_lead",
            HookAction::UpdateLead => "on_update_lead",
            HookAction::CloseLead => "on_close_lead",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

/// Which wrapping an element came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{id, hook_action, attributes}`
    Flat,
    /// `{hook_action, data{type, id, attributes}}` (JSON:API)
    Data,
    /// `{hook_action, lead{id, attributes}}`
    Lead,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Flat => "flat",
            Shape::Data => "data",
            Shape::Lead => "lead",
        }
    }
}

/// The lead's attributes this service reads, normalised. Everything optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lead {
    pub customer_name: Option<String>,
    /// Trimmed and lower-cased, not validated (the worker does that).
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_phone2: Option<String>,
    pub customer_phone_global: Option<String>,
    pub seller_id: Option<String>,
    pub seller_name: Option<String>,
    pub seller_email: Option<String>,
    pub seller_phone: Option<String>,
    pub product_description: Option<String>,
    pub prop_ref: Option<String>,
    /// Minor units (centavos).
    pub price_cents: Option<i64>,
    pub city: Option<String>,
    pub neighbourhood: Option<String>,
    pub status_alias: Option<String>,
    pub status_name: Option<String>,
    pub lead_source: Option<String>,
    pub channel: Option<String>,
    pub done_details: Option<Value>,
    pub archive_details: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// One hook element, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadEvent {
    /// C2S's lead id, 1–255 characters.
    pub lead_id: String,
    pub hook_action: HookAction,
    pub shape: Shape,
    /// The lead's `attributes` object as received (`{}` when absent).
    pub attributes: Map<String, Value>,
    pub lead: Lead,
}

impl LeadEvent {
    /// The element as stored and hashed, whatever its wrapping:
    /// `{"id", "hook_action", "attributes"}`. The same event re-sent in
    /// another wrapping is therefore the same payload.
    ///
    /// `created_at` and `updated_at` are hashed as the instant they name
    /// (RFC 3339 UTC), so the same instant written two ways
    /// (`2025-03-12 09:15:44 -0300`, `2025-03-12T12:15:44Z`) is the same
    /// payload: a duplicate, not a reused key.
    pub fn canonical(&self) -> Value {
        let mut attributes = self.attributes.clone();
        for (key, at) in [
            ("created_at", self.lead.created_at),
            ("updated_at", self.lead.updated_at),
        ] {
            if let Some(at) = at {
                attributes.insert(key.into(), Value::String(rfc3339_utc(at)));
            }
        }
        json!({
            "id": self.lead_id,
            "hook_action": self.hook_action.as_str(),
            "attributes": attributes,
        })
    }

    pub fn payload_hash(&self) -> PayloadHash {
        PayloadHash::of_json(&self.canonical())
    }

    /// `c2s:<lead id>:<hook action>:<updated_at in RFC 3339 UTC>`; without
    /// `updated_at`, `…:sha256:<payload hash>` (identical elements are one
    /// event). A key longer than the column allows becomes
    /// `c2s:sha256:<hash of the key>`.
    pub fn idempotency_key(&self) -> String {
        let stamp = match self.lead.updated_at {
            Some(t) => rfc3339_utc(t),
            None => format!("sha256:{}", self.payload_hash().as_str()),
        };
        let key = format!("c2s:{}:{}:{stamp}", self.lead_id, self.hook_action.as_str());
        if key.len() <= crate::types::IdempotencyKey::MAX_LEN {
            key
        } else {
            format!(
                "c2s:sha256:{}",
                PayloadHash::of_bytes(key.as_bytes()).as_str()
            )
        }
    }

    /// sha256 hex of the normalised customer identity (see [`contact_hash`]).
    pub fn contact_hash(&self) -> String {
        contact_hash_phones(
            self.lead.customer_name.as_deref(),
            self.lead.customer_email.as_deref(),
            &[
                self.lead.customer_phone.as_deref(),
                self.lead.customer_phone2.as_deref(),
                self.lead.customer_phone_global.as_deref(),
            ],
        )
    }
}

/// RFC 3339 in UTC with a `Z`, whole seconds unless the source had fractions.
pub fn rfc3339_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// sha256 hex of the normalised customer identity with one phone: the same
/// as [`contact_hash_phones`] with that phone alone.
pub fn contact_hash(name: Option<&str>, email: Option<&str>, phone: Option<&str>) -> String {
    contact_hash_phones(name, email, &[phone])
}

/// sha256 hex of the normalised customer identity: the trimmed name, the
/// trimmed lower-cased e-mail and the phones' digits only (those with
/// digits, in order, comma-separated), joined by a unit separator (absent
/// parts are empty). The ingest passes `customer.phone`, `phone2` and
/// `phone_global` — every number the enrichment worker may look up (it tries
/// them in that order) — and the worker re-enriches an update only when
/// this changed.
pub fn contact_hash_phones(
    name: Option<&str>,
    email: Option<&str>,
    phones: &[Option<&str>],
) -> String {
    let name = name.map(str::trim).unwrap_or("");
    let email = email.map(|e| e.trim().to_lowercase()).unwrap_or_default();
    let phone = phones
        .iter()
        .map(|p| {
            p.unwrap_or("")
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x1f]);
    h.update(email.as_bytes());
    h.update([0x1f]);
    h.update(phone.as_bytes());
    hex::encode(h.finalize())
}

/// A C2S timestamp: RFC 3339 (`2026-11-20T14:05:12-03:00`), or
/// `YYYY-MM-DD HH:MM:SS ±zzzz` (also with fractions, `±zz:zz` or `Z`).
pub fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    const FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f %z",
    ];
    for f in FORMATS {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(raw, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    // `2026-11-20 14:05:12 UTC` / `… Z`
    if let Some(bare) = raw.strip_suffix(" UTC").or_else(|| raw.strip_suffix(" Z")) {
        return NaiveDateTime::parse_from_str(bare, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|n| n.and_utc());
    }
    // No zone at all (`2025-03-12 09:15:44`, as the Work API and some C2S
    // accounts write it): C2S is a Brazilian system and writes Brasília
    // time, UTC−03:00 all year (Brazil has had no daylight saving since 2019).
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(raw, f) {
            return n
                .and_local_timezone(brasilia())
                .single()
                .map(|t| t.with_timezone(&Utc));
        }
    }
    None
}

/// Brasília time: what a C2S timestamp without a zone is read in.
fn brasilia() -> FixedOffset {
    FixedOffset::west_opt(3 * 3600).expect("-03:00 is a valid offset")
}

/// A price in minor units: `350.000,00` (Brazilian), `350,000.00`,
/// `350000.00`, `350000`, `R$ 350.000`, or a JSON number (in major units).
/// One `.` followed by exactly three digits is a thousands separator
/// (`350.000` = 350 thousand, as C2S writes prices); a lone `,` followed by
/// one or two digits is the decimal comma. `None` for null, empty, negative
/// or unreadable values (`"a combinar"`) and for more than two decimals.
pub fn parse_price(raw: &Value) -> Option<i64> {
    match raw {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return (i >= 0).then(|| i.checked_mul(100)).flatten();
            }
            let f = n.as_f64()?;
            let cents = (f * 100.0).round();
            (f.is_finite() && f >= 0.0 && cents < 9.0e18).then_some(cents as i64)
        }
        Value::String(s) => parse_price_text(s),
        _ => None,
    }
}

fn parse_price_text(raw: &str) -> Option<i64> {
    let s: String = raw
        .trim()
        .trim_start_matches("R$")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
    {
        return None;
    }
    let (dots, commas) = (s.matches('.').count(), s.matches(',').count());
    let decimal = match (dots, commas) {
        (0, 0) => None,
        (_, 0) => {
            let after = s.rsplit('.').next().unwrap_or("");
            (dots == 1 && after.len() != 3).then_some('.')
        }
        (0, _) => {
            let after = s.rsplit(',').next().unwrap_or("");
            (commas == 1 && (1..=2).contains(&after.len())).then_some(',')
        }
        _ => {
            // Both: the last one is the decimal separator.
            let last = s.rfind(['.', ','])?;
            Some(s[last..].chars().next()?)
        }
    };
    let (int_part, frac_part) = match decimal {
        Some(sep) => {
            let (i, f) = s.rsplit_once(sep)?;
            (i.to_string(), f.to_string())
        }
        None => (s.clone(), String::new()),
    };
    // Separators left in the integer part are thousands separators: 3-digit groups only.
    let groups: Vec<&str> = int_part.split(['.', ',']).collect();
    if groups[0].is_empty() || groups[1..].iter().any(|g| g.len() != 3) {
        return None;
    }
    if frac_part.len() > 2 || !frac_part.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if decimal.is_some() && frac_part.is_empty() {
        return None;
    }
    let units: i64 = groups.concat().parse().ok()?;
    let cents: i64 = format!("{frac_part:0<2}").parse().ok()?;
    units.checked_mul(100)?.checked_add(cents)
}

/// Parses one element. Errors name the field (`data.id`, `attributes.customer`).
pub fn parse_element(el: &Value) -> Result<LeadEvent, WebhookError> {
    let obj = el
        .as_object()
        .ok_or_else(|| WebhookError::validation("element", "must be a JSON object"))?;
    let (shape, inner, prefix) = match (obj.get("data"), obj.get("lead")) {
        (Some(Value::Object(d)), _) => (Shape::Data, d, "data."),
        (_, Some(Value::Object(l))) => (Shape::Lead, l, "lead."),
        _ => (Shape::Flat, obj, ""),
    };
    let hook_action = match scalar_text(obj, "hook_action", "hook_action")? {
        None => return Err(WebhookError::validation("hook_action", "is required")),
        Some(raw) => HookAction::parse(&raw).ok_or_else(|| {
            WebhookError::validation(
                "hook_action",
                "must be on_create_lead, on_update_lead or on_close_lead",
            )
        })?,
    };
    let id_field = format!("{prefix}id");
    let lead_id = scalar_text(inner, "id", &id_field)?
        .ok_or_else(|| WebhookError::validation(&id_field, "is required"))?;
    // The id goes into C2S paths (`/leads/{id}/...`): letters, digits, `-`
    // and `_` only, so `.`, `..` or a `/` can never name another path.
    if lead_id.len() > 255
        || !lead_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(WebhookError::validation(
            &id_field,
            "must be at most 255 letters, digits, '-' or '_'",
        ));
    }
    let attr_field = format!("{prefix}attributes");
    let attributes = match inner.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => return Err(WebhookError::validation(&attr_field, "must be an object")),
    };
    let lead = parse_lead(&attributes, &attr_field)?;
    Ok(LeadEvent {
        lead_id,
        hook_action,
        shape,
        attributes,
        lead,
    })
}

fn parse_lead(a: &Map<String, Value>, at: &str) -> Result<Lead, WebhookError> {
    let f = |name: &str| format!("{at}.{name}");
    // The person the lead is about: an object or nothing (`[]` is not a customer).
    let customer = match a.get("customer") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            return Err(WebhookError::validation(f("customer"), "must be an object"));
        }
    };
    let seller = sub_object(a, "seller", &f("seller"))?;
    let product = sub_object(a, "product", &f("product"))?;
    let status = sub_object(a, "lead_status", &f("lead_status"))?;
    let txt = |o: Option<&Map<String, Value>>, parent: &str, key: &str, max: usize| {
        o.map(|o| scalar_text(o, key, &format!("{at}.{parent}.{key}")))
            .transpose()
            .map(|v| v.flatten().map(|s| clip(s, max)))
    };
    let stamp = |key: &str| -> Result<Option<DateTime<Utc>>, WebhookError> {
        scalar_text(a, key, &f(key))?
            .map(|raw| {
                parse_timestamp(&raw).ok_or_else(|| {
                    WebhookError::validation(
                        f(key),
                        "must be RFC 3339 or YYYY-MM-DD HH:MM:SS ±zzzz",
                    )
                })
            })
            .transpose()
    };
    Ok(Lead {
        customer_name: txt(customer, "customer", "name", 200)?,
        customer_email: txt(customer, "customer", "email", 254)?.map(|e| e.to_lowercase()),
        customer_phone: txt(customer, "customer", "phone", 40)?,
        customer_phone2: txt(customer, "customer", "phone2", 40)?,
        customer_phone_global: txt(customer, "customer", "phone_global", 40)?,
        seller_id: txt(seller, "seller", "id", 255)?,
        seller_name: txt(seller, "seller", "name", 200)?,
        seller_email: txt(seller, "seller", "email", 254)?.map(|e| e.to_lowercase()),
        seller_phone: txt(seller, "seller", "phone", 40)?,
        product_description: txt(product, "product", "description", 4000)?,
        prop_ref: txt(product, "product", "prop_ref", 255)?,
        price_cents: product.and_then(|p| p.get("price")).and_then(parse_price),
        city: txt(product, "product", "city", 200)?,
        neighbourhood: txt(product, "product", "neighbourhood", 200)?,
        status_alias: txt(status, "lead_status", "alias", 100)?,
        status_name: txt(status, "lead_status", "name", 200)?,
        lead_source: named(a, "lead_source", &f("lead_source"))?,
        channel: named(a, "channel", &f("channel"))?,
        done_details: details(a.get("done_details")),
        archive_details: details(a.get("archive_details")),
        created_at: stamp("created_at")?,
        updated_at: stamp("updated_at")?,
    })
}

/// A string or a number as text (C2S ids come both ways); absent, null or
/// blank is `None`; an object, array or boolean is a 422 naming the field.
fn scalar_text(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, WebhookError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(WebhookError::validation(field, "must be a string")),
    }
}

/// A nested object; absent, null, `""` or `[]` (as some serialisers write an empty one) is `None`.
fn sub_object<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'v Map<String, Value>>, WebhookError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::Array(a)) if a.is_empty() => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(WebhookError::validation(field, "must be an object")),
    }
}

/// `lead_source` / `channel`: a string, or an object with a `name` (else `alias`).
fn named(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>, WebhookError> {
    match obj.get(key) {
        Some(Value::Object(o)) => Ok(scalar_text(o, "name", &format!("{field}.name"))?
            .or(scalar_text(o, "alias", &format!("{field}.alias"))?)
            .map(|s| clip(s, 200))),
        _ => Ok(scalar_text(obj, key, field)?.map(|s| clip(s, 200))),
    }
}

/// Free-form details kept as JSON; null, `""`, `{}` and `[]` are `None`.
fn details(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        other => Some(other.clone()),
    }
}
