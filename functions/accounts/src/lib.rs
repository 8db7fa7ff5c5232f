//! Team accounts over HTTP: sign-in (`/api/v1/auth/*`), the caller's own
//! account (`/api/v1/me`), and the admin's team screen (`/api/v1/users`).
//! Routes on method + raw path; flows in [`sign_in`] and [`admin`], SQL in
//! `crm_domain::accounts`. See docs/accounts.md.
//!
//! Nothing here logs or audits a password, a token or a link: logs carry
//! user and session ids only.

pub mod admin;
pub mod sign_in;

use crm_domain::{
    accounts::throttle::ThrottlePolicy,
    crm::{ApiError, input},
    mail::Mailer,
};
use crm_platform::{
    api::{self, ApiConfig},
    config::{AppEnv, CommonConfig, ConfigError, Env},
    db::{PgPool, build_pool},
    email::{SesConfig, SesMailer},
    http,
};
use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};
use serde_json::{Map, Value};
use std::{sync::Arc, time::Duration};
use tracing::Instrument;

/// The API Gateway routes this function serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/set-password"),
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/me/password"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/{id}"),
    ("POST", "/api/v1/users/{id}/sign-out-everywhere"),
    ("POST", "/api/v1/users/{id}/password-link"),
];

/// The refresh cookie's name and path (sent only to the auth routes).
pub const REFRESH_COOKIE: &str = "crm_refresh";
pub const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
/// Default session lifetime: a week from sign-in (refreshes do not extend it).
pub const DEFAULT_SESSION_HOURS: i64 = 7 * 24;

/// This function's settings, read once per cold start.
pub struct AccountsConfig {
    /// Signs the access tokens sign-in issues (`JWT_SECRET`).
    pub signing_secret: crm_domain::Secret,
    /// Lifetime of an access token: the verifier's maximum (`JWT_MAX_LIFETIME_SECONDS`, ≤ 900).
    pub access_ttl_seconds: i64,
    /// `SESSION_LIFETIME_HOURS` (1..=2160, default 168).
    pub session_seconds: i64,
    /// `PUBLIC_BASE_URL`: where people open the console (set-password links).
    pub public_base_url: String,
    /// `Secure` on the cookie: always, except for plain http on localhost / 127.0.0.1.
    pub secure_cookie: bool,
    pub throttle: ThrottlePolicy,
}

impl std::fmt::Debug for AccountsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountsConfig")
            .field("access_ttl_seconds", &self.access_ttl_seconds)
            .field("session_seconds", &self.session_seconds)
            .field("public_base_url", &self.public_base_url)
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

impl AccountsConfig {
    pub fn from_env(
        common: &CommonConfig,
        env: &Env,
        api: &ApiConfig,
    ) -> Result<Self, ConfigError> {
        let hours: i64 = env.parse("SESSION_LIFETIME_HOURS", DEFAULT_SESSION_HOURS)?;
        if !(1..=2160).contains(&hours) {
            return Err(ConfigError {
                name: "SESSION_LIFETIME_HOURS".into(),
                reason: "must be between 1 and 2160 (90 days)".into(),
            });
        }
        let base = match env.optional("PUBLIC_BASE_URL") {
            Some(b) => b.trim().trim_end_matches('/').to_string(),
            None if common.app_env == AppEnv::Production => {
                return Err(ConfigError {
                    name: "PUBLIC_BASE_URL".into(),
                    reason: "is required (set-password links point there)".into(),
                });
            }
            None => "http://localhost:3000".to_string(),
        };
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConfigError {
                name: "PUBLIC_BASE_URL".into(),
                reason: "must start with https:// (or http:// on localhost)".into(),
            });
        }
        Ok(Self {
            signing_secret: env.secret("JWT_SECRET")?,
            access_ttl_seconds: api.jwt.max_lifetime(),
            session_seconds: hours * 3600,
            secure_cookie: !is_plain_http_localhost(&base),
            public_base_url: base,
            throttle: ThrottlePolicy::default(),
        })
    }
}

/// `http://localhost[:port]` or `http://127.0.0.1[:port]` (nothing else may drop `Secure`).
pub fn is_plain_http_localhost(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    matches!(host, "localhost" | "127.0.0.1")
}

/// Built once per cold start.
pub struct Deps {
    pub pool: PgPool,
    pub api: ApiConfig,
    pub config: AccountsConfig,
    /// Sends invitation and reset e-mails; `None` when SES is not configured
    /// (the admin copies the link from the answer).
    pub mailer: Option<Arc<dyn Mailer>>,
}

