use super::*;
use serde_json::json;
use uuid::Uuid;

// The Standard Webhooks known-answer vector (the spec's reference libraries,
// e.g. svix-webhooks' `testSignFunctionWorks`).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TIMESTAMP: i64 = 1614265330;
const BODY: &[u8] = br#"{"test": 2432232314}"#;
const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn key() -> SigningKey {
    SigningKey::parse(SECRET).unwrap()
}

#[test]
fn signature_matches_the_standard_webhooks_known_answer() {
    assert_eq!(key().sign(MSG_ID, TIMESTAMP, BODY), SIGNATURE);
}

#[test]
fn verify_accepts_the_known_answer_among_several_signatures_only() {
    let k = key();
    assert!(k.verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    assert!(k.verify(MSG_ID, TIMESTAMP, BODY, &format!("v1,bm9wZQ== {SIGNATURE}")));
    assert!(!k.verify(MSG_ID, TIMESTAMP + 1, BODY, SIGNATURE));
    assert!(!k.verify("msg_other", TIMESTAMP, BODY, SIGNATURE));
    assert!(!k.verify(MSG_ID, TIMESTAMP, br#"{"test": 2432232315}"#, SIGNATURE));
    assert!(!k.verify(MSG_ID, TIMESTAMP, BODY, &SIGNATURE.replace("v1,", "v2,")));
    assert!(!k.verify(MSG_ID, TIMESTAMP, BODY, ""));
}

#[test]
fn secrets_need_the_prefix_valid_base64_and_enough_bytes() {
    assert_eq!(
        SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
        KeyError::MissingPrefix
    );
    assert_eq!(
        SigningKey::parse("whsec_not base64!").unwrap_err(),
        KeyError::NotBase64
    );
    assert_eq!(
        SigningKey::parse("whsec_c2hvcnQ=").unwrap_err(),
        KeyError::TooShort
    );
    assert_eq!(format!("{:?}", key()), "***");
}

#[test]
fn body_is_the_standard_webhooks_envelope_of_the_job() {
    let job = DeliverWebhook {
        v: 1,
        event_id: Uuid::nil(),
        event_type: "deal.stage_changed".into(),
        occurred_at: "2026-11-23T10:00:00.250Z".parse().unwrap(),
        payload: json!({"deal_id": "d1", "to": {"name": "Won"}}),
    };
    let body = body(&job);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"type":"deal.stage_changed","timestamp":"2026-11-23T10:00:00.250Z","data":{"deal_id":"d1","to":{"name":"Won"}}}"#
    );
}

#[test]
fn success_retry_and_rejection_follow_the_status_code() {
    use AttemptOutcome::*;
    for s in [200, 201, 202, 204, 299] {
        assert_eq!(Status(s).verdict(), Verdict::Delivered, "{s}");
        assert_eq!(Status(s).error_class(), None);
    }
    for s in [500, 502, 503, 504, 429, 408] {
        assert_eq!(Status(s).verdict(), Verdict::Retry, "{s}");
    }
    for s in [400, 401, 403, 404, 410, 422, 301, 302] {
        assert_eq!(Status(s).verdict(), Verdict::Reject, "{s}");
    }
    for o in [Timeout, Connect, Transport] {
        assert_eq!(o.verdict(), Verdict::Retry);
    }
    assert_eq!(Status(503).error_class(), Some("http_status"));
    assert_eq!(Timeout.error_class(), Some("timeout"));
    assert_eq!(Status(503).describe(), "HTTP 503");
}

#[test]
fn backoff_doubles_from_the_base_up_to_the_cap() {
    let b = Backoff::default();
    let secs: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900]);
    assert_eq!(b.delay(0).as_secs(), 30);
    assert_eq!(b.delay(u32::MAX).as_secs(), 900);
}
