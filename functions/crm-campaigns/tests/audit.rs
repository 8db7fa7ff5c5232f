//! Audit rows: written for every change, newest first, filterable, and free
//! of message bodies and contact details.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::json;

const BODY_MARKER: &str = "Secret spring offer 7731";
const EMAIL: &str = "ana.marker@example.com";
const PHONE: &str = "+905329998877";
const NAME: &str = "Anastasia-Marker";

#[tokio::test]
async fn audit_rows_are_written_and_free_of_bodies_and_contact_details() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "email").await;
    let ana = contact(&c, Some(NAME), Some(EMAIL), Some(PHONE), json!({})).await;
    let id = draft(
        &deps,
        "email",
        json!({"has_email": true}),
        json!({"content": format!("{BODY_MARKER} for {{{{contact.first_name}}}}"), "subject": "Hi {{contact.first_name}}"}),
    )
    .await;
    let who = operator();
    let base = format!("/api/v1/crm/campaigns/{id}");
    let dry = call(
        &deps,
        Call::post_empty(&format!("{base}/send?dry_run=true"), &who),
    )
    .await;
    assert!(
        dry.text.contains(BODY_MARKER),
        "the dry run shows rendered samples"
    );
    let a = call(
        &deps,
        Call::patch(&base, json!({"name": "Spring offer"}), &who),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        call(&deps, Call::post_empty(&format!("{base}/send"), &who))
            .await
            .status,
        202
    );
    assert_eq!(
        call(&deps, Call::post_empty(&format!("{base}/pause"), &who))
            .await
            .status,
        200
    );
    assert_eq!(
        call(&deps, Call::post_empty(&format!("{base}/resume"), &who))
            .await
            .status,
        200
    );
    assert_eq!(
        call(&deps, Call::post_empty(&format!("{base}/cancel"), &who))
            .await
            .status,
        200
    );
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/contacts/{ana}/opt-outs/email"), &who),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = call(
        &deps,
        Call::patch(
            "/api/v1/crm/channels/email",
            json!({"rate_per_second": 3}),
            &admin(),
        ),
    )
    .await;
    assert_eq!(a.status, 200);

    let actions: Vec<String> = c
        .query("select action from audit_log order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        vec![
            "crm.segment.created",
            "crm.template.created",
            "crm.campaign.created",
            "crm.campaign.updated",
            "crm.campaign.sent",
            "crm.campaign.paused",
            "crm.campaign.resumed",
            "crm.campaign.cancelled",
            "crm.opt_out.created",
            "crm.channel.updated",
        ]
    );
    let sent = c
        .query_one(
            "select actor, target_type, target_id, details from audit_log where action = 'crm.campaign.sent'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(sent.get::<_, String>(0), "user:ops-1");
    assert_eq!(sent.get::<_, String>(1), "campaign");
    assert_eq!(sent.get::<_, Option<String>>(2), Some(id.clone()));
    assert_eq!(sent.get::<_, serde_json::Value>(3)["channel"], "email");
    // Nothing in the audit log quotes a body, a name, an e-mail or a phone.
    let all: String = c
        .query_one(
            "select string_agg(audit_log::text, ' ') from audit_log",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for secret in [BODY_MARKER, EMAIL, PHONE, NAME] {
        assert!(!all.contains(secret), "audit log contains {secret}");
    }
    // The API: newest first, filtered by action and actor, paged.
    let a = call(&deps, Call::get("/api/v1/crm/audit?limit=3", &who)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["items"][0]["action"], "crm.channel.updated");
    assert_eq!(a.body["items"].as_array().unwrap().len(), 3);
    let next = a.body["next_cursor"].as_str().unwrap().to_string();
    let b = call(
        &deps,
        Call::get(&format!("/api/v1/crm/audit?limit=3&cursor={next}"), &who),
    )
    .await;
    assert_eq!(a.body["items"][2]["action"], "crm.campaign.cancelled");
    assert_eq!(b.body["items"][0]["action"], "crm.campaign.resumed");
    let f = call(
        &deps,
        Call::get("/api/v1/crm/audit?actor=user:admin-1", &who),
    )
    .await;
    assert_eq!(f.body["items"].as_array().unwrap().len(), 1);
    let f = call(
        &deps,
        Call::get("/api/v1/crm/audit?action=crm.campaign.paused", &who),
    )
    .await;
    assert_eq!(f.body["items"][0]["details"]["from"], "queued");
}

#[tokio::test]
async fn opt_outs_through_the_api_are_recorded_once_and_can_be_lifted() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let ana = contact(&c, Some("Ana"), None, Some("+905321110000"), json!({})).await;
    let who = operator();
    let path = format!("/api/v1/crm/contacts/{ana}/opt-outs/sms");
    let a = call(&deps, Call::post_empty(&path, &who)).await;
    assert_eq!((a.status, a.body["created"].clone()), (201, json!(true)));
    let a = call(&deps, Call::post_empty(&path, &who)).await;
    assert_eq!((a.status, a.body["created"].clone()), (200, json!(false)));
    assert_eq!(
        count(
            &c,
            "select count(*) from opt_outs where source = 'api' and channel = 'sms'"
        )
        .await,
        1
    );
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/contacts/{ana}/opt-outs/fax"), &who),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = call(
        &deps,
        Call::post_empty(
            "/api/v1/crm/contacts/0192f0c8-7a00-7000-8000-000000000099/opt-outs/sms",
            &who,
        ),
    )
    .await;
    assert_eq!(a.status, 404);
    // Lifting takes an admin with a reason (issue 10 §4).
    let lift = json!({"reason": "asked us by phone to write again"});
    let a = call(&deps, Call::delete(&path, &admin()).body(lift.clone())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(&deps, Call::delete(&path, &admin()).body(lift)).await;
    assert_eq!(a.status, 404);
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 0);
    assert_eq!(
        count(
            &c,
            "select count(*) from audit_log where action like 'crm.opt_out.%'"
        )
        .await,
        2
    );
}
