//! POST /api/twilio/webhook. The handler rebuilds the URL Twilio signed
//! (`PUBLIC_BASE_URL` + path + query: behind API Gateway the host Twilio
//! called is not the one the function sees), hands the raw form to
//! `crm_domain::twilio`, and answers empty TwiML once authenticated.

use crm_domain::{
    phone::PhoneRegion,
    signature::Verifier,
    twilio::{self, EMPTY_TWIML},
};
use crm_platform::{
    config::{CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    http,
};
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::Instrument;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/api/twilio/webhook")];

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    /// `TWILIO_AUTH_TOKEN` (or the development bypass).
    pub verifier: Verifier,
    /// `PUBLIC_BASE_URL`: scheme and host (and port) Twilio calls, no trailing slash.
    pub public_base_url: String,
    /// `DEFAULT_PHONE_REGION`: senders without `+country code` are read in it.
    pub phone_region: PhoneRegion,
}

impl Deps {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Self::new(&common, env)
    }

    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        let verifier = common.verifier(env, "TWILIO_AUTH_TOKEN")?;
        // Without signatures the URL is never used; a placeholder keeps local setups short.
        let base = match (&verifier, env.optional("PUBLIC_BASE_URL")) {
            (_, Some(url)) => url,
            (Verifier::Bypass, None) => "http://localhost",
            (Verifier::Secret(_), None) => env.required("PUBLIC_BASE_URL")?,
        };
        let region = env
            .optional("DEFAULT_PHONE_REGION")
            .unwrap_or(PhoneRegion::DEFAULT);
        Ok(Self {
            pool: build_pool(&common.database)?,
            verifier,
            public_base_url: parse_base_url(base)?,
            phone_region: PhoneRegion::parse(region).map_err(|reason| ConfigError {
                name: "DEFAULT_PHONE_REGION".into(),
                reason: reason.into(),
            })?,
        })
    }

    /// The URL Twilio signed: the public base, the path as requested, and the raw query string.
    pub fn signed_url(&self, req: &Request) -> String {
        let path = match req.raw_http_path() {
            "" => req.uri().path(),
            p => p,
        };
        match req.uri().query().filter(|q| !q.is_empty()) {
            Some(q) => format!("{}{path}?{q}", self.public_base_url),
            None => format!("{}{path}", self.public_base_url),
        }
    }
}

fn parse_base_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    let bad = |reason: &str| ConfigError {
        name: "PUBLIC_BASE_URL".into(),
        reason: reason.into(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with https:// or http://"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(bad("must be a scheme and host (and path), without query"));
    }
    Ok(url.to_string())
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!("twilio_webhook", request_id = %http::request_id(&req));
    async move {
        let url = deps.signed_url(&req);
        let inbound = twilio::Inbound {
            content_type: http::header(&req, "content-type"),
            signature: http::header(&req, "x-twilio-signature"),
            url: &url,
            body: http::body_bytes(&req),
        };
        // Size and signature first, without a connection: a forged call costs
        // no pool slot and no row, and gets 401 even while the database is down.
        if let Err(err) = twilio::authenticate(&deps.verifier, &inbound) {
            return http::error(&err);
        }
        let mut client = match deps.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no database connection");
                return http::error(&crm_domain::WebhookError::from(e));
            }
        };
        match twilio::receive(&mut client, &deps.verifier, deps.phone_region, inbound).await {
            Ok(answer) => {
                // Ids only: phone numbers and message text stay out of the logs.
                tracing::info!(
                    status = answer["status"].as_str(),
                    kind = answer["kind"].as_str(),
                    message_id = answer["message_id"].as_str(),
                    contact_id = answer["contact_id"].as_str(),
                    applied = answer["applied"].as_bool(),
                    "twilio event accepted"
                );
                twiml()
            }
            Err(err) => {
                tracing::info!(
                    status = err.status(),
                    code = err.code(),
                    "twilio event refused"
                );
                http::error(&err)
            }
        }
    }
    .instrument(span)
    .await
}

/// 200 with empty TwiML: Twilio sends no reply and treats the delivery as done.
pub fn twiml() -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/xml")
        .body(Body::Text(EMPTY_TWIML.to_string()))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_base_url_is_a_scheme_and_host() {
        assert_eq!(
            parse_base_url("https://hub.example.com/").unwrap(),
            "https://hub.example.com"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        for bad in ["hub.example.com", "ftp://x", "https://", "https://x/?a=1"] {
            assert_eq!(
                parse_base_url(bad).unwrap_err().name,
                "PUBLIC_BASE_URL",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_token_and_public_url_are_required_unless_bypassed() {
        let base = [
            (
                "DATABASE_URL",
                "postgres://u@127.0.0.1:1/db?sslmode=disable",
            ),
            ("APP_ENV", "test"),
        ];
        let e = Deps::from_env(&Env::from_pairs(base)).err().unwrap();
        assert_eq!(e.name, "TWILIO_AUTH_TOKEN");
        let mut with_token = base.to_vec();
        with_token.push(("TWILIO_AUTH_TOKEN", "t"));
        let e = Deps::from_env(&Env::from_pairs(with_token.clone()))
            .err()
            .unwrap();
        assert_eq!(e.name, "PUBLIC_BASE_URL");
        with_token.push(("DEFAULT_PHONE_REGION", "XX"));
        with_token.push(("PUBLIC_BASE_URL", "https://hub.example.com"));
        let e = Deps::from_env(&Env::from_pairs(with_token)).err().unwrap();
        assert_eq!(e.name, "DEFAULT_PHONE_REGION");
    }
}
