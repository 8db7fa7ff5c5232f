//! `send_message` jobs: the exact Twilio Messages API request (on a mock
//! Twilio), error mapping, retry only when Twilio did not take the message
//! (429, 503, connect failures), and never sending a message twice (5xx,
//! timeouts after sending: failed as uncertain).

use crm_platform::{
    config::{DatabaseConfig, Env},
    db::build_pool,
};
use crm_testkit::TestDb;
use send_worker::{Deps, Message, Outcome, SendConfig, process};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, header, method, path},
};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-twilio-token-0123456789abcd";
const PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

fn deps(db: &TestDb, twilio: Option<&str>) -> Deps {
    let mut pairs = vec![
        ("SEND_MAX_ATTEMPTS", "3"),
        ("OUTBOUND_WEBHOOK_TIMEOUT_MS", "2000"),
    ];
    if let Some(base) = twilio {
        pairs.extend([
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("TWILIO_PHONE_NUMBER", "+14155238886"),
            ("TWILIO_API_BASE_URL", base),
            ("PUBLIC_BASE_URL", "https://crm.example.com"),
        ]);
    }
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap();
    Deps::with(pool, SendConfig::from_env(&Env::from_pairs(pairs)).unwrap()).unwrap()
}

/// A queued outbound message to a contact; returns its id.
async fn queued(
    pg: &tokio_postgres::Client,
    channel: &str,
    body: &str,
    template: Option<&str>,
) -> Uuid {
    let contact: Uuid = pg
        .query_one(
            "insert into contacts (phone, full_name) values ('+905321234567', 'Ayşe') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let id: Uuid = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status, template_sid) \
             values ('out', $1, $2, $3, 'queued', $4) returning id",
            &[&channel, &contact, &body, &template],
        )
        .await
        .unwrap()
        .get(0);
    if template.is_some() {
        pg.execute(
            "insert into message_sends (message_id, content_variables) values ($1, '{\"1\": \"Ayşe\", \"4\": \"Kadıköy\"}')",
            &[&id],
        )
        .await
        .unwrap();
    }
    id
}

async fn run(deps: &Deps, id: Uuid, receive_count: u32) -> Outcome {
    let body = json!({"kind": "send_message", "v": 1, "message_id": id}).to_string();
    process(
        &Message {
            message_id: "sqs-1",
            body: &body,
            receive_count,
        },
        deps,
    )
    .await
}

async fn row(
    pg: &tokio_postgres::Client,
    id: Uuid,
) -> (Option<String>, String, Option<i32>, Option<String>) {
    let r = pg
        .query_one(
            "select provider_sid, status, error_code, error_message from messages where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
}

fn form(req: &wiremock::Request) -> Vec<(String, String)> {
    form_pairs(&req.body)
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let dec = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            };
            (dec(k), dec(v))
        })
        .collect()
}

#[tokio::test]
async fn a_whatsapp_text_is_posted_to_twilio_exactly_and_its_sid_stored() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "whatsapp", "Merhaba Ayşe", None).await;
    let auth = format!("Basic {}", base64_encode(&format!("{SID}:{TOKEN}")));
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("authorization", auth.as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(created("SM0123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let req = &twilio.received_requests().await.unwrap()[0];
    assert_eq!(
        form(req),
        vec![
            ("To".into(), "whatsapp:+905321234567".into()),
            ("From".into(), "whatsapp:+14155238886".into()),
            ("Body".into(), "Merhaba Ayşe".into()),
            (
                "StatusCallback".into(),
                "https://crm.example.com/api/twilio/webhook".into()
            ),
        ]
    );
    assert_eq!(
        row(&pg, id).await,
        (
            Some("SM0123456789abcdef0123456789abcdef".into()),
            "queued".into(),
            None,
            None
        )
    );
    // Redelivered: already has a SID, so Twilio is not called again (expect(1)).
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
}

#[tokio::test]
async fn a_template_is_sent_with_content_sid_and_variables_and_sms_uses_the_plain_number() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(
        &pg,
        "sms",
        "Hi Ayşe",
        Some("HX0123456789abcdef0123456789abcdef"),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(created("SM1123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let fields = form(&twilio.received_requests().await.unwrap()[0]);
    assert_eq!(fields[0], ("To".into(), "+905321234567".into()));
    assert_eq!(fields[1], ("From".into(), "+14155238886".into()));
    assert_eq!(
        fields[2],
        (
            "ContentSid".into(),
            "HX0123456789abcdef0123456789abcdef".into()
        )
    );
    assert_eq!(fields[3].0, "ContentVariables");
    let vars: Value = serde_json::from_str(&fields[3].1).unwrap();
    assert_eq!(vars, json!({"1": "Ayşe", "4": "Kadıköy"}));
    assert!(!fields.iter().any(|(k, _)| k == "Body"));
}

#[tokio::test]
async fn twilio_refusals_fail_the_message_with_code_and_reason_for_good() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "whatsapp", "late", None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"code": 63016, "message": "Failed to send freeform message", "status": 400}),
        ))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(
        row(&pg, id).await,
        (
            None,
            "failed".into(),
            Some(63016),
            Some("WhatsApp 24-hour window closed: send a template".into())
        )
    );
    assert_eq!(
        run(&deps, id, 2).await,
        Outcome::Done,
        "failed for good: not retried"
    );
}

