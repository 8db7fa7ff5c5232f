//! crm-actions against a fresh PostgreSQL per test: authentication, the
//! request checks, contacts, deals and stage moves, owner rules.

mod common;

use common::*;
use crm_testkit::{TestDb, event};
use serde_json::{Value, json};

#[tokio::test]
async fn sample_event_creates_a_contact_owned_by_the_caller() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let a = send(&deps, request(&event("crm-actions/create-contact.json"))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["email"], "ayse.yilmaz@example.com.tr");
    assert_eq!(a.body["phone"], "+905321234567");
    assert_eq!(a.body["full_name"], "Ayşe Yılmaz");
    assert_eq!(a.body["owner_id"], "user-1");
    assert_eq!(a.body["source"], "api");
    let pg = db.client().await;
    let row = pg
        .query_one(
            "select type, actor, metadata, contact_id::text from activities",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "system");
    assert_eq!(row.get::<_, String>(1), "user:user-1");
    assert_eq!(row.get::<_, Value>(2), json!({"event": "contact_created"}));
    assert_eq!(row.get::<_, String>(3), a.id());
}

#[tokio::test]
async fn auth_failures_answer_401_and_write_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let a = send(&deps, request(&event("crm-actions/expired-token.json"))).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (401, Some("token_expired"))
    );
    assert_eq!(
        a.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );

    let body = json!({"full_name": "Nobody"});
    let missing = Call::post("/crm/actions/contacts", body.clone(), "x").token(None);
    let a = call(&deps, missing).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (401, Some("token_missing"))
    );
    assert_eq!(a.headers["www-authenticate"], "Bearer");

    let other_secret = crm_domain::auth::mint(
        &crm_domain::Secret::new("not-the-secret").unwrap(),
        &crm_domain::auth::Claims {
            sub: "user-1".into(),
            role: crm_domain::auth::Role::Admin,
            caps: vec![],
            exp: FAR_FUTURE,
            iat: None,
        },
    );
    let basic = Call::post("/crm/actions/contacts", body.clone(), "x")
        .with_header("authorization", Some("Basic dXNlcjpwYXNz"));
    let a = call(&deps, basic).await;
    assert_eq!(a.body["code"], "token_missing");
    for bad in [other_secret.as_str(), "garbage", "a.b.c"] {
        let a = call(
            &deps,
            Call::post("/crm/actions/contacts", body.clone(), bad),
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (401, Some("token_invalid"))
        );
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from contacts").await, 0);
}

#[tokio::test]
async fn request_checks_answer_413_415_400_and_422_in_order() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let big = format!(
        "{{\"full_name\":\"{}\"}}",
        "x".repeat(crm_domain::crm::input::MAX_BODY_BYTES)
    );
    // Too large is refused before the token is even looked at.
    let a = call(
        &deps,
        Call::post("/crm/actions/contacts", json!({}), &t)
            .raw_body(&big)
            .token(None),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let a = call(
        &deps,
        Call::post("/crm/actions/contacts", json!({"full_name": "A"}), &t)
            .with_header("content-type", Some("text/plain")),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let a = call(
        &deps,
        Call::post("/crm/actions/contacts", json!({}), &t).raw_body("{\"full_name\":"),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let a = call(&deps, Call::post("/crm/actions/contacts", json!([1]), &t)).await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("body")));
    // Unknown path, wrong method.
    let a = call(&deps, Call::post("/crm/actions/nope", json!({}), &t)).await;
    assert_eq!(a.status, 404);
    let a = call(
        &deps,
        Call::post("/crm/actions/contacts", json!({}), &t).method("GET"),
    )
    .await;
    assert_eq!(a.status, 405);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let contact_id = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let cases = [
        (
            "/crm/actions/contacts",
            json!({"email": "not-an-email"}),
            "email",
        ),
        (
            "/crm/actions/contacts",
            json!({"phone": "+90 123"}),
            "phone",
        ),
        (
            "/crm/actions/contacts",
            json!({"full_name": "A", "fullname": "B"}),
            "fullname",
        ),
        ("/crm/actions/contacts", json!({"company": "Acme"}), "email"),
        (
            "/crm/actions/contacts",
            json!({"id": "nope", "full_name": "A"}),
            "id",
        ),
        ("/crm/actions/deals", json!({"title": "T"}), "contact_id"),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id}),
            "title",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "value_cents": -5, "currency": "EUR"}),
            "value_cents",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "value_cents": 10.5, "currency": "EUR"}),
            "value_cents",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "value_cents": 10}),
            "currency",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "currency": "EU"}),
            "currency",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "currency": "XYZ"}),
            "currency",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": "00000000-0000-0000-0000-000000000001", "title": "T"}),
            "contact_id",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "pipeline_id": "00000000-0000-0000-0000-000000000001"}),
            "pipeline_id",
        ),
        (
            "/crm/actions/deals",
            json!({"contact_id": contact_id, "title": "T", "stage_id": "00000000-0000-0000-0000-000000000001"}),
            "stage_id",
        ),
    ];
    for (path, body, field) in cases {
        let a = call(&deps, Call::post(path, body.clone(), &t)).await;
        assert_eq!(a.status, 422, "{body} → {}", a.body);
        assert_eq!(a.body["code"], "validation_failed");
        assert_eq!(a.body["field"], field, "{body} → {}", a.body);
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from deals").await, 0);
}

