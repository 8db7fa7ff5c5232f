//! POST /crm/actions/contacts, /crm/actions/deals,
//! /crm/actions/deals/{id}/stage, /crm/actions/contacts/{id}/assign and
//! /claim, and PUT /api/v1/lead-routing/{source}: the authenticated CRM writes. This crate
//! routes on method + raw path, authenticates, parses the body into a
//! validated action and hands it to [`run`]; the writes themselves live in
//! `crm_domain::crm`.
//!
//! Checks run in this order: route, size (413), bearer token (401), content
//! type (415), JSON (400), fields (422), then the idempotency key and the work.

pub mod pipelines;
pub mod run;

use crm_domain::{
    IdempotencyKey,
    crm::{
        ApiError,
        contacts::ContactInput,
        deals::{self, DealInput},
        idempotency, input, ownership,
        routing::{Rule, Source},
    },
    outbox::Publisher,
};
use crm_platform::{
    api::{self, ApiConfig},
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/crm/actions/contacts"),
    ("POST", "/crm/actions/deals"),
    ("POST", "/crm/actions/deals/{id}/stage"),
    // Pipelines and stages (admins): `pipelines::PATTERNS`.
    ("POST", pipelines::CREATE),
    ("POST", pipelines::RENAME),
    ("POST", pipelines::ADD_STAGE),
    ("POST", pipelines::REORDER),
    ("POST", pipelines::UPDATE_STAGE),
    ("POST", pipelines::REMOVE_STAGE),
    ("POST", "/crm/actions/contacts/{id}/assign"),
    ("POST", "/crm/actions/contacts/{id}/claim"),
    ("PUT", "/api/v1/lead-routing/{source}"),
];

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub api: ApiConfig,
    /// Publishes outbox rows right after commit (SQS in Lambda). `None`
    /// leaves them to the scheduled relay (and to the local runner's).
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
            api: ApiConfig::from_env(common, env)?,
            publisher: None,
        })
    }
}

/// A write, validated and ready to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Contact(ContactInput),
    Deal(DealInput),
    MoveStage {
        deal_id: Uuid,
        stage_id: Uuid,
    },
    Pipeline(crm_domain::crm::pipelines::PipelineAction),
    /// An admin gives a contact to a user (`None`: nobody).
    Assign {
        contact_id: Uuid,
        owner_id: Option<String>,
    },
    /// The caller takes an unowned contact.
    Claim {
        contact_id: Uuid,
    },
    SetRouting {
        source: Source,
        rule: Rule,
    },
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "crm_actions",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = api::raw_path_crm_or_api_v1(&req);
        let (pattern, params) = match api::route(ROUTES, req.method().as_str(), &path) {
            Ok(found) => found,
            Err(miss) => return miss.response(),
        };
        match serve(&req, deps, pattern, &params, &path).await {
            Ok(out) => {
                tracing::info!(
                    route = pattern,
                    status = out.status,
                    replayed = out.replayed,
                    id = out.body["id"].as_str(),
                    "crm action done"
                );
                api::answer(out.status, &out.body, out.replayed)
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
    path: &str,
) -> Result<run::Outcome, ApiError> {
    let raw = http::body_bytes(req);
    if raw.len() > input::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: input::MAX_BODY_BYTES,
        });
    }
    let who = api::authenticate(req, &deps.api, &deps.pool).await?;
    tracing::Span::current().record("user_id", who.user_id());
    if matches!(
        pattern,
        "/api/v1/lead-routing/{source}" | "/crm/actions/contacts/{id}/assign"
    ) && !who.is_admin()
    {
        return Err(ApiError::Forbidden("this action is for admins".into()));
    }
    let claim = pattern == "/crm/actions/contacts/{id}/claim";
    // A claim needs no body: `curl -X POST …/claim` is enough.
    let body = if claim && raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        input::json_object(http::header(req, "content-type"), raw)?
    };
    let method = req.method().as_str().to_ascii_uppercase();
    let hash = idempotency::request_hash(&method, path, &Value::Object(body.clone()));
    let contact_id = || {
        params
            .first()
            .and_then(|raw| Uuid::parse_str(raw).ok())
            .ok_or(ApiError::NotFound("contact"))
    };
    let action = match pattern {
        _ if pipelines::PATTERNS.contains(&pattern) => {
            pipelines::require_admin(&who)?;
            Action::Pipeline(pipelines::parse(pattern, params, body).expect("a pipeline route")?)
        }
        "/crm/actions/contacts" => {
            Action::Contact(ContactInput::parse(body, deps.api.phone_region)?)
        }
        "/crm/actions/deals" => Action::Deal(DealInput::parse(body)?),
        "/crm/actions/contacts/{id}/assign" => Action::Assign {
            contact_id: contact_id()?,
            owner_id: ownership::parse_assign(body)?,
        },
        "/crm/actions/contacts/{id}/claim" => {
            ownership::parse_claim(body)?;
            Action::Claim {
                contact_id: contact_id()?,
            }
        }
        "/api/v1/lead-routing/{source}" => Action::SetRouting {
            source: Source::parse(params.first().copied().unwrap_or_default())?,
            rule: Rule::parse(body)?,
        },
        _ => Action::MoveStage {
            deal_id: params
                .first()
                .and_then(|raw| Uuid::parse_str(raw).ok())
                .ok_or(ApiError::NotFound("deal"))?,
            stage_id: deals::parse_stage_move(body)?,
        },
    };
    let key = http::header(req, "idempotency-key")
        .map(|raw| {
            IdempotencyKey::parse(raw).map_err(|r| ApiError::validation("Idempotency-Key", r))
        })
        .transpose()?;
    run::execute(deps, &who, key, &hash, action).await
}
