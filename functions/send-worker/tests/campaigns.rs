//! `send_campaign_message` jobs, e-mail and the send-time rules: the exact
//! SES request with its unsubscribe link and headers, the send-time checks
//! (paused, cancelled, module off, opt-out after the snapshot), idempotency
//! by delivery id (a job twice → one provider call; an attempt with an
//! unknown outcome → failed as uncertain, never resent), retries with backoff
//! and permanent failures, and logs free of bodies and contact details.
//! SMS, WhatsApp, webhook and status callbacks: `campaign_channels.rs`.

mod campaign_support;

use campaign_support::*;
use crm_platform::{
    config::{DatabaseConfig, Env},
    db::build_pool,
};
use crm_testkit::TestDb;
use send_worker::{Deps, Outcome, SendConfig};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::{
    Mock, MockServer,
    matchers::{method, path},
};

#[tokio::test]
async fn an_email_goes_to_ses_exactly_once_with_its_unsubscribe_link_and_headers() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .and(path(SES_PATH))
        .respond_with(ses_ok("0100018f-ses-1"))
        .expect(1)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let req = &ses.received_requests().await.unwrap()[0];
    assert!(
        req.headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let text = body["Content"]["Simple"]["Body"]["Text"]["Data"]
        .as_str()
        .unwrap()
        .to_string();
    let link = text.rsplit("Unsubscribe: ").next().unwrap().to_string();
    assert!(link.starts_with("https://crm.example.com/api/v1/crm/unsubscribe?token="));
    assert_eq!(
        body,
        json!({
            "FromEmailAddress": "news@mail.acme.test",
            "Destination": {"ToAddresses": [EMAIL]},
            "Content": {"Simple": {
                "Subject": {"Data": "Offers for Ana", "Charset": "UTF-8"},
                "Body": {"Text": {
                    "Data": format!("Hi Ana, spring offers at Kadıköy Emlak.\n\n--\nUnsubscribe: {link}"),
                    "Charset": "UTF-8"
                }},
                "Headers": [
                    {"Name": "List-Unsubscribe", "Value": format!("<{link}>")},
                    {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}
                ]
            }}
        })
    );
    let claims = token_claims(&text);
    assert_eq!(
        (
            claims.contact_id,
            claims.campaign_id,
            claims.channel.as_str()
        ),
        (who, Some(camp), "email")
    );
    let expected_expiry = chrono::Utc::now().timestamp() + 90 * 86_400;
    assert!((claims.expires - expected_expiry).abs() < 60, "90 days");
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.provider_id.as_deref(),
            row.attempts
        ),
        ("sent", Some("0100018f-ses-1"), 1)
    );
    assert!(row.sent && row.attempted && row.error_code.is_none());
    // The same job again (SQS redelivery): the row is `sent`, SES is not called (expect(1)).
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(ledger(&pg, id).await.attempts, 1);
}

#[tokio::test]
async fn two_concurrent_receives_of_one_delivery_call_the_provider_once() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .and(path(SES_PATH))
        .respond_with(ses_ok("ses-once").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    let (a, b) = tokio::join!(run(&deps, id, 1), run(&deps, id, 1));
    let mut outcomes = [a, b].map(|o| matches!(o, Outcome::Done));
    outcomes.sort();
    // One sent it; the other found the claim in flight (retry later) or the row sent.
    assert!(outcomes[1], "{outcomes:?}");
    assert_eq!(ledger(&pg, id).await.status, "sent");
}

#[tokio::test]
async fn an_attempt_whose_outcome_is_unknown_is_failed_as_uncertain_never_resent() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(ses_ok("never"))
        .expect(0)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    // A worker claimed the call and died before recording SES's answer: the
    // claim is younger than the lease, so it may still be in flight.
    pg.execute(
        "update campaign_deliveries set attempted_at = now(), attempts = 1 where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    assert_eq!(ledger(&pg, id).await.status, "sending");
    // Past the lease with still no answer: uncertain, failed, not sent again.
    pg.execute(
        "update campaign_deliveries set attempted_at = now() - interval '1 hour' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("uncertain"))
    );
    assert!(row.failed && row.provider_id.is_none());
}

