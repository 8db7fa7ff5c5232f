//! POST /crm/actions/deals (create, or update by `id`) and
//! POST /crm/actions/deals/{id}/stage. Every stage change, including one made
//! through an update, goes through `pipeline::move_stage`, so history, the
//! timeline and the `deal.stage_changed` event never diverge.

use super::{
    Done, checked_owner,
    error::ApiError,
    input::{self, Fields, Patch, required},
    log_system, ownership, records,
};
use crate::{
    auth::Principal,
    db::GenericClient,
    pipeline::{self, MoveError, MoveOutcome},
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

const FIELDS: &[&str] = &[
    "id",
    "contact_id",
    "title",
    "pipeline_id",
    "stage_id",
    "value_cents",
    "currency",
    "owner_id",
];

/// A deal write, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DealInput {
    pub id: Option<Uuid>,
    pub contact_id: Patch<Uuid>,
    pub title: Patch<String>,
    pub pipeline_id: Patch<Uuid>,
    pub stage_id: Patch<Uuid>,
    pub value_cents: Patch<i64>,
    pub currency: Patch<String>,
    pub owner_id: Patch<String>,
}

impl DealInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, FIELDS)?;
        let id = match f.uuid("id")? {
            Patch::Set(id) => Some(id),
            _ => None,
        };
        let input = Self {
            id,
            contact_id: f.uuid("contact_id")?,
            title: f.text("title", 200)?,
            pipeline_id: f.uuid("pipeline_id")?,
            stage_id: f.uuid("stage_id")?,
            value_cents: f.integer("value_cents", 0, i64::MAX)?,
            currency: f
                .text("currency", 3)
                .map_err(|_| {
                    ApiError::validation("currency", "must be a three-letter ISO 4217 code")
                })?
                .try_map(|raw| input::currency(&raw))
                .map_err(|r| ApiError::validation("currency", r))?,
            owner_id: f.text("owner_id", 200)?,
        };
        for (name, is_null) in [
            ("contact_id", input.contact_id == Patch::Null),
            ("pipeline_id", input.pipeline_id == Patch::Null),
            ("stage_id", input.stage_id == Patch::Null),
            ("title", input.title == Patch::Null),
        ] {
            if is_null {
                return Err(ApiError::validation(name, "must not be empty"));
            }
        }
        if input.id.is_none() {
            required(input.contact_id.clone(), "contact_id")?;
            required(input.title.clone(), "title")?;
        }
        Ok(input)
    }
}

/// Body of POST /crm/actions/deals/{id}/stage.
pub fn parse_stage_move(body: Map<String, Value>) -> Result<Uuid, ApiError> {
    required(
        Fields::new(body, &["stage_id"])?.uuid("stage_id")?,
        "stage_id",
    )
}

pub async fn upsert(
    db: &impl GenericClient,
    who: &Principal,
    input: DealInput,
) -> Result<Done, ApiError> {
    match input.id {
        None => create(db, who, input).await,
        Some(id) => update(db, who, id, input).await,
    }
}

/// `value_cents` needs a currency to mean anything.
fn check_money(value_cents: Option<i64>, currency: Option<&str>) -> Result<(), ApiError> {
    if value_cents.is_some() && currency.is_none() {
        return Err(ApiError::validation(
            "currency",
            "is required when value_cents is set",
        ));
    }
    Ok(())
}

