//! Parsing tables of the C2S hook elements (no database).

use super::payload::{parse_price, parse_timestamp, rfc3339_utc};
use super::*;
use crate::error::WebhookError;
use serde_json::json;

fn attrs() -> Value {
    json!({
        "customer": {"name": " Ana Souza ", "email": " Ana@Example.COM.br ", "phone": "(11) 98765-4321",
                     "phone2": "", "phone_global": "+5511987654321"},
        "seller": {"id": 42, "name": "Carlos", "email": "carlos@imob.com.br", "phone": null},
        "product": {"description": "Apartamento 3 quartos", "prop_ref": "AP-123", "price": "350.000,00",
                    "city": "São Paulo", "neighbourhood": "Moema"},
        "lead_status": {"alias": "novo", "name": "Novo"},
        "lead_source": "Portal ZAP",
        "channel": "whatsapp",
        "created_at": "2026-11-20 14:05:12 -0300",
        "updated_at": "2026-11-20T17:06:00Z",
        "done_details": null,
        "archive_details": ""
    })
}

#[test]
fn the_three_wrappings_parse_to_the_same_event_and_key() {
    let flat = json!({"id": "L1", "hook_action": "on_create_lead", "attributes": attrs()});
    let data = json!({"hook_action": "on_create_lead", "data": {"type": "lead", "id": "L1", "attributes": attrs()}});
    let lead =
        json!({"hook_action": "on_create_lead", "lead": {"id": "L1", "attributes": attrs()}});
    let parsed: Vec<LeadEvent> = [&flat, &data, &lead]
        .into_iter()
        .map(|v| parse_element(v).unwrap())
        .collect();
    assert_eq!(
        parsed.iter().map(|e| e.shape).collect::<Vec<_>>(),
        [Shape::Flat, Shape::Data, Shape::Lead]
    );
    for e in &parsed {
        assert_eq!(e.lead_id, "L1");
        assert_eq!(e.hook_action, HookAction::CreateLead);
        assert_eq!(e.lead, parsed[0].lead);
        assert_eq!(e.payload_hash(), parsed[0].payload_hash());
        assert_eq!(
            e.idempotency_key(),
            "c2s:L1:on_create_lead:2026-11-20T17:06:00Z"
        );
    }
}

#[test]
fn attributes_are_read_and_normalised() {
    let e = parse_element(
        &json!({"id": 987, "hook_action": " on_update_lead ", "attributes": attrs()}),
    )
    .unwrap();
    assert_eq!(e.lead_id, "987", "numeric ids are read as text");
    assert_eq!(e.hook_action, HookAction::UpdateLead);
    let l = &e.lead;
    assert_eq!(l.customer_name.as_deref(), Some("Ana Souza"));
    assert_eq!(l.customer_email.as_deref(), Some("ana@example.com.br"));
    assert_eq!(l.customer_phone.as_deref(), Some("(11) 98765-4321"));
    assert_eq!(l.customer_phone2, None, "empty is absent");
    assert_eq!(l.customer_phone_global.as_deref(), Some("+5511987654321"));
    assert_eq!(l.seller_id.as_deref(), Some("42"));
    assert_eq!(l.seller_phone, None);
    assert_eq!(l.price_cents, Some(35_000_000));
    assert_eq!(l.neighbourhood.as_deref(), Some("Moema"));
    assert_eq!(l.status_alias.as_deref(), Some("novo"));
    assert_eq!(l.lead_source.as_deref(), Some("Portal ZAP"));
    assert_eq!(l.done_details, None);
    assert_eq!(l.archive_details, None);
    assert_eq!(
        l.created_at.map(rfc3339_utc).as_deref(),
        Some("2026-11-20T17:05:12Z")
    );
}

