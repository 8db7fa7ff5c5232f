//! Stage moves against a real PostgreSQL: history, timeline, outbox event.

use crm_domain::{
    jobs::Job,
    pipeline::{MoveError, MoveOutcome, move_stage, move_stage_enqueued},
};
use crm_testkit::TestDb;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use uuid::Uuid;

fn pool(db: &TestDb) -> Pool {
    let cfg: tokio_postgres::Config = db.url.parse().unwrap();
    let mgr = Manager::from_config(
        cfg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr).max_size(2).build().unwrap()
}

async fn stage(pg: &deadpool_postgres::Client, name: &str) -> Uuid {
    pg.query_one("select s.id from pipeline_stages s join pipelines p on p.id = s.pipeline_id where p.is_default and s.name = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// A contact with an open deal in New.
async fn deal(pg: &deadpool_postgres::Client) -> (Uuid, Uuid) {
    let contact: Uuid = pg
        .query_one(
            "insert into contacts (email) values ('ana@example.com') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let new = stage(pg, "New").await;
    let deal: Uuid = pg
        .query_one(
            "insert into deals (contact_id, pipeline_id, stage_id, title) \
             select $1, pipeline_id, id, 'Ana' from pipeline_stages where id = $2 returning id",
            &[&contact, &new],
        )
        .await
        .unwrap()
        .get(0);
    (contact, deal)
}

#[tokio::test]
async fn a_move_writes_history_a_system_activity_and_one_stage_changed_job() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut pg = pool.get().await.unwrap();
    let (contact, deal_id) = deal(&pg).await;
    let target = stage(&pg, "Proposal").await;

    let tx = pg.transaction().await.unwrap();
    let outcome = move_stage(&tx, deal_id, target, "user:u1", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let MoveOutcome::Moved(ev) = outcome else {
        panic!("expected a move")
    };
    assert_eq!((ev.deal_id, ev.contact_id), (deal_id, contact));
    assert_eq!(
        (ev.from.name.as_str(), ev.to.name.as_str()),
        ("New", "Proposal")
    );
    assert_eq!(ev.actor, "user:u1");

    let hist = pg
        .query_one("select actor, to_stage_id from deal_stage_history", &[])
        .await
        .unwrap();
    assert_eq!(
        (hist.get::<_, String>(0), hist.get::<_, Uuid>(1)),
        ("user:u1".to_string(), target)
    );
    let body: String = pg
        .query_one("select body from activities where type = 'system'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, "Deal moved from New to Proposal by user:u1");
    let rows = pg
        .query("select queue, body::text from outbox", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "send");
    let Job::DeliverWebhook(job) = Job::parse(&rows[0].get::<_, String>(1)).unwrap() else {
        panic!("a stage move enqueues a deliver_webhook job");
    };
    assert_eq!(job.event_type, "deal.stage_changed");
    assert_eq!(job.payload["deal_id"], deal_id.to_string());
    assert_eq!(job.payload["from"]["name"], "New");
    assert_eq!(job.payload["to"]["stage_id"], target.to_string());
    assert_eq!(job.payload["actor"], "user:u1");
    assert!(job.payload["changed_at"].is_string());
}

#[tokio::test]
async fn a_move_names_the_outbox_row_it_wrote() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let pg = pool.get().await.unwrap();
    let (_, deal_id) = deal(&pg).await;
    let target = stage(&pg, "Qualified").await;
    let (outcome, message_id) = move_stage_enqueued(&pg, deal_id, target, "user:u1", None)
        .await
        .unwrap();
    assert!(matches!(outcome, MoveOutcome::Moved(_)));
    let row: Uuid = pg
        .query_one("select message_id from outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(message_id, Some(row));
    // Already there: nothing written, nothing to publish.
    assert_eq!(
        move_stage_enqueued(&pg, deal_id, target, "user:u1", None)
            .await
            .unwrap(),
        (MoveOutcome::Unchanged, None)
    );
}

#[tokio::test]
async fn moving_to_the_current_stage_writes_nothing() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let pg = pool.get().await.unwrap();
    let (_, deal_id) = deal(&pg).await;
    let new = stage(&pg, "New").await;
    assert_eq!(
        move_stage(&pg, deal_id, new, "calcom", None).await.unwrap(),
        MoveOutcome::Unchanged
    );
    let n: i64 = pg
        .query_one("select count(*) from outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn won_closes_the_deal_and_reopening_clears_closed_at() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let pg = pool.get().await.unwrap();
    let (_, deal_id) = deal(&pg).await;
    move_stage(&pg, deal_id, stage(&pg, "Won").await, "user:u1", None)
        .await
        .unwrap();
    let row = pg
        .query_one("select status, closed_at is not null from deals", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("won".to_string(), true)
    );
    move_stage(&pg, deal_id, stage(&pg, "Qualified").await, "user:u1", None)
        .await
        .unwrap();
    let row = pg
        .query_one("select status, closed_at is null from deals", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("open".to_string(), true)
    );
}

#[tokio::test]
async fn unknown_deals_and_foreign_stages_are_refused() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let pg = pool.get().await.unwrap();
    let (_, deal_id) = deal(&pg).await;
    let other: Uuid = pg
        .query_one(
            "with p as (insert into pipelines (name) values ('Rentals') returning id) \
             insert into pipeline_stages (pipeline_id, name, position) select id, 'New', 0 from p returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(matches!(
        move_stage(&pg, deal_id, other, "u", None).await,
        Err(MoveError::StageNotInPipeline)
    ));
    let new = stage(&pg, "New").await;
    assert!(matches!(
        move_stage(&pg, Uuid::now_v7(), new, "u", None).await,
        Err(MoveError::DealNotFound)
    ));
}

#[tokio::test]
async fn reopening_a_closed_deal_while_another_is_open_is_a_conflict() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let pg = pool.get().await.unwrap();
    let (contact, first) = deal(&pg).await;
    move_stage(&pg, first, stage(&pg, "Lost").await, "u", None)
        .await
        .unwrap();
    let new = stage(&pg, "New").await;
    pg.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, title) select $1, pipeline_id, id, 'Again' from pipeline_stages where id = $2",
        &[&contact, &new],
    )
    .await
    .unwrap();
    assert!(matches!(
        move_stage(&pg, first, new, "u", None).await,
        Err(MoveError::AnotherOpenDeal)
    ));
}

