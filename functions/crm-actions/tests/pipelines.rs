//! Pipelines and stages through the API (admins): create, rename, add,
//! rename / re-kind, reorder, remove (409 naming the deal count, or moving
//! the deals with history and outbound events), the webhook stages of the
//! default pipeline, audit entries, members refused.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::{Value, json};

async fn post(deps: &crm_actions::Deps, path: &str, body: Value, token: &str) -> Answer {
    call(deps, Call::post(path, body, token)).await
}

fn stage<'a>(pipeline: &'a Value, name: &str) -> &'a Value {
    pipeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {pipeline}"))
}

fn names(pipeline: &Value) -> Vec<String> {
    pipeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn admins_build_a_pipeline_and_members_are_refused() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let body = json!({"name": "Rentals", "stages": [{"name": "Lead"}, {"name": "Visit"}, {"name": "Signed", "kind": "won"}]});
    let refused = post(&deps, "/crm/actions/pipelines", body.clone(), &member("m1")).await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(count(&pg, "select count(*) from pipelines").await, 1);

    let made = post(&deps, "/crm/actions/pipelines", body, &admin("a1")).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["is_default"], false);
    assert_eq!(names(&made.body), ["Lead", "Visit", "Signed"]);
    assert_eq!(stage(&made.body, "Signed")["kind"], "won");
    assert_eq!(stage(&made.body, "Lead")["deals"], 0);
    let id = made.id();
    let base = format!("/crm/actions/pipelines/{id}");

    let dup = post(
        &deps,
        "/crm/actions/pipelines",
        json!({"name": "Rentals", "stages": [{"name": "A"}]}),
        &admin("a1"),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["field"].as_str()),
        (409, Some("name"))
    );

    let renamed = post(&deps, &base, json!({"name": "Lettings"}), &admin("a1")).await;
    assert_eq!(
        (renamed.status, renamed.body["name"].as_str()),
        (200, Some("Lettings"))
    );

    // Added before "Signed", then renamed, then moved to the end and back.
    let added = post(
        &deps,
        &format!("{base}/stages"),
        json!({"name": "Offer", "position": 2}),
        &admin("a1"),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(names(&added.body), ["Lead", "Visit", "Offer", "Signed"]);
    let offer = stage(&added.body, "Offer")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let taken = post(
        &deps,
        &format!("{base}/stages/{offer}"),
        json!({"name": "Visit"}),
        &admin("a1"),
    )
    .await;
    assert_eq!(
        (taken.status, taken.body["field"].as_str()),
        (409, Some("name"))
    );
    let renamed = post(
        &deps,
        &format!("{base}/stages/{offer}"),
        json!({"name": "Proposal", "kind": "lost"}),
        &admin("a1"),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(stage(&renamed.body, "Proposal")["kind"], "lost");

    let ids: Vec<String> = renamed.body["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let order = json!([ids[1], ids[0], ids[3], ids[2]]);
    let reordered = post(
        &deps,
        &format!("{base}/reorder"),
        json!({"stage_ids": order}),
        &admin("a1"),
    )
    .await;
    assert_eq!(reordered.status, 200, "{}", reordered.body);
    assert_eq!(
        names(&reordered.body),
        ["Visit", "Lead", "Signed", "Proposal"]
    );
    let positions: Vec<i64> = reordered.body["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [0, 1, 2, 3]);
    let closed_first = post(
        &deps,
        &format!("{base}/reorder"),
        json!({"stage_ids": [ids[3], ids[0], ids[1], ids[2]]}),
        &admin("a1"),
    )
    .await;
    assert_eq!(
        (closed_first.status, closed_first.body["field"].as_str()),
        (422, Some("stage_ids"))
    );
    let partial = post(
        &deps,
        &format!("{base}/reorder"),
        json!({"stage_ids": [ids[0], ids[1]]}),
        &admin("a1"),
    )
    .await;
    assert_eq!(
        (partial.status, partial.body["field"].as_str()),
        (422, Some("stage_ids"))
    );

    for path in [
        format!("{base}/stages"),
        format!("{base}/reorder"),
        format!("{base}/stages/{offer}/remove"),
    ] {
        let a = post(&deps, &path, json!({}), &member("m1")).await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
    }

    let actions: Vec<String> = pg
        .query("select action from audit_log order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "crm.pipeline.created",
            "crm.pipeline.renamed",
            "crm.stage.added",
            "crm.stage.updated",
            "crm.stage.reordered"
        ]
    );

    // crm-read shows the same pipeline with deal counts.
    let pooled = deps.pool.get().await.unwrap();
    let shown = crm_domain::crm::pipelines::read(&pooled, id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(shown.stages.len(), 4);
}

#[tokio::test]
async fn a_stage_with_deals_is_removed_only_after_they_move_with_history_and_events() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let admin = admin("a1");
    let proposal = stage_id(&pg, "Proposal").await;
    let new = stage_id(&pg, "New").await;
    let pipeline: String = pg
        .query_one("select id::text from pipelines where is_default", &[])
        .await
        .unwrap()
        .get(0);
    let base = format!("/crm/actions/pipelines/{pipeline}");
    for i in 0..3 {
        let c = contact(&deps, &admin, json!({"email": format!("p{i}@example.com")})).await;
        deal(
            &deps,
            &admin,
            json!({"contact_id": c, "title": format!("D{i}"), "stage_id": proposal}),
        )
        .await;
    }
    let outbox_before = count(&pg, "select count(*) from outbox").await;

    let refused = post(
        &deps,
        &format!("{base}/stages/{proposal}/remove"),
        json!({}),
        &admin,
    )
    .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (409, Some("stage_has_deals"))
    );
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("3 deal(s)"),
        "{}",
        refused.body
    );
    let rekind = post(
        &deps,
        &format!("{base}/stages/{proposal}"),
        json!({"kind": "won"}),
        &admin,
    )
    .await;
    assert_eq!(
        (rekind.status, rekind.body["code"].as_str()),
        (409, Some("stage_has_deals"))
    );
    assert_eq!(
        count(
            &pg,
            "select count(*) from pipeline_stages where name = 'Proposal'"
        )
        .await,
        1
    );

    // The webhook flows' stages stay.
    for name in ["New", "Qualified", "Meeting Scheduled"] {
        let s = stage_id(&pg, name).await;
        let a = post(
            &deps,
            &format!("{base}/stages/{s}/remove"),
            json!({}),
            &admin,
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (409, Some("stage_used_by_webhooks")),
            "{name}"
        );
        let a = post(
            &deps,
            &format!("{base}/stages/{s}"),
            json!({"name": "Renamed"}),
            &admin,
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (409, Some("stage_used_by_webhooks")),
            "{name}"
        );
    }

    let removed = post(
        &deps,
        &format!("{base}/stages/{proposal}/remove"),
        json!({"move_deals_to": new}),
        &admin,
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["moved_deals"], 3);
    assert_eq!(
        names(&removed.body["pipeline"]),
        ["New", "Qualified", "Meeting Scheduled", "Won", "Lost"]
    );
    assert_eq!(stage(&removed.body["pipeline"], "New")["deals"], 3);
    // Each move: stage history, a system activity and a deal.stage_changed job.
    assert_eq!(
        count(
            &pg,
            &format!("select count(*) from deals where stage_id = '{new}'")
        )
        .await,
        3
    );
    assert_eq!(
        count(&pg, "select count(*) from deal_stage_history where from_stage_id is null and actor = 'user:a1' and to_stage_id is not null").await,
        3,
        "the removed stage's history rows keep the move without it"
    );
    assert_eq!(
        count(&pg, "select count(*) from outbox").await - outbox_before,
        3
    );
    let moved: Vec<Value> = pg
        .query("select body from outbox order by id desc limit 3", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for job in &moved {
        assert_eq!(job["event_type"], "deal.stage_changed", "{job}");
        assert_eq!(job["payload"]["from"]["name"], "Proposal");
        assert_eq!(job["payload"]["to"]["name"], "New");
    }
    assert_eq!(
        count(&pg, "select count(*) from activities where metadata->>'event' = 'stage_change' and body like 'Deal moved from Proposal to New%'").await,
        3
    );
    let audit: Value = pg
        .query_one(
            "select details from audit_log where action = 'crm.stage.removed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit["moved_deals"], 3);
}
