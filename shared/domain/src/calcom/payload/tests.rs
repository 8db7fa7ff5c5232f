//! Parsing of Cal.com webhook bodies: shapes, field names in errors.

use super::*;
use serde_json::json;

fn created() -> Value {
    json!({
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": "2026-11-20T14:10:03.120Z",
        "payload": {
            "type": "30min", "title": "30 Min Meeting between Lucas Andrade and Maria Souza",
            "startTime": "2026-11-25T17:00:00Z", "endTime": "2026-11-25T17:30:00Z",
            "organizer": {"id": 7, "name": "Lucas Andrade", "email": "lucas@ourco.io", "timeZone": "America/Sao_Paulo"},
            "attendees": [
                {"email": "Maria.Souza@Example.com.br", "name": "Maria Souza", "timeZone": "America/Sao_Paulo"},
                {"email": "joao@example.com.br", "name": "João", "timeZone": "America/Recife"}
            ],
            "location": "integrations:daily",
            "videoCallData": {"type": "daily_video", "url": "https://app.cal.com/video/from-video-call-data"},
            "metadata": {"videoCallUrl": "https://app.cal.com/video/abc"},
            "uid": "abc", "bookingId": 41, "status": "ACCEPTED"
        }
    })
}

fn booking(v: &Value) -> Booking {
    match parse(v).unwrap() {
        Event::Booking(b) => *b,
        other => panic!("expected a booking, got {other:?}"),
    }
}

