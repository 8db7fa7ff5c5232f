//! Inbound messages: the lead an unknown sender becomes, matching known
//! contacts by phone (TR and BR spellings), the message, its timeline entry
//! and notification, opt-out keywords and media jobs.

mod common;

use common::*;
use crm_domain::jobs::{FetchTwilioMedia, MediaJob};
use crm_testkit::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn an_unknown_sms_sender_becomes_an_unregistered_lead_with_an_open_deal() {
    let db = TestDb::new().await;
    accepted(&deps(&db), sample("inbound-sms")).await;
    let pg = db.client().await;
    let contact = pg
        .query_one(
            "select id, phone, full_name, is_unregistered, source from contacts",
            &[],
        )
        .await
        .unwrap();
    let contact_id: Uuid = contact.get(0);
    assert_eq!(contact.get::<_, String>(1), "+905321234567");
    assert_eq!(contact.get::<_, String>(2), "Yeni Lead (+905321234567)");
    assert!(contact.get::<_, bool>(3));
    assert_eq!(contact.get::<_, String>(4), "twilio");

    let deal = pg
        .query_one(
            "select d.contact_id, s.name, d.status, d.source, d.title from deals d \
             join pipeline_stages s on s.id = d.stage_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(deal.get::<_, Uuid>(0), contact_id);
    assert_eq!(deal.get::<_, String>(1), "New");
    assert_eq!(deal.get::<_, String>(2), "open");
    assert_eq!(deal.get::<_, String>(3), "twilio");
    assert_eq!(deal.get::<_, String>(4), "SMS lead");
    assert_eq!(
        count(&pg, "select count(*) from deal_stage_history where from_stage_id is null and actor = 'twilio'").await,
        1
    );

    let msg = pg
        .query_one(
            "select id, direction, channel, contact_id, body, provider_sid, status, num_media, is_read, is_starred \
             from messages",
            &[],
        )
        .await
        .unwrap();
    let message_id: Uuid = msg.get(0);
    assert_eq!(
        (
            msg.get::<_, String>(1).as_str(),
            msg.get::<_, String>(2).as_str(),
            msg.get::<_, Uuid>(3),
            msg.get::<_, String>(4).as_str(),
            msg.get::<_, String>(5).as_str(),
            msg.get::<_, String>(6).as_str(),
            msg.get::<_, i32>(7),
            msg.get::<_, bool>(8),
            msg.get::<_, bool>(9),
        ),
        (
            "in",
            "sms",
            contact_id,
            "Merhaba, fiyat bilgisi alabilir miyim?",
            SMS_SID,
            "received",
            0,
            false,
            false
        )
    );
    let activity = pg
        .query_one(
            "select type, contact_id, deal_id is not null, body, metadata ->> 'message_id' from activities",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(activity.get::<_, String>(0), "message_in");
    assert_eq!(activity.get::<_, Uuid>(1), contact_id);
    assert!(activity.get::<_, bool>(2), "on the lead's deal");
    assert_eq!(
        activity.get::<_, String>(3),
        "Merhaba, fiyat bilgisi alabilir miyim?"
    );
    assert_eq!(activity.get::<_, String>(4), message_id.to_string());
    let note = pg
        .query_one(
            // What the console is told (the durable feed) and unread (the message's own flag).
            "select f.kind, f.contact_id, f.message_id, not m.is_read \
             from message_feed f join messages m on m.id = f.message_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(note.get::<_, String>(0), "message_in");
    assert_eq!(note.get::<_, Uuid>(1), contact_id);
    assert_eq!(note.get::<_, Uuid>(2), message_id);
    assert!(note.get::<_, bool>(3));
    assert_eq!(count(&pg, "select count(*) from outbox").await, 0);
}

#[tokio::test]
async fn a_whatsapp_message_with_media_names_the_lead_after_its_profile_and_queues_each_file() {
    let db = TestDb::new().await;
    // A Brazilian sender whose WhatsApp id lacks the 9th digit, read in TR.
    accepted(&deps(&db), sample("inbound-whatsapp-media")).await;
    let pg = db.client().await;
    let contact = pg
        .query_one(
            "select phone, full_name, is_unregistered, attributes -> 'whatsapp' from contacts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(contact.get::<_, String>(0), "+5511987654321");
    assert_eq!(contact.get::<_, String>(1), "Maria Souza");
    assert!(contact.get::<_, bool>(2));
    assert_eq!(
        contact.get::<_, serde_json::Value>(3),
        serde_json::json!({"wa_id": "551187654321", "profile_name": "Maria Souza"})
    );
    let msg = pg
        .query_one(
            "select id, channel, num_media, wa_id, profile_name from messages",
            &[],
        )
        .await
        .unwrap();
    let message_id: Uuid = msg.get(0);
    assert_eq!(msg.get::<_, String>(1), "whatsapp");
    assert_eq!(msg.get::<_, i32>(2), 2);
    assert_eq!(msg.get::<_, String>(3), "551187654321");
    assert_eq!(msg.get::<_, String>(4), "Maria Souza");
    assert_eq!(
        count(
            &pg,
            "select count(*) from deals where title = 'WhatsApp lead'"
        )
        .await,
        1
    );

    let jobs: Vec<MediaJob> = pg
        .query(
            "select body::text from outbox where queue = 'media' order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| MediaJob::parse(r.get(0)).unwrap())
        .collect();
    let base = "https://api.twilio.com/2010-04-01/Accounts/AC8f3b2c1d0e9a4b7c6d5e4f3a2b1c0d9e/Messages/MM4e2a9c7b1d3f5e8a0b6c4d2e9f1a3b5c/Media";
    assert_eq!(
        jobs,
        [
            MediaJob::FetchTwilioMedia(FetchTwilioMedia {
                v: 1,
                message_id,
                index: 0,
                url: format!("{base}/ME1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"),
                content_type: Some("image/jpeg".into()),
            }),
            MediaJob::FetchTwilioMedia(FetchTwilioMedia {
                v: 1,
                message_id,
                index: 1,
                url: format!("{base}/ME6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a"),
                content_type: Some("application/pdf".into()),
            }),
        ]
    );
}

/// Inserts a registered contact with this (E.164) phone.
async fn contact(pg: &tokio_postgres::Client, phone: &str, name: &str) -> Uuid {
    pg.query_one(
        "insert into contacts (phone, full_name) values ($1, $2) returning id",
        &[&phone, &name],
    )
    .await
    .unwrap()
    .get(0)
}

/// The contact the one message stored so far went to, and whether a lead was created.
async fn matched(pg: &tokio_postgres::Client, sid: &str) -> (Uuid, i64) {
    let id: Uuid = pg
        .query_one(
            "select contact_id from messages where provider_sid = $1",
            &[&sid],
        )
        .await
        .unwrap()
        .get(0);
    (
        id,
        count(pg, "select count(*) from contacts where is_unregistered").await,
    )
}

#[tokio::test]
async fn known_contacts_are_matched_in_tr_and_br_spellings() {
    // (stored phone, what Twilio sends as From, region of the function)
    let table: &[(&str, &str, &str)] = &[
        ("+905321234567", "+905321234567", "TR"),
        ("+905321234567", "whatsapp:+905321234567", "TR"),
        ("+905321234567", "05321234567", "TR"),
        ("+905321234567", "+90 532 123 45 67", "BR"),
        ("+5511987654321", "whatsapp:+5511987654321", "BR"),
        // Stored with the 9th digit, sent without it (an old WhatsApp id).
        ("+5511987654321", "whatsapp:+551187654321", "TR"),
        // Stored without it, sent with it.
        ("+551187654321", "+5511987654321", "BR"),
        ("+5511987654321", "(11) 98765-4321", "BR"),
        // Stored with the trunk 0 kept after the country code.
        ("+9005321234567", "+905321234567", "TR"),
    ];
    // Digits without `+` are read in the function's region first: in BR,
    // `905321234567` is the Brazilian +55 53 2123-4567 (carrier code 90),
    // not the Turkish number, and so no longer matches it (docs/security.md).
    for (i, (stored, from, region)) in table.iter().enumerate() {
        let db = TestDb::new().await;
        let pg = db.client().await;
        let id = contact(&pg, stored, "Registered").await;
        let sid = format!("SM{i:032}");
        accepted(&deps_in(&db, region), inbound(&sid, from, "Oi")).await;
        assert_eq!(
            matched(&pg, &sid).await,
            (id, 0),
            "{stored} <- {from} in {region}"
        );
        assert_eq!(
            count(&pg, "select count(*) from deals").await,
            0,
            "no deal for a known contact"
        );
    }
}

#[tokio::test]
async fn an_exact_match_wins_and_an_ambiguous_last_ten_digits_match_is_no_match() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let _older_variant = contact(&pg, "+15321234567", "Other country").await;
    let exact = contact(&pg, "+905321234567", "Exact").await;
    accepted(&deps, inbound("SM01", "+905321234567", "a")).await;
    assert_eq!(matched(&pg, "SM01").await, (exact, 0));

    // Two contacts end in the sender's last 10 digits: neither is guessed.
    contact(&pg, "+445551234567", "A").await;
    contact(&pg, "+15551234567", "B").await;
    accepted(&deps, inbound("SM02", "+905551234567", "b")).await;
    let (id, leads) = matched(&pg, "SM02").await;
    assert_eq!(leads, 1);
    let phone: String = pg
        .query_one("select phone from contacts where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(phone, "+905551234567");
}

#[tokio::test]
async fn the_same_last_ten_digits_in_another_country_is_another_person() {
    // Issue 13: a valid Chinese mobile ends in a Turkish contact's 10 digits.
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let turkish = contact(&pg, "+905321234567", "Turkish contact").await;
    accepted(&deps, inbound("SM01", "+8615321234567", "STOP")).await;
    let (id, leads) = matched(&pg, "SM01").await;
    assert_ne!(
        id, turkish,
        "the Chinese sender does not take over the thread"
    );
    assert_eq!(leads, 1, "it becomes a new unregistered lead");
    assert_eq!(
        count(
            &pg,
            &format!("select count(*) from opt_outs where contact_id = '{turkish}'")
        )
        .await,
        0,
        "the Turkish contact is not opted out"
    );
    // The only candidate with those digits elsewhere is not a match either.
    let db = TestDb::new().await;
    let pg = db.client().await;
    let american = contact(&pg, "+15321234567", "US contact").await;
    accepted(&deps_in(&db, "TR"), inbound("SM02", "+905321234567", "Oi")).await;
    assert_ne!(matched(&pg, "SM02").await.0, american);
}

#[tokio::test]
async fn keywords_act_only_on_an_exact_e164_match() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    // Stored without the 9th digit; the sender's E.164 has it: same person, not exact.
    let stored = contact(&pg, "+551187654321", "Variant").await;
    accepted(&deps, inbound("SM01", "whatsapp:+5511987654321", "STOP")).await;
    assert_eq!(
        matched(&pg, "SM01").await,
        (stored, 0),
        "the thread is theirs"
    );
    assert_eq!(
        count(&pg, "select count(*) from opt_outs").await,
        0,
        "but STOP from another spelling opts nobody out"
    );
    // An exact match does.
    let exact = contact(&pg, "+905321234567", "Exact").await;
    accepted(&deps, inbound("SM02", "+905321234567", "STOP")).await;
    assert_eq!(
        count(
            &pg,
            &format!("select count(*) from opt_outs where contact_id = '{exact}'")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_second_message_from_a_lead_goes_to_the_same_contact_without_another_deal() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    accepted(&deps, inbound("SM01", "whatsapp:+905321234567", "Merhaba")).await;
    accepted(&deps, inbound("SM02", "whatsapp:+905321234567", "Fiyat?")).await;
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from contacts").await, 1);
    assert_eq!(count(&pg, "select count(*) from deals").await, 1);
    assert_eq!(
        count(&pg, "select count(distinct contact_id) from messages").await,
        1
    );
    assert_eq!(count(&pg, "select count(*) from message_feed").await, 2);
}

async fn opted_out(pg: &tokio_postgres::Client, channel: &str) -> bool {
    count(
        pg,
        &format!("select count(*) from opt_outs where channel = '{channel}' and source = 'twilio'"),
    )
    .await
        == 1
}

#[tokio::test]
async fn every_opt_out_keyword_opts_out_of_its_channel_and_start_resubscribes() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let keywords = [
        "STOP",
        "stopall",
        " Unsubscribe ",
        "CANCEL",
        "end",
        "QUIT",
        "Sair",
        "PARAR",
        "cancelar",
        "DUR",
        "İptal",
        "iptal",
    ];
    for (i, word) in keywords.iter().enumerate() {
        accepted(
            &deps,
            inbound(&format!("SMa{i:031}"), "whatsapp:+905321234567", word),
        )
        .await;
        assert!(opted_out(&pg, "whatsapp").await, "{word}");
        assert!(
            !opted_out(&pg, "sms").await,
            "only the channel it came on: {word}"
        );
        accepted(
            &deps,
            inbound(&format!("SMb{i:031}"), "whatsapp:+905321234567", "START"),
        )
        .await;
        assert!(!opted_out(&pg, "whatsapp").await, "START after {word}");
    }
    accepted(&deps, inbound("SMc1", "+905321234567", "stop")).await;
    assert!(opted_out(&pg, "sms").await);
    assert!(!opted_out(&pg, "whatsapp").await);
    // The keyword messages themselves are stored like any other.
    assert_eq!(
        count(&pg, "select count(*) from messages").await,
        keywords.len() as i64 * 2 + 1
    );
}

#[tokio::test]
async fn a_keyword_inside_a_sentence_is_just_a_message() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    for (i, text) in ["please stop calling me", "STOP!", "Parar de enviar?"]
        .iter()
        .enumerate()
    {
        accepted(&deps, inbound(&format!("SM{i:032}"), "+905321234567", text)).await;
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from opt_outs").await, 0);
}