#[test]
fn timestamps_in_both_forms() {
    let cases: &[(&str, Option<&str>)] = &[
        ("2026-11-20T14:05:12-03:00", Some("2026-11-20T17:05:12Z")),
        ("2026-11-20T17:05:12Z", Some("2026-11-20T17:05:12Z")),
        ("2026-11-20T17:05:12.250Z", Some("2026-11-20T17:05:12.250Z")),
        ("2026-11-20 14:05:12 -0300", Some("2026-11-20T17:05:12Z")),
        ("2026-11-20 14:05:12 +0000", Some("2026-11-20T14:05:12Z")),
        ("2026-11-20 20:05:12 +0300", Some("2026-11-20T17:05:12Z")),
        ("2026-11-20 14:05:12 -03:00", Some("2026-11-20T17:05:12Z")),
        (
            "2026-11-20 14:05:12.5 -0300",
            Some("2026-11-20T17:05:12.500Z"),
        ),
        ("2026-11-20 17:05:12 UTC", Some("2026-11-20T17:05:12Z")),
        (" 2026-11-20 14:05:12 -0300 ", Some("2026-11-20T17:05:12Z")),
        // Issue 13: no zone is Brasília time (UTC−03:00).
        ("2025-03-12 09:15:44", Some("2025-03-12T12:15:44Z")),
        ("2025-03-12T09:15:44", Some("2025-03-12T12:15:44Z")),
        ("20/11/2026 14:05", None),
        ("2026-13-20 14:05:12 -0300", None),
        ("yesterday", None),
        ("", None),
    ];
    for (raw, want) in cases {
        assert_eq!(
            parse_timestamp(raw).map(rfc3339_utc).as_deref(),
            *want,
            "{raw:?}"
        );
    }
}

#[test]
fn the_same_instant_written_two_ways_is_the_same_payload() {
    let el = |stamp: &str| {
        parse_element(&json!({"id": "L1", "hook_action": "on_update_lead",
                              "attributes": {"customer": {"name": "Ana"}, "updated_at": stamp}}))
        .unwrap()
    };
    let (a, b) = (el("2025-03-12 09:15:44 -0300"), el("2025-03-12T12:15:44Z"));
    assert_eq!(a.idempotency_key(), b.idempotency_key());
    assert_eq!(
        a.payload_hash(),
        b.payload_hash(),
        "a duplicate, not a reused key"
    );
}

#[test]
fn lead_ids_that_could_name_another_path_and_customer_arrays_are_refused() {
    for id in [".", "..", "a/b", "L 1"] {
        assert!(
            parse_element(&json!({"id": id, "hook_action": "on_create_lead"})).is_err(),
            "{id}"
        );
    }
    let e = parse_element(&json!({"id": "L1", "hook_action": "on_create_lead",
                                  "attributes": {"customer": []}}));
    assert!(
        matches!(e, Err(WebhookError::Validation { field, .. }) if field == "attributes.customer")
    );
}

#[test]
fn prices_in_minor_units() {
    let cases: &[(Value, Option<i64>)] = &[
        (json!("350.000,00"), Some(35_000_000)),
        (json!("R$ 350.000,00"), Some(35_000_000)),
        (json!("1.250.000,50"), Some(125_000_050)),
        (json!("350000.00"), Some(35_000_000)),
        (json!("350000,5"), Some(35_000_050)),
        (json!("350,000.00"), Some(35_000_000)),
        (json!("350000"), Some(35_000_000)),
        (json!("350.000"), Some(35_000_000)),
        (json!("1.350.000"), Some(135_000_000)),
        (json!("350,000"), Some(35_000_000)),
        (json!("99.9"), Some(9_990)),
        (json!("0,00"), Some(0)),
        (json!(350000), Some(35_000_000)),
        (json!(350000.5), Some(35_000_050)),
        (json!(1999.99), Some(199_999)),
        (json!(-1), None),
        (json!("-350.000,00"), None),
        (json!("a combinar"), None),
        (json!("350.000,001"), None),
        (json!("35.00.00"), None),
        (json!("1,2,3"), None),
        (json!(""), None),
        (json!(null), None),
        (json!(true), None),
        (json!({"value": 1}), None),
    ];
    for (raw, want) in cases {
        assert_eq!(parse_price(raw), *want, "{raw}");
    }
}

#[test]
fn null_and_empty_attributes_are_absent_not_errors() {
    for attributes in [
        json!(null),
        json!({}),
        json!({"customer": null, "seller": "", "product": [], "lead_status": null,
               "lead_source": null, "channel": "", "created_at": null, "updated_at": "",
               "done_details": {}, "archive_details": []}),
        json!({"customer": {"name": null, "email": "", "phone": "  "}, "product": {"price": null}}),
    ] {
        let e = parse_element(
            &json!({"id": "L9", "hook_action": "on_close_lead", "attributes": attributes}),
        )
        .unwrap_or_else(|err| panic!("{attributes}: {err}"));
        assert_eq!(e.lead, Lead::default(), "{attributes}");
    }
    let bare = parse_element(&json!({"id": "L9", "hook_action": "on_close_lead"})).unwrap();
    assert!(bare.attributes.is_empty());
    assert!(
        bare.idempotency_key()
            .starts_with("c2s:L9:on_close_lead:sha256:"),
        "without updated_at the key falls back to the payload hash"
    );
}

