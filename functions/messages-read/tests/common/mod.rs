//! Helpers shared by the messages-read tests: deps, tokens, requests built
//! on the sample events, seed rows.
#![allow(dead_code)]

use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::Body;
use messages_read::{Deps, handle};
use serde_json::{Value, json};

pub const SECRET: &str = "test-jwt-secret";

pub fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap(),
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            PhoneRegion::default(),
        ),
        content: None,
        media: None,
    }
}

pub fn token(sub: &str, role: Role) -> String {
    let claims = Claims::issued_now(sub, role, vec![]);
    mint(&Secret::new(SECRET).unwrap(), &claims)
}

pub fn admin() -> String {
    token("admin-1", Role::Admin)
}

pub fn member(sub: &str) -> String {
    token(sub, Role::Member)
}

/// `method path?query` with `body` (JSON) as `token`, built on the events sample.
pub async fn call(
    deps: &Deps,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
    token: &str,
) -> (u16, Value) {
    let mut ev: Value = serde_json::from_str(&event("messages-read/events.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["requestContext"]["http"]["method"] = json!(method);
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    ev["queryStringParameters"] = Value::Object(params);
    ev["rawQueryString"] = json!(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish()
    );
    ev["headers"]["authorization"] = json!(format!("Bearer {token}"));
    if let Some(b) = body {
        ev["body"] = json!(b);
        ev["headers"]["content-type"] = json!("application/json");
    }
    send(deps, &ev.to_string()).await
}

pub async fn send(deps: &Deps, ev: &str) -> (u16, Value) {
    let resp = handle(lambda_http::request::from_str(ev).unwrap(), deps).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

pub async fn contact(
    pg: &tokio_postgres::Client,
    phone: Option<&str>,
    owner: Option<&str>,
) -> String {
    pg.query_one(
        "insert into contacts (full_name, phone, owner_id) values ('Ana', $1, $2) returning id::text",
        &[&phone, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

/// An inbound message `seconds_ago`; returns its id.
pub async fn inbound(pg: &tokio_postgres::Client, contact: &str, seconds_ago: i32) -> String {
    pg.query_one(
        "insert into messages (direction, channel, contact_id, body, status, created_at) \
         values ('in', 'whatsapp', $1::text::uuid, 'hi', 'received', now() - make_interval(secs => $2)) \
         returning id::text",
        &[&contact, &f64::from(seconds_ago)],
    )
    .await
    .unwrap()
    .get(0)
}

pub fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}
