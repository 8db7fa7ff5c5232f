//! Shared by the handler tests: the sample events (`events/calcom-booking/`),
//! re-signed variants, and row counting against the per-test database.
#![allow(dead_code)]

use calcom_booking::{Deps, handle};
use crm_domain::{
    Secret,
    signature::{Verifier, hmac_sha256_hex},
};
use crm_platform::{config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

pub const SECRET: &str = "test-calcom-secret";
pub const UID: &str = "nDq3mXwV8kPz2TfRjL6cYb";
pub const NEW_UID: &str = "Hs7wK2pQx9VbN4mTzR1dLe";

pub fn deps_with(db: &TestDb, pool_max: usize, verifier: Verifier) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, pool_max).unwrap()).unwrap(),
        verifier,
    }
}

pub fn deps(db: &TestDb) -> Deps {
    deps_with(db, 8, Verifier::Secret(Secret::new(SECRET).unwrap()))
}

pub fn request(event_json: &str) -> Request {
    lambda_http::request::from_str(event_json).expect("a valid API Gateway v2 event")
}

/// A sample event as shipped, e.g. `sample("created")`.
pub fn sample(name: &str) -> Request {
    request(&event(&format!("calcom-booking/{name}.json")))
}

/// The parsed body of a sample event.
pub fn body_of(name: &str) -> Value {
    let ev: Value = serde_json::from_str(&event(&format!("calcom-booking/{name}.json"))).unwrap();
    serde_json::from_str(ev["body"].as_str().unwrap()).unwrap()
}

/// The `created` sample with another body (re-signed with the test secret) and header tweaks.
pub fn signed(body: &str, headers: &[(&str, Option<&str>)]) -> Request {
    let mut ev: Value = serde_json::from_str(&event("calcom-booking/created.json")).unwrap();
    ev["body"] = json!(body);
    ev["headers"]["x-cal-signature-256"] =
        json!(hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes()));
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
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

/// A sample's body changed by `edit`, re-signed.
pub fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Request {
    let mut body = body_of(name);
    edit(&mut body);
    signed(&body.to_string(), &[])
}

pub async fn send(deps: &Deps, req: Request) -> (u16, Value) {
    let resp: Response<Body> = handle(req, deps).await;
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// The name of a deal's current stage.
pub async fn stage_of(db: &tokio_postgres::Client, deal_id: &Value) -> String {
    db.query_one(
        "select s.name from deals d join pipeline_stages s on s.id = d.stage_id where d.id::text = $1",
        &[&deal_id.as_str().unwrap()],
    )
    .await
    .unwrap()
    .get(0)
}

/// Stage moves as (from, to, actor), oldest first.
pub async fn moves(db: &tokio_postgres::Client) -> Vec<(Option<String>, String, String)> {
    db.query(
        "select f.name, t.name, h.actor from deal_stage_history h left join pipeline_stages f on f.id = h.from_stage_id \
         join pipeline_stages t on t.id = h.to_stage_id order by h.id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

pub fn owned(moves: &[(Option<&str>, &str)]) -> Vec<(Option<String>, String, String)> {
    moves
        .iter()
        .map(|(f, t)| (f.map(str::to_owned), t.to_string(), "calcom".to_string()))
        .collect()
}
