//! Segments: a saved filter over contacts, evaluated when a campaign is
//! snapshotted (so segments stay dynamic). The filter is a JSON object; every
//! key is optional and the keys are ANDed:
//!
//! | key | type | matches contacts |
//! |---|---|---|
//! | `pipeline_id` | uuid | with an open deal in this pipeline |
//! | `stage_ids` | [uuid] | with an open deal in one of these stages (and in `pipeline_id` when both are given: the same deal) |
//! | `reply_status` | [string] | whose latest classified reply is one of these |
//! | `owner_id` | string | owned by this user |
//! | `tags_any` | [string] | whose `attributes.tags` array holds any of these |
//! | `attributes` | object | whose `attributes` contain this object (JSON containment) |
//! | `created_after` / `created_before` | RFC 3339 | created at or after / before |
//! | `has_phone` / `has_email` | bool | with (true) or without (false) a phone / e-mail |
//!
//! `{}` matches every contact. Unknown keys and wrong types are refused
//! naming the key (`filter.<key>`). The filter compiles to SQL with every
//! value bound as a parameter — nothing from the filter is spliced into SQL.

use crate::crm::ApiError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The reply statuses a contact can have (the `contacts.reply_status` CHECK).
pub const REPLY_STATUSES: &[&str] = &[
    "interested",
    "meeting_request",
    "question",
    "not_interested",
    "unsubscribe",
    "out_of_office",
    "wrong_person",
    "unknown",
];

const MAX_LIST: usize = 100;

/// A validated segment filter (stored in `segments.filter` as [`Self::to_json`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_ids: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_status: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags_any: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_phone: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_email: Option<bool>,
}

fn bad(key: &str, reason: impl Into<String>) -> ApiError {
    ApiError::validation(format!("filter.{key}"), reason)
}

fn uuid_of(key: &str, v: &Value) -> Result<Uuid, ApiError> {
    v.as_str()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .ok_or_else(|| bad(key, "must be a UUID"))
}

fn strings(key: &str, v: &Value, max_len: usize) -> Result<Vec<String>, ApiError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad(key, "must be an array of strings"))?;
    if items.len() > MAX_LIST {
        return Err(bad(key, format!("has more than {MAX_LIST} entries")));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let s = item
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().count() <= max_len)
            .ok_or_else(|| {
                bad(
                    key,
                    format!("must hold non-empty strings of at most {max_len} characters"),
                )
            })?;
        if !out.iter().any(|o: &String| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

fn time_of(key: &str, v: &Value) -> Result<DateTime<Utc>, ApiError> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad(key, "must be an RFC 3339 timestamp"))
}

fn bool_of(key: &str, v: &Value) -> Result<bool, ApiError> {
    v.as_bool().ok_or_else(|| bad(key, "must be true or false"))
}

impl SegmentFilter {
    /// Validates a filter object; `null` fields count as absent.
    pub fn parse(raw: &Value) -> Result<Self, ApiError> {
        let obj = raw
            .as_object()
            .ok_or_else(|| ApiError::validation("filter", "must be a JSON object"))?;
        let mut f = SegmentFilter::default();
        for (key, v) in obj {
            if v.is_null() {
                if !Self::KEYS.contains(&key.as_str()) {
                    return Err(bad(key, "is not a known filter key"));
                }
                continue;
            }
            match key.as_str() {
                "pipeline_id" => f.pipeline_id = Some(uuid_of(key, v)?),
                "stage_ids" => {
                    let arr = v
                        .as_array()
                        .ok_or_else(|| bad(key, "must be an array of UUIDs"))?;
                    if arr.len() > MAX_LIST {
                        return Err(bad(key, format!("has more than {MAX_LIST} entries")));
                    }
                    f.stage_ids = arr
                        .iter()
                        .map(|x| uuid_of(key, x))
                        .collect::<Result<_, _>>()?;
                    f.stage_ids.sort_unstable();
                    f.stage_ids.dedup();
                }
                "reply_status" => {
                    f.reply_status = strings(key, v, 40)?;
                    if let Some(unknown) = f
                        .reply_status
                        .iter()
                        .find(|s| !REPLY_STATUSES.contains(&s.as_str()))
                    {
                        return Err(bad(
                            key,
                            format!(
                                "holds {unknown:?}, not one of {}",
                                REPLY_STATUSES.join(", ")
                            ),
                        ));
                    }
                }
                "owner_id" => {
                    let s = v
                        .as_str()
                        .map(str::trim)
                        .filter(|s| !s.is_empty() && s.len() <= 200)
                        .ok_or_else(|| bad(key, "must be a non-empty string"))?;
                    f.owner_id = Some(s.to_string());
                }
                "tags_any" => f.tags_any = strings(key, v, 100)?,
                "attributes" => {
                    let m = v.as_object().ok_or_else(|| bad(key, "must be an object"))?;
                    if m.is_empty() {
                        continue;
                    }
                    if v.to_string().len() > 4096 {
                        return Err(bad(key, "is larger than 4096 bytes"));
                    }
                    f.attributes = Some(m.clone());
                }
                "created_after" => f.created_after = Some(time_of(key, v)?),
                "created_before" => f.created_before = Some(time_of(key, v)?),
                "has_phone" => f.has_phone = Some(bool_of(key, v)?),
                "has_email" => f.has_email = Some(bool_of(key, v)?),
                other => return Err(bad(other, "is not a known filter key")),
            }
        }
        if let (Some(a), Some(b)) = (f.created_after, f.created_before)
            && a >= b
        {
            return Err(bad("created_before", "must be later than created_after"));
        }
        Ok(f)
    }

