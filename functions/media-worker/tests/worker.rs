//! The media worker against a real PostgreSQL, a mock Twilio (wiremock, which
//! asserts Basic auth and counts requests), a local folder and S3 (moto).

use aws_lambda_events::sqs::SqsEvent;
use crm_platform::{
    blob::{BlobStore, LocalFolderBlob, S3Blob},
    config::{AppEnv, DatabaseConfig, Env},
    db::build_pool,
};
use crm_testkit::{MotoServer, TestDb, event};
use media_worker::{Deps, MediaConfig, Message, Outcome, handle, process};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{path::PathBuf, sync::Arc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{basic_auth, method, path},
};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-twilio-token";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0fake-jpeg-bytes";
const MEDIA_PATH: &str =
    "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM1/Media/ME1";

fn host_port(uri: &str) -> String {
    uri.trim_start_matches("http://").to_string()
}

fn config(allow: &[&str], max_bytes: u64) -> MediaConfig {
    let (hosts, max) = (allow.join(","), max_bytes.to_string());
    let env = Env::from_pairs([
        ("TWILIO_ACCOUNT_SID", SID),
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("TWILIO_MEDIA_ALLOW_HOSTS", hosts.as_str()),
        ("MEDIA_MAX_BYTES", max.as_str()),
        ("MEDIA_MAX_ATTEMPTS", "3"),
        ("MEDIA_FETCH_TIMEOUT_MS", "3000"),
    ]);
    MediaConfig::from_env(&env, AppEnv::Test).unwrap()
}

struct Setup {
    db: TestDb,
    deps: Deps,
    dir: PathBuf,
    message_id: Uuid,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup_with(allow: &[&str], max_bytes: u64, blob: Option<Arc<dyn BlobStore>>) -> Setup {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let contact: Uuid = pg
        .query_one(
            "insert into contacts (phone, full_name) values ('+905321234567', 'Ayşe') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let message_id: Uuid = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, status, provider_sid, num_media) \
             values ('in', 'whatsapp', $1, 'received', 'MM1', 2) returning id",
            &[&contact],
        )
        .await
        .unwrap()
        .get(0);
    let dir = std::env::temp_dir().join(format!("crm-media-{}", Uuid::new_v4()));
    let blob = blob.unwrap_or_else(|| Arc::new(LocalFolderBlob::new(&dir)));
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap();
    let deps = Deps::with(pool, blob, config(allow, max_bytes)).unwrap();
    Setup {
        db,
        deps,
        dir,
        message_id,
    }
}

async fn setup(server: &MockServer) -> Setup {
    setup_with(&[&host_port(&server.uri())], 1024 * 1024, None).await
}

/// The sample job, re-pointed at `url` for `message_id` and `index`.
fn job(message_id: Uuid, index: u8, url: &str) -> String {
    let ev: Value = serde_json::from_str(&event("media-worker/fetch-job.json")).unwrap();
    let mut job: Value = serde_json::from_str(ev["Records"][0]["body"].as_str().unwrap()).unwrap();
    job["message_id"] = json!(message_id);
    job["index"] = json!(index);
    job["url"] = json!(url);
    job.to_string()
}

fn sqs_event(file: &str, body: Option<String>) -> SqsEvent {
    let mut ev: Value = serde_json::from_str(&event(file)).unwrap();
    if let Some(body) = body {
        ev["Records"][0]["body"] = json!(body);
    }
    serde_json::from_value(ev).unwrap()
}

async fn run(deps: &Deps, body: &str, receive_count: u32) -> Outcome {
    let msg = Message {
        message_id: "m-1",
        body,
        receive_count,
    };
    process(&msg, deps).await
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// `(status, key, content_type, bytes, sha256, reason)` of each file of the message.
async fn objects(s: &Setup) -> Vec<Row> {
    s.db.client()
        .await
        .query(
            "select status, key, content_type, bytes, sha256, reason from media_objects \
             where message_id = $1 order by index",
            &[&s.message_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

async fn media_key(s: &Setup) -> Option<String> {
    s.db.client()
        .await
        .query_one(
            "select media_key from messages where id = $1",
            &[&s.message_id],
        )
        .await
        .unwrap()
        .get(0)
}

async fn rejected_reason(s: &Setup) -> String {
    let rows = objects(s).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "rejected");
    assert_eq!((&rows[0].1, rows[0].3), (&None, None));
    rows[0].5.clone().unwrap()
}

async fn twilio(status: u16, content_type: &str, body: &[u8], expect: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MEDIA_PATH))
        .and(basic_auth(SID, TOKEN))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body.to_vec(), content_type))
        .expect(expect)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_sample_job_is_downloaded_with_basic_auth_into_the_local_folder_once() {
    let server = twilio(200, "image/jpeg", JPEG, 1).await;
    let s = setup(&server).await;
    let body = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri()));

    let resp = handle(
        sqs_event("media-worker/fetch-job.json", Some(body.clone())),
        &s.deps,
    )
    .await;
    assert!(resp.batch_item_failures.is_empty());

    let key = format!("media/{}/0.jpg", s.message_id);
    assert_eq!(std::fs::read(s.dir.join(&key)).unwrap(), JPEG);
    let sha = hex::encode(Sha256::digest(JPEG));
    assert_eq!(
        objects(&s).await,
        [(
            "stored".to_string(),
            Some(key.clone()),
            Some("image/jpeg".to_string()),
            Some(JPEG.len() as i64),
            Some(sha),
            None
        )]
    );
    assert_eq!(media_key(&s).await, Some(key));

    // A redelivery is acknowledged from the record: no second download (expect(1)).
    let resp = handle(
        sqs_event("media-worker/fetch-job.json", Some(body)),
        &s.deps,
    )
    .await;
    assert!(resp.batch_item_failures.is_empty());
    server.verify().await;
    assert_eq!(objects(&s).await.len(), 1);
}

