//! `notify_manager` jobs: a C2S close notification delivered once, by e-mail
//! (through the `Mailer` port, here a recording fake) or as a signed webhook
//! to the configured URL the manager's target key names (on a mock).

mod common;

use common::{assert_signed, deps_for, target_key};
use crm_domain::{
    mail::{MailError, MailSent, Mailer, OutboundEmail},
    outbox::BoxFuture,
};
use crm_testkit::TestDb;
use send_worker::{Message, Outcome, process};
use std::sync::{Arc, Mutex};
use uuid::Uuid;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

/// Records every e-mail; fails retryably the first `fail_first` times.
#[derive(Default)]
struct FakeMailer {
    sent: Mutex<Vec<OutboundEmail>>,
    fail_first: Mutex<u32>,
}

impl Mailer for FakeMailer {
    fn send<'a>(&'a self, email: &'a OutboundEmail) -> BoxFuture<'a, Result<MailSent, MailError>> {
        Box::pin(async move {
            let mut fail = self.fail_first.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(MailError::Retryable("throttled".into()));
            }
            self.sent.lock().unwrap().push(email.clone());
            Ok(MailSent {
                provider_id: format!("ses-{}", email.reference.simple()),
            })
        })
    }
}

/// A closed lead, its event, a manager and one pending notification; returns its id.
async fn notification(
    db: &TestDb,
    channel: &str,
    email: Option<&str>,
    webhook_key: Option<&str>,
) -> Uuid {
    let pg = db.client().await;
    pg.execute(
        "insert into c2s_leads (id, customer_name, last_hook_action, contact_hash) \
         values ('lead-1', 'Maria', 'on_close_lead', repeat('a', 64))",
        &[],
    )
    .await
    .unwrap();
    let event: Uuid = pg
        .query_one(
            "insert into webhook_events (source, idempotency_key, payload_hash, event_type, subject_id) \
             values ('c2s', 'c2s:lead-1:on_close_lead:1', repeat('b', 64), 'on_close_lead', 'lead-1') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let manager: Uuid = pg
        .query_one(
            "insert into managers (name, email, webhook_target_key) values ('Gerente', $1, $2) returning id",
            &[&email, &webhook_key],
        )
        .await
        .unwrap()
        .get(0);
    pg.query_one(
        "insert into manager_notifications (manager_id, lead_id, event_id, channel, subject, body) \
         values ($1, 'lead-1', $2, $3, 'Lead fechado: Maria', 'O lead lead-1 foi fechado.') returning id",
        &[&manager, &event, &channel],
    )
    .await
    .unwrap()
    .get(0)
}

fn body(id: Uuid) -> String {
    serde_json::json!({"kind": "notify_manager", "v": 1, "notification_id": id}).to_string()
}

async fn run(deps: &send_worker::Deps, id: Uuid, receive_count: u32) -> Outcome {
    let b = body(id);
    process(
        &Message {
            message_id: "m-1",
            body: &b,
            receive_count,
        },
        deps,
    )
    .await
}

async fn row(db: &TestDb, id: Uuid) -> (String, i32, Option<String>, Option<String>) {
    let r = db
        .client()
        .await
        .query_one(
            "select status, attempts, provider_id, error from manager_notifications where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[tokio::test]
async fn an_email_notification_is_sent_once() {
    let db = TestDb::new().await;
    let id = notification(&db, "email", Some("gerente@imob.com.br"), None).await;
    let mut deps = deps_for(&db, &[], 3, 2000);
    let mailer = Arc::new(FakeMailer::default());
    deps.mailer = mailer.clone();

    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let sent = mailer.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "never two e-mails for one notification");
    assert_eq!(
        (sent[0].to.as_str(), sent[0].subject.as_str()),
        ("gerente@imob.com.br", "Lead fechado: Maria")
    );
    assert_eq!(sent[0].text, "O lead lead-1 foi fechado.");
    assert_eq!(sent[0].reference, id);
    let (status, attempts, provider, _) = row(&db, id).await;
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    assert_eq!(provider, Some(format!("ses-{}", id.simple())));
}

#[tokio::test]
async fn a_retryable_mail_error_is_retried_then_sent() {
    let db = TestDb::new().await;
    let id = notification(&db, "email", Some("gerente@imob.com.br"), None).await;
    let mut deps = deps_for(&db, &[], 3, 2000);
    let mailer = Arc::new(FakeMailer {
        fail_first: Mutex::new(1),
        ..FakeMailer::default()
    });
    deps.mailer = mailer.clone();

    assert!(matches!(run(&deps, id, 1).await, Outcome::Retry { .. }));
    let (status, attempts, _, error) = row(&db, id).await;
    assert_eq!(
        (status.as_str(), attempts, error.as_deref()),
        ("pending", 1, Some("throttled"))
    );
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(row(&db, id).await.0, "sent");
    assert_eq!(mailer.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_send_that_died_mid_call_is_uncertain_not_repeated() {
    let db = TestDb::new().await;
    let id = notification(&db, "email", Some("gerente@imob.com.br"), None).await;
    db.client()
        .await
        .execute(
            "update manager_notifications set status = 'sending', attempts = 1, attempted_at = now() - interval '1 hour' where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let mut deps = deps_for(&db, &[], 3, 2000);
    let mailer = Arc::new(FakeMailer::default());
    deps.mailer = mailer.clone();

    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    let (status, _, _, error) = row(&db, id).await;
    assert_eq!(status, "uncertain");
    assert!(
        error
            .unwrap()
            .starts_with("uncertain: previous attempt outcome unknown")
    );
    assert!(mailer.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_webhook_notification_is_signed_and_posted_to_the_configured_target() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let url = format!("{}/hooks/managers?token=s3cr3t", server.uri());
    let id = notification(&db, "webhook", None, Some(&target_key(&url))).await;
    let deps = deps_for(&db, std::slice::from_ref(&url), 3, 2000);

    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let reqs = server.received_requests().await.unwrap();
    let sent = assert_signed(&reqs[0], id);
    assert_eq!(sent["type"], "c2s.lead_closed");
    assert_eq!(sent["data"]["lead_id"], "lead-1");
    assert_eq!(sent["data"]["notification_id"], id.to_string());
    assert_eq!(row(&db, id).await.0, "sent");
}

#[tokio::test]
async fn a_webhook_target_missing_from_configuration_fails_the_notification() {
    let db = TestDb::new().await;
    let id = notification(&db, "webhook", None, Some(&"c".repeat(64))).await;
    let deps = deps_for(&db, &["https://n8n.example.com/hook".to_string()], 3, 2000);
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    let (status, _, _, error) = row(&db, id).await;
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some("the manager's webhook target is not among OUTBOUND_WEBHOOK_URLS")
    );
}

/// Answers every e-mail with an unknown outcome (SES 5xx or a timeout after
/// the request went out), counting the calls.
#[derive(Default)]
struct UncertainMailer {
    calls: Mutex<u32>,
}

impl Mailer for UncertainMailer {
    fn send<'a>(&'a self, _email: &'a OutboundEmail) -> BoxFuture<'a, Result<MailSent, MailError>> {
        Box::pin(async move {
            *self.calls.lock().unwrap() += 1;
            Err(MailError::Uncertain(
                "SES InternalFailure (HTTP 500)".into(),
            ))
        })
    }
}

#[tokio::test]
async fn an_uncertain_mail_outcome_is_flagged_and_never_repeated() {
    let db = TestDb::new().await;
    let id = notification(&db, "email", Some("gerente@imob.com.br"), None).await;
    let mut deps = deps_for(&db, &[], 3, 2000);
    let mailer = Arc::new(UncertainMailer::default());
    deps.mailer = mailer.clone();
    assert_eq!(run(&deps, id, 1).await, Outcome::Done);
    assert_eq!(run(&deps, id, 2).await, Outcome::Done);
    assert_eq!(*mailer.calls.lock().unwrap(), 1, "never a second e-mail");
    let (status, attempts, provider, error) = row(&db, id).await;
    assert_eq!(
        (status.as_str(), attempts, provider),
        ("uncertain", 1, None)
    );
    assert!(error.unwrap().contains("InternalFailure"));
}
