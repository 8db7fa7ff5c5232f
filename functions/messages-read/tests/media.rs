//! GET /api/messages/{id}/media/{index}: only for whoever may read the
//! message; a redirect to a signed URL of the stored file — the local
//! folder's signer (as under `make run`) and a presigned S3 GET (moto).

mod common;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use common::*;
use crm_platform::{
    blob::{BlobStore, S3Blob},
    local_media::{Grant, LocalMediaUrls, PREFIX},
};
use crm_testkit::{MotoServer, TestDb, event};
use messages_read::{Deps, handle};
use serde_json::{Value, json};
use std::sync::Arc;

/// The raw response of a media request (status, headers, JSON body if any).
async fn media(
    d: &Deps,
    message: &str,
    index: &str,
    tok: &str,
    accept_json: bool,
) -> (u16, lambda_http::http::HeaderMap, Value) {
    let path = format!("/api/messages/{message}/media/{index}");
    let mut ev: Value = serde_json::from_str(&event("messages-read/message-media.json")).unwrap();
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["headers"]["authorization"] = json!(format!("Bearer {tok}"));
    if !accept_json {
        ev["headers"]["accept"] = json!("image/*");
    }
    let resp = handle(lambda_http::request::from_str(&ev.to_string()).unwrap(), d).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, headers, body)
}

/// An inbound WhatsApp message of `contact` with `num_media` files; returns its id.
async fn inbound_with_media(pg: &tokio_postgres::Client, contact: &str, num_media: i32) -> String {
    pg.query_one(
        "insert into messages (direction, channel, contact_id, status, num_media) \
         values ('in', 'whatsapp', $1::text::uuid, 'received', $2) returning id::text",
        &[&contact, &num_media],
    )
    .await
    .unwrap()
    .get(0)
}

async fn stored(
    pg: &tokio_postgres::Client,
    message: &str,
    index: i16,
    key: &str,
    ct: &str,
    bytes: i64,
) {
    pg.execute(
        "insert into media_objects (message_id, index, status, key, content_type, bytes, sha256) \
         values ($1::text::uuid, $2, 'stored', $3, $4, $5, repeat('a', 64))",
        &[&message, &index, &key, &ct, &bytes],
    )
    .await
    .unwrap();
}

