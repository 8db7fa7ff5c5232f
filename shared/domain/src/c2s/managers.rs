//! Managers of C2S sellers, the admins' CRUD (issue 12 §2): who is told when
//! a lead of one of their sellers closes (`enrichment::managers` matches and
//! notifies them). A seller is named by C2S seller id or by seller e-mail
//! (lower-cased). A manager's webhook is named by the SHA-256 of one of the
//! send worker's `OUTBOUND_WEBHOOK_URLS` entries — no URL or secret is stored.
//!
//! Every change is audit-logged (`crm.manager.*`, ids and counts only,
//! never names or e-mails) in the transaction that makes it.

use crate::{
    auth::Principal,
    campaigns::audit::{self, AuditEntry},
    crm::{
        ApiError,
        input::{Fields, Patch, required},
    },
    db::GenericClient,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Sellers one manager may follow.
pub const MAX_SELLERS: usize = 500;

/// A seller a manager follows: by C2S id or by e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Seller {
    Id { seller_id: String },
    Email { seller_email: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerOut {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub webhook_target_key: Option<String>,
    pub active: bool,
    pub sellers: Vec<Seller>,
    /// Lead-closed notifications sent to this manager so far (any status).
    pub notifications: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerList {
    pub managers: Vec<ManagerOut>,
}

/// A create (`id` none) or a change; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManagerInput {
    pub name: Patch<String>,
    pub email: Patch<String>,
    pub webhook_target_key: Patch<String>,
    pub active: Patch<bool>,
    /// Replaces the whole list when given.
    pub sellers: Option<Vec<Seller>>,
}

const FIELDS: &[&str] = &["name", "email", "webhook_target_key", "active", "sellers"];

impl ManagerInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, FIELDS)?;
        let email = f.text("email", 254)?.try_map(|e| {
            let e = e.to_lowercase();
            if crate::types::EmailAddress::parse(&e).is_err() {
                return Err(ApiError::validation(
                    "email",
                    "is not a valid e-mail address",
                ));
            }
            Ok(e)
        })?;
        let webhook_target_key = f.text("webhook_target_key", 64)?.try_map(|k| {
            let k = k.to_lowercase();
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::validation(
                    "webhook_target_key",
                    "must be the SHA-256 (64 hex digits) of an OUTBOUND_WEBHOOK_URLS entry",
                ));
            }
            Ok(k)
        })?;
        let sellers = match f.raw("sellers") {
            None => None,
            Some(Value::Array(items)) => Some(parse_sellers(items)?),
            Some(_) => return Err(ApiError::validation("sellers", "must be a list")),
        };
        Ok(Self {
            name: f.text("name", 200)?,
            email,
            webhook_target_key,
            active: match f.boolean("active")? {
                Patch::Null => return Err(ApiError::validation("active", "must be true or false")),
                other => other,
            },
            sellers,
        })
    }
}

fn parse_sellers(items: &[Value]) -> Result<Vec<Seller>, ApiError> {
    if items.len() > MAX_SELLERS {
        return Err(ApiError::validation(
            "sellers",
            format!("has more than {MAX_SELLERS} entries"),
        ));
    }
    let mut out: Vec<Seller> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("sellers[{i}].{name}");
        let Value::Object(map) = item else {
            return Err(ApiError::validation(
                format!("sellers[{i}]"),
                "must be {\"seller_id\": …} or {\"seller_email\": …}",
            ));
        };
        let text = |name: &str, max: usize| -> Result<Option<String>, ApiError> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() && s.trim().len() <= max => {
                    Ok(Some(s.trim().to_string()))
                }
                Some(Value::Number(n)) if name == "seller_id" => Ok(Some(n.to_string())),
                Some(_) => Err(ApiError::validation(
                    field(name),
                    format!("must be a non-empty string of at most {max} characters"),
                )),
            }
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !["seller_id", "seller_email"].contains(&k.as_str()))
        {
            return Err(ApiError::validation(field(unknown), "is not a known field"));
        }
        let seller = match (text("seller_id", 255)?, text("seller_email", 254)?) {
            (Some(seller_id), None) => Seller::Id { seller_id },
            (None, Some(e)) => {
                let seller_email = e.to_lowercase();
                if !seller_email.contains('@') {
                    return Err(ApiError::validation(
                        field("seller_email"),
                        "is not an e-mail address",
                    ));
                }
                Seller::Email { seller_email }
            }
            _ => {
                return Err(ApiError::validation(
                    format!("sellers[{i}]"),
                    "needs exactly one of seller_id and seller_email",
                ));
            }
        };
        if !out.contains(&seller) {
            out.push(seller);
        }
    }
    Ok(out)
}

