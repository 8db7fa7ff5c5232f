//! Drafts, templates and segments: validation against real ids, enabled
//! channels, drafts-only PATCH, filter keys, in-use protection, preview.

mod common;

use common::*;
use crm_testkit::TestDb;
use serde_json::json;

#[tokio::test]
async fn campaign_drafts_need_real_ids_an_enabled_channel_and_a_matching_template() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let who = operator();
    let seg = call(
        &deps,
        Call::from_event("create-segment.json").token(Some(&who)),
    )
    .await;
    assert_eq!(seg.status, 201, "{}", seg.body);
    let tpl = call(
        &deps,
        Call::from_event("create-template.json").token(Some(&who)),
    )
    .await;
    assert_eq!(tpl.status, 201, "{}", tpl.body);
    assert_eq!(tpl.body["source"], "api");
    let body = |channel: &str, seg: &str, tpl: &str| json!({"name": "Spring", "channel": channel, "segment_id": seg, "template_id": tpl});
    let missing = "0192f0c8-7a00-7000-8000-000000000099";
    // SMS is seeded disabled.
    let a = call(
        &deps,
        Call::post(
            "/api/v1/crm/campaigns",
            body("sms", &seg.id(), &tpl.id()),
            &who,
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("channel")),
        "{}",
        a.body
    );
    enable_channel(&c, "sms").await;
    enable_channel(&c, "email").await;
    for (b, field) in [
        (body("sms", missing, &tpl.id()), "segment_id"),
        (body("sms", &seg.id(), missing), "template_id"),
        (body("email", &seg.id(), &tpl.id()), "template_id"),
        (body("fax", &seg.id(), &tpl.id()), "channel"),
        (
            json!({"channel": "sms", "segment_id": seg.id(), "template_id": tpl.id()}),
            "name",
        ),
    ] {
        let a = call(&deps, Call::post("/api/v1/crm/campaigns", b, &who)).await;
        assert_eq!(
            (a.status, a.body["field"].as_str()),
            (422, Some(field)),
            "{}",
            a.body
        );
    }
    assert_eq!(count(&c, "select count(*) from campaigns").await, 0);
    let a = call(
        &deps,
        Call::post(
            "/api/v1/crm/campaigns",
            body("sms", &seg.id(), &tpl.id()),
            &who,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "draft");
    assert_eq!(a.body["created_by"], "user:ops-1");
    let path = format!("/api/v1/crm/campaigns/{}", a.id());
    let p = call(
        &deps,
        Call::patch(&path, json!({"name": "Spring v2"}), &who),
    )
    .await;
    assert_eq!(
        (p.status, p.body["name"].clone()),
        (200, json!("Spring v2"))
    );
    let p = call(
        &deps,
        Call::patch(&path, json!({"status": "finished"}), &who),
    )
    .await;
    assert_eq!((p.status, p.body["field"].as_str()), (422, Some("status")));
    // In use: the template and segment cannot be deleted.
    let d = call(
        &deps,
        Call::delete(&format!("/api/v1/crm/templates/{}", tpl.id()), &who),
    )
    .await;
    assert_eq!((d.status, d.code()), (409, "template_in_use"));
    let d = call(
        &deps,
        Call::delete(&format!("/api/v1/crm/segments/{}", seg.id()), &who),
    )
    .await;
    assert_eq!((d.status, d.code()), (409, "segment_in_use"));
}

