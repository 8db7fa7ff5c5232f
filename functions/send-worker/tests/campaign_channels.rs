//! `send_campaign_message` jobs on SMS, WhatsApp and the webhook channel:
//! the exact Twilio request through the one-off send path (opt-out link,
//! content templates), Twilio refusals and retries, status callbacks moving
//! the ledger row in the callback's transaction, and the signed webhook POST.

mod campaign_support;

use campaign_support::*;
use crm_domain::{twilio::status::MessageStatus, webhooks_out::SigningKey};
use crm_testkit::TestDb;
use send_worker::Outcome;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

#[tokio::test]
async fn an_sms_goes_through_the_twilio_path_with_an_opt_out_link_and_callbacks_move_the_ledger() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("sms")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .respond_with(twilio_created("SM0123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let req = &twilio.received_requests().await.unwrap()[0];
    let fields = form_pairs(&req.body);
    let body = fields.iter().find(|(k, _)| k == "Body").unwrap().1.clone();
    let link = body.rsplit("Opt out: ").next().unwrap().to_string();
    assert_eq!(
        fields,
        vec![
            ("To".into(), PHONE.into()),
            ("From".into(), "+14155238886".into()),
            (
                "Body".into(),
                format!("Hi Ana, spring offers at Kadıköy Emlak.\n\nOpt out: {link}")
            ),
            (
                "StatusCallback".into(),
                "https://crm.example.com/api/twilio/webhook".into()
            ),
        ]
    );
    let claims = token_claims(&body);
    assert_eq!((claims.contact_id, claims.channel.as_str()), (who, "sms"));
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.provider_id.as_deref()),
        ("sent", Some("SM0123456789abcdef0123456789abcdef"))
    );
    let message = row.message_id.expect("linked message");
    let m = pg
        .query_one(
            "select direction, channel, contact_id, status, provider_sid from messages where id = $1",
            &[&message],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            m.get::<_, String>(0),
            m.get::<_, String>(1),
            m.get::<_, Uuid>(2),
            m.get::<_, String>(3)
        ),
        ("out".into(), "sms".into(), who, "queued".into())
    );
    // Redelivered: no second message, no second call (expect(1)).
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let count: i64 = pg
        .query_one(
            "select count(*) from messages where contact_id = $1",
            &[&who],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // Twilio's status callback (the twilio-webhook flow's store call): delivered.
    let client = deps.pool.get().await.unwrap();
    let status = MessageStatus::Delivered;
    crm_domain::twilio::store::apply_status(
        &client,
        "SM0123456789abcdef0123456789abcdef",
        Some(status.as_str()),
        &MessageStatus::predecessors(status),
        None,
    )
    .await
    .unwrap();
    let row = ledger(&pg, id).await;
    assert_eq!(row.status, "delivered");
    assert!(row.delivered);
}

#[tokio::test]
async fn a_twilio_failure_callback_fails_the_row_with_twilios_code() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("sms")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(twilio_created("SM1123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let client = deps.pool.get().await.unwrap();
    crm_domain::twilio::store::apply_status(
        &client,
        "SM1123456789abcdef0123456789abcdef",
        Some("undelivered"),
        &MessageStatus::predecessors(MessageStatus::Undelivered),
        Some((30003, crm_domain::twilio::status::error_message(30003))),
    )
    .await
    .unwrap();
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref(), row.failed),
        ("failed", Some("30003"), true)
    );
    // A late "delivered" does not undo it (terminal).
    crm_domain::twilio::store::apply_status(
        &client,
        "SM1123456789abcdef0123456789abcdef",
        Some("delivered"),
        &MessageStatus::predecessors(MessageStatus::Delivered),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ledger(&pg, id).await.status, "failed");
}

#[tokio::test]
async fn a_twilio_refusal_fails_the_row_and_server_errors_retry_through_the_message() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let who = contact(&pg).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"code": 21610, "message": format!("{PHONE} opted out")})),
        )
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    let camp = campaign(&pg, &template("sms")).await;
    let id = released(&pg, camp, who).await;
    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    assert_eq!(ledger(&pg, id).await.status, "sending");
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("21610"))
    );
    assert!(!row.error.unwrap().contains(PHONE));
    let messages: i64 = pg
        .query_one(
            "select count(*) from messages where contact_id = $1",
            &[&who],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(messages, 1, "the retry reused the message");
}

