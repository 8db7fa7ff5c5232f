//! The messaging API's reads and ops (issue 4 §2): a contact's messages,
//! the read/starred flags, the polling feed, the templates sync from
//! Twilio's Content API and the admins' debug reads; and what the console's
//! inbox needs (issue 11 §3): conversations, marking one read, and a
//! message's media through a short-lived signed URL (docs/inbox.md).
//! This crate routes on method + raw path, authenticates, parses the query
//! string and body; the SQL lives in `crm_domain::inbox`.

pub mod content;
pub mod diagnostics;

use content::ContentClient;
use crm_domain::{
    auth::Principal,
    crm::{ApiError, input},
    inbox::{
        self, Flags, MessagePage,
        conversations::{self, ConversationQuery},
        media,
        templates::{self, Upsert},
    },
};
use crm_platform::{
    api::{self, ApiConfig},
    blob::Presigner,
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use tracing::Instrument;
use uuid::Uuid;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/contacts/{id}/messages"),
    ("PATCH", "/api/messages/{id}"),
    ("GET", "/api/messages/events"),
    ("GET", "/api/debug/webhook-diagnostics"),
    ("GET", "/api/debug/messages"),
    ("POST", "/api/templates/sync-missing"),
    ("GET", diagnostics::EVENTS_PATH),
    ("GET", diagnostics::SUMMARY_PATH),
    ("GET", "/api/conversations"),
    ("POST", "/api/conversations/{id}/read"),
    ("GET", "/api/messages/{id}/media/{index}"),
];

/// How long a media URL works: long enough to load, short enough that a
/// copied link soon stops working.
pub const MEDIA_URL_TTL: Duration = Duration::from_secs(60);

/// The feed's page size: default and maximum.
pub const FEED_DEFAULT_LIMIT: i64 = 100;
pub const FEED_MAX_LIMIT: i64 = 500;
/// The diagnostics window: default and maximum, in hours.
pub const DIAGNOSTICS_DEFAULT_HOURS: i64 = 24;
pub const DIAGNOSTICS_MAX_HOURS: i64 = 720;

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub api: ApiConfig,
    /// `None` without Twilio credentials: the templates sync answers 503.
    pub content: Option<ContentClient>,
    /// Signs media GET URLs: S3 (`MEDIA_BUCKET`) in Lambda, the local
    /// folder's signer under the local runner; `None`: media answers 503.
    pub media: Option<Arc<dyn Presigner>>,
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
            content: ContentClient::from_env(env)?,
            media: None,
        })
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "messages_read",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = raw_path(&req);
        let (pattern, params) = match api::route(ROUTES, req.method().as_str(), &path) {
            Ok(found) => found,
            Err(miss) => return miss.response(),
        };
        if pattern == "/api/messages/{id}/media/{index}" {
            return match serve_media(&req, deps, &params).await {
                Ok(resp) => {
                    tracing::info!(
                        route = pattern,
                        status = resp.status().as_u16(),
                        "media link signed"
                    );
                    resp
                }
                Err(err) => {
                    api::log_refusal(pattern, &err);
                    api::error(&err)
                }
            };
        }
        match serve(&req, deps, pattern, &params).await {
            Ok(body) => {
                tracing::info!(route = pattern, status = 200, "messages request done");
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

/// `rawPath` without a named stage or local tool prefix (these routes live under `/api/`).
fn raw_path(req: &Request) -> String {
    api::raw_path_from(req, "/api/")
}

/// What a request asks for, parsed before a connection is taken.
enum Query {
    ContactMessages(Uuid, MessagePage),
    SetFlags(Uuid, Flags),
    Feed(inbox::FeedCursor, i64),
    /// `?after=now`: no events, the current head as `next_after`.
    FeedHead(i64),
    Conversations(ConversationQuery),
    MarkRead(Uuid),
    Diagnostics(i32),
    DebugMessages(String),
}

fn path_uuid(params: &[&str], what: &'static str) -> Result<Uuid, ApiError> {
    params
        .first()
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or(ApiError::NotFound(what))
}

fn admin_only(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this endpoint is for admins".into()))
    }
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
    let query = match pattern {
        "/api/contacts/{id}/messages" => Query::ContactMessages(
            path_uuid(params, "contact")?,
            MessagePage::parse(q("cursor").as_deref(), q("limit").as_deref())?,
        ),
        "/api/messages/{id}" => {
            let body =
                input::json_object(http::header(req, "content-type"), http::body_bytes(req))?;
            let flags = Flags::parse(&body)?;
            Query::SetFlags(path_uuid(params, "message")?, flags)
        }
        "/api/messages/events" => {
            let limit = input::limit(q("limit").as_deref(), FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT)?;
            match q("after").as_deref().map(str::trim) {
                Some("now") => Query::FeedHead(limit),
                after => Query::Feed(inbox::FeedCursor::parse(after)?, limit),
            }
        }
        "/api/conversations" => Query::Conversations(ConversationQuery::parse(
            q("cursor").as_deref(),
            q("limit").as_deref(),
            q("channel").as_deref(),
            q("unread").as_deref(),
        )?),
        "/api/conversations/{id}/read" => Query::MarkRead(path_uuid(params, "contact")?),
        "/api/debug/webhook-diagnostics" => {
            admin_only(&who)?;
            let hours = input::limit(
                q("hours").as_deref(),
                DIAGNOSTICS_DEFAULT_HOURS,
                DIAGNOSTICS_MAX_HOURS,
            )
            .map_err(|_| {
                ApiError::validation(
                    "hours",
                    format!("must be a whole number between 1 and {DIAGNOSTICS_MAX_HOURS}"),
                )
            })?;
            Query::Diagnostics(i32::try_from(hours).expect("at most 720"))
        }
        "/api/templates/sync-missing" => {
            admin_only(&who)?;
            return sync_templates(deps).await;
        }
        diagnostics::EVENTS_PATH | diagnostics::SUMMARY_PATH => {
            admin_only(&who)?;
            return diagnostics::serve(req, deps, pattern).await;
        }
        _ => {
            admin_only(&who)?;
            let phone = q("phone")
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ApiError::validation("phone", "is required"))?;
            Query::DebugMessages(phone)
        }
    };
    run(deps, &who, query).await
}

