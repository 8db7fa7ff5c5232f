//! The outbox-relay binary without its queues: it reports the init error to
//! the Runtime API (so `cargo lambda invoke` prints it) instead of exiting
//! silently and leaving the invoke waiting.

use crm_testkit::runtime_api::{AnswerKind, invoke_binary};
use std::time::Duration;

#[test]
fn missing_configuration_is_reported_as_an_init_error() {
    let answer = invoke_binary(
        env!("CARGO_BIN_EXE_outbox-relay"),
        &[
            ("DATABASE_URL", "postgres://crm@127.0.0.1:1/crm"),
            ("APP_ENV", "test"),
        ],
        &crm_testkit::event("outbox-relay/scheduled.json"),
        Duration::from_secs(30),
    )
    .expect("the init error reached the Runtime API");
    assert_eq!(answer.kind, AnswerKind::InitError);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["errorType"], "Runtime.InitError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("QUEUE_URL_SEND"),
        "{body}"
    );
}
