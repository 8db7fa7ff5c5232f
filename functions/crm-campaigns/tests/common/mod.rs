//! Shared by the crm-campaigns test binaries: deps on a fresh database, the
//! sample events with path / body / headers swapped, tokens, seed helpers.
#![allow(dead_code)]

use crm_campaigns::{Deps, handle};
use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::{Body, Request, http::HeaderMap};
use serde_json::{Value, json};
use uuid::Uuid;

pub const SECRET: &str = "test-jwt-secret";
pub const UNSUB_SECRET: &str = "test-unsubscribe-secret";
pub const FAR_FUTURE: i64 = 4_102_444_800;

pub fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 8).unwrap()).unwrap(),
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            PhoneRegion::default(),
        ),
        publisher: None,
        unsubscribe_secret: Some(Secret::new(UNSUB_SECRET).unwrap()),
    }
}

pub fn token(sub: &str, role: Role, caps: &[&str]) -> String {
    mint(
        &Secret::new(SECRET).unwrap(),
        &Claims::issued_now(sub, role, caps.iter().map(|c| c.to_string()).collect()),
    )
}

/// A campaign operator: can_use_crm and campaigns:send.
pub fn operator() -> String {
    token("ops-1", Role::Member, &["can_use_crm", "campaigns:send"])
}

/// can_use_crm only (may prepare, may not send).
pub fn planner() -> String {
    token("plan-1", Role::Member, &["can_use_crm"])
}

pub fn admin() -> String {
    token("admin-1", Role::Admin, &["can_use_crm"])
}

/// A request built from a sample event of crm-campaigns.
pub struct Call {
    ev: Value,
}

impl Call {
    pub fn from_event(name: &str) -> Self {
        Self {
            ev: serde_json::from_str(&event(&format!("crm-campaigns/{name}"))).unwrap(),
        }
    }

    fn new(method: &str, path: &str, token: Option<&str>) -> Self {
        let mut c = Self::from_event("create-segment.json")
            .method(method)
            .path(path)
            .token(token);
        c.header("idempotency-key", None);
        c.header("content-type", None);
        c.ev.as_object_mut().unwrap().remove("body");
        c
    }

    pub fn get(path: &str, token: &str) -> Self {
        Self::new("GET", path, Some(token))
    }

    pub fn post(path: &str, body: Value, token: &str) -> Self {
        Self::new("POST", path, Some(token)).body(body)
    }

    pub fn post_empty(path: &str, token: &str) -> Self {
        Self::new("POST", path, Some(token))
    }

    pub fn patch(path: &str, body: Value, token: &str) -> Self {
        Self::new("PATCH", path, Some(token)).body(body)
    }

    pub fn put(path: &str, body: Value, token: &str) -> Self {
        Self::new("PUT", path, Some(token)).body(body)
    }

    pub fn delete(path: &str, token: &str) -> Self {
        Self::new("DELETE", path, Some(token))
    }

    pub fn anonymous(method: &str, path: &str) -> Self {
        Self::new(method, path, None)
    }

    /// Sets `rawPath` (with its query string, split off into the v2 fields).
    pub fn path(mut self, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        self.ev["rawPath"] = json!(path);
        self.ev["requestContext"]["http"]["path"] = json!(path);
        self.ev["pathParameters"] = json!({});
        self.ev["rawQueryString"] = json!(query);
        let mut qs = serde_json::Map::new();
        for (k, v) in form_urlencoded_pairs(query) {
            qs.insert(k, json!(v));
        }
        if qs.is_empty() {
            self.ev
                .as_object_mut()
                .unwrap()
                .remove("queryStringParameters");
        } else {
            self.ev["queryStringParameters"] = Value::Object(qs);
        }
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.ev["body"] = json!(body.to_string());
        self.header("content-type", Some("application/json"));
        self
    }

    pub fn raw_body(mut self, body: &str, content_type: &str) -> Self {
        self.ev["body"] = json!(body);
        self.header("content-type", Some(content_type));
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

    fn header(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => self.ev["headers"][name] = json!(v),
            None => {
                self.ev["headers"].as_object_mut().unwrap().remove(name);
            }
        }
    }

    pub fn build(&self) -> Request {
        lambda_http::request::from_str(&self.ev.to_string()).expect("a valid API Gateway v2 event")
    }
}

fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_string()
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub async fn send(deps: &Deps, req: Request) -> Answer {
    let resp = handle(req, deps).await;
    let status = resp.status().as_u16();
    let text = match resp.body() {
        Body::Text(t) => t.clone(),
        Body::Empty => String::new(),
        other => panic!("unexpected body {other:?}"),
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        text,
        headers: resp.headers().clone(),
    }
}

pub async fn call(deps: &Deps, call: Call) -> Answer {
    send(deps, call.build()).await
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

pub async fn enable_channel(db: &tokio_postgres::Client, name: &str) {
    db.execute(
        "update channels set enabled = true where name = $1",
        &[&name],
    )
    .await
    .unwrap();
}

/// A contact row; returns its id.
pub async fn contact(
    db: &tokio_postgres::Client,
    first_name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    attributes: Value,
) -> Uuid {
    db.query_one(
        "insert into contacts (first_name, full_name, email, phone, attributes) \
         values ($1, $1, $2, $3, $4) returning id",
        &[&first_name, &email, &phone, &attributes],
    )
    .await
    .unwrap()
    .get(0)
}

/// A segment, template and draft campaign through the API; returns the campaign id.
pub async fn draft(deps: &Deps, channel: &str, filter: Value, template: Value) -> String {
    let who = operator();
    let seg = call(
        deps,
        Call::post(
            "/api/v1/crm/segments",
            json!({"name": format!("seg {}", Uuid::new_v4()), "filter": filter}),
            &who,
        ),
    )
    .await;
    assert_eq!(seg.status, 201, "{}", seg.body);
    let mut t = template;
    t["channel"] = json!(channel);
    t["name"] = json!(format!("tpl {}", Uuid::new_v4()));
    let tpl = call(deps, Call::post("/api/v1/crm/templates", t, &who)).await;
    assert_eq!(tpl.status, 201, "{}", tpl.body);
    let camp = call(
        deps,
        Call::post(
            "/api/v1/crm/campaigns",
            json!({"name": "Spring", "channel": channel, "segment_id": seg.id(), "template_id": tpl.id()}),
            &who,
        ),
    )
    .await;
    assert_eq!(camp.status, 201, "{}", camp.body);
    camp.id()
}
