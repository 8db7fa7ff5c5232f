//! The route table: API Gateway paths → the functions' own `handle`, and the
//! translation between axum's request/response and `lambda_http`'s.

use crm_platform::config::{CommonConfig, ConfigError, Env};
use lambda_http::RequestExt;
use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc};

type Handler = Arc<
    dyn Fn(
            lambda_http::Request,
        )
            -> Pin<Box<dyn Future<Output = lambda_http::Response<lambda_http::Body>> + Send>>
        + Send
        + Sync,
>;

pub struct Route {
    pub method: &'static str,
    /// API Gateway route path; `{name}` matches one path segment.
    pub path: &'static str,
    handler: Handler,
}

impl Route {
    /// The path parameters when `path` matches this route's pattern.
    fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let mut params = HashMap::new();
        let mut want = self.path.trim_matches('/').split('/');
        let mut got = path.trim_matches('/').split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return Some(params),
                (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                    params.insert(w[1..w.len() - 1].to_string(), g.to_string());
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return None,
            }
        }
    }
}

/// Mounts every `(method, path)` of one function on its `handle`.
fn mount<D: Send + Sync + 'static, F>(
    routes: &mut Vec<Route>,
    paths: &[(&'static str, &'static str)],
    deps: D,
    handle: F,
) where
    F: Fn(
            lambda_http::Request,
            Arc<D>,
        )
            -> Pin<Box<dyn Future<Output = lambda_http::Response<lambda_http::Body>> + Send>>
        + Send
        + Sync
        + 'static,
{
    let deps = Arc::new(deps);
    let handle = Arc::new(handle);
    for (method, path) in paths {
        let (deps, handle) = (deps.clone(), handle.clone());
        routes.push(Route {
            method,
            path,
            handler: Arc::new(move |req| handle(req, deps.clone())),
        });
    }
}

pub struct Table(Vec<Route>);

impl Table {
    pub fn routes(&self) -> &[Route] {
        &self.0
    }
}

/// One entry per HTTP function; each builds its own `Deps` as its Lambda would.
pub fn build(common: &CommonConfig, env: &Env) -> Result<Arc<Table>, ConfigError> {
    let mut routes = Vec::new();
    mount(
        &mut routes,
        instantly_reply::ROUTES,
        instantly_reply::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { instantly_reply::handle(req, &deps).await }),
    );
    mount(
        &mut routes,
        calcom_booking::ROUTES,
        calcom_booking::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { calcom_booking::handle(req, &deps).await }),
    );
    mount(
        &mut routes,
        crm_actions::ROUTES,
        crm_actions::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { crm_actions::handle(req, &deps).await }),
    );
    mount(
        &mut routes,
        crm_read::ROUTES,
        crm_read::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { crm_read::handle(req, &deps).await }),
    );
    // Media links and upload URLs: the local folder's signer (crate::media).
    let local_media = crate::media::urls(env);
    let mut read = messages_read::Deps::new(common, env)?;
    read.media = Some(local_media.clone());
    mount(&mut routes, messages_read::ROUTES, read, |req, deps| {
        Box::pin(async move { messages_read::handle(req, &deps).await })
    });
    mount(
        &mut routes,
        twilio_webhook::ROUTES,
        twilio_webhook::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { twilio_webhook::handle(req, &deps).await }),
    );
    let mut send = messages_send::Deps::new(common, env)?;
    send.media = Some(local_media);
    mount(&mut routes, messages_send::ROUTES, send, |req, deps| {
        Box::pin(async move { messages_send::handle(req, &deps).await })
    });
    mount(
        &mut routes,
        crm_campaigns::ROUTES,
        crm_campaigns::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { crm_campaigns::handle(req, &deps).await }),
    );
    mount(
        &mut routes,
        c2s_webhook::ROUTES,
        c2s_webhook::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { c2s_webhook::handle(req, &deps).await }),
    );
    mount(
        &mut routes,
        accounts::ROUTES,
        accounts::Deps::new(common, env)?,
        |req, deps| Box::pin(async move { accounts::handle(req, &deps).await }),
    );
    Ok(Arc::new(Table(routes)))
}

/// Every `(method, path)` the HTTP functions declare, without building their
/// `Deps`: what `build` mounts, and exactly what `openapi.json` must document
/// (infra/local/tests/openapi.rs checks both). A new function adds its
/// `ROUTES` here and its `mount` in `build`.
pub fn declared() -> Vec<(&'static str, &'static str)> {
    [
        instantly_reply::ROUTES,
        calcom_booking::ROUTES,
        crm_actions::ROUTES,
        crm_read::ROUTES,
        messages_read::ROUTES,
        twilio_webhook::ROUTES,
        messages_send::ROUTES,
        c2s_webhook::ROUTES,
        crm_campaigns::ROUTES,
        accounts::ROUTES,
    ]
    .concat()
}

