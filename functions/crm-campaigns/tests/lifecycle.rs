//! Campaign state changes against the ledger: resume restarts the error
//! window, cancel takes rows released but never attempted, and the counts
//! the API answers are the ledger's, live.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::json;

/// A sent (`queued`) campaign over three contacts, with ledger rows as the
/// runner would leave them mid-run: one `queued`, one `sending` never
/// attempted, one `sending` attempted (outcome unknown).
async fn mid_run(db: &TestDb, deps: &crm_campaigns::Deps) -> String {
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    for (name, phone) in [
        ("Ana", "+905321234567"),
        ("Bo", "+905321234568"),
        ("Cy", "+905321234569"),
    ] {
        contact(&c, Some(name), None, Some(phone), json!({})).await;
    }
    let id = draft(deps, "sms", json!({}), json!({"content": "Hi"})).await;
    let a = call(
        deps,
        Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/send"), &operator()),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    c.execute(
        "with rows as (select id, row_number() over (order by id) n from contacts) \
         insert into campaign_deliveries (campaign_id, contact_id, status, released_at, attempted_at, attempts) \
         select $1::text::uuid, id, case when n = 1 then 'queued' else 'sending' end, \
                case when n > 1 then now() end, case when n = 3 then now() end, \
                case when n = 3 then 1 else 0 end from rows",
        &[&id],
    )
    .await
    .unwrap();
    c.execute(
        "update campaigns set status = 'sending', snapshot_at = now(), recipients = 3 where id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn cancel_takes_queued_rows_and_released_rows_never_attempted() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let id = mid_run(&db, &deps).await;
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/cancel"), &operator()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let c = db.client().await;
    assert_eq!(
        count(
            &c,
            "select count(*) from campaign_deliveries where status = 'cancelled'"
        )
        .await,
        2
    );
    // The attempted row may have reached the provider: it waits for its result.
    assert_eq!(
        count(&c, "select count(*) from campaign_deliveries where status = 'sending' and attempted_at is not null").await,
        1
    );
    assert_eq!(a.body["counts"]["cancelled"], 2, "{}", a.body);
    let audit: serde_json::Value = c
        .query_one(
            "select details from audit_log where action = 'crm.campaign.cancelled'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit["deliveries_cancelled"], 2);
}

#[tokio::test]
async fn resume_records_when_it_restarted_the_campaign() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let id = mid_run(&db, &deps).await;
    let c = db.client().await;
    c.execute(
        "update campaigns set status = 'paused', pause_reason = 'error threshold' where id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();
    let before: chrono::DateTime<chrono::Utc> =
        c.query_one("select now()", &[]).await.unwrap().get(0);
    let a = call(
        &deps,
        Call::post_empty(&format!("/api/v1/crm/campaigns/{id}/resume"), &operator()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "sending");
    let resumed: Option<chrono::DateTime<chrono::Utc>> = c
        .query_one(
            "select resumed_at from campaigns where id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(resumed.is_some_and(|t| t >= before), "{resumed:?}");
}

#[tokio::test]
async fn counts_are_the_ledger_live_even_after_finished() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let id = mid_run(&db, &deps).await;
    let c = db.client().await;
    // Finished with two rows `sent` (terminal for finishing) ...
    c.execute(
        "update campaign_deliveries set status = 'sent', sent_at = now() where status <> 'sent'",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "update campaigns set status = 'finished', finished_at = now() where id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();
    // ... then a late status callback moves one.
    c.execute(
        "update campaign_deliveries set status = 'failed', failed_at = now() \
         where id = (select min(id::text)::uuid from campaign_deliveries)",
        &[],
    )
    .await
    .unwrap();
    let one = call(
        &deps,
        Call::get(&format!("/api/v1/crm/campaigns/{id}"), &operator()),
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["counts"]["sent"], 2, "{}", one.body);
    assert_eq!(one.body["counts"]["failed"], 1, "{}", one.body);
    let list = call(&deps, Call::get("/api/v1/crm/campaigns", &operator())).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.body["items"][0]["counts"]["failed"], 1,
        "{}",
        list.body
    );
}

#[tokio::test]
async fn deleting_a_campaign_deletes_its_ledger() {
    // The ledger has no per-row foreign key to campaigns (snapshot cost);
    // a statement trigger keeps the cascade.
    let db = TestDb::new().await;
    let deps = deps(&db);
    let id = mid_run(&db, &deps).await;
    let c = db.client().await;
    assert_eq!(
        count(&c, "select count(*) from campaign_deliveries").await,
        3
    );
    c.execute("delete from campaigns where id = $1::text::uuid", &[&id])
        .await
        .unwrap();
    assert_eq!(
        count(&c, "select count(*) from campaign_deliveries").await,
        0
    );
}
