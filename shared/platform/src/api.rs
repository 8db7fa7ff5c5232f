//! HTTP glue of the authenticated CRM API functions (crm-actions, crm-read,
//! accounts, …): their shared configuration, routing on method + raw path
//! (API Gateway path parameters may arrive empty through local tools),
//! bearer authentication and the one mapping of `ApiError` to a response.
//!
//! Authentication ([`authenticate`]) accepts our own HS256 access tokens
//! (`crm_domain::auth`) and, when `JWT_JWKS_URL`, `JWT_ISSUER` and
//! `JWT_AUDIENCE` are set, RS256/ES256 tokens of that external identity
//! provider, mapped to a `users` row by e-mail (created on first use).
//! The token's header `alg` decides which verifier looks at it, and each
//! pins its own algorithms, so neither can be tricked into the other's key.

use crate::{
    config::{AppEnv, CommonConfig, ConfigError, Env},
    db::PgPool,
    http,
    jwks::ExternalIdp,
};
use crm_domain::{
    accounts::users,
    auth::{self, AuthError, DEFAULT_MAX_LIFETIME_SECONDS, ExternalPolicy, JwtVerifier, Principal},
    crm::ApiError,
    phone::PhoneRegion,
};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use std::time::Duration;

/// Shortest lifetime `JWT_MAX_LIFETIME_SECONDS` may set.
const MIN_LIFETIME_SECONDS: i64 = 60;

/// Settings every API function reads once per cold start.
#[derive(Debug)]
pub struct ApiConfig {
    /// Our own HS256 tokens.
    pub jwt: JwtVerifier,
    /// An external identity provider, when configured.
    pub external: Option<ExternalIdp>,
    pub phone_region: PhoneRegion,
}

impl ApiConfig {
    /// Our own tokens only (tests, and what `from_env` builds without an external provider).
    pub fn local(jwt: JwtVerifier, phone_region: PhoneRegion) -> Self {
        Self {
            jwt,
            external: None,
            phone_region,
        }
    }

    /// `JWT_SECRET` (required; at least 32 bytes unless `APP_ENV=test`),
    /// `JWT_MAX_LIFETIME_SECONDS` (60..=900, default 900: the longest
    /// `exp − iat` our tokens may have, and what sign-in issues),
    /// `DEFAULT_PHONE_REGION` (default `TR`), and the external provider:
    /// `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE` (all three or none),
    /// `JWT_GROUPS_CLAIM` (default `cognito:groups`), `JWT_ADMIN_GROUP`
    /// (unset: every new user is a member), `JWT_EMAIL_CLAIM` (default
    /// `email`), `JWT_EXTERNAL_MAX_LIFETIME_SECONDS` (default 3600).
    pub fn from_env(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        // At least 32 bytes everywhere but APP_ENV=test (config::AppEnv::signing_key).
        let secret = common.app_env.signing_key(env, "JWT_SECRET")?;
        let max_lifetime: i64 =
            env.parse("JWT_MAX_LIFETIME_SECONDS", DEFAULT_MAX_LIFETIME_SECONDS)?;
        if !(MIN_LIFETIME_SECONDS..=DEFAULT_MAX_LIFETIME_SECONDS).contains(&max_lifetime) {
            return Err(ConfigError {
                name: "JWT_MAX_LIFETIME_SECONDS".into(),
                reason: format!(
                    "must be between {MIN_LIFETIME_SECONDS} and {DEFAULT_MAX_LIFETIME_SECONDS}"
                ),
            });
        }
        let region = env
            .optional("DEFAULT_PHONE_REGION")
            .unwrap_or(PhoneRegion::DEFAULT);
        let phone_region = PhoneRegion::parse(region).map_err(|reason| ConfigError {
            name: "DEFAULT_PHONE_REGION".into(),
            reason: reason.into(),
        })?;
        Ok(Self {
            jwt: JwtVerifier::with_max_lifetime(&secret, max_lifetime),
            external: external_from_env(common, env)?,
            phone_region,
        })
    }
}

