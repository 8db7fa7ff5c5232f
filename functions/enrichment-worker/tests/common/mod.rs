//! Shared test support: a worker wired to a fresh database and mock
//! providers (wiremock), C2S fixtures inserted directly (as the webhook
//! would write them), SQS events built from `events/enrichment-worker/*.json`.
#![allow(dead_code)]

use aws_lambda_events::sqs::SqsEvent;
use crm_platform::{
    config::{AppEnv, DatabaseConfig, Env},
    db::build_pool,
};
use crm_testkit::{TestDb, event};
use enrichment_worker::{Deps, EnrichmentConfig, Message, Outcome, process};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{basic_auth, bearer_token, method, path, query_param},
};

pub const USER: &str = "crm-diretrix";
pub const PASS: &str = "diretrix-pass";
pub const WORK_TOKEN: &str = "work-token-123";
pub const C2S_TOKEN: &str = "c2s-bearer-token";
/// Valid CPFs (check digits).
pub const CPF_A: &str = "52998224725";
pub const CPF_B: &str = "11144477735";

pub struct Mocks {
    pub diretrix: MockServer,
    pub work: MockServer,
    pub c2s: MockServer,
}

impl Mocks {
    pub async fn start() -> Self {
        Self {
            diretrix: MockServer::start().await,
            work: MockServer::start().await,
            c2s: MockServer::start().await,
        }
    }
}

pub fn config(mocks: Option<&Mocks>, extra: &[(&str, &str)]) -> EnrichmentConfig {
    let mut pairs: Vec<(String, String)> = vec![
        ("ENRICHMENT_MAX_ATTEMPTS".into(), "3".into()),
        ("DIRETRIX_TIMEOUT_MS".into(), "3000".into()),
        ("WORK_API_TIMEOUT_MS".into(), "3000".into()),
        ("C2S_TIMEOUT_MS".into(), "3000".into()),
        ("DIRETRIX_MIN_INTERVAL_MS".into(), "0".into()),
        ("WORK_API_MIN_INTERVAL_MS".into(), "0".into()),
        ("C2S_MIN_INTERVAL_MS".into(), "0".into()),
    ];
    if let Some(m) = mocks {
        pairs.extend([
            (
                "DIRETRIX_BASE_URL".into(),
                format!("{}/diretrix", m.diretrix.uri()),
            ),
            ("DIRETRIX_USER".into(), USER.into()),
            ("DIRETRIX_PASS".into(), PASS.into()),
            ("WORK_API".into(), WORK_TOKEN.into()),
            ("WORK_API_BASE_URL".into(), m.work.uri()),
            ("C2S_BASE_URL".into(), m.c2s.uri()),
            ("C2S_TOKEN".into(), C2S_TOKEN.into()),
        ]);
    }
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k.to_string(), v.to_string()));
    }
    let env = Env::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    EnrichmentConfig::from_env(&env, AppEnv::Test).unwrap()
}

pub fn deps(db: &TestDb, config: EnrichmentConfig) -> Deps {
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 4).unwrap()).unwrap();
    Deps::with(pool, config).unwrap()
}

pub fn hash(parts: &[&str]) -> String {
    hex::encode(Sha256::digest(parts.join("|").as_bytes()))
}

/// A C2S lead as the webhook stores it.
pub struct LeadFixture<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub seller_id: Option<&'a str>,
    pub seller_email: Option<&'a str>,
}

impl<'a> LeadFixture<'a> {
    pub fn new(id: &'a str, email: Option<&'a str>, phone: Option<&'a str>) -> Self {
        Self {
            id,
            name: "Maria Silva",
            email,
            phone,
            seller_id: Some("seller-7"),
            seller_email: Some("vendedor@imob.com.br"),
        }
    }
}

/// Inserts or updates the lead (contact hash from its contact data).
pub async fn upsert_lead(pg: &tokio_postgres::Client, l: &LeadFixture<'_>) {
    let h = hash(&[l.name, l.email.unwrap_or(""), l.phone.unwrap_or("")]);
    pg.execute(
        "insert into c2s_leads (id, customer_name, customer_email, customer_phone, seller_id, seller_name, seller_email, \
                                status_name, product_description, last_hook_action, contact_hash) \
         values ($1, $2, $3, $4, $5, 'Carlos Vendedor', $6, 'Novo', 'Apartamento 2 quartos', 'on_create_lead', $7) \
         on conflict (id) do update set customer_name = excluded.customer_name, customer_email = excluded.customer_email, \
             customer_phone = excluded.customer_phone, contact_hash = excluded.contact_hash",
        &[&l.id, &l.name, &l.email, &l.phone, &l.seller_id, &l.seller_email, &h],
    )
    .await
    .unwrap();
}

/// A `received` webhook event for the lead and action; returns its id.
pub async fn insert_event(pg: &tokio_postgres::Client, lead_id: &str, action: &str) -> Uuid {
    let id = Uuid::new_v4();
    let key = format!("c2s:{lead_id}:{action}:{id}");
    pg.execute(
        "insert into webhook_events (id, source, idempotency_key, payload_hash, event_type, status, subject_id) \
         values ($1, 'c2s', $2, $3, $4, 'received', $5)",
        &[&id, &key, &hash(&[&key]), &action, &lead_id],
    )
    .await
    .unwrap();
    id
}

