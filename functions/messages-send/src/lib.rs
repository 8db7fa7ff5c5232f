//! POST /api/messages and /api/messages/template: the authenticated
//! Messaging API. Routes on method + raw path, authenticates (same JWT as the
//! CRM API), parses the body and hands it to [`run`]; the rules (visibility,
//! phone, channel, opt-out, WhatsApp 24-hour window, template rendering) live
//! in `crm_domain::messaging`. The message is stored `queued` with its
//! `send_message` job in one transaction and published right after commit;
//! the send worker hands it to Twilio. Answers 202 with the message.
//!
//! Checks run in this order: route, size (413), bearer token (401), content
//! type (415), JSON (400), fields (422), then the idempotency key and the work.

pub mod run;
pub mod upload;

use crm_domain::{
    IdempotencyKey,
    crm::{ApiError, idempotency, input},
    messaging::{TextInput, template::TemplateInput},
    outbox::Publisher,
};
use crm_platform::{
    api::{self, ApiConfig},
    blob::Presigner,
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/messages"),
    ("POST", "/api/messages/template"),
    ("POST", "/api/media/upload-url"),
];

/// The code of the 501 upload-url answers without a bucket.
const NOT_LOCAL: &str = "not_available_locally";

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub api: ApiConfig,
    /// Publishes the send job right after commit (SQS in Lambda). `None`
    /// leaves it to the scheduled relay (and to the local runner's).
    pub publisher: Option<Arc<dyn Publisher>>,
    /// Presigns upload URLs (S3, `MEDIA_BUCKET`; the local folder's signer
    /// under the local runner); `None`: 501.
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
            publisher: None,
            media: None,
        })
    }
}

/// A send, validated and ready to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Text(TextInput),
    Template(TemplateInput),
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "messages_send",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = api::raw_path(&req);
        let (pattern, _params) = match api::route(ROUTES, req.method().as_str(), &path) {
            Ok(found) => found,
            Err(miss) => return miss.response(),
        };
        match serve(&req, deps, pattern, &path).await {
            Ok(out) => {
                tracing::info!(
                    route = pattern,
                    status = out.status,
                    replayed = out.replayed,
                    message_id = out.body["id"].as_str(),
                    contact_id = out.body["contact_id"].as_str(),
                    "message queued"
                );
                api::answer(out.status, &out.body, out.replayed)
            }
            Err(err) => {
                api::log_refusal(pattern, &err);
                match err {
                    // No bucket: 501, not the 409 `Refused` otherwise means.
                    ApiError::Refused {
                        code: NOT_LOCAL, ..
                    } => http::json(501, &err.body()),
                    _ => api::error(&err),
                }
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
    let body = input::json_object(http::header(req, "content-type"), raw)?;
    if pattern == "/api/media/upload-url" {
        let input = upload::UploadInput::parse(body)?;
        let Some(presigner) = &deps.media else {
            return Err(ApiError::Refused {
                code: NOT_LOCAL,
                message: "Media uploads need an S3 bucket (MEDIA_BUCKET)".into(),
            });
        };
        return Ok(run::Outcome {
            status: 200,
            body: upload::presign(presigner.as_ref(), &input).await?,
            replayed: false,
        });
    }
    let hash = idempotency::request_hash("POST", path, &Value::Object(body.clone()));
    let action = match pattern {
        "/api/messages" => Action::Text(TextInput::parse(body)?),
        _ => Action::Template(TemplateInput::parse(body)?),
    };
    let key = http::header(req, "idempotency-key")
        .map(|raw| {
            IdempotencyKey::parse(raw).map_err(|r| ApiError::validation("Idempotency-Key", r))
        })
        .transpose()?;
    run::execute(deps, &who, key, &hash, action).await
}
