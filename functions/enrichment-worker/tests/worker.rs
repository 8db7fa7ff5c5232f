//! The enrichment worker against a real PostgreSQL and mock Diretrix, Work
//! API and C2S servers (wiremock), each asserting the exact request: Basic
//! auth and path encoding (Diretrix), query (Work API), bearer and JSON body
//! (C2S), and how many calls were made.

mod common;

use common::*;
use crm_testkit::TestDb;
use enrichment_worker::{Outcome, handle};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{basic_auth, bearer_token, body_json, header, method, path, query_param},
};

const PHONE_PATH: &str = "/diretrix/Consultas/Pessoa/Telefone/11987654321";
const EMAIL_PATH: &str = "/diretrix/Consultas/Pessoa/Email/maria.silva@gmail.com";

async fn diretrix(m: &Mocks, at: &str, answer: Value, times: u64) {
    Mock::given(method("GET"))
        .and(path(at))
        .and(basic_auth(USER, PASS))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(times)
        .mount(&m.diretrix)
        .await;
}

async fn work(m: &Mocks, cpf: &str, name: &str, times: u64) {
    Mock::given(method("GET"))
        .and(path("/api"))
        .and(query_param("token", WORK_TOKEN))
        .and(query_param("modulo", "cpf"))
        .and(query_param("consulta", cpf))
        .respond_with(ResponseTemplate::new(200).set_body_json(work_body(cpf, name)))
        .expect(times)
        .mount(&m.work)
        .await;
}

async fn c2s_accepts(m: &Mocks, lead_id: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/integration/leads/{lead_id}/create_message")))
        .and(bearer_token(C2S_TOKEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ok": true})))
        .expect(times)
        .mount(&m.c2s)
        .await;
}

/// The one note C2S received for the lead, checked for its exact shape.
async fn posted_note(m: &Mocks, lead_id: &str) -> String {
    posted_note_at(
        m,
        &format!("/integration/leads/{lead_id}/create_message"),
        lead_id,
    )
    .await
}

async fn posted_note_at(m: &Mocks, at: &str, lead_id: &str) -> String {
    let reqs = m.c2s.received_requests().await.unwrap();
    let mine: Vec<_> = reqs.iter().filter(|r| r.url.path() == at).collect();
    assert_eq!(mine.len(), 1, "exactly one note post");
    let body: Value = serde_json::from_slice(&mine[0].body).unwrap();
    assert_eq!(
        mine[0].headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(body["leadId"], json!(lead_id));
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    body["body"].as_str().unwrap().to_string()
}

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
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "failed",
            Some("no CPF found (phone: not found; e-mail: not found)")
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
async fn diretrix_5xx_is_retried_with_backoff_then_the_event_shows_why_and_the_message_dead_letters()
 {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-8", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-8", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(4)
        .mount(&m.diretrix)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));

    let body = job_body(event, "lead-8", "on_create_lead");
    for receive in 1..=2u32 {
        let resp = handle(
            sqs_event(vec![record(
                "enrichment-worker/create-lead.json",
                "m-8",
                &body,
                receive,
            )]),
            &deps,
        )
        .await;
        assert_eq!(
            failures(&resp),
            vec!["m-8".to_string()],
            "receive {receive}"
        );
        assert_eq!(event_row(&pg, event).await.0, "received");
    }
    // The claim was released after each failure: nothing left pending.
    let pending: i64 = pg
        .query_one("select count(*) from enrichment_lookups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    assert!(
        matches!(run_job(&deps, event, "lead-8", "on_create_lead", 2).await, Outcome::Retry { delay, .. } if delay == Duration::from_secs(60))
    );
    // The last receive (ENRICHMENT_MAX_ATTEMPTS = 3): the event records why, SQS gets a failure (→ DLQ).
    let resp = handle(
        sqs_event(vec![record(
            "enrichment-worker/create-lead.json",
            "m-8",
            &body,
            3,
        )]),
        &deps,
    )
    .await;
    assert_eq!(failures(&resp), vec!["m-8".to_string()]);
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "failed",
            Some("gave up after 3 attempts: Diretrix answered HTTP 503")
        )
    );
    let (run_status, _, reasons, _, attempts) = run_row(&pg, event).await;
    assert_eq!((run_status.as_str(), attempts), ("failed", 4));
    assert_eq!(
        reasons,
        json!(["gave up after 3 attempts: Diretrix answered HTTP 503"])
    );
}

