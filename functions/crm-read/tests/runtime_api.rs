//! The crm-read binary driven through a local Lambda Runtime API with each
//! of its events/ files, on a fresh (migrated) database, as `cargo lambda
//! invoke` would: every one gets an HTTP answer, none a 5xx, and the board's
//! pipelines come back.

use crm_testkit::{
    TestDb,
    runtime_api::{AnswerKind, invoke_binary},
};
use std::time::Duration;

#[tokio::test]
async fn every_event_file_invokes_the_binary_on_a_fresh_database() {
    let db = TestDb::new().await;
    let dir = crm_testkit::repo_root().join("events/crm-read");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        let event = crm_testkit::event(&format!("crm-read/{name}"));
        let url = db.url.clone();
        let answer = tokio::task::spawn_blocking(move || {
            invoke_binary(
                env!("CARGO_BIN_EXE_crm-read"),
                &[
                    ("DATABASE_URL", &url),
                    ("APP_ENV", "test"),
                    ("LOG_LEVEL", "warn"),
                    ("JWT_SECRET", "test-jwt-secret"),
                ],
                &event,
                Duration::from_secs(30),
            )
        })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: no answer from the function"));
        assert_eq!(answer.kind, AnswerKind::Response, "{name}: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let status = body["statusCode"].as_u64().unwrap();
        assert!(status < 500, "{name}: {status} {}", body["body"]);
        if name == "pipelines.json" {
            assert_eq!(status, 200, "{}", body["body"]);
            assert!(body["body"].as_str().unwrap().contains("Sales"));
        }
    }
}