/// `(attempted_at is set, attempts)` of the message's send row.
async fn claim_state(pg: &tokio_postgres::Client, id: Uuid) -> (bool, i32) {
    let r = pg
        .query_one(
            "select attempted_at is not null, attempts from message_sends where message_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn a_503_is_not_taken_and_retries_then_sends_once() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "sms", "hello", None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    assert_eq!(row(&pg, id).await.1, "queued");
    // Twilio documents 503 as not processed: the claim is released.
    assert_eq!(claim_state(&pg, id).await, (false, 1));
    Mock::given(method("POST"))
        .and(body_string_contains("Body=hello"))
        .respond_with(created("SM2123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(
        row(&pg, id).await.0.as_deref(),
        Some("SM2123456789abcdef0123456789abcdef")
    );
}

#[tokio::test]
async fn a_500_502_or_504_is_uncertain_failed_and_never_resent() {
    // Twilio may have taken the message before its edge answered 5xx; the
    // Messages API has no idempotency key, so a retry could send it twice.
    for http in [500, 502, 504] {
        let (db, twilio) = (TestDb::new().await, MockServer::start().await);
        let pg = db.client().await;
        let id = queued(&pg, "sms", "hello", None).await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(http))
            .expect(1)
            .mount(&twilio)
            .await;
        let deps = deps(&db, Some(&twilio.uri()));
        assert_eq!(run(&deps, id, 1).await, Outcome::Done, "{http}");
        let (sid, status, code, reason) = row(&pg, id).await;
        assert_eq!(
            (sid, status.as_str(), code),
            (None, "failed", None),
            "{http}"
        );
        let reason = reason.unwrap();
        assert!(reason.starts_with("uncertain: "), "{reason}");
        assert!(reason.contains(&format!("HTTP {http}")), "{reason}");
        // The claim stays: nothing may release it for a resend.
        assert_eq!(claim_state(&pg, id).await, (true, 1), "{http}");
        // Redelivered: failed already, Twilio not called again (expect(1)).
        assert_eq!(run(&deps, id, 2).await, Outcome::Done, "{http}");
    }
}

#[tokio::test]
async fn a_timeout_after_the_request_was_sent_is_uncertain_and_never_resent() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "whatsapp", "hello", None).await;
    // Twilio takes it but answers after the client's 2 s timeout.
    Mock::given(method("POST"))
        .respond_with(
            created("SM6123456789abcdef0123456789abcdef")
                .set_delay(std::time::Duration::from_millis(3_000)),
        )
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let (sid, status, _, reason) = row(&pg, id).await;
    assert_eq!((sid, status.as_str()), (None, "failed"));
    let reason = reason.unwrap();
    assert!(reason.starts_with("uncertain: "), "{reason}");
    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
}

#[tokio::test]
async fn a_connection_refused_sent_nothing_and_is_retried() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "sms", "hello", None).await;
    // A port nothing listens on: the request never left.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let deps_closed = deps(&db, Some(&closed));
    assert!(matches!(
        run(&deps_closed, id, 1).await,
        Outcome::Retry { .. }
    ));
    assert_eq!(row(&pg, id).await.1, "queued");
    assert_eq!(claim_state(&pg, id).await, (false, 1));
    Mock::given(method("POST"))
        .respond_with(created("SM7123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(
        row(&pg, id).await.0.as_deref(),
        Some("SM7123456789abcdef0123456789abcdef")
    );
}