#[tokio::test]
async fn work_api_errors_inside_a_200_are_never_data() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-9", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-9", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": 429, "mensagem": "Créditos insuficientes"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.work)
        .await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.work)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));

    let first = run_job(&deps, event, "lead-9", "on_create_lead", 1).await;
    assert!(
        matches!(&first, Outcome::Retry { reason, .. } if reason.contains("status 429 inside a 200")),
        "{first:?}"
    );
    let second = run_job(&deps, event, "lead-9", "on_create_lead", 2).await;
    assert!(
        matches!(&second, Outcome::Retry { reason, .. } if reason == "Work API answered HTTP 429"),
        "{second:?}"
    );
    let parties: i64 = pg
        .query_one("select count(*) from parties", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(parties, 0);
    assert!(m.c2s.received_requests().await.unwrap().is_empty());
    // The Diretrix answer was kept for the window: asked once across both receives.
}

#[tokio::test]
async fn a_c2s_5xx_is_retried_and_the_note_posted_once_without_paying_again() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new(
            "lead-10",
            Some("maria.silva@gmail.com"),
            Some("11987654321"),
        ),
    )
    .await;
    let event = insert_event(&pg, "lead-10", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    diretrix(&m, EMAIL_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.c2s)
        .await;
    c2s_accepts(&m, "lead-10", 1).await;
    let deps = deps(&db, config(Some(&m), &[]));

    let first = run_job(&deps, event, "lead-10", "on_create_lead", 1).await;
    assert!(
        matches!(&first, Outcome::Retry { reason, .. } if reason == "C2S answered HTTP 502"),
        "{first:?}"
    );
    let n = pg
        .query_one(
            "select status, attempts, http_status from enrichment_notes",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            n.get::<_, String>(0),
            n.get::<_, i32>(1),
            n.get::<_, Option<i32>>(2)
        ),
        ("failed".into(), 1, Some(502))
    );
    assert_eq!(event_row(&pg, event).await.0, "received");

    assert_eq!(
        run_job(&deps, event, "lead-10", "on_create_lead", 2).await,
        Outcome::Done
    );
    let n = pg
        .query_one("select status, attempts from enrichment_notes", &[])
        .await
        .unwrap();
    assert_eq!(
        (n.get::<_, String>(0), n.get::<_, i32>(1)),
        ("posted".into(), 2)
    );
    assert_eq!(event_row(&pg, event).await.0, "completed");
    // Both posts carried the same note.
    let bodies: Vec<Vec<u8>> = m
        .c2s
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
}