#[tokio::test]
async fn taken_email_or_phone_is_409_naming_the_field() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    contact(
        &deps,
        &t,
        json!({"email": "ana@example.com", "phone": "+905321234567"}),
    )
    .await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"email": "ANA@example.com"}),
            &t,
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (409, Some("email")));
    assert_eq!(a.body["code"], "conflict");
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"phone": "0532 123 4567"}),
            &t,
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (409, Some("phone")));
}

#[tokio::test]
async fn members_change_only_their_own_records_and_others_answer_404() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    // Owners are users: user-1 is one (admins assign to users only).
    let id1 = crm_testkit::insert_user(&db.client().await, "User One", "member")
        .await
        .to_string();
    let (u1, u2, boss) = (member(&id1), member("user-2"), admin("boss"));
    let theirs = contact(&deps, &u2, json!({"full_name": "Theirs"})).await;
    let unowned = contact(&deps, &boss, json!({"full_name": "Pool", "owner_id": null})).await;
    let update = |id: &str, t: &str| {
        Call::post(
            "/crm/actions/contacts",
            json!({"id": id, "company": "X"}),
            t,
        )
    };
    for id in [&theirs, &unowned] {
        let a = call(&deps, update(id, &u1)).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (404, Some("not_found"))
        );
    }
    let missing = "00000000-0000-0000-0000-0000000000aa";
    assert_eq!(call(&deps, update(missing, &u1)).await.status, 404);
    assert_eq!(call(&deps, update(&theirs, &u2)).await.status, 200);
    assert_eq!(call(&deps, update(&theirs, &boss)).await.status, 200);

    // Members may only assign themselves; admins anyone.
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"full_name": "New", "owner_id": "user-2"}),
            &u1,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"id": theirs, "owner_id": id1}),
            &boss,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["owner_id"].as_str()),
        (200, Some(id1.as_str()))
    );
    assert_eq!(call(&deps, update(&theirs, &u1)).await.status, 200);

    // A member's deal on someone else's contact: the contact "does not exist" for them.
    let other = contact(&deps, &u2, json!({"full_name": "Other"})).await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"contact_id": other, "title": "T"}),
            &u1,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("contact_id"))
    );
    // ...but an unowned one can get a deal.
    deal(
        &deps,
        &u1,
        json!({"contact_id": unowned, "title": "From the pool"}),
    )
    .await;
}

#[tokio::test]
async fn contact_update_changes_only_given_fields_and_logs_their_names() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let id = contact(
        &deps,
        &t,
        json!({"email": "ana@example.com", "phone": "+905321234567", "full_name": "Ana"}),
    )
    .await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"id": id, "phone": null, "company": "Acme", "full_name": "Ana"}),
            &t,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], id.as_str());
    assert_eq!(a.body["phone"], Value::Null);
    assert_eq!(a.body["company"], "Acme");
    assert_eq!(a.body["email"], "ana@example.com");
    let pg = db.client().await;
    let meta: Value = pg
        .query_one(
            "select metadata from activities where metadata->>'event' = 'contact_updated'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        meta,
        json!({"event": "contact_updated", "fields": ["phone", "company"]})
    );
    // Nothing changed: 200, no new activity.
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/contacts",
            json!({"id": id, "company": "Acme"}),
            &t,
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(count(&pg, "select count(*) from activities").await, 2);
}
