//! HTTP glue for API Gateway (payload v2) via `lambda_http`: header access,
//! JSON responses and the error body every function answers with.

use crm_domain::WebhookError;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

/// A header as text; absent, non-UTF-8 or empty is `None`. Names are case-insensitive.
pub fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The raw body bytes, exactly as signed (API Gateway base64 is already decoded).
pub fn body_bytes(req: &Request) -> &[u8] {
    req.body().as_ref()
}

/// API Gateway's request id, or a fresh one locally.
pub fn request_id(req: &Request) -> String {
    use lambda_http::request::RequestContext;
    let from_gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    match from_gateway.filter(|id| !id.is_empty()) {
        Some(id) => id.chars().take(64).collect(),
        None => uuid::Uuid::now_v7().to_string(),
    }
}

pub fn json(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_string()))
        .expect("static response parts are valid")
}

/// The one mapping of a webhook error to a response: an outage is 503 with
/// `Retry-After` (never 500), as the API answers it.
pub fn error(err: &WebhookError) -> Response<Body> {
    with_retry_after(json(err.status(), &err.body()))
}

/// Seconds a caller is told to wait after a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 5;

/// The longest any request may take end to end, locally and in Lambda (API
/// Gateway gives up at 29 s; this answers first, with a 503 the caller
/// retries).
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Left before the Lambda invocation's own deadline to answer in.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Adds `Retry-After` to a 503 (and leaves any other response alone).
pub fn with_retry_after(mut resp: Response<Body>) -> Response<Body> {
    if resp.status() == 503 && !resp.headers().contains_key("retry-after") {
        resp.headers_mut().insert(
            "retry-after",
            lambda_http::http::HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// This request's deadline: [`REQUEST_DEADLINE`], or less when the Lambda
/// invocation has less time left (minus a margin to answer in).
pub fn deadline(req: &Request) -> std::time::Duration {
    let remaining = req.lambda_context_ref().and_then(|ctx| {
        ctx.deadline()
            .duration_since(std::time::SystemTime::now())
            .ok()
    });
    match remaining {
        Some(left) => left.saturating_sub(DEADLINE_MARGIN).min(REQUEST_DEADLINE),
        None => REQUEST_DEADLINE,
    }
}

/// Runs a handler within `deadline`: past it the work is dropped (its
/// transaction rolls back) and the caller gets 503 + `Retry-After`. A
/// frozen database or provider never holds a caller longer than this.
pub async fn bounded(
    deadline: std::time::Duration,
    handler: impl std::future::Future<Output = Response<Body>>,
) -> Response<Body> {
    match tokio::time::timeout(deadline, handler).await {
        Ok(resp) => with_retry_after(resp),
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "request deadline passed: answered 503"
            );
            with_retry_after(json(
                503,
                &serde_json::json!({"error": "Service temporarily unavailable", "code": "temporarily_unavailable"}),
            ))
        }
    }
}