fn field_of(v: &Value) -> String {
    match parse(v) {
        Err(WebhookError::Validation { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn created_booking_keeps_attendees_in_order_with_names_and_time_zones() {
    let b = booking(&created());
    assert_eq!(b.trigger, Trigger::Created);
    assert_eq!(b.uid, "abc");
    assert_eq!(b.booking_id, Some(41));
    assert_eq!(b.attendees.len(), 2);
    assert_eq!(b.attendees[0].email.as_str(), "maria.souza@example.com.br");
    assert_eq!(
        b.attendees[0].time_zone.as_deref(),
        Some("America/Sao_Paulo")
    );
    assert_eq!(b.attendees[1].name.as_deref(), Some("João"));
    assert_eq!(b.start.to_rfc3339(), "2026-11-25T17:00:00+00:00");
    assert_eq!(
        b.organizer.email.as_ref().map(EmailAddress::as_str),
        Some("lucas@ourco.io")
    );
    assert_eq!(b.location.as_deref(), Some("integrations:daily"));
    assert_eq!(
        b.reschedule_uid, None,
        "only a reschedule carries the original uid"
    );
}

#[test]
fn meeting_url_prefers_metadata_then_video_call_data_then_a_url_location() {
    let mut v = created();
    assert_eq!(
        booking(&v).meeting_url.as_deref(),
        Some("https://app.cal.com/video/abc")
    );
    v["payload"].as_object_mut().unwrap().remove("metadata");
    assert_eq!(
        booking(&v).meeting_url.as_deref(),
        Some("https://app.cal.com/video/from-video-call-data")
    );
    v["payload"]
        .as_object_mut()
        .unwrap()
        .remove("videoCallData");
    assert_eq!(booking(&v).meeting_url, None, "an app id is not a link");
    v["payload"]["location"] = json!("https://meet.google.com/abc-defg-hij");
    assert_eq!(
        booking(&v).meeting_url.as_deref(),
        Some("https://meet.google.com/abc-defg-hij")
    );
}

#[test]
fn duplicate_attendees_and_the_organizer_are_left_out() {
    let mut v = created();
    v["payload"]["attendees"] = json!([
        {"email": "lucas@ourco.io", "name": "Lucas (self)"},
        {"email": "ana@example.com", "name": "Ana"},
        {"email": "ANA@example.com", "name": "Ana again"}
    ]);
    let b = booking(&v);
    assert_eq!(b.attendees.len(), 1);
    assert_eq!(b.attendees[0].name.as_deref(), Some("Ana"));
    v["payload"]["attendees"] = json!([{"email": "lucas@ourco.io"}]);
    assert_eq!(field_of(&v), "payload.attendees");
}

#[test]
fn reschedule_carries_the_original_uid_and_cancellation_its_reason() {
    let mut v = created();
    v["triggerEvent"] = json!("BOOKING_RESCHEDULED");
    v["payload"]["uid"] = json!("new");
    v["payload"]["rescheduleUid"] = json!("abc");
    assert_eq!(booking(&v).reschedule_uid.as_deref(), Some("abc"));
    let mut v = created();
    v["triggerEvent"] = json!("BOOKING_CANCELLED");
    v["payload"]["status"] = json!("CANCELLED");
    v["payload"]["cancellationReason"] = json!("Conflito de agenda");
    let b = booking(&v);
    assert_eq!(
        (b.trigger, b.status.as_deref()),
        (Trigger::Cancelled, Some("CANCELLED"))
    );
    assert_eq!(b.cancellation_reason.as_deref(), Some("Conflito de agenda"));
    v["payload"]["cancellationReason"] = json!("");
    assert_eq!(
        booking(&v).cancellation_reason,
        None,
        "Cal.com sends an empty reason"
    );
}

#[test]
fn other_triggers_are_recognised_with_or_without_the_payload_wrapper() {
    let ended = json!({"triggerEvent": "MEETING_ENDED", "id": 41, "uid": "abc", "startTime": "2026-11-25T17:00:00.000Z"});
    assert_eq!(
        parse(&ended).unwrap(),
        Event::Other {
            trigger: "MEETING_ENDED".into(),
            uid: Some("abc".into())
        }
    );
    let ping = json!({"triggerEvent": "PING", "createdAt": "2026-11-20T14:00:00.000Z",
                      "payload": {"type": "Test", "title": "Test trigger event"}});
    assert_eq!(
        parse(&ping).unwrap(),
        Event::Other {
            trigger: "PING".into(),
            uid: None
        }
    );
    let no_show = json!({"triggerEvent": "BOOKING_NO_SHOW_UPDATED", "payload": {"bookingUid": "abc", "attendees": []}});
    assert_eq!(
        parse(&no_show).unwrap().trigger(),
        "BOOKING_NO_SHOW_UPDATED"
    );
}

#[test]
fn missing_or_invalid_fields_name_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/triggerEvent", json!(null), "triggerEvent"),
        ("/payload", json!(null), "payload"),
        ("/payload/uid", json!(""), "payload.uid"),
        ("/payload/uid", json!(7), "payload.uid"),
        (
            "/payload/startTime",
            json!("next tuesday"),
            "payload.startTime",
        ),
        (
            "/payload/endTime",
            json!("2026-11-25T16:00:00Z"),
            "payload.endTime",
        ),
        ("/payload/attendees", json!([]), "payload.attendees"),
        (
            "/payload/attendees",
            json!({"email": "x@y.com"}),
            "payload.attendees",
        ),
        (
            "/payload/attendees/0/email",
            json!("maria at example"),
            "payload.attendees[0].email",
        ),
        (
            "/payload/attendees/1/email",
            json!(null),
            "payload.attendees[1].email",
        ),
        ("/payload/bookingId", json!("41"), "payload.bookingId"),
        ("/createdAt", json!("yesterday"), "createdAt"),
    ];
    for (pointer, value, field) in cases {
        let mut v = created();
        *v.pointer_mut(pointer).unwrap() = value;
        assert_eq!(field_of(&v), field, "{pointer}");
    }
    let mut v = created();
    v["payload"]["uid"] = json!("u".repeat(201));
    assert_eq!(field_of(&v), "payload.uid");
    assert!(matches!(
        parse(&json!([1])),
        Err(WebhookError::Malformed(_))
    ));
}
