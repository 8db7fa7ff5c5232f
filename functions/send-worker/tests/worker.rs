//! The send worker against a real PostgreSQL and a mock receiver (wiremock)
//! that asserts the exact requests: signed Standard Webhooks POSTs, each URL
//! delivered once, retries classified, partial batch failures.

mod common;

use common::*;
use crm_domain::webhooks_out::store::{self, Claim, TargetRef};
use crm_testkit::TestDb;
use send_worker::{Message, Outcome, handle, process};
use serde_json::Value;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

async fn receiver(status: u16, expect: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(status))
        .expect(expect)
        .mount(&server)
        .await;
    server
}

fn url(server: &MockServer, p: &str) -> String {
    format!("{}{p}", server.uri())
}

async fn run(deps: &send_worker::Deps, id: &str, body: &str, receive_count: u32) -> Outcome {
    let msg = Message {
        message_id: id,
        body,
        receive_count,
    };
    process(&msg, deps).await
}

#[tokio::test]
async fn the_sample_event_is_delivered_signed_and_recorded() {
    let db = TestDb::new().await;
    let server = receiver(204, 1).await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 5, 2_000);
    let ev = event_file("send-worker/deliver-webhook.json");
    let body: Value = serde_json::from_str(ev.records[0].body.as_deref().unwrap()).unwrap();
    let event_id: Uuid = body["event_id"].as_str().unwrap().parse().unwrap();

    let resp = handle(ev, &deps).await;
    assert!(resp.batch_item_failures.is_empty());

    let got = server.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    let posted = assert_signed(&got[0], event_id);
    assert_eq!(posted["type"], "deal.stage_changed");
    assert_eq!(posted["timestamp"], "2026-11-23T10:00:00.123456Z");
    assert_eq!(posted["data"], body["payload"]);
    assert_eq!(posted.as_object().unwrap().len(), 3);
    assert!(std::str::from_utf8(&got[0].body).unwrap().starts_with(
        r#"{"type":"deal.stage_changed","timestamp":"2026-11-23T10:00:00.123456Z","data":{"#
    ));
    assert_eq!(
        deliveries(&db, event_id).await,
        [("delivered".into(), 1, Some(204), None)]
    );
    assert_eq!(attempts(&db, event_id).await, [(1, Some(204), None)]);
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_and_then_delivered() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 5, 2_000);
    let event_id = Uuid::now_v7();
    let body = job_body(event_id);

    assert_eq!(
        run(&deps, "m1", &body, 1).await,
        Outcome::Retry {
            delay: Duration::from_secs(30)
        }
    );
    assert_eq!(
        deliveries(&db, event_id).await,
        [("pending".into(), 1, Some(500), Some("HTTP 500".into()))]
    );
    assert_eq!(run(&deps, "m1", &body, 2).await, Outcome::Done);
    assert_eq!(
        deliveries(&db, event_id).await,
        [("delivered".into(), 2, Some(200), None)]
    );
    assert_eq!(
        attempts(&db, event_id).await,
        [
            (1, Some(500), Some("http_status".into())),
            (2, Some(200), None)
        ]
    );
    for req in server.received_requests().await.unwrap() {
        assert_signed(&req, event_id);
    }
}

#[tokio::test]
async fn a_429_and_a_timeout_are_retryable() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(path("/busy"))
        .respond_with(ResponseTemplate::new(429))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1_500)))
        .expect(1)
        .mount(&server)
        .await;
    let urls = [url(&server, "/busy"), url(&server, "/slow")];
    let deps = deps_for(&db, &urls, 5, 300);
    let event_id = Uuid::now_v7();
    let outcome = run(&deps, "m1", &job_body(event_id), 2).await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            delay: Duration::from_secs(60)
        }
    );
    assert_eq!(
        deliveries_for(&db, event_id, &urls).await,
        [
            ("pending".into(), 1, Some(429), Some("HTTP 429".into())),
            ("pending".into(), 1, None, Some("timed out".into())),
        ]
    );
    assert_eq!(
        attempts_for(&db, event_id, &urls).await,
        [
            (1, Some(429), Some("http_status".into())),
            (1, None, Some("timeout".into())),
        ]
    );
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let db = TestDb::new().await;
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let deps = deps_for(&db, &[format!("http://127.0.0.1:{port}/hook")], 5, 1_000);
    let event_id = Uuid::now_v7();
    assert!(matches!(
        run(&deps, "m1", &job_body(event_id), 1).await,
        Outcome::Retry { .. }
    ));
    assert_eq!(
        attempts(&db, event_id).await,
        [(1, None, Some("connect".into()))]
    );
}