#[test]
fn invalid_elements_name_the_field() {
    let cases: &[(Value, &str)] = &[
        (json!("L1"), "element"),
        (json!({"id": "L1"}), "hook_action"),
        (
            json!({"id": "L1", "hook_action": "on_delete_lead"}),
            "hook_action",
        ),
        (json!({"id": "L1", "hook_action": 3}), "hook_action"),
        (json!({"hook_action": "on_create_lead"}), "id"),
        (
            json!({"hook_action": "on_create_lead", "data": {"type": "lead", "attributes": {}}}),
            "data.id",
        ),
        (
            json!({"hook_action": "on_create_lead", "lead": {"id": ""}}),
            "lead.id",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": {"x": 1}}),
            "id",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": "x".repeat(256)}),
            "id",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": "L1", "attributes": "x"}),
            "attributes",
        ),
        (
            json!({"hook_action": "on_create_lead", "data": {"id": "L1", "attributes": [1]}}),
            "data.attributes",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": "L1", "attributes": {"customer": "Ana"}}),
            "attributes.customer",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": "L1", "attributes": {"customer": {"email": ["a"]}}}),
            "attributes.customer.email",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": "L1", "attributes": {"updated_at": "20/11/2026"}}),
            "attributes.updated_at",
        ),
        (
            json!({"hook_action": "on_create_lead", "id": "L1", "attributes": {"created_at": 1795183513}}),
            "attributes.created_at",
        ),
    ];
    for (el, field) in cases {
        match parse_element(el) {
            Err(WebhookError::Validation { field: f, .. }) => assert_eq!(f, *field, "{el}"),
            other => panic!("{el}: expected a validation error on {field}, got {other:?}"),
        }
    }
}

#[test]
fn lead_source_and_channel_may_be_named_objects() {
    let e = parse_element(
        &json!({"id": "L1", "hook_action": "on_create_lead", "attributes": {
        "lead_source": {"id": 7, "name": "Facebook"}, "channel": {"alias": "wpp"}}}),
    )
    .unwrap();
    assert_eq!(e.lead.lead_source.as_deref(), Some("Facebook"));
    assert_eq!(e.lead.channel.as_deref(), Some("wpp"));
}

#[test]
fn key_normalises_updated_at_to_utc_and_bounds_its_length() {
    let mk = |stamp: &str, id: &str| {
        parse_element(&json!({"id": id, "hook_action": "on_update_lead", "attributes": {"updated_at": stamp}}))
            .unwrap()
            .idempotency_key()
    };
    assert_eq!(
        mk("2026-11-20 14:05:12 -0300", "L1"),
        mk("2026-11-20T17:05:12Z", "L1")
    );
    assert_ne!(
        mk("2026-11-20T17:05:12Z", "L1"),
        mk("2026-11-20T17:05:13Z", "L1")
    );
    let long = mk("2026-11-20T17:05:12Z", &"9".repeat(250));
    assert!(
        long.starts_with("c2s:sha256:") && long.len() <= 255,
        "{long}"
    );
}

#[test]
fn payload_hash_ignores_the_wrapping_but_not_the_content() {
    let a =
        parse_element(&json!({"id": "L1", "hook_action": "on_create_lead", "attributes": attrs()}))
            .unwrap();
    let mut other = attrs();
    other["customer"]["name"] = json!("Bruna");
    let b = parse_element(
        &json!({"hook_action": "on_create_lead", "lead": {"id": "L1", "attributes": other}}),
    )
    .unwrap();
    assert_eq!(a.idempotency_key(), b.idempotency_key());
    assert_ne!(a.payload_hash(), b.payload_hash());
}

