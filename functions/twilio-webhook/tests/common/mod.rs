//! Shared by the handler tests: the sample events (`events/twilio-webhook/`),
//! freshly signed forms, and row counting against the per-test database.
#![allow(dead_code)]

use crm_domain::{
    Secret,
    phone::PhoneRegion,
    signature::Verifier,
    twilio::{EMPTY_TWIML, signature::sign},
};
use crm_platform::{config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use twilio_webhook::{Deps, handle};

/// What the samples are signed with.
pub const TOKEN: &str = "test-twilio-token";
pub const BASE_URL: &str = "https://crm.example.com";
pub const PATH: &str = "/api/twilio/webhook";
/// The outbound message the status samples report on.
pub const OUT_SID: &str = "SM9f8e7d6c5b4a39281706f5e4d3c2b1a0";
pub const SMS_SID: &str = "SMb7c6f1a0e5d94c2f8a1d3e6b9c0f2a41";

pub fn deps_in(db: &TestDb, region: &str) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 12).unwrap()).unwrap(),
        verifier: Verifier::Secret(Secret::new(TOKEN).unwrap()),
        public_base_url: BASE_URL.into(),
        phone_region: PhoneRegion::parse(region).unwrap(),
    }
}

pub fn deps(db: &TestDb) -> Deps {
    deps_in(db, "TR")
}

pub fn request(event_json: &str) -> Request {
    lambda_http::request::from_str(event_json).expect("a valid API Gateway v2 event")
}

/// A sample event as shipped, e.g. `sample("inbound-sms")`.
pub fn sample(name: &str) -> Request {
    request(&event(&format!("twilio-webhook/{name}.json")))
}

pub fn encode(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The `inbound-sms` sample carrying `body` with `headers` set (or removed with `None`).
pub fn raw(body: &str, query: &str, headers: &[(&str, Option<&str>)]) -> Request {
    let mut ev: Value = serde_json::from_str(&event("twilio-webhook/inbound-sms.json")).unwrap();
    ev["body"] = json!(body);
    ev["rawQueryString"] = json!(query);
    for (name, value) in headers {
        match value {
            Some(v) => ev["headers"][*name] = json!(v),
            None => {
                ev["headers"].as_object_mut().unwrap().remove(*name);
            }
        }
    }
    request(&ev.to_string())
}

/// A form as Twilio would post it, signed for the test token and public URL.
pub fn signed(params: &[(&str, &str)]) -> Request {
    let body = encode(params);
    let sig = sign(TOKEN, &format!("{BASE_URL}{PATH}"), body.as_bytes());
    raw(&body, "", &[("x-twilio-signature", Some(&sig))])
}

/// An inbound message from `from` (`whatsapp:+…` for WhatsApp).
pub fn inbound(sid: &str, from: &str, body: &str) -> Request {
    signed(&[
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", "AC8f3b2c1d0e9a4b7c6d5e4f3a2b1c0d9e"),
        ("From", from),
        ("To", "+908501234567"),
        ("Body", body),
        ("NumMedia", "0"),
        ("SmsStatus", "received"),
    ])
}

/// A status callback for `sid`.
pub fn status(sid: &str, status: &str, error_code: Option<&str>) -> Request {
    let mut params = vec![
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("MessageStatus", status),
        ("SmsStatus", status),
        ("AccountSid", "AC8f3b2c1d0e9a4b7c6d5e4f3a2b1c0d9e"),
        ("To", "whatsapp:+905321234567"),
        ("From", "whatsapp:+14155238886"),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode", code));
    }
    signed(&params)
}

/// Sends a request: (status, content type, body text).
pub async fn call(deps: &Deps, req: Request) -> (u16, String, String) {
    let resp: Response<Body> = handle(req, deps).await;
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = match resp.body() {
        Body::Text(t) => t.clone(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, ct, body)
}

/// Sends a request that must be accepted: 200 with empty TwiML.
pub async fn accepted(deps: &Deps, req: Request) {
    let (status, ct, body) = call(deps, req).await;
    assert_eq!((status, ct.as_str()), (200, "text/xml"), "{body}");
    assert_eq!(body, EMPTY_TWIML);
}

/// Sends a request that must be refused: (status, JSON body).
pub async fn refused(deps: &Deps, req: Request) -> (u16, Value) {
    let (status, ct, body) = call(deps, req).await;
    assert_eq!(ct, "application/json");
    (status, serde_json::from_str(&body).unwrap())
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// An outbound message as the send worker stores it once Twilio took it.
pub async fn outbound(db: &tokio_postgres::Client, sid: &str, status: &str) -> uuid::Uuid {
    db.query_one(
        "with c as (insert into contacts (phone, full_name) values ('+905321234567', 'Ayşe Yılmaz') \
                    on conflict (phone) do update set updated_at = now() returning id) \
         insert into messages (direction, channel, contact_id, body, provider_sid, status) \
         select 'out', 'whatsapp', id, 'Merhaba Ayşe', $1, $2 from c returning id",
        &[&sid, &status],
    )
    .await
    .unwrap()
    .get(0)
}
