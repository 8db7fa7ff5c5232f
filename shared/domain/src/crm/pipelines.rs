//! Pipelines and stages as admins edit them (issue 12 §3): create a
//! pipeline, rename it, add / rename / re-kind / reorder / remove stages.
//! Each write runs inside the caller's transaction with one audit entry
//! (`crm.pipeline.*`, `crm.stage.*`; ids, names of stages and counts only).
//!
//! Rules:
//! - the first stage of a pipeline is `open` (new deals start there);
//! - a stage holding deals keeps its kind (the deals' status follows it) and
//!   is removed only once they have moved: 409 `stage_has_deals` naming the
//!   count, or `move_deals_to` moves each of them first through
//!   `pipeline::move_stage` — the same history, `system` activity and
//!   `deal.stage_changed` event as any other move;
//! - the default pipeline always exists and stays the default; its stages
//!   the webhook flows look up by name (`New`, `Qualified` — Instantly;
//!   `Meeting Scheduled` — Cal.com) cannot be renamed or removed
//!   (409 `stage_used_by_webhooks`);
//! - names are unique per pipeline (409 `conflict`, field `name`).

use super::{
    ApiError, Done,
    input::{Fields, Patch, required},
};
use crate::{
    auth::Principal,
    campaigns::audit::{self, AuditEntry},
    db::{DbFault, GenericClient, classify},
    pipeline::{self, MoveError, MoveOutcome},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Stages the webhook flows find by name in the default pipeline.
pub const WEBHOOK_STAGES: &[&str] = &["New", "Qualified", "Meeting Scheduled"];
pub const MAX_STAGES: usize = 50;
pub const MAX_NAME: usize = 80;
/// How many deals one removal may move (each is a full stage move).
pub const MAX_MOVED_DEALS: i64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Open,
    Won,
    Lost,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Open => "open",
            StageKind::Won => "won",
            StageKind::Lost => "lost",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [StageKind::Open, StageKind::Won, StageKind::Lost]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

/// A stage with the number of deals in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageOut {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub name: String,
    pub position: i32,
    pub kind: StageKind,
    pub deals: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineOut {
    pub id: Uuid,
    pub name: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub stages: Vec<StageOut>,
}

/// What a stage removal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRemoved {
    pub removed_stage_id: Uuid,
    /// Deals moved to `move_deals_to` first (each with history and an event).
    pub moved_deals: i64,
    pub pipeline: PipelineOut,
}

/// A validated pipeline write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineAction {
    Create {
        name: String,
        stages: Vec<(String, StageKind)>,
    },
    Rename {
        pipeline_id: Uuid,
        name: String,
    },
    AddStage {
        pipeline_id: Uuid,
        name: String,
        kind: StageKind,
        /// 0-based; `None` appends.
        position: Option<i32>,
    },
    UpdateStage {
        pipeline_id: Uuid,
        stage_id: Uuid,
        name: Option<String>,
        kind: Option<StageKind>,
    },
    Reorder {
        pipeline_id: Uuid,
        stage_ids: Vec<Uuid>,
    },
    RemoveStage {
        pipeline_id: Uuid,
        stage_id: Uuid,
        move_deals_to: Option<Uuid>,
    },
}

fn name_of(f: &Fields, field: &str, max: usize) -> Result<Patch<String>, ApiError> {
    f.text(field, max)
}

fn kind_of(f: &Fields, field: &str) -> Result<Option<StageKind>, ApiError> {
    match f.text(field, 10)? {
        Patch::Absent | Patch::Null => Ok(None),
        Patch::Set(k) => StageKind::parse(&k)
            .map(Some)
            .ok_or_else(|| ApiError::validation(field, "must be open, won or lost")),
    }
}

fn uuid_list(v: Option<&Value>, field: &str) -> Result<Vec<Uuid>, ApiError> {
    let Some(Value::Array(items)) = v else {
        return Err(ApiError::validation(field, "must be a list of stage ids"));
    };
    items
        .iter()
        .map(|i| {
            i.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| ApiError::validation(field, "must be a list of stage ids"))
        })
        .collect()
}