#[tokio::test]
async fn paused_module_off_cancelled_and_opted_out_rows_are_not_sent() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    Mock::given(method("POST"))
        .respond_with(ses_ok("never"))
        .expect(0)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    let who = contact(&pg).await;

    // Paused after release: back to queued, released_at cleared.
    let paused = campaign(&pg, &template("email")).await;
    let id = released(&pg, paused, who).await;
    pg.execute(
        "update campaigns set status = 'paused', pause_reason = 'paused by ops' where id = $1",
        &[&paused],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.released, row.attempted),
        ("queued", false, false)
    );

    // Module switched off: queued too; back on and re-released: it sends.
    let off = campaign(&pg, &template("email")).await;
    let id = released(&pg, off, who).await;
    pg.execute(
        "update module_switches set enabled = false where module = 'crm'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!((row.status.as_str(), row.released), ("queued", false));
    pg.execute(
        "update module_switches set enabled = true where module = 'crm'",
        &[],
    )
    .await
    .unwrap();

    // Cancelled: cancelled.
    let cancelled = campaign(&pg, &template("email")).await;
    let id = released(&pg, cancelled, who).await;
    pg.execute(
        "update campaigns set status = 'cancelled', cancelled_at = now() where id = $1",
        &[&cancelled],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(ledger(&pg, id).await.status, "cancelled");

    // Opted out after the snapshot (an unsubscribe link, STOP, Instantly): skipped.
    let live = campaign(&pg, &template("email")).await;
    let id = released(&pg, live, who).await;
    pg.execute(
        "insert into opt_outs (contact_id, channel, source) values ($1, 'email', 'unsubscribe_link')",
        &[&who],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.skip_reason.as_deref()),
        ("skipped", Some("opted_out"))
    );
    // The e-mail opt-out does not suppress SMS (one list per channel): sent
    // (to the local Twilio sink here).
    let other = campaign(&pg, &template("sms")).await;
    let id = released(&pg, other, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(ledger(&pg, id).await.status, "sent");
}

#[tokio::test]
async fn a_held_row_sends_once_after_resume() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(ses_ok("after-resume"))
        .expect(1)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    pg.execute(
        "update campaigns set status = 'paused' where id = $1",
        &[&camp],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    // Resume: the runner re-releases the row and enqueues a new job.
    pg.execute(
        "update campaigns set status = 'sending' where id = $1",
        &[&camp],
    )
    .await
    .unwrap();
    pg.execute(
        "update campaign_deliveries set status = 'sending', released_at = now() where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    // The old job delivered late: nothing more.
    assert_eq!(run(&deps, id, 3).await, Outcome::Done);
    assert_eq!(
        ledger(&pg, id).await.provider_id.as_deref(),
        Some("after-resume")
    );
}

#[tokio::test]
async fn throttling_retries_with_backoff_then_fails_when_attempts_run_out() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(ses_error(429, "TooManyRequestsException"))
        .expect(3)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    assert_eq!(
        run(&deps, id, 1).await,
        Outcome::Retry {
            delay: Duration::from_secs(30)
        }
    );
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.attempts,
            row.attempted,
            row.error_code.as_deref()
        ),
        ("sending", 1, false, Some("retryable"))
    );
    assert_eq!(
        run(&deps, id, 2).await,
        Outcome::Retry {
            delay: Duration::from_secs(60)
        }
    );
    // SEND_MAX_ATTEMPTS = 3: the third refusal fails the row with its reason.
    assert_eq!(run(&deps, id, 3).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.attempts, row.error_code.as_deref()),
        ("failed", 3, Some("retries_exhausted"))
    );
    let error = row.error.unwrap();
    assert!(error.contains("TooManyRequestsException"), "{error}");
    assert!(!error.contains(EMAIL), "{error}");
}

