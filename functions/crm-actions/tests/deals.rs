//! Deals and stage moves through crm-actions: defaults, pipeline rules,
//! history, timeline and the exact `deal.stage_changed` outbox job.

mod common;

use common::*;
use crm_domain::outbox::{self, Publisher, QueueName};
use crm_platform::queue::InProcessQueue;
use crm_testkit::{TestDb, event};
use serde_json::{Value, json};
use std::sync::Arc;

/// A second pipeline with two stages; returns (pipeline id, its first stage id).
async fn other_pipeline(pg: &tokio_postgres::Client) -> (String, String) {
    let p: String = pg
        .query_one(
            "insert into pipelines (name) values ('Rentals') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let s: String = pg
        .query(
            "insert into pipeline_stages (pipeline_id, name, position) values ($1::text::uuid, 'Lead', 0), \
             ($1::text::uuid, 'Signed', 1) returning id::text",
            &[&p],
        )
        .await
        .unwrap()[0]
        .get(0);
    (p, s)
}

#[tokio::test]
async fn a_new_deal_starts_in_the_first_stage_of_the_default_pipeline() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let t = member("user-1");
    let c = contact(&deps, &t, json!({"full_name": "Ayşe"})).await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"contact_id": c, "title": "Flat", "value_cents": 1_250_000_000i64, "currency": "try"}),
            &t,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["stage_id"], stage_id(&pg, "New").await.as_str());
    assert_eq!(a.body["owner_id"], "user-1");
    assert_eq!(a.body["status"], "open");
    assert_eq!(a.body["currency"], "TRY");
    assert_eq!(a.body["value_cents"], 1_250_000_000i64);
    assert_eq!(a.body["contact"]["full_name"], "Ayşe");
    let h = pg
        .query_one(
            "select from_stage_id is null, actor from deal_stage_history",
            &[],
        )
        .await
        .unwrap();
    assert!(h.get::<_, bool>(0));
    assert_eq!(h.get::<_, String>(1), "user:user-1");
    let meta: Value = pg
        .query_one(
            "select metadata from activities where deal_id::text = $1",
            &[&a.id()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(meta["event"], "deal_created");
    assert_eq!(meta["stage"]["name"], "New");
    // A second open deal for the same contact in the same pipeline.
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"contact_id": c, "title": "Again"}),
            &t,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (409, Some("contact_id"))
    );
}

#[tokio::test]
async fn a_stage_from_another_pipeline_is_422() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let t = member("user-1");
    let (rentals, lead) = other_pipeline(&pg).await;
    let c = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"contact_id": c, "title": "T", "stage_id": lead}),
            &t,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("stage_id"))
    );
    // In its own pipeline the stage is fine.
    let rental = deal(
        &deps,
        &t,
        json!({"contact_id": c, "title": "Rent", "pipeline_id": rentals, "stage_id": lead}),
    )
    .await;
    let sales = deal(&deps, &t, json!({"contact_id": c, "title": "Buy"})).await;
    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/deals/{sales}/stage"),
            json!({"stage_id": lead}),
            &t,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("stage_id"))
    );
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"id": rental, "pipeline_id": "00000000-0000-0000-0000-000000000001"}),
            &t,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("pipeline_id"))
    );
    assert_eq!(count(&pg, "select count(*) from outbox").await, 0);
}

