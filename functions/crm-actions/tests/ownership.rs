//! Owners are users (issue 10 §3): assign, claim, the claim a board drag
//! makes, and the 422 for an owner that is not an active user.

mod common;

use common::*;
use crm_testkit::{TestDb, insert_user};
use serde_json::{Value, json};

/// Rows inserted straight into the database (no API), owned by `owner`.
async fn raw_contact(pg: &tokio_postgres::Client, name: &str, owner: Option<&str>) -> String {
    pg.query_one(
        "insert into contacts (full_name, owner_id, source) values ($1, $2, 'twilio') returning id::text",
        &[&name, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

async fn raw_deal(
    pg: &tokio_postgres::Client,
    contact: &str,
    stage: &str,
    owner: Option<&str>,
    status: &str,
) -> String {
    // A second pipeline per extra deal would be needed for two open ones;
    // closed deals may repeat.
    pg.query_one(
        "insert into deals (contact_id, pipeline_id, stage_id, owner_id, title, status, source) \
         select $1::text::uuid, s.pipeline_id, s.id, $3, 'Deal', $4, 'api' from pipeline_stages s \
         join pipelines p on p.id = s.pipeline_id where p.is_default and s.name = $2 returning id::text",
        &[&contact, &stage, &owner, &status],
    )
    .await
    .unwrap()
    .get(0)
}

async fn owner_of(pg: &tokio_postgres::Client, table: &str, id: &str) -> Option<String> {
    pg.query_one(
        &format!("select owner_id from {table} where id = $1::text::uuid"),
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

async fn outbox_events(pg: &tokio_postgres::Client, event_type: &str) -> Vec<Value> {
    pg.query(
        "select body -> 'payload' from outbox where body ->> 'event_type' = $1 order by created_at",
        &[&event_type],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn an_owner_that_is_not_an_active_user_is_422_on_every_write() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let boss = admin("boss");
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let gone = insert_user(&pg, "Gone", "member").await.to_string();
    pg.execute(
        "update users set active = false where id = $1::text::uuid",
        &[&gone],
    )
    .await
    .unwrap();
    for owner in [
        "free-text-owner",
        gone.as_str(),
        "00000000-0000-0000-0000-000000000001",
    ] {
        let a = call(
            &deps,
            Call::post(
                "/crm/actions/contacts",
                json!({"full_name": "X", "owner_id": owner}),
                &boss,
            ),
        )
        .await;
        assert_eq!(
            (a.status, a.body["field"].as_str()),
            (422, Some("owner_id")),
            "{owner}: {}",
            a.body
        );
    }
    assert_eq!(count(&pg, "select count(*) from contacts").await, 0);
    let c = contact(&deps, &boss, json!({"full_name": "Y", "owner_id": ana})).await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"contact_id": c, "title": "T", "owner_id": "someone"}),
            &boss,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id"))
    );
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"id": c, "owner_id": gone}),
            &boss,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id"))
    );
    assert_eq!(
        owner_of(&pg, "contacts", &c).await.as_deref(),
        Some(ana.as_str())
    );
    assert_eq!(count(&pg, "select count(*) from deals").await, 0);

    // A free-text owner written before accounts keeps working for its token.
    let legacy = raw_contact(&pg, "Legacy", Some("crm-user-7")).await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"id": legacy, "company": "Acme"}),
            &member("crm-user-7"),
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["owner_id"].as_str()),
        (200, Some("crm-user-7"))
    );
}

