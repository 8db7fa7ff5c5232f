//! The Contact2Sale read API and managers CRUD (issue 12 §2), JWT:
//! - `GET /api/v1/c2s/leads`, `GET /api/v1/c2s/leads/{id}`: admins, or
//!   members with the `c2s:read` capability;
//! - `/api/v1/c2s/managers[/{id}]` (GET, POST, PATCH, DELETE): admins.
//!
//! Writes go through the CRM write protocol (`crm_domain::crm::run`:
//! `Idempotency-Key`, one transaction with its audit entry).

use crate::Deps;
use crm_domain::{
    IdempotencyKey,
    auth::Principal,
    c2s::{
        managers::{self, ManagerInput},
        read::{self, LeadQuery},
    },
    crm::{ApiError, Done, idempotency, input, run},
};
use crm_platform::{api, http};
use lambda_http::Request;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub const LEADS_PATH: &str = "/api/v1/c2s/leads";
pub const LEAD_PATH: &str = "/api/v1/c2s/leads/{id}";
pub const MANAGERS_PATH: &str = "/api/v1/c2s/managers";
pub const MANAGER_PATH: &str = "/api/v1/c2s/managers/{id}";

/// The capability that lets a member read C2S leads.
pub const READ_CAP: &str = "c2s:read";

/// An answer: status and body, replayed or not.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

fn ok<T: Serialize>(body: &T) -> Answer {
    Answer {
        status: 200,
        body: serde_json::to_value(body).expect("answers serialise"),
        replayed: false,
    }
}

fn require_admin(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this endpoint is for admins".into()))
    }
}

pub async fn serve(
    req: &Request,
    deps: &Deps,
    pattern: &str,
    params: &[&str],
    path: &str,
) -> Result<Answer, ApiError> {
    let raw = http::body_bytes(req);
    if raw.len() > input::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: input::MAX_BODY_BYTES,
        });
    }
    let who = api::authenticate(req, &deps.api.jwt)?;
    tracing::Span::current().record("user_id", who.user_id());
    let method = req.method().as_str();
    match (method, pattern) {
        ("GET", LEADS_PATH) | ("GET", LEAD_PATH) => {
            if !(who.is_admin() || who.has_cap(READ_CAP)) {
                return Err(ApiError::Forbidden(format!(
                    "reading C2S leads needs the {READ_CAP} capability"
                )));
            }
        }
        _ => require_admin(&who)?,
    }
    let q = |name: &str| api::query(req, name);
    match (method, pattern) {
        ("GET", LEADS_PATH) => {
            let query = LeadQuery::parse(
                q("status").as_deref(),
                q("cursor").as_deref(),
                q("limit").as_deref(),
            )?;
            let client = deps.pool.get().await?;
            Ok(ok(&read::leads(&client, &query).await?))
        }
        ("GET", LEAD_PATH) => {
            let id = params.first().copied().unwrap_or_default();
            let mut client = deps.pool.get().await?;
            let tx = client
                .build_transaction()
                .isolation_level(deadpool_postgres::tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| ApiError::from_db(e, "starting a read snapshot"))?;
            let detail = read::lead_detail(&tx, id)
                .await?
                .ok_or(ApiError::NotFound("lead"))?;
            Ok(ok(&detail))
        }
        ("GET", MANAGERS_PATH) => {
            let client = deps.pool.get().await?;
            Ok(ok(&managers::list(&client).await?))
        }
        ("GET", MANAGER_PATH) => {
            let id = manager_id(params)?;
            let client = deps.pool.get().await?;
            Ok(ok(&managers::get(&client, id).await?))
        }
        (_, MANAGERS_PATH | MANAGER_PATH) => write(req, deps, &who, method, params, path).await,
        _ => Err(ApiError::NotFound("route")),
    }
}

fn manager_id(params: &[&str]) -> Result<Uuid, ApiError> {
    params
        .first()
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or(ApiError::NotFound("manager"))
}

enum Write {
    Create(ManagerInput),
    Update(Uuid, ManagerInput),
    Delete(Uuid),
}

async fn write(
    req: &Request,
    deps: &Deps,
    who: &Principal,
    method: &str,
    params: &[&str],
    path: &str,
) -> Result<Answer, ApiError> {
    let raw = http::body_bytes(req);
    let (body, action) = if method == "DELETE" {
        (Value::Null, Write::Delete(manager_id(params)?))
    } else {
        let body = input::json_object(http::header(req, "content-type"), raw)?;
        let parsed = ManagerInput::parse(body.clone())?;
        let action = if method == "POST" {
            Write::Create(parsed)
        } else {
            Write::Update(manager_id(params)?, parsed)
        };
        (Value::Object(body), action)
    };
    let hash = idempotency::request_hash(method, path, &body);
    let key = http::header(req, "idempotency-key")
        .map(|raw| {
            IdempotencyKey::parse(raw).map_err(|r| ApiError::validation("Idempotency-Key", r))
        })
        .transpose()?;
    let out = run::execute(&deps.pool, None, who, key, &hash, move |tx, who| {
        Box::pin(async move {
            let json = |v: &managers::ManagerOut| serde_json::to_value(v).expect("serialises");
            Ok(match action {
                Write::Create(input) => {
                    Done::new(201, json(&managers::create(tx, who, input).await?))
                }
                Write::Update(id, input) => {
                    Done::new(200, json(&managers::update(tx, who, id, input).await?))
                }
                Write::Delete(id) => {
                    managers::delete(tx, who, id).await?;
                    Done::new(200, serde_json::json!({"deleted": id}))
                }
            })
        })
    })
    .await?;
    Ok(Answer {
        status: out.status,
        body: out.body,
        replayed: out.replayed,
    })
}
