//! The cold start every function shares: configuration (the process
//! environment overlaid with the Secrets Manager secret, see
//! [`crate::secrets`]), then the function's own dependencies. A failure is
//! reported to the Runtime API's `/init/error` before `main` returns it, so
//! Lambda (and `cargo lambda invoke`) show why the function cannot start
//! instead of an invoke that hangs or a bare "Runtime exited".

use crate::config::Env;
use lambda_runtime::Error;
use std::future::Future;

/// Runs `build` with the configuration; its error (or the configuration's)
/// is reported to the Runtime API when `AWS_LAMBDA_RUNTIME_API` is set, then
/// returned.
pub async fn init<T, F, Fut>(build: F) -> Result<T, Error>
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let built = match crate::secrets::load_env().await {
        Ok(env) => build(env).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &built
        && let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
            .ok()
            .filter(|v| !v.is_empty())
        && let Err(report) = report_init_error(&api, e).await
    {
        eprintln!("could not report the init error to the Runtime API: {report}");
    }
    built
}

/// POST `/2018-06-01/runtime/init/error` on `runtime_api` (host:port, as in
/// `AWS_LAMBDA_RUNTIME_API`), with the error's message: configuration errors
/// name a variable, never a value.
pub async fn report_init_error(runtime_api: &str, error: &Error) -> Result<(), Error> {
    use lambda_runtime_api_client::{PooledClient, body::Body, build_request};
    let base: http::Uri = format!("http://{runtime_api}").parse()?;
    let client = PooledClient::builder().with_endpoint(base).build();
    let body = serde_json::json!({
        "errorType": "Runtime.InitError",
        "errorMessage": error.to_string(),
    })
    .to_string();
    let req = build_request()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))?;
    let resp = client.call(req).await?;
    if !resp.status().is_success() {
        return Err(format!("/init/error answered {}", resp.status()).into());
    }
    Ok(())
}