    pub const KEYS: &'static [&'static str] = &[
        "pipeline_id",
        "stage_ids",
        "reply_status",
        "owner_id",
        "tags_any",
        "attributes",
        "created_after",
        "created_before",
        "has_phone",
        "has_email",
    ];

    /// The normalised JSON stored in `segments.filter`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("filters serialise")
    }

    /// A filter read back from `segments.filter` (validated again).
    pub fn from_stored(v: &Value) -> anyhow::Result<Self> {
        Self::parse(v).map_err(|e| anyhow::anyhow!("stored segment filter is invalid: {e}"))
    }

    /// The pipeline and stage ids the filter names (the API checks they exist).
    pub fn referenced_ids(&self) -> (Option<Uuid>, &[Uuid]) {
        (self.pipeline_id, &self.stage_ids)
    }

    /// Appends this filter's conditions on contacts aliased `c` to `q`, as
    /// `and …` clauses (nothing for the empty filter).
    pub fn push_where(&self, q: &mut Sql) {
        if self.pipeline_id.is_some() || !self.stage_ids.is_empty() {
            q.push(
                " and exists (select 1 from deals d where d.contact_id = c.id and d.status = 'open'",
            );
            if let Some(p) = self.pipeline_id {
                let n = q.bind(p);
                q.push(&format!(" and d.pipeline_id = {n}"));
            }
            if !self.stage_ids.is_empty() {
                let n = q.bind(self.stage_ids.clone());
                q.push(&format!(" and d.stage_id = any({n}::uuid[])"));
            }
            q.push(")");
        }
        if !self.reply_status.is_empty() {
            let n = q.bind(self.reply_status.clone());
            q.push(&format!(" and c.reply_status = any({n}::text[])"));
        }
        if let Some(owner) = &self.owner_id {
            let n = q.bind(owner.clone());
            q.push(&format!(" and c.owner_id = {n}"));
        }
        if !self.tags_any.is_empty() {
            let n = q.bind(self.tags_any.clone());
            q.push(&format!(
                " and jsonb_typeof(c.attributes -> 'tags') = 'array' and (c.attributes -> 'tags') ?| {n}::text[]"
            ));
        }
        if let Some(attrs) = &self.attributes {
            let n = q.bind(Value::Object(attrs.clone()));
            q.push(&format!(" and c.attributes @> {n}::jsonb"));
        }
        if let Some(t) = self.created_after {
            let n = q.bind(t);
            q.push(&format!(" and c.created_at >= {n}"));
        }
        if let Some(t) = self.created_before {
            let n = q.bind(t);
            q.push(&format!(" and c.created_at < {n}"));
        }
        if let Some(b) = self.has_phone {
            q.push(if b {
                " and c.phone is not null"
            } else {
                " and c.phone is null"
            });
        }
        if let Some(b) = self.has_email {
            q.push(if b {
                " and c.email is not null"
            } else {
                " and c.email is null"
            });
        }
    }
}

/// SQL text with its bound parameters, built together so every `$n` has its value.
#[derive(Default)]
pub struct Sql {
    pub text: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl std::fmt::Debug for Sql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Parameters are values from filters: never printed.
        write!(f, "Sql({:?}, {} params)", self.text, self.params.len())
    }
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            params: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Binds a value and returns its placeholder (`$n`).
    pub fn bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_filter_parses_and_round_trips() {
        let raw = json!({
            "pipeline_id": "0192f0c8-7a00-7000-8000-000000000001",
            "stage_ids": ["0192f0c8-7a00-7000-8000-000000000002"],
            "reply_status": ["interested", "interested", "question"],
            "owner_id": "u1",
            "tags_any": ["vip"],
            "attributes": {"plan": "pro"},
            "created_after": "2026-01-01T00:00:00Z",
            "created_before": "2026-12-01T00:00:00+03:00",
            "has_phone": true,
            "has_email": false
        });
        let f = SegmentFilter::parse(&raw).unwrap();
        assert_eq!(f.reply_status, vec!["interested", "question"]);
        assert_eq!(SegmentFilter::parse(&f.to_json()).unwrap(), f);
        assert_eq!(
            SegmentFilter::parse(&json!({})).unwrap().to_json(),
            json!({})
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        for (raw, field) in [
            (json!({"stage": "x"}), "filter.stage"),
            (json!({"pipeline_id": "nope"}), "filter.pipeline_id"),
            (json!({"reply_status": ["happy"]}), "filter.reply_status"),
            (json!({"tags_any": "vip"}), "filter.tags_any"),
            (json!({"has_phone": "yes"}), "filter.has_phone"),
            (
                json!({"created_after": "yesterday"}),
                "filter.created_after",
            ),
            (
                json!({"created_after": "2026-02-01T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"}),
                "filter.created_before",
            ),
        ] {
            let e = SegmentFilter::parse(&raw).unwrap_err();
            assert_eq!(e.body()["field"], field, "{raw}");
        }
        assert_eq!(
            SegmentFilter::parse(&json!([])).unwrap_err().body()["field"],
            "filter"
        );
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let f = SegmentFilter::parse(&json!({
            "owner_id": "x'; drop table contacts; --",
            "tags_any": ["a'b"],
            "attributes": {"k": "v'"},
            "has_email": true
        }))
        .unwrap();
        let mut q = Sql::new("select c.id from contacts c where true");
        f.push_where(&mut q);
        assert!(!q.text.contains("drop table"));
        assert!(!q.text.contains("a'b"));
        assert!(!q.text.contains("v'"));
        assert_eq!(q.params().len(), 3);
        assert!(q.text.contains("c.owner_id = $1"));
    }
}