fn external_from_env(common: &CommonConfig, env: &Env) -> Result<Option<ExternalIdp>, ConfigError> {
    let (url, issuer, audience) = match (
        env.optional("JWT_JWKS_URL"),
        env.optional("JWT_ISSUER"),
        env.optional("JWT_AUDIENCE"),
    ) {
        (None, None, None) => return Ok(None),
        (Some(u), Some(i), Some(a)) => (u.trim(), i.trim(), a.trim()),
        (u, i, _) => {
            let missing = if u.is_none() {
                "JWT_JWKS_URL"
            } else if i.is_none() {
                "JWT_ISSUER"
            } else {
                "JWT_AUDIENCE"
            };
            return Err(ConfigError {
                name: missing.into(),
                reason: "is required when any of JWT_JWKS_URL, JWT_ISSUER, JWT_AUDIENCE is set"
                    .into(),
            });
        }
    };
    let secure = url.starts_with("https://");
    let loopback = url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
    if !(secure || (loopback && common.app_env != AppEnv::Production)) {
        return Err(ConfigError {
            name: "JWT_JWKS_URL".into(),
            reason: "must be an https:// URL".into(),
        });
    }
    let max_lifetime = env.parse(
        "JWT_EXTERNAL_MAX_LIFETIME_SECONDS",
        ExternalPolicy::DEFAULT_MAX_LIFETIME_SECONDS,
    )?;
    if max_lifetime < MIN_LIFETIME_SECONDS {
        return Err(ConfigError {
            name: "JWT_EXTERNAL_MAX_LIFETIME_SECONDS".into(),
            reason: format!("must be at least {MIN_LIFETIME_SECONDS}"),
        });
    }
    let policy = ExternalPolicy {
        issuer: issuer.to_string(),
        audience: audience.to_string(),
        groups_claim: env
            .optional("JWT_GROUPS_CLAIM")
            .unwrap_or(ExternalPolicy::DEFAULT_GROUPS_CLAIM)
            .trim()
            .to_string(),
        admin_group: env
            .optional("JWT_ADMIN_GROUP")
            .map(|g| g.trim().to_string()),
        email_claim: env
            .optional("JWT_EMAIL_CLAIM")
            .unwrap_or(ExternalPolicy::DEFAULT_EMAIL_CLAIM)
            .trim()
            .to_string(),
        max_lifetime,
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ConfigError {
            name: "JWT_JWKS_URL".into(),
            reason: format!("HTTP client: {e}"),
        })?;
    Ok(Some(ExternalIdp::new(policy, url.to_string(), http)))
}

/// The path the client asked for: `rawPath`, without a named stage prefix
/// or a local tool's prefix such as `/lambda-url/<function>`.
pub fn raw_path(req: &Request) -> String {
    raw_path_from(req, "/crm/")
}

/// [`raw_path`] for a function serving both `/crm/…` routes and `/api/v1/…`
/// ones (crm-actions, crm-read: the lead-routing routes).
pub fn raw_path_crm_or_api_v1(req: &Request) -> String {
    let path = raw_path(req);
    if path.starts_with("/crm/") {
        path
    } else {
        raw_path_from(req, "/api/v1/")
    }
}

/// [`raw_path`] for routes that start at `marker` (e.g. `/api/`): the path
/// from its first occurrence on, or the whole path without it.
pub fn raw_path_from(req: &Request, marker: &str) -> String {
    let raw = match req.raw_http_path() {
        "" => req.uri().path(),
        p => p,
    };
    match raw.find(marker) {
        Some(start) => raw[start..].to_string(),
        None => raw.to_string(),
    }
}

/// Matches `path` against an API Gateway pattern (`{name}` = one non-empty
/// segment) and returns the parameter values in order.
pub fn match_route<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut want = pattern.trim_end_matches('/').split('/');
    let mut got = path.trim_end_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.push(g);
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Why no route matched: the path is unknown (404), or known with another method (405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    MethodNotAllowed,
}

impl RouteMiss {
    pub fn response(self) -> Response<Body> {
        let (status, code, msg) = match self {
            RouteMiss::NotFound => (404, "not_found", "Not found"),
            RouteMiss::MethodNotAllowed => (405, "method_not_allowed", "Method not allowed"),
        };
        http::json(status, &serde_json::json!({"error": msg, "code": code}))
    }
}

