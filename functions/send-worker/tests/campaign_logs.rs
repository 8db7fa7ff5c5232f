//! Logs of the campaign send path carry ids only: never an address, a
//! name, a body, an unsubscribe link or token. Its own test binary, so the
//! thread-local log subscriber sees every event (no other test's thread
//! races it for tracing's callsite cache).

mod campaign_support;

use campaign_support::*;
use crm_testkit::TestDb;
use send_worker::Outcome;
use std::{
    io::Write,
    sync::{Arc, Mutex},
};
use wiremock::{Mock, MockServer, matchers::method};

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
