//! The whole HTTP surface on a local port, as `make run` serves it, against
//! a per-test PostgreSQL database (or none), with real secrets (no bypass).
#![allow(dead_code)]

use crm_platform::config::{CommonConfig, Env};
use local_runner::routes;

pub const JWT_SECRET: &str = "corpus-jwt-secret-0123456789abcdef0123";
pub const INSTANTLY_SECRET: &str = "corpus-instantly-secret";
pub const CALCOM_SECRET: &str = "corpus-calcom-secret";
pub const C2S_TOKEN: &str = "corpus-c2s-token";
pub const TWILIO_TOKEN: &str = "corpus-twilio-token";
pub const UNSUBSCRIBE_SECRET: &str = "corpus-unsubscribe-secret-0123456789abcdef";
/// What Twilio signatures are computed over (the handler's `PUBLIC_BASE_URL`).
pub const PUBLIC_BASE_URL: &str = "https://crm.example.com";

/// Serves every route on 127.0.0.1 and answers its base URL.
pub async fn serve(database_url: &str) -> String {
    let env = Env::from_pairs([
        ("DATABASE_URL", database_url),
        ("APP_ENV", "test"),
        ("LOG_LEVEL", "error"),
        ("JWT_SECRET", JWT_SECRET),
        ("HMAC_SHARED_SECRET_INSTANTLY", INSTANTLY_SECRET),
        ("HMAC_SHARED_SECRET_CALCOM", CALCOM_SECRET),
        ("WEBHOOK_SECRET", C2S_TOKEN),
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
        ("UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET),
    ]);
    let common = CommonConfig::from_env(&env).expect("common config");
    let app = routes::router(routes::build(&common, &env).expect("every function's Deps"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}
