//! GET /crm/contacts/{id}/c2s (the C2S leads the link rule ties to a
//! contact) and GET /crm/pipelines/{id}, against a fresh PostgreSQL.

use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_read::{Deps, handle};
use crm_testkit::{TestDb, event};
use lambda_http::Body;
use serde_json::{Value, json};

const SECRET: &str = "test-jwt-secret";

fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap(),
        api: ApiConfig {
            jwt: JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            phone_region: PhoneRegion::default(),
        },
    }
}

fn token(sub: &str, role: Role) -> String {
    let claims = Claims {
        sub: sub.into(),
        role,
        caps: vec![],
        exp: 4_102_444_800,
        iat: None,
    };
    mint(&Secret::new(SECRET).unwrap(), &claims)
}

async fn get(deps: &Deps, path: &str, token: &str) -> (u16, Value) {
    let mut ev: Value = serde_json::from_str(&event("crm-read/contact-c2s.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["headers"]["authorization"] = json!(format!("Bearer {token}"));
    let resp = handle(
        lambda_http::request::from_str(&ev.to_string()).unwrap(),
        deps,
    )
    .await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

/// A C2S lead as the webhook stores it (hash and action only what the checks need).
async fn lead(
    pg: &tokio_postgres::Client,
    id: &str,
    email: Option<&str>,
    phones: [Option<&str>; 3],
    minutes_ago: i32,
) {
    pg.execute(
        "insert into c2s_leads (id, customer_name, customer_email, customer_phone, customer_phone2, \
                                customer_phone_global, last_hook_action, contact_hash, created_at) \
         values ($1, 'Cliente', $2, $3, $4, $5, 'on_create_lead', repeat('c', 64), now() - make_interval(mins => $6))",
        &[&id, &email, &phones[0], &phones[1], &phones[2], &minutes_ago],
    )
    .await
    .unwrap();
}

async fn contact(
    pg: &tokio_postgres::Client,
    email: Option<&str>,
    phone: Option<&str>,
    owner: Option<&str>,
) -> String {
    pg.query_one(
        "insert into contacts (full_name, email, phone, owner_id) values ('C', $1, $2, $3) returning id::text",
        &[&email, &phone, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_contact_shows_the_leads_the_rule_links_to_it_and_no_others() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let ana = contact(
        &pg,
        Some("ana@example.com.br"),
        Some("+5511987654321"),
        Some("user-1"),
    )
    .await;
    // Linked by e-mail; by the second phone (national digits, read in Brazil);
    // by the old WhatsApp spelling without the 9th digit.
    lead(
        &pg,
        "by-mail",
        Some("ana@example.com.br"),
        [None, None, None],
        30,
    )
    .await;
    lead(
        &pg,
        "by-phone2",
        None,
        [Some("not a phone"), Some("(11) 98765-4321"), None],
        20,
    )
    .await;
    lead(
        &pg,
        "by-variant",
        None,
        [Some("+55 11 8765-4321"), None, None],
        10,
    )
    .await;
    // Shares no datum with the contact.
    lead(
        &pg,
        "stranger",
        Some("x@example.com.br"),
        [Some("(11) 91111-2222"), None, None],
        5,
    )
    .await;
    // The lead's e-mail names another contact: the e-mail wins over the phone.
    contact(&pg, Some("bruno@example.com.br"), None, None).await;
    lead(
        &pg,
        "bruno",
        Some("bruno@example.com.br"),
        [Some("(11) 98765-4321"), None, None],
        1,
    )
    .await;

    let (s, body) = get(
        &d,
        &format!("/crm/contacts/{ana}/c2s"),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["contact_id"], ana.as_str());
    let got: Vec<(String, String)> = body["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["lead_id"].as_str().unwrap().into(),
                l["matched_by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("by-variant".to_string(), "phone".to_string()),
            ("by-phone2".into(), "phone".into()),
            ("by-mail".into(), "email".into()),
        ]
    );
    let first = &body["leads"][0];
    assert_eq!(first["status"], Value::Null);
    assert_eq!(first["note"]["posted"], false);
    assert_eq!(first["parties"], json!([]));

    // Another member does not see the contact, nor its leads.
    let (s, _) = get(
        &d,
        &format!("/crm/contacts/{ana}/c2s"),
        &token("user-2", Role::Member),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = get(
        &d,
        &format!("/crm/contacts/{ana}/c2s"),
        &token("boss", Role::Admin),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = get(
        &d,
        "/crm/contacts/not-a-uuid/c2s",
        &token("boss", Role::Admin),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn one_pipeline_reads_with_deal_counts_per_stage() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let c = contact(&pg, Some("d@example.com"), None, None).await;
    pg.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, title) \
         select $1::text::uuid, p.id, s.id, 'D' from pipelines p join pipeline_stages s on s.pipeline_id = p.id \
         where p.is_default and s.name = 'Proposal'",
        &[&c],
    )
    .await
    .unwrap();
    let id: String = pg
        .query_one("select id::text from pipelines where is_default", &[])
        .await
        .unwrap()
        .get(0);
    let (s, p) = get(
        &d,
        &format!("/crm/pipelines/{id}"),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["is_default"], true);
    let counts: Vec<(String, i64)> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["deals"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts[3], ("Proposal".to_string(), 1));
    assert_eq!(counts.iter().map(|c| c.1).sum::<i64>(), 1);
    let (s, _) = get(
        &d,
        &format!("/crm/pipelines/{}", uuid_nil()),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!(s, 404);
}

fn uuid_nil() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}
