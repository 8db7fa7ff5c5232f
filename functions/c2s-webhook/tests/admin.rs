//! The C2S read API and managers CRUD against a fresh PostgreSQL per test:
//! leads list (status filter, keyset pages), a lead page (events, runs and
//! lookups, verdict, note text, parties, the linked contact by e-mail and
//! by phone), managers with sellers (audit-logged), and who may call what.

mod common;

use common::*;
use crm_domain::Secret;
use crm_domain::auth::{Claims, Role, mint};
use crm_testkit::TestDb;
use serde_json::{Value, json};

fn token(sub: &str, role: Role, caps: &[&str]) -> String {
    let claims = Claims {
        sub: sub.into(),
        role,
        caps: caps.iter().map(|c| c.to_string()).collect(),
        exp: 4_102_444_800,
        iat: None,
    };
    mint(&Secret::new(JWT_SECRET).unwrap(), &claims)
}

fn admin() -> String {
    token("ops", Role::Admin, &[])
}

/// A request built on the `stats.json` sample: method, path, query, body, bearer.
async fn call(
    deps: &c2s_webhook::Deps,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut ev = sample("stats.json");
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["requestContext"]["http"]["method"] = json!(method);
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    ev["queryStringParameters"] = Value::Object(params);
    ev["rawQueryString"] = json!(
        query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let h = ev["headers"].as_object_mut().unwrap();
    match bearer {
        Some(t) => {
            h.insert("authorization".into(), json!(format!("Bearer {t}")));
        }
        None => {
            h.remove("authorization");
        }
    }
    if let Some(b) = body {
        h.insert("content-type".into(), json!("application/json"));
        ev["body"] = json!(b.to_string());
    }
    send(deps, request(&ev.to_string())).await
}

/// Ingests the `create-flat.json` lead (id `6f1c2a9e0b7d4e3f`) with another id / e-mail / phone.
async fn ingest(
    deps: &c2s_webhook::Deps,
    id: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> String {
    let mut body = sample_body("create-flat.json");
    body["id"] = json!(id);
    body["attributes"]["customer"]["email"] = json!(email);
    body["attributes"]["customer"]["phone"] = json!(phone);
    body["attributes"]["customer"]["phone_global"] = Value::Null;
    let (status, answer) = send(deps, post_json(&body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    answer["results"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Finishes the event as the worker would: a completed run (same person),
/// one party and a posted note.
async fn enrich(pg: &tokio_postgres::Client, lead: &str, event: &str) -> (String, String) {
    pg.execute(
        "update webhook_events set status = 'completed', processed_at = now(), duration_ms = 1200 where id = $1::text::uuid",
        &[&event],
    )
    .await
    .unwrap();
    let run: String = pg
        .query_one(
            "insert into enrichment_runs (event_id, lead_id, hook_action, status, identity, validation, reasons, \
                                          finished_at, duration_ms) \
             values ($1::text::uuid, $2, 'on_create_lead', 'completed', 'same_person', \
                     '{\"phone\": {\"valid\": true}, \"email\": {\"valid\": false, \"reason\": \"placeholder domain\"}}', \
                     '[]', now(), 1200) returning id::text",
            &[&event, &lead],
        )
        .await
        .unwrap()
        .get(0);
    let party: String = pg
        .query_one(
            "insert into parties (cpf, name, source_payload) values ('52998224725', 'MARIA DA SILVA', '{}') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    pg.execute(
        "insert into lead_parties (lead_id, party_id, matched_by, run_id) values ($1, $2::text::uuid, 'phone', $3::text::uuid)",
        &[&lead, &party, &run],
    )
    .await
    .unwrap();
    pg.execute(
        "insert into enrichment_notes (lead_id, run_id, body, body_sha256, status, attempts, attempted_at, http_status, posted_at) \
         values ($1, $2::text::uuid, 'Telefone e e-mail da mesma pessoa', repeat('b', 64), 'posted', 1, now(), 201, now())",
        &[&lead, &run],
    )
    .await
    .unwrap();
    (run, party)
}

#[tokio::test]
async fn leads_list_filters_by_status_and_pages_by_cursor() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let first = ingest(&deps, "L-old", Some("a@example.com.br"), None).await;
    ingest(&deps, "L-new", None, Some("(11) 91234-5678")).await;
    enrich(&pg, "L-old", &first).await;

    let (s, page) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads",
        &[("limit", "1")],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["leads"].as_array().unwrap().len(), 1);
    assert_eq!(page["leads"][0]["lead_id"], "L-new");
    assert_eq!(page["leads"][0]["status"], "received");
    assert_eq!(page["leads"][0]["note"]["posted"], false);
    assert_eq!(page["leads"][0]["note"]["why"], "not enriched yet");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (s, page2) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads",
        &[("limit", "1"), ("cursor", &cursor)],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!(s, 200);
    let old = &page2["leads"][0];
    assert_eq!(old["lead_id"], "L-old");
    assert_eq!(old["status"], "completed");
    assert_eq!(old["hook_action"], "on_create_lead");
    assert_eq!(old["last_event"]["duration_ms"], 1200);
    assert_eq!(old["enrichment"]["status"], "completed");
    assert_eq!(old["enrichment"]["identity"], "same_person");
    assert_eq!(
        old["note"],
        json!({"posted": true, "status": "posted", "why": null, "posted_at": old["note"]["posted_at"]})
    );
    assert!(page2["next_cursor"].is_null());

    let (_, failed) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads",
        &[("status", "completed")],
        None,
        Some(&admin()),
    )
    .await;
    let ids: Vec<&str> = failed["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lead_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["L-old"]);
    let (s, bad) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads",
        &[("status", "nope")],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!((s, bad["field"].as_str()), (422, Some("status")));
    let (s, bad) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads",
        &[("cursor", "x")],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!((s, bad["field"].as_str()), (422, Some("cursor")));
}

#[tokio::test]
async fn a_lead_page_shows_runs_lookups_verdict_note_parties_and_its_contact() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let event = ingest(
        &deps,
        "L1",
        Some("Mariana@Example.com.br"),
        Some("(11) 98765-4321"),
    )
    .await;
    let (run, party) = enrich(&pg, "L1", &event).await;
    // The contact has the lead's phone in its old WhatsApp spelling (no 9th
    // digit) and another e-mail: linked by phone, through the Twilio rules.
    let contact: String = pg
        .query_one(
            "insert into contacts (full_name, email, phone) values ('Mariana', 'other@example.com', '+551187654321') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let (s, page) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads/L1",
        &[],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["lead"]["customer_email"], "mariana@example.com.br");
    assert_eq!(page["verdict"], "same_person");
    assert_eq!(page["events"][0]["event_id"], event.as_str());
    assert_eq!(page["events"][0]["status"], "completed");
    assert_eq!(page["runs"][0]["run_id"], run.as_str());
    assert_eq!(
        page["runs"][0]["lookups"],
        json!([
            {"source": "diretrix", "datum": "phone", "result": "found", "reason": null, "party_id": null},
            {"source": "diretrix", "datum": "email", "result": "not_looked_up", "reason": "placeholder domain", "party_id": null},
            {"source": "work_api", "datum": "cpf", "result": "found", "reason": null, "party_id": party}
        ])
    );
    assert_eq!(
        page["notes"][0]["body"],
        "Telefone e e-mail da mesma pessoa"
    );
    assert_eq!(page["notes"][0]["status"], "posted");
    assert_eq!(page["note"]["posted"], true);
    assert_eq!(page["parties"][0]["cpf"], "52998224725");
    assert_eq!(page["parties"][0]["matched_by"], "phone");
    assert_eq!(page["contact"]["contact_id"], contact.as_str());
    assert_eq!(page["contact"]["matched_by"], "phone");

    // An e-mail match wins over the phone.
    let by_mail: String = pg
        .query_one(
            "insert into contacts (full_name, email) values ('M', 'mariana@example.com.br') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (_, page) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads/L1",
        &[],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!(page["contact"]["contact_id"], by_mail.as_str());
    assert_eq!(page["contact"]["matched_by"], "email");

    let (s, missing) = call(
        &deps,
        "GET",
        "/api/v1/c2s/leads/nope",
        &[],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!((s, missing["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn members_need_c2s_read_for_leads_and_admin_for_managers() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let member = token("m1", Role::Member, &[]);
    let reader = token("m2", Role::Member, &["c2s:read"]);
    for (method, path, body) in [
        ("GET", "/api/v1/c2s/leads", None),
        ("GET", "/api/v1/c2s/leads/L1", None),
    ] {
        let (s, b) = call(&deps, method, path, &[], body, Some(&member)).await;
        assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")), "{path}");
        let (s, _) = call(&deps, method, path, &[], body, None).await;
        assert_eq!(s, 401);
    }
    let (s, _) = call(&deps, "GET", "/api/v1/c2s/leads", &[], None, Some(&reader)).await;
    assert_eq!(s, 200);
    let body = json!({"name": "Ana", "email": "ana@imob.com.br"});
    for (method, path, body) in [
        ("GET", "/api/v1/c2s/managers".to_string(), None),
        ("POST", "/api/v1/c2s/managers".to_string(), Some(&body)),
        (
            "PATCH",
            format!("/api/v1/c2s/managers/{}", uuid::Uuid::nil()),
            Some(&body),
        ),
        (
            "DELETE",
            format!("/api/v1/c2s/managers/{}", uuid::Uuid::nil()),
            None,
        ),
    ] {
        let (s, b) = call(&deps, method, &path, &[], body, Some(&reader)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}"
        );
    }
    let pg = db.client().await;
    assert_eq!(count(&pg, "select count(*) from managers").await, 0);
}

#[tokio::test]
async fn managers_crud_keeps_sellers_and_audits_every_change() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    let deps = deps(&db);
    let (s, made) = call(
        &deps,
        "POST",
        "/api/v1/c2s/managers",
        &[],
        Some(&json!({"name": "Ana Gerente", "email": "Ana@Imob.com.br",
                     "sellers": [{"seller_id": "s-2041"}, {"seller_email": "Bruno@Imob.com.br"}]})),
        Some(&admin()),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(made["email"], "ana@imob.com.br");
    assert_eq!(made["active"], true);
    assert_eq!(
        made["sellers"],
        json!([{"seller_id": "s-2041"}, {"seller_email": "bruno@imob.com.br"}])
    );
    let id = made["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/c2s/managers/{id}");
    // The enrichment worker's matching sees the new manager.
    let pooled = deps.pool.get().await.unwrap();
    let found =
        crm_domain::enrichment::managers::managers_for_seller(&pooled, Some("s-2041"), None)
            .await
            .unwrap();
    assert_eq!(found.len(), 1);

    let (s, bad) = call(
        &deps,
        "POST",
        "/api/v1/c2s/managers",
        &[],
        Some(&json!({"name": "No way to reach"})),
        Some(&admin()),
    )
    .await;
    assert_eq!((s, bad["field"].as_str()), (422, Some("email")));

    let (s, changed) = call(
        &deps,
        "PATCH",
        &path,
        &[],
        Some(&json!({"active": false, "sellers": [{"seller_id": "s-9"}]})),
        Some(&admin()),
    )
    .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(changed["active"], false);
    assert_eq!(changed["sellers"], json!([{"seller_id": "s-9"}]));
    let (_, list) = call(
        &deps,
        "GET",
        "/api/v1/c2s/managers",
        &[],
        None,
        Some(&admin()),
    )
    .await;
    assert_eq!(list["managers"].as_array().unwrap().len(), 1);
    let (_, one) = call(&deps, "GET", &path, &[], None, Some(&admin())).await;
    assert_eq!(one["sellers"], json!([{"seller_id": "s-9"}]));

    // A manager with notifications on record is kept for their history.
    let event = ingest(&deps, "L9", Some("x@example.com.br"), None).await;
    pg.execute(
        "insert into manager_notifications (manager_id, lead_id, event_id, channel, subject, body) \
         values ($1::text::uuid, 'L9', $2::text::uuid, 'email', 's', 'b')",
        &[&id, &event],
    )
    .await
    .unwrap();
    let (s, kept) = call(&deps, "DELETE", &path, &[], None, Some(&admin())).await;
    assert_eq!(
        (s, kept["code"].as_str()),
        (409, Some("manager_has_notifications"))
    );
    pg.execute("delete from manager_notifications", &[])
        .await
        .unwrap();
    let (s, gone) = call(&deps, "DELETE", &path, &[], None, Some(&admin())).await;
    assert_eq!(s, 200, "{gone}");
    let (s, _) = call(&deps, "GET", &path, &[], None, Some(&admin())).await;
    assert_eq!(s, 404);
    assert_eq!(count(&pg, "select count(*) from manager_sellers").await, 0);

    let audit: Vec<String> = pg
        .query(
            "select action from audit_log where target_type = 'c2s_manager' order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        audit,
        [
            "crm.manager.created",
            "crm.manager.updated",
            "crm.manager.deleted"
        ]
    );
    let details: String = pg
        .query_one("select string_agg(details::text, ' ') from audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !details.contains("imob.com.br") && !details.contains("Ana"),
        "{details}"
    );
}
