//! Sign-in cost with the production Argon2id parameters (m=19 MiB, t=2,
//! p=1): p50 / p99 of the whole `POST /api/v1/auth/login` (hash check on a
//! blocking thread, session insert) and of the bare hash check. Printed,
//! never asserted. Run with `make bench-auth` (release build).

mod common;

use common::*;
use crm_domain::{accounts::password, auth::Role};
use crm_testkit::TestDb;
use std::time::{Duration, Instant};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
#[ignore = "benchmark: make bench-auth"]
async fn bench_sign_in() {
    let db = TestDb::new().await;
    let deps = deps(&db);
    user(&deps, "bench@example.com", Role::Member, Some(PASSWORD)).await;
    let hash = password::hash(&password::NewPassword::parse(PASSWORD).unwrap()).unwrap();
    password::warm_up();
    let n = 50;
    let mut verify = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        assert!(password::verify(PASSWORD, Some(&hash)));
        verify.push(t.elapsed());
    }
    let mut login_ok = Vec::new();
    let mut login_unknown = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        assert_eq!(
            login(&deps, "bench@example.com", PASSWORD).await.status,
            200
        );
        login_ok.push(t.elapsed());
        let t = Instant::now();
        // Different unknown e-mails, so the throttle does not lock the account key.
        assert_eq!(
            call(
                &deps,
                login_call(&format!("nobody{i}@example.com"), PASSWORD)
                    .source_ip(&format!("192.0.2.{i}"))
            )
            .await
            .status,
            401
        );
        login_unknown.push(t.elapsed());
    }
    for (name, mut v) in [
        ("argon2id verify (m=19456 KiB, t=2, p=1)", verify),
        ("POST /api/v1/auth/login, right password", login_ok),
        ("POST /api/v1/auth/login, unknown e-mail", login_unknown),
    ] {
        v.sort();
        println!(
            "{name}: n={n} p50={:.1} ms p99={:.1} ms",
            pct(&v, 0.5).as_secs_f64() * 1e3,
            pct(&v, 0.99).as_secs_f64() * 1e3
        );
    }
}