#[tokio::test]
async fn media_key_points_at_the_first_stored_file_whatever_the_order() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/pdf"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(b"%PDF-1.7".to_vec(), "application/pdf"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/img"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(JPEG.to_vec(), "image/jpeg; charset=binary"),
        )
        .mount(&server)
        .await;
    let s = setup(&server).await;
    let (pdf, img) = (
        format!("{}/pdf", server.uri()),
        format!("{}/img", server.uri()),
    );
    assert_eq!(
        run(&s.deps, &job(s.message_id, 1, &pdf), 1).await,
        Outcome::Done
    );
    assert_eq!(
        media_key(&s).await,
        Some(format!("media/{}/1.pdf", s.message_id))
    );
    assert_eq!(
        run(&s.deps, &job(s.message_id, 0, &img), 1).await,
        Outcome::Done
    );
    assert_eq!(
        media_key(&s).await,
        Some(format!("media/{}/0.jpg", s.message_id))
    );
    assert_eq!(objects(&s).await.len(), 2);
}

#[tokio::test]
async fn a_500_is_retried_and_then_stored() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(basic_auth(SID, TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_raw(JPEG.to_vec(), "image/jpeg"))
        .expect(1)
        .mount(&server)
        .await;
    let s = setup(&server).await;
    let body = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri()));
    let resp = handle(
        sqs_event("media-worker/fetch-job.json", Some(body.clone())),
        &s.deps,
    )
    .await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(
        resp.batch_item_failures[0].item_identifier,
        "7a1e1c2a-8b3d-4e6f-9a1b-2c3d4e5f6b01"
    );
    assert!(objects(&s).await.is_empty());
    assert_eq!(run(&s.deps, &body, 2).await, Outcome::Done);
    assert_eq!(objects(&s).await[0].0, "stored");
}