fn location(headers: &lambda_http::http::HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn media_is_served_through_local_signed_urls_to_readers_only() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let dir = std::env::temp_dir().join(format!("crm-media-{}", uuid::Uuid::new_v4()));
    let urls = Arc::new(LocalMediaUrls::new(&dir));
    let mut d = deps(&db);
    d.media = Some(urls.clone());

    let a = contact(&pg, None, Some("user-a")).await;
    let b = contact(&pg, None, Some("user-b")).await;
    let msg = inbound_with_media(&pg, &a, 3).await;
    let key = format!("media/{msg}-0.jpg");
    urls.blob()
        .put(&key, b"\xff\xd8jpeg".to_vec(), "image/jpeg")
        .await
        .unwrap();
    stored(&pg, &msg, 0, &key, "image/jpeg", 6).await;
    pg.execute(
        "insert into media_objects (message_id, index, status, reason) values ($1::text::uuid, 1, 'rejected', 'too big')",
        &[&msg],
    )
    .await
    .unwrap();

    // The owner: a redirect to a signed URL that grants exactly this file, as stored.
    let (status, headers, _) = media(&d, &msg, "0", &member("user-a"), false).await;
    assert_eq!(status, 302);
    assert_eq!(headers["cache-control"], "private, no-store");
    let url = location(&headers);
    let (path, query) = url.strip_prefix(PREFIX).unwrap().split_once('?').unwrap();
    assert_eq!(path, key);
    assert_eq!(
        urls.verify("GET", path, query),
        Ok(Grant::Get {
            content_type: "image/jpeg".into(),
            disposition: format!("inline; filename=\"{msg}-0.jpg\""),
        })
    );
    // The same as JSON, for an img src.
    let (status, _, body) = media(&d, &msg, "0", &member("user-a"), true).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["content_type"].as_str(), body["bytes"].as_i64()),
        (Some("image/jpeg"), Some(6))
    );
    assert_eq!(body["expires_in"], 60);
    assert!(body["url"].as_str().unwrap().starts_with(PREFIX));

    // Another member: 404 as for a message that does not exist, no URL.
    let (status, headers, body) = media(&d, &msg, "0", &member("user-b"), false).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert!(headers.get("location").is_none());
    let (status, _, _) = media(
        &d,
        &uuid::Uuid::new_v4().to_string(),
        "0",
        &member("user-a"),
        false,
    )
    .await;
    assert_eq!(status, 404);
    let _ = b;

    // Rejected, not yet stored, beyond num_media, out of range.
    let (status, _, body) = media(&d, &msg, "1", &admin(), false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("media_rejected"))
    );
    let (status, _, body) = media(&d, &msg, "2", &admin(), false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("media_pending"))
    );
    for index in ["3", "10", "x"] {
        let (status, _, _) = media(&d, &msg, index, &admin(), false).await;
        assert_eq!(status, 404, "{index}");
    }

    // An outbound message shows the file it was sent with (index 0 only).
    let upload = format!("uploads/{}.pdf", uuid::Uuid::now_v7());
    let out: String = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, status, media_key, num_media) \
             values ('out', 'whatsapp', $1::text::uuid, 'queued', $2, 1) returning id::text",
            &[&a, &upload],
        )
        .await
        .unwrap()
        .get(0);
    let (status, headers, _) = media(&d, &out, "0", &member("user-a"), false).await;
    assert_eq!(status, 302);
    let url = location(&headers);
    let (path, query) = url.strip_prefix(PREFIX).unwrap().split_once('?').unwrap();
    assert_eq!(path, upload);
    assert_eq!(
        urls.verify("GET", path, query),
        Ok(Grant::Get {
            content_type: "application/pdf".into(),
            disposition: format!("attachment; filename=\"{out}-0.pdf\""),
        })
    );
    let (status, _, _) = media(&d, &out, "1", &member("user-a"), false).await;
    assert_eq!(status, 404);

    // Without a media store: 503, never a guess.
    let bare = deps(&db);
    let (status, _, body) = media(&bare, &msg, "0", &admin(), false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn in_aws_media_redirects_to_a_presigned_s3_get_with_the_stored_type() {
    let (db, moto) = (TestDb::new().await, MotoServer::start().await);
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await;
    let s3 = crm_platform::aws::s3(&conf, true);
    s3.create_bucket().bucket("media").send().await.unwrap();
    let blob = S3Blob::new(s3, "media");
    let pg = db.client().await;
    let a = contact(&pg, None, Some("user-a")).await;
    let msg = inbound_with_media(&pg, &a, 1).await;
    let key = format!("media/{msg}-0.png");
    // Stored as something else on purpose: the URL must answer the recorded type.
    blob.put(&key, b"\x89PNG-bytes".to_vec(), "application/octet-stream")
        .await
        .unwrap();
    stored(&pg, &msg, 0, &key, "image/png", 10).await;
    let mut d = deps(&db);
    d.media = Some(Arc::new(blob));

    let (status, headers, _) = media(&d, &msg, "0", &member("user-a"), false).await;
    assert_eq!(status, 302);
    let url = location(&headers);
    assert!(
        url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=60"),
        "{url}"
    );
    // S3 answers the signed response-content-* overrides instead of the
    // object's own type (moto ignores them, so they are checked in the URL).
    let query: std::collections::HashMap<String, String> = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["response-content-type"], "image/png");
    assert_eq!(
        query["response-content-disposition"],
        format!("inline; filename=\"{msg}-0.png\"")
    );
    let signed = query["X-Amz-SignedHeaders"].clone();
    assert_eq!(signed, "host");
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200, "the presigned GET works as is");
    assert_eq!(&resp.bytes().await.unwrap()[..], b"\x89PNG-bytes");
    assert_eq!(query["X-Amz-Expires"], "60");
    // A member who may not read it gets no URL at all.
    let (status, headers, _) = media(&d, &msg, "0", &member("user-b"), false).await;
    assert_eq!(status, 404);
    assert!(headers.get("location").is_none());
}