#[tokio::test]
async fn templates_validate_channel_fields_and_variables() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let who = operator();
    for (b, field) in [
        (
            json!({"name": "t", "channel": "email", "content": "Hi"}),
            "subject",
        ),
        (
            json!({"name": "t", "channel": "sms", "content": "Hi", "subject": "S"}),
            "subject",
        ),
        (
            json!({"name": "t", "channel": "sms", "content": "Hi {{contact.ssn}}"}),
            "content",
        ),
        (
            json!({"name": "t", "channel": "sms", "content": "Hi {{1}}"}),
            "content",
        ),
        (
            json!({"name": "t", "channel": "sms", "content": "Hi", "variables": ["x"]}),
            "variables",
        ),
        (
            json!({"name": "t", "channel": "sms", "content": "Hi", "content_sid": "HX0123456789abcdef0123456789abcdef"}),
            "content_sid",
        ),
        (
            json!({"name": "t", "channel": "whatsapp", "content": "Hi", "content_sid": "nope"}),
            "content_sid",
        ),
        (
            json!({"name": "t", "channel": "sms", "content": "Hi", "status": "live"}),
            "status",
        ),
        (
            json!({"name": "t", "channel": "pigeon", "content": "Hi"}),
            "channel",
        ),
    ] {
        let a = call(&deps, Call::post("/api/v1/crm/templates", b.clone(), &who)).await;
        assert_eq!(
            (a.status, a.body["field"].as_str()),
            (422, Some(field)),
            "{b}"
        );
    }
    let a = call(
        &deps,
        Call::post(
            "/api/v1/crm/templates",
            json!({"name": "wa", "channel": "whatsapp", "content": "Hi {{1}}", "variables": ["contact.first_name"],
                   "content_sid": "HX0123456789abcdef0123456789abcdef", "language": "tr"}),
            &who,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let dup = call(
        &deps,
        Call::post(
            "/api/v1/crm/templates",
            json!({"name": "wa2", "channel": "whatsapp", "content": "Yo", "content_sid": "HX0123456789abcdef0123456789abcdef"}),
            &who,
        ),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["field"].as_str()),
        (409, Some("content_sid"))
    );
    let path = format!("/api/v1/crm/templates/{}", a.id());
    let p = call(
        &deps,
        Call::patch(&path, json!({"status": "disabled"}), &who),
    )
    .await;
    assert_eq!(
        (
            p.status,
            p.body["status"].clone(),
            p.body["content"].clone()
        ),
        (200, json!("disabled"), json!("Hi {{1}}"))
    );
    let g = call(
        &deps,
        Call::get("/api/v1/crm/templates?channel=whatsapp", &who),
    )
    .await;
    assert_eq!(g.body["items"].as_array().unwrap().len(), 1);
    let d = call(&deps, Call::delete(&path, &who)).await;
    assert_eq!(d.status, 200);
    let g = call(&deps, Call::get(&path, &who)).await;
    assert_eq!(g.status, 404);
}