/// Which of `routes` the request is for, with its path parameters.
pub fn route<'p>(
    routes: &[(&'static str, &'static str)],
    method: &str,
    path: &'p str,
) -> Result<(&'static str, Vec<&'p str>), RouteMiss> {
    let mut path_known = false;
    for (m, pattern) in routes {
        if let Some(params) = match_route(pattern, path) {
            if m.eq_ignore_ascii_case(method) {
                return Ok((pattern, params));
            }
            path_known = true;
        }
    }
    Err(if path_known {
        RouteMiss::MethodNotAllowed
    } else {
        RouteMiss::NotFound
    })
}

/// Who is calling: the request's bearer token, verified as ours (HS256)
/// or, when an external provider is configured and the token announces
/// RS256/ES256, as that provider's, mapped to its `users` row (created on
/// first use; a deactivated user is refused).
pub async fn authenticate(
    req: &Request,
    api: &ApiConfig,
    pool: &PgPool,
) -> Result<Principal, ApiError> {
    authenticate_header(http::header(req, "authorization"), api, pool).await
}

/// [`authenticate`] for an `Authorization` header value.
pub async fn authenticate_header(
    authorization: Option<&str>,
    api: &ApiConfig,
    pool: &PgPool,
) -> Result<Principal, ApiError> {
    let token = auth::bearer_token(authorization).map_err(ApiError::Unauthorized)?;
    let external = match &api.external {
        Some(idp) if !auth::is_local_token(token) => idp,
        _ => return api.jwt.verify(token).map_err(ApiError::Unauthorized),
    };
    let identity = external
        .verify(token)
        .await
        .map_err(ApiError::Unauthorized)?;
    let client = pool.get().await?;
    users::principal_for_external(&client, &identity)
        .await?
        .ok_or(ApiError::Unauthorized(AuthError::Invalid))
}

/// A query-string value (the first, when repeated), U+0000 removed as in
/// every text field (docs/security.md).
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(|v| {
            let mut v = v.to_owned();
            crm_domain::fields::strip_nul_str(&mut v);
            v
        })
}

/// Logs a refused or failed request once, at the edge (the span names the
/// function): server faults with their scrubbed cause, caller faults as
/// status and code only.
pub fn log_refusal(route: &str, err: &ApiError) {
    if err.is_server_fault() {
        tracing::error!(route, error = %err.diagnostic(), "request failed");
    } else {
        tracing::info!(
            route,
            status = err.status(),
            code = err.code(),
            "request refused"
        );
    }
}

/// The one mapping of an API error to a response (401s carry
/// `WWW-Authenticate`, 503s `Retry-After`).
pub fn error(err: &ApiError) -> Response<Body> {
    let mut resp = http::with_retry_after(http::json(err.status(), &err.body()));
    if let ApiError::TooManyAttempts {
        retry_after_seconds,
    } = err
        && let Ok(v) = lambda_http::http::HeaderValue::from_str(&retry_after_seconds.to_string())
    {
        resp.headers_mut().insert("retry-after", v);
    }
    if matches!(err, ApiError::Unauthorized(_)) {
        let value = if err.code() == "token_missing" {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        };
        resp.headers_mut().insert(
            "www-authenticate",
            lambda_http::http::HeaderValue::from_static(value),
        );
    }
    resp
}

