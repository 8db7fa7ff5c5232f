//! The SQS and S3 adapters against a local AWS-compatible server (moto).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use crm_domain::outbox::{Publisher, QueueName};
use crm_platform::{
    blob::{BlobStore, S3Blob},
    queue::SqsPublisher,
};
use crm_testkit::MotoServer;
use std::collections::HashMap;

async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

#[tokio::test]
async fn sqs_publisher_sends_the_body_with_the_outbox_message_id() {
    let moto = MotoServer::start().await;
    let conf = sdk(&moto.endpoint).await;
    let sqs = crm_platform::aws::sqs(&conf);
    let url = sqs
        .create_queue()
        .queue_name("send")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let publisher = SqsPublisher::new(sqs.clone(), HashMap::from([(QueueName::Send, url.clone())]));
    let id = uuid::Uuid::now_v7();
    publisher
        .publish(QueueName::Send, id, r#"{"kind":"test","v":1}"#)
        .await
        .unwrap();

    let got = sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = got.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].body.as_deref(),
        Some(r#"{"kind":"test","v":1}"#)
    );
    let attrs = messages[0].message_attributes.as_ref().unwrap();
    assert_eq!(
        attrs["outbox_message_id"].string_value.as_deref(),
        Some(id.to_string().as_str())
    );
}

#[tokio::test]
async fn sqs_publisher_without_a_url_for_the_queue_fails_clearly() {
    let moto = MotoServer::start().await;
    let conf = sdk(&moto.endpoint).await;
    let publisher = SqsPublisher::new(crm_platform::aws::sqs(&conf), HashMap::new());
    let err = publisher
        .publish(QueueName::Media, uuid::Uuid::now_v7(), "{}")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no URL configured for queue media"),
        "{err}"
    );
}

#[tokio::test]
async fn s3_blob_roundtrips_and_reports_missing_keys_as_none() {
    let moto = MotoServer::start().await;
    let conf = sdk(&moto.endpoint).await;
    let s3 = crm_platform::aws::s3(&conf, true);
    s3.create_bucket().bucket("crm-media").send().await.unwrap();
    let store = S3Blob::new(s3.clone(), "crm-media");
    store
        .put("media/msg-1/0.jpg", b"\xff\xd8jpeg".to_vec(), "image/jpeg")
        .await
        .unwrap();
    assert_eq!(
        store.get("media/msg-1/0.jpg").await.unwrap().as_deref(),
        Some(&b"\xff\xd8jpeg"[..])
    );
    assert_eq!(store.get("media/none.jpg").await.unwrap(), None);
    let head = s3
        .head_object()
        .bucket("crm-media")
        .key("media/msg-1/0.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert!(store.put("../escape", vec![], "text/plain").await.is_err());
}
