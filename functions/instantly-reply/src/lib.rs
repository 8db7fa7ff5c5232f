//! POST /crm/webhooks/instantly/reply. The handler reads what the domain
//! needs from the API Gateway request and maps the outcome to a response;
//! the flow itself lives in `crm_domain::instantly`.

use crm_domain::{instantly, signature::Verifier};
use crm_platform::{
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/crm/webhooks/instantly/reply")];

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub verifier: Verifier,
}

impl Deps {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Self::new(&common, env)
    }

    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            pool: build_pool(&common.database)?,
            verifier: common.verifier(env, "HMAC_SHARED_SECRET_INSTANTLY")?,
        })
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!("instantly_reply", request_id = %http::request_id(&req));
    async move {
        let inbound = instantly::Inbound {
            content_type: http::header(&req, "content-type"),
            idempotency_key: http::header(&req, "idempotency-key"),
            x_signature: http::header(&req, "x-signature"),
            x_webhook_secret: http::header(&req, "x-webhook-secret"),
            body: http::body_bytes(&req),
        };
        // Size and signature first, without a connection: a forged call costs
        // no pool slot and no row, and gets 401 even while the database is down.
        if let Err(err) = instantly::authenticate(&deps.verifier, &inbound) {
            return http::error(&err);
        }
        let client = match deps.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no database connection");
                return http::error(&crm_domain::WebhookError::from(e));
            }
        };
        match instantly::receive(&client, &deps.verifier, inbound).await {
            Ok(answer) => {
                tracing::info!(
                    contact_id = answer["contact_id"].as_str(),
                    deal_id = answer["deal_id"].as_str(),
                    status = answer["status"].as_str(),
                    "instantly event accepted"
                );
                http::json(200, &answer)
            }
            Err(err) => {
                tracing::info!(
                    status = err.status(),
                    code = err.code(),
                    "instantly event refused"
                );
                http::error(&err)
            }
        }
    }
    .instrument(span)
    .await
}
