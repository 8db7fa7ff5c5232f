//! POST /api/media/upload-url: 501 without a bucket, a presigned PUT on S3 (moto).

mod common;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use common::*;
use crm_domain::auth::Role;
use crm_platform::blob::S3Blob;
use crm_testkit::{MotoServer, TestDb};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn without_a_bucket_upload_urls_are_not_available_locally() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let (status, body) = post(
        &deps,
        "/api/media/upload-url",
        json!({"content_type": "image/jpeg", "bytes": 1000}),
        &token("user-1", Role::Member),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (501, Some("not_available_locally"))
    );
}

#[tokio::test]
async fn an_upload_url_is_a_presigned_put_with_a_media_key() {
    let (db, moto) = (TestDb::new().await, MotoServer::start().await);
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await;
    let s3 = crm_platform::aws::s3(&conf, true);
    s3.create_bucket().bucket("media").send().await.unwrap();
    let mut deps = deps(&db);
    deps.media = Some(Arc::new(S3Blob::new(s3, "media")));
    let member = token("user-1", Role::Member);
    let (status, body) = post(
        &deps,
        "/api/media/upload-url",
        json!({"content_type": "application/pdf", "bytes": 2048}),
        &member,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key = body["media_key"].as_str().unwrap();
    assert!(
        key.starts_with("uploads/") && key.ends_with(".pdf"),
        "{key}"
    );
    assert!(crm_domain::messaging::parse_media_key(key).is_ok());
    assert_eq!(body["expires_in"], 300);
    assert!(
        body["upload_url"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature=")
    );
    let (status, body) = post(
        &deps,
        "/api/media/upload-url",
        json!({"content_type": "text/html", "bytes": 10}),
        &member,
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("content_type"))
    );
    let (status, _) = post(
        &deps,
        "/api/media/upload-url",
        json!({"content_type": "video/mp4", "bytes": 16 * 1024 * 1024 + 1}),
        &member,
    )
    .await;
    assert_eq!(status, 422);
}
