//! GET /crm/contacts/{id}/timeline against a fresh PostgreSQL: pages that
//! neither repeat nor skip, the type filter, and the contact page's access
//! rules (member A cannot read member B's contact's timeline, nor the
//! activities of a deal they may not see).

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
        api: ApiConfig::local(
            JwtVerifier::new(&Secret::new(SECRET).unwrap()),
            PhoneRegion::default(),
        ),
    }
}

fn token(sub: &str, role: Role) -> String {
    let claims = Claims::issued_now(sub, role, vec![]);
    mint(&Secret::new(SECRET).unwrap(), &claims)
}

async fn timeline(d: &Deps, contact: &str, query: &[(&str, &str)], tok: &str) -> (u16, Value) {
    let path = format!("/crm/contacts/{contact}/timeline");
    let mut ev: Value = serde_json::from_str(&event("crm-read/contact-timeline.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
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
    ev["headers"]["authorization"] = json!(format!("Bearer {tok}"));
    let resp = handle(lambda_http::request::from_str(&ev.to_string()).unwrap(), d).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

async fn contact(pg: &tokio_postgres::Client, owner: Option<&str>) -> String {
    pg.query_one(
        "insert into contacts (full_name, owner_id) values ('Ana', $1) returning id::text",
        &[&owner],
    )
    .await
    .unwrap()
    .get(0)
}

async fn deal(pg: &tokio_postgres::Client, contact: &str, owner: Option<&str>) -> String {
    pg.query_one(
        "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title) \
         select $1::text::uuid, p.id, s.id, $2, 'Deal' from pipelines p \
         join pipeline_stages s on s.pipeline_id = p.id where p.is_default \
         order by s.position limit 1 returning id::text",
        &[&contact, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

async fn activity(
    pg: &tokio_postgres::Client,
    contact: &str,
    kind: &str,
    deal: Option<&str>,
    seconds_ago: f64,
) -> String {
    pg.query_one(
        "insert into activities (type, contact_id, deal_id, body, occurred_at) \
         values ($1, $2::text::uuid, $3::text::uuid, 'x', now() - make_interval(secs => $4)) returning id::text",
        &[&kind, &contact, &deal, &seconds_ago],
    )
    .await
    .unwrap()
    .get(0)
}

fn ids(page: &Value) -> Vec<String> {
    page["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_timeline_pages_newest_first_without_repeats_or_gaps() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let admin = token("admin-1", Role::Admin);
    let c = contact(&pg, None).await;
    let kinds = [
        "note",
        "message_in",
        "message_out",
        "stage_change",
        "meeting",
        "email_in",
        "system",
    ];
    let mut expected = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        // Two share one occurred_at: the id breaks the tie.
        let ago = if i == 4 { 300.0 } else { 100.0 * i as f64 };
        expected.push((ago, activity(&pg, &c, kind, None, ago).await));
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = timeline(&d, &c, &[("limit", "3"), ("cursor", &cursor)], &admin).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["contact_id"], c.as_str());
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (7, 7), "{seen:?}");
    let times: Vec<f64> = seen
        .iter()
        .map(|id| expected.iter().find(|(_, a)| a == id).unwrap().0)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The type filter, and its refusal by name.
    let (_, page) = timeline(&d, &c, &[("type", "note,meeting")], &admin).await;
    let types: Vec<&str> = page["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["note", "meeting"]);
    for (name, value) in [("type", "bogus"), ("cursor", "zzz"), ("limit", "500")] {
        let (status, body) = timeline(&d, &c, &[(name, value)], &admin).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(name)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_member_reads_only_timelines_they_may_read() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let d = deps(&db);
    let (a, b) = (token("user-a", Role::Member), token("user-b", Role::Member));
    let mine = contact(&pg, Some("user-a")).await;
    let theirs = contact(&pg, Some("user-b")).await;
    activity(&pg, &theirs, "note", None, 10.0).await;

    let (status, body) = timeline(&d, &theirs, &[], &a).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = timeline(&d, &theirs, &[], &b).await;
    assert_eq!((status, ids(&body).len()), (200, 1));
    let (status, _) = timeline(&d, &uuid::Uuid::new_v4().to_string(), &[], &a).await;
    assert_eq!(status, 404);

    // An unowned contact with a deal of B's: A reads the contact, not B's deal's activities.
    let shared = contact(&pg, None).await;
    let bs_deal = deal(&pg, &shared, Some("user-b")).await;
    let open = activity(&pg, &shared, "message_in", None, 20.0).await;
    let hidden = activity(&pg, &shared, "stage_change", Some(&bs_deal), 10.0).await;
    let (status, body) = timeline(&d, &shared, &[], &a).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body), [open.as_str()]);
    let (_, body) = timeline(&d, &shared, &[], &b).await;
    assert_eq!(ids(&body), [hidden, open]);
    let (status, body) = timeline(&d, &mine, &[], &a).await;
    assert_eq!((status, ids(&body).len()), (200, 0));
}
