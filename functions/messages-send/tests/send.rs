//! POST /api/messages and /api/messages/template against a fresh database.

mod common;

use chrono::Duration;
use common::*;
use crm_domain::auth::Role;
use crm_testkit::TestDb;
use serde_json::json;

#[tokio::test]
async fn whatsapp_text_inside_the_window_is_queued_with_its_send_job() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let c = contact(&pg, Some("user-1"), Some("+905321234567"), Some("Ayşe")).await;
    inbound(&pg, c, "whatsapp", Duration::hours(2)).await;
    let (status, body) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": c, "body": "Merhaba"}),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["channel"], "whatsapp",
        "defaults to WhatsApp: wa_id seen"
    );
    assert_eq!(body["status"], "queued");
    assert_eq!(body["direction"], "out");
    assert!(body["provider_sid"].is_null());
    let id = body["id"].as_str().unwrap();
    let job: serde_json::Value = pg
        .query_one("select body from outbox where queue = 'send'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        job,
        json!({"kind": "send_message", "v": 1, "message_id": id})
    );
    assert_eq!(
        count(
            &pg,
            "select count(*) from activities where type = 'message_out'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn whatsapp_text_outside_the_window_needs_a_template() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let c = contact(&pg, Some("user-1"), Some("+905321234568"), None).await;
    inbound(&pg, c, "whatsapp", Duration::hours(25)).await;
    // An SMS inside the window does not open WhatsApp's.
    inbound(&pg, c, "sms", Duration::hours(1)).await;
    let (status, body) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": c, "body": "Merhaba"}),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("window_closed"))
    );
    assert_eq!(
        count(&pg, "select count(*) from messages where direction = 'out'").await,
        0
    );
    assert_eq!(count(&pg, "select count(*) from outbox").await, 0);
}

#[tokio::test]
async fn sms_is_the_default_without_whatsapp_and_has_no_window() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let c = contact(&pg, None, Some("+905321234569"), None).await;
    let (status, body) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": c, "body": "Merhaba", "media_key": "uploads/0192f0c8-7a00-7000-8000-000000000001.jpg"}),
        &token("user-2", Role::Member),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["channel"].as_str(), body["num_media"].as_i64()),
        (Some("sms"), Some(1))
    );
}

#[tokio::test]
async fn opted_out_contacts_are_refused_for_that_channel() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let c = contact(&pg, Some("user-1"), Some("+905321234570"), None).await;
    pg.execute(
        "insert into opt_outs (contact_id, channel, source) values ($1, 'sms', 'twilio')",
        &[&c],
    )
    .await
    .unwrap();
    let (status, body) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": c, "body": "hi", "channel": "sms"}),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("opted_out")));
    assert_eq!(count(&pg, "select count(*) from messages").await, 0);
}

#[tokio::test]
async fn others_contacts_are_not_found_and_phoneless_ones_are_invalid() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let theirs = contact(&pg, Some("user-9"), Some("+905321234571"), None).await;
    let phoneless = contact(&pg, Some("user-1"), None, Some("No Phone")).await;
    let member = token("user-1", Role::Member);
    let (status, _) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": theirs, "body": "hi"}),
        &member,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": phoneless, "body": "hi"}),
        &member,
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("contact_id")));
    let (status, _) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": theirs}),
        &member,
    )
    .await;
    assert_eq!(status, 422, "body or media_key is required");
    let (status, _) = post(
        &deps,
        "/api/messages",
        json!({"contact_id": theirs, "body": "hi", "channel": "sms"}),
        &token("admin", Role::Admin),
    )
    .await;
    assert_eq!(status, 202, "admins may message anyone");
}

#[tokio::test]
async fn a_template_is_rendered_stored_and_sent_outside_the_window() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let c = contact(&pg, Some("user-1"), Some("+905321234572"), Some("Ayşe")).await;
    let tpl: uuid::Uuid = pg
        .query_one(
            "insert into message_templates (content_sid, name, channel, body) \
             values ('HX0123456789abcdef0123456789abcdef', 'reminder', 'whatsapp', \
                     'Hi {{1}}, see you on {{2}} at {{3}} in {{4}}') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let member = token("user-1", Role::Member);
    let body = json!({"contact_id": c, "template_id": tpl, "parameters": ["Kadıköy"]});
    let (status, answer) = post(&deps, "/api/messages/template", body.clone(), &member).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (422, Some("{{2}}")),
        "no meeting yet"
    );
    let deal: uuid::Uuid = pg
        .query_one(
            "insert into deals (contact_id, pipeline_id, stage_id, title) \
             select $1, p.id, s.id, 'Deal' from pipelines p join pipeline_stages s on s.pipeline_id = p.id \
             where p.is_default order by s.position limit 1 returning id",
            &[&c],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into activities (type, contact_id, deal_id, body, metadata, actor) \
         values ('meeting', $1, $2, 'Meeting', '{\"start_time\": \"2026-12-01T14:30:00Z\"}', 'test')",
        &[&c, &deal],
    )
    .await
    .unwrap();
    let (status, answer) = post(&deps, "/api/messages/template", body, &member).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["body"],
        "Hi Ayşe, see you on 01/12/2026 at 14:30 in Kadıköy"
    );
    assert_eq!(answer["template_sid"], "HX0123456789abcdef0123456789abcdef");
    let vars: serde_json::Value = pg
        .query_one("select content_variables from message_sends", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        vars,
        json!({"1": "Ayşe", "2": "01/12/2026", "3": "14:30", "4": "Kadıköy"})
    );
}

#[tokio::test]
async fn a_replayed_idempotency_key_answers_the_same_message_without_a_second_send() {
    let db = TestDb::new().await;
    let (deps, pg) = (deps(&db), db.client().await);
    let c = contact(&pg, Some("user-1"), Some("+905321234573"), None).await;
    let member = token("user-1", Role::Member);
    let mut ev: serde_json::Value =
        serde_json::from_str(&crm_testkit::event("messages-send/send-text.json")).unwrap();
    ev["body"] = json!(json!({"contact_id": c, "body": "hi", "channel": "sms"}).to_string());
    ev["headers"]["authorization"] = json!(format!("Bearer {member}"));
    let send = || async {
        let req = lambda_http::request::from_str(&ev.to_string()).unwrap();
        let resp = messages_send::handle(req, &deps).await;
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let body: serde_json::Value = match resp.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("{other:?}"),
        };
        (resp.status().as_u16(), body, replayed)
    };
    let (s1, b1, r1) = send().await;
    let (s2, b2, r2) = send().await;
    assert_eq!((s1, r1), (202, false), "{b1}");
    assert_eq!((s2, r2), (202, true));
    assert_eq!(b1["id"], b2["id"]);
    assert_eq!(count(&pg, "select count(*) from messages").await, 1);
    assert_eq!(count(&pg, "select count(*) from outbox").await, 1);
}