impl PipelineAction {
    pub fn parse_create(body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["name", "stages"])?;
        let name = required(name_of(&f, "name", 120)?, "name")?;
        let Some(Value::Array(items)) = f.raw("stages") else {
            return Err(ApiError::validation(
                "stages",
                "must be a non-empty list of {name, kind}",
            ));
        };
        if items.is_empty() || items.len() > MAX_STAGES {
            return Err(ApiError::validation(
                "stages",
                format!("must hold 1 to {MAX_STAGES} stages"),
            ));
        }
        let mut stages = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Value::Object(map) = item else {
                return Err(ApiError::validation(
                    format!("stages[{i}]"),
                    "must be {name, kind}",
                ));
            };
            let sf = Fields::new(map.clone(), &["name", "kind"])
                .map_err(|e| prefix(e, &format!("stages[{i}]")))?;
            let n = required(name_of(&sf, "name", MAX_NAME)?, "name")
                .map_err(|e| prefix(e, &format!("stages[{i}]")))?;
            let k = kind_of(&sf, "kind")
                .map_err(|e| prefix(e, &format!("stages[{i}]")))?
                .unwrap_or(StageKind::Open);
            if stages.iter().any(|(s, _): &(String, StageKind)| s == &n) {
                return Err(ApiError::validation(
                    format!("stages[{i}].name"),
                    "is used by another stage of the pipeline",
                ));
            }
            stages.push((n, k));
        }
        if stages[0].1 != StageKind::Open {
            return Err(ApiError::validation(
                "stages[0].kind",
                "the first stage must be open (new deals start there)",
            ));
        }
        Ok(Self::Create { name, stages })
    }

    pub fn parse_rename(pipeline_id: Uuid, body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["name"])?;
        Ok(Self::Rename {
            pipeline_id,
            name: required(name_of(&f, "name", 120)?, "name")?,
        })
    }

    pub fn parse_add_stage(pipeline_id: Uuid, body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["name", "kind", "position"])?;
        let position = match f.integer("position", 0, MAX_STAGES as i64)? {
            Patch::Set(p) => Some(i32::try_from(p).expect("bounded")),
            _ => None,
        };
        Ok(Self::AddStage {
            pipeline_id,
            name: required(name_of(&f, "name", MAX_NAME)?, "name")?,
            kind: kind_of(&f, "kind")?.unwrap_or(StageKind::Open),
            position,
        })
    }

    pub fn parse_update_stage(
        pipeline_id: Uuid,
        stage_id: Uuid,
        body: Map<String, Value>,
    ) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["name", "kind"])?;
        let name = match name_of(&f, "name", MAX_NAME)? {
            Patch::Set(n) => Some(n),
            Patch::Null => return Err(ApiError::validation("name", "cannot be empty")),
            Patch::Absent => None,
        };
        Ok(Self::UpdateStage {
            pipeline_id,
            stage_id,
            name,
            kind: kind_of(&f, "kind")?,
        })
    }

    pub fn parse_reorder(pipeline_id: Uuid, body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["stage_ids"])?;
        Ok(Self::Reorder {
            pipeline_id,
            stage_ids: uuid_list(f.raw("stage_ids"), "stage_ids")?,
        })
    }

    pub fn parse_remove_stage(
        pipeline_id: Uuid,
        stage_id: Uuid,
        body: Map<String, Value>,
    ) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["move_deals_to"])?;
        let move_deals_to = match f.uuid("move_deals_to")? {
            Patch::Set(id) => Some(id),
            _ => None,
        };
        if move_deals_to == Some(stage_id) {
            return Err(ApiError::validation(
                "move_deals_to",
                "must be another stage than the one removed",
            ));
        }
        Ok(Self::RemoveStage {
            pipeline_id,
            stage_id,
            move_deals_to,
        })
    }
}

fn prefix(e: ApiError, at: &str) -> ApiError {
    match e {
        ApiError::Validation { field, reason } => ApiError::Validation {
            field: format!("{at}.{field}"),
            reason,
        },
        other => other,
    }
}

