//! The recipient set: dry-run equals the snapshot, skip reasons, idempotent
//! snapshots, segment filters, ledger pages and cancel.

mod common;

use common::*;
use crm_domain::campaigns::audience;
use crm_testkit::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

/// Contacts covering every skip reason of an SMS campaign, plus sendable ones.
async fn seed_sms(c: &tokio_postgres::Client) -> (Uuid, Uuid) {
    let ok1 = contact(
        c,
        Some("Ana"),
        None,
        Some("+905321234501"),
        json!({"tags": ["vip"]}),
    )
    .await;
    contact(
        c,
        Some("Bora"),
        None,
        Some("+905321234502"),
        json!({"tags": ["vip", "x"]}),
    )
    .await;
    contact(
        c,
        Some("Cem"),
        None,
        Some("+905321234503"),
        json!({"tags": ["other"]}),
    )
    .await;
    // no_address: no phone.
    contact(
        c,
        Some("Deniz"),
        Some("deniz@example.com"),
        None,
        json!({"tags": ["vip"]}),
    )
    .await;
    // invalid_template: no first name.
    contact(
        c,
        None,
        None,
        Some("+905321234505"),
        json!({"tags": ["vip"]}),
    )
    .await;
    // opted_out (SMS) — wins over everything else.
    let out = contact(c, None, None, None, json!({"tags": ["vip"]})).await;
    c.execute(
        "insert into opt_outs (contact_id, channel, source) values ($1, 'sms', 'twilio')",
        &[&out],
    )
    .await
    .unwrap();
    // An e-mail opt-out does not suppress SMS.
    let email_out = contact(c, Some("Ece"), None, Some("+905321234507"), json!({})).await;
    c.execute(
        "insert into opt_outs (contact_id, channel, source) values ($1, 'email', 'api')",
        &[&email_out],
    )
    .await
    .unwrap();
    (ok1, out)
}

#[tokio::test]
async fn dry_run_equals_the_snapshot_and_sends_nothing() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    seed_sms(&c).await;
    let id = draft(
        &deps,
        "sms",
        json!({}),
        json!({"content": "Hi {{1}}! Stop: {{unsubscribe_url}}", "variables": ["contact.first_name"]}),
    )
    .await;
    let a = call(
        &deps,
        Call::post_empty(
            &format!("/api/v1/crm/campaigns/{id}/send?dry_run=true"),
            &operator(),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["recipients"], 7);
    assert_eq!(a.body["queued"], 4);
    assert_eq!(
        a.body["suppressed"],
        json!({"invalid_template": 1, "no_address": 1, "opted_out": 1})
    );
    let samples = a.body["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    for s in samples {
        let body = s["body"].as_str().unwrap();
        assert!(
            body.starts_with("Hi ") && body.ends_with("Stop: <unsubscribe link>"),
            "{body}"
        );
        assert!(!body.contains("{{"));
    }
    assert_eq!(
        count(&c, "select count(*) from campaign_deliveries").await,
        0
    );
    assert_eq!(count(&c, "select count(*) from outbox").await, 0);

    let campaign = Uuid::parse_str(&id).unwrap();
    let snap = audience::snapshot(&deps.pool.get().await.unwrap(), campaign)
        .await
        .unwrap();
    assert_eq!(snap.inserted, 7);
    assert_eq!(snap.queued, a.body["queued"].as_u64().unwrap());
    let skipped: Value = serde_json::to_value(&snap.skipped).unwrap();
    assert_eq!(skipped, a.body["suppressed"]);
    // The ledger holds exactly that set.
    let rows = c
        .query(
            "select coalesce(skip_reason, status), count(*) from campaign_deliveries \
             where campaign_id = $1 group by 1 order by 1",
            &[&campaign],
        )
        .await
        .unwrap();
    let ledger: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        ledger,
        vec![
            ("invalid_template".into(), 1),
            ("no_address".into(), 1),
            ("opted_out".into(), 1),
            ("queued".into(), 4)
        ]
    );
    let (recipients, snapshot_at): (Option<i32>, Option<chrono::DateTime<chrono::Utc>>) = {
        let r = c
            .query_one(
                "select recipients, snapshot_at from campaigns where id = $1",
                &[&campaign],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(recipients, Some(7));
    assert!(snapshot_at.is_some());
    // A second snapshot inserts nothing and keeps the count.
    let again = audience::snapshot(&deps.pool.get().await.unwrap(), campaign)
        .await
        .unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(
        count(&c, "select count(*) from campaign_deliveries").await,
        7
    );
}

#[tokio::test]
async fn segment_filters_select_the_same_contacts_in_dry_run_and_snapshot() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    seed_sms(&c).await;
    let id = draft(
        &deps,
        "sms",
        json!({"tags_any": ["vip"], "has_phone": true}),
        json!({"content": "Hi {{contact.first_name}}"}),
    )
    .await;
    let campaign = Uuid::parse_str(&id).unwrap();
    let dry = audience::dry_run(&deps.pool.get().await.unwrap(), campaign)
        .await
        .unwrap();
    // Ana, Bora (vip, phone) queued; the nameless vip with a phone is invalid_template.
    assert_eq!(dry.recipients, 3);
    assert_eq!(dry.queued, 2);
    let snap = audience::snapshot(&deps.pool.get().await.unwrap(), campaign)
        .await
        .unwrap();
    assert_eq!((snap.inserted, snap.queued), (dry.recipients, dry.queued));
    assert_eq!(snap.skipped, dry.skipped);
}

