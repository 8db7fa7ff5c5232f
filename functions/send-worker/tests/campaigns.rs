//! `send_campaign_message` jobs: each channel's exact provider request (a
//! mock SES, the mock Twilio, a mock webhook receiver), the send-time checks
//! (paused, cancelled, module off, opt-out after the snapshot), idempotency by
//! delivery id (a job twice → one provider call; an attempt with an unknown
//! outcome → failed as uncertain, never resent), retries and permanent
//! failures, Twilio status callbacks moving the ledger, and logs free of
//! bodies and contact details. Ledger rows are inserted directly, as the
//! campaign runner would leave them (`sending`, released).

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use crm_domain::{Secret, twilio::status::MessageStatus, unsubscribe, webhooks_out::SigningKey};
use crm_platform::{
    config::{DatabaseConfig, Env},
    db::build_pool,
    email::{SesConfig, SesMailer},
};
use crm_testkit::TestDb;
use send_worker::{Deps, Message, Outcome, SendConfig, process};
use serde_json::{Value, json};
use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

const UNSUB_SECRET: &str = "test-unsubscribe-secret-0123456789";
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-twilio-token-0123456789abcd";
const TWILIO_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const SES_PATH: &str = "/v2/email/outbound-emails";
const EMAIL: &str = "ana.lima@example.com";
const PHONE: &str = "+905321234567";

/// Which mock providers the worker talks to.
#[derive(Default)]
struct Mocks<'a> {
    ses: Option<&'a MockServer>,
    twilio: Option<&'a MockServer>,
    webhook: Option<&'a MockServer>,
}

fn deps(db: &TestDb, mocks: Mocks<'_>) -> Deps {
    let hook_url = mocks
        .webhook
        .map(|w| format!("{}/campaign-hook?k=s3cret", w.uri()));
    let twilio = mocks.twilio.map(|t| t.uri());
    let mut pairs = vec![
        ("SEND_MAX_ATTEMPTS", "3"),
        ("OUTBOUND_WEBHOOK_TIMEOUT_MS", "2000"),
        ("UNSUBSCRIBE_SECRET", UNSUB_SECRET),
        ("PUBLIC_BASE_URL", "https://crm.example.com"),
    ];
    if let Some(url) = hook_url.as_deref() {
        pairs.extend([
            ("CAMPAIGN_WEBHOOK_URL", url),
            ("CAMPAIGN_WEBHOOK_SECRET", HOOK_SECRET),
        ]);
    }
    if let Some(base) = twilio.as_deref() {
        pairs.extend([
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("TWILIO_PHONE_NUMBER", "+14155238886"),
            ("TWILIO_API_BASE_URL", base),
        ]);
    }
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap();
    let mut deps =
        Deps::with(pool, SendConfig::from_env(&Env::from_pairs(pairs)).unwrap()).unwrap();
    if let Some(ses) = mocks.ses {
        let conf = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "test-secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(ses.uri())
            .retry_config(RetryConfig::disabled())
            .build();
        deps.mailer = Arc::new(SesMailer::with_client(
            SesConfig {
                from: "news@mail.acme.test".into(),
                configuration_set: None,
                timeout: Duration::from_secs(2),
            },
            aws_sdk_sesv2::Client::from_conf(conf),
        ));
    }
    deps
}

struct Template<'a> {
    channel: &'a str,
    body: &'a str,
    subject: Option<&'a str>,
    content_sid: Option<&'a str>,
    variables: Value,
}

fn template(channel: &str) -> Template<'_> {
    Template {
        channel,
        body: "Hi {{contact.first_name}}, spring offers at {{1}}.",
        subject: (channel == "email").then_some("Offers for {{contact.first_name}}"),
        content_sid: None,
        variables: json!(["contact.company"]),
    }
}

/// A campaign in `sending` with its template; returns its id.
async fn campaign(pg: &tokio_postgres::Client, t: &Template<'_>) -> Uuid {
    let template: Uuid = pg
        .query_one(
            "insert into message_templates (name, channel, body, subject, content_sid, variables, source) \
             values ('spring ' || gen_random_uuid(), $1, $2, $3, $4, $5, 'api') returning id",
            &[&t.channel, &t.body, &t.subject, &t.content_sid, &t.variables],
        )
        .await
        .unwrap()
        .get(0);
    let segment: Uuid = pg
        .query_one(
            "insert into segments (name, created_by) values ('all ' || gen_random_uuid(), 'test') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "update channels set enabled = true where name = $1",
        &[&t.channel],
    )
    .await
    .unwrap();
    pg.query_one(
        "insert into campaigns (name, channel, segment_id, template_id, status, created_by, queued_at, snapshot_at) \
         values ('Spring', $1, $2, $3, 'sending', 'test', now(), now()) returning id",
        &[&t.channel, &segment, &template],
    )
    .await
    .unwrap()
    .get(0)
}