#[tokio::test]
async fn moving_a_deal_writes_history_activity_and_the_exact_outbox_job() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let t = member("user-1");
    let c = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let d = deal(&deps, &t, json!({"contact_id": c, "title": "Flat"})).await;
    let (new, qualified) = (stage_id(&pg, "New").await, stage_id(&pg, "Qualified").await);
    let pipeline: String = pg
        .query_one("select id::text from pipelines where is_default", &[])
        .await
        .unwrap()
        .get(0);

    // The sample event, with this deal and stage (its path parameters are empty).
    let mut ev: Value = serde_json::from_str(&event("crm-actions/move-stage.json")).unwrap();
    let path = format!("/crm/actions/deals/{d}/stage");
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["body"] = json!(json!({"stage_id": qualified}).to_string());
    let a = send(&deps, request(&ev.to_string())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], d.as_str());
    assert_eq!(a.body["stage_id"], qualified.as_str());

    let h = pg
        .query_one(
            "select from_stage_id::text, to_stage_id::text, actor, changed_at from deal_stage_history \
             where from_stage_id is not null",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(h.get::<_, String>(0), new);
    assert_eq!(h.get::<_, String>(1), qualified);
    assert_eq!(h.get::<_, String>(2), "user:user-1");
    let changed_at: chrono::DateTime<chrono::Utc> = h.get(3);
    let act = pg
        .query_one(
            "select body, actor from activities where metadata->>'event' = 'stage_change'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        act.get::<_, String>(0),
        "Deal moved from New to Qualified by user:user-1"
    );
    assert_eq!(act.get::<_, String>(1), "user:user-1");

    let job: Value = pg
        .query_one("select body from outbox where queue = 'send'", &[])
        .await
        .unwrap()
        .get(0);
    let expected_payload = json!({
        "deal_id": d, "contact_id": c, "pipeline_id": pipeline,
        "from": {"stage_id": new, "name": "New"},
        "to": {"stage_id": qualified, "name": "Qualified"},
        "actor": "user:user-1",
        "changed_at": changed_at,
    });
    assert_eq!(job["kind"], "deliver_webhook");
    assert_eq!(job["v"], 1);
    assert_eq!(job["event_type"], "deal.stage_changed");
    assert!(uuid::Uuid::parse_str(job["event_id"].as_str().unwrap()).is_ok());
    assert_eq!(job["occurred_at"], json!(changed_at));
    assert_eq!(job["payload"], expected_payload);
    assert_eq!(a.body["stage_change"], expected_payload);

    // Already there: 200, nothing written.
    let a = send(&deps, request(&ev.to_string())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["stage_change"], Value::Null);
    assert_eq!(count(&pg, "select count(*) from outbox").await, 1);
    assert_eq!(
        count(&pg, "select count(*) from deal_stage_history").await,
        2
    );
}

#[tokio::test]
async fn stage_moves_need_an_owned_existing_deal() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let (u1, u2, boss) = (member("user-1"), member("user-2"), admin("boss"));
    let c = contact(&deps, &u2, json!({"full_name": "Theirs"})).await;
    let d = deal(&deps, &u2, json!({"contact_id": c, "title": "Theirs"})).await;
    let won = stage_id(&pg, "Won").await;
    let body = json!({"stage_id": won});
    for (path, t) in [
        (format!("/crm/actions/deals/{d}/stage"), &u1),
        (
            "/crm/actions/deals/00000000-0000-0000-0000-0000000000aa/stage".to_string(),
            &boss,
        ),
        ("/crm/actions/deals/not-a-uuid/stage".to_string(), &boss),
    ] {
        let a = call(&deps, Call::post(&path, body.clone(), t)).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let a = call(
        &deps,
        Call::post(&format!("/crm/actions/deals/{d}/stage"), body, &boss),
    )
    .await;
    assert_eq!((a.status, a.body["status"].as_str()), (200, Some("won")));
    assert_eq!(a.body["stage_change"]["actor"], "user:boss");
    assert!(a.body["closed_at"].is_string());
}

#[tokio::test]
async fn deal_update_changes_fields_moves_stage_and_keeps_contact() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let t = member("user-1");
    let c = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let c2 = contact(&deps, &t, json!({"full_name": "Bea"})).await;
    let d = deal(&deps, &t, json!({"contact_id": c, "title": "Flat"})).await;
    let proposal = stage_id(&pg, "Proposal").await;
    let a = call(
        &deps,
        Call::post(
            "/crm/actions/deals",
            json!({"id": d, "title": "Flat 3+1", "value_cents": 500, "currency": "EUR", "stage_id": proposal}),
            &t,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["title"], "Flat 3+1");
    assert_eq!(a.body["stage_id"], proposal.as_str());
    let fields: Value = pg
        .query_one(
            "select metadata->'fields' from activities where metadata->>'event' = 'deal_updated'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fields, json!(["title", "value_cents", "currency"]));
    assert_eq!(count(&pg, "select count(*) from outbox").await, 1);
    let a = call(
        &deps,
        Call::post("/crm/actions/deals", json!({"id": d, "contact_id": c2}), &t),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("contact_id"))
    );
    let a = call(
        &deps,
        Call::post("/crm/actions/deals", json!({"id": d, "currency": null}), &t),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("currency"))
    );
}