async fn run(deps: &Deps, who: &Principal, query: Query) -> Result<Value, ApiError> {
    let mut client = deps.pool.get().await?;
    match query {
        Query::ContactMessages(id, page) => {
            // The visibility check and the page: one read-only snapshot.
            let tx = client
                .build_transaction()
                .isolation_level(deadpool_postgres::tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| ApiError::from_db(e, "starting a read snapshot"))?;
            inbox::contact_messages(&tx, who, id, &page).await
        }
        Query::SetFlags(id, flags) => {
            let done = inbox::set_flags(&client, who, id, flags).await?;
            tracing::info!(message_id = %id, "message flags set");
            Ok(done)
        }
        Query::Feed(after, limit) => inbox::feed(&client, who, after, limit).await,
        Query::FeedHead(limit) => {
            let head = inbox::feed_head(&client).await?;
            Ok(json!({"events": [], "next_after": head.encode(), "limit": limit}))
        }
        Query::Conversations(q) => {
            let page = conversations::list(&client, who, &q).await?;
            serde_json::to_value(page).map_err(|e| ApiError::Unexpected(e.into()))
        }
        Query::MarkRead(id) => {
            let done = conversations::mark_read(&client, who, id).await?;
            tracing::info!(contact_id = %id, marked = done.marked, "conversation marked read");
            serde_json::to_value(done).map_err(|e| ApiError::Unexpected(e.into()))
        }
        Query::Diagnostics(hours) => inbox::webhook_diagnostics(&client, hours).await,
        Query::DebugMessages(phone) => {
            inbox::messages_by_phone(&client, &phone, deps.api.phone_region).await
        }
    }
}

/// GET /api/messages/{id}/media/{index}: 302 to a signed URL of the file
/// (or, with `Accept: application/json`, that URL as JSON), for a message the
/// caller may read; 404 otherwise, exactly as for an unknown message.
async fn serve_media(
    req: &Request,
    deps: &Deps,
    params: &[&str],
) -> Result<Response<Body>, ApiError> {
    let who = api::authenticate(req, &deps.api, &deps.pool).await?;
    tracing::Span::current().record("user_id", who.user_id());
    let id = path_uuid(params, "message")?;
    let index = media::parse_index(params.get(1).copied().unwrap_or_default())?;
    let presigner = deps
        .media
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable(anyhow::anyhow!("MEDIA_BUCKET is not configured")))?;
    let file = {
        let client = deps.pool.get().await?;
        media::find(&client, &who, id, index).await?
    };
    let url = presigner
        .presign_get_as(
            &file.key,
            MEDIA_URL_TTL,
            &file.content_type,
            &file.content_disposition(),
        )
        .await
        .map_err(ApiError::Unexpected)?;
    let wants_json = http::header(req, "accept").is_some_and(|a| a.contains("application/json"));
    let mut resp = if wants_json {
        api::answer(
            200,
            &json!({"url": url, "content_type": file.content_type, "bytes": file.bytes,
                    "expires_in": MEDIA_URL_TTL.as_secs()}),
            false,
        )
    } else {
        let mut resp = http::json(302, &json!({"url": url}));
        let location = lambda_http::http::HeaderValue::from_str(&url)
            .map_err(|e| ApiError::Unexpected(e.into()))?;
        resp.headers_mut().insert("location", location);
        resp
    };
    // A signed URL is for this caller only: never stored by a shared cache.
    resp.headers_mut().insert(
        "cache-control",
        lambda_http::http::HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}

/// Pulls every Content API template first (no connection held while Twilio
/// answers), then upserts them by ContentSid in one transaction.
async fn sync_templates(deps: &Deps) -> Result<Value, ApiError> {
    let client = deps.content.as_ref().ok_or_else(|| {
        ApiError::Unavailable(anyhow::anyhow!(
            "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN are not configured"
        ))
    })?;
    let items = client.list().await?;
    let mut skipped = 0_u32;
    let parsed: Vec<_> = items
        .iter()
        .filter_map(|item| {
            let t = content::template(item);
            skipped += u32::from(t.is_none());
            t
        })
        .collect();
    let mut conn = deps.pool.get().await?;
    let tx = conn
        .transaction()
        .await
        .map_err(|e| ApiError::from_db(e, "starting the templates sync"))?;
    let (mut created, mut updated, mut unchanged) = (0_u32, 0_u32, 0_u32);
    for t in &parsed {
        match templates::upsert(&tx, t).await? {
            Upsert::Created => created += 1,
            Upsert::Updated => updated += 1,
            Upsert::Unchanged => unchanged += 1,
        }
    }
    tx.commit()
        .await
        .map_err(|e| ApiError::from_db(e, "committing the templates sync"))?;
    tracing::info!(created, updated, unchanged, skipped, "templates synced");
    Ok(json!({"created": created, "updated": updated, "unchanged": unchanged, "skipped": skipped}))
}
