//! The SES v2 mailer against a mock SES endpoint: the exact `SendEmail`
//! request (path, JSON body, SigV4 authorization) and how answers map to
//! sent, retryable (SES provably did not take it), uncertain (it may have)
//! and permanent.

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use crm_domain::mail::{MailError, Mailer, OutboundEmail};
use crm_platform::email::{SesConfig, SesMailer};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

fn mailer(server: &MockServer, configuration_set: Option<&str>) -> SesMailer {
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
        .endpoint_url(server.uri())
        .retry_config(RetryConfig::disabled())
        .build();
    SesMailer::with_client(
        SesConfig {
            from: "Acme <news@mail.acme.test>".into(),
            configuration_set: configuration_set.map(str::to_string),
            timeout: Duration::from_secs(5),
        },
        aws_sdk_sesv2::Client::from_conf(conf),
    )
}

fn email() -> OutboundEmail {
    OutboundEmail {
        to: "ana@example.com".into(),
        subject: "Hello Ana".into(),
        text: "Hi Ana\n\n--\nUnsubscribe: https://crm.example.com/u?token=t".into(),
        html: None,
        headers: vec![
            (
                "List-Unsubscribe".into(),
                "<https://crm.example.com/u?token=t>".into(),
            ),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
        ],
        reference: Uuid::new_v4(),
    }
}

fn ses_error(status: u16, kind: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-errortype", kind)
        .set_body_json(json!({"message": "Email address is not verified: ana@example.com"}))
}

#[tokio::test]
async fn send_email_posts_the_exact_simple_message_with_headers_and_sigv4() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"MessageId": "0100018f-ses-id"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let sent = mailer(&server, Some("campaigns"))
        .send(&email())
        .await
        .unwrap();
    assert_eq!(sent.provider_id, "0100018f-ses-id");
    let req = &server.received_requests().await.unwrap()[0];
    let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/eu-west-1/ses/aws4_request"), "{auth}");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        json!({
            "FromEmailAddress": "Acme <news@mail.acme.test>",
            "Destination": {"ToAddresses": ["ana@example.com"]},
            "Content": {"Simple": {
                "Subject": {"Data": "Hello Ana", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "Hi Ana\n\n--\nUnsubscribe: https://crm.example.com/u?token=t", "Charset": "UTF-8"}},
                "Headers": [
                    {"Name": "List-Unsubscribe", "Value": "<https://crm.example.com/u?token=t>"},
                    {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}
                ]
            }},
            "ConfigurationSetName": "campaigns"
        })
    );
}

#[tokio::test]
async fn without_a_configuration_set_none_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "m-2"})))
        .expect(1)
        .mount(&server)
        .await;
    mailer(&server, None).send(&email()).await.unwrap();
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(body.get("ConfigurationSetName").is_none(), "{body}");
}

#[tokio::test]
async fn rejections_are_permanent_and_quote_no_address() {
    for (status, kind) in [
        (400, "MessageRejected"),
        (400, "BadRequestException"),
        (400, "AccountSuspendedException"),
        (400, "MailFromDomainNotVerifiedException"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ses_error(status, kind))
            .expect(1)
            .mount(&server)
            .await;
        match mailer(&server, None).send(&email()).await {
            Err(MailError::Permanent(why)) => {
                assert!(why.contains(kind), "{why}");
                assert!(!why.contains("ana@example.com"), "{why}");
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn throttling_is_retryable_and_server_errors_are_uncertain() {
    for (status, kind, retryable) in [
        (429, "TooManyRequestsException", true),
        (400, "LimitExceededException", true),
        (500, "InternalFailure", false),
        (503, "ServiceUnavailable", false),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ses_error(status, kind))
            .expect(1)
            .mount(&server)
            .await;
        let got = mailer(&server, None).send(&email()).await;
        if retryable {
            assert!(
                matches!(got, Err(MailError::Retryable(_))),
                "{status} {kind}: {got:?}"
            );
        } else {
            // SES may have queued the e-mail before failing: never resent.
            assert!(
                matches!(got, Err(MailError::Uncertain(_))),
                "{status} {kind}: {got:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // A port nobody listens on: the request never left.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .retry_config(RetryConfig::disabled())
        .build();
    let m = SesMailer::with_client(
        SesConfig {
            from: "news@mail.acme.test".into(),
            configuration_set: None,
            timeout: Duration::from_secs(2),
        },
        aws_sdk_sesv2::Client::from_conf(conf),
    );
    let got = m.send(&email()).await;
    assert!(matches!(got, Err(MailError::Retryable(_))), "{got:?}");
}

#[tokio::test]
async fn no_answer_after_sending_is_uncertain() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
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
        .endpoint_url(server.uri())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    let m = SesMailer::with_client(
        SesConfig {
            from: "news@mail.acme.test".into(),
            configuration_set: None,
            timeout: Duration::from_millis(300),
        },
        aws_sdk_sesv2::Client::from_conf(conf),
    );
    assert!(matches!(
        m.send(&email()).await,
        Err(MailError::Uncertain(_))
    ));
}