#[tokio::test]
async fn an_admin_assigns_a_contact_and_its_open_deals_follow_with_timeline_and_event() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let boss_id = insert_user(&pg, "Boss Admin", "admin").await.to_string();
    let boss = admin(&boss_id);
    let bo = insert_user(&pg, "Bo Member", "member").await.to_string();
    let c = raw_contact(&pg, "Lead", Some("legacy-owner")).await;
    let open = raw_deal(&pg, &c, "New", Some("legacy-owner"), "open").await;
    let won = raw_deal(&pg, &c, "Won", Some("legacy-owner"), "won").await;

    let path = format!("/crm/actions/contacts/{c}/assign");
    // Members do not assign (403, before anything else); the body is checked (422).
    let a = call(
        &deps,
        Call::post(&path, json!({"owner_id": bo}), &member(&bo)),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    let a = call(&deps, Call::post(&path, json!({}), &boss)).await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id"))
    );
    let a = call(
        &deps,
        Call::post(&path, json!({"owner_id": "nobody"}), &boss),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id"))
    );
    let missing = "/crm/actions/contacts/00000000-0000-0000-0000-0000000000aa/assign";
    let a = call(&deps, Call::post(missing, json!({"owner_id": bo}), &boss)).await;
    assert_eq!(a.status, 404);
    assert!(outbox_events(&pg, "contact.assigned").await.is_empty());

    let a = call(
        &deps,
        Call::post(&path, json!({"owner_id": bo}), &boss).key("assign-1"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["contact"]["owner_id"], bo.as_str());
    assert_eq!(a.body["assignment"]["from_owner_id"], "legacy-owner");
    assert_eq!(a.body["assignment"]["to_owner_id"], bo.as_str());
    assert_eq!(a.body["assignment"]["deal_ids"], json!([open]));
    assert_eq!(a.body["assignment"]["changed"], true);
    assert_eq!(
        owner_of(&pg, "deals", &open).await.as_deref(),
        Some(bo.as_str())
    );
    // A closed deal keeps its owner: only open deals follow.
    assert_eq!(
        owner_of(&pg, "deals", &won).await.as_deref(),
        Some("legacy-owner")
    );
    let row = pg
        .query_one(
            "select body, metadata, actor from activities where contact_id = $1::text::uuid \
             and metadata ->> 'event' = 'contact_assigned'",
            &[&c],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "Boss Admin assigned this contact to Bo Member"
    );
    let meta: Value = row.get(1);
    assert_eq!(
        meta,
        json!({"event": "contact_assigned", "via": "assign", "by": format!("user:{boss_id}"),
               "from_owner_id": "legacy-owner", "to_owner_id": bo, "deal_ids": [open]})
    );
    assert_eq!(row.get::<_, String>(2), format!("user:{boss_id}"));
    let events = outbox_events(&pg, "contact.assigned").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["contact_id"], c.as_str());
    assert_eq!(events[0]["to_owner_id"], bo.as_str());
    assert_eq!(events[0]["via"], "assign");

    // The same key replays; the same owner again changes nothing.
    let again = call(
        &deps,
        Call::post(&path, json!({"owner_id": bo}), &boss).key("assign-1"),
    )
    .await;
    assert!(again.replayed());
    let a = call(&deps, Call::post(&path, json!({"owner_id": bo}), &boss)).await;
    assert_eq!(
        (a.status, a.body["assignment"]["changed"].clone()),
        (200, json!(false))
    );
    assert_eq!(outbox_events(&pg, "contact.assigned").await.len(), 1);

    // null leaves it (and its open deals) unowned.
    let a = call(&deps, Call::post(&path, json!({"owner_id": null}), &boss)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(owner_of(&pg, "contacts", &c).await, None);
    assert_eq!(owner_of(&pg, "deals", &open).await, None);
}

#[tokio::test]
async fn a_member_claims_an_unowned_contact_and_nobody_else_can_take_it() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let bo = insert_user(&pg, "Bo", "member").await.to_string();
    let c = raw_contact(&pg, "Webhook lead", None).await;
    let d = raw_deal(&pg, &c, "New", None, "open").await;
    let path = format!("/crm/actions/contacts/{c}/claim");

    // No body at all is fine (curl -X POST).
    let a = call(
        &deps,
        Call::post(&path, json!({}), &member(&ana))
            .raw_body("")
            .with_header("content-type", None),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["contact"]["owner_id"], ana.as_str());
    assert_eq!(a.body["assignment"]["deal_ids"], json!([d]));
    assert_eq!(
        owner_of(&pg, "deals", &d).await.as_deref(),
        Some(ana.as_str())
    );
    let body: String = pg
        .query_one(
            "select body from activities where metadata ->> 'via' = 'claim'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, "Ana claimed this contact");

    // Someone else's: 409, naming nobody.
    let a = call(&deps, Call::post(&path, json!({}), &member(&bo))).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (409, Some("already_owned"))
    );
    assert!(!a.body.to_string().contains(&ana), "{}", a.body);
    assert_eq!(
        owner_of(&pg, "contacts", &c).await.as_deref(),
        Some(ana.as_str())
    );
    // Claiming one's own again: 200, nothing changed.
    let a = call(&deps, Call::post(&path, json!({}), &member(&ana))).await;
    assert_eq!(
        (a.status, a.body["assignment"]["changed"].clone()),
        (200, json!(false))
    );
    // A caller that is not an active user cannot own anything.
    let other = raw_contact(&pg, "Other lead", None).await;
    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/contacts/{other}/claim"),
            json!({}),
            &member("not-a-user"),
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id"))
    );
    assert_eq!(owner_of(&pg, "contacts", &other).await, None);
    // Unknown fields are refused.
    let a = call(
        &deps,
        Call::post(&path, json!({"owner_id": bo}), &member(&bo)),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id"))
    );
}

