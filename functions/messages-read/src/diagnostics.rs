//! Webhook diagnostics for ops (issue 12 §3, admins): recent inbound events
//! filtered by source, status and error code, and a per-source summary over
//! a window. The queries live in `crm_domain::webhook_diagnostics`; nothing
//! read there carries a body, payload, key or secret.

use crate::Deps;
use crm_domain::{
    crm::{ApiError, input},
    webhook_diagnostics::{self as diag, EventQuery},
};
use crm_platform::api;
use lambda_http::Request;
use serde_json::Value;

pub const EVENTS_PATH: &str = "/api/v1/admin/webhook-events";
pub const SUMMARY_PATH: &str = "/api/v1/admin/webhook-events/summary";

/// The caller is an admin (checked by the router).
pub async fn serve(req: &Request, deps: &Deps, pattern: &str) -> Result<Value, ApiError> {
    let q = |name: &str| api::query(req, name);
    if pattern == EVENTS_PATH {
        let query = EventQuery::parse(
            q("source").as_deref(),
            q("status").as_deref(),
            q("error_code").as_deref(),
            q("cursor").as_deref(),
            q("limit").as_deref(),
        )?;
        let client = deps.pool.get().await?;
        let page = diag::events(&client, &query).await?;
        return Ok(serde_json::to_value(page).expect("answers serialise"));
    }
    let hours = input::limit(
        q("hours").as_deref(),
        diag::SUMMARY_DEFAULT_HOURS,
        diag::SUMMARY_MAX_HOURS,
    )
    .map_err(|_| {
        ApiError::validation(
            "hours",
            format!(
                "must be a whole number between 1 and {}",
                diag::SUMMARY_MAX_HOURS
            ),
        )
    })?;
    let client = deps.pool.get().await?;
    let summary = diag::summary(&client, i32::try_from(hours).expect("at most 720")).await?;
    Ok(serde_json::to_value(summary).expect("answers serialise"))
}