#[tokio::test]
async fn an_uncertain_post_is_flagged_and_never_repeated() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-11", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-11", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    // C2S takes longer than C2S_TIMEOUT_MS: it may have stored the note.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[("C2S_TIMEOUT_MS", "300")]));

    assert_eq!(
        run_job(&deps, event, "lead-11", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, event).await;
    assert_eq!(status, "partial");
    assert_eq!(
        error.as_deref(),
        Some("note post uncertain (C2S timed out): flagged, not repeated")
    );
    let n: String = pg
        .query_one("select status from enrichment_notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, "uncertain");

    // The same lead created again (a second event, same data): the same note is not posted again.
    let again = insert_event(&pg, "lead-11", "on_create_lead").await;
    assert_eq!(
        run_job(&deps, again, "lead-11", "on_create_lead", 1).await,
        Outcome::Done
    );
    let (status, error) = event_row(&pg, again).await;
    assert_eq!(status, "partial");
    assert!(
        error
            .unwrap()
            .contains("note post uncertain: an earlier attempt's outcome is unknown")
    );
}

#[tokio::test]
async fn a_crash_mid_post_leaves_an_intent_that_becomes_uncertain_not_a_second_post() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-12", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-12", "on_create_lead").await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&m.c2s)
        .await;
    let deps = deps(&db, config(Some(&m), &[]));
    // Simulate the crash: the first receive recorded its intent and died during the call.
    let run: uuid::Uuid = pg
        .query_one(
            "insert into enrichment_runs (event_id, lead_id, hook_action) values ($1, 'lead-12', 'on_create_lead') returning id",
            &[&event],
        )
        .await
        .unwrap()
        .get(0);
    // The note the worker composes for this lead (the same data make the same note).
    pg.execute(
        "insert into enrichment_notes (lead_id, run_id, body, body_sha256, status, attempts, attempted_at) \
         select 'lead-12', $1, b, encode(sha256(convert_to(b, 'UTF8')), 'hex'), 'pending', 1, now() - interval '1 hour' \
         from (select $2::text as b) x",
        &[&run, &expected_phone_only_note()],
    )
    .await
    .unwrap();

    assert_eq!(
        run_job(&deps, event, "lead-12", "on_create_lead", 2).await,
        Outcome::Done
    );
    let n = pg
        .query_one("select status, error from enrichment_notes", &[])
        .await
        .unwrap();
    assert_eq!(n.get::<_, String>(0), "uncertain");
    assert!(
        n.get::<_, String>(1)
            .starts_with("uncertain: an earlier attempt's outcome is unknown")
    );
    assert_eq!(event_row(&pg, event).await.0, "partial");
}

fn deps_local(db: &TestDb) -> enrichment_worker::Deps {
    deps(db, config(None, &[]))
}

