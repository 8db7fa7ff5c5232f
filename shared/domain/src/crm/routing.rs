//! Lead routing (issue 10 §3): who gets a contact a webhook creates. One
//! rule per source (`lead_routing`, migrations/V18): leave it unowned (the
//! default), give it to a fixed user, or round-robin over a set of users.
//! The rule is applied by one SQL function, `lead_route_assign`, that every
//! flow calls for the contacts it inserted (the Instantly flow from SQL,
//! Cal.com and Twilio through [`route_new_contact`]); round-robin is fair
//! under concurrency because it advances under the rule row's lock.
//!
//! Admins read the rules (GET /api/v1/lead-routing) and set one
//! (PUT /api/v1/lead-routing/{source}); every change is audited.

use super::{
    Done,
    error::ApiError,
    input::{Fields, Patch},
    ownership::active_owner,
};
use crate::{
    auth::Principal,
    campaigns::audit::{self, AuditEntry},
    db::GenericClient,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The most users one round-robin rule may name (the table's check).
pub const MAX_USERS: usize = 100;

/// A webhook source that creates contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Instantly,
    Calcom,
    Twilio,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Instantly, Source::Calcom, Source::Twilio];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Instantly => "instantly",
            Source::Calcom => "calcom",
            Source::Twilio => "twilio",
        }
    }

    /// From the `{source}` path segment; an unknown one is 404.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or(ApiError::NotFound("lead routing source"))
    }
}

/// What a rule does with a new lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Unowned,
    Fixed(Uuid),
    RoundRobin(Vec<Uuid>),
}

impl Rule {
    fn mode(&self) -> &'static str {
        match self {
            Rule::Unowned => "unowned",
            Rule::Fixed(_) => "fixed",
            Rule::RoundRobin(_) => "round_robin",
        }
    }

    fn user_ids(&self) -> Vec<Uuid> {
        match self {
            Rule::Unowned => Vec::new(),
            Rule::Fixed(id) => vec![*id],
            Rule::RoundRobin(ids) => ids.clone(),
        }
    }

    /// Body of PUT /api/v1/lead-routing/{source}: `{"mode": "unowned"}`,
    /// `{"mode": "fixed", "user_id"}` or `{"mode": "round_robin", "user_ids": [...]}`.
    /// Users are checked against the database by [`set_rule`].
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let ids = body.get("user_ids").cloned();
        let mut rest = body;
        rest.remove("user_ids");
        let f = Fields::new(rest, &["mode", "user_id"])?;
        let mode = match f.text("mode", 20)? {
            Patch::Set(m) => m,
            _ => {
                return Err(ApiError::validation(
                    "mode",
                    "is required: unowned, fixed or round_robin",
                ));
            }
        };
        let user_id = f.uuid("user_id")?;
        let no = |field: &str, mode: &str| {
            ApiError::validation(field, format!("is not taken by mode {mode}"))
        };
        match mode.as_str() {
            "unowned" => {
                if !user_id.is_absent() {
                    return Err(no("user_id", "unowned"));
                }
                if ids.is_some() {
                    return Err(no("user_ids", "unowned"));
                }
                Ok(Rule::Unowned)
            }
            "fixed" => {
                if ids.is_some() {
                    return Err(no("user_ids", "fixed"));
                }
                match user_id {
                    Patch::Set(id) => Ok(Rule::Fixed(id)),
                    _ => Err(ApiError::validation(
                        "user_id",
                        "is required for mode fixed",
                    )),
                }
            }
            "round_robin" => {
                if !user_id.is_absent() {
                    return Err(no("user_id", "round_robin"));
                }
                let bad = || {
                    ApiError::validation(
                        "user_ids",
                        format!("must be an array of 1 to {MAX_USERS} distinct user ids"),
                    )
                };
                let Some(Value::Array(items)) = ids else {
                    return Err(bad());
                };
                let mut out: Vec<Uuid> = Vec::with_capacity(items.len());
                for item in items {
                    let id = item
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s.trim()).ok())
                        .ok_or_else(bad)?;
                    if out.contains(&id) {
                        return Err(bad());
                    }
                    out.push(id);
                }
                if out.is_empty() || out.len() > MAX_USERS {
                    return Err(bad());
                }
                Ok(Rule::RoundRobin(out))
            }
            _ => Err(ApiError::validation(
                "mode",
                "must be unowned, fixed or round_robin",
            )),
        }
    }
}

/// A rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    pub source: Source,
    pub mode: String,
    pub user_ids: Vec<Uuid>,
    /// Round-robin: who the next lead goes to if they are still active.
    pub next_user_id: Option<Uuid>,
    pub updated_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const RULE_COLUMNS: &str = "source, mode, user_ids, next_index, updated_by, updated_at";