#[tokio::test]
async fn a_429_and_a_dead_server_are_retried_and_the_last_receive_leaves_a_reason() {
    let server = twilio(429, "text/plain", b"slow down", 2).await;
    let s = setup(&server).await;
    let body = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri()));
    assert_eq!(
        run(&s.deps, &body, 1).await,
        Outcome::Retry {
            reason: "HTTP 429".into()
        }
    );
    // MEDIA_MAX_ATTEMPTS is 3: the third receive records why before SQS dead-letters it.
    assert!(matches!(
        run(&s.deps, &body, 3).await,
        Outcome::Retry { .. }
    ));
    let reason: String =
        s.db.client()
            .await
            .query_one(
                "select reason from poison_messages where queue = 'media' and message_id = 'm-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(reason, "receives exhausted (3): HTTP 429");

    // Nothing listens on this port any more: a connection error, retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s2 = setup_with(&[&closed.to_string()], 1024, None).await;
    let body = job(s2.message_id, 0, &format!("http://{closed}/m"));
    assert_eq!(
        run(&s2.deps, &body, 1).await,
        Outcome::Retry {
            reason: "connection failed".into()
        }
    );
    assert!(objects(&s2).await.is_empty());
}

#[tokio::test]
async fn a_404_a_refused_type_and_a_declared_oversize_are_rejected_for_good() {
    for (status, content_type, body, reason) in [
        (404, "application/json", &b"{}"[..], "HTTP 404"),
        (
            200,
            "text/html",
            &b"<html>"[..],
            "content type text/html not allowed",
        ),
        (
            200,
            "image/svg+xml",
            &b"<svg/>"[..],
            "content type image/svg+xml not allowed",
        ),
        (200, "image/png", &[0u8; 2048][..], "larger than 1024 bytes"),
    ] {
        let server = twilio(status, content_type, body, 1).await;
        let s = setup_with(&[&host_port(&server.uri())], 1024, None).await;
        let job = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri()));
        assert_eq!(run(&s.deps, &job, 1).await, Outcome::Done, "{reason}");
        assert_eq!(rejected_reason(&s).await, reason);
        assert_eq!(media_key(&s).await, None);
        // Rejected for good: a redelivery does not download again.
        assert_eq!(run(&s.deps, &job, 2).await, Outcome::Done);
        server.verify().await;
    }
}

/// A server that streams a chunked body (no Content-Length) of `total` bytes.
async fn chunked_server(total: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1024];
                let mut sent = 0;
                while sent < total {
                    let frame =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if sock.write_all(&frame).await.is_err() {
                        return; // the worker hung up: it stopped reading at the cap
                    }
                    sent += chunk.len();
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_size_cap_holds_while_streaming_without_a_content_length() {
    let big = chunked_server(64 * 1024 * 1024).await;
    let s = setup_with(&[&big.to_string()], 10_000, None).await;
    let started = std::time::Instant::now();
    let body = job(s.message_id, 0, &format!("http://{big}/m"));
    assert_eq!(run(&s.deps, &body, 1).await, Outcome::Done);
    assert_eq!(rejected_reason(&s).await, "larger than 10000 bytes");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    // Just under the cap, streamed the same way: stored whole.
    let small = chunked_server(9 * 1024).await;
    let s = setup_with(&[&small.to_string()], 10_000, None).await;
    let body = job(s.message_id, 0, &format!("http://{small}/m"));
    assert_eq!(run(&s.deps, &body, 1).await, Outcome::Done);
    let rows = objects(&s).await;
    assert_eq!((rows[0].0.as_str(), rows[0].3), ("stored", Some(9 * 1024)));
}

#[tokio::test]
async fn redirects_are_rechecked_and_credentials_stay_on_the_first_host() {
    let cdn = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cdn/ME1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(JPEG.to_vec(), "image/jpeg"))
        .expect(1)
        .mount(&cdn)
        .await;
    let evil = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(JPEG.to_vec(), "image/jpeg"))
        .expect(0)
        .mount(&evil)
        .await;
    let api = MockServer::start().await;
    let to = |url: String| ResponseTemplate::new(302).insert_header("location", url.as_str());
    Mock::given(method("GET"))
        .and(path(MEDIA_PATH))
        .and(basic_auth(SID, TOKEN))
        .respond_with(to(format!("{}/cdn/ME1", cdn.uri())))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/to-evil"))
        .respond_with(to(format!("{}/steal", evil.uri())))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/to-metadata"))
        .respond_with(to("http://169.254.169.254/latest/meta-data/".into()))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/loop"))
        .respond_with(to("/loop".into()))
        .mount(&api)
        .await;
    let allow = [host_port(&api.uri()), host_port(&cdn.uri())];
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();

    let s = setup_with(&allow, 1024, None).await;
    let body = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", api.uri()));
    assert_eq!(run(&s.deps, &body, 1).await, Outcome::Done);
    assert_eq!(objects(&s).await[0].0, "stored");
    let at_cdn = cdn.received_requests().await.unwrap();
    assert_eq!(at_cdn.len(), 1);
    assert!(
        at_cdn[0].headers.get("authorization").is_none(),
        "no credentials to the CDN"
    );

    for (p, reason) in [
        ("/to-evil", "redirect refused: host not allowed"),
        ("/to-metadata", "redirect refused: host not allowed"),
        ("/loop", "more than 3 redirects"),
    ] {
        let s = setup_with(&allow, 1024, None).await;
        let body = job(s.message_id, 0, &format!("{}{p}", api.uri()));
        assert_eq!(run(&s.deps, &body, 1).await, Outcome::Done);
        assert_eq!(rejected_reason(&s).await, reason, "{p}");
    }
    let loops = api.received_requests().await.unwrap();
    assert_eq!(loops.iter().filter(|r| r.url.path() == "/loop").count(), 4);
    evil.verify().await;
    cdn.verify().await;
}