#[tokio::test]
async fn retries_that_run_out_fail_the_message() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "sms", "hello", None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert!(matches!(
        run(&deps, id, 3).await,
        Outcome::DeadLetter { .. }
    ));
    let (_, status, _, reason) = row(&pg, id).await;
    assert_eq!(status, "failed");
    assert!(reason.unwrap().starts_with("gave up after retries"));
}

#[tokio::test]
async fn an_attempt_with_unknown_outcome_is_failed_not_resent() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "sms", "hello", None).await;
    // A worker claimed it long ago and died before storing Twilio's answer.
    pg.execute(
        "insert into message_sends (message_id, attempts, attempted_at) values ($1, 1, now() - interval '1 hour')",
        &[&id],
    )
    .await
    .unwrap();
    Mock::given(method("POST"))
        .respond_with(created("SM3123456789abcdef0123456789abcdef"))
        .expect(0)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(
        row(&pg, id).await,
        (
            None,
            "failed".into(),
            None,
            Some("uncertain: previous attempt outcome unknown".into())
        )
    );
}

#[tokio::test]
async fn an_attempt_in_flight_elsewhere_is_retried_later_not_sent_twice() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "sms", "hello", None).await;
    pg.execute(
        "insert into message_sends (message_id, attempts, attempted_at) values ($1, 1, now())",
        &[&id],
    )
    .await
    .unwrap();
    Mock::given(method("POST"))
        .respond_with(created("SM4123456789abcdef0123456789abcdef"))
        .expect(0)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    assert_eq!(row(&pg, id).await.1, "queued");
}

#[tokio::test]
async fn without_credentials_the_local_sink_records_and_assigns_a_fake_sid() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let id = queued(&pg, "whatsapp", "Merhaba", None).await;
    let deps = deps(&db, None);
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let (sid, status, _, _) = row(&pg, id).await;
    assert_eq!(sid, Some(format!("SMlocal{}", id.simple())));
    assert_eq!(status, "sent");
    let r = pg
        .query_one(
            "select sink, local_request from message_sends where message_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "local");
    assert_eq!(
        r.get::<_, Value>(1),
        json!({"To": "whatsapp:+905321234567", "Body": "Merhaba"})
    );
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn two_concurrent_receives_of_one_job_call_twilio_once() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "sms", "hello", None).await;
    Mock::given(method("POST"))
        .respond_with(
            created("SM5123456789abcdef0123456789abcdef")
                .set_delay(std::time::Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    let (a, b) = tokio::join!(run(&deps, id, 1), run(&deps, id, 1));
    // Whichever interleaving the scheduler picks (the second receive sees the
    // first one's fresh attempt and backs off, or runs after it and finds the
    // SID), Twilio is called once: the mock's `.expect(1)` checks that.
    let outcomes = [a, b];
    assert!(outcomes.contains(&Outcome::Done), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Done | Outcome::Retry { .. })),
        "{outcomes:?}"
    );
    // The retried copy finds the SID and stops.
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(
        row(&pg, id).await.0.as_deref(),
        Some("SM5123456789abcdef0123456789abcdef")
    );
}

#[tokio::test]
async fn an_opt_out_after_acceptance_is_honoured_at_send_time() {
    // The API checked opt-outs when it accepted the message; the contact
    // opts out (STOP, link, API) before the worker gets to it.
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let id = queued(&pg, "whatsapp", "hello", None).await;
    let other: Uuid = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status) \
             select 'out', 'sms', contact_id, 'hello', 'queued' from messages where id = $1 \
             returning id",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into opt_outs (contact_id, channel, source) \
         select contact_id, 'whatsapp', 'api' from messages where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    Mock::given(method("POST"))
        .and(body_string_contains("To=%2B905321234567"))
        .respond_with(created("SM4123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(&db, Some(&twilio.uri()));
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let (sid, status, code, reason) = row(&pg, id).await;
    assert_eq!((sid, status.as_str(), code), (None, "failed", None));
    assert!(reason.unwrap().starts_with("opted_out"));
    let claimed: i64 = pg
        .query_one(
            "select count(*) from message_sends where message_id = $1 and attempted_at is not null",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 0);
    // An opt-out of another channel does not stop an SMS (one Twilio call).
    assert_eq!(run(&deps, other, 1).await, Outcome::Done);
    assert_eq!(row(&pg, other).await.1, "queued");
    assert!(row(&pg, other).await.0.is_some());
}
