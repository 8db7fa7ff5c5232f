//! The admin users API, set-password links, /me/password, and the audit log.

mod common;

use common::*;
use crm_domain::auth::Role;
use crm_testkit::TestDb;
use serde_json::json;

fn token_of(url: &str) -> String {
    url.split("token=").nth(1).unwrap().to_string()
}

async fn admin_token(deps: &accounts::Deps) -> String {
    user(deps, "root@example.com", Role::Admin, Some(PASSWORD)).await;
    login(deps, "root@example.com", PASSWORD)
        .await
        .access_token()
}

#[tokio::test]
async fn an_admin_invites_a_member_who_sets_a_password_once_and_signs_in() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let admin = admin_token(&deps).await;
    let a = call(
        &deps,
        Call::from_event("create-user.json").token(Some(&admin)),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["user"]["email"], "ayse.yilmaz@example.com");
    assert_eq!(a.body["user"]["role"], "member");
    assert_eq!(a.body["user"]["has_password"], false);
    assert_eq!(a.body["invitation"], "not_configured");
    let url = a.body["set_password_url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("https://crm.example.com/set-password?token="),
        "{url}"
    );
    let token = token_of(&url);

    // Too short a password: 422, the link still works.
    let short =
        Call::from_event("set-password.json").body(json!({"token": token, "password": "short"}));
    assert_eq!(call(&deps, short).await.body["field"], "password");
    let set = Call::from_event("set-password.json")
        .body(json!({"token": token, "password": "a long passphrase of mine"}));
    assert_eq!(call(&deps, set).await.status, 204);
    // Single use.
    let again = Call::from_event("set-password.json")
        .body(json!({"token": token, "password": "another long passphrase"}));
    let again = call(&deps, again).await;
    assert_eq!(
        (again.status, again.body["field"].as_str()),
        (422, Some("token"))
    );

    let m = login(
        &deps,
        "ayse.yilmaz@example.com",
        "a long passphrase of mine",
    )
    .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["user"]["role"], "member");
    assert_eq!(m.body["user"]["caps"], json!(["can_use_crm"]));
    // A member may not manage users.
    let list = call(
        &deps,
        Call::from_event("list-users.json").token(Some(&m.access_token())),
    )
    .await;
    assert_eq!(list.status, 403);
    let list = call(
        &deps,
        Call::from_event("list-users.json").token(Some(&admin)),
    )
    .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);

    // Duplicate e-mail (any case): 409.
    let dup = call(
        &deps,
        Call::from_event("create-user.json")
            .token(Some(&admin))
            .body(json!({"email": "AYSE.YILMAZ@example.com"})),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["field"].as_str()),
        (409, Some("email"))
    );
    // Unknown capability: 422.
    let bad = call(
        &deps,
        Call::from_event("create-user.json")
            .token(Some(&admin))
            .body(json!({"email": "x@example.com", "caps": ["root"]})),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (422, Some("caps"))
    );
}

#[tokio::test]
async fn a_newer_link_kills_the_older_and_an_expired_link_is_dead() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let admin = admin_token(&deps).await;
    let a = call(
        &deps,
        Call::from_event("create-user.json")
            .token(Some(&admin))
            .body(json!({"email": "kaan@example.com", "name": "Kaan"})),
    )
    .await;
    let id = a.body["user"]["id"].as_str().unwrap().to_string();
    let old = token_of(a.body["set_password_url"].as_str().unwrap());
    let b = call(
        &deps,
        Call::from_event("password-link.json")
            .path(&format!("/api/v1/users/{id}/password-link"))
            .token(Some(&admin)),
    )
    .await;
    assert_eq!(b.status, 201, "{}", b.body);
    let new = token_of(b.body["set_password_url"].as_str().unwrap());
    let use_old = Call::from_event("set-password.json")
        .body(json!({"token": old, "password": "a long passphrase"}));
    assert_eq!(call(&deps, use_old).await.status, 422);
    // Expire the new one in the database: dead too.
    let c = db.client().await;
    c.execute("update password_tokens set expires_at = now() - interval '1 second' where superseded_at is null", &[])
        .await
        .unwrap();
    let use_new = Call::from_event("set-password.json")
        .body(json!({"token": new, "password": "a long passphrase"}));
    assert_eq!(call(&deps, use_new).await.status, 422);
    assert_eq!(count(&c, "select count(*) from users where password_hash is not null and email = 'kaan@example.com'").await, 0);
}

