//! Issue 10 §4 in the Campaigns API: dry-run samples and segment previews
//! show only contacts the caller may read (counts stay whole-audience), and
//! an opt-out is lifted only by an admin, with a reason.

mod common;

use common::*;
use crm_domain::auth::Role;
use crm_testkit::TestDb;
use serde_json::json;

async fn owned(c: &tokio_postgres::Client, name: &str, phone: &str, owner: Option<&str>) -> String {
    let id = contact(c, Some(name), None, Some(phone), json!({})).await;
    c.execute(
        "update contacts set owner_id = $2 where id = $1",
        &[&id, &owner],
    )
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test]
async fn samples_and_previews_show_only_contacts_the_caller_may_read() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    let mine = owned(&c, "Mine", "+905321110001", Some("plan-1")).await;
    let theirs = owned(&c, "Theirs", "+905321110002", Some("someone-else")).await;
    let pool = owned(&c, "Pool", "+905321110003", None).await;
    let id = draft(
        &deps,
        "sms",
        json!({}),
        json!({"content": "Hi {{contact.first_name}}"}),
    )
    .await;

    // A member with can_use_crm (planner = plan-1).
    let a = call(
        &deps,
        Call::post_empty(
            &format!("/api/v1/crm/campaigns/{id}/send?dry_run=true"),
            &planner(),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["recipients"], 3, "counts are whole-audience");
    let text = a.body["samples"].to_string();
    assert!(
        !text.contains(&theirs) && !text.contains("Theirs"),
        "{text}"
    );
    assert!(text.contains(&mine) && text.contains("Hi Mine"), "{text}");
    assert!(text.contains(&pool), "{text}");
    // An admin sees every sample.
    let a = call(
        &deps,
        Call::post_empty(
            &format!("/api/v1/crm/campaigns/{id}/send?dry_run=true"),
            &admin(),
        ),
    )
    .await;
    assert!(
        a.body["samples"].to_string().contains("Hi Theirs"),
        "{}",
        a.body
    );

    // A segment filtering on someone else's contacts: its count, none of them.
    let seg = call(
        &deps,
        Call::post(
            "/api/v1/crm/segments",
            json!({"name": "theirs", "filter": {"owner_id": "someone-else"}}),
            &planner(),
        ),
    )
    .await;
    assert_eq!(seg.status, 201, "{}", seg.body);
    let path = format!("/api/v1/crm/segments/{}/preview", seg.id());
    let a = call(&deps, Call::get(&path, &planner())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["count"], 1);
    assert_eq!(a.body["items"], json!([]), "{}", a.body);
    let a = call(&deps, Call::get(&path, &admin())).await;
    assert_eq!(a.body["items"][0]["id"], theirs.as_str());
}

#[tokio::test]
async fn only_an_admin_with_a_reason_lifts_an_opt_out() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    // An unowned contact that texted STOP: today any member could lift it.
    let lead = owned(&c, "Lead", "+905321110009", None).await;
    c.execute(
        "insert into opt_outs (contact_id, channel, source, reason) values ($1::text::uuid, 'sms', 'twilio', 'STOP')",
        &[&lead],
    )
    .await
    .unwrap();
    let path = format!("/api/v1/crm/contacts/{lead}/opt-outs/sms");
    let reason = json!({"reason": "signed a new contract and asked for SMS"});
    for member in [
        planner(),
        operator(),
        token("plan-2", Role::Member, &["can_use_crm"]),
    ] {
        let a = call(&deps, Call::delete(&path, &member).body(reason.clone())).await;
        assert_eq!((a.status, a.code()), (403, "forbidden"), "{}", a.body);
    }
    for body in [
        json!({}),
        json!({"reason": "  "}),
        json!({"reason": "x", "by": "me"}),
    ] {
        let a = call(&deps, Call::delete(&path, &admin()).body(body.clone())).await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
    }
    let a = call(&deps, Call::delete(&path, &admin())).await;
    assert_eq!(a.status, 415, "a reason needs a JSON body: {}", a.body);
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 1);

    let a = call(&deps, Call::delete(&path, &admin()).body(reason)).await;
    assert_eq!(
        (a.status, a.body["opted_out"].clone()),
        (200, json!(false)),
        "{}",
        a.body
    );
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 0);
    let details: serde_json::Value = c
        .query_one(
            "select details from audit_log where action = 'crm.opt_out.deleted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        details,
        json!({"channel": "sms", "source": "twilio", "reason": "signed a new contract and asked for SMS"})
    );
}