#[tokio::test]
async fn logged_database_errors_carry_no_row_values() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let pg = pool.get().await.unwrap();
    deal(&pg).await;
    let err = pg
        .execute(
            "insert into contacts (email) values ('ana@example.com')",
            &[],
        )
        .await
        .map_err(|e| anyhow::Error::new(e).context("inserting a contact"))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("ana@example.com"),
        "PostgreSQL's own text echoes the value"
    );
    let line = crm_domain::db::loggable(&err);
    assert_eq!(
        line,
        "inserting a contact: postgres error 23505 on contacts.contacts_email_unique"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_moves_of_one_deal_both_apply_in_turn() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    pool.resize(4);
    let pg = pool.get().await.unwrap();
    let (_, deal_id) = deal(&pg).await;
    let (qualified, proposal) = (stage(&pg, "Qualified").await, stage(&pg, "Proposal").await);
    // The first move holds the deal's lock until it commits; the second waits for it.
    let mut first = pool.get().await.unwrap();
    let tx = first.transaction().await.unwrap();
    move_stage(&tx, deal_id, qualified, "user:a", None)
        .await
        .unwrap();
    let second = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            let tx = c.transaction().await.unwrap();
            let out = move_stage(&tx, deal_id, proposal, "user:b", None).await;
            tx.commit().await.unwrap();
            out
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let MoveOutcome::Moved(ev) = second
        .await
        .unwrap()
        .expect("the waiting move still finds the deal")
    else {
        panic!("expected a move")
    };
    assert_eq!(
        (ev.from.name.as_str(), ev.to.name.as_str()),
        ("Qualified", "Proposal")
    );
}