impl Deps {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Self::new(&common, env)
    }

    /// `SES_FROM_ADDRESS` (and `SES_CONFIGURATION_SET`) turn on invitation e-mails.
    pub fn new(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        let api = ApiConfig::from_env(common, env)?;
        let config = AccountsConfig::from_env(common, env, &api)?;
        let mailer = env.optional("SES_FROM_ADDRESS").map(|from| {
            Arc::new(SesMailer::new(SesConfig {
                from: from.trim().to_string(),
                configuration_set: env.optional("SES_CONFIGURATION_SET").map(str::to_owned),
                timeout: Duration::from_secs(10),
            })) as Arc<dyn Mailer>
        });
        Ok(Self {
            pool: build_pool(&common.database)?,
            api,
            config,
            mailer,
        })
    }
}

/// A successful answer: status, JSON body (none for 204), extra headers.
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        match self.body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::Text(body.to_string())),
            None => builder.body(Body::Empty),
        }
        .expect("valid response parts")
    }
}

pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let span = tracing::info_span!(
        "accounts",
        request_id = %http::request_id(&req),
        user_id = tracing::field::Empty,
    );
    async move {
        let path = api::raw_path_from(&req, "/api/");
        let (pattern, params) = match api::route(ROUTES, req.method().as_str(), &path) {
            Ok(found) => found,
            Err(miss) => return miss.response(),
        };
        match serve(&req, deps, pattern, &params).await {
            Ok(answer) => {
                tracing::info!(
                    route = pattern,
                    status = answer.status,
                    "accounts request done"
                );
                answer.into_response()
            }
            Err(err) => {
                api::log_refusal(pattern, &err);
                let mut resp = api::error(&err);
                if pattern.starts_with("/api/v1/auth/") {
                    no_store(&mut resp);
                }
                resp
            }
        }
    }
    .instrument(span)
    .await
}

fn no_store(resp: &mut Response<Body>) {
    resp.headers_mut().insert(
        "cache-control",
        lambda_http::http::HeaderValue::from_static("no-store"),
    );
}

async fn serve(
    req: &Request,
    deps: &Deps,
    pattern: &str,
    params: &[&str],
) -> Result<Answer, ApiError> {
    let raw = http::body_bytes(req);
    if raw.len() > input::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: input::MAX_BODY_BYTES,
        });
    }
    let id = params.first().copied();
    match pattern {
        "/api/v1/auth/login" => {
            sign_in::login(deps, &body(req, false)?, &source_address(req)).await
        }
        "/api/v1/auth/refresh" => sign_in::refresh(deps, req, &body(req, true)?).await,
        "/api/v1/auth/logout" => sign_in::logout(deps, req, &body(req, true)?).await,
        "/api/v1/auth/set-password" => sign_in::set_password(deps, &body(req, false)?).await,
        _ => {
            let who = api::authenticate(req, &deps.api, &deps.pool).await?;
            tracing::Span::current().record("user_id", who.user_id());
            match pattern {
                "/api/v1/me" => sign_in::me(deps, &who).await,
                "/api/v1/me/password" => {
                    sign_in::change_password(deps, &who, &body(req, false)?).await
                }
                "/api/v1/users" if req.method() == "GET" => admin::list(deps, &who).await,
                "/api/v1/users" => admin::create(deps, &who, &body(req, false)?).await,
                "/api/v1/users/{id}" => admin::update(deps, &who, id, &body(req, false)?).await,
                "/api/v1/users/{id}/sign-out-everywhere" => {
                    admin::sign_out_everywhere(deps, &who, id).await
                }
                _ => admin::password_link(deps, &who, id).await,
            }
        }
    }
}

/// The JSON object body; with `optional`, an empty body is an empty object.
fn body(req: &Request, optional: bool) -> Result<Map<String, Value>, ApiError> {
    let raw = http::body_bytes(req);
    if optional && raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    input::json_object(http::header(req, "content-type"), raw)
}

/// The caller's address as API Gateway saw it (the TCP peer, not a header a
/// client could set); `local` when there is no gateway (the local runner, tests without one).
pub fn source_address(req: &Request) -> String {
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    ip.filter(|ip| !ip.trim().is_empty())
        .unwrap_or_else(|| "local".to_string())
}

/// A string field of `body`, trimmed; `None` when absent or null.
pub(crate) fn text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::validation(field, "must be a string")),
    }
}

pub(crate) fn required_text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, ApiError> {
    text(body, field)?.ok_or_else(|| ApiError::validation(field, "is required"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_on_localhost_drops_secure() {
        assert!(is_plain_http_localhost("http://localhost:3000"));
        assert!(is_plain_http_localhost("http://127.0.0.1:3300"));
        assert!(is_plain_http_localhost("http://localhost"));
        assert!(!is_plain_http_localhost("https://localhost:3000"));
        assert!(!is_plain_http_localhost("http://localhost.example.com"));
        assert!(!is_plain_http_localhost("http://crm.example.com"));
        assert!(!is_plain_http_localhost("http://10.0.0.1"));
    }
}
