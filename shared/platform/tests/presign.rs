//! Presigned S3 PUT and GET (`blob::Presigner`) against moto: what a browser
//! uploads with the PUT URL is what Twilio downloads with the GET URL.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use crm_platform::blob::{BlobStore, Presigner, S3Blob};
use crm_testkit::MotoServer;
use std::time::Duration;

#[tokio::test]
async fn a_presigned_put_uploads_and_a_presigned_get_downloads_the_same_bytes() {
    let moto = MotoServer::start().await;
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await;
    let s3 = crm_platform::aws::s3(&conf, true);
    s3.create_bucket().bucket("media").send().await.unwrap();
    let blob = S3Blob::new(s3, "media");
    let key = "uploads/0192f0c8-7a00-7000-8000-000000000001.jpg";
    let bytes = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    let put = blob
        .presign_put(
            key,
            "image/jpeg",
            bytes.len() as u64,
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    assert!(
        put.contains("X-Amz-Signature=") && put.contains("X-Amz-Expires=300"),
        "{put}"
    );
    let http = reqwest::Client::new();
    let resp = http
        .put(&put)
        .header("content-type", "image/jpeg")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(blob.get(key).await.unwrap(), Some(bytes.clone()));
    let get = blob
        .presign_get(key, Duration::from_secs(3600))
        .await
        .unwrap();
    let got = http.get(&get).send().await.unwrap();
    assert!(got.status().is_success());
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
    // Keys that could escape the uploads folder are refused before signing.
    assert!(
        blob.presign_get("../secret", Duration::from_secs(60))
            .await
            .is_err()
    );
}
