//! GET /crm/pipelines, /crm/deals, /crm/contacts, /crm/contacts/{id} and
//! /crm/contacts/{id}/c2s: the authenticated reads a pipeline board needs;
//! and GET /api/v1/lead-routing, the admins' lead routing rules. This crate routes on
//! method + raw path, authenticates and parses the query string; the
//! queries live in `crm_domain::crm` (`reads`, `board`).

use crm_domain::{
    auth::Principal,
    crm::{
        ApiError,
        board::{self, BoardQuery},
        reads::{self, ContactQuery},
        routing,
        timeline::{self, TimelineQuery},
    },
};
use crm_platform::{
    api::{self, ApiConfig},
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/crm/pipelines"),
    ("GET", "/crm/pipelines/{id}"),
    ("GET", "/crm/deals"),
    ("GET", "/crm/contacts"),
    ("GET", "/crm/contacts/{id}"),
    ("GET", "/crm/contacts/{id}/c2s"),
    ("GET", "/crm/contacts/{id}/timeline"),
    ("GET", "/api/v1/lead-routing"),
];

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub api: ApiConfig,
}

impl Deps {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Self::new(&common, env)
    }

    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            pool: build_pool(&common.database)?,
            api: ApiConfig::from_env(common, env)?,
        })
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "crm_read",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = api::raw_path_crm_or_api_v1(&req);
        let (pattern, params) = match api::route(ROUTES, req.method().as_str(), &path) {
            Ok(found) => found,
            Err(miss) => return miss.response(),
        };
        match serve(&req, deps, pattern, &params).await {
            Ok(body) => {
                tracing::info!(route = pattern, status = 200, "crm read done");
                api::answer(200, &body, false)
            }
            Err(err) => {
                api::log_refusal(pattern, &err);
                api::error(&err)
            }
        }
    }
    .instrument(span)
    .await
}

async fn serve(
    req: &Request,
    deps: &Deps,
    pattern: &str,
    params: &[&str],
) -> Result<Value, ApiError> {
    let who = api::authenticate(req, &deps.api, &deps.pool).await?;
    tracing::Span::current().record("user_id", who.user_id());
    let q = |name: &str| api::query(req, name);
    // Parse before taking a connection: a bad query costs no database work.
    let query = match pattern {
        "/crm/pipelines" => Query::Pipelines,
        "/crm/pipelines/{id}" => Query::Pipeline(
            params
                .first()
                .and_then(|raw| Uuid::parse_str(raw).ok())
                .ok_or(ApiError::NotFound("pipeline"))?,
        ),
        "/api/v1/lead-routing" => Query::LeadRouting,
        "/crm/deals" => Query::Board(BoardQuery::parse(
            q("pipeline_id").as_deref(),
            q("stage_id").as_deref(),
            q("cursor").as_deref(),
            q("limit").as_deref(),
        )?),
        "/crm/contacts" => Query::Contacts(ContactQuery::parse(
            q("q").as_deref(),
            q("cursor").as_deref(),
            q("limit").as_deref(),
            deps.api.phone_region,
        )?),
        "/crm/contacts/{id}/timeline" => Query::Timeline(
            params
                .first()
                .and_then(|raw| Uuid::parse_str(raw).ok())
                .ok_or(ApiError::NotFound("contact"))?,
            TimelineQuery::parse(
                q("cursor").as_deref(),
                q("limit").as_deref(),
                q("type").as_deref(),
            )?,
        ),
        "/crm/contacts/{id}/c2s" => Query::ContactC2s(
            params
                .first()
                .and_then(|raw| Uuid::parse_str(raw).ok())
                .ok_or(ApiError::NotFound("contact"))?,
        ),
        _ => Query::Contact(
            params
                .first()
                .and_then(|raw| Uuid::parse_str(raw).ok())
                .ok_or(ApiError::NotFound("contact"))?,
        ),
    };
    run(deps, &who, query).await
}

enum Query {
    Pipelines,
    /// One pipeline with the number of deals in each stage (the settings screen).
    Pipeline(Uuid),
    LeadRouting,
    Board(BoardQuery),
    Contacts(ContactQuery),
    Contact(Uuid),
    /// The Contact2Sale leads linked to the contact (`crm_domain::c2s::link`).
    ContactC2s(Uuid),
    Timeline(Uuid, TimelineQuery),
}

async fn run(deps: &Deps, who: &Principal, query: Query) -> Result<Value, ApiError> {
    let mut client = deps.pool.get().await?;
    match query {
        Query::Pipelines => reads::pipelines(&client).await,
        Query::Pipeline(id) => {
            let tx = snapshot(&mut client).await?;
            let answer = crm_domain::crm::pipelines::read(&tx, id).await?;
            Ok(serde_json::to_value(answer).expect("answers serialise"))
        }
        Query::LeadRouting => routing::list_rules(&client, who).await,
        Query::Contacts(q) => reads::search_contacts(&client, who, &q).await,
        // Several statements: one read-only snapshot, so counts, columns,
        // deals and timeline agree with each other.
        Query::Board(q) => {
            let tx = snapshot(&mut client).await?;
            board::board(&tx, who, &q).await
        }
        Query::Contact(id) => {
            let tx = snapshot(&mut client).await?;
            reads::contact_detail(&tx, who, id).await
        }
        // The visibility check and the page: one snapshot.
        Query::Timeline(id, q) => {
            let tx = snapshot(&mut client).await?;
            let page = timeline::page(&tx, who, id, &q).await?;
            serde_json::to_value(page).map_err(|e| ApiError::Unexpected(e.into()))
        }
        Query::ContactC2s(id) => {
            let tx = snapshot(&mut client).await?;
            let answer = crm_domain::c2s::read::contact_c2s_for(&tx, who, id).await?;
            Ok(serde_json::to_value(answer).expect("answers serialise"))
        }
    }
}

async fn snapshot(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, ApiError> {
    client
        .build_transaction()
        .isolation_level(deadpool_postgres::tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| ApiError::from_db(e, "starting a read snapshot"))
}