#[tokio::test]
async fn a_server_error_is_uncertain_and_never_resent() {
    // SES may have queued the e-mail before answering 5xx, and it has no
    // idempotency key: the row fails `uncertain` (flagged), no second call.
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(ses_error(500, "InternalFailure"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&ses)
        .await;
    Mock::given(method("POST"))
        .respond_with(ses_ok("second-try"))
        .expect(0)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.attempts,
            row.attempted,
            row.provider_id.as_deref(),
            row.error_code.as_deref()
        ),
        ("failed", 1, true, None, Some("uncertain"))
    );
    assert!(row.error.unwrap().contains("InternalFailure"));
    assert_eq!(ses.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_ses_timeout_after_sending_is_uncertain_and_never_resent() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    Mock::given(method("POST"))
        .respond_with(ses_ok("too-late").set_delay(Duration::from_secs(3)))
        .mount(&ses)
        .await;
    let mut deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    // The request is sent; the answer comes after the call's timeout.
    use aws_sdk_sesv2::config::{
        BehaviorVersion, Credentials, Region, retry::RetryConfig, timeout::TimeoutConfig,
    };
    let conf = aws_sdk_sesv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDEXAMPLE", "s", None, None, "test"))
        .endpoint_url(ses.uri())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    deps.mailer = std::sync::Arc::new(crm_platform::email::SesMailer::with_client(
        crm_platform::email::SesConfig {
            from: "news@mail.acme.test".into(),
            configuration_set: None,
            timeout: Duration::from_millis(300),
        },
        aws_sdk_sesv2::Client::from_conf(conf),
    ));
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.attempts, row.error_code.as_deref()),
        ("failed", 1, Some("uncertain"))
    );
    assert_eq!(ses.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_rejected_email_fails_for_good_and_a_bad_template_is_never_sent() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let who = contact(&pg).await;
    Mock::given(method("POST"))
        .respond_with(ses_error(400, "MessageRejected"))
        .expect(1)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    let camp = campaign(&pg, &template("email")).await;
    let id = released(&pg, camp, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref(), row.attempts),
        ("failed", Some("rejected"), 1)
    );
    assert!(row.error.unwrap().contains("MessageRejected"));
    // A variable with no value for this contact: invalid_template, SES not called.
    let mut t = template("email");
    t.body = "Hi {{contact.attributes.budget}}";
    let camp = campaign(&pg, &t).await;
    let id = released(&pg, camp, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref(), row.attempts),
        ("failed", Some("invalid_template"), 0)
    );
    assert!(row.error.unwrap().contains("contact.attributes.budget"));
}

#[tokio::test]
async fn without_an_unsubscribe_secret_emails_are_failed_not_sent_without_a_link() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 2).unwrap()).unwrap();
    let deps = Deps::with(
        pool,
        SendConfig::from_env(&Env::from_pairs([("SEND_MAX_ATTEMPTS", "3")])).unwrap(),
    )
    .unwrap();
    assert!(deps.mailer.is_local());
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("unsubscribe_unconfigured"))
    );
}

#[tokio::test]
async fn the_sample_sqs_event_runs_through_the_lambda_handler() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    let mut event: Value = serde_json::from_str(&crm_testkit::event(
        "send-worker/send-campaign-message.json",
    ))
    .unwrap();
    let body = event["Records"][0]["body"]
        .as_str()
        .unwrap()
        .replace("0192f0c8-7a00-7000-8000-00000000d001", &id.to_string());
    event["Records"][0]["body"] = json!(body);
    let deps = deps(&db, Mocks::default());
    assert!(deps.mailer.is_local());
    let resp = send_worker::handle(serde_json::from_value(event).unwrap(), &deps).await;
    assert!(resp.batch_item_failures.is_empty());
    let row = ledger(&pg, id).await;
    assert_eq!(row.status, "sent");
    assert_eq!(row.provider_id, Some(format!("local-{}", id.simple())));
}