#[tokio::test]
async fn dragging_an_unowned_deal_claims_its_contact_and_open_deals_in_the_move() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let bo = insert_user(&pg, "Bo", "member").await.to_string();
    let c = raw_contact(&pg, "Lead", None).await;
    let d = raw_deal(&pg, &c, "New", None, "open").await;
    let qualified = stage_id(&pg, "Qualified").await;

    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/deals/{d}/stage"),
            json!({"stage_id": qualified}),
            &member(&ana),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["stage_id"], qualified.as_str());
    assert_eq!(a.body["owner_id"], ana.as_str());
    assert_eq!(a.body["claimed"]["to_owner_id"], ana.as_str());
    assert_eq!(a.body["claimed"]["from_owner_id"], Value::Null);
    assert_eq!(
        owner_of(&pg, "contacts", &c).await.as_deref(),
        Some(ana.as_str())
    );
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where metadata ->> 'via' = 'board_move'"
        )
        .await,
        1
    );
    assert_eq!(outbox_events(&pg, "contact.assigned").await.len(), 1);
    assert_eq!(outbox_events(&pg, "deal.stage_changed").await.len(), 1);

    // Bo moving Ana's deal: 404, as before; nothing changes.
    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/deals/{d}/stage"),
            json!({"stage_id": stage_id(&pg, "New").await}),
            &member(&bo),
        ),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    // An unowned deal on a contact Ana owns: Bo cannot claim it either (404).
    let d2 = pg
        .query_one(
            "insert into deals (contact_id, pipeline_id, stage_id, title, status, source) \
             select $1::text::uuid, pipeline_id, stage_id, 'Old', 'lost', 'api' from deals \
             where id = $2::text::uuid returning id::text",
            &[&c, &d],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    pg.execute(
        "update deals set owner_id = null where id = $1::text::uuid",
        &[&d2],
    )
    .await
    .unwrap();
    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/deals/{d2}/stage"),
            json!({"stage_id": qualified}),
            &member(&bo),
        ),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(owner_of(&pg, "deals", &d2).await, None);
    assert_eq!(
        owner_of(&pg, "contacts", &c).await.as_deref(),
        Some(ana.as_str())
    );
}

#[tokio::test]
async fn a_member_cannot_change_their_deal_on_a_contact_they_cannot_read() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let c = raw_contact(&pg, "Bo's contact", Some("bo")).await;
    let d = raw_deal(&pg, &c, "New", Some(&ana), "open").await;
    // Today the deal's owner alone decided: the answer carried Bo's contact card.
    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/deals/{d}/stage"),
            json!({"stage_id": stage_id(&pg, "Qualified").await}),
            &member(&ana),
        ),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"id": d, "title": "Mine"}),
            &member(&ana),
        ),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(!a.body.to_string().contains("Bo's contact"));
}

#[tokio::test]
async fn a_duplicate_email_or_phone_409_names_no_other_contact() {
    // Holds on today's code too (the constraint name maps to a fixed
    // message); kept as a guard now that owners are real people.
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let hidden: String = pg
        .query_one(
            "insert into contacts (full_name, email, phone, owner_id) \
             values ('Hidden Person', 'hidden@example.com', '+905321234567', 'bo') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for body in [
        json!({"email": "HIDDEN@example.com"}),
        json!({"phone": "0532 123 4567"}),
    ] {
        let a = call(
            &deps,
            Call::post("/crm/actions/contacts", body.clone(), &member("ana")),
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (409, Some("conflict")),
            "{body}"
        );
        let text = a.body.to_string();
        for secret in [hidden.as_str(), "Hidden Person", "bo"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            a.body.as_object().unwrap().len(),
            3,
            "error, code, field: {text}"
        );
    }
}

#[tokio::test]
async fn the_assign_claim_and_routing_samples_work_once_their_ids_are_real() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let c = raw_contact(&pg, "Lead", None).await;
    let real = |s: &str| s.replace("00000000-0000-0000-0000-000000000000", &c);
    let raw = real(&crm_testkit::event("crm-actions/assign-contact.json")).replace(
        &format!("{{\\\"owner_id\\\":\\\"{c}\\\"}}"),
        &format!("{{\\\"owner_id\\\":\\\"{ana}\\\"}}"),
    );
    let a = send(&deps, request(&raw)).await;
    assert_eq!(
        (a.status, a.body["contact"]["owner_id"].as_str()),
        (200, Some(ana.as_str())),
        "{}",
        a.body
    );
    // The claim sample's caller (user-1) is not a user of this database: 422, nothing changes.
    let a = send(
        &deps,
        request(&real(&crm_testkit::event("crm-actions/claim-contact.json"))),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("owner_id")),
        "{}",
        a.body
    );
    let raw = crm_testkit::event("crm-actions/set-lead-routing.json")
        .replace("00000000-0000-0000-0000-000000000000", &ana);
    let a = send(&deps, request(&raw)).await;
    assert_eq!(
        (a.status, a.body["mode"].as_str()),
        (200, Some("round_robin")),
        "{}",
        a.body
    );
}