#[test]
fn contact_hash_normalises_its_parts() {
    let h = contact_hash(
        Some(" Ana Souza "),
        Some(" ANA@Example.com "),
        Some("+55 (11) 98765-4321"),
    );
    assert_eq!(
        h,
        contact_hash(
            Some("Ana Souza"),
            Some("ana@example.com"),
            Some("5511987654321")
        )
    );
    assert_eq!(h.len(), 64);
    assert!(
        h.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_ne!(
        h,
        contact_hash(
            Some("Ana Souza"),
            Some("ana@example.com"),
            Some("5511987654320")
        )
    );
    assert_ne!(
        h,
        contact_hash(
            Some("ana souza"),
            Some("ana@example.com"),
            Some("5511987654321")
        )
    );
    // The separator keeps parts apart: moving text between fields changes the hash.
    assert_ne!(
        contact_hash(Some("ab"), Some(""), None),
        contact_hash(Some("a"), Some("b"), None)
    );
    assert_eq!(
        contact_hash(None, None, None),
        contact_hash(Some(" "), Some(""), Some("-"))
    );
}

#[test]
fn event_contact_hash_covers_every_number_the_worker_may_look_up() {
    let with = |p2: &str, global: &str| {
        parse_element(
            &json!({"id": "L1", "hook_action": "on_create_lead", "attributes": {
            "customer": {"name": "Ana", "email": "a@b.com", "phone": "(11) 98765-4321",
                         "phone2": p2, "phone_global": global}}}),
        )
        .unwrap()
        .contact_hash()
    };
    let base = with("", "");
    assert_eq!(
        base,
        contact_hash(Some("Ana"), Some("a@b.com"), Some("11987654321"))
    );
    // phone2 and phone_global change the hash (the worker falls back to them).
    assert_ne!(base, with("11912345678", ""));
    assert_ne!(base, with("", "+5511987654321"));
    // The same numbers in the same lookup order: the same hash.
    assert_eq!(with("11912345678", ""), with("", "11912345678"));
    assert_eq!(
        with("11912345678", "+55 11 98765-4321"),
        contact_hash_phones(
            Some("Ana"),
            Some("a@b.com"),
            &[
                Some("11987654321"),
                Some("11912345678"),
                Some("5511987654321")
            ]
        )
    );
}

#[test]
fn event_contact_hash_uses_phone_global_when_phone_is_empty() {
    let e = parse_element(&json!({"id": "L1", "hook_action": "on_create_lead", "attributes": {
        "customer": {"name": "Ana", "email": "a@b.com", "phone": "", "phone_global": "+55 11 98765-4321"}}}))
    .unwrap();
    assert_eq!(
        e.contact_hash(),
        contact_hash(Some("Ana"), Some("a@b.com"), Some("5511987654321"))
    );
}

#[test]
fn the_job_template_is_the_enrichment_contract() {
    let e = parse_element(&json!({"id": "L1", "hook_action": "on_close_lead"})).unwrap();
    assert_eq!(
        store::job_template(&e),
        json!({"kind": "enrich_lead", "v": 1, "event_id": "00000000-0000-0000-0000-000000000000",
               "lead_id": "L1", "hook_action": "on_close_lead"})
    );
}

#[test]
fn success_rate_is_completed_over_attempted() {
    assert_eq!(store::success_rate(3, 1, 0), Some(75.0));
    assert_eq!(store::success_rate(1, 1, 1), Some(33.3));
    assert_eq!(store::success_rate(0, 0, 0), None);
    assert_eq!(store::success_rate(2, 0, 0), Some(100.0));
}

mod properties {
    use super::super::payload::{parse_price, parse_timestamp};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    proptest! {
        #[test]
        fn price_text_never_panics_and_is_never_negative(raw in "[R$ 0-9.,a-z-]{0,24}") {
            if let Some(cents) = parse_price(&Value::String(raw)) {
                prop_assert!(cents >= 0);
            }
        }

        #[test]
        fn brazilian_prices_round_trip(units in 0u64..10_000_000_000, cents in 0u64..100) {
            // 1234567 and 5 → "1.234.567,05"
            let digits = units.to_string();
            let mut grouped = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    grouped.push('.');
                }
                grouped.push(c);
            }
            let text = format!("{grouped},{cents:02}");
            let want = i64::try_from(units * 100 + cents).unwrap();
            prop_assert_eq!(parse_price(&json!(text)), Some(want));
        }

        #[test]
        fn timestamp_text_never_panics(raw in "\\PC{0,40}") {
            let _ = parse_timestamp(&raw);
        }

        #[test]
        fn both_timestamp_forms_agree(secs in 0i64..4_102_444_800, offset_min in -720i32..=840) {
            let utc = chrono::DateTime::from_timestamp(secs, 0).unwrap();
            let tz = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let local = utc.with_timezone(&tz);
            let c2s = local.format("%Y-%m-%d %H:%M:%S %z").to_string();
            prop_assert_eq!(parse_timestamp(&c2s), Some(utc));
            prop_assert_eq!(parse_timestamp(&local.to_rfc3339()), Some(utc));
        }
    }
}
