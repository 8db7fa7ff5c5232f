//! POST /api/templates/sync-missing against a mock Content API (wiremock)
//! and a fresh PostgreSQL: the exact requests (Basic auth, paging through
//! `meta.next_page_url`), the upsert counts and rows, admins only.

mod common;

use common::*;
use crm_domain::Secret;
use crm_testkit::{TestDb, event};
use messages_read::{Deps, content::ContentClient};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path, query_param, query_param_is_missing},
};

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "test-twilio-auth-token";
/// base64("<SID>:<TOKEN>")
const BASIC: &str =
    "Basic QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMTp0ZXN0LXR3aWxpby1hdXRoLXRva2Vu";

fn with_content(db: &TestDb, server: &MockServer) -> Deps {
    Deps {
        content: Some(ContentClient::new(
            server.uri().parse().unwrap(),
            SID,
            Secret::new(TOKEN).unwrap(),
        )),
        ..deps(db)
    }
}

fn item(sid: &str, name: &str, body: &str) -> Value {
    json!({"sid": sid, "account_sid": SID, "friendly_name": name, "language": "pt_BR",
           "variables": {"1": "Ana"}, "types": {"twilio/text": {"body": body}},
           "url": format!("https://content.twilio.com/v1/Content/{sid}")})
}

async fn mock_two_pages(server: &MockServer) {
    let next = format!(
        "{}/v1/Content?PageSize=100&Page=1&PageToken=PT2",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/v1/Content"))
        .and(query_param("PageSize", "100"))
        .and(query_param_is_missing("PageToken"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "contents": [item("HX1", "welcome", "Olá {{1}}"), item("HX2", "same", "Same {{1}}")],
            "meta": {"page": 0, "page_size": 100, "key": "contents", "next_page_url": next,
                     "first_page_url": format!("{}/v1/Content?PageSize=100&Page=0", server.uri())}
        })))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Content"))
        .and(query_param("PageToken", "PT2"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "contents": [
                item("HX3", "changed", "New text {{1}}"),
                {"sid": "HX4", "friendly_name": "card only", "types": {"twilio/card": {"title": "x"}}}
            ],
            "meta": {"page": 1, "page_size": 100, "key": "contents", "next_page_url": null}
        })))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn sync_pages_with_basic_auth_and_upserts_by_content_sid() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let server = MockServer::start().await;
    mock_two_pages(&server).await;
    pg.batch_execute(
        "insert into message_templates (content_sid, name, language, channel, body, variables) values \
           ('HX2', 'same', 'pt_BR', 'whatsapp', 'Same {{1}}', '{\"1\": \"Ana\"}'), \
           ('HX3', 'changed', 'pt_BR', 'sms', 'Old text', '{\"1\": \"Ana\"}')",
    )
    .await
    .unwrap();
    let d = with_content(&db, &server);
    let (status, body) = send(&d, &event("messages-read/sync-templates.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"created": 1, "updated": 1, "unchanged": 1, "skipped": 1})
    );
    let rows: Vec<(String, String, String, String, Value)> = pg
        .query(
            "select content_sid, name, channel, body, variables from message_templates order by content_sid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "HX1".into(),
                "welcome".into(),
                "whatsapp".into(),
                "Olá {{1}}".into(),
                json!({"1": "Ana"})
            ),
            (
                "HX2".into(),
                "same".into(),
                "whatsapp".into(),
                "Same {{1}}".into(),
                json!({"1": "Ana"})
            ),
            // The channel an admin set is kept.
            (
                "HX3".into(),
                "changed".into(),
                "sms".into(),
                "New text {{1}}".into(),
                json!({"1": "Ana"})
            ),
        ]
    );
    server.verify().await;

    // Run again: nothing changes.
    server.reset().await;
    mock_two_pages(&server).await;
    let (_, body) = call(
        &d,
        "POST",
        "/api/templates/sync-missing",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(
        body,
        json!({"created": 0, "updated": 0, "unchanged": 3, "skipped": 1})
    );
}

#[tokio::test]
async fn sync_is_for_admins_and_needs_credentials() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let d = with_content(&db, &server);
    let (status, body) = call(
        &d,
        "POST",
        "/api/templates/sync-missing",
        &[],
        None,
        &member("user-1"),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = call(
        &deps(&db),
        "POST",
        "/api/templates/sync-missing",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn failures_upstream_write_nothing_and_credentials_stay_on_the_origin() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/Content"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "contents": [item("HX1", "welcome", "Olá")],
            "meta": {"next_page_url": "https://evil.example.com/v1/Content?PageToken=x"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let d = with_content(&db, &server);
    let (status, _) = call(
        &d,
        "POST",
        "/api/templates/sync-missing",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 500);
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let (status, _) = call(
        &d,
        "POST",
        "/api/templates/sync-missing",
        &[],
        None,
        &admin(),
    )
    .await;
    assert_eq!(status, 503);
    let n: i64 = pg
        .query_one("select count(*) from message_templates", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
