//! Authentication, capabilities and permissions: 401, 403, 404, 405, 422.

mod common;

use common::*;
use crm_domain::auth::Role;
use crm_testkit::TestDb;
use serde_json::json;

/// A concrete path for a route pattern (placeholder ids; the checks under
/// test come before any lookup).
pub fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "0192f0c8-7a00-7000-8000-000000000099")
        .replace("{name}", "sms")
        .replace("{channel}", "sms")
}

fn with_token(method: &str, path: &str, token: &str) -> Call {
    match method {
        "GET" => Call::get(path, token),
        "POST" => Call::post(path, json!({}), token),
        "PATCH" => Call::patch(path, json!({}), token),
        "PUT" => Call::put(path, json!({}), token),
        "DELETE" => Call::delete(path, token),
        other => panic!("a method the test does not know: {other}"),
    }
}

#[tokio::test]
async fn every_route_needs_a_token_and_can_use_crm() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let no_cap = token("u9", Role::Member, &[]);
    let mut checked = 0;
    // Every JWT route of the crate (all but the public unsubscribe page).
    for &(method, pattern) in crm_campaigns::ROUTES {
        if pattern == "/api/v1/crm/unsubscribe" {
            continue;
        }
        let path = concrete(pattern);
        let a = call(&deps, Call::anonymous(method, &path)).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "token_missing"),
            "{method} {path}"
        );
        let a = call(&deps, with_token(method, &path, &no_cap)).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "forbidden"),
            "{method} {path}: {}",
            a.body
        );
        checked += 1;
    }
    assert_eq!(checked, crm_campaigns::ROUTES.len() - 2);
    // Nothing was written by the refused calls.
    let c = db.client().await;
    assert_eq!(count(&c, "select count(*) from campaigns").await, 0);
    assert_eq!(count(&c, "select count(*) from audit_log").await, 0);
}

#[tokio::test]
async fn resume_needs_campaigns_send_too() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    contact(&c, Some("Ana"), None, Some("+905321234567"), json!({})).await;
    let id = draft(&deps, "sms", json!({}), json!({"content": "Hi"})).await;
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/send"), &operator()),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // Pausing does not start anything: can_use_crm is enough.
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/pause"), &planner()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let path = format!("/api/v1/crm/campaigns/{id}/resume");
    let a = call(&deps, Call::post_empty(&path, &planner())).await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{}", a.body);
    let status: String = c
        .query_one("select status from campaigns", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "paused");
    let a = call(&deps, Call::post_empty(&path, &operator())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
}

#[tokio::test]
async fn sending_needs_campaigns_send_but_a_dry_run_does_not() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    contact(&c, Some("Ana"), None, Some("+905321234567"), json!({})).await;
    let id = draft(
        &deps,
        "sms",
        json!({}),
        json!({"content": "Hi {{contact.first_name}}"}),
    )
    .await;
    let path = format!("/api/v1/crm/campaigns/{id}/send");
    let a = call(&deps, Call::post_empty(&path, &planner())).await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{}", a.body);
    let a = call(
        &deps,
        Call::post_empty(&format!("{path}?dry_run=true"), &planner()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["queued"], 1);
    let status: String = c
        .query_one("select status from campaigns", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "draft");
    let a = call(&deps, Call::post_empty(&path, &operator())).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
}

#[tokio::test]
async fn module_toggle_and_channel_changes_are_for_admins() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let a = call(
        &deps,
        Call::put("/api/v1/crm/module", json!({"enabled": false}), &operator()),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    let a = call(
        &deps,
        Call::patch(
            "/api/v1/crm/channels/sms",
            json!({"enabled": true}),
            &operator(),
        ),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    let a = call(
        &deps,
        Call::patch(
            "/api/v1/crm/channels/sms",
            json!({"enabled": true, "rate_per_second": 5}),
            &admin(),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["enabled"], true);
    assert_eq!(a.body["rate_per_second"], 5.0);
    let a = call(
        &deps,
        Call::patch(
            "/api/v1/crm/channels/fax",
            json!({"enabled": true}),
            &admin(),
        ),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = call(
        &deps,
        Call::patch(
            "/api/v1/crm/channels/sms",
            json!({"api_key": "x"}),
            &admin(),
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("api_key")));
}

#[tokio::test]
async fn unknown_ids_are_404_and_wrong_methods_405() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let who = operator();
    for path in [
        "/api/v1/crm/campaigns/0192f0c8-7a00-7000-8000-000000000099",
        "/api/v1/crm/campaigns/not-a-uuid",
        "/api/v1/crm/campaigns/0192f0c8-7a00-7000-8000-000000000099/deliveries",
        "/api/v1/crm/templates/0192f0c8-7a00-7000-8000-000000000099",
        "/api/v1/crm/segments/0192f0c8-7a00-7000-8000-000000000099/preview",
        "/api/v1/crm/nothing-here",
    ] {
        let a = call(&deps, Call::get(path, &who)).await;
        assert_eq!((a.status, a.code()), (404, "not_found"), "{path}");
    }
    let a = call(
        &deps,
        Call::post_empty(
            "/api/v1/crm/campaigns/0192f0c8-7a00-7000-8000-000000000099/pause",
            &who,
        ),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = call(&deps, Call::delete("/api/v1/crm/campaigns", &who)).await;
    assert_eq!((a.status, a.code()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn bodies_are_checked_before_anything_is_written() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let who = operator();
    let a = call(
        &deps,
        Call::post("/api/v1/crm/segments", json!({}), &who)
            .raw_body("{not json", "application/json"),
    )
    .await;
    assert_eq!((a.status, a.code()), (400, "malformed_json"));
    let a = call(
        &deps,
        Call::post("/api/v1/crm/segments", json!({}), &who).raw_body("name=x", "text/plain"),
    )
    .await;
    assert_eq!((a.status, a.code()), (415, "unsupported_media_type"));
    let a = call(
        &deps,
        Call::post(
            "/api/v1/crm/segments",
            json!({"name": "x", "colour": "red"}),
            &who,
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("colour")));
    let c = db.client().await;
    assert_eq!(count(&c, "select count(*) from segments").await, 0);
    assert_eq!(count(&c, "select count(*) from audit_log").await, 0);
}

#[tokio::test]
async fn the_sample_events_reach_their_routes() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    // Placeholder campaign id: the route is found and the campaign is not.
    for name in ["dry-run.json", "send-campaign.json", "list-deliveries.json"] {
        let a = call(&deps, Call::from_event(name)).await;
        assert_eq!(
            (a.status, a.body["error"].as_str()),
            (404, Some("campaign not found")),
            "{name}: {}",
            a.body
        );
    }
    // Placeholder segment/template ids on a disabled channel: the first field at fault.
    let a = call(&deps, Call::from_event("create-campaign.json")).await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("channel")));
    enable_channel(&db.client().await, "sms").await;
    // Under the same key the stored refusal is replayed; a new key sees the new state.
    let a = call(&deps, Call::from_event("create-campaign.json")).await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("channel")));
    let a = call(
        &deps,
        Call::from_event("create-campaign.json").key("camp-spring-2"),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("segment_id"))
    );
    // A member may not switch the module, even with the sample's body.
    let a = call(
        &deps,
        Call::from_event("toggle-module.json").token(Some(&operator())),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));
}