#[tokio::test]
async fn the_fast_path_publishes_the_stage_change_right_after_commit() {
    let db = TestDb::new().await;
    let mut deps = deps(&db);
    let (queue, mut receivers) = InProcessQueue::new();
    let publisher: Arc<dyn Publisher> = Arc::new(queue);
    deps.publisher = Some(publisher);
    let pg = db.client().await;
    let t = member("user-1");
    let c = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let d = deal(&deps, &t, json!({"contact_id": c, "title": "Flat"})).await;
    let a = call(
        &deps,
        Call::post(
            &format!("/crm/actions/deals/{d}/stage"),
            json!({"stage_id": stage_id(&pg, "Qualified").await}),
            &t,
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    let msg = receivers
        .get_mut(&QueueName::Send)
        .unwrap()
        .try_recv()
        .expect("published before the response");
    let body: Value = serde_json::from_str(&msg.body).unwrap();
    assert_eq!(body["payload"]["deal_id"], d.as_str());
    let (id, published): (uuid::Uuid, bool) = {
        let r = pg
            .query_one(
                "select message_id, published_at is not null from outbox",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(id, msg.message_id);
    assert!(published);
}

#[tokio::test]
async fn the_fast_path_publishes_only_the_rows_of_its_own_request() {
    let db = TestDb::new().await;
    let mut deps = deps(&db);
    let (queue, mut receivers) = InProcessQueue::new();
    let publisher: Arc<dyn Publisher> = Arc::new(queue);
    deps.publisher = Some(publisher);
    let pg = db.client().await;
    let t = member("user-1");
    let c = contact(&deps, &t, json!({"full_name": "Ana"})).await;
    let d = deal(&deps, &t, json!({"contact_id": c, "title": "Flat"})).await;
    // Older rows nobody published yet (another request's, a crash's): on
    // the send queue and on another one.
    let mut unrelated = Vec::new();
    let pooled = deps.pool.get().await.unwrap();
    for queue in [QueueName::Send, QueueName::Enrichment] {
        unrelated.push(
            outbox::enqueue(&pooled, queue, &json!({"kind": "someone_else", "v": 1}))
                .await
                .unwrap(),
        );
    }
    for (path, body) in [
        (
            format!("/crm/actions/deals/{d}/stage"),
            json!({"stage_id": stage_id(&pg, "Qualified").await}),
        ),
        // A stage change through a deal update too.
        (
            "/crm/actions/deals".to_string(),
            json!({"id": d, "stage_id": stage_id(&pg, "Proposal").await}),
        ),
    ] {
        let a = call(&deps, Call::post(&path, body, &t)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let send = receivers.get_mut(&QueueName::Send).unwrap();
        let msg = send
            .try_recv()
            .expect("its own row, published before the response");
        let job: Value = serde_json::from_str(&msg.body).unwrap();
        assert_eq!(job["kind"], "deliver_webhook");
        assert_eq!(job["payload"]["deal_id"], d.as_str());
        assert!(send.try_recv().is_err(), "nothing else on the send queue");
    }
    assert!(
        receivers
            .get_mut(&QueueName::Enrichment)
            .unwrap()
            .try_recv()
            .is_err(),
        "nothing on another queue"
    );
    for id in &unrelated {
        let published: bool = pg
            .query_one(
                "select published_at is not null from outbox where message_id = $1",
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!published, "left for the scheduled relay");
    }
    assert_eq!(
        count(
            &pg,
            "select count(*) from outbox where published_at is not null"
        )
        .await,
        2
    );
}

/// A sample event with fields of its JSON body replaced (placeholders → real ids).
fn sample_with(name: &str, fields: &[(&str, &str)]) -> lambda_http::Request {
    let mut ev: Value = serde_json::from_str(&event(&format!("crm-actions/{name}"))).unwrap();
    let mut body: Value = serde_json::from_str(ev["body"].as_str().unwrap()).unwrap();
    for (k, v) in fields {
        body[*k] = json!(v);
    }
    ev["body"] = json!(body.to_string());
    request(&ev.to_string())
}

#[tokio::test]
async fn the_update_and_deal_samples_work_once_their_placeholders_are_real_ids() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let created = send(&deps, request(&event("crm-actions/create-contact.json"))).await;
    assert_eq!(created.status, 201);
    let id = created.id();
    let a = send(&deps, sample_with("update-contact.json", &[("id", &id)])).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["company"], "Yılmaz Gayrimenkul");
    assert_eq!(a.body["phone"], Value::Null);
    let a = send(
        &deps,
        sample_with("create-deal.json", &[("contact_id", &id)]),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        (a.body["value_cents"].as_i64(), a.body["currency"].as_str()),
        (Some(1_250_000_000), Some("TRY"))
    );
}
