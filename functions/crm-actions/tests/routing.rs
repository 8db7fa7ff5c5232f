//! PUT /api/v1/lead-routing/{source}: admins set a source's rule, audited;
//! and the rule applied to Cal.com and Twilio leads through the one SQL function.

mod common;

use common::*;
use crm_domain::{
    calcom::{payload::Attendee, store as calcom_store},
    phone::{PhoneE164, PhoneRegion},
    twilio::store as twilio_store,
    types::EmailAddress,
};
use crm_testkit::{TestDb, insert_user};
use serde_json::{Value, json};

fn put(source: &str, body: Value, token: &str) -> Call {
    Call::post(&format!("/api/v1/lead-routing/{source}"), body, token).method("PUT")
}

#[tokio::test]
async fn admins_set_a_rule_with_active_users_only_and_every_change_is_audited() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let pg = db.client().await;
    let boss = admin("boss");
    let ana = insert_user(&pg, "Ana", "member").await.to_string();
    let bo = insert_user(&pg, "Bo", "member").await.to_string();
    let off = insert_user(&pg, "Off", "member").await.to_string();
    pg.execute(
        "update users set active = false where id = $1::text::uuid",
        &[&off],
    )
    .await
    .unwrap();

    let a = call(
        &deps,
        put("twilio", json!({"mode": "unowned"}), &member(&ana)),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    let a = call(&deps, put("c2s", json!({"mode": "unowned"}), &boss)).await;
    assert_eq!(a.status, 404);
    let a = call(
        &deps,
        put(
            "twilio",
            json!({"mode": "round_robin", "user_ids": [ana, off]}),
            &boss,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("user_ids")),
        "{}",
        a.body
    );
    let a = call(
        &deps,
        put("twilio", json!({"mode": "fixed", "user_id": off}), &boss),
    )
    .await;
    assert_eq!((a.status, a.body["field"].as_str()), (422, Some("user_id")));
    assert_eq!(count(&pg, "select count(*) from audit_log").await, 0);

    let a = call(
        &deps,
        put(
            "twilio",
            json!({"mode": "round_robin", "user_ids": [ana, bo]}),
            &boss,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["source"], "twilio");
    assert_eq!(a.body["mode"], "round_robin");
    assert_eq!(a.body["user_ids"], json!([ana, bo]));
    assert_eq!(a.body["next_user_id"], ana.as_str());
    assert_eq!(a.body["updated_by"], "user:boss");
    let row = pg
        .query_one(
            "select action, actor, target_type, target_id, details from audit_log",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "crm.lead_routing.updated");
    assert_eq!(row.get::<_, String>(1), "user:boss");
    assert_eq!(row.get::<_, String>(2), "lead_routing");
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("twilio"));
    assert_eq!(
        row.get::<_, Value>(4),
        json!({"from": {"mode": "unowned", "user_ids": []},
               "to": {"mode": "round_robin", "user_ids": [ana, bo]}})
    );

    // Twilio leads alternate; a phone already known is found, not routed.
    let pool = deps.pool.get().await.unwrap();
    let tr = PhoneRegion::default();
    let mut got = Vec::new();
    for n in 0..3 {
        let phone = PhoneE164::parse(&format!("+90532111000{n}"), tr).unwrap();
        let id = twilio_store::create_lead(&pool, &phone, "Yeni Lead")
            .await
            .unwrap();
        let owner: Option<String> = pg
            .query_one("select owner_id from contacts where id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        got.push(owner.unwrap());
    }
    assert_eq!(got, vec![ana.clone(), bo.clone(), ana.clone()]);

    // Cal.com: a fixed user; an attendee already known keeps no owner.
    let a = call(
        &deps,
        put("calcom", json!({"mode": "fixed", "user_id": bo}), &boss),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    pg.execute(
        "insert into contacts (email, source) values ('known@example.com', 'api')",
        &[],
    )
    .await
    .unwrap();
    let attendee = |email: &str| Attendee {
        email: EmailAddress::parse(email).unwrap(),
        name: Some("Guest".into()),
        time_zone: None,
    };
    let ids = calcom_store::upsert_contacts(
        &pool,
        &[attendee("known@example.com"), attendee("new@example.com")],
    )
    .await
    .unwrap();
    let owners: Vec<Option<String>> = pg
        .query(
            "select owner_id from contacts where id = any($1) order by email",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![None, Some(bo.clone())]);
    assert_eq!(
        count(
            &pg,
            "select count(*) from audit_log where action = 'crm.lead_routing.updated'"
        )
        .await,
        2
    );
}
