//! Lead routing through the Instantly flow (issue 10 §3): contacts a reply
//! creates get the owner the `instantly` rule names — fairly, when many
//! replies arrive at once — and contacts it only finds keep theirs.

use crm_domain::{
    Secret,
    signature::{Verifier, hmac_sha256_hex},
};
use crm_platform::{config::DatabaseConfig, db::build_pool};
use crm_testkit::{TestDb, event, insert_user};
use instantly_reply::{Deps, handle};
use lambda_http::Request;
use serde_json::{Value, json};
use std::collections::HashMap;

const SECRET: &str = "test-instantly-secret";

fn deps(db: &TestDb) -> Deps {
    Deps {
        pool: build_pool(&DatabaseConfig::from_url(&db.url, 24).unwrap()).unwrap(),
        verifier: Verifier::Secret(Secret::new(SECRET).unwrap()),
    }
}

/// The native sample reply from `email` with event id `email_id`, re-signed.
fn reply(email: &str, email_id: &str) -> Request {
    let mut ev: Value = serde_json::from_str(&event("instantly-reply/native.json")).unwrap();
    let mut body: Value = serde_json::from_str(ev["body"].as_str().unwrap()).unwrap();
    body["lead_email"] = json!(email);
    body["email_id"] = json!(email_id);
    let body = body.to_string();
    ev["headers"]["x-signature"] = json!(format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    ));
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    ev["body"] = json!(body);
    lambda_http::request::from_str(&ev.to_string()).unwrap()
}

/// A reply from lead `n` (its own e-mail and event id).
fn reply_from(n: usize) -> Request {
    reply(
        &format!("lead{n}@example.com"),
        &format!("00000000-0000-4000-8000-{n:012}"),
    )
}

async fn owners(pg: &tokio_postgres::Client) -> HashMap<Option<String>, i64> {
    pg.query(
        "select owner_id, count(*) from contacts group by owner_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn twenty_concurrent_replies_split_ten_ten_over_two_users() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let ana = insert_user(&pg, "Ana", "member").await;
    let bo = insert_user(&pg, "Bo", "member").await;
    let off = insert_user(&pg, "Off", "member").await;
    pg.execute("update users set active = false where id = $1", &[&off])
        .await
        .unwrap();
    pg.execute(
        "update lead_routing set mode = 'round_robin', user_ids = $1 where source = 'instantly'",
        &[&vec![ana, off, bo]],
    )
    .await
    .unwrap();

    let replies = (0..20).map(|n| {
        let deps = &deps;
        async move { handle(reply_from(n), deps).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(replies).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let got = owners(&pg).await;
    assert_eq!(got.get(&Some(ana.to_string())), Some(&10), "{got:?}");
    assert_eq!(got.get(&Some(bo.to_string())), Some(&10), "{got:?}");
    assert_eq!(got.len(), 2, "nobody else, and no unowned lead: {got:?}");
    // Every deal the flow created follows its contact's owner.
    let stray: i64 = pg
        .query_one(
            "select count(*) from deals d join contacts c on c.id = d.contact_id \
             where d.owner_id is distinct from c.owner_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0);
    let logged: i64 = pg
        .query_one(
            "select count(*) from activities where actor = 'lead_routing' \
             and metadata ->> 'event' = 'contact_assigned'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 20);
}

#[tokio::test]
async fn a_fixed_rule_routes_new_leads_only_and_the_default_leaves_them_unowned() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    // Default: unowned.
    assert_eq!(handle(reply_from(1), &deps).await.status(), 200);
    assert_eq!(owners(&pg).await, HashMap::from([(None, 1)]));

    let ana = insert_user(&pg, "Ana", "member").await;
    pg.execute(
        "update lead_routing set mode = 'fixed', user_ids = $1 where source = 'instantly'",
        &[&vec![ana]],
    )
    .await
    .unwrap();
    // A second reply from the same lead finds the contact: it stays unowned.
    let second = reply("lead1@example.com", "00000000-0000-4000-8000-999999999999");
    assert_eq!(handle(second, &deps).await.status(), 200);
    assert_eq!(owners(&pg).await, HashMap::from([(None, 1)]));
    // A new lead goes to Ana.
    assert_eq!(handle(reply_from(2), &deps).await.status(), 200);
    assert_eq!(
        owners(&pg).await,
        HashMap::from([(None, 1), (Some(ana.to_string()), 1)])
    );
}
