//! /api/v1/crm: the Campaigns API — campaigns, templates, segments,
//! channels, the audit log, opt-outs, the module switch — and the public
//! unsubscribe page. This crate routes on method + raw path, authenticates,
//! checks capabilities and the kill switch, parses bodies and hands the work
//! to `crm_domain::campaigns::api` (writes through the shared write protocol
//! `crm_domain::crm::run`: `Idempotency-Key`, one transaction with the
//! audit entry and outbox rows, publish right after commit).
//!
//! Checks run in this order: route (404/405), size (413), bearer token
//! (401), capability (403 `forbidden`: `can_use_crm` everywhere, plus
//! `campaigns:send` to send, admin to toggle the module or change a
//! channel), kill switch (403 `module_disabled`), content type (415), JSON
//! (400), fields (422), then the work (404, 409, 422).
//!
//! With the module off, everything answers `module_disabled` except what an
//! operator needs to look and to turn it back on — `GET`/`PUT module` and
//! `GET audit` — and the opt-out routes and unsubscribe page, which record
//! suppressions whatever the switch says.

pub mod unsubscribe;

use crm_domain::{
    IdempotencyKey, Secret,
    auth::Principal,
    campaigns::{
        api::{
            self as repo, campaigns as camp,
            channels::{self, ChannelUpdate},
            compliance,
            segments::{self, SegmentFields},
            templates::{self, TemplateFields},
        },
        audit::{self, AuditQuery},
        switch,
    },
    crm::{ApiError, Done, idempotency, input, run},
    outbox::Publisher,
};
use crm_platform::{
    api::{self, ApiConfig},
    config::{AppEnv, CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tracing::Instrument;
use uuid::Uuid;

/// Every route's path starts with this.
pub const PREFIX: &str = "/api/v1/crm";

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/crm/campaigns"),
    ("POST", "/api/v1/crm/campaigns"),
    ("GET", "/api/v1/crm/campaigns/{id}"),
    ("PATCH", "/api/v1/crm/campaigns/{id}"),
    ("POST", "/api/v1/crm/campaigns/{id}/send"),
    ("POST", "/api/v1/crm/campaigns/{id}/pause"),
    ("POST", "/api/v1/crm/campaigns/{id}/resume"),
    ("POST", "/api/v1/crm/campaigns/{id}/cancel"),
    ("GET", "/api/v1/crm/campaigns/{id}/deliveries"),
    ("GET", "/api/v1/crm/templates"),
    ("POST", "/api/v1/crm/templates"),
    ("GET", "/api/v1/crm/templates/{id}"),
    ("PATCH", "/api/v1/crm/templates/{id}"),
    ("DELETE", "/api/v1/crm/templates/{id}"),
    ("GET", "/api/v1/crm/segments"),
    ("POST", "/api/v1/crm/segments"),
    ("GET", "/api/v1/crm/segments/{id}"),
    ("PATCH", "/api/v1/crm/segments/{id}"),
    ("DELETE", "/api/v1/crm/segments/{id}"),
    ("GET", "/api/v1/crm/segments/{id}/preview"),
    ("GET", "/api/v1/crm/channels"),
    ("PATCH", "/api/v1/crm/channels/{name}"),
    ("GET", "/api/v1/crm/audit"),
    ("GET", "/api/v1/crm/module"),
    ("PUT", "/api/v1/crm/module"),
    ("POST", "/api/v1/crm/contacts/{id}/opt-outs/{channel}"),
    ("DELETE", "/api/v1/crm/contacts/{id}/opt-outs/{channel}"),
    ("GET", "/api/v1/crm/unsubscribe"),
    ("POST", "/api/v1/crm/unsubscribe"),
];

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub api: ApiConfig,
    /// Publishes outbox rows (run_campaign jobs) right after commit. `None`
    /// leaves them to the scheduled relay (and to the local runner's).
    pub publisher: Option<Arc<dyn Publisher>>,
    /// `UNSUBSCRIBE_SECRET`: verifies unsubscribe tokens. Required in
    /// production; without it elsewhere the unsubscribe page answers 503.
    pub unsubscribe_secret: Option<Secret>,
}