#[tokio::test]
async fn a_404_fails_at_once_and_is_not_retried() {
    let db = TestDb::new().await;
    let server = receiver(404, 1).await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 5, 2_000);
    let event_id = Uuid::now_v7();
    let body = job_body(event_id);
    assert_eq!(run(&deps, "m1", &body, 1).await, Outcome::Done);
    // The same message again (at-least-once): nothing more is sent.
    assert_eq!(run(&deps, "m1", &body, 2).await, Outcome::Done);
    assert_eq!(
        deliveries(&db, event_id).await,
        [(
            "failed".into(),
            1,
            Some(404),
            Some("HTTP 404: refused, not retried".into())
        )]
    );
}

#[tokio::test]
async fn the_last_attempt_marks_the_delivery_dead_with_its_reason() {
    let db = TestDb::new().await;
    let server = receiver(503, 3).await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 3, 2_000);
    let event_id = Uuid::now_v7();
    let body = job_body(event_id);
    for n in 1..=2 {
        assert!(matches!(
            run(&deps, "m1", &body, n).await,
            Outcome::Retry { .. }
        ));
    }
    let last = run(&deps, "m1", &body, 3).await;
    assert!(matches!(last, Outcome::DeadLetter { .. }), "{last:?}");
    assert_eq!(
        deliveries(&db, event_id).await,
        [(
            "dead".into(),
            3,
            Some(503),
            Some("HTTP 503: gave up after 3 attempt(s)".into())
        )]
    );
    assert_eq!(attempts(&db, event_id).await.len(), 3);
    // Received again (before SQS's redrive): nothing is sent, still for the DLQ.
    assert!(matches!(
        run(&deps, "m1", &body, 4).await,
        Outcome::DeadLetter { .. }
    ));
}

#[tokio::test]
async fn batch_failures_name_exactly_the_failing_messages() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    let failing = Uuid::now_v7();
    Mock::given(header("webhook-id", failing.to_string().as_str()))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 5, 2_000);
    let ev = sqs_event(vec![
        record("ok-1", &job_body(Uuid::now_v7()), 1),
        record("fails-502", &job_body(failing), 1),
        record("not-a-job", "{\"kind\":\"launch_rockets\",\"v\":1}", 1),
        record("ok-2", &job_body(Uuid::now_v7()), 1),
    ]);
    let resp = handle(ev, &deps).await;
    assert_eq!(failures(&resp), ["fails-502", "not-a-job"]);
}

#[tokio::test]
async fn a_malformed_message_is_recorded_without_its_body_and_fails() {
    let db = TestDb::new().await;
    let server = receiver(200, 1).await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 5, 2_000);
    let resp = handle(event_file("send-worker/mixed-batch.json"), &deps).await;
    let malformed = "5f0e1c2a-8b3d-4e6f-9a1b-2c3d4e5f6a02";
    assert_eq!(failures(&resp), [malformed]);
    let row = db
        .client()
        .await
        .query_one(
            "select queue, reason, receive_count from poison_messages where message_id = $1",
            &[&malformed],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "send");
    assert_eq!(row.get::<_, String>(1), "not JSON (line 1, column 43)");
    assert_eq!(row.get::<_, i32>(2), 1);
    // An unsupported version is refused the same way, by kind and version only.
    let v2 = job_body(Uuid::now_v7()).replace("\"v\":1", "\"v\":2");
    assert_eq!(
        run(&deps, "v2", &v2, 1).await,
        Outcome::DeadLetter {
            reason: "deliver_webhook v2 is not supported".into()
        }
    );
}

#[tokio::test]
async fn a_duplicate_job_is_delivered_once_even_when_received_concurrently() {
    let db = TestDb::new().await;
    let server = receiver(200, 1).await;
    let deps = deps_for(&db, &[url(&server, "/hook")], 5, 2_000);
    let body = job_body(Uuid::now_v7());
    let ids = ["copy-a", "copy-b", "copy-c"];
    let batch = || sqs_event(ids.iter().map(|id| record(id, &body, 1)).collect());
    // Copies racing for the same delivery: one posts; the others either see
    // it done or find it in flight and come back later.
    let first = handle(batch(), &deps).await;
    assert!(failures(&first).len() < ids.len());
    let again = handle(batch(), &deps).await;
    assert!(again.batch_item_failures.is_empty());
}