/// The OpenAPI 3 document of the HTTP API (repository root), served at GET /openapi.json.
pub const OPENAPI_JSON: &str = include_str!("../../../openapi.json");

/// API Gateway's payload limit for HTTP APIs.
const MAX_BODY: usize = 10 * 1024 * 1024;

pub fn router(table: Arc<Table>) -> axum::Router {
    axum::Router::new()
        .route(
            "/health",
            axum::routing::get(|| async {
                respond(crm_platform::http::json(
                    200,
                    &serde_json::json!({"status": "ok"}),
                ))
            }),
        )
        .route(
            "/openapi.json",
            axum::routing::get(|| async {
                respond(
                    lambda_http::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(lambda_http::Body::Text(OPENAPI_JSON.to_string()))
                        .expect("static response parts are valid"),
                )
            }),
        )
        .merge(crate::media::router(crate::media::current()))
        .fallback(move |req: axum::extract::Request| dispatch(table.clone(), req))
}

async fn dispatch(table: Arc<Table>, req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let found = table
        .0
        .iter()
        .filter(|r| r.method == parts.method.as_str())
        .find_map(|r| r.matches(&path).map(|params| (r, params)));
    let Some((route, path_params)) = found else {
        let known_path = table.0.iter().any(|r| r.matches(&path).is_some());
        // The web console: every GET no API route claims (as API Gateway's
        // `GET /{proxy+}` route does); it answers API paths with a JSON 404.
        if !known_path && (parts.method == http::Method::GET || parts.method == http::Method::HEAD)
        {
            let mut builder = http::Request::builder().method(parts.method).uri(parts.uri);
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let req = builder
                .body(lambda_http::Body::Empty)
                .expect("parts of a valid request")
                .with_raw_http_path(path);
            return respond(console::handle(&req, console_deps()));
        }
        let (status, code, msg) = if known_path {
            (405, "method_not_allowed", "Method not allowed")
        } else {
            (404, "not_found", "Not found")
        };
        return respond(crm_platform::http::json(
            status,
            &serde_json::json!({"error": msg, "code": code}),
        ));
    };
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let body =
                serde_json::json!({"error": "Payload too large", "code": "payload_too_large"});
            return respond(crm_platform::http::json(413, &body));
        }
    };
    let query: HashMap<String, Vec<String>> =
        parts.uri.query().map(parse_query).unwrap_or_default();
    let mut builder = http::Request::builder().method(parts.method).uri(parts.uri);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let lambda_req = builder
        .body(lambda_http::Body::Binary(bytes.to_vec()))
        .expect("parts of a valid request")
        .with_raw_http_path(path)
        .with_query_string_parameters(query)
        .with_path_parameters(path_params);
    // The same bound as in Lambda: 503 + Retry-After past the deadline.
    let deadline = crm_platform::http::REQUEST_DEADLINE;
    respond(crm_platform::http::bounded(deadline, (route.handler)(lambda_req)).await)
}

/// The console's headers (CSP) are built once; `CONSOLE_MEDIA_ORIGIN` as in AWS.
fn console_deps() -> &'static console::Deps {
    static DEPS: std::sync::OnceLock<console::Deps> = std::sync::OnceLock::new();
    DEPS.get_or_init(|| {
        console::Deps::from_process().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "console: CONSOLE_MEDIA_ORIGIN ignored");
            console::Deps::new(None).expect("no origin is valid")
        })
    })
}

fn parse_query(q: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

fn respond(resp: lambda_http::Response<lambda_http::Body>) -> axum::response::Response {
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &'static str) -> Route {
        Route {
            method: "GET",
            path,
            handler: Arc::new(|_| Box::pin(async { lambda_http::Response::default() })),
        }
    }

    #[test]
    fn patterns_match_one_segment_per_parameter() {
        let r = route("/crm/deals/{id}/stage");
        assert_eq!(r.matches("/crm/deals/abc/stage").unwrap()["id"], "abc");
        assert!(r.matches("/crm/deals//stage").is_none());
        assert!(r.matches("/crm/deals/abc").is_none());
        assert!(r.matches("/crm/deals/abc/stage/x").is_none());
        assert!(route("/health").matches("/health").unwrap().is_empty());
    }
}