impl Deps {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Self::new(&common, env)
    }

    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        let unsubscribe_secret = if common.app_env == AppEnv::Production {
            Some(env.secret("UNSUBSCRIBE_SECRET")?)
        } else {
            env.optional("UNSUBSCRIBE_SECRET")
                .map(|_| env.secret("UNSUBSCRIBE_SECRET"))
                .transpose()?
        };
        Ok(Self {
            pool: build_pool(&common.database)?,
            api: ApiConfig::from_env(common, env)?,
            publisher: None,
            unsubscribe_secret,
        })
    }
}

/// The path the client asked for, from `/api/v1/crm` on (a stage or a local
/// tool's prefix dropped).
pub fn raw_path(req: &Request) -> String {
    api::raw_path_from(req, PREFIX)
}

/// Why a request was refused: an API error, or the kill switch.
#[derive(Debug)]
pub enum Fail {
    Api(ApiError),
    ModuleDisabled,
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Fail::Api(e)
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Self {
        Fail::Api(ApiError::Unexpected(e))
    }
}

/// What a served request answers.
struct Out {
    status: u16,
    body: Value,
    replayed: bool,
}

impl Out {
    fn read(body: Value) -> Self {
        Self {
            status: 200,
            body,
            replayed: false,
        }
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "crm_campaigns",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = raw_path(&req);
        let (pattern, params) = match api::route(ROUTES, req.method().as_str(), &path) {
            Ok(found) => found,
            Err(miss) => return miss.response(),
        };
        if pattern == "/api/v1/crm/unsubscribe" {
            return unsubscribe::handle(&req, deps).await;
        }
        match serve(&req, deps, pattern, &params, &path).await {
            Ok(out) => {
                tracing::info!(
                    route = pattern,
                    status = out.status,
                    replayed = out.replayed,
                    id = out.body["id"].as_str(),
                    "campaigns api done"
                );
                api::answer(out.status, &out.body, out.replayed)
            }
            Err(Fail::Api(err)) => {
                api::log_refusal(pattern, &err);
                api::error(&err)
            }
            Err(Fail::ModuleDisabled) => {
                tracing::info!(
                    route = pattern,
                    status = 403,
                    code = "module_disabled",
                    "request refused"
                );
                http::json(
                    403,
                    &json!({"error": "The CRM campaigns module is disabled", "code": "module_disabled"}),
                )
            }
        }
    }
    .instrument(span)
    .await
}

/// Who may call a route (checked after authentication, before the switch).
fn permit(who: &Principal, method: &str, pattern: &str, dry_run: bool) -> Result<(), ApiError> {
    let forbidden = |why: &str| Err(ApiError::Forbidden(why.to_string()));
    if pattern == "/api/v1/crm/module" && method == "PUT" {
        return if who.is_admin() {
            Ok(())
        } else {
            forbidden("only admins may switch the module")
        };
    }
    let admin_reading_switch = pattern == "/api/v1/crm/module" && who.is_admin();
    if !who.has_cap("can_use_crm") && !admin_reading_switch {
        return forbidden("the can_use_crm capability is required");
    }
    // Resume restarts sending, so it needs what send needs. A dry run sends
    // nothing (it only counts and renders): `can_use_crm` is enough.
    let starts_sending = (pattern == "/api/v1/crm/campaigns/{id}/send" && !dry_run)
        || pattern == "/api/v1/crm/campaigns/{id}/resume";
    if starts_sending && !who.has_cap("campaigns:send") {
        return forbidden("the campaigns:send capability is required");
    }
    if pattern == "/api/v1/crm/channels/{name}" && !who.is_admin() {
        return forbidden("only admins may change a channel");
    }
    if pattern == "/api/v1/crm/contacts/{id}/opt-outs/{channel}"
        && method == "DELETE"
        && !who.is_admin()
    {
        return forbidden("only admins may lift an opt-out");
    }
    Ok(())
}