#[tokio::test]
async fn each_url_is_delivered_independently() {
    let db = TestDb::new().await;
    let server = MockServer::start().await;
    Mock::given(path("/a"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/b"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/b"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/c"))
        .respond_with(ResponseTemplate::new(410))
        .expect(1)
        .mount(&server)
        .await;
    let urls = ["/a", "/b", "/c"].map(|p| url(&server, p));
    let deps = deps_for(&db, &urls, 5, 2_000);
    let event_id = Uuid::now_v7();
    let body = job_body(event_id);
    assert!(matches!(
        run(&deps, "m1", &body, 1).await,
        Outcome::Retry { .. }
    ));
    assert_eq!(run(&deps, "m1", &body, 2).await, Outcome::Done);
    let statuses: Vec<(String, i32)> = deliveries_for(&db, event_id, &urls)
        .await
        .into_iter()
        .map(|(s, n, _, _)| (s, n))
        .collect();
    assert_eq!(
        statuses,
        [
            ("delivered".into(), 1),
            ("delivered".into(), 2),
            ("failed".into(), 1)
        ]
    );
}

#[tokio::test]
async fn with_no_urls_a_job_is_acknowledged_without_delivery() {
    let db = TestDb::new().await;
    let deps = deps_for(&db, &[], 5, 2_000);
    let event_id = Uuid::now_v7();
    assert_eq!(
        run(&deps, "m1", &job_body(event_id), 1).await,
        Outcome::Done
    );
    assert!(deliveries(&db, event_id).await.is_empty());
}

/// Claims the delivery of `event_id` to `url` as another worker would (e.g.
/// an earlier receive that died mid-attempt), for `lease`.
async fn held_elsewhere(deps: &send_worker::Deps, event_id: Uuid, url: &str, lease: Duration) {
    let key = target_key(url);
    let target = TargetRef {
        key: &key,
        origin: "http://127.0.0.1",
    };
    let claim = store::claim(
        &deps.pool.get().await.unwrap(),
        event_id,
        "deal.stage_changed",
        &target,
        lease,
    )
    .await
    .unwrap();
    assert!(matches!(claim, Claim::Claimed { attempts: 0, .. }));
}

#[tokio::test]
async fn on_the_last_receive_a_delivery_held_elsewhere_is_marked_dead_with_its_reason() {
    let db = TestDb::new().await;
    let server = receiver(200, 0).await;
    let hook = url(&server, "/hook");
    let deps = deps_for(&db, std::slice::from_ref(&hook), 3, 2_000);
    let event_id = Uuid::now_v7();
    let body = job_body(event_id);
    held_elsewhere(&deps, event_id, &hook, Duration::from_secs(600)).await;

    // Receives left: come back later; the holder may still finish it.
    assert!(matches!(
        run(&deps, "m1", &body, 2).await,
        Outcome::Retry { .. }
    ));
    assert_eq!(
        deliveries(&db, event_id).await,
        [("pending".into(), 0, None, None)]
    );
    // The last receive (SQS dead-letters the message after it): the
    // delivery is dead with its reason, not left pending without one.
    let last = run(&deps, "m1", &body, 3).await;
    assert_eq!(
        last,
        Outcome::DeadLetter {
            reason: "receives exhausted (3) with 1 webhook delivery(ies) unfinished".into()
        }
    );
    assert_eq!(
        deliveries(&db, event_id).await,
        [(
            "dead".into(),
            0,
            None,
            Some("receives exhausted while another worker held the delivery".into())
        )]
    );
    let released: bool = db
        .client()
        .await
        .query_one(
            "select locked_until is null and finished_at is not null from webhook_deliveries where event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(released);
    assert!(
        attempts(&db, event_id).await.is_empty(),
        "nothing was posted"
    );
}

#[tokio::test]
async fn on_the_last_receive_a_database_error_marks_the_delivery_dead_with_its_reason() {
    let db = TestDb::new().await;
    let server = receiver(503, 1).await;
    let hook = url(&server, "/hook");
    let deps = deps_for(&db, std::slice::from_ref(&hook), 3, 2_000);
    let event_id = Uuid::now_v7();
    // Recording the attempt fails (a stand-in for any database error after the claim).
    db.client()
        .await
        .batch_execute(
            "create function fail_attempts() returns trigger language plpgsql as $$ \
             begin raise exception 'attempts unavailable'; end $$; \
             create trigger fail_attempts before insert on webhook_delivery_attempts \
             for each row execute function fail_attempts();",
        )
        .await
        .unwrap();
    let last = run(&deps, "m1", &job_body(event_id), 3).await;
    assert!(matches!(last, Outcome::DeadLetter { .. }), "{last:?}");
    let rows = deliveries(&db, event_id).await;
    assert_eq!(rows.len(), 1);
    let (status, attempts_made, _, reason) = &rows[0];
    assert_eq!((status.as_str(), *attempts_made), ("dead", 0));
    let reason = reason.as_deref().unwrap();
    assert!(
        reason.starts_with("receives exhausted while a delivery step failed ("),
        "{reason}"
    );
}

#[tokio::test]
async fn when_the_delivery_cannot_be_marked_dead_the_message_is_recorded_as_poison() {
    let db = TestDb::new().await;
    let server = receiver(200, 0).await;
    let hook = url(&server, "/hook");
    let deps = deps_for(&db, std::slice::from_ref(&hook), 3, 2_000);
    let event_id = Uuid::now_v7();
    held_elsewhere(&deps, event_id, &hook, Duration::from_secs(600)).await;
    db.client()
        .await
        .batch_execute(
            "create function refuse_dead() returns trigger language plpgsql as $$ \
             begin raise exception 'deliveries unavailable'; end $$; \
             create trigger refuse_dead before update on webhook_deliveries \
             for each row when (new.status = 'dead') execute function refuse_dead();",
        )
        .await
        .unwrap();
    let last = run(&deps, "m-last", &job_body(event_id), 3).await;
    assert!(matches!(last, Outcome::DeadLetter { .. }), "{last:?}");
    let row = db
        .client()
        .await
        .query_one(
            "select queue, reason, receive_count from poison_messages where message_id = 'm-last'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "send");
    assert_eq!(
        row.get::<_, String>(1),
        "receives exhausted (3) with 1 webhook delivery(ies) unfinished"
    );
    assert_eq!(row.get::<_, i32>(2), 3);
}

/// A receiver that answers a POST only once `n` have arrived, then after
/// `delay`; a request still alone after `patience` gets 503. Returns its
/// base URL and how many 200s it sent. Requests posted one after another
/// (each waiting for its answer, up to the client's timeout) never meet.
async fn rendezvous(n: usize, delay: Duration, patience: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, _) = tokio::sync::watch::channel(0usize);
    let arrived = Arc::new(arrived);
    let answered = Arc::new(AtomicUsize::new(0));
    let ok = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (arrived, ok) = (arrived.clone(), ok.clone());
            tokio::spawn(async move {
                read_request(&mut sock).await;
                let mut seen = arrived.subscribe();
                arrived.send_modify(|c| *c += 1);
                let met = tokio::time::timeout(patience, seen.wait_for(|c| *c >= n))
                    .await
                    .is_ok_and(|r| r.is_ok());
                tokio::time::sleep(delay).await;
                let status = if met {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let head =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                // The client may have given up already (timeout): then nothing is counted.
                if sock.write_all(head.as_bytes()).await.is_ok() && met {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, answered)
}

/// Reads one HTTP/1.1 request (head and `content-length` body).
async fn read_request(sock: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return;
        }
    }
}

#[tokio::test]
async fn the_urls_of_a_job_are_posted_to_concurrently() {
    let db = TestDb::new().await;
    // Each answers only once both requests are in: posted one after the
    // other, the first would time out waiting for the second.
    let (base, answered) = rendezvous(2, Duration::from_millis(500), Duration::from_secs(10)).await;
    let urls = [format!("{base}/slow-a"), format!("{base}/slow-b")];
    let deps = deps_for(&db, &urls, 5, 2_000);
    let event_id = Uuid::now_v7();
    let started = std::time::Instant::now();
    let outcome = run(&deps, "m1", &job_body(event_id), 1).await;
    // A figure for the reader, not an assertion: about one slow answer (0.5 s),
    // not two, and well under one OUTBOUND_WEBHOOK_TIMEOUT_MS (2 s).
    println!("two slow URLs took {:?}", started.elapsed());
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(answered.load(Ordering::SeqCst), 2);
    assert_eq!(
        deliveries_for(&db, event_id, &urls).await,
        [
            ("delivered".into(), 1, Some(200), None),
            ("delivered".into(), 1, Some(200), None)
        ]
    );
    assert_eq!(
        attempts_for(&db, event_id, &urls).await,
        [(1, Some(200), None), (1, Some(200), None)]
    );
}