#[tokio::test]
async fn disallowed_urls_are_rejected_without_a_request() {
    let server = twilio(200, "image/jpeg", JPEG, 0).await;
    let s = setup(&server).await;
    // The sample: the instance metadata service.
    let sample = sqs_event("media-worker/disallowed-host.json", None);
    let sample_body: Value =
        serde_json::from_str(sample.records[0].body.as_deref().unwrap()).unwrap();
    let body = job(s.message_id, 0, sample_body["url"].as_str().unwrap());
    let resp = handle(
        sqs_event("media-worker/disallowed-host.json", Some(body)),
        &s.deps,
    )
    .await;
    assert!(
        resp.batch_item_failures.is_empty(),
        "rejected for good: acknowledged"
    );
    assert_eq!(rejected_reason(&s).await, "host not allowed");

    let port = server.address().port();
    for (url, reason) in [
        (
            "https://api.twilio.com.evil.com/x".to_string(),
            "host not allowed",
        ),
        (
            format!("http://{SID}:{TOKEN}@127.0.0.1:{port}{MEDIA_PATH}"),
            "credentials in the URL",
        ),
        (
            format!("http://localhost:{port}{MEDIA_PATH}"),
            "host not allowed",
        ),
        (
            format!("http://[::1]:{port}{MEDIA_PATH}"),
            "host not allowed",
        ),
        ("file:///etc/passwd".to_string(), "scheme not allowed"),
        ("not a url".to_string(), "not a URL"),
    ] {
        let s = setup(&server).await;
        assert_eq!(
            run(&s.deps, &job(s.message_id, 0, &url), 1).await,
            Outcome::Done
        );
        assert_eq!(rejected_reason(&s).await, reason, "{url}");
    }
    server.verify().await;
}

