//! HTTP glue of the authenticated CRM API functions (crm-actions, crm-read):
//! their shared configuration, routing on method + raw path (API Gateway
//! path parameters may arrive empty through local tools), bearer
//! authentication and the one mapping of `ApiError` to a response.

use crate::{
    config::{CommonConfig, ConfigError, Env},
    http,
};
use crm_domain::{
    auth::{JwtVerifier, Principal},
    crm::ApiError,
    phone::PhoneRegion,
};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

/// Settings both API functions read once per cold start.
#[derive(Debug)]
pub struct ApiConfig {
    pub jwt: JwtVerifier,
    pub phone_region: PhoneRegion,
}

impl ApiConfig {
    /// `JWT_SECRET` (required; at least 32 bytes unless `APP_ENV=test`) and
    /// `DEFAULT_PHONE_REGION` (default `TR`).
    pub fn from_env(common: &CommonConfig, env: &Env) -> Result<Self, ConfigError> {
        // At least 32 bytes everywhere but APP_ENV=test (config::AppEnv::signing_key).
        let secret = common.app_env.signing_key(env, "JWT_SECRET")?;
        let region = env
            .optional("DEFAULT_PHONE_REGION")
            .unwrap_or(PhoneRegion::DEFAULT);
        let phone_region = PhoneRegion::parse(region).map_err(|reason| ConfigError {
            name: "DEFAULT_PHONE_REGION".into(),
            reason: reason.into(),
        })?;
        Ok(Self {
            jwt: JwtVerifier::new(&secret),
            phone_region,
        })
    }
}

/// The path the client asked for: `rawPath`, without a named stage prefix
/// or a local tool's prefix such as `/lambda-url/<function>`.
pub fn raw_path(req: &Request) -> String {
    raw_path_from(req, "/crm/")
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

pub fn authenticate(req: &Request, jwt: &JwtVerifier) -> Result<Principal, ApiError> {
    jwt.verify_bearer(http::header(req, "authorization"))
        .map_err(ApiError::Unauthorized)
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
    if err.status() == 401 {
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
        assert_eq!(
            ApiConfig::from_env(&common, &ok).unwrap().phone_region,
            PhoneRegion::default()
        );
    }
}
