//! Shared by the messages-send tests: deps on a fresh database, the sample
//! events with body and token swapped, seed rows.
#![allow(dead_code)]

use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::Body;
use messages_send::{Deps, handle};
use serde_json::{Value, json};

pub const SECRET: &str = "test-jwt-secret";

pub fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap(),
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            PhoneRegion::default(),
        ),
        publisher: None,
        media: None,
    }
}

pub fn token(sub: &str, role: Role) -> String {
    mint(
        &Secret::new(SECRET).unwrap(),
        &Claims::issued_now(sub, role, vec![]),
    )
}

/// POST `path` with `body` as `token`, from the sample event (no idempotency key).
pub async fn post(deps: &Deps, path: &str, body: Value, token: &str) -> (u16, Value) {
    let mut ev: Value = serde_json::from_str(&event("messages-send/send-text.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["body"] = json!(body.to_string());
    ev["headers"]["authorization"] = json!(format!("Bearer {token}"));
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("idempotency-key");
    let req = lambda_http::request::from_str(&ev.to_string()).unwrap();
    let resp = handle(req, deps).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

/// A contact owned by `owner` (None: unowned) with `phone`; returns its id.
pub async fn contact(
    db: &tokio_postgres::Client,
    owner: Option<&str>,
    phone: Option<&str>,
    name: Option<&str>,
) -> uuid::Uuid {
    db.query_one(
        "insert into contacts (phone, full_name, owner_id, source) values ($1, $2, $3, 'test') returning id",
        &[&phone, &name, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

/// An inbound message from the contact `ago` ago on `channel`.
pub async fn inbound(
    db: &tokio_postgres::Client,
    contact: uuid::Uuid,
    channel: &str,
    ago: chrono::Duration,
) {
    let wa: Option<&str> = (channel == "whatsapp").then_some("905321234567");
    db.execute(
        "insert into messages (direction, channel, contact_id, body, provider_sid, status, wa_id, created_at) \
         values ('in', $1, $2, 'hi', $3, 'received', $4, now() - $5::float8 * interval '1 second')",
        &[
            &channel,
            &contact,
            &format!("SM{}", uuid::Uuid::new_v4().simple()),
            &wa,
            &(ago.num_seconds() as f64),
        ],
    )
    .await
    .unwrap();
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}