#[tokio::test]
async fn a_whatsapp_content_template_sends_content_sid_and_variables() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let who = contact(&pg).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .respond_with(twilio_created("SM2123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    let camp = campaign(
        &pg,
        &Template {
            channel: "whatsapp",
            body: "Merhaba {{1}}, {{2}} için fırsatlar",
            subject: None,
            content_sid: Some("HX0123456789abcdef0123456789abcdef"),
            variables: json!(["contact.first_name", "contact.company"]),
        },
    )
    .await;
    let id = released(&pg, camp, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let fields = form_pairs(&twilio.received_requests().await.unwrap()[0].body);
    assert_eq!(fields[0], ("To".into(), format!("whatsapp:{PHONE}")));
    assert_eq!(fields[1], ("From".into(), "whatsapp:+14155238886".into()));
    assert_eq!(
        fields[2],
        (
            "ContentSid".into(),
            "HX0123456789abcdef0123456789abcdef".into()
        )
    );
    assert_eq!(fields[3].0, "ContentVariables");
    assert_eq!(
        serde_json::from_str::<Value>(&fields[3].1).unwrap(),
        json!({"1": "Ana", "2": "Kadıköy Emlak"})
    );
    assert_eq!(fields.len(), 5, "{fields:?}");
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.provider_id.as_deref()),
        ("sent", Some("SM2123456789abcdef0123456789abcdef"))
    );
    let template_sid: Option<String> = pg
        .query_one(
            "select template_sid from messages where id = $1",
            &[&row.message_id.unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        template_sid.as_deref(),
        Some("HX0123456789abcdef0123456789abcdef")
    );

    // A free-form WhatsApp text to a contact with no inbound message in 24 h: window closed.
    let mut t = template("whatsapp");
    t.body = "Hi {{contact.first_name}}";
    let free = campaign(&pg, &t).await;
    let id = released(&pg, free, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.skip_reason.as_deref()),
        ("skipped", Some("window_closed"))
    );
}

#[tokio::test]
async fn a_webhook_delivery_is_a_signed_post_and_2xx_delivers() {
    let (db, hook) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let who = contact(&pg).await;
    Mock::given(method("POST"))
        .and(path("/campaign-hook"))
        .respond_with(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .expect(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/campaign-hook"))
        .respond_with(ResponseTemplate::new(410))
        .expect(1)
        .mount(&hook)
        .await;
    let deps = deps(
        &db,
        Mocks {
            webhook: Some(&hook),
            ..Default::default()
        },
    );
    let camp = campaign(&pg, &template("webhook")).await;
    let id = released(&pg, camp, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let req = &hook.received_requests().await.unwrap()[0];
    assert_eq!(req.url.query(), Some("k=s3cret"));
    let h = |n: &str| req.headers.get(n).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("webhook-id"), id.to_string());
    let ts: i64 = h("webhook-timestamp").parse().unwrap();
    assert!(
        SigningKey::parse(HOOK_SECRET).unwrap().verify(
            &id.to_string(),
            ts,
            &req.body,
            &h("webhook-signature")
        ),
        "Standard Webhooks signature"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&req.body).unwrap(),
        json!({
            "delivery_id": id,
            "campaign_id": camp,
            "contact_id": who,
            "channel": "webhook",
            "body": "Hi Ana, spring offers at Kadıköy Emlak."
        })
    );
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.provider_id.as_deref()),
        ("delivered", Some("http-204"))
    );
    assert!(row.sent && row.delivered);
    // A refusal (410) fails the next row for good.
    let other = pg
        .query_one(
            "insert into contacts (email, first_name, company) values ('b@example.com', 'Bo', 'B Ltd') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let id = released(&pg, camp, other).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("http_410"))
    );
}

#[tokio::test]
async fn an_sms_whose_twilio_call_outcome_is_unknown_fails_the_row_as_uncertain_not_resent() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("sms")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(twilio_created("SM4123456789abcdef0123456789abcdef"))
        .expect(0)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    // An earlier receive created the message and claimed the Twilio call,
    // then died before recording Twilio's answer (no SID), past the lease.
    let message: Uuid = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status) \
             values ('out', 'sms', $1, 'Hi', 'queued') returning id",
            &[&who],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into message_sends (message_id, attempts, attempted_at) values ($1, 1, now() - interval '1 hour')",
        &[&message],
    )
    .await
    .unwrap();
    pg.execute(
        "update campaign_deliveries set message_id = $2, attempts = 1 where id = $1",
        &[&id, &message],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("uncertain"))
    );
    // Received again: nothing more happens (expect(0) on Twilio).
    assert_eq!(run(&deps, id, 3).await, Outcome::Done);
}

#[tokio::test]
async fn an_sms_answered_with_a_twilio_500_fails_the_row_as_uncertain_with_one_call() {
    // Twilio may have sent it before answering 500: flagged, never resent.
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("sms")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("uncertain"))
    );
    assert!(row.error.unwrap().starts_with("uncertain: "));
    // Received again: nothing more happens (expect(1) on Twilio).
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
}

#[tokio::test]
async fn a_webhook_timeout_is_retried_with_the_same_webhook_id_for_the_receiver_to_dedupe() {
    // Unlike SES, the webhook channel may repeat a call whose outcome is
    // unknown: every attempt carries the delivery id as `webhook-id`, and
    // Standard Webhooks receivers drop a webhook-id they have already seen.
    let (db, hook) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let who = contact(&pg).await;
    Mock::given(method("POST"))
        .and(path("/campaign-hook"))
        .respond_with(ResponseTemplate::new(204).set_delay(std::time::Duration::from_secs(3)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/campaign-hook"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&hook)
        .await;
    let deps = deps(
        &db,
        Mocks {
            webhook: Some(&hook),
            ..Default::default()
        },
    );
    let camp = campaign(&pg, &template("webhook")).await;
    let id = released(&pg, camp, who).await;
    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.attempted,
            row.error_code.as_deref()
        ),
        ("sending", false, Some("retryable"))
    );
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let reqs = hook.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_eq!(
            req.headers.get("webhook-id").unwrap().to_str().unwrap(),
            id.to_string()
        );
    }
    assert_eq!(reqs[0].body, reqs[1].body);
    let row = ledger(&pg, id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 2));
}
