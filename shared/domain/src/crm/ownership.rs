//! Owners are users (issue 10 §3): the check that an owner written through
//! the API is an active `users` row, and the one transfer every change of a
//! contact's owner goes through — assign (admin), claim (a member takes an
//! unowned contact) and the claim a board drag makes. A transfer moves the
//! contact and its open deals together, logs who gave what to whom on the
//! timeline and enqueues a `contact.assigned` outbound event, all in the
//! caller's transaction.
//!
//! `owner_id` is text: rows written before accounts may hold a free-text
//! owner. Those keep working (reads and writes compare strings) until the
//! record is reassigned; nothing new is written that is not a user's id.

use super::{
    Done,
    error::ApiError,
    input::{Fields, Patch},
    log_system, records,
};
use crate::{
    auth::Principal,
    db::GenericClient,
    jobs::{self, DeliverWebhook, Job},
};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The outbound event a transfer enqueues.
pub const ASSIGNED_EVENT: &str = "contact.assigned";

/// An `owner_id` the API may write: the id of an active user. Anything else
/// (not a UUID, no such user, deactivated) is 422 on `owner_id`.
pub async fn active_owner(db: &impl GenericClient, raw: &str) -> Result<Uuid, ApiError> {
    let not_a_user = || ApiError::validation("owner_id", "is not an active user");
    let id = Uuid::parse_str(raw.trim()).map_err(|_| not_a_user())?;
    let stmt = db
        .prepare_cached("select 1 from users where id = $1 and active")
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the owner check"))?;
    db.query_opt(&stmt, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "checking the owner"))?
        .map(|_| id)
        .ok_or_else(not_a_user)
}

/// How an owner change came about (timeline metadata and the event's `via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// An admin's POST /crm/actions/contacts/{id}/assign (or an owner_id in a contact update).
    Assign,
    /// A member's POST /crm/actions/contacts/{id}/claim.
    Claim,
    /// A member dragged an unowned deal on the board.
    BoardMove,
}

/// What a transfer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub from_owner_id: Option<String>,
    pub to_owner_id: Option<String>,
    /// Open deals whose owner changed with the contact's.
    pub deal_ids: Vec<Uuid>,
    /// False when the contact and its open deals already had this owner.
    pub changed: bool,
    #[serde(skip)]
    pub message_id: Option<Uuid>,
}

