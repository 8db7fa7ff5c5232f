//! POST /crm/webhooks/calcom/booking. The handler reads what the domain
//! needs from the API Gateway request and maps the outcome to a response;
//! the flow itself lives in `crm_domain::calcom`.

use crm_domain::{calcom, signature::Verifier};
use crm_platform::{
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/crm/webhooks/calcom/booking")];

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
            verifier: common.verifier(env, "HMAC_SHARED_SECRET_CALCOM")?,
        })
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!("calcom_booking", request_id = %http::request_id(&req));
    async move {
        let inbound = calcom::Inbound {
            content_type: http::header(&req, "content-type"),
            idempotency_key: http::header(&req, "idempotency-key"),
            signature: http::header(&req, "x-cal-signature-256"),
            body: http::body_bytes(&req),
        };
        // Size and signature first, without a connection: a forged call costs
        // no pool slot and no row, and gets 401 even while the database is down.
        if let Err(err) = calcom::authenticate(&deps.verifier, &inbound) {
            return http::error(&err);
        }
        let mut client = match deps.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no database connection");
                return http::error(&crm_domain::WebhookError::from(e));
            }
        };
        match calcom::receive(&mut client, &deps.verifier, inbound).await {
            Ok(answer) => {
                // Ids only: booking uids, names and e-mails stay out of the logs.
                tracing::info!(
                    trigger = answer["trigger"].as_str(),
                    deal_id = answer["deal_id"].as_str(),
                    meeting_activity_id = answer["meeting_activity_id"].as_str(),
                    status = answer["status"].as_str(),
                    "calcom event accepted"
                );
                http::json(200, &answer)
            }
            Err(err) => {
                tracing::info!(
                    status = err.status(),
                    code = err.code(),
                    "calcom event refused"
                );
                http::error(&err)
            }
        }
    }
    .instrument(span)
    .await
}