#[tokio::test]
async fn synced_templates_change_only_their_status() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let id: uuid::Uuid = c
        .query_one(
            "insert into message_templates (content_sid, name, channel, body) \
             values ('HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'synced', 'whatsapp', 'Hello') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let path = format!("/api/v1/crm/templates/{id}");
    let a = call(
        &deps,
        Call::patch(&path, json!({"content": "Changed"}), &operator()),
    )
    .await;
    assert_eq!((a.status, a.code()), (409, "synced_template"));
    let a = call(
        &deps,
        Call::patch(&path, json!({"status": "disabled"}), &operator()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn segment_filters_refuse_unknown_keys_and_missing_references() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let who = operator();
    for (filter, field) in [
        (json!({"stage": "Won"}), "filter.stage"),
        (
            json!({"pipeline_id": "0192f0c8-7a00-7000-8000-000000000099"}),
            "filter.pipeline_id",
        ),
        (
            json!({"stage_ids": ["0192f0c8-7a00-7000-8000-000000000099"]}),
            "filter.stage_ids",
        ),
        (json!({"reply_status": ["ecstatic"]}), "filter.reply_status"),
        (json!("everyone"), "filter"),
    ] {
        let a = call(
            &deps,
            Call::post(
                "/api/v1/crm/segments",
                json!({"name": "s", "filter": filter}),
                &who,
            ),
        )
        .await;
        assert_eq!(
            (a.status, a.body["field"].as_str()),
            (422, Some(field)),
            "{}",
            a.body
        );
    }
    let a = call(
        &deps,
        Call::post("/api/v1/crm/segments", json!({"name": "all"}), &who),
    )
    .await;
    assert_eq!((a.status, a.body["filter"].clone()), (201, json!({})));
    let dup = call(
        &deps,
        Call::post("/api/v1/crm/segments", json!({"name": "all"}), &who),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["field"].as_str()),
        (409, Some("name"))
    );
}

#[tokio::test]
async fn segment_preview_counts_and_pages_matching_contacts() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let who = operator();
    let stage: uuid::Uuid = c
        .query_one(
            "select s.id from pipeline_stages s join pipelines p on p.id = s.pipeline_id \
             where p.is_default order by s.position limit 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pipeline: uuid::Uuid = c
        .query_one(
            "select pipeline_id from pipeline_stages where id = $1",
            &[&stage],
        )
        .await
        .unwrap()
        .get(0);
    let mut in_stage = Vec::new();
    for i in 0..3 {
        let id = contact(
            &c,
            Some("N"),
            Some(&format!("p{i}@example.com")),
            None,
            json!({"plan": "pro"}),
        )
        .await;
        c.execute(
            "insert into deals (contact_id, pipeline_id, stage_id, title) values ($1, $2, $3, 'd')",
            &[&id, &pipeline, &stage],
        )
        .await
        .unwrap();
        in_stage.push(id);
    }
    contact(
        &c,
        Some("Other"),
        Some("o@example.com"),
        None,
        json!({"plan": "pro"}),
    )
    .await;
    let seg = call(
        &deps,
        Call::post(
            "/api/v1/crm/segments",
            json!({"name": "pro in stage", "filter": {"pipeline_id": pipeline, "stage_ids": [stage],
                   "attributes": {"plan": "pro"}, "has_email": true}}),
            &who,
        ),
    )
    .await;
    assert_eq!(seg.status, 201, "{}", seg.body);
    let path = format!("/api/v1/crm/segments/{}/preview?limit=2", seg.id());
    let p = call(&deps, Call::get(&path, &who)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["count"], 3);
    assert_eq!(p.body["items"].as_array().unwrap().len(), 2);
    assert!(p.body["items"][0].get("email").is_none());
    let next = p.body["next_cursor"].as_str().unwrap();
    let p2 = call(&deps, Call::get(&format!("{path}&cursor={next}"), &who)).await;
    assert_eq!(p2.body["items"].as_array().unwrap().len(), 1);
    assert!(p2.body["next_cursor"].is_null());
    // Segments are dynamic: a new matching contact shows up.
    let id = contact(
        &c,
        Some("New"),
        Some("new@example.com"),
        None,
        json!({"plan": "pro"}),
    )
    .await;
    c.execute(
        "insert into deals (contact_id, pipeline_id, stage_id, title) values ($1, $2, $3, 'd')",
        &[&id, &pipeline, &stage],
    )
    .await
    .unwrap();
    let p = call(&deps, Call::get(&path, &who)).await;
    assert_eq!(p.body["count"], 4);
    // PATCH keeps what it is not given.
    let s = call(
        &deps,
        Call::patch(
            &format!("/api/v1/crm/segments/{}", seg.id()),
            json!({"description": "d"}),
            &who,
        ),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["filter"]["has_email"], true);
}

#[tokio::test]
async fn a_synced_template_takes_variable_names_that_the_next_sync_keeps() {
    use crm_domain::inbox::templates::{ContentTemplate, upsert};
    let db = TestDb::new().await;
    let deps = deps(&db);
    let c = db.client().await;
    let synced = ContentTemplate {
        content_sid: "HXbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
        name: "welcome".into(),
        language: Some("pt_BR".into()),
        channel: "whatsapp",
        body: "Olá {{1}}, tudo bem?".into(),
        // Twilio's sample values, not names.
        variables: json!({"1": "name"}),
    };
    let pc = deps.pool.get().await.unwrap();
    upsert(&pc, &synced).await.unwrap();
    let id: uuid::Uuid = c
        .query_one(
            "select id from message_templates where content_sid = $1",
            &[&synced.content_sid],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "update channels set enabled = true where name = 'whatsapp'",
        &[],
    )
    .await
    .unwrap();
    let seg = call(
        &deps,
        Call::post(
            "/api/v1/crm/segments",
            json!({"name": "all", "filter": {}}),
            &operator(),
        ),
    )
    .await;
    assert_eq!(seg.status, 201, "{}", seg.body);
    let create = |deps| {
        call(
            deps,
            Call::post(
                "/api/v1/crm/campaigns",
                json!({"name": "W", "channel": "whatsapp", "segment_id": seg.id(), "template_id": id}),
                &operator(),
            ),
        )
    };
    let path = format!("/api/v1/crm/templates/{id}");
    let named = call(
        &deps,
        Call::patch(
            &path,
            json!({"variables": ["contact.first_name"]}),
            &operator(),
        ),
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.body);
    // The next sync keeps the names (and writes nothing when Twilio's text is unchanged).
    let again = upsert(&pc, &synced).await.unwrap();
    assert_eq!(again, crm_domain::inbox::templates::Upsert::Unchanged);
    let vars: serde_json::Value = c
        .query_one(
            "select variables from message_templates where id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(vars, json!(["contact.first_name"]));
    let created = create(&deps).await;
    assert_eq!(created.status, 201, "{}", created.body);
}
