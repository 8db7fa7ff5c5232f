//! GET/POST /api/v1/crm/unsubscribe?token=…: the public unsubscribe link of
//! every e-mail/SMS campaign message. The token (`crm_domain::unsubscribe`)
//! is verified in constant time. GET only shows a confirmation form (mail
//! gateways and link scanners pre-fetch links: a GET must never unsubscribe
//! anyone); POST — that form, or RFC 8058 one-click
//! (`List-Unsubscribe-Post: List-Unsubscribe=One-Click`) — records an
//! opt-out for the token's contact and channel (source `unsubscribe_link`,
//! audited with ids only) and answers a small confirmation page. The token
//! comes in the query string, or as a `token` form field. Expired or
//! invalid tokens get a 400 page; nothing is written.
//!
//! It works whatever the module switch says: recipients must always be able
//! to opt out. Pages name no contact details, and the token is never logged.

use crate::Deps;
use crm_domain::{
    campaigns::api::compliance::{self, Unsubscribed},
    unsubscribe::{self, TokenError},
};
use crm_platform::{api, http};
use lambda_http::{Body, Request, Response};

fn page(status: u16, title: &str, message: &str) -> Response<Body> {
    html_page(status, title, &format!("<p>{message}</p>"))
}

/// Minimal HTML escaping for an attribute value (the token is base64url and
/// dots, but it came from the URL).
fn escape(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The GET answer: a button that POSTs the token back (nothing recorded yet).
fn confirmation(token: &str, channel: &str) -> Response<Body> {
    let words = channel_words(channel);
    html_page(
        200,
        "Unsubscribe?",
        &format!(
            "<p>Do you want to stop receiving our {words}?</p>\
             <form method=\"post\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">Unsubscribe</button></form>",
            escape(token)
        ),
    )
}

fn html_page(status: u16, title: &str, inner: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem\">\
         <h1>{title}</h1>{inner}</body></html>\n"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        // The token is in the URL: keep it out of Referer headers.
        .header("referrer-policy", "no-referrer")
        .header("x-robots-tag", "noindex")
        .body(Body::Text(html))
        .expect("static response parts are valid")
}

fn channel_words(channel: &str) -> &'static str {
    match channel {
        "email" => "e-mails",
        "sms" => "text messages",
        "whatsapp" => "WhatsApp messages",
        _ => "messages",
    }
}

/// The token from the query string, else from a form body (`token=`).
fn token(req: &Request) -> Option<String> {
    api::query(req, "token")
        .or_else(|| {
            form_urlencoded::parse(http::body_bytes(req))
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|t| !t.trim().is_empty())
}

pub async fn handle(req: &Request, deps: &Deps) -> Response<Body> {
    let Some(secret) = &deps.unsubscribe_secret else {
        tracing::error!(
            "UNSUBSCRIBE_SECRET is not configured: unsubscribe links cannot be verified"
        );
        return page(
            503,
            "Unsubscribe unavailable",
            "We could not process this link right now. Please try again later.",
        );
    };
    let Some(token) = token(req) else {
        return page(400, "Invalid link", "This unsubscribe link is incomplete.");
    };
    let claims = match unsubscribe::verify(secret, token.trim(), chrono::Utc::now()) {
        Ok(c) => c,
        Err(TokenError::Expired) => {
            tracing::info!(status = 400, code = "token_expired", "unsubscribe refused");
            return page(
                400,
                "Link expired",
                "This unsubscribe link has expired. Please use the link in a more recent message, or reply STOP.",
            );
        }
        Err(TokenError::Invalid) => {
            tracing::info!(status = 400, code = "token_invalid", "unsubscribe refused");
            return page(400, "Invalid link", "This unsubscribe link is not valid.");
        }
    };
    if req.method() != lambda_http::http::Method::POST {
        return confirmation(token.trim(), &claims.channel);
    }
    let client = match deps.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe: database pool");
            return page(
                503,
                "Unsubscribe unavailable",
                "We could not process this link right now. Please try again later.",
            );
        }
    };
    match compliance::unsubscribe(&client, &claims).await {
        Ok(outcome) => {
            tracing::info!(
                contact_id = %claims.contact_id,
                campaign_id = ?claims.campaign_id,
                channel = claims.channel.as_str(),
                outcome = ?outcome,
                "unsubscribed"
            );
            let words = channel_words(&claims.channel);
            let msg = match outcome {
                Unsubscribed::Recorded | Unsubscribed::UnknownContact => {
                    format!("You will no longer receive our {words}.")
                }
                Unsubscribed::AlreadyOptedOut => {
                    format!("You were already unsubscribed from our {words}.")
                }
            };
            page(200, "You are unsubscribed", &msg)
        }
        Err(e) => {
            tracing::error!(error = %crm_domain::db::loggable(&e), "unsubscribe failed");
            page(
                500,
                "Something went wrong",
                "We could not record your request. Please try the link again.",
            )
        }
    }
}
