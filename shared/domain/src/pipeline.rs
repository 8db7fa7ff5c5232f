//! Moving deals between stages: the one place that writes stage history, the
//! timeline entry and the outbound `deal.stage_changed` event, so every
//! actor (CRM user, Cal.com, …) produces the same trail.

use crate::{
    db::{DbFault, GenericClient, classify},
    jobs::{self, DeliverWebhook, Job},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRef {
    pub stage_id: Uuid,
    pub name: String,
}

/// The `deal.stage_changed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageChanged {
    pub deal_id: Uuid,
    pub contact_id: Uuid,
    pub pipeline_id: Uuid,
    pub from: StageRef,
    pub to: StageRef,
    pub actor: String,
    pub changed_at: DateTime<Utc>,
}

impl StageChanged {
    pub const EVENT_TYPE: &'static str = "deal.stage_changed";

    pub fn payload(&self) -> Value {
        serde_json::to_value(self).expect("a StageChanged always serialises")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("deal not found")]
    DealNotFound,
    #[error("stage does not belong to the deal's pipeline")]
    StageNotInPipeline,
    #[error("the contact already has another open deal in this pipeline")]
    AnotherOpenDeal,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    Moved(StageChanged),
    /// The deal already was in that stage: nothing written.
    Unchanged,
}

/// Moves `deal_id` to `to_stage` (any direction) inside the caller's
/// transaction: locks the deal, records history, a `system` activity and a
/// `deal.stage_changed` outbox job. Won/lost stages close the deal; moving
/// back to an open stage reopens it.
pub async fn move_stage(
    db: &impl GenericClient,
    deal_id: Uuid,
    to_stage: Uuid,
    actor: &str,
    source_event_id: Option<Uuid>,
) -> Result<MoveOutcome, MoveError> {
    move_stage_enqueued(db, deal_id, to_stage, actor, source_event_id)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`move_stage`], also returning the outbox `message_id` of the
/// `deal.stage_changed` job it wrote (`None` when the deal did not move), so
/// a caller can publish exactly that row after commit
/// (`outbox::relay_ids`).
pub async fn move_stage_enqueued(
    db: &impl GenericClient,
    deal_id: Uuid,
    to_stage: Uuid,
    actor: &str,
    source_event_id: Option<Uuid>,
) -> Result<(MoveOutcome, Option<Uuid>), MoveError> {
    // Lock, then read in a second statement: a locking statement that had to
    // wait re-checks only the locked row, and its join to the (old) stage
    // would drop the deal if a concurrent move changed its stage.
    let lock_only = db
        .prepare_cached("select 1 from deals where id = $1 for update")
        .await
        .context("preparing the deal lock")?;
    if db
        .query_opt(&lock_only, &[&deal_id])
        .await
        .context("locking the deal")?
        .is_none()
    {
        return Err(MoveError::DealNotFound);
    }
    let lock = db
        .prepare_cached(
            "select d.contact_id, d.pipeline_id, d.stage_id, s.name from deals d \
             join pipeline_stages s on s.id = d.stage_id where d.id = $1",
        )
        .await
        .context("preparing the deal read")?;
    let Some(deal) = db
        .query_opt(&lock, &[&deal_id])
        .await
        .context("locking the deal")?
    else {
        return Err(MoveError::DealNotFound);
    };
    let (contact_id, pipeline_id, from_id, from_name): (Uuid, Uuid, Uuid, String) =
        (deal.get(0), deal.get(1), deal.get(2), deal.get(3));
    let stage = db
        .prepare_cached("select name, kind from pipeline_stages where id = $1 and pipeline_id = $2")
        .await
        .context("preparing the stage lookup")?;
    let Some(target) = db
        .query_opt(&stage, &[&to_stage, &pipeline_id])
        .await
        .context("looking up the stage")?
    else {
        return Err(MoveError::StageNotInPipeline);
    };
    if from_id == to_stage {
        return Ok((MoveOutcome::Unchanged, None));
    }
    let (to_name, kind): (String, String) = (target.get(0), target.get(1));

    let update = db
        .prepare_cached(
            "update deals set stage_id = $2, status = $3, updated_at = now(), \
             closed_at = case when $3 = 'open' then null else coalesce(closed_at, now()) end where id = $1",
        )
        .await
        .context("preparing the deal update")?;
    let status = match kind.as_str() {
        "won" => "won",
        "lost" => "lost",
        _ => "open",
    };
    if let Err(e) = db.execute(&update, &[&deal_id, &to_stage, &status]).await {
        if matches!(classify(&e), DbFault::UniqueViolation { constraint: Some(ref c) } if c == "deals_one_open_per_contact_pipeline")
        {
            return Err(MoveError::AnotherOpenDeal);
        }
        return Err(anyhow::Error::new(e).context("moving the deal").into());
    }
    let history = db
        .prepare_cached(
            "insert into deal_stage_history (deal_id, from_stage_id, to_stage_id, actor, source_event_id) \
             values ($1, $2, $3, $4, $5) returning changed_at",
        )
        .await
        .context("preparing the stage history insert")?;
    let changed_at: DateTime<Utc> = db
        .query_one(
            &history,
            &[&deal_id, &from_id, &to_stage, &actor, &source_event_id],
        )
        .await
        .context("recording stage history")?
        .get(0);

    let event = StageChanged {
        deal_id,
        contact_id,
        pipeline_id,
        from: StageRef {
            stage_id: from_id,
            name: from_name,
        },
        to: StageRef {
            stage_id: to_stage,
            name: to_name,
        },
        actor: actor.to_string(),
        changed_at,
    };
    let activity = db
        .prepare_cached(
            "insert into activities (type, contact_id, deal_id, body, metadata, actor, source_event_id) \
             values ('system', $1, $2, $3, $4, $5, $6)",
        )
        .await
        .context("preparing the stage activity")?;
    let body = format!(
        "Deal moved from {} to {} by {}",
        event.from.name, event.to.name, actor
    );
    let metadata = json!({"event": "stage_change", "from": event.from, "to": event.to});
    db.execute(
        &activity,
        &[
            &contact_id,
            &deal_id,
            &body,
            &metadata,
            &actor,
            &source_event_id,
        ],
    )
    .await
    .context("logging the stage change")?;
    let message_id = jobs::enqueue(
        db,
        &Job::DeliverWebhook(DeliverWebhook {
            v: 1,
            event_id: Uuid::now_v7(),
            event_type: StageChanged::EVENT_TYPE.into(),
            occurred_at: changed_at,
            payload: event.payload(),
        }),
    )
    .await
    .context("queueing deal.stage_changed")?;
    Ok((MoveOutcome::Moved(event), Some(message_id)))
}
