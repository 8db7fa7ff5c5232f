//! The console's upload → send → view loop under the local runner, through
//! the router on a real PostgreSQL: POST /api/media/upload-url hands out a
//! signed URL of the local folder, the PUT stores the file (exact type and
//! size only), POST /api/messages sends it, and GET
//! /api/messages/{id}/media/0 redirects to the file, served with its type,
//! Content-Disposition and nosniff — to readers of the message only.

use crm_domain::{
    Secret,
    auth::{Claims, Role, mint},
};
use crm_platform::config::{CommonConfig, Env};
use crm_testkit::TestDb;
use local_runner::routes;
use serde_json::{Value, json};

fn token(sub: &str) -> String {
    let claims = Claims::issued_now(sub, Role::Member, vec![]);
    mint(&Secret::new("test-jwt-secret").unwrap(), &claims)
}

#[tokio::test]
async fn an_uploaded_image_is_sent_and_shown_from_the_local_folder() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("crm-local-media-{}", uuid_like()));
    let dir_s = dir.to_string_lossy().to_string();
    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("APP_ENV", "test"),
        ("DEV_SIGNATURE_BYPASS", "true"),
        ("JWT_SECRET", "test-jwt-secret"),
        ("MEDIA_DIR", dir_s.as_str()),
    ]);
    let common = CommonConfig::from_env(&env).unwrap();
    let app = routes::router(routes::build(&common, &env).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A contact of user-a who wrote on WhatsApp a minute ago (window open).
    let pg = db.client().await;
    let contact: String = pg
        .query_one(
            "insert into contacts (full_name, phone, owner_id) values ('Ana', '+905321234567', 'user-a') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into messages (direction, channel, contact_id, body, status, created_at) \
         values ('in', 'whatsapp', $1::text::uuid, 'hi', 'received', now() - interval '1 minute')",
        &[&contact],
    )
    .await
    .unwrap();
    let a = token("user-a");
    let image = b"\x89PNG\r\n\x1a\nnot really a png".to_vec();

    let up: Value = http
        .post(format!("{base}/api/media/upload-url"))
        .bearer_auth(&a)
        .json(&json!({"content_type": "image/png", "bytes": image.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload_url = up["upload_url"].as_str().expect("an upload URL locally");
    assert!(
        upload_url.starts_with("/local/media/uploads/"),
        "{upload_url}"
    );
    let key = up["media_key"].as_str().unwrap();

    // S3's rules: the signed type and size only.
    let wrong = http
        .put(format!("{base}{upload_url}"))
        .header("content-type", "text/html")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let shorter = http
        .put(format!("{base}{upload_url}"))
        .header("content-type", "image/png")
        .body(image[..4].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(shorter.status(), 403);
    let put = http
        .put(format!("{base}{upload_url}"))
        .header("content-type", "image/png")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(std::fs::read(dir.join(key)).unwrap(), image);

    let sent = http
        .post(format!("{base}/api/messages"))
        .bearer_auth(&a)
        .json(&json!({"contact_id": contact, "media_key": key, "channel": "whatsapp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let sent: Value = sent.json().await.unwrap();
    let id = sent["id"].as_str().unwrap();

    let link = http
        .get(format!("{base}/api/messages/{id}/media/0"))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 302);
    let location = link.headers()["location"].to_str().unwrap().to_string();
    let file = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(file.status(), 200);
    let h = file.headers();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-disposition"],
        format!("inline; filename=\"{id}-0.png\"").as_str()
    );
    assert_eq!(file.bytes().await.unwrap().to_vec(), image);

    // A tampered URL, a URL for another key, and another member.
    let tampered = location.replace("image%2Fpng", "text%2Fhtml");
    let r = http.get(format!("{base}{tampered}")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let other_key = location.replace("/uploads/", "/media/");
    let r = http.get(format!("{base}{other_key}")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{base}/local/media/{key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "unsigned");
    let r = http
        .get(format!("{base}/api/messages/{id}/media/0"))
        .bearer_auth(token("user-b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());
    std::fs::remove_dir_all(dir).ok();
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
