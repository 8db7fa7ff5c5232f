//! An external identity provider: RS256 tokens verified against a local
//! JWKS server (wiremock) with real RSA keys generated here, mapped to a
//! `users` row by e-mail on first use; our own HS256 tokens keep working.

mod common;

use accounts::Deps;
use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair, KeySize},
};
use common::*;
use crm_domain::auth::Role;
use crm_platform::{
    api::ApiConfig,
    config::{CommonConfig, DatabaseConfig, Env},
    db::build_pool,
};
use crm_testkit::TestDb;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const ISSUER: &str = "https://idp.example.com/pool-1";
const AUDIENCE: &str = "crm-console";

/// A fresh 2048-bit RSA key: its signing key and its public JWK under `kid`.
fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap();
    let key = EncodingKey::from_rsa_der(pkcs1_of(pkcs8.as_ref()));
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    (key, serde_json::to_value(jwk).unwrap())
}

/// A DER element's (tag, content, rest).
fn der_element(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        n if n < 0x80 => (n as usize, 2),
        n => {
            let count = (n & 0x7f) as usize;
            let len = input[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + count)
        }
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`
/// (SEQUENCE { version, algorithm, OCTET STRING privateKey }).
fn pkcs1_of(pkcs8: &[u8]) -> &[u8] {
    let (_, info, _) = der_element(pkcs8);
    let (_, _, rest) = der_element(info); // version
    let (_, _, rest) = der_element(rest); // algorithm identifier
    let (tag, key, _) = der_element(rest);
    assert_eq!(tag, 0x04, "an OCTET STRING holds the key");
    key
}

fn token(key: &EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(email: &str, groups: &[&str]) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("idp|{email}"),
        "email": email, "email_verified": true, "name": "Zeynep Kaya",
        "cognito:groups": groups, "iat": now, "exp": now + 3600,
    })
}

async fn jwks(server: &MockServer, keys: &[&Value]) {
    server.reset().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": keys})))
        .mount(server)
        .await;
}

fn deps_with_idp(db: &TestDb, server: &MockServer) -> Deps {
    let url = format!("{}/jwks.json", server.uri());
    let pairs = [
        ("APP_ENV", "test"),
        ("DATABASE_URL", db.url.as_str()),
        ("JWT_SECRET", SECRET),
        ("JWT_JWKS_URL", url.as_str()),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_ADMIN_GROUP", "crm-admins"),
    ];
    let env = Env::from_pairs(pairs);
    let common = CommonConfig::from_env(&env).unwrap();
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap(),
        api: ApiConfig::from_env(&common, &env).unwrap(),
        config: config(),
        mailer: None,
    }
}

async fn me(deps: &Deps, bearer: &str) -> Answer {
    call(deps, Call::from_event("me.json").token(Some(bearer))).await
}

#[tokio::test]
async fn first_use_creates_the_user_by_email_and_an_unknown_kid_refetches_once() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    let (k1, jwk1) = rsa_key("k1");
    let (k2, jwk2) = rsa_key("k2");
    jwks(&server, &[&jwk1]).await;
    let mut deps = deps_with_idp(&db, &server);
    deps.api.external = deps
        .api
        .external
        .take()
        .map(|idp| idp.with_min_refetch(Duration::ZERO));

    let t1 = token(&k1, "k1", claims("Zeynep@Corp.example", &["crm-admins"]));
    let a = me(&deps, &t1).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["email"], "zeynep@corp.example");
    assert_eq!(a.body["role"], "admin");
    assert_eq!(a.body["origin"], "external");
    assert_eq!(a.body["name"], "Zeynep Kaya");
    let idp = deps.api.external.as_ref().unwrap();
    assert_eq!(idp.fetches().await, 1);
    // Again: the cached keys, the same row.
    assert_eq!(me(&deps, &t1).await.body["id"], a.body["id"]);
    assert_eq!(idp.fetches().await, 1);
    let c = db.client().await;
    assert_eq!(count(&c, "select count(*) from users").await, 1);
    assert_eq!(
        count(
            &c,
            "select count(*) from audit_log where action = 'crm.user.created'"
        )
        .await,
        1
    );

    // The provider rotates to k2: a token naming it makes one refetch.
    jwks(&server, &[&jwk1, &jwk2]).await;
    let t2 = token(&k2, "k2", claims("member@corp.example", &[]));
    let b = me(&deps, &t2).await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["role"], "member");
    assert_eq!(idp.fetches().await, 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // Deactivated in the CRM: refused although the provider's token is valid.
    c.execute(
        "update users set active = false where email = 'member@corp.example'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(me(&deps, &t2).await.status, 401);

    // Our own tokens keep working alongside.
    user(&deps, "local@example.com", Role::Member, Some(PASSWORD)).await;
    let local = login(&deps, "local@example.com", PASSWORD)
        .await
        .access_token();
    assert_eq!(me(&deps, &local).await.status, 200);
}

#[tokio::test]
async fn wrong_issuer_audience_lifetime_or_unverified_email_are_refused_and_unknown_kids_are_rate_limited()
 {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    let (k1, jwk1) = rsa_key("k1");
    let (other, _) = rsa_key("k1");
    jwks(&server, &[&jwk1]).await;
    let deps = deps_with_idp(&db, &server);
    let ok = claims("ok@corp.example", &[]);
    assert_eq!(me(&deps, &token(&k1, "k1", ok.clone())).await.status, 200);

    let mut refused = Vec::new();
    for (field, value) in [
        ("iss", json!("https://evil.example.com")),
        ("aud", json!("someone-else")),
        ("exp", json!(ok["iat"].as_i64().unwrap() + 7200)),
        ("email_verified", json!(false)),
        ("email", json!(null)),
    ] {
        let mut c = ok.clone();
        c[field] = value;
        refused.push((field, me(&deps, &token(&k1, "k1", c)).await.status));
    }
    assert!(refused.iter().all(|(_, s)| *s == 401), "{refused:?}");
    // Signed by another key under a known kid.
    assert_eq!(
        me(&deps, &token(&other, "k1", ok.clone())).await.status,
        401
    );
    let idp = deps.api.external.as_ref().unwrap();
    assert_eq!(idp.fetches().await, 1);
    // Unknown kids: at most one refetch a minute, however many arrive.
    for _ in 0..5 {
        assert_eq!(
            me(&deps, &token(&k1, "made-up", ok.clone())).await.status,
            401
        );
    }
    assert_eq!(
        idp.fetches().await,
        1,
        "the first fetch was just now: no refetch"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // Only RS256/ES256 reach the provider's verifier; an HS256 token signed
    // with the provider's public modulus is ours and fails our checks.
    assert_eq!(
        count(&db.client().await, "select count(*) from users").await,
        1
    );
}