/// Routes that stay reachable with the module off.
fn allowed_when_off(pattern: &str) -> bool {
    matches!(
        pattern,
        "/api/v1/crm/module" | "/api/v1/crm/audit" | "/api/v1/crm/contacts/{id}/opt-outs/{channel}"
    )
}

fn q(req: &Request, name: &str) -> Option<String> {
    api::query(req, name).filter(|s| !s.trim().is_empty())
}

fn dry_run_flag(req: &Request) -> Result<bool, ApiError> {
    match q(req, "dry_run").as_deref().map(str::trim) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::validation("dry_run", "must be true or false")),
    }
}

async fn serve(
    req: &Request,
    deps: &Deps,
    pattern: &'static str,
    params: &[&str],
    path: &str,
) -> Result<Out, Fail> {
    let method = req.method().as_str().to_ascii_uppercase();
    let raw = http::body_bytes(req);
    if raw.len() > input::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: input::MAX_BODY_BYTES,
        }
        .into());
    }
    let who = api::authenticate(req, &deps.api.jwt)?;
    tracing::Span::current().record("user_id", who.user_id());
    let dry_run = pattern == "/api/v1/crm/campaigns/{id}/send" && dry_run_flag(req)?;
    permit(&who, &method, pattern, dry_run)?;
    let client = deps.pool.get().await.map_err(ApiError::from)?;
    if !allowed_when_off(pattern) && !switch::crm_enabled(&client).await? {
        return Err(Fail::ModuleDisabled);
    }
    let id = || repo::path_id(params.first(), noun(pattern));
    let limit = |default: i64, max: i64| input::limit(q(req, "limit").as_deref(), default, max);
    // Reads.
    if method == "GET" {
        let db = &client;
        let body = match pattern {
            "/api/v1/crm/campaigns" => {
                camp::list(
                    db,
                    q(req, "status").as_deref(),
                    q(req, "cursor").as_deref(),
                    limit(50, 200)?,
                )
                .await?
            }
            "/api/v1/crm/campaigns/{id}" => camp::get(db, id()?).await?,
            "/api/v1/crm/campaigns/{id}/deliveries" => {
                camp::deliveries(
                    db,
                    id()?,
                    q(req, "status").as_deref(),
                    q(req, "cursor").as_deref(),
                    limit(100, 500)?,
                )
                .await?
            }
            "/api/v1/crm/templates" => {
                templates::list_templates(db, q(req, "channel").as_deref()).await?
            }
            "/api/v1/crm/templates/{id}" => templates::get_template(db, id()?).await?,
            "/api/v1/crm/segments" => segments::list_segments(db).await?,
            "/api/v1/crm/segments/{id}" => segments::get_segment(db, id()?).await?,
            "/api/v1/crm/segments/{id}/preview" => {
                segments::preview_segment(
                    db,
                    &who,
                    id()?,
                    q(req, "cursor").as_deref(),
                    limit(50, 200)?,
                )
                .await?
            }
            "/api/v1/crm/channels" => channels::list_channels(db).await?,
            "/api/v1/crm/audit" => audit_page(req, db).await?,
            _ => compliance::get_module(db).await?,
        };
        return Ok(Out::read(body));
    }
    if dry_run {
        let out = camp::dry_run(&client, &who, id()?).await?;
        return Ok(Out::read(out));
    }
    drop(client);
    // Writes: a JSON body where one is taken, then the shared write protocol.
    let takes_body = matches!(method.as_str(), "PATCH" | "PUT")
        || matches!(
            pattern,
            "/api/v1/crm/campaigns" | "/api/v1/crm/templates" | "/api/v1/crm/segments"
        )
        || (method == "DELETE" && pattern == "/api/v1/crm/contacts/{id}/opt-outs/{channel}");
    let body = if takes_body {
        input::json_object(http::header(req, "content-type"), raw)?
    } else {
        Map::new()
    };
    let write = Write::parse(&method, pattern, params, body.clone())?;
    let hash = idempotency::request_hash(&method, path, &Value::Object(body));
    let key = http::header(req, "idempotency-key")
        .map(|raw| {
            IdempotencyKey::parse(raw).map_err(|r| ApiError::validation("Idempotency-Key", r))
        })
        .transpose()?;
    // Send and resume start sending: the switch is checked again inside the
    // write's transaction (share-locked), so neither is accepted just after
    // the switch went off.
    let starts_sending = matches!(write, Write::Send(_) | Write::Resume(_));
    let switched_off = Arc::new(AtomicBool::new(false));
    let off = switched_off.clone();
    let out = run::execute(
        &deps.pool,
        deps.publisher.as_deref(),
        &who,
        key,
        &hash,
        move |tx, who| {
            Box::pin(async move {
                if starts_sending && !switch::crm_enabled_locked(tx).await? {
                    off.store(true, Ordering::SeqCst);
                    return Err(ApiError::Forbidden("module_disabled".into()));
                }
                write.run(tx, who).await
            })
        },
    )
    .await;
    let out = match out {
        Err(_) if switched_off.load(Ordering::SeqCst) => return Err(Fail::ModuleDisabled),
        out => out?,
    };
    Ok(Out {
        status: out.status,
        body: out.body,
        replayed: out.replayed,
    })
}

