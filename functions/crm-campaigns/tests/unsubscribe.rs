//! The public unsubscribe page: valid, repeated, expired and forged tokens,
//! and RFC 8058 one-click POSTs.

mod common;

use chrono::Utc;
use common::*;
use crm_domain::{
    Secret,
    unsubscribe::{Unsubscribe, sign},
};
use crm_testkit::TestDb;
use serde_json::json;
use uuid::Uuid;

fn token(secret: &str, contact_id: Uuid, channel: &str, expires: i64) -> String {
    sign(
        &Secret::new(secret).unwrap(),
        &Unsubscribe {
            contact_id,
            channel: channel.into(),
            campaign_id: Some(Uuid::parse_str("0192f0c8-7a00-7000-8000-00000000c001").unwrap()),
            expires,
        },
    )
}

fn page(path: &str) -> Call {
    Call::from_event("unsubscribe.json").path(path)
}

#[tokio::test]
async fn a_valid_link_records_the_opt_out_once_with_an_id_only_audit() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let ana = contact(
        &c,
        Some("Ana"),
        Some("ana.unsub@example.com"),
        None,
        json!({}),
    )
    .await;
    let t = token(UNSUB_SECRET, ana, "email", Utc::now().timestamp() + 3600);
    // Issue 13: a GET (a mail gateway pre-fetching links) only shows a
    // confirmation form; nothing is recorded until it is posted.
    let shown = call(&deps, page(&format!("/api/v1/crm/unsubscribe?token={t}"))).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.headers["content-type"], "text/html; charset=utf-8");
    assert!(
        shown.text.contains("<form method=\"post\""),
        "{}",
        shown.text
    );
    assert!(!shown.text.contains("You are unsubscribed"));
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 0);
    assert_eq!(count(&c, "select count(*) from audit_log").await, 0);
    let post = |t: &str| {
        page(&format!("/api/v1/crm/unsubscribe?token={t}"))
            .method("POST")
            .raw_body(
                "List-Unsubscribe=One-Click",
                "application/x-www-form-urlencoded",
            )
    };
    let a = call(&deps, post(&t)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "text/html; charset=utf-8");
    assert!(a.text.contains("You are unsubscribed"));
    assert!(!a.text.contains("ana.unsub@example.com") && !a.text.contains("Ana"));
    let row = c
        .query_one(
            "select channel, source from opt_outs where contact_id = $1",
            &[&ana],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("email".into(), "unsubscribe_link".into())
    );
    // A second click: still 200, nothing new.
    let a = call(&deps, post(&t)).await;
    assert_eq!(a.status, 200);
    assert!(a.text.contains("already unsubscribed"));
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 1);
    let audit: String = c
        .query_one(
            "select string_agg(audit_log::text, ' ') from audit_log",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        count(
            &c,
            "select count(*) from audit_log where action = 'crm.opt_out.created'"
        )
        .await,
        1
    );
    assert!(audit.contains(&ana.to_string()));
    assert!(!audit.contains("ana.unsub@example.com"));
}

#[tokio::test]
async fn expired_forged_and_missing_tokens_get_a_400_page_and_write_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let ana = contact(&c, Some("Ana"), None, Some("+905321112233"), json!({})).await;
    let expired = token(UNSUB_SECRET, ana, "sms", Utc::now().timestamp() - 10);
    let forged = token("another-secret", ana, "sms", Utc::now().timestamp() + 3600);
    for (path, words) in [
        (
            format!("/api/v1/crm/unsubscribe?token={expired}"),
            "expired",
        ),
        (
            format!("/api/v1/crm/unsubscribe?token={forged}"),
            "not valid",
        ),
        (
            "/api/v1/crm/unsubscribe?token=abc.def".to_string(),
            "not valid",
        ),
        ("/api/v1/crm/unsubscribe".to_string(), "incomplete"),
    ] {
        let a = call(&deps, page(&path)).await;
        assert_eq!(a.status, 400, "{path}");
        assert!(a.text.contains(words), "{path}: {}", a.text);
        assert_eq!(a.headers["content-type"], "text/html; charset=utf-8");
    }
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 0);
    assert_eq!(count(&c, "select count(*) from audit_log").await, 0);
}

#[tokio::test]
async fn one_click_post_unsubscribes_even_with_the_module_off() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    c.execute("update module_switches set enabled = false", &[])
        .await
        .unwrap();
    let ana = contact(&c, Some("Ana"), None, Some("+905321114455"), json!({})).await;
    let t = token(UNSUB_SECRET, ana, "sms", Utc::now().timestamp() + 3600);
    let a = call(
        &deps,
        page(&format!("/api/v1/crm/unsubscribe?token={t}"))
            .method("POST")
            .raw_body(
                "List-Unsubscribe=One-Click",
                "application/x-www-form-urlencoded",
            ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        count(
            &c,
            "select count(*) from opt_outs where channel = 'sms' and source = 'unsubscribe_link'"
        )
        .await,
        1
    );
    // The token may also come as a form field (a confirmation form's POST).
    let bob = contact(&c, Some("Bob"), None, Some("+905321114466"), json!({})).await;
    let t = token(UNSUB_SECRET, bob, "sms", Utc::now().timestamp() + 3600);
    let a = call(
        &deps,
        page("/api/v1/crm/unsubscribe")
            .method("POST")
            .raw_body(&format!("token={t}"), "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(count(&c, "select count(*) from opt_outs").await, 2);
}
