//! Shared by the accounts test binaries: deps on a fresh database, requests
//! built from the sample events, and helpers that sign people in.
#![allow(dead_code)]

use accounts::{AccountsConfig, Deps, handle};
use crm_domain::{
    EmailAddress, Secret,
    accounts::{
        password::{self, NewPassword},
        throttle::ThrottlePolicy,
        users::{self, NewUser, Origin},
    },
    auth::{JwtVerifier, Role},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event};
use lambda_http::{Body, Request, http::HeaderMap};
use serde_json::{Value, json};

pub const SECRET: &str = "test-jwt-secret";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn config() -> AccountsConfig {
    AccountsConfig {
        signing_secret: Secret::new(SECRET).unwrap(),
        access_ttl_seconds: 900,
        session_seconds: 7 * 24 * 3600,
        public_base_url: "https://crm.example.com".into(),
        secure_cookie: true,
        throttle: ThrottlePolicy::default(),
    }
}

pub fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 8).unwrap()).unwrap(),
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            PhoneRegion::default(),
        ),
        config: config(),
        mailer: None,
    }
}

/// A user with `password` (hashed as sign-in expects); returns its id.
pub async fn user(deps: &Deps, email: &str, role: Role, password_text: Option<&str>) -> uuid::Uuid {
    let hash = password_text.map(|p| password::hash(&NewPassword::parse(p).unwrap()).unwrap());
    let client = deps.pool.get().await.unwrap();
    users::insert(
        &client,
        &NewUser {
            email: &EmailAddress::parse(email).unwrap(),
            name: "Test User",
            role,
            caps: &["can_use_crm".to_string()],
            origin: Origin::Invited,
            password_hash: hash.as_deref(),
        },
    )
    .await
    .unwrap()
    .unwrap()
    .id
}

/// A request from a sample event of this function, with its parts swapped.
pub struct Call {
    ev: Value,
}

impl Call {
    pub fn from_event(name: &str) -> Self {
        Self {
            ev: serde_json::from_str(&event(&format!("accounts/{name}"))).unwrap(),
        }
    }

    pub fn new(method: &str, path: &str) -> Self {
        Self::from_event("list-users.json")
            .method(method)
            .path(path)
            .token(None)
    }

    pub fn path(mut self, path: &str) -> Self {
        self.ev["rawPath"] = json!(path);
        self.ev["requestContext"]["http"]["path"] = json!(path);
        self.ev["pathParameters"] = json!({});
        self
    }

    pub fn method(mut self, method: &str) -> Self {
        self.ev["requestContext"]["http"]["method"] = json!(method);
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.ev["body"] = json!(body.to_string());
        self.ev["headers"]["content-type"] = json!("application/json");
        self
    }

    pub fn raw_body(mut self, raw: &str) -> Self {
        self.ev["body"] = json!(raw);
        self
    }

    pub fn no_body(mut self) -> Self {
        self.ev["body"] = json!("");
        self
    }

    pub fn token(mut self, token: Option<&str>) -> Self {
        match token {
            Some(t) => self.ev["headers"]["authorization"] = json!(format!("Bearer {t}")),
            None => {
                self.ev["headers"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorization");
            }
        }
        self
    }

    pub fn cookie(mut self, cookie: Option<&str>) -> Self {
        match cookie {
            Some(c) => self.ev["cookies"] = json!([c]),
            None => {
                self.ev.as_object_mut().unwrap().remove("cookies");
            }
        }
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Self {
        self.ev["requestContext"]["http"]["sourceIp"] = json!(ip);
        self
    }

    pub fn build(&self) -> Request {
        lambda_http::request::from_str(&self.ev.to_string()).expect("a valid API Gateway v2 event")
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The `crm_refresh` value the answer set.
    pub fn refresh_cookie(&self) -> String {
        let c = self.set_cookie().expect("a set-cookie header");
        c.strip_prefix("crm_refresh=")
            .and_then(|rest| rest.split(';').next())
            .expect("crm_refresh cookie")
            .to_string()
    }

    pub fn access_token(&self) -> String {
        self.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token in {}", self.body))
            .to_string()
    }
}

pub async fn call(deps: &Deps, call: Call) -> Answer {
    let resp = handle(call.build(), deps).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    Answer {
        status,
        body,
        headers: resp.headers().clone(),
    }
}

pub fn login_call(email: &str, password: &str) -> Call {
    Call::from_event("login.json").body(json!({"email": email, "password": password}))
}

pub async fn login(deps: &Deps, email: &str, password: &str) -> Answer {
    call(deps, login_call(email, password)).await
}

pub fn refresh_call(cookie_value: &str) -> Call {
    Call::from_event("refresh.json").cookie(Some(&format!("crm_refresh={cookie_value}")))
}

pub async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}
