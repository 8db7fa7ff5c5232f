//! Helpers shared by the c2s-webhook tests: deps, requests built on the
//! sample events, counts.
#![allow(dead_code)]

use c2s_webhook::{Deps, handle};
use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
    signature::Verifier,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

pub const TOKEN: &str = "test-c2s-token";
pub const JWT_SECRET: &str = "test-jwt-secret";

pub fn deps(db: &TestDb) -> Deps {
    deps_with_pool(db, 4)
}

pub fn deps_with_pool(db: &TestDb, pool: usize) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, pool).unwrap()).unwrap(),
        verifier: Verifier::Secret(Secret::new(TOKEN).unwrap()),
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(JWT_SECRET).unwrap()),
            PhoneRegion::default(),
        ),
        publisher: None,
    }
}

pub fn request(event_json: &str) -> Request {
    lambda_http::request::from_str(event_json).expect("a valid API Gateway v2 event")
}

/// A sample event as JSON, to tweak.
pub fn sample(name: &str) -> Value {
    serde_json::from_str(&event(&format!("c2s-webhook/{name}"))).unwrap()
}

/// The body of a sample event, parsed.
pub fn sample_body(name: &str) -> Value {
    serde_json::from_str(sample(name)["body"].as_str().unwrap()).unwrap()
}

/// `create-flat.json` (header token) with another body and header tweaks.
pub fn post(body: &str, headers: &[(&str, Option<&str>)]) -> Request {
    let mut ev = sample("create-flat.json");
    ev["body"] = json!(body);
    let h = ev["headers"].as_object_mut().unwrap();
    h.remove("content-length");
    for (name, value) in headers {
        match value {
            Some(v) => {
                h.insert(name.to_string(), json!(v));
            }
            None => {
                h.remove(*name);
            }
        }
    }
    request(&ev.to_string())
}

pub fn post_json(body: &Value) -> Request {
    post(&body.to_string(), &[])
}

pub async fn send(deps: &Deps, req: Request) -> (u16, Value) {
    let resp = handle(req, deps).await;
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

pub async fn send_sample(deps: &Deps, name: &str) -> (u16, Value) {
    send(deps, request(&event(&format!("c2s-webhook/{name}")))).await
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// (accepted events, rejected events, leads, outbox jobs)
pub async fn totals(db: &tokio_postgres::Client) -> (i64, i64, i64, i64) {
    (
        count(
            db,
            "select count(*) from webhook_events where source = 'c2s' and status <> 'rejected'",
        )
        .await,
        count(
            db,
            "select count(*) from webhook_events where source = 'c2s' and status = 'rejected'",
        )
        .await,
        count(db, "select count(*) from c2s_leads").await,
        count(db, "select count(*) from outbox where queue = 'enrichment'").await,
    )
}

pub fn jwt(sub: &str, role: Role) -> String {
    let claims = Claims::issued_now(sub, role, vec![]);
    mint(&Secret::new(JWT_SECRET).unwrap(), &claims)
}

/// `GET /api/v1/webhooks/c2s/stats?<query>` with `authorization` (a full header value, or none).
pub async fn stats(
    deps: &Deps,
    query: &[(&str, &str)],
    authorization: Option<&str>,
) -> (u16, Value) {
    let mut ev = sample("stats.json");
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    ev["queryStringParameters"] = Value::Object(params);
    ev["rawQueryString"] = json!(
        query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let h = ev["headers"].as_object_mut().unwrap();
    match authorization {
        Some(a) => {
            h.insert("authorization".into(), json!(a));
        }
        None => {
            h.remove("authorization");
        }
    }
    send(deps, request(&ev.to_string())).await
}