/// The record a route's `{id}` names (for its 404).
fn noun(pattern: &str) -> &'static str {
    if pattern.starts_with("/api/v1/crm/campaigns") {
        "campaign"
    } else if pattern.starts_with("/api/v1/crm/templates") {
        "template"
    } else if pattern.starts_with("/api/v1/crm/segments") {
        "segment"
    } else {
        "contact"
    }
}

async fn audit_page(req: &Request, db: &deadpool_postgres::Client) -> Result<Value, ApiError> {
    let before_id = match q(req, "cursor") {
        None => None,
        Some(c) => Some(
            c.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::validation("cursor", "is not a valid cursor"))?,
        ),
    };
    let query = AuditQuery {
        action: q(req, "action"),
        actor: q(req, "actor"),
        before_id,
        limit: input::limit(q(req, "limit").as_deref(), 50, 200)?,
    };
    let (items, next) = audit::list(db, &query).await?;
    Ok(json!({"items": items, "next_cursor": next.map(|n| n.to_string())}))
}

/// A write, validated before any database work.
enum Write {
    CreateCampaign(camp::CampaignFields),
    UpdateCampaign(Uuid, Map<String, Value>),
    Send(Uuid),
    Pause(Uuid),
    Resume(Uuid),
    Cancel(Uuid),
    CreateTemplate(TemplateFields),
    UpdateTemplate(Uuid, Map<String, Value>),
    DeleteTemplate(Uuid),
    CreateSegment(SegmentFields),
    UpdateSegment(Uuid, Map<String, Value>),
    DeleteSegment(Uuid),
    UpdateChannel(String, ChannelUpdate),
    SetModule(bool, Option<String>),
    OptOut(Uuid, String),
    /// Contact, channel, the admin's reason.
    RemoveOptOut(Uuid, String, String),
}

