//! Shared support of the campaign delivery tests: a send worker wired to a
//! fresh database and mock providers (SES, Twilio, a webhook receiver), a
//! campaign in `sending` with its template, a contact, released ledger rows
//! inserted directly (as the campaign runner leaves them), and readers of
//! the ledger row.
#![allow(dead_code)]

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use crm_domain::{Secret, unsubscribe};
use crm_platform::{
    config::{DatabaseConfig, Env},
    db::build_pool,
    email::{SesConfig, SesMailer},
};
use crm_testkit::TestDb;
use send_worker::{Deps, Message, Outcome, SendConfig, process};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use uuid::Uuid;
use wiremock::{MockServer, ResponseTemplate};

pub const UNSUB_SECRET: &str = "test-unsubscribe-secret-0123456789";
pub const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-twilio-token-0123456789abcd";
pub const TWILIO_PATH: &str =
    "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
pub const SES_PATH: &str = "/v2/email/outbound-emails";
pub const EMAIL: &str = "ana.lima@example.com";
pub const PHONE: &str = "+905321234567";

/// Which mock providers the worker talks to.
#[derive(Default)]
pub struct Mocks<'a> {
    pub ses: Option<&'a MockServer>,
    pub twilio: Option<&'a MockServer>,
    pub webhook: Option<&'a MockServer>,
}

pub fn deps(db: &TestDb, mocks: Mocks<'_>) -> Deps {
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

pub struct Template<'a> {
    pub channel: &'a str,
    pub body: &'a str,
    pub subject: Option<&'a str>,
    pub content_sid: Option<&'a str>,
    pub variables: Value,
}

pub fn template(channel: &str) -> Template<'_> {
    Template {
        channel,
        body: "Hi {{contact.first_name}}, spring offers at {{1}}.",
        subject: (channel == "email").then_some("Offers for {{contact.first_name}}"),
        content_sid: None,
        variables: json!(["contact.company"]),
    }
}

/// A campaign in `sending` with its template; returns its id.
pub async fn campaign(pg: &tokio_postgres::Client, t: &Template<'_>) -> Uuid {
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

pub async fn contact(pg: &tokio_postgres::Client) -> Uuid {
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
pub async fn released(pg: &tokio_postgres::Client, campaign: Uuid, contact: Uuid) -> Uuid {
    pg.query_one(
        "insert into campaign_deliveries (campaign_id, contact_id, status, released_at) \
         values ($1, $2, 'sending', now()) returning id",
        &[&campaign, &contact],
    )
    .await
    .unwrap()
    .get(0)
}

pub async fn run(deps: &Deps, delivery: Uuid, receive_count: u32) -> Outcome {
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
pub struct Ledger {
    pub status: String,
    pub skip_reason: Option<String>,
    pub provider_id: Option<String>,
    pub attempts: i32,
    pub attempted: bool,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub released: bool,
    pub sent: bool,
    pub delivered: bool,
    pub failed: bool,
    pub message_id: Option<Uuid>,
}

pub async fn ledger(pg: &tokio_postgres::Client, id: Uuid) -> Ledger {
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

pub fn ses_ok(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"MessageId": id}))
}

pub fn ses_error(status: u16, kind: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-errortype", kind)
        .set_body_json(json!({"message": format!("rejected {EMAIL}")}))
}

pub fn twilio_created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
}

pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The token of an unsubscribe URL in `text`, verified.
pub fn token_claims(text: &str) -> unsubscribe::Unsubscribe {
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