fn view(row: &tokio_postgres::Row) -> Result<RuleView, ApiError> {
    let source: String = row.get(0);
    let user_ids: Vec<Uuid> = row.get(2);
    let next: i32 = row.get(3);
    let mode: String = row.get(1);
    let next_user_id = (mode == "round_robin")
        .then(|| {
            usize::try_from(next)
                .ok()
                .and_then(|i| user_ids.get(i).copied())
        })
        .flatten();
    Ok(RuleView {
        source: Source::parse(&source)
            .map_err(|_| anyhow::anyhow!("lead_routing holds an unknown source"))?,
        mode,
        user_ids,
        next_user_id,
        updated_by: row.get(4),
        updated_at: row.get(5),
    })
}

/// GET /api/v1/lead-routing (admins): every source's rule.
pub async fn list_rules(db: &impl GenericClient, who: &Principal) -> Result<Value, ApiError> {
    admin_only(who)?;
    let rows = db
        .query(
            &format!("select {RULE_COLUMNS} from lead_routing order by source"),
            &[],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "reading the lead routing rules"))?;
    let rules = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "rules": rules }))
}

fn admin_only(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only admins may read or change lead routing".into(),
        ))
    }
}

/// PUT /api/v1/lead-routing/{source} (admins): replaces the rule (the
/// round-robin starts again at its first user), audited with the old and
/// new rule (ids only). Every named user must be active (422).
pub async fn set_rule(
    db: &impl GenericClient,
    who: &Principal,
    source: Source,
    rule: Rule,
) -> Result<Done, ApiError> {
    admin_only(who)?;
    let field = if matches!(rule, Rule::Fixed(_)) {
        "user_id"
    } else {
        "user_ids"
    };
    for id in rule.user_ids() {
        active_owner(db, &id.to_string())
            .await
            .map_err(|_| ApiError::validation(field, format!("{id} is not an active user")))?;
    }
    let old = db
        .query_one(
            "select mode, user_ids from lead_routing where source = $1 for update",
            &[&source.as_str()],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "locking the lead routing rule"))?;
    let (old_mode, old_ids): (String, Vec<Uuid>) = (old.get(0), old.get(1));
    let row = db
        .query_one(
            &format!(
                "update lead_routing set mode = $2, user_ids = $3, next_index = 0, \
                 updated_by = $4, updated_at = now() where source = $1 returning {RULE_COLUMNS}"
            ),
            &[
                &source.as_str(),
                &rule.mode(),
                &rule.user_ids(),
                &who.actor(),
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "updating the lead routing rule"))?;
    audit::record(
        db,
        &AuditEntry {
            action: "crm.lead_routing.updated",
            actor: &who.actor(),
            target_type: "lead_routing",
            target_id: Some(source.as_str().to_string()),
            details: json!({
                "from": {"mode": old_mode, "user_ids": old_ids},
                "to": {"mode": rule.mode(), "user_ids": rule.user_ids()},
            }),
        },
    )
    .await?;
    let body = serde_json::to_value(view(&row)?).expect("a rule always serialises");
    Ok(Done::new(200, body))
}

/// Applies `source`'s rule to a contact the caller's flow has just inserted
/// (never to one it found): the owner it got, if any.
pub async fn route_new_contact(
    db: &impl GenericClient,
    contact_id: Uuid,
    source: Source,
) -> anyhow::Result<Option<String>> {
    let stmt = db
        .prepare_cached("select lead_route_assign($1, $2)")
        .await
        .context("preparing the lead routing")?;
    let row = db
        .query_one(&stmt, &[&contact_id, &source.as_str()])
        .await
        .context("routing a new lead")?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Rule, ApiError> {
        Rule::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn each_mode_takes_exactly_its_users() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(parse(json!({"mode": "unowned"})).unwrap(), Rule::Unowned);
        assert_eq!(
            parse(json!({"mode": "fixed", "user_id": a})).unwrap(),
            Rule::Fixed(a)
        );
        assert_eq!(
            parse(json!({"mode": "round_robin", "user_ids": [a, b]})).unwrap(),
            Rule::RoundRobin(vec![a, b])
        );
        for (body, field) in [
            (json!({}), "mode"),
            (json!({"mode": "random"}), "mode"),
            (json!({"mode": "unowned", "user_id": a}), "user_id"),
            (json!({"mode": "fixed"}), "user_id"),
            (json!({"mode": "fixed", "user_id": "x"}), "user_id"),
            (json!({"mode": "fixed", "user_ids": [a]}), "user_ids"),
            (json!({"mode": "round_robin", "user_ids": []}), "user_ids"),
            (
                json!({"mode": "round_robin", "user_ids": [a, a]}),
                "user_ids",
            ),
            (
                json!({"mode": "round_robin", "user_ids": ["x"]}),
                "user_ids",
            ),
            (json!({"mode": "round_robin", "user_ids": a}), "user_ids"),
            (json!({"mode": "round_robin", "user_ids": [a], "x": 1}), "x"),
        ] {
            assert_eq!(
                parse(body.clone()).unwrap_err().body()["field"],
                field,
                "{body}"
            );
        }
    }

    #[test]
    fn unknown_sources_are_not_found() {
        assert_eq!(Source::parse("twilio").unwrap(), Source::Twilio);
        assert_eq!(Source::parse("c2s").unwrap_err().status(), 404);
    }
}
