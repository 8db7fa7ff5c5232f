//! Scale check (ignored by default; prints figures, asserts only counts):
//! `cargo test -p crm-campaigns --release --test snapshot_scale -- --ignored --nocapture`.
//! Seeds 100,000 contacts, then times the dry run and the snapshot of one
//! campaign over them and prints the snapshot statement's plan.

mod common;

use common::*;
use crm_domain::campaigns::audience;
use crm_testkit::TestDb;
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

#[tokio::test]
#[ignore = "scale check: run explicitly"]
async fn snapshot_of_100k_contacts() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    enable_channel(&c, "sms").await;
    let t = Instant::now();
    c.batch_execute(
        "insert into contacts (first_name, full_name, phone, email, attributes) \
         select 'N' || i, 'N' || i, \
                case when i % 50 = 0 then null else '+90532' || lpad(i::text, 7, '0') end, \
                'c' || i || '@example.com', \
                case when i % 3 = 0 then '{\"tags\": [\"vip\"]}'::jsonb else '{}'::jsonb end \
         from generate_series(1, 100000) i; \
         insert into opt_outs (contact_id, channel, source) \
         select id, 'sms', 'twilio' from contacts where right(phone, 2) = '07'; \
         analyze contacts; analyze opt_outs;",
    )
    .await
    .unwrap();
    println!("seeded 100,000 contacts in {:?}", t.elapsed());
    let id = draft(
        &deps,
        "sms",
        json!({"has_email": true}),
        json!({"content": "Hi {{1}}! {{unsubscribe_url}}", "variables": ["contact.first_name"]}),
    )
    .await;
    let campaign = Uuid::parse_str(&id).unwrap();
    let client = deps.pool.get().await.unwrap();
    let plan = audience::load_plan(&client, campaign).await.unwrap();
    let q = audience::audience_sql(&plan);
    let explain = format!(
        "explain (analyze, buffers off) select reason, count(*) from ({}) a group by reason",
        q.text
    );
    for row in client.query(explain.as_str(), &q.params()).await.unwrap() {
        println!("  {}", row.get::<_, String>(0));
    }
    // The snapshot statement's own plan (FK triggers included), rolled back.
    {
        let mut client = deps.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let q = audience::snapshot_sql(&plan);
        let explain = format!("explain (analyze, buffers off) {}", q.text);
        for row in tx.query(explain.as_str(), &q.params()).await.unwrap() {
            println!("  {}", row.get::<_, String>(0));
        }
        tx.rollback().await.unwrap();
    }
    let t = Instant::now();
    let dry = audience::dry_run(&client, campaign).await.unwrap();
    println!(
        "dry run: {:?} ({} recipients, {} queued, {:?})",
        t.elapsed(),
        dry.recipients,
        dry.queued,
        dry.skipped
    );
    let t = Instant::now();
    let snap = audience::snapshot(&client, campaign).await.unwrap();
    println!(
        "snapshot: {:?} ({} rows inserted)",
        t.elapsed(),
        snap.inserted
    );
    assert_eq!(snap.inserted, 100_000);
    assert_eq!(snap.queued, dry.queued);
    assert_eq!(snap.skipped, dry.skipped);
    let t = Instant::now();
    let again = audience::snapshot(&client, campaign).await.unwrap();
    println!("second snapshot (no-op): {:?}", t.elapsed());
    assert_eq!(again.inserted, 0);
}