impl Write {
    fn parse(
        method: &str,
        pattern: &str,
        params: &[&str],
        body: Map<String, Value>,
    ) -> Result<Self, ApiError> {
        let id = || repo::path_id(params.first(), noun(pattern));
        Ok(match (method, pattern) {
            ("POST", "/api/v1/crm/campaigns") => {
                Write::CreateCampaign(camp::CampaignFields::parse(body, None)?)
            }
            ("PATCH", "/api/v1/crm/campaigns/{id}") => Write::UpdateCampaign(id()?, body),
            ("POST", "/api/v1/crm/campaigns/{id}/send") => Write::Send(id()?),
            ("POST", "/api/v1/crm/campaigns/{id}/pause") => Write::Pause(id()?),
            ("POST", "/api/v1/crm/campaigns/{id}/resume") => Write::Resume(id()?),
            ("POST", "/api/v1/crm/campaigns/{id}/cancel") => Write::Cancel(id()?),
            ("POST", "/api/v1/crm/templates") => {
                Write::CreateTemplate(TemplateFields::parse(body, None)?)
            }
            ("PATCH", "/api/v1/crm/templates/{id}") => Write::UpdateTemplate(id()?, body),
            ("DELETE", "/api/v1/crm/templates/{id}") => Write::DeleteTemplate(id()?),
            ("POST", "/api/v1/crm/segments") => {
                Write::CreateSegment(SegmentFields::parse(body, None)?)
            }
            ("PATCH", "/api/v1/crm/segments/{id}") => Write::UpdateSegment(id()?, body),
            ("DELETE", "/api/v1/crm/segments/{id}") => Write::DeleteSegment(id()?),
            ("PATCH", "/api/v1/crm/channels/{name}") => Write::UpdateChannel(
                params.first().copied().unwrap_or_default().to_string(),
                ChannelUpdate::parse(body)?,
            ),
            ("PUT", "/api/v1/crm/module") => {
                if let Some(k) = body.keys().find(|k| *k != "enabled" && *k != "reason") {
                    return Err(ApiError::validation(k.clone(), "is not a known field"));
                }
                let enabled = body
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| ApiError::validation("enabled", "must be true or false"))?;
                let reason = match body.get("reason") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().chars().count() <= 500 => {
                        Some(s.trim().to_string()).filter(|s| !s.is_empty())
                    }
                    Some(_) => {
                        return Err(ApiError::validation(
                            "reason",
                            "must be a string of at most 500 characters",
                        ));
                    }
                };
                Write::SetModule(enabled, reason)
            }
            (m, "/api/v1/crm/contacts/{id}/opt-outs/{channel}") => {
                let contact = repo::path_id(params.first(), "contact")?;
                let channel = params.get(1).copied().unwrap_or_default().to_string();
                if m == "POST" {
                    Write::OptOut(contact, channel)
                } else {
                    Write::RemoveOptOut(contact, channel, compliance::parse_lift_reason(body)?)
                }
            }
            _ => return Err(ApiError::NotFound("route")),
        })
    }

    async fn run(
        self,
        tx: &deadpool_postgres::Transaction<'_>,
        who: &Principal,
    ) -> Result<Done, ApiError> {
        match self {
            Write::CreateCampaign(f) => camp::create(tx, who, f).await,
            Write::UpdateCampaign(id, body) => camp::update(tx, who, id, body).await,
            Write::Send(id) => camp::send(tx, who, id).await,
            Write::Pause(id) => camp::pause(tx, who, id).await,
            Write::Resume(id) => camp::resume(tx, who, id).await,
            Write::Cancel(id) => camp::cancel(tx, who, id).await,
            Write::CreateTemplate(t) => templates::create_template(tx, who, t).await,
            Write::UpdateTemplate(id, body) => templates::update_template(tx, who, id, body).await,
            Write::DeleteTemplate(id) => templates::delete_template(tx, who, id).await,
            Write::CreateSegment(s) => segments::create_segment(tx, who, s).await,
            Write::UpdateSegment(id, body) => segments::update_segment(tx, who, id, body).await,
            Write::DeleteSegment(id) => segments::delete_segment(tx, who, id).await,
            Write::UpdateChannel(name, u) => channels::update_channel(tx, who, &name, u).await,
            Write::SetModule(enabled, reason) => {
                compliance::set_module(tx, who, enabled, reason.as_deref()).await
            }
            Write::OptOut(contact, channel) => {
                compliance::add_opt_out(tx, who, contact, &channel).await
            }
            Write::RemoveOptOut(contact, channel, reason) => {
                compliance::remove_opt_out(tx, who, contact, &channel, &reason).await
            }
        }
    }
}