#[tokio::test]
async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let admin = admin_token(&deps).await;
    let root: String = db
        .client()
        .await
        .query_one(
            "select id::text from users where email = 'root@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for body in [json!({"role": "member"}), json!({"active": false})] {
        let a = call(
            &deps,
            Call::from_event("update-user.json")
                .path(&format!("/api/v1/users/{root}"))
                .token(Some(&admin))
                .body(body),
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (409, Some("last_admin"))
        );
    }
    // With a second admin, the first may step down.
    let second = user(&deps, "two@example.com", Role::Admin, Some(PASSWORD)).await;
    let a = call(
        &deps,
        Call::from_event("update-user.json")
            .path(&format!("/api/v1/users/{root}"))
            .token(Some(&admin))
            .body(json!({"role": "member"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Now `two` is the last one.
    let a = call(
        &deps,
        Call::from_event("deactivate-user.json")
            .path(&format!("/api/v1/users/{second}"))
            .token(Some(&admin)),
    )
    .await;
    assert_eq!(a.status, 409);
}

#[tokio::test]
async fn changing_ones_password_ends_the_other_sessions_and_needs_the_current_one() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    user(&deps, "lale@example.com", Role::Member, Some(PASSWORD)).await;
    let other = login(&deps, "lale@example.com", PASSWORD)
        .await
        .refresh_cookie();
    let this = login(&deps, "lale@example.com", PASSWORD).await;
    let wrong = call(
        &deps,
        Call::from_event("change-password.json")
            .token(Some(&this.access_token()))
            .body(json!({"current_password": "not it at all!", "new_password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.body["field"].as_str()),
        (422, Some("current_password"))
    );
    let ok = call(
        &deps,
        Call::from_event("change-password.json")
            .token(Some(&this.access_token()))
            .body(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert_eq!(call(&deps, refresh_call(&other)).await.status, 401);
    assert_eq!(
        call(&deps, refresh_call(&this.refresh_cookie()))
            .await
            .status,
        200
    );
    assert_eq!(login(&deps, "lale@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        login(&deps, "lale@example.com", "a brand new passphrase")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn sign_out_everywhere_revokes_every_session_and_the_audit_log_holds_no_secrets() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    let admin = admin_token(&deps).await;
    let a = call(
        &deps,
        Call::from_event("create-user.json").token(Some(&admin)),
    )
    .await;
    let id = a.body["user"]["id"].as_str().unwrap().to_string();
    let link = token_of(a.body["set_password_url"].as_str().unwrap());
    let pw = "a long passphrase of mine";
    call(
        &deps,
        Call::from_event("set-password.json").body(json!({"token": link, "password": pw})),
    )
    .await;
    let s1 = login(&deps, "ayse.yilmaz@example.com", pw).await;
    let s2 = login(&deps, "ayse.yilmaz@example.com", pw)
        .await
        .refresh_cookie();
    let out = call(
        &deps,
        Call::from_event("sign-out-everywhere.json")
            .path(&format!("/api/v1/users/{id}/sign-out-everywhere"))
            .token(Some(&admin)),
    )
    .await;
    assert_eq!(out.status, 204);
    assert_eq!(
        call(&deps, refresh_call(&s1.refresh_cookie())).await.status,
        401
    );
    assert_eq!(call(&deps, refresh_call(&s2)).await.status, 401);
    call(
        &deps,
        Call::from_event("update-user.json")
            .path(&format!("/api/v1/users/{id}"))
            .token(Some(&admin)),
    )
    .await;

    let c = db.client().await;
    let rows = c
        .query(
            "select action, actor, target_id, details::text from audit_log order by id",
            &[],
        )
        .await
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for want in [
        "crm.user.created",
        "crm.user.password_set",
        "crm.user.signed_out",
        "crm.user.updated",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} missing in {actions:?}"
        );
    }
    let all: String = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, Option<String>>(2),
                r.get::<_, String>(3)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [
        link.as_str(),
        pw,
        PASSWORD,
        &s1.refresh_cookie(),
        &s2,
        &s1.access_token(),
        "ayse",
        "@example.com",
        "$argon2",
    ] {
        assert!(!all.contains(secret), "audit log contains {secret}:\n{all}");
    }
}