fn dbe(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ApiError {
    move |e| ApiError::from_db(e, context)
}

async fn sellers_of(
    db: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Seller)>, ApiError> {
    let stmt = db
        .prepare_cached(
            "select manager_id, seller_id, seller_email from manager_sellers \
             where manager_id = any($1) order by created_at, id",
        )
        .await
        .map_err(dbe("preparing the sellers read"))?;
    Ok(db
        .query(&stmt, &[&ids])
        .await
        .map_err(dbe("reading the sellers"))?
        .iter()
        .map(|r| {
            let seller = match (r.get::<_, Option<String>>(1), r.get::<_, Option<String>>(2)) {
                (Some(seller_id), _) => Seller::Id { seller_id },
                (None, email) => Seller::Email {
                    seller_email: email.unwrap_or_default(),
                },
            };
            (r.get(0), seller)
        })
        .collect())
}

async fn read(db: &impl GenericClient, id: Option<Uuid>) -> Result<Vec<ManagerOut>, ApiError> {
    let stmt = db
        .prepare_cached(
            "select m.id, m.name, m.email, m.webhook_target_key, m.active, m.created_at, m.updated_at, \
                    (select count(*) from manager_notifications n where n.manager_id = m.id) \
             from managers m where ($1::uuid is null or m.id = $1) order by m.name, m.id",
        )
        .await
        .map_err(dbe("preparing the managers read"))?;
    let rows = db
        .query(&stmt, &[&id])
        .await
        .map_err(dbe("reading managers"))?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let sellers = sellers_of(db, &ids).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            ManagerOut {
                id,
                name: r.get(1),
                email: r.get(2),
                webhook_target_key: r.get(3),
                active: r.get(4),
                created_at: r.get(5),
                updated_at: r.get(6),
                notifications: r.get(7),
                sellers: sellers
                    .iter()
                    .filter(|(m, _)| *m == id)
                    .map(|(_, s)| s.clone())
                    .collect(),
            }
        })
        .collect())
}

