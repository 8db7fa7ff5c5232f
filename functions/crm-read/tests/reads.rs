//! crm-read against a fresh PostgreSQL per test: the sample events, the
//! board, cursor pagination, search, contact detail and visibility rules.

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
use std::collections::HashSet;

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

/// GET `path` with `query` as `token`, from the pipelines sample event.
async fn get(deps: &Deps, path: &str, query: &[(&str, &str)], token: Option<&str>) -> (u16, Value) {
    let mut ev: Value = serde_json::from_str(&event("crm-read/pipelines.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    // lambda_http reads `rawQueryString` (as API Gateway sends it, URL-encoded).
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
    match token {
        Some(t) => ev["headers"]["authorization"] = json!(format!("Bearer {t}")),
        None => {
            ev["headers"]
                .as_object_mut()
                .unwrap()
                .remove("authorization");
        }
    }
    send(deps, &ev.to_string()).await
}

async fn send(deps: &Deps, ev: &str) -> (u16, Value) {
    let resp = handle(lambda_http::request::from_str(ev).unwrap(), deps).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

/// A contact owned by `owner`; returns its id.
async fn contact(
    pg: &tokio_postgres::Client,
    name: &str,
    email: &str,
    phone: Option<&str>,
    owner: Option<&str>,
) -> String {
    pg.query_one(
        "insert into contacts (full_name, email, phone, owner_id) values ($1, $2, $3, $4) returning id::text",
        &[&name, &email, &phone, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

/// An open deal (own contact each) in the default pipeline's `stage`,
/// created (and last updated) `minutes_ago`.
async fn deal(
    pg: &tokio_postgres::Client,
    n: usize,
    stage: &str,
    owner: Option<&str>,
    minutes_ago: i32,
) -> String {
    let c = contact(
        pg,
        &format!("Person {n}"),
        &format!("p{n}@example.com"),
        None,
        owner,
    )
    .await;
    pg.query_one(
        "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title, created_at, updated_at) \
         select $1::text::uuid, p.id, s.id, $3, 'Deal ' || $4::text, \
           now() - make_interval(mins => $5), now() - make_interval(mins => $5) \
         from pipelines p join pipeline_stages s on s.pipeline_id = p.id \
         where p.is_default and s.name = $2 returning id::text",
        &[&c, &stage, &owner, &n.to_string(), &minutes_ago],
    )
    .await
    .unwrap()
    .get(0)
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pipelines_come_with_their_stages_in_order() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = send(&deps, &event("crm-read/pipelines.json")).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["pipelines"][0];
    assert_eq!(
        (p["name"].as_str(), p["is_default"].as_bool()),
        (Some("Sales"), Some(true))
    );
    let names: Vec<&str> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "New",
            "Qualified",
            "Meeting Scheduled",
            "Proposal",
            "Won",
            "Lost"
        ]
    );
    let (status, body) = get(&deps, "/crm/pipelines", &[], None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_missing"))
    );
}

#[tokio::test]
async fn the_board_groups_visible_deals_by_stage_with_counts() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let mine = deal(&pg, 1, "New", Some("user-1"), 5).await;
    let pool = deal(&pg, 2, "New", None, 1).await;
    let theirs = deal(&pg, 3, "New", Some("user-2"), 3).await;
    let qualified = deal(&pg, 4, "Qualified", Some("user-1"), 2).await;

    // The sample event: user-1, a member, default pipeline.
    let (status, body) = send(&deps, &event("crm-read/deals-board.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pipeline"]["name"], "Sales");
    let stages = body["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6);
    assert_eq!(stages[0]["stage"]["name"], "New");
    assert_eq!(
        ids(&stages[0]["deals"]),
        [pool.clone(), mine.clone()],
        "newest first, theirs hidden"
    );
    assert_eq!(stages[0]["count"], 2);
    assert_eq!(stages[0]["next_cursor"], Value::Null);
    assert_eq!(ids(&stages[1]["deals"]), [qualified]);
    assert_eq!(stages[0]["deals"][0]["contact"]["full_name"], "Person 2");
    assert_eq!(stages[2]["deals"], json!([]));

    let boss = token("boss", Role::Admin);
    let (_, body) = get(&deps, "/crm/deals", &[], Some(&boss)).await;
    assert_eq!(ids(&body["stages"][0]["deals"]), [pool, theirs, mine]);
    assert_eq!(body["stages"][0]["count"], 3);
}

#[tokio::test]
async fn a_board_column_pages_through_in_three_pages_without_gaps_or_repeats() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let mut all = Vec::new();
    for n in 0..7 {
        all.push(deal(&pg, n, "New", None, 10).await);
    }
    // Equal timestamps: the id breaks the tie.
    pg.execute("update deals set created_at = '2026-11-23T10:00:00Z'", &[])
        .await
        .unwrap();
    let t = token("user-1", Role::Member);
    let (status, first) = get(&deps, "/crm/deals", &[("limit", "3")], Some(&t)).await;
    assert_eq!(status, 200, "{first}");
    let column = &first["stages"][0];
    let mut seen = ids(&column["deals"]);
    let mut cursor = column["next_cursor"].as_str().unwrap().to_string();
    let mut pages = 1;
    loop {
        let (status, page) = get(
            &deps,
            "/crm/deals",
            &[("limit", "3"), ("cursor", &cursor)],
            Some(&t),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["stages"].as_array().unwrap().len(), 1, "one column");
        let column = &page["stages"][0];
        assert_eq!(column["count"], 7);
        seen.extend(ids(&column["deals"]));
        pages += 1;
        match column["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7, "no repeats");
    all.sort();
    all.reverse();
    assert_eq!(seen, all, "id descending on equal timestamps");
}

/// Every deal of the first column, page by page (`limit` each), calling
/// `between` after each page; returns the ids in the order served.
async fn page_through<F, Fut>(deps: &Deps, token: &str, limit: &str, mut between: F) -> Vec<String>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (status, first) = get(deps, "/crm/deals", &[("limit", limit)], Some(token)).await;
    assert_eq!(status, 200, "{first}");
    let mut column = first["stages"][0].clone();
    let mut seen = Vec::new();
    loop {
        let page = ids(&column["deals"]);
        seen.extend(page.clone());
        between(page).await;
        let Some(cursor) = column["next_cursor"].as_str().map(str::to_string) else {
            return seen;
        };
        let (status, next) = get(
            deps,
            "/crm/deals",
            &[("limit", limit), ("cursor", &cursor)],
            Some(token),
        )
        .await;
        assert_eq!(status, 200, "{next}");
        column = next["stages"][0].clone();
    }
}

#[tokio::test]
async fn deals_touched_while_a_column_is_paged_are_neither_skipped_nor_repeated() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // Created (and updated) 60, 50, …, 10 minutes ago: newest first is the reverse.
    let mut all = Vec::new();
    for n in 0..6 {
        all.push(deal(&pg, n, "New", None, 60 - 10 * n as i32).await);
    }
    all.reverse();
    let t = token("user-1", Role::Member);
    // After each page, a webhook (Instantly, Cal.com) touches a deal not yet
    // served and one already served, as `updated_at = now()` does.
    let mut served_so_far = Vec::new();
    let seen = page_through(&deps, &t, "2", |page| {
        let served = page.first().cloned();
        let pending = all
            .iter()
            .find(|id| !page.contains(id) && !served_so_far.contains(*id))
            .cloned();
        let pg = &pg;
        served_so_far.extend(page);
        async move {
            for id in served.into_iter().chain(pending) {
                pg.execute(
                    "update deals set updated_at = now() where id = $1::text::uuid",
                    &[&id],
                )
                .await
                .unwrap();
            }
        }
    })
    .await;
    assert_eq!(seen, all, "each deal once, newest created first");
}

#[tokio::test]
async fn bad_board_queries_name_their_field() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = token("user-1", Role::Member);
    let unknown = "00000000-0000-0000-0000-000000000001";
    for (query, field) in [
        (vec![("cursor", "bm90LWEtY3Vyc29y")], "cursor"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "201")], "limit"),
        (vec![("pipeline_id", "x")], "pipeline_id"),
        (vec![("pipeline_id", unknown)], "pipeline_id"),
        (vec![("stage_id", unknown)], "stage_id"),
    ] {
        let (status, body) = get(&deps, "/crm/deals", &query, Some(&t)).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(field)),
            "{query:?}: {body}"
        );
    }
}