/// Sets the contact's owner (locked by the caller; its owner was `from`
/// before this request, and may already be `to` when the caller wrote it)
/// and its open deals' to `to`; logs and enqueues the event when anything
/// changed.
pub async fn transfer(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    from: Option<String>,
    to: Option<&str>,
    via: Via,
) -> Result<Transfer, ApiError> {
    if from.as_deref() != to {
        let stmt = db
            .prepare_cached(
                "update contacts set owner_id = $2, updated_at = now() \
                 where id = $1 and owner_id is distinct from $2",
            )
            .await
            .map_err(|e| ApiError::from_db(e, "preparing the owner update"))?;
        db.execute(&stmt, &[&contact_id, &to])
            .await
            .map_err(|e| ApiError::from_db(e, "setting the contact's owner"))?;
    }
    let deals = db
        .prepare_cached(
            "update deals set owner_id = $2, updated_at = now() \
             where contact_id = $1 and status = 'open' and owner_id is distinct from $2 returning id",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the deals' owner update"))?;
    let mut deal_ids: Vec<Uuid> = db
        .query(&deals, &[&contact_id, &to])
        .await
        .map_err(|e| ApiError::from_db(e, "moving the open deals with their contact"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    deal_ids.sort();
    let changed = from.as_deref() != to || !deal_ids.is_empty();
    let mut out = Transfer {
        from_owner_id: from,
        to_owner_id: to.map(str::to_string),
        deal_ids,
        changed,
        message_id: None,
    };
    if !changed {
        return Ok(out);
    }
    let names = db
        .prepare_cached(
            "select (select name from users where id::text = $1), (select name from users where id::text = $2)",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the names read"))?;
    let row = db
        .query_one(&names, &[&who.user_id(), &to])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the users' names"))?;
    let by: String = row
        .get::<_, Option<String>>(0)
        .unwrap_or_else(|| who.actor());
    let body = match (via, to, row.get::<_, Option<String>>(1)) {
        (_, None, _) => format!("{by} left this contact unowned"),
        (Via::Assign, Some(_), Some(name)) => format!("{by} assigned this contact to {name}"),
        (Via::Claim, ..) => format!("{by} claimed this contact"),
        (Via::BoardMove, ..) => format!("{by} claimed this contact by moving its deal"),
        (Via::Assign, Some(id), None) => format!("{by} assigned this contact to user:{id}"),
    };
    let at = Utc::now();
    let metadata = json!({
        "event": "contact_assigned",
        "via": via,
        "by": who.actor(),
        "from_owner_id": out.from_owner_id,
        "to_owner_id": out.to_owner_id,
        "deal_ids": out.deal_ids,
    });
    log_system(db, contact_id, None, &body, metadata, &who.actor()).await?;
    let message_id = jobs::enqueue(
        db,
        &Job::DeliverWebhook(DeliverWebhook {
            v: 1,
            event_id: Uuid::now_v7(),
            event_type: ASSIGNED_EVENT.into(),
            occurred_at: at,
            payload: json!({
                "contact_id": contact_id,
                "from_owner_id": out.from_owner_id,
                "to_owner_id": out.to_owner_id,
                "deal_ids": out.deal_ids,
                "via": via,
                "actor": who.actor(),
                "assigned_at": at.to_rfc3339_opts(SecondsFormat::Micros, true),
            }),
        }),
    )
    .await
    .map_err(ApiError::Unexpected)?;
    out.message_id = Some(message_id);
    Ok(out)
}

/// Locks a contact and answers its current owner (`None` when it does not exist).
pub async fn lock_contact(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Option<String>>, ApiError> {
    let stmt = db
        .prepare_cached("select owner_id from contacts where id = $1 for update")
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact lock"))?;
    Ok(db
        .query_opt(&stmt, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "locking the contact"))?
        .map(|r| r.get(0)))
}

/// Body of POST /crm/actions/contacts/{id}/assign: `{"owner_id": "<user id>" | null}`.
pub fn parse_assign(body: Map<String, Value>) -> Result<Option<String>, ApiError> {
    match Fields::new(body, &["owner_id"])?.text("owner_id", 200)? {
        Patch::Set(id) => Ok(Some(id)),
        Patch::Null => Ok(None),
        Patch::Absent => Err(ApiError::validation(
            "owner_id",
            "is required (a user id, or null to leave the contact unowned)",
        )),
    }
}

/// Body of POST /crm/actions/contacts/{id}/claim: nothing, or `{}`.
pub fn parse_claim(body: Map<String, Value>) -> Result<(), ApiError> {
    Fields::new(body, &[])?;
    Ok(())
}

async fn answer(db: &impl GenericClient, id: Uuid, t: Transfer) -> Result<Done, ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "select {} from contacts c where c.id = $1",
            records::CONTACT_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact read"))?;
    let row = db
        .query_one(&stmt, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the contact"))?;
    let message_id = t.message_id;
    Ok(Done {
        status: 200,
        body: json!({"contact": records::contact(&row), "assignment": t}),
        enqueued: message_id.into_iter().collect(),
    })
}

/// POST /crm/actions/contacts/{id}/assign: an admin gives the contact (and
/// its open deals) to an active user, or to nobody (`null`).
pub async fn assign(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
    owner: Option<String>,
) -> Result<Done, ApiError> {
    if !who.is_admin() {
        return Err(ApiError::Forbidden(
            "only admins may assign contacts; members claim unowned ones".into(),
        ));
    }
    let to = match owner {
        Some(raw) => Some(active_owner(db, &raw).await?.to_string()),
        None => None,
    };
    let from = lock_contact(db, contact_id)
        .await?
        .ok_or(ApiError::NotFound("contact"))?;
    let t = transfer(db, who, contact_id, from, to.as_deref(), Via::Assign).await?;
    answer(db, contact_id, t).await
}

/// POST /crm/actions/contacts/{id}/claim: the caller takes an unowned
/// contact (and its open deals). Claiming one's own contact again changes
/// nothing (200); a contact someone else owns is 409 `already_owned`,
/// naming nobody.
pub async fn claim(
    db: &impl GenericClient,
    who: &Principal,
    contact_id: Uuid,
) -> Result<Done, ApiError> {
    let me = active_owner(db, who.user_id()).await?.to_string();
    let from = lock_contact(db, contact_id)
        .await?
        .ok_or(ApiError::NotFound("contact"))?;
    if from.as_deref().is_some_and(|o| o != me) {
        return Err(already_owned());
    }
    let t = transfer(db, who, contact_id, from, Some(&me), Via::Claim).await?;
    answer(db, contact_id, t).await
}

pub fn already_owned() -> ApiError {
    ApiError::Refused {
        code: "already_owned",
        message: "This contact already has an owner; ask an admin to reassign it".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn assign_takes_a_user_id_or_null_and_nothing_else() {
        assert_eq!(
            parse_assign(body(json!({"owner_id": "u"}))).unwrap(),
            Some("u".into())
        );
        assert_eq!(parse_assign(body(json!({"owner_id": null}))).unwrap(), None);
        for bad in [
            json!({}),
            json!({"owner_id": 5}),
            json!({"owner_id": "u", "x": 1}),
        ] {
            assert_eq!(
                parse_assign(body(bad.clone())).unwrap_err().status(),
                422,
                "{bad}"
            );
        }
        assert!(parse_claim(Map::new()).is_ok());
        assert_eq!(
            parse_claim(body(json!({"owner_id": "u"})))
                .unwrap_err()
                .status(),
            422
        );
    }
}
