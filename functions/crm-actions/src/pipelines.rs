//! The pipeline and stage writes (issue 12 §3, admins only): routes and
//! body parsing; the rules and SQL live in `crm_domain::crm::pipelines`.

use crm_domain::{
    auth::Principal,
    crm::{ApiError, pipelines::PipelineAction},
};
use serde_json::{Map, Value};
use uuid::Uuid;

pub const CREATE: &str = "/crm/actions/pipelines";
pub const RENAME: &str = "/crm/actions/pipelines/{id}";
pub const ADD_STAGE: &str = "/crm/actions/pipelines/{id}/stages";
pub const REORDER: &str = "/crm/actions/pipelines/{id}/reorder";
pub const UPDATE_STAGE: &str = "/crm/actions/pipelines/{id}/stages/{stage_id}";
pub const REMOVE_STAGE: &str = "/crm/actions/pipelines/{id}/stages/{stage_id}/remove";

/// This module's routes (all POST), appended to the function's `ROUTES`.
pub const PATTERNS: &[&str] = &[
    CREATE,
    RENAME,
    ADD_STAGE,
    REORDER,
    UPDATE_STAGE,
    REMOVE_STAGE,
];

/// Members are refused before their body is read (403, nothing parsed or written).
pub fn require_admin(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "pipelines and stages are changed by admins".into(),
        ))
    }
}

fn id(params: &[&str], i: usize, what: &'static str) -> Result<Uuid, ApiError> {
    params
        .get(i)
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or(ApiError::NotFound(what))
}

/// `None` when `pattern` is not a pipeline route.
pub fn parse(
    pattern: &str,
    params: &[&str],
    body: Map<String, Value>,
) -> Option<Result<PipelineAction, ApiError>> {
    let parsed = match pattern {
        CREATE => PipelineAction::parse_create(body),
        RENAME => id(params, 0, "pipeline").and_then(|p| PipelineAction::parse_rename(p, body)),
        ADD_STAGE => {
            id(params, 0, "pipeline").and_then(|p| PipelineAction::parse_add_stage(p, body))
        }
        REORDER => id(params, 0, "pipeline").and_then(|p| PipelineAction::parse_reorder(p, body)),
        UPDATE_STAGE => id(params, 0, "pipeline").and_then(|p| {
            id(params, 1, "stage").and_then(|s| PipelineAction::parse_update_stage(p, s, body))
        }),
        REMOVE_STAGE => id(params, 0, "pipeline").and_then(|p| {
            id(params, 1, "stage").and_then(|s| PipelineAction::parse_remove_stage(p, s, body))
        }),
        _ => return None,
    };
    Some(parsed)
}