async fn contact(pg: &tokio_postgres::Client) -> Uuid {
    pg.query_one(
        "insert into contacts (email, phone, first_name, last_name, company) \
         values ($1, $2, 'Ana', 'Lima', 'Kadıköy Emlak') returning id",
        &[&EMAIL, &PHONE],
    )
    .await
    .unwrap()
    .get(0)
}

/// A released ledger row, as the runner leaves it.
async fn released(pg: &tokio_postgres::Client, campaign: Uuid, contact: Uuid) -> Uuid {
    pg.query_one(
        "insert into campaign_deliveries (campaign_id, contact_id, status, released_at) \
         values ($1, $2, 'sending', now()) returning id",
        &[&campaign, &contact],
    )
    .await
    .unwrap()
    .get(0)
}

async fn run(deps: &Deps, delivery: Uuid, receive_count: u32) -> Outcome {
    let body =
        json!({"kind": "send_campaign_message", "v": 1, "delivery_id": delivery}).to_string();
    process(
        &Message {
            message_id: "sqs-c1",
            body: &body,
            receive_count,
        },
        deps,
    )
    .await
}

#[derive(Debug, PartialEq)]
struct Ledger {
    status: String,
    skip_reason: Option<String>,
    provider_id: Option<String>,
    attempts: i32,
    attempted: bool,
    error_code: Option<String>,
    error: Option<String>,
    released: bool,
    sent: bool,
    delivered: bool,
    failed: bool,
    message_id: Option<Uuid>,
}

async fn ledger(pg: &tokio_postgres::Client, id: Uuid) -> Ledger {
    let r = pg
        .query_one(
            "select status, skip_reason, provider_id, attempts, attempted_at is not null, error_code, error, \
                    released_at is not null, sent_at is not null, delivered_at is not null, \
                    failed_at is not null, message_id \
             from campaign_deliveries where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    Ledger {
        status: r.get(0),
        skip_reason: r.get(1),
        provider_id: r.get(2),
        attempts: r.get(3),
        attempted: r.get(4),
        error_code: r.get(5),
        error: r.get(6),
        released: r.get(7),
        sent: r.get(8),
        delivered: r.get(9),
        failed: r.get(10),
        message_id: r.get(11),
    }
}

fn ses_ok(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"MessageId": id}))
}

fn ses_error(status: u16, kind: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-errortype", kind)
        .set_body_json(json!({"message": format!("rejected {EMAIL}")}))
}

fn twilio_created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The token of an unsubscribe URL in `text`, verified.
fn token_claims(text: &str) -> unsubscribe::Unsubscribe {
    let start = text
        .find("https://crm.example.com/api/v1/crm/unsubscribe?token=")
        .expect("an unsubscribe link");
    let token: String = text[start..]
        .trim_start_matches("https://crm.example.com/api/v1/crm/unsubscribe?token=")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    unsubscribe::verify(
        &Secret::new(UNSUB_SECRET).unwrap(),
        &token,
        chrono::Utc::now(),
    )
    .expect("a valid token")
}

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
async fn a_server_error_then_success_sends_once() {
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
    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let row = ledger(&pg, id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.attempts,
            row.provider_id.as_deref(),
            row.error_code
        ),
        ("sent", 2, Some("second-try"), None)
    );
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

/// A writer the test's log subscriber appends to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_ids_only_never_bodies_addresses_names_or_tokens() {
    let (db, ses, twilio) = (
        TestDb::new().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    let pg = db.client().await;
    let who = contact(&pg).await;
    Mock::given(method("POST"))
        .respond_with(ses_error(400, "MessageRejected"))
        .mount(&ses)
        .await;
    Mock::given(method("POST"))
        .respond_with(twilio_created("SM3123456789abcdef0123456789abcdef"))
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            ses: Some(&ses),
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    let email = released(&pg, campaign(&pg, &template("email")).await, who).await;
    let sms = released(&pg, campaign(&pg, &template("sms")).await, who).await;
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    assert_eq!(run(&deps, email, 1).await, Outcome::Done);
    assert_eq!(run(&deps, sms, 1).await, Outcome::Done);
    drop(_guard);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains(&email.to_string()), "ids are logged: {text}");
    assert!(text.contains(&sms.to_string()));
    for secret in [
        EMAIL,
        PHONE,
        "Ana",
        "Kadıköy",
        "spring offers",
        "token=",
        UNSUB_SECRET,
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into logs: {text}"
        );
    }
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