#[tokio::test]
async fn malformed_jobs_are_poison_and_missing_messages_are_recorded() {
    let server = twilio(200, "image/jpeg", JPEG, 0).await;
    let s = setup(&server).await;
    let resp = handle(
        sqs_event("media-worker/fetch-job.json", Some("{\"kind\":".into())),
        &s.deps,
    )
    .await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    let pg = s.db.client().await;
    let reason: String = pg
        .query_one(
            "select reason from poison_messages where queue = 'media' and message_id = '7a1e1c2a-8b3d-4e6f-9a1b-2c3d4e5f6b01'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reason.starts_with("not JSON"), "{reason}");
    let mut v2: Value =
        serde_json::from_str(&job(s.message_id, 0, "https://api.twilio.com/x")).unwrap();
    v2["v"] = json!(2);
    assert_eq!(
        run(&s.deps, &v2.to_string(), 1).await,
        Outcome::DeadLetter {
            reason: "fetch_twilio_media v2 is not supported".into()
        }
    );

    // A job whose message is gone: nothing to attach to, acknowledged with the reason kept.
    let gone = Uuid::now_v7();
    let url = format!("{}{MEDIA_PATH}", server.uri());
    let body = job(gone, 0, &url);
    let msg = Message {
        message_id: "m-gone",
        body: &body,
        receive_count: 1,
    };
    assert_eq!(process(&msg, &s.deps).await, Outcome::Done);
    let reason: String = pg
        .query_one(
            "select reason from poison_messages where message_id = 'm-gone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "the message does not exist");
    server.verify().await;
}

#[tokio::test]
async fn media_is_stored_in_s3_through_moto() {
    let moto = MotoServer::start().await;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    let s3 = crm_platform::aws::s3(&conf, true);
    s3.create_bucket().bucket("crm-media").send().await.unwrap();
    let server = twilio(200, "audio/ogg", b"OggS-voice-note", 1).await;
    let blob: Arc<dyn BlobStore> = Arc::new(S3Blob::new(s3.clone(), "crm-media"));
    let s = setup_with(&[&host_port(&server.uri())], 1024, Some(blob)).await;
    let body = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri()));
    let resp = handle(
        sqs_event("media-worker/fetch-job.json", Some(body)),
        &s.deps,
    )
    .await;
    assert!(resp.batch_item_failures.is_empty());
    let key = format!("media/{}/0.ogg", s.message_id);
    let got = s3
        .get_object()
        .bucket("crm-media")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("audio/ogg"));
    assert_eq!(
        got.body.collect().await.unwrap().to_vec(),
        b"OggS-voice-note"
    );
    assert_eq!(media_key(&s).await, Some(key));
    server.verify().await;
}

#[tokio::test]
async fn two_copies_of_a_job_at_once_store_one_object() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MEDIA_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(JPEG.to_vec(), "image/jpeg")
                .set_delay(std::time::Duration::from_millis(200)),
        )
        .expect(1..=2)
        .mount(&server)
        .await;
    let s = setup(&server).await;
    let body = job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri()));
    let (a, b) = tokio::join!(run(&s.deps, &body, 1), run(&s.deps, &body, 1));
    assert_eq!((a, b), (Outcome::Done, Outcome::Done));
    let rows = objects(&s).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "stored");
    let key = format!("media/{}/0.jpg", s.message_id);
    assert_eq!(std::fs::read(s.dir.join(&key)).unwrap(), JPEG);
    assert_eq!(media_key(&s).await, Some(key));
    server.verify().await;
}

#[tokio::test]
async fn the_local_consumer_stores_what_the_in_process_queue_delivers() {
    let server = twilio(200, "application/pdf", b"%PDF-1.7 brochure", 1).await;
    let s = setup(&server).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = media_worker::local::spawn(rx, s.deps.clone());
    tx.send(crm_platform::queue::LocalMessage {
        message_id: Uuid::now_v7(),
        body: job(s.message_id, 0, &format!("{}{MEDIA_PATH}", server.uri())),
    })
    .unwrap();
    let key = format!("media/{}/0.pdf", s.message_id);
    let mut stored = false;
    for _ in 0..100 {
        if media_key(&s).await.as_deref() == Some(key.as_str()) {
            stored = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stored, "the local consumer stored the file");
    assert_eq!(
        std::fs::read(s.dir.join(&key)).unwrap(),
        b"%PDF-1.7 brochure"
    );
    // The consumer runs for the life of the process (it also holds its retry channel).
    worker.abort();
    server.verify().await;
}
