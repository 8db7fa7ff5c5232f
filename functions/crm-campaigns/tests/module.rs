//! The kill switch: 403 module_disabled on campaign routes, the toggle
//! audited, reachable routes while off, runners re-enqueued when back on.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::{Value, json};

#[tokio::test]
async fn module_off_refuses_campaign_routes_and_the_admin_turns_it_back_on() {
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
    let who = operator();
    // A queued campaign, as if sent before the switch went off.
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/send"), &who),
    )
    .await;
    assert_eq!(a.status, 202);

    let off = call(
        &deps,
        Call::from_event("toggle-module.json").token(Some(&admin())),
    )
    .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["enabled"], false);
    assert_eq!(off.body["changed"], true);
    assert_eq!(off.body["reason"], "provider incident");

    // Every route of the crate but the public unsubscribe page and the
    // exempt ones (the switch, the audit log, opt-outs), called by an admin
    // with every capability so only the switch can refuse.
    let all = token(
        "admin-2",
        crm_domain::auth::Role::Admin,
        &["can_use_crm", "campaigns:send"],
    );
    let exempt = [
        "/api/v1/crm/unsubscribe",
        "/api/v1/crm/module",
        "/api/v1/crm/audit",
        "/api/v1/crm/contacts/{id}/opt-outs/{channel}",
    ];
    let mut refused = 0;
    for &(method, pattern) in crm_campaigns::ROUTES {
        if exempt.contains(&pattern) {
            continue;
        }
        let path = pattern
            .replace("{id}", &id)
            .replace("{name}", "sms")
            .replace("{channel}", "sms");
        let c = match method {
            "GET" => Call::get(&path, &all),
            "POST" => Call::post(&path, json!({"name": "x"}), &all),
            "PATCH" => Call::patch(&path, json!({"name": "x"}), &all),
            "PUT" => Call::put(&path, json!({}), &all),
            "DELETE" => Call::delete(&path, &all),
            other => panic!("{other}"),
        };
        let a = call(&deps, c).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "module_disabled"),
            "{method} {path}: {}",
            a.body
        );
        refused += 1;
    }
    assert!(refused >= 20, "{refused}");
    let a = call(
        &deps,
        Call::post_empty(
            &format!("/api/v1/crm/campaigns/{id}/send?dry_run=true"),
            &who,
        ),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "module_disabled"), "{}", a.body);
    // Still reachable: the switch itself and the audit log.
    let a = call(&deps, Call::get("/api/v1/crm/module", &who)).await;
    assert_eq!((a.status, a.body["enabled"].clone()), (200, json!(false)));
    let a = call(
        &deps,
        Call::get("/api/v1/crm/audit?action=crm.module.toggled", &who),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["items"][0]["actor"], "user:admin-1");
    assert_eq!(
        a.body["items"][0]["details"],
        json!({"enabled": false, "changed": true, "campaigns_resumed": 0})
    );
    let outbox_before = count(&c, "select count(*) from outbox where queue = 'campaign'").await;

    // Back on: the queued campaign gets a runner again.
    let on = call(
        &deps,
        Call::put("/api/v1/crm/module", json!({"enabled": true}), &admin()),
    )
    .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["campaigns_resumed"], 1, "{}", on.body);
    assert_eq!(
        count(&c, "select count(*) from outbox where queue = 'campaign'").await,
        outbox_before + 1
    );
    let body: Value = c
        .query_one(
            "select body from outbox where queue = 'campaign' order by created_at desc, message_id desc limit 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(body["campaign_id"], json!(id));
    // Turning it on again changes nothing and enqueues nothing.
    let again = call(
        &deps,
        Call::put("/api/v1/crm/module", json!({"enabled": true}), &admin()),
    )
    .await;
    assert_eq!(
        (
            again.body["changed"].clone(),
            again.body["campaigns_resumed"].clone()
        ),
        (json!(false), json!(0))
    );
    assert_eq!(
        count(
            &c,
            "select count(*) from audit_log where action = 'crm.module.toggled'"
        )
        .await,
        3
    );
    let a = call(&deps, Call::get("/api/v1/crm/campaigns", &who)).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn toggle_body_is_validated() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let a = call(
        &deps,
        Call::put("/api/v1/crm/module", json!({"enabled": "no"}), &admin()),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("enabled")));
    let a = call(
        &deps,
        Call::put(
            "/api/v1/crm/module",
            json!({"enabled": false, "why": "x"}),
            &admin(),
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("why")));
    let c = db.client().await;
    assert_eq!(
        count(&c, "select count(*) from module_switches where enabled").await,
        1
    );
}

#[tokio::test]
async fn a_missing_switch_row_counts_as_off() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    c.execute("delete from module_switches where module = 'crm'", &[])
        .await
        .unwrap();
    let a = call(&deps, Call::get("/api/v1/crm/campaigns", &operator())).await;
    assert_eq!((a.status, a.code()), (403, "module_disabled"), "{}", a.body);
}

#[tokio::test]
async fn a_send_waiting_on_a_switch_going_off_is_refused() {
    let db = TestDb::new().await;
    let deps = std::sync::Arc::new(deps(&db));
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    contact(&c, Some("Ana"), None, Some("+905321234567"), json!({})).await;
    let id = draft(&deps, "sms", json!({}), json!({"content": "Hi"})).await;
    // An admin's toggle, not yet committed: the route's first check reads on.
    let (mut admin_db, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let toggle = admin_db.transaction().await.unwrap();
    toggle
        .execute(
            "update module_switches set enabled = false where module = 'crm'",
            &[],
        )
        .await
        .unwrap();
    let d = deps.clone();
    let send = tokio::spawn(async move {
        call(
            &d,
            Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/send"), &operator()),
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    toggle.commit().await.unwrap();
    let a = send.await.unwrap();
    assert_eq!((a.status, a.code()), (403, "module_disabled"), "{}", a.body);
    assert_eq!(
        count(&c, "select count(*) from campaigns where status = 'draft'").await,
        1
    );
    assert_eq!(
        count(&c, "select count(*) from outbox where queue = 'campaign'").await,
        0
    );
}
