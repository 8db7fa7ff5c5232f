//! The enrichment flows against a real PostgreSQL and mock Diretrix, Work
//! API and C2S servers (wiremock), each asserting the exact request: Basic
//! auth and path encoding (Diretrix), query (Work API), bearer and JSON body
//! (C2S), and how many calls were made. Create, update, close.

mod common;

use common::*;
use crm_testkit::TestDb;
use enrichment_worker::Outcome;
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{bearer_token, body_json, header, method, path},
};

#[tokio::test]
async fn create_lead_same_person_is_enriched_stored_and_noted_once() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    let lead = LeadFixture::new(
        "lead-1",
        Some("Maria.Silva@gmail.com"),
        Some("(11) 98765-4321"),
    );
    upsert_lead(&pg, &lead).await;
    let event = insert_event(&pg, "lead-1", "on_create_lead").await;
    diretrix(
        &m,
        PHONE_PATH,
        json!([{"nome": "MARIA DA SILVA", "cpf": CPF_A}]),
        1,
    )
    .await;
    diretrix(
        &m,
        EMAIL_PATH,
        json!([{"nome": "MARIA DA SILVA", "cpf": "529.982.247-25"}]),
        1,
    )
    .await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-1", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead-1", "on_create_lead", 1).await,
        Outcome::Done
    );

    assert_eq!(event_row(&pg, event).await, ("completed".to_string(), None));
    let (status, identity, reasons, validation, _) = run_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), identity.as_deref()),
        ("completed", Some("same_person"))
    );
    assert_eq!(reasons, json!([]));
    assert_eq!(
        validation,
        json!({"phone": {"valid": true}, "email": {"valid": true}})
    );
    let note = posted_note(&m, "lead-1").await;
    assert!(note.starts_with("📞📧 Telefone e e-mail da mesma pessoa\n\n✅ DADOS PESSOAIS\nNome: MARIA DA SILVA\nCPF: 52998224725"), "{note}");
    for section in [
        "💰 DADOS FINANCEIROS",
        "📧 EMAILS",
        "📱 TELEFONES",
        "🏠 ENDEREÇOS",
        "🏢 EMPRESAS",
        "✅ WhatsApp",
    ] {
        assert!(note.contains(section), "{section}");
    }
    let party = pg
        .query_one(
            "select p.cpf, p.name, p.birth_date::text, lp.matched_by, jsonb_array_length(p.phones), p.source_payload->'DadosBasicos'->>'nome' \
             from parties p join lead_parties lp on lp.party_id = p.id where lp.lead_id = 'lead-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(party.get::<_, String>(0), CPF_A);
    assert_eq!(
        party.get::<_, Option<String>>(1).as_deref(),
        Some("MARIA DA SILVA")
    );
    assert_eq!(
        party.get::<_, Option<String>>(2).as_deref(),
        Some("1980-02-01")
    );
    assert_eq!(party.get::<_, String>(3), "phone_and_email");
    assert_eq!(party.get::<_, i32>(4), 1);
    let n = pg
        .query_one(
            "select status, http_status from enrichment_notes where lead_id = 'lead-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (n.get::<_, String>(0), n.get::<_, Option<i32>>(1)),
        ("posted".to_string(), Some(201))
    );

    // Redelivered (SQS at least once): acknowledged, nothing called again (the mocks expect one call each).
    assert_eq!(
        run_job(&deps, event, "lead-1", "on_create_lead", 2).await,
        Outcome::Done
    );
}

