//! Shared by the crm-actions test binaries: deps on a fresh database, the
//! sample events with their body / path / headers swapped, tokens.
#![allow(dead_code)]

use crm_actions::{Deps, handle};
use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::{Body, Request, http::HeaderMap};
use serde_json::{Value, json};

/// The secret the sample events' tokens are signed with.
pub const SECRET: &str = "test-jwt-secret";
/// 2100-01-01: the sample events' expiry.
pub const FAR_FUTURE: i64 = 4_102_444_800;

pub fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 12).unwrap()).unwrap(),
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            PhoneRegion::default(),
        ),
        publisher: None,
    }
}

pub fn token(sub: &str, role: Role) -> String {
    mint(
        &Secret::new(SECRET).unwrap(),
        &Claims::issued_now(sub, role, vec![]),
    )
}

pub fn member(sub: &str) -> String {
    token(sub, Role::Member)
}

pub fn admin(sub: &str) -> String {
    token(sub, Role::Admin)
}

pub fn request(event_json: &str) -> Request {
    lambda_http::request::from_str(event_json).expect("a valid API Gateway v2 event")
}

/// A request built from a sample event of crm-actions.
pub struct Call {
    ev: Value,
}

impl Call {
    pub fn from_event(name: &str) -> Self {
        Self {
            ev: serde_json::from_str(&event(&format!("crm-actions/{name}"))).unwrap(),
        }
    }

    /// POST to `path` with `body`, as `token` (path parameters left empty,
    /// as some local tools send them).
    pub fn post(path: &str, body: Value, token: &str) -> Self {
        let mut c = Self::from_event("create-contact.json")
            .path(path)
            .body(body)
            .token(Some(token));
        c.header("idempotency-key", None);
        c
    }

    pub fn path(mut self, path: &str) -> Self {
        self.ev["rawPath"] = json!(path);
        self.ev["requestContext"]["http"]["path"] = json!(path);
        self.ev["pathParameters"] = json!({});
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.ev["body"] = json!(body.to_string());
        self
    }

    pub fn raw_body(mut self, body: &str) -> Self {
        self.ev["body"] = json!(body);
        self
    }

    pub fn token(mut self, token: Option<&str>) -> Self {
        self.header(
            "authorization",
            token.map(|t| format!("Bearer {t}")).as_deref(),
        );
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.header("idempotency-key", Some(key));
        self
    }

    pub fn method(mut self, method: &str) -> Self {
        self.ev["requestContext"]["http"]["method"] = json!(method);
        self
    }

    pub fn with_header(mut self, name: &str, value: Option<&str>) -> Self {
        self.header(name, value);
        self
    }

    fn header(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => self.ev["headers"][name] = json!(v),
            None => {
                self.ev["headers"].as_object_mut().unwrap().remove(name);
            }
        }
    }

    pub fn build(&self) -> Request {
        request(&self.ev.to_string())
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_string()
    }
}

pub async fn send(deps: &Deps, req: Request) -> Answer {
    let resp = handle(req, deps).await;
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    Answer {
        status,
        body,
        headers: resp.headers().clone(),
    }
}

pub async fn call(deps: &Deps, call: Call) -> Answer {
    send(deps, call.build()).await
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// The id of the default pipeline's stage called `name`.
pub async fn stage_id(db: &tokio_postgres::Client, name: &str) -> String {
    db.query_one(
        "select s.id::text from pipeline_stages s join pipelines p on p.id = s.pipeline_id \
         where p.is_default and s.name = $1",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

/// A contact created through the API as `token`; returns its id.
pub async fn contact(deps: &Deps, token: &str, body: Value) -> String {
    let a = call(deps, Call::post("/crm/actions/contacts", body, token)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.id()
}

/// A deal created through the API as `token`; returns its id.
pub async fn deal(deps: &Deps, token: &str, body: Value) -> String {
    let a = call(deps, Call::post("/crm/actions/deals", body, token)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.id()
}
