//! The Secrets Manager overlay against a local mock of its JSON API (the
//! exact GetSecretValue request asserted), and init errors reported to a
//! local Runtime API.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;
use crm_platform::{
    config::{CommonConfig, Env},
    secrets,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:crm-hub-AbCdEf";

async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

fn get_secret_value() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .and(header("content-type", "application/x-amz-json-1.1"))
        .and(body_json(serde_json::json!({"SecretId": ARN})))
}

#[tokio::test]
async fn the_secret_overlays_the_environment_once_per_cold_start() {
    let server = MockServer::start().await;
    let secret = serde_json::json!({
        "DATABASE_URL": "postgres://crm:from-the-secret@db.internal:5432/crm",
        "JWT_SECRET": "a-jwt-secret-of-at-least-32-characters",
        "TWILIO_AUTH_TOKEN": "twilio-token-0123456789",
    });
    get_secret_value()
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(serde_json::json!({
                    "ARN": ARN,
                    "Name": "crm-hub",
                    "SecretString": secret.to_string(),
                    "VersionId": "v1",
                    "VersionStages": ["AWSCURRENT"],
                })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk(&server.uri()).await);
    let env = Env::from_pairs([
        ("SECRETS_ARN", ARN),
        // The secret wins over a value left in the environment.
        ("DATABASE_URL", "postgres://stale@old/db"),
        ("DEFAULT_PHONE_REGION", "BR"),
    ]);
    let env = secrets::overlay(env, &client).await.unwrap();
    assert_eq!(
        env.required("JWT_SECRET").unwrap(),
        "a-jwt-secret-of-at-least-32-characters"
    );
    assert_eq!(
        env.secret("TWILIO_AUTH_TOKEN").unwrap().expose(),
        "twilio-token-0123456789"
    );
    // Non-secret configuration stays where it was.
    assert_eq!(env.required("DEFAULT_PHONE_REGION").unwrap(), "BR");
    let common = CommonConfig::from_env(&env).unwrap();
    assert_eq!(common.database.pg.get_hosts().len(), 1);
    assert_eq!(common.database.pg.get_user(), Some("crm"));
    assert_eq!(common.database.pg.get_dbname(), Some("crm"));
    // Read once: later reads are the Env in memory (expect(1) on drop).
}

#[tokio::test]
async fn without_secrets_arn_nothing_is_called() {
    let server = MockServer::start().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk(&server.uri()).await);
    let env = Env::from_pairs([("JWT_SECRET", "from-the-environment")]);
    let env = secrets::overlay(env, &client).await.unwrap();
    assert_eq!(env.required("JWT_SECRET").unwrap(), "from-the-environment");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_or_malformed_secret_fails_naming_secrets_arn_only() {
    let server = MockServer::start().await;
    get_secret_value()
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(serde_json::json!({
                    "__type": "AccessDeniedException",
                    "Message": "not authorized",
                })),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk(&server.uri()).await);
    let env = Env::from_pairs([("SECRETS_ARN", ARN)]);
    let e = secrets::overlay(env.clone(), &client).await.err().unwrap();
    assert_eq!(e.name, "SECRETS_ARN");
    assert!(e.to_string().contains("AccessDeniedException"), "{e}");

    get_secret_value()
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(serde_json::json!({
                    "ARN": ARN,
                    "Name": "crm-hub",
                    "SecretString": "JWT_SECRET=hunter2-hunter2",
                })),
        )
        .mount(&server)
        .await;
    let e = secrets::overlay(env, &client).await.err().unwrap();
    assert_eq!(e.name, "SECRETS_ARN");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[tokio::test]
async fn an_init_error_is_posted_to_the_runtime_api() {
    let runtime = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2018-06-01/runtime/init/error"))
        .and(header(
            "lambda-runtime-function-error-type",
            "Runtime.InitError",
        ))
        .and(body_json(serde_json::json!({
            "errorType": "Runtime.InitError",
            "errorMessage": "configuration MEDIA_BUCKET: is required",
        })))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&runtime)
        .await;
    let error: lambda_runtime::Error = Box::new(crm_platform::config::ConfigError {
        name: "MEDIA_BUCKET".into(),
        reason: "is required".into(),
    });
    let api = runtime.address().to_string();
    crm_platform::lambda::report_init_error(&api, &error)
        .await
        .unwrap();
}