#[tokio::test]
async fn contact_search_matches_name_email_and_phone_case_insensitively() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ayse = contact(
        &pg,
        "Ayşe Yılmaz",
        "ayse@yilmazemlak.com.tr",
        Some("+905321234567"),
        Some("user-1"),
    )
    .await;
    let bob = contact(&pg, "Bob Stone", "bob@stone.io", Some("+16502530000"), None).await;
    let _hidden = contact(&pg, "Bob Hidden", "bob@hidden.io", None, Some("user-2")).await;

    let (status, body) = send(&deps, &event("crm-read/contacts-search.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["contacts"]), vec![ayse.clone()]);
    let t = token("user-1", Role::Member);
    for (q, expected) in [
        ("BOB", vec![bob.clone()]),
        ("stone.IO", vec![bob.clone()]),
        ("0532 123 45 67", vec![ayse.clone()]),
        ("650-253", vec![bob.clone()]),
        ("%", vec![]),
        ("", vec![bob.clone(), ayse.clone()]),
    ] {
        let (status, body) = get(&deps, "/crm/contacts", &[("q", q)], Some(&t)).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&body["contacts"]), expected, "q={q}");
    }
    let boss = token("boss", Role::Admin);
    let (_, body) = get(&deps, "/crm/contacts", &[("q", "bob")], Some(&boss)).await;
    assert_eq!(body["contacts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn contact_search_pages_through_in_three_pages() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let mut all = HashSet::new();
    for n in 0..8 {
        all.insert(
            contact(
                &pg,
                &format!("Lead {n}"),
                &format!("lead{n}@example.com"),
                None,
                None,
            )
            .await,
        );
    }
    let t = token("user-1", Role::Member);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("q", "lead"), ("limit", "3")];
        if let Some(c) = cursor.as_deref() {
            query.push(("cursor", c));
        }
        let (status, body) = get(&deps, "/crm/contacts", &query, Some(&t)).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(ids(&body["contacts"]));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), all);
    let (status, body) = get(&deps, "/crm/contacts", &[("cursor", "e30")], Some(&t)).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("cursor")));
}

