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

pub fn error(err: &WebhookError) -> Response<Body> {
    json(err.status(), &err.body())
}