#[tokio::test]
async fn whatsapp_free_form_needs_an_open_window_and_email_needs_an_address() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "whatsapp").await;
    enable_channel(&c, "email").await;
    let open = contact(
        &c,
        Some("Ana"),
        Some("ana@example.com"),
        Some("+905321234511"),
        json!({}),
    )
    .await;
    contact(&c, Some("Bora"), None, Some("+905321234512"), json!({})).await;
    c.execute(
        "insert into messages (direction, channel, contact_id, body, status) values ('in', 'whatsapp', $1, 'hi', 'received')",
        &[&open],
    )
    .await
    .unwrap();
    let wa = draft(
        &deps,
        "whatsapp",
        json!({}),
        json!({"content": "Hello {{contact.first_name}}"}),
    )
    .await;
    let d = audience::dry_run(
        &deps.pool.get().await.unwrap(),
        Uuid::parse_str(&wa).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(d.queued, 1);
    assert_eq!(d.skipped.get("window_closed"), Some(&1));
    let mail = draft(
        &deps,
        "email",
        json!({}),
        json!({"content": "Hello {{contact.first_name}}", "subject": "For {{contact.first_name}}"}),
    )
    .await;
    let d = audience::dry_run(
        &deps.pool.get().await.unwrap(),
        Uuid::parse_str(&mail).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(d.queued, 1);
    assert_eq!(d.skipped.get("no_address"), Some(&1));
    assert_eq!(d.samples[0].subject.as_deref(), Some("For Ana"));
    // The sample is what the send worker sends: the unsubscribe line appended.
    assert_eq!(
        d.samples[0].body,
        "Hello Ana\n\n--\nUnsubscribe: <unsubscribe link>"
    );
}

#[tokio::test]
async fn deliveries_come_in_cursor_pages_filtered_by_status() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    for i in 0..7 {
        contact(
            &c,
            Some("N"),
            None,
            Some(&format!("+9053212346{i:02}")),
            json!({}),
        )
        .await;
    }
    contact(&c, Some("NoPhone"), None, None, json!({})).await;
    let id = draft(
        &deps,
        "sms",
        json!({}),
        json!({"content": "Hi {{contact.first_name}}"}),
    )
    .await;
    audience::snapshot(
        &deps.pool.get().await.unwrap(),
        Uuid::parse_str(&id).unwrap(),
    )
    .await
    .unwrap();
    let who = operator();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/crm/campaigns/{id}/deliveries?status=queued&limit=3");
        if let Some(cur) = &cursor {
            path.push_str(&format!("&cursor={cur}"));
        }
        let a = call(&deps, Call::get(&path, &who)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        for item in a.body["items"].as_array().unwrap() {
            assert_eq!(item["status"], "queued");
            assert!(item.get("phone").is_none() && item.get("email").is_none());
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match a.body["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 7, "no row twice across pages");
    let a = call(
        &deps,
        Call::get(
            &format!("/api/v1/crm/campaigns/{id}/deliveries?status=skipped"),
            &who,
        ),
    )
    .await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["items"][0]["skip_reason"], "no_address");
    let a = call(
        &deps,
        Call::get(
            &format!("/api/v1/crm/campaigns/{id}/deliveries?status=lost"),
            &who,
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("status")));
    let a = call(
        &deps,
        Call::get(
            &format!("/api/v1/crm/campaigns/{id}/deliveries?cursor=abc"),
            &who,
        ),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("cursor")));
    // The campaign shows its per-status counts.
    let a = call(
        &deps,
        Call::get(&format!("/api/v1/crm/campaigns/{id}"), &who),
    )
    .await;
    assert_eq!(a.body["counts"]["queued"], 7);
    assert_eq!(a.body["counts"]["skipped"], 1);
    let list = call(&deps, Call::get("/api/v1/crm/campaigns", &who)).await;
    assert_eq!(list.body["items"][0]["counts"]["queued"], 7);
}

#[tokio::test]
async fn send_pause_resume_cancel_move_the_states_and_the_ledger() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    for i in 0..3 {
        contact(
            &c,
            Some("N"),
            None,
            Some(&format!("+9053212347{i:02}")),
            json!({}),
        )
        .await;
    }
    let id = draft(
        &deps,
        "sms",
        json!({}),
        json!({"content": "Hi {{contact.first_name}}"}),
    )
    .await;
    let who = operator();
    let base = format!("/api/v1/crm/campaigns/{id}");
    let a = call(&deps, Call::post_empty(&format!("{base}/resume"), &who)).await;
    assert_eq!((a.status, a.code()), (409, "invalid_state"));
    let a = call(
        &deps,
        Call::post_empty(&format!("{base}/send"), &who).key("send-1"),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // A replay under the same key answers the same, without a second job.
    let b = call(
        &deps,
        Call::post_empty(&format!("{base}/send"), &who).key("send-1"),
    )
    .await;
    assert_eq!((b.status, b.body["status"].clone()), (202, json!("queued")));
    assert_eq!(
        count(&c, "select count(*) from outbox where queue = 'campaign'").await,
        1
    );
    let body: Value = c
        .query_one("select body from outbox where queue = 'campaign'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        body,
        json!({"kind": "run_campaign", "v": 1, "campaign_id": id})
    );
    // Sending twice is refused; drafts only for PATCH.
    let a = call(&deps, Call::post_empty(&format!("{base}/send"), &who)).await;
    assert_eq!((a.status, a.code()), (409, "invalid_state"));
    let a = call(&deps, Call::patch(&base, json!({"name": "Renamed"}), &who)).await;
    assert_eq!((a.status, a.code()), (409, "invalid_state"));
    // The runner's snapshot, then pause / resume.
    audience::snapshot(
        &deps.pool.get().await.unwrap(),
        Uuid::parse_str(&id).unwrap(),
    )
    .await
    .unwrap();
    c.execute("update campaigns set status = 'sending'", &[])
        .await
        .unwrap();
    let a = call(&deps, Call::post_empty(&format!("{base}/pause"), &who)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "paused");
    assert_eq!(a.body["pause_reason"], "paused by user:ops-1");
    let a = call(&deps, Call::post_empty(&format!("{base}/resume"), &who)).await;
    assert_eq!(a.body["status"], "sending");
    assert_eq!(
        count(&c, "select count(*) from outbox where queue = 'campaign'").await,
        2
    );
    // One row already sent stays sent; queued rows are cancelled.
    c.execute(
        "update campaign_deliveries set status = 'sent' where id = (select min(id::text)::uuid from campaign_deliveries)",
        &[],
    )
    .await
    .unwrap();
    let a = call(&deps, Call::post_empty(&format!("{base}/cancel"), &who)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "cancelled");
    assert_eq!(a.body["counts"]["cancelled"], 2);
    assert_eq!(a.body["counts"]["sent"], 1);
    assert_eq!(a.body["counts"]["queued"], 0);
    let a = call(&deps, Call::post_empty(&format!("{base}/cancel"), &who)).await;
    assert_eq!((a.status, a.code()), (409, "invalid_state"));
}
