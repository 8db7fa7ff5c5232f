//! Migrations on deploy: the custom resource's Create/Update migrate a real
//! PostgreSQL and answer CloudFormation's presigned URL (a local mock,
//! asserting the exact PUT); Delete leaves the database alone; a failure is
//! answered FAILED, so the deploy rolls back instead of waiting an hour.

use crm_platform::config::DatabaseConfig;
use crm_testkit::TestDb;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, method, path},
};

fn request(kind: &str, response_url: &str) -> Value {
    json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:crm-hub-MigrateFunction",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/crm-hub/guid",
        "RequestId": "req-1",
        "ResourceType": "Custom::Migrations",
        "LogicalResourceId": "MigrationsOnDeploy",
        "ResourceProperties": {"MigrateVersion": "3"},
    })
}

async fn tables(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one(
            "select count(*) from information_schema.tables where table_name = 'outbox'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn create_migrates_and_answers_success() {
    let db = TestDb::empty().await;
    let cfn = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/cfn-response"))
        .and(body_partial_json(json!({
            "Status": "SUCCESS",
            "PhysicalResourceId": "crm-migrations",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/crm-hub/guid",
            "RequestId": "req-1",
            "LogicalResourceId": "MigrationsOnDeploy",
        })))
        .respond_with(ResponseTemplate::new(200))
        // The Create, then the Update below.
        .expect(2)
        .mount(&cfn)
        .await;
    let database = DatabaseConfig::from_url(&db.url, 1).unwrap();
    let url = format!("{}/cfn-response?X-Amz-Signature=abc", cfn.uri());
    let answer = migrate::handle(request("Create", &url), &database)
        .await
        .unwrap();
    assert!(answer["Data"]["Applied"].as_u64().unwrap() > 10, "{answer}");
    assert_eq!(tables(&db).await, 1);
    // No Content-Type: the presigned URL is signed without one.
    let put = &cfn.received_requests().await.unwrap()[0];
    assert!(put.headers.get("content-type").is_none());

    // An Update on a migrated database applies nothing and still succeeds.
    let answer = migrate::handle(request("Update", &url), &database)
        .await
        .unwrap();
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["Data"]["Applied"], 0);
}

#[tokio::test]
async fn delete_leaves_the_database_alone() {
    let db = TestDb::empty().await;
    let cfn = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(body_partial_json(json!({"Status": "SUCCESS"})))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&cfn)
        .await;
    let database = DatabaseConfig::from_url(&db.url, 1).unwrap();
    migrate::handle(request("Delete", &format!("{}/r", cfn.uri())), &database)
        .await
        .unwrap();
    assert_eq!(tables(&db).await, 0);
}

#[tokio::test]
async fn a_failed_migration_answers_failed() {
    let cfn = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(body_partial_json(json!({"Status": "FAILED"})))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&cfn)
        .await;
    // Nothing listens on port 1.
    let database =
        DatabaseConfig::from_url("postgres://crm:pw-not-logged@127.0.0.1:1/crm", 1).unwrap();
    let answer = migrate::handle(request("Create", &format!("{}/r", cfn.uri())), &database)
        .await
        .unwrap();
    assert_eq!(answer["Status"], "FAILED");
    assert!(!answer["Reason"].as_str().unwrap().contains("pw-not-logged"));
}

#[tokio::test]
async fn a_plain_invoke_migrates_and_lists_what_it_applied() {
    let db = TestDb::empty().await;
    let database = DatabaseConfig::from_url(&db.url, 1).unwrap();
    let answer = migrate::handle(json!({}), &database).await.unwrap();
    assert!(!answer["applied"].as_array().unwrap().is_empty());
    assert_eq!(tables(&db).await, 1);
}