pub fn job_body(event_id: Uuid, lead_id: &str, action: &str) -> String {
    // The sample's body, re-keyed: the samples are the contract.
    let sample = sample_record("enrichment-worker/create-lead.json", 0);
    let mut job: Value = serde_json::from_str(sample["body"].as_str().unwrap()).unwrap();
    job["event_id"] = json!(event_id);
    job["lead_id"] = json!(lead_id);
    job["hook_action"] = json!(action);
    job.to_string()
}

pub async fn run_job(
    deps: &Deps,
    event_id: Uuid,
    lead_id: &str,
    action: &str,
    receive_count: u32,
) -> Outcome {
    let body = job_body(event_id, lead_id, action);
    let id = format!("msg-{event_id}-{receive_count}");
    process(
        &Message {
            message_id: &id,
            body: &body,
            receive_count,
        },
        deps,
    )
    .await
}

fn sample_record(file: &str, i: usize) -> Value {
    let ev: Value = serde_json::from_str(&event(file)).unwrap();
    ev["Records"][i].clone()
}

pub fn record(file: &str, message_id: &str, body: &str, receive_count: u32) -> Value {
    let mut r = sample_record(file, 0);
    r["messageId"] = json!(message_id);
    r["body"] = json!(body);
    r["attributes"]["ApproximateReceiveCount"] = json!(receive_count.to_string());
    r
}

pub fn sqs_event(records: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

pub fn failures(resp: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// (status, error) of the event.
pub async fn event_row(pg: &tokio_postgres::Client, id: Uuid) -> (String, Option<String>) {
    let r = pg
        .query_one(
            "select status, error from webhook_events where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// (status, identity, reasons, validation, attempts) of the event's run.
pub async fn run_row(
    pg: &tokio_postgres::Client,
    event_id: Uuid,
) -> (String, Option<String>, Value, Value, i32) {
    let r = pg
        .query_one("select status, identity, reasons, validation, attempts from enrichment_runs where event_id = $1", &[&event_id])
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

pub fn work_body(cpf: &str, name: &str) -> Value {
    json!({
        "status": 200,
        "DadosBasicos": {"nome": name, "cpf": cpf, "dataNascimento": "01/02/1980", "sexo": "F", "nomeMae": "ANA DA SILVA"},
        "DadosEconomicos": {"renda": "3.500,00",
            "poderAquisitivo": {"poderAquisitivoDescricao": "MEDIO", "faixaPoderAquisitivo": "3"},
            "score": {"scoreCSBA": "650", "scoreCSBAFaixaRisco": "BAIXO RISCO"}},
        "emails": [{"email": "maria.silva@gmail.com", "prioridade": "1"}],
        "telefones": [{"telefone": "11987654321", "tipo": "MOVEL", "whatsapp": "SIM"}],
        "enderecos": [{"logradouro": "RUA DAS FLORES", "numero": "100", "bairro": "CENTRO", "cidade": "SAO PAULO", "uf": "SP", "cep": "01000000"}],
        "empresas": [{"cnpj": "12345678000190", "relacao": "SOCIO"}]
    })
}

pub const PHONE_PATH: &str = "/diretrix/Consultas/Pessoa/Telefone/11987654321";
pub const EMAIL_PATH: &str = "/diretrix/Consultas/Pessoa/Email/maria.silva@gmail.com";

pub async fn diretrix(m: &Mocks, at: &str, answer: Value, times: u64) {
    Mock::given(method("GET"))
        .and(path(at))
        .and(basic_auth(USER, PASS))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(times)
        .mount(&m.diretrix)
        .await;
}

pub async fn work(m: &Mocks, cpf: &str, name: &str, times: u64) {
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

pub async fn c2s_accepts(m: &Mocks, lead_id: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/integration/leads/{lead_id}/create_message")))
        .and(bearer_token(C2S_TOKEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ok": true})))
        .expect(times)
        .mount(&m.c2s)
        .await;
}

/// The one note C2S received for the lead, checked for its exact shape.
pub async fn posted_note(m: &Mocks, lead_id: &str) -> String {
    posted_note_at(
        m,
        &format!("/integration/leads/{lead_id}/create_message"),
        lead_id,
    )
    .await
}

pub async fn posted_note_at(m: &Mocks, at: &str, lead_id: &str) -> String {
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

pub fn deps_local(db: &TestDb) -> enrichment_worker::Deps {
    deps(db, config(None, &[]))
}

/// The note `lead-12`'s data produce (phone only, Work data of `work_body`).
pub fn expected_phone_only_note() -> String {
    "📞 Dados encontrados somente pelo telefone (e-mail: não informado)\n\n✅ DADOS PESSOAIS\nNome: MARIA DA SILVA\nCPF: 52998224725\nNascimento: 01/02/1980\nSexo: F\nMãe: ANA DA SILVA\n\n💰 DADOS FINANCEIROS\nRenda: 3.500,00\nPoder aquisitivo: MEDIO (faixa 3)\nScore: 650 (BAIXO RISCO)\n\n📧 EMAILS\n• maria.silva@gmail.com\n\n📱 TELEFONES\n• 11987654321 (MOVEL) ✅ WhatsApp\n\n🏠 ENDEREÇOS\n• RUA DAS FLORES, 100 - CENTRO - SAO PAULO/SP - CEP 01000000\n\n🏢 EMPRESAS\n• 12345678000190 (SOCIO)".to_string()
}