/// The note `lead-12`'s data produce (phone only, Work data of `work_body`).
fn expected_phone_only_note() -> String {
    "📞 Dados encontrados somente pelo telefone (e-mail: não informado)\n\n✅ DADOS PESSOAIS\nNome: MARIA DA SILVA\nCPF: 52998224725\nNascimento: 01/02/1980\nSexo: F\nMãe: ANA DA SILVA\n\n💰 DADOS FINANCEIROS\nRenda: 3.500,00\nPoder aquisitivo: MEDIO (faixa 3)\nScore: 650 (BAIXO RISCO)\n\n📧 EMAILS\n• maria.silva@gmail.com\n\n📱 TELEFONES\n• 11987654321 (MOVEL) ✅ WhatsApp\n\n🏠 ENDEREÇOS\n• RUA DAS FLORES, 100 - CENTRO - SAO PAULO/SP - CEP 01000000\n\n🏢 EMPRESAS\n• 12345678000190 (SOCIO)".to_string()
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
async fn concurrent_workers_on_the_same_phone_make_one_paid_lookup() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    // Slow answers: every worker is in flight while the first call runs.
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .and(basic_auth(USER, PASS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"nome": "MARIA", "cpf": CPF_A}]))
                .set_delay(Duration::from_millis(400)),
        )
        .expect(1)
        .mount(&m.diretrix)
        .await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .and(query_param("consulta", CPF_A))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(work_body(CPF_A, "MARIA DA SILVA"))
                .set_delay(Duration::from_millis(400)),
        )
        .expect(1)
        .mount(&m.work)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(4)
        .mount(&m.c2s)
        .await;
    let mut jobs = Vec::new();
    for i in 0..4 {
        let id = format!("lead-c{i}");
        upsert_lead(&pg, &LeadFixture::new(&id, None, Some("(11) 98765-4321"))).await;
        let event = insert_event(&pg, &id, "on_create_lead").await;
        // Each worker its own pool and clients, as separate Lambda instances.
        jobs.push((deps(&db, config(Some(&m), &[])), event, id));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (deps, event, id) in jobs {
        tasks.spawn(async move { (event, run_job(&deps, event, &id, "on_create_lead", 1).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (event, outcome) = done.unwrap();
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(event_row(&pg, event).await.0, "completed");
    }
    let row = pg.query_one("select calls, state from enrichment_lookups where key = 'diretrix:phone:+5511987654321'", &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (1, "done".to_string())
    );
    let parties: i64 = pg
        .query_one("select count(*) from parties", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(parties, 1);
}

#[tokio::test]
async fn an_expired_lookup_is_paid_for_again() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    diretrix(&m, PHONE_PATH, json!([]), 2).await;
    let deps = deps(&db, config(Some(&m), &[("LOOKUP_DEDUP_WINDOW_SECS", "60")]));
    for (i, expire) in [(0, true), (1, false)] {
        let id = format!("lead-e{i}");
        upsert_lead(&pg, &LeadFixture::new(&id, None, Some("11987654321"))).await;
        let event = insert_event(&pg, &id, "on_create_lead").await;
        assert_eq!(
            run_job(&deps, event, &id, "on_create_lead", 1).await,
            Outcome::Done
        );
        if expire {
            pg.execute(
                "update enrichment_lookups set expires_at = now() - interval '1 second'",
                &[],
            )
            .await
            .unwrap();
        }
    }
    let calls: i32 = pg
        .query_one("select calls from enrichment_lookups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(calls, 2);
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
async fn a_malformed_message_is_recorded_and_dead_lettered_while_the_batch_goes_on() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    let deps = deps(&db, config(Some(&m), &[]));
    let sample: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&crm_testkit::event("enrichment-worker/mixed-batch.json")).unwrap();
    // The first record names an event that does not exist here: recorded and acknowledged.
    let resp = handle(sample, &deps).await;
    assert_eq!(
        failures(&resp),
        vec!["7a1e0c2a-8b3d-4e6f-9a1b-2c3d4e5f0004".to_string()]
    );
    let rows: Vec<(String, String)> = pg
        .query("select message_id, reason from poison_messages where queue = 'enrichment' order by message_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1, "the event does not exist");
    assert!(rows[1].1.starts_with("not JSON"), "{}", rows[1].1);
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

#[tokio::test]
async fn a_failed_event_the_webhook_takes_over_runs_again_on_the_same_run() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(&pg, &LeadFixture::new("lead-17", None, Some("11987654321"))).await;
    let event = insert_event(&pg, "lead-17", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path(PHONE_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&m.diretrix)
        .await;
    diretrix(&m, PHONE_PATH, json!([{"nome": "MARIA", "cpf": CPF_A}]), 1).await;
    work(&m, CPF_A, "MARIA DA SILVA", 1).await;
    c2s_accepts(&m, "lead-17", 1).await;
    let deps = deps(&db, config(Some(&m), &[("ENRICHMENT_MAX_ATTEMPTS", "1")]));

    // One attempt allowed: given up, the event failed with why.
    assert!(matches!(
        run_job(&deps, event, "lead-17", "on_create_lead", 1).await,
        Outcome::DeadLetter { .. }
    ));
    assert_eq!(event_row(&pg, event).await.0, "failed");
    // C2S redelivers the element; the webhook takes the failed key over (received again, same event id).
    pg.execute("update webhook_events set status = 'received', error = null, processed_at = null where id = $1", &[&event])
        .await
        .unwrap();
    assert_eq!(
        run_job(&deps, event, "lead-17", "on_create_lead", 1).await,
        Outcome::Done
    );
    assert_eq!(event_row(&pg, event).await, ("completed".to_string(), None));
    let (status, _, reasons, _, attempts) = run_row(&pg, event).await;
    assert_eq!(
        (status.as_str(), attempts, reasons),
        ("completed", 2, json!([]))
    );
}
