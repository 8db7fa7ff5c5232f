//! A deal is never more visible than its contact (issue 10 §4), and the
//! lead routing rules are for admins.

use crm_domain::{
    Secret,
    auth::{Claims, JwtVerifier, Role, mint},
    phone::PhoneRegion,
};
use crm_platform::{api::ApiConfig, config::DatabaseConfig, db::build_pool};
use crm_read::{Deps, handle};
use crm_testkit::{TestDb, event, insert_user};
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
    let mut ev: Value = serde_json::from_str(&event("crm-read/pipelines.json")).unwrap();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["rawQueryString"] = json!(query);
    let params: serde_json::Map<String, Value> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), json!(v)))
        .collect();
    ev["queryStringParameters"] = Value::Object(params);
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

#[tokio::test]
async fn the_board_hides_deals_whose_contact_the_member_cannot_read() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let c: String = pg
        .query_one(
            "insert into contacts (full_name, email, company, owner_id) \
             values ('Ana''s Client', 'client@example.com', 'Client Co', 'ana') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Two deals on Ana's contact that Bo's deal rule alone would show him:
    // one unowned (an old webhook deal), one of his own in another pipeline.
    pg.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title, status) \
         select $1::text::uuid, p.id, s.id, null, 'Unowned deal', 'lost' from pipelines p \
         join pipeline_stages s on s.pipeline_id = p.id where p.is_default and s.name = 'Lost'",
        &[&c],
    )
    .await
    .unwrap();
    pg.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title) \
         select $1::text::uuid, p.id, s.id, 'bo', 'Bo''s deal' from pipelines p \
         join pipeline_stages s on s.pipeline_id = p.id where p.is_default and s.name = 'New'",
        &[&c],
    )
    .await
    .unwrap();

    let (status, board) = get(&deps, "/crm/deals", &token("bo", Role::Member)).await;
    assert_eq!(status, 200, "{board}");
    let text = board.to_string();
    assert!(!text.contains("client@example.com"), "{text}");
    assert!(!text.contains("Client Co"), "{text}");
    let counts: i64 = board["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counts, 0, "{board}");
    // Nor one column's page.
    let new_stage: String = pg
        .query_one(
            "select s.id::text from pipeline_stages s join pipelines p on p.id = s.pipeline_id \
             where p.is_default and s.name = 'New'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (status, page) = get(
        &deps,
        &format!("/crm/deals?stage_id={new_stage}"),
        &token("bo", Role::Member),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!page.to_string().contains("client@example.com"), "{page}");
    // The contact's detail: 404 for Bo, as before.
    let (status, _) = get(
        &deps,
        &format!("/crm/contacts/{c}"),
        &token("bo", Role::Member),
    )
    .await;
    assert_eq!(status, 404);

    // Ana sees the unowned deal on her contact (not Bo's); the admin both.
    for (who, n) in [
        (token("ana", Role::Member), 1),
        (token("boss", Role::Admin), 2),
    ] {
        let (_, board) = get(&deps, "/crm/deals", &who).await;
        let counts: i64 = board["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .sum();
        assert_eq!(counts, n, "{board}");
        assert!(board.to_string().contains("client@example.com"));
        let (status, detail) = get(&deps, &format!("/crm/contacts/{c}"), &who).await;
        assert_eq!(status, 200);
        // The detail lists deals by their own rule (Ana: own and unowned ones).
        assert!(!detail["deals"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn lead_routing_rules_are_read_by_admins_only() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await;
    pg.execute(
        "update lead_routing set mode = 'fixed', user_ids = $1 where source = 'calcom'",
        &[&vec![ana]],
    )
    .await
    .unwrap();
    let (status, body) = get(&deps, "/api/v1/lead-routing", &token("m", Role::Member)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = get(&deps, "/prod/api/v1/lead-routing", &token("a", Role::Admin)).await;
    assert_eq!(status, 200, "{body}");
    let rules = body["rules"].as_array().unwrap();
    let sources: Vec<&str> = rules
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["calcom", "instantly", "twilio"]);
    assert_eq!(rules[0]["mode"], "fixed");
    assert_eq!(rules[0]["user_ids"], json!([ana]));
    assert_eq!(rules[1]["mode"], "unowned");
    assert_eq!(rules[1]["user_ids"], json!([]));
}

#[tokio::test]
async fn the_lead_routing_sample_answers_the_rules() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let resp = handle(
        lambda_http::request::from_str(&event("crm-read/lead-routing.json")).unwrap(),
        &deps,
    )
    .await;
    assert_eq!(resp.status(), 200);
}