async fn create(
    db: &impl GenericClient,
    who: &Principal,
    input: DealInput,
) -> Result<Done, ApiError> {
    let contact_id = required(input.contact_id, "contact_id")?;
    let title = required(input.title, "title")?;
    let value_cents = input.value_cents.given().flatten();
    let currency = input.currency.given().flatten();
    check_money(value_cents, currency.as_deref())?;
    let owner = checked_owner(db, who, input.owner_id).await?;

    let contact = db
        .prepare_cached("select owner_id from contacts where id = $1")
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact check"))?;
    db.query_opt(&contact, &[&contact_id])
        .await
        .map_err(|e| ApiError::from_db(e, "checking the contact"))?
        .filter(|row| who.may_read(row.get::<_, Option<&str>>(0)))
        .ok_or_else(|| ApiError::validation("contact_id", "does not exist"))?;

    let pipeline_id = input.pipeline_id.given().flatten();
    let stage_id = input.stage_id.given().flatten();
    let place = db
        .prepare_cached(
            "select p.id, s.id, s.name, s.kind from pipelines p \
             join pipeline_stages s on s.pipeline_id = p.id \
             where (case when $1::uuid is null then p.is_default else p.id = $1 end) \
               and ($2::uuid is null or s.id = $2) \
             order by s.position limit 1",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the stage lookup"))?;
    let Some(place) = db
        .query_opt(&place, &[&pipeline_id, &stage_id])
        .await
        .map_err(|e| ApiError::from_db(e, "looking up the pipeline and stage"))?
    else {
        return Err(match (pipeline_id, stage_id) {
            (Some(p), _) if !pipeline_exists(db, p).await? => {
                ApiError::validation("pipeline_id", "does not exist")
            }
            (_, Some(_)) => ApiError::validation("stage_id", "does not belong to the pipeline"),
            _ => anyhow::anyhow!("the pipeline has no stages").into(),
        });
    };
    let (pipeline_id, stage_id, stage_name, kind): (Uuid, Uuid, String, String) =
        (place.get(0), place.get(1), place.get(2), place.get(3));
    let status = match kind.as_str() {
        "won" => "won",
        "lost" => "lost",
        _ => "open",
    };

    let insert = db
        .prepare_cached(
            "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title, status, \
             value_cents, currency, source, closed_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, 'api', case when $6 = 'open' then null else now() end) \
             returning id",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the deal insert"))?;
    let deal_id: Uuid = db
        .query_one(
            &insert,
            &[
                &contact_id,
                &pipeline_id,
                &stage_id,
                &owner,
                &title,
                &status,
                &value_cents,
                &currency,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "inserting a deal"))?
        .get(0);
    let history = db
        .prepare_cached(
            "insert into deal_stage_history (deal_id, from_stage_id, to_stage_id, actor) \
             values ($1, null, $2, $3)",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the stage history insert"))?;
    db.execute(&history, &[&deal_id, &stage_id, &who.actor()])
        .await
        .map_err(|e| ApiError::from_db(e, "recording the first stage"))?;
    log_system(
        db,
        contact_id,
        Some(deal_id),
        &format!("Deal created in {stage_name}"),
        json!({"event": "deal_created", "stage": {"stage_id": stage_id, "name": stage_name}}),
        &who.actor(),
    )
    .await?;
    Ok(Done::new(201, read(db, deal_id).await?))
}

async fn pipeline_exists(db: &impl GenericClient, id: Uuid) -> Result<bool, ApiError> {
    let row = db
        .query_opt("select 1 from pipelines where id = $1", &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "checking the pipeline"))?;
    Ok(row.is_some())
}

/// Locks a deal the caller may change — their own, on a contact they may
/// read (a deal is never more visible than its contact); anything else is 404.
async fn lock_owned(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<tokio_postgres::Row, ApiError> {
    let lock = db
        .prepare_cached(
            "select d.owner_id, d.contact_id, d.pipeline_id, d.stage_id, d.title, d.value_cents, \
             d.currency, c.owner_id from deals d join contacts c on c.id = d.contact_id \
             where d.id = $1 for update of d",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the deal lock"))?;
    db.query_opt(&lock, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "locking the deal"))?
        .filter(|row| {
            who.may_change(row.get::<_, Option<&str>>(0))
                && who.may_read(row.get::<_, Option<&str>>(7))
        })
        .ok_or(ApiError::NotFound("deal"))
}

/// Before a member's board move: an unowned deal on a contact they may read
/// is claimed — the contact and its open deals become theirs, in this
/// transaction (ownership::transfer, `via: board_move`). Locks the contact
/// before the deal, the order assign and claim take them. Anything else is
/// left to `lock_owned` (their own deal moves; someone else's is 404).
async fn claim_for_move(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
) -> Result<Option<ownership::Transfer>, ApiError> {
    if who.is_admin() {
        return Ok(None);
    }
    let peek = db
        .prepare_cached("select owner_id, contact_id from deals where id = $1")
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the deal read"))?;
    let Some(row) = db
        .query_opt(&peek, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the deal"))?
    else {
        return Ok(None);
    };
    if row.get::<_, Option<&str>>(0).is_some() {
        return Ok(None);
    }
    let contact_id: Uuid = row.get(1);
    let Some(contact_owner) = ownership::lock_contact(db, contact_id).await? else {
        return Ok(None);
    };
    if !who.may_read(contact_owner.as_deref()) {
        return Err(ApiError::NotFound("deal"));
    }
    let me = ownership::active_owner(db, who.user_id())
        .await?
        .to_string();
    // Re-read under the lock: someone may have claimed it meanwhile.
    let lock = db
        .prepare_cached("select owner_id from deals where id = $1 for update")
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the deal lock"))?;
    let still_unowned = db
        .query_opt(&lock, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "locking the deal"))?
        .is_some_and(|r| r.get::<_, Option<&str>>(0).is_none());
    if !still_unowned {
        return Ok(None);
    }
    let t = ownership::transfer(
        db,
        who,
        contact_id,
        contact_owner,
        Some(&me),
        ownership::Via::BoardMove,
    )
    .await?;
    // A closed deal does not follow its contact, but the one dragged is claimed too.
    db.execute(
        "update deals set owner_id = $2, updated_at = now() where id = $1 and owner_id is null",
        &[&id, &me],
    )
    .await
    .map_err(|e| ApiError::from_db(e, "claiming the deal"))?;
    Ok(Some(t))
}

async fn update(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    input: DealInput,
) -> Result<Done, ApiError> {
    let current = lock_owned(db, who, id).await?;
    for (name, given, idx) in [
        ("contact_id", input.contact_id.clone(), 1),
        ("pipeline_id", input.pipeline_id.clone(), 2),
    ] {
        if let Patch::Set(v) = given
            && v != current.get::<_, Uuid>(idx)
        {
            return Err(ApiError::validation(
                name,
                "cannot be changed; create a new deal instead",
            ));
        }
    }
    let owner = match input.owner_id {
        Patch::Absent => None,
        other => Some(checked_owner(db, who, other).await?),
    };
    let cur_owner: Option<String> = current.get(0);
    let cur_title: String = current.get(4);
    let cur_value: Option<i64> = current.get(5);
    let cur_currency: Option<String> = current.get(6);
    let title = input.title.given().flatten().filter(|t| *t != cur_title);
    let value = input.value_cents.given().filter(|v| *v != cur_value);
    let currency = input.currency.given().filter(|c| *c != cur_currency);
    let owner = owner.filter(|o| *o != cur_owner);
    check_money(
        value.unwrap_or(cur_value),
        currency.clone().unwrap_or(cur_currency).as_deref(),
    )?;

    let mut changed: Vec<&str> = Vec::new();
    for (name, is_changed) in [
        ("title", title.is_some()),
        ("value_cents", value.is_some()),
        ("currency", currency.is_some()),
        ("owner_id", owner.is_some()),
    ] {
        if is_changed {
            changed.push(name);
        }
    }
    if !changed.is_empty() {
        let stmt = db
            .prepare_cached(
                "update deals set \
                   title = coalesce($2, title), \
                   value_cents = case when $3 then $4 else value_cents end, \
                   currency = case when $5 then $6 else currency end, \
                   owner_id = case when $7 then $8 else owner_id end, \
                   updated_at = now() \
                 where id = $1",
            )
            .await
            .map_err(|e| ApiError::from_db(e, "preparing the deal update"))?;
        db.execute(
            &stmt,
            &[
                &id,
                &title,
                &value.is_some(),
                &value.flatten(),
                &currency.is_some(),
                &currency.flatten(),
                &owner.is_some(),
                &owner.flatten(),
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "updating a deal"))?;
        log_system(
            db,
            current.get(1),
            Some(id),
            &format!("Deal updated: {}", changed.join(", ")),
            json!({"event": "deal_updated", "fields": changed}),
            &who.actor(),
        )
        .await?;
    }
    let mut enqueued = Vec::new();
    if let Patch::Set(stage_id) = input.stage_id {
        let (_, message_id) = move_to(db, who, id, stage_id).await?;
        enqueued.extend(message_id);
    }
    Ok(Done {
        status: 200,
        body: read(db, id).await?,
        enqueued,
    })
}

/// POST /crm/actions/deals/{id}/stage: the deal with `stage_change` (null when it already was there).
pub async fn move_stage(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    stage_id: Uuid,
) -> Result<Done, ApiError> {
    let claimed = claim_for_move(db, who, id).await?;
    lock_owned(db, who, id).await?;
    let (outcome, message_id) = move_to(db, who, id, stage_id).await?;
    let mut body = read(db, id).await?;
    body["stage_change"] = match outcome {
        MoveOutcome::Moved(event) => event.payload(),
        MoveOutcome::Unchanged => Value::Null,
    };
    let mut enqueued: Vec<Uuid> = message_id.into_iter().collect();
    if let Some(t) = claimed {
        enqueued.extend(t.message_id);
        body["claimed"] = serde_json::to_value(&t).expect("a transfer serialises");
    }
    Ok(Done {
        status: 200,
        body,
        enqueued,
    })
}

/// The move, and the outbox `message_id` of its `deal.stage_changed` job when it moved.
async fn move_to(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    stage_id: Uuid,
) -> Result<(MoveOutcome, Option<Uuid>), ApiError> {
    pipeline::move_stage_enqueued(db, id, stage_id, &who.actor(), None)
        .await
        .map_err(|e| match e {
            MoveError::DealNotFound => ApiError::NotFound("deal"),
            MoveError::StageNotInPipeline => {
                ApiError::validation("stage_id", "does not belong to the deal's pipeline")
            }
            MoveError::AnotherOpenDeal => ApiError::conflict(
                "stage_id",
                "would reopen the deal, but the contact already has an open deal in this pipeline",
            ),
            MoveError::Unexpected(e) => ApiError::Unexpected(e),
        })
}

/// A deal as the API shows it.
pub async fn read(db: &impl GenericClient, id: Uuid) -> Result<Value, ApiError> {
    let stmt = db
        .prepare_cached(&format!(
            "select {} from deals d join contacts c on c.id = d.contact_id where d.id = $1",
            records::DEAL_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the deal read"))?;
    let row = db
        .query_one(&stmt, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "reading the deal"))?;
    Ok(records::deal(&row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<DealInput, ApiError> {
        DealInput::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn a_new_deal_needs_a_contact_and_a_title() {
        let c = Uuid::now_v7();
        assert_eq!(
            parse(json!({"title": "x"})).unwrap_err().body()["field"],
            "contact_id"
        );
        assert_eq!(
            parse(json!({"contact_id": c})).unwrap_err().body()["field"],
            "title"
        );
        let d = parse(
            json!({"contact_id": c, "title": "Flat", "value_cents": 150000, "currency": "try"}),
        )
        .unwrap();
        assert_eq!(d.currency, Patch::Set("TRY".into()));
        assert_eq!(d.value_cents, Patch::Set(150_000));
    }

    #[test]
    fn deal_fields_are_checked_by_name() {
        let c = Uuid::now_v7().to_string();
        for (body, field) in [
            (
                json!({"contact_id": c, "title": "x", "value_cents": -1}),
                "value_cents",
            ),
            (
                json!({"contact_id": c, "title": "x", "value_cents": 1.5}),
                "value_cents",
            ),
            (
                json!({"contact_id": c, "title": "x", "currency": "EURO"}),
                "currency",
            ),
            (
                json!({"contact_id": c, "title": "x", "currency": "ABC"}),
                "currency",
            ),
            (
                json!({"contact_id": c, "title": "x", "stage_id": "s"}),
                "stage_id",
            ),
            (
                json!({"contact_id": c, "title": "x", "pipeline_id": null}),
                "pipeline_id",
            ),
            (
                json!({"contact_id": c, "title": "x", "stage": "Won"}),
                "stage",
            ),
        ] {
            assert_eq!(
                parse(body.clone()).unwrap_err().body()["field"],
                field,
                "{body}"
            );
        }
        assert_eq!(
            parse_stage_move(json!({}).as_object().unwrap().clone())
                .unwrap_err()
                .body()["field"],
            "stage_id"
        );
    }
}