/// A JSON answer; `replayed` marks one served from an idempotency key.
pub fn answer(status: u16, body: &Value, replayed: bool) -> Response<Body> {
    let mut resp = http::json(status, body);
    if replayed {
        resp.headers_mut().insert(
            "idempotent-replayed",
            lambda_http::http::HeaderValue::from_static("true"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_per_parameter() {
        let p = "/crm/actions/deals/{id}/stage";
        assert_eq!(
            match_route(p, "/crm/actions/deals/abc/stage"),
            Some(vec!["abc"])
        );
        assert_eq!(match_route(p, "/crm/actions/deals//stage"), None);
        assert_eq!(match_route(p, "/crm/actions/deals/abc"), None);
        assert_eq!(
            match_route("/crm/pipelines", "/crm/pipelines/"),
            Some(vec![])
        );
    }

    #[test]
    fn routing_tells_unknown_paths_from_wrong_methods() {
        let routes = &[("GET", "/crm/contacts/{id}")];
        assert!(route(routes, "GET", "/crm/contacts/1").is_ok());
        assert_eq!(
            route(routes, "DELETE", "/crm/contacts/1").unwrap_err(),
            RouteMiss::MethodNotAllowed
        );
        assert_eq!(
            route(routes, "GET", "/crm/nope")
                .unwrap_err()
                .response()
                .status(),
            404
        );
    }

    #[test]
    fn production_refuses_a_short_jwt_secret_and_a_bad_region() {
        let base = [("DATABASE_URL", "postgres://u@h/db")];
        let common = CommonConfig::from_env(&Env::from_pairs(base)).unwrap();
        let short = Env::from_pairs([("JWT_SECRET", "short")]);
        assert_eq!(
            ApiConfig::from_env(&common, &short).unwrap_err().name,
            "JWT_SECRET"
        );
        assert_eq!(
            ApiConfig::from_env(&common, &Env::default())
                .unwrap_err()
                .name,
            "JWT_SECRET"
        );
        let long = "k".repeat(32);
        let bad_region = Env::from_pairs([
            ("JWT_SECRET", long.as_str()),
            ("DEFAULT_PHONE_REGION", "ZZ"),
        ]);
        assert_eq!(
            ApiConfig::from_env(&common, &bad_region).unwrap_err().name,
            "DEFAULT_PHONE_REGION"
        );
        let staging = CommonConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://u@h/db"),
            ("APP_ENV", "staging"),
        ]))
        .unwrap();
        assert_eq!(
            ApiConfig::from_env(&staging, &short).unwrap_err().name,
            "JWT_SECRET",
            "staging refuses a short key too"
        );
        let ok = Env::from_pairs([("JWT_SECRET", long.as_str())]);
        let config = ApiConfig::from_env(&common, &ok).unwrap();
        assert_eq!(config.phone_region, PhoneRegion::default());
        assert_eq!(config.jwt.max_lifetime(), DEFAULT_MAX_LIFETIME_SECONDS);
        assert!(config.external.is_none());
    }

    #[test]
    fn lifetime_and_external_provider_settings_are_checked() {
        let base = [("DATABASE_URL", "postgres://u@h/db")];
        let common = CommonConfig::from_env(&Env::from_pairs(base)).unwrap();
        let long = "k".repeat(32);
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![("JWT_SECRET", long.as_str())];
            pairs.extend_from_slice(extra);
            ApiConfig::from_env(&common, &Env::from_pairs(pairs))
        };
        for bad in ["3600", "59", "soon"] {
            assert_eq!(
                with(&[("JWT_MAX_LIFETIME_SECONDS", bad)]).unwrap_err().name,
                "JWT_MAX_LIFETIME_SECONDS"
            );
        }
        assert_eq!(
            with(&[("JWT_MAX_LIFETIME_SECONDS", "300")])
                .unwrap()
                .jwt
                .max_lifetime(),
            300
        );
        assert_eq!(
            with(&[("JWT_JWKS_URL", "https://idp.example.com/jwks.json")])
                .unwrap_err()
                .name,
            "JWT_ISSUER"
        );
        let plain = [
            ("JWT_JWKS_URL", "http://idp.example.com/jwks.json"),
            ("JWT_ISSUER", "https://idp.example.com"),
            ("JWT_AUDIENCE", "crm"),
        ];
        assert_eq!(with(&plain).unwrap_err().name, "JWT_JWKS_URL");
        let good = [
            ("JWT_JWKS_URL", "https://idp.example.com/jwks.json"),
            ("JWT_ISSUER", "https://idp.example.com"),
            ("JWT_AUDIENCE", "crm"),
            ("JWT_ADMIN_GROUP", "crm-admins"),
        ];
        let idp = with(&good).unwrap().external.unwrap();
        assert_eq!(idp.policy.groups_claim, "cognito:groups");
        assert_eq!(idp.policy.admin_group.as_deref(), Some("crm-admins"));
        assert_eq!(idp.policy.max_lifetime, 3600);
    }
}
