//! `Idempotency-Key` on crm-actions POSTs: replay, reuse with another
//! request, in flight, the concurrent race, stored refusals, released failures.

mod common;

use common::*;
use crm_domain::crm::idempotency::request_hash;
use crm_testkit::TestDb;
use serde_json::json;

const PATH: &str = "/crm/actions/contacts";

#[tokio::test]
async fn same_key_and_body_replays_the_first_answer() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let first = call(
        &deps,
        Call::post(PATH, json!({"full_name": "Ana"}), &t).key("k-1"),
    )
    .await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    // Same fields in another order and spacing: the same request.
    let again = call(
        &deps,
        Call::post(PATH, json!({}), &t)
            .raw_body("{ \"full_name\" : \"Ana\" }")
            .key("k-1"),
    )
    .await;
    assert_eq!(again.status, 201);
    assert!(again.replayed());
    assert_eq!(again.body, first.body);
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
    assert_eq!(count(&pg, "select count(*) from activities").await, 1);
}

#[tokio::test]
async fn same_key_with_another_body_or_endpoint_is_422() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let first = call(
        &deps,
        Call::post(PATH, json!({"full_name": "Ana"}), &t).key("k-2"),
    )
    .await;
    assert_eq!(first.status, 201);
    let other_body = call(
        &deps,
        Call::post(PATH, json!({"full_name": "Bea"}), &t).key("k-2"),
    )
    .await;
    assert_eq!(
        (other_body.status, other_body.body["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let other_path = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"contact_id": first.id(), "title": "T"}),
            &t,
        )
        .key("k-2"),
    )
    .await;
    assert_eq!(other_path.body["code"], "idempotency_key_reused");
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
    assert_eq!(count(&pg, "select count(*) from deals").await, 0);
}

#[tokio::test]
async fn keys_are_scoped_per_user() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let body = json!({"full_name": "Ana"});
    let a = call(
        &deps,
        Call::post(PATH, body.clone(), &member("user-1")).key("shared"),
    )
    .await;
    let b = call(
        &deps,
        Call::post(PATH, body, &member("user-2")).key("shared"),
    )
    .await;
    assert_eq!((a.status, b.status), (201, 201));
    assert!(!b.replayed());
    assert_ne!(a.id(), b.id());
}

#[tokio::test]
async fn a_key_still_in_flight_is_409_until_its_lock_goes_stale() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let body = json!({"full_name": "Ana"});
    let hash = request_hash("POST", PATH, &body);
    let pg = db.client().await;
    pg.execute(
        "insert into api_idempotency_keys (user_id, idempotency_key, request_hash, lock_token) \
         values ('user-1', 'k-3', $1, gen_random_uuid())",
        &[&hash.as_str()],
    )
    .await
    .unwrap();
    let a = call(&deps, Call::post(PATH, body.clone(), &t).key("k-3")).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (409, Some("request_in_flight"))
    );
    // Its holder died: after 60 s the key is taken over and the work runs once.
    pg.execute(
        "update api_idempotency_keys set locked_at = now() - interval '2 minutes'",
        &[],
    )
    .await
    .unwrap();
    let a = call(&deps, Call::post(PATH, body.clone(), &t).key("k-3")).await;
    assert_eq!(a.status, 201);
    assert!(!a.replayed());
    let a = call(&deps, Call::post(PATH, body, &t).key("k-3")).await;
    assert!(a.replayed());
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
}

#[tokio::test]
async fn concurrent_requests_under_one_key_write_once() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps(&db));
    let t = member("user-1");
    let c = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let body = json!({"contact_id": c, "title": "Flat"});
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (deps, req) = (
            deps.clone(),
            Call::post("/crm/actions/deals", body.clone(), &t)
                .key("race")
                .build(),
        );
        tasks.push(tokio::spawn(async move { send(&deps, req).await }));
    }
    let mut fresh = 0;
    for task in tasks {
        let a = task.await.unwrap();
        match (a.status, a.replayed()) {
            (201, false) => fresh += 1,
            (201, true) => {}
            (409, false) => assert_eq!(a.body["code"], "request_in_flight"),
            other => panic!("unexpected {other:?}: {}", a.body),
        }
    }
    assert_eq!(fresh, 1, "exactly one request did the work");
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where metadata->>'event' = 'deal_created'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn refusals_found_while_working_are_stored_but_validation_failures_are_not() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    // 404 decided inside the transaction: stored and replayed.
    let update = json!({"id": "00000000-0000-0000-0000-0000000000aa", "company": "X"});
    let a = call(&deps, Call::post(PATH, update.clone(), &t).key("k-4")).await;
    assert_eq!((a.status, a.replayed()), (404, false));
    let a = call(&deps, Call::post(PATH, update, &t).key("k-4")).await;
    assert_eq!((a.status, a.replayed()), (404, true));
    assert_eq!(a.body["code"], "not_found");
    // A body that fails validation never starts: the key stays free for the corrected request.
    let a = call(
        &deps,
        Call::post(PATH, json!({"email": "nope"}), &t).key("k-5"),
    )
    .await;
    assert_eq!(a.status, 422);
    let a = call(
        &deps,
        Call::post(PATH, json!({"email": "ana@example.com"}), &t).key("k-5"),
    )
    .await;
    assert_eq!((a.status, a.replayed()), (201, false));
    // A malformed key is itself a validation error.
    let long = "k".repeat(256);
    let a = call(
        &deps,
        Call::post(PATH, json!({"full_name": "A"}), &t).key(&long),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("Idempotency-Key"))
    );
}

#[tokio::test]
async fn a_server_fault_releases_the_key_so_a_retry_runs() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let t = member("user-1");
    let pg = db.client().await;
    pg.batch_execute("alter table activities rename to activities_away")
        .await
        .unwrap();
    let body = json!({"full_name": "Ana"});
    let a = call(&deps, Call::post(PATH, body.clone(), &t).key("k-6")).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            500,
            json!({"error": "Internal error", "code": "internal_error"})
        )
    );
    assert_eq!(count(&pg, "select count(*) from contacts").await, 0);
    assert_eq!(
        count(&pg, "select count(*) from api_idempotency_keys").await,
        0
    );
    pg.batch_execute("alter table activities_away rename to activities")
        .await
        .unwrap();
    let a = call(&deps, Call::post(PATH, body, &t).key("k-6")).await;
    assert_eq!((a.status, a.replayed()), (201, false));
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
}
