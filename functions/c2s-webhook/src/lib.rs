//! Contact2Sale leads (issue 5, parts 1 and 3):
//! - `POST /api/v1/webhooks/c2s`: C2S lead hooks, authenticated by a token
//!   (header or URL), each element recorded, upserted and queued for the
//!   enrichment worker (`crm_domain::c2s`), its job published right after
//!   commit;
//! - `GET /api/v1/webhooks/c2s/stats`: admins' per day × hook action numbers;
//! - `/api/v1/c2s/leads…`, `/api/v1/c2s/managers…`: the read API and the
//!   managers CRUD (`admin`).
//!
//! This crate routes on method + raw path and maps outcomes to responses;
//! the flow and the SQL live in `crm_domain::c2s`.

pub mod admin;

use crm_domain::{
    c2s::{self, store},
    crm::{ApiError, input},
    outbox::{self, Publisher},
    signature::Verifier,
};
use crm_platform::{
    api::{self, ApiConfig},
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, RequestExt, Response};
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

pub const WEBHOOK_PATH: &str = "/api/v1/webhooks/c2s";
pub const STATS_PATH: &str = "/api/v1/webhooks/c2s/stats";

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", WEBHOOK_PATH),
    ("GET", STATS_PATH),
    ("GET", admin::LEADS_PATH),
    ("GET", admin::LEAD_PATH),
    ("GET", admin::MANAGERS_PATH),
    ("POST", admin::MANAGERS_PATH),
    ("GET", admin::MANAGER_PATH),
    ("PATCH", admin::MANAGER_PATH),
    ("DELETE", admin::MANAGER_PATH),
];

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    /// `WEBHOOK_SECRET` (or the development bypass).
    pub verifier: Verifier,
    /// JWT verification for the stats route.
    pub api: ApiConfig,
    /// Publishes the accepted elements' enrichment jobs right after commit
    /// (SQS in Lambda). `None` leaves them to the scheduled relay (and to
    /// the local runner's).
    pub publisher: Option<Arc<dyn Publisher>>,
}

impl Deps {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Self::new(&common, env)
    }

    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            pool: build_pool(&common.database)?,
            verifier: common.verifier(env, "WEBHOOK_SECRET")?,
            api: ApiConfig::from_env(common, env)?,
            publisher: None,
        })
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "c2s_webhook",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = raw_path(&req);
        match api::route(ROUTES, req.method().as_str(), &path) {
            Ok((WEBHOOK_PATH, _)) => webhook(&req, deps).await,
            Ok((pattern, params)) if pattern != STATS_PATH => {
                match admin::serve(&req, deps, pattern, &params, &path).await {
                    Ok(out) => {
                        tracing::info!(route = pattern, status = out.status, "c2s admin served");
                        api::answer(out.status, &out.body, out.replayed)
                    }
                    Err(err) => {
                        api::log_refusal(pattern, &err);
                        api::error(&err)
                    }
                }
            }
            Ok(_) => match stats(&req, deps).await {
                Ok(body) => {
                    tracing::info!(route = STATS_PATH, status = 200, "c2s stats served");
                    api::answer(200, &body, false)
                }
                Err(err) => {
                    api::log_refusal(STATS_PATH, &err);
                    api::error(&err)
                }
            },
            Err(miss) => miss.response(),
        }
    }
    .instrument(span)
    .await
}

/// `rawPath` without a named stage or a local tool's prefix.
fn raw_path(req: &Request) -> String {
    api::raw_path_from(req, "/api/")
}

async fn webhook(req: &Request, deps: &Deps) -> Response<Body> {
    let query_token = req
        .query_string_parameters_ref()
        .and_then(|q| q.first("token"));
    let inbound = c2s::Inbound {
        content_type: http::header(req, "content-type"),
        header_token: http::header(req, "x-webhook-token"),
        query_token,
        body: http::body_bytes(req),
    };
    let mut client = match deps.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no database connection");
            return http::error(&crm_domain::WebhookError::Unexpected(anyhow::anyhow!(
                "pool: {e}"
            )));
        }
    };
    let mut enqueued = Vec::new();
    let outcome = c2s::receive(&client, &deps.verifier, inbound, &mut enqueued).await;
    // Every element's statement has committed: publish the jobs they wrote
    // (also those of the elements before a 500), then answer.
    publish(&mut client, deps, &enqueued).await;
    match outcome {
        Ok(answer) => {
            tracing::info!(
                received = answer["received"].as_u64(),
                accepted = answer["accepted"].as_u64(),
                duplicate = answer["duplicate"].as_u64(),
                invalid = answer["invalid"].as_u64(),
                "c2s hook answered"
            );
            http::json(200, &answer)
        }
        Err(err) => {
            tracing::info!(status = err.status(), code = err.code(), "c2s hook refused");
            http::error(&err)
        }
    }
}

/// Publishes exactly these outbox rows (this call's jobs, never older rows
/// of other calls). A failure is logged with ids only and never changes the
/// answer: the rows stay unpublished for the scheduled relay.
async fn publish(client: &mut deadpool_postgres::Client, deps: &Deps, ids: &[Uuid]) {
    let Some(publisher) = deps.publisher.as_deref() else {
        return;
    };
    if ids.is_empty() {
        return;
    }
    match outbox::relay_ids(client, publisher, ids).await {
        Ok(r) if r.failed > 0 => tracing::warn!(
            published = r.published,
            failed = r.failed,
            outbox_message_ids = ?ids,
            "enrichment jobs left to the relay"
        ),
        Ok(r) => tracing::debug!(published = r.published, "enrichment jobs published"),
        Err(e) => tracing::warn!(
            error = %crm_domain::db::loggable(&e),
            outbox_message_ids = ?ids,
            "publishing after commit failed; the relay publishes"
        ),
    }
}

/// Admins only: members get 403, no or a bad token 401.
async fn stats(req: &Request, deps: &Deps) -> Result<serde_json::Value, ApiError> {
    let who = api::authenticate(req, &deps.api.jwt)?;
    tracing::Span::current().record("user_id", who.user_id());
    if !who.is_admin() {
        return Err(ApiError::Forbidden("this endpoint is for admins".into()));
    }
    let days = input::limit(
        api::query(req, "days").as_deref(),
        store::STATS_DEFAULT_DAYS,
        store::STATS_MAX_DAYS,
    )
    .map_err(|_| {
        ApiError::validation(
            "days",
            format!(
                "must be a whole number between 1 and {}",
                store::STATS_MAX_DAYS
            ),
        )
    })?;
    let client = deps.pool.get().await?;
    store::stats(&client, i32::try_from(days).expect("at most 90")).await
}