#[tokio::test]
async fn different_people_get_a_warning_and_one_block_each() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead-2", Some("maria.silva@gmail.com"), Some("11987654321")),
    )
    .await;
    let event = insert_event(&pg, "lead-2", "on_create_lead").await;
    diretrix(
        &m,
        PHONE_PATH,
        json!([{"nome": "MARIA DA SILVA", "cpf": CPF_A}]),
        1,
    )
    .await;
    diretrix(
        &m,
        EMAIL_PATH,
        json!([{"nome": "JOSE SOUZA", "cpf": CPF_B}]),
        1,
    )
    .await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    work(&m, CPF_B, "JOSE SOUZA", 1).await;
    c2s_accepts(&m, "lead-2", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead-2", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, identity, ..) = run_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), identity.as_deref()),
        ("completed", Some("different_people"))
    );
    let note = posted_note(&m, "lead-2").await;
    assert!(
        note.starts_with("⚠️ Telefone e e-mail relacionados a PESSOAS DIFERENTES!\n"),
        "{note}"
    );
    assert_eq!(note.matches("✅ DADOS PESSOAIS").count(), 2);
    let phone_block = note.find("👤 PESSOA DO TELEFONE").unwrap();
    let email_block = note.find("👤 PESSOA DO E-MAIL").unwrap();
    assert!(
        phone_block < note.find("MARIA DA SILVA").unwrap()
            && email_block < note.find("JOSE SOUZA").unwrap()
    );
    let links: Vec<(String, String)> = pg
        .query("select p.cpf, lp.matched_by from lead_parties lp join parties p on p.id = lp.party_id where lead_id = 'lead-2' order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        links,
        vec![
            (CPF_B.to_string(), "email".to_string()),
            (CPF_A.to_string(), "phone".to_string())
        ]
    );
}

#[tokio::test]
async fn a_fake_email_is_not_looked_up_and_the_phone_alone_is_reported_as_such() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new(
            "lead-3",
            Some("1199999999333@gmail.com"),
            Some("11987654321"),
        ),
    )
    .await;
    let event = insert_event(&pg, "lead-3", "on_create_lead").await;
    diretrix(
        &m,
        PHONE_PATH,
        json!([{"nome": "MARIA DA SILVA", "cpf": CPF_A}]),
        1,
    )
    .await;
    // Nothing else may reach Diretrix (the fake e-mail is never looked up).
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(0)
        .mount(&m.diretrix)
        .await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-3", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead-3", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, identity, reasons, validation, _) = run_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), identity.as_deref()),
        ("partial", Some("phone_only"))
    );
    assert_eq!(
        reasons,
        json!(["e-mail not used: fake: a long run of one digit"])
    );
    assert_eq!(
        validation["email"],
        json!({"valid": false, "reason": "fake: a long run of one digit"})
    );
    let (ev_status, ev_error) = event_row(&pg, event).await;
    assert_eq!(
        (ev_status.as_str(), ev_error.as_deref()),
        (
            "partial",
            Some("e-mail not used: fake: a long run of one digit")
        )
    );
    let note = posted_note(&m, "lead-3").await;
    assert!(
        note.starts_with(
            "📞 Dados encontrados somente pelo telefone (e-mail: inválido, não consultado)\n"
        ),
        "{note}"
    );
}

#[tokio::test]
async fn emails_are_path_encoded_and_an_email_only_match_says_so() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead/4 x", Some("ana/b?c#d@imob.com.br"), None),
    )
    .await;
    let event = insert_event(&pg, "lead/4 x", "on_create_lead").await;
    diretrix(
        &m,
        "/diretrix/Consultas/Pessoa/Email/ana%2Fb%3Fc%23d@imob.com.br",
        json!([{"nome": "ANA", "cpf": CPF_B}]),
        1,
    )
    .await;
    work(&m, CPF_B, "ANA B", 1).await;
    Mock::given(method("POST"))
        .and(path("/integration/leads/lead%2F4%20x/create_message"))
        .and(bearer_token(C2S_TOKEN))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead/4 x", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, identity, ..) = run_row(&pg, event).await;
    // A missing phone is not a gap: the run is complete with what there was.
    assert_eq!(
        (status.as_str(), identity.as_deref()),
        ("completed", Some("email_only"))
    );
    let note = posted_note_at(
        &m,
        "/integration/leads/lead%2F4%20x/create_message",
        "lead/4 x",
    )
    .await;
    assert!(
        note.starts_with("📧 Dados encontrados somente pelo e-mail (telefone: não informado)\n"),
        "{note}"
    );
}

