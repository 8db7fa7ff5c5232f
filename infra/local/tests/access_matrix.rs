//! Issue 10 §4: one table over every read route that returns contact data
//! (crm-read, messages-read, crm-campaigns) × {admin, owner, other member}
//! × {a contact Ana owns, an unowned contact}: which contact fields come
//! back. Members read their own contacts and unowned ones; admins all. A
//! contact a caller may not read leaves no trace in the answer — not its
//! id, name, e-mail or phone — and its detail routes answer 404.
//!
//! Runs through the local runner's router, so every function is reached at
//! its API Gateway path with its own `Deps`, as `make run` serves them.

use crm_domain::{
    Secret,
    auth::{Claims, Role, mint},
};
use crm_platform::config::{CommonConfig, Env};
use crm_testkit::{TestDb, insert_user};
use local_runner::routes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-jwt-secret";

fn token(sub: &str, role: Role) -> String {
    mint(
        &Secret::new(SECRET).unwrap(),
        &Claims {
            sub: sub.into(),
            role,
            caps: vec!["can_use_crm".into(), "campaigns:send".into()],
            exp: 4_102_444_800,
            iat: None,
        },
    )
}

/// One HTTP/1.1 request to the runner; the status and the JSON body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// What identifies a contact in an answer.
struct Person {
    id: String,
    name: &'static str,
    email: &'static str,
    phone: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Id,
    Name,
    Email,
    Phone,
}

impl Person {
    fn value(&self, f: Field) -> &str {
        match f {
            Field::Id => &self.id,
            Field::Name => self.name,
            Field::Email => self.email,
            Field::Phone => self.phone,
        }
    }
}

async fn seed_person(
    pg: &tokio_postgres::Client,
    name: &'static str,
    email: &'static str,
    phone: &'static str,
    owner: Option<&str>,
) -> Person {
    let id: String = pg
        .query_one(
            "insert into contacts (full_name, first_name, email, phone, owner_id, source) \
             values ($1, $1, $2, $3, $4, 'api') returning id::text",
            &[&name, &email, &phone, &owner],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title, source) \
         select $1::text::uuid, p.id, s.id, $2, 'Deal', 'api' from pipelines p \
         join pipeline_stages s on s.pipeline_id = p.id where p.is_default and s.position = 0",
        &[&id, &owner],
    )
    .await
    .unwrap();
    pg.execute(
        "insert into messages (direction, channel, contact_id, body, provider_sid, status, profile_name) \
         values ('in', 'whatsapp', $1::text::uuid, 'hello', $2, 'received', $3)",
        &[&id, &format!("SM{}", uuid::Uuid::new_v4().simple()), &name],
    )
    .await
    .unwrap();
    Person {
        id,
        name,
        email,
        phone,
    }
}

#[tokio::test]
async fn every_read_route_shows_a_contact_only_to_those_who_may_read_it() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let bo = insert_user(&pg, "Bo", "member").await.to_string();
    let boss = insert_user(&pg, "Boss", "admin").await.to_string();
    let owned = seed_person(
        &pg,
        "Olga Owned",
        "olga@example.com",
        "+905321110001",
        Some(&ana),
    )
    .await;
    let pool = seed_person(
        &pg,
        "Petra Pool",
        "petra@example.com",
        "+905321110002",
        None,
    )
    .await;
    pg.execute("update channels set enabled = true where name = 'sms'", &[])
        .await
        .unwrap();

    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("APP_ENV", "test"),
        ("DEV_SIGNATURE_BYPASS", "true"),
        ("JWT_SECRET", SECRET),
    ]);
    let common = CommonConfig::from_env(&env).unwrap();
    let app = routes::router(routes::build(&common, &env).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let admin = token(&boss, Role::Admin);
    // A segment over everyone and an SMS campaign that greets by name.
    let (s, seg) = request(
        addr,
        "POST",
        "/api/v1/crm/segments",
        &admin,
        Some(json!({"name": "everyone", "filter": {}})),
    )
    .await;
    assert_eq!(s, 201, "{seg}");
    let (s, tpl) = request(
        addr,
        "POST",
        "/api/v1/crm/templates",
        &admin,
        Some(json!({"name": "hi", "channel": "sms", "content": "Hi {{contact.first_name}}"})),
    )
    .await;
    assert_eq!(s, 201, "{tpl}");
    let (s, camp) = request(
        addr,
        "POST",
        "/api/v1/crm/campaigns",
        &admin,
        Some(json!({"name": "Spring", "channel": "sms", "segment_id": seg["id"], "template_id": tpl["id"]})),
    )
    .await;
    assert_eq!(s, 201, "{camp}");
    let seg_id = seg["id"].as_str().unwrap().to_string();
    let camp_id = camp["id"].as_str().unwrap().to_string();

    use Field::*;
    // (method, path with {id} for the contact, the fields a reader sees, whether a
    // non-reader gets 404 rather than a list without the contact).
    let routes: Vec<(&str, String, Vec<Field>, bool)> = vec![
        ("GET", "/crm/deals".into(), vec![Id, Name, Email], false),
        (
            "GET",
            "/crm/contacts".into(),
            vec![Id, Name, Email, Phone],
            false,
        ),
        (
            "GET",
            "/crm/contacts?q={name}".into(),
            vec![Id, Name, Email, Phone],
            false,
        ),
        (
            "GET",
            "/crm/contacts/{id}".into(),
            vec![Id, Name, Email, Phone],
            true,
        ),
        (
            "GET",
            "/api/contacts/{id}/messages".into(),
            vec![Id, Name],
            true,
        ),
        ("GET", "/api/messages/events".into(), vec![Id], false),
        (
            "GET",
            format!("/api/v1/crm/segments/{seg_id}/preview"),
            vec![Id, Name],
            false,
        ),
        (
            "POST",
            format!("/api/v1/crm/campaigns/{camp_id}/send?dry_run=true"),
            vec![Id, Name],
            false,
        ),
    ];
    let viewers = [
        ("admin", token(&boss, Role::Admin), true),
        ("owner", token(&ana, Role::Member), false),
        ("other member", token(&bo, Role::Member), false),
    ];
    let mut checked = 0;
    for (method, pattern, fields, detail) in &routes {
        for (viewer, tok, is_admin) in &viewers {
            for (record, person, owner) in [("owned", &owned, Some(&ana)), ("unowned", &pool, None)]
            {
                let may_read =
                    *is_admin || owner.is_none() || (*viewer == "owner" && owner == Some(&ana));
                let path = pattern
                    .replace("{id}", &person.id)
                    .replace("{name}", &person.name.replace(' ', "%20"));
                let (mut status, mut body) = request(addr, method, &path, tok, None).await;
                // The feed answers only events settled before every running
                // transaction (cluster-wide): give other sessions' a moment.
                for _ in 0..100 {
                    if !(may_read && path == "/api/messages/events")
                        || body.to_string().contains(&person.id)
                    {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    (status, body) = request(addr, method, &path, tok, None).await;
                }
                let text = body.to_string();
                let case =
                    format!("{method} {path} as {viewer}, {record} contact: {status} {text}");
                if may_read {
                    assert_eq!(status, 200, "{case}");
                    for f in fields {
                        assert!(text.contains(person.value(*f)), "{f:?} missing: {case}");
                    }
                } else {
                    assert_eq!(status, if *detail { 404 } else { 200 }, "{case}");
                    for f in [Id, Name, Email, Phone] {
                        assert!(!text.contains(person.value(f)), "{f:?} leaked: {case}");
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, routes.len() * 6);
}
