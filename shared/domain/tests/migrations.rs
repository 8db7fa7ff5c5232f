//! The migration runner against a real, empty PostgreSQL database.

use crm_domain::migrations;
use crm_testkit::TestDb;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runners_apply_each_migration_exactly_once() {
    let db = TestDb::empty().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        runs.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            migrations::run(&mut client).await.unwrap()
        }));
    }
    let mut applied: Vec<u32> = Vec::new();
    for r in runs {
        applied.extend(r.await.unwrap());
    }
    applied.sort();
    let all: Vec<u32> = migrations::all().iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each version applied by exactly one runner");

    let client = connect(&db.url).await;
    let recorded: i64 = client
        .query_one("select count(*) from schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, all.len() as i64);
    let stages: Vec<String> = client
        .query(
            "select s.name from pipeline_stages s join pipelines p on p.id = s.pipeline_id where p.is_default order by s.position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        stages,
        [
            "New",
            "Qualified",
            "Meeting Scheduled",
            "Proposal",
            "Won",
            "Lost"
        ]
    );
}

#[tokio::test]
async fn a_second_run_applies_nothing_and_an_edited_migration_is_refused() {
    let db = TestDb::empty().await;
    let mut client = connect(&db.url).await;
    assert!(!migrations::run(&mut client).await.unwrap().is_empty());
    assert!(migrations::run(&mut client).await.unwrap().is_empty());
    client
        .execute(
            "update schema_migrations set checksum = 'edited' where version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = migrations::run(&mut client).await.unwrap_err();
    assert!(
        err.to_string().contains("was edited after it was applied"),
        "{err}"
    );
}

#[tokio::test]
async fn only_one_default_pipeline_can_exist() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let err = client
        .execute(
            "insert into pipelines (name, is_default) values ('Second', true)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        crm_domain::db::classify(&err),
        crm_domain::db::DbFault::UniqueViolation {
            constraint: Some("pipelines_one_default".into())
        }
    );
}

#[tokio::test]
async fn the_default_pipeline_cannot_be_removed_but_can_be_switched() {
    let db = TestDb::new().await;
    let mut client = connect(&db.url).await;
    let err = client
        .execute("update pipelines set is_default = false", &[])
        .await
        .unwrap_err();
    assert_eq!(
        crm_domain::db::classify(&err),
        crm_domain::db::DbFault::CheckViolation {
            constraint: Some("pipelines_exactly_one_default".into())
        }
    );
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "update pipelines set is_default = false; insert into pipelines (name, is_default) values ('Rentals', true);",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let name: String = client
        .query_one("select name from pipelines where is_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Rentals");
}