#[tokio::test]
async fn contact_detail_has_deals_and_the_newest_hundred_activities() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let c = contact(&pg, "Ana", "ana@example.com", None, Some("user-1")).await;
    pg.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, title) \
         select $1::text::uuid, p.id, s.id, 'Flat' from pipelines p join pipeline_stages s \
         on s.pipeline_id = p.id where p.is_default and s.name = 'New'",
        &[&c],
    )
    .await
    .unwrap();
    pg.execute(
        "insert into activities (type, contact_id, body, occurred_at) \
         select 'note', $1::text::uuid, 'note ' || n, '2026-01-01'::timestamptz + make_interval(mins => n) \
         from generate_series(1, 105) n",
        &[&c],
    )
    .await
    .unwrap();
    pg.execute(
        "insert into opt_outs (contact_id, channel, source) values ($1::text::uuid, 'email', 'instantly')",
        &[&c],
    )
    .await
    .unwrap();

    let mut ev: Value = serde_json::from_str(&event("crm-read/contact-detail.json")).unwrap();
    let path = format!("/crm/contacts/{c}");
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    let (status, body) = send(&deps, &ev.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["contact"]["id"], c.as_str());
    assert_eq!(body["deals"][0]["title"], "Flat");
    assert_eq!(body["opt_outs"][0]["channel"], "email");
    let timeline = body["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 100);
    assert_eq!(timeline[0]["body"], "note 105");
    assert_eq!(timeline[99]["body"], "note 6");

    let other = token("user-2", Role::Member);
    let (status, body) = get(&deps, &path, &[], Some(&other)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let me = token("user-1", Role::Member);
    for missing in [
        "/crm/contacts/00000000-0000-0000-0000-0000000000aa",
        "/crm/contacts/nope",
    ] {
        assert_eq!(get(&deps, missing, &[], Some(&me)).await.0, 404);
    }
}