#[tokio::test]
async fn the_c2s_request_is_exact() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead-5", Some("maria.silva@gmail.com"), None),
    )
    .await;
    let event = insert_event(&pg, "lead-5", "on_create_lead").await;
    diretrix(&m, EMAIL_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    let expected = expected_phone_only_note().replace(
        "📞 Dados encontrados somente pelo telefone (e-mail: não informado)",
        "📧 Dados encontrados somente pelo e-mail (telefone: não informado)",
    );
    Mock::given(method("POST"))
        .and(path("/integration/leads/lead-5/create_message"))
        .and(bearer_token(C2S_TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"leadId": "lead-5", "body": expected})))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));
    assert_eq!(
        run_job(&deps, event, "lead-5", "on_create_lead", 1).await,
        Outcome::Done
    );
    assert_eq!(event_row(&pg, event).await, ("completed".to_string(), None));
    // The stored note is the posted one, byte for byte.
    let stored: String = pg
        .query_one(
            "select body from enrichment_notes where lead_id = 'lead-5'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn no_cpf_found_fails_with_a_clear_message_and_posts_nothing() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead-6", Some("maria.silva@gmail.com"), Some("11987654321")),
    )
    .await;
    let event = insert_event(&pg, "lead-6", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([]), 1).await;
    diretrix(
        &m,
        EMAIL_PATH,
        json!([{"nome": "X", "cpf": "11111111111"}]),
        1,
    )
    .await;
    let deps = deps(&db, config(Some(&m), &[]));

    assert_eq!(
        run_job(&deps, event, "lead-6", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    // Issue 13: the CPF Diretrix did return fails its check digits; say so.
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "failed",
            Some(
                "no CPF found (phone: not found; e-mail: not found); \
                 Diretrix returned 1 CPF(s) that fail the check digits"
            )
        )
    );
    assert!(m.work.received_requests().await.unwrap().is_empty());
    assert!(m.c2s.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_contact_data_fails_without_any_lookup() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead-7", Some("123456789@gmail.com"), Some("11 1234")),
    )
    .await;
    let event = insert_event(&pg, "lead-7", "on_create_lead").await;
    let deps = deps(&db, config(Some(&m), &[]));
    assert_eq!(
        run_job(&deps, event, "lead-7", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some(
            "no valid phone or e-mail to look up (phone: 6 digits: a Brazilian number has 10 or 11 with the area code; e-mail: fake: a digit sequence)"
        )
    );
    assert!(m.diretrix.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_update_re_enriches_only_when_the_contact_data_changed() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    let mut lead = LeadFixture::new("lead-13", None, Some("11987654321"));
    upsert_lead(&pg, &lead).await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    diretrix(&m, EMAIL_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-13", 2).await;
    let deps = deps(&db, config(Some(&m), &[]));
    let created = insert_event(&pg, "lead-13", "on_create_lead").await;
    assert_eq!(
        run_job(&deps, created, "lead-13", "on_create_lead", 1).await,
        Outcome::Done
    );

    // Same name, e-mail and phone (another field changed): skipped with the reason.
    let same = insert_event(&pg, "lead-13", "on_update_lead").await;
    assert_eq!(
        run_job(&deps, same, "lead-13", "on_update_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, same).await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "skipped",
            Some("contact data (name, e-mail, phone) unchanged since the last enrichment")
        )
    );

    // The e-mail is added: re-enriched (the phone's answer is reused within the window).
    lead.email = Some("maria.silva@gmail.com");
    upsert_lead(&pg, &lead).await;
    let changed = insert_event(&pg, "lead-13", "on_update_lead").await;
    assert_eq!(
        run_job(&deps, changed, "lead-13", "on_update_lead", 1).await,
        Outcome::Done
    );
    let (status, identity, ..) = run_row(&pg, changed).await;
    assert_eq!(
        (status.as_str(), identity.as_deref()),
        ("completed", Some("same_person"))
    );
    let notes: i64 = pg
        .query_one(
            "select count(*) from enrichment_notes where status = 'posted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 2, "a different note (new header) is a new post");
}

#[tokio::test]
async fn closing_a_lead_notifies_the_sellers_manager_through_the_outbox() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-14", None, Some("11987654321"))).await;
    pg.execute(
        "update c2s_leads set closed_at = '2026-11-20T15:30:00Z' where id = 'lead-14'",
        &[],
    )
    .await
    .unwrap();
    let manager: uuid::Uuid = pg
        .query_one("insert into managers (name, email) values ('Gerente', 'gerente@imob.com.br') returning id", &[])
        .await
        .unwrap()
        .get(0);
    pg.execute("insert into manager_sellers (manager_id, seller_email) values ($1, 'vendedor@imob.com.br')", &[&manager]).await.unwrap();
    let deps = deps(&db, config(Some(&m), &[]));
    let event = insert_event(&pg, "lead-14", "on_close_lead").await;

    assert_eq!(
        run_job(&deps, event, "lead-14", "on_close_lead", 1).await,
        Outcome::Done
    );
    assert_eq!(event_row(&pg, event).await, ("completed".to_string(), None));
    let n = pg
        .query_one("select id, channel, status, subject, body from manager_notifications where lead_id = 'lead-14'", &[])
        .await
        .unwrap();
    let id: uuid::Uuid = n.get(0);
    assert_eq!(
        (n.get::<_, String>(1), n.get::<_, String>(2)),
        ("email".into(), "pending".into())
    );
    assert_eq!(n.get::<_, String>(3), "Lead fechado: Maria Silva");
    assert!(n.get::<_, String>(4).contains("Vendedor: Carlos Vendedor\nProduto: Apartamento 2 quartos\nStatus: Novo\nFechado em: 20/11/2026 15:30 UTC"));
    let job: Value = pg
        .query_one("select body from outbox where queue = 'send'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        job,
        json!({"kind": "notify_manager", "v": 1, "notification_id": id})
    );
    // No paid call for a close.
    assert!(m.diretrix.received_requests().await.unwrap().is_empty());

    // A second manager for the same seller, by C2S seller id, reachable by webhook:
    // the next close event notifies both, each on its channel.
    let second: uuid::Uuid = pg
        .query_one("insert into managers (name, webhook_target_key) values ('Diretor', repeat('d', 64)) returning id", &[])
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into manager_sellers (manager_id, seller_id) values ($1, 'seller-7')",
        &[&second],
    )
    .await
    .unwrap();
    let again = insert_event(&pg, "lead-14", "on_close_lead").await;
    assert_eq!(
        run_job(&deps, again, "lead-14", "on_close_lead", 1).await,
        Outcome::Done
    );
    let channels: Vec<(uuid::Uuid, String)> = pg
        .query("select manager_id, channel from manager_notifications where event_id = $1 order by channel", &[&again])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        channels,
        vec![
            (manager, "email".to_string()),
            (second, "webhook".to_string())
        ]
    );
    let jobs: i64 = pg
        .query_one("select count(*) from outbox where queue = 'send'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 3);

    // A lead whose seller has no manager: recorded, partial, nobody notified.
    let mut other = LeadFixture::new("lead-15", None, None);
    other.seller_id = Some("seller-unknown");
    other.seller_email = None;
    upsert_lead(&pg, &other).await;
    let event = insert_event(&pg, "lead-15", "on_close_lead").await;
    assert_eq!(
        run_job(&deps, event, "lead-15", "on_close_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "partial");
    assert!(error.unwrap().contains("no manager matches the seller"));
}

#[tokio::test]
async fn without_credentials_the_local_sink_answers_and_nothing_is_paid_or_posted() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new(
            "lead-16",
            Some("maria.silva@gmail.com"),
            Some("11987654321"),
        ),
    )
    .await;
    let event = insert_event(&pg, "lead-16", "on_create_lead").await;
    let deps = deps_local(&db);
    assert_eq!(
        run_job(&deps, event, "lead-16", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "failed",
            Some("no CPF found (phone: not found; e-mail: not found)")
        )
    );
    let (_, _, reasons, ..) = run_row(&pg, event).await;
    assert!(
        reasons
            .to_string()
            .contains("Diretrix not configured (local sink)"),
        "{reasons}"
    );
    let lookups: i64 = pg
        .query_one("select count(*) from enrichment_lookups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lookups, 0);
}