#[tokio::test]
async fn in_production_without_ses_emails_fail_visibly_instead_of_a_local_sink_sent() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("APP_ENV", "production"),
        ("UNSUBSCRIBE_SECRET", UNSUB_SECRET),
        ("PUBLIC_BASE_URL", "https://crm.example.com"),
    ]);
    let common = crm_platform::config::CommonConfig::from_env(&env).unwrap();
    let deps = Deps::new(&common, &env).unwrap();
    assert!(!deps.mailer.is_local());
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("rejected"))
    );
    assert!(row.error.unwrap().contains("SES_FROM_ADDRESS"));
    // The webhook channel likewise: no local sink in production.
    let hook = campaign(&pg, &template("webhook")).await;
    let id = released(&pg, hook, who).await;
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("webhook_unconfigured"))
    );
}

#[tokio::test]
async fn giving_up_as_uncertain_never_overwrites_an_answer_the_other_attempt_recorded() {
    // The last receive found another attempt holding the row and gives up;
    // meanwhile that attempt recorded SES's answer (`sent`): it stands.
    let db = TestDb::new().await;
    let pg = db.client().await;
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 2).unwrap()).unwrap();
    let client = pool.get().await.unwrap();
    let (camp, who) = (campaign(&pg, &template("email")).await, contact(&pg).await);
    let id = released(&pg, camp, who).await;
    pg.execute(
        "update campaign_deliveries set attempted_at = now(), attempts = 1 where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    crm_domain::campaigns::delivery::record_sent(&client, id, "0100018f-ses-other")
        .await
        .unwrap();
    let failed =
        crm_domain::campaigns::delivery::record_uncertain(&client, id, "receives exhausted")
            .await
            .unwrap();
    assert!(!failed);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.provider_id.as_deref(),
            row.error_code
        ),
        ("sent", Some("0100018f-ses-other"), None)
    );
    // Still `sending` (no answer recorded): failed as uncertain.
    let camp = campaign(&pg, &template("email")).await;
    let id = released(&pg, camp, who).await;
    assert!(
        crm_domain::campaigns::delivery::record_uncertain(&client, id, "receives exhausted")
            .await
            .unwrap()
    );
    let row = ledger(&pg, id).await;
    assert_eq!(
        (row.status.as_str(), row.error_code.as_deref()),
        ("failed", Some("uncertain"))
    );
}

#[tokio::test]
async fn a_disabled_channel_holds_the_row_and_a_withdrawn_template_fails_it() {
    let (db, ses) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    Mock::given(method("POST"))
        .respond_with(ses_ok("once"))
        .expect(1)
        .mount(&ses)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            ..Default::default()
        },
    );
    let who = contact(&pg).await;

    // The e-mail channel disabled after the release: back to queued, not sent.
    let camp = campaign(&pg, &template("email")).await;
    let id = released(&pg, camp, who).await;
    pg.execute(
        "update channels set enabled = false where name = 'email'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.released,
            row.attempted,
            row.attempts
        ),
        ("queued", false, false, 0)
    );
    // Enabled again and re-released: it goes, once.
    pg.execute(
        "update channels set enabled = true where name = 'email'",
        &[],
    )
    .await
    .unwrap();
    pg.execute(
        "update campaign_deliveries set status = 'sending', released_at = now() where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(ledger(&pg, id).await.status, "sent");

    // The template withdrawn (no longer approved) after the snapshot: failed.
    for status in ["disabled", "rejected", "pending"] {
        let camp = campaign(&pg, &template("email")).await;
        let id = released(&pg, camp, who).await;
        pg.execute(
            "update message_templates set status = $2 \
             where id = (select template_id from campaigns where id = $1)",
            &[&camp, &status],
        )
        .await
        .unwrap();
        assert_eq!(run(&deps, id, 1).await, Outcome::Done);
        let row = ledger(&pg, id).await;
        assert_eq!(
            (row.status.as_str(), row.error_code.as_deref(), row.attempts),
            ("failed", Some("invalid_template"), 0),
            "{status}"
        );
        assert!(row.error.unwrap().contains(status));
    }
}