pub async fn list(db: &impl GenericClient) -> Result<ManagerList, ApiError> {
    Ok(ManagerList {
        managers: read(db, None).await?,
    })
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<ManagerOut, ApiError> {
    read(db, Some(id))
        .await?
        .pop()
        .ok_or(ApiError::NotFound("manager"))
}

async fn replace_sellers(
    db: &impl GenericClient,
    id: Uuid,
    sellers: &[Seller],
) -> Result<(), ApiError> {
    db.execute("delete from manager_sellers where manager_id = $1", &[&id])
        .await
        .map_err(dbe("clearing the sellers"))?;
    let stmt = db
        .prepare_cached(
            "insert into manager_sellers (manager_id, seller_id, seller_email) values ($1, $2, $3)",
        )
        .await
        .map_err(dbe("preparing the seller insert"))?;
    for s in sellers {
        let (sid, semail) = match s {
            Seller::Id { seller_id } => (Some(seller_id.as_str()), None),
            Seller::Email { seller_email } => (None, Some(seller_email.as_str())),
        };
        db.execute(&stmt, &[&id, &sid, &semail])
            .await
            .map_err(dbe("adding a seller"))?;
    }
    Ok(())
}

fn unreachable_manager() -> ApiError {
    ApiError::validation(
        "email",
        "a manager needs an e-mail or a webhook_target_key to be notified",
    )
}

async fn audit(
    db: &impl GenericClient,
    who: &Principal,
    verb: &str,
    id: Uuid,
    details: Value,
) -> Result<(), ApiError> {
    audit::record(
        db,
        &AuditEntry {
            action: &format!("crm.manager.{verb}"),
            actor: &who.actor(),
            target_type: "c2s_manager",
            target_id: Some(id.to_string()),
            details,
        },
    )
    .await
    .map_err(ApiError::Unexpected)
}

/// Creates a manager (inside the caller's transaction): `name` and one of
/// `email` / `webhook_target_key` required.
pub async fn create(
    db: &impl GenericClient,
    who: &Principal,
    input: ManagerInput,
) -> Result<ManagerOut, ApiError> {
    let name = required(input.name, "name")?;
    let email = input.email.given().flatten();
    let key = input.webhook_target_key.given().flatten();
    if email.is_none() && key.is_none() {
        return Err(unreachable_manager());
    }
    let active = input.active.given().flatten().unwrap_or(true);
    let stmt = db
        .prepare_cached(
            "insert into managers (name, email, webhook_target_key, active) values ($1, $2, $3, $4) returning id",
        )
        .await
        .map_err(dbe("preparing the manager insert"))?;
    let id: Uuid = db
        .query_one(&stmt, &[&name, &email, &key, &active])
        .await
        .map_err(dbe("creating the manager"))?
        .get(0);
    let sellers = input.sellers.unwrap_or_default();
    replace_sellers(db, id, &sellers).await?;
    audit(db, who, "created", id, json!({"sellers": sellers.len()})).await?;
    get(db, id).await
}

/// Changes a manager: absent fields stay, `sellers` replaces the list.
pub async fn update(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    input: ManagerInput,
) -> Result<ManagerOut, ApiError> {
    let current = {
        let stmt = db
            .prepare_cached("select name, email, webhook_target_key, active from managers where id = $1 for update")
            .await
            .map_err(dbe("preparing the manager lock"))?;
        db.query_opt(&stmt, &[&id])
            .await
            .map_err(dbe("locking the manager"))?
            .ok_or(ApiError::NotFound("manager"))?
    };
    let mut changed: Vec<&str> = Vec::new();
    let name: String = match input.name {
        Patch::Absent => current.get(0),
        Patch::Null => return Err(ApiError::validation("name", "cannot be empty")),
        Patch::Set(n) => n,
    };
    let email = input.email.given().unwrap_or_else(|| current.get(1));
    let key = input
        .webhook_target_key
        .given()
        .unwrap_or_else(|| current.get(2));
    let active = input
        .active
        .given()
        .flatten()
        .unwrap_or_else(|| current.get(3));
    if email.is_none() && key.is_none() {
        return Err(unreachable_manager());
    }
    for (field, differs) in [
        ("name", name != current.get::<_, String>(0)),
        ("email", email != current.get::<_, Option<String>>(1)),
        (
            "webhook_target_key",
            key != current.get::<_, Option<String>>(2),
        ),
        ("active", active != current.get::<_, bool>(3)),
    ] {
        if differs {
            changed.push(field);
        }
    }
    if !changed.is_empty() {
        let stmt = db
            .prepare_cached(
                "update managers set name = $2, email = $3, webhook_target_key = $4, active = $5, \
                        updated_at = now() where id = $1",
            )
            .await
            .map_err(dbe("preparing the manager update"))?;
        db.execute(&stmt, &[&id, &name, &email, &key, &active])
            .await
            .map_err(dbe("updating the manager"))?;
    }
    if let Some(sellers) = &input.sellers {
        let before = get(db, id).await?.sellers;
        if &before != sellers {
            replace_sellers(db, id, sellers).await?;
            changed.push("sellers");
        }
    }
    if !changed.is_empty() {
        audit(
            db,
            who,
            "updated",
            id,
            json!({"fields": changed, "sellers": input.sellers.as_ref().map(Vec::len)}),
        )
        .await?;
    }
    get(db, id).await
}

/// Deletes a manager that was never notified; one with notifications is
/// kept for their history (409 `manager_has_notifications`: set `active: false`).
pub async fn delete(db: &impl GenericClient, who: &Principal, id: Uuid) -> Result<(), ApiError> {
    let m = get(db, id).await?;
    if m.notifications > 0 {
        return Err(ApiError::Refused {
            code: "manager_has_notifications",
            message: format!(
                "the manager has {} notification(s) on record; set active to false instead",
                m.notifications
            ),
        });
    }
    db.execute("delete from managers where id = $1", &[&id])
        .await
        .map_err(dbe("deleting the manager"))?;
    audit(db, who, "deleted", id, json!({"sellers": m.sellers.len()})).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn sellers_need_exactly_one_key_and_are_deduplicated() {
        let m = ManagerInput::parse(body(json!({"name": "Ana", "sellers": [
            {"seller_id": "7"}, {"seller_email": "Bo@X.com"}, {"seller_id": 7}]})))
        .unwrap();
        assert_eq!(
            m.sellers.unwrap(),
            [
                Seller::Id {
                    seller_id: "7".into()
                },
                Seller::Email {
                    seller_email: "bo@x.com".into()
                }
            ]
        );
        let e = ManagerInput::parse(body(
            json!({"sellers": [{"seller_id": "1", "seller_email": "a@b.c"}]}),
        ))
        .unwrap_err();
        assert_eq!(e.body()["field"], "sellers[0]");
        let e = ManagerInput::parse(body(json!({"sellers": [{"id": "1"}]}))).unwrap_err();
        assert_eq!(e.body()["field"], "sellers[0].id");
    }

    #[test]
    fn webhook_key_is_a_sha256_and_unknown_fields_are_refused() {
        let e = ManagerInput::parse(body(json!({"webhook_target_key": "https://x"}))).unwrap_err();
        assert_eq!(e.body()["field"], "webhook_target_key");
        let e = ManagerInput::parse(body(json!({"nam": "x"}))).unwrap_err();
        assert_eq!(e.body()["field"], "nam");
    }
}
