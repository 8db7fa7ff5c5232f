//! End to end without Lambda, as `make run` wires it: the enrichment job
//! written to the outbox (as the C2S webhook does), the relay publishing it
//! to the in-process enrichment queue, the local consumer running the same
//! `process` — until the event is completed and the note posted.

mod common;

use common::*;
use crm_domain::{
    jobs::{EnrichLead, EnrichmentJob, enqueue_enrichment},
    outbox::QueueName,
};
use crm_platform::{config::DatabaseConfig, db::build_pool, queue::InProcessQueue};
use crm_testkit::TestDb;
use serde_json::json;
use std::time::Duration;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

#[tokio::test]
async fn a_job_in_the_outbox_is_relayed_consumed_and_the_lead_enriched() {
    let (db, m) = (TestDb::new().await, Mocks::start().await);
    let pg = db.client().await;
    upsert_lead(
        &pg,
        &LeadFixture::new("lead-e2e", None, Some("11987654321")),
    )
    .await;
    let event = insert_event(&pg, "lead-e2e", "on_create_lead").await;
    Mock::given(method("GET"))
        .and(path("/diretrix/Consultas/Pessoa/Telefone/11987654321"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([{"nome": "MARIA", "cpf": CPF_A}])),
        )
        .expect(1)
        .mount(&m.diretrix)
        .await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(ResponseTemplate::new(200).set_body_json(work_body(CPF_A, "MARIA DA SILVA")))
        .expect(1)
        .mount(&m.work)
        .await;
    Mock::given(method("POST"))
        .and(path("/integration/leads/lead-e2e/create_message"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&m.c2s)
        .await;
    let job = EnrichmentJob::EnrichLead(EnrichLead {
        v: 1,
        event_id: event,
        lead_id: "lead-e2e".into(),
        hook_action: "on_create_lead".into(),
    });
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 2).unwrap()).unwrap();
    enqueue_enrichment(&pool.get().await.unwrap(), &job)
        .await
        .unwrap();

    let (queue, mut receivers) = InProcessQueue::new();
    let worker = enrichment_worker::local::spawn(
        receivers.remove(&QueueName::Enrichment).unwrap(),
        deps(&db, config(Some(&m), &[])),
    );
    let report = outbox_relay::run(&pool, &queue, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.relay.published, 1);

    let mut status = String::new();
    for _ in 0..200 {
        status = event_row(&pg, event).await.0;
        if status != "received" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed");
    let posted: i64 = pg
        .query_one(
            "select count(*) from enrichment_notes where status = 'posted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(posted, 1);
    worker.abort();
}