fn dbe(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ApiError {
    move |e| match classify(&e) {
        DbFault::UniqueViolation {
            constraint: Some(c),
        } if c == "pipeline_stages_name_unique" => {
            ApiError::conflict("name", "is used by another stage of the pipeline")
        }
        DbFault::UniqueViolation {
            constraint: Some(c),
        } if c == "pipelines_name_key" => ApiError::conflict("name", "is used by another pipeline"),
        _ => ApiError::from_db(e, context),
    }
}

/// A pipeline with its stages in order and the deals in each.
pub async fn read(db: &impl GenericClient, id: Uuid) -> Result<PipelineOut, ApiError> {
    let stmt = db
        .prepare_cached("select id, name, is_default, created_at from pipelines where id = $1")
        .await
        .map_err(dbe("preparing the pipeline read"))?;
    let p = db
        .query_opt(&stmt, &[&id])
        .await
        .map_err(dbe("reading the pipeline"))?
        .ok_or(ApiError::NotFound("pipeline"))?;
    let stmt = db
        .prepare_cached(
            "select s.id, s.pipeline_id, s.name, s.position, s.kind, \
                    (select count(*) from deals d where d.stage_id = s.id) \
             from pipeline_stages s where s.pipeline_id = $1 order by s.position",
        )
        .await
        .map_err(dbe("preparing the stages read"))?;
    let stages = db
        .query(&stmt, &[&id])
        .await
        .map_err(dbe("reading the stages"))?
        .iter()
        .map(|r| {
            let kind: &str = r.get(4);
            Ok(StageOut {
                id: r.get(0),
                pipeline_id: r.get(1),
                name: r.get(2),
                position: r.get(3),
                kind: StageKind::parse(kind).ok_or_else(|| {
                    ApiError::Unexpected(anyhow::anyhow!("unknown stage kind {kind:?}"))
                })?,
                deals: r.get(5),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(PipelineOut {
        id: p.get(0),
        name: p.get(1),
        is_default: p.get(2),
        created_at: p.get(3),
        stages,
    })
}

/// Locks the pipeline (writers of one pipeline take turns) and reads it.
async fn lock(db: &impl GenericClient, id: Uuid) -> Result<PipelineOut, ApiError> {
    let stmt = db
        .prepare_cached("select 1 from pipelines where id = $1 for update")
        .await
        .map_err(dbe("preparing the pipeline lock"))?;
    db.query_opt(&stmt, &[&id])
        .await
        .map_err(dbe("locking the pipeline"))?
        .ok_or(ApiError::NotFound("pipeline"))?;
    read(db, id).await
}

async fn audit_entry(
    db: &impl GenericClient,
    who: &Principal,
    action: &str,
    target_type: &str,
    target: Uuid,
    details: Value,
) -> Result<(), ApiError> {
    audit::record(
        db,
        &AuditEntry {
            action,
            actor: &who.actor(),
            target_type,
            target_id: Some(target.to_string()),
            details,
        },
    )
    .await
    .map_err(ApiError::Unexpected)
}

fn used_by_webhooks(p: &PipelineOut, stage: &StageOut) -> bool {
    p.is_default && WEBHOOK_STAGES.contains(&stage.name.as_str())
}

fn webhook_stage_refusal(stage: &StageOut) -> ApiError {
    ApiError::Refused {
        code: "stage_used_by_webhooks",
        message: format!(
            "the default pipeline's {:?} stage is where the webhook flows put deals; it cannot be renamed or removed",
            stage.name
        ),
    }
}

fn has_deals(stage: &StageOut) -> ApiError {
    ApiError::Refused {
        code: "stage_has_deals",
        message: format!(
            "the stage has {} deal(s); move them to another stage first (or pass move_deals_to)",
            stage.deals
        ),
    }
}

/// Rewrites positions to `order` (every stage of the pipeline, in its new order).
async fn set_order(
    db: &impl GenericClient,
    pipeline_id: Uuid,
    order: &[Uuid],
) -> Result<(), ApiError> {
    db.batch_execute("set constraints pipeline_stages_position_unique deferred")
        .await
        .map_err(dbe("deferring the position rule"))?;
    let stmt = db
        .prepare_cached(
            "update pipeline_stages s set position = o.ord - 1 \
             from unnest($2::uuid[]) with ordinality as o(id, ord) \
             where s.id = o.id and s.pipeline_id = $1 and s.position <> o.ord - 1",
        )
        .await
        .map_err(dbe("preparing the reorder"))?;
    db.execute(&stmt, &[&pipeline_id, &order])
        .await
        .map_err(dbe("reordering the stages"))?;
    db.batch_execute("set constraints pipeline_stages_position_unique immediate")
        .await
        .map_err(dbe("checking the positions"))?;
    Ok(())
}

/// Runs one action inside the caller's transaction (admins only).
pub async fn execute(
    db: &impl GenericClient,
    who: &Principal,
    action: PipelineAction,
) -> Result<Done, ApiError> {
    if !who.is_admin() {
        return Err(ApiError::Forbidden(
            "pipelines and stages are changed by admins".into(),
        ));
    }
    match action {
        PipelineAction::Create { name, stages } => {
            let stmt = db
                .prepare_cached("insert into pipelines (name) values ($1) returning id")
                .await
                .map_err(dbe("preparing the pipeline insert"))?;
            let id: Uuid = db
                .query_one(&stmt, &[&name])
                .await
                .map_err(dbe("creating the pipeline"))?
                .get(0);
            let insert = db
                .prepare_cached(
                    "insert into pipeline_stages (pipeline_id, name, position, kind) values ($1, $2, $3, $4)",
                )
                .await
                .map_err(dbe("preparing the stage insert"))?;
            for (i, (n, k)) in stages.iter().enumerate() {
                let pos = i32::try_from(i).expect("bounded");
                db.execute(&insert, &[&id, n, &pos, &k.as_str()])
                    .await
                    .map_err(dbe("adding a stage"))?;
            }
            audit_entry(
                db,
                who,
                "crm.pipeline.created",
                "pipeline",
                id,
                json!({"stages": stages.len()}),
            )
            .await?;
            Ok(Done::new(201, body(&read(db, id).await?)))
        }
        PipelineAction::Rename { pipeline_id, name } => {
            let p = lock(db, pipeline_id).await?;
            if p.name != name {
                db.execute(
                    "update pipelines set name = $2 where id = $1",
                    &[&pipeline_id, &name],
                )
                .await
                .map_err(dbe("renaming the pipeline"))?;
                audit_entry(
                    db,
                    who,
                    "crm.pipeline.renamed",
                    "pipeline",
                    pipeline_id,
                    json!({}),
                )
                .await?;
            }
            Ok(Done::new(200, body(&read(db, pipeline_id).await?)))
        }
        PipelineAction::AddStage {
            pipeline_id,
            name,
            kind,
            position,
        } => {
            let p = lock(db, pipeline_id).await?;
            if p.stages.len() >= MAX_STAGES {
                return Err(ApiError::validation(
                    "name",
                    format!("a pipeline holds at most {MAX_STAGES} stages"),
                ));
            }
            let len = i32::try_from(p.stages.len()).expect("bounded");
            let at = position.unwrap_or(len).min(len);
            if at == 0 && kind != StageKind::Open {
                return Err(ApiError::validation(
                    "kind",
                    "the first stage must be open (new deals start there)",
                ));
            }
            let stmt = db
                .prepare_cached(
                    "insert into pipeline_stages (pipeline_id, name, position, kind) values ($1, $2, $3, $4) returning id",
                )
                .await
                .map_err(dbe("preparing the stage insert"))?;
            // Appended first (a free position), then moved into place.
            let id: Uuid = db
                .query_one(&stmt, &[&pipeline_id, &name, &len, &kind.as_str()])
                .await
                .map_err(dbe("adding the stage"))?
                .get(0);
            let mut order: Vec<Uuid> = p.stages.iter().map(|s| s.id).collect();
            order.insert(usize::try_from(at).expect("non-negative"), id);
            set_order(db, pipeline_id, &order).await?;
            audit_entry(
                db,
                who,
                "crm.stage.added",
                "pipeline",
                pipeline_id,
                json!({"stage_id": id, "name": name, "kind": kind.as_str(), "position": at}),
            )
            .await?;
            Ok(Done::new(201, body(&read(db, pipeline_id).await?)))
        }
        PipelineAction::UpdateStage {
            pipeline_id,
            stage_id,
            name,
            kind,
        } => {
            let p = lock(db, pipeline_id).await?;
            let stage = p
                .stages
                .iter()
                .find(|s| s.id == stage_id)
                .ok_or(ApiError::NotFound("stage"))?;
            let rename = name.filter(|n| *n != stage.name);
            let rekind = kind.filter(|k| *k != stage.kind);
            if rename.is_some() && used_by_webhooks(&p, stage) {
                return Err(webhook_stage_refusal(stage));
            }
            if let Some(k) = rekind {
                if stage.deals > 0 {
                    return Err(ApiError::Refused {
                        code: "stage_has_deals",
                        message: format!(
                            "the stage has {} deal(s) whose status follows its kind; move them first",
                            stage.deals
                        ),
                    });
                }
                if stage.position == 0 && k != StageKind::Open {
                    return Err(ApiError::validation(
                        "kind",
                        "the first stage must be open (new deals start there)",
                    ));
                }
            }
            if rename.is_none() && rekind.is_none() {
                return Ok(Done::new(200, body(&p)));
            }
            db.execute(
                "update pipeline_stages set name = coalesce($2, name), kind = coalesce($3, kind) where id = $1",
                &[&stage_id, &rename, &rekind.map(StageKind::as_str)],
            )
            .await
            .map_err(dbe("updating the stage"))?;
            audit_entry(
                db,
                who,
                "crm.stage.updated",
                "pipeline",
                pipeline_id,
                json!({"stage_id": stage_id, "from": {"name": stage.name, "kind": stage.kind.as_str()},
                       "to": {"name": rename.as_ref().unwrap_or(&stage.name),
                              "kind": rekind.unwrap_or(stage.kind).as_str()}}),
            )
            .await?;
            Ok(Done::new(200, body(&read(db, pipeline_id).await?)))
        }
        PipelineAction::Reorder {
            pipeline_id,
            stage_ids,
        } => {
            let p = lock(db, pipeline_id).await?;
            let mut given = stage_ids.clone();
            given.sort();
            given.dedup();
            let mut have: Vec<Uuid> = p.stages.iter().map(|s| s.id).collect();
            have.sort();
            if given.len() != stage_ids.len() || given != have {
                return Err(ApiError::validation(
                    "stage_ids",
                    "must list every stage of the pipeline exactly once",
                ));
            }
            let first = p
                .stages
                .iter()
                .find(|s| s.id == stage_ids[0])
                .expect("listed");
            if first.kind != StageKind::Open {
                return Err(ApiError::validation(
                    "stage_ids",
                    "the first stage must be open (new deals start there)",
                ));
            }
            let before: Vec<Uuid> = p.stages.iter().map(|s| s.id).collect();
            if before != stage_ids {
                set_order(db, pipeline_id, &stage_ids).await?;
                audit_entry(
                    db,
                    who,
                    "crm.stage.reordered",
                    "pipeline",
                    pipeline_id,
                    json!({"stage_ids": stage_ids}),
                )
                .await?;
            }
            Ok(Done::new(200, body(&read(db, pipeline_id).await?)))
        }
        PipelineAction::RemoveStage {
            pipeline_id,
            stage_id,
            move_deals_to,
        } => remove_stage(db, who, pipeline_id, stage_id, move_deals_to).await,
    }
}

async fn remove_stage(
    db: &impl GenericClient,
    who: &Principal,
    pipeline_id: Uuid,
    stage_id: Uuid,
    move_deals_to: Option<Uuid>,
) -> Result<Done, ApiError> {
    let p = lock(db, pipeline_id).await?;
    let stage = p
        .stages
        .iter()
        .find(|s| s.id == stage_id)
        .ok_or(ApiError::NotFound("stage"))?
        .clone();
    if used_by_webhooks(&p, &stage) {
        return Err(webhook_stage_refusal(&stage));
    }
    if p.stages.len() == 1 {
        return Err(ApiError::Refused {
            code: "last_stage",
            message: "a pipeline keeps at least one stage".into(),
        });
    }
    if stage.position == 0 && p.stages[1].kind != StageKind::Open {
        return Err(ApiError::Refused {
            code: "first_stage_open",
            message: "the stage after it is not open: the first stage must be open (new deals start there)".into(),
        });
    }
    let mut enqueued = Vec::new();
    let mut moved = 0i64;
    if stage.deals > 0 {
        let Some(target) = move_deals_to else {
            return Err(has_deals(&stage));
        };
        if !p.stages.iter().any(|s| s.id == target) {
            return Err(ApiError::validation(
                "move_deals_to",
                "is not a stage of this pipeline",
            ));
        }
        if stage.deals > MAX_MOVED_DEALS {
            return Err(ApiError::Refused {
                code: "stage_has_deals",
                message: format!(
                    "the stage has {} deal(s), more than one request moves ({MAX_MOVED_DEALS}); move some first",
                    stage.deals
                ),
            });
        }
        let ids: Vec<Uuid> = db
            .query(
                "select id from deals where stage_id = $1 order by created_at, id",
                &[&stage_id],
            )
            .await
            .map_err(dbe("listing the stage's deals"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let actor = who.actor();
        for deal in ids {
            match pipeline::move_stage_enqueued(db, deal, target, &actor, None).await {
                Ok((MoveOutcome::Moved(_), Some(message_id))) => {
                    enqueued.push(message_id);
                    moved += 1;
                }
                Ok(_) => {}
                Err(MoveError::AnotherOpenDeal) => {
                    return Err(ApiError::Refused {
                        code: "conflict",
                        message: format!(
                            "deal {deal} cannot move: its contact already has an open deal in the target stage's pipeline"
                        ),
                    });
                }
                Err(MoveError::DealNotFound | MoveError::StageNotInPipeline) => {
                    return Err(ApiError::Unexpected(anyhow::anyhow!(
                        "a deal of the stage vanished or left the pipeline during the removal"
                    )));
                }
                Err(MoveError::Unexpected(e)) => return Err(ApiError::Unexpected(e)),
            }
        }
    }
    db.execute("delete from pipeline_stages where id = $1", &[&stage_id])
        .await
        .map_err(dbe("removing the stage"))?;
    let order: Vec<Uuid> = p
        .stages
        .iter()
        .filter(|s| s.id != stage_id)
        .map(|s| s.id)
        .collect();
    set_order(db, pipeline_id, &order).await?;
    audit_entry(
        db,
        who,
        "crm.stage.removed",
        "pipeline",
        pipeline_id,
        json!({"stage_id": stage_id, "name": stage.name, "moved_deals": moved, "moved_to": move_deals_to}),
    )
    .await?;
    let out = StageRemoved {
        removed_stage_id: stage_id,
        moved_deals: moved,
        pipeline: read(db, pipeline_id).await?,
    };
    Ok(Done {
        status: 200,
        body: serde_json::to_value(&out).expect("serialises"),
        enqueued,
    })
}

/// A typed answer as the stored `Done` body.
fn body<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("answers serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_new_pipeline_starts_with_an_open_stage_and_unique_names() {
        let ok = PipelineAction::parse_create(body(json!({"name": "Rentals",
            "stages": [{"name": "Lead"}, {"name": "Signed", "kind": "won"}]})))
        .unwrap();
        assert_eq!(
            ok,
            PipelineAction::Create {
                name: "Rentals".into(),
                stages: vec![
                    ("Lead".into(), StageKind::Open),
                    ("Signed".into(), StageKind::Won)
                ]
            }
        );
        let e = PipelineAction::parse_create(body(
            json!({"name": "R", "stages": [{"name": "W", "kind": "won"}]}),
        ))
        .unwrap_err();
        assert_eq!(e.body()["field"], "stages[0].kind");
        let e = PipelineAction::parse_create(body(
            json!({"name": "R", "stages": [{"name": "A"}, {"name": "A"}]}),
        ))
        .unwrap_err();
        assert_eq!(e.body()["field"], "stages[1].name");
        let e = PipelineAction::parse_create(body(
            json!({"name": "R", "stages": [{"name": "A", "kind": "closed"}]}),
        ))
        .unwrap_err();
        assert_eq!(e.body()["field"], "stages[0].kind");
        let e = PipelineAction::parse_create(body(json!({"name": "R", "stages": []}))).unwrap_err();
        assert_eq!(e.body()["field"], "stages");
    }

    #[test]
    fn a_stage_is_not_moved_onto_itself() {
        let s = Uuid::now_v7();
        let e = PipelineAction::parse_remove_stage(
            Uuid::now_v7(),
            s,
            body(json!({"move_deals_to": s})),
        )
        .unwrap_err();
        assert_eq!(e.body()["field"], "move_deals_to");
    }
}
